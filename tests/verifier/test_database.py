"""DatabaseTier against mongomock: the atomic conditional claim, the fence on every later write,
the attempt counter, hostile ids, reconnection (defect 8) and credentials kept out of messages."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import mongomock
import pymongo.errors
import pytest
import pytest_asyncio

from verifier import (
    ClaimRefused,
    ConfigurationError,
    DatabaseTier,
    InvalidInputError,
    MalformedAnswer,
    OwnershipGuard,
    Policy,
    Tier,
    TierClient,
    TierTimeout,
    TierUnavailable,
    TimingModel,
    _database,
)
from verifier._database import MAX_ATTEMPTS

ME = "did:key:z6MktwupdmLXVVqTzCw4i46r4uGyosGXRnR3XjN4Zq7oMMsw"
OTHER = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
JOB = "2f42577d-9c93-4a62-9ae2-d1270b5bc4f3"
START = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
URI = "mongodb://user:s3cret@host/db"


class Clock:
    """The database server's clock, set by the test.

    mongomock takes ``$currentDate`` from ``mongomock.utcnow`` (naive UTC), so that is what the
    fixture replaces: the server's clock, not the encoder's. ``stored`` is what it writes.
    """

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now.replace(tzinfo=None)

    def stored(self) -> datetime:
        return self.now.replace(tzinfo=None)


def tokens(prefix: str = "tok") -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter)}"


@pytest.fixture
def jobs() -> Any:
    return mongomock.MongoClient()["spk-encoder-gateway"]["jobs"]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    server = Clock()
    monkeypatch.setattr(mongomock, "utcnow", server)
    return server


@pytest_asyncio.fixture
async def make(jobs: Any, clock: Clock) -> AsyncIterator[Callable[..., DatabaseTier]]:
    made: list[DatabaseTier] = []

    def factory(did: str = ME, collection: Any = None, **kwargs: Any) -> DatabaseTier:
        kwargs.setdefault("token_factory", tokens(did[-4:]))
        tier = DatabaseTier(
            jobs if collection is None else collection, encoder_did=did, **kwargs
        )
        made.append(tier)
        return tier

    yield factory
    for tier in made:
        await tier.aclose()


@pytest_asyncio.fixture
async def db(make: Callable[..., DatabaseTier]) -> DatabaseTier:
    return make()


def add(jobs: Any, job_id: str = JOB, **fields: Any) -> None:
    doc = {"id": job_id, "status": "queued", "created_at": START - timedelta(hours=1), **fields}
    jobs.insert_one(doc)


def snapshot(jobs: Any) -> list[dict[str, Any]]:
    return sorted((dict(d) for d in jobs.find()), key=lambda d: str(d["_id"]))


def doc(jobs: Any, job_id: str = JOB) -> dict[str, Any]:
    found: dict[str, Any] = jobs.find_one({"id": job_id})
    return found


# ---------------------------------------------------------------------- the claim


@pytest.mark.asyncio
async def test_claim_writes_the_assignment_once_and_a_second_did_is_refused(
    make: Callable[..., DatabaseTier], jobs: Any, clock: Clock
) -> None:
    add(jobs)
    me, other = make(ME), make(OTHER)
    token = await me.claim(JOB)
    assert token == "MMsw-1"
    stored = doc(jobs)
    assert stored["assigned_to"] == ME and stored["status"] == "assigned"
    assert stored["claim_token"] == token and stored["claim_epoch"] == 1
    assert stored["assigned_date"] == clock.stored() == stored["last_pinged"]
    before = snapshot(jobs)
    with pytest.raises(ClaimRefused, match=f"held by {ME}"):
        await other.claim(JOB)
    with pytest.raises(ClaimRefused):
        await me.claim(JOB)  # not even we can take it twice: a claim is write-once
    assert snapshot(jobs) == before


@pytest.mark.asyncio
@pytest.mark.parametrize("status", ["queued", "pending", "created", "unassigned"])
@pytest.mark.parametrize("owner", ["absent", None])
async def test_claim_takes_any_claimable_status_with_null_or_absent_owner(
    db: DatabaseTier, jobs: Any, status: str, owner: Any
) -> None:
    add(jobs, status=status, **({} if owner == "absent" else {"assigned_to": owner}))
    await db.claim(JOB)
    assert doc(jobs)["assigned_to"] == ME


@pytest.mark.asyncio
async def test_twenty_concurrent_claims_from_one_loop_have_exactly_one_winner(
    db: DatabaseTier, jobs: Any
) -> None:
    add(jobs)
    answers = await asyncio.gather(*(db.claim(JOB) for _ in range(20)), return_exceptions=True)
    won = [a for a in answers if isinstance(a, str)]
    assert len(won) == 1
    assert all(isinstance(a, ClaimRefused) for a in answers if not isinstance(a, str))
    assert doc(jobs)["claim_token"] == won[0] and doc(jobs)["claim_epoch"] == 1


class DocumentLockedCollection:
    """MongoDB applies one write to one document atomically; mongomock across threads does
    not, so this double serialises the calls the way the server does."""

    def __init__(self, inner: Any, lock: threading.Lock) -> None:
        self.inner, self.lock = inner, lock

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                return method(*args, **kwargs)

        return locked


@pytest.mark.asyncio
async def test_twenty_encoders_racing_for_one_job_have_exactly_one_winner(
    make: Callable[..., DatabaseTier], jobs: Any
) -> None:
    add(jobs)
    lock = threading.Lock()
    dids = [f"did:key:z6Mk{i:04d}" for i in range(20)]
    tiers = [make(d, DocumentLockedCollection(jobs, lock)) for d in dids]
    answers = await asyncio.gather(*(t.claim(JOB) for t in tiers), return_exceptions=True)
    winners = [d for d, a in zip(dids, answers, strict=True) if isinstance(a, str)]
    assert len(winners) == 1
    assert doc(jobs)["assigned_to"] == winners[0] and doc(jobs)["claim_epoch"] == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"status": "assigned", "assigned_to": OTHER}, "held by"),
        ({"status": "running", "assigned_to": ME}, "assigned to us"),
        ({"status": "complete", "assigned_to": None}, "not held"),
        ({"status": "failed"}, "status failed"),
        ({"status": "queued", "assigned_to": OTHER}, "held by"),
    ],
)
async def test_claim_of_a_held_or_finished_job_is_refused_and_changes_nothing(
    db: DatabaseTier, jobs: Any, fields: dict[str, Any], message: str
) -> None:
    add(jobs, **fields)
    before = snapshot(jobs)
    with pytest.raises(ClaimRefused, match=message):
        await db.claim(JOB)
    assert snapshot(jobs) == before


@pytest.mark.asyncio
async def test_claim_of_a_missing_job_is_refused(db: DatabaseTier, jobs: Any) -> None:
    add(jobs, "another-job")
    with pytest.raises(ClaimRefused, match="does not exist"):
        await db.claim(JOB)
    assert doc(jobs, "another-job").get("assigned_to") is None


@pytest.mark.asyncio
async def test_blind_write_claims_are_refused_without_touching_the_database(
    db: DatabaseTier, jobs: Any
) -> None:
    add(jobs)
    before = snapshot(jobs)
    with pytest.raises(TierUnavailable, match="blind-write"):
        await db.claim(JOB, conditional=False)
    assert snapshot(jobs) == before


# ---------------------------------------------------------------------- fenced writes


@pytest.mark.asyncio
async def test_heartbeat_renews_the_lease_and_turns_running_above_one_percent(
    db: DatabaseTier, jobs: Any, clock: Clock
) -> None:
    add(jobs)
    token = await db.claim(JOB)
    clock.now += timedelta(seconds=30)
    await db.heartbeat(JOB, token, {"pct": 0.0, "download_pct": 40.0})
    stored = doc(jobs)
    assert stored["status"] == "assigned"  # downloading: not running yet
    assert stored["last_pinged"] == clock.stored()
    assert stored["progress"] == {"pct": 0.0, "download_pct": 40.0}
    await db.heartbeat(JOB, token, {"pct": 12.5, "download_pct": 100.0})
    assert doc(jobs)["status"] == "running"
    await db.heartbeat(JOB, token, {"pct": 0.0})
    assert doc(jobs)["status"] == "running"  # never back to assigned


@pytest.mark.asyncio
async def test_fenced_writes_with_a_wrong_token_or_owner_are_refused_and_change_nothing(
    make: Callable[..., DatabaseTier], jobs: Any
) -> None:
    add(jobs)
    me, other = make(ME), make(OTHER)
    token = await me.claim(JOB)
    before = snapshot(jobs)
    attempts: list[Callable[[], Awaitable[None]]] = [
        lambda: me.heartbeat(JOB, "not-our-token", {"pct": 50.0}),
        lambda: me.finish(JOB, "not-our-token", {"cid": "bafy"}),
        lambda: me.release(JOB, "not-our-token", "giving up", failed=True),
        lambda: other.heartbeat(JOB, token, {"pct": 50.0}),
        lambda: other.finish(JOB, token, {"cid": "bafy"}),
        lambda: other.release(JOB, token, "giving up", failed=False),
    ]
    for attempt in attempts:
        with pytest.raises(ClaimRefused):
            await attempt()
    assert snapshot(jobs) == before


@pytest.mark.asyncio
async def test_a_reassignment_to_the_same_did_is_not_our_assignment(
    db: DatabaseTier, jobs: Any
) -> None:
    add(jobs)
    old = await db.claim(JOB)
    await db.release(JOB, old, "stalled", failed=False)
    new = await db.claim(JOB)
    assert new != old
    with pytest.raises(ClaimRefused):
        await db.finish(JOB, old, {"cid": "stale"})
    assert doc(jobs)["status"] == "assigned" and "result" not in doc(jobs)
    observed = await db.observe(JOB)
    assert observed.token == new and observed.owner == ME


@pytest.mark.asyncio
async def test_finish_commits_complete_and_the_result_once(
    db: DatabaseTier, jobs: Any, clock: Clock
) -> None:
    add(jobs)
    token = await db.claim(JOB)
    await db.heartbeat(JOB, token, {"pct": 50.0, "download_pct": 100.0})
    clock.now += timedelta(minutes=5)
    await db.finish(JOB, token, {"cid": "bafyresult", "message": "ok"})
    stored = doc(jobs)
    assert stored["status"] == "complete"
    assert stored["result"] == {"cid": "bafyresult", "message": "ok"}
    assert stored["completed_at"] == clock.stored()
    with pytest.raises(ClaimRefused):
        await db.finish(JOB, token, {"cid": "second"})
    assert doc(jobs)["result"]["cid"] == "bafyresult"


@pytest.mark.asyncio
async def test_unfenced_finish_and_operator_results_are_refused(
    db: DatabaseTier, jobs: Any
) -> None:
    add(jobs)
    token = await db.claim(JOB)
    before = snapshot(jobs)
    with pytest.raises(TierUnavailable, match="unfenced"):
        await db.finish(JOB, token, {"cid": "x"}, fenced=False)
    for hostile in ({"$set": {"status": "x"}}, {"a.b": 1}, {"cid": {"$gt": ""}},
                    {"cid": "x", "seconds": float("nan")}):
        with pytest.raises(InvalidInputError):
            await db.finish(JOB, token, hostile)
        with pytest.raises(InvalidInputError):  # what the guard asks when the work ends
            db.check_result(hostile)
    db.check_result({"cid": "bafy", "seconds": 12.5, "renditions": [{"height": 720}]})
    with pytest.raises(InvalidInputError):
        await db.heartbeat(JOB, {"$ne": None}, {"pct": 1.0})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await db.heartbeat(JOB, token, {"pct": float("nan")})
    assert snapshot(jobs) == before


@pytest.mark.asyncio
async def test_release_requeues_and_the_fifth_failure_marks_the_job_failed(
    db: DatabaseTier, jobs: Any
) -> None:
    add(jobs)
    token = await db.claim(JOB)
    await db.release(JOB, token, "not processing it", failed=False)
    stored = doc(jobs)
    assert stored["status"] == "queued" and "attempt_count" not in stored
    assert not {"assigned_to", "assigned_date", "claim_token"} & stored.keys()
    # The contract's figure, not the constant's: "failed" at the fifth failed attempt (a
    # constant moved to 4 or 6 passed a loop written with it: a mutation run, session 37).
    for attempt in range(1, 6):
        token = await db.claim(JOB)
        await db.release(JOB, token, "encode failed", failed=True)
        stored = doc(jobs)
        assert stored["attempt_count"] == attempt
        assert stored["status"] == ("failed" if attempt == 5 else "queued")
        assert "assigned_to" not in stored and "claim_token" not in stored
    with pytest.raises(ClaimRefused):
        await db.claim(JOB)


@pytest.mark.asyncio
async def test_release_of_a_job_we_lost_is_refused_at_the_failure_threshold_too(
    make: Callable[..., DatabaseTier], jobs: Any
) -> None:
    add(jobs, attempt_count=MAX_ATTEMPTS - 1)
    me, other = make(ME), make(OTHER)
    token = await other.claim(JOB)
    before = snapshot(jobs)
    with pytest.raises(ClaimRefused, match="held by"):
        await me.release(JOB, token, "failed", failed=True)
    assert snapshot(jobs) == before


class LandsThenTimesOut:
    """A write that reaches the server but whose answer is lost (the outcome is unknown)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.armed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        self.inner.find_one_and_update(*args, **kwargs)
        if self.armed:
            self.armed = False
            raise pymongo.errors.NetworkTimeout("timed out reading the reply")
        return None


@pytest.mark.asyncio
async def test_after_an_unknown_claim_writes_without_a_token_are_fenced_on_what_we_sent(
    make: Callable[..., DatabaseTier], jobs: Any
) -> None:
    add(jobs)
    db = make(collection=LandsThenTimesOut(jobs))
    with pytest.raises(TierTimeout):
        await db.claim(JOB)
    assert doc(jobs)["assigned_to"] == ME  # it landed after all
    await db.heartbeat(JOB, None, {"pct": 5.0})
    assert doc(jobs)["status"] == "running"
    await db.finish(JOB, None, {"cid": "bafy"})
    assert doc(jobs)["status"] == "complete"


@pytest.mark.asyncio
async def test_an_unknown_claim_names_the_token_it_sent_and_keeps_it_out_of_the_message(
    make: Callable[..., DatabaseTier], jobs: Any
) -> None:
    """Only that token tells this claim's assignment from an older one of ours (the protocol
    confirms an unknown claim on a read of it alone)."""
    add(jobs)
    db = make(collection=LandsThenTimesOut(jobs))
    with pytest.raises(TierTimeout) as raised:
        await db.claim(JOB)
    token = raised.value.claim_token
    assert token is not None and token == doc(jobs)["claim_token"]
    assert token not in str(raised.value)


@pytest.mark.asyncio
async def test_without_a_token_or_a_claim_of_ours_nothing_can_be_fenced(
    make: Callable[..., DatabaseTier], jobs: Any
) -> None:
    add(jobs, status="assigned", assigned_to=ME)  # e.g. assigned by the gateway's acceptJob
    db = make()
    before = snapshot(jobs)
    with pytest.raises(ClaimRefused, match="no database claim"):
        await db.heartbeat(JOB, None, {"pct": 5.0})
    with pytest.raises(ClaimRefused):
        await db.finish(JOB, None, {"cid": "x"})
    with pytest.raises(ClaimRefused, match="assigned to us"):
        await db.claim(JOB)  # refused: its token was never written, so it fences nothing
    with pytest.raises(ClaimRefused, match="no database claim"):
        await db.release(JOB, None, "giving up", failed=False)
    assert snapshot(jobs) == before


# ---------------------------------------------------------------------- dates: the server's clock

#: The encoder's wall clock is this far behind the server's: an *offset*, which the timing
#: model's drift bound ε does not limit. The gateway measures T on its own clock.
SKEW = timedelta(minutes=10)
REASSIGN_TIMEOUT = timedelta(seconds=60)


class WrongWallClock(datetime):
    """``datetime`` as the encoder's module would see it: every reading ``SKEW`` behind the
    server, and counted, so a test can show that the tier never reads it."""

    readings = 0

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        cls.readings += 1
        return START.astimezone(tz) - SKEW if tz is not None else (START - SKEW).replace(
            tzinfo=None)

    @classmethod
    def utcnow(cls) -> Any:
        cls.readings += 1
        return (START - SKEW).replace(tzinfo=None)

    @classmethod
    def today(cls) -> Any:
        return cls.utcnow()


@pytest.fixture
def wrong_wall_clock(monkeypatch: pytest.MonkeyPatch) -> type[WrongWallClock]:
    """The encoder's clock, ``SKEW`` behind: whatever the tier would read through its module's
    ``datetime`` (``raising=False``: a tier without a clock has no such name to replace)."""
    WrongWallClock.readings = 0
    monkeypatch.setattr(_database, "datetime", WrongWallClock, raising=False)
    return WrongWallClock


class RecordingCollection:
    """The mongomock collection, recording every update document the tier sends."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.updates: list[tuple[str, dict[str, Any]]] = []

    def find_one(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.find_one(*args, **kwargs)

    def find_one_and_update(self, filter: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        self.updates.append(("find_one_and_update", update))
        return self.inner.find_one_and_update(filter, update, *args, **kwargs)

    def update_one(self, filter: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        self.updates.append(("update_one", update))
        return self.inner.update_one(filter, update, *args, **kwargs)


def _values(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _values(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _values(item)
    else:
        yield value


@pytest.mark.asyncio
async def test_lease_dates_are_the_servers_even_when_the_encoders_clock_is_behind(
    db: DatabaseTier, jobs: Any, clock: Clock, wrong_wall_clock: type[WrongWallClock]
) -> None:
    """S2: the gateway reassigns on ``last_pinged`` older than T *by its clock*. Stamped with
    an encoder clock 10 min behind, a fresh claim or ping would already be stale and the
    healthy job reassigned; stamped by the server (``$currentDate``), it never is."""
    add(jobs)
    token = await db.claim(JOB)
    stored = doc(jobs)
    assert stored["assigned_date"] == stored["last_pinged"] == clock.stored()
    clock.now += timedelta(seconds=30)
    await db.heartbeat(JOB, token, {"pct": 50.0})
    assert doc(jobs)["last_pinged"] == clock.stored()
    # The gateway's reassignment scan, on the server's clock: the healthy job is not stale.
    stale = {"id": JOB, "last_pinged": {"$lt": clock.stored() - REASSIGN_TIMEOUT}}
    assert jobs.find_one(stale) is None
    clock.now += timedelta(seconds=30)
    await db.finish(JOB, token, {"cid": "bafy"})
    assert doc(jobs)["completed_at"] == clock.stored()
    assert wrong_wall_clock.readings == 0, "the tier read the encoder's own clock"


@pytest.mark.asyncio
async def test_no_update_carries_a_date_of_its_own(
    make: Callable[..., DatabaseTier], jobs: Any
) -> None:
    """Every date is ``$currentDate`` in the same update as the write it dates; none is a value
    computed by the encoder (the update documents hold no datetime at all)."""
    add(jobs)
    recording = RecordingCollection(jobs)
    db = make(collection=recording)
    token = await db.claim(JOB)
    await db.heartbeat(JOB, token, {"pct": 0.5})
    await db.heartbeat(JOB, token, {"pct": 50.0})
    await db.finish(JOB, token, {"cid": "bafy"})
    add(jobs, "second")
    await db.release("second", await db.claim("second"), "giving up", failed=True)
    sent = recording.updates
    assert len(sent) == 6
    for _method, update in sent:
        assert not [v for v in _values(update) if isinstance(v, datetime)], update
    stamped = [sorted(update.get("$currentDate", {})) for _method, update in sent]
    assert stamped == [["assigned_date", "last_pinged"], ["last_pinged"], ["last_pinged"],
                       ["completed_at"], ["assigned_date", "last_pinged"], []]
    assert all(v is True for _m, u in sent for v in u.get("$currentDate", {}).values())


# ---------------------------------------------------------------------- array-valued fields
# MongoDB (and mongomock) match a scalar condition against any element of an array: without
# an explicit "not an array" clause these writes landed on documents no read can parse.


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "fields",
    [
        {"id": [JOB, "another-job"]},
        {"status": ["running", "queued"]},
        {"assigned_to": [None, OTHER]},
        {"assigned_to": []},
    ],
    ids=["id", "status", "owner-null-or-other", "owner-empty"],
)
async def test_claim_never_matches_array_valued_fields(
    db: DatabaseTier, jobs: Any, fields: dict[str, Any]
) -> None:
    add(jobs, **fields)
    before = snapshot(jobs)
    with pytest.raises(ClaimRefused):
        await db.claim(JOB)
    assert snapshot(jobs) == before  # in particular OTHER is not overwritten


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "fields",
    [
        {"assigned_to": [ME, OTHER]},
        {"claim_token": ["T", "U"]},
        {"status": ["running", "complete"]},
        {"id": [JOB, "another-job"]},
    ],
    ids=["owner", "token", "status", "id"],
)
async def test_fenced_writes_never_match_array_valued_fields(
    db: DatabaseTier, jobs: Any, fields: dict[str, Any]
) -> None:
    add(jobs, **{"status": "running", "assigned_to": ME, "claim_token": "T", **fields})
    before = snapshot(jobs)
    attempts: list[Callable[[], Awaitable[None]]] = [
        lambda: db.heartbeat(JOB, "T", {"pct": 50.0}),
        lambda: db.finish(JOB, "T", {"cid": "bafy"}),
        lambda: db.release(JOB, "T", "giving up", failed=False),
        lambda: db.release(JOB, "T", "giving up", failed=True),
    ]
    for attempt in attempts:
        with pytest.raises(ClaimRefused):
            await attempt()
    assert snapshot(jobs) == before


@pytest.mark.asyncio
async def test_writes_without_a_token_do_not_match_a_token_array_holding_ours(
    db: DatabaseTier, jobs: Any
) -> None:
    add(jobs)
    token = await db.claim(JOB)
    jobs.update_one({"id": JOB}, {"$set": {"claim_token": [token, "theirs"]}})
    before = snapshot(jobs)
    with pytest.raises(ClaimRefused):
        await db.heartbeat(JOB, None, {"pct": 5.0})  # fenced on {"$in": [what we sent]}
    with pytest.raises(ClaimRefused):
        await db.finish(JOB, None, {"cid": "bafy"})
    assert snapshot(jobs) == before


@pytest.mark.asyncio
async def test_the_array_guard_does_not_stop_plain_documents(db: DatabaseTier, jobs: Any) -> None:
    # The same lifecycle on a well-formed document still goes through: the guard is not
    # refusing everything.
    add(jobs, assigned_to=None)
    token = await db.claim(JOB)
    await db.heartbeat(JOB, token, {"pct": 5.0})
    await db.finish(JOB, token, {"cid": "bafy"})
    assert doc(jobs)["status"] == "complete"


# ---------------------------------------------------------------------- reads


@pytest.mark.asyncio
async def test_verify_job_ownership_needs_our_did_and_a_processable_status(
    db: DatabaseTier, jobs: Any
) -> None:
    add(jobs, "ours-assigned", status="assigned", assigned_to=ME)
    add(jobs, "ours-running-other-spelling", status="running",
        assigned_to="did:" + ME[len("did:key:"):])
    add(jobs, "ours-complete", status="complete", assigned_to=ME)
    add(jobs, "theirs", status="running", assigned_to=OTHER)
    add(jobs, "nobody", status="assigned", assigned_to=None)
    cases = {
        "ours-assigned": (True, True),
        "ours-running-other-spelling": (True, True),
        "ours-complete": (True, False),
        "theirs": (False, False),
        "nobody": (False, False),
    }
    for job_id, (owned, safe) in cases.items():
        result = await db.verify_job_ownership(job_id, ME)
        assert (result.is_owned, result.is_safe_to_process) == (owned, safe), job_id
        assert result.job_exists
    missing = await db.verify_job_ownership("missing", ME)
    assert not missing.job_exists and not missing.is_safe_to_process
    assert (await db.verify_job_ownership("theirs", ME)).actual_owner == OTHER


@pytest.mark.asyncio
async def test_availability_reads_the_documented_reasons(db: DatabaseTier, jobs: Any) -> None:
    add(jobs, "free")
    add(jobs, "held", status="assigned", assigned_to=OTHER)
    free = await db.is_job_available_to_claim("free")
    assert free.available and free.reason == "Job available to claim"
    held = await db.is_job_available_to_claim("held")
    assert not held.available and held.current_owner == OTHER
    missing = await db.is_job_available_to_claim("missing")
    assert not missing.available and missing.reason == "Job not found in system"


@pytest.mark.asyncio
async def test_observe_carries_the_token_and_dates_as_iso_strings(
    db: DatabaseTier, jobs: Any
) -> None:
    add(jobs)
    assert (await db.observe(JOB)).token is None
    token = await db.claim(JOB)
    observed = await db.observe(JOB)
    assert observed.tier is Tier.DATABASE and observed.token == token
    assert observed.status == "assigned" and observed.owner == ME
    assert observed.job is not None and observed.job.assigned_date == "2026-01-02T03:04:05.678000"
    assert (await db.observe("missing")).job is None
    assert (await db.get_job("missing")) is None
    assert isinstance(db, TierClient)


# ---------------------------------------------------------------------- hostile input

HOSTILE_IDS: list[Any] = [{"$ne": None}, {"$gt": ""}, 5, None, "", "x" * 300, "a\nb"]


@pytest.mark.asyncio
@pytest.mark.parametrize("job_id", HOSTILE_IDS, ids=repr)
async def test_hostile_ids_are_refused_before_anything_reaches_the_database(
    db: DatabaseTier, jobs: Any, job_id: Any
) -> None:
    add(jobs)
    add(jobs, "other", status="assigned", assigned_to=ME, claim_token="t")
    before = snapshot(jobs)
    operations: list[Callable[[], Awaitable[Any]]] = [
        lambda: db.get_job(job_id),
        lambda: db.observe(job_id),
        lambda: db.verify_job_ownership(job_id, ME),
        lambda: db.is_job_available_to_claim(job_id),
        lambda: db.claim(job_id),
        lambda: db.heartbeat(job_id, "t", {"pct": 5.0}),
        lambda: db.finish(job_id, "t", {"cid": "x"}),
        lambda: db.release(job_id, "t", "r", failed=True),
    ]
    for operation in operations:
        with pytest.raises(InvalidInputError):
            await operation()
    assert snapshot(jobs) == before


@pytest.mark.asyncio
@pytest.mark.parametrize("job_id", ["../x", "a/b", "?", "$where", "id with spaces"])
async def test_odd_but_plain_string_ids_are_just_ids(
    db: DatabaseTier, jobs: Any, job_id: str
) -> None:
    add(jobs, job_id)
    add(jobs, "bystander")
    token = await db.claim(job_id)
    await db.finish(job_id, token, {"cid": "bafy"})
    assert doc(jobs, job_id)["status"] == "complete"
    assert doc(jobs, "bystander")["status"] == "queued"


# ---------------------------------------------------------------------- failures, reconnection


class Flaky:
    """A collection whose first ``failures`` calls raise the given errors."""

    def __init__(self, inner: Any, *failures: Exception) -> None:
        self.inner = inner
        self.failures = list(failures)

    def with_options(self, **options: Any) -> Flaky:
        """The tier's primary reads (no I/O in pymongo): this double has one copy anyway."""
        return self

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.failures:
                raise self.failures.pop(0)
            return method(*args, **kwargs)

        return call


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (pymongo.errors.AutoReconnect("connection reset"), TierUnavailable),
        (pymongo.errors.ServerSelectionTimeoutError("no primary"), TierUnavailable),
        (pymongo.errors.NetworkTimeout("read timed out"), TierTimeout),
        (pymongo.errors.ExecutionTimeout("operation exceeded time limit"), TierTimeout),
        (pymongo.errors.OperationFailure("not authorized"), TierUnavailable),
    ],
)
async def test_driver_errors_are_no_answer_and_the_next_call_works(
    make: Callable[..., DatabaseTier], jobs: Any, error: Exception, expected: type[Exception]
) -> None:
    add(jobs)
    db = make(collection=Flaky(jobs, error))
    with pytest.raises(expected) as raised:
        await db.observe(JOB)
    assert not isinstance(raised.value, ClaimRefused)
    assert (await db.observe(JOB)).status == "queued"


class FakeClient:
    """Stands in for ``pymongo.MongoClient``: records its construction and its close."""

    def __init__(self, jobs: Any, failures: list[Exception], uri: str, **options: Any) -> None:
        self.uri, self.options, self.closed = uri, options, False
        self.collection = Flaky(jobs, *failures)
        failures.clear()  # only the first client is flaky

    def __getitem__(self, name: str) -> Any:
        return {"jobs": self.collection}

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_clients(
    monkeypatch: pytest.MonkeyPatch, jobs: Any
) -> Iterator[tuple[list[FakeClient], list[Exception]]]:
    built: list[FakeClient] = []
    failures: list[Exception] = []

    def factory(uri: str, **options: Any) -> FakeClient:
        client = FakeClient(jobs, failures, uri, **options)
        built.append(client)
        return client

    monkeypatch.setattr(_database, "MongoClient", factory)
    yield built, failures


@pytest.mark.asyncio
async def test_an_owned_client_is_rebuilt_after_a_connection_failure(
    fake_clients: tuple[list[FakeClient], list[Exception]], jobs: Any, clock: Clock
) -> None:
    built, failures = fake_clients
    add(jobs)
    failures.append(pymongo.errors.AutoReconnect(f"lost {URI}"))
    db = DatabaseTier(uri=URI, encoder_did=ME, timeout=2.0)
    assert built == []  # lazy: nothing is built before the first call
    with pytest.raises(TierUnavailable) as raised:
        await db.observe(JOB)
    assert "s3cret" not in str(raised.value)
    assert len(built) == 1 and built[0].closed
    assert built[0].uri == URI and built[0].options["serverSelectionTimeoutMS"] == 2000
    assert (await db.observe(JOB)).status == "queued"
    assert (await db.claim(JOB)) and len(built) == 2  # rebuilt once, then reused
    await db.aclose()
    assert built[1].closed
    with pytest.raises(TierUnavailable, match="closed"):
        await db.observe(JOB)


@pytest.mark.asyncio
async def test_a_query_error_keeps_the_client(
    fake_clients: tuple[list[FakeClient], list[Exception]], jobs: Any
) -> None:
    built, failures = fake_clients
    add(jobs)
    failures.append(pymongo.errors.OperationFailure("bad query"))
    db = DatabaseTier(uri=URI, encoder_did=ME)
    with pytest.raises(TierUnavailable):
        await db.get_job(JOB)
    assert (await db.get_job(JOB)) is not None
    assert len(built) == 1 and not built[0].closed
    await db.aclose()


@pytest.mark.asyncio
async def test_no_password_in_reprs_or_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(uri: str, **options: Any) -> Any:
        raise pymongo.errors.ConfigurationError(f"cannot use {uri}")

    monkeypatch.setattr(_database, "MongoClient", broken)
    multi = "mongodb://user:s3cret@h1:27017,h2:27017/db?replicaSet=rs&authSource=admin"
    for uri in (URI, multi, "mongodb+srv://user:s3cret@cluster.example/db"):
        db = DatabaseTier(uri=uri, encoder_did=ME)
        assert "s3cret" not in repr(db) and "user" not in repr(db)
        with pytest.raises(TierUnavailable) as raised:
            await db.observe(JOB)
        assert "s3cret" not in str(raised.value)
        await db.aclose()
    assert "h1:27017,h2:27017" in repr(DatabaseTier(uri=multi, encoder_did=ME))


@pytest.mark.asyncio
async def test_a_driver_message_quoting_the_password_is_scrubbed(
    fake_clients: tuple[list[FakeClient], list[Exception]], jobs: Any
) -> None:
    _, failures = fake_clients
    add(jobs)
    failures.append(pymongo.errors.OperationFailure("auth failed for user:s3cret and s3cret"))
    db = DatabaseTier(uri=URI, encoder_did=ME)
    with pytest.raises(TierUnavailable) as raised:
        await db.claim(JOB)
    assert "s3cret" not in str(raised.value) and "***" in str(raised.value)
    await db.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("quoted", [
    "bad uri {uri}",  # the whole URI: it survived when the password was replaced first
    "auth failed for password 'pa ss+w0rd'",  # the password as pymongo decodes it
    "could not decrypt the key file with K3YPASS",  # a secret option's value
], ids=["whole-uri", "unquote-plus", "secret-option"])
async def test_every_form_of_a_secret_a_driver_may_quote_is_scrubbed(
    fake_clients: tuple[list[FakeClient], list[Exception]], jobs: Any, quoted: str
) -> None:
    """Security review (session 16): three forms escaped the scrubber."""
    uri = ("mongodb://enc:pa+ss%2Bw0rd@db.example:27017/spk"
           "?tls=true&tlsCertificateKeyFilePassword=K3YPASS")
    _, failures = fake_clients
    add(jobs)
    failures.append(pymongo.errors.OperationFailure(quoted.format(uri=uri)))
    db = DatabaseTier(uri=uri, encoder_did=ME)
    with pytest.raises(TierUnavailable) as raised:
        await db.claim(JOB)
    text = str(raised.value)
    for secret in ("pa+ss%2Bw0rd", "pa ss+w0rd", "pa+ss+w0rd", "K3YPASS"):
        assert secret not in text
    assert "tls=true" not in text or "***" in text
    await db.aclose()


@pytest.mark.asyncio
async def test_a_password_the_server_quotes_in_its_error_document_is_scrubbed(
    fake_clients: tuple[list[FakeClient], list[Exception]], jobs: Any
) -> None:
    """An OperationFailure ends with the server's error document as a dict's repr, which
    doubles a backslash and escapes a quote: a password holding them, quoted there, passed
    the exact-text scrub (an adversarial review, session 46)."""
    password = "o'clock\\back-slash"
    uri = "mongodb://enc:o%27clock%5Cback-slash@db.example:27017/spk"
    _, failures = fake_clients
    add(jobs)
    failures.append(pymongo.errors.OperationFailure(
        "Authentication failed.", 18, {"errmsg": f"no user enc with password {password}"}))
    db = DatabaseTier(uri=uri, encoder_did=ME)
    with pytest.raises(TierUnavailable) as raised:
        await db.claim(JOB)
    text = str(raised.value)
    assert "clock" not in text and "back-slash" not in text, text
    assert "Authentication failed., full error: {'errmsg': \"no user enc with password ***" in text
    await db.aclose()


class Blocking:
    """A collection whose reads wait for the test to let them go (a hung server)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.go = threading.Event()

    def find_one(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        self.go.wait(timeout=10)
        return self.inner.find_one(*args, **kwargs)


@pytest.mark.asyncio
async def test_a_hung_driver_leaves_the_loop_free_and_reads_as_a_timeout(
    make: Callable[..., DatabaseTier], jobs: Any
) -> None:
    add(jobs)
    blocking = Blocking(jobs)
    db = make(collection=blocking, timeout=0.05)
    with pytest.raises(TierTimeout):
        await db.observe(JOB)
    blocking.go.set()
    assert (await db.observe(JOB)).status == "queued"

    blocking.go.clear()
    patient = make(collection=blocking, timeout=5.0)
    pending = asyncio.ensure_future(patient.observe(JOB))
    await asyncio.get_running_loop().run_in_executor(None, blocking.entered.wait, 5)
    assert not pending.done()  # the read is stuck in the worker, and this loop still runs
    blocking.go.set()
    assert (await pending).status == "queued"


class BlockingWrites(Blocking):
    """Reads and the claim's update both wait for the test to let them go."""

    def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        self.go.wait(timeout=10)
        return self.inner.find_one_and_update(*args, **kwargs)


@pytest.mark.asyncio
async def test_a_claim_running_in_the_worker_is_answered_only_once_it_has_ended(
    make: Callable[..., DatabaseTier], jobs: Any
) -> None:
    """A running pymongo call cannot be cancelled: answered at the asyncio deadline, the claim
    could be sent after its answer, and the settle wait counts from that answer (safety
    review, session 17: two encoders processed one job). Its answer waits for its end."""
    add(jobs)
    blocking = BlockingWrites(jobs)
    db = make(collection=blocking, timeout=0.05)  # asyncio deadline 0.1 s
    claim = asyncio.ensure_future(db.claim(JOB))
    await asyncio.get_running_loop().run_in_executor(None, blocking.entered.wait, 5)
    done, _ = await asyncio.wait({claim}, timeout=0.5)  # well past the deadline
    assert not done, "answered while the claim could still be sent"
    blocking.go.set()
    token = await claim  # its real outcome, once no send is left
    assert doc(jobs)["claim_token"] == token and doc(jobs)["assigned_to"] == ME


@pytest.mark.asyncio
async def test_a_claim_still_queued_at_its_deadline_is_never_sent(
    make: Callable[..., DatabaseTier], jobs: Any
) -> None:
    """Queued behind another call past its deadline (another job's, with concurrency above
    1), a claim is cancelled before it runs: answered "not sent", and it never lands."""
    add(jobs)
    blocking = BlockingWrites(jobs)
    db = make(collection=blocking, timeout=0.05)
    stuck = asyncio.ensure_future(db.observe(JOB))  # holds the one worker
    await asyncio.get_running_loop().run_in_executor(None, blocking.entered.wait, 5)
    with pytest.raises(TierUnavailable, match="not sent"):
        await db.claim(JOB)
    with pytest.raises(TierTimeout):
        await stuck  # a read is abandoned at its deadline
    blocking.go.set()
    assert (await db.observe(JOB)).status == "queued"  # the worker has drained
    assert doc(jobs).get("assigned_to") is None


@pytest.mark.asyncio
async def test_a_claim_whose_caller_is_cancelled_while_it_is_queued_is_never_sent(
    make: Callable[..., DatabaseTier], jobs: Any
) -> None:
    """The guard cancels a call it abandons (its run stopped, a deadline came): a call still
    queued behind another must then never run, as before the answer of a started write was
    made to wait for its end."""
    add(jobs)
    blocking = BlockingWrites(jobs)
    db = make(collection=blocking, timeout=5.0)
    stuck = asyncio.ensure_future(db.observe(JOB))  # holds the one worker
    await asyncio.get_running_loop().run_in_executor(None, blocking.entered.wait, 5)
    claim = asyncio.ensure_future(db.claim(JOB))
    await asyncio.sleep(0)  # queued
    claim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await claim
    blocking.go.set()
    assert (await stuck).status == "queued"
    assert (await db.observe(JOB)).status == "queued"  # the worker has drained
    assert doc(jobs).get("assigned_to") is None


def test_construction_checks_its_configuration(jobs: Any) -> None:
    with pytest.raises(ConfigurationError):
        DatabaseTier(encoder_did=ME)
    with pytest.raises(ConfigurationError):
        DatabaseTier(jobs, uri=URI, encoder_did=ME)
    with pytest.raises(ConfigurationError, match="MONGODB_URI"):
        DatabaseTier(uri="http://user:s3cret@host/db", encoder_did=ME)
    # Read as host "user" and database "s3cret@host/db" by a lenient parser, which then showed
    # the password as part of the database: refused like the settings refuse it.
    with pytest.raises(ConfigurationError, match="MONGODB_URI") as info:
        DatabaseTier(uri="mongodb://user/x:s3cret@host/db", encoder_did=ME)
    assert "s3cret" not in str(info.value)
    with pytest.raises(ConfigurationError, match="MONGODB_URI"):
        DatabaseTier(uri=123, encoder_did=ME)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="DATABASE_NAME"):
        DatabaseTier(jobs, encoder_did=ME, database="a.b")
    with pytest.raises(ConfigurationError):
        DatabaseTier(jobs, encoder_did=ME, timeout=0)
    with pytest.raises(InvalidInputError):
        DatabaseTier(jobs, encoder_did="not-a-did")


@pytest.mark.asyncio
async def test_a_claim_starts_its_assignment_with_no_progress(
    make: Callable[..., DatabaseTier], jobs: Any
) -> None:
    """The no-progress clock (N) of a new assignment starts at the claim: a previous attempt's
    progress must not carry over into it (the timing model's assumption; the review of
    2026-12-02 found the claim left it in place)."""
    add(jobs, progress={"pct": 80.0, "download_pct": 100.0})
    await make().claim(JOB)
    assert doc(jobs)["progress"] == {"pct": 0.0, "download_pct": 0.0}


class AnswersAnotherDocument(LandsThenTimesOut):
    """A claim that is applied, but whose returned document is not the assignment it made (a
    driver or proxy bug): the outcome is unknown."""

    def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        found = self.inner.find_one_and_update(*args, **kwargs)
        return {**found, "claim_token": "someone-else"}


@pytest.mark.asyncio
async def test_a_claim_whose_answer_is_not_our_assignment_still_names_its_token(
    make: Callable[..., DatabaseTier], jobs: Any
) -> None:
    add(jobs)
    db = make(collection=AnswersAnotherDocument(jobs))
    with pytest.raises(MalformedAnswer) as raised:
        await db.claim(JOB)
    assert raised.value.claim_token == doc(jobs)["claim_token"]


class CaseInsensitiveCollection:
    """A collection whose default collation ignores case (a MongoDB deployment may set one):
    ``find_one({"id": "job-1"})`` also finds ``JOB-1``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def find_one(self, query: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        wanted = str(query["id"]).lower()
        return next((d for d in self.inner.find() if str(d["id"]).lower() == wanted), None)


@pytest.mark.asyncio
async def test_a_document_about_another_id_is_malformed_never_an_answer(
        make: Callable[..., DatabaseTier], jobs: Any) -> None:
    """Found by a security review (session 14): the database tier took whatever document its
    query returned, while the other tiers check the id they were answered about."""
    add(jobs, "JOB-1", status="assigned", assigned_to=ME)
    db = make(collection=CaseInsensitiveCollection(jobs))
    with pytest.raises(MalformedAnswer, match="another job id"):
        await db.observe("job-1")


# ---------------------------------------------------------------------- lost or odd replies
# (an adversarial review of the tier, session 21)


class AppliedThenLost:
    """The mongomock collection whose next ``update_one`` is applied and its reply lost."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lose_next = False

    def find_one(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.find_one(*args, **kwargs)

    def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.find_one_and_update(*args, **kwargs)

    def update_one(self, *args: Any, **kwargs: Any) -> Any:
        result = self.inner.update_one(*args, **kwargs)
        if self.lose_next:
            self.lose_next = False
            raise pymongo.errors.NetworkTimeout("reply lost")
        return result


@pytest.mark.asyncio
@pytest.mark.parametrize("known_token", [True, False])
async def test_a_finish_applied_with_its_reply_lost_is_ok_when_retried(
    make: Callable[..., DatabaseTier], jobs: Any, known_token: bool
) -> None:
    """The retry of a finish whose reply was lost matches nothing (the job is complete): it
    was read as refused, and the run ended FINISH_UNKNOWN with the job reported held although
    the result was committed. The job is complete under our claim token: it is our finish."""
    add(jobs)
    wrapped = AppliedThenLost(jobs)
    me = make(ME, wrapped)
    token = await me.claim(JOB)
    wrapped.lose_next = True
    with pytest.raises(TierTimeout):
        await me.finish(JOB, token, {"cid": "bafy1"})
    assert doc(jobs)["status"] == "complete"
    await me.finish(JOB, token if known_token else None, {"cid": "bafy1"})  # no ClaimRefused


@pytest.mark.asyncio
async def test_a_job_completed_under_another_assignment_still_refuses_our_finish(
    make: Callable[..., DatabaseTier], jobs: Any
) -> None:
    add(jobs)
    me = make(ME)
    token = await me.claim(JOB)
    # Reassigned to us again by someone else's hand and completed under a new token.
    jobs.update_one({"id": JOB}, {"$set": {"status": "complete", "claim_token": "other"}})
    with pytest.raises(ClaimRefused):
        await me.finish(JOB, token, {"cid": "bafy1"})
    jobs.update_one({"id": JOB}, {"$set": {"claim_token": token, "assigned_to": OTHER}})
    with pytest.raises(ClaimRefused):
        await me.finish(JOB, token, {"cid": "bafy1"})


class Reply:
    def __init__(self, matched: Any, acknowledged: bool = True) -> None:
        self.acknowledged = acknowledged
        if matched is not ...:
            self.matched_count = matched


class OddReplies(AppliedThenLost):
    """Every ``update_one`` is applied, and answered with ``reply`` instead of the driver's."""

    def __init__(self, inner: Any, reply: Reply) -> None:
        super().__init__(inner)
        self.reply = reply

    def update_one(self, *args: Any, **kwargs: Any) -> Any:
        self.inner.update_one(*args, **kwargs)
        return self.reply


@pytest.mark.asyncio
@pytest.mark.parametrize("reply", [Reply("0"), Reply(2), Reply(-1), Reply(1.5), Reply(True),
                                   Reply(...), Reply(1, acknowledged=False)],
                         ids=["text", "two", "negative", "float", "bool", "missing", "unacked"])
@pytest.mark.parametrize("write", ["heartbeat", "finish", "release"])
async def test_a_write_reply_without_a_plain_matched_count_is_unknown(
    make: Callable[..., DatabaseTier], jobs: Any, reply: Reply, write: str
) -> None:
    """A reply counting "0" or 2 was read as matched (a lease renewed by a ping that did not
    land, if the reply lies), and one with no count as refused: neither proves anything."""
    add(jobs)
    token = await make(ME).claim(JOB)
    me = make(ME, OddReplies(jobs, reply))
    calls = {"heartbeat": lambda: me.heartbeat(JOB, token, {"pct": 5}),
             "finish": lambda: me.finish(JOB, token, {"cid": "bafy1"}),
             "release": lambda: me.release(JOB, token, "test", failed=False)}
    with pytest.raises(MalformedAnswer):
        await calls[write]()


@pytest.mark.asyncio
async def test_a_claim_reply_about_another_job_is_unknown(
    make: Callable[..., DatabaseTier], jobs: Any
) -> None:
    add(jobs)

    class OtherId(AppliedThenLost):
        def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
            found = dict(self.inner.find_one_and_update(*args, **kwargs))
            return {**found, "id": "another-job"}

    with pytest.raises(MalformedAnswer) as info:
        await make(ME, OtherId(jobs)).claim(JOB)
    assert info.value.claim_token is not None  # applied: only a read of it can confirm


@pytest.mark.parametrize("result", [
    {"cid": "bafy1", "n": 2**63}, {"cid": "bafy1", "n": __import__("decimal").Decimal("1.5")},
    {"cid": "bafy1", "n": {1, 2}}, {"cid": "bafy1", "n": object()},
    {"cid": "bafy1", "n": "\ud800"}, {"cid": "bafy1", "blob": "x" * (16 * 1024 * 1024)},
], ids=["int-beyond-64-bits", "decimal", "set", "object", "lone-surrogate", "over-16-MiB"])
def test_check_result_refuses_what_bson_cannot_store(
    make: Callable[..., DatabaseTier], result: dict[str, Any]
) -> None:
    """Accepted, such a result failed when the finish was encoded: never sent, retried as
    unknown, and the job reported held until T (an OverflowError even escaped the tier)."""
    with pytest.raises(InvalidInputError, match="result"):
        make(ME).check_result(result)


@pytest.mark.parametrize("options", [
    "tls=True", "ssl=1", "journal=1", "j=true", "authMechanism=PLAIN2", "w=-1",
])
def test_options_the_driver_would_drop_with_a_warning_are_refused_at_start(
        options: str) -> None:
    """The client warns of an option value it cannot read, or an unknown option, and goes on
    without it: ``tls=True`` meant a connection without TLS (session 39, a differential test
    against pymongo: 3,500 of 60,000 URIs passed so)."""
    tier = DatabaseTier(uri=f"mongodb://u:S3CRetPW@host/db?{options}", encoder_did=ME)
    with pytest.raises(ConfigurationError, match="the MongoDB driver refuses it") as info:
        tier.check_options()
    assert info.value.variable == "MONGODB_URI" and "S3CRetPW" not in str(info.value)


def test_a_documentdb_host_is_not_refused_for_the_drivers_warning() -> None:
    """Not every warning is a refusal: the client warns of a DocumentDB host, a URI that works."""
    tier = DatabaseTier(uri="mongodb://u:pw@docdb.cluster-x.us-east-1.docdb.amazonaws.com/db?"
                        "tls=true", encoder_did=ME)
    with pytest.warns(UserWarning, match="DocumentDB"):
        tier.check_options()


def test_unacknowledged_writes_are_refused_at_start() -> None:
    """With w=0 pymongo invents an answer: an applied claim read as refused, no heartbeat
    ever confirmed."""
    with pytest.raises(ConfigurationError, match="w=0"):
        DatabaseTier(uri="mongodb://user:s3cret@host/db?retryWrites=true&W=0", encoder_did=ME)
    for options in ("w=0;appName=x", "w=00", "w=-0", "w=1&w=0", "W=%30"):
        with pytest.raises(ConfigurationError, match="w=0"):
            DatabaseTier(uri=f"mongodb://host/db?{options}", encoder_did=ME)
    for options in ("w=0&w=1", "w=majority", "w=2", "w=dc1"):  # pymongo takes the last
        DatabaseTier(uri=f"mongodb://host/db?{options}", encoder_did=ME)
    client: Any = pymongo.MongoClient("mongodb://127.0.0.1:9/", connect=False)
    try:
        w0 = client["db"]["jobs"].with_options(
            write_concern=pymongo.write_concern.WriteConcern(w=0))
        with pytest.raises(ConfigurationError, match="w=0"):
            DatabaseTier(w0, encoder_did=ME)
    finally:
        client.close()
    DatabaseTier(uri="mongodb://host/db?w=majority", encoder_did=ME)  # acknowledged: fine


def test_reads_go_to_the_primary_whatever_the_uri_asks() -> None:
    """The protocol takes a database read as lag-free (no lag term in the settle after a
    database claim): a URI routing reads to a secondary, or to majority-committed data, made
    the deciding read trail the primary by the replication lag, and an adversarial review
    (2026-12-05) had two encoders start one job through it."""
    for options in ("readPreference=secondary", "readPreference=secondaryPreferred",
                    "readPreference=nearest&maxStalenessSeconds=120",
                    "readConcernLevel=majority", "readPreference=primaryPreferred"):
        tier = DatabaseTier(uri=f"mongodb://127.0.0.1:9/db?{options}", encoder_did=ME)
        try:
            collection = tier._collection()  # pymongo connects lazily: nothing is sent
            assert collection.read_preference == pymongo.ReadPreference.PRIMARY, options
            assert collection.read_concern.level == "local", options
        finally:
            tier._drop_client()


def test_an_injected_collection_reading_elsewhere_than_the_primary_is_refused() -> None:
    client: Any = pymongo.MongoClient("mongodb://127.0.0.1:9/", connect=False)
    try:
        jobs = client["db"]["jobs"]
        DatabaseTier(jobs, encoder_did=ME)  # the defaults: the primary, its latest writes
        for elsewhere in (
                jobs.with_options(read_preference=pymongo.ReadPreference.SECONDARY_PREFERRED),
                jobs.with_options(read_concern=pymongo.read_concern.ReadConcern("majority"))):
            with pytest.raises(ConfigurationError, match="secondaries or majority"):
                DatabaseTier(elsewhere, encoder_did=ME)
    finally:
        client.close()


def test_a_user_name_with_an_encoded_colon_is_refused_without_showing_it() -> None:
    """``user%3Apassword@host`` (the whole user info encoded) was a user name holding the
    password, shown in clear by every message that shows the user."""
    with pytest.raises(ConfigurationError) as info:
        DatabaseTier(uri="mongodb://encoder%3AS3CRetPW@host/db", encoder_did=ME)
    assert "S3CRetPW" not in str(info.value) and "':'" in str(info.value)
    # A user name may hold an encoded ':' beside a password.
    DatabaseTier(uri="mongodb://us%3Aer:pw@host/db", encoder_did=ME)


@pytest.mark.asyncio
async def test_a_retried_finish_with_a_datetime_in_its_result_is_still_ours(
    make: Callable[..., DatabaseTier], clock: Clock
) -> None:
    """The result comes back through a tz-aware client as aware datetimes; compared as
    decoded documents, the retry of an applied finish read as refused, the job held."""
    collection: Any = mongomock.MongoClient(tz_aware=True)["spk-encoder-gateway"]["jobs"]
    add(collection)
    wrapped = AppliedThenLost(collection)
    me = make(ME, wrapped)
    token = await me.claim(JOB)
    result = {"cid": "bafy1", "encoded_at": datetime(2026, 1, 2, 3, 4, 5, 678000)}
    wrapped.lose_next = True
    with pytest.raises(TierTimeout):
        await me.finish(JOB, token, result)
    await me.finish(JOB, token, result)  # no ClaimRefused
    with pytest.raises(ClaimRefused):  # another result is not a retry
        await me.finish(JOB, token, {**result, "cid": "bafy2"})


@pytest.mark.asyncio
async def test_a_run_cancelled_as_a_database_answer_arrives_stays_cancelled(
        jobs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.11's ``asyncio.wait_for`` returned the answer and swallowed a cancellation
    of its caller that came in the same loop turn: a run its caller had cancelled went on to
    claim and process the job (an adversarial review, 2026-12-05). Here the run is cancelled
    in the very turn the first database call (the pre-claim read) is answered."""
    jobs.insert_one({"id": "J", "status": "queued", "attempt_count": 0})
    run: asyncio.Task[Any] | None = None
    wrap = asyncio.wrap_future

    def cancelling_when_answered(future: Any) -> Any:
        nonlocal run
        answer = wrap(future)
        if run is not None and asyncio.current_task() is run:
            task, run = run, None  # once: the first call
            answer.add_done_callback(lambda _answer: task.cancel())
        return answer

    started: list[str] = []

    async def process(job: Any) -> dict[str, str]:
        started.append(job.job_id)
        return {"cid": "bafy"}

    tier = DatabaseTier(jobs, encoder_did=ME)
    guard = OwnershipGuard(did=ME, clients=[tier], policy=Policy.hardened(TimingModel(
        monitor_lag=0.1, write_delay=0.05, pause=0.05, clock_drift=0.01, recheck_interval=0.5,
        cancel_latency=0.1, reassign_timeout=5.0, progress_timeout=60.0, confirm_timeout=1.0,
        retry_interval=0.05)))
    monkeypatch.setattr(asyncio, "wrap_future", cancelling_when_answered)
    try:
        run = task = asyncio.create_task(guard.run("J", process))
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await tier.aclose()
    assert not started and jobs.find_one({"id": "J"})["status"] == "queued"


def test_the_start_up_check_builds_no_client_for_an_srv_uri_and_accepts_a_plain_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``check_options`` asks the driver (a client that does not connect, closed at once),
    except for ``mongodb+srv://``, whose client resolves DNS records as it is built: start-up
    must not depend on the network."""
    DatabaseTier(uri=URI, encoder_did=ME).check_options()  # a plain URI the driver takes
    built: list[str] = []
    monkeypatch.setattr(_database, "MongoClient", lambda uri, **kw: built.append(uri))
    DatabaseTier(uri="mongodb+srv://user:s3cret@cluster.example/db",
                 encoder_did=ME).check_options()
    assert built == []


@pytest.mark.asyncio
async def test_a_client_the_driver_cannot_build_is_reported_with_its_reason_scrubbed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(uri: str, **options: Any) -> Any:
        raise pymongo.errors.ConfigurationError(f"conflicting TLS options in {uri}")

    monkeypatch.setattr(_database, "MongoClient", broken)
    db = DatabaseTier(uri=URI, encoder_did=ME)
    with pytest.raises(TierUnavailable) as raised:
        await db.observe(JOB)
    text = str(raised.value)
    assert "ConfigurationError: conflicting TLS options" in text and "s3cret" not in text
    await db.aclose()


# ----------------------------------------------------------------- from a mutation run
# Session 37's mutation run of verifier/_database.py: each test below kills a mutant that
# every test before it let pass.


def _nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"n": value}
    return value


def test_a_result_nested_to_the_limit_is_stored_and_one_level_more_is_refused(
    make: Callable[..., DatabaseTier],
) -> None:
    """Eight levels below the result's own (a manifest of renditions of tracks is a few):
    taken. Nine: refused before anything is sent. No test reached the limit: a check that
    never counted the levels (any nesting passed, as deep as Python's recursion) passed."""
    tier = make(ME)
    tier.check_result({"cid": "bafy", "deep": _nested(7)})
    tier.check_result({"cid": "bafy", "deep": [_nested(6)]})
    with pytest.raises(InvalidInputError, match="nested too deeply"):
        tier.check_result({"cid": "bafy", "deep": _nested(8)})
    with pytest.raises(InvalidInputError, match="nested too deeply"):
        tier.check_result({"cid": "bafy", "deep": [[[[[[[[["x"]]]]]]]]]})


@pytest.mark.asyncio
async def test_a_claim_token_of_the_longest_length_is_used_and_one_more_is_refused(
    db: DatabaseTier, jobs: Any
) -> None:
    add(jobs)
    await db.claim(JOB)
    with pytest.raises(ClaimRefused):  # a token of 256 goes into the filter: not ours
        await db.heartbeat(JOB, "t" * 256, {"pct": 1.0})
    with pytest.raises(InvalidInputError, match="256"):
        await db.heartbeat(JOB, "t" * 257, {"pct": 1.0})


@pytest.mark.asyncio
async def test_a_ping_above_1_percent_marks_the_job_running_and_one_at_1_does_not(
    db: DatabaseTier, jobs: Any
) -> None:
    """The gateway's lifecycle: ``running`` from the first ping above 1 %; progress left out
    is 0."""
    add(jobs)
    token = await db.claim(JOB)
    await db.heartbeat(JOB, token, {})
    assert doc(jobs)["progress"] == {"pct": 0.0, "download_pct": 0.0}
    await db.heartbeat(JOB, token, {"pct": 1.0, "download_pct": 100.0})
    assert doc(jobs)["status"] == "assigned"
    await db.heartbeat(JOB, token, {"pct": 1.5, "download_pct": 100.0})
    assert doc(jobs)["status"] == "running"


class BlockingUpdates(Blocking):
    """The fenced writes (heartbeat, finish, release) wait for the test to let them go: the
    ``nth`` update from the start (a release at the fifth failure makes two)."""

    def __init__(self, inner: Any, nth: int = 1) -> None:
        super().__init__(inner)
        self.updates, self.nth = 0, nth

    def update_one(self, *args: Any, **kwargs: Any) -> Any:
        self.updates += 1
        if self.updates == self.nth:
            self.entered.set()
            self.go.wait(timeout=10)
        return self.inner.update_one(*args, **kwargs)

    def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.find_one_and_update(*args, **kwargs)


@pytest.mark.asyncio
@pytest.mark.parametrize("write", ["heartbeat", "finish", "release", "fifth-failure"])
async def test_a_fenced_write_running_at_its_deadline_is_answered_by_its_own_end(
    make: Callable[..., DatabaseTier], jobs: Any, write: str
) -> None:
    """As the claim's: a running write cannot be cancelled, so its answer waits for its end
    rather than saying "no answer" while it may still land (a heartbeat taken as unanswered
    renews nothing, a finish or a release as unknown is retried; answered by its end, it is
    what happened). Only the claim's was tested (a mutation run, session 37)."""
    add(jobs, attempt_count=4)
    # At the fifth failure, the release's second update (the give-up) is the one that hangs.
    blocking = BlockingUpdates(jobs, nth=2 if write == "fifth-failure" else 1)
    db = make(collection=blocking, timeout=0.05)  # asyncio deadline 0.1 s
    token = await db.claim(JOB)
    call = {"heartbeat": lambda: db.heartbeat(JOB, token, {"pct": 5.0}),
            "finish": lambda: db.finish(JOB, token, {"cid": "bafy"}),
            "release": lambda: db.release(JOB, token, "giving it back", failed=False),
            "fifth-failure": lambda: db.release(JOB, token, "encode failed", failed=True),
            }[write]
    pending = asyncio.ensure_future(call())
    await asyncio.get_running_loop().run_in_executor(None, blocking.entered.wait, 5)
    done, _ = await asyncio.wait({pending}, timeout=0.5)  # well past the deadline
    assert not done, "answered while the write could still land"
    blocking.go.set()
    await pending  # its real outcome: it landed
    assert doc(jobs)["status"] == {"heartbeat": "running", "finish": "complete",
                                   "release": "queued", "fifth-failure": "failed"}[write]


@pytest.mark.asyncio
@pytest.mark.parametrize("stored", [
    {"status": "failed"},  # an operator failed it after our finish landed
    {"claim_token": "an-earlier-assignment-of-ours"},
    {"assigned_to": OTHER},
], ids=["not-complete", "another-token", "another-owner"])
async def test_a_finish_retry_is_landed_only_if_the_job_is_complete_under_this_claim(
    db: DatabaseTier, jobs: Any, stored: dict[str, Any]
) -> None:
    """A retried finish that matches nothing is taken as landed only when the job reads as
    complete, ours, under this claim's token, with this result: a mutation run (session 37)
    weakened the status check and the token check, each alone, and every test passed."""
    add(jobs)
    token = await db.claim(JOB)
    jobs.update_one({"id": JOB}, {"$set": {"status": "complete", "result": {"cid": "bafy"},
                                           **stored}})
    with pytest.raises(ClaimRefused, match="finish refused"):
        await db.finish(JOB, token, {"cid": "bafy"})


@pytest.mark.asyncio
async def test_a_finish_retry_whose_read_fails_is_not_landed(
    make: Callable[..., DatabaseTier], jobs: Any
) -> None:
    """The read that would tell a lost answer from a refusal fails: nothing is proven, so the
    finish is not taken as landed (it is refused, or unknown, never "committed")."""
    add(jobs)

    class ReadFails:
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.reads = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def find_one(self, *args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            raise pymongo.errors.AutoReconnect("connection reset")

    collection = ReadFails(jobs)
    db = make(collection=collection)
    token = await db.claim(JOB)
    jobs.update_one({"id": JOB}, {"$set": {"status": "complete", "result": {"cid": "bafy"}}})
    with pytest.raises(ClaimRefused):
        await db.finish(JOB, token, {"cid": "bafy"})
    assert collection.reads >= 1


@pytest.mark.parametrize(("name", "ok"), [("d" * 64, True), ("d" * 65, False), ("", False),
                                          (7, False)])
def test_a_database_name_is_a_short_plain_name(jobs: Any, name: Any, ok: bool) -> None:
    if ok:
        DatabaseTier(uri="mongodb://127.0.0.1:9/", database=name, encoder_did=ME)
    else:
        with pytest.raises(ConfigurationError, match="DATABASE_NAME"):
            DatabaseTier(uri="mongodb://127.0.0.1:9/", database=name, encoder_did=ME)

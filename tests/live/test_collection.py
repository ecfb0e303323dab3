"""The production ``DatabaseTier`` over the world's jobs (``sim.live._collection``).

Live runs give infrastructure encoders the real database client; its filters are evaluated
with MongoDB's semantics (mongomock's matcher) against the world's jobs, and its writes are the
world's own database operations. These tests pin both halves: what the client's fences refuse,
and what the world records when a write goes through. The filter alone decides (the world's
own predicates do not stand in for it), and dates are the world's time (``$currentDate``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import simpy
from pymongo import ReturnDocument

from sim import History, Scenario, Streams, World
from sim.live import UpdateResult, WorldCollection
from sim.live import _collection as collection_module
from sim.live._collection import _date
from verifier import ClaimRefused, DatabaseTier

E1, E2 = "did:key:e1", "did:key:e2"
JOB = "job-000000"


@pytest.fixture
def world() -> World:
    scenario = dataclasses.replace(Scenario(), lie_rate=0.0)
    w = World(simpy.Environment(), scenario, Streams.from_seed(1), History())
    w.add_job(JOB)
    return w


def _tier(world: World, did: str, **kwargs: Any) -> DatabaseTier:
    collection = WorldCollection(world, **kwargs)
    return DatabaseTier(collection, encoder_did=did)  # type: ignore[arg-type]


def _ops(world: World, op: str) -> list[Any]:
    return [r for r in world.history.records if r[3] == op]


def _state(world: World) -> tuple[Any, ...]:
    """Everything a refused write must leave alone."""
    job = world.jobs[JOB]
    return (job.status, job.owner, job.token, job.epoch, job.attempts, job.last_pinged,
            len(job.log_states), len(world.history.records), tuple(world.committed))


@pytest.mark.asyncio
async def test_observe_sees_the_queued_job(world: World) -> None:
    async with _tier(world, E1) as e1:
        seen = await e1.observe(JOB)
    assert (seen.status, seen.owner, seen.token) == ("queued", None, None)
    assert world.calls["database"] == 1  # the world counted the read, not the adapter


@pytest.mark.asyncio
async def test_a_claim_is_the_worlds_assignment_with_the_clients_token(world: World) -> None:
    async with _tier(world, E1) as e1:
        token = await e1.claim(JOB)
        seen = await e1.observe(JOB)
    job = world.jobs[JOB]
    assert token
    assert (job.owner, job.token, job.status, job.epoch) == (E1, token, "assigned", 1)
    assert [r[4:] for r in _ops(world, "assign")] == [("ok", ("e1", 1))]
    # The write log the lagging monitor reads has the assignment too.
    assert job.as_of(world.env.now) == ("assigned", E1, token)
    assert (seen.owner, seen.token) == (E1, token)


@pytest.mark.asyncio
async def test_a_second_claim_is_refused_and_changes_nothing(world: World) -> None:
    async with _tier(world, E1) as e1, _tier(world, E2) as e2:
        await e1.claim(JOB)
        before = _state(world)
        with pytest.raises(ClaimRefused, match="held by did:key:e1"):
            await e2.claim(JOB)
    assert _state(world) == before
    assert len(_ops(world, "assign")) == 1


@pytest.mark.asyncio
async def test_heartbeat_with_our_token_runs_and_a_wrong_token_is_refused(world: World) -> None:
    async with _tier(world, E1) as e1, _tier(world, E2) as e2:
        token = await e1.claim(JOB)
        before = _state(world)
        with pytest.raises(ClaimRefused):
            await e1.heartbeat(JOB, "not-our-token", {"pct": 5.0})
        with pytest.raises(ClaimRefused):  # another DID with the right token: still not ours
            await e2.heartbeat(JOB, token, {"pct": 5.0})
        assert _state(world) == before
        world.env.run(until=3.0)  # the heartbeat must renew the lease at the world's time
        await e1.heartbeat(JOB, token, {"pct": 5.0})
    job = world.jobs[JOB]
    assert (job.status, job.owner, job.token, job.last_pinged) == ("running", E1, token, 3.0)


@pytest.mark.asyncio
async def test_writes_after_an_unknown_claim_are_fenced_on_the_tokens_sent(world: World) -> None:
    """``token=None``: DatabaseTier's fence is ``claim_token: {"$in": [sent...]}``."""
    async with _tier(world, E1) as e1:
        await e1.claim(JOB)
        await e1.heartbeat(JOB, None, {"pct": 2.0})
        assert world.jobs[JOB].status == "running"
        await e1.finish(JOB, None, {"cid": "bafyx"})
    assert JOB in world.committed


@pytest.mark.asyncio
async def test_finish_commits_in_the_world_and_a_late_finish_is_refused(world: World) -> None:
    async with _tier(world, E1) as e1:
        token = await e1.claim(JOB)
        await e1.finish(JOB, token, {"cid": "bafyx"})
        with pytest.raises(ClaimRefused):  # complete is not a held status any more
            await e1.finish(JOB, token, {"cid": "bafyy"})
    assert JOB in world.committed
    assert world.jobs[JOB].status == "complete"
    assert [r[4:] for r in _ops(world, "commit")] == [("ok", ("e1", 1))]
    assert world.finished == 1


@pytest.mark.asyncio
async def test_release_requeues_and_a_later_claim_is_a_new_assignment(world: World) -> None:
    async with _tier(world, E1) as e1, _tier(world, E2) as e2:
        token = await e1.claim(JOB)
        assert world.gw_poll(E2)[0] is None  # the gateway drops the owned job from its queue
        assert JOB not in world.queue
        await e1.release(JOB, token, "giving up", failed=False)
        job = world.jobs[JOB]
        assert (job.owner, job.token, job.status, job.attempts) == (None, None, "queued", 0)
        assert JOB in world.queue
        assert len(_ops(world, "requeue")) == 1
        second = await e2.claim(JOB)  # absent owner matches the claim's "assigned_to": None
        with pytest.raises(ClaimRefused):  # e1's old token fences nothing now
            await e1.heartbeat(JOB, token, {"pct": 5.0})
    assert (job.owner, job.token, job.epoch) == (E2, second, 2)


@pytest.mark.asyncio
async def test_a_failed_release_counts_and_the_fifth_failure_fails_the_job(world: World) -> None:
    async with _tier(world, E1) as e1:
        token = await e1.claim(JOB)
        await e1.release(JOB, token, "broken input", failed=True)
        assert (world.jobs[JOB].status, world.jobs[JOB].attempts) == ("queued", 1)
        world.jobs[JOB].attempts = 4
        token = await e1.claim(JOB)
        await e1.release(JOB, token, "broken input", failed=True)
    job = world.jobs[JOB]
    assert (job.status, job.attempts, job.owner) == ("failed", 5, None)
    assert world.finished == 1
    assert JOB not in world.committed


@pytest.mark.asyncio
async def test_an_unknown_job_is_no_document(world: World) -> None:
    async with _tier(world, E1) as e1:
        seen = await e1.observe("no-such-job")
        with pytest.raises(ClaimRefused, match="does not exist"):
            await e1.claim("no-such-job")
    assert seen.job is None
    assert "no-such-job" not in world.jobs


@pytest.mark.parametrize(
    ("method", "args", "kwargs"),
    [
        ("update_one", ({"id": JOB, "assigned_to": E1}, {"$set": {"color": "red"}}), {}),
        ("update_one", ({"id": JOB, "assigned_to": E1},
                        {"$set": {"last_pinged": 1.0}, "$push": {"log": 1}}), {}),
        ("update_one", ({"id": JOB, "assigned_to": E1},
                        {"$set": {"status": "complete", "owner_note": "x"}}), {}),
        ("update_one", ({"id": JOB, "assigned_to": E1}, {"$set": {"status": "queued"}}), {}),
        ("update_one", ({"id": JOB}, {"$set": {"status": "complete"}}), {}),  # no writer
        ("update_one", ({"id": JOB, "assigned_to": E1}, {"$set": {"status": "complete"}}),
         {"upsert": True}),
        ("find_one_and_update", ({"id": JOB}, {"$set": {"status": "running"}}), {}),
        ("find_one_and_update", ({"id": JOB}, {"$set": {
            "status": "assigned", "assigned_to": E1, "claim_token": "t"},
            "$inc": {"claim_epoch": 2}}), {}),
        # Dates from the encoder's clock ($set), or not a date, or a lease not stamped: refused.
        ("update_one", ({"id": JOB, "assigned_to": E1},
                        {"$set": {"last_pinged": 1.0, "progress": {"pct": 5.0}}}), {}),
        ("update_one", ({"id": JOB, "assigned_to": E1},
                        {"$set": {"status": "complete", "completed_at": 1.0}}), {}),
        ("update_one", ({"id": JOB, "assigned_to": E1},
                        {"$currentDate": {"last_pinged": {"$type": "timestamp"}}}), {}),
        ("update_one", ({"id": JOB, "assigned_to": E1},
                        {"$currentDate": {"last_pinged": True, "color": True}}), {}),
        ("find_one_and_update", ({"id": JOB}, {"$set": {
            "status": "assigned", "assigned_to": E1, "claim_token": "t", "last_pinged": 1.0},
            "$inc": {"claim_epoch": 1}}), {}),
        ("find_one_and_update", ({"id": JOB}, {"$set": {
            "status": "assigned", "assigned_to": E1, "claim_token": "t"},
            "$currentDate": {"assigned_date": True}, "$inc": {"claim_epoch": 1}}), {}),
        ("find_one", ({"status": "queued"},), {}),  # not located by id
        ("find_one", ({"id": {"$ne": None}},), {}),
        ("find_one", ({"id": JOB},), {"projection": {"status": 1}}),
    ],
)
def test_unknown_shapes_fail_loudly_and_touch_nothing(
    world: World, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    before = (_state(world), dict(world.calls))
    with pytest.raises(NotImplementedError, match="WorldCollection"):
        getattr(WorldCollection(world), method)(*args, **kwargs)
    assert (_state(world), dict(world.calls)) == before


def test_the_collection_speaks_pymongo_shapes(world: World) -> None:
    """Direct calls, as pymongo would answer them: BEFORE by default, matched counts."""
    collection = WorldCollection(world)
    claim = {"$set": {"status": "assigned", "assigned_to": E1, "claim_token": "t1"},
             "$currentDate": {"last_pinged": True}, "$inc": {"claim_epoch": 1}}
    unowned = {"id": JOB, "assigned_to": None}
    before = collection.find_one_and_update(unowned, claim)
    assert before is not None and before["status"] == "queued" and "assigned_to" not in before
    assert collection.find_one_and_update(unowned, claim) is None  # now owned: no match
    assert collection.find_one({"id": JOB, "claim_token": "t1"}) == {
        **before, "status": "assigned", "assigned_to": E1, "claim_token": "t1",
        "claim_epoch": 1, "assigned_date": _date(0.0)}
    assert collection.find_one({"id": JOB, "claim_token": "t2"}) is None
    ping = {"$currentDate": {"last_pinged": {"$type": "date"}}}
    fence = {"id": JOB, "assigned_to": E1, "claim_token": "t1"}
    assert collection.update_one({**fence, "claim_token": "t2"}, ping) == UpdateResult(0, 0)
    assert collection.update_one(fence, ping) == UpdateResult(1, 1)


@pytest.fixture
def guarded(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Every world database operation (the world's own, and the collection's unfenced writes
    on the world) fails unless called inside the ``run`` hop."""
    trace: dict[str, Any] = {"inside": False, "hops": 0, "slept": [], "delays": []}

    def guard(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*a: Any, **k: Any) -> Any:
            assert trace["inside"], "world touched outside run"
            answer, delay = original(*a, **k)
            trace["delays"].append(delay)
            return answer, delay

        return wrapped

    for name in ("db_read", "db_claim", "db_heartbeat", "db_finish", "db_release"):
        setattr(world, name, guard(getattr(world, name)))
    for name in ("_heartbeat_unfenced", "_release_unfenced"):
        monkeypatch.setattr(collection_module, name, guard(getattr(collection_module, name)))
    yield trace


@pytest.mark.asyncio
async def test_every_access_goes_through_run_and_the_delay_is_slept(
    world: World, guarded: dict[str, Any]
) -> None:
    def hop(fn: Callable[[], Any]) -> Any:
        assert not guarded["inside"], "run is not re-entered"
        guarded["hops"] += 1
        guarded["inside"] = True
        try:
            return fn()
        finally:
            guarded["inside"] = False

    def sleep(delay: float) -> None:
        assert not guarded["inside"], "the delay is slept outside run"
        guarded["slept"].append(delay)

    async with _tier(world, E1, run=hop, sleep=sleep) as e1:
        await e1.observe(JOB)
        token = await e1.claim(JOB)
        await e1.heartbeat(JOB, token, {"pct": 5.0})
        await e1.release(JOB, token, "giving up", failed=True)
        token = await e1.claim(JOB)
        await e1.finish(JOB, token, {"cid": "bafyx"})
    # One hop per database call (check and act together), and each reply delay is the world's.
    assert guarded["hops"] == 6
    assert guarded["slept"] == guarded["delays"]
    assert len(guarded["slept"]) == 6 and all(d > 0 for d in guarded["slept"])
    assert world.calls["database"] == 6


@pytest.mark.asyncio
async def test_a_refused_write_is_still_one_database_round_trip(world: World) -> None:
    slept: list[float] = []
    async with _tier(world, E1) as e1, _tier(world, E2, sleep=slept.append) as e2:
        await e1.claim(JOB)
        calls = world.calls["database"]
        with pytest.raises(ClaimRefused):
            await e2.claim(JOB)
    # The unmatched update and the read that words the refusal: two calls, two delays.
    assert world.calls["database"] == calls + 2
    assert len(slept) == 2 and all(d > 0 for d in slept)


# ---------------------------------------------------------------------- dates: the world's clock


@pytest.mark.asyncio
async def test_current_date_fields_are_the_worlds_time(world: World) -> None:
    """``$currentDate`` is the server's clock, and the world is the server: the claim's
    ``assigned_date``/``last_pinged`` and each heartbeat's ``last_pinged`` are world time."""
    world.env.run(until=5.0)
    async with _tier(world, E1) as e1:
        token = await e1.claim(JOB)
        seen = await e1.observe(JOB)
        world.env.run(until=9.0)
        await e1.heartbeat(JOB, token, {"pct": 0.5})
    job = world.jobs[JOB]
    assert (job.owned_at, job.last_pinged) == (5.0, 9.0)
    assert seen.job is not None and seen.job.assigned_date == _date(5.0).isoformat()
    assert seen.job.last_pinged == _date(5.0).isoformat()
    assert job.status == "running"  # the world's rule: any heartbeat runs an assigned job


# ---------------------------------------------------------------------- the filter decides


class SpyCollection(WorldCollection):
    """The collection DatabaseTier talks to, keeping each filter and update it was sent."""

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.sent: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []

    def find_one_and_update(self, filter: Mapping[str, Any], update: Mapping[str, Any],
                            *args: Any, **kwargs: Any) -> Any:
        self.sent.append((filter, update))
        return super().find_one_and_update(filter, update, *args, **kwargs)

    def update_one(self, filter: Mapping[str, Any], update: Mapping[str, Any],
                   **kwargs: Any) -> UpdateResult:
        self.sent.append((filter, update))
        return super().update_one(filter, update, **kwargs)


def _without(filter: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in filter.items() if k not in keys}


@pytest.mark.asyncio
@pytest.mark.parametrize("weakening", ["owner", "owner_and_status"])
async def test_a_weakened_claim_filter_takes_an_owned_job(world: World, weakening: str) -> None:
    """The collection obeys the filter, not its own rule: DatabaseTier's claim filter, minus its
    owner condition (and, second case, its status condition: a blind write), takes a job E1
    holds, while the filter as DatabaseTier sends it refuses. A world that applied its own
    "claimable and unowned" check would refuse both, and a live run could never show a
    weakened production filter."""
    async with _tier(world, E1) as e1:
        await e1.claim(JOB)
    job = world.jobs[JOB]
    if weakening == "owner":
        job.status = "queued"  # a stale status left beside an owner (real data has both)
    spy = SpyCollection(world)
    async with DatabaseTier(spy, encoder_did=E2) as e2:  # type: ignore[arg-type]
        before = _state(world)
        with pytest.raises(ClaimRefused, match="held by did:key:e1"):
            await e2.claim(JOB)
    assert _state(world) == before  # the production filter took nothing
    (production, update), = spy.sent
    assert "assigned_to" in production and "status" in production
    weakened = _without(production, "assigned_to", *(["status"] if weakening != "owner" else []))
    taken = WorldCollection(world).find_one_and_update(
        weakened, update, return_document=ReturnDocument.AFTER)
    assert taken is not None and taken["assigned_to"] == E2
    assert (job.owner, job.token, job.status, job.epoch) == (
        E2, update["$set"]["claim_token"], "assigned", 2)
    assert [r[4:] for r in _ops(world, "assign")] == [("ok", ("e1", 1)), ("ok", ("e2", 2))]


@pytest.mark.asyncio
async def test_a_weakened_fence_commits_where_the_production_fence_refuses(world: World) -> None:
    """The same for the fence: DatabaseTier's finish filter, minus its status condition,
    commits a second result to a job already complete; the production fence refuses it. The
    world's own fence (owner, token, held status) is not consulted."""
    spy = SpyCollection(world)
    async with DatabaseTier(spy, encoder_did=E1) as e1:  # type: ignore[arg-type]
        token = await e1.claim(JOB)
        await e1.finish(JOB, token, {"cid": "bafyx"})
        with pytest.raises(ClaimRefused):
            await e1.finish(JOB, token, {"cid": "bafyy"})
    assert len(_ops(world, "commit")) == 1
    production, update = spy.sent[-1]
    assert update["$set"]["status"] == "complete" and "status" in production
    result = WorldCollection(world).update_one(_without(production, "status"), update)
    assert result == UpdateResult(1, 1)
    assert [r[4:] for r in _ops(world, "commit")] == [("ok", ("e1", 1))] * 2


@pytest.mark.asyncio
async def test_a_weakened_release_fence_requeues_a_job_held_under_another_token(
    world: World
) -> None:
    """A fence without the token: E1's stale release (token of its first assignment) is
    refused by DatabaseTier's fence, and goes through once the token condition is dropped."""
    spy = SpyCollection(world)
    async with DatabaseTier(spy, encoder_did=E1) as e1:  # type: ignore[arg-type]
        old = await e1.claim(JOB)
        await e1.release(JOB, old, "retry", failed=False)
        await e1.claim(JOB)
        before = _state(world)
        with pytest.raises(ClaimRefused):
            await e1.release(JOB, old, "stale", failed=False)
        assert _state(world) == before
    production, update = spy.sent[-1]
    assert "claim_token" in production
    result = WorldCollection(world).update_one(_without(production, "claim_token"), update)
    assert result == UpdateResult(1, 1)
    job = world.jobs[JOB]
    assert (job.status, job.owner, job.token, job.attempts) == ("queued", None, None, 0)
    assert len(_ops(world, "requeue")) == 2

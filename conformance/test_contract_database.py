"""Contract suite: :class:`~verifier.DatabaseTier` against generated documents in mongomock.

The database is ground truth, but its documents are written by several programs (the gateway,
aid, older encoders, operators by hand), so a document may have any shape: both status
vocabularies, a missing or null owner, wrong types, lists where strings belong, keys that look
like operators, a string ``_id`` without ``id``. Callers are untrusted too: job ids and claim
tokens may be any text, dicts with ``$`` keys, or not strings at all. Properties:

1. nothing but a :class:`~verifier.VerifierError` escapes, from any public method;
2. reads never modify the collection, and ``verify_job_ownership(...).is_safe_to_process`` or an
   ``observe()`` naming us in a processable status happen only when a document whose ``id`` *is*
   the job id names us in ``assigned``/``running``;
3. ``claim`` returns only after taking a document whose ``id`` is the job id, whose ``status`` is
   a claimable string and which had no owner; it then changed exactly that document, to ours;
4. ``heartbeat``/``finish``/``release`` return only when a document whose ``id`` is the job id
   was held by us (``assigned_to`` our DID, ``status`` assigned/running) under the token given
   (or, with ``None``, a token of this tier's own claim), and they changed only that document;
5. a call that raised changed nothing.

mongomock's conditional update is not atomic across threads: every example runs in one event
loop, and the tier uses its single worker thread, so calls are serialised.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import mongomock
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.contract import (
    CLAIMABLE_STATUSES,
    KNOWN_STATUSES,
    PROCESSABLE_STATUSES,
    contract_did,
)
from conformance.replies import JOB_ID, OTHER_DID, OTHER_JOB_ID, did_spellings, hostile_ids
from verifier import DatabaseTier, InvalidInputError, Observation, OwnershipResult, VerifierError

ME = "did:key:z6MktwupdmLXVVqTzCw4i46r4uGyosGXRnR3XjN4Zq7oMMsw"
NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
_AVAILABLE = frozenset({"pending", "queued", "created"})
_ABSENT = object()


# --------------------------------------------------------------------------- documents

_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10)
    | st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
)
#: BSON-storable values, operator-looking keys included (allowed below the top level).
_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["$ne", "$gt", "$in", "$where", "a.b", "pct", "cid"])
        | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6),
        children, max_size=3),
    max_leaves=8,
)
_STATUSES = st.one_of(
    st.sampled_from(sorted(KNOWN_STATUSES)),
    st.sampled_from(["Queued", " pending", ""]),
    st.lists(st.sampled_from(["queued", "pending", "assigned", "running"]), min_size=1,
             max_size=2),
    st.sampled_from([{"$in": ["queued"]}, {"$ne": None}, 0, None]),
)
_OWNERS = st.one_of(
    did_spellings(ME), did_spellings(OTHER_DID),
    st.sampled_from([None, "", [None], [ME], [None, OTHER_DID], {"$ne": None}, 0, ME.upper()]),
)
_IDS = st.one_of(
    st.just(JOB_ID),
    st.sampled_from([OTHER_JOB_ID, "demo-job-1", JOB_ID.upper(), "", None, 7,
                     [JOB_ID], [JOB_ID, "x"], {"$eq": JOB_ID}]),
)
_EXTRA_KEYS = st.sampled_from(["a.b", "owner", "encoder_id", "x"]) | st.text(
    alphabet="abcxyz._", min_size=1, max_size=5)
_TOKENS = st.sampled_from(["tok-1", "tok-2", "tok-9", "", None, ["tok-1"], {"$ne": None}, 1])


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """One job document of any shape the collection may hold."""
    doc: dict[str, Any] = {}
    fields = {
        "id": _IDS, "status": _STATUSES, "assigned_to": _OWNERS, "claim_token": _TOKENS,
        "attempt_count": st.none() | st.integers(0, 6) | st.sampled_from(["3", 4.0, [1]]),
        "last_pinged": _SCALARS, "progress": _VALUES, "metadata": _VALUES, "result": _VALUES,
    }
    for name, values in fields.items():
        if name == "id" or draw(st.booleans()):
            doc[name] = draw(values)
    for _ in range(draw(st.integers(0, 2))):
        doc[draw(_EXTRA_KEYS)] = draw(_VALUES)
    if draw(st.integers(0, 9)) == 0:  # the string ``_id`` quirk: no ``id`` at all
        doc.pop("id", None)
        doc["_id"] = JOB_ID
    return doc


@st.composite
def near_claimable(draw: st.DrawFn) -> dict[str, Any]:
    """An unowned document of our job in a claimable status, or one aspect off."""
    doc: dict[str, Any] = {"id": JOB_ID, "status": draw(st.sampled_from(sorted(
        CLAIMABLE_STATUSES))), "created_at": NOW.replace(tzinfo=None, microsecond=0)}
    if draw(st.booleans()):
        doc["assigned_to"] = None
    aspect = draw(st.sampled_from(["none", "id", "status", "owner", "attempts"]))
    if aspect == "id":
        doc["id"] = draw(_IDS)
    elif aspect == "status":
        doc["status"] = draw(_STATUSES)
    elif aspect == "owner":
        doc["assigned_to"] = draw(_OWNERS)
    elif aspect == "attempts":
        doc["attempt_count"] = draw(st.integers(0, 6) | st.sampled_from(["3", None]))
    return doc


def _collection_with(docs: list[dict[str, Any]]) -> Any:
    collection = mongomock.MongoClient()["spk-encoder-gateway"]["jobs"]
    used: set[Any] = set()
    for doc in docs:
        doc = dict(doc)
        if "_id" in doc and doc["_id"] in used:
            del doc["_id"]  # the string ``_id`` quirk, at most once per collection
        used.add(doc.get("_id"))
        collection.insert_one(doc)
    return collection


def snapshot(collection: Any) -> list[dict[str, Any]]:
    return list(collection.find({}))


def _counter() -> Callable[[], str]:
    count = itertools.count(1)
    return lambda: f"tok-{next(count)}"


def run_on(collection: Any, body: Callable[[DatabaseTier], Awaitable[Any]]
           ) -> tuple[Any, Exception | None]:
    """Run ``body`` against a fresh tier over ``collection``, in one fresh event loop."""
    async def go() -> tuple[Any, Exception | None]:
        async with DatabaseTier(collection, encoder_did=ME, token_factory=_counter(),
                                timeout=5.0) as tier:
            try:
                return await body(tier), None
            except Exception as exc:  # judged by the caller: only VerifierError may escape
                return None, exc

    return asyncio.run(go())


def assert_only_verifier_errors(error: Exception | None) -> None:
    if error is not None and not isinstance(error, VerifierError):
        raise AssertionError(f"{type(error).__name__} escaped: {error!r}") from error


def about(doc: dict[str, Any], job_id: Any) -> bool:
    """The document *is* the job's: its ``id`` is exactly the id asked (no list, no operator)."""
    return isinstance(job_id, str) and type(doc.get("id")) is str and doc["id"] == job_id


def status_in(doc: dict[str, Any], statuses: frozenset[str]) -> bool:
    """The stored status is one of ``statuses``: a plain string, not a list that contains one."""
    status = doc.get("status")
    return type(status) is str and status in statuses


def held_by_us(doc: dict[str, Any]) -> bool:
    return doc.get("assigned_to") == ME and status_in(doc, PROCESSABLE_STATUSES)


def changed(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[int]:
    assert len(before) == len(after), "documents were added or removed"
    return [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if b != a]


# --------------------------------------------------------------------------- reads

_READS: dict[str, Callable[[DatabaseTier, Any, Any], Awaitable[Any]]] = {
    "get_job": lambda t, job, did: t.get_job(job),
    "observe": lambda t, job, did: t.observe(job),
    "verify_job_ownership": lambda t, job, did: t.verify_job_ownership(job, did),
    "is_job_available_to_claim": lambda t, job, did: t.is_job_available_to_claim(job),
}


@given(docs=st.lists(documents() | near_claimable(), max_size=4),
       job_id=st.just(JOB_ID) | hostile_ids(), did=st.just(ME) | hostile_ids(),
       name=st.sampled_from(sorted(_READS)))
def test_reads_change_nothing_and_never_prove_ownership_without_a_document(
    docs: list[dict[str, Any]], job_id: Any, did: Any, name: str
) -> None:
    collection = _collection_with(docs)
    before = snapshot(collection)
    result, error = run_on(collection, lambda t: _READS[name](t, job_id, did))
    assert_only_verifier_errors(error)
    assert snapshot(collection) == before, "a read modified the collection"
    ours = [d for d in before if about(d, job_id) and isinstance(d.get("assigned_to"), str)
            and contract_did(d["assigned_to"]) == contract_did(did) != ""
            and status_in(d, PROCESSABLE_STATUSES)]
    if isinstance(result, OwnershipResult) and result.is_safe_to_process:
        assert ours, f"safe to process without a document: {result}"
    if isinstance(result, Observation) and (
            contract_did(result.owner) == ME and result.status in PROCESSABLE_STATUSES):
        assert [d for d in ours if d.get("claim_token") == result.token or (
            result.token is None and not d.get("claim_token"))], result
    if getattr(result, "available", False):
        assert [d for d in before if about(d, job_id) and status_in(d, _AVAILABLE)
                and not d.get("assigned_to")], result


# --------------------------------------------------------------------------- claim

@given(docs=st.lists(near_claimable() | documents(), max_size=4),
       job_id=st.just(JOB_ID) | hostile_ids())
def test_claim_takes_only_a_claimable_unowned_document(
    docs: list[dict[str, Any]], job_id: Any
) -> None:
    collection = _collection_with(docs)
    before = snapshot(collection)
    token, error = run_on(collection, lambda t: t.claim(job_id))
    assert_only_verifier_errors(error)
    after = snapshot(collection)
    if error is not None:
        assert after == before, f"claim raised {error!r} but changed the collection"
        clean = [d for d in before if about(d, job_id)]
        claimable = len(clean) == 1 and clean[0].get("assigned_to", None) is None and (
            status_in(clean[0], CLAIMABLE_STATUSES))
        if claimable and not isinstance(error, InvalidInputError):
            raise AssertionError(f"a claimable unowned document was refused: {error!r}")
        return
    touched = changed(before, after)
    assert len(touched) == 1, f"claim changed {len(touched)} documents"
    was, now = before[touched[0]], after[touched[0]]
    assert about(was, job_id), f"claimed a document of another id: {was}"
    assert status_in(was, CLAIMABLE_STATUSES), f"claimed a document in status {was.get('status')!r}"
    assert was.get("assigned_to", None) is None, f"claimed an owned document: {was}"
    assert now["assigned_to"] == ME and now["claim_token"] == token
    assert now["status"] == "assigned"


# --------------------------------------------------------------------------- fenced writes

_TAMPERING = st.sampled_from([
    None, {"assigned_to": OTHER_DID}, {"claim_token": "tok-9"}, {"status": "complete"},
    {"status": "queued"}, {"status": ["assigned"]}, {"assigned_to": [ME]},
    {"assigned_to": "did:" + ME[len("did:key:"):]}, {"claim_token": ["tok-1"]},
    {"assigned_to": [ME, OTHER_DID]}, {"status": ["running", "complete"]},
    {"id": [JOB_ID]}, {"attempt_count": "3"}, {"attempt_count": 4},
])
_WRITES = st.sampled_from(["heartbeat", "finish", "release", "release_failed"])


def _write(name: str, tier: DatabaseTier, job_id: Any, token: Any, payload: Any
           ) -> Awaitable[None]:
    if name == "heartbeat":
        return tier.heartbeat(job_id, token, payload)
    if name == "finish":
        return tier.finish(job_id, token, payload)
    return tier.release(job_id, token, "test", failed=name == "release_failed")


@given(docs=st.lists(documents(), max_size=3), claim_first=st.booleans(),
       tampering=_TAMPERING, name=_WRITES,
       token=st.sampled_from(["claimed", None, "tok-9", "tok-1"]) | hostile_ids(),
       job_id=st.just(JOB_ID) | st.just(JOB_ID) | hostile_ids(),
       payload=st.sampled_from([{"pct": 42.5, "download_pct": 100}, {"cid": "bafy"}, {}])
       | st.dictionaries(st.sampled_from(["pct", "cid", "$set", "a.b", "download_pct"]),
                         _VALUES, max_size=2))
def test_fenced_writes_need_our_current_assignment(
    docs: list[dict[str, Any]], claim_first: bool, tampering: dict[str, Any] | None, name: str,
    token: Any, job_id: Any, payload: Any,
) -> None:
    fresh = {"id": JOB_ID, "status": "queued"}
    collection = _collection_with([fresh, *docs] if claim_first else docs)
    state: dict[str, Any] = {}

    async def scenario(tier: DatabaseTier) -> None:
        remembered: list[str] = []
        if claim_first:
            # Refused when another document of the job is matched first: then nothing is ours.
            with contextlib.suppress(VerifierError):
                remembered.append(await tier.claim(JOB_ID))
        if tampering and remembered:
            collection.update_one({"claim_token": remembered[0]}, {"$set": tampering})
        state["remembered"] = remembered
        state["before"] = snapshot(collection)
        given_token = (remembered[0] if remembered else "tok-1") if token == "claimed" else token
        state["token"] = given_token
        await _write(name, tier, job_id, given_token, payload)

    _result, error = run_on(collection, scenario)
    assert_only_verifier_errors(error)
    if "before" not in state:
        return  # the claim itself failed in an unexpected way: reported above
    before, after = state["before"], snapshot(collection)
    if error is not None:
        assert after == before, f"{name} raised {error!r} but changed the collection"
        return
    given_token = state["token"]
    accepted = state["remembered"] if given_token is None else [given_token]
    touched = changed(before, after)
    assert len(touched) == 1, f"{name} changed {len(touched)} documents"
    was = before[touched[0]]
    assert about(was, job_id), f"{name} wrote to a document of another id: {was}"
    assert held_by_us(was), f"{name} wrote to a document we do not hold: {was}"
    assert type(was.get("claim_token")) is str and was["claim_token"] in accepted, (
        f"{name} with token {given_token!r} wrote under {was.get('claim_token')!r}")


# --------------------------------------------------------------------------- stored shapes

#: Documents as other programs may have stored them, and whether a claim may take them.
STORED_SHAPES: dict[str, tuple[dict[str, Any], bool]] = {
    **{f"claimable_{s}": ({"id": JOB_ID, "status": s}, True) for s in sorted(CLAIMABLE_STATUSES)},
    "owner_null": ({"id": JOB_ID, "status": "queued", "assigned_to": None}, True),
    "owner_empty_string": ({"id": JOB_ID, "status": "queued", "assigned_to": ""}, False),
    "owner_other": ({"id": JOB_ID, "status": "queued", "assigned_to": OTHER_DID}, False),
    "owner_us": ({"id": JOB_ID, "status": "queued", "assigned_to": ME}, False),
    "owner_list_with_null": ({"id": JOB_ID, "status": "queued",
                              "assigned_to": [None, OTHER_DID]}, False),
    "status_list": ({"id": JOB_ID, "status": ["queued"]}, False),
    "status_list_mixed": ({"id": JOB_ID, "status": ["complete", "queued"]}, False),
    "status_operator_object": ({"id": JOB_ID, "status": {"$in": ["queued"]}}, False),
    "status_case": ({"id": JOB_ID, "status": "Queued"}, False),
    "status_missing": ({"id": JOB_ID}, False),
    "id_list": ({"id": [JOB_ID], "status": "queued"}, False),
    "id_list_mixed": ({"id": [OTHER_JOB_ID, JOB_ID], "status": "queued"}, False),
    "id_operator_object": ({"id": {"$eq": JOB_ID}, "status": "queued"}, False),
    "string__id_without_id": ({"_id": JOB_ID, "status": "queued"}, False),
    "running_ours": ({"id": JOB_ID, "status": "running", "assigned_to": ME}, False),
    "complete": ({"id": JOB_ID, "status": "complete"}, False),
}


@pytest.mark.parametrize("shape", sorted(STORED_SHAPES))
def test_claim_on_each_stored_shape(shape: str) -> None:
    """The claim's filter, against every stored shape: MongoDB matches a scalar condition
    against any element of an array, so lists must not pass for strings."""
    doc, claimable = STORED_SHAPES[shape]
    collection = _collection_with([doc])
    before = snapshot(collection)
    token, error = run_on(collection, lambda t: t.claim(JOB_ID))
    assert_only_verifier_errors(error)
    if claimable:
        assert error is None and collection.find_one({"id": JOB_ID})["claim_token"] == token
    else:
        assert error is not None, f"claimed {doc}"
        assert snapshot(collection) == before


#: Changes to our assignment after the claim, and whether the fence must still let us write.
TAMPERED: dict[str, tuple[dict[str, Any], bool]] = {
    "untouched": ({}, True),
    "heartbeat_running": ({"status": "running"}, True),
    "reassigned": ({"assigned_to": OTHER_DID}, False),
    "reclaimed_by_us": ({"claim_token": "tok-9"}, False),
    "requeued": ({"status": "queued"}, False),
    "completed": ({"status": "complete"}, False),
    "owner_other_spelling": ({"assigned_to": "did:" + ME[len("did:key:"):]}, False),
    "owner_list_two_owners": ({"assigned_to": [ME, OTHER_DID]}, False),
    "status_list_with_done": ({"status": ["assigned", "complete"]}, False),
    "token_list": ({"claim_token": ["tok-1", "tok-9"]}, False),
    "id_list": ({"id": [JOB_ID, OTHER_JOB_ID]}, False),
}


@pytest.mark.parametrize("name", ["heartbeat", "finish", "release", "release_failed"])
@pytest.mark.parametrize("tamper", sorted(TAMPERED))
def test_fenced_write_on_each_stored_shape(tamper: str, name: str) -> None:
    change, writable = TAMPERED[tamper]
    collection = _collection_with([{"id": JOB_ID, "status": "pending"}])
    state: dict[str, Any] = {}

    async def scenario(tier: DatabaseTier) -> None:
        token = await tier.claim(JOB_ID)
        if change:
            collection.update_one({"claim_token": token}, {"$set": change})
        state["before"] = snapshot(collection)
        payload = {"cid": "bafy"} if name == "finish" else {"pct": 50.0}
        await _write(name, tier, JOB_ID, token, payload)

    _result, error = run_on(collection, scenario)
    assert_only_verifier_errors(error)
    if writable:
        assert error is None, error
    else:
        assert error is not None, f"{name} wrote through the fence after {change}"
        assert snapshot(collection) == state["before"]


# --------------------------------------------------------------------------- teeth

@pytest.mark.parametrize("name", ["heartbeat", "finish", "release", "release_failed"])
@pytest.mark.parametrize("by_token", [True, False], ids=["token", "remembered"])
def test_our_own_assignment_is_writable(name: str, by_token: bool) -> None:
    """The suite's other half: the fence does not refuse everything."""
    collection = _collection_with([{"id": JOB_ID, "status": "pending", "attempt_count": 2}])

    async def scenario(tier: DatabaseTier) -> None:
        token = await tier.claim(JOB_ID)
        payload = {"cid": "bafy"} if name == "finish" else {"pct": 50.0}
        await _write(name, tier, JOB_ID, token if by_token else None, payload)

    _result, error = run_on(collection, scenario)
    assert error is None, error
    assert "assigned_to" not in collection.find_one({"id": JOB_ID}) or name in (
        "heartbeat", "finish")


@given(job_id=hostile_ids(), token=hostile_ids(), name=_WRITES)
def test_hostile_ids_and_tokens_never_reach_a_filter(job_id: Any, token: Any, name: str) -> None:
    collection = _collection_with([{"id": JOB_ID, "status": "queued"}, {"id": OTHER_JOB_ID,
                                    "status": "running", "assigned_to": ME, "claim_token": "t"}])
    before = snapshot(collection)
    _result, error = run_on(collection, lambda t: _write(name, t, job_id, token, {"pct": 1.0}))
    assert_only_verifier_errors(error)
    assert error is not None, "a write without our assignment succeeded"
    if not isinstance(job_id, str) or not isinstance(token, str | None):
        assert isinstance(error, InvalidInputError), error
    assert snapshot(collection) == before

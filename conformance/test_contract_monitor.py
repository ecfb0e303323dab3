"""Contract suite: :class:`~verifier.GatewayMonitorService` against generated monitor answers.

Every answer ``GET {base}/jobs/{id}`` may give (``docs/contract.md``, "Gateway Monitor API"
and "Observed by running the real monitor server", see :mod:`conformance.replies`) is served
through respx to each public method. Properties, for every example:

1. nothing but a :class:`~verifier.VerifierError` escapes (``InvalidInputError`` for bad ids);
2. ``verify_job_ownership(...).is_safe_to_process`` and an ``observe()`` naming us in a
   processable status happen **only** when the body was a 200 ``success: true`` job whose id is
   the one asked, whose ``assigned_to`` normalises to our DID, whose status is ``assigned`` or
   ``running``, and which is a real record, not the server's synthetic stand-in (its
   fingerprint: no ``_id``, or its blank fields; ``docs/contract.md``, "Synthetic stand-in
   jobs"): a stand-in never confirms, whatever id, status and owner it names, and every job the
   client returns for one is flagged ``synthetic``; "available to claim" only for a 200
   ``success: true`` unowned job in a claimable status (the deployed encoder's defects 1–3 were
   the opposite);
3. one call is at most one request (no hidden retry), and the id travels as one encoded path
   segment;
4. where the contract fixes the outcome (a documented answer; a 3xx, 429, 5xx, transport failure,
   truncated or oversized body, a server that never answers), the call answers or raises
   accordingly, so the suite shows the client is not "safe" by refusing everything;
5. a 429 is :class:`~verifier.TierRateLimited` with a finite, non-negative ``retry_after`` (or
   none), whatever ``Retry-After`` said.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import mocked
from conformance.contract import PROCESSABLE_STATUSES, contract_did, is_monitor_stand_in
from conformance.mocked import assert_only_verifier_errors
from conformance.replies import (
    JOB_ID,
    NO_JSON,
    OBJECT_ID,
    Reply,
    answered_job,
    expected_for_id,
    hostile_ids,
    ident_of,
    is_ours,
    job_records,
    json_reply,
    near_proofs,
    quirk_records,
    replies,
    stand_ins,
)
from verifier import (
    AvailabilityResult,
    GatewayMonitorJob,
    GatewayMonitorService,
    InvalidInputError,
    Observation,
    OwnershipResult,
    TierRateLimited,
    TierUnavailable,
)

BASE = "https://monitor.test/api"
ME = "did:key:z6MktwupdmLXVVqTzCw4i46r4uGyosGXRnR3XjN4Zq7oMMsw"
#: Short enough that a server that never answers costs little, long enough for a 1 MiB body.
TIMEOUT = 0.25
_AVAILABLE = frozenset({"pending", "queued", "created"})

_Method = Callable[[GatewayMonitorService, Any, Any], Awaitable[Any]]
JOB_METHODS: dict[str, _Method] = {
    "get_job_details": lambda s, job, did: s.get_job_details(job),
    "verify_job_ownership": lambda s, job, did: s.verify_job_ownership(job, did),
    "is_job_available_to_claim": lambda s, job, did: s.is_job_available_to_claim(job),
    "observe": lambda s, job, did: s.observe(job),
}
OTHER_METHODS: dict[str, _Method] = {
    "get_job_status": lambda s, job, did: s.get_job_status(job),
    "batch_status": lambda s, job, did: s.batch_status([job, "demo-job-1"]),
    "health": lambda s, job, did: s.health(),
}
WRITES: dict[str, _Method] = {
    "claim": lambda s, job, did: s.claim(job),
    "heartbeat": lambda s, job, did: s.heartbeat(job, None, {"pct": 5.0}),
    "finish": lambda s, job, did: s.finish(job, None, {"cid": "bafy"}),
    "release": lambda s, job, did: s.release(job, None, "x", failed=False),
}


# --------------------------------------------------------------------------- answers

@st.composite
def job_answers(draw: st.DrawFn, job_id: str = JOB_ID, me: str = ME) -> Reply:
    """The documented answers of ``GET /jobs/{id}``, quirks included; proofs of ownership and
    near misses (one aspect off) are favoured, since that boundary is what the suite tests, and
    so is the server's stand-in in its real shape (naming us, another encoder or nobody)."""
    kind = draw(st.sampled_from(
        ["near", "near", "near", "stand_in", "stand_in", "record", "nested", "not_found",
         "not_found_200", "route_not_found", "failed_fetch", "internal_error"]))
    if kind in ("near", "stand_in", "record", "nested"):
        records = {"near": near_proofs(job_id, me), "stand_in": stand_ins(job_id, me)}.get(
            kind, job_records(job_id, me) | near_proofs(job_id, me) | stand_ins(job_id, me))
        record = draw(records)
        data: Any = record
        if kind == "nested":
            data = {"job": record, "rank": draw(st.none() | st.integers(0, 50))}
        return json_reply(kind, 200, {"success": True, "data": data},
                          expect=expected_for_id(record, job_id))
    if kind == "not_found":
        return json_reply(kind, 404, {"success": False, "error": "Job not found"},
                          expect="answer")
    if kind == "not_found_200":
        return json_reply(kind, 200, {"success": False, "error": "Job not found"},
                          expect="answer")
    if kind == "route_not_found":  # a wrong base URL: says nothing about the job
        return json_reply(kind, 404, {"error": "Route not found"}, expect="raise")
    if kind == "failed_fetch":  # missing *or* existing job, gateway unreachable
        return json_reply(kind, 500, {"success": False, "error": "Failed to fetch job details"},
                          expect="raise")
    return json_reply(kind, 500, {"error": "Internal server error"}, expect="raise")


@st.composite
def other_answers(draw: st.DrawFn, job_id: str = JOB_ID) -> Reply:
    """Documented answers of ``/jobs/{id}/status``, ``/jobs/batch-status`` and ``/health``."""
    status = draw(st.sampled_from(["assigned", "running", "queued", None, 7]))
    return draw(st.sampled_from([
        json_reply("status", 200, {"success": True, "data": {
            "job_id": job_id, "status": status, "progress": 10, "encoder_id": ME,
            "error": None, "metadata": {}}}),
        json_reply("status_not_found", 404, {"success": False, "error": "Job status not found"}),
        json_reply("batch", 200, {"success": True, "data": {job_id: "assigned"}}),
        json_reply("batch_other", 200, {"success": True, "data": {"x": "assigned"}}),
        json_reply("batch_gateway_down", 200, {}),
        json_reply("batch_too_many", 400, {"success": False, "error": "Maximum 50 job IDs"}),
        json_reply("health", 200, {"status": "ok"}),
    ]))


# --------------------------------------------------------------------------- driver

def exchange(reply: Reply, method: _Method, job_id: Any = JOB_ID,
             did: Any = ME) -> tuple[Any, Exception | None, list[httpx.Request]]:
    """Run one public call against ``reply`` in a fresh event loop and client."""
    return mocked.exchange(
        reply, BASE, lambda http: GatewayMonitorService(BASE, client=http, timeout=TIMEOUT),
        lambda service: method(service, job_id, did))


def assert_rate_limit_hint(reply: Reply, error: Exception | None) -> None:
    if reply.status != 429 or reply.failure is not None or reply.hang:
        return
    assert isinstance(error, TierRateLimited), f"429 gave {error!r}"
    hint = error.retry_after
    assert hint is None or (math.isfinite(hint) and hint >= 0), hint
    value = reply.extra.get("retry_after")
    if isinstance(value, str) and value.strip().isdigit():
        assert hint == float(value.strip())


def served_job(reply: Reply) -> Any:
    """The job object a 200 ``success: true`` answer carries (``None`` for any other reply)."""
    body = reply.payload
    if (reply.failure is not None or reply.hang or reply.status != 200
            or not isinstance(body, dict) or body.get("success") is not True):
        return None
    return answered_job(body.get("data"))


def proves_ours(reply: Reply, job_id: str = JOB_ID, me: str = ME) -> bool:
    """The truth: a 200 ``success: true`` answer whose job is ours and processable, and a real
    record: the server's stand-in proves nothing, whatever it names (its owner is the gateway's
    belief)."""
    job = served_job(reply)
    return is_ours(job, job_id, me, PROCESSABLE_STATUSES) and not is_monitor_stand_in(job)


def proves_available(reply: Reply, job_id: str = JOB_ID) -> bool:
    """A 200 ``success: true`` unowned job in a claimable status, not naming another job."""
    body = reply.payload
    if reply.failure is not None or reply.status != 200 or not isinstance(body, dict):
        return False
    job = answered_job(body.get("data"))
    return (
        body.get("success") is True and isinstance(job, dict)
        and ident_of(job) in (None, "", job_id)
        and contract_did(job.get("assigned_to")) == ""
        and job.get("status") in _AVAILABLE
    )


# --------------------------------------------------------------------------- properties

def check_job_answer(reply: Reply, name: str) -> None:
    """Properties 1–5 for one answer of ``GET /jobs/{id}`` and one public method."""
    result, error, requests = exchange(reply, JOB_METHODS[name])
    assert_only_verifier_errors(error)
    assert len(requests) == 1, f"{len(requests)} requests for one call"
    assert requests[0].url.raw_path == b"/api/jobs/" + JOB_ID.encode()
    assert_rate_limit_hint(reply, error)

    if isinstance(result, OwnershipResult) and result.is_safe_to_process:
        assert proves_ours(reply), f"safe to process without proof: {result}"
    job = result.job if isinstance(result, Observation) else result
    if isinstance(job, GatewayMonitorJob) and not job.synthetic:
        # A record flagged synthetic (the monitor's stand-in) is returned as documented and
        # every judgement discounts it; any other record naming us must be a proof.
        mine = contract_did(job.assigned_to) == ME and job.status in PROCESSABLE_STATUSES
        assert not mine or proves_ours(reply), f"{name} reads as ours without proof: {job}"
    if is_monitor_stand_in(served_job(reply)):
        # The stand-in never confirms: whatever job the client returns for it says so.
        assert not isinstance(job, GatewayMonitorJob) or job.synthetic, (
            f"{name} took the stand-in for a record: {job}")
        assert not isinstance(result, OwnershipResult) or not result.is_owned, result
    if isinstance(result, AvailabilityResult) and result.available:
        assert proves_available(reply), f"available without proof: {result}"

    if reply.expect == "raise":
        assert error is not None, f"{reply.label} answered {result!r}"
    if reply.expect == "answer":
        assert error is None, f"{reply.label} raised {error!r}"
        if isinstance(result, OwnershipResult):
            assert result.is_safe_to_process == proves_ours(reply), result


@given(reply=replies(job_answers(), hang=True), name=st.sampled_from(sorted(JOB_METHODS)))
def test_job_answers_never_prove_ownership_without_proof(reply: Reply, name: str) -> None:
    check_job_answer(reply, name)


QUIRKS = quirk_records(JOB_ID, ME)


@pytest.mark.parametrize("name", sorted(JOB_METHODS))
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "job_rank"])
@pytest.mark.parametrize("quirk", sorted(QUIRKS))
def test_every_contract_quirk(quirk: str, nested: bool, name: str) -> None:
    """Each quirk of the contract, deterministically (the search finds them, not every run)."""
    record = QUIRKS[quirk]
    data = {"job": record, "rank": 3} if nested else record
    check_job_answer(json_reply(quirk, 200, {"success": True, "data": data},
                                expect=expected_for_id(record, JOB_ID)), name)


def test_the_generated_answers_hold_real_records_and_stand_ins() -> None:
    """The quirks hold both sides of the fingerprint: real records carry MongoDB's ``_id``, the
    stand-ins (named so) are the real server's shape, with our DID among their owners."""
    stand_in_names = {name for name, record in QUIRKS.items() if is_monitor_stand_in(record)}
    assert {name for name in QUIRKS if name.startswith("stand_in")} <= stand_in_names
    assert all("_id" not in QUIRKS[name] for name in QUIRKS if name.startswith("stand_in"))
    assert is_ours(QUIRKS["stand_in_naming_us"], JOB_ID, ME, PROCESSABLE_STATUSES)
    for name in ("proof", "proof_running_short_did", "object_progress", "legacy_fields",
                 "proof_with_video_fields", "string__id_without_id"):
        assert QUIRKS[name].get("_id") in (OBJECT_ID, JOB_ID) and name not in stand_in_names
        assert proves_ours(json_reply(name, 200, {"success": True, "data": QUIRKS[name]}))


@given(record=near_proofs(JOB_ID, ME))
def test_every_generated_real_record_carries_an__id(record: dict[str, Any]) -> None:
    if not is_monitor_stand_in(record):
        assert record.get("_id") not in (None, "", {}, []), record


@pytest.mark.parametrize("name", sorted(JOB_METHODS))
@given(record=stand_ins(JOB_ID, ME))
def test_a_stand_in_in_the_real_servers_shape_never_confirms(
    name: str, record: dict[str, Any]
) -> None:
    reply = json_reply("stand_in", 200, {"success": True, "data": record},
                       expect=expected_for_id(record, JOB_ID))
    assert is_monitor_stand_in(record) and not proves_ours(reply)
    check_job_answer(reply, name)


@given(reply=replies(other_answers()), name=st.sampled_from(sorted(OTHER_METHODS)))
def test_status_batch_and_health_answers_are_typed_or_errors(reply: Reply, name: str) -> None:
    result, error, requests = exchange(reply, OTHER_METHODS[name])
    assert_only_verifier_errors(error)
    assert len(requests) == 1, f"{len(requests)} requests for one call"
    if name == "health":
        # Documented: True iff it answered 200, False on any other outcome; never raises.
        assert error is None, f"health raised {error!r}"
        assert isinstance(result, bool)
        assert not result or (reply.failure is None and not reply.hang and reply.status == 200)
        if reply.status != 200 or reply.failure is not None or reply.hang:
            assert result is False
        return
    assert_rate_limit_hint(reply, error)
    if reply.expect == "raise":
        assert error is not None, f"{reply.label} answered {result!r}"
    if name == "get_job_status" and result is not None:
        assert isinstance(result, dict)
        assert result.get("job_id") in (None, "", JOB_ID), result
        assert result.get("status") is None or isinstance(result.get("status"), str)
        assert reply.status == 200 and reply.payload is not NO_JSON
    if name == "batch_status" and result is not None:
        assert isinstance(result, dict) and set(result) <= {JOB_ID, "demo-job-1"}, result
        assert all(isinstance(v, str) for v in result.values()), result


@given(reply=replies(job_answers()), name=st.sampled_from(sorted(WRITES)))
def test_writes_are_refused_without_a_request(reply: Reply, name: str) -> None:
    result, error, requests = exchange(reply, WRITES[name])
    assert isinstance(error, TierUnavailable), f"a read-only tier answered {name}: {result!r}"
    assert requests == []


@given(job_id=hostile_ids(), did=st.one_of(st.just(ME), hostile_ids()),
       name=st.sampled_from(sorted(JOB_METHODS)), record=job_records(JOB_ID, ME))
def test_hostile_ids_are_refused_or_sent_as_one_segment(
    job_id: Any, did: Any, name: str, record: dict[str, Any]
) -> None:
    # The answer claims to be about whatever was asked: the id decides everything here.
    asked = job_id if isinstance(job_id, str) else JOB_ID
    reply = json_reply("echo", 200, {"success": True, "data": {**record, "id": asked}})
    result, error, requests = exchange(reply, JOB_METHODS[name], job_id, did)
    assert_only_verifier_errors(error)
    if isinstance(error, InvalidInputError):
        assert requests == [], "a refused id must not reach the network"
        return
    assert isinstance(job_id, str)
    assert len(requests) == 1
    path = requests[0].url.raw_path.decode("ascii")
    assert requests[0].url.host == "monitor.test" and path.startswith("/api/jobs/"), path
    segment = path[len("/api/jobs/"):]
    assert "/" not in segment and "?" not in segment and "#" not in segment, path
    assert urllib.parse.unquote(segment) == job_id
    if isinstance(result, OwnershipResult) and result.is_safe_to_process:
        assert contract_did(did) == ME

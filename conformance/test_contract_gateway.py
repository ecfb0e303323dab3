"""Contract suite: :class:`~verifier.LegacyGatewayClient` against generated gateway answers.

The legacy gateway (``docs/contract.md``, "Legacy gateway endpoints") is the weakest tier: its
``jobstatus`` may nest the job as ``{job, rank}``, a refused write is a bare HTTP 500, 2026
deployments answer ``{status: "success"|"error", message, error}`` and an empty body also meant
success. Every answer of :mod:`conformance.replies` is served through respx. Properties:

1. nothing but a :class:`~verifier.VerifierError` escapes, from any public method;
2. ``observe``/``job_status`` name us in a processable status **only** for a 2xx job record
   whose id is the one asked, whose ``assigned_to`` normalises to our DID and whose status is
   ``assigned`` or ``running``;
3. a write (``acceptJob``, ``finishJob``, ``pingJob``, ``rejectJob``, ``failJob``,
   ``cancelJob``, ``heartbeat``) returns **only** for a documented success shape (2xx with an
   empty body, or a JSON object whose ``status`` is ``"success"``); anything else raises;
4. one call is one request: signed by our DID, about the job asked, never retried; ids travel
   as one encoded path segment or are refused before any request;
5. where the contract fixes the outcome, the call answers or raises accordingly.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import mocked
from conformance.contract import PROCESSABLE_STATUSES, contract_did
from conformance.mocked import assert_expectation, assert_only_verifier_errors
from conformance.replies import (
    JOB_ID,
    NO_JSON,
    OTHER_DID,
    Reply,
    answered_job,
    expected_for_id,
    hostile_ids,
    hostile_mappings,
    hostile_numbers,
    is_ours,
    job_records,
    json_reply,
    json_values,
    near_proofs,
    quirk_records,
    replies,
)
from verifier import (
    ClaimRefused,
    EncoderIdentity,
    GatewayMonitorJob,
    InvalidInputError,
    LegacyGatewayClient,
    Observation,
    validate_job_id,
    verify_jws,
)

BASE = "https://gateway.test"
API = "/api/v0/gateway/"
IDENTITY = EncoderIdentity.from_seed(bytes(range(32)))
ME = IDENTITY.did

_Call = Callable[[LegacyGatewayClient, Any], Awaitable[Any]]
READS: dict[str, _Call] = {
    "job_status": lambda g, job: g.job_status(job),
    "observe": lambda g, job: g.observe(job),
}
#: Each write: (route, whether the signed payload names the job, the call).
WRITES: dict[str, tuple[str, bool, _Call]] = {
    "accept_job": ("acceptJob", True, lambda g, job: g.accept_job(job)),
    "claim": ("acceptJob", True, lambda g, job: g.claim(job)),
    "reject_job": ("rejectJob", True, lambda g, job: g.reject_job(job)),
    "release": ("rejectJob", True, lambda g, job: g.release(job, None, "x", failed=False)),
    "fail_job": ("failJob", True, lambda g, job: g.fail_job(job, "ffmpeg died")),
    "release_failed": ("failJob", True, lambda g, job: g.release(job, None, "x", failed=True)),
    "cancel_job": ("cancelJob", True, lambda g, job: g.cancel_job(job)),
    "finish_job": ("finishJob", True, lambda g, job: g.finish_job(job, "bafyresult")),
    "finish": ("finishJob", True, lambda g, job: g.finish(job, None, {"cid": "bafyresult"})),
    "ping_job": ("pingJob", True, lambda g, job: g.ping_job(job, 42.5, 100)),
    "heartbeat": ("pingJob", True, lambda g, job: g.heartbeat(job, None, {"pct": 42.5})),
    "node_heartbeat": ("heartbeat", False, lambda g, job: g.node_heartbeat()),
}
OFFERS: dict[str, tuple[str, _Call]] = {
    "get_job": ("getJob", lambda g, job: g.get_job()),
    "my_job": ("myJob", lambda g, job: g.my_job()),
    "stats": ("stats", lambda g, job: g.stats()),
}


# --------------------------------------------------------------------------- answers

def _no_job(data: Any) -> bool:
    """The gateway's ways of saying "no job" (``_is_no_job`` in the client, restated)."""
    if data is None or data == {}:
        return True
    return isinstance(data, dict) and data.get("job", ...) is None and "id" not in data


def _expected_status(body: Any, job_id: str) -> str | None:
    if _no_job(body):
        return "answer"
    if body.get("status") == "error" and "id" not in body:
        return "raise"  # the 2026 error shape: an outage, not an answer
    return expected_for_id(answered_job(body), job_id)


@st.composite
def status_answers(draw: st.DrawFn, job_id: str = JOB_ID, me: str = ME) -> Reply:
    """Documented answers of ``GET jobstatus/{id}``: the record, the public code's
    ``{job, rank}``, "no job" in all its spellings, NestJS errors, the 2026 error shape."""
    kind = draw(st.sampled_from(
        ["near", "near", "near", "nested", "record", "no_job", "not_found", "empty",
         "internal_error", "error_2026"]))
    if kind in ("near", "nested", "record"):
        records = near_proofs(job_id, me) if kind != "record" else job_records(job_id, me)
        record = draw(records)
        body: Any = record
        if kind == "nested":
            body = {"job": record, "rank": draw(st.none() | st.integers(0, 50))}
        return json_reply(kind, 200, body, expect=_expected_status(body, job_id))
    if kind == "no_job":
        return json_reply(kind, 200, {"job": None, "rank": None}, expect="answer")
    if kind == "not_found":
        return json_reply(kind, 404, {"statusCode": 404, "message": "Not Found"},
                          expect="answer")
    if kind == "empty":
        return Reply(kind, 200, NO_JSON, b"", expect="answer")
    if kind == "internal_error":
        return json_reply(kind, 500, {"statusCode": 500, "message": "Internal server error"},
                          expect="raise")
    return json_reply(kind, 200, {"status": "error", "message": "db down", "error": "E_DB"},
                      expect="raise")


_WRITE_ANSWERS = st.sampled_from([
    Reply("empty_200", 200, NO_JSON, b"", expect="answer"),
    Reply("empty_201", 201, NO_JSON, b"", expect="answer"),  # NestJS answers POST with 201
    json_reply("success_2026", 200, {"status": "success", "message": "Job accepted"},
               expect="answer"),
    json_reply("success_2026_full", 200,
               {"status": "success", "message": "ok", "error": None}, expect="answer"),
    json_reply("error_2026", 200,
               {"status": "error", "message": "Job not assigned", "error": "E_OWNER"},
               expect="raise"),
    json_reply("not_yours", 500, {"statusCode": 500, "message": "Job does not belong to you"},
               expect="raise"),
    json_reply("internal_error", 500, {"statusCode": 500, "message": "Internal server error"},
               expect="raise"),
    json_reply("conflict", 409, {"message": "already accepted"}, expect="raise"),
    json_reply("unauthorized", 401, {"message": "bad signature"}, expect="raise"),
    json_reply("bad_gateway", 502, {"message": "Bad Gateway"}, expect="raise"),
])


@st.composite
def write_answers(draw: st.DrawFn) -> Reply:
    """Documented write answers, plus objects that carry a ``status``/``success``/``error`` of
    their own (the fields a refusal would use), of any value."""
    if draw(st.booleans()):
        return draw(_WRITE_ANSWERS)
    body = draw(st.fixed_dictionaries({}, optional={
        "status": st.sampled_from(["success", "error", "ok", "", None, "Success"]) | json_values(3),
        "success": st.sampled_from([True, False, "false", 0, 1, None]),
        "error": st.sampled_from([None, "", "Job does not belong to you"]),
        "message": st.sampled_from(["ok", "Job does not belong to you"]),
    }))
    return json_reply("fields", draw(st.sampled_from([200, 201, 204])), body)


@st.composite
def offer_answers(draw: st.DrawFn) -> Reply:
    """``getJob``/``myJob``/``stats``: an offered job (any id), "no job", counters."""
    kind = draw(st.sampled_from(["job", "job", "no_job", "empty", "not_found", "stats"]))
    if kind == "job":
        offered = draw(st.sampled_from([JOB_ID, "demo-job-1", "", ".."]) | st.text(max_size=12))
        record = draw(job_records(offered, OTHER_DID))
        return json_reply(kind, 200, record)
    if kind == "no_job":
        return json_reply(kind, 200, draw(st.sampled_from([{}, None, {"job": None}])),
                          expect="answer")
    if kind == "empty":
        return Reply(kind, 200, NO_JSON, b"")
    if kind == "not_found":
        return json_reply(kind, 404, {"statusCode": 404, "message": "Not Found"})
    return json_reply(kind, 200, {"queued": 3, "assigned": 1, "running": 0})


# --------------------------------------------------------------------------- driver

def exchange(reply: Reply, call: _Call, job_id: Any = JOB_ID
             ) -> tuple[Any, Exception | None, list[httpx.Request]]:
    """Run one public call against ``reply`` in a fresh event loop and client."""
    return mocked.exchange(reply, BASE,
                           lambda http: LegacyGatewayClient(BASE, IDENTITY, client=http),
                           lambda client: call(client, job_id))


def proves_ours(reply: Reply, job_id: str = JOB_ID) -> bool:
    """The truth: a 2xx job record (``{job, rank}`` unwrapped) that is ours and processable."""
    return (
        reply.failure is None and 200 <= reply.status < 300
        and is_ours(answered_job(reply.payload), job_id, ME, PROCESSABLE_STATUSES)
    )


def documented_write_success(reply: Reply) -> bool:
    """The success shapes of a gateway write: 2xx and an empty body (legacy), a JSON object
    whose ``status`` is ``"success"`` (2026), or an object that carries no sign of refusal
    (no ``status``; ``success`` absent or ``true``; ``error`` absent or empty). ``null``,
    ``{"success": "false"}``, ``{"error": "Job does not belong to you"}``... are not
    documented successes, so they must raise."""
    if reply.failure is not None or not 200 <= reply.status < 300:
        return False
    if not reply.content.strip():
        return True
    body = reply.payload
    if not isinstance(body, dict) or body.get("success", True) is not True:
        return False
    if "status" in body:
        return body["status"] == "success"
    return body.get("error") in (None, "")


# --------------------------------------------------------------------------- properties

def check_status_answer(reply: Reply, name: str) -> None:
    """Properties 1, 2, 4, 5 for one answer of ``GET jobstatus/{id}``."""
    result, error, requests = exchange(reply, READS[name])
    assert_only_verifier_errors(error)
    assert len(requests) == 1, f"{len(requests)} requests for one call"
    assert requests[0].method == "GET"
    assert requests[0].url.raw_path == f"{API}jobstatus/{JOB_ID}".encode()

    job = result.job if isinstance(result, Observation) else result
    if isinstance(job, GatewayMonitorJob) and not job.synthetic:
        # A record flagged synthetic (no id, no status) is discounted by every judgement.
        mine = contract_did(job.assigned_to) == ME and job.status in PROCESSABLE_STATUSES
        assert not mine or proves_ours(reply), f"{name} reads as ours without proof: {job}"
    assert_expectation(reply, result, error)


@given(reply=replies(status_answers()), name=st.sampled_from(sorted(READS)))
def test_jobstatus_never_proves_ownership_without_proof(reply: Reply, name: str) -> None:
    check_status_answer(reply, name)


QUIRKS = quirk_records(JOB_ID, ME)


@pytest.mark.parametrize("name", sorted(READS))
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "job_rank"])
@pytest.mark.parametrize("quirk", sorted(QUIRKS))
def test_every_contract_quirk(quirk: str, nested: bool, name: str) -> None:
    """Each quirk of the contract, deterministically, flat and in the public code's
    ``{job, rank}``."""
    record = QUIRKS[quirk]
    body = {"job": record, "rank": 0} if nested else record
    check_status_answer(json_reply(quirk, 200, body, expect=_expected_status(body, JOB_ID)),
                        name)


@given(reply=replies(write_answers()), name=st.sampled_from(sorted(WRITES)))
def test_writes_succeed_only_on_documented_success(reply: Reply, name: str) -> None:
    route, names_job, call = WRITES[name]
    result, error, requests = exchange(reply, call)
    assert_only_verifier_errors(error)
    assert len(requests) == 1, f"{len(requests)} requests for one call"
    request = requests[0]
    assert request.method == "POST" and request.url.raw_path == f"{API}{route}".encode()
    body = json.loads(request.content)
    did, payload = verify_jws(body["jws"])
    assert set(body) == {"jws"} and did == ME
    if names_job:
        assert payload["job_id"] == JOB_ID

    if error is None:
        assert result is None
        assert documented_write_success(reply), f"{name} succeeded on {reply.label}"
    if isinstance(error, ClaimRefused):
        # A refusal is an answer: the gateway must really have answered (no outage, no 429).
        assert reply.failure is None and reply.status not in (429, 502, 503, 504)
    assert_expectation(reply, result, error)


@given(reply=replies(offer_answers()), name=st.sampled_from(sorted(OFFERS)))
def test_offers_and_stats_are_typed_or_errors(reply: Reply, name: str) -> None:
    route, call = OFFERS[name]
    result, error, requests = exchange(reply, call)
    assert_only_verifier_errors(error)
    assert len(requests) == 1 and requests[0].url.raw_path == f"{API}{route}".encode()
    if name == "stats":
        assert error is not None or isinstance(result, dict)
        return
    if result is not None:
        # An offered id goes into later URLs and signed bodies: it must be a usable id.
        assert isinstance(result, GatewayMonitorJob)
        assert validate_job_id(result.id) == result.id
    if reply.expect == "answer":
        assert error is None and result is None, (result, error)


@given(job_id=hostile_ids(), name=st.sampled_from(sorted(READS) + sorted(WRITES)),
       record=near_proofs(JOB_ID, ME))
def test_hostile_ids_are_refused_or_sent_verbatim(job_id: Any, name: str,
                                                  record: dict[str, Any]) -> None:
    asked = job_id if isinstance(job_id, str) else JOB_ID
    if name in READS:
        reply, call = json_reply("echo", 200, {**record, "id": asked}), READS[name]
    else:
        reply, call = Reply("empty", 200, NO_JSON, b""), WRITES[name][2]
    _result, error, requests = exchange(reply, call, job_id)
    assert_only_verifier_errors(error)
    if name == "node_heartbeat":
        return  # takes no job id
    if isinstance(error, InvalidInputError):
        assert requests == [], "a refused id must not reach the network"
        return
    assert isinstance(job_id, str) and len(requests) == 1
    url = requests[0].url
    assert url.host == "gateway.test" and url.query == b""
    if name in READS:
        path = url.raw_path.decode("ascii")
        assert path.startswith(API + "jobstatus/"), path
        segment = path[len(API + "jobstatus/"):]
        assert "/" not in segment and urllib.parse.unquote(segment) == job_id, path
    else:
        _did, payload = verify_jws(json.loads(requests[0].content)["jws"])
        assert payload["job_id"] == job_id


@given(name=st.sampled_from(["heartbeat", "ping_job", "finish", "fail_job", "release_failed"]),
       progress=hostile_mappings(("pct", "download_pct")), result=hostile_mappings(("cid",)),
       pct=hostile_numbers(), download_pct=hostile_numbers(),
       text=st.none() | st.integers() | st.text(max_size=3000))
def test_hostile_arguments_are_refused_before_any_request(
    name: str, progress: Any, result: Any, pct: Any, download_pct: Any, text: Any
) -> None:
    calls: dict[str, _Call] = {
        "heartbeat": lambda g, job: g.heartbeat(job, None, progress),
        "ping_job": lambda g, job: g.ping_job(job, pct, download_pct),
        "finish": lambda g, job: g.finish(job, None, result),
        "fail_job": lambda g, job: g.fail_job(job, text),
        "release_failed": lambda g, job: g.release(job, None, text, failed=True),
    }
    _result, error, requests = exchange(Reply("empty", 200, NO_JSON, b""), calls[name])
    assert_only_verifier_errors(error)
    if error is not None:
        assert isinstance(error, InvalidInputError) and requests == [], (error, requests)
    else:
        assert len(requests) == 1


# The public gateway code (NestJS) answers a successful acceptJob and pingJob with HTTP 201 and
# the text body 'ok': the client must take it as success (it used to stall on it).
@pytest.mark.parametrize("name", ["accept_job", "ping_job"])
def test_public_gateway_ok_text_is_success(name: str) -> None:
    reply = Reply("ok_text", 201, NO_JSON, b"ok", (("content-type", "text/html"),))
    _result, error, _requests = exchange(reply, WRITES[name][2])
    if error is not None:
        raise error

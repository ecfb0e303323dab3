"""Contract suite: :class:`~verifier.GatewayAidClient` against generated Gateway Aid answers.

Gateway Aid (``docs/contract.md``, "Gateway Aid") answers ``GET job/{id}`` with
``{job: {..., is_owned_by_requester}}``, claims with an atomic conditional update (200 with the
assignment, or 409 ``JOB_ALREADY_ASSIGNED``), filters ``update-job``/``complete-job`` on the
owner, and reports an unapproved DID with ``data.code``. Every answer of
:mod:`conformance.replies` is served through respx. Properties:

1. nothing but a :class:`~verifier.VerifierError` escapes, from any public method;
2. ``observe()`` names us in a processable status **only** for a 2xx ``{job}`` answer (not
   ``success: false``) whose job is the one asked, in ``assigned``/``running``, and that aid says
   is ours (``is_owned_by_requester: true``, the owner our DID or hidden);
3. ``claim``/``claim_job`` return **only** for a 2xx ``success: true`` assignment that names no
   other owner and no other job; ``update-job``/``complete-job`` (``heartbeat``/``finish``)
   return **only** for a 2xx ``success: true``; ``release`` always raises, without a request;
4. one call is one request, carrying our DID (header and body) and the job asked; ids travel
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
from conformance.contract import CONFIGURATION_CODES, PROCESSABLE_STATUSES, contract_did
from conformance.mocked import assert_expectation, assert_only_verifier_errors
from conformance.replies import (
    ABSENT,
    JOB_ID,
    OTHER_DID,
    OTHER_JOB_ID,
    Reply,
    did_spellings,
    expected_for_id,
    hostile_ids,
    hostile_mappings,
    hostile_numbers,
    ident_of,
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
    GatewayAidClient,
    GatewayMonitorJob,
    InvalidInputError,
    Observation,
    TierUnavailable,
)

BASE = "https://aid.test"
API = "/aid/v1/"
ME = "did:key:z6MktwupdmLXVVqTzCw4i46r4uGyosGXRnR3XjN4Zq7oMMsw"
ASSIGNED_AT = "2026-01-02T03:04:05.678Z"

_Call = Callable[[GatewayAidClient, Any], Awaitable[Any]]
READS: dict[str, _Call] = {
    "get_job": lambda a, job: a.get_job(job),
    "observe": lambda a, job: a.observe(job),
}
CLAIMS: dict[str, _Call] = {
    "claim_job": lambda a, job: a.claim_job(job),
    "claim": lambda a, job: a.claim(job),
}
#: owner-conditioned writes: (route, call)
OWNER_WRITES: dict[str, tuple[str, _Call]] = {
    "update_job": ("update-job", lambda a, job: a.update_job(job, "running", 42.5, 100)),
    "heartbeat": ("update-job", lambda a, job: a.heartbeat(job, None, {"pct": 42.5})),
    "complete_job": ("complete-job", lambda a, job: a.complete_job(job, "bafyresult")),
    "finish": ("complete-job", lambda a, job: a.finish(job, None, {"cid": "bafyresult"})),
}
OTHERS: dict[str, _Call] = {
    "health": lambda a, job: a.health(),
    "list_jobs": lambda a, job: a.list_jobs(),
}

_ERRORS = st.sampled_from([
    json_reply("not_authorized", 403, {"success": False, "error": "Encoder not authorized",
                                       "data": {"code": "ENCODER_NOT_AUTHORIZED"}},
               expect="raise"),
    json_reply("inactive", 200, {"success": False, "error": "Encoder is inactive",
                                 "data": {"code": "ENCODER_INACTIVE"}}, expect="raise"),
    json_reply("server_error", 500, {"success": False, "error": "Internal error"},
               expect="raise"),
    json_reply("bad_request", 400, {"success": False, "error": "job_id is required"},
               expect="raise"),
])


# --------------------------------------------------------------------------- answers

def _job_expect(record: dict[str, Any], flag: Any) -> str | None:
    """``answer`` when the contract makes the ``{job}`` answer readable for both ``get_job``
    and ``observe``: our id, a boolean (or absent) flag, and an owner that does not contradict
    the flag; ``raise`` for another job's id; ``None`` without an id (see ``expected_for_id``)."""
    by_id = expected_for_id(record, JOB_ID)
    if by_id != "answer":
        return by_id
    owner = record.get("assigned_to")
    owned = flag is True
    if owner and (contract_did(owner) == ME) != owned:
        return None  # contradictory: get_job answers, observe raises
    return "answer"


@st.composite
def job_answers(draw: st.DrawFn, job_id: str = JOB_ID, me: str = ME) -> Reply:
    """Documented answers of ``GET job/{id}``: ``{success, job: {..., is_owned_by_requester}}``
    with the owner shown or hidden, 404, and the shared errors."""
    kind = draw(st.sampled_from(["near", "near", "near", "hidden", "record", "not_found",
                                 "error"]))
    if kind == "not_found":
        return json_reply(kind, 404, {"success": False, "error": "Job not found"},
                          expect="answer")
    if kind == "error":
        return draw(_ERRORS)
    record = draw(near_proofs(job_id, me) if kind != "record" else job_records(job_id, me))
    if kind == "hidden":
        record.pop("assigned_to", None)
    flag = draw(st.sampled_from([True, True, False, ABSENT]))
    job = dict(record) if flag is ABSENT else {**record, "is_owned_by_requester": flag}
    body: dict[str, Any] = {"job": job}
    if draw(st.booleans()):
        body = {"success": True, **body}
    return json_reply(kind, 200, body, expect=_job_expect(record, flag))


@st.composite
def claim_answers(draw: st.DrawFn, job_id: str = JOB_ID, me: str = ME) -> Reply:
    """Documented answers of ``POST claim-job``: the assignment (our DID in any spelling),
    conflicts, 404, ``success: false``, the shared errors, and assignments that name another
    owner or job."""
    kind = draw(st.sampled_from(["granted", "granted", "odd_grant", "conflict", "not_found",
                                 "refused_200", "error"]))
    if kind == "granted":
        body = {"success": True, "job_id": job_id, "assigned_to": draw(did_spellings(me)),
                "assigned_at": ASSIGNED_AT, "job_details": {"input": {"uri": "ipfs://Qm"}}}
        return json_reply(kind, 200, body, expect="answer")
    if kind == "odd_grant":
        body = draw(st.fixed_dictionaries({"success": st.just(True)}, optional={
            "job_id": st.sampled_from([job_id, OTHER_JOB_ID, None, "", 7]),
            "assigned_to": st.sampled_from([me, OTHER_DID, None, "", "x", 7])
            | did_spellings(me),
            "assigned_at": st.sampled_from([ASSIGNED_AT, "", None, 0]),
            "assigned_date": st.sampled_from([ASSIGNED_AT, None]),
        }))
        return json_reply(kind, 200, body)
    if kind == "conflict":
        return json_reply(kind, 409, {"success": False, "error": "Job already assigned",
                                      "data": {"code": "JOB_ALREADY_ASSIGNED"}}, expect="raise")
    if kind == "not_found":
        return json_reply(kind, 404, {"success": False, "error": "Job not found"},
                          expect="raise")
    if kind == "refused_200":
        return json_reply(kind, 200, {"success": False, "error": "Job not available"},
                          expect="raise")
    return draw(_ERRORS)


@st.composite
def owner_write_answers(draw: st.DrawFn) -> Reply:
    """``update-job``/``complete-job``: ``success: true``, refusals (403/404/409,
    ``success: false``), the shared errors, and objects with a ``success`` of any value."""
    kind = draw(st.sampled_from(["ok", "ok", "lost", "refused_200", "fields", "error"]))
    if kind == "ok":
        return json_reply(kind, 200, {"success": True, "message": "Job updated"},
                          expect="answer")
    if kind == "lost":
        status = draw(st.sampled_from([403, 404, 409]))
        return json_reply(kind, status, {"success": False,
                                         "error": "Job not found or not assigned to you"},
                          expect="raise")
    if kind == "refused_200":
        return json_reply(kind, 200, {"success": False, "error": "not assigned to you"},
                          expect="raise")
    if kind == "fields":
        body = draw(st.fixed_dictionaries({}, optional={
            "success": st.sampled_from([True, False, "true", 1, None]) | json_values(3),
            "error": st.sampled_from([None, "", "not assigned to you"]),
        }))
        return json_reply(kind, draw(st.sampled_from([200, 201, 204])), body)
    return draw(_ERRORS)


@st.composite
def other_answers(draw: st.DrawFn) -> Reply:
    return draw(st.sampled_from([
        json_reply("health", 200, {"status": "healthy"}),
        json_reply("jobs", 200, {"success": True, "jobs": [{"id": JOB_ID}, {"id": "b"}]}),
        json_reply("no_jobs", 200, {"success": True, "jobs": []}),
    ]) | _ERRORS)


# --------------------------------------------------------------------------- driver

def exchange(reply: Reply, call: _Call, job_id: Any = JOB_ID
             ) -> tuple[Any, Exception | None, list[httpx.Request]]:
    """Run one public call against ``reply`` in a fresh event loop and client."""
    return mocked.exchange(reply, BASE, lambda http: GatewayAidClient(BASE, ME, client=http),
                           lambda client: call(client, job_id))


def assert_one_request(requests: list[httpx.Request], method: str, route: str) -> None:
    assert len(requests) == 1, f"{len(requests)} requests for one call"
    request = requests[0]
    assert request.method == method and request.url.raw_path == (API + route).encode()
    assert request.headers["x-encoder-did"] == ME
    if method == "POST":
        body = json.loads(request.content)
        assert body["encoder_did"] == ME
        if route != "list-jobs":
            assert body["job_id"] == JOB_ID


def _is_config_error(body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    data = body.get("data")
    codes = {body.get("code"), data.get("code") if isinstance(data, dict) else None}
    return bool(codes & CONFIGURATION_CODES)


def proves_ours(reply: Reply, job_id: str = JOB_ID) -> bool:
    """The truth: a 2xx ``{job}`` answer, not ``success: false``, about ``job_id``, processable,
    flagged ``is_owned_by_requester: true`` with our DID or no owner shown."""
    body = reply.payload
    if reply.failure is not None or not 200 <= reply.status < 300 or not isinstance(body, dict):
        return False
    job = body.get("job")
    if body.get("success") is False or _is_config_error(body) or not isinstance(job, dict):
        return False
    if job.get("is_owned_by_requester") is not True:
        return False
    owner = job.get("assigned_to")
    if owner is None or owner == "":
        job = {**job, "assigned_to": ME}  # hidden owner: the flag speaks for aid
    return is_ours(job, job_id, ME, PROCESSABLE_STATUSES)


def documented_grant(reply: Reply, job_id: str = JOB_ID) -> bool:
    """A 2xx ``success: true`` assignment naming no other owner and no other job."""
    body = reply.payload
    if reply.failure is not None or not 200 <= reply.status < 300 or not isinstance(body, dict):
        return False
    owner, named = body.get("assigned_to"), body.get("job_id")
    return (
        body.get("success") is True and not _is_config_error(body)
        and (owner is None or contract_did(owner) == ME)
        and (named is None or named == job_id)
    )


def documented_ack(reply: Reply) -> bool:
    """A 2xx JSON object with ``success: true``."""
    body = reply.payload
    return (reply.failure is None and 200 <= reply.status < 300 and isinstance(body, dict)
            and body.get("success") is True and not _is_config_error(body))


# --------------------------------------------------------------------------- properties

def check_job_answer(reply: Reply, name: str) -> None:
    """Properties 1, 2, 4, 5 for one answer of ``GET job/{id}``."""
    result, error, requests = exchange(reply, READS[name])
    assert_only_verifier_errors(error)
    assert_one_request(requests, "GET", f"job/{JOB_ID}")
    if isinstance(result, Observation) and result.job is not None and not result.job.synthetic:
        # A record flagged synthetic (no id, no status) is discounted by every judgement.
        mine = contract_did(result.owner) == ME and result.status in PROCESSABLE_STATUSES
        assert not mine or proves_ours(reply), f"observed as ours without proof: {result}"
    if isinstance(result, tuple):
        job, owned = result
        assert isinstance(owned, bool)
        if owned:
            # The flag is aid's own word; it must come from a readable answer about this job.
            assert isinstance(job, GatewayMonitorJob) and job.id in ("", JOB_ID)
            assert isinstance(reply.payload, dict)
            assert reply.payload["job"].get("is_owned_by_requester") is True
    if reply.expect == "answer" and error is None and name == "observe":
        assert isinstance(result, Observation)
        mine = contract_did(result.owner) == ME and result.status in PROCESSABLE_STATUSES
        assert mine == proves_ours(reply) or (result.job is not None and result.job.synthetic)
    assert_expectation(reply, result, error)


@given(reply=replies(job_answers()), name=st.sampled_from(sorted(READS)))
def test_job_answers_never_prove_ownership_without_proof(reply: Reply, name: str) -> None:
    check_job_answer(reply, name)


QUIRKS = quirk_records(JOB_ID, ME)


@pytest.mark.parametrize("name", sorted(READS))
@pytest.mark.parametrize("flag", [True, False, ABSENT], ids=["owned", "not_owned", "no_flag"])
@pytest.mark.parametrize("quirk", sorted(QUIRKS))
def test_every_contract_quirk(quirk: str, flag: Any, name: str) -> None:
    """Each quirk of the contract, deterministically, with each ownership flag."""
    record = QUIRKS[quirk]
    job = dict(record) if flag is ABSENT else {**record, "is_owned_by_requester": flag}
    check_job_answer(json_reply(quirk, 200, {"success": True, "job": job},
                                expect=_job_expect(record, flag)), name)


@given(reply=replies(claim_answers()), name=st.sampled_from(sorted(CLAIMS)))
def test_claims_succeed_only_on_a_documented_grant(reply: Reply, name: str) -> None:
    result, error, requests = exchange(reply, CLAIMS[name])
    assert_only_verifier_errors(error)
    assert_one_request(requests, "POST", "claim-job")
    if error is None:
        assert documented_grant(reply), f"{name} succeeded on {reply.label}: {result!r}"
        if name == "claim":
            granted = reply.payload
            tokens = [granted.get(k) for k in ("assigned_at", "assigned_date")]
            expected = next((t for t in tokens if isinstance(t, str) and t), None)
            assert result == expected
    if isinstance(error, ClaimRefused):
        # A refusal is an answer: 404, 409, or a 2xx saying ``success: false``.
        assert reply.failure is None and (
            reply.status in (404, 409) or 200 <= reply.status < 300), reply
    assert_expectation(reply, result, error)


@given(reply=replies(owner_write_answers()), name=st.sampled_from(sorted(OWNER_WRITES)))
def test_owner_writes_succeed_only_on_success_true(reply: Reply, name: str) -> None:
    route, call = OWNER_WRITES[name]
    result, error, requests = exchange(reply, call)
    assert_only_verifier_errors(error)
    assert_one_request(requests, "POST", route)
    if error is None:
        assert result is None and documented_ack(reply), f"{name} succeeded on {reply.label}"
    assert_expectation(reply, result, error)


@given(reply=replies(other_answers()), name=st.sampled_from(sorted(OTHERS)))
def test_health_and_list_jobs_are_typed_or_errors(reply: Reply, name: str) -> None:
    result, error, requests = exchange(reply, OTHERS[name])
    assert_only_verifier_errors(error)
    assert len(requests) == 1
    if error is None and name == "health":
        assert isinstance(result, dict)
    if error is None and name == "list_jobs":
        assert isinstance(result, list)
        assert all(isinstance(job, GatewayMonitorJob) for job in result)
    if reply.expect == "raise":
        assert error is not None


@given(reply=replies(owner_write_answers()))
def test_release_always_raises_without_a_request(reply: Reply) -> None:
    result, error, requests = exchange(
        reply, lambda a, job: a.release(job, None, "x", failed=True))
    assert isinstance(error, TierUnavailable) and requests == [], (result, error)


@given(job_id=hostile_ids(),
       name=st.sampled_from(sorted(READS) + sorted(CLAIMS) + sorted(OWNER_WRITES)),
       record=near_proofs(JOB_ID, ME))
def test_hostile_ids_are_refused_or_sent_verbatim(job_id: Any, name: str,
                                                  record: dict[str, Any]) -> None:
    asked = job_id if isinstance(job_id, str) else JOB_ID
    if name in READS:
        call = READS[name]
        reply = json_reply("echo", 200, {"success": True, "job": {
            **record, "id": asked, "is_owned_by_requester": True}})
    elif name in CLAIMS:
        call = CLAIMS[name]
        reply = json_reply("grant", 200, {"success": True, "job_id": asked, "assigned_to": ME})
    else:
        call = OWNER_WRITES[name][1]
        reply = json_reply("ok", 200, {"success": True})
    result, error, requests = exchange(reply, call, job_id)
    assert_only_verifier_errors(error)
    if isinstance(error, InvalidInputError):
        assert requests == [], "a refused id must not reach the network"
        return
    assert isinstance(job_id, str) and len(requests) == 1
    url = requests[0].url
    assert url.host == "aid.test" and url.query == b""
    if name in READS:
        path = url.raw_path.decode("ascii")
        assert path.startswith(API + "job/"), path
        segment = path[len(API + "job/"):]
        assert "/" not in segment and urllib.parse.unquote(segment) == job_id, path
        if isinstance(result, Observation) and result.job is not None:
            assert ident_of(record) is None or result.job.id in ("", job_id)
    else:
        assert json.loads(requests[0].content)["job_id"] == job_id


@given(name=st.sampled_from(["heartbeat", "update_job", "finish"]),
       progress=hostile_mappings(("pct", "download_pct")), result=hostile_mappings(("cid",)),
       pct=hostile_numbers(), download_pct=hostile_numbers(),
       status=st.none() | st.integers() | st.text(max_size=40))
def test_hostile_arguments_are_refused_before_any_request(
    name: str, progress: Any, result: Any, pct: Any, download_pct: Any, status: Any
) -> None:
    calls: dict[str, _Call] = {
        "heartbeat": lambda a, job: a.heartbeat(job, None, progress),
        "update_job": lambda a, job: a.update_job(job, status, pct, download_pct),
        "finish": lambda a, job: a.finish(job, None, result),
    }
    _result, error, requests = exchange(json_reply("ok", 200, {"success": True}), calls[name])
    assert_only_verifier_errors(error)
    if error is not None:
        assert isinstance(error, InvalidInputError) and requests == [], (error, requests)
    else:
        assert len(requests) == 1

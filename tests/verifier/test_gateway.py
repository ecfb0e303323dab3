"""LegacyGatewayClient against respx: signed bodies, the contract's answer quirks, fail-closed
error mapping, and untrusted job ids."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import respx

from verifier import (
    ClaimRefused,
    ConfigurationError,
    EncoderIdentity,
    InvalidInputError,
    LegacyGatewayClient,
    MalformedAnswer,
    Observation,
    Tier,
    TierClient,
    TierRateLimited,
    TierTimeout,
    TierUnavailable,
    verify_jws,
)
from verifier._models import MAX_INPUT_URI_LENGTH

BASE = "https://gateway.test"
API = "/api/v0/gateway/"
IDENTITY = EncoderIdentity.generate()
OTHER = EncoderIdentity.generate()
JOB = "2f42577d-9c93-4a62-9ae2-d1270b5bc4f3"
CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        yield mock


@pytest_asyncio.fixture
async def gateway(router: respx.MockRouter) -> AsyncIterator[LegacyGatewayClient]:
    client = LegacyGatewayClient(BASE, IDENTITY)
    yield client
    await client.aclose()


def signed_payload(request: httpx.Request) -> dict[str, Any]:
    """The request body's JWS, verified as the real gateway would, signed by our DID."""
    body = json.loads(request.content)
    assert set(body) == {"jws"}
    did, payload = verify_jws(body["jws"])
    assert did == IDENTITY.did
    return payload


def job_doc(**fields: Any) -> dict[str, Any]:
    return {"id": JOB, "status": "assigned", "assigned_to": IDENTITY.did, **fields}


# ----------------------------------------------------------------- every write endpoint

WRITES = [
    ("accept_job", (JOB,), "acceptJob", {"job_id": JOB}),
    ("reject_job", (JOB,), "rejectJob", {"job_id": JOB}),
    ("cancel_job", (JOB,), "cancelJob", {"job_id": JOB}),
    ("fail_job", (JOB, "ffmpeg exited 1"), "failJob", {"job_id": JOB, "error": "ffmpeg exited 1"}),
    ("finish_job", (JOB, "bafyCID"), "finishJob", {"job_id": JOB, "output": {"cid": "bafyCID"}}),
    ("ping_job", (JOB, 42.5, 100), "pingJob",
     {"job_id": JOB, "progressPct": 42.5, "download_pct": 100.0}),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "args", "route", "expected"), WRITES,
                         ids=[w[0] for w in WRITES])
async def test_write_endpoints_send_a_verifiable_jws(
    gateway: LegacyGatewayClient, router: respx.MockRouter,
    method: str, args: tuple[Any, ...], route: str, expected: dict[str, Any],
) -> None:
    mocked = router.post(API + route).respond(200, json={"status": "success"})
    assert await getattr(gateway, method)(*args) is None
    assert mocked.call_count == 1
    assert signed_payload(mocked.calls.last.request) == expected


@pytest.mark.asyncio
async def test_node_heartbeat_sends_a_signed_empty_payload(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    mocked = router.post(API + "heartbeat").respond(200)
    await gateway.node_heartbeat()
    assert signed_payload(mocked.calls.last.request) == {}
    mocked.respond(200, json={"status": "error", "message": "unknown node"})
    with pytest.raises(TierUnavailable, match="unknown node"):
        await gateway.node_heartbeat()


@pytest.mark.asyncio
async def test_another_identitys_jws_is_not_ours(router: respx.MockRouter) -> None:
    async with LegacyGatewayClient(BASE, OTHER) as other:
        mocked = router.post(API + "acceptJob").respond(200)
        await other.accept_job(JOB)
    did, _ = verify_jws(json.loads(mocked.calls.last.request.content)["jws"])
    assert did == OTHER.did != IDENTITY.did


# ----------------------------------------------------------------- answers to writes


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "args", "route"),
                         [(m, a, r) for m, a, r, _ in WRITES if m in
                          ("accept_job", "finish_job", "reject_job", "fail_job")])
async def test_generic_500_is_a_refusal_for_owner_checked_writes(
    gateway: LegacyGatewayClient, router: respx.MockRouter,
    method: str, args: tuple[Any, ...], route: str,
) -> None:
    router.post(API + route).respond(500, json={"message": "Job does not belong to you"})
    with pytest.raises(ClaimRefused, match="does not belong to you") as caught:
        await getattr(gateway, method)(*args)
    assert caught.value.tier == "gateway"


@pytest.mark.asyncio
async def test_bare_500_text_on_accept_is_still_a_refusal(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    router.post(API + "acceptJob").respond(500, text="Internal Server Error")
    with pytest.raises(ClaimRefused, match="HTTP 500"):
        await gateway.accept_job(JOB)


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "args", "route"),
                         [("reject_job", (JOB,), "rejectJob"),
                          ("fail_job", (JOB, "boom"), "failJob"),
                          ("finish_job", (JOB, CID), "finishJob")])
async def test_a_proxys_500_page_on_a_give_back_or_finish_is_no_refusal(
    gateway: LegacyGatewayClient, router: respx.MockRouter,
    method: str, args: tuple[Any, ...], route: str,
) -> None:
    """A proxy's 500 page never reached the gateway: read as a refusal, a give-back was
    "answered" while the job was still ours until T, and a finish that may land was "refused"
    (an adversarial review, 2026-12-05)."""
    router.post(API + route).respond(500, headers={"content-type": "text/html"},
                                     content=b"<html><h1>500 Internal Server Error</h1></html>")
    with pytest.raises(TierUnavailable):
        await getattr(gateway, method)(*args)


@pytest.mark.asyncio
async def test_finish_is_refused_only_by_the_gateways_not_the_owner_answer(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    cid = CID
    route = router.post(API + "finishJob")
    route.respond(500, json={"status": "error", "message": "Job does not belong to you"})
    with pytest.raises(ClaimRefused):
        await gateway.finish_job(JOB, cid)
    # The gateway failing otherwise may have written first: unknown, not refused.
    route.respond(500, json={"status": "error", "message": "database write failed"})
    with pytest.raises(TierUnavailable, match="may have landed"):
        await gateway.finish_job(JOB, cid)


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "args", "route"),
                         [("ping_job", (JOB, 1.0, 1.0), "pingJob"),
                          ("cancel_job", (JOB,), "cancelJob")])
async def test_500_on_other_writes_is_an_outage_not_a_refusal(
    gateway: LegacyGatewayClient, router: respx.MockRouter,
    method: str, args: tuple[Any, ...], route: str,
) -> None:
    router.post(API + route).respond(500)
    with pytest.raises(TierUnavailable):
        await getattr(gateway, method)(*args)


@pytest.mark.asyncio
async def test_empty_finish_body_means_success(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    router.post(API + "finishJob").respond(200, content=b"")
    assert await gateway.finish_job(JOB, "bafy") is None


@pytest.mark.asyncio
@pytest.mark.parametrize("route, call", [
    ("acceptJob", lambda g: g.accept_job(JOB)),
    ("finishJob", lambda g: g.finish_job(JOB, "bafy")),
    ("pingJob", lambda g: g.ping_job(JOB, 5, 5)),
    ("rejectJob", lambda g: g.reject_job(JOB)),
])
async def test_2026_status_error_body_is_a_refusal(
    gateway: LegacyGatewayClient, router: respx.MockRouter, route: str, call: Any
) -> None:
    router.post(API + route).respond(
        200, json={"status": "error", "message": "Job not assigned", "error": "E_OWNER"}
    )
    with pytest.raises(ClaimRefused, match="Job not assigned"):
        await call(gateway)


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [400, 404, 409])
async def test_4xx_refusals_on_accept(
    gateway: LegacyGatewayClient, router: respx.MockRouter, status: int
) -> None:
    router.post(API + "acceptJob").respond(status, json={"message": "already accepted"})
    with pytest.raises(ClaimRefused):
        await gateway.accept_job(JOB)


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failures_are_configuration_problems_not_refusals(
    gateway: LegacyGatewayClient, router: respx.MockRouter, status: int
) -> None:
    router.post(API + "acceptJob").respond(status)
    with pytest.raises(TierUnavailable, match="ENCODER_PRIVATE_KEY"):
        await gateway.accept_job(JOB)


@pytest.mark.asyncio
@pytest.mark.parametrize("response", [
    httpx.Response(200, json={"status": "pending"}),
    httpx.Response(200, text="<html>captive portal</html>"),
    httpx.Response(200, json=["ok"]),
    httpx.Response(200, content=b'{"status":"success","status":"error"}'),
], ids=["unknown-status", "html", "array", "duplicate-keys"])
async def test_unreadable_write_answers_are_malformed_not_success(
    gateway: LegacyGatewayClient, router: respx.MockRouter, response: httpx.Response
) -> None:
    router.post(API + "acceptJob").mock(return_value=response)
    with pytest.raises(MalformedAnswer):
        await gateway.accept_job(JOB)


TIER_WRITES = [
    ("claim", lambda g: g.claim(JOB), "acceptJob"),
    ("heartbeat", lambda g: g.heartbeat(JOB, None, {"pct": 5.0}), "pingJob"),
    ("finish", lambda g: g.finish(JOB, None, {"cid": "bafy"}), "finishJob"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "call", "route"), TIER_WRITES, ids=[w[0] for w in TIER_WRITES])
@pytest.mark.parametrize("response", [
    httpx.Response(200, json={}),
    httpx.Response(200, content=b"null"),
    httpx.Response(200, json={"success": True}),
    httpx.Response(200, json={"message": "Job accepted"}),
    httpx.Response(200, json=True),
    httpx.Response(202, content=b""),
    httpx.Response(200, text="accepted"),
    # a success about another job confirms nothing about ours (a security review, session 28)
    httpx.Response(200, json={"status": "success", "job_id": "another-job"}),
    httpx.Response(200, json={"status": "success", "data": {"job": {"id": "another-job"}}}),
], ids=["empty-object", "null", "success-flag", "message-only", "true", "202", "text",
        "another-job", "data.job.another-job"])
async def test_a_write_answer_that_is_not_a_documented_success_is_not_success(
    gateway: LegacyGatewayClient, router: respx.MockRouter,
    name: str, call: Any, route: str, response: httpx.Response,
) -> None:
    # Regression: 200 {} and 200 null made claim()/finish() return normally.
    router.post(API + route).mock(return_value=response)
    with pytest.raises(MalformedAnswer):
        await call(gateway)


def _success(**data: Any) -> dict[str, Any]:
    return {"status": "success", "message": "ok", "data": data}


#: Successes that contradict themselves (helper-131's review, session 44): each was read as
#: the write landed; the job of a "finished" one was still ours, reassigned at T and encoded
#: again. Only aid's client checked the owner, the status and the counts.
CONTRADICTING = {
    "another-owner": lambda: _success(job={"id": JOB, "assigned_to": OTHER.did,
                                           "status": "running"}),
    "no-owner": lambda: _success(job={"id": JOB, "assigned_to": None, "status": "running"}),
    "queued": lambda: _success(job={"id": JOB, "assigned_to": IDENTITY.did,
                                    "status": "queued"}),
    "cancelled": lambda: _success(job={"id": JOB, "status": "cancelled"}),
    "matched-nothing": lambda: _success(matchedCount=0),
    "jobId-another": lambda: {"status": "success", "jobId": "another-job"},
    "data.jobs-another": lambda: _success(jobs=[{"id": "another-job"}]),
    "data.result.job-another": lambda: _success(result={"job": {"id": "another-job"}}),
    "data.success-false": lambda: _success(success=False, error="Job not owned by encoder"),
}


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "call", "route"), TIER_WRITES, ids=[w[0] for w in TIER_WRITES])
@pytest.mark.parametrize("answer", list(CONTRADICTING), ids=list(CONTRADICTING))
async def test_a_success_that_contradicts_itself_confirms_nothing(
    gateway: LegacyGatewayClient, router: respx.MockRouter,
    name: str, call: Any, route: str, answer: str,
) -> None:
    router.post(API + route).respond(200, json=CONTRADICTING[answer]())
    with pytest.raises(MalformedAnswer):
        await call(gateway)


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "args", "route"), [
    ("reject_job", (JOB,), "rejectJob"), ("fail_job", (JOB, "boom"), "failJob")])
async def test_a_give_back_s_success_shows_the_job_given_back_and_that_is_no_contradiction(
    gateway: LegacyGatewayClient, router: respx.MockRouter,
    method: str, args: tuple[Any, ...], route: str,
) -> None:
    """A give-back's success may show the job as it leaves it, queued and without owner: a
    release is judged by the job it names, its counts and its errors only."""
    router.post(API + route).respond(200, json=_success(
        job={"id": JOB, "assigned_to": None, "status": "queued"}, matchedCount=1))
    await getattr(gateway, method)(*args)
    for answer in ("matched-nothing", "jobId-another", "data.result.job-another"):
        router.post(API + route).respond(200, json=CONTRADICTING[answer]())
        with pytest.raises(MalformedAnswer):
            await getattr(gateway, method)(*args)


@pytest.mark.asyncio
async def test_a_finished_job_whose_owner_was_cleared_confirms_the_finish(
    gateway: LegacyGatewayClient, router: respx.MockRouter,
) -> None:
    router.post(API + "finishJob").respond(200, json=_success(
        job={"id": JOB, "assigned_to": None, "status": "uploading"}))
    await gateway.finish(JOB, None, {"cid": "bafy"})
    router.post(API + "pingJob").respond(200, json=_success(
        job={"id": JOB, "assigned_to": IDENTITY.did, "status": "uploading"}))
    with pytest.raises(MalformedAnswer):  # ... but no ping: its result was accepted
        await gateway.heartbeat(JOB, None, {"pct": 5.0})


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "args", "route"), [
    ("reject_job", (JOB,), "rejectJob"), ("fail_job", (JOB, "boom"), "failJob")])
@pytest.mark.parametrize("body", [{"error": "Internal server error"}, None])
async def test_a_give_back_answered_500_without_the_not_the_owner_answer_may_have_landed(
    gateway: LegacyGatewayClient, router: respx.MockRouter,
    method: str, args: tuple[Any, ...], route: str, body: dict[str, Any] | None,
) -> None:
    """It was read as refused, so a job still ours was reported given back (helper-131)."""
    router.post(API + route).respond(500, json=body) if body else router.post(
        API + route).respond(500)
    with pytest.raises(TierUnavailable, match="may have landed"):
        await getattr(gateway, method)(*args)


@pytest.mark.asyncio
@pytest.mark.parametrize("blank", [b"\x0b", b"\x0c", b" \x0b\n"])
async def test_a_body_blank_only_to_python_is_no_empty_success(
    gateway: LegacyGatewayClient, router: respx.MockRouter, blank: bytes,
) -> None:
    """``bytes.strip()`` takes \\x0b and \\x0c for blanks; JSON does not (helper-131)."""
    router.post(API + "finishJob").respond(200, content=blank)
    with pytest.raises(MalformedAnswer):
        await gateway.finish(JOB, None, {"cid": "bafy"})
    router.post(API + "finishJob").respond(200, content=b" \t\r\n")
    await gateway.finish(JOB, None, {"cid": "bafy"})  # the documented empty success


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "call", "route"), TIER_WRITES, ids=[w[0] for w in TIER_WRITES])
@pytest.mark.parametrize("answer", [
    {"error": "Job does not belong to you"},
    {"status": "success", "error": "Job does not belong to you"},
    {"success": False, "message": "Job does not belong to you"},
], ids=["error", "success-and-error", "success-false"])
async def test_a_2xx_that_says_error_is_a_refusal(
    gateway: LegacyGatewayClient, router: respx.MockRouter,
    name: str, call: Any, route: str, answer: dict[str, Any],
) -> None:
    router.post(API + route).respond(200, json=answer)
    with pytest.raises(ClaimRefused, match="does not belong"):
        await call(gateway)


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "call", "route"), TIER_WRITES, ids=[w[0] for w in TIER_WRITES])
@pytest.mark.parametrize("response", [
    httpx.Response(200, content=b""),
    httpx.Response(201, content=b""),
    httpx.Response(204),
    httpx.Response(200, text="ok"),
    httpx.Response(201, text="ok\n"),
    httpx.Response(200, json={"status": "success", "message": "done"}),
    httpx.Response(201, json={"status": "success"}),
    httpx.Response(200, json={"status": "success", "job_id": JOB, "job": {"id": JOB}}),
], ids=["200-empty", "201-empty", "204", "200-ok", "201-ok", "200-status", "201-status",
        "our-job"])
async def test_the_documented_success_shapes_are_success(
    gateway: LegacyGatewayClient, router: respx.MockRouter,
    name: str, call: Any, route: str, response: httpx.Response,
) -> None:
    # Legacy empty 200, the NestJS gateway's bare "ok" and empty 201, the 2026 status body.
    router.post(API + route).mock(return_value=response)
    assert await call(gateway) is None


# ----------------------------------------------------------------- transport failures


@pytest.mark.asyncio
@pytest.mark.parametrize("exc", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_timeouts_are_tier_timeouts(
    gateway: LegacyGatewayClient, router: respx.MockRouter, exc: type[Exception]
) -> None:
    router.post(API + "acceptJob").mock(side_effect=exc)
    router.get(API + f"jobstatus/{JOB}").mock(side_effect=exc)
    with pytest.raises(TierTimeout, match="acceptJob"):
        await gateway.accept_job(JOB)
    with pytest.raises(TierTimeout):
        await gateway.job_status(JOB)


class StalledBody(httpx.AsyncByteStream):
    """An answer that starts and never finishes: a server dripping it, or stuck."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"o"
        await asyncio.Event().wait()


@pytest.mark.asyncio
async def test_a_dripping_answer_ends_at_the_timeout(router: respx.MockRouter) -> None:
    """Operator review (session 16): the timeout bounded each socket read only, so a gateway
    sending a byte every few seconds held a shutdown's release for minutes. The whole exchange
    is bounded now (``asyncio.wait_for`` only turns the old hang into a failure here)."""
    router.post(API + "rejectJob").mock(return_value=httpx.Response(200, stream=StalledBody()))
    async with LegacyGatewayClient(BASE, IDENTITY, timeout=0.05) as g:
        with pytest.raises(TierTimeout, match="rejectJob"):
            await asyncio.wait_for(g.reject_job(JOB), 10)


@pytest.mark.asyncio
@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.RemoteProtocolError,
                                 httpx.ReadError])
async def test_transport_errors_are_unavailable(
    gateway: LegacyGatewayClient, router: respx.MockRouter, exc: type[Exception]
) -> None:
    router.post(API + "finishJob").mock(side_effect=exc)
    with pytest.raises(TierUnavailable) as caught:
        await gateway.finish_job(JOB, "bafy")
    assert not isinstance(caught.value, TierTimeout | TierRateLimited)


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [502, 503, 504])
async def test_gateway_outages_are_unavailable(
    gateway: LegacyGatewayClient, router: respx.MockRouter, status: int
) -> None:
    router.post(API + "acceptJob").respond(status)
    router.get(API + f"jobstatus/{JOB}").respond(status)
    for call in (gateway.accept_job(JOB), gateway.job_status(JOB)):
        with pytest.raises(TierUnavailable) as caught:
            await call
        assert type(caught.value) is TierUnavailable
        assert str(status) in str(caught.value)


@pytest.mark.asyncio
@pytest.mark.parametrize(("header", "expected"), [
    ({"Retry-After": "7"}, 7.0), ({}, None),
    ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0), ({"Retry-After": "-3"}, None),
])
async def test_429_is_rate_limited_with_retry_after(
    gateway: LegacyGatewayClient, router: respx.MockRouter,
    header: dict[str, str], expected: float | None,
) -> None:
    router.post(API + "acceptJob").respond(429, headers=header)
    with pytest.raises(TierRateLimited) as caught:
        await gateway.accept_job(JOB)
    assert caught.value.retry_after == expected


@pytest.mark.asyncio
async def test_redirects_are_not_followed(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    router.post(API + "acceptJob").respond(302, headers={"Location": "https://evil.test/x"})
    elsewhere = respx.post("https://evil.test/x").respond(200)
    with pytest.raises(TierUnavailable, match="redirect"):
        await gateway.accept_job(JOB)
    assert not elsewhere.called


@pytest.mark.asyncio
async def test_oversized_answers_are_malformed(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    router.get(API + "stats").respond(200, content=b" " * 10 + b"{" * (2 * 1024 * 1024))
    with pytest.raises(MalformedAnswer, match="larger than"):
        await gateway.stats()


@pytest.mark.asyncio
async def test_undecodable_bodies_are_malformed(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    router.get(API + "stats").mock(side_effect=lambda request: httpx.Response(
        200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")
    ))
    with pytest.raises(MalformedAnswer, match="undecodable"):
        await gateway.stats()


# ----------------------------------------------------------------- reads


@pytest.mark.asyncio
async def test_job_status_unwraps_job_rank_nesting(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    router.get(API + f"jobstatus/{JOB}").respond(200, json={"job": job_doc(), "rank": 3})
    job = await gateway.job_status(JOB)
    assert job is not None
    assert (job.id, job.status, job.assigned_to) == (JOB, "assigned", IDENTITY.did)


@pytest.mark.asyncio
async def test_job_status_plain_record(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    router.get(API + f"jobstatus/{JOB}").respond(200, json=job_doc(assigned_to=None,
                                                                   status="queued"))
    job = await gateway.job_status(JOB)
    assert job is not None and job.assigned_to is None and job.status == "queued"


@pytest.mark.asyncio
@pytest.mark.parametrize("response", [
    httpx.Response(404, json={"error": "not found"}), httpx.Response(200, content=b""),
    httpx.Response(200, json=None), httpx.Response(200, json={}),
    httpx.Response(200, json={"job": None, "rank": None}),
], ids=["404", "empty", "null", "empty-object", "job-null"])
async def test_job_status_not_found(
    gateway: LegacyGatewayClient, router: respx.MockRouter, response: httpx.Response
) -> None:
    router.get(API + f"jobstatus/{JOB}").mock(return_value=response)
    assert await gateway.job_status(JOB) is None


@pytest.mark.asyncio
@pytest.mark.parametrize(("response", "error"), [
    (httpx.Response(500, json={"message": "boom"}), TierUnavailable),
    (httpx.Response(200, json={"status": "error", "message": "db"}), TierUnavailable),
    (httpx.Response(200, json=job_doc(id="another-job")), MalformedAnswer),
    (httpx.Response(200, json=job_doc(assigned_to=5)), MalformedAnswer),
    (httpx.Response(200, text="not json"), MalformedAnswer),
], ids=["500", "status-error", "other-job", "bad-owner-type", "not-json"])
async def test_job_status_never_turns_a_non_answer_into_a_job(
    gateway: LegacyGatewayClient, router: respx.MockRouter,
    response: httpx.Response, error: type[Exception],
) -> None:
    router.get(API + f"jobstatus/{JOB}").mock(return_value=response)
    with pytest.raises(error):
        await gateway.job_status(JOB)


@pytest.mark.asyncio
@pytest.mark.parametrize(("job_id", "raw_segment"), [
    ("../x", b"..%2Fx"), ("a/b", b"a%2Fb"), ("?", b"%3F"), ("#", b"%23"),
    ("%2F", b"%252F"), ("a b", b"a%20b"), ("x?admin=1#f", b"x%3Fadmin%3D1%23f"),
    # Each routed by Express 4 and 5 to jobstatus with req.params.job_id equal to the id
    # (session 39's differential test, helper-122: the oracle is Express, not this client).
    ("..%2F", b"..%252F"), ("%2e%2e", b"%252e%252e"), ("...", b"..."), ("a\\b", b"a%5Cb"),
    ("x;y=1", b"x%3By%3D1"), ("a+b c", b"a%2Bb%20c"), ("%ff", b"%25ff"),
    ("available", b"available"),
])
async def test_hostile_ids_are_one_encoded_path_segment(
    gateway: LegacyGatewayClient, router: respx.MockRouter, job_id: str, raw_segment: bytes
) -> None:
    catch_all = router.route().respond(404)
    assert await gateway.job_status(job_id) is None
    url = catch_all.calls.last.request.url
    assert url.raw_path == API.encode() + b"jobstatus/" + raw_segment
    assert url.query == b""


@pytest.mark.asyncio
@pytest.mark.parametrize("job_id", [None, 5, {"$ne": None}, "", "x" * 300, ".", "..",
                                    "a\nb", "a\x00b"],
                         ids=["None", "int", "operator", "empty", "300-chars", "dot",
                              "dotdot", "newline", "nul"])
async def test_hostile_ids_are_refused_before_any_request(
    gateway: LegacyGatewayClient, router: respx.MockRouter, job_id: Any
) -> None:
    catch_all = router.route().respond(200, json={"status": "success"})
    with pytest.raises(InvalidInputError):
        await gateway.job_status(job_id)
    if job_id not in (".", ".."):  # dot segments are fine inside a JSON body
        for call in (gateway.accept_job, gateway.reject_job, gateway.observe,
                     gateway.claim):
            with pytest.raises(InvalidInputError):
                await call(job_id)
    assert catch_all.call_count == 0


@pytest.mark.asyncio
async def test_get_job_uses_the_long_poll_timeout(router: respx.MockRouter) -> None:
    async with LegacyGatewayClient(BASE, IDENTITY, timeout=4, long_poll_timeout=31) as g:
        get = router.get(API + "getJob").respond(200, json=job_doc(status="queued",
                                                                   assigned_to=None))
        stats = router.get(API + "stats").respond(200, json={"queued": 3})
        job = await g.get_job()
        assert await g.stats() == {"queued": 3}
    assert job is not None and job.id == JOB
    assert get.calls.last.request.extensions["timeout"]["read"] == 31
    assert stats.calls.last.request.extensions["timeout"]["read"] == 4


@pytest.mark.asyncio
@pytest.mark.parametrize("method, route", [("get_job", "getJob"), ("my_job", "myJob")])
@pytest.mark.parametrize("response", [
    httpx.Response(404), httpx.Response(200, content=b""), httpx.Response(200, json=None),
    httpx.Response(200, json={}), httpx.Response(200, json={"job": None, "rank": 0}),
], ids=["404", "empty", "null", "empty-object", "job-null"])
async def test_no_job_offered(
    gateway: LegacyGatewayClient, router: respx.MockRouter,
    method: str, route: str, response: httpx.Response,
) -> None:
    (router.post if route == "myJob" else router.get)(API + route).mock(return_value=response)
    assert await getattr(gateway, method)() is None


@pytest.mark.asyncio
@pytest.mark.parametrize("bad_id", ["", "a\x00b", "x" * 300, 7])
async def test_offered_job_with_unusable_id_is_malformed(
    gateway: LegacyGatewayClient, router: respx.MockRouter, bad_id: Any
) -> None:
    router.post(API + "myJob").respond(200, json={"success": True,
                                                  "job": {"id": bad_id, "status": "assigned"}})
    with pytest.raises(MalformedAnswer):
        await gateway.my_job()


BAD_INPUT_URIS = {
    "nul": "https://cdn.test/a\x00b",
    "lone-surrogate": "https://cdn.test/\ud800",
    "newline": "https://cdn.test/a\nb",
    "bidi-override": "https://cdn.test/\u202egnp.exe",
    "too-long": "https://cdn.test/" + "a" * 200_000,
    "not-a-string": 7,
    "null": None,
}


def ascii_json(body: Any) -> httpx.Response:
    """A JSON answer as a hostile server sends it: a lone surrogate as a ``\\ud800`` escape."""
    return httpx.Response(200, content=json.dumps(body).encode("ascii"),
                          headers={"Content-Type": "application/json"})


@pytest.mark.asyncio
@pytest.mark.parametrize("uri", BAD_INPUT_URIS.values(), ids=BAD_INPUT_URIS.keys())
async def test_offered_job_with_unusable_input_uri_is_refused_naming_the_field(
    gateway: LegacyGatewayClient, router: respx.MockRouter, uri: Any
) -> None:
    """The URI goes into the work's environment: a NUL, a lone surrogate or 200 KB failed only
    at the spawn, after the claim, naming nothing (security review). Refused before any claim,
    the value itself never in the message."""
    router.post(API + "myJob").mock(return_value=ascii_json(
        {"success": True, "job": job_doc(input={"uri": uri, "size": 1})}))
    router.get(API + "getJob").mock(return_value=ascii_json(job_doc(input={"uri": uri})))
    for offer in (gateway.my_job, gateway.get_job):
        with pytest.raises(MalformedAnswer, match=r"input\.uri") as info:
            await offer()
        assert "cdn.test" not in str(info.value)
        assert f"offered job {JOB} refused" in str(info.value)  # which job, for the operator


@pytest.mark.asyncio
@pytest.mark.parametrize("given", [
    {"uri": "https://cdn.test/" + "a" * (MAX_INPUT_URI_LENGTH - len("https://cdn.test/"))},
    {"uri": "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/vidéo.mp4"},
    {"uri": ""},  # the monitor's stand-in shape: the command gets an empty SPK_INPUT_URI
    {"size": 0},
    {},
], ids=["at-the-limit", "non-ascii", "empty", "no-uri", "no-input"])
async def test_offered_job_with_a_usable_input_uri_is_offered(
    gateway: LegacyGatewayClient, router: respx.MockRouter, given: dict[str, Any]
) -> None:
    router.get(API + "getJob").respond(200, json=job_doc(input=given) if given else job_doc())
    job = await gateway.get_job()
    assert job is not None and dict(job.input) == given


@pytest.mark.asyncio
async def test_my_job_is_a_signed_post_as_the_deployed_encoder_sends_it(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    """``myJob`` is a POST of ``{"jws": ...}`` signed over ``{"timestamp": <ISO 8601>}``, so a
    gateway that picks jobs by DID can tell who asks; ``{success, job}`` is unwrapped."""
    route = router.post(API + "myJob").respond(200, json={
        "success": True, "job": job_doc(status="queued", assigned_to=None)})
    job = await gateway.my_job()
    assert job is not None and job.id == JOB
    request = route.calls.last.request
    did, payload = verify_jws(json.loads(request.content)["jws"])
    assert did == IDENTITY.did and set(payload) == {"timestamp"}
    assert payload["timestamp"].endswith("Z") and "T" in payload["timestamp"]
    assert request.extensions["timeout"]["read"] == 30.0  # the long-poll timeout


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "body"), [
    (404, {"error": "Encoder not registered"}),
    (403, {"error": "Encoder is disabled or banned"}),
    (401, {"error": "Invalid JWS signature"}),
    (200, {"success": False, "error": "Internal server error"}),
], ids=["not-registered", "banned", "bad-signature", "success-false"])
async def test_my_job_refusals_are_errors_not_no_job(
    gateway: LegacyGatewayClient, router: respx.MockRouter, status: int, body: Any
) -> None:
    """A gateway that does not know or accept this encoder is not "no job": polling again
    cannot cure it, so the operator is told (the deployed encoder reads such a 404 as idle)."""
    router.post(API + "myJob").respond(status, json=body)
    with pytest.raises(TierUnavailable) as refused:
        await gateway.my_job()
    assert str(body["error"]).split()[0].lower() in str(refused.value).lower()


def test_text_that_cannot_be_encoded_is_refused_by_name() -> None:
    with pytest.raises(InvalidInputError, match="lone surrogate"):
        IDENTITY.sign_jws({"job_id": JOB, "error": "ffmpeg: \udcff"})


@pytest.mark.asyncio
async def test_stats_must_be_an_object(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    router.get(API + "stats").respond(200, json=[1, 2])
    with pytest.raises(MalformedAnswer):
        await gateway.stats()


# ----------------------------------------------------------------- argument validation


@pytest.mark.asyncio
@pytest.mark.parametrize("call", [
    lambda g: g.ping_job(JOB, float("nan"), 0),
    lambda g: g.ping_job(JOB, -1, 0),
    lambda g: g.ping_job(JOB, 50, 100.5),
    lambda g: g.ping_job(JOB, True, 0),
    lambda g: g.ping_job(JOB, "50", 0),
    lambda g: g.finish_job(JOB, ""),
    lambda g: g.finish_job(JOB, None),
    lambda g: g.finish_job(JOB, "bafy\n"),
    lambda g: g.fail_job(JOB, None),
    lambda g: g.finish(JOB, None, {}),
    lambda g: g.finish(JOB, None, {"cid": 5}),
], ids=["nan", "negative", "over-100", "bool", "str", "empty-cid", "none-cid", "newline-cid",
        "error-none", "result-without-cid", "cid-int"])
async def test_bad_arguments_are_refused_before_any_request(
    gateway: LegacyGatewayClient, router: respx.MockRouter, call: Any
) -> None:
    catch_all = router.route().respond(200)
    with pytest.raises(InvalidInputError):
        await call(gateway)
    assert catch_all.call_count == 0


# ----------------------------------------------------------------- the TierClient adapter


@pytest.mark.asyncio
async def test_is_a_tier_client(gateway: LegacyGatewayClient) -> None:
    assert isinstance(gateway, TierClient)
    assert gateway.tier is Tier.GATEWAY


@pytest.mark.asyncio
async def test_observe_reports_the_gateways_view(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    router.get(API + f"jobstatus/{JOB}").respond(200, json=job_doc(assigned_to=OTHER.did))
    observation = await gateway.observe(JOB)
    assert isinstance(observation, Observation)
    assert (observation.tier, observation.owner, observation.token) == (
        Tier.GATEWAY, OTHER.did, None)


@pytest.mark.asyncio
async def test_observe_missing_job(gateway: LegacyGatewayClient, router: respx.MockRouter) -> None:
    router.get(API + f"jobstatus/{JOB}").respond(404)
    assert (await gateway.observe(JOB)).job is None


@pytest.mark.asyncio
async def test_claim_accepts_and_returns_no_token(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    accept = router.post(API + "acceptJob").respond(200)
    assert await gateway.claim(JOB) is None
    assert signed_payload(accept.calls.last.request) == {"job_id": JOB}
    accept.respond(500)
    with pytest.raises(ClaimRefused):
        await gateway.claim(JOB)


@pytest.mark.asyncio
async def test_blind_claim_is_refused_without_a_request(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    catch_all = router.route().respond(200)
    with pytest.raises(TierUnavailable):
        await gateway.claim(JOB, conditional=False)
    assert catch_all.call_count == 0


@pytest.mark.asyncio
async def test_heartbeat_pings_with_progress(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    ping = router.post(API + "pingJob").respond(200)
    await gateway.heartbeat(JOB, None, {"pct": 12.0, "download_pct": 100.0})
    assert signed_payload(ping.calls.last.request) == {
        "job_id": JOB, "progressPct": 12.0, "download_pct": 100.0}
    await gateway.heartbeat(JOB, None, {})
    assert signed_payload(ping.calls.last.request) == {
        "job_id": JOB, "progressPct": 0.0, "download_pct": 0.0}


@pytest.mark.asyncio
async def test_finish_sends_the_cid_and_surfaces_the_owner_check(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    finish = router.post(API + "finishJob").respond(200, content=b"")
    await gateway.finish(JOB, None, {"cid": "bafyRESULT", "size": 3})
    assert signed_payload(finish.calls.last.request) == {
        "job_id": JOB, "output": {"cid": "bafyRESULT"}}
    finish.respond(500, json={"message": "Job does not belong to you"})
    with pytest.raises(ClaimRefused):
        await gateway.finish(JOB, None, {"cid": "bafyRESULT"}, fenced=True)


@pytest.mark.asyncio
async def test_release_fails_or_rejects(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    fail = router.post(API + "failJob").respond(200)
    reject = router.post(API + "rejectJob").respond(200)
    await gateway.release(JOB, None, "encode crashed", failed=True)
    assert signed_payload(fail.calls.last.request) == {"job_id": JOB, "error": "encode crashed"}
    assert not reject.called
    await gateway.release(JOB, None, "ownership lost", failed=False)
    assert signed_payload(reject.calls.last.request) == {"job_id": JOB}
    assert fail.call_count == 1


# ----------------------------------------------------------------- configuration, credentials


@pytest.mark.asyncio
@pytest.mark.parametrize("url", ["", "ftp://gw.test", "gw.test", "https://", None,
                                 "https://gw.test/?token=s3cr3t"])
async def test_bad_base_url_is_a_configuration_error_without_the_value(url: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        LegacyGatewayClient(url, IDENTITY)
    assert caught.value.variable == "GATEWAY_URL"
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.asyncio
@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf"), True, "10"])
async def test_bad_timeouts_are_configuration_errors(seconds: Any) -> None:
    with pytest.raises(ConfigurationError):
        LegacyGatewayClient(BASE, IDENTITY, timeout=seconds)
    with pytest.raises(ConfigurationError):
        LegacyGatewayClient(BASE, IDENTITY, long_poll_timeout=seconds)


@pytest.mark.asyncio
async def test_identity_is_required() -> None:
    with pytest.raises(InvalidInputError):
        LegacyGatewayClient(BASE, "did:key:z6Mk...")  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_credentials_in_the_url_stay_out_of_reprs_and_errors() -> None:
    secret_url = "https://operator:hunter2@gw.test/base"
    seen: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError("connect failed", request=request)

    with respx.mock(assert_all_called=False) as mock:
        mock.route().mock(side_effect=refuse)
        async with LegacyGatewayClient(secret_url, IDENTITY) as g:
            assert "hunter2" not in repr(g)
            with pytest.raises(TierUnavailable) as caught:
                await g.accept_job(JOB)
    assert "hunter2" not in str(caught.value)
    assert seen[-1].url.path == "/base/api/v0/gateway/acceptJob"


@pytest.mark.asyncio
async def test_a_shared_client_is_not_closed_but_an_owned_one_is() -> None:
    shared = httpx.AsyncClient()
    async with LegacyGatewayClient(BASE, IDENTITY, client=shared):
        pass
    assert not shared.is_closed
    await shared.aclose()
    owned = LegacyGatewayClient(BASE, IDENTITY)
    await owned.aclose()
    assert owned._http._client.is_closed


@pytest.mark.parametrize("url", ["https://gw.example:notaport", "https://gw.exa\x01mple/", "ftp://gw"])
def test_a_malformed_gateway_url_stops_construction(url):
    from verifier import ConfigurationError, EncoderIdentity, GatewayAidClient, LegacyGatewayClient

    with pytest.raises(ConfigurationError, match="GATEWAY_URL"):
        LegacyGatewayClient(url, EncoderIdentity.generate())
    with pytest.raises(ConfigurationError, match="GATEWAY_AID_BASE_URL"):
        GatewayAidClient(url, "did:key:z6MkTest")


#: Pages that never came from the gateway's handler: a framework's default for an unknown
#: route (HTML, and NestJS's JSON), and the monitor server's JSON route miss.
_NOT_THE_GATEWAY = [
    httpx.Response(404, headers={"content-type": "text/html"},
                   content=b"<pre>Cannot POST /api/api/v0/gateway/pingJob</pre>"),
    httpx.Response(404, json={"error": "Route not found"}),
    httpx.Response(404, json={"statusCode": 404, "message": "Cannot POST /x/pingJob",
                              "error": "Not Found"}),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("page", _NOT_THE_GATEWAY, ids=["html", "route-json", "nest"])
@pytest.mark.parametrize(("route", "call"), [
    ("pingJob", lambda g: g.ping_job(JOB, 1, 1)),
    ("acceptJob", lambda g: g.accept_job(JOB)),
    ("getJob", lambda g: g.get_job()),
    ("myJob", lambda g: g.my_job()),
], ids=["ping", "accept", "get", "my"])
async def test_a_page_not_from_the_gateway_is_no_answer_about_the_job(
    gateway: LegacyGatewayClient, router: respx.MockRouter, route: str, call: Any,
    page: httpx.Response,
) -> None:
    """A refusal or a "no job" must come from the gateway itself: a proxy's page or a route
    miss says the request never reached it (adversarial review, session 22: a WAF page on a
    ping cancelled healthy work; a wrong GATEWAY_URL idled the node as "no job")."""
    method = router.get if route == "getJob" else router.post
    method(API + route).mock(return_value=page)
    with pytest.raises(TierUnavailable, match="not the gateway's own answer"):
        await call(gateway)


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [{"message": "already accepted"},
                                  {"status": "error", "message": "Job not found"},
                                  {"statusCode": 409, "message": "Conflict"}],
                         ids=["bare", "2026", "nest"])
async def test_the_gateway_s_own_4xx_still_refuses(
    gateway: LegacyGatewayClient, router: respx.MockRouter, body: dict[str, Any]
) -> None:
    router.post(API + "pingJob").respond(409, json=body)
    with pytest.raises(ClaimRefused):
        await gateway.ping_job(JOB, 1, 1)


# ----------------------------------------------------------------- from a mutation run
# Session 37's mutation run of verifier/_gateway.py: each test below failed no mutant-free
# run before it, and kills the mutant named in its docstring.


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [410, 422])
async def test_the_other_refusing_4xx_are_refusals_too(
    gateway: LegacyGatewayClient, router: respx.MockRouter, status: int
) -> None:
    """410 (gone) and 422 (unprocessable) are the gateway saying no, as 400/404/409 are;
    taken for an outage, a give-back or a finish would stay unknown for no reason."""
    router.post(API + "acceptJob").respond(status, json={"error": "Job is not claimable"})
    with pytest.raises(ClaimRefused, match=f"HTTP {status}"):
        await gateway.accept_job(JOB)


@pytest.mark.parametrize("url", ["https://gateway.test:port", "https://gateway.test/?",
                                 " https://gateway.test", "https://gate way.test"])
def test_a_base_url_the_strict_check_refuses_is_refused_at_construction(url: str) -> None:
    """Each would fail only at the first request, or send it to another path."""
    with pytest.raises(ConfigurationError, match="GATEWAY_URL"):
        LegacyGatewayClient(url, IDENTITY)


@pytest.mark.asyncio
async def test_leaving_the_context_closes_the_client_it_made(
    closed_clients: list[httpx.AsyncClient],
) -> None:
    async with LegacyGatewayClient(BASE, IDENTITY):
        pass
    assert len(closed_clients) == 1 and closed_clients[0].is_closed


@pytest.mark.asyncio
async def test_stats_missing_is_an_unavailable_gateway_not_a_malformed_answer(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    router.get(API + "stats").respond(404, json={"error": "Not found"})
    with pytest.raises(TierUnavailable):  # neither MalformedAnswer nor ClaimRefused is one
        await gateway.stats()


@pytest.mark.asyncio
@pytest.mark.parametrize("page", [
    httpx.Response(404, text="<html><body>404 Not Found</body></html>"),
    httpx.Response(404, json={"message": "Cannot POST /api/v0/gateway/myJob",
                              "statusCode": 404}),
], ids=["proxy-page", "route-miss"])
async def test_a_my_job_404_that_is_not_the_gateways_is_not_no_job(
    gateway: LegacyGatewayClient, router: respx.MockRouter, page: httpx.Response
) -> None:
    """A proxy's page or a route miss never reached the gateway's handler: "no job" read from
    it would idle the encoder on a misconfiguration without a word (fail closed: an error the
    loop logs and backs off on)."""
    router.post(API + "myJob").mock(return_value=page)
    with pytest.raises(TierUnavailable, match="not the gateway's own answer"):
        await gateway.my_job()


@pytest.mark.asyncio
async def test_the_node_heartbeat_is_not_a_job_write(
    gateway: LegacyGatewayClient, router: respx.MockRouter
) -> None:
    """It names no job: its success is not checked against one (that raised KeyError), and a
    409 is the gateway failing, not a job refused."""
    route = router.post(API + "heartbeat").respond(200, json={"status": "success"})
    await gateway.node_heartbeat()
    assert signed_payload(route.calls.last.request) == {}
    router.post(API + "heartbeat").respond(409, json={"error": "conflict"})
    with pytest.raises(TierUnavailable):
        await gateway.node_heartbeat()


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [302, 500, 503])
async def test_a_my_job_that_failed_offers_nothing_whatever_its_body(
    gateway: LegacyGatewayClient, router: respx.MockRouter, status: int
) -> None:
    """A failed answer is no offer, even one whose body reads as a job (a proxy's cached copy,
    a redirect's leftover): without the status check it was offered and claimed."""
    router.post(API + "myJob").respond(status, json={"success": True, "job": job_doc()})
    with pytest.raises(TierUnavailable, match=f"HTTP {status}"):
        await gateway.my_job()

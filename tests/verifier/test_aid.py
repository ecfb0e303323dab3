"""GatewayAidClient against respx: the DID header, the atomic claim's 409, owner-conditioned
writes, configuration codes, and the ownership flag of ``GET job/{id}``."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import respx

from verifier import (
    ClaimRefused,
    ConfigurationError,
    GatewayAidClient,
    InvalidInputError,
    MalformedAnswer,
    Tier,
    TierClient,
    TierRateLimited,
    TierTimeout,
    TierUnavailable,
)

BASE = "https://aid.test"
API = "/aid/v1/"
ME = "did:key:z6MktwupdmLXVVqTzCw4i46r4uGyosGXRnR3XjN4Zq7oMMsw"
OTHER = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
JOB = "2f42577d-9c93-4a62-9ae2-d1270b5bc4f3"
ASSIGNED_AT = "2026-01-02T03:04:05.678Z"


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        yield mock


@pytest_asyncio.fixture
async def aid(router: respx.MockRouter) -> AsyncIterator[GatewayAidClient]:
    client = GatewayAidClient(BASE, ME)
    yield client
    await client.aclose()


def body_of(route: respx.Route) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(route.calls.last.request.content)
    return result


def claim_answer(**fields: Any) -> dict[str, Any]:
    return {"success": True, "job_id": JOB, "assigned_to": ME, "assigned_at": ASSIGNED_AT,
            "job_details": {"input": {"uri": "ipfs://x"}}, **fields}


def job_answer(owned: Any = True, **fields: Any) -> dict[str, Any]:
    job = {"id": JOB, "status": "assigned", "created_at": "2026-01-01T00:00:00Z", **fields}
    if owned is not ...:
        job["is_owned_by_requester"] = owned
    return {"success": True, "job": job}


NOT_AUTHORIZED = {"success": False, "error": "Encoder not authorized",
                  "data": {"code": "ENCODER_NOT_AUTHORIZED"}}
INACTIVE = {"success": False, "error": "Encoder is inactive",
            "data": {"code": "ENCODER_INACTIVE"}}

CALLS = {
    "health": ("GET", "health", lambda a: a.health(), {"status": "healthy"}),
    "list_jobs": ("POST", "list-jobs", lambda a: a.list_jobs(), {"success": True, "jobs": []}),
    "claim_job": ("POST", "claim-job", lambda a: a.claim_job(JOB), claim_answer()),
    "update_job": ("POST", "update-job", lambda a: a.update_job(JOB, "running", 10, 100),
                   {"success": True}),
    "complete_job": ("POST", "complete-job", lambda a: a.complete_job(JOB, "bafy"),
                     {"success": True}),
    "get_job": ("GET", f"job/{JOB}", lambda a: a.get_job(JOB), job_answer()),
}


# ----------------------------------------------------------------- identity on every request


@pytest.mark.asyncio
@pytest.mark.parametrize("name", list(CALLS))
async def test_every_request_carries_the_did_header(
    aid: GatewayAidClient, router: respx.MockRouter, name: str
) -> None:
    method, route, call, answer = CALLS[name]
    mocked = router.route(method=method, path=API + route).respond(200, json=answer)
    await call(aid)
    request = mocked.calls.last.request
    assert request.headers["X-Encoder-DID"] == ME
    if method == "POST":
        # The published aid server reads the DID from the body; the contract says header.
        assert json.loads(request.content)["encoder_did"] == ME


@pytest.mark.asyncio
@pytest.mark.parametrize("name", [n for n in CALLS if n != "health"])
@pytest.mark.parametrize("answer", [NOT_AUTHORIZED, INACTIVE], ids=["not-authorized",
                                                                    "inactive"])
@pytest.mark.parametrize("status", [401, 403, 200])
async def test_configuration_codes_are_unavailable_not_refused(
    aid: GatewayAidClient, router: respx.MockRouter,
    name: str, answer: dict[str, Any], status: int,
) -> None:
    method, route, call, _ = CALLS[name]
    router.route(method=method, path=API + route).respond(status, json=answer)
    with pytest.raises(TierUnavailable, match=answer["data"]["code"]) as caught:
        await call(aid)
    assert not isinstance(caught.value, ClaimRefused)


# ----------------------------------------------------------------- claim


@pytest.mark.asyncio
async def test_claim_returns_the_assignment(aid: GatewayAidClient,
                                            router: respx.MockRouter) -> None:
    claim = router.post(API + "claim-job").respond(200, json=claim_answer())
    assignment = await aid.claim_job(JOB)
    assert assignment["assigned_to"] == ME and assignment["assigned_at"] == ASSIGNED_AT
    assert body_of(claim) == {"job_id": JOB, "encoder_did": ME}


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [409, 404])
async def test_claim_conflict_is_refused(
    aid: GatewayAidClient, router: respx.MockRouter, status: int
) -> None:
    router.post(API + "claim-job").respond(status, json={
        "success": False, "error": "Job not available for claiming",
        "code": "JOB_ALREADY_ASSIGNED"})
    with pytest.raises(ClaimRefused, match="JOB_ALREADY_ASSIGNED") as caught:
        await aid.claim_job(JOB)
    assert caught.value.tier == "aid"


@pytest.mark.asyncio
@pytest.mark.parametrize(("response", "error"), [
    (httpx.Response(200, json={"success": False, "error": "taken"}), ClaimRefused),
    (httpx.Response(200, json=claim_answer(assigned_to=OTHER)), MalformedAnswer),
    (httpx.Response(200, json=claim_answer(job_id="another")), MalformedAnswer),
    (httpx.Response(200, json={"job_id": JOB}), MalformedAnswer),
    (httpx.Response(200, content=b""), MalformedAnswer),
    (httpx.Response(200, text="<html>"), MalformedAnswer),
    (httpx.Response(500, json={"success": False, "code": "INTERNAL_ERROR"}), TierUnavailable),
    (httpx.Response(400, json={"success": False, "code": "INVALID_REQUEST"}), TierUnavailable),
    (httpx.Response(503), TierUnavailable),
], ids=["success-false", "other-owner", "other-job", "no-success", "empty", "html", "500",
        "400", "503"])
async def test_claim_answers_that_are_not_a_grant(
    aid: GatewayAidClient, router: respx.MockRouter,
    response: httpx.Response, error: type[Exception],
) -> None:
    router.post(API + "claim-job").mock(return_value=response)
    with pytest.raises(error):
        await aid.claim(JOB)


@pytest.mark.asyncio
@pytest.mark.parametrize(("answer", "token"), [
    (claim_answer(), ASSIGNED_AT),
    (claim_answer(assigned_at=None, assigned_date="2026-02-02T00:00:00Z"),
     "2026-02-02T00:00:00Z"),
    (claim_answer(assigned_at=None), None),
])
async def test_claim_token_is_the_assignment_time_when_given(
    aid: GatewayAidClient, router: respx.MockRouter, answer: dict[str, Any], token: str | None
) -> None:
    router.post(API + "claim-job").respond(200, json=answer)
    assert await aid.claim(JOB) == token


@pytest.mark.asyncio
async def test_blind_claim_is_refused_without_a_request(
    aid: GatewayAidClient, router: respx.MockRouter
) -> None:
    catch_all = router.route().respond(200)
    with pytest.raises(TierUnavailable):
        await aid.claim(JOB, conditional=False)
    assert catch_all.call_count == 0


# ----------------------------------------------------------------- owner-conditioned writes


@pytest.mark.asyncio
async def test_update_and_complete_bodies(aid: GatewayAidClient,
                                          router: respx.MockRouter) -> None:
    update = router.post(API + "update-job").respond(200, json={"success": True})
    complete = router.post(API + "complete-job").respond(200, json={"success": True})
    await aid.heartbeat(JOB, ASSIGNED_AT, {"pct": 33.0, "download_pct": 100.0})
    assert body_of(update) == {"job_id": JOB, "status": "running", "encoder_did": ME,
                               "progress": {"pct": 33.0, "download_pct": 100.0}}
    await aid.finish(JOB, ASSIGNED_AT, {"cid": "bafyRESULT"})
    assert body_of(complete) == {"job_id": JOB, "result": {"cid": "bafyRESULT"},
                                 "encoder_did": ME}


@pytest.mark.asyncio
async def test_only_a_finish_may_show_the_job_done_with_its_owner_cleared(
    aid: GatewayAidClient, router: respx.MockRouter,
) -> None:
    done = {"success": True, "job": {"id": JOB, "status": "completed", "assigned_to": None}}
    router.post(API + "complete-job").respond(200, json=done)
    assert await aid.finish(JOB, None, {"cid": "bafy"}) is None
    router.post(API + "update-job").respond(200, json=done)  # a heartbeat on a done job
    with pytest.raises(MalformedAnswer):
        await aid.heartbeat(JOB, None, {"pct": 1.0})


@pytest.mark.asyncio
@pytest.mark.parametrize("answer", [
    {"success": True, "job_id": JOB, "job": {"assigned_to": "did:key:z6MkOther"}},
    {"success": True, "job_id": JOB, "data": {"assigned_to": "did:key:z6MkOther"}},
    {"success": True, "job_id": JOB, "data": {"job": {"id": JOB, "status": "pending"}}},
    {"success": True, "job_id": JOB, "result": {"modifiedCount": 0}},
], ids=["job.owner", "data.owner", "data.job.pending", "result.modified-0"])
async def test_a_claim_success_that_nests_another_owner_or_nothing_is_malformed(
    aid: GatewayAidClient, router: respx.MockRouter, answer: dict[str, Any],
) -> None:
    """The claim checked its top level only, while the owner-conditioned writes looked inside
    ``data`` and ``job`` (an adversarial review, 2026-12-05)."""
    router.post(API + "claim-job").respond(200, json=answer)
    with pytest.raises(MalformedAnswer):
        await aid.claim(JOB)


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [403, 404, 409])
@pytest.mark.parametrize(("route", "call"), [
    ("update-job", lambda a: a.heartbeat(JOB, None, {"pct": 1.0})),
    ("complete-job", lambda a: a.finish(JOB, None, {"cid": "bafy"})),
], ids=["update", "complete"])
async def test_owner_writes_refused_when_the_job_is_not_ours(
    aid: GatewayAidClient, router: respx.MockRouter, status: int, route: str, call: Any
) -> None:
    router.post(API + route).respond(status, json={
        "success": False, "error": "Job not found or not assigned to this encoder",
        "code": "JOB_NOT_FOUND"})
    with pytest.raises(ClaimRefused, match="not assigned to this encoder"):
        await call(aid)


@pytest.mark.asyncio
@pytest.mark.parametrize("call", [
    lambda a: a.update_job(JOB, "running", 101, 0),
    lambda a: a.update_job(JOB, "running", float("nan"), 0),
    lambda a: a.update_job(JOB, "", 1, 0),
    lambda a: a.update_job(JOB, None, 1, 0),
    lambda a: a.complete_job(JOB, ""),
    lambda a: a.finish(JOB, None, {"result": "x"}),
    lambda a: a.claim_job({"$ne": None}),
    lambda a: a.get_job(".."),
    lambda a: a.get_job(None),
    lambda a: a.observe("x" * 300),
], ids=["pct-101", "pct-nan", "status-empty", "status-none", "cid-empty", "no-cid",
        "operator-id", "dotdot-id", "none-id", "long-id"])
async def test_bad_arguments_are_refused_before_any_request(
    aid: GatewayAidClient, router: respx.MockRouter, call: Any
) -> None:
    catch_all = router.route().respond(200, json={"success": True})
    with pytest.raises(InvalidInputError):
        await call(aid)
    assert catch_all.call_count == 0


# ----------------------------------------------------------------- get_job and observe


@pytest.mark.asyncio
@pytest.mark.parametrize("owned", [True, False])
async def test_get_job_returns_the_ownership_flag(
    aid: GatewayAidClient, router: respx.MockRouter, owned: bool
) -> None:
    router.get(API + f"job/{JOB}").respond(200, json=job_answer(owned))
    job, flag = await aid.get_job(JOB)
    assert job is not None and job.id == JOB and job.status == "assigned"
    assert flag is owned
    assert "is_owned_by_requester" not in job.extra


@pytest.mark.asyncio
async def test_get_job_missing_flag_is_not_ownership(
    aid: GatewayAidClient, router: respx.MockRouter
) -> None:
    router.get(API + f"job/{JOB}").respond(200, json=job_answer(...))
    assert (await aid.get_job(JOB))[1] is False


@pytest.mark.asyncio
async def test_get_job_404_is_no_job(aid: GatewayAidClient, router: respx.MockRouter) -> None:
    router.get(API + f"job/{JOB}").respond(404, json={"success": False, "code": "JOB_NOT_FOUND"})
    assert await aid.get_job(JOB) == (None, False)
    assert (await aid.observe(JOB)).job is None


@pytest.mark.asyncio
@pytest.mark.parametrize("answer", [
    job_answer("yes"), job_answer(1), {"success": True}, {"job": "x"}, [job_answer()],
    {"success": False, "job": {"id": JOB}}, job_answer(id="another-job"),
], ids=["flag-str", "flag-int", "no-job", "job-str", "array", "success-false", "other-job"])
async def test_get_job_malformed_answers(
    aid: GatewayAidClient, router: respx.MockRouter, answer: Any
) -> None:
    router.get(API + f"job/{JOB}").respond(200, json=answer)
    with pytest.raises(MalformedAnswer):
        await aid.get_job(JOB)


@pytest.mark.asyncio
@pytest.mark.parametrize(("job_id", "raw"), [
    ("../x", b"..%2Fx"), ("a/b?c#d", b"a%2Fb%3Fc%23d"), ("%2F", b"%252F"),
    # Routed by Express 4 and 5 to job/:id with req.params.id equal to the id, unnormalised
    # (session 39's differential test, helper-122: the oracle is Express).
    ("/", b"%2F"), ("e\u0301", b"e%CC%81"), ("\xe9", b"%C3%A9"), ("\U0001f600", b"%F0%9F%98%80"),
    ("\u212a", b"%E2%84%AA"), ("..\\..", b"..%5C.."), ("\uff0e\uff0e", b"%EF%BC%8E%EF%BC%8E"),
])
async def test_get_job_encodes_hostile_ids(
    aid: GatewayAidClient, router: respx.MockRouter, job_id: str, raw: bytes
) -> None:
    catch_all = router.route().respond(404, json={"success": False, "code": "JOB_NOT_FOUND"})
    assert await aid.get_job(job_id) == (None, False)
    assert catch_all.calls.last.request.url.raw_path == API.encode() + b"job/" + raw


@pytest.mark.asyncio
@pytest.mark.parametrize(("assigned_to", "owned", "owner"), [
    (None, True, ME),      # hidden owner, flag true → ours
    (None, False, None),   # hidden owner, flag false → unknown, never "ours"
    (ME, True, ME),
    (OTHER, False, OTHER),
])
async def test_observe_takes_the_owner_from_the_job_or_the_flag(
    aid: GatewayAidClient, router: respx.MockRouter,
    assigned_to: str | None, owned: bool, owner: str | None,
) -> None:
    router.get(API + f"job/{JOB}").respond(200, json=job_answer(owned, assigned_to=assigned_to))
    observation = await aid.observe(JOB)
    assert observation.tier is Tier.AID
    assert observation.owner == owner
    assert observation.token is None


@pytest.mark.asyncio
@pytest.mark.parametrize(("assigned_to", "owned"), [(OTHER, True), (ME, False)])
async def test_observe_refuses_contradictory_answers(
    aid: GatewayAidClient, router: respx.MockRouter, assigned_to: str, owned: bool
) -> None:
    router.get(API + f"job/{JOB}").respond(200, json=job_answer(owned, assigned_to=assigned_to))
    with pytest.raises(MalformedAnswer):
        await aid.observe(JOB)


# ----------------------------------------------------------------- list, health, release


@pytest.mark.asyncio
async def test_list_jobs_parses_hidden_status_as_unknown(
    aid: GatewayAidClient, router: respx.MockRouter
) -> None:
    router.post(API + "list-jobs").respond(200, json={"success": True, "jobs": [
        {"id": JOB, "created_at": "2026-01-01T00:00:00Z", "metadata": {"video_owner": "a"}},
    ]})
    (job,) = await aid.list_jobs()
    assert job.id == JOB and job.status is None and job.assigned_to is None and job.synthetic
    router.post(API + "list-jobs").respond(200, json={"success": True, "jobs": {}})
    with pytest.raises(MalformedAnswer):
        await aid.list_jobs()


@pytest.mark.asyncio
async def test_list_jobs_drops_a_job_with_an_unusable_input_uri_naming_the_field(
    aid: GatewayAidClient, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """As the gateway's offered job: refused before any claim, the rest of the listing kept,
    the warning naming ``input.uri`` and not the value (security review)."""
    listed = [{"id": "bad-1", "input": {"uri": "https://cdn.test/a\x00b"}},
              {"id": "ok-1", "input": {"uri": "https://cdn.test/ok.mp4"}},
              {"id": "bad-2", "input": {"uri": "https://cdn.test/\ud800"}},
              {"id": "bad-3", "input": {"uri": "https://cdn.test/" + "a" * 200_000}},
              {"id": "ok-2"}]
    router.post(API + "list-jobs").respond(
        200, content=json.dumps({"success": True, "jobs": listed}).encode("ascii"),
        headers={"Content-Type": "application/json"})
    with caplog.at_level(logging.WARNING, logger="verifier._aid"):
        jobs = await aid.list_jobs()
    assert [job.id for job in jobs] == ["ok-1", "ok-2"]
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 3 and all("input.uri" in m for m in dropped)
    assert not any("cdn.test" in m for m in dropped)


@pytest.mark.asyncio
async def test_list_jobs_drops_a_malformed_entry_and_keeps_the_rest(
    aid: GatewayAidClient, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """One entry with an int id, a null, a string, a non-string status or a list ``input``
    failed the whole listing: no job of aid's was offered while it stayed listed (an
    adversarial review of the encoder loop, session 21)."""
    listed = [{"id": 7}, None, "job", {"id": "bad-status", "status": 3},
              {"id": "bad-input", "input": ["https://cdn.test/a.mp4"]}, {"id": "ok-1"}]
    router.post(API + "list-jobs").respond(200, json={"success": True, "jobs": listed})
    with caplog.at_level(logging.WARNING, logger="verifier._aid"):
        jobs = await aid.list_jobs()
    assert [job.id for job in jobs] == ["ok-1"]
    dropped = [r.getMessage() for r in caplog.records if "malformed entr" in r.getMessage()]
    assert dropped == ["aid list-jobs: dropped 5 malformed entries (first: aid: job id should "
                       "be a string, got int)"]  # one line a listing, no value shown


@pytest.mark.asyncio
async def test_a_huge_listing_is_read_up_to_its_first_thousand_entries(
    aid: GatewayAidClient, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """Parsed on the event loop, 170,000 malformed entries held it for 9 s (the guard's lease
    timers run there: session 21's review). The first MAX_LISTED are read."""
    from verifier._aid import MAX_LISTED

    listed = [None] * 50_000 + [{"id": "late"}]
    router.post(API + "list-jobs").respond(200, json={"success": True, "jobs": listed})
    with caplog.at_level(logging.WARNING, logger="verifier._aid"):
        assert await aid.list_jobs() == []
    messages = [r.getMessage() for r in caplog.records]
    assert f"aid list-jobs: 50001 jobs listed; the first {MAX_LISTED} are read" in messages
    assert sum("malformed" in m for m in messages) == 1


@pytest.mark.asyncio
async def test_health_503_is_unavailable(aid: GatewayAidClient,
                                         router: respx.MockRouter) -> None:
    router.get(API + "health").respond(503, json={"status": "unhealthy"})
    with pytest.raises(TierUnavailable):
        await aid.health()


@pytest.mark.asyncio
async def test_release_raises_without_a_request(aid: GatewayAidClient,
                                                router: respx.MockRouter) -> None:
    catch_all = router.route().respond(200)
    for failed in (True, False):
        with pytest.raises(TierUnavailable, match="no release endpoint"):
            await aid.release(JOB, ASSIGNED_AT, "giving up", failed=failed)
    assert catch_all.call_count == 0


@pytest.mark.asyncio
async def test_is_a_tier_client(aid: GatewayAidClient) -> None:
    assert isinstance(aid, TierClient)
    assert aid.tier is Tier.AID


# ----------------------------------------------------------------- transport failures


@pytest.mark.asyncio
@pytest.mark.parametrize("name", list(CALLS))
async def test_timeouts_outages_and_rate_limits(
    aid: GatewayAidClient, router: respx.MockRouter, name: str
) -> None:
    method, route, call, _ = CALLS[name]
    mocked = router.route(method=method, path=API + route)
    mocked.mock(side_effect=httpx.ReadTimeout)
    with pytest.raises(TierTimeout):
        await call(aid)
    mocked.mock(side_effect=httpx.ConnectError)
    with pytest.raises(TierUnavailable):
        await call(aid)
    for status in (502, 503, 504):
        mocked.mock(return_value=httpx.Response(status))
        with pytest.raises(TierUnavailable) as caught:
            await call(aid)
        assert type(caught.value) is TierUnavailable
    mocked.mock(return_value=httpx.Response(429, headers={"Retry-After": "12"}))
    with pytest.raises(TierRateLimited) as limited:
        await call(aid)
    assert limited.value.retry_after == 12.0


@pytest.mark.asyncio
@pytest.mark.parametrize("did", [None, "", "z6Mk", "did:key:\nx", 5])
async def test_bad_encoder_did_is_refused(did: Any) -> None:
    with pytest.raises(InvalidInputError):
        GatewayAidClient(BASE, did)


@pytest.mark.asyncio
async def test_bad_base_url_names_the_variable() -> None:
    with pytest.raises(ConfigurationError) as caught:
        GatewayAidClient("aid.test", ME)
    assert caught.value.variable == "GATEWAY_AID_BASE_URL"


# ----------------------------------------------------------------- regressions: unconfirmed writes


@pytest.mark.asyncio
async def test_a_dripping_answer_ends_at_the_timeout(router: respx.MockRouter) -> None:
    """As the gateway's (operator review, session 16): the timeout bounds the whole exchange,
    not each read (``asyncio.wait_for`` only turns the old hang into a failure here)."""
    from .test_gateway import StalledBody

    router.post(API + "update-job").mock(return_value=httpx.Response(200, stream=StalledBody()))
    async with GatewayAidClient(BASE, ME, timeout=0.05) as aid:
        with pytest.raises(TierTimeout):
            await asyncio.wait_for(aid.update_job(JOB, "running", 50.0, 100.0), 10)


#: What a server that is not aid answers for an unknown path (a wrong base URL).
FRAMEWORK_404S = [
    httpx.Response(404, json={"message": "Cannot GET /aid/v1/job/J1", "error": "Not Found",
                              "statusCode": 404}),
    httpx.Response(404, json={"message": "Route GET:/aid/v1/job/J1 not found",
                              "error": "Not Found", "statusCode": 404}),
    httpx.Response(404, json={"message": "Not Found"}),
    httpx.Response(404, json={"error": "Job not found"}),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("route", ["claim-job", "update-job", "complete-job"])
@pytest.mark.parametrize("response", FRAMEWORK_404S,
                         ids=["nestjs", "fastify", "message-only", "error-only"])
async def test_a_write_answered_by_a_framework_404_is_unavailable_not_refused(
    aid: GatewayAidClient, router: respx.MockRouter, route: str, response: httpx.Response
) -> None:
    """A wrong base URL is a configuration problem, not "the job is someone else's"."""
    router.post(API + route).mock(return_value=response)
    with pytest.raises(TierUnavailable, match="GATEWAY_AID_BASE_URL"):
        if route == "claim-job":
            await aid.claim_job(JOB)
        elif route == "update-job":
            await aid.update_job(JOB, "running", 50.0, 100.0)
        else:
            await aid.complete_job(JOB, "bafy")


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [202, 203, 206, 207, 226])
async def test_a_write_answered_by_another_2xx_is_not_confirmed(
    aid: GatewayAidClient, router: respx.MockRouter, status: int
) -> None:
    """Security review (session 16): a 202 "accepted for later" counted as a confirmed
    heartbeat, which renews the lease directly on aid. Only 200/201 confirm a write."""
    for route in ("claim-job", "update-job", "complete-job"):
        answer = claim_answer() if route == "claim-job" else {"success": True, "job_id": JOB}
        router.post(API + route).respond(status, json=answer)
    with pytest.raises(MalformedAnswer, match=f"HTTP {status}"):
        await aid.claim_job(JOB)
    with pytest.raises(MalformedAnswer, match=f"HTTP {status}"):
        await aid.update_job(JOB, "running", 50.0, 100.0)
    with pytest.raises(MalformedAnswer, match=f"HTTP {status}"):
        await aid.complete_job(JOB, "bafy")


@pytest.mark.asyncio
@pytest.mark.parametrize("response", [
    httpx.Response(404, json={"error": "Route not found"}),
    httpx.Response(404, json={"success": False, "error": "Route not found"}),
    httpx.Response(404, json={"success": False, "code": "ROUTE_NOT_FOUND"}),
    httpx.Response(404, json={"success": False}),
    httpx.Response(404, json={}),
    httpx.Response(404, text="<html><h1>404 Not Found</h1></html>"),
    httpx.Response(404),
    # Frameworks' default 404s (security review, session 16: read as "no such job").
    *FRAMEWORK_404S,
], ids=["route", "route-success-false", "route-code", "bare-success-false", "empty-object",
        "html", "empty", "nestjs", "fastify", "message-only", "error-only"])
async def test_a_404_that_is_not_job_not_found_says_nothing_about_the_job(
    aid: GatewayAidClient, router: respx.MockRouter, response: httpx.Response
) -> None:
    # A wrong base URL answers "Route not found" (or a proxy's page): that is not "the job
    # does not exist", which would read as "free to claim".
    router.get(API + f"job/{JOB}").mock(return_value=response)
    with pytest.raises(TierUnavailable, match="GATEWAY_AID_BASE_URL"):
        await aid.observe(JOB)


@pytest.mark.asyncio
@pytest.mark.parametrize("answer", [
    {"success": False, "error": "Job not found"},
    {"success": False, "message": "Job route-7 not found"},
    {"success": False, "code": "JOB_NOT_FOUND"},
], ids=["success-false", "id-says-route", "code"])
async def test_a_404_that_says_the_job_is_not_found_is_no_job(
    aid: GatewayAidClient, router: respx.MockRouter, answer: dict[str, Any]
) -> None:
    router.get(API + f"job/{JOB}").respond(404, json=answer)
    assert (await aid.observe(JOB)).job is None


@pytest.mark.asyncio
@pytest.mark.parametrize("answer", [
    {"success": True},
    {"success": True, "assigned_to": ME},
    {"success": True, "job_id": None, "assigned_to": ME},
    claim_answer(job_id=JOB.upper()),
    claim_answer(assigned_to=None, job_id="another-job"),
    claim_answer(assigned_to=""),
    # the job not assigned at all, said at the top level (a security review, session 28)
    {"success": True, "job_id": JOB, "status": "failed"},
    {"success": True, "job_id": JOB, "assigned_to": None},
    # a finished job whose owner was cleared confirms a finish, never a claim
    {"success": True, "job_id": JOB, "assigned_to": None, "status": "completed"},
], ids=["bare", "owner-only", "null-id", "case", "other-job-no-owner", "empty-owner",
        "top.failed", "top.null-owner", "top.done-no-owner"])
async def test_a_claim_success_that_does_not_confirm_the_assignment_is_malformed(
    aid: GatewayAidClient, router: respx.MockRouter, answer: dict[str, Any]
) -> None:
    # Regression: 200 {"success": true} made claim() return. The contract promises "200 with
    # the assignment": the job we asked for, and us as owner when an owner is named.
    router.post(API + "claim-job").respond(200, json=answer)
    with pytest.raises(MalformedAnswer):
        await aid.claim(JOB)


@pytest.mark.asyncio
async def test_a_claim_success_naming_the_job_without_an_owner_is_a_grant(
    aid: GatewayAidClient, router: respx.MockRouter
) -> None:
    router.post(API + "claim-job").respond(200, json={"success": True, "job_id": JOB})
    assert await aid.claim(JOB) is None


@pytest.mark.asyncio
@pytest.mark.parametrize(("route", "call"), [
    ("update-job", lambda a: a.heartbeat(JOB, None, {"pct": 1.0})),
    ("complete-job", lambda a: a.finish(JOB, None, {"cid": "bafy"})),
], ids=["update", "complete"])
@pytest.mark.parametrize("answer", [
    {"success": True, "job_id": "another-job"},
    {"success": True, "id": "another-job"},
    {"success": True, "job_id": None},
    # aid's own envelope (where its error codes live), and a job object in it
    {"success": True, "data": {"job_id": "another-job"}},
    {"success": True, "data": {"job": {"id": "another-job"}}},
    {"success": True, "job": {"id": "another-job"}},
    # an update that matched or changed nothing did not happen for us
    {"success": True, "matchedCount": 0},
    {"success": True, "data": {"job_id": JOB, "modifiedCount": 0}},
    {"success": True, "nModified": "1"},
    # ... and every other way a MongoDB-backed server says its owner filter matched nothing
    # (an adversarial review, 2026-12-05: each renewed the lease, and work ran past T)
    {"success": True, "job": None},
    {"success": True, "data": {"job": None}},
    {"success": True, "result": {"matchedCount": 0}},
    {"success": True, "result": {"n": 0, "ok": 1}},
    {"success": True, "job": {"id": JOB, "assigned_to": "did:key:z6MkOther"}},
    {"success": True, "job": {"id": JOB, "assigned_to": None, "status": "pending"}},
    {"success": True, "data": {"job": {"id": JOB, "status": "queued"}}},
    {"success": True, "error": "Job not assigned to you"},
    {"success": True, "data": {"code": "JOB_NOT_OWNED"}},
    # ... at the top level too, and every status no job of ours can have (a security
    # review, session 28: only the claim looked at the top level's owner)
    {"success": True, "job_id": JOB, "assigned_to": "did:key:z6MkOther", "status": "running"},
    {"success": True, "job_id": JOB, "assigned_to": None, "status": "pending"},
    {"success": True, "job_id": JOB, "status": "unassigned"},
    {"success": True, "data": {"job_id": JOB, "status": "cancelled"}},
    {"success": True, "job": {"id": JOB, "assigned_to": ME, "status": "deleted"}},
    # counts as deep as they are read (an envelope, a result, a nested one: a mutation run,
    # session 37, found no test below the second level), and numeric codes outside 2xx
    {"success": True, "data": {"result": {"matchedCount": 0}}},
    {"success": True, "data": {"result": {"value": {"n": 0}}}},
    {"success": True, "code": 300},
    {"success": True, "code": 150},
    {"success": True, "data": {"code": 404.0}},
    # where else a success may name a job, and a failure inside a success (helper-131's
    # review, session 44: each renewed the lease)
    {"success": True, "jobId": "another-job"},
    {"success": True, "data": {"jobs": [{"id": "another-job"}]}},
    {"success": True, "data": {"result": {"job": {"id": "another-job"}}}},
    {"success": True, "data": {"success": False, "error": "Job not owned by encoder"}},
], ids=["job_id", "id", "null", "data.job_id", "data.job.id", "job.id", "matched-0",
        "data.modified-0", "modified-text", "job-null", "data.job-null",
        "result.matched-0", "result.n-0", "job.other-owner", "job.queued-no-owner",
        "data.job.queued", "error", "data.code", "top.other-owner", "top.queued-no-owner",
        "top.unassigned", "data.cancelled", "job.deleted", "depth-3-count", "depth-4-count",
        "code-300", "code-150", "code-float", "jobId", "data.jobs", "data.result.job",
        "data.success-false"])
async def test_an_owner_write_success_naming_another_job_is_malformed(
    aid: GatewayAidClient, router: respx.MockRouter, route: str, call: Any,
    answer: dict[str, Any],
) -> None:
    router.post(API + route).respond(200, json=answer)
    with pytest.raises(MalformedAnswer):
        await call(aid)


@pytest.mark.asyncio
@pytest.mark.parametrize(("route", "call"), [
    ("update-job", lambda a: a.heartbeat(JOB, None, {"pct": 1.0})),
    ("complete-job", lambda a: a.finish(JOB, None, {"cid": "bafy"})),
], ids=["update", "complete"])
@pytest.mark.parametrize("answer", [
    {"success": True, "job_id": JOB},
    {"success": True, "data": {"job_id": JOB, "modifiedCount": 1}},
    {"success": True, "data": {"job": {"id": JOB}}, "matchedCount": 1},
    # a bare success stays one: the real server's answer is not documented
    {"success": True},
    {"success": True, "message": "Job updated", "result": {"n": 1, "nModified": 1}},
    {"success": True, "job": {"id": JOB, "assigned_to": ME, "status": "running"}},
    {"success": True, "code": "OK"},
    # what a success may plausibly say besides (a review of these rules, 2026-12-05)
    {"success": True, "message": "Job updated", "data": None},
    {"success": True, "code": 200, "message": "Job updated"},
    {"success": True, "data": {"code": "JOB_UPDATED"}},
    {"success": True, "result": {"matchedCount": 1, "modifiedCount": 0}},  # a retried finish
    {"success": True, "data": {"id": JOB, "assigned_to": ME, "error": "an earlier attempt's"}},
    {"success": True, "code": 299, "data": {"result": {"value": {"n": 1}}}},
], ids=["job_id", "data", "job-and-count", "bare", "result-counts", "job-ours", "code-ok",
        "data-null", "code-200", "code-updated", "matched-unmodified", "old-error-in-job",
        "code-299-deep-count-1"])
async def test_an_owner_write_success_naming_our_job_is_success(
    aid: GatewayAidClient, router: respx.MockRouter, route: str, call: Any,
    answer: dict[str, Any],
) -> None:
    router.post(API + route).respond(200, json=answer)
    assert await call(aid) is None


@pytest.mark.asyncio
@pytest.mark.parametrize("status", ["completed", "complete", "uploading"])
async def test_a_heartbeat_answered_with_the_job_finished_renews_nothing(
        aid: GatewayAidClient, router: respx.MockRouter, status: str) -> None:
    """Read only where the answer named an owner: without one, a job whose result was
    accepted confirmed a heartbeat, and an aid heartbeat renews the lease (helper-131)."""
    router.post(API + "update-job").respond(
        200, json={"success": True, "job": {"id": JOB, "status": status}})
    with pytest.raises(MalformedAnswer, match=f"shows the job {status}"):
        await aid.heartbeat(JOB, None, {"pct": 1.0})
    router.post(API + "complete-job").respond(
        200, json={"success": True, "job": {"id": JOB, "status": status}})
    assert await aid.finish(JOB, None, {"cid": "bafy"}) is None  # the finish's own answer


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [403, 404, 409])
@pytest.mark.parametrize(("route", "call"), [
    ("update-job", lambda a: a.heartbeat(JOB, None, {"pct": 1.0})),
    ("complete-job", lambda a: a.finish(JOB, None, {"cid": "bafy"})),
    ("claim-job", lambda a: a.claim(JOB)),
], ids=["update", "complete", "claim"])
async def test_a_proxy_page_is_no_refusal(
    aid: GatewayAidClient, router: respx.MockRouter, route: str, call: Any, status: int
) -> None:
    """Only aid's own error refuses a write: a WAF's or a proxy's HTML page never reached aid
    (adversarial review, session 22: one such 403 on a heartbeat cancelled healthy work, and
    aid kept the job an hour)."""
    router.post(API + route).respond(status, headers={"content-type": "text/html"},
                                     content=b"<html><title>Attention Required!</title></html>")
    with pytest.raises(TierUnavailable):  # a 403 on a claim never was a refusal
        await call(aid)


# ----------------------------------------------------------------- from a mutation run
# Session 37's mutation run of verifier/_aid.py: each test below kills a mutant that every
# test before it let pass.


@pytest.mark.asyncio
async def test_a_claim_answered_201_created_is_a_success(
    aid: GatewayAidClient, router: respx.MockRouter
) -> None:
    """NestJS answers a POST 201 by default: the claim landed, and is confirmed."""
    router.post(API + "claim-job").respond(201, json=claim_answer())
    assert await aid.claim(JOB) == ASSIGNED_AT


@pytest.mark.asyncio
async def test_the_token_is_the_first_non_empty_assignment_date(
    aid: GatewayAidClient, router: respx.MockRouter
) -> None:
    """An empty ``assigned_at`` is no token (the next key is read), nor is a number."""
    router.post(API + "claim-job").respond(
        200, json=claim_answer(assigned_at="", assigned_date="2026-01-02T03:05:00Z"))
    assert await aid.claim(JOB) == "2026-01-02T03:05:00Z"
    router.post(API + "claim-job").respond(
        200, json=claim_answer(assigned_at=1767323045, assigned_date=None))
    assert await aid.claim(JOB) is None


@pytest.mark.asyncio
async def test_a_heartbeat_without_progress_reports_zero(
    aid: GatewayAidClient, router: respx.MockRouter
) -> None:
    route = router.post(API + "update-job").respond(200, json={"success": True})
    await aid.heartbeat(JOB, None, {})
    assert body_of(route)["progress"] == {"pct": 0.0, "download_pct": 0.0}


@pytest.mark.asyncio
async def test_a_status_of_32_characters_is_sent_and_one_more_is_refused(
    aid: GatewayAidClient, router: respx.MockRouter
) -> None:
    route = router.post(API + "update-job").respond(200, json={"success": True})
    await aid.update_job(JOB, "r" * 32, 10, 100)
    assert body_of(route)["status"] == "r" * 32
    with pytest.raises(InvalidInputError, match="short"):
        await aid.update_job(JOB, "r" * 33, 10, 100)
    assert route.call_count == 1


@pytest.mark.asyncio
async def test_a_listing_of_exactly_the_limit_is_read_whole_without_a_warning(
    aid: GatewayAidClient, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    listed = [{"id": f"job-{i}"} for i in range(1000)]
    router.post(API + "list-jobs").respond(200, json={"success": True, "jobs": listed})
    with caplog.at_level(logging.WARNING, logger="verifier._aid"):
        jobs = await aid.list_jobs()
    assert len(jobs) == 1000
    assert "listed" not in caplog.text


@pytest.mark.parametrize("url", ["https://aid.test:port", "https://aid.test/?",
                                 " https://aid.test", "https://a id.test"])
def test_a_base_url_the_strict_check_refuses_is_refused_at_construction(url: str) -> None:
    with pytest.raises(ConfigurationError):
        GatewayAidClient(url, ME)


@pytest.mark.asyncio
@pytest.mark.parametrize("leave", ["aclose", "context"])
async def test_closing_the_client_closes_the_http_client_it_made(
    closed_clients: list[httpx.AsyncClient], leave: str
) -> None:
    if leave == "aclose":
        await GatewayAidClient(BASE, ME).aclose()
    else:
        async with GatewayAidClient(BASE, ME):
            pass
    assert len(closed_clients) == 1 and closed_clients[0].is_closed

"""Tests of :mod:`verifier._monitor`: the documented API semantics (offline, respx).

The replies below reproduce the bodies listed in ``docs/contract.md`` (documented and
"observed by running the real monitor server"). Each test also checks what the client must
*not* do: turn a non-answer into "not found", "owned" or "available". Transport failures,
error mapping, body limits and hostile ids are in ``test_monitor_http.py``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from verifier import (
    ConfigurationError,
    GatewayMonitorJob,
    GatewayMonitorService,
    InvalidInputError,
    MalformedAnswer,
    Observation,
    Tier,
    TierClient,
    TierRateLimited,
    TierTimeout,
    TierUnavailable,
    VerifierError,
)
from verifier._monitor import DEFAULT_MONITOR_BASE_URL, MAX_BATCH_IDS

from .monitor_support import ABSENT, BASE, JOB, ME, OTHER, job_doc, ok

NOT_FOUND = httpx.Response(404, json={"success": False, "error": "Job not found"})


# --------------------------------------------------------------------------- construction


@pytest.mark.asyncio
async def test_defaults_and_tier() -> None:
    service = GatewayMonitorService()
    assert service.base_url == DEFAULT_MONITOR_BASE_URL
    assert service.is_enabled() is True
    assert service.tier is Tier.MONITOR
    assert isinstance(service, TierClient)


@pytest.mark.asyncio
async def test_disabled_service_accepts_any_base_url() -> None:
    service = GatewayMonitorService("not a url", enabled=False)
    assert service.is_enabled() is False


# --------------------------------------------------------------------------- get_job_details


@pytest.mark.asyncio
async def test_get_job_details_parses_a_full_record(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    route = router.get(f"/jobs/{JOB}").mock(return_value=ok(job_doc()))
    job = await monitor.get_job_details(JOB)
    assert isinstance(job, GatewayMonitorJob)
    assert (job.id, job.status, job.assigned_to) == (JOB, "assigned", ME)
    assert job.progress is not None and job.progress.pct == 12.5
    assert job.synthetic is False
    request = route.calls.last.request
    assert request.method == "GET"
    assert request.url.host == "monitor.test"
    assert request.url.raw_path == f"/api/jobs/{JOB}".encode()
    assert route.call_count == 1


@pytest.mark.asyncio
async def test_quirk_omitted_dates_and_absent_owner(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    doc = job_doc(
        status="queued", assigned_to=ABSENT, assigned_date=ABSENT, last_pinged=ABSENT
    )
    router.get(f"/jobs/{JOB}").mock(return_value=ok(doc))
    job = await monitor.get_job_details(JOB)
    assert job is not None
    assert job.assigned_to is None and job.assigned_date is None and job.last_pinged is None
    assert job.created_at == "2026-01-02T03:04:05.000Z"


@pytest.mark.asyncio
async def test_quirk_null_owner_numeric_progress_and_legacy_fields(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    doc = job_doc(
        status="complete",
        assigned_to=None,
        progress=100,
        owner="alice",
        permlink="abc123",
        encoder_id="enc-1",
        input_uri="ipfs://bafy",
        ipfs_cid="bafyresult",
        error_message=None,
        last_pinged_diff=12,
        result={"cid": "bafyresult", "message": "ok"},
    )
    router.get(f"/jobs/{JOB}").mock(return_value=ok(doc))
    job = await monitor.get_job_details(JOB)
    assert job is not None
    assert job.assigned_to is None
    assert job.progress is not None and job.progress.pct == 100.0
    assert job.extra["encoder_id"] == "enc-1" and job.extra["last_pinged_diff"] == 12
    assert job.result == {"cid": "bafyresult", "message": "ok"}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "status",
    ["created", "pending", "queued", "unassigned", "assigned", "running", "uploading",
     "complete", "completed", "failed", "cancelled", "deleted"],
)
async def test_both_status_vocabularies(
    monitor: GatewayMonitorService, router: respx.Router, status: str
) -> None:
    router.get(f"/jobs/{JOB}").mock(return_value=ok(job_doc(status=status)))
    job = await monitor.get_job_details(JOB)
    assert job is not None and job.status == status


@pytest.mark.asyncio
async def test_quirk_job_rank_nesting(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    router.get(f"/jobs/{JOB}").mock(return_value=ok({"job": job_doc(), "rank": 3}))
    job = await monitor.get_job_details(JOB)
    assert job is not None and job.id == JOB and job.assigned_to == ME


@pytest.mark.asyncio
async def test_quirk_string_underscore_id_without_id_key(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    router.get(f"/jobs/{JOB}").mock(return_value=ok(job_doc(id=ABSENT, _id=JOB)))
    job = await monitor.get_job_details(JOB)
    assert job is not None and job.id == JOB


@pytest.mark.asyncio
async def test_200_success_false_is_not_found(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    router.get(f"/jobs/{JOB}").mock(
        return_value=httpx.Response(200, json={"success": False, "error": "Job not found"})
    )
    assert await monitor.get_job_details(JOB) is None


@pytest.mark.asyncio
async def test_404_job_not_found_is_none(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    router.get(f"/jobs/{JOB}").mock(return_value=NOT_FOUND)
    assert await monitor.get_job_details(JOB) is None


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(404, json={"error": "Route not found"}),
        # A proxy or another service at a wrong base URL, in the monitor's own shape: every
        # job read as missing instead of the monitor unreachable (security review).
        httpx.Response(404, json={"success": False, "error": "Route not found"}),
        httpx.Response(404, json={"success": False, "error": "not found",
                                  "code": "ROUTE_NOT_FOUND"}),
        httpx.Response(200, json={"success": False, "error": "Route not found"}),
        httpx.Response(404, text="<html><body>404 Not Found</body></html>"),
        httpx.Response(404, json={"success": False, "error": "Forbidden upstream"}),
        httpx.Response(404, json={"success": "false", "error": "Job not found"}),
        httpx.Response(404),
    ],
    ids=["route-not-found", "route-not-found-success-false", "route-code", "route-on-200",
         "html", "other-error", "string-success", "empty"],
)
async def test_404_that_is_not_the_monitors_not_found_is_unavailable(
    monitor: GatewayMonitorService, router: respx.Router, response: httpx.Response
) -> None:
    """A misconfigured base URL (or a proxy page) says nothing about the job."""
    router.get(f"/jobs/{JOB}").mock(return_value=response)
    with pytest.raises(TierUnavailable):
        await monitor.get_job_details(JOB)
    with pytest.raises(TierUnavailable):
        await monitor.is_job_available_to_claim(JOB)


@pytest.mark.asyncio
async def test_answer_about_another_job_is_malformed(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    """Demo jobs (``demo-job-1``) or a server-side mix-up must never answer for our job."""
    router.get(f"/jobs/{JOB}").mock(return_value=ok(job_doc(id="demo-job-1")))
    with pytest.raises(MalformedAnswer):
        await monitor.get_job_details(JOB)


# --------------------------------------------------------------------------- synthetic job


@pytest.mark.asyncio
async def test_synthetic_job_exists_but_is_never_owned_or_safe(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    """HTTP 200 with the server's stand-in (no status, no owner) when the database misses it."""
    synthetic = {"id": JOB, "created_at": "2026-05-09T07:35:25.000Z", "encoder_id": None}
    router.get(f"/jobs/{JOB}").mock(return_value=ok(synthetic))
    job = await monitor.get_job_details(JOB)
    assert job is not None and job.synthetic and job.status is None
    for did in (ME, OTHER, "did:z6MkAnything"):
        result = await monitor.verify_job_ownership(JOB, did)
        assert result.job_exists is True
        assert result.is_owned is False
        assert result.is_safe_to_process is False
    availability = await monitor.is_job_available_to_claim(JOB)
    assert availability.available is False
    assert availability.reason == "Job status is None"


@pytest.mark.asyncio
async def test_synthetic_job_with_owner_but_no_status_is_never_safe(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    router.get(f"/jobs/{JOB}").mock(return_value=ok({"id": JOB, "assigned_to": ME}))
    result = await monitor.verify_job_ownership(JOB, ME)
    # The owner it names is the gateway's belief: a synthetic record is never owned.
    assert result.is_owned is False and result.actual_owner == ME
    assert result.is_safe_to_process is False


# --------------------------------------------------------------------------- verify_job_ownership


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("owner", "status", "owned", "safe"),
    [
        (ME, "assigned", True, True),
        (ME, "running", True, True),
        (ME, "complete", True, False),
        (ME, "uploading", True, False),
        (ME, "queued", True, False),
        (OTHER, "assigned", False, False),
        (OTHER, "running", False, False),
        (None, "assigned", False, False),
        (ABSENT, "running", False, False),
        ("", "running", False, False),
    ],
)
async def test_verify_job_ownership_semantics(
    monitor: GatewayMonitorService,
    router: respx.Router,
    owner: Any,
    status: str,
    owned: bool,
    safe: bool,
) -> None:
    router.get(f"/jobs/{JOB}").mock(return_value=ok(job_doc(assigned_to=owner, status=status)))
    result = await monitor.verify_job_ownership(JOB, ME)
    assert result.job_exists is True
    assert result.is_owned is owned
    assert result.is_safe_to_process is safe
    assert result.status == status
    assert result.actual_owner == (owner if isinstance(owner, str) and owner else None)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("did:z6MkSameKey", "did:key:z6MkSameKey"),
        ("did:key:z6MkSameKey", "did:z6MkSameKey"),
        ("didz6MkSameKey", "did:key:z6MkSameKey"),
    ],
)
async def test_did_normalisation(
    monitor: GatewayMonitorService, router: respx.Router, stored: str, expected: str
) -> None:
    router.get(f"/jobs/{JOB}").mock(return_value=ok(job_doc(assigned_to=stored)))
    result = await monitor.verify_job_ownership(JOB, expected)
    assert result.is_owned is True and result.is_safe_to_process is True
    assert result.actual_owner == stored


@pytest.mark.asyncio
async def test_did_normalisation_does_not_merge_different_keys(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    router.get(f"/jobs/{JOB}").mock(return_value=ok(job_doc(assigned_to="did:z6MkOtherKey")))
    result = await monitor.verify_job_ownership(JOB, "did:key:z6MkSameKey")
    assert result.is_owned is False


@pytest.mark.asyncio
async def test_verify_not_found(monitor: GatewayMonitorService, router: respx.Router) -> None:
    router.get(f"/jobs/{JOB}").mock(return_value=NOT_FOUND)
    result = await monitor.verify_job_ownership(JOB, ME)
    assert (result.job_exists, result.is_owned, result.is_safe_to_process) == (False, False, False)
    assert result.actual_owner is None and result.status is None


@pytest.mark.asyncio
@pytest.mark.parametrize("did", [None, 5, "", "key:z6Mk", {"$ne": None}, "did:" + "x" * 300])
async def test_verify_rejects_bad_did_before_any_request(
    monitor: GatewayMonitorService, router: respx.Router, did: Any
) -> None:
    route = router.route().mock(return_value=ok(job_doc()))
    with pytest.raises(InvalidInputError):
        await monitor.verify_job_ownership(JOB, did)
    assert route.call_count == 0


# --------------------------------------------------------------------------- availability


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("changes", "available", "reason", "current_owner"),
    [
        ({"assigned_to": OTHER}, False, f"Already assigned to {OTHER}", OTHER),
        ({"assigned_to": OTHER, "status": "complete"}, False, f"Already assigned to {OTHER}",
         OTHER),
        ({"assigned_to": None, "status": "complete"}, False, "Job already completed", None),
        ({"assigned_to": None, "status": "completed"}, False, "Job already completed", None),
        ({"assigned_to": ABSENT, "status": "failed"}, False, "Job marked as failed", None),
        ({"assigned_to": None, "status": "pending"}, True, "Job available to claim", None),
        ({"assigned_to": None, "status": "queued"}, True, "Job available to claim", None),
        ({"assigned_to": ABSENT, "status": "created"}, True, "Job available to claim", None),
        ({"assigned_to": None, "status": "unassigned"}, False, "Job status is unassigned", None),
        ({"assigned_to": None, "status": "running"}, False, "Job status is running", None),
    ],
)
async def test_availability_semantics_and_reasons(
    monitor: GatewayMonitorService,
    router: respx.Router,
    changes: dict[str, Any],
    available: bool,
    reason: str,
    current_owner: str | None,
) -> None:
    router.get(f"/jobs/{JOB}").mock(return_value=ok(job_doc(**changes)))
    result = await monitor.is_job_available_to_claim(JOB)
    assert result.available is available
    assert result.reason == reason
    assert result.current_owner == current_owner


@pytest.mark.asyncio
async def test_availability_not_found(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    router.get(f"/jobs/{JOB}").mock(return_value=NOT_FOUND)
    result = await monitor.is_job_available_to_claim(JOB)
    assert (result.available, result.reason) == (False, "Job not found in system")


# --------------------------------------------------------------------------- get_job_status


@pytest.mark.asyncio
async def test_get_job_status(monitor: GatewayMonitorService, router: respx.Router) -> None:
    data = {"job_id": JOB, "status": "running", "progress": 40, "encoder_id": "enc-1",
            "error": None, "metadata": {}}
    route = router.get(f"/jobs/{JOB}/status").mock(return_value=ok(data))
    assert await monitor.get_job_status(JOB) == data
    assert route.calls.last.request.url.raw_path == f"/api/jobs/{JOB}/status".encode()


@pytest.mark.asyncio
async def test_get_job_status_not_found_is_none(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    router.get(f"/jobs/{JOB}/status").mock(
        return_value=httpx.Response(404, json={"success": False, "error": "Job status not found"})
    )
    assert await monitor.get_job_status(JOB) is None


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(404, json={"error": "Route not found"}), TierUnavailable),
        (httpx.Response(404, json={"success": False, "error": "Route not found"}),
         TierUnavailable),
        (httpx.Response(500, json={"success": False, "error": "x"}), TierUnavailable),
        (httpx.Response(429, headers={"Retry-After": "2"}), TierRateLimited),
        (ok({"job_id": "other", "status": "running"}), MalformedAnswer),
        # ... and any other id, whatever its type or key (helper-130's review, session 44)
        (ok({"job_id": 42, "status": "running"}), MalformedAnswer),
        (ok({"job_id": ["other"], "status": "running"}), MalformedAnswer),
        (ok({"job_id": "", "status": "running"}), MalformedAnswer),
        (ok({"id": "other", "status": "running"}), MalformedAnswer),
        (ok({"job_id": JOB, "status": 3}), MalformedAnswer),
        (ok([]), MalformedAnswer),
        (ok(None), MalformedAnswer),
        (httpx.Response(200, text="nope"), MalformedAnswer),
    ],
)
async def test_get_job_status_failures(
    monitor: GatewayMonitorService,
    router: respx.Router,
    response: httpx.Response,
    error: type[Exception],
) -> None:
    router.get(f"/jobs/{JOB}/status").mock(return_value=response)
    with pytest.raises(error):
        await monitor.get_job_status(JOB)


# --------------------------------------------------------------------------- batch_status


@pytest.mark.asyncio
async def test_batch_status_posts_ids_and_missing_keys_mean_unknown(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    ids = ["job-1", "job-2", "job-3"]
    route = router.post("/jobs/batch-status").mock(
        return_value=ok({"job-1": "running", "job-3": "complete"})
    )
    statuses = await monitor.batch_status(ids)
    assert statuses == {"job-1": "running", "job-3": "complete"}
    assert "job-2" not in statuses
    request = route.calls.last.request
    assert request.url.raw_path == b"/api/jobs/batch-status"
    assert json.loads(request.content) == {"jobIds": ids}


@pytest.mark.asyncio
async def test_batch_status_reads_the_published_servers_status_objects(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    """The published monitor answers each id with the gateway's status object, not a bare
    status (its ``getBatchJobStatus`` map); both shapes are read, and may be mixed."""
    router.post("/jobs/batch-status").mock(return_value=ok({
        "job-1": {"job_id": "job-1", "status": "running", "progress": 40,
                  "encoder_id": "did:key:z6Mkother", "metadata": {}},
        "job-2": "queued",
        "job-3": {"status": "complete"},
    }))
    assert await monitor.batch_status(["job-1", "job-2", "job-3"]) == {
        "job-1": "running", "job-2": "queued", "job-3": "complete"}


@pytest.mark.asyncio
async def test_batch_status_accepts_exactly_the_limit(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    ids = [f"job-{i}" for i in range(MAX_BATCH_IDS)]
    route = router.post("/jobs/batch-status").mock(return_value=ok({}))
    assert await monitor.batch_status(tuple(ids)) == {}
    assert json.loads(route.calls.last.request.content) == {"jobIds": ids}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "job_ids",
    [[f"job-{i}" for i in range(MAX_BATCH_IDS + 1)], "job-1", b"job-1", {"job-1"}, None, 5],
)
async def test_batch_status_rejects_bad_arguments_before_any_request(
    monitor: GatewayMonitorService, router: respx.Router, job_ids: Any
) -> None:
    route = router.route().mock(return_value=ok({}))
    with pytest.raises(InvalidInputError):
        await monitor.batch_status(job_ids)
    assert route.call_count == 0


@pytest.mark.asyncio
async def test_batch_status_empty_sends_nothing(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    route = router.route().mock(return_value=ok({}))
    assert await monitor.batch_status([]) == {}
    assert route.call_count == 0


@pytest.mark.asyncio
async def test_batch_status_bare_empty_object_is_all_unknown(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    """Gateway down: the real server answers 200 ``{}`` even for jobs in its database."""
    router.post("/jobs/batch-status").mock(return_value=httpx.Response(200, json={}))
    assert await monitor.batch_status(["job-1"]) == {}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("response", "error"),
    [
        (ok({"job-1": "running", "job-9": "complete"}), MalformedAnswer),
        (ok({"job-1": 3}), MalformedAnswer),
        (ok({"job-1": None}), MalformedAnswer),
        (ok({"job-1": {"job_id": "job-1"}}), MalformedAnswer),  # an object without a status
        (ok({"job-1": {"job_id": "job-1", "status": 3}}), MalformedAnswer),
        (ok({"job-1": {"job_id": "job-2", "status": "queued"}}), MalformedAnswer),
        (ok({"job-1": ["queued"]}), MalformedAnswer),
        (ok(["job-1"]), MalformedAnswer),
        (httpx.Response(200, json={"success": False, "error": "x"}), MalformedAnswer),
        (httpx.Response(200, text="{"), MalformedAnswer),
        (httpx.Response(400, json={"success": False, "error": "Too many"}), TierUnavailable),
        (httpx.Response(404, json={"error": "Route not found"}), TierUnavailable),
        (httpx.Response(500, json={"error": "Internal server error"}), TierUnavailable),
        (httpx.Response(429), TierRateLimited),
    ],
)
async def test_batch_status_failures(
    monitor: GatewayMonitorService,
    router: respx.Router,
    response: httpx.Response,
    error: type[Exception],
) -> None:
    router.post("/jobs/batch-status").mock(return_value=response)
    with pytest.raises(error):
        await monitor.batch_status(["job-1", "job-2"])


# --------------------------------------------------------------------------- health


@pytest.mark.asyncio
async def test_health_true_is_not_evidence_that_jobs_can_be_answered(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    """The real /health is always 200, even while every job lookup fails."""
    health = router.get("/health").mock(return_value=httpx.Response(200, json={"status": "ok"}))
    router.get(f"/jobs/{JOB}").mock(
        return_value=httpx.Response(500, json={"success": False, "error": "Failed"})
    )
    assert await monitor.health() is True
    assert health.calls.last.request.url.raw_path == b"/api/health"
    with pytest.raises(TierUnavailable):
        await monitor.verify_job_ownership(JOB, ME)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "mock",
    [
        {"return_value": httpx.Response(503)},
        {"return_value": httpx.Response(404, json={"error": "Route not found"})},
        {"side_effect": httpx.ConnectError},
        {"side_effect": httpx.ReadTimeout},
    ],
)
async def test_health_false(
    monitor: GatewayMonitorService, router: respx.Router, mock: dict[str, Any]
) -> None:
    router.get("/health").mock(**mock)
    assert await monitor.health() is False


# --------------------------------------------------------------------------- TierClient


@pytest.mark.asyncio
async def test_observe(monitor: GatewayMonitorService, router: respx.Router) -> None:
    router.get(f"/jobs/{JOB}").mock(side_effect=[ok(job_doc()), NOT_FOUND])
    seen = await monitor.observe(JOB)
    assert isinstance(seen, Observation)
    assert seen.tier is Tier.MONITOR and seen.owner == ME and seen.status == "assigned"
    assert seen.token is None
    gone = await monitor.observe(JOB)
    assert gone.job is None and gone.owner is None


@pytest.mark.asyncio
async def test_writes_are_refused_as_read_only(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    route = router.route().mock(return_value=ok(job_doc()))
    for call in (
        monitor.claim(JOB),
        monitor.claim(JOB, conditional=False),
        monitor.heartbeat(JOB, None, {"pct": 10.0}),
        monitor.finish(JOB, None, {"cid": "bafy"}),
        monitor.release(JOB, None, "giving up", failed=False),
    ):
        with pytest.raises(TierUnavailable, match="read-only tier"):
            await call
    assert route.call_count == 0


# --------------------------------------------------------------------------- disabled, lifecycle


@pytest.mark.asyncio
async def test_disabled_service_raises_and_sends_nothing(router: respx.Router) -> None:
    route = router.route().mock(return_value=ok(job_doc()))
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) as c:
        service = GatewayMonitorService(BASE, enabled=False, client=c)
        assert service.is_enabled() is False
        for call in (
            service.get_job_details(JOB),
            service.verify_job_ownership(JOB, ME),
            service.is_job_available_to_claim(JOB),
            service.get_job_status(JOB),
            service.batch_status([JOB]),
            service.health(),
            service.observe(JOB),
        ):
            with pytest.raises(TierUnavailable, match="disabled"):
                await call
    assert route.call_count == 0


@pytest.mark.asyncio
async def test_own_client_is_created_and_closed() -> None:
    with respx.mock(base_url=BASE, assert_all_called=True) as mock:
        mock.get(f"/jobs/{JOB}").mock(return_value=ok(job_doc()))
        async with GatewayMonitorService(BASE) as service:
            assert (await service.verify_job_ownership(JOB, ME)).is_owned
        with pytest.raises(TierUnavailable, match="closed"):
            await service.get_job_details(JOB)
        await service.aclose()  # idempotent


@pytest.mark.asyncio
async def test_callers_client_is_not_closed(router: respx.Router) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) as c:
        async with GatewayMonitorService(BASE, client=c):
            pass
        assert not c.is_closed


@pytest.mark.asyncio
async def test_every_error_is_a_verifier_error() -> None:
    for error in (TierUnavailable, TierTimeout, TierRateLimited, MalformedAnswer,
                  InvalidInputError, ConfigurationError):
        assert issubclass(error, VerifierError)


# --------------------------------------------------------------------------- what errors say
# Written from a mutation run of verifier/_monitor.py (session 37): each pins what an operator
# reads when the monitor fails, or a limit of the real server, that no test held.


@pytest.mark.asyncio
async def test_the_batch_limit_is_the_real_servers_fifty(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    """The contract's figure, not the constant's: the published server answers 400 above 50
    ids, so 51 must never be sent (a constant moved to 51 passed the tests written with it)."""
    route = router.post("/jobs/batch-status").mock(return_value=ok({}))
    assert await monitor.batch_status([f"job-{i}" for i in range(50)]) == {}
    with pytest.raises(InvalidInputError, match="50"):
        await monitor.batch_status([f"job-{i}" for i in range(51)])
    assert route.call_count == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(("response", "says"), [
    (httpx.Response(404, json={"error": "Route not found"}),
     rf"HTTP 404 from {BASE}/jobs/{JOB} without the monitor's not-found body \(route not found"),
    (httpx.Response(418), rf"unexpected HTTP 418 from {BASE}/jobs/{JOB}$"),
    (httpx.Response(503), rf"HTTP 503 from {BASE}/jobs/{JOB}$"),
], ids=["404-route", "418", "503"])
async def test_a_failed_read_names_the_route_and_what_came_back(
    monitor: GatewayMonitorService, router: respx.Router, response: httpx.Response, says: str
) -> None:
    router.get(f"/jobs/{JOB}").mock(return_value=response)
    with pytest.raises(TierUnavailable, match=says.replace(".", r"\.")):
        await monitor.get_job_details(JOB)


@pytest.mark.asyncio
async def test_a_disabled_service_says_so_before_judging_the_id(router: respx.Router) -> None:
    """Disabled is the operator's setting; the id's fault is beside the point (and no request
    is sent either way)."""
    route = router.route().mock(return_value=ok(job_doc()))
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) as c:
        service = GatewayMonitorService(BASE, enabled=False, client=c)
        for call in (service.get_job_details("a/b"), service.verify_job_ownership("a/b", ME),
                     service.get_job_status("a/b"), service.batch_status(["a/b"])):
            with pytest.raises(TierUnavailable, match="disabled"):
                await call
    assert route.call_count == 0


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), float("inf"), True, "10"])
@pytest.mark.parametrize("enabled", [True, False])
def test_a_timeout_that_is_not_a_positive_number_is_refused(timeout: Any, enabled: bool) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        GatewayMonitorService(BASE, enabled=enabled, timeout=timeout)


@pytest.mark.asyncio
async def test_closing_the_service_closes_the_client_it_made(
    closed_clients: list[httpx.AsyncClient],
) -> None:
    service = GatewayMonitorService(BASE)
    await service.aclose()
    assert len(closed_clients) == 1 and closed_clients[0].is_closed


@pytest.mark.asyncio
@pytest.mark.parametrize(("length", "shown"), [(100, "whole"), (101, "cut")])
async def test_an_id_in_a_batch_error_is_shown_whole_up_to_100_characters(
    monitor: GatewayMonitorService, router: respx.Router, length: int, shown: str
) -> None:
    job_id = "j" * length
    router.post("/jobs/batch-status").mock(return_value=ok({job_id: 7}))
    with pytest.raises(MalformedAnswer) as info:
        await monitor.batch_status([job_id])
    expected = repr(job_id) if shown == "whole" else repr("j" * 100 + "...")
    assert f"status of job {expected} should be a string" in str(info.value)

"""Tests of :mod:`verifier._monitor`: transport, error mapping, body limits, hostile ids.

Every failure here must surface as a tier error (timeout, unavailable, rate limited, malformed),
never as an answer, and never after a hidden retry. The documented API semantics are in
``test_monitor.py``; the shared plumbing itself (:mod:`verifier._http`) in ``test_http.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from verifier import (
    ConfigurationError,
    GatewayMonitorService,
    InvalidInputError,
    MalformedAnswer,
    TierRateLimited,
    TierTimeout,
    TierUnavailable,
)
from verifier._monitor import MAX_BODY_BYTES, parse_retry_after

from .monitor_support import BASE, JOB, ME, OTHER, job_doc, ok

# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "base_url",
    [
        "",
        "gateway-monitor.3speak.tv/api",
        "ftp://gateway-monitor.3speak.tv/api",
        "https:///api",
        "https://host:notaport/api",
        "https://host/api?x=1",
        "https://host/api#frag",
        " https://host/api",
        "https://host/a pi",
        None,
    ],
)
@pytest.mark.asyncio
async def test_invalid_base_url_is_a_configuration_error(base_url: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        GatewayMonitorService(base_url)
    assert info.value.variable == "GATEWAY_MONITOR_BASE_URL"


@pytest.mark.asyncio
async def test_configuration_error_never_shows_credentials() -> None:
    with pytest.raises(ConfigurationError) as info:
        GatewayMonitorService("ftp://user:hunter2@host/api")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("bad_timeout", [0, -1.0, float("nan"), float("inf"), True, "10"])
@pytest.mark.asyncio
async def test_invalid_timeout(bad_timeout: Any) -> None:
    with pytest.raises(ConfigurationError):
        GatewayMonitorService(BASE, timeout=bad_timeout)


@pytest.mark.asyncio
async def test_base_url_with_credentials_is_redacted() -> None:
    service = GatewayMonitorService("https://user:hunter2@monitor.test/api/")
    assert service.base_url == "https://monitor.test/api"
    assert "hunter2" not in repr(service)
    assert "monitor.test" in repr(service)


@pytest.mark.asyncio
async def test_trailing_slash_of_base_url_is_not_doubled(router: respx.Router) -> None:
    route = router.route().mock(return_value=ok(job_doc()))
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) as c:
        await GatewayMonitorService(BASE + "/", client=c).get_job_details(JOB)
    assert route.calls.last.request.url.raw_path == f"/api/jobs/{JOB}".encode()


# --------------------------------------------------------------------------- failures


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500, json={"success": False, "error": "Failed to fetch job details"}),
        httpx.Response(500, json={"error": "Internal server error"}),
        httpx.Response(500, json={"success": True, "data": job_doc()}),
        httpx.Response(502, text="Bad Gateway"),
        httpx.Response(503),
        httpx.Response(504, text="<html>timeout</html>"),
    ],
)
async def test_5xx_is_unavailable_never_an_answer(
    monitor: GatewayMonitorService, router: respx.Router, response: httpx.Response
) -> None:
    """500 comes for missing and existing jobs alike: it means neither."""
    router.get(f"/jobs/{JOB}").mock(return_value=response)
    with pytest.raises(TierUnavailable) as info:
        await monitor.get_job_details(JOB)
    assert not isinstance(info.value, TierRateLimited)
    assert str(response.status_code) in str(info.value)
    with pytest.raises(TierUnavailable):
        await monitor.verify_job_ownership(JOB, ME)
    with pytest.raises(TierUnavailable):
        await monitor.is_job_available_to_claim(JOB)
    with pytest.raises(TierUnavailable):
        await monitor.observe(JOB)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(301, headers={"location": "https://elsewhere.test/api/jobs/x"}),
        httpx.Response(400, json={"success": False, "error": "Bad request"}),
        httpx.Response(403, text="Forbidden"),
        httpx.Response(204),
    ],
)
async def test_other_statuses_are_unavailable(
    monitor: GatewayMonitorService, router: respx.Router, response: httpx.Response
) -> None:
    route = router.route().mock(return_value=response)
    with pytest.raises(TierUnavailable):
        await monitor.get_job_details(JOB)
    assert route.call_count == 1  # redirects are not followed


@pytest.mark.asyncio
async def test_flaky_500_then_200_raises_then_answers_without_hidden_retry(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    route = router.get(f"/jobs/{JOB}").mock(
        side_effect=[
            httpx.Response(500, json={"success": False, "error": "Failed to fetch job details"}),
            ok(job_doc()),
        ]
    )
    with pytest.raises(TierUnavailable):
        await monitor.verify_job_ownership(JOB, ME)
    assert route.call_count == 1
    result = await monitor.verify_job_ownership(JOB, ME)
    assert result.is_owned and result.is_safe_to_process
    assert route.call_count == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "error", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.WriteTimeout, httpx.PoolTimeout]
)
async def test_timeouts(
    monitor: GatewayMonitorService, router: respx.Router, error: type[Exception]
) -> None:
    route = router.get(f"/jobs/{JOB}").mock(side_effect=error)
    with pytest.raises(TierTimeout):
        await monitor.get_job_details(JOB)
    with pytest.raises(TierTimeout):
        await monitor.verify_job_ownership(JOB, ME)
    with pytest.raises(TierTimeout):
        await monitor.is_job_available_to_claim(JOB)
    assert route.call_count == 3  # one request per call, never retried


@pytest.mark.asyncio
async def test_get_job_status_timeout(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    router.get(f"/jobs/{JOB}/status").mock(side_effect=httpx.ReadTimeout)
    with pytest.raises(TierTimeout):
        await monitor.get_job_status(JOB)


class _StalledStream(httpx.AsyncByteStream):
    """A body that starts and then never finishes (a slow-drip server)."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"success": true, "data": '
        await asyncio.Event().wait()


class _EndlessStream(httpx.AsyncByteStream):
    """An endless body; counts what was pulled to prove the client stops early."""

    def __init__(self) -> None:
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            self.pulled += 65536
            yield b" " * 65536


@pytest.mark.asyncio
async def test_whole_exchange_has_a_hard_deadline(router: respx.Router) -> None:
    router.get(f"/jobs/{JOB}").mock(return_value=httpx.Response(200, stream=_StalledStream()))
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) as c:
        service = GatewayMonitorService(BASE, client=c, timeout=0.05)
        with pytest.raises(TierTimeout):
            await service.get_job_details(JOB)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "error", [httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.ProxyError]
)
async def test_connection_errors_are_unavailable(
    monitor: GatewayMonitorService, router: respx.Router, error: type[Exception]
) -> None:
    route = router.get(f"/jobs/{JOB}").mock(side_effect=error)
    with pytest.raises(TierUnavailable):
        await monitor.verify_job_ownership(JOB, ME)
    assert route.call_count == 1


@pytest.mark.asyncio
async def test_errors_never_show_credentials(router: respx.Router) -> None:
    router.route().mock(side_effect=httpx.ConnectError("connect to user:hunter2@monitor.test"))
    base = "https://user:hunter2@monitor.test/api"
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) as c:
        service = GatewayMonitorService(base, client=c)
        with pytest.raises(TierUnavailable) as info:
            await service.get_job_details(JOB)
    assert "hunter2" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "monitor.test" in str(info.value)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("0", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("soon", None),
     ("-3", None), (None, None),
     # RFC 9110's delay-seconds is digits: the gateway's and aid's lenient reading would take
     # this for 1,000 s (a mutation run found no test telling the two readings apart)
     ("1e3", None)],
)
async def test_429_is_rate_limited_with_retry_after(
    monitor: GatewayMonitorService,
    router: respx.Router,
    header: str | None,
    expected: float | None,
) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    router.get(f"/jobs/{JOB}").mock(return_value=httpx.Response(429, headers=headers))
    with pytest.raises(TierRateLimited) as info:
        await monitor.is_job_available_to_claim(JOB)
    assert info.value.retry_after == expected


@pytest.mark.asyncio
async def test_429_with_future_http_date(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    router.get(f"/jobs/{JOB}").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"})
    )
    with pytest.raises(TierRateLimited) as info:
        await monitor.get_job_details(JOB)
    assert info.value.retry_after is not None and info.value.retry_after > 365 * 86400


@pytest.mark.asyncio
async def test_a_200_reporting_a_failure_is_no_answer_but_not_found_is_none() -> None:
    """Security review (session 16): ``200 {"success": false, "error": "Failed to fetch job
    details"}`` read as "no such job". Only the monitor's own "not found" is an answer."""
    failed = {"success": False, "error": "Failed to fetch job details"}
    missing = {"success": False, "error": "Job not found"}
    for path in (f"/jobs/{JOB}", f"/jobs/{JOB}/status"):
        for body, expect in ((failed, TierUnavailable), (missing, None)):
            router = respx.Router(base_url=BASE)
            router.get(path).respond(200, json=body)
            async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) \
                    as client:
                service = GatewayMonitorService(base_url=BASE, client=client)
                call = (service.get_job_details if path.endswith(JOB)
                        else service.get_job_status)
                if expect is None:
                    assert await call(JOB) is None
                else:
                    with pytest.raises(expect, match="HTTP 200 reporting a failure"):
                        await call(JOB)


@pytest.mark.asyncio
async def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 1.5 ", now=now) == 1.5
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 -0000", now=now) == 30.0
    # The last: a year too large for a C long raised OverflowError out of every read (security
    # review, session 16).
    for junk in ("", "abc", "-1", "inf", "nan", "1e3", "\u0663", "Thu, 99 Foo",
                 "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"):
        assert parse_retry_after(junk, now=now) is None
    assert parse_retry_after(None) is None


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "content",
    [
        b"<html>Bad gateway</html>",
        b'{"success": true, "data": {"id": "' + JOB.encode(),  # truncated
        b"",
        b'{"success": true, "data": {"id": "x", "progress": NaN}}',
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe\x00",
    ],
    ids=["html", "truncated", "empty", "nan", "deep", "binary"],
)
async def test_non_json_is_malformed(
    monitor: GatewayMonitorService, router: respx.Router, content: bytes
) -> None:
    router.get(f"/jobs/{JOB}").mock(return_value=httpx.Response(200, content=content))
    with pytest.raises(MalformedAnswer):
        await monitor.get_job_details(JOB)
    with pytest.raises(MalformedAnswer):
        await monitor.verify_job_ownership(JOB, ME)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        {"success": True, "data": job_doc(assigned_to=5)},
        {"success": True, "data": []},
        {"success": True, "data": "job"},
        {"success": True, "data": job_doc(status=7)},
        {"success": True, "data": job_doc(progress="12%")},
        {"success": True, "data": job_doc(progress=True)},
        {"success": True, "data": job_doc(id=5)},
        {"success": True, "data": job_doc(attempt_count="1")},
        {"success": True, "data": job_doc(metadata=[])},
        {"success": True, "data": None},
        {"success": True},
        {"success": "true", "data": job_doc()},
        {"data": job_doc()},
        [job_doc()],
        "ok",
    ],
    ids=["owner-int", "data-list", "data-str", "status-int", "progress-str", "progress-bool",
         "id-int", "attempts-str", "metadata-list", "data-null", "data-missing",
         "success-str", "success-missing", "body-list", "body-str"],
)
async def test_wrong_types_are_malformed(
    monitor: GatewayMonitorService, router: respx.Router, body: Any
) -> None:
    router.get(f"/jobs/{JOB}").mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(MalformedAnswer) as info:
        await monitor.verify_job_ownership(JOB, ME)
    assert info.value.tier == "monitor"


@pytest.mark.asyncio
async def test_declared_huge_body_is_refused(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    stream = _EndlessStream()
    router.get(f"/jobs/{JOB}").mock(
        return_value=httpx.Response(
            200, headers={"content-length": str(MAX_BODY_BYTES + 1)}, stream=stream
        )
    )
    with pytest.raises(MalformedAnswer):
        await monitor.get_job_details(JOB)
    assert stream.pulled == 0


@pytest.mark.asyncio
async def test_endless_body_is_cut_off(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    stream = _EndlessStream()
    router.get(f"/jobs/{JOB}").mock(return_value=httpx.Response(200, stream=stream))
    with pytest.raises(MalformedAnswer):
        await monitor.get_job_details(JOB)
    assert MAX_BODY_BYTES < stream.pulled <= MAX_BODY_BYTES + 65536


@pytest.mark.asyncio
async def test_body_just_under_the_limit_is_read(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    body = json.dumps({"success": True, "data": job_doc()}).encode()
    padded = body + b" " * (MAX_BODY_BYTES - len(body))
    router.get(f"/jobs/{JOB}").mock(return_value=httpx.Response(200, content=padded))
    assert await monitor.get_job_details(JOB) is not None


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(500, stream=_EndlessStream()), TierUnavailable),
        (httpx.Response(503, stream=_EndlessStream()), TierUnavailable),
        (httpx.Response(429, headers={"Retry-After": "3"}, stream=_EndlessStream()),
         TierRateLimited),
    ],
    ids=["500", "503", "429"],
)
async def test_429_and_5xx_are_raised_before_their_body_is_read(
    monitor: GatewayMonitorService,
    router: respx.Router,
    response: httpx.Response,
    error: type[Exception],
) -> None:
    """Whatever such a body says, it is no answer: a huge or endless one must not turn the
    outage into a MalformedAnswer or a timeout, nor cost a read."""
    router.get(f"/jobs/{JOB}").mock(return_value=response)
    with pytest.raises(error) as info:
        await monitor.get_job_details(JOB)
    assert type(info.value) is error
    assert isinstance(response.stream, _EndlessStream) and response.stream.pulled == 0


@pytest.mark.asyncio
async def test_duplicate_keys_are_malformed(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    """Two JSON parsers may keep different copies of a duplicated key: no owner is trusted."""
    content = (
        b'{"success": true, "data": {"id": "' + JOB.encode() + b'", "status": "assigned", '
        b'"assigned_to": "' + OTHER.encode() + b'", "assigned_to": "' + ME.encode() + b'"}}'
    )
    router.get(f"/jobs/{JOB}").mock(return_value=httpx.Response(200, content=content))
    with pytest.raises(MalformedAnswer):
        await monitor.verify_job_ownership(JOB, ME)


@pytest.mark.asyncio
async def test_redirects_are_not_followed_even_by_a_client_that_would(
    router: respx.Router,
) -> None:
    route = router.route().mock(
        return_value=httpx.Response(302, headers={"location": "https://elsewhere.test/x"})
    )
    transport = httpx.MockTransport(router.async_handler)
    async with httpx.AsyncClient(transport=transport, follow_redirects=True) as c:
        with pytest.raises(TierUnavailable):
            await GatewayMonitorService(BASE, client=c).get_job_details(JOB)
    assert route.call_count == 1


# --------------------------------------------------------------------------- hostile ids


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "job_id",
    ["../x", "a/b", "?", "#", "%2F", "..", ".", "a\\b", "x?status=1", "x#y", "..%2Fadmin",
     "a" * 300, None, 5, {"$ne": None}, "", "a\x00b", "a\nb", b"bytes",
     # Session 39, a differential test against Express and axios: the monitor asks the
     # gateway for "a" when asked for "a " (the URL parser drops trailing spaces; ".. " is a
     # dot segment), and routes /jobs/available (any case) before /jobs/:id.
     "a ", ".. ", " ", "available", "AVAILABLE", "Active", "completed"],
)
async def test_hostile_ids_are_refused_before_any_request(
    monitor: GatewayMonitorService, router: respx.Router, job_id: Any
) -> None:
    route = router.route().mock(return_value=ok(job_doc()))
    for call in (
        monitor.get_job_details(job_id),
        monitor.verify_job_ownership(job_id, ME),
        monitor.is_job_available_to_claim(job_id),
        monitor.get_job_status(job_id),
        monitor.observe(job_id),
        monitor.batch_status([JOB, job_id]),
    ):
        with pytest.raises(InvalidInputError):
            await call
    assert route.call_count == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("job_id", "raw_path"),
    [
        ("a b", b"/api/jobs/a%20b"),
        (" a", b"/api/jobs/%20a"),  # a leading space survives the server's forward
        ("availables", b"/api/jobs/availables"),
        ("caf\u00e9", b"/api/jobs/caf%C3%A9"),
        ("a:b@c+d&e=f", b"/api/jobs/a%3Ab%40c%2Bd%26e%3Df"),
        ("it's;x", b"/api/jobs/it%27s%3Bx"),
        ("...", b"/api/jobs/..."),
        ("a" * 256, b"/api/jobs/" + b"a" * 256),
        ("my-permlink_1.2~x", b"/api/jobs/my-permlink_1.2~x"),
    ],
)
async def test_other_ids_are_percent_encoded_as_one_segment(
    monitor: GatewayMonitorService, router: respx.Router, job_id: str, raw_path: bytes
) -> None:
    route = router.route().mock(return_value=ok(job_doc(id=job_id)))
    job = await monitor.get_job_details(job_id)
    assert job is not None and job.id == job_id
    assert route.calls.last.request.url.raw_path == raw_path
    route.mock(return_value=ok({"job_id": job_id, "status": "queued"}))
    await monitor.get_job_status(job_id)
    assert route.calls.last.request.url.raw_path == raw_path + b"/status"

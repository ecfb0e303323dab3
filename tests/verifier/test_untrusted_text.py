"""Regression tests of a security review (session 14): untrusted text in logs and errors.

Owners, statuses, ids and error codes come from servers we do not trust. Before the fixes:
a monitor's ``assigned_to`` holding a newline forged whole guard log lines
("MONITOR_CONFIRMED: Job j is assigned to us"), as did Gateway Aid's error ``code``; ids
with C1 controls, bidi overrides or line separators passed validation and reached every log
line; ``did:`` and ``did`` both normalised to the bare ``did:key:`` and "owned" each other's
jobs; a 400-digit ``progress`` raised ``OverflowError`` instead of a verifier error; a base
URL's password reached httpx's INFO log line of every request; a 500 kB id from the monitor
went whole into the error message.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
import respx

from verifier import (
    GatewayMonitorService,
    InvalidInputError,
    MalformedAnswer,
    OwnershipGuard,
    Policy,
    Tier,
    TimingModel,
    parse_job,
    validate_did,
    validate_job_id,
)
from verifier._http import TierHttp, error_code
from verifier._text import printable
from verifier.testing import InMemoryJobs, InMemoryTier, virtual_time

ME = "did:key:z6MkEncoderA"
FORGED = ("did:key:zOTHER\n2026-12-03 10:00:00,000 INFO verifier.guard MONITOR_CONFIRMED: "
          "Job j1 is assigned to us via monitor\x1b[2K\u2028\x85")
TIMING = TimingModel(monitor_lag=5, write_delay=2, recheck_interval=10, reassign_timeout=60)


def one_line(text: str) -> bool:
    return text.isprintable()


def test_printable_escapes_every_line_breaker_and_escape_and_bounds_the_length() -> None:
    shown = printable(FORGED)
    assert one_line(shown) and len(shown.splitlines()) == 1
    assert "\\x0a" in shown and "\\x1b" in shown and "\\u2028" in shown and "\\x85" in shown
    assert printable("x" * 5000, 100) == "x" * 100 + "..."
    assert printable("job-1 ünïcode ok") == "job-1 ünïcode ok"


@virtual_time
async def test_a_hostile_owner_cannot_forge_guard_log_lines(caplog: pytest.LogCaptureFixture):
    jobs = InMemoryJobs()
    jobs.add("j1", status="assigned", assigned_to=FORGED)
    guard = OwnershipGuard(did=ME, clients=[InMemoryTier(Tier.MONITOR, jobs, ME),
                                            InMemoryTier(Tier.GATEWAY, jobs, ME)],
                           policy=Policy.hardened(TIMING))
    with caplog.at_level(logging.INFO, logger="verifier"):
        outcome = await guard.run("j1", lambda job: asyncio.sleep(0, {"cid": "bafy"}))
    assert not outcome.processed
    messages = [r.getMessage() for r in caplog.records]
    assert any("zOTHER" in m for m in messages), "the owner is still shown, escaped"
    assert all(one_line(m) for m in messages), [m for m in messages if not one_line(m)]
    fields = [v for r in caplog.records for v in getattr(r, "event_fields", {}).values()]
    assert all(one_line(v) for v in fields)


def test_an_aid_error_code_cannot_carry_a_line_break() -> None:
    code = error_code({"code": "JOB_GONE\n2026 INFO forged\x1b[2K", "success": False})
    assert code is not None and one_line(code)
    nested = error_code({"data": {"code": "X\u2028Y"}})
    assert nested is not None and one_line(nested)


@pytest.mark.parametrize("char", ["\x85", "\x9b", "\u2028", "\u2029", "\u202e", "\u200b",
                                  "\ufeff", "\xa0"])
def test_ids_with_invisible_or_line_breaking_characters_are_refused(char: str) -> None:
    with pytest.raises(InvalidInputError, match="control, format or separator"):
        validate_job_id(f"job-9{char}x")


@pytest.mark.parametrize("did", ["did", "did:", "did:key:"])
def test_a_did_without_an_identifier_is_refused(did: str) -> None:
    with pytest.raises(InvalidInputError, match="no identifier"):
        validate_did(did)


def test_a_huge_progress_integer_is_a_malformed_answer() -> None:
    with pytest.raises(MalformedAnswer, match="finite"):
        parse_job({"id": "j1", "status": "running", "progress": int("9" * 400)})


@pytest.mark.asyncio
async def test_a_base_url_password_is_sent_as_basic_auth_never_in_the_url(
        caplog: pytest.LogCaptureFixture) -> None:
    router = respx.Router(assert_all_called=False)
    route = router.route().mock(return_value=httpx.Response(200, json={}))
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) as c:
        http = TierHttp("monitor", "https://mon%40user:S3cret%2FPW@monitor.test/api",
                        variable="GATEWAY_MONITOR_BASE_URL", client=c)
        # The httpx logger's own level: `verifier run` (tested earlier) sets it to WARNING.
        with caplog.at_level(logging.DEBUG, logger="httpx"):
            async with http.exchange("GET", "/jobs/j1") as response:
                assert response.status_code == 200
    request = route.calls.last.request
    assert request.url == httpx.URL("https://monitor.test/api/jobs/j1")
    assert request.headers["Authorization"] == httpx.BasicAuth(
        "mon@user", "S3cret/PW")._auth_header
    assert "S3cret" not in caplog.text and "monitor.test" in caplog.text


@pytest.mark.asyncio
async def test_a_huge_id_in_a_monitor_answer_is_cut_in_the_error() -> None:
    huge = "x" * 500_000
    router = respx.Router()
    router.post(url__regex=r".*/jobs/batch-status").mock(return_value=httpx.Response(
        200, json={"success": True, "data": {huge: "queued"}}))
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) as c:
        monitor = GatewayMonitorService("https://monitor.test/api", client=c)
        with pytest.raises(MalformedAnswer) as info:
            await monitor.batch_status(["j1"])
    assert len(str(info.value)) < 400

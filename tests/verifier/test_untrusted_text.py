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
from verifier._text import conceal, printable
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


# ---- mutation testing of the input checks (session 36): what each check says, at its edges


@pytest.mark.parametrize(("job_id", "says"), [
    ("job\n1", "contains control characters"), ("job\x7f", "contains control characters"),
    ("job\x001", "contains control characters"), ("job-\ud800", "lone surrogate"),
    ("job\x85", "control, format or separator"),
])
def test_a_bad_job_id_is_refused_saying_what_is_wrong(job_id: str, says: str) -> None:
    """Several checks refuse overlapping sets (``isprintable`` refuses C0 controls and lone
    surrogates too); each must still say what is wrong, which only the first one to see it
    does (an earlier check dropped was invisible to every test but its message)."""
    with pytest.raises(InvalidInputError, match=says):
        validate_job_id(job_id)


@pytest.mark.parametrize("did", [
    "did:key:z6Mk\nforged", "did:key:z6Mk\x7f", "did:key:z6Mk\x01", "did:key:z6Mk forged",
    "did:key:z6Mk\tx",
])
def test_a_did_with_a_space_or_a_control_character_is_refused(did: str) -> None:
    with pytest.raises(InvalidInputError, match="space or a control character"):
        validate_did(did)


def test_an_id_or_did_of_the_longest_length_is_taken_and_one_more_is_not() -> None:
    from verifier._ids import MAX_ID_LENGTH, validate_cid

    longest = "did:key:z" + "a" * (MAX_ID_LENGTH - len("did:key:z"))
    assert validate_did(longest) == longest
    with pytest.raises(InvalidInputError, match="characters long"):
        validate_did(longest + "a")
    assert validate_job_id("j" * MAX_ID_LENGTH)
    with pytest.raises(InvalidInputError, match="characters long"):
        validate_job_id("j" * (MAX_ID_LENGTH + 1))
    assert validate_cid("b" * 256) == "b" * 256
    with pytest.raises(InvalidInputError, match="too long"):
        validate_cid("b" * 257)
    for not_a_cid in (5, None, b"bafy", ""):
        with pytest.raises(InvalidInputError, match="non-empty string"):
            validate_cid(not_a_cid)


def test_a_job_id_may_hold_a_space_which_is_printable_and_url_encoded() -> None:
    """Only controls and invisible characters are refused: a space is legal for the gateway,
    percent-encoded in a URL, and cannot break a log line."""
    assert validate_job_id("video upload 7") == "video upload 7"


def test_a_text_of_exactly_the_limit_is_not_cut() -> None:
    assert printable("x" * 10, limit=10) == "x" * 10
    assert printable("x" * 11, limit=10) == "x" * 10 + "..."


@pytest.mark.parametrize("value", [None, "", 0, 5, b"did:key:z6Mk", ["did:key:z6Mk"]])
def test_anything_but_a_non_empty_string_normalises_to_no_did(value: object) -> None:
    from verifier import normalize_did

    assert normalize_did(value) == ""


def test_conceal_takes_out_every_secret_longest_first_and_ignores_an_empty_one() -> None:
    assert conceal("token abcd, again abcd; ab", ["ab", "abcd", ""]) == (
        "token ***, again ***; ***")
    assert conceal("a", ["a"]) == "***"  # however short: a mangled line beats a shown secret
    assert conceal("nothing to hide", []) == "nothing to hide"

"""Tests of ``python -m verifier check`` (:mod:`verifier._cli`) against a respx-mocked monitor.

Each test runs ``main([...])`` in a clean environment (``monkeypatch``) and an empty working
directory (so no real ``.env`` is read), and checks the exit status that scripts rely on:
0 owned and safe, 1 answered "not safe", 2 usage/configuration, 3 no answer.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from verifier import EncoderIdentity, LoopPolicy
from verifier._cli import COMMANDS, build_parser, main
from verifier._settings import KNOWN_VARIABLES

BASE = "https://monitor.test/api"
JOB = "2f42577d-9c93-4a62-9ae2-d1270b5bc4f3"
ME = "did:key:z6Mkq65oNPyW3Gq187UHrvzWVZTmLhYk4wgFsBGD9HQpXSGp"
OTHER = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
SECTIONS = ("Service Status", "Job Details Fetch", "Ownership Verification", "Availability Check")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A community node's environment: monitor enabled at BASE, nothing else configured."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name in KNOWN_VARIABLES or name.startswith("VERIFIER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GATEWAY_MONITOR_ENABLED", "true")
    monkeypatch.setenv("GATEWAY_MONITOR_BASE_URL", BASE)
    return monkeypatch


@pytest.fixture
def monitor() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def job(status: str | None = "running", owner: str | None = ME, **extra: Any) -> dict[str, Any]:
    """A monitor answer with a record as MongoDB stores it (so with its ``_id``)."""
    data: dict[str, Any] = {"_id": "65f0c0ffee0000000000abcd", "id": JOB,
                            "created_at": "2025-01-01T00:00:00.000Z", **extra}
    if status is not None:
        data["status"] = status
    if owner is not None:
        data["assigned_to"] = owner
    return {"success": True, "data": data}


#: The real server's stand-in (job missing from its database), naming us as the gateway does.
STAND_IN: dict[str, Any] = {
    "id": JOB, "status": "running", "created_at": "2025-01-01T00:00:00.000Z",
    "metadata": {"video_owner": "", "video_permlink": ""},
    "storageMetadata": {"app": "", "key": "", "type": ""}, "input": {"uri": "", "size": 0},
    "assigned_to": ME, "progress": 10, "owner": "", "permlink": "",
}


def serve(router: respx.MockRouter, body: Any, status: int = 200) -> respx.Route:
    return router.get(f"/jobs/{JOB}").respond(status, json=body)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------- the report


@pytest.mark.parametrize("status", ["assigned", "running"])
def test_owned_and_processable_exits_0_with_the_four_sections(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str],
    status: str,
) -> None:
    route = serve(monitor, job(status))
    code, out, err = run(capsys, "check", JOB, "--did", ME)
    assert code == 0, (out, err)
    assert route.call_count == 1  # one request; the sections judge the same answer
    positions = [out.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    assert "Enabled: ✅ Yes" in out
    assert f"Base URL: {BASE}" in out
    assert "✅ Job found!" in out
    assert f"Status: {status}" in out
    assert f"Assigned to: {ME}" in out
    assert "Is owned by us: ✅ Yes" in out
    assert "Safe to process: ✅ Yes" in out
    assert "Available to claim: ❌ No" in out
    assert f"Reason: Already assigned to {ME}" in out
    assert err == ""
    # The original service's layout, and a last line that says the verdict in words.
    assert out.splitlines()[1] == "=" * 32
    assert out.rstrip("\n").splitlines()[-1] == f"✅ Owned by {ME} and safe to process (exit 0)."
    assert "checking --base-url anyway" not in out and "Synthetic record" not in out


def test_completed_job_owned_by_us_exits_1_already_complete(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(monitor, job("complete"))
    code, out, _ = run(capsys, "check", JOB, "--did", ME)
    assert code == 1
    assert "Is owned by us: ✅ Yes" in out
    assert "Safe to process: ❌ No (already complete)" in out


def test_the_did_is_compared_normalised(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    # The gateway writes both "did:key:z6Mk..." and "did:z6Mk..." for one key.
    serve(monitor, job("running", owner="did:" + ME[len("did:key:"):]))
    code, out, _ = run(capsys, "check", JOB, "--did", ME)
    assert code == 0
    assert "Is owned by us: ✅ Yes" in out


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (job("running", owner=OTHER), f"assigned to {OTHER}"),
        (job("assigned", owner=None), "no owner recorded"),
        (job("queued", owner=None), "no owner recorded"),
        (job("failed"), "job failed"),
        (job("queued"), "status is queued"),
        # The monitor's synthetic stand-in (no status) never proves ownership.
        (job(None), "synthetic"),
        # ... nor does one in the real server's shape naming us (the gateway's belief).
        ({"success": True, "data": STAND_IN}, "synthetic"),
        ({"success": True, "data": {**STAND_IN, "_id": "65f0c0ffee0000000000abcd",
                                    "owner": "alice", "permlink": "abc"}}, "synthetic"),
    ],
)
def test_answers_that_are_not_owned_and_safe_exit_1(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str],
    body: dict[str, Any], reason: str,
) -> None:
    serve(monitor, body)
    code, out, _ = run(capsys, "check", JOB, "--did", ME)
    assert code == 1
    assert "Safe to process: ❌ No" in out
    assert reason in out
    assert out.rstrip("\n").splitlines()[-1] == "❌ Not safe to process (exit 1)."
    assert "safe to process (exit 0)" not in out
    assert ("Synthetic record (built from the gateway)" in out) == (reason == "synthetic")


def test_not_found_exits_1(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(monitor, {"success": False, "error": "Job not found"}, status=404)
    code, out, _ = run(capsys, "check", JOB, "--did", ME)
    assert code == 1
    assert "❌ Job not found" in out
    assert "Job exists: ❌ No" in out
    assert "Safe to process: ❌ No (job not found)" in out
    assert "Reason: Job not found in system" in out


def test_available_job(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(monitor, job("queued", owner=None))
    code, out, _ = run(capsys, "check", JOB, "--did", ME)
    assert code == 1
    assert "Available to claim: ✅ Yes" in out
    assert "Reason: Job available to claim" in out


# --------------------------------------------------------------------------- no answer: exit 3


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(500, json={"success": False, "error": "Failed to fetch job details"}),
        httpx.Response(503, text="upstream down"),
        httpx.Response(429, headers={"Retry-After": "5"}),
        httpx.Response(404, json={"error": "Route not found"}),  # misconfigured base URL
        # The same in the monitor's shape (a proxy, another service): not "no such job".
        httpx.Response(404, json={"success": False, "error": "Route not found"}),
        httpx.Response(200, text="<html>not json</html>"),
        httpx.Response(200, json={"success": True, "data": {"id": JOB, "assigned_to": 42}}),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
    ],
)
def test_no_usable_answer_exits_3(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str],
    reply: httpx.Response | Exception,
) -> None:
    route = monitor.get(f"/jobs/{JOB}")
    if isinstance(reply, Exception):
        route.side_effect = reply
    else:
        route.return_value = reply
    code, out, err = run(capsys, "check", JOB, "--did", ME)
    assert code == 3
    assert "monitor" in err
    assert "Nothing is known" in out
    # No verdict is printed for a question that was not answered.
    assert "Safe to process" not in out and "Is owned by us" not in out


def test_500_in_json_mode_carries_the_error(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(monitor, {"success": False, "error": "Failed to fetch job details"}, status=500)
    code, out, _ = run(capsys, "check", JOB, "--did", ME, "--json")
    assert code == 3
    report = json.loads(out)
    assert report["exit_code"] == 3
    assert report["error"]["type"] == "TierUnavailable"
    assert report["error"]["tier"] == "monitor"
    assert report["ownership"] is None and report["safe_to_process"] is False


# --------------------------------------------------------------------------- --json


def test_json_output_parses_and_carries_the_fields(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(monitor, job("complete"))
    code, out, _ = run(capsys, "check", JOB, "--did", ME, "--json")
    assert code == 1
    report = json.loads(out)  # one JSON object, nothing else on stdout
    # Indented, keys sorted: two reports of one job diff line by line.
    assert out == json.dumps(report, indent=2, sort_keys=True) + "\n"
    assert report["job_id"] == JOB and report["did"] == ME
    assert report["service"] == {"enabled": True, "base_url": BASE}
    assert report["job"] == {
        "found": True, "status": "complete", "assigned_to": ME, "synthetic": False
    }
    assert report["ownership"] == {
        "job_exists": True,
        "is_owned": True,
        "actual_owner": ME,
        "status": "complete",
        "is_safe_to_process": False,
        "reason": "already complete",
    }
    assert report["availability"] == {
        "available": False,
        "reason": f"Already assigned to {ME}",
        "current_owner": ME,
        "status": "complete",
    }
    assert report["safe_to_process"] is False
    assert report["exit_code"] == 1


def test_json_not_found(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(monitor, {"success": False, "error": "Job not found"}, status=404)
    code, out, _ = run(capsys, "check", JOB, "--did", ME, "--json")
    report = json.loads(out)
    assert code == 1 and report["exit_code"] == 1
    assert report["job"] == {"found": False, "status": None, "assigned_to": None,
                             "synthetic": False}
    assert report["ownership"]["job_exists"] is False
    assert report["availability"]["reason"] == "Job not found in system"


# --------------------------------------------------------------------------- settings and flags


def test_base_url_flag_overrides_the_environment(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    other = "https://other-monitor.test/api"
    with respx.mock(assert_all_called=True) as router:
        router.get(f"{other}/jobs/{JOB}").respond(200, json=job("running"))
        code, out, _ = run(capsys, "check", JOB, "--did", ME, "--base-url", other + "/")
    assert code == 0
    assert f"Base URL: {other}" in out


def test_monitor_url_from_dot_env_in_the_working_directory(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.delenv("GATEWAY_MONITOR_BASE_URL")
    (tmp_path / ".env").write_text(
        "GATEWAY_MONITOR_BASE_URL=https://dotenv-monitor.test/api\n", encoding="utf-8"
    )
    with respx.mock(assert_all_called=True) as router:
        router.get(f"https://dotenv-monitor.test/api/jobs/{JOB}").respond(200, json=job())
        code, _, _ = run(capsys, "check", JOB, "--did", ME)
    assert code == 0


def test_disabled_monitor_without_base_url_exits_2(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("GATEWAY_MONITOR_ENABLED", "false")
    code, out, err = run(capsys, "check", JOB, "--did", ME)
    assert code == 2
    assert "GATEWAY_MONITOR_ENABLED" in err and out == ""
    assert not monitor.calls


def test_disabled_monitor_with_base_url_is_checked_anyway(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    # The hardened chain's "needs a confirming tier" rule does not block this diagnostic.
    env.delenv("GATEWAY_MONITOR_ENABLED")
    serve(monitor, job("running"))
    code, out, _ = run(capsys, "check", JOB, "--did", ME, "--base-url", BASE)
    assert code == 0
    assert "Enabled: ❌ No (GATEWAY_MONITOR_ENABLED is not true; checking --base-url anyway)" in out


def test_did_defaults_to_the_key_and_the_key_is_never_printed(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    key = base64.b64encode(bytes(range(100, 132))).decode("ascii")
    did = EncoderIdentity.from_private_key(key).did
    env.setenv("ENCODER_PRIVATE_KEY", key)
    serve(monitor, job("running", owner=did))
    for extra in ([], ["--json"]):
        code, out, err = run(capsys, "check", JOB, *extra)
        assert code == 0
        assert did in out
        assert key not in out and key not in err


def test_missing_did_exits_2(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "check", JOB)
    assert code == 2
    assert "--did" in err
    assert not monitor.calls


@pytest.mark.parametrize("did", [
    "z6MkNotADid", "", "did:key:\x1b[2J", "did:" + "x" * 300,
    # the README's placeholder, a truncated key, a key of another type: not an encoder's DID
    "did:key:z6Mk...", ME[:-4], "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
], ids=["no-prefix", "empty", "control", "long", "placeholder", "truncated", "secp256k1"])
def test_bad_did_exits_2_without_a_request(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str],
    did: str,
) -> None:
    code, out, err = run(capsys, "check", JOB, "--did", did)
    assert code == 2
    assert "--did" in err and out == ""
    assert not monitor.calls


@pytest.mark.parametrize(
    "job_id", ["", "x" * 300, "job\x00id", "../admin", "job?x=1", "job%2F..", "..", "a#b"]
)
def test_bad_job_id_exits_2_without_a_request(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str],
    job_id: str,
) -> None:
    code, out, err = run(capsys, "check", job_id, "--did", ME)
    assert code == 2
    assert "JOB_ID" in err and out == ""
    assert not monitor.calls


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEWAY_MONITOR_ENABLED", "maybe"),
        ("GATEWAY_MONITOR_BASE_URL", "ftp://monitor.test"),
        ("MONGODB_URI", "mongodb://user:pa55word-secret@"),
        ("VERIFIER_RECHECK_INTERVAL_S", "-3"),
        ("ENCODER_PRIVATE_KEY", "c2VjcmV0LWtleS10b28tc2hvcnQ="),
    ],
)
def test_bad_environment_exits_2_naming_the_variable(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str],
    variable: str, value: str,
) -> None:
    env.setenv(variable, value)
    code, out, err = run(capsys, "check", JOB, "--did", ME)
    assert code == 2
    assert variable in err and out == ""
    assert "pa55word-secret" not in err
    if variable == "ENCODER_PRIVATE_KEY":
        assert value not in err
    assert not monitor.calls


_PROXY_SECRET = "Pr0xyS3cret"


@pytest.mark.parametrize(("variable", "value"), [
    ("HTTPS_PROXY", f"http://user:{_PROXY_SECRET}/x@proxy.test:3128"),
    ("SSL_CERT_FILE", f"/nonexistent/{_PROXY_SECRET}.pem"),
])
@pytest.mark.parametrize("command", ["check", "run"])
def test_an_http_environment_httpx_cannot_use_exits_2_naming_the_variable(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str],
    command: str, variable: str, value: str,
) -> None:
    """A malformed proxy URL or a missing CA file was "unexpected InvalidURL" (exit 3) in
    ``check`` and a traceback quoting part of the proxy password (exit 1) in ``run``."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name.startswith("SSL_CERT_"):
            env.delenv(name)
    env.setenv(variable, value)
    argv = ["check", JOB, "--did", ME]
    if command == "run":
        _runner_env(env)
        argv = ["run", "--", "true"]
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert f"configuration error: {variable}: " in err
    assert _PROXY_SECRET not in err
    assert not monitor.calls


def test_bad_base_url_flag_exits_2_naming_the_flag(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "check", JOB, "--did", ME, "--base-url", "ftp://u:pw-x1@h/api")
    assert code == 2
    assert "--base-url" in err
    assert "pw-x1" not in err
    assert not monitor.calls


@pytest.mark.parametrize("timeout", ["0", "-1", "abc", "nan", "inf"])
def test_bad_timeout_exits_2(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], timeout: str
) -> None:
    code, _, err = run(capsys, "check", JOB, "--did", ME, "--timeout", timeout)
    assert code == 2
    assert "--timeout" in err
    if timeout in ("nan", "inf"):
        # It was told "must be a positive number": inf is one (operator review, session 16).
        assert "--timeout: must be a finite positive number of seconds" in err


def test_usage_errors_exit_2(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys)[0] == 2  # no subcommand
    assert run(capsys, "nonsense")[0] == 2
    assert run(capsys, "check")[0] == 2  # no JOB_ID


@pytest.mark.parametrize("argv", [
    ["check", JOB, "--did", ME, "--baseurl=https://u:S3cretPW@m.test/api?token=T0kenX"],
    ["https://u:S3cretPW@m.test/api?token=T0kenX"],  # not a subcommand: "invalid choice"
    ["run", "--source", "https://u:S3cretPW@m.test/api?token=T0kenX", "--", "true"],
    ["check", JOB, "mongodb://u:S3cretPW@db.test/jobs?token=T0kenX"],
    ["check", JOB, "--did", ME, "--baseurl", "u:S3cretPW@m.test/api"],
    ["check", JOB, "--did", ME, "--baseurl=T0kenX:S3cretPW@m.test/api"],
    # A '/' or an '@' in the password: shown whole, or from the second '@' (adversarial
    # review): redacted from the word's start to its last '@'.
    ["check", JOB, "--did", ME, "T0kenX:S3cretPW/x@m.test/api"],
    ["check", JOB, "--did", ME, "T0kenX:Pa@S3cretPW@m.test/api"],
    ["check", JOB, "--did", ME, "--baseurl=T0kenX:a=S3cretPW/@m.test/api", "extra"],
    ["T0kenX:Pa@S3cretPW/x@m.test/api"],  # "invalid choice: '...'"
    # Secrets shaped like no URL (a security review, session 28: each was printed whole).
    ["check", JOB, "--did", ME, "--private-key=T0kenXq1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6S3cretPW="],
    ["check", JOB, "--did", ME, "--baseurl=T0kenX:S3cretPW@https://m.test/api"],
    ["check", JOB, "--did", ME, "--baseurl", "https://T0kenX:S3cretPW and more@m.test/api"],
    ["run", "--source", "T0kenX:S3cretPW", "--", "true"],
    ["run", "--source", "S3cretPW", "--", "true"],
], ids=["unrecognized", "invalid-command", "invalid-choice-of-run", "mongodb", "no-scheme",
        "no-scheme-joined", "no-scheme-slash", "no-scheme-at", "no-scheme-joined-slash",
        "no-scheme-quoted", "key", "user-before-scheme", "space-in-password", "choice-with-colon",
        "short-choice"])
def test_usage_errors_never_repeat_what_may_be_a_secret(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """argparse repeats a mistyped argument verbatim: a URL's password and query reached the
    terminal (security review), and so did a key or a password typed after an option that
    does not exist (session 28). A refused value is shown by its length only."""
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "S3cretPW" not in err and "T0kenX" not in err
    assert "characters, not shown" in err


@pytest.mark.parametrize(("argv", "shown"), [
    (["chek", JOB], "invalid choice: 'chek' (choose from 'check', 'run')"),
    (["run", "--source", "myjb", "--", "true"], "invalid choice: 'myjb'"),
    (["check", JOB, "--bogus"], "unrecognized arguments: --bogus"),
    (["check", JOB, "--bogus=1"], "unrecognized arguments: --bogus=<1 character, not shown>"),
], ids=["command", "choice", "option", "option-value"])
def test_usage_errors_still_show_typos_and_option_names(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], shown: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2 and shown in err


# --------------------------------------------------------------------------- untrusted output


def test_control_characters_from_the_monitor_are_escaped(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    # An escape sequence in a field must not be able to repaint the operator's terminal.
    serve(monitor, job("running\x1b[2K\r✅ Yes", owner=OTHER + "\x1b[0m"))
    code, out, _ = run(capsys, "check", JOB, "--did", ME)
    assert code == 1
    assert "\x1b" not in out and "\r" not in out
    assert "\\x1b" in out
    json_code, json_out, _ = run(capsys, "check", JOB, "--did", ME, "--json")
    assert json_code == 1
    assert "\x1b" not in json_out  # JSON escapes it, and the value survives parsing
    assert json.loads(json_out)["job"]["status"] == "running\x1b[2K\r✅ Yes"


def test_ascii_terminal_gets_ascii_marks_and_escaped_text(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter
) -> None:
    serve(monitor, job("running ✅"))
    buffer = io.BytesIO()
    stream = io.TextIOWrapper(buffer, encoding="ascii")
    env.setattr(sys, "stdout", stream)
    assert main(["check", JOB, "--did", ME]) == 1
    stream.flush()
    out = buffer.getvalue().decode("ascii")
    assert "Is owned by us: [yes] Yes" in out
    assert "Status: running \\u2705" in out


# --------------------------------------------------------------------------- structure


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["check", "--help"]):
        code, out, _ = run(capsys, *argv)
        assert code == 0
        for line in ("0  the job is owned by DID", "1  checked, but not safe",
                     "2  usage or configuration error", "3  the monitor could not answer"):
            assert line in out


def test_subcommands_dispatch_through_the_handler_table() -> None:
    assert set(COMMANDS) == {"check", "run"}
    args = build_parser().parse_args(["check", JOB, "--did", ME, "--json", "--timeout", "2.5"])
    assert args.command == "check" and args.job_id == JOB and args.did == ME
    assert args.json is True and args.timeout == 2.5 and args.base_url is None
    args = build_parser().parse_args(["run", "--concurrency", "3", "--", "enc", "--fast"])
    assert args.command == "run" and args.concurrency == 3
    assert args.work_command == ["--", "enc", "--fast"]  # the command keeps its own flags


def test_python_dash_m_verifier_runs(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in KNOWN_VARIABLES}
    done = subprocess.run(  # noqa: S603 (our own interpreter, fixed arguments)
        [sys.executable, "-m", "verifier", "check", "", "--did", ME],
        cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert "JOB_ID" in done.stderr


def test_a_reader_that_leaves_early_does_not_change_the_exit_status(tmp_path: Path) -> None:
    """Found by an operator review (session 14): `check ... | head -1` sometimes printed a
    BrokenPipeError traceback and exited 1 ("answered: not safe") in place of its verdict."""
    clean = {k: v for k, v in os.environ.items() if k not in KNOWN_VARIABLES}
    # The code under test, not the installed package (a mutant of the first passed here).
    clean["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    with subprocess.Popen(  # noqa: S603 (our own interpreter, fixed arguments)
        [sys.executable, "-m", "verifier", "check", JOB, "--did", ME, "--timeout", "2",
         "--base-url", "http://127.0.0.1:9/api"],  # nothing listens: exit 3, with a report
        cwd=tmp_path, env=clean, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # long before the report is written: the pipe is broken
        err = proc.stderr.read().decode()
        code = proc.wait(60)
    assert code == 3, err
    assert "Traceback" not in err and "could not answer" in err


# --------------------------------------------------------------------------- the monitor's URL


@pytest.mark.parametrize("url", ["https://monitor.test", "https://monitor.test/",
                                 "https://monitor.test/api/jobs"])
def test_a_monitor_url_without_api_is_a_configuration_error_not_no_answer(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str],
    url: str,
) -> None:
    """Every monitor route is under /api: without it every job is a 404, which would read as
    exit 3 ("the monitor could not answer") at every check, forever."""
    env.setenv("GATEWAY_MONITOR_BASE_URL", url)
    code, out, err = run(capsys, "check", JOB, "--did", ME)
    assert (code, out) == (2, "")
    assert "GATEWAY_MONITOR_BASE_URL" in err and "/api" in err
    env.setenv("GATEWAY_MONITOR_BASE_URL", BASE)
    code, _, err = run(capsys, "check", JOB, "--did", ME, "--base-url", url)
    assert code == 2 and "--base-url" in err and "/api" in err
    assert not monitor.calls


def test_an_enabled_monitor_without_a_url_says_it_checks_production(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.delenv("GATEWAY_MONITOR_BASE_URL")
    with respx.mock(assert_all_called=True) as router:
        router.get(f"https://gateway-monitor.3speak.tv/api/jobs/{JOB}").respond(
            200, json=job())
        code, _, err = run(capsys, "check", JOB, "--did", ME)
    assert code == 0
    assert "GATEWAY_MONITOR_BASE_URL is unset" in err and "production" in err


# --------------------------------------------------------------------------- run


def _runner_env(env: pytest.MonkeyPatch) -> None:
    env.setenv("GATEWAY_URL", "http://127.0.0.1:9")
    env.setenv("ENCODER_PRIVATE_KEY", base64.b64encode(bytes(range(32))).decode())


@pytest.mark.parametrize(("setup", "argv", "named"), [
    (lambda env, tmp: None, ["run"], "COMMAND"),
    (lambda env, tmp: None, ["run", "--", "no-such-encoder-anywhere"], "not found"),
    (lambda env, tmp: (tmp / "plain.sh").write_text("exit 0\n"), ["run", "--", "./plain.sh"],
     "not executable"),
    (lambda env, tmp: env.delenv("GATEWAY_URL"), ["run", "--", "true"], "GATEWAY_URL"),
    (lambda env, tmp: env.delenv("ENCODER_PRIVATE_KEY"), ["run", "--", "true"],
     "ENCODER_PRIVATE_KEY"),
    (lambda env, tmp: env.setenv("GATEWAY_MONITOR_ENABLED", "false"), ["run", "--", "true"],
     "GATEWAY_MONITOR_ENABLED"),
    (lambda env, tmp: None, ["run", "--source", "aid", "--", "true"], "aid"),
    (lambda env, tmp: None, ["run", "--concurrency", "0", "--", "true"], "--concurrency"),
    # a weakened chain only with VERIFIER_ALLOW_UNSAFE_CHAIN (a review, 2026-12-05: it ran
    # with one warning line)
    (lambda env, tmp: env.setenv("VERIFIER_CHAIN", "hardened-without-fence"),
     ["run", "--", "true"], "VERIFIER_ALLOW_UNSAFE_CHAIN=true"),
    (lambda env, tmp: env.setenv("VERIFIER_CHAIN", "documented"), ["run", "--", "true"],
     "'documented' does not keep two encoders"),
])
def test_run_refuses_what_cannot_work_with_exit_2_naming_it(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    setup: Any, argv: list[str], named: str,
) -> None:
    _runner_env(env)
    setup(env, tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    assert named in err
    assert base64.b64encode(bytes(range(32))).decode() not in err  # the key never shows


def test_an_unsafe_chain_runs_past_its_refusal_when_allowed(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _runner_env(env)
    env.setenv("VERIFIER_CHAIN", "documented")
    env.setenv("VERIFIER_ALLOW_UNSAFE_CHAIN", "true")
    env.delenv("GATEWAY_URL")  # the next check along: it is that one that stops the run now
    code, _, err = run(capsys, "run", "--", "true")
    assert code == 2 and "GATEWAY_URL" in err and "VERIFIER_CHAIN" not in err


@pytest.mark.parametrize(("argv", "usage"), [
    (("run", "--concurency", "2", "--", "true"), "python -m verifier run"),
    (("check", JOB, "--did", ME, "--jsn"), "python -m verifier check"),
])
def test_a_mistyped_option_is_reported_with_its_subcommands_usage(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], usage: str
) -> None:
    """argparse reports an option a subcommand does not know with the top-level usage, which
    lists none of the subcommand's options; the operator sees the subcommand's instead."""
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert f"usage: {usage}" in err and f"{usage}: error: unrecognized arguments" in err


# --------------------------------------------------------------------------- .env file mode


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_run_warns_at_start_up_of_a_dotenv_others_may_read(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The warning is in the node's log (stderr) at start-up, and the node is not stopped by
    it: here it goes on to refuse an option, after the settings were read."""
    key = base64.b64encode(bytes(range(32))).decode()
    env.setenv("GATEWAY_URL", "http://127.0.0.1:9")
    (tmp_path / ".env").write_text(f"ENCODER_PRIVATE_KEY={key}\n", encoding="utf-8")
    (tmp_path / ".env").chmod(0o644)
    code, _, err = run(capsys, "run", "--source", "aid", "--", "true")
    assert code == 2 and "--source aid: not configured" in err
    assert "DOTENV_READABLE" in err and ".env" in err and "mode 0644" in err
    assert key not in err


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_check_warns_of_a_dotenv_others_may_read_without_logging_set_up(tmp_path: Path) -> None:
    """``check`` sets up no logging: the warning must still reach stderr (a subprocess, so
    that pytest's own log capture is not what shows it)."""
    clean = {k: v for k, v in os.environ.items()
             if k not in KNOWN_VARIABLES and not k.startswith("VERIFIER_")}
    (tmp_path / ".env").write_text(
        "GATEWAY_MONITOR_ENABLED=true\nMONGODB_URI=mongodb://u:Pa55w0rdX@db.example/x\n",
        encoding="utf-8")
    (tmp_path / ".env").chmod(0o640)
    done = subprocess.run(  # noqa: S603 (our own interpreter, fixed arguments)
        [sys.executable, "-m", "verifier", "check", JOB, "--did", ME, "--timeout", "2",
         "--base-url", "http://127.0.0.1:9/api"],  # nothing listens: exit 3
        cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "DOTENV_READABLE" in done.stderr and "mode 0640" in done.stderr
    assert "Pa55w0rdX" not in done.stderr + done.stdout


def test_run_takes_a_cooldown_of_zero_or_more_seconds(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["run", "--", "enc"]).cooldown == LoopPolicy.cooldown_s
    assert build_parser().parse_args(["run", "--cooldown", "0", "--", "enc"]).cooldown == 0
    for bad in ("-1", "nan", "inf", "soon"):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(["run", "--cooldown", bad, "--", "enc"])
        assert exit_.value.code == 2 and "--cooldown" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--poll-interval", "--max-poll-interval"])
def test_a_poll_interval_below_its_floor_is_a_usage_error(
        flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    """1e-6 s was accepted: an idle encoder polled the shared gateway 750 times in 2 s (an
    adversarial review, 2026-12-05). The live tests poll every 0.3 s."""
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["run", flag, "1e-6", "--", "enc"])
    assert exit_.value.code == 2 and "must be at least 0.1" in capsys.readouterr().err
    args = build_parser().parse_args(["run", flag, "0.3", "--", "enc"])
    assert getattr(args, flag.lstrip("-").replace("-", "_")) == 0.3


def test_a_longest_poll_wait_below_the_first_is_a_usage_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    """``--max-poll-interval`` below ``--poll-interval`` was raised to it in silence: the run
    used a longest wait the operator did not ask for (adversarial review, session 36). Given
    alone, ``--poll-interval`` leaves the longest wait to be resolved when the run starts (the
    default, or the poll interval if longer)."""
    assert main(["run", "--poll-interval", "5", "--max-poll-interval", "1", "--", "enc"]) == 2
    err = capsys.readouterr().err
    assert "--max-poll-interval 1 is below --poll-interval 5" in err
    args = build_parser().parse_args(["run", "--poll-interval", "5", "--", "enc"])
    assert args.max_poll_interval is None  # resolved when the run starts: max(default, 5)


_DB_SECRET = "S3cretDbPass"


@pytest.mark.parametrize(("options", "said"), [
    ("ssl=true&tls=false", "conflicting values"),
    ("tls=true&tlsCAFile=/nonexistent/ca.pem", "not readable"),
])
def test_a_mongodb_uri_the_driver_refuses_exits_2_with_its_reason(
    env: pytest.MonkeyPatch, options: str, said: str,
) -> None:
    """Accepted at start-up, such a URI had the node skip every job, its log naming only the
    exception's type (adversarial review, session 36). Now refused before any job is claimed,
    with the driver's reason and without the password."""
    _runner_env(env)
    env.setenv("MONGODB_VERIFICATION_ENABLED", "true")
    env.setenv("MONGODB_URI", f"mongodb://enc:{_DB_SECRET}@127.0.0.1:9/spk?{options}")
    # In a process of its own, with a time limit: the runner this refuses would run forever.
    done = subprocess.run(
        [sys.executable, "-m", "verifier", "run", "--", "true"], capture_output=True,
        text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert "configuration error: MONGODB_URI: the MongoDB driver refuses it" in done.stderr
    assert said in done.stderr and _DB_SECRET not in done.stderr


def test_a_timeout_may_be_a_fraction_of_a_second_and_defaults_to_the_deployed_encoder_s() -> None:
    from verifier._cli import build_parser

    assert build_parser().parse_args(["check", JOB]).timeout == 10.0
    assert build_parser().parse_args(["check", JOB, "--timeout", "0.5"]).timeout == 0.5


@pytest.mark.parametrize(("length", "shown"), [(40, True), (41, False)])
def test_an_unknown_option_s_name_is_shown_up_to_40_characters(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], length: int, shown: bool
) -> None:
    """A name is what the operator needs to find the mistake; a longer "name" may be a
    secret typed after "--" (mutation testing, session 41: the edge passed unchecked)."""
    name = "--" + "a" * (length - 2)
    code, _, err = run(capsys, "check", JOB, name)
    assert code == 2
    assert (f"unrecognized arguments: {name}\n" in err) == shown
    assert (f"<{length} characters, not shown>" in err) == (not shown)


@pytest.mark.parametrize(("value", "said"), [
    ("user:S3cretPW@m.test/api", "'***@m.test/api'"),
    ("--x=user:S3cretPW@m.test", "'--x=***@m.test'"),
    ("user:Pa@S3cretPW@m.test", "'***@m.test'"),
    ("https://user:S3cretPW@m.test/api", "'https://m.test/api'"),
    ("no-at-sign", "'no-at-sign'"),
    ("user=S3cretPW@m.test", "'***@m.test'"),  # an '=' of no option is user info too
])
def test_a_value_argparse_repeats_loses_its_user_info(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str, said: str
) -> None:
    """argparse repeats the value given to a flag that takes none (``--json=...``): user info
    is redacted from the word's start (after its quote, or its ``--option=``) to its last
    '@', the host kept (mutation testing, session 41: no test reached this redaction)."""
    code, _, err = run(capsys, "check", JOB, f"--json={value}")
    assert code == 2
    assert err.rstrip("\n").endswith(f"argument --json: ignored explicit argument {said}")
    assert "S3cretPW" not in err


def test_a_refused_value_of_a_built_in_type_is_shown_only_when_it_looks_like_a_number(
    capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse's own "invalid int value: '...'" (no option of ours uses a built-in type
    today; a later one would): a mistyped number is repeated, anything else only counted."""
    from verifier._cli import _Parser

    parser = _Parser(prog="p")
    parser.add_argument("--n", type=int)
    for value, said in (("1.5", "argument --n: invalid int value: '1.5'"),
                        ("sk_S3cretPW", "argument --n: invalid int value: "
                                        "<11 characters, not shown>")):
        with pytest.raises(SystemExit):
            parser.parse_args(["--n", value])
        assert capsys.readouterr().err.rstrip("\n").endswith(f"p: error: {said}")


def test_an_interrupted_command_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    import verifier._cli as cli

    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "check", interrupted)
    assert main(["check", JOB]) == 130


@pytest.mark.parametrize(("length", "cut"), [(200, False), (201, True)])
def test_what_the_monitor_says_is_shown_up_to_200_characters(
    env: pytest.MonkeyPatch, monitor: respx.MockRouter, capsys: pytest.CaptureFixture[str],
    length: int, cut: bool,
) -> None:
    """An answer's fields are untrusted: a runaway one must not flood the terminal."""
    owner = "o" * length
    serve(monitor, job("running", owner=owner))
    code, out, _ = run(capsys, "check", JOB, "--did", ME)
    assert code == 1
    assert (f"Assigned to: {'o' * 200}...\n" in out) == cut
    assert (f"Assigned to: {owner}\n" in out) == (not cut)

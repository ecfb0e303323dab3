"""``python -m sim serve`` as an operator uses it: start the emulator, point a tool at it.

The operator flow of the issue: serve the emulated services with a job completed by a DID,
then run ``python -m verifier check JOB --did DID`` against the emulated monitor; the report
must have the shape of the original service's test (status, details, ownership,
availability) and say what a completed job owned by that DID is. Also the arguments of
``serve`` and ``live``, and the release gate of ``live``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from verifier import EncoderIdentity

DID = EncoderIdentity.from_seed(bytes(range(32))).did
OTHER = EncoderIdentity.from_seed(bytes(32)).did
JOB = "done-job-1"


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, str]]:
    command = [
        sys.executable, "-m", "sim", "serve", "--jobs", "3", "--duration", "60",
        "--set", "monitor_synthetic_rate=0", "--set", "monitor_error_rate=0",
        "--set", "lie_rate=0", "--completed", f"{JOB}={DID}",
    ]
    proc = subprocess.Popen(  # noqa: S603 (our own interpreter, fixed arguments)
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    urls: dict[str, str] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("# stop with"):
                break
            key, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep and not line.startswith("#"):
                urls[key] = value
        assert {"GATEWAY_MONITOR_BASE_URL", "GATEWAY_URL", "GATEWAY_AID_BASE_URL"} <= set(urls), \
            proc.stderr.read() if proc.stderr else ""
        yield urls
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _check(urls: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "ENCODER_"))}
    env.update(GATEWAY_MONITOR_ENABLED="true",
               GATEWAY_MONITOR_BASE_URL=urls["GATEWAY_MONITOR_BASE_URL"])
    return subprocess.run(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "verifier", "check", *args], env=env,
        capture_output=True, text=True, timeout=60, check=False)


def test_check_reports_a_completed_job_owned_by_the_did(served: dict[str, str]) -> None:
    done = _check(served, JOB, "--did", DID)
    assert done.returncode == 1, done.stderr  # answered: owned, but not safe (completed)
    text = done.stdout
    for section in ("Service Status:", "Job Details Fetch:", "Ownership Verification:",
                    "Availability Check:"):
        assert section in text
    assert "Status: complete" in text
    assert f"Assigned to: {DID}" in text
    assert "Is owned by us: " in text and "Yes" in text.split("Is owned by us: ")[1][:6]
    # The documented order of the availability judgement: an owner comes before "completed".
    assert "No" in text.split("Available to claim: ")[1][:6]
    assert f"Reason: Already assigned to {DID}" in text


def test_check_json_says_owned_not_safe_and_not_available(served: dict[str, str]) -> None:
    done = _check(served, JOB, "--did", DID, "--json")
    report = json.loads(done.stdout)
    flat = json.dumps(report)
    assert done.returncode == 1
    assert '"complete"' in flat and DID in flat
    other = _check(served, JOB, "--did", OTHER)
    assert other.returncode == 1 and "Is owned by us: " in other.stdout
    assert "Yes" not in other.stdout.split("Is owned by us: ")[1][:6]


def test_check_of_an_unknown_job_is_not_found(served: dict[str, str]) -> None:
    missing = _check(served, "no-such-job", "--did", DID)
    assert missing.returncode == 1
    assert "Job not found" in missing.stdout


@pytest.mark.parametrize(("argv", "named"), [
    (["serve", "--completed", "job-1"], "JOB=DID"),
    (["serve", "--completed", "job-1=not-a-did"], "--completed"),
    (["serve", "--completed", "job-000000=" + DID, "--duration", "0"], "already exists"),
    (["live", "--processes", "0"], "--processes"),
    (["live", "--reset-rate", "1.5"], "reset_rate"),
    (["live", "--client-timeout", "0"], "--client-timeout"),
    (["live", "--chain", "no-such-chain"], "--chain"),
    (["live", "--monitor-restart", "soon"], "AT:LENGTH"),
    (["live", "--rate-limit-storm", "5:0"], "LENGTH > 0"),
    (["live", "--rate-limit-storm", "nan:3"], "finite"),
    (["live", "--fail-on-violation", "--expect", "hardened=maybe"], "'maybe'"),
    (["live", "--fail-on-violation", "--expect", "hardened-without-lease=safe"],
     "'hardened-without-lease' is not in this run"),
    (["live", "--fail-on-violation", "--chain", "documented"], "nothing to judge"),
    (["live", "--expect", "documented=unsafe"], "--fail-on-violation"),
    # Out-of-range ports (bind() raised OverflowError) and non-finite seconds (NaN passed the
    # `<= 0` checks: serve stopped at once, live crashed in the clients' own check).
    (["serve", "--monitor-port", "70000"], "--monitor-port"),
    (["serve", "--gateway-port", "-1"], "--gateway-port"),
    (["serve", "--aid-port", "http"], "--aid-port"),
    (["serve", "--duration", "nan"], "--duration"),
    (["serve", "--duration", "-1"], "--duration"),
    (["serve", "--slow-s", "inf"], "--slow-s"),
    (["live", "--client-timeout", "nan"], "--client-timeout"),
    (["live", "--client-timeout", "inf"], "--client-timeout"),
    (["live", "--slow-s", "nan"], "--slow-s"),
    (["live", "--set", "lie_rate=nan"], "lie_rate"),
])
def test_bad_live_and_serve_arguments_are_one_line_usage_errors(
        argv: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    from sim._cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert named in err and len(err.strip().splitlines()) == 1


def test_a_configuration_error_of_the_verifier_is_a_one_line_usage_error(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A setting the verifier's own clients refuse (they raise ConfigurationError, naming
    it) ends `live` with exit 2 and one line, like every other bad flag, not a traceback."""
    import sim._cli
    from verifier import ConfigurationError

    def refuse(*_: object) -> int:
        raise ConfigurationError("gateway long_poll_timeout",
                                 "must be a positive number\nof seconds")

    monkeypatch.setitem(sim._cli._COMMANDS, "live", refuse)
    assert sim._cli.main(["live"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == ("python -m sim live: error: gateway long_poll_timeout: must be a "
                    "positive number of seconds")


@pytest.mark.slow
def test_live_fail_on_violation_is_the_release_gate_of_run(tmp_path: Path) -> None:
    """The same gate as ``run``: a chain expected safe that processes jobs twice fails, with
    one stderr line naming the chain, the properties and their counts, and the rerun."""
    from sim._cli import main

    path = tmp_path / "live.json"
    out, err = io.StringIO(), io.StringIO()
    code = main(["live", "--chain", "trust-gateway", "--encoders", "4", "--jobs", "4",
                 "--lie-rate", "1", "--fail-on-violation", "--expect", "trust-gateway=safe",
                 "--json", str(path)], stdout=out, stderr=err)
    entry = json.loads(path.read_text())["chains"]["trust-gateway"]
    assert entry["s2_violations"] > 0, "every hand-out doubled, nothing verified: duplicates"
    assert code == 1
    [line] = err.getvalue().splitlines()
    assert line.startswith("python -m sim live: gate failed: trust-gateway expected safe, got ")
    assert f"S2 x{entry['s2_violations']}" in line and "; rerun: python -m sim live " in line
    assert "gate: trust-gateway expected safe: FAILED" in out.getvalue()


# --------------------------------------------------------------------------- an encoder


ROOT = Path(__file__).resolve().parents[2]
KEY = base64.b64encode(bytes(range(32))).decode()  # the key of DID


def _serve_encoder(argv: list[str], key: str | None = KEY, timeout: float = 120,
                   cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GATEWAY_", "ENCODER_", "VERIFIER_", "MONGODB_", "SPK_"))}
    if key is not None:
        env["ENCODER_PRIVATE_KEY"] = key
    return subprocess.run(  # noqa: S603 (our own interpreter and module)
        [sys.executable if a == ".venv/bin/python" else a for a in argv], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=timeout, check=False)


def test_the_readme_command_runs_an_encoder_against_the_emulator_as_written() -> None:
    """The operator's one command, taken from the README itself."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (line,) = re.findall(r"^\.venv/bin/python -m sim serve .* -- .*verifier run.*$", readme,
                         re.M)
    done = _serve_encoder(shlex.split(line), key=None)  # serve makes a throwaway key
    assert done.returncode == 0, done.stderr[-3000:]
    assert ("# served: 3 of 3 jobs done (3 committed, 0 failed for good); encoder exited with "
            "status 0") in done.stdout
    assert "processed=3" in done.stderr
    # The key is never shown (the settings line at start says only that it is set).
    assert not re.search(r"ENCODER_PRIVATE_KEY=(?!<set>)", done.stdout + done.stderr)
    assert "ENCODER_PRIVATE_KEY=<set>" in done.stderr


@pytest.mark.parametrize(("owner", "served", "status"),
                         [(DID, "2 of 2", 0), (OTHER, "1 of 2", 1)],
                         ids=["to-this-encoder", "to-another"])
def test_an_assigned_job_is_offered_by_myjob_to_its_encoder_only(owner: str, served: str,
                                                                 status: int) -> None:
    # --duration bounds the whole run, encoder start-up included: two jobs take ~12 s on an
    # idle machine, so 12 s failed one run in two on a loaded one (server review: the
    # second job cut by the deadline, "1 of 2"). Serve stops as soon as every job is done.
    done = _serve_encoder([
        ".venv/bin/python", "-m", "sim", "serve", "--jobs", "1", "--duration", "25",
        "--set", "lie_rate=0", "--assigned", f"special-job={owner}", "--",
        ".venv/bin/python", "-m", "verifier", "run", "--source", "myjob",
        "--poll-interval", "0.3", "--max-poll-interval", "0.5", "--",
        ".venv/bin/python", "examples/encode_job.py"])
    # The job assigned to another encoder is never done here: stopped at --duration with a
    # job left, serve exits 1 although the encoder exited 0.
    assert done.returncode == status, done.stderr[-3000:]
    assert f"# assigned: special-job to {owner}" in done.stdout
    assert f"# served: {served} jobs done" in done.stdout
    assert "encoder exited with status 0" in done.stdout
    assert ("LOOP_OFFERED: myjob offered job special-job" in done.stderr) == (owner == DID)


def test_a_production_dotenv_in_the_directory_does_not_switch_the_database_on(
        tmp_path: Path) -> None:
    """Found by an operator review (session 14): run from a directory whose `.env` enabled
    MongoDB, the served encoder tried a database the emulator does not have, for ever."""
    (tmp_path / ".env").write_text("MONGODB_VERIFICATION_ENABLED=true\n"
                                   "MONGODB_URI=mongodb://127.0.0.1:9/spk?serverSelectionTimeoutMS=200\n")
    done = _serve_encoder([
        ".venv/bin/python", "-m", "sim", "serve", "--jobs", "1", "--duration", "30",
        "--set", "lie_rate=0", "--", ".venv/bin/python", "-m", "verifier", "run",
        "--poll-interval", "0.3", "--max-poll-interval", "0.5", "--",
        ".venv/bin/python", str(ROOT / "examples" / "encode_job.py")], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "# served: 1 of 1 jobs done" in done.stdout, done.stderr[-3000:]
    assert "MONGODB_VERIFICATION_ENABLED=false" in done.stderr

def test_the_served_encoders_metrics_stay_on_loopback_whatever_the_environment() -> None:
    """``--metrics-port`` says 127.0.0.1:PORT; a VERIFIER_METRICS_ADDR=0.0.0.0 exported (or in
    the directory's .env) reached the encoder, which then served on every interface."""
    env = {**os.environ, "VERIFIER_METRICS_ADDR": "0.0.0.0"}  # noqa: S104 (the point)
    done = subprocess.run(
        [sys.executable, "-m", "sim", "serve", "--jobs", "1", "--duration", "5",
         "--metrics-port", "19464", "--", "sh", "-c",
         'echo "addr=$VERIFIER_METRICS_ADDR port=$VERIFIER_METRICS_PORT"'],
        capture_output=True, text=True, timeout=120, check=False, env=env)
    assert "# encoder metrics: http://127.0.0.1:19464/metrics" in done.stdout, done.stderr
    assert "addr=127.0.0.1 port=19464" in done.stdout, done.stdout


def test_serve_refuses_a_negative_seed_as_run_and_replay_do() -> None:
    done = _serve_encoder([".venv/bin/python", "-m", "sim", "serve", "--seed", "-1",
                           "--duration", "0"])
    assert done.returncode == 2
    assert "--seed: must be >= 0, got -1" in done.stderr


def test_serve_refuses_an_encoder_command_it_cannot_start() -> None:
    done = _serve_encoder([".venv/bin/python", "-m", "sim", "serve", "--jobs", "1", "--",
                           "./no-such-encoder"])
    assert done.returncode == 2
    assert "cannot run './no-such-encoder'" in done.stderr


def test_the_readme_python_encoder_runs_as_written(tmp_path: Path) -> None:
    """The README's Python encoder, copied as it stands, against the emulator; `sim serve`
    stops it with SIGTERM once every job is done, it gives back what it holds, and it closes
    its clients (an unclosed socket's ``ResourceWarning`` is printed, not raised: the example
    once left them open)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Using the verifier in an encoder"):]
    program = section.split("```python\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "encoder.py"
    path.write_text(program, encoding="utf-8")
    done = _serve_encoder([".venv/bin/python", "-m", "sim", "serve", "--jobs", "3",
                           "--set", "lie_rate=0", "--", ".venv/bin/python", str(path)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert ("# served: 3 of 3 jobs done (3 committed, 0 failed for good); encoder exited with "
            "status 0") in done.stdout
    assert "Counter({'processed': 3})" in done.stdout
    # Nothing held when it stopped. Not "0 job(s) to give back" at the SIGTERM: `sim serve`
    # signals within 0.2 s of the last commit landing, and under load the run that sent it may
    # still be reading its answer then (a CI run, session 28: "1 job(s) to give back", then
    # that job counted processed). The loop says so at ERROR when a job stays held.
    assert "LOOP_SHUTDOWN" in done.stdout + done.stderr
    assert "got no answer" not in done.stdout + done.stderr, done.stderr[-3000:]
    assert "ResourceWarning" not in done.stdout + done.stderr, done.stderr[-3000:]


def test_an_encoder_with_push_and_batch_screening_serves_every_job() -> None:
    """``VERIFIER_PUSH=true``: the runner subscribes through the emulated monitor's WebSocket
    (our extension) and the jobs are processed as without it."""
    done = _serve_encoder([
        ".venv/bin/python", "-m", "sim", "serve", "--jobs", "3", "--set", "lie_rate=0", "--",
        "env", "VERIFIER_PUSH=true", ".venv/bin/python", "-m", "verifier", "run",
        "--poll-interval", "0.3", "--max-poll-interval", "0.5", "--",
        ".venv/bin/python", "examples/encode_job.py"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "# served: 3 of 3 jobs done" in done.stdout
    assert "push: connected to" in done.stderr

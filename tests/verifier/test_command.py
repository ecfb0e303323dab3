"""A user command as the work of a job: the stdin/env/stdout contract, failures, and the stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import verifier._command as command_module
from tests.processes import running
from verifier import (
    ClaimedJob,
    CommandFailed,
    CommandWork,
    ConfigurationError,
    GatewayMonitorJob,
)
from verifier._command import _WRITER, _StderrWriter
from verifier.protocol import PhaseChanged, Progressed

OFFERED = GatewayMonitorJob(id="job-1", status="queued", assigned_to=None,
                            input={"uri": "ipfs://bafyinput", "size": 10},
                            metadata={"video_owner": "alice"})
C = 1.0


def script(tmp_path: Path, body: str, name: str = "work.py") -> Path:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\nimport json, os, signal, sys, time\n{body}\n",
                    encoding="utf-8")
    path.chmod(0o755)
    return path


def claimed() -> tuple[ClaimedJob, asyncio.Queue]:
    events: asyncio.Queue = asyncio.Queue()
    return ClaimedJob("job-1", events), events


def test_the_job_goes_in_on_stdin_and_in_the_environment_and_the_result_comes_back(tmp_path):
    seen = tmp_path / "seen.json"
    path = script(tmp_path, f"""
job = json.load(sys.stdin)
env = {{k: v for k, v in os.environ.items() if k.startswith("SPK_") or k in
       ("ENCODER_PRIVATE_KEY", "MONGODB_URI", "GATEWAY_URL", "GATEWAY_MONITOR_BASE_URL")}}
json.dump({{"job": job, "env": env, "cwd": os.getcwd()}}, open({str(seen)!r}, "w"))
print(json.dumps({{"phase": "encode"}}))
print(json.dumps({{"pct": 40, "download_pct": 100}}))
print(json.dumps({{"cid": "bafyresult"}}))
""")

    async def main():
        job, events = claimed()
        env = {**os.environ, "ENCODER_PRIVATE_KEY": "c2VjcmV0", "MONGODB_URI": "mongodb://u:p@h",
               "SPK_KEPT": "yes", "GATEWAY_URL": "https://enc:GwPassw0rd@gw.test/",
               "GATEWAY_MONITOR_BASE_URL": "https://monitor.test/api"}
        result = await CommandWork([str(path)], cancel_latency=C, env=env)(job, OFFERED)
        return result, job, [events.get_nowait() for _ in range(events.qsize())]

    result, job, events = asyncio.run(main())
    assert result == {"cid": "bafyresult"}
    assert job.phase == "encode" and job.progress == {"pct": 40.0, "download_pct": 100.0}
    assert len(events) == 1  # one marker: the latest phase, then the latest progress
    assert job._take_reports() == (PhaseChanged("encode"), Progressed(40.0, 100.0))
    record = json.loads(seen.read_text())
    assert record["job"]["id"] == "job-1" and record["job"]["input"]["uri"] == "ipfs://bafyinput"
    assert record["job"]["metadata"] == {"video_owner": "alice"}
    env = record["env"]
    assert env["SPK_JOB_ID"] == "job-1" and env["SPK_INPUT_URI"] == "ipfs://bafyinput"
    assert env["SPK_KEPT"] == "yes", "the runner's environment is passed on"
    assert "ENCODER_PRIVATE_KEY" not in env and "MONGODB_URI" not in env, "but no credential"
    # Found by a security review (session 14): the servers' URLs went on with their passwords.
    assert env["GATEWAY_URL"] == "https://gw.test/", "where the servers are, not how to log in"
    assert env["GATEWAY_MONITOR_BASE_URL"] == "https://monitor.test/api"
    assert record["cwd"] == os.getcwd(), "relative paths mean what they meant to the runner"
    assert not Path(env["SPK_SCRATCH_DIR"]).exists(), "the scratch directory is removed"


def test_garbage_lines_are_logged_and_ignored(tmp_path, caplog):
    path = script(tmp_path, r"""
print("starting ffmpeg...")
print(json.dumps([1, 2]))
print(json.dumps({"pct": 400}))
print("\x1b[31m" + "x" * 500)
print(json.dumps({"cid": "bafyok"}))
""")
    job, _ = claimed()
    with caplog.at_level(logging.WARNING, logger="verifier.command"):
        result = asyncio.run(CommandWork([str(path)], cancel_latency=C)(job, OFFERED))
    assert result == {"cid": "bafyok"}
    ignored = [r for r in caplog.records if r.event_code == "COMMAND_OUTPUT_IGNORED"]
    assert len(ignored) == 4
    assert all(len(r.getMessage()) < 400 for r in ignored), "long lines are cut in the log"
    assert "\x1b" not in caplog.text, "control characters are escaped"


@pytest.mark.parametrize(("body", "message"), [
    ("print(json.dumps({'cid': 'bafy'})); sys.exit(3)", "exit status 3"),
    ("os.kill(os.getpid(), signal.SIGKILL)", "killed by signal 9"),
    ("print('done, no result')", "without a result"),
    ("print(json.dumps({'cid': 'bafy'})); print('trailing')", "not as its last line"),
    ("print(json.dumps({'cid': ''}))", "unusable"),
])
def test_a_command_that_crashes_or_gives_no_result_has_failed(tmp_path, caplog, body, message):
    """Failed; and a result it printed first (an upload, then a crash in its clean-up) is
    logged with its cid, as after a cancel (an operator review, 2026-12-04: in no line)."""
    path = script(tmp_path, body)
    job, _ = claimed()
    with caplog.at_level(logging.WARNING, logger="verifier.command"), \
            pytest.raises(CommandFailed, match=message):
        asyncio.run(CommandWork([str(path)], cancel_latency=C)(job, OFFERED))
    discarded = [r for r in caplog.records if r.event_code == "COMMAND_RESULT_DISCARDED"]
    assert [r.event_fields["cid"] for r in discarded] == (["bafy"] if "'bafy'" in body else [])
    assert all("the command failed" in r.getMessage() for r in discarded)


def test_a_command_stopped_by_the_supervisor_first_is_a_shutdown_not_a_failure(tmp_path):
    """Operator review (session 16): with systemd's KillMode=control-group the command got
    SIGTERM a few ms before the runner, and its job was failed (failJob) instead of given
    back by the shutdown. A command killed by a stop signal now waits (at most a second) for
    the runner's own shutdown, which cancels the work; without one it has failed, as before."""
    pid_file = tmp_path / "pid"
    path = script(tmp_path, f"""
open({str(pid_file)!r}, "w").write(f"{{os.getpid()}} {{os.getppid()}}")
print(json.dumps({{"phase": "encode"}}), flush=True)
time.sleep(600)
""")

    async def stopped_by_supervisor(shutdown: bool) -> BaseException:
        job, events = claimed()
        task = asyncio.create_task(CommandWork([str(path)], cancel_latency=C)(job, OFFERED))
        await events.get()
        pid, keeper = map(int, pid_file.read_text().split())
        os.kill(pid, signal.SIGTERM)  # the supervisor's signal reaches the command first
        # Until its keeper (our child) has ended as it did and been reaped: the runner has
        # seen the command's end by then.
        while running(pid) or _reaped(keeper) is False:  # noqa: ASYNC110 (polling)
            await asyncio.sleep(0.01)
        # The reaping thread's news reaches the loop a moment later; a twentieth of the grace
        # (before it, a failure was decided within milliseconds of the exit).
        await asyncio.sleep(0.05)
        if shutdown:
            task.cancel()  # ... then the runner's: its shutdown stops the work
        with pytest.raises(BaseException) as caught:
            await task
        return caught.value

    assert isinstance(asyncio.run(stopped_by_supervisor(True)), asyncio.CancelledError)
    failed = asyncio.run(stopped_by_supervisor(False))
    assert isinstance(failed, CommandFailed) and "killed by signal 15" in str(failed)


def _reaped(pid: int) -> bool:
    """Whether our child ``pid`` is gone from the process table (reaped by asyncio)."""
    return not os.path.exists(f"/proc/{pid}")


@pytest.mark.parametrize("obeys_sigterm", [True, False], ids=["obeys", "ignores-sigterm"])
def test_a_cancelled_command_and_its_children_are_stopped_within_c(tmp_path, obeys_sigterm):
    pids = tmp_path / "pids"
    path = script(tmp_path, f"""
import subprocess
{"" if obeys_sigterm else "signal.signal(signal.SIGTERM, signal.SIG_IGN)"}
child = subprocess.Popen(["sleep", "600"])
open({str(pids)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
print(json.dumps({{"phase": "encode"}}), flush=True)
time.sleep(600)
""")

    async def main() -> float:
        job, events = claimed()
        task = asyncio.create_task(CommandWork([str(path)], cancel_latency=C)(job, OFFERED))
        await events.get()  # the command is running and talking
        cancelled = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - cancelled

    took = asyncio.run(main())
    parent, child = map(int, pids.read_text().split())
    assert not running(parent) and not running(child), "the whole process group is stopped"
    assert took < C, f"stopped in {took:.3f}s; the timing model allows C = {C}s"
    if not obeys_sigterm:
        assert took >= C / 2, "SIGKILL only after the grace period"


def test_a_missing_or_non_executable_command_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="not found"):
        CommandWork(["no-such-encoder-anywhere"], cancel_latency=C)
    plain = tmp_path / "plain.py"
    plain.write_text("print('hi')\n")
    with pytest.raises(ConfigurationError, match="not executable"):
        CommandWork([str(plain)], cancel_latency=C)
    with pytest.raises(ConfigurationError, match="missing"):
        CommandWork([], cancel_latency=C)
    with pytest.raises(ConfigurationError, match="--scratch"):
        CommandWork([sys.executable], cancel_latency=C, scratch_root=tmp_path / "nope")


# --------------------------------------------------------------------------- the whole group


@pytest.mark.parametrize("leader", ["exits-at-once", "dies-on-sigterm-child-ignores-it"])
def test_a_wrappers_children_are_stopped_with_it_within_c(tmp_path, leader):
    """Stopped means nothing of the command runs: a wrapper that exits (at once, or on SIGTERM)
    while its ffmpeg goes on has not stopped the work (S2)."""
    pids = tmp_path / "child.pid"
    child = ("import os, signal, time\n"
             "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
             f"open({str(pids)!r}, 'w').write(str(os.getpid()))\n"
             "os.dup2(os.open(os.devnull, os.O_WRONLY), 1)\n"
             "time.sleep(600)\n")
    path = script(tmp_path, f"""
import subprocess
p = subprocess.Popen([sys.executable, "-c", {child!r}])
while not os.path.exists({str(pids)!r}):
    time.sleep(0.01)
print(json.dumps({{"phase": "encode"}}), flush=True)
{"" if leader == "exits-at-once" else "p.wait()"}
""")

    async def main() -> float:
        job, events = claimed()
        task = asyncio.create_task(CommandWork([str(path)], cancel_latency=C)(job, OFFERED))
        await events.get()
        cancelled = time.monotonic()
        task.cancel()
        with pytest.raises((asyncio.CancelledError, CommandFailed)):
            await task
        return time.monotonic() - cancelled

    took = asyncio.run(main())
    assert not running(int(pids.read_text())), "the wrapper's child was left running"
    assert took < C


def test_processes_left_behind_by_a_successful_command_are_stopped(tmp_path, capfd):
    """A wrapper that prints its result and exits, leaving a child behind (`ffmpeg ... &`):
    the child is given half a second to end by itself, then SIGTERM, so that it can clean up,
    and SIGKILL only after the grace. Mutation testing (session 38): with that SIGTERM
    deleted, or the wait before it skipped, the keeper's later SIGKILL stopped the child all
    the same and every test passed; the child now marks that it got a SIGTERM."""
    pids, marker = tmp_path / "child.pid", tmp_path / "terminated"
    child = ("import os, signal, sys, time\n"
             "signal.signal(signal.SIGTERM, lambda *_: (open("
             f"{str(marker)!r}, 'w').write('SIGTERM'), sys.exit(0)))\n"
             f"open({str(pids)!r}, 'w').write(str(os.getpid()))\n"
             "time.sleep(600)\n")
    path = script(tmp_path, f"""
import subprocess
subprocess.Popen([sys.executable, "-c", {child!r}], stdout=subprocess.DEVNULL)
while not os.path.exists({str(pids)!r}):
    time.sleep(0.01)
print(json.dumps({{"cid": "bafydone"}}))
""")
    job, _ = claimed()
    result = asyncio.run(CommandWork([str(path)], cancel_latency=C)(job, OFFERED))
    assert result == {"cid": "bafydone"}
    assert not running(int(pids.read_text()))
    assert marker.exists(), "the leftover was stopped without a SIGTERM first"
    _WRITER.flush()
    # Stopped by the keeper, which stays until nothing of the group runs (session 14).
    assert "[job-1] keeper: processes of the command still run after it exited" in \
        capfd.readouterr().err


def test_a_large_job_not_read_from_stdin_does_not_hold_up_the_progress(tmp_path):
    """The job is written to stdin alongside the reading of stdout: a command that never reads
    stdin, given more than a pipe holds, still has its progress read while it runs."""
    go = tmp_path / "go"
    path = script(tmp_path, f"""
print(json.dumps({{"pct": 10}}), flush=True)
while not os.path.exists({str(go)!r}):
    time.sleep(0.01)
print(json.dumps({{"cid": "bafybig"}}))
""")
    big = GatewayMonitorJob(id="job-1", status="queued", assigned_to=None,
                            metadata={"blob": "x" * 1_000_000})

    async def main():
        job, events = claimed()
        task = asyncio.create_task(CommandWork([str(path)], cancel_latency=C)(job, big))
        await asyncio.wait_for(events.get(), 30)  # read while the command still runs
        assert not task.done()
        go.write_text("")
        return await task, job.progress["pct"]

    assert asyncio.run(main()) == ({"cid": "bafybig"}, 10.0)


@pytest.mark.parametrize("who", ["the command", "a wrapper's child", "a child left behind"])
def test_the_command_dies_with_its_runner(tmp_path, who):
    """A runner killed outright (OOM, SIGKILL) takes its command with it (Linux), and the
    command's children too: found by an operator review (session 14), a shell wrapper died
    with the runner while its ffmpeg (here a sleeping child) went on encoding."""
    pid_file = tmp_path / "cmd.pid"
    if who == "the command":
        command = script(tmp_path, f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                                   "time.sleep(600)\n")
    else:
        # "a child left behind": found by an adversarial review of the keeper's first version,
        # which exited with the wrapper and left its child unguarded.
        wait = "wait" if who == "a wrapper's child" else "exit 0"
        command = tmp_path / "wrap.sh"
        command.write_text(f"#!/bin/sh\nsleep 600 &\necho $! > {pid_file}\n{wait}\n")
        command.chmod(0o755)
    _kill_the_runner_of(command, tmp_path, pid_file, "the command outlived its runner")


def test_a_runner_killed_outright_leaves_no_scratch_directory(tmp_path):
    """The runner removes a job's scratch directory when the job ends; killed outright it
    cannot, and every OOM kill left a directory of partial downloads behind (a reader review
    of the README, session 24: 299 of them in /tmp). The keeper removes it once nothing of
    the job runs."""
    root = tmp_path / "scratch"
    root.mkdir()
    pid_file = tmp_path / "cmd.pid"
    command = script(tmp_path, "open(os.path.join(os.environ['SPK_SCRATCH_DIR'], 'part.mp4'),"
                               " 'w').write('x' * 1000)\n"
                               f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                               "time.sleep(600)\n")
    _kill_the_runner_of(command, tmp_path, pid_file, "the command outlived its runner",
                        scratch_root=root)
    deadline = time.monotonic() + 10
    while list(root.iterdir()):
        assert time.monotonic() < deadline, f"left behind: {list(root.iterdir())}"
        time.sleep(0.01)


def test_the_keeper_removes_only_a_scratch_directory_the_runner_made(tmp_path):
    from verifier._keeper import remove_orphaned_scratch

    kept = tmp_path / "results"
    kept.mkdir()
    target = tmp_path / "spk-job-elsewhere"
    target.mkdir()
    link = tmp_path / "spk-job-link"
    link.symlink_to(target)
    for path in (kept, link, tmp_path / "spk-job-missing", None):
        remove_orphaned_scratch(None if path is None else str(path))
    assert kept.is_dir() and link.is_symlink() and target.is_dir()
    remove_orphaned_scratch(str(target) + "/")
    assert not target.exists()


def _kill_the_runner_of(command: Path, tmp_path: Path, pid_file: Path, failure: str, *,
                        scratch_root: Path | None = None) -> None:
    """Run ``command`` under CommandWork in a runner process, wait for the pid it (or its
    child) writes to ``pid_file``, kill the runner outright (SIGKILL), and assert that the
    process of that pid is gone within 10 s (``failure`` otherwise)."""
    runner = tmp_path / "runner.py"
    runner.write_text(
        "import asyncio, sys\n"
        "from verifier import ClaimedJob, CommandWork, GatewayMonitorJob\n"
        "job = GatewayMonitorJob(id='job-1', status='queued', assigned_to=None)\n"
        f"work = CommandWork([{str(command)!r}], cancel_latency=1.0, "
        f"scratch_root={None if scratch_root is None else str(scratch_root)!r})\n"
        "asyncio.run(work(ClaimedJob('job-1', asyncio.Queue()), job))\n")
    proc = subprocess.Popen([sys.executable, str(runner)])  # noqa: S603 (our own script)
    pid = None
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        pid = int(pid_file.read_text())
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 10
        while running(pid):
            assert time.monotonic() < deadline, failure
            time.sleep(0.01)
    finally:
        proc.kill()
        if pid is not None and running(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_scratch_directory_that_cannot_be_written_is_refused_at_start_up(tmp_path):
    """Found by an operator review (session 14): `--scratch /proc` was accepted, then every
    job failed after it had been claimed."""
    command = script(tmp_path, "print('{}')")
    with pytest.raises(ConfigurationError, match="not writable"):
        CommandWork([str(command)], cancel_latency=C, scratch_root="/proc")


def test_the_commands_stderr_is_labelled_with_its_job_and_its_tail_explains_a_failure(
        tmp_path, capfd):
    """Found by an operator review (session 14): "boom" reached the runner's stderr with no
    job id, and the failure said only "command failed (exit status 3)"."""
    path = script(tmp_path, """
sys.stderr.write("frame=1\\rframe=2\\rdownloading input\\n")
sys.stderr.write("ffmpeg: Invalid data found when processing input\\r\\n")
sys.exit(3)
""")
    job, _ = claimed()
    with pytest.raises(CommandFailed) as failed:
        asyncio.run(CommandWork([str(path)], cancel_latency=C)(job, OFFERED))
    _WRITER.flush()
    assert "exit status 3" in str(failed.value)
    assert "Invalid data found when processing input" in str(failed.value)
    err = capfd.readouterr().err
    assert "[job-1] ffmpeg: Invalid data found when processing input" in err
    assert "[job-1] downloading input" in err and "frame=1" not in err  # a \r line: its end


def test_the_command_gets_the_default_sigpipe_and_sigxfsz_back(tmp_path):
    """Found by an adversarial review (session 14): Python ignores SIGPIPE and SIGXFSZ, and the
    keeper's fork and exec passed that on, so a wrapper's `producer | head -1` never ended
    its producer (a POSIX shell cannot undo an inherited ignore)."""
    status = tmp_path / "status"
    command = tmp_path / "wrap.sh"
    command.write_text(f"#!/bin/sh\ngrep SigIgn /proc/$$/status > {status}\n"
                       "echo '{\"cid\": \"bafyok\"}'\n")
    command.chmod(0o755)
    job, _ = claimed()
    assert asyncio.run(CommandWork([str(command)], cancel_latency=C)(job, OFFERED)) == {
        "cid": "bafyok"}
    ignored = int(status.read_text().split()[1], 16)
    assert not ignored & (1 << (13 - 1)), "SIGPIPE ignored"
    assert not ignored & (1 << (25 - 1)), "SIGXFSZ ignored"


@pytest.mark.parametrize(("text", "message"), [
    ("echo hello\n", "neither a program nor a script"),
    ("#!/no/such/interpreter\necho hello\n", "cannot be run"),
    ("#!\necho hello\n", "empty #! line"),
    # Found by an operator review: a script saved with Windows line endings (its interpreter
    # is "/bin/sh\r"), and an interpreter that env does not find.
    ("#!/bin/sh\r\necho hello\r\n", "CRLF line endings.*dos2unix"),
    ("#!/usr/bin/env nosuchinterp\necho hello\n", "'nosuchinterp' through /usr/bin/env"),
    ("#!/usr/bin/env -S nosuchinterp -u\necho hello\n", "'nosuchinterp' through"),
    ("#!/usr/bin/env -S LANG=C nosuchinterp\necho hello\n", "'nosuchinterp' through"),
    # Linux gives env one word: it looks for a program called "sh -e" (exit status 127).
    ("#!/usr/bin/env sh -e\necho hello\n", "'sh -e' through.*-S"),
])
def test_a_script_the_kernel_cannot_start_is_refused_at_start_up(tmp_path, text, message):
    """Found by an adversarial review (session 14): these passed the start-up check, then
    failed every job with exit status 127 after claiming it."""
    path = tmp_path / "encode"
    path.write_bytes(text.encode())
    path.chmod(0o755)
    with pytest.raises(ConfigurationError, match=message):
        CommandWork([str(path)], cancel_latency=C)


@pytest.mark.parametrize("shebang", [
    "#!/bin/sh", "#! /bin/sh -e", "#!/usr/bin/env sh", "#!/usr/bin/env -S sh -e",
    "#!/usr/bin/env -S LANG=C sh", "#!/usr/bin/env",
])
def test_a_script_the_kernel_can_start_is_accepted(tmp_path, shebang):
    path = tmp_path / "encode"
    path.write_text(f"{shebang}\necho hello\n")
    path.chmod(0o755)
    CommandWork([str(path)], cancel_latency=C)


def test_envs_program_is_looked_up_in_the_commands_path(tmp_path):
    """What env will find is judged on the PATH the command gets, not on the runner's."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "my-encoder-interp").symlink_to("/bin/sh")
    path = tmp_path / "encode"
    path.write_text("#!/usr/bin/env my-encoder-interp\necho hello\n")
    path.chmod(0o755)
    CommandWork([str(path)], cancel_latency=C, env={"PATH": f"{tools}:/usr/bin:/bin"})
    with pytest.raises(ConfigurationError, match="my-encoder-interp"):
        CommandWork([str(path)], cancel_latency=C, env={"PATH": "/usr/bin:/bin"})


def test_stderr_lines_dropped_are_reported_once_with_their_number(tmp_path, monkeypatch, caplog):
    """Found by an operator review: lines dropped because our stderr did not keep up were
    counted and never reported."""

    class Stuck(_StderrWriter):
        """A writer whose stderr takes nothing until told, with room for 3 lines."""

        def __init__(self) -> None:
            super().__init__()
            self._lines = queue.Queue(maxsize=3)
            self.go = threading.Event()

        def _drain(self) -> None:
            self.go.wait()
            super()._drain()

    writer = Stuck()
    monkeypatch.setattr("verifier._command._WRITER", writer)
    path = script(tmp_path, """
for i in range(20):
    print(f"frame {i}", file=sys.stderr)
print(json.dumps({"cid": "bafyok"}))
""")
    job, _ = claimed()
    try:
        with caplog.at_level(logging.WARNING, logger="verifier.command"):
            result = asyncio.run(CommandWork([str(path)], cancel_latency=C)(job, OFFERED))
    finally:
        writer.go.set()
    writer.flush()
    assert result == {"cid": "bafyok"}
    dropped = [r for r in caplog.records if r.event_code == "COMMAND_STDERR_DROPPED"]
    assert len(dropped) == 1, "once per job"
    assert "17 lines" in dropped[0].getMessage() and "did not keep up" in dropped[0].getMessage()


def test_a_result_printed_before_the_work_was_cancelled_is_logged_never_committed(
        tmp_path, caplog):
    """Found by an operator review: a command stopped after it had printed its result (an
    upload done, its clean-up still running) had that result thrown away unseen."""
    printed = tmp_path / "printed"
    cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
    path = script(tmp_path, f"""
print(json.dumps({{"phase": "upload"}}), flush=True)
print(json.dumps({{"cid": {cid!r}}}), flush=True)
open({str(printed)!r}, "w").close()
time.sleep(600)
""")

    async def main() -> None:
        job, events = claimed()
        task = asyncio.create_task(CommandWork([str(path)], cancel_latency=C)(job, OFFERED))
        await events.get()
        while not printed.exists():  # noqa: ASYNC110 (a file: nothing to await)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the result line, in the pipe before the file, is read
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task  # cancelled is cancelled: never a result

    with caplog.at_level(logging.WARNING, logger="verifier.command"):
        asyncio.run(main())
    discarded = [r for r in caplog.records if r.event_code == "COMMAND_RESULT_DISCARDED"]
    assert len(discarded) == 1
    assert cid in discarded[0].getMessage() and discarded[0].event_fields["cid"] == cid


def test_a_child_dying_of_the_same_signal_is_not_reported_as_left_behind(tmp_path, capfd):
    """Found by an operator review: on an ordinary shutdown the group's SIGTERM ended a
    wrapper a moment before its child, and the keeper warned of processes left behind."""
    ready = tmp_path / "ready"
    child = ("import os, signal, time\n"
             "def bye(*_):\n"
             # Its clean-up: it ends a moment after the wrapper, well within the keeper's
             # half second (_SETTLE_S), whatever the machine's load.
             "    time.sleep(0.01)\n"
             "    os._exit(0)\n"
             "signal.signal(signal.SIGTERM, bye)\n"
             f"open({str(ready)!r}, 'w').close()\n"
             "time.sleep(600)\n")
    path = script(tmp_path, f"""
import subprocess
p = subprocess.Popen([sys.executable, "-c", {child!r}], stdout=subprocess.DEVNULL)
while not os.path.exists({str(ready)!r}):
    time.sleep(0.01)
print(json.dumps({{"phase": "encode"}}), flush=True)
p.wait()
""")

    async def main() -> None:
        job, events = claimed()
        task = asyncio.create_task(CommandWork([str(path)], cancel_latency=C)(job, OFFERED))
        await events.get()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    _WRITER.flush()
    assert "still run after it exited" not in capfd.readouterr().err


def test_the_exit_drains_the_relayed_stderr_and_counts_what_it_could_not(monkeypatch):
    """The relay is a daemon thread: what is still queued when the runner exits is lost. The
    exit waits a few seconds for it, and says how many lines did not make it (an operator
    review, 2026-12-04: up to 10,000 of a failed job's last lines vanished without a count)."""
    import io
    import threading

    class Stalled(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.release = threading.Event()

        def write(self, text: str) -> int:
            self.release.wait()
            return super().write(text)

    stalled = Stalled()
    monkeypatch.setattr("sys.stderr", stalled)
    writer = _StderrWriter()
    for i in range(5):
        assert writer.put(f"line {i}\n")
    assert writer.drain(timeout=0.05) >= 4  # the sink holds one; the rest are still queued
    stalled.release.set()
    assert writer.drain(timeout=60) == 0
    assert stalled.getvalue().splitlines() == [f"line {i}" for i in range(5)]


# ------------------------------------------------- escapes, floods, held pipes (review, 12-05)


def _escaping_child(pid_file: Path, how: str, *, ignores_sigterm: bool = False,
                    marks_sigterm: Path | None = None) -> str:
    """Python source of a child that leaves the command's process group as GNU ``timeout``
    (``setpgid``) or a daemon (``setsid``) does, writes its pid, and sleeps. On SIGTERM it
    dies, or ignores it, or (``marks_sigterm``) writes that file and exits: a clean-up."""
    return ("import os, signal, sys, time\n"
            f"os.{'setpgid(0, 0)' if how == 'setpgid' else 'setsid()'}\n"
            + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignores_sigterm else "")
            + ("signal.signal(signal.SIGTERM, lambda *_: (open("
               f"{str(marks_sigterm)!r}, 'w').write('SIGTERM'), sys.exit(0)))\n"
               if marks_sigterm else "")
            + f"open({str(pid_file)!r} + '.tmp', 'w').write(str(os.getpid()))\n"
            f"os.rename({str(pid_file)!r} + '.tmp', {str(pid_file)!r})\n"
            "time.sleep(600)\n")


@pytest.mark.parametrize(("how", "ignores_sigterm"), [
    ("setpgid", False), ("setsid", False), ("setpgid", True)],
    ids=["own-group", "own-session", "own-group-ignores-sigterm"])
def test_a_process_that_left_the_group_is_stopped_too(tmp_path, how, ignores_sigterm):
    """An adversarial review (2026-12-05): a wrapper running `timeout 3600 ffmpeg` (timeout
    moves to a group of its own) was reported stopped, and its job handed back, while ffmpeg
    encoded on. Stopped means nothing the command started runs, whatever its group.

    And SIGTERM first, so that each can clean up; SIGKILL only for what still runs half of C
    later. Mutation testing (session 38): with the keeper's SIGTERM to processes outside the
    command's group deleted, the SIGKILL that followed still stopped them in time and every
    test passed, so a child that does not ignore SIGTERM marks that it got one."""
    pid_file, marker = tmp_path / "escaped.pid", tmp_path / "terminated"
    child = _escaping_child(pid_file, how, ignores_sigterm=ignores_sigterm,
                            marks_sigterm=None if ignores_sigterm else marker)
    path = script(tmp_path, f"""
import subprocess
subprocess.Popen([sys.executable, "-c", {child!r}], stdout=subprocess.DEVNULL)
while not os.path.exists({str(pid_file)!r}):
    time.sleep(0.01)
print(json.dumps({{"phase": "encode"}}), flush=True)
time.sleep(600)
""")

    async def main() -> float:
        job, events = claimed()
        task = asyncio.create_task(CommandWork([str(path)], cancel_latency=C)(job, OFFERED))
        await events.get()
        cancelled = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - cancelled

    took = asyncio.run(main())
    escaped = int(pid_file.read_text())
    try:
        assert not running(escaped), "a process that left the group outlived the stop"
        assert took < C
        assert ignores_sigterm or marker.exists(), "stopped without a SIGTERM to clean up"
    finally:
        if running(escaped):
            os.kill(escaped, signal.SIGKILL)


def test_a_leftover_that_left_the_group_and_holds_stdout_is_stopped(tmp_path):
    """The same review: a command printed its result and exited 0 while `setsid sleep 20 &`
    held its stdout; the job waited for the sleep to end (it was out of the keeper's reach)."""
    pid_file = tmp_path / "escaped.pid"
    path = script(tmp_path, f"""
import subprocess
subprocess.Popen([sys.executable, "-c", {_escaping_child(pid_file, "setsid")!r}])
while not os.path.exists({str(pid_file)!r}):
    time.sleep(0.01)
print(json.dumps({{"cid": "bafydone"}}))
""")
    job, _ = claimed()
    work = CommandWork([str(path)], cancel_latency=C)
    try:
        result = asyncio.run(asyncio.wait_for(work(job, OFFERED), 30))
        assert result == {"cid": "bafydone"}
        assert not running(int(pid_file.read_text()))
    finally:
        if pid_file.exists() and running(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_process_that_left_the_group_dies_with_the_runner(tmp_path):
    """The runner killed outright: the keeper kills what left the group too (found by the same
    review; the kernel's PR_SET_PDEATHSIG reaches the keeper alone)."""
    pid_file = tmp_path / "escaped.pid"
    command = script(tmp_path, f"""
import subprocess
subprocess.Popen([sys.executable, "-c", {_escaping_child(pid_file, "setsid")!r}]).wait()
""")
    _kill_the_runner_of(command, tmp_path, pid_file,
                        "a process that left the group outlived its runner")


def test_a_flood_of_stray_lines_gives_the_loop_turns_and_is_logged_in_brief(
        tmp_path, monkeypatch, caplog):
    """The same review: a burst of 200,000 short non-JSON lines stalled the event loop (the
    lease's timers) for seconds: read without a turn for the loop, each line parsed and
    logged. Counted in lines, not seconds: between two turns of a task that yields at every
    turn, the reader handles at most a bounded number of lines."""
    lines = 20_000
    path = script(tmp_path, f"""
sys.stdout.write("x\\n" * {lines})
print(json.dumps({{"cid": "bafyok"}}))
""")
    handled = 0
    heard = CommandWork._heard

    def counting(self, line, job, said):
        nonlocal handled
        handled += 1
        heard(self, line, job, said)

    monkeypatch.setattr(CommandWork, "_heard", counting)

    async def main():
        job, _ = claimed()
        task = asyncio.create_task(CommandWork([str(path)], cancel_latency=C)(job, OFFERED))
        most, before = 0, 0
        while not task.done():
            most, before = max(most, handled - before), handled
            await asyncio.sleep(0)
        return await task, most

    with caplog.at_level(logging.WARNING, logger="verifier.command"):
        result, most = asyncio.run(main())
    assert result == {"cid": "bafyok"}
    assert handled == lines + 1
    assert most <= 64, f"{most} lines handled without a turn for the loop"
    ignored = [r.getMessage() for r in caplog.records if r.event_code == "COMMAND_OUTPUT_IGNORED"]
    assert len(ignored) == 6, "the first five, then their number"
    assert f"{lines} lines ignored" in ignored[-1]


def test_a_stdout_holder_out_of_reach_does_not_hold_the_job_nor_our_pipes(tmp_path):
    """The same review: whatever still holds the command's stdout or stderr once the keeper has
    exited (here the test itself, through /proc: no descendant the keeper could stop) must not
    hold the job, and our ends of the pipes are closed, not leaked."""
    pid_file = tmp_path / "cmd.pid"
    go = tmp_path / "go"
    path = script(tmp_path, f"""
open({str(pid_file)!r}, "w").write(str(os.getpid()))
print(json.dumps({{"phase": "encode"}}), flush=True)
while not os.path.exists({str(go)!r}):
    time.sleep(0.01)
print(json.dumps({{"cid": "bafydone"}}))
""")
    held: list[int] = []

    async def main():
        job, events = claimed()
        task = asyncio.create_task(CommandWork([str(path)], cancel_latency=C)(job, OFFERED))
        await events.get()  # its pid is written
        pid = int(pid_file.read_text())
        held.extend(os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY) for fd in (1, 2))
        go.write_text("")
        return await asyncio.wait_for(task, 30)

    try:
        assert asyncio.run(main()) == {"cid": "bafydone"}
        for fd in held:  # our read ends are closed: the pipes are broken
            with pytest.raises(BrokenPipeError):
                os.write(fd, b"x\n")
    finally:
        for fd in held:
            os.close(fd)


@pytest.mark.parametrize(("body", "outcome"), [
    ("print('[' * 5000); print(json.dumps({'cid': 'bafyok'}))", {"cid": "bafyok"}),
    ("print(json.dumps({'cid': 'bafy'})); sys.stdout.write('x' * 70000)",
     "not as its last line"),
    ("print(json.dumps({'cid': 'bafy'})); sys.stdout.write('x' * 70000 + '\\n')",
     "not as its last line"),
], ids=["deeply-nested-stray-line", "long-last-line", "long-last-line-with-newline"])
def test_a_stray_line_is_ignored_and_a_long_last_line_is_still_the_last(tmp_path, body, outcome):
    """The same review: a stray `[[[[...` line failed the job with RecursionError; a last line
    over 64 KiB without a newline vanished, and the cid line before it was committed."""
    path = script(tmp_path, body)
    job, _ = claimed()
    work = CommandWork([str(path)], cancel_latency=C)
    if isinstance(outcome, dict):
        assert asyncio.run(work(job, OFFERED)) == outcome
    else:
        with pytest.raises(CommandFailed, match=outcome):
            asyncio.run(work(job, OFFERED))


# ------------------------------------- the command against its keeper (review, 2026-12-05, 2nd)


def _cancelled_after_progress(path: Path, held_stderr: bool = False) -> float:
    """Run ``path``, cancel it once it reports progress, and return how long the stop took
    (``held_stderr``: the test holds the command's stderr meanwhile, out of the keeper's reach,
    as a leftover of it may)."""
    held: list[int] = []

    async def main() -> float:
        job, events = claimed()
        task = asyncio.create_task(CommandWork([str(path)], cancel_latency=C)(job, OFFERED))
        await asyncio.wait_for(events.get(), 30)
        if held_stderr:
            pid = int((path.parent / "cmd.pid").read_text())
            held.append(os.open(f"/proc/{pid}/fd/2", os.O_WRONLY))
        cancelled = time.monotonic()
        task.cancel()
        with pytest.raises((asyncio.CancelledError, CommandFailed)):
            await task
        return time.monotonic() - cancelled

    try:
        return asyncio.run(main())
    finally:
        for fd in held:
            os.close(fd)


def _kill_if_running(pid_file: Path) -> None:
    if pid_file.exists() and pid_file.read_text() and running(int(pid_file.read_text())):
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_wrapper_that_kills_its_whole_group_on_exit_does_not_kill_the_keeper(tmp_path):
    """`trap 'kill -9 0' EXIT`, a common wrapper idiom: when the keeper shared the command's
    group it was killed with it, and what the command had started in a group of its own (as
    `timeout` does) went to init and ran on after "stopped". The command has a group of its
    own now, the keeper outside it."""
    pid_file = tmp_path / "escaped.pid"
    child = tmp_path / "child.py"
    child.write_text(_escaping_child(pid_file, "setpgid"))
    path = tmp_path / "wrap.sh"
    path.write_text(f"#!/bin/bash\ntrap 'kill -9 0' EXIT\n{sys.executable} {child} &\n"
                    f"while [ ! -s {pid_file} ]; do sleep 0.01; done\n"
                    "echo '{\"phase\": \"encode\"}'\nsleep 600\n")
    path.chmod(0o755)
    try:
        took = _cancelled_after_progress(path)
        assert not running(int(pid_file.read_text())), "what left the group outlived the stop"
        assert took < C
    finally:
        _kill_if_running(pid_file)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_a_command_that_kills_or_stops_its_keeper_is_still_stopped(tmp_path, how):
    """The keeper is the command's parent: `kill -9 $PPID` left what the command had started
    outside its group to init, running after "stopped"; `kill -STOP $PPID` left the runner
    killing the keeper's group, the keeper with it and that same process left to init. The
    runner adopts a dead keeper's orphans (child subreaper) and stops them; a keeper that
    does not answer, it replaces: it kills what is below it itself."""
    pid_file = tmp_path / "escaped.pid"
    cmd_pid = tmp_path / "cmd.pid"
    path = script(tmp_path, f"""
import subprocess
subprocess.Popen([sys.executable, "-c", {_escaping_child(pid_file, "setpgid")!r}],
                 stdout=subprocess.DEVNULL)
while not os.path.exists({str(pid_file)!r}):
    time.sleep(0.01)
open({str(cmd_pid)!r}, "w").write(str(os.getpid()))
os.kill(os.getppid(), signal.{how})
print(json.dumps({{"phase": "encode"}}), flush=True)
time.sleep(600)
""")
    try:
        # (No bound on the time here: a stopped keeper is replaced at 3/4 of C, which a
        # loaded CI machine can push past C; what must hold is that nothing runs.)
        _cancelled_after_progress(path)
        assert not running(int(pid_file.read_text())), "what left the group outlived the stop"
        assert not running(int(cmd_pid.read_text())), "the command outlived the stop"
    finally:
        _kill_if_running(pid_file)
        _kill_if_running(cmd_pid)


def test_the_sweep_after_a_killed_keeper_spares_the_host_program_s_own_children(tmp_path):
    """A program that embeds CommandWork starts children of its own, in its own process group:
    once a keeper is killed, the runner kills what that keeper left (its orphans come to the
    runner, a child subreaper), never those."""
    cmd_pid = tmp_path / "cmd.pid"
    path = script(tmp_path, f"""
open({str(cmd_pid)!r}, "w").write(str(os.getpid()))
time.sleep(0.5)  # the host starts its own child meanwhile
os.kill(os.getppid(), signal.SIGKILL)
print(json.dumps({{"phase": "encode"}}), flush=True)
time.sleep(600)
""")
    host_child: list[subprocess.Popen[bytes]] = []

    def start_the_host_s_child() -> None:
        deadline = time.monotonic() + 30
        while not cmd_pid.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        host_child.append(subprocess.Popen(["sleep", "60"]))  # noqa: S607 (a test's child)

    starter = threading.Thread(target=start_the_host_s_child)
    starter.start()
    try:
        _cancelled_after_progress(path)
        starter.join()
        assert host_child and host_child[0].poll() is None, "the host's own child was killed"
        assert not running(int(cmd_pid.read_text())), "the command outlived the stop"
    finally:
        starter.join()
        for child in host_child:
            child.kill()
            child.wait()
        _kill_if_running(cmd_pid)


def test_signals_the_command_sends_its_own_group_do_not_reach_the_keeper(tmp_path):
    """`kill -USR1 0` from the command reached the keeper, which took it for the runner's hard
    stop and killed the command it guards."""
    path = tmp_path / "work.sh"
    path.write_text("#!/bin/sh\ntrap '' USR1 USR2\nkill -USR1 0\nkill -USR2 0\nsleep 0.2\n"
                    "echo '{\"cid\": \"bafyok\"}'\n")
    path.chmod(0o755)
    job, _ = claimed()
    assert asyncio.run(CommandWork([str(path)], cancel_latency=C)(job, OFFERED)) == \
        {"cid": "bafyok"}


def _zombie_leader(heartbeat: Path) -> str:
    """Python source of a process (in a session of its own) whose main thread exits while
    another appends to ``heartbeat``: /proc says Z for it, though it works on."""
    return ("import ctypes, os, threading, time\n"
            "os.setsid()\n"
            "def beat():\n"
            "    while True:\n"
            f"        with open({str(heartbeat)!r}, 'a') as file:\n"
            "            file.write('.')\n"
            "        time.sleep(0.02)\n"
            "threading.Thread(target=beat).start()\n"
            "ctypes.CDLL(None).pthread_exit(None)  # the GIL released (ctypes): beat goes on\n")


def _beating(heartbeat: Path) -> bool:
    before = heartbeat.stat().st_size
    time.sleep(0.3)
    return heartbeat.stat().st_size != before


@pytest.mark.parametrize("ends", ["cancelled", "exits-with-its-result"])
def test_a_process_whose_main_thread_has_exited_is_stopped_too(tmp_path, ends):
    """The same review: a process whose main thread had exited (its other threads encoding on)
    looked like a zombie in /proc, was never signalled, and ran on after "stopped"; left behind
    by a command that ended, it kept the keeper (and the job) waiting for ever."""
    heartbeat = tmp_path / "heartbeat"
    pid_file = tmp_path / "leader.pid"
    path = script(tmp_path, f"""
import subprocess
p = subprocess.Popen([sys.executable, "-c", {_zombie_leader(heartbeat)!r}],
                     stdout=subprocess.DEVNULL)
open({str(pid_file)!r}, "w").write(str(p.pid))
while not os.path.exists({str(heartbeat)!r}):
    time.sleep(0.01)
print(json.dumps({{"phase": "encode"}}), flush=True)
{"time.sleep(600)" if ends == "cancelled" else 'print(json.dumps({"cid": "bafydone"}))'}
""")
    try:
        took = 0.0
        if ends == "cancelled":
            took = _cancelled_after_progress(path)
        else:
            job, _ = claimed()
            work = CommandWork([str(path)], cancel_latency=C)
            assert asyncio.run(asyncio.wait_for(work(job, OFFERED), 15)) == {"cid": "bafydone"}
        assert not _beating(heartbeat), "its heartbeat file still grows after the stop"
        assert took < C
    finally:
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_held_stderr_does_not_make_the_stop_later_than_c(tmp_path, monkeypatch):
    """The same review: once the work had stopped, its stderr's last lines were waited for up
    to a second more, while a holder out of reach kept the pipe open: "stopped" came after C.
    They are waited for within what is left of C, and longer only while lines still come
    (``_last_words``; a silent held pipe: no longer)."""
    waits: list[float] = []
    last_words = command_module._last_words

    async def recorded(relay: Any, relayed: Any, within: float) -> None:
        started = asyncio.get_running_loop().time()
        await last_words(relay, relayed, within)
        waits.append(asyncio.get_running_loop().time() - started - within)

    monkeypatch.setattr(command_module, "_last_words", recorded)
    path = script(tmp_path, f"""
open({str(tmp_path / "cmd.pid")!r}, "w").write(str(os.getpid()))
print(json.dumps({{"phase": "encode"}}), flush=True)
time.sleep(600)
""")
    took = _cancelled_after_progress(path, held_stderr=True)
    # The wait ended when its share of C did (a few loop turns late at most), not a second on.
    assert len(waits) == 1 and waits[0] < 0.5 * command_module._RELAY_GRACE_S, waits
    # And that share ends within C: measured from the wait alone, a mutant that waited up to
    # 1.9 C (its share computed wrong) passed (mutation testing, session 40).
    assert took < C, took


def test_a_line_over_the_limit_is_cut_even_when_its_end_comes_in_the_same_read(tmp_path):
    """The same review: a line a little over _MAX_LINE whose newline came in the read that
    took it over the limit was parsed whole (here a result padded with blanks, which then
    counted as the last line); read in more pieces, it was cut. Cut either way."""
    from verifier._command import _MAX_LINE, _READ, _Said

    first = b'{"cid": "bafyfirst"}\n'
    padded = b" " * (_MAX_LINE - len(first) + 100) + b'{"cid": "bafysecond"}\n'
    data = first + padded

    async def main() -> _Said:
        stdout = asyncio.StreamReader()
        stdout.feed_data(data)  # read _READ bytes at a time: the newline in the last read
        stdout.feed_eof()
        said = _Said()
        job, _ = claimed()
        await CommandWork([sys.executable], cancel_latency=C)._read_lines(stdout, job, said)
        return said

    # The reads before the last leave it under the limit; the last takes it over, and ends it.
    assert len(data) - len(data) % _READ - len(first) <= _MAX_LINE < len(padded) - 1
    said = asyncio.run(main())
    assert said.result == first.strip(), "the over-long line was parsed"
    assert said.last != said.result, "it is still the last line, cut"


def test_the_scratch_directory_is_deleted_off_the_event_loop(tmp_path, monkeypatch):
    """Deleting a scratch directory of many files on the event loop held every other job's
    timers (a lease's cancel, its re-checks) for seconds (an adversarial review, 2026-12-05).
    Here the deletion, once begun, waits until another task on the loop has run: on the loop
    it never could, and the wait runs out."""
    path = script(tmp_path, 'print(json.dumps({"cid": "bafyresult"}))')
    other_task_ran = threading.Event()
    waited: list[bool] = []
    rmtree = command_module.shutil.rmtree

    async def main():
        loop, began = asyncio.get_running_loop(), asyncio.Event()

        def slow_rmtree(where: str, ignore_errors: bool = False) -> None:
            loop.call_soon_threadsafe(began.set)
            waited.append(other_task_ran.wait(timeout=5.0))
            rmtree(where, ignore_errors=ignore_errors)

        async def other_job() -> None:
            await began.wait()
            other_task_ran.set()  # reached only if the loop runs while the deletion goes on

        monkeypatch.setattr(command_module.shutil, "rmtree", slow_rmtree)
        job, _ = claimed()
        other = asyncio.create_task(other_job())
        result = await CommandWork([str(path)], cancel_latency=C)(job, OFFERED)
        await other
        return result

    assert asyncio.run(main()) == {"cid": "bafyresult"}
    assert waited == [True], "the deletion held the event loop"


def _patched_true(tmp_path: Path, patch: Any) -> Path:
    """A copy of /bin/true with ``patch(bytes) -> bytes`` applied, executable."""
    original = Path(shutil.which("true") or "/bin/true").resolve()
    data = original.read_bytes()
    if not data.startswith(b"\x7fELF"):
        pytest.skip("true is not an ELF program here")
    path = tmp_path / "encode"
    path.write_bytes(patch(data))
    path.chmod(0o755)
    return path


def test_an_elf_program_for_another_machine_is_refused_at_start_up(tmp_path):
    """An arm64 build on an x86-64 host (or the reverse) passed the start-up check, which
    read only the ELF magic, then every job it got was claimed and failed with exit status
    127 (adversarial review, session 36)."""
    host = struct.unpack_from("<H", Path("/proc/self/exe").read_bytes()[:64], 18)[0]
    other = 183 if host != 183 else 62

    def foreign(data: bytes) -> bytes:
        return data[:18] + struct.pack("<H", other) + data[20:]

    with pytest.raises(ConfigurationError, match="for another machine"):
        CommandWork([str(_patched_true(tmp_path, foreign))], cancel_latency=C)
    CommandWork([str(_patched_true(tmp_path, lambda data: data))], cancel_latency=C)


def test_an_elf_program_whose_loader_is_missing_is_refused_at_start_up(tmp_path):
    """A build for another C library (musl's loader on a glibc host) or with a loader path
    that does not exist: the kernel cannot start it (the same review)."""
    def moved(data: bytes) -> bytes:
        found = re.search(rb"/[^\0]*/ld-[^\0]*\0", data)
        if found is None:
            pytest.skip("true has no loader here (a static build)")
        start = found.start() + found.group().rindex(b"/ld-") + 1
        return data[:start] + b"lX-" + data[start + 3:]

    with pytest.raises(ConfigurationError, match="needs the loader"):
        CommandWork([str(_patched_true(tmp_path, moved))], cancel_latency=C)


@pytest.mark.parametrize("how", ["deleted", "not-executable"])
def test_a_command_the_kernel_will_not_start_any_more_stops_the_runner(tmp_path, how, caplog):
    """Checked at start-up, a command can still be deleted or made non-executable later: then
    every job would be claimed and failed alike, using up the gateway's attempts of job after
    job (adversarial review, session 36). The work raises :class:`CommandCannotRun`, a
    ``SystemExit(2)``, which the encoder loop lets through as on a signal, every job given
    back (``tests/verifier/test_loop.py``); a command's own exit status 127 stays a failure."""
    from verifier import CommandCannotRun, CommandFailed

    path = script(tmp_path, 'print(json.dumps({"cid": "bafyok"}))')
    work = CommandWork([str(path)], cancel_latency=C)
    if how == "deleted":
        path.unlink()
    else:
        path.chmod(0o644)
    caplog.set_level(logging.ERROR, logger="verifier.command")
    job, _ = claimed()
    with pytest.raises(CommandCannotRun) as raised:
        asyncio.run(work(job, OFFERED))
    assert raised.value.code == 2 and "keeper: cannot run" in str(raised.value)
    assert "COMMAND_CANNOT_RUN" in caplog.text
    own = script(tmp_path, 'sys.exit(127)', name="own127.py")
    with pytest.raises(CommandFailed, match="exit status 127"):
        asyncio.run(CommandWork([str(own)], cancel_latency=C)(*claimed()[:1], OFFERED))


def test_the_process_table_reads_parent_group_and_start_time_from_proc(tmp_path):
    """The keeper finds what to stop by parent pid (whatever the group or session) and tells a
    reused pid by its start time: each read from its own field of /proc/PID/stat, also for a
    process whose name has ") " in it (the name is the one field that can). Mutants that read
    the group for the parent, the session for the group, or split the name's last ")" wrongly
    passed every test: the group kill and the runner's sweep stopped the processes anyway."""
    from verifier import _keeper

    named = ("import os, time\n"
             "open('/proc/self/comm', 'w').write('a) b c 1 2 3')\n"
             f"open({str(tmp_path / 'ready')!r}, 'w').close()\n"
             "time.sleep(60)\n")
    # A group of its own in our session: its group, its session and its pid then tell the
    # fields apart (after setsid, group and session are both its pid).
    child = subprocess.Popen([sys.executable, "-c", named], process_group=0)  # noqa: S603
    try:
        while not (tmp_path / "ready").exists():
            time.sleep(0.01)
        table = _keeper.processes()
        assert table is not None
        parent, group, start, ended = table[child.pid]
        assert (parent, group, ended) == (os.getpid(), child.pid, False)
        assert table[os.getpid()][:2] == (os.getppid(), os.getpgrp())
        assert start == _keeper.start_time(child.pid) and start >= table[os.getpid()][2]
        assert [pid for pid, _, _ in _keeper.descendants(os.getpid()) or ()].count(child.pid) == 1
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(("body", "code", "killed_by"), [
    ("", "COMMAND_STOPPED", None),
    ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n", "COMMAND_KILLED", "keeper"),
    ("os.kill(os.getppid(), signal.SIGSTOP)\n", "COMMAND_KILLED", "runner"),
    ("os.kill(os.getppid(), signal.SIGKILL)\n", "COMMAND_LEFTOVERS", None),
], ids=["stopped", "killed", "keeper-stopped", "keeper-killed"])
def test_each_way_a_stop_ends_is_logged_with_its_code(tmp_path, caplog, body, code, killed_by):
    """Operators alert on these codes: a command that stopped on SIGTERM, one still running
    half of C later and killed, and one whose keeper was killed from outside, leaving
    processes the runner killed itself. Mutation testing (session 40): deleting any of the
    three log calls passed every test.

    A kill says who killed (``killed_by``): the keeper, on the runner's hard stop, or the
    runner itself once the keeper had answered neither request for half of C and a quarter
    (its command stopped it). Session 41: deleting the hard-stop request, or the wait for the
    keeper to carry it out, passed every test: the runner's own kill did the work later (or
    sooner). The runner kills what is below the keeper before the keeper, so nothing is left
    over for the sweep (deleting that kill passed as well: the sweep caught the orphans)."""
    path = script(tmp_path, f"""
{body}print(json.dumps({{"phase": "encode"}}), flush=True)
time.sleep(600)
""")
    with caplog.at_level(logging.INFO, logger="verifier.command"):
        took = _cancelled_after_progress(path)
    codes = {getattr(record, "event_code", None) for record in caplog.records}
    stops = codes & {"COMMAND_STOPPED", "COMMAND_KILLED", "COMMAND_LEFTOVERS"}
    if code == "COMMAND_LEFTOVERS":
        # The keeper's end may or may not be reaped before the stop looks: "stopped" or not.
        assert code in stops and "COMMAND_KILLED" not in stops, codes
    else:
        assert stops == {code}, codes
    kills = [record for record in caplog.records
             if getattr(record, "event_code", None) == "COMMAND_KILLED"]
    assert [kill.event_fields["killed_by"] for kill in kills] == (
        [killed_by] if killed_by else [])
    assert [("by the runner" in kill.getMessage()) for kill in kills] == (
        [killed_by == "runner"] if killed_by else [])
    if killed_by == "runner":
        # The keeper had its grace after each request (C/2, then C/4) before it was replaced,
        # and no longer: the stop is due within C (here 0.75 C, and a loaded machine's
        # margin; waiting C for the hard stop made it 1.5 C, unseen: mutation testing).
        assert 0.75 * C <= took < 1.25 * C, took


def _run(tmp_path: Path, body: str) -> Any:
    job, _ = claimed()
    return asyncio.run(CommandWork([str(script(tmp_path, body))], cancel_latency=C)(job, OFFERED))


@pytest.mark.parametrize(("length", "kept"), [(65536, True), (65537, False)])
def test_a_result_line_of_up_to_64_kib_is_read_and_a_longer_one_dropped(
        tmp_path: Path, length: int, kept: bool) -> None:
    """The README's limit (65,536 bytes, the newline aside), at its edge: a runaway line is cut,
    not buffered, and a line cut is no result (mutation testing, session 40)."""
    result = '{"cid": "bafyedge"}'
    body = f"sys.stdout.write(' ' * {length - len(result)} + {result!r} + '\\n')"
    if kept:
        assert _run(tmp_path, body) == {"cid": "bafyedge"}
    else:
        with pytest.raises(CommandFailed, match="without a result"):
            _run(tmp_path, body)


def test_a_failure_names_the_last_five_lines_of_stderr(tmp_path: Path) -> None:
    with pytest.raises(CommandFailed) as failed:
        _run(tmp_path, "for n in range(1, 8):\n    print(f'line {n}', file=sys.stderr)\n"
                       "sys.exit(3)")
    said = str(failed.value)
    assert "line 3 | line 4 | line 5 | line 6 | line 7" in said
    assert "line 2" not in said

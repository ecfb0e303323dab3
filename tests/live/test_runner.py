"""``python -m verifier run -- COMMAND`` against the emulator, as an operator runs it.

The emulated servers run in this process (so a test can play the gateway: reassign a job in the
middle of its encode) and the runner in its own, with a small script as its command, speaking
the command contract over stdin/stdout. Each test checks what the world saw (commits, owners,
the queue) and what happened to the command's processes, not the runner's own word for it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sim import load_scenario
from sim.live import Emulator
from sim.live._cli import _variables
from sim.live._world import LiveWorld
from tests.processes import running
from verifier import EncoderIdentity

SEED = bytes(range(32))
DID = EncoderIdentity.from_seed(SEED).did
THIEF = EncoderIdentity.from_seed(bytes(32)).did
#: A quiet world: no lies, no monitor noise; the test is the adversary.
QUIET = {"lie_rate": 0.0, "monitor_synthetic_rate": 0.0, "monitor_error_rate": 0.0,
         "status_lie_rate": 0.0, "late_write_rate": 0.0, "reply_loss_rate": 0.0,
         "arrival_per_hour": 0.0}

#: The command: its behaviour per job comes from ``MODE_<job id>`` (default: encode for
#: ``SECONDS``, reporting progress, and print a result). It writes its pid, and the instant a
#: SIGTERM reached it, into ``MARKS``.
SCRIPT = r"""
import hashlib, json, os, signal, sys, time
job = json.load(sys.stdin)
marks = os.environ["MARKS"]
jid = os.environ["SPK_JOB_ID"]
mode = os.environ.get("MODE_" + jid.replace("-", "_"), "encode")
open(os.path.join(marks, jid + ".pid"), "w").write(str(os.getpid()))

def on_term(signum, frame):
    open(os.path.join(marks, jid + ".term"), "w").write(repr(time.monotonic()))
    if mode == "chatty":  # last words on stderr
        for n in range(3000):  # about 600 KB: more than the pipe and our reader buffer
            print(f"last words {n:04d} " + "." * 180, file=sys.stderr)
    if mode != "stubborn":
        sys.exit(143)

signal.signal(signal.SIGTERM, on_term)
say = lambda **m: print(json.dumps(m), flush=True)
if mode == "crash":
    say(phase="download"); sys.exit(7)
if mode == "garbage":
    print("ffmpeg version 6.1 Copyright (c)", flush=True); print("{not json", flush=True)
    sys.exit(0)
if mode == "hang":
    say(phase="encode")
    while True:
        time.sleep(1)
seconds = float(os.environ.get("SECONDS_PER_JOB", "1"))
for phase in ("download", "encode", "upload"):
    say(phase=phase)
    for step in range(1, 5):
        time.sleep(seconds / 12)
        say(pct=25 * step)
say(cid="bafy" + hashlib.sha256(jid.encode()).hexdigest()[:32])
"""


class Served:
    """The emulator over a live world, and a way to run the encoder against it."""

    def __init__(self, live: LiveWorld, emulator: Emulator, tmp: Path) -> None:
        self.live, self.emulator, self.tmp = live, emulator, tmp
        self.marks = tmp / "marks"
        self.marks.mkdir()
        self.script = tmp / "encode.py"
        self.script.write_text(f"#!{sys.executable}\n{SCRIPT}", encoding="utf-8")
        self.script.chmod(0o755)
        self.log = tmp / "runner.log"

    def job(self, job_id: str) -> Any:
        return self.live.call(lambda: self.live.world.jobs[job_id])

    async def start(self, *args: str, modes: dict[str, str] | None = None,
                    seconds: float = 1.0, stderr: str = "log",
                    **extra_env: str) -> asyncio.subprocess.Process:
        """Start the runner, its stderr to :attr:`log` (or a pipe: ``stderr="pipe"``)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GATEWAY_", "ENCODER_", "VERIFIER_", "MONGODB_"))}
        env.update(_variables(self.emulator, self.live.scenario))
        env.update(ENCODER_PRIVATE_KEY=base64.b64encode(SEED).decode(), MARKS=str(self.marks),
                   SECONDS_PER_JOB=str(seconds))
        for job_id, mode in (modes or {}).items():
            env["MODE_" + job_id.replace("-", "_")] = mode
        env.update(extra_env)
        with self.log.open("wb") as log:  # the child has its own copy of the descriptor
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "verifier", "run", "--poll-interval", "0.3",
                "--max-poll-interval", "0.6", *args, "--", str(self.script),
                env=env, cwd=self.tmp, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE if stderr == "pipe" else log)

    def logged(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    async def until(self, condition: Any, what: str, patience: float = 60.0) -> None:
        """Wait for a condition of the world (checked every 50 ms), at most ``patience``."""
        deadline = time.monotonic() + patience
        while not self.live.call(condition):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; runner log:\n"
                                     + self.logged()[-4000:])
            await asyncio.sleep(0.05)

    def started(self, job_id: str) -> bool:
        return (self.marks / f"{job_id}.pid").exists()

    def pid(self, job_id: str) -> int:
        return int((self.marks / f"{job_id}.pid").read_text())


@contextlib.asynccontextmanager
async def served(tmp_path: Path, jobs: int, **changes: Any) -> AsyncIterator[Served]:
    scenario = load_scenario("live").replace(jobs=jobs, **{**QUIET, **changes})
    live = LiveWorld(scenario, seed=5)
    emulator = Emulator(live)
    await emulator.start()
    try:
        yield Served(live, emulator, tmp_path)
    finally:
        await emulator.stop()


async def stop(proc: asyncio.subprocess.Process, patience: float = 30.0) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), patience)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_jobs_are_processed_end_to_end_and_committed_by_the_runner(tmp_path):
    port = _free_port()

    async def main() -> None:
        async with served(tmp_path, jobs=2) as srv:
            # With the push on: run_node must start its client (a mutant that never did passed
            # every test, session 39); the emulator then pushes each guarded job's states.
            proc = await srv.start(VERIFIER_METRICS_PORT=str(port), VERIFIER_PUSH="true")
            await srv.until(lambda: srv.live.done, "both jobs committed")
            url = f"http://127.0.0.1:{port}/metrics"
            processed = 'verifier_jobs_total{code="FINISHED",outcome="processed"} 2.0'
            # The world counts a job committed when the emulator writes it; the runner counts it
            # when the reply reaches it, a moment later: scrape until it has (or time runs out).
            deadline = time.monotonic() + 30.0
            while True:
                metrics = await asyncio.to_thread(
                    lambda: urllib.request.urlopen(url, timeout=10).read().decode())
                if processed in metrics or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert processed in metrics, metrics
            assert srv.emulator.pushes_sent > 0
            assert "verifier_pushes_total 0.0" not in metrics, metrics
            assert await stop(proc) == 0
            for job_id in srv.live.job_ids:
                assert job_id in srv.live.world.committed and srv.job(job_id).owner == DID
                assert not running(srv.pid(job_id))
            assert "processed=2" in srv.logged()
            # The effective settings are logged at start (session 14), secrets redacted.
            assert "SETTINGS: " in srv.logged() and "VERIFIER_CHAIN=hardened" in srv.logged()
            assert "ENCODER_PRIVATE_KEY=<set>" in srv.logged()
            assert base64.b64encode(SEED).decode() not in srv.logged()
            assert "CHAIN_NOT_HARDENED" not in srv.logged()

    asyncio.run(main())


def test_a_job_lost_mid_work_has_its_command_killed_within_c(tmp_path):
    async def main() -> None:
        async with served(tmp_path, jobs=1) as srv:
            job_id = srv.live.job_ids[0]
            proc = await srv.start(modes={job_id: "stubborn"}, seconds=60)
            await srv.until(lambda: srv.live.world.jobs[job_id].status == "running"
                            and srv.started(job_id), "the encode to run")
            pid = srv.pid(job_id)
            # The gateway hands the job to another encoder in the middle of the encode.
            srv.live.call(lambda: srv.live.world._write(
                srv.live.world.jobs[job_id], status="assigned", owner=THIEF, token=None))
            term = srv.marks / f"{job_id}.term"
            await srv.until(lambda: term.exists(), "the SIGTERM")
            while running(pid):  # noqa: ASYNC110 (a process's end has no asyncio event)
                await asyncio.sleep(0.005)
            gone = time.monotonic()
            c = srv.live.scenario.cancel_latency
            assert gone - float(term.read_text()) <= c, "stopped within the cancel latency"
            assert srv.job(job_id).owner == THIEF  # never released or finished over the thief
            assert await stop(proc) == 0
            log = srv.logged()
            assert "MONITOR_THEFT_DETECTED" in log and "COMMAND_KILLED" in log
            assert srv.live.world.committed == set()

    asyncio.run(main())


def test_sigterm_to_the_runner_releases_both_running_jobs(tmp_path):
    async def main() -> None:
        async with served(tmp_path, jobs=2) as srv:
            proc = await srv.start("--concurrency", "2", seconds=60)
            await srv.until(lambda: all(srv.live.world.jobs[j].status == "running"
                                        and srv.started(j) for j in srv.live.job_ids),
                            "both encodes to run")
            pids = [srv.pid(j) for j in srv.live.job_ids]
            assert await stop(proc) == 0
            assert not any(running(pid) for pid in pids)
            for job_id in srv.live.job_ids:  # back in the queue at once, not after T
                job = srv.job(job_id)
                assert (job.status, job.owner) == ("queued", None), job
            assert srv.logged().count("cancelled (SHUTDOWN)") == 4  # guard + loop, per job

    asyncio.run(main())


def test_run_stopped_is_the_runners_last_word_after_the_commands_last_lines(tmp_path):
    """A command stopped by the shutdown writes its last lines late, and a slow stderr (a
    terminal, a log driver) holds them back: they were relayed after RUN_STOPPED, which then
    read as not the end (operator review, session 20). Here the test is that slow stderr: it
    stops reading while the command's last words pile up, until the job has been given back."""
    async def main() -> None:
        async with served(tmp_path, jobs=1) as srv:
            job_id = srv.live.job_ids[0]
            proc = await srv.start(modes={job_id: "chatty"}, seconds=60, stderr="pipe")
            assert proc.stderr is not None
            reading = asyncio.Event()
            reading.set()
            chunks: list[bytes] = []

            async def read() -> None:
                while chunk := await proc.stderr.read(4096):
                    chunks.append(chunk)
                    await reading.wait()

            reader = asyncio.create_task(read())
            await srv.until(lambda: srv.started(job_id), "the encode to run")
            reading.clear()  # our stderr stops draining
            proc.send_signal(signal.SIGTERM)
            await srv.until(lambda: srv.job(job_id).owner is None, "the job given back")
            # Held a while longer (not a timing assert: the runner waits up to 5 s for its
            # commands' lines), long enough for a runner that does not wait to have said
            # RUN_STOPPED behind them.
            await asyncio.sleep(1.0)
            reading.set()
            assert await asyncio.wait_for(proc.wait(), 30) == 0
            await reader
            lines = b"".join(chunks).decode("utf-8", "replace").splitlines()
            relayed = [i for i, line in enumerate(lines) if line.startswith(f"[{job_id}]")]
            assert "last words 2999" in lines[relayed[-1]], lines[relayed[-1]]
            stopped = [i for i, line in enumerate(lines) if "RUN_STOPPED" in line]
            assert stopped == [len(lines) - 1], lines[-3:]

    asyncio.run(main())


@pytest.mark.parametrize("mode", ["crash", "garbage", "hang"])
def test_a_command_that_crashes_hangs_or_prints_garbage_is_failed_and_the_loop_goes_on(
        tmp_path, mode):
    async def main() -> None:
        # A progress timeout N as short as T, so that a hang is noticed in seconds (the
        # lease's no-progress rule), not in the scenario's default 300 s.
        async with served(tmp_path, jobs=2, progress_timeout=8.0) as srv:
            bad, good = srv.live.job_ids
            proc = await srv.start(modes={bad: mode})
            await srv.until(lambda: good in srv.live.world.committed, "the good job")
            await srv.until(lambda: srv.live.world.jobs[bad].owner is None
                            and srv.live.world.jobs[bad].attempts + (mode == "hang") >= 1,
                            "the bad job handed back", patience=30)
            assert not running(srv.pid(bad))
            assert await stop(proc) == 0
            log = srv.logged()
            expected = {"crash": "exit status 7", "garbage": "without a result",
                        "hang": "LEASE_EXPIRED"}[mode]
            assert expected in log
            assert bad not in srv.live.world.committed

    asyncio.run(main())


def _state(pid: int) -> str:
    """The process's state letter in /proc (``T``: stopped by a signal)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def test_a_terminal_stop_freezes_neither_the_runner_nor_its_keeper(tmp_path):
    """^Z froze the runner alone: each command runs in a session of its own, so it encoded on
    with no ping and no re-check while the gateway reassigned the job, and two encoders
    encoded one job for 7-10 s (adversarial review, session 36). The runner and the keeper
    now refuse a terminal's stop signals: the job is committed in time, as without them."""
    async def main() -> None:
        async with served(tmp_path, jobs=1) as srv:
            job_id = srv.live.job_ids[0]
            proc = await srv.start(seconds=3)
            await srv.until(lambda: srv.live.world.jobs[job_id].status == "running"
                            and srv.started(job_id), "the encode to run")
            keepers = _children(proc.pid)
            assert keepers, "no keeper under the runner"
            try:
                for pid in (proc.pid, *keepers):  # a terminal's ^Z reaches its foreground group
                    os.kill(pid, signal.SIGTSTP)
                await asyncio.sleep(0.5)
                assert [_state(pid) for pid in (proc.pid, *keepers)
                        if pid == proc.pid or running(pid)].count("T") == 0
                await srv.until(lambda: job_id in srv.live.world.committed,
                                "the job committed", patience=30)
                assert await stop(proc) == 0
            finally:
                if proc.returncode is None:  # a frozen runner, left behind by a failure
                    proc.send_signal(signal.SIGCONT)
                    proc.kill()
                    await proc.wait()
            assert "FREEZE_REFUSED" in srv.logged()

    asyncio.run(main())


def test_a_command_gone_after_start_up_stops_the_runner_with_the_job_given_back(tmp_path):
    """Deleted (or made non-executable) once the runner has started, the command cannot be
    started for any job: the runner used to claim and fail job after job, using up their
    attempts. It now stops at the first, gives it back and exits 2 (helper-115)."""
    async def main() -> None:
        async with served(tmp_path, jobs=1) as srv:
            first = srv.live.job_ids[0]
            proc = await srv.start(seconds=2)
            await srv.until(lambda: srv.started(first), "the first job's command")
            srv.script.unlink()  # the running one goes on; the next cannot start
            for job_id in ("job-late-1", "job-late-2"):
                srv.live.call(lambda j=job_id: srv.live.world.add_job(j))
            try:
                code = await asyncio.wait_for(proc.wait(), 60)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            assert code == 2, srv.logged()[-3000:]
            assert "COMMAND_CANNOT_RUN" in srv.logged()
            # The job it took was given back, and no other was taken.
            tried = [j for j in ("job-late-1", "job-late-2")
                     if srv.job(j).attempts or srv.job(j).owner is not None]
            assert len(tried) <= 1, tried
            assert all(srv.job(j).owner is None for j in ("job-late-1", "job-late-2"))
            assert set(srv.live.world.committed) == {first}

    asyncio.run(main())

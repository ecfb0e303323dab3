"""Differential test of the two drivers' answers to a ``Sleep`` (an adversarial review, session 45).

The same scripted history (the work's reports and its end, a push, a shutdown request, each at
its own instant while the protocol is busy with a request) is fed to the asyncio driver
(``verifier._guard._Run._sleep``, with a real ``ClaimedJob`` and its queue) and to the SimPy
driver (``sim._encoder.Encoder._sleep``, on an encoder of a finished run); the protocol then
waits, and each driver's answers to its next waits are compared. The protocol is the same
pure code in both; what it is told, in which order, must be too, or the suites prove things
about an order nobody ships.
"""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace
from typing import Any

import pytest

from tests.sim.drivers import WORK_DONE, WORK_FAILED, an_encoder, run_to_end
from verifier import ClaimedJob, OwnershipGuard, Tier
from verifier._guard import _Run
from verifier.protocol import (
    Hinted,
    PhaseChanged,
    Progressed,
    ShutdownRequested,
    Sleep,
    StartWork,
    Woke,
    WorkEnded,
)
from verifier.testing import InMemoryJobs, InMemoryTier, run_virtual

A = "did:key:z6MkEncoderA"
OTHER = "did:key:z6MkEncoderB"
#: When the protocol next waits (the scripted instants are all before it).
BUSY_UNTIL = 10.0
#: The waits' end: far after every scripted instant.
AHEAD = 100.0

# A script: (instant, kind, value); kinds: phase, progress (pct, download_pct), end, fail (the
# work fails on its own: session 46), push (owner, status), shutdown.
Script = list[tuple[float, str, Any]]


def guard_answers(script: Script) -> list[Any]:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        jobs = InMemoryJobs()
        jobs.add("j1", assigned_to=A, status="running")
        guard = OwnershipGuard(did=A, clients=[InMemoryTier(Tier.GATEWAY, jobs, A)])
        clock = lambda: loop.time() - start  # noqa: E731
        work = [(t, kind, value) for t, kind, value in script
                if kind in ("phase", "progress", "end", "fail")]

        async def process(job: ClaimedJob) -> Any:
            for t, kind, value in work:
                await asyncio.sleep(t - clock())
                if kind == "phase":
                    job.set_phase(value)
                elif kind == "progress":
                    job.set_progress(pct=value[0], download_pct=value[1])
                elif kind == "fail":
                    raise RuntimeError("ffmpeg exited with status 1")
                else:
                    return {"cid": "bafy-j1"}
            await asyncio.sleep(3600)
            return None

        run = _Run(guard, "j1", process, clock)
        run.subscribe()  # what the claim does
        assert isinstance(await run.perform(StartWork()), object)

        async def outside() -> None:
            for t, kind, value in script:
                if kind not in ("push", "shutdown"):
                    continue
                await asyncio.sleep(t - clock())
                if kind == "push":
                    run._pushed(SimpleNamespace(owner=value[0], status=value[1]))
                else:
                    run.request_shutdown()

        events = asyncio.create_task(outside())
        await asyncio.sleep(BUSY_UNTIL - clock())  # the protocol is busy with a request
        await events
        answers = []
        while True:
            answer = await run.perform(Sleep(clock() + AHEAD))
            if isinstance(answer, Woke):
                break
            answers.append(answer)
        await run.stop_work()
        return answers

    return run_virtual(main())


def sim_answers(script: Script) -> list[Any]:
    encoder = an_encoder()
    base = encoder.env.now
    # The protocol is busy with a request until BUSY_UNTIL; the scripted history is then set
    # as the driver would have recorded it (the encoder's own loop must not see a shutdown
    # and restart the node under the test).

    def busy() -> Any:
        yield encoder.env.timeout(BUSY_UNTIL)

    run_to_end(encoder, busy())
    work = []
    encoder.push_job, encoder.shutdown_told, encoder.hints = "j1", False, []
    for t, kind, value in script:
        if kind == "phase":
            work.append((base + t, PhaseChanged(value)))
        elif kind == "progress":
            work.append((base + t, Progressed(*value)))
        elif kind == "end":
            work.append((base + t, WORK_DONE))
        elif kind == "fail":
            work.append((base + t, WORK_FAILED))
        elif kind == "push":
            now = encoder.env.now
            encoder.env._now = base + t  # arrived then
            encoder._pushed("j1", Hinted(*value))
            encoder.env._now = now
        else:
            encoder.shutdown_at = base + t
    if not work or not isinstance(work[-1][1], WorkEnded):
        work.append((base + 3600.0, WORK_DONE))
    encoder.work, encoder.work_job = work, "j1"
    answers = []
    while True:
        until = encoder.env.now * encoder.rate + AHEAD
        step = encoder._sleep(until, encoder)
        try:
            next(step)
        except StopIteration as done:
            answers.append(done.value)
            continue
        return answers  # the driver waits: nothing more to deliver (the guard's Woke)


PROGRESS = (50.0, 100.0)
PUSH = (OTHER, "assigned")
SCRIPTS: dict[str, tuple[Script, list[Any]]] = {
    # What both drivers should answer: first come, first delivered; the work's end, once it
    # has come, supersedes its reports still undelivered (nothing needs a report after it).
    "shutdown-then-end": ([(1.0, "shutdown", None), (2.0, "end", None)],
                          [ShutdownRequested(), WorkEnded(True)]),
    "report-then-end": ([(1.0, "progress", PROGRESS), (2.0, "end", None)],
                        [WorkEnded(True)]),
    "shutdown-then-report": ([(1.0, "shutdown", None), (2.0, "progress", PROGRESS)],
                             [ShutdownRequested(), Progressed(*PROGRESS)]),
    "push-then-shutdown": ([(1.0, "push", PUSH), (2.0, "shutdown", None)],
                           [Hinted(*PUSH), ShutdownRequested()]),
    "phase-and-progress-then-push": (
        [(1.0, "phase", "encode"), (1.5, "progress", PROGRESS), (2.0, "push", PUSH)],
        [PhaseChanged("encode"), Progressed(*PROGRESS), Hinted(*PUSH)]),
    "report-push-end": ([(1.0, "progress", PROGRESS), (2.0, "push", PUSH), (3.0, "end", None)],
                        [Hinted(*PUSH), WorkEnded(True)]),
    # A work that fails on its own ends it as a finish does (session 46): first come, first
    # delivered, and its undelivered reports superseded.
    "report-then-fail": ([(1.0, "progress", PROGRESS), (2.0, "fail", None)],
                         [WorkEnded(False)]),
    "shutdown-then-fail": ([(1.0, "shutdown", None), (2.0, "fail", None)],
                           [ShutdownRequested(), WorkEnded(False)]),
    "fail-then-shutdown": ([(1.0, "fail", None), (2.0, "shutdown", None)],
                           [WorkEnded(False), ShutdownRequested()]),
    "report-push-fail": ([(1.0, "progress", PROGRESS), (2.0, "push", PUSH), (3.0, "fail", None)],
                         [Hinted(*PUSH), WorkEnded(False)]),
    # Controls: orders the drivers already agreed on (session 33).
    "push-then-report": ([(1.0, "push", PUSH), (2.0, "progress", PROGRESS)],
                         [Hinted(*PUSH), Progressed(*PROGRESS)]),
    "report-then-push": ([(1.0, "progress", PROGRESS), (2.0, "push", PUSH)],
                         [Progressed(*PROGRESS), Hinted(*PUSH)]),
}


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_both_drivers_answer_the_same_history_alike(name: str) -> None:
    script, expected = SCRIPTS[name]
    guard, sim = _plain(guard_answers(script)), _plain(sim_answers(script))
    assert (guard, sim) == (expected, expected), f"guard {guard}, simulator {sim}"


def _plain(answers: list[Any]) -> list[Any]:
    """The answers with a failed work's detail left out: each driver says why in its own words
    (the guard quotes the exception; the simulator says it simulated the failure)."""
    return [WorkEnded(a.succeeded) if isinstance(a, WorkEnded) else a for a in answers]


def test_the_harness_runs_the_scripted_instants() -> None:
    assert math.isfinite(BUSY_UNTIL) and all(
        t < BUSY_UNTIL for script, _ in SCRIPTS.values() for t, _, _ in script)


def test_production_discards_work_that_ended_after_a_shutdown_request_during_a_read() -> None:
    """What the first script means in production (pinned as it ships; the simulator before
    the fix committed this result): a shutdown requested while a re-check is under way, the
    work ending before the re-check's answer. The guard's queue delivers the request first:
    the protocol cancels work that has already ended and gives the job back; the result is
    discarded (``RESULT_DISCARDED``) and the job is encoded again elsewhere."""
    from verifier import OwnershipGuard
    from verifier.protocol import OutcomeKind

    async def main() -> Any:
        jobs = InMemoryJobs()
        jobs.add("j1")
        ended = asyncio.Event()
        reads = {"during work": 0}
        guard: OwnershipGuard

        class SlowRead(InMemoryTier):
            async def observe(self, job_id: str) -> Any:
                if working.is_set() and not ended.is_set() and reads["during work"] == 0:
                    reads["during work"] += 1
                    await asyncio.sleep(0.5)
                    guard.request_shutdown()  # SIGTERM while the read is under way
                    await ended.wait()  # the work ends before the read's answer
                    await asyncio.sleep(0.5)
                return await super().observe(job_id)

        working = asyncio.Event()

        async def process(job: ClaimedJob) -> Any:
            job.set_phase("encode")
            working.set()
            await asyncio.sleep(15.0)
            job.set_progress(pct=100.0)
            ended.set()
            return {"cid": "bafy-j1"}

        guard = OwnershipGuard(did=A, clients=[SlowRead(Tier.MONITOR, jobs, A, latency=0.2),
                                               InMemoryTier(Tier.GATEWAY, jobs, A)])
        outcome = await guard.run("j1", process)
        return outcome, reads, jobs.commits

    outcome, reads, commits = run_virtual(main())
    assert reads["during work"] == 1
    assert (outcome.kind, outcome.code, commits) == (OutcomeKind.CANCELLED, "SHUTDOWN", [])

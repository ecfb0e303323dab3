"""How the guard's runs begin and end, found by an adversarial review (2026-12-03).

* one guard never runs one job twice at once (both runs would claim with the same DID, and the
  gateway's accept can pass both);
* ``run`` returns only once the work has stopped, even when it is cancelled a second time
  while it waits for that;
* work that ends by a cancellation the guard did not send, or by a ``BaseException``, has
  ended: the protocol hears it and gives the job back, instead of pinging for dead work;
* a run whose give-back got no answer says the job may still be held, whatever path it
  ended on, and a loop that stops says so too.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest

from tests.verifier.test_protocol import COMMUNITY, HARDENED, run, seen, world
from verifier import (
    EncoderLoop,
    GuardMetrics,
    LoopPolicy,
    OutcomeKind,
    OwnershipGuard,
    Policy,
    Tier,
    TierUnavailable,
    TimingModel,
    parse_job,
)
from verifier.protocol import (
    Action,
    Answer,
    Observe,
    Release,
    TierFailed,
    WriteAnswered,
    WriteOutcome,
)
from verifier.testing import InMemoryJobs, InMemoryTier, run_virtual, virtual_time

ME = "did:key:z6MkEncoderA"
TIMING = TimingModel(monitor_lag=5, write_delay=2, recheck_interval=10, reassign_timeout=60)


def _guard(jobs: InMemoryJobs, *, lie: bool = False) -> tuple[OwnershipGuard, InMemoryTier]:
    gateway = InMemoryTier(Tier.GATEWAY, jobs, ME, latency=0.05, lie=lie)
    guard = OwnershipGuard(did=ME, clients=[InMemoryTier(Tier.MONITOR, jobs, ME, latency=0.2),
                                            gateway], policy=Policy.hardened(TIMING))
    return guard, gateway


@virtual_time
async def test_a_job_the_guard_is_running_is_not_run_twice_at_once(caplog) -> None:
    """The second run is refused, said in the log and counted (mutation testing, session 41:
    dropping either passed)."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    guard, _ = _guard(jobs, lie=True)  # the gateway's accept passes both claims
    guard.metrics = GuardMetrics()
    caplog.set_level(logging.WARNING, logger="verifier.guard")
    running, most = 0, 0

    async def process(job: Any) -> dict[str, str]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            job.set_phase("encode")
            await asyncio.sleep(20)
            return {"cid": "bafy"}
        finally:
            running -= 1

    first = asyncio.create_task(guard.run("j1", process))
    await asyncio.sleep(0.01)
    second = await guard.run("j1", process)
    assert (second.kind, second.code) == (OutcomeKind.SKIPPED, "ALREADY_RUNNING")
    # The other run holds the job, not this one: nothing for the loop to wait out or count.
    assert not second.held and not second.given_back and second.retry_after is None
    assert [getattr(r, "event_fields", None) for r in caplog.records
            if getattr(r, "event_code", None) == "ALREADY_RUNNING"] == [{"job_id": "j1"}]
    assert guard.metrics.value("verifier_jobs_total", outcome="skipped",
                               code="ALREADY_RUNNING") == 1
    assert (await first).processed
    assert most == 1 and jobs.commits == [("j1", ME)]
    # Once the first run has ended, the job may be run again (it is finished: skipped).
    again = await guard.run("j1", process)
    assert again.code != "ALREADY_RUNNING"


@virtual_time
async def test_a_second_cancellation_does_not_end_the_run_before_the_work_stopped() -> None:
    jobs = InMemoryJobs()
    jobs.add("j1")
    guard, _ = _guard(jobs)
    started = asyncio.Event()
    stopped_at: list[float] = []

    async def process(job: Any) -> None:
        job.set_phase("encode")
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            # Stopping takes 3 s (killing and reaping a child, say), inside C = 5 s.
            await asyncio.shield(asyncio.sleep(3))
            stopped_at.append(asyncio.get_running_loop().time())

    run = asyncio.create_task(guard.run("j1", process))
    await started.wait()
    run.cancel()
    await asyncio.sleep(0.5)
    run.cancel()  # again, while run() waits for the work to stop
    await asyncio.wait({run})
    assert run.cancelled()
    assert stopped_at and stopped_at[0] <= asyncio.get_running_loop().time()
    assert not guard._runs


def _ending_by(ending: type[BaseException]) -> Any:
    """Work that encodes for 5 s, then ends by raising ``ending``."""
    async def process(job: Any) -> None:
        job.set_phase("encode")
        await asyncio.sleep(5)
        raise ending()

    return process


@virtual_time
async def test_work_that_ends_by_a_cancellation_it_was_not_sent_gives_the_job_back() -> None:
    jobs = InMemoryJobs()
    jobs.add("j1")
    guard, gateway = _guard(jobs)
    # A helper future cancelled by someone else, say.
    outcome = await asyncio.wait_for(guard.run("j1", _ending_by(asyncio.CancelledError)),
                                     timeout=60)
    assert (outcome.kind, outcome.code) == (OutcomeKind.FAILED, "WORK_FAILED")
    assert jobs.docs["j1"].get("assigned_to") is None  # given back, not held for dead work
    assert gateway.calls.count("heartbeat") <= 1


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ failed")


@virtual_time
async def test_work_failing_with_an_unprintable_error_is_reported_as_failed() -> None:
    """A work error whose message cannot be formatted: still WORK_FAILED, the job given back
    and the error kept. Before, formatting its message raised out of the work's task: the
    protocol was never told, pinged the dead work until the lease ran out, and asyncio
    logged "Task exception was never retrieved" (a review, 2026-12-03)."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    guard, gateway = _guard(jobs)
    outcome = await asyncio.wait_for(guard.run("j1", _ending_by(_Unprintable)), timeout=60)
    assert (outcome.kind, outcome.code) == (OutcomeKind.FAILED, "WORK_FAILED")
    assert "_Unprintable" in (outcome.reason or "")
    assert isinstance(outcome.error, _Unprintable)
    assert jobs.docs["j1"].get("assigned_to") is None  # given back, not held for dead work
    assert gateway.calls.count("heartbeat") <= 1


@pytest.mark.parametrize("ending", [SystemExit, KeyboardInterrupt])
def test_work_that_raises_system_exit_gives_the_job_back_then_raises_it(
        ending: type[BaseException]) -> None:
    """Raised inside the work's task, these stop the event loop at once (the job held, nothing
    said); the guard gives the job back first, then raises them from ``run`` (a second review,
    2026-12-03). Like any such exception in a task, it then leaves the event loop: caught
    here, outside it, so that it cannot stop the test session."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    guard, gateway = _guard(jobs)
    with pytest.raises(ending):
        run_virtual(guard.run("j1", _ending_by(ending)))
    assert jobs.docs["j1"].get("assigned_to") is None
    assert gateway.calls.count("release") == 1


# --------------------------------------------------------------- a give-back without answer


@pytest.mark.parametrize(("released", "held"), [(WriteOutcome.UNKNOWN, True),
                                                (WriteOutcome.OK, False),
                                                (WriteOutcome.REFUSED, False)])
def test_an_outcome_says_held_whenever_its_last_give_back_got_no_answer(
        released: WriteOutcome, held: bool) -> None:
    """Not only a shutdown's: a run that gives up (unconfirmed here) and whose release got
    no answer may leave the job ours until the gateway reassigns it."""
    def observe(action: Observe, now: float) -> Answer:
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        return TierFailed(action.tier, "503")  # the claim can never be confirmed

    base = world(observe=observe)

    def respond(action: Action, now: float) -> Answer:
        if isinstance(action, Release):
            return WriteAnswered(released)
        return base(action, now)

    outcome, _, _ = run(HARDENED, COMMUNITY, respond)
    assert (outcome.code, outcome.held) == ("UNCONFIRMED", held)


@virtual_time
async def test_a_loop_that_stops_with_a_job_it_could_not_give_back_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    """Found by an adversarial review (2026-12-03): the stop came while the deciding read was
    under way, the run ended unconfirmed, its release got no answer, and the loop said "no job
    held" (only a shutdown's own give-back counted)."""
    caplog.set_level(logging.INFO)
    jobs = InMemoryJobs()
    jobs.add("j1")
    monitor = InMemoryTier(Tier.MONITOR, jobs, ME, latency=30.0, lag=1000)  # slow and stale
    gateway = InMemoryTier(Tier.GATEWAY, jobs, ME, latency=0.05)
    guard = OwnershipGuard(did=ME, clients=[monitor, gateway], policy=Policy.hardened(TIMING))
    offered = [parse_job(jobs.docs["j1"])]

    async def get_job() -> list[Any]:
        return [offered.pop()] if offered else []

    async def work(job: Any, _offered: Any) -> dict[str, str]:
        return {"cid": "bafy"}

    loop = EncoderLoop(guard, work, offers={"getjob": get_job},
                       policy=LoopPolicy(sources=("getjob",), idle_s=1, jitter=0),
                       rng=random.Random(1))

    gateway.fail_next("release", TierUnavailable("gateway", "503"), times=10)

    async def operator() -> None:
        # The pre-claim read takes 30 s, the claim lands, the settle wait passes (6 s): the
        # stop comes during the slow deciding read.
        await asyncio.sleep(50)
        assert gateway.calls.count("claim") == 1
        loop.stop()

    stopping = asyncio.create_task(operator())
    await loop.run()
    await stopping
    assert jobs.docs["j1"].get("assigned_to") == ME
    assert loop.held == {"j1"}
    stopped = [r for r in caplog.records if getattr(r, "event_code", "") == "LOOP_STOPPED"]
    assert stopped and stopped[-1].levelno == logging.ERROR and "j1" in stopped[-1].getMessage()


@virtual_time
async def test_a_finish_without_answer_leaves_the_job_held() -> None:
    """Found by a second review (2026-12-03): FINISH_UNKNOWN made no give-back, so nothing
    said the job might still be ours."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    guard, gateway = _guard(jobs)
    gateway.fail_next("finish", TierUnavailable("gateway", "503"), times=3)

    async def process(job: Any) -> dict[str, str]:
        job.set_phase("encode")
        await asyncio.sleep(5)
        return {"cid": "bafy"}

    outcome = await guard.run("j1", process)
    assert outcome.code == "FINISH_UNKNOWN" and outcome.held
    assert jobs.docs["j1"].get("assigned_to") == ME  # indeed still ours


@virtual_time
async def test_a_later_run_that_learns_nothing_does_not_clear_held() -> None:
    """Found by a second review (2026-12-03): run 1's give-back got no answer; run 2 of the
    same job (offered again by myJob) failed its pre-claim read, and cleared the entry."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    guard, gateway = _guard(jobs)
    monitor = guard.clients[Tier.MONITOR]
    assert isinstance(monitor, InMemoryTier)
    gateway.fail_next("release", TierUnavailable("gateway", "503"), times=1)
    runs: list[tuple[str, bool]] = []

    async def my_job() -> list[Any]:
        doc = jobs.docs["j1"]
        return [parse_job(doc)] if doc.get("status") != "complete" else []

    async def work(job: Any, _offered: Any) -> dict[str, str]:
        job.set_phase("encode")
        await asyncio.sleep(2)
        raise RuntimeError("ffmpeg crashed")  # run 1: WORK_FAILED, its give-back unanswered

    def on_outcome(outcome: Any) -> None:
        runs.append((outcome.code, outcome.held))
        if len(runs) == 1:
            monitor.fail_next("observe", TierUnavailable(Tier.MONITOR, "503"), times=1)
        else:
            loop.stop()

    loop = EncoderLoop(guard, work, offers={"myjob": my_job}, on_outcome=on_outcome,
                       policy=LoopPolicy(sources=("myjob",), idle_s=1, jitter=0, cooldown_s=5))
    await loop.run()
    assert runs == [("WORK_FAILED", True), ("PRE_CLAIM_FAILED", False)]
    assert jobs.docs["j1"].get("assigned_to") == ME
    assert loop.held == {"j1"}


def _working_on_j1_with_give_backs_unanswered() -> EncoderLoop:
    """A loop that takes j1 and works on it for an hour, whose give-backs get no answer."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    guard, gateway = _guard(jobs)
    gateway.fail_next("release", TierUnavailable("gateway", "503"), times=5)

    async def work(job: Any, _offered: Any) -> None:
        job.set_phase("encode")
        await asyncio.sleep(3600)

    offered = [parse_job(jobs.docs["j1"])]

    async def get_job() -> list[Any]:
        return [offered.pop()] if offered else []

    loop = EncoderLoop(guard, work, offers={"getjob": get_job},
                       policy=LoopPolicy(sources=("getjob",), idle_s=1, jitter=0))
    return loop


def test_the_held_jobs_can_be_read_after_the_loop_has_ended() -> None:
    """``loop.held`` after ``asyncio.run(loop.run())``: no running event loop (a second review
    found it raised RuntimeError there)."""
    loop = _working_on_j1_with_give_backs_unanswered()

    async def main() -> None:
        running = asyncio.create_task(loop.run())
        await asyncio.sleep(30)  # working by now
        loop.stop()
        await running

    run_virtual(main())
    assert loop.held == {"j1"}


@virtual_time
async def test_a_job_is_held_until_the_reassignment_timeout_after_its_unanswered_give_back(
) -> None:
    """After T the gateway takes the job back itself, so it is no longer ours to report. A
    mutation run (session 37) measured the horizon from time zero instead of from the give-back
    and no test saw it: every test read ``held`` right after the stop."""
    loop = _working_on_j1_with_give_backs_unanswered()
    running = asyncio.create_task(loop.run())
    await asyncio.sleep(100)  # working, past T = 60 s from the start
    loop.stop()
    await running
    assert loop.held == {"j1"}
    await asyncio.sleep(TIMING.reassign_timeout - 10)
    assert loop.held == {"j1"}  # T has not passed since the give-back
    await asyncio.sleep(20)
    assert loop.held == set()


@pytest.mark.parametrize("operation", ["observe", "heartbeat"])
@virtual_time
async def test_a_client_that_cancels_its_own_call_gave_no_answer_from_its_tier(operation):
    """A client's own CancelledError is not this run being cancelled: the read failed, or the
    write's outcome is unknown, and the detail names the tier (mutation testing, session 41:
    naming it from the wrong field passed: "?" for a read, an AttributeError for a write)."""
    from verifier._guard import _Run
    from verifier.protocol import Heartbeat, Observe, TierFailed, WriteAnswered, WriteOutcome

    jobs = InMemoryJobs()
    jobs.add("j1", assigned_to=ME, status="running")
    guard, gateway = _guard(jobs)
    monitor = guard.clients[Tier.MONITOR]
    assert isinstance(monitor, InMemoryTier)
    client = monitor if operation == "observe" else gateway

    async def cancels_itself(*args: Any, **kwargs: Any) -> Any:
        raise asyncio.CancelledError

    setattr(client, operation, cancels_itself)
    run = _Run(guard, "j1", _never, asyncio.get_running_loop().time)
    if operation == "observe":
        read = await run.perform(Observe(Tier.MONITOR, purpose="recheck"))
        assert read == TierFailed(Tier.MONITOR, "monitor: the client cancelled its call")
    else:
        write = await run.perform(Heartbeat(Tier.GATEWAY, "t1"))
        assert write == WriteAnswered(WriteOutcome.UNKNOWN, token=None,
                                      detail="gateway: the client cancelled its call")


async def _never(job: Any) -> None:
    raise AssertionError("not started in this test")


@virtual_time
async def test_uninterrupted_ends_its_clean_up_then_raises_the_cancellations_it_absorbed():
    """A stop must run to its end however often the caller is cancelled meanwhile, and the
    cancellation is raised after it; a clean-up's own error is raised, never swallowed
    (mutation testing, session 41: forgetting the cancellation, or the clean-up's error,
    passed every guard test)."""
    from verifier._guard import uninterrupted

    ended: list[float] = []
    loop = asyncio.get_running_loop()

    async def clean_up() -> None:
        await asyncio.sleep(5)
        ended.append(loop.time())

    task = asyncio.create_task(uninterrupted(clean_up()))
    for _ in range(2):
        await asyncio.sleep(1)
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended == [5.0]

    await uninterrupted(asyncio.sleep(1))  # not cancelled: returns

    async def broken() -> None:
        await asyncio.sleep(1)
        raise OSError("the clean-up failed")

    with pytest.raises(OSError, match="clean-up failed"):
        await uninterrupted(broken())
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    failed.set_exception(OSError("failed before it was awaited"))
    with pytest.raises(OSError, match="before it was awaited"):
        await uninterrupted(failed)


def test_a_run_asked_twice_to_shut_down_is_told_once():
    from verifier._guard import _Run
    from verifier.protocol import ShutdownRequested

    jobs = InMemoryJobs()
    guard, _ = _guard(jobs)
    run = _Run(guard, "j1", _never, lambda: 0.0)
    run.request_shutdown()
    run.request_shutdown()
    assert run.events.qsize() == 1 and isinstance(run.events.get_nowait(), ShutdownRequested)


def test_a_call_abandoned_at_its_deadline_is_awaited_and_its_late_error_retrieved(caplog):
    """A read that hangs past the lease end is abandoned (cancelled, not waited for), and the
    run still ends only once it has; should its client raise as it winds down, that error is
    retrieved, not left for asyncio to report as "never retrieved" when the task is collected
    (mutation testing, session 41: dropping the callback that does both passed)."""
    import gc

    jobs = InMemoryJobs()
    jobs.add("j1")
    guard, _gateway = _guard(jobs)
    monitor = guard.clients[Tier.MONITOR]
    assert isinstance(monitor, InMemoryTier)
    wound_down: list[float] = []
    hanging = [False]
    observe = monitor.observe

    async def hangs_then_fails(job_id: str) -> Any:
        if not hanging[0]:
            return await observe(job_id)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(2)  # winds down slowly, then fails
            wound_down.append(asyncio.get_running_loop().time())
            raise RuntimeError("connection reset while closing") from None

    monitor.observe = hangs_then_fails  # type: ignore[method-assign]

    async def process(job: Any) -> None:
        job.set_phase("encode")
        hanging[0] = True
        await asyncio.sleep(3600)

    async def main() -> tuple[str, float]:
        outcome = await guard.run("j1", process)
        return outcome.code, asyncio.get_running_loop().time()

    caplog.set_level(logging.ERROR, logger="asyncio")
    code, returned = run_virtual(main())
    gc.collect()
    assert code == "LEASE_EXPIRED"
    assert wound_down and returned >= wound_down[0], "the run ended before its abandoned call"
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.records

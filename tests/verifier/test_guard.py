"""The asyncio driver with in-memory tiers, under virtual time: no real sleeping."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import Any

import pytest

from verifier import (
    ClaimedJob,
    ClaimRefused,
    InvalidInputError,
    OutcomeKind,
    OwnershipGuard,
    Policy,
    Tier,
    TierRateLimited,
    TierTimeout,
    TierUnavailable,
    TimingModel,
)
from verifier._guard import _Run
from verifier.protocol import (
    Heartbeat,
    Observe,
    Observed,
    PhaseChanged,
    Progressed,
    Sleep,
    StartWork,
    TierFailed,
    Woke,
    WriteAnswered,
    WriteOutcome,
)
from verifier.testing import InMemoryJobs, InMemoryTier, virtual_time

A = "did:key:z6MkEncoderA"
B = "did:key:z6MkEncoderB"
TIMING = TimingModel(monitor_lag=5, write_delay=2, recheck_interval=10, reassign_timeout=60)


def community(jobs: InMemoryJobs, did: str, *, lie: bool = False, lag: float = 0.0):
    return [
        InMemoryTier(Tier.MONITOR, jobs, did, latency=0.2, lag=lag),
        InMemoryTier(Tier.GATEWAY, jobs, did, latency=0.05, lie=lie),
    ]


def encode(seconds: float = 30.0, log: list[str] | None = None):
    async def process(job: ClaimedJob):
        for phase in ("download", "encode", "upload"):
            job.set_phase(phase)
            if log is not None:
                log.append(f"{job.job_id}:{phase}")
            await asyncio.sleep(seconds / 3)
            job.set_progress(pct=50)
        return {"cid": f"bafy-{job.job_id}"}

    return process


@virtual_time
async def test_hardened_processes_a_job_it_owns_and_commits_once(caplog):
    caplog.set_level(logging.INFO, logger="verifier.guard")
    jobs = InMemoryJobs()
    jobs.add("j1")
    clients = community(jobs, A, lag=3.0)
    outcome = await OwnershipGuard(did=A, clients=clients, policy=Policy.hardened(TIMING)).run(
        "j1", encode()
    )
    assert outcome.kind is OutcomeKind.PROCESSED and outcome.result == {"cid": "bafy-j1"}
    assert jobs.commits == [("j1", A)]
    assert jobs.docs["j1"]["status"] == "complete"
    codes = [r.event_code for r in caplog.records if hasattr(r, "event_code")]
    for code in ("PRE_CLAIM_CHECK", "TIER_2_VERIFICATION", "MONITOR_CONFIRMED", "FINISHED"):
        assert code in codes
    assert clients[1].calls.count("heartbeat") >= 2, "pings in every phase"


@virtual_time
async def test_documented_calls_its_own_job_stolen_when_the_monitor_lags():
    jobs = InMemoryJobs()
    jobs.add("j1")
    guard = OwnershipGuard(did=A, clients=community(jobs, A, lag=3.0),
                           policy=Policy.documented(TIMING))
    started: list[str] = []
    outcome = await guard.run("j1", encode(log=started))
    assert outcome.kind is OutcomeKind.SKIPPED and not started  # defect 3, reproduced
    assert jobs.docs["j1"]["assigned_to"] == A  # ...and the job is left assigned, unworked


@pytest.mark.parametrize("policy", [Policy.hardened(TIMING), Policy.documented(TIMING)])
@virtual_time
async def test_a_lying_gateway_double_accept_gives_the_job_to_one_encoder(policy):
    jobs = InMemoryJobs()
    jobs.add("j1")
    started: list[str] = []
    guards = [
        OwnershipGuard(did=did, clients=community(jobs, did, lie=True), policy=policy)
        for did in (A, B)
    ]
    outcomes = await asyncio.gather(*(g.run("j1", encode(log=started)) for g in guards))
    kinds = sorted(o.kind.value for o in outcomes)
    # With instant last-writer-wins writes, both chains see the final owner here; the
    # documented chain's failure needs a write delay, which the simulator explores.
    assert kinds == ["processed", "skipped"]
    assert len(jobs.commits) == 1
    assert started.count("j1:download") == 1


@virtual_time
async def test_ownership_loss_during_work_cancels_the_running_process():
    jobs = InMemoryJobs()
    jobs.add("j1")
    cancelled = asyncio.Event()

    async def process(job: ClaimedJob):
        job.set_phase("encode")
        await asyncio.sleep(5)
        jobs.update("j1", assigned_to=B)  # the gateway reassigns the job mid-encode
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {"cid": "never"}

    guard = OwnershipGuard(did=A, clients=community(jobs, A), policy=Policy.hardened(TIMING))
    outcome = await guard.run("j1", process)
    assert outcome.kind is OutcomeKind.CANCELLED
    assert outcome.code == "MONITOR_THEFT_DETECTED"
    assert cancelled.is_set()
    assert jobs.commits == []


@virtual_time
async def test_without_cancel_the_work_runs_on_but_the_fenced_finish_is_refused():
    jobs = InMemoryJobs()
    jobs.add("j1")

    async def process(job: ClaimedJob):
        await asyncio.sleep(5)
        jobs.update("j1", assigned_to=B)
        await asyncio.sleep(30)
        return {"cid": "late"}

    guard = OwnershipGuard(did=A, clients=community(jobs, A),
                           policy=Policy.hardened(TIMING).without("cancel"))
    outcome = await guard.run("j1", process)
    assert outcome.kind is OutcomeKind.CANCELLED and outcome.code == "FINISH_REFUSED"
    assert jobs.commits == []  # S3 held by the fence alone


@virtual_time
async def test_infrastructure_node_claims_atomically_and_fences_on_its_token():
    jobs = InMemoryJobs()
    jobs.add("j1")
    db = InMemoryTier(Tier.DATABASE, jobs, A, latency=0.005)
    gateway = InMemoryTier(Tier.GATEWAY, jobs, A)
    outcome = await OwnershipGuard(did=A, clients=[db, gateway],
                                   policy=Policy.hardened(TIMING)).run("j1", encode())
    assert outcome.processed
    assert db.calls[:2] == ["observe", "claim"] and "finish" in db.calls
    assert gateway.calls == []


@virtual_time
async def test_unanswered_verification_never_starts_work_and_gives_the_job_back():
    jobs = InMemoryJobs()
    jobs.add("j1")
    monitor, gateway = community(jobs, A)
    monitor.fail_next("observe", TierTimeout("monitor", "no answer"), times=1000)
    # The pre-claim read fails too: hardened skips without claiming (defect 1 claimed anyway).
    started: list[str] = []
    outcome = await OwnershipGuard(did=A, clients=[monitor, gateway],
                                   policy=Policy.hardened(TIMING)).run("j1", encode(log=started))
    assert outcome.kind is OutcomeKind.SKIPPED and outcome.code == "PRE_CLAIM_FAILED"
    assert not started and "claim" not in gateway.calls


@virtual_time
async def test_a_monitor_that_stops_answering_after_the_claim_leads_to_release():
    jobs = InMemoryJobs()
    jobs.add("j1")
    monitor, gateway = community(jobs, A)
    started: list[str] = []
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=Policy.hardened(TIMING))

    async def run():
        # Let the pre-claim answer, then break the monitor for good.
        while "claim" not in gateway.calls:  # noqa: ASYNC110 (virtual time)
            await asyncio.sleep(0.01)
        monitor.fail_next("observe", TierTimeout("monitor", "no answer"), times=1000)

    outcome, _ = await asyncio.gather(guard.run("j1", encode(log=started)), run())
    assert outcome.code == "UNCONFIRMED" and not started
    assert jobs.docs["j1"]["status"] == "queued" and "assigned_to" not in jobs.docs["j1"]


@virtual_time
async def test_work_failure_is_reported_and_the_job_released_as_failed():
    jobs = InMemoryJobs()
    jobs.add("j1")

    async def process(job: ClaimedJob):
        await asyncio.sleep(1)
        raise RuntimeError("ffmpeg exited 1")

    outcome = await OwnershipGuard(did=A, clients=community(jobs, A),
                                   policy=Policy.hardened(TIMING)).run("j1", process)
    assert outcome.kind is OutcomeKind.FAILED and isinstance(outcome.error, RuntimeError)
    assert jobs.docs["j1"]["attempt_count"] == 1 and jobs.docs["j1"]["status"] == "queued"


@virtual_time
async def test_cancelling_the_guard_cancels_the_work():
    jobs = InMemoryJobs()
    jobs.add("j1")
    stopped = asyncio.Event()

    async def process(job: ClaimedJob):
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    guard = OwnershipGuard(did=A, clients=community(jobs, A), policy=Policy.hardened(TIMING))
    task = asyncio.create_task(guard.run("j1", process))
    await asyncio.sleep(100)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stopped.is_set()


@pytest.mark.parametrize("bad", ["", None, 5, {"$ne": None}, "x" * 300, "a\nb"])
@virtual_time
async def test_hostile_job_ids_are_rejected_before_any_call(bad):
    from verifier import InvalidInputError

    jobs = InMemoryJobs()
    clients = community(jobs, A)
    with pytest.raises(InvalidInputError):
        await OwnershipGuard(did=A, clients=clients).run(bad, encode())
    assert all(c.calls == [] for c in clients)


# --------------------------------------------------------------------------- the lease watchdog
#
# A short timing model, so that virtual runs stay short. Lease end = claim decision + T − (ε + P
# + C) = claim + 12 − 1.1; the tests below keep the lease from being renewed (pings that time
# out, or gateway pings whose proving re-check hangs), so it runs out there.
SHORT = TimingModel(monitor_lag=1, write_delay=0.5, pause=0.5, clock_drift=0.1,
                    recheck_interval=2, cancel_latency=0.5, reassign_timeout=12,
                    confirm_timeout=3, retry_interval=0.5)
LEASE = SHORT.reassign_timeout - (SHORT.clock_drift + SHORT.pause + SHORT.cancel_latency)
DEADLINE_DETAIL = "deadline: lease end reached"

Timeline = list[tuple[float, str]]


def _now() -> float:
    return asyncio.get_running_loop().time()


class Recorded:
    """A tier client over an :class:`InMemoryTier` that stamps every call on a shared timeline.

    ``reads`` switches its ``observe``: ``answer`` (normally), ``hang`` (never answers; ends
    only when cancelled) or ``hang-stubbornly`` (never answers, and even ignores its
    cancellation until ``unhang`` is set).
    """

    def __init__(self, inner: InMemoryTier, timeline: Timeline) -> None:
        self.inner = inner
        self.tier = inner.tier
        self.timeline = timeline
        self.reads = "answer"
        self.unhang = asyncio.Event()

    def mark(self, what: str) -> None:
        self.timeline.append((_now(), f"{self.tier.value}.{what}"))

    async def observe(self, job_id: str):
        self.mark("observe")
        if self.reads.startswith("hang"):
            try:
                await self.unhang.wait()
            except asyncio.CancelledError:
                self.mark("observe-cancelled")
                if self.reads == "hang-stubbornly":
                    await self.unhang.wait()
                    self.mark("observe-ended")
                raise
            raise AssertionError("a hung read never answers")
        seen = await self.inner.observe(job_id)
        self.mark("observe-answered")
        return seen

    async def claim(self, job_id: str, *, conditional: bool = True):
        self.mark("claim")
        return await self.inner.claim(job_id, conditional=conditional)

    async def heartbeat(self, job_id, token, progress):
        self.mark("heartbeat")
        await self.inner.heartbeat(job_id, token, progress)

    async def finish(self, job_id, token, result, *, fenced: bool = True):
        self.mark("finish")
        await self.inner.finish(job_id, token, result, fenced=fenced)

    async def release(self, job_id, token, reason, *, failed):
        self.mark("release")
        await self.inner.release(job_id, token, reason, failed=failed)


def gateway_claimed(jobs: InMemoryJobs, timeline: Timeline) -> tuple[Recorded, Recorded]:
    """A community node: claims through the gateway (whose ping OKs prove nothing), confirms
    through the monitor."""
    monitor = Recorded(InMemoryTier(Tier.MONITOR, jobs, A, latency=0.2), timeline)
    gateway = Recorded(InMemoryTier(Tier.GATEWAY, jobs, A, latency=0.05), timeline)
    return monitor, gateway


def work(timeline: Timeline, *, on_start=None, stopping: float = 0.0, swallow: bool = False):
    """Work that runs for an hour unless cancelled; cancelled, it goes on "stopping" (killing
    its encoder, say) for ``stopping`` seconds, then exits (re-raising, or returning)."""

    async def process(job: ClaimedJob):
        job.set_phase("encode")
        timeline.append((_now(), "work-started"))
        if on_start is not None:
            on_start()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            timeline.append((_now(), "work-cancelled"))
            if stopping:
                await asyncio.sleep(stopping)
            timeline.append((_now(), "work-stopped"))
            if not swallow:
                raise
        return {"cid": "late"}

    return process


def order(timeline: Timeline, label: str) -> int:
    """Where ``label`` first happened on the timeline."""
    for i, (_, what) in enumerate(timeline):
        if what == label:
            return i
    raise AssertionError(f"{label!r} has not happened: {timeline}")


def at(timeline: Timeline, label: str) -> float:
    """When ``label`` first happened."""
    return timeline[order(timeline, label)][0]


def no_task_left_behind() -> None:
    assert asyncio.all_tasks() == {asyncio.current_task()}, asyncio.all_tasks()


def test_the_short_timing_model_is_consistent():
    assert SHORT.problems() == []
    assert round(LEASE, 9) == 10.9  # claim + 12 − (0.1 + 0.5 + 0.5)


@pytest.mark.parametrize("swallow", [False, True], ids=["re-raises", "returns"])
@virtual_time
async def test_a_slow_stop_is_awaited_before_the_release_and_the_outcome(caplog, swallow):
    """CancelWork is answered once the work has *really* stopped, even past C: the release
    that follows a lease expiry, and the outcome, come only after the stop (S2)."""
    caplog.set_level(logging.INFO, logger="verifier.guard")
    timeline: Timeline = []
    jobs = InMemoryJobs()
    jobs.add("j1")
    # An infrastructure node: claims through the database, whose heartbeat OK would renew the
    # lease directly; here every heartbeat times out, so the lease runs out at claim + budget.
    database = Recorded(InMemoryTier(Tier.DATABASE, jobs, A, latency=0.05), timeline)
    gateway = Recorded(InMemoryTier(Tier.GATEWAY, jobs, A), timeline)

    def break_the_pings() -> None:
        database.inner.fail_next("heartbeat", TierTimeout("database", "no answer"), times=1000)

    stopping = 4 * SHORT.cancel_latency  # far longer than C: outside the model, but it happens
    guard = OwnershipGuard(did=A, clients=[database, gateway], policy=Policy.hardened(SHORT))
    outcome = await guard.run(
        "j1", work(timeline, on_start=break_the_pings, stopping=stopping, swallow=swallow)
    )
    timeline.append((_now(), "outcome"))

    assert outcome.kind is OutcomeKind.CANCELLED and outcome.code == "LEASE_EXPIRED"
    assert outcome.result is None and jobs.commits == []
    lease_end = at(timeline, "database.claim") + LEASE
    assert at(timeline, "work-cancelled") == pytest.approx(lease_end)
    stopped = at(timeline, "work-stopped")  # fails if the outcome came back before the stop
    assert stopped == pytest.approx(lease_end + stopping)
    # The release and the outcome: after the stop, in time and in order.
    assert at(timeline, "database.release") >= stopped
    assert at(timeline, "outcome") >= stopped
    assert order(timeline, "work-stopped") < order(timeline, "database.release")
    assert order(timeline, "database.release") < order(timeline, "outcome")
    assert jobs.docs["j1"]["status"] == "queued"  # released
    codes = [r.event_code for r in caplog.records if hasattr(r, "event_code")]
    assert "WORK_STOP_SLOW" in codes and "LEASE_EXPIRED" in codes
    no_task_left_behind()


class _StopSeenByTheLog(logging.Handler):
    """A log sink that notes, for each warning or error the guard writes, whether the work had
    already stopped: a sink may block (stderr undrained), and nothing else runs then."""

    def __init__(self, timeline: Timeline) -> None:
        super().__init__(logging.WARNING)
        self.timeline = timeline
        self.seen: list[tuple[str, bool]] = []

    def emit(self, record: logging.LogRecord) -> None:
        stopped = any(what == "work-stopped" for _, what in self.timeline)
        self.seen.append((getattr(record, "event_code", "?"), stopped))


@pytest.mark.parametrize("lost", ["pings-fail", "recheck-hangs"])
@virtual_time
async def test_the_work_has_stopped_before_the_abort_is_logged(lost):
    """A blocking log sink cannot delay the cancel: when the lease runs out (unproven pings, or
    a re-check still hanging at the lease end), the work has stopped before the first line
    about it is written (TIER_DEADLINE, LEASE_EXPIRED, ABORTING). Logging first, a stalled
    stderr kept the work running past the lease for as long as it stalled."""
    timeline: Timeline = []
    jobs = InMemoryJobs()
    jobs.add("j1")
    monitor, gateway = gateway_claimed(jobs, timeline)

    def lose() -> None:
        if lost == "recheck-hangs":
            monitor.reads = "hang"
        else:
            gateway.inner.fail_next("heartbeat", TierTimeout("gateway", "no answer"), times=1000)

    sink = _StopSeenByTheLog(timeline)
    logger = logging.getLogger("verifier.guard")
    logger.addHandler(sink)
    try:
        guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=Policy.hardened(SHORT))
        outcome = await guard.run("j1", work(timeline, on_start=lose))
    finally:
        logger.removeHandler(sink)
    assert outcome.kind is OutcomeKind.CANCELLED and outcome.code == "LEASE_EXPIRED"
    about_the_loss = [(code, told) for code, told in sink.seen
                      if code in ("TIER_DEADLINE", "LEASE_EXPIRED", "ABORTING")]
    expected = {"LEASE_EXPIRED", "ABORTING"} | ({"TIER_DEADLINE"} if lost == "recheck-hangs"
                                                else set())
    assert {code for code, _ in about_the_loss} >= expected
    assert all(stopped for _, stopped in about_the_loss), sink.seen


@pytest.mark.parametrize("client", ["hang", "hang-stubbornly"])
@virtual_time
async def test_a_hung_recheck_cannot_keep_the_work_running_past_the_lease(caplog, client):
    """The watchdog: the re-check never returns, yet the work is cancelled at the lease end
    (claim decision + T − (ε + P + C)), and the hung call is cancelled and reaped. The
    stubborn client even ignores its cancellation: the answer still comes at the deadline,
    and the run waits for the call to end before returning (no task outlives it)."""
    caplog.set_level(logging.INFO, logger="verifier.guard")
    timeline: Timeline = []
    jobs = InMemoryJobs()
    jobs.add("j1")
    monitor, gateway = gateway_claimed(jobs, timeline)

    def hang_the_monitor() -> None:
        monitor.reads = client

    let_go_at = 100.0  # when the stubborn call is finally let go of (a plain hang: never)

    async def let_go() -> None:
        await asyncio.sleep(let_go_at)
        monitor.unhang.set()

    helpers = [asyncio.create_task(let_go())] if client == "hang-stubbornly" else []
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=Policy.hardened(SHORT))
    try:
        outcome = await asyncio.wait_for(
            guard.run("j1", work(timeline, on_start=hang_the_monitor)), timeout=2 * let_go_at
        )
    except TimeoutError:
        pytest.fail(f"the guard never answered the hung re-check: {timeline}")
    timeline.append((_now(), "outcome"))
    await asyncio.gather(*helpers)

    assert outcome.kind is OutcomeKind.CANCELLED and outcome.code == "LEASE_EXPIRED"
    # The claim goes out the instant the protocol decides it (no time passes in between).
    lease_end = at(timeline, "gateway.claim") + LEASE
    hung_since = [t for t, what in timeline if what == "monitor.observe"][-1]
    assert hung_since < lease_end - SHORT.recheck_interval  # the re-check hung for a while
    assert "monitor.observe-answered" not in [w for t, w in timeline if t >= hung_since]
    assert at(timeline, "work-cancelled") == pytest.approx(lease_end, abs=1e-9)
    assert at(timeline, "monitor.observe-cancelled") == pytest.approx(lease_end, abs=1e-9)
    assert order(timeline, "work-stopped") < order(timeline, "gateway.release")
    codes = [r.event_code for r in caplog.records if hasattr(r, "event_code")]
    assert "TIER_DEADLINE" in codes and "LEASE_EXPIRED" in codes
    if client == "hang-stubbornly":
        # The call went on after the work was cancelled; the run waited for it.
        assert order(timeline, "work-cancelled") < order(timeline, "monitor.observe-ended")
        assert at(timeline, "monitor.observe-ended") == pytest.approx(let_go_at)
        assert at(timeline, "outcome") == pytest.approx(let_go_at)
        assert "TIER_CALL_STUCK" in codes
    else:  # once the release (0.05 s through the gateway) has been answered
        assert at(timeline, "outcome") == pytest.approx(at(timeline, "gateway.release") + 0.05)
        assert at(timeline, "gateway.release") == pytest.approx(lease_end)
    no_task_left_behind()


@pytest.mark.parametrize("late_by", [0.0, 3.0])
@virtual_time
async def test_a_deadline_already_past_is_answered_at_once_without_calling_the_tier(
        caplog, late_by):
    """An action handed over at or after its deadline (the driver was paused between the
    protocol's decision and the call, say): answered at once, and the tier is not called;
    each such answer is logged (an operator must see why a re-check "failed")."""
    caplog.set_level(logging.INFO, logger="verifier.guard")
    timeline: Timeline = []
    jobs = InMemoryJobs()
    jobs.add("j1", assigned_to=A, status="running")
    monitor, gateway = gateway_claimed(jobs, timeline)
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=Policy.hardened(SHORT))
    await asyncio.sleep(50)
    run = _Run(guard, "j1", work(timeline), _now)
    deadline = _now() - late_by

    answer = await run.perform(Observe(Tier.MONITOR, "recheck", deadline=deadline))
    assert answer == TierFailed(Tier.MONITOR, DEADLINE_DETAIL)
    answer = await run.perform(Heartbeat(Tier.GATEWAY, None, deadline=deadline))
    assert answer == WriteAnswered(WriteOutcome.UNKNOWN, detail=DEADLINE_DETAIL)
    assert timeline == []  # neither tier was called
    assert _now() == 50  # ...and the answers came at once
    run.log_held_notes()  # what ``drive`` does once the next action is under way
    missed = [r.getMessage() for r in caplog.records
              if getattr(r, "event_code", None) == "TIER_DEADLINE"]
    assert len(missed) == 2 and all("not called" in m for m in missed), missed
    no_task_left_behind()


@virtual_time
async def test_a_tier_call_goes_with_the_run_when_the_run_is_cancelled():
    """The run is cancelled (its caller stops) while a tier call with a deadline is under way:
    the call is cancelled with it, at once, not left to run (and maybe send a ping after the
    job has been given back) until its deadline or its client's timeout."""
    timeline: Timeline = []
    jobs = InMemoryJobs()
    jobs.add("j1", assigned_to=A, status="running")
    monitor, gateway = gateway_claimed(jobs, timeline)
    monitor.reads = "hang"
    run = _Run(OwnershipGuard(did=A, clients=[monitor, gateway]), "j1", work(timeline), _now)
    call = asyncio.create_task(run.perform(Observe(Tier.MONITOR, "recheck", deadline=30.0)))
    await asyncio.sleep(1.0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.sleep(0)  # the cancelled call's own clean-up step
    assert at(timeline, "monitor.observe-cancelled") == pytest.approx(1.0)
    no_task_left_behind()


@pytest.mark.parametrize("swallow", [False, True], ids=["re-raises", "returns"])
@virtual_time
async def test_work_is_cancelled_once_however_often_its_stop_is_awaited(swallow):
    """Two stops of slow-stopping work (the protocol's cancel, then the run's own clean-up
    after a second cancellation, say): the work gets one ``CancelledError``. A second one
    would interrupt its clean-up (killing and reaping an encoder child) and leave that child
    running unseen; both stops return only once the work has really stopped."""
    timeline: Timeline = []
    jobs = InMemoryJobs()
    jobs.add("j1", assigned_to=A, status="running")
    monitor, gateway = gateway_claimed(jobs, timeline)
    stopping = 4 * SHORT.cancel_latency
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=Policy.hardened(SHORT))
    run = _Run(guard, "j1", work(timeline, stopping=stopping, swallow=swallow), _now)
    await run.perform(StartWork())
    await asyncio.sleep(1.0)
    first = asyncio.create_task(run.stop_work())
    await asyncio.sleep(2 * SHORT.cancel_latency)  # past C: the first stop is still waiting
    second = asyncio.create_task(run.stop_work())
    await asyncio.gather(first, second)
    assert [what for _, what in timeline if what.startswith("work-")] == [
        "work-started", "work-cancelled", "work-stopped"]
    assert at(timeline, "work-stopped") == pytest.approx(1.0 + stopping)  # not cut short
    assert _now() == pytest.approx(1.0 + stopping)  # neither stop returned before
    assert run.error is None  # a cancellation is not an error
    no_task_left_behind()


@virtual_time
async def test_an_error_raised_while_the_work_stops_is_kept_for_the_outcome():
    """Work whose clean-up fails (its encoder child could not be killed, say): the error is
    the run's, reported with its outcome, not dropped with the cancellation."""
    timeline: Timeline = []
    jobs = InMemoryJobs()
    jobs.add("j1", assigned_to=A, status="running")
    monitor, gateway = gateway_claimed(jobs, timeline)
    failure = RuntimeError("could not kill the encoder")

    async def process(job: ClaimedJob):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise failure from None

    run = _Run(OwnershipGuard(did=A, clients=[monitor, gateway]), "j1", process, _now)
    await run.perform(StartWork())
    await asyncio.sleep(1.0)
    await run.stop_work()
    assert run.error is failure
    no_task_left_behind()


@virtual_time
async def test_a_deadline_bounds_a_slow_call_and_spares_a_prompt_one():
    timeline: Timeline = []
    jobs = InMemoryJobs()
    jobs.add("j1", assigned_to=A, status="running")
    monitor, gateway = gateway_claimed(jobs, timeline)  # the monitor answers in 0.2 s
    run = _Run(OwnershipGuard(did=A, clients=[monitor, gateway]), "j1", work(timeline), _now)

    answer = await run.perform(Observe(Tier.MONITOR, "recheck", deadline=_now() + 0.3))
    assert isinstance(answer, Observed) and answer.observation.owner == A
    assert _now() == pytest.approx(0.2)

    deadline = _now() + 0.1  # shorter than the monitor takes
    answer = await run.perform(Observe(Tier.MONITOR, "recheck", deadline=deadline))
    assert answer == TierFailed(Tier.MONITOR, DEADLINE_DETAIL)
    assert _now() >= deadline and _now() == pytest.approx(deadline)  # at it, not before
    assert timeline[-1][1] == "monitor.observe"  # called, never answered
    await run.reap_abandoned()
    no_task_left_behind()

    answer = await run.perform(Heartbeat(Tier.GATEWAY, None, deadline=_now() + 1))
    assert answer == WriteAnswered(WriteOutcome.OK)


@virtual_time
async def test_the_deadline_is_judged_on_the_guards_own_clock():
    """A coarse guard clock (quarter-second ticks): asyncio's timer, armed for the time left,
    comes when the guard's clock still reads before the deadline; the answer must wait for it."""
    timeline: Timeline = []
    jobs = InMemoryJobs()
    jobs.add("j1", assigned_to=A, status="running")
    monitor, gateway = gateway_claimed(jobs, timeline)
    monitor.reads = "hang"

    def coarse() -> float:
        return math.floor(_now() * 4) / 4

    guard = OwnershipGuard(did=A, clients=[monitor, gateway], clock=coarse)
    run = _Run(guard, "j1", work(timeline), coarse)
    deadline = coarse() + 1.1

    answer = await run.perform(Observe(Tier.MONITOR, "recheck", deadline=deadline))
    assert answer == TierFailed(Tier.MONITOR, DEADLINE_DETAIL)
    assert coarse() >= deadline, "answered before the guard's clock reached the deadline"
    assert _now() < deadline + 0.25
    await run.reap_abandoned()
    assert [what for _, what in timeline] == ["monitor.observe", "monitor.observe-cancelled"]
    no_task_left_behind()


@virtual_time
async def test_a_wait_is_over_only_when_the_guards_clock_says_so():
    """The same coarse clock for a protocol ``Sleep`` (the settle wait, a ping's or a read's
    due time): the protocol takes ``Woke`` for "now is at least ``until``", so an early timer
    must not answer it. Before the fix the deciding read could leave before the settle end, and
    a heartbeat be stamped as decided after it was sent (an adversarial review, 2026-12-02)."""
    jobs = InMemoryJobs()
    jobs.add("j1", assigned_to=A, status="running")

    def coarse() -> float:
        return math.floor(_now() * 4) / 4

    guard = OwnershipGuard(did=A, clients=community(jobs, A), clock=coarse)
    run = _Run(guard, "j1", work([]), coarse)
    await asyncio.sleep(50.1)
    for ahead in (0.3, 1.1, 0.25):
        until = coarse() + ahead
        answer = await run.perform(Sleep(until))
        assert isinstance(answer, Woke)
        assert coarse() >= until, f"woken at {coarse()} (guard clock) for {until}"
        assert _now() < until + 0.25
    await asyncio.sleep(0)  # the cancelled event getter of the last wait finishes
    no_task_left_behind()


@virtual_time
async def test_a_wait_less_than_a_microsecond_short_is_not_over():
    """A remainder below the timer's rounding floor (1 µs) was answered ``Woke`` at once: up to
    1 µs before ``until``, which the protocol then took for ``until`` itself (a review,
    2026-12-05). The wait now arms its timer for at least that floor and answers only once
    the guard's clock has reached ``until``."""
    jobs = InMemoryJobs()
    jobs.add("j1", assigned_to=A, status="running")
    guard = OwnershipGuard(did=A, clients=community(jobs, A), clock=_now)
    run = _Run(guard, "j1", work([]), _now)
    await asyncio.sleep(10.0)
    for short in (5e-7, 1e-6, 1e-9):
        until = _now() + short
        answer = await run.perform(Sleep(until))
        assert isinstance(answer, Woke)
        assert _now() >= until, f"woken {until - _now():.1e} s before {until}"
    await asyncio.sleep(0)
    no_task_left_behind()


@virtual_time
async def test_pings_carry_the_latest_progress_the_work_reported():
    """The protocol chooses what each ping reports (it must know when the gateway last saw a
    change); reports in between are coalesced into the latest values."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    clients = community(jobs, A)
    gateway = clients[1]
    sent: list[dict[str, float]] = []
    original = gateway.heartbeat

    async def heartbeat(job_id: str, token: str | None, progress: Any) -> None:
        sent.append(dict(progress))
        await original(job_id, token, progress)

    gateway.heartbeat = heartbeat  # type: ignore[method-assign]

    async def process(job: ClaimedJob) -> dict[str, str]:
        job.set_progress(pct=10)
        job.set_progress(pct=20, download_pct=100)
        await asyncio.sleep(25)
        return {"cid": "bafy-j1"}

    outcome = await OwnershipGuard(did=A, clients=clients, policy=Policy.hardened(TIMING)).run(
        "j1", process
    )
    assert outcome.processed
    # The first ping leaves at the start, before any report: it carries the start marker.
    assert sent[0] == {"pct": 0.01, "download_pct": 0.01}, "the first ping leaves at the start"
    assert {"pct": 20.0, "download_pct": 100.0} in sent
    assert {"pct": 10.0, "download_pct": 0.0} not in sent


@virtual_time
async def test_a_bad_progress_value_fails_the_work_with_a_clear_error():
    jobs = InMemoryJobs()
    jobs.add("j1")

    async def process(job: ClaimedJob) -> dict[str, str]:
        job.set_progress(pct=float("nan"))
        return {"cid": "never"}

    outcome = await OwnershipGuard(
        did=A, clients=community(jobs, A), policy=Policy.hardened(TIMING)
    ).run("j1", process)
    assert outcome.kind is OutcomeKind.FAILED
    assert isinstance(outcome.error, InvalidInputError) and "pct" in str(outcome.error)
    assert jobs.commits == []


@virtual_time
async def test_a_cancelled_run_is_cancelled_even_when_a_work_event_comes_in_the_same_turn():
    """On Python 3.11, ``asyncio.wait_for`` could swallow a cancellation arriving with an
    event; the run would go on and commit a job its caller had given up (adversarial review)."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    guard = OwnershipGuard(did=A, clients=community(jobs, A), policy=Policy.hardened(TIMING))
    task: list[asyncio.Task[Any]] = []

    async def process(job: ClaimedJob):
        await asyncio.sleep(5)
        job.set_phase("encode")  # a work event...
        asyncio.get_running_loop().call_soon(task[0].cancel)  # ...and the cancel, same turn
        await asyncio.sleep(100)
        return {"cid": "bafy"}

    task.append(asyncio.create_task(guard.run("j1", process)))
    with pytest.raises(asyncio.CancelledError):
        await task[0]
    assert jobs.commits == []


def test_a_progress_report_is_all_or_nothing():
    job = ClaimedJob("j1", asyncio.Queue())
    with pytest.raises(InvalidInputError):
        job.set_progress(pct=50, download_pct=101)
    assert job.progress == {"pct": 0.0, "download_pct": 0.0}
    with pytest.raises(InvalidInputError):
        job.set_progress(pct=10**400)  # too large for a float: refused, not OverflowError


class ClaimDropped(InMemoryTier):
    """A database whose claim request is lost on the way (nothing written) and times out,
    naming the token it sent, as :class:`~verifier.DatabaseTier` does."""

    async def claim(self, job_id: str, *, conditional: bool = True) -> str | None:
        error = TierTimeout(self.tier.value, "timed out reading the reply")
        error.claim_token = self.jobs.new_token()
        raise error


@virtual_time
async def test_an_unknown_claim_is_not_confirmed_by_an_older_assignment_of_our_did():
    """An earlier process of this DID held the job (token ``t0``) and crashed; ``myJob``
    offers the job to us again, our claim is lost on the way. The database still shows the
    old assignment, whose last ping nobody knows: not ours to start (the gap of 2026-12-02)."""
    jobs = InMemoryJobs()
    jobs.add("j1", status="running", assigned_to=A, claim_token="t0")
    db = ClaimDropped(Tier.DATABASE, jobs, A, latency=0.005)
    gateway = InMemoryTier(Tier.GATEWAY, jobs, A)
    started: list[str] = []
    outcome = await OwnershipGuard(did=A, clients=[db, gateway],
                                   policy=Policy.hardened(TIMING)).run("j1", encode(log=started))
    assert outcome.kind is OutcomeKind.SKIPPED and outcome.code == "OWNERSHIP_CONFLICT"
    assert not started
    assert jobs.docs["j1"]["claim_token"] == "t0"  # nothing of ours was written


class ClaimWithoutToken(InMemoryTier):
    """A database client that breaks its contract: the claim lands but answers no token."""

    async def claim(self, job_id: str, *, conditional: bool = True) -> str | None:
        await super().claim(job_id, conditional=conditional)
        return None


@virtual_time
async def test_a_database_claim_answered_without_its_token_is_unknown_and_given_back():
    """Fail closed: without the token, "assigned to us" could be an older assignment of our
    DID, so the claim is not confirmed; the job is given back (an adversarial review)."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    db = ClaimWithoutToken(Tier.DATABASE, jobs, A, latency=0.005)
    started: list[str] = []
    outcome = await OwnershipGuard(did=A, clients=[db, InMemoryTier(Tier.GATEWAY, jobs, A)],
                                   policy=Policy.hardened(TIMING)).run("j1", encode(log=started))
    assert outcome.kind is OutcomeKind.SKIPPED and outcome.code == "CLAIM_UNKNOWN"
    assert not started


@virtual_time
async def test_a_failed_give_back_says_why(caplog: pytest.LogCaptureFixture) -> None:
    """Found by an operator review (session 14): "Release of job j: unknown", three times, and
    nothing else, even with -v; Gateway Aid, for one, has no release endpoint at all."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    monitor = InMemoryTier(Tier.MONITOR, jobs, A, latency=0.2)
    gateway = InMemoryTier(Tier.GATEWAY, jobs, A, latency=0.05)
    gateway.fail_next("release", TierUnavailable(Tier.GATEWAY, "no release endpoint here"),
                      times=10)
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=Policy.hardened(TIMING))

    async def broken(job: Any) -> None:
        raise RuntimeError("encoder crashed")

    with caplog.at_level(logging.WARNING, logger="verifier"):
        outcome = await guard.run("j1", broken)
    assert outcome.held
    failed = [r.getMessage() for r in caplog.records if "RELEASE_FAILED" in r.getMessage()]
    assert failed and all("no release endpoint here" in m for m in failed), failed


@pytest.mark.parametrize("result", [None, {}, {"cid": ""}, {"cid": 7}, ["bafy"],
                                    {"cid": "b" * 257}, {"cid": "bafy\n"}],
                         ids=["none", "empty", "empty-cid", "number", "list", "too-long",
                              "unprintable"])
@pytest.mark.parametrize("node", ["infra", "community"])
@virtual_time
async def test_work_that_returns_no_cid_fails_and_the_job_goes_back(result, node):
    """Committed, a result without its CID would mark the job complete with no video, lost for
    good (the database tier stored ``result: {}``: an adversarial review, 2026-12-04). The
    work counts as failed instead: nothing is committed and the job goes back to the queue,
    one attempt counted."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    clients = (community(jobs, A) if node == "community" else
               [InMemoryTier(Tier.DATABASE, jobs, A, latency=0.05),
                InMemoryTier(Tier.GATEWAY, jobs, A, latency=0.05)])

    async def process(job: ClaimedJob):
        await asyncio.sleep(1)
        return result

    outcome = await OwnershipGuard(did=A, clients=clients,
                                   policy=Policy.hardened(TIMING)).run("j1", process)
    assert (outcome.kind, outcome.code) == (OutcomeKind.FAILED, "WORK_FAILED")
    assert "cid" in outcome.reason and outcome.result is None
    assert isinstance(outcome.error, InvalidInputError)
    assert jobs.commits == []
    assert jobs.docs["j1"]["status"] == "queued" and jobs.docs["j1"]["attempt_count"] == 1


@virtual_time
async def test_a_result_finished_while_a_recheck_hangs_and_then_given_up_is_logged(caplog):
    """The work finishes while a re-check hangs; the lease runs out before the protocol hears
    of it, so the job is given up uncommitted (the safe side). The result is not silently
    dropped: RESULT_DISCARDED carries its cid for an operator to recover."""
    caplog.set_level(logging.INFO, logger="verifier.guard")
    timeline: Timeline = []
    jobs = InMemoryJobs()
    jobs.add("j1")
    monitor, gateway = gateway_claimed(jobs, timeline)

    async def process(job: ClaimedJob):
        job.set_phase("encode")
        monitor.reads = "hang"  # every re-check from now on
        await asyncio.sleep(SHORT.recheck_interval + 1)  # ends while a re-check hangs
        return {"cid": "bafy-done"}

    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=Policy.hardened(SHORT))
    outcome = await guard.run("j1", process)
    assert (outcome.kind, outcome.code) == (OutcomeKind.CANCELLED, "LEASE_EXPIRED")
    assert jobs.commits == [] and outcome.result is None
    discarded = [r for r in caplog.records if getattr(r, "event_code", None) == "RESULT_DISCARDED"]
    assert len(discarded) == 1 and discarded[0].event_fields["cid"] == "bafy-done"


class CancelsItsOwnPing(InMemoryTier):
    """A gateway client whose second ping awaits a future something else cancels (a shared
    connection torn down, an executor shut down): ``CancelledError`` out of the call, though
    nobody cancelled the run."""

    async def heartbeat(self, job_id: str, token: str | None, progress: Any) -> None:
        if self.calls.count("heartbeat") == 1:
            self.calls.append("heartbeat")
            future = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.01, future.cancel)
            await future
        await super().heartbeat(job_id, token, progress)


@virtual_time
async def test_a_client_that_cancels_its_own_call_gave_no_answer_and_the_run_goes_on():
    """Read as the run being cancelled, it ended the run with the work stopped and the job
    still assigned to us, no outcome and nothing said held (an adversarial review,
    2026-12-04). It is a call without an answer: the ping is unknown, and the next proves."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    gateway = CancelsItsOwnPing(Tier.GATEWAY, jobs, A, latency=0.05)
    guard = OwnershipGuard(did=A, clients=[InMemoryTier(Tier.MONITOR, jobs, A, latency=0.2),
                                           gateway], policy=Policy.hardened(TIMING))
    outcome = await guard.run("j1", encode(seconds=40))
    assert outcome.kind is OutcomeKind.PROCESSED and jobs.commits == [("j1", A)]
    assert gateway.calls.count("heartbeat") >= 3  # the cancelled one, and those after it


# ----------------------------------------------- results a run cannot commit (second review)


class LazyResult(Mapping):  # type: ignore[type-arg]
    """A result mapping whose reads fail (a lazy or remote mapping whose backend is gone)."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("backend gone")

    def __iter__(self):
        return iter(["cid"])

    def __len__(self) -> int:
        return 1


class StrictStore(InMemoryTier):
    """A tier whose client refuses, before sending, a result it cannot store (as the
    database's does for ``$`` or dotted keys and NaN): its ``check_result`` says so."""

    def check_result(self, result: object) -> None:
        if any(str(key).startswith("$") for key in dict(result)):  # type: ignore[call-overload]
            raise InvalidInputError("result key '$meta' cannot be stored")


@pytest.mark.parametrize("result", [LazyResult(), {"cid": "bafy", "$meta": 1}],
                         ids=["unreadable", "refused-by-a-client"])
@virtual_time
async def test_a_result_no_tier_can_store_fails_the_work_at_once(result):
    """Read later (or refused by the client before sending), such a result ended the work's
    task with no word to the protocol (it pinged dead work until its lease ran out), or made
    a finish that could never be sent, retried as unknown and reported held."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    store = StrictStore(Tier.GATEWAY, jobs, A, latency=0.05)

    async def process(job: ClaimedJob):
        await asyncio.sleep(1)
        return result

    outcome = await OwnershipGuard(
        did=A, clients=[InMemoryTier(Tier.MONITOR, jobs, A, latency=0.2), store],
        policy=Policy.hardened(TIMING)).run("j1", process)
    assert (outcome.kind, outcome.code) == (OutcomeKind.FAILED, "WORK_FAILED")
    assert not outcome.held and jobs.commits == [] and "finish" not in store.calls
    assert jobs.docs["j1"]["status"] == "queued"
    assert _now() < TIMING.recheck_interval + 5  # at once, not at the lease's end


@virtual_time
async def test_a_work_that_returns_after_its_cancel_has_no_result_and_no_error(caplog):
    """It stopped, as asked; what it returned is not a finished result (no RESULT_DISCARDED)
    and not a failure (no error)."""
    caplog.set_level(logging.INFO, logger="verifier.guard")
    jobs = InMemoryJobs()
    jobs.add("j1")
    monitor, gateway = gateway_claimed(jobs, [])

    async def process(job: ClaimedJob):
        job.set_phase("encode")
        gateway.inner.fail_next("heartbeat", TierTimeout("gateway", "no answer"), times=1000)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return {"cid": "bafy-partial"}
        return None

    outcome = await OwnershipGuard(did=A, clients=[monitor, gateway],
                                   policy=Policy.hardened(SHORT)).run("j1", process)
    assert (outcome.kind, outcome.code) == (OutcomeKind.CANCELLED, "LEASE_EXPIRED")
    assert outcome.error is None and outcome.result is None
    assert "RESULT_DISCARDED" not in [getattr(r, "event_code", None) for r in caplog.records]


@pytest.mark.parametrize(("fault", "code"), [
    (TierTimeout("gateway", "no answer"), "FINISH_UNKNOWN"),
    (ClaimRefused("gateway", "not yours"), "FINISH_REFUSED"),
])
@virtual_time
async def test_a_result_whose_finish_failed_is_logged_with_its_cid(caplog, fault, code):
    caplog.set_level(logging.INFO, logger="verifier.guard")
    jobs = InMemoryJobs()
    jobs.add("j1")
    gateway = InMemoryTier(Tier.GATEWAY, jobs, A, latency=0.05)
    gateway.fail_next("finish", fault, times=3)

    async def process(job: ClaimedJob):
        await asyncio.sleep(1)
        return {"cid": "bafy-recover-me"}

    outcome = await OwnershipGuard(
        did=A, clients=[InMemoryTier(Tier.MONITOR, jobs, A, latency=0.2), gateway],
        policy=Policy.hardened(TIMING)).run("j1", process)
    assert outcome.code == code
    discarded = [r for r in caplog.records if getattr(r, "event_code", None) == "RESULT_DISCARDED"]
    assert len(discarded) == 1
    assert discarded[0].event_fields == {"job_id": "j1", "outcome": code, "cid": "bafy-recover-me"}
    # Only a finish that got no answer may have landed (mutation testing, session 41).
    assert ("may have landed" in discarded[0].getMessage()) == (code == "FINISH_UNKNOWN")


@virtual_time
async def test_the_lines_explaining_a_cancel_survive_a_run_cancelled_during_the_stop(caplog):
    """The cancel is performed before its lines are logged (a log may block); a run cancelled
    while a slow stop is under way (a caller's timeout) still logs why the work was cancelled."""
    caplog.set_level(logging.INFO, logger="verifier.guard")
    timeline: Timeline = []
    jobs = InMemoryJobs()
    jobs.add("j1")
    monitor, gateway = gateway_claimed(jobs, timeline)

    def lose() -> None:
        gateway.inner.fail_next("heartbeat", TierTimeout("gateway", "no answer"), times=1000)

    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=Policy.hardened(SHORT))
    run = asyncio.create_task(guard.run("j1", work(timeline, on_start=lose, stopping=5)))
    while "work-cancelled" not in [what for _, what in timeline]:  # noqa: ASYNC110 (virtual)
        await asyncio.sleep(0.01)
    await asyncio.sleep(1)  # the stop is under way, slowly
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    codes = [getattr(r, "event_code", None) for r in caplog.records]
    assert {"LEASE_EXPIRED", "ABORTING"} <= set(codes), codes
    # The lease ran out unconfirmed: no other encoder is known to hold the job.
    aborting = [r.getMessage() for r in caplog.records
                if getattr(r, "event_code", None) == "ABORTING"]
    assert all("Ownership unconfirmed" in m for m in aborting), aborting


class _Mislabelled(InMemoryTier):
    """A third party's monitor client with a bug: its answers claim another tier's label, or
    are about another job (a route or cache mix-up)."""

    def __init__(self, *args: Any, label: Tier | None = None, about: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.label, self.about = label, about

    async def observe(self, job_id: str):
        observation = await super().observe(self.about or job_id)
        return dataclasses.replace(observation, tier=self.label or observation.tier)


@pytest.mark.parametrize("bug", ["labelled database", "about another job"])
@virtual_time
async def test_an_answer_labelled_for_another_tier_or_job_never_confirms(bug, caplog):
    """The protocol applies each tier's own lag bound to its answers, so an answer labelled
    with another tier (the database, lag 0) would prove reads too early, and an answer about
    another job that we own proves nothing about ours. The guard takes neither as an answer
    (an adversarial review, session 20): the work never starts and the job goes back."""
    caplog.set_level(logging.INFO, logger="verifier.guard")
    jobs = InMemoryJobs()
    jobs.add("j1")
    jobs.add("mine", assigned_to=A, status="assigned")
    bad = (_Mislabelled(Tier.MONITOR, jobs, A, latency=0.2, label=Tier.DATABASE)
           if bug == "labelled database" else
           _Mislabelled(Tier.MONITOR, jobs, A, latency=0.2, about="mine"))
    started: list[str] = []

    async def process(job: ClaimedJob):
        started.append(job.job_id)
        return {"cid": "bafy-j1"}

    clients = [bad, InMemoryTier(Tier.GATEWAY, jobs, A, latency=0.05)]
    outcome = await OwnershipGuard(did=A, clients=clients,
                                   policy=Policy.hardened(TIMING)).run("j1", process)
    assert started == [] and jobs.commits == []
    assert not outcome.processed
    failed = [r.getMessage() for r in caplog.records if "malformed answer" in r.getMessage()]
    assert failed, "the refusal says why"


@virtual_time
async def test_the_in_memory_gateway_counts_every_give_back_and_the_database_only_failures():
    """The contract's fifth-attempt rule, as the simulated world has it since session 32: a
    ``rejectJob`` counts an attempt as a ``failJob`` does; a database release counts only as
    failed (the verifier's own write). The in-memory test double gave a reject away free (an
    adversarial review, session 32)."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    jobs.add("j2")
    gateway = InMemoryTier(Tier.GATEWAY, jobs, A)
    for attempt in range(1, 6):
        await gateway.claim("j1")
        await gateway.release("j1", None, "given back", failed=False)
        assert jobs.docs["j1"]["attempt_count"] == attempt
    assert jobs.docs["j1"]["status"] == "failed"
    database = InMemoryTier(Tier.DATABASE, jobs, A)
    token = await database.claim("j2")
    await database.release("j2", token, "given back", failed=False)
    assert jobs.docs["j2"]["attempt_count"] == 0 and jobs.docs["j2"]["status"] == "queued"


@virtual_time
async def test_awaiting_names_the_read_a_run_is_sending():
    """``OwnershipGuard.awaiting``: while the guard awaits a tier's read, the run's protocol
    awaits that read's answer, so a tier wrapper learns the read's purpose (``sim live``
    counts reads by purpose this way); no run, no action."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    monitor, gateway = community(jobs, A)
    purposes: list[str] = []

    class Asking:
        tier = Tier.MONITOR

        async def observe(self, job_id: str):
            action = guard.awaiting(job_id)
            assert isinstance(action, Observe) and action.tier is Tier.MONITOR
            purposes.append(action.purpose)
            return await monitor.observe(job_id)

    guard = OwnershipGuard(did=A, clients=[Asking(), gateway], policy=Policy.hardened(TIMING))
    assert guard.awaiting("j1") is None
    outcome = await guard.run("j1", encode())
    assert outcome.kind is OutcomeKind.PROCESSED
    assert purposes[:2] == ["pre-claim", "verify"] and "recheck" in purposes
    assert guard.awaiting("j1") is None


def test_phase_reports_are_one_report_per_change():
    """The documented chain pings only while encoding (defect 5), so the protocol must hear of
    each phase change, and only of changes (mutation testing, session 41: dropping the event,
    or sending it for a repeat instead, passed every guard test: the hardened chain pings in
    every phase)."""
    events: asyncio.Queue[Any] = asyncio.Queue()
    job = ClaimedJob("j1", events)
    told = []
    for phase in ("download", "download", "encode", "encode", "upload"):
        job.set_phase(phase)  # each taken before the next, as a protocol awake takes them
        if not events.empty():
            events.get_nowait()
            first, second = job._take_reports()
            told.append(first)
            assert second is None
    assert told == [PhaseChanged("download"), PhaseChanged("encode"), PhaseChanged("upload")]
    assert job.phase == "upload"


def test_progress_reports_are_coalesced_into_one_event_until_it_is_taken():
    """However often progress changes between two of the protocol's wake-ups, it is told once
    (a flood of reports must not bury the work's other events); a repeat of the same values
    is no change; once taken, the next change is told again (mutation testing, session 41)."""
    events: asyncio.Queue[Any] = asyncio.Queue()
    job = ClaimedJob("j1", events)
    job.set_progress(pct=0)  # no change from the start: nothing to tell
    assert events.empty()
    for pct in range(1, 50):
        job.set_progress(pct=pct)
    assert events.qsize() == 1
    events.get_nowait()
    assert job._take_reports() == (Progressed(49.0, 0.0), None)
    job.set_progress(pct=49)  # the same values again: no change
    assert events.empty()
    job.set_progress(download_pct=100)
    job.set_progress(pct=60)
    assert events.qsize() == 1
    assert job._take_reports() == (Progressed(60.0, 100.0), None)


def test_phase_reports_are_coalesced_with_progress_the_latest_phase_first():
    """Every phase change was queued: a command alternating two phases filled the queue by
    ten million entries (600 MB) while a ping hung, and a shutdown queued behind them waited
    for the lease to run out (helper-132's review, session 44). One marker stands for the
    latest phase and the latest progress, delivered in that order (as the simulator's driver
    delivers them)."""
    events: asyncio.Queue[Any] = asyncio.Queue()
    job = ClaimedJob("j1", events)
    for _ in range(100_000):
        job.set_phase("a")
        job.set_phase("b")
    assert events.qsize() == 1
    job.set_progress(pct=5)
    job.set_phase("encode")
    assert events.qsize() == 1
    events.get_nowait()
    assert job._take_reports() == (PhaseChanged("encode"), Progressed(5.0, 0.0))
    job.set_phase("encode")  # no change
    assert events.empty()
    job.set_phase("upload")
    assert job._take_reports() == (PhaseChanged("upload"), None)


@virtual_time
async def test_the_documented_chain_pings_only_while_encoding():
    """Through the guard: the phases the work reports reach the protocol, which decides
    where the documented chain pings (defect 5: not while downloading or uploading)."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    clients = community(jobs, A)
    phases: list[str] = []
    current: list[str] = [""]
    original = clients[1].heartbeat

    async def heartbeat(job_id: str, token: str | None, progress: Any) -> None:
        phases.append(current[0])
        await original(job_id, token, progress)

    clients[1].heartbeat = heartbeat  # type: ignore[method-assign]

    async def process(job: ClaimedJob) -> dict[str, str]:
        for phase in ("download", "encode", "upload"):
            job.set_phase(phase)
            current[0] = phase
            job.set_progress(pct={"download": 10, "encode": 50, "upload": 90}[phase])
            await asyncio.sleep(35)
        return {"cid": "bafy-j1"}

    outcome = await OwnershipGuard(did=A, clients=clients, policy=Policy.documented(TIMING)).run(
        "j1", process)
    assert outcome.processed, outcome
    assert phases and set(phases) == {"encode"}, phases


@virtual_time
async def test_a_guard_asked_to_shut_down_starts_no_work_and_says_so():
    """``request_shutdown`` holds for runs started after it too: their job is not claimed for
    work, and ``shutting_down`` says so (mutation testing, session 41: a guard that forgot
    the request passed every guard test)."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    guard = OwnershipGuard(did=A, clients=community(jobs, A), policy=Policy.hardened(TIMING))
    assert not guard.shutting_down
    guard.request_shutdown()
    assert guard.shutting_down
    started: list[str] = []
    outcome = await guard.run("j1", encode(log=started))
    assert not started and outcome.code == "SHUTDOWN", outcome
    assert jobs.commits == [] and jobs.docs["j1"].get("assigned_to") is None
    assert "claim" not in guard.clients[Tier.GATEWAY].calls  # type: ignore[attr-defined]


def test_no_status_cache_unless_the_policy_gives_it_an_age():
    uncached = OwnershipGuard(did=A, clients=[], policy=Policy.hardened(TIMING))
    assert uncached.cache is None
    assert uncached.screened({}, decided=0.0) == 0, "nothing kept without a cache"
    cached = dataclasses.replace(Policy.hardened(TIMING), status_cache_s=0.5)
    assert OwnershipGuard(did=A, clients=[], policy=cached).cache is not None


@pytest.mark.parametrize("hint", [0.5, 3.0])
@virtual_time
async def test_the_outcome_carries_what_is_left_of_a_retry_after_however_short(hint):
    """A tier's ``Retry-After`` outlives the run (the loop's next job waits for it): what is
    left of it when the run ends is in the outcome, under a second too (mutation testing,
    session 41: an outcome that dropped any rest under one second passed every test)."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    clients = community(jobs, A)
    clients[0].fail_next("observe", TierRateLimited(Tier.MONITOR, "429", retry_after=hint))
    outcome = await OwnershipGuard(did=A, clients=clients, policy=Policy.hardened(TIMING)).run(
        "j1", encode())
    assert not outcome.processed
    assert outcome.retry_after == pytest.approx(hint), outcome


@virtual_time
async def test_a_shutdown_during_work_cancels_the_work_and_gives_the_job_back():
    """The request reaches a running job's protocol as an event at its next wait (mutation
    testing, session 41: without the event, the work ran to its end and was committed)."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    guard = OwnershipGuard(did=A, clients=community(jobs, A), policy=Policy.hardened(TIMING))
    cancelled = asyncio.Event()

    async def process(job: ClaimedJob) -> dict[str, str]:
        job.set_phase("encode")
        await asyncio.sleep(1)
        guard.request_shutdown()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {"cid": "never"}

    outcome = await guard.run("j1", process)
    assert cancelled.is_set() and outcome.code == "SHUTDOWN", outcome
    assert outcome.given_back and jobs.commits == []
    assert jobs.docs["j1"].get("assigned_to") is None

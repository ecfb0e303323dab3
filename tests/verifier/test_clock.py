"""The guard's default clock counts the time the machine spends suspended (``verifier._clock``).

A suspension is a freeze the timing model's P covers, but only if the encoder's clock counts
it: the event loop's clock (``CLOCK_MONOTONIC`` on Linux) does not, and then every deadline
after a suspension comes late by it, the lease end included (review, session 17). Here a
suspension is a jump of the machine's ``BOOTTIME − MONOTONIC`` while the (virtual) loop clock,
which plays the monotonic clock, does not move: real time = loop time + time suspended.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

import verifier._clock as clock_module
from verifier import OwnershipGuard, Policy, Tier, TierTimeout
from verifier.testing import InMemoryJobs, InMemoryTier, run_virtual


@pytest.fixture
def machine_never_suspended() -> None:
    """Overrides the pin of ``tests/verifier/conftest.py``: these tests are about the real read."""


DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
JOB = "job-1"


class Machine:
    """Time suspended so far, as the kernel would report it (BOOTTIME − MONOTONIC)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.suspended = 0.0
        self.noise = 0.0
        monkeypatch.setattr(clock_module, "_boot_minus_monotonic",
                            lambda: clock_module._START + self.suspended + self.noise)
        monkeypatch.setattr(clock_module, "_seen", 0.0)


def test_suspended_time_is_counted_and_never_runs_backwards(
        monkeypatch: pytest.MonkeyPatch) -> None:
    machine = Machine(monkeypatch)
    assert clock_module.suspended_s() == 0.0
    machine.suspended = 2.0
    assert clock_module.suspended_s() == 2.0
    machine.noise = -1e-6  # the two reads' noise, downwards: the clock must not go back
    assert clock_module.suspended_s() == 2.0
    base = iter([10.0, 10.5])
    clock = clock_module.counting_suspensions(lambda: next(base))
    assert clock() == 12.0
    machine.suspended, machine.noise = 5.0, 0.0
    assert clock() == 15.5


def test_without_boottime_nothing_is_added(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock_module, "_BOOTTIME", None)
    monkeypatch.setattr(clock_module, "_seen", 0.0)
    assert clock_module._boot_minus_monotonic() == 0.0


def test_a_read_preempted_between_its_clock_reads_is_tried_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A preemption between the monotonic and the boot-time read over-counts the offset by its
    length, and the running maximum would keep that for good: the read is tried again, and
    the tightest bracket's value stands (session 23: a CI run's lease end came 20 µs early)."""
    # Three tries of (monotonic, boottime, monotonic); the true offset is 100.
    reads = iter([
        0.0, 100.02, 0.03,        # preempted 20 ms after the first read: offset 100.02
        1.0, 101.000001, 1.000002,  # tight: offset 100.000001, bracket 2 µs
        9.0, 999.0, 9.0,          # never reached
    ])
    monkeypatch.setattr(clock_module.time, "clock_gettime", lambda _clock: next(reads))
    assert clock_module._BOOTTIME is not None
    assert clock_module._boot_minus_monotonic() == pytest.approx(100.000001, abs=1e-9)
    assert next(reads) == 9.0  # stopped at the first tight bracket


def test_when_every_read_is_preempted_the_tightest_stands(
        monkeypatch: pytest.MonkeyPatch) -> None:
    widths = [0.03, 0.001, 0.02, 0.5, 0.01]  # seconds between the monotonic reads
    reads = iter([x for w in widths for x in (0.0, 100.0 + w / 2, w)])
    monkeypatch.setattr(clock_module.time, "clock_gettime", lambda _clock: next(reads))
    assert clock_module._boot_minus_monotonic() == pytest.approx(100.0005)
    with pytest.raises(StopIteration):
        next(reads)  # all five were tried


def _lease_run(machine: Machine, *, suspend_aware: bool) -> tuple[float, float]:
    """The production guard over the database tier, default timing (T = 60 s, ε = 1, P = 2,
    C = 5): heartbeats time out, so the lease must end T − (ε + P + C) = 52 s after the claim.
    The machine is suspended twice for exactly P (20 s and 35 s in, never two within P + C:
    inside the model). The gateway reassigns the job T = 60 s after the claim, in real time.
    Returns (real time the work stopped, real time of the reassignment)."""

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()

        def real() -> float:
            return loop.time() + machine.suspended

        def suspend(length: float) -> None:
            machine.suspended += length  # the loop's clock stood still; real time did not

        jobs = InMemoryJobs()
        jobs.add(JOB)
        db = InMemoryTier(Tier.DATABASE, jobs, DID)
        db.fail_next("heartbeat", TierTimeout("database", "timeout"), times=1000)
        stopped: list[float] = []
        reassigned: list[float] = []

        async def process(job: Any) -> None:
            try:
                await asyncio.sleep(10_000)
            except asyncio.CancelledError:
                await asyncio.shield(asyncio.sleep(5.0))  # exactly C to stop
                stopped.append(real())
                raise

        def gateway() -> None:
            if real() < 60.0 - 1e-9:  # the gateway's clock is real time: look every 0.1 s
                loop.call_later(0.1, gateway)
                return
            reassigned.append(real())
            jobs.update(JOB, assigned_to=None, status="queued", claim_token=None)

        loop.call_at(20.0, suspend, 2.0)
        loop.call_at(35.0, suspend, 2.0)
        loop.call_at(0.0, gateway)
        guard = OwnershipGuard(did=DID, clients=[db], policy=Policy.hardened(),
                               clock=None if suspend_aware else loop.time)
        await guard.run(JOB, process)
        await asyncio.sleep(max(0.0, 61.0 - real()))  # past the reassignment, in any case
        return stopped[0], reassigned[0]

    return run_virtual(main())


def test_the_lease_holds_across_suspensions_with_the_default_clock(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stopped, reassigned = _lease_run(Machine(monkeypatch), suspend_aware=True)
    assert stopped <= reassigned, f"work stopped {stopped - reassigned:.1f} s late"


def test_a_clock_that_stops_while_suspended_breaks_the_lease(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The hazard the default clock removes, reached by this very scenario: with the loop's
    clock alone the lease ends 4 s late in real time, and the work outlives the reassignment."""
    stopped, reassigned = _lease_run(Machine(monkeypatch), suspend_aware=False)
    assert stopped > reassigned


class RealTimeAlarms:
    """:func:`verifier._clock.boottime_alarm` in virtual time: an alarm rings when *real* time
    (loop time + time suspended) has run its length, re-armed at every suspension, as a
    ``timerfd`` on ``CLOCK_BOOTTIME`` does."""

    def __init__(self, loop: asyncio.AbstractEventLoop, machine: Machine) -> None:
        self.loop, self.machine = loop, machine
        self.armed: dict[asyncio.Future[None], tuple[float, Any]] = {}

    def real(self) -> float:
        return self.loop.time() + self.machine.suspended

    @contextlib.contextmanager
    def alarm(self, seconds: float) -> Iterator[asyncio.Future[None]]:
        ring: asyncio.Future[None] = self.loop.create_future()
        self._arm(ring, self.real() + seconds)
        try:
            yield ring
        finally:
            self.armed.pop(ring, (0.0, None))[1].cancel()

    def _arm(self, ring: asyncio.Future[None], due: float) -> None:
        if ring in self.armed:
            self.armed[ring][1].cancel()
        handle = self.loop.call_later(max(0.0, due - self.real()),
                                      lambda: ring.done() or ring.set_result(None))
        self.armed[ring] = (due, handle)

    def suspend(self, length: float) -> None:
        self.machine.suspended += length
        for ring, (due, _) in list(self.armed.items()):
            self._arm(ring, due)


class _HangingPings(InMemoryTier):
    """A database whose pings never answer: the run must answer for it at the lease end."""

    async def heartbeat(self, job_id: str, token: str | None, progress: Any) -> None:
        self.calls.append("heartbeat")
        await asyncio.Event().wait()


@pytest.mark.parametrize("alarms", [True, False])
@pytest.mark.parametrize(("pings", "suspended_at", "length"), [
    ("time out", 50.2, 1.0),  # after the last ping (50), inside the lease's last wait
    ("hang", 11.0, 5.0),  # inside the first ping's own wait (sent at 10)
])
def test_a_suspension_inside_a_wait_does_not_make_its_deadline_late(
        monkeypatch: pytest.MonkeyPatch, alarms: bool, pings: str, suspended_at: float,
        length: float) -> None:
    """A timer armed on the loop's clock fires that much *loop* time later: a suspension
    anywhere inside the wait, not only one spanning its deadline, made the lease's end late by
    its length (a review of the send-by bound, session 28; with a freeze when the late timer
    fired, the work outlived the reassignment). The guard's waits also arm a real-time alarm
    (a ``timerfd`` on ``CLOCK_BOOTTIME`` in production), so the cancel comes at the lease's end:
    the protocol's own waits, and a tier call that hangs, which the driver answers by the
    lease end with its alarm armed for the time left (mutation testing, session 41: an alarm
    armed for the deadline plus the time now, or for minus the time now, passed every test,
    the loop's timer then alone covering the wait, late by the suspension)."""
    machine = Machine(monkeypatch)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        clock = RealTimeAlarms(loop, machine)
        jobs = InMemoryJobs()
        jobs.add(JOB)
        if pings == "hang":
            db: InMemoryTier = _HangingPings(Tier.DATABASE, jobs, DID)
        else:
            db = InMemoryTier(Tier.DATABASE, jobs, DID)
            db.fail_next("heartbeat", TierTimeout("database", "timeout"), times=1000)
        cancelled: list[float] = []

        async def process(job: Any) -> None:
            try:
                await asyncio.sleep(10_000)
            except asyncio.CancelledError:
                cancelled.append(clock.real())
                raise

        loop.call_at(suspended_at, clock.suspend, length)
        guard = OwnershipGuard(did=DID, clients=[db], policy=Policy.hardened())
        if alarms:
            guard._alarm = clock.alarm
        await guard.run(JOB, process)
        return cancelled[0]

    cancelled = run_virtual(main())
    lease_end = 52.0  # T − (ε + P + C) after the claim (at 0 + the claim's reply)
    if alarms:
        assert cancelled == pytest.approx(lease_end, abs=0.1)
    else:
        assert cancelled == pytest.approx(lease_end + length, abs=0.1)  # the hazard, reached


def _readers() -> set[int]:
    """The file descriptors the running (selector) loop watches."""
    return set(asyncio.get_running_loop()._selector.get_map())  # type: ignore[attr-defined]


@pytest.mark.skipif(clock_module._TIMERFD is None, reason="no timerfd on this platform")
def test_a_boottime_alarm_rings_and_closes_its_timer() -> None:
    async def main() -> None:
        before = (set(os.listdir("/proc/self/fd")), _readers())
        with clock_module.boottime_alarm(0.01) as ring:
            assert ring is not None
            await asyncio.wait_for(ring, timeout=30.0)
        with clock_module.boottime_alarm(3600.0) as unrung:
            await asyncio.sleep(0.01)  # a turn of the loop: a timer set wrong rings at once
            assert unrung is not None and not unrung.done()
            assert len(_readers() - before[1]) == 1  # watched while armed
        assert ring.done() and unrung.cancelled()
        assert (set(os.listdir("/proc/self/fd")), _readers()) == before  # closed, unwatched

    asyncio.run(main())


@pytest.mark.skipif(not (sys.platform.startswith("linux") and hasattr(time, "CLOCK_BOOTTIME")),
                    reason="the alarm is Linux's timerfd on CLOCK_BOOTTIME")
def test_on_linux_the_guard_has_its_alarm_and_looking_for_it_leaks_nothing() -> None:
    """Where the platform has ``timerfd`` the guard's waits must get their alarm: without it a
    suspension inside a wait makes its deadline late by the suspension (session 28), and every
    alarm test above would be skipped, not failed (mutation testing of ``verifier._clock``,
    session 36: a search that gave up on Linux, or that left its probe's descriptor open,
    survived every test)."""
    fds = set(os.listdir("/proc/self/fd"))
    found = clock_module._timerfd()
    assert found is not None and clock_module._TIMERFD is not None
    assert set(os.listdir("/proc/self/fd")) == fds  # the probe's timer closed again


@pytest.mark.skipif(clock_module._TIMERFD is None, reason="no timerfd on this platform")
def test_a_rung_alarm_is_read_once_and_stops_waking_the_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The timer's expiry count is read when it rings: a timer left unread stays readable, and
    the loop would call its reader at every turn until the wait ends (a busy loop)."""
    calls: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        add_reader = loop.add_reader

        def counted(fd: int, callback: Any) -> None:
            add_reader(fd, lambda: (calls.append(fd), callback()))

        monkeypatch.setattr(loop, "add_reader", counted)
        with clock_module.boottime_alarm(0.01) as ring:
            assert ring is not None
            await asyncio.wait_for(ring, timeout=30.0)
            for _ in range(20):
                await asyncio.sleep(0)  # turns of the loop while the block goes on

    asyncio.run(main())
    assert len(calls) == 1, len(calls)


def test_nothing_is_suspended_when_the_clock_starts() -> None:
    """The suspended time counts from the module's import: a fresh process reads (about) 0,
    not a constant offset carried from the start (the same mutation run: the running maximum
    started at 1 s and no test saw it, since every test pins it)."""
    code = ("import verifier._clock as c; s = c.suspended_s(); "
            "assert 0.0 <= s < 0.01, s; print(s)")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(  # noqa: S603 - our own interpreter, a fixed program
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root,
        env={**os.environ, "PYTHONPATH": root}, check=False)
    assert done.returncode == 0, done.stderr


def test_an_alarm_is_none_when_no_timer_can_be_had(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> list[object]:
        seen = []
        with clock_module.boottime_alarm(0.0) as never, clock_module.no_alarm(5.0) as none:
            seen += [never, none]  # nothing to wait for
        if clock_module._TIMERFD is not None:
            create, settime = clock_module._TIMERFD
            fds = set(os.listdir("/proc/self/fd"))
            monkeypatch.setattr(clock_module, "_TIMERFD", (lambda *_: -1, settime))
            with clock_module.boottime_alarm(1.0) as refused:  # the kernel refused a timer
                seen.append(refused)
            monkeypatch.setattr(clock_module, "_TIMERFD", (create, lambda *_: -1))
            with clock_module.boottime_alarm(1.0) as unset:  # ... or to set it: closed again
                seen.append(unset)
            assert set(os.listdir("/proc/self/fd")) == fds
        monkeypatch.setattr(clock_module, "_TIMERFD", None)
        with clock_module.boottime_alarm(1.0) as none_here:  # no timerfd (not Linux)
            seen.append(none_here)
        return seen

    assert set(asyncio.run(main())) == {None}


@pytest.mark.parametrize(("seconds", "expected"), [
    (1.25, (1, 250_000_000)), (30.0, (30, 1)), (1e-12, (0, 1)), (0.000_000_5, (0, 500)),
    (1.999_999_999, (1, 999_999_999)), (2.999_999_999_999_9, (2, 999_999_999))])
def test_an_alarm_is_set_for_its_length_and_never_to_zero(
        seconds: float, expected: tuple[int, int]) -> None:
    spec = clock_module._once_after(seconds)
    assert (spec.it_value.tv_sec, spec.it_value.tv_nsec) == expected
    assert (spec.it_interval.tv_sec, spec.it_interval.tv_nsec) == (0, 0)  # once


def test_alarms_are_armed_only_on_the_machines_clock() -> None:
    async def real_loop() -> tuple[bool, object, object]:
        loop = asyncio.get_running_loop()
        guard = OwnershipGuard(did=DID, clients=[InMemoryTier(Tier.DATABASE, InMemoryJobs(), DID)],
                               policy=Policy.hardened())
        custom = OwnershipGuard(did=DID, clients=[InMemoryTier(Tier.DATABASE, InMemoryJobs(),
                                                               DID)],
                                policy=Policy.hardened(), clock=loop.time)
        return clock_module.runs_on_monotonic(loop), guard._alarms(), custom._alarms()

    assert asyncio.run(real_loop()) == (True, clock_module.boottime_alarm, clock_module.no_alarm)

    async def virtual_loop() -> tuple[bool, object]:
        guard = OwnershipGuard(did=DID, clients=[InMemoryTier(Tier.DATABASE, InMemoryJobs(), DID)],
                               policy=Policy.hardened())
        return clock_module.runs_on_monotonic(asyncio.get_running_loop()), guard._alarms()

    assert run_virtual(virtual_loop()) == (False, clock_module.no_alarm)


def test_an_alarmed_run_answers_each_call_when_it_ends_not_at_its_alarm(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A wait ends at its call's answer or its event, whichever first, the alarm only adds a
    way to end it: waiting for both held every ping until the lease's end (found by the live
    tests, before this session's alarms landed)."""
    machine = Machine(monkeypatch)

    async def main() -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        alarms = RealTimeAlarms(loop, machine)
        jobs = InMemoryJobs()
        jobs.add(JOB)
        guard = OwnershipGuard(did=DID, clients=[InMemoryTier(Tier.DATABASE, jobs, DID)],
                               policy=Policy.hardened())
        guard._alarm = alarms.alarm

        async def process(job: Any) -> dict[str, str]:
            await asyncio.sleep(120.0)  # past two lease lengths: only renewed pings get here
            return {"cid": "bafyCID"}

        outcome = await guard.run(JOB, process)
        return outcome.code, len(alarms.armed)

    assert run_virtual(main()) == ("FINISHED", 0)  # and every alarm closed

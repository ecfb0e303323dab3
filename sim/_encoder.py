"""A simulated encoder, and the SimPy driver of the verifier's pure protocol.

The encoder polls the gateway, and for each job it is handed runs one
:class:`verifier.protocol.OwnershipProtocol` attempt: this module performs the protocol's
actions against the simulated :class:`~sim._world.World` and feeds back the answers, exactly as
:mod:`verifier._guard` does with real sockets. It contains no ownership decision of its own:
which tier to ask, when to start, when to cancel and how to finish are all the protocol's.

What it adds is the encoder's body: a clock that drifts (ε), pauses that freeze everything
including the work (P), crashes that kill the process (the job's writes may still land), the
work itself as three phases with lognormal durations, and the cancellation latency (C).
Everything an encoder does is recorded in the run's history (see ``sim/_history.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any, ClassVar, Final

import simpy

from verifier import (
    AllSlotsBusy,
    IdleUntil,
    Policy,
    PollSchedule,
    StatusCache,
    Tier,
    TierSet,
)
from verifier.protocol import (
    Answer,
    CancelWork,
    Claim,
    Done,
    Finish,
    Heartbeat,
    Hinted,
    Observe,
    Observed,
    Outcome,
    OutcomeKind,
    OwnershipProtocol,
    PhaseChanged,
    Progressed,
    Release,
    ShutdownRequested,
    Sleep,
    StartWork,
    TierFailed,
    Woke,
    WorkEnded,
    WorkStarted,
    WorkStopped,
    WriteAnswered,
    WriteOutcome,
    pre_claim_tier,
    screened,
    unusable_answers,
)

from ._history import History
from ._push import PushChannel
from ._rng import Streams
from ._scenario import Scenario
from ._world import World, encoder_name, request_record

__all__ = ["Encoder"]

_UNSUPPORTED = WriteAnswered(WriteOutcome.UNKNOWN, detail="not supported by this tier")
_PHASES = ("download", "encode", "upload")
#: What each phase's progress reports range over (``download_pct``, then ``pct``).
_PCT_RANGE = {"download": (0.0, 100.0), "encode": (0.0, 90.0), "upload": (90.0, 100.0)}
_WORK_DONE = WorkEnded(True)
#: How a work that fails on its own (``work_fail_rate``) ends: what the guard reports when a
#: command exits non-zero.
_WORK_FAILED = WorkEnded(False, "the work failed (simulated)")
_PROCESSED = OutcomeKind.PROCESSED
#: The driver's field-less answers: values, so one instance each serves every step.
_WOKE = Woke()
_WORK_STARTED = WorkStarted()


class _Offered:
    """An offered job as the loop's schedule sees it (``verifier._polling.Offer``): its id."""

    __slots__ = ("id",)

    def __init__(self, job_id: str) -> None:
        self.id = job_id


class _Slot:
    """One job slot's state beyond the protocol: its work, and the pushes and shutdown it has
    been told of. The encoder is its own first slot (``Encoder.slots[0] is encoder``); with
    ``concurrency`` above 1 the others are these, each attempt run by a SimPy process of its
    own, while pauses and crashes stay the node's (they stop every slot)."""

    __slots__ = ("carried", "hint_at", "hint_wake", "hints", "push_job", "shutdown_told",
                 "work", "work_fault_end", "work_job", "work_tail")

    def __init__(self) -> None:
        self.shutdown_told = False
        self.work: list[tuple[float, Answer]] = []
        self.carried: Answer | None = None
        self.work_job: str | None = None
        self.work_fault_end = -math.inf
        self.work_tail: list[tuple[float, Answer]] = []
        self.hints: list[Hinted] = []
        self.hint_at = 0.0
        self.push_job: str | None = None
        self.hint_wake: simpy.Event | None = None


class _Crashed(Exception):
    """The encoder's process died; unwinds the current attempt."""


class Encoder:
    """One encoder node: ``tiers`` says whether it is an infrastructure or community node."""

    #: Whether ``_io`` and ``_sleep`` may stand for ``wait()`` with a bare timeout when no
    #: crash or pause is due: an optimisation only (fewer generator frames per request, for
    #: S-1k). Tests turn it off and compare the histories, which must be identical
    #: (``tests/sim/test_fast_paths.py``): mutants of the fast paths' comparisons at crash
    #: and pause instants survived every safety suite (session 41), as an optimisation that
    #: changes behaviour would.
    fast_paths: ClassVar[bool] = True

    def __init__(
        self,
        env: simpy.Environment,
        world: World,
        history: History,
        name: str,
        *,
        tiers: TierSet,
        policy: Policy,
        streams: Streams,
        scenario: Scenario,
        outcomes: dict[str, int],
        protocol: Callable[..., Any] = OwnershipProtocol,
        push: PushChannel | None = None,
        schedule: Callable[..., PollSchedule] = PollSchedule,
    ) -> None:
        self.env = env
        self.world = world
        self.history = history
        self.name = name
        self.did = f"did:key:{name}"
        self.tiers = tiers
        self.policy = policy
        self.sc = scenario
        self.outcomes = outcomes
        self.protocol = protocol
        #: The encoder loop's decisions (``verifier.PollSchedule``, or a variant to test).
        self.schedule_cls = schedule
        self.loop_policy = scenario.loop_policy()
        self.rng = streams.stream(f"encoder.{name}")
        # Offered randomness, per entity (CRN, sim/_rng.py): this encoder's fault schedules,
        # one stream per kind, and each job's work (``_start``), the same in every chain.
        self.streams = streams
        self.faults = {kind: streams.stream(f"encoder.{name}.{kind}")
                       for kind in ("crash", "pause", "shutdown")}
        # ε: the drift rate that accumulates at most ε over one reassignment timeout T
        # (exactly ±ε at the adversary's edge).
        unit = self.rng.random() * 2 - 1
        if self._edge():
            unit = 1.0 if unit >= 0 else -1.0
        self.drift = unit * scenario.clock_drift / max(scenario.reassign_timeout, 1.0)
        #: Local seconds per simulated second (``local()``), computed once: the driver reads
        #: the clock several times per protocol step.
        self.rate = 1.0 + self.drift
        #: Whether the adversary may pause at the driver's await points: when it may not,
        #: ``_await_point`` would draw nothing and do nothing, so the driver skips the call.
        self.pausable = scenario.await_pause_rate > 0 or scenario.pause_split_rate > 0
        self.crash_at = self._next(scenario.crashes_per_hour, "crash")
        self.pause_at = self._next(scenario.pauses_per_hour, "pause")
        #: The random pauses' schedule, before spacing (``_spaced``): each next one is drawn
        #: from the previous one's *scheduled* time, so the schedule is the same in every chain.
        self.pause_due = self.pause_at
        #: The next graceful shutdown, and whether the running protocol has been told of it.
        self.shutdown_at = self._next(scenario.shutdowns_per_hour, "shutdown")
        self.shutdown_told = False
        # The running work: pending (sim time, event) in time order; start time; job.
        self.work: list[tuple[float, Answer]] = []
        self.work_job: str | None = None
        #: The second of two coalesced reports, delivered at the next wait before anything
        #: else (``_due_report``; the guard's ``_Run._carried``).
        self.carried: Answer | None = None
        #: When the running work's stall or stuck input ends (its faults; -inf: none): a pause
        #: moves it as it moves the work, and the world's ``last_fault`` follows.
        self.work_fault_end = -math.inf
        #: What the running work would have done after its planned failure (``_maybe_fail``),
        #: moved by pauses as the work is: it runs on if a pause moves the failure to the
        #: instant the faults stop or later.
        self.work_tail: list[tuple[float, Answer]] = []
        #: When the last pause ended: the next never starts within C of it. The model bounds
        #: the *total* freeze within any window of P + C by P (docs/safety-model.md, "The
        #: timing model"): two pauses of P a few milliseconds apart are one stall of 2P to the
        #: lease, whose margin has one P (the thorough run found exactly that).
        self.pause_ended = -math.inf
        #: The pauses so far, (start, end), kept only with ``pause_split_rate``: the freeze
        #: budget of a split pause is what they leave within the window P + C.
        self.freezes: list[tuple[float, float]] | None = (
            [] if scenario.pause_split_rate else None)
        #: The status cache (``Observe.max_age``): (tier, job) -> (answer, when its read was
        #: decided, on this encoder's clock). Kept only when the scenario has one.
        self.cache: StatusCache | None = (
            StatusCache() if scenario.status_cache_s > 0 else None)
        #: The push channel, the pushes received and not yet handed to the protocol (merged
        #: into one, which arrived at ``hint_at``: the first of them), and the event that ends
        #: a wait when one arrives.
        self.push = push
        self.hints: list[Hinted] = []
        self.hint_at = 0.0
        self.push_job: str | None = None
        self.hint_wake: simpy.Event | None = None
        #: Batch screening of offered jobs (``batch_screen``): its answers fill the cache.
        self.screening = bool(scenario.batch_screen and self.cache is not None
                              and pre_claim_tier(policy, tiers) is Tier.MONITOR)
        #: The job slots (``LoopPolicy.concurrency``): this encoder's own state is the first.
        self.slots: list[Encoder | _Slot] = [self] + [
            _Slot() for _ in range(self.loop_policy.concurrency - 1)]
        #: With several slots, a pause taken by one process freezes the others too: none acts
        #: before this instant (``_thaw``).
        self.frozen_until = -math.inf
        #: When the latest pause began, and every pause's start and length in order: a wait
        #: that is the process's own work (``wait(frozen=True)``) adds each pause that began
        #: before its end, one by one (a running total rounds differently: it moved a single
        #: slot's histories by a float step, an adversarial review of the slots, session 30).
        self.frozen_from = -math.inf
        self.pause_starts: list[float] = []
        self.pause_lengths: list[float] = []
        #: Whether a process of this node is in a pause now (``_pause``).
        self.pausing = False
        #: The attempts running in slots of their own (slot index -> process), and the event
        #: that tells the run loop one has ended (only with several slots).
        self.slot_procs: dict[int, simpy.Process] = {}
        self.slot_freed: simpy.Event | None = None
        self.process = env.process(self.run())

    def schedule(self) -> PollSchedule:
        """A new encoder loop's decisions (a process that starts, or starts again)."""
        return self.schedule_cls(self.loop_policy, self.rng)

    # ------------------------------------------------------------------ body: time, faults

    def _edge(self) -> bool:
        """Whether this bounded draw takes its bound exactly (``edge_rate``; no draw at 0)."""
        return self.sc.edge_rate > 0 and self.rng.random() < self.sc.edge_rate

    def _next(self, per_hour: float, kind: str, after: float | None = None) -> float:
        """The next fault of ``kind``, an exponential gap after ``after`` (the previous one's
        scheduled time and its length; now by default): drawn from the previous *scheduled*
        time, not from when it was handled, the schedule is the same in every chain (CRN)."""
        if per_hour <= 0:
            return math.inf
        t = (self.env.now if after is None else after) + self.faults[kind].expovariate(
            per_hour / 3600.0)
        return t if t < self.world.horizon else math.inf

    def local(self) -> float:
        """This encoder's (drifting) clock, as the protocol sees it."""
        return self.env.now * self.rate

    def wait(self, duration: float, *, frozen: bool = False,
             interrupt: simpy.Event | None = None) -> Generator[simpy.Event, Any, None]:
        """Let ``duration`` pass, living through pauses or dying in a crash.

        A pause freezes the process, not the world: a timer or a reply due during a pause is
        seen when the pause ends, so the wait ends at ``max(its end, the pause's end)``, never
        later (adding every pause's length to one wait would stretch a single stall past P,
        which the model does not allow). ``frozen``: the wait is the process's own work (the
        cancelled work winding down), which a pause of the node stops, so it is extended by
        every pause that began before its end, whoever took it: one this process took or woke
        during, and one another slot's process took and ended meanwhile (left out, a stop
        ended at C, not C + P: mutation testing, session 41). A pause beginning at the very
        instant the wait ends does not extend it (session 30's rule, below).
        ``interrupt``: an event that ends the wait early (a push arriving), seen after a pause
        like any other."""
        env = self.env
        end = env.now + max(duration, 0.0)
        starts, lengths = self.pause_starts, self.pause_lengths
        seen = len(lengths)
        while True:
            while frozen and seen < len(lengths) and starts[seen] < end:
                end += lengths[seen]  # every pause meanwhile stopped this work
                seen += 1
            t = min(end, self.crash_at, self.pause_at)
            if t > env.now:
                if interrupt is None:
                    yield env.timeout(t - env.now)
                elif t == math.inf:
                    yield interrupt  # nothing due: only the event ends this wait
                else:
                    yield env.timeout(t - env.now) | interrupt
            if env.now < self.frozen_until and not (
                    env.now >= end and self.frozen_from == env.now):
                # Another slot's process paused the node. A wait that ends at the very instant
                # the pause begins has ended, as with one slot a wait ending as a pause falls
                # due does (stretched by the pause, a cancelled work's stop came C + P late
                # and the lease failed: an adversarial review of the slots, session 30).
                yield from self._thaw()
                continue
            if env.now >= self.crash_at:
                raise _Crashed
            if env.now >= self.pause_at and env.now < end:
                yield from self._pause()
                continue
            if env.now < end and (interrupt is None or not interrupt.triggered):
                # Woken by a pause instant that moved meanwhile (another slot's pause spaced
                # it, or the float clock landed a step short of it): the wait goes on. It
                # returned early: a restart of 30 s was over in 22 (the same review).
                continue
            if frozen and seen < len(lengths) and starts[seen] < end:
                continue  # another slot's pause began and ended meanwhile: it stopped us too
            return

    def _thaw(self) -> Generator[simpy.Event, Any, None]:
        """Frozen until the node's pause ends (only with several slots: the process that took
        the pause is the one that waits it out; every other resumes here)."""
        env = self.env
        while env.now < self.frozen_until:
            yield env.timeout(self.frozen_until - env.now)

    def idle(self, duration: float) -> Generator[simpy.Event, Any, None]:
        """Wait for the next poll; the gateway may wake us early (to hand out a job twice).

        A pause meanwhile does not stop the loop's timer: the production loop sleeps until
        an instant of its monotonic clock, which runs on while the process is stopped, so
        the wait ends at ``max(its end, the pause's end)``, as ``wait`` does. (Until session
        42 every pause was added to it, as to the work's own stop: polls came later than the
        asyncio driver makes them, a difference no safety checker sees; found by mutation
        testing, no test pinned either rule.)"""
        env = self.env
        wake = env.event()
        self.world.idle[self.name] = wake
        try:
            end = env.now + duration
            while True:
                t = min(end, self.crash_at, self.pause_at, self.shutdown_at)
                if t > env.now:
                    yield env.timeout(t - env.now) | wake
                if env.now < self.frozen_until:
                    yield from self._thaw()  # another slot's process paused the node
                    continue
                if wake.triggered:
                    return
                if env.now >= self.crash_at:
                    raise _Crashed
                if env.now >= self.pause_at:
                    yield from self._pause()
                    continue
                if env.now < end and env.now < self.shutdown_at:
                    continue  # woken by a pause instant that moved meanwhile (``wait``)
                # The wait is over, or a shutdown fell due: as the production loop's idle
                # wait, which a stop ends at once.
                return
        finally:
            self.world.idle.pop(self.name, None)

    def _pause(self, length: float | None = None) -> Generator[simpy.Event, Any, None]:
        """A process pause: everything stops, the work included. ``length`` None: a random
        pause (up to P, exactly P at the edge, or P × tail factor outside the model)."""
        sc, rng = self.sc, self.faults["pause"]
        scheduled = length is None
        if scheduled and self.env.now >= self.world.horizon:
            # The faults have stopped (H): a pause that fell due before H but was held up (the
            # node down for a restart, or spaced C after the last pause) does not start now.
            # It did: pauses C apart from a restart after H ended a lease, and L1, whose
            # premise is that no fault happens after H, failed (found by the L1-terms review,
            # 2026-12-05: P = 15 s, crashes until 60 s, a 90 s restart).
            self.pause_at = math.inf
            return
        if length is None:
            edge = sc.edge_rate > 0 and rng.random() < sc.edge_rate  # _edge, on this stream
            length = sc.pause_max if edge else rng.random() * sc.pause_max
            if sc.pause_tail and rng.random() < sc.pause_tail:
                length = sc.pause_max * sc.pause_tail_factor  # outside the model
        now = self.env.now
        self.history.add(now, self.name, None, "pause", "invoke", round(length, 3))
        # The work is frozen too: its remaining events move by the pause, its faults' end too;
        # every slot's, and every other process of the node waits it out (``_thaw``).
        fault_end = now + length
        for slot in self.slots:
            if slot.work:
                # Only what is still to come: a report (or the work's end) already due when
                # the pause began happened before it (moved, the work's end was recorded
                # inside the pause: the same review).
                slot.work = [(t + length if t > now else t, ev) for t, ev in slot.work]
                if slot.work_tail:
                    slot.work_tail = [(t + length, ev) for t, ev in slot.work_tail]
                    if slot.work[-1][1] is _WORK_FAILED and (
                            slot.work[-1][0] >= self.world.horizon):
                        # The failure, planned before the faults stop, now falls after:
                        # a fault after the faults stopped. It does not happen (as
                        # ``_maybe_fail`` draws none there); the work runs on to its end.
                        slot.work[-1:] = slot.work_tail
                        slot.work_tail = []
            if slot.work_fault_end > now:
                slot.work_fault_end += length
            fault_end = max(fault_end, slot.work_fault_end)
        if self.freezes is not None:
            self.freezes.append((now, now + length))
        self.world.fault_until(fault_end)
        self.pause_at = math.inf
        self.frozen_until = max(self.frozen_until, now + length)
        self.frozen_from = now
        self.pause_starts.append(now)
        self.pause_lengths.append(length)
        self.pausing = True
        try:
            yield self.env.timeout(length)
        finally:
            self.pausing = False
        self.history.add(self.env.now, self.name, None, "pause", "ok")
        self.pause_ended = self.env.now
        if scheduled:
            self.pause_due = self._next(self.sc.pauses_per_hour, "pause",
                                        after=self.pause_due + length)
            self.pause_at = self._spaced(self.pause_due)
        elif self.sc.pauses_per_hour > 0:
            # An await-point pause: the caller restores the schedule. This draw is only the one
            # a tape expects here (on the call-ordered stream, not the schedule's).
            self.rng.random()

    def _spaced(self, at: float) -> float:
        """A random pause due at ``at``, moved to no sooner than C after the last pause."""
        return max(at, self.pause_ended + self.sc.cancel_latency)

    def _await_point(self) -> Generator[simpy.Event, Any, None]:
        """An await point of the driver (between a decision and its request, between a reply
        and its handling, when a timer fires): the adversary may pause exactly P here."""
        sc = self.sc
        now = self.env.now
        if self.pausing or now < self.frozen_until:
            # The node is paused, or its pause ends at this very instant and the process that
            # took it has not yet noted its end: no second pause on top of it, or back to back
            # (only with several slots; a freeze of 2P broke the model: the same review).
            return
        last = max(self.pause_ended, self.frozen_until)
        if sc.await_pause_rate and now < self.world.horizon and now > last and (
                now >= last + sc.cancel_latency) and (
                self.rng.random() < sc.await_pause_rate):
            pending = self.pause_at
            length = sc.pause_max
            if sc.pause_split_rate and self.rng.random() < sc.pause_split_rate:
                length *= self.rng.random()  # the first piece of a split freeze (below)
            yield from self._pause(length)
            # The random pause schedule is not disturbed, except that a random pause due
            # during this one, or within C of its end, is moved to C after it.
            self.pause_at = self._spaced(pending)
        elif sc.pause_split_rate and now < self.world.horizon and (
                now < last + sc.cancel_latency) and (
                self.rng.random() < sc.pause_split_rate):
            # A pause within C of the last one: one freeze of P split in pieces with the driver
            # running in between (a reply handled, a request sent), as long as the freeze in
            # every window of P + C stays within P. It lasts all that is left: the edge.
            budget = self._freeze_budget(now)
            if budget > _MIN_SPLIT:
                pending = self.pause_at
                yield from self._pause(budget)
                self.pause_at = self._spaced(pending)

    def _freeze_budget(self, now: float) -> float:
        """The longest pause that may start at ``now``: the largest d <= P such that
        d + (the freeze of earlier pauses within [now + d - (P + C), now]) <= P. That sum
        never decreases as d grows (the window's start moves right by d, dropping at most d
        of freeze), so a bisection finds it; windows ending within the pause hold less."""
        assert self.freezes is not None
        sc = self.sc
        window, most = sc.pause_max + sc.cancel_latency, sc.pause_max

        def frozen_from(start: float) -> float:
            return sum(max(0.0, min(b, now) - max(a, start)) for a, b in self.freezes or ())

        if frozen_from(now - window) <= 0.0:
            return most
        lo, hi = 0.0, most
        for _ in range(50):
            mid = (lo + hi) / 2
            if mid + frozen_from(now + mid - window) <= most:
                lo = mid
            else:
                hi = mid
        return lo

    def _crash(self) -> None:
        now = self.env.now
        if self.cache is not None:
            self.cache.clear()  # a new process starts with an empty cache
        for slot in self.slots:
            if slot.work_job is not None:
                self._record_natural_end(slot, until=now)
        self.history.add(now, self.name, None, "crash", "info")
        self.world.fault_until(now)
        for slot in self.slots:
            slot.work, slot.work_job, slot.carried = [], None, None
        active = self.env.active_process
        for proc in self.slot_procs.values():
            if proc.is_alive and proc is not active:
                proc.interrupt("crash")  # the attempt dies with the node
        self.slot_procs.clear()
        self.crash_at = math.inf

    # ------------------------------------------------------------------ the encoder loop

    def run(self) -> Generator[simpy.Event, Any, None]:
        """The encoder loop: :class:`verifier.PollSchedule` decides when to poll, which offered
        job to try and how long to wait (the shipped ``EncoderLoop``'s decisions, on this
        encoder's clock); this performs them. A process that restarts (a crash, a shutdown)
        starts a new schedule, as a new ``EncoderLoop`` would.

        With one slot (``concurrency`` 1, the default) the attempt runs in this process, and
        the loop asks again once it has ended and the encoder's own time between jobs (up to
        5 s) is over. With more, each attempt runs in a process of its own (``_slot``), as
        ``EncoderLoop`` runs each guard in a task, and keeps its slot through that time
        between jobs too: the loop polls again at once while the schedule has a slot free,
        and waits for one when it has none (:class:`verifier.AllSlotsBusy`) or the job it
        chose needs one; an idle wait is not cut short when a job ends, as in
        ``EncoderLoop``."""
        env, sc = self.env, self.sc
        many = len(self.slots) > 1
        yield env.timeout(self.rng.random() * sc.poll_interval)  # a random second
        schedule = self.schedule()
        while True:
            try:
                if env.now >= self.shutdown_at:
                    while self.slot_procs:
                        # Every running attempt gives its job back first (each protocol is
                        # told at its next wait), then the node goes down.
                        yield from self._until_a_slot_frees()
                    yield from self._restart()
                    schedule = self.schedule()
                    continue
                now = self.local()
                step = schedule.next(now)
                kind = type(step)
                if kind is IdleUntil:
                    # Local seconds to simulated ones (``local()`` is env.now × rate).
                    yield from self.idle((step.until - now) / self.rate)
                    continue
                if kind is AllSlotsBusy:
                    yield from self._until_a_slot_frees()
                    continue
                job = yield from self._poll(schedule, step.source)
                if job is None or env.now >= self.shutdown_at:
                    continue  # (a shutdown that fell due meanwhile: no new job, as EncoderLoop)
                schedule.started(job.id)
                if many:
                    while len(self.slot_procs) == len(self.slots):
                        # The schedule counts a slot free when its job ends; the slot is
                        # free once the encoder's time between jobs is over too.
                        yield from self._until_a_slot_frees()
                    index = next(i for i in range(len(self.slots)) if i not in self.slot_procs)
                    self.slot_procs[index] = env.process(self._slot(schedule, job.id, index))
                    continue
                outcome = yield from self.attempt(job.id)
                self._ended(schedule, job.id, outcome)
                # The encoder's own time between jobs (its scratch area cleaned up, say): a
                # body, not a decision.
                yield from self.wait(self.rng.random() * 5.0)
            except _Crashed:
                while self.pausing:
                    # A slot's process is ending the node's pause at this very instant: let it
                    # (its bookkeeping draws the next pause), then crash.
                    yield env.timeout(0)
                due = self.crash_at  # the scheduled crash (handled after a pause: later)
                self._crash()
                yield env.timeout(sc.restart_delay)
                self.crash_at = self._next(sc.crashes_per_hour, "crash",
                                           after=due + sc.restart_delay)
                schedule = self.schedule()

    def _poll(self, schedule: PollSchedule, source: str
              ) -> Generator[simpy.Event, Any, _Offered | None]:
        """Ask the simulated gateway (the one source) for a job; the offered job the schedule
        chooses, or None (nothing offered, or 429: the schedule holds the source back)."""
        world, sc = self.world, self.sc
        hint = world.throttled(Tier.GATEWAY) if sc.throttle_rate else None
        if hint is not None:
            # 429 with Retry-After: the schedule does not ask again sooner.
            yield from self.wait(world.latency(sc.gateway_latency))
            schedule.poll_failed(source, self.local(), retry_after=hint)
            return None
        job_id, delay = world.gw_poll(self.did)
        yield from self.wait(delay)
        offered = [] if job_id is None else [_Offered(job_id)]
        if self.screening and offered:
            ids = list(schedule.screen(offered, self.local()))
            if ids:
                yield from self._screen(ids)
        return schedule.offered(source, offered, self.local())

    def _ended(self, schedule: PollSchedule, job_id: str, outcome: Outcome) -> None:
        now = self.local()
        # A tier's Retry-After still to come (the protocol kept it): no job sooner.
        until = outcome.retry_until
        schedule.ended(job_id, now, processed=outcome.kind is _PROCESSED, code=outcome.code,
                       retry_after=None if until is None else until - now)

    def _slot(self, schedule: PollSchedule, job_id: str, index: int
              ) -> Generator[simpy.Event, Any, None]:
        """One attempt in slot ``index``, in a process of its own (``concurrency`` above 1).
        A crash ends it where it stands (``_Crashed`` seen here first, or the run loop's
        interrupt): the run loop cleans up after the node."""
        try:
            outcome = yield from self.attempt(job_id, self.slots[index])
            self._ended(schedule, job_id, outcome)
            # The encoder's own time between jobs, as with one slot: the slot is taken until
            # it is over (the schedule may poll meanwhile; a job it chooses waits for it).
            yield from self.wait(self.rng.random() * 5.0)
        except (_Crashed, simpy.Interrupt):
            return
        del self.slot_procs[index]
        freed = self.slot_freed
        if freed is not None and not freed.triggered:
            freed.succeed()

    def _until_a_slot_frees(self) -> Generator[simpy.Event, Any, None]:
        self.slot_freed = self.env.event()
        try:
            yield from self.wait(math.inf, interrupt=self.slot_freed)
        finally:
            self.slot_freed = None

    def _restart(self) -> Generator[simpy.Event, Any, None]:
        """After a graceful shutdown (the running attempt, if any, has given its job back):
        down for ``restart_delay``, then a new shutdown drawn."""
        self.history.add(self.env.now, self.name, None, "shutdown", "info")
        self.world.fault_until(self.env.now)
        if self.cache is not None:
            self.cache.clear()
        due = self.shutdown_at  # scheduled; handled once the attempt gave its job back
        # The next one is drawn before the node goes down, not after: a crash while it is down
        # ends this wait (``_Crashed``), and a shutdown left due would then take the node down
        # a second time once the crash's own restart is over (an adversarial review,
        # 2026-12-04: 70 s down instead of 30, and L1 late). The draw is the same either way.
        for slot in self.slots:
            slot.shutdown_told = False
        self.shutdown_at = self._next(self.sc.shutdowns_per_hour, "shutdown",
                                      after=due + self.sc.restart_delay)
        yield from self.wait(self.sc.restart_delay)

    def attempt(self, job_id: str, slot: Encoder | _Slot | None = None
                ) -> Generator[simpy.Event, Any, Outcome]:
        """One protocol run for one job: perform each action, feed back each answer.

        The hot loop of every run (tens of protocol steps per job), kept in one generator: each
        resume of the encoder's process passes through every generator it is delegating to, so
        the action's dispatch is inlined here and the clock is read directly."""
        protocol = self.protocol(job_id, me=self.did, policy=self.policy, tiers=self.tiers)
        if slot is None:
            slot = self
        try:
            env, rate, pausable = self.env, self.rate, self.pausable
            handle = protocol.handle
            now = env.now * rate
            action = protocol.start(now).action
            while not isinstance(action, Done):
                if pausable:
                    yield from self._await_point()  # decided, not yet sent
                kind = type(action)
                if kind is Sleep:
                    answer = yield from self._sleep(action.until, slot)
                elif kind is StartWork:
                    answer = self._start(job_id, slot)
                elif kind is CancelWork:
                    answer = yield from self._cancel(job_id, slot)
                else:
                    if self.push is not None and kind is Claim:
                        # Subscribed before the claim leaves, so its own landing is pushed too.
                        self.push.subscribe(job_id, self.name, slot_pushed(self, slot))
                        slot.push_job = job_id
                    answer = yield from self._io(job_id, action)
                if pausable:
                    yield from self._await_point()  # answered, not yet handled
                t = env.now
                local = t * rate
                if local > now:
                    now = local
                if t >= self.shutdown_at:
                    # (a user protocol may lack request_shutdown)
                    stop = getattr(protocol, "request_shutdown", None)
                    if stop is not None:
                        stop()  # as the asyncio driver does: no claim from now on
                if type(answer) is Woke and action.until > now:
                    # Woken within the float clock's rounding of the sleep's end (``_sleep``):
                    # reported as its end, or a protocol sleeping to that deadline again would
                    # spin at one instant forever (found by the explorer, zero-latency tiers).
                    now = action.until
                action = handle(answer, now).action
            outcome = action.outcome
            kind_name = outcome.kind.value
            self.outcomes[kind_name] = self.outcomes.get(kind_name, 0) + 1
            # What the run told its caller: whether the job may still be ours (``held``).
            # ``check_give_back`` holds it against what the gateway did afterwards.
            self.history.add(env.now, self.name, job_id, "outcome", "ok",
                             (outcome.code, outcome.held))
            return outcome
        finally:
            if self.push is not None:
                self.push.unsubscribe(job_id, self.name)
                slot.hints.clear()
                slot.push_job = None

    # ------------------------------------------------------------------ the driver

    def _connect(self, rate: float, by: float | None, *, edge: bool
                 ) -> Generator[simpy.Event, Any, bool]:
        """A gateway finish's or ping's wait for its connection (with probability ``rate``)
        before it can leave: False if ``by`` (the finish's ``send_by``, the ping's deadline,
        on the protocol's clock) came first, as the asyncio driver does not send it then
        (answered at that instant), else True once it may leave. ``edge``: the connection may
        be ready exactly at ``by`` (a finish; a ping ready then meets its own deadline check
        in ``_io``). The driver may pause between the connection and the check (an await
        point: the check sees the pause), and up to P after it, before the bytes leave: what
        ``TimingModel.finish_slack``'s P + G allows for."""
        left = None if by is None else by / self.rate - self.env.now
        delay = self.world.connect_delay(left if edge else None, rate)
        if delay <= 0:
            return True
        if left is not None and delay > left:
            yield from self.wait(left)
            return False
        ready = self.env.now + delay
        yield from self.wait(delay)
        if self.pausable:
            # Connected, not yet checked: the task resumes after the connection is made and
            # only then runs the check (httpcore's trace hook in the asyncio driver), so the
            # adversary may pause it here; the check must see that pause.
            yield from self._await_point()
        if by is not None and self.env.now > ready + 1e-9 and self.env.now * self.rate > by:
            # A pause while it connected took it past ``by``: the check refuses it. (Only
            # then: ready at the edge, the float clock may land a step past it.)
            return False
        if self.pausable:
            yield from self._await_point()  # checked, not yet left
        return True

    def _screen(self, job_ids: list[str]) -> Generator[simpy.Event, Any, None]:
        """One batch status request for the offered jobs; the protocol's screening rule
        (``screen``) says which answers may stand in for a pre-claim read, as cache entries
        stamped with the batch's decision instant."""
        assert self.cache is not None
        job = job_ids[0] if len(job_ids) == 1 else None
        self.history.add(self.env.now, self.name, job, "screen", "invoke", Tier.MONITOR)
        decided = self.local()
        answer, delay = self.world.monitor_batch(job_ids)
        yield from self.wait(delay)
        if answer is None:
            self.history.add(self.env.now, self.name, job, "screen", "fail", None)
            self.cache.failed(Tier.MONITOR, decided=decided)  # older answers now unusable
            return
        self.history.add(self.env.now, self.name, job, "screen", "ok",
                         tuple(sorted(answer.items())))
        screen = getattr(self.protocol, "screen", screened)
        entries = screen(Tier.MONITOR, job_ids, answer)
        for job_id in unusable_answers(job_ids, answer, entries):
            self.cache.forget(job_id)  # answered, but as nothing an entry may say
        for job_id, observation in entries.items():
            self.cache.put(observation, job_id, decided=decided)

    def _pushed(self, job_id: str, hint: Hinted, slot: Encoder | _Slot | None = None) -> None:
        """A push arrived: kept for the protocol's next wait, which it ends. One sent while an
        earlier attempt was subscribed (delivered late) is not this attempt's, and pushes
        that arrive before the next wait are merged into one (``Hinted.merged``), as the
        guard does."""
        if slot is None:
            slot = self
        if job_id != slot.push_job:
            return
        if not slot.hints:
            slot.hint_at = self.env.now
        slot.hints[:] = [slot.hints[0].merged(hint, self.did) if slot.hints else hint]
        if slot.hint_wake is not None and not slot.hint_wake.triggered:
            slot.hint_wake.succeed()

    def _cached(self, job_id: str, action: Observe) -> Answer | None:
        """The status cache's answer to ``action``, if it has one young enough: its age runs
        from the instant the read was decided (before it was sent), the safe side."""
        if self.cache is None:
            return None
        entry = self.cache.lookup(action.tier, job_id, max_age=action.max_age, now=self.local())
        if entry is None:
            return None
        obs, decided = entry
        # The record says when the answer's read was decided (simulated time), so a checker
        # can tell an answer older than this encoder's own last write to the job.
        self.history.add(self.env.now, self.name, job_id, "cached", "ok",
                         (action.tier, encoder_name(obs.owner) if obs.owner else None,
                          obs.status, decided / self.rate, action.purpose))
        return Observed(obs)

    def _io(self, job_id: str, action: Any) -> Generator[simpy.Event, Any, Answer]:
        """One request: its invoke record now, the world's answer after the reply delay."""
        cache = self.cache
        if cache is not None:
            kind = type(action)
            if kind is Observe:
                hit = self._cached(job_id, action)
                if hit is not None:
                    return hit
                decided = self.local()
            elif kind is Claim or kind is Finish or kind is Release:
                # Our own writes change what the tiers say: forget what they said before.
                cache.forget(job_id)
        op, arg = request_record(action)
        env, add = self.env, self.history.add
        action_type = type(action)
        now = env.now  # the request is decided, sent and served at this one instant
        add(now, self.name, job_id, op, "invoke", arg)
        if action_type is Finish or action_type is Heartbeat:
            finish = action_type is Finish
            rate = self.sc.connect_delay_rate if finish else self.sc.ping_connect_rate
            if rate and action.via is Tier.GATEWAY:
                # A finish is bounded by its send_by; a ping, which has none, by its deadline.
                by = action.send_by if finish else action.deadline
                if not (yield from self._connect(rate, by, edge=finish)):
                    add(env.now, self.name, job_id, op, "fail", "not sent" if finish
                        else "deadline")
                    return WriteAnswered(WriteOutcome.NOT_SENT, detail="not connected by "
                                         "send_by") if finish else _past_deadline(action)
                now = env.now  # sent now, after its connection
        deadline = getattr(action, "deadline", None)
        left = math.inf if deadline is None else deadline / self.rate - now
        if left <= 0:
            # Already past the lease end: not sent at all (as the production guard does).
            add(now, self.name, job_id, op, "fail", "deadline")
            return _past_deadline(action)
        answer, delay, phase, value = self.world.serve(self.did, job_id, action)
        if delay > left:
            # The protocol's deadline (the lease end, on this encoder's clock): answer by then
            # whatever the tier does; the request itself has been served (a write may land).
            delay, phase, value = left, "fail", "deadline"
            answer = _past_deadline(action)
            failed = False
        else:
            # A read the tier failed: its answers from before become unusable
            # (StatusCache.failed) once the failure is known, after the reply delay, as the
            # guard marks it (adversarial review, session 36: marked at the send, seconds early).
            failed = cache is not None and kind is Observe and type(answer) is TierFailed
        end = now + delay
        clear = end < self.crash_at and end < self.pause_at  # no crash or pause due by then
        if clear and self.fast_paths:
            yield env.timeout(delay)  # the common case, without a frame
            if env.now < self.frozen_until:
                yield from self.wait(0.0)  # another slot's process paused the node meanwhile
        else:
            if clear and delay == 0:
                # The fast path yields even for a reply due at once (the instant's other events
                # go first), where ``wait(0)`` returns at once: with the fast paths off, the
                # same yield, so the two compare like with like (tests/sim/test_fast_paths.py;
                # frozen regression worlds rest on that order).
                yield env.timeout(0)
            yield from self.wait(delay)
        add(env.now, self.name, job_id, op, phase, value)
        if failed:
            cache.failed(action.tier, decided=decided)
        elif cache is not None and isinstance(answer, Observed):
            cache.put(answer.observation, job_id, decided=decided)
        result: Answer = answer
        return result

    def _start(self, job_id: str, slot: Encoder | _Slot | None = None) -> Answer:
        # The n-th start of a job draws its work lengths from ("work", job, n): the same in
        # every chain, whichever encoder starts it (CRN).
        sc, rng, t = self.sc, self.streams.next_keyed("work", job_id), self.env.now
        if slot is None:
            slot = self
        self.history.add(t, self.name, job_id, "start", "ok")
        slot.work_fault_end = -math.inf
        slot.work_tail = []
        sigma = sc.phase_sigma
        events: list[tuple[float, Answer]] = []
        stuck = self._stuck_input(job_id, rng) if sc.stuck_rate else None
        for phase, mean in zip(_PHASES, (sc.download_mean_s, sc.encode_mean_s, sc.upload_mean_s),
                               strict=True):
            events.append((t, PhaseChanged(phase)))
            # Lognormal with the given mean: mu = ln(mean) - sigma²/2.
            length = rng.lognormvariate(math.log(max(mean, 1e-9)) - sigma * sigma / 2, sigma)
            # Its stall too: keyed by (job, attempt, phase), not the encoder's call order.
            stall = self.streams.keyed("stall", job_id, self.streams.count("work", job_id),
                                       phase) if sc.stall_rate else None
            t = self._progress(events, phase, t, length, stall,
                               stuck if phase == "download" else None, slot=slot)
        events.append((t, _WORK_DONE))
        if sc.work_fail_rate:
            self._maybe_fail(events, job_id, slot)
        slot.work, slot.work_job, slot.carried = events, job_id, None
        return _WORK_STARTED

    def _maybe_fail(self, events: list[tuple[float, Answer]], job_id: str,
                    slot: Encoder | _Slot) -> None:
        """The attempt's work fails on its own (``work_fail_rate``) at a point drawn uniformly
        within it: its events from there on are replaced by :data:`_WORK_FAILED`. A fault, so
        none at or after the faults stop: the events it replaced are kept (``work_tail``), and
        a pause that moves the failure there puts them back (``_pause``; until an adversarial
        review of session 46, pauses moved failures up to tens of seconds past the faults'
        end). Drawn from ``("fail", job, attempt)``, the same in every chain, and apart from
        the work's lengths (which stay what they were)."""
        rng = self.streams.keyed("fail", job_id, self.streams.count("work", job_id))
        if rng.random() >= self.sc.work_fail_rate:
            return
        start = events[0][0]
        at = start + rng.random() * (events[-1][0] - start)
        if at >= self.world.horizon:
            return
        keep = 0
        while keep < len(events) and events[keep][0] < at:
            keep += 1
        slot.work_tail = events[keep:]
        del events[keep:]
        events.append((at, _WORK_FAILED))

    def _stuck_input(self, job_id: str, rng: Any) -> float | None:
        """Where the job's input hangs, as a share of its download (``stuck_rate``), or None:
        drawn at its first start, then the same in every attempt, whoever makes it."""
        stuck = self.world.stuck_inputs
        if job_id not in stuck:
            stuck[job_id] = rng.random() if rng.random() < self.sc.stuck_rate else None
        return stuck[job_id]

    def _progress(self, events: list[tuple[float, Answer]], phase: str, t: float,
                  length: float, rng: Any, stuck: float | None = None, *,
                  slot: Encoder | _Slot) -> float:
        """The phase's progress reports, every ``progress_step_s`` of work, and maybe one
        stall (no report for a while, the phase that much longer; a fault, so none after the
        faults stop). Returns the phase's end.
        Progress only grows, so every report is a change: ``download_pct`` while downloading,
        then ``pct`` from 0 to 90 while encoding and from 90 to 100 while uploading.
        A stuck input (``stuck``, a share of the phase) adds a report exactly there, the same
        value in every attempt, and a hang until the faults stop."""
        sc = self.sc
        stall_at, stall = math.inf, 0.0
        horizon = self.world.horizon
        if sc.stall_rate and t < horizon and rng.random() < sc.stall_rate:
            stall_at = rng.random() * length
            # A fault: it ends when the faults stop, at the latest.
            stall = min(rng.random() * 2 * sc.progress_timeout,
                        max(0.0, horizon - t - stall_at))
        low, high = _PCT_RANGE[phase]
        step = sc.progress_step_s
        points, done = [], step
        while done < length:
            points.append(done)
            done += step
        hang_at, hang = math.inf, 0.0
        if stuck is not None:
            hang_at = stuck * length
            reached = t + hang_at + (stall if hang_at > stall_at else 0.0)
            hang = max(0.0, horizon - reached)
            points = sorted([*points, hang_at])
            if stall and stall_at > hang_at:
                # The hang moved the stall to after its end, H: cut it there too (drawn
                # before the hang was known, it ran up to 2T past H: a fault after the faults
                # stopped; found by a direct test of the work model, session 42).
                stall = min(stall, max(0.0, horizon - (t + stall_at + hang)))
        for done in points:
            share = round(low + (high - low) * done / length, 3)
            at = (t + done + (stall if done > stall_at else 0.0)
                  + (hang if done > hang_at else 0.0))
            events.append((at, Progressed(0.0, share) if phase == "download" else
                           Progressed(share, 100.0)))
        if stall or hang:
            # When the stall and the hang end (each delays what follows it). Noted when the
            # work is planned: a work cancelled before its stall leaves the world's
            # ``last_fault`` later than it need be, which only makes L1 more lenient.
            # (A stall after a hang has been cut to nothing above: only a stall before the
            # hang moves it.)
            end = max(t + stall_at + stall if stall else -math.inf,
                      t + hang_at + hang + (stall if hang_at > stall_at else 0.0) if hang
                      else -math.inf)
            slot.work_fault_end = max(slot.work_fault_end, end)
            self.world.fault_until(end)
        return t + length + stall + hang

    def _record_natural_end(self, slot: Encoder | _Slot, until: float) -> None:
        """If the slot's work ended on its own before ``until``, record its stop then."""
        work = slot.work
        if work and type(end := work[-1][1]) is WorkEnded and work[-1][0] <= until:
            self._record_end(slot, work[-1][0], end)

    def _record_end(self, slot: Encoder | _Slot, at: float, end: WorkEnded) -> None:
        """The slot's work ended on its own at ``at``: ``done``, or ``failed`` (a fault, noted
        as one when it happens, not when it is planned: a work cancelled before its failure
        did not fail, and L1 counts its on-time clock from the last fault)."""
        if end.succeeded:
            self.history.add(at, self.name, slot.work_job, "stop", "ok", "done")
        else:
            self.history.add(at, self.name, slot.work_job, "stop", "ok", "failed")
            self.world.fault_until(at)
        slot.work_job = None

    def _cancel(self, job_id: str, slot: Encoder | _Slot | None = None
                ) -> Generator[simpy.Event, Any, Answer]:
        if slot is None:
            slot = self
        now = self.env.now
        self.history.add(now, self.name, job_id, "cancel", "invoke")
        self._record_natural_end(slot, until=now)
        if slot.work_job is not None:
            # C: stopping takes a while (exactly C at the edge); the interval is held until
            # the stop is confirmed.
            slot.work = []
            latency = self.sc.cancel_latency if self._edge() else (
                self.rng.random() * self.sc.cancel_latency)
            yield from self.wait(latency, frozen=True)
            self.history.add(self.env.now, self.name, job_id, "stop", "ok", "cancelled")
        slot.work, slot.work_job, slot.carried = [], None, None
        # Pushes received until the work stopped are dropped, as the guard's stop_work drops
        # every queued event (they told of a job the protocol is already leaving).
        slot.hints.clear()
        return WorkStopped()

    def _due_report(self, now: float, slot: Encoder | _Slot) -> Answer:
        """The work's reports due by ``now``, coalesced: its end if it has come (nothing needs
        a report after it), else the latest phase change, then the latest progress.

        A report does not end a :class:`Sleep` by itself (the protocol reads a phase or a
        progress value only when it decides a ping, which it does after waking), so the
        reports since the last wake-up are delivered together when the protocol next wakes,
        each value once (the guard's ``ClaimedJob`` coalesces them the same way, though it
        delivers at once): fewer protocol steps and SimPy events per job. A progress report
        is absolute (both percentages), so the latest says all the earlier ones did."""
        work = slot.work
        due = 1
        while due < len(work) and work[due][0] <= now:
            due += 1
        at, last = work[due - 1]
        if isinstance(last, WorkEnded):
            del work[:due]
            self._record_end(slot, at, last)
            return last
        phase = progress = None
        for _, event in work[:due]:
            if type(event) is PhaseChanged:
                phase = event
            else:
                progress = event
        del work[:due]
        if phase is None:
            assert progress is not None
            return progress
        # The progress is delivered at the next wait, before anything that came meanwhile,
        # as the guard's ``_carried`` (stamped with this instant, a push that had come before
        # it went first: an adversarial review of the drivers, session 45).
        slot.carried = progress
        return phase

    def _sleep(self, until: float, slot: Encoder | _Slot
               ) -> Generator[simpy.Event, Any, Answer]:
        env, rate = self.env, self.rate
        while True:
            now = env.now
            work = slot.work
            ended = bool(work) and type(work[-1][1]) is WorkEnded and work[-1][0] <= now
            if slot.carried is not None:
                carried, slot.carried = slot.carried, None
                if not ended:  # the work's end supersedes its reports (``_due_report``)
                    return carried
            # First come, first delivered, as the guard's queue does: the work's due events
            # (at its end's instant once it has ended: the end supersedes its reports, as in
            # the guard), a push (at its first arrival), a shutdown request (at its instant).
            # Ties go to the work, then the shutdown. Until session 33 the reports always went
            # before a push; until session 45 the work's events (its end included) always
            # went before a shutdown, and a shutdown before a push (an adversarial review of
            # the drivers: a shutdown requested before the work ended was a finish here and a
            # cancellation in production).
            first, at = 0, math.inf
            if work and work[0][0] <= now:
                first, at = 1, work[-1][0] if ended else work[0][0]
            if now >= self.shutdown_at and not slot.shutdown_told and self.shutdown_at < at:
                first, at = 2, self.shutdown_at
            if slot.hints and slot.hint_at < at:
                first = 3
            if first == 1:
                return self._due_report(now, slot)
            if first == 2:
                # As the asyncio driver does: the request is an answer to the next wait.
                slot.shutdown_told = True
                return ShutdownRequested()
            if first == 3:
                return slot.hints.pop(0)
            remaining = (until - now * rate) / rate
            if remaining <= 1e-9:
                return _WOKE
            target = now + remaining
            if not slot.shutdown_told:
                target = min(target, self.shutdown_at)
            if work:
                # Only the work's end wakes the protocol. Its phase and progress reports wait
                # for the next wake-up (``_due_report``): no decision reads them before one.
                target = min(target, work[-1][0])
            if self.push is None:
                # ``wait(target - now)`` without its frame in the common case (no crash or
                # pause due before the end): the same timeout, to the same float instant.
                end = now + max(target - now, 0.0)
                if end < self.crash_at and end < self.pause_at and self.fast_paths:
                    if end > now:
                        yield env.timeout(end - now)
                        now = env.now
                        if now >= self.crash_at or now >= self.pause_at or (
                                now < self.frozen_until):
                            # Landed a rounding past the end, on a crash or pause, or in
                            # another slot's pause: as wait().
                            yield from self.wait(end - now)
                else:
                    yield from self.wait(target - now)
                continue
            slot.hint_wake = self.env.event()
            try:
                yield from self.wait(target - self.env.now, interrupt=slot.hint_wake)
            finally:
                slot.hint_wake = None


#: A split pause shorter than this is not made (the budget is spent).
_MIN_SPLIT: Final = 1e-6


def slot_pushed(encoder: Encoder, slot: Encoder | _Slot) -> Callable[[str, Hinted], None]:
    """The push channel's callback for ``slot``'s attempt."""
    if slot is encoder:
        return encoder._pushed
    return lambda job_id, hint: encoder._pushed(job_id, hint, slot)


def _past_deadline(action: Any) -> Answer:
    """The answer to a request not answered by its deadline: no read, or an unknown write."""
    if isinstance(action, Observe):
        return TierFailed(action.tier, "deadline: lease end reached")
    return WriteAnswered(WriteOutcome.UNKNOWN, detail="deadline")

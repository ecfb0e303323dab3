"""Stateful suite: an adversary schedules the pure protocol; S2 and S3 after every step.

The race suites run whole simulations whose schedule comes from the simulator's own loop. Here a
Hypothesis :class:`~hypothesis.stateful.RuleBasedStateMachine` *is* the scheduler: it holds a
simulated network (:class:`sim._world.World`) and 2–4 encoders, each running an
:class:`~verifier.protocol.OwnershipProtocol` attempt on one job, and chooses what happens next:

``advance``/``jump``  time passes (by ``dt``, or to the next deadline): delayed writes land, the
                  monitor's mirror moves, the reassignment scan runs, and every encoder that is
                  not paused performs its actions as they fall due (pre-claim check, accept,
                  settle, verification, start, pings, re-checks, cancel, finish, release);
``step``          one due encoder acts before the others (orders accepts and reads that fall
                  due at the same instant);
``pause``         an encoder freezes for up to P (its actions wait; its work's interval stays
                  open);
``lie``           the gateway double-hands a job just assigned to another encoder (within G) to
                  an encoder about to accept it, as ``World.gw_poll`` does: its accept is judged
                  on a stale read and may pass (double accept, last writer wins);
``rig``           the adversary picks the network's next random draws: how late a write lands
                  (up to G), how stale the mirror is (up to Δ), whether a reply is lost, how
                  long a cancel takes (up to C): "delay a write", "hold the mirror back";
``change_phase``  the running work enters download/encode/upload;
``finish_work``   an encoder's work ends (succeeded or failed); its sleep hears of it first;
``outage``        the gateway's server (gateway, aid, monitor) goes down while someone works,
                  and time passes through it: the loss of ownership during work;
``crash``         an encoder dies: its work stops, writes it sent still land;
``restart``       an idle, crashed or finished encoder starts a new attempt on the job.

The machine contains no ownership decision: every decision is the protocol's. It is a second
driver (``sim/_encoder.py`` without its polling loop and its random body) plus an adversary, and
it records the history records that driver records, so the simulator's checkers judge it.

The timing model (``docs/safety-model.md``) is what makes the invariants meaningful, so the machine
never leaves it:

* a request is answered by the world when it is sent; its reply reaches the encoder after the
  world's reply delay (writes that land while a request is served land before the reply);
* an encoder acts as soon as an action is due (a reply arrived, a deadline passed, a work event
  queued), unless paused; a pause delays each action at most P past the moment it fell due;
* a cancelled work stops at most C after the cancel;
* clocks drift by at most ε over one reassignment timeout T (the sim's encoders' rate);
* every world draw comes from a Hypothesis-drawn tape (``Streams.from_tape``-style: tape, then a
  drawn seed) or from rigged values, all in [0, 1), which the world scales into its bounds;
* the job has been queued for Δ when the first encoders look at it.

The suite has teeth: the same machine, driving the documented chain and two canaries, must find
their violations within a stated budget, in worlds of two encoders, shrunk to a few steps.

The implementation under test is the ``protocol`` fixture (``--protocol`` / ``SPK_PROTOCOL``),
which is why the machines are built by :func:`machine_for` inside ordinary test functions rather
than exposed as ``Machine.TestCase`` classes (a state machine class cannot take fixtures).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
import simpy
from hypothesis import HealthCheck, Phase, settings, target
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conformance.contract import PROCESSABLE_STATUSES
from conformance.worlds import BASE
from sim import (
    WORLD,
    CheckResult,
    History,
    Streams,
    TapeRandom,
    World,
    check_s2,
    check_s3,
    request_record,
)
from verifier import Policy, TierSet
from verifier.protocol import (
    Action,
    Answer,
    CancelWork,
    Claim,
    Done,
    Observe,
    OwnershipProtocol,
    PhaseChanged,
    Sleep,
    StartWork,
    Woke,
    WorkEnded,
    WorkStarted,
    WorkStopped,
)

__all__ = ["OwnershipMachine", "Setup", "machine_for", "setups"]

JOB = "job-000000"
MAX_ENCODERS = 4
#: The timing model every machine runs under (Δ 5 s, G 2 s, P 2 s, ε 1 s, C 3 s, R 10 s, T 60 s).
TIMING = BASE.timing_model()
_EPS = 1e-9
#: A protocol acting this often at one instant is livelocked (the simulator would hang).
_MAX_ACTIONS_PER_INSTANT = 100

#: Node kinds, the most race-prone first (shrinking moves toward it): a community node claims
#: through the lying gateway and confirms through the lagging monitor; an infrastructure node
#: claims and confirms through the database; an aid node claims through the aid; a
#: gateway-only node can confirm only through the lying ``jobstatus`` (the hardened chain
#: refuses that, the documented chain trusts it).
TIER_MIXES = {
    "community": TierSet(monitor=True, gateway=True),
    "infra": TierSet(database=True, monitor=True, gateway=True),
    "aid": TierSet(monitor=True, gateway=True, aid=True),
    "gateway-only": TierSet(gateway=True),
}


class _RiggedTape(TapeRandom):
    """The world's only random source: the adversary's rigged values first, then the tape.

    Every world draw (write delay, monitor lag, lost reply, synthetic answer, cancel latency) is
    ``random()``-based and scaled into the world's bounds, so any value in [0, 1) keeps the
    world inside the timing model; rigging only picks *where* inside it.
    """

    def __init__(self, tape: list[float], seed: int) -> None:
        self.rigged: deque[float] = deque()
        super().__init__(tape, seed=seed)

    def random(self) -> float:
        if self.rigged:
            return self.rigged.popleft()
        return super().random()


#: A history record's (op, phase, value), written when a reply reaches the encoder.
_Record = tuple[str, str, Any]


@dataclass
class _Node:
    """One encoder as the machine drives it (the sim's Encoder without its polling loop)."""

    name: str
    tiers: TierSet
    drift: float  # rate: at most ε accumulated over T, as in sim/_encoder.py
    protocol: Any = None
    pending: Action | None = None
    since: float = 0.0  # sim time at which ``pending`` was handed out
    live: bool = False
    running: bool = False  # the work runs (its interval is open, no stop requested)
    events: list[tuple[float, Answer]] = field(default_factory=list)  # queued work events
    stop_at: float | None = None  # a cancelled work stops at this sim time
    cancel_issued: bool = False
    incarnation: int = 0  # bumped by crash/restart: stale stop callbacks are ignored
    paused_until: float = -math.inf  # the adversary's pause (each action: at most P late)
    clock: float = 0.0  # the protocol's own notion of "now" (see :meth:`OwnershipMachine._act`)
    #: A request on the wire: its answer, when the reply arrives, and the record to write then.
    inflight: tuple[Answer, float, _Record] | None = None
    outcomes: list[str] = field(default_factory=list)

    @property
    def did(self) -> str:
        return f"did:key:{self.name}"

    def local(self, now: float) -> float:
        return now * (1.0 + self.drift)

    def due(self) -> float:
        """Sim time from which the pending action can be performed (and P starts counting)."""
        action = self.pending
        if self.inflight is not None:
            return self.inflight[1]
        if isinstance(action, Sleep):
            if self.events:
                return max(self.since, self.events[0][0])
            return max(self.since, action.until / (1.0 + self.drift))
        if isinstance(action, CancelWork) and self.cancel_issued and self.stop_at is not None:
            return self.stop_at
        return self.since

    def held_until(self, now: float) -> float | None:
        """When a due action must be performed, if a pause holds it back now (else None).

        A pause delays an action at most P past the moment it became due: the timing model's
        bound on pauses, enforced here so that no schedule the adversary picks leaves it.
        """
        release = min(self.paused_until, self.due() + TIMING.pause)
        return release if release > now + _EPS else None


@dataclass(frozen=True)
class Setup:
    """The world the adversary plays in: per encoder (tier mix, drift sign, idle at start),
    the network's fault levels, and the tape and seed of its random draws."""

    encoders: tuple[tuple[str, float, bool], ...]
    late_write_rate: float
    reply_loss_rate: float
    status_lie_rate: float
    monitor_synthetic_rate: float
    monitor_error_rate: float
    outages_per_hour: float
    tape: tuple[float, ...]
    seed: int


@st.composite
def setups(draw: st.DrawFn, max_encoders: int = MAX_ENCODERS) -> Setup:
    """Worlds of 2..max_encoders encoders; every level shrinks toward the benign one."""
    encoders = draw(st.lists(
        st.tuples(st.sampled_from(list(TIER_MIXES)), st.sampled_from([0.0, 1.0, -1.0]),
                  st.booleans()),
        min_size=2, max_size=max_encoders))
    return Setup(
        encoders=tuple(encoders),
        late_write_rate=draw(st.sampled_from([0.0, 0.5, 1.0])),
        reply_loss_rate=draw(st.sampled_from([0.0, 0.3])),
        status_lie_rate=draw(st.sampled_from([0.0, 0.5])),
        monitor_synthetic_rate=draw(st.sampled_from([0.0, 0.3])),
        monitor_error_rate=draw(st.sampled_from([0.0, 0.3])),
        outages_per_hour=draw(st.sampled_from([0.0, 6.0])),
        tape=tuple(draw(st.lists(st.floats(0.0, 1.0, exclude_max=True, allow_nan=False),
                                 max_size=20))),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@dataclass(frozen=True)
class Failure:
    """An invariant failure: the world's encoders, the adversary's steps before it, and the
    encoders the violation names."""

    encoders: int
    steps: int
    processes: frozenset[str]


#: Filled when an invariant fails (the teeth tests read the last one: the shrunk example).
FAILURES: list[Failure] = []


class OwnershipMachine(RuleBasedStateMachine):
    """The adversarial scheduler. :func:`machine_for` builds the runnable subclasses: it fixes
    chain, protocol and world size, and adds the ``build`` initialize rule."""

    chain: ClassVar[str] = "hardened"
    factory: ClassVar[Callable[..., Any]] = OwnershipProtocol

    def __init__(self) -> None:
        super().__init__()
        self.history = History()
        self.nodes: list[_Node] = []
        self.env = simpy.Environment()
        self.policy = Policy.named(self.chain, timing=TIMING)
        self.checks = 0
        self.failed = False  # a check failed: teardown then adds nothing

    # ------------------------------------------------------------------ the world

    def _build(self, setup: Setup) -> None:
        scenario = BASE.replace(
            encoders=len(setup.encoders), late_write_rate=setup.late_write_rate,
            reply_loss_rate=setup.reply_loss_rate, status_lie_rate=setup.status_lie_rate,
            monitor_synthetic_rate=setup.monitor_synthetic_rate,
            monitor_error_rate=setup.monitor_error_rate,
            gateway_outages_per_hour=setup.outages_per_hour,
            monitor_outages_per_hour=setup.outages_per_hour,
        )
        self.rng = _RiggedTape(list(setup.tape), setup.seed)
        self.world = World(self.env, scenario, Streams(setup.seed, shared=self.rng),
                           self.history)
        self.world.add_job(JOB)
        # The job has been queued for Δ when the encoders first look: otherwise every monitor
        # read at time 0 shows no job at all and every attempt ends at its pre-claim check.
        self.env.run(until=TIMING.monitor_lag)
        rate = TIMING.clock_drift / TIMING.reassign_timeout
        for i, (mix, drift, idle) in enumerate(setup.encoders):
            node = _Node(f"e{i}", TIER_MIXES[mix], drift * rate)
            self.nodes.append(node)
            if not idle:  # an idle encoder's first attempt is the adversary's `restart`
                self._start_attempt(node)

    def _start_attempt(self, node: _Node) -> None:
        node.protocol = self.factory(JOB, me=node.did, policy=self.policy, tiers=node.tiers)
        node.live, node.running, node.events, node.inflight = True, False, [], None
        node.stop_at, node.cancel_issued = None, False
        node.clock = max(node.clock, node.local(self.env.now))
        self._hand_out(node, node.protocol.start(node.clock).action)

    def _hand_out(self, node: _Node, action: Action) -> None:
        node.since = self.env.now
        if isinstance(action, Done):
            node.outcomes.append(action.outcome.kind.value)
            node.pending, node.live = None, False
            self.world._lying.discard((node.did, JOB))  # an unused double hand-out expires
        else:
            node.pending = action

    # ------------------------------------------------------------------ who may act when

    def _live(self) -> list[_Node]:
        return [n for n in self.nodes if n.live]

    def _steppable(self) -> list[_Node]:
        now = self.env.now
        return [n for n in self._live() if n.pending is not None and n.due() <= now + _EPS]

    @staticmethod
    def _pick(nodes: list[_Node], pick: int) -> _Node:
        return nodes[pick % len(nodes)]

    def _act(self, node: _Node) -> None:
        """Perform ``node``'s pending action now and feed the answer back.

        The time passed is the encoder's drifting clock, never below what the protocol already
        took as "now": answering ``Woke`` to ``Sleep(until)`` moves the protocol's clock to
        ``until`` even when the drifting clock, converted from sim time, reads a hair before
        it; the next answer at the same instant must not then look like time going backwards.
        """
        action = node.pending
        answer = self._perform(node)
        if answer is None:  # a cancel was requested; WorkStopped once the work has stopped
            return
        now = max(node.local(self.env.now), node.clock)
        node.clock = max(now, action.until) if isinstance(answer, Woke) and isinstance(
            action, Sleep) else now
        self._hand_out(node, node.protocol.handle(answer, now).action)

    def _act_due(self, first: int) -> None:
        """Every encoder whose action is due and not held back by a pause performs it, until
        each waits for a deadline (encoders are prompt unless the adversary pauses them).

        ``first`` rotates who goes first among encoders due at the same instant.
        """
        now, order = self.env.now, self.nodes[first % len(self.nodes):] + self.nodes[
            :first % len(self.nodes)]
        for node in order:
            for _ in range(_MAX_ACTIONS_PER_INSTANT):
                if node not in self._steppable() or node.held_until(now) is not None:
                    break
                self._act(node)
            else:
                raise AssertionError(f"{node.name}: the protocol makes no progress in time "
                                     f"(>{_MAX_ACTIONS_PER_INSTANT} actions at t={now})")

    def _next_moment(self, target: float) -> float:
        """The next time an encoder must act (a deadline, or a pause's end), capped at target."""
        now, moments = self.env.now, [target]
        for node in self._live():
            if node.pending is None:
                continue
            due = node.due()
            if due > now + _EPS:
                moments.append(due)
            else:
                held = node.held_until(now)
                if held is not None:
                    moments.append(held)
        return min(moments)

    # ------------------------------------------------------------------ the adversary's rules

    @rule(dt=st.floats(0.01, 30.0, allow_nan=False), first=st.integers(0, MAX_ENCODERS - 1))
    def advance(self, dt: float, first: int) -> None:
        """Let time pass: delayed writes land, the mirror moves, the reassignment scan runs,
        and every encoder performs its actions as they fall due (unless paused)."""
        target = self.env.now + dt
        while True:
            self._act_due(first)
            if self.env.now >= target - _EPS:
                return
            self.env.run(until=self._next_moment(target))

    @rule(first=st.integers(0, MAX_ENCODERS - 1))
    def jump(self, first: int) -> None:
        """Let time pass to the next moment an encoder must act (a deadline, a pause's end),
        or one re-check interval when nobody waits for anything.

        A second way to move time, so that Hypothesis' swarm testing (which switches a random
        subset of rules off in each example) rarely leaves an example with a frozen clock.
        """
        self._act_due(first)
        target = self._next_moment(math.inf)
        self.advance(TIMING.recheck_interval if math.isinf(target) else
                     max(target - self.env.now, _EPS), first)

    def _ready(self) -> list[_Node]:
        now = self.env.now
        return [n for n in self._steppable() if n.held_until(now) is None]

    @precondition(lambda self: bool(self._ready()))
    @rule(pick=st.integers(0, MAX_ENCODERS - 1))
    def step(self, pick: int) -> None:
        """One due encoder performs one action now, before the others: how the adversary
        orders the accepts, reads and writes of encoders due at the same instant."""
        self._act(self._pick(self._ready(), pick))

    @precondition(lambda self: bool(self._live()))
    @rule(pick=st.integers(0, MAX_ENCODERS - 1),
          length=st.floats(0.0, TIMING.pause, allow_nan=False))
    def pause(self, pick: int, length: float) -> None:
        """The encoder freezes (GC, suspend, partition) for ``length`` <= P: its due actions
        wait, each at most P past the moment it fell due; its work's interval stays open."""
        node = self._pick(self._live(), pick)
        node.paused_until = self.env.now + length
        self.history.add(self.env.now, node.name, None, "pause", "invoke", round(length, 3))
        incarnation = node.incarnation
        self.world.schedule(length, lambda: self._resumed(node, incarnation))

    def _resumed(self, node: _Node, incarnation: int) -> None:
        if node.incarnation == incarnation:  # a crash ended the pause (and the process) first
            self.history.add(self.env.now, node.name, None, "pause", "ok")

    def _handed(self) -> list[_Node]:
        """Encoders the gateway could double-hand the job to right now.

        As in ``World.gw_poll``: only a job whose gateway assignment to *another* encoder
        landed less than G ago (the world's double-hand-out window), and only to an encoder
        about to accept it (its attempt is at the pre-claim check or the claim). Whether the
        accept then passes is the world's call (``gw_accept`` judges it on a read up to G old).
        """
        job, now = self.world.jobs[JOB], self.env.now
        if (job.status not in PROCESSABLE_STATUSES or job.token is not None
                or job.owned_at < now - TIMING.write_delay):
            return []
        return [n for n in self._live() if (n.did, JOB) not in self.world._lying
                and job.owner != n.did and (
                    isinstance(n.pending, Claim)
                    or (isinstance(n.pending, Observe) and n.pending.purpose == "pre-claim"))]

    @precondition(lambda self: bool(self._handed()))
    @rule(pick=st.integers(0, MAX_ENCODERS - 1))
    def lie(self, pick: int) -> None:
        """The gateway double-hands the job to this encoder (the world records the lie if the
        accept passes: a ``double-accept``)."""
        node = self._pick(self._handed(), pick)
        self.world._lying.add((node.did, JOB))

    @precondition(lambda self: any(n.running for n in self.nodes))
    @rule(length=st.floats(TIMING.recheck_interval, 2 * TIMING.reassign_timeout,
                           allow_nan=False), first=st.integers(0, MAX_ENCODERS - 1))
    def outage(self, length: float, first: int) -> None:
        """While someone works, the gateway's server (gateway, aid, monitor) is down for
        ``length``, and time passes through it: pings and re-checks get no answer, and the
        gateway reassigns the job T after its last ping. The lease must have ended the work
        by then, and the loss must really cancel it (the ``lease`` and ``cancel`` steps)."""
        now = self.env.now
        for attr, kind in (("gateway_down", "gateway-outage"), ("monitor_down", "monitor-outage")):
            setattr(self.world, attr, _merged(getattr(self.world, attr), (now, now + length)))
            self.history.add(now, WORLD, None, "fault", "invoke", kind)
            self.world.schedule(length, lambda kind=kind: self.history.add(
                self.env.now, WORLD, None, "fault", "ok", kind))
        self.advance(length, first)

    @precondition(lambda self: len(self.rng.rigged) < 6)
    @rule(values=st.lists(st.floats(0.0, 1.0, exclude_max=True, allow_nan=False),
                          min_size=1, max_size=3))
    def rig(self, values: list[float]) -> None:
        """Choose the network's next draws (how late a write lands, how stale the mirror is)."""
        self.rng.rigged.extend(values)

    @precondition(lambda self: any(n.running for n in self.nodes))
    @rule(pick=st.integers(0, MAX_ENCODERS - 1),
          phase=st.sampled_from(["download", "encode", "upload"]))
    def change_phase(self, pick: int, phase: str) -> None:
        node = self._pick([n for n in self.nodes if n.running], pick)
        node.events.append((self.env.now, PhaseChanged(phase)))

    @precondition(lambda self: any(n.running for n in self.nodes))
    @rule(pick=st.integers(0, MAX_ENCODERS - 1), succeeded=st.sampled_from([True, False]))
    def finish_work(self, pick: int, succeeded: bool) -> None:
        """The work ends on its own: its interval closes now; the next sleep hears of it."""
        node = self._pick([n for n in self.nodes if n.running], pick)
        node.running = False
        self.history.add(self.env.now, node.name, JOB, "stop", "ok", "done")
        node.events.append((self.env.now, WorkEnded(succeeded)))

    @precondition(lambda self: bool(self._live()))
    @rule(pick=st.integers(0, MAX_ENCODERS - 1))
    def crash(self, pick: int) -> None:
        """The encoder dies: its work stops with it; writes it sent may still land."""
        node = self._pick(self._live(), pick)
        self.history.add(self.env.now, node.name, None, "crash", "info")
        node.incarnation += 1
        node.live, node.running, node.pending, node.events = False, False, None, []
        node.inflight = None
        node.stop_at, node.cancel_issued, node.paused_until = None, False, -math.inf
        node.outcomes.append("crashed")
        self.world._lying.discard((node.did, JOB))

    @precondition(lambda self: len(self._live()) < len(self.nodes))
    @rule(pick=st.integers(0, MAX_ENCODERS - 1))
    def restart(self, pick: int) -> None:
        """A crashed or finished encoder starts a new attempt on the job (a fresh protocol)."""
        node = self._pick([n for n in self.nodes if not n.live], pick)
        node.incarnation += 1
        self._start_attempt(node)

    # ------------------------------------------------------------------ the driver

    def _perform(self, node: _Node) -> Answer | None:
        """Perform ``node.pending`` now; its answer, or None while a reply is on its way.

        A request is answered by the world when it is sent (as in ``sim/_encoder.py``), and
        the reply reaches the encoder after the world's reply delay: writes that land while
        the request is served land before the encoder hears back, as on the real network.
        """
        action, now, rec = node.pending, self.env.now, self.history.add
        if node.inflight is not None:  # the reply has arrived
            answer, _, (op, phase, value) = node.inflight
            node.inflight = None
            rec(now, node.name, JOB, op, phase, value)
            return answer
        if isinstance(action, Sleep):
            if node.events:
                return node.events.pop(0)[1]
            return Woke()
        if isinstance(action, StartWork):
            rec(now, node.name, JOB, "start", "ok")
            node.running = True
            return WorkStarted()
        if isinstance(action, CancelWork):
            return self._cancel(node)
        op, arg = request_record(action)
        rec(now, node.name, JOB, op, "invoke", arg)
        answer, delay, phase, value = self.world.serve(node.did, JOB, action)
        done = (op, phase, value)
        if delay > _EPS:
            node.inflight = (answer, now + delay, done)
            return None
        rec(now, node.name, JOB, *done)
        return answer

    def _cancel(self, node: _Node) -> Answer | None:
        """Stop the work within C: the interval stays open until the stop is recorded."""
        now = self.env.now
        if not node.cancel_issued:
            node.cancel_issued = True
            self.history.add(now, node.name, JOB, "cancel", "invoke")
            if node.running:
                node.running = False
                node.stop_at = now + self.rng.random() * TIMING.cancel_latency
                incarnation = node.incarnation
                self.world.schedule(node.stop_at - now,
                                    lambda: self._stopped(node, incarnation))
                if node.stop_at > now:
                    return None
        self._stopped(node, node.incarnation)
        node.cancel_issued = False
        return WorkStopped()

    def _stopped(self, node: _Node, incarnation: int) -> None:
        if node.stop_at is not None and node.incarnation == incarnation:
            self.history.add(self.env.now, node.name, JOB, "stop", "ok", "cancelled")
            node.stop_at = None

    # ------------------------------------------------------------------ the properties

    def teardown(self) -> None:
        """Push the search toward races (examples where more encoders started the job), then
        let one reassignment timeout pass and check again: a write still landing (a finish
        up to G after it was sent) or a start due after the adversary's last step is judged
        too (a review of the checkers, session 27: the last step's effects went unchecked)."""
        starters = {r[1] for r in self.history if r[3] == "start" and r[4] == "ok"}
        target(float(len(starters)), label="encoders that started the job")
        if self.nodes and not self.failed:
            self.advance(TIMING.reassign_timeout, 0)
            self.no_overlap_and_single_effect()

    @invariant()
    def no_overlap_and_single_effect(self) -> None:
        self.checks += 1  # once after ``build``, then once after every adversary step
        for check in (check_s2, check_s3):
            result = check(self.history)
            if not result.ok:
                self.failed = True
                FAILURES.append(Failure(len(self.nodes), self.checks - 1, _processes(result)))
            assert result.ok, self._explain(result)

    def _explain(self, result: CheckResult) -> str:
        lines = [
            f"{result.name} violated by chain {self.chain!r} at t={self.env.now:.3f}:",
            *(f"  {example}" for example in result.examples),
            "encoders: " + ", ".join(
                f"{n.name} ({_mix_name(n.tiers)}, drift {n.drift:+.4f}, outcomes "
                f"{n.outcomes or '-'})" for n in self.nodes),
            "history:",
            *(f"  {History.format_record(r)}" for r in self.history.for_job(JOB)
              if r[3] != "fault" or r[0] <= self.env.now),
        ]
        return "\n".join(lines)


def _merged(windows: list[tuple[float, float]], new: tuple[float, float]
            ) -> list[tuple[float, float]]:
    """Outage windows with ``new`` added, sorted and without overlaps (``World._down`` looks
    only at the last window starting before a moment)."""
    out: list[tuple[float, float]] = []
    for start, end in sorted([*windows, new]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _mix_name(tiers: TierSet) -> str:
    return next(name for name, mix in TIER_MIXES.items() if mix == tiers)


def _processes(result: CheckResult) -> frozenset[str]:
    """The encoder names a violation's explanations mention (``e0``, ``e1``...)."""
    return frozenset(word for example in result.examples for word in example.split()
                     if word[:1] == "e" and word[1:].isdigit())


def machine_for(chain: str, protocol: Callable[..., Any] = OwnershipProtocol, *,
                max_encoders: int = MAX_ENCODERS) -> type[OwnershipMachine]:
    """The machine driving ``protocol`` under the named built-in chain, in worlds of 2 to
    ``max_encoders`` encoders (the teeth test searches the smallest worlds first)."""

    class Machine(OwnershipMachine):
        @initialize(setup=setups(max_encoders))
        def build(self, setup: Setup) -> None:
            self._build(setup)

    Machine.chain, Machine.factory = chain, staticmethod(protocol)
    Machine.__name__ = Machine.__qualname__ = f"{chain.title().replace('-', '')}Machine"
    return Machine


# ---------------------------------------------------------------------------------- the tests

#: 50 adversarial steps reach claim, settle, verification, start, re-checks, pings, losses,
#: cancels and finishes of several attempts. ``max_examples`` is the active profile's
#: (``ci``: 400, ``dev``: 100, ``thorough``: 100,000).
STEPS = 50


#: The teeth tests' examples are shorter: Hypothesis shrinks a stateful counterexample by
#: replaying it hundreds of times, and 30 steps are plenty to reach these violations.
TEETH_STEPS = 30


@dataclass(frozen=True)
class Teeth:
    chain: str
    budget: int  # examples allowed to find the violation (generation; shrinking is extra)
    #: Adversary steps a shrunk counterexample may take at most. A loss during work needs
    #: more: the work starts, the outage passes, the other encoder claims, settles, starts.
    shrunk_steps: int = 8
    #: Hypothesis' ``report_multiple_bugs``. On, it keeps generating after the first failure
    #: (for other bugs and smaller examples) but stops after ten *wall-clock* seconds, so the
    #: example it shrinks depends on the machine's speed; off (the ``ci`` profile), it shrinks
    #: the first failure found. Trust-gateway's first failure shrinks only to 19 steps (the
    #: shrinker cannot merge its many ``jump`` steps); its search after the first failure takes
    #: about 1 s (measured 2026-12-02), a tenth of the cut, so it keeps searching.
    keep_searching: bool = False


#: Broken chains the stateful suite must catch inside the timing model, in two-encoder worlds:
#: the documented chain (one verification pass, right after the accept), trusting the gateway,
#: and letting a weaker tier overrule a stronger tier's "not yours". Under the ``ci`` profile
#: they are found after about 700, 80 and 90 test calls (2026-12-02, with every module of ours
#: imported first: see the root ``conftest.py``); the budgets leave room for changes. Working
#: on past the lease and not cancelling are caught, with rates over independent searches, by
#: ``conformance/test_teeth.py``.
TEETH = [
    Teeth("documented", 1000),
    Teeth("trust-gateway", 200, keep_searching=True),
    # Its shrunk size depends on the search's path: CI's derandomized one shrank to 8 steps
    # until session 36 added literal constants to verifier/_command.py (Hypothesis draws
    # constants from our modules: see the root conftest.py), then to 10. Twelve independent
    # searches (random seeds, the same budget, 2026-12-06) all found it, shrunk to 1 step in
    # seven, and to 4, 5, 5, 6 and 12: "a few" is bounded at that maximum, not at one path.
    Teeth("hardened-without-tier-precedence", 1000, shrunk_steps=12),
]
#: ``hardened-without-cancel`` was here: its single derandomized search path caught it when the
#: module ran alone and missed it when the whole suite was collected (issue 10, finding 5).


@pytest.mark.slow
def test_hardened_chain_keeps_s2_and_s3_against_an_adversarial_scheduler(protocol: Any) -> None:
    """Every schedule the adversary picks inside the timing model keeps S2 and S3."""
    run_state_machine_as_test(
        machine_for("hardened", protocol),
        settings=settings(stateful_step_count=STEPS, deadline=None),
    )


@pytest.mark.slow
@pytest.mark.parametrize("teeth", TEETH, ids=[t.chain for t in TEETH])
def test_stateful_suite_catches_a_broken_chain(teeth: Teeth, protocol: Any) -> None:
    """The same machine finds the broken chain's double processing or double commit within
    the stated budget, and shrinks it to a few steps: a passing hardened run means something."""
    FAILURES.clear()
    with pytest.raises(AssertionError, match=rf"S[23] violated by chain '{teeth.chain}'") as caught:
        run_state_machine_as_test(
            machine_for(teeth.chain, protocol, max_encoders=2),
            settings=settings(
                max_examples=teeth.budget, stateful_step_count=TEETH_STEPS, derandomize=True,
                database=None, deadline=None, print_blob=False,
                report_multiple_bugs=teeth.keep_searching,
                phases=[Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            ),
        )
    # The counterexample (history, then the steps that replay it), shown with -s and in CI logs.
    print(caught.value, *getattr(caught.value, "__notes__", []), sep="\n")
    failure = FAILURES[-1]  # Hypothesis replays the shrunk example last
    assert failure.encoders == 2, failure
    assert failure.steps <= teeth.shrunk_steps, failure


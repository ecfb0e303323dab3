"""The production driver: runs :class:`~verifier.protocol.OwnershipProtocol` with asyncio.

:class:`OwnershipGuard` is the entry point encoders use::

    guard = OwnershipGuard(did=identity.did, clients=[database, monitor, gateway])
    outcome = await guard.run(job_id, process)

``process(job)`` is the user's coroutine (download, encode, upload). It receives a
:class:`ClaimedJob` to report its phase and progress, and returns the result to commit
(``{"cid": ...}``). The guard starts it only when the protocol says so, cancels it
(``asyncio.CancelledError`` inside ``process``) when ownership is lost or cannot be confirmed
in time, and commits its result with a fenced finish.

This module only performs actions; every decision is the protocol's. Tier exceptions become
answers here, and *any* unexpected exception from a tier client is treated as "no answer"
(fail closed), never as a confirmation. The driver enforces two things the protocol asks of it,
both for S2 (``docs/safety-model.md``, S2: an encoder occupies its interval until its stop is
confirmed):

* a request carrying a ``deadline`` (the lease end) is answered by that deadline whatever the
  tier is doing, so a hung tier call cannot keep work running past the lease (the lease
  watchdog: the protocol cancels the work as soon as it gets control back);
* :class:`~verifier.protocol.CancelWork` is answered only once the user's work has really
  stopped, so nothing that follows (a release handing the job back) happens while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

from ._cache import StatusCache
from ._clock import AlarmFactory, boottime_alarm, counting_suspensions, no_alarm, runs_on_monotonic
from ._errors import (
    ClaimRefused,
    InvalidInputError,
    RequestNotSent,
    TierError,
    TierRateLimited,
    TierTimeout,
    TierUnavailable,
    TierUnsupported,
)
from ._gateway import validate_percent
from ._http import sending_by
from ._ids import validate_cid, validate_did, validate_job_id
from ._metrics import GuardMetrics
from ._policy import Policy, Tier, TierSet
from ._text import FIELD_LIMIT, printable
from ._tiers import Observation, TierClient
from .protocol import (
    Action,
    Answer,
    CancelWork,
    Claim,
    Decision,
    Done,
    Finish,
    Heartbeat,
    Hinted,
    Observe,
    Observed,
    OutcomeKind,
    OwnershipProtocol,
    PhaseChanged,
    Progressed,
    Release,
    ShutdownRequested,
    Sleep,
    StartWork,
    Step,
    TierFailed,
    Woke,
    WorkEnded,
    WorkStarted,
    WorkStopped,
    WriteAnswered,
    WriteOutcome,
)

__all__ = ["ClaimedJob", "GuardOutcome", "OwnershipGuard", "ProcessFn", "PushSource"]

_LEVELS: Final = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_DEFAULT_LOGGER: Final = logging.getLogger("verifier.guard")
#: The answer's detail when a request's deadline came before the tier answered.
_DEADLINE_DETAIL: Final = "deadline: lease end reached"
#: Float rounding in the loop's timer arithmetic: a timer armed for a remainder this small can
#: fire at the same instant, and a virtual-time loop would then never advance. A wait for a
#: request's answer ends this far short of its deadline (the safe side: the request counts as
#: unanswered a microsecond early); a protocol ``Sleep``, whose early end would not be safe,
#: arms its timer for at least this long instead. A microsecond, far below every bound.
_ROUNDING: Final = 1e-6
#: Queued when the phase or progress changes; turned into the latest :class:`PhaseChanged`
#: and :class:`Progressed` when delivered.
_REPORTED: Final = Progressed(-1.0)
#: Queued when a push arrives; turned into the latest push when delivered, so a flood of
#: pushes is one event (and one read), never a queue that buries the work's own events.
_PUSHED: Final = Hinted("\x00marker", None)

_T = TypeVar("_T")


def _describe(exc: BaseException) -> str:
    """``Type: message`` for an exception raised by code we do not control, whose ``__str__``
    may itself raise: then the type alone. Formatting the message of a failure must not raise
    a second exception: out of ``_Run._work`` it would end the work's task unreported, the
    protocol never told the work had ended (found by a review, 2026-12-03)."""
    name = type(exc).__name__
    try:
        return f"{name}: {exc}"
    except Exception:
        return f"{name} (its message could not be formatted)"


class _DeadlineReached(Exception):
    """The action's deadline came (by the guard's clock) before the tier answered."""


class ClaimedJob:
    """Handed to the user's ``process``: the job id, and a way to report phase and progress.

    Phases matter: the documented chain pinged only while encoding (defect 5); the hardened
    chain pings in every phase, and its ping carries the latest progress reported here.
    Progress matters too: the gateway reassigns a job whose progress has not changed for
    ``progress_timeout`` (N), so work that reports no progress change for about N loses its
    lease and is cancelled before that happens (``docs/safety-model.md``, "Lease").
    """

    def __init__(self, job_id: str, events: asyncio.Queue[Answer]) -> None:
        self.job_id = job_id
        self._events = events
        self.phase = ""
        self.progress: dict[str, float] = {"pct": 0.0, "download_pct": 0.0}
        self._queued = False  # one report marker in the queue at most
        self._phase_changed = False
        self._progress_changed = False

    def set_phase(self, phase: str) -> None:
        """Report the current phase (``download``, ``encode``, ``upload``). Coalesced with
        progress: the protocol is told the latest phase once, however often it changes in
        between. Each change was queued: a command that alternated two phases filled the
        queue by ten million entries (600 MB) while a ping hung, and the shutdown queued
        behind them waited for the lease to run out (an adversarial review, session 44)."""
        if phase != self.phase:
            self.phase = phase
            self._phase_changed = True
            self._report()

    def set_progress(self, pct: float | None = None, download_pct: float | None = None) -> None:
        """Report progress in percent; sent with the next ping.

        Values are checked at once (a number in [0, 100]), so a bad one is refused here, in the
        caller's code, rather than failing a ping later. Reports are coalesced: the protocol is
        told the latest values once, however often they change in between.
        """
        before = dict(self.progress)
        # Both checked before either is kept: half an update would be stored but never
        # reported (repeating it later is no change).
        checked_pct = None if pct is None else validate_percent(pct, "pct")
        checked_download = (None if download_pct is None
                            else validate_percent(download_pct, "download_pct"))
        if checked_pct is not None:
            self.progress["pct"] = checked_pct
        if checked_download is not None:
            self.progress["download_pct"] = checked_download
        if self.progress != before:
            self._progress_changed = True
            self._report()

    def _report(self) -> None:
        if not self._queued:
            self._queued = True
            self._events.put_nowait(_REPORTED)

    def _take_reports(self) -> tuple[Answer, Answer | None]:
        """What the marker stands for: the latest phase, then the latest progress (or one of
        them), as the simulator's driver delivers them (``sim/_encoder.py``, ``_due_report``);
        the second is delivered at the next wait, before anything queued since."""
        self._queued = False
        phase = PhaseChanged(self.phase) if self._phase_changed else None
        progress = (Progressed(self.progress["pct"], self.progress["download_pct"])
                    if self._progress_changed else None)
        self._phase_changed = self._progress_changed = False
        if phase is None:
            assert progress is not None
            return progress, None
        return phase, progress


#: The work of one job. Returns the result to commit, ``{"cid": ...}``; a result without a
#: ``cid`` (``None`` included) fails the work, and the job goes back to the queue. Cancelled
#: (``asyncio.CancelledError``) when the job is lost: it must have stopped *all* of the work
#: when it returns, within C. The guard counts the work stopped then, and cancelling a
#: coroutine does not stop a thread it handed the encode to (``asyncio.to_thread``): stop
#: that thread first, or run the encode as a child process (:class:`~verifier.CommandWork`
#: waits for the whole process tree). A review of the drivers (session 28) found a thread
#: encoding on after its job was given back.
ProcessFn = Callable[[ClaimedJob], Awaitable[Mapping[str, Any] | None]]


@runtime_checkable
class PushSource(Protocol):
    """Where push notifications come from (:class:`~verifier.JobPushClient`): a callback per
    job, called with an object that has ``owner`` and ``status``."""

    def subscribe(self, job_id: str, callback: Callable[[Any], None]) -> None: ...

    def unsubscribe(self, job_id: str, callback: Callable[[Any], None]) -> None: ...


@dataclass(frozen=True, slots=True)
class GuardOutcome:
    """What happened to one job. ``result`` is what ``process`` returned, when it was committed.

    ``kind`` is one of processed, skipped (with ``reason``), cancelled (ownership lost), failed.
    ``held``: the job may still be assigned to us (its give-back, or its finish, got no
    answer): it may stay held until the gateway reassigns it; ``given_back``: the run's last
    give-back was answered (:class:`verifier.protocol.Outcome`). ``retry_after``: a tier
    answered 429 during the run and asked not to be called for this many more seconds after
    it ended (``None``: no such request outstanding); the protocol honours a ``Retry-After``
    within its run, :class:`verifier.EncoderLoop` honours this one before its next job, whose
    first read would otherwise ask the same tier again at once.
    """

    job_id: str
    kind: OutcomeKind
    code: str
    reason: str
    result: Mapping[str, Any] | None = None
    error: BaseException | None = None
    held: bool = False
    given_back: bool = False
    retry_after: float | None = None

    @property
    def processed(self) -> bool:
        return self.kind is OutcomeKind.PROCESSED


async def uninterrupted(clean_up: Awaitable[object]) -> None:
    """Await ``clean_up`` to its end even if this task is cancelled meanwhile (again); a
    cancellation that came is raised once it has ended. Returning early would let ``run`` end
    while the work still runs, unseen (S2): a second cancellation is common (``asyncio.run``
    at shutdown, nested timeouts, a loop cancelled while it waits for its runs)."""
    task = asyncio.ensure_future(clean_up)
    interrupted = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            interrupted = True
    task.result()
    if interrupted:
        raise asyncio.CancelledError


def _with_alarm(waited: asyncio.Future[Any], ring: asyncio.Future[None] | None
                ) -> set[asyncio.Future[Any]]:
    """What a wait waits for: ``waited``, and the alarm until it has rung (then the loop's
    timer alone covers the rounding that is left)."""
    return {waited} if ring is None or ring.done() else {waited, ring}


def _loop_clock() -> Callable[[], float]:
    """The running loop's clock, counting the time the machine spends suspended."""
    return counting_suspensions(asyncio.get_running_loop().time)


class OwnershipGuard:
    """Runs claim → verify → process → finish for one job at a time, with real tier clients.

    ``clients`` are the configured tier clients (any of database, monitor, gateway, aid); the
    set of tiers present tells the protocol which node this is (infrastructure nodes have the
    database). ``clock`` is monotonic seconds; by default the event loop's own clock, so that
    the protocol's deadlines and asyncio's timeouts agree (and virtual-time loops work), plus
    the time the machine has spent suspended, which the loop's clock does not count on Linux
    (:mod:`verifier._clock`: else every deadline after a suspension would come late by it).
    It is the time the protocol is given, and the clock request deadlines are judged on. A
    clock given here must count suspensions too.

    The cost features (``docs/enhancements.md``): with ``policy.status_cache_s`` above 0 the
    guard keeps a :class:`~verifier.StatusCache` (``cache``, shared by its runs; the encoder
    loop's batch screening fills it through :meth:`screened`), and the protocol decides which
    reads may use it (the pre-claim check only). With ``push`` (a
    :class:`~verifier.JobPushClient`, say) each run subscribes to its job before claiming it,
    and every push becomes a :class:`~verifier.protocol.Hinted` for the protocol: a reason to
    re-read sooner, never proof.
    """

    def __init__(
        self,
        *,
        did: str,
        clients: Iterable[TierClient],
        policy: Policy | None = None,
        clock: Callable[[], float] | None = None,
        logger: logging.Logger | None = None,
        metrics: GuardMetrics | None = None,
        push: PushSource | None = None,
        cache: StatusCache | None = None,
    ) -> None:
        self.did = validate_did(did)
        self.policy = policy or Policy.hardened()
        self.push = push
        self.cache = cache if cache is not None else (
            StatusCache() if self.policy.status_cache_s > 0 else None)
        self.clients: dict[Tier, TierClient] = {}
        for client in clients:
            tier = Tier(client.tier)
            if tier in self.clients:
                raise ValueError(f"two clients for tier {tier}")
            self.clients[tier] = client
        self.tier_set = TierSet(**{t.value: t in self.clients for t in Tier})
        self._clock = clock
        #: The alarms of this guard's waits (:meth:`_alarms`); a test may set its own.
        self._alarm: AlarmFactory | None = None
        self._logger = logger or _DEFAULT_LOGGER
        self.metrics = metrics
        self._metrics_failed = False
        self._runs: set[_Run] = set()
        self._shutting_down = False

    @property
    def shutting_down(self) -> bool:
        """Whether :meth:`request_shutdown` was called."""
        return self._shutting_down

    def request_shutdown(self) -> None:
        """Ask every run, now and later, to give its job back (graceful shutdown).

        Each run's protocol is told (:class:`~verifier.protocol.ShutdownRequested`) at its next
        wait and decides: running work is cancelled through the usual stop (so C holds) and
        the job released, fenced; a job not yet started is released; a finish in progress is
        completed. The guard decides nothing itself. Safe to call from a signal handler's
        callback on the event loop, and more than once.
        """
        self._shutting_down = True
        for run in list(self._runs):
            run.request_shutdown()

    def _alarms(self) -> AlarmFactory:
        """What wakes this guard's waits on time across the machine's suspensions
        (:mod:`verifier._clock`): real-time alarms with the default clock on a loop whose clock
        is the machine's monotonic one; none with a custom clock (its own time) or on a
        virtual-time loop (no suspensions, and no real time to ring in)."""
        if self._alarm is not None:
            return self._alarm
        if self._clock is None and runs_on_monotonic(asyncio.get_running_loop()):
            return boottime_alarm
        return no_alarm

    async def run(self, job_id: str, process: ProcessFn) -> GuardOutcome:
        """Run the protocol for ``job_id``; ``process`` runs only if and while the job is ours.

        Returns only once the work has stopped (also when the run itself is cancelled, once or
        again while it waits for the work to stop) and every tier call it abandoned at a
        deadline has ended: nothing outlives the run.

        A job this guard is already running is not run again (``SKIPPED``,
        ``ALREADY_RUNNING``): both runs would claim with the same DID, the gateway's accept
        can pass both, and each would read "assigned to us" and process the job at once.
        """
        outcome, fatal = await self._run_to_outcome(job_id, process)
        if fatal is not None:
            # The work raised SystemExit or KeyboardInterrupt: raised here, once the protocol
            # has given the job back, not inside the work's task (asyncio would stop the event
            # loop at once, the job held and nothing said).
            raise fatal
        return outcome

    async def _run_to_outcome(
        self, job_id: str, process: ProcessFn
    ) -> tuple[GuardOutcome, BaseException | None]:
        """:meth:`run`, with the ``SystemExit`` or ``KeyboardInterrupt`` the work raised given
        beside the outcome rather than raised: the encoder loop gives its other jobs back
        before it lets one through."""
        job_id = validate_job_id(job_id)
        if any(r.job_id == job_id for r in self._runs):
            self._note("warning", "ALREADY_RUNNING",
                       f"job {job_id} is already being run by this guard: not run twice",
                       job_id=job_id)
            self._measured(GuardMetrics.record_outcome, "skipped", "ALREADY_RUNNING")
            return GuardOutcome(job_id, OutcomeKind.SKIPPED, "ALREADY_RUNNING",
                                "this guard is already running the job"), None
        run = _Run(self, job_id, process, self._clock or _loop_clock(), self._alarms())
        self._runs.add(run)
        if self._shutting_down:
            run.request_shutdown()
        self._measured(lambda m: m.in_progress.inc())
        try:
            outcome = await run.drive()
        finally:
            self._measured(lambda m: m.in_progress.dec())
            run.unsubscribe()
            try:
                await uninterrupted(run.wind_down())
            finally:
                self._runs.discard(run)
        return outcome, run.fatal

    def now(self) -> float:
        """The guard's clock (the one its protocol runs and its cache ages on)."""
        return (self._clock or _loop_clock())()

    def awaiting(self, job_id: str) -> Action | None:
        """What the run guarding ``job_id`` is carrying out now
        (:attr:`OwnershipProtocol.awaiting`: a read and its purpose, a ping, a sleep); ``None``
        when no run guards the job. A tier wrapper that counts reads by purpose asks this
        while the guard awaits it."""
        for run in self._runs:
            if run.job_id == job_id:
                return run.protocol.awaiting
        return None

    def screened(self, observations: Mapping[str, Observation], *, decided: float,
                 unknown: Iterable[str] = ()) -> int:
        """Keep batch screening's answers (:func:`verifier.protocol.screened`), read as decided
        at ``decided`` (guard clock), for the pre-claim checks to come, and forget what the
        cache held about the ``unknown`` ids (answered, but with nothing an entry may say:
        ``assigned`` may be another encoder's, so an older "queued" must not outlive it).
        Returns how many were kept (none without a cache)."""
        if self.cache is None:
            return 0
        for job_id in unknown:
            self.cache.forget(job_id)
        for job_id, observation in observations.items():
            self.cache.put(observation, job_id, decided=decided)
        return len(observations)

    def _measured(self, record: Callable[..., object], *args: Any) -> None:
        """Call ``record(metrics, *args)``, if there are metrics.

        Metrics never decide a job's fate: an error in them (a full disk under a multiprocess
        registry, a bug) is logged once and dropped; raised, it would end a run between a claim
        and its release."""
        if self.metrics is None:
            return
        try:
            record(self.metrics, *args)
        except Exception as exc:
            if not self._metrics_failed:
                self._metrics_failed = True
                self._note("error", "METRICS_FAILED",
                           f"metrics could not be recorded ({_describe(exc)}); "
                           "jobs go on, this is logged once")

    def _log(self, decision: Decision) -> None:
        self._emit(decision.level, decision.code, decision.message, decision.fields)

    def _note(self, level: str, code: str, message: str, **fields: object) -> None:
        """Log an event of the driver itself (not a decision: the protocol makes those)."""
        self._emit(level, code, message, tuple((k, str(v)) for k, v in fields.items()))

    def _emit(
        self, level: str, code: str, message: str, items: tuple[tuple[str, str], ...]
    ) -> None:
        # Owners, statuses, ids and server messages in a decision are untrusted: escaped, so
        # that none can forge a log line or drive the terminal (verifier._text).
        items = tuple((k, printable(v, FIELD_LIMIT)) for k, v in items)
        text = " ".join(f"{k}={v}" for k, v in items)
        self._logger.log(
            _LEVELS.get(level, logging.INFO),
            "%s: %s [%s]", code, printable(message), text,
            extra={"event_code": code, "event_fields": dict(items)},
        )


class _Measure:
    """Metrics of one run, from the actions performed and their answers (the driver measures;
    verdicts and outcomes are the protocol's own)."""

    def __init__(self, metrics: GuardMetrics, protocol: OwnershipProtocol, started: float) -> None:
        self.metrics = metrics
        self.protocol = protocol
        self.started = started
        self.claim_answered: float | None = None

    def step(self, action: Action, answer: Answer, sent: float, answered: float,
             requested: bool) -> None:
        """``requested``: whether a request really left for the tier. A read answered from
        the status cache, a tier not configured, a deadline already past, or an operation the
        tier does not have is no request: counted as one, with its near-zero "latency", it
        would inflate request rates and pull the latency quantiles down (operator review,
        session 15). The verdict is the protocol's all the same."""
        m = self.metrics
        if isinstance(action, Observe):
            tier = action.tier.value
            ok = isinstance(answer, Observed)
            if requested:
                m.tier_requests.labels(tier, "read", "ok" if ok else "failed").inc()
                m.tier_latency.labels(tier, "read").observe(answered - sent)
            if action.purpose == "pre-claim":
                return
            judged = self.protocol.last_verdict
            verdict = judged[1] if ok and judged is not None else ("failed" if not ok else "")
            if verdict:
                m.verifications.labels(tier, action.purpose, verdict).inc()
            if action.purpose == "verify" and self.claim_answered is not None:
                m.settle_wait.observe(sent - self.claim_answered)
                self.claim_answered = None  # the first deciding read only
        elif isinstance(action, Claim | Heartbeat | Finish | Release):
            assert isinstance(answer, WriteAnswered)
            tier, op = action.via.value, type(action).__name__.lower()
            if requested:
                m.tier_requests.labels(tier, op, answer.outcome.value).inc()
                m.tier_latency.labels(tier, op).observe(answered - sent)
            if isinstance(action, Claim):
                self.claim_answered = answered
        elif isinstance(action, StartWork):
            m.time_to_start.observe(answered - self.started)


class _Run:
    """One job's run: the protocol instance, the work task, and the queue of work events."""

    def __init__(
        self, guard: OwnershipGuard, job_id: str, process: ProcessFn, clock: Callable[[], float],
        alarm: AlarmFactory = no_alarm,
    ) -> None:
        self.guard = guard
        self.clock = clock
        #: Wakes a wait when its deadline comes on :attr:`clock` even if the machine was
        #: suspended meanwhile (the loop's timers alone come late by every suspension).
        self.alarm = alarm
        self.job_id = job_id
        self.process = process
        self.protocol = OwnershipProtocol(
            job_id, me=guard.did, policy=guard.policy, tiers=guard.tier_set
        )
        self.events: asyncio.Queue[Answer] = asyncio.Queue()
        self.job = ClaimedJob(job_id, self.events)
        self.task: asyncio.Task[None] | None = None
        self._cancel_sent = False
        #: A SystemExit or KeyboardInterrupt the work raised, for :meth:`OwnershipGuard.run`.
        self.fatal: BaseException | None = None
        self.result: Mapping[str, Any] | None = None
        self.error: BaseException | None = None
        #: Tier calls cancelled at their deadline and not yet ended (reaped by ``run``).
        self.abandoned: set[asyncio.Task[Any]] = set()
        #: Whether the last action's request really left for its tier (see :meth:`_call`).
        self.requested = False
        self._shutdown_sent = False
        self._subscribed = False
        self._latest_push: Hinted | None = None
        #: The second of two coalesced reports, delivered at the next wait (``_event``).
        self._carried: Answer | None = None
        #: The driver's own notes, held back to be logged with the next step (see ``drive``).
        self._held_notes: list[tuple[str, str, str, dict[str, object]]] = []

    def _pushed(self, push: Any) -> None:
        """A push about our job: kept for the protocol's next wait, as a hint (pushes that
        arrive before it is delivered are merged into one, :meth:`Hinted.merged`)."""
        if getattr(push, "job_id", self.job_id) != self.job_id:
            return  # not ours (the client routes by job; this is a second line)
        self.guard._measured(lambda m: m.pushes.inc())
        queued = self._latest_push is not None
        # Any PushSource may call this: what is not a string is dropped, as a tier's answer
        # is checked before the protocol sees it (a list as status raised in the protocol:
        # an adversarial review, session 31). An emptied hint still brings a read.
        owner, status = getattr(push, "owner", None), getattr(push, "status", None)
        hint = Hinted(owner if isinstance(owner, str) else None,
                      status if isinstance(status, str) else None)
        self._latest_push = hint if self._latest_push is None else (
            self._latest_push.merged(hint, self.guard.did))
        if not queued:
            self.events.put_nowait(_PUSHED)

    def subscribe(self) -> None:
        """Subscribe to pushes about the job (before the claim leaves, so that its own landing,
        and any competing write after it, is pushed too)."""
        push = self.guard.push
        if push is None or self._subscribed:
            return
        try:
            push.subscribe(self.job_id, self._pushed)
        except Exception as exc:  # pushes are hints: polling goes on without them
            self.guard._note("warning", "PUSH_UNAVAILABLE",
                             f"could not subscribe to pushes ({type(exc).__name__})",
                             job_id=self.job_id)
            return
        self._subscribed = True

    def unsubscribe(self) -> None:
        push = self.guard.push
        if push is not None and self._subscribed:
            self._subscribed = False
            with contextlib.suppress(Exception):
                push.unsubscribe(self.job_id, self._pushed)

    def request_shutdown(self) -> None:
        """Queue one :class:`ShutdownRequested` for the protocol's next wait (see the guard)."""
        if not self._shutdown_sent:
            self._shutdown_sent = True
            self.protocol.request_shutdown()  # no claim from now on
            self.events.put_nowait(ShutdownRequested())  # and a claimed job is given back

    async def drive(self) -> GuardOutcome:
        metrics = self.guard.metrics
        step = self.protocol.start(self.clock())
        measure = None if metrics is None else _Measure(metrics, self.protocol, self.clock())
        while True:
            # A cancel is performed before the lines that explain it are logged: a log
            # handler may block (a stderr nobody drains, a paused terminal, a stuck journal),
            # and while it does the event loop runs nothing, not even the work's own stop.
            # Logged first, the decision to abort waited for its log, and the work ran on past
            # the lease end for as long as the sink stalled (an adversarial review, 2026-12-04:
            # a command 3 s past it with `run`'s logging and an undrained stderr). Any other
            # line logged while the work runs can stall the loop the same way: `python -m
            # verifier run` therefore logs through a queue (verifier._log_sink), and a library
            # user should too; this keeps the abort itself out of reach.
            stop_first = isinstance(step.action, CancelWork)
            if not stop_first:
                self._log_step(step)
            if isinstance(step.action, Done):
                outcome = step.action.outcome
                if self.result is not None and outcome.kind is not OutcomeKind.PROCESSED:
                    self._note_uncommitted(outcome.code)
                self.guard._measured(GuardMetrics.record_outcome, outcome.kind.value,
                                     outcome.code)
                committed = outcome.kind is OutcomeKind.PROCESSED
                # The protocol kept the latest Retry-After a tier gave (Outcome.retry_until).
                left = (-math.inf if outcome.retry_until is None
                        else outcome.retry_until - self.clock())
                return GuardOutcome(
                    self.job_id, outcome.kind, outcome.code, outcome.reason,
                    result=self.result if committed else None, error=self.error,
                    held=outcome.held, given_back=outcome.given_back,
                    retry_after=left if left > 0 else None,
                )
            action, sent = step.action, self.clock()
            try:
                answer = await self.perform(action)
            finally:
                if stop_first:
                    # Also when the stop was interrupted (the run cancelled while it waited):
                    # the lines that say why the work was cancelled are never lost.
                    self._log_step(step)
            answered = self.clock()
            step = self.protocol.handle(answer, answered)
            if measure is not None:
                self.guard._measured(lambda _, *facts: measure.step(*facts),
                                     action, answer, sent, answered, self.requested)

    async def perform(self, action: Action) -> Answer:
        self.requested = False  # set once a request really leaves (_call); for the metrics
        if isinstance(action, Observe):
            return await self._observe(action)
        if isinstance(action, Claim | Heartbeat | Finish | Release):
            if isinstance(action, Claim):
                self.subscribe()
            if not isinstance(action, Heartbeat) and self.guard.cache is not None:
                # Our own write changes what the tiers say: forget what they said before.
                self.guard.cache.forget(self.job_id)
            return await self._write(action)
        if isinstance(action, StartWork):
            self.task = asyncio.create_task(self._work(), name=f"process:{self.job_id}")
            self._cancel_sent = False
            return WorkStarted()
        if isinstance(action, CancelWork):
            # Answered only once the work has really stopped: the protocol's next action (the
            # release after a lease expiry) must not hand the job back while we still run it.
            await self.stop_work()
            return WorkStopped()
        if isinstance(action, Sleep):
            return await self._sleep(action.until)
        raise AssertionError(f"unhandled action {action!r}")

    async def _observe(self, action: Observe) -> Answer:
        client = self.guard.clients.get(action.tier)
        if client is None:
            return TierFailed(action.tier, "tier not configured")
        cache = self.guard.cache
        if cache is not None:
            cached = cache.get(action.tier, self.job_id, max_age=action.max_age,
                               now=self.clock())
            if cached is not None:
                self.guard._measured(lambda m: m.cache_hits.labels(action.tier.value).inc())
                return Observed(cached)
        decided = self.clock()  # before the request leaves: the entry's age is never too young
        try:
            observation = await self._call(action, lambda: client.observe(self.job_id))
            problem = self._observation_problem(observation, action.tier)
            if problem is not None:
                # Fail closed: a client (a third party's, say) that labels another tier's
                # answer as this tier's would have the protocol apply the wrong lag bound to
                # it, and an answer about another job is not about ours (adversarial review,
                # session 20). Neither is an answer; neither enters the cache.
                self._tier_failed(action.tier, decided)
                return TierFailed(action.tier, problem)
            if cache is not None:
                cache.put(observation, self.job_id, decided=decided)
            return Observed(observation)
        except _DeadlineReached:
            return TierFailed(action.tier, _DEADLINE_DETAIL)
        except TierRateLimited as exc:
            self._tier_failed(action.tier, decided)
            return TierFailed(action.tier, str(exc), retry_after=exc.retry_after)
        except TierError as exc:
            if isinstance(exc, TierUnsupported):
                self.requested = False
            else:
                self._tier_failed(action.tier, decided)
            return TierFailed(action.tier, str(exc))
        except InvalidInputError as exc:
            # Refused before it left (the monitor's id rule is stricter than the gateway's and
            # aid's: '%', '/', ...): it says nothing about the tier, so the cache keeps the
            # tier's answers (StatusCache.failed: not for reads that never left; adversarial
            # review, session 36: each such id outdated a batch just screened).
            self.requested = False
            return TierFailed(action.tier, str(exc))
        except Exception as exc:  # fail closed: a client bug is "no answer", never "yours"
            self._tier_failed(action.tier, decided)
            return TierFailed(action.tier, f"unexpected {type(exc).__name__}")

    def _observation_problem(self, observation: object, tier: Tier) -> str | None:
        """Why a client's answer to ``observe`` cannot stand for ``tier``'s view of our job,
        or ``None`` when it can."""
        if not isinstance(observation, Observation):
            return f"malformed answer: {type(observation).__name__}, not an Observation"
        if observation.tier is not tier:
            return f"malformed answer: asked {tier.value}, answer labelled {observation.tier}"
        job = observation.job
        # An empty id is the monitor's synthetic stand-in (never judged owned: verifier._models).
        if job is not None and job.id and job.id != self.job_id:
            return f"malformed answer: about job {printable(job.id, FIELD_LIMIT)}, not ours"
        return None

    def _tier_failed(self, tier: Tier, decided: float) -> None:
        """The tier failed a read: what the cache holds from it before is unusable."""
        if self.guard.cache is not None:
            self.guard.cache.failed(tier, decided=decided)

    async def _write(self, action: Claim | Heartbeat | Finish | Release) -> Answer:
        client = self.guard.clients.get(action.via)
        if client is None:
            return WriteAnswered(WriteOutcome.UNKNOWN, detail=f"{action.via} not configured")
        try:
            token: str | None = None
            if isinstance(action, Claim):
                token = await self._call(
                    action, lambda: client.claim(self.job_id, conditional=action.conditional)
                )
            elif isinstance(action, Heartbeat):
                progress = {"pct": action.pct, "download_pct": action.download_pct}
                await self._call(
                    action, lambda: client.heartbeat(self.job_id, action.token, progress)
                )
            elif isinstance(action, Finish):
                result = self.result or {}
                if action.send_by is not None and action.send_by <= self.clock():
                    return WriteAnswered(WriteOutcome.NOT_SENT,
                                         detail="not sent: its send-by instant had passed")
                # Judged on this run's clock, suspensions counted (a review of the bound).
                with sending_by(action.send_by, self.clock, self.alarm):
                    await self._call(action, lambda: client.finish(
                        self.job_id, action.token, result, fenced=action.fenced
                    ))
            else:
                await self._call(action, lambda: client.release(
                    self.job_id, action.token, action.reason, failed=action.failed
                ))
            if isinstance(action, Claim) and action.via is Tier.DATABASE and token is None:
                # A database claim is fenced by its token; a client that answers OK without
                # one has broken its contract. Unknown, never "ours": without the token no
                # read can tell this claim from an older assignment of our DID.
                return WriteAnswered(WriteOutcome.UNKNOWN,
                                     detail="database claim answered without its claim token")
            return WriteAnswered(WriteOutcome.OK, token=token)
        except _DeadlineReached:
            # Unknown, not refused: the request may still land, which is harmless (the
            # protocol never counts a ping it has no answer for).
            return WriteAnswered(WriteOutcome.UNKNOWN, detail=_DEADLINE_DETAIL)
        except ClaimRefused as exc:
            return WriteAnswered(WriteOutcome.REFUSED, detail=str(exc))
        except RequestNotSent as exc:
            # Sure not to have left (a client under ``sending_by``): the protocol may give the
            # job back. Believed only for a finish that asked for a bound (the protocol reads
            # it as UNKNOWN otherwise).
            self.requested = False
            return WriteAnswered(WriteOutcome.NOT_SENT, detail=str(exc))
        except (TierTimeout, TierError) as exc:
            # Unknown, not refused: the write may still land (a timed-out accept does). A claim
            # names the token it sent, so that only a read of it confirms the claim.
            if isinstance(exc, TierUnsupported):
                self.requested = False  # nothing left: not a request the metrics count
            return WriteAnswered(WriteOutcome.UNKNOWN, token=exc.claim_token, detail=str(exc),
                                 retry_after=getattr(exc, "retry_after", None))
        except Exception as exc:
            return WriteAnswered(WriteOutcome.UNKNOWN, detail=f"unexpected {type(exc).__name__}")

    async def _call(self, action: Action, call: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        """:meth:`_call_by_deadline`, where a client that cancels its own call gave no answer.

        ``CancelledError`` out of a tier call is this run being cancelled, or the client
        cancelling itself (a misbehaving client, or one that wraps a cancelled future). The
        second must not end the run as if the first: the work would be stopped but the job not
        given back, and the loop would record no outcome and list nothing held (an adversarial
        review, 2026-12-04). ``Task.cancelling`` tells them apart."""
        try:
            return await self._call_by_deadline(action, call)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is None or current.cancelling():
                raise
            tier = action.tier if isinstance(action, Observe) else getattr(action, "via", "?")
            raise TierUnavailable(str(tier), "the client cancelled its call") from None

    async def _call_by_deadline(
        self, action: Action, call: Callable[[], Coroutine[Any, Any, _T]]
    ) -> _T:
        """Await one tier call, but never past the action's ``deadline`` (guard clock).

        Why (S2, ``docs/safety-model.md``): during work every request carries the lease end as
        its deadline, and the protocol judges the lease only when it gets control back. A tier
        call that hangs (a database timeout, then the monitor's wait for a silent gateway)
        would otherwise keep the work running past the lease end, while the gateway may
        already be handing the job to another encoder. So the driver answers by the deadline
        whatever the tier is doing (:class:`_DeadlineReached`, which the callers turn into
        ``TierFailed`` / ``UNKNOWN``) and the protocol cancels the work itself. The driver
        decides nothing: it only keeps the protocol's deadline.

        * No deadline: the call is awaited as it is (the client's own timeouts apply).
        * Deadline already reached: the tier is **not called**; the answer is given at once.
          "Call, then cancel at once" would give the same answer, so it could only add a
          request nobody waits for: a coroutine awaited in place runs up to its first
          suspension, which may be the send (a ping could land after the protocol released
          the job); as a task cancelled before its first step, it never runs at all, i.e. it
          is "not calling" with extra steps. Not calling is deterministic, sends nothing the
          protocol will not use, and leaves nothing to reap.
        * Otherwise the call runs as its own task and the driver waits for it until the
          deadline, judged on the guard's clock: asyncio's timers may fire up to the loop's
          clock resolution early, and the guard's clock need not be the loop's (a coarse
          monotonic clock, say), so the wait is re-armed until the guard's clock has really
          reached the deadline: "lease end reached" is then true when it is said. The call
          is then cancelled and the answer given at once, without waiting for the client to
          wind down (that normally takes one loop turn, but a client may take longer, and
          every instant past the lease end eats the margin the timing model keeps for a
          pause). :meth:`reap_abandoned` waits for such calls before the run returns, so no
          task outlives the run. Running the call as a task (rather than under
          ``asyncio.timeout`` in place) is what makes the answer independent of how the
          client handles its cancellation.
        """
        deadline: float | None = getattr(action, "deadline", None)
        if deadline is None:
            self.requested = True
            return await call()
        if deadline - self.clock() <= 0:
            self._missed(action, deadline, "not called: the deadline had already passed")
            raise _DeadlineReached
        self.requested = True
        task = asyncio.create_task(call(), name=f"{type(action).__name__}:{self.job_id}")
        try:
            with self.alarm(deadline - self.clock()) as ring:
                while not task.done():
                    left = deadline - self.clock()
                    if left <= _ROUNDING:
                        break
                    await asyncio.wait(_with_alarm(task, ring), timeout=left,
                                       return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the run itself was cancelled: the call goes with it
            self._abandon(task)
            raise
        if not task.done():
            self._abandon(task)
            self._missed(action, deadline, "no answer by the deadline; call cancelled")
            raise _DeadlineReached
        return task.result()

    def _missed(self, action: Action, deadline: float, what: str) -> None:
        # Held for ``drive``: logged with the protocol's answer to the missed deadline, after
        # it when that is the cancel at the lease end (a log may block: see ``drive``).
        tier = action.tier if isinstance(action, Observe) else getattr(action, "via", "?")
        self._held_notes.append((
            "warning", "TIER_DEADLINE", f"{type(action).__name__} via {tier}: {what}",
            {"job_id": self.job_id, "tier": tier, "deadline": f"{deadline:.3f}"},
        ))

    def _abandon(self, task: asyncio.Task[Any]) -> None:
        task.cancel()
        if task.done():
            self._reaped(task)
        else:
            self.abandoned.add(task)
            task.add_done_callback(self._reaped)

    def _reaped(self, task: asyncio.Task[Any]) -> None:
        self.abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a late error of an abandoned call means nothing

    async def reap_abandoned(self) -> None:
        """Wait for the tier calls cancelled at a deadline to end (normally at once).

        A client that takes longer than the cancel latency C to wind down is logged
        (``TIER_CALL_STUCK``) and still awaited, as slow work is: a task left pending past the
        run would be a leak (and, garbage-collected, a "Task was destroyed but it is pending").
        They are not cancelled again: they already were once.
        """
        pending = set(self.abandoned)
        if not pending:
            return
        limit = self.guard.policy.timing.cancel_latency
        _, still = await asyncio.wait(pending, timeout=limit)
        if still:
            self.guard._note("error", "TIER_CALL_STUCK",
                             f"{len(still)} cancelled tier call(s) still running after "
                             f"{limit}s; still waiting", job_id=self.job_id)
            await asyncio.wait(still)

    async def wind_down(self) -> None:
        """Stop the work, then wait for the abandoned tier calls (``run``'s clean-up)."""
        await self.stop_work()
        await self.reap_abandoned()

    async def _work(self) -> None:
        """The user's work, as the run's task: it ends by returning or by ``CancelledError``
        only; any other exception is kept in :attr:`error` (and, for ``SystemExit`` or
        ``KeyboardInterrupt``, in :attr:`fatal`) and reported as :class:`WorkEnded`. What the
        work returned is kept in :attr:`result` (the task's own result is never read)."""
        try:
            self.result = await self.process(self.job)
        except asyncio.CancelledError:
            if not self._cancel_sent:
                # The work cancelled itself (or something else did): it has ended all the
                # same, and the protocol must hear it, or it would go on pinging and holding
                # the job for dead work until the lease ran out.
                self.events.put_nowait(WorkEnded(False, "the work was cancelled"))
            raise
        except BaseException as exc:
            # Not only Exception: work that ends by SystemExit or KeyboardInterrupt has ended
            # too. The protocol is told (it gives the job back), and :meth:`OwnershipGuard.run`
            # raises such an exception after that (:attr:`fatal`).
            self.error = exc
            if not isinstance(exc, Exception):
                self.fatal = exc
            self.events.put_nowait(WorkEnded(False, _describe(exc)))
            return
        if self._cancel_sent:
            # Cancelled, the work caught it and returned: stopped all the same, and whatever
            # it returned is not a result (the protocol has already given up on the job).
            self.result = None
            return
        problem = self._result_problem(self.result)
        if problem is not None:
            # Committed, a result without its CID marks the job complete with no video: lost
            # for good, as nobody encodes it again (an adversarial review, 2026-12-04: a work
            # returning None was committed as ``result: {}`` by the database tier). And one
            # a tier's client refuses before sending would be a finish retried as unknown,
            # then the job reported held. Failed instead: the job goes back for another try.
            self.error = InvalidInputError(problem)
            self.result = None
            self.events.put_nowait(WorkEnded(False, problem))
            return
        self.events.put_nowait(WorkEnded(True))

    def _result_problem(self, result: object) -> str | None:
        """Why ``result`` cannot be committed, or None: a mapping with a ``cid`` every client
        sends, that no client's ``check_result`` refuses (the database's: no ``$`` or dotted
        keys, no NaN). Checked when the work ends, before the finish is decided."""
        if not isinstance(result, Mapping):
            return f"the work returned no result ({type(result).__name__}; expected {{'cid': ...}})"
        try:
            validate_cid(result.get("cid"))
            for client in self.guard.clients.values():
                check = getattr(client, "check_result", None)
                if check is not None:
                    check(result)
        except InvalidInputError as exc:
            return f"the work's {exc}"
        except Exception as exc:  # a mapping whose reads fail: nothing a tier could store
            return f"the work's result could not be read ({type(exc).__name__})"
        return None

    async def _sleep(self, until: float) -> Answer:
        """Wait until the guard clock reaches ``until`` (answer :class:`Woke`), or for the
        first work event before then.

        ``Woke`` is answered only once :attr:`clock` has *reached* ``until``: the protocol
        takes it as "now is at least ``until``" (the settle's end, a ping's or a read's due
        time). An asyncio timer may fire up to the loop's clock resolution early, and a coarse
        clock may not have ticked over yet (15.6 ms on Windows): then it waits again, as
        :meth:`_call` does for deadlines. Found by an adversarial review (2026-12-02)."""
        with self.alarm(until - self.clock()) as ring:
            while True:
                if self._carried is not None:
                    carried, self._carried = self._carried, None
                    if not self._work_over():
                        return carried
                if not self.events.empty():
                    event = self._event(self.events.get_nowait())
                    if event is not None:
                        return event
                    continue
                delay = until - self.clock()
                if delay <= 0:
                    return Woke()
                # Not ``asyncio.wait_for``: on Python 3.11 it can swallow a cancellation of
                # this run that comes in the same loop turn as an event, and the run would go
                # on to commit.
                getter = asyncio.ensure_future(self.events.get())
                try:
                    # At least ``_ROUNDING`` (see there). Answering Woke for such a remainder,
                    # as before, woke up to 1 µs before ``until`` (a review, 2026-12-05).
                    done, _ = await asyncio.wait(_with_alarm(getter, ring),
                                                 timeout=max(delay, _ROUNDING),
                                                 return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not getter.done():
                        getter.cancel()
                if getter in done:
                    event = self._event(getter.result())
                    if event is not None:
                        return event

    def _work_over(self) -> bool:
        """Whether the work has ended on its own: its :class:`WorkEnded` is queued, and the
        reports it made before are moot (nothing needs a report after the work's end). The
        simulator's driver delivers the end in their place (``sim/_encoder.py``,
        ``_due_report``); delivered first, each report let the protocol make two more
        requests (a ping, a read, each up to the lease end) before it heard the end, and the
        finished result could be discarded at the lease end (an adversarial review of the
        drivers, session 45)."""
        task = self.task
        return task is not None and task.done() and not self._cancel_sent

    def _event(self, event: Answer) -> Answer | None:
        """A queued work event; the report and push markers become the latest values (``None``:
        a report marker of work that has ended, dropped)."""
        if event is _PUSHED:
            latest, self._latest_push = self._latest_push, None
            return latest or Woke()
        if event is _REPORTED:
            first, carried = self.job._take_reports()
            if self._work_over():
                return None
            self._carried = carried
            return first
        return event

    def _note_uncommitted(self, code: str) -> None:
        """The work finished with a result, and the run ends without committing it: the job
        was given up before the finish (a lease that ran out while a re-check hung, a
        shutdown), or the finish was refused or got no answer (then it may have landed).
        Logged with its ``cid``, for an operator to recover (an adversarial review,
        2026-12-04: such results were dropped without a word)."""
        assert self.result is not None
        maybe = (" (the finish got no answer: it may have landed)"
                 if code == "FINISH_UNKNOWN" else "")
        self.guard._note("warning", "RESULT_DISCARDED",
                         f"job {self.job_id}: its finished work's result was not committed "
                         f"({code}){maybe}", job_id=self.job_id, outcome=code,
                         cid=self.result.get("cid"))

    def _log_step(self, step: Step) -> None:
        self.log_held_notes()
        for decision in step.decisions:
            self.guard._log(decision)

    def log_held_notes(self) -> None:
        """Log the driver's notes held back by ``_missed`` (``drive`` logs them with the
        decisions of the next step)."""
        notes, self._held_notes = self._held_notes, []
        for level, code, message, fields in notes:
            self.guard._note(level, code, message, **fields)

    async def stop_work(self) -> None:
        """Cancel the work and wait until it has really stopped; only then return.

        Why wait (S2, ``docs/safety-model.md``): an encoder whose stop has not been confirmed
        still occupies its processing interval. The protocol follows a ``CancelWork`` with
        actions that let another encoder start: the release after a lease expiry hands the job
        back at once, and past the lease end the gateway may reassign it. Answering
        ``WorkStopped`` while the work still runs would make two processors; so would
        ``run`` returning (and its caller taking the next job, or exiting with the work
        orphaned) before the work has ended.

        The timing model gives the work C (``cancel_latency``) to stop. If it takes longer,
        the world is outside the model: that is logged (``WORK_STOP_SLOW``) and the wait goes
        on, because giving up on the wait would not stop the work, only hide it. The work is
        cancelled only once: a second ``CancelledError`` could interrupt its own clean-up
        (killing and reaping an ``ffmpeg`` child, say) and leave that running unseen. Pending
        work events are dropped: the work is over.
        """
        task = self.task
        if task is None:
            return
        if not task.done():
            if not self._cancel_sent:
                self._cancel_sent = True
                task.cancel()
            cancel_latency = self.guard.policy.timing.cancel_latency
            done, _ = await asyncio.wait({task}, timeout=cancel_latency)
            if not done:
                self.guard._note(
                    "error", "WORK_STOP_SLOW",
                    f"job {self.job_id} did not stop within {cancel_latency}s; still waiting",
                    job_id=self.job_id,
                )
                await asyncio.wait({task})
        # No exception to collect from the task: ``_work`` keeps every error but a
        # cancellation in ``self.error`` itself (a collection that stood here could never run:
        # mutation testing, 2026-12-03).
        while not self.events.empty():
            self.events.get_nowait()
        self._latest_push = self._carried = None
        self.task = None

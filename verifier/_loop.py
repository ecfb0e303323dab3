"""The encoder loop: ask for offered jobs, choose one, guard it, repeat; shut down gracefully.

:class:`OwnershipGuard` guards one job. Around it an encoder needs a loop: poll the gateway
(``myJob``, ``getJob``) or Gateway Aid (``list-jobs``) for work, pick an offered job it is not
already running and has not just given up on, run the guard with a concurrency limit, back off
while nothing is offered, and stop cleanly. :class:`EncoderLoop` is that loop; ``python -m
verifier run -- COMMAND`` and the live emulation (``sim/live``) both run it.

What the loop may decide and what it may not:

* **Which job to try, and when to ask again** is :class:`LoopPolicy` (data: sources in order,
  concurrency, idle back-off, cool-down) applied by :class:`PollSchedule`, pure code with no
  I/O and no clock (:mod:`verifier._polling`); this class only performs what it decides. The
  simulator's encoders drive the same schedule, so the suites' L1 is about this loop.
* **Whether a job is ours** is never the loop's: an offered job is only a candidate. The guard's
  protocol (:mod:`verifier.protocol`) claims, verifies, processes and finishes it; an offer from
  ``getJob`` is handed to every caller, and one from ``myJob`` may be stale.
* **Shutdown** (:meth:`EncoderLoop.stop`): no new job is started; each running guard is told
  (:meth:`OwnershipGuard.request_shutdown`), and its protocol cancels the work (waiting for the
  stop, so the cancel latency C is honoured) and releases the job, fenced. :meth:`run` returns
  once every guard has ended: nothing is left owned and abandoned.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

from ._errors import (
    InvalidInputError,
    MalformedAnswer,
    TierError,
    TierRateLimited,
    TierUnavailable,
    TierUnsupported,
)
from ._guard import ClaimedJob, GuardOutcome, OwnershipGuard
from ._metrics import GuardMetrics
from ._models import GatewayMonitorJob
from ._monitor import monitor_job_id
from ._policy import Tier
from ._polling import (
    OFFER_SOURCES,
    AllSlotsBusy,
    IdleUntil,
    LoopPolicy,
    PollSchedule,
)
from ._text import FIELD_LIMIT, printable
from .protocol import OutcomeKind, pre_claim_tier, screened, unusable_answers

__all__ = ["OFFER_SOURCES", "EncoderLoop", "LoopPolicy", "LoopWork", "OfferFn", "offer_sources"]

_DEFAULT_LOGGER: Final = logging.getLogger("verifier.loop")
_T = TypeVar("_T")

#: Asks one source for offered jobs (an empty list: nothing offered).
OfferFn = Callable[[], Awaitable[list[GatewayMonitorJob]]]
#: Screens job ids in one request: ``{id: status}`` (``GatewayMonitorService.batch_status``);
#: an id missing from the answer is unknown.
ScreenFn = Callable[[Sequence[str]], Awaitable[dict[str, str]]]
#: The monitor refuses batches of more than 50 ids.
BATCH_LIMIT: Final = 50


def batch_answer(answer: object, asked: Sequence[str]) -> dict[str, str]:
    """``answer``, a screen function's, as the ``{id: status}`` map the protocol's screening
    rule reads, or :class:`MalformedAnswer`. ``GatewayMonitorService.batch_status`` checks its
    own answers; a screen function of a library user's (a thin wrapper over the raw endpoint,
    whose entries are objects) may answer anything, and its answer used to reach the rule
    unchecked: a ``TypeError`` there ended the loop and left its running jobs held
    (adversarial review, session 36). Checked, it is a failed batch: the reads go on."""
    if not isinstance(answer, Mapping):
        raise MalformedAnswer("monitor", f"batch answer is a {type(answer).__name__}, not a map")
    wanted = set(asked)
    for job_id, status in answer.items():
        if not isinstance(job_id, str) or job_id not in wanted:
            raise MalformedAnswer("monitor", "batch answer names a job that was not asked: "
                                  f"{printable(str(job_id), FIELD_LIMIT)}")
        if not isinstance(status, str):
            raise MalformedAnswer("monitor", f"batch answer's status of job "
                                  f"{printable(job_id, FIELD_LIMIT)} is a "
                                  f"{type(status).__name__}, not a string")
    return dict(answer)


def _offer_list(name: str, answer: object) -> list[GatewayMonitorJob]:
    """``answer``, a source's, as the list of offers the schedule reads, or
    :class:`MalformedAnswer`. The configured clients check their own offers; a source of a
    library user's may answer anything, and its answer reached the schedule unchecked:
    ``None`` or an entry without a string id raised there and ended :meth:`EncoderLoop.run`,
    every running job cancelled and left held (an adversarial review, session 45)."""
    if not isinstance(answer, list | tuple):
        raise MalformedAnswer(name, f"offer is a {type(answer).__name__}, not a list")
    for job in answer:
        if not isinstance(getattr(job, "id", None), str):
            raise MalformedAnswer(name, f"offered a {type(job).__name__} without a string id")
    return list(answer)


#: The work of one job: the guard's :class:`ClaimedJob` and the job as it was offered (its
#: ``input`` says what to download). Returns the result to commit (``{"cid": ...}``).
LoopWork = Callable[[ClaimedJob, GatewayMonitorJob], Awaitable[Mapping[str, Any] | None]]


def offer_sources(gateway: Any | None = None, aid: Any | None = None) -> dict[str, OfferFn]:
    """The offer calls of the configured clients: ``myjob`` and ``getjob`` on a
    :class:`~verifier.LegacyGatewayClient`, ``aid`` on a :class:`~verifier.GatewayAidClient`."""
    sources: dict[str, OfferFn] = {}
    if gateway is not None:
        async def my_job() -> list[GatewayMonitorJob]:
            job = await gateway.my_job()
            return [] if job is None else [job]

        async def get_job() -> list[GatewayMonitorJob]:
            job = await gateway.get_job()
            return [] if job is None else [job]

        sources["myjob"], sources["getjob"] = my_job, get_job
    if aid is not None:
        async def list_jobs() -> list[GatewayMonitorJob]:
            return list(await aid.list_jobs())

        sources["aid"] = list_jobs
    return sources


class EncoderLoop:
    """Polls for offered jobs and guards each with ``guard``, ``policy.concurrency`` at a time.

    ``offers`` maps each source named in ``policy.sources`` to its call (see
    :func:`offer_sources`). ``work(job, offered)`` is the user's work for one job (as
    ``process`` is for :meth:`OwnershipGuard.run`). ``rng`` draws the jitter (pass a seeded
    one for reproducible runs); ``idle`` performs an idle wait (default ``asyncio.sleep``: an
    emulator may wake a waiting encoder early). ``on_outcome`` is called with each job's
    outcome; :attr:`outcomes` counts them by kind; ``metrics`` counts the polls (give the same
    :class:`~verifier.GuardMetrics` to the guard for the rest).

    ``screen`` (``GatewayMonitorService.batch_status``, say): when a source offers two or more
    jobs, the first 50 distinct ones the cache knows nothing about are screened in one batch
    request before any is tried (those seen held are tried last), and the
    answers go to the guard's status cache (:meth:`OwnershipGuard.screened`; the guard needs
    a policy with ``status_cache_s``), where the pre-claim checks find them: one request
    instead of one read per job. What an answer may stand for is the protocol's rule
    (:func:`verifier.protocol.screened`: a missing id is unknown, never available); a batch
    never stands in for a deciding read. A failed batch is logged; the reads happen as usual.
    """

    def __init__(
        self,
        guard: OwnershipGuard,
        work: LoopWork,
        *,
        offers: Mapping[str, OfferFn],
        policy: LoopPolicy | None = None,
        rng: random.Random | None = None,
        idle: Callable[[float], Awaitable[None]] | None = None,
        on_outcome: Callable[[GuardOutcome], None] | None = None,
        logger: logging.Logger | None = None,
        metrics: GuardMetrics | None = None,
        screen: ScreenFn | None = None,
    ) -> None:
        self.guard = guard
        self.work = work
        # Screening fills the cache of the monitor, so it pays only where the pre-claim check
        # reads the monitor (an infrastructure node's reads the database), and only when the
        # policy lets that check take a cached answer at all: with ``status_cache_s`` 0 every
        # answer would be stored and never used (adversarial review, session 36).
        self._screen = screen if guard.cache is not None and guard.policy.status_cache_s > 0 \
            and pre_claim_tier(guard.policy, guard.tier_set) is Tier.MONITOR else None
        self.policy = policy or LoopPolicy()
        missing = [s for s in self.policy.sources if s not in offers]
        if missing:
            raise ValueError(f"no client for offer source(s) {missing}: configure the legacy "
                             "gateway for myjob/getjob, Gateway Aid for aid")
        self.offers = {name: offers[name] for name in self.policy.sources}
        self.rng = rng or random.Random()
        self._idle = idle or asyncio.sleep
        self._on_outcome = on_outcome
        self._metrics = metrics
        if metrics is not None:
            # Each source's polls exist at 0 from the start, failures included, so the first
            # failed poll shows in rate() (the VerifierOffersFailing alert).
            for source in self.policy.sources:
                for result in ("offered", "empty", "failed"):
                    metrics.polls.labels(source, result)
        self._logger = logger or _DEFAULT_LOGGER
        self.outcomes: Counter[str] = Counter()
        #: Jobs whose give-back got no answer (``GuardOutcome.held``: a shutdown's, or any
        #: other path's), and when: they may stay held until the gateway reassigns them.
        self._held_at: dict[str, float] = {}
        #: The loop's clock (the event loop's, once :meth:`run` has started).
        self._time: Callable[[], float] = time.monotonic
        #: The loop's decisions (:mod:`verifier._polling`), pure: this class performs them.
        self.schedule = PollSchedule(self.policy, self.rng)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()
        #: The first SystemExit or KeyboardInterrupt of a job's work or of ``on_outcome``
        #: (raised by ``run`` once every job is given back).
        self._fatal: BaseException | None = None

    @property
    def held(self) -> set[str]:
        """Jobs that may still be assigned to us although no run of ours holds them: a
        give-back (or a finish) got no answer less than the reassignment timeout T ago (after
        T the gateway takes them back itself), and no later run of the job processed it or
        had its give-back answered. Readable after :meth:`run` has returned too."""
        horizon = self.guard.policy.timing.reassign_timeout
        now = self._time()
        return {job for job, at in self._held_at.items() if now - at < horizon}

    @property
    def running(self) -> frozenset[str]:
        """The ids of the jobs being guarded now."""
        return frozenset(self._running)

    def stop(self) -> None:
        """Shut down gracefully (idempotent; safe from a signal handler on the loop). A repeated
        request changes nothing but says what the shutdown still waits for: silence read as a
        hung process (operator review, session 16)."""
        if not self._stop.is_set():
            self._log(logging.WARNING, "LOOP_SHUTDOWN",
                      f"Shutting down: {len(self._running)} job(s) to give back",
                      running=len(self._running))
            self._stop.set()
            self.guard.request_shutdown()
            return
        waiting = sorted(self._running)
        self._log(logging.WARNING, "LOOP_STILL_STOPPING",
                  f"Still shutting down: waiting for {len(waiting)} job(s) to be stopped and "
                  f"given back ({', '.join(waiting) or 'none'}); SIGKILL abandons them (each "
                  "stays held until the gateway reassigns it)", running=len(waiting))

    async def run(self) -> Counter[str]:
        """Run until :meth:`stop`; then return once every guarded job has ended.

        If this coroutine is itself cancelled, each guard run is cancelled in turn (its work
        stopped, but its job not released) and awaited before the cancellation propagates.
        """
        loop = asyncio.get_running_loop()
        self._time = loop.time
        try:
            while not self._stop.is_set():
                if self.guard.shutting_down:
                    # Told to shut down behind the loop's back (the guard's own
                    # request_shutdown, from a signal handler): every job would be skipped
                    # (SHUTDOWN) after its pre-claim read, and the next polled at once, for
                    # ever (an adversarial review, session 45: 300 polls a minute).
                    self.stop()
                    break
                step = self.schedule.next(loop.time())
                if isinstance(step, AllSlotsBusy):
                    await self._until_stopped(asyncio.wait(
                        set(self._running.values()), return_when=asyncio.FIRST_COMPLETED))
                elif isinstance(step, IdleUntil):
                    await self._until_stopped(self._idle(max(0.0, step.until - loop.time())))
                else:
                    job = await self._poll(step.source, loop.time)
                    if job is not None and not self._stop.is_set():
                        self._start(job)
            if self._running:
                await asyncio.wait(set(self._running.values()))
        except BaseException:
            for task in self._running.values():
                task.cancel()
            if self._running:
                await asyncio.wait(set(self._running.values()))
            raise
        counts = {kind: count for kind, count in sorted(self.outcomes.items())}
        held = self.held
        if held:
            self._log(logging.ERROR, "LOOP_STOPPED",
                      f"Stopped; {len(held)} job(s) whose give-back or finish got no answer "
                      f"(each may be complete, or held until the gateway reassigns it): "
                      f"{', '.join(sorted(held))}",
                      **counts)
        else:
            self._log(logging.INFO, "LOOP_STOPPED", "Stopped: no job held", **counts)
        if self._fatal is not None:
            raise self._fatal  # what a job's work raised, now that every job is given back
        return self.outcomes

    async def _until_stopped(self, awaitable: Awaitable[Any]) -> None:
        """Await ``awaitable``, but no longer than until :meth:`stop` (then cancel it)."""
        task = asyncio.ensure_future(awaitable)
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, stopped):
                if not pending.done():
                    pending.cancel()
            await asyncio.gather(task, stopped, return_exceptions=True)

    async def _poll(self, name: str, clock: Callable[[], float]) -> GatewayMonitorJob | None:
        """Ask source ``name``; the job the schedule chooses from its offer, or ``None``.

        A source that fails is logged and passed over (fail closed: no offer is no claim).
        """
        result: list[GatewayMonitorJob] = []
        poll = asyncio.ensure_future(self._contained(name, self.offers[name]))
        await self._until_stopped(poll)
        if self._stop.is_set():
            return None
        polled = "failed"
        try:
            result = _offer_list(name, poll.result())
            polled = "offered" if result else "empty"
        except TierRateLimited as exc:
            self.schedule.poll_failed(name, clock(), retry_after=exc.retry_after)
            self._log(logging.WARNING, "LOOP_POLL_FAILED", f"{name}: {exc}", source=name)
        except TierError as exc:
            self.schedule.poll_failed(name, clock())
            self._log(logging.WARNING, "LOOP_POLL_FAILED", f"{name}: {exc}", source=name)
        except Exception as exc:  # a client bug must not stop the encoder
            self.schedule.poll_failed(name, clock())
            self._log(logging.ERROR, "LOOP_POLL_FAILED",
                      f"{name}: unexpected {type(exc).__name__}", source=name)
        if self._metrics is not None:
            try:
                self._metrics.polls.labels(name, polled).inc()
            except Exception:  # metrics never stop the loop (see OwnershipGuard._measured)
                self._logger.debug("poll metric not recorded", exc_info=True)
        held: set[str] = set()
        if self._screen is not None:
            ids = self._to_screen(self.schedule.screen(result, clock()))
            if ids:
                held = await self._screened(ids)
                if self._stop.is_set():
                    return None
        job = self.schedule.offered(name, result, clock(), held=held)
        if job is not None:
            self._log(logging.INFO, "LOOP_OFFERED", f"{name} offered job {job.id}",
                      source=name, job_id=job.id)
        return job

    async def _contained(self, name: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """``call()`` (a source's poll, the screen) as the loop may await it in a task.

        A client that cancels its own call (``CancelledError`` while this task is not being
        cancelled: ``Task.cancelling``) has failed, as the guard reads a tier call; let
        through, it ended :meth:`run` with every guarded job held. A ``SystemExit`` or
        ``KeyboardInterrupt`` stops the loop gracefully (:meth:`_end_gracefully`); raised in
        the task it would stop the event loop at once, the jobs held (an adversarial review
        of the encoder loop, session 21)."""
        try:
            return await call()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the loop's own cancel (a stop), or the run's
            raise TierUnavailable(name, "the call was cancelled by its client") from None
        except (SystemExit, KeyboardInterrupt) as exc:
            self._end_gracefully(exc)
            raise TierUnavailable(name, f"{type(exc).__name__} raised: stopping") from None

    def _to_screen(self, candidates: Iterable[str]) -> list[str]:
        """Of the schedule's candidates (:meth:`PollSchedule.screen`: each once, not running
        here, not cooling down), the ids worth a batch status request: not already answered
        in the cache, and usable as an id; at most one batch. Only one job is chosen per poll:
        screening every job of a long list at each poll cost more monitor requests than the
        pre-claim reads it saved (33.9 per job against 14.1 without screening for a list of
        1,000, and one id the client refuses failed its whole batch: an adversarial review,
        session 21)."""
        ids: list[str] = []
        for job_id in candidates:
            if len(ids) == BATCH_LIMIT:
                break
            if self._known(job_id):
                continue
            try:
                # The monitor's own rule, stricter than the shared one ('/', '%', ... are
                # legal for the gateway and aid): one id it refuses failed the whole batch
                # (adversarial review, session 22).
                ids.append(monitor_job_id(job_id))
            except InvalidInputError:
                continue
        return ids

    def _known(self, job_id: str) -> bool:
        """Whether the cache already has an answer the pre-claim check would take: screening
        it again would only spend a request on what is known."""
        cache = self.guard.cache
        return cache is not None and cache.lookup(
            Tier.MONITOR, job_id, max_age=self.guard.policy.status_cache_s,
            now=self.guard.now()) is not None

    async def _screened(self, job_ids: list[str]) -> set[str]:
        """Screen ``job_ids`` in batches; the answers go to the guard's cache. Returns the ids
        the monitor answered as held (``assigned``, ``running``: no cache entry, as the holder
        may be us), which the poll tries after the others."""
        screen = self._screen
        assert screen is not None
        assigned: set[str] = set()
        for first in range(0, len(job_ids), BATCH_LIMIT):
            batch = job_ids[first:first + BATCH_LIMIT]
            decided = self.guard.now()  # before the request leaves: entries never look young
            request = asyncio.ensure_future(
                self._contained("monitor", lambda: screen(batch)))  # noqa: B023 (awaited here)
            await self._until_stopped(request)
            if self._stop.is_set():
                return assigned
            try:
                answer = batch_answer(request.result(), batch)
            except Exception as exc:  # screening is an optimisation: the reads go on
                # A request refused before it left is no request, and says nothing about the
                # monitor (not counted: a review of the metrics, session 37).
                if isinstance(exc, TierRateLimited):
                    # The monitor said when to come back: the next batch, and the pre-claim
                    # and deciding reads of the jobs this poll offered, would ask it at once
                    # (dropped, a batch went out at every poll: an adversarial review,
                    # session 45).
                    self.schedule.rate_limited(self._time(), exc.retry_after)
                if not isinstance(exc, TierUnsupported | InvalidInputError):
                    self._count_batch("failed", decided)
                    if self.guard.cache is not None:
                        # The monitor is in trouble: its answers from before must not let a
                        # pre-claim check pass now (StatusCache.failed).
                        self.guard.cache.failed(Tier.MONITOR, decided=decided)
                self._log(logging.WARNING, "LOOP_SCREEN_FAILED",
                          f"batch status of {len(batch)} job(s) failed: {type(exc).__name__}",
                          jobs=len(batch))
                continue
            self._count_batch("ok", decided)
            entries = screened(Tier.MONITOR, batch, answer)
            unknown = unusable_answers(batch, answer, entries)
            kept = self.guard.screened(entries, decided=decided, unknown=unknown)
            assigned.update(unknown)
            self._log(logging.DEBUG, "LOOP_SCREENED",
                      f"screened {len(batch)} job(s): {kept} answer(s) kept",
                      jobs=len(batch), kept=kept)
            if self._metrics is not None:
                try:
                    self._metrics.batch_size.observe(len(batch))
                except Exception:
                    self._logger.debug("batch metric not recorded", exc_info=True)
        return assigned

    def _count_batch(self, result: str, sent: float) -> None:
        """A batch status request is a monitor request too: counted with the others, so an
        operator sees screening's requests and failures (operator review, session 15)."""
        if self._metrics is None:
            return
        try:
            self._metrics.tier_requests.labels("monitor", "batch", result).inc()
            self._metrics.tier_latency.labels("monitor", "batch").observe(
                self.guard.now() - sent)
        except Exception:
            self._logger.debug("batch request metric not recorded", exc_info=True)

    def _start(self, offered: GatewayMonitorJob) -> None:
        job_id = offered.id
        task = asyncio.create_task(self._guarded(offered), name=f"guard:{job_id}")
        self._running[job_id] = task
        self.schedule.started(job_id)

    async def _guarded(self, offered: GatewayMonitorJob) -> None:
        job_id = offered.id

        async def process(job: ClaimedJob) -> Mapping[str, Any] | None:
            return await self.work(job, offered)

        try:
            outcome, fatal = await self.guard._run_to_outcome(job_id, process)
            if fatal is not None:
                self._end_gracefully(fatal)
        except Exception as exc:
            # The guard returns outcomes; an exception here is a bug or an unusable id. Count
            # it as a failure and go on: one job must not stop the encoder.
            outcome = GuardOutcome(job_id, OutcomeKind.FAILED, "GUARD_ERROR",
                                   f"{type(exc).__name__}: {exc}", error=exc)
            self._log(logging.ERROR, "LOOP_GUARD_ERROR", f"job {job_id}: {outcome.reason}",
                      job_id=job_id)
            if self._metrics is not None:
                try:  # the guard never got to count it (operator review, session 15)
                    self._metrics.record_outcome(outcome.kind.value, outcome.code)
                except Exception:
                    self._logger.debug("outcome metric not recorded", exc_info=True)
        finally:
            self._running.pop(job_id, None)
        self.schedule.ended(job_id, self._time(), processed=outcome.processed,
                            code=outcome.code, retry_after=outcome.retry_after)
        self.outcomes[outcome.kind.value] += 1
        self._log(logging.INFO, "LOOP_JOB_ENDED",
                  f"job {job_id}: {outcome.kind.value} ({outcome.code})",
                  job_id=job_id, kind=outcome.kind.value, outcome=outcome.code)
        if outcome.held:
            now = self._time()
            # Kept no longer than T (after it the gateway takes the job back itself): a long
            # run's unanswered give-backs would otherwise pile up (session 21's review).
            horizon = self.guard.policy.timing.reassign_timeout
            self._held_at = {j: t for j, t in self._held_at.items() if now - t < horizon}
            self._held_at[job_id] = now
        elif outcome.processed or outcome.given_back:
            # Only what shows the job is not ours clears it: a later run that learned nothing
            # (its pre-claim read failed, say) leaves an earlier unanswered give-back standing.
            self._held_at.pop(job_id, None)
        if self._on_outcome is not None:
            try:
                self._on_outcome(outcome)
            except Exception as exc:  # the caller's bug must not end the loop, nor hide
                self._log(logging.ERROR, "LOOP_CALLBACK_FAILED",
                          f"on_outcome raised {type(exc).__name__}: {exc}", job_id=job_id)
            except (SystemExit, KeyboardInterrupt) as exc:
                self._end_gracefully(exc)

    def _end_gracefully(self, fatal: BaseException) -> None:
        """A job's work (or the ``on_outcome`` callback) asked the process to end (SystemExit,
        KeyboardInterrupt). Let through at once, it would stop the event loop with every other
        job still held until the gateway's T (an adversarial review, 2026-12-04). The loop
        stops as on a signal instead, gives every job back, and :meth:`run` raises the first
        such exception; any later one is logged, not lost."""
        if self._fatal is None:
            self._fatal = fatal
        else:
            self._log(logging.ERROR, "LOOP_FATAL_DROPPED",
                      f"another {type(fatal).__name__} while stopping; "
                      f"{type(self._fatal).__name__} will be raised")
        self.stop()

    def _log(self, level: int, code: str, message: str, **fields: object) -> None:
        # Offered ids and tier errors are untrusted: escaped, as the guard does (verifier._text).
        items = {k: printable(v, FIELD_LIMIT) for k, v in fields.items()}
        text = " ".join(f"{k}={v}" for k, v in items.items())
        self._logger.log(level, "%s: %s [%s]", code, printable(message), text,
                         extra={"event_code": code, "event_fields": items})

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
(fail closed), never as a confirmation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._errors import ClaimRefused, TierError, TierRateLimited, TierTimeout
from ._ids import validate_did, validate_job_id
from ._policy import Policy, Tier, TierSet
from ._tiers import TierClient
from .protocol import (
    Action,
    Answer,
    CancelWork,
    Claim,
    Decision,
    Done,
    Finish,
    Heartbeat,
    Observe,
    Observed,
    OutcomeKind,
    OwnershipProtocol,
    PhaseChanged,
    Release,
    Sleep,
    StartWork,
    TierFailed,
    Woke,
    WorkEnded,
    WorkStarted,
    WorkStopped,
    WriteAnswered,
    WriteOutcome,
)

__all__ = ["ClaimedJob", "GuardOutcome", "OwnershipGuard", "ProcessFn"]

_LEVELS: Final = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_DEFAULT_LOGGER: Final = logging.getLogger("verifier.guard")


class ClaimedJob:
    """Handed to the user's ``process``: the job id, and a way to report phase and progress.

    Phases matter: the documented chain pinged only while encoding (defect 5); the hardened
    chain pings in every phase, and its ping carries the latest progress reported here.
    """

    def __init__(self, job_id: str, events: asyncio.Queue[Answer]) -> None:
        self.job_id = job_id
        self._events = events
        self.phase = ""
        self.progress: dict[str, float] = {"pct": 0.0, "download_pct": 0.0}

    def set_phase(self, phase: str) -> None:
        """Report the current phase (``download``, ``encode``, ``upload``)."""
        if phase != self.phase:
            self.phase = phase
            self._events.put_nowait(PhaseChanged(phase))

    def set_progress(self, pct: float | None = None, download_pct: float | None = None) -> None:
        """Report progress in percent; sent with the next ping."""
        if pct is not None:
            self.progress["pct"] = float(pct)
        if download_pct is not None:
            self.progress["download_pct"] = float(download_pct)


ProcessFn = Callable[[ClaimedJob], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class GuardOutcome:
    """What happened to one job. ``result`` is what ``process`` returned, when it was committed.

    ``kind`` is one of processed, skipped (with ``reason``), cancelled (ownership lost), failed.
    """

    job_id: str
    kind: OutcomeKind
    code: str
    reason: str
    result: Mapping[str, Any] | None = None
    error: BaseException | None = None

    @property
    def processed(self) -> bool:
        return self.kind is OutcomeKind.PROCESSED


class OwnershipGuard:
    """Runs claim → verify → process → finish for one job at a time, with real tier clients.

    ``clients`` are the configured tier clients (any of database, monitor, gateway, aid); the
    set of tiers present tells the protocol which node this is (infrastructure nodes have the
    database). ``clock`` is monotonic seconds; by default the event loop's own clock, so that
    the protocol's deadlines and asyncio's timeouts agree (and virtual-time loops work).
    """

    def __init__(
        self,
        *,
        did: str,
        clients: Iterable[TierClient],
        policy: Policy | None = None,
        clock: Callable[[], float] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.did = validate_did(did)
        self.policy = policy or Policy.hardened()
        self.clients: dict[Tier, TierClient] = {}
        for client in clients:
            tier = Tier(client.tier)
            if tier in self.clients:
                raise ValueError(f"two clients for tier {tier}")
            self.clients[tier] = client
        self.tier_set = TierSet(**{t.value: t in self.clients for t in Tier})
        self._clock = clock
        self._logger = logger or _DEFAULT_LOGGER

    async def run(self, job_id: str, process: ProcessFn) -> GuardOutcome:
        """Run the protocol for ``job_id``; ``process`` runs only if and while the job is ours."""
        job_id = validate_job_id(job_id)
        run = _Run(self, job_id, process, self._clock or asyncio.get_running_loop().time)
        try:
            return await run.drive()
        finally:
            await run.stop_work()

    def _log(self, decision: Decision) -> None:
        fields = dict(decision.fields)
        text = " ".join(f"{k}={v}" for k, v in decision.fields)
        self._logger.log(
            _LEVELS.get(decision.level, logging.INFO),
            "%s: %s [%s]", decision.code, decision.message, text,
            extra={"event_code": decision.code, "event_fields": fields},
        )


class _Run:
    """One job's run: the protocol instance, the work task, and the queue of work events."""

    def __init__(
        self, guard: OwnershipGuard, job_id: str, process: ProcessFn, clock: Callable[[], float]
    ) -> None:
        self.guard = guard
        self.clock = clock
        self.job_id = job_id
        self.process = process
        self.protocol = OwnershipProtocol(
            job_id, me=guard.did, policy=guard.policy, tiers=guard.tier_set
        )
        self.events: asyncio.Queue[Answer] = asyncio.Queue()
        self.job = ClaimedJob(job_id, self.events)
        self.task: asyncio.Task[Mapping[str, Any] | None] | None = None
        self.result: Mapping[str, Any] | None = None
        self.error: BaseException | None = None

    async def drive(self) -> GuardOutcome:
        step = self.protocol.start(self.clock())
        while True:
            for decision in step.decisions:
                self.guard._log(decision)
            if isinstance(step.action, Done):
                outcome = step.action.outcome
                committed = outcome.kind is OutcomeKind.PROCESSED
                return GuardOutcome(
                    self.job_id, outcome.kind, outcome.code, outcome.reason,
                    result=self.result if committed else None, error=self.error,
                )
            answer = await self.perform(step.action)
            step = self.protocol.handle(answer, self.clock())

    async def perform(self, action: Action) -> Answer:
        if isinstance(action, Observe):
            return await self._observe(action)
        if isinstance(action, Claim | Heartbeat | Finish | Release):
            return await self._write(action)
        if isinstance(action, StartWork):
            self.task = asyncio.create_task(self._work(), name=f"process:{self.job_id}")
            return WorkStarted()
        if isinstance(action, CancelWork):
            await self.stop_work()
            return WorkStopped()
        if isinstance(action, Sleep):
            return await self._sleep(action.until)
        raise AssertionError(f"unhandled action {action!r}")

    async def _observe(self, action: Observe) -> Answer:
        client = self.guard.clients.get(action.tier)
        if client is None:
            return TierFailed(action.tier, "tier not configured")
        try:
            return Observed(await client.observe(self.job_id))
        except TierRateLimited as exc:
            return TierFailed(action.tier, str(exc), retry_after=exc.retry_after)
        except TierError as exc:
            return TierFailed(action.tier, str(exc))
        except Exception as exc:  # fail closed: a client bug is "no answer", never "yours"
            return TierFailed(action.tier, f"unexpected {type(exc).__name__}")

    async def _write(self, action: Claim | Heartbeat | Finish | Release) -> Answer:
        client = self.guard.clients.get(action.via)
        if client is None:
            return WriteAnswered(WriteOutcome.UNKNOWN, detail=f"{action.via} not configured")
        try:
            token: str | None = None
            if isinstance(action, Claim):
                token = await client.claim(self.job_id, conditional=action.conditional)
            elif isinstance(action, Heartbeat):
                await client.heartbeat(self.job_id, action.token, dict(self.job.progress))
            elif isinstance(action, Finish):
                await client.finish(
                    self.job_id, action.token, self.result or {}, fenced=action.fenced
                )
            else:
                await client.release(
                    self.job_id, action.token, action.reason, failed=action.failed
                )
            return WriteAnswered(WriteOutcome.OK, token=token)
        except ClaimRefused as exc:
            return WriteAnswered(WriteOutcome.REFUSED, detail=str(exc))
        except (TierTimeout, TierError) as exc:
            # Unknown, not refused: the write may still land (a timed-out accept does).
            return WriteAnswered(WriteOutcome.UNKNOWN, detail=str(exc))
        except Exception as exc:
            return WriteAnswered(WriteOutcome.UNKNOWN, detail=f"unexpected {type(exc).__name__}")

    async def _work(self) -> Mapping[str, Any] | None:
        try:
            self.result = await self.process(self.job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error = exc
            self.events.put_nowait(WorkEnded(False, f"{type(exc).__name__}: {exc}"))
            return None
        self.events.put_nowait(WorkEnded(True))
        return self.result

    async def _sleep(self, until: float) -> Answer:
        delay = until - self.clock()
        if not self.events.empty():
            return self.events.get_nowait()
        if delay <= 0:
            return Woke()
        try:
            return await asyncio.wait_for(self.events.get(), timeout=delay)
        except TimeoutError:
            return Woke()

    async def stop_work(self) -> None:
        """Cancel the work and wait until it has really stopped (S2: an unconfirmed stop still
        holds the interval). Pending work events are dropped: the work is over."""
        task = self.task
        if task is None:
            return
        if not task.done():
            task.cancel()
            cancel_latency = self.guard.policy.timing.cancel_latency
            done, _ = await asyncio.wait({task}, timeout=cancel_latency)
            if not done:
                self.guard._logger.error(
                    "WORK_STOP_SLOW: job %s did not stop within %ss; still waiting",
                    self.job_id, cancel_latency,
                )
                await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            self.error = self.error or task.exception()
        while not self.events.empty():
            self.events.get_nowait()
        self.task = None

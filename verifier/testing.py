"""Supported test doubles: an in-memory job store and tier clients that lie like the real ones.

Use them to try an encoder's ``process`` coroutine against the guard without a network::

    jobs = InMemoryJobs()
    jobs.add("job-1")
    db = InMemoryTier(Tier.DATABASE, jobs, did)
    gateway = InMemoryTier(Tier.GATEWAY, jobs, did, lie=True, write_delay=1.0)
    outcome = await OwnershipGuard(did=did, clients=[db, gateway]).run("job-1", process)

They follow ``docs/contract.md``: the gateway's accept is check-then-act and, with ``lie``,
answers OK to everyone and lets the last writer win; its pings are answered OK for non-owners;
the monitor reads the store as it was ``lag`` seconds ago; the database claim is atomic and
conditional, and writes are fenced on owner and token. Time is the running event loop's clock,
so these doubles work under virtual-time loops. Faults are scripted with :meth:`fail_next`.

The simulator (``sim/``) has its own, richer world model; these are for unit tests and demos.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import itertools
import selectors
from collections import defaultdict, deque
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from ._errors import ClaimRefused, TierUnavailable
from ._ids import normalize_did, validate_job_id
from ._models import CLAIMABLE_STATUSES, PROCESSABLE_STATUSES, parse_job
from ._policy import Tier
from ._tiers import Observation

__all__ = ["InMemoryJobs", "InMemoryTier", "VirtualTimeLoop", "run_virtual", "virtual_time"]

T = TypeVar("T")


def _now() -> float:
    return asyncio.get_running_loop().time()


def _stamp() -> str:
    """The loop clock as an ISO date, as the real services store dates."""
    return datetime.fromtimestamp(max(_now(), 0.0), UTC).isoformat()


class InMemoryJobs:
    """Job documents keyed by id, with a timestamped write log for lagging readers.

    Like MongoDB, the store gives each document an ``_id`` on its first write and keeps it
    across replacements: the monitor's real records always carry one, and a monitor record
    without it is read as the server's synthetic stand-in (``docs/contract.md``).
    """

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self._log: dict[str, list[tuple[float, dict[str, Any] | None]]] = defaultdict(list)
        self.commits: list[tuple[str, str]] = []  # (job_id, owner) per committed result
        self._tokens = itertools.count(1)
        self._object_ids = itertools.count(1)

    def add(self, job_id: str, status: str = "queued", **fields: Any) -> None:
        """Add a job that has existed "forever" (visible to every lagging reader)."""
        doc = {"id": job_id, "status": status, "attempt_count": 0, **fields}
        self.write(job_id, doc, at=float("-inf"))

    def write(self, job_id: str, doc: dict[str, Any], *, at: float | None = None) -> None:
        """Replace a document (tests use this to play the adversary: reassign, complete...).

        A document written without ``_id`` keeps the one the store gave the job (or gets a new
        one), as a MongoDB replacement does.
        """
        if "_id" not in doc:
            previous = self.docs.get(job_id)
            object_id = previous.get("_id") if previous is not None else None
            if object_id is None:
                object_id = f"{next(self._object_ids):024x}"  # an ObjectId's 24 hex digits
            doc = {"_id": object_id, **doc}
        self.docs[job_id] = doc
        self._log[job_id].append((_now() if at is None else at, copy.deepcopy(doc)))

    def update(self, job_id: str, **changes: Any) -> None:
        self.write(job_id, {**self.docs[job_id], **changes})

    def as_of(self, job_id: str, when: float) -> dict[str, Any] | None:
        state = None
        for stamp, doc in self._log.get(job_id, ()):
            if stamp > when:
                break
            state = doc
        return copy.deepcopy(state)

    def new_token(self) -> str:
        return f"t{next(self._tokens)}"


class InMemoryTier:
    """One tier client for encoder ``did`` over an :class:`InMemoryJobs` store.

    ``latency`` is the time each call takes; ``lag`` (monitor) how far behind reads are;
    ``write_delay`` (gateway) how long after an accept its write lands; ``lie`` (gateway) makes
    accept skip its check, answer OK and overwrite: the double assignment of the real gateway.
    """

    def __init__(
        self,
        tier: Tier,
        jobs: InMemoryJobs,
        did: str,
        *,
        latency: float = 0.0,
        lag: float = 0.0,
        write_delay: float = 0.0,
        lie: bool = False,
    ) -> None:
        self.tier = tier
        self.jobs = jobs
        self.did = normalize_did(did)
        self.latency = latency
        self.lag = lag
        self.write_delay = write_delay
        self.lie = lie
        self.calls: list[str] = []
        self._faults: dict[str, deque[BaseException]] = defaultdict(deque)

    def fail_next(self, operation: str, error: BaseException, times: int = 1) -> None:
        """Make the next ``times`` calls of ``operation`` (``observe``, ``claim``...) raise."""
        self._faults[operation].extend([error] * times)

    async def _enter(self, operation: str, job_id: str) -> dict[str, Any] | None:
        validate_job_id(job_id)
        self.calls.append(operation)
        if self.latency:
            await asyncio.sleep(self.latency)
        if self._faults[operation]:
            raise self._faults[operation].popleft()
        return self.jobs.docs.get(job_id)

    def _owned(self, doc: dict[str, Any] | None, token: str | None) -> dict[str, Any]:
        if doc is None or normalize_did(doc.get("assigned_to")) != self.did:
            raise ClaimRefused(self.tier.value, "job does not belong to you")
        if self.tier is Tier.DATABASE and doc.get("claim_token") != token:
            raise ClaimRefused(self.tier.value, "claim token does not match")
        return doc

    async def observe(self, job_id: str) -> Observation:
        await self._enter("observe", job_id)
        doc = self.jobs.as_of(job_id, _now() - self.lag)
        token = doc.get("claim_token") if doc is not None and self.tier is Tier.DATABASE else None
        return Observation(self.tier, parse_job(doc, tier=self.tier.value) if doc else None, token)

    async def claim(self, job_id: str, *, conditional: bool = True) -> str | None:
        doc = await self._enter("claim", job_id)
        if doc is None:
            raise ClaimRefused(self.tier.value, "job not found")
        claimable = doc.get("status") in CLAIMABLE_STATUSES and not doc.get("assigned_to")
        lying = self.lie and self.tier is Tier.GATEWAY
        if not claimable and not lying and conditional:
            raise ClaimRefused(self.tier.value, "job is not available")
        token = self.jobs.new_token()
        changes = {"assigned_to": self.did, "status": "assigned", "last_pinged": _stamp()}
        if self.tier is Tier.DATABASE:
            changes["claim_token"] = token
        if self.write_delay:
            loop = asyncio.get_running_loop()
            loop.call_later(self.write_delay, lambda: self.jobs.update(job_id, **changes))
        else:
            self.jobs.update(job_id, **changes)
        return token if self.tier is Tier.DATABASE else None

    async def heartbeat(
        self, job_id: str, token: str | None, progress: Mapping[str, float]
    ) -> None:
        doc = await self._enter("heartbeat", job_id)
        if self.tier is Tier.GATEWAY:
            # The real gateway answers OK to non-owners and ignores their ping.
            if doc is not None and normalize_did(doc.get("assigned_to")) == self.did:
                self.jobs.update(job_id, last_pinged=_stamp(), status="running")
            return
        self._owned(doc, token)
        self.jobs.update(job_id, last_pinged=_stamp(), status="running", progress=dict(progress))

    async def finish(
        self, job_id: str, token: str | None, result: Mapping[str, Any], *, fenced: bool = True
    ) -> None:
        doc = await self._enter("finish", job_id)
        if fenced:
            doc = self._owned(doc, token)
            if doc.get("status") not in PROCESSABLE_STATUSES:
                raise ClaimRefused(self.tier.value, f"job is {doc.get('status')}")
        self.jobs.update(job_id, status="complete", result=dict(result))
        self.jobs.commits.append((job_id, self.did))

    async def release(
        self, job_id: str, token: str | None, reason: str, *, failed: bool
    ) -> None:
        doc = self._owned(await self._enter("release", job_id), token)
        if self.tier is Tier.MONITOR:
            raise TierUnavailable("monitor", "read-only tier")
        # The gateway counts every give-back (docs/contract.md, "What a give-back costs");
        # the database tier's release, the verifier's own write, only a failed one.
        counted = failed or self.tier is Tier.GATEWAY
        attempts = int(doc.get("attempt_count") or 0) + (1 if counted else 0)
        self.jobs.write(job_id, {
            **{k: v for k, v in doc.items() if k not in ("assigned_to", "claim_token")},
            "status": "failed" if attempts >= 5 else "queued",
            "attempt_count": attempts,
        })



class _VirtualSelector(selectors.DefaultSelector):
    """Polls real file descriptors without blocking; a wait for timers advances virtual time."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout is None or timeout <= 0:
            if not ready and timeout is None:
                # Nothing scheduled and nothing can arrive: a real loop would hang forever.
                raise RuntimeError("virtual-time loop deadlock: no timer and no ready I/O")
            return ready
        self._loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer instead of waiting for it.

    A test that sleeps an hour finishes at once, deterministically, and the code under test
    sees an hour pass on ``loop.time()``. Only for code that does no real I/O (the in-memory
    tiers above, respx-mocked HTTP); with loopback sockets use a normal loop.
    """

    def __init__(self) -> None:
        self._virtual_now = 0.0
        super().__init__(selector=_VirtualSelector(self))

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += seconds


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualTimeLoop`, then close the loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()



def virtual_time(test: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Decorate an async test to run on a :class:`VirtualTimeLoop`: hours of timeouts and
    deadlines pass at once, and no test depends on the machine's speed."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        return run_virtual(test(*args, **kwargs))

    return wrapper

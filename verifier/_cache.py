"""The status cache: tier answers kept for the one read that may take an old answer.

The protocol says how old an answer a read may take (:attr:`verifier.protocol.Observe.max_age`:
above 0 only for the pre-claim check); the drivers keep the answers. An answer's age runs from
the instant its read was *decided*, before the request left, so it never looks younger than the
read (the data of a lagging tier may be older still, by up to the tier's lag). Our own writes
(claim, finish, release) forget the job's entries: they change what the tiers say. Batch
screening stores its answers here too (:func:`verifier.protocol.screened` says which).

A tier's failure outdates every answer of that tier read before it (:meth:`StatusCache.failed`):
an answer from before an outage must not let a pre-claim check pass while the tier is down.
Safety never rested on it (the deciding reads go to the tier), but the claim it lets through
costs the job: a claim whose deciding reads then fail holds the job until its timeout (an hour
on Gateway Aid, which has no release). Seen in a live 10 s monitor outage (session 15).

Both drivers use this class (the asyncio guard and the simulator's encoders), so the cache
the suites prove things about is the one that ships. It is bounded: past ``max_entries`` the
oldest entries go first (answers older than any read would take are useless anyway).
"""

from __future__ import annotations

import math
from collections import OrderedDict

from ._policy import Tier
from ._tiers import Observation

__all__ = ["StatusCache"]


class StatusCache:
    """``(tier, job) -> (observation, decided_at)``, at most ``max_entries`` of them."""

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[Tier, str], tuple[Observation, float]] = OrderedDict()
        #: Per tier, the decision instant of its latest failed read: older answers are unusable.
        self._failed: dict[Tier, float] = {}
        #: Answers served, and reads that found nothing young enough.
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, tier: Tier, job_id: str, *, max_age: float, now: float) -> Observation | None:
        """The answer of ``tier`` about ``job_id`` if its read was decided at most ``max_age``
        before ``now``; ``None`` otherwise (and always for ``max_age`` 0)."""
        entry = self.lookup(tier, job_id, max_age=max_age, now=now)
        return None if entry is None else entry[0]

    def lookup(self, tier: Tier, job_id: str, *, max_age: float, now: float
               ) -> tuple[Observation, float] | None:
        """As :meth:`get`, with the instant the answer's read was decided. An answer read
        before the tier's latest failure is never served (:meth:`failed`)."""
        if max_age <= 0:
            return None
        entry = self._entries.get((tier, job_id))
        if (entry is None or now - entry[1] > max_age
                or entry[1] <= self._failed.get(tier, -math.inf)):
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def put(self, observation: Observation, job_id: str, *, decided: float) -> None:
        """Keep ``observation`` (of ``observation.tier``), read as decided at ``decided``; an
        older answer never replaces a younger one."""
        key = (observation.tier, job_id)
        old = self._entries.get(key)
        if old is not None and old[1] > decided:
            return
        self._entries[key] = (observation, decided)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def failed(self, tier: Tier, *, decided: float) -> None:
        """A read of ``tier`` decided at ``decided`` failed (the tier down, slow, refusing or
        answering nonsense): every answer of ``tier`` read at or before that instant is
        unusable from now on. An answer read after it (the tier is back) is served again.
        Not for reads that never left (past a deadline, tier not configured): they say
        nothing about the tier."""
        if decided > self._failed.get(tier, -math.inf):
            self._failed[tier] = decided

    def forget(self, job_id: str) -> None:
        """Drop every tier's answer about ``job_id`` (our own write changed it)."""
        for tier in Tier:
            self._entries.pop((tier, job_id), None)

    def clear(self) -> None:
        self._entries.clear()
        self._failed.clear()

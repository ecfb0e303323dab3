"""The seam between the pure protocol and the I/O: what a tier can be asked, what it answers.

Every tier client (MongoDB, Gateway Monitor, legacy gateway, Gateway Aid) implements the
subset of :class:`TierClient` that its service supports; the asyncio driver in
:mod:`verifier._guard` calls them, and the SimPy driver in ``sim/`` implements the same
operations against the simulated world. Answers are plain values (:class:`Observation`) or
exceptions from :mod:`verifier._errors`: ``TierError`` when there is no answer,
``ClaimRefused`` when the answer is "not yours".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ._models import GatewayMonitorJob
from ._policy import Tier

__all__ = ["Observation", "TierClient"]


@dataclass(frozen=True, slots=True)
class Observation:
    """One tier's view of one job at one moment.

    ``job`` is ``None`` when the tier says the job does not exist. ``token`` is the claim token
    (assignment epoch) when the tier records one (the database tier does), so a re-assignment
    to the same DID is distinguishable from ours.
    """

    tier: Tier
    job: GatewayMonitorJob | None
    token: str | None = None

    @property
    def owner(self) -> str | None:
        return None if self.job is None else self.job.assigned_to

    @property
    def status(self) -> str | None:
        return None if self.job is None else self.job.status


@runtime_checkable
class TierClient(Protocol):
    """The operations the guard may ask of a tier. Unsupported ones raise ``TierUnavailable``.

    * ``observe``: read the job (``Observation``), or raise ``TierError``. The observation is
      labelled with this client's ``tier`` and is about the job asked for (or ``job=None``):
      the protocol applies that tier's lag bound to it, so the guard takes any other answer
      as no answer.
    * ``claim``: take the job; return the claim token (or ``None``), raise ``ClaimRefused`` when
      refused and ``TierTimeout`` when the outcome is unknown. ``conditional=False`` (a blind
      write) exists only so the simulator can model a defect; real clients refuse it.
    * ``heartbeat``: renew ``last_pinged``; ``ClaimRefused`` when the tier says we lost it.
    * ``finish``: commit the result; ``fenced`` makes it conditional on owner and token.
    * ``release``: give a job we may hold back to the queue (``failed``: the work failed; the
      database tier then counts an attempt, the gateway counts one for every give-back).

    Optional: ``check_result(result)`` raises ``InvalidInputError`` for a result ``finish``
    would refuse before sending; the guard asks when the work ends (a result no tier can
    store fails the work, instead of a finish that can never be sent).
    """

    tier: Tier

    async def observe(self, job_id: str) -> Observation: ...

    async def claim(self, job_id: str, *, conditional: bool = True) -> str | None: ...

    async def heartbeat(
        self, job_id: str, token: str | None, progress: Mapping[str, float]
    ) -> None: ...

    async def finish(
        self, job_id: str, token: str | None, result: Mapping[str, Any], *, fenced: bool = True
    ) -> None: ...

    async def release(
        self, job_id: str, token: str | None, reason: str, *, failed: bool
    ) -> None: ...

"""Protocols under test for ``--protocol`` (``tests/sim/test_cli.py``): classes with the
interface of :class:`verifier.protocol.OwnershipProtocol`, imported by their import path
``tests.sim.protocols:NAME`` as a user's implementation would be."""

from __future__ import annotations

import dataclasses
from typing import Any

from verifier import Observation, Policy, TierSet, normalize_did
from verifier.protocol import OwnershipProtocol


class TrustingProtocol(OwnershipProtocol):
    """A broken implementation: whatever chain it is given, it trusts the gateway (no
    pre-claim check, no verification). Run as ``--chain hardened`` it violates S2 where the
    built-in protocol does not, so its counterexample reproduces only if the replay command
    names it."""

    def __init__(self, job_id: str, *, me: str, policy: Policy, tiers: TierSet) -> None:
        super().__init__(job_id, me=me, policy=Policy.trust_gateway(policy.timing),
                         tiers=tiers)


class StandInTrustingProtocol(OwnershipProtocol):
    """A broken implementation: it takes the monitor's synthetic stand-in for a real record
    when the stand-in names its own DID as owner. That owner is only the legacy gateway's
    belief (``docs/contract.md``, "Synthetic stand-in jobs"), so a lying gateway confirms the
    claim it should have been checked against. The suites must catch it: it confirms where the
    built-in protocol waits, and with stand-ins and lies in the world it violates S1/S2."""

    def _judge(self, obs: Observation, **kwargs: Any) -> Any:
        job = obs.job
        if job is not None and job.synthetic and normalize_did(job.assigned_to) == self.me:
            obs = Observation(obs.tier, dataclasses.replace(job, synthetic=False), obs.token)
        return super()._judge(obs, **kwargs)


NOT_A_PROTOCOL = 42

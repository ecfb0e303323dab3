"""Protocols under test for ``--protocol`` (``tests/sim/test_cli.py``): classes with the
interface of :class:`verifier.protocol.OwnershipProtocol`, imported by their import path
``tests.sim.protocols:NAME`` as a user's implementation would be."""

from __future__ import annotations

from verifier import Policy, TierSet
from verifier.protocol import OwnershipProtocol


class TrustingProtocol(OwnershipProtocol):
    """A broken implementation: whatever chain it is given, it trusts the gateway (no
    pre-claim check, no verification). Run as ``--chain hardened`` it violates S2 where the
    built-in protocol does not, so its counterexample reproduces only if the replay command
    names it."""

    def __init__(self, job_id: str, *, me: str, policy: Policy, tiers: TierSet) -> None:
        super().__init__(job_id, me=me, policy=Policy.trust_gateway(policy.timing),
                         tiers=tiers)


NOT_A_PROTOCOL = 42

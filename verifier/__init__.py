"""verifier: keeps 3Speak encoders from processing the same job twice.

Layout (private modules, re-exported here; ``tests/test_public_api.py`` pins the surface):

* ``_errors``    the exception tree (``VerifierError`` and its children)
* ``_ids``       untrusted job ids and DIDs: validation, normalisation, URL encoding
* ``_models``    job records, status vocabularies, the documented ownership judgements
* ``_policy``    tiers, the timing model, and the chains (documented / hardened / ablations)
* ``_tiers``     the seam between protocol and I/O: ``Observation`` and ``TierClient``
* ``_protocol``  the claim → verify → process → finish protocol: pure, no I/O, no clock
"""

from __future__ import annotations

from ._errors import (
    ClaimRefused,
    ConfigurationError,
    InvalidInputError,
    MalformedAnswer,
    TierError,
    TierRateLimited,
    TierTimeout,
    TierUnavailable,
    VerifierError,
)
from ._models import (
    AvailabilityResult,
    GatewayMonitorJob,
    JobProgress,
    OwnershipResult,
    availability_of,
    ownership_of,
    parse_job,
)
from ._policy import HARDENING_STEPS, Policy, Tier, TierSet, TimingModel, builtin_chain_names
from ._protocol import Outcome, OutcomeKind, OwnershipProtocol
from ._tiers import Observation, TierClient

__all__ = [
    "HARDENING_STEPS",
    "AvailabilityResult",
    "ClaimRefused",
    "ConfigurationError",
    "GatewayMonitorJob",
    "InvalidInputError",
    "JobProgress",
    "MalformedAnswer",
    "Observation",
    "Outcome",
    "OutcomeKind",
    "OwnershipProtocol",
    "OwnershipResult",
    "Policy",
    "Tier",
    "TierClient",
    "TierError",
    "TierRateLimited",
    "TierSet",
    "TierTimeout",
    "TierUnavailable",
    "TimingModel",
    "VerifierError",
    "availability_of",
    "builtin_chain_names",
    "ownership_of",
    "parse_job",
]

"""verifier: keeps 3Speak encoders from processing the same job twice.

Layout (private modules, re-exported here; ``tests/test_public_api.py`` pins the surface):

* ``_errors``    the exception tree (``VerifierError`` and its children)
* ``_ids``       untrusted job ids and DIDs: validation, normalisation, URL encoding
* ``_models``    job records, status vocabularies, the documented ownership judgements
* ``_policy``    tiers, the timing model, and the chains (documented / hardened / ablations)
* ``_tiers``     the seam between protocol and I/O: ``Observation`` and ``TierClient``
* ``protocol``   (public) the claim → verify → process → finish protocol and its step types:
                 pure, no I/O, no clock
* ``_polling``   the encoder loop's decisions (``LoopPolicy``, ``PollSchedule``): pure, as
                 ``protocol`` is for one job
* ``_loop``      ``EncoderLoop``, their asyncio driver
* ``_guard``     the asyncio driver of that protocol: ``OwnershipGuard``, the production entry
* ``_http``      the HTTP error mapping shared by the REST clients
* ``_monitor``   Tier 2: ``GatewayMonitorService``, the documented API (read-only, lagging)
* ``_database``  Tier 1: ``DatabaseTier`` (pymongo): atomic conditional claim, fenced writes
* ``_gateway``   Tier 3: ``LegacyGatewayClient``, JWS-signed ``/api/v0/gateway`` calls
* ``_identity``  the encoder's Ed25519 ``did:key`` and JWS signing
* ``_aid``       ``GatewayAidClient`` (``/aid/v1``, approved encoders)
* ``_settings``  configuration from the environment and ``.env``
* ``_dotenv``    the one ``.env`` reader
* ``_mongodb_uri``  the one MongoDB URI parser, with redaction
* ``_strict_json``  the one strict JSON decoder of what other parties send
* ``_cli``       ``python -m verifier check JOB_ID --did DID``
* ``testing``    supported test doubles: in-memory tiers, a virtual-time event loop
"""

from __future__ import annotations

from ._aid import GatewayAidClient
from ._cache import StatusCache
from ._command import CommandCannotRun, CommandFailed, CommandWork
from ._database import DatabaseTier
from ._errors import (
    ClaimRefused,
    ConfigurationError,
    InvalidInputError,
    MalformedAnswer,
    RequestNotSent,
    TierError,
    TierRateLimited,
    TierTimeout,
    TierUnavailable,
    TierUnsupported,
    VerifierError,
)
from ._gateway import LegacyGatewayClient
from ._guard import ClaimedJob, GuardOutcome, OwnershipGuard
from ._identity import EncoderIdentity, verify_jws
from ._ids import normalize_did, validate_did, validate_job_id
from ._loop import EncoderLoop, offer_sources
from ._metrics import GuardMetrics, start_metrics_server
from ._models import (
    AvailabilityResult,
    GatewayMonitorJob,
    JobProgress,
    OwnershipResult,
    availability_of,
    ownership_of,
    parse_job,
)
from ._monitor import GatewayMonitorService
from ._policy import HARDENING_STEPS, Policy, Tier, TierSet, TimingModel, builtin_chain_names
from ._polling import (
    MAX_RETRY_AFTER_S,
    AllSlotsBusy,
    IdleUntil,
    LoopPolicy,
    PollSchedule,
    PollSource,
)
from ._push import JobPush, JobPushClient
from ._settings import TIMING_VARIABLES, Settings
from ._tiers import Observation, TierClient
from .protocol import Outcome, OutcomeKind, OwnershipProtocol

__all__ = [
    "HARDENING_STEPS",
    "MAX_RETRY_AFTER_S",
    "TIMING_VARIABLES",
    "AllSlotsBusy",
    "AvailabilityResult",
    "ClaimRefused",
    "ClaimedJob",
    "CommandCannotRun",
    "CommandFailed",
    "CommandWork",
    "ConfigurationError",
    "DatabaseTier",
    "EncoderIdentity",
    "EncoderLoop",
    "GatewayAidClient",
    "GatewayMonitorJob",
    "GatewayMonitorService",
    "GuardMetrics",
    "GuardOutcome",
    "IdleUntil",
    "InvalidInputError",
    "JobProgress",
    "JobPush",
    "JobPushClient",
    "LegacyGatewayClient",
    "LoopPolicy",
    "MalformedAnswer",
    "Observation",
    "Outcome",
    "OutcomeKind",
    "OwnershipGuard",
    "OwnershipProtocol",
    "OwnershipResult",
    "Policy",
    "PollSchedule",
    "PollSource",
    "RequestNotSent",
    "Settings",
    "StatusCache",
    "Tier",
    "TierClient",
    "TierError",
    "TierRateLimited",
    "TierSet",
    "TierTimeout",
    "TierUnavailable",
    "TierUnsupported",
    "TimingModel",
    "VerifierError",
    "availability_of",
    "builtin_chain_names",
    "normalize_did",
    "offer_sources",
    "ownership_of",
    "parse_job",
    "start_metrics_server",
    "validate_did",
    "validate_job_id",
    "verify_jws",
]

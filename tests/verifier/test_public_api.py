"""Pins the public surface: what `import verifier` offers is a promise to encoders."""

from __future__ import annotations

import verifier

EXPECTED = {
    "HARDENING_STEPS", "MAX_RETRY_AFTER_S", "TIMING_VARIABLES",
    "AvailabilityResult", "ClaimRefused", "ClaimedJob",
    "CommandCannotRun", "CommandFailed", "CommandWork", "ConfigurationError",
    "DatabaseTier", "EncoderIdentity", "EncoderLoop", "GatewayAidClient", "GatewayMonitorJob",
    "GatewayMonitorService", "GuardMetrics", "GuardOutcome", "InvalidInputError", "JobProgress",
    "JobPush", "JobPushClient", "StatusCache",
    "LegacyGatewayClient", "LoopPolicy", "AllSlotsBusy", "IdleUntil", "PollSchedule",
    "PollSource", "MalformedAnswer", "Observation", "Outcome", "OutcomeKind",
    "OwnershipGuard", "OwnershipProtocol", "OwnershipResult", "Policy", "RequestNotSent",
    "Settings", "Tier",
    "TierClient", "TierError", "TierRateLimited", "TierSet", "TierTimeout", "TierUnavailable",
    "TierUnsupported", "TimingModel", "VerifierError", "availability_of", "builtin_chain_names",
    "normalize_did",
    "offer_sources", "ownership_of", "parse_job", "start_metrics_server", "validate_did",
    "validate_job_id", "verify_jws",
}

#: ``verifier.protocol``: the sans-I/O protocol and every type a driver exchanges with it.
PROTOCOL = {
    "MAX_RETRY_AFTER_S", "Action", "Answer",
    "CancelWork", "Claim", "Decision", "Done", "Finish", "Heartbeat", "Hinted",
    "Observe", "Observed", "Outcome", "OutcomeKind", "OwnershipProtocol", "PhaseChanged",
    "ProgressClock", "Progressed", "ProtocolError", "Release", "ShutdownRequested", "Sleep",
    "StartWork", "Step",
    "TierFailed", "Woke", "pre_claim_tier", "screened", "unusable_answers",
    "WorkEnded", "WorkStarted", "WorkStopped", "WriteAnswered", "WriteOutcome",
}


def test_public_surface_is_pinned():
    assert set(verifier.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(verifier, name) is not None


def test_protocol_surface_is_pinned():
    import verifier.protocol

    assert set(verifier.protocol.__all__) == PROTOCOL
    # The top level re-exports the protocol and its outcome, the very same objects.
    for name in ("OwnershipProtocol", "Outcome", "OutcomeKind"):
        assert getattr(verifier, name) is getattr(verifier.protocol, name)


def test_documented_import_line_works():
    from verifier import (  # the import line of the issue
        AvailabilityResult,
        GatewayMonitorJob,
        GatewayMonitorService,
        OwnershipResult,
    )

    assert GatewayMonitorService(base_url="https://example.test/api", enabled=False).is_enabled() \
        is False
    assert {AvailabilityResult, GatewayMonitorJob, OwnershipResult}


def test_every_error_is_a_verifier_error():
    for name in ("ClaimRefused", "ConfigurationError", "InvalidInputError", "MalformedAnswer",
                 "TierError", "TierRateLimited", "TierTimeout", "TierUnavailable",
                 "TierUnsupported", "RequestNotSent"):
        assert issubclass(getattr(verifier, name), verifier.VerifierError)
    # An operation a tier lacks is unavailable to callers that predate the distinction.
    assert issubclass(verifier.TierUnsupported, verifier.TierUnavailable)
    assert issubclass(verifier.RequestNotSent, verifier.TierUnavailable)  # a failed request
    assert issubclass(verifier.InvalidInputError, ValueError)


def test_every_tier_client_implements_the_seam():
    for cls in (verifier.GatewayMonitorService, verifier.DatabaseTier,
                verifier.LegacyGatewayClient, verifier.GatewayAidClient):
        for method in ("observe", "claim", "heartbeat", "finish", "release"):
            assert callable(getattr(cls, method)), (cls, method)


def test_a_record_without_id_never_proves_ownership():
    from verifier import ownership_of, parse_job

    job = parse_job({"status": "assigned", "assigned_to": "did:key:z6MkUs"})
    result = ownership_of(job, "did:key:z6MkUs")
    assert job.synthetic and not result.is_owned and not result.is_safe_to_process


def test_an_empty_id_is_a_stand_in_too():
    from verifier import ownership_of, parse_job

    job = parse_job({"id": "", "status": "assigned", "assigned_to": "did:key:z6MkUs"})
    assert job.synthetic and not ownership_of(job, "did:key:z6MkUs").is_owned


def test_a_tier_set_has_the_gateway_unless_told_otherwise():
    """``TierSet(monitor=True)`` is a community node: the gateway hands out its jobs whatever
    else it has, so a library user who names only the tiers they add gets it (a mutant that
    defaulted it off passed every suite: the drivers always name it)."""
    community = verifier.TierSet(monitor=True)
    assert community.has(verifier.Tier.GATEWAY) and community.has(verifier.Tier.MONITOR)
    assert not community.has(verifier.Tier.DATABASE) and not community.has(verifier.Tier.AID)
    assert not verifier.TierSet(gateway=False).has(verifier.Tier.GATEWAY)

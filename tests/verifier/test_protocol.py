"""The pure protocol, driven by scripted answers: every branch that decides ownership."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pytest

from verifier import GatewayMonitorJob, Observation, Policy, Tier, TierSet, TimingModel
from verifier._models import NOT_HELD_STATUSES
from verifier._progress import STARTED
from verifier.protocol import (
    Action,
    Answer,
    CancelWork,
    Claim,
    Done,
    Finish,
    Heartbeat,
    Hinted,
    Observe,
    Observed,
    OutcomeKind,
    OwnershipProtocol,
    PhaseChanged,
    Progressed,
    ProtocolError,
    Release,
    ShutdownRequested,
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

ME = "did:key:z6MkMe"
OTHER = "did:key:z6MkOther"
TIMING = TimingModel(
    monitor_lag=5, write_delay=2, pause=2, clock_drift=1, recheck_interval=10,
    cancel_latency=5, reassign_timeout=60, confirm_timeout=30, retry_interval=1,
)
INFRA = TierSet(database=True, monitor=True, gateway=True)
COMMUNITY = TierSet(monitor=True, gateway=True)


def job(owner: str | None = ME, status: str | None = "assigned") -> GatewayMonitorJob:
    return GatewayMonitorJob(id="j1", status=status, assigned_to=owner)


def seen(tier: Tier, owner: str | None = ME, status: str | None = "assigned",
         token: str | None = None) -> Observed:
    return Observed(Observation(tier, job(owner, status), token))


Responder = Callable[[Action, float], Answer]


def drive(
    protocol: OwnershipProtocol, respond: Responder, *, max_steps: int = 500,
    messages: list[str] | None = None,
) -> tuple[list[tuple[float, Action]], list[str]]:
    """Run to Done with a virtual clock: Sleep jumps to its deadline, anything else takes 0.1 s.
    ``messages`` collects each decision as ``CODE: message``."""
    now = 0.0
    trace: list[tuple[float, Action]] = []
    codes: list[str] = []
    step = protocol.start(now)
    for _ in range(max_steps):
        codes += [d.code for d in step.decisions]
        if messages is not None:
            messages += [f"{d.code}: {d.message}" for d in step.decisions]
        trace.append((now, step.action))
        if isinstance(step.action, Done):
            return trace, codes
        answer = respond(step.action, now)
        if isinstance(step.action, Sleep) and isinstance(answer, Woke):
            now = max(now, step.action.until)
        else:
            now += 0.1
        step = protocol.handle(answer, now)
    raise AssertionError("protocol did not finish")


def actions(trace: list[tuple[float, Action]], kind: type) -> list[tuple[float, Action]]:
    return [(t, a) for t, a in trace if isinstance(a, kind)]


def world(
    *,
    observe: Callable[[Observe, float], Answer] | None = None,
    claim: WriteOutcome = WriteOutcome.OK,
    heartbeat: WriteOutcome = WriteOutcome.OK,
    finish: list[WriteOutcome] | None = None,
    work_ends_at: float = 25.0,
    phases: dict[float, str] | None = None,
    token: str | None = "tok",
    progress: dict[float, float] | None = None,
) -> Responder:
    """A scripted world; ``observe`` defaults to "yours, assigned" everywhere. ``progress``:
    percent reported at these instants after the work started."""
    finishes = list(finish or [WriteOutcome.OK])
    pending_phases = dict(sorted((phases or {}).items()))
    pending_progress = dict(sorted((progress or {}).items()))
    state = {"started": None}

    def respond(action: Action, now: float) -> Answer:
        if isinstance(action, Observe):
            if observe is not None:
                return observe(action, now)
            if action.purpose == "pre-claim":
                return seen(action.tier, owner=None, status="queued")
            return seen(action.tier, token=token if action.tier is Tier.DATABASE else None)
        if isinstance(action, Claim):
            return WriteAnswered(claim, token=token if action.via is Tier.DATABASE else None)
        if isinstance(action, Heartbeat):
            return WriteAnswered(heartbeat)
        if isinstance(action, Finish):
            return WriteAnswered(finishes.pop(0) if finishes else WriteOutcome.OK)
        if isinstance(action, Release):
            return WriteAnswered(WriteOutcome.OK)
        if isinstance(action, StartWork):
            state["started"] = now
            return WorkStarted()
        if isinstance(action, CancelWork):
            return WorkStopped()
        assert isinstance(action, Sleep)
        started = state["started"]
        assert started is not None or not pending_phases
        for at, phase in list(pending_phases.items()):
            if started is not None and started + at <= action.until:
                del pending_phases[at]
                return PhaseChanged(phase)
        for at, pct in list(pending_progress.items()):
            if started is not None and started + at <= action.until:
                del pending_progress[at]
                return Progressed(pct)
        if started is not None and started + work_ends_at <= action.until:
            return WorkEnded(True)
        return Woke()

    return respond


def run(policy: Policy, tiers: TierSet, respond: Responder, *,
        protocol: type[OwnershipProtocol] = OwnershipProtocol,
        messages: list[str] | None = None):
    protocol = protocol("j1", me=ME, policy=policy, tiers=tiers)
    trace, codes = drive(protocol, respond, messages=messages)
    assert protocol.outcome is not None
    return protocol.outcome, trace, codes


HARDENED = Policy.hardened(TIMING)
DOCUMENTED = Policy.documented(TIMING)


def test_hardened_infra_claims_in_database_settles_then_verifies_and_finishes_fenced():
    outcome, trace, codes = run(HARDENED, INFRA, world())
    assert outcome.kind is OutcomeKind.PROCESSED
    claim = actions(trace, Claim)
    assert [a for _, a in claim] == [Claim(Tier.DATABASE, conditional=True)]
    claim_time = claim[0][0]
    verify = [(t, a) for t, a in actions(trace, Observe) if a.purpose == "verify"]
    # The deciding read waits 3G + ε after the claim was sent (no lag on the database).
    assert verify[0][0] >= claim_time + 3 * 2 + 1
    assert verify[0][1].tier is Tier.DATABASE
    assert actions(trace, StartWork)[0][0] > verify[0][0]
    finishes = [a for _, a in actions(trace, Finish)]
    assert finishes == [Finish(Tier.DATABASE, "tok", fenced=True)]
    assert actions(trace, Heartbeat), "pings during work"
    assert "TIER_1_VERIFICATION" in codes and "DATABASE_CONFIRMED" in codes


def test_hardened_community_settles_for_monitor_lag_before_the_deciding_read():
    outcome, trace, codes = run(HARDENED, COMMUNITY, world())
    assert outcome.kind is OutcomeKind.PROCESSED
    (claim_time, claim), = actions(trace, Claim)
    assert claim.via is Tier.GATEWAY
    verify_time = next(t for t, a in actions(trace, Observe) if a.purpose == "verify")
    assert verify_time >= claim_time + TIMING.settle_delay(TIMING.monitor_lag)
    assert "MONITOR_CONFIRMED" in codes and "TIER_2_VERIFICATION" in codes


@pytest.mark.parametrize(
    ("owner", "status"), [(None, "queued"), (None, None), (ME, None), (ME, "queued")]
)
def test_hardened_never_starts_on_absent_null_or_unknown(owner, status):
    def observe(action: Observe, now: float) -> Answer:
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        return seen(action.tier, owner=owner, status=status)

    outcome, trace, _codes = run(HARDENED, COMMUNITY, world(observe=observe))
    assert outcome.kind is OutcomeKind.SKIPPED and outcome.code == "UNCONFIRMED"
    assert not actions(trace, StartWork)
    # It kept asking until the confirm timeout, then gave the job back.
    assert len([a for _, a in actions(trace, Observe) if a.purpose == "verify"]) > 5
    assert [a.via for _, a in actions(trace, Release)] == [Tier.GATEWAY]


def test_hardened_skips_when_another_encoder_owns_it_and_does_not_release():
    def observe(action: Observe, now: float) -> Answer:
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        return seen(action.tier, owner=OTHER)

    outcome, trace, codes = run(HARDENED, COMMUNITY, world(observe=observe))
    assert outcome.kind is OutcomeKind.SKIPPED and outcome.code == "MONITOR_THEFT_DETECTED"
    assert "ABORTING" in codes
    assert not actions(trace, StartWork) and not actions(trace, Release)


def test_hardened_falls_back_from_a_failed_database_to_the_monitor_after_its_own_settle():
    def observe(action: Observe, now: float) -> Answer:
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        if action.tier is Tier.DATABASE:
            return TierFailed(Tier.DATABASE, "down")
        return seen(action.tier)

    outcome, trace, _ = run(HARDENED, INFRA, world(observe=observe))
    assert outcome.kind is OutcomeKind.PROCESSED
    claim_time = actions(trace, Claim)[0][0]
    monitor_reads = [t for t, a in actions(trace, Observe)
                     if a.purpose == "verify" and a.tier is Tier.MONITOR]
    assert monitor_reads[0] >= claim_time + TIMING.settle_delay(TIMING.monitor_lag)


def test_weaker_tier_never_overrides_a_stronger_not_yours():
    def observe(action: Observe, now: float) -> Answer:
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        if action.tier is Tier.DATABASE:
            return seen(Tier.DATABASE, owner=OTHER)
        return seen(action.tier)  # monitor and gateway would say "yours"

    outcome, trace, _ = run(HARDENED, INFRA, world(observe=observe))
    assert outcome.kind is OutcomeKind.SKIPPED
    assert {a.tier for _, a in actions(trace, Observe) if a.purpose == "verify"} == {Tier.DATABASE}

    canary = HARDENED.without("tier-precedence")
    outcome, trace, _ = run(canary, INFRA, world(observe=observe))
    assert outcome.kind is OutcomeKind.PROCESSED, "the canary lets the weaker tier win"


def stolen_during_work(action: Observe, now: float) -> Answer:
    """Free before the claim, ours at the verify, another encoder's at every re-check."""
    if action.purpose == "pre-claim":
        return seen(action.tier, owner=None, status="queued")
    if action.purpose == "recheck":
        return seen(action.tier, owner=OTHER, status="running")
    return seen(action.tier)


def test_ownership_lost_during_work_cancels_the_work_before_any_finish():
    observe = stolen_during_work
    messages: list[str] = []
    outcome, trace, codes = run(HARDENED, COMMUNITY, world(observe=observe, work_ends_at=100),
                                messages=messages)
    assert outcome.kind is OutcomeKind.CANCELLED and outcome.code == "MONITOR_THEFT_DETECTED"
    assert actions(trace, CancelWork) and not actions(trace, Finish)
    assert "ABORTING" in codes and "WORK_CANCELLED" in codes
    assert any(m.startswith("ABORTING: Ownership lost") for m in messages), messages

    no_cancel = HARDENED.without("cancel")
    outcome, trace, codes = run(no_cancel, COMMUNITY, world(observe=observe, work_ends_at=100))
    assert not actions(trace, CancelWork)  # the ablation's harm: the work goes on (S1/S2)
    assert "ABORTING" in codes
    # Its gateway finish, 48 s past the lease's end, is not sent (_finish_by: it could land
    # on the next assignment); with the lease ablated too, it is.
    assert outcome.code == "FINISH_TOO_LATE" and not actions(trace, Finish)
    assert actions(trace, Release)  # not finished in time: given back, not left held
    outcome, trace, _ = run(no_cancel.without("lease"), COMMUNITY,
                            world(observe=observe, work_ends_at=100))
    assert actions(trace, Finish)


def test_a_job_read_as_lost_is_given_back_once_the_work_stopped():
    """A read that says "another owner" may lag behind our own claim (the monitor's view is
    up to Δ old): the job is given back, fenced, once the work has stopped, so one still ours
    returns to the queue at once and the outcome says truthfully that nothing is held
    (conformance property ``give-back``). A job seen finished is not given back."""
    outcome, trace, _ = run(HARDENED, COMMUNITY, world(observe=stolen_during_work,
                                                       work_ends_at=100))
    kinds = [type(a) for _, a in trace]
    assert kinds.index(CancelWork) < kinds.index(Release)
    assert outcome.code == "MONITOR_THEFT_DETECTED" and not outcome.held

    def finished(action: Observe, now: float) -> Answer:
        if action.purpose == "recheck":
            return seen(action.tier, owner=None, status="complete")
        return stolen_during_work(action, now)

    outcome, trace, _ = run(HARDENED, COMMUNITY, world(observe=finished, work_ends_at=100))
    assert actions(trace, CancelWork) and not actions(trace, Release)


def test_reassigned_job_back_in_queue_during_work_is_a_loss():
    def observe(action: Observe, now: float) -> Answer:
        if action.purpose == "recheck":
            return seen(action.tier, owner=None, status="queued")
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        return seen(action.tier)

    outcome, _, _ = run(HARDENED, COMMUNITY, world(observe=observe, work_ends_at=100))
    assert outcome.kind is OutcomeKind.CANCELLED


def test_lease_expiry_cancels_before_the_gateway_could_reassign():
    def observe(action: Observe, now: float) -> Answer:
        if action.purpose == "recheck":
            return TierFailed(action.tier, "timeout")
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        return seen(action.tier)

    outcome, trace, _codes = run(
        HARDENED, COMMUNITY,
        world(observe=observe, heartbeat=WriteOutcome.UNKNOWN, work_ends_at=500),
    )
    assert outcome.kind is OutcomeKind.CANCELLED and outcome.code == "LEASE_EXPIRED"
    claim_time = actions(trace, Claim)[0][0]
    cancel_time = actions(trace, CancelWork)[0][0]
    assert cancel_time <= claim_time + TIMING.reassign_timeout - TIMING.lease_margin() + 0.2
    assert actions(trace, Release), "a job we may hold is given back"
    # What an operator needs to tell the claim-to-first-proof path from pings that stopped.
    assert "no ping proven since the claim" in outcome.reason, outcome.reason


def test_a_lease_expiry_after_proven_pings_says_when_the_last_one_was_decided():
    reads: dict[str, int] = {"recheck": 0}

    def observe(action: Observe, now: float) -> Answer:
        if action.purpose == "recheck":
            reads["recheck"] += 1
            if reads["recheck"] > 3:  # the monitor goes down once a few pings are proven
                return TierFailed(action.tier, "timeout")
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        return seen(action.tier)

    outcome, _trace, _ = run(HARDENED, COMMUNITY, world(observe=observe, work_ends_at=500,
                                                        progress=_every(5, 500)))
    assert outcome.code == "LEASE_EXPIRED", outcome
    assert "the last proven ping was decided" in outcome.reason, outcome.reason


def _every(step: float, until: float) -> dict[float, float]:
    """Progress rising by one percent every ``step`` seconds of work, up to ``until``."""
    return {step * i: float(i) for i in range(1, int(until / step))}


def test_successful_pings_keep_the_lease_alive_through_long_work():
    outcome, trace, _ = run(HARDENED, COMMUNITY,
                            world(work_ends_at=600, progress=_every(60, 600)))
    assert outcome.kind is OutcomeKind.PROCESSED
    assert len(actions(trace, Heartbeat)) >= 50


@pytest.mark.parametrize("tiers", [INFRA, COMMUNITY], ids=["database", "gateway"])
def test_work_without_a_progress_change_is_cancelled_before_the_no_progress_reassignment(
    tiers: TierSet,
) -> None:
    """Pings alone do not keep a job: the gateway reassigns after N without a progress change,
    so the lease ends N - margin after the claim when no ping ever carries a change."""
    outcome, trace, _ = run(HARDENED, tiers, world(work_ends_at=2000))
    assert outcome.kind is OutcomeKind.CANCELLED and outcome.code == "LEASE_EXPIRED"
    assert "progress" in outcome.reason
    claim_time = actions(trace, Claim)[0][0]
    cancel_time = actions(trace, CancelWork)[0][0]
    limit = claim_time + TIMING.lease_horizons()[1]
    assert limit - 1 <= cancel_time <= limit + 0.2
    assert len(actions(trace, Heartbeat)) >= 20, "pings went on all along"


@pytest.mark.parametrize("tiers", [INFRA, COMMUNITY], ids=["database", "gateway"])
def test_the_first_report_pairs_with_the_start_marker(tiers: TierSet) -> None:
    """Progress changes once (to 7 %), then stays. Before it, pings carried the start marker
    (not none): a counted marker and a counted 7 prove the stored value changed between
    their landings, so the lease ends N - margin after the last ping carrying the marker."""
    outcome, trace, _ = run(HARDENED, tiers, world(work_ends_at=2000, progress={30.0: 7.0}))
    assert outcome.kind is OutcomeKind.CANCELLED and "progress" in outcome.reason
    pings = actions(trace, Heartbeat)
    assert [(a.pct, a.download_pct) for _, a in pings][:2] == [STARTED, STARTED]
    assert sum(1 for _, a in pings if a.pct == 7.0) >= 20
    last_marker = max(t for t, a in pings if (a.pct, a.download_pct) == STARTED)
    cancel_time = actions(trace, CancelWork)[0][0]
    limit = last_marker + TIMING.lease_horizons()[1]
    assert limit - 1 <= cancel_time <= limit + 0.2


def test_one_progress_value_does_not_move_the_progress_clock() -> None:
    """Without the start marker, a single value proves nothing: a late ping of an earlier
    attempt by our DID may have stored 7 before any ping of ours did (verifier/_progress.py),
    so the lease ends N - margin after the claim, as with no progress at all."""

    class NoMarker(OwnershipProtocol):
        start_progress = (0.0, 0.0)

    outcome, trace, _ = run(HARDENED, INFRA, world(work_ends_at=2000, progress={30.0: 7.0}),
                            protocol=NoMarker)
    assert outcome.kind is OutcomeKind.CANCELLED and "progress" in outcome.reason
    cancel_time = actions(trace, CancelWork)[0][0]
    limit = actions(trace, Claim)[0][0] + TIMING.lease_horizons()[1]
    assert limit - 1 <= cancel_time <= limit + 0.2


@pytest.mark.parametrize("tiers", [INFRA, COMMUNITY], ids=["database", "gateway"])
def test_the_progress_clock_restarts_at_the_last_ping_carrying_the_previous_value(
    tiers: TierSet,
) -> None:
    """Progress changes to 7 %, then to 9 %, then stays. Counted pings carrying 7 and 9 prove
    the stored value changed between their landings, so no earlier than the last ping
    carrying 7 was decided: the lease ends N - margin after that ping, however many pings
    carrying 9 follow."""
    outcome, trace, _ = run(HARDENED, tiers,
                            world(work_ends_at=2000, progress={30.0: 7.0, 90.0: 9.0}))
    assert outcome.kind is OutcomeKind.CANCELLED and "progress" in outcome.reason
    pings = actions(trace, Heartbeat)
    last_7 = max(t for t, a in pings if a.pct == 7.0)
    assert sum(1 for _, a in pings if a.pct == 9.0) >= 20
    cancel_time = actions(trace, CancelWork)[0][0]
    limit = last_7 + TIMING.lease_horizons()[1]
    assert limit - 1 <= cancel_time <= limit + 0.2


def test_a_ping_carries_the_latest_progress_reported():
    _, trace, _ = run(HARDENED, INFRA, world(work_ends_at=50, progress={5.0: 3.0, 6.0: 9.5}))
    assert [a.pct for _, a in actions(trace, Heartbeat)][:3] == [STARTED[0], 9.5, 9.5]


def test_documented_verifies_once_immediately_and_calls_its_own_lagging_job_stolen():
    def observe(action: Observe, now: float) -> Answer:
        # The monitor still shows the job unassigned right after our accept (defect 3).
        return seen(action.tier, owner=None, status="queued")

    outcome, trace, _codes = run(DOCUMENTED, COMMUNITY, world(observe=observe))
    assert outcome.kind is OutcomeKind.SKIPPED
    assert not actions(trace, Sleep), "no settle delay"
    verify = [a for _, a in actions(trace, Observe) if a.purpose == "verify"]
    assert verify == [Observe(Tier.MONITOR, "verify")]
    assert [a.via for _, a in actions(trace, Claim)] == [Tier.GATEWAY]
    # And the job it called stolen is not given back: the documented service gives nothing
    # back, so the gateway requeues it only T later; the hardened chain gives it back.
    assert not actions(trace, Release)
    _, trace, _ = run(HARDENED, COMMUNITY, world(observe=observe))
    assert actions(trace, Release)


def test_documented_processes_after_one_confirming_read_and_pings_only_while_encoding():
    outcome, trace, codes = run(
        DOCUMENTED, COMMUNITY,
        world(work_ends_at=95, phases={0.1: "download", 40: "encode", 70: "upload"}),
    )
    assert outcome.kind is OutcomeKind.PROCESSED
    start = actions(trace, StartWork)[0][0]
    pings = [t - start for t, _ in actions(trace, Heartbeat)]
    assert pings and all(40 <= t <= 80 for t in pings)
    assert not [a for _, a in actions(trace, Observe) if a.purpose == "recheck"]
    assert codes.count("TIER_2_VERIFICATION") == 1


def test_documented_highest_enabled_tier_is_the_database_then_gateway():
    _, trace, codes = run(DOCUMENTED, INFRA, world())
    verify = [a.tier for _, a in actions(trace, Observe) if a.purpose == "verify"]
    assert verify == [Tier.DATABASE] and "TIER_1_VERIFICATION" in codes
    _, trace, codes = run(DOCUMENTED, TierSet(gateway=True), world())
    verify = [a.tier for _, a in actions(trace, Observe) if a.purpose == "verify"]
    assert verify == [Tier.GATEWAY] and "TIER_3_VERIFICATION" in codes


def test_documented_claims_through_the_gateway_whatever_tiers_the_node_has():
    """The documented flow's claim is ``acceptJob`` (docs/contract.md), also on a node with
    the database: claiming there would credit it with the hardened chain's atomic claim (a
    mutant that did passed every suite)."""
    for tiers in (INFRA, COMMUNITY, TierSet(gateway=True, aid=True)):
        _, trace, _ = run(DOCUMENTED, tiers, world())
        assert [a.via for _, a in actions(trace, Claim)] == [Tier.GATEWAY], tiers


def test_every_chain_runs_on_the_timing_it_is_given():
    """A chain built for a scenario's bounds must use them, not the defaults (a mutant that
    gave the documented chain the default timing whatever it was given passed: its only
    timed behaviour, the ping every R while encoding, was never run with another R)."""
    from verifier import builtin_chain_names

    timing = TimingModel(recheck_interval=3.0, monitor_lag=1.0)
    for name in builtin_chain_names():
        assert Policy.named(name, timing).timing is timing, name
    for build in (Policy.hardened, Policy.documented, Policy.trust_gateway):
        assert build(timing).timing is timing and build().timing == TimingModel()


def test_trust_gateway_starts_right_after_the_accept():
    outcome, trace, _ = run(Policy.trust_gateway(TIMING), COMMUNITY, world())
    kinds = [type(a).__name__ for _, a in trace]
    assert kinds[:2] == ["Claim", "StartWork"] and outcome.kind is OutcomeKind.PROCESSED


def test_pre_claim_conflict_and_failure():
    def taken(action: Observe, now: float) -> Answer:
        return seen(action.tier, owner=OTHER)

    for policy in (HARDENED, DOCUMENTED):
        outcome, trace, codes = run(policy, COMMUNITY, world(observe=taken))
        assert outcome.code == "PRE_CLAIM_CONFLICT" and not actions(trace, Claim)
        assert "PRE_CLAIM_CONFLICT" in codes and "GRACEFUL_SKIP" in codes

    def broken(action: Observe, now: float) -> Answer:
        return TierFailed(action.tier, "500")

    outcome, trace, _ = run(HARDENED, COMMUNITY, world(observe=broken))
    assert outcome.kind is OutcomeKind.SKIPPED and not actions(trace, Claim)
    outcome, trace, _ = run(DOCUMENTED, COMMUNITY, world(observe=broken))
    assert outcome.kind is OutcomeKind.FAILED and not actions(trace, Claim)


def test_unassigned_status_is_claimable_for_hardened_but_not_for_documented():
    def unassigned(action: Observe, now: float) -> Answer:
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="unassigned")
        return seen(action.tier)

    outcome, trace, _ = run(HARDENED, COMMUNITY, world(observe=unassigned))
    assert outcome.kind is OutcomeKind.PROCESSED and actions(trace, Claim)
    outcome, trace, _ = run(DOCUMENTED, COMMUNITY, world(observe=unassigned))
    assert outcome.code == "NOT_AVAILABLE" and not actions(trace, Claim)


def test_claim_with_unknown_outcome_is_verified_by_hardened_and_fails_documented():
    # The database claim's unknown answer names the token it sent: a read of it confirms.
    outcome, trace, _ = run(HARDENED, INFRA, world(claim=WriteOutcome.UNKNOWN))
    assert outcome.kind is OutcomeKind.PROCESSED
    # A gateway claim has no token: "assigned to us" cannot be told from an older assignment
    # of ours, so the job is given back (tests/verifier/test_protocol_unknown_claim.py).
    outcome, trace, _ = run(HARDENED, COMMUNITY, world(claim=WriteOutcome.UNKNOWN))
    assert outcome.code == "CLAIM_UNKNOWN" and not actions(trace, StartWork)
    assert actions(trace, Release)
    outcome, trace, _ = run(DOCUMENTED, COMMUNITY, world(claim=WriteOutcome.UNKNOWN))
    assert outcome.kind is OutcomeKind.FAILED and not actions(trace, StartWork)
    outcome, trace, _ = run(HARDENED, COMMUNITY, world(claim=WriteOutcome.REFUSED))
    assert outcome.code == "CLAIM_REFUSED" and not actions(trace, StartWork)


@pytest.mark.parametrize(
    "answers,kind,code",
    [
        ([WriteOutcome.REFUSED], OutcomeKind.CANCELLED, "FINISH_REFUSED"),
        ([WriteOutcome.UNKNOWN, WriteOutcome.OK], OutcomeKind.PROCESSED, "FINISHED"),
        ([WriteOutcome.UNKNOWN, WriteOutcome.REFUSED], OutcomeKind.FAILED, "FINISH_UNKNOWN"),
        ([WriteOutcome.UNKNOWN] * 3, OutcomeKind.FAILED, "FINISH_UNKNOWN"),
        # Not sent (its send-by passed before it could leave): certainly not landed, so it is
        # tried again, and when every try went unsent the job is given back, not held.
        ([WriteOutcome.NOT_SENT, WriteOutcome.OK], OutcomeKind.PROCESSED, "FINISHED"),
        ([WriteOutcome.NOT_SENT] * 3, OutcomeKind.CANCELLED, "FINISH_NOT_SENT"),
        ([WriteOutcome.UNKNOWN, WriteOutcome.NOT_SENT, WriteOutcome.NOT_SENT],
         OutcomeKind.FAILED, "FINISH_UNKNOWN"),
    ],
)
def test_finish_outcomes(answers, kind, code):
    outcome, trace, _ = run(HARDENED, COMMUNITY, world(finish=answers))
    assert (outcome.kind, outcome.code) == (kind, code)
    assert bool(actions(trace, Release)) == (code == "FINISH_NOT_SENT")
    assert outcome.held == (code == "FINISH_UNKNOWN")


def test_only_a_gateway_finish_has_a_send_by_and_only_it_may_be_not_sent():
    _, trace, _ = run(HARDENED, COMMUNITY, world(work_ends_at=25.0))
    (decided, finish), = actions(trace, Finish)
    assert finish.send_by is not None and decided <= finish.send_by  # its finish_by
    _, trace, _ = run(HARDENED, INFRA, world())
    assert [a.send_by for _, a in actions(trace, Finish)] == [None]  # fenced: no bound
    # A driver that says "not sent" where nobody asked (a database finish) is not believed:
    # read as unknown, the job held, never given back as if nothing had landed.
    outcome, trace, _ = run(HARDENED, INFRA, world(finish=[WriteOutcome.NOT_SENT] * 3))
    assert outcome.code == "FINISH_UNKNOWN" and outcome.held and not actions(trace, Release)


def test_canary_switches_change_the_requests():
    _, trace, _ = run(HARDENED.without("fence"), INFRA, world())
    assert [a.fenced for _, a in actions(trace, Finish)] == [False]
    _, trace, _ = run(HARDENED.without("conditional-claim"), INFRA, world())
    assert [a.conditional for _, a in actions(trace, Claim)] == [False]
    _, trace, _ = run(HARDENED.without("settle"), COMMUNITY, world())
    claim_time = actions(trace, Claim)[0][0]
    verify_time = next(t for t, a in actions(trace, Observe) if a.purpose == "verify")
    assert verify_time - claim_time < 1

    def null_owner(action: Observe, now: float) -> Answer:
        return seen(action.tier, owner=None, status="queued")

    outcome, _, _ = run(HARDENED.without("absent-is-wait"), COMMUNITY, world(observe=null_owner))
    assert outcome.kind is OutcomeKind.PROCESSED, "absent-means-mine processes a null owner"


def test_failed_work_is_released_as_failed():
    def respond(action: Action, now: float) -> Answer:
        if isinstance(action, Sleep) and now > 20:
            return WorkEnded(False, "ffmpeg crashed")
        return world()(action, now)

    outcome, trace, codes = run(HARDENED, COMMUNITY, respond)
    assert outcome.kind is OutcomeKind.FAILED and "WORK_FAILED" in codes
    assert [a.failed for _, a in actions(trace, Release)] == [True]


def test_no_confirming_tier_means_no_processing():
    outcome, trace, _ = run(HARDENED, TierSet(gateway=True), world())
    assert outcome.code == "NO_CONFIRMING_TIER" and not actions(trace, StartWork)
    assert not actions(trace, Claim), "never claim a job it could not confirm"


def test_driver_contract_is_enforced():
    protocol = OwnershipProtocol("j1", me=ME, policy=HARDENED, tiers=COMMUNITY)
    with pytest.raises(ProtocolError):
        protocol.handle(Woke(), 0.0)
    step = protocol.start(0.0)
    assert isinstance(step.action, Observe)
    with pytest.raises(ProtocolError):
        protocol.handle(WorkStarted(), 1.0)
    with pytest.raises(ProtocolError):
        protocol.handle(seen(Tier.MONITOR), -1.0)
    with pytest.raises(ProtocolError):
        protocol.start(0.0)
    # ... and after Done: an answer to nothing
    done = OwnershipProtocol("j1", me=ME, policy=HARDENED, tiers=COMMUNITY)
    drive(done, world())
    assert done.outcome is not None
    with pytest.raises(ProtocolError):
        done.handle(Woke(), 1e6)


def test_chains_by_name_and_timing_validation():
    from verifier import HARDENING_STEPS, builtin_chain_names

    names = builtin_chain_names()
    assert len(names) == 3 + len(HARDENING_STEPS)
    for name in names:
        assert Policy.named(name).name == name
    with pytest.raises(ValueError, match="unknown chain"):
        Policy.named("hardened-without-everything")
    assert TimingModel().problems() == []
    assert TimingModel(recheck_interval=55).problems()
    # A zero T: no lease at all (every problem reported), and no division by it in the drift
    # over N; over any other T the drift is a rate, ε per T (ε·N/T over N, 300 s with T = 1 s).
    assert len(TimingModel(reassign_timeout=0).problems()) == 3
    assert TimingModel(reassign_timeout=1.0).drift_over(300.0) == 300.0
    with pytest.raises(ValueError):
        TimingModel(write_delay=-1)
    # NaN passes "< 0", and an infinite T made problems() say nothing (a review, 2026-12-03).
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            TimingModel(reassign_timeout=bad)
        with pytest.raises(ValueError, match="finite"):
            TimingModel(monitor_lag=bad)


def test_a_synthetic_record_naming_us_never_confirms():
    def synthetic(action: Observe, now: float) -> Answer:
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        fake = GatewayMonitorJob(id="", status="assigned", assigned_to=ME, synthetic=True)
        return Observed(Observation(action.tier, fake))

    outcome, trace, _ = run(HARDENED, COMMUNITY, world(observe=synthetic))
    assert outcome.code == "UNCONFIRMED" and not actions(trace, StartWork)


def test_an_answer_right_after_a_woke_at_the_same_driver_time_is_accepted():
    protocol = OwnershipProtocol("j1", me=ME, policy=HARDENED, tiers=COMMUNITY)
    step = protocol.start(0.0)
    step = protocol.handle(seen(Tier.MONITOR, owner=None, status="queued"), 0.1)
    step = protocol.handle(WriteAnswered(WriteOutcome.OK), 0.2)
    assert isinstance(step.action, Sleep)
    # A drifting driver wakes a hair early; the protocol treats Woke as "deadline reached"...
    early = step.action.until - 1e-9
    step = protocol.handle(Woke(), early)
    # ...and an immediate answer at the same driver time is not "time going backwards".
    protocol.handle(seen(Tier.MONITOR), early)


# --------------------------------------------------------------------------- shutdown


def shutting_down(respond: Responder, after: type | None = None) -> Responder:
    """``respond``, except that the first wait after an ``after`` action (or the first wait of
    all) is answered "shutting down"."""
    sent: list[float] = []
    seen_after = [after is None]

    def wrapped(action: Action, now: float) -> Answer:
        seen_after[0] = seen_after[0] or isinstance(action, after or Done)
        if isinstance(action, Sleep) and not sent and seen_after[0]:
            sent.append(now)
            return ShutdownRequested()
        return respond(action, now)

    return wrapped


@pytest.mark.parametrize("tiers", [INFRA, COMMUNITY], ids=["infra", "community"])
def test_a_shutdown_during_the_settle_wait_releases_the_claim_and_starts_nothing(tiers):
    outcome, trace, codes = run(HARDENED, tiers, shutting_down(world()))
    assert (outcome.kind, outcome.code) == (OutcomeKind.SKIPPED, "SHUTDOWN")
    assert not actions(trace, StartWork)
    (_, release), = actions(trace, Release)
    (_, claim), = actions(trace, Claim)
    assert release.via is claim.via and not release.failed
    assert "SHUTDOWN" in codes


@pytest.mark.parametrize("policy", [HARDENED, dataclasses.replace(HARDENED, cancel=False)],
                         ids=["hardened", "without-cancel"])
def test_a_shutdown_during_work_cancels_it_before_the_fenced_release(policy):
    # Even the canary that ignores a detected loss stops for a shutdown: the node is leaving.
    outcome, trace, _ = run(policy, INFRA, shutting_down(world(), after=StartWork))
    assert (outcome.kind, outcome.code) == (OutcomeKind.CANCELLED, "SHUTDOWN")
    kinds = [type(a) for _, a in trace]
    # The release hands the job back: only once the work has stopped (S2), and never a finish.
    assert kinds.index(CancelWork) < kinds.index(Release)
    assert not actions(trace, Finish)
    assert [a.token for _, a in actions(trace, Release)] == ["tok"]  # fenced on our claim


def test_a_shutdown_while_finishing_is_ignored_and_the_result_committed():
    respond = world(finish=[WriteOutcome.UNKNOWN, WriteOutcome.OK])
    outcome, trace, codes = run(HARDENED, COMMUNITY, shutting_down(respond, after=Finish))
    assert outcome.kind is OutcomeKind.PROCESSED
    assert not actions(trace, Release) and "SHUTDOWN" not in codes
    (t1, _), (t2, _) = actions(trace, Finish)
    assert t2 - t1 >= TIMING.retry_interval  # the early wake-up did not shorten the spacing


def test_a_shutdown_told_before_the_claim_claims_nothing():
    protocol = OwnershipProtocol("j1", me=ME, policy=HARDENED, tiers=COMMUNITY)
    respond = world()

    def told_during_the_pre_claim_read(action: Action, now: float) -> Answer:
        if isinstance(action, Observe) and action.purpose == "pre-claim":
            protocol.request_shutdown()  # the signal arrives while the read is in flight
        return respond(action, now)

    trace, _ = drive(protocol, told_during_the_pre_claim_read)
    assert protocol.outcome is not None
    assert (protocol.outcome.kind, protocol.outcome.code) == (OutcomeKind.SKIPPED, "SHUTDOWN")
    assert not actions(trace, Claim) and not actions(trace, Release)


@pytest.mark.parametrize("tiers", [INFRA, COMMUNITY], ids=["infra", "community"])
def test_a_shutdown_told_during_the_deciding_read_gives_the_job_back_before_any_work(tiers):
    """A driver delivers ShutdownRequested only at a wait; one told while the read after the
    settle is in flight is seen before the work would start (an adversarial review of the
    asyncio driver, 2026-12-04: the work was started, then cancelled at its next wait)."""
    protocol = OwnershipProtocol("j1", me=ME, policy=HARDENED, tiers=tiers)
    respond = world()
    slept: list[float] = []

    def told_during_the_deciding_read(action: Action, now: float) -> Answer:
        if isinstance(action, Sleep):
            slept.append(now)  # the settle wait
        elif isinstance(action, Observe) and slept:
            protocol.request_shutdown()
        return respond(action, now)

    trace, codes = drive(protocol, told_during_the_deciding_read)
    assert protocol.outcome is not None
    assert (protocol.outcome.kind, protocol.outcome.code) == (OutcomeKind.SKIPPED, "SHUTDOWN")
    assert not actions(trace, StartWork) and not actions(trace, CancelWork)
    (_, claim), = actions(trace, Claim)
    (_, release), = actions(trace, Release)
    assert release.via is claim.via and not release.failed and "SHUTDOWN" in codes


@pytest.mark.parametrize(("answers", "code", "releases"), [
    ([WriteOutcome.UNKNOWN, WriteOutcome.OK], "SHUTDOWN", 2),
    ([WriteOutcome.REFUSED], "SHUTDOWN", 1),
    ([WriteOutcome.UNKNOWN] * 3, "SHUTDOWN_HELD", 3),
])
def test_a_shutdown_release_is_retried_and_a_job_not_given_back_is_said_to_be_held(
        answers, code, releases):
    pending = list(answers)
    base = shutting_down(world(), after=StartWork)

    def respond(action: Action, now: float) -> Answer:
        if isinstance(action, Release):
            return WriteAnswered(pending.pop(0))
        return base(action, now)

    outcome, trace, _ = run(HARDENED, COMMUNITY, respond)
    assert outcome.code == code
    assert len(actions(trace, Release)) == releases


@pytest.mark.parametrize(("answer", "code"), [
    (WriteOutcome.UNKNOWN, "SHUTDOWN_HELD"), (WriteOutcome.OK, "SHUTDOWN")])
def test_a_chain_without_retries_gives_a_job_back_once_on_shutdown(answer, code):
    """Chains that do not retry (``verify_retries`` off, as the documented chain) still give
    the job back, once: mutation testing (session 23) found no test of that count."""
    base = shutting_down(world(), after=StartWork)

    def respond(action: Action, now: float) -> Answer:
        if isinstance(action, Release):
            return WriteAnswered(answer)
        return base(action, now)

    policy = dataclasses.replace(HARDENED, verify_retries=False)
    outcome, trace, _ = run(policy, COMMUNITY, respond)
    assert outcome.code == code and outcome.held is (answer is WriteOutcome.UNKNOWN)
    assert len(actions(trace, Release)) == 1


def test_a_chain_that_never_gives_back_says_the_job_is_held_on_shutdown():
    """Without ``release_on_give_up`` nothing is given back: the outcome must say the job may
    stay held (``held``, what the encoder loop and the lemma ``give-back`` read), not "given
    back". Mutation testing (session 23): ``held=False`` there survived every test."""
    policy = dataclasses.replace(HARDENED, release_on_give_up=False)
    outcome, trace, _ = run(policy, COMMUNITY, shutting_down(world(), after=StartWork))
    assert (outcome.code, outcome.held) == ("SHUTDOWN_HELD", True)
    assert not actions(trace, Release)


@pytest.mark.parametrize("backoff", [False, True], ids=["fixed", "backoff"])
def test_a_shutdown_release_is_retried_after_the_retry_delay_not_at_once(backoff):
    """A give-back that got no answer is asked again after the retry delay: a tier that did
    not answer is not hammered (fixed: a retry interval after the answer; with backoff, a
    jittered wait, here never none), and the first is asked at once once the work stopped.
    Mutation testing (session 23) found no test that noticed the retries sent back to back."""
    pending = [WriteOutcome.UNKNOWN, WriteOutcome.UNKNOWN, WriteOutcome.OK]
    base = shutting_down(world(), after=StartWork)
    asked: list[float] = []

    def respond(action: Action, now: float) -> Answer:
        if isinstance(action, (Release, CancelWork)):
            asked.append(now)
        if isinstance(action, Release):
            return WriteAnswered(pending.pop(0))
        return base(action, now)

    policy = dataclasses.replace(HARDENED, backoff=backoff)
    outcome, _, _ = run(policy, COMMUNITY, respond)
    assert outcome.code == "SHUTDOWN" and not outcome.held
    stopped, first, second, third = asked
    answer = 0.1  # each action's answer takes 0.1 s in ``run``
    assert first == pytest.approx(stopped + answer)  # no wait but for the stop
    for gap in (second - first, third - second):
        assert gap > answer + 1e-6
        if not backoff:
            assert gap == pytest.approx(answer + TIMING.retry_interval)


@pytest.mark.parametrize("landed", [True, False], ids=["accept-lands-late", "not-ours"])
def test_a_release_refused_while_our_claim_may_be_landing_is_asked_again_once_it_has(landed):
    """A shutdown during the settle wait, right after an accept the gateway answered: the
    release is refused because the accept has not landed yet. Taken as "nothing held", the job
    was reported given back, then the accept landed and held it until T (an adversarial
    review of the encoder loop, session 21). The release is asked again at G + ε after the
    claim's answer, when our write must have landed; a refusal then is final."""
    claimed: list[float] = []
    base = shutting_down(world())

    def respond(action: Action, now: float) -> Answer:
        if isinstance(action, Claim):
            claimed.append(now)
        if isinstance(action, Release):
            landing = claimed[0] + 0.1 + TIMING.write_delay  # answered 0.1 s after sending
            ours = landed and now >= landing
            return WriteAnswered(WriteOutcome.OK if ours else WriteOutcome.REFUSED)
        return base(action, now)

    outcome, trace, _ = run(HARDENED, COMMUNITY, respond)
    assert (outcome.kind, outcome.code, outcome.held) == (OutcomeKind.SKIPPED, "SHUTDOWN", False)
    releases = [t for t, _ in actions(trace, Release)]
    assert len(releases) == 2, releases
    answered = claimed[0] + 0.1
    assert releases[0] < answered + TIMING.write_delay
    assert releases[1] >= answered + TIMING.write_delay + TIMING.clock_drift


def test_a_refusal_answered_after_the_claim_landed_is_judged_by_when_it_was_asked():
    """The release was sent before our accept landed and refused for that reason, but its
    answer was handled only after the accept's landed-by instant (a reply of 1 s, then a
    pause of P before the handling): judged by the handling instant, the refusal was final,
    the run said nothing was held, and the accept then held the job until T (a review of the
    simulated finish connection, session 31: give-back broken inside the model). Judged by
    when it was asked, it is asked again once the accept must have landed."""
    claimed: list[float] = []
    released: list[float] = []
    base = shutting_down(world())
    protocol = OwnershipProtocol("j1", me=ME, policy=HARDENED, tiers=COMMUNITY)
    now, step = 0.0, protocol.start(0.0)
    for _ in range(500):
        action = step.action
        if isinstance(action, Done):
            break
        if isinstance(action, Claim):
            claimed.append(now)
        if isinstance(action, Release):
            released.append(now)
            landing = claimed[0] + 0.1 + TIMING.write_delay  # the accept lands G after it left
            answer: Answer = WriteAnswered(
                WriteOutcome.OK if now >= landing else WriteOutcome.REFUSED)
            now += 1.0 + TIMING.pause  # answered 1 s later, handled a pause of P after that
        else:
            answer = base(action, now)
            now = max(now, action.until) if isinstance(action, Sleep) and isinstance(
                answer, Woke) else now + 0.1
        step = protocol.handle(answer, now)
    outcome = protocol.outcome
    assert outcome is not None and (outcome.code, outcome.held) == ("SHUTDOWN", False)
    landed_by = claimed[0] + 0.1 + TIMING.write_delay + TIMING.clock_drift
    assert len(released) == 2 and released[0] < landed_by <= released[1], (released, landed_by)


def test_aborting_says_unconfirmed_when_the_lease_ran_out_without_a_theft():
    """An operator reading ABORTING goes looking for another encoder only when one took the job
    (the test above); a lease that ran out unconfirmed says so."""
    def silence(action: Observe, now: float) -> Answer:
        if action.purpose == "recheck":
            return TierFailed(action.tier, "down")
        return stolen_during_work(action, now)

    messages: list[str] = []
    outcome, _, _ = run(HARDENED, COMMUNITY, world(observe=silence, work_ends_at=1000),
                        messages=messages)
    assert outcome.code == "LEASE_EXPIRED"
    aborting = [m for m in messages if m.startswith("ABORTING")]
    assert aborting and all("Ownership unconfirmed" in m for m in aborting), aborting


# ---- a gateway ping's proof counts from its answer too (session 31)


#: The ``proof`` family's bounds (G = 2 s > P + C = 1 s, no lag, no drift, T = 30 s), with
#: R = 9.3 s so that the third ping is decided a few seconds before the lease's end.
PROOF = TimingModel(
    monitor_lag=0.0, write_delay=2.0, pause=0.5, clock_drift=0.0, recheck_interval=9.3,
    cancel_latency=0.5, reassign_timeout=30.0, progress_timeout=300.0, confirm_timeout=5.0,
    retry_interval=1.0,
)


def test_a_gateway_ping_that_left_late_is_not_proven_by_a_read_before_it_could_land():
    """A gateway ping is proven by a read decided P + G + lag after the ping's *decision*:
    that assumes it left within P of it. A decision is not a send: like a finish (session 28),
    a ping can wait seconds for its connection (a kept-alive connection expired between two
    pings R apart; lost SYNs). Here the first two pings are lost, the third is decided at
    25.0, connects for 3.5 s and is answered OK at 28.5 (it left then); it may land up to G
    later, at 30.5. The claim landed at once, at 0.1, and nothing has renewed it, so the
    gateway reassigns at 30.1, before the ping lands. The read at 28.5 (the job still ours)
    counted the ping, the lease moved to 25.0 + 29, and the work ran on past the
    reassignment. Only the ping's answer proves when it had left: the read must come G + lag
    after it, or the work must be stopped by the lease it had (an adversarial review of the
    protocol's instants, session 31)."""
    assert not PROOF.problems()
    policy = Policy.hardened(PROOF)
    protocol = OwnershipProtocol("j1", me=ME, policy=policy, tiers=COMMUNITY)
    now = 0.0
    step = protocol.start(now)
    claim_decided: float | None = None
    pings: list[float] = []
    trace: list[tuple[float, object]] = []
    for _ in range(500):
        action = step.action
        trace.append((now, action))
        if isinstance(action, Done) or now > 40.0:
            break
        if isinstance(action, Observe) and action.purpose == "pre-claim":
            answer = seen(action.tier, owner=None, status="queued")
            now += 0.1
        elif isinstance(action, Claim):
            claim_decided = now
            answer = WriteAnswered(WriteOutcome.OK)  # landed at once, at its decision
            now += 0.1
        elif isinstance(action, Observe):
            answer = seen(action.tier)  # ours: the gateway has not reassigned it (yet)
        elif isinstance(action, StartWork):
            answer = WorkStarted()
            now += 0.1
        elif isinstance(action, Heartbeat):
            pings.append(now)
            if len(pings) < 3:
                answer = WriteAnswered(WriteOutcome.UNKNOWN, detail="timeout")  # lost
            else:
                answer = WriteAnswered(WriteOutcome.OK)
                now += 3.5  # waited 3.5 s for its connection, then left and was answered
        elif isinstance(action, CancelWork):
            answer = WorkStopped()
            now += PROOF.cancel_latency
        elif isinstance(action, Sleep):
            answer = Woke()
            now = max(now, action.until)
        else:
            answer = WriteAnswered(WriteOutcome.OK)  # a release
        step = protocol.handle(answer, now)
    assert claim_decided is not None and len(pings) >= 3
    reassigned = claim_decided + PROOF.reassign_timeout  # the claim's stamp, never renewed
    cancels = [t for t, a in trace if isinstance(a, CancelWork)]
    assert cancels and cancels[0] + PROOF.cancel_latency <= reassigned, (
        f"pings decided at {pings}, the third answered at {pings[2] + 3.5:.1f}; cancelled "
        f"at {cancels[:1]}, the gateway reassigned at {reassigned:.1f}")


@pytest.mark.parametrize(("answered_after", "pushed"), [(0.1, False), (1.5, False),
                                                        (1.5, True)])
def test_the_read_that_proves_a_gateway_ping_is_planned_from_its_decision_and_its_answer(
        answered_after: float, pushed: bool):
    """The read that proves a gateway ping answered OK is planned for the instant it can: P + G
    + lag after the ping's decision, and G + lag after its answer, whichever is later (a ping
    answered within P, then one that waited 1.5 s for its connection), and at that very
    instant it proves it: the next read is the re-check R later, not a retry. A push right
    after the answer brings a read that cannot prove the ping yet; the retry after it still
    waits for that instant. Planned too early, a read proves nothing and costs a read; too
    late (P counted from the answer), the proof and the lease's renewal come later than they
    may (mutation testing, session 35: each survived the suites, which hold only to safety)."""
    protocol = OwnershipProtocol("j1", me=ME, policy=Policy.hardened(PROOF), tiers=COMMUNITY)
    respond = world(work_ends_at=100.0)
    now, step = 0.0, protocol.start(0.0)
    decided: float | None = None
    reads: list[float] = []
    push = pushed
    for _ in range(200):
        action = step.action
        if isinstance(action, Heartbeat) and decided is None:
            decided = now
            now += answered_after
            step = protocol.handle(WriteAnswered(WriteOutcome.OK), now)
            continue
        if isinstance(action, Observe) and decided is not None:
            reads.append(now)
            if len(reads) == 2:
                break
        if isinstance(action, Sleep) and decided is not None and push:
            push, answer = False, Hinted(OTHER, "assigned")
        else:
            answer = respond(action, now)
        now = max(now, action.until) if isinstance(answer, Woke) else now + 0.1
        step = protocol.handle(answer, now)
    assert decided is not None and len(reads) == 2
    lag = PROOF.monitor_lag
    provable = max(decided + PROOF.proof_delay(lag),
                   decided + answered_after + PROOF.proof_delay_from_answer(lag))
    if pushed:
        assert reads[0] < provable and reads[1] == pytest.approx(provable), (decided, reads)
    else:
        assert reads[0] == pytest.approx(provable), (decided, reads)
        assert reads[1] >= decided + PROOF.recheck_interval - 1e-9, (decided, reads)


AID_NODE = TierSet(monitor=True, gateway=True, aid=True)


def _aid_refusing(status: str, owner: str | None = None) -> Responder:
    """A world whose Gateway Aid refuses every claim (its claim-job matches only ``pending``
    jobs: docs/contract.md) and whose pre-claim read shows the job as ``status`` (free, or
    held by ``owner``)."""
    base = world()

    def respond(action: Action, now: float) -> Answer:
        if isinstance(action, Observe) and action.purpose == "pre-claim":
            return seen(action.tier, owner=owner, status=status)
        if isinstance(action, Claim) and action.via is Tier.AID:
            return WriteAnswered(WriteOutcome.REFUSED, detail="409 JOB_ALREADY_ASSIGNED")
        return base(action, now)
    return respond


def test_an_aid_node_claims_a_gateway_job_through_the_gateway_once_aid_refuses_it():
    """Gateway Aid's claim-job matches only its own ``pending`` jobs: a job the pre-claim read
    shows free as ``queued`` is refused there, and claimed through the gateway, whose lease
    and settle count from that claim (session 32: an aid node never claimed a gateway job)."""
    # A lagging read showing the job still ours (after our own give-back) goes ahead too.
    stale, stale_trace, _ = run(HARDENED, AID_NODE, _aid_refusing("assigned", owner=ME))
    assert [c.via for _, c in actions(stale_trace, Claim)] == [Tier.AID, Tier.GATEWAY]
    assert stale.kind is OutcomeKind.PROCESSED
    outcome, trace, _ = run(HARDENED, AID_NODE, _aid_refusing("queued"))
    claims = actions(trace, Claim)
    assert [c.via for _, c in claims] == [Tier.AID, Tier.GATEWAY]
    # The gateway's accept is conditional (the production client refuses any other claim).
    assert claims[1][1].conditional
    assert outcome.kind is OutcomeKind.PROCESSED
    # Everything after the claim goes through the tier that holds it.
    assert {a.via for _, a in actions(trace, Heartbeat)} == {Tier.GATEWAY}
    assert {a.via for _, a in actions(trace, Finish)} == {Tier.GATEWAY}
    # The settle counts from the gateway claim's answer: no deciding read before it ends.
    second = claims[1][0]
    verify = [t for t, a in actions(trace, Observe) if a.purpose == "verify"]
    assert verify and min(verify) >= second + TIMING.settle_delay(TIMING.monitor_lag) - 1e-9


def test_an_aid_refusal_of_an_aid_job_or_on_a_node_without_the_gateway_is_final():
    """... and after no pre-claim read (a policy without the check): nothing showed the job
    to be the gateway's (mutation testing, session 35: the flag's initial value was pinned by
    no test)."""
    unchecked = dataclasses.replace(HARDENED, pre_claim_check=False)
    for policy, status, tiers in (
            (HARDENED, "pending", AID_NODE),
            (HARDENED, "queued", TierSet(monitor=True, gateway=False, aid=True)),
            (unchecked, "queued", AID_NODE)):
        outcome, trace, _ = run(policy, tiers, _aid_refusing(status))
        assert [c.via for _, c in actions(trace, Claim)] == [Tier.AID], (status, tiers)
        assert outcome.code == "CLAIM_REFUSED"


def _finish_sent_when_work_ends_at(policy: Policy, ends: float) -> bool:
    """Drive a community job whose re-checks all say "another owner" (so no ping is proven
    and the lease ends at the claim's decision + the budget), with the work's end delivered
    at exactly ``ends``; whether a Finish was sent."""
    base = world(observe=stolen_during_work, work_ends_at=math.inf)
    protocol = OwnershipProtocol("j1", me=ME, policy=policy, tiers=COMMUNITY)
    now, step, started, finished = 0.0, protocol.start(0.0), False, False
    for _ in range(500):
        action = step.action
        if isinstance(action, Done):
            return finished
        started |= isinstance(action, StartWork)
        finished |= isinstance(action, Finish)
        answer = base(action, now)
        if started and isinstance(action, Sleep) and now < ends <= action.until:
            now, answer = ends, WorkEnded(True)
        elif isinstance(action, Sleep) and isinstance(answer, Woke):
            now = max(now, action.until)
        else:
            now += 0.1
        step = protocol.handle(answer, now)
    raise AssertionError("protocol did not finish")


def test_a_gateway_finish_may_be_decided_until_c_minus_g_after_the_lease_end():
    """Liveness of the finish deadline (``docs/safety-model.md``, "S3"): a gateway finish
    decided up to C − G after the lease's end lands before the gateway can requeue the job, so
    it is sent; one decided later is not. Written from the timing model's bounds, not from
    ``TimingModel.finish_slack``: a mutant that dropped its C (no finish after the lease's
    end − G, 3 s of finished work thrown away with the defaults) passed every suite. The work
    outlives its lease here through the ``cancel`` ablation, the only way work can still end
    after it."""
    t = TIMING
    budget = t.reassign_timeout - (t.clock_drift + t.pause + t.cancel_latency)
    slack = t.cancel_latency - t.write_delay
    no_cancel = HARDENED.without("cancel")
    claimed = 0.1  # the pre-claim read takes the drive's 0.1 s; the claim is decided after it
    for past, sent in ((slack - 0.05, True), (slack + 0.05, False)):
        assert _finish_sent_when_work_ends_at(no_cancel, claimed + budget + past) is sent, past


@pytest.mark.parametrize("status", sorted(NOT_HELD_STATUSES))
@pytest.mark.parametrize("tiers", [TierSet(monitor=True, gateway=False, aid=True), COMMUNITY],
                         ids=["aid-claim", "gateway-claim"])
def test_ours_on_record_but_withdrawn_or_requeued_during_work_is_lost(
        status: str, tiers: TierSet) -> None:
    """The monitor naming us with a status nobody may process in (an operator's cancel, the
    gateway's fifth attempt, a requeue that kept the owner) was read as unknown: only the
    lease ended such work, and on an aid node, whose heartbeats renew the lease on their own,
    nothing did. The work ran to its end (helper-130's review, session 44). Now it is lost at
    the first re-check that shows it."""
    def withdrawn(action: Observe, now: float) -> Answer:
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        if action.purpose == "recheck":
            return seen(action.tier, owner=ME, status=status)
        return seen(action.tier)

    messages: list[str] = []
    outcome, trace, _ = run(HARDENED, tiers, world(observe=withdrawn, work_ends_at=100),
                            messages=messages)
    assert outcome.kind is OutcomeKind.CANCELLED, (status, outcome)
    assert actions(trace, CancelWork) and not actions(trace, Finish)
    first = min(t for t, a in actions(trace, Observe) if a.purpose == "recheck")
    assert actions(trace, CancelWork)[0][0] <= first + 1.0  # at that read, not at the lease
    assert any(f"status={status}" in m for m in messages), messages
    # The same reads showing the job still ours in a processable status: processed.
    outcome, _, _ = run(HARDENED, tiers, world(work_ends_at=100))
    assert outcome.kind is OutcomeKind.PROCESSED


def _slow_pings(ping_s: float, work_ends_at: float, *, shutdown_at: float | None = None,
                policy: Policy = HARDENED) -> tuple[list[tuple[float, Action]], Any]:
    """A community node whose gateway pings take ``ping_s`` to answer (OK), everything else
    0.1 s; the work ends ``work_ends_at`` after it started (or a shutdown comes then)."""
    protocol = OwnershipProtocol("j1", me=ME, policy=policy, tiers=COMMUNITY)
    respond = world(work_ends_at=work_ends_at)
    now, started, trace = 0.0, None, []
    step = protocol.start(now)
    for _ in range(2000):
        trace.append((now, step.action))
        if isinstance(step.action, Done):
            assert protocol.outcome is not None
            return trace, protocol.outcome
        if isinstance(step.action, StartWork):
            started = now
        if (shutdown_at is not None and isinstance(step.action, Sleep) and started is not None
                and now >= started + shutdown_at):
            answer: Answer = ShutdownRequested()
            shutdown_at = None
        else:
            answer = respond(step.action, now)
        if isinstance(step.action, Sleep) and isinstance(answer, Woke):
            now = max(now, step.action.until)
        else:
            now += ping_s if isinstance(step.action, Heartbeat) else 0.1
        step = protocol.handle(answer, now)
    raise AssertionError("protocol did not finish")


@pytest.mark.parametrize("ping_s", [TIMING.recheck_interval * 1.5, TIMING.recheck_interval])
def test_pings_slower_than_r_leave_room_for_their_proofs_and_the_work_s_events(
        ping_s: float) -> None:
    """A ping answered after R found the next one due at once, and the next: the protocol
    pinged back to back, never read (no ping proven: the lease ran out on healthy work) and,
    never waiting, never heard the work end or a shutdown (helper-132's review, session 44;
    at the defaults a gateway ping may take its 10 s timeout, R). Now a due read goes before a
    repeated ping, and no more than two requests go without a wait."""
    trace, outcome = _slow_pings(ping_s, work_ends_at=120)
    assert outcome.kind is OutcomeKind.PROCESSED, outcome
    started = next(i for i, (_, a) in enumerate(trace) if isinstance(a, StartWork))
    kinds = [type(a) for _, a in trace[started:] if isinstance(a, (Heartbeat, Observe))]
    assert Observe in kinds and all(
        kinds[i:i + 2] != [Heartbeat, Heartbeat] for i in range(len(kinds) - 1)), kinds
    trace, outcome = _slow_pings(ping_s, work_ends_at=10_000, shutdown_at=60)
    assert outcome.code == "SHUTDOWN", outcome
    told = next(t for t, a in trace if isinstance(a, Release))
    start = next(t for t, a in trace if isinstance(a, StartWork))
    assert told - start <= 60 + 3 * ping_s, (told - start)


def test_pings_alone_back_to_back_still_leave_a_wait_every_two():
    """Without re-checks (the ``recheck`` ablation, nothing to interleave), pings slower than
    R follow one another: every two, a wait still delivers the work's events (mutation
    testing of the fix, session 44: a streak counted by reads alone passed)."""
    no_reads = HARDENED.without("recheck").without("lease")
    trace, outcome = _slow_pings(TIMING.recheck_interval * 1.5, work_ends_at=10_000,
                                 shutdown_at=60, policy=no_reads)
    assert outcome.code == "SHUTDOWN", outcome
    start = next(t for t, a in trace if isinstance(a, StartWork))
    told = next(t for t, a in trace if isinstance(a, Release))
    assert told - start <= 60 + 3 * TIMING.recheck_interval * 1.5, (told - start)
    steps = [type(a) for _, a in trace if isinstance(a, (Heartbeat, Sleep))]
    assert all(steps[i:i + 3] != [Heartbeat] * 3 for i in range(len(steps) - 2)), steps

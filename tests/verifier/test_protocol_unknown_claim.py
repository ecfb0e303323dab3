"""A claim whose outcome is unknown is confirmed only by a read of *its own* assignment.

The gap (found by an adversarial review, 2026-12-02; docs/history.md):
a claim whose reply was lost was confirmed by any read naming our DID, and its lease counted
from the claim's decision. The read may show an *older* assignment of our DID instead (one a
crashed process of ours held, or one whose release got no answer, offered to us again by
``myJob``): the claim then matched nothing, and that assignment's last ping and progress
change are older than the decision, so the work could run past the gateway's reassignment.

The rule: the database tier's unknown answer names the token the claim sent, and only a read
of that token confirms; a read without a token (the monitor) proves nothing and is asked
again; a claim without a token (gateway, aid) is given back.
"""

from __future__ import annotations

import pytest

from tests.verifier.test_protocol import (
    COMMUNITY,
    HARDENED,
    INFRA,
    ME,
    TIMING,
    actions,
    run,
    seen,
    world,
)
from verifier import Tier, TierSet
from verifier.protocol import (
    Answer,
    CancelWork,
    Claim,
    Done,
    Observe,
    OutcomeKind,
    OwnershipProtocol,
    Release,
    Sleep,
    StartWork,
    TierFailed,
    Woke,
    WorkStarted,
    WorkStopped,
    WriteAnswered,
    WriteOutcome,
)

INFRA_WITH_AID = TierSet(database=False, monitor=True, gateway=True, aid=True)


@pytest.mark.parametrize("sent", [None, "t1"], ids=["token-unknown", "token-sent"])
def test_an_unknown_claim_is_not_confirmed_by_an_older_assignment_of_ours(sent):
    """An earlier process of this DID held the job (token ``t0``, last ping at -45 s, so the
    gateway may reassign from 15 s) and is gone; the job is offered again, our conditional
    claim matches nothing and its reply is lost (UNKNOWN), and the database still shows the
    old assignment. Work must not run past the gateway's reassignment point (it ran 42 s past
    it before the fix)."""
    last_ping, tiers = -45.0, TierSet(database=True, monitor=True, gateway=True)
    reassign_at = last_ping + TIMING.reassign_timeout

    def held(tier: Tier) -> Answer:
        return seen(tier, owner=ME, status="running",
                    token="t0" if tier is Tier.DATABASE else None)

    protocol = OwnershipProtocol("j1", me=ME, policy=HARDENED, tiers=tiers)
    now, step = 0.0, protocol.start(0.0)
    worked_until: float | None = None
    started: float | None = None
    for _ in range(500):
        action = step.action
        if isinstance(action, Done):
            break
        answer: Answer
        if isinstance(action, Observe) and action.purpose in ("pre-claim", "verify"):
            answer = held(action.tier)
        elif isinstance(action, Claim):
            answer = WriteAnswered(WriteOutcome.UNKNOWN, token=sent, detail="timeout")
        elif isinstance(action, Sleep):
            now = max(now, action.until)
            answer = Woke()
        elif isinstance(action, StartWork):
            started, answer = now, WorkStarted()
        elif isinstance(action, CancelWork):
            now += TIMING.cancel_latency
            worked_until, answer = now, WorkStopped()
        elif isinstance(action, Observe):
            now += 0.5
            answer = TierFailed(action.tier, "timeout")
        else:
            now += 0.5
            answer = WriteAnswered(WriteOutcome.UNKNOWN, detail="timeout")
        now += 0.1
        step = protocol.handle(answer, now)
    assert isinstance(step.action, Done)
    assert started is None or (worked_until is not None and worked_until <= reassign_at), (
        f"worked {started} .. {worked_until}; the gateway may reassign from {reassign_at}")
    assert started is None, "neither claim can be told to have landed"
    # With the token, the database's "t0" says "not this claim"; without, it is given back.
    expected = "OWNERSHIP_CONFLICT" if sent else "CLAIM_UNKNOWN"
    assert protocol.outcome is not None and protocol.outcome.code == expected


def test_a_read_of_the_token_the_claim_sent_confirms_it():
    outcome, trace, _ = run(HARDENED, INFRA, world(claim=WriteOutcome.UNKNOWN, token="t1"))
    assert outcome.kind is OutcomeKind.PROCESSED
    verify = [a for _, a in actions(trace, Observe) if a.purpose == "verify"]
    assert [a.tier for a in verify] == [Tier.DATABASE]


def test_a_read_without_a_token_proves_nothing_after_an_unknown_claim():
    """The database fails at first; the monitor (no tokens) says "ours", which may be an older
    assignment: the protocol waits for the database, whose read of our token confirms."""
    calls = {"db": 0}

    def observe(action: Observe, now: float) -> Answer:
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        if action.tier is Tier.DATABASE:
            calls["db"] += 1
            if calls["db"] <= 2:
                return TierFailed(Tier.DATABASE, "timeout")
            return seen(Tier.DATABASE, token="t1")
        return seen(action.tier)  # "ours", no token

    outcome, trace, _ = run(HARDENED, INFRA, world(observe=observe, claim=WriteOutcome.UNKNOWN,
                                                    token="t1"))
    assert outcome.kind is OutcomeKind.PROCESSED
    start = actions(trace, StartWork)[0][0]
    db_ok = [t for t, a in actions(trace, Observe)
             if a.purpose == "verify" and a.tier is Tier.DATABASE][2]
    monitor = [t for t, a in actions(trace, Observe)
               if a.purpose == "verify" and a.tier is Tier.MONITOR]
    assert monitor and monitor[0] < db_ok < start, "the monitor's 'ours' did not confirm"


@pytest.mark.parametrize("tiers", [COMMUNITY, INFRA_WITH_AID], ids=["gateway", "aid"])
def test_a_claim_without_a_token_whose_outcome_is_unknown_is_given_back(tiers):
    outcome, trace, codes = run(HARDENED, tiers, world(claim=WriteOutcome.UNKNOWN))
    assert outcome.kind is OutcomeKind.SKIPPED and outcome.code == "CLAIM_UNKNOWN"
    assert "CLAIM_AMBIGUOUS" in codes
    assert not actions(trace, StartWork)
    (claim,) = [a for _, a in actions(trace, Claim)]
    (release,) = [a for _, a in actions(trace, Release)]
    assert release.via is claim.via
    # Given back only after the deciding read, so a claim still in flight has landed.
    verify_at = next(t for t, a in actions(trace, Observe) if a.purpose == "verify")
    assert actions(trace, Release)[0][0] > verify_at


def test_a_claim_answered_ok_is_still_confirmed_by_a_read_of_our_did():
    """The rule is for unknown outcomes only: an answered claim landed after its decision, so
    any assignment to us seen after the settle wait is this one or a later one."""
    outcome, _, _ = run(HARDENED, COMMUNITY, world())
    assert outcome.kind is OutcomeKind.PROCESSED

"""The cost features in the pure protocol: status cache ages, backoff, push hints, screening.

Each test drives :class:`~verifier.protocol.OwnershipProtocol` with scripted answers (the
helpers of ``test_protocol.py``) and checks the rule the protocol owns: which reads may take a
cached answer, how long a retry waits (and never past its deadline), that a push only makes a
read come sooner, and what a batch answer may stand for.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics

import pytest

from tests.verifier.test_protocol import (
    COMMUNITY,
    HARDENED,
    INFRA,
    ME,
    OTHER,
    TIMING,
    Responder,
    actions,
    drive,
    run,
    seen,
    world,
)
from verifier import Policy, Tier
from verifier.protocol import (
    MAX_RETRY_AFTER_S,
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
    Sleep,
    StartWork,
    TierFailed,
    Woke,
    WriteAnswered,
    WriteOutcome,
    screened,
    unusable_answers,
)

CACHED = dataclasses.replace(HARDENED, status_cache_s=30.0)
BACKOFF = dataclasses.replace(HARDENED, backoff=True)


@pytest.mark.parametrize("tiers", [INFRA, COMMUNITY], ids=["infra", "community"])
def test_only_the_pre_claim_check_may_take_a_cached_answer(tiers):
    _, trace, _ = run(CACHED, tiers, world(work_ends_at=60))
    reads = [a for _, a in actions(trace, Observe)]
    assert {a.purpose for a in reads} >= {"pre-claim", "verify", "recheck"}
    for read in reads:
        assert read.max_age == (30.0 if read.purpose == "pre-claim" else 0.0), read
    _, trace, _ = run(HARDENED, tiers, world(work_ends_at=60))
    assert all(a.max_age == 0.0 for _, a in actions(trace, Observe)), "no cache: no max_age"


def _verify_failing(action: Observe, now: float) -> Answer:
    if action.purpose == "pre-claim":
        return seen(action.tier, owner=None, status="queued")
    return TierFailed(action.tier, "503")


def _retry_waits(policy: Policy, job: str = "j1", start: float = 0.0) -> list[float]:
    """The waits between the verify reads of a claim whose confirmation never comes."""
    protocol = OwnershipProtocol(job, me=ME, policy=policy, tiers=COMMUNITY)
    respond = world(observe=_verify_failing)
    now, step = start, protocol.start(start)
    reads: list[float] = []
    while step.action.__class__.__name__ != "Done":
        action = step.action
        if isinstance(action, Observe) and action.purpose == "verify":
            reads.append(now)
        answer = respond(action, now)
        now = max(now, action.until) if isinstance(action, Sleep) else now + 0.1
        step = protocol.handle(answer, now)
    assert protocol.outcome is not None and protocol.outcome.code == "UNCONFIRMED"
    return [b - a - 0.1 for a, b in itertools.pairwise(reads)]


def test_without_backoff_verify_retries_wait_the_fixed_interval():
    *waits, last = _retry_waits(HARDENED)
    assert waits and all(w == pytest.approx(TIMING.retry_interval) for w in waits)
    assert 0 < last <= TIMING.retry_interval + 1e-9  # the last one: cut at the deadline


def test_backoff_waits_are_full_jitter_under_a_growing_cap_and_fewer():
    fixed = _retry_waits(HARDENED)
    backoff = _retry_waits(BACKOFF)
    assert len(backoff) * 2 < len(fixed), (len(backoff), len(fixed))
    for k, wait in enumerate(backoff):
        cap = min(max(TIMING.recheck_interval, 8 * TIMING.retry_interval),
                  TIMING.retry_interval * 2 ** k)
        assert 0.0 <= wait <= cap + 1e-9, (k, wait, cap)
    # Full jitter: the waits of many attempts spread over [0, cap), not bunched at the cap.
    firsts = [_retry_waits(BACKOFF, job=f"j{i}")[3] for i in range(60)]
    assert min(firsts) < 2.0 and max(firsts) > 6.0
    assert statistics.mean(firsts) == pytest.approx(4.0, abs=1.2)  # u * min(10, 8)


@pytest.mark.parametrize(("recheck", "retry", "cap"),
                         [(10.0, 1.0, 10.0), (2.0, 1.0, 8.0), (2.0, 0.5, 4.0)],
                         ids=["cap-is-R", "cap-is-8-retries", "cap-is-8-half-second-retries"])
def test_the_backoff_ceiling_stops_growing_at_the_larger_of_r_and_eight_retry_intervals(
        recheck: float, retry: float, cap: float) -> None:
    """The waits of late attempts fill [0, cap) and never pass it, where the cap is
    max(R, 8 retry intervals): R alone or eight intervals alone would change how long an
    outage's retries wait (mutation testing, session 24, found no test pinning it)."""
    policy = dataclasses.replace(BACKOFF, timing=dataclasses.replace(
        TIMING, recheck_interval=recheck, retry_interval=retry))
    late = []
    for i in range(80):
        waits = _retry_waits(policy, job=f"j{i}")
        late += waits[5:-1]  # ceiling min(cap, 2**5 retries) = cap; the last is cut short
    assert len(late) >= 80
    assert max(late) <= cap + 1e-9
    assert max(late) > 0.9 * cap, (max(late), cap)


def test_the_backoff_of_a_very_long_streak_neither_overflows_nor_passes_its_cap():
    """2.0 ** attempt overflows a float past attempt 1023: the exponent is clamped, so a tier
    in trouble for thousands of attempts still gets a wait under the cap."""
    protocol = OwnershipProtocol("j1", me=ME, policy=BACKOFF, tiers=COMMUNITY)
    protocol.start(0.0)
    cap = max(TIMING.recheck_interval, 8 * TIMING.retry_interval)
    assert all(0.0 <= protocol._retry_delay(attempt) <= cap for attempt in (1024, 5000))


def test_backoff_without_retry_after_may_retry_at_once():
    """Full jitter draws from [0, ceiling): with no Retry-After there is no floor, so some
    first retries come almost at once (a floor of one interval would undo the jitter)."""
    firsts = [_retry_waits(BACKOFF, job=f"j{i}")[0] for i in range(40)]
    assert min(firsts) < 0.2 * TIMING.retry_interval, firsts


def test_backoff_is_deterministic_per_attempt_and_differs_between_attempts():
    assert _retry_waits(BACKOFF, "j1", 5.0) == _retry_waits(BACKOFF, "j1", 5.0)
    assert _retry_waits(BACKOFF, "j1", 5.0) != _retry_waits(BACKOFF, "j2", 5.0)
    assert _retry_waits(BACKOFF, "j1", 5.0) != _retry_waits(BACKOFF, "j1", 6.0)


def test_backoff_never_waits_less_than_retry_after_nor_past_the_confirm_deadline():
    def limited(action: Observe, now: float) -> Answer:
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        return TierFailed(action.tier, "429", retry_after=7.0)

    outcome, trace, _ = run(BACKOFF, COMMUNITY, world(observe=limited))
    assert outcome.code == "UNCONFIRMED"
    claim_at = actions(trace, Claim)[0][0]
    deadline = claim_at + 0.1 + TIMING.settle_delay(TIMING.monitor_lag) + TIMING.confirm_timeout
    sleeps = [(t, a) for t, a in actions(trace, Sleep) if t > claim_at + 1]
    assert sleeps
    for t, sleep in sleeps:
        assert sleep.until <= deadline + 1e-9
        assert sleep.until - t >= 7.0 - 1e-9 or sleep.until == pytest.approx(deadline)


def _rechecks_fail(action: Observe, now: float) -> Answer:
    """The job is free before the claim and ours after it, but every re-check read fails."""
    if action.purpose == "pre-claim":
        return seen(action.tier, owner=None, status="queued")
    if action.purpose == "recheck":
        return TierFailed(action.tier, "500")
    return seen(action.tier)


def test_a_proof_read_retry_during_work_backs_off_and_never_sleeps_past_the_lease_end():
    """Gateway pings answered OK wait for a read to prove them; when the reads fail, the
    retries back off, and every wait ends by the lease end, where the work is cancelled."""
    for policy in (HARDENED, BACKOFF):
        outcome, trace, _ = run(policy, COMMUNITY,
                                world(observe=_rechecks_fail, work_ends_at=500))
        assert outcome.code == "LEASE_EXPIRED"
        cancel_at = actions(trace, CancelWork)[0][0]
        started = actions(trace, StartWork)[0][0]
        rechecks = [t for t, a in actions(trace, Observe)
                    if a.purpose == "recheck" and started < t < cancel_at]
        if policy is HARDENED:
            fixed = len(rechecks)
        else:
            assert len(rechecks) * 2 < fixed, (len(rechecks), fixed)
        for t, sleep in actions(trace, Sleep):
            if started <= t < cancel_at:
                assert sleep.until <= cancel_at + 1e-9


def test_backoff_never_stretches_the_recheck_interval():
    """The backoff spaces the *retries* of a proof read, never the re-check every R: with R
    below the backoff's cap (8 retry intervals here), failed proof reads still come at least
    every R, so a loss is still found within R (mutation testing, session 35: the re-check's
    instant replaced by the retry's survived the suites)."""
    timing = dataclasses.replace(TIMING, recheck_interval=2.0)
    policy = dataclasses.replace(BACKOFF, timing=timing)
    outcome, trace, _ = run(policy, COMMUNITY, world(observe=_rechecks_fail, work_ends_at=500))
    assert outcome.code == "LEASE_EXPIRED"
    rechecks = [t for t, a in actions(trace, Observe) if a.purpose == "recheck"]
    gaps = [b - a for a, b in itertools.pairwise(rechecks)]
    assert len(rechecks) >= 10 and max(gaps) <= timing.recheck_interval + 0.1 + 1e-9, gaps


def hinting(respond: Responder, hint: Hinted, at: type) -> Responder:
    """``respond``, except that the first wait after an ``at`` action is answered ``hint``."""
    state = {"armed": False, "sent": False}

    def wrapped(action: Action, now: float) -> Answer:
        state["armed"] = state["armed"] or isinstance(action, at)
        if isinstance(action, Sleep) and state["armed"] and not state["sent"]:
            state["sent"] = True
            return hint
        return respond(action, now)

    return wrapped


def test_a_push_naming_us_during_the_settle_wait_proves_nothing():
    plain = run(HARDENED, COMMUNITY, world(work_ends_at=30))
    pushed = run(HARDENED, COMMUNITY, hinting(world(work_ends_at=30), Hinted(ME, "assigned"),
                                              Claim))
    start = actions(plain[1], StartWork)[0][0]
    # The deciding read still comes after the full settle wait, and work starts no sooner.
    assert actions(pushed[1], StartWork)[0][0] >= start - 0.2
    verify = [t for t, a in actions(pushed[1], Observe) if a.purpose == "verify"]
    claim_at = actions(pushed[1], Claim)[0][0]
    assert verify[0] >= claim_at + TIMING.settle_delay(TIMING.monitor_lag)
    assert pushed[0].kind is OutcomeKind.PROCESSED


@pytest.mark.parametrize("owner", [ME, OTHER], ids=["naming-us", "naming-another"])
@pytest.mark.parametrize("late", [0.0, 0.5], ids=["at-the-settle-end", "after-it"])
def test_a_push_that_ends_the_settle_wait_is_not_a_deciding_read(owner, late):
    """A push delivered as the settle wait's last answer, at or after its end (held behind a
    pause at the await point after it), is still no read: the deciding read comes next. The
    thorough profile found a hardened chain that started work on such a push, with no read
    (two encoders processed one job)."""
    protocol = OwnershipProtocol("j1", me=ME, policy=HARDENED, tiers=COMMUNITY)
    step = protocol.start(0.0)
    assert isinstance(step.action, Observe) and step.action.purpose == "pre-claim"
    step = protocol.handle(seen(Tier.MONITOR, owner=None, status="queued"), 0.1)
    assert isinstance(step.action, Claim)
    step = protocol.handle(WriteAnswered(WriteOutcome.OK), 0.2)
    assert isinstance(step.action, Sleep)
    settle_end = step.action.until
    step = protocol.handle(Hinted(owner, "assigned"), settle_end + late)
    assert isinstance(step.action, Observe) and step.action.purpose == "verify", step.action


def test_a_push_during_work_makes_the_recheck_come_at_once_and_the_read_decides():
    taken = {"now": False}

    def observe(action: Observe, now: float) -> Answer:
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        return seen(action.tier, owner=OTHER if taken["now"] else ME)

    base = world(observe=observe, work_ends_at=500)

    def respond(action: Action, now: float) -> Answer:
        if isinstance(action, Sleep) and started and not taken["now"]:
            taken["now"] = True  # the gateway reassigned it; the push says so
            return Hinted(OTHER, "assigned")
        if isinstance(action, StartWork):
            started.append(now)
        return base(action, now)

    started: list[float] = []
    outcome, trace, _ = run(HARDENED, COMMUNITY, respond)
    assert outcome.kind is OutcomeKind.CANCELLED and outcome.code == "MONITOR_THEFT_DETECTED"
    cancel_at = actions(trace, CancelWork)[0][0]
    # Detected at the push (a read at once), not at the next tick R later.
    assert cancel_at - started[0] < 1.0 < TIMING.recheck_interval


def test_a_push_saying_we_lost_it_is_not_believed_without_a_read():
    outcome, _trace, _ = run(HARDENED, COMMUNITY, hinting(
        world(work_ends_at=30), Hinted(OTHER, "assigned"), StartWork))
    assert outcome.kind is OutcomeKind.PROCESSED  # every read still says ours


def test_screening_keeps_only_what_a_batch_can_say():
    out = screened(Tier.MONITOR, ["a", "b", "c", "d", "e"],
                   {"a": "queued", "b": "assigned", "c": "complete", "x": "queued"})
    assert sorted(out) == ["a", "c"]  # "b" may be ours; "d", "e" missing: unknown
    assert out["a"].job is not None and out["a"].job.assigned_to is None
    assert out["a"].tier is Tier.MONITOR and out["c"].status == "complete"
    assert screened(Tier.MONITOR, ["a"], {}) == {}, "the gateway-down answer says nothing"


def test_a_batch_answer_with_nothing_an_entry_may_say_is_listed_for_forgetting():
    """``unusable_answers``: what both drivers forget from their caches after a batch. An id
    answered as held (the holder may be us) is listed, one the answer leaves out (unknown)
    or one it gives an entry is not."""
    asked = ["a", "b", "c", "d", "e"]
    answer = {"a": "queued", "b": "assigned", "c": "complete", "e": "running", "x": "assigned"}
    entries = screened(Tier.MONITOR, asked, answer)
    assert unusable_answers(asked, answer, entries) == ["b", "e"]
    assert unusable_answers(asked, {}, {}) == [], "the gateway-down answer outdates nothing"


def test_a_screened_or_cached_answer_is_an_ordinary_pre_claim_answer():
    """What the cache hands the protocol is an Observed like any other: a screened
    'complete' skips the job without a claim."""
    def observe(action: Observe, now: float) -> Answer:
        if action.purpose == "pre-claim":
            return Observed(screened(Tier.MONITOR, ["j1"], {"j1": "complete"})["j1"])
        return seen(action.tier)

    outcome, trace, _ = run(CACHED, COMMUNITY, world(observe=observe))
    assert outcome.kind is OutcomeKind.SKIPPED and not actions(trace, Claim)


def test_after_a_push_reads_come_again_soon_while_the_tier_may_still_lag_the_change():
    """The monitor lags (up to Δ): the read right after a push may not show the change yet.
    The protocol reads again, soon at first (an eighth of the retry interval, doubling),
    until Δ has passed, not R later."""
    state: dict[str, float] = {}

    def observe(action: Observe, now: float) -> Answer:
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        shows_loss = "hint" in state and now >= state["hint"] + 2.5  # the lag of this change
        return seen(action.tier, owner=OTHER if shows_loss else ME)

    base = world(observe=observe, work_ends_at=500)

    def respond(action: Action, now: float) -> Answer:
        if isinstance(action, StartWork):
            state["started"] = now
        if isinstance(action, Sleep) and "started" in state and "hint" not in state:
            state["hint"] = now
            return Hinted(OTHER, "assigned")
        return base(action, now)

    outcome, trace, _ = run(HARDENED, COMMUNITY, respond)
    assert outcome.code == "MONITOR_THEFT_DETECTED"
    cancel_at = actions(trace, CancelWork)[0][0]
    # Found by the chase (it ends Δ after the push), long before the next tick R later.
    assert state["hint"] + 2.5 <= cancel_at <= state["hint"] + TIMING.monitor_lag + 0.3
    assert cancel_at < state["hint"] + TIMING.recheck_interval
    chased = [t for t, a in actions(trace, Observe)
              if a.purpose == "recheck" and state["hint"] <= t < cancel_at]
    assert 4 <= len(chased) <= 7, chased  # at once, then 1/8, 1/4, 1/2, 1, 2 s later


def test_a_push_that_says_the_job_is_still_ours_costs_no_read():
    plain = run(HARDENED, COMMUNITY, world(work_ends_at=30))
    pushed = run(HARDENED, COMMUNITY, hinting(world(work_ends_at=30), Hinted(ME, "running"),
                                              StartWork))
    assert len(actions(pushed[1], Observe)) == len(actions(plain[1], Observe))


def test_pushes_merged_into_one_hint_bring_a_read_unless_they_agree() -> None:
    """A driver delivers the pushes of one wait as one hint (:meth:`Hinted.merged`): "taken"
    then "ours again" must still bring the read the first called for (an emptied hint), and a
    flood of identical pushes costs what one does."""
    taken, ours = Hinted(OTHER, "assigned"), Hinted(ME, "running")
    assert taken.merged(ours, ME) == Hinted() and ours.merged(taken, ME) == Hinted()
    assert ours.merged(ours, ME) == ours and Hinted().merged(ours, ME) == Hinted()
    plain = run(HARDENED, COMMUNITY, world(work_ends_at=30))
    merged = run(HARDENED, COMMUNITY, hinting(world(work_ends_at=30), taken.merged(ours, ME),
                                              StartWork))
    assert len(actions(merged[1], Observe)) > len(actions(plain[1], Observe))
    # Two pushes that both say "ours" agree, whatever their raw values: no read, no chase.
    spelled = "did:" + ME.removeprefix("did:key:")
    for earlier in (Hinted(ME, "assigned"), Hinted(spelled, "running")):
        assert earlier.merged(ours, ME) == ours
    both_ours = run(HARDENED, COMMUNITY, hinting(
        world(work_ends_at=30), Hinted(ME, "assigned").merged(ours, ME), StartWork))
    assert len(actions(both_ours[1], Observe)) == len(actions(plain[1], Observe))


def test_pushes_alone_never_bring_two_reads_closer_than_the_retry_interval():
    """A flood of pushes, each answering a wait at once, is one read per retry interval."""
    state = {"hints": 0}
    base = world(work_ends_at=30)

    def respond(action: Action, now: float) -> Answer:
        started = any(isinstance(a, StartWork) for a in seen_actions)
        if isinstance(action, Sleep) and started and state["hints"] < 200:
            state["hints"] += 1
            return Hinted(OTHER, "assigned")
        seen_actions.append(action)
        return base(action, now)

    seen_actions: list[Action] = []
    outcome, trace, _ = run(HARDENED, INFRA, respond)
    assert outcome.kind is OutcomeKind.PROCESSED and state["hints"] == 200
    reads = [t for t, a in actions(trace, Observe) if a.purpose == "recheck"]
    gaps = [b - a for a, b in itertools.pairwise(reads)]
    assert min(gaps) >= TIMING.retry_interval - 1e-9, gaps


def _flooding(respond: Responder, hint: Hinted, after: type, *, until: float) -> Responder:
    """``respond``, except that every wait after an ``after`` action, up to ``until``, is
    answered ``hint`` (the test driver moves the clock 0.1 s: a push every 0.1 s)."""
    state = {"armed": False}

    def wrapped(action: Action, now: float) -> Answer:
        state["armed"] = state["armed"] or isinstance(action, after)
        if isinstance(action, Sleep) and state["armed"] and now < until:
            return hint
        return respond(action, now)

    return wrapped


def _flooded_run(policy: Policy, respond: Responder):
    protocol = OwnershipProtocol("j1", me=ME, policy=policy, tiers=COMMUNITY)
    trace, _ = drive(protocol, respond, max_steps=20_000)
    assert protocol.outcome is not None
    return protocol.outcome, trace


def _never_shows(action: Observe, now: float) -> Answer:
    return seen(action.tier, owner=None, status="queued")  # our claim never shows


def _flooded_verify_gaps(policy: Policy) -> list[float]:
    """The gaps between the verify reads of a run whose claim never shows, every wait after
    the claim answered by a push saying the job was taken."""
    outcome, trace = _flooded_run(policy, _flooding(
        world(observe=_never_shows), Hinted(OTHER, "assigned"), Claim, until=1e9))
    assert outcome.code == "UNCONFIRMED"
    reads = [t for t, a in actions(trace, Observe) if a.purpose == "verify"]
    return [b - a for a, b in itertools.pairwise(reads)]


def test_a_flood_of_pushes_while_verifying_is_one_read_per_retry_interval():
    """Found by an adversarial review (2026-12-03): every push ended the verify step's retry
    wait, one read per push. A push brings the read forward, to no sooner than the retry
    interval after the last read."""
    gaps = _flooded_verify_gaps(HARDENED)
    # (The last read comes at the confirm deadline, whatever the interval.)
    assert len(gaps) >= 9 and min(gaps[:-1]) >= TIMING.retry_interval - 1e-9, gaps
    # ... and sooner than without pushes: they do bring the read forward.
    plain = _flooded_run(dataclasses.replace(HARDENED, backoff=True), world(observe=_never_shows))
    pushed = _flooded_run(BACKOFF, _flooding(world(observe=_never_shows),
                                             Hinted(OTHER, "assigned"), Claim, until=1e9))
    count = [len([1 for _, a in actions(r[1], Observe) if a.purpose == "verify"])
             for r in (plain, pushed)]
    assert count[1] > count[0], count


def test_a_flood_of_pushes_during_work_does_not_restart_the_chase():
    """Found by an adversarial review (2026-12-03): each push restarted the chase at an
    eighth of the retry interval, so a steady stream of pushes read eight times a retry
    interval. A chase under way goes on backing off."""
    flood_ends = 45.0  # pushes every 0.1 s from the start of work until then
    outcome, trace = _flooded_run(HARDENED, _flooding(
        world(work_ends_at=60), Hinted(OTHER, "assigned"), StartWork, until=flood_ends))
    assert outcome.kind is OutcomeKind.PROCESSED
    start = actions(trace, StartWork)[0][0]
    reads = [t for t, a in actions(trace, Observe)
             if a.purpose == "recheck" and t < flood_ends]
    # At most one read per retry interval, plus the chase's first steps below it.
    assert len(reads) <= (flood_ends - start) / TIMING.retry_interval + 4, (reads, start)


@pytest.mark.parametrize("policy", [HARDENED, BACKOFF], ids=["fixed", "backoff"])
def test_a_proof_read_retry_during_work_honours_retry_after(policy: Policy):
    """Found by an adversarial review (2026-12-03): a re-check answered 429 dropped its
    ``Retry-After``, so the reads that prove gateway pings retried sooner than the tier
    asked. They wait for it, clamped to the next regular re-check (and the lease end)."""
    retry_after = 4.0

    def observe(action: Observe, now: float) -> Answer:
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        if action.purpose == "recheck":
            return TierFailed(action.tier, "429", retry_after=retry_after)
        return seen(action.tier)

    _, trace = _flooded_run(policy, world(observe=observe, work_ends_at=200))
    reads = [t for t, a in actions(trace, Observe) if a.purpose == "recheck"]
    gaps = [b - a for a, b in itertools.pairwise(reads)]
    assert len(reads) >= 3 and min(gaps) >= retry_after - 0.2 - 1e-9, gaps


def _rate_limited(purposes: tuple[str, ...], retry_after: float):
    def observe(action: Observe, now: float) -> Answer:
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        if action.purpose in purposes:
            return TierFailed(action.tier, "HTTP 429", retry_after=retry_after)
        return seen(action.tier)

    return observe


def test_a_push_while_verifying_does_not_bring_a_read_inside_retry_after():
    """Found by a second review (2026-12-03): a push brought the read forward to the retry
    interval after the last one, inside the tier's Retry-After."""
    retry_after = 10.0
    outcome, trace = _flooded_run(HARDENED, _flooding(
        world(observe=_rate_limited(("verify",), retry_after)), Hinted(OTHER, "assigned"),
        Claim, until=1e9))
    assert outcome.code == "UNCONFIRMED"
    reads = [t for t, a in actions(trace, Observe) if a.purpose == "verify"]
    gaps = [b - a for a, b in itertools.pairwise(reads)]
    assert len(reads) >= 3 and min(gaps[:-1]) >= retry_after - 1e-9, gaps


def test_the_chase_after_a_push_during_work_honours_retry_after():
    """Found by a second review (2026-12-03): after a push, the chase re-read a rate-limited
    tier at 0.2, 0.35, 0.6 s... The regular re-check at R still comes (the lease needs it)."""
    retry_after = 10.0  # = R in these tests
    _, trace = _flooded_run(HARDENED, hinting(
        world(observe=_rate_limited(("recheck",), retry_after), work_ends_at=40),
        Hinted(OTHER, "assigned"), StartWork))
    reads = [t for t, a in actions(trace, Observe) if a.purpose == "recheck"]
    gaps = [b - a for a, b in itertools.pairwise(reads)]
    assert len(reads) >= 2 and min(gaps) >= retry_after - 0.2 - 1e-9, gaps


def test_without_a_hint_a_push_brings_a_verify_read_to_one_retry_interval_after_the_last():
    """Under a flood of pushes while verifying (backoff on, its waits long), with no
    ``Retry-After``, each read comes one retry interval after the one before, to within the
    test driver's 0.1 s steps: a push's floor is the retry interval from the last read, not a
    fixed second from the push (mutation testing, session 35: ``hint or 0.0`` as ``hint or
    1.0`` survived, the suites' retry interval being 1 s)."""
    fast = dataclasses.replace(BACKOFF, timing=dataclasses.replace(TIMING, retry_interval=0.2))
    gaps = _flooded_verify_gaps(fast)
    assert len(gaps) >= 19 and max(gaps[:-1]) <= 0.2 + 0.2 + 1e-9, gaps


def test_a_push_brings_a_verify_read_forward_never_later_than_its_retry_delay():
    """Under backoff a retry may be due sooner than the retry interval after the last read
    (full jitter): a push that arrives then must not push the read out to that interval.
    Each read comes by the end of the first wait planned after the read before it, however
    many pushes arrive meanwhile (mutation testing, session 24: ``min(until, earliest)``
    taken as ``earliest`` survived every test)."""
    def observe(action: Observe, now: float) -> Answer:
        return seen(action.tier, owner=None, status="queued")  # our claim never shows

    for i in range(20):
        protocol = OwnershipProtocol(f"j{i}", me=ME, policy=BACKOFF, tiers=COMMUNITY)
        respond = _flooding(world(observe=observe), Hinted(OTHER, "assigned"), Claim,
                            until=1e9)
        trace, _ = drive(protocol, respond, max_steps=20_000)
        planned: float | None = None
        for t, action in trace:
            if isinstance(action, Observe) and action.purpose == "verify":
                if planned is not None:
                    assert t <= planned + 0.1 + 1e-9, (i, t, planned)
                planned = None
            elif isinstance(action, Sleep) and planned is None:
                planned = action.until  # the wait as planned, before any push


def test_finish_is_tried_three_times_with_retries_and_once_without():
    """An unanswered finish is sent again, three finishes in all, then the outcome is
    unknown; a chain without retries sends one (mutation testing, session 24: the counts
    could change unnoticed)."""
    unanswered = [WriteOutcome.UNKNOWN] * 4 + [WriteOutcome.OK]
    outcome, trace, _ = run(HARDENED, COMMUNITY, world(finish=list(unanswered)))
    assert (outcome.code, len(actions(trace, Finish))) == ("FINISH_UNKNOWN", 3)
    no_retries = dataclasses.replace(HARDENED, verify_retries=False)
    outcome, trace, _ = run(no_retries, COMMUNITY, world(finish=list(unanswered)))
    assert (outcome.code, len(actions(trace, Finish))) == ("FINISH_UNKNOWN", 1)


def test_finish_retries_back_off_from_one_retry_interval():
    """The k-th finish retry draws its wait from [0, retry_interval * 2**(k-1)): the first
    under one interval, the second under two, each filling its range over many jobs."""
    first: list[float] = []
    second: list[float] = []
    for i in range(60):
        protocol = OwnershipProtocol(f"j{i}", me=ME, policy=BACKOFF, tiers=COMMUNITY)
        trace, _ = drive(protocol, world(finish=[WriteOutcome.UNKNOWN] * 3))
        sent = [t for t, _ in actions(trace, Finish)]
        assert len(sent) == 3
        first.append(sent[1] - sent[0] - 0.1)
        second.append(sent[2] - sent[1] - 0.1)
    interval = TIMING.retry_interval
    assert 0.9 * interval < max(first) <= interval + 1e-9, max(first)
    assert 1.8 * interval < max(second) <= 2 * interval + 1e-9, max(second)


# ---- Retry-After past the run (Outcome.retry_until): decided by the protocol, once, so the
# asyncio guard and the simulator's encoders hand the encoder loop the same instant.


def _pre_claim_rate_limited(retry_after: float | None):
    def observe(action: Observe, now: float) -> Answer:
        return TierFailed(action.tier, "HTTP 429", retry_after=retry_after)

    return observe


def test_a_run_ends_carrying_the_retry_after_a_tier_gave():
    outcome, trace, _ = run(HARDENED, COMMUNITY, world(observe=_pre_claim_rate_limited(45.0)))
    assert outcome.code == "PRE_CLAIM_FAILED"
    answered = actions(trace, Observe)[0][0] + 0.1  # the driver answers 0.1 s after a request
    assert outcome.retry_until == pytest.approx(answered + 45.0)


@pytest.mark.parametrize("hint", [None, 0.0, -5.0, float("nan"), float("inf")])
def test_a_retry_after_that_is_no_wait_is_not_carried(hint):
    """The header is a server's (untrusted): only a positive, finite wait is one."""
    outcome, _, _ = run(HARDENED, COMMUNITY, world(observe=_pre_claim_rate_limited(hint)))
    assert outcome.code == "PRE_CLAIM_FAILED" and outcome.retry_until is None


def _claim_then_verify_rate_limited(claim_hint: float, verify_hint: float):
    """A run whose claim and every verify read are answered 429 with these hints."""
    def respond(action: Action, now: float) -> Answer:
        if isinstance(action, Claim):
            return WriteAnswered(WriteOutcome.UNKNOWN, detail="HTTP 429",
                                 retry_after=claim_hint)
        if isinstance(action, Observe) and action.purpose == "verify":
            return TierFailed(action.tier, "HTTP 429", retry_after=verify_hint)
        return world()(action, now)

    return run(HARDENED, COMMUNITY, respond)


def test_a_rate_limited_write_carries_its_retry_after_and_the_latest_hint_wins():
    """A claim answered 429 is an unknown write (it may have landed: verified as any other),
    and its Retry-After outlives the run; a shorter, later hint does not shorten it."""
    outcome, trace, _ = _claim_then_verify_rate_limited(300.0, 1.0)
    claimed = actions(trace, Claim)[0][0] + 0.1
    assert outcome.kind is not OutcomeKind.PROCESSED
    assert outcome.retry_until == pytest.approx(claimed + 300.0)


def test_a_retry_after_that_ran_out_during_the_run_is_not_carried():
    """A hint given early in a run that then worked for a minute has run out by its end."""
    asked = {"n": 0}

    def observe_once(action: Observe, now: float) -> Answer:
        if action.purpose == "verify" and not asked["n"]:
            asked["n"] += 1
            return TierFailed(action.tier, "HTTP 429", retry_after=0.5)
        if action.purpose == "pre-claim":
            return seen(action.tier, owner=None, status="queued")
        return seen(action.tier)

    outcome, _, _ = run(HARDENED, COMMUNITY, world(observe=observe_once, work_ends_at=60))
    assert outcome.kind is OutcomeKind.PROCESSED and outcome.retry_until is None


def test_a_hint_is_honoured_at_most_the_cap_from_when_it_was_told():
    """An absurd Retry-After is capped where it is told: counted from the end of the run
    instead, one told early in a long job held the loop the whole cap after it (an
    adversarial review, session 30)."""
    outcome, trace, _ = run(HARDENED, COMMUNITY, world(observe=_pre_claim_rate_limited(1e5)))
    answered = actions(trace, Observe)[0][0] + 0.1
    assert outcome.retry_until == pytest.approx(answered + MAX_RETRY_AFTER_S)


def test_the_hint_that_reaches_furthest_wins_whichever_came_first():
    """A short hint first (the claim's), then longer ones (the verify reads'): the run ends
    carrying the latest instant any of them asked for, not the first one told."""
    outcome, trace, _ = _claim_then_verify_rate_limited(10.0, 300.0)
    last_verify = max(t for t, a in actions(trace, Observe) if a.purpose == "verify") + 0.1
    assert outcome.retry_until == pytest.approx(last_verify + 300.0)


# ---- found by mutation testing of the protocol's clock and Retry-After (session 31): each
# test fails on the mutant named in its docstring


def test_a_wake_reported_late_counts_from_the_drivers_clock_not_the_deadline():
    """``Woke`` is clamped *up* to the deadline (a driver a hair early), never down: a wake
    reported long after it (a pause, a stalled event loop) is judged at the driver's time.
    Past the lease end, the work is cancelled at once: no read or ping first on a clock
    that stands at the deadline. Mutant ``510:19 max->arg1`` (``now = until``) sent a
    recheck read after the lease had ended, and cancelled only at the answer after it."""
    protocol = OwnershipProtocol("j1", me=ME, policy=HARDENED, tiers=COMMUNITY)
    respond = world(work_ends_at=1000)
    late = 2 * TIMING.reassign_timeout  # long past any lease the run could hold
    now, step, started, after_wake = 0.0, protocol.start(0.0), False, None
    for _ in range(100):
        action = step.action
        if after_wake is not None:
            after_wake.append(action)
        if isinstance(action, Done):
            break
        answer = respond(action, now)
        if isinstance(action, StartWork):
            started = True
        if isinstance(action, Sleep) and started and after_wake is None:
            assert isinstance(answer, Woke)
            now = action.until + late  # the first wait of the work, woken late
            after_wake = []
        elif isinstance(action, Sleep) and isinstance(answer, Woke):
            now = max(now, action.until)
        else:
            now += 0.1
        step = protocol.handle(answer, now)
    assert after_wake is not None and isinstance(after_wake[0], CancelWork), after_wake
    assert not [a for a in after_wake if isinstance(a, Observe | Heartbeat)], after_wake
    assert protocol.outcome is not None and protocol.outcome.code == "LEASE_EXPIRED"


@pytest.mark.parametrize("hint", [0.5, 1.0])
def test_a_retry_after_of_a_second_or_less_is_carried(hint):
    """Any positive finite wait is one (a Retry-After header counts whole seconds: 1 is the
    shortest a server sends). Mutant ``1 < hint`` in ``handle`` dropped both."""
    outcome, trace, _ = run(HARDENED, COMMUNITY, world(observe=_pre_claim_rate_limited(hint)))
    assert outcome.code == "PRE_CLAIM_FAILED"
    answered = actions(trace, Observe)[0][0] + 0.1  # the driver answers 0.1 s after a request
    assert outcome.retry_until == pytest.approx(answered + hint)


def test_a_retry_after_that_runs_out_exactly_as_the_run_ends_is_not_carried():
    """``Outcome.retry_until`` is a Retry-After *still to come* when the run ends: one that
    ends at that very instant is not (the claim's 429 at 1.0 asked for 40 s; the run ends at
    41.0). Mutant ``>=`` in ``_advance`` carried ``retry_until=41.0``."""
    protocol = OwnershipProtocol("j1", me=ME, policy=HARDENED, tiers=COMMUNITY)
    step = protocol.start(0.0)
    assert isinstance(step.action, Observe) and step.action.purpose == "pre-claim"
    step = protocol.handle(seen(step.action.tier, owner=None, status="queued"), 0.5)
    assert isinstance(step.action, Claim)
    step = protocol.handle(
        WriteAnswered(WriteOutcome.UNKNOWN, detail="HTTP 429", retry_after=40.0), 1.0)
    for _ in range(20):
        action = step.action
        if isinstance(action, Done):
            break
        if isinstance(action, Sleep):  # the settle wait
            step = protocol.handle(Woke(), action.until)
        else:
            assert isinstance(action, Observe) and action.purpose == "verify", action
            step = protocol.handle(seen(action.tier, owner=OTHER), 41.0)  # taken: the end
    outcome = protocol.outcome
    assert outcome is not None and outcome.kind is OutcomeKind.SKIPPED, outcome
    assert outcome.retry_until is None, outcome


def test_a_push_while_verifying_brings_no_read_inside_retry_after_from_when_it_was_told():
    """The deciding read is answered 429 "come back in 10 s", slowly (3 s after it was
    decided). A push then brings the next read forward, but never sooner than the tier's
    Retry-After from when it was *told* (the answer), as the run's ``retry_until`` and the
    work loop's ``not_before`` count it. Counted from the read's decision, the read came 3 s
    inside the Retry-After (an adversarial review of the protocol's instants, session 31)."""
    retry_after, reply = 10.0, 3.0
    protocol = OwnershipProtocol("j1", me=ME, policy=HARDENED, tiers=COMMUNITY)
    now = 0.0
    step = protocol.start(now)
    told: float | None = None
    reads: list[float] = []
    pushed = False
    for _ in range(200):
        action = step.action
        if isinstance(action, Done):
            break
        if isinstance(action, Observe) and action.purpose == "pre-claim":
            answer = seen(action.tier, owner=None, status="queued")
            now += 0.1
        elif isinstance(action, Claim):
            answer = WriteAnswered(WriteOutcome.OK)
            now += 0.1
        elif isinstance(action, Observe):
            reads.append(now)
            if told is None:
                answer = TierFailed(action.tier, "HTTP 429", retry_after=retry_after)
                now += reply  # a slow 429
                told = now
            else:
                break  # the second read: its instant is what the test judges
        elif isinstance(action, Sleep):
            if told is not None and not pushed:
                pushed = True
                answer = Hinted(OTHER, "assigned")  # the job may have changed: read soon
                now += 0.1
            else:
                answer = Woke()
                now = max(now, action.until)
        else:
            raise AssertionError(action)
        step = protocol.handle(answer, now)
    assert told is not None and len(reads) == 2, reads
    assert reads[1] >= told + retry_after - 1e-9, (
        f"read at {reads[1]:.3f}, {reads[1] - told:.3f} s after the 429 told it to wait "
        f"{retry_after} s")

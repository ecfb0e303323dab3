"""Teeth, measured: each wrong belief and each hardening step switched off is caught, at a rate.

``test_quality.py`` proves that the suites can catch the canaries of ``docs/safety-model.md``
on one derandomized search path. A search that succeeds on one path is luck: this suite runs
each search under independent search seeds and reports how often it succeeds within its
budget, and fails below the stated rate, whatever else is collected (every search has its own
seed, none depends on collection order).

What is searched, for each *tooth*:

* a **misbelief**: the hardened chain told a timing model smaller than the world's (one bound
  misbelieved, or one term of the settle or lease formula dropped: :mod:`conformance.canaries`);
* a **hardening step switched off** (``hardened-without-<step>``);
* a **term of L1's time bound** dropped (``Tooth.bound``): the hardened chain is then judged by
  a bound too short for it, and caught where the true bound holds on the same run. A bound
  that is too short fails a correct chain, so its terms need teeth as the chain's do.

A tooth is caught when a world is found where it violates a property that the hardened chain,
with the world's true timing model, keeps on the very same world. Each search runs in a
*family* of worlds that reaches the edge its formula term guards (``FAMILIES``): the settle
terms are reached by double hand-outs whose writes land at G and a monitor lagging exactly Δ;
the lease terms by pings that never land, a gateway that reassigns exactly at T and hands the
job at once to an idle encoder, pauses of exactly P and cancellations taking exactly C. The
families are the general generator (:func:`conformance.worlds.worlds`) with some levels pinned,
not different code. The lease family's teeth are judged on the lease itself too (property
``lease``: the owner still processing when the gateway reassigns the job by timeout), the
liveness family's on L1 with its time bound (:func:`sim.l1_bound`).

``python -m pytest conformance/test_teeth.py -s`` prints the table of rates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

from conformance.canaries import (
    MISBELIEFS,
    BackoffPastLease,
    BatchMissingAsAvailable,
    CachedRecheck,
    DawdlesBeforeClaim,
    DawdlesBeforeTouching,
    DawdlesBriefly,
    FailsAfterStandIn,
    FallbackSettleWithoutLag,
    FinishesFailedWork,
    FinishPastLease,
    FinishWithoutSendBy,
    HeartbeatWithoutDeadline,
    IdleWaitPastItsCap,
    LatePushEndsSettle,
    LossNotGivenBack,
    NeverRetries,
    NoSettleAfterConditionalClaim,
    OlderAssignmentConfirms,
    ProgressFromOnePing,
    ProgressWithoutStartMarker,
    PushAsProof,
    RecheckWithoutDeadline,
    RejectsAfterStandIn,
    ReleaseBeforeStop,
    RetryAfterUncapped,
    ShortSettleAfterUnknownClaim,
    ShutdownWithoutReask,
    WalksAwayAfterStandIn,
    proof_from_the_decision,
)
from conformance.families import FAMILIES, NO_TIMELY_LIVENESS
from conformance.worlds import Race, World, aim, l1_horizon, race, worlds
from sim import L1Bound, Scenario, l1_bound
from verifier import Policy


@dataclass(frozen=True)
class Tooth:
    name: str
    family: str
    budget: int  # examples per search (generation and targeting)
    #: The rate to reach: caught in at least ``need`` of ``SEEDS`` independent searches.
    need: int
    policy: Callable[[World], Policy | None] = lambda world: None
    protocol: Any = None
    properties: tuple[str, ...] = ("S1", "S2")
    #: A weakened term of L1's time bound instead of a weakened chain: the hardened chain is
    #: caught by L1 judged with this bound where, on the same run, the true bound holds.
    bound: Callable[[Scenario], L1Bound] | None = None
    #: A weakened encoder loop (a variant of :class:`verifier.PollSchedule`) instead.
    schedule: Any = None


def _misbelief(name: str) -> Callable[[World], Policy]:
    (m,) = [m for m in MISBELIEFS if m.name == name]
    return lambda world: m.policy(world.scenario.timing_model())


def _without(step: str) -> Callable[[World], Policy]:
    return lambda world: Policy.hardened(world.scenario.timing_model()).without(step)


#: What the lease family's teeth break: S1/S2 through a successor, or the lease itself.
LEASE = ("S1", "S2", "lease")

#: Independent search seeds per tooth.
SEEDS = 20

#: Budgets are about twice the most examples any of 5 trial searches needed (2026-12-01), at
#: least 20; on 2026-12-04, when the searches stopped counting the family's simplest world
#: (which catches half the teeth: :func:`examples_to_catch`), every tooth was re-measured over
#: its 20 searches and five budgets raised to keep twice the most needed. The
#: old settle rule (finding 1) is not here: its search succeeds in 14 of 20 searches of 1,000
#: examples, too rare for a rate gate; ``test_regressions.py`` replays its frozen schedule.
TEETH = [
    # the settle formula, each term and the instant it is measured from
    Tooth("believes-Δ-smaller", "settle", 250, 19, _misbelief("believes-Δ-smaller")),
    Tooth("believes-G-smaller", "settle", 200, 19, _misbelief("believes-G-smaller")),
    # ... two of them in a family of their own, where the term is the whole edge: searched
    # in the settle family, the ε term needed up to 357 examples and the G term up to 278
    # (2026-12-04). Budgets measured there, over the 20 searches: the most needed was 115
    # (ε) and 26 (G); a search's path depends on its budget, and 60 for the G term lost two
    # of the 20 searches, so 100
    Tooth("settle-without-a-G", "settle-G", 100, 19, _misbelief("settle-without-a-G")),
    Tooth("settle-without-ε", "settle-ε", 250, 19, _misbelief("settle-without-ε")),
    # (its most needed went 166 -> 263 of 300 when the ping proof began counting from the
    # ping's answer too, session 31: the budget raised to keep about twice that)
    Tooth("settle-without-lag", "settle", 550, 19, _misbelief("settle-without-lag")),
    # ... and after a database claim, which the gateway's check-then-act accept overwrites as
    # readily as its own (2026-12-04: no world raced the two before, and the shortcut of
    # skipping the settle after an atomic claim passed every suite). Its formula there has a
    # G to spare (a database write lands before its answer), so of its terms only G, believed
    # a quarter of itself, falls short.
    Tooth("settle-skipped-after-a-database-claim", "settle-database", 90, 19,
          protocol=NoSettleAfterConditionalClaim),
    Tooth("believes-G-smaller-after-a-database-claim", "settle-database", 160, 19,
          _misbelief("believes-G-smaller")),
    Tooth("settle-skipped-after-an-aid-claim", "settle-aid", 120, 19,
          protocol=NoSettleAfterConditionalClaim),
    # every request during work carries the lease end as its deadline: re-check reads, and
    # database and aid heartbeats, in worlds where requests hang until their clients give up
    # (a helper's mutants, 2026-12-04: the world never let a read hang)
    Tooth("recheck-without-the-deadline", "hang", 100, 19, protocol=RecheckWithoutDeadline,
          properties=LEASE),
    Tooth("database-heartbeat-without-the-deadline", "hang-database", 240, 19,
          protocol=HeartbeatWithoutDeadline, properties=LEASE),
    Tooth("aid-heartbeat-without-the-deadline", "hang-aid", 20, 19,
          protocol=HeartbeatWithoutDeadline, properties=LEASE),
    # the settle's third G after a database claim answered "unknown", whose write the
    # server may still apply up to G after it was sent (a helper's mutants, 2026-12-04; the
    # world applied such writes when served until then; the most needed 167; 916 of 1,000 in
    # session 30, after the loop's holds were kept: raised to twice that)
    Tooth("short-settle-after-an-unknown-claim", "settle-unknown", 1800, 19,
          protocol=ShortSettleAfterUnknownClaim),
    # the monitor's fallback after a failed database read, settled as the database's (a
    # helper's mutant, 2026-12-04: no shipped family reached it; the most needed 253; 449 of
    # 600 in session 30: raised to twice that)
    Tooth("fallback-settle-without-lag", "settle-fallback", 900, 19,
          protocol=FallbackSettleWithoutLag),
    # the lease formula, judged directly too: the owner's work must be stopped before the
    # gateway reassigns the job by timeout ("lease"), not only through a successor's overlap
    # (S2), whose own settle of at least ε hid a lease ending up to ε late. Budgets re-measured
    # with the lease property (2026-12-02): about twice the most examples needed, at least 20.
    Tooth("believes-T-larger", "lease", 20, 19, _misbelief("believes-T-larger"),
          properties=LEASE),
    Tooth("believes-C-smaller", "lease", 20, 19, _misbelief("believes-C-smaller"),
          properties=LEASE),
    Tooth("believes-P-smaller", "lease", 100, 19, _misbelief("believes-P-smaller"),
          properties=LEASE),
    Tooth("believes-ε-smaller", "lease", 200, 19, _misbelief("believes-ε-smaller"),
          properties=LEASE),
    Tooth("lease-without-ε", "lease", 200, 19, _misbelief("lease-without-ε"),
          properties=LEASE),
    Tooth("lease-without-P", "lease", 100, 19, _misbelief("lease-without-P"),
          properties=LEASE),
    Tooth("lease-without-C", "lease", 20, 19, _misbelief("lease-without-C"),
          properties=LEASE),
    # the proof of a gateway ping: a read that does not wait the ping's G counts a ping that
    # landed after the gateway had requeued the job (its lag and P terms are covered by the
    # lease margin inside the model: docs/safety-model.md). Its family pins R so that one
    # lost ping then one landing exactly G late is the edge (2026-12-04: at most 9 examples,
    # against up to 1,169 of a budget of 2,000 before)
    Tooth("proof-without-G", "proof", 30, 19, _misbelief("proof-without-G"),
          properties=LEASE),
    # ... and the instant it counts from: the ping's decision alone, as if it had left within
    # P of it; one that waited seconds for its connection left later (session 31)
    Tooth("proof-from-the-decision", "proof-connect", 300, 19,
          lambda world: Policy.hardened(proof_from_the_decision(world.scenario.timing_model())),
          properties=LEASE),
    # the no-progress rule (N): a lease that only pings renew is caught
    Tooth("believes-N-larger", "progress", 200, 19, _misbelief("believes-N-larger"),
          properties=LEASE),
    # ... and its margin's drift over N, not one T (a helper's mutants, 2026-12-04: caught in 4
    # of 150 progress-family worlds, with no tooth of its own)
    Tooth("progress-margin-with-flat-ε", "progress-ε", 20, 19,
          _misbelief("progress-margin-with-flat-ε"), properties=LEASE),
    # hardening steps, inside the model (the others: test_quality.py, test_stateful.py)
    Tooth("hardened-without-lease", "lease", 20, 19, _without("lease"), properties=LEASE),
    Tooth("hardened-without-cancel", "lease", 20, 19, _without("cancel"), properties=LEASE),
    Tooth("hardened-without-conditional-claim", "database", 1600, 19,
          _without("conditional-claim")),
    Tooth("hardened-without-fence", "database", 300, 19, _without("fence"), properties=("S3",)),
    # A claim whose reply was lost and that never landed reads back as "no owner": taken as
    # "mine" without the step, while the gateway hands the job to the other encoder.
    Tooth("hardened-without-absent-is-wait", "congested", 500, 19, _without("absent-is-wait")),
    # the order of a graceful shutdown: stop the work, then give the job back
    Tooth("shutdown-releases-before-stop", "shutdown", 20, 19, protocol=ReleaseBeforeStop),
    # ... and a give-back refused while the claim's write may still be landing, taken at its
    # word: the run says nothing is held, then the accept lands (session 21's fix, which no
    # suite judged before: the run's report is held against the gateway's timeouts)
    Tooth("shutdown-trusts-an-early-refusal", "give-back", 20, 19,
          protocol=ShutdownWithoutReask, properties=("give-back",)),
    # ... and a job read as lost during work, cancelled but not given back: when the read
    # lagged behind our own claim, the job stays ours until T (session 22's second fix)
    Tooth("false-loss-kept", "false-loss", 500, 19, protocol=LossNotGivenBack,
          properties=("give-back",)),
    # the cost features: each misuse a suite must catch (docs/enhancements.md)
    Tooth("push-as-proof", "push", 150, 19, protocol=PushAsProof),
    # the flaw the thorough profile found: a late push taken for the settle's wake-up (with
    # the push timed to the settle's end, at most 8 examples, 2026-12-04; up to 506 with the
    # timing model drawn)
    Tooth("late-push-ends-settle", "late-push", 20, 19, protocol=LatePushEndsSettle),
    # the gap an adversarial review found: an unknown claim confirmed by an older
    # assignment of our own DID, its lease counted from the claim
    Tooth("older-assignment-confirms", "orphan", 100, 19, protocol=OlderAssignmentConfirms,
          properties=LEASE),
    # the hazard a review found in the no-progress clock: one counted ping carrying the
    # stuck value, which a late ping of the same DID's earlier attempt had already set
    Tooth("progress-from-one-ping", "stuck", 600, 19, protocol=ProgressFromOnePing,
          properties=LEASE),
    # ... and the first version of the fix, without the start marker: safe, not live
    Tooth("progress-without-start-marker", "slow-progress", 30, 19,
          protocol=ProgressWithoutStartMarker, properties=("L1",)),
    # a retry's backoff wait past the lease end, in a family where the no-progress lease is
    # as tight as the model allows (2026-12-04: at most 2 examples, against up to 1,283 of a
    # budget of 2,000 before; the budget is the floor of 20)
    Tooth("backoff-past-the-lease", "backoff", 20, 19, protocol=BackoffPastLease,
          properties=LEASE),
    # a gateway finish decided after lease end + C - G, whose late write lands on the next
    # assignment (found by an adversarial review, 2026-12-05)
    Tooth("finish-past-the-lease", "late-finish", 100, 19, protocol=FinishPastLease,
          properties=("S3",)),
    # ... and each term of that deadline: its G, and its P, which a deadline measured from
    # the finish's send instead of its decision loses (2026-12-05)
    Tooth("finish-without-G", "late-finish", 100, 19, _misbelief("finish-without-G"),
          properties=("S3",)),
    Tooth("finish-without-P", "late-finish-P", 900, 19, _misbelief("finish-without-P"),
          properties=("S3",)),
    # ... and the bound on when that finish may leave: a decision in time is not a send in
    # time when its connection takes seconds (session 31; the driver check of session 28)
    Tooth("finish-without-send-by", "connect", 200, 19, protocol=FinishWithoutSendBy,
          properties=("S3",)),
    Tooth("cache-serves-a-deciding-read", "cache", 20, 19, protocol=CachedRecheck,
          properties=("fresh-reads",)),
    Tooth("batch-missing-id-is-available", "batch", 400, 19, protocol=BatchMissingAsAvailable,
          properties=("claim-evidence",)),
    # a work that failed taken for a finished one: its output published (session 46)
    Tooth("finishes-failed-work", "work-failure", 20, 19, protocol=FinishesFailedWork,
          properties=("finished-work",)),
    # L1's oracle: a chain that gives up on what a fault touched, one that dawdles before
    # its claim and one before its first request, each safe; L1 excused the first as the
    # faults' loss, counted the second from faults_until and the third from its own first
    # record (a review of the checkers, session 27)
    Tooth("fails-after-a-stand-in", "stand-in-liveness", 200, 19, protocol=FailsAfterStandIn,
          properties=("L1",)),
    Tooth("rejects-after-a-stand-in", "stand-in-counted", 200, 19,
          protocol=RejectsAfterStandIn, properties=("given-up",)),
    Tooth("walks-away-after-a-stand-in", "stand-in-liveness", 200, 19,
          protocol=WalksAwayAfterStandIn, properties=("L1",)),
    Tooth("dawdles-before-its-claim", "quiet-liveness", 20, 19, protocol=DawdlesBeforeClaim,
          properties=("L1",)),
    Tooth("dawdles-before-touching-a-job", "quiet-liveness", 20, 19,
          protocol=DawdlesBeforeTouching, properties=("L1",)),
    Tooth("dawdles-briefly-beside-free-encoders", "quiet-uncrowded", 20, 19,
          protocol=DawdlesBriefly, properties=("L1",)),
    Tooth("hardened-without-recheck", "liveness", 30, 19, _without("recheck"),
          properties=("L1",)),
    Tooth("hardened-without-phase-heartbeats", "liveness", 30, 19,
          _without("phase-heartbeats"), properties=("L1",)),
    # L1's own bound: a confirmation that gives up after a request hung until its client gave
    # up waits for that client's timeout, aid's 30 s on aid nodes, not the gateway's 10 s
    # (``give_up``; no suite judged L1 while requests hung before 2026-12-04)
    Tooth("l1-bound-with-the-gateway's-timeout", "hang-liveness", 100, 19,
          bound=lambda sc: l1_bound(sc.replace(hang_rate=0.0)), properties=("L1",)),
    # ... and the confirmation's own window after it (settle, confirm timeout, retry)
    Tooth("l1-bound-without-the-confirm-window", "hang-liveness", 100, 19,
          bound=lambda sc: l1_bound(sc, without="residual.confirm.window"),
          properties=("L1",)),
    # ... and the hand-out of a job skipped because the lagging monitor did not show it yet:
    # the gateway's re-offer, and an idle encoder's next poll
    Tooth("l1-bound-without-the-idle-poll", "hand-out", 160, 19,
          bound=lambda sc: l1_bound(sc, without="hand_out.idle_poll"), properties=("L1",)),
    Tooth("l1-bound-without-the-re-offer", "hand-out", 350, 19,
          bound=lambda sc: l1_bound(sc, without="hand_out.reoffer"), properties=("L1",)),
    # ... and the encoder loop's own waits (``verifier.PollSchedule``, session 29): the
    # cool-down of the encoder that skipped the job
    Tooth("l1-bound-without-the-cool-down", "cool-down", 100, 19,
          bound=lambda sc: l1_bound(sc, without="hand_out.cooldown"), properties=("L1",)),
    # ... and the loop's decisions themselves, weakened: a job given up on never tried
    # again, and the jittered idle wait past the longest the policy states (session 21)
    Tooth("loop-never-retries-a-job", "cool-down", 60, 19, schedule=NeverRetries,
          properties=("L1",)),
    Tooth("loop-idle-wait-past-its-cap", "back-off-cap", 60, 19,
          schedule=IdleWaitPastItsCap, properties=("L1",)),
    # ... and a 429's Retry-After told just before the faults stopped (session 30): the term,
    # and the loop's cap on it (a loop that honours a day-long hint in full)
    Tooth("l1-bound-without-the-retry-after", "throttle", 20, 19,
          bound=lambda sc: l1_bound(sc, without="hand_out.retry_after"), properties=("L1",)),
    Tooth("loop-retry-after-uncapped", "throttle-absurd", 20, 19,
          schedule=RetryAfterUncapped, properties=("L1",)),
    # ... and a graceful shutdown told after a hung request, then the node's restart (an
    # adversarial review, 2026-12-04: the bound counted the restart only after a crash)
    Tooth("l1-bound-without-the-shutdown", "shutdown-liveness", 200, 19,
          bound=lambda sc: l1_bound(sc, without="residual.shutdown"), properties=("L1",)),
    # ... and a crash followed by a shutdown that fell due meanwhile: two restarts in a row
    # (a second review, the same day)
    Tooth("l1-bound-without-the-crash-then-shutdown", "restart-liveness", 200, 19,
          bound=lambda sc: l1_bound(sc, without="residual.crash_then_shutdown"),
          properties=("L1",)),
]


class _Caught(Exception):
    pass


def _catches(tooth: Tooth, world: World, *, searching: bool = True) -> bool:
    """Whether ``tooth`` breaks one of its properties on ``world`` while the hardened chain,
    told the world's true timing model, keeps them all on the same world (``searching``:
    inside a search, whose targeting phase is told how close the world came)."""
    if tooth.bound is not None:
        run, sc = race(world, "hardened"), world.scenario
        weak = tooth.bound(sc).check(run.result.history, jobs=run.result.jobs,
                                     horizon=l1_horizon(sc, run.result))
        return not weak.ok and not run.violated("L1")
    kwargs: dict[str, Any] = {"policy": tooth.policy(world)}
    if tooth.protocol is not None:
        kwargs["protocol"] = tooth.protocol
    if tooth.schedule is not None:
        kwargs["schedule"] = tooth.schedule
    broken = race(world, "hardened", **kwargs)
    if searching:
        aim(broken)
    return broken.violated(*tooth.properties) and not race(world, "hardened").violated(
        *tooth.properties)


def examples_to_catch(tooth: Tooth, search_seed: int) -> int | None:
    """Examples one search (seeded ``search_seed``) generated until one caught ``tooth``
    (the catching one included, the family's simplest world not counted); None if its budget
    ran out.

    The family's simplest world (the first example Hypothesis tries, the same whatever the
    seed) is not counted: when it catches the tooth, every search would catch it at once and
    twenty searches would be one result twenty times (a review of session 17 found most of the
    "caught at the second example" rows to be exactly that). It is judged on its own
    (:func:`simplest_world_catches`); here only the searches' own draws count."""
    tried, needed = 0, None
    simplest = simplest_world(tooth.family)

    @seed(search_seed)
    @settings(max_examples=tooth.budget, database=None, deadline=None, derandomize=False,
              phases=[Phase.generate, Phase.target],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(world=worlds(max_encoders=2, max_jobs=1, fixed=FAMILIES[tooth.family]))
    def search(world: World) -> None:
        nonlocal tried, needed
        if world == simplest:
            return  # not counted (Hypothesis may try it more than once)
        tried += 1
        if _catches(tooth, world):
            needed = needed or tried  # Hypothesis runs a failing example again: count it once
            raise _Caught

    try:
        search()
    except _Caught:
        return needed
    return None


def simplest_world(family: str) -> World:
    """The family's simplest world: what every search generates first."""
    found: list[World] = []

    @settings(max_examples=1, database=None, deadline=None, derandomize=True,
              phases=[Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(world=worlds(max_encoders=2, max_jobs=1, fixed=FAMILIES[family]))
    def first(world: World) -> None:
        found.append(world)

    first()
    return found[0]


def simplest_world_catches(tooth: Tooth) -> bool:
    return _catches(tooth, simplest_world(tooth.family), searching=False)


@pytest.mark.slow
@pytest.mark.parametrize("tooth", TEETH, ids=[t.name for t in TEETH])
def test_tooth_is_caught_at_its_rate(tooth: Tooth) -> None:
    found = [examples_to_catch(tooth, s) for s in range(SEEDS)]
    caught = [n for n in found if n is not None]
    simplest = "caught" if simplest_world_catches(tooth) else "not caught"
    line = (f"{tooth.name}: caught in {len(caught)}/{SEEDS} searches of {tooth.budget} "
            f"examples ({tooth.family} family); examples needed: {sorted(caught)}; "
            f"the family's simplest world: {simplest}")
    print(line)
    assert len(caught) >= tooth.need, line


def test_l1_bound_catches_a_chain_that_is_slow_but_completes() -> None:
    """L1's time bound (:func:`sim.l1_bound`) has teeth of its own: without phase heartbeats
    the gateway reassigns a job whose download outlasts T, the attempt is cancelled and the
    job waits for the next one. In some worlds every job is still committed, so completion
    alone passes, but late; the hardened chain, on the same world, is on time."""
    found: list[Race] = []

    @settings(max_examples=200, database=None, deadline=None, derandomize=True,
              phases=[Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(world=worlds(max_encoders=2, max_jobs=1, fixed=FAMILIES["liveness"]))
    def search(world: World) -> None:
        slow = race(world, "hardened", policy=_without("phase-heartbeats")(world))
        completed = slow.result.checks["L1"].ok  # the run's own L1: completion only
        if completed and slow.violated("L1") and not race(world, "hardened").violated("L1"):
            found.append(slow)
            raise _Caught

    with pytest.raises(_Caught):
        search()
    assert "after the deadline" in found[-1].checks["L1"].examples[0]


#: Edge families whose run is capped below a CI-sized profile's budget (``ci``: 400), for CI's
#: time, with the evidence that the cap keeps their teeth. ``give-back-aid-fallback`` is the
#: most expensive family (its worlds run give-back retries of three encoders; 400 examples
#: took 100-140 s of a 10-minute CI), and the shipped protocol's mutant only it catches (the
#: give-back window counted from the fallback claim's decision) fails it within 2-22 s in 10
#: of 10 seeds at 150 examples (session 34). Profiles larger than ``ci`` are not capped.
EDGE_CAPS: dict[str, int] = {"give-back-aid-fallback": 150}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_hardened_chain_holds_at_the_edges(family: str, protocol: Any) -> None:
    """The hardened chain, told the world's true timing model, keeps S1-S3 and the lease in
    every family (and L1, on time, where faults let jobs finish: in the lease family pings
    never land until the faults stop, and in the progress family every phase stalls until
    then, so jobs run out of their five attempts first). This is what the
    teeth are measured against, and it is where a weakened formula in the shipped code fails
    first."""
    properties = ("S1", "S2", "S3", "lease", "fresh-reads", "claim-evidence", "give-back",
                  "finished-work") + (
        () if family in NO_TIMELY_LIVENESS else ("L1",))

    @given(world=worlds(max_encoders=3, max_jobs=2, fixed=FAMILIES[family]))
    def check(world: World) -> None:
        result = race(world, "hardened", protocol=protocol)
        aim(result)
        assert not result.violated(*properties), result.explain(*properties)

    budget = settings.default.max_examples
    if family in EDGE_CAPS and budget <= settings.get_profile("ci").max_examples:
        check = settings(max_examples=min(budget, EDGE_CAPS[family]))(check)
    check()

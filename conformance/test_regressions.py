"""Schedules that once broke the hardened chain, replayed through the SimPy driver.

Each is a frozen world (scenario + tape + seed): the very schedule, driven through
``sim._encoder`` (the simulator's driver of the shipped protocol), not a hand-built machine.
Each test checks both directions: the fixed protocol survives the schedule, and the old rule
(reconstructed in :mod:`conformance.canaries`) still breaks on it, so the schedule keeps
exercising what it was frozen for. If a change to the world's random draws moves the schedule
(the old rule no longer breaks), re-find it with the search in ``benchmarks/find_schedule.py``.
"""

from __future__ import annotations

import pytest

from conformance.canaries import RejectsAfterStandIn, SettleFromDecision
from conformance.worlds import BASE, Race, World, loses_what_the_shipped_chain_keeps, race
from sim import History

#: Finding 1 of the adversarial review (issue 10). Two community nodes (monitor + gateway);
#: G = 0.5, Δ = 1, P = 0.5, ε = 0. e0 decides to claim at 10.310 but its accept leaves only at
#: 10.810 (a pause of exactly P between the decision and the send), is answered at 10.882 and
#: lands at 11.310; e1 is double-handed the job, its accept (judged on a read within G) leaves at
#: 11.601 and lands at 12.101. Settled from the *decision*, e0's deciding read at 10.310 + 3G +
#: ε + Δ = 12.810 goes through a monitor lagging exactly Δ: it sees the database as of 11.810,
#: i.e. e0 itself; e0 starts at 13.095 and e1, the job's real owner, at 14.292. Settled from the
#: claim's *answer*, the read comes at 13.382, sees e1 (as of 12.382), and e0 steps aside.
#: (Re-found with ``benchmarks/find_schedule.py`` on 2026-12-02, after the world gained progress
#: reports and spaced pauses: the schedule of 2026-12-01 had moved.)
FINDING_1 = World(
    BASE.replace(
        encoders=2, jobs=1, infra_fraction=0.0, lie_rate=1.0, write_delay=0.5,
        late_write_rate=1.0, monitor_lag=1.0, monitor_lag_mean=1.0, monitor_synthetic_rate=0.0,
        monitor_error_rate=0.0, pause_max=0.5, clock_drift=0.0, cancel_latency=3.0,
        edge_rate=0.9, await_pause_rate=0.3, recheck_interval=2.5, reply_loss_rate=0.0,
        status_lie_rate=0.0,
    ),
    tape=(0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0),
    seed=244,
)


def _claim_sent_after_a_pause(history: History, encoder: str) -> bool:
    """The schedule's shape: the encoder's claim request follows a pause that began after its
    previous answer, i.e. between the decision to claim and the send."""
    records = [r for r in history if r[1] == encoder]
    for i, record in enumerate(records):
        if record[3] == "claim" and record[4] == "invoke":
            return i > 0 and records[i - 1][3] == "pause" and records[i - 1][4] == "ok"
    return False


def test_finding_1_settle_is_measured_from_the_claims_answer():
    fixed = race(FINDING_1, "hardened")
    keeps = ("S1", "S2", "S3", "lease", "L1")
    assert not fixed.violated(*keeps), fixed.explain(*keeps)


def test_finding_1_still_breaks_the_old_settle_rule():
    old = race(FINDING_1, "hardened", protocol=SettleFromDecision)
    assert old.violated("S2"), "the frozen schedule no longer reproduces finding 1"
    assert _claim_sent_after_a_pause(old.result.history, "e0"), old.explain("S2")


#: A tie at the settle's exact edge (session 17, found by a helper sharpening the settle
#: families). Two community nodes; G = P = 2, Δ = 5, ε = 0, every bound reached exactly. e1's
#: claim is answered at a = 8.6307 and lands at a + G; e0, woken by the double hand-out, pauses
#: exactly P and sends its accept at a + 2G (its check read the job exactly G earlier: allowed),
#: which lands at a + 3G. e1's deciding read at a + 3G + ε + Δ through a monitor lagging
#: exactly Δ reflects the database at a + 3G: the very instant e0's write lands, which it must
#: see. In floats ``a + 11 - 5`` is one ulp below ``a + 2 + 2 + 2``: without the world's tie
#: rule (``sim._world.TIE_S``) the read missed the write and both encoders processed the job
#: (``tests/sim/test_world_tie.py`` checks that the schedule still reaches the tie).
FINDING_TIE = World(
    BASE.replace(
        lie_rate=1.0, late_write_rate=1.0, reassign_timeout=30.0, gateway_latency=0.0,
        monitor_latency=0.0, database_latency=0.0, clock_drift=0.0, edge_rate=0.9,
        await_pause_rate=0.3, confirm_timeout=4.5,
    ),
    tape=(0.12118662907167145,),
    seed=603140056,
)


def _hardened_holds_inside_the_model(world: World) -> None:
    assert not world.scenario.timing_model().problems()  # inside the model
    fixed = race(world, "hardened")
    keeps = ("S1", "S2", "S3", "lease")
    assert not fixed.violated(*keeps), fixed.explain(*keeps)


def test_a_read_sees_a_write_landing_at_the_instant_it_reflects():
    _hardened_holds_inside_the_model(FINDING_TIE)


#: A tie where a database claim lands (2026-12-04, found by the first search of the
#: settle-database family, once the world doubled database claims). One infrastructure node
#: (e0) and one community node (e1); G = 0 and ε = 0, so e0's settle after its database claim
#: is 3G + ε = 0: it claims at 31.726 (landing at once) and reads the database at once. The
#: gateway, woken by the double hand-out at that instant, offers e1 the job; e1's accept, sent
#: at the same instant, is a check that reflects the database at 31.726 - G = 31.726, the very
#: instant e0's claim landed. Under the old check rule (``landed >= reflects`` missed it) the
#: accept passed and overwrote e0 at once, e0 had already read itself and started, and both
#: encoders processed the job. A check that reflects its own instant (G = 0) now sees every
#: write already applied (``sim._world.misses``), so with G = 0 no check misses a claim.
FINDING_DATABASE_TIE = World(
    BASE.replace(
        infra_fraction=0.5, lie_rate=1.0, write_delay=0.0, late_write_rate=1.0,
        reassign_timeout=30.0, reassign_scan_interval=0.0, progress_timeout=60.0,
        gateway_latency=0.0, monitor_latency=0.0, database_latency=0.0, clock_drift=0.0,
        edge_rate=0.9, await_pause_rate=0.3, confirm_timeout=12.0,
    ),
    tape=(),
    seed=2326,
)


def test_a_check_sees_a_claim_landing_at_the_instant_it_reflects():
    _hardened_holds_inside_the_model(FINDING_DATABASE_TIE)


#: A give-back at the instant its claim's write lands (session 45: the edge family
#: `give-back`, seed 166, once the simulator's driver began delivering a shutdown in its
#: arrival order). e1's accept, answered at once (latency 0), lands G = 5 s later; a shutdown
#: comes first, its give-back is refused (the job is not ours yet), and the protocol asks once
#: more when the write must have landed, G + ε after the claim's answer (ε = 0): the very
#: instant it lands, computed as another float sum. One ulp put the give-back first: refused
#: again, the run reported nothing held while the job stayed e1's until T. A give-back now sees
#: the writes landing within the tie's microsecond, as a read does (``World.serve``).
FINDING_GIVE_BACK_TIE = World(
    BASE.replace(
        write_delay=5.0, late_write_rate=1.0, reject_counts_attempt=0.0, gateway_latency=0.0,
        monitor_latency=0.0, aid_pending_only=0.0, shutdowns_per_hour=600.0, clock_drift=0.0,
        edge_rate=0.5,
    ),
    tape=(),
    seed=166,
)


def test_a_give_back_sees_its_claim_landing_at_the_instant_it_must_have():
    _hardened_holds_inside_the_model(FINDING_GIVE_BACK_TIE)
    fixed = race(FINDING_GIVE_BACK_TIE, "hardened")
    assert not fixed.violated("give-back"), fixed.explain("give-back")


#: An L1 finding of session 31 (from a review's search of 5,000 generated worlds with slow
#: finish connections), closed in session 32 as a fault of the oracle, not of the chain. A
#: crashed encoder's accept lands after the crash (``late_write_rate``), so the job is assigned
#: to its DID; its next process is offered that job (``held_reoffer_rate``), its pre-claim check
#: lets its own DID through, its accept is refused (the job is not queued) and the run ends
#: ``CLAIM_REFUSED`` without giving the assignment back. The gateway takes it back T after the
#: late accept, an attempt against the job, and with frequent crashes the fifth attempt fails
#: the job. L1's oracle took that timeout for the chain's walking away; but no live run ever
#: held the assignment (its claim's process had crashed before it landed), and the timeout
#: would have come, at the same instant, had the next process never been offered the job.
#: Giving it back instead would not have saved the attempt (a ``rejectJob`` counts one too, as
#: the contract says and the simulated gateway has done since session 32), only up to T of
#: time, and is not trivially safe: an earlier run of the node may have left the job held on
#: purpose (an unanswered gateway finish, ``FINISH_UNKNOWN``, whose check-then-act write can
#: still land up to G later), and a give-back before that write has landed could hand the job
#: on to an encoder our result then lands on (S3). Seed 1555, where session 31 found it, now
#: fails the job through counted give-backs first; seed 97 showed the refused claim and
#: failed the old oracle (``tests/sim/test_checkers.py`` pins the rule on a short history)
#: until session 44, when the protocol's wait after two requests in a row moved the tape:
#: seed 34 shows it now (the first of seeds 0-399 that does: e0 crashed twice, assigned four
#: times).
CRASH_LATE_ACCEPT = World(
    BASE.replace(
        late_write_rate=0.5, late_finish_rate=1.0, ping_loss_rate=1.0, held_reoffer_rate=1.0,
        status_lie_rate=0.5, reassign_timeout=30.0, gateway_outages_per_hour=6.0,
        gateway_outage_mean_s=90.0, monitor_synthetic_rate=0.3, monitor_outages_per_hour=6.0,
        late_lost_write_rate=1.0, cooldown_s=5.0, stuck_rate=0.5, crashes_per_hour=10.0,
        shutdowns_per_hour=20.0, pauses_per_hour=60.0, clock_drift=0.0, edge_rate=0.5,
        await_pause_rate=0.3, confirm_timeout=4.0, status_cache_s=5.0, batch_screen=1.0,
        backoff=1.0, push_latency=2.0,
    ),
    tape=(),
    seed=34,
)


def test_a_crashed_process_s_late_accept_is_not_taken_for_walking_away() -> None:
    result = race(CRASH_LATE_ACCEPT, "hardened")
    assert CRASH_LATE_ACCEPT.scenario.inside_model()
    records = result.result.history.for_job("job-000000")
    assert any(r[3] == "outcome" and r[5][0] == "CLAIM_REFUSED" for r in records), (
        "the world no longer shows a claim refused beside an assignment of its own DID")
    assert not result.violated("S1", "S2", "S3", "lease", "L1"), result.explain(
        "S1", "S2", "S3", "lease", "L1")


#: An open limit of L1's oracle (session 32), found when the simulated gateway began counting
#: a ``rejectJob`` as an attempt, as the contract says. A chain that gives a job back at the
#: first stand-in it reads (:class:`conformance.canaries.RejectsAfterStandIn`), where the shipped
#: chain reads again, loses the job to the fifth-attempt rule (with the world's stalls, which
#: cost attempts too) while the faults last; the shipped chain commits it. L1 excuses a job
#: given up while the faults last unless the chain gave it back *as failed* or walked away from
#: it: a plain give-back during the faults is what the shipped chain does when its lease runs
#: out or a confirmation gives up, and the history alone cannot tell an eager one from a forced
#: one. Measured with the first 200 derandomized worlds of ``stand-in-counted``
#: (``stand-in-liveness`` with the counting on): the canary lost the job in 9, the shipped
#: chain in none, and L1 caught none of the 9. The teeth catch it differentially (the tooth
#: ``rejects-after-a-stand-in``, property ``given-up``); L1 alone does not.
EAGER_GIVE_BACK = World(
    BASE.replace(
        assignment="getjob", write_delay=0.0, late_write_rate=1.0, progress_timeout=120.0,
        monitor_synthetic_rate=0.3, stall_rate=0.3, edge_rate=0.5, await_pause_rate=0.1,
        faults_until=300.0,
    ),
    tape=(),
    seed=868,
)


def _given_up(result: Race) -> bool:
    return any(r[3] == "failed" for r in result.result.history)


def test_eager_give_backs_cost_the_job_where_the_shipped_chain_commits_it() -> None:
    shipped = race(EAGER_GIVE_BACK, "hardened")
    assert not _given_up(shipped) and not shipped.violated("S1", "S2", "S3", "lease", "L1")
    eager = race(EAGER_GIVE_BACK, "hardened", protocol=RejectsAfterStandIn)
    assert _given_up(eager), "the frozen world no longer shows an eager give-back's cost"
    assert not eager.violated("S1", "S2", "S3", "lease")


def test_the_differential_given_up_catches_it_where_l1_does_not() -> None:
    """What the race suites hold an implementation validated with ``--protocol`` to."""
    eager = race(EAGER_GIVE_BACK, "hardened", protocol=RejectsAfterStandIn)
    assert loses_what_the_shipped_chain_keeps(eager)
    assert not loses_what_the_shipped_chain_keeps(race(EAGER_GIVE_BACK, "hardened"))


@pytest.mark.xfail(strict=True, reason="open: L1 excuses a job given up during the faults "
                   "through the chain's own eager give-backs (session 32)")
def test_l1_catches_a_chain_that_gives_back_at_the_first_stand_in() -> None:
    eager = race(EAGER_GIVE_BACK, "hardened", protocol=RejectsAfterStandIn)
    assert eager.violated("L1")

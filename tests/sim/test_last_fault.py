"""When the faults stopped, as the world saw it (``RunResult.last_fault``), and each job's
arrival: where L1's on-time check counts from (a review of the checkers, session 27).

Counted from ``faults_until`` and from a job's first record, a chain that idled 600 s before
its claim, or before its first request, passed L1 in a world with no fault at all (the
teeth ``dawdles-before-its-claim`` and ``dawdles-before-touching-a-job``). These tests pin
what the two instants are, record by record, so that a fault the world stops noting, or an
arrival it stops recording, fails here rather than weakening L1 silently."""

from __future__ import annotations

import math

from conformance.families import FAMILIES
from conformance.worlds import BASE, World, l1_horizon, race
from sim import WORLD, check_l1, l1_bound


def test_a_world_without_faults_stops_them_at_zero_and_records_every_arrival() -> None:
    sc = BASE.replace(**FAMILIES["quiet-liveness"], encoders=2, jobs=3)
    run = race(World(sc, seed=4, family="quiet-liveness"), "hardened").result
    assert run.last_fault == -math.inf
    assert l1_horizon(sc, run) == -math.inf  # not faults_until (900 s)
    arrivals = [(r[0], r[2]) for r in run.history if r[1] == WORLD and r[3] == "arrive"]
    assert sorted(job for _, job in arrivals) == sorted(run.jobs)
    assert all(t == 0.0 for t, _ in arrivals)  # released at once, before any encoder acts
    firsts = {job: next(r[0] for r in run.history if r[2] == job and r[1] != WORLD)
              for job in run.jobs}
    assert all(t > 0.0 for t in firsts.values()), firsts


def test_the_last_fault_is_the_last_lie_stand_in_or_pause_and_never_past_their_end() -> None:
    """Lies leave records, pauses too (their end is the fault's end); a stand-in leaves none
    in the history, so the world's own note is the only witness: with stand-ins on, the last
    fault lies after the last recorded one in some worlds, and never after faults_until plus
    the longest pause."""
    # Lies and pauses rare enough that a stand-in comes last in some worlds (5 of these 16
    # in session 45; at 0.5 and 0.3, 1 in 24, and none of the first 8 once the protocol's
    # proof reads changed), frequent enough that every world records some.
    levels = {**FAMILIES["stand-in-liveness"], "lie_rate": 0.1, "await_pause_rate": 0.05,
              "encoders": 3, "jobs": 2, "faults_until": 120.0}
    sc = BASE.replace(**levels)
    beyond_records = 0
    for seed in range(16):
        run = race(World(sc, seed=seed, family="stand-in-liveness"), "hardened").result
        assert run.last_fault is not None
        recorded = [r[0] for r in run.history if r[1] == WORLD and r[3] == "lie"]
        recorded += [r[0] for r in run.history if r[3] == "pause" and r[4] == "ok"]
        assert run.last_fault >= max(recorded, default=-math.inf), seed
        assert run.last_fault <= sc.faults_until + sc.pause_max, seed
        beyond_records += run.last_fault > max(recorded, default=-math.inf)
        assert l1_horizon(sc, run) == min(sc.faults_until, run.last_fault)
    assert beyond_records >= 1, "no world's last fault was a stand-in: the test reaches nothing"


def test_a_later_draw_never_moves_the_last_fault_back_below_an_outage_to_come() -> None:
    """Outage windows are noted when the world is built, ahead of the clock; a lie drawn later
    at an earlier instant used to overwrite the note (``last_fault = now``), L1 then counted
    from before an outage still to come, and the hardened chain failed L1 in 16 of 200 seeds
    of this world (a review of the L1 oracle, session 27)."""
    sc = BASE.replace(encoders=2, jobs=1, lie_rate=1.0, gateway_outages_per_hour=120.0,
                      gateway_outage_mean_s=90.0)
    assert sc.inside_model()
    for seed in (5, 20, *range(8)):
        run = race(World(sc, seed=seed), "hardened")
        starts = [r[0] for r in run.result.history
                  if r[1] == WORLD and r[3] == "fault" and r[4] == "invoke"]
        assert run.result.last_fault is not None
        assert run.result.last_fault >= max(starts, default=-math.inf), seed
        assert run.checks["L1"].ok, (seed, run.checks["L1"].examples)


def test_a_fault_at_the_instant_the_jobs_arrive_still_earns_them_the_residual() -> None:
    """A reply lost at t = 0, when every job arrives: "no fault" was 0 too, so the job got no
    residual and the hardened chain, acting correctly (the claim's reply lost, a give-back
    after the client's timeout, the other encoder taking the job), failed L1."""
    sc = BASE.replace(gateway_latency=0.0, monitor_latency=0.0, write_delay=0.0,
                      monitor_lag=0.0, monitor_lag_mean=0.0, clock_drift=0.0, encoders=2,
                      jobs=1, reply_loss_rate=0.3, poll_interval=1.0)
    run = race(World(sc, tape=(0.0,) * 26 + (0.9,) * 10, seed=1), "hardened")
    assert run.result.last_fault == 0.0  # a fault did strike, at 0
    codes = [r[5][0] for r in run.result.history if r[3] == "outcome"]
    assert codes == ["CLAIM_UNKNOWN", "FINISHED"]  # the story above
    assert not [k for k, c in run.checks.items() if not c.ok], run.explain("L1")
    # ... which needs the residual: without it, the same run fails L1.
    bound = l1_bound(sc)
    assert not check_l1(run.result.history, jobs=run.result.jobs, horizon=0.0,
                        bound=bound.bound, residual=0.0).ok

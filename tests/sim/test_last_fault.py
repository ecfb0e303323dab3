"""When the faults stopped, as the world saw it (``RunResult.last_fault``), and each job's
arrival: where L1's on-time check counts from (a review of the checkers, session 27).

Counted from ``faults_until`` and from a job's first record, a chain that idled 600 s before
its claim, or before its first request, passed L1 in a world with no fault at all (the
teeth ``dawdles-before-its-claim`` and ``dawdles-before-touching-a-job``). These tests pin
what the two instants are, record by record, so that a fault the world stops noting, or an
arrival it stops recording, fails here rather than weakening L1 silently."""

from __future__ import annotations

from conformance.families import FAMILIES
from conformance.worlds import BASE, World, l1_horizon, race
from sim import WORLD


def test_a_world_without_faults_stops_them_at_zero_and_records_every_arrival() -> None:
    sc = BASE.replace(**FAMILIES["quiet-liveness"], encoders=2, jobs=3)
    run = race(World(sc, seed=4, family="quiet-liveness"), "hardened").result
    assert run.last_fault == 0.0
    assert l1_horizon(sc, run) == 0.0  # not faults_until (900 s)
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
    levels = {**FAMILIES["stand-in-liveness"], "lie_rate": 0.5, "await_pause_rate": 0.3,
              "encoders": 3, "jobs": 2, "faults_until": 120.0}
    sc = BASE.replace(**levels)
    beyond_records = 0
    for seed in range(8):
        run = race(World(sc, seed=seed, family="stand-in-liveness"), "hardened").result
        assert run.last_fault is not None
        recorded = [r[0] for r in run.history if r[1] == WORLD and r[3] == "lie"]
        recorded += [r[0] for r in run.history if r[3] == "pause" and r[4] == "ok"]
        assert run.last_fault >= max(recorded, default=0.0), seed
        assert run.last_fault <= sc.faults_until + sc.pause_max, seed
        beyond_records += run.last_fault > max(recorded, default=0.0)
        assert l1_horizon(sc, run) == min(sc.faults_until, run.last_fault)
    assert beyond_records >= 1, "no world's last fault was a stand-in: the test reaches nothing"

"""The history checkers catch hand-made violations of S1, S2, S3, the lease and L1 (with its
time bound) and pass clean histories."""

from __future__ import annotations

import math
from typing import Any

import pytest

from sim import WORLD, History, Scenario
from sim._checkers import (
    L1_TERMS,
    CheckResult,
    Interval,
    L1Bound,
    check_all,
    check_l1,
    check_lease,
    check_s1,
    check_s2,
    check_s3,
    double_assigned_jobs,
    faults_stopped,
    l1_bound,
    processing_intervals,
)

W = WORLD


def hist(*records: tuple[Any, ...]) -> History:
    """A history from (time, process, job, op, phase[, value]) tuples, kept in the given order."""
    return History((*r, None) if len(r) == 5 else r for r in records)


def start(t: float, p: str, job: str = "j") -> tuple[Any, ...]:
    return (t, p, job, "start", "ok", None)


def stop(t: float, p: str, job: str = "j", phase: str = "ok",
         why: str = "done") -> tuple[Any, ...]:
    return (t, p, job, "stop", phase, why)


def crash(t: float, p: str) -> tuple[Any, ...]:
    return (t, p, None, "crash", "info", None)


# ------------------------------------------------------------------------------- intervals


def test_intervals_open_close_and_crash() -> None:
    h = hist(start(0, "e1"), stop(5, "e1", why="cancelled"), start(1, "e2"), crash(7, "e2"),
             start(2, "e3"), stop(3, "e3", phase="info"))
    ivs = processing_intervals(h)["j"]
    assert ivs == [
        Interval("e1", "j", 0, 5, "cancelled"),
        Interval("e2", "j", 1, 7, "crash"),
        Interval("e3", "j", 2, math.inf, "open"),
    ]


def test_crash_before_a_start_does_not_close_it() -> None:
    # The crash is recorded at the same instant but *before* the restart's start: positions,
    # not only times, decide, so the restarted interval is still open.
    h = hist(crash(1, "e1"), start(1, "e1"), start(2, "e2"))
    assert processing_intervals(h)["j"][0] == Interval("e1", "j", 1, math.inf, "open")
    assert check_s1(h).violations == 1


def test_pause_is_not_a_stop() -> None:
    h = hist(start(0, "e1"), (5, "e1", None, "pause", "invoke", 40.0),
             (45, "e1", None, "pause", "ok", None), stop(60, "e1"))
    assert processing_intervals(h)["j"] == [Interval("e1", "j", 0, 60, "done")]


# ---------------------------------------------------------------------------------------- S1


def test_s1_two_overlapping_starts() -> None:
    h = hist(start(0, "e1"), start(5, "e2"), stop(10, "e1"), stop(12, "e2"))
    r = check_s1(h)
    assert (r.name, r.violations, r.jobs, r.ok) == ("S1", 1, ("j",), False)
    assert "e2 started at 5.000" in r.examples[0] and "e1" in r.examples[0]


def test_s1_hand_off_after_stop_is_fine_even_at_the_same_instant() -> None:
    h = hist(start(0, "e1"), stop(10, "e1", why="cancelled"), start(10, "e2"), stop(20, "e2"))
    assert check_s1(h).ok


def test_s1_hand_off_after_crash_is_fine() -> None:
    h = hist(start(0, "e1"), crash(8, "e1"), start(9, "e2"))
    r = check_s1(h)
    assert r.ok and r.jobs == () and r.examples == ()


def test_s1_unconfirmed_stop_is_no_hand_off() -> None:
    h = hist(start(0, "e1"), stop(3, "e1", phase="info"), start(5, "e2"))
    assert check_s1(h).violations == 1


def test_s1_crash_of_an_unrelated_process_is_no_hand_off() -> None:
    h = hist(start(0, "e1"), crash(3, "e3"), start(5, "e2"))
    assert check_s1(h).violations == 1


def test_s1_simultaneous_starts_are_both_bad() -> None:
    h = hist(start(4, "e1"), start(4, "e2"), stop(9, "e1"), stop(9, "e2"))
    assert check_s1(h).violations == 2


def test_s1_same_process_restarting_is_fine() -> None:
    h = hist(start(0, "e1"), start(2, "e1"), stop(5, "e1"), start(6, "e1"))
    assert check_s1(h).ok


def test_s1_jobs_are_independent() -> None:
    h = hist(start(0, "e1", "a"), start(1, "e2", "b"), stop(5, "e1", "a"), start(6, "e2", "a"))
    assert check_s1(h).ok


# ---------------------------------------------------------------------------------------- S2


def test_s2_overlap_is_one_pair() -> None:
    h = hist(start(0, "e1"), start(5, "e2"), stop(10, "e1"), stop(12, "e2", why="cancelled"))
    r = check_s2(h)
    assert (r.name, r.violations, r.jobs) == ("S2", 1, ("j",))
    assert "e1 processed [0.000, 10.000]" in r.examples[0]
    assert "e2 processed [5.000, 12.000] (cancelled)" in r.examples[0]


def test_s2_unconfirmed_stop_extends_to_infinity() -> None:
    h = hist(start(0, "e1"), stop(5, "e1", phase="info"), start(100, "e2"), stop(200, "e2"))
    r = check_s2(h)
    assert r.violations == 1
    assert "never" in r.examples[0]


def test_s2_pause_does_not_end_the_interval() -> None:
    h = hist(start(0, "e1"), (5, "e1", None, "pause", "invoke", 45.0), start(20, "e2"),
             stop(30, "e2"), (50, "e1", None, "pause", "ok", None), stop(60, "e1"))
    assert check_s2(h).violations == 1


def test_s2_same_process_again_after_its_stop_is_not_a_violation() -> None:
    h = hist(start(0, "e1"), stop(1, "e1"), start(2, "e1"), crash(5, "e1"),
             start(6, "e1"), stop(8, "e1"))
    assert check_s2(h).ok


def test_s2_a_start_while_the_same_process_holds_the_job_counts() -> None:
    # One node running one job in two slots at once (or again after a stop it could not
    # confirm): one interval per process cannot show it, so the second start is counted.
    h = hist(start(0, "e1"), start(2, "e1"), stop(5, "e1"),
             start(6, "e2", "k"), stop(7, "e2", "k", phase="info"), start(8, "e2", "k"))
    r = check_s2(h)
    assert (r.violations, r.jobs) == (2, ("j", "k"))
    assert r.examples[0] == ("job j: e1 started it again at 2.000 while still processing it "
                             "since 0.000")
    assert check_s1(h).ok  # one encoder: not S1's concern


def test_a_node_s_interval_lasts_until_every_start_of_it_has_stopped() -> None:
    """e1 runs the job in two slots; the first stops at 5, and e2 starts at 6 while e1's
    second slot runs until 9. A stop does not say which start it ends, so e1's interval
    lasts until both have stopped: S1 sees e2's start (closed at the first stop, it did not;
    a review, session 31)."""
    h = hist(start(1, "e1"), start(2, "e1"), stop(5, "e1"), start(6, "e2"), stop(9, "e1"),
             stop(10, "e2"))
    assert processing_intervals(h)["j"] == [Interval("e1", "j", 1, 9, "done"),
                                            Interval("e2", "j", 6, 10, "done")]
    assert check_s1(h).violations == 1
    assert check_s2(h).violations == 1 + 1  # the overlap, and e1's second start
    crashed = hist(start(1, "e1"), start(2, "e1"), crash(4, "e1"), start(4, "e2"))
    assert check_s1(crashed).ok  # a crash ends every start of the node


def test_every_start_of_a_node_counts_and_a_crash_forgets_them_all() -> None:
    """Three slots of e1 run the job: two stops leave the third running, so e2's start beside
    it is S1's. A crash ends every start, and the restarted process's next stop ends its own
    start: nothing is carried over the crash (mutation testing, session 35: a count of extra
    starts kept at one, or kept over a crash, survived every test)."""
    three = hist(start(1, "e1"), start(2, "e1"), start(3, "e1"), stop(5, "e1"), stop(6, "e1"),
                 start(7, "e2"), stop(9, "e1"), stop(10, "e2"))
    assert processing_intervals(three)["j"] == [Interval("e1", "j", 1, 9, "done"),
                                                Interval("e2", "j", 7, 10, "done")]
    assert check_s1(three).violations == 1
    restarted = hist(start(1, "e1"), start(2, "e1"), crash(4, "e1"), start(5, "e1"),
                     stop(6, "e1"), start(7, "e2"), stop(8, "e2"))
    assert processing_intervals(restarted)["j"] == [Interval("e1", "j", 1, 4, "crash"),
                                                    Interval("e1", "j", 5, 6, "done"),
                                                    Interval("e2", "j", 7, 8, "done")]
    assert check_s1(restarted).ok


def test_s2_touching_intervals_do_not_overlap() -> None:
    h = hist(start(0, "e1"), stop(5, "e1"), start(5, "e2"), crash(9, "e2"), start(9, "e3"))
    assert check_s2(h).ok


def test_s2_counts_every_pair_and_zero_length_inside_counts() -> None:
    h = hist(start(0, "e1"), start(1, "e2"), start(2, "e3"), stop(10, "e1"), stop(10, "e2"),
             stop(10, "e3"), start(20, "e4", "k"), start(25, "e5", "k"), crash(25, "e5"),
             stop(30, "e4", "k"))
    r = check_s2(h)
    assert r.violations == 3 + 1
    assert r.jobs == ("j", "k")


def test_s2_zero_length_at_the_same_start_is_no_overlap() -> None:
    h = hist(start(5, "e1"), crash(5, "e1"), start(5, "e2"), stop(9, "e2"))
    assert check_s2(h).ok


def test_examples_are_capped_at_five() -> None:
    recs = []
    for i in range(8):
        job = f"j{i}"
        recs += [start(i * 10, "e1", job), start(i * 10 + 1, "e2", job),
                 stop(i * 10 + 2, "e1", job), stop(i * 10 + 3, "e2", job)]
    r = check_s2(hist(*recs))
    assert r.violations == 8 and len(r.jobs) == 8 and len(r.examples) == 5


# ---------------------------------------------------------------------------------------- S3


def test_s3_clean_commit_of_the_latest_assignment() -> None:
    h = hist((0, W, "j", "assign", "ok", ("e1", 1)), (1, W, "j", "requeue", "ok", "stale"),
             (2, W, "j", "assign", "ok", ("e2", 2)), (9, W, "j", "commit", "ok", ("e2", 2)))
    assert check_s3(h).ok


def test_s3_two_commits() -> None:
    h = hist((0, W, "j", "assign", "ok", ("e1", 1)), (5, W, "j", "commit", "ok", ("e1", 1)),
             (6, W, "j", "commit", "ok", ("e1", 1)))
    r = check_s3(h)
    assert (r.violations, r.jobs) == (1, ("j",))
    assert "second commit" in r.examples[0]


def test_s3_commit_by_a_non_latest_owner() -> None:
    h = hist((0, W, "j", "assign", "ok", ("e1", 1)), (3, W, "j", "assign", "ok", ("e2", 1)),
             (5, W, "j", "commit", "ok", ("e1", 1)))
    r = check_s3(h)
    assert r.violations == 1
    assert "latest assignee is e2" in r.examples[0]


def test_s3_commit_with_a_stale_epoch() -> None:
    h = hist((0, W, "j", "assign", "ok", ("e1", 1)), (3, W, "j", "assign", "ok", ("e1", 2)),
             (5, W, "j", "commit", "ok", ("e1", 1)))
    r = check_s3(h)
    assert r.violations == 1 and "epoch 1 but the latest is 2" in r.examples[0]


def test_s3_a_malformed_commit_value_matches_no_assignment() -> None:
    """A world value that is not (who, epoch) cannot be the latest assignee's commit."""
    for value in (("e1",), "e1", None):
        h = hist((0, W, "j", "assign", "ok", ("e1", 1)), (1, W, "j", "commit", "ok", value))
        assert check_s3(h).violations == 1, value


def test_the_partition_s_lookups_compute_the_intervals_they_read() -> None:
    """``opened`` and ``started_again`` are answered from the intervals, computed on first use
    whichever is asked first."""
    from sim._checkers import _Partition

    h = hist(start(1, "e0"), start(2, "e0"), stop(3, "e0"), stop(4, "e0"))
    assert _Partition(h).opened("j") == [0]
    assert _Partition(h).started_again("j") == [("e0", 1, 2)]


def test_the_lease_allows_a_stop_within_a_microsecond_after_the_reassignment() -> None:
    """At the model's exact edges the stop and the reassignment coincide, and the drifting
    clock's conversions can put the stop a few ulps after: a microsecond is allowed."""
    h = hist((0, W, "j", "assign", "ok", ("e0", 1)), start(1, "e0"),
             (5.0, W, "j", "requeue", "ok", "no ping for T"), stop(5.0 + 1e-7, "e0"))
    assert check_lease(h).ok
    late = hist((0, W, "j", "assign", "ok", ("e0", 1)), start(1, "e0"),
                (5.0, W, "j", "requeue", "ok", "no ping for T"), stop(5.001, "e0"))
    assert check_lease(late).violations == 1


def test_s3_commit_without_assignment_and_encoder_commits_are_ignored() -> None:
    assert check_s3(hist((5, W, "j", "commit", "ok", ("e1", 1)))).violations == 1
    # An encoder's own commit request is not a committed result: only the world's counts.
    h = hist((0, W, "j", "assign", "ok", ("e1", 1)), (4, "e2", "j", "commit", "ok", "gateway"),
             (5, W, "j", "commit", "ok", ("e1", 1)))
    assert check_s3(h).ok


# ------------------------------------------------------------------------------------- lease


def assign(t: float, who: str, epoch: int, job: str = "j") -> tuple[Any, ...]:
    return (t, W, job, "assign", "ok", (who, epoch))


def requeue(t: float, reason: str = "no ping for T", job: str = "j") -> tuple[Any, ...]:
    return (t, W, job, "requeue", "ok", reason)


def test_lease_fires_when_the_owner_runs_past_a_timeout_requeue() -> None:
    h = hist(assign(0, "e1", 1), start(7, "e1"), requeue(60), stop(61.5, "e1", why="cancelled"))
    r = check_lease(h)
    assert (r.name, r.violations, r.jobs, r.ok) == ("lease", 1, ("j",), False)
    assert "e1, its owner (epoch 1), was still processing it [7.000, 61.500]" in r.examples[0]
    assert "reassigned it at 60.000 (no ping for T)" in r.examples[0]


def test_lease_fires_for_an_interval_never_closed_and_for_no_progress() -> None:
    h = hist(assign(0, "e1", 1), start(7, "e1"), requeue(90, "no progress for 80 s"))
    assert check_lease(h).violations == 1


def test_lease_silent_when_the_owner_stopped_before_or_at_the_requeue() -> None:
    before = hist(assign(0, "e1", 1), start(7, "e1"), stop(55, "e1", why="cancelled"),
                  requeue(60))
    at_the_instant = hist(assign(0, "e1", 1), start(7, "e1"), stop(60, "e1", why="cancelled"),
                          requeue(60))
    crashed = hist(assign(0, "e1", 1), start(7, "e1"), crash(30, "e1"), requeue(60))
    assert check_lease(before).ok and check_lease(at_the_instant).ok and check_lease(crashed).ok


def test_lease_silent_for_a_non_owner() -> None:
    # e1's assignment was overwritten by e2's accept: the gateway times out e2, not e1 (e1
    # still processing is S2's matter once anyone else starts, not the lease's).
    h = hist(assign(0, "e1", 1), start(7, "e1"), assign(8, "e2", 2), requeue(68),
             stop(70, "e1", why="cancelled"))
    assert check_lease(h).ok


def test_lease_silent_for_a_requeue_that_is_not_a_timeout() -> None:
    for reason in ("released", "rejectJob", "failJob"):
        h = hist(assign(0, "e1", 1), start(7, "e1"), requeue(20, reason), stop(22, "e1"))
        assert check_lease(h).ok, reason


def test_lease_owner_is_cleared_by_a_requeue_and_set_by_the_next_assign() -> None:
    # After a release the job has no owner: a later timeout judges only the new owner.
    h = hist(assign(0, "e1", 1), start(1, "e1"), requeue(5, "released"), assign(6, "e2", 2),
             start(8, "e2"), stop(10, "e2", why="cancelled"), requeue(66), stop(70, "e1"))
    assert check_lease(h).ok
    h = hist(assign(0, "e1", 1), requeue(60), start(61, "e1"), stop(62, "e1"))
    assert check_lease(h).ok  # started after the requeue: not the lease's business


# ---------------------------------------------------------------------------------------- L1


def test_l1_uncommitted_and_unseen_jobs() -> None:
    h = hist((0, W, "a", "assign", "ok", ("e1", 1)), (5, W, "a", "commit", "ok", ("e1", 1)),
             (1, W, "b", "assign", "ok", ("e2", 1)))
    r = check_l1(h, jobs=["a", "b", "c", "b"])
    assert (r.name, r.violations, r.jobs) == ("L1", 2, ("b", "c"))
    assert any("never committed" in e for e in r.examples)
    assert any("never seen" in e for e in r.examples)


def test_l1_late_commit_with_a_bound() -> None:
    h = hist((0, W, "late", "assign", "ok", ("e1", 1)),
             (160, W, "late", "commit", "ok", ("e1", 1)),
             (0, W, "fine", "assign", "ok", ("e1", 1)),
             (140, W, "fine", "commit", "ok", ("e1", 1)),
             (200, W, "after", "assign", "ok", ("e1", 1)),
             (245, W, "after", "commit", "ok", ("e1", 1)))
    assert check_l1(h, jobs=["late", "fine", "after"]).ok  # no bound: completion only
    r = check_l1(h, jobs=["late", "fine", "after"], horizon=100, bound=50)
    assert (r.violations, r.jobs) == (1, ("late",))
    assert "deadline 150.000" in r.examples[0]
    # Without a horizon the deadline is t0 + bound.
    assert check_l1(h, jobs=["after"], bound=40).jobs == ("after",)
    # check_all gives no residual unless told: a job first seen by the horizon, committed
    # half a second past horizon + bound, is late.
    edge = hist((0, W, "j", "assign", "ok", ("e1", 1)), (150.5, W, "j", "commit", "ok", ("e1", 1)))
    assert check_all(edge, jobs=["j"], horizon=100, bound=50)["L1"].jobs == ("j",)
    assert check_all(edge, jobs=["j"], horizon=100, bound=50, residual=1.0)["L1"].ok


def test_l1_bound_excuses_the_work_and_only_work_that_ran_to_its_end() -> None:
    h = hist(assign(0, "e1", 1), start(10, "e1"), stop(110, "e1"),
             (112, W, "j", "commit", "ok", ("e1", 1)))
    assert check_l1(h, jobs=["j"], horizon=0, bound=20).ok  # 112 s, of which 100 s of work
    slow = hist(assign(0, "e1", 1), start(10, "e1"), stop(110, "e1"),
                (140, W, "j", "commit", "ok", ("e1", 1)))
    r = check_l1(slow, jobs=["j"], horizon=0, bound=20)
    assert (r.violations, r.jobs) == (1, ("j",))
    assert "deadline 120.000 (20.000 s of protocol time allowed from 0.000, plus 100.000 s" \
        in r.examples[0]
    # Work cancelled when a lease was lost is the protocol's time, not the user's.
    wasted = hist(assign(0, "e1", 1), start(10, "e1"), stop(70, "e1", why="cancelled"),
                  assign(75, "e2", 2), start(80, "e2"), stop(100, "e2"),
                  (101, W, "j", "commit", "ok", ("e2", 2)))
    assert check_l1(wasted, jobs=["j"], horizon=0, bound=80).jobs == ("j",)
    assert check_l1(wasted, jobs=["j"], horizon=0, bound=81).ok
    # Work before the horizon is not counted (nor is the time it took).
    h = hist(start(0, "e1"), stop(50, "e1"), start(60, "e2"), stop(90, "e2"),
             (95, W, "j", "commit", "ok", ("e2", 1)))
    assert check_l1(h, jobs=["j"], horizon=70, bound=4, residual=1).ok  # 25 - 20 = 5
    assert not check_l1(h, jobs=["j"], horizon=70, bound=4).ok


def test_l1_residual_only_for_jobs_first_seen_before_the_horizon() -> None:
    h = hist(assign(0, "old", 1, "old"), (150, W, "old", "commit", "ok", ("old", 1)),
             assign(200, "new", 1, "new"), (300, W, "new", "commit", "ok", ("new", 1)))
    r = check_l1(h, jobs=["old", "new"], horizon=100, bound=60, residual=50)
    assert r.jobs == ("new",)  # old: 50 <= 60 + 50; new: 100 > 60 (no residual)


def test_l1_uncrowded_starts_every_clock_when_the_leftovers_are_gone() -> None:
    # Nothing waits for another job: a job arriving after the faults may still meet their
    # leftovers (until horizon + residual), and nothing more is granted, before or after.
    h = hist(assign(0, "old", 1, "old"), (175, W, "old", "commit", "ok", ("old", 1)),
             (120, W, "mid", "arrive", "ok"), assign(130, "mid", 1, "mid"),
             (200, W, "mid", "commit", "ok", ("mid", 1)),
             (300, W, "new", "arrive", "ok"), assign(310, "new", 1, "new"),
             (350, W, "new", "commit", "ok", ("new", 1)))
    jobs = ["old", "mid", "new"]
    # old: 100 + 50 + 20 = 170 < 175; mid: from 150, 170 < 200; new: from 300, 320 < 350
    r = check_l1(h, jobs=jobs, horizon=100, bound=20, residual=50, uncrowded=True)
    assert r.jobs == ("mid", "new", "old")
    assert "allowed from 150.000" in next(e for e in r.examples if "job mid" in e)
    assert check_l1(h, jobs=jobs, horizon=100, bound=75, residual=50, uncrowded=True).ok
    # 45: old by 195, mid by 195 (late), new by 345 (late); crowded, mid has from 120 only
    assert check_l1(h, jobs=jobs, horizon=100, bound=45, residual=50,
                    uncrowded=True).jobs == ("mid", "new")
    assert check_l1(h, jobs=["mid"], horizon=100, bound=75, residual=50).jobs == ("mid",)
    # No fault at all: every clock starts at the job's arrival.
    assert check_l1(h, jobs=["new"], horizon=-math.inf, bound=50, residual=1e9,
                    uncrowded=True).ok


def test_l1_bound_grants_others_only_where_a_job_can_wait_for_another() -> None:
    base = Scenario(encoders=3, jobs=3, assignment="myjob", infra_fraction=1.0)
    b = l1_bound(base)
    assert b.uncrowded and b.others == 0.0
    for crowded in (base.replace(jobs=4), base.replace(assignment="getjob")):
        c = l1_bound(crowded)
        assert not c.uncrowded
        assert c.others == (crowded.jobs - 1) * (c.residual + c.hand_out + c.attempt + c.finish)


def test_faults_stop_at_the_end_of_a_window_open_at_the_horizon() -> None:
    h = hist((0, W, None, "fault", "invoke", "gateway-outage"),
             (5, W, None, "fault", "ok", "gateway-outage"),
             (90, W, None, "fault", "invoke", "monitor-outage"),
             (130, W, None, "fault", "ok", "monitor-outage"))
    assert faults_stopped(h, 100) == 130
    assert faults_stopped(h, 60) == 60
    assert faults_stopped(h, None) is None
    assert faults_stopped(hist((90, W, None, "fault", "invoke", "x")), 100) == math.inf
    # A window that began at the horizon itself belongs to the faults; one that began after it
    # does not (the horizon is when the last window may begin), and only the world's windows
    # of no job count.
    at = hist((100, W, None, "fault", "invoke", "x"), (130, W, None, "fault", "ok", "x"))
    assert faults_stopped(at, 100) == 130
    assert faults_stopped(hist((100, W, None, "fault", "invoke", "x")), 100) == math.inf
    assert faults_stopped(hist((101, W, None, "fault", "invoke", "x")), 100) == 100
    assert faults_stopped(hist((90, "e0", None, "fault", "invoke", "x"),
                               (130, "e0", None, "fault", "ok", "x")), 100) == 100
    assert faults_stopped(hist((90, W, "j", "fault", "invoke", "x"),
                               (130, W, "j", "fault", "ok", "x")), 100) == 100
    assert faults_stopped(hist((90, W, None, "stall", "invoke", "x"),
                               (130, W, None, "stall", "ok", "x")), 100) == 100


def test_l1_bound_terms_for_the_conformance_base() -> None:
    sc = Scenario(encoders=2, jobs=1, infra_fraction=0.0, monitor_fraction=1.0,
                  write_delay=2.0, monitor_lag=5.0, pause_max=2.0, clock_drift=1.0,
                  cancel_latency=3.0, reassign_timeout=60.0, reassign_scan_interval=5.0,
                  confirm_timeout=20.0, poll_interval=20.0, crashes_per_hour=0.0)
    b = l1_bound(sc)
    kappa = 60 / 59
    lam = 1.5 * 0.2  # the monitor's latency is the slowest in use
    # The loop's longest idle wait, 1.5 × poll_interval, on the encoder's clock (κ); no
    # cool-down in this scenario, 30 s in the next.
    assert b.hand_out == pytest.approx(5 + 20 + kappa * 30 + lam)
    assert l1_bound(sc.replace(cooldown_s=30.0)).hand_out == pytest.approx(
        b.hand_out + kappa * 30)
    assert b.attempt == pytest.approx(4 * lam + kappa * 12)
    assert b.finish == pytest.approx(2 * lam)
    assert b.others == 0
    assert b.residual == pytest.approx(2 + max(
        2 + 60 + 5, kappa * 52 + 3, 10 + kappa * (12 + 20 + 1) + 2 * lam))
    # With the backoff feature the loop's waits grow to eight poll intervals.
    backoff = l1_bound(sc.replace(backoff=1.0))
    assert backoff.hand_out == pytest.approx(5 + 20 + kappa * 160 + lam)
    assert backoff.residual == b.residual
    assert b.bound == pytest.approx(b.hand_out + b.attempt + b.finish)
    two = l1_bound(sc.replace(jobs=2, encoders=1, crashes_per_hour=10.0))  # one waits
    assert two.residual == b.residual  # a restart (30 s) clears sooner than a stale assignment
    assert two.others == pytest.approx(b.residual + b.bound)


def test_l1_bound_waits_for_a_hung_request_to_be_given_up() -> None:
    """A request that hangs before the faults stop goes unanswered until its client gives up:
    the monitor's and database's timeout, aid's 30 s on aid nodes. The confirmation that gives
    up after it is the residual's slowest way to clear once the lease's and the scan's are
    short (T = 30 s, S = 0)."""
    sc = Scenario(infra_fraction=0.0, monitor_fraction=1.0, write_delay=0.0, monitor_lag=0.0,
                  pause_max=0.5, clock_drift=0.0, cancel_latency=0.5, reassign_timeout=30.0,
                  reassign_scan_interval=0.0, confirm_timeout=30.0, gateway_timeout=5.0)
    lam = 1.5 * max(sc.gateway_latency, sc.monitor_latency)
    confirming = 30.0 + sc.retry_interval + 2 * lam
    assert l1_bound(sc).residual == pytest.approx(0.5 + 5.0 + confirming)
    hung = sc.replace(hang_rate=0.1)
    assert l1_bound(hung).residual == pytest.approx(0.5 + 10.0 + confirming)  # client_timeout
    aid = hung.replace(aid_fraction=0.5)
    lam_aid = 1.5 * max(sc.gateway_latency, sc.monitor_latency, sc.aid_latency)
    assert l1_bound(aid).residual == pytest.approx(
        0.5 + 30.0 + 30.0 + sc.retry_interval + 2 * lam_aid)
    assert l1_bound(aid.replace(hang_rate=0.0)).residual < l1_bound(aid).residual - 20


def test_l1_bound_counts_a_shutdown_and_its_restart_one_after_the_other() -> None:
    """A graceful shutdown is told after the request in flight answers, then the work stops,
    the job is given back (up to three tries) and the node restarts: a sum, not a max (an
    adversarial review, 2026-12-04: the restart was counted only with crashes)."""
    sc = Scenario(infra_fraction=1.0, write_delay=0.0, monitor_lag=0.0, pause_max=0.5,
                  clock_drift=0.0, cancel_latency=0.5, reassign_timeout=30.0,
                  reassign_scan_interval=0.0, confirm_timeout=20.0, hang_rate=0.1,
                  gateway_latency=0.0, monitor_latency=0.0, database_latency=0.0)
    assert l1_bound(sc).residual == pytest.approx(0.5 + 10.0 + 20.0 + sc.retry_interval)
    down = sc.replace(shutdowns_per_hour=120.0)
    assert l1_bound(down).residual == pytest.approx(
        0.5 + 10.0 + 0.5 + 3 * sc.retry_interval + 5.0 + sc.restart_delay)
    assert l1_bound(down, without="residual.shutdown").residual == l1_bound(sc).residual
    both = down.replace(crashes_per_hour=60.0, restart_delay=60.0)  # down twice in a row
    assert l1_bound(both).residual == pytest.approx(0.5 + 2 * 60.0)


def test_l1_bound_drops_one_named_term_and_refuses_unknown_names() -> None:
    sc = Scenario(jobs=2, encoders=1, crashes_per_hour=10.0, monitor_lag=5.0, clock_drift=1.0)
    full = l1_bound(sc)
    assert l1_bound(sc, without="hand_out.lag").hand_out == pytest.approx(full.hand_out - 5.0)
    kappa = 1 / (1 - 1.0 / sc.reassign_timeout)
    settle = 3 * sc.write_delay + 1.0 + 5.0
    assert l1_bound(sc, without="attempt.drift").attempt == pytest.approx(
        full.attempt - (kappa - 1) * settle)
    assert l1_bound(sc, without="others").others == 0 < full.others
    for name in L1_TERMS:  # a dropped term never lengthens the bound
        weak = l1_bound(sc, without=name)
        assert weak.bound <= full.bound and weak.residual <= full.residual, name
    with pytest.raises(ValueError, match=r"'hand_out\.Δ'"):
        l1_bound(sc, without="hand_out.Δ")


def test_l1_bound_is_infinite_when_an_encoder_cannot_confirm_or_work_stalls() -> None:
    b = l1_bound(Scenario(infra_fraction=0.0, monitor_fraction=0.5))
    assert math.isinf(b.bound) and isinstance(b, L1Bound)
    if hasattr(Scenario(), "stall_rate"):  # the no-progress rule's stalls
        assert math.isinf(l1_bound(Scenario().replace(stall_rate=0.1)).bound)


def test_l1_bound_check_uses_when_faults_stopped() -> None:
    b = L1Bound(hand_out=10, attempt=0, finish=0, others=0, residual=0)
    h = hist((0, W, None, "fault", "invoke", "gateway-outage"),
             (50, W, None, "fault", "ok", "gateway-outage"),
             assign(20, "e1", 1), (55, W, "j", "commit", "ok", ("e1", 1)))
    assert b.check(h, jobs=["j"], horizon=30).ok  # from 50, not 30
    assert not check_l1(h, jobs=["j"], horizon=30, bound=10).ok


# ------------------------------------------------------------------------ double assignment


def claim_ok(t: float, p: str, tier: str = "gateway", job: str = "j") -> tuple[Any, ...]:
    return (t, p, job, "claim", "ok", tier)


def test_double_assigned_without_requeue_between() -> None:
    h = hist(claim_ok(0, "e1"), claim_ok(1, "e2"))
    assert double_assigned_jobs(h) == {"j"}


def test_not_double_assigned_with_requeue_or_commit_between() -> None:
    h = hist(claim_ok(0, "e1"), (5, W, "j", "requeue", "ok", "stale"), claim_ok(6, "e2"),
             (9, W, "j", "commit", "ok", ("e2", 2)), claim_ok(10, "e3"))
    assert double_assigned_jobs(h) == set()


def test_double_assignment_needs_two_processes_and_ok_answers() -> None:
    h = hist(claim_ok(0, "e1"), claim_ok(1, "e1"), (2, "e2", "j", "claim", "fail", "gateway"),
             (3, "e3", "j", "claim", "info", "gateway"), (4, "e4", "j", "claim", "invoke",
                                                          "gateway"))
    assert double_assigned_jobs(h) == set()


def test_double_assignment_tier_filter() -> None:
    h = hist(claim_ok(0, "e1", "database"), claim_ok(1, "e2", "gateway"))
    assert double_assigned_jobs(h) == {"j"}
    assert double_assigned_jobs(h, tiers={"gateway"}) == set()
    assert double_assigned_jobs(h, tiers={"gateway", "database"}) == {"j"}
    both = hist(claim_ok(0, "e1", "gateway"), claim_ok(1, "e2", "gateway"))
    assert double_assigned_jobs(both, tiers={"gateway"}) == {"j"}
    assert double_assigned_jobs(both, tiers={"database"}) == set()


def test_a_job_the_world_says_it_double_assigned_is_double_assigned() -> None:
    """The world's ``lie`` record (a double hand-out it made) counts whatever the claims' answers
    say; an encoder's record of that name does not."""
    assert double_assigned_jobs(hist((0, W, "j", "lie", "ok", None))) == {"j"}
    assert double_assigned_jobs(hist((0, "e1", "j", "lie", "ok", None))) == set()


# -------------------------------------------------------------------------------- check_all


def test_check_all_names_and_clean_history() -> None:
    h = hist((0, W, "j", "assign", "ok", ("e1", 1)), start(1, "e1"), stop(5, "e1"),
             (6, W, "j", "commit", "ok", ("e1", 1)))
    results = check_all(h, jobs=["j"], horizon=0, bound=10)
    assert list(results) == ["S1", "S2", "S3", "L1", "lease"]
    assert all(isinstance(r, CheckResult) and r.ok for r in results.values())
    assert [r.name for r in results.values()] == list(results)


def test_check_result_is_frozen() -> None:
    r = CheckResult("S1", 0, (), ())
    with pytest.raises(AttributeError):
        r.violations = 3  # type: ignore[misc]


# ----------------------------------------------------------------------- linear-time sanity


N_JOBS = 21_000


def synthetic(n: int) -> History:
    """Many jobs, each double-assigned; kind i%4: 0 overlap, 1 hand-off after stop,
    2 hand-off after crash (with reassignment), 3 single encoder. Every 1000th job (i%1000 ==
    999) is never committed; i%1000 == 1 gets a second commit."""
    recs: list[tuple[Any, ...]] = []
    for i in range(n):
        j, t = f"job-{i:06d}", i * 10.0
        a, b = f"e{i % 500}", f"e{(i + 1) % 500}"
        recs += [(t, W, j, "assign", "ok", (a, 1)),
                 (t + 0.1, a, j, "claim", "invoke", "gateway"), claim_ok(t + 0.2, a, job=j),
                 (t + 0.3, b, j, "claim", "invoke", "gateway"), claim_ok(t + 0.4, b, job=j),
                 start(t + 1, a, j)]
        committer, epoch = a, 1
        kind = i % 4
        if kind == 0:
            recs += [start(t + 2, b, j), stop(t + 5, a, j), stop(t + 6, b, j, why="cancelled")]
        elif kind == 1:
            recs += [stop(t + 5, a, j, why="cancelled"), (t + 5, W, j, "assign", "ok", (b, 2)),
                     start(t + 5, b, j), stop(t + 6, b, j)]
            committer, epoch = b, 2
        elif kind == 2:
            recs += [crash(t + 3, a), (t + 3.5, W, j, "assign", "ok", (b, 2)), start(t + 4, b, j),
                     stop(t + 5, b, j)]
            committer, epoch = b, 2
        else:
            recs.append(stop(t + 5, a, j))
        if i % 1000 != 999:
            recs.append((t + 7, W, j, "commit", "ok", (committer, epoch)))
        if i % 1000 == 1:
            recs.append((t + 8, W, j, "commit", "ok", (committer, epoch)))
    recs.sort(key=lambda r: r[0])
    return hist(*recs)


def test_large_history_is_checked_with_the_expected_counts() -> None:
    h = synthetic(N_JOBS)
    assert len(h) >= 200_000
    jobs = [f"job-{i:06d}" for i in range(N_JOBS)]
    results = check_all(h, jobs=jobs)
    overlaps = N_JOBS // 4
    assert results["S1"].violations == overlaps
    assert results["S2"].violations == overlaps
    assert len(results["S2"].jobs) == overlaps
    assert results["S3"].violations == N_JOBS // 1000
    assert results["L1"].violations == N_JOBS // 1000
    assert results["L1"].jobs[0] == "job-000999"
    assert len(double_assigned_jobs(h)) == N_JOBS


def test_l1_excuses_a_job_the_gateway_gave_up_while_faults_were_on() -> None:
    """The gateway's fifth-attempt rule can fail a job under crashes and outages; that loss is
    the gateway's while faults are on, and the chain's once they have stopped."""
    h = hist((5.0, W, "early", "assign", "ok", ("e0", 1)),
             (50.0, W, "early", "failed", "ok", 5),
             (5.0, W, "late", "assign", "ok", ("e0", 1)),
             (150.0, W, "late", "failed", "ok", 5))
    result = check_l1(h, jobs=["early", "late"], horizon=100.0, bound=1000.0)
    assert result.jobs == ("late",)
    assert not check_l1(h, jobs=["early"]).ok, "without a horizon every loss counts"


def test_l1_s_residual_at_its_edges() -> None:
    """A job first seen by the horizon (at it, too) gets ``residual`` on top of ``bound``; one
    seen after it gets nothing more; and only check_l1's ``uncrowded`` moves every start to
    ``horizon + residual`` (check_all judges crowded worlds)."""
    def job(t0: float, commit: float) -> History:
        return hist((t0, W, "j", "assign", "ok", ("e1", 1)), (commit, W, "j", "commit", "ok",
                                                                 ("e1", 1)))

    at_horizon = job(100, 160)  # 100 + 50 + 10: exactly on time
    assert check_l1(at_horizon, jobs=["j"], horizon=100, bound=50, residual=10).ok
    assert not check_l1(job(100, 160.5), jobs=["j"], horizon=100, bound=50, residual=10).ok
    after = job(105, 155.5)  # after the horizon: 105 + 50, no residual
    assert not check_l1(after, jobs=["j"], horizon=100, bound=50, residual=10).ok
    assert not check_all(after, jobs=["j"], horizon=100, bound=50, residual=10)["L1"].ok
    # Uncrowded: its clock starts at 110 (horizon + residual), so 160 is the deadline.
    assert check_l1(after, jobs=["j"], horizon=100, bound=50, residual=10, uncrowded=True).ok


def test_l1_excuses_a_job_given_up_until_the_residual_after_the_horizon() -> None:
    def given_up(at: float) -> History:
        return hist((5.0, W, "j", "assign", "ok", ("e0", 1)), (at, W, "j", "failed", "ok", 5))

    for at, excused in ((105.0, True), (110.0, True), (110.5, False)):
        result = check_l1(given_up(at), jobs=["j"], horizon=100.0, bound=1000.0, residual=10.0)
        assert result.ok is excused, at


def test_l1_says_whether_a_missing_job_was_never_seen_or_is_stuck() -> None:
    seen = hist((1, W, "j", "assign", "ok", ("e1", 1)))
    assert "lost or stuck" in check_l1(seen, jobs=["j"]).examples[0]
    assert "never seen" in check_l1(seen, jobs=["k"]).examples[0]


def test_l1_judges_an_owner_s_first_run_not_its_restarted_process_s() -> None:
    """The gateway's hand-out (no claim on record) to e0, whose run ended without a give-back
    before it crashed: it walked away, whatever its next process's run does afterwards (a
    later outcome, after the crash, must not re-decide the first)."""
    h = hist((1.0, W, "j", "assign", "ok", ("e0", 1)),
             (2.0, "e0", "j", "outcome", "ok", ("GRACEFUL_SKIP", False)),
             (3.0, "e0", None, "crash", "info", None),
             (4.0, "e0", "j", "outcome", "ok", ("GRACEFUL_SKIP", False)),
             (40.0, W, "j", "requeue", "ok", "no ping for T"),
             (50.0, W, "j", "failed", "ok", 5))
    assert check_l1(h, jobs=["j"], horizon=100.0, bound=1000.0).jobs == ("j",)


def test_l1_excuses_a_job_taken_back_by_timeout_before_anyone_was_assigned_it() -> None:
    """A timeout requeue with no assignment on record before it is nobody's walking away: the
    job the gateway then gave up while the faults lasted is still the faults' loss."""
    h = hist((10.0, W, "j", "requeue", "ok", "no ping for T"),
             (50.0, W, "j", "failed", "ok", 5))
    assert check_l1(h, jobs=["j"], horizon=100.0, bound=1000.0).ok


def test_l1_does_not_excuse_a_job_the_chain_itself_gave_back_as_failed() -> None:
    """An encoder that failJobs (or releases as failed) a job whose work had not failed on its
    own chose to: five such attempts make the gateway give the job up, and that loss is the
    chain's even while faults are on (a "safe and useless" chain that never processed a job
    passed L1 this way: a review of the checkers). A plain give-back (a rejectJob, which
    counts an attempt too; a database release, which does not) and the gateway's own timeouts
    still leave it the faults': inside the model only a fault makes the shipped chain give a
    job back (docs/safety-model.md, L1)."""
    def given_up(reason: str) -> History:
        return hist((5.0, W, "j", "assign", "ok", ("e0", 1)),
                    (9.0, W, "j", "requeue", "ok", reason),
                    (50.0, W, "j", "failed", "ok", 5))
    for reason in ("failJob", "released as failed"):
        result = check_l1(given_up(reason), jobs=["j"], horizon=100.0, bound=1000.0)
        assert result.jobs == ("j",), reason
    for reason in ("no ping for T", "no progress for N", "rejectJob", "released"):
        assert check_l1(given_up(reason), jobs=["j"], horizon=100.0, bound=1000.0).ok, reason


def test_l1_does_not_excuse_a_job_whose_owner_walked_away_from_it() -> None:
    """An owner whose run ended (its outcome) while the job was assigned to it, sending no
    give-back and no finish, left the gateway to take the job back by timeout: that counted
    attempt is the chain's loss, and a job given up after it is not the faults' (a review of
    the L1 oracle, session 27). A run that gave the job back, or sent its finish, or a process
    that crashed (no outcome), leaves it the faults'."""
    def given_up(*middle: tuple[Any, ...]) -> History:
        return hist((5.0, W, "j", "assign", "ok", ("e0", 1)), *middle,
                    (70.0, W, "j", "requeue", "ok", "no ping for T"),
                    (90.0, W, "j", "failed", "ok", 5))
    walked = given_up((20.0, "e0", "j", "outcome", "ok", ("GAVE_UP", True)))
    assert check_l1(walked, jobs=["j"], horizon=100.0, bound=1000.0).jobs == ("j",)
    for sent in ("release", "commit"):
        gave_back = given_up((19.0, "e0", "j", sent, "invoke", None),
                             (20.0, "e0", "j", "outcome", "ok", ("X", True)))
        assert check_l1(gave_back, jobs=["j"], horizon=100.0, bound=1000.0).ok, sent
    crashed = given_up((20.0, "e0", None, "crash", "info", None))
    assert check_l1(crashed, jobs=["j"], horizon=100.0, bound=1000.0).ok
    # another encoder's run ending says nothing about the owner's
    other = given_up((20.0, "e1", "j", "outcome", "ok", ("SKIPPED", False)))
    assert check_l1(other, jobs=["j"], horizon=100.0, bound=1000.0).ok
    # an outcome before the assignment landed (a late claim) is not walking away from it
    early = hist((3.0, "e0", "j", "outcome", "ok", ("X", True)),
                 (5.0, W, "j", "assign", "ok", ("e0", 1)),
                 (70.0, W, "j", "requeue", "ok", "no ping for T"),
                 (90.0, W, "j", "failed", "ok", 5))
    assert check_l1(early, jobs=["j"], horizon=100.0, bound=1000.0).ok


def test_l1_does_not_blame_a_restarted_process_for_its_crashed_predecessor_s_late_accept(
) -> None:
    """A claim sent by a process that crashed before it landed (a late accept) leaves an
    assignment no live run ever held. The owner's next process, offered the job and refused
    (it is not queued), did not walk away from it: the gateway's timeout of it is the crash's
    cost (the CRASH_LATE_ACCEPT world of ``conformance/test_regressions.py``). The same
    refusal by the process that sent the claim still counts as walking away."""
    crash = (4.0, "e0", None, "crash", "info", None)
    def history(*crashed: tuple[Any, ...]) -> History:
        return hist((3.0, "e0", "j", "claim", "invoke", "gateway"), *crashed,
                    (5.0, W, "j", "assign", "ok", ("e0", 1)),
                    (31.0, "e0", "j", "claim", "invoke", "gateway"),
                    (31.5, "e0", "j", "claim", "fail", "gateway"),
                    (32.0, "e0", "j", "outcome", "ok", ("CLAIM_REFUSED", False)),
                    (70.0, W, "j", "requeue", "ok", "no ping for T"),
                    (90.0, W, "j", "failed", "ok", 5))
    assert check_l1(history(crash), jobs=["j"], horizon=100.0, bound=1000.0).ok
    # without the crash, the run that sent the claim ended with the job held
    assert check_l1(history(), jobs=["j"], horizon=100.0, bound=1000.0).jobs == ("j",)


def test_l1_judges_a_run_that_walked_away_before_its_own_late_accept_landed() -> None:
    """The run whose claim made the assignment is judged from its claim: one that ended
    (walked away) before its late accept landed, with nothing given back, lost the attempt
    by its choice, whether or not its process then crashed before the landing. Judged from
    the assignment, it was never judged at all: a chain that ended every run right after its
    claim lost jobs and passed (an adversarial review, session 32)."""
    def history(*crashed: tuple[Any, ...]) -> History:
        return hist((3.0, "e0", "j", "claim", "invoke", "gateway"),
                    (3.1, "e0", "j", "claim", "ok", "gateway"),
                    (3.1, "e0", "j", "outcome", "ok", ("GAVE_UP", True)), *crashed,
                    (5.0, W, "j", "assign", "ok", ("e0", 1)),
                    (70.0, W, "j", "requeue", "ok", "no ping for T"),
                    (90.0, W, "j", "failed", "ok", 5))
    assert check_l1(history(), jobs=["j"], horizon=100.0, bound=1000.0).jobs == ("j",)
    crashed = (4.0, "e0", None, "crash", "info", None)
    assert check_l1(history(crashed), jobs=["j"], horizon=100.0, bound=1000.0).jobs == ("j",)
    # a give-back sent after the landing keeps it the faults'
    gave_back = hist((3.0, "e0", "j", "claim", "invoke", "gateway"),
                     (3.1, "e0", "j", "outcome", "ok", ("GAVE_UP", True)),
                     (5.0, W, "j", "assign", "ok", ("e0", 1)),
                     (6.0, "e0", "j", "release", "invoke", "gateway"),
                     (70.0, W, "j", "requeue", "ok", "no ping for T"),
                     (90.0, W, "j", "failed", "ok", 5))
    assert check_l1(gave_back, jobs=["j"], horizon=100.0, bound=1000.0).ok
    # The run judged is the one of the *latest* claim: an earlier run's outcome (a refused
    # claim, say) neither stands in for it nor hides it (mutation testing, session 35).
    again = hist((1.0, "e0", "j", "claim", "invoke", "gateway"),
                 (1.1, "e0", "j", "claim", "fail", "gateway"),
                 (1.2, "e0", "j", "outcome", "ok", ("CLAIM_REFUSED", False)),
                 (3.0, "e0", "j", "claim", "invoke", "gateway"),
                 (3.1, "e0", "j", "outcome", "ok", ("GAVE_UP", True)),
                 (5.0, W, "j", "assign", "ok", ("e0", 1)),
                 (70.0, W, "j", "requeue", "ok", "no ping for T"),
                 (90.0, W, "j", "failed", "ok", 5))
    assert check_l1(again, jobs=["j"], horizon=100.0, bound=1000.0).jobs == ("j",)

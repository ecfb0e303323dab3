"""S1, S2, S3, the lease and the give-back lemma against an oracle that shares no code with
the checkers.

The checkers sweep each job's processing intervals with heaps, so that a history of millions of
records costs ``n log n``; their rules at one instant (a hand-off at the very instant of a stop,
two starts at once, a zero-length interval) live in the sweep's ordering. A sweep is easy to get
subtly wrong, and the example tests pin only the cases someone thought of. Here every history
Hypothesis draws (a few processes and jobs, starts, stops, failed stops and crashes, on a coarse
clock so that ties are common) is judged twice: by the checkers, and by the definitions read
straight from the safety model, by brute force over every pair of intervals.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sim import WORLD, History, check_give_back, check_lease, check_s1, check_s2, check_s3
from sim._checkers import _covered, _Partition, _work_spans

PROCESSES = ("e0", "e1", "e2")
JOBS = ("j0", "j1")


def _intervals(records: list[tuple[Any, ...]]
               ) -> tuple[list[tuple[str, str, float, float, int]], dict[str, int]]:
    """Every processing interval (process, job, start, end, position of its start), read in
    history order: a start opens one; a start while the process still holds the job is one
    more start to stop (and counts once for S2, per job); a stop ends the interval once every
    start of it has been stopped; a crash of the process ends all of its intervals; what is
    open at the end never ends."""
    open_: dict[tuple[str, str], list[Any]] = {}  # (process, job) -> [start, starts, position]
    done: list[tuple[str, str, float, float, int]] = []
    again: dict[str, int] = {}
    for pos, (t, process, job, op, phase, _) in enumerate(records):
        if op == "crash":
            for key in [k for k in open_ if k[0] == process]:
                begun, _, at = open_.pop(key)
                done.append((process, key[1], begun, t, at))
        elif op == "start" and phase == "ok":
            held = open_.get((process, job))
            if held is None:
                open_[(process, job)] = [t, 1, pos]
            else:
                held[1] += 1
                again[job] = again.get(job, 0) + 1
        elif op == "stop" and phase == "ok":
            held = open_.get((process, job))
            if held is not None:
                held[1] -= 1
                if held[1] == 0:
                    del open_[(process, job)]
                    done.append((process, job, held[0], t, held[2]))
    done += [(p, j, begun, math.inf, at) for (p, j), (begun, _, at) in open_.items()]
    return done, again


def _s2(records: list[tuple[Any, ...]]) -> tuple[int, set[str]]:
    """Pairs of intervals of different processes on one job that overlap (``a.start < b.end``
    and ``b.start < a.end``), plus every start made while the process still held the job."""
    ivs, again = _intervals(records)
    pairs, jobs = 0, set(again)
    for i, a in enumerate(ivs):
        for b in ivs[i + 1:]:
            if a[1] == b[1] and a[0] != b[0] and a[2] < b[3] and b[2] < a[3]:
                pairs += 1
                jobs.add(a[1])
    return pairs + sum(again.values()), jobs


def _s1(records: list[tuple[Any, ...]]) -> tuple[int, set[str]]:
    """Starts made while another process held the job: one that started before and had not
    stopped (a stop or crash at the very instant is a hand-off), or one that started at the
    same instant and runs on, when this start runs on too or was recorded after it."""
    ivs, _ = _intervals(records)
    bad, jobs = 0, set()
    for p, job, s, e, at in ivs:
        for q, other, s2, e2, at2 in ivs:
            if other != job or q == p:
                continue
            if s2 < s < e2 or (s2 == s < e2 and (e > s or at2 < at)):
                bad += 1
                jobs.add(job)
                break
    return bad, jobs


def _lease(records: list[tuple[Any, ...]]) -> tuple[int, set[str]]:
    """Timeout requeues ("no ping ...", "no progress ...") at which the job's owner of record
    (the latest assignment since the job's last requeue, in history order) was processing it:
    an interval of it that began before the requeue (at its instant only if the start was
    recorded before it) and had not ended by then (a microsecond of float rounding allowed)."""
    ivs, _ = _intervals(records)
    owner: dict[str, str | None] = {}
    bad, jobs = 0, set()
    for pos, (t, process, job, op, phase, value) in enumerate(records):
        if process != WORLD or phase != "ok":
            continue
        if op == "assign":
            owner[job] = value[0]
        elif op == "requeue":
            held = owner.pop(job, None)
            if held is None or not str(value).startswith(("no ping", "no progress")):
                continue
            if any(p == held and j == job and (s < t or (s == t and at < pos)) and t < e - 1e-6
                   for p, j, s, e, at in ivs):
                bad += 1
                jobs.add(job)
    return bad, jobs


def _s3(records: list[tuple[Any, ...]]) -> tuple[int, set[str]]:
    """World commits that are not the job's first, or not by its latest assignee (who, epoch)
    in history order, or with no assignment before them."""
    latest: dict[str, tuple[Any, Any]] = {}
    committed: set[str] = set()
    bad, jobs = 0, set()
    for _, process, job, op, phase, value in records:
        if process != WORLD or phase != "ok":
            continue
        if op == "assign":
            latest[job] = tuple(value)
        elif op == "commit":
            if job in committed or latest.get(job) != tuple(value):
                bad += 1
                jobs.add(job)
            committed.add(job)
    return bad, jobs


def _give_back(records: list[tuple[Any, ...]]) -> tuple[int, set[str]]:
    """Timeout requeues of a job whose owner of record (as for the lease) had ended the attempt
    of the claim that made it the owner saying nothing was held: the owner's latest claim on
    the job before that assignment, and the first outcome of that process after it, with no
    other claim of it and no crash of it in between, recorded before the requeue."""
    bad, jobs = 0, set()
    for pos, (t, process, job, op, phase, value) in enumerate(records):
        if not (process == WORLD and op == "requeue" and phase == "ok"
                and str(value).startswith(("no ping", "no progress"))):
            continue
        assigned = None
        for a in range(pos - 1, -1, -1):
            r = records[a]
            if r[1] == WORLD and r[2] == job and r[4] == "ok" and r[3] in ("assign", "requeue"):
                assigned = a if r[3] == "assign" else None
                break
        if assigned is None:
            continue
        owner = records[assigned][5][0]
        claims = [c for c in range(assigned) if records[c][1:5] == (owner, job, "claim", "invoke")]
        if not claims:
            continue
        claimed = claims[-1]
        for o in range(claimed + 1, pos):
            r = records[o]
            if r[1] != owner:
                continue
            if r[3] == "crash" and r[2] is None and r[4] in ("info", "ok"):
                break
            if r[2] == job and r[3] == "claim" and r[4] == "invoke":
                break
            if r[2] == job and r[3] == "outcome":
                if not r[5][1] and r[0] <= t:
                    bad += 1
                    jobs.add(job)
                break
    return bad, jobs


@st.composite
def histories(draw: st.DrawFn, *, world: bool = False) -> list[tuple[Any, ...]]:
    """Starts, stops (some failed) and crashes of a few processes on a few jobs, on a coarse
    clock; with ``world``, the world's assignments, requeues (timeouts among them) and commits
    too, some failed."""
    records: list[tuple[Any, ...]] = []
    kinds = ["start", "start", "stop", "stop", "stop-failed", "crash"]
    if world:
        kinds += ["assign", "assign", "requeue", "requeue", "commit", "claim", "claim", "outcome"]
    # The world's lemmas need one process's claim, assignment, work and outcome on one job,
    # in order, before a timeout: with the world's records drawn, two processes, one job and
    # whole attempts among the random records make such sequences common.
    processes, jobs = (PROCESSES[:2], JOBS[:1]) if world else (PROCESSES, JOBS)
    t = 0.0
    for _ in range(draw(st.integers(0, 20 if world else 14))):
        t += draw(st.sampled_from((0.0, 0.0, 0.5, 1.0)))
        process = draw(st.sampled_from(processes))
        kind = draw(st.sampled_from(kinds))
        if world and draw(st.integers(0, 3)) == 0:
            # An attempt in order, any of its steps left out: claim, assignment, work,
            # outcome, a requeue (the lemmas' sequences; among random records, rare).
            job = draw(st.sampled_from(jobs))
            steps = [(process, job, "claim", "invoke", "gateway"),
                     (WORLD, job, "assign", draw(st.sampled_from(("ok", "ok", "fail"))),
                      (process, draw(st.integers(1, 2)))),
                     (process, job, "start", "ok", None),
                     (process, job, "outcome", "ok", ("CODE", draw(st.booleans()))),
                     (WORLD, job, "requeue", "ok",
                      draw(st.sampled_from(("no ping for T", "no progress for N", "released"))))]
            for step in steps:
                if draw(st.integers(0, 4)):
                    t += draw(st.sampled_from((0.0, 0.5)))
                    records.append((t, *step))
            continue
        if kind in ("assign", "requeue", "commit"):
            job = draw(st.sampled_from(jobs))
            phase = draw(st.sampled_from(("ok", "ok", "ok", "fail")))
            if kind == "requeue":
                value: Any = draw(st.sampled_from(("no ping for T", "no ping for T",
                                                   "no progress for N", "released", "failed")))
            else:
                value = (process, draw(st.integers(1, 2)))
            records.append((t, WORLD, job, kind, phase, value))
            continue
        if kind == "claim":
            op = draw(st.sampled_from(("claim", "claim", "verify", "heartbeat")))
            records.append((t, process, draw(st.sampled_from(jobs)), op, "invoke", "gateway"))
            continue
        if kind == "outcome":
            records.append((t, process, draw(st.sampled_from(jobs)), "outcome", "ok",
                            ("CODE", draw(st.booleans()))))
            continue
        if kind == "crash":
            records.append((t, process, None, "crash", draw(st.sampled_from(("info", "ok"))),
                            None))
            continue
        job = draw(st.sampled_from(jobs))
        if kind == "start":
            records.append((t, process, job, "start", "ok", None))
        else:
            records.append((t, process, job, "stop", "fail" if kind == "stop-failed" else "ok",
                            "done"))
    return records


@settings(max_examples=1500, deadline=None)
@given(histories())
def test_s1_and_s2_agree_with_their_definitions_on_every_history(records: list[Any]) -> None:
    history = History(records)
    s1, s2 = check_s1(history), check_s2(history)
    assert (s1.violations, set(s1.jobs)) == _s1(records)
    assert (s2.violations, set(s2.jobs)) == _s2(records)
    assert len(s1.examples) == min(s1.violations, 5)
    assert bool(s2.examples) == bool(s2.violations) and len(s2.examples) <= 5


@settings(max_examples=1500, deadline=None)
@given(histories(world=True))
def test_s3_the_lease_and_the_give_back_agree_with_their_definitions(records: list[Any]
                                                                         ) -> None:
    history = History(records)
    s3, lease, given = check_s3(history), check_lease(history), check_give_back(history)
    assert (s3.violations, set(s3.jobs)) == _s3(records)
    assert (lease.violations, set(lease.jobs)) == _lease(records)
    assert (given.violations, set(given.jobs)) == _give_back(records)
    for result in (s3, lease, given):  # each violation is explained, up to five of them
        assert len(result.examples) == min(result.violations, 5), result


def test_the_oracle_sees_what_the_definitions_say() -> None:
    """The oracle itself, on histories whose verdicts are known by hand."""
    overlap = [(1, "e0", "j0", "start", "ok", None), (2, "e1", "j0", "start", "ok", None),
               (3, "e0", "j0", "stop", "ok", "done")]
    assert _s1(overlap) == (1, {"j0"}) and _s2(overlap) == (1, {"j0"})
    hand_off = [(1, "e0", "j0", "start", "ok", None), (2, "e0", "j0", "stop", "ok", "done"),
                (2, "e1", "j0", "start", "ok", None)]
    assert _s1(hand_off) == (0, set()) and _s2(hand_off) == (0, set())
    crashed = [(1, "e0", "j0", "start", "ok", None), (2, "e0", None, "crash", "info", None),
               (2, "e1", "j0", "start", "ok", None)]
    assert _s1(crashed) == (0, set()) and _s2(crashed) == (0, set())
    failed_stop = [(1, "e0", "j0", "start", "ok", None), (2, "e0", "j0", "stop", "fail", "x"),
                   (3, "e1", "j0", "start", "ok", None)]
    assert _s1(failed_stop) == (1, {"j0"}) and _s2(failed_stop) == (1, {"j0"})
    twice = [(1, "e0", "j0", "start", "ok", None), (2, "e0", "j0", "start", "ok", None)]
    assert _s1(twice) == (0, set()) and _s2(twice) == (1, {"j0"})
    at_once = [(1, "e0", "j0", "start", "ok", None), (1, "e1", "j0", "start", "ok", None)]
    assert _s1(at_once) == (2, {"j0"}) and _s2(at_once) == (1, {"j0"})
    timed_out = [(1, WORLD, "j0", "assign", "ok", ("e0", 1)), (2, "e0", "j0", "start", "ok", None),
                 (3, WORLD, "j0", "requeue", "ok", "no ping for T")]
    assert _lease(timed_out) == (1, {"j0"})
    assert _lease([*timed_out[:2], (3, "e0", "j0", "stop", "ok", "cancelled"),
                   timed_out[2]]) == (0, set())
    assert _lease([*timed_out[:2], (3, WORLD, "j0", "requeue", "ok", "released")]) == (0, set())
    stale = [(1, WORLD, "j0", "assign", "ok", ("e0", 1)), (2, WORLD, "j0", "assign", "ok",
                                                           ("e1", 2)),
             (3, WORLD, "j0", "commit", "ok", ("e0", 1)), (4, WORLD, "j0", "commit", "ok",
                                                          ("e1", 2))]
    assert _s3(stale) == (2, {"j0"}) and _s3(stale[1:2] + stale[3:]) == (0, set())
    said_free = [(1, "e0", "j0", "claim", "invoke", "gateway"),
                 (2, WORLD, "j0", "assign", "ok", ("e0", 1)),
                 (3, "e0", "j0", "outcome", "ok", ("SHUTDOWN", False)),
                 (4, WORLD, "j0", "requeue", "ok", "no ping for T")]
    assert _give_back(said_free) == (1, {"j0"})
    held = [*said_free[:2], (3, "e0", "j0", "outcome", "ok", ("SHUTDOWN", True)), said_free[3]]
    assert _give_back(held) == (0, set())
    crashed_first = [*said_free[:2], (2.5, "e0", None, "crash", "info", None), *said_free[2:]]
    assert _give_back(crashed_first) == (0, set())


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 6),
                          st.sampled_from(("done", "done", "cancelled"))), max_size=8),
       st.integers(-2, 24), st.integers(-2, 24))
def test_l1_s_work_time_is_the_measure_of_the_done_intervals_within_the_window(
        spans: list[tuple[int, int, str]], lo: int, hi: int) -> None:
    """L1 does not count the time some encoder's work ran to its natural end (``done``): the
    measure of the union of those intervals within ``[lo, hi]``, by counting the unit steps
    any of them covers (integer ends), against the checker's merged spans and prefix sums."""
    records: list[tuple[Any, ...]] = []
    for n, (start, length, how) in enumerate(spans):
        records += [(start, f"e{n}", "j", "start", "ok", None),
                    (start + length, f"e{n}", "j", "stop", "ok", how)]
    records.sort(key=lambda r: r[0])
    done = [(a, a + d) for a, d, how in spans if how == "done"]
    covered = sum(1 for x in range(lo, hi) if any(a <= x < b for a, b in done))
    assert _covered(_work_spans(_Partition(History(records))), lo, hi) == covered

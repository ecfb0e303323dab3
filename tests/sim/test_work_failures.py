"""Work that fails on its own (``work_fail_rate``, session 46): the simulated encode exits
non-zero at a point drawn within it, while the faults last. Until then no simulated work
failed, so the protocol's failed path (``WorkEnded(False)``: ``WORK_FAILED``, a give-back as
failed, an attempt towards the gateway's fifth-attempt rule) was judged by no property.

Here: the driver's failures (where they fall, the same in every chain, none after the faults
stop), L1's oracle (a job the failures used up is the faults' loss; one given back as failed
without a failure stays the chain's), and the lemma ``finished-work`` (no finish without a
work run to its end)."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.canaries import EncodesTwice, FinishesFailedWork
from conformance.families import FAMILIES
from conformance.worlds import BASE, World, race
from sim import WORLD, History, Scenario, ScenarioError, check_finished_work, check_l1, run_once

W = WORLD
#: Every attempt fails while the faults last (until 400 s), none after.
FAILING = BASE.replace(work_fail_rate=1.0, jobs=2, encoders=2, faults_until=400.0)


def _attempts(history: History) -> dict[str, list[tuple[str, float]]]:
    """Per job, each attempt's end (``done``, ``failed``, ``cancelled``, ...) and how long its
    work ran, in start order."""
    started: dict[tuple[str, str], float] = {}
    out: dict[str, list[tuple[str, float]]] = {}
    for t, process, job, op, phase, value in history:
        if op == "start" and phase == "ok":
            started[(process, job)] = t
        elif op == "stop" and phase == "ok" and (process, job) in started:
            out.setdefault(job, []).append((value, t - started.pop((process, job))))
    return out


def test_work_fails_only_while_the_faults_last_and_each_failure_is_given_back_as_failed():
    result = run_once(FAILING, "hardened", 3)
    history = result.history
    ends = [(t, value) for t, _, _, op, phase, value in history if op == "stop" and phase == "ok"]
    failed = [t for t, value in ends if value == "failed"]
    assert failed and all(t < 400.0 for t in failed)
    assert all(value == "done" for t, value in ends if t >= 400.0)
    # Each failure: the run's outcome WORK_FAILED, and the job given back with failJob.
    outcomes = [value for _, _, _, op, _, value in history if op == "outcome"]
    assert sum(1 for o in outcomes if o[0] == "WORK_FAILED") == len(failed)
    requeues = [value for _, p, _, op, _, value in history if p == W and op == "requeue"]
    assert requeues.count("failJob") == len(failed)


#: Failures planned near the faults' end (120 s), on nodes that pause often and for P
#: at a time: each pause moves the work's events, the planned failure included.
PAUSED = BASE.replace(work_fail_rate=1.0, pauses_per_hour=600.0, pause_max=2.0,
                      edge_rate=1.0, faults_until=120.0, encode_mean_s=200.0, jobs=2,
                      encoders=2)


@pytest.mark.parametrize("seed", [7, 14, 23])
def test_a_pause_never_moves_a_failure_past_the_faults_end(seed):
    """A failure is drawn only before the faults stop, but a pause moves the rest of the work,
    the failure with it: before session 46's review it then came up to 20 s after them (on
    these seeds), a fault after the faults stopped. Moved there, it does not happen: the
    work runs on to its end, as drawn."""
    history = race(World(PAUSED, (), seed), "hardened").result.history
    ends = [(t, value) for t, _, _, op, phase, value in history if op == "stop" and phase == "ok"]
    assert all(t < 120.0 for t, value in ends if value == "failed")
    # The work spared by it still ran to its end after the faults stopped.
    assert any(value == "done" and t >= 120.0 for t, value in ends)


def test_without_faults_no_work_fails():
    history = run_once(FAILING.replace(faults_until=0.0), "hardened", 3).history
    assert not any(op == "stop" and value == "failed" for *_, op, _, value in history)
    assert sum(1 for _, p, _, op, *_ in history if p == W and op == "commit") == 2


def test_a_failure_is_the_same_in_every_chain():
    """Drawn per (job, attempt), apart from the work's lengths: the n-th attempt at a job
    fails (or not) after the same time in every chain (common random numbers)."""
    sc = BASE.replace(work_fail_rate=0.5, jobs=4, encoders=2, faults_until=None,
                      max_time=3000.0)
    runs = [_attempts(run_once(sc, chain, 11).history)
            for chain in ("hardened", "trust-gateway")]
    compared = failures = 0
    for job in runs[0]:
        for (end_a, ran_a), (end_b, ran_b) in zip(runs[0][job], runs[1].get(job, []),
                                                  strict=False):
            if {end_a, end_b} <= {"done", "failed"}:
                compared += 1
                failures += end_a == "failed"
                assert (end_a, round(ran_a, 6)) == (end_b, round(ran_b, 6)), job
    assert compared >= 4 and failures >= 1


def test_the_rate_is_a_probability():
    with pytest.raises(ScenarioError, match="work_fail_rate"):
        Scenario(work_fail_rate=1.5)


# ---- L1's oracle


def _given_up_after(*work: Any) -> History:
    """e0 claims and gets job j five times; each attempt ends as ``work`` says (a tuple: the
    ends of the runs it started one after the other), then is given back as failed; the
    gateway gives the job up after the fifth."""
    records: list[tuple[Any, ...]] = []
    t = 0.0
    for n, ends in enumerate(work, start=1):
        records += [(t, "e0", "j", "claim", "invoke", "gateway"),
                    (t + 0.1, W, "j", "assign", "ok", ("e0", n))]
        for k, end in enumerate(ends if isinstance(ends, tuple) else (ends,)):
            records.append((t + 1 + k, "e0", "j", "start", "ok", None))
            if end is not None:
                records.append((t + 1.5 + k, "e0", "j", "stop", "ok", end))
        records += [(t + 6, "e0", "j", "release", "invoke", "gateway"),
                    (t + 6, W, "j", "requeue", "ok", "failJob"),
                    (t + 6.1, "e0", "j", "outcome", "ok", ("WORK_FAILED", False))]
        t += 10
    records.append((t, W, "j", "failed", "ok", 5))
    return History(records)


def test_l1_excuses_a_job_used_up_by_work_that_failed_while_the_faults_lasted():
    assert check_l1(_given_up_after(*["failed"] * 5), jobs=["j"], horizon=100.0,
                    bound=1000.0).ok


@pytest.mark.parametrize("unfailed", ["done", "cancelled", None])
def test_l1_counts_a_give_back_as_failed_of_work_that_had_not_failed(unfailed):
    """One of the five give-backs as failed after work that finished, was cancelled, or was
    still running: the chain's choice, so the job is its loss."""
    history = _given_up_after("failed", "failed", unfailed, "failed", "failed")
    assert check_l1(history, jobs=["j"], horizon=100.0, bound=1000.0).jobs == ("j",)


def test_l1_excuses_a_give_back_as_failed_after_a_retry_that_failed_too():
    """A chain may run a failed work again before it gives the job back (ffmpeg retried on
    the spot): each run failed on its own, so the give-back is still the faults' doing."""
    history = _given_up_after(("failed", "failed"), *["failed"] * 4)
    assert check_l1(history, jobs=["j"], horizon=100.0, bound=1000.0).ok


@pytest.mark.parametrize("runs", [("done", "failed"), ("failed", "done", "failed"),
                                  ("cancelled", "failed"), ("failed", "cancelled"),
                                  ("failed", None)],
                         ids=["finished-then-failed", "finished-between-failures",
                              "restarted-then-failed", "retry-cancelled", "retry-running"])
def test_l1_counts_a_give_back_as_failed_that_a_failure_does_not_answer(runs):
    """An attempt whose work finished (a result to commit) and then failed in a run the chain
    chose to start (:class:`conformance.canaries.EncodesTwice`), or was cancelled and started
    again, one more exposure to a failure of the chain's choosing, or whose latest run, started
    after the failure, was cancelled or still running: the give-back as failed is the chain's
    choice, not the failure's (before session 46's review any failure since the claim excused
    it)."""
    history = _given_up_after("failed", runs, "failed", "failed", "failed")
    assert check_l1(history, jobs=["j"], horizon=100.0, bound=1000.0).jobs == ("j",)


#: A world where the shipped chain commits the job and :class:`EncodesTwice` (a second run of
#: every work that finished; a failure of either gives the job back as failed) loses it to
#: the fifth-attempt rule: its fourth and fifth attempts each finished a run, then failed the
#: second (an adversarial review, session 46: seeds 0, 1, 5, 6 of the first 8).
ENCODES_TWICE = World(BASE.replace(work_fail_rate=0.5, faults_until=600.0), (), 0)


def test_a_chain_that_throws_finished_work_away_loses_the_job_and_l1_says_so():
    shipped = race(ENCODES_TWICE, "hardened")
    assert not shipped.violated("S1", "S2", "S3", "lease", "L1", "finished-work", "given-up")
    twice = race(ENCODES_TWICE, "hardened", protocol=EncodesTwice)
    assert twice.violated("given-up"), "the frozen world no longer shows the loss"
    assert not twice.violated("S1", "S2", "S3", "lease", "finished-work")
    assert twice.violated("L1"), twice.explain("L1")


def test_a_failure_before_the_encoder_s_latest_claim_excuses_nothing_after_it():
    history = _given_up_after(*["failed"] * 5)
    records = list(history)
    # The fifth attempt's failure moved before its claim: that attempt's give-back as failed
    # follows no failure of its own.
    fifth = [i for i, r in enumerate(records) if r[3] == "stop"][-1]
    claim = [i for i, r in enumerate(records) if r[3] == "claim"][-1]
    records.insert(claim, records.pop(fifth))
    assert check_l1(History(records), jobs=["j"], horizon=100.0, bound=1000.0).jobs == ("j",)


# ---- finished-work


def _finished(*records: tuple[Any, ...]) -> tuple[int, tuple[str, ...]]:
    result = check_finished_work(History(records))
    return result.violations, result.jobs


START = (1.0, "e0", "j", "start", "ok", None)
FINISH = (9.0, "e0", "j", "commit", "invoke", "gateway")


def test_a_finish_after_the_work_ran_to_its_end_is_fine():
    assert _finished(START, (5.0, "e0", "j", "stop", "ok", "done"), FINISH) == (0, ())
    # Sent again (a retry), still after it.
    assert _finished(START, (5.0, "e0", "j", "stop", "ok", "done"), FINISH, FINISH) == (0, ())


@pytest.mark.parametrize("end", ["failed", "cancelled"])
def test_a_finish_after_work_that_did_not_run_to_its_end_is_a_violation(end):
    result = check_finished_work(History([START, (5.0, "e0", "j", "stop", "ok", end), FINISH]))
    assert (result.violations, result.jobs) == (1, ("j",))
    assert "e0 sent a finish" in result.examples[0]


def test_a_finish_with_no_work_or_with_work_still_running_is_a_violation():
    assert _finished(FINISH) == (1, ("j",))
    assert _finished(START, FINISH) == (1, ("j",))


def test_a_new_start_or_a_new_process_needs_a_new_end():
    done = (5.0, "e0", "j", "stop", "ok", "done")
    assert _finished(START, done, (6.0, "e0", "j", "start", "ok", None), FINISH) == (1, ("j",))
    assert _finished(START, done, (6.0, "e0", None, "crash", "info", None), FINISH) == (
        1, ("j",))
    # Only its own process, its own job, and a confirmed stop count.
    assert _finished(START, done, (6.0, "e1", None, "crash", "info", None), FINISH) == (0, ())
    assert _finished(START, (5.0, "e0", "k", "stop", "ok", "done"), FINISH) == (1, ("j",))
    assert _finished(START, (5.0, "e1", "j", "stop", "ok", "done"), FINISH) == (1, ("j",))
    assert _finished(START, (5.0, "e0", "j", "stop", "info", "done"), FINISH) == (1, ("j",))


def test_the_world_s_commit_is_not_an_encoder_s_finish():
    assert _finished((9.0, W, "j", "commit", "ok", ("e0", 1))) == (0, ())


def test_the_shipped_chain_gives_failed_work_back_and_the_canary_commits_it():
    """On one world of the ``work-failure`` family: the lemma holds for the shipped protocol
    and catches the canary that takes a failed work for a finished one."""
    world = World(BASE.replace(**FAMILIES["work-failure"]), (), 2)  # three failures
    shipped = race(world, "hardened")
    assert any(r[3] == "stop" and r[5] == "failed" for r in shipped.result.history)
    assert not shipped.violated("S1", "S2", "S3", "lease", "L1", "finished-work")
    canary = race(world, "hardened", protocol=FinishesFailedWork)
    assert canary.violated("finished-work")
    assert not canary.violated("S1", "S2", "S3")

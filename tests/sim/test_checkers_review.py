"""An adversarial review of the checkers (hand-built histories): each test here failed on the
checkers as they were, a miss or a false alarm at an edge of the record format."""

from __future__ import annotations

from typing import Any

from sim import WORLD, History
from sim._checkers import check_claim_evidence, check_lease, check_s1, check_s2

W = WORLD


def hist(*records: tuple[Any, ...]) -> History:
    """A history from (time, process, job, op, phase[, value]) tuples, kept in the given order."""
    return History((*r, None) if len(r) == 5 else r for r in records)


def start(t: float, p: str, job: str = "j") -> tuple[Any, ...]:
    return (t, p, job, "start", "ok", None)


def stop(t: float, p: str, job: str = "j", why: str = "done") -> tuple[Any, ...]:
    return (t, p, job, "stop", "ok", why)


def assign(t: float, who: str, epoch: int, job: str = "j") -> tuple[Any, ...]:
    return (t, W, job, "assign", "ok", (who, epoch))


def requeue(t: float, reason: str = "no ping for T", job: str = "j") -> tuple[Any, ...]:
    return (t, W, job, "requeue", "ok", reason)


# ------------------------------------------------------------------------------------ lease


def test_lease_fires_for_an_owner_that_starts_at_the_instant_of_the_reassignment() -> None:
    """The lease says the owner's interval must not *contain* the reassignment's instant, and
    intervals are ``[start, end)``: one that starts at that instant contains it. The checker
    asked ``start < t`` and missed an owner that started work (recorded before the requeue) at
    the very instant the gateway timed it out, and kept processing for 20 s."""
    h = hist(assign(0, "e1", 1), start(60, "e1"), requeue(60), stop(80, "e1", why="cancelled"))
    r = check_lease(h)
    assert r.violations == 1, r
    assert "[60.000, 80.000]" in r.examples[0]


def test_lease_start_recorded_after_the_requeue_at_the_same_instant_is_not_the_lease() -> None:
    # The same instant, but the start is recorded after the requeue: it began after the
    # reassignment (as a start one second later would), which is S2's business, not the lease's.
    h = hist(assign(0, "e1", 1), requeue(60), start(60, "e1"), stop(80, "e1", why="cancelled"))
    assert check_lease(h).ok
    # A zero-length interval at the instant holds nothing at it; a restart of the same
    # process at that instant after the requeue is still not the lease's.
    h = hist(assign(0, "e1", 1), start(60, "e1"), stop(60, "e1", why="cancelled"), requeue(60),
             start(60, "e1"), stop(80, "e1", why="cancelled"))
    assert check_lease(h).ok


# --------------------------------------------------------------------------------------- S1


def test_s1_zero_length_interval_handed_off_at_the_same_instant_is_no_violation() -> None:
    """e1 started and was cancelled at t = 5 (C = 0), then e2 started at 5: a hand-off at the
    very instant of the holder's stop, which S1 allows, and S2 agrees (no overlap). The checker
    blamed e1, the first start the job ever had, because e2's interval was "open" at 5."""
    h = hist(start(5, "e1"), stop(5, "e1", why="cancelled"), start(5, "e2"), stop(10, "e2"))
    assert check_s2(h).ok
    r = check_s1(h)
    assert r.ok, r


def test_s1_keeps_its_teeth_at_one_instant() -> None:
    # Two starts at one instant that both run: both bad (as before).
    h = hist(start(5, "e1"), start(5, "e2"), stop(9, "e1"), stop(9, "e2"))
    assert check_s1(h).violations == 2
    # A zero-length interval inside another encoder's: that start is bad (S2 counts it too).
    h = hist(start(0, "e2"), start(5, "e1"), stop(5, "e1", why="cancelled"), stop(10, "e2"))
    assert check_s1(h).violations == 1 and check_s2(h).violations == 1
    # The other way round (e2's start recorded first): e1 started while e2 held it, though
    # only for an instant (S2, on times alone, calls that no overlap).
    h = hist(start(5, "e2"), start(5, "e1"), stop(5, "e1", why="cancelled"), stop(10, "e2"))
    r = check_s1(h)
    assert r.violations == 1 and "e1 started at 5.000 while e2 held it" in r.examples[0]


# --------------------------------------------------------------------------- claim-evidence


def verify(t: float, p: str, owner: str | None, status: str, job: str = "j") -> tuple[Any, ...]:
    return (t, p, job, "verify", "ok", ("monitor", owner, status))


def batch(t: float, p: str, answers: list[tuple[str, str]]) -> tuple[Any, ...]:
    """A batch screen of several jobs: recorded without a job (``sim/_checkers.py``,
    ``_Partition``), its answer the (job, status) pairs."""
    return (t, p, None, "screen", "ok", tuple(sorted(answers)))


def claim(t: float, p: str, job: str = "j") -> tuple[Any, ...]:
    return (t, p, job, "claim", "invoke", "gateway")


def test_claim_evidence_reads_a_batch_of_several_jobs() -> None:
    """A batch naming several jobs is recorded without a job; the checker skipped every record
    without a job but a crash, so such a batch's answers were never evidence: a claim after a
    batch saying "assigned" was judged on the older "queued" read (a miss), and a claim after
    a batch saying "queued" had "no tier answer" (a false alarm)."""
    taken = hist(verify(0, "e1", None, "queued"),
                 batch(5, "e1", [("j", "assigned"), ("k", "queued")]), claim(6, "e1"))
    assert check_claim_evidence(taken).violations == 1
    free = hist(batch(5, "e1", [("j", "queued"), ("k", "queued")]), claim(6, "e1"),
                claim(7, "e1", "k"))
    assert check_claim_evidence(free).ok
    # A batch that dropped the id says nothing of it; another encoder's batch is not ours.
    dropped = hist(batch(5, "e1", [("k", "queued")]), claim(6, "e1"))
    others = hist(batch(5, "e2", [("j", "queued")]), claim(6, "e1"))
    assert check_claim_evidence(dropped).violations == 1
    assert check_claim_evidence(others).violations == 1

"""The cost features' lemmas, rule by rule, on hand-made histories: ``fresh-reads`` (an answer
from the status cache served only a pre-claim check, and was read after the encoder's own
last write to the job and after its process began) and ``claim-evidence`` (a claim is made on
a tier's answer that the job was free or already this encoder's).

Mutation testing of the checkers (session 43) found ``check_fresh_reads`` with no test that
could tell any of its 30 mutants from it (it was exercised only by whole runs, where a broken
feature is rare), and a third of ``check_claim_evidence``'s mutants alive.
"""

from __future__ import annotations

from typing import Any

import pytest

from sim import WORLD, History, check_claim_evidence, check_fresh_reads


def cached(t: float, process: str, job: str, decided: float, purpose: str = "pre-claim",
           phase: str = "ok") -> tuple[Any, ...]:
    """A ``cached`` record: (tier, owner, status, when its read was decided, purpose)."""
    return (t, process, job, "cached", phase, ("monitor", None, "queued", decided, purpose))


def write(t: float, process: str, job: str, op: str = "claim", phase: str = "invoke"
          ) -> tuple[Any, ...]:
    return (t, process, job, op, phase, "gateway")


def fresh(*records: tuple[Any, ...]) -> tuple[int, tuple[str, ...]]:
    result = check_fresh_reads(History(records))
    return result.violations, result.jobs


# ---- fresh-reads


def test_a_pre_claim_answer_read_after_every_write_is_fresh() -> None:
    assert fresh(write(1, "e0", "j"), cached(5, "e0", "j", decided=2)) == (0, ())
    assert fresh(cached(5, "e0", "j", decided=2)) == (0, ())


@pytest.mark.parametrize("purpose", ["verify", "recheck", "proof"])
def test_a_cached_answer_for_any_read_but_the_pre_claim_check_is_a_violation(purpose: str
                                                                             ) -> None:
    result = check_fresh_reads(History([cached(5, "e0", "j", decided=4, purpose=purpose)]))
    assert (result.violations, result.jobs) == (1, ("j",))
    assert f"for a {purpose} read" in result.examples[0] and "e0" in result.examples[0]


@pytest.mark.parametrize("op", ["claim", "commit", "release"])
def test_an_answer_read_before_the_encoder_s_own_write_is_stale(op: str) -> None:
    result = check_fresh_reads(History([write(3, "e0", "j", op), cached(5, "e0", "j", 2)]))
    assert (result.violations, result.jobs) == (1, ("j",))
    assert "before its own last write" in result.examples[0]
    # Read at the write's very instant: not before it.
    assert fresh(write(3, "e0", "j", op), cached(5, "e0", "j", decided=3)) == (0, ())


def test_only_the_encoder_s_own_invoked_writes_to_that_job_outdate_its_answers() -> None:
    assert fresh(write(3, "e1", "j"), cached(5, "e0", "j", 2)) == (0, ())  # another encoder
    assert fresh(write(3, "e0", "k"), cached(5, "e0", "j", 2)) == (0, ())  # another job
    assert fresh(write(3, "e0", "j", phase="ok"), cached(5, "e0", "j", 2)) == (0, ())
    assert fresh(write(3, "e0", "j", op="heartbeat"), cached(5, "e0", "j", 2)) == (0, ())
    assert fresh(write(1, "e0", "j"), write(3, "e0", "j"), cached(5, "e0", "j", 2)) == (
        1, ("j",))  # the last write counts


@pytest.mark.parametrize("op, phase", [("crash", "info"), ("crash", "ok"),
                                       ("shutdown", "info")])
def test_an_answer_read_before_the_process_began_is_stale(op: str, phase: str) -> None:
    ended = (3, "e0", None, op, phase, None)
    assert fresh(ended, cached(5, "e0", "j", decided=2)) == (1, ("j",))
    assert fresh(ended, cached(5, "e0", "j", decided=3)) == (0, ())
    assert fresh((3, "e1", None, op, phase, None), cached(5, "e0", "j", 2)) == (0, ())


@pytest.mark.parametrize("op, phase, job", [("crash", "invoke", None), ("shutdown", "ok", None),
                                            ("crash", "info", "j"), ("pause", "info", None)])
def test_records_that_do_not_end_a_process_leave_its_answers_fresh(op: str, phase: str,
                                                                   job: str | None) -> None:
    assert fresh((3, "e0", job, op, phase, None), cached(5, "e0", "j", decided=2)) == (0, ())


def test_only_cached_answers_taken_are_judged_and_each_counts() -> None:
    assert fresh(write(3, "e0", "j"), cached(5, "e0", "j", 2, phase="fail")) == (0, ())
    assert fresh(write(3, "e0", "j"), (5, "e0", "j", "verify", "ok",
                                       ("monitor", None, "queued", 2, "verify"))) == (0, ())
    assert fresh(write(3, "e0", "j"), cached(5, "e0", "j", 2),
                 cached(6, "e0", "j", 1, purpose="verify")) == (2, ("j",))


# ---- claim-evidence


def read(t: float, process: str, job: str, owner: str | None, status: str,
         phase: str = "ok") -> tuple[Any, ...]:
    """A deciding or pre-claim read's answer: (tier, owner, status)."""
    return (t, process, job, "verify", phase, ("monitor", owner, status))


def claim(t: float, process: str, job: str, phase: str = "invoke") -> tuple[Any, ...]:
    return (t, process, job, "claim", phase, "gateway")


def evidence(*records: tuple[Any, ...]) -> tuple[int, tuple[str, ...]]:
    result = check_claim_evidence(History(records))
    return result.violations, result.jobs


def test_a_claim_on_an_answer_saying_free_or_ours_has_evidence() -> None:
    assert evidence(read(1, "e0", "j", None, "queued"), claim(2, "e0", "j")) == (0, ())
    assert evidence(read(1, "e0", "j", "e0", "assigned"), claim(2, "e0", "j")) == (0, ())


def test_a_claim_on_an_answer_saying_taken_or_on_none_has_no_evidence() -> None:
    result = check_claim_evidence(History([read(1, "e0", "j", "e1", "assigned"),
                                           claim(2, "e0", "j")]))
    assert (result.violations, result.jobs) == (1, ("j",))
    assert "owner=e1 status=assigned" in result.examples[0]
    assert evidence(read(1, "e0", "j", None, "complete"), claim(2, "e0", "j")) == (1, ("j",))
    result = check_claim_evidence(History([claim(2, "e0", "j")]))
    assert result.violations == 1 and "no tier answer" in result.examples[0]
    # Another encoder's answer, another job's, or a failed read is no evidence either.
    assert evidence(read(1, "e1", "j", None, "queued"), claim(2, "e0", "j")) == (1, ("j",))
    assert evidence(read(1, "e0", "k", None, "queued"), claim(2, "e0", "j")) == (1, ("j",))
    assert evidence(read(1, "e0", "j", None, "queued", phase="fail"), claim(2, "e0", "j")) == (
        1, ("j",))


def test_the_freshest_answer_decides_and_each_claim_is_judged() -> None:
    assert evidence(read(1, "e0", "j", None, "queued"), read(2, "e0", "j", "e1", "assigned"),
                    claim(3, "e0", "j")) == (1, ("j",))
    assert evidence(read(1, "e0", "j", "e1", "assigned"), read(2, "e0", "j", None, "queued"),
                    claim(3, "e0", "j")) == (0, ())
    assert evidence(claim(1, "e0", "j"), claim(2, "e0", "j", phase="ok"),
                    claim(3, "e0", "j")) == (2, ("j",))


def test_a_screen_naming_the_job_is_an_answer_and_one_that_drops_it_is_none() -> None:
    screen_free = (1, "e0", "j", "screen", "ok", (("j", "queued"),))
    screen_dropped = (2, "e0", "j", "screen", "ok", ())
    assert evidence(screen_free, claim(3, "e0", "j")) == (0, ())
    assert evidence(screen_dropped, claim(3, "e0", "j")) == (1, ("j",))
    # A batch that leaves the job out says nothing new: the older answer stands.
    assert evidence(read(0, "e0", "j", None, "queued"), screen_dropped, claim(3, "e0", "j")) == (
        0, ())
    assert evidence((1, "e0", "j", "screen", "fail", None), claim(3, "e0", "j")) == (1, ("j",))


def test_a_batch_recorded_without_a_job_answers_for_each_job_it_names() -> None:
    batch = (1, "e0", None, "screen", "ok", (("j", "queued"), ("k", "assigned"), "junk"))
    assert evidence(batch, claim(2, "e0", "j")) == (0, ())
    assert evidence(batch, claim(2, "e0", "k")) == (1, ("k",))
    assert evidence((1, "e0", None, "screen", "invoke", (("j", "queued"),)),
                    claim(2, "e0", "j")) == (1, ("j",))
    assert evidence((1, "e0", None, "screen", "ok", "monitor"), claim(2, "e0", "j")) == (
        1, ("j",))  # a live batch's record names the tier only: no answers
    # Entries that are not (job, status) pairs say nothing, whatever they look like.
    for junk in (("j", "queued", "x"), "jq"):
        batch = (1, "e0", None, "screen", "ok", (junk,))
        assert evidence(batch, claim(2, "e0", "j")) == (1, ("j",))


@pytest.mark.parametrize("op, phase", [("crash", "info"), ("shutdown", "info")])
def test_a_new_process_knows_nothing_its_predecessor_read(op: str, phase: str) -> None:
    assert evidence(read(1, "e0", "j", None, "queued"), (2, "e0", None, op, phase, None),
                    claim(3, "e0", "j")) == (1, ("j",))
    assert evidence(read(1, "e0", "j", None, "queued"), (2, "e1", None, op, phase, None),
                    claim(3, "e0", "j")) == (0, ())


def test_the_world_s_records_are_no_encoder_s_evidence() -> None:
    assert evidence((1, WORLD, "j", "verify", "ok", ("monitor", None, "queued")),
                    claim(2, "e0", "j")) == (1, ("j",))

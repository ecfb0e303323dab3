"""A work that fails on its own (``work_fail_rate``), driven directly at the instants a random
world seldom hits: where ``_maybe_fail`` cuts the work, what a pause does to a planned
failure, the natural end recorded when a cancel or crash comes, the end's tie with a carried
report, and the L1 oracle's reset at a new claim. Mutation testing of session 46's failure
code (``benchmarks/mutants.py --since``) left each of these alive against whole runs.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sim import WORLD, History, check_finished_work, check_l1
from sim._checkers import MAX_EXAMPLES
from sim._encoder import _WORK_DONE, _WORK_FAILED, Encoder
from tests.sim.drivers import an_encoder
from verifier.protocol import PhaseChanged, Progressed, WorkEnded

JOB = "job-000000"
W = WORLD


class _Draws:
    """A stand-in for the keyed random stream: the given values, in order."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


def _failing(encoder: Encoder, *draws: float) -> None:
    """The encoder's next failure draws are ``draws`` (whether it fails, then where)."""
    encoder.streams = SimpleNamespace(  # type: ignore[assignment]
        keyed=lambda *key: _Draws(*draws), count=lambda *key: 1)


def _work(t0: float) -> list[tuple[float, Any]]:
    return [(t0, PhaseChanged("download")), (t0 + 10.0, Progressed(0.0, 50.0)),
            (t0 + 20.0, PhaseChanged("encode")), (t0 + 40.0, _WORK_DONE)]


# ---- where the failure falls


def test_a_failure_cuts_the_work_at_its_share_and_keeps_the_rest_for_later() -> None:
    encoder = an_encoder(work_fail_rate=0.5)
    t0 = encoder.env.now
    _failing(encoder, 0.1, 0.6)  # fails; 60% into the work (from its first event to its end)
    events = _work(t0)
    encoder._maybe_fail(events, JOB, encoder)
    assert events == [*_work(t0)[:3], (t0 + 0.6 * 40.0, _WORK_FAILED)]
    assert encoder.work_tail == _work(t0)[3:]


def test_a_failure_at_the_work_s_first_instant_keeps_nothing_of_it() -> None:
    """The cut is strict: an event at the failure's instant is not reported (it is in the
    tail, for a pause that spares the work)."""
    encoder = an_encoder(work_fail_rate=0.5)
    t0 = encoder.env.now
    _failing(encoder, 0.0, 0.0)
    events = _work(t0)
    encoder._maybe_fail(events, JOB, encoder)
    assert events == [(t0, _WORK_FAILED)]
    assert encoder.work_tail == _work(t0)


def test_a_draw_equal_to_the_rate_does_not_fail() -> None:
    """A work fails with probability ``work_fail_rate``: a uniform draw in [0, 1) below it."""
    encoder = an_encoder(work_fail_rate=0.5)
    _failing(encoder, 0.5, 0.5)
    events = _work(encoder.env.now)
    encoder._maybe_fail(events, JOB, encoder)
    assert events == _work(encoder.env.now)


def test_no_failure_at_the_faults_end_itself() -> None:
    encoder = an_encoder(work_fail_rate=0.5)
    t0 = encoder.env.now
    encoder.world.horizon = t0 + 20.0  # exactly where the draw puts the failure
    _failing(encoder, 0.1, 0.5)
    events = _work(t0)
    encoder._maybe_fail(events, JOB, encoder)
    assert events == _work(t0)


# ---- a pause moves a planned failure


def _planned(encoder: Encoder, horizon: float) -> float:
    """The encoder's work cut by a failure at t0 + 20 (its tail kept), the faults ending at
    ``horizon``; returns t0."""
    t0 = encoder.env.now
    encoder.world.horizon = horizon
    work = _work(t0)
    encoder.work, encoder.work_job = [*work[:2], (t0 + 20.0, _WORK_FAILED)], JOB
    encoder.work_tail = work[2:]
    return t0


def _pause(encoder: Encoder, length: float) -> None:
    step = encoder._pause(length)
    next(step)  # the pause has begun: the work has moved


def test_a_pause_that_keeps_the_failure_before_the_faults_end_moves_it_and_its_tail() -> None:
    encoder = an_encoder()
    t0 = _planned(encoder, horizon=1e9)
    _pause(encoder, 2.0)
    assert encoder.work == [(t0, PhaseChanged("download")), (t0 + 12.0, Progressed(0.0, 50.0)),
                            (t0 + 22.0, _WORK_FAILED)]
    assert encoder.work_tail == [(t0 + 22.0, PhaseChanged("encode")), (t0 + 42.0, _WORK_DONE)]


def test_a_pause_that_moves_the_failure_to_the_faults_end_spares_the_work() -> None:
    """Moved to the faults' end exactly (or past it), the failure does not happen: the work's
    own events, moved by the pause too, take its place."""
    encoder = an_encoder()
    t0 = _planned(encoder, horizon=0.0)
    encoder.world.horizon = t0 + 22.0  # the failure lands on it
    _pause(encoder, 2.0)
    assert encoder.work == [(t0, PhaseChanged("download")), (t0 + 12.0, Progressed(0.0, 50.0)),
                            (t0 + 22.0, PhaseChanged("encode")), (t0 + 42.0, _WORK_DONE)]
    assert encoder.work_tail == []


# ---- the natural end, recorded when a cancel or crash comes


def _stops(encoder: Encoder) -> list[Any]:
    return [r for r in encoder.history if r[3] == "stop"]


def test_a_failure_before_a_cancel_is_recorded_at_its_instant() -> None:
    encoder = an_encoder()
    t0 = encoder.env.now
    encoder.work_job = JOB
    encoder.work = [(t0 - 2.0, Progressed(0.0, 50.0)), (t0 - 1.0, _WORK_FAILED)]
    before = len(_stops(encoder))
    encoder._record_natural_end(encoder, until=t0 - 1.0)  # at the failure's very instant
    assert _stops(encoder)[before:] == [(t0 - 1.0, encoder.name, JOB, "stop", "ok", "failed")]
    assert encoder.work_job is None


def test_a_failure_still_to_come_is_not_recorded_even_after_earlier_reports() -> None:
    encoder = an_encoder()
    t0 = encoder.env.now
    encoder.work_job = JOB
    encoder.work = [(t0 - 1.0, Progressed(0.0, 50.0)), (t0 + 1.0, _WORK_FAILED)]
    before = len(_stops(encoder))
    encoder._record_natural_end(encoder, until=t0)
    assert _stops(encoder)[before:] == [] and encoder.work_job == JOB


# ---- the end's tie with a carried report


def test_a_work_that_ends_at_this_instant_supersedes_the_carried_report() -> None:
    """A coalesced report's second half is carried to the next wait; a work that ended at
    this very instant goes first (nothing needs a report after the end), as in the guard."""
    encoder = an_encoder()
    now = encoder.env.now
    encoder.work_job, encoder.work = JOB, [(now, _WORK_FAILED)]
    encoder.carried = Progressed(50.0, 100.0)
    step = encoder._sleep(now * encoder.rate + 100.0, encoder)
    try:
        next(step)
        answer: Any = None
    except StopIteration as done:
        answer = done.value
    assert isinstance(answer, WorkEnded) and not answer.succeeded
    assert encoder.carried is None


# ---- the lemma's examples


def test_finished_work_gives_at_most_its_number_of_examples() -> None:
    finishes = [(float(i), "e0", f"j{i}", "commit", "invoke", "gateway")
                for i in range(MAX_EXAMPLES + 2)]
    result = check_finished_work(History(finishes))
    assert result.violations == MAX_EXAMPLES + 2 and len(result.examples) == MAX_EXAMPLES


# ---- L1's oracle: a new claim starts afresh


def _attempt(t: float, n: int, *middle: tuple[Any, ...], give_back: str = "failJob"
             ) -> list[tuple[Any, ...]]:
    return [(t, "e0", "j", "claim", "invoke", "gateway"),
            (t + 0.1, W, "j", "assign", "ok", ("e0", n)),
            *((t + 1 + k / 10, "e0", "j", *rec) for k, rec in enumerate(middle)),
            (t + 6, "e0", "j", "release", "invoke", "gateway"),
            (t + 6, W, "j", "requeue", "ok", give_back),
            (t + 6.1, "e0", "j", "outcome", "ok", ("WORK_FAILED", False))]


START = ("start", "ok", None)
FAILED = ("stop", "ok", "failed")


def _judged(*attempts: list[tuple[Any, ...]]) -> tuple[str, ...]:
    records = [r for a in attempts for r in a] + [(60.0, W, "j", "failed", "ok", 5)]
    return check_l1(History(records), jobs=["j"], horizon=100.0, bound=1000.0).jobs


def test_a_failure_under_an_earlier_claim_excuses_no_give_back_after_a_new_one() -> None:
    """Claimed again, given back as failed with no work since: no failure of this claim's
    answers it."""
    failed = [_attempt(10.0 * n, n, START, FAILED) for n in range(4)]
    assert _judged(*failed, _attempt(40.0, 4)) == ("j",)
    assert _judged(*failed, _attempt(40.0, 4, START, FAILED)) == ()


def test_work_cancelled_under_an_earlier_claim_does_not_spend_a_later_claim_s_excuse() -> None:
    """A run cancelled, then a plain give-back (not as failed); claimed again, every later
    attempt's work fails: each give-back as failed is the faults' doing."""
    first = _attempt(0.0, 0, START, ("stop", "ok", "cancelled"), give_back="rejectJob")
    failed = [_attempt(10.0 * n, n, START, FAILED) for n in range(1, 5)]
    assert _judged(first, *failed) == ()

"""The encoder loop's decisions on their own (``PollSchedule``): no event loop, no clock.

``tests/verifier/test_loop.py`` runs them through the asyncio driver; the simulator's encoders
run them through SimPy (``tests/sim/test_encoder_loop.py``).
"""

from __future__ import annotations

import dataclasses

import pytest

from verifier import AllSlotsBusy, IdleUntil, LoopPolicy, PollSchedule, PollSource, parse_job
from verifier._polling import MAX_RETRY_AFTER_S


class Draws:
    """A random source that returns the given draws, in turn."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)
        self.taken = 0

    def random(self) -> float:
        self.taken += 1
        return self.values.pop(0) if self.values else 0.5


def jobs(*ids: str):
    return [parse_job({"id": i, "status": "queued"}) for i in ids]


POLICY = LoopPolicy(sources=("myjob", "getjob"), idle_s=10, idle_max_s=60, idle_factor=2,
                    jitter=0.5, cooldown_s=60)


def empty_round(schedule: PollSchedule, now: float):
    """Ask every source, none offering anything; the step that follows."""
    while isinstance(step := schedule.next(now), PollSource):
        assert schedule.offered(step.source, [], now) is None
    return step


def test_a_round_asks_the_sources_in_order_then_waits_the_idle_delay_drawn_once():
    rng = Draws(0.25)
    schedule = PollSchedule(POLICY, rng)
    assert schedule.next(0.0) == PollSource("myjob")
    assert schedule.offered("myjob", [], 0.0) is None
    assert schedule.next(0.0) == PollSource("getjob")
    assert schedule.offered("getjob", [], 1.0) is None
    assert schedule.next(2.0) == IdleUntil(2.0 + POLICY.idle_delay(1, 0.25))
    assert rng.taken == 1


def test_empty_polls_in_a_row_double_the_wait_and_an_offer_resets_it():
    schedule = PollSchedule(POLICY, Draws(0.5, 0.5, 0.5))
    assert empty_round(schedule, 0.0) == IdleUntil(10.0)
    assert empty_round(schedule, 10.0) == IdleUntil(30.0)
    assert schedule.next(30.0) == PollSource("myjob")
    job = schedule.offered("myjob", jobs("j1"), 30.0)
    assert job is not None and job.id == "j1"
    schedule.started("j1")
    schedule.ended("j1", 40.0, processed=True, code="PROCESSED")
    assert empty_round(schedule, 40.0) == IdleUntil(50.0)  # exponent back to the first wait


def test_every_slot_taken_waits_for_a_job_to_end():
    schedule = PollSchedule(LoopPolicy(sources=("getjob",), concurrency=2), Draws())
    for job_id in ("a", "b"):
        assert schedule.next(0.0) == PollSource("getjob")
        job = schedule.offered("getjob", jobs(job_id), 0.0)
        assert job is not None
        schedule.started(job.id)
    assert isinstance(schedule.next(0.0), AllSlotsBusy)
    schedule.ended("a", 5.0, processed=True, code="PROCESSED")
    assert schedule.next(5.0) == PollSource("getjob")


def test_a_job_running_or_cooling_down_is_passed_over_and_the_wait_ends_with_its_cool_down():
    schedule = PollSchedule(POLICY, Draws(0.5, 0.5, 0.5))
    schedule.next(0.0)
    assert schedule.offered("myjob", jobs("j1"), 0.0) is not None
    schedule.started("j1")
    schedule.ended("j1", 10.0, processed=False, code="SKIPPED")
    assert schedule.cooling == {"j1": 70.0}
    # Offered again at once: cooling, so the round is empty; idle waits grow (10, 20, 40) but
    # none goes past the instant the cool-down ends.
    now = 10.0
    for _ in range(3):
        assert schedule.next(now) == PollSource("myjob")
        assert schedule.offered("myjob", jobs("j1"), now) is None
        assert schedule.next(now) == PollSource("getjob")
        assert schedule.offered("getjob", [], now) is None
        step = schedule.next(now)
        assert isinstance(step, IdleUntil) and step.until <= 70.0
        now = step.until
    assert now == 70.0
    assert schedule.next(now) == PollSource("myjob")
    job = schedule.offered("myjob", jobs("j1"), now)
    assert job is not None and schedule.cooling == {}


def test_tier_trouble_backs_off_before_the_next_poll_and_a_clean_outcome_resets_it():
    schedule = PollSchedule(POLICY, Draws(0.5, 0.5, 0.5))
    for n, at in enumerate((0.0, 100.0), start=1):
        schedule.next(at)
        job = schedule.offered("myjob", jobs(f"j{n}"), at)
        assert job is not None
        schedule.started(job.id)
        schedule.ended(job.id, at + 1, processed=False, code="VERIFICATION_FAILED")
        assert schedule.next(at + 1) == IdleUntil(at + 1 + POLICY.idle_delay(n, 0.5))
    schedule.next(200.0)
    assert schedule.offered("myjob", jobs("j3"), 200.0) is not None
    schedule.started("j3")
    schedule.ended("j3", 201.0, processed=True, code="PROCESSED")
    assert schedule.next(201.0) == PollSource("myjob")  # no back-off owed


def test_retry_after_keeps_the_source_unasked_and_another_servers_polled_at_its_pace():
    """(Gateway Aid and the gateway: two servers; one server's sources are held together,
    and one server's Retry-After does not hold another's: tests/verifier/
    test_retry_after_per_server.py.)"""
    schedule = PollSchedule(dataclasses.replace(POLICY, sources=("aid", "getjob")), Draws(0.0))
    assert schedule.next(0.0) == PollSource("aid")
    schedule.poll_failed("aid", 0.0, retry_after=100.0)
    assert schedule.next(0.0) == PollSource("getjob")
    assert schedule.offered("getjob", [], 0.0) is None
    assert schedule.next(0.0) == IdleUntil(5.0)  # the drawn 5 s: the gateway said nothing
    assert schedule.next(50.0) == PollSource("getjob")  # aid still told to wait
    assert schedule.offered("getjob", [], 50.0) is None
    schedule.next(50.0)
    assert schedule.next(100.0) == PollSource("aid")


def test_a_retry_after_beyond_the_cap_is_honoured_up_to_the_cap_only():
    schedule = PollSchedule(LoopPolicy(sources=("getjob",)), Draws(0.0))
    schedule.next(0.0)
    schedule.poll_failed("getjob", 0.0, retry_after=1e12)
    step = schedule.next(0.0)
    assert isinstance(step, IdleUntil) and step.until == 600.0


def test_a_guarded_jobs_retry_after_holds_the_next_start():
    schedule = PollSchedule(POLICY, Draws())
    schedule.next(0.0)
    schedule.offered("myjob", jobs("j1"), 0.0)
    schedule.started("j1")
    schedule.ended("j1", 1.0, processed=True, code="PROCESSED", retry_after=30.0)
    assert schedule.next(1.0) == IdleUntil(31.0)
    assert schedule.next(31.0) == PollSource("myjob")


def test_screening_candidates_are_distinct_offered_jobs_neither_running_nor_cooling():
    schedule = PollSchedule(POLICY, Draws())
    schedule.started("run")
    schedule.ended("cool", 0.0, processed=False, code="SKIPPED")
    offered = jobs("a", "run", "a", "cool", "b")
    assert list(schedule.screen(offered, 1.0)) == ["a", "b"]
    assert list(schedule.screen(jobs("a"), 1.0)) == []  # one offered job: not worth a batch
    single = PollSchedule(LoopPolicy(sources=("getjob",), screen_at_least=1), Draws())
    assert list(single.screen(jobs("a"), 1.0)) == ["a"]


def test_jobs_a_screen_saw_held_are_tried_last_not_never():
    schedule = PollSchedule(POLICY, Draws())
    schedule.next(0.0)
    job = schedule.offered("myjob", jobs("a", "b"), 0.0, held={"a"})
    assert job is not None and job.id == "b"
    schedule.next(0.0)
    job = schedule.offered("myjob", jobs("a"), 0.0, held={"a"})
    assert job is not None and job.id == "a"


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_screen_at_least_must_be_a_positive_whole_number(bad):
    with pytest.raises(ValueError, match="screen_at_least"):
        LoopPolicy(screen_at_least=bad)


def test_no_cool_down_means_a_job_given_up_is_offered_again_at_once():
    schedule = PollSchedule(LoopPolicy(sources=("getjob",), cooldown_s=0), Draws())
    schedule.next(0.0)
    schedule.offered("getjob", jobs("j"), 0.0)
    schedule.started("j")
    schedule.ended("j", 5.0, processed=False, code="SKIPPED")
    assert schedule.next(5.0) == PollSource("getjob")
    job = schedule.offered("getjob", jobs("j"), 5.0)
    assert job is not None and job.id == "j"


# --- each rule pinned (an adversarial review's mutants, session 29, each survived before)

TROUBLE = ("PRE_CLAIM_FAILED", "CLAIM_UNKNOWN", "VERIFICATION_FAILED", "UNCONFIRMED",
           "LEASE_EXPIRED", "FINISH_UNKNOWN", "WORK_FAILED")


def one_job(schedule: PollSchedule, job_id: str, at: float, code: str, *,
            processed: bool = False, retry_after: float | None = None) -> None:
    assert isinstance(schedule.next(at), PollSource)
    job = schedule.offered(schedule.policy.sources[0], jobs(job_id), at)
    assert job is not None
    schedule.started(job.id)
    schedule.ended(job.id, at + 1, processed=processed, code=code, retry_after=retry_after)


@pytest.mark.parametrize("code", TROUBLE)
def test_every_outcome_of_tier_trouble_or_failed_work_backs_off(code):
    schedule = PollSchedule(POLICY, Draws(0.5))
    one_job(schedule, "j", 0.0, code)
    assert schedule.next(1.0) == IdleUntil(1.0 + POLICY.idle_delay(1, 0.5))


@pytest.mark.parametrize("code", ["PROCESSED", "SKIPPED", "NOT_AVAILABLE", "CLAIM_REFUSED"])
def test_other_outcomes_do_not_back_off(code):
    schedule = PollSchedule(POLICY, Draws())
    one_job(schedule, "j", 0.0, code, processed=code == "PROCESSED")
    assert isinstance(schedule.next(1.0), PollSource)


def test_a_clean_outcome_resets_the_back_offs_exponent():
    schedule = PollSchedule(POLICY, Draws(0.5, 0.5, 0.5))
    one_job(schedule, "a", 0.0, "LEASE_EXPIRED")
    schedule.next(1.0)  # the first back-off
    one_job(schedule, "b", 100.0, "PROCESSED", processed=True)
    one_job(schedule, "c", 200.0, "LEASE_EXPIRED")
    assert schedule.next(201.0) == IdleUntil(201.0 + POLICY.idle_delay(1, 0.5))


def test_the_back_off_counts_from_the_jobs_end_not_from_when_it_is_asked():
    """Two slots: a job given up on a tier's trouble ends while the loop waits out an empty
    poll's idle wait; the back-off then runs from the job's end, not after the idle wait
    (added, the gap between polls was the idle wait plus the whole back-off)."""
    policy = LoopPolicy(sources=("getjob",), concurrency=2, idle_s=10, idle_max_s=60,
                        idle_factor=2, jitter=0.5, cooldown_s=60)
    schedule = PollSchedule(policy, Draws(0.5, 0.5, 0.5))
    one_job(schedule, "a", 0.0, "LEASE_EXPIRED")  # ends at 1.0 ...
    schedule.started("b")  # ... while b still runs
    schedule.ended("a", 25.0, processed=False, code="LEASE_EXPIRED")  # (again, later)
    delay = policy.idle_delay(2, 0.5)
    assert schedule.next(30.0) == IdleUntil(25.0 + delay)
    # Asked only after the back-off has run out: no wait at all.
    schedule.ended("b", 40.0, processed=False, code="VERIFICATION_FAILED")
    assert isinstance(schedule.next(40.0 + 10 * 60), PollSource)


def test_a_guarded_jobs_retry_after_is_capped_and_the_longest_one_holds():
    schedule = PollSchedule(POLICY, Draws())
    one_job(schedule, "a", 0.0, "PROCESSED", processed=True, retry_after=1e12)
    assert schedule.next(1.0) == IdleUntil(1.0 + MAX_RETRY_AFTER_S)
    schedule = PollSchedule(LoopPolicy(sources=("getjob",), concurrency=2), Draws())
    for job_id in ("a", "b"):
        schedule.started(job_id)
    schedule.ended("a", 1.0, processed=True, code="PROCESSED", retry_after=100.0)
    schedule.ended("b", 2.0, processed=True, code="PROCESSED", retry_after=10.0)
    assert schedule.next(3.0) == IdleUntil(101.0)


def test_an_empty_rounds_wait_lasts_until_the_first_held_source_may_be_asked():
    schedule = PollSchedule(LoopPolicy(sources=("aid", "getjob"), idle_s=1, idle_max_s=1,
                                       jitter=0), Draws())
    schedule.next(0.0)
    schedule.poll_failed("aid", 0.0, retry_after=100.0)
    schedule.next(0.0)
    schedule.poll_failed("getjob", 0.0, retry_after=10.0)
    assert schedule.next(0.0) == IdleUntil(10.0)
    assert schedule.next(10.0) == PollSource("getjob")  # aid's 100 s still runs
    schedule.poll_failed("getjob", 10.0, retry_after=95.0)
    assert schedule.next(10.0) == IdleUntil(100.0)
    assert schedule.next(100.0) == PollSource("aid")


def test_a_one_second_retry_after_is_honoured():
    schedule = PollSchedule(LoopPolicy(sources=("aid", "getjob"), idle_s=10, jitter=0),
                            Draws())
    schedule.next(0.0)
    schedule.poll_failed("aid", 0.0, retry_after=1.0)
    schedule.next(0.0)
    schedule.offered("getjob", [], 0.0)
    schedule.next(0.0)  # the idle wait
    assert schedule.next(0.5) == PollSource("getjob")  # aid told to wait 1 s
    schedule.offered("getjob", [], 0.5)
    schedule.next(0.5)
    assert schedule.next(1.0) == PollSource("aid")


def test_the_idle_wait_grows_by_its_factor_until_the_cap():
    policy = LoopPolicy(sources=("getjob",), idle_s=10, idle_max_s=60, idle_factor=1.1,
                        jitter=0.5)
    assert policy.idle_delay(8, 0.5) == pytest.approx(10 * 1.1 ** 7)
    assert policy.idle_delay(30, 0.5) == pytest.approx(40.0)  # 60 / 1.5
    assert policy.idle_delay(10**6, 0.999) < 60.0


def test_the_defaults_are_the_documented_loop():
    """README, "Running an encoder": idle waits from 10 s, doubling, jittered, never past
    60 s; a 60 s cool-down; lists of two or more offered jobs screened."""
    policy = LoopPolicy()
    waits = [policy.idle_delay(n, u) for n in (1, 2, 3, 10) for u in (0.0, 0.5, 0.999)]
    assert waits[1] == pytest.approx(10.0) and waits[4] == pytest.approx(20.0)
    assert waits[0] == pytest.approx(5.0) and waits[2] == pytest.approx(14.99)  # jittered ±50%
    assert max(waits) < 60.0 and max(waits) > 59.9
    schedule = PollSchedule(policy, Draws())
    schedule.ended("j", 0.0, processed=False, code="SKIPPED")
    assert schedule.cooling == {"j": 60.0}
    assert list(schedule.screen(jobs("a", "b"), 1.0)) == ["a", "b"]


def test_a_first_back_off_owed_with_no_trouble_counted_waits_as_the_first():
    policy = LoopPolicy(idle_s=10, idle_max_s=60, idle_factor=2, jitter=0)
    assert policy.idle_delay(0, 0.5) == policy.idle_delay(1, 0.5) == 10.0


def test_an_idle_wait_ends_exactly_when_a_passed_over_jobs_cool_down_does():
    schedule = PollSchedule(LoopPolicy(sources=("getjob",), idle_s=10, jitter=0,
                                       cooldown_s=30), Draws())
    schedule.ended("j", 0.0, processed=False, code="SKIPPED")
    schedule.next(29.5)
    assert schedule.offered("getjob", jobs("j"), 29.5) is None
    assert schedule.next(29.5) == IdleUntil(30.0)  # not a whole idle wait, nor 1 s


def test_a_failed_poll_without_retry_after_does_not_hold_its_source():
    schedule = PollSchedule(LoopPolicy(sources=("myjob", "getjob")), Draws())
    schedule.next(1000.0)
    schedule.poll_failed("myjob", 1000.0)
    schedule.next(1000.0)
    schedule.offered("getjob", [], 1000.0)
    schedule.next(1000.0)
    assert schedule.next(1000.5) == PollSource("myjob")


def test_retry_after_counts_from_when_it_was_told():
    schedule = PollSchedule(LoopPolicy(sources=("aid", "getjob"), idle_s=1, idle_max_s=1,
                                       jitter=0), Draws())
    schedule.next(1000.0)
    schedule.poll_failed("aid", 1000.0, retry_after=30.0)
    assert schedule.next(1000.0) == PollSource("getjob")
    schedule.offered("getjob", [], 1000.0)
    assert schedule.next(1000.0) == IdleUntil(1001.0)
    assert schedule.next(1029.0) == PollSource("getjob")  # aid still told to wait
    schedule.offered("getjob", [], 1029.0)
    schedule.next(1029.0)
    assert schedule.next(1030.0) == PollSource("aid")


def test_a_cool_down_that_has_just_ended_no_longer_keeps_a_job_from_screening():
    schedule = PollSchedule(LoopPolicy(sources=("getjob",), cooldown_s=60), Draws())
    schedule.ended("a", 0.0, processed=False, code="SKIPPED")
    assert list(schedule.screen(jobs("a", "b"), 59.0)) == ["b"]
    assert list(schedule.screen(jobs("a", "b"), 60.0)) == ["a", "b"]


def test_a_guarded_jobs_one_second_retry_after_holds_the_next_start():
    schedule = PollSchedule(POLICY, Draws())
    one_job(schedule, "a", 0.0, "PROCESSED", processed=True, retry_after=1.0)
    assert schedule.next(1.0) == IdleUntil(2.0)


def test_a_hold_or_a_back_off_is_kept_when_the_driver_asks_again_before_it_ends():
    """``IdleUntil`` allows a driver to ask again early (a job ending, the simulator's gateway
    waking an idle encoder): a Retry-After's hold and a back-off stay until they have passed,
    drawn once. Reset on the first ask, the next ask polled at once (an adversarial review,
    session 30: the simulator's woken encoders cut 447 holds short)."""
    schedule = PollSchedule(POLICY, Draws())
    one_job(schedule, "a", 0.0, "PROCESSED", processed=True, retry_after=100.0)
    assert schedule.next(1.0) == IdleUntil(101.0)
    assert schedule.next(2.0) == IdleUntil(101.0)
    assert schedule.next(101.0) == PollSource("myjob")
    rng = Draws(0.5, 0.5, 0.5)
    schedule = PollSchedule(POLICY, rng)
    one_job(schedule, "c", 0.0, "UNCONFIRMED")
    until = schedule.next(1.0)
    assert isinstance(until, IdleUntil) and until.until > 2.0
    taken = rng.taken
    assert schedule.next(2.0) == until  # the same instant: not drawn again
    assert rng.taken == taken
    assert schedule.next(until.until) == PollSource("myjob")


def test_a_poll_answered_after_another_slot_began_a_hold_starts_nothing():
    """Two slots: a job ends with a Retry-After (or on a tier's trouble) while the loop's poll
    is in flight; the poll's offer is not taken, and the next ask waits the hold out. Taken,
    it started inside the hold (an adversarial review of the simulator's slots, session 30;
    both drivers did)."""
    policy = LoopPolicy(sources=("getjob",), concurrency=2, idle_s=10, idle_max_s=60,
                        idle_factor=2, jitter=0.5, cooldown_s=60)
    for code, retry_after in (("PROCESSED", 100.0), ("UNCONFIRMED", None)):
        schedule = PollSchedule(policy, Draws(0.5, 0.5))
        one_job(schedule, "a", 0.0, "PROCESSED", processed=True)
        schedule.started("b")
        assert schedule.next(2.0) == PollSource("getjob")  # the poll leaves ...
        schedule.ended("b", 2.5, processed=code == "PROCESSED", code=code,
                       retry_after=retry_after)  # ... b ends with a hold meanwhile ...
        assert schedule.offered("getjob", jobs("c"), 3.0) is None  # ... its offer waits
        step = schedule.next(3.0)
        assert isinstance(step, IdleUntil) and step.until > 3.0, (code, step)
        assert schedule.next(step.until) == PollSource("getjob")


# ---- found by mutation testing of verifier/_polling.py (session 31): each failed on a mutant
# or on the code before its fix


def test_the_idle_wait_grows_by_its_factor_however_long_the_streak():
    """The wait is ``idle_s · factor^(n-1)`` up to its cap, whatever ``n``: the old shortcut
    took the cap past 64 growths whatever the factor, so with a factor of 1 the 66th empty
    poll in a row waited 60 s, not 10; a factor near 1 was capped at the 66th, far below."""
    steady = LoopPolicy(sources=("getjob",), idle_s=10, idle_max_s=60, idle_factor=1,
                        jitter=0)
    assert {steady.idle_delay(n, 0.5) for n in range(1, 500)} == {10.0}
    slow = LoopPolicy(sources=("getjob",), idle_s=10, idle_max_s=60, idle_factor=1.01,
                      jitter=0)
    assert slow.idle_delay(65, 0.5) == pytest.approx(10 * 1.01 ** 64)  # 18.9 s, not 60
    assert slow.idle_delay(66, 0.5) == pytest.approx(10 * 1.01 ** 65)


@pytest.mark.parametrize("factor", [60000.0, 1e10, 1e300])
def test_a_large_idle_factor_never_overflows(factor):
    """Any finite factor of at least 1 is accepted; its power left the float range before 64
    growths (1e10 ** 31: OverflowError at the 32nd empty poll, raised out of the schedule to
    the loop). The wait stays at its cap, through the schedule too."""
    policy = LoopPolicy(sources=("getjob",), idle_s=10, idle_max_s=60, idle_factor=factor,
                        jitter=0.5)
    waits = [policy.idle_delay(n, 0.5) for n in range(1, 200)]
    assert waits[0] == pytest.approx(10.0)
    assert waits[1:] == [pytest.approx(40.0)] * 198  # 60 / 1.5: the cap, before the jitter
    assert LoopPolicy(sources=("getjob",), idle_s=0, idle_max_s=60, idle_factor=factor,
                      jitter=0).idle_delay(10_000, 0.5) == 0.0
    schedule = PollSchedule(policy, Draws())
    now = 0.0
    for _ in range(70):  # 70 empty polls in a row
        assert schedule.next(now) == PollSource("getjob")
        assert schedule.offered("getjob", [], now) is None
        step = schedule.next(now)
        assert isinstance(step, IdleUntil)
        now = step.until


def test_a_hold_that_ends_exactly_when_asked_starts_the_round():
    """Asked exactly when a hold (or a back-off of 0 s) ends, the round starts: no
    ``IdleUntil(now)``, which a driver whose clock does not move while it does not wait
    (SimPy) would ask about again for ever. Mutant ``> → >=`` in ``next``."""
    schedule = PollSchedule(POLICY, Draws(0.5))
    one_job(schedule, "a", 0.0, "UNCONFIRMED", retry_after=100.0)  # ends at 1.0: hold 101
    assert schedule.next(101.0) == PollSource("myjob")  # the back-off (10 s) long over
    zero = LoopPolicy(sources=("getjob",), idle_s=0, idle_max_s=0, jitter=0)
    schedule = PollSchedule(zero, Draws())
    one_job(schedule, "b", 0.0, "LEASE_EXPIRED")  # ends at 1.0; a back-off of 0 s
    assert schedule.next(1.0) == PollSource("getjob")


def test_an_idle_wait_never_ends_before_now():
    """A job passed over while cooling down bounds the next wait by its cool-down's end;
    asked after that end, the wait is none, not an instant already past (a driver sleeping
    ``until - now`` must not be handed a negative wait; SimPy's ``timeout`` refuses one).
    Mutant ``max(now, ·)`` → ``·`` in ``next``."""
    schedule = PollSchedule(LoopPolicy(sources=("getjob",), idle_s=10, jitter=0,
                                       cooldown_s=60), Draws())
    schedule.ended("j", 0.0, processed=False, code="SKIPPED")  # cooling until 60
    assert schedule.next(59.0) == PollSource("getjob")
    assert schedule.offered("getjob", jobs("j"), 59.0) is None  # passed over: cooling
    assert schedule.next(61.0) == IdleUntil(61.0)  # not IdleUntil(60.0)


# --- jobs given up at once (session 45: a source offering new ids, each skipped at once, was
# polled again at once every time: 300 polls a minute in session 44's review)

SKIPS = ("NOT_AVAILABLE", "PRE_CLAIM_CONFLICT", "CLAIM_REFUSED", "NO_CONFIRMING_TIER")


@pytest.mark.parametrize("code", SKIPS)
def test_the_second_job_in_a_row_given_up_at_once_backs_off_as_the_first_empty_poll(code):
    schedule = PollSchedule(POLICY, Draws(0.25))
    one_job(schedule, "a", 0.0, code)
    assert isinstance(schedule.next(1.0), PollSource)  # the first: polled again at once
    one_job(schedule, "b", 1.0, code)
    assert schedule.next(2.0) == IdleUntil(2.0 + POLICY.idle_delay(1, 0.25))


def test_skips_in_a_row_grow_the_back_off_to_its_cap_and_a_job_that_ran_resets_it():
    policy = LoopPolicy(sources=("getjob",), idle_s=10, idle_max_s=60, idle_factor=2,
                        jitter=0, cooldown_s=60)
    schedule = PollSchedule(policy, Draws())
    ids = iter(range(100))

    def skip_next(at: float, code: str = "NOT_AVAILABLE") -> float:
        """Wait if told to, then take the next offer and skip it: the wait (0: none)."""
        step = schedule.next(at)
        waited = 0.0
        if isinstance(step, IdleUntil):
            waited, at = step.until - at, step.until
            step = schedule.next(at)
        assert step == PollSource("getjob")
        one = schedule.offered("getjob", jobs(f"j{next(ids)}"), at)
        assert one is not None
        schedule.started(one.id)
        schedule.ended(one.id, at, processed=False, code=code)
        return waited

    at, waits = 0.0, []
    for _ in range(7):
        waits.append(skip_next(at))
        at += waits[-1]
    assert waits == [0.0, 0.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    # A job that got past the claim (here lost during its work) ends the streak; it was
    # taken after the back-off the last skip owed.
    assert skip_next(at, "LEASE_LOST") == 60.0
    # Skips after it start a new streak: its second owes the first back-off.
    assert [skip_next(at + 200) for _ in range(3)] == [0.0, 0.0, 10.0]


def test_tier_trouble_and_skips_count_apart_and_each_ends_the_others_streak():
    schedule = PollSchedule(POLICY, Draws(0.5, 0.5, 0.5))
    one_job(schedule, "a", 0.0, "NOT_AVAILABLE")
    one_job(schedule, "b", 1.0, "LEASE_EXPIRED")
    assert schedule.next(2.0) == IdleUntil(2.0 + POLICY.idle_delay(1, 0.5))
    # A skip after the trouble is the first of its streak: no back-off of its own.
    one_job(schedule, "c", 100.0, "CLAIM_REFUSED")
    assert isinstance(schedule.next(101.0), PollSource)
    # And it ended the trouble's streak: the next trouble backs off as the first.
    schedule.offered("myjob", jobs("d"), 101.0)
    schedule.started("d")
    schedule.ended("d", 102.0, processed=False, code="UNCONFIRMED")
    assert schedule.next(102.0) == IdleUntil(102.0 + POLICY.idle_delay(1, 0.5))


def test_a_skip_after_an_empty_poll_is_still_the_first_of_its_streak():
    schedule = PollSchedule(POLICY, Draws(0.5, 0.5))
    assert empty_round(schedule, 0.0) == IdleUntil(10.0)
    one_job(schedule, "a", 10.0, "NOT_AVAILABLE")
    assert isinstance(schedule.next(11.0), PollSource)


# --- claim races lost after the settle wait (session 46): a lost race ended the skip streak,
# so a source offering jobs we lose, or such jobs between jobs skipped at once, was asked
# again at once after each (about once per settle wait, ~12 s), never backed off

LOST = ("OWNERSHIP_CONFLICT", "MONITOR_THEFT_DETECTED", "NOT_ASSIGNED")


@pytest.mark.parametrize("code", LOST)
def test_the_second_lost_claim_race_in_a_row_backs_off_as_the_first_empty_poll(code):
    schedule = PollSchedule(POLICY, Draws(0.25))
    one_job(schedule, "a", 0.0, code)
    assert isinstance(schedule.next(13.0), PollSource)  # the first: polled again at once
    one_job(schedule, "b", 13.0, code)
    assert schedule.next(14.0) == IdleUntil(14.0 + POLICY.idle_delay(1, 0.25))


@pytest.mark.parametrize("code", LOST)
def test_a_lost_claim_race_between_skips_does_not_end_their_streak(code):
    """Skip, lost race, skip: the third job in a row given up on owes the second back-off.
    Before the fix the race reset the streak, and the skip after it was polled at once."""
    policy = LoopPolicy(sources=("getjob",), idle_s=10, idle_max_s=60, idle_factor=2,
                        jitter=0, cooldown_s=60)
    schedule = PollSchedule(policy, Draws())
    one_job(schedule, "a", 0.0, "PRE_CLAIM_CONFLICT")
    one_job(schedule, "b", 1.0, code)  # a back-off from its end (10 s), as a second skip
    assert schedule.next(2.0) == IdleUntil(12.0)
    one_job(schedule, "c", 12.0, "NOT_AVAILABLE")
    assert schedule.next(13.0) == IdleUntil(13.0 + 20.0)


def test_lost_claim_races_back_off_no_longer_than_idle_max_from_the_jobs_end():
    """L1's hand-out (docs/safety-model.md): an encoder's next poll comes within idle_max of
    an attempt's end, whatever the streak: the back-off after lost races keeps to it."""
    schedule = PollSchedule(POLICY, Draws(0.999))
    at = 0.0
    for n in range(20):
        step = schedule.next(at)
        if isinstance(step, IdleUntil):
            assert step.until - at < POLICY.idle_max_s
            at = step.until
        one_job(schedule, f"j{n}", at, "OWNERSHIP_CONFLICT")
        at += 1.0  # (one_job ends the job 1 s after the poll)


def test_a_hold_begun_during_a_round_stops_the_round_before_its_next_source():
    """Two slots, two servers: while the round's first poll is out, the other slot's job ends
    with a tier's ``Retry-After``; the driver reports the poll with ``poll_failed`` alone (as
    :class:`PollSource` allows, and the simulator's driver does on a 429). The next source
    of the round is not asked inside the hold (before session 46 it was: the hold was looked
    at when a round began, and in :meth:`~PollSchedule.offered` only)."""
    policy = LoopPolicy(sources=("aid", "getjob"), concurrency=2, idle_s=10, idle_max_s=60,
                        jitter=0, cooldown_s=60)
    for code, retry_after in (("PROCESSED", 100.0), ("UNCONFIRMED", None)):
        schedule = PollSchedule(policy, Draws())
        schedule.started("a")
        assert schedule.next(0.0) == PollSource("aid")  # the poll leaves ...
        schedule.ended("a", 0.5, processed=code == "PROCESSED", code=code,
                       retry_after=retry_after)  # ... a ends with a hold meanwhile ...
        schedule.poll_failed("aid", 1.0)  # ... and the poll fails
        step = schedule.next(1.0)
        assert isinstance(step, IdleUntil) and step.until > 1.0, (code, step)
        assert schedule.next(step.until) == PollSource("aid")

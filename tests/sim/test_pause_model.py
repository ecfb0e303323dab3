"""The simulator's pauses, driven directly (``Encoder._pause``, ``Encoder.idle``).

A pause is the adversary's strongest move inside the timing model: up to P, exactly P at the
edge, the whole node frozen, its work included. Mutation testing of the driver's fault
machinery (session 42) found that no test checked the pause *lengths* the adversary draws:
a driver whose edge pauses never reached P, whose random pauses recurred never, or whose
tail pauses (outside the model) were shorter than stated passed every test it was run
against. These pin each rule.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from sim._encoder import Encoder
from tests.sim.drivers import an_encoder, another_process_pauses
from verifier.protocol import Progressed


def _pause(encoder: Encoder, length: float | None = None) -> float:
    """Take a pause (random: ``length`` None) and return its length."""
    before = len(encoder.pause_lengths)
    process = encoder.env.process(encoder._pause(length))
    encoder.env.run(until=process)
    assert len(encoder.pause_lengths) == before + 1
    return encoder.pause_lengths[-1]


def test_a_random_pause_at_the_edge_lasts_p_exactly() -> None:
    encoder = an_encoder(edge_rate=1.0, pause_tail=0.0)
    assert [_pause(encoder) for _ in range(5)] == [encoder.sc.pause_max] * 5


def test_random_pauses_spread_over_zero_to_p() -> None:
    encoder = an_encoder(edge_rate=0.0, pause_tail=0.0)
    lengths = [_pause(encoder) for _ in range(200)]
    most = encoder.sc.pause_max
    assert all(0.0 <= length <= most for length in lengths)
    assert min(lengths) < 0.2 * most and max(lengths) > 0.8 * most


def test_a_tail_pause_lasts_p_times_the_tail_factor() -> None:
    """Outside the model on purpose: the tail's length is what the outside-the-model suites
    measure single-effect against."""
    encoder = an_encoder(pause_tail=1.0, pause_tail_factor=3.0)
    assert _pause(encoder) == 3.0 * encoder.sc.pause_max


def test_random_pauses_recur_and_an_await_point_pause_leaves_the_schedule_alone() -> None:
    """After a random pause the next is drawn (from the schedule, C after this one's end at
    the soonest); a pause taken at an await point (its length given) draws none."""
    encoder = an_encoder(pauses_per_hour=3600.0)
    t0 = encoder.pause_due = encoder.env.now
    length = _pause(encoder)
    assert encoder.pause_ended + encoder.sc.cancel_latency <= encoder.pause_at < math.inf
    assert encoder.pause_due >= t0 + length  # drawn from this pause's scheduled end
    due, at = encoder.pause_due, encoder.pause_at
    encoder.pause_at = math.inf  # (an await-point pause's caller restores it)
    _pause(encoder, 1.0)
    assert (encoder.pause_due, encoder.pause_at) == (due, math.inf)
    encoder.pause_at = at


def test_a_pause_moves_only_what_is_still_to_come() -> None:
    """The work is frozen: its reports after the pause began move by its length, one due at
    that very instant does not (it happened before the pause); so does the end of the work's
    stall, and the world learns when the last fault ends."""
    encoder = an_encoder()
    t0 = encoder.env.now
    first, second = Progressed(10.0, 100.0), Progressed(20.0, 100.0)
    encoder.work_job = "job-000000"
    encoder.work = [(t0, first), (t0 + 1.0, second)]
    encoder.work_fault_end = t0 + 5.0
    _pause(encoder, 2.0)
    assert encoder.work == [(t0, first), (t0 + 3.0, second)]
    assert encoder.work_fault_end == t0 + 7.0
    assert encoder.world.last_fault == t0 + 7.0


def test_a_stall_already_over_is_not_moved_and_the_pause_ends_the_last_fault() -> None:
    encoder = an_encoder()
    t0 = encoder.env.now
    encoder.work_fault_end = t0 - 1.0
    _pause(encoder, 2.0)
    assert encoder.work_fault_end == t0 - 1.0
    assert encoder.world.last_fault == t0 + 2.0


def test_an_idle_wait_can_be_woken_and_unregisters_when_it_ends() -> None:
    """The gateway wakes an idle encoder to hand a job out twice: only while it is idle (a
    wake-up registered after the wait ended would reach a busy encoder)."""
    encoder = an_encoder()
    env, t0 = encoder.env, encoder.env.now
    idle = env.process(encoder.idle(10.0))

    def wake() -> Any:
        yield env.timeout(2.0)
        encoder.world.idle[encoder.name].succeed()

    env.process(wake())
    env.run(until=idle)
    assert env.now == t0 + 2.0
    assert encoder.name not in encoder.world.idle
    env.run(until=env.process(encoder.idle(1.0)))
    assert env.now == t0 + 3.0 and encoder.name not in encoder.world.idle


# ---- a split freeze's budget (``_freeze_budget``): the model allows a total freeze of P in
# any window of P + C. The oracle below states that rule directly, on a grid, and shares no
# code with the driver's bisection.

GRID = 0.01


def _frozen(freezes: list[tuple[float, float]], start: float, end: float) -> float:
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in freezes)


def _largest_allowed(freezes: list[tuple[float, float]], now: float, most: float,
                     window: float) -> float:
    """The longest pause from ``now`` (on a grid) such that every window of ``window`` s
    ending within it holds at most ``most`` s of freeze, the pause included."""
    best, steps = 0.0, round(most / GRID)
    for i in range(steps + 1):
        d = i * GRID
        ends = [now + j * GRID for j in range(i + 1)]
        if all(_frozen([*freezes, (now, now + d)], e - window, e) <= most + 1e-9 for e in ends):
            best = d
        else:
            break
    return best


@pytest.mark.parametrize("earlier", [
    [],
    [(-3.0, -1.0)],
    [(-12.0, -2.0)],
    [(-14.0, -11.0), (-6.0, -4.0)],
    [(-15.5, -14.5), (-9.0, -8.0), (-2.0, -0.5)],
    [(-4.0, -0.0)],
], ids=["none", "two-seconds-just-before", "p-ended-2s-ago", "two-pieces", "three-pieces",
        "one-ending-now"])
def test_a_split_pause_takes_all_the_freeze_the_window_leaves_and_no_more(
        earlier: list[tuple[float, float]]) -> None:
    encoder = an_encoder(pause_split_rate=0.5, pause_max=10.0, cancel_latency=5.0)
    sc, now = encoder.sc, encoder.env.now
    most, window = sc.pause_max, sc.pause_max + sc.cancel_latency
    freezes = [(now + a, now + b) for a, b in earlier]
    encoder.freezes = list(freezes)
    budget = encoder._freeze_budget(now)
    assert budget == pytest.approx(_largest_allowed(freezes, now, most, window), abs=GRID)
    # ... and the model holds with the budget taken, in every window ending within it.
    for j in range(101):
        e = now + budget * j / 100
        assert _frozen([*freezes, (now, now + budget)], e - window, e) <= most + 1e-6


def _await_point_pauses(encoder: Encoder) -> float | None:
    """Pass one await point: the length of the pause taken there, if any."""
    before = len(encoder.pause_lengths)
    encoder.env.run(until=encoder.env.process(encoder._await_point()))
    return encoder.pause_lengths[-1] if len(encoder.pause_lengths) > before else None


@pytest.mark.parametrize(("since", "paused"), [(5.0, True), (4.999, False), (30.0, True)],
                         ids=["exactly-c-after-the-last", "just-within-c", "long-after"])
def test_an_await_point_pauses_p_from_exactly_c_after_the_last_pause(
        since: float, paused: bool) -> None:
    """The adversary's await-point pause: exactly P, as soon as C after the last pause ended
    (the model's P in any window of P + C), never within C (split pauses off)."""
    encoder = an_encoder(await_pause_rate=1.0, pause_split_rate=0.0, pause_max=10.0,
                         cancel_latency=5.0)
    encoder.pause_ended = encoder.frozen_until = encoder.env.now - since
    assert _await_point_pauses(encoder) == (10.0 if paused else None)


def test_no_await_point_pause_once_the_faults_have_stopped() -> None:
    encoder = an_encoder(await_pause_rate=1.0, pause_split_rate=1.0)
    encoder.world.horizon = encoder.env.now
    assert _await_point_pauses(encoder) is None


@pytest.mark.parametrize(("at", "length", "ends"), [(1.0, 3.0, 10.0), (8.0, 5.0, 13.0)],
                         ids=["pause-inside-the-wait", "pause-past-its-end"])
def test_an_idle_wait_ends_at_its_end_or_the_pauses_whichever_is_later(
        at: float, length: float, ends: float) -> None:
    """The loop sleeps until an instant of its monotonic clock, which a pause does not stop:
    a pause inside the wait does not lengthen it, one past its end delays it to the pause's
    end (the process resumes then), as the asyncio driver's ``asyncio.sleep``."""
    encoder = an_encoder(edge_rate=1.0, pause_max=length, pause_tail=0.0)
    env, t0 = encoder.env, encoder.env.now
    encoder.pause_at = t0 + at
    env.run(until=env.process(encoder.idle(10.0)))
    assert encoder.pause_lengths[-1] == length
    assert env.now == t0 + ends


def test_an_idle_wait_ends_when_another_process_pause_ends_if_later() -> None:
    encoder = an_encoder()
    env, t0 = encoder.env, encoder.env.now
    another_process_pauses(encoder, 8.0, 5.0)
    env.run(until=env.process(encoder.idle(10.0)))
    assert env.now == t0 + 13.0

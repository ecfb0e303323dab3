"""The simulator's driver delivers pushes in the order the guard does.

The proofs run the shipped protocol through the SimPy driver; the guard runs it in production.
Where the two drivers deliver the same events in different orders, the suites prove things
about an order nobody ships. Two were found (session 33): the SimPy driver handed a due work
report to the protocol before a push that had arrived earlier (the guard's queue is first
come, first delivered), and it kept pushes across a cancellation, which the guard's
``stop_work`` drops with every other queued event. Random worlds reach neither often (a push
must arrive while the protocol is busy with a request, or during a cancellation), so the
driver is tested directly, on an encoder of a finished run.
"""

from __future__ import annotations

from typing import Any

from conformance.worlds import BASE
from sim import run_once
from sim._encoder import Encoder
from verifier.protocol import Hinted, PhaseChanged, WorkStopped


def _an_encoder() -> Encoder:
    encoders: list[Encoder] = []
    run_once(BASE.replace(encoders=1, jobs=1), "hardened", 0,
             on_start=lambda env, world, made, history: encoders.extend(made))
    return encoders[0]


def _answer(gen: Any) -> Any:
    """The answer of a driver step that needs no simulated time (it returns at once)."""
    try:
        next(gen)
    except StopIteration as done:
        return done.value
    raise AssertionError("the step waited: the test's state was not as intended")


def test_a_push_that_came_before_a_due_report_is_delivered_first() -> None:
    encoder = _an_encoder()
    now = encoder.env.now
    push = Hinted("did:key:other", "assigned")
    encoder.hints, encoder.hint_at = [push], now - 2.0
    encoder.work = [(now - 1.0, PhaseChanged("encode"))]
    assert _answer(encoder._sleep(now * encoder.rate + 10.0, encoder)) == push
    # ... and then the report, at the next wait
    assert _answer(encoder._sleep(now * encoder.rate + 10.0, encoder)) == PhaseChanged("encode")


def test_a_report_due_before_the_push_came_is_delivered_first() -> None:
    encoder = _an_encoder()
    now = encoder.env.now
    push = Hinted("did:key:other", "assigned")
    encoder.hints, encoder.hint_at = [push], now - 1.0
    encoder.work = [(now - 2.0, PhaseChanged("encode"))]
    assert _answer(encoder._sleep(now * encoder.rate + 10.0, encoder)) == PhaseChanged("encode")
    assert _answer(encoder._sleep(now * encoder.rate + 10.0, encoder)) == push


def test_pushes_received_until_the_work_stopped_are_dropped() -> None:
    encoder = _an_encoder()
    encoder.hints, encoder.hint_at = [Hinted("did:key:other", "assigned")], encoder.env.now
    encoder.work, encoder.work_job = [], None  # nothing running: the stop needs no time
    assert isinstance(_answer(encoder._cancel("job-000000", encoder)), WorkStopped)
    assert encoder.hints == []

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

import pytest

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


@pytest.mark.parametrize(("push_ago", "report_ago"), [(2.0, 1.0), (1.0, 2.0)],
                         ids=["push-first", "report-first"])
def test_a_push_and_a_due_report_are_delivered_first_come_first_served(
        push_ago: float, report_ago: float) -> None:
    encoder = _an_encoder()
    now = encoder.env.now
    push, report = Hinted("did:key:other", "assigned"), PhaseChanged("encode")
    encoder.hints, encoder.hint_at = [push], now - push_ago
    encoder.work = [(now - report_ago, report)]
    order = [_answer(encoder._sleep(now * encoder.rate + 10.0, encoder)) for _ in range(2)]
    assert order == ([push, report] if push_ago > report_ago else [report, push])


def test_pushes_received_until_the_work_stopped_are_dropped() -> None:
    encoder = _an_encoder()
    encoder.hints, encoder.hint_at = [Hinted("did:key:other", "assigned")], encoder.env.now
    encoder.work, encoder.work_job = [], None  # nothing running: the stop needs no time
    assert isinstance(_answer(encoder._cancel("job-000000", encoder)), WorkStopped)
    assert encoder.hints == []


def test_a_push_is_stamped_with_its_arrival_and_merged_pushes_keep_the_first() -> None:
    """The order above rests on ``hint_at``, which ``_pushed`` sets when a push arrives with
    none waiting; a second push merged into it keeps the first one's instant, so the merged
    push, first come half a second before a report's due time, is delivered before it
    (mutation testing of the driver, session 35: a stamp set at the wrong push survived, the
    tests above setting it by hand)."""
    encoder = _an_encoder()
    now = encoder.env.now
    assert now > 1.0
    encoder.push_job, encoder.hints, encoder.hint_at = "j", [], 0.0
    report = PhaseChanged("encode")
    encoder.work = [(now - 0.25, report)]
    taken, ours = Hinted("did:key:other", "assigned"), Hinted(encoder.did, "running")
    encoder._pushed("j", taken)
    assert encoder.hint_at == now
    encoder.hint_at = now - 0.5  # as if it had come half a second ago
    encoder._pushed("j", ours)
    assert encoder.hint_at == now - 0.5
    assert encoder.hints == [taken.merged(ours, encoder.did)]
    encoder._pushed("elsewhere", taken)  # another attempt's push: not this one's
    assert encoder.hints == [taken.merged(ours, encoder.did)]
    order = [_answer(encoder._sleep(now * encoder.rate + 10.0, encoder)) for _ in range(2)]
    assert order == [taken.merged(ours, encoder.did), report]  # it came first

"""The SimPy driver's edges, driven directly: a connection, a request, a stop and a sleep at
the exact instants the timing model's bounds allow.

Mutation testing of ``sim/_encoder.py``'s action handling (session 41) left these alive under
every suite: the families reach the edges, but a driver a step kinder or harsher there
changes no verdict, only the world the proofs claim to cover. Each test here pins one rule of
that world (the asyncio driver's, ``verifier/_guard.py``) at its edge.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from conformance.worlds import BASE
from sim import run_once
from sim._encoder import _WORK_DONE, Encoder
from tests.sim.drivers import an_encoder, another_process_pauses, run_to_end
from verifier.protocol import (
    Finish,
    Heartbeat,
    Observe,
    Observed,
    Tier,
    TierFailed,
    WorkStopped,
    WriteAnswered,
    WriteOutcome,
)

JOB = "job-000000"




def _await_points(encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the instant of each await point the driver passes (and take no pause there)."""
    seen: list[float] = []

    def point() -> Any:
        seen.append(encoder.env.now)
        return
        yield  # a generator, as the driver's

    monkeypatch.setattr(encoder, "_await_point", point)
    monkeypatch.setattr(encoder, "pausable", True)
    return seen


# ---- the connection of a gateway finish (``_connect``)

def _connect_in(encoder: Encoder, monkeypatch: pytest.MonkeyPatch, delay: float | None
                ) -> None:
    """The connection is ready ``delay`` s from now (None: exactly at ``by``, the edge)."""
    monkeypatch.setattr(encoder.world, "connect_delay",
                        lambda left, rate: left if delay is None else delay)


def test_a_connection_ready_at_once_leaves_without_an_await_point(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A pooled connection: nothing to wait for, so nothing resumes after it (no await
    point: the adversary's pause there would be one the asyncio driver never has)."""
    encoder = an_encoder()
    t0 = encoder.env.now
    points = _await_points(encoder, monkeypatch)
    _connect_in(encoder, monkeypatch, 0.0)
    assert run_to_end(encoder, encoder._connect(1.0, (t0 + 5.0) * encoder.rate, edge=True)) is True
    assert (encoder.env.now, points) == (t0, [])


def test_a_connection_made_has_an_await_point_before_and_after_its_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The task resumes after the connection and only then checks ``send_by`` (an await
    point: the check must see a pause there), and the bytes leave after the check (another:
    ``TimingModel.finish_slack``'s P after it)."""
    encoder = an_encoder()
    t0 = encoder.env.now
    points = _await_points(encoder, monkeypatch)
    _connect_in(encoder, monkeypatch, 1.0)
    assert run_to_end(encoder, encoder._connect(1.0, (t0 + 5.0) * encoder.rate, edge=True)) is True
    assert points == [t0 + 1.0, t0 + 1.0]


def test_a_connection_ready_exactly_at_send_by_leaves(monkeypatch: pytest.MonkeyPatch) -> None:
    """The edge the world draws on purpose: ready at the last instant, the finish may still
    leave (harsher than refusing it: its write may land as late as the model allows)."""
    encoder = an_encoder()
    t0 = encoder.env.now
    _connect_in(encoder, monkeypatch, None)
    assert run_to_end(encoder, encoder._connect(1.0, (t0 + 5.0) * encoder.rate, edge=True)) is True
    assert encoder.env.now == t0 + 5.0


@pytest.mark.parametrize(("length", "sent"), [(6.0, True), (6.5, False)],
                         ids=["resumed-at-send_by", "resumed-after-it"])
def test_a_pause_over_a_connection_ending_exactly_at_send_by_lets_it_leave(
        length: float, sent: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check after a pause refuses only a finish resumed *past* ``send_by``: one resumed
    at that very instant may leave (the last instant the protocol allowed)."""
    encoder = an_encoder()
    t0 = encoder.env.now
    _connect_in(encoder, monkeypatch, 5.0)
    another_process_pauses(encoder, 4.0, length)
    assert run_to_end(encoder, encoder._connect(1.0, (t0 + 10.0) * encoder.rate, edge=True)) is sent
    assert encoder.env.now == t0 + 4.0 + length


# ---- one request (``_io``)

def _served(encoder: Encoder, monkeypatch: pytest.MonkeyPatch, delay: float) -> list[Any]:
    """The world serves every request with a reply ``delay`` s later; returns the requests."""
    served: list[Any] = []
    serve = encoder.world.serve

    def fixed(did: str, job_id: str, action: Any) -> tuple[Any, float, str, Any]:
        served.append(action)
        answer, _, phase, value = serve(did, job_id, action)
        return answer, delay, phase, value

    monkeypatch.setattr(encoder.world, "serve", fixed)
    return served


def test_a_database_finish_does_not_wait_for_a_gateway_connection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the legacy gateway's HTTP finish and ping wait for a connection (G): a database
    finish leaves at once, whatever the gateway's connection rate."""
    encoder = an_encoder(connect_delay_rate=1.0, ping_connect_rate=1.0)
    asked: list[float] = []
    monkeypatch.setattr(encoder.world, "connect_delay",
                        lambda left, rate: asked.append(rate) or 3.0)
    served = _served(encoder, monkeypatch, 0.5)
    t0 = encoder.env.now
    encoder.world.add_job(JOB, queued=False)
    run_to_end(encoder, encoder._io(JOB, Finish(Tier.DATABASE, token=None)))
    assert (asked, len(served), encoder.env.now) == ([], 1, t0 + 0.5)
    run_to_end(encoder, encoder._io(JOB, Finish(Tier.GATEWAY, token=None)))
    assert asked == [1.0]  # (the gateway's does)


def test_a_request_whose_deadline_is_now_is_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """At its deadline (the lease's end) a ping is answered "unknown" without being sent:
    nothing of it reaches the tier, and the history says so at that instant."""
    encoder = an_encoder()
    served = _served(encoder, monkeypatch, 0.5)
    t0 = encoder.env.now
    answer = run_to_end(encoder, encoder._io(JOB, Heartbeat(Tier.MONITOR, token=None,
                                                      deadline=t0 * encoder.rate)))
    assert answer == WriteAnswered(WriteOutcome.UNKNOWN, detail="deadline")
    assert served == [] and encoder.env.now == t0
    assert list(encoder.history)[-2:] == [(t0, encoder.name, JOB, "heartbeat", "invoke",
                                           Tier.MONITOR),
                                          (t0, encoder.name, JOB, "heartbeat", "fail",
                                           "deadline")]


def test_a_reply_at_the_deadline_itself_is_the_tiers_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply due at the very instant of the deadline is delivered, not replaced by a
    failure: the harsher world for the proofs (a read the tier answered at the lease's end
    counts). The guard gives up there (``_call_by_deadline`` stops within ``_ROUNDING`` of
    the deadline): the simulator is a superset for safety and kinder for L1 at that one
    instant, which random worlds do not hit (a review of the drivers, session 45; until then
    this said the guard's ``wait_for`` could deliver such a reply, which it no longer uses)."""
    encoder = an_encoder()
    encoder.world.add_job(JOB, queued=False)
    _served(encoder, monkeypatch, 2.0)
    t0 = encoder.env.now
    answer = run_to_end(encoder, encoder._io(JOB, Observe(Tier.MONITOR, purpose="recheck",
                                                    deadline=(t0 + 2.0) * encoder.rate)))
    assert isinstance(answer, Observed) and encoder.env.now == t0 + 2.0
    late = run_to_end(encoder, encoder._io(JOB, Observe(Tier.MONITOR, purpose="recheck",
                                                  deadline=(t0 + 3.5) * encoder.rate)))
    assert isinstance(late, TierFailed) and encoder.env.now == t0 + 3.5  # (one past it is not)


# ---- the stop of cancelled work (``_cancel``) and a sleep (``_sleep``)

def test_a_cancel_after_the_work_ended_on_its_own_records_that_end(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Work whose end was due before the cancel (not yet reported: the protocol was busy)
    ended on its own then: its stop is recorded at that instant, and there is nothing to
    stop (no C to wait)."""
    encoder = an_encoder()
    t0 = encoder.env.now
    encoder.work_job = JOB
    encoder.work = [(t0 - 1.0, _WORK_DONE)]
    assert isinstance(run_to_end(encoder, encoder._cancel(JOB, encoder)), WorkStopped)
    stops = [r for r in encoder.history if r[3] == "stop"]
    assert stops[-1] == (t0 - 1.0, encoder.name, JOB, "stop", "ok", "done")
    assert encoder.env.now == t0 and encoder.work_job is None


@pytest.mark.parametrize("rate", [1.05, 0.95])
def test_a_sleep_ends_at_its_instant_on_the_encoders_own_clock(rate: float) -> None:
    """The protocol sleeps until an instant of its own clock: on a clock 5% fast or slow,
    ``until / rate`` of simulated time (a sleep converted the wrong way woke 10% off)."""
    encoder = an_encoder()
    encoder.rate = rate
    t0 = encoder.env.now
    run_to_end(encoder, encoder._sleep((t0 + 2.0) * rate, encoder))
    assert encoder.env.now == pytest.approx(t0 + 2.0, abs=1e-9)
    assert not math.isclose(t0 + 2.0 * rate * rate, t0 + 2.0, abs_tol=1e-3)


#: A ``send_by`` on a clock of ``RATE`` at which a wait of exactly the time left to it, from
#: ``AT``, lands the float clock a step past it: ``(by / rate - now)`` then ``now * rate``.
#: Found by a search (such roundings happen only early in a run: 4 in 10**6 random edges with
#: the instant drawn from 10-5,000 s, none in 6 * 10**6 drawn from 150-400 s).
AT, RATE, BY = 11.5217079118928, 1.055327082313844, 66.84915112780952


def test_a_connection_ready_at_send_by_on_a_drifting_clock_leaves_despite_rounding(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ready exactly at the edge, the float clock may read a step past ``send_by``: that is
    not a pause, and the finish leaves (only a pause while it connected may refuse it). A
    check that forgot when the connection was ready refused it. Driven inside a run, at an
    instant early enough for the rounding."""
    out: dict[str, Any] = {}

    def probe(env: Any, world: Any, made: list[Encoder], history: Any) -> None:
        encoder = made[0]

        def connect() -> Any:
            yield env.timeout(AT)
            encoder.rate = RATE
            encoder.crash_at = encoder.pause_at = math.inf
            monkeypatch.setattr(encoder, "pausable", False)
            monkeypatch.setattr(world, "connect_delay", lambda left, rate: left)
            out["sent"] = yield from encoder._connect(1.0, BY, edge=True)
            out["clock"] = env.now * encoder.rate

        env.process(connect())

    run_once(BASE.replace(encoders=1, jobs=1), "hardened", 0, on_start=probe)
    assert out["clock"] > BY  # the rounding was reached
    assert out["sent"] is True


def test_every_pause_during_a_stop_delays_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two pauses of the node while cancelled work stops (another process's, one after the
    other): the stop ends C after the cancel plus both, not one."""
    encoder = an_encoder()
    t0 = encoder.env.now
    monkeypatch.setattr(encoder, "_edge", lambda: True)  # the stop takes C exactly
    encoder.work_job = JOB
    another_process_pauses(encoder, 0.5, 0.25)
    another_process_pauses(encoder, 1.0, 0.5)
    run_to_end(encoder, encoder._cancel(JOB, encoder))
    assert encoder.env.now == pytest.approx(t0 + encoder.sc.cancel_latency + 0.75)


@pytest.mark.parametrize("per_hour", [0.5, 1.0, 3600.0])
def test_a_fault_rate_of_any_size_schedules_faults(per_hour: float) -> None:
    """A rate below one per hour is a rate, not none: its next fault is drawn (at a mean
    gap of 3600 / rate seconds); only a rate of 0 schedules nothing."""
    encoder = an_encoder()
    gaps = [encoder._next(per_hour, "crash") - encoder.env.now for _ in range(4000)]
    assert all(0 < gap < math.inf for gap in gaps)
    assert sum(gaps) / len(gaps) == pytest.approx(3600.0 / per_hour, rel=0.1)
    assert encoder._next(0.0, "crash") == math.inf

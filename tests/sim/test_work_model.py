"""The simulated work, driven directly (``Encoder._progress``, ``Encoder._start``).

The work's reports are what the protocol's pings carry and what the gateway's progress
timeout judges; its stalls and stuck inputs are faults, which end when the faults stop (L1's
premise). Mutation testing of the driver (session 42) left most of ``_progress`` alive: the
families check outcomes (a lease kept, a job finished), which a report a few seconds off, a
stall that ends after the horizon or a share rounded differently rarely change. Each rule
is stated here on its own, with scripted draws, and the expected schedule written out.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from sim._encoder import Encoder
from tests.sim.drivers import an_encoder
from verifier.protocol import Progressed

STEP, TIMEOUT = 10.0, 300.0
T0, LENGTH = 100.0, 35.0


class Draws:
    """A random stream that returns the given values, in order (and fails past them)."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


def _encoder(horizon: float = math.inf, **changes: Any) -> Encoder:
    encoder = an_encoder(progress_step_s=STEP, progress_timeout=TIMEOUT, **changes)
    encoder.world.horizon = horizon
    encoder.world.last_fault = -math.inf
    return encoder


def _plan(encoder: Encoder, phase: str, rng: Any, stuck: float | None = None
          ) -> tuple[list[tuple[float, Any]], float]:
    events: list[tuple[float, Any]] = []
    end = encoder._progress(events, phase, T0, LENGTH, rng, stuck, slot=encoder)
    return events, end


def test_a_phase_reports_every_step_of_work_and_ends_after_its_length() -> None:
    """Encoding maps its progress onto 0-90% (the download is done: 100%), one report per
    step of work, none at its end (the next phase's change says it)."""
    events, end = _plan(_encoder(), "encode", None)
    assert events == [(110.0, Progressed(25.714, 100.0)), (120.0, Progressed(51.429, 100.0)),
                      (130.0, Progressed(77.143, 100.0))]
    assert end == T0 + LENGTH


@pytest.mark.parametrize(("phase", "first"), [("download", Progressed(0.0, 28.571)),
                                              ("upload", Progressed(92.857, 100.0))])
def test_download_and_upload_report_their_own_ranges(phase: str, first: Progressed) -> None:
    events, _ = _plan(_encoder(), phase, None)
    assert events[0] == (110.0, first)


def test_a_stall_delays_every_report_after_it_and_the_phase_end() -> None:
    """A stall (``stall_rate``) at a uniform share of the phase, up to twice the progress
    timeout long: the reports after it and the phase's end come that much later, and the
    world learns when the fault ends."""
    encoder = _encoder(stall_rate=0.5)
    # drawn: stalls (0.1 < 0.5), at 0.5 of the phase (17.5 s in), 0.25 x 2 x T = 150 s long
    events, end = _plan(encoder, "encode", Draws(0.1, 0.5, 0.25))
    stall = 0.25 * 2 * TIMEOUT
    assert [at for at, _ in events] == [110.0, 120.0 + stall, 130.0 + stall]
    assert end == T0 + LENGTH + stall
    assert encoder.work_fault_end == encoder.world.last_fault == T0 + 17.5 + stall


def test_no_stall_when_the_draw_says_none() -> None:
    encoder = _encoder(stall_rate=0.5)
    rng = Draws(0.5)  # not below the rate: nothing more is drawn
    events, end = _plan(encoder, "encode", rng)
    assert (end, rng.values, encoder.world.last_fault) == (T0 + LENGTH, [], -math.inf)
    assert [at for at, _ in events] == [110.0, 120.0, 130.0]


def test_a_stall_ends_when_the_faults_stop() -> None:
    """A stall is a fault: it is cut at the horizon H, after which no fault happens."""
    encoder = _encoder(horizon=T0 + 20.0, stall_rate=0.5)
    events, end = _plan(encoder, "encode", Draws(0.1, 0.5, 0.25))
    assert end == T0 + LENGTH + 2.5  # 17.5 s in, cut at 20 s in
    assert encoder.world.last_fault == T0 + 20.0
    assert [at for at, _ in events] == [110.0, 122.5, 132.5]


def test_no_stall_is_drawn_once_the_faults_have_stopped() -> None:
    encoder = _encoder(horizon=T0, stall_rate=1.0)
    rng = Draws()  # nothing may be drawn
    _, end = _plan(encoder, "encode", rng)
    assert end == T0 + LENGTH and encoder.world.last_fault == -math.inf


def test_a_stuck_input_reports_where_it_hangs_and_hangs_until_the_faults_stop() -> None:
    """A stuck input (``stuck``, a share of the download) adds a report exactly there, the
    same value in every attempt, then hangs until H: what follows moves by the hang."""
    horizon = T0 + 50.0
    encoder = _encoder(horizon=horizon)
    events, end = _plan(encoder, "download", None, stuck=0.4)
    hang = horizon - (T0 + 14.0)
    assert events == [(110.0, Progressed(0.0, 28.571)), (114.0, Progressed(0.0, 40.0)),
                      (120.0 + hang, Progressed(0.0, 57.143)),
                      (130.0 + hang, Progressed(0.0, 85.714))]
    assert end == T0 + LENGTH + hang
    assert encoder.work_fault_end == encoder.world.last_fault == horizon


def test_a_stall_before_a_stuck_input_delays_where_it_hangs() -> None:
    """Both in one phase: the stall (5 s in, 20 s long) comes first, so the input is reached
    20 s later, and hangs from then until H."""
    horizon = T0 + 200.0
    encoder = _encoder(horizon=horizon, stall_rate=0.5)
    stall = 20.0
    events, end = _plan(encoder, "download", Draws(0.1, 5.0 / LENGTH, stall / (2 * TIMEOUT)),
                        stuck=0.4)
    hang = horizon - (T0 + 14.0 + stall)
    assert [at for at, _ in events] == pytest.approx(
        [110.0 + stall, 114.0 + stall, 120.0 + stall + hang, 130.0 + stall + hang])
    assert end == pytest.approx(T0 + LENGTH + stall + hang)
    assert encoder.world.last_fault == pytest.approx(horizon)


def test_a_stuck_input_before_a_stall_ends_the_faults_after_both() -> None:
    """The input hangs 14 s in, until H; a stall drawn later in the phase (28 s in) is cut
    to nothing by H (it would start after the faults stop)."""
    horizon = T0 + 100.0
    encoder = _encoder(horizon=horizon, stall_rate=0.5)
    events, end = _plan(encoder, "download", Draws(0.1, 0.8, 0.5), stuck=0.4)
    hang = horizon - (T0 + 14.0)
    assert end == pytest.approx(T0 + LENGTH + hang)
    assert encoder.world.last_fault == pytest.approx(horizon)
    assert [at for at, _ in events] == pytest.approx(
        [110.0, 114.0, 120.0 + hang, 130.0 + hang])


def test_a_start_plans_the_three_phases_back_to_back() -> None:
    """Download, encode, upload, each announced when it begins, then the work's end; with no
    spread (``phase_sigma`` 0) each lasts its mean."""
    from sim._encoder import _WORK_DONE
    from verifier.protocol import PhaseChanged

    encoder = _encoder(phase_sigma=0.0, download_mean_s=20.0, encode_mean_s=35.0,
                       upload_mean_s=8.0)
    encoder.world.add_job("job-000000", queued=False)
    t0 = encoder.env.now
    encoder._start("job-000000", encoder)
    marks = [(at, e) for at, e in encoder.work if not isinstance(e, Progressed)]
    assert [e for _, e in marks] == [PhaseChanged("download"), PhaseChanged("encode"),
                                     PhaseChanged("upload"), _WORK_DONE]
    assert [at - t0 for at, _ in marks] == pytest.approx([0.0, 20.0, 55.0, 63.0])
    assert encoder.work_job == "job-000000"


def test_each_phase_lasts_its_mean_on_average() -> None:
    """The lengths are lognormal with the scenario's *mean* (mu = ln(mean) - sigma**2 / 2):
    with sigma 0.5, a mu of ln(mean) alone makes them 13% longer on average."""
    from verifier.protocol import PhaseChanged

    encoder = _encoder(phase_sigma=0.5, download_mean_s=20.0, encode_mean_s=100.0,
                       upload_mean_s=8.0)
    lengths = []
    for i in range(3000):
        job = f"job-{i:06d}"
        encoder._start(job, encoder)
        begins = {e.phase: at for at, e in encoder.work if isinstance(e, PhaseChanged)}
        lengths.append(begins["upload"] - begins["encode"])
    assert sum(lengths) / len(lengths) == pytest.approx(100.0, rel=0.05)


def test_a_phase_change_and_a_report_due_together_come_one_at_a_time_in_order() -> None:
    """Reports due by a wake-up are coalesced: the latest phase change first, then, at the
    next wait, the latest progress (which a ping carries)."""
    from verifier.protocol import PhaseChanged

    encoder = _encoder()
    now = encoder.env.now
    later = (now + 5.0, Progressed(50.0, 100.0))
    encoder.work = [(now - 3.0, PhaseChanged("encode")), (now - 2.0, Progressed(10.0, 100.0)),
                    (now - 1.0, Progressed(20.0, 100.0)), later]
    assert encoder._due_report(now, encoder) == PhaseChanged("encode")
    # The progress is carried to the next wait, delivered there before anything else.
    assert encoder.carried == Progressed(20.0, 100.0) and encoder.work == [later]
    wait = encoder._sleep(now * encoder.rate + 10.0, encoder)
    with pytest.raises(StopIteration) as delivered:
        next(wait)
    assert delivered.value.value == Progressed(20.0, 100.0)
    assert encoder.carried is None and encoder.work == [later]


@pytest.mark.parametrize("ended", [-1.0, 0.0], ids=["before", "at-the-instant"])
def test_work_that_ended_by_a_crash_or_cancel_is_recorded_as_ended_then(ended: float) -> None:
    """The work's end is its last event: recorded at its own instant if it came by then (at
    that very instant too), reports still pending before it notwithstanding."""
    from sim._encoder import _WORK_DONE

    encoder = _encoder()
    now = encoder.env.now
    encoder.work_job = "job-000000"
    encoder.work = [(now - 3.0, Progressed(10.0, 100.0)), (now + ended, _WORK_DONE)]
    encoder._record_natural_end(encoder, until=now)
    stops = [r for r in encoder.history if r[3] == "stop"]
    assert stops[-1] == (now + ended, encoder.name, "job-000000", "stop", "ok", "done")
    assert encoder.work_job is None


def test_a_phase_whose_length_is_a_whole_number_of_steps_reports_none_at_its_end() -> None:
    encoder = _encoder()
    events: list[tuple[float, Any]] = []
    end = encoder._progress(events, "encode", T0, 30.0, None, None, slot=encoder)
    assert [at for at, _ in events] == [110.0, 120.0] and end == T0 + 30.0


def test_a_stall_drawn_past_the_horizon_is_none() -> None:
    """Drawn 17.5 s into a phase whose faults stop 10 s in: it would begin after H, so it
    lasts nothing (neither a negative length, moving reports earlier, nor a moment)."""
    encoder = _encoder(horizon=T0 + 10.0, stall_rate=0.5)
    events, end = _plan(encoder, "encode", Draws(0.1, 0.5, 0.25))
    assert end == T0 + LENGTH
    assert [at for at, _ in events] == [110.0, 120.0, 130.0]


def test_an_input_stuck_past_the_horizon_does_not_hang() -> None:
    """Reached after H, a stuck input no longer hangs (no fault after the faults stop): its
    report is still made, at its place."""
    encoder = _encoder(horizon=T0 + 10.0)
    events, end = _plan(encoder, "download", None, stuck=0.4)
    assert end == T0 + LENGTH and encoder.world.last_fault == -math.inf
    assert [at for at, _ in events] == [110.0, 114.0, 120.0, 130.0]

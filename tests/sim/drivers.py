"""Helpers for the tests that drive ``sim._encoder.Encoder`` directly (its handling of one
request, one sleep, one connection or one stop), at instants a random world seldom hits
exactly."""

from __future__ import annotations

import math
from typing import Any

from conformance.worlds import BASE
from sim import Scenario, run_once
from sim._encoder import _WORK_DONE, _WORK_FAILED, Encoder

#: The simulated work's end events (finished, failed on its own), for tests outside
#: ``tests/sim`` that script a driver's work (they may not open ``sim``'s private modules).
WORK_DONE = _WORK_DONE
WORK_FAILED = _WORK_FAILED


def an_encoder(**changes: Any) -> Encoder:
    """An encoder of a finished one-job run of ``BASE`` (with ``changes``), its clock moved on
    to a whole second and its drift removed, so that the instants a test sets are exact
    floats; no crash, pause or shutdown is due, and faults go on (the run had stopped them)."""
    encoders: list[Encoder] = []
    sc: Scenario = BASE.replace(**{"encoders": 1, "jobs": 1, **changes})
    run_once(sc, "hardened", 0, on_start=lambda env, world, made, history: encoders.extend(made))
    encoder = encoders[0]
    encoder.env.run(until=float(math.ceil(encoder.env.now) + 10))
    encoder.rate = 1.0
    encoder.world.horizon = math.inf
    encoder.crash_at = encoder.pause_at = encoder.shutdown_at = math.inf
    return encoder


def another_process_pauses(encoder: Encoder, after: float, length: float) -> None:
    """Another process of the node (a slot's, ``concurrency`` > 1) pauses it ``after`` s from
    now, for ``length`` s."""
    env = encoder.env

    def other() -> Any:
        yield env.timeout(after)
        yield from encoder._pause(length)

    env.process(other())


def run_to_end(encoder: Encoder, steps: Any) -> Any:
    """Run the generator ``steps`` (one of the encoder's own, or a test's) as a process of the
    encoder's world until it ends; its value."""
    return encoder.env.run(until=encoder.env.process(steps))

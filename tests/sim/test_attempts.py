"""What the simulator's attempts leave behind (``Encoder.attempt``): each outcome counted
once, and no push subscription after an attempt ends.

Mutation testing of the encoder loop's driver (session 42) left both unchecked: the run's
``outcomes`` counts (reported per run in the JSON) could be off by one or stuck at one, and an
attempt could stay subscribed to its job's pushes after it ended, with no test failing.
"""

from __future__ import annotations

import pytest

from conformance.families import FAMILIES
from conformance.worlds import BASE
from sim import run_once
from sim._encoder import Encoder


@pytest.mark.parametrize("family", ["push", "lease", "slots"])
def test_every_attempt_is_counted_once_by_its_outcome(family: str) -> None:
    sc = BASE.replace(**FAMILIES[family])
    for seed in range(3):
        result = run_once(sc, "hardened", seed)
        ended = [r for r in result.history if r[3] == "outcome"]
        assert ended, (family, seed)
        assert sum(result.outcomes.values()) == len(ended), (family, seed, result.outcomes)
        assert all(count > 0 for count in result.outcomes.values())


def test_no_push_subscription_outlives_its_attempt() -> None:
    sc = BASE.replace(**FAMILIES["push"])
    assert sc.push_rate > 0
    for seed in range(3):
        made: list[Encoder] = []
        result = run_once(sc, "hardened", seed,
                          on_start=lambda env, world, encoders, history, made=made:
                          made.extend(encoders))
        assert any(r[3] == "outcome" for r in result.history), seed
        push = made[0].push
        assert push is not None
        # Every attempt has ended (each job committed or given up), so none is subscribed.
        assert push.subscribers == {}, (seed, push.subscribers)

"""Common random numbers (sim/_rng.py): every chain on one seed faces the same offered world.

The gateway's double hand-outs, the jobs' arrival times and the work each start draws are keyed
by (seed, entity, purpose), not read from a stream in call order, so they do not depend on what
a chain asked before. These tests fail if a world draw goes back to a shared, call-ordered
stream: the chains below make very different requests.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from sim import Scenario, Streams, run_once
from sim._rng import KeyedRandom

SCENARIO = Scenario(encoders=10, jobs=80, lie_rate=0.3, arrival_per_hour=150,
                    crashes_per_hour=1.0, pauses_per_hour=4.0)
SEED = 4


class _Recorder(deque):  # type: ignore[type-arg]
    """The world's queue of double hand-outs, recording each offer with its assignment."""

    def __init__(self, world: Any, offers: list[tuple[str, int]]) -> None:
        super().__init__()
        self.world, self.offers = world, offers

    def append(self, item: tuple[float, str]) -> None:
        job_id = item[1]
        self.offers.append((job_id, self.world.jobs[job_id].epoch))
        super().append(item)


def offered_world(chain: str) -> tuple[set[str], dict[str, float], dict[str, float]]:
    """The jobs whose first hand-out was offered twice, every job's arrival time, and each
    encoder's first crash time, as one run of ``chain`` saw them."""
    offers: list[tuple[str, int]] = []
    seen: dict[str, Any] = {}

    def hook(env: Any, world: Any, encoders: Any, history: Any) -> None:
        world._double = _Recorder(world, offers)
        seen["world"], seen["encoders"] = world, encoders
        seen["crashes"] = {e.name: e.crash_at for e in encoders}

    run_once(SCENARIO, chain, SEED, on_start=hook)
    arrivals = {j: job.created for j, job in seen["world"].jobs.items()}
    return {j for j, epoch in offers if epoch == 1}, arrivals, seen["crashes"]


def test_two_chains_on_one_seed_are_offered_the_same_double_hand_outs_and_arrivals():
    trusting = offered_world("trust-gateway")
    documented = offered_world("documented")
    offered, arrivals, crashes = trusting
    assert offered, "the world offered no double hand-out: the test would prove nothing"
    assert len(arrivals) == SCENARIO.jobs
    assert documented == trusting
    # ... and the offers are the seed's plan, which the metrics count (chain-independent).
    plan = {j for j in arrivals
            if Streams(SEED).keyed("gateway.double", j, 1).random() < SCENARIO.lie_rate}
    assert offered == plan
    # A different seed is a different world.
    assert Streams(SEED + 1).keyed("gateway.double", "job-000000", 1).random() != (
        Streams(SEED).keyed("gateway.double", "job-000000", 1).random())
    assert crashes  # every encoder's first crash is drawn from its own stream


def test_the_runs_differ_where_the_chains_do():
    """The chains are not secretly identical: they act differently on the same world."""
    a = run_once(SCENARIO, "trust-gateway", SEED).metrics
    b = run_once(SCENARIO, "hardened", SEED).metrics
    assert a.overlapping_jobs > b.overlapping_jobs == 0


def test_keyed_draws_are_a_pure_function_of_the_key():
    first = [KeyedRandom("k").random() for _ in range(3)]
    assert len(set(first)) == 1  # a fresh generator of one key starts at the same number
    rng = KeyedRandom("k")
    draws = [rng.random() for _ in range(1000)]
    assert draws[0] == first[0] and len(set(draws)) == 1000
    assert all(0.0 <= x < 1.0 for x in draws)
    assert 0.45 < sum(draws) / len(draws) < 0.55
    streams = Streams(7)
    assert [streams.next_keyed("work", "j").random() for _ in range(2)] == [
        Streams(7).keyed("work", "j", n).random() for n in (1, 2)]


def test_a_tape_still_drives_every_keyed_draw_in_call_order():
    streams = Streams.from_tape([0.25, 0.75])
    assert streams.keyed("gateway.double", "j", 1).random() == 0.25
    assert streams.next_keyed("work", "j").random() == 0.75

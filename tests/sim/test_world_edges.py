"""The world reaches the edges of its timing model (mutation testing of ``sim/_world.py``,
session 46).

A safety proof is only as strong as its adversary: the edge suite and the teeth show that the
hardened chain is safe in worlds that reach the timing model's bounds, and that a chain
believing a smaller bound is caught there. A world that silently stopped reaching a bound (a
late write landing only at its reply, a late ping under a second landing at once, a ping never
landing exactly G late, a double hand-out offered after its window) left both green: the
survivors of that run, each pinned here on the world itself. (The edges the suites already
held, a late accept exactly G late and a monitor read exactly Δ old, are not repeated.)
"""

from __future__ import annotations

from typing import Any

import pytest
import simpy

from sim import History, Scenario, Streams
from sim._world import World

ALICE, BOB = "did:key:alice", "did:key:bob"
G = 2.0


def _world(seed: int = 1, **changes: Any) -> World:
    """One queued job ``j`` in a ``getJob`` world with no faults but those ``changes`` set."""
    scenario = Scenario(**{
        "assignment": "getjob", "write_delay": G, "lie_rate": 0.0, "late_write_rate": 0.0,
        "reply_loss_rate": 0.0, "monitor_error_rate": 0.0, "monitor_synthetic_rate": 0.0,
        "status_lie_rate": 0.0, **changes})
    env = simpy.Environment()
    world = World(env, scenario, Streams.from_seed(seed), History())
    world.add_job("j")
    return world


def _assigned_at(world: World) -> list[float]:
    return [t for t, _p, job, op, _ph, _v in world.history.records if job == "j" and op == "assign"]


def test_late_accepts_land_after_their_reply_and_never_later_than_g() -> None:
    """Off the edge, a late accept's write lands inside (reply, G] after its request: never
    before the reply (that is an early write), and spread over the window, not only at the
    reply's instant (mutation testing of the world, session 46: a late write landing at the
    reply, or anywhere in [0, G - reply), survived the suites, which reach G at the edge)."""
    late = []
    for seed in range(200):
        world = _world(seed, late_write_rate=1.0, gateway_latency=0.05)
        env = world.env
        env.run(until=1.0)
        _, delay = world.gw_accept(ALICE, "j")
        env.run(until=10.0)
        (landed,) = _assigned_at(world)
        assert 1.0 + delay <= landed <= 1.0 + G, seed
        late.append(landed - 1.0 - delay)
    assert max(late) > 0.9 * G and sum(x > G / 2 for x in late) > 50


def test_late_pings_land_later_than_their_request_over_the_whole_window() -> None:
    """Off the edge, a late ping lands at a uniform instant in (0, G] after its request: never
    at once, and the short delays are as late as the long ones (session 46: a late ping under
    one second applied at once survived the suites)."""
    landed = []
    for seed in range(50):
        world = _world(seed, late_write_rate=1.0)
        env = world.env
        world.gw_accept(ALICE, "j")
        env.run(until=3.0)
        before = world.jobs["j"].last_pinged
        world.gw_ping(ALICE, "j")
        assert world.jobs["j"].last_pinged == before, seed  # in flight, not yet counted
        env.run(until=10.0)
        landed.append(world.jobs["j"].last_pinged - 3.0)
        assert 0.0 < landed[-1] <= G, seed
    assert min(landed) < G / 4 and max(landed) > 3 * G / 4


@pytest.mark.parametrize("seed", range(5))
def test_a_late_ping_lands_exactly_g_after_its_request_at_the_edge(seed: int) -> None:
    """The proof offset's edge: a gateway ping may land exactly G after its request."""
    world = _world(seed, late_write_rate=1.0, edge_rate=1.0)
    env = world.env
    world.gw_accept(ALICE, "j")  # lands at G, at the edge too
    env.run(until=3.0)
    assert world.jobs["j"].owner == ALICE and world.jobs["j"].last_pinged == G
    world.gw_ping(ALICE, "j")
    env.run(until=3.0 + G - 1e-6)
    assert world.jobs["j"].last_pinged == G  # not yet: the ping is still in flight
    env.run(until=10.0)
    assert world.jobs["j"].last_pinged == 3.0 + G


@pytest.mark.parametrize("late", [G, G + 1e-3])
def test_a_double_hand_out_is_offered_until_exactly_g_after_the_assignment(late: float) -> None:
    """``lie_rate`` = 1: every assignment is also handed to the next encoder that polls
    within G of it, the last instant included, and to none after."""
    world = _world(lie_rate=1.0)
    env = world.env
    env.run(until=1.0)
    world.gw_accept(ALICE, "j")
    env.run(until=1.5)
    (at,) = _assigned_at(world)
    env.run(until=at + late)
    offered, _ = world.gw_poll(BOB)
    assert offered == ("j" if late <= G else None)

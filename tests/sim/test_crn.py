"""Common random numbers (sim/_rng.py): every chain on one seed faces the same offered world.

The gateway's double hand-outs, the jobs' arrival times and the work each start draws are keyed
by (seed, entity, purpose), not read from a stream in call order, so they do not depend on what
a chain asked before. These tests fail if a world draw goes back to a shared, call-ordered
stream: the chains below make very different requests.
"""

from __future__ import annotations

from collections import deque
from itertools import pairwise
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


# ---- the work, the fault schedules and the lies, with stalls, await pauses and status lies

FAULTY = Scenario(encoders=8, jobs=60, lie_rate=0.3, arrival_per_hour=150, crashes_per_hour=1.0,
                  monitor_fraction=0.5, pauses_per_hour=6.0, shutdowns_per_hour=1.0, stall_rate=0.4,
                  await_pause_rate=0.05, status_lie_rate=0.2, edge_rate=0.2)
CHAINS = ("hardened", "trust-gateway", "hardened-without-lease")


def faulty_world(chain: str, seed: int = SEED) -> dict[str, Any]:
    """What one run of ``chain`` drew: each (job, attempt)'s work lengths (stalls included),
    each encoder's fault schedule per kind, the status lies per (job, asker, k), and the
    planned and realised double hand-outs."""
    import sim._encoder as encoder_module

    work: dict[tuple[str, int], list[float]] = {}
    schedule: dict[tuple[str, str], list[float]] = {}
    lies: dict[tuple[str, str, int], bool | None] = {}
    seen: dict[str, Any] = {}
    starts: dict[str, int] = {}
    original_start, original_next = encoder_module.Encoder._start, encoder_module.Encoder._next

    def start(self: Any, job_id: str, *slot: Any) -> Any:
        answer = original_start(self, job_id, *slot)
        n = starts[job_id] = starts.get(job_id, 0) + 1
        work[(job_id, n)] = [round(t - self.env.now, 9) for t, _ in self.work]
        return answer

    def next_(self: Any, per_hour: float, kind: str, *args: Any, **kwargs: Any) -> float:
        at = original_next(self, per_hour, kind, *args, **kwargs)
        schedule.setdefault((self.name, kind), []).append(round(at, 9))
        return at

    def hook(env: Any, world: Any, encoders: Any, history: Any) -> None:
        seen["world"] = world
        status = world.gw_status

        def gw_status(did: str, job_id: str) -> Any:
            job = world.jobs[job_id]
            truth = (job.status, job.owner)
            answer, delay = status(did, job_id)
            k = sum(1 for key in lies if key[:2] == (job_id, did)) + 1
            obs = getattr(answer, "observation", None)
            # Whether the answer was the lie ("assigned to you"); None when the truth says so
            # too or the read failed (a lie there cannot be told from the truth).
            lies[(job_id, did, k)] = None if obs is None or truth == ("assigned", did) else (
                (obs.status, obs.owner) == ("assigned", did))
            return answer, delay
        world.gw_status = gw_status

    encoder_module.Encoder._start, encoder_module.Encoder._next = start, next_
    try:
        result = run_once(FAULTY, chain, seed, on_start=hook)
    finally:
        encoder_module.Encoder._start, encoder_module.Encoder._next = (
            original_start, original_next)
    return {"work": work, "schedule": schedule, "lies": lies, "metrics": result.metrics,
            "doubled": seen["world"].doubled}


def _common(a: dict[Any, Any], b: dict[Any, Any]) -> list[Any]:
    return [k for k in a if k in b]


def test_work_lengths_with_stalls_are_the_same_per_job_and_attempt_in_every_chain():
    runs = {chain: faulty_world(chain) for chain in CHAINS}
    base = runs["hardened"]["work"]
    stalled = [k for k, v in base.items()
               if any(later - earlier > 2 * FAULTY.progress_step_s
                      for earlier, later in pairwise(v))]
    assert stalled, "no stall in the scenario: the test would prove nothing"
    for chain in CHAINS[1:]:
        other = runs[chain]["work"]
        common = _common(base, other)
        assert len(common) >= FAULTY.jobs // 2
        assert [k for k in common if base[k] != other[k]] == [], chain


def test_fault_schedules_are_the_same_in_every_chain():
    """Each encoder's crashes, pauses and shutdowns are scheduled from the previous one's
    scheduled time, not from when a chain handled it: the same times in every chain (the
    common prefix: runs end at different times)."""
    runs = {chain: faulty_world(chain) for chain in CHAINS}
    base = runs["hardened"]["schedule"]
    assert sum(len(v) > 2 for v in base.values()) >= 5  # several faults per encoder and kind
    for chain in CHAINS[1:]:
        other = runs[chain]["schedule"]
        for key in _common(base, other):
            n = min(len(base[key]), len(other[key]))
            assert base[key][:n] == other[key][:n], (chain, key)


def test_status_lies_are_drawn_per_job_asker_and_question():
    """The k-th time encoder e asks the gateway about job j, the gateway lies alike whatever
    else was asked before (a chain asks other questions in between)."""
    import simpy

    from sim._history import History
    from sim._world import World

    def answers(order: list[tuple[str, str]]) -> dict[tuple[str, str, int], Any]:
        env = simpy.Environment()
        world = World(env, FAULTY, Streams(SEED), History())
        for i in range(6):
            world.add_job(f"job-{i:06d}")
        seen: dict[tuple[str, str, int], Any] = {}
        for did, job_id in order:
            k = sum(1 for key in seen if key[:2] == (did, job_id)) + 1
            answer, _ = world.gw_status(did, job_id)
            seen[(did, job_id, k)] = (answer.observation.status, answer.observation.owner)
        return seen

    asks = [(f"did:key:e{e}", f"job-{j:06d}") for e in range(4) for j in range(6)] * 3
    a = answers(asks)
    b = answers(asks[::-1] + asks[:5])
    assert sum(v == ("assigned", k[0]) for k, v in a.items()) >= 3  # lies were told
    assert [k for k in a if k in b and a[k] != b[k]] == []


def test_planned_and_realised_double_hand_outs():
    """The plan is the same for every chain; the realised offers are the planned ones the
    world made, which a chain that claims through the database may never make."""
    runs = {chain: faulty_world(chain) for chain in ("trust-gateway", "hardened")}
    plans = {c: r["metrics"].planned_double for c, r in runs.items()}
    assert len(set(plans.values())) == 1 and plans["hardened"] > 0
    for run in runs.values():
        m = run["metrics"]
        assert m.realised_double == len(run["doubled"]) <= m.planned_double
    # trust-gateway accepts every offer it is made, and the gateway's check lets the accept
    # through when it reads the job as it was up to G ago, so some offers made end in a job
    # assigned to two encoders (not all: an accept that comes more than G after the first
    # assignment is refused); an offer is made only when an encoder polls within G, so not
    # every planned one is.
    trusting = runs["trust-gateway"]["metrics"]
    assert 0 < trusting.realised_double < trusting.planned_double
    assert trusting.double_assigned > 0


def test_a_fault_switched_off_draws_nothing_from_its_stream() -> None:
    """A world without 429s, hangs or slow connections (rate 0) never draws from their
    streams, so adding each left every other world's history as it was; with the rate above
    0 it does draw (found by an adversarial review, session 30: a mutant that drew anyway
    passed every suite)."""
    worlds: list[Any] = []

    def keep(_env: Any, world: Any, *_: Any) -> None:
        worlds.append(world)

    for rate, drawn in ((0.0, False), (0.3, True)):
        sc = Scenario(encoders=3, jobs=6, throttle_rate=rate, hang_rate=rate,
                      connect_delay_rate=rate, infra_fraction=0.0, aid_fraction=0.0,
                      faults_until=3600.0)  # community nodes: finishes are the gateway's
        run_once(sc, "hardened", 5, on_start=keep)
        world = worlds[-1]
        for name, stream in (("throttle", world._throttle), ("hang", world._hang),
                             ("connect", world._connect)):
            fresh = Streams.from_seed(5).stream(name)
            assert (stream.getstate() != fresh.getstate()) is drawn, (name, rate)

"""One simulation run: a world, its encoders, one chain, one seed → history, checks, metrics.

Runs are pure functions of ``(scenario, chain, seed)``: no wall clock, no global random state,
no hash-order dependence, so the same arguments give the same history and the same report,
byte for byte. ``replay_command`` is how a report tells its reader to reproduce it.
"""

from __future__ import annotations

import contextlib
import gc
import operator
import shlex
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import simpy

from verifier import Policy, PollSchedule, TierSet
from verifier.protocol import OwnershipProtocol

from ._checkers import CheckResult, _Partition, check_all
from ._encoder import Encoder
from ._history import History
from ._metrics import RunMetrics, compute_metrics, planned_doubles
from ._push import PushChannel
from ._rng import Streams
from ._scenario import Scenario
from ._world import World

#: Builds a protocol instance: ``factory(job_id, me=did, policy=..., tiers=...)``.
ProtocolFactory = Callable[..., Any]

__all__ = [
    "ProtocolFactory", "RunResult", "judge", "replay_command", "run_once", "tier_mix",
]


@dataclass
class RunResult:
    scenario: Scenario
    chain: str
    seed: int
    history: History
    checks: dict[str, CheckResult]
    metrics: RunMetrics
    outcomes: dict[str, int]
    sim_time: float
    jobs: list[str] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    #: SimPy events processed (for the benchmark's event rate; not part of any report).
    events: int = 0
    #: When the world's last fault struck or ended (``World.last_fault``; -inf with none; None
    #: for a live run): the race suites judge L1 on time from here, not from ``faults_until``.
    last_fault: float | None = None


def tier_mix(scenario: Scenario, index: int) -> TierSet:
    """Which tiers encoder ``index`` has: the first ``infra_fraction`` are infrastructure."""
    n = scenario.encoders
    n_infra = round(n * scenario.infra_fraction)
    if index < n_infra:
        return TierSet(database=True, monitor=True, gateway=True)
    community = n - n_infra
    k = index - n_infra
    monitor = k < round(community * scenario.monitor_fraction)
    aid = k >= community - round(community * scenario.aid_fraction)
    return TierSet(monitor=monitor, gateway=True, aid=aid)


def replay_command(scenario_ref: str, chain: str, seed: int, job: str | None = None,
                   overrides: dict[str, Any] | None = None) -> str:
    parts = ["python", "-m", "sim", "replay", "--scenario", scenario_ref, "--chain", chain,
             "--seed", str(seed)]
    for key, value in sorted((overrides or {}).items()):
        parts += ["--set", f"{key}={value}"]
    if job is not None:
        parts += ["--job", job]
    return " ".join(shlex.quote(p) for p in parts)


def run_once(
    scenario: Scenario,
    chain: str,
    seed: int,
    *,
    streams: Streams | None = None,
    policy: Policy | None = None,
    protocol: ProtocolFactory = OwnershipProtocol,
    progress: Callable[[float, int, int], None] | None = None,
    on_start: Callable[[simpy.Environment, World, list[Encoder], History], None] | None = None,
    schedule: Callable[..., PollSchedule] = PollSchedule,
) -> RunResult:
    """Simulate ``scenario`` under ``chain`` with all randomness from ``seed``.

    ``policy`` overrides the named chain (the conformance suites pass candidate policies);
    ``protocol`` replaces the protocol implementation itself (same constructor and driver
    interface as :class:`verifier.protocol.OwnershipProtocol`), so a changed chain can be
    validated by the same simulator and suites; ``schedule`` replaces the encoder loop's
    decisions (:class:`verifier.PollSchedule`) the same way;
    ``progress(sim_time, finished, jobs)`` is called every simulated hour;
    ``on_start(env, world, encoders, history)`` is called once everything is built, before the
    first event (the explorer hashes the run's state through it).
    """
    policy = scenario.features(policy or Policy.named(chain, timing=scenario.timing_model()))
    env = simpy.Environment()
    history = History()
    # A tape or a shared Random (the conformance suites) has no per-entity plan of offers:
    # race prevention then has no denominator (no planned double hand-out is counted).
    offered: list[str] | None = None if streams is None else []
    streams = streams or Streams.from_seed(seed)
    world = World(env, scenario, streams, history)
    job_ids = [f"job-{i:06d}" for i in range(scenario.jobs)]
    world.release(job_ids, streams)
    push = (PushChannel(env, world.watchers, scenario, streams) if scenario.push_rate > 0
            else None)
    outcomes: dict[str, int] = {}
    width = len(str(scenario.encoders))
    encoders = [
        Encoder(env, world, history, f"e{i:0{width}d}", tiers=tier_mix(scenario, i),
                policy=policy, streams=streams, scenario=scenario, outcomes=outcomes,
                protocol=protocol, push=push, schedule=schedule)
        for i in range(scenario.encoders)
    ]
    if on_start is not None:
        on_start(env, world, encoders, history)
    stop = simpy.AnyOf(env, [world.done_event, env.timeout(scenario.max_time)])
    if progress is not None:
        env.process(_progress(env, world, scenario.jobs, progress))
    with _no_cyclic_gc():
        env.run(until=stop)
        finished_at = env.now
        if world.done_event.triggered:
            # Every job is finished, but encoders may still act on them: a finish retried
            # after a lost reply, a write landing late. Run on for one reassignment timeout
            # (every attempt ends within its lease) so that what they do is judged too (an
            # unfenced second commit happens there). Figures are measured up to
            # ``finished_at``.
            env.run(until=env.now + scenario.reassign_timeout)
        result = judge(scenario, chain, seed, history, job_ids, finished_at, outcomes,
                       world.calls, offered=offered, realised=world.doubled)
    result.events = next(env._eid)  # SimPy's event counter: the benchmark's event rate
    result.last_fault = world.last_fault
    return result


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the run (restored after).

    A run allocates millions of long-lived objects (history records, job logs) and a stream
    of short-lived ones; every full collection walks all of the former, so on S-1k the
    collector alone took about a third of the run's CPU time. The run's objects are freed by
    reference counting as usual; the few cycles it makes (SimPy conditions, the generators of
    protocol attempts cut short by a crash) wait for the next collection after the run. No
    result depends on when the collector runs: nothing in the simulator has a weak reference
    or a ``__del__``, and the encoders' generators that have ``finally`` blocks stay reachable
    from their SimPy process until they finish (a crash unwinds them at once).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def judge(scenario: Scenario, chain: str, seed: int, history: History, job_ids: list[str],
          duration: float, outcomes: dict[str, int], calls: dict[str, int], *,
          offered: list[str] | None = None,
          realised: Collection[str] | None = None) -> RunResult:
    """Check and measure a finished run's history (simulated or live: the same checkers).
    ``offered``: the planned double hand-outs; by default the plan of ``seed``'s world
    (:func:`sim._metrics.planned_doubles`); ``realised``: the planned ones the world made
    (None: unknown, as in a live run)."""
    history.records.sort(key=_TIME)  # stable: records at one instant keep their order
    partition = _Partition(history)
    checks = check_all(history, jobs=job_ids, partition=partition)
    if offered is None:
        offered = planned_doubles(scenario.lie_rate, seed, job_ids)
    metrics = compute_metrics(history, jobs=job_ids, duration=duration, checks=checks,
                              partition=partition, offered=offered, realised=realised)
    return RunResult(scenario, chain, seed, history, checks, metrics, dict(sorted(
        outcomes.items())), duration, job_ids, dict(calls))


#: A record's time (``itemgetter``: the sort key of millions of records, without a Python call).
_TIME: Final = operator.itemgetter(0)


def _progress(env: simpy.Environment, world: World, jobs: int,
              report: Callable[[float, int, int], None]) -> Any:
    while True:
        yield env.timeout(3600.0)
        report(env.now, world.finished, jobs)

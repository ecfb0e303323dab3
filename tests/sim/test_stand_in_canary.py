"""The suites see a protocol that trusts the monitor's stand-in (``tests/sim/protocols.py``).

The simulated monitor answers a stand-in built from the gateway's view when its database view is
down (``monitor_synthetic_rate``), lies included (``status_lie_rate``: "assigned" to an encoder
the gateway handed the job to). A protocol that takes such a stand-in naming its own DID for a
real record starts work on jobs other encoders own, so S1/S2 catch it in a world where the
built-in hardened protocol keeps them; without stand-ins the two behave alike.
"""

from __future__ import annotations

import simpy

from sim import History, Scenario, Streams, run_once
from sim._world import World
from tests.sim.protocols import StandInTrustingProtocol
from verifier import GatewayMonitorJob, Observation, Tier
from verifier.protocol import Observed

#: Community nodes with the monitor (the tier the stand-in comes from), double hand-outs, and
#: a gateway whose status answers lie: every stand-in names an encoder it handed the job to.
STAND_INS = Scenario(encoders=12, jobs=150, lie_rate=0.2, arrival_per_hour=80,
                     status_lie_rate=1.0, monitor_synthetic_rate=0.3, monitor_fraction=1.0,
                     infra_fraction=0.0)
#: Independent seeds: a rate, not one lucky path. Any seed's offered lies may happen never to
#: reach the canary's stand-in path (seed 1 once, seed 3 after the finish deadline of
#: 2026-12-05 moved its history): measured then, seeds 1-8 caught it in 7 (2 to 12 pairs).
SEEDS = range(1, 7)


def violations(result) -> int:
    return result.checks["S1"].violations + result.checks["S2"].violations


def test_a_protocol_trusting_stand_ins_violates_s1_s2_where_hardened_does_not():
    caught = [seed for seed in SEEDS
              if violations(run_once(STAND_INS, "hardened", seed,
                                     protocol=StandInTrustingProtocol)) > 0]
    assert len(caught) >= 4, f"the stand-in trusting canary was caught in {caught} only"
    for seed in SEEDS:
        shipped = run_once(STAND_INS, "hardened", seed)
        assert violations(shipped) == 0, (seed, shipped.checks)


def test_without_stand_ins_the_canary_is_the_shipped_protocol():
    quiet = STAND_INS.replace(monitor_synthetic_rate=0.0)
    canary = run_once(quiet, "hardened", SEEDS[0], protocol=StandInTrustingProtocol)
    shipped = run_once(quiet, "hardened", SEEDS[0])
    assert violations(canary) == violations(shipped) == 0
    assert canary.outcomes == shipped.outcomes


def _world_reads(scenario: Scenario, reads: int) -> list[Observed]:
    """``reads`` monitor reads of one job the gateway handed to two encoders (the first's
    write landed, then the second's: the second owns it)."""
    env = simpy.Environment()
    world = World(env, scenario, Streams.from_seed(SEEDS[0]), History())
    world.add_job("j")
    job = world.jobs["j"]
    for did in ("did:key:zA", "did:key:zB"):
        job.epoch_of_did[did] = len(job.epoch_of_did) + 1
    job.status, job.owner = "assigned", "did:key:zB"
    answers = []
    for _ in range(reads):
        read, _ = world.monitor_read("j")
        assert isinstance(read, Observed)
        answers.append(read)
    return answers


def test_the_simulated_stand_in_carries_the_gateways_view():
    every_read = STAND_INS.replace(monitor_synthetic_rate=1.0, monitor_error_rate=0.0,
                                   faults_until=None)
    honest = _world_reads(every_read.replace(status_lie_rate=0.0), 20)
    assert {(r.observation.status, r.observation.owner) for r in honest} == {
        ("assigned", "did:key:zB")}
    lying = _world_reads(every_read, 200)
    owners = {r.observation.owner for r in lying}
    assert owners == {"did:key:zA", "did:key:zB"}, "the lie names an encoder handed the job"
    for read in honest + lying:
        job = read.observation.job
        assert isinstance(job, GatewayMonitorJob) and job.synthetic and job.id == "j"
        assert read.observation == Observation(Tier.MONITOR, job)

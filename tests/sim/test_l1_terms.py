"""Terms of L1's time bound (``sim.l1_bound``) shown needed: for each, worlds of an edge family
where the hardened chain meets L1 with the true bound and fails it with that term dropped
(``l1_bound(without=...)``). "Every term of every timing formula needs a test that fails
when it is weakened": before the ``fast-poll`` and ``crash-liveness`` families
(conformance/families.py), no world asked by ``benchmarks/l1_terms.py`` needed the settle,
the monitor's lag in the hand-out, the other jobs' time or the restart after a crash
(docs/safety-model.md, L1, "Which terms a world needs").

The lease arm of the residual is checked the other way: it can never change the bound (it
is never the largest of the residual's arms), so no world can need its three terms.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings

from conformance.families import FAMILIES, NO_TIMELY_LIVENESS
from conformance.worlds import BASE, World, l1_on_time, race, worlds
from sim import L1_TERMS, Scenario, l1_bound


def _needed(sc: Scenario, family: str, seeds: range) -> Counter[str]:
    """Per term, the seeds' worlds whose run the bound without it fails; asserts that the
    true bound fails none."""
    counts: Counter[str] = Counter()
    for seed in seeds:
        world = World(sc, seed=seed, family=family)
        assert l1_on_time(world)
        run = race(world, "hardened")
        assert run.checks["L1"].ok, run.explain("L1")
        history, jobs = run.result.history, run.result.jobs
        for name in L1_TERMS:
            if not l1_bound(sc, without=name).check(history, jobs=jobs,
                                                     horizon=sc.faults_until).ok:
                counts[name] += 1
    return counts


def test_the_new_families_are_judged_on_time_inside_the_model() -> None:
    for family in ("fast-poll", "crash-liveness"):
        sc = BASE.replace(**FAMILIES[family])
        assert family not in NO_TIMELY_LIVENESS
        assert sc.inside_model() and not sc.timing_model().problems(), family
        assert l1_bound(sc).bound < float("inf")


def test_fast_poll_needs_the_settle_and_the_monitors_lag() -> None:
    sc = BASE.replace(**FAMILIES["fast-poll"], jobs=1)
    counts = _needed(sc, "fast-poll", range(20))
    # Measured (2026-12-05): the settle in 20 of 20, Δ (and the idle poll) in 6 of 20.
    assert counts["attempt.settle"] >= 15, counts
    assert counts["hand_out.lag"] >= 3, counts


def test_fast_poll_with_two_jobs_needs_the_other_jobs_time() -> None:
    sc = BASE.replace(**FAMILIES["fast-poll"], jobs=2)
    counts = _needed(sc, "fast-poll", range(12))
    # Measured (2026-12-05): 20 of 20 (seeds 0-19).
    assert counts["others"] >= 9, counts


def test_crash_liveness_needs_the_restart() -> None:
    sc = BASE.replace(**FAMILIES["crash-liveness"])
    assert sc.crashes_per_hour > 0 and sc.shutdowns_per_hour == 0
    counts = _needed(sc, "crash-liveness", range(40))
    # Measured (2026-12-05): 18 of 40.
    assert counts["residual.restart"] >= 8, counts


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(world=worlds(focus=True))
def test_the_lease_arm_never_changes_the_bound(world: World) -> None:
    """κ·(T − (ε + P + C)) + C = T − κ(P + C) + C ≤ T ≤ G + T + S: the lease arm is never the
    residual's largest (the holder's lease is built to end before the gateway reassigns), so
    dropping any of its terms leaves the bound as it is (docs/safety-model.md, L1)."""
    sc = world.scenario
    true = l1_bound(sc)
    for name in ("residual.lease", "residual.lease.drift", "residual.lease.C"):
        weak = l1_bound(sc, without=name)
        assert (weak.residual, weak.bound) == (true.residual, true.bound), name

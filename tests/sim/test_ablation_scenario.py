"""The ``ablation`` scenario shows every hardening step (docs/ablation.md).

The scenario is inside the timing model, the hardened chain keeps S1, S2, S3, L1 and the lease
on it, and each ``hardened-without-<step>`` breaks the property its step protects on at least
one of the first few seeds: S2 (jobs processed by two encoders at once) for the safety steps,
S3 (a second commit) for the fence, L1 (jobs not committed within the run's window) for the
two liveness steps. A step that stops mattering on this scenario fails here, not silently in
the README's ablation figure.
"""

from __future__ import annotations

import pytest

from sim import WORLD, check_l1, load_scenario, run_once
from verifier import HARDENING_STEPS

#: The property each step's absence must break on the ablation scenario.
SHOWS: dict[str, str] = {
    "settle": "S2",
    "absent-is-wait": "S2",
    "tier-precedence": "S2",
    "recheck": "L1",
    "phase-heartbeats": "L1",
    "lease": "S2",
    "cancel": "S2",
    "fence": "S3",
    "conditional-claim": "S2",
}

#: Seeds tried per chain, in order, until the violation shows (every chain showed it on seed 1;
#: docs/ablation.md gives the rates over 20 seeds).
SEEDS = (1, 2, 3, 4, 5, 6)
HARDENED_SEEDS = (1, 2)


def test_every_step_has_its_expected_property() -> None:
    assert set(SHOWS) == set(HARDENING_STEPS)


def test_the_ablation_scenario_is_inside_the_timing_model() -> None:
    scenario = load_scenario("ablation")
    assert scenario.name == "ablation"
    assert scenario.inside_model()
    assert scenario.timing_model().problems() == []


@pytest.mark.slow
@pytest.mark.parametrize("seed", HARDENED_SEEDS)
def test_the_hardened_chain_holds_on_the_ablation_scenario(seed: int) -> None:
    """S1, S2, S3 and the lease on every run; and every job committed but those the faults
    used up. This scenario's faults never stop (lost pings end leases, operators shut nodes
    down, each a give-back that costs an attempt), so the gateway's fifth-attempt rule may give
    a job up, which no chain can prevent: L1 is judged with the run's end as the faults' end,
    which excuses such a job and nothing else (not one the chain gave back as failed or walked
    away from). Until session 46 this asserted every job committed; the loop's back-off after
    lost claim races then moved seed 1's job-000014 onto community nodes whose five leases
    ran out (docs/ablation.md)."""
    scenario = load_scenario("ablation")
    result = run_once(scenario, "hardened", seed)
    bad = {name: check.examples[:2] for name, check in result.checks.items()
           if name != "L1" and not check.ok}
    assert not bad, bad
    l1 = check_l1(result.history, jobs=result.jobs, horizon=scenario.max_time)
    assert l1.ok, l1.examples
    given_up = {r[2] for r in result.history if r[1] == WORLD and r[3] == "failed"}
    assert result.metrics.committed + len(given_up) == result.metrics.jobs


@pytest.mark.slow
@pytest.mark.parametrize("step", list(SHOWS))
def test_each_step_shows_when_switched_off(step: str) -> None:
    scenario = load_scenario("ablation")
    prop = SHOWS[step]
    seen: list[str] = []
    for seed in SEEDS:
        result = run_once(scenario, f"hardened-without-{step}", seed)
        check = result.checks[prop]
        seen.append(f"seed {seed}: {prop} x{check.violations}")
        if not check.ok:
            if prop == "S2":
                assert result.metrics.overlapping_jobs > 0
            if prop == "L1":
                assert result.metrics.lost_or_stuck > 0
            return
    pytest.fail(f"hardened-without-{step} broke no {prop} on seeds {SEEDS}: the step no longer "
                f"shows on the ablation scenario ({'; '.join(seen)})")

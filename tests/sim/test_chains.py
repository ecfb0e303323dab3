"""What the simulator must show on fixed seeds (issue 3, "Done when").

* with no verification, duplicates appear at the configured lie rate;
* the documented chain lets some through under last-writer-wins accepts;
* the hardened chain has none inside its timing model, faults included;
* a hardened run is not "safe and useless": every job is committed (L1).
"""

from __future__ import annotations

import pytest

from sim import Scenario, run_once

SEEDS = (1, 2, 3)
# A world where the gateway's double hand-outs are the only source of races: no reassignment
# of slow jobs (T large), so duplicates measure the lie and nothing else. Jobs arrive below
# capacity, so that there are idle encoders for the gateway to hand a job to a second time.
LIES_ONLY = Scenario(encoders=12, jobs=150, lie_rate=0.1, arrival_per_hour=80,
                     reassign_timeout=1800,
                     recheck_interval=60, monitor_synthetic_rate=0, monitor_error_rate=0,
                     reply_loss_rate=0, status_lie_rate=0)
FAULTY = Scenario(encoders=16, jobs=120, lie_rate=0.2, late_write_rate=0.5, arrival_per_hour=120,
                  crashes_per_hour=0.5, pauses_per_hour=6, gateway_outages_per_hour=0.5,
                  monitor_outages_per_hour=0.5)


def totals(scenario: Scenario, chain: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for seed in SEEDS:
        metrics = run_once(scenario, chain, seed).metrics.to_dict()
        for key, value in metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = out.get(key, 0) + value
    return out


def test_without_verification_duplicates_appear_at_the_lie_rate():
    t = totals(LIES_ONLY, "trust-gateway")
    jobs = LIES_ONLY.jobs * len(SEEDS)
    # A double hand-out is realised when an idle encoder is there to take it: most are.
    rate = t["double_assigned"] / jobs
    assert 0.3 * LIES_ONLY.lie_rate <= rate <= 1.2 * LIES_ONLY.lie_rate, rate
    # ...and without verification every double assignment is processed twice.
    assert t["overlapping_jobs"] >= 0.8 * t["double_assigned"] > 0
    assert totals(LIES_ONLY.replace(lie_rate=0.0), "trust-gateway")["overlapping_jobs"] == 0
    assert t["s3_violations"] == 0, "the gateway's owner-checked finish still holds S3"


def test_documented_chain_lets_some_duplicates_through_last_writer_wins():
    t = totals(FAULTY.replace(lie_rate=0.3), "documented")
    assert t["s2_violations"] > 0
    assert t["double_assigned"] > t["overlapping_jobs"], "...but it prevents some"


@pytest.mark.parametrize("scenario", [LIES_ONLY, FAULTY, FAULTY.replace(assignment="getjob")],
                         ids=["lies-only", "faulty", "faulty-getjob"])
def test_hardened_chain_has_no_violation_inside_its_timing_model(scenario):
    assert scenario.inside_model()
    t = totals(scenario, "hardened")
    assert t["double_assigned"] > 0, "the world did create races"
    assert (t["s1_violations"], t["s2_violations"], t["s3_violations"]) == (0, 0, 0)
    assert t["l1_violations"] == 0 and t["committed"] == scenario.jobs * len(SEEDS)


def test_outside_the_model_the_fence_still_holds_s3():
    outside = FAULTY.replace(pause_tail=0.3, monitor_lag_tail=0.05, pauses_per_hour=20)
    assert not outside.inside_model()
    t = totals(outside, "hardened")
    assert t["s3_violations"] == 0


def test_a_run_with_arrivals_waits_for_jobs_not_yet_arrived():
    # Regression: the run ended when every job *arrived so far* was finished, so a lull in
    # arrivals longer than a job's work cut the run short (found by the live runs).
    sparse = Scenario(encoders=2, jobs=4, lie_rate=0.0, arrival_per_hour=3,
                      download_mean_s=1, encode_mean_s=5, upload_mean_s=1)
    result = run_once(sparse, "hardened", 1)
    assert result.metrics.jobs == 4
    assert result.metrics.committed == 4  # was 1: the run stopped after the first job

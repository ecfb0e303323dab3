"""Work that fails on its own, live (``work_fail_rate``, session 46): the production guard
hears a work that raised (``WorkEnded(False)``), the protocol gives the job back as failed
through the real gateway client (``failJob`` over HTTP) or the database tier, the loop backs
off, and the job is
committed by someone once the faults stop. Real sockets on loopback, no sleeps in the test."""

from __future__ import annotations

import asyncio

import pytest

from sim import WORLD, load_scenario
from sim._checkers import FAILED_GIVE_BACKS
from sim.live import LiveOptions, run_live

pytestmark = pytest.mark.slow


def test_failed_work_is_given_back_as_failed_and_every_job_is_committed_after_the_faults():
    scenario = load_scenario("live").replace(
        encoders=4, jobs=8, encode_mean_s=0.8, arrival_per_hour=3600.0, lie_rate=0.0,
        work_fail_rate=1.0, faults_until=3.0)
    live = asyncio.run(run_live(scenario, "hardened", 2, options=LiveOptions()))
    history = live.run.history
    failed = [r for r in history if r[3] == "stop" and r[5] == "failed"]
    assert failed, "no work failed while the faults lasted"
    assert all(r[0] < 3.0 for r in failed)  # none after the faults stopped
    failed_jobs = {r[2] for r in failed}
    # failJob through the gateway, or a database release that counts the attempt.
    given_back = {r[2] for r in history if r[1] == WORLD and r[3] == "requeue"
                  and r[5] in FAILED_GIVE_BACKS}
    assert failed_jobs <= given_back, "a failed work's job was not given back as failed"
    assert live.run.outcomes.get("failed", 0) >= len(failed), live.run.outcomes
    m = live.run.metrics
    assert (m.s1_violations, m.s2_violations, m.s3_violations) == (0, 0, 0), live.run.checks
    assert m.committed == m.jobs

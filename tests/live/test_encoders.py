"""Live runs end to end: the production guard and clients against the emulated servers.

These are the issue's acceptance runs: a few encoders, tens of jobs, every gateway hand-out
doubled (the forced double accept), the monitor stopped and restarted mid-run. The hardened
chain must come out with no S1/S2/S3 violation and every job committed; the documented chain,
on the same world, must show the duplicate processing in its report. Real sockets on
loopback, free ports, no sleeps in the tests themselves (the encoders' work takes real time).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sim import load_scenario
from sim._report import format_table, summarize_run
from sim.live import Emulator, LiveOptions, LiveResult, run_live

#: The forced race: every gateway assignment is handed out twice, to an idle encoder woken for
#: it (jobs arrive one a second, so encoders are idle), and the monitor is usually stale, so
#: the second encoder's pre-claim check passes and its accept is answered OK too.
RACE = {"encoders": 6, "jobs": 16, "lie_rate": 1.0, "encode_mean_s": 0.8,
        "monitor_lag_mean": 0.4, "arrival_per_hour": 3600.0}


def _scenario(**changes: Any) -> Any:
    return load_scenario("live").replace(**{**RACE, **changes})


def _live(chain: str, *, seed: int = 3, options: LiveOptions | None = None,
          seen: list[Emulator] | None = None, **changes: Any) -> LiveResult:
    def ready(emulator: Emulator) -> None:
        if seen is not None:
            seen.append(emulator)

    options = options or LiveOptions(monitor_restart=(2.0, 1.5))
    return asyncio.run(run_live(_scenario(**changes), chain, seed, options=options,
                                emulator_ready=ready))

#: Live runs take seconds of real time each: the slow tier.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hardened() -> tuple[LiveResult, Emulator]:
    seen: list[Emulator] = []
    return _live("hardened", seen=seen), seen[0]


#: Seeds tried in turn until the documented chain's duplicate shows. The race is real time:
#: one run of 32 jobs in 25 s shows it with high probability (10 of 10 runs on an idle
#: machine, 2026-12-02: 1 to 5 violating jobs each), but not always (one CI run in about
#: five saw 8 double assignments and no duplicate with 16 jobs in 20 s); three independent
#: runs make a miss about a thousand times rarer. Each seed is a different world.
DOCUMENTED_SEEDS = (3, 4, 5)


@pytest.fixture(scope="module")
def documented() -> LiveResult:
    # The documented chain loses jobs (defects 3, 5): only the race is needed, not the end.
    for seed in DOCUMENTED_SEEDS:
        live = _live("documented", seed=seed, max_time=25.0, jobs=32)
        if live.run.metrics.s1_violations + live.run.metrics.s2_violations:
            break
    return live


def test_hardened_chain_survives_forced_double_accepts_and_a_monitor_restart(
        hardened: tuple[LiveResult, Emulator]) -> None:
    live, _ = hardened
    m = live.run.metrics
    assert m.double_assigned > 0, "the forced double accept did not happen"
    assert (m.s1_violations, m.s2_violations, m.s3_violations) == (0, 0, 0), \
        live.run.checks
    assert m.committed == m.jobs  # L1: nothing lost, nothing left held
    assert m.race_prevention_rate == 1.0


def test_the_monitor_really_went_down_and_came_back(
        hardened: tuple[LiveResult, Emulator]) -> None:
    live, emulator = hardened
    faults = [(r[4], r[5]) for r in live.run.history.records if r[3] == "fault"]
    assert ("invoke", "monitor-stop") in faults and ("ok", "monitor-stop") in faults
    stopped = next(r[0] for r in live.run.history.records
                   if r[3] == "fault" and r[5] == "monitor-stop" and r[4] == "invoke")
    restarted = next(r[0] for r in live.run.history.records
                     if r[3] == "fault" and r[5] == "monitor-stop" and r[4] == "ok")
    verifies = [r for r in live.run.history.records
                if r[3] == "verify" and (r[5] == "monitor" or (
                    r[4] == "ok" and r[5][0] == "monitor"))]
    # While it was down, monitor reads failed (connection refused); after, they succeeded.
    assert any(stopped < r[0] < restarted and r[4] == "fail" for r in verifies)
    assert any(r[0] > restarted and r[4] == "ok" for r in verifies)
    assert emulator.monitor.requests_served > 0


def test_live_run_leaves_no_open_connections(hardened: tuple[LiveResult, Emulator]) -> None:
    live, emulator = hardened
    assert live.open_connections_end == 0
    assert all(s.open_connections == 0 and not s.running for s in emulator.servers)
    assert live.verifications > 0 and live.verify_latency_p99_ms is not None


def test_documented_chain_shows_the_duplicate_in_its_report(documented: LiveResult) -> None:
    m = documented.run.metrics
    assert m.double_assigned > 0
    assert m.s2_violations + m.s1_violations > 0, "the documented chain's race went unseen"
    summary = summarize_run(documented.run)
    table = format_table([("documented", summary.entry)])
    assert "documented" in table
    assert summary.entry["violations"]  # the report names the violating jobs
    assert summary.first_violation is not None


def test_transport_faults_never_make_the_hardened_chain_process_twice() -> None:
    from sim.live import HttpFaults

    faults = HttpFaults(reset_rate=0.05, rate_limit_rate=0.05, slow_rate=0.03, slow_s=2.5)
    live = _live("hardened", seed=5, options=LiveOptions(faults=faults),
                 encoders=5, jobs=15, lie_rate=0.3)
    m = live.run.metrics
    assert sum(live.injected.values()) > 0
    assert (m.s1_violations, m.s2_violations, m.s3_violations) == (0, 0, 0), \
        live.run.checks
    assert m.committed == m.jobs  # every job it held was finished, or released and redone


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_encoders_are_split_once_each_and_infrastructure_stays_home(processes: int) -> None:
    from sim import tier_mix
    from sim.live._encoders import _partition

    scenario = load_scenario("live").replace(encoders=200)
    mine, theirs = _partition(scenario, processes)
    everyone = sorted(mine + [i for part in theirs for i in part])
    assert everyone == list(range(200))
    assert len(theirs) == processes - 1
    assert all(not tier_mix(scenario, i).database for part in theirs for i in part)
    if processes > 1:
        assert 0 < len(mine) < 200


def test_gateway_and_monitor_outage_windows_are_waited_out_not_trusted() -> None:
    # The world's own outage windows, in real time: the gateway (and aid, on its server)
    # answers 503, the monitor 500 or slowly; the guard must wait or fall back, and still
    # finish or release every job it held.
    live = _live("hardened", seed=7, options=LiveOptions(), encoders=5, jobs=15,
                 lie_rate=0.3, arrival_per_hour=0.0, gateway_outages_per_hour=600.0,
                 gateway_outage_mean_s=1.5, monitor_outages_per_hour=600.0,
                 monitor_outage_mean_s=1.0)
    m = live.run.metrics
    outages = {r[5] for r in live.run.history.records if r[3] == "fault"}
    assert {"gateway-outage", "monitor-outage"} <= outages
    assert any(r[3] == "verify" and r[4] == "fail" for r in live.run.history.records)
    assert (m.s1_violations, m.s2_violations, m.s3_violations) == (0, 0, 0), live.run.checks
    assert m.committed == m.jobs

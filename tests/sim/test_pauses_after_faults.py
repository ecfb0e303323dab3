"""No random pause starts once the faults have stopped (H, ``faults_until``): L1's premise.

A pause that fell due before H but was held up, while the node was down for a crash's restart
or spaced C after the previous pause, used to start when the node came back, after H; with
P = 15 s, pauses C apart ended a lease and L1 failed (found by the review of L1's terms,
2026-12-05). The await-point pauses never started after H."""

from __future__ import annotations

from conformance.families import FAMILIES
from conformance.worlds import BASE, World, race

#: Long pauses, often, and crashes whose 90 s restart ends after the faults stop at 60 s.
LEVELS = {
    **FAMILIES["hand-out"], "pause_max": 15.0, "reassign_timeout": 90.0,
    "crashes_per_hour": 120.0, "restart_delay": 90.0, "faults_until": 60.0,
    "reassign_scan_interval": 0.0, "pauses_per_hour": 600.0,
}


def test_no_pause_starts_after_the_faults_stop_even_after_a_restart() -> None:
    sc = BASE.replace(**LEVELS)
    assert sc.inside_model() and not sc.timing_model().problems()
    held_up = 0  # worlds where a pause fell due while a node was down across H
    for seed in range(12):
        result = race(World(sc, tape=(), seed=seed, family="hand-out"), "hardened")
        history = result.result.history
        late = [(t, process) for t, process, _, op, phase, _ in history
                if op == "pause" and phase == "invoke" and t >= sc.faults_until]
        assert late == [], f"seed {seed}: pauses after H = {sc.faults_until}: {late}"
        crashes = [t for t, _, job, op, _, _ in history if op == "crash" and job is None]
        held_up += any(t < sc.faults_until < t + sc.restart_delay for t in crashes)
        assert result.checks["L1"].ok, (seed, result.checks["L1"].examples)
    assert held_up >= 3, held_up  # the worlds do reach the case

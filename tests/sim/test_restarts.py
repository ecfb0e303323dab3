"""A node down for a graceful shutdown's restart that crashes meanwhile restarts once, from the
crash: an adversarial review (2026-12-04) found the shutdown left due, so the node went down a
second time after the crash's own restart (70 s instead of 30 here), and L1 failed."""

from __future__ import annotations

from itertools import pairwise

from conformance.families import FAMILIES
from conformance.worlds import BASE, World, race


def test_a_crash_during_a_shutdowns_restart_does_not_restart_the_node_twice() -> None:
    sc = BASE.replace(**{
        **FAMILIES["hang-liveness"], "hang_rate": 0.0, "shutdowns_per_hour": 120.0,
        "crashes_per_hour": 60.0, "aid_fraction": 0.0, "infra_fraction": 1.0,
        "database_latency": 0.0,
    })
    result = race(World(sc, tape=(), seed=488), "hardened")
    history = result.result.history
    downs = [(t, op) for t, process, job, op, _, _ in history
             if process == "e0" and job is None and op in ("shutdown", "crash")]
    inside = [(t0, t1) for (t0, a), (t1, b) in pairwise(downs)
              if a == "shutdown" and b == "crash" and t1 - t0 < sc.restart_delay]
    assert inside, f"no crash while the node was down for a shutdown: {downs}"
    for _, crash in inside:
        again = [t for t, op in downs if op == "shutdown" and crash < t <= crash
                 + sc.restart_delay + 1e-9]
        assert again == [], f"down again at {again} after the crash at {crash}: {downs}"
    assert result.checks["L1"].ok, result.checks["L1"].examples

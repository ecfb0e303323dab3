"""Find (again) a schedule that breaks the old settle rule while the hardened chain holds.

``conformance/test_regressions.py`` freezes the schedule of finding 1 as a world (scenario,
tape, seed). If a change to the world's random draws moves it, this search finds a new one in a
focused family of worlds (two community nodes, every hand-out doubled, late writes at their
edge, pauses of exactly P at await points) and prints the ``World(...)`` to paste there::

    python benchmarks/find_schedule.py [--examples N] [--seed S]
"""

from __future__ import annotations

import argparse
import time

from hypothesis import HealthCheck, Phase, given, seed, settings, target

from conformance.canaries import SettleFromDecision
from conformance.worlds import World, believers, race, worlds

FOCUS = {
    "infra_fraction": 0.0, "lie_rate": 1.0, "late_write_rate": 1.0, "edge_rate": 0.9,
    "write_delay": 0.5, "clock_drift": 0.0, "pause_max": 0.5, "monitor_lag": 1.0,
    "monitor_lag_mean": 1.0, "await_pause_rate": 0.3, "monitor_synthetic_rate": 0.0,
    "monitor_error_rate": 0.0, "reply_loss_rate": 0.0, "gateway_outages_per_hour": 0.0,
    "monitor_outages_per_hour": 0.0, "crashes_per_hour": 0.0, "status_lie_rate": 0.0,
    "recheck_interval": 2.5, "database_error_rate": 0.0,
}


class _Found(Exception):
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0, help="the search's own seed")
    args = parser.parse_args()
    fixed = dict(FOCUS)
    found: list[World] = []

    @seed(args.seed)
    @settings(max_examples=args.examples, database=None, deadline=None,
              phases=[Phase.generate, Phase.target, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    @given(worlds(max_encoders=2, max_jobs=1, fixed=fixed))
    def search(world: World) -> None:
        old = race(world, "hardened", protocol=SettleFromDecision)
        target(float(believers(old.result.history)), label="encoders told 'yours'")
        if old.violated("S2") and not race(world, "hardened").violated("S1", "S2"):
            found.append(world)
            raise _Found

    started = time.monotonic()
    try:
        search()
    except _Found:
        print(repr(found[-1]))
        print(f"found in {time.monotonic() - started:.1f} s")
        return 0
    print(f"not found in {args.examples} examples ({time.monotonic() - started:.1f} s)")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Which terms of L1's time bound the hardened chain needs: one run per world, every term
dropped in turn and judged on that run.

L1's bound (:func:`sim.l1_bound`, ``docs/safety-model.md``) is a sum of worst cases; a term
too short fails a correct chain, a term too long lets a slow one pass. This prints, for each
world source (an edge family, or ``general``: the race suites' generator with its families),
how many random worlds inside the timing model L1 judged on time (and how many of them were
uncrowded: no ``others`` term, every clock from when the faults' leftovers are gone), how
many the true bound failed (must be 0), and, for each term of :data:`sim.L1_TERMS` whose
removal failed at least one, in how many worlds. A term never listed was not needed by any
of those worlds: the other terms of the sum leave slack (figures, not asserts: see
docs/safety-model.md, L1).

Usage: python benchmarks/l1_terms.py [--examples N] [--seed N] [--family NAME ...]
"""

from __future__ import annotations

import argparse
import collections
import math
import time

from hypothesis import HealthCheck, Phase, given, seed, settings

from conformance.families import FAMILIES
from conformance.worlds import World, l1_horizon, l1_on_time, race, worlds
from sim import L1_TERMS, l1_bound

#: World sources where L1 is judged on time, by default.
DEFAULT = ["general", "liveness", "slow-progress", "hang-liveness", "hand-out",
           "shutdown-liveness", "restart-liveness", "fast-poll", "crash-liveness", "shutdown",
           "orphan", "settle", "database", "cool-down", "back-off-cap", "throttle",
           "slots"]


def needed_terms(family: str, examples: int, search_seed: int) -> collections.Counter[str]:
    """Counts: ``judged`` worlds, ``true bound failed`` (should be 0), and per term the worlds
    where the bound without it fails the hardened chain."""
    counts: collections.Counter[str] = collections.Counter()
    general = family == "general"

    @seed(search_seed)
    @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(world=worlds(fixed=None if general else FAMILIES[family], focus=general))
    def judge(world: World) -> None:
        sc = world.scenario
        if not l1_on_time(world) or math.isinf(l1_bound(sc).bound):
            return
        run = race(world, "hardened")
        counts["judged"] += 1
        counts["uncrowded"] += l1_bound(sc).uncrowded
        if not run.checks["L1"].ok:
            counts["true bound failed"] += 1
            return
        history, jobs = run.result.history, run.result.jobs
        for name in L1_TERMS:
            weak = l1_bound(sc, without=name)
            if not weak.check(history, jobs=jobs, horizon=l1_horizon(sc, run.result)).ok:
                counts[name] += 1

    judge()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300, help="worlds per source")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--family", action="append", choices=["general", *sorted(FAMILIES)],
                        help=f"a world source (repeatable; default: {', '.join(DEFAULT)})")
    args = parser.parse_args()
    for family in args.family or DEFAULT:
        start = time.perf_counter()
        counts = needed_terms(family, args.examples, args.seed)
        judged, failed = counts.pop("judged", 0), counts.pop("true bound failed", 0)
        uncrowded = counts.pop("uncrowded", 0)
        needed = ", ".join(f"{name} {n}" for name, n in counts.most_common()) or "none"
        print(f"{family}: {judged} worlds judged of {args.examples} ({uncrowded} uncrowded: an "
              f"encoder for every job), true bound failed "
              f"{failed}; needed: {needed} ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

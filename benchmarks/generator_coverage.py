"""How often the general race generator reaches each edge of the timing model.

The race suites (``conformance/test_races.py``) are only as strong as the worlds they draw: a
bound that no generated world reaches is a bound the suites do not test. This benchmark runs
the inside-the-model suite's own search (``worlds()``, the same targets, the ``ci`` profile's
settings: deterministic, 400 examples; or ``--examples``, ``--seed``) and counts, over the worlds
it generated, how many reached:

* **the settle's combined edge**: a deciding read whose view (its instant less the monitor's
  lag bound Δ) is within 1 ms of the landing of a competing write that the reader's own did
  not overwrite: the write the settle waits for landed just as the read could still see it
  (and how many of those had G > 0: with G = 0 the edge needs no late write, and the settle
  is ε + Δ);
* **the targets' write margin** (``write_margin``, what ``hypothesis.target`` pushes up): its
  largest value, and how many worlds came within 1 ms of 0. It is a proxy: it counts
  competing writes the reader's own later overwrote, too;
* **exact-T reassignment**: the gateway reassigned a job exactly T after its last ping
  (``reassign_scan_interval = 0``), and such a job was handed to another encoder;
* **the no-progress rule N**: the gateway reassigned a job because its progress had not
  changed for N;
* **work cancelled**: an encoder stopped work it had started (a loss, a lease run out, a
  shutdown);
* **Gateway Aid**: a claim made through Gateway Aid;
* **a stale ping carrying a value**: a gateway ping of a DID's earlier attempt landed on that
  DID's new assignment of the job, carrying a progress value, while the stored progress was
  still the assignment's none (the no-progress clock's hazard, ``verifier/_progress.py``). The
  history does not record landings, so the world's landing is watched: a valued ping landing
  within G of the assignment, before any ping of the new attempt could (those come after its
  settle, at least 2G after the assignment landed);
* **await-point pauses** and **late writes at exactly G** (in the history's fault schedule);
* **a late overlay answer** and **a late empty batch** (the ``slow-overlay`` edge,
  ``conformance.worlds.late_answers``): during a gateway outage, a monitor read answered with
  the stored record, or a ``batch-status`` answered ``{}``, only after the monitor waited the
  gateway's timeout for the silent gateway.

Figures, not asserts: the README's "Known gaps of the generator" quotes them.

With ``--family NAME`` it runs the edge suite's search instead (``test_hardened_chain_holds_at_
the_edges``: that family's levels pinned, at most 3 encoders and 2 jobs).

Usage: python benchmarks/generator_coverage.py [--examples N] [--seed N] [--family NAME]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, seed, settings

from conformance.families import FAMILIES
from conformance.worlds import (
    Race,
    World,
    aim,
    late_answers,
    race,
    settle_edge,
    worlds,
    write_margin,
)
from sim import World as SimWorld
from verifier.protocol import Tier

#: The progress an assignment starts from (the world's and the protocol's "none").
NONE = (0.0, 0.0)

#: A competing write this close to a deciding read's view (or past it) reached the edge.
EDGE = 1e-3


def reached(run: Race) -> tuple[set[str], float]:
    """The edges one generated world reached under the hardened chain, and its margin."""
    world, history = run.world, run.result.history
    sc = world.scenario
    margin = write_margin(history, sc.monitor_lag)
    seen: set[str] = set()
    if settle_edge(history, sc.monitor_lag, within=EDGE):
        seen.add("settle combined edge")
        if sc.write_delay > 0:
            seen.add("  of which with G > 0")
    if abs(margin) <= EDGE:
        seen.add("write margin within 1 ms of 0")
    for _, process, _job, op, phase, value in history:
        if process == "world" and op == "requeue":
            if value == "no ping for T" and sc.reassign_scan_interval == 0:
                seen.add("exact-T reassignment")
            elif value == "no progress for N":
                seen.add("no-progress reassignment (N)")
        elif op == "claim" and phase == "invoke" and value == Tier.AID:
            seen.add("Gateway Aid claim")
        elif op == "cancel" and phase == "invoke":
            seen.add("work cancelled")
        elif op == "pause":
            seen.add("pause")
    late = late_answers(history, sc.gateway_timeout)
    if any(kind != "{}" for kind in late):
        seen.add("late overlay answer")
    if "{}" in late:
        seen.add("late empty batch")
    return seen, margin


def watch_stale_pings() -> list[int]:
    """Count, from now on, the stale valued pings landing on a new assignment (see above)."""
    landed = [0]
    original = SimWorld._ping_landed

    def ping_landed(self: SimWorld, job: Any, did: str,
                    progress: tuple[float, float] | None) -> None:
        if (job.owner == did and progress not in (None, NONE) and job.progress == NONE
                and self.sc.write_delay > 0
                and self.env.now - job.owned_at <= self.sc.write_delay):
            landed[0] += 1
        original(self, job, did, progress)

    SimWorld._ping_landed = ping_landed  # type: ignore[method-assign]
    return landed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--seed", type=int, default=None,
                        help="the search's own seed (default: derandomized, as in CI)")
    parser.add_argument("--family", choices=sorted(FAMILIES), default=None,
                        help="the edge suite's search in this family (default: the race "
                             "suite's, half its worlds from a family)")
    args = parser.parse_args()
    generated = (worlds(focus=True) if args.family is None else
                 worlds(max_encoders=3, max_jobs=2, fixed=FAMILIES[args.family]))
    counts: Counter[str] = Counter()
    margins: list[float] = []
    runs = [0]
    stale = watch_stale_pings()

    @settings(max_examples=args.examples, database=None, deadline=None,
              derandomize=args.seed is None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(world=generated)
    def search(world: World) -> None:
        before = stale[0]
        run = race(world, "hardened")
        aim(run)  # the suite's own targets
        seen, margin = reached(run)
        if stale[0] > before:
            seen.add("stale valued ping landed")
        runs[0] += 1
        counts.update(seen)
        margins.append(margin)

    if args.seed is not None:
        search = seed(args.seed)(search)
    started = time.monotonic()
    search()
    n = runs[0]
    print(f"{n} generated worlds ({args.examples} examples asked, "
          f"{'derandomized' if args.seed is None else f'seed {args.seed}'}"
          f"{'' if args.family is None else f', family {args.family}'}), "
          f"{time.monotonic() - started:.0f} s")
    for name in ("settle combined edge", "  of which with G > 0",
                 "write margin within 1 ms of 0", "exact-T reassignment",
                 "no-progress reassignment (N)", "work cancelled",
                 "Gateway Aid claim", "stale valued ping landed", "pause",
                 "late overlay answer", "late empty batch"):
        print(f"  {name:<30} {counts[name]:>5}  ({counts[name] / max(n, 1):.1%})")
    real = [m for m in margins if m > -1e8]
    if real:
        print(f"  largest write margin          {max(real):+.3f} s "
              f"(over {len(real)} worlds with a deciding read and a competing write)")


if __name__ == "__main__":
    main()

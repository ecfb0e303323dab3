"""Conformance benchmark: race-suite throughput and how fast the documented chain is caught.

Prints (figures, not asserts):

* examples per second of the race suite (hardened chain, worlds inside the timing model);
  goal >= 100 examples/s;
* for the documented chain, the examples and seconds needed to find its first S1/S2
  counterexample (generation only, before shrinking), median over 20 search seeds;
  goals <= 200 examples and <= 2 s.

Usage: python benchmarks/conformance_speed.py [--examples N] [--seeds K]
"""

from __future__ import annotations

import argparse
import statistics
import time

from hypothesis import HealthCheck, Phase, given, seed, settings, target

from conformance.worlds import World, believers, race, worlds

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]


def race_throughput(examples: int) -> tuple[int, float]:
    count = 0

    @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=_QUIET)
    @given(worlds(focus=True))  # as the race suite draws them: half from an edge family
    def run(world: World) -> None:
        nonlocal count
        count += 1
        race(world, "hardened")

    start = time.perf_counter()
    run()
    return count, time.perf_counter() - start


class _Found(Exception):
    pass


def time_to_catch(chain: str, search_seed: int, budget: int = 5000) -> tuple[int, float]:
    count = 0

    @seed(search_seed)
    @settings(max_examples=budget, database=None, deadline=None,
              phases=[Phase.generate, Phase.target], suppress_health_check=_QUIET)
    @given(worlds())
    def search(world: World) -> None:
        nonlocal count
        count += 1
        result = race(world, chain)
        target(float(believers(result.result.history)))
        if result.violated("S1", "S2") and not race(world, "hardened").violated("S1", "S2"):
            raise _Found

    start = time.perf_counter()
    try:
        search()
    except _Found:
        return count, time.perf_counter() - start
    return -1, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()

    n, seconds = race_throughput(args.examples)
    print(f"race suite: {n} examples in {seconds:.2f} s = {n / seconds:.0f} examples/s "
          "(goal >= 100)")

    counts, times, missed = [], [], 0
    for s in range(args.seeds):
        count, elapsed = time_to_catch("documented", s)
        if count < 0:
            missed += 1
            continue
        counts.append(count)
        times.append(elapsed)
    if counts:
        print(f"documented chain caught in {len(counts)}/{args.seeds} searches: median "
              f"{statistics.median(counts):.0f} examples (goal <= 200), median "
              f"{statistics.median(times):.2f} s (goal <= 2 s); worst {max(counts)} examples")
    if missed:
        print(f"  {missed} searches found nothing within their budget")


if __name__ == "__main__":
    main()

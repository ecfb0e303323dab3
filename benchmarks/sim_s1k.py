"""Benchmark S-1k: 1,000 encoders, 100,000 jobs, 5% double accepts, hardened chain.

Prints, for this machine and this run (figures, not asserts: see the README for the ones
recorded there):

* the event rate of a bare SimPy timeout loop (the ceiling of any SimPy model),
* the simulator's wall time, SimPy events and event rate on S-1k, and the ratio to the bare
  loop (goal: >= 0.5), wall time (goal: <= 15 s), peak memory (goal: <= 2 GiB),
* the run's verdict (S1/S2/S3/L1 violations) so a fast but wrong simulator cannot pass.

Usage: python benchmarks/sim_s1k.py [--jobs N] [--encoders N] [--seed N]
"""

from __future__ import annotations

import argparse
import resource
import time

import simpy

from sim import Scenario, run_once


def bare_simpy_rate(processes: int = 1000, steps: int = 1000) -> float:
    env = simpy.Environment()

    def tick(env: simpy.Environment):  # type: ignore[no-untyped-def]
        while True:
            yield env.timeout(1.0)

    for _ in range(processes):
        env.process(tick(env))
    start = time.perf_counter()
    env.run(until=steps)
    return processes * steps / (time.perf_counter() - start)


def s1k_scenario(encoders: int, jobs: int) -> Scenario:
    try:
        from sim import load_scenario

        base = load_scenario("s-1k")
    except Exception:  # the named scenario file is the source of truth when present
        base = Scenario(name="s-1k", lie_rate=0.05, reassign_timeout=330.0,
                        recheck_interval=60.0)
    return base.replace(encoders=encoders, jobs=jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    bare = bare_simpy_rate()
    print(f"bare SimPy timeout loop: {bare:,.0f} events/s")

    scenario = s1k_scenario(args.encoders, args.jobs)
    start = time.perf_counter()
    result = run_once(scenario, "hardened", args.seed)
    wall = time.perf_counter() - start
    rate = result.events / wall
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    m = result.metrics
    print(f"S-1k ({scenario.encoders} encoders, {scenario.jobs} jobs, lie_rate "
          f"{scenario.lie_rate}, hardened, seed {args.seed}):")
    print(f"  wall time            {wall:8.2f} s   (goal <= 15 s)")
    print(f"  simulated time       {result.sim_time / 3600:8.2f} h")
    print(f"  SimPy events         {result.events:,}")
    print(f"  history records      {len(result.history):,}")
    print(f"  event rate           {rate:,.0f} events/s = {rate / bare:.2f} x bare "
          f"(goal >= 0.50)")
    print(f"  peak memory (RSS)    {peak_mib:8.0f} MiB (goal <= 2048)")
    print(f"  committed            {m.committed}/{m.jobs}; double-assigned {m.double_assigned}")
    print(f"  violations           S1 {m.s1_violations}  S2 {m.s2_violations}  "
          f"S3 {m.s3_violations}  L1 {m.l1_violations}")


if __name__ == "__main__":
    main()

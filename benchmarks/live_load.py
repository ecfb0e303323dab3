"""Live load: 200 encoders, 2,000 jobs, 5% double accepts, over HTTP on loopback.

Runs ``python -m sim live``'s engine (the production ``OwnershipGuard`` and httpx clients
against the emulated monitor, gateway and aid, all in this one process, on this machine's
cores) and prints figures, not asserts (the README records them):

* verifications per second and p50/p99 verification latency on loopback (goal: p99 < 50 ms),
* wall time (goal: under 2 minutes),
* open server connections and this process's file descriptors before and after (no leaks),
* the checkers' verdict: S1/S2/S3/L1 violations (goal: zero S2/S3 for the hardened chain).

Usage: python benchmarks/live_load.py [--encoders N] [--jobs N] [--lie-rate P] [--chain C]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys

from sim import load_scenario
from sim.live import LiveOptions, open_fds, run_live


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--lie-rate", type=float, default=0.05)
    parser.add_argument("--chain", default="hardened")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--client-timeout", type=float, default=2.0)
    parser.add_argument("--processes", type=int, default=2,
                        help="processes running encoders (default: one per core of this "
                             "2-core machine)")
    args = parser.parse_args()

    scenario = load_scenario("live").replace(encoders=args.encoders, jobs=args.jobs,
                                             lie_rate=args.lie_rate)

    def tick(t: float, finished: int, jobs: int) -> None:
        if int(t) % 10 == 0:
            print(f"  {t:5.0f} s: {finished}/{jobs} jobs finished", file=sys.stderr, flush=True)

    print(f"live load: {args.encoders} encoders, {args.jobs} jobs, lie_rate {args.lie_rate:g}, "
          f"chain {args.chain}, seed {args.seed}, {args.processes} process(es)")
    if args.processes > 1:
        # Spawning starts multiprocessing's resource tracker, whose pipe stays open for the
        # life of this process: start it first so it is not counted as a leak of the run.
        from multiprocessing import resource_tracker
        resource_tracker.ensure_running()
    fds_before = open_fds()
    result = asyncio.run(run_live(scenario, args.chain, args.seed,
                                  options=LiveOptions(client_timeout=args.client_timeout,
                                                      processes=args.processes),
                                  progress=tick))
    gc.collect()
    live = result.to_dict()
    m = result.run.metrics
    print(f"wall time: {live['wall_s']:.1f} s (goal < 120 s)")
    print(f"verifications: {live['verifications']:,} ({live['verifications_per_s']:,.0f}/s)")
    print(f"verification latency: p50 {live['verify_latency_p50_ms']:.1f} ms, "
          f"p99 {live['verify_latency_p99_ms']:.1f} ms (goal p99 < 50 ms)")
    for tier, row in live["verify_latency_by_tier_ms"].items():
        print(f"  {tier:9} {row['reads']:6,} reads, p50 {row['p50']:.1f} ms, "
              f"p99 {row['p99']:.1f} ms")
    print(f"requests served: {live['requests']}")
    print(f"open server connections after the clients closed: {live['open_connections_end']}")
    print(f"file descriptors of this process: {fds_before} before the run, {open_fds()} after "
          "it (equal: nothing leaked)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss:,.0f} MiB")
    print(f"jobs committed: {m.committed}/{m.jobs}; double-assigned: {m.double_assigned}; "
          f"race prevention: {m.race_prevention_rate}")
    print(f"verdict: S1 {m.s1_violations}, S2 {m.s2_violations}, S3 {m.s3_violations}, "
          f"L1 {m.l1_violations} violations")
    print(f"outcomes: {result.run.outcomes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What each cost feature buys, live: every feature on, then one off, on the same seed.

Runs ``python -m sim live``'s engine (the production loop, guard and clients against the
emulated servers on loopback) for the hardened chain, in pairs that differ in one feature only,
and prints the README's "Cost features" table: figures, not asserts.

* status cache + batch screening: monitor requests per job (goal: at most half without);
* push: loss detection, from the gateway's reassignment of a job to its encoder's decision to
  cancel the work (goal: p50 at most a fifth of polling). The reassignments come from gateway
  pings acknowledged and never written (``ping_drop_rate``, outside the timing model: the one
  way this world takes a job from an encoder that still works on it);
* backoff: monitor requests per encoder and second while the monitor is down
  (``--monitor-restart``; goal: at most a third of fixed-interval retry), and the recovery
  after it; the same during a 429 storm (``--rate-limit-storm``: every monitor request
  answered 429 with ``Retry-After: 1``, which both variants honour);
* S1/S2/S3 with every feature on (goal: none).

Usage: python benchmarks/live_features.py [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from sim import load_scenario
from sim.live import FEATURES, HttpFaults, LiveOptions, run_live

#: Loss detection needs work that outlasts T and pings that never land. Polling finds a loss
#: within R, a push within the monitor's lag (Δ = 0.5 s here): the scenario's R = 1 s, and
#: R = 5 s (the largest this scenario's T allows), show how the gap grows with R.
LOSSES = {"ping_drop_rate": 1.0, "encode_mean_s": 10.0, "jobs": 16, "max_time": 90.0}
SLOW_POLL = {**LOSSES, "recheck_interval": 5.0}
#: The monitor stops 5 s into the run, for 10 s, then (another pair) for 30 s: in a short
#: outage the steady re-checks of running work weigh as much as the retries; in a long one the
#: retries and the loop's polls dominate.
OUTAGES = ((5.0, 10.0), (5.0, 30.0))
#: 429 storms at the same instants: the monitor answers, but only "come back in 1 s".
STORMS = OUTAGES


def live(seed: int, without: frozenset[str] = frozenset(),
         restart: tuple[float, float] | None = None,
         storm: tuple[float, float] | None = None, **changes: Any) -> dict[str, Any]:
    """One live run of the hardened chain with every feature but ``without``."""
    scenario = load_scenario("live").replace(**changes)
    options = LiveOptions(features=FEATURES - without, monitor_restart=restart,
                          faults=HttpFaults(rate_limit_storm=storm))
    result = asyncio.run(run_live(scenario, "hardened", seed, options=options))
    figures = result.to_dict()
    figures["violations"] = sum(result.run.checks[p].violations for p in ("S1", "S2", "S3"))
    return figures


def _ratio(on: float | None, off: float | None) -> str:
    return "-" if not on or not off else f"{on / off:.2f}"


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    seed = parser.parse_args().seed
    rows: list[tuple[str, str, float | None, float | None, str]] = []

    on, nocb = live(seed), live(seed, frozenset({"cache", "batch"}))
    key = "monitor_requests_per_job"
    rows.append(("cache + batch", "monitor requests per job", on[key], nocb[key], "<= 0.50"))
    lost_on, lost_off = live(seed, **LOSSES), live(seed, frozenset({"push"}), **LOSSES)
    d_on, d_off = lost_on["loss_detection_s"], lost_off["loss_detection_s"]
    rows.append(("push", f"loss detection p50 s (n = {d_on['n']}, {d_off['n']})", d_on["p50"],
                 d_off["p50"], "<= 0.20"))
    rows.append(("push", "monitor requests per job (loss runs)", lost_on[key], lost_off[key],
                 "-"))
    slow_on, slow_off = live(seed, **SLOW_POLL), live(seed, frozenset({"push"}), **SLOW_POLL)
    d_on, d_off = slow_on["loss_detection_s"], slow_off["loss_detection_s"]
    rows.append(("push", f"loss detection p50 s, R = 5 s (n = {d_on['n']}, {d_off['n']})",
                 d_on["p50"], d_off["p50"], "<= 0.20"))
    key = "retry_requests_per_encoder_s"
    outage_runs = []
    for at, down in OUTAGES:
        out_on = live(seed, restart=(at, down))
        out_off = live(seed, frozenset({"backoff"}), restart=(at, down))
        outage_runs.append(out_on)
        rows.append(("backoff", f"monitor requests/encoder/s, {down:.0f} s down", out_on[key],
                     out_off[key], "<= 0.33"))
        rows.append(("backoff", f"recovery after {down:.0f} s down, p50 s",
                     out_on["recovery_s"]["p50"], out_off["recovery_s"]["p50"], "-"))
    for at, length in STORMS:
        storm_on = live(seed, storm=(at, length))
        storm_off = live(seed, frozenset({"backoff"}), storm=(at, length))
        outage_runs.append(storm_on)
        rows.append(("backoff", f"monitor requests/encoder/s, {length:.0f} s of 429",
                     storm_on[key], storm_off[key], "<= 0.33"))
        rows.append(("backoff", f"recovery after {length:.0f} s of 429, p50 s",
                     storm_on["recovery_s"]["p50"], storm_off["recovery_s"]["p50"], "-"))
    print(f"live: scenario 'live', chain hardened, seed {seed}; each pair differs in one "
          "feature")
    print(f"{'feature':<14} {'figure':<42} {'with':>8} {'without':>8} {'ratio':>6}  goal")
    for feature, figure, with_, without, goal in rows:
        print(f"{feature:<14} {figure:<42} {_cell(with_):>8} {_cell(without):>8} "
              f"{_ratio(with_, without):>6}  {goal}")
    inside = on["violations"] + sum(r["violations"] for r in outage_runs)
    print(f"S1/S2/S3 violations with every feature on: {inside} (default, outage and storm "
          "runs, "
          f"inside the model); loss runs (outside it): {lost_on['violations']} with push, "
          f"{lost_off['violations']} without")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

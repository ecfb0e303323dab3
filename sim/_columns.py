"""Every column of every table, CSV and JSON the simulator writes, defined once.

``python -m sim run|sweep|research --help`` print these definitions (their epilog), the README's
"Research figures" section lists them, and ``tests/sim/test_columns.py`` walks the header of
every CSV, the keys of every JSON report and every printed table, and fails on a column defined
nowhere. Counts say what they count: **jobs**, **starts**, **pairs** of processing intervals,
**commits**, or **runs**.

Intervals: one method everywhere (:mod:`sim._metrics`): a figure over seeds is the mean of its
per-seed values with a 95% Student-t interval; a difference between two chains is the mean of
their per-seed differences on the same seeds (common random numbers: the same offered world)
with its paired 95% Student-t interval.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = ["COLUMNS", "INTERVALS", "MEAN_INTERVALS", "TABLE_HEADERS", "define", "epilog",
           "undefined"]

#: The interval method of a report without differences between chains (run, sweep).
MEAN_INTERVALS: Final = (
    "intervals: mean over seeds with a 95% Student-t interval; a zero-width interval means "
    "every seed gave the same value (with 0 of N jobs, the rule of three bounds the rate at "
    "3/N)")
#: The interval method, as the research reports (and ``--help``) state it: with the paired
#: differences that only ``research`` computes.
INTERVALS: Final = (
    "intervals: mean over seeds with a 95% Student-t interval; differences between chains are "
    "paired over the same seeds (common random numbers) with a 95% Student-t interval; a "
    "zero-width interval means every seed gave the same value (with 0 of N jobs, the rule of "
    "three bounds the rate at 3/N)")

#: CSV columns and JSON keys (a run's metrics, an aggregate over seeds, report fields).
COLUMNS: Final[dict[str, str]] = {
    # ---- what was run
    "chain": "the ownership chain (policy) of the run",
    "seed": "the run's root seed (all its randomness)",
    "seeds": "the seeds run (N..N+K-1)",
    "runs": "runs pooled (one per seed); in a run report's chain, each run's entry",
    "chains": "the chains run; in a run report, per chain its aggregate over seeds",
    "points": "per grid point and chain, the aggregate over seeds",
    "scenario": "the scenario: its parameters in a run or sweep report (sim/_scenario.py), "
                "its name in the research files (research.csv, runs.csv, research.json)",
    "scenario_ref": "the scenario as named on the command line (a name or a path)",
    "study": "which research figure a run belongs to (research, ablation, lie_rate, "
             "sensitivity)",
    "params": "the grid point's parameter values",
    "grid": "the swept parameters and their values",
    "grid.<key>": "the value of the swept scenario parameter <key> at this point",
    "overrides": "scenario parameters set on the command line",
    "protocol": "the protocol implementation driven (an import path)",
    "inside_model": "whether the scenario is inside the timing model the hardened chain assumes",
    "timing_problems": "why the scenario is outside the timing model: each fault it allows "
                       "beyond the model's bounds, then any inconsistency of its timings "
                       "(empty inside it)",
    "command": "the command that wrote the report, as typed; in a sweep or research report "
               "without --workers, --executor, --out, --quiet, --progress (where and how fast "
               "it ran, not what it computed: the same bytes on any executor)",
    "replay": "the command that replays a run: in a run report the chain's most interesting "
              "one; in runs.csv and sweep.csv the row's own (its scenario reference, with every "
              "parameter that differs from it as --set)",
    "sim_time": "simulated seconds until every job was finished (or the time limit)",
    "outcomes": "attempts per outcome (processed, cancelled, ...), counted by the encoders",
    "violations": "per violated check: its count, up to ten job ids and examples",
    "interval": "the interval method of the report's intervals",
    "baseline": "the chain a row's vs_baseline differences are taken against: --baseline "
                "in the research table (and research.json's top level), trust-gateway in the "
                "cost-of-safety table (the ablation is paired with hardened: vs_hardened)",
    "held_out": "the held-out scenario of the research table",
    "ablation_scenario": "the scenario of the ablation (ablation if it exists, else default)",
    "scenarios": "every scenario the research ran, by name, with all its parameters (--set "
                 "included; the lie-rate and lag points differ from default in that one "
                 "parameter only)",
    "tables": "the research tables (rows as printed, numbers unrounded)",
    # ---- a run's metrics (sim/_metrics.py); in an aggregate, counts are summed over seeds
    "jobs": "jobs released (the denominator of every per-1,000 figure); summed over seeds",
    "committed": "jobs with a committed result",
    "planned_double": "planned double hand-outs: jobs whose first assignment the seed's "
                      "world plans to offer to a second encoder (the same jobs for every "
                      "chain; later assignments of a job are doubled at the same rate, "
                      "unplanned and uncounted)",
    "realised_double": "planned double hand-outs the world made in this run (jobs): the job "
                       "was assigned before faults_until and another encoder polled within G; "
                       "the denominator of race prevention (chain-dependent: whether an "
                       "encoder polls within G depends on what the chains do; null: unknown)",
    "double_assigned": "jobs this chain let be assigned to two encoders in one round (a world "
                       "double-accept or two encoders told 'yours'); chain-dependent",
    "overlapping_jobs": "HEADLINE, jobs processed by two encoders at once (jobs with an S2 "
                        "violation: two processings of the job overlapping in time, by two "
                        "encoders, or by one encoder in two slots of its loop)",
    "overlapping_per_1000": "HEADLINE, jobs processed by two encoders at once per 1,000 jobs "
                            "(aggregate: mean over seeds)",
    "race_prevented": "double hand-outs the world made (realised_double, jobs) that were not "
                      "processed by two encoders at once (null: unknown)",
    "race_prevention_rate": "race_prevented / realised_double (a share of the offers made; "
                            "undefined on a seed where none was made; aggregate: mean over the "
                            "seeds where it is defined)",
    "race_prevention_rate_n": "the seeds behind race_prevention_rate's mean (those where the "
                              "world made an offer)",
    "restarts": "starts of a job after every earlier processing of it had stopped, the "
                "latest-ending of them by a crash or a cancel (a reassignment, a shutdown): "
                "processed again, not twice at once (starts)",
    "restarts_per_1000": "restarts (starts) per 1,000 jobs",
    "reencodes": "re-encodes after completed work: starts of a job after every earlier "
                 "processing of it had stopped, the latest-ending of them having run to done "
                 "(the gateway requeued it during its upload, a commit failed, ...) (starts)",
    "reencodes_per_1000": "reencodes (starts) per 1,000 jobs",
    "overlapping_starts": "starts of a job while another encoder was still processing it "
                          "(starts; the S1 condition)",
    "s1_violations": "S1 findings: starts while another encoder held the job (starts)",
    "s2_violations": "S2 findings: pairs of overlapping processing intervals of different "
                     "encoders (pairs; a job can give several), and starts of a job by an "
                     "encoder still processing it (two slots at once; one finding each)",
    "s3_violations": "S3 findings: commits that were not the job's first by its latest "
                     "assignee (commits)",
    "s3_per_1000": "S3 findings (commits) per 1,000 jobs",
    "l1_violations": "L1 findings: jobs never committed and not given up because of faults "
                     "(jobs)",
    "wasted_encode_s": "processing-seconds that produced no committed result: whole processing "
                       "intervals, download, encode and upload (summed over seeds)",
    "wasted_encode_h_per_1000": "wasted_encode_s in hours, per 1,000 jobs",
    "lost_or_stuck": "jobs without a committed result at the end of the run (jobs)",
    "lost_or_stuck_per_1000": "lost or stuck jobs per 1,000 jobs",
    "start_latency_p50": "median seconds from an attempt's first claim to its start, over the "
                         "attempts that started (a chain that loses jobs is timed on those it "
                         "kept; aggregate: mean of the per-seed medians)",
    "start_latency_p99": "99th percentile of the same (aggregate: the worst seed)",
    "api_calls": "calls to each tier per job",
    "api_calls.<tier>": "calls to <tier> per job (a batch status request is one call)",
    "throughput_jobs_per_hour": "committed jobs per simulated hour",
    "<figure>_ci": "the 95% Student-t interval [low, high] of <figure> over seeds, clipped "
                   "to its range (null with one seed); in a CSV cell, \"low high\" separated "
                   "by a space, empty when undefined",
    # ---- research tables (sim/_research.py)
    "monitor_lag_mean": "the mean parameter μ of the monitor's lag, seconds: every monitor "
                        "read sees the job as it was min(Exp(μ), Δ) ago (Δ: monitor_lag)",
    "monitor_lag_realised_mean": "the realised mean of that lag, μ(1 − e^(−Δ/μ)), seconds",
    "lie_rate": "the share of assignments (through the gateway, aid or the database) "
                 "the gateway also offers to a second encoder that polls within G",
    "vs_baseline": "the paired differences chain − baseline (below)",
    "vs_hardened": "the paired differences chain − hardened (below)",
    "vs_baseline.<figure>": "the paired difference chain − baseline of <figure>, mean over "
                            "seeds",
    "vs_baseline.<figure>_ci": "its paired 95% Student-t interval",
    "vs_baseline.n": "seeds run for the paired comparison",
    "vs_baseline.<figure>_n": "pairs behind the difference of <figure>: seeds where both "
                              "chains' values are defined (race prevention: seeds where the "
                              "world made an offer to both chains)",
    "vs_hardened.<figure>": "the paired difference chain − hardened of <figure> (ablation)",
    "vs_hardened.<figure>_ci": "its paired 95% Student-t interval",
    "vs_hardened.n": "seeds run for the paired comparison",
    "vs_hardened.<figure>_n": "pairs behind the difference of <figure>: seeds where both "
                              "chains' values are defined",
    # ---- live runs only (python -m sim live: sim/live/)
    "live": "per chain, the figures only a live run has (the keys below)",
    "rerun": "the command that reruns a live run (real time does not replay)",
    "faults": "the HTTP faults the emulator injected at which rates, and the monitor restarts "
              "(sim/live/_emulator.py, HttpFaults)",
    "dashboard": "the --dashboard figures of a live run (sim/live/_dashboard.py)",
    "wall_s": "wall-clock seconds the live run took",
    "verifications": "status reads the live guards sent to a tier, pre-claim checks included "
                     "(verifier_verifications_total leaves those out)",
    "verifications_per_s": "verifications per wall-clock second",
    "verify_latency_p50_ms": "median latency of a verification read over loopback, ms",
    "verify_latency_p99_ms": "99th percentile of the same, ms",
    "verify_latency_by_tier_ms": "per tier: reads, p50 and p99 latency, ms",
    "injected_faults": "HTTP faults the emulator injected, per kind (requests)",
    "bad_signatures": "requests the emulator refused for a bad signature",
    "requests": "requests each emulated server answered",
    "open_connections_end": "server connections still open after the clients closed",
    "fds_start": "open file descriptors of the process before the run",
    "fds_end": "open file descriptors of the process after the run",
    "processes": "processes running encoders (the emulator's included)",
    "features": "the cost features on (status cache, batch screening, push, backoff)",
    "pushes_sent": "push notifications the emulator sent",
    "monitor_requests_per_job": "requests the monitor answered, per job",
    "gateway_requests_per_job": "requests the legacy gateway answered, per job",
    "outage_s": "seconds of monitor outage windows in the run",
    "retry_requests_per_encoder_s": "monitor requests sent during outage windows, per encoder "
                                    "and second of outage",
    "loss_detection_s": "seconds from the world taking a job away to its encoder deciding to "
                        "cancel: p50, p99 and n (events); CSV: loss_detection_s_p50, _p99, _n",
    "recovery_s": "seconds from the end of an outage to an encoder's first answered monitor "
                  "read: p50, p99 and n; CSV: recovery_s_p50, _p99, _n",
    "throughput_change_pct": "paired difference of throughput to the baseline, as a percentage "
                             "of the baseline's mean throughput",
}

#: The headers of the printed tables (run, sweep, research), each defined.
TABLE_HEADERS: Final[dict[str, str]] = {
    "chain": "the ownership chain",
    "scenario": "the scenario",
    "jobs": "jobs released, summed over seeds",
    "planned doubles": "planned_double, summed over seeds (jobs)",
    "realised doubles": "realised_double, summed over seeds (jobs)",
    "twice at once/1k [95% CI]": "overlapping_per_1000: jobs processed by two encoders at once "
                                 "per 1,000 jobs, mean over seeds [95% t interval]",
    "vs baseline/1k [95% CI]": "the paired difference of overlapping_per_1000 to the baseline "
                               "chain [95% paired t interval]",
    "vs hardened/1k [95% CI]": "the paired difference of overlapping_per_1000 to hardened "
                               "[95% paired t interval]",
    "excludes 0": "the figures whose paired interval against hardened excludes zero: twice "
                  "(overlapping_per_1000), lost (lost_or_stuck_per_1000), S3 (s3_per_1000); "
                  "none: the step showed nothing on these seeds; n/a: fewer than 2 paired "
                  "seeds (no interval); (0-width): every seed gave the same nonzero "
                  "difference, so no interval to claim from",
    "S3/1k [95% CI]": "s3_per_1000: commits violating S3 per 1,000 jobs, mean over seeds "
                      "[95% t interval]",
    "S1": "s1_violations summed over seeds (starts)",
    "S2": "s2_violations summed over seeds (pairs of intervals)",
    "S3": "s3_violations summed over seeds (commits)",
    "L1": "l1_violations summed over seeds (jobs)",
    "race prevention [95% CI]": "race_prevention_rate: the share of the double hand-outs the "
                                "world made not processed twice at once, mean over seeds [95% "
                                "t interval; unpaired: the paired difference is in "
                                "research.csv/json]; '(k of n seeds)' when only k seeds had an "
                                "offer made; '-' when none had",
    "restarts/1k": "restarts_per_1000, mean over seeds (starts per 1,000 jobs)",
    "re-encodes/1k": "reencodes_per_1000, mean over seeds (starts per 1,000 jobs)",
    "wasted enc-h": "wasted processing hours (download, encode, upload), summed over seeds",
    "wasted enc-h/1k": "wasted_encode_h_per_1000, mean over seeds",
    "lost/stuck": "lost_or_stuck summed over seeds (jobs)",
    "lost/stuck/1k [95% CI]": "lost_or_stuck_per_1000, mean over seeds [95% t interval]",
    "lost/stuck/1k": "lost_or_stuck_per_1000, mean over seeds",
    "start p50 s": "start_latency_p50, mean over seeds",
    "start p50 s [95% CI]": "start_latency_p50, mean over seeds [95% t interval]",
    "start p99 s": "start_latency_p99, the worst seed",
    "jobs/h": "throughput_jobs_per_hour, mean over seeds",
    "jobs/h [95% CI]": "throughput_jobs_per_hour, mean over seeds [95% t interval]",
    "Δ jobs/h [95% CI]": "paired difference of throughput to the baseline [95% paired t]",
    "Δ jobs/h %": "throughput_change_pct",
    "Δ start p50 s [95% CI]": "paired difference of start_latency_p50 to the baseline "
                              "[95% paired t]",
    "lie_rate": "the grid point's lie_rate: the share of assignments the gateway also offers "
                "to a second encoder that polls within G (the first assignments' draws are "
                "the planned double hand-outs)",
    "monitor lag mean s": "monitor_lag_mean of the grid point (the exponential's mean "
                          "parameter, before the cap at Δ)",
    "realised lag mean s": "monitor_lag_realised_mean: the mean lag the reads saw",
}

_PATTERNS: Final = [
    (re.compile(r"^(faults|dashboard)\.(.+)$"), "<group>"),
    (re.compile(r"^live\.(.+)$"), "<live>"),
    (re.compile(r"^(loss_detection_s|recovery_s)[._](p50|p99|n)$"), "<summary>"),
    (re.compile(r"^(verify_latency_by_tier_ms|requests|injected_faults)\..+$"), "<map>"),
    (re.compile(r"^grid\.[a-z_0-9]+$"), "grid.<key>"),
    (re.compile(r"^api_calls\.[a-z_]+$"), "api_calls.<tier>"),
    (re.compile(r"^vs_baseline\.n$"), "vs_baseline.n"),
    (re.compile(r"^vs_baseline\.[a-z_0-9]+_n$"), "vs_baseline.<figure>_n"),
    (re.compile(r"^vs_baseline\.[a-z_0-9]+_ci$"), "vs_baseline.<figure>_ci"),
    (re.compile(r"^vs_baseline\.[a-z_0-9]+$"), "vs_baseline.<figure>"),
    (re.compile(r"^vs_hardened\.n$"), "vs_hardened.n"),
    (re.compile(r"^vs_hardened\.[a-z_0-9]+_n$"), "vs_hardened.<figure>_n"),
    (re.compile(r"^vs_hardened\.[a-z_0-9]+_ci$"), "vs_hardened.<figure>_ci"),
    (re.compile(r"^vs_hardened\.[a-z_0-9]+$"), "vs_hardened.<figure>"),
    (re.compile(r"^[a-z_0-9]+_ci$"), "<figure>_ci"),
]


def define(column: str) -> str | None:
    """The definition of a CSV column or JSON key (patterns resolved), or None."""
    if column in COLUMNS:
        return COLUMNS[column]
    for pattern, name in _PATTERNS:
        match = pattern.match(column)
        if match is None:
            continue
        if name == "<group>":
            return COLUMNS[match.group(1)]
        if name == "<live>":
            return define(match.group(1))
        if name in ("<summary>", "<map>"):
            return COLUMNS[match.group(1)]
        if name == "<figure>_ci" and column[:-3] not in COLUMNS:
            return None
        return COLUMNS[name]
    return None


def undefined(columns: Iterable[str]) -> list[str]:
    """The columns of ``columns`` that :func:`define` does not know."""
    return [c for c in columns if define(c) is None]


def epilog(*, tables: bool = True, intervals: str = INTERVALS) -> str:
    """The ``--help`` epilog: the interval method (``MEAN_INTERVALS`` for a command without
    paired differences), then every column and table header, one per line."""
    lines = [intervals + ".", "", "CSV columns and JSON keys:"]
    lines += [f"  {name}: {text}" for name, text in COLUMNS.items()]
    if tables:
        lines += ["", "table headers:"]
        lines += [f"  {name}: {text}" for name, text in TABLE_HEADERS.items()]
    return "\n".join(lines)

"""The measures researchers compare chains by, computed from a history and its checks.

Everything here is read from the recorded history (as the checkers are), so a metric cannot
disagree with a check about what happened. The headline measure is the race-prevention rate:
of the jobs the world double-assigned (two encoders told "yours" in the same round), the share
that did **not** end with overlapping processing (no S2 violation). Over seeds it is pooled and
given with a 95% Wilson interval, which behaves at 0% and 100% where the normal one does not.

Percentiles are nearest-rank (an observed value, no interpolation, no numpy): deterministic
and honest about small samples.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Final

from ._checkers import (
    CheckResult,
    Interval,
    _double_assigned,
    _l1,
    _Partition,
    _s1,
    _s2,
    _s3,
)
from ._history import WORLD, History

__all__ = ["RunMetrics", "aggregate", "compute_metrics", "percentile", "wilson_interval"]

Z95: Final = 1.959963984540054
#: Encoder operations that are calls to a tier, counted per job in ``api_calls`` (``screen``:
#: a batch status request; a ``cached`` answer is no call).
_CALL_OPS: Final = frozenset({"verify", "claim", "heartbeat", "commit", "release", "screen"})
_COUNT_FIELDS: Final = (
    "jobs", "committed", "double_assigned", "duplicate_starts", "overlapping_jobs",
    "s1_violations", "s2_violations", "s3_violations", "l1_violations", "race_prevented",
    "lost_or_stuck",
)


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (``(0.0, 1.0)`` with no trials).

    Chosen over the normal ("Wald") interval because race prevention is often 100%, where Wald
    collapses to a zero-width interval and overstates certainty.
    """
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    denom = 1.0 + z2 / trials
    center = (p + z2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1.0 - p) / trials + z2 / (4 * trials * trials)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (``None`` for no values): the smallest value with at least
    ``pct`` percent of the sample at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """The measures of one run (one scenario, one chain, one seed)."""

    jobs: int
    committed: int
    double_assigned: int
    duplicate_starts: int
    duplicate_starts_per_1000: float
    overlapping_jobs: int
    overlapping_per_1000: float
    s1_violations: int
    s2_violations: int
    s3_violations: int
    l1_violations: int
    race_prevented: int
    race_prevention_rate: float | None
    wasted_encode_s: float
    lost_or_stuck: int
    start_latency_p50: float | None
    start_latency_p99: float | None
    api_calls: dict[str, float]
    throughput_jobs_per_hour: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, in field order, floats rounded to microseconds for stable reports."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                value = {k: _round(v) for k, v in sorted(value.items())}
            out[f.name] = _round(value)
        return out


def _round(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def _tier_of(value: Any) -> str:
    """The tier an encoder call went to: its value, or the value's first element."""
    if isinstance(value, tuple | list) and value:
        value = value[0]
    return value if isinstance(value, str) and value else "other"


def _per_1000(count: int, jobs: int) -> float:
    return count * 1000.0 / jobs if jobs else 0.0


def compute_metrics(history: History, *, jobs: Sequence[str], duration: float,
                    checks: dict[str, CheckResult],
                    partition: _Partition | None = None) -> RunMetrics:
    """The measures of one run. ``jobs`` is the population (the denominator of every rate);
    counts of jobs are restricted to it. A check missing from ``checks`` is computed here."""
    population = set(jobs)
    n_jobs = len(population)
    part = partition if partition is not None else _Partition(history)
    checks = dict(checks)
    if "S1" not in checks:
        checks["S1"] = _s1(part)
    if "S2" not in checks:
        checks["S2"] = _s2(part)
    if "S3" not in checks:
        checks["S3"] = _s3(part)
    if "L1" not in checks:
        checks["L1"] = _l1(part, jobs, None, None)

    calls: dict[str, int] = {}
    latencies: list[float] = []
    committed: set[str] = set()
    duplicate_starts = 0
    wasted = 0.0
    intervals = part.intervals()
    for job, recs in part.by_job.items():
        starters: set[str] = set()
        claimed_at: dict[str, float] = {}  # process -> first claim since its last start
        commits: list[tuple[float, Any]] = []
        for _, (t, process, _, op, phase, value) in recs:
            if process == WORLD:
                if op == "commit" and phase == "ok":
                    commits.append((t, value[0] if isinstance(value, tuple | list) else value))
                continue
            if phase == "invoke" and op in _CALL_OPS:
                tier = _tier_of(value)
                calls[tier] = calls.get(tier, 0) + 1
                if op == "claim":
                    claimed_at.setdefault(process, t)
            elif op == "start" and phase == "ok":
                starters.add(process)
                # Start latency: from the attempt's first claim to the start it led to.
                if process in claimed_at:
                    latencies.append(t - claimed_at.pop(process))
        if job in population:
            duplicate_starts += max(0, len(starters) - 1)
            if commits:
                committed.add(job)
        wasted += _wasted(intervals.get(job, []), commits, duration)

    s2_jobs = set(checks["S2"].jobs) & population
    double = _double_assigned(part, None) & population
    overlapping_double = len(double & s2_jobs)
    race_prevented = len(double) - overlapping_double
    n_calls = {tier: count / n_jobs if n_jobs else 0.0 for tier, count in sorted(calls.items())}
    return RunMetrics(
        jobs=n_jobs,
        committed=len(committed),
        double_assigned=len(double),
        duplicate_starts=duplicate_starts,
        duplicate_starts_per_1000=_per_1000(duplicate_starts, n_jobs),
        overlapping_jobs=len(s2_jobs),
        overlapping_per_1000=_per_1000(len(s2_jobs), n_jobs),
        s1_violations=checks["S1"].violations,
        s2_violations=checks["S2"].violations,
        s3_violations=checks["S3"].violations,
        l1_violations=checks["L1"].violations,
        race_prevented=race_prevented,
        race_prevention_rate=race_prevented / len(double) if double else None,
        wasted_encode_s=wasted,
        lost_or_stuck=n_jobs - len(committed),
        start_latency_p50=percentile(latencies, 50),
        start_latency_p99=percentile(latencies, 99),
        api_calls=n_calls,
        throughput_jobs_per_hour=len(committed) / duration * 3600.0 if duration > 0 else 0.0,
    )


def _wasted(intervals: list[Interval], commits: list[tuple[float, Any]], duration: float) -> float:
    """Encode-seconds that produced nothing: every interval except, per world commit, the
    committer's latest interval started at or before that commit (the work that was committed).

    Cancelled, crashed, refused-at-finish and never-closed work all count; the last is closed
    at ``duration``, the end of the run.
    """
    useful: set[int] = set()
    if commits:
        starts: dict[str, tuple[list[float], list[int]]] = {}
        for k, iv in enumerate(intervals):  # already in start order
            times, indices = starts.setdefault(iv.process, ([], []))
            times.append(iv.start)
            indices.append(k)
        for t_commit, committer in commits:
            times, indices = starts.get(committer, ([], []))
            i = bisect_right(times, t_commit)
            if i:
                useful.add(indices[i - 1])
    total = 0.0
    for k, iv in enumerate(intervals):
        if k not in useful:
            total += max(0.0, min(iv.end, duration) - iv.start)
    return total


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def aggregate(metrics: Sequence[RunMetrics]) -> dict[str, Any]:
    """Pool runs over seeds: counts are summed, the race-prevention rate is pooled with its
    Wilson interval, per-1000 rates and throughput are averaged, p50s averaged, p99s maxed
    (the worst tail any seed showed), API calls per job pooled over all jobs."""
    out: dict[str, Any] = {"runs": len(metrics)}
    for name in _COUNT_FIELDS:
        out[name] = sum(getattr(m, name) for m in metrics)
    out["wasted_encode_s"] = round(sum(m.wasted_encode_s for m in metrics), 6)
    trials, successes = out["double_assigned"], out["race_prevented"]
    out["race_prevention_rate"] = round(successes / trials, 6) if trials else None
    lo, hi = wilson_interval(successes, trials)
    out["race_prevention_ci"] = [round(lo, 6), round(hi, 6)]
    for name in ("duplicate_starts_per_1000", "overlapping_per_1000", "throughput_jobs_per_hour"):
        out[name] = round(_mean([getattr(m, name) for m in metrics]), 6)
    p50s = [m.start_latency_p50 for m in metrics if m.start_latency_p50 is not None]
    p99s = [m.start_latency_p99 for m in metrics if m.start_latency_p99 is not None]
    out["start_latency_p50"] = round(_mean(p50s), 6) if p50s else None
    out["start_latency_p99"] = round(max(p99s), 6) if p99s else None
    total_jobs = out["jobs"]
    pooled: dict[str, float] = {}
    for m in metrics:
        for tier, per_job in m.api_calls.items():
            pooled[tier] = pooled.get(tier, 0.0) + per_job * m.jobs
    out["api_calls"] = {tier: round(count / total_jobs, 6) if total_jobs else 0.0
                        for tier, count in sorted(pooled.items())}
    return out

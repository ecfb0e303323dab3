"""The measures researchers compare chains by, computed from a history and its checks.

Everything here is read from the recorded history (as the checkers are), so a metric cannot
disagree with a check about what happened. Every column is defined in :mod:`sim._columns`.

The headline measure is **jobs processed by two encoders at once per 1,000 jobs**
(``overlapping_per_1000``: the jobs with an S2 violation). The seed's world *plans* its double
hand-outs (``planned_double``: the jobs whose first assignment, through the gateway, aid or the
database, the world doubles if it can, the same set for every chain under common random
numbers, :mod:`sim._rng`); it *makes* a planned offer only if an encoder polls within G of the
assignment (and before ``faults_until``): ``realised_double`` counts the ones it made. Race
prevention is the share of the offers made that did not end in double processing: the offers
the gateway really made, not those a chain let happen (``double_assigned``). It was the share
of the *planned* ones until session 37, when a review found that it credited a chain with
every offer the world never made: trust-gateway read 41% on the default scenario and 100% where
none was made, while it stopped about 2% of the offers it received. The denominator is
chain-dependent (whether an encoder polls within G depends on what the chains do), so each
chain's rate says how many seeds it rests on (``race_prevention_rate_n``) and the report prints
the offers made beside it.

One interval method everywhere: over seeds, a figure is the mean of its per-seed values with a
95% Student-t interval (:func:`t_interval`); a comparison of two chains is the mean of their
per-seed differences on the same seeds (the same offered world) with its paired 95% t interval
(:func:`paired_difference`). :func:`wilson_interval` is kept for callers of the library; no
report uses it.

Percentiles are nearest-rank (an observed value, no interpolation, no numpy): deterministic
and honest about small samples.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Collection, Sequence
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
from ._rng import Streams

__all__ = [
    "MEANED", "RunMetrics", "aggregate", "compute_metrics", "paired_difference", "percentile",
    "planned_doubles", "t_interval", "t_quantile", "wilson_interval",
]

Z95: Final = 1.959963984540054
#: Values this close (relative to their size) are the same value, told apart only by the
#: rounding of the arithmetic that produced them: their t interval has zero width.
_SAME: Final = 1e-12
#: Encoder operations that are calls to a tier, counted per job in ``api_calls`` (``screen``:
#: a batch status request; a ``cached`` answer is no call).
_CALL_OPS: Final = frozenset({"verify", "claim", "heartbeat", "commit", "release", "screen"})
_COUNT_FIELDS: Final = (
    "jobs", "committed", "planned_double", "double_assigned", "overlapping_jobs",
    "restarts", "reencodes", "overlapping_starts", "s1_violations",
    "s2_violations", "s3_violations", "l1_violations", "lost_or_stuck",
)
#: Per-seed figures that an aggregate gives as a mean over seeds with a ``<name>_ci`` 95%
#: t interval, clipped to the figure's range (a rate in [0, 1], a count per 1,000 ≥ 0).
MEANED: Final = (
    "overlapping_per_1000", "race_prevention_rate", "restarts_per_1000", "reencodes_per_1000",
    "s3_per_1000",
    "wasted_encode_h_per_1000", "lost_or_stuck_per_1000", "throughput_jobs_per_hour",
    "start_latency_p50",
)
_RANGE: Final = {"race_prevention_rate": (0.0, 1.0), "overlapping_per_1000": (0.0, 1000.0),
                  "lost_or_stuck_per_1000": (0.0, 1000.0)}


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (p in (0.5, 1)).

    From the regularized incomplete beta function by bisection (no scipy): for t > 0,
    ``P(T <= t) = 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2``. Exact to ~1e-10 (df 1: 12.706205,
    df 4: 2.776445, df 19: 2.093024 at p = 0.975).
    """
    if df < 1 or not 0.5 < p < 1.0:
        raise ValueError(f"need df >= 1 and 0.5 < p < 1, got df={df}, p={p}")
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def _t_cdf(t: float, df: int) -> float:
    x = df / (df + t * t)
    return 1.0 - 0.5 * _betai(df / 2.0, 0.5, x)


def _betai(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (Numerical Recipes' betai)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log(1.0 - x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 3e-16:
            break
    return h


def t_interval(values: Sequence[float], level: float = 0.95
               ) -> tuple[float | None, float | None, float | None]:
    """``(mean, low, high)``: the mean of ``values`` and its Student-t interval,
    ``mean ± t_{(1+level)/2, n-1} · s / sqrt(n)`` with ``s`` the sample standard deviation.

    ``(None, None, None)`` for no values, ``(mean, None, None)`` for one (no spread to
    estimate). A zero-width interval means every value was the same: it is not a claim of
    certainty (with 0 bad jobs of N, the rule of three bounds the rate at 3/N).
    """
    n = len(values)
    if n == 0:
        return None, None, None
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        # A NaN would come out as a NaN interval, written as null beside a mean that is NaN
        # too: a figure that silently says nothing (a review of the figures, session 37).
        raise ValueError(f"t_interval needs finite values, got {bad[0]!r} among {n}")
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None, None
    lowest, highest = min(values), max(values)
    if highest - lowest <= _SAME * max(abs(lowest), abs(highest)):
        # Every value is the same, up to the last bits of the float arithmetic that made it
        # (0.1 three times has a mean of 0.10000000000000002; a paired difference of 1 job
        # in 30 per seed is 33.333333333333336 on one seed and 33.33333333333333 on another):
        # the interval is exactly zero-width, as the reports say, and never a sliver around
        # the mean that "excludes zero" (adversarial review of the figures).
        return mean, mean, mean
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = t_quantile((1.0 + level) / 2.0, n - 1) * math.sqrt(var / n)
    return mean, mean - half, mean + half


def paired_difference(values: Sequence[float | None], baseline: Sequence[float | None],
                      level: float = 0.95, *, name: str | None = None) -> dict[str, Any]:
    """The paired comparison of a chain with a baseline chain on the same seeds:
    ``{"diff": mean of (value - baseline), "ci": [low, high], "n": pairs}``, a Student-t
    interval over the per-seed differences (seeds where either value is None are left out).
    ``name``: the figure's, whose range bounds the difference's interval (two rates in [0, 1]
    differ by at most 1 either way: an interval of [-0.42, 1.42] was printed, session 37)."""
    if len(values) != len(baseline):
        raise ValueError(f"paired values need the same seeds: {len(values)} != {len(baseline)}")
    diffs = [v - b for v, b in zip(values, baseline, strict=True)
             if v is not None and b is not None]
    mean, lo, hi = t_interval(diffs, level)
    if name in _RANGE and lo is not None and hi is not None:
        low, high = _RANGE[name]
        lo, hi = max(lo, low - high), min(hi, high - low)
    return {"diff": mean, "ci": [lo, hi], "n": len(diffs)}


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
    if not 0 <= pct <= 100:  # (past 100 the rank would pass the last value)
        raise ValueError(f"a percentile is in [0, 100], got {pct!r}")
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100.0 * len(ordered))) - 1]


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """The measures of one run (one scenario, one chain, one seed)."""

    jobs: int
    committed: int
    planned_double: int
    realised_double: int | None
    double_assigned: int
    overlapping_jobs: int
    overlapping_per_1000: float
    race_prevented: int | None
    race_prevention_rate: float | None
    restarts: int
    restarts_per_1000: float
    reencodes: int
    reencodes_per_1000: float
    overlapping_starts: int
    s1_violations: int
    s2_violations: int
    s3_violations: int
    s3_per_1000: float
    l1_violations: int
    wasted_encode_s: float
    wasted_encode_h_per_1000: float
    lost_or_stuck: int
    lost_or_stuck_per_1000: float
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


def planned_doubles(lie_rate: float, seed: int, jobs: Sequence[str]) -> list[str]:
    """The planned double hand-outs: the jobs whose first assignment the world of ``seed``
    doubles (the gateway's ``lie_rate`` draw for job j's first assignment, through whichever
    tier, keyed by (seed, job): sim/_world.py). The same list for every chain: the denominator
    of race prevention. The world makes a planned offer only if the job is assigned before the
    scenario's ``faults_until`` and an encoder polls within G of it; the list counts it all the
    same; ``realised_double`` counts the offers the world made."""
    streams = Streams(seed)
    return [j for j in jobs
            if streams.keyed("gateway.double", j, 1).random() < lie_rate]


def compute_metrics(history: History, *, jobs: Sequence[str], duration: float,
                    checks: dict[str, CheckResult],
                    partition: _Partition | None = None,
                    offered: Collection[str] = (),
                    realised: Collection[str] | None = None) -> RunMetrics:
    """The measures of one run. ``jobs`` is the population (the denominator of every rate);
    counts of jobs are restricted to it. A check missing from ``checks`` is computed here.
    ``offered``: the planned double hand-outs (:func:`planned_doubles`); ``realised``: those
    the world made, the denominator of race prevention (None: not known, and no race
    prevention)."""
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
    for value in part.jobless_screens:  # a batch screen is one call, with or without a job
        tier = _tier_of(value)
        calls[tier] = calls.get(tier, 0) + 1
    latencies: list[float] = []
    committed: set[str] = set()
    restarts = reencodes = overlapping_starts = 0
    wasted = 0.0
    intervals = part.intervals()
    for job, recs in part.by_job.items():
        # process -> (position, time) of the first claim of its current attempt on this job.
        claimed_at: dict[str, tuple[int, float]] = {}
        commits: list[tuple[float, Any]] = []
        for pos, (t, process, _, op, phase, value) in recs:
            if process == WORLD:
                if op == "commit" and phase == "ok":
                    commits.append((t, value[0] if isinstance(value, tuple | list) else value))
                if op in ("commit", "requeue") and phase == "ok":
                    claimed_at.clear()  # every attempt on the job is over
                continue
            if phase == "invoke" and op in _CALL_OPS:
                tier = _tier_of(value)
                calls[tier] = calls.get(tier, 0) + 1
                if op == "claim":
                    first = claimed_at.get(process)
                    if first is None or part.next_crash(process, first[0])[0] < pos:
                        claimed_at[process] = (pos, t)  # a new attempt (or one after a crash)
                elif op == "release":
                    claimed_at.pop(process, None)  # the attempt gave the job back
            elif op == "claim" and phase == "fail":
                claimed_at.pop(process, None)  # refused: the attempt is over
            elif op == "start" and phase == "ok" and process in claimed_at:
                # Start latency: from the attempt's first claim to the start it led to, never
                # from an earlier attempt's (one that ended unstarted, or before a crash).
                first_pos, first_t = claimed_at.pop(process)
                if part.next_crash(process, first_pos)[0] > pos:
                    latencies.append(t - first_t)
        if job in population:
            again, redone, beside = _later_starts(intervals.get(job, []))
            restarts += again
            reencodes += redone
            overlapping_starts += beside
            if commits:
                committed.add(job)
        wasted += _wasted(intervals.get(job, []), commits, duration)

    s2_jobs = set(checks["S2"].jobs) & population
    double = _double_assigned(part, None) & population
    offer = set(offered) & population
    # The offers made (None: not known); prevented = made and not processed twice at once.
    made = None if realised is None else offer & set(realised)
    race_prevented = None if made is None else len(made - s2_jobs)
    n_calls = {tier: count / n_jobs if n_jobs else 0.0 for tier, count in sorted(calls.items())}
    lost = n_jobs - len(committed)
    return RunMetrics(
        jobs=n_jobs,
        committed=len(committed),
        planned_double=len(offer),
        realised_double=None if made is None else len(made),
        double_assigned=len(double),
        overlapping_jobs=len(s2_jobs),
        overlapping_per_1000=_per_1000(len(s2_jobs), n_jobs),
        race_prevented=race_prevented,
        race_prevention_rate=(race_prevented / len(made)
                              if made and race_prevented is not None else None),
        restarts=restarts,
        restarts_per_1000=_per_1000(restarts, n_jobs),
        reencodes=reencodes,
        reencodes_per_1000=_per_1000(reencodes, n_jobs),
        overlapping_starts=overlapping_starts,
        s1_violations=checks["S1"].violations,
        s2_violations=checks["S2"].violations,
        s3_violations=checks["S3"].violations,
        s3_per_1000=_per_1000(checks["S3"].violations, n_jobs),
        l1_violations=checks["L1"].violations,
        wasted_encode_s=wasted,
        wasted_encode_h_per_1000=_per_1000(wasted, n_jobs) / 3600.0,
        lost_or_stuck=lost,
        lost_or_stuck_per_1000=_per_1000(lost, n_jobs),
        start_latency_p50=percentile(latencies, 50),
        start_latency_p99=percentile(latencies, 99),
        api_calls=n_calls,
        throughput_jobs_per_hour=len(committed) / duration * 3600.0 if duration > 0 else 0.0,
    )


def _later_starts(intervals: list[Interval]) -> tuple[int, int, int]:
    """A job's starts after its first: ``(restarts, reencodes, overlapping)``. A start is
    overlapping when another encoder's processing of the job is still open at that instant (the
    S1 condition). Otherwise every earlier processing had stopped, and the start is a re-encode
    after completed work when the latest-ending of them ran to ``done`` (the gateway requeued
    the job during its upload, a commit failed, ...), else a restart (the latest was stopped
    by a crash, a cancel, a reassignment): processed again, not twice at once."""
    restarts = reencodes = overlapping = 0
    for k in range(1, len(intervals)):
        iv = intervals[k]
        if any(o.process != iv.process and o.start <= iv.start < o.end
               for o in intervals[:k]):
            overlapping += 1
        elif max(intervals[:k], key=_end).how == "done":
            reencodes += 1
        else:
            restarts += 1
    return restarts, reencodes, overlapping


def _end(interval: Interval) -> float:
    return interval.end


def _wasted(intervals: list[Interval], commits: list[tuple[float, Any]], duration: float) -> float:
    """Processing-seconds that produced nothing: every interval except, per world commit, the
    committer's latest interval started at or before that commit (the work that was committed).
    An interval is the whole processing, download, encode and upload: all of it is spent.

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


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def mean_ci(name: str, values: Sequence[float]) -> tuple[float | None, list[float | None]]:
    """A figure's mean over seeds and its 95% t interval, clipped to the figure's range."""
    mean, lo, hi = t_interval(values)
    low, high = _RANGE.get(name, (0.0, math.inf))
    if lo is not None and hi is not None:
        lo, hi = max(lo, low), min(hi, high)
    return _r(mean), [_r(lo), _r(hi)]


def aggregate(metrics: Sequence[RunMetrics]) -> dict[str, Any]:
    """Pool runs over seeds: counts are summed; every figure of :data:`MEANED` is the mean of
    its per-seed values (seeds where it is undefined, e.g. race prevention without an offer
    made, left out: ``race_prevention_rate_n`` says how many seeds are left) with a 95% t
    interval ``<name>_ci``; p99s maxed (the worst
    tail any seed showed); API calls per job pooled over all jobs."""
    out: dict[str, Any] = {"runs": len(metrics)}
    for name in _COUNT_FIELDS:
        out[name] = sum(getattr(m, name) for m in metrics)
    for name in ("realised_double", "race_prevented"):  # None in any seed: not known
        known = [getattr(m, name) for m in metrics]
        out[name] = None if None in known else sum(v for v in known if v is not None)
    out["wasted_encode_s"] = round(sum(m.wasted_encode_s for m in metrics), 6)
    for name in MEANED:
        values = [v for m in metrics if (v := getattr(m, name)) is not None]
        out[name], out[f"{name}_ci"] = mean_ci(name, values)
        if name == "race_prevention_rate":  # the one figure a seed may lack (no offer made)
            out[f"{name}_n"] = len(values)
    p99s = [m.start_latency_p99 for m in metrics if m.start_latency_p99 is not None]
    out["start_latency_p99"] = round(max(p99s), 6) if p99s else None
    total_jobs = out["jobs"]
    pooled: dict[str, float] = {}
    for m in metrics:
        for tier, per_job in m.api_calls.items():
            pooled[tier] = pooled.get(tier, 0.0) + per_job * m.jobs
    out["api_calls"] = {tier: round(count / total_jobs, 6) if total_jobs else 0.0
                        for tier, count in sorted(pooled.items())}
    return out

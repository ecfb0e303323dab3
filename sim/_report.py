"""Reports of simulation runs: the JSON report, the CSV of metrics, the summary table, progress.

Determinism is the point of this module. The JSON report of a command is a pure function of
the command line: floats are rounded to microseconds (the last bits of a float sum depend on
the order of additions, and must not make two identical runs differ), keys are sorted, tuples
become lists, and nothing reads the wall clock. Two runs of the same command, under any
``PYTHONHASHSEED``, give byte-identical files, so a report can be diffed, cached and cited.

The wall clock is read in one place only, :class:`Progress`, which writes to stderr and never
to a report.

Metric names are not listed here: rows and columns come from
:meth:`sim._metrics.RunMetrics.to_dict` and :func:`sim._metrics.aggregate`, so a metric added
there appears in the JSON and CSV without a change here. Only the human summary table picks
its columns (:data:`TABLE_COLUMNS`), and shows ``-`` for a metric that is absent.
"""

from __future__ import annotations

import csv
import json
import math
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from ._checkers import CheckResult
from ._columns import MEAN_INTERVALS
from ._metrics import aggregate
from ._runner import RunResult, replay_command
from ._scenario import Scenario
from ._scenario_files import UsageError

__all__ = [
    "BUILTIN_PROTOCOL",
    "SAFETY_CHECKS",
    "TABLE_COLUMNS",
    "Progress",
    "RunSummary",
    "build_run_report",
    "chain_replay",
    "csv_rows",
    "dumps_report",
    "format_table",
    "replay_for",
    "safety_violations",
    "stable",
    "summarize_run",
    "timing_problems",
    "with_ci",
    "write_csv",
]

#: Decimal places every float in a report is rounded to (microseconds, micro-rates).
DIGITS: Final = 6
#: The safety properties (L1 is liveness): a chain expected ``unsafe`` by the release gate
#: must violate one of them; one expected ``safe`` must violate none of them, nor L1.
SAFETY_CHECKS: Final = ("S1", "S2", "S3")
#: The protocol a run drives unless ``--protocol`` names another, as its import path.
BUILTIN_PROTOCOL: Final = "verifier.protocol:OwnershipProtocol"
#: How many violating job ids a report lists per check and run (the counts are complete).
MAX_JOBS_LISTED: Final = 10


def stable(value: Any) -> Any:
    """``value`` made JSON-ready and reproducible: floats rounded to :data:`DIGITS` places
    (``-0.0`` → ``0.0``; ``inf``/``nan`` → ``None``, which JSON cannot carry), tuples → lists,
    mapping keys → ``str`` (enum keys become their value)."""
    if isinstance(value, str):
        return str(value)  # a StrEnum (a Tier) becomes its plain value
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        rounded = round(value, DIGITS)
        return 0.0 if rounded == 0 else rounded
    if isinstance(value, Mapping):
        return {str(k): stable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [stable(v) for v in value]
    return str(value)


def dumps_report(report: Mapping[str, Any]) -> str:
    """The canonical text of a report: sorted keys, rounded floats, a final newline."""
    return json.dumps(stable(report), sort_keys=True, indent=2, allow_nan=False) + "\n"


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class RunSummary:
    """What a report keeps of one run (the history itself is dropped: a 100,000-job run
    records millions of records, and twelve chains would not fit in memory together)."""

    chain: str
    seed: int
    metrics: Any  # RunMetrics
    entry: dict[str, Any]
    first_violation: tuple[str, str] | None  # (check name, job) of the first safety violation
    first_bad_job: str | None  # the first job violating any check, L1 included


def _violations(checks: Mapping[str, CheckResult]) -> dict[str, Any]:
    return {
        name: {"violations": c.violations, "jobs": list(c.jobs[:MAX_JOBS_LISTED]),
               "examples": list(c.examples)}
        for name, c in sorted(checks.items()) if not c.ok
    }


def summarize_run(result: RunResult) -> RunSummary:
    """The per-seed entry of the JSON report, and what replay needs to find a bad job."""
    entry: dict[str, Any] = {"seed": result.seed}
    entry.update(result.metrics.to_dict())
    entry["sim_time"] = result.sim_time
    entry["outcomes"] = dict(sorted(result.outcomes.items()))
    entry["violations"] = _violations(result.checks)
    first: tuple[str, str] | None = None
    for name in SAFETY_CHECKS:
        check = result.checks.get(name)
        if check is not None and check.jobs and (first is None or check.jobs[0] < first[1]):
            first = (name, check.jobs[0])
    bad = sorted(c.jobs[0] for c in result.checks.values() if c.jobs)
    return RunSummary(result.chain, result.seed, result.metrics, entry, first,
                      bad[0] if bad else None)


def timing_problems(scenario: Scenario) -> list[str]:
    """Why ``scenario`` is outside the timing model the hardened chain assumes: each fault it
    allows beyond the model's bounds, then each inconsistency of its timings (the lease
    budget); empty inside it."""
    return [*scenario.outside_model(), *scenario.timing_model().problems()]


def safety_violations(metrics_dict: Mapping[str, Any]) -> int:
    """S1 + S2 + S3 violations in a metrics or aggregate dictionary."""
    return sum(int(metrics_dict.get(f"{name.lower()}_violations") or 0)
               for name in SAFETY_CHECKS)


def replay_for(ref: str, chain: str, seed: int, job: str | None = None,
               overrides: Mapping[str, Any] | None = None, *,
               protocol: str = BUILTIN_PROTOCOL) -> str:
    """:func:`sim._runner.replay_command`, plus ``--protocol`` when the run drove another
    protocol than the built-in one: without it the replay would rerun the built-in protocol
    and not reproduce the run."""
    command = replay_command(ref, chain, seed, job, dict(overrides or {}))
    if protocol != BUILTIN_PROTOCOL:
        command += " --protocol " + shlex.quote(protocol)
    return command


def chain_replay(ref: str, chain: str, runs: Sequence[RunSummary],
                 overrides: Mapping[str, Any], *,
                 protocol: str = BUILTIN_PROTOCOL) -> tuple[str, bool]:
    """The replay command for a chain: its first run with a safety violation, at the first
    violating job; else its first run. Also whether a violation was found."""
    for run in runs:
        if run.first_violation is not None:
            job = run.first_violation[1]
            return replay_for(ref, chain, run.seed, job, overrides, protocol=protocol), True
    return replay_for(ref, chain, runs[0].seed, None, overrides, protocol=protocol), False


def build_run_report(*, scenario: Scenario, ref: str, overrides: Mapping[str, Any],
                     seeds: Sequence[int], runs: Mapping[str, Sequence[RunSummary]],
                     command: str, protocol: str = BUILTIN_PROTOCOL) -> dict[str, Any]:
    """The JSON report of ``run``: scenario, protocol, seeds, per chain the pooled aggregate,
    its runs and its replay command; the top-level replay points at the first chain (in the
    order given) that violated a safety property, or at the first chain. ``protocol`` is the
    import path of the protocol the runs drove; every replay command names it unless it is
    the built-in one."""
    chains: dict[str, Any] = {}
    top: str | None = None
    for chain, chain_runs in runs.items():
        entry = aggregate([r.metrics for r in chain_runs])
        entry["runs"] = [r.entry for r in chain_runs]
        entry["replay"], violated = chain_replay(ref, chain, chain_runs, overrides,
                                                 protocol=protocol)
        chains[chain] = entry
        if top is None and violated:
            top = entry["replay"]
    if top is None and chains:
        top = next(iter(chains.values()))["replay"]
    # Inside the model means no reason to be outside it (the definition of timing_problems):
    # a scenario whose timings the hardened chain cannot keep a healthy lease in said
    # "inside_model": true beside its timing problems (adversarial review of the figures).
    problems = timing_problems(scenario)
    return {
        "scenario": scenario.to_dict(),
        "scenario_ref": ref,
        "protocol": protocol,
        "overrides": dict(overrides),
        "inside_model": not problems,
        "timing_problems": problems,
        "seed": seeds[0],
        "seeds": list(seeds),
        "chains": chains,
        "replay": top,
        "command": command,
        "interval": MEAN_INTERVALS,
    }


# --------------------------------------------------------------------------- CSV


def csv_rows(rows: Iterable[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Flattened rows and the union of their columns.

    Nested metrics (``api_calls``) become ``api_calls.<tier>`` columns, placed where the
    metric is and sorted, so a tier that only some chains call does not move the columns.
    Top-level columns keep their first-seen order (chain/seed order, metric field order).
    """
    rows = list(rows)
    order: dict[str, set[str] | None] = {}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, Mapping):
                known = order.get(key)
                subs: set[str] = set() if known is None else known
                subs.update(str(k) for k in value)
                order[key] = subs
            else:
                order.setdefault(key, None)
    columns: list[str] = []
    for key, nested in order.items():
        columns.extend([key] if nested is None else [f"{key}.{s}" for s in sorted(nested)])
    flat: list[dict[str, Any]] = []
    for row in rows:
        out: dict[str, Any] = {}
        for key, value in row.items():
            if isinstance(value, Mapping):
                out.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                out[key] = value
        flat.append(out)
    return columns, flat


def _cell(value: Any) -> Any:
    value = stable(value)
    if value is None:
        return ""
    if isinstance(value, list):
        if all(v is None for v in value):
            return ""  # an undefined interval, as every missing value (not "None None")
        return " ".join("" if v is None else str(v) for v in value)
    return value


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write rows (one per chain × seed, or grid point × chain × seed); returns the count."""
    columns, flat = csv_rows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in flat:
            writer.writerow({k: _cell(v) for k, v in row.items()})
    return len(flat)


# --------------------------------------------------------------------------- the table


def _num(digits: int, scale: float = 1.0) -> Callable[[Any], str]:
    def fmt(value: Any) -> str:
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            return "-"
        return f"{value * scale:.{digits}f}"
    return fmt


def _int(value: Any) -> str:
    return "-" if value is None else str(value)


def with_ci(name: str, digits: int = 1, scale: float = 1.0, suffix: str = ""
            ) -> Callable[[Mapping[str, Any]], str]:
    """A figure and its ``<name>_ci`` interval: ``12.5 [3.1, 21.9]`` (``-`` when absent)."""
    def fmt(row: Mapping[str, Any]) -> str:
        value = row.get(name)
        if value is None:
            return "-"
        ci = row.get(f"{name}_ci") or [None, None]
        text = f"{value * scale:.{digits}f}{suffix}"
        if ci[0] is None or ci[1] is None:
            return text
        return f"{text} [{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"
    return fmt


def _rate(row: Mapping[str, Any]) -> str:
    """Race prevention, and on how many seeds it rests when some had no offer made (a mean of
    4 seeds under a header of 6 read as 6: a review of the figures, session 37)."""
    if row.get("race_prevention_rate") is None:
        return "- (none made)"
    text = with_ci("race_prevention_rate", 1, 100.0, "%")(row)
    n, runs = row.get("race_prevention_rate_n"), row.get("runs")
    if isinstance(n, int) and isinstance(runs, int) and n < runs:
        text += f" ({n} of {runs} seeds)"
    return text


#: (header, how to render a chain's aggregate row). Keys absent from a row render as ``-``.
#: Every header is defined in :data:`sim._columns.TABLE_HEADERS`.
TABLE_COLUMNS: Final[tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...]] = (
    ("jobs", lambda r: _int(r.get("jobs"))),
    ("planned doubles", lambda r: _int(r.get("planned_double"))),
    ("realised doubles", lambda r: _int(r.get("realised_double"))),
    ("twice at once/1k [95% CI]", with_ci("overlapping_per_1000")),
    ("S1", lambda r: _int(r.get("s1_violations"))),
    ("S2", lambda r: _int(r.get("s2_violations"))),
    ("S3", lambda r: _int(r.get("s3_violations"))),
    ("L1", lambda r: _int(r.get("l1_violations"))),
    ("race prevention [95% CI]", _rate),
    ("restarts/1k", lambda r: _num(1)(r.get("restarts_per_1000"))),
    ("re-encodes/1k", lambda r: _num(1)(r.get("reencodes_per_1000"))),
    ("wasted enc-h", lambda r: _num(2, 1 / 3600)(r.get("wasted_encode_s"))),
    ("lost/stuck", lambda r: _int(r.get("lost_or_stuck"))),
    ("start p50 s", lambda r: _num(1)(r.get("start_latency_p50"))),
    ("start p99 s", lambda r: _num(1)(r.get("start_latency_p99"))),
    ("jobs/h", lambda r: _num(1)(r.get("throughput_jobs_per_hour"))),
)


def format_table(rows: Sequence[tuple[str, Mapping[str, Any]]], label: str = "chain",
                 columns: Sequence[tuple[str, Callable[[Mapping[str, Any]], str]]]
                 = TABLE_COLUMNS) -> str:
    """A plain-text table, one row per ``(label, aggregate)``; numbers right-aligned."""
    header = [label, *(h for h, _ in columns)]
    body = [[name, *(fmt(row) for _, fmt in columns)] for name, row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(cells) for cells in body)])


# --------------------------------------------------------------------------- progress


class Progress:
    """A plain-text progress bar on stderr for runs longer than a second.

    Silent for the first second (a short run should print nothing but its report), then
    redrawn in place on a terminal, or as occasional lines when forced on a pipe or a log
    (``--progress``). It reads the wall clock, which is why it never writes to a report.
    """

    WIDTH: Final = 30

    def __init__(self, total: int, *, enabled: bool, stream: TextIO,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.stream = stream
        self.clock = clock
        self.started = clock()
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.drawn = False
        self._last = -math.inf

    def update(self, done_runs: float, label: str) -> None:
        """``done_runs`` runs of ``total`` are done (fractional: a run in progress)."""
        if not self.enabled:
            return
        now = self.clock()
        if now - self.started < 1.0:
            return
        if not self.tty and now - self._last < 5.0 and done_runs < self.total:
            return  # a log gets a line every few seconds, not a line per update
        self._last = now
        fraction = min(max(done_runs / self.total, 0.0), 1.0)
        filled = round(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        text = f"[{bar}] {fraction * 100:3.0f}%  {label}  ({now - self.started:.0f} s)"
        if self.tty:
            self.stream.write("\r" + text[:160].ljust(80))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.drawn = True

    def finished(self, done_runs: int, label: str) -> None:
        """One run (a chain and a seed) is done: always a line of its own, never throttled,
        so a log shows every finished run; the bar, if any, is redrawn by the next update."""
        if not self.enabled:
            return
        now = self.clock()
        if now - self.started < 1.0:
            return
        self._last = now
        text = f"[{done_runs}/{self.total}] {label}  ({now - self.started:.0f} s)"
        self.stream.write(("\r" + text.ljust(80) if self.tty else text) + "\n")
        self.stream.flush()
        self.drawn = False  # the line ended: nothing left to close

    def close(self) -> None:
        if self.enabled and self.drawn and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def make_out_dir(out_dir: Path) -> None:
    """Create ``--out`` before the runs, once the inputs are known to be valid: a folder that
    cannot be made used to fail only after every run had finished (researcher review,
    session 15)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: {exc.strerror or exc}") from None

"""``research``: every research figure of the README from one command, with paired intervals.

``python -m sim research --seeds 10 --out DIR`` runs, on the same seeds (common random
numbers, :mod:`sim._rng`: every chain of a seed faces the same offered world):

``research`` (``research.csv``)
    per chain, on the default scenario and a held-out one (``3speak-2026``): jobs processed by
    two encoders at once per 1,000 jobs with its interval, its paired difference to a baseline
    chain (``--baseline``, default ``trust-gateway``) with its interval, and the other figures;
``cost`` (``cost.csv``)
    the cost of safety: each chain's throughput and time to start against ``trust-gateway`` on
    the same worlds (paired), on both scenarios and on the held-out one with every community
    node reading the monitor (``<held-out>+monitor``: a node with no tier that can prove
    ownership never takes a job under the hardened chain, so the held-out fleet's nodes without
    the monitor are a cost of the fleet's configuration, not of the protocol's waits);
``lie_rate`` (``lie_rate.csv``, ``lie_rate.png``)
    duplicate processing against the double hand-out rate (``lie_rate``), per chain;
``ablation`` (``ablation.csv``, ``ablation.png``)
    ``hardened`` and each ``hardened-without-<step>`` on the ``ablation`` scenario (the
    ``default`` one when no ``ablation`` scenario is installed), each paired with ``hardened``;
``sensitivity`` (``sensitivity.csv``, ``sensitivity.png``)
    the documented chain's lost or stuck jobs against the monitor's lag: every monitor read
    sees the job as it was ``min(Exp(monitor_lag_mean), Δ)`` ago, so the x axis is the
    exponential's mean parameter, from 0 to Δ (``monitor_lag``), and the realised mean lag,
    ``μ(1 − e^(−Δ/μ))``, is shown beside it: how much of that figure rests on the assumed lag
    distribution.

Also ``runs.csv`` (every run's metrics), ``research.json`` (everything, with the command) and
``research.txt`` (the tables as printed). Every column is defined in :mod:`sim._columns` and
in ``--help``. Runs execute on :mod:`sim._executors` (local processes or Dask); a run that
several figures share (the default scenario's runs are also a lie-rate point and a lag point)
runs once. The outputs are pure functions of the command line: the same bytes every time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ._columns import INTERVALS
from ._executors import Task, execute
from ._metrics import RunMetrics, aggregate, paired_difference
from ._report import (
    Progress,
    _num,
    _rate,
    dumps_report,
    format_table,
    make_out_dir,
    with_ci,
    write_csv,
)
from ._runner import replay_command
from ._scenario import Scenario, ScenarioError
from ._scenario_files import UsageError, apply_overrides, load_scenario, scenario_names
from ._sweep import _positions, _save, band, line_plot

__all__ = ["ABLATION_PREFIX", "ResearchPlan", "run_research"]

ABLATION_PREFIX: Final = "hardened-without-"
#: The figures every paired comparison reports (chain − baseline on the same seeds).
PAIRED: Final = (
    "overlapping_per_1000", "race_prevention_rate", "restarts_per_1000", "reencodes_per_1000",
    "s3_per_1000", "wasted_encode_h_per_1000", "lost_or_stuck_per_1000", "throughput_jobs_per_hour",
    "start_latency_p50",
)
#: What an ablation row can show, and how its "excludes 0" column names it.
SHOWN: Final = (("overlapping_per_1000", "twice"), ("lost_or_stuck_per_1000", "lost"),
                ("s3_per_1000", "S3"))
#: The monitor's mean lag as fractions of Δ: the sensitivity plot's x axis.
LAG_FRACTIONS: Final = (0.0, 0.02, 0.04, 0.1, 0.2, 0.4, 1.0)
DEFAULT_LIE_RATES: Final = (0.0, 0.05, 0.1, 0.2, 0.3)
COST_BASELINE: Final = "trust-gateway"
SENSITIVITY_CHAIN: Final = "documented"


@dataclass(frozen=True)
class ResearchPlan:
    """What one ``research`` command runs."""

    seeds: list[int]
    chains: list[str]  # the research table's chains (the baseline and trust-gateway included)
    baseline: str
    held_out: str
    ablation_chains: list[str]
    lie_rates: list[float]
    lag_means: list[float] | None  # None: LAG_FRACTIONS of the default scenario's Δ
    overrides: dict[str, Any]


def _scenario(name: str, overrides: Mapping[str, Any]) -> Scenario:
    return apply_overrides(load_scenario(name), overrides)


def _key(scenario: Scenario, chain: str, seed: int) -> str:
    return json.dumps([scenario.to_dict(), chain, seed], sort_keys=True)


class _Runs:
    """Tasks by study, executed once each, then handed back per (study cell) in seed order."""

    def __init__(self, seeds: list[int]) -> None:
        self.seeds = seeds
        self.tasks: list[Task] = []
        self.index: dict[str, int] = {}
        self.cells: list[tuple[str, str, dict[str, Any], str, Scenario]] = []
        self.results: list[RunMetrics] = []
        #: Per task: the scenario reference it was built from (a name or a file).
        self.refs: list[str] = []
        self._bases: dict[str, dict[str, Any]] = {}  # each reference loaded once

    def add(self, study: str, label: str, params: dict[str, Any], chain: str,
            scenario: Scenario, ref: str) -> None:
        self.cells.append((study, label, params, chain, scenario))
        for seed in self.seeds:
            key = _key(scenario, chain, seed)
            if key not in self.index:
                self.index[key] = len(self.tasks)
                self.tasks.append((scenario, chain, seed))
                self.refs.append(ref)

    def replay(self, task: int) -> str:
        """The command that replays task ``task``: its scenario reference, with every
        parameter that differs from it as ``--set`` (researcher review, session 15: runs.csv
        named scenarios such as ``3speak-2026+monitor`` that no command loads)."""
        scenario, chain, seed = self.tasks[task]
        ref = self.refs[task]
        if ref not in self._bases:
            self._bases[ref] = load_scenario(ref).to_dict()
        base = self._bases[ref]
        changed = {k: v for k, v in scenario.to_dict().items() if k != "name" and base[k] != v}
        return replay_command(ref, chain, seed, overrides=changed)

    def of(self, scenario: Scenario, chain: str) -> list[RunMetrics]:
        return [self.results[self.index[_key(scenario, chain, seed)]] for seed in self.seeds]


def _paired(runs: list[RunMetrics], base: list[RunMetrics],
            figures: Sequence[str] = PAIRED) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in figures:
        pair = paired_difference([getattr(m, name) for m in runs],
                                 [getattr(m, name) for m in base], name=name)
        out[name] = pair["diff"]
        out[f"{name}_ci"] = pair["ci"]
        out[f"{name}_n"] = pair["n"]  # the pairs behind it: seeds where both are defined
    out["n"] = len(runs)
    return out


def _diff(group: str, name: str, digits: int = 1, scale: float = 1.0
          ) -> Callable[[Mapping[str, Any]], str]:
    def fmt(row: Mapping[str, Any]) -> str:
        values = row.get(group)
        if not isinstance(values, Mapping) or values.get(name) is None:
            return "-"
        return with_ci(name, digits, scale)(values) if values.get(f"{name}_ci") else "-"
    return fmt


def _excludes_zero(group: str) -> Callable[[Mapping[str, Any]], str]:
    """The figures whose paired interval excludes zero; ``n/a`` when no figure has the two
    pairs an interval needs; a zero-width interval (every seed gave the same difference)
    excludes nothing by spread, so it is flagged ``(0-width)`` rather than claimed."""
    def fmt(row: Mapping[str, Any]) -> str:
        values = row.get(group) or {}
        shown, measured = [], False
        for name, label in SHOWN:
            if (values.get(f"{name}_n") or 0) < 2:
                continue
            measured = True
            lo, hi = (values.get(f"{name}_ci") or [None, None])[:2]
            if lo is None or hi is None:
                continue
            if lo == hi:
                if lo != 0:
                    shown.append(f"{label} (0-width)")
            elif lo > 0 or hi < 0:
                shown.append(label)
        if not measured:
            return "n/a"
        return ", ".join(shown) or "none"
    return fmt


def _field(name: str, digits: int = 1) -> Callable[[Mapping[str, Any]], str]:
    return lambda row: _num(digits)(row.get(name))


RESEARCH_COLUMNS: Final = (
    ("twice at once/1k [95% CI]", with_ci("overlapping_per_1000")),
    ("vs baseline/1k [95% CI]", _diff("vs_baseline", "overlapping_per_1000")),
    ("race prevention [95% CI]", _rate),
    ("restarts/1k", _field("restarts_per_1000")),
    ("re-encodes/1k", _field("reencodes_per_1000")),
    ("wasted enc-h/1k", _field("wasted_encode_h_per_1000", 2)),
    ("lost/stuck/1k [95% CI]", with_ci("lost_or_stuck_per_1000")),
    ("jobs/h", _field("throughput_jobs_per_hour")),
    ("start p50 s", _field("start_latency_p50")),
)
ABLATION_COLUMNS: Final = (
    ("twice at once/1k [95% CI]", with_ci("overlapping_per_1000")),
    ("vs hardened/1k [95% CI]", _diff("vs_hardened", "overlapping_per_1000")),
    ("lost/stuck/1k [95% CI]", with_ci("lost_or_stuck_per_1000")),
    ("S3/1k [95% CI]", with_ci("s3_per_1000")),
    ("excludes 0", _excludes_zero("vs_hardened")),
    ("restarts/1k", _field("restarts_per_1000")),
    ("re-encodes/1k", _field("reencodes_per_1000")),
    ("jobs/h", _field("throughput_jobs_per_hour")),
)
COST_COLUMNS: Final = (
    ("jobs/h [95% CI]", with_ci("throughput_jobs_per_hour")),
    ("Δ jobs/h [95% CI]", _diff("vs_baseline", "throughput_jobs_per_hour")),
    ("Δ jobs/h %", _field("throughput_change_pct")),
    ("start p50 s [95% CI]", with_ci("start_latency_p50")),
    ("Δ start p50 s [95% CI]", _diff("vs_baseline", "start_latency_p50")),
)
LIE_COLUMNS: Final = (
    ("lie_rate", lambda r: f"{r['lie_rate']:g}"),
    ("twice at once/1k [95% CI]", with_ci("overlapping_per_1000")),
    ("race prevention [95% CI]", _rate),
)
SENSITIVITY_COLUMNS: Final = (
    ("monitor lag mean s", lambda r: f"{r['monitor_lag_mean']:g}"),
    ("realised lag mean s", _field("monitor_lag_realised_mean", 2)),
    ("lost/stuck/1k [95% CI]", with_ci("lost_or_stuck_per_1000")),
    ("twice at once/1k [95% CI]", with_ci("overlapping_per_1000")),
    ("jobs/h", _field("throughput_jobs_per_hour")),
)


def realised_lag_mean(mean: float, cap: float) -> float:
    """The mean of ``min(Exp(mean), cap)``: ``mean · (1 − e^(−cap/mean))`` (0 for mean 0)."""
    return mean * -math.expm1(-cap / mean) if mean > 0 else 0.0


def _row(study: str, scenario: Scenario, chain: str, runs: list[RunMetrics],
         extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"study": study, "scenario": scenario.name, "chain": chain}
    row.update(extra or {})
    agg = aggregate(runs)
    agg.pop("api_calls", None)  # per-run detail: in runs.csv
    row.update(agg)
    return row


def run_research(plan: ResearchPlan, *, workers: int, executor: str, out_dir: Path,
                 progress: Progress, command: str) -> str:
    """Run every figure's tasks, write the files, return the printed tables."""
    default = _scenario("default", plan.overrides)
    try:
        held = _scenario(plan.held_out, plan.overrides)
    except (UsageError, ScenarioError) as exc:
        raise UsageError(f"--held-out: {exc}") from None
    if held.name == default.name:
        # Rows are told apart by scenario name: two scenarios of one name would be mixed into
        # one table without a word (researcher review, session 15: a copy of default.toml).
        raise UsageError(f"--held-out {plan.held_out}: the held-out scenario is named "
                         f"{held.name!r}, like the default scenario; give it its own name "
                         "(name = \"...\" in the file, or a file of another name)")
    has_ablation = "ablation" in scenario_names()
    ablation = _scenario("ablation", plan.overrides) if has_ablation else default
    if plan.ablation_chains and held.name == ablation.name and held != ablation:
        # The same trap with the ablation's name (adversarial review of the figures: a
        # variant saved as other/ablation.toml): research.json's scenarios kept one of the
        # two under that name, the held-out's parameters were nowhere, and its rows in
        # research.csv and runs.csv read as the ablation scenario's.
        raise UsageError(f"--held-out {plan.held_out}: the held-out scenario is named "
                         f"{held.name!r}, like the ablation scenario, with other parameters; "
                         "give it its own name (name = \"...\" in the file, or a file of "
                         "another name)")
    delta = default.monitor_lag
    lags = plan.lag_means if plan.lag_means is not None else [
        round(f * delta, 6) for f in LAG_FRACTIONS]
    if any(not 0 <= lag <= delta for lag in lags):
        raise UsageError(f"--lag-means: every mean lag must be in [0, Δ = {delta:g}]")
    # Every community node on the monitor (the verifier's default configuration: it reads the
    # public monitor unless told otherwise), trust-gateway and hardened only (the expensive runs).
    fleet = held.replace(name=f"{held.name}+monitor", monitor_fraction=1.0)
    fleet_chains = [c for c in (COST_BASELINE, "hardened") if c in plan.chains]
    lie_points = [apply_overrides(default, {"lie_rate": r}, source="--lie-rates")
                  for r in plan.lie_rates]
    lag_points = [apply_overrides(default, {"monitor_lag_mean": lag}, source="--lag-means")
                  for lag in lags]

    runs = _Runs(plan.seeds)
    for scenario in (default, held):
        for chain in plan.chains:
            runs.add("research", scenario.name, {}, chain, scenario,
                     "default" if scenario is default else plan.held_out)
    for chain in fleet_chains:
        runs.add("cost", fleet.name, {"monitor_fraction": 1.0}, chain, fleet, plan.held_out)
    for rate, scenario in zip(plan.lie_rates, lie_points, strict=True):
        for chain in plan.chains:
            runs.add("lie_rate", default.name, {"lie_rate": rate}, chain, scenario, "default")
    for chain in plan.ablation_chains:
        runs.add("ablation", ablation.name, {}, chain, ablation,
                 "ablation" if has_ablation else "default")
    for lag, scenario in zip(lags, lag_points, strict=True):
        runs.add("sensitivity", default.name, {"monitor_lag_mean": lag}, SENSITIVITY_CHAIN,
                 scenario, "default")

    make_out_dir(out_dir)
    progress.total = max(len(runs.tasks), 1)

    def done(count: int, task: Task) -> None:
        progress.finished(count, f"{task[0].name} {task[1]} seed {task[2]}: done")

    runs.results = execute(runs.tasks, executor=executor, workers=workers, on_done=done)
    progress.close()

    research: list[dict[str, Any]] = []
    cost: list[dict[str, Any]] = []
    cost_worlds = [(default, plan.chains), (held, plan.chains)]
    if COST_BASELINE in fleet_chains:
        cost_worlds.append((fleet, fleet_chains))
    for scenario, _ in cost_worlds[:2]:
        base = runs.of(scenario, plan.baseline)
        for chain in plan.chains:
            research.append(_row("research", scenario, chain, runs.of(scenario, chain),
                                 {"baseline": plan.baseline,
                                  "vs_baseline": _paired(runs.of(scenario, chain), base)}))
    for scenario, chains in cost_worlds:
        trusting = runs.of(scenario, COST_BASELINE)
        trust_mean = aggregate(trusting)["throughput_jobs_per_hour"]
        for chain in chains:
            ms = runs.of(scenario, chain)
            vs = _paired(ms, trusting, ("throughput_jobs_per_hour", "start_latency_p50"))
            row = _row("cost", scenario, chain, ms, {"baseline": COST_BASELINE,
                                                     "vs_baseline": vs})
            row["throughput_change_pct"] = (
                vs["throughput_jobs_per_hour"] / trust_mean * 100.0
                if trust_mean and vs["throughput_jobs_per_hour"] is not None else None)
            cost.append(row)
    lie: list[dict[str, Any]] = []
    for rate, scenario in zip(plan.lie_rates, lie_points, strict=True):
        for chain in plan.chains:
            lie.append(_row("lie_rate", scenario, chain, runs.of(scenario, chain),
                            {"lie_rate": rate}))
    abl: list[dict[str, Any]] = []
    hardened = runs.of(ablation, "hardened") if "hardened" in plan.ablation_chains else None
    for chain in plan.ablation_chains:
        ms = runs.of(ablation, chain)
        extra = {"vs_hardened": _paired(ms, hardened)} if hardened is not None else {}
        abl.append(_row("ablation", ablation, chain, ms, extra))
    sens: list[dict[str, Any]] = []
    for lag, scenario in zip(lags, lag_points, strict=True):
        sens.append(_row("sensitivity", scenario, SENSITIVITY_CHAIN,
                         runs.of(scenario, SENSITIVITY_CHAIN),
                         {"monitor_lag_mean": lag,
                          "monitor_lag_realised_mean": round(realised_lag_mean(lag, delta), 6)}))

    seeds = (f"{plan.seeds[0]}" if len(plan.seeds) == 1
             else f"{plan.seeds[0]}..{plan.seeds[-1]}")
    head = (f"research figures: seeds {seeds} ({len(plan.seeds)} per figure), "
            f"{len(runs.tasks)} runs; baseline {plan.baseline}")
    sections = [head, INTERVALS, ""]

    def table(title: str, rows: list[dict[str, Any]], columns: Any) -> None:
        sections.extend([title, format_table([(r["chain"], r) for r in rows],
                                             columns=columns), ""])

    for scenario in (default, held):
        label = "held-out scenario" if scenario is held else "scenario"
        table(f"Research table, {label} {scenario.name} "
              f"({scenario.encoders} encoders, {scenario.jobs} jobs, lie_rate "
              f"{scenario.lie_rate:g}); baseline {plan.baseline}",
              [r for r in research if r["scenario"] == scenario.name], RESEARCH_COLUMNS)
    for scenario, _ in cost_worlds:
        table(f"Cost of safety, scenario {scenario.name}: against {COST_BASELINE} on the "
              "same worlds", [r for r in cost if r["scenario"] == scenario.name],
              COST_COLUMNS)
    if abl:  # not with --no-ablation: no empty table
        table(f"Ablation, scenario {ablation.name}"
              + ("" if has_ablation else " (no ablation scenario installed: the default one)")
              + "; paired with hardened", abl, ABLATION_COLUMNS)
    table(f"Duplicate processing against the double hand-out rate (lie_rate), scenario "
          f"{default.name}", lie, LIE_COLUMNS)
    table(f"Sensitivity, scenario {default.name}, chain {SENSITIVITY_CHAIN}: the monitor's "
          f"lag on every read, min(Exp(mean), Δ), its mean parameter from 0 to Δ = {delta:g} s "
          f"(assumed in the scenario: {default.monitor_lag_mean:g} s), and the realised mean "
          "lag", sens, SENSITIVITY_COLUMNS)
    text = "\n".join(sections).rstrip() + "\n"

    run_rows = []
    for number, (task, metrics) in enumerate(zip(runs.tasks, runs.results, strict=True)):
        scenario, chain, seed = task
        run_rows.append({"scenario": scenario.name, "lie_rate": scenario.lie_rate,
                         "monitor_lag_mean": scenario.monitor_lag_mean, "chain": chain,
                         "seed": seed, **metrics.to_dict(), "replay": runs.replay(number)})
    report = {
        "command": command,
        "interval": INTERVALS,
        "seeds": plan.seeds,
        "baseline": plan.baseline,
        "held_out": held.name,
        "ablation_scenario": ablation.name,
        "overrides": plan.overrides,
        # Every parameter of every scenario run, --set included: a built-in TOML changed
        # later must leave a trace (researcher review, session 15).
        "scenarios": {sc.name: sc.to_dict() for sc in (default, held, ablation, fleet)},
        "tables": {"research": research, "cost": cost, "ablation": abl, "lie_rate": lie,
                   "sensitivity": sens},
    }
    try:
        files = {"research.csv": research, "cost.csv": cost, "ablation.csv": abl,
                 "lie_rate.csv": lie, "sensitivity.csv": sens, "runs.csv": run_rows}
        if not abl:
            del files["ablation.csv"]  # --no-ablation
            for stale in ("ablation.csv", "ablation.png"):
                # An earlier run's, of other seeds, must not pass for this run's.
                (out_dir / stale).unlink(missing_ok=True)
        for name, rows in files.items():
            write_csv(out_dir / name, rows)
        (out_dir / "research.json").write_text(dumps_report(report), encoding="utf-8")
        (out_dir / "research.txt").write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: {exc.strerror or exc}") from None
    written = [*files, "research.json", "research.txt"]
    written += _plots(out_dir, plan, runs, lie_points, ablation, lag_points, lags, seeds)
    return text + "\n" + "\n".join(f"wrote {out_dir / name}" for name in written)


def _ablation_plot(figure: Any, out_dir: Path, chains: list[str],
                   runs: list[list[RunMetrics]], where: str) -> str:
    """Three panels, one per property a step can protect: jobs processed twice at once
    (S2), jobs lost or stuck (L1), commits violating S3; mean over seeds, 95% t interval."""
    fig = figure(figsize=(12, 1.5 + 0.45 * len(chains)), layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    panels = (("overlapping_per_1000", "processed twice at once\nper 1,000 jobs"),
              ("lost_or_stuck_per_1000", "lost or stuck\nper 1,000 jobs"),
              ("s3_per_1000", "S3-violating commits\nper 1,000 jobs"))
    ys = list(range(len(chains)))
    for ax, (name, label) in zip(axes, panels, strict=True):
        stats = [band([getattr(m, name) for m in ms], ceiling=1000.0) for ms in runs]
        means = [0.0 if s[0] != s[0] else s[0] for s in stats]
        # No interval (one seed): NaN, so that no bar, not even a zero-width one, is drawn.
        lows = [max(0.0, m - s[1]) if s[1] == s[1] else math.nan
                for m, s in zip(means, stats, strict=True)]
        highs = [max(0.0, s[2] - m) if s[2] == s[2] else math.nan
                 for m, s in zip(means, stats, strict=True)]
        ax.barh(ys, means, xerr=[lows, highs], capsize=2, color="#4c72b0",
                error_kw={"linewidth": 0.8})
        ax.set_xlabel(label)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(ys, chains, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(f"Ablation: what each hardening step prevents ({where}; mean over seeds, "
                 "95% t interval)")
    return _save(fig, out_dir, "ablation.png")


def _plots(out_dir: Path, plan: ResearchPlan, runs: _Runs, lie_points: list[Scenario],
           ablation: Scenario, lag_points: list[Scenario], lags: list[float],
           seeds: str) -> list[str]:
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is in the [sim] extra
        raise UsageError("research plots need matplotlib: pip install 'spk-ownership[sim]' "
                         "(the tables were written)") from None
    written = []
    xs: list[Any] = list(plan.lie_rates)
    positions, numeric = _positions(xs)
    stats = [[band([m.overlapping_per_1000 for m in runs.of(sc, chain)], ceiling=1000.0)
              for sc in lie_points] for chain in plan.chains]
    written.append(line_plot(
        Figure, out_dir, "lie_rate.png", list(plan.chains), xs, positions, numeric,
        "lie_rate (the share of assignments doubled)", stats,
        ylabel="jobs processed by two encoders at once per 1,000 jobs",
        title=f"Duplicate processing against the lie rate (default scenario, seeds {seeds};"
              "\nmean over seeds, 95% t interval)"))
    if plan.ablation_chains:
        written.append(_ablation_plot(Figure, out_dir, plan.ablation_chains,
                                      [runs.of(ablation, c) for c in plan.ablation_chains],
                                      f"scenario {ablation.name}, seeds {seeds}"))
    xs = list(lags)
    delta = lag_points[0].monitor_lag if lag_points else 0.0
    positions, numeric = _positions(xs)
    stats = [[band([m.lost_or_stuck_per_1000 for m in runs.of(sc, SENSITIVITY_CHAIN)],
                   ceiling=1000.0) for sc in lag_points]]
    written.append(line_plot(
        Figure, out_dir, "sensitivity.png", [SENSITIVITY_CHAIN], xs, positions, numeric,
        "monitor_lag_mean, s: the mean parameter of the monitor's lag min(Exp(mean), Δ), "
        "0 to Δ\n(realised mean lag, s: "
        + ", ".join(f"{realised_lag_mean(x, delta):.2g}" for x in lags) + ")", stats,
        ylabel="lost or stuck jobs per 1,000 jobs",
        title=f"Sensitivity of the documented chain's lost jobs to the assumed monitor lag"
              f"\n(default scenario, seeds {seeds}; mean over seeds, 95% t interval)"))
    return written

"""``sweep``: a grid of scenario parameters × chains × seeds, run in parallel, plotted.

Each task is one ``(scenario, chain, seed)``: a pure function of its arguments, so tasks can
run in any process in any order, on this machine or on a Dask cluster (``--executor``:
:mod:`sim._executors`). Results are collected in task order, so ``sweep.csv`` is the same file
whatever the number of workers and whichever executor ran them.

Plots (matplotlib, drawn on :class:`matplotlib.figure.Figure` objects directly, never through
``pyplot``: no display, no global figure state):

``duplicates.png``
    jobs processed by two encoders at once per 1,000 jobs (``overlapping_per_1000``) against
    the first grid key, one line per chain;
``race_prevention.png``
    the share of the double hand-outs the world made not processed twice at once;
``wasted.png``
    wasted encode-hours per 1,000 jobs per chain (bars, grouped by the first grid key);
``ablation.png``
    jobs processed by two encoders at once per 1,000 jobs for ``hardened`` and each
    ``hardened-without-<step>``: what each hardening step buys (only when ``hardened`` runs;
    an earlier sweep's ``ablation.png`` in ``--out`` is removed, and the summary says so).

Every band and error bar is the same interval: the mean over seeds with its 95% Student-t
interval (:func:`sim._metrics.t_interval`), as every table and report states.

With more than one grid key, the plots pool over the keys after the first (their titles say
so); ``sweep.csv`` and ``sweep.json`` keep every point apart.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Final

from ._columns import MEAN_INTERVALS
from ._executors import Task, execute
from ._metrics import RunMetrics, aggregate, t_interval
from ._report import Progress, dumps_report, format_table, make_out_dir, write_csv
from ._runner import replay_command
from ._scenario_files import RunPlan, UsageError, apply_overrides, parse_value

if TYPE_CHECKING:
    from matplotlib.axes import Axes


__all__ = ["Grid", "band", "parse_grid", "plot_sweep", "run_sweep"]

#: ``[(key, [values...]), ...]`` in the order given on the command line.
Grid = list[tuple[str, list[Any]]]
_ABLATION_PREFIX: Final = "hardened-without-"


def parse_grid(specs: Sequence[str]) -> Grid:
    """``["lie_rate=0,0.05,0.1"]`` → ``[("lie_rate", [0, 0.05, 0.1])]`` (values: TOML literals).

    Keys are checked against the scenario when the points are built; here only the shape.
    """
    grid: Grid = []
    seen: set[str] = set()
    for spec in specs:
        key, sep, rest = spec.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not rest.strip():
            raise UsageError(f"--grid {spec!r}: expected KEY=V1,V2,...")
        if key in seen:
            raise UsageError(f"--grid {key}: given twice")
        seen.add(key)
        values = [parse_value(v) for v in rest.split(",")]
        if any(isinstance(v, str) and not v for v in values):
            raise UsageError(f"--grid {spec!r}: an empty value")
        twice = sorted({repr(v) for v in values if values.count(v) > 1})
        if twice:
            # The same point twice would count its seeds twice in the plots' intervals
            # (researcher review, session 15): narrower than the runs justify.
            raise UsageError(f"--grid {key}: {', '.join(twice)} given twice")
        grid.append((key, values))
    return grid


def _points(grid: Grid) -> list[dict[str, Any]]:
    keys = [k for k, _ in grid]
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(values for _, values in grid))]


def _execute(tasks: list[Task], workers: int, progress: Progress,
             executor: str = "local") -> list[RunMetrics]:
    progress.total = max(len(tasks), 1)

    def done(count: int, task: Task) -> None:
        progress.finished(count, f"{task[1]} seed {task[2]}: done")

    return execute(tasks, executor=executor, workers=workers, on_done=done)


def _label(point: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items())


def run_sweep(plan: RunPlan, grid: Grid, *, workers: int, out_dir: Path, progress: Progress,
              command: str, executor: str = "local") -> str:
    """Run every task (on ``executor``: :mod:`sim._executors`), write ``sweep.csv``,
    ``sweep.json`` and the plots; return a summary."""
    clash = [k for k, _ in grid if k in plan.overrides]
    if clash:
        # The grid's value wins, yet sweep.json would record the other one as an override.
        raise UsageError(f"--grid {clash[0]}: also set by another option "
                         f"({clash[0]}={plan.overrides[clash[0]]!r}); the grid sweeps it")
    scenarios = [apply_overrides(plan.scenario, point, source="--grid")
                 for point in _points(grid)]
    # Each value as the scenario holds it (an integer parameter given 2.0 holds 2): the CSV,
    # the JSON, the plots and the replay commands then say what ran, and `encoders=2.0,3` writes
    # the same files as `encoders=2,3` (adversarial review of the operator tooling).
    points = [{k: getattr(sc, k) for k, _ in grid} for sc in scenarios]
    grid = [(k, list(dict.fromkeys(point[k] for point in points))) for k, _ in grid]
    make_out_dir(out_dir)
    tasks = [(sc, chain, seed) for sc in scenarios for chain in plan.chains
             for seed in plan.seeds]
    results = _execute(tasks, workers, progress, executor)
    progress.close()

    per_point = len(plan.chains) * len(plan.seeds)
    rows: list[dict[str, Any]] = []
    cells: list[tuple[dict[str, Any], str, list[RunMetrics]]] = []
    for p, point in enumerate(points):
        for c, chain in enumerate(plan.chains):
            start = p * per_point + c * len(plan.seeds)
            chunk = results[start:start + len(plan.seeds)]
            cells.append((point, chain, chunk))
            for seed, metrics in zip(plan.seeds, chunk, strict=True):
                rows.append({**{f"grid.{k}": v for k, v in point.items()}, "chain": chain,
                             "seed": seed, **metrics.to_dict(),
                             "replay": replay_command(plan.ref, chain, seed,
                                                      overrides={**plan.overrides, **point})})
    try:
        write_csv(out_dir / "sweep.csv", rows)
        report = {
            "scenario": plan.scenario.to_dict(),
            "scenario_ref": plan.ref,
            "overrides": plan.overrides,
            "grid": {k: v for k, v in grid},
            "chains": plan.chains,
            "seeds": plan.seeds,
            "points": [{"params": point, "chain": chain, **aggregate(chunk)}
                       for point, chain, chunk in cells],
            "command": command,
            "interval": MEAN_INTERVALS,
        }
        (out_dir / "sweep.json").write_text(dumps_report(report), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: {exc.strerror or exc}") from None
    x_key = grid[0][0] if grid else "lie_rate"
    plots = plot_sweep(cells, x_key=x_key, default_x=getattr(plan.scenario, x_key),
                       out_dir=out_dir, pooled=len(grid) > 1,
                       title=f"{plan.scenario.name}, seeds {plan.seeds[0]}..{plan.seeds[-1]}")
    table = format_table(
        [(f"{chain} {_label(point)}".strip(), aggregate(chunk)) for point, chain, chunk in cells]
    )
    files = ["sweep.csv", "sweep.json", *plots]
    lines = [f"wrote {out_dir / name}" for name in files]
    stale = [name for name in _PLOTS if name not in plots and (out_dir / name).is_file()]
    for name in stale:
        # An earlier sweep's plot beside this sweep's sweep.csv would be read as this sweep's
        # (a sweep without hardened writes no ablation.png: adversarial review of the
        # operator tooling); the data it drew were in the files just overwritten.
        try:
            (out_dir / name).unlink()
        except OSError as exc:
            raise UsageError(f"--out {out_dir}: cannot remove an earlier sweep's {name} "
                             f"({exc.strerror or exc})") from None
        lines.append(f"removed {out_dir / name}: an earlier sweep's, not drawn by this one")
    return table + "\n\n" + "\n".join(lines)


# --------------------------------------------------------------------------- plots


#: Every plot a sweep may draw (ablation.png only with hardened among the chains).
_PLOTS: Final = ("duplicates.png", "race_prevention.png", "wasted.png", "ablation.png")
#: The per-run figures the plots draw.
_PLOTTED: Final = ("overlapping_per_1000", "race_prevention_rate", "wasted_encode_h_per_1000")


def _by_x(cells: list[tuple[dict[str, Any], str, list[RunMetrics]]], x_key: str,
          default_x: Any) -> tuple[list[Any], dict[str, dict[int, list[Any]]]]:
    """Per chain per x value, one entry per seed (x values in order).

    With other grid keys, a seed's entry is the mean of its runs over their values: the
    interval is then over seeds, as everywhere else. Pooling the runs themselves (as before
    session 15) counted every seed once per other value, as if they were independent worlds,
    and made the intervals too narrow."""
    xs: list[Any] = []
    chunks: dict[str, dict[int, list[list[RunMetrics]]]] = {}
    for point, chain, chunk in cells:
        x = point.get(x_key, default_x)
        if x not in xs:
            xs.append(x)
        chunks.setdefault(chain, {}).setdefault(xs.index(x), []).append(chunk)
    return xs, {chain: {k: _seed_means(v) for k, v in by_x.items()}
                for chain, by_x in chunks.items()}


def _seed_means(chunks: list[list[RunMetrics]]) -> list[Any]:
    """One entry per seed: the run itself, or the mean of each plotted figure over the
    seed's runs (undefined values left out; None if none is defined)."""
    if len(chunks) == 1:
        return list(chunks[0])
    means = []
    for runs in zip(*chunks, strict=True):
        figures = {}
        for name in _PLOTTED:
            defined = [v for v in (getattr(m, name) for m in runs) if v is not None]
            figures[name] = sum(defined) / len(defined) if defined else None
        means.append(SimpleNamespace(**figures))
    return means


def _positions(xs: list[Any]) -> tuple[list[float], bool]:
    numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs)
    return ([float(x) for x in xs] if numeric else [float(i) for i in range(len(xs))]), numeric


def band(values: Sequence[float | None], scale: float = 1.0, floor: float | None = 0.0,
         ceiling: float | None = None) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the defined values, scaled, with the 95% t interval (the one
    interval method of every plot); NaN without values, and NaN bounds with one value: no
    interval is drawn where the tables print none (a zero-width bar read as certainty; a
    review of the figures, session 37). Clipped to ``[floor, ceiling]`` (a count per 1,000 is
    not negative)."""
    mean, lo, hi = t_interval([v for v in values if v is not None])
    if mean is None:
        return math.nan, math.nan, math.nan
    if lo is None or hi is None:
        return mean * scale, math.nan, math.nan
    if floor is not None:
        lo = max(lo, floor)
    if ceiling is not None:
        hi = min(hi, ceiling)
    return mean * scale, lo * scale, hi * scale


def _style(chain: str, index: int) -> dict[str, Any]:
    from matplotlib import colormaps

    # The first ten chains get tab20's strong shades (even indices), the rest its pale ones,
    # so the three headline chains never share a hue family.
    shade = 2 * index if index < 10 else 2 * (index - 10) + 1
    color = colormaps["tab20"](shade % 20)
    bold = chain in ("hardened", "documented", "trust-gateway")
    return {"color": color, "linewidth": 2.4 if bold else 1.2,
            "linestyle": "-" if bold or not chain.startswith(_ABLATION_PREFIX) else "--"}


def _axes_x(ax: Axes, xs: list[Any], positions: list[float], numeric: bool, x_key: str) -> None:
    ax.set_xlabel(x_key)
    if not numeric:
        ax.set_xticks(positions, [str(x) for x in xs])
    if len(positions) > 1:
        # Every plot spans every grid value, even where a chain has no point (no races at
        # lie_rate=0), so the plots of one sweep can be read side by side.
        pad = (max(positions) - min(positions)) * 0.03
        ax.set_xlim(min(positions) - pad, max(positions) + pad)
    ax.grid(True, alpha=0.3)


def plot_sweep(cells: list[tuple[dict[str, Any], str, list[RunMetrics]]], *, x_key: str,
               default_x: Any, out_dir: Path, title: str, pooled: bool = False) -> list[str]:
    """Draw the sweep's PNGs into ``out_dir``; returns the file names written."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is in the [sim] extra
        raise UsageError("sweep plots need matplotlib: pip install 'spk-ownership[sim]' "
                         "(sweep.csv and sweep.json were written)") from None
    xs, runs = _by_x(cells, x_key, default_x)
    positions, numeric = _positions(xs)
    chains = list(runs)
    suffix = f"\n({title}; pooled over the other grid keys)" if pooled else f"\n({title})"
    written: list[str] = []

    # Jobs processed by two encoders at once per 1,000 jobs: mean and 95% t band over seeds.
    written.append(line_plot(
        Figure, out_dir, "duplicates.png", chains, xs, positions, numeric, x_key,
        [[band([m.overlapping_per_1000 for m in runs[chain].get(k, [])], ceiling=1000.0)
          for k in range(len(xs))] for chain in chains],
        ylabel="jobs processed by two encoders at once per 1,000 jobs",
        title="Duplicate processing (mean over seeds, 95% t interval)" + suffix))

    # Race prevention: the share of the double hand-outs made not processed twice at once.
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for i, chain in enumerate(chains):
        rates, lows, highs = [], [], []
        for k in range(len(xs)):
            mean, lo, hi = band([m.race_prevention_rate for m in runs[chain].get(k, [])],
                                scale=100.0, ceiling=1.0)
            rates.append(mean)
            lows.append(lo)
            highs.append(hi)
        style = _style(chain, i)
        # Error bars as well as the band: a point between two grid values without races
        # (no rate) has no band to draw, but its interval is still the point's meaning.
        ax.errorbar(positions, rates, yerr=_yerr(rates, lows, highs), marker="o", capsize=3,
                    label=chain, **style)
        ax.fill_between(positions, lows, highs, color=style["color"], alpha=0.15, linewidth=0)
    ax.set_ylabel("race prevention, % of the double hand-outs made")
    ax.set_ylim(-2, 102)
    ax.set_title("Race prevention (mean over seeds, 95% t interval)" + suffix)
    _axes_x(ax, xs, positions, numeric, x_key)
    ax.legend(fontsize=7, ncols=2)
    written.append(_save(fig, out_dir, "race_prevention.png"))

    # Wasted encode-hours per 1,000 jobs, per chain, grouped by x.
    written.append(_bars(
        Figure, out_dir, "wasted.png", chains, xs, x_key, runs,
        stat=lambda ms: band([m.wasted_encode_h_per_1000 for m in ms]),
        xlabel="wasted encode-hours per 1,000 jobs (mean over seeds, 95% t interval)",
        title="Wasted work" + suffix))

    ablation = [c for c in chains if c == "hardened" or c.startswith(_ABLATION_PREFIX)]
    if ablation:
        written.append(_bars(
            Figure, out_dir, "ablation.png", ablation, xs, x_key, runs,
            stat=lambda ms: band([m.overlapping_per_1000 for m in ms], ceiling=1000.0),
            xlabel="jobs processed by two encoders at once per 1,000 jobs "
                   "(mean over seeds, 95% t interval)",
            title="Ablation: what each hardening step prevents" + suffix))
    return written


def line_plot(figure: Any, out_dir: Path, name: str, chains: list[str], xs: list[Any],
              positions: list[float], numeric: bool, x_key: str,
              stats: list[list[tuple[float, float, float]]], *, ylabel: str,
              title: str) -> str:
    """One line per chain through ``(mean, low, high)`` per x, with its interval as a band
    and as error bars (a point between two points without a value has no band)."""
    fig = figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for i, chain in enumerate(chains):
        means = [s[0] for s in stats[i]]
        lows = [s[1] for s in stats[i]]
        highs = [s[2] for s in stats[i]]
        style = _style(chain, i)
        ax.errorbar(positions, means, yerr=_yerr(means, lows, highs), marker="o", capsize=3,
                    label=chain, **style)
        ax.fill_between(positions, lows, highs, color=style["color"], alpha=0.15, linewidth=0)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _axes_x(ax, xs, positions, numeric, x_key)
    ax.legend(fontsize=7, ncols=2)
    return _save(fig, out_dir, name)


def _yerr(values: list[float], lows: list[float], highs: list[float]) -> list[list[float]]:
    """Asymmetric error bars from an interval: 0 where there is no value, NaN (nothing drawn,
    not even a cap) where a value has no interval."""
    below = [0.0 if math.isnan(v) else max(v - lo, 0.0) if not math.isnan(lo) else math.nan
             for v, lo in zip(values, lows, strict=True)]
    above = [0.0 if math.isnan(v) else max(hi - v, 0.0) if not math.isnan(hi) else math.nan
             for v, hi in zip(values, highs, strict=True)]
    return [below, above]


def _bars(figure: Any, out_dir: Path, name: str, chains: list[str], xs: list[Any], x_key: str,
          runs: dict[str, dict[int, list[RunMetrics]]], *, stat: Any,
          xlabel: str, title: str) -> str:
    """Horizontal bars (chain names are long), one group per chain, one bar per x value."""
    from matplotlib import colormaps

    height = 0.8 / max(len(xs), 1)
    fig = figure(figsize=(9, 1.5 + 0.45 * len(chains) * max(1, len(xs) * 0.6)),
                 layout="constrained")
    ax = fig.add_subplot()
    for k, x in enumerate(xs):
        ys, widths, errs_lo, errs_hi = [], [], [], []
        for c, chain in enumerate(chains):
            ms = runs[chain].get(k, [])
            ys.append(c + (k - (len(xs) - 1) / 2) * height)
            mean, lo, hi = stat(ms) if ms else (0.0, 0.0, 0.0)
            if math.isnan(mean):
                mean, lo, hi = 0.0, 0.0, 0.0
            widths.append(mean)
            errs_lo.append(math.nan if math.isnan(lo) else max(0.0, mean - lo))
            errs_hi.append(math.nan if math.isnan(hi) else max(0.0, hi - mean))
        ax.barh(ys, widths, height=height * 0.9, xerr=[errs_lo, errs_hi], capsize=2,
                color=colormaps["viridis"](k / max(len(xs) - 1, 1)),
                label=f"{x_key}={x}", error_kw={"linewidth": 0.8})
    ax.set_yticks(list(range(len(chains))), chains, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    if len(xs) > 1:
        ax.legend(fontsize=7)
    return _save(fig, out_dir, name)


def _save(fig: Any, out_dir: Path, name: str) -> str:
    # No "Software" metadata: the PNG depends on the data, not on the matplotlib version.
    fig.savefig(out_dir / name, dpi=100, metadata={"Software": None})
    return name

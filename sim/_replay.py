"""``replay``: rerun one seed of one chain, and show one job: its history, its violations, its
timeline.

A run is a pure function of ``(scenario, chain, seed)`` (or of a conformance counterexample's
tape), so replaying is simply running again; what this module adds is *focus*. It picks the
job worth looking at (the first job with a safety violation, then the first double-assigned
job, then the first lost or stuck job), prints that job's records with the fault windows, pauses and
crashes that overlap it (and not the run's other thousand), re-checks the job on its own
sub-history so every violation printed is about this job, and draws the timeline.

The timeline (``--png``) has one row per encoder that touched the job: claim → start as a
light bar, processing intervals as solid bars (coloured by how they ended: done, cancelled,
crash, never), cancel → stop as a red bar, pauses in grey, the answers to its claims,
verifications and finish requests as marks; world fault windows are shaded across all rows;
assignment writes, double hand-outs, requeues and commits are marked.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, TextIO

from verifier.protocol import OwnershipProtocol

from ._checkers import check_all, double_assigned_jobs, processing_intervals
from ._history import WORLD, History, Record
from ._report import BUILTIN_PROTOCOL, SAFETY_CHECKS, replay_for
from ._rng import Streams
from ._runner import ProtocolFactory, RunResult, run_once
from ._scenario_files import RunPlan, UsageError

__all__ = ["choose_job", "draw_timeline", "job_records", "load_tape", "run_replay"]

_EXIT_OK: Final = 0
_INTERVAL_COLORS: Final = {"done": "#2ca02c", "cancelled": "#ff7f0e", "crash": "#d62728",
                           "open": "#7f7f7f"}


def load_tape(path: Path) -> Streams:
    """A conformance counterexample's ``tape.json``: ``{"tape": [...], "seed": int|null}``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--tape {path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--tape {path}: not a readable JSON file ({exc})") from None
    tape = data.get("tape") if isinstance(data, dict) else None
    seed = data.get("seed") if isinstance(data, dict) else None
    if not isinstance(tape, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in tape):
        raise UsageError(f"--tape {path}: expected {{\"tape\": [numbers], \"seed\": ...}}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise UsageError(f"--tape {path}: seed must be an integer or null")
    try:
        return Streams.from_tape([float(v) for v in tape], seed=seed)
    except (ValueError, OverflowError) as exc:  # an integer beyond any float: not in [0, 1)
        raise UsageError(f"--tape {path}: {exc}") from None


def _first_violating(result: RunResult, names: Iterable[str]) -> tuple[str, str] | None:
    found = sorted((c.jobs[0], name) for name in names
                   if (c := result.checks.get(name)) is not None and c.jobs)
    return found[0] if found else None


def choose_job(result: RunResult) -> tuple[str, str]:
    """The job to show by default, and why it was chosen.

    In order: the first job with a safety violation (S1/S2/S3: what a reader replays for);
    else the first double-assigned job (the race the chains are compared on, even when the
    chain handled it); else the first job with a liveness violation (L1: lost or stuck);
    else the first job.
    """
    safety = _first_violating(result, SAFETY_CHECKS)
    if safety is not None:
        return safety[0], f"the first job with a safety violation ({safety[1]})"
    double = sorted(double_assigned_jobs(result.history))
    if double:
        return double[0], "the first double-assigned job (no safety violation in this run)"
    other = _first_violating(result, [n for n in result.checks if n not in SAFETY_CHECKS])
    if other is not None:
        return other[0], (f"the first job with a violation ({other[1]}; no safety violation "
                          "and no double assignment in this run)")
    return result.jobs[0], "the first job (no violation and no double assignment in this run)"


def _windows(records: Iterable[Record]) -> list[tuple[float, float, Record, Record | None]]:
    """Job-less invoke/ok pairs (pauses, fault windows) as ``(start, end, invoke, ok)``."""
    open_: dict[tuple[Any, ...], Record] = {}
    out: list[tuple[float, float, Record, Record | None]] = []
    for r in records:
        if r[2] is not None or r[3] not in ("pause", "fault"):
            continue
        key = (r[1], r[3], r[5] if r[3] == "fault" else None)
        if r[4] == "invoke":
            open_[key] = r
        elif key in open_:
            start = open_.pop(key)
            out.append((start[0], r[0], start, r))
    out.extend((r[0], math.inf, r, None) for r in open_.values())
    return sorted(out, key=lambda w: (w[0], w[1], w[2][1]))


def job_records(history: History, job: str) -> tuple[list[Record], list[Record]]:
    """``(everything the checkers need, what a reader needs)`` for one job.

    The first is :meth:`History.for_job` (every crash of every process that touched the job:
    a crash anywhere closes that process's intervals). The second keeps the job's own records
    and only the pauses, crashes and fault windows that overlap the job's lifetime.
    """
    full = history.for_job(job)
    own = [r for r in full if r[2] == job]
    if not own:
        return full, []
    t0, t1 = own[0][0], own[-1][0]
    keep: set[int] = set()
    for start, end, first, last in _windows(full):
        if start <= t1 and end >= t0:
            keep.add(id(first))
            if last is not None:
                keep.add(id(last))
    shown = [r for r in full if r[2] == job or id(r) in keep
             or (r[3] == "crash" and t0 <= r[0] <= t1)]
    return full, shown


def _mentions(text: str, job: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(job)}(?![\w-])", text) is not None


def _check_outputs(png: Path | None, history_path: Path | None) -> None:
    """Refuse, before the run, an output that cannot be the file it names: a folder, or
    ``--png`` and ``--history`` on one file (the timeline was drawn over the history, and both
    were reported written: adversarial review of the operator tooling)."""
    outputs = [(flag, path) for flag, path in (("--png", png), ("--history", history_path))
               if path is not None]
    for flag, path in outputs:
        if path.is_dir():
            raise UsageError(f"{flag} {path}: is a folder; give the path of a file")
    if len(outputs) == 2 and _same_file(outputs[0][1], outputs[1][1]):
        raise UsageError(f"--png and --history are the same file ({png}): give each output a "
                         "path of its own")


def _same_file(a: Path, b: Path) -> bool:
    """One file under two names: the same path once resolved, or the same inode."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def run_replay(plan: RunPlan, *, job: str | None, tape: Path | None, png: Path | None,
               history_path: Path | None, out: TextIO,
               protocol: ProtocolFactory = OwnershipProtocol,
               protocol_spec: str = BUILTIN_PROTOCOL) -> int:
    """Rerun the plan's one chain and seed (or ``tape``) with ``protocol`` (named
    ``protocol_spec`` in what is printed) and show one job."""
    if len(plan.chains) != 1:
        raise UsageError("--chain: replay shows one chain")
    _check_outputs(png, history_path)
    chain, seed = plan.chains[0], plan.seeds[0]
    streams = load_tape(tape) if tape is not None else None
    result = run_once(plan.scenario, chain, seed, streams=streams, protocol=protocol)
    if job is None:
        job, why = choose_job(result)
    else:
        if job not in result.jobs:
            raise UsageError(f"--job: no job {job!r} in this run "
                             f"(jobs {result.jobs[0]}..{result.jobs[-1]})")
        why = "chosen with --job"
    full, shown = job_records(result.history, job)
    checks = check_all(History(full), jobs=[job])
    source = f"tape {tape}" if tape is not None else f"seed {seed}"
    # The built-in protocol goes unnamed (as in the replay command); another one is named.
    other = [] if protocol_spec == BUILTIN_PROTOCOL else [protocol_spec]
    ran = f"{chain}, protocol {protocol_spec}" if other else chain
    run_line = ", ".join(f"{name} x{c.violations}" for name, c in result.checks.items())
    lines = [
        f"replay: scenario {plan.scenario.name}, chain {ran}, {source}: "
        f"{len(result.history)} records, {result.sim_time:.1f} s simulated; in the run: "
        f"{run_line}",
        f"job {job}: {why}",
        "",
        f"history of {job} ({len(shown)} records; with the pauses, crashes and fault windows "
        "that overlap it):",
        *(f"  {History.format_record(r)}" for r in shown),
        "",
    ]
    bad = [(name, c) for name, c in checks.items() if not c.ok]
    if bad:
        lines.append(f"violations involving {job}:")
        for name, c in bad:
            lines.append(f"  {name}: {c.violations}")
            lines.extend(f"    {e}" for e in c.examples if _mentions(e, job) or len(c.jobs) == 1)
    else:
        lines.append(f"violations involving {job}: none")
    command = replay_for(plan.ref, chain, seed, job, plan.overrides, protocol=protocol_spec)
    if tape is not None:  # the tape replaces the seed: say so in the command
        command = command.replace(f" --seed {seed}", f" --tape {shlex.quote(str(tape))}", 1)
    lines.append("replay: " + command)
    if history_path is not None:
        try:
            history_path.parent.mkdir(parents=True, exist_ok=True)
            with history_path.open("w", encoding="utf-8") as stream:
                result.history.dump(stream)
        except OSError as exc:
            raise UsageError(f"--history {history_path}: {exc.strerror or exc}") from None
        lines.append(f"wrote {history_path}")
    if png is not None:
        draw_timeline(full, job, png, end=result.sim_time,
                      title=" · ".join([job, chain, *other, plan.scenario.name, source]))
        lines.append(f"wrote {png}")
    out.write("\n".join(lines) + "\n")
    return _EXIT_OK


# --------------------------------------------------------------------------- the timeline


def _pairs(records: list[Record], process: str, job: str, first: tuple[str, str],
           last: tuple[str, str]) -> list[tuple[float, float]]:
    """Spans from each ``first`` (op, phase) to the next ``last`` of one process on one job."""
    spans: list[tuple[float, float]] = []
    began: float | None = None
    for t, proc, rec_job, op, phase, _ in records:
        if proc != process or rec_job != job:
            continue
        if (op, phase) == first and began is None:
            began = t
        elif (op, phase) == last and began is not None:
            spans.append((began, t))
            began = None
    return spans


def _claims(records: list[Record], process: str, job: str
            ) -> list[tuple[float, float, bool]]:
    """Each claim of one process on one job: ``(claim sent, start or last record, started)``.

    A claim that never led to a start (refused, given up, or the encoder went silent while
    the gateway still had it assigned) ends at the process's last record before its next
    claim: the window in which it held, or may have held, the job without working on it.
    """
    out: list[tuple[float, float, bool]] = []
    began: float | None = None
    last = 0.0
    for t, proc, rec_job, op, phase, _ in records:
        if proc != process or rec_job != job:
            continue
        if op == "claim" and phase == "invoke":
            if began is not None:
                out.append((began, last, False))
            began = t
        elif op == "start" and phase == "ok" and began is not None:
            out.append((began, t, True))
            began = None
        last = t
    if began is not None:
        out.append((began, last, False))
    return out


#: The encoder operations whose answers are marked on its row: op → marker.
_ANSWER_MARKERS: Final = {"claim": "D", "verify": "o", "commit": "s"}


def _answer_marks(ax: Any, records: list[Record], process: str, job: str, y: float) -> None:
    """The answers one encoder got for the job: claims, verifications, finish requests.

    Filled when answered OK; hollow red when refused, failed or unknown (``info``), because
    the hazards this timeline is read for start where an answer was missing or wrong.
    """
    for op, marker in _ANSWER_MARKERS.items():
        ok = [r[0] for r in records
              if r[1] == process and r[2] == job and r[3] == op and r[4] == "ok"]
        bad = [r[0] for r in records
               if r[1] == process and r[2] == job and r[3] == op and r[4] in ("fail", "info")]
        if ok:
            ax.plot(ok, [y] * len(ok), linestyle="none", marker=marker, markersize=4,
                    color="#1f77b4")
        if bad:
            ax.plot(bad, [y] * len(bad), linestyle="none", marker=marker, markersize=5,
                    markerfacecolor="none", markeredgecolor="#d62728")


def draw_timeline(records: list[Record], job: str, path: Path, *, end: float,
                  title: str) -> None:
    """One job's timeline as a PNG (see the module docstring for the encoding)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    own = [r for r in records if r[2] == job]
    encoders: list[str] = []
    for r in own:
        if r[1] != WORLD and r[1] not in encoders:
            encoders.append(r[1])
    for r in own:  # encoders named by the world (assigned, double-handed) but silent
        if r[1] == WORLD and isinstance(r[5], tuple | list) and len(r[5]) > 1:
            name = r[5][1] if r[3] == "lie" else r[5][0]
            if isinstance(name, str) and name not in encoders:
                encoders.append(name)
    rows = {name: i for i, name in enumerate(encoders)}
    world_row = len(encoders)
    t0 = own[0][0] if own else 0.0
    t1 = max([r[0] for r in own] + [t0 + 1.0])
    intervals = processing_intervals(History(records)).get(job, [])
    t1 = max([t1] + [iv.end for iv in intervals if math.isfinite(iv.end)])
    margin = max((t1 - t0) * 0.03, 1.0)
    lo, hi = t0 - margin, t1 + margin

    fig = Figure(figsize=(11, 1.6 + 0.55 * (len(encoders) + 1)), layout="constrained")
    ax = fig.add_subplot()
    for start, stop, first, _ in _windows(records):
        if stop < lo or start > hi:
            continue
        if first[1] == WORLD:
            ax.axvspan(max(start, lo), min(stop, hi), color="#d62728", alpha=0.12, linewidth=0)
            ax.text(max(start, lo), world_row + 0.35, str(first[5]), fontsize=7, color="#d62728")
        elif first[1] in rows:
            y = rows[first[1]]
            ax.broken_barh([(start, min(stop, hi) - start)], (y - 0.4, 0.8),
                           facecolors="#bbbbbb", alpha=0.5, linewidth=0)
    for name, y in rows.items():
        for a, b, started in _claims(records, name, job):
            ax.broken_barh([(a, max(b - a, 1e-3))], (y - 0.15, 0.3),
                           facecolors="#aec7e8" if started else "none",
                           edgecolors="#1f77b4", linewidth=0.6 if not started else 0,
                           hatch=None if started else "..")
        beats = [r[0] for r in records
                 if r[1] == name and r[2] == job and r[3] == "heartbeat" and r[4] == "invoke"]
        if beats:
            ax.plot(beats, [y + 0.45] * len(beats), linestyle="none", marker="|",
                    color="#555555", markersize=5)
        for a, b in _pairs(records, name, job, ("cancel", "invoke"), ("stop", "ok")):
            ax.broken_barh([(a, max(b - a, 1e-3))], (y + 0.16, 0.1), facecolors="#d62728")
        _answer_marks(ax, records, name, job, y + 0.33)
        for r in records:
            if r[1] == name and r[3] == "crash" and lo <= r[0] <= hi:
                ax.plot([r[0]], [y], marker="X", color="#d62728", markersize=9)
    for iv in intervals:
        if iv.process in rows:
            stop = end if math.isinf(iv.end) else iv.end
            ax.broken_barh([(iv.start, max(stop - iv.start, 1e-3))],
                           (rows[iv.process] - 0.3, 0.45),
                           facecolors=_INTERVAL_COLORS.get(iv.how, "#1f77b4"), alpha=0.85)
    for t, _, _, op, _, value in (r for r in own if r[1] == WORLD):
        who = value[1] if op == "lie" else (value[0] if isinstance(value, tuple | list)
                                            else None)
        y = rows.get(who, world_row) if isinstance(who, str) else world_row
        if op == "assign":
            ax.plot([t], [y - 0.4], marker="^", color="#1f77b4", markersize=7)
        elif op == "lie":
            ax.plot([t], [y - 0.4], marker="v", color="#9467bd", markersize=8)
        elif op == "commit":
            ax.plot([t], [y], marker="*", color="#000000", markersize=12)
        elif op == "requeue":
            ax.axvline(t, color="#555555", linestyle=":", linewidth=1)
    ax.set_yticks(list(range(world_row + 1)), [*encoders, "world"])
    ax.set_ylim(world_row + 0.8, -0.8)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("simulated time (s)")
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    legend = [
        Patch(facecolor="#aec7e8", label="claim → start"),
        Patch(facecolor="none", edgecolor="#1f77b4", hatch="..", label="claimed, not started"),
        Patch(facecolor=_INTERVAL_COLORS["done"], label="processing (done)"),
        Patch(facecolor=_INTERVAL_COLORS["cancelled"], label="processing (cancelled)"),
        Patch(facecolor=_INTERVAL_COLORS["crash"], label="processing (crash) / cancel → stop"),
        Patch(facecolor=_INTERVAL_COLORS["open"], label="processing (never stopped)"),
        Patch(facecolor="#bbbbbb", alpha=0.5, label="pause"),
        Patch(facecolor="#d62728", alpha=0.12, label="fault window"),
    ]
    ax.legend(handles=legend, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title="▲ assign  ▼ double hand-out  ★ commit\n⋮ requeue  ✕ crash  | heartbeat"
                    "\n◆ claim  ● verify  ■ finish request\n(filled: answered OK; "
                    "hollow red: refused,\nfailed or unknown)",
              title_fontsize=7)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A PNG at exactly ``path``, whatever its name ends with: left to the name, matplotlib
        # appended ".png" to a name without a suffix (the report then named a file that did not
        # exist) and failed with a traceback, after the run, on one it did not know
        # (``timeline.out``) or on SVG and JPEG, whose writers refuse the PNG's metadata.
        fig.savefig(path, dpi=100, format="png", metadata={"Software": None})
    except OSError as exc:
        raise UsageError(f"--png {path}: {exc.strerror or exc}") from None

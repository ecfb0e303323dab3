"""``python -m sim`` (also installed as ``spk-sim``): run, sweep and replay simulations.

``run``
    one scenario under one or more chains and seeds → a summary table, a JSON report
    (``--json``), a CSV of metrics (``--csv``). Every report prints its seed and the command
    that replays its most interesting run.
``sweep``
    a grid of parameters × chains × seeds in parallel processes → ``sweep.csv``,
    ``sweep.json`` and PNG plots in ``--out``.
``replay``
    one seed of one chain again → the history of one job, the violations that involve it,
    and its timeline as a PNG (``--png``).
``live``, ``serve``
    the emulated services over HTTP on loopback, with live encoders running the production
    guard, or alone (see ``sim/_live_cli.py``).

The flags scripts rely on are stable: ``--scenario NAME|PATH``, ``--chain NAME`` (repeatable;
default all built-in chains), ``--seed N``, ``--seeds K`` (seeds N..N+K-1), ``--encoders``,
``--jobs``, ``--lie-rate``, ``--set KEY=VALUE`` (any scenario parameter, a TOML literal),
``--json PATH``, ``--csv PATH``.

Exit status: 0 when the command completed, whatever the simulated chains did (a report of
violations is a result, not a failure), except that ``run --fail-on-violation`` exits 1 when
the hardened chain violated S1, S2 or S3 (for CI); 2 for a usage error (bad flag, unknown
chain or scenario, bad ``--set``, an unreadable or invalid scenario file), always with one
line on stderr that names the flag, key or file.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn, TextIO

from verifier._policy import builtin_chain_names

from ._params import Scenario, ScenarioError
from ._report import (
    Progress,
    RunSummary,
    build_run_report,
    dumps_report,
    format_table,
    safety_violations,
    summarize_run,
    write_csv,
)
from ._runner import run_once
from ._scenarios import (
    UsageError,
    apply_overrides,
    load_scenario,
    parse_assignment,
    scenario_names,
    scenario_source,
)

__all__ = ["EXIT_OK", "EXIT_USAGE", "EXIT_VIOLATION", "Setup", "build_parser", "main"]

EXIT_OK: Final = 0
EXIT_VIOLATION: Final = 1
EXIT_USAGE: Final = 2
_PROG: Final = "python -m sim"
#: The chain ``--fail-on-violation`` judges: the one that claims S1-S3 inside its model.
_GATED_CHAIN: Final = "hardened"


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


# --------------------------------------------------------------------------- the parser


def _scenario_flags(parser: argparse.ArgumentParser, *, many_chains: bool) -> None:
    group = parser.add_argument_group("scenario")
    group.add_argument("--scenario", default="default", metavar="NAME|PATH",
                       help="a built-in scenario (%(default)s, "
                            + ", ".join(n for n in scenario_names() if n != "default")
                            + ") or a TOML file")
    if many_chains:
        group.add_argument("--chain", action="append", metavar="NAME",
                           help="a chain to run (repeatable; default: every built-in chain)")
    else:
        # Appended, not stored, so a second --chain is an error rather than silently the one
        # that wins.
        group.add_argument("--chain", action="append", metavar="NAME",
                           help=f"the chain to replay (default: {_GATED_CHAIN})")
    group.add_argument("--seed", type=int, default=1, metavar="N",
                       help="root seed of all randomness (default: %(default)s)")
    group.add_argument("--encoders", type=int, metavar="N", help="override: encoders")
    group.add_argument("--jobs", type=int, metavar="N", help="override: jobs")
    group.add_argument("--lie-rate", type=float, metavar="P",
                       help="override: share of the gateway's hand-outs that are double")
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any scenario parameter; VALUE is a TOML literal "
                            "(repeatable, e.g. --set reassign_timeout=330)")


def _seeds_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=1, metavar="K",
                        help="run seeds N..N+K-1 (default: %(default)s)")


def _output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--progress", action="store_true",
                        help="show progress on stderr even when it is not a terminal")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=_PROG, description="Simulate many encoders, a lying gateway and a "
                     "lagging monitor; compare ownership chains.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    run = sub.add_parser("run", help="run a scenario: summary table, JSON report, CSV",
                         description="Run one scenario under each chain and seed.")
    _scenario_flags(run, many_chains=True)
    _seeds_flag(run)
    run.add_argument("--json", type=Path, metavar="PATH", help="write the JSON report here")
    run.add_argument("--csv", type=Path, metavar="PATH",
                     help="write one CSV row per chain and seed here")
    run.add_argument("--fail-on-violation", action="store_true",
                     help=f"exit 1 if the {_GATED_CHAIN} chain violates S1, S2 or S3 (for CI)")
    _output_flags(run)

    sweep = sub.add_parser("sweep", help="a grid of parameters × chains × seeds, with plots",
                           description="Run a grid of scenarios in parallel; write sweep.csv, "
                                       "sweep.json and PNG plots.")
    _scenario_flags(sweep, many_chains=True)
    _seeds_flag(sweep)
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                       help="a parameter and its values (repeatable; e.g. "
                            "lie_rate=0,0.05,0.1,0.2); the first one is the plots' x axis")
    sweep.add_argument("--workers", type=int, default=None, metavar="N",
                       help="parallel processes (default: the number of CPUs)")
    sweep.add_argument("--out", type=Path, default=Path("sweep-out"), metavar="DIR",
                       help="output folder (default: %(default)s)")
    _output_flags(sweep)

    replay = sub.add_parser("replay", help="rerun one seed; print a job's history, draw it",
                            description="Rerun one seed of one chain and show one job.")
    _scenario_flags(replay, many_chains=False)
    replay.add_argument("--job", metavar="JOB",
                        help="the job to show (default: the first job with a safety "
                             "violation, else the first double-assigned job, else the "
                             "first job with a liveness violation, else the first job)")
    replay.add_argument("--tape", type=Path, metavar="PATH",
                        help="a conformance counterexample's tape.json (replaces --seed)")
    replay.add_argument("--png", type=Path, metavar="PATH", help="draw the job's timeline here")
    replay.add_argument("--history", type=Path, metavar="PATH",
                        help="write the whole run's history here (JSON lines)")
    from ._live_cli import add_parsers
    add_parsers(sub, _scenario_flags, _output_flags)
    return parser


# --------------------------------------------------------------------------- shared set-up


@dataclass(frozen=True)
class Setup:
    """What every command resolves first: the world, its overrides, the chains, the seeds."""

    scenario: Scenario
    ref: str
    overrides: dict[str, Any]
    chains: list[str]
    seeds: list[int]


def _chains(names: Sequence[str] | None) -> list[str]:
    known = builtin_chain_names()
    if not names:
        return known
    out: list[str] = []
    for name in names:
        if name not in known:
            raise UsageError(f"--chain: unknown chain {name!r}; known: {', '.join(known)}")
        if name not in out:
            out.append(name)
    return out


def scenario_from_args(args: argparse.Namespace) -> tuple[Scenario, dict[str, Any]]:
    """The scenario with ``--set`` applied, then the named flags (which win), and the
    overrides applied. A command without one of the named flags simply has none."""
    scenario = load_scenario(args.scenario)
    overrides: dict[str, Any] = {}
    for text in args.set:
        key, value = parse_assignment(text)
        overrides[key] = value
    scenario = apply_overrides(scenario, overrides)
    for key in ("encoders", "jobs", "lie_rate"):
        value = getattr(args, key, None)
        if value is not None:
            scenario = apply_overrides(scenario, {key: value},
                                       source="--" + key.replace("_", "-"))
            overrides[key] = value
    return scenario, overrides


def resolve(args: argparse.Namespace) -> Setup:
    """The scenario (:func:`scenario_from_args`), the chains and the seeds."""
    scenario, overrides = scenario_from_args(args)
    if args.command == "replay":
        chains = _chains(args.chain or [_GATED_CHAIN])
        if len(chains) > 1:
            raise UsageError(f"--chain: replay shows one chain, got {', '.join(chains)}")
    else:
        chains = _chains(args.chain or getattr(args, "default_chains", None))
    count = getattr(args, "seeds", 1)
    if count < 1:
        raise UsageError(f"--seeds: must be at least 1, got {count}")
    if args.seed < 0:
        raise UsageError(f"--seed: must be >= 0, got {args.seed}")
    return Setup(scenario, args.scenario, overrides, chains,
                 list(range(args.seed, args.seed + count)))


def _progress(args: argparse.Namespace, total: int, err: TextIO) -> Progress:
    enabled = not args.quiet and (args.progress or bool(getattr(err, "isatty", bool)()))
    return Progress(total, enabled=enabled, stream=err)


def describe(setup: Setup) -> str:
    sc = setup.scenario
    model = "inside the timing model" if sc.inside_model() else "OUTSIDE the timing model"
    seeds = (str(setup.seeds[0]) if len(setup.seeds) == 1
             else f"{setup.seeds[0]}..{setup.seeds[-1]}")
    return (f"scenario {sc.name} ({scenario_source(setup.ref)}): {sc.encoders} encoders, "
            f"{sc.jobs} jobs, lie_rate {sc.lie_rate:g}, {model}; "
            f"{len(setup.chains)} chain(s), seed(s) {seeds}")


# --------------------------------------------------------------------------- run


def _cmd_run(args: argparse.Namespace, command: str, out: TextIO, err: TextIO) -> int:
    setup = resolve(args)
    if args.fail_on_violation and _GATED_CHAIN not in setup.chains:
        raise UsageError(f"--fail-on-violation judges the {_GATED_CHAIN} chain; "
                         f"add --chain {_GATED_CHAIN}")
    for path in (args.json, args.csv):  # fail before minutes of simulation, not after
        if path is not None and (path.is_dir() or not _writable_folder(path.parent)):
            raise UsageError(f"cannot write {path}")
    tasks = [(chain, seed) for chain in setup.chains for seed in setup.seeds]
    progress = _progress(args, len(tasks), err)
    runs: dict[str, list[RunSummary]] = {chain: [] for chain in setup.chains}
    for index, (chain, seed) in enumerate(tasks):
        label = f"{chain} seed {seed}"

        def tick(sim_time: float, finished: int, jobs: int, index: int = index,
                 label: str = label) -> None:
            progress.update(index + finished / max(jobs, 1),
                            f"{label}: {finished}/{jobs} jobs, {sim_time / 3600:.1f} h simulated")

        result = run_once(setup.scenario, chain, seed, progress=tick)
        summary = summarize_run(result)
        runs[chain].append(summary)
        del result  # a large run's history is not kept while the next one runs
        progress.finished(index + 1, f"{label}: done, {_brief(summary.entry)}")
    progress.close()

    report = build_run_report(scenario=setup.scenario, ref=setup.ref,
                              overrides=setup.overrides, seeds=setup.seeds, runs=runs,
                              command=command)
    written: list[str] = []
    if args.json is not None:
        _write(args.json, dumps_report(report))
        written.append(str(args.json))
    if args.csv is not None:
        rows = [{"chain": chain, **run.entry} for chain in setup.chains for run in runs[chain]]
        for row in rows:
            row.pop("violations", None)  # details live in the JSON; the CSV stays numeric
            row.pop("outcomes", None)
        _write_rows(args.csv, rows)
        written.append(str(args.csv))
    if not args.quiet:
        table = format_table([(chain, report["chains"][chain]) for chain in setup.chains])
        lines = [
            describe(setup), "", table, "",
            "race prevention: the share of double-assigned jobs that were not processed twice "
            "(pooled over seeds, 95% Wilson interval)",
            *(f"warning: {p}" for p in report["timing_problems"]),
            f"seed: {setup.seeds[0]}" + (f" (seeds {setup.seeds[0]}..{setup.seeds[-1]})"
                                         if len(setup.seeds) > 1 else ""),
            f"replay: {report['replay']}",
            *(f"wrote {path}" for path in written),
        ]
        out.write("\n".join(lines) + "\n")
    if args.fail_on_violation:
        bad = safety_violations(report["chains"][_GATED_CHAIN])
        if bad:
            err.write(f"{_PROG} run: the {_GATED_CHAIN} chain violated S1/S2/S3 "
                      f"{bad} time(s); replay: {report['chains'][_GATED_CHAIN]['replay']}\n")
            return EXIT_VIOLATION
    return EXIT_OK


def _writable_folder(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def _brief(entry: dict[str, Any]) -> str:
    """A finished run's headline figures, for its progress line."""
    checks = " ".join(f"{name} {entry.get(name.lower() + '_violations', '-')}"
                      for name in ("S1", "S2", "S3", "L1"))
    return f"{entry.get('double_assigned', '-')} double-assigned, {checks}"


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    try:
        write_csv(path, rows)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- sweep, replay


def _cmd_sweep(args: argparse.Namespace, command: str, out: TextIO, err: TextIO) -> int:
    from ._sweep import parse_grid, run_sweep

    setup = resolve(args)
    grid = parse_grid(args.grid)
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise UsageError(f"--workers: must be at least 1, got {workers}")
    progress = _progress(args, 1, err)
    summary = run_sweep(setup, grid, workers=workers, out_dir=args.out, progress=progress,
                        command=command)
    if not args.quiet:
        points = 1
        for _, values in grid:
            points *= len(values)
        spec = "; ".join(f"{k}={','.join(str(v) for v in values)}" for k, values in grid)
        runs = points * len(setup.chains) * len(setup.seeds)
        out.write(f"{describe(setup)}\ngrid: {spec or '(none)'}: {points} point(s), "
                  f"{runs} run(s) on {min(workers, runs)} worker(s)\n\n{summary}\n")
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace, command: str, out: TextIO, err: TextIO) -> int:
    from ._replay import run_replay

    setup = resolve(args)
    return run_replay(setup, job=args.job, tape=args.tape, png=args.png,
                      history_path=args.history, out=out)


def _cmd_live(args: argparse.Namespace, command: str, out: TextIO, err: TextIO) -> int:
    from ._live_cli import cmd_live

    return cmd_live(args, command, out, err)


def _cmd_serve(args: argparse.Namespace, command: str, out: TextIO, err: TextIO) -> int:
    from ._live_cli import cmd_serve

    return cmd_serve(args, command, out, err)


_COMMANDS: Final = {"run": _cmd_run, "sweep": _cmd_sweep, "replay": _cmd_replay,
                    "live": _cmd_live, "serve": _cmd_serve}


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Run one command; returns the exit status (see the module docstring)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help (0) or a syntax error (2, already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    # The report records the command as typed (argv, not the absolute paths it resolves to),
    # so the same command gives the same bytes wherever it is run from.
    command = " ".join([_PROG, *(shlex.quote(a) for a in args_list)])
    try:
        return _COMMANDS[args.command](args, command, out, err)
    except (ScenarioError, UsageError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message held
        err.write(f"{_PROG} {args.command}: error: {message}\n")
        return EXIT_USAGE

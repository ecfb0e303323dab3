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
    guard, or alone (see ``sim/_live.py``).

The flags scripts rely on are stable: ``--scenario NAME|PATH``, ``--chain NAME`` (repeatable;
default all built-in chains), ``--seed N``, ``--seeds K`` (seeds N..N+K-1), ``--encoders``,
``--jobs``, ``--lie-rate``, ``--set KEY=VALUE`` (any scenario parameter, a TOML literal),
``--json PATH``, ``--csv PATH``.

``--protocol MODULE:CLASS`` (``run``, ``replay``) drives another protocol implementation than
the built-in ``verifier.protocol:OwnershipProtocol``; reports name it, and every replay command
they print carries it, so a counterexample of the protocol under test reproduces.

Exit status: 0 when the command completed, whatever the simulated chains did (a report of
violations is a result, not a failure), except for the release gate: ``run
--fail-on-violation`` judges every chain with an expected verdict (``hardened`` is expected
safe; ``--expect CHAIN=safe|unsafe`` adds or overrides one) and exits 1 when one fails, with
one line per failed expectation on stderr (for CI); 2 for a usage error (bad flag, unknown
chain or scenario, bad ``--set``, ``--expect`` or ``--protocol``, an unreadable or invalid
scenario file), always with one line on stderr that names the flag, key or file.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final, TextIO

from . import live
from ._commandline import (
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    Parser,
    apply_gate,
    brief,
    check_writable,
    describe,
    expectations,
    gate_flags,
    load_protocol,
    output_flags,
    progress_for,
    protocol_flag,
    resolve,
    scenario_flags,
    seeds_flag,
    write,
    write_rows,
)
from ._executors import parse_executor
from ._replay import run_replay
from ._report import (
    RunSummary,
    build_run_report,
    dumps_report,
    format_table,
    replay_for,
    summarize_run,
)
from ._runner import run_once
from ._scenario import ScenarioError
from ._scenario_files import UsageError
from ._sweep import parse_grid, run_sweep

__all__ = ["build_parser", "main"]


# --------------------------------------------------------------------------- the parser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Simulate many encoders, a lying gateway and a "
                     "lagging monitor; compare ownership chains.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)

    run = sub.add_parser("run", help="run a scenario: summary table, JSON report, CSV",
                         description="Run one scenario under each chain and seed.")
    scenario_flags(run, many_chains=True)
    seeds_flag(run)
    protocol_flag(run)
    run.add_argument("--json", type=Path, metavar="PATH", help="write the JSON report here")
    run.add_argument("--csv", type=Path, metavar="PATH",
                     help="write one CSV row per chain and seed here")
    gate_flags(run)
    output_flags(run)

    sweep = sub.add_parser("sweep", help="a grid of parameters × chains × seeds, with plots",
                           description="Run a grid of scenarios in parallel; write sweep.csv, "
                                       "sweep.json and PNG plots.")
    scenario_flags(sweep, many_chains=True)
    seeds_flag(sweep)
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                       help="a parameter and its values (repeatable; e.g. "
                            "lie_rate=0,0.05,0.1,0.2); the first one is the plots' x axis")
    sweep.add_argument("--workers", type=int, default=None, metavar="N",
                       help="parallel processes (default: the number of CPUs; with "
                            "--executor dask, the local cluster's workers)")
    sweep.add_argument("--executor", type=parse_executor, default="local",
                       metavar="local|dask|dask://HOST:PORT",
                       help="where the runs execute: local processes (default), a Dask "
                            "cluster started on this machine, or an existing Dask scheduler "
                            "(its workers need this package installed); the results are the "
                            "same files whichever runs them")
    sweep.add_argument("--out", type=Path, default=Path("sweep-out"), metavar="DIR",
                       help="output folder (default: %(default)s)")
    output_flags(sweep)

    replay = sub.add_parser("replay", help="rerun one seed; print a job's history, draw it",
                            description="Rerun one seed of one chain and show one job.")
    scenario_flags(replay, many_chains=False)
    protocol_flag(replay)
    replay.add_argument("--job", metavar="JOB",
                        help="the job to show (default: the first job with a safety "
                             "violation, else the first double-assigned job, else the "
                             "first job with a liveness violation, else the first job)")
    replay.add_argument("--tape", type=Path, metavar="PATH",
                        help="a conformance counterexample's tape.json (replaces --seed)")
    replay.add_argument("--png", type=Path, metavar="PATH", help="draw the job's timeline here")
    replay.add_argument("--history", type=Path, metavar="PATH",
                        help="write the whole run's history here (JSON lines)")
    live.add_parsers(sub)
    return parser


# --------------------------------------------------------------------------- run


def _cmd_run(args: argparse.Namespace, command: str, out: TextIO, err: TextIO) -> int:
    plan = resolve(args)
    expected = expectations(args, plan)
    protocol = load_protocol(args.protocol)
    check_writable(args.json, args.csv)
    tasks = [(chain, seed) for chain in plan.chains for seed in plan.seeds]
    progress = progress_for(args, len(tasks), err)
    runs: dict[str, list[RunSummary]] = {chain: [] for chain in plan.chains}
    for index, (chain, seed) in enumerate(tasks):
        label = f"{chain} seed {seed}"

        def tick(sim_time: float, finished: int, jobs: int, index: int = index,
                 label: str = label) -> None:
            progress.update(index + finished / max(jobs, 1),
                            f"{label}: {finished}/{jobs} jobs, {sim_time / 3600:.1f} h simulated")

        result = run_once(plan.scenario, chain, seed, protocol=protocol.factory,
                          progress=tick)
        summary = summarize_run(result)
        runs[chain].append(summary)
        del result  # a large run's history is not kept while the next one runs
        progress.finished(index + 1, f"{label}: done, {brief(summary)}")
    progress.close()

    report = build_run_report(scenario=plan.scenario, ref=plan.ref,
                              overrides=plan.overrides, seeds=plan.seeds, runs=runs,
                              command=command, protocol=protocol.spec)
    written: list[str] = []
    if args.json is not None:
        write(args.json, dumps_report(report))
        written.append(str(args.json))
    if args.csv is not None:
        rows = [{"chain": chain, **run.entry} for chain in plan.chains for run in runs[chain]]
        for row in rows:
            row.pop("violations", None)  # details live in the JSON; the CSV stays numeric
            row.pop("outcomes", None)
        write_rows(args.csv, rows)
        written.append(str(args.csv))
    if not args.quiet:
        table = format_table([(chain, report["chains"][chain]) for chain in plan.chains])
        lines = [
            describe(plan, protocol.spec), "", table, "",
            "race prevention: the share of double-assigned jobs that were not processed twice "
            "(pooled over seeds, 95% Wilson interval)",
            *(f"warning: {p}" for p in report["timing_problems"]),
            f"seed: {plan.seeds[0]}" + (f" (seeds {plan.seeds[0]}..{plan.seeds[-1]})"
                                         if len(plan.seeds) > 1 else ""),
            f"replay: {report['replay']}",
            *(f"wrote {path}" for path in written),
        ]
        out.write("\n".join(lines) + "\n")

    def reproduce(chain: str, seed: int, job: str | None) -> str:
        return "replay: " + replay_for(plan.ref, chain, seed, job, plan.overrides,
                                       protocol=protocol.spec)

    return apply_gate(expected, runs, command="run", reproduce=reproduce, out=out, err=err,
                      quiet=args.quiet)


# --------------------------------------------------------------------------- sweep, replay


def _cmd_sweep(args: argparse.Namespace, command: str, out: TextIO, err: TextIO) -> int:
    plan = resolve(args)
    grid = parse_grid(args.grid)
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise UsageError(f"--workers: must be at least 1, got {workers}")
    progress = progress_for(args, 1, err)
    summary = run_sweep(plan, grid, workers=workers, out_dir=args.out, progress=progress,
                        command=command, executor=args.executor)
    if not args.quiet:
        points = 1
        for _, values in grid:
            points *= len(values)
        spec = "; ".join(f"{k}={','.join(str(v) for v in values)}" for k, values in grid)
        runs = points * len(plan.chains) * len(plan.seeds)
        where = ("" if args.executor == "local" else
                 f" ({args.executor}{' local cluster' if args.executor == 'dask' else ''})")
        shown = "the scheduler's" if args.executor.startswith("dask://") else min(workers, runs)
        out.write(f"{describe(plan)}\ngrid: {spec or '(none)'}: {points} point(s), "
                  f"{runs} run(s) on {shown} worker(s){where}\n\n{summary}\n")
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace, command: str, out: TextIO, err: TextIO) -> int:
    plan = resolve(args)
    protocol = load_protocol(args.protocol)
    return run_replay(plan, job=args.job, tape=args.tape, png=args.png,
                      history_path=args.history, out=out, protocol=protocol.factory,
                      protocol_spec=protocol.spec)


_COMMANDS: Final = {"run": _cmd_run, "sweep": _cmd_sweep, "replay": _cmd_replay,
                    "live": live.cmd_live, "serve": live.cmd_serve}


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
    command = " ".join([PROG, *(shlex.quote(a) for a in args_list)])
    try:
        return _COMMANDS[args.command](args, command, out, err)
    except (ScenarioError, UsageError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message held
        err.write(f"{PROG} {args.command}: error: {message}\n")
        return EXIT_USAGE

"""``python -m sim`` (also installed as ``spk-sim``): run, sweep and replay simulations.

``run``
    one scenario under one or more chains and seeds → a summary table, a JSON report
    (``--json``), a CSV of metrics (``--csv``). Every report prints its seed and the command
    that replays its most interesting run.
``sweep``
    a grid of parameters × chains × seeds in parallel processes → ``sweep.csv``,
    ``sweep.json`` and PNG plots in ``--out``.
``research``
    every research figure from one command: the research table (default and held-out
    scenario, paired with a baseline chain), the cost of safety, duplicate processing against
    the lie rate, the ablation, and the sensitivity to the monitor's lag → tables, CSVs, JSON
    and PNGs in ``--out`` (:mod:`sim._research`).
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

from verifier import ConfigurationError, builtin_chain_names

from . import live
from ._columns import MEAN_INTERVALS, epilog
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
from ._executors import check_executor, parse_executor
from ._replay import run_replay
from ._report import (
    RunSummary,
    build_run_report,
    dumps_report,
    format_table,
    replay_for,
    summarize_run,
)
from ._research import ABLATION_PREFIX, DEFAULT_LIE_RATES, ResearchPlan, run_research
from ._runner import run_once
from ._scenario import ScenarioError
from ._scenario_files import UsageError, parse_assignment
from ._sweep import parse_grid, run_sweep

__all__ = ["build_parser", "main"]

#: The research command's default seeds per figure: a few minutes on 2 cores.
RESEARCH_SEEDS: Final = 20


# --------------------------------------------------------------------------- the parser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Simulate many encoders, a lying gateway and a "
                     "lagging monitor; compare ownership chains.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)

    run = sub.add_parser("run", help="run a scenario: summary table, JSON report, CSV",
                         description="Run one scenario under each chain and seed.",
                         epilog=epilog(intervals=MEAN_INTERVALS),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
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
                                       "sweep.json and PNG plots.",
                           epilog=epilog(intervals=MEAN_INTERVALS),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
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

    research = sub.add_parser(
        "research", help="every research figure, paired over seeds, in one folder",
        description="Run the research figures on the same seeds (common random numbers): "
                    "the research table on the default and a held-out scenario with paired "
                    "differences to a baseline chain, the cost of safety, duplicate "
                    "processing against the lie rate, the ablation, and the sensitivity of "
                    "the documented chain's lost jobs to the monitor's mean lag. Writes "
                    "research.txt, research.json, CSVs and PNGs into --out.",
        epilog=epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    research.add_argument("--seed", type=int, default=1, metavar="N",
                          help="the first seed (default: %(default)s)")
    research.add_argument("--seeds", type=int, default=RESEARCH_SEEDS, metavar="K",
                          help="seeds N..N+K-1 for every figure (default: %(default)s)")
    research.add_argument("--chain", action="append", metavar="NAME",
                          help="a chain of the research table, lie-rate plot and cost table "
                               "(repeatable; default: trust-gateway, documented, hardened; "
                               "the baseline and trust-gateway are always added)")
    research.add_argument("--baseline", default="trust-gateway", metavar="CHAIN",
                          help="the chain every research-table difference is paired with "
                               "(default: %(default)s; the cost table is always against "
                               "trust-gateway, the ablation against hardened)")
    research.add_argument("--held-out", default="3speak-2026", metavar="NAME|PATH",
                          help="the held-out scenario (default: %(default)s)")
    research.add_argument("--lie-rates", default=",".join(f"{r:g}" for r in DEFAULT_LIE_RATES),
                          metavar="P1,P2,...",
                          help="the lie-rate plot's points (default: %(default)s)")
    research.add_argument("--lag-means", default=None, metavar="S1,S2,...",
                          help="the sensitivity plot's monitor_lag_mean points, seconds in "
                               "[0, Δ] (default: 0, 0.02, 0.04, 0.1, 0.2, 0.4 and 1 × Δ)")
    research.add_argument("--no-ablation", action="store_true",
                          help="skip the ablation (its ten chains are most of the runs)")
    research.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                          help="override a parameter of every scenario (for quick checks, "
                               "e.g. --set encoders=4 --set jobs=12; the report records it)")
    research.add_argument("--workers", type=int, default=None, metavar="N",
                          help="parallel processes (default: the number of CPUs)")
    research.add_argument("--executor", type=parse_executor, default="local",
                          metavar="local|dask|dask://HOST:PORT",
                          help="where the runs execute (as for sweep)")
    research.add_argument("--out", type=Path, default=Path("research-out"), metavar="DIR",
                          help="output folder (default: %(default)s)")
    output_flags(research)

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
            "twice at once/1k: jobs processed by two encoders at once per 1,000 jobs; race "
            "prevention: the share of the double hand-outs the world made (realised doubles, "
            "of the planned ones, the same for every chain) not processed twice at once; "
            "columns: python -m sim run --help",
            MEAN_INTERVALS,
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
    check_executor(args.executor)  # before any run
    progress = progress_for(args, 1, err)
    summary = run_sweep(plan, grid, workers=workers, out_dir=args.out, progress=progress,
                        command=normalised(command), executor=args.executor)
    if not args.quiet:
        points = 1
        for _, values in grid:
            points *= len(values)
        spec = "; ".join(f"{k}={','.join(str(v) for v in values)}" for k, values in grid)
        runs = points * len(plan.chains) * len(plan.seeds)
        where = ("" if args.executor == "local" else
                 f" ({args.executor}{' local cluster' if args.executor == 'dask' else ''})")
        shown = "the scheduler's" if args.executor.startswith("dask://") else min(workers, runs)
        out.write(f"{describe(plan, swept=[k for k, _ in grid])}\n"
                  f"grid: {spec or '(none)'}: {points} point(s), "
                  f"{runs} run(s) on {shown} worker(s){where}\n\n{summary}\n")
    return EXIT_OK


def _floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected numbers separated by commas") from None
    if not values or len(set(values)) != len(values):
        raise UsageError(f"{flag} {text!r}: expected distinct numbers")
    return values


def _cmd_research(args: argparse.Namespace, command: str, out: TextIO, err: TextIO) -> int:
    known = builtin_chain_names()
    chains = list(dict.fromkeys(args.chain or ["trust-gateway", "documented", "hardened"]))
    for name in [*chains, args.baseline]:
        if name not in known:
            raise UsageError(f"--chain/--baseline: unknown chain {name!r}; known: "
                             f"{', '.join(known)}")
    for name in (args.baseline, "trust-gateway"):
        if name not in chains:
            chains.insert(0, name)
    if args.seeds < 1:
        raise UsageError(f"--seeds: must be at least 1, got {args.seeds}")
    if args.seed < 0:  # as run and replay say: their replay commands could not rerun it
        raise UsageError(f"--seed: must be >= 0, got {args.seed}")
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise UsageError(f"--workers: must be at least 1, got {workers}")
    check_executor(args.executor)  # before any run
    overrides = dict(parse_assignment(a) for a in args.set)
    ablation = [] if args.no_ablation else [
        c for c in known if c == "hardened" or c.startswith(ABLATION_PREFIX)]
    plan = ResearchPlan(
        seeds=list(range(args.seed, args.seed + args.seeds)), chains=chains,
        baseline=args.baseline, held_out=args.held_out, ablation_chains=ablation,
        lie_rates=_floats(args.lie_rates, "--lie-rates"),
        lag_means=None if args.lag_means is None else _floats(args.lag_means, "--lag-means"),
        overrides=overrides)
    progress = progress_for(args, 1, err)
    text = run_research(plan, workers=workers, executor=args.executor, out_dir=args.out,
                        progress=progress, command=normalised(command))
    if not args.quiet:
        out.write(text + "\n")
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace, command: str, out: TextIO, err: TextIO) -> int:
    plan = resolve(args)
    protocol = load_protocol(args.protocol)
    return run_replay(plan, job=args.job, tape=args.tape, png=args.png,
                      history_path=args.history, out=out, protocol=protocol.factory,
                      protocol_spec=protocol.spec)


_COMMANDS: Final = {"run": _cmd_run, "sweep": _cmd_sweep, "research": _cmd_research,
             "replay": _cmd_replay,
                    "live": live.cmd_live, "serve": live.cmd_serve}


#: Options that change where and how fast a sweep runs, not what it computes.
_PLACEMENT: Final = ("--workers", "--executor", "--out", "--quiet", "--progress")


def normalised(command: str) -> str:
    """``command`` without the options of :data:`_PLACEMENT` (and their values): what a
    sweep or research report records, so it is the same bytes on any executor."""
    words, kept = shlex.split(command), []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        name = _placement(word.split("=", 1)[0])
        if name is not None:
            skip = "=" not in word and name not in ("--quiet", "--progress")
            continue
        kept.append(shlex.quote(word))
    return " ".join(kept)


def _placement(name: str) -> str | None:
    """The option of :data:`_PLACEMENT` that ``name`` is, as typed: in full, or abbreviated
    as argparse accepts it (``--work 2``, ``--exec dask``, ``--ou DIR``). Abbreviations used
    to stay in the recorded command, so the same sweep written with ``--exec dask`` and run
    locally gave two sweep.json files (adversarial review of the figures)."""
    if name in _PLACEMENT:
        return name
    if not name.startswith("--") or len(name) < 3:
        return None
    matches = [option for option in _PLACEMENT if option.startswith(name)]
    return matches[0] if len(matches) == 1 else None


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
    # ConfigurationError: the verifier's clients refuse a setting `live` passed on to them
    # (a timeout, a URL); it names the setting, so it is a usage error like the others, not
    # a traceback.
    except (ScenarioError, UsageError, ConfigurationError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message held
        err.write(f"{PROG} {args.command}: error: {message}\n")
        return EXIT_USAGE

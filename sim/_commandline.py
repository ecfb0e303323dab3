"""What every ``python -m sim`` command shares: flags, the run plan, the protocol under test,
the release gate, progress, writers, exit codes.

Both command modules (:mod:`sim._cli` for ``run``/``sweep``/``replay``, :mod:`sim.live._cli`
for ``live``/``serve``) build on this one, and nothing here imports either of them, so the
command layer has no import circle. The program name, the exit codes and the release gate
(``--fail-on-violation`` with ``--expect``: :func:`expectations` before a run,
:func:`apply_gate` after it) are defined here once, for ``run`` and ``live`` alike.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any, Final, NoReturn, TextIO

from verifier import builtin_chain_names
from verifier.protocol import OwnershipProtocol

from ._report import (
    BUILTIN_PROTOCOL,
    SAFETY_CHECKS,
    Progress,
    RunSummary,
    timing_problems,
    write_csv,
)
from ._runner import ProtocolFactory
from ._scenario import OUTSIDE_MODEL, Scenario
from ._scenario_files import (
    RunPlan,
    UsageError,
    apply_overrides,
    load_scenario,
    parse_assignment,
    scenario_names,
    scenario_source,
)

__all__ = [
    "BUILTIN_PROTOCOL",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_VIOLATION",
    "GATED_CHAIN",
    "PROG",
    "VERDICTS",
    "Parser",
    "ProtocolChoice",
    "Verdict",
    "apply_gate",
    "brief",
    "check_writable",
    "describe",
    "expectations",
    "gate_flags",
    "judge_gate",
    "load_protocol",
    "output_flags",
    "progress_for",
    "protocol_flag",
    "resolve",
    "scenario_flags",
    "scenario_from_args",
    "seeds_flag",
    "write",
    "write_rows",
]

EXIT_OK: Final = 0
EXIT_VIOLATION: Final = 1
EXIT_USAGE: Final = 2
PROG: Final = "python -m sim"
#: The chain ``--fail-on-violation`` expects ``safe`` unless ``--expect`` says otherwise: the
#: one that claims S1-S3 inside its model.
GATED_CHAIN: Final = "hardened"
#: The verdicts ``--expect CHAIN=VERDICT`` may expect, and the properties each one judges:
#: ``safe`` = none of them violated in any seed (L1 included: a chain that loses jobs is not
#: releasable); ``unsafe`` = at least one of them violated in some seed (CI's proof that the
#: gate fires on a chain known to be broken).
VERDICTS: Final[Mapping[str, tuple[str, ...]]] = {
    "safe": (*SAFETY_CHECKS, "L1"),
    "unsafe": SAFETY_CHECKS,
}


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


# --------------------------------------------------------------------------- flags


def scenario_flags(parser: argparse.ArgumentParser, *, many_chains: bool,
                   chains_default: str = "every built-in chain") -> None:
    """The scenario flags; ``chains_default`` is what runs without ``--chain`` (as ``--help``
    says it: ``sim live`` runs three chains, not every one)."""
    group = parser.add_argument_group("scenario")
    group.add_argument("--scenario", default="default", metavar="NAME|PATH",
                       # Every name, the default marked apart: a command whose default is
                       # another scenario (`sim live`) listed it twice and left `default` out.
                       help="a built-in scenario (" + ", ".join(scenario_names())
                            + ") or a TOML file (default: %(default)s)")
    if many_chains:
        group.add_argument("--chain", action="append", metavar="NAME",
                           help=f"a chain to run (repeatable; default: {chains_default})")
    else:
        # Appended, not stored, so a second --chain is an error rather than silently the one
        # that wins.
        group.add_argument("--chain", action="append", metavar="NAME",
                           help=f"the chain to replay (default: {GATED_CHAIN})")
    group.add_argument("--seed", type=int, default=1, metavar="N",
                       help="root seed of all randomness (default: %(default)s)")
    group.add_argument("--encoders", type=int, metavar="N", help="override: encoders")
    group.add_argument("--jobs", type=int, metavar="N", help="override: jobs")
    group.add_argument("--lie-rate", type=float, metavar="P",
                       help="override: share of the gateway's hand-outs that are double")
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any scenario parameter; VALUE is a TOML literal "
                            "(repeatable, e.g. --set reassign_timeout=330)")


def seeds_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=1, metavar="K",
                        help="run seeds N..N+K-1 (default: %(default)s)")


def protocol_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", default=BUILTIN_PROTOCOL, metavar="MODULE:CLASS",
                        help="the protocol implementation to drive, by import path (default: "
                             "%(default)s); a class with its constructor (job_id, *, me, "
                             "policy, tiers) and start()/handle()")


def gate_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("release gate (for CI)")
    group.add_argument("--fail-on-violation", action="store_true",
                       help="judge every chain with an expected verdict and exit 1 if one "
                            f"fails; {GATED_CHAIN} is expected safe unless --expect says "
                            "otherwise; chains without a verdict are reported, not judged")
    group.add_argument("--expect", action="append", default=[], metavar="CHAIN=safe|unsafe",
                       help="the verdict expected of a chain of the run (repeatable; with "
                            "--fail-on-violation): safe = no S1, S2, S3 or L1 violation in "
                            "any seed; unsafe = at least one S1, S2 or S3 violation (proves "
                            "the gate fires)")


def output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--progress", action="store_true",
                        help="show progress on stderr even when it is not a terminal")


# --------------------------------------------------------------------------- the run plan


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


def resolve(args: argparse.Namespace) -> RunPlan:
    """The scenario (:func:`scenario_from_args`), the chains and the seeds."""
    scenario, overrides = scenario_from_args(args)
    if args.command == "replay":
        chains = _chains(args.chain or [GATED_CHAIN])
        if len(chains) > 1:
            raise UsageError(f"--chain: replay shows one chain, got {', '.join(chains)}")
    else:
        chains = _chains(args.chain or getattr(args, "default_chains", None))
    count = getattr(args, "seeds", 1)
    if count < 1:
        raise UsageError(f"--seeds: must be at least 1, got {count}")
    if args.seed < 0:
        raise UsageError(f"--seed: must be >= 0, got {args.seed}")
    return RunPlan(scenario, args.scenario, overrides, chains,
                   list(range(args.seed, args.seed + count)))


def describe(plan: RunPlan, protocol: str | None = None, swept: Sequence[str] = ()) -> str:
    """The headline of a report: the scenario, the chains and seeds, and (when given) the
    protocol that ran. A parameter in ``swept`` (a sweep's grid keys) is said to be swept,
    not given the scenario's value it does not have at most points."""
    sc = plan.scenario

    def shown(name: str, text: str) -> str:
        return f"{name.replace('_', ' ') if name != 'lie_rate' else name} swept" if (
            name in swept) else text

    model = ("OUTSIDE the timing model" if timing_problems(sc)  # as the JSON's inside_model
             else "inside the timing model")
    if swept:
        model += " at the scenario's own values"
        beyond = [k for k in swept if k in OUTSIDE_MODEL]
        if beyond:  # a point with one of these above 0 is outside it, whatever the scenario
            model += f" (OUTSIDE it where {' or '.join(beyond)} > 0)"
    seeds = (str(plan.seeds[0]) if len(plan.seeds) == 1
             else f"{plan.seeds[0]}..{plan.seeds[-1]}")
    ran = "" if protocol is None else (
        f"; protocol {protocol}" + (" (built-in)" if protocol == BUILTIN_PROTOCOL else ""))
    return (f"scenario {sc.name} ({scenario_source(plan.ref)}): "
            f"{shown('encoders', f'{sc.encoders} encoders')}, "
            f"{shown('jobs', f'{sc.jobs} jobs')}, "
            f"{shown('lie_rate', f'lie_rate {sc.lie_rate:g}')}, {model}; "
            f"{len(plan.chains)} chain(s), seed(s) {seeds}{ran}")


# --------------------------------------------------------------------------- the protocol


@dataclass(frozen=True)
class ProtocolChoice:
    """The protocol under test: its import path as reports and replay commands print it, and
    the factory ``run_once`` calls."""

    spec: str
    factory: ProtocolFactory


def load_protocol(spec: str) -> ProtocolChoice:
    """``--protocol MODULE:CLASS`` imported (``CLASS`` may be dotted); a usage error, one line,
    when it cannot be. The built-in protocol, however it was named, is named
    :data:`~sim._report.BUILTIN_PROTOCOL`, so its replay commands need no ``--protocol``."""
    text = spec.strip()
    module_name, _, attr = text.partition(":")
    if not module_name or not attr:
        raise UsageError(f"--protocol: expected MODULE:CLASS (an import path, e.g. "
                         f"{BUILTIN_PROTOCOL}), got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's code: any failure to import is a usage error
        raise UsageError(f"--protocol {text}: cannot import {module_name}: "
                         f"{type(exc).__name__}: {exc}") from None
    try:
        factory = reduce(getattr, attr.split("."), module)
    except AttributeError:
        raise UsageError(f"--protocol {text}: module {module_name} has no {attr!r}") from None
    if not callable(factory):
        raise UsageError(f"--protocol {text}: {attr} is not a class or callable")
    if factory is OwnershipProtocol:
        text = BUILTIN_PROTOCOL
    return ProtocolChoice(text, factory)


# --------------------------------------------------------------------------- the release gate


@dataclass(frozen=True)
class Verdict:
    """One chain judged against its expected verdict, over every seed of the run."""

    chain: str
    expected: str  # "safe" | "unsafe"
    counts: dict[str, int]  # violations of each judged property, summed over the seeds
    runs: int
    seed: int  # the offending run (a failed "safe"), else the chain's first run
    job: str | None  # the offending job, if any

    @property
    def passed(self) -> bool:
        violated = any(self.counts.values())
        return violated if self.expected == "unsafe" else not violated

    def found(self) -> str:
        bad = [f"{name} x{n}" for name, n in self.counts.items() if n]
        names = list(self.counts)
        what = ", ".join(names[:-1]) + " or " + names[-1]
        return ", ".join(bad) if bad else f"no {what} violation"

    def line(self) -> str:
        seeds = f"{self.runs} seed{'s' if self.runs != 1 else ''}"
        return (f"gate failed: {self.chain} expected {self.expected}, got {self.found()} "
                f"in {seeds}")


def expectations(args: argparse.Namespace, plan: RunPlan) -> dict[str, str]:
    """The verdict expected of each judged chain (``{}`` without ``--fail-on-violation``),
    checked before anything runs: ``--expect`` must be ``CHAIN=safe|unsafe`` for a chain of
    the run; by default :data:`GATED_CHAIN`, when it runs, is expected safe."""
    given: dict[str, str] = {}
    for text in getattr(args, "expect", None) or []:
        chain, sep, verdict = (part.strip() for part in text.partition("="))
        if not sep or not chain:
            raise UsageError(f"--expect: expected CHAIN=safe|unsafe, got {text!r}")
        if verdict not in VERDICTS:
            raise UsageError(f"--expect {text}: the verdict must be safe or unsafe, "
                             f"got {verdict!r}")
        if chain not in plan.chains:
            known = builtin_chain_names()
            raise UsageError(
                f"--expect {text}: chain {chain!r} is not in this run (chains: "
                f"{', '.join(plan.chains)}); " + (f"add --chain {chain}" if chain in known
                                                   else f"known chains: {', '.join(known)}"))
        if given.get(chain, verdict) != verdict:
            raise UsageError(f"--expect: {chain} is expected both {given[chain]} and {verdict}")
        given[chain] = verdict
    if not args.fail_on_violation:
        if given:
            raise UsageError("--expect judges only with --fail-on-violation; add it")
        return {}
    expected = {GATED_CHAIN: "safe"} if GATED_CHAIN in plan.chains else {}
    expected.update(given)
    if not expected:
        raise UsageError(f"--fail-on-violation: nothing to judge: the run has no {GATED_CHAIN} "
                         f"chain and no --expect; add --chain {GATED_CHAIN} or "
                         "--expect CHAIN=safe|unsafe")
    return {chain: expected[chain] for chain in plan.chains if chain in expected}


def _count(run: RunSummary, name: str) -> int:
    return int(run.entry.get("violations", {}).get(name, {}).get("violations", 0))


def _first_job(run: RunSummary, names: Sequence[str]) -> str | None:
    jobs = [job for name in names
            for job in run.entry.get("violations", {}).get(name, {}).get("jobs", [])[:1]]
    return min(jobs) if jobs else None


def judge_gate(expected: Mapping[str, str],
               runs: Mapping[str, Sequence[RunSummary]]) -> list[Verdict]:
    """Each expected chain judged over all its runs. The offending run of a failed ``safe`` is
    the first seed with a safety violation (at its first violating job), else the first seed
    with the violated liveness property (L1: a lost or stuck job)."""
    verdicts: list[Verdict] = []
    for chain, verdict in expected.items():
        names = VERDICTS[verdict]
        chain_runs = runs[chain]
        counts = {name: sum(_count(run, name) for run in chain_runs) for name in names}
        seed, job = chain_runs[0].seed, None
        violated = [name for name in names if counts[name]]
        for group in ([n for n in violated if n in SAFETY_CHECKS],
                      [n for n in violated if n not in SAFETY_CHECKS]):
            offending = next((run for run in chain_runs if _first_job(run, group)), None)
            if offending is not None:
                seed, job = offending.seed, _first_job(offending, group)
                break
        verdicts.append(Verdict(chain, verdict, counts, len(chain_runs), seed, job))
    return verdicts


def apply_gate(expected: Mapping[str, str], runs: Mapping[str, Sequence[RunSummary]], *,
               command: str, reproduce: Callable[[str, int, str | None], str],
               out: TextIO, err: TextIO, quiet: bool) -> int:
    """Judge the run (:func:`judge_gate`): the verdicts on one ``gate:`` line of ``out``
    (unless ``quiet``), one line on ``err`` per failed expectation (the chain, the violated
    properties and counts, ``reproduce(chain, seed, job)``: how to rerun the offending run),
    and the exit status: :data:`EXIT_VIOLATION` if any expectation failed."""
    if not expected:
        return EXIT_OK
    verdicts = judge_gate(expected, runs)
    if not quiet:
        unjudged = [chain for chain in runs if chain not in expected]
        out.write("gate: " + "; ".join(
            f"{v.chain} expected {v.expected}: {'passed' if v.passed else 'FAILED'} "
            f"({v.found()})" for v in verdicts)
            + (f"; not judged: {', '.join(unjudged)}" if unjudged else "") + "\n")
    failed = [v for v in verdicts if not v.passed]
    for v in failed:
        err.write(f"{PROG} {command}: {v.line()}; {reproduce(v.chain, v.seed, v.job)}\n")
    return EXIT_VIOLATION if failed else EXIT_OK


# --------------------------------------------------------------------------- output


def progress_for(args: argparse.Namespace, total: int, err: TextIO) -> Progress:
    enabled = not args.quiet and (args.progress or bool(getattr(err, "isatty", bool)()))
    return Progress(total, enabled=enabled, stream=err)


def brief(summary: RunSummary) -> str:
    """A finished run's headline figures, for its progress line."""
    entry = summary.entry
    checks = " ".join(f"{name} {entry.get(name.lower() + '_violations', '-')}"
                      for name in ("S1", "S2", "S3", "L1"))
    made = entry.get("realised_double")
    return (f"{entry.get('overlapping_jobs', '-')} jobs processed twice at once; "
            f"{'-' if made is None else made} of {entry.get('planned_double', '-')} planned "
            f"double hand-outs made; {checks}")


#: The output options, in the order the commands pass them to :func:`check_writable`
#: positionally (``sim run``: --json, --csv; ``sim live``: --json, --csv, --dashboard).
_OUTPUT_OPTIONS: Final = ("--json", "--csv", "--dashboard")


def check_writable(*paths: Path | None, **named: Path | None) -> None:
    """Fail before minutes of simulation, not after, when an output cannot be written, or
    when two outputs are the same file: ``sim live --dashboard P --json P`` wrote the
    dashboard, then the JSON report over it, without a word (adversarial review).

    Outputs are named by option in the refusal: a keyword argument is its option
    (``dashboard=`` is ``--dashboard``); positional ones are --json, --csv and --dashboard in
    that order (:data:`_OUTPUT_OPTIONS`), as the commands pass them."""
    outputs = [(option, path) for option, path in zip(_OUTPUT_OPTIONS, paths, strict=False)]
    outputs += [(f"--{name.replace('_', '-')}", path) for name, path in named.items()]
    if len(paths) > len(_OUTPUT_OPTIONS):
        outputs += [(f"output {i + 1}", path) for i, path in
                    enumerate(paths[len(_OUTPUT_OPTIONS):], start=len(_OUTPUT_OPTIONS))]
    seen: list[tuple[str, Path]] = []
    for option, path in outputs:
        if path is None:
            continue
        if path.is_dir() or not _writable_folder(path.parent):
            raise UsageError(f"cannot write {path}")
        for other_option, other in seen:
            if _same_file(path, other):
                raise UsageError(f"{other_option} and {option} are the same file ({path}): "
                                 "give each output a path of its own")
        seen.append((option, path))


def _same_file(a: Path, b: Path) -> bool:
    """Whether two output paths are one file: the same path once resolved (``out.json`` and
    ``./x/../out.json``, a symbolic link), or, when both exist, the same inode (a hard link,
    a case-insensitive file system)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _writable_folder(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    try:
        write_csv(path, rows)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None

"""What every ``python -m sim`` command shares: flags, the run plan, progress, writers, exit codes.

Both command modules (:mod:`sim._cli` for ``run``/``sweep``/``replay``, :mod:`sim.live._cli`
for ``live``/``serve``) build on this one, and nothing here imports either of them, so the
command layer has no import circle. The program name, the gated chain and the exit codes are
defined here once.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NoReturn, TextIO

from verifier import builtin_chain_names

from ._report import Progress, RunSummary, write_csv
from ._scenario import Scenario
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
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_VIOLATION",
    "GATED_CHAIN",
    "PROG",
    "Parser",
    "brief",
    "check_gate",
    "check_writable",
    "describe",
    "output_flags",
    "progress_for",
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
#: The chain ``--fail-on-violation`` judges: the one that claims S1-S3 inside its model.
GATED_CHAIN: Final = "hardened"


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


# --------------------------------------------------------------------------- flags


def scenario_flags(parser: argparse.ArgumentParser, *, many_chains: bool) -> None:
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


def describe(plan: RunPlan) -> str:
    sc = plan.scenario
    model = "inside the timing model" if sc.inside_model() else "OUTSIDE the timing model"
    seeds = (str(plan.seeds[0]) if len(plan.seeds) == 1
             else f"{plan.seeds[0]}..{plan.seeds[-1]}")
    return (f"scenario {sc.name} ({scenario_source(plan.ref)}): {sc.encoders} encoders, "
            f"{sc.jobs} jobs, lie_rate {sc.lie_rate:g}, {model}; "
            f"{len(plan.chains)} chain(s), seed(s) {seeds}")


def check_gate(args: argparse.Namespace, plan: RunPlan) -> None:
    """``--fail-on-violation`` needs the gated chain in the plan: refuse before running."""
    if args.fail_on_violation and GATED_CHAIN not in plan.chains:
        raise UsageError(f"--fail-on-violation judges the {GATED_CHAIN} chain; "
                         f"add --chain {GATED_CHAIN}")


# --------------------------------------------------------------------------- output


def progress_for(args: argparse.Namespace, total: int, err: TextIO) -> Progress:
    enabled = not args.quiet and (args.progress or bool(getattr(err, "isatty", bool)()))
    return Progress(total, enabled=enabled, stream=err)


def brief(summary: RunSummary) -> str:
    """A finished run's headline figures, for its progress line."""
    entry = summary.entry
    checks = " ".join(f"{name} {entry.get(name.lower() + '_violations', '-')}"
                      for name in ("S1", "S2", "S3", "L1"))
    return f"{entry.get('double_assigned', '-')} double-assigned, {checks}"


def check_writable(*paths: Path | None) -> None:
    """Fail before minutes of simulation, not after, when an output cannot be written."""
    for path in paths:
        if path is not None and (path.is_dir() or not _writable_folder(path.parent)):
            raise UsageError(f"cannot write {path}")


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

"""Named scenario files, scenario paths, ``KEY=VALUE`` overrides, and the run plan.

A :class:`RunPlan` is what every command resolves before it simulates anything: the world
(a scenario with its overrides), the chains and the seeds. It is plain data, so the tools
(``run_sweep``, ``run_replay``) take it from any caller, not only from the command line.

A scenario is a TOML file of :class:`~sim._scenario.Scenario` parameters, flat or grouped in
sub-tables (``[world]``, ``[gateway]``, ``[monitor]``, ``[database]``, ``[aid]``,
``[encoders]``, ``[faults]``, ``[run]``) that only exist for the reader: they are flattened,
and the same key in two tables is an error rather than a silent "last one wins".

Why so strict: a scenario is the *world* a report's numbers come from. A misspelt key
(``lie-rate``, ``reasign_timeout``) silently ignored would publish a comparison of chains in
a world nobody asked for, so every unknown key, unknown table and wrong type stops the run with
one line that names the key and the file.

The built-in scenarios ship inside the package (``sim/scenarios/*.toml``) and are found through
:mod:`importlib.resources`, so ``--scenario 3speak-2026`` works from an installed wheel as well
as from a checkout.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from ._scenario import Scenario, ScenarioError

__all__ = [
    "SCENARIO_TABLES",
    "RunPlan",
    "UsageError",
    "apply_overrides",
    "list_scenarios",
    "load_scenario",
    "parse_assignment",
    "parse_value",
    "scenario_from_toml",
    "scenario_names",
    "scenario_source",
]

#: The sub-tables a scenario file may group its keys in (any other table is a typo).
SCENARIO_TABLES: Final = frozenset(
    {"world", "gateway", "monitor", "database", "aid", "encoders", "faults", "run"}
)
_PACKAGE: Final = "sim"
_FOLDER: Final = "scenarios"
#: What each annotation of :class:`Scenario` accepts. ``bool`` is excluded everywhere: TOML's
#: ``true`` is not a count or a rate, and ``True == 1`` would let it through unnoticed.
_KINDS: Final[dict[str, tuple[type, ...]]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
}


# --------------------------------------------------------------------------- finding files


def _packaged() -> dict[str, Any]:
    """Built-in scenario name → resource (a Traversable), from the installed package."""
    folder = resources.files(_PACKAGE).joinpath(_FOLDER)
    out: dict[str, Any] = {}
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.endswith(".toml") and entry.is_file():
                out[entry.name[: -len(".toml")]] = entry
    return dict(sorted(out.items()))


def scenario_names() -> list[str]:
    """The built-in scenarios, sorted (``default``, ``3speak-2026``, ...)."""
    return list(_packaged())


def list_scenarios() -> list[str]:
    """The built-in scenario names, sorted (the same list as :func:`scenario_names`)."""
    return scenario_names()


def _looks_like_path(ref: str) -> bool:
    """A path when it says so (``.toml``, a separator); a bare word is a built-in name first,
    so a stray file called ``default`` in the working folder cannot change the README's run."""
    if ref.endswith(".toml") or "/" in ref or "\\" in ref:
        return True
    return ref not in _packaged() and Path(ref).is_file()


def scenario_source(ref: str) -> str:
    """How error messages and reports name the file behind ``ref``."""
    if _looks_like_path(ref):
        return ref
    return f"sim/scenarios/{ref}.toml"


def load_scenario(ref: str) -> Scenario:
    """A built-in scenario by name, or a TOML file by path.

    A name that is neither a built-in scenario nor an existing file is an error listing the
    built-in names (``--scenario defualt`` must not fall back to anything).
    """
    if _looks_like_path(ref):
        path = Path(ref)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ScenarioError(f"{ref}: scenario file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"{ref}: cannot read the scenario file ({exc})") from None
        return scenario_from_toml(text, source=ref, name=path.stem)
    packaged = _packaged()
    entry = packaged.get(ref)
    if entry is None:
        known = ", ".join(packaged) or "(none installed)"
        raise ScenarioError(f"unknown scenario {ref!r}: not a file, and not one of: {known}")
    return scenario_from_toml(entry.read_text(encoding="utf-8"), source=scenario_source(ref),
                              name=ref)


# --------------------------------------------------------------------------- parsing


def scenario_from_toml(text: str, *, source: str, name: str) -> Scenario:
    """Parse and validate one scenario file; every error message starts with ``source``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: invalid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    where: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in SCENARIO_TABLES:
                known = ", ".join(sorted(SCENARIO_TABLES))
                raise ScenarioError(f"{source}: unknown table [{key}] (known: {known})")
            for sub_key, sub_value in value.items():
                _put(flat, where, sub_key, sub_value, f"[{key}]", source)
        else:
            _put(flat, where, key, value, "the top level", source)
    flat.setdefault("name", name)
    return _build(Scenario(), flat, source)


def _put(flat: dict[str, Any], where: dict[str, str], key: str, value: Any, place: str,
         source: str) -> None:
    if isinstance(value, dict):
        raise ScenarioError(f"{source}: {key}: tables nest one level deep at most")
    if key in flat:
        raise ScenarioError(f"{source}: {key}: set twice (in {where[key]} and in {place})")
    flat[key] = value
    where[key] = place


def _fields() -> dict[str, str]:
    """Field name → its annotation as text (``"float | None"``), resolved or not."""
    return {f.name: f.type.__name__ if isinstance(f.type, type) else str(f.type)
            for f in dataclasses.fields(Scenario)}


def _check(changes: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Unknown keys and wrong types, named; integral floats accepted for integer fields."""
    fields = _fields()
    out: dict[str, Any] = {}
    for key, value in changes.items():
        annotation = fields.get(key)
        if annotation is None:
            hint = _close_match(key, fields)
            raise ScenarioError(f"{source}: unknown scenario parameter {key!r}{hint}")
        kinds = [part.strip() for part in annotation.split("|")]
        if value is None:
            if "None" not in kinds:
                raise ScenarioError(f"{source}: {key}: a value is required")
            out[key] = None
            continue
        if "int" in kinds and isinstance(value, float) and value.is_integer():
            value = int(value)
        accepted = tuple(t for kind in kinds for t in _KINDS.get(kind, ()))
        if isinstance(value, bool) or not isinstance(value, accepted):
            expected = " or ".join(k for k in kinds if k != "None")
            raise ScenarioError(
                f"{source}: {key}: expected {expected}, got {type(value).__name__} {value!r}"
            )
        out[key] = value
    return out


def _close_match(key: str, fields: Iterable[str]) -> str:
    import difflib

    match = difflib.get_close_matches(key.replace("-", "_"), list(fields), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _build(base: Scenario, changes: Mapping[str, Any], source: str) -> Scenario:
    checked = _check(changes, source)
    try:
        scenario = base.replace(**checked)
        # The chains' timing model is built from the same numbers: a value the scenario
        # accepts but the model refuses (retry_interval = 0) is caught here, not mid-run.
        scenario.timing_model()
    except ValueError as exc:  # ScenarioError included
        raise ScenarioError(f"{source}: {exc}") from None
    return scenario


def apply_overrides(scenario: Scenario, overrides: Mapping[str, Any],
                    source: str = "--set") -> Scenario:
    """``scenario`` with ``overrides`` applied, checked exactly like a scenario file."""
    if not overrides:
        return scenario
    return _build(scenario, overrides, source)


def parse_value(text: str) -> Any:
    """A command-line value as a TOML literal (``0.05``, ``300``, ``"getjob"``, ``1e3``).

    A bare word that is not a TOML literal is taken as a string, so ``assignment=getjob``
    needs no shell quoting; ``none`` (any case) means "unset" for optional parameters such
    as ``faults_until``. The scenario's own checks then judge the value.
    """
    stripped = text.strip()
    if stripped.lower() in ("none", "null"):
        return None
    try:
        return tomllib.loads(f"v = {stripped}")["v"]
    except tomllib.TOMLDecodeError:
        return stripped


def parse_assignment(text: str, flag: str = "--set") -> tuple[str, Any]:
    """``KEY=VALUE`` → ``(key, value)``; dashes in the key are read as underscores."""
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise ScenarioError(f"{flag} {text!r}: expected KEY=VALUE")
    if not value.strip():
        raise ScenarioError(f"{flag} {text!r}: no value after '='")
    return key, parse_value(value)


class UsageError(ValueError):
    """A command-line value that cannot be used (unknown chain, bad --grid, unreadable tape).

    Like :class:`ScenarioError`, its message is one line that names the flag; the command
    line prints it and exits with status 2.
    """


@dataclass(frozen=True)
class RunPlan:
    """The world, its overrides, the chains and the seeds of one command.

    ``ref`` is the scenario as the user named it (a built-in name or a path), kept so that
    every report can print the command that replays it.
    """

    scenario: Scenario
    ref: str
    overrides: dict[str, Any]
    chains: list[str]
    seeds: list[int]

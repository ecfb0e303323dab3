"""Every column of every table, CSV and JSON is defined: in sim/_columns.py, in each command's
``--help``, and in the README. Walks real outputs, so a metric added without a definition, or a
definition dropped from the help or the README, fails here."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from sim.__main__ import main
from sim._columns import COLUMNS, TABLE_HEADERS, undefined

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--set", "encoders=4", "--set", "jobs=12", "--lie-rate", "0.3"]


def run_main(argv: list[str]) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, stdout=out, stderr=err) == 0, err.getvalue()
    return out.getvalue()


def header(path: Path) -> list[str]:
    with path.open(newline="") as stream:
        return next(csv.reader(stream))


def keys(value: Any, prefix: str = "") -> list[str]:
    """A report's keys, nested ones as ``parent.child``, except inside the free-form maps
    (the scenario's parameters, a run's outcomes and violations, the grid)."""
    out: list[str] = []
    if isinstance(value, dict):
        for key, sub in value.items():
            name = f"{prefix}{key}"
            out.append(name)
            if key in ("scenario", "scenarios", "outcomes", "violations", "grid", "params",
                       "overrides", "chains", "tables"):
                continue  # free-form maps, or walked on their own
            out += keys(sub, f"{name}." if isinstance(sub, dict) else "")
    elif isinstance(value, list):
        for item in value:
            out += keys(item, prefix)
    return out


def table_headers(text: str) -> list[str]:
    """The headers of every plain-text table in ``text`` (the line above a rule of dashes)."""
    lines = text.splitlines()
    found: list[str] = []
    for above, line in itertools.pairwise(lines):
        if line.startswith("---") and set(line) <= {"-", " "}:
            found += re.split(r"\s{2,}", above.strip())[1:]  # the first is the row label
            found.append(re.split(r"\s{2,}", above.strip())[0])
    return found


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("columns")
    run_out = run_main(["run", *TINY, "--seeds", "2", "--chain", "trust-gateway", "--chain",
                        "hardened", "--json", str(tmp / "r.json"), "--csv", str(tmp / "r.csv")])
    # Without TINY's --lie-rate: a swept key set by another option too is refused.
    sweep_out = run_main(["sweep", *TINY[:4], "--chain", "hardened", "--chain", "documented",
                          "--grid", "lie_rate=0,0.3", "--seeds", "2", "--workers", "1",
                          "--out", str(tmp / "s")])
    research_out = run_main(["research", "--set", "encoders=4", "--set", "jobs=10", "--seeds",
                             "2", "--lie-rates", "0,0.3", "--lag-means", "0,5",
                             "--no-ablation", "--workers", "1", "--out", str(tmp / "q")])
    return {"tmp": tmp, "run": run_out, "sweep": sweep_out, "research": research_out}


def test_every_csv_column_is_defined(outputs):
    tmp = outputs["tmp"]
    paths = [tmp / "r.csv", tmp / "s" / "sweep.csv", *sorted((tmp / "q").glob("*.csv"))]
    assert len(paths) == 7  # research without its ablation: no ablation.csv
    for path in paths:
        columns = header(path)
        assert columns, path
        assert undefined(columns) == [], path.name


def test_every_json_key_is_defined(outputs):
    tmp = outputs["tmp"]
    run = json.loads((tmp / "r.json").read_text())
    names = keys(run) + keys(list(run["chains"].values()))
    sweep = json.loads((tmp / "s" / "sweep.json").read_text())
    names += keys(sweep)
    research = json.loads((tmp / "q" / "research.json").read_text())
    names += keys(research)
    names += [f"{k}.{s}" for rows in research["tables"].values() for row in rows
              for k, v in row.items() if isinstance(v, dict) for s in v]
    assert "overlapping_per_1000_ci" in names and "vs_baseline.overlapping_per_1000" in names
    assert undefined(names) == []


def test_every_printed_table_header_is_defined(outputs):
    for command in ("run", "sweep", "research"):
        headers = table_headers(outputs[command])
        assert headers, command
        assert [h for h in headers if h not in TABLE_HEADERS] == [], command
    assert "twice at once/1k [95% CI]" in table_headers(outputs["run"])


def test_the_sweep_header_does_not_print_a_swept_parameter_as_fixed(outputs):
    first = outputs["sweep"].splitlines()[0]
    assert "lie_rate swept" in first and "lie_rate 0.1" not in first  # the scenario's own


@pytest.mark.parametrize("command", ["run", "sweep", "research"])
def test_every_column_is_defined_in_the_help(command, capsys):
    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    missing = [name for name in [*COLUMNS, *TABLE_HEADERS] if f"{name}:" not in text]
    assert missing == []
    assert "95% Student-t interval" in text
    # Only research computes paired differences, so only its help claims them.
    assert ("differences between chains are paired" in text) is (command == "research")


def test_every_column_is_defined_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Research figures"):]
    section = section[:section.index("\n## ", 4)]
    missing = [name for name in [*COLUMNS, *TABLE_HEADERS] if f"`{name}`" not in section]
    assert missing == []


def test_research_without_its_ablation_prints_no_ablation_table(outputs):
    """A review (2026-12-03) found ``--no-ablation`` still printed the ablation's heading and an
    empty table."""
    assert "Research table" in outputs["research"]
    assert "differences between chains are paired" in outputs["research"]  # it computes them
    assert "Ablation" not in outputs["research"]

"""``python -m sim research`` end to end on a tiny grid: every file written, every column
defined, the paired differences what the per-run CSV says, the same bytes twice."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from sim.__main__ import main
from sim._columns import undefined
from sim._scenario_files import scenario_names

TINY = ["research", "--set", "encoders=4", "--set", "jobs=12", "--seeds", "2",
        "--lie-rates", "0,0.3", "--lag-means", "0,5", "--workers", "1"]
FILES = ("research.csv", "cost.csv", "ablation.csv", "lie_rate.csv", "sensitivity.csv",
         "runs.csv", "research.json", "research.txt", "lie_rate.png", "ablation.png",
         "sensitivity.png")


def research(out_dir: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*TINY, *extra, "--out", str(out_dir)], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, bytes]]:
    out_dir = tmp_path_factory.mktemp("research") / "out"
    code, out, err = research(out_dir)
    assert code == 0, err
    return out_dir, out, {name: (out_dir / name).read_bytes() for name in FILES}


def test_every_file_is_written_and_announced(first):
    out_dir, out, files = first
    for name in FILES:
        assert files[name], name
        assert f"wrote {out_dir / name}" in out
    for name in ("lie_rate.png", "ablation.png", "sensitivity.png"):
        assert files[name].startswith(b"\x89PNG\r\n\x1a\n")
    assert (out_dir / "research.txt").read_text() in out  # the printed tables are the file


def test_the_same_command_writes_the_same_bytes(first):
    out_dir, _, files = first
    shutil.rmtree(out_dir)
    code, _, err = research(out_dir)
    assert code == 0, err
    again = {name: (out_dir / name).read_bytes() for name in FILES}
    assert [n for n in FILES if again[n] != files[n]] == []


def test_every_csv_column_and_json_key_is_defined(first):
    out_dir, _, _ = first
    for name in FILES:
        if name.endswith(".csv"):
            with (out_dir / name).open(newline="") as stream:
                header = next(csv.reader(stream))
            assert undefined(header) == [], name
    report = json.loads((out_dir / "research.json").read_text())
    assert undefined(report) == []
    for table, table_rows in report["tables"].items():
        assert table_rows, table
        for row in table_rows:
            keys = [k for k in row if not isinstance(row[k], dict)]
            keys += [f"{k}.{s}" for k, v in row.items() if isinstance(v, dict) for s in v]
            assert undefined(keys) == [], table


def test_the_tables_cover_every_chain_scenario_and_point(first):
    out_dir, out, _ = first
    report = json.loads((out_dir / "research.json").read_text())
    tables = report["tables"]
    chains = ["trust-gateway", "documented", "hardened"]
    assert [(r["scenario"], r["chain"]) for r in tables["research"]] == [
        (s, c) for s in ("default", "3speak-2026") for c in chains]
    assert [(r["lie_rate"], r["chain"]) for r in tables["lie_rate"]] == [
        (p, c) for p in (0, 0.3) for c in chains]
    assert [r["monitor_lag_mean"] for r in tables["sensitivity"]] == [0, 5]
    # The cost of safety also on the held-out fleet with every community node on the monitor.
    assert [(r["scenario"], r["chain"]) for r in tables["cost"]] == [
        (s, c) for s in ("default", "3speak-2026") for c in chains] + [
        ("3speak-2026+monitor", "trust-gateway"), ("3speak-2026+monitor", "hardened")]
    fleet = [r for r in rows(out_dir / "runs.csv") if r["scenario"] == "3speak-2026+monitor"]
    assert {r["chain"] for r in fleet} == {"trust-gateway", "hardened"} and len(fleet) == 4
    assert {r["chain"] for r in tables["ablation"]} >= {"hardened", "hardened-without-settle"}
    expected = "ablation" if "ablation" in scenario_names() else "default"
    assert report["ablation_scenario"] == expected
    assert {r["scenario"] for r in tables["ablation"]} == {expected}
    assert "95% Student-t interval" in out and "baseline trust-gateway" in out


def test_paired_differences_are_the_mean_of_the_per_seed_differences(first):
    out_dir, _, _ = first
    runs = rows(out_dir / "runs.csv")
    report = json.loads((out_dir / "research.json").read_text())

    def per_seed(scenario: str, chain: str, name: str) -> list[float]:
        found = [r for r in runs if r["scenario"] == scenario and r["chain"] == chain
                 and float(r["lie_rate"]) == (0.1 if scenario == "default" else 0.05)
                 and float(r["monitor_lag_mean"]) == (0.2 if scenario == "default" else 0.3)]
        assert [r["seed"] for r in found] == ["1", "2"]
        return [float(r[name]) for r in found]

    for row in report["tables"]["research"]:
        scenario, chain = row["scenario"], row["chain"]
        mine = per_seed(scenario, chain, "overlapping_per_1000")
        base = per_seed(scenario, "trust-gateway", "overlapping_per_1000")
        diff = row["vs_baseline"]["overlapping_per_1000"]
        assert diff == pytest.approx(sum(a - b for a, b in zip(mine, base, strict=True)) / 2,
                                     abs=1e-5)
        if chain == "trust-gateway":
            assert diff == 0 and row["vs_baseline"]["overlapping_per_1000_ci"] == [0, 0]
        assert row["overlapping_per_1000"] == pytest.approx(sum(mine) / 2, abs=1e-5)


def test_an_unknown_baseline_is_a_usage_error(tmp_path):
    code, out, err = research(tmp_path / "x", "--baseline", "nope")
    assert code == 2 and out == "" and "nope" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_a_held_out_scenario_named_like_the_default_is_refused(tmp_path):
    """Rows are told apart by scenario name: a copy of default.toml as the held-out scenario
    was mixed into the default tables without a word (researcher review, session 15)."""
    copy = tmp_path / "default.toml"
    copy.write_text(Path("sim/scenarios/default.toml").read_text().replace(
        "lie_rate = 0.1", "lie_rate = 0.3"))
    code, out, err = research(tmp_path / "x", "--held-out", str(copy), "--no-ablation")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--held-out" in err and "'default'" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("extra", "needle"), [
    (("--seed", "-5"), "--seed"),
    (("--out", "/proc/nope/x"), "--out"),
])
def test_what_would_fail_after_the_runs_is_refused_before_them(tmp_path, extra, needle):
    """A negative seed (which no printed replay command could rerun) and an output folder
    nobody can write are refused at once, not after minutes of runs."""
    out, err = io.StringIO(), io.StringIO()
    argv = [*TINY, "--out", str(tmp_path / "x"), *extra]
    code = main(argv, stdout=out, stderr=err)
    assert code == 2 and out.getvalue() == "" and needle in err.getvalue()
    assert err.getvalue().count("\n") == 1


def test_the_report_is_the_same_bytes_on_other_workers_executors_and_out_dirs(first, tmp_path):
    """research.json records the command without --workers, --executor, --out (and --quiet,
    --progress): they change where and how fast it runs, not what it computes."""
    _, _, files = first
    other = tmp_path / "elsewhere"
    out, err = io.StringIO(), io.StringIO()
    argv = [*TINY[:-1], "2", "--executor", "local", f"--out={other}", "--quiet"]
    assert main(argv, stdout=out, stderr=err) == 0, err.getvalue()
    for name in FILES:
        if name.endswith((".json", ".csv", ".txt")):
            assert (other / name).read_bytes() == files[name], name
    command = json.loads(files["research.json"])["command"]
    assert "--workers" not in command and "--out" not in command and "--set" in command


def test_paired_n_is_per_figure_and_a_row_without_pairs_is_not_none():
    from sim._metrics import paired_difference
    from sim._research import _excludes_zero, realised_lag_mean

    assert paired_difference([None, .5, .7], [.4, None, .5])["n"] == 1
    fmt = _excludes_zero("vs")
    one_pair = {"overlapping_per_1000": 2.0, "overlapping_per_1000_ci": [None, None],
                "overlapping_per_1000_n": 1}
    assert fmt({"vs": one_pair}) == "n/a"  # not "none": nothing was measured
    flat = {"overlapping_per_1000": 2.0, "overlapping_per_1000_ci": [2.0, 2.0],
            "overlapping_per_1000_n": 5}
    assert fmt({"vs": flat}) == "twice (0-width)"  # no interval to claim from
    spread = {"overlapping_per_1000": 2.0, "overlapping_per_1000_ci": [1.0, 3.0],
              "overlapping_per_1000_n": 5}
    assert fmt({"vs": spread}) == "twice"
    zero = {"overlapping_per_1000": 0.0, "overlapping_per_1000_ci": [0.0, 0.0],
            "overlapping_per_1000_n": 5}
    assert fmt({"vs": zero}) == "none"
    assert realised_lag_mean(0.0, 5.0) == 0.0
    assert realised_lag_mean(5.0, 5.0) == pytest.approx(5.0 * (1 - 2.718281828459045 ** -1))


def test_the_research_rows_give_each_figures_pairs(first):
    out_dir, _, _ = first
    report = json.loads((out_dir / "research.json").read_text())
    row = report["tables"]["research"][0]
    assert row["vs_baseline"]["overlapping_per_1000_n"] == 2
    for lag in report["tables"]["sensitivity"]:
        assert lag["monitor_lag_realised_mean"] <= lag["monitor_lag_mean"]


def test_every_run_row_carries_the_command_that_replays_it(first, tmp_path):
    """runs.csv named scenarios no command loads (``3speak-2026+monitor``) and gave no replay
    command (researcher review, session 15). Each row's ``replay`` reruns that very run: the
    same command as ``run`` gives the row's figures."""
    import shlex

    out_dir, _, _ = first
    table = rows(out_dir / "runs.csv")
    assert all(r["replay"].startswith("python -m sim replay --scenario ") for r in table)
    fleet = next(r for r in table if r["scenario"].endswith("+monitor"))
    assert "--set monitor_fraction=1.0" in fleet["replay"]
    argv = shlex.split(fleet["replay"])[3:]  # after "python -m sim"
    argv[0] = "run"
    report = tmp_path / "r.json"
    out, err = io.StringIO(), io.StringIO()
    assert main([*argv, "--json", str(report), "--quiet"], stdout=out, stderr=err) == 0, \
        err.getvalue()
    entry = json.loads(report.read_text())["chains"][fleet["chain"]]["runs"][0]
    for figure in ("committed", "overlapping_jobs", "wasted_encode_h_per_1000"):
        assert str(entry[figure]) == fleet[figure] or float(entry[figure]) == float(
            fleet[figure]), figure


def test_no_ablation_into_a_used_folder_leaves_no_older_ablation_behind(first, tmp_path):
    """``--no-ablation`` into a folder an earlier research run wrote left its ablation.csv and
    ablation.png, of other seeds, beside the new files (researcher review, session 15)."""
    import shutil

    out_dir, _, _ = first
    used = tmp_path / "used"
    shutil.copytree(out_dir, used)
    code, _, err = research(used, "--no-ablation")
    assert code == 0, err
    assert not (used / "ablation.csv").exists() and not (used / "ablation.png").exists()
    assert (used / "research.csv").exists()


def test_the_report_records_every_parameter_of_every_scenario_it_ran(first):
    """Scenario names alone left no trace of a built-in TOML changed later, nor of --set
    (researcher review, session 15)."""
    out_dir, _, _ = first
    report = json.loads((out_dir / "research.json").read_text())
    scenarios = report["scenarios"]
    assert {"default", report["held_out"], f"{report['held_out']}+monitor"} <= set(scenarios)
    for params in scenarios.values():
        assert params["encoders"] == 4 and params["jobs"] == 12  # TINY's --set
    assert scenarios[f"{report['held_out']}+monitor"]["monitor_fraction"] == 1.0

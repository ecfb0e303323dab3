"""``python -m sim``: run, sweep and replay through ``main([...])``, on tiny worlds.

Every test drives the real command line (parser, scenario loading, runs, reports, plots) with
outputs in ``tmp_path``; worlds are a few encoders and a dozen jobs so the file stays fast.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
from pathlib import Path

import pytest

from sim import CheckResult, History, RunResult, Scenario
from sim.__main__ import main
from sim._replay import choose_job
from sim._report import Progress, csv_rows, format_table, stable
from verifier import builtin_chain_names

TINY = ["--set", "encoders=4", "--set", "jobs=12"]
RACY = [*TINY, "--lie-rate", "0.5"]
#: A tiny world where trust-gateway processes double-handed jobs twice (S1, S2) and the
#: documented chain loses jobs (L1), while hardened keeps every property.
BROKEN = ["--set", "encoders=5", "--set", "jobs=15", "--lie-rate", "0.4"]
BUILTIN = "verifier.protocol:OwnershipProtocol"
TRUSTING = "tests.sim.protocols:TrustingProtocol"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REQUIRED = ("jobs", "planned_double", "double_assigned", "overlapping_jobs",
            "overlapping_per_1000", "overlapping_per_1000_ci", "restarts", "restarts_per_1000",
            "s1_violations", "s2_violations", "s3_violations", "l1_violations",
            "race_prevention_rate", "race_prevention_rate_ci", "wasted_encode_s")


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


# --------------------------------------------------------------------------- run


def test_run_writes_json_and_csv_and_prints_the_comparison(tmp_path):
    report_path, csv_path = tmp_path / "r.json", tmp_path / "m.csv"
    argv = ["run", *TINY, "--chain", "trust-gateway", "--chain", "hardened", "--seeds", "2",
            "--json", str(report_path), "--csv", str(csv_path)]
    code, out, err = run_main(argv)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert set(report) >= {"scenario", "seeds", "seed", "chains", "replay", "command"}
    assert report["seed"] == 1 and report["seeds"] == [1, 2]
    assert report["scenario"]["encoders"] == 4 and report["scenario"]["jobs"] == 12
    assert report["overrides"] == {"encoders": 4, "jobs": 12}
    assert list(report["chains"]) == ["hardened", "trust-gateway"]  # sort_keys
    for chain in ("trust-gateway", "hardened"):
        entry = report["chains"][chain]
        assert set(REQUIRED) <= set(entry), set(REQUIRED) - set(entry)
        assert [run["seed"] for run in entry["runs"]] == [1, 2]
        assert entry["jobs"] == 24 == sum(run["jobs"] for run in entry["runs"])
        assert entry["replay"].startswith(
            f"python -m sim replay --scenario default --chain {chain} --seed ")
    assert report["command"] == "python -m sim " + shlex.join(argv)
    assert report["replay"].startswith("python -m sim replay ")
    assert report["protocol"] == BUILTIN and "--protocol" not in report["replay"]

    rows = read_csv(csv_path)
    assert [(r["chain"], r["seed"]) for r in rows] == [
        ("trust-gateway", "1"), ("trust-gateway", "2"), ("hardened", "1"), ("hardened", "2")]
    assert {"jobs", "s2_violations", "wasted_encode_s"} <= set(rows[0])

    assert "race prevention [95% CI]" in out and "trust-gateway" in out and "hardened" in out
    assert "twice at once/1k [95% CI]" in out and "95% Student-t interval" in out
    # A run computes no difference between chains, so its report claims none (research does).
    assert "paired" not in out and "paired" not in report["interval"]
    assert "seed: 1" in out and f"replay: {report['replay']}" in out
    assert f"protocol {BUILTIN} (built-in)" in out.splitlines()[0]
    assert err == ""  # no progress bar on a pipe, for a sub-second run


def test_default_chains_are_every_builtin_chain(tmp_path):
    csv_path = tmp_path / "m.csv"
    code, out, _ = run_main(["run", *TINY, "--csv", str(csv_path), "--quiet"])
    assert code == 0 and out == ""
    assert [r["chain"] for r in read_csv(csv_path)] == builtin_chain_names()


def test_seeds_k_runs_k_seeds_and_pools_them_with_an_interval(tmp_path):
    path = tmp_path / "r.json"
    code, _, _ = run_main(["run", *RACY, "--chain", "documented", "--seed", "5",
                           "--seeds", "3", "--json", str(path), "--quiet"])
    assert code == 0
    entry = json.loads(path.read_text())["chains"]["documented"]
    assert [r["seed"] for r in entry["runs"]] == [5, 6, 7]
    assert entry["runs"] == sorted(entry["runs"], key=lambda r: r["seed"])
    lo, hi = entry["race_prevention_rate_ci"]
    assert 0.0 <= lo <= hi <= 1.0
    assert entry["planned_double"] == sum(r["planned_double"] for r in entry["runs"]) > 0
    assert entry["double_assigned"] == sum(r["double_assigned"] for r in entry["runs"])
    # The mean over the seeds with an offer, and its 95% t interval around it.
    rates = [r["race_prevention_rate"] for r in entry["runs"]
             if r["race_prevention_rate"] is not None]
    assert entry["race_prevention_rate"] == pytest.approx(sum(rates) / len(rates), abs=1e-6)
    assert lo <= entry["race_prevention_rate"] <= hi
    per_1000 = [r["overlapping_per_1000"] for r in entry["runs"]]
    assert entry["overlapping_per_1000"] == pytest.approx(sum(per_1000) / 3, abs=1e-6)
    lo, hi = entry["overlapping_per_1000_ci"]
    assert 0.0 <= lo <= entry["overlapping_per_1000"] <= hi <= 1000.0


def test_the_reported_replay_command_reproduces_the_violation(tmp_path):
    path = tmp_path / "r.json"
    code, _, _ = run_main(["run", *BROKEN, "--chain", "trust-gateway", "--seeds", "3",
                           "--json", str(path), "--quiet"])
    assert code == 0
    entry = json.loads(path.read_text())["chains"]["trust-gateway"]
    assert entry["s2_violations"] > 0, "no verification at lie rate 0.4: duplicates expected"
    words = shlex.split(entry["replay"])
    assert words[:4] == ["python", "-m", "sim", "replay"] and "--job" in words
    job = words[words.index("--job") + 1]
    seed = int(words[words.index("--seed") + 1])
    run = next(r for r in entry["runs"] if r["seed"] == seed)
    assert job in {j for v in run["violations"].values() for j in v["jobs"]}

    code, out, err = run_main(words[3:])
    assert code == 0, err
    assert f"history of {job}" in out
    assert f"violations involving {job}:" in out
    assert "  S2:" in out or "  S1:" in out


def _gate_lines(err: str) -> list[str]:
    lines = err.splitlines()
    assert all(line.startswith("python -m sim run: gate failed: ") for line in lines), err
    return lines


def _replay_of(line: str) -> list[str]:
    """The replay command a gate line ends with, as argv for ``main``."""
    words = shlex.split(line.split("; replay: ", 1)[1])
    assert words[:4] == ["python", "-m", "sim", "replay"]
    return words[3:]


def test_the_gate_passes_on_hardened_and_judges_only_expected_chains(tmp_path):
    path = tmp_path / "r.json"
    argv = ["run", *BROKEN, "--chain", "hardened", "--chain", "trust-gateway", "--seeds", "2",
            "--fail-on-violation", "--json", str(path)]
    code, out, err = run_main(argv)
    chains = json.loads(path.read_text())["chains"]
    assert chains["trust-gateway"]["s2_violations"] > 0, "the world must break trust-gateway"
    # hardened is expected safe by default; trust-gateway is reported but not judged.
    assert code == 0 and err == "", err
    assert ("gate: hardened expected safe: passed (no S1, S2, S3 or L1 violation); "
            "not judged: trust-gateway") in out
    code, out, err = run_main([*argv, "--expect", "trust-gateway=unsafe"])
    assert code == 0 and err == "", err
    assert "trust-gateway expected unsafe: passed (S1 x" in out


def test_the_gate_fires_on_a_broken_chain_expected_safe(tmp_path):
    path = tmp_path / "r.json"
    code, out, err = run_main(["run", *BROKEN, "--chain", "trust-gateway", "--chain", "hardened",
                               "--seeds", "3", "--fail-on-violation", "--expect",
                               "trust-gateway=safe", "--json", str(path), "--quiet"])
    entry = json.loads(path.read_text())["chains"]["trust-gateway"]
    assert code == 1 and out == ""
    [line] = _gate_lines(err)  # one line per failed expectation: hardened passed
    s1, s2 = entry["s1_violations"], entry["s2_violations"]
    assert f"trust-gateway expected safe, got S1 x{s1}, S2 x{s2} in 3 seeds" in line
    # The offending run's replay, at its violating job: it reproduces the violation.
    argv = _replay_of(line)
    assert argv == shlex.split(entry["replay"])[3:]
    job = argv[argv.index("--job") + 1]
    code, out, _ = run_main(argv)
    assert code == 0 and "  S2:" in out.split(f"violations involving {job}:", 1)[1]


def test_the_gate_fails_a_chain_expected_unsafe_that_violated_nothing():
    # Seed 2: with common random numbers (sim/_rng.py) seed 1 of BROKEN happens to offer
    # trust-gateway no realised double hand-out; seeds 2-5 all do.
    code, _, err = run_main(["run", *BROKEN, "--seed", "2", "--chain", "hardened", "--chain",
                             "trust-gateway", "--quiet", "--fail-on-violation", "--expect",
                             "hardened=unsafe", "--expect", "trust-gateway=unsafe"])
    assert code == 1
    [line] = _gate_lines(err)
    assert "hardened expected unsafe, got no S1, S2 or S3 violation in 1 seed" in line
    assert _replay_of(line)[:6] == ["replay", "--scenario", "default", "--chain", "hardened",
                                    "--seed"]


def test_the_gate_judges_lost_jobs_for_a_chain_expected_safe(tmp_path):
    path = tmp_path / "r.json"
    code, _, err = run_main(["run", *BROKEN, "--chain", "documented", "--seeds", "2", "--quiet",
                             "--fail-on-violation", "--expect", "documented=safe",
                             "--json", str(path)])
    entry = json.loads(path.read_text())["chains"]["documented"]
    lost = entry["l1_violations"]
    assert lost > 0, "the documented chain calls its own jobs stolen: lost jobs expected"
    assert code == 1
    [line] = _gate_lines(err)
    assert line.split(", got ", 1)[1].split(" in 2 seeds")[0].endswith(f"L1 x{lost}")
    # The replay points at a run and a job that lost it (not merely at the first run).
    argv = _replay_of(line)
    seed, job = int(argv[argv.index("--seed") + 1]), argv[argv.index("--job") + 1]
    run = next(r for r in entry["runs"] if r["seed"] == seed)
    safety = [j for name in ("S1", "S2", "S3") for j in run["violations"].get(name, {}).get(
        "jobs", [])]
    assert job in (safety or run["violations"]["L1"]["jobs"])


def test_every_replay_names_the_protocol_under_test_and_reproduces_it(tmp_path):
    """A broken implementation run as ``hardened``: its report names it, the gate fails it,
    and its replay reruns *it*: the same replay without ``--protocol`` shows no violation."""
    path = tmp_path / "r.json"
    code, out, err = run_main(["run", *BROKEN, "--chain", "hardened", "--seeds", "2",
                               "--protocol", TRUSTING, "--fail-on-violation",
                               "--json", str(path)])
    report = json.loads(path.read_text())
    entry = report["chains"]["hardened"]
    assert entry["s2_violations"] > 0, "a protocol that trusts the gateway breaks S2"
    assert report["protocol"] == TRUSTING
    assert f"; protocol {TRUSTING}\n" in out  # the headline above the table
    assert code == 1
    [line] = _gate_lines(err)
    assert line.endswith(f" --protocol {TRUSTING}")
    for command in (report["replay"], entry["replay"]):
        assert command.endswith(f" --protocol {TRUSTING}"), command

    argv = _replay_of(line)
    job = argv[argv.index("--job") + 1]
    code, out, err = run_main(argv)
    assert code == 0, err
    assert out.startswith(f"replay: scenario default, chain hardened, protocol {TRUSTING}, seed")
    assert "  S2:" in out.split(f"violations involving {job}:", 1)[1]
    assert f"replay: {shlex.join(['python', '-m', 'sim', *argv])}" in out

    builtin = argv[:argv.index("--protocol")]
    code, out, _ = run_main([*builtin, "--protocol", BUILTIN])
    assert code == 0 and f"violations involving {job}: none" in out
    assert "--protocol" not in out and "protocol " not in out.splitlines()[0]


def test_without_the_flag_a_violation_is_a_result_not_a_failure():
    code, _, err = run_main(["run", *BROKEN, "--chain", "hardened", "--quiet",
                             "--protocol", TRUSTING])
    assert code == 0 and err == ""


def test_progress_is_silent_for_short_runs_and_in_quiet_mode():
    code, _, err = run_main(["run", *TINY, "--chain", "hardened", "--progress", "--quiet"])
    assert code == 0 and err == ""
    clock = iter([0.0, 0.5, 2.0, 9.0, 10.0]).__next__
    stream = io.StringIO()
    bar = Progress(4, enabled=True, stream=stream, clock=clock)
    bar.update(1, "first")  # at 0.5 s: too early to bother anyone
    assert stream.getvalue() == ""
    bar.update(2, "second")  # at 2 s
    bar.update(4, "done")  # at 9 s
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "50%" in lines[0] and "second" in lines[0]
    assert lines[1].startswith("[" + "#" * Progress.WIDTH + "]") and "100%" in lines[1]
    off = io.StringIO()
    Progress(1, enabled=False, stream=off, clock=clock).update(1, "x")
    assert off.getvalue() == ""


def test_progress_prints_a_line_per_finished_run_on_a_log():
    clock = iter([0.0, 0.2, 1.5, 1.6, 1.7, 1.8]).__next__
    stream = io.StringIO()
    bar = Progress(3, enabled=True, stream=stream, clock=clock)
    bar.finished(1, "a seed 1: done")  # at 0.2 s: a short run prints nothing
    bar.update(1.5, "b seed 1: halfway")  # at 1.5 s: the first bar line
    bar.finished(2, "b seed 1: done")  # at 1.6 s: not throttled like bar lines
    bar.update(2.5, "c seed 1: halfway")  # at 1.7 s: throttled (a line every few seconds)
    bar.finished(3, "c seed 1: done")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "halfway" in lines[0]
    assert lines[1].startswith("[2/3] b seed 1: done") and lines[2].startswith("[3/3] c seed")


# --------------------------------------------------------------------------- sweep


def test_sweep_writes_csv_json_and_plots(tmp_path):
    out_dir = tmp_path / "sweep"
    chains = ["trust-gateway", "hardened", "hardened-without-settle"]
    code, out, err = run_main([
        "sweep", *TINY, *(a for c in chains for a in ("--chain", c)),
        "--grid", "lie_rate=0,0.3", "--seeds", "2", "--workers", "1", "--out", str(out_dir)])
    assert code == 0, err
    rows = read_csv(out_dir / "sweep.csv")
    assert len(rows) == 2 * len(chains) * 2
    assert [(r["grid.lie_rate"], r["chain"], r["seed"]) for r in rows[:3]] == [
        ("0", "trust-gateway", "1"), ("0", "trust-gateway", "2"), ("0", "hardened", "1")]
    # Each row says how to replay it: the grid's value is one of its --set.
    last = rows[-1]
    assert last["replay"] == ("python -m sim replay --scenario default --chain "
                              f"{last['chain']} --seed 2 --set encoders=4 --set jobs=12 "
                              "--set lie_rate=0.3")
    summary = json.loads((out_dir / "sweep.json").read_text())
    assert summary["grid"] == {"lie_rate": [0, 0.3]}
    assert len(summary["points"]) == 2 * len(chains)
    assert {"race_prevention_rate_ci", "overlapping_per_1000_ci"} <= set(summary["points"][0])
    for name in ("duplicates.png", "race_prevention.png", "wasted.png", "ablation.png"):
        data = (out_dir / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert f"wrote {out_dir / name}" in out


def test_sweep_without_ablation_chains_skips_the_ablation_plot(tmp_path):
    code, _, _ = run_main(["sweep", *TINY, "--chain", "documented", "--workers", "1",
                             "--grid", "assignment=myjob,getjob", "--out", str(tmp_path)])
    assert code == 0
    assert (tmp_path / "duplicates.png").read_bytes().startswith(PNG_MAGIC)
    assert not (tmp_path / "ablation.png").exists()
    assert [r["grid.assignment"] for r in read_csv(tmp_path / "sweep.csv")] == [
        "myjob", "getjob"]


@pytest.mark.parametrize(("grid", "needle"), [
    ("lie_rate", "KEY=V1,V2"),
    ("nope=1,2", "nope"),
    ("lie_rate=0,2", "lie_rate"),
    ("lie_rate=0,,1", "lie_rate"),
])
def test_sweep_bad_grid_is_a_usage_error(tmp_path, grid, needle):
    code, out, err = run_main(["sweep", *TINY, "--chain", "hardened", "--grid", grid,
                               "--workers", "1", "--out", str(tmp_path / "x")])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and needle in err
    assert not (tmp_path / "x").exists(), "nothing runs or is written before the grid is valid"


@pytest.mark.parametrize(("argv", "needle"), [
    # The same point twice counted its seeds twice in the plots' intervals.
    (["--grid", "lie_rate=0.2,0.2"], "given twice"),
    # The grid's value won, but sweep.json recorded --lie-rate as an override.
    (["--grid", "lie_rate=0.1,0.2", "--lie-rate", "0.05"], "also set"),
    (["--grid", "lie_rate=0.1,0.2", "--out", "/proc/nope/x"], "--out"),
], ids=["duplicate", "clash", "unwritable"])
def test_sweep_refuses_what_would_mislead_or_fail_late(tmp_path, argv, needle):
    """Researcher review, session 15: each of these ran (or ran to the end, then failed)."""
    base = ["sweep", *TINY, "--chain", "hardened", "--workers", "1", "--quiet"]
    if "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path / "x")]
    code, out, err = run_main([*base, *argv])
    assert code == 2 and out == "" and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "x").exists()


def test_a_sweep_over_two_keys_plots_one_entry_per_seed():
    """The plots pool a second grid key by averaging each seed over its values: the interval
    is over seeds. Pooling the runs counted every seed once per value of the other key."""
    from sim._metrics import RunMetrics
    from sim._sweep import _by_x

    def runs(values: list[float]) -> list[RunMetrics]:
        out = []
        for v in values:
            m = object.__new__(RunMetrics)
            for name in ("overlapping_per_1000", "race_prevention_rate",
                         "wasted_encode_h_per_1000"):
                object.__setattr__(m, name, v)
            out.append(m)
        return out

    cells = [({"lie_rate": 0.1, "encoders": 4}, "hardened", runs([1.0, 3.0, 5.0])),
             ({"lie_rate": 0.1, "encoders": 8}, "hardened", runs([3.0, 5.0, 7.0]))]
    xs, by = _by_x(cells, "lie_rate", 0.1)
    assert xs == [0.1]
    assert [m.overlapping_per_1000 for m in by["hardened"][0]] == [2.0, 4.0, 6.0]


# --------------------------------------------------------------------------- replay


def test_replay_prints_the_job_history_and_draws_its_timeline(tmp_path):
    png = tmp_path / "t.png"
    history = tmp_path / "h.jsonl"
    code, out, err = run_main(["replay", *RACY, "--chain", "trust-gateway", "--png", str(png),
                               "--history", str(history)])
    assert code == 0, err
    assert out.startswith("replay: scenario default, chain trust-gateway, seed 1")
    assert "history of job-" in out and "violations involving job-" in out
    assert png.read_bytes().startswith(PNG_MAGIC)
    first = json.loads(history.read_text().splitlines()[0])
    assert len(first) == 6

    code, out, _ = run_main(["replay", *TINY, "--job", "job-000003"])
    assert code == 0
    assert "job job-000003: chosen with --job" in out
    body = out.split("history of job-000003", 1)[1].split("\n\n", 1)[0]
    records = body.splitlines()[1:]
    assert records and all("job-000003" in line or " - " in line for line in records)
    assert "replay: python -m sim replay --scenario default --chain hardened --seed 1" in out


def test_replay_from_a_conformance_tape(tmp_path):
    tape = tmp_path / "tape.json"
    tape.write_text(json.dumps({"tape": [0.1, 0.9, 0.5], "seed": 7}))
    code, out, err = run_main(["replay", *TINY, "--tape", str(tape)])
    assert code == 0, err
    assert f"tape {tape}" in out
    replay = next(line for line in out.splitlines() if line.startswith("replay: python"))
    assert f"--tape {tape}" in replay and "--seed" not in replay
    tape.write_text(json.dumps({"tape": [1.5], "seed": None}))
    code, _, err = run_main(["replay", *TINY, "--tape", str(tape)])
    assert code == 2 and "--tape" in err and err.count("\n") == 1


def test_replay_runs_the_command_a_conformance_counterexample_prints(tmp_path, monkeypatch):
    from conformance.worlds import BASE, World, save_counterexample

    monkeypatch.setenv("SPK_COUNTEREXAMPLES", str(tmp_path / "cx"))
    monkeypatch.delenv("SPK_PROTOCOL", raising=False)
    world = World(BASE.replace(encoders=3, jobs=2, lie_rate=1.0), (0.3, 0.7, 0.1, 0.9), 11)
    words = shlex.split(save_counterexample(world, "trust-gateway", "job-000001"))
    assert words[:4] == ["python", "-m", "sim", "replay"] and "--protocol" not in words
    code, out, err = run_main(words[3:])
    assert code == 0, err
    folder = Path(words[words.index("--tape") + 1]).parent
    assert out.startswith("replay: scenario conformance, chain trust-gateway, tape ")
    assert "job job-000001: chosen with --job" in out
    assert (folder / "timeline.png").read_bytes().startswith(PNG_MAGIC)
    # The tape, not the seed, drives the run: the same command twice prints the same history.
    assert run_main(words[3:])[1] == out


def test_a_conformance_counterexample_of_a_protocol_under_test_replays_that_protocol(
        tmp_path, monkeypatch):
    from conformance.worlds import BASE, World, save_counterexample

    # conformance/conftest.py sets SPK_PROTOCOL from --protocol for the session.
    monkeypatch.setenv("SPK_COUNTEREXAMPLES", str(tmp_path / "cx"))
    monkeypatch.setenv("SPK_PROTOCOL", TRUSTING)
    world = World(BASE.replace(encoders=2, jobs=1, lie_rate=1.0), (0.3, 0.7, 0.1, 0.9), 11)
    words = shlex.split(save_counterexample(world, "hardened", "job-000000"))
    assert words[-2:] == ["--protocol", TRUSTING]
    assert words[words.index("--chain") + 1] == "hardened"
    folder = Path(words[words.index("--tape") + 1]).parent
    assert folder.name.startswith(f"hardened@{TRUSTING.replace(':', '.')}-")
    code, out, err = run_main(words[3:])
    assert code == 0, err
    assert out.startswith(f"replay: scenario conformance, chain hardened, protocol {TRUSTING}, "
                          "tape ")
    replay = next(line for line in out.splitlines() if line.startswith("replay: python"))
    assert replay.endswith(f"--protocol {TRUSTING}")
    # The same world found with the built-in protocol is another counterexample, unlabelled.
    builtin = shlex.split(save_counterexample(world, "hardened", "job-000000",
                                              protocol=BUILTIN))
    assert "--protocol" not in builtin
    assert Path(builtin[builtin.index("--tape") + 1]).parent.name.startswith("hardened-")


def _result(records: list[tuple], checks: dict[str, tuple[str, ...]]) -> RunResult:
    results = {name: CheckResult(name, len(jobs), jobs, ()) for name, jobs in checks.items()}
    return RunResult(Scenario(jobs=3), "hardened", 1, History(records), results, None,  # type: ignore[arg-type]
                     {}, 100.0, ["job-000000", "job-000001", "job-000002"])


def test_replay_picks_safety_then_double_assigned_then_other_violations():
    lie = (5.0, "world", "job-000002", "lie", "ok", ("double", "e1"))
    ok = {"S1": (), "S2": (), "S3": (), "L1": ()}
    assert choose_job(_result([lie], {**ok, "S2": ("job-000001",), "L1": ("job-000000",)})) == (
        "job-000001", "the first job with a safety violation (S2)")
    job, why = choose_job(_result([lie], {**ok, "L1": ("job-000000",)}))
    assert job == "job-000002" and "double-assigned" in why
    job, why = choose_job(_result([], {**ok, "L1": ("job-000001",)}))
    assert job == "job-000001" and "(L1;" in why
    assert choose_job(_result([], ok))[0] == "job-000000"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("argv", "needle"), [
    (["run", "--chain", "nope"], "unknown chain 'nope'"),
    (["run", "--scenario", "no-such-scenario"], "no-such-scenario"),
    (["run", "--scenario", "missing/file.toml"], "missing/file.toml"),
    (["run", "--set", "lie_rate=lots"], "lie_rate"),
    (["run", "--set", "lie_rate=1.5"], "lie_rate"),
    (["run", "--set", "reasign_timeout=1"], "reasign_timeout"),
    (["run", "--set", "novalue"], "KEY=VALUE"),
    (["run", "--jobs", "0"], "--jobs"),
    (["run", "--set", "retry_interval=0"], "retry_interval"),
    (["run", "--seeds", "0"], "--seeds"),
    (["run", "--fail-on-violation", "--chain", "documented"], "hardened"),
    (["run", "--fail-on-violation", "--chain", "hardened", "--expect", "documented=unsafe"],
     "'documented' is not in this run"),
    (["run", "--fail-on-violation", "--expect", "nope=safe"], "'nope'"),
    (["run", "--fail-on-violation", "--expect", "hardened=maybe"], "'maybe'"),
    (["run", "--fail-on-violation", "--expect", "hardened"], "CHAIN=safe|unsafe"),
    (["run", "--fail-on-violation", "--expect", "hardened=safe", "--expect", "hardened=unsafe"],
     "hardened"),
    (["run", "--expect", "hardened=safe"], "--fail-on-violation"),
    (["run", "--protocol", "no_such_module:Protocol"], "no_such_module"),
    (["run", "--protocol", "verifier.protocol"], "MODULE:CLASS"),
    (["run", "--protocol", "verifier.protocol:NoSuchClass"], "NoSuchClass"),
    (["run", "--protocol", "tests.sim.protocols:NOT_A_PROTOCOL"], "NOT_A_PROTOCOL"),
    (["replay", "--protocol", "no_such_module:Protocol"], "no_such_module"),
    (["run", "--encoders", "many"], "--encoders"),
    (["run", "--no-such-flag"], "--no-such-flag"),
    (["sweep", "--workers", "0"], "--workers"),
    (["replay", "--job", "job-999999", *TINY], "job-999999"),
    (["replay", "--tape", "no/such/tape.json", *TINY], "no/such/tape.json"),
    (["replay", "--chain", "trust-gateway", "--chain", "hardened"], "--chain"),
    (["fly"], "fly"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle):
    code, out, err = run_main(argv)
    captured = capsys.readouterr()  # argparse's own errors go to sys.stderr
    message = err + captured.err
    assert code == 2
    assert out == "" and captured.out == ""
    assert message.count("\n") == 1 and needle in message, message


def test_a_bad_scenario_file_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[gateway]\nlie_rate = 0.1\nwrite_dealy = 3\n")
    code, _, err = run_main(["run", "--scenario", str(path)])
    assert code == 2
    assert str(path) in err and "write_dealy" in err and "write_delay" in err


def test_an_unwritable_report_path_fails_before_running(tmp_path):
    (tmp_path / "file").write_text("")
    code, _, err = run_main(["run", *TINY, "--json", str(tmp_path / "file" / "r.json")])
    assert code == 2 and "cannot write" in err and err.count("\n") == 1


@pytest.mark.parametrize(("argv", "options"), [
    (["live", "--dashboard", "{p}", "--json", "{p}"], "--json and --dashboard"),
    (["live", "--json", "{p}", "--dashboard", "{d}/../out/same.html"], "--json and --dashboard"),
    (["run", *TINY, "--json", "{p}", "--csv", "{p}"], "--json and --csv"),
])
def test_two_outputs_to_one_file_are_refused_naming_both(tmp_path, argv, options):
    """``sim live --dashboard P --json P`` wrote the dashboard, then the JSON report over it,
    without a word (adversarial review): refused before anything runs."""
    path = tmp_path / "out" / "same.html"
    argv = [a.format(p=path, d=tmp_path / "out") for a in argv]
    code, _, err = run_main(argv)
    assert code == 2 and options in err and "same file" in err and err.count("\n") == 1
    assert not path.exists()


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "run" in capsys.readouterr().out
    assert main(["run", "--help"]) == 0
    assert "--lie-rate" in capsys.readouterr().out


# --------------------------------------------------------------------------- report pieces


def test_stable_rounds_and_normalizes():
    assert stable({"a": 0.1 + 0.2, "b": (1, -0.0), "c": float("inf")}) == {
        "a": 0.3, "b": [1, 0.0], "c": None}


def test_csv_columns_do_not_depend_on_which_tiers_a_chain_called():
    columns, _ = csv_rows([{"chain": "a", "api_calls": {"gateway": 1.0}, "z": 1},
                           {"chain": "b", "api_calls": {"monitor": 2.0, "database": 1.0},
                            "z": 2}])
    assert columns == ["chain", "api_calls.database", "api_calls.gateway",
                       "api_calls.monitor", "z"]


def test_table_shows_dashes_for_missing_metrics():
    table = format_table([("x", {"jobs": 3, "race_prevention_rate": None})])
    assert "- (none made)" in table and table.splitlines()[2].split()[1] == "3"


def test_race_prevention_says_on_how_many_seeds_it_rests_when_not_all() -> None:
    """A mean of 4 seeds under a header of 6 read as 6 (a review of the figures, session 37)."""
    row = {"runs": 6, "race_prevention_rate": 0.5, "race_prevention_rate_ci": [0.0, 1.0],
           "race_prevention_rate_n": 4}
    assert "50.0% [0.0, 100.0] (4 of 6 seeds)" in format_table([("x", row)])
    every = {**row, "race_prevention_rate_n": 6}
    assert "seeds)" not in format_table([("x", every)])

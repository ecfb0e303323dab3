"""Reports are pure functions of their command line (issue 3, "Determinism").

The same ``run`` twice gives byte-identical JSON and CSV, in one process and in fresh
interpreters under different ``PYTHONHASHSEED`` values (so no set or dict order leaks in);
a seed's result does not depend on which other seeds ran with it; a sweep's CSV does not
depend on how many worker processes ran it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from sim.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--set", "encoders=5", "--set", "jobs=15", "--lie-rate", "0.4",
        "--chain", "trust-gateway", "--chain", "documented", "--chain", "hardened",
        "--seeds", "2", "--quiet"]


def run(tmp: Path, *extra: str) -> tuple[bytes, bytes]:
    json_path, csv_path = tmp / "r.json", tmp / "m.csv"
    argv = ["run", *ARGS, *extra, "--json", str(json_path), "--csv", str(csv_path)]
    assert main(argv, stdout=io.StringIO(), stderr=io.StringIO()) == 0
    return json_path.read_bytes(), csv_path.read_bytes()


def test_the_same_run_twice_is_byte_identical(tmp_path):
    first = run(tmp_path)
    second = run(tmp_path)
    assert first == second
    text = first[0].decode()
    assert text.endswith("}\n")
    for word in ("wall", "elapsed", "timestamp", "duration"):
        assert word not in text


def test_the_same_run_under_other_hash_seeds_is_byte_identical(tmp_path):
    path = tmp_path / "r.json"
    outputs = []
    for hash_seed in ("0", "123"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "sim", "run", *ARGS, "--json", str(path)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1]
    # ... and the in-process run of the same command line writes the same bytes too.
    assert main(["run", *ARGS, "--json", str(path)], stdout=io.StringIO()) == 0
    assert path.read_bytes() == outputs[0]


def test_a_seed_gives_the_same_result_whatever_else_ran(tmp_path):
    both = json.loads(run(tmp_path)[0])
    json_path = tmp_path / "one.json"
    argv = ["run", *ARGS, "--seed", "2", "--seeds", "1", "--json", str(json_path)]
    assert main(argv, stdout=io.StringIO()) == 0
    alone = json.loads(json_path.read_text())
    for chain, entry in alone["chains"].items():
        assert entry["runs"] == [both["chains"][chain]["runs"][1]]


def test_a_sweep_does_not_depend_on_the_number_of_workers(tmp_path):
    outputs = []
    for workers in ("1", "2"):
        out_dir = tmp_path / f"w{workers}"
        argv = ["sweep", "--set", "encoders=4", "--set", "jobs=10", "--chain", "hardened",
                "--chain", "trust-gateway", "--grid", "lie_rate=0,0.4", "--seeds", "2",
                "--workers", workers, "--out", str(out_dir), "--quiet"]
        assert main(argv, stdout=io.StringIO(), stderr=io.StringIO()) == 0
        outputs.append(((out_dir / "sweep.csv").read_bytes(),
                        (out_dir / "sweep.json").read_text().replace(str(out_dir), "")))
    assert outputs[0][0] == outputs[1][0]
    first, second = (json.loads(text) for _, text in outputs)
    assert first["points"] == second["points"]

"""Sweeps on Dask give the same files as local ones (issue 13, "Beyond one machine").

A sweep task is a pure function of (scenario, chain, seed) and every executor returns results
in task order, so the CSV and the JSON's points are the same bytes whichever ran them: the
local processes, a Dask cluster the sweep starts (``--executor dask``), or an existing
scheduler (``--executor dask://HOST:PORT``, here a ``LocalCluster`` on loopback).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from sim.__main__ import main
from sim._executors import parse_executor
from sim._scenario_files import UsageError

distributed = pytest.importorskip("distributed")

GRID = ["--set", "encoders=4", "--set", "jobs=10", "--chain", "hardened", "--chain",
        "documented", "--grid", "lie_rate=0,0.4", "--seeds", "2", "--quiet"]


def _sweep(out_dir: Path, *extra: str) -> tuple[bytes, dict[str, object]]:
    argv = ["sweep", *GRID, "--out", str(out_dir), *extra]
    assert main(argv, stdout=io.StringIO(), stderr=io.StringIO()) == 0
    report = json.loads((out_dir / "sweep.json").read_text())
    return (out_dir / "sweep.csv").read_bytes(), report


@pytest.mark.slow
def test_dask_sweeps_write_the_same_results_as_a_local_one(tmp_path: Path) -> None:
    local_csv, local = _sweep(tmp_path / "local", "--workers", "1")
    dask_csv, on_dask = _sweep(tmp_path / "dask", "--executor", "dask", "--workers", "2")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        address = cluster.scheduler_address.removeprefix("tcp://")
        remote_csv, remote = _sweep(tmp_path / "remote", "--executor", f"dask://{address}")
    assert local_csv == dask_csv == remote_csv
    assert local["points"] == on_dask["points"] == remote["points"]
    assert len(local_csv.splitlines()) == 1 + 2 * 2 * 2  # header + points × chains × seeds


@pytest.mark.parametrize("text", ["", "Dask", "dask://", "dask://host", "dask://host:0",
                                  "dask://host:99999", "spark://host:1", "tcp://host:8786"])
def test_an_executor_that_is_not_one_of_the_three_forms_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="expected local, dask or dask://HOST:PORT"):
        parse_executor(text)


def test_the_three_forms_are_accepted() -> None:
    assert [parse_executor(t) for t in ("local", " dask ", "dask://10.0.0.5:8786")] == [
        "local", "dask", "dask://10.0.0.5:8786"]

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
from sim._executors import LOOPBACK_ANY_PORT, parse_executor
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
                                  host="127.0.0.1", dashboard_address=LOOPBACK_ANY_PORT) as cluster:
        address = cluster.scheduler_address.removeprefix("tcp://")
        remote_csv, remote = _sweep(tmp_path / "remote", "--executor", f"dask://{address}")
    assert local_csv == dask_csv == remote_csv
    assert local["points"] == on_dask["points"] == remote["points"]
    assert len(local_csv.splitlines()) == 1 + 2 * 2 * 2  # header + points × chains × seeds


@pytest.mark.slow
def test_a_local_dask_sweep_runs_while_the_dashboards_default_port_is_taken(
        tmp_path: Path) -> None:
    # Two clusters started at once (``pytest -n 2``), or anything on 8787: the scheduler's
    # HTTP server used its default port and warned when it was taken, and pytest's
    # warnings-as-errors made that a failed start (found 2026-12-05).
    import socket

    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", 8787))
        except OSError:
            pytest.skip("127.0.0.1:8787 is in use already: the condition holds anyway")
        taken.listen()
        status = main([*SMALL, "--executor", "dask", "--workers", "1",
                       "--out", str(tmp_path / "out")],
                      stdout=io.StringIO(), stderr=io.StringIO())
    assert status == 0 and (tmp_path / "out" / "sweep.csv").exists()


@pytest.mark.parametrize("text", ["", "Dask", "dask://", "dask://host", "dask://host:0",
                                  "dask://host:99999", "spark://host:1", "tcp://host:8786"])
def test_an_executor_that_is_not_one_of_the_three_forms_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="expected local, dask or dask://HOST:PORT"):
        parse_executor(text)


def test_the_three_forms_are_accepted() -> None:
    assert [parse_executor(t) for t in ("local", " dask ", "dask://10.0.0.5:8786")] == [
        "local", "dask", "dask://10.0.0.5:8786"]


# --------------------------------------------------------------------------- workers we cannot use
#
# An existing scheduler's workers are someone else's machines: without this package, or with
# other code, they used to hang the sweep (the task, unpickled as it arrived, killed a worker
# without the package, and the sweep waited for a worker forever) or to write other results
# than a local sweep without a word (adversarial review of the operator tooling).

SMALL = ["sweep", "--set", "encoders=2", "--set", "jobs=3", "--chain", "hardened", "--quiet"]


def _sweep_in_thread(argv: list[str], limit_s: float = 120.0) -> tuple[int | None, str]:
    """``main(argv)`` with a bound on its wall time: a sweep that hangs returns None."""
    import threading

    result: list[int] = []
    err = io.StringIO()
    thread = threading.Thread(target=lambda: result.append(
        main(argv, stdout=io.StringIO(), stderr=err)), daemon=True)
    thread.start()
    thread.join(limit_s)
    return (result[0] if result else None), err.getvalue()


@pytest.fixture
def scheduler():
    """A scheduler on loopback with no worker of its own: tests add the workers they need."""
    with distributed.LocalCluster(n_workers=0, processes=True, host="127.0.0.1",
                                  dashboard_address=LOOPBACK_ANY_PORT) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def start_worker():
    """Start ``dask worker`` processes whose ``sys.path`` begins with a folder of ours."""
    import os
    import subprocess
    import sys

    started: list[subprocess.Popen[bytes]] = []

    def start(address: str, path: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(path)}
        started.append(subprocess.Popen(  # noqa: S603 (this interpreter's dask, fixed args)
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1",
             "--nthreads", "1", "--no-dashboard"], env=env, cwd=path,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(1, timeout=60)

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_a_worker_without_the_package_is_a_usage_error_not_a_hang(scheduler, start_worker,
                                                                   tmp_path):
    fake = tmp_path / "elsewhere"
    (fake / "sim").mkdir(parents=True)
    (fake / "sim" / "__init__.py").write_text("")  # a `sim` that is not this package
    start_worker(scheduler, fake)
    address = scheduler.removeprefix("tcp://")
    status, err = _sweep_in_thread([*SMALL, "--executor", f"dask://{address}",
                                    "--out", str(tmp_path / "out")])
    assert status == 2, "the sweep hung (or ran) on a worker that cannot import the package"
    assert err.count("\n") == 1
    assert "a Dask worker on" in err and "cannot import this package" in err
    assert "pip install 'spk-ownership[dask]'" in err
    assert not (tmp_path / "out" / "sweep.csv").exists()


@pytest.mark.slow
def test_a_worker_with_other_code_is_a_usage_error_not_other_results(scheduler, start_worker,
                                                                      tmp_path):
    import shutil

    import sim
    import verifier

    other = tmp_path / "other"
    for package in (sim, verifier):
        source = Path(package.__file__).parent
        shutil.copytree(source, other / source.name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    with (other / "sim" / "_rng.py").open("a") as changed:  # another version of the code
        changed.write("\n# another version\n")
    start_worker(scheduler, other)
    address = scheduler.removeprefix("tcp://")
    status, err = _sweep_in_thread([*SMALL, "--executor", f"dask://{address}",
                                    "--out", str(tmp_path / "out")])
    assert status == 2
    assert "runs other code" in err and "install the same version" in err
    assert not (tmp_path / "out" / "sweep.csv").exists()


def test_a_scheduler_without_workers_is_a_usage_error_not_a_wait_forever(scheduler, tmp_path,
                                                                          monkeypatch):
    import sim._executors as executors

    monkeypatch.setattr(executors, "WORKER_WAIT_S", 1.0, raising=False)
    address = scheduler.removeprefix("tcp://")
    status, err = _sweep_in_thread([*SMALL, "--executor", f"dask://{address}",
                                    "--out", str(tmp_path / "out")], limit_s=30.0)
    assert status == 2, "the sweep waited for a worker forever"
    assert f"no worker joined the Dask scheduler in 1 s (start one: dask worker tcp://{address})" \
        in err


@pytest.mark.slow
def test_the_dask_cluster_starts_no_more_workers_than_runs(tmp_path, monkeypatch):
    """``--executor dask --workers 8`` for two runs started eight worker processes, while the
    summary line said "on 2 worker(s)" (the local executor starts no more than its tasks)."""
    import dask.distributed

    started: list[int] = []

    class Counted(distributed.LocalCluster):
        def __init__(self, *args, **kwargs):
            started.append(kwargs["n_workers"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(dask.distributed, "LocalCluster", Counted)
    out = io.StringIO()
    assert main(["sweep", "--set", "encoders=2", "--set", "jobs=3", "--chain", "hardened",
                 "--grid", "lie_rate=0,0.1", "--executor", "dask", "--workers", "8",
                 "--out", str(tmp_path)], stdout=out, stderr=io.StringIO()) == 0
    assert started == [2]
    assert "2 run(s) on 2 worker(s) (dask local cluster)" in out.getvalue()

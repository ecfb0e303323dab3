"""Where a sweep's runs execute: local processes, or a Dask cluster.

A sweep task is a pure function of ``(scenario, chain, seed)``, so where it runs changes
nothing but the wall time: every executor returns the results **in task order**, and the sweep
writes the same ``sweep.csv`` and ``sweep.json`` whichever ran them (a test compares a Dask
sweep with a local one, byte for byte).

``--executor``:

``local`` (default)
    a :class:`~concurrent.futures.ProcessPoolExecutor` of ``--workers`` processes, started with
    ``spawn`` (a fresh interpreter each: no state inherited, none of ``fork``'s hazards);
``dask``
    a Dask ``LocalCluster`` on this machine (``--workers`` worker processes, one thread each),
    started for the sweep and closed after it;
``dask://HOST:PORT``
    an existing Dask scheduler (``dask scheduler`` and ``dask worker`` on a cluster). Its
    workers must have this package installed (``pip install 'spk-ownership[dask]'``), at the
    same version: tasks are plain picklable data and the module-level function
    :func:`run_task`, resolved on the worker by name.

Dask is an optional dependency (``spk-ownership[dask]``), imported only by the Dask executors.
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ._metrics import RunMetrics
from ._runner import run_once
from ._scenario import Scenario
from ._scenario_files import UsageError

__all__ = ["Task", "execute", "parse_executor", "run_task"]

#: One run of a sweep: a scenario, a chain, a seed.
Task = tuple[Scenario, str, int]
#: Called with (tasks finished, the task that just finished) as results come in.
OnDone = Callable[[int, Task], None]


def run_task(task: Task) -> RunMetrics:
    """One grid cell of one chain and seed (module level: picklable, found by name)."""
    scenario, chain, seed = task
    return run_once(scenario, chain, seed).metrics


def parse_executor(text: str) -> str:
    """``local``, ``dask`` or ``dask://HOST:PORT``; anything else is a usage error."""
    value = text.strip()
    if value in ("local", "dask"):
        return value
    if value.startswith("dask://"):
        host, sep, port = value[len("dask://"):].rpartition(":")
        if sep and host and port.isdigit() and 0 < int(port) < 65536:
            return value
    raise UsageError(f"--executor {text!r}: expected local, dask or dask://HOST:PORT")


def check_executor(executor: str) -> None:
    """Refuse a Dask executor when Dask is not installed (the ``[dask]`` extra; the main job's
    ``.[sim]`` lacks it): found, not imported, so that a command can refuse before any run,
    and the one message wherever Dask is missing (a fresh install showed a traceback from the
    first import of Dask: a README review, session 24)."""
    if executor != "local" and (importlib.util.find_spec("dask") is None
                                or importlib.util.find_spec("distributed") is None):
        raise UsageError(f"--executor {executor} needs Dask: pip install 'spk-ownership[dask]'")


def execute(tasks: list[Task], *, executor: str, workers: int, on_done: OnDone) -> list[RunMetrics]:
    """Run ``tasks``; results in task order, whichever executor ran them."""
    if executor == "local":
        return _local(tasks, workers, on_done)
    return _dask(tasks, executor, workers, on_done)


def _local(tasks: list[Task], workers: int, on_done: OnDone) -> list[RunMetrics]:
    results: list[RunMetrics] = []
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            results.append(run_task(task))
            on_done(len(results), task)
        return results
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context) as pool:
        for task, metrics in zip(tasks, pool.map(run_task, tasks), strict=True):
            results.append(metrics)
            on_done(len(results), task)
    return results


@contextlib.contextmanager
def _client(executor: str, workers: int) -> Iterator[Any]:
    from dask.distributed import Client, LocalCluster

    if executor == "dask":
        # Processes, one thread each: a run is pure Python (the GIL would serialise threads);
        # loopback only, no dashboard: nothing listens beyond this machine.
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=None) as cluster, \
                Client(cluster) as client:
            yield client
        return
    address = "tcp://" + executor[len("dask://"):]
    try:
        client = Client(address, timeout=30)
    except OSError as exc:
        raise UsageError(
            f"--executor {executor}: cannot reach the Dask scheduler ({exc})") from None
    with client:
        yield client


def _dask(tasks: list[Task], executor: str, workers: int, on_done: OnDone) -> list[RunMetrics]:
    check_executor(executor)
    from dask.distributed import as_completed

    results: list[RunMetrics | None] = [None] * len(tasks)
    with _client(executor, workers) as client:
        # pure=False: two equal tasks are still two runs (no deduplication by hash); each
        # future remembers its index, so results land in task order whatever finishes first.
        futures = client.map(run_task, tasks, pure=False)
        index = {future.key: i for i, future in enumerate(futures)}
        for done, future in enumerate(as_completed(futures), start=1):
            i = index[future.key]
            results[i] = future.result()
            on_done(done, tasks[i])
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:  # as_completed yields every future once: this is a Dask bug, not a result
        raise RuntimeError(f"Dask returned no result for {len(missing)} task(s)")
    return [r for r in results if r is not None]

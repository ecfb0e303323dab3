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

On Dask, each task travels as pickled bytes to a small function sent by value, which imports
this package on the worker and compares its code with ours (:func:`code_fingerprint`) before
it runs anything. A worker without the package, or with other code, is a usage error that
names it: the task itself used to be unpickled as it arrived, so a worker without the package
died of it and the sweep waited forever, and a worker with other code wrote other results
without a word (adversarial review of the operator tooling). A scheduler without workers is
refused after :data:`WORKER_WAIT_S` seconds instead of waited on forever.

Dask is an optional dependency (``spk-ownership[dask]``), imported only by the Dask executors.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import multiprocessing
import pickle
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Final

from ._metrics import RunMetrics
from ._runner import run_once
from ._scenario import Scenario
from ._scenario_files import UsageError

__all__ = ["Task", "code_fingerprint", "execute", "parse_executor", "run_task"]

#: How long a sweep waits for a worker to join an existing scheduler before giving up.
WORKER_WAIT_S: Final = 60.0
#: The packages whose code a run executes (the simulator and the protocol it drives).
_PACKAGES: Final = ("sim", "verifier")

#: One run of a sweep: a scenario, a chain, a seed.
Task = tuple[Scenario, str, int]
#: Called with (tasks finished, the task that just finished) as results come in.
OnDone = Callable[[int, Task], None]


def run_task(task: Task) -> RunMetrics:
    """One grid cell of one chain and seed (module level: picklable, found by name)."""
    scenario, chain, seed = task
    return run_once(scenario, chain, seed).metrics


@functools.cache
def code_fingerprint() -> str:
    """A digest of this installation's simulator and verifier sources (every ``.py`` file of
    :data:`_PACKAGES`, by path and content): two processes with the same digest run the same
    code, so their runs of a task are the same bytes."""
    digest = hashlib.sha256()
    for name in _PACKAGES:
        spec = importlib.util.find_spec(name)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            root = Path(folder)
            for path in sorted(root.rglob("*.py")):
                digest.update(f"{name}/{path.relative_to(root).as_posix()}\0".encode())
                digest.update(path.read_bytes())
                digest.update(b"\0")
    return digest.hexdigest()[:16]


def _remote_runner(fingerprint: str) -> Callable[[bytes], tuple[str, Any]]:
    """The function a Dask worker runs: defined in here, so that it is sent by value (it needs
    nothing of this package to arrive), and given the task as pickled bytes (nothing of this
    package is unpickled until the worker has shown it has the package, with our code).

    Returns ``("ok", metrics)``, or ``(problem, worker, detail)`` with problem ``missing`` (the
    package does not import there) or ``code`` (its code differs from ours)."""

    def run(blob: bytes) -> tuple[str, Any]:
        import importlib
        import pickle
        import socket

        where = socket.gethostname()
        try:
            executors = importlib.import_module("sim._executors")
        except Exception as exc:  # whatever stops the import: reported, named
            return ("missing", where, f"{type(exc).__name__}: {exc}")
        theirs = (executors.code_fingerprint() if hasattr(executors, "code_fingerprint")
                  else "of a version that predates the check")
        if theirs != fingerprint:
            return ("code", where, theirs)
        return ("ok", executors.run_task(pickle.loads(blob)))  # noqa: S301 (our own task)

    return run


def _unpack(answer: tuple[str, Any], executor: str) -> RunMetrics:
    """A worker's answer (:func:`_remote_runner`): the metrics, or a usage error naming it."""
    if answer[0] == "ok":
        metrics: RunMetrics = answer[1]
        return metrics
    _, where, detail = answer
    if answer[0] == "missing":
        raise UsageError(f"--executor {executor}: a Dask worker on {where} cannot import this "
                         f"package ({detail}): pip install 'spk-ownership[dask]' there, the "
                         "same version")
    raise UsageError(f"--executor {executor}: a Dask worker on {where} runs other code "
                     f"(sources {detail}, here {code_fingerprint()}): install the same version "
                     "of spk-ownership on every worker, or its runs would differ from a local "
                     "sweep's")


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


#: Where a local cluster's scheduler serves HTTP: loopback, a port the system picks.
LOOPBACK_ANY_PORT = "127.0.0.1:0"


@contextlib.contextmanager
def _client(executor: str, workers: int) -> Iterator[Any]:
    from dask.distributed import Client, LocalCluster

    if executor == "dask":
        # Processes, one thread each: a run is pure Python (the GIL would serialise threads);
        # loopback only: nothing listens beyond this machine. The scheduler's HTTP server
        # starts whatever the dashboard setting (``None`` means its default port, 8787, and a
        # warning when that is taken, which pytest makes an error: two clusters started at
        # once under ``-n 2`` failed so): a free port, on loopback.
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=LOOPBACK_ANY_PORT) as cluster, \
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
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except TimeoutError:
            raise UsageError(f"--executor {executor}: no worker joined the Dask scheduler in "
                             f"{WORKER_WAIT_S:g} s (start one: dask worker {address})") from None
        yield client


def _dask(tasks: list[Task], executor: str, workers: int, on_done: OnDone) -> list[RunMetrics]:
    check_executor(executor)
    from dask.distributed import as_completed

    results: list[RunMetrics | None] = [None] * len(tasks)
    # No more local workers than tasks, as the local executor and the summary line count them.
    with _client(executor, max(1, min(workers, len(tasks)))) as client:
        # pure=False: two equal tasks are still two runs (no deduplication by hash); each
        # future remembers its index, so results land in task order whatever finishes first.
        futures = client.map(_remote_runner(code_fingerprint()),
                             [pickle.dumps(task) for task in tasks], pure=False)
        index = {future.key: i for i, future in enumerate(futures)}
        for done, future in enumerate(as_completed(futures), start=1):
            i = index[future.key]
            results[i] = _unpack(future.result(), executor)
            on_done(done, tasks[i])
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:  # as_completed yields every future once: this is a Dask bug, not a result
        raise RuntimeError(f"Dask returned no result for {len(missing)} task(s)")
    return [r for r in results if r is not None]

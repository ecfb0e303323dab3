"""sim: a SimPy simulator of 3Speak encoders, a lying gateway, a lagging monitor and the database.

Layout, in layers (each imports only from the layers below it; ``pyproject.toml``'s
import-linter contract checks it in CI)::

    commands     _cli.py          ``python -m sim run | sweep | research | replay`` (and dispatch)
                 live/_cli.py     ``python -m sim live | serve``
    live         live/            the live emulation over real HTTP on loopback
                   _http_server.py  a small asyncio HTTP/1.1 server (h11)
                   _emulator.py     the monitor, legacy gateway and aid, answering from the world
                   _world.py        ``LiveWorld``: the simulator's world run in real time
                   _collection.py   ``WorldCollection``: the world as a pymongo collection
                   _encoders.py     live encoders: the production ``EncoderLoop`` and
                                    ``OwnershipGuard`` over httpx
                   _dashboard.py    ``live --dashboard``: a live run's HTML dashboard
                   _features.py     what the cost features buy (requests, loss detection)
    tools        _commandline.py  flags, the run plan, progress, writers, exit codes
                 _report.py       JSON report, CSV, summary table, progress
                 _replay.py       one run again: a job's history and timeline
                 _sweep.py        a grid of parameters × chains × seeds, plotted
                 _research.py     ``research``: every research figure, paired over seeds
                 _executors.py    where a sweep's runs execute: local processes or Dask
    core         _scenario.py     ``Scenario``: every parameter of the world, named
                 _scenario_files.py  named scenario files, overrides, ``RunPlan``
                 scenarios/       the built-in scenarios (TOML)
                 _rng.py          all randomness from one seed, in named streams (or a tape)
                 _history.py      the Jepsen-shaped history checkers read
                 _world.py        ``World``: database, gateway, monitor, aid, faults, arrivals
                 _encoder.py      ``Encoder``: the SimPy driver of ``verifier.protocol``
                 _push.py         ``PushChannel``: job changes pushed to subscribed encoders
                 _runner.py       ``run_once``: one world, one chain, one seed → checks, metrics
                 _checkers.py     S1, S2, S3, the lease, L1 (and its bound) on a history
                 _metrics.py      the measures chains are compared by, t intervals, pairs
                 _columns.py      every column of every table, CSV and JSON, defined
    (below)      verifier         the production package: the protocol the simulator runs

No module here decides ownership: every decision is made by ``verifier.protocol``, which the
SimPy driver (``_encoder.py``) and the live encoders run unchanged. The names below are the
ones other packages (``conformance``, ``benchmarks``, tests) use; ``tests/sim/test_layout.py``
pins them.
"""

from __future__ import annotations

from ._checkers import (
    L1_TERMS,
    CheckResult,
    L1Bound,
    check_all,
    check_claim_evidence,
    check_finished_work,
    check_fresh_reads,
    check_give_back,
    check_l1,
    check_lease,
    check_s1,
    check_s2,
    check_s3,
    double_assigned_jobs,
    l1_bound,
    processing_intervals,
)
from ._history import WORLD, History, Record
from ._metrics import RunMetrics, aggregate, compute_metrics, wilson_interval
from ._rng import Streams, TapeRandom
from ._runner import ProtocolFactory, RunResult, judge, replay_command, run_once, tier_mix
from ._scenario import Scenario, ScenarioError
from ._scenario_files import RunPlan, UsageError, apply_overrides, load_scenario, scenario_names
from ._world import World, request_record

__all__ = [
    "L1_TERMS",
    "WORLD",
    "CheckResult",
    "History",
    "L1Bound",
    "ProtocolFactory",
    "Record",
    "RunMetrics",
    "RunPlan",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "Streams",
    "TapeRandom",
    "UsageError",
    "World",
    "aggregate",
    "apply_overrides",
    "check_all",
    "check_claim_evidence",
    "check_finished_work",
    "check_fresh_reads",
    "check_give_back",
    "check_l1",
    "check_lease",
    "check_s1",
    "check_s2",
    "check_s3",
    "compute_metrics",
    "double_assigned_jobs",
    "judge",
    "l1_bound",
    "load_scenario",
    "processing_intervals",
    "replay_command",
    "request_record",
    "run_once",
    "scenario_names",
    "tier_mix",
    "wilson_interval",
]

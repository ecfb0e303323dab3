"""Live runs: the production guard and HTTP clients against the emulated servers, for real.

``python -m sim live`` starts the emulator (:mod:`sim._emulator`) on loopback and N encoders,
each an asyncio task running :class:`verifier.OwnershipGuard` with real httpx clients
(:class:`~verifier.GatewayMonitorService`, :class:`~verifier.LegacyGatewayClient` signing
JWS with its own Ed25519 key, :class:`~verifier.GatewayAidClient`) and, on infrastructure
nodes, the real :class:`~verifier.DatabaseTier` over the world's job store
(:class:`~sim._world_collection.WorldCollection`). What the simulator's SimPy driver does with
simulated calls, these encoders do over sockets; the decisions are the same protocol's.

Each encoder records the simulator's history format: its tier calls through
:class:`RecordingTier` (a transparent wrapper around each real client), and the true
processing interval from inside the work coroutine itself (``start`` when the guard starts it,
``stop`` when it returns or its cancellation has taken effect). The world records
assignments, commits, requeues and the gateway's lies. The simulator's checkers and metrics
then judge the history unchanged (:func:`sim._runner.judge`).

A live run is not deterministic (real time, real scheduling): the seed fixes the world's
randomness, the encoders' keys and their work durations, but not the interleaving. Reports say
so, and give the command to run it again rather than a replay.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from verifier import (
    ClaimedJob,
    ClaimRefused,
    DatabaseTier,
    EncoderIdentity,
    GatewayAidClient,
    GatewayMonitorService,
    LegacyGatewayClient,
    OwnershipGuard,
    Policy,
    Tier,
    TierError,
)

from ._emulator import Emulator, HttpFaults
from ._live_world import LiveWorld
from ._metrics import percentile
from ._params import Scenario
from ._runner import RunResult, judge, tier_mix
from ._world_collection import WorldCollection

__all__ = ["LiveOptions", "LiveResult", "RecordingTier", "open_fds", "run_live"]

_PHASES = ("download", "encode", "upload")
_QUIET = logging.getLogger("sim.live.guard")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False  # 200 guards' decisions would drown the report; --verbose re-enables


@dataclass(frozen=True)
class LiveOptions:
    """What a live run adds to a scenario: transport faults, a monitor restart, clients."""

    faults: HttpFaults = field(default_factory=HttpFaults)
    #: (at, down_for) seconds since the start: stop the monitor, then restart it.
    monitor_restart: tuple[float, float] | None = None
    #: Every HTTP client's timeout (the production default is 10-30 s; loopback needs less).
    client_timeout: float = 2.0
    #: Log the guards' decisions (logger ``sim.live.guard``) to stderr.
    verbose: bool = False


@dataclass
class LiveResult:
    """A live run's simulator-shaped result, and the figures only a live run has."""

    run: RunResult
    wall_s: float
    verifications: int
    verify_latency_p50_ms: float | None
    verify_latency_p99_ms: float | None
    injected: dict[str, int]
    bad_signatures: int
    requests: dict[str, int]
    open_connections_end: int
    fds_start: int
    fds_end: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "wall_s": self.wall_s,
            "verifications": self.verifications,
            "verifications_per_s": self.verifications / self.wall_s if self.wall_s else 0.0,
            "verify_latency_p50_ms": self.verify_latency_p50_ms,
            "verify_latency_p99_ms": self.verify_latency_p99_ms,
            "injected_faults": dict(self.injected),
            "bad_signatures": self.bad_signatures,
            "requests": dict(self.requests),
            "open_connections_end": self.open_connections_end,
            "fds_start": self.fds_start,
            "fds_end": self.fds_end,
        }


def open_fds() -> int:
    """Open file descriptors of this process (sockets included); -1 where not countable."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def _short(did: str) -> str:
    """An encoder's name in the history: the DID's last segment, as the world names it."""
    return did.rsplit(":", 1)[-1]


class RecordingTier:
    """A real tier client, wrapped to record each call in the history (and time the reads).

    It forwards every call unchanged and re-raises every exception, so the guard sees exactly
    what the real client answered; only the history learns more.
    """

    def __init__(self, client: Any, live: LiveWorld, name: str,
                 latencies: list[float]) -> None:
        self.client = client
        self.tier: Tier = client.tier
        self._live = live
        self._name = name
        self._latencies = latencies
        self.job_id = ""

    def _add(self, job: str, op: str, phase: str, value: Any) -> None:
        self._live.history.add(self._live.now(), self._name, job, op, phase, value)

    async def observe(self, job_id: str) -> Any:
        self._add(job_id, "verify", "invoke", (self.tier, "verify"))
        start = time.perf_counter()
        try:
            seen = await self.client.observe(job_id)
        except BaseException:
            self._add(job_id, "verify", "fail", self.tier)
            raise
        finally:
            self._latencies.append(time.perf_counter() - start)
        owner = seen.owner
        self._add(job_id, "verify", "ok", (self.tier, _short(owner) if owner else None,
                                           seen.status))
        return seen

    async def _write(self, op: str, job_id: str, call: Callable[[], Any]) -> Any:
        self._add(job_id, op, "invoke", self.tier)
        try:
            answer = await call()
        except ClaimRefused:
            self._add(job_id, op, "fail", self.tier)
            raise
        except BaseException:
            self._add(job_id, op, "info", self.tier)  # outcome unknown: may have happened
            raise
        self._add(job_id, op, "ok", self.tier)
        return answer

    async def claim(self, job_id: str, *, conditional: bool = True) -> Any:
        return await self._write("claim", job_id, lambda: self.client.claim(
            job_id, conditional=conditional))

    async def heartbeat(self, job_id: str, token: str | None,
                        progress: Mapping[str, float]) -> None:
        await self._write("heartbeat", job_id, lambda: self.client.heartbeat(
            job_id, token, progress))

    async def finish(self, job_id: str, token: str | None, result: Mapping[str, Any], *,
                     fenced: bool = True) -> None:
        await self._write("commit", job_id, lambda: self.client.finish(
            job_id, token, result, fenced=fenced))

    async def release(self, job_id: str, token: str | None, reason: str, *,
                      failed: bool) -> None:
        await self._write("release", job_id, lambda: self.client.release(
            job_id, token, reason, failed=failed))


class _Wake:
    """Stands in for the SimPy event the world fires to wake an idle encoder early."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def succeed(self) -> None:
        self.event.set()


class LiveEncoder:
    """One encoder node: its key, its real clients, its guard, its work."""

    def __init__(self, index: int, *, live: LiveWorld, emulator: Emulator, policy: Policy,
                 options: LiveOptions, outcomes: dict[str, int],
                 latencies: list[float]) -> None:
        sc = live.scenario
        seed = hashlib.sha256(f"spk-live:{live.seed}:{index}".encode()).digest()
        self.identity = EncoderIdentity.from_seed(seed)
        self.did = self.identity.did
        self.name = _short(self.did)
        self.live = live
        self.sc = sc
        self.rng = live.streams.stream(f"encoder.{index}")
        self.outcomes = outcomes
        timeout = options.client_timeout
        # One connection pool per node, as a real encoder has; the DID header identifies the
        # poller to the emulated gateway (it is what lets the gateway hand a job out twice).
        self.http = httpx.AsyncClient(headers={"X-Encoder-DID": self.did},
                                      limits=httpx.Limits(max_connections=8))
        self.gateway = LegacyGatewayClient(emulator.gateway_url, self.identity,
                                           client=self.http, timeout=timeout,
                                           long_poll_timeout=timeout)
        tiers = tier_mix(sc, index)
        clients: list[Any] = [self.gateway]
        self.database: DatabaseTier | None = None
        if tiers.database:
            loop = asyncio.get_running_loop()
            self.database = DatabaseTier(
                WorldCollection(live.world, run=live.hop(loop), sleep=time.sleep),  # type: ignore[arg-type]
                encoder_did=self.did, timeout=timeout)
            clients.append(self.database)
        if tiers.monitor:
            clients.append(GatewayMonitorService(emulator.monitor_url, client=self.http,
                                                 timeout=timeout))
        if tiers.aid:
            clients.append(GatewayAidClient(emulator.aid_url, self.did, client=self.http,
                                            timeout=timeout))
        wrapped = [RecordingTier(c, live, self.name, latencies) for c in clients]
        logger = logging.getLogger("sim.live.guard") if options.verbose else _QUIET
        self.guard = OwnershipGuard(did=self.did, clients=wrapped, policy=policy,
                                    logger=logger)

    async def aclose(self) -> None:
        if self.database is not None:
            await self.database.aclose()
        await self.http.aclose()

    async def run(self) -> None:
        sc = self.sc
        await asyncio.sleep(self.rng.random() * min(sc.poll_interval, 1.0))
        while True:
            try:
                offered = await (self.gateway.my_job() if sc.assignment == "myjob"
                                 else self.gateway.get_job())
            except TierError:
                offered = None
            if offered is None:
                await self._idle(sc.poll_interval * (0.5 + self.rng.random()))
                continue
            outcome = await self.guard.run(offered.id, self._work)
            kind = outcome.kind.value
            self.outcomes[kind] = self.outcomes.get(kind, 0) + 1

    async def _idle(self, duration: float) -> None:
        """Wait for the next poll; the gateway may wake us early to hand out a job twice."""
        wake = _Wake()
        self.live.world.idle[self.name] = wake  # type: ignore[assignment]
        try:
            await asyncio.wait_for(wake.event.wait(), duration)
        except TimeoutError:
            pass
        finally:
            self.live.world.idle.pop(self.name, None)

    async def _work(self, job: ClaimedJob) -> Mapping[str, Any]:
        """The encoder's work, recorded from the inside: the interval S2 is about."""
        sc, rng, history = self.sc, self.rng, self.live.history
        history.add(self.live.now(), self.name, job.job_id, "start", "ok")
        try:
            sigma = sc.phase_sigma
            for phase, mean in zip(_PHASES, (sc.download_mean_s, sc.encode_mean_s,
                                             sc.upload_mean_s), strict=True):
                job.set_phase(phase)
                mu = math.log(max(mean, 1e-9)) - sigma * sigma / 2
                await asyncio.sleep(rng.lognormvariate(mu, sigma))
                job.set_progress(pct=100.0 if phase == "upload" else 50.0, download_pct=100.0)
        except asyncio.CancelledError:
            # Stopping takes a while (C); the interval is held until the stop is real.
            try:
                await asyncio.sleep(rng.random() * sc.cancel_latency * 0.5)
            finally:
                history.add(self.live.now(), self.name, job.job_id, "stop", "ok", "cancelled")
            raise
        history.add(self.live.now(), self.name, job.job_id, "stop", "ok", "done")
        return {"cid": f"bafy{hashlib.sha256(job.job_id.encode()).hexdigest()[:32]}"}


async def run_live(scenario: Scenario, chain: str, seed: int, *,
                   options: LiveOptions | None = None,
                   progress: Callable[[float, int, int], None] | None = None,
                   emulator_ready: Callable[[Emulator], None] | None = None) -> LiveResult:
    """Serve the emulator, run ``scenario.encoders`` live encoders until every job is
    committed or failed (or ``scenario.max_time`` seconds), then judge the history."""
    options = options or LiveOptions()
    policy = Policy.named(chain, timing=scenario.timing_model())
    fds_start = open_fds()
    live = LiveWorld(scenario, seed)
    emulator = Emulator(live, faults=options.faults)
    outcomes: dict[str, int] = {}
    latencies: list[float] = []
    wall = time.perf_counter()
    await emulator.start()
    encoders: list[LiveEncoder] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        if emulator_ready is not None:
            emulator_ready(emulator)
        encoders = [LiveEncoder(i, live=live, emulator=emulator, policy=policy,
                                options=options, outcomes=outcomes, latencies=latencies)
                    for i in range(scenario.encoders)]
        tasks = [asyncio.create_task(e.run(), name=f"encoder:{e.name}") for e in encoders]
        if options.monitor_restart is not None:
            tasks.append(asyncio.create_task(_restart_monitor(emulator, *options.monitor_restart)))
        last = -1.0
        while not live.done and live.now() < scenario.max_time:
            await asyncio.sleep(0.1)
            failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception()]
            if failed:
                raise RuntimeError("a live encoder crashed") from failed[0].exception()
            if progress is not None and live.now() - last >= 1.0:
                last = live.now()
                progress(last, live.world.finished, len(live.job_ids))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        duration = live.advance()
        for encoder in encoders:
            await encoder.aclose()
        open_end = await _settled_connections(emulator)
        await emulator.stop()
    wall = time.perf_counter() - wall
    result = judge(scenario, chain, seed, live.history, live.job_ids, duration, outcomes,
                   live.world.calls)
    ms = [x * 1000.0 for x in latencies]
    return LiveResult(
        run=result, wall_s=wall, verifications=len(latencies),
        verify_latency_p50_ms=percentile(ms, 50), verify_latency_p99_ms=percentile(ms, 99),
        injected=dict(emulator.injected), bad_signatures=emulator.bad_signatures,
        requests={s.name: s.requests_served for s in emulator.servers},
        open_connections_end=open_end, fds_start=fds_start, fds_end=open_fds())


async def _settled_connections(emulator: Emulator, patience: float = 2.0) -> int:
    """Server connections still open once the clients' closes have arrived (a leak if > 0).

    A client's close reaches the server a moment later; poll for at most ``patience``."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + patience
    while True:
        count = sum(s.open_connections for s in emulator.servers)
        if count == 0 or loop.time() >= give_up:
            return count
        await asyncio.sleep(0.01)


async def _restart_monitor(emulator: Emulator, at: float, down_for: float) -> None:
    await asyncio.sleep(at)
    await emulator.stop_monitor()
    await asyncio.sleep(down_for)
    await emulator.start_monitor()

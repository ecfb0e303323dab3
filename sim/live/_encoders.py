"""Live runs: the production loop, guard and HTTP clients against the emulated servers.

``python -m sim live`` starts the emulator (:mod:`sim.live._emulator`) on loopback and N encoders,
each an asyncio task running the production :class:`verifier.EncoderLoop` (polling, choosing,
shutting down) around :class:`verifier.OwnershipGuard`, with real httpx clients
(:class:`~verifier.GatewayMonitorService`, :class:`~verifier.LegacyGatewayClient` signing
JWS with its own Ed25519 key, :class:`~verifier.GatewayAidClient`) and, on infrastructure
nodes, the real :class:`~verifier.DatabaseTier` over the world's job store
(:class:`~sim.live._collection.WorldCollection`). What the simulator's SimPy driver does with
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
import contextlib
import dataclasses
import hashlib
import logging
import math
import multiprocessing
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from verifier import (
    ClaimedJob,
    ClaimRefused,
    DatabaseTier,
    EncoderIdentity,
    EncoderLoop,
    GatewayAidClient,
    GatewayMonitorJob,
    GatewayMonitorService,
    GuardMetrics,
    GuardOutcome,
    JobPushClient,
    LegacyGatewayClient,
    LoopPolicy,
    OwnershipGuard,
    Policy,
    Tier,
    offer_sources,
    start_metrics_server,
)

from .._history import History
from .._metrics import percentile
from .._rng import Streams
from .._runner import RunResult, judge, tier_mix
from .._scenario import Scenario
from .._world import encoder_name
from ._collection import WorldCollection
from ._dashboard import dashboard_section, verification_series
from ._emulator import Emulator, HttpFaults
from ._features import feature_figures
from ._world import LiveWorld

__all__ = ["FEATURES", "LiveOptions", "LiveResult", "RecordingTier", "open_fds", "run_live"]

#: The cost features a live run switches on unless told not to (``--no-cache`` ...).
FEATURES: Final = frozenset({"cache", "batch", "push", "backoff"})
#: The status cache's maximum age when the scenario sets none: the pre-claim check only.
LIVE_CACHE_S: Final = 30.0

_PHASES = ("download", "encode", "upload")
#: One TLS context for all the run's clients (each would build its own, ~10 ms apiece;
#: nothing here speaks TLS, but httpx prepares it anyway).
_TLS = ssl.create_default_context()
#: Without --verbose the guards log here, nowhere: 200 guards' decisions would drown the report.
_QUIET = logging.getLogger("sim.live.quiet")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


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
    #: Processes running encoders (the emulator's included): one per core spreads the load.
    processes: int = 1
    #: Serve the home process's Prometheus metrics (its encoders' guards) on this port.
    metrics_port: int | None = None
    #: The cost features on (:data:`FEATURES`): status cache, batch screening, push, backoff.
    features: frozenset[str] = FEATURES


@dataclass
class LiveResult:
    """A live run's simulator-shaped result, and the figures only a live run has."""

    run: RunResult
    wall_s: float
    verifications: int
    verify_latency_p50_ms: float | None
    verify_latency_p99_ms: float | None
    #: tier -> (reads, p50 ms, p99 ms)
    verify_latency_by_tier_ms: dict[str, tuple[int, float | None, float | None]]
    injected: dict[str, int]
    bad_signatures: int
    requests: dict[str, int]
    open_connections_end: int
    fds_start: int
    fds_end: int
    processes: int = 1
    #: The ``--dashboard`` figures (:func:`sim.live._dashboard.dashboard_section`).
    dashboard: dict[str, Any] = field(default_factory=dict)
    #: What the cost features bought (:func:`sim.live._features.feature_figures`), and which
    #: were on.
    features: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "wall_s": self.wall_s,
            "verifications": self.verifications,
            "verifications_per_s": self.verifications / self.wall_s if self.wall_s else 0.0,
            "verify_latency_p50_ms": self.verify_latency_p50_ms,
            "verify_latency_p99_ms": self.verify_latency_p99_ms,
            "verify_latency_by_tier_ms": {
                tier: {"reads": n, "p50": p50, "p99": p99}
                for tier, (n, p50, p99) in self.verify_latency_by_tier_ms.items()},
            "injected_faults": dict(self.injected),
            "bad_signatures": self.bad_signatures,
            "requests": dict(self.requests),
            "open_connections_end": self.open_connections_end,
            "fds_start": self.fds_start,
            "fds_end": self.fds_end,
            "processes": self.processes,
            **self.features,
        }


def open_fds() -> int:
    """Open file descriptors of this process (sockets included); -1 where not countable."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


class RecordingTier:
    """A real tier client, wrapped to record each call in the history (and time the reads).

    It forwards every call unchanged and re-raises every exception, so the guard sees exactly
    what the real client answered; only the history learns more.
    """

    def __init__(self, client: Any, site: Site, name: str,
                 latencies: list[tuple[str, float]],
                 purpose: Callable[[str], str] | None = None) -> None:
        self.client = client
        self.tier: Tier = client.tier
        self._site = site
        self._name = name
        self._latencies = latencies
        #: The purpose of the read being sent for a job (``pre-claim``, ``verify``,
        #: ``recheck``), recorded with its ``invoke``: the dashboard leaves the pre-claim
        #: checks out, as ``verifier_verifications_total`` does. Without it every read was
        #: recorded as ``verify`` and the page counted the pre-claim checks (review).
        self.purpose = purpose
        self.job_id = ""

    def _add(self, job: str, op: str, phase: str, value: Any) -> None:
        self._site.history.add(self._site.now(), self._name, job, op, phase, value)

    async def observe(self, job_id: str) -> Any:
        purpose = self.purpose(job_id) if self.purpose is not None else "verify"
        self._add(job_id, "verify", "invoke", (self.tier, purpose))
        start = time.perf_counter()
        try:
            seen = await self.client.observe(job_id)
        except BaseException:
            self._add(job_id, "verify", "fail", self.tier)
            raise
        finally:
            self._latencies.append((self.tier.value, time.perf_counter() - start))
        owner = seen.owner
        self._add(job_id, "verify", "ok", (self.tier, encoder_name(owner) if owner else None,
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


@dataclass
class Site:
    """What the encoders of one process share: the run's parameters, the servers' URLs, where
    to record, and (in the emulator's own process only) the world itself, for the database
    tier and the gateway's early wake-ups. Other processes record on the same monotonic clock
    (``t0``) into their own history, merged at the end."""

    scenario: Scenario
    chain: str
    seed: int
    urls: tuple[str, str, str]  # monitor (with /api), gateway, aid
    t0: float
    options: LiveOptions
    world: LiveWorld | None = None
    history: History = field(default_factory=History)
    outcomes: dict[str, int] = field(default_factory=dict)
    latencies: list[tuple[str, float]] = field(default_factory=list)
    #: Counter totals sent back by other processes (their guards' metrics).
    totals: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.metrics = GuardMetrics()
        self.streams = Streams.from_seed(self.seed)
        on = self.options.features
        cache_s = (self.scenario.status_cache_s or LIVE_CACHE_S) if "cache" in on else 0.0
        self.policy = dataclasses.replace(
            Policy.named(self.chain, timing=self.scenario.timing_model()),
            status_cache_s=cache_s, backoff="backoff" in on)
        if self.world is not None:
            self.history = self.world.history

    def now(self) -> float:
        if self.world is not None:
            return self.world.now()
        return time.monotonic() - self.t0  # the loop's clock: asyncio uses time.monotonic


class SimulatedWorkFailure(RuntimeError):
    """A live encoder's work that failed on its own (``work_fail_rate``)."""


class LiveEncoder:
    """One encoder node: its key, its real clients, its guard, its work."""

    def __init__(self, index: int, site: Site) -> None:
        sc, options = site.scenario, site.options
        seed = hashlib.sha256(f"spk-live:{site.seed}:{index}".encode()).digest()
        self.identity = EncoderIdentity.from_seed(seed)
        self.did = self.identity.did
        self.name = encoder_name(self.did)
        self.site = site
        self.sc = sc
        self.rng = site.streams.stream(f"encoder.{index}")
        #: Whether and where each work fails on its own (``work_fail_rate``): a stream of its
        #: own, so that runs without failures draw exactly what they drew before.
        self.failures = site.streams.stream(f"encoder.{index}.failures")
        self.outcomes = site.outcomes
        monitor_url, gateway_url, aid_url = site.urls
        timeout = options.client_timeout
        # One connection pool per node, as a real encoder has; the DID header identifies the
        # poller to the emulated gateway (it is what lets the gateway hand a job out twice).
        self.http = httpx.AsyncClient(headers={"X-Encoder-DID": self.did}, verify=_TLS,
                                      limits=httpx.Limits(max_connections=8))
        self.gateway = LegacyGatewayClient(gateway_url, self.identity,
                                           client=self.http, timeout=timeout,
                                           long_poll_timeout=timeout)
        tiers = tier_mix(sc, index)
        self.aid: GatewayAidClient | None = None
        self.monitor: GatewayMonitorService | None = None
        self.push: JobPushClient | None = None
        clients: list[Any] = [self.gateway]
        self.database: DatabaseTier | None = None
        if tiers.database:
            live = site.world
            if live is None:
                raise ValueError("infrastructure encoders run in the emulator's process")
            loop = asyncio.get_running_loop()
            self.database = DatabaseTier(
                WorldCollection(live.world, run=live.hop(loop), sleep=time.sleep),  # type: ignore[arg-type]
                encoder_did=self.did, timeout=timeout)
            clients.append(self.database)
        if tiers.monitor:
            self.monitor = GatewayMonitorService(monitor_url, client=self.http, timeout=timeout)
            clients.append(self.monitor)
            if "push" in options.features:
                self.push = JobPushClient(monitor_url, connect_timeout=timeout)
        if tiers.aid:
            self.aid = GatewayAidClient(aid_url, self.did, client=self.http, timeout=timeout)
            clients.append(self.aid)
        wrapped = [RecordingTier(c, site, self.name, site.latencies) for c in clients]
        self.logger = logging.getLogger("sim.live.guard") if options.verbose else _QUIET
        self.guard = OwnershipGuard(did=self.did, clients=wrapped, policy=site.policy,
                                    logger=self.logger, metrics=site.metrics, push=self.push)
        for tier in wrapped:
            tier.purpose = self._read_purpose

    def _read_purpose(self, job_id: str) -> str:
        """The purpose of the read the guard is sending for ``job_id``: that of the
        :class:`~verifier.protocol.Observe` its run's protocol awaits the answer to
        (:meth:`~verifier.OwnershipGuard.awaiting`); ``verify`` if no run guards the job."""
        return str(getattr(self.guard.awaiting(job_id), "purpose", "verify"))

    async def aclose(self) -> None:
        if self.push is not None:
            await self.push.aclose()
        if self.database is not None:
            await self.database.aclose()
        await self.http.aclose()

    async def run(self) -> None:
        """The production loop (:class:`~verifier.EncoderLoop`) with this node's work.

        Its policy is the scenario's encoder loop, as the simulator's encoders run it
        (``Scenario.loop_policy``): one job at a time, from ``myJob`` or ``getJob`` as the
        scenario's gateway assigns (Gateway Aid's list first on aid nodes), polling every
        ``poll_interval`` (times a uniform 0.5-1.5, from the encoder's seeded stream), the
        scenario's cool-down (none by default: they retry whatever they are offered).
        Without the backoff feature the idle wait is fixed; with it, it doubles after each
        empty poll or job given up on a tier failure, up to eight poll intervals. Offers of
        two or more jobs (aid's list) are screened, as in production."""
        sc = self.sc
        await asyncio.sleep(self.rng.random() * min(sc.poll_interval, 1.0))
        if self.push is not None:
            await self.push.start()
        # Nodes with Gateway Aid list its pending jobs first (several per poll: what batch
        # screening is for), then ask the gateway.
        gateway_source = "myjob" if sc.assignment == "myjob" else "getjob"
        sources = ("aid", gateway_source) if self.aid is not None else (gateway_source,)
        # With backoff, idle and troubled polls back off too (up to eight poll intervals).
        backoff = "backoff" in self.site.options.features
        policy = sc.replace(backoff=1.0 if backoff else 0.0).loop_policy(
            sources, screen_at_least=LoopPolicy.screen_at_least)
        screen = (self._screen if self.monitor is not None
                  and "batch" in self.site.options.features else None)
        loop = EncoderLoop(self.guard, self._work,
                           offers=offer_sources(gateway=self.gateway, aid=self.aid),
                           policy=policy, rng=self.rng, idle=self._idle,
                           on_outcome=self._count, logger=self.logger,
                           metrics=self.site.metrics, screen=screen)
        await loop.run()

    async def _screen(self, job_ids: Any) -> dict[str, str]:
        """The monitor's batch status, recorded like the other calls (op ``screen``)."""
        assert self.monitor is not None
        site = self.site
        site.history.add(site.now(), self.name, None, "screen", "invoke", Tier.MONITOR)
        try:
            answer = await self.monitor.batch_status(job_ids)
        except BaseException:
            site.history.add(site.now(), self.name, None, "screen", "fail", Tier.MONITOR)
            raise
        site.history.add(site.now(), self.name, None, "screen", "ok", Tier.MONITOR)
        return answer

    def _count(self, outcome: GuardOutcome) -> None:
        kind = outcome.kind.value
        self.outcomes[kind] = self.outcomes.get(kind, 0) + 1

    async def _idle(self, duration: float) -> None:
        """Wait for the next poll; the gateway may wake us early to hand out a job twice
        (only encoders in the emulator's process can be woken)."""
        live = self.site.world
        if live is None:
            await asyncio.sleep(duration)
            return
        wake = _Wake()
        live.world.idle[self.name] = wake  # type: ignore[assignment]
        try:
            await asyncio.wait_for(wake.event.wait(), duration)
        except TimeoutError:
            pass
        finally:
            live.world.idle.pop(self.name, None)

    def _planned_failure(self) -> tuple[int, float] | None:
        """Whether this work fails on its own (``work_fail_rate``), and where: a phase and a
        share of it, drawn before the work begins (as the simulator draws a failure point)."""
        rate = self.sc.work_fail_rate
        if not rate or self.failures.random() >= rate:
            return None
        return self.failures.randrange(len(_PHASES)), self.failures.random()

    async def _work(self, job: ClaimedJob, offered: GatewayMonitorJob) -> Mapping[str, Any]:
        """The encoder's work, recorded from the inside: the interval S2 is about. With
        ``work_fail_rate`` it may fail on its own while the faults last: it raises, as a
        command that exits non-zero does, and the guard reports ``WorkEnded(False)``."""
        sc, rng, site = self.sc, self.rng, self.site
        history = site.history
        history.add(site.now(), self.name, job.job_id, "start", "ok")
        failure = self._planned_failure()
        horizon = sc.faults_until if sc.faults_until is not None else sc.max_time
        try:
            sigma = sc.phase_sigma
            for index, (phase, mean) in enumerate(zip(
                    _PHASES, (sc.download_mean_s, sc.encode_mean_s, sc.upload_mean_s),
                    strict=True)):
                job.set_phase(phase)
                mu = math.log(max(mean, 1e-9)) - sigma * sigma / 2
                length = rng.lognormvariate(mu, sigma)
                if failure is not None and failure[0] == index:
                    await asyncio.sleep(failure[1] * length)
                    if site.now() < horizon:  # a fault: none once the faults have stopped
                        history.add(site.now(), self.name, job.job_id, "stop", "ok", "failed")
                        raise SimulatedWorkFailure(f"the {phase} failed (simulated)")
                    length -= failure[1] * length
                await asyncio.sleep(length)
                job.set_progress(pct=100.0 if phase == "upload" else 50.0, download_pct=100.0)
        except asyncio.CancelledError:
            # The guard decided to stop it (loss detection ends here); stopping takes a while
            # (C), and the interval is held until the stop is real.
            history.add(site.now(), self.name, job.job_id, "cancel", "invoke")
            try:
                await asyncio.sleep(rng.random() * sc.cancel_latency * 0.5)
            finally:
                history.add(site.now(), self.name, job.job_id, "stop", "ok", "cancelled")
            raise
        history.add(site.now(), self.name, job.job_id, "stop", "ok", "done")
        return {"cid": f"bafy{hashlib.sha256(job.job_id.encode()).hexdigest()[:32]}"}


async def run_live(scenario: Scenario, chain: str, seed: int, *,
                   options: LiveOptions | None = None,
                   progress: Callable[[float, int, int], None] | None = None,
                   emulator_ready: Callable[[Emulator], None] | None = None) -> LiveResult:
    """Serve the emulator, run ``scenario.encoders`` live encoders until every job is
    committed or failed (or ``scenario.max_time`` seconds), then judge the history.

    With ``options.processes > 1`` the community encoders are spread over that many processes
    (one core each), the emulator's process keeping the infrastructure encoders (whose
    database tier needs the world in-process) and a share of the others."""
    options = options or LiveOptions()
    if options.processes < 1:
        raise ValueError("processes must be at least 1")
    fds_start = open_fds()
    live = LiveWorld(scenario, seed)
    emulator = Emulator(live, faults=options.faults)
    wall = time.perf_counter()
    await emulator.start()
    site = Site(scenario, chain, seed, (emulator.monitor_url, emulator.gateway_url,
                                        emulator.aid_url), live.t0, options, world=live)
    mine, theirs = _partition(scenario, options.processes)
    remote = _Remote(site, theirs)
    encoders: list[LiveEncoder] = []
    tasks: list[asyncio.Task[None]] = []
    exporter: Any = None
    try:
        if emulator_ready is not None:
            emulator_ready(emulator)
        remote.start()
        if options.metrics_port is not None:
            exporter = start_metrics_server(site.metrics, options.metrics_port)
        encoders = [LiveEncoder(i, site) for i in mine]
        tasks = [asyncio.create_task(e.run(), name=f"encoder:{e.name}") for e in encoders]
        if options.monitor_restart is not None:
            tasks.append(asyncio.create_task(_restart_monitor(emulator, *options.monitor_restart)))
        last = -1.0
        while not live.done and live.now() < scenario.max_time:
            await asyncio.sleep(0.1)
            failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception()]
            if failed:
                raise RuntimeError("a live encoder crashed") from failed[0].exception()
            remote.check()
            if progress is not None and live.now() - last >= 1.0:
                last = live.now()
                progress(last, live.world.finished, len(live.job_ids))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await remote.finish(site)  # their last requests land before the servers stop
        duration = live.advance()
        for encoder in encoders:
            await encoder.aclose()
        open_end = await _settled_connections(emulator)
        await emulator.stop()
        if exporter is not None:
            exporter.shutdown()
            exporter.server_close()
    wall = time.perf_counter() - wall
    result = judge(scenario, chain, seed, live.history, live.job_ids, duration, site.outcomes,
                   live.world.calls, realised=live.world.doubled)
    ms = [x * 1000.0 for _, x in site.latencies]
    by_tier: dict[str, list[float]] = {}
    for tier, x in site.latencies:
        by_tier.setdefault(tier, []).append(x * 1000.0)
    by_tier_ms = {tier: (len(v), percentile(v, 50), percentile(v, 99))
                  for tier, v in sorted(by_tier.items())}
    return LiveResult(
        run=result, wall_s=wall, verifications=len(ms),
        verify_latency_p50_ms=percentile(ms, 50), verify_latency_p99_ms=percentile(ms, 99),
        verify_latency_by_tier_ms=by_tier_ms,
        injected=dict(emulator.injected), bad_signatures=emulator.bad_signatures,
        requests={s.name: s.requests_served for s in emulator.servers},
        open_connections_end=open_end, fds_start=fds_start, fds_end=open_fds(),
        processes=options.processes,
        features={"features": sorted(options.features), "pushes_sent": emulator.pushes_sent,
                  **feature_figures(live.history, {s.name: s.requests_served
                                                   for s in emulator.servers},
                                    jobs=len(live.job_ids), encoders=scenario.encoders,
                                    windows=_outages(live, options), until=duration)},
        dashboard=dashboard_section(
            verification_series(live.history.records, duration),
            {tier: {"p50": p50, "p99": p99} for tier, (_, p50, p99) in by_tier_ms.items()},
            _totals(site)))


def _outages(live: LiveWorld, options: LiveOptions) -> list[tuple[float, float]]:
    """When the monitor could not answer: the world's outage windows, ``--monitor-restart``
    (the server itself stopped) and ``--rate-limit-storm`` (everything answered 429), in the
    history's time."""
    windows = list(live.world.monitor_down)
    if options.monitor_restart is not None:
        at, down_for = options.monitor_restart
        windows.append((at, at + down_for))
    storm = options.faults.storm_window()
    if storm is not None:
        windows.append(storm)
    return sorted(windows)


#: The dashboard's counters: report name -> the metric whose total it is.
_TOTALS: Final = {"conflicts_prevented": "verifier_conflicts_prevented_total",
                  "work_cancelled": "verifier_work_cancelled_total",
                  "lease_expiries": "verifier_lease_expiries_total"}


def _totals(site: Site) -> dict[str, float]:
    """This process's counter totals plus those the other processes sent back."""
    return {key: site.metrics.total(name) + site.totals.get(key, 0.0)
            for key, name in _TOTALS.items()}


#: The emulator's process also serves every request; its share of the encoders balances the
#: two cores of the load benchmark (0.25 left this process at ~47% and the other at ~73%).
_HOME_SHARE = 0.4


def _partition(scenario: Scenario, processes: int) -> tuple[list[int], list[list[int]]]:
    """Encoder indices for this process, and for each other process. Infrastructure nodes
    stay home (their database tier is the world itself)."""
    everyone = list(range(scenario.encoders))
    if processes == 1:
        return everyone, []
    infra = [i for i in everyone if tier_mix(scenario, i).database]
    community = [i for i in everyone if not tier_mix(scenario, i).database]
    home_extra = max(0, round(scenario.encoders * _HOME_SHARE) - len(infra))
    mine = infra + community[:home_extra]
    rest = community[home_extra:]
    theirs = [rest[k::processes - 1] for k in range(processes - 1)]
    return mine, [part for part in theirs if part]


class _Remote:
    """Encoders in other processes (spawned: a fresh interpreter, no inherited loop or
    sockets). They speak to the servers over loopback like the others, record on the same
    monotonic clock, and send their history back when told to stop."""

    def __init__(self, site: Site, parts: list[list[int]]) -> None:
        self.parts = parts
        self.args = (site.scenario, site.chain, site.seed, site.urls, site.t0, site.options)
        ctx = multiprocessing.get_context("spawn")
        self.stop = ctx.Event()
        self.results: Any = ctx.Queue()
        self.started: list[Any] = []
        self.procs = [ctx.Process(target=_remote_main, args=(self.args, part, self.stop,
                                                             self.results),
                                  name=f"live-encoders-{k}", daemon=True)
                      for k, part in enumerate(parts)]

    def start(self) -> None:
        for proc in self.procs:
            proc.start()
            self.started.append(proc)

    def check(self) -> None:
        for proc in self.procs:
            if proc.exitcode not in (None, 0):
                raise RuntimeError(f"{proc.name} exited with status {proc.exitcode}")

    async def finish(self, site: Site) -> None:
        if not self.started:
            return
        self.stop.set()
        try:
            for _ in self.started:
                records, outcomes, latencies, totals = await asyncio.to_thread(
                    self.results.get, timeout=60)
                site.history.records.extend(records)
                for key, value in totals.items():
                    site.totals[key] = site.totals.get(key, 0.0) + value
                for kind, count in outcomes.items():
                    site.outcomes[kind] = site.outcomes.get(kind, 0) + count
                site.latencies.extend(latencies)
        finally:
            for proc in self.started:
                await asyncio.to_thread(proc.join, 10)
                if proc.is_alive():
                    proc.kill()
                    await asyncio.to_thread(proc.join, 10)
                proc.close()  # its sentinel pipe
            self.results.close()
            self.results.join_thread()


def _remote_main(args: tuple[Any, ...], indices: list[int], stop: Any, results: Any) -> None:
    site = Site(*args)
    asyncio.run(_remote_encoders(site, indices, stop))
    results.put((site.history.records, site.outcomes, site.latencies, _totals(site)))


async def _remote_encoders(site: Site, indices: list[int], stop: Any) -> None:
    encoders = [LiveEncoder(i, site) for i in indices]
    tasks = [asyncio.create_task(e.run()) for e in encoders]
    try:
        await asyncio.to_thread(stop.wait)  # a process-shared event: waited for on a thread
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for encoder in encoders:
            await encoder.aclose()


async def _settled_connections(emulator: Emulator, patience: float = 2.0) -> int:
    """Server connections still open once the clients' closes have arrived (a leak if > 0).

    A client's close reaches the server a moment later: wait for that, at most ``patience``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(patience):
            for server in emulator.servers:
                await server.wait_idle()
    return sum(s.open_connections for s in emulator.servers)


async def _restart_monitor(emulator: Emulator, at: float, down_for: float) -> None:
    await asyncio.sleep(at)
    await emulator.stop_monitor()
    await asyncio.sleep(down_for)
    await emulator.start_monitor()

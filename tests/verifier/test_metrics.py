"""Prometheus metrics of the guard and the loop: counted from what happened, served on request."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import select
import socket
import threading
import time
import urllib.request
from typing import Any

import pytest

from verifier import (
    ClaimedJob,
    EncoderLoop,
    GuardMetrics,
    LoopPolicy,
    OwnershipGuard,
    Policy,
    Settings,
    Tier,
    TierUnavailable,
    TimingModel,
    parse_job,
    start_metrics_server,
)
from verifier.testing import InMemoryJobs, InMemoryTier, virtual_time

A = "did:key:z6MkEncoderA"
B = "did:key:z6MkEncoderB"
TIMING = TimingModel(monitor_lag=5, write_delay=2, recheck_interval=10, reassign_timeout=60)


def node(jobs: InMemoryJobs, metrics: GuardMetrics) -> tuple[OwnershipGuard, list[InMemoryTier]]:
    tiers = [InMemoryTier(Tier.MONITOR, jobs, A, latency=0.2),
             InMemoryTier(Tier.GATEWAY, jobs, A, latency=0.05)]
    return OwnershipGuard(did=A, clients=tiers, policy=Policy.hardened(TIMING),
                          metrics=metrics), tiers


async def encode(job: ClaimedJob):
    for phase in ("download", "encode", "upload"):
        job.set_phase(phase)
        await asyncio.sleep(10)
        job.set_progress(pct=50)
    return {"cid": "bafy"}


@virtual_time
async def test_a_processed_job_is_counted_with_its_reads_writes_and_waits():
    jobs = InMemoryJobs()
    jobs.add("j1")
    metrics = GuardMetrics()
    guard, _ = node(jobs, metrics)
    outcome = await guard.run("j1", encode)
    assert outcome.processed
    v = metrics.value
    assert v("verifier_jobs_total", outcome="processed", code="FINISHED") == 1
    assert v("verifier_tier_requests_total", tier="gateway", op="claim", result="ok") == 1
    assert v("verifier_tier_requests_total", tier="gateway", op="finish", result="ok") == 1
    assert v("verifier_verifications_total", tier="monitor", purpose="verify",
             verdict="mine") == 1
    assert v("verifier_verifications_total", tier="monitor", purpose="recheck",
             verdict="mine") >= 2
    # One settle wait, as long as the model's settle delay for the monitor (virtual time).
    assert v("verifier_settle_wait_seconds_count") == 1
    assert v("verifier_settle_wait_seconds_sum") >= TIMING.settle_delay(TIMING.monitor_lag)
    assert v("verifier_time_to_start_seconds_count") == 1
    assert v("verifier_tier_request_seconds_count", tier="monitor", op="read") >= 4
    assert v("verifier_jobs_in_progress") == 0


@virtual_time
async def test_a_theft_mid_work_is_a_cancellation_and_a_taken_job_a_conflict_prevented():
    jobs = InMemoryJobs()
    jobs.add("j1")
    jobs.add("j2", status="assigned", assigned_to=B)
    metrics = GuardMetrics()
    guard, _ = node(jobs, metrics)

    async def stolen(job: ClaimedJob):
        job.set_phase("encode")
        await asyncio.sleep(5)
        jobs.update("j1", assigned_to=B)
        await asyncio.sleep(3600)

    assert (await guard.run("j1", stolen)).code == "MONITOR_THEFT_DETECTED"
    assert (await guard.run("j2", encode)).code == "PRE_CLAIM_CONFLICT"
    v = metrics.value
    assert v("verifier_work_cancelled_total", code="MONITOR_THEFT_DETECTED") == 1
    assert v("verifier_verifications_total", tier="monitor", purpose="recheck",
             verdict="other") == 1
    assert v("verifier_conflicts_prevented_total", code="PRE_CLAIM_CONFLICT") == 1
    assert v("verifier_lease_expiries_total") == 0


@virtual_time
async def test_an_unanswered_recheck_is_a_failed_verification_and_the_lease_expiry_counted():
    jobs = InMemoryJobs()
    jobs.add("j1")
    metrics = GuardMetrics()
    guard, (monitor, _) = node(jobs, metrics)

    async def long_encode(job: ClaimedJob):
        job.set_phase("encode")
        monitor.fail_next("observe", TierUnavailable("monitor", "down"), times=1000)
        await asyncio.sleep(3600)

    assert (await guard.run("j1", long_encode)).code == "LEASE_EXPIRED"
    assert metrics.value("verifier_lease_expiries_total") == 1
    assert metrics.value("verifier_verifications_total", tier="monitor", purpose="recheck",
                         verdict="failed") >= 1
    assert metrics.value("verifier_tier_requests_total", tier="monitor", op="read",
                         result="failed") >= 1


@virtual_time
async def test_the_loop_counts_its_polls_by_source_and_result():
    jobs = InMemoryJobs()
    jobs.add("j1")
    metrics = GuardMetrics()
    guard, _ = node(jobs, metrics)
    calls = []

    async def getjob():
        calls.append(1)
        if len(calls) == 1:
            raise TierUnavailable("gateway", "getJob: HTTP 502")
        return [parse_job(d) for d in jobs.docs.values() if d["status"] == "queued"]

    loop = EncoderLoop(guard, lambda job, offered: encode(job), offers={"getjob": getjob},
                       policy=LoopPolicy(sources=("getjob",), idle_s=1), metrics=metrics)

    async def stop_after_commit():
        while not jobs.commits:  # noqa: ASYNC110 (virtual time; the store has no event)
            await asyncio.sleep(1)
        loop.stop()

    stopper = asyncio.create_task(stop_after_commit())
    await loop.run()
    await stopper
    v = metrics.value
    assert v("verifier_polls_total", source="getjob", result="failed") == 1
    assert v("verifier_polls_total", source="getjob", result="offered") >= 1


def test_the_exporter_serves_the_metrics_on_loopback():
    metrics = GuardMetrics()
    metrics.record_outcome("skipped", "OWNERSHIP_CONFLICT")
    server = start_metrics_server(metrics, 0)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'verifier_conflicts_prevented_total{code="OWNERSHIP_CONFLICT"} 1.0' in text
    for line in ("# TYPE verifier_jobs_total counter",
                 "# TYPE verifier_tier_request_seconds histogram",
                 "# TYPE verifier_settle_wait_seconds histogram",
                 "# TYPE verifier_jobs_in_progress gauge"):
        assert line in text



def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return answer.read().decode()


def _closed_by_server(s: socket.socket) -> bool:
    """Whether the server closed ``s``: EOF or a reset within a generous 30 s."""
    return _closed_by_the_server([s], at_least=1) == 1


def _closed_by_the_server(socks: list[socket.socket], *, at_least: int) -> int:
    """How many of ``socks`` the server closed (EOF or a reset), waiting a generous 30 s in
    all for ``at_least`` of them (the outcome is asserted, not how long it took)."""
    closed: set[socket.socket] = set()
    deadline = time.monotonic() + 30
    while len(closed) < at_least and time.monotonic() < deadline:
        ready, _, _ = select.select([s for s in socks if s not in closed], [], [], 0.5)
        for s in ready:
            try:
                data = s.recv(1)
            except ConnectionResetError:
                data = b""  # a reset is a close too
            if data == b"":
                closed.add(s)
    return len(closed)


def test_idle_connections_cannot_use_up_the_encoders_threads():
    """prometheus_client's server started a thread per connection, with no timeout and no
    limit, in the encoder's process: 300 idle connections made 302 threads, and under a
    thread limit every job ended WORK_FAILED "can't start new thread" (adversarial review).
    Past the cap, a new connection takes the slot of the oldest one still silent (which is
    closed), so the threads stay bounded however many connect."""
    server = start_metrics_server(GuardMetrics(), 0, connection_timeout=60, max_connections=4)
    port = server.server_port
    held: list[socket.socket] = []
    try:
        threads_before = set(threading.enumerate())
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(44)]
        # Past the 4th, each one shed the oldest still open or, while 8 threads were still
        # ending, was itself closed at once: either way the server closed all but 4 (the
        # timeout, 60 s, closed none of them). Which 4 stay open depends on how fast the
        # shed threads end (the last 4 on an idle machine; not on a loaded one, where this
        # asserted exactly that and failed, session 33).
        assert _closed_by_the_server(held, at_least=40) >= 40
        # Never more than the 4 slots plus 4 shed connections' threads, still ending: the
        # server's own count, which its cap is enforced on. (The process's thread count
        # was asserted here until session 32, and a thread between giving its slot back and
        # exiting made it flaky on a loaded machine.)
        assert server._threads <= 8
        started = [t for t in threading.enumerate()
                   if t not in threads_before and t.name == "metrics-connection"]
        # And every one ends once its client has gone: no thread is left behind.
        for s in held:
            s.close()
        for thread in started:
            thread.join(timeout=30)
        assert not [t for t in started if t.is_alive()]
    finally:
        for s in held:
            s.close()
        server.shutdown()
        server.server_close()


def test_each_scrape_gives_its_slot_and_its_thread_back():
    """Many scrapes one after another, then both slots held by silent clients: the scrape
    after them must still shed one and be answered. A slot or a thread count never given
    back (mutants that dropped either passed every test: session 39) turns it away."""
    server = start_metrics_server(GuardMetrics(), 0, connection_timeout=60, max_connections=2)
    port = server.server_port
    held: list[socket.socket] = []
    try:
        for _ in range(6):
            assert "verifier_jobs_total" in _scrape(port)
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        assert "verifier_jobs_total" in _scrape(port)  # accepted after both: sheds one
        assert _closed_by_the_server(held, at_least=1) >= 1
    finally:
        for s in held:
            s.close()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("trickling", [0, 4, 8])
def test_scrapes_are_served_while_idle_or_trickling_clients_hold_every_slot(trickling):
    """Eight connections that sent nothing (or a byte now and then) held the 8 slots, and
    every scrape was closed unanswered until the timeout cut them (adversarial review). A
    scrape now takes the slot of the oldest connection still sending its request; a request
    already read is never shed. The timeout (60 s) plays no part here."""
    metrics = GuardMetrics()
    metrics.record_outcome("processed", "FINISHED")
    server = start_metrics_server(metrics, 0, connection_timeout=60)
    port = server.server_port
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    try:
        for s in slow[:trickling]:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: a")
        for _ in range(3):
            assert 'verifier_jobs_total{code="FINISHED",outcome="processed"} 1.0' in \
                _scrape(port)
        # The first scrape took the slot of the oldest; the later ones found it free again.
        assert _closed_by_server(slow[0])
    finally:
        for s in slow:
            s.close()
        server.shutdown()
        server.server_close()


def _trickle_until_closed(s: socket.socket, budget: int) -> bool:
    """Send one byte of a header that never ends, every 20 ms, up to ``budget`` bytes;
    whether the server closed the connection first."""
    s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
    for _ in range(budget):
        try:
            s.sendall(b"a")
        except (BrokenPipeError, ConnectionResetError):
            return True
        readable, _, _ = select.select([s], [], [], 0.02)
        if readable:
            with contextlib.suppress(ConnectionResetError):
                if s.recv(1) == b"":
                    return True
            return True
    return False


def test_a_trickling_client_is_cut_at_its_deadline_however_often_it_sends():
    """The timeout was per read: a byte every few seconds kept a slot for ever. The request
    must now be read within the deadline counted from the accept. Bound: 0.5 s, against a
    trickle of up to 60 s (a loaded machine only makes the cut come sooner in that race)."""
    server = start_metrics_server(GuardMetrics(), 0, connection_timeout=0.5, max_connections=2)
    try:
        with socket.create_connection(("127.0.0.1", server.server_port)) as s:
            assert _trickle_until_closed(s, budget=3000)
        assert "verifier_jobs_total" in _scrape(server.server_port)
    finally:
        server.shutdown()
        server.server_close()


class _Clock:
    """A clock the test moves, which tells when the server has read it (its accept of a
    connection reads it first: the deadline is fixed then)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.reads = 0
        self._changed = threading.Condition()

    def __call__(self) -> float:
        with self._changed:
            self.reads += 1
            self._changed.notify_all()
            return self.now

    def wait_for_reads(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.reads >= count, timeout=30)


def test_the_request_deadline_counts_from_the_accept_on_the_servers_clock():
    """The same deadline with an injected clock: no real time passes between the bytes, and
    the per-read timeout (60 s) never fires, so only the clock can cut the connection."""
    clock = _Clock()
    server = start_metrics_server(GuardMetrics(), 0, connection_timeout=60, clock=clock)
    try:
        with socket.create_connection(("127.0.0.1", server.server_port)) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: a")
            clock.wait_for_reads(1)  # accepted: its deadline is 1060
            clock.now += 61  # past it: the next read of the request is the last
            s.sendall(b"a")
            assert _closed_by_server(s)
        reads = clock.reads
        with socket.create_connection(("127.0.0.1", server.server_port)) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
            clock.wait_for_reads(reads + 1)  # accepted at 1061: its deadline is 1121
            clock.now += 59
            s.sendall(b"Host: x\r\n\r\n")
            s.settimeout(30)
            assert s.recv(12).startswith(b"HTTP/1.")  # answered
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("variable", "value"), [
    ("VERIFIER_METRICS_PORT", "http"), ("VERIFIER_METRICS_PORT", "70000"),
    ("VERIFIER_METRICS_PORT", "0"), ("VERIFIER_METRICS_PORT", "²"),
    ("VERIFIER_METRICS_ADDR", "localhost:9"),
])
def test_bad_metrics_settings_are_refused_by_name(variable, value):
    from verifier import ConfigurationError

    with pytest.raises(ConfigurationError, match=variable):
        Settings.from_env({"GATEWAY_MONITOR_ENABLED": "true", variable: value}, dotenv=None)


@pytest.mark.parametrize("addr", ["224.0.0.1", "239.255.255.250", "255.255.255.255",
                                  "240.0.0.1", "ff02::1"])
def test_a_group_or_broadcast_address_is_refused(addr):
    """Accepted and logged as serving, reachable by nobody (adversarial review)."""
    from verifier import ConfigurationError

    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({"GATEWAY_MONITOR_ENABLED": "true", "VERIFIER_METRICS_PORT": "9464",
                           "VERIFIER_METRICS_ADDR": addr}, dotenv=None)
    assert info.value.variable == "VERIFIER_METRICS_ADDR" and "address" in info.value.problem


@pytest.mark.parametrize("addr", ["0.0.0.0", "::", "::1", "10.1.2.3", "192.168.1.255"])  # noqa: S104
def test_addresses_of_the_host_and_every_address_are_accepted(addr):
    settings = Settings.from_env({"GATEWAY_MONITOR_ENABLED": "true", "VERIFIER_METRICS_PORT":
                                  "9464", "VERIFIER_METRICS_ADDR": addr}, dotenv=None)
    assert settings.metrics_addr == addr


def test_metrics_settings_default_to_off_on_loopback():
    settings = Settings.from_env({"GATEWAY_MONITOR_ENABLED": "true",
                                  "VERIFIER_METRICS_PORT": "9464"}, dotenv=None)
    assert (settings.metrics_port, settings.metrics_addr) == (9464, "127.0.0.1")
    assert Settings.from_env({"GATEWAY_MONITOR_ENABLED": "true"}, dotenv=None).metrics_port \
        is None


def test_a_metrics_address_without_a_port_is_refused_naming_both():
    """VERIFIER_METRICS_ADDR alone started no exporter, silently (operator review)."""
    from verifier import ConfigurationError

    for port in ({}, {"VERIFIER_METRICS_PORT": ""}):
        with pytest.raises(ConfigurationError) as info:
            Settings.from_env({"GATEWAY_MONITOR_ENABLED": "true", **port,
                               "VERIFIER_METRICS_ADDR": "0.0.0.0"}, dotenv=None)  # noqa: S104
        assert info.value.variable == "VERIFIER_METRICS_ADDR"
        assert "VERIFIER_METRICS_PORT" in info.value.problem


def _listen_failure(port: int, addr: str):
    from verifier import ConfigurationError

    with pytest.raises(ConfigurationError) as info:
        server = start_metrics_server(GuardMetrics(), port, addr)
        server.shutdown()
        server.server_close()
    return info.value


def test_an_address_that_is_not_this_hosts_is_blamed_on_the_address():
    """A bind failure was always reported as VERIFIER_METRICS_PORT, even when the address was
    at fault (EADDRNOTAVAIL) (operator review). 192.0.2.1 is TEST-NET-1: no host's address."""
    error = _listen_failure(9464, "192.0.2.1")
    assert error.variable == "VERIFIER_METRICS_ADDR"
    assert "cannot listen on 192.0.2.1:9464" in error.problem
    # A link-local IPv6 address without its scope: bind() says EINVAL (or EAFNOSUPPORT on a
    # host without IPv6); the address's fault either way (review, session 16).
    assert _listen_failure(9464, "fe80::1").variable == "VERIFIER_METRICS_ADDR"


def test_a_port_in_use_is_blamed_on_the_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        error = _listen_failure(port, "127.0.0.1")
    assert error.variable == "VERIFIER_METRICS_PORT"
    assert f"cannot listen on 127.0.0.1:{port}" in error.problem


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("addr", [
    "127.0.0.1",
    pytest.param("::1", marks=pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6")),
])
def test_the_exporter_logs_a_url_that_can_be_pasted(addr, caplog):
    """``METRICS: serving http://::1:19465/metrics`` is no URL: an IPv6 address needs its
    brackets (operator review)."""
    logger = logging.getLogger("verifier.run")
    with caplog.at_level(logging.INFO, logger="verifier.run"):
        server = start_metrics_server(GuardMetrics(), 0, addr, logger=logger)
    try:
        host = f"[{addr}]" if ":" in addr else addr
        url = f"http://{host}:{server.server_port}/metrics"
        assert f"METRICS: serving {url}" in caplog.messages
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert answer.status == 200
    finally:
        server.shutdown()
        server.server_close()


@virtual_time
async def test_jobs_in_progress_counts_the_runs_under_way():
    jobs = InMemoryJobs()
    jobs.add("j1")
    metrics = GuardMetrics()
    guard, _ = node(jobs, metrics)
    seen: list[float] = []

    async def work(job: ClaimedJob):
        seen.append(metrics.value("verifier_jobs_in_progress"))
        return await encode(job)

    await guard.run("j1", work)
    assert seen == [1.0] and metrics.value("verifier_jobs_in_progress") == 0


@virtual_time
async def test_a_failure_of_the_metrics_never_fails_the_job(caplog):
    """Raised between a claim and its release, a metrics error would leave the job held."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    metrics = GuardMetrics()

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    metrics.settle_wait.observe = broken  # type: ignore[method-assign]
    metrics.jobs.labels = broken  # type: ignore[method-assign]
    guard, _ = node(jobs, metrics)
    assert (await guard.run("j1", encode)).processed
    assert jobs.commits == [("j1", A)]
    assert caplog.text.count("METRICS_FAILED") == 1  # logged once, not per event


def test_rare_events_have_a_series_from_the_start_so_increase_sees_the_first_one():
    metrics = GuardMetrics()
    assert metrics.registry.get_sample_value(
        "verifier_conflicts_prevented_total", {"code": "OWNERSHIP_CONFLICT"}) == 0.0
    assert metrics.registry.get_sample_value(
        "verifier_work_cancelled_total", {"code": "LEASE_EXPIRED"}) == 0.0
    # A tier's first failure, too: an alert on rate(...{result="failed"}) must see it.
    assert metrics.registry.get_sample_value(
        "verifier_tier_requests_total",
        {"tier": "monitor", "op": "read", "result": "failed"}) == 0.0
    assert metrics.registry.get_sample_value(
        "verifier_tier_requests_total",
        {"tier": "aid", "op": "heartbeat", "result": "unknown"}) == 0.0
    # And the latency of each, so a quantile over increase() sees a tier's first answer.
    for tier, op in (("monitor", "read"), ("gateway", "claim"), ("monitor", "batch")):
        assert metrics.registry.get_sample_value(
            "verifier_tier_request_seconds_count", {"tier": tier, "op": op}) == 0.0
    assert metrics.registry.get_sample_value(
        "verifier_verifications_total",
        {"tier": "database", "purpose": "recheck", "verdict": "failed"}) == 0.0
    # A bug in the guard (VerifierGuardError), and a loop's failed polls of each of its
    # sources (VerifierOffersFailing).
    assert metrics.registry.get_sample_value(
        "verifier_jobs_total", {"outcome": "failed", "code": "GUARD_ERROR"}) == 0.0
    jobs = InMemoryJobs()
    guard, _ = node(jobs, metrics)

    async def nothing() -> list[Any]:
        return []

    EncoderLoop(guard, lambda job, offered: encode(job), offers={"aid": nothing},
                policy=LoopPolicy(sources=("aid",)), metrics=metrics)
    assert metrics.registry.get_sample_value(
        "verifier_polls_total", {"source": "aid", "result": "failed"}) == 0.0


@virtual_time
async def test_a_cached_answer_is_a_cache_hit_and_not_a_tier_request():
    """Only requests that left count as tier requests (and their latency): a read answered
    from the status cache is a cache hit (operator review, session 15: it was counted as a
    monitor read of ~0 s, inflating the rate and pulling the latency quantiles down)."""
    from verifier import StatusCache

    jobs = InMemoryJobs()
    jobs.add("j1")
    metrics = GuardMetrics()
    tiers = [InMemoryTier(Tier.MONITOR, jobs, A, latency=0.2),
             InMemoryTier(Tier.GATEWAY, jobs, A, latency=0.05)]
    policy = dataclasses.replace(Policy.hardened(TIMING), status_cache_s=30.0)
    cache = StatusCache()
    guard = OwnershipGuard(did=A, clients=tiers, policy=policy, metrics=metrics, cache=cache)
    # A screened answer in the cache: the pre-claim check takes it.
    guard.screened({"j1": (await tiers[0].observe("j1"))}, decided=guard.now())
    sent = tiers[0].calls.count("observe")
    assert (await guard.run("j1", encode)).processed
    reads = tiers[0].calls.count("observe") - sent
    v = metrics.value
    assert v("verifier_cache_hits_total", tier="monitor") == 1
    counted = (v("verifier_tier_requests_total", tier="monitor", op="read", result="ok")
               + v("verifier_tier_requests_total", tier="monitor", op="read", result="failed"))
    assert counted == reads
    assert v("verifier_tier_request_seconds_count", tier="monitor", op="read") == reads


@virtual_time
async def test_an_operation_the_tier_lacks_is_not_counted_as_a_request():
    """A client that refuses an operation before sending anything (Gateway Aid has no
    release) makes the give-back unknown to the protocol, but no request went out, so none is
    counted ("unknown" would page an operator for every aid job given back)."""
    from verifier import TierUnsupported

    class NoRelease(InMemoryTier):
        async def release(self, job_id, token, reason, *, failed):  # type: ignore[override]
            self.calls.append("release")
            raise TierUnsupported("gateway", "no release endpoint")

    class DownAfterPreClaim(InMemoryTier):
        async def observe(self, job_id):  # type: ignore[override]
            if self.calls.count("observe") >= 1:
                self.fail_next("observe", TierUnavailable("monitor", "503"))
            return await super().observe(job_id)

    jobs = InMemoryJobs()
    jobs.add("j1")
    metrics = GuardMetrics()
    tiers = [DownAfterPreClaim(Tier.MONITOR, jobs, A, latency=0.2),
             NoRelease(Tier.GATEWAY, jobs, A, latency=0.05)]
    guard = OwnershipGuard(did=A, clients=tiers, policy=Policy.hardened(TIMING), metrics=metrics)
    outcome = await guard.run("j1", encode)
    assert outcome.code == "UNCONFIRMED" and "release" in tiers[1].calls
    v = metrics.value
    assert v("verifier_tier_requests_total", tier="gateway", op="claim", result="ok") == 1
    for result in ("ok", "refused", "unknown"):
        assert v("verifier_tier_requests_total", tier="gateway", op="release",
                 result=result) == 0
    assert v("verifier_tier_request_seconds_count", tier="gateway", op="release") == 0


def test_every_outcome_a_job_can_end_with_has_a_series_from_the_start():
    """``verifier_jobs_total`` had series at 0 for FINISHED and GUARD_ERROR only: every other
    (outcome, code) was born at its first job, which increase() and rate() then missed. After
    a restart the VerifierConflictsFrequent ratio lost the first job of each skip code from
    its denominator and fired at 33% for conflicts that were 25% of the jobs (review, checked
    with promtool). Every outcome the protocol can end with is found in its source here."""
    import re
    from pathlib import Path

    import verifier.protocol
    from verifier._metrics import CANCELLATION_CODES, JOB_OUTCOMES

    source = Path(verifier.protocol.__file__).read_text(encoding="utf-8")
    literal = {(kind.lower(), code) for kind, code in re.findall(
        r'Outcome\(OutcomeKind\.([A-Z]+),\s*"([A-Z_]+)"', source)}
    lost = {("cancelled", code) for code in re.findall(r'_on_loss\(\s*"([A-Z_]+)"', source)}
    assert literal and lost
    dynamic = {("skipped", "PRE_CLAIM_CONFLICT"), ("skipped", "NOT_AVAILABLE"),  # pre-claim
               ("skipped", "MONITOR_THEFT_DETECTED"), ("skipped", "OWNERSHIP_CONFLICT"),
               ("skipped", "NOT_ASSIGNED"),
               ("cancelled", "MONITOR_THEFT_DETECTED"), ("cancelled", "OWNERSHIP_LOST"),
               *((kind, code) for kind in ("skipped", "cancelled")
                 for code in ("SHUTDOWN", "SHUTDOWN_HELD")),
               ("skipped", "ALREADY_RUNNING"), ("failed", "GUARD_ERROR")}  # guard, loop
    assert literal | lost | dynamic <= JOB_OUTCOMES
    assert {code for kind, code in JOB_OUTCOMES if kind == "cancelled"} <= CANCELLATION_CODES
    metrics = GuardMetrics()
    for outcome, code in JOB_OUTCOMES:
        assert metrics.registry.get_sample_value(
            "verifier_jobs_total", {"outcome": outcome, "code": code}) == 0.0, (outcome, code)
    for code in CANCELLATION_CODES:
        assert metrics.registry.get_sample_value(
            "verifier_work_cancelled_total", {"code": code}) == 0.0, code


def test_every_tier_series_an_alert_or_a_panel_reads_exists_from_the_start():
    """As above, for the tiers: a read's first failure must be seen by rate() (an alert on
    it, the dashboard's error ratio), so each tier's reads, writes, latencies and verdicts
    are series at 0 before any request (session 39: dropping the reads' went unseen)."""
    metrics = GuardMetrics()
    value = metrics.registry.get_sample_value
    for tier in ("database", "monitor", "gateway", "aid"):
        for result in ("ok", "failed"):
            assert value("verifier_tier_requests_total",
                         {"tier": tier, "op": "read", "result": result}) == 0.0, (tier, result)
        for op in ("claim", "heartbeat", "finish", "release"):
            for result in ("ok", "refused", "unknown"):
                assert value("verifier_tier_requests_total",
                             {"tier": tier, "op": op, "result": result}) == 0.0, (tier, op)
        for op in ("read", "claim", "heartbeat", "finish", "release"):
            assert value("verifier_tier_request_seconds_count",
                         {"tier": tier, "op": op}) == 0.0, (tier, op)
        for purpose in ("verify", "recheck"):
            for verdict in ("mine", "other", "done", "unknown", "failed"):
                assert value("verifier_verifications_total", {
                    "tier": tier, "purpose": purpose, "verdict": verdict}) == 0.0
        assert value("verifier_cache_hits_total", {"tier": tier}) == 0.0
    for result in ("ok", "failed"):
        assert value("verifier_tier_requests_total",
                     {"tier": "monitor", "op": "batch", "result": result}) == 0.0
    assert value("verifier_tier_request_seconds_count", {"tier": "monitor", "op": "batch"}) == 0


def test_a_conflict_is_prevented_only_by_a_job_skipped_for_it():
    """Work stopped for a theft was not prevented: it had run (a cancellation). The same code
    counts as a prevented conflict only when it kept the job from starting (session 39)."""
    metrics = GuardMetrics()
    metrics.record_outcome("cancelled", "MONITOR_THEFT_DETECTED")
    assert metrics.total("verifier_conflicts_prevented_total") == 0
    assert metrics.value("verifier_work_cancelled_total", code="MONITOR_THEFT_DETECTED") == 1
    metrics.record_outcome("skipped", "MONITOR_THEFT_DETECTED")
    assert metrics.value("verifier_conflicts_prevented_total",
                         code="MONITOR_THEFT_DETECTED") == 1
    assert metrics.value("verifier_jobs_total", outcome="no such", code="series") == 0.0


def written_after_our_claim(tier: InMemoryTier, jobs: InMemoryJobs, **changes: Any) -> None:
    """Each claim through ``tier`` lands, then the job is written with ``changes``."""
    claim = tier.claim

    async def then(job_id: str, *, conditional: bool = True) -> str | None:
        token = await claim(job_id, conditional=conditional)
        jobs.update(job_id, **changes)
        return token

    tier.claim = then  # type: ignore[method-assign]


@virtual_time
async def test_a_job_nobody_holds_is_skipped_but_not_a_conflict_prevented():
    """Read as complete and unassigned right after our claim: nobody else holds it, so it is
    no conflict. It was counted as one (code OWNERSHIP_CONFLICT, "another encoder holds it"),
    and the log said another encoder owned the job (a review of the metrics, session 37)."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    metrics = GuardMetrics()
    guard, tiers = node(jobs, metrics)
    written_after_our_claim(tiers[1], jobs, assigned_to=None, status="complete")
    outcome = await guard.run("j1", encode)
    assert (outcome.kind.value, outcome.code) == ("skipped", "NOT_ASSIGNED")
    v = metrics.value
    assert v("verifier_jobs_total", outcome="skipped", code="NOT_ASSIGNED") == 1
    from verifier._metrics import CONFLICT_CODES  # every conflict series, whatever is added

    assert "NOT_ASSIGNED" not in CONFLICT_CODES
    assert sum(v("verifier_conflicts_prevented_total", code=code)
               for code in CONFLICT_CODES) == 0


@virtual_time
async def test_another_owner_at_verification_is_a_conflict_prevented():
    jobs = InMemoryJobs()
    jobs.add("j1")
    metrics = GuardMetrics()
    guard, tiers = node(jobs, metrics)
    written_after_our_claim(tiers[1], jobs, assigned_to=B)
    outcome = await guard.run("j1", encode)
    assert outcome.code == "MONITOR_THEFT_DETECTED"
    assert metrics.value("verifier_conflicts_prevented_total",
                         code="MONITOR_THEFT_DETECTED") == 1


@pytest.mark.parametrize("refused", ["unsupported", "invalid"])
@virtual_time
async def test_a_batch_refused_before_it_left_is_not_a_monitor_request(refused: str):
    """A screen that refuses before sending anything (no batch endpoint, an id it cannot
    send) is no request: counted as a failed one, with a latency sample, it read as the
    monitor failing (a review of the metrics, session 37). A batch that left and failed is."""
    from verifier import InvalidInputError, StatusCache, TierUnsupported

    jobs = InMemoryJobs()
    jobs.add("j1")
    jobs.add("j2")  # a poll offering two is screened (LoopPolicy.screen_at_least)
    metrics = GuardMetrics()
    tiers = [InMemoryTier(Tier.MONITOR, jobs, A, latency=0.2),
             InMemoryTier(Tier.GATEWAY, jobs, A, latency=0.05)]
    policy = dataclasses.replace(Policy.hardened(TIMING), status_cache_s=30.0)  # screens
    guard = OwnershipGuard(did=A, clients=tiers, policy=policy, metrics=metrics,
                           cache=StatusCache())
    error = (TierUnsupported("monitor", "no batch endpoint") if refused == "unsupported"
             else InvalidInputError("job id not accepted by the monitor"))
    screens: list[list[str]] = []

    async def screen(ids: list[str]) -> dict[str, str]:
        screens.append(list(ids))
        raise error

    async def offers() -> list[Any]:
        return [parse_job(d) for d in jobs.docs.values() if d["status"] == "queued"]

    loop = EncoderLoop(guard, lambda job, offered: encode(job), offers={"getjob": offers},
                       policy=LoopPolicy(sources=("getjob",), idle_s=1), metrics=metrics,
                       screen=screen)

    async def stop_when_done() -> None:
        while len(jobs.commits) < 2:  # noqa: ASYNC110 (virtual time; no event to wait on)
            await asyncio.sleep(1)
        loop.stop()

    stopping = asyncio.create_task(stop_when_done())
    await loop.run()
    await stopping
    assert screens and sorted(jobs.commits) == [("j1", A), ("j2", A)]
    v = metrics.value
    assert v("verifier_tier_requests_total", tier="monitor", op="batch", result="failed") == 0
    assert v("verifier_tier_request_seconds_count", tier="monitor", op="batch") == 0


@virtual_time
async def test_the_loop_counts_its_polls_screens_and_guard_errors():
    """What the loop itself counts (the guard counts the rest): polls by result, a screen that
    left and failed with its latency, and a job whose guard raised. A mutation run (session
    37) swapped or dropped each and no test saw it."""
    from verifier import StatusCache

    jobs = InMemoryJobs()
    for job_id in ("j1", "j2", "j3"):
        jobs.add(job_id)
    metrics = GuardMetrics()
    tiers = [InMemoryTier(Tier.MONITOR, jobs, A, latency=0.2),
             InMemoryTier(Tier.GATEWAY, jobs, A, latency=0.05)]
    policy = dataclasses.replace(Policy.hardened(TIMING), status_cache_s=30.0)
    guard = OwnershipGuard(did=A, clients=tiers, policy=policy, metrics=metrics,
                           cache=StatusCache())
    run = guard._run_to_outcome  # what the loop calls

    async def raising_for_j3(job_id: str, *args: Any, **kwargs: Any) -> Any:
        if job_id == "j3":
            raise RuntimeError("a bug in the guard")
        return await run(job_id, *args, **kwargs)

    guard._run_to_outcome = raising_for_j3  # type: ignore[method-assign]

    async def screen(ids: list[str]) -> dict[str, str]:
        await asyncio.sleep(0.3)
        raise TierUnavailable("monitor", "HTTP 503")  # it left, and failed

    async def offers() -> list[Any]:
        return [parse_job(d) for d in jobs.docs.values() if d["status"] == "queued"]

    loop = EncoderLoop(guard, lambda job, offered: encode(job), offers={"getjob": offers},
                       policy=LoopPolicy(sources=("getjob",), idle_s=1, cooldown_s=3600),
                       metrics=metrics, screen=screen)

    async def stop_when_done() -> None:
        while len(jobs.commits) < 2 or loop.outcomes["failed"] < 1:  # noqa: ASYNC110
            await asyncio.sleep(1)
        loop.stop()

    stopping = asyncio.create_task(stop_when_done())
    await asyncio.wait_for(loop.run(), 600)
    await stopping
    v = metrics.value
    assert v("verifier_polls_total", source="getjob", result="offered") >= 3
    assert v("verifier_polls_total", source="getjob", result="empty") == 0  # j3 stays queued
    screens = v("verifier_tier_requests_total", tier="monitor", op="batch", result="failed")
    assert screens >= 1
    assert v("verifier_tier_request_seconds_sum", tier="monitor", op="batch") == \
        pytest.approx(0.3 * screens)
    assert v("verifier_jobs_total", outcome="failed", code="GUARD_ERROR") == 1


@virtual_time
async def test_latencies_and_waits_are_measured_between_the_right_instants():
    """In virtual time each request takes exactly its tier's latency, the settle wait runs
    from the claim's answer to the first deciding read's send, and the time to start from the
    call of ``run`` to the work's start: each measured here by the test's own clock readings.
    Mutation testing (session 41): latencies measured as ``answered + sent`` or not at all for
    writes, a settle wait measured from elsewhere and a time to start counted from the answer
    alone all passed, as did failed reads counted as ``ok`` (below)."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    metrics = GuardMetrics()
    guard, (monitor, gateway) = node(jobs, metrics)
    loop = asyncio.get_running_loop()
    claim_answered: list[float] = []
    reads_sent: list[float] = []
    began: list[float] = []
    claim, observe = gateway.claim, monitor.observe

    async def timed_claim(job_id: str, **kwargs: Any) -> Any:
        try:
            return await claim(job_id, **kwargs)
        finally:
            claim_answered.append(loop.time())

    async def timed_observe(job_id: str) -> Any:
        reads_sent.append(loop.time())
        return await observe(job_id)

    gateway.claim = timed_claim  # type: ignore[method-assign]
    monitor.observe = timed_observe  # type: ignore[method-assign]

    async def work(job: ClaimedJob) -> Any:
        began.append(loop.time())
        return await encode(job)

    await asyncio.sleep(7.0)  # so that the run's start is not the clock's zero
    called = loop.time()
    assert (await guard.run("j1", work)).processed
    v = metrics.value
    reads = v("verifier_tier_requests_total", tier="monitor", op="read", result="ok")
    assert reads == len(reads_sent) >= 4
    assert v("verifier_tier_requests_total", tier="monitor", op="read", result="failed") == 0
    assert v("verifier_tier_request_seconds_count", tier="monitor", op="read") == reads
    assert v("verifier_tier_request_seconds_sum", tier="monitor", op="read") == \
        pytest.approx(0.2 * reads)
    for op in ("claim", "heartbeat", "finish"):
        n = v("verifier_tier_requests_total", tier="gateway", op=op, result="ok")
        assert n >= 1 and v("verifier_tier_request_seconds_count", tier="gateway", op=op) == n
        assert v("verifier_tier_request_seconds_sum", tier="gateway", op=op) == \
            pytest.approx(0.05 * n), op
    first_deciding_read = min(t for t in reads_sent if t > claim_answered[0])
    assert v("verifier_settle_wait_seconds_count") == 1
    assert v("verifier_settle_wait_seconds_sum") == \
        pytest.approx(first_deciding_read - claim_answered[0])
    assert v("verifier_time_to_start_seconds_sum") == pytest.approx(began[0] - called)


@virtual_time
async def test_a_failed_read_is_counted_failed_and_an_answered_one_ok():
    jobs = InMemoryJobs()
    jobs.add("j1")
    metrics = GuardMetrics()
    guard, (monitor, _) = node(jobs, metrics)

    async def work(job: ClaimedJob) -> Any:
        job.set_phase("encode")
        monitor.fail_next("observe", TierUnavailable("monitor", "down"), times=1)
        await asyncio.sleep(25)
        return {"cid": "bafy"}

    assert (await guard.run("j1", work)).processed
    v = metrics.value
    assert v("verifier_tier_requests_total", tier="monitor", op="read", result="failed") == 1
    assert v("verifier_verifications_total", tier="monitor", purpose="recheck",
             verdict="failed") == 1
    assert v("verifier_tier_requests_total", tier="monitor", op="read", result="ok") >= 3


@virtual_time
async def test_a_settle_wait_is_measured_once_when_the_first_deciding_read_fails(caplog):
    """The settle wait runs from the claim's answer to the first deciding read; a second
    deciding read (the first failed) measures nothing and breaks nothing (mutation testing,
    session 41: measuring at any verify read, with the claim's answer already consumed,
    raised inside the metrics, logged as METRICS_FAILED, and passed every test)."""
    caplog.set_level(logging.INFO, logger="verifier.guard")
    jobs = InMemoryJobs()
    jobs.add("j1")
    metrics = GuardMetrics()
    guard, (monitor, _) = node(jobs, metrics)
    observe = monitor.observe
    seen = [0]

    async def second_read_fails(job_id: str) -> Any:
        seen[0] += 1
        if seen[0] == 2:  # the first deciding read (the pre-claim read was the first)
            raise TierUnavailable("monitor", "down")
        return await observe(job_id)

    monitor.observe = second_read_fails  # type: ignore[method-assign]
    assert (await guard.run("j1", encode)).processed
    assert metrics.value("verifier_verifications_total", tier="monitor", purpose="verify",
                         verdict="failed") == 1
    assert metrics.value("verifier_settle_wait_seconds_count") == 1
    assert "METRICS_FAILED" not in [getattr(r, "event_code", None) for r in caplog.records]

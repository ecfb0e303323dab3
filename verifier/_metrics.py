"""Prometheus metrics of the guard and the loop: what operators watch, and what they alert on.

:class:`GuardMetrics` holds one registry of counters and histograms; pass it to
:class:`~verifier.OwnershipGuard` and :class:`~verifier.EncoderLoop` (``metrics=``), and serve
it with :func:`start_metrics_server` (``python -m verifier run`` does when
``VERIFIER_METRICS_PORT`` is set). The driver *measures*; it never judges: a verification's
verdict is the protocol's own (:attr:`~verifier.OwnershipProtocol.last_verdict`), and outcomes
are the protocol's outcome codes.

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms) and every
label has a small, fixed set of values (tiers, operations, verdicts, outcome codes): a job id
or a DID is never a label, so the series count cannot grow with traffic.
``dashboards/grafana-verifier.json`` is a Grafana dashboard over exactly these names.

``prometheus-client`` is an optional dependency (``pip install 'spk-ownership[metrics]'``);
this module imports it only when metrics are created.
"""

from __future__ import annotations

import errno
import logging
import socket
import socketserver
import threading
from http.server import HTTPServer
from typing import TYPE_CHECKING, Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "CANCELLATION_CODES", "CONFLICT_CODES", "METRICS_CONNECTION_TIMEOUT_S",
    "METRICS_MAX_CONNECTIONS", "METRIC_NAMES", "GuardMetrics", "start_metrics_server",
]

#: Outcome codes of a job skipped because another encoder holds it: a conflict prevented.
CONFLICT_CODES: Final = frozenset({
    "PRE_CLAIM_CONFLICT", "CLAIM_REFUSED", "OWNERSHIP_CONFLICT", "MONITOR_THEFT_DETECTED",
})
#: Outcome codes of work stopped after it started (``cancelled``), known in advance.
CANCELLATION_CODES: Final = frozenset({
    "OWNERSHIP_LOST", "MONITOR_THEFT_DETECTED", "LEASE_EXPIRED", "HEARTBEAT_REFUSED",
    "FINISH_REFUSED", "SHUTDOWN", "SHUTDOWN_HELD",
})
#: Every metric this module defines (without the ``_total``/``_bucket`` suffixes).
METRIC_NAMES: Final = (
    "verifier_tier_requests", "verifier_tier_request_seconds", "verifier_verifications",
    "verifier_jobs", "verifier_conflicts_prevented", "verifier_work_cancelled",
    "verifier_lease_expiries", "verifier_settle_wait_seconds", "verifier_time_to_start_seconds",
    "verifier_jobs_in_progress", "verifier_polls", "verifier_cache_hits", "verifier_pushes",
    "verifier_batch_size",
)
#: The tiers, as their label values (``verifier.Tier``).
_TIERS: Final = ("database", "monitor", "gateway", "aid")
#: Tier calls take milliseconds on a LAN and up to the clients' 10-30 s timeouts.
_LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Batch screening sends 1 to 50 ids per request.
_BATCH_BUCKETS: Final = (1, 2, 5, 10, 20, 50)
#: Settle waits and times to start: seconds in tests, tens of seconds in production.
_WAIT_BUCKETS: Final = (0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0)


class GuardMetrics:
    """The metrics of one encoder node (one registry; give it to the guard and the loop)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.tier_requests = Counter(
            "verifier_tier_requests", "Requests sent to the tiers, by operation (read, batch = "
            "a batch status screening, claim, heartbeat, finish, release) and result (ok, "
            "failed = no usable answer, refused, unknown = a write with no answer); cache hits "
            "and operations a tier lacks are not requests",
            ["tier", "op", "result"], registry=r)
        self.tier_latency = Histogram(
            "verifier_tier_request_seconds", "Time to a tier's answer (or to giving up)",
            ["tier", "op"], buckets=_LATENCY_BUCKETS, registry=r)
        self.verifications = Counter(
            "verifier_verifications", "Ownership reads judged by the protocol, by tier, "
            "purpose (verify: before work; recheck: during work) and verdict (mine, other, "
            "done, unknown; failed: no answer)", ["tier", "purpose", "verdict"], registry=r)
        self.jobs = Counter("verifier_jobs", "Jobs ended, by outcome and protocol code",
                            ["outcome", "code"], registry=r)
        self.conflicts_prevented = Counter(
            "verifier_conflicts_prevented", "Jobs not processed because another encoder "
            "holds them", ["code"], registry=r)
        self.work_cancelled = Counter(
            "verifier_work_cancelled", "Work stopped after it had started, by code",
            ["code"], registry=r)
        self.lease_expiries = Counter(
            "verifier_lease_expiries", "Work stopped because its lease ran out", registry=r)
        self.settle_wait = Histogram(
            "verifier_settle_wait_seconds", "From the claim's answer to the first "
            "verification read sent (the settle wait)", buckets=_WAIT_BUCKETS, registry=r)
        self.time_to_start = Histogram(
            "verifier_time_to_start_seconds", "From the start of an attempt to its work "
            "starting", buckets=_WAIT_BUCKETS, registry=r)
        self.in_progress = Gauge("verifier_jobs_in_progress", "Jobs being guarded now",
                                 registry=r)
        self.polls = Counter("verifier_polls", "Polls for offered jobs, by source and "
                             "result (offered, empty, failed)", ["source", "result"],
                             registry=r)
        self.cache_hits = Counter("verifier_cache_hits", "Pre-claim reads answered from the "
                                  "status cache, by tier", ["tier"], registry=r)
        self.pushes = Counter("verifier_pushes", "Push notifications received about jobs "
                              "being guarded (hints: each triggers a re-read)", registry=r)
        self.batch_size = Histogram("verifier_batch_size", "Job ids per batch status request "
                                    "(screening offered jobs)", buckets=_BATCH_BUCKETS,
                                    registry=r)
        # Series exist from the start, at 0: a counter that appears only at its first event
        # hides that event from increase() and rate() (the jump from nothing to 1).
        for code in CONFLICT_CODES:
            self.conflicts_prevented.labels(code)
        for code in CANCELLATION_CODES:
            self.work_cancelled.labels(code)
        self.jobs.labels("processed", "FINISHED")
        self.jobs.labels("failed", "GUARD_ERROR")  # a bug: dashboards/alerts-verifier.yml
        for tier in _TIERS:
            self.cache_hits.labels(tier)
            # The failures most of all: an alert on the first one must see it (operator
            # review, session 15: a tier's first failure was invisible to rate()).
            for result in ("ok", "failed"):
                self.tier_requests.labels(tier, "read", result)
            for op in ("claim", "heartbeat", "finish", "release"):
                for result in ("ok", "refused", "unknown"):
                    self.tier_requests.labels(tier, op, result)
            for purpose in ("verify", "recheck"):
                for verdict in ("mine", "other", "done", "unknown", "failed"):
                    self.verifications.labels(tier, purpose, verdict)
        for result in ("ok", "failed"):
            self.tier_requests.labels("monitor", "batch", result)  # screening's requests

    def record_outcome(self, kind: str, code: str) -> None:
        """One job's end: its outcome, and the conflict, cancellation or lease it was."""
        self.jobs.labels(kind, code).inc()
        if kind == "skipped" and code in CONFLICT_CODES:
            self.conflicts_prevented.labels(code).inc()
        if kind == "cancelled":
            self.work_cancelled.labels(code).inc()
        if code == "LEASE_EXPIRED":
            self.lease_expiries.inc()

    def catalogue(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Each metric's exposed name → (type, label names): what a dashboard may query."""
        found: dict[str, tuple[str, tuple[str, ...]]] = {}
        for family in self.registry.collect():
            labels: set[str] = set()
            for metric in vars(self).values():
                if getattr(metric, "_name", None) == family.name:
                    labels.update(getattr(metric, "_labelnames", ()))
            name = family.name + ("_total" if family.type == "counter" else "")
            found[name] = (family.type, tuple(sorted(labels)))
        return found

    def total(self, name: str) -> float:
        """The sum of a sample name over all its label values (``verifier_jobs_total``...)."""
        return float(sum(sample.value for family in self.registry.collect()
                         for sample in family.samples if sample.name == name))

    def value(self, name: str, **labels: str) -> float:
        """The current value of a sample (0 when absent): for tests and reports."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else float(found)


#: How long the exporter waits on a silent client (each read or write of a connection):
#: a scrape takes milliseconds, so an idle or trickling connection is cut after this.
METRICS_CONNECTION_TIMEOUT_S: Final = 5.0
#: Connections the exporter serves at once; further ones are closed as soon as they are
#: accepted. One or two Prometheus servers scrape a node; 8 leaves room for a curl or two.
METRICS_MAX_CONNECTIONS: Final = 8

_LOGGER: Final = logging.getLogger("verifier.metrics")


class _QuietHandler(WSGIRequestHandler):
    """One connection: the server's timeout on every read and write of its socket, and no
    line on stderr per request."""

    server: _MetricsServer

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.connection_timeout)

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing: a scrape every 15 s would fill the encoder's log."""


class _MetricsServer(socketserver.ThreadingMixIn, WSGIServer):
    """The exporter's HTTP server: one daemon thread per connection, at most
    ``max_connections`` of them, each connection cut after ``connection_timeout`` seconds of
    silence.

    Why not ``prometheus_client.start_http_server``: it starts a thread for every connection
    accepted, with no timeout and no limit, in the encoder's own process. Idle connections
    (a port scanner, a load balancer's health check left open, anyone who can reach the
    port) each held a thread for ever: 300 of them made 302 threads, and under a thread
    limit every job then ended WORK_FAILED "can't start new thread" (adversarial review).
    Here a connection past the cap is closed at once, a silent one is cut by the timeout,
    and nothing the exporter meets (a failed thread start, a client's reset, a timeout) is
    raised or printed: it is logged at debug level only, and the encoder never sees it.
    """

    daemon_threads = True  # never keep the encoder's process alive
    block_on_close = False  # server_close() does not wait for a stuck client

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, *,
                 connection_timeout: float, max_connections: int) -> None:
        self.address_family = family  # before the socket is made (TCPServer.__init__)
        self.connection_timeout = connection_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, _QuietHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # over the cap: no thread, closed at once
            return
        try:
            super().process_request(request, client_address)  # starts the thread
        except BaseException:
            # No thread started (RuntimeError "can't start new thread"): the slot is free
            # again; _handle_request_noblock closes the connection and calls handle_error.
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            # The slot before the close: a client that sees its connection closed may
            # connect again at once and find the slot free.
            self._slots.release()
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client's timeout or reset, or a thread that could not start: debug only (the
        base class prints a traceback to stderr for each)."""
        _LOGGER.debug("METRICS: a connection from %s failed", client_address, exc_info=True)


def start_metrics_server(metrics: GuardMetrics, port: int, addr: str = "127.0.0.1", *,
                         logger: logging.Logger | None = None,
                         connection_timeout: float = METRICS_CONNECTION_TIMEOUT_S,
                         max_connections: int = METRICS_MAX_CONNECTIONS) -> HTTPServer:
    """Serve ``/metrics`` on ``addr:port`` in a daemon thread; returns the server (its
    ``server_port`` is the bound port, for ``port=0``; ``shutdown()`` and ``server_close()``
    stop it). Loopback by default: metrics describe the node's work and need not face the
    internet.

    At most ``max_connections`` connections are served at once (more are closed as soon as
    they are accepted) and a connection silent for ``connection_timeout`` seconds is cut, so
    that idle connections cannot use up the encoder's threads (:class:`_MetricsServer`).
    Any path answers, as with ``prometheus_client`` (content negotiation and gzip are its).

    A failure to listen is a :class:`~verifier.ConfigurationError` naming the setting at
    fault: ``VERIFIER_METRICS_ADDR`` when the address is (not an address of this host, or of
    a family the host lacks), ``VERIFIER_METRICS_PORT`` otherwise (in use, or privileged).
    Blaming the port for every failure sent an operator with a mistyped address to look for
    whatever held the port (operator review). With ``logger``, the URL served is logged
    (``METRICS: serving http://[::1]:9464/metrics``), an IPv6 address in brackets as URLs
    need it: ``http://::1:9464`` is no URL anyone can paste (operator review)."""
    from prometheus_client import make_wsgi_app

    host = f"[{addr}]" if ":" in addr else addr
    try:
        # The family of the address (AF_INET6 for "::1"), as prometheus_client chooses it.
        family, _, _, _, sockaddr = socket.getaddrinfo(
            addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        server = _MetricsServer((str(sockaddr[0]), port), family,
                                connection_timeout=connection_timeout,
                                max_connections=max_connections)
    except OSError as exc:
        # EINVAL: an address bind() cannot take as written (a link-local IPv6 address
        # without its scope); the port is already known to be 1-65535.
        address_at_fault = isinstance(exc, socket.gaierror) or exc.errno in (
            errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EINVAL)
        variable = "VERIFIER_METRICS_ADDR" if address_at_fault else "VERIFIER_METRICS_PORT"
        raise ConfigurationError(
            variable, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    server.set_app(make_wsgi_app(metrics.registry))
    thread = threading.Thread(target=server.serve_forever, name="metrics-exporter",
                              daemon=True)
    try:
        thread.start()
    except BaseException:
        server.server_close()
        raise
    if logger is not None:
        logger.info("METRICS: serving http://%s:%d/metrics", host, server.server_port)
    return server

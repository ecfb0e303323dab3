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

import contextlib
import errno
import io
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import HTTPServer
from typing import TYPE_CHECKING, Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "CANCELLATION_CODES", "CONFLICT_CODES", "JOB_OUTCOMES", "METRICS_CONNECTION_TIMEOUT_S",
    "METRICS_MAX_CONNECTIONS", "METRIC_NAMES", "GuardMetrics", "start_metrics_server",
]

#: Outcome codes of a job skipped because another holder was seen or a claim was refused: a
#: conflict prevented. CLAIM_REFUSED is one by its meaning (a conditional claim refused: the
#: job is another's), but the legacy gateway answers a refused accept and a server fault
#: alike (docs/contract.md), so there it may also be a fault. NOT_ASSIGNED (nobody holds the
#: job: done, or back in the queue) is not a conflict.
CONFLICT_CODES: Final = frozenset({
    "PRE_CLAIM_CONFLICT", "CLAIM_REFUSED", "OWNERSHIP_CONFLICT", "MONITOR_THEFT_DETECTED",
})
#: Outcome codes of work stopped after it started (``cancelled``), known in advance:
#: FINISH_TOO_LATE and FINISH_NOT_SENT too (work done, its result not committed).
CANCELLATION_CODES: Final = frozenset({
    "OWNERSHIP_LOST", "MONITOR_THEFT_DETECTED", "LEASE_EXPIRED", "HEARTBEAT_REFUSED",
    "FINISH_REFUSED", "SHUTDOWN", "SHUTDOWN_HELD", "FINISH_TOO_LATE", "FINISH_NOT_SENT",
})
#: Every (outcome, code) a job can end with: the protocol's outcomes, the guard's
#: ALREADY_RUNNING and the loop's GUARD_ERROR. Each ``verifier_jobs_total`` series exists at
#: 0 from the start: one born at its first job hid that job from increase() (review: the
#: VerifierConflictsFrequent ratio's denominator lost the first job of each skip code, and
#: fired at 28.6% on an encoder whose conflicts were 22% of its jobs: the promtool case in
#: dashboards/alerts-verifier.test.yml).
JOB_OUTCOMES: Final = frozenset(
    {("processed", "FINISHED")}
    | {("skipped", code) for code in (
        "NO_CONFIRMING_TIER", "SHUTDOWN", "SHUTDOWN_HELD", "CLAIM_REFUSED", "PRE_CLAIM_FAILED",
        "PRE_CLAIM_CONFLICT", "NOT_AVAILABLE", "CLAIM_UNKNOWN", "UNCONFIRMED",
        "OWNERSHIP_CONFLICT", "MONITOR_THEFT_DETECTED", "NOT_ASSIGNED", "ALREADY_RUNNING")}
    | {("failed", code) for code in (
        "CLAIM_UNKNOWN", "PRE_CLAIM_FAILED", "VERIFICATION_FAILED", "WORK_FAILED",
        "FINISH_UNKNOWN", "GUARD_ERROR")}
    | {("cancelled", code) for code in CANCELLATION_CODES}
)
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
            "failed = no usable answer, refused, unknown = a write without a conclusive "
            "answer: none, a 429, a 5xx or a malformed one); cache hits, operations a tier "
            "lacks and requests refused before they left are not requests",
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
            "verifier_conflicts_prevented", "Jobs not processed because a tier showed another "
            "holder (PRE_CLAIM_CONFLICT, OWNERSHIP_CONFLICT, MONITOR_THEFT_DETECTED) or refused "
            "the claim (CLAIM_REFUSED: on the legacy gateway also a server fault, which it "
            "answers alike)", ["code"], registry=r)
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
                              "being guarded (hints: those that arrive before the run's next "
                              "wait are merged, and bring one re-read)", registry=r)
        self.batch_size = Histogram("verifier_batch_size", "Job ids per answered batch "
                                    "status request (screening offered jobs)",
                                    buckets=_BATCH_BUCKETS, registry=r)
        # Series exist from the start, at 0: a counter that appears only at its first event
        # hides that event from increase() and rate() (the jump from nothing to 1).
        for code in CONFLICT_CODES:
            self.conflicts_prevented.labels(code)
        for code in CANCELLATION_CODES:
            self.work_cancelled.labels(code)
        for outcome, code in JOB_OUTCOMES:  # GUARD_ERROR among them: a bug (the alerts)
            self.jobs.labels(outcome, code)
        for tier in _TIERS:
            self.cache_hits.labels(tier)
            # The failures most of all: an alert on the first one must see it (operator
            # review, session 15: a tier's first failure was invisible to rate()).
            for result in ("ok", "failed"):
                self.tier_requests.labels(tier, "read", result)
            for op in ("claim", "heartbeat", "finish", "release"):
                for result in ("ok", "refused", "unknown"):
                    self.tier_requests.labels(tier, op, result)
            for op in ("read", "claim", "heartbeat", "finish", "release"):
                # The latencies too: a quantile over increase() of buckets born at their
                # first sample leaves that sample out (a review of the metrics, session 37).
                self.tier_latency.labels(tier, op)
            for purpose in ("verify", "recheck"):
                for verdict in ("mine", "other", "done", "unknown", "failed"):
                    self.verifications.labels(tier, purpose, verdict)
        for result in ("ok", "failed"):
            self.tier_requests.labels("monitor", "batch", result)  # screening's requests
        self.tier_latency.labels("monitor", "batch")

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


#: How long the exporter gives a client: to send its whole request, counted from the accept
#: (not per read: a byte every few seconds kept a connection for ever), and then for each
#: write of the answer. A scrape's request takes milliseconds.
METRICS_CONNECTION_TIMEOUT_S: Final = 5.0
#: Connections the exporter serves at once. One or two Prometheus servers scrape a node; 8
#: leaves room for a curl or two. Past it, a new connection takes the slot of the oldest one
#: still sending its request (:class:`_MetricsServer`).
METRICS_MAX_CONNECTIONS: Final = 8

_LOGGER: Final = logging.getLogger("verifier.metrics")


@dataclass(eq=False)
class _Connection:
    """One accepted connection: its socket, when its request must have been read by (on the
    server's clock), and whether it is still being read (only then may it be shed)."""

    sock: socket.socket
    deadline: float
    reading: bool = True


class _DeadlineReader(io.RawIOBase):
    """The socket's reads, each given only the time left until the connection's deadline.

    A socket timeout bounds one ``recv``; the request line and headers are read by many, and
    the clock is checked before each one, so the request as a whole must arrive in time."""

    def __init__(self, sock: socket.socket, deadline: float,
                 clock: Callable[[], float]) -> None:
        super().__init__()
        self._sock, self._deadline, self._clock = sock, deadline, clock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - self._clock()
        if left <= 0:
            raise TimeoutError("the request was not read before its deadline")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _QuietHandler(WSGIRequestHandler):
    """One connection: its request read against the connection's deadline, its answer
    written with the server's timeout on each write, and no line on stderr per request."""

    server: _MetricsServer

    def __init__(self, request: socket.socket, client_address: Any, server: _MetricsServer,
                 connection: _Connection | None = None) -> None:
        # Before super().__init__, which handles the request. Without the server's record
        # of the connection (the socketserver signature), its deadline counts from now.
        self._connection = connection if connection is not None else _Connection(
            request, server.clock() + server.connection_timeout)
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket's own reader: replaced by one that keeps the deadline
        self.rfile = io.BufferedReader(
            _DeadlineReader(self.connection, self._connection.deadline, self.server.clock))

    def parse_request(self) -> bool:
        """Reads the headers (the request line is read already); the request is then in, and
        the connection is no longer one to shed."""
        try:
            return super().parse_request()
        finally:
            self.server.request_read(self._connection)
            self.connection.settimeout(self.server.connection_timeout)  # for the writes

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing: a scrape every 15 s would fill the encoder's log."""


class _MetricsServer(WSGIServer):
    """The exporter's HTTP server: one daemon thread per connection, at most
    ``max_connections`` connections served at once, each given ``connection_timeout``
    seconds from its accept to send its request.

    Why not ``prometheus_client.start_http_server``: it starts a thread for every connection
    accepted, with no timeout and no limit, in the encoder's own process. Idle connections
    (a port scanner, a load balancer's health check left open, anyone who can reach the
    port) each held a thread for ever: 300 of them made 302 threads, and under a thread
    limit every job then ended WORK_FAILED "can't start new thread" (adversarial review).

    Why a deadline and shedding, not only a cap: with a timeout per read, a client sending a
    byte every few seconds kept its slot for ever, and 8 idle connections turned every real
    scrape away until they were cut (adversarial review). So a request must be read within
    ``connection_timeout`` of its accept, and a connection arriving when every slot is taken
    takes the slot of the *oldest* connection whose request is still being read, which is
    closed. A real scrape sends its request at once, so it is past reading (and never shed)
    long before an idle connection is; a connection is refused (closed at once) only when
    every slot is answering a request, or when the threads of shed connections, still
    ending, would take the count past twice the cap. Nothing the exporter meets (a failed
    thread start, a client's reset, a timeout) is raised or printed: it is logged at debug
    level only, and the encoder never sees it.
    """

    #: The listen backlog (socketserver's default is 5): a burst of connections past it waits
    #: for the client's SYN retry (1 s, then 3 s...) before it is even accepted, and a scrape
    #: arriving behind a few idle connections was delayed so before it could shed one.
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, *,
                 connection_timeout: float, max_connections: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.address_family = family  # before the socket is made (TCPServer.__init__)
        self.connection_timeout = connection_timeout
        self.clock = clock
        self._max_connections = max_connections
        self._lock = threading.Lock()
        self._slots: list[_Connection] = []  # in the order accepted: the oldest first
        self._threads = 0  # handler threads alive, shed ones still ending included
        super().__init__(address, _QuietHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        connection = _Connection(request, self.clock() + self.connection_timeout)
        with self._lock:
            if not self._take_slot():
                self.shutdown_request(request)  # no slot: no thread, closed at once
                return
            self._slots.append(connection)
            self._threads += 1
        try:
            threading.Thread(target=self._serve, args=(connection, client_address),
                             name="metrics-connection", daemon=True).start()
        except BaseException:
            # No thread started (RuntimeError "can't start new thread"): the slot is free
            # again; _handle_request_noblock closes the connection and calls handle_error.
            self._release(connection)
            raise

    def _take_slot(self) -> bool:
        """Whether a new connection may have a slot, shedding the oldest connection still
        being read when none is free. Called with the lock held."""
        if len(self._slots) < self._max_connections:
            return True
        victim = next((c for c in self._slots if c.reading), None)
        if victim is None or self._threads >= 2 * self._max_connections:
            return False
        self._slots.remove(victim)  # its flag is read no more: only slots are shed
        _LOGGER.debug("METRICS: a connection still sending its request was closed to serve "
                      "a new one")
        # Its thread, blocked reading, sees the end of the stream and ends; the socket is
        # closed there (shutdown_request), not here, so it is closed once.
        with contextlib.suppress(OSError):
            victim.sock.shutdown(socket.SHUT_RDWR)
        return True

    def request_read(self, connection: _Connection) -> None:
        """The connection's request is in: it is answering now, and no longer to be shed."""
        with self._lock:
            connection.reading = False

    def _release(self, connection: _Connection) -> None:
        with self._lock:
            if connection in self._slots:
                self._slots.remove(connection)
            self._threads -= 1

    def _serve(self, connection: _Connection, client_address: Any) -> None:
        try:
            _QuietHandler(connection.sock, client_address, self, connection)
        except Exception:
            self.handle_error(connection.sock, client_address)
        finally:
            # The slot before the close: a client that sees its connection closed may
            # connect again at once and find the slot free.
            self._release(connection)
            self.shutdown_request(connection.sock)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client's timeout or reset, or a thread that could not start: debug only (the
        base class prints a traceback to stderr for each)."""
        _LOGGER.debug("METRICS: a connection from %s failed", client_address, exc_info=True)


def start_metrics_server(metrics: GuardMetrics, port: int, addr: str = "127.0.0.1", *,
                         logger: logging.Logger | None = None,
                         connection_timeout: float = METRICS_CONNECTION_TIMEOUT_S,
                         max_connections: int = METRICS_MAX_CONNECTIONS,
                         clock: Callable[[], float] = time.monotonic) -> HTTPServer:
    """Serve ``/metrics`` on ``addr:port`` in a daemon thread; returns the server (its
    ``server_port`` is the bound port, for ``port=0``; ``shutdown()`` and ``server_close()``
    stop it). Loopback by default: metrics describe the node's work and need not face the
    internet.

    At most ``max_connections`` connections are served at once, and a connection that has
    not sent its whole request ``connection_timeout`` seconds after its accept is cut, so
    that idle or trickling connections can neither use up the encoder's threads nor keep
    scrapes out: past the cap, a new connection takes the slot of the oldest one still
    sending its request (:class:`_MetricsServer`). ``clock`` (seconds, monotonic) is what
    the deadlines are kept on; tests inject one.
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
                                max_connections=max_connections, clock=clock)
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

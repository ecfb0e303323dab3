"""The exporter's connections: its slots, whom it sheds and whom it refuses, its deadlines, and
what it does when a thread cannot start, all on the server's own clock.

The clock here is the test's: each connection's thread reads it before every read of its
request (the deadline's check), so a thread can be held there, a connection still being read
for as long as the test likes, and the deadline moved to any instant without real time passing.
The tests of ``tests/verifier/test_metrics.py`` bound the outcomes under real clients (threads,
slots, scrapes answered behind idle and trickling clients); these pin the rules that give them.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import struct
import threading
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from verifier import ConfigurationError, GuardMetrics, start_metrics_server
from verifier._metrics import METRICS_CONNECTION_TIMEOUT_S, METRICS_MAX_CONNECTIONS


class _Clock:
    """The server's clock, moved by the test. Reads by connection threads are counted; they
    can be held (``hold=True``, until :meth:`release`), and the next one can first run a hook
    (:meth:`before_next_read`)."""

    def __init__(self, *, hold: bool = False) -> None:
        self.now = 1000.0
        self.connection_reads = 0
        self._changed = threading.Condition()
        self._open = threading.Event()
        if not hold:
            self._open.set()
        self._hook: Callable[[], None] | None = None

    def __call__(self) -> float:
        if threading.current_thread().name != "metrics-connection":
            return self.now  # the server's accept: the deadline is fixed then
        with self._changed:
            self.connection_reads += 1
            hook, self._hook = self._hook, None
            self._changed.notify_all()
        if hook is not None:
            hook()
        self._open.wait(30)
        return self.now

    def wait_for_reads(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.connection_reads >= count, timeout=30)

    def before_next_read(self, hook: Callable[[], None]) -> None:
        with self._changed:
            self._hook = hook

    def release(self) -> None:
        self._open.set()


@contextlib.contextmanager
def _exporter(metrics: GuardMetrics | None = None, **options: object) -> Iterator[object]:
    server = start_metrics_server(metrics or GuardMetrics(), 0, **options)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        clock = options.get("clock")
        if isinstance(clock, _Clock):
            clock.release()
        server.shutdown()
        server.server_close()


def _connect(server: object) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.server_port))  # type: ignore[attr-defined]


def _closed(s: socket.socket) -> bool:
    """Whether the server closed ``s`` (EOF or a reset), waiting a generous 30 s for it."""
    ready, _, _ = select.select([s], [], [], 30)
    if not ready:
        return False
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def _closed_now(socks: list[socket.socket]) -> list[socket.socket]:
    """Those of ``socks`` already closed by the server (a close on loopback has arrived by
    the time the server goes on to its next step)."""
    ready, _, _ = select.select(socks, [], [], 0)
    return ready


def _answer(s: socket.socket) -> bytes:
    """Everything the server sends on ``s`` until it closes it."""
    s.settimeout(30)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := s.recv(65536):
            data += chunk
    return data


def _slot_peers(server: object) -> set[object]:
    return {c.sock.getpeername() for c in server._slots}  # type: ignore[attr-defined]


def test_past_its_slots_a_connection_takes_the_slot_of_the_oldest_still_sending():
    """Eight slots by default (two Prometheus servers and a curl or two): eight connections
    still sending their requests are all served, and the ninth takes the first one's slot,
    which is closed."""
    clock = _Clock(hold=True)
    with _exporter(clock=clock) as server:
        clients = []
        try:
            for n in range(1, METRICS_MAX_CONNECTIONS + 1):
                clients.append(_connect(server))
                clock.wait_for_reads(n)  # its thread is reading its request
            assert METRICS_MAX_CONNECTIONS == 8
            assert _closed_now(clients) == []
            assert len(server._slots) == 8  # type: ignore[attr-defined]
            clients.append(_connect(server))
            clock.wait_for_reads(9)
            assert _closed_now(clients) == [clients[0]]
            assert _slot_peers(server) == {c.getsockname() for c in clients[1:]}
        finally:
            for s in clients:
                s.close()


def test_shed_connections_threads_count_until_twice_the_slots_then_connections_are_refused():
    """A shed connection's thread still has to end; while the threads alive are twice the
    slots, a new connection is refused (closed at once, no thread) rather than shedding
    another, so the threads stay bounded even if shed ones are slow to end. Every one of them
    is a daemon thread: a connection left open never keeps the encoder from exiting."""
    clock = _Clock(hold=True)  # every connection's thread held, still reading its request
    before = set(threading.enumerate())
    with _exporter(connection_timeout=60, max_connections=2, clock=clock) as server:
        clients = []
        try:
            for n in range(1, 5):
                clients.append(_connect(server))
                clock.wait_for_reads(n)
            # The third and fourth took the slots of the first two, whose threads are held.
            assert _closed(clients[0]) and _closed(clients[1])
            assert server._threads == 4  # type: ignore[attr-defined]
            clients.append(_connect(server))
            assert _closed(clients[4])  # refused: four threads are twice the two slots
            assert server._threads == 4  # type: ignore[attr-defined]
            assert _slot_peers(server) == {clients[2].getsockname(), clients[3].getsockname()}
            assert _closed_now(clients[2:4]) == []
            threads = [t for t in threading.enumerate()
                       if t not in before and t.name == "metrics-connection"]
            assert len(threads) == 4 and all(t.daemon for t in threads)
            exporter = [t for t in threading.enumerate() if t.name == "metrics-exporter"]
            assert exporter and all(t.daemon for t in exporter)
            clock.release()
            for s in clients:
                s.close()
            for thread in threads:
                thread.join(timeout=30)
            assert not [t for t in threads if t.is_alive()]
            assert server._threads == 0 and server._slots == []  # type: ignore[attr-defined]
        finally:
            for s in clients:
                s.close()


def test_a_connection_being_answered_is_never_shed_and_writes_with_the_whole_timeout():
    """Once its request is read, a connection is answering: a new one arriving with every slot
    answering is refused, never the answer cut. And the answer's writes get the server's
    timeout each, not what was left of the request's deadline at its last read."""
    metrics = GuardMetrics()
    metrics.record_outcome("processed", "FINISHED")
    answering, finish = threading.Event(), threading.Event()

    class SlowCollector:
        """Holds the answer while the test looks: the scrape is past its request then."""

        def collect(self) -> list[object]:
            answering.set()
            finish.wait(30)
            return []

    metrics.registry.register(SlowCollector())  # type: ignore[arg-type]
    clock = _Clock()
    with _exporter(metrics, connection_timeout=60, max_connections=1, clock=clock) as server, \
            _connect(server) as scrape:
        clock.wait_for_reads(1)  # accepted at 1000: the request is due by 1060
        clock.now += 45
        scrape.sendall(b"GET /metrics HTTP/1.0\r\n")
        clock.wait_for_reads(2)  # the headers' read: 15 s left of the deadline
        scrape.sendall(b"Host: x\r\n\r\n")
        assert answering.wait(30)
        slot = server._slots[0]  # type: ignore[attr-defined]
        assert (slot.reading, slot.sock.gettimeout()) == (False, 60)
        with _connect(server) as late:
            assert _closed(late)  # refused: the only slot is answering
        assert server._threads == 1  # type: ignore[attr-defined]
        finish.set()
        answer = _answer(scrape)
    assert answer.startswith(b"HTTP/1.0 200")
    assert b'verifier_jobs_total{code="FINISHED",outcome="processed"} 1.0' in answer


def test_the_default_deadline_is_five_seconds_from_the_accept_and_due_at_that_instant():
    """A request read in full before ``METRICS_CONNECTION_TIMEOUT_S`` (5 s) after the accept is
    answered; at that instant it is late, even when the rest of it is there to be read."""
    assert METRICS_CONNECTION_TIMEOUT_S == 5.0
    clock = _Clock()
    with _exporter(clock=clock) as server:
        with _connect(server) as s:
            clock.wait_for_reads(1)
            clock.now += 4.9
            s.sendall(b"GET /metrics HTTP/1.0\r\n")
            clock.wait_for_reads(2)
            s.sendall(b"\r\n")
            assert _answer(s).startswith(b"HTTP/1.0 200")
        reads = clock.connection_reads
        with _connect(server) as s:
            clock.wait_for_reads(reads + 1)
            clock.now += 5.0  # the deadline itself
            # The end of the request arrives just as its deadline is checked: too late.
            clock.before_next_read(lambda: s.sendall(b"\r\n"))
            s.sendall(b"GET /metrics HTTP/1.0\r\n")
            assert _answer(s) == b""


def test_a_connection_that_sends_nothing_is_closed_at_its_deadline():
    """Not only a trickle: a client that connects and sends nothing is cut too (its read is
    given the time left, not left to wait for ever), and its slot is free before it sees the
    close."""
    with _exporter(connection_timeout=0.5, max_connections=1) as server:
        with _connect(server) as silent:
            assert _closed(silent)
            assert server._threads == 0 and server._slots == []  # type: ignore[attr-defined]
        port = server.server_port  # type: ignore[attr-defined]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            assert b"verifier_jobs_total" in answer.read()


def test_a_thread_that_cannot_start_gives_its_slot_back_and_is_logged_at_debug_only(
        monkeypatch, caplog, capfd):
    """Under a thread limit, "can't start new thread" for a connection: that connection is
    closed, its slot and count given back, and the next scrape answered. Nothing reaches the
    encoder's stderr (the base server prints a traceback for each)."""
    caplog.set_level(logging.DEBUG, logger="verifier.metrics")
    start = threading.Thread.start
    failures = [2]

    def start_or_fail(thread: threading.Thread) -> None:
        if thread.name == "metrics-connection" and failures[0] > 0:
            failures[0] -= 1
            raise RuntimeError("can't start new thread")
        start(thread)

    with _exporter(connection_timeout=60, max_connections=1) as server:
        monkeypatch.setattr(threading.Thread, "start", start_or_fail)
        for _ in range(2):
            with _connect(server) as s:
                assert _closed(s)
        assert failures == [0]
        assert server._threads == 0 and server._slots == []  # type: ignore[attr-defined]
        port = server.server_port  # type: ignore[attr-defined]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            assert answer.status == 200
    failed = [r for r in caplog.records if r.getMessage().startswith("METRICS: a connection")]
    assert len(failed) == 2 and all(r.levelno == logging.DEBUG for r in failed)
    assert capfd.readouterr().err == ""


def test_a_client_that_resets_is_logged_at_debug_only(caplog, capfd):
    caplog.set_level(logging.DEBUG, logger="verifier.metrics")
    before = set(threading.enumerate())
    clock = _Clock()
    with _exporter(connection_timeout=60, clock=clock) as server:
        s = _connect(server)
        s.sendall(b"GET /metrics HTTP/1.0\r\n")
        clock.wait_for_reads(2)  # the request line read: its thread waits for the headers
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # a reset
        for thread in [t for t in threading.enumerate()
                       if t not in before and t.name == "metrics-connection"]:
            thread.join(timeout=30)
        assert server._threads == 0  # type: ignore[attr-defined]
    failed = [r for r in caplog.records if r.getMessage().startswith("METRICS: a connection")]
    assert [r.levelno for r in failed] == [logging.DEBUG]
    assert capfd.readouterr().err == ""


def test_an_exporter_that_cannot_start_its_thread_frees_its_port(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = threading.Thread.start

    def start_or_fail(thread: threading.Thread) -> None:
        if thread.name == "metrics-exporter":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_or_fail)
    with pytest.raises(RuntimeError) as info:
        start_metrics_server(GuardMetrics(), port)
    with socket.socket() as again:  # the failed exporter's socket is closed, not left open
        again.bind(("127.0.0.1", port))
        again.listen()
    del info


def test_the_exporter_listens_on_the_address_asked_loopback_by_default():
    """Metrics face no network unless asked: the socket is bound to the address given (a
    mutant that bound to the port's digits, ``"0"``, listened on every address)."""
    with _exporter() as server:
        assert server.server_address[0] == "127.0.0.1"  # type: ignore[attr-defined]
        assert server.address_family == socket.AF_INET  # type: ignore[attr-defined]


def test_an_address_that_does_not_resolve_is_blamed_on_the_address():
    """A name the resolver refuses (here an IPv6 address scoped to an interface that does not
    exist: refused without a DNS query) is the address's fault, not the port's."""
    with pytest.raises(ConfigurationError) as info:
        start_metrics_server(GuardMetrics(), 9464, "fe80::1%nosuchif0")
    assert info.value.variable == "VERIFIER_METRICS_ADDR"


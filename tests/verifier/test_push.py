"""JobPushClient (:mod:`verifier._push`) against a scripted WebSocket server on loopback.

The fake server is a bare wsproto endpoint: it records what the client sends and lets each test
send exactly the frames it wants (good, malformed, out of order), drop the connection, refuse
the upgrade or stop listening. What must hold: pushes reach the callbacks of their job and no
other; nothing malformed ever becomes a push; subscriptions survive drops and restarts; the
client never raises into its caller because of the network. No sleeps for timing: tests await
frames and pushes under a generous timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
import wsproto
import wsproto.events as ev
from hypothesis import example, given, settings
from hypothesis import strategies as st
from wsproto.connection import ConnectionState

from verifier import ConfigurationError, InvalidInputError, JobPush, JobPushClient
from verifier._ids import MAX_ID_LENGTH
from verifier._push import (
    _BACKOFF_BASE_S,
    MAX_IDS_PER_MESSAGE,
    MAX_MESSAGE_BYTES,
    MAX_SUBSCRIPTIONS,
    _backoff,
    _id_batches,
    _Incoming,
)

TIMEOUT = 10.0
JOB = "job-1"
OWNER = "did:key:z6MkOwner"


class Peer:
    """One accepted connection of the fake server."""

    def __init__(self, ws: wsproto.WSConnection, writer: asyncio.StreamWriter) -> None:
        self.ws, self.writer = ws, writer
        self.received: asyncio.Queue[Any] = asyncio.Queue()  # client messages, as JSON
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.pings = 0  # the client's pings (answered only if the server says so)
        self.pinged: asyncio.Queue[int] = asyncio.Queue()  # the count at each ping

    def send(self, frame: Any) -> None:
        if isinstance(frame, bytes):
            self.writer.write(self.ws.send(ev.BytesMessage(data=frame)))
        else:
            text = frame if isinstance(frame, str) else json.dumps(frame)
            self.writer.write(self.ws.send(ev.TextMessage(data=text)))

    def close(self, code: int) -> None:
        self.writer.write(self.ws.send(ev.CloseConnection(code=code)))

    async def message(self) -> Any:
        async with asyncio.timeout(TIMEOUT):
            return await self.received.get()


class FakeMonitor:
    """A WebSocket server at ``/api/ws/jobs`` (``refuse``: answer the upgrade with that HTTP
    status instead)."""

    def __init__(self) -> None:
        self.refuse: int | None = None
        self.answer_pings = False  # a live server's pong; the fake stays silent by default
        self.peers: asyncio.Queue[Peer] = asyncio.Queue()
        self.attempts = 0
        self.targets: list[str] = []
        self.requests: list[ev.Request] = []  # the upgrade requests, headers included
        self.ssl: ssl.SSLContext | None = None  # set before start: a wss:// monitor
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://127.0.0.1:{self.port}/api"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port,
                                                  reuse_address=True, ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every connection (a monitor restart)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def peer(self) -> Peer:
        async with asyncio.timeout(TIMEOUT):
            return await self.peers.get()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.attempts += 1
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        peer: Peer | None = None
        parts: list[str] = []
        while True:
            data = await reader.read(65536)
            ws.receive_data(data or None)
            for event in ws.events():
                if isinstance(event, ev.Request):
                    self.targets.append(event.target)
                    self.requests.append(event)
                    if self.refuse is not None:
                        writer.write(ws.send(ev.RejectConnection(status_code=self.refuse)))
                        return
                    writer.write(ws.send(ev.AcceptConnection()))
                    peer = Peer(ws, writer)
                    self.peers.put_nowait(peer)
                elif isinstance(event, ev.TextMessage) and peer is not None:
                    parts.append(event.data)
                    if event.message_finished:
                        peer.received.put_nowait(json.loads("".join(parts)))
                        parts = []
                elif isinstance(event, ev.Ping) and peer is not None:
                    peer.pings += 1
                    peer.pinged.put_nowait(peer.pings)
                    if self.answer_pings:
                        writer.write(ws.send(event.response()))
                elif isinstance(event, ev.CloseConnection) and peer is not None:
                    peer.close_code = event.code
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        writer.write(ws.send(event.response()))
                    peer.closed.set()
                    return
            if not data:
                return


@contextlib.asynccontextmanager
async def running(fake: Any) -> AsyncIterator[Any]:
    """A fake server (``start``/``stop``) for the length of a ``with``: stopped however it ends."""
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FakeMonitor]:
    async with running(FakeMonitor()) as fake:
        yield fake


def _client(server: FakeMonitor, **kwargs: Any) -> JobPushClient:
    return JobPushClient(server.url, reconnect_max_s=0.05, connect_timeout=2.0,
                         rng=random.Random(7), **kwargs)


def _collector() -> tuple[asyncio.Queue[JobPush], Callable[[JobPush], None]]:
    queue: asyncio.Queue[JobPush] = asyncio.Queue()
    return queue, queue.put_nowait


async def _next(queue: asyncio.Queue[JobPush]) -> JobPush:
    async with asyncio.timeout(TIMEOUT):
        return await queue.get()


class LogQueue(logging.Handler):
    """A logger for one client whose records a test can await."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: asyncio.Queue[str] = asyncio.Queue()
        self.seen: list[str] = []
        self.logger = logging.getLogger(name)
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())
        self.records.put_nowait(record.getMessage())

    async def wait_for(self, text: str) -> str:
        async with asyncio.timeout(TIMEOUT):
            while True:
                message = await self.records.get()
                if text in message:
                    return message


def _push(job: str, status: str | None, owner: str | None, seq: int) -> dict[str, Any]:
    return {"job": job, "status": status, "owner": owner, "seq": seq}


# --------------------------------------------------------------------------- pushes


@pytest.mark.asyncio
async def test_subscriptions_are_sent_and_pushes_reach_their_callbacks(
        server: FakeMonitor) -> None:
    pushes, callback = _collector()
    others, other_callback = _collector()
    async with _client(server) as client:
        client.subscribe(JOB, callback)  # before connecting: sent on connect
        peer = await server.peer()
        assert await peer.message() == {"subscribe": [JOB]}
        assert server.targets == ["/api/ws/jobs"]
        assert client.connected  # set before the subscriptions go out
        client.subscribe("job-2", other_callback)  # while connected: sent at once
        assert await peer.message() == {"subscribe": ["job-2"]}
        client.subscribe(JOB, callback)  # a second callback: no new subscription message
        peer.send(_push(JOB, "assigned", OWNER, 1))
        peer.send(_push("job-2", "queued", None, 2))
        assert await _next(pushes) == JobPush(JOB, "assigned", OWNER)
        assert await _next(pushes) == JobPush(JOB, "assigned", OWNER)  # called twice
        assert await _next(others) == JobPush("job-2", "queued", None)
        assert client.pushes_received == 2 and pushes.empty()
        assert client.subscriptions == {JOB, "job-2"}


@pytest.mark.asyncio
async def test_unsubscribe_removes_one_callback_and_tells_the_server_at_the_last(
        server: FakeMonitor) -> None:
    first, on_first = _collector()
    second, on_second = _collector()
    async with _client(server) as client:
        client.subscribe(JOB, on_first)
        client.subscribe(JOB, on_second)
        peer = await server.peer()
        assert await peer.message() == {"subscribe": [JOB]}
        client.unsubscribe(JOB, on_first)
        client.unsubscribe(JOB, on_first)  # not registered any more: ignored
        peer.send(_push(JOB, "running", OWNER, 1))
        assert await _next(second) == JobPush(JOB, "running", OWNER)
        assert first.empty()
        client.unsubscribe(JOB, on_second)
        assert await peer.message() == {"unsubscribe": [JOB]}
        peer.send(_push(JOB, "complete", OWNER, 2))  # in flight: dropped, no callback left
        client.subscribe("job-3", on_first)
        assert await peer.message() == {"subscribe": ["job-3"]}
        peer.send(_push("job-3", "queued", None, 3))
        assert await _next(first) == JobPush("job-3", "queued", None)
        assert second.empty() and client.pushes_received == 2


@pytest.mark.asyncio
async def test_malformed_frames_are_dropped_and_never_become_pushes(
        server: FakeMonitor, caplog: pytest.LogCaptureFixture) -> None:
    pushes, callback = _collector()
    async with _client(server) as client:
        client.subscribe(JOB, callback)
        peer = await server.peer()
        await peer.message()
        peer.send(_push(JOB, "queued", None, 5))
        assert await _next(pushes) == JobPush(JOB, "queued", None)
        for bad in ("not json", b"binary", "[1, 2]", '{"job": "job-1", "job": "x", "seq": 9}',
                    '{"job": "job-1", "status": "x", "owner": null, "seq": NaN}',
                    {"status": "assigned", "owner": OWNER, "seq": 6},
                    _push(JOB, "assigned", OWNER, 5),  # seq did not grow: a replay
                    _push(JOB, "assigned", OWNER, 4),
                    {**_push(JOB, "assigned", OWNER, 6), "seq": "6"},
                    {**_push(JOB, "assigned", OWNER, 6), "seq": True},
                    _push(JOB, 7, OWNER, 6), _push(JOB, "assigned", ["x"], 6),
                    _push(JOB, "assigned", "x" * 300, 6), _push(JOB, "a\nb", OWNER, 6),
                    _push("", "assigned", OWNER, 6), _push(7, "assigned", OWNER, 6),  # type: ignore[arg-type]
                    _push("unknown-job", "assigned", OWNER, 6),
                    {"error": "at most 50 job ids per message"}):
            peer.send(bad)
        peer.send(_push(JOB, "running", OWNER, 7))
        # Frames arrive in order: had any bad one become a push, it would come first.
        assert await _next(pushes) == JobPush(JOB, "running", OWNER)
        assert client.pushes_received == 2 and client.connected
    assert "the server says: 'at most 50 job ids per message'" in caplog.text
    # One warning per kind and connection, then a count at its end (a flood of dropped
    # frames filled the log at 45,000 lines a second: session 21's review).
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("malformed frame dropped" in m for m in warned) == 1, warned
    assert sum("binary message dropped" in m for m in warned) == 1, warned
    assert "push: 17 frames dropped on that connection in all" in warned


@pytest.mark.asyncio
async def test_a_frame_flood_never_holds_the_event_loop_and_is_cut_past_its_cpu_budget(
        server: FakeMonitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server sending tiny frames as fast as it can held the event loop for up to 26 s
    (the guard's lease timers run on it: a command ran 17 s past its lease), because a read
    hands back buffered data without yielding. The client hands the loop back every few
    frames, and closes a connection whose frames cost more than BUSY_BUDGET_S of CPU in a
    second (1008), then reconnects. (The budget is made tiny here: what a flood costs depends
    on the machine.)"""
    from verifier import _push

    monkeypatch.setattr(_push, "BUSY_BUDGET_S", 0.002)
    async with _client(server) as client:
        peer = await server.peer()
        seen: list[int] = []
        flooding = True

        async def watch() -> None:  # runs only when the client hands the loop back
            while flooding:
                seen.append(client._dropped_frames)  # each "x" is a malformed frame
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        for _ in range(20_000):
            peer.send("x")
        await asyncio.wait_for(peer.closed.wait(), TIMEOUT)
        flooding = False
        await watcher
        assert peer.close_code == 1008
        # Between two turns of the watcher, at most one yield's worth of frames.
        steps = [b - a for a, b in itertools.pairwise(seen) if b > a]
        assert steps and max(steps) <= _push._FRAMES_PER_YIELD, max(steps)
        second = await server.peer()  # reconnected under the backoff
        client.subscribe(JOB, lambda push: None)
        assert await second.message() == {"subscribe": [JOB]}


@pytest.mark.asyncio
async def test_a_backlog_of_cheap_frames_is_not_cut(server: FakeMonitor) -> None:
    """A frame count cut a legitimate backlog after the client's own stall (2,250 frames
    handled in a second after a 5 s pause); CPU time does not: cheap frames are cheap."""
    pushes, callback = _collector()
    async with _client(server) as client:
        client.subscribe(JOB, callback)
        peer = await server.peer()
        await peer.message()
        for seq in range(1, 3001):
            peer.send(_push(JOB, "running", OWNER, seq))
        for _ in range(3000):
            await _next(pushes)
        assert client.connected and client.reconnects == 0 and peer.close_code is None


@pytest.mark.asyncio
async def test_the_message_cap_counts_bytes_not_characters(server: FakeMonitor) -> None:
    """65,400 four-byte characters (255 KiB) passed the 64 KiB cap, which counted characters."""
    async with _client(server):
        peer = await server.peer()
        peer.send(json.dumps({"error": "\U0001F600" * 20_000}, ensure_ascii=False))
        await asyncio.wait_for(peer.closed.wait(), TIMEOUT)
        assert peer.close_code == 1009


@pytest.mark.asyncio
async def test_a_message_of_exactly_the_cap_is_read(server: FakeMonitor) -> None:
    pushes, callback = _collector()
    async with _client(server) as client:
        client.subscribe(JOB, callback)
        peer = await server.peer()
        await peer.message()
        frame = json.dumps(_push(JOB, "queued", None, 1))
        peer.send(frame[:-1] + " " * (MAX_MESSAGE_BYTES - len(frame)) + "}")  # JSON space
        assert await _next(pushes) == JobPush(JOB, "queued", None)
        assert client.reconnects == 0 and peer.close_code is None


@pytest.mark.asyncio
async def test_a_silent_connection_is_pinged_then_dropped_and_reconnected(
        server: FakeMonitor) -> None:
    """A server that accepts and then says nothing (a half-open TCP connection, a NAT that
    forgot it) left the client "connected" for ever, push dead. After keepalive_s of silence
    it pings; silent as long again, it reconnects."""
    async with _client(server, keepalive_s=0.2) as client:
        client.subscribe(JOB, lambda push: None)
        first = await server.peer()
        assert await first.message() == {"subscribe": [JOB]}
        second = await server.peer()  # the fake never answers a ping
        assert await second.message() == {"subscribe": [JOB]}
        assert client.reconnects >= 1
        assert first.pings == 1  # pinged once before giving up, not dropped at the first silence


@pytest.mark.asyncio
async def test_a_frame_dripped_a_byte_at_a_time_is_no_sign_of_life(server: FakeMonitor) -> None:
    """A server that sent the header of a 60,000-byte frame, then one byte of it every few
    seconds (within the keepalive), kept the client "connected" for ever: never silent, so
    never pinged, and no push could come (an adversarial review, session 44). Only whole
    frames count now: after keepalive_s without one it pings, and as long again it drops."""
    async with _client(server, keepalive_s=0.2) as client:
        client.subscribe(JOB, lambda push: None)
        first = await server.peer()
        assert await first.message() == {"subscribe": [JOB]}
        first.writer.write(bytes([0x81, 126]) + struct.pack("!H", 60_000))
        dripping = True

        async def drip() -> None:
            while dripping and not first.writer.is_closing():
                first.writer.write(b" ")
                await asyncio.sleep(0.05)  # a pace, not a wait for an outcome

        task = asyncio.create_task(drip())
        try:
            second = await server.peer()
        finally:
            dripping = False
            await task
        assert await second.message() == {"subscribe": [JOB]}
        assert client.reconnects == 1 and first.pings == 1


@pytest.mark.asyncio
async def test_a_quiet_server_that_answers_pings_keeps_its_connection(
        server: FakeMonitor) -> None:
    """Pongs are whole frames: a monitor with nothing to push, answering each ping, is never
    dropped (four keepalive periods, each ended by a ping and its pong)."""
    server.answer_pings = True
    async with _client(server, keepalive_s=0.1) as client:
        client.subscribe(JOB, lambda push: None)
        peer = await server.peer()
        assert await peer.message() == {"subscribe": [JOB]}
        async with asyncio.timeout(TIMEOUT):
            while await peer.pinged.get() < 4:
                pass
        assert client.connected and client.reconnects == 0 and server.attempts == 1


@pytest.mark.parametrize("frames", ["pushes", "pings"])
@pytest.mark.asyncio
async def test_a_server_that_keeps_sending_whole_frames_is_never_pinged_out(
        server: FakeMonitor, frames: str) -> None:
    """Whole messages and the server's own pings are signs of life, as pongs are: a monitor
    pushing (or pinging) more often than the keepalive, and never answering our pings, keeps
    its connection (30 frames 0.05 s apart: three keepalive periods of 0.5 s; counted by
    pongs alone, it was dropped after two: mutation testing, session 45)."""
    pushes, callback = _collector()
    async with _client(server, keepalive_s=0.5) as client:
        client.subscribe(JOB, callback)
        peer = await server.peer()
        assert await peer.message() == {"subscribe": [JOB]}
        for seq in range(1, 31):
            if frames == "pushes":
                peer.send(_push(JOB, "running", OWNER, seq))
                assert await _next(pushes) == JobPush(JOB, "running", OWNER)
            else:
                peer.writer.write(peer.ws.send(ev.Ping(payload=b"%d" % seq)))
            await asyncio.sleep(0.05)  # a pace, not a wait for an outcome
        assert client.connected and client.reconnects == 0 and server.attempts == 1
        assert peer.close_code is None and peer.pings == 0


@pytest.mark.asyncio
async def test_a_message_in_many_fragments_empty_ones_among_them_is_read_whole(
        server: FakeMonitor) -> None:
    pushes, callback = _collector()
    async with _client(server) as client:
        client.subscribe(JOB, callback)
        peer = await server.peer()
        await peer.message()
        text = json.dumps(_push(JOB, "assigned", OWNER, 1))
        pieces = ["", *([""] * 300), text[:9], "", text[9:20], *([""] * 300), text[20:]]
        for k, piece in enumerate(pieces):
            peer.writer.write(peer.ws.send(ev.TextMessage(
                data=piece, message_finished=k == len(pieces) - 1)))
        assert await _next(pushes) == JobPush(JOB, "assigned", OWNER)
        assert client.reconnects == 0


def test_empty_fragments_add_nothing_to_the_message_being_received() -> None:
    """A server that opened a message and then sent empty continuation frames, paced under
    the CPU budget, grew the client by 0.6 MiB/s for as long as it liked: the byte cap
    counted nothing for them, the list of pieces kept every one (session 44's review)."""
    incoming = _Incoming()
    for _ in range(100_000):
        assert incoming.add(ev.TextMessage(data="", message_finished=False))
    assert incoming.parts == [] and incoming.size == 0
    assert incoming.add(ev.TextMessage(data="é", message_finished=False))
    assert incoming.add(ev.TextMessage(data="!", message_finished=True))
    assert (incoming.size, incoming.take()) == (3, "é!")
    assert (incoming.parts, incoming.size) == ([], 0)
    assert incoming.add(ev.BytesMessage(data=b"\x00" * 10, message_finished=True))
    assert incoming.take() is None  # binary: dropped by the caller, never decoded
    assert incoming.add(ev.TextMessage(data="x" * MAX_MESSAGE_BYTES, message_finished=False))
    assert incoming.add(ev.TextMessage(data="", message_finished=False))  # at the cap: read
    assert not incoming.add(ev.TextMessage(data="x", message_finished=False))


@settings(max_examples=60, deadline=None, database=None)
@given(ids=st.lists(st.text(alphabet=st.sampled_from("aZ9-_é\u00ff\u4e2d\U0001F3AC\"/"),
                            min_size=1, max_size=256), max_size=140),
       verb=st.sampled_from(["subscribe", "unsubscribe"]))
@example(ids=["é" * 256] * 50, verb="subscribe")  # the review's: 77 KiB in one message
@example(ids=["\U0001F3AC" * 256] * 22 + ["job-1"], verb="subscribe")
def test_ids_go_out_in_messages_the_server_takes_each_as_full_as_it_can_be(
        ids: list[str], verb: str) -> None:
    """50 ids of 256 "é" were one 77 KiB message: JSON writes each as six bytes (an emoji as
    twelve). The server closed the connection (1009) after every resubscription, and no job
    got a push again (session 44's review). Each message now holds at most 50 ids and 64 KiB,
    in order, and takes ids while both allow (the wire's own size: what the server counts)."""
    def wire(batch: list[str]) -> int:
        return len(json.dumps({verb: batch}, separators=(",", ":")).encode("utf-8"))

    batches = list(_id_batches(verb, ids))
    assert [i for batch in batches for i in batch] == ids
    for k, batch in enumerate(batches):
        assert batch and len(batch) <= MAX_IDS_PER_MESSAGE and wire(batch) <= MAX_MESSAGE_BYTES
        if k + 1 < len(batches):  # greedy: the next id would not have fitted
            more = [*batch, batches[k + 1][0]]
            assert len(more) > MAX_IDS_PER_MESSAGE or wire(more) > MAX_MESSAGE_BYTES


def test_ids_that_fill_a_message_to_the_byte_go_in_one() -> None:
    overhead = len('{"subscribe":[]}')
    # 20 ids of equal length whose message is exactly the cap: 20 quoted ids, 19 commas.
    length = (MAX_MESSAGE_BYTES - overhead - 19) // 20 - 2
    extra = (MAX_MESSAGE_BYTES - overhead - 19) - 20 * (length + 2)
    ids = [("a" * (length + (1 if i < extra else 0))) for i in range(20)]
    assert len(json.dumps({"subscribe": ids}, separators=(",", ":"))) == MAX_MESSAGE_BYTES
    assert list(_id_batches("subscribe", ids)) == [ids]
    assert list(_id_batches("subscribe", [*ids[:-1], ids[-1] + "b"])) == [ids[:-1],
                                                                          [ids[-1] + "b"]]
    # ... also when that message is not the first: 50 short ids fill one by their count.
    short = [f"j{i}" for i in range(MAX_IDS_PER_MESSAGE)]
    assert list(_id_batches("subscribe", short + ids)) == [short, ids]
    # ... and one byte over it, after that split, still splits (the new message's first id
    # costs no comma: counted a byte short, or not at all, the id went in, over the cap).
    over = [*ids[:-1], ids[-1] + "b"]
    assert list(_id_batches("subscribe", short + over)) == [short, ids[:-1], [ids[-1] + "b"]]


@pytest.mark.asyncio
async def test_a_failing_callback_is_logged_and_the_others_still_run(
        server: FakeMonitor, caplog: pytest.LogCaptureFixture) -> None:
    pushes, callback = _collector()

    def broken(push: JobPush) -> None:
        raise RuntimeError("callback bug")

    async with _client(server) as client:
        client.subscribe(JOB, broken)
        client.subscribe(JOB, callback)
        peer = await server.peer()
        await peer.message()
        peer.send(_push(JOB, "assigned", OWNER, 1))
        peer.send(_push(JOB, "running", OWNER, 2))
        assert await _next(pushes) == JobPush(JOB, "assigned", OWNER)
        assert await _next(pushes) == JobPush(JOB, "running", OWNER)
        assert client.connected
    assert caplog.text.count("a callback failed on job 'job-1'") == 2
    assert "callback bug" in caplog.text


@pytest.mark.asyncio
async def test_pings_are_answered_and_a_huge_message_reconnects(server: FakeMonitor) -> None:
    pushes, callback = _collector()
    async with _client(server) as client:
        client.subscribe(JOB, callback)
        peer = await server.peer()
        await peer.message()
        peer.writer.write(peer.ws.send(ev.Ping(payload=b"hi")))
        peer.send("x" * (65 * 1024))
        async with asyncio.timeout(TIMEOUT):
            await peer.closed.wait()
        assert peer.close_code == 1009
        again = await server.peer()  # reconnected, resubscribed
        assert await again.message() == {"subscribe": [JOB]}
        again.send(_push(JOB, "queued", None, 1))  # seq starts again on a new connection
        assert await _next(pushes) == JobPush(JOB, "queued", None)
        assert client.reconnects == 1


# --------------------------------------------------------------------------- drops


@pytest.mark.asyncio
async def test_a_restart_reconnects_and_resubscribes_everything(server: FakeMonitor) -> None:
    pushes, callback = _collector()
    ids = [f"job-{i}" for i in range(120)]
    async with _client(server) as client:
        for job_id in ids:
            client.subscribe(job_id, callback)
        peer = await server.peer()
        sent = [await peer.message() for _ in range(3)]
        assert [len(m["subscribe"]) for m in sent] == [50, 50, 20]  # the server's batch limit
        assert client.reconnects == 0
        await server.stop()
        await server.start()  # the same port
        peer = await server.peer()
        again = [await peer.message() for _ in range(3)]
        assert [i for m in again for i in m["subscribe"]] == ids
        assert client.reconnects == 1 and client.connected
        peer.send(_push("job-7", "assigned", OWNER, 1))
        assert await _next(pushes) == JobPush("job-7", "assigned", OWNER)


@pytest.mark.asyncio
async def test_a_1013_close_is_a_drop_then_a_reconnect(server: FakeMonitor) -> None:
    pushes, callback = _collector()
    async with _client(server) as client:
        client.subscribe(JOB, callback)
        peer = await server.peer()
        await peer.message()
        peer.close(1013)
        async with asyncio.timeout(TIMEOUT):
            await peer.closed.wait()  # the client answered the close
        assert peer.close_code == 1013
        again = await server.peer()
        assert await again.message() == {"subscribe": [JOB]}
        again.send(_push(JOB, "queued", None, 1))
        assert await _next(pushes) == JobPush(JOB, "queued", None)


@pytest.mark.asyncio
async def test_a_refused_upgrade_and_a_dead_port_never_raise(server: FakeMonitor) -> None:
    server.refuse = 404  # the real monitor: no push route
    log = LogQueue("test.push.refused")
    client = JobPushClient(f"http://user:secret@127.0.0.1:{server.port}/api",
                           reconnect_max_s=0.05, rng=random.Random(1), logger=log.logger)
    pushes, callback = _collector()
    client.subscribe(JOB, callback)
    await client.start()
    for _ in range(3):  # refused, and refused again: it keeps trying, with backoff
        await log.wait_for("refused the WebSocket upgrade (HTTP 404)")
    assert not client.connected and server.attempts >= 3
    await server.stop()  # now nobody listens at all
    await log.wait_for("no connection to")
    await log.wait_for("no connection to")
    await client.aclose()
    assert pushes.empty() and client.pushes_received == 0
    assert not any("secret" in message or "user" in message for message in log.seen)
    assert client.url == f"ws://127.0.0.1:{server.port}/api/ws/jobs"


@pytest.mark.asyncio
async def test_a_server_that_hangs_up_during_the_handshake_is_named_at_once() -> None:
    """A peer that reads the upgrade and closes without an answer ends the attempt when the
    stream ends (wsproto's RemoteProtocolError, or our EOFError behind it), not after
    ``connect_timeout`` (60 s here, longer than the wait for the log line)."""
    requests: asyncio.Queue[bytes] = asyncio.Queue()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.put_nowait(await reader.readuntil(b"\r\n\r\n"))
        writer.close()

    listener = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    log = LogQueue("test.push.hang-up")
    client = JobPushClient(f"http://127.0.0.1:{port}/api", reconnect_max_s=0.05,
                           connect_timeout=60.0, rng=random.Random(1), logger=log.logger)
    try:
        await client.start()
        said = await log.wait_for("no connection to")
        assert "RemoteProtocolError" in said or "EOFError" in said, said
        async with asyncio.timeout(TIMEOUT):
            assert (await requests.get()).startswith(b"GET /api/ws/jobs HTTP/1.1")
    finally:
        await client.aclose()
        listener.close()
        await listener.wait_closed()


@pytest.mark.asyncio
async def test_aclose_says_goodbye_and_stops_reconnecting(server: FakeMonitor) -> None:
    client = _client(server)
    client.subscribe(JOB, lambda push: None)
    await client.start()
    await client.start()  # idempotent: still one connection
    peer = await server.peer()
    await peer.message()
    await client.aclose()
    async with asyncio.timeout(TIMEOUT):
        await peer.closed.wait()
    assert peer.close_code == 1000 and not client.connected
    assert server.attempts == 1 and server.peers.empty()


# --------------------------------------------------------------------------- inputs


def test_bad_ids_callbacks_and_urls_are_refused_before_any_network() -> None:
    client = JobPushClient("https://monitor.example/api")
    assert client.url == "wss://monitor.example/api/ws/jobs"
    for bad in ("", "a\x00b", "x" * 257, ".."):
        with pytest.raises(InvalidInputError):
            client.subscribe(bad, lambda push: None)
    with pytest.raises(InvalidInputError):
        client.subscribe({"$ne": None}, lambda push: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.subscribe(JOB, None)  # type: ignore[arg-type]
    for i in range(MAX_SUBSCRIPTIONS):
        client.subscribe(f"j{i}", lambda push: None)
    with pytest.raises(InvalidInputError):
        client.subscribe("one-too-many", lambda push: None)
    # Strictly, as the monitor's REST tier reads the same variable: a repaired URL would
    # reach another path than the REST routes.
    for url in ("ftp://x/api", "http://x/api?token=1", "", "not a url", "http://x/api?",
                " http://x/api", "http://x:port/api", "http://x/a\x80pi"):
        with pytest.raises(ConfigurationError):
            JobPushClient(url)
    with pytest.raises(ConfigurationError):
        JobPushClient("http://x/api", reconnect_max_s=0)


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    rng = random.Random(3)
    for failures, cap in ((0, 30.0), (3, 30.0), (10, 30.0), (100, 5.0)):
        bound = min(cap, _BACKOFF_BASE_S * 2 ** failures)
        draws = [_backoff(failures, cap, rng) for _ in range(400)]
        assert all(0.0 <= d <= bound for d in draws)
        assert min(draws) < bound * 0.1 and max(draws) > bound * 0.9  # full jitter
    seeded = [_backoff(2, 30.0, random.Random(9)) for _ in range(2)]
    assert seeded[0] == seeded[1]  # reproducible with a seeded generator


@pytest.mark.parametrize("failures", [1024, 1100, 10**6])
def test_the_backoff_survives_a_monitor_down_for_days(failures: int) -> None:
    """Reconnecting at most every 30 s, a monitor without the extension (a 404 at every
    attempt) is 1,024 failures in about 4 hours: ``2.0 ** 1024`` overflows, and the push task
    must not die of it (the exponent is clamped)."""
    assert 0.0 <= _backoff(failures, 30.0, random.Random(1)) <= 30.0


@pytest.mark.asyncio
async def test_a_status_or_owner_of_the_id_limit_passes_and_one_longer_is_dropped(
        server: FakeMonitor) -> None:
    pushes, callback = _collector()
    longest, too_long = "x" * MAX_ID_LENGTH, "x" * (MAX_ID_LENGTH + 1)
    async with _client(server) as client:
        client.subscribe(JOB, callback)
        peer = await server.peer()
        await peer.message()
        for frame in (_push(JOB, too_long, OWNER, 1), _push(JOB, "assigned", too_long, 2),
                      _push(JOB, longest, longest, 3)):
            peer.send(frame)
        assert await _next(pushes) == JobPush(JOB, longest, longest)
        assert client.pushes_received == 1


def test_only_a_healthy_connection_resets_the_reconnect_backoff() -> None:
    """A server that accepts and drops at once (any close code) must meet a growing back-off,
    not a reconnect loop, even if it pushed something first; a connection that stayed up
    resets it; 1013 ("try again later") never does."""
    from verifier._push import _HEALTHY_S, _resets_backoff

    assert not _resets_backoff(1011, stayed_s=0.01)
    assert not _resets_backoff(1006, stayed_s=_HEALTHY_S / 2)
    assert _resets_backoff(1000, stayed_s=_HEALTHY_S)
    assert not _resets_backoff(1013, stayed_s=_HEALTHY_S * 10)


def _recorded_backoffs(monkeypatch: pytest.MonkeyPatch,
                       enough: asyncio.Event | None = None) -> list[int]:
    """Replace the reconnect back-off by a recorder of its exponent, with no real wait (the
    tests count the exponent, not the time); ``enough`` is set at the fifth attempt."""
    import verifier._push as push_module

    exponents: list[int] = []

    def recorded(failures: int, cap: float, rng: random.Random) -> float:
        exponents.append(failures)
        if enough is not None and len(exponents) >= 5:
            enough.set()
        return 0.0

    monkeypatch.setattr(push_module, "_backoff", recorded)
    return exponents


@pytest.mark.asyncio
async def test_a_server_that_answers_the_subscription_then_drops_meets_a_growing_backoff(
        server: FakeMonitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by an adversarial review (2026-12-03): every (re)subscription is answered with
    the current state, and a delivered push counted as a healthy connection, so a server (or
    proxy) that answers and drops reset the back-off each time: 81 connections in 10 s. The
    back-off's exponent must grow from one connection to the next."""
    exponents = _recorded_backoffs(monkeypatch)
    _, callback = _collector()
    async with _client(server) as client:
        client.subscribe(JOB, callback)
        for seq in range(1, 6):
            peer = await server.peer()
            assert await peer.message() == {"subscribe": [JOB]}
            peer.send(_push(JOB, "assigned", OWNER, seq))  # the current state...
            peer.close(1011)  # ...then gone
        await server.peer()
    assert exponents[:5] == [0, 1, 2, 3, 4], exponents


@pytest.mark.asyncio
@pytest.mark.parametrize("refusal", ["upgrade", "port"])
async def test_a_monitor_without_push_meets_a_growing_backoff(
        server: FakeMonitor, monkeypatch: pytest.MonkeyPatch, refusal: str) -> None:
    """The real monitor has no push: every upgrade is a 404, for as long as the encoder runs.
    The back-off must grow to its cap, not start over at each refusal (a mutant that began
    each attempt as "reset" passed every other test: session 39)."""
    attempts = asyncio.Event()
    exponents = _recorded_backoffs(monkeypatch, attempts)
    server.refuse = 404
    if refusal == "port":
        await server.stop()  # nobody listens: connection refused
    async with _client(server):
        async with asyncio.timeout(TIMEOUT):
            await attempts.wait()
    assert exponents[:5] == [0, 1, 2, 3, 4], exponents


@pytest.mark.asyncio
@pytest.mark.parametrize("healthy", [True, False])
async def test_a_healthy_connection_ended_by_a_reset_restarts_the_backoff(
        server: FakeMonitor, monkeypatch: pytest.MonkeyPatch, healthy: bool) -> None:
    """Found by an adversarial review of the push client (session 31): only a close (a
    ``_Dropped``) was judged by its up-time; a TCP reset mid-read (a restarted monitor, a NAT)
    is an ``OSError`` and grew the back-off's exponent however long the connection had been
    up (0, 1, 2, 3 here; after seven, 0-30 s at every reconnect for good). Every connection
    here counts as healthy (``_HEALTHY_S`` = 0), so each reset starts the back-off over; with
    the real 10 s, none does, and the exponent grows (a mutant that added the up-time to the
    clock, every reset healthy, passed: session 39)."""
    import verifier._push as push_module

    if healthy:
        monkeypatch.setattr(push_module, "_HEALTHY_S", 0.0)
    exponents = _recorded_backoffs(monkeypatch)
    _, callback = _collector()
    async with _client(server) as client:
        client.subscribe(JOB, callback)
        for _ in range(4):
            peer = await server.peer()
            assert await peer.message() == {"subscribe": [JOB]}  # up: the upgrade is done
            sock = peer.writer.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.writer.transport.abort()  # an RST, not a close frame
        await server.peer()
    assert exponents[:4] == ([0, 0, 0, 0] if healthy else [0, 1, 2, 3]), exponents


@pytest.mark.asyncio
async def test_a_healthy_connection_ended_by_a_close_frame_restarts_the_backoff(
        server: FakeMonitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The close frame's side of the test above (a mutant that never reset the back-off on a
    close passed every test: session 39); 1013 excepted, as ``_resets_backoff`` says."""
    import verifier._push as push_module

    monkeypatch.setattr(push_module, "_HEALTHY_S", 0.0)
    exponents = _recorded_backoffs(monkeypatch)
    async with _client(server) as client:
        client.subscribe(JOB, lambda push: None)
        for code in (1001, 1011, 1013, 1013, 1000):
            peer = await server.peer()
            assert await peer.message() == {"subscribe": [JOB]}
            peer.close(code)
        await server.peer()
    assert exponents[:5] == [0, 0, 1, 2, 0], exponents  # 1013: the count goes on

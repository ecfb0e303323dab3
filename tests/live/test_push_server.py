"""The push extension served by the emulator (``docs/push.md``), over real loopback sockets.

A raw wsproto client checks the wire: current state on subscribe, one numbered frame per
world write, unsubscribe, error frames that leave the connection open, the limits, 1013 on
overflow, refusals of non-upgrade requests. The production :class:`~verifier.JobPushClient`
checks what a restart looks like. Every test ends with the servers' open connections back to
zero (the emulator's leak check). No sleeps: waits are on frames and events, under timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import wsproto
import wsproto.events as ev

from sim import load_scenario
from sim.live import Emulator, HttpServer, LiveWorld, Request, Response
from sim.live._emulator import _PUSH_SUBSCRIPTIONS as MAX_SUBSCRIPTIONS
from sim.live._http_server import Upgrade, WebSocket
from verifier import EncoderIdentity, InvalidInputError, JobPush, JobPushClient

ALICE = EncoderIdentity.from_seed(b"a" * 32)
BOB = EncoderIdentity.from_seed(b"b" * 32)
JOB = "job-000000"
OTHER = "job-000001"
QUIET = {"jobs": 3, "lie_rate": 0.0, "monitor_lag": 0.0, "monitor_lag_mean": 0.0,
         "monitor_error_rate": 0.0, "monitor_synthetic_rate": 0.0, "status_lie_rate": 0.0,
         "reply_loss_rate": 0.0, "late_write_rate": 0.0, "write_delay": 0.0,
         "gateway_latency": 0.0, "monitor_latency": 0.0, "aid_latency": 0.0,
         # Gateway Aid claiming the world's (gateway) jobs, as before session 32: these tests
         # drive its HTTP mechanics, not the contract's pending-only filter (tested apart).
         "aid_pending_only": 0.0}
TIMEOUT = 10.0


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[Emulator]:
    scenario = load_scenario("live").replace(**QUIET)
    emulator = Emulator(LiveWorld(scenario, seed=1))
    await emulator.start()
    try:
        yield emulator
        async with asyncio.timeout(TIMEOUT):
            await emulator.monitor.wait_idle()  # every client closed: no leaked connection
        assert emulator.monitor.open_connections == 0
    finally:
        await emulator.stop()
    assert emulator.monitor.open_connections == 0


class RawClient:
    """A bare wsproto client: what it sends and receives is exactly what is on the wire."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 ws: wsproto.WSConnection, events: list[ev.Event]) -> None:
        self.reader, self.writer, self.ws = reader, writer, ws
        self.events = events
        self.close_code: int | None = None

    @classmethod
    async def connect(cls, host: str, port: int, path: str = "/api/ws/jobs",
                      first: bytes = b"") -> RawClient:
        """Handshake; ``first`` goes out in the same write as the upgrade request."""
        reader, writer = await asyncio.open_connection(host, port)
        ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        writer.write(ws.send(ev.Request(host=f"{host}:{port}", target=path)) + first)
        async with asyncio.timeout(TIMEOUT):
            while True:
                data = await reader.read(65536)
                ws.receive_data(data or None)
                events = list(ws.events())
                if events:
                    assert isinstance(events[0], ev.AcceptConnection), events
                    return cls(reader, writer, ws, events[1:])
                assert data, "closed during the handshake"

    @classmethod
    async def to(cls, emu: Emulator) -> RawClient:
        return await cls.connect(emu.monitor.host, emu.monitor.port)

    def send(self, message: Any) -> None:
        if isinstance(message, bytes):
            self.writer.write(self.ws.send(ev.BytesMessage(data=message)))
        else:
            text = message if isinstance(message, str) else json.dumps(message)
            self.writer.write(self.ws.send(ev.TextMessage(data=text)))

    async def frame(self) -> Any:
        """The next message as JSON, or ``("close", code)`` when the server closes."""
        parts: list[str] = []
        async with asyncio.timeout(TIMEOUT):
            while True:
                while self.events:
                    event = self.events.pop(0)
                    if isinstance(event, ev.TextMessage):
                        parts.append(event.data)
                        if event.message_finished:
                            return json.loads("".join(parts))
                    elif isinstance(event, ev.CloseConnection):
                        self.close_code = event.code
                        if self.ws.state is wsproto.connection.ConnectionState.REMOTE_CLOSING:
                            self.writer.write(self.ws.send(event.response()))
                        return ("close", event.code)
                data = await self.reader.read(65536)
                self.ws.receive_data(data or None)
                self.events.extend(self.ws.events())

    async def close(self) -> None:
        if self.ws.state is wsproto.connection.ConnectionState.OPEN:
            self.writer.write(self.ws.send(ev.CloseConnection(code=1000)))
            assert await self.frame() == ("close", 1000)  # the server echoes the close
        self.writer.close()
        await self.writer.wait_closed()


def _push(job_id: str, status: str, owner: str | None, seq: int) -> dict[str, Any]:
    return {"job": job_id, "status": status, "owner": owner, "seq": seq}


# --------------------------------------------------------------------------- the wire


@pytest.mark.asyncio
async def test_subscribe_sends_the_current_state_then_each_write(emu: Emulator) -> None:
    client = await RawClient.to(emu)
    client.send({"subscribe": [JOB, "no-such-job"]})
    assert await client.frame() == _push(JOB, "queued", None, 1)  # where the client stands
    emu.world.aid_claim(ALICE.did, JOB)
    assert await client.frame() == _push(JOB, "assigned", ALICE.did, 2)
    emu.world.gw_release(ALICE.did, JOB, failed=False)
    assert await client.frame() == _push(JOB, "queued", None, 3)
    assert emu.pushes_sent == 3
    await client.close()


@pytest.mark.asyncio
async def test_the_first_frames_may_follow_the_upgrade_in_one_write(emu: Emulator) -> None:
    # What h11 buffered past the upgrade request (conn.trailing_data) reaches the session.
    frame = wsproto.frame_protocol.FrameProtocol(client=True, extensions=[]).send_data(
        json.dumps({"subscribe": [JOB]}))
    client = await RawClient.connect(emu.monitor.host, emu.monitor.port, first=bytes(frame))
    assert await client.frame() == _push(JOB, "queued", None, 1)
    await client.close()


@pytest.mark.asyncio
async def test_unsubscribe_stops_the_pushes_of_that_job_only(emu: Emulator) -> None:
    client = await RawClient.to(emu)
    client.send({"subscribe": [JOB, OTHER]})
    assert {(await client.frame())["job"] for _ in range(2)} == {JOB, OTHER}
    client.send({"unsubscribe": [JOB, "never-subscribed"]})
    client.send({"subscribe": ["job-000002"]})  # answered after the unsubscribe is applied
    assert await client.frame() == _push("job-000002", "queued", None, 3)
    emu.world.aid_claim(ALICE.did, JOB)
    emu.world.aid_claim(BOB.did, OTHER)
    assert await client.frame() == _push(OTHER, "assigned", BOB.did, 4)
    assert JOB not in emu._subscribers
    await client.close()


@pytest.mark.asyncio
async def test_bad_messages_get_an_error_and_the_connection_stays_open(emu: Emulator) -> None:
    client = await RawClient.to(emu)
    for bad in ("not json", b"\x00binary", [JOB], {"subscribe": JOB}, {"subscribe": [7]},
                {"subscribe": [""]}, {"subscribe": ["x" * 257]}, {"subscribe": ["a\nb"]},
                {"watch": [JOB]}, {"subscribe": [JOB], "unsubscribe": []},
                {"subscribe": [f"j{i}" for i in range(51)]},
                # Nested past the parser's recursion limit, inside the 64 KiB cap: it ended
                # the session with a traceback (an adversarial review, session 31).
                '{"subscribe": ' + "[" * 30_000 + "]" * 30_000 + "}"):
        client.send(bad)
        answer = await client.frame()
        assert set(answer) == {"error"} and isinstance(answer["error"], str), (bad, answer)
    assert answer == {"error": "not JSON"}
    client.send({"subscribe": [f"j{i}" for i in range(51)]})
    assert "50" in (await client.frame())["error"]
    client.send({"subscribe": [JOB]})  # still open, still served; nothing was subscribed
    assert await client.frame() == _push(JOB, "queued", None, 1)
    await client.close()


@pytest.mark.asyncio
async def test_at_most_a_thousand_subscriptions_per_connection(emu: Emulator) -> None:
    client = await RawClient.to(emu)
    for batch in range(20):
        client.send({"subscribe": [f"absent-{batch}-{i}" for i in range(50)]})
    client.send({"subscribe": [JOB]})  # the 1001st
    answer = await client.frame()
    assert "1000" in answer["error"]
    client.send({"unsubscribe": ["absent-0-0"]})
    client.send({"subscribe": [JOB]})
    assert await client.frame() == _push(JOB, "queued", None, 1)
    await client.close()


@pytest.mark.asyncio
async def test_the_client_allows_exactly_the_subscriptions_the_server_takes(
        emu: Emulator) -> None:
    """The client's limit is the server's (the emulator's, as docs/push.md gives it): every
    job it lets a caller subscribe is served
    (its resubscription split into messages the server takes), and the next is refused at
    once, never sent to be refused there (a larger client limit lost the last job's pushes)."""
    pushes: asyncio.Queue[JobPush] = asyncio.Queue()
    client = JobPushClient(emu.monitor_url, reconnect_max_s=0.05, connect_timeout=2.0)
    for i in range(MAX_SUBSCRIPTIONS - 1):
        client.subscribe(f"absent-{i}", pushes.put_nowait)
    client.subscribe(JOB, pushes.put_nowait)  # the last one allowed
    with pytest.raises(InvalidInputError):
        client.subscribe(OTHER, pushes.put_nowait)
    async with client:
        async with asyncio.timeout(TIMEOUT):
            assert await pushes.get() == JobPush(JOB, "queued", None)


@pytest.mark.asyncio
async def test_a_full_queue_closes_with_1013_and_the_world_never_waits(emu: Emulator) -> None:
    emu.push_queue_limit = 3
    client = await RawClient.to(emu)
    client.send({"subscribe": [JOB]})
    assert await client.frame() == _push(JOB, "queued", None, 1)
    for _ in range(3):  # six writes in one go: the watcher only queues, and overflows
        emu.world.aid_claim(ALICE.did, JOB)
        emu.world.gw_release(ALICE.did, JOB, failed=False)
    assert await client.frame() == ("close", 1013)
    assert emu.pushes_sent == 1 and JOB not in emu._subscribers
    client.writer.close()
    await client.writer.wait_closed()


@pytest.mark.asyncio
async def test_a_client_that_floods_pings_and_never_reads_is_cut(emu: Emulator) -> None:
    """The server answered every ping and buffered the pongs a client never read, without
    limit (43 MB in 21 s: session 21's review). Past 1 MiB left unread, it cuts the
    connection."""
    client = await RawClient.to(emu)
    ping = client.ws.send(ev.Ping(payload=b"p" * 125))
    cut = False
    async with asyncio.timeout(60):
        for _ in range(8000):  # 100 MB of pings at most: well past the socket buffers
            client.writer.write(ping * 100)
            try:
                await client.writer.drain()
            except ConnectionError:
                cut = True
                break
    assert cut, "the connection should have been cut"
    client.writer.close()
    with contextlib.suppress(ConnectionError):
        await client.writer.wait_closed()


async def _close_without_reading(emu: Emulator) -> socket.socket:
    """Upgrade, owe the server about 0.5 MB of pongs (under its 1 MiB cut), send a close
    frame, and never read again; the server's send buffer is pinned small, so the pongs stay
    in its asyncio buffer whatever the kernel's autotuning."""
    monitor = emu.monitor
    loop = asyncio.get_running_loop()
    before = set(monitor._connections)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
    sock.setblocking(False)
    await loop.sock_connect(sock, (monitor.host, monitor.port))
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    await loop.sock_sendall(sock, ws.send(ev.Request(host=f"{monitor.host}:{monitor.port}",
                                                     target="/api/ws/jobs")))
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)  # exactly the 101's head, nothing more
    assert head.startswith(b"HTTP/1.1 101"), head
    ws.receive_data(head)
    assert isinstance(next(ws.events()), ev.AcceptConnection)
    [transport] = [t for task, t in monitor._connections.items() if task not in before]
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    await loop.sock_sendall(sock, ws.send(ev.Ping(payload=b"p" * 125)) * 4000)
    await loop.sock_sendall(sock, ws.send(ev.CloseConnection(code=1000)))
    return sock


@pytest.mark.asyncio
async def test_a_client_that_closes_without_reading_holds_no_connection_for_ever(
        emu: Emulator) -> None:
    """Found by an adversarial review (session 31): after such a client's close, the server
    waited for the socket to drain without a limit, outside the connection cap's reach, so
    three of them locked every encoder out of a monitor capped at three. The wait is now
    bounded by ``send_timeout``."""
    emu.monitor.max_connections = 3
    emu.monitor.send_timeout = 0.5
    sockets = [await _close_without_reading(emu) for _ in range(3)]
    try:
        async with asyncio.timeout(TIMEOUT):
            await emu.monitor.wait_idle()
        async with httpx.AsyncClient(base_url=emu.monitor.url, timeout=TIMEOUT) as client:
            assert (await client.get("/api/health")).status_code == 200
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.asyncio
async def test_a_message_over_the_limit_closes_with_1009(emu: Emulator) -> None:
    client = await RawClient.to(emu)
    client.send("x" * 70_000)
    assert await client.frame() == ("close", 1009)
    client.writer.close()
    await client.writer.wait_closed()


@pytest.mark.asyncio
async def test_requests_that_are_not_upgrades_are_refused(emu: Emulator) -> None:
    async with httpx.AsyncClient() as http:
        reply = await http.get(emu.monitor_url + "/ws/jobs")
        assert reply.status_code == 426 and reply.json() == {"error": "Upgrade required"}
        assert reply.headers["upgrade"] == "websocket"
        # An upgrade without the WebSocket key: the handshake fails, 400, connection closed.
        reply = await http.get(emu.monitor_url + "/ws/jobs", headers={
            "connection": "upgrade", "upgrade": "websocket", "sec-websocket-version": "13"})
        assert reply.status_code == 400 and reply.json() == {"error": "Bad request"}
        reply = await http.post(emu.monitor_url + "/ws/jobs")
        assert reply.status_code == 404
        assert (await http.get(emu.monitor_url + "/health")).status_code == 200
    assert emu.pushes_sent == 0


# --------------------------------------------------------------------------- drops


@pytest.mark.asyncio
async def test_a_restart_drops_the_socket_and_the_client_resubscribes(emu: Emulator) -> None:
    pushes: asyncio.Queue[JobPush] = asyncio.Queue()
    async with JobPushClient(emu.monitor_url, reconnect_max_s=0.05, connect_timeout=2.0) as c:
        c.subscribe(JOB, pushes.put_nowait)
        async with asyncio.timeout(TIMEOUT):
            assert await pushes.get() == JobPush(JOB, "queued", None)
            await emu.stop_monitor()
            assert emu.monitor.open_connections == 0  # the WebSocket was cut with the rest
            emu.world.aid_claim(ALICE.did, JOB)  # while down: no push can be sent
            await emu.start_monitor()
            # Back: resubscribed, and told where it stands (the write it missed).
            assert await pushes.get() == JobPush(JOB, "assigned", ALICE.did)
            assert c.reconnects == 1 and c.connected
            emu.world.aid_finish(ALICE.did, JOB)
            assert await pushes.get() == JobPush(JOB, "completed", ALICE.did)
        assert c.pushes_received == 3
    async with asyncio.timeout(TIMEOUT):
        await emu.monitor.wait_idle()
    assert emu.monitor.open_connections == 0


@pytest.mark.asyncio
async def test_long_ids_out_of_ascii_are_resubscribed_in_messages_the_server_takes(
        emu: Emulator) -> None:
    """22 ids of 256 emoji (3 KiB each once JSON escapes them) went out in one 67 KiB
    message: the emulator closed with 1009 at every connect, the client reconnected and sent
    it again, and no job of the connection, an ordinary one among them, ever got a push (an
    adversarial review, session 44)."""
    pushes: asyncio.Queue[JobPush] = asyncio.Queue()
    async with JobPushClient(emu.monitor_url, reconnect_max_s=0.05, connect_timeout=2.0) as c:
        for i in range(22):
            c.subscribe(f"{i:02d}" + "\U0001F3AC" * 254, lambda push: None)
        c.subscribe(JOB, pushes.put_nowait)
        async with asyncio.timeout(TIMEOUT):
            assert await pushes.get() == JobPush(JOB, "queued", None)
            emu.world.aid_claim(ALICE.did, JOB)
            assert await pushes.get() == JobPush(JOB, "assigned", ALICE.did)
        assert c.reconnects == 0 and c.connected


@pytest.mark.asyncio
async def test_stopping_the_emulator_closes_push_connections() -> None:
    emulator = Emulator(LiveWorld(load_scenario("live").replace(**QUIET), seed=1))
    await emulator.start()
    client = await RawClient.to(emulator)
    client.send({"subscribe": [JOB]})
    assert (await client.frame())["seq"] == 1
    assert emulator.monitor.open_connections == 1
    await emulator.stop()
    assert emulator.monitor.open_connections == 0
    assert emulator._subscribers == {}
    assert await client.frame() == ("close", 1006)  # a drop, no close frame
    client.writer.close()
    await client.writer.wait_closed()


# --------------------------------------------------------------------------- HttpServer


@pytest.mark.asyncio
async def test_http_server_upgrades_and_keeps_serving_http() -> None:
    async def echo(ws: WebSocket) -> None:
        while (message := await ws.receive()) is not None:
            await ws.send(json.dumps({"echo": message if isinstance(message, str)
                                      else message.hex()}))

    async def handler(request: Request) -> Response | Upgrade:
        if request.path == "/ws":
            return Upgrade(echo)
        return Response.json(200, {"ok": True})

    async with HttpServer(handler, name="test") as server:
        client = await RawClient.connect(server.host, server.port, path="/ws")
        client.send("hello")
        client.writer.write(client.ws.send(ev.Ping(payload=b"p")))  # answered, not a message
        client.send(b"\x01\x02")
        assert await client.frame() == {"echo": "hello"}
        assert await client.frame() == {"echo": "0102"}
        async with httpx.AsyncClient() as http:
            assert (await http.get(server.url + "/x")).json() == {"ok": True}
        assert server.requests_served == 2  # the 101 and the JSON answer
        await client.close()
        async with asyncio.timeout(TIMEOUT):
            await server.wait_idle()
        assert server.open_connections == 0


@pytest.mark.asyncio
async def test_empty_fragments_add_nothing_to_the_message_being_received() -> None:
    """A client that opened a message and then sent empty continuation frames grew the
    emulator by 23 MiB per 3 million (nothing counted them against the message cap, and the
    server has no CPU budget): an adversarial review, session 44. They add nothing now."""
    sessions: list[WebSocket] = []

    async def echo(ws: WebSocket) -> None:
        sessions.append(ws)
        while (message := await ws.receive()) is not None:
            await ws.send(json.dumps({"echo": message}))

    async def handler(request: Request) -> Response | Upgrade:
        return Upgrade(echo)

    async with HttpServer(handler, name="test") as server:
        client = await RawClient.connect(server.host, server.port, path="/ws")
        send = client.ws.send
        client.writer.write(send(ev.TextMessage(data="he", message_finished=False)))
        client.writer.write(b"".join(send(ev.TextMessage(data="", message_finished=False))
                                     for _ in range(20_000)))
        client.writer.write(send(ev.Ping(payload=b"p")))  # its pong: all of the above read
        async with asyncio.timeout(TIMEOUT):
            while not any(isinstance(e, ev.Pong) for e in client.events):
                client.ws.receive_data(await client.reader.read(65536) or None)
                client.events.extend(client.ws.events())
        client.events = [e for e in client.events if not isinstance(e, ev.Pong)]
        assert sessions[0]._parts == ["he"]
        client.writer.write(send(ev.TextMessage(data="llo", message_finished=True)))
        assert await client.frame() == {"echo": "hello"}
        await client.close()
        async with asyncio.timeout(TIMEOUT):
            await server.wait_idle()

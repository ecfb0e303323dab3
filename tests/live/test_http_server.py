"""The emulator's HTTP server (:mod:`sim.live._http_server`) over real loopback sockets.

What live runs rely on: keep-alive (httpx pools reuse connections), requests parsed as sent
(raw path, decoded segments), resets on demand, refusals a client can read (400, 413), and
stop/start on the same port with every open connection cut, so a "monitor restart" is what a
client would really see. Every server-fixture test ends by waiting for the server to see all
its connections closed: a leaked connection fails the test, and with warnings as errors so
does an unclosed transport. No sleeps: waits are on events, guarded by timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from sim.live import RESET, HttpServer, Request, Response

MAX_BODY = 1000


class Recorder:
    """A handler that records requests and answers by path."""

    def __init__(self) -> None:
        self.seen: list[Request] = []

    async def __call__(self, request: Request) -> object:
        self.seen.append(request)
        match request.path:
            case "/reset":
                return RESET
            case "/boom":
                raise RuntimeError("handler bug")
            case "/not-a-response":
                return {"status": 200}
            case "/bad-header":
                return Response(200, b"x", (("bad header name", "v"),))
            case "/empty":
                return Response(204, headers=(("x-kind", "empty"),))
            case "/text":
                return Response.text(200, "hello", headers=[("x-extra", "1")])
        return Response.json(200, {"method": request.method, "segments": request.segments(),
                                   "query": request.query, "body": request.body.decode()})


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest_asyncio.fixture
async def server(recorder: Recorder) -> AsyncIterator[HttpServer]:
    async with HttpServer(recorder, name="test", max_body=MAX_BODY) as srv:
        yield srv
        async with asyncio.timeout(5):
            await srv.wait_idle()  # every client closed: the server must have seen it
        assert srv.open_connections == 0
    assert not srv.running and srv.open_connections == 0


async def raw_exchange(server: HttpServer, data: bytes) -> bytes:
    """Send ``data`` on a fresh socket and read until the server closes."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read(-1)
    finally:
        writer.close()
        await writer.wait_closed()


# ---------------------------------------------------------------------- the value types


def test_segments_decode_after_splitting() -> None:
    request = Request("GET", "/api/jobs/a%2Fb/%20x", "/api/jobs/a%2Fb/%20x", {}, {}, b"")
    assert request.segments() == ["api", "jobs", "a/b", " x"]
    assert Request("GET", "/", "/", {}, {}, b"").segments() == []


def test_request_json_rejects_empty_and_bad_bodies() -> None:
    assert Request("POST", "/", "/", {}, {}, b'{"a":[1]}').json() == {"a": [1]}
    for body in (b"", b"{not json", b"\xff"):
        with pytest.raises(ValueError):
            Request("POST", "/", "/", {}, {}, body).json()


def test_response_constructors_are_compact_and_typed() -> None:
    reply = Response.json(409, {"a": 1, "b": [1, 2]}, headers=[("retry-after", "3")])
    assert reply.body == b'{"a":1,"b":[1,2]}'
    assert reply.headers == (("content-type", "application/json"), ("retry-after", "3"))
    text = Response.text(200, "héllo")
    assert text.body == "héllo".encode()
    assert text.headers == (("content-type", "text/plain; charset=utf-8"),)


def test_url_needs_a_start() -> None:
    with pytest.raises(RuntimeError):
        _ = HttpServer(Recorder(), name="never").url


# ---------------------------------------------------------------------- serving


@pytest.mark.asyncio
async def test_requests_are_parsed_as_sent_and_connections_reused(
        server: HttpServer, recorder: Recorder) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        reply = await client.post("/api/jobs/a%2Fb?x=1&y=2&y=3&blank=", content=b"hello",
                                  headers={"X-Encoder-DID": "did:key:z"})
        assert reply.status_code == 200
        assert reply.json() == {"method": "POST", "segments": ["api", "jobs", "a/b"],
                                "query": {"x": "1", "y": "3", "blank": ""}, "body": "hello"}
        seen = recorder.seen[-1]
        assert seen.target == "/api/jobs/a%2Fb?x=1&y=2&y=3&blank="
        assert seen.path == "/api/jobs/a%2Fb"  # raw: the route sees one segment "a/b"
        assert seen.headers["x-encoder-did"] == "did:key:z"
        assert seen.headers["content-length"] == "5"
        for _ in range(4):
            assert (await client.get("/again")).status_code == 200
        assert server.open_connections == 1  # keep-alive: one pooled connection
        assert server.requests_served == 5


@pytest.mark.asyncio
async def test_answers_carry_only_deterministic_headers(server: HttpServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        reply = await client.get("/text")
        assert (reply.status_code, reply.reason_phrase, reply.text) == (200, "OK", "hello")
        assert list(reply.headers.items()) == [("content-type", "text/plain; charset=utf-8"),
                                               ("x-extra", "1"), ("content-length", "5")]
        head = await client.head("/text")  # same headers as GET, no body on the wire
        assert (head.headers["content-length"], head.content) == ("5", b"")
        empty = await client.get("/empty")
        assert empty.status_code == 204 and "content-length" not in empty.headers
        assert (await client.get("/after")).status_code == 200  # framing stayed in sync
        assert server.open_connections == 1


@pytest.mark.asyncio
async def test_client_connection_close_is_honoured(server: HttpServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        reply = await client.get("/bye", headers={"Connection": "close"})
        assert (reply.status_code, reply.headers["connection"]) == (200, "close")
        async with asyncio.timeout(5):
            await server.wait_idle()  # closed by the server while the client is still open
        assert (await client.get("/new")).status_code == 200
    assert server.requests_served == 2


@pytest.mark.asyncio
async def test_pipelined_requests_are_answered_in_order(server: HttpServer) -> None:
    answer = await raw_exchange(
        server, b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert answer.index(b'"one"') < answer.index(b'"two"')


@pytest.mark.asyncio
async def test_expect_100_continue_is_honoured(server: HttpServer) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(5):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"hello")
            answer = await reader.read(-1)
    finally:
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b'"body":"hello"' in answer


@pytest.mark.asyncio
async def test_many_concurrent_requests_are_served_concurrently(server: HttpServer) -> None:
    inside, all_in = 0, asyncio.Event()

    async def barrier(request: Request) -> Response:
        nonlocal inside
        inside += 1
        if inside == 50:
            all_in.set()
        await all_in.wait()  # deadlocks (and times out) unless all 50 are in flight at once
        return Response.json(200, request.segments())

    server.handler = barrier
    clients = [httpx.AsyncClient(base_url=server.url) for _ in range(10)]
    try:
        async with asyncio.timeout(10):
            replies = await asyncio.gather(*(clients[i % 10].get(f"/n/{i}") for i in range(50)))
    finally:
        for client in clients:
            await client.aclose()
    assert sorted(r.json()[1] for r in replies) == sorted(str(i) for i in range(50))
    assert server.requests_served == 50


# ---------------------------------------------------------------------- failures


@pytest.mark.asyncio
async def test_reset_aborts_without_an_answer(server: HttpServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        with pytest.raises(httpx.TransportError):
            await client.get("/reset")
        assert (await client.get("/fine")).status_code == 200  # a new connection works
    assert server.requests_served == 1


@pytest.mark.asyncio
async def test_handler_errors_are_logged_500s_and_the_connection_survives(
        server: HttpServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="sim.http")
    async with httpx.AsyncClient(base_url=server.url) as client:
        for path in ("/boom", "/not-a-response", "/bad-header"):
            reply = await client.get(path)
            assert (reply.status_code, reply.json()) == (500, {"error": "Internal server error"})
        assert (await client.get("/after")).status_code == 200
        assert server.open_connections == 1  # the same connection throughout
    assert len(caplog.records) == 3
    assert isinstance(caplog.records[0].exc_info and caplog.records[0].exc_info[1], RuntimeError)


@pytest.mark.asyncio
async def test_oversize_bodies_are_413_declared_or_chunked(server: HttpServer) -> None:
    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 300  # no Content-Length: caught while reading

    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.post("/ok", content=b"x" * MAX_BODY)).status_code == 200
        for content in (b"x" * (MAX_BODY + 1), chunked()):
            reply = await client.post("/big", content=content)
            assert (reply.status_code, reply.json()) == (413, {"error": "Payload too large"})
        # far larger than the socket buffers: the server must not reset the connection
        # before the client has read the 413
        reply = await client.post("/huge", content=b"x" * (8 << 20))
        assert reply.status_code == 413


@pytest.mark.asyncio
async def test_malformed_http_is_400_then_close(server: HttpServer) -> None:
    answer = await raw_exchange(server, b"NOT HTTP\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert answer.endswith(b'\r\n\r\n{"error":"Bad request"}')
    assert b"connection: close\r\n" in answer


@pytest.mark.asyncio
async def test_clients_vanishing_are_cleaned_up_quietly(
        server: HttpServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sim.http")
    # an idle connection closed without a request
    _, writer = await asyncio.open_connection(server.host, server.port)
    writer.close()
    await writer.wait_closed()
    # a connection reset (RST) halfway through a request body
    _, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    await writer.drain()
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
    async with asyncio.timeout(5):
        await server.wait_idle()
    assert caplog.records == []
    assert server.requests_served == 0


# ---------------------------------------------------------------------- stop and restart


@pytest.mark.asyncio
async def test_stop_refuses_and_start_serves_again_on_the_same_port(server: HttpServer) -> None:
    url, port = server.url, server.port
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/one")).status_code == 200
        await server.stop()
        await server.stop()  # idempotent
        assert not server.running and server.open_connections == 0
        with pytest.raises(httpx.ConnectError):
            await client.get("/two")
        await server.start()
        await server.start()  # idempotent
        assert (server.running, server.port, server.url) == (True, port, url)
        assert (await client.get("/three")).status_code == 200


@pytest.mark.asyncio
async def test_connections_from_before_a_restart_are_dead(server: HttpServer) -> None:
    """Whether or not the server had started serving them, sockets opened before stop()
    get no answer after the restart: a real restarted process knows nothing of them."""
    served = await asyncio.open_connection(server.host, server.port)
    served[1].write(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(5):
        head = await served[0].readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
        await served[0].readexactly(length)
    fresh = await asyncio.open_connection(server.host, server.port)  # no request yet
    await server.stop()
    await server.start()
    for reader, writer in (served, fresh):
        try:
            writer.write(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
            async with asyncio.timeout(5):
                assert await reader.read(-1) == b""
        except ConnectionError:
            pass  # a reset is just as dead
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    assert server.requests_served == 1


@pytest.mark.asyncio
async def test_a_connection_accepted_just_before_stop_is_not_served(server: HttpServer) -> None:
    """asyncio starts a connection's coroutine a few loop turns after accepting it; a stop()
    in between must still kill it, or a "stopped" monitor would go on answering."""
    listener = server._server
    if listener is None or not hasattr(listener, "_active_count"):
        pytest.skip("needs CPython's asyncio.Server._active_count to catch the moment")
    sock = socket.socket()
    sock.setblocking(False)
    assert sock.connect_ex((server.host, server.port)) in (0, errno.EINPROGRESS)
    # Yield single loop turns until the transport exists (accepted) but, as asyncio runs the
    # connection's coroutine later still, before it has started: the window stop() must cover.
    async with asyncio.timeout(5):
        while listener._active_count == 0:  # noqa: ASYNC110 - counting loop turns, not waiting
            await asyncio.sleep(0)
    assert server.open_connections == 0
    await server.stop()
    await server.start()
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            assert await reader.read(-1) == b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert server.requests_served == 0


@pytest.mark.asyncio
async def test_stop_cuts_a_request_in_flight_and_cancels_its_handler() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    cancelled: list[bool] = []

    async def slow(request: Request) -> Response:
        entered.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return Response.text(200, "late")

    srv = HttpServer(slow, name="slow")
    await srv.start()
    async with httpx.AsyncClient(base_url=srv.url) as client:
        pending = asyncio.create_task(client.get("/wait"))
        async with asyncio.timeout(5):
            await entered.wait()
        assert srv.open_connections == 1
        await srv.stop()
        assert cancelled == [True]  # stop() returns after the handler is gone
        assert srv.open_connections == 0
        with pytest.raises(httpx.TransportError):
            await pending
    assert srv.requests_served == 0


@pytest.mark.asyncio
async def test_a_handler_may_stop_its_own_server() -> None:
    """A fault injected from inside a request ("crash now"): no deadlock, no answer."""
    srv: HttpServer

    async def crash(request: Request) -> Response:
        await srv.stop()
        return Response.text(200, "too late")

    srv = HttpServer(crash, name="crash")
    await srv.start()
    async with httpx.AsyncClient(base_url=srv.url) as client:
        with pytest.raises(httpx.TransportError):
            async with asyncio.timeout(5):
                await client.get("/crash")
        assert not srv.running
    async with asyncio.timeout(5):
        await srv.wait_idle()
    assert srv.requests_served == 0

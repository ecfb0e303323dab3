"""The emulator's HTTP server (:mod:`sim._http_server`) over real loopback sockets.

What live runs rely on: keep-alive (httpx pools reuse connections), requests parsed as sent
(raw path, decoded segments), resets on demand, and stop/start on the same port with every
open connection cut, so a "monitor restart" is what a client would really see.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from sim._http_server import RESET, HttpServer, Request, Response

seen: list[Request] = []


async def echo(request: Request) -> Response | object:
    seen.append(request)
    if request.path == "/reset":
        return RESET
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    return Response.json(200, {"method": request.method, "segments": request.segments(),
                               "query": request.query, "body": request.body.decode()})


@pytest_asyncio.fixture
async def server() -> AsyncIterator[HttpServer]:
    seen.clear()
    async with HttpServer(echo, name="test", max_body=1000) as srv:
        yield srv
    assert srv.open_connections == 0


@pytest.mark.asyncio
async def test_requests_are_parsed_as_sent_and_connections_reused(server: HttpServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        reply = await client.post("/api/jobs/a%2Fb?x=1&y=2", content=b"hello",
                                  headers={"X-Encoder-DID": "did:key:z"})
        assert reply.status_code == 200
        assert reply.json() == {"method": "POST", "segments": ["api", "jobs", "a/b"],
                                "query": {"x": "1", "y": "2"}, "body": "hello"}
        assert seen[-1].path == "/api/jobs/a%2Fb"  # raw: the route sees one segment "a/b"
        assert seen[-1].headers["x-encoder-did"] == "did:key:z"
        for _ in range(4):
            assert (await client.get("/again")).status_code == 200
        assert server.open_connections == 1  # keep-alive: one pooled connection
        assert server.requests_served == 5


@pytest.mark.asyncio
async def test_reset_aborts_without_an_answer(server: HttpServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        with pytest.raises(httpx.TransportError):
            await client.get("/reset")
        assert (await client.get("/fine")).status_code == 200  # a new connection works


@pytest.mark.asyncio
async def test_handler_errors_are_500_and_oversize_bodies_413(server: HttpServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        reply = await client.get("/boom")
        assert (reply.status_code, reply.json()) == (500, {"error": "Internal server error"})
        assert (await client.get("/after")).status_code == 200  # the connection survived
        reply = await client.post("/big", content=b"x" * 5000)
        assert reply.status_code == 413


@pytest.mark.asyncio
async def test_malformed_http_is_400(server: HttpServer) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 400")


@pytest.mark.asyncio
async def test_stop_refuses_and_start_serves_again_on_the_same_port(server: HttpServer) -> None:
    url, port = server.url, server.port
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/one")).status_code == 200
        await server.stop()
        assert not server.running and server.open_connections == 0
        with pytest.raises(httpx.ConnectError):
            await client.get("/two")
        await server.start()
        assert server.port == port
        assert (await client.get("/three")).status_code == 200


@pytest.mark.asyncio
async def test_stop_cuts_a_request_in_flight() -> None:
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
        await entered.wait()
        await srv.stop()
        with pytest.raises(httpx.TransportError):
            await pending
    assert cancelled == [True]
    assert srv.open_connections == 0


@pytest.mark.asyncio
async def test_many_concurrent_clients_are_all_answered(server: HttpServer) -> None:
    clients = [httpx.AsyncClient(base_url=server.url) for _ in range(10)]
    try:
        replies = await asyncio.gather(*(clients[i % 10].get(f"/n/{i}") for i in range(50)))
    finally:
        for client in clients:
            await client.aclose()
    assert sorted(r.json()["segments"][1] for r in replies) == sorted(str(i) for i in range(50))

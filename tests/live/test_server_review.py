"""Adversarial review of the emulated servers (session review): each test is an attack or a
contract divergence found against a served instance, kept as a regression test.

* resources: idle or half-sent connections used to be held forever and without limit, so one
  client could exhaust the process's descriptors and starve every encoder (observed: 20 000
  connections each sending one byte, then ``accept`` failing with EMFILE and every request to
  all three services timing out); a client that never reads held its connection forever;
* framing: ``Content-Length`` together with ``Transfer-Encoding`` (request smuggling) was
  served and the connection kept; oversized headers were a 400, not Node's 431;
* contract: HEAD on GET routes was "Route not found" (Express answers HEAD for every GET
  route); ``batch-status`` read the world's truth directly (no monitor lag, no monitor outage,
  no latency, not counted) instead of the world's ``monitor_batch``, and answered at once
  when the gateway is silent (the real server goes five ids at a time, each batch waiting for
  the gateway); deeply nested JSON crashed the handler (a logged traceback per request) and
  ``NaN`` was accepted as JSON (Node's ``JSON.parse`` refuses it: 500).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from sim import load_scenario
from sim.live import Emulator, HttpServer, LiveWorld, Request, Response
from sim.live._emulator import _progress
from sim.live._http_server import Upgrade, WebSocket

ROOT = Path(__file__).resolve().parents[2]
#: A well-formed did:key (the emulator's Aid serves every did:key when none are listed).
ALICE_DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
QUIET = {"jobs": 3, "lie_rate": 0.0, "monitor_lag": 0.0, "monitor_lag_mean": 0.0,
         "monitor_error_rate": 0.0, "monitor_synthetic_rate": 0.0, "status_lie_rate": 0.0,
         "reply_loss_rate": 0.0, "late_write_rate": 0.0, "write_delay": 0.0,
         "gateway_latency": 0.0, "monitor_latency": 0.0, "aid_latency": 0.0}


async def _echo(request: Request) -> Response:
    if request.path == "/big":
        return Response(200, b"x" * (4 << 20))
    return Response.json(200, {"path": request.path})


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(5):
        return await reader.read(-1)


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[Emulator]:
    emulator = Emulator(LiveWorld(load_scenario("live").replace(**QUIET), seed=1))
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


# ---------------------------------------------------------------------- resources


@pytest.mark.asyncio
async def test_idle_connections_are_evicted_at_the_cap_so_a_real_client_is_served() -> None:
    async with HttpServer(_echo, name="capped", max_connections=8) as server:
        idle = []
        for _ in range(20):  # more than the cap, each stuck halfway through a request line
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(b"G")
            await writer.drain()
            idle.append((reader, writer))
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            assert (await client.get("/real")).status_code == 200
        assert server.open_connections <= 8
        for _, writer in idle:
            writer.close()
        async with asyncio.timeout(5):
            await server.wait_idle()


@pytest.mark.asyncio
async def test_a_request_never_completed_is_timed_out_with_408() -> None:
    async with HttpServer(_echo, name="timeout", request_timeout=0.3) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n")  # slowloris: never ends its head
        answer = await _read_all(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        # an idle keep-alive connection is closed without an answer (nothing was asked)
        reader, writer = await asyncio.open_connection(server.host, server.port)
        assert await _read_all(reader) == b""
        writer.close()
        async with asyncio.timeout(5):
            await server.wait_idle()


@pytest.mark.asyncio
async def test_a_client_that_never_reads_its_answers_is_cut() -> None:
    async with HttpServer(_echo, name="slow-reader", send_timeout=0.3) as server:
        sock = socket.create_connection((server.host, server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 8)  # 32 MB of answers, unread
        try:
            async with asyncio.timeout(5):
                await server.wait_idle()  # before: blocked in drain() forever
        finally:
            sock.close()


def _serve_with_few_descriptors() -> tuple[subprocess.Popen[str], int]:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    proc = subprocess.Popen(
        [sys.executable, "-m", "sim", "serve", "--jobs", "1", "--duration", "60"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        preexec_fn=low_limit, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("export GATEWAY_MONITOR_BASE_URL="):
            return proc, int(line.rsplit(":", 1)[1].split("/")[0])
    proc.kill()
    raise AssertionError("sim serve printed no monitor URL")


@pytest.fixture
def few_descriptors() -> Iterator[int]:
    proc, port = _serve_with_few_descriptors()
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def test_one_client_hoarding_connections_does_not_starve_sim_serve(
        few_descriptors: int) -> None:
    hoard = []
    try:
        for _ in range(400):  # more than the server's 256 descriptors
            sock = socket.create_connection(("127.0.0.1", few_descriptors), timeout=2)
            sock.sendall(b"G")
            hoard.append(sock)
        time.sleep(0.5)
        reply = httpx.get(f"http://127.0.0.1:{few_descriptors}/api/health", timeout=5)
        assert reply.status_code == 200
    finally:
        for sock in hoard:
            sock.close()


# ---------------------------------------------------------------------- framing


@pytest.mark.asyncio
async def test_content_length_with_transfer_encoding_is_refused_and_closed() -> None:
    async with HttpServer(_echo, name="smuggle") as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                     b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await _read_all(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"smuggled" not in answer and answer.count(b"HTTP/1.1") == 1


@pytest.mark.asyncio
async def test_oversized_headers_are_431_as_node_answers() -> None:
    async with HttpServer(_echo, name="headers") as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (200 << 10) + b"\r\n\r\n")
        answer = await _read_all(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


# ---------------------------------------------------------------------- contract


@pytest.mark.asyncio
async def test_head_is_answered_like_get_without_a_body(emu: Emulator) -> None:
    async with httpx.AsyncClient() as http:
        for url in (f"{emu.monitor_url}/jobs/job-000000", f"{emu.monitor_url}/health",
                    f"{emu.aid_url}/aid/v1/health"):
            get, head = await http.get(url), await http.head(url)
            assert head.status_code == get.status_code == 200
            assert head.headers["content-length"] == str(len(get.content))
            assert head.content == b""


@pytest.mark.asyncio
async def test_batch_status_is_the_worlds_monitor_view_not_the_truth(emu: Emulator) -> None:
    ids = ["job-000000", "job-000001"]
    async with httpx.AsyncClient() as http:
        before = emu.world.calls["monitor"]
        reply = await http.post(f"{emu.monitor_url}/jobs/batch-status", json={"jobIds": ids})
        assert reply.json() == {"success": True, "data": dict.fromkeys(ids, "queued")}
        assert emu.world.calls["monitor"] == before + 1  # a monitor request, counted
        # inside a monitor outage the single-job route fails: so must the batch route
        emu.world.monitor_down = [(0.0, 1e9)]
        single = await http.get(f"{emu.monitor_url}/jobs/job-000000")
        batch = await http.post(f"{emu.monitor_url}/jobs/batch-status", json={"jobIds": ids})
        assert single.status_code == 500
        assert batch.status_code == 500 and batch.json()["success"] is False


@pytest.mark.asyncio
async def test_batch_status_waits_for_a_silent_gateway_five_ids_at_a_time() -> None:
    emulator = Emulator(LiveWorld(load_scenario("live").replace(
        **{**QUIET, "jobs": 10, "gateway_timeout": 0.3}), seed=1))
    await emulator.start()
    try:
        emulator.world.gateway_down = [(0.0, 1e9)]
        ids = [f"job-{i:06d}" for i in range(10)]
        async with httpx.AsyncClient() as http:
            start = asyncio.get_running_loop().time()
            reply = await http.post(f"{emulator.monitor_url}/jobs/batch-status",
                                    json={"jobIds": ids})
            took = asyncio.get_running_loop().time() - start
        assert reply.json() == {"success": True, "data": {}}  # the quirk, unchanged
        assert took >= 2 * 0.3 - 0.05  # two batches of five, each waiting for the gateway
    finally:
        await emulator.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [b'{"jobIds":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                                  b'{"jobIds": NaN}', b'{"jobIds": [Infinity]}'])
async def test_json_node_refuses_is_the_malformed_json_500_without_a_crash(
        emu: Emulator, body: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="sim.http")
    async with httpx.AsyncClient() as http:
        reply = await http.post(f"{emu.monitor_url}/jobs/batch-status", content=body,
                                headers={"content-type": "application/json"})
    assert (reply.status_code, reply.json()) == (500, {"error": "Internal server error"})
    assert caplog.records == []  # malformed input, not a handler crash with a traceback


# Express 4 semantics below were checked against express 4.22.3 serving the monitor's own
# layout (server.ts: ``app.use("/api/jobs", jobsRouter)``, ``app.use("/aid", aidRouter)``, a
# ``"*"`` 404 handler and a global error handler answering 500 "Internal server error").


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/api/jobs/%ff", "/api/jobs/%ff/status", "/api/jobs/%zz",
                                  "/api/jobs/a%e9b", "/api/%ff", "/aid/v1/job/%ff"])
async def test_a_malformed_percent_escape_is_expresss_error_500_not_not_found(
        emu: Emulator, path: str) -> None:
    # Express decodes route params with decodeURIComponent: a malformed escape throws, and the
    # monitor's error handler answers 500 (its 404 handler, "*", has a param too). A "Job not
    # found" here was an answer the real server never gives for that request.
    server = emu.aid if path.startswith("/aid/") else emu.monitor
    async with httpx.AsyncClient(headers={"X-Encoder-DID": ALICE_DID}) as http:
        reply = await http.get(server.url + path)
    assert (reply.status_code, reply.json()) == (500, {"error": "Internal server error"})


@pytest.mark.asyncio
@pytest.mark.parametrize(("path", "served"), [
    ("/api//jobs/job-000000", False),         # a base URL with a trailing slash
    ("/api/jobs/job-000000//status", False),
    ("/api/jobs/job-000000//", False),
    ("/aid/v1//job/job-000000", False),
    ("/api/jobs//job-000000", True),           # the mount at /api/jobs takes one slash
    ("/api/jobs//job-000000/status", True),
    ("/api/jobs/job-000000/", True),           # non-strict routing: one trailing slash
    ("/aid//v1/job/job-000000", True),
])
async def test_empty_path_segments_route_as_express_4_does(
        emu: Emulator, path: str, served: bool) -> None:
    server = emu.aid if path.startswith("/aid/") else emu.monitor
    async with httpx.AsyncClient(headers={"X-Encoder-DID": ALICE_DID}) as http:
        reply = await http.get(server.url + path)
    if served:
        assert reply.status_code == 200 and reply.json()["success"] is True
    else:
        assert (reply.status_code, reply.json()) == (404, {"error": "Route not found"})


@pytest.mark.asyncio
async def test_request_bodies_are_read_as_express_json_reads_them(emu: Emulator) -> None:
    batch = f"{emu.monitor_url}/jobs/batch-status"
    as_json = {"content-type": "application/json"}
    body = '{"jobIds": ["job-000000"]}'
    async with httpx.AsyncClient() as http:
        assert (await http.post(batch, content=body, headers=as_json)).status_code == 200
        # JSON.parse reads UTF-8 only: a UTF-16 body (BOM or not) is malformed JSON, and a
        # declared charset other than UTF-8 is refused (body-parser's 415): both the 500.
        for encoded, headers in ((body.encode("utf-16"), as_json),
                                 (body.encode("utf-16-le"), as_json),
                                 (body.encode("utf-8"),
                                  {"content-type": "application/json; charset=utf-16"})):
            reply = await http.post(batch, content=encoded, headers=headers)
            assert (reply.status_code, reply.json()) == (500, {"error": "Internal server error"})
        # Not declared as JSON: express.json() leaves it unread, the route sees {}.
        reply = await http.post(batch, content=body)
        assert (reply.status_code, reply.json()["error"]) == (400, "jobIds must be an array")
        # An empty body is {} (body-parser's special case), not malformed JSON.
        for headers in (as_json, {}):
            reply = await http.post(f"{emu.aid_url}/aid/v1/list-jobs",
                                    headers={"X-Encoder-DID": ALICE_DID, **headers})
            assert reply.status_code == 200 and reply.json()["success"] is True


@pytest.mark.asyncio
async def test_idle_websockets_cannot_fill_the_cap_either() -> None:
    async def forever(ws: WebSocket) -> None:
        while await ws.receive() is not None:
            pass

    async def handler(request: Request) -> Response | Upgrade:
        return Upgrade(forever) if request.path == "/ws" else Response.json(200, {})

    async with HttpServer(handler, name="ws-cap", max_connections=4) as server:
        sockets = []
        for _ in range(6):  # idle subscribers past the cap, each upgraded
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            sockets.append(writer)
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            assert (await client.get("/rest")).status_code == 200
        assert server.open_connections <= 4
        for writer in sockets:
            writer.close()
        async with asyncio.timeout(5):
            await server.wait_idle()


def test_non_finite_progress_is_no_progress() -> None:
    # A JWS payload is parsed by Python's json (NaN accepted); the real gateway's JSON.parse
    # refuses it. Stored, NaN != NaN made every ping a progress change (no reassignment).
    assert _progress(float("nan"), None) is None
    assert _progress(float("inf"), float("nan")) is None
    assert _progress(float("nan"), 50) == (0.0, 50.0)


@pytest.mark.asyncio
async def test_push_subscriptions_are_bounded_across_connections(emu: Emulator) -> None:
    # Each connection may hold 1,000 subscriptions of 256-character ids (~0.7 MB of server
    # memory, measured): 4,096 connections, one client, were ~3 GB. A total bounds it.
    from tests.live.test_push_server import RawClient

    emu.push_subscription_limit = 60
    first, second = await RawClient.to(emu), await RawClient.to(emu)
    try:
        first.send({"subscribe": ["job-000000", *(f"a-{i}" for i in range(49))]})
        assert (await first.frame())["job"] == "job-000000"
        second.send({"subscribe": ["job-000001", *(f"b-{i}" for i in range(49))]})
        refused = await second.frame()
        assert set(refused) == {"error"} and "server" in refused["error"]
        first.send({"unsubscribe": ["job-000000", *(f"a-{i}" for i in range(49))]})
        second.send({"subscribe": ["job-000001", *(f"b-{i}" for i in range(49))]})
        assert (await second.frame())["job"] == "job-000001"  # room again once released
    finally:
        await first.close()
        await second.close()
    async with asyncio.timeout(5):
        await emu.monitor.wait_idle()
    assert emu._subscription_count == 0  # every closed connection gave its share back

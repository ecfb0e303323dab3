"""A small asyncio HTTP/1.1 server on h11, for the emulated services.

Why not a framework: h11 is already installed (httpx depends on it), so the emulator adds no
dependency; and faults need control a framework hides: aborting a connection without an
answer (a reset), and stopping a server (refusing new connections, cutting open ones) then
starting it again on the same port while clients keep their base URL.

One coroutine per connection reads requests, awaits the handler and writes the answer;
keep-alive follows h11's state machine, so httpx's pooled connections are reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import h11

__all__ = ["RESET", "Handler", "HttpServer", "Request", "Response"]

_LOG: Final = logging.getLogger("sim.http")
_READ_CHUNK: Final = 65536


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def segments(self) -> list[str]:
        """Path segments, each percent-decoded after splitting ("a%2Fb" stays one segment)."""
        return [urllib.parse.unquote(p) for p in self.path.split("/") if p]

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is empty or not JSON."""
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, value: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
        body = json.dumps(value, separators=(",", ":")).encode()
        return cls(status, body, (("content-type", "application/json"), *headers))

    @classmethod
    def text(cls, status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        return cls(status, text.encode(), (("content-type", "text/plain; charset=utf-8"),
                                           *headers))


class _Reset:
    """Returned by a handler: abort the connection, answer nothing."""

    def __repr__(self) -> str:
        return "RESET"


RESET: Final = _Reset()
Handler = Callable[[Request], Awaitable["Response | _Reset"]]


class _TooLarge(Exception):
    pass


class HttpServer:
    """Serves ``handler`` on ``host:port``; :meth:`stop` and :meth:`start` again keep the port."""

    def __init__(self, handler: Handler, *, name: str, host: str = "127.0.0.1", port: int = 0,
                 max_body: int = 1 << 20) -> None:
        self.handler = handler
        self.name = name
        self.host = host
        self.port = port
        self.max_body = max_body
        self.requests_served = 0
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError(f"{self.name} server was never started")
        return f"http://{self.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._connection, self.host, self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task, writer in list(self._connections.items()):
            writer.transport.abort()
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ connections

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        conn = h11.Connection(h11.SERVER)
        try:
            while await self._one(conn, reader, writer):
                conn.start_next_cycle()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            writer.transport.abort()
        finally:
            self._connections.pop(task, None)
            if not writer.transport.is_closing():
                writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await reader.read(_READ_CHUNK)
            conn.receive_data(data)  # b"" = the peer closed

    async def _one(self, conn: h11.Connection, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> bool:
        """Serve one request; True when the connection can carry another."""
        try:
            event = await self._next(conn, reader)
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return False
            assert isinstance(event, h11.Request)
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in event.headers}
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body:
                raise _TooLarge
            body = bytearray()
            while True:
                part = await self._next(conn, reader)
                if isinstance(part, h11.Data):
                    body += part.data
                    if len(body) > self.max_body:
                        raise _TooLarge
                elif isinstance(part, h11.EndOfMessage):
                    break
                elif isinstance(part, h11.ConnectionClosed):
                    return False
        except h11.RemoteProtocolError:
            await self._send(conn, writer, Response.json(400, {"error": "Bad request"}),
                             close=True)
            return False
        except _TooLarge:
            await self._send(conn, writer, Response.json(413, {"error": "Payload too large"}),
                             close=True)
            return False
        target = event.target.decode("latin-1")
        path, _, query = target.partition("?")
        request = Request(event.method.decode("ascii").upper(), target, path,
                          dict(urllib.parse.parse_qsl(query)), headers, bytes(body))
        try:
            answer = await self.handler(request)
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOG.exception("%s: handler failed on %s %s", self.name, request.method,
                           request.path)
            answer = Response.json(500, {"error": "Internal server error"})
        if isinstance(answer, _Reset):
            writer.transport.abort()
            return False
        await self._send(conn, writer, answer)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                    response: Response, *, close: bool = False) -> None:
        headers = [*response.headers, ("content-length", str(len(response.body)))]
        if close:
            headers.append(("connection", "close"))
        try:
            data = conn.send(h11.Response(status_code=response.status, headers=headers))
            data = (data or b"") + (conn.send(h11.Data(data=response.body)) or b"")
            data += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            return  # the connection is in no state to answer (a broken request): just close
        writer.write(data)
        await writer.drain()
        self.requests_served += 1

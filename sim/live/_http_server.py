"""A small asyncio HTTP/1.1 server on h11, for the emulated 3Speak services.

Why h11 and not a framework (aiohttp, starlette + uvicorn):

* no new dependency: h11 is already installed, because httpx (the production client) uses it;
* faults need control a framework hides. A *reset* must abort the TCP connection with no answer
  at all; a *restart* must refuse new connections, cut the open ones (cancelling the handlers
  still running on them, as a killed process would) and then listen again on the **same port**,
  so clients keep their base URL and see exactly what a real monitor restart looks like.

Design. :func:`asyncio.start_server` runs one coroutine per connection (streams, not a
``Protocol`` subclass): it reads a request, awaits the handler *inline* (no task per request),
writes the answer and loops while h11's state machine allows keep-alive, which is what httpx's
connection pool relies on. Streams give write back-pressure (``drain``) and EOF handling for
free; a ``Protocol`` would need a task per connection anyway to await async handlers, so it
would save little and cost a hand-written buffer and flow control.

Answers are deterministic: only ``content-type``/``content-length`` plus the handler's own
headers (no ``Date``, no ``Server``), so recorded runs compare byte for byte.

Failure shapes (what a client sees):

* handler raises → 500 ``{"error":"Internal server error"}`` (the real monitor's body for
  internal errors), logged on ``sim.http``; the connection stays usable;
* malformed HTTP → 400 ``{"error":"Bad request"}`` then close; so is a request with both
  ``Content-Length`` and ``Transfer-Encoding`` (RFC 9112 §6.1: a smuggling vector; Node's
  parser refuses it the same way);
* headers over h11's 16 KiB → 431, empty body, then close (Node's limit and answer);
* a request not fully received within ``request_timeout`` → 408, empty body, then close (as
  Node's ``headersTimeout``); a connection idle that long between requests is just closed;
* an answer the client does not read within ``send_timeout`` → the connection is cut;
* more than ``max_connections`` open → the one waiting longest for its request is cut to make
  room (none waiting: the new one is refused). Without these, one client holding idle or
  half-sent connections exhausted the process's descriptors and starved every encoder of
  all three services (review: 20 000 one-byte connections, then EMFILE on every accept);
* body over ``max_body`` (declared or while reading a chunked body) → 413
  ``{"error":"Payload too large"}`` then close;
* handler returns :data:`RESET` → TCP reset, no answer (httpx: ``ReadError``);
* :meth:`HttpServer.stop` → open connections closed without an answer (httpx:
  ``RemoteProtocolError``/``ReadError``), new ones refused (``ConnectError``).

WebSocket. A handler answers an upgrade request with :class:`Upgrade` (a session coroutine):
the server completes the handshake with wsproto (400 when the request is not a valid WebSocket
upgrade), feeds it what h11 had already buffered past the request, and awaits the session on
the connection's own task, so a WebSocket connection is counted, cut by :meth:`stop` and
waited for by :meth:`wait_idle` like any other. The HTTP path pays one ``isinstance``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http
import json
import logging
import socket
import struct
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import h11
import wsproto
import wsproto.events as ws_events
from wsproto.connection import ConnectionState
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

__all__ = ["RESET", "Handler", "HttpServer", "Request", "Response", "Upgrade", "WebSocket"]

_LOG: Final = logging.getLogger("sim.http")
_READ_CHUNK: Final = 65536
#: How long a refused connection (400/413) keeps swallowing what the client still sends.
_LINGER_S: Final = 5.0
#: Pending-connection queue. asyncio's default (100) overflows when 200 clients connect at
#: once; Linux then drops SYNs and the client retries after a full second, a fake latency spike.
_BACKLOG: Final = 1024
#: Framing headers are ours: a handler's copy would contradict the body actually sent.
_FRAMING: Final = frozenset({"content-length", "transfer-encoding"})
#: Reason phrases as Node sends them ("HTTP/1.1 404 Not Found"), for clients that log them.
_REASONS: Final = {int(s): s.phrase.encode("ascii") for s in http.HTTPStatus}
#: Largest WebSocket message a session receives; a larger one closes with 1009.
_WS_MAX_MESSAGE: Final = 65536
#: How long a WebSocket we closed waits for the peer's close reply before aborting.
_WS_CLOSE_WAIT_S: Final = 5.0
#: A WebSocket peer that leaves this much of our output unread is cut (pongs to a ping flood
#: it never reads piled up without limit: 43 MB in 21 s, session 21's review).
_WS_MAX_UNREAD: Final = 1 << 20
#: How long one message may wait for a slow peer to read before the connection is cut: the
#: server never waits on a slow client for long (docs/push.md).
_WS_SEND_WAIT_S: Final = 5.0
#: How long a whole request (head and body) may take to arrive, counted from the moment the
#: connection starts waiting for it (so also the idle time between keep-alive requests). Node's
#: ``headersTimeout`` is 60 s; its keep-alive timeout (5 s) is not copied: httpx also expires
#: idle connections after 5 s, and equal timers race (a request sent on a connection the
#: server is closing fails with no answer, a flaky error that is not a fault we mean to inject).
_REQUEST_TIMEOUT_S: Final = 60.0
#: How long one answer may wait for a client that does not read before the connection is cut.
_SEND_TIMEOUT_S: Final = 10.0


def _default_max_connections() -> int:
    """Open connections per server: a quarter of the process's descriptor limit (three servers
    and an in-process encoder pool share it), between 16 and 4096."""
    try:
        import resource
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # not POSIX: a conservative fixed cap
        return 1024
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, soft // 4))


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the client sent it. ``path`` stays percent-encoded so that routes split
    before decoding (:meth:`segments`): a job id ``a/b`` sent as ``a%2Fb`` stays one segment."""

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def segments(self) -> list[str]:
        """Path segments, each percent-decoded *after* splitting (``a%2Fb`` → ``["a/b"]``)."""
        return [urllib.parse.unquote(part) for part in self.path.split("/") if part]

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` (``JSONDecodeError``) when empty or not JSON.

        As strict as Node's ``JSON.parse``: ``NaN``/``Infinity`` are not JSON (Python accepts
        them; a ``NaN`` progress would then compare unequal to itself forever), and nesting
        too deep for the parser is malformed input, not a handler crash (``RecursionError``
        made every such request a logged traceback)."""
        try:
            return json.loads(self.body, parse_constant=_not_json)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


@dataclass(frozen=True, slots=True)
class Response:
    """An answer. ``content-length`` is always computed here, never taken from ``headers``."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, value: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
        """Compact JSON (no spaces), as Express's ``res.json`` sends it."""
        body = json.dumps(value, separators=(",", ":")).encode()
        return cls(status, body, (("content-type", "application/json"), *headers))

    @classmethod
    def text(cls, status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        return cls(status, text.encode(), (("content-type", "text/plain; charset=utf-8"),
                                           *headers))


class _Reset:
    """The type of :data:`RESET`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "RESET"


#: Returned by a handler: abort the connection with a TCP reset and answer nothing.
RESET: Final = _Reset()


@dataclass(frozen=True, slots=True)
class Upgrade:
    """Returned by a handler for a WebSocket upgrade request: the server answers 101 and runs
    ``session`` on the connection until it returns (or :meth:`HttpServer.stop` cancels it).
    A request that is not a valid upgrade gets 400 instead and ``session`` never runs."""

    session: Callable[[WebSocket], Awaitable[None]]


Handler = Callable[[Request], Awaitable["Response | _Reset | Upgrade"]]

_INTERNAL_ERROR: Final = Response.json(500, {"error": "Internal server error"})
_BAD_REQUEST: Final = Response.json(400, {"error": "Bad request"})
_TOO_LARGE: Final = Response.json(413, {"error": "Payload too large"})
#: Node answers these two with no body at all.
_HEADERS_TOO_LARGE: Final = Response(431)
_REQUEST_TIMEOUT: Final = Response(408)


class _Refused(Exception):
    """The request cannot be served; answer ``response`` and close the connection."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class HttpServer:
    """Serves ``handler`` on ``host:port``. After :meth:`stop`, :meth:`start` listens again on
    the port of the first start, so clients' base URLs stay valid across a "restart".

    ``host`` should be a literal address (default loopback only): a name resolving to several
    addresses would bind several sockets, each with its own ephemeral port.
    """

    def __init__(self, handler: Handler, *, name: str, host: str = "127.0.0.1", port: int = 0,
                 max_body: int = 1 << 20, max_connections: int | None = None,
                 request_timeout: float = _REQUEST_TIMEOUT_S,
                 send_timeout: float = _SEND_TIMEOUT_S) -> None:
        self.handler = handler
        self.name = name
        self.host = host
        self.port = port
        self.max_body = max_body
        self.max_connections = (_default_max_connections() if max_connections is None
                                else max_connections)
        self.request_timeout = request_timeout
        self.send_timeout = send_timeout
        #: Connections cut to make room (``max_connections``) or refused for lack of it.
        self.connections_evicted = 0
        #: Responses written (handler answers, 500s, 400s and 413s; not resets).
        self.requests_served = 0
        self._server: asyncio.Server | None = None
        self._started = False
        # Bumped by stop(): a connection the old listener accepted whose coroutine only starts
        # after stop() must not be served (asyncio runs the callback a few loop turns later).
        self._epoch = 0
        self._connections: dict[asyncio.Task[None], asyncio.Transport] = {}
        #: The connections waiting for (the rest of) a request, longest-waiting first: the
        #: ones cut to make room, since cutting them loses no answer already under way.
        self._waiting: dict[asyncio.Task[None], asyncio.Transport] = {}
        #: WebSocket sessions, oldest first: cut next (an idle subscriber is as cheap to hold
        #: open as a half-sent request, and its client must survive a drop anyway).
        self._sessions: dict[asyncio.Task[None], asyncio.Transport] = {}

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        if not self._started:
            raise RuntimeError(f"the {self.name} server was never started: no port yet")
        return f"http://{self.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        """Listen (no-op when already listening). ``reuse_address`` lets a restart rebind the
        port while the previous run's connections sit in TIME_WAIT."""
        if self._server is not None:
            return
        server = await asyncio.start_server(
            functools.partial(self._connection, self._epoch), self.host, self.port,
            reuse_address=True, backlog=_BACKLOG)
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        self._started = True

    async def stop(self) -> None:
        """Stop listening and cut every open connection; handlers still running are cancelled.

        Returns once every connection is closed. Idempotent. Safe to call from a handler of
        this server: that handler's own connection is cut but it runs on to completion.
        """
        server, self._server = self._server, None
        self._epoch += 1
        if server is not None:
            server.close()
        me = asyncio.current_task()
        others = []
        for task, transport in list(self._connections.items()):
            transport.abort()  # as a killed process: FIN, or RST if unread data remains
            if task is not me:
                task.cancel()
                others.append(task)
        if others:
            await asyncio.wait(others)  # wait(), unlike gather(), never cancels them for us
        if server is not None:
            await server.wait_closed()

    async def wait_idle(self) -> None:
        """Return once no connection is open (a client's close reaches us a moment after
        ``aclose()``); wrap in ``asyncio.timeout`` when clients might keep connections open."""
        while self._connections:
            await asyncio.wait(list(self._connections))

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ one connection

    async def _connection(self, epoch: int, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        """Serve one connection until it closes. Nothing may escape: asyncio's done-callback
        for this task calls ``task.exception()``, which on a *cancelled* task raises inside the
        event loop and is logged as an error, so cancellation (from stop()) ends here too."""
        task = asyncio.current_task()
        assert task is not None
        transport = writer.transport
        assert isinstance(transport, asyncio.Transport)
        self._connections[task] = transport
        try:
            try:
                if epoch != self._epoch:
                    transport.abort()  # accepted by a listener that stop() has since closed
                elif len(self._connections) > self.max_connections and not self._evict():
                    self.connections_evicted += 1
                    transport.abort()  # every other one is busy answering: refuse this one
                else:
                    await self._serve(reader, writer, transport)
            except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
                transport.abort()  # the peer went away, or stop() cut us
            except Exception:
                _LOG.exception("%s: connection failed", self.name)
                transport.abort()
            if not transport.is_closing():
                writer.close()  # graceful: flush the last answer, then FIN
            try:
                # Until connection_lost has run the socket is still open: returning earlier
                # would let stop() finish with descriptors open (and risk ResourceWarnings).
                # Bounded: a peer that closes without reading what it is owed would hold the
                # connection for ever, outside the cap's reach (a review, session 31).
                async with asyncio.timeout(self.send_timeout):
                    await writer.wait_closed()
            except (Exception, asyncio.CancelledError):
                transport.abort()
        finally:
            del self._connections[task]
            self._waiting.pop(task, None)
            self._sessions.pop(task, None)

    def _evict(self) -> bool:
        """Cut the connection waiting longest for its request, else the oldest WebSocket
        session, if any (``max_connections``); a request being answered is never cut."""
        me = asyncio.current_task()
        for victims in (self._waiting, self._sessions):
            for task, transport in victims.items():
                if task is not me:
                    del victims[task]
                    transport.abort()
                    task.cancel()
                    self.connections_evicted += 1
                    return True
        return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     transport: asyncio.Transport) -> None:
        conn = h11.Connection(h11.SERVER)
        task = asyncio.current_task()
        assert task is not None
        while True:
            self._waiting[task] = transport  # the newest waiter: cut last to make room
            try:
                async with asyncio.timeout(self.request_timeout):
                    request = await self._read_request(conn, reader, writer)
            except TimeoutError:
                if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                    return  # idle between requests, nothing asked: close without an answer
                await self._refuse(conn, reader, writer, _REQUEST_TIMEOUT)  # slowloris
                return
            except h11.RemoteProtocolError as exc:
                await self._refuse(conn, reader, writer, _HEADERS_TOO_LARGE
                                   if exc.error_status_hint == 431 else _BAD_REQUEST)
                return
            except _Refused as refused:
                await self._refuse(conn, reader, writer, refused.response)
                return
            finally:
                self._waiting.pop(task, None)
            if request is None:
                return  # the client closed between requests: the ordinary end of keep-alive
            answer = await self._answer(request)
            if isinstance(answer, _Reset):
                _reset(transport)
                return
            if transport.is_closing():
                return  # stop() was called from this very handler
            if isinstance(answer, Upgrade):
                await self._upgrade(conn, reader, writer, request, answer)
                return
            self._write(conn, writer, request.method, answer)
            if not await self._drain(writer):
                return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # "Connection: close", HTTP/1.0 or a handler's own close: h11 decides
            conn.start_next_cycle()

    async def _event(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            # b"" (EOF) tells h11 the peer closed: ConnectionClosed, or a protocol error
            # when that happens mid-message.
            conn.receive_data(await reader.read(_READ_CHUNK))

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> Request | None:
        """The next full request, or None when the client closed the connection cleanly."""
        event = await self._event(conn, reader)
        if not isinstance(event, h11.Request):
            return None  # ConnectionClosed (PAUSED cannot come before a request)
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in event.headers}  # h11 lower-cases names
        if "transfer-encoding" in headers and "content-length" in headers:
            # h11 lets Transfer-Encoding win (RFC 9112 §6.1), but the RFC also says to close
            # after such a request, which h11 does not: the bytes past the chunked body were
            # served as a second, smuggled request. Node refuses the request outright: 400.
            raise h11.RemoteProtocolError("Content-Length with Transfer-Encoding", 400)
        declared = headers.get("content-length")
        if declared is not None and int(declared) > self.max_body:  # h11 checked the digits
            raise _Refused(_TOO_LARGE)
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(
                status_code=100, headers=[], reason=b"Continue")) or b"")
        chunks: list[bytes] = []
        size = 0
        while True:
            part = await self._event(conn, reader)
            if isinstance(part, h11.Data):
                size += len(part.data)
                if size > self.max_body:
                    raise _Refused(_TOO_LARGE)  # a chunked body has no declared length
                chunks.append(part.data)
            elif isinstance(part, h11.EndOfMessage):
                break
            else:  # PAUSED or ConnectionClosed: cannot happen before EndOfMessage
                raise h11.RemoteProtocolError("incomplete request", 400)
        target = event.target.decode("latin-1")
        path, _, query = target.partition("?")
        return Request(event.method.decode("ascii").upper(), target, path,
                       dict(urllib.parse.parse_qsl(query, keep_blank_values=True)), headers,
                       b"".join(chunks))

    async def _drain(self, writer: asyncio.StreamWriter) -> bool:
        """Wait for the client to read what was written; ``False`` (and the connection cut)
        when it does not within ``send_timeout``: a client that never reads its answers
        otherwise held its connection, and a slot of ``max_connections``, forever."""
        try:
            async with asyncio.timeout(self.send_timeout):
                await writer.drain()
        except TimeoutError:
            writer.transport.abort()
            return False
        return True

    async def _answer(self, request: Request) -> Response | _Reset | Upgrade:
        try:
            answer = await self.handler(request)
        except Exception:
            _LOG.exception("%s: handler failed on %s %s", self.name, request.method,
                           request.path)
            return _INTERNAL_ERROR
        if not isinstance(answer, Response | _Reset | Upgrade):
            _LOG.error("%s: handler returned %r on %s %s, not a Response", self.name,
                       type(answer).__name__, request.method, request.path)
            return _INTERNAL_ERROR
        return answer

    def _write(self, conn: h11.Connection, writer: asyncio.StreamWriter, method: str,
               response: Response, *, close: bool = False) -> None:
        """Frame ``response`` for this connection; a handler's invalid status or headers become
        a logged 500 instead of a dead connection."""
        try:
            head = _head(response, close=close)
        except Exception:
            _LOG.exception("%s: handler answered an invalid response (status %r)", self.name,
                           response.status)
            response = _INTERNAL_ERROR
            head = _head(response, close=close)
        data = conn.send(head) or b""
        # HEAD, 204 and 304 carry no body on the wire (h11 frames them as zero length).
        if method != "HEAD" and response.status not in (204, 304) and response.body:
            data += conn.send(h11.Data(data=response.body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        writer.write(data)
        self.requests_served += 1

    async def _upgrade(self, conn: h11.Connection, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter, request: Request, upgrade: Upgrade) -> None:
        """Complete a WebSocket handshake (wsproto validates the request), then run the
        session. h11 stops parsing at the end of an upgrade request: what the client sent
        after it (its first frames, possibly) is in ``conn.trailing_data``."""
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        headers = [(name.encode("latin-1"), value.encode("latin-1"))
                   for name, value in request.headers.items()]
        try:
            ws.initiate_upgrade_connection(headers, request.target)
            accepted = ws.send(ws_events.AcceptConnection())
        except (RemoteProtocolError, LocalProtocolError):
            await self._refuse(conn, reader, writer, _BAD_REQUEST)
            return
        writer.write(accepted)
        self.requests_served += 1
        websocket = WebSocket(ws, reader, writer)
        trailing, _closed = conn.trailing_data
        if trailing:
            websocket.feed(trailing)
        task, transport = asyncio.current_task(), writer.transport
        assert task is not None and isinstance(transport, asyncio.Transport)
        self._sessions[task] = transport
        try:
            await upgrade.session(websocket)
            await websocket.close()  # no-op when the session closed, or the peer did
        finally:
            self._sessions.pop(task, None)
            websocket.forget()

    async def _refuse(self, conn: h11.Connection, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter, response: Response) -> None:
        """Answer a request we will not serve (400/413), then close *gracefully*.

        The client may still be sending a body we never read. Closing with unread bytes makes
        the kernel send a RST, which can destroy our answer in the client's buffer before it
        is read (httpx would report a ReadError instead of the 413). So: half-close, swallow
        what still comes until the client closes or ``_LINGER_S`` passes ("lingering close").
        """
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # a response is already under way: nothing coherent can be sent
        self._write(conn, writer, "", response, close=True)
        if not await self._drain(writer):
            return
        if writer.can_write_eof():
            writer.write_eof()
        try:
            async with asyncio.timeout(_LINGER_S):
                while await reader.read(_READ_CHUNK):
                    pass
        except TimeoutError:
            pass


class WebSocket:
    """One accepted WebSocket connection, as a session sees it: whole messages in
    (:meth:`receive`), text out (:meth:`send`), :meth:`close`. Pings are answered and the
    peer's close is echoed inside :meth:`receive`. Call from one session's tasks only (one
    loop, no locking needed: each call writes whole frames)."""

    def __init__(self, ws: wsproto.WSConnection, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, max_message: int = _WS_MAX_MESSAGE) -> None:
        self._ws = ws
        self._reader = reader
        self._writer = writer
        self._max_message = max_message
        self._events: deque[ws_events.Event] = deque()
        self._parts: list[str | bytes] = []
        self._size = 0
        self._linger: asyncio.TimerHandle | None = None
        #: The close code the peer sent (``1006``: the connection dropped), once closed.
        self.close_code: int | None = None

    @property
    def open(self) -> bool:
        return self._ws.state is ConnectionState.OPEN and not self._writer.is_closing()

    def feed(self, data: bytes | None) -> None:
        """Bytes received from the peer (``None``: end of stream)."""
        try:
            self._ws.receive_data(data)
        except LocalProtocolError:  # data after the close: nothing left to read
            return
        self._events.extend(self._ws.events())

    async def receive(self) -> str | bytes | None:
        """The next whole message (text as ``str``, binary as ``bytes``), or ``None`` once the
        connection is closed (by the peer, by us, or by a drop). A message over the size limit
        closes the connection with 1009."""
        while True:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, ws_events.Message):
                    if self._ws.state is not ConnectionState.OPEN:
                        continue  # we are closing: the rest is not read
                    if event.data:  # an empty fragment adds nothing: kept, a million of
                        # them grew the list without bound under the byte cap (session 44)
                        self._parts.append(event.data)
                    # Bytes, not characters: 64 Ki four-byte characters are 256 KiB.
                    self._size += (len(event.data.encode("utf-8", "surrogatepass"))
                                   if isinstance(event.data, str) else len(event.data))
                    if self._size > self._max_message:
                        self._parts, self._size = [], 0
                        await self.close(1009, "message too big")
                        continue  # read on: the peer's close reply ends the connection
                    if event.message_finished:
                        parts, self._parts, self._size = self._parts, [], 0
                        if isinstance(event, ws_events.TextMessage):
                            return "".join(str(part) for part in parts)
                        return b"".join(bytes(part) for part in parts)
                elif isinstance(event, ws_events.Ping):
                    self._send(event.response())
                elif isinstance(event, ws_events.CloseConnection):
                    self.close_code = event.code
                    if self._ws.state is ConnectionState.REMOTE_CLOSING:
                        self._send(event.response())
                    elif self._ws.state is ConnectionState.OPEN:  # a protocol error
                        self._send(ws_events.CloseConnection(code=event.code))
                    return None
            if self._ws.state is ConnectionState.CLOSED:
                return None
            data = await self._reader.read(_READ_CHUNK)
            self.feed(data or None)

    async def send(self, text: str) -> None:
        """Send one text message; ``ConnectionResetError`` when the connection is closing."""
        if not self.open:
            raise ConnectionResetError("WebSocket closed")
        self._send(ws_events.TextMessage(data=text))
        try:
            async with asyncio.timeout(_WS_SEND_WAIT_S):
                await self._writer.drain()
        except TimeoutError:
            self._writer.transport.abort()
            raise ConnectionResetError("WebSocket peer too slow: cut") from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (no-op when already closing); the peer's reply ends
        :meth:`receive`. A peer that never replies is cut after a few seconds."""
        if self._ws.state is not ConnectionState.OPEN or self._writer.is_closing():
            return
        self._send(ws_events.CloseConnection(code=code, reason=reason or None))
        if self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(
                _WS_CLOSE_WAIT_S, self._writer.transport.abort)
        with contextlib.suppress(OSError):
            await self._writer.drain()

    def forget(self) -> None:
        """The session is over: drop the timer of :meth:`close` (the server closes the
        connection itself)."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None

    def _send(self, event: ws_events.Event) -> None:
        if self._writer.is_closing():
            return
        with contextlib.suppress(LocalProtocolError):  # closed under us: nothing to send
            self._writer.write(self._ws.send(event))
        if self._writer.transport.get_write_buffer_size() > _WS_MAX_UNREAD:
            self._writer.transport.abort()  # a peer that does not read: cut, not buffered


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _head(response: Response, *, close: bool) -> h11.Response:
    headers = [(name, value) for name, value in response.headers
               if name.lower() not in _FRAMING]
    if response.status != 204:  # RFC 9110 §8.6: a 204 must not carry Content-Length
        headers.append(("content-length", str(len(response.body))))
    if close:
        headers.append(("connection", "close"))
    return h11.Response(status_code=response.status, headers=headers,
                        reason=_REASONS.get(response.status, b""))


def _reset(transport: asyncio.Transport) -> None:
    """Abort with a TCP RST (SO_LINGER 0), the "connection reset by peer" clients meet in
    production; a plain abort would send FIN, which reads as a clean close."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()

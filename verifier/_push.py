"""Push notifications of job changes: the client of the monitor's optional WebSocket extension.

The real Gateway Monitor has no push; ``docs/push.md`` documents the extension (served by the
emulator). :class:`JobPushClient` keeps one WebSocket to ``{monitor base}/ws/jobs``, sends the
subscriptions its callers ask for, and calls their callbacks with each :class:`JobPush`.

A push is a **hint, never proof of ownership**: it can be late, lost with a dropped connection,
or never come (a monitor without the extension). Callers use it to poll *sooner*, never to poll
less or to decide that a job is theirs; every decision still goes through the tiers.

What the client guarantees:

* **It never raises because of the network.** One background task connects, resubscribes
  every current subscription after each (re)connect, and on any drop or refusal waits a capped
  exponential backoff with full jitter (``random.Random`` injectable) and tries again, until
  :meth:`JobPushClient.aclose`.
* **Untrusted frames are checked.** Strict JSON, a known job id, string-or-null status and
  owner, a sequence number that only grows on a connection; anything else is logged and
  dropped, never turned into a push. Messages are capped at :data:`MAX_MESSAGE_BYTES`.
* **A failing callback is logged** and does not stop the others or the client.
* **Logs carry no credentials**: the URL only through :func:`~verifier._ids.redact_url`
  (no user info, no query).
* **It reaches the monitor as the REST tiers (httpx) do** (:meth:`JobPushClient.__init__`):
  the base URL's user info is sent as basic auth, the host is encoded by httpx's IDNA, TLS
  trusts httpx's CA certificates, and an ``http://`` proxy from the environment
  (``HTTP(S)_PROXY``, ``ALL_PROXY``, minus ``NO_PROXY``) carries the socket through
  ``CONNECT``; a proxy it cannot use (SOCKS, ``https://``) is logged once, and it connects
  directly. It did none of that: a monitor behind basic auth refused every upgrade, an
  encoder behind an egress proxy timed out on every attempt (an adversarial review,
  2026-12-05).
* **A hostile server cannot hold the event loop.** The guard's lease timers run on the same
  loop, so the client reads in small chunks, hands the loop back every few frames, and closes
  a connection whose frames cost more than :data:`BUSY_BUDGET_S` of CPU in
  :data:`BUSY_WINDOW_S` (1008, then the reconnect backoff): a flood of cheap frames and a
  stream of costly ones (64 KiB of tiny JSON objects pinned a core without tripping a frame
  count) alike, while a burst (a resubscription's 1,000 states, a backlog after the client's
  own stall) is not cut; dropped frames are logged once per connection, then counted.
  A frame flood froze the loop for up to 26 s and a command ran 17 s past its lease (an
  adversarial review, session 21). A connection that sends no whole frame for
  ``keepalive_s`` is pinged, and dropped if none comes as long again (bytes are not enough:
  a frame dripped a byte at a time held a connection with no push for ever); a peer that
  stops reading cannot keep :meth:`JobPushClient.aclose` waiting (its writes are bounded,
  then the socket aborted).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import re
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

import httpx
import wsproto
import wsproto.events as ws_events
from wsproto.connection import ConnectionState
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ._errors import ConfigurationError, InvalidInputError
from ._http import check_base_url, credentials, environment_proxy, positive_seconds
from ._ids import MAX_ID_LENGTH, redact_url, validate_job_id
from ._strict_json import NotStrictJson, strict_loads
from ._text import conceal

__all__ = [
    "MAX_IDS_PER_MESSAGE",
    "MAX_MESSAGE_BYTES",
    "MAX_SUBSCRIPTIONS",
    "JobPush",
    "JobPushClient",
    "PushCallback",
]

_LOG: Final = logging.getLogger(__name__)

#: The server's limits (docs/push.md): subscriptions per connection, ids per message.
MAX_SUBSCRIPTIONS: Final = 1000
MAX_IDS_PER_MESSAGE: Final = 50
#: Largest server message read; a larger one closes the connection (1009) and reconnects.
MAX_MESSAGE_BYTES: Final = 64 * 1024

_PATH: Final = "/ws/jobs"
_VARIABLE: Final = "GATEWAY_MONITOR_BASE_URL"
#: Read in small pieces: ``StreamReader.read`` hands back buffered data without yielding, and
#: a 64 KiB chunk of tiny frames took wsproto 0.6-1 s to parse.
_READ_CHUNK: Final = 4096
#: Frames handled between two hand-backs of the event loop.
_FRAMES_PER_YIELD: Final = 32
#: CPU seconds a connection's frames may cost the event loop's thread in a window of
#: BUSY_WINDOW_S (parsing, checks, callbacks): half of it, sustained, is abuse. Thread CPU
#: time, not wall time: a loaded machine must not cut a quiet connection. Over a window of
#: seconds, not one: a resubscription's 1,000 current states cost about 0.1 s at once (a
#: one-second frame count cut a backlog after the client's own stall: session 21's review).
BUSY_WINDOW_S: Final = 5.0
BUSY_BUDGET_S: Final = 2.5
#: 1008 "policy violation": what the client closes a flooding connection with.
_POLICY_VIOLATION: Final = 1008
#: How long a close may take to flush before the socket is aborted.
_CLOSE_S: Final = 1.0
#: First backoff bound; each failure doubles it up to ``reconnect_max_s``.
_BACKOFF_BASE_S: Final = 0.25
#: 1013 "try again later": the server shed us (overflow); do not reset the backoff.
_TRY_AGAIN_LATER: Final = 1013
#: 1006: the connection ended without a close frame (a reset, a silence, a stalled write).
_ABNORMAL_CLOSE: Final = 1006
#: A connection that stayed up this long was healthy: its end resets the reconnect back-off.
#: One that is accepted and dropped sooner is not, even if it delivered pushes: a server (or
#: proxy) that accepts, answers the subscription with the current states (as docs/push.md
#: requires) and closes would otherwise be reconnected to as fast as the network allows.
_HEALTHY_S: Final = 10.0
_ERROR_EXCERPT: Final = 200
#: A proxy's answer to CONNECT: its status line (the headers are not needed).
_PROXY_STATUS: Final = re.compile(rb"HTTP/1\.[01] ([0-9]{3})[ \r]")


@dataclass(frozen=True, slots=True)
class JobPush:
    """A job's state as the server pushed it: a hint to look again, never proof."""

    job_id: str
    status: str | None
    owner: str | None


PushCallback = Callable[[JobPush], None]


class _Refused(Exception):
    """The server answered the upgrade with something other than 101 (``by_proxy``: the
    proxy answered our CONNECT with something other than 2xx; the monitor was not reached)."""

    def __init__(self, status: int, *, by_proxy: bool = False) -> None:
        super().__init__(f"{'tunnel' if by_proxy else 'upgrade'} refused with HTTP {status}")
        self.status = status
        self.by_proxy = by_proxy


@dataclass(frozen=True, slots=True)
class _Proxy:
    """An ``http://`` proxy to tunnel through: where, its ``Proxy-Authorization`` (or
    ``None``), and its URL for logs (redacted)."""

    host: str
    port: int
    authorization: str | None = field(repr=False)  # a credential: never in a repr
    shown: str


def _authority(host: str, port: int | None) -> str:
    """``host[:port]`` for a Host header or a CONNECT target (an IPv6 address bracketed)."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def _basic(username: str, password: str) -> str | None:
    """A basic-auth header value as httpx builds it from a URL's (decoded) user info, or
    ``None`` when the URL has none (httpx: only if the user name or password is non-empty)."""
    if not (username or password):
        return None
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _environment_proxy(url: str) -> tuple[str, str] | None:
    """The variable (as spelled in the environment) and proxy URL that httpx would send
    requests for ``url`` through, or ``None``: :func:`verifier._http.environment_proxy`."""
    found = environment_proxy(url)
    if found is None:
        return None
    key, proxy = found
    names = [name for name, value in os.environ.items()
             if name.lower() == f"{key}_proxy" and proxy in (value, f"http://{value}")]
    return (names[0] if names else f"{key.upper()}_PROXY"), proxy


def _proxy(variable: str, url: str, target: str) -> tuple[_Proxy | None, str | None]:
    """The proxy to tunnel through, or why it cannot be used (a message for the log: the
    push client then connects directly, as it did before it knew proxies)."""
    text = url if "://" in url else "http://" + url  # httpx's default scheme
    shown = redact_url(text)
    try:
        parsed = httpx.URL(text)
        host = parsed.raw_host.decode("ascii")
        scheme, port = parsed.scheme, parsed.port or 80
        authorization = _basic(parsed.username, parsed.password)
    except (httpx.InvalidURL, ValueError):
        return None, (f"push: {variable} is not a proxy URL the push client can use; it "
                      f"connects to {target} directly")
    if scheme != "http" or not host:
        return None, (f"push: {variable} names the proxy {shown}, which the push client "
                      f"cannot use (only http:// proxies); it connects to {target} directly "
                      "(the REST tiers still go through the proxy)")
    return _Proxy(host, port, authorization, shown), None


class _Dropped(Exception):
    """The connection ended; ``code`` is the WebSocket close code (1006: no close frame)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"closed with code {code}")
        self.code = code


def _plain(value: object) -> bool:
    """A string the frames may carry: bounded and printable (no C0 or C1 controls, no bidi
    or other format characters: the rule for job ids)."""
    return isinstance(value, str) and len(value) <= MAX_ID_LENGTH and value.isprintable()


async def _closed(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``, letting a close frame flush for at most :data:`_CLOSE_S`; then abort
    the socket. ``wait_closed`` waits for the write buffer to drain, which a peer that stops
    reading never lets happen: ``aclose`` hung for good (session 21's review)."""
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_S):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise


def _resets_backoff(code: int, stayed_s: float) -> bool:
    """Whether a connection's close resets the reconnect back-off: only a healthy one (it
    stayed up :data:`_HEALTHY_S`), and never a 1013 ("try again later"). Pushes delivered do
    not count: every (re)subscription is answered with the current states, so a server that
    accepts, answers and closes would reset it every time (found by an adversarial review,
    2026-12-03: 81 connections in 10 s)."""
    return code != _TRY_AGAIN_LATER and stayed_s >= _HEALTHY_S


class _Incoming:
    """The message being received, frame by frame, up to :data:`MAX_MESSAGE_BYTES`."""

    __slots__ = ("binary", "parts", "size")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.binary = False

    def add(self, event: ws_events.Message[Any]) -> bool:
        """Take one frame's data; ``False`` once the message is over the cap."""
        data = event.data
        # Bytes, not characters: 64 Ki four-byte characters are 256 KiB.
        self.size += len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) \
            else len(data)
        self.binary = isinstance(event, ws_events.BytesMessage)
        if isinstance(data, str) and data:
            # Empty fragments add nothing. Kept, they grew this list without bound under
            # the byte cap: a server sending 80,000 a second, under the CPU budget, grew the
            # client by 0.6 MiB/s (an adversarial review, session 44).
            self.parts.append(data)
        return self.size <= MAX_MESSAGE_BYTES

    def take(self) -> str | None:
        """The finished message's text (``None``: a binary message, never read), and a
        fresh start for the next."""
        text = None if self.binary else "".join(self.parts)
        self.parts, self.size = [], 0
        return text


def _ids_message(verb: str, ids: list[str]) -> str:
    return json.dumps({verb: ids}, separators=(",", ":"))


def _id_batches(verb: str, ids: list[str]) -> Iterator[list[str]]:
    """``ids`` in messages the server takes: at most :data:`MAX_IDS_PER_MESSAGE` ids and
    :data:`MAX_MESSAGE_BYTES` bytes each. The count alone was not enough: JSON escapes every
    character outside ASCII (six bytes, twelve for one beyond the BMP), so 50 ids of 256
    "é" were 77 KiB, the server closed the connection (1009) after every resubscription, and
    no job of the connection got a push again (an adversarial review, session 44)."""
    overhead = len(_ids_message(verb, []))
    batch: list[str] = []
    size = overhead
    for job_id in ids:
        cost = len(json.dumps(job_id)) + (1 if batch else 0)  # ASCII: bytes = characters
        if batch and (len(batch) == MAX_IDS_PER_MESSAGE or size + cost > MAX_MESSAGE_BYTES):
            yield batch
            batch, size, cost = [], overhead, cost - 1
        batch.append(job_id)
        size += cost
    if batch:
        yield batch


def _backoff(failures: int, cap: float, rng: random.Random) -> float:
    """Capped exponential backoff with full jitter: uniform in ``[0, min(cap, base·2ⁿ)]``
    after ``n`` failures in a row (no synchronised reconnect storm after a restart)."""
    return rng.uniform(0.0, min(cap, _BACKOFF_BASE_S * 2.0 ** min(failures, 32)))


def _ssl_context() -> ssl.SSLContext:
    """The CA certificates httpx trusts (certifi's, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``),
    so that wss:// is verified as the monitor's https:// is; the system store (what this used)
    can differ, and on a python.org build for macOS it is empty. Certificates that cannot be
    loaded are a :class:`ConfigurationError` naming the variable, never its value."""
    try:
        return httpx.create_ssl_context()
    except OSError:  # ssl.SSLError is one: missing, a directory, not PEM
        variable = "SSL_CERT_FILE" if os.environ.get("SSL_CERT_FILE") else "SSL_CERT_DIR"
        raise ConfigurationError(variable, "could not be loaded as CA certificates (missing, "
                                 "unreadable or not PEM)") from None


class JobPushClient:
    """Subscribe to job changes pushed by the monitor's WebSocket extension (``docs/push.md``).

    ``monitor_base_url`` is ``GATEWAY_MONITOR_BASE_URL`` (``http(s)://host/api``); the socket
    is ``ws(s)://host/api/ws/jobs``. Use as ``async with JobPushClient(url) as push:`` or
    :meth:`start` / :meth:`aclose`. :meth:`subscribe` and :meth:`unsubscribe` are synchronous
    and must be called on the event loop's thread; callbacks run there too.
    """

    def __init__(self, monitor_base_url: str, *, connect_timeout: float = 10.0,
                 reconnect_max_s: float = 30.0, keepalive_s: float = 20.0,
                 logger: logging.Logger | None = None,
                 rng: random.Random | None = None) -> None:
        base = check_base_url(monitor_base_url, _VARIABLE, strict=True)
        parts = urllib.parse.urlsplit(base)
        secure = parts.scheme == "https"
        # As httpx reaches the REST routes (check_base_url has checked that it can): the host
        # by its IDNA 2008 encoding (the resolver's IDNA 2003 makes "faß.example" another
        # host, "fass.example"), the user info as basic auth, never in the Host header.
        url = httpx.URL(base)
        self._host = url.raw_host.decode("ascii")
        self._port = url.port or (443 if secure else 80)
        self._host_header = _authority(self._host, parts.port)
        authorization = _basic(url.username, url.password)
        self._headers: list[tuple[bytes, bytes]] = (
            [] if authorization is None else [(b"Authorization", authorization.encode())])
        # What a server quoting our request back must not get into our log: the REST tiers'
        # own list (the password as written too, and a user name that is the credential).
        self._secrets = credentials(base)
        # The path as httpx sends it (percent-encoded): a raw "/mónitor" cannot go in a
        # request line, and every attempt failed with a traceback (the review, 2026-12-05).
        path = url.raw_path.decode("ascii")  # no query: check_base_url refused one
        self._target = ("" if path == "/" else path) + _PATH
        self._ssl = _ssl_context() if secure else None
        self._shown_url = redact_url(
            urllib.parse.urlunsplit(("wss" if secure else "ws", self._host_header,
                                     self._target, "", "")))
        self._proxy: _Proxy | None = None
        self._proxy_warning: str | None = None
        found = _environment_proxy(base)
        if found is not None:
            self._proxy, self._proxy_warning = _proxy(*found, self._shown_url)
        self._via = f" via proxy {self._proxy.shown}" if self._proxy is not None else ""
        self._connect_timeout = positive_seconds(connect_timeout, "connect_timeout")
        self._reconnect_max_s = positive_seconds(reconnect_max_s, "reconnect_max_s")
        self._keepalive_s = positive_seconds(keepalive_s, "keepalive_s")
        self._log = logger or _LOG
        self._rng = rng or random.Random()  # jitter, not a secret
        self._callbacks: dict[str, list[PushCallback]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ws: wsproto.WSConnection | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._last_seq = 0
        #: CPU this connection's frames cost in the current one-second window, and its start.
        self._window_busy = 0.0
        self._window_start = 0.0
        #: Frames dropped on this connection (the first of each kind logged, the rest counted).
        self._dropped_frames = 0
        self._warned: set[str] = set()
        self._ever_connected = False
        #: When this connection's upgrade completed (the loop's clock), None while not up:
        #: the up-time that decides whether its end resets the back-off.
        self._up_since: float | None = None
        #: Valid pushes delivered to callbacks (current states after a subscribe included).
        self.pushes_received = 0
        #: Successful connections after the first one.
        self.reconnects = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        """True while the WebSocket is open and the subscriptions have been sent."""
        return self._ws is not None

    @property
    def url(self) -> str:
        """The WebSocket URL, redacted (for logs and messages)."""
        return self._shown_url

    async def start(self) -> None:
        """Start the background connection (no-op when running). Never fails on the network."""
        warning, self._proxy_warning = self._proxy_warning, None  # said once
        if warning is not None:
            self._log.warning(warning)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="job-push")

    async def aclose(self) -> None:
        """Close the connection (politely, with a close frame) and stop reconnecting."""
        task, self._task = self._task, None
        self._send_event(ws_events.CloseConnection(code=1000))
        if task is not None:
            task.cancel()
            # The session's writes and close are bounded (_CLOSE_S, connect_timeout); this
            # bound is the last resort, so that a stuck connection never holds a shutdown.
            await asyncio.wait([task], timeout=self._connect_timeout + _CLOSE_S)
            if not task.done():
                self._log.warning("push: the connection did not close in time; abandoned")
            elif not task.cancelled() and task.exception() is not None:
                self._log.error("push: the connection task failed", exc_info=task.exception())

    async def __aenter__(self) -> JobPushClient:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, job_id: str, callback: PushCallback) -> None:
        """Call ``callback`` with each push about ``job_id`` (several callbacks per job are
        allowed; the same one twice is called twice). Takes effect at once when connected,
        else at the next connect. :class:`~verifier.InvalidInputError` for a bad id or past
        :data:`MAX_SUBSCRIPTIONS` jobs."""
        job_id = validate_job_id(job_id)
        if not callable(callback):
            raise TypeError("callback must be callable")
        callbacks = self._callbacks.get(job_id)
        if callbacks is not None:
            callbacks.append(callback)
            return
        if len(self._callbacks) >= MAX_SUBSCRIPTIONS:
            raise InvalidInputError(f"at most {MAX_SUBSCRIPTIONS} jobs can be subscribed")
        self._callbacks[job_id] = [callback]
        self._send_ids("subscribe", [job_id])

    def unsubscribe(self, job_id: str, callback: PushCallback) -> None:
        """Stop calling ``callback`` for ``job_id`` (once per :meth:`subscribe`); the server
        is told when the job's last callback goes. Unknown pairs are ignored."""
        job_id = validate_job_id(job_id)
        callbacks = self._callbacks.get(job_id)
        if callbacks is None or callback not in callbacks:
            return
        callbacks.remove(callback)
        if not callbacks:
            del self._callbacks[job_id]
            self._send_ids("unsubscribe", [job_id])

    @property
    def subscriptions(self) -> frozenset[str]:
        """The job ids with at least one callback."""
        return frozenset(self._callbacks)

    # ------------------------------------------------------------------ the connection task

    async def _run(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            reset = False
            self._up_since = None
            try:
                await self._session()
            except _Dropped as dropped:
                reset = self._up_since is not None and _resets_backoff(
                    dropped.code, loop.time() - self._up_since)
                self._log.info("push: connection to %s%s closed (code %d); reconnecting",
                               self._shown_url, self._via, dropped.code)
            except _Refused as refused:
                self._log.log(logging.WARNING if failures == 0 else logging.DEBUG,
                              "push: no connection to %s%s: %s refused the %s (HTTP %d); "
                              "polling continues, retrying", self._shown_url, self._via,
                              "the proxy" if refused.by_proxy else "the monitor",
                              "tunnel" if refused.by_proxy else "WebSocket upgrade",
                              refused.status)
            except (OSError, TimeoutError, EOFError, RemoteProtocolError,
                    LocalProtocolError) as exc:
                if self._up_since is not None:
                    # Up, then reset by the peer mid-read (a restarted monitor, a NAT): a drop
                    # like any other, judged by how long it stayed up. Only the clean close
                    # used to be, so each reset grew the back-off (an adversarial review of
                    # the push client, session 31: after seven, 0-30 s for ever).
                    reset = _resets_backoff(_ABNORMAL_CLOSE, loop.time() - self._up_since)
                    self._log.info("push: connection to %s%s lost (%s); reconnecting",
                                   self._shown_url, self._via, type(exc).__name__)
                else:
                    self._log.log(logging.WARNING if failures == 0 else logging.DEBUG,
                                  "push: no connection to %s%s (%s); retrying",
                                  self._shown_url, self._via, type(exc).__name__)
            except Exception:  # a bug: its traceback once in a row, not every retry
                self._log.log(logging.ERROR if failures == 0 else logging.DEBUG,
                              "push: unexpected failure on %s%s; retrying", self._shown_url,
                              self._via, exc_info=True)
            if reset:
                failures = 0
            delay = _backoff(failures, self._reconnect_max_s, self._rng)
            failures += 1
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        """One connection: connect, handshake, resubscribe, read until it ends (raises)."""
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):  # the tunnel's too
                reader, writer = await self._open()
                ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
                writer.write(ws.send(ws_events.Request(host=self._host_header,
                                                       target=self._target,
                                                       extra_headers=self._headers)))
                await writer.drain()
                pending = await self._handshake(ws, reader)
            self._ws, self._writer, self._last_seq = ws, writer, 0
            self._up_since = asyncio.get_running_loop().time()
            self._window_busy, self._window_start = 0.0, asyncio.get_running_loop().time()
            self._dropped_frames = 0
            self._warned = set()
            if self._ever_connected:
                self.reconnects += 1
            self._ever_connected = True
            self._log.info("push: connected to %s%s", self._shown_url, self._via)
            for batch in _id_batches("subscribe", list(self._callbacks)):
                self._send_ids("subscribe", batch)
            await self._read(ws, reader, writer, pending)
        finally:
            self._ws = self._writer = None
            if self._dropped_frames > 1:
                self._log.warning("push: %d frames dropped on that connection in all",
                                  self._dropped_frames)
            if writer is not None:
                await _closed(writer)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A stream to the monitor: direct, or through the proxy's CONNECT tunnel, in which
        TLS (wss) is the monitor's own, end to end, checked for the monitor's name."""
        hostname = self._host if self._ssl is not None else None
        proxy = self._proxy
        if proxy is None:
            return await asyncio.open_connection(self._host, self._port, ssl=self._ssl,
                                                 server_hostname=hostname)
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        try:
            target = _authority(self._host, self._port)
            head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
            if proxy.authorization is not None:
                head += f"Proxy-Authorization: {proxy.authorization}\r\n"
            writer.write(head.encode("ascii") + b"\r\n")
            await writer.drain()
            try:  # up to the end of the answer's head, not a byte further (the tunnel's)
                answer = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise ConnectionError("the proxy's answer is too long") from None
            status = _PROXY_STATUS.match(answer)
            if status is None:
                raise ConnectionError("the proxy's answer is not HTTP")
            if not 200 <= int(status.group(1)) < 300:
                raise _Refused(int(status.group(1)), by_proxy=True)
            if self._ssl is not None:
                await writer.start_tls(self._ssl, server_hostname=hostname)
        except BaseException:
            writer.transport.abort()
            raise
        return reader, writer

    async def _handshake(self, ws: wsproto.WSConnection, reader: asyncio.StreamReader
                         ) -> Iterator[ws_events.Event]:
        """Read until the server accepts; the events after the acceptance are returned
        unparsed (a generator), so the read loop handles them under its budget."""
        while True:
            data = await reader.read(_READ_CHUNK)
            ws.receive_data(data or None)
            events = ws.events()
            for event in events:
                if isinstance(event, ws_events.AcceptConnection):
                    return events
                if isinstance(event, ws_events.RejectConnection):
                    raise _Refused(event.status_code)
            if not data:
                raise EOFError("closed during the handshake")

    async def _read(self, ws: wsproto.WSConnection, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, events: Iterable[ws_events.Event]) -> None:
        message = _Incoming()
        pinged = False
        loop = asyncio.get_running_loop()
        # When the last whole frame came. Bytes alone are no sign of life: a server that
        # sent a frame's header, then one byte of it every few seconds, kept the connection
        # "alive" for ever with no push and no ping (an adversarial review, session 44).
        whole_at = loop.time()
        while True:
            whole = False
            began = time.thread_time()
            for handled, event in enumerate(events, 1):  # parsed lazily, as handled
                if handled % _FRAMES_PER_YIELD == 0:
                    self._spent(time.thread_time() - began)
                    await asyncio.sleep(0)  # the guard's timers run on this loop too
                    began = time.thread_time()
                if isinstance(event, ws_events.Message):
                    whole = whole or event.frame_finished
                    if not message.add(event):
                        self._log.warning("push: a message over %d bytes; reconnecting",
                                          MAX_MESSAGE_BYTES)
                        self._send_event(ws_events.CloseConnection(code=1009))
                        raise _Dropped(1009)
                    if event.message_finished:
                        text = message.take()
                        if text is None:
                            self._dropped("binary message dropped", kind="binary")
                        else:
                            self._frame(text)
                elif isinstance(event, ws_events.Ping):
                    whole = True
                    self._send_event(event.response())
                elif isinstance(event, ws_events.Pong):
                    whole = True
                elif isinstance(event, ws_events.CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        self._send_event(event.response())
                    raise _Dropped(event.code)
            self._spent(time.thread_time() - began)
            if whole:
                whole_at, pinged = loop.time(), False
            # Our own frames (pongs, subscriptions) are flushed, in bounded time: a peer that
            # stops reading would otherwise hold this task, and aclose(), for ever.
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await writer.drain()
            except TimeoutError:
                self._log.info("push: %s does not read what we send; reconnecting",
                               self._shown_url)
                raise _Dropped(_ABNORMAL_CLOSE) from None
            try:
                async with asyncio.timeout(max(0.0, whole_at + self._keepalive_s - loop.time())):
                    data = await reader.read(_READ_CHUNK)
            except TimeoutError:
                if pinged:  # silent after a ping too: a dead connection (NAT, half-open)
                    self._log.info("push: no whole frame from %s in %gs, even after a ping",
                                   self._shown_url, 2 * self._keepalive_s)
                    raise _Dropped(_ABNORMAL_CLOSE) from None
                pinged, whole_at = True, loop.time()
                self._send_event(ws_events.Ping())
                events = ()
                continue
            ws.receive_data(data or None)
            events = ws.events()
            await asyncio.sleep(0)  # read() returns buffered data without yielding

    def _spent(self, cpu_s: float) -> None:
        """Count CPU the frames cost against :data:`BUSY_BUDGET_S`; past it, close (1008)."""
        now = asyncio.get_running_loop().time()
        if now - self._window_start >= BUSY_WINDOW_S:
            self._window_busy, self._window_start = 0.0, now
        self._window_busy += cpu_s
        if self._window_busy > BUSY_BUDGET_S:
            self._log.warning("push: %s's frames cost more than %gs of CPU in %gs; "
                              "reconnecting", self._shown_url, BUSY_BUDGET_S, BUSY_WINDOW_S)
            self._send_event(ws_events.CloseConnection(code=_POLICY_VIOLATION))
            raise _Dropped(_POLICY_VIOLATION)

    def _dropped(self, why: str, *, kind: str = "malformed") -> None:
        """A frame dropped: the first of each kind on a connection logged, the others only
        counted (a flood of them filled the log at 45,000 lines a second, and a bounded log
        queue then dropped the lines that mattered: session 21's review)."""
        self._dropped_frames += 1
        first = kind not in self._warned
        self._warned.add(kind)
        self._log.log(logging.WARNING if first else logging.DEBUG, "push: %s",
                      conceal(why, self._secrets))

    # ------------------------------------------------------------------ frames

    def _frame(self, text: str) -> None:
        """One server message: a push (checked, then delivered), an error, or dropped."""
        try:
            body = strict_loads(text.encode("utf-8"))
        except NotStrictJson as exc:
            self._dropped(f"malformed frame dropped ({exc})")
            return
        if not isinstance(body, dict):
            self._dropped("malformed frame dropped (not an object)")
            return
        if "job" not in body:
            error = body.get("error")
            if isinstance(error, str):
                # Our credential out before the cut and the escaping: cut first, a token
                # straddling the limit left its start, and repr's escapes (a backslash or a
                # quote in the password) hid it from conceal (an adversarial review, session 45).
                # conceal cuts, after it has looked (a 64 KiB error read only so far).
                said = conceal(error, self._secrets, _ERROR_EXCERPT)
                self._dropped(f"the server says: {said!r}", kind="error")
            else:
                self._dropped("malformed frame dropped (no job)")
            return
        push = self._push(body)
        if push is None:
            return
        callbacks = self._callbacks.get(push.job_id)
        if not callbacks:
            return  # unsubscribed while the push was on its way
        self.pushes_received += 1
        for callback in list(callbacks):
            try:
                callback(push)
            except Exception:
                self._log.exception("push: a callback failed on job %r", push.job_id)

    def _push(self, body: dict[str, Any]) -> JobPush | None:
        job_id, status, owner, seq = (body.get(key) for key in ("job", "status", "owner", "seq"))
        problem = None
        try:
            validate_job_id(job_id)
        except InvalidInputError as exc:
            problem = f"job: {exc}"
        if problem is None and not (status is None or _plain(status)):
            problem = "status is not a short string or null"
        if problem is None and not (owner is None or _plain(owner)):
            problem = "owner is not a short string or null"
        if problem is None and (isinstance(seq, bool) or not isinstance(seq, int)):
            problem = "seq is not an integer"
        if problem is None and isinstance(seq, int) and seq <= self._last_seq:
            problem = f"seq {seq} after {self._last_seq} (replayed or reordered)"
        if problem is not None:
            self._dropped(f"malformed frame dropped ({problem})")
            return None
        assert isinstance(job_id, str) and isinstance(seq, int)
        self._last_seq = seq
        return JobPush(job_id, status, owner)

    def _send_ids(self, verb: str, ids: list[str]) -> None:
        if ids:
            self._send_event(ws_events.TextMessage(data=_ids_message(verb, ids)))

    def _send_event(self, event: ws_events.Event) -> None:
        """Queue a frame on the open connection (nothing when not connected: the next
        connect resubscribes everything)."""
        ws, writer = self._ws, self._writer
        if ws is None or writer is None or writer.is_closing():
            return
        try:
            writer.write(ws.send(event))
        except LocalProtocolError:
            return  # closing already: the read loop is about to notice

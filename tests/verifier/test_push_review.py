"""JobPushClient against the deployments its users have (an adversarial review, 2026-12-05).

The monitor's HTTP client (httpx) sends the base URL's user info as basic auth, goes through
the proxy the environment names, encodes a host name by IDNA 2008 and trusts httpx's CA
certificates. The push client did none of that: behind a reverse proxy with basic auth every
upgrade was refused (401) for good; behind an egress proxy it tried to connect directly for
good; it resolved some non-ASCII hosts to a different name (IDNA 2003) than the HTTP tiers; and
it trusted the system's CA store where the tiers trust certifi. Each test here failed before
the fix. Servers are loopback fakes (``test_push.FakeMonitor`` and a CONNECT proxy here); no
sleeps for timing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import logging
import random
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from verifier import ConfigurationError, JobPush, JobPushClient
from verifier._push import _proxy as proxy_from

from .test_push import (
    JOB,
    OWNER,
    TIMEOUT,
    FakeMonitor,
    LogQueue,
    _collector,
    _next,
    _push,
    running,
)
from .test_push import server as _server_fixture

#: The fake monitor fixture of ``test_push.py``, shared (a fixture is found by its name here).
server = _server_fixture

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the proxy variables it wants; none leaks in from the machine's."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


class FakeProxy:
    """An HTTP proxy on loopback that answers ``CONNECT`` with ``answer`` and, on a 2xx, pipes
    the tunnel to ``127.0.0.1:target_port`` whatever host the request names (so a test can
    name a host that does not resolve: only the proxy may have resolved it)."""

    def __init__(self, target_port: int,
                 answer: bytes = b"HTTP/1.1 200 Connection established\r\n\r\n") -> None:
        self.target_port = target_port
        self.answer = answer
        self.heads: asyncio.Queue[bytes] = asyncio.Queue()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        if self._server is not None:
            await self._server.wait_closed()

    async def head(self) -> str:
        async with asyncio.timeout(TIMEOUT):
            return (await self.heads.get()).decode("latin-1")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            self.heads.put_nowait(await reader.readuntil(b"\r\n\r\n"))
            writer.write(self.answer)
            await writer.drain()
            if not self.answer.startswith(b"HTTP/1.1 2"):
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers.add(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (OSError, EOFError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.transport.abort()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        finally:
            sink.transport.abort()


def _headers(server: FakeMonitor) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in server.requests[-1].extra_headers}


def _basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


# --------------------------------------------------------------------------- basic auth


@pytest.mark.asyncio
async def test_user_info_in_the_base_url_is_sent_as_basic_auth_and_never_logged(
        server: FakeMonitor) -> None:
    """A monitor behind a reverse proxy with basic auth: httpx sends the base URL's user info
    (percent-decoded) to the monitor's REST routes; the push client sent none, and every
    upgrade met a 401 for as long as the encoder ran."""
    log = LogQueue("test.push.review.auth")
    pushes, callback = _collector()
    url = f"http://us%40er:p%2Fss%3Aw0rd@127.0.0.1:{server.port}/api"
    async with JobPushClient(url, reconnect_max_s=0.05, connect_timeout=2.0,
                             rng=random.Random(1), logger=log.logger) as client:
        client.subscribe(JOB, callback)
        peer = await server.peer()
        assert await peer.message() == {"subscribe": [JOB]}
        assert _headers(server)[b"authorization"] == _basic("us@er", "p/ss:w0rd")
        peer.send(_push(JOB, "assigned", OWNER, 1))
        assert await _next(pushes) == JobPush(JOB, "assigned", OWNER)
    assert not any("w0rd" in m or "us@er" in m or "us%40er" in m for m in log.seen), log.seen


@pytest.mark.asyncio
async def test_a_server_that_quotes_our_authorization_back_never_gets_it_logged(
        server: FakeMonitor) -> None:
    """A monitor (or a proxy before it) that copied the request's Authorization header into
    an error frame had it logged at WARNING: base64 of user:password (helper-129's review,
    session 44). What the server says is logged with our credential taken out."""
    log = LogQueue("test.push.review.echo")
    url = f"http://encoder:p%2Fss%3Aw0rd@127.0.0.1:{server.port}/api"
    token = _basic("encoder", "p/ss:w0rd").decode().partition(" ")[2]
    async with JobPushClient(url, reconnect_max_s=0.05, connect_timeout=2.0,
                             rng=random.Random(1), logger=log.logger) as client:
        client.subscribe(JOB, lambda push: None)
        peer = await server.peer()
        await peer.message()
        said = _headers(server)[b"authorization"].decode()
        peer.send({"error": f"refused: Authorization: {said} (p/ss:w0rd, {token[:-1]}, "
                            "Basic b3RoZXI6dXNlcg==)"})
        logged = await log.wait_for("the server says")
    assert "refused: Authorization: Basic ***" in logged
    assert token not in logged and "w0rd" not in logged, logged
    # All but its last character is still our token (session 46: a long run of a secret is
    # the secret); another's token is not ours, and stays.
    assert token[:-1] not in logged and "(***, ***, Basic b3RoZXI6dXNlcg==)" in logged, logged


@pytest.mark.asyncio
async def test_no_user_info_no_authorization_header(server: FakeMonitor) -> None:
    async with JobPushClient(server.url, reconnect_max_s=0.05, connect_timeout=2.0) as client:
        client.subscribe(JOB, lambda push: None)
        peer = await server.peer()
        await peer.message()
        assert b"authorization" not in _headers(server)


# --------------------------------------------------------------------------- the host name


@pytest.mark.asyncio
async def test_a_non_ascii_host_is_the_host_the_http_tiers_reach(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx encodes ``faß.example`` by IDNA 2008 (``xn--fa-hia.example``); the push client
    handed the Unicode name to the resolver, whose IDNA 2003 makes it ``fass.example``:
    another host, which (with the user info now sent) would have been sent the credentials."""
    reached: asyncio.Queue[tuple[str, str | None]] = asyncio.Queue()

    async def recorded(host: str, port: int, **kwargs: Any) -> Any:
        reached.put_nowait((host, kwargs.get("server_hostname")))
        raise ConnectionRefusedError("recorded, not connected")

    monkeypatch.setattr(asyncio, "open_connection", recorded)
    client = JobPushClient("https://u:p@faß.example/api", reconnect_max_s=0.05)
    await client.start()
    try:
        async with asyncio.timeout(TIMEOUT):
            assert await reached.get() == ("xn--fa-hia.example", "xn--fa-hia.example")
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- TLS trust


def _certificates(tmp: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA (written to a PEM file) and a server context with its certificate for 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "push review CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file = tmp / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = tmp / "server.pem"
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)
    return ca_file, context


@pytest.fixture
def trusted_like_httpx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                       ) -> Iterator[ssl.SSLContext]:
    """A CA that httpx trusts (its bundle is certifi's: ``certifi.where`` names ours) and the
    system store does not; the server context its certificate is for."""
    import certifi

    ca_file, context = _certificates(tmp_path)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setattr(certifi, "where", lambda: str(ca_file))
    yield context


@pytest_asyncio.fixture
async def tls_server(trusted_like_httpx: ssl.SSLContext) -> AsyncIterator[FakeMonitor]:
    fake = FakeMonitor()
    fake.ssl = trusted_like_httpx
    async with running(fake):
        yield fake


@pytest.mark.asyncio
async def test_the_push_client_trusts_the_ca_certificates_the_http_tiers_trust(
        tls_server: FakeMonitor) -> None:
    """The REST tiers verify wss's sibling, https, against httpx's CA bundle (certifi, or
    SSL_CERT_FILE / SSL_CERT_DIR); the push client used the system's store. Where the two
    differ (a python.org build on macOS has no system store at all) the monitor's HTTPS
    worked and every push connection failed its certificate check."""
    pushes, callback = _collector()
    async with JobPushClient(tls_server.url, reconnect_max_s=0.05, connect_timeout=2.0,
                             rng=random.Random(1)) as client:
        assert client.url.startswith("wss://")
        client.subscribe(JOB, callback)
        peer = await tls_server.peer()
        assert await peer.message() == {"subscribe": [JOB]}
        peer.send(_push(JOB, "queued", None, 1))
        assert await _next(pushes) == JobPush(JOB, "queued", None)


# --------------------------------------------------------------------------- proxies


def _proxy(target_port: int, **kwargs: Any) -> contextlib.AbstractAsyncContextManager[Any]:
    return running(FakeProxy(target_port, **kwargs))


@pytest.mark.asyncio
async def test_an_http_proxy_from_the_environment_carries_the_socket_through_connect(
        server: FakeMonitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """An encoder behind an egress proxy reaches the monitor's REST routes through it (httpx
    reads HTTP_PROXY); the push client connected directly, and where only the proxy gets out
    it timed out for as long as the encoder ran. The host is a name nobody resolves: only the
    proxy may (it is told the name, as httpx tells it)."""
    log = LogQueue("test.push.review.proxy")
    pushes, callback = _collector()
    async with _proxy(server.port) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://pu:pp%40ss@127.0.0.1:{proxy.port}")
        async with JobPushClient(f"http://monitor.invalid:{server.port}/api",
                                 reconnect_max_s=0.05, connect_timeout=2.0,
                                 rng=random.Random(1), logger=log.logger) as client:
            client.subscribe(JOB, callback)
            head = await proxy.head()
            peer = await server.peer()
            assert await peer.message() == {"subscribe": [JOB]}
            peer.send(_push(JOB, "assigned", OWNER, 1))
            assert await _next(pushes) == JobPush(JOB, "assigned", OWNER)
    lines = head.split("\r\n")
    assert lines[0] == f"CONNECT monitor.invalid:{server.port} HTTP/1.1"
    assert f"Host: monitor.invalid:{server.port}" in lines
    assert "Proxy-Authorization: " + _basic("pu", "pp@ss").decode() in lines
    assert server.requests[-1].host == f"monitor.invalid:{server.port}"  # the monitor's name
    assert any(f"via proxy http://127.0.0.1:{proxy.port}" in m for m in log.seen), log.seen
    assert not any("pp" in m for m in log.seen), log.seen


@pytest.mark.asyncio
async def test_wss_goes_through_the_tunnel_with_tls_to_the_monitor(
        tls_server: FakeMonitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the proxy, TLS is the monitor's, end to end (the proxy sees only the CONNECT):
    the certificate checked is the monitor's, for the monitor's name."""
    pushes, callback = _collector()
    async with _proxy(tls_server.port) as proxy:
        monkeypatch.setenv("https_proxy", f"127.0.0.1:{proxy.port}")  # httpx's default: http
        async with JobPushClient(tls_server.url, reconnect_max_s=0.05, connect_timeout=2.0,
                                 rng=random.Random(1)) as client:
            client.subscribe(JOB, callback)
            assert (await proxy.head()).startswith(f"CONNECT 127.0.0.1:{tls_server.port} ")
            peer = await tls_server.peer()
            assert await peer.message() == {"subscribe": [JOB]}
            peer.send(_push(JOB, "running", OWNER, 1))
            assert await _next(pushes) == JobPush(JOB, "running", OWNER)


@pytest.mark.asyncio
@pytest.mark.parametrize(("answer", "expected"), [
    (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
     "refused the tunnel (HTTP 407)"),
    (b"HTTP/1.1 300 Multiple Choices\r\n\r\n", "refused the tunnel (HTTP 300)"),
    (b"HTTP/1.1 199 Early\r\n\r\n", "refused the tunnel (HTTP 199)"),
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "no connection to"),
    (b"HTTP/1.1 502 Bad Gateway\r\n" + b"X: " + b"a" * 200_000 + b"\r\n\r\n",
     "no connection to"),
])
async def test_a_proxy_that_refuses_or_is_not_http_is_retried_quietly_and_named(
        server: FakeMonitor, monkeypatch: pytest.MonkeyPatch, answer: bytes,
        expected: str) -> None:
    """The proxy's own failure is named as the proxy's (the monitor was never reached), without
    its credentials; nothing is logged as an unexpected failure (a traceback on every retry),
    and the retries back off."""
    log = LogQueue(f"test.push.review.refused.{len(answer)}")
    async with _proxy(server.port, answer=answer) as proxy:
        monkeypatch.setenv("ALL_PROXY", f"http://pu:secretpw@127.0.0.1:{proxy.port}")
        client = JobPushClient(server.url, reconnect_max_s=0.05, connect_timeout=2.0,
                               rng=random.Random(1), logger=log.logger)
        await client.start()
        try:
            first = await log.wait_for(expected)
            await proxy.head()
            await proxy.head()  # and again: retried
        finally:
            await client.aclose()
    assert f"via proxy http://127.0.0.1:{proxy.port}" in first
    assert not client.connected and server.attempts == 0
    assert not any("secretpw" in m or "unexpected" in m for m in log.seen), log.seen


@pytest.mark.asyncio
async def test_a_proxy_the_client_cannot_use_is_said_once_and_it_connects_directly(
        server: FakeMonitor, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A SOCKS proxy is httpx's (with socksio) but not the push client's: it says so once, at
    the start, naming the variable and the proxy without credentials, then connects directly
    (polling does not need the push; a silent direct attempt would read as a dead monitor)."""
    monkeypatch.setenv("all_proxy", "socks5://pu:secretpw@127.0.0.1:1")
    with caplog.at_level(logging.INFO, logger="verifier._push"):
        async with JobPushClient(server.url, reconnect_max_s=0.05,
                                 connect_timeout=2.0) as client:
            client.subscribe(JOB, lambda push: None)
            peer = await server.peer()
            assert await peer.message() == {"subscribe": [JOB]}
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "socks5://127.0.0.1:1" in warned[0], warned
    assert "all_proxy" in warned[0] and "directly" in warned[0]
    assert "secretpw" not in caplog.text


@pytest.mark.asyncio
async def test_no_proxy_is_honoured(server: FakeMonitor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with JobPushClient(server.url, reconnect_max_s=0.05, connect_timeout=2.0) as client:
        client.subscribe(JOB, lambda push: None)
        peer = await server.peer()
        assert await peer.message() == {"subscribe": [JOB]}


# --------------------------------------------------------------------------- the path


@pytest.mark.asyncio
async def test_a_non_ascii_base_path_is_percent_encoded_as_httpx_encodes_it(
        server: FakeMonitor, caplog: pytest.LogCaptureFixture) -> None:
    """httpx percent-encodes a base URL's non-ASCII path, and the REST routes work; the push
    client put the raw path in the request line, which wsproto cannot encode: every attempt
    failed with a traceback at ERROR (an "unexpected failure"), for as long as it ran."""
    pushes, callback = _collector()
    async with JobPushClient(f"http://127.0.0.1:{server.port}/mónitor/api",
                             reconnect_max_s=0.05, connect_timeout=2.0) as client:
        client.subscribe(JOB, callback)
        peer = await server.peer()
        assert await peer.message() == {"subscribe": [JOB]}
        peer.send(_push(JOB, "queued", None, 1))
        assert await _next(pushes) == JobPush(JOB, "queued", None)
    assert server.targets == ["/m%C3%B3nitor/api/ws/jobs"]
    assert client.url == f"ws://127.0.0.1:{server.port}/m%C3%B3nitor/api/ws/jobs"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.asyncio
async def test_the_root_path_is_not_doubled(server: FakeMonitor) -> None:
    async with JobPushClient(f"http://127.0.0.1:{server.port}/", reconnect_max_s=0.05,
                             connect_timeout=2.0) as client:
        client.subscribe(JOB, lambda push: None)
        await (await server.peer()).message()
    assert server.targets == ["/ws/jobs"]


@pytest.mark.asyncio
async def test_an_unexpected_failure_is_a_traceback_once_in_a_row_not_at_every_retry(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug that fails every attempt (the non-ASCII path above was one) logged an ERROR with
    a traceback at every retry, for as long as the encoder ran; now the first of a row."""
    levels: list[int] = []

    class Levels(LogQueue):
        def emit(self, record: logging.LogRecord) -> None:
            levels.append(record.levelno)
            super().emit(record)

    log = Levels("test.push.review.unexpected")
    client = JobPushClient("http://127.0.0.1:9/api", reconnect_max_s=0.01,
                           logger=log.logger, rng=random.Random(1))

    async def buggy() -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(client, "_open", buggy)
    await client.start()
    try:
        for _ in range(4):
            await log.wait_for("unexpected failure")
    finally:
        await client.aclose()
    assert levels.count(logging.ERROR) == 1 and len(levels) >= 4, levels


# --------------------------------------------------------------------------- edges (session 39)
# Each closes a mutant of verifier/_push.py that every other test let live.


@pytest.mark.asyncio
async def test_a_user_name_without_a_password_is_sent_as_basic_auth(server: FakeMonitor) -> None:
    """httpx sends ``user@`` as ``user:`` (a user name or a password suffices); the push client
    must reach a monitor behind the same proxy as the REST routes do."""
    url = f"http://encoder@127.0.0.1:{server.port}/api"
    async with JobPushClient(url, reconnect_max_s=0.05, connect_timeout=2.0) as client:
        client.subscribe(JOB, lambda push: None)
        await (await server.peer()).message()
        assert _headers(server)[b"authorization"] == _basic("encoder", "")
    sent: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(
            lambda request: sent.append(request) or httpx.Response(204))) as rest:
        await rest.get(url)  # what the REST tiers send for the same base URL
    assert sent[0].headers["authorization"] == _basic("encoder", "").decode()


@pytest.mark.asyncio
@pytest.mark.parametrize(("base", "target"), [
    ("https://monitor.invalid/api", "monitor.invalid:443"),
    ("http://monitor.invalid/api", "monitor.invalid:80"),
])
async def test_a_url_without_a_port_is_tunnelled_to_its_schemes_port(
        monkeypatch: pytest.MonkeyPatch, base: str, target: str) -> None:
    """The CONNECT names the port the scheme implies, as httpx's tunnel does."""
    refusing = b"HTTP/1.1 403 Forbidden\r\n\r\n"
    async with _proxy(1, answer=refusing) as proxy:
        monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{proxy.port}")
        async with JobPushClient(base, reconnect_max_s=0.05, connect_timeout=2.0):
            head = await proxy.head()
    assert head.split("\r\n")[0] == f"CONNECT {target} HTTP/1.1"


def test_a_proxy_without_a_port_is_on_port_80_and_its_credentials_never_shown() -> None:
    proxy, problem = proxy_from("HTTP_PROXY", "http://pu:s3cretpw@proxy.example", "t")
    assert problem is None and proxy is not None
    assert (proxy.host, proxy.port) == ("proxy.example", 80)  # httpx's default too
    assert proxy.authorization == _basic("pu", "s3cretpw").decode()
    assert proxy.authorization not in repr(proxy) and "s3cretpw" not in proxy.shown


def test_unusable_ca_certificates_name_their_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the REST tiers do (test_http.py): the variable, never its value."""
    path = tmp_path / "ca.pem"
    path.write_text("not a certificate\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    with pytest.raises(ConfigurationError) as info:
        JobPushClient("https://monitor.example/api")
    assert info.value.variable == "SSL_CERT_FILE" and str(path) not in str(info.value)

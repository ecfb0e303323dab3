"""Which proxy a request goes through, checked against httpx itself (the reference).

The REST tiers are httpx clients that read ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and
``NO_PROXY`` themselves. Two parts of ours must agree with them: :func:`proxy_for` (the
``via proxy`` in logs and ``SETTINGS:``) and the push client, which opens its own socket and
tunnels through the same proxy. Both read ``NO_PROXY`` by the standard library's rules until
session 40, and a differential run (41,244 environment and URL pairs, 2,296 divergent) found
seven forms where httpx decides otherwise. The oracle here is httpx's client: the transport it
picks for the URL (its proxy, or its direct transport), and, for a few cases, where a real
request on loopback arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from unittest import mock

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verifier import ConfigurationError
from verifier._http import TierHttp, environment_proxy, proxy_for
from verifier._push import _environment_proxy

_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_SSL_CONTEXT = ssl.create_default_context()


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """The machine's environment without its proxy variables, plus ``env``."""
    clean = {name: value for name, value in os.environ.items()
             if name.lower() not in _VARIABLES}
    clean.update(env)
    with mock.patch.dict(os.environ, clean, clear=True):
        yield


def _httpx_route(url: str) -> tuple[str, str, int | None] | None:
    """The proxy (scheme, host, port) httpx's own client sends ``url`` through, or ``None`` when
    it goes direct: the transport its client picks, read from the client itself."""
    # One SSL context for all: loading the CA certificates for each of hundreds of clients
    # was most of this module's time, and they play no part in the choice.
    client = httpx.AsyncClient(verify=_SSL_CONTEXT)
    transport = client._transport_for_url(httpx.URL(url))
    if transport is client._transport:
        return None
    proxy = transport._pool._proxy_url  # type: ignore[attr-defined]
    return proxy.scheme.decode(), proxy.host.decode(), proxy.port


def _ours(url: str) -> tuple[str, str, int | None] | None:
    found = environment_proxy(url)
    if found is None:
        return None
    proxy = httpx.URL(found[1])
    return proxy.scheme, proxy.raw_host.decode("ascii"), proxy.port


def _agree(env: dict[str, str], url: str) -> tuple[str, str, int | None] | None:
    """Our choice for ``url`` under ``env``, after checking it is httpx's, and that the push
    client's (with the variable it names) and ``proxy_for`` say the same."""
    with _environment(env):
        try:
            expected = _httpx_route(url)
        except (httpx.InvalidURL, ValueError):
            # httpx cannot even build a client: TierHttp says so at start-up (tested below).
            assert environment_proxy(url) is None
            return None
        ours = _ours(url)
        assert ours == expected, (env, url)
        pushed = _environment_proxy(url)
        assert (pushed is None) is (ours is None)
        if pushed is not None:
            variable, proxy = pushed
            assert os.environ[variable] in (proxy, proxy.removeprefix("http://"))
            assert proxy_for(url) is not None
        else:
            assert proxy_for(url) is None
        return ours


_PROXY = {"HTTP_PROXY": "http://p-http.test:3128"}
_ALL = {"ALL_PROXY": "http://p-all.test:3128"}


@pytest.mark.parametrize(("no_proxy", "url", "proxied"), [
    # The seven forms where the standard library's rules (used before) differ from httpx's.
    ("other.test,*", "http://tier.test/api", False),           # "*" among other entries
    ("tier.test:8080", "http://tier.test:8080/api", False),    # host:port: that port only
    ("tier.test:8080", "http://tier.test/api", True),
    ("http://tier.test", "http://tier.test/api", False),       # an entry with a scheme
    ("https://tier.test", "http://tier.test/api", True),
    (".3speak.tv", "http://3speak.tv/api", True),              # a leading dot: subdomains only
    (".3speak.tv", "http://api.3speak.tv/api", False),
    ("localhost", "http://localhost/api", False),              # localhost: exactly
    ("localhost", "http://a.localhost/api", True),
    ("faß.example", "http://xn--fa-hia.example/api", False),   # IDNA: one host, two spellings
    ("xn--fa-hia.example", "http://faß.example/api", True),    # (httpx matches one way only)
    ("10.0.0.0/8", "http://10.1.2.3/api", True),               # CIDR: not a range in httpx
    # And where both rules agree.
    ("3speak.tv", "http://3speak.tv/api", False),
    ("3speak.tv", "http://api.3speak.tv/api", False),
    ("3speak.tv", "http://x3speak.tv/api", True),
    ("::1", "http://[::1]:8080/api", False),
    ("127.0.0.1", "http://127.0.0.1/api", False),
    ("*", "http://tier.test/api", False),
    ("", "http://tier.test/api", True),
])
def test_no_proxy_is_read_as_httpx_reads_it(no_proxy: str, url: str, proxied: bool) -> None:
    env = {**_PROXY, "NO_PROXY": no_proxy}
    assert (_agree(env, url) is not None) is proxied


def test_a_schemes_own_variable_comes_before_all_proxy() -> None:
    env = {**_ALL, "HTTPS_PROXY": "p-https.test:3129"}
    assert _agree(env, "https://tier.test/api") == ("http", "p-https.test", 3129)
    assert _agree(env, "http://tier.test/api") == ("http", "p-all.test", 3128)


_HOSTS = ("tier.test", "sub.tier.test", "3speak.tv", "api.3speak.tv", "x3speak.tv",
          "localhost", "a.localhost", "127.0.0.1", "10.1.2.3", "::1", "faß.example",
          "xn--fa-hia.example")


def _entry(host: str, form: str, port: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return {
        "plain": host,
        "dot": "." + host,
        "star-dot": "*." + host,
        "star": "*" + host,
        "port": shown + port,
        "http": "http://" + shown,
        "https": "https://" + shown,
        "all": "all://" + shown,
        "cidr": host + "/8",
        "upper": host.upper(),
    }[form]


_ENTRIES = st.one_of(
    st.just("*"),
    st.builds(_entry, st.sampled_from(_HOSTS),
              st.sampled_from(["plain", "dot", "star-dot", "star", "port", "http", "https",
                               "all", "cidr", "upper"]),
              st.sampled_from([":80", ":443", ":8080"])),
)
_SPACES = st.sampled_from(["", " ", "  "])


@st.composite
def _environments(draw: st.DrawFn) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, proxy in (("http_proxy", "http://p-http.test:3128"),
                        ("https_proxy", "p-https.test:3129"),
                        ("all_proxy", "https://u:pw@p-all.test:3130")):
        if draw(st.booleans()):
            env[name.upper() if draw(st.booleans()) else name] = proxy
    entries = draw(st.lists(st.tuples(_SPACES, _ENTRIES, _SPACES), max_size=4))
    if entries or draw(st.booleans()):
        name = "NO_PROXY" if draw(st.booleans()) else "no_proxy"
        env[name] = ",".join(before + entry + after for before, entry, after in entries)
    return env


_URLS = st.builds(
    lambda scheme, host, port: f"{scheme}://{f'[{host}]' if ':' in host else host}{port}/api",
    st.sampled_from(["http", "https"]), st.sampled_from(_HOSTS),
    st.sampled_from(["", ":80", ":443", ":8080"]))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env=_environments(), url=_URLS)
def test_every_environment_and_url_go_where_httpx_sends_them(env: dict[str, str],
                                                              url: str) -> None:
    _agree(env, url)


@pytest.mark.parametrize("entry", ["[::1]", "https://xn--ls8h.la"])
@pytest.mark.parametrize("proxy", [_PROXY, {}])
def test_an_unreadable_no_proxy_entry_is_named_as_no_proxy_not_as_the_proxy(
        entry: str, proxy: dict[str, str]) -> None:
    """httpx reads "[::1]" as a host with a port (":1]"), and refuses a punycode name IDNA 2008
    refuses: it cannot build a client. The start-up error named HTTP_PROXY (or every proxy
    variable, when none was set), never the variable at fault."""
    with _environment({**proxy, "no_proxy": f"localhost,{entry}"}), \
            pytest.raises(ConfigurationError) as info:
        TierHttp("gateway", "http://tier.test/api", variable="GATEWAY_URL")
    assert info.value.variable == "no_proxy"
    assert "::1" in str(info.value)


# --------------------------------------------------------------------------- real requests


@contextlib.asynccontextmanager
async def serving(respond: Callable[[str], bytes]) -> AsyncIterator[int]:
    """A loopback HTTP server (or forward proxy: it answers any request line) that answers
    each request with ``respond(its head)``, a whole HTTP response; yields its port."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            writer.write(respond(head))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def _answering(body: bytes) -> contextlib.AbstractAsyncContextManager[int]:
    """:func:`serving` answering 200 with ``body`` to every request."""
    return serving(lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                   b"Connection: close\r\n\r\n%s" % (len(body), body))


@pytest.mark.asyncio
@pytest.mark.parametrize(("no_proxy", "proxied"), [
    ("localhost", False), (".localhost", True), ("localhost:{port}", False),
    ("localhost:1", True), ("other.test,*", False), ("http://localhost", False),
    ("https://localhost", True), ("", True),
])
async def test_a_real_request_arrives_where_proxy_for_says(no_proxy: str,
                                                           proxied: bool) -> None:
    """What the oracle above reads from httpx's client is where a request really goes: to the
    loopback proxy, or straight to the loopback server."""
    async with _answering(b"direct") as port, _answering(b"proxy") as proxy_port:
        url = f"http://localhost:{port}/api"
        env = {"HTTP_PROXY": f"http://127.0.0.1:{proxy_port}",
               "NO_PROXY": no_proxy.format(port=port)}
        with _environment(env):
            said = proxy_for(url)
            async with httpx.AsyncClient() as client:
                reply = await client.get(url)
    assert reply.content == (b"proxy" if proxied else b"direct")
    assert said == (f"http://127.0.0.1:{proxy_port}" if proxied else None)

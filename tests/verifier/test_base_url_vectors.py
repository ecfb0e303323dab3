"""Base URLs as httpx sends them, against what we check and show (session 40).

A differential run (80,000 hostile base URLs, helper-127) compared ``check_base_url``,
``redact_url`` (logs, ``SETTINGS:``), the REST client and the push client with httpx's own
parse: no credential leaked, but seven forms were read two ways, so logs named another port or
host than the one requested, or every route went to another path (``/api/..``, a lenient
trailing ``#``), or an empty user info sent ``Authorization: Basic Og==`` on REST only. Each is
refused or read as httpx reads it now; the expectations below are httpx's parse.
"""
from __future__ import annotations

import base64
import socket
import urllib.parse

import httpx
import pytest

from verifier import ConfigurationError, JobPushClient
from verifier._http import TierHttp, check_base_url
from verifier._ids import redact_url
from verifier._settings import monitor_api_url

REFUSED = [
    ("http://[::1]8080/api", True),           # httpx: port 8080; urllib (display, Host): 80
    ("http://a[v1.x]/api", True),             # httpx: host a%5Bv1.x%5D; urllib: v1.x
    ("http://tier.example:0/api", True),      # REST to port 0, push to port 80
    ("http://tier.example:99999/api", False),
    ("http://tier.example:65536/api", False),  # one past the last port (session 41)
    ("http://tier.example:65536/api", True),
    ("http://tier.example:-1/api", False),
    ("http://tier.example/api#", False),      # httpx sends /api: every route a fragment
    ("http://tier.example/api?", False),      # ... or a query
    ("https://tier.example/a/../api", True),  # shown /a/../api, sent /api/jobs/...
    ("https://tier.example/api/..", True),    # sent /jobs/...
    ("https://[fe80::1%\u200beth0]/api", True),  # no ASCII raw_host: every request fails
    ("https://tier.example/@scope/api", True),   # a false refusal, by design ('@' after host)
]

#: Read two ways by httpx and the WHATWG parser (browsers, Node): httpx sends a backslash as
#: it is, WHATWG reads '/'. Accepted until session 44: the first was evil.example to httpx
#: (with "tier.example\\" as a user name, sent as basic auth) and tier.example to a browser.
BACKSLASHES = ["https://tier.example\\@evil.example/api", "https://tier.example/api\\x",
               "https://tier.example\\api", "http://[::1]\\:8080/api"]

#: url, strict, host and port httpx connects to, path it sends, (user, password) or None
ACCEPTED = [
    ("http://@tier.example/api", True, "tier.example", 80, "/api/jobs/abc", None),
    ("http://:@tier.example/api", True, "tier.example", 80, "/api/jobs/abc", None),
    ("https://user:p%40ss@tier.example/api", True, "tier.example", 443, "/api/jobs/abc",
     ("user", "p@ss")),
    ("https://user:p@ss@tier.example/api", True, "tier.example", 443, "/api/jobs/abc",
     ("user", "p@ss")),
    ("HTTPS://TIER.Example:443/api", True, "tier.example", 443, "/api/jobs/abc", None),
    # A scheme's own port written out: httpx drops it (port None), urllib keeps it; the two
    # agree only if each scheme's default is the right one (mutation testing, session 41).
    ("https://tier.example:443/api", True, "tier.example", 443, "/api/jobs/abc", None),
    ("http://tier.example:80/api", True, "tier.example", 80, "/api/jobs/abc", None),
    ("http://tier.example:65535/api", True, "tier.example", 65535, "/api/jobs/abc", None),
    ("http://tier.example:65535/api", False, "tier.example", 65535, "/api/jobs/abc", None),
    ("http://tier.example:443/api", True, "tier.example", 443, "/api/jobs/abc", None),
    ("https://tier.example:80/api", True, "tier.example", 80, "/api/jobs/abc", None),
    ("http://[::1]:8080/api", True, "::1", 8080, "/api/jobs/abc", None),
    ("http://[fe80::1%eth0]:8080/api", True, "fe80::1%eth0", 8080, "/api/jobs/abc", None),
    ("https://b\u00fccher.example/api", True, "xn--bcher-kva.example", 443, "/api/jobs/abc", None),
    ("https://tier.example./api", True, "tier.example.", 443, "/api/jobs/abc", None),
    ("http://10.0.0.1:08080/api", True, "10.0.0.1", 8080, "/api/jobs/abc", None),
    ("https://tier.example/api/%2e%2e", True, "tier.example", 443, "/api/%2e%2e/jobs/abc", None),
    ("http://tier.example:+80/api", False, "tier.example", 80, "/api/jobs/abc", None),
    ("https://tier.example/api/", True, "tier.example", 443, "/api/jobs/abc", None),
]


@pytest.mark.parametrize(("url", "strict"), REFUSED)
def test_a_url_read_two_ways_is_refused(url: str, strict: bool) -> None:
    with pytest.raises(ConfigurationError):
        check_base_url(url, "X_URL", strict=strict)


@pytest.mark.parametrize(("url", "strict", "host", "port", "path", "credentials"), ACCEPTED)
def test_accepted_urls_are_requested_where_shown(
        url: str, strict: bool, host: str, port: int, path: str,
        credentials: tuple[str, str] | None) -> None:
    base = check_base_url(url, "X_URL", strict=strict)
    wire = httpx.URL(base)  # the expectation is httpx's own parse
    assert (wire.raw_host.decode(), wire.port or {"http": 80, "https": 443}[wire.scheme]) == (
        host, port)
    tier = TierHttp("t", base, variable="X_URL", client=httpx.AsyncClient(), strict_url=strict)
    request = httpx.Request("GET", tier.base_url + "/jobs/abc")
    if tier._auth is not None:
        request = next(tier._auth.auth_flow(request))
    assert request.url.raw_host.decode() == host
    assert (request.url.port or {"http": 80, "https": 443}[request.url.scheme]) == port
    assert request.url.raw_path.decode() == path
    assert not request.url.userinfo  # httpx logs the request URL at INFO
    expected_auth = None if credentials is None else "Basic " + base64.b64encode(
        ":".join(credentials).encode()).decode()
    assert request.headers.get("authorization") == expected_auth
    shown = urllib.parse.urlsplit(redact_url(base))
    assert httpx.URL(f"http://{shown.netloc}").raw_host.decode() == host
    if strict:  # the lenient reading keeps ":+80" as written: no reader but int() takes it
        assert (shown.port or {"http": 80, "https": 443}[shown.scheme]) == port
    if credentials and len(credentials[1]) > 3:
        assert credentials[1] not in redact_url(base)
    if strict:
        push = JobPushClient(base)
        assert (push._host, push._port) == (host, port)
        assert push._target == path[: -len("/jobs/abc")] + "/ws/jobs"
        assert (dict(push._headers).get(b"Authorization", b"").decode() or None) == expected_auth


@pytest.mark.parametrize("url", ["https://tier.example/x/../api", "https://tier.example/./api",
                                 "https://tier.example/api/.."])
def test_settings_refuse_dot_segments_before_any_client_is_built(url: str) -> None:
    """``monitor_api_url`` checked that the path ends in ``/api``: "/x/../api" passed it and
    httpx would request "/api" while every log named "/x/../api"."""
    with pytest.raises(ConfigurationError) as info:
        monitor_api_url("GATEWAY_MONITOR_BASE_URL", url)
    assert info.value.variable == "GATEWAY_MONITOR_BASE_URL"
    assert "'..' path segments" in str(info.value)


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("url", BACKSLASHES)
def test_a_backslash_is_refused_by_the_clients_and_the_settings(url: str, strict: bool) -> None:
    with pytest.raises(ConfigurationError, match="backslash") as info:
        check_base_url(url, "X_URL", strict=strict)
    assert info.value.variable == "X_URL"
    with pytest.raises(ConfigurationError, match="backslash"):
        monitor_api_url("GATEWAY_MONITOR_BASE_URL", url)
    with pytest.raises(ConfigurationError, match="backslash"):
        JobPushClient(url)


def test_a_zone_id_is_taken_as_the_resolver_reads_it() -> None:
    """httpx hands the host to the resolver as it is written. ``%eth0`` is the zone the
    resolver knows (its interface index becomes the address's scope id); ``%25eth0``, RFC 6874's
    spelling, is an interface named ``25eth0``, so every connection would fail: refused at
    start-up with the spelling to use instead."""
    index, name = socket.if_nameindex()[0]
    scope = socket.getaddrinfo(f"fe80::1%{name}", 80, proto=socket.IPPROTO_TCP)[0][4][3]
    assert scope == index
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo(f"fe80::1%25{name}", 80, proto=socket.IPPROTO_TCP)
    good = f"http://[fe80::1%{name}]:8080/api"
    assert httpx.URL(check_base_url(good, "X_URL", strict=True)).raw_host.decode() == (
        f"fe80::1%{name}")
    assert JobPushClient(good)._host == f"fe80::1%{name}"
    for strict in (True, False):
        with pytest.raises(ConfigurationError, match=r"\[fe80::1%eth0\]") as info:
            check_base_url(f"http://[fe80::1%25{name}]:8080/api", "X_URL", strict=strict)
        assert f"%25{name}" not in str(info.value)  # the value is never repeated
    with pytest.raises(ConfigurationError, match="zone id"):
        monitor_api_url("GATEWAY_MONITOR_BASE_URL", f"http://[fe80::1%25{name}]:8080/api")

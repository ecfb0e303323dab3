"""Tests of :mod:`verifier._http`, the plumbing shared by the gateway, aid and monitor clients.

The clients' own suites check what each status means for them; these pin the shared rules and
the two readings (lenient for the gateway and aid, strict for the monitor) that the flags keep
apart, so that neither client's behaviour can drift when the other's changes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from verifier import (
    ConfigurationError,
    GatewayMonitorService,
    MalformedAnswer,
    TierRateLimited,
    TierTimeout,
    TierUnavailable,
    VerifierError,
)
from verifier._http import (
    MAX_BODY_BYTES,
    Answer,
    TierHttp,
    check_base_url,
    parse_retry_after,
    proxy_for,
    raise_for_status,
    read_json,
    retry_after,
    server_message,
    transport_errors,
    try_json,
)

BASE = "https://tier.test/api"


class _EndlessStream(httpx.AsyncByteStream):
    """An endless body; counts what was pulled to prove the client stops early (or never reads)."""

    def __init__(self) -> None:
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            self.pulled += 65536
            yield b" " * 65536


class _StalledStream(httpx.AsyncByteStream):
    """A body that starts and then never finishes (a slow-drip server)."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"{"
        await asyncio.Event().wait()


def _answer(retry: str | None) -> Answer:
    # As bytes, as they come off the wire (httpx reads UTF-8 header values as UTF-8).
    headers = httpx.Headers({} if retry is None else {"Retry-After": retry.encode()})
    return Answer(429, headers, b"")


# --------------------------------------------------------------------------- base URL


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://tier.test/api/", "https://tier.test/api"),
        ("  http://tier.test  ", "http://tier.test"),
        ("https://tier.test:8443/a", "https://tier.test:8443/a"),
    ],
)
def test_lenient_base_url_is_stripped(url: str, expected: str) -> None:
    assert check_base_url(url, "GATEWAY_URL") == expected


@pytest.mark.parametrize(
    "url",
    [
        " https://tier.test/api",
        "https://tier.test/api\n",
        "https://tier.test/a pi",
        "https://tier.test:port/api",
        "https://tier.test/api?",
        "https://tier.test/api#",
        "https://tier.test/a\x01",
        "https://tier.test/a\x7f",
        "https://tier.test/a\x80",
        "https://tier.test/api\x9f",
    ],
)
def test_strict_base_url_refuses_what_the_lenient_reading_repairs_or_lets_through(
    url: str,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_base_url(url, "GATEWAY_MONITOR_BASE_URL", strict=True)
    assert info.value.variable == "GATEWAY_MONITOR_BASE_URL"


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize(
    "url", ["", "   ", None, "ftp://h/x", "https://", "https://u:s3cr3t@h/?token=s3cr3t"]
)
def test_base_url_errors_never_repeat_the_value(url: Any, strict: bool) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_base_url(url, "X_URL", strict=strict)
    assert "s3cr3t" not in str(info.value)


# --------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("raw", "lenient", "strict"),
    [
        ("7", 7.0, 7.0),
        (" 1.5 ", 1.5, 1.5),
        # "Come back now" is a hint too (mutation testing, session 36: 0 and fractions below
        # one second could be read as no hint unnoticed).
        ("0", 0.0, 0.0),
        ("0.5", 0.5, 0.5),
        ("1e3", 1000.0, None),
        ("-3", None, None),
        ("inf", None, None),
        ("soon", None, None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, 0.0),
        (None, None, None),
    ],
)
def test_retry_after_readings(raw: str | None, lenient: float | None, strict: float | None) -> None:
    """Lenient: the gateway's and aid's historical reading; strict: RFC 9110, the monitor's."""
    assert retry_after(_answer(raw)) == lenient
    assert retry_after(_answer(raw), http_date=True) == strict


def test_a_future_http_date_is_honoured_by_every_tier() -> None:
    """The gateway's and aid's reading ignored dates: a date in 2099 read as no hint."""
    for http_date in (False, True):
        hint = retry_after(_answer("Thu, 01 Jan 2099 00:00:00 GMT"), http_date=http_date)
        assert hint is not None and hint > 365 * 24 * 3600


def test_parse_retry_after_counts_from_now() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:01:00 GMT", now=now) == 60.0
    assert parse_retry_after("\u0663", now=now) is None  # non-ASCII digits are not delay-seconds


#: Verdicts by RFC 9110 (a grammar written from its ABNF) and by at least one real reader,
#: named per line (u: urllib3 2.8, w: werkzeug 3.1, N: the Node clients' expressions in undici,
#: got, ky and axios-retry), from a differential run of 43,657 values (helper-126, session 40;
#: its harness is described in README). Now is 2026-12-07T00:00:00Z. The leap seconds were
#: read as no hint (Python's datetime refuses second 60).
_NOW = datetime(2026, 12, 7, tzinfo=UTC)
_RFC_VECTORS = [
    ("120", 120.0), ("0", 0.0), ("00120", 120.0), (" 7\t", 7.0),                     # all
    ("-3", None), ("+3", None), ("1e3", None), ("inf", None), ("", None),            # u
    ("5, 10", None), ("1_0", None), ("\uff11\uff12", None), ("\u0663", None),         # u, N
    ("Mon, 07 Dec 2026 00:01:00 GMT", 60.0), ("Mon, 07 Dec 2026 00:00:01 GMT", 1.0),  # all
    ("Tue, 07 Dec 2026 00:01:00 GMT", 60.0),      # a wrong weekday is not read: all
    ("Sun, 06 Dec 2026 23:59:00 GMT", 0.0),                                           # u
    ("Mon, 07 Dec 2026 00:00:60 GMT", 60.0), ("Thu, 31 Dec 2026 23:59:60 GMT", 2160000.0),
    ("Monday, 07-Dec-26 00:00:60 GMT", 60.0), ("Thu Dec 31 23:59:60 2026", 2160000.0),  # u
    ("Mon, 07 Dec 2026 24:00:00 GMT", None), ("Wed, 30 Feb 2027 00:00:00 GMT", None),
    ("Fri, 01 Jan 10000 00:00:00 GMT", None),                                         # w
    ("Mon, 07 Dec 2026 00:60:00 GMT", None), ("Mon, 32 Dec 2026 00:00:00 GMT", None),  # w, N
    ("Mon, 07 Dec 2026 00:01:00.5 GMT", None), ("2026-12-07T00:01:00Z", None),        # u, w
    ("Monday, 07-Dec-26 00:01:00 GMT", 60.0), ("Mon Dec  7 00:01:00 2026", 60.0),
    ("Mon Dec 07 00:01:00 2026", 60.0),                                               # all
    ("Sunday, 06-Dec-26 23:59:00 GMT", 0.0), ("Sun Dec  6 23:59:00 2026", 0.0),       # u
]


def _until(*when: int) -> float:
    return (datetime(*when, tzinfo=UTC) - _NOW).total_seconds()


@pytest.mark.parametrize(("raw", "seconds"), [
    # RFC 9110 §5.6.7: a two-digit year that would put the date more than 50 years ahead is
    # the latest past year with those digits; the date parser (and urllib3, werkzeug and the
    # Node clients) put 69-99 in the 1900s whatever the date, so these read 1970 and 1976,
    # no wait at all, until session 44.
    ("Thursday, 01-Jan-70 00:00:00 GMT", _until(2070, 1, 1)),
    ("Monday, 07-Dec-76 00:00:00 GMT", _until(2076, 12, 7)),   # 50 years to the second
    ("Tuesday, 08-Dec-76 00:00:00 GMT", 0.0),                  # a day more: 1976
    ("Mon, 07 Dec 76 00:00:00 GMT", _until(2076, 12, 7)),      # RFC 822's two digits too
    ("Wednesday, 31-Dec-68 00:00:00 GMT", _until(2068, 12, 31)),
    ("Sunday, 06-Nov-94 08:49:37 GMT", 0.0),                   # the RFC's example: 1994
    ("Tuesday, 29-Feb-00 00:00:00 GMT", 0.0),                  # 2100 has no 29 February
])
def test_a_two_digit_year_is_read_by_the_fifty_year_rule(raw: str, seconds: float) -> None:
    assert parse_retry_after(raw, now=_NOW) == seconds


def test_the_fifty_year_rule_looks_ahead_of_the_century_too() -> None:
    """In 2090, "10" is 2110 (twenty years on), not 2010; in 1960, "00" is 2000 (forty)."""
    late = datetime(2090, 1, 1, tzinfo=UTC)
    assert parse_retry_after("Wednesday, 01-Jan-10 00:00:00 GMT", now=late) == (
        datetime(2110, 1, 1, tzinfo=UTC) - late).total_seconds()
    early = datetime(1960, 1, 1, tzinfo=UTC)
    assert parse_retry_after("Tuesday, 29-Feb-00 00:00:00 GMT", now=early) == (
        datetime(2000, 2, 29, tzinfo=UTC) - early).total_seconds()


@pytest.mark.parametrize(("raw", "seconds"), _RFC_VECTORS)
def test_retry_after_is_read_as_rfc_9110_and_its_readers_read_it(raw: str,
                                                                 seconds: float | None) -> None:
    assert parse_retry_after(raw, now=_NOW) == seconds


@pytest.mark.parametrize(("raw", "seconds"), [
    # The delays of the RFC's vectors (dates depend on the clock here), but for what Number()
    # reads and the RFC does not: a sign, an exponent, a bare fraction.
    *((raw, seconds) for raw, seconds in _RFC_VECTORS
      if not any(c.isalpha() for c in raw) and raw not in ("+3",)),
    ("inf", None), ("+3", 3.0), ("1e3", 1000.0), (".5", 0.5),
    # Zero is a delay too, in each of Number()'s spellings (mutation testing, session 41).
    ("0e0", 0.0), ("+0", 0.0), ("-0", 0.0), ("-1", None)])
def test_the_gateways_reading_takes_only_what_javascripts_number_takes(
        raw: str, seconds: float | None) -> None:
    """The gateway's and aid's lenient reading (float(), as they always had it) read digits of
    other scripts ("１２", "٣") and underscores ("1_0") as delays, which no client reads
    (Node's Number() does not): "24１0576666228" was 2.4e12 s. What Number() takes stays: a
    sign, an exponent, a bare fraction."""
    assert retry_after(_answer(raw)) == seconds


def test_a_delay_too_long_for_a_float_is_the_longest_wait_not_no_hint() -> None:
    """309 digits and more are inf as a float, which was read as no hint at all: the encoder
    retried at once a server that had said "a very long time" (RFC 9111 §1.2.2 reads an
    overlong delta-seconds as the largest value it can hold; urllib3 and undici wait)."""
    for http_date in (False, True):
        hint = retry_after(_answer("9" * 400), http_date=http_date)
        assert hint is not None and hint >= 600


# --------------------------------------------------------------------------- transport errors


@pytest.mark.parametrize(
    ("raised", "mapped"),
    [
        (httpx.ReadTimeout("t"), TierTimeout),
        (httpx.ConnectTimeout("t"), TierTimeout),
        (TimeoutError(), TierTimeout),
        (httpx.ConnectError("connect to u:hunter2@tier.test"), TierUnavailable),
        (httpx.RemoteProtocolError("p"), TierUnavailable),
        (httpx.DecodingError("d"), MalformedAnswer),
    ],
)
def test_transport_errors_are_mapped_and_not_chained(
    raised: Exception, mapped: type[Exception]
) -> None:
    with pytest.raises(mapped) as info, transport_errors("monitor", "GET /jobs/x", 2.0):
        raise raised
    assert type(info.value) is mapped
    assert "GET /jobs/x" in str(info.value) and "hunter2" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_tier_errors_pass_through_unchanged() -> None:
    limited = TierRateLimited("monitor", "HTTP 429", 3.0)
    with pytest.raises(TierRateLimited) as info, transport_errors("monitor", "GET /x", 2.0):
        raise limited
    assert info.value is limited


# --------------------------------------------------------------------------- JSON bodies


@pytest.mark.parametrize(
    "body",
    [
        b'{"status":"assigned","status":"queued"}',
        b'{"progress":{"pct":NaN}}',
        b'{"pct":-Infinity}',
        b'{"id":"j"',
        b'{"id":"\xff"}',
        b'{"n":' + b"1" * 5000 + b"}",
    ],
    ids=["duplicate-key", "nan", "infinity", "truncated", "not-utf8", "huge-int"],
)
def test_bodies_that_are_not_strict_json_are_malformed_answers(body: bytes) -> None:
    answer = Answer(200, httpx.Headers(), body)
    expected = r"^monitor: answer is not JSON \(HTTP 200\)$"
    with pytest.raises(MalformedAnswer, match=expected) as info:
        read_json(answer, "monitor")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert try_json(answer) is None  # error bodies: no message rather than a wrong one


def test_plain_json_and_empty_bodies() -> None:
    assert read_json(Answer(200, httpx.Headers(), b'{"a":[1,2.5,null]}'), "aid") == {
        "a": [1, 2.5, None]
    }
    with pytest.raises(MalformedAnswer, match="empty answer"):
        read_json(Answer(200, httpx.Headers(), b" \n"), "gateway")
    assert read_json(Answer(200, httpx.Headers(), b""), "gateway", empty={}) == {}
    # Only JSON's whitespace makes a body empty: a form feed is no JSON and no empty answer
    # (bytes.strip() took it for one; session 39, a differential test against Node).
    with pytest.raises(MalformedAnswer, match="not JSON"):
        read_json(Answer(200, httpx.Headers(), b"\x0c"), "gateway", empty={})


@pytest.mark.parametrize(("body", "said"), [
    ({"error": "gone", "message": "gone"}, "gone"),
    ({"error": "", "message": "gone"}, "gone"),
    ({"error": 5, "message": "gone"}, "gone"),
    ({"error": ["a"], "message": {"b": 1}}, "no message"),
    ({"error": "e" * 200}, "e" * 200),
    ({"error": "e" * 201}, "e" * 200 + "..."),
    ({"message": "a\nb\x1b[2J"}, "a b [2J"),
    ("not a mapping", "no message"),
])
def test_a_server_message_is_its_string_fields_printable_and_at_most_200_characters(
        body: Any, said: str) -> None:
    """What a server said reaches logs and errors: only its non-empty string fields, once
    each, controls blanked, cut after 200 characters (mutation testing, session 41: a
    non-string field was joined, raising TypeError, and a 200-character one was cut)."""
    assert server_message(body) == said


@pytest.mark.parametrize(("status", "raised"), [
    (100, "HTTP 100"), (199, "HTTP 199"), (200, None), (204, None), (299, None),
    (300, "unexpected redirect (HTTP 300)"), (301, "unexpected redirect (HTTP 301)"),
    (399, "unexpected redirect (HTTP 399)"), (400, "HTTP 400"), (401, "HTTP 401"),
    (429, "rate limited"),
    (503, "HTTP 503"),
])
def test_only_a_2xx_status_is_an_answer(status: int, raised: str | None) -> None:
    """Every status outside 200-299 is a failure the caller did not give a meaning to, each
    edge included (mutation testing, session 41: 1xx and 300 passed as answers, unseen)."""
    answer = Answer(status, httpx.Headers(), b'{"error": "said"}')
    if raised is None:
        raise_for_status(answer, "monitor", "GET /x")
        return
    with pytest.raises(TierUnavailable, match=re.escape(raised)) as failed:
        raise_for_status(answer, "monitor", "GET /x")
    assert isinstance(failed.value, TierRateLimited) == (status == 429)
    assert ("redirect" in str(failed.value)) == (300 <= status < 400)


# --------------------------------------------------------------------------- TierHttp


@pytest.mark.asyncio
async def test_declared_oversized_body_is_refused_unread() -> None:
    stream = _EndlessStream()
    router = respx.Router(base_url=BASE)
    router.get("/big").mock(
        return_value=httpx.Response(
            200, headers={"content-length": str(MAX_BODY_BYTES + 1)}, stream=stream
        )
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) as c:
        http = TierHttp("gateway", BASE, variable="GATEWAY_URL", client=c)
        with pytest.raises(MalformedAnswer, match="larger than"):
            await http.send("GET", "/big")
    assert stream.pulled == 0
    # Leading zeros make a long header, not a large body.
    router.get("/small").mock(return_value=httpx.Response(
        200, headers={"content-length": "0" * 30 + "2"}, content=b"{}"))
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) as c:
        http = TierHttp("gateway", BASE, variable="GATEWAY_URL", client=c)
        assert (await http.send("GET", "/small")).content == b"{}"


@pytest.mark.asyncio
async def test_a_content_length_of_thousands_of_digits_is_too_large_not_an_error() -> None:
    """``int()`` refuses over 4,300 digits with a ValueError, which escaped the tier errors
    through transports that do not check the header first (security review, session 16)."""
    stream = _EndlessStream()
    router = respx.Router(base_url=BASE)
    router.get("/big").mock(
        return_value=httpx.Response(200, headers={"content-length": "9" * 5000}, stream=stream))
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) as c:
        http = TierHttp("gateway", BASE, variable="GATEWAY_URL", client=c)
        with pytest.raises(MalformedAnswer, match="larger than"):
            await http.send("GET", "/big")
    assert stream.pulled == 0


@pytest.mark.asyncio
async def test_exchange_leaves_the_body_unread_and_closes_it() -> None:
    stream = _EndlessStream()
    router = respx.Router(base_url=BASE)
    router.get("/down").mock(return_value=httpx.Response(503, stream=stream))
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) as c:
        http = TierHttp("monitor", BASE, variable="X_URL", client=c)
        async with http.exchange("GET", "/down") as response:
            assert response.status_code == 503
        assert response.is_closed
    assert stream.pulled == 0


@pytest.mark.asyncio
async def test_hard_deadline_bounds_the_whole_exchange() -> None:
    router = respx.Router(base_url=BASE)
    router.get("/slow").mock(return_value=httpx.Response(200, stream=_StalledStream()))
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) as c:
        http = TierHttp("monitor", BASE, variable="X_URL", client=c, timeout=0.05,
                        hard_deadline=True)
        with pytest.raises(TierTimeout, match="no complete answer"):
            await http.send("GET", "/slow")


# --------------------------------------------------------------------------- proxies


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment without proxy variables (either case), for a test to set its own."""
    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(name)
    return monkeypatch


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(("env", "url", "expected"), [
    ({}, "https://tier.test/api", None),
    ({"HTTPS_PROXY": "http://u:s3cret@proxy.test:3128"}, "https://tier.test/api",
     "http://proxy.test:3128"),
    ({"https_proxy": "proxy.test:3128"}, "https://tier.test/api", "http://proxy.test:3128"),
    ({"HTTPS_PROXY": "http://proxy.test:3128"}, "http://tier.test/api", None),
    ({"ALL_PROXY": "socks5://u:s3cret@proxy.test:1080"}, "http://tier.test/api",
     "socks5://proxy.test:1080"),
    ({"ALL_PROXY": "http://proxy.test:3128", "NO_PROXY": "tier.test"}, "https://tier.test/api",
     None),
    ({"ALL_PROXY": "http://proxy.test:3128", "NO_PROXY": "other.test"},
     "https://tier.test/api", "http://proxy.test:3128"),
])
def test_proxy_for_names_the_proxy_httpx_takes_from_the_environment_redacted(
    no_proxy_env: pytest.MonkeyPatch, env: dict[str, str], url: str, expected: str | None
) -> None:
    for name, value in env.items():
        no_proxy_env.setenv(name, value)
    assert proxy_for(url) == expected


_PROXY_SECRET = "Pr0xyS3cret"


_ENCODE = "must be percent-encoded"
_SCHEME = "must be an http, https, socks5 or socks5h URL"


@pytest.mark.parametrize(("env", "named", "says"), [
    # An unencoded '/', '#' or '?' in the password: httpx says "Invalid port: '<password>'".
    ({"HTTPS_PROXY": f"http://user:{_PROXY_SECRET}/x@proxy.test:3128"}, "HTTPS_PROXY", _ENCODE),
    ({"https_proxy": f"http://user:{_PROXY_SECRET}#x@proxy.test:3128"}, "https_proxy", _ENCODE),
    ({"ALL_PROXY": f"ftp://user:{_PROXY_SECRET}@proxy.test:21"}, "ALL_PROXY", _SCHEME),
    pytest.param({"ALL_PROXY": f"socks5://user:{_PROXY_SECRET}@proxy.test:1080",
                  "HTTP_PROXY": "http://proxy.test:3128"}, "ALL_PROXY", "needs the socksio",
                 marks=pytest.mark.skipif(importlib.util.find_spec("socksio") is not None,
                                          reason="socksio is installed: SOCKS works")),
], ids=["slash-in-password", "hash-in-password-lowercase", "unknown-scheme", "socks-no-socksio"])
def test_a_proxy_httpx_cannot_use_is_a_configuration_error_naming_only_the_variable(
    no_proxy_env: pytest.MonkeyPatch, env: dict[str, str], named: str, says: str
) -> None:
    """httpx's InvalidURL escaped the client's constructor: ``run`` crashed with a traceback
    quoting part of the proxy password (security review). Each problem is named with its
    own fix, and a SOCKS proxy without socksio names that variable alone, not a good proxy
    beside it (mutation testing, session 41: both passed unchecked)."""
    for name, value in env.items():
        no_proxy_env.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        TierHttp("gateway", BASE, variable="GATEWAY_URL")
    assert info.value.variable == named
    assert says in info.value.problem
    assert _PROXY_SECRET not in str(info.value)
    # Not chained, not even as the context: httpx's message is the one with the password.
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_a_bad_proxy_variable_is_named_alone_beside_a_good_one(
    no_proxy_env: pytest.MonkeyPatch
) -> None:
    """Naming every proxy variable set sent operators to the good one too."""
    no_proxy_env.setenv("HTTP_PROXY", "http://proxy.test:3128")
    no_proxy_env.setenv("HTTPS_PROXY", f"http://user:{_PROXY_SECRET}/x@proxy.test:3128")
    # Neither an empty proxy variable (unset, for httpx) nor a variable that is no proxy
    # variable is named, whatever its value (mutation testing, session 41).
    no_proxy_env.setenv("ALL_PROXY", "")
    no_proxy_env.setenv("SPK_NOT_A_PROXY", f"http://user:{_PROXY_SECRET}/x@proxy.test:3128")
    with pytest.raises(ConfigurationError) as info:
        TierHttp("gateway", BASE, variable="GATEWAY_URL")
    assert info.value.variable == "HTTPS_PROXY"


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_unusable_ca_certificates_are_a_configuration_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None
) -> None:
    """SSL_CERT_FILE naming a missing file (or not PEM) was a raw FileNotFoundError/SSLError."""
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    with pytest.raises(ConfigurationError) as info:
        TierHttp("monitor", BASE, variable="GATEWAY_MONITOR_BASE_URL")
    assert info.value.variable == "SSL_CERT_FILE"
    assert str(path) not in str(info.value)


def test_a_client_passed_in_is_used_whatever_the_environment_says(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    """The environment is the owner's business when the owner made the client."""
    client = httpx.AsyncClient()
    no_proxy_env.setenv("HTTPS_PROXY", f"http://user:{_PROXY_SECRET}/x@proxy.test:3128")
    assert TierHttp("gateway", BASE, variable="GATEWAY_URL", client=client).base_url == BASE


@pytest.mark.asyncio
@pytest.mark.parametrize("proxied", [True, False])
async def test_a_connect_error_through_a_proxy_names_the_proxy(
    no_proxy_env: pytest.MonkeyPatch, proxied: bool
) -> None:
    """httpx honours HTTP_PROXY silently: a proxy that refused read as the server refusing,
    with nothing naming the proxy (operator review). Credentials stay out of the message."""
    port = _closed_port()
    if proxied:
        no_proxy_env.setenv("HTTP_PROXY", f"http://u:s3cret@127.0.0.1:{port}")
        base = "http://tier.test/api"
    else:
        base = f"http://127.0.0.1:{port}/api"
    http = TierHttp("gateway", base, variable="GATEWAY_URL", timeout=5)
    try:
        with pytest.raises(TierUnavailable) as info:
            await http.send("GET", "/x")
    finally:
        await http.aclose()
    message = str(info.value)
    assert ("via proxy" in message) is proxied
    if proxied:
        assert message.endswith(f"via proxy http://127.0.0.1:{port}")
    assert "s3cret" not in message


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and link not in seen:
        seen.append(link)
        link = link.__cause__ or link.__context__
    return seen


@pytest.mark.asyncio
@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"),
                                     httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("x")],
                         ids=["connect", "timeout", "protocol"])
async def test_a_transport_failure_keeps_no_request_with_credentials(failure: Exception) -> None:
    """The tier error a failed exchange raises chains nothing: httpx's exception holds the
    request, whose Authorization header carries the base URL's password (``raise ... from
    None`` only hides it from tracebacks; adversarial review, session 22)."""

    def refuse(request: httpx.Request) -> httpx.Response:
        failure.request = request  # as httpx's transports attach it
        raise failure

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as c:
        http = TierHttp("monitor", "https://ops:S3cretPassw0rd@monitor.test/api",
                        variable="GATEWAY_MONITOR_BASE_URL", client=c)
        with pytest.raises(VerifierError) as caught:
            await http.send("GET", "/health")
        monitor = GatewayMonitorService("https://ops:S3cretPassw0rd@monitor.test/api",
                                        client=c)
        with pytest.raises(VerifierError) as from_monitor:
            await monitor.get_job_details("job-1")
    for error in (caught.value, from_monitor.value):
        assert _chain(error) == [error]

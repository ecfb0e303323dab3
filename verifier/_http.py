"""HTTP plumbing shared by the REST clients: legacy gateway, Gateway Aid and Gateway Monitor.

The three services are JSON over HTTP, all have been seen down for hours (502/503/504), and the
two writable ones can commit a write whose reply never arrives. What those failures *mean* is
decided once, here:

* no reply in time → :class:`~verifier.TierTimeout` (for a write the outcome is unknown: the
  request may still land, bound ``G`` of the timing model);
* connection refused/reset, DNS failure, a redirect, 5xx → :class:`~verifier.TierUnavailable`;
* 429 → :class:`~verifier.TierRateLimited` with the server's ``Retry-After`` seconds;
* a body that is not the JSON we expect, or larger than :data:`MAX_BODY_BYTES` →
  :class:`~verifier.MalformedAnswer`;
* a request that cannot even be built (a host name httpx cannot encode, text that is not
  valid Unicode) → :class:`~verifier.TierUnavailable`: nothing was sent, nothing is known.

Bodies are asked for uncompressed (``Accept-Encoding: identity``) and read raw: a compressed
body is inflated here, a bounded step at a time, so the cap applies to what is *produced*. A
400 KB gzip body can inflate to hundreds of MiB; httpx's own decoder inflates each chunk whole
before any size check could refuse it.

None of these is ever an answer about the job. What a 404, 409 or 500 means differs by service
and by route (a refused ``acceptJob`` is a bare 500; the monitor's 404 is "job not found" only
with its own body), so those decisions stay in the clients, which call :func:`raise_for_status`
only for what is left. Exception messages never carry credentials: the gateway and aid name the
route, the monitor the URL through :func:`~verifier._ids.redact_url`; transport exceptions are
not chained (their text and request objects may hold the raw URL). What the server said appears
only as a short, sanitised excerpt.

Two readings are stricter for the monitor than for the older clients, by a flag each, so that
the gateway and aid keep exactly the behaviour their callers were written against:
``check_base_url(strict=True)`` and ``retry_after(http_date=True)``. ``TierHttp(hard_deadline=
True)`` bounds the whole exchange rather than each socket operation: every client sets it (the
gateway and aid since session 16, when a dripping gateway held a shutdown for minutes).

A proxy from the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, minus
``NO_PROXY``) is honoured, as httpx does by default: nodes behind a corporate proxy need it.
It is made visible: :func:`proxy_for` names the proxy a URL goes through (redacted),
and a transport failure through one says ``via proxy <url>``, since the server it names was
never reached (operator review: a refused proxy read as a refused server). A proxy or CA
certificates httpx cannot use are a :class:`~verifier.ConfigurationError` naming the variable,
raised when a client is made (:func:`_client_from_environment`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import math
import os
import re
import sys
import unicodedata
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
from httpx._utils import URLPattern, get_environment_proxies  # see environment_proxy

from ._clock import AlarmFactory, no_alarm
from ._errors import (
    ConfigurationError,
    MalformedAnswer,
    RequestNotSent,
    TierRateLimited,
    TierTimeout,
    TierUnavailable,
    VerifierError,
)
from ._ids import quote_segment, redact_url, userinfo_misplaced, validate_job_id
from ._strict_json import NotStrictJson, strict_loads
from ._text import conceal

__all__ = [
    "MAX_BODY_BYTES",
    "Answer",
    "TierHttp",
    "check_base_url",
    "check_host_sendable",
    "credentials",
    "environment_proxy",
    "error_code",
    "is_gateway_error",
    "is_service_error",
    "job_places",
    "job_segment",
    "names_another_job",
    "parse_retry_after",
    "positive_seconds",
    "proxy_for",
    "raise_for_status",
    "read_capped",
    "read_json",
    "refuse_dot_segments",
    "refuse_misplaced_userinfo",
    "retry_after",
    "sending_by",
    "server_message",
    "transport_errors",
    "try_json",
    "unchained",
]

#: Real answers are a few kilobytes; a larger body is not an answer we can trust or afford.
MAX_BODY_BYTES: Final = 1024 * 1024
_MESSAGE_LIMIT: Final = 200
#: RFC 9110 delay-seconds (digits), tolerating a decimal fraction.
_DELAY_SECONDS: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
#: An HTTP-date's time-of-day at a leap second (RFC 9110 §5.6.7: "00:00:00 - 23:59:60").
_LEAP_SECOND: Final = re.compile(r"\b([0-9]{2}:[0-9]{2}):60\b")
#: A date whose year has two digits: RFC 850's ``06-Nov-94`` (and RFC 822's ``06 Nov 94``,
#: which the date parser reads too).
_TWO_DIGIT_YEAR: Final = re.compile(r"\b[0-9]{1,2}[- ][A-Za-z]{3}[- ][0-9]{2}(?![0-9])")
#: Sent with every request: we read bodies raw, and inflate only what :func:`read_capped` can
#: inflate within the cap.
IDENTITY_ENCODING: Final = {"Accept-Encoding": "identity"}
#: Sent with every request too: an answer a cache kept is older than the tier's own lag, which
#: no bound of the timing model covers (Δ is the monitor's lag behind the database, not a
#: proxy's behind the monitor: the client honours ``HTTP_PROXY``). A review, 2026-12-05.
NO_CACHE: Final = {"Cache-Control": "no-cache"}
#: Content codings :func:`read_capped` inflates (both zlib streams: ``deflate`` is the zlib
#: format, RFC 9110 §8.4.1.2); any other coding is refused as malformed.
_INFLATABLE: Final = frozenset({"gzip", "x-gzip", "deflate"})
#: The most raw bytes read for one body: the cap, plus room for a compressed body's framing
#: (compressing incompressible data adds a little).
_RAW_LIMIT: Final = MAX_BODY_BYTES + 64 * 1024
#: The environment variables httpx takes a proxy from (``NO_PROXY`` only excludes hosts).
_PROXY_VARIABLES: Final = ("ALL_PROXY", "HTTPS_PROXY", "HTTP_PROXY")


@dataclass(frozen=True, slots=True)
class Answer:
    """A fully read reply: status, headers and a body of at most :data:`MAX_BODY_BYTES`."""

    status_code: int
    headers: httpx.Headers
    content: bytes


def job_segment(job_id: object) -> str:
    """Validate ``job_id`` and encode it as exactly one URL path segment.

    ``quote_segment`` encodes ``/``, ``?``, ``#`` and ``%``; ``.`` and ``..``, which httpx
    (RFC 3986 §5.2.4) would remove from the path and so send to a *different route*, are
    already refused by :func:`~verifier._ids.validate_job_id`, before any request is made.
    """
    return quote_segment(validate_job_id(job_id))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header, or ``None`` if it says nothing usable.

    The RFC 9110 grammar: delay-seconds (``"120"``, tolerated ``"1.5"``) or an HTTP date (a date
    in the past gives ``0.0``). Anything else (negative, ``inf``, ``1e3``, garbage) is ignored
    rather than guessed: the hint only tunes a back-off, it never decides ownership. ``now`` is
    for tests.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        seconds = float(text)
        # More digits than a float holds still says "a very long time" (RFC 9111 §1.2.2 reads
        # an overlong delta-seconds as the largest value it can represent); inf would be
        # dropped downstream as no hint at all.
        return seconds if math.isfinite(seconds) else sys.float_info.max
    when = _http_date(text)
    if when is None:
        return None
    if when.tzinfo is None:  # "-0000" parses as naive; HTTP dates are always GMT.
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    if _TWO_DIGIT_YEAR.search(text):
        century = _fifty_year_rule(when, reference)
        if century is None:
            return None
        when = century
    return max(0.0, (when - reference).total_seconds())


def _fifty_year_rule(when: datetime, reference: datetime) -> datetime | None:
    """``when``, read from a two-digit year, in the century RFC 9110 §5.6.7 says: a timestamp
    that would be more than 50 years after ``reference`` is the most recent past one with the
    same last two digits. The date parser puts 69-99 in the 1900s and 00-68 in the 2000s
    whatever the date, so in 2026 ``Thu, 01-Jan-70`` was 1970 (no wait at all) where the RFC
    says 2070 (the longest wait). ``None`` if the century it falls in has no such day (29
    February 1900)."""
    limit = _years_later(reference, 50)
    # The latest of the three centuries around ``reference`` not past the limit: in 2090,
    # "10" is 2110, twenty years on, not 2010.
    year = reference.year - reference.year % 100 + 100 + when.year % 100
    for candidate in (year, year - 100, year - 200):
        try:
            read = when.replace(year=candidate)
        except ValueError:  # 29 February of a century year that is not a leap year
            continue
        if read <= limit:
            return read
    return None


def _http_date(text: str) -> datetime | None:
    """``text`` read by :func:`email.utils.parsedate_to_datetime`, or ``None``. A leap second
    (``23:59:60``, valid in all three HTTP-date formats), which ``datetime`` refuses, is read
    as the second after ``:59``, as urllib3 reads it."""
    try:
        return email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):  # a year past C's long, too
        pass
    leap = _LEAP_SECOND.sub(r"\1:59", text, count=1)
    if leap == text:
        return None
    try:
        return email.utils.parsedate_to_datetime(leap) + timedelta(seconds=1)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _years_later(when: datetime, years: int) -> datetime:
    """The same instant ``years`` calendar years later (29 February on the 28th)."""
    try:
        return when.replace(year=when.year + years)
    except ValueError:
        return when.replace(year=when.year + years, day=28)


def retry_after(response: Answer | httpx.Response, *, http_date: bool = False) -> float | None:
    """The ``Retry-After`` hint of a 429 in seconds, or ``None``.

    ``http_date=True`` reads the header by :func:`parse_retry_after` (the monitor). Without it,
    as the gateway and aid clients always did, any finite, non-negative number in ASCII as
    JavaScript's ``Number()`` reads it (``1e3``, ``+3``, ``.5``; not ``float()``'s digits of
    other scripts or ``1_0``: a differential run against urllib3 and the Node clients,
    session 40), and an HTTP date as RFC 9110 has it (those were ignored: a server's "come
    back at 12:00" read as no hint at all; an adversarial review, session 21).
    """
    raw = response.headers.get("retry-after")
    if http_date:
        return parse_retry_after(raw)
    if raw is None:
        return None
    text = raw.strip()
    # float()'s own extras are no number a Node server or client writes or reads: digits of
    # other scripts ("١٢", "１２") and underscores ("1_0"). Digits alone are delay-seconds,
    # read as the monitor reads them (an overlong one included).
    if _DELAY_SECONDS.fullmatch(text) or not text.isascii() or "_" in text:
        return parse_retry_after(text)
    try:
        seconds = float(text)
    except ValueError:
        return parse_retry_after(text)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def try_json(response: Answer) -> Any:
    """The body as JSON, or ``None`` when it is empty, too large or not JSON (error bodies)."""
    try:
        return read_json(response, "?", empty=None)
    except MalformedAnswer:
        return None


_NO_DEFAULT: Final = object()


def read_json(response: Answer, tier: str, *, empty: Any = _NO_DEFAULT) -> Any:
    """Parse the body strictly (:mod:`verifier._strict_json`): UTF-8 JSON, no duplicate keys,
    no NaN/Infinity; any refusal is a :class:`~verifier.MalformedAnswer`.

    An empty body returns ``empty`` when the caller says an empty body has a meaning (the
    gateway's ``finishJob`` answered an empty 200 for success), else it is malformed.
    Duplicate keys are refused because two parsers could read them differently.
    """
    content = response.content
    if not content.strip(b" \t\n\r"):  # JSON's whitespace: b"\x0c" is no empty answer
        if empty is _NO_DEFAULT:
            raise MalformedAnswer(tier, f"empty answer (HTTP {response.status_code})")
        return empty
    try:
        return strict_loads(content)
    except NotStrictJson:
        raise MalformedAnswer(tier, f"answer is not JSON (HTTP {response.status_code})") from None


def _clean(text: str, secrets: tuple[str, ...] = (), limit: int = _MESSAGE_LIMIT) -> str:
    # Our credentials out first, on the whole text (conceal reads it before it cuts): cut
    # first, a credential straddling the limit left its first characters shown (an
    # adversarial review, session 45).
    text = conceal(text, secrets, limit)
    return "".join(c if c.isprintable() else " " for c in text)


def server_message(body: Any, secrets: tuple[str, ...] = ()) -> str:
    """A short, printable excerpt of what the server said (``error``/``message`` fields),
    with ``secrets`` (:attr:`TierHttp.secrets`) taken out: a server or proxy that quotes the
    request's ``Authorization`` back must not get our credential into an exception."""
    if isinstance(body, Mapping):
        parts = [body.get(k) for k in ("error", "message")]
        texts = [p for p in parts if isinstance(p, str) and p]
        if texts:
            return _clean("; ".join(dict.fromkeys(texts)), secrets)
    return "no message"


def error_code(body: Any, secrets: tuple[str, ...] = ()) -> str | None:
    """The machine-readable code of an error body: ``code`` or ``data.code`` (aid uses both)."""
    if not isinstance(body, Mapping):
        return None
    code = body.get("code")
    if isinstance(code, str) and code:
        return _clean(code, secrets)  # the server's text, as server_message: no forged log lines
    data = body.get("data")
    if isinstance(data, Mapping):
        nested = data.get("code")
        if isinstance(nested, str) and nested:
            return _clean(nested, secrets)
    return None


#: Where a write's answer may name the job it is about (``jobId``: the Node servers' own
#: spelling elsewhere; a success naming another job under it was taken for ours, session 44).
_JOB_KEYS: Final = ("job_id", "jobId", "id")


def job_places(answer: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]],
                                                   list[Mapping[str, Any]]]:
    """The envelopes of a write's answer (the top level, its ``data`` object and the
    ``result`` objects in them) and the job objects in those (``job``, and each of a ``jobs``
    list): where aid, and any gateway that says more than ``ok``, put the job a success is
    about (``data.result.job`` and ``data.jobs`` were not looked at: helper-131's review)."""
    envelopes: list[Mapping[str, Any]] = [answer]
    data = answer.get("data")
    if isinstance(data, Mapping):
        envelopes.append(data)
    envelopes += [e["result"] for e in list(envelopes) if isinstance(e.get("result"), Mapping)]
    jobs = [e["job"] for e in envelopes if isinstance(e.get("job"), Mapping)]
    jobs += [j for e in envelopes if isinstance(e.get("jobs"), list)
             for j in e["jobs"] if isinstance(j, Mapping)]
    return envelopes, jobs


def names_another_job(answer: Mapping[str, Any], job_id: str) -> bool:
    """Whether a success names a job other than ``job_id`` anywhere :func:`job_places` looks:
    a misrouted or buggy answer that confirms nothing about our write (its outcome unknown)."""
    envelopes, jobs = job_places(answer)
    return any(key in place and place[key] != job_id
               for place in envelopes + jobs for key in _JOB_KEYS)


def is_service_error(body: Any) -> bool:
    """Whether an error body is the service's own (``success: false``, not about a route), so
    that what it says can be about the job.

    Anything else (a framework's default 404, a proxy's page, ``{"success": false, "error":
    "Route not found"}`` from a wrong base URL) says only that the request did not reach the
    service's handler. One rule for aid and the monitor: the monitor read that last body as
    "no such job", so every job looked missing instead of the monitor unreachable (security
    review).
    """
    if not isinstance(body, Mapping) or body.get("success") is not False:
        return False
    return not _route_miss(body)


#: How Express and NestJS say that no handler has the route ("Cannot POST /api/...").
_CANNOT_ROUTE: Final = re.compile(r"^cannot (get|post|put|patch|delete|head|options) ",
                                  re.IGNORECASE)


def _route_miss(body: Mapping[str, Any]) -> bool:
    """Whether an error body says the request reached no handler (a wrong base URL)."""
    said = server_message(body).lower()
    code = str(error_code(body) or "").upper()
    return ("route not found" in said or "ROUTE" in code
            or any(_CANNOT_ROUTE.match(str(body.get(k) or "")) for k in ("message", "error")))


def is_gateway_error(body: Any) -> bool:
    """Whether a 4xx body can be the legacy gateway's own answer about the job, as
    :func:`is_service_error` is for aid and the monitor. The gateway's error shapes vary
    (``{status: "error", message}`` in 2026 deployments, NestJS's ``{statusCode, message}``,
    a bare ``{message}``), so any JSON object counts but a route miss. A proxy's or a WAF's
    page (HTML, text) or a route miss does not: the request never reached the gateway's
    handler, so it says nothing about the job (adversarial review, session 22: a WAF page on
    a ping cancelled healthy work, and on ``getJob`` an unknown route read as "no job")."""
    return isinstance(body, Mapping) and not _route_miss(body)


def raise_for_status(response: Answer, tier: str, route: str,
                     secrets: tuple[str, ...] = ()) -> None:
    """Raise for any non-2xx status the caller did not give a meaning to.

    429 → rate limited; everything else (3xx: a misconfigured base URL; 4xx: the service did not
    accept the request; 5xx: the service is down or broken) → unavailable. None of them is an
    answer about the job, so none may be read as "not found" or "not owned".
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    said = server_message(try_json(response), secrets)
    if status == 429:
        raise TierRateLimited(
            tier, f"{route}: rate limited (HTTP 429): {said}", retry_after(response)
        )
    if 300 <= status < 400:
        raise TierUnavailable(tier, f"{route}: unexpected redirect (HTTP {status}); check the URL")
    raise TierUnavailable(tier, f"{route}: HTTP {status}: {said}")


@dataclass(frozen=True, slots=True)
class _SendBy:
    """A send-by bound: the instant on ``clock`` (the guard's, suspensions counted) and the
    alarms that wake a wait for it on time across suspensions (:mod:`verifier._clock`)."""

    deadline: float
    clock: Callable[[], float]
    alarm: AlarmFactory


#: The bound of requests made in this context: set by the guard around a gateway finish
#: (``Finish.send_by``), read by :meth:`TierHttp.exchange`.
_SEND_BY: ContextVar[_SendBy | None] = ContextVar("verifier_send_by", default=None)
#: httpcore's trace events just before a request's first byte is written (HTTP/1.1, HTTP/2).
_HEADERS_LEAVING: Final = ("http11.send_request_headers.started",
                           "http2.send_request_headers.started")


def _traces(client: httpx.AsyncClient, request: httpx.Request) -> bool:
    """Whether ``client`` sends ``request`` through httpx's own transport (httpcore), which
    reports the trace event a request's headers start to leave with."""
    pick = getattr(client, "_transport_for_url", None)  # an httpx without it: not known
    return pick is not None and isinstance(pick(request.url), httpx.AsyncHTTPTransport)


@contextlib.contextmanager
def sending_by(deadline: float | None, clock: Callable[[], float] | None = None,
               alarm: AlarmFactory = no_alarm) -> Iterator[None]:
    """Requests made within must start to leave by ``deadline`` on ``clock`` (default: the
    event loop's; ``None``: no bound), or not at all: :class:`~verifier.RequestNotSent`.
    ``alarm`` wakes the wait for it on time across the machine's suspensions (the guard
    passes its own clock and alarms: on the loop's clock alone, a suspension during the
    connect made the cancel late by its length, a review of this bound found).

    Why: the gateway's ``finishJob`` is check-then-act, and the protocol decides a finish
    only while its write, landing within G of *leaving*, cannot reach the job's next
    assignment. In production a request leaves after the connection pool, the TCP connect
    (lost SYNs cost seconds) and TLS, all under a 10 s deadline: a finish decided in time
    landed on the next assignment after an 8 s connect (a review of the drivers, session 28).
    A request leaves when its headers start to be written (httpcore's trace event, which
    runs in the request's task right before the write, so the check and the write are one
    step); until then it is cancelled at ``deadline``, and nothing has been sent.
    """
    bound = None if deadline is None else _SendBy(
        deadline, clock or asyncio.get_running_loop().time, alarm)
    token = _SEND_BY.set(bound)
    try:
        yield
    finally:
        _SEND_BY.reset(token)


@contextlib.contextmanager
def transport_errors(
    tier: str, where: str, limit: float, *, proxy: str | None = None
) -> Iterator[None]:
    """Map what httpx (or a hard deadline) raises during an exchange to the tier errors.

    ``where`` names the exchange in messages (a route, or a redacted URL); ``proxy`` (redacted:
    :func:`proxy_for`), the proxy the exchange went through, is named after it, because then
    the failure may be the proxy's. Exceptions are not chained: httpx errors and their requests
    may hold the raw URL, with its user info.
    """
    via = f" via proxy {proxy}" if proxy else ""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise TierTimeout(
            tier, f"{where}: no answer within {limit:g}s ({type(exc).__name__}){via}"
        ) from None
    except TimeoutError:  # asyncio.timeout: the whole exchange overran its deadline
        raise TierTimeout(tier, f"{where}: no complete answer within {limit:g}s{via}") from None
    except httpx.DecodingError:
        raise MalformedAnswer(tier, f"{where}: undecodable body{via}") from None
    except httpx.HTTPError as exc:  # connect/read/write errors, protocol errors, ...
        raise TierUnavailable(
            tier, f"{where}: request failed ({type(exc).__name__}){via}") from None
    except httpx.InvalidURL as exc:
        raise TierUnavailable(tier, f"{where}: invalid URL ({type(exc).__name__})") from None


def unchained(error: VerifierError) -> VerifierError:
    """``error`` with the exceptions it was raised while handling dropped. ``raise ... from
    None`` only hides them from tracebacks: ``__context__`` still holds httpx's exception,
    whose request carries the base URL's credentials (the Basic authorization header) and a
    gateway's signed body, for any code that inspects it (adversarial review, session 22).
    The error is raised by the exchange's own ``with``, which chains it again, so callers of
    :meth:`TierHttp.exchange` clear it once it has left."""
    error.__context__ = None
    error.__cause__ = None
    return error


def environment_proxy(url: str) -> tuple[str, str] | None:
    """Which proxy variable (``http``, ``https`` or ``all``) and proxy URL an ``httpx`` client
    of ours, reading the environment, sends requests for ``url`` through; ``None`` if it goes
    direct (or if ``url`` or the environment is one httpx cannot read: it then fails itself).

    Taken from httpx's own rules, not mirrored: its mounts from the environment and its URL
    patterns, most specific first, as its client picks a transport. The standard library's
    ``NO_PROXY`` rules, used here before, differ in seven forms (``*`` among other entries,
    ``host:port``, entries with a scheme, a leading dot, ``localhost``, punycode, CIDR
    ranges): a differential test against httpx found the push client tunnelling where httpx
    goes direct and the reverse (session 39). These names are private to httpx; the test that
    checks this against the client's own choice of transport fails if they change.
    """
    try:
        target = httpx.URL(url)
        mounts = sorted(((URLPattern(key), proxy)
                         for key, proxy in get_environment_proxies().items()),
                        key=lambda mount: mount[0])
    except (httpx.InvalidURL, ValueError):
        return None
    for pattern, proxy in mounts:
        if pattern.matches(target):
            return None if proxy is None else (pattern.pattern.split("://", 1)[0], proxy)
    return None


def proxy_for(url: str) -> str | None:
    """The proxy an ``httpx`` client of ours sends requests for ``url`` through, redacted
    (:func:`~verifier._ids.redact_url`: a proxy URL may carry user:password), or ``None``:
    :func:`environment_proxy`, for display."""
    found = environment_proxy(url)
    return None if found is None else redact_url(found[1])


def _client_from_environment() -> httpx.AsyncClient:
    """A new ``httpx.AsyncClient`` (asking for identity bodies) configured from the environment
    as httpx reads it: proxies, and CA certificates from ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``.

    A setting httpx cannot use raises :class:`ConfigurationError` naming the variable, never
    its value: httpx's own errors quote it (a proxy password holding an unencoded ``/``, ``#``
    or ``?`` ends in "Invalid port: '<password>'"), and outside the ``ConfigurationError``
    that ``run`` and ``check`` report they were a traceback, read as a crash (security
    review). Raised after the ``except`` clause, so httpx's error is not even the context.
    """
    try:
        return httpx.AsyncClient(headers=IDENTITY_ENCODING)
    except OSError:
        # ssl.SSLError is an OSError: a file that is missing, a directory, not certificates.
        # httpx reads SSL_CERT_DIR only when SSL_CERT_FILE is unset or empty.
        variables = "SSL_CERT_FILE" if os.environ.get("SSL_CERT_FILE") else "SSL_CERT_DIR"
        problem = "could not be loaded as CA certificates (missing, unreadable or not PEM)"
    except ImportError:
        variables = _proxy_variables(socks=True)
        problem = "a SOCKS proxy needs the socksio package (pip install 'httpx[socks]')"
    except (ValueError, httpx.InvalidURL) as error:  # InvalidURL is no ValueError
        if unreadable := _unreadable_no_proxy():
            # httpx reads each entry as a host pattern: "[::1]" fails as a port (":1]"), an
            # IDNA 2008 refusal ("xn--ls8h.la") as a ValueError, and naming HTTP_PROXY then
            # sent the operator to the wrong line (session 40).
            variables = unreadable
            problem = ("has an entry httpx cannot read as a host name or address (write an "
                       "IPv6 address without brackets: ::1)")
        elif isinstance(error, httpx.InvalidURL):
            variables = _proxy_variables()
            problem = ("is not a valid proxy URL (a '/', '#' or '?' in its user name or "
                       "password must be percent-encoded)")
        else:  # an unknown proxy scheme
            variables = _proxy_variables()
            problem = "must be an http, https, socks5 or socks5h URL"
    raise ConfigurationError(variables, problem) from None


def _unreadable_no_proxy() -> str | None:
    """The ``NO_PROXY`` variables (as spelled, either case) if one of its entries is a pattern
    httpx cannot read, else ``None``."""
    try:
        for key, proxy in get_environment_proxies().items():
            if proxy is None:
                URLPattern(key)
    except (httpx.InvalidURL, ValueError):
        return ", ".join(sorted(name for name, value in os.environ.items()
                                if value and name.upper() == "NO_PROXY")) or "NO_PROXY"
    return None


def _proxy_variables(*, socks: bool = False) -> str:
    """The proxy variables at fault, as spelled in the environment (either case), for a
    message: those httpx cannot use (``socks``: those naming a SOCKS proxy); every one that is
    set if none can be singled out; all their names if none is set (a proxy from elsewhere,
    such as a system registry). Naming a good variable beside the bad one sent operators to
    the wrong line of their configuration (operator review, session 20)."""
    names = sorted(name for name, value in os.environ.items()
                   if value and name.upper() in _PROXY_VARIABLES)
    culprits = [name for name in names if _unusable_proxy(os.environ[name], socks=socks)]
    return ", ".join(culprits or names or _PROXY_VARIABLES)


def _unusable_proxy(value: str, *, socks: bool) -> bool:
    """Whether httpx would refuse ``value`` as a proxy (it reads a value without a scheme
    as ``http://``); with ``socks``, whether it names a SOCKS proxy."""
    url = value if "://" in value else f"http://{value}"
    if socks:
        return url.lower().startswith("socks")
    try:
        httpx.Proxy(url)
    except (ValueError, httpx.InvalidURL):
        return True
    return False


async def read_capped(response: httpx.Response, tier: str, where: str) -> bytes:
    """Read the (decoded) body, refusing it as soon as it exceeds :data:`MAX_BODY_BYTES`, so a
    hostile or broken server cannot make us buffer an unbounded answer. A body that declares a
    larger ``Content-Length`` is refused before a byte of it is read.

    The cap is on the *decoded* body, and decoding is bounded too: the raw bytes are inflated
    by at most the room left under the cap plus one byte per step (``max_length``), so a
    compression bomb is refused after producing just over 1 MiB. Codings other than gzip and
    deflate (``br``, ``zstd``, stacked codings) are refused: we asked for ``identity``.
    """
    declared = response.headers.get("content-length", "")
    too_large = f"{where}: answer larger than {MAX_BODY_BYTES} bytes"
    # A length of more digits than any cap has is too large, unparsed (int() refuses a string
    # of over 4,300 digits with a ValueError: security review, session 16).
    if declared.isascii() and declared.isdigit() and (
            len(declared.lstrip("0")) > 18 or int(declared) > MAX_BODY_BYTES):
        raise MalformedAnswer(tier, too_large)
    if response.is_stream_consumed:
        # Built in memory (``httpx.MockTransport`` and the like): httpx has already read (and
        # decoded) the whole body before we saw it, so no socket is involved; the cap applies.
        if len(response.content) > MAX_BODY_BYTES:
            raise MalformedAnswer(tier, too_large)
        return response.content
    coding = response.headers.get("content-encoding", "").strip().lower()
    inflater = None
    if coding in _INFLATABLE:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip header, detected
    elif coding not in ("", "identity"):
        raise MalformedAnswer(tier, f"{where}: unsupported Content-Encoding (we ask for identity)")
    chunks: list[bytes] = []
    size = received = 0
    trailing = f"{where}: data after the end of a compressed body"
    async for raw in response.aiter_raw():
        received += len(raw)
        if received > _RAW_LIMIT:
            # The raw bytes are capped too: a compressed stream that produces nothing (empty
            # blocks) would otherwise be read for ever, the cap on its output never reached.
            raise MalformedAnswer(tier, too_large)
        chunk = raw
        if inflater is not None:
            if inflater.eof:
                # Checked at once, not at the end: zlib keeps bytes after the stream's end in
                # ``unused_data``, copying it on every chunk (quadratic, and it blocks the
                # event loop, where every guard's pings and leases run).
                raise MalformedAnswer(tier, trailing)
            try:
                # At most one byte more than the room left: enough to know it is too large.
                chunk = inflater.decompress(raw, MAX_BODY_BYTES - size + 1)
            except zlib.error:
                raise MalformedAnswer(tier, f"{where}: undecodable compressed body") from None
            if inflater.unused_data:
                raise MalformedAnswer(tier, trailing)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise MalformedAnswer(tier, too_large)
        chunks.append(chunk)
    if inflater is not None and received and (not inflater.eof or inflater.unused_data):
        # A stream that stops early, or has bytes after its end, is not the body that was sent.
        raise MalformedAnswer(tier, f"{where}: truncated compressed body or data after its end")
    return b"".join(chunks)


class TierHttp:
    """One tier's HTTP endpoint: base URL, default timeout, headers, an ``httpx.AsyncClient``.

    A client passed in is shared and never closed here; one created here is owned and closed by
    :meth:`aclose`. ``repr`` shows the base URL without user info or query.

    :param strict_url: validate ``base_url`` with ``check_base_url(strict=True)``.
    :param hard_deadline: ``timeout`` bounds the whole exchange (connect, send, headers and
        body), not only each socket operation, so a server that drips its body cannot hold the
        caller past it. Without it, httpx's per-operation timeouts only.
    """

    __slots__ = ("_auth", "_client", "_hard_deadline", "_headers", "_owned", "_proxy", "base_url",
                 "secrets", "tier", "timeout")

    def __init__(
        self,
        tier: str,
        base_url: str,
        *,
        variable: str,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        strict_url: bool = False,
        hard_deadline: bool = False,
    ) -> None:
        self.tier = tier
        # A user:password in the base URL is sent as HTTP basic auth, never as part of the
        # request URL: httpx logs every request's URL at INFO, password included.
        self.base_url, self._auth = _split_userinfo(
            check_base_url(base_url, variable, strict=strict_url))
        #: What a server quoting our request back must not get into a message:
        #: :func:`server_message` and :func:`error_code` take these out.
        self.secrets = credentials(base_url)
        self.timeout = positive_seconds(timeout, f"{variable} timeout")
        # Per request, so that a client passed in asks for identity too (see read_capped).
        self._headers = {**(headers or {}), **IDENTITY_ENCODING, **NO_CACHE}
        self._hard_deadline = hard_deadline
        self._owned = client is None
        self._client = client if client is not None else _client_from_environment()
        # The proxy the client just read from the environment, for error messages. Only for a
        # client made here: one passed in routes as its owner set it up (its own transport or
        # mounts), which is not ours to guess.
        found = environment_proxy(self.base_url) if client is None else None
        self._proxy = None if found is None else redact_url(found[1])
        if found is not None:
            # A forward proxy's own page (a 407 refusing its Proxy-Authorization, a 502) is
            # quoted as what the tier said: its credentials are ours to keep out too (an
            # adversarial review, session 46: a proxy echoing the header it refused had its
            # password logged).
            self.secrets = tuple(dict.fromkeys((*self.secrets, *credentials(found[1]))))

    @contextlib.asynccontextmanager
    async def exchange(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        time_limit: float | None = None,
        where: str | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """Open one request to ``base_url + path`` (``path`` already encoded), body unread.

        For a caller that decides on the status before reading (see :meth:`send`); failures in
        the block, body reads included, are mapped by :func:`transport_errors` under ``where``
        (default: ``path``). Redirects are not followed: a 3xx from these APIs means a wrong
        base URL, and following one could carry a signed body to another host.
        """
        limit = self.timeout if time_limit is None else time_limit
        shown = path if where is None else where
        with transport_errors(self.tier, shown, limit, proxy=self._proxy):
            try:
                request = self._client.build_request(
                    method,
                    self.base_url + path,
                    json=json_body,
                    headers=self._headers,
                    timeout=httpx.Timeout(limit),
                )
            except (httpx.InvalidURL, ValueError) as exc:
                # The request could not be built: a host httpx cannot IDNA-encode (idna's
                # errors are UnicodeErrors, so ValueErrors), a header or body that does not
                # encode. Nothing was sent, so nothing is known; outside the tier tree it would
                # read as a crash, or (in ``verifier check``) as the exit status of an answer.
                # Only here: a ValueError of the caller's own code in the block below is a bug,
                # not an unreachable tier.
                raise TierUnavailable(self.tier, f"{shown}: the request could not be built "
                                                 f"({type(exc).__name__})") from None
            async with asyncio.timeout(limit if self._hard_deadline else None):
                response = await self._sent_by(request, _SEND_BY.get(), shown)
                try:
                    if method == "GET":  # a cache keeps no answer to a POST
                        _not_from_a_cache(response, self.tier, shown, self.secrets)
                    yield response
                finally:
                    await response.aclose()

    async def _sent_by(self, request: httpx.Request, bound: _SendBy | None, shown: str
                       ) -> httpx.Response:
        """``client.send``, with the request cancelled unsent if its headers have not
        started to leave by the bound's deadline (:func:`sending_by`)."""
        def send() -> Awaitable[httpx.Response]:
            return self._client.send(request, stream=True, follow_redirects=False,
                                     auth=self._auth)

        if bound is None:
            return await send()
        deadline, clock = bound.deadline, bound.clock
        late = RequestNotSent(self.tier, f"{shown}: not sent: it could not leave by its "
                                         "send-by instant")
        if clock() >= deadline:
            raise late
        if not _traces(self._client, request):
            # A transport that reports no trace events (a mock, a custom one) never says when
            # a request leaves: only "not yet started" is sure, so only that is checked.
            return await send()
        loop = asyncio.get_running_loop()
        leaving = asyncio.timeout(None)
        started = False

        async def trace(event: str, info: Mapping[str, Any]) -> None:
            nonlocal started
            sent = info.get("request")
            if event not in _HEADERS_LEAVING or getattr(sent, "method", None) == b"CONNECT":
                return  # a proxy tunnel's CONNECT is not our request leaving
            if clock() >= deadline:
                if started:
                    # A second copy (a transport that retries): the first left in time and
                    # may have landed, so this is no "not sent" (a review of this bound).
                    raise TierUnavailable(self.tier, f"{shown}: a second copy of a request "
                                                     "already sent, past its send-by instant")
                raise late  # in the request's task, before its first byte is written
            started = True  # it leaves now: no longer ours to cancel

        async def watch() -> None:
            """Cancel the request at the deadline if it has not started to leave."""
            with bound.alarm(deadline - clock()) as ring:
                while (left := deadline - clock()) > 0:
                    if ring is None or ring.done():
                        await asyncio.sleep(left)
                    else:
                        await asyncio.wait({ring}, timeout=left)
            if not started:
                leaving.reschedule(loop.time())

        request.extensions["trace"] = trace
        watcher = asyncio.ensure_future(watch())
        try:
            async with leaving:
                return await send()
        except TimeoutError:
            if leaving.expired():
                raise late from None
            raise
        finally:
            watcher.cancel()

    async def send(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        time_limit: float | None = None,
    ) -> Answer:
        """Send one request and read its whole (capped) body, whatever the status."""
        try:
            async with self.exchange(
                method, path, json_body=json_body, time_limit=time_limit
            ) as response:
                content = await read_capped(response, self.tier, path)
        except VerifierError as exc:
            raise unchained(exc) from None
        return Answer(response.status_code, response.headers, content)

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()

    def __repr__(self) -> str:
        return f"TierHttp({self.tier!r}, {redact_url(self.base_url)!r})"


#: Headers in which caches say whether they answered from what they kept, and the words
#: that mean they did (``HIT``, a stale copy, or one being refreshed behind the answer).
_CACHE_STATUS_HEADERS: Final = ("x-cache", "x-cache-status", "x-proxy-cache", "cf-cache-status")
_FROM_A_CACHE: Final = frozenset({"HIT", "STALE", "UPDATING"})
_WORDS: Final = re.compile(r"[\s,;]+")


def _not_from_a_cache(response: httpx.Response, tier: str, shown: str,
                      secrets: tuple[str, ...]) -> None:
    """Refuse an answer a cache kept: an ``Age`` above 0 (RFC 9111 §5.1: a cache made it).
    Every request asks for none (:data:`NO_CACHE`), but a CDN may ignore that for what it
    holds, and its copy trails the tier by more than any bound of the timing model: a stale
    "yours" could confirm a claim a later accept overwrote (an adversarial review,
    2026-12-05). An ``Age`` that is not a number is refused too.

    The header's text is quoted concealed (``secrets``), as a body is: a proxy that copies
    the request's ``Authorization`` into its own headers had 20 characters of our token in
    the message (an adversarial review, session 46)."""
    age = response.headers.get("age")
    # Each proxy on the way may add its own: "0, 0" is two that kept nothing.
    if age is not None and not all(part.strip() == "0" for part in age.split(",")):
        raise TierUnavailable(tier, f"{shown}: answered from a cache "
                                    f"(Age: {_clean(age, secrets, 20)}); "
                                    "a tier's answer must be its own, now")
    # nginx's proxy_cache sends no Age, and ignores a request's no-cache unless told to: its
    # copy, frozen for a day, passed as the monitor's answer, and proved every ping of a job
    # that had gone to another encoder (helper-130's review, session 44). The cache-status
    # headers caches add (nginx's usual $upstream_cache_status, Varnish, CloudFront,
    # Cloudflare) say so when nothing else does.
    for name in _CACHE_STATUS_HEADERS:
        for said in response.headers.get_list(name):
            # One word per cache on the way ("MISS, HIT": the edge kept it).
            if any(word.upper() in _FROM_A_CACHE for word in _WORDS.split(said)):
                raise TierUnavailable(tier, f"{shown}: answered from a cache ({name}: "
                                            f"{_clean(said, secrets, 20)}); a tier's answer "
                                            "must be its own, now")


def _split_userinfo(base_url: str) -> tuple[str, httpx.BasicAuth | None]:
    """``base_url`` without its ``user:password@``, and that user info as basic auth."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.username is None and parts.password is None:
        return base_url, None
    host = parts.netloc.rpartition("@")[2]
    bare = urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    # As httpx and the push client read it: an empty user info ("@host", ":@host") is no
    # credential, not an "Authorization: Basic Og==" that a server may refuse.
    return bare, (httpx.BasicAuth(user, password) if user or password else None)


def credentials(base_url: str) -> tuple[str, ...]:
    """The credentials a base URL's user info puts on the wire, as a server could quote them:
    the ``Basic`` token and the password (decoded and as written); without a password, the
    user name (decoded and as written), which is then the credential (``https://TOKEN@host``,
    as some APIs take a token).

    With a password, the user name is not one: :func:`~verifier._text.conceal` takes out any
    long run of a secret's characters, and ``user:password`` as a secret made every message
    naming the account lose its name; ``user:***`` says which account was refused. (It was
    ``user:password`` before session 46, and a bare token in the user name was not concealed.)
    """
    parts = urllib.parse.urlsplit(base_url.strip())
    if parts.username is None and parts.password is None:
        return ()
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    if not user and not password:
        return ()
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")  # as httpx's
    shown = (password, parts.password or "") if password else (user, parts.username or "")
    return tuple(s for s in dict.fromkeys((token, *shown)) if s)


def check_base_url(base_url: object, variable: str, *, strict: bool = False) -> str:
    """``base_url`` without its trailing ``/``, or a :class:`ConfigurationError`.

    Requires http(s), a host httpx can send to, no ``@`` after the host, and no query or
    fragment (paths are appended to it, so a query would swallow them). The message never
    repeats the value: a base URL may carry user:password. Without ``strict`` surrounding
    whitespace is stripped (the gateway and aid always did so). ``strict`` refuses rather than
    repairs: surrounding or inner whitespace, control characters, a malformed port; each would
    otherwise fail later, at the first request. Either way a bare trailing ``?`` or ``#`` and
    ``.``/``..`` segments are refused: requests would go to another path than the one shown.
    """
    if not isinstance(base_url, str) or not base_url.strip():
        raise ConfigurationError(variable, "must be a non-empty http(s) URL")
    text = base_url if strict else base_url.strip()
    try:
        parts = urllib.parse.urlsplit(text)
        if strict:
            _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        raise ConfigurationError(variable, "is not a valid URL") from None
    # The scheme first, so a URL without one is not told its '@' is after the host.
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(variable, "must be an http(s) URL with a host")
    refuse_misplaced_userinfo(parts, variable)
    if not parts.hostname:
        raise ConfigurationError(variable, "must be an http(s) URL with a host")
    # A bare trailing "?" or "#" too, leniently as well: base + "/jobs/x" would make every
    # route the query or fragment of the base path, the only path ever requested.
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ConfigurationError(variable, "must not contain a query or a fragment")
    refuse_dot_segments(parts, variable)
    # Cc: C0, DEL and C1 alike (C1 passed until session 39).
    if strict and any(c.isspace() or unicodedata.category(c) == "Cc" for c in text):
        raise ConfigurationError(variable, "must not contain whitespace or control characters")
    check_host_sendable(text, variable)
    return text.rstrip("/")


def refuse_misplaced_userinfo(parts: urllib.parse.SplitResult, variable: str) -> None:
    """Refuse a URL with an ``@`` after its host (:func:`~verifier._ids.userinfo_misplaced`).

    That is a password with an unencoded ``/``, ``?`` or ``#``: the URL would send the request
    to a "host" made of the user name and show the rest of the password as its path. The
    message says how to write it and, like every other, never repeats the value.
    """
    if userinfo_misplaced(parts):
        raise ConfigurationError(
            variable,
            "has an '@' after the host: user info must come before the host, with any '/', "
            "'?', '#' or '@' in it percent-encoded (%2F, %3F, %23, %40)",
        )


def refuse_dot_segments(parts: urllib.parse.SplitResult, variable: str) -> None:
    """Refuse ``.`` and ``..`` path segments: httpx removes them (RFC 3986 §5.2.4), so
    ``/a/../api`` would be shown and ``/api`` requested, and ``/api/..`` would send every route
    outside ``/api`` (a differential run against httpx, session 40)."""
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        raise ConfigurationError(variable, "must not contain '.' or '..' path segments")


def check_host_sendable(url: str, variable: str) -> None:
    """Refuse a URL whose host httpx cannot encode, as every request would find out, or whose
    host or port httpx reads otherwise than ``urlsplit`` (what logs show and the push client
    uses), or whose port is outside 1-65535.

    ``urlsplit`` accepts any host text, but httpx IDNA-encodes it when a request is built
    (``xn--a`` and a zero-width space are invalid IDNA): without this, such a URL would pass
    start-up and fail every request instead.

    Two forms httpx accepts are refused too, each with what to write instead (session 44):
    a backslash anywhere, which httpx sends as it is and a WHATWG parser (browsers, Node, so
    the gateway's own tooling) reads as ``/`` (``https://tier.example\\@evil.example/api``
    is tier.example to a browser and evil.example to httpx); and an IPv6 zone id written as
    RFC 6874 has it (``[fe80::1%25eth0]``), which httpx passes to the resolver as the zone
    ``25eth0``, so every connection fails.
    """
    if "\\" in url:
        raise ConfigurationError(
            variable, "must not contain a backslash: httpx sends it as it is, browsers and "
            "Node read it as '/' (write '/' or '%5C')")
    host = urllib.parse.urlsplit(url).hostname or ""
    if ":" in host and host.partition("%")[2][:2] == "25":
        raise ConfigurationError(
            variable, "has an IPv6 zone id written '%25<zone>' (RFC 6874), which httpx sends "
            "to the resolver as it is: write the zone after a bare '%', as in [fe80::1%eth0]")
    try:
        parsed = httpx.URL(url)
        _ = parsed.host  # .host IDNA-decodes, as building a request does
        _ = parsed.raw_host  # ASCII, as every request needs: not "[fe80::1%\u200beth0]"
    except (httpx.InvalidURL, ValueError):  # idna.IDNAError is a UnicodeError (ValueError)
        raise ConfigurationError(
            variable, "has a host (or port) that is not valid in a URL (IDNA)"
        ) from None
    # The host and port httpx connects to must be those urllib reads: redact_url shows the
    # URL as urllib splits it, and the push client's Host header takes urllib's port. They
    # differ for "[::1]8080" (httpx: port 8080) and "a[v1.x]" (urllib: host "v1.x").
    # Port 0 passes both, and the push client would then connect to the default port.
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port only httpx's int() reads ("+80", other scripts' digits): lenient
        port = parsed.port
    default = 443 if parsed.scheme == "https" else 80
    wire = default if parsed.port is None else parsed.port
    name = parts.hostname or ""
    try:
        seen = httpx.URL("//" + (f"[{name}]" if ":" in name else name)).raw_host
    except (httpx.InvalidURL, ValueError):
        seen = None
    if (seen is None or seen.lower() != parsed.raw_host.lower()
            or (default if port is None else port) != wire or not 0 < wire < 65536):
        raise ConfigurationError(
            variable, "has a host or port that can be read two ways (a '[' or ']' outside an "
            "IPv6 address, a port without ':') or a port outside 1-65535")


def positive_seconds(timeout: object, what: str) -> float:
    """A timeout setting: a positive, finite number of seconds, else a ConfigurationError."""
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ConfigurationError(what, "must be a positive number of seconds")
    return float(timeout)

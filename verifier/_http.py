"""HTTP plumbing shared by the legacy gateway and Gateway Aid clients.

Both services are JSON over HTTP, both have been seen down for hours (502/503/504), and both
can commit a write whose reply never arrives. What those failures *mean* is decided once, here:

* no reply in time → :class:`~verifier.TierTimeout` (for a write the outcome is unknown: the
  request may still land, bound ``G`` of the timing model);
* connection refused/reset, DNS failure, a redirect, 5xx → :class:`~verifier.TierUnavailable`;
* 429 → :class:`~verifier.TierRateLimited` with the server's ``Retry-After`` seconds;
* a body that is not the JSON we expect → :class:`~verifier.MalformedAnswer`.

None of these is ever an answer about the job. What a 404, 409 or 500 means differs by service
and by route (a refused ``acceptJob`` is a bare 500), so those decisions stay in the clients,
which call :func:`raise_for_status` only for what is left. Exception messages name the route
and the status, never the base URL (it may carry credentials) and never more than a short,
sanitised excerpt of what the server said.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from ._errors import (
    ConfigurationError,
    InvalidInputError,
    MalformedAnswer,
    TierRateLimited,
    TierTimeout,
    TierUnavailable,
)
from ._ids import quote_segment, redact_url, validate_job_id

__all__ = [
    "MAX_BODY_BYTES",
    "Answer",
    "TierHttp",
    "error_code",
    "job_segment",
    "positive_seconds",
    "raise_for_status",
    "read_json",
    "retry_after",
    "server_message",
    "try_json",
]

#: Real answers are a few kilobytes; a larger body is not an answer we can trust or afford.
MAX_BODY_BYTES: Final = 1024 * 1024
_MESSAGE_LIMIT: Final = 200


@dataclass(frozen=True, slots=True)
class Answer:
    """A fully read reply: status, headers and a body of at most :data:`MAX_BODY_BYTES`."""

    status_code: int
    headers: httpx.Headers
    content: bytes


def job_segment(job_id: object) -> str:
    """Validate ``job_id`` and encode it as exactly one URL path segment.

    ``quote_segment`` encodes ``/``, ``?``, ``#`` and ``%``, but ``.`` and ``..`` are dot
    segments that httpx (RFC 3986 §5.2.4) removes from the path: ``jobstatus/..`` would be
    sent as a request for a *different route*. No real job id is a dot segment, so they are
    refused before any request is made.
    """
    value = validate_job_id(job_id)
    if value in (".", ".."):
        raise InvalidInputError("job id cannot be a dot segment ('.' or '..')")
    return quote_segment(value)


def retry_after(response: Answer) -> float | None:
    """``Retry-After`` in seconds when the server gave a number; dates are ignored (no clock)."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate key")
        result[key] = value
    return result


def try_json(response: Answer) -> Any:
    """The body as JSON, or ``None`` when it is empty, too large or not JSON (error bodies)."""
    try:
        return read_json(response, "?", empty=None)
    except MalformedAnswer:
        return None


_NO_DEFAULT: Final = object()


def read_json(response: Answer, tier: str, *, empty: Any = _NO_DEFAULT) -> Any:
    """Parse the body strictly: UTF-8 JSON, no duplicate keys, no NaN/Infinity.

    An empty body returns ``empty`` when the caller says an empty body has a meaning (the
    gateway's ``finishJob`` answered an empty 200 for success), else it is malformed.
    Duplicate keys are refused because two parsers could read them differently.
    """
    content = response.content
    if not content.strip():
        if empty is _NO_DEFAULT:
            raise MalformedAnswer(tier, f"empty answer (HTTP {response.status_code})")
        return empty
    try:
        return json.loads(
            content.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_refuse_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedAnswer(tier, f"answer is not JSON (HTTP {response.status_code})") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _clean(text: str) -> str:
    text = "".join(c if c.isprintable() else " " for c in text)
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT] + "..."


def server_message(body: Any) -> str:
    """A short, printable excerpt of what the server said (``error``/``message`` fields)."""
    if isinstance(body, Mapping):
        parts = [body.get(k) for k in ("error", "message")]
        texts = [p for p in parts if isinstance(p, str) and p]
        if texts:
            return _clean("; ".join(dict.fromkeys(texts)))
    return "no message"


def error_code(body: Any) -> str | None:
    """The machine-readable code of an error body: ``code`` or ``data.code`` (aid uses both)."""
    if not isinstance(body, Mapping):
        return None
    code = body.get("code")
    if isinstance(code, str) and code:
        return code
    data = body.get("data")
    if isinstance(data, Mapping):
        nested = data.get("code")
        if isinstance(nested, str) and nested:
            return nested
    return None


def raise_for_status(response: Answer, tier: str, route: str) -> None:
    """Raise for any non-2xx status the caller did not give a meaning to.

    429 → rate limited; everything else (3xx: a misconfigured base URL; 4xx: the service did not
    accept the request; 5xx: the service is down or broken) → unavailable. None of them is an
    answer about the job, so none may be read as "not found" or "not owned".
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    said = server_message(try_json(response))
    if status == 429:
        raise TierRateLimited(
            tier, f"{route}: rate limited (HTTP 429): {said}", retry_after(response)
        )
    if 300 <= status < 400:
        raise TierUnavailable(tier, f"{route}: unexpected redirect (HTTP {status}); check the URL")
    raise TierUnavailable(tier, f"{route}: HTTP {status}: {said}")


class TierHttp:
    """One tier's HTTP endpoint: base URL, default timeout, headers, an ``httpx.AsyncClient``.

    A client passed in is shared and never closed here; one created here is owned and closed by
    :meth:`aclose`. ``repr`` shows the base URL without user info or query.
    """

    __slots__ = ("_client", "_headers", "_owned", "base_url", "tier", "timeout")

    def __init__(
        self,
        tier: str,
        base_url: str,
        *,
        variable: str,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.tier = tier
        self.base_url = _check_base_url(base_url, variable)
        self.timeout = positive_seconds(timeout, f"{variable} timeout")
        self._headers = dict(headers or {})
        self._owned = client is None
        self._client = client if client is not None else httpx.AsyncClient()

    async def send(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        time_limit: float | None = None,
    ) -> Answer:
        """Send one request to ``base_url + path`` (``path`` already encoded); map failures.

        Redirects are not followed: a 3xx from these APIs means a wrong base URL, and following
        one could carry a signed body to another host.
        """
        url = self.base_url + path
        limit = self.timeout if time_limit is None else time_limit
        request = self._client.build_request(
            method, url, json=json_body, headers=self._headers, timeout=httpx.Timeout(limit)
        )
        try:
            response = await self._client.send(request, stream=True, follow_redirects=False)
            try:
                content = await _read_capped(response, self.tier, path)
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise TierTimeout(
                self.tier, f"{path}: no answer within {limit:g}s ({type(exc).__name__})"
            ) from None
        except httpx.DecodingError:
            raise MalformedAnswer(self.tier, f"{path}: undecodable body") from None
        except httpx.RequestError as exc:
            raise TierUnavailable(
                self.tier, f"{path}: request failed ({type(exc).__name__})"
            ) from None
        return Answer(response.status_code, response.headers, content)

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()

    def __repr__(self) -> str:
        return f"TierHttp({self.tier!r}, {redact_url(self.base_url)!r})"


async def _read_capped(response: httpx.Response, tier: str, path: str) -> bytes:
    """Read the (decoded) body, refusing it as soon as it exceeds :data:`MAX_BODY_BYTES`, so a
    hostile or broken server cannot make us buffer an unbounded answer."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise MalformedAnswer(tier, f"{path}: answer larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_base_url(base_url: object, variable: str) -> str:
    # The message never repeats the value: a base URL may carry user:password.
    if not isinstance(base_url, str) or not base_url.strip():
        raise ConfigurationError(variable, "must be a non-empty http(s) URL")
    try:
        parts = urllib.parse.urlsplit(base_url.strip())
    except ValueError:
        raise ConfigurationError(variable, "is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(variable, "must be an http(s) URL with a host")
    if parts.query or parts.fragment:
        raise ConfigurationError(variable, "must not contain a query or a fragment")
    return base_url.strip().rstrip("/")


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

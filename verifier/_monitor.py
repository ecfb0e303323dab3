"""The Gateway Monitor REST client: tier 2 of the documented verification hierarchy.

:class:`GatewayMonitorService` keeps the documented API of the TypeScript service
(``isEnabled``, ``getJobDetails``, ``verifyJobOwnership``, ``isJobAvailableToClaim``, in
Python spelling) and implements the read side of :class:`~verifier._tiers.TierClient`
(``observe``); the monitor is a read-only mirror, so every write raises
:class:`~verifier.TierUnavailable`.

What it does differently from the deployed encoder, and why (``docs/contract.md``):

* **No answer is never an answer.** Only two replies mean "the job does not exist": a 404 whose
  body is the monitor's own ``{"success": false, "error": "Job not found"}``, and a 200 with
  ``success: false`` saying "not found". A 404 ``{"error": "Route not found"}`` (with
  ``success: false`` or without) is a misconfigured base URL, and a 500 happens for missing
  *and* existing jobs whenever the legacy gateway is unreachable: both raise
  :class:`~verifier.TierUnavailable`. Timeouts, 429, transport errors, bodies that are not JSON
  or do not parse raise too (defects 2 and 3 came from confusing these with "unassigned").
* **No hidden retry, no cache.** One call is one request; the caller's policy decides whether
  and when to ask again (a retry here would hide the monitor's lag from the timing model).
* **Ids are encoded and, where the server would mishandle them, refused.** The server passes
  ids into the upstream gateway URL unescaped, so an id containing ``/ \\ ? # %`` (or a bare
  ``.``/``..``) could make it answer about *another* resource; a wrong answer is worse than
  none, so such ids raise :class:`~verifier.InvalidInputError` before any request. Every other
  id is percent-encoded as one path segment.
* **Bounded.** Every call has a hard deadline (``timeout``, for the whole exchange, not per
  socket read) and bodies over :data:`MAX_BODY_BYTES` are refused: the monitor is untrusted
  input. Note that for ``assigned``/``running`` jobs the real server waits about 10 s for the
  gateway's live overlay when the gateway is silent; with the default 10 s timeout such a call
  raises :class:`~verifier.TierTimeout` (a slow tier, never an answer).
* **Credentials stay out.** URLs appear in messages and logs only through
  :func:`~verifier._ids.redact_url`, and transport exceptions are not chained (their text and
  request objects could carry the raw URL).

The transport rules (error mapping, capped reads, strict JSON, base-URL checks) are the ones
the gateway and aid clients use, from :mod:`verifier._http`; what a status or a body *means*
is decided here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

import httpx

from ._errors import (
    InvalidInputError,
    MalformedAnswer,
    TierRateLimited,
    TierTimeout,
    TierUnavailable,
    VerifierError,
)
from ._http import (
    MAX_BODY_BYTES,
    Answer,
    TierHttp,
    is_service_error,
    job_segment,
    names_another_job,
    parse_retry_after,
    positive_seconds,
    read_capped,
    read_json,
    retry_after,
    server_message,
    try_json,
    unchained,
)
from ._ids import redact_url, validate_did, validate_job_id
from ._models import (
    AvailabilityResult,
    GatewayMonitorJob,
    OwnershipResult,
    availability_of,
    ownership_of,
    parse_job,
)
from ._policy import Tier
from ._tiers import Observation

__all__ = [
    "DEFAULT_MONITOR_BASE_URL",
    "MAX_BATCH_IDS",
    "MAX_BODY_BYTES",
    "GatewayMonitorService",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)

#: The documented default of ``GATEWAY_MONITOR_BASE_URL``.
DEFAULT_MONITOR_BASE_URL: Final = "https://gateway-monitor.3speak.tv/api"
#: ``POST jobs/batch-status`` answers 400 above this many ids.
MAX_BATCH_IDS: Final = 50

_TIER: Final = Tier.MONITOR.value
_VARIABLE: Final = "GATEWAY_MONITOR_BASE_URL"
#: Characters the monitor server would forward unescaped into the gateway URL (path, query,
#: fragment, escape); ids containing them are refused rather than trusted to a buggy server.
_SERVER_UNSAFE_CHARS: Final = frozenset("/\\?#%")
#: The routes Express matches before ``/jobs/:id`` (case-insensitively), so that no job of
#: these names can be read there (found by a differential test against Express, session 39).
_MONITOR_ROUTES: Final = frozenset({"available", "active", "completed"})


def _batch_entry_status(job_id: str, entry: object) -> str:
    """The status in one entry of a batch answer, in either shape a monitor answers.

    The contract documents ``{id: status}``; the published monitor's source answers, per
    id, the gateway's job status as an object (``{"job_id", "status", "progress",
    "encoder_id", ...}``: ``Object.fromEntries`` of its status map). Refusing the object
    left batch screening failing on every call against that server (safe, and useless). Any
    other shape, or an object naming another job, is malformed: screening then fails closed.
    """
    if isinstance(entry, Mapping):
        named = entry.get("job_id", job_id)
        status = entry.get("status")
        if named != job_id:
            raise MalformedAnswer(
                _TIER, f"batch entry for job {_short(job_id)} names another job")
        entry = status
    if not isinstance(entry, str):
        raise MalformedAnswer(_TIER, f"status of job {_short(job_id)} should be a string")
    return entry


def _short(server_text: object) -> str:
    """A server's id in a message: quoted (``repr`` escapes what is not printable) and bounded,
    so a hostile answer cannot flood the log with a 500 kB "id"."""
    text = str(server_text)
    return repr(text if len(text) <= 100 else text[:100] + "...")


def monitor_job_id(job_id: object) -> str:
    """Validate ``job_id`` (shared rules, dot segments included) plus what the monitor server
    cannot carry safely: characters it forwards unescaped, a trailing space its request to
    the gateway drops, and the names of its own routes. The path segment is then
    :func:`~verifier._http.job_segment`. (Found by differential tests against Express and
    axios, session 39: each made the monitor answer for another job, or never for this one.)"""
    value = validate_job_id(job_id)
    if any(c in _SERVER_UNSAFE_CHARS for c in value):
        raise InvalidInputError(
            "job id contains '/', '\\', '?', '#' or '%', which the monitor server forwards "
            "unescaped to the gateway; refused"
        )
    if value.endswith(" "):
        # The server builds the gateway's URL as `/gateway/jobstatus/${id}`, and the URL
        # parser drops a URL's trailing spaces: it would ask for (and answer, labelled as this
        # job) the job "a" when asked for "a " (".. " even becomes a dot segment).
        raise InvalidInputError("job id ends with a space, which the monitor server drops "
                                "when it asks the gateway: it would answer for another job")
    if value.lower() in _MONITOR_ROUTES:
        # Express routes /jobs/available (any case) before /jobs/:id: never this job.
        raise InvalidInputError(f"job id {value!r} is the name of a monitor route "
                                "(/jobs/available, /jobs/active, /jobs/completed): the "
                                "monitor cannot answer for it")
    return value


@dataclass(frozen=True, slots=True)
class _Reply(Answer):
    """An :class:`~verifier._http.Answer` plus the redacted URL it came from, for messages."""

    shown_url: str
    #: The tier's credentials (:attr:`~verifier._http.TierHttp.secrets`), kept out of messages.
    secrets: tuple[str, ...] = field(default=(), repr=False)


def _envelope(reply: _Reply) -> Mapping[str, Any]:
    body = read_json(reply, _TIER)
    if not isinstance(body, Mapping):
        raise MalformedAnswer(
            _TIER, f"answer from {reply.shown_url} should be an object, got {type(body).__name__}"
        )
    return body


def _is_monitor_not_found(reply: _Reply) -> bool:
    """True only for the monitor's own "not found" body: JSON, ``success: false``, "not found".

    A 404 without ``success`` (an HTML page from a proxy) or about a route (``"Route not
    found"``) is what a misconfigured base URL looks like: it says nothing about the job.
    """
    return _says_not_found(try_json(reply))


def _says_not_found(body: Any) -> bool:
    """``success: false`` with an error saying "not found", and not about a route. The
    documented service read any ``success: false`` as "not found"; a failure it reports the
    same way (``"Failed to fetch job details"``) is not an answer about the job (security
    review, session 16: it read as "no such job", exit 1 instead of 3), nor is a wrong base
    URL's ``"Route not found"`` (the rule aid's answers are read by:
    :func:`~verifier._http.is_service_error`)."""
    if not is_service_error(body):
        return False
    error = body.get("error")
    return isinstance(error, str) and "not found" in error.lower()


class GatewayMonitorService:
    """Client of the Gateway Monitor API (read-only; no auth).

    :param base_url: ``GATEWAY_MONITOR_BASE_URL``; validated (strictly) when ``enabled``.
    :param enabled: ``GATEWAY_MONITOR_ENABLED``; a disabled service raises
        ``TierUnavailable("monitor", "disabled")`` on every call instead of answering.
    :param client: an ``httpx.AsyncClient`` to use (and not close). Without one, the service
        creates its own and closes it in :meth:`aclose` / ``async with``.
    :param timeout: hard deadline in seconds for each call, whichever client is used.
    """

    tier: Tier = Tier.MONITOR

    def __init__(
        self,
        base_url: str = DEFAULT_MONITOR_BASE_URL,
        enabled: bool = True,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        # Checked even when disabled, and before TierHttp creates (and would leak) a client.
        positive_seconds(timeout, "timeout")
        self._enabled = bool(enabled)
        self._http: TierHttp | None = None
        if self._enabled:
            self._http = TierHttp(
                _TIER,
                base_url,
                variable=_VARIABLE,
                client=client,
                timeout=timeout,
                headers={"Accept": "application/json"},
                strict_url=True,
                hard_deadline=True,
            )
        # A disabled service may carry any placeholder; it never sends a request.
        self._base = self._http.base_url if self._http else str(base_url).rstrip("/")
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """The base URL for display: user info and query removed (see ``redact_url``)."""
        return redact_url(self._base)

    def is_enabled(self) -> bool:
        """The configured flag (``GATEWAY_MONITOR_ENABLED``), as the documented service had it."""
        return self._enabled

    def __repr__(self) -> str:
        return f"GatewayMonitorService(base_url={self.base_url!r}, enabled={self._enabled})"

    async def aclose(self) -> None:
        """Close the client this service created (never one the caller passed in). Idempotent."""
        self._closed = True
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> GatewayMonitorService:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _require_enabled(self) -> TierHttp:
        if self._http is None:
            raise TierUnavailable(_TIER, "disabled")
        if self._closed:
            raise TierUnavailable(_TIER, "service closed")
        return self._http

    # ------------------------------------------------------------------ transport

    async def _send(
        self, method: str, path: str, *, body: Mapping[str, Any] | None = None
    ) -> _Reply:
        """One request, no retry. Raises the tier errors for everything that is not a reply.

        429 and 5xx are raised here, before the body is read: whatever they say, they do not
        answer the question (a 500 comes for missing and existing jobs alike).
        """
        http = self._require_enabled()
        shown = redact_url(http.base_url + path)
        where = f"{method} {shown}"
        try:
            async with http.exchange(method, path, json_body=body, where=where) as response:
                status = response.status_code
                if status == 429:
                    raise TierRateLimited(
                        _TIER, f"HTTP 429 from {shown}", retry_after(response, http_date=True)
                    )
                if status >= 500:
                    raise TierUnavailable(_TIER, f"HTTP {status} from {shown}")
                content = await read_capped(response, _TIER, where)
        except VerifierError as exc:
            logger.debug("monitor %s failed: %s", where, exc)
            raise unchained(exc) from None
        return _Reply(status, response.headers, content, shown, http.secrets)

    @staticmethod
    def _unexpected(reply: _Reply) -> TierUnavailable:
        if reply.status_code == 404:
            return TierUnavailable(
                _TIER,
                f"HTTP 404 from {reply.shown_url} without the monitor's not-found body "
                "(route not found: is GATEWAY_MONITOR_BASE_URL right?)",
            )
        return TierUnavailable(
            _TIER, f"unexpected HTTP {reply.status_code} from {reply.shown_url}"
        )

    @classmethod
    def _found(cls, reply: _Reply) -> Mapping[str, Any] | None:
        """The envelope of a per-job answer, or ``None`` for the monitor's own "not found"
        (``success: false`` with an error saying so, on a 404 or a 200). Any other failure is
        :class:`TierUnavailable`: not found is the one failure that is an answer. Whether
        ``success`` is ``true`` and what ``data`` holds is the caller's to judge."""
        if reply.status_code == 404 and _is_monitor_not_found(reply):
            return None
        if reply.status_code != 200:
            raise cls._unexpected(reply)
        body = _envelope(reply)
        if body.get("success") is False:
            if _says_not_found(body):
                return None
            raise TierUnavailable(_TIER, f"{reply.shown_url}: HTTP 200 reporting a failure: "
                                  f"{_short(server_message(body, reply.secrets))}")
        return body

    # ------------------------------------------------------------------ documented API

    async def get_job_details(self, job_id: str) -> GatewayMonitorJob | None:
        """``GET {base}/jobs/{id}``: the job, or ``None`` when the monitor says it does not exist.

        ``None`` only for the monitor's own "not found" (``success: false`` with an error saying
        so, on a 404 or a 200); any other ``success: false`` is :class:`TierUnavailable`.
        A 200 may carry the server's synthetic stand-in built from the gateway (no ``_id``,
        blank video fields; it may name an id, a status and the gateway's owner): it is
        returned as parsed (``synthetic=True``) and the judgements never call it owned or safe.
        Raises ``InvalidInputError`` (before any request), ``TierTimeout``,
        ``TierRateLimited``, ``TierUnavailable`` or ``MalformedAnswer``.
        """
        self._require_enabled()
        job_id = monitor_job_id(job_id)
        reply = await self._send("GET", f"/jobs/{job_segment(job_id)}")
        body = self._found(reply)
        if body is None:
            return None
        if body.get("success") is not True:
            raise MalformedAnswer(_TIER, f"answer from {reply.shown_url} has no boolean 'success'")
        data = body.get("data")
        if data is None:
            raise MalformedAnswer(_TIER, f"answer from {reply.shown_url} has success but no data")
        job = parse_job(data, tier=_TIER)
        if job.id and job.id != job_id:
            # An answer about another job (demo jobs, a server-side path mix-up) is not ours.
            raise MalformedAnswer(
                _TIER, f"asked for job {job_id!r}, answer is about {_short(job.id)}")
        return job

    async def verify_job_ownership(self, job_id: str, expected_owner_did: str) -> OwnershipResult:
        """The documented ownership check over :meth:`get_job_details`.

        Errors propagate: a monitor that did not answer never becomes a result (defect 2).
        """
        self._require_enabled()
        expected = validate_did(expected_owner_did)
        return ownership_of(await self.get_job_details(job_id), expected)

    async def is_job_available_to_claim(self, job_id: str) -> AvailabilityResult:
        """The documented pre-claim check over :meth:`get_job_details`; errors propagate
        (the deployed encoder swallowed them and claimed anyway: defect 1)."""
        return availability_of(await self.get_job_details(job_id))

    async def get_job_status(self, job_id: str) -> dict[str, Any] | None:
        """``GET {base}/jobs/{id}/status``: the ``data`` mapping, or ``None`` on its 404.

        This route proxies the legacy gateway and never reads the database: ``None`` means
        "the gateway has no status", which the real server answers even for existing jobs, so
        it is not evidence that the job does not exist.
        """
        self._require_enabled()
        job_id = monitor_job_id(job_id)
        reply = await self._send("GET", f"/jobs/{job_segment(job_id)}/status")
        body = self._found(reply)
        if body is None:
            return None
        data = body.get("data")
        if body.get("success") is not True or not isinstance(data, Mapping):
            raise MalformedAnswer(_TIER, f"status answer from {reply.shown_url} has no data object")
        # Any id it names must be ours, whatever its type or key (``42``, ``""``, another job
        # under ``id``: each passed for an answer about our job; helper-130's review).
        if names_another_job(body, job_id):
            raise MalformedAnswer(_TIER, f"asked for job {job_id!r}, answer names another job")
        status = data.get("status")
        if status is not None and not isinstance(status, str):
            raise MalformedAnswer(_TIER, "status should be a string or null")
        return dict(data)

    async def batch_status(self, job_ids: Sequence[str]) -> dict[str, str]:
        """``POST {base}/jobs/batch-status``: ``{id: status}`` for up to 50 ids.

        The server silently drops every id it could not look up (and answers an empty map when
        the gateway is down, even for jobs in its database), so a **missing key means unknown**,
        never "does not exist". An empty request returns ``{}`` without a request.
        """
        self._require_enabled()
        if isinstance(job_ids, str | bytes) or not isinstance(job_ids, Sequence):
            raise InvalidInputError("job_ids must be a sequence of job id strings")
        if len(job_ids) > MAX_BATCH_IDS:
            raise InvalidInputError(f"at most {MAX_BATCH_IDS} ids per batch, got {len(job_ids)}")
        ids = [monitor_job_id(job_id) for job_id in job_ids]
        if not ids:
            return {}
        reply = await self._send("POST", "/jobs/batch-status", body={"jobIds": ids})
        if reply.status_code != 200:
            raise self._unexpected(reply)
        body = _envelope(reply)
        if not body:
            return {}  # the bare "{}" some deployments answer: nothing known
        data = body.get("data")
        if body.get("success") is not True or not isinstance(data, Mapping):
            raise MalformedAnswer(_TIER, f"batch answer from {reply.shown_url} has no data object")
        asked = set(ids)
        statuses: dict[str, str] = {}
        for key, entry in data.items():
            if key not in asked:
                raise MalformedAnswer(
                    _TIER, f"batch answer names job {_short(key)}, which was not asked")
            statuses[key] = _batch_entry_status(key, entry)
        return statuses

    async def health(self) -> bool:
        """``GET {base}/health``: ``True`` iff it answered 200, ``False`` on any other outcome.

        The real ``/health`` is **always** 200, whatever the state of the database or the
        gateway: ``True`` shows the server process is reachable, not that the monitor can
        answer about jobs. Never use it in place of an answer from :meth:`get_job_details`.
        """
        self._require_enabled()
        try:
            reply = await self._send("GET", "/health")
        except (TierTimeout, TierUnavailable, MalformedAnswer):
            return False
        return reply.status_code == 200

    # ------------------------------------------------------------------ TierClient

    async def observe(self, job_id: str) -> Observation:
        """The monitor's view of the job (``job=None``: it says the job does not exist)."""
        return Observation(Tier.MONITOR, await self.get_job_details(job_id))

    async def claim(self, job_id: str, *, conditional: bool = True) -> str | None:
        """Not supported: the monitor is a read-only mirror."""
        raise TierUnavailable(_TIER, "read-only tier")

    async def heartbeat(
        self, job_id: str, token: str | None, progress: Mapping[str, float]
    ) -> None:
        """Not supported: the monitor is a read-only mirror."""
        raise TierUnavailable(_TIER, "read-only tier")

    async def finish(
        self, job_id: str, token: str | None, result: Mapping[str, Any], *, fenced: bool = True
    ) -> None:
        """Not supported: the monitor is a read-only mirror."""
        raise TierUnavailable(_TIER, "read-only tier")

    async def release(
        self, job_id: str, token: str | None, reason: str, *, failed: bool
    ) -> None:
        """Not supported: the monitor is a read-only mirror."""
        raise TierUnavailable(_TIER, "read-only tier")

"""The legacy 3Speak gateway (``GATEWAY_URL``, routes under ``/api/v0/gateway/``).

The gateway hands out the jobs, so every node talks to it, but it is the weakest tier
(``docs/contract.md``, "Legacy gateway endpoints"):

* ``getJob`` returns the oldest queued job to *every* caller and reserves nothing;
* ``acceptJob`` is check-then-act: two concurrent accepts can both be answered OK and the last
  writer owns the job; a refused accept is a bare HTTP 500, not 409;
* ``pingJob`` from a non-owner is ignored but answered OK, so a successful ping proves nothing;
* ``finishJob`` checks the owner (500 "does not belong to you"); an empty 200 means success;
  2026 deployments answer ``{status: "success"|"error", message, error}``; the public NestJS
  gateway answers accept/ping with the bare text ``ok`` and finish with an empty 201. Those
  are the only success shapes: any other 2xx body (``{}``, ``null``, an unknown status) is
  :class:`~verifier.MalformedAnswer`, because a write we cannot confirm may not have landed;
* ``jobstatus/{id}`` may nest the job as ``{job, rank}``.

Writes are ``{"jws": ...}`` bodies signed by :class:`~verifier._identity.EncoderIdentity`.
This client reports what the gateway said and nothing more: an OK accept is *not* ownership
(the protocol verifies it through a stronger tier), and every failure is a
:class:`~verifier.TierError` or :class:`~verifier.ClaimRefused`, never "unassigned".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from ._errors import (
    ClaimRefused,
    InvalidInputError,
    MalformedAnswer,
    TierUnavailable,
    TierUnsupported,
)
from ._http import (
    Answer,
    TierHttp,
    is_gateway_error,
    job_segment,
    positive_seconds,
    raise_for_status,
    read_json,
    server_message,
    try_json,
)
from ._identity import EncoderIdentity
from ._ids import validate_cid, validate_job_id
from ._models import GatewayMonitorJob, check_offered_job, parse_job
from ._policy import Tier
from ._text import FIELD_LIMIT, printable
from ._tiers import Observation
from ._writes import WriteKind, unconfirmed_write

__all__ = ["LegacyGatewayClient", "validate_percent"]

_TIER: Final = "gateway"
_PREFIX: Final = "/api/v0/gateway/"
#: 4xx answers to a job write that mean "the gateway looked at the job and said no".
_REFUSING_4XX: Final = frozenset({400, 404, 409, 410, 422})
#: 401/403: the gateway did not accept our identity. A configuration problem, not a refusal.
_AUTH_STATUSES: Final = frozenset({401, 403})
_MAX_ERROR_TEXT: Final = 2000
#: 2xx statuses a write may succeed with: 200 (legacy, 2026), 201 (NestJS POST), 204 (empty).
#: What each job route's write does, for what its success must confirm (``verifier._writes``).
_WRITE_KINDS: Final[Mapping[str, WriteKind]] = {
    "acceptJob": "claim", "pingJob": "heartbeat", "finishJob": "finish",
    "rejectJob": "release", "failJob": "release", "cancelJob": "release"}
_WRITE_SUCCESS_STATUSES: Final = frozenset({200, 201, 204})


def validate_percent(value: object, what: str) -> float:
    """A progress percentage in [0, 100]; bools, NaN and out-of-range values are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{what} must be a number")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float (400 digits of JSON, say)
        raise InvalidInputError(f"{what} must be between 0 and 100") from None
    if not math.isfinite(number) or not 0.0 <= number <= 100.0:
        raise InvalidInputError(f"{what} must be between 0 and 100")
    return number


def _is_no_job(body: Any) -> bool:
    """The gateway's ways of saying "no job": empty body, ``null``, ``{}``, ``{job: null}``."""
    if body is None or body == {}:
        return True
    return isinstance(body, Mapping) and body.get("job", ...) is None and "id" not in body


def _parse_offered_job(body: Any) -> GatewayMonitorJob | None:
    """``getJob``/``myJob``: the offered job, or ``None`` when nothing is offered."""
    if _is_no_job(body):
        return None
    job = parse_job(body, tier=_TIER)
    try:
        check_offered_job(job)
    except InvalidInputError as exc:
        # Refused before any claim: an id that fails our checks, an input.uri the work could
        # not be given.
        # The id is named (escaped, cut short) so that an operator can find and report the
        # job (an operator review, 2026-12-04).
        shown = printable(str(job.id), FIELD_LIMIT)
        raise MalformedAnswer(_TIER, f"offered job {shown} refused: {exc}") from None
    return job


def _iso_now() -> str:
    """The wall-clock instant as JavaScript's ``Date.toISOString`` writes it (``...T...Z``, ms)."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class LegacyGatewayClient:
    """Client of the legacy gateway; also a :class:`~verifier.TierClient` for ``Tier.GATEWAY``.

    ``timeout`` applies to every call but ``getJob``/``myJob``, which use
    ``long_poll_timeout`` (the deployed encoder's 30 s). Pass ``client`` to share an
    ``httpx.AsyncClient``; otherwise one is created and closed by :meth:`aclose`.
    """

    tier: Tier = Tier.GATEWAY

    def __init__(
        self,
        base_url: str,
        identity: EncoderIdentity,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        long_poll_timeout: float = 30.0,
    ) -> None:
        if not isinstance(identity, EncoderIdentity):
            raise InvalidInputError("LegacyGatewayClient needs an EncoderIdentity")
        self.identity = identity
        # Checked before TierHttp creates (and would leak) its own httpx client.
        self._long_poll_timeout = positive_seconds(long_poll_timeout, "gateway long_poll_timeout")
        self._http = TierHttp(
            _TIER, base_url, variable="GATEWAY_URL", client=client, timeout=timeout,
            strict_url=True,  # a bad URL is a ConfigurationError now, not an httpx error later
            # The timeout bounds the whole exchange: a server that drips its answer one byte
            # at a time held a shutdown's release for minutes (operator review, session 16).
            hard_deadline=True,
        )

    @property
    def did(self) -> str:
        return self.identity.did

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> LegacyGatewayClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"LegacyGatewayClient({self._http!r}, did={self.did!r})"

    # ------------------------------------------------------------------ reads

    async def _read(self, route: str, *, long_poll: bool = False, none_on_404: bool) -> Any:
        timeout = self._long_poll_timeout if long_poll else None
        response = await self._http.send("GET", _PREFIX + route, time_limit=timeout)
        if response.status_code == 404 and none_on_404:
            _from_the_gateway(response, route, self._http.secrets)
            return None
        raise_for_status(response, _TIER, route, self._http.secrets)
        body = read_json(response, _TIER, empty=None)
        if isinstance(body, Mapping) and body.get("status") == "error" and "id" not in body:
            raise TierUnavailable(_TIER, f"{route}: gateway reported an error: "
                                         f"{server_message(body, self._http.secrets)}")
        return body

    async def stats(self) -> dict[str, Any]:
        """``GET stats``: the gateway's counters, as it sent them."""
        body = await self._read("stats", none_on_404=False)
        if not isinstance(body, dict):
            raise MalformedAnswer(_TIER, "stats: expected a JSON object")
        return body

    async def get_job(self) -> GatewayMonitorJob | None:
        """``GET getJob``: the oldest queued job (offered to every caller), or ``None``."""
        return _parse_offered_job(await self._read("getJob", long_poll=True, none_on_404=True))

    async def my_job(self) -> GatewayMonitorJob | None:
        """``POST myJob``: the job pre-assigned to us (2026), or ``None``.

        As the deployed encoder and gateway speak it (``docs/contract.md``, Legacy gateway
        endpoints): the body is ``{"jws": ...}`` signed over ``{"timestamp": <ISO 8601>}`` (the
        gateway picks the job by the signer's DID), the answer ``{success, job | null}``; a 404
        is "no job", except the gateway's "Encoder not registered", which no poll will cure.
        """
        body = {"jws": self.identity.sign_jws({"timestamp": _iso_now()})}
        secrets = _with_signature(self._http.secrets, body["jws"])
        response = await self._http.send("POST", _PREFIX + "myJob", json_body=body,
                                         time_limit=self._long_poll_timeout)
        status = response.status_code
        answer = try_json(response)
        if status == 404:
            if "not registered" in server_message(answer).lower():
                raise TierUnavailable(_TIER, "myJob: the gateway does not know this encoder "
                                             "(HTTP 404: encoder not registered); register the "
                                             "node's DID with the gateway")
            _from_the_gateway(response, "myJob", secrets)
            return None
        if status in _AUTH_STATUSES:
            said = server_message(answer, secrets)
            raise TierUnavailable(
                _TIER, f"myJob: the gateway refused this encoder (HTTP {status}: {said}); "
                "check ENCODER_PRIVATE_KEY and that the node is registered and enabled")
        raise_for_status(response, _TIER, "myJob", secrets)
        offered = read_json(response, _TIER, empty=None)
        if isinstance(offered, Mapping) and "success" in offered and "id" not in offered:
            if offered["success"] is not True:
                raise TierUnavailable(_TIER, "myJob failed: "
                                             f"{server_message(offered, secrets)}")
            offered = offered.get("job")
        return _parse_offered_job(offered)

    async def job_status(self, job_id: str) -> GatewayMonitorJob | None:
        """``GET jobstatus/{id}``: the gateway's record, ``None`` on 404 or an empty answer.

        A record naming a different job is malformed, not "this job": a lying or misrouted
        answer must not be read as ownership of the job we asked about.
        """
        segment = job_segment(job_id)
        body = await self._read(f"jobstatus/{segment}", none_on_404=True)
        if _is_no_job(body):
            return None
        job = parse_job(body, tier=_TIER)
        if job.id and job.id != job_id:
            raise MalformedAnswer(_TIER, "jobstatus answered about a different job")
        return job

    # ------------------------------------------------------------------ writes

    async def _write(
        self, route: str, payload: Mapping[str, Any], *, refused_on_500: bool, job: bool = True
    ) -> None:
        """POST ``{"jws": sign(payload)}`` and map the answer.

        ``refused_on_500``: the contract's generic 500 means "refused" for accept, and for
        finish, reject and fail when it says "does not belong to you". For other routes a 500
        is an outage, like 502/503/504.
        """
        body = {"jws": self.identity.sign_jws(payload)}
        secrets = _with_signature(self._http.secrets, body["jws"])
        response = await self._http.send("POST", _PREFIX + route, json_body=body)
        status = response.status_code
        refusing_500 = job and status == 500 and refused_on_500
        if job and (status in _REFUSING_4XX or (refusing_500 and route != "acceptJob")):
            # A 500 too, but on acceptJob: a proxy's error page (or a route miss) never
            # reached the gateway's handler, and read as a refusal it made a give-back
            # "answered" while the job was still ours (an adversarial review, 2026-12-05).
            # acceptJob's refusal is a generic 500 whose body nobody documented, and there
            # either reading is safe: refused, or unknown and settled.
            _from_the_gateway(response, route, secrets)
        if refusing_500 and route != "acceptJob" and _NOT_THE_OWNER not in server_message(
                try_json(response)).lower():
            # finishJob refuses a non-owner with "does not belong to you" (docs/contract.md);
            # any other 500 is the gateway failing, perhaps after its write: unknown. The same
            # for a give-back: a 500 "Internal server error" to failJob was read as refused,
            # and a job still ours reported given back (helper-131's review, session 44).
            raise TierUnavailable(_TIER, f"{route}: HTTP 500 without the gateway's not-the-"
                                  "owner answer; the write may have landed")
        if job and (status in _REFUSING_4XX or refusing_500):
            said = server_message(try_json(response), secrets)
            raise ClaimRefused(_TIER, f"{route} refused (HTTP {status}): {said}")
        if status in _AUTH_STATUSES:
            raise TierUnavailable(
                _TIER, f"{route}: the gateway did not accept our identity (HTTP {status}); "
                "check ENCODER_PRIVATE_KEY and that the node is registered"
            )
        raise_for_status(response, _TIER, route, secrets)
        if status not in _WRITE_SUCCESS_STATUSES:
            # 202 "accepted for later", 206, ...: not the documented 200/201, so not a
            # confirmation that the write happened.
            raise MalformedAnswer(_TIER, f"{route}: HTTP {status} is not a documented success")
        raw = response.content.strip(b" \t\r\n")  # JSON's whitespace: not \x0b or \x0c
        if not raw or raw.lower() in (b"ok", b'"ok"'):
            # An empty body (legacy finish) or the bare text ``ok`` (the public NestJS
            # gateway's accept and ping) is the documented success.
            return
        answer = read_json(response, _TIER, empty=None)
        if not isinstance(answer, Mapping):
            # ``null``, a list, a bare number: not one of the documented success shapes.
            raise MalformedAnswer(_TIER, f"{route}: expected a JSON object, 'ok' or an empty body")
        outcome = answer.get("status")
        refused = (
            outcome == "error"
            or ("success" in answer and answer["success"] is not True)
            or bool(answer.get("error"))
        )
        if refused:
            said = server_message(answer, secrets)
            if not job:
                raise TierUnavailable(_TIER, f"{route} failed: {said}")
            raise ClaimRefused(_TIER, f"{route} refused: {said}")
        if outcome != "success":
            # Only ``status: "success"`` confirms a write. ``{}``, ``{"message": ...}`` or an
            # unknown status says neither yes nor no: the write's outcome is unknown.
            raise MalformedAnswer(_TIER, f"{route}: the answer does not say 'success'")
        problem = unconfirmed_write(answer, payload["job_id"], self.identity.did,
                                    kind=_WRITE_KINDS[route]) if job else None
        if problem is not None:
            # A success about another job or owner, a job given back, nothing matched
            # (misrouted, a buggy proxy) confirms nothing about ours, as aid's client reads
            # it: a finish counted as landed when it may not have would leave the job to be
            # reassigned and processed again (a security review, session 28; the owner,
            # status and counts since helper-131's review, session 44).
            raise MalformedAnswer(_TIER, f"{route}: {problem}")

    async def accept_job(self, job_id: str) -> None:
        """``acceptJob``. OK is not ownership (last writer wins); 500 → :class:`ClaimRefused`."""
        await self._write(
            "acceptJob", {"job_id": validate_job_id(job_id)}, refused_on_500=True
        )

    async def reject_job(self, job_id: str) -> None:
        """``rejectJob``: give the job back to the queue."""
        await self._write(
            "rejectJob", {"job_id": validate_job_id(job_id)}, refused_on_500=True
        )

    async def cancel_job(self, job_id: str) -> None:
        """``cancelJob``. Not in the contract's list of 500-means-refused routes: 500 is an
        outage here."""
        await self._write(
            "cancelJob", {"job_id": validate_job_id(job_id)}, refused_on_500=False
        )

    async def fail_job(self, job_id: str, error: str) -> None:
        """``failJob {job_id, error}``: back to the queue with ``attempt_count + 1``."""
        if not isinstance(error, str):
            raise InvalidInputError("failJob error must be a string")
        payload = {"job_id": validate_job_id(job_id), "error": error[:_MAX_ERROR_TEXT]}
        await self._write("failJob", payload, refused_on_500=True)

    async def finish_job(self, job_id: str, cid: str) -> None:
        """``finishJob {job_id, output: {cid}}``; the server checks that we own the job."""
        payload = {"job_id": validate_job_id(job_id), "output": {"cid": validate_cid(cid)}}
        await self._write("finishJob", payload, refused_on_500=True)

    async def ping_job(self, job_id: str, progress_pct: float, download_pct: float) -> None:
        """``pingJob {job_id, progressPct, download_pct}``. Answered OK even for non-owners."""
        payload = {
            "job_id": validate_job_id(job_id),
            "progressPct": validate_percent(progress_pct, "progress_pct"),
            "download_pct": validate_percent(download_pct, "download_pct"),
        }
        await self._write("pingJob", payload, refused_on_500=False)

    async def node_heartbeat(self) -> None:
        """``heartbeat``: the node is alive. Named apart from the per-job TierClient
        :meth:`heartbeat`, which is a ``pingJob``."""
        await self._write("heartbeat", {}, refused_on_500=False, job=False)

    # ------------------------------------------------------------------ TierClient

    async def observe(self, job_id: str) -> Observation:
        """The gateway's ``jobstatus`` view. Weakest tier: it is known to lie."""
        return Observation(Tier.GATEWAY, await self.job_status(job_id))

    async def claim(self, job_id: str, *, conditional: bool = True) -> str | None:
        """``acceptJob``; no token (the gateway keeps no assignment epoch).

        The gateway's accept is check-then-act on the server; only the protocol's settle and
        verification make it safe. A blind (``conditional=False``) claim is a simulator-only
        defect model and is refused here.
        """
        if not conditional:
            raise TierUnsupported(_TIER, "unconditional claims are not supported")
        await self.accept_job(job_id)
        return None

    async def heartbeat(
        self, job_id: str, token: str | None, progress: Mapping[str, float]
    ) -> None:
        """``pingJob`` with ``progress['pct']`` and ``progress['download_pct']`` (default 0)."""
        if not isinstance(progress, Mapping):
            raise InvalidInputError(f"progress must be a mapping, got {type(progress).__name__}")
        await self.ping_job(
            job_id, progress.get("pct", 0.0), progress.get("download_pct", 0.0)
        )

    async def finish(
        self, job_id: str, token: str | None, result: Mapping[str, Any], *, fenced: bool = True
    ) -> None:
        """``finishJob`` with ``result['cid']``. The server's owner check is the fence; it
        applies whether or not ``fenced`` is asked for."""
        if not isinstance(result, Mapping) or "cid" not in result:
            raise InvalidInputError("gateway finish needs a result with a 'cid'")
        await self.finish_job(job_id, result["cid"])

    async def release(
        self, job_id: str, token: str | None, reason: str, *, failed: bool
    ) -> None:
        """``failJob`` when ``failed``, else ``rejectJob``: each sends the job back to the
        queue with ``attempt_count + 1`` (docs/contract.md, "What a give-back costs")."""
        if failed:
            await self.fail_job(job_id, reason)
        else:
            await self.reject_job(job_id)


def _with_signature(secrets: tuple[str, ...], jws: str) -> tuple[str, ...]:
    """``secrets`` plus a request's JWS and its signature, for the messages about its answer.
    The JWS has no nonce and no expiry, and its header (the DID) and payload (a job id) are
    no secret: the signature alone rebuilds a body the gateway takes as ours, for ever
    (an adversarial review, session 45)."""
    return (*secrets, jws, jws.rpartition(".")[2])


#: What ``finishJob``'s 500 says when the job is not ours (lower case).
_NOT_THE_OWNER: Final = "does not belong"


def _from_the_gateway(response: Answer, route: str, secrets: tuple[str, ...]) -> None:
    """A 4xx that gives an answer about the job (a refusal, "no job") must be the gateway's
    own: an empty body, or one :func:`~verifier._http.is_gateway_error` recognises. A proxy's
    page or a route miss raises :class:`TierUnavailable`: the request never reached the
    gateway's handler, so the job is neither refused nor absent (fail closed: a write's
    outcome stays unknown, a poll finds nothing it can trust)."""
    if not response.content.strip() or is_gateway_error(try_json(response)):
        return
    raise TierUnavailable(
        _TIER, f"{route}: HTTP {response.status_code} that is not the gateway's own answer "
        f"({server_message(try_json(response), secrets)}); is GATEWAY_URL right, or a proxy in "
        "the way?")

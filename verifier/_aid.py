"""Gateway Aid (``/aid/v1``): the approved-encoder API that writes the database directly.

Aid is the strongest tier a community node can have (``docs/contract.md``, "Gateway Aid"):

* ``claim-job`` is an atomic conditional update (``id``, ``status: pending``, no
  ``assigned_to``) → 200 with the assignment or **409** ``JOB_ALREADY_ASSIGNED``;
* ``update-job`` (the heartbeat) and ``complete-job`` filter on the owner, so a refusal there
  means we no longer hold the job;
* ``GET job/{id}`` answers ``{job: {..., is_owned_by_requester}}``; ``list-jobs`` hides
  ``status`` and ``assigned_to``;
* identity is the unsigned header ``X-Encoder-DID``; an unknown or inactive DID is answered
  with ``data.code`` ``ENCODER_NOT_AUTHORIZED`` / ``ENCODER_INACTIVE``. That is a
  configuration problem (:class:`~verifier.TierUnavailable`), never a verdict on the job;
* a job with no heartbeat for 1 h goes back to ``pending`` with the assignment removed. There
  is no release endpoint.

The published aid server reads the DID from the body field ``encoder_did``; the contract says
the header. Every POST carries both, so either server version identifies us.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, Final

import httpx

from ._errors import (
    ClaimRefused,
    InvalidInputError,
    MalformedAnswer,
    TierUnavailable,
    TierUnsupported,
)
from ._gateway import validate_percent
from ._http import (
    Answer,
    TierHttp,
    error_code,
    is_service_error,
    job_segment,
    raise_for_status,
    read_json,
    server_message,
    try_json,
)
from ._ids import normalize_did, validate_cid, validate_did, validate_job_id
from ._models import (
    GatewayMonitorJob,
    check_offered_job,
    parse_job,
)
from ._policy import Tier
from ._tiers import Observation
from ._writes import unconfirmed_write

__all__ = ["CONFIGURATION_CODES", "GatewayAidClient"]

logger = logging.getLogger(__name__)
#: The most entries of one listing read (the rest wait for the next poll).
MAX_LISTED: Final = 1000

_TIER: Final = "aid"
_PREFIX: Final = "/aid/v1/"
#: Error codes that mean "this node is not allowed to use aid": fix the configuration.
CONFIGURATION_CODES: Final = frozenset({"ENCODER_NOT_AUTHORIZED", "ENCODER_INACTIVE"})
#: Answers to an owner-conditioned write that mean "not yours (any more)" (a 404 only when it
#: is aid's own error: :func:`is_service_error`).
_LOST_STATUSES: Final = frozenset({403, 404, 409})
#: The successes a write may be confirmed by: 202 "accepted for later", 206 and the like do not
#: say the write happened (as the gateway's ``_WRITE_SUCCESS_STATUSES``; security review,
#: session 16: aid renews the lease on a heartbeat's success directly).
_SUCCESS_STATUSES: Final = frozenset({200, 201})
_MAX_STATUS_LENGTH: Final = 32


def _is_job_not_found(answer: Any) -> bool:
    """True only for a 404 whose JSON body says *the job* is not found, in aid's own shape.

    Like the monitor (``_monitor._is_monitor_not_found``): a 404 ``{"error": "Route not
    found"}`` or a proxy's HTML page means the base URL is wrong, and reading it as "the job
    does not exist" would let a misconfigured node call any job free. The body must be aid's
    error (``success: false``: the default 404 of NestJS, Fastify or a bare
    ``{"message": "Not Found"}`` is not, security review, session 16), say "not found" (in
    ``error``/``message`` or a ``*NOT_FOUND`` code) and not be about a route.
    """
    if not is_service_error(answer):
        return False
    said = server_message(answer).lower()
    code = str(error_code(answer) or "").upper()
    return "not found" in said or code.endswith("NOT_FOUND")


def _listed_job(item: object, dropped: list[str]) -> GatewayMonitorJob | None:
    """One entry of a listing, parsed; ``None`` when it is malformed (the reason, never the
    value, is appended to ``dropped``). Failing the whole listing for one entry (an int id, a
    null, a list where ``input`` belongs) hid every valid job listed with it for as long as
    the entry stayed listed (an adversarial review of the encoder loop, session 21)."""
    try:
        return parse_job(item, tier=_TIER)
    except MalformedAnswer as exc:
        dropped.append(str(exc))
        return None


def _usable_offer(job: GatewayMonitorJob, route: str) -> bool:
    """Whether a listed job passes the checks of the gateway's offered job
    (:func:`~verifier._models.check_offered_job`): its id goes into later URLs, bodies and log
    lines, where a newline or an escape sequence would forge log lines or rewrite the
    operator's terminal, and its ``input.uri`` into the work command's environment.

    An unusable job is dropped with a warning rather than failing the whole listing (what the
    gateway's single offer does): one bad entry must not hide the valid jobs listed with it.
    The warning gives the reason only, never the id or the URI itself.
    """
    try:
        check_offered_job(job)
    except InvalidInputError as exc:
        logger.warning("aid %s: dropped an unusable job (%s)", route, exc)
        return False
    return True


class GatewayAidClient:
    """Client of Gateway Aid; also a :class:`~verifier.TierClient` for ``Tier.AID``.

    ``encoder_did`` is sent as ``X-Encoder-DID`` on every request. Pass ``client`` to share an
    ``httpx.AsyncClient``; otherwise one is created and closed by :meth:`aclose`.
    """

    tier: Tier = Tier.AID

    def __init__(
        self,
        base_url: str,
        encoder_did: str,
        client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.did = validate_did(encoder_did)
        self._http = TierHttp(
            _TIER,
            base_url,
            variable="GATEWAY_AID_BASE_URL",
            strict_url=True,  # a bad URL is a ConfigurationError now, not an httpx error later
            client=client,
            timeout=timeout,
            headers={"X-Encoder-DID": self.did},
            hard_deadline=True,  # as the gateway's: a dripping server cannot hold a caller
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> GatewayAidClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"GatewayAidClient({self._http!r}, did={self.did!r})"

    # ------------------------------------------------------------------ plumbing

    async def _call(
        self, method: str, route: str, body: Mapping[str, Any] | None = None
    ) -> tuple[Answer, Any]:
        """Send, then take out the answers every route shares.

        Configuration codes win over any status: a 403 ``ENCODER_NOT_AUTHORIZED`` on
        ``update-job`` is "this node cannot use aid", not "you lost the job".
        """
        json_body = None if body is None else {**body, "encoder_did": self.did}
        response = await self._http.send(method, _PREFIX + route, json_body=json_body)
        if 200 <= response.status_code < 300:
            answer = read_json(response, _TIER)
        else:
            answer = try_json(response)
        # Decided on the code as said, shown concealed: concealed first, a short password
        # inside a code ("INACTIVE") hid what the code means (an adversarial review, session 46).
        if error_code(answer) in CONFIGURATION_CODES:
            code = error_code(answer, self._http.secrets)
            said = server_message(answer, self._http.secrets)
            raise TierUnavailable(
                _TIER, f"{route}: {code}: {said} (this DID is not "
                "approved or not active for Gateway Aid; a configuration problem)"
            )
        return response, answer

    def _success(self, route: str, answer: Any, status: int = 200) -> Mapping[str, Any]:
        """A 200/201 answer: a JSON object whose ``success`` is true; ``false`` is a refusal.
        Another 2xx confirms nothing (outcome unknown)."""
        if status not in _SUCCESS_STATUSES:
            raise MalformedAnswer(_TIER, f"{route}: HTTP {status} is not a documented success")
        if not isinstance(answer, Mapping):
            raise MalformedAnswer(_TIER, f"{route}: expected a JSON object")
        success = answer.get("success")
        if success is False:
            raise ClaimRefused(_TIER, f"{route} refused: "
                                      f"{server_message(answer, self._http.secrets)}")
        if success is not True:
            raise MalformedAnswer(_TIER, f"{route}: answer has no boolean 'success'")
        return answer

    def _not_a_route(self, route: str, status: int, answer: Any) -> None:
        """A 404 that is not aid's own error (a wrong base URL: a framework's or a proxy's
        page), or a 403/409 that is not (a WAF's page), says nothing about the job:
        unavailable, never a refusal (a WAF page on a heartbeat cancelled healthy work, and
        aid keeps a job its encoder gave up for an hour: adversarial review, session 22)."""
        if status in _LOST_STATUSES and not is_service_error(answer):
            raise TierUnavailable(
                _TIER, f"{route}: HTTP {status} that is not aid's own answer "
                f"({server_message(answer, self._http.secrets)}); is GATEWAY_AID_BASE_URL "
                "right, or a proxy in "
                "the way?")

    def _refusal(self, route: str, status: int, answer: Any) -> ClaimRefused:
        said = server_message(answer, self._http.secrets)
        code = error_code(answer, self._http.secrets)
        detail = f"{code}: {said}" if code else said
        return ClaimRefused(_TIER, f"{route} refused (HTTP {status}): {detail}")

    # ------------------------------------------------------------------ endpoints

    async def health(self) -> dict[str, Any]:
        """``GET health``. Only a liveness hint: it says nothing about any job."""
        response, answer = await self._call("GET", "health")
        raise_for_status(response, _TIER, "health", self._http.secrets)
        if not isinstance(answer, dict):
            raise MalformedAnswer(_TIER, "health: expected a JSON object")
        return answer

    async def list_jobs(self) -> list[GatewayMonitorJob]:
        """``POST list-jobs``: claimable jobs. Status and owner are hidden (``None``)."""
        route = "list-jobs"
        response, answer = await self._call("POST", route, {})
        raise_for_status(response, _TIER, route, self._http.secrets)
        jobs = self._success(route, answer).get("jobs")
        if not isinstance(jobs, list):
            raise MalformedAnswer(_TIER, f"{route}: 'jobs' should be a list")
        if len(jobs) > MAX_LISTED:
            # Parsing is on the event loop, where the guard's lease timers run: a listing of
            # 170,000 malformed entries held it for 9 s (session 21's review). An encoder takes
            # a few jobs a poll; the rest are listed again at the next.
            logger.warning("aid %s: %d jobs listed; the first %d are read", route, len(jobs),
                           MAX_LISTED)
            jobs = jobs[:MAX_LISTED]
        dropped: list[str] = []
        offered = (_listed_job(item, dropped) for item in jobs)
        usable = [job for job in offered if job is not None and _usable_offer(job, route)]
        if dropped:
            # One line a listing, not one an entry.
            logger.warning("aid %s: dropped %d malformed entr%s (first: %s)", route,
                           len(dropped), "y" if len(dropped) == 1 else "ies", dropped[0])
        return usable

    async def claim_job(self, job_id: str) -> dict[str, Any]:
        """``POST claim-job``: the atomic conditional claim; the assignment on success.

        409 (``JOB_ALREADY_ASSIGNED``) and 404 → :class:`ClaimRefused`. Any other non-2xx
        (400 included: the server did not take the request) → :class:`TierUnavailable`, which
        says nothing about the job. A success naming another owner or another job is malformed
        (outcome unknown), never ours.
        """
        job_id = validate_job_id(job_id)
        route = "claim-job"
        response, answer = await self._call("POST", route, {"job_id": job_id})
        if response.status_code in (404, 409):
            self._not_a_route(route, response.status_code, answer)
            raise self._refusal(route, response.status_code, answer)
        raise_for_status(response, _TIER, route, self._http.secrets)
        assignment = dict(self._success(route, answer, response.status_code))
        owner = assignment.get("assigned_to")
        if owner is not None and normalize_did(owner) != normalize_did(self.did):
            raise MalformedAnswer(_TIER, f"{route}: success names another owner")
        answered_id = assignment.get("job_id", assignment.get("id"))
        if answered_id != job_id:
            # "200 with the assignment" (contract): a success that does not name our job does
            # not confirm the write; its outcome is unknown, never ours.
            raise MalformedAnswer(_TIER, f"{route}: success does not name the job claimed")
        problem = unconfirmed_write(assignment, job_id, self.did, kind="claim")  # nested too
        if problem is not None:
            raise MalformedAnswer(_TIER, f"{route}: {problem}")
        return assignment

    async def update_job(
        self, job_id: str, status: str, pct: float, download_pct: float
    ) -> None:
        """``POST update-job``: the heartbeat. The server filters on the owner, so 403/404/409
        (or ``success: false``) mean the job is no longer ours."""
        job_id = validate_job_id(job_id)
        if not isinstance(status, str) or not status or len(status) > _MAX_STATUS_LENGTH:
            raise InvalidInputError("update-job status must be a short non-empty string")
        body = {
            "job_id": job_id,
            "status": status,
            "progress": {
                "pct": validate_percent(pct, "pct"),
                "download_pct": validate_percent(download_pct, "download_pct"),
            },
        }
        await self._owner_write("update-job", body)

    async def complete_job(self, job_id: str, cid: str) -> None:
        """``POST complete-job {job_id, result: {cid}}``: owner-conditioned on the server."""
        body = {"job_id": validate_job_id(job_id), "result": {"cid": validate_cid(cid)}}
        await self._owner_write("complete-job", body)

    async def get_job(self, job_id: str) -> tuple[GatewayMonitorJob | None, bool]:
        """``GET job/{id}`` → ``(job, is_owned_by_requester)``; ``(None, False)`` on 404.

        A missing ownership flag reads as ``False``: absence never proves ownership.
        """
        route = f"job/{job_segment(job_id)}"
        response, answer = await self._call("GET", route)
        if response.status_code == 404:
            if _is_job_not_found(answer):
                return None, False
            # Any other 404 (an unknown route: a wrong base URL) says nothing about the job.
            raise TierUnavailable(
                _TIER, "job: HTTP 404 that is not 'job not found' "
                f"({server_message(answer, self._http.secrets)}); "
                "is GATEWAY_AID_BASE_URL right?"
            )
        raise_for_status(response, _TIER, "job", self._http.secrets)
        if not isinstance(answer, Mapping) or answer.get("success") is False:
            raise MalformedAnswer(_TIER, "job: expected {job: {...}}")
        raw = answer.get("job")
        if not isinstance(raw, Mapping):
            raise MalformedAnswer(_TIER, "job: answer has no 'job' object")
        flag = raw.get("is_owned_by_requester", False)
        if not isinstance(flag, bool):
            raise MalformedAnswer(_TIER, "job: is_owned_by_requester should be a boolean")
        job = parse_job({k: v for k, v in raw.items() if k != "is_owned_by_requester"},
                        tier=_TIER)
        if job.id != job_id:
            raise MalformedAnswer(_TIER, "job: answered about a different job, or none")
        return job, flag

    async def _owner_write(self, route: str, body: Mapping[str, Any]) -> None:
        """An owner-conditioned write: lost on 403/404/409, confirmed only by a success that
        names no other job.

        A ``success: true`` that names a different job anywhere aid puts one, or says that it
        matched or changed nothing (a misrouted or buggy answer), does not confirm *our* write:
        its outcome is unknown, so :class:`MalformedAnswer`. The protocol counts an aid
        heartbeat's OK as a renewed lease, so a confirmation too easily given keeps work
        running past it (adversarial review, session 22).
        """
        response, answer = await self._call("POST", route, body)
        self._not_a_route(route, response.status_code, answer)
        if response.status_code in _LOST_STATUSES:
            raise self._refusal(route, response.status_code, answer)
        raise_for_status(response, _TIER, route, self._http.secrets)
        confirmed = self._success(route, answer, response.status_code)
        problem = unconfirmed_write(confirmed, body["job_id"], self.did,
                                    kind="finish" if route == "complete-job" else "heartbeat")
        if problem is not None:
            raise MalformedAnswer(_TIER, f"{route}: {problem}")

    # ------------------------------------------------------------------ TierClient

    async def observe(self, job_id: str) -> Observation:
        """Aid's view (it reads the database directly).

        When the owner is hidden, ``is_owned_by_requester`` fills it in with our DID only when
        true; otherwise it stays ``None`` (unknown, which the protocol treats as *wait*). An
        answer whose owner contradicts the flag is malformed.
        """
        job, owned = await self.get_job(job_id)
        if job is None:
            return Observation(Tier.AID, None)
        if job.assigned_to is None:
            if owned:
                job = dataclasses.replace(job, assigned_to=self.did)
        elif (normalize_did(job.assigned_to) == normalize_did(self.did)) != owned:
            raise MalformedAnswer(_TIER, "job: assigned_to contradicts is_owned_by_requester")
        return Observation(Tier.AID, job)

    async def claim(self, job_id: str, *, conditional: bool = True) -> str | None:
        """``claim-job``; the token is the assignment time when the answer carries one.

        ``observe`` reports no token: ``GET job`` may format or omit the date differently, and a
        mismatch would read as someone else's assignment and cancel our own work.
        """
        if not conditional:
            raise TierUnsupported(_TIER, "unconditional claims are not supported")
        assignment = await self.claim_job(job_id)
        for key in ("assigned_at", "assigned_date"):
            value = assignment.get(key)
            if isinstance(value, str) and value:
                return value
        return None

    async def heartbeat(
        self, job_id: str, token: str | None, progress: Mapping[str, float]
    ) -> None:
        """``update-job`` with status ``running``."""
        if not isinstance(progress, Mapping):
            raise InvalidInputError(f"progress must be a mapping, got {type(progress).__name__}")
        await self.update_job(
            job_id, "running", progress.get("pct", 0.0), progress.get("download_pct", 0.0)
        )

    async def finish(
        self, job_id: str, token: str | None, result: Mapping[str, Any], *, fenced: bool = True
    ) -> None:
        """``complete-job`` with ``result['cid']``; the server's owner filter is the fence."""
        if not isinstance(result, Mapping) or "cid" not in result:
            raise InvalidInputError("aid finish needs a result with a 'cid'")
        await self.complete_job(job_id, result["cid"])

    async def release(
        self, job_id: str, token: str | None, reason: str, *, failed: bool
    ) -> None:
        raise TierUnsupported(
            _TIER, "no release endpoint; the job returns to pending after 1 h without a heartbeat"
        )




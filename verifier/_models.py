"""Job records, status vocabularies, and the documented ownership semantics.

Everything here is pure: parsing a job out of an untrusted JSON/BSON mapping, and the two
documented judgements (:func:`ownership_of`, :func:`availability_of`) that the monitor tier and
the database tier share, so the semantics are written once.

Parsing is tolerant of every quirk listed in ``docs/contract.md`` (omitted dates, null or
absent owner, numeric progress, extra legacy fields, both status vocabularies, ``{job, rank}``
nesting, the monitor's synthetic stand-in job) and strict about types: a field of the wrong
type is a :class:`~verifier.MalformedAnswer`, never a silent default, because a default is how
an incomplete answer turns into "safe".

The monitor's stand-in (``docs/contract.md``, "Synthetic stand-in jobs") is recognised by its
fingerprint, not by missing fields: it can carry an id, a status and an owner, and that owner is
the legacy gateway's belief, exactly the lie a verifier must not trust. See :func:`parse_job`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ._errors import InvalidInputError, MalformedAnswer
from ._ids import normalize_did, validate_job_id
from ._policy import Tier

__all__ = [
    "CLAIMABLE_STATUSES",
    "DONE_STATUSES",
    "KNOWN_STATUSES",
    "MAX_INPUT_URI_LENGTH",
    "NOT_HELD_STATUSES",
    "PROCESSABLE_STATUSES",
    "AvailabilityResult",
    "GatewayMonitorJob",
    "JobProgress",
    "OwnershipResult",
    "availability_of",
    "check_offered_job",
    "ownership_of",
    "parse_job",
]

#: Statuses in which nobody owns the job and it waits for a claim (gateway and aid vocabularies).
CLAIMABLE_STATUSES: Final = frozenset({"created", "pending", "queued", "unassigned"})
#: Statuses in which the owner may process (the documented ``isSafeToProcess`` set).
PROCESSABLE_STATUSES: Final = frozenset({"assigned", "running"})
#: Statuses after a result was accepted.
DONE_STATUSES: Final = frozenset({"uploading", "complete", "completed"})
#: Statuses in which whoever the record names no longer holds the job: back in the queue,
#: given up or withdrawn (``isSafeToProcess`` is false, and nobody may go on processing).
NOT_HELD_STATUSES: Final = CLAIMABLE_STATUSES | frozenset({"failed", "cancelled", "deleted"})
KNOWN_STATUSES: Final = NOT_HELD_STATUSES | PROCESSABLE_STATUSES | DONE_STATUSES

_DATE_FIELDS: Final = (
    "created_at",
    "assigned_date",
    "last_pinged",
    "start_date",
    "completed_at",
)
_KNOWN_FIELDS: Final = frozenset(
    {
        "_id", "id", "status", "assigned_to", "metadata", "storageMetadata", "input",
        "result", "progress", "attempt_count", *_DATE_FIELDS,
    }
)
_MAX_EXTRA_FIELDS: Final = 256
#: The longest ``input.uri`` an offered job may carry. Real ones are IPFS or HTTPS URLs well
#: under 1 KiB; the value reaches the work command's environment (``SPK_INPUT_URI``), where
#: Linux refuses a string over 128 KiB, and the job's log lines.
MAX_INPUT_URI_LENGTH: Final = 8 * 1024
#: The tier whose ``GET /jobs/{id}`` may answer the stand-in: the only one the fingerprint's
#: ``_id`` rule applies to (see :func:`_looks_like_stand_in`).
_MONITOR_TIER: Final = Tier.MONITOR.value
#: Legacy fields the stand-in always carries, set to ``""``.
_STAND_IN_LEGACY: Final = ("owner", "permlink")


@dataclass(frozen=True, slots=True)
class JobProgress:
    """Progress as the gateway reports it: ``{pct, download_pct}`` or a bare number (pct)."""

    pct: float | None = None
    download_pct: float | None = None


@dataclass(frozen=True, slots=True)
class GatewayMonitorJob:
    """One job as a tier reported it. ``status`` and ``assigned_to`` may be ``None``: unknown.

    ``synthetic`` is true when the record proves nothing: it has no status or no id, or (from
    the monitor) it carries the fingerprint of the monitor's stand-in built from the gateway,
    whatever id, status and owner it names. Such a record never proves ownership.
    """

    id: str
    status: str | None
    assigned_to: str | None
    created_at: str | None = None
    assigned_date: str | None = None
    last_pinged: str | None = None
    start_date: str | None = None
    completed_at: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    storage_metadata: Mapping[str, Any] = field(default_factory=dict)
    input: Mapping[str, Any] = field(default_factory=dict)
    result: Mapping[str, Any] | None = None
    progress: JobProgress | None = None
    attempt_count: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    synthetic: bool = False


@dataclass(frozen=True, slots=True)
class OwnershipResult:
    """The documented ``verifyJobOwnership`` answer (``isOwned``, ``jobExists``, ...)."""

    is_owned: bool
    job_exists: bool
    actual_owner: str | None
    status: str | None
    is_safe_to_process: bool


@dataclass(frozen=True, slots=True)
class AvailabilityResult:
    """The documented ``isJobAvailableToClaim`` answer."""

    available: bool
    reason: str
    current_owner: str | None
    status: str | None


def _opt_str(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    # Dates come back from pymongo as datetime objects; the monitor sends ISO strings.
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return str(isoformat())
    raise MalformedAnswer("job", f"field {key!r} should be a string, got {type(value).__name__}")


def _opt_mapping(doc: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        kind = type(value).__name__
        raise MalformedAnswer("job", f"field {key!r} should be an object, got {kind}")
    return value


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    # bool is an int subclass; a True "progress" is nonsense, not 1 %.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedAnswer("job", f"{what} should be a number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:  # a 400-digit JSON integer: no float holds it
        raise MalformedAnswer("job", f"{what} should be a finite number") from None


def _parse_progress(value: Any) -> JobProgress | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return JobProgress(
            pct=_number(value.get("pct"), "progress.pct"),
            download_pct=_number(value.get("download_pct"), "progress.download_pct"),
        )
    return JobProgress(pct=_number(value, "progress"))


def _blank(value: Any) -> bool:
    """Empty as the stand-in's fields are: absent/null, ``""``, or an empty object or list."""
    if value is None or isinstance(value, str):
        return not value
    return isinstance(value, Mapping | list) and not value


def _looks_like_stand_in(data: Mapping[str, Any]) -> bool:
    """Whether a monitor record has the fingerprint of the server's stand-in job.

    The real server builds the stand-in field by field from the gateway's status answer: ``id``,
    ``status``, ``assigned_to`` and ``progress`` from the gateway, ``created_at`` = now, and
    ``metadata = {video_owner: "", video_permlink: ""}``, ``storageMetadata`` of empty
    strings, ``input = {uri: "", size: 0}``, ``owner = ""``, ``permlink = ""``, and **no**
    ``_id``. A record read from MongoDB always carries its ``_id`` (the monitor returns the
    stored document whole; a string ``_id`` even stands in for a missing ``id``). So a monitor
    record is a stand-in when:

    * it has no ``_id`` (absent, null or empty), or
    * it has the stand-in's empty signature: ``input`` and ``metadata`` objects whose ``uri``,
      ``video_owner`` and ``video_permlink`` are all empty, or a legacy ``owner`` or
      ``permlink`` field present and empty.

    The rule fails closed on purpose. A real record wrongly taken for a stand-in costs a delay
    only (the protocol reads it as "unknown", waits and falls back to another tier or gives
    up); a stand-in wrongly taken for a real record could confirm the gateway's lie ("MINE")
    and start a second encoder on a job someone else owns.
    """
    return _blank(data.get("_id")) or _empty_signature(data)


def _empty_signature(data: Mapping[str, Any]) -> bool:
    """The stand-in's empty fields (:func:`_looks_like_stand_in`), whatever its ``_id``."""
    inp, meta = data.get("input"), data.get("metadata")
    if (
        isinstance(inp, Mapping)
        and isinstance(meta, Mapping)
        and _blank(inp.get("uri"))
        and _blank(meta.get("video_owner"))
        and _blank(meta.get("video_permlink"))
    ):
        return True
    return any(key in data and _blank(data[key]) for key in _STAND_IN_LEGACY)


def parse_job(data: object, *, tier: str = "job") -> GatewayMonitorJob:
    """Parse one job record from an untrusted mapping (monitor JSON, gateway JSON, Mongo BSON).

    Accepts ``{job: {...}, rank: n}`` nesting. Raises :class:`MalformedAnswer` (naming
    ``tier``) when the record is not a mapping or a known field has the wrong type.

    ``synthetic`` is set when the record has no id (or an empty one) or no status, and, for
    ``tier="monitor"`` only, when it carries the stand-in's fingerprint
    (:func:`_looks_like_stand_in`: no ``_id``, or the stand-in's empty fields). The
    fingerprint is kept to the monitor because that is the only tier whose answer may be the
    stand-in *and* whose real records always carry ``_id`` (``GatewayMonitorService`` passes
    ``tier="monitor"``):

    * the database tier reads the collection itself (``find_one`` without a projection): it is
      the ground truth and never answers a stand-in. pymongo does return ``_id``, but the rule
      would buy nothing there, and a false "stand-in" on the strongest tier would not merely
      delay one read: it would stop every infrastructure node from confirming through it;
    * the legacy gateway (``jobstatus``) and Gateway Aid (``/job``) answer in their own shapes,
      which the contract does not promise to carry ``_id`` or the video fields; a rule on
      fields they may lack would discard every honest answer of theirs (and the gateway cannot
      confirm in the hardened chain anyway).
    """
    if not isinstance(data, Mapping):
        raise MalformedAnswer(tier, f"job should be an object, got {type(data).__name__}")
    nested = data.get("job")
    # A wrapper with the stand-in's empty fields is the stand-in, whatever it wraps: a
    # stand-in with a ``job`` object inside was read through that object, real-looking
    # ``_id`` and all, and confirmed ownership (an adversarial review, session 44).
    wrapped = tier == _MONITOR_TIER and isinstance(nested, Mapping) and _empty_signature(data)
    if isinstance(nested, Mapping) and "id" not in data and "status" not in data:
        data = nested
    try:
        raw_id = data.get("id")
        synthetic = False
        if raw_id is None:
            # A string ``_id`` job has no ``id`` key (observed on the real server).
            raw_id = data.get("_id")
            synthetic = not isinstance(raw_id, str)
        if raw_id is None:
            raw_id = ""
        if not isinstance(raw_id, str):
            raise MalformedAnswer(tier, f"job id should be a string, got {type(raw_id).__name__}")
        # A record that does not say which job it is (no id, or an empty one) is a stand-in.
        synthetic = synthetic or not raw_id
        status = _opt_str(data, "status")
        owner_raw = data.get("assigned_to")
        if owner_raw is not None and not isinstance(owner_raw, str):
            raise MalformedAnswer(
                tier, f"assigned_to should be a string or null, got {type(owner_raw).__name__}"
            )
        attempts = data.get("attempt_count")
        if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int)):
            raise MalformedAnswer(tier, "attempt_count should be an integer")
        extra = {k: v for k, v in data.items() if k not in _KNOWN_FIELDS}
        if len(extra) > _MAX_EXTRA_FIELDS:
            raise MalformedAnswer(tier, f"job has {len(extra)} unknown fields; refusing them")
        # The monitor's stand-in may name an id, a status and an owner (the gateway's belief):
        # only its fingerprint gives it away, and a record that has it never proves anything.
        stand_in = wrapped or (tier == _MONITOR_TIER and _looks_like_stand_in(data))
        return GatewayMonitorJob(
            id=raw_id,
            status=status,
            assigned_to=owner_raw or None,
            created_at=_opt_str(data, "created_at"),
            assigned_date=_opt_str(data, "assigned_date"),
            last_pinged=_opt_str(data, "last_pinged"),
            start_date=_opt_str(data, "start_date"),
            completed_at=_opt_str(data, "completed_at"),
            metadata=_opt_mapping(data, "metadata") or {},
            storage_metadata=_opt_mapping(data, "storageMetadata") or {},
            input=_opt_mapping(data, "input") or {},
            result=_opt_mapping(data, "result"),
            progress=_parse_progress(data.get("progress")),
            attempt_count=attempts,
            extra=extra,
            synthetic=synthetic or stand_in or status is None,
        )
    except MalformedAnswer as exc:
        if exc.tier != tier:
            raise MalformedAnswer(tier, str(exc).split(": ", 1)[-1]) from exc
        raise


def check_offered_job(job: GatewayMonitorJob) -> None:
    """Refuse, with :class:`~verifier.InvalidInputError`, an offered job that could not be
    worked on: an id that fails :func:`~verifier._ids.validate_job_id` (it goes into later
    URLs, bodies and log lines), or an ``input.uri`` that is not a string, is longer than
    :data:`MAX_INPUT_URI_LENGTH` or holds characters that are not printable.

    Checked where offers are parsed, so before any claim: a NUL, a lone surrogate or a 200 KB
    URI used to fail only at the command's spawn, after the claim, with an error that did not
    name the field, and the job was then failed back, an attempt spent (security review).
    ``str.isprintable`` refuses NUL and every control, format (bidi overrides), separator and
    surrogate character; non-ASCII letters pass (an IRI is a URI). No ``uri`` at all passes:
    the command is then given an empty one, as documented.
    """
    validate_job_id(job.id)
    if "uri" not in job.input:
        return
    uri = job.input["uri"]
    if not isinstance(uri, str):
        raise InvalidInputError(f"input.uri must be a string, got {type(uri).__name__}")
    if len(uri) > MAX_INPUT_URI_LENGTH:
        raise InvalidInputError(f"input.uri is {len(uri)} characters long; at most "
                                f"{MAX_INPUT_URI_LENGTH} are allowed")
    if not uri.isprintable():
        raise InvalidInputError("input.uri contains control, format, separator or surrogate "
                                "characters")


def ownership_of(job: GatewayMonitorJob | None, expected_owner_did: str) -> OwnershipResult:
    """The documented ownership judgement, shared by every tier.

    ``is_owned`` compares normalised DIDs; an empty normalised owner (null, absent) is never
    owned, whatever the caller's DID. ``is_safe_to_process`` additionally requires a status in
    :data:`PROCESSABLE_STATUSES`. A record flagged ``synthetic`` (no id, no status, or the
    monitor's stand-in built from the gateway, whatever owner it names) is never owned, so
    never safe: its owner is the gateway's belief, not a fact.
    """
    if job is None:
        return OwnershipResult(
            is_owned=False, job_exists=False, actual_owner=None, status=None,
            is_safe_to_process=False,
        )
    actual = normalize_did(job.assigned_to)
    expected = normalize_did(expected_owner_did)
    is_owned = bool(actual) and actual == expected and bool(job.id) and not job.synthetic
    return OwnershipResult(
        is_owned=is_owned,
        job_exists=True,
        actual_owner=job.assigned_to,
        status=job.status,
        is_safe_to_process=is_owned and job.status in PROCESSABLE_STATUSES,
    )


def availability_of(job: GatewayMonitorJob | None) -> AvailabilityResult:
    """The documented availability judgement, checks in the documented order and wording."""
    if job is None:
        return AvailabilityResult(False, "Job not found in system", None, None)
    if job.assigned_to:
        return AvailabilityResult(
            False, f"Already assigned to {job.assigned_to}", job.assigned_to, job.status
        )
    if job.status in ("complete", "completed"):
        return AvailabilityResult(False, "Job already completed", None, job.status)
    if job.status == "failed":
        return AvailabilityResult(False, "Job marked as failed", None, job.status)
    if job.status in ("pending", "queued", "created"):
        return AvailabilityResult(True, "Job available to claim", None, job.status)
    return AvailabilityResult(False, f"Job status is {job.status}", None, job.status)

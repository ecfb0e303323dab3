"""Job records, status vocabularies, and the documented ownership semantics.

Everything here is pure: parsing a job out of an untrusted JSON/BSON mapping, and the two
documented judgements (:func:`ownership_of`, :func:`availability_of`) that the monitor tier and
the database tier share, so the semantics are written once.

Parsing is tolerant of every quirk listed in ``docs/contract.md`` (omitted dates, null or
absent owner, numeric progress, extra legacy fields, both status vocabularies, ``{job, rank}``
nesting, the synthetic job with no status or owner) and strict about types: a field of the
wrong type is a :class:`~verifier.MalformedAnswer`, never a silent default, because a default
is how an incomplete answer turns into "safe".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ._errors import MalformedAnswer
from ._ids import normalize_did

__all__ = [
    "CLAIMABLE_STATUSES",
    "DONE_STATUSES",
    "KNOWN_STATUSES",
    "PROCESSABLE_STATUSES",
    "AvailabilityResult",
    "GatewayMonitorJob",
    "JobProgress",
    "OwnershipResult",
    "availability_of",
    "ownership_of",
    "parse_job",
]

#: Statuses in which nobody owns the job and it waits for a claim (gateway and aid vocabularies).
CLAIMABLE_STATUSES: Final = frozenset({"created", "pending", "queued", "unassigned"})
#: Statuses in which the owner may process (the documented ``isSafeToProcess`` set).
PROCESSABLE_STATUSES: Final = frozenset({"assigned", "running"})
#: Statuses after a result was accepted.
DONE_STATUSES: Final = frozenset({"uploading", "complete", "completed"})
KNOWN_STATUSES: Final = (
    CLAIMABLE_STATUSES
    | PROCESSABLE_STATUSES
    | DONE_STATUSES
    | frozenset({"failed", "cancelled", "deleted"})
)

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


@dataclass(frozen=True, slots=True)
class JobProgress:
    """Progress as the gateway reports it: ``{pct, download_pct}`` or a bare number (pct)."""

    pct: float | None = None
    download_pct: float | None = None


@dataclass(frozen=True, slots=True)
class GatewayMonitorJob:
    """One job as a tier reported it. ``status`` and ``assigned_to`` may be ``None``: unknown.

    ``synthetic`` is true when the answer looks like the monitor's stand-in built from the
    gateway (no status, or no ``id``): such a record never proves ownership.
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
    return float(value)


def _parse_progress(value: Any) -> JobProgress | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return JobProgress(
            pct=_number(value.get("pct"), "progress.pct"),
            download_pct=_number(value.get("download_pct"), "progress.download_pct"),
        )
    return JobProgress(pct=_number(value, "progress"))


def parse_job(data: object, *, tier: str = "job") -> GatewayMonitorJob:
    """Parse one job record from an untrusted mapping (monitor JSON, gateway JSON, Mongo BSON).

    Accepts ``{job: {...}, rank: n}`` nesting. Raises :class:`MalformedAnswer` (naming
    ``tier``) when the record is not a mapping or a known field has the wrong type.
    """
    if not isinstance(data, Mapping):
        raise MalformedAnswer(tier, f"job should be an object, got {type(data).__name__}")
    nested = data.get("job")
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
            synthetic=synthetic or status is None,
        )
    except MalformedAnswer as exc:
        if exc.tier != tier:
            raise MalformedAnswer(tier, str(exc).split(": ", 1)[-1]) from exc
        raise


def ownership_of(job: GatewayMonitorJob | None, expected_owner_did: str) -> OwnershipResult:
    """The documented ownership judgement, shared by every tier.

    ``is_owned`` compares normalised DIDs; an empty normalised owner (null, absent) is never
    owned, whatever the caller's DID. ``is_safe_to_process`` additionally requires a status in
    :data:`PROCESSABLE_STATUSES`. A record that does not say which job it is (no id: the
    monitor's stand-in built from the gateway) is never owned; one without a status (also a
    stand-in) is never safe.
    """
    if job is None:
        return OwnershipResult(
            is_owned=False, job_exists=False, actual_owner=None, status=None,
            is_safe_to_process=False,
        )
    actual = normalize_did(job.assigned_to)
    expected = normalize_did(expected_owner_did)
    is_owned = bool(actual) and actual == expected and bool(job.id)
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

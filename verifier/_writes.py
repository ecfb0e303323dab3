"""What a success answering a write confirms: the rules both write clients share.

A write's outcome is one of three for the protocol: it landed (``OK``), it certainly did not
(``REFUSED``), or it may have (``UNKNOWN``, settled and never taken for either). A success
that contradicts itself (about another job or owner, a job given back, nothing matched) is the
third: :func:`unconfirmed_write` says why, and each client raises ``MalformedAnswer`` with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from ._http import job_places, names_another_job
from ._ids import normalize_did
from ._models import DONE_STATUSES, NOT_HELD_STATUSES

__all__ = ["WriteKind", "unconfirmed_write"]

#: What a write does to the job: the owner's claim, heartbeat (ping) and finish, or a give-back.
WriteKind = Literal["claim", "heartbeat", "finish", "release"]

#: Counts a MongoDB-backed server may echo for its update, at any depth (``result.n`` is the
#: older drivers' spelling): zero means the owner filter matched nothing, so the write did not
#: happen for us.
_COUNT_KEYS: Final = ("matchedCount", "modifiedCount", "nModified", "n")
#: Of those, the ones that count matches: when one says 1, a modified count of 0 is a write
#: that matched and changed nothing (a retried finish), not a miss.
_MATCHED_KEYS: Final = ("matchedCount", "n")
#: How deep :func:`unconfirmed_write` looks for counts: an envelope, a result, a nested one.
_MAX_DEPTH: Final = 4
#: Words of an error ``code`` (``data.code`` is where aid's errors put theirs, such as
#: ``JOB_NOT_OWNED``, ``JOB_ALREADY_ASSIGNED``, ``ENCODER_INACTIVE``: docs/contract.md). A
#: success code (``JOB_UPDATED``, 200) is no sign of a miss.
_ERROR_CODE_WORDS: Final = ("NOT", "ALREADY", "ERROR", "DENIED", "INVALID", "UNAUTHORIZED",
                            "FORBIDDEN", "INACTIVE", "FAIL", "MISSING")


def unconfirmed_write(answer: Mapping[str, Any], job_id: str, did: str, *,
                      kind: WriteKind) -> str | None:
    """Why a success answering a write of ``kind`` about ``job_id`` by ``did`` does not
    confirm it (``None``: it does).

    The real servers' answers to a write that matched nothing are not documented, so every
    way a MongoDB-backed server says so is read as "not confirmed" (the outcome unknown): a
    ``job`` that is null (a find-and-update that matched nothing), a matched count of 0 at any
    depth, a success that names another job anywhere a job is named, a ``success: false`` or
    an error inside it, an error code; and, for a claim, a heartbeat or a finish, a job that
    names another owner or none, or shows a status nobody may hold it in (a heartbeat or a
    claim also one whose result was accepted). What a success may plausibly say besides is
    not (a review of these rules, session 22): a null ``data``, a success code
    (``JOB_UPDATED``, 200), a modified count of 0 beside a matched count of 1 (a retried
    finish), a finished job whose owner was cleared (the answer to a finish), an old
    ``error`` field inside a job document. A release is answered with the job given back,
    owner and status cleared, so only the job it names, the counts and the errors count.

    Confirmed too easily, an aid heartbeat renews the lease by itself, and work ran on past
    the gateway's reassignment while every heartbeat matched nothing (an adversarial review,
    2026-12-05); a gateway finish answered with the job someone else's was counted as landed,
    and the job, still ours, was reassigned at T and encoded again (shared with the gateway's
    client in session 44, after helper-131's review: only aid's client checked these).
    """
    envelopes, jobs = job_places(answer)
    if answer.get("error"):  # the top level's only: ``data`` may be a job keeping an old one
        return "success carries an error"
    for envelope in envelopes:
        if envelope.get("success") is False:  # ``data: {success: false, error}`` inside
            return "success says it failed inside"
        if "job" in envelope and envelope["job"] is None:
            return "success with a null 'job': nothing matched"
        if _error_code(envelope.get("code")):
            return "success carries an error code"
    if names_another_job(answer, job_id):
        return "success names another job"
    if kind != "release":
        # Every place, the top level too: only the claim checked the top level's owner
        # itself, so a heartbeat or a finish answered ``success`` with the job someone
        # else's, or queued, right there was confirmed (a security review, session 28).
        for job in envelopes + jobs:
            owner = job.get("assigned_to")
            raw = job.get("status")
            status = raw.strip().lower() if isinstance(raw, str) else None
            cleared = kind == "finish" and owner is None and status in DONE_STATUSES
            if "assigned_to" in job and not cleared and (
                    not isinstance(owner, str) or normalize_did(owner) != normalize_did(did)):
                return "success names another owner, or none"
            # No job our write reached can be back in the queue, given up or withdrawn (a
            # security review, session 28: ``unassigned``, ``cancelled`` and ``deleted``
            # confirmed a heartbeat).
            if status in NOT_HELD_STATUSES or (kind != "finish" and status in DONE_STATUSES):
                return f"success shows the job {status}"
    return _zero_count(answer, _MAX_DEPTH)


def _error_code(code: object) -> bool:
    """Whether ``code`` is an error's: a string with an error's word, or a number outside
    2xx (``None``, a success's code and 200 are not)."""
    if isinstance(code, bool) or code is None:
        return False
    if isinstance(code, int):
        return not 200 <= code < 300
    if isinstance(code, str):
        upper = code.upper()
        return any(word in upper for word in _ERROR_CODE_WORDS)
    return True


def _zero_count(place: Mapping[str, Any], depth: int) -> str | None:
    """A count of :data:`_COUNT_KEYS` below 1 anywhere in ``place`` (``depth`` levels); a
    modified count is read only where no matched count says 1 or more."""
    matched = any(isinstance(place.get(key), int) and not isinstance(place.get(key), bool)
                  and place[key] >= 1 for key in _MATCHED_KEYS)
    for key in _COUNT_KEYS:
        if matched and key not in _MATCHED_KEYS:
            continue
        value = place.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            return f"success says {key} = {value!r}: nothing was updated"
    if depth > 1:
        for value in place.values():
            if isinstance(value, Mapping):
                found = _zero_count(value, depth - 1)
                if found is not None:
                    return found
    return None

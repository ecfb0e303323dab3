"""Untrusted identifiers: job ids and DIDs.

Job ids and DIDs arrive from the gateway, from operators and from other encoders; the real
monitor server forwards ids into upstream URLs unescaped (``..%2F`` leaves the path, ``%3F``
injects a query), so every client here validates and encodes ids itself and never relies on a
server to do it. A value that is not a plain string can never reach a URL or a MongoDB filter:
a ``dict`` with ``$`` keys would otherwise become a query operator.
"""

from __future__ import annotations

import urllib.parse
from typing import Final

from ._errors import InvalidInputError

__all__ = [
    "MAX_ID_LENGTH",
    "normalize_did",
    "quote_segment",
    "redact_url",
    "validate_did",
    "validate_job_id",
]

#: Real ids are UUIDs (36 chars) or short permlinks; 256 leaves room and bounds URL size.
MAX_ID_LENGTH: Final = 256


def validate_job_id(job_id: object) -> str:
    """Return ``job_id`` if it is a usable job id, else raise :class:`InvalidInputError`.

    Accepted: a non-empty ``str`` of at most :data:`MAX_ID_LENGTH` characters without control
    characters. Anything else (``None``, numbers, dicts such as ``{"$ne": None}``) is refused
    rather than coerced: coercion is how operators slip into queries.
    """
    if not isinstance(job_id, str):
        raise InvalidInputError(
            f"job id must be a string, got {type(job_id).__name__}"
        )
    if not job_id:
        raise InvalidInputError("job id is empty")
    if len(job_id) > MAX_ID_LENGTH:
        raise InvalidInputError(
            f"job id is {len(job_id)} characters long; at most {MAX_ID_LENGTH} are allowed"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in job_id):
        raise InvalidInputError("job id contains control characters")
    if job_id in (".", ".."):
        # Even percent-encoded, HTTP clients collapse dot segments: the request would reach
        # another route.
        raise InvalidInputError(f"job id {job_id!r} is a path dot segment")
    return job_id


def validate_did(did: object) -> str:
    """Return ``did`` if usable: the job-id rules plus a ``did`` prefix."""
    if not isinstance(did, str):
        raise InvalidInputError(f"DID must be a string, got {type(did).__name__}")
    if not did.startswith("did"):
        raise InvalidInputError("DID must start with 'did'")
    if len(did) > MAX_ID_LENGTH or any(ord(c) < 0x20 or ord(c) == 0x7F for c in did):
        raise InvalidInputError("DID is too long or contains control characters")
    return did


def normalize_did(did: object) -> str:
    """Normalise a DID the way the documented service did.

    ``None`` (and any non-string) → ``""``; ``did:key:...`` is kept; any other ``did...``
    prefix (``did:z6Mk...``, ``didz6Mk``) is rewritten to ``did:key:`` plus the rest, so the
    gateway's two spellings of one key compare equal. An empty result never equals a real DID,
    which is what keeps "no owner" from ever reading as "ours".
    """
    if not isinstance(did, str) or not did:
        return ""
    if did.startswith("did:key:"):
        return did
    if did.startswith("did:"):
        return "did:key:" + did[len("did:"):]
    if did.startswith("did"):
        return "did:key:" + did[len("did"):]
    return did


def quote_segment(value: str) -> str:
    """Percent-encode ``value`` as one URL path segment: ``/``, ``?``, ``#``, ``%`` included."""
    return urllib.parse.quote(value, safe="")


def redact_url(url: str) -> str:
    """Drop user info and query from ``url`` so that it can appear in logs and errors.

    For the http(s) base URLs of the REST tiers; ``MONGODB_URI`` is redacted by
    :mod:`verifier._mongodb_uri`, which parses it.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        # netloc minus user info, kept verbatim so that odd ports survive
        host = parts.netloc.rsplit("@", 1)[-1]
        return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return "<unparsable url>"

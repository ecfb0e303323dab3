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
    "userinfo_misplaced",
    "validate_cid",
    "validate_did",
    "validate_job_id",
]

#: Real ids are UUIDs (36 chars) or short permlinks; 256 leaves room and bounds URL size.
MAX_ID_LENGTH: Final = 256


def validate_job_id(job_id: object) -> str:
    """Return ``job_id`` if it is a usable job id, else raise :class:`InvalidInputError`.

    Accepted: a non-empty ``str`` of at most :data:`MAX_ID_LENGTH` characters without control
    characters that encodes as strict UTF-8. Anything else (``None``, numbers, dicts such as
    ``{"$ne": None}``, lone surrogates) is refused rather than coerced: coercion is how
    operators slip into queries.
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
    _require_utf8(job_id, "job id")
    if not job_id.isprintable():
        # C1 controls (NEL ends a line for str.splitlines), bidi overrides, zero-width and
        # line/paragraph separators: an id reaches every log line, where these forge lines or
        # reorder what the operator reads. No real job id has them.
        raise InvalidInputError("job id contains control, format or separator characters")
    if job_id in (".", ".."):
        # Even percent-encoded, HTTP clients collapse dot segments: the request would reach
        # another route.
        raise InvalidInputError(f"job id {job_id!r} is a path dot segment")
    return job_id


def validate_did(did: object) -> str:
    """Return ``did`` if usable: the job-id rules plus a ``did`` prefix, and ASCII only.

    ASCII because the DID syntax (W3C DID Core, §3.1) has no other characters, and because the
    DID travels in an HTTP header (Gateway Aid's ``X-Encoder-DID``), which cannot carry
    anything else: a non-ASCII DID would fail every request instead of failing at start-up.
    """
    if not isinstance(did, str):
        raise InvalidInputError(f"DID must be a string, got {type(did).__name__}")
    if not did.startswith("did"):
        raise InvalidInputError("DID must start with 'did'")
    if len(did) > MAX_ID_LENGTH:
        raise InvalidInputError(
            f"DID is {len(did)} characters long; at most {MAX_ID_LENGTH} are allowed")
    if not did.isascii():
        raise InvalidInputError("DID must be ASCII (a did:key is base58 text)")
    if any(not "!" <= c <= "~" for c in did):
        # No DID has a space (W3C DID Core's syntax), and a control character would reach
        # every log line and header it travels in.
        raise InvalidInputError("DID contains a space or a control character")
    if len(normalize_did(did)) <= len("did:key:"):
        # "did", "did:" and "did:key:" all normalise to the bare prefix, so two of them
        # would "own" each other's jobs: a DID names a key.
        raise InvalidInputError("DID has no identifier after its method")
    return did


def _require_utf8(value: str, what: str) -> None:
    """Refuse text that is not valid Unicode (lone surrogates, from ``surrogateescape`` argv or
    a JSON ``\\ud800`` escape): it cannot be encoded into a URL, a JSON body or BSON, so it
    would fail at the first request with an error outside :class:`VerifierError`."""
    try:
        value.encode("utf-8", "strict")
    except UnicodeEncodeError:
        raise InvalidInputError(f"{what} is not valid UTF-8 text (lone surrogate)") from None


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


def userinfo_misplaced(parts: urllib.parse.SplitResult) -> bool:
    """True when an ``@`` appears after the authority (in the path, query or fragment).

    A password with an unencoded ``/``, ``?`` or ``#`` (``https://u:2024/S3cret@host/api``)
    ends the authority early: the parser then reads ``u:2024`` as host and port and the rest
    of the password as the path, which every display of the URL would show. Real base URLs
    have no ``@`` there, so any such URL is treated as one whose secret is misplaced.
    """
    return "@" in parts.path or "@" in parts.query or "@" in parts.fragment


def redact_url(url: str) -> str:
    """Drop user info and query from ``url`` so that it can appear in logs and errors.

    For the http(s) base URLs of the REST tiers; ``MONGODB_URI`` is redacted by
    :mod:`verifier._mongodb_uri`, which parses it. A URL with an ``@`` after the authority
    (:func:`userinfo_misplaced`) is not shown at all: its "scheme", "host", "port" and path
    may all be pieces of user info.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        if userinfo_misplaced(parts):
            return "<redacted url: '@' after the host>"
        # netloc minus user info, kept verbatim so that odd ports survive
        host = parts.netloc.rsplit("@", 1)[-1]
        return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return "<unparsable url>"


def validate_cid(cid: object) -> str:
    """A result CID as sent in ``finishJob``/``complete-job``: a short printable string."""
    if not isinstance(cid, str) or not cid:
        raise InvalidInputError("result needs a non-empty string 'cid'")
    if len(cid) > 256 or not cid.isprintable() or cid != cid.strip():
        raise InvalidInputError("result cid is too long or contains unprintable characters")
    return cid

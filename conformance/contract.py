"""The contract of the real services, stated from its text (``docs/contract.md``), not imported.

The contract suites' oracles compare what the clients do against these statements. They are
written out here on purpose rather than imported from :mod:`verifier`: an oracle that borrows
the code under test's own status sets or DID normaliser agrees with it by construction, and
could never catch it being wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "CLAIMABLE_STATUSES",
    "CONFIGURATION_CODES",
    "KNOWN_STATUSES",
    "PROCESSABLE_STATUSES",
    "contract_did",
    "is_monitor_stand_in",
]

#: "Job document and statuses": the statuses in which a job waits to be handed out.
CLAIMABLE_STATUSES: Final = frozenset({"created", "pending", "queued", "unassigned"})
#: The documented ``isSafeToProcess`` set: the owner may process in these.
PROCESSABLE_STATUSES: Final = frozenset({"assigned", "running"})
#: Every status seen in real data (the twelve of the contract).
KNOWN_STATUSES: Final = frozenset({
    "created", "pending", "queued", "unassigned", "assigned", "running", "uploading",
    "complete", "completed", "failed", "cancelled", "deleted",
})
#: Gateway Aid's error codes that mean "this node may not use aid" (a configuration problem).
CONFIGURATION_CODES: Final = frozenset({"ENCODER_NOT_AUTHORIZED", "ENCODER_INACTIVE"})


def contract_did(did: object) -> str:
    """The documented service's DID normalisation, as the contract words it.

    "null → empty; ``did:key:...`` kept; any other ``did...`` prefix rewritten to ``did:key:``
    + rest". A value that does not start with ``did`` is compared as it is.
    """
    if not isinstance(did, str) or not did:
        return ""
    if did.startswith("did:key:"):
        return did
    rest = did.removeprefix("did:") if did.startswith("did:") else did.removeprefix("did")
    return "did:key:" + rest if did.startswith("did") else did


def _empty(value: Any) -> bool:
    """"Empty means absent, ``null``, ``""``, or an empty object or list." """
    return value is None or value == "" or value == {} or value == []


def is_monitor_stand_in(record: object) -> bool:
    """Whether a monitor job record is the server's synthetic stand-in, as the contract words
    its fingerprint ("Synthetic stand-in jobs"): it proves nothing, whatever it names.

    "A monitor record is therefore treated as a stand-in when either of these holds: it has no
    ``_id`` (absent, ``null`` or empty); it has the stand-in's blank fields: ``input`` and
    ``metadata`` objects whose ``uri``, ``video_owner`` and ``video_permlink`` are all empty, or
    a legacy ``owner`` or ``permlink`` field that is present and empty."

    ``record`` is the job object itself (a ``{job, rank}`` nesting already unwrapped); anything
    that is not an object is not a record, so not a stand-in either.
    """
    if not isinstance(record, Mapping):
        return False
    if _empty(record.get("_id")):
        return True
    inputs, metadata = record.get("input"), record.get("metadata")
    if (isinstance(inputs, Mapping) and isinstance(metadata, Mapping)
            and _empty(inputs.get("uri")) and _empty(metadata.get("video_owner"))
            and _empty(metadata.get("video_permlink"))):
        return True
    return any(name in record and _empty(record[name]) for name in ("owner", "permlink"))

"""Hypothesis strategies for the contract suites: what the 3Speak services may answer.

The contract suites (``test_contract_*.py``) serve these answers to the real clients through
respx and check two properties: nothing but a :class:`~verifier.VerifierError` escapes, and no
answer reads as "ours, safe to process" (or as a successful write) unless the body really
proved it. The answers are built in layers:

* **documented** answers of each route, with every quirk of ``docs/contract.md``: omitted
  dates, a null or absent owner, numeric progress, extra legacy fields (``encoder_id`` naming
  us included: it is not the owner), both status vocabularies, ``{job, rank}`` nesting, real
  records with MongoDB's ``_id``, the monitor's synthetic stand-in in the real server's shape
  (:func:`stand_ins`: the gateway's id, status and owner, our own DID included, blank video
  fields, no ``_id``) and older synthetic jobs without status or owner, a string ``_id``
  without ``id``, demo jobs that carry another id, DIDs in the gateway's three spellings;
* **broken** answers derived from them: a wrong type (or a deletion, or an operator-looking
  key) at any depth of the body, truncated JSON, non-standard JSON (``NaN``, duplicate keys,
  invalid UTF-8), bodies over the 1 MiB cap (with and without ``Content-Length``), any status
  code, 3xx with a ``Location``, 429 with any ``Retry-After``, transport failures before the
  answer and in the middle of its body, and (monitor) a server that never answers;
* arbitrary JSON (:func:`json_values`, ``st.recursive``) wherever a body goes.

Each :class:`Reply` carries the JSON value it serves (``payload``, when the body is exactly its
serialisation) so that the tests compute the truth from the same value the client parsed, and an
``expect`` hint (``"answer"`` / ``"raise"`` / ``None``) for the cases where the contract fixes
the outcome, so the suites also show that the clients are not "safe" by refusing everything.

Generation stays cheap: huge bodies are one repeated byte, never drawn byte by byte.
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import functools
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

import httpx
from hypothesis import strategies as st

from conformance.contract import KNOWN_STATUSES, contract_did

__all__ = [
    "ABSENT",
    "JOB_ID",
    "MAX_BODY_BYTES",
    "NO_JSON",
    "OBJECT_ID",
    "OTHER_DID",
    "OTHER_JOB_ID",
    "Reply",
    "answered_job",
    "breakages",
    "did_spellings",
    "expected_for_id",
    "hostile_ids",
    "hostile_mappings",
    "hostile_numbers",
    "ident_of",
    "is_ours",
    "job_records",
    "json_reply",
    "json_values",
    "near_proofs",
    "owner_values",
    "perturbed",
    "quirk_records",
    "replies",
    "retry_after_values",
    "stand_in_record",
    "stand_ins",
    "status_values",
    "transport_failures",
]

JOB_ID: Final = "2f42577d-9c93-4a62-9ae2-d1270b5bc4f3"
OTHER_JOB_ID: Final = "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"
OTHER_DID: Final = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
#: A MongoDB ``_id`` as the monitor serialises it (an ObjectId's 24 hex digits): every record
#: the monitor reads from its database carries one; its stand-in never does.
OBJECT_ID: Final = "65f0c0ffee0000000000beef"
#: The clients' body cap (``verifier._http.MAX_BODY_BYTES``), restated: the suites test it.
MAX_BODY_BYTES: Final = 1024 * 1024


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: A field the record omits (the monitor omits empty dates rather than sending null).
ABSENT: Final = _Marker("ABSENT")
#: ``Reply.payload`` when the body is not the serialisation of one JSON value.
NO_JSON: Final = _Marker("NO_JSON")
_DELETE: Final = _Marker("DELETE")

_LEGACY_FIELDS: Final = (
    "owner", "permlink", "encoder_id", "input_uri", "ipfs_cid", "error_message",
    "last_pinged_diff",
)
_DATE_FIELDS: Final = ("created_at", "assigned_date", "last_pinged", "start_date", "completed_at")
_PRINTABLE_ASCII: Final = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


# --------------------------------------------------------------------------- JSON values

@functools.cache
def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars (finite floats only: ``NaN`` is served separately, as raw text),
    lists and objects nested to any depth."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**63 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=12)
    )
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=max_leaves,
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _replace_at(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``value`` with the item at ``path`` replaced (or removed, for ``_DELETE``)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    if not rest and new is _DELETE:
        del copy[head]
    else:
        copy[head] = _replace_at(value[head], rest, new)
    return copy


_ODD_KEYS: Final = st.sampled_from(
    ["$ne", "$gt", "$where", "__proto__", "constructor", "a.b"]) | st.text(max_size=8)


@st.composite
def perturbed(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with one place broken: replaced by any JSON value (a wrong type, usually),
    deleted, or (in an object) joined by an operator-looking or prototype key."""
    paths = list(_paths(value))
    path = draw(st.sampled_from(paths))
    target: Any = value
    for step in path:
        target = target[step]
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "delete" and path:
        return _replace_at(value, path, _DELETE)
    if action == "add" and isinstance(target, dict):
        key = draw(_ODD_KEYS)
        return _replace_at(value, path, {**target, key: draw(json_values(6))})
    return _replace_at(value, path, draw(json_values()))


# --------------------------------------------------------------------------- job records

@functools.cache
def did_spellings(did: str) -> st.SearchStrategy[str]:
    """The gateway's spellings of one key, which all normalise to ``did``: ``did:key:z…``,
    ``did:z…`` and ``didz…``."""
    tail = did[len("did:key:"):]
    return st.sampled_from([did, "did:" + tail, "did" + tail])


@functools.cache
def owner_values(me: str) -> st.SearchStrategy[Any]:
    """An ``assigned_to``: us (any spelling), another encoder, nobody (null, absent, ``""``),
    or text that is not a DID. Always a string, null or absent: a well-typed record."""
    return st.one_of(
        did_spellings(me),
        did_spellings(OTHER_DID),
        st.sampled_from([ABSENT, None, "", "did:key:", "did", me.upper(), me + " "]),
        st.text(max_size=20),
    )


@functools.cache
def status_values() -> st.SearchStrategy[Any]:
    """A ``status``: both vocabularies, plus absent, null, empty, case and space variants."""
    known = sorted(KNOWN_STATUSES)
    return st.one_of(
        st.sampled_from(known),
        st.sampled_from([ABSENT, None, "", "Assigned", "RUNNING", " assigned", "running\n"]),
        st.text(max_size=12),
    )


@functools.cache
def _iso_dates() -> st.SearchStrategy[str]:
    return st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)
    ).map(lambda d: d.isoformat(timespec="milliseconds") + "Z")


@functools.cache
def _ids(job_id: str) -> st.SearchStrategy[tuple[str, Any]]:
    """How a record names its job: ``id`` (ours, another, a demo job, empty, null), a string
    ``_id`` without ``id`` (observed), a Mongo-style ``_id`` object, or nothing (synthetic).

    A record named by ``id`` carries MongoDB's ``_id`` too, or not: without it, it has the
    stand-in's fingerprint (``docs/contract.md``, "Synthetic stand-in jobs")."""
    return st.one_of(
        st.just(("id", job_id)),
        st.just(("_id", job_id)),
        st.tuples(
            st.just("id"),
            st.sampled_from([OTHER_JOB_ID, "demo-job-1", "demo-job-2", "", None, job_id.upper()])
            | st.text(max_size=12),
        ),
        st.just(("_id", {"$oid": "65f0c0ffee0000000000beef"})),
        st.just(("none", None)),
    )


@functools.cache
def _progress() -> st.SearchStrategy[Any]:
    pct = st.none() | st.integers(0, 100) | st.floats(0, 100)
    return st.one_of(
        st.just(ABSENT), st.none(), st.integers(0, 100), st.floats(0, 100),
        st.fixed_dictionaries({}, optional={"pct": pct, "download_pct": pct}),
    )


_ATTEMPTS: Final = st.sampled_from([ABSENT, None]) | st.integers(0, 6)
_RESULTS: Final = st.sampled_from([ABSENT, None, {"cid": "bafy"}, {"cid": "Qm", "message": "x"}])
_METADATA: Final = st.sampled_from(
    [ABSENT, None, {"video_owner": "alice", "video_permlink": "abc"}])
_STORAGE: Final = st.sampled_from([ABSENT, None, {"app": "3speak", "key": "k", "type": "video"}])
_INPUTS: Final = st.sampled_from([ABSENT, None, {"uri": "ipfs://Qm", "size": 1234}])
_LEGACY_NAMES: Final = st.lists(st.sampled_from(_LEGACY_FIELDS), unique=True, max_size=4)


@functools.cache
def _date_values() -> st.SearchStrategy[Any]:
    return st.sampled_from([ABSENT, ABSENT, None, ""]) | _iso_dates()


@functools.cache
def _legacy_values(me: str) -> st.SearchStrategy[Any]:
    return st.sampled_from([me, OTHER_DID, 0, None, "x"]) | json_values(4)


@st.composite
def job_records(draw: st.DrawFn, job_id: str, me: str) -> dict[str, Any]:
    """A well-typed job record (every known field of the right type) with the contract's quirks.

    Well-typed means ``parse_job`` accepts it; whether it is *about* ``job_id`` and *ours* is
    decided by :func:`ident_of` and :func:`is_ours`, never assumed.
    """
    record: dict[str, Any] = {}
    key, ident = draw(_ids(job_id))
    if key == "id":
        record["id"] = ident
        if draw(st.booleans()):
            # A real record: the document as MongoDB stores it (an ObjectId, or the job id).
            record["_id"] = draw(st.sampled_from([OBJECT_ID, job_id]))
    elif key == "_id":
        record["_id"] = ident
    fields: dict[str, Any] = {
        "status": draw(status_values()),
        "assigned_to": draw(owner_values(me)),
        "progress": draw(_progress()),
        "attempt_count": draw(_ATTEMPTS),
        "result": draw(_RESULTS),
        "metadata": draw(_METADATA),
        "storageMetadata": draw(_STORAGE),
        "input": draw(_INPUTS),
    }
    for name in _DATE_FIELDS:
        fields[name] = draw(_date_values())
    for name in draw(_LEGACY_NAMES):
        # encoder_id may name us: the live overlay, never the owner.
        fields[name] = draw(_legacy_values(me))
    record.update({k: v for k, v in fields.items() if v is not ABSENT})
    return record


_ID_VARIANTS: Final = ("missing", "empty", "null", "other", "demo", "upper", "_id_only",
                       "_id_other", "_id_object")
#: The blank fields the real server gives its stand-in (``docs/contract.md``).
_STAND_IN_BLANKS: Final = {
    "metadata": {"video_owner": "", "video_permlink": ""},
    "storageMetadata": {"app": "", "key": "", "type": ""},
    "input": {"uri": "", "size": 0},
    "owner": "",
    "permlink": "",
}


def stand_in_record(job_id: Any, status: Any, owner: Any, *, progress: Any = 0,
                    created_at: str = "2026-01-02T03:04:05.678Z") -> dict[str, Any]:
    """The real server's stand-in, field by field: the gateway's ``job_id``, status, owner
    (``encoder_id``) and progress, ``created_at`` = now, the blank fields, and no ``_id``.
    ``ABSENT`` leaves a field out (the server's JSON drops an undefined value)."""
    fields = {"id": job_id, "status": status, "created_at": created_at,
              **copy.deepcopy(_STAND_IN_BLANKS), "assigned_to": owner, "progress": progress}
    return {k: v for k, v in fields.items() if v is not ABSENT}


@st.composite
def stand_ins(draw: st.DrawFn, job_id: str, me: str) -> dict[str, Any]:
    """The monitor's stand-in in the real server's shape, naming what the gateway believes: our
    DID (any spelling), another encoder, or nobody, in any status; usually about ``job_id``."""
    owner = draw(st.one_of(did_spellings(me), owner_values(me)))
    status = draw(st.sampled_from(["assigned", "running"]) | status_values())
    ident = draw(st.sampled_from([job_id, job_id, job_id, ABSENT, OTHER_JOB_ID]))
    return stand_in_record(ident, status, owner, progress=draw(_progress()),
                           created_at=draw(_iso_dates()))


@st.composite
def near_proofs(draw: st.DrawFn, job_id: str, me: str,
                statuses: tuple[str, ...] = ("assigned", "running")) -> dict[str, Any]:
    """A record that proves ``me`` holds ``job_id`` in one of ``statuses``, or misses by exactly
    one aspect (its id, its status, its owner, or for the monitor its realness).

    Random records rarely line up all three, so the interesting boundary (an answer that is
    *almost* a proof: the synthetic job with no id, a demo job, our DID on another status, the
    monitor's stand-in naming us) is generated on purpose. The proof is a real record: it
    carries MongoDB's ``_id``. The ``stand_in`` aspects give it the stand-in's fingerprint
    instead (no ``_id``, or its blank fields): a proof for the gateway and aid, whose answers
    have their own shapes, and never one for the monitor.
    """
    record = draw(job_records(job_id, me))
    record.update(_id=OBJECT_ID, id=job_id, status=draw(st.sampled_from(statuses)),
                  assigned_to=draw(did_spellings(me)))
    aspect = draw(st.sampled_from(["none", "id", "id", "status", "owner", "stand_in"]))
    if aspect == "stand_in":
        fingerprint = draw(st.sampled_from(["no__id", "null__id", "blank_video", "blank_legacy"]))
        if fingerprint == "no__id":
            del record["_id"]
        elif fingerprint == "null__id":
            record["_id"] = draw(st.sampled_from([None, "", {}]))
        elif fingerprint == "blank_video":
            record.update(copy.deepcopy(_STAND_IN_BLANKS))
        else:
            record[draw(st.sampled_from(["owner", "permlink"]))] = draw(
                st.sampled_from(["", None]))
    if aspect == "id":
        del record["_id"]
        variant = draw(st.sampled_from(_ID_VARIANTS))
        ids: dict[str, Any] = {
            "missing": {}, "empty": {"id": ""}, "null": {"id": None},
            "other": {"id": OTHER_JOB_ID}, "demo": {"id": "demo-job-1"},
            "upper": {"id": job_id.upper()}, "_id_only": {"_id": job_id},
            "_id_other": {"_id": OTHER_JOB_ID}, "_id_object": {"_id": {"$oid": "65f0c0ffee00"}},
        }
        del record["id"]
        record.update(ids[variant])
    elif aspect == "status":
        status = draw(status_values())
        record.pop("status")
        if status is not ABSENT:
            record["status"] = status
    elif aspect == "owner":
        owner = draw(owner_values(me))
        record.pop("assigned_to")
        if owner is not ABSENT:
            record["assigned_to"] = owner
    return record


def quirk_records(job_id: str, me: str) -> dict[str, dict[str, Any]]:
    """One named record per quirk of the contract, for deterministic runs of the properties
    (random search finds these too, but not on every run)."""
    tail = me[len("did:key:"):]
    # Real records are MongoDB documents: they carry ``_id`` (the stand-ins below do not).
    proof = {"_id": OBJECT_ID, "id": job_id, "status": "assigned", "assigned_to": me,
             "created_at": "2026-01-02T03:04:05.678Z"}
    return {
        "proof": proof,
        "proof_running_short_did": {**proof, "status": "running", "assigned_to": "did:" + tail},
        "proof_running_bare_did": {**proof, "status": "running", "assigned_to": "did" + tail},
        "numeric_progress_omitted_dates": {"_id": OBJECT_ID, "id": job_id, "status": "running",
                                           "assigned_to": me, "progress": 100},
        "object_progress": {**proof, "progress": {"pct": 42.5, "download_pct": 100}},
        "legacy_fields": {**proof, "owner": "alice", "permlink": "abc", "encoder_id": me,
                          "input_uri": "ipfs://Qm", "ipfs_cid": None, "error_message": "",
                          "last_pinged_diff": 12},
        "string__id_without_id": {"_id": job_id, "status": "assigned", "assigned_to": me},
        "synthetic_no_status_no_owner": {"id": job_id, "created_at": "2026-01-02T03:04:05Z"},
        "synthetic_no_status": {"id": job_id, "assigned_to": me},
        "no_id_at_all": {"status": "assigned", "assigned_to": me},
        "empty_id": {**proof, "id": ""},
        "null_id": {**proof, "id": None},
        "object__id_without_id": {"_id": {"$oid": "65f0c0ffee00"}, "status": "assigned",
                                  "assigned_to": me},
        "demo_job": {**proof, "id": "demo-job-1"},
        "other_job": {**proof, "id": OTHER_JOB_ID},
        "owner_null": {**proof, "assigned_to": None},
        "owner_absent_encoder_id_is_us": {"_id": OBJECT_ID, "id": job_id, "status": "assigned",
                                          "encoder_id": me},
        "owner_empty": {**proof, "assigned_to": ""},
        "other_owner": {**proof, "status": "running", "assigned_to": OTHER_DID},
        "uploading_ours": {**proof, "status": "uploading"},
        "complete_ours": {**proof, "status": "complete"},
        "completed_ours": {**proof, "status": "completed"},
        "gateway_queued": {"id": job_id, "status": "queued", "attempt_count": 1},
        "aid_pending": {"id": job_id, "status": "pending"},
        "unassigned": {"id": job_id, "status": "unassigned", "assigned_to": None},
        "status_case": {**proof, "status": "Assigned"},
        # The real server's stand-in: it names the gateway's status and owner, us included.
        "stand_in_naming_us": stand_in_record(job_id, "assigned", me),
        "stand_in_naming_us_running_short_did": stand_in_record(job_id, "running", "did:" + tail),
        "stand_in_naming_another": stand_in_record(job_id, "running", OTHER_DID),
        "stand_in_no_owner": stand_in_record(job_id, "queued", ABSENT),
        "stand_in_null_owner": stand_in_record(job_id, "assigned", None),
        # A proof but for one trait of the stand-in's fingerprint.
        "proof_without__id": {k: v for k, v in proof.items() if k != "_id"},
        "proof_null__id": {**proof, "_id": None},
        "proof_blank_video_fields": {**proof, "metadata": {"video_owner": "",
                                                           "video_permlink": ""},
                                     "input": {"uri": "", "size": 0}},
        "proof_blank_legacy_owner": {**proof, "owner": "", "permlink": "abc"},
        "proof_with_video_fields": {**proof, "metadata": {"video_owner": "alice",
                                                          "video_permlink": "abc"},
                                    "input": {"uri": "ipfs://Qm", "size": 1234},
                                    "owner": "alice", "permlink": "abc"},
    }


def ident_of(record: Mapping[str, Any]) -> Any:
    """The id a record claims, as the contract defines it: ``id``, else a string ``_id``."""
    ident = record.get("id")
    return record.get("_id") if ident is None else ident


def expected_for_id(record: Mapping[str, Any], job_id: str) -> str | None:
    """What the contract fixes for a well-typed record, judging by the id it claims (``id``,
    else ``_id``, as ``parse_job`` reads it): ``"answer"`` when it is ``job_id``, ``"raise"``
    when it is another job (demo jobs, a misrouted answer) or not a string, ``None`` when it
    has no id at all: such a record may be read as an answer that proves nothing or refused as
    malformed; the suites only require that it never reads as ours."""
    claimed = record.get("id")
    if claimed is None:
        claimed = record.get("_id", "")
    if claimed == "":
        return None
    return "answer" if claimed == job_id else "raise"


def answered_job(data: Any) -> Any:
    """The job inside ``data``, unwrapping the gateway's ``{job, rank}`` nesting."""
    if isinstance(data, Mapping):
        nested = data.get("job")
        if isinstance(nested, Mapping) and "id" not in data and "status" not in data:
            return nested
    return data


def is_ours(record: Any, job_id: str, me: str, statuses: frozenset[str]) -> bool:
    """The truth the suites judge by: ``record`` is a job object whose id *is* ``job_id``, whose
    ``assigned_to`` is a string normalising to ``me``, and whose status is in ``statuses``.

    Stricter than "nothing contradicts it": an answer without an id, or with an empty one,
    proves nothing about *this* job.
    """
    if not isinstance(record, Mapping) or ident_of(record) != job_id:
        return False
    owner = record.get("assigned_to")
    return (
        isinstance(owner, str)
        and contract_did(owner) != ""
        and contract_did(owner) == contract_did(me)
        and record.get("status") in statuses
    )


# --------------------------------------------------------------------------- replies

_Failure = type[httpx.HTTPError]


@dataclass(frozen=True, eq=False)
class Reply:
    """One answer (or failure) of a mocked service.

    ``payload``: the JSON value the body serialises (``NO_JSON`` otherwise). ``failure``: raised
    instead of answering (or, with ``fail_after``, after that many body bytes). ``hang``: the
    server never answers (only for clients with a hard deadline). ``expect``: ``"answer"`` when
    the contract says the call must return, ``"raise"`` when it must raise, ``None`` when the
    suites only check safety. ``label`` says how the reply was built (for failure reports).
    """

    label: str
    status: int = 200
    payload: Any = NO_JSON
    content: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    chunked: bool = False
    failure: _Failure | None = None
    fail_after: int | None = None
    hang: bool = False
    expect: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        body = self.content if len(self.content) <= 300 else (
            self.content[:200] + b"...<%d bytes>" % len(self.content))
        payload = "" if self.payload is NO_JSON else f", payload={_short(self.payload)}"
        failure = "" if self.failure is None else f", failure={self.failure.__name__}"
        return (f"Reply({self.label!r}, status={self.status}{payload}, content={body!r}, "
                f"headers={self.headers!r}{failure}, chunked={self.chunked}, "
                f"fail_after={self.fail_after}, hang={self.hang}, expect={self.expect!r}"
                f"{', extra=' + repr(dict(self.extra)) if self.extra else ''})")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Hypothesis prints failing examples with this: keeps a 1 MiB body out of reports."""
        printer.text(repr(self))

    async def respond(self, request: httpx.Request) -> httpx.Response:
        """The respx side effect: serve this reply to ``request``."""
        if self.hang:
            await asyncio.sleep(3600)
        if self.failure is not None and self.fail_after is None:
            raise self.failure("simulated failure", request=request)
        headers = list(self.headers)
        if self.chunked or self.fail_after is not None:
            return httpx.Response(self.status, headers=headers, content=self._stream(request))
        return httpx.Response(self.status, headers=headers, content=self.content)

    async def _stream(self, request: httpx.Request) -> AsyncIterator[bytes]:
        limit = len(self.content) if self.fail_after is None else self.fail_after
        step = 64 * 1024
        for start in range(0, limit, step):
            yield self.content[start:min(start + step, limit)]
        if self.failure is not None:
            raise self.failure("simulated failure mid-body", request=request)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 400 else text[:300] + f"...<{len(text)} chars>"


def json_reply(label: str, status: int, payload: Any, *, expect: str | None = None,
               headers: tuple[tuple[str, str], ...] = (), **extra: Any) -> Reply:
    """A reply whose body is ``payload`` serialised (compact, as the services send it)."""
    content = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Reply(label, status, payload, content,
                 (("content-type", "application/json"), *headers), expect=expect, extra=extra)


# --------------------------------------------------------------------------- breakages

def _not_json(content: bytes) -> bool:
    try:
        json.loads(content)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return True
    return False


@functools.cache
def retry_after_values() -> st.SearchStrategy[str]:
    """``Retry-After`` header values: delay-seconds, decimals, HTTP dates (past and future),
    negative, infinite, exponent forms and printable garbage."""
    return st.one_of(
        st.integers(0, 10**9).map(str),
        st.floats(0, 1e6, allow_nan=False).map(lambda f: f"{f:.3f}"),
        st.sampled_from(["-1", "inf", "nan", "1e309", "1e3", "", " 120 ", "0x10", "1,5"]),
        st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9000, 1, 1)).map(
            lambda d: email.utils.format_datetime(d.replace(tzinfo=UTC), usegmt=True)),
        st.text(alphabet=_PRINTABLE_ASCII, max_size=30),
    )


@functools.cache
def transport_failures() -> st.SearchStrategy[_Failure]:
    """What httpx raises when there is no (complete) answer."""
    return st.sampled_from([
        httpx.ReadTimeout, httpx.ConnectTimeout, httpx.WriteTimeout, httpx.PoolTimeout,
        httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError,
        httpx.LocalProtocolError, httpx.ProxyError, httpx.UnsupportedProtocol,
        httpx.DecodingError, httpx.TooManyRedirects,
    ])


_STATUS_CODES: Final = st.one_of(
    st.sampled_from([200, 201, 202, 204, 206]),
    st.sampled_from([301, 302, 303, 304, 307, 308]),
    st.sampled_from([400, 401, 403, 404, 405, 409, 410, 422, 429]),
    st.sampled_from([500, 501, 502, 503, 504]),
    st.integers(200, 599),
)


def _always_raises(status: int) -> bool:
    """Statuses no client may read as an answer: redirects, rate limits, server errors."""
    return 300 <= status < 400 or status == 429 or status >= 500


def _restatus(reply: Reply, status: int) -> Reply:
    """``reply`` served with another status; its expectation survives only where every status
    of that class is fixed by the contract."""
    return replace(reply, label=f"{reply.label}@{status}", status=status,
                   expect="raise" if _always_raises(status) else None)


_RETRY_AFTER: Final = st.none() | retry_after_values()
_KINDS: Final = (
    "perturbed", "restatus", "truncated", "arbitrary", "nonstandard", "huge", "garbage",
    "rate_limited", "redirect", "failure", "failure_mid_body", "gzip_lie",
)


@st.composite
def breakages(draw: st.DrawFn, documented: st.SearchStrategy[Reply],
              hang: bool = False) -> Reply:
    """Every kind of broken answer, derived from a route's documented answers."""
    kind = draw(st.sampled_from([*_KINDS, "hang"] if hang else _KINDS))
    base = draw(documented)
    if kind == "perturbed":
        payload = base.payload if base.payload is not NO_JSON else {}
        return json_reply("perturbed:" + base.label, base.status, draw(perturbed(payload)),
                          expect="raise" if _always_raises(base.status) else None)
    if kind == "restatus":
        return _restatus(base, draw(_STATUS_CODES))
    if kind == "truncated":
        content = base.content if base.content[:1] in (b"{", b"[") else b'{"success":true}'
        cut = draw(st.integers(1, max(1, len(content) - 1)))
        # A strict prefix of an object or array is never JSON: a 200 cannot be an answer.
        return Reply("truncated:" + base.label, 200, NO_JSON, content[:cut], expect="raise")
    if kind == "arbitrary":
        return json_reply("arbitrary", draw(st.sampled_from([200, 200, 201, 404, 409])),
                          draw(json_values()))
    if kind == "nonstandard":
        raw = draw(st.sampled_from([
            b'{"success":true,"data":NaN}', b'{"success":Infinity}', b'[-Infinity]',
            b'{"success":true,"success":false}', b'{"status":"success","status":"error"}',
            b'{"success":true,"data":{"id":"x","id":"y"}}', b'\xff\xfe{"success":true}',
            b'{"success":true,"data":"\xc3\x28"}', b"[" * 100_000,
        ]))
        return Reply("nonstandard", 200, NO_JSON, raw, expect="raise")
    if kind == "huge":
        # JSON allows any amount of whitespace around a value: the padding changes the size,
        # never the meaning, so the base's expectation holds below the cap.
        over = draw(st.booleans())
        size = MAX_BODY_BYTES + draw(st.integers(1, 4096)) if over else draw(
            st.integers(1, MAX_BODY_BYTES - 4096 - len(base.content)))
        return replace(base, label=("huge-over:" if over else "huge-under:") + base.label,
                       content=b" " * size + base.content, chunked=draw(st.booleans()),
                       expect="raise" if over else base.expect)
    if kind == "garbage":
        # Bytes that happen to parse as JSON are not garbage (Hypothesis draws literals from
        # our own modules too, such as b'{"success":true}'): JSON bodies are other kinds' job.
        return Reply("garbage", draw(st.sampled_from([200, 201, 404])), NO_JSON,
                     draw(st.binary(max_size=64).filter(_not_json)))
    if kind == "rate_limited":
        value = draw(_RETRY_AFTER)
        headers = () if value is None else (("retry-after", value),)
        return replace(base, label="429:" + base.label, status=429, headers=headers,
                       expect="raise", extra={"retry_after": value})
    if kind == "redirect":
        return Reply("redirect", draw(st.sampled_from([301, 302, 303, 307, 308])), NO_JSON,
                     b"", (("location", "https://elsewhere.test/"),), expect="raise")
    if kind == "failure":
        return Reply("failure", failure=draw(transport_failures()), expect="raise")
    if kind == "failure_mid_body":
        cut = draw(st.integers(0, max(0, len(base.content) - 1)))
        failure = draw(transport_failures())
        return replace(base, label="mid-body:" + base.label, failure=failure, fail_after=cut,
                       expect="raise")
    if kind == "gzip_lie":
        # Not gzip: reading the body fails (an empty body has nothing to fail on).
        return replace(base, label="gzip-lie:" + base.label,
                       headers=(*base.headers, ("content-encoding", "gzip")),
                       expect="raise" if base.content or _always_raises(base.status) else None)
    return Reply("hang", hang=True, expect="raise")


def replies(
    documented: st.SearchStrategy[Reply], *, hang: bool = False
) -> st.SearchStrategy[Reply]:
    """A route's answers: documented (valid and quirky) about half the time, broken otherwise."""
    return st.one_of(documented, breakages(documented, hang=hang))


# --------------------------------------------------------------------------- hostile ids

@functools.cache
def hostile_numbers() -> st.SearchStrategy[Any]:
    """Progress percentages from a bug: out of range, NaN, infinite, bools, text, null."""
    return st.one_of(
        st.floats(), st.integers(-(2**70), 2**70), st.booleans(), st.none(),
        st.text(max_size=4), st.sampled_from([50, 0.0, 100]),
    )


@functools.cache
def hostile_mappings(keys: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """A progress or result argument: mappings with ``keys`` holding anything, or no mapping."""
    return st.one_of(
        st.dictionaries(st.sampled_from([*keys, "$set", "a.b"]),
                        hostile_numbers() | json_values(3), max_size=3),
        st.none(), st.lists(st.integers(), max_size=2), st.text(max_size=4),
    )


@functools.cache
def hostile_ids() -> st.SearchStrategy[Any]:
    """Job ids (or DIDs) from an attacker or a bug: any text (control characters, ``/``, ``%``,
    ``..``, very long), ids that look fine, and non-strings (operators, lists, numbers, bytes)."""
    return st.one_of(
        st.text(max_size=40),
        st.text(max_size=300, alphabet=st.sampled_from("a/%?#.\\-:")),
        st.sampled_from([JOB_ID, ".", "..", "../stats", "%2e%2e", "a?b=1", "a#b", "x" * 257,
                         "did:key:z6Mk", "\x00", " ", "é/ü"]),
        st.none(), st.integers(), st.booleans(), st.binary(max_size=8),
        st.dictionaries(st.sampled_from(["$ne", "$gt", "$regex", "$where", "$in"]),
                        json_values(3), min_size=1, max_size=2),
        st.lists(st.text(max_size=5), max_size=3),
    )

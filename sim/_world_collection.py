"""The world's job store as a pymongo collection, for the production ``DatabaseTier``.

Infrastructure encoders in live runs use the real :class:`verifier.DatabaseTier`; its
filters must be evaluated with MongoDB's semantics (``null`` matching an absent field, the
``$nor``/``$type: "array"`` guards, ``$in``) against the *world's* jobs, and its writes must
take effect through the world's own database operations, so that the world records the
assignment, commit or requeue and its lagging monitor sees it. :class:`WorldCollection` does
exactly that: it shows each job as a document, evaluates the filter with mongomock's matcher,
and maps the update (by its shape) to ``World.db_claim``/``db_heartbeat``/``db_finish``/
``db_release``. It decides nothing itself; an update shape it does not know is an error, so a
change to ``DatabaseTier`` cannot silently diverge from the world.

``DatabaseTier`` calls the collection from its worker thread while the world lives on the
event loop's thread: every access goes through ``run`` (in live runs a blocking hop onto the
loop, :meth:`sim._live_world.LiveWorld.hop`), with the filter check and the write in one hop,
so they are atomic on the world. The world's reply delay is then slept on the worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from mongomock.filtering import filter_applies
from pymongo import ReturnDocument

from verifier._protocol import WriteOutcome

from ._world import Job, World

__all__ = ["WorldCollection"]

_T = TypeVar("_T")


def _direct(fn: Callable[[], _T]) -> _T:
    return fn()


def _no_sleep(_delay: float) -> None:
    return None


@dataclass(frozen=True, slots=True)
class UpdateResult:
    matched_count: int
    modified_count: int
    acknowledged: bool = True


#: World time 0 as a date (the emulator's epoch): pymongo hands dates back as datetimes.
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _date(t: float) -> datetime:
    return _EPOCH + timedelta(seconds=max(t, 0.0))


def _image(job: Job) -> dict[str, Any]:
    """A world job as its database document (absent owner and token: keys omitted)."""
    doc: dict[str, Any] = {"_id": job.id, "id": job.id, "status": job.status,
                           "claim_epoch": job.epoch, "attempt_count": job.attempts,
                           "created_at": _date(job.created),
                           "last_pinged": _date(job.last_pinged)}
    if job.owner is not None:
        doc["assigned_to"] = job.owner
    if job.token is not None:
        doc["claim_token"] = job.token
    return doc


class WorldCollection:
    """A pymongo-``Collection``-like view of ``world.jobs`` (the subset DatabaseTier uses)."""

    def __init__(self, world: World, *, run: Callable[[Callable[[], Any]], Any] = _direct,
                 sleep: Callable[[float], None] = _no_sleep) -> None:
        self.world = world
        self._run = run
        self._sleep = sleep

    def _locate(self, filter: Mapping[str, Any]) -> Job | None:
        job_id = filter.get("id")
        if not isinstance(job_id, str):
            raise NotImplementedError("WorldCollection finds documents by a string 'id' only")
        return self.world.jobs.get(job_id)

    def find_one(self, filter: Mapping[str, Any], *args: Any, **kwargs: Any
                 ) -> dict[str, Any] | None:
        def read() -> tuple[dict[str, Any] | None, float]:
            job = self._locate(filter)
            if job is None:
                return None, 0.0
            _, delay = self.world.db_read(job.id)
            doc = _image(job)
            return (doc if filter_applies(filter, doc) else None), delay

        doc, delay = self._run(read)
        self._sleep(delay)
        return doc

    def find_one_and_update(self, filter: Mapping[str, Any], update: Mapping[str, Any],
                            return_document: Any = ReturnDocument.BEFORE, **kwargs: Any
                            ) -> dict[str, Any] | None:
        fields = update.get("$set", {})
        if fields.get("status") != "assigned" or "assigned_to" not in fields or \
                "claim_token" not in fields:
            raise NotImplementedError(f"find_one_and_update of shape {sorted(update)}: only "
                                      "DatabaseTier's claim is supported")
        did, token = fields["assigned_to"], fields["claim_token"]

        def claim() -> tuple[dict[str, Any] | None, float]:
            job = self._locate(filter)
            if job is None:
                return None, 0.0
            before = _image(job)
            if not filter_applies(filter, before):
                return None, 0.0
            answer, delay = self.world.db_claim(did, job.id, conditional=True, token=token)
            if answer.outcome is not WriteOutcome.OK:
                return None, delay
            return (_image(job) if return_document == ReturnDocument.AFTER else before), delay

        doc, delay = self._run(claim)
        self._sleep(delay)
        return doc

    def update_one(self, filter: Mapping[str, Any], update: Mapping[str, Any],
                   *args: Any, **kwargs: Any) -> UpdateResult:
        fields = update.get("$set", {})
        status = fields.get("status")
        world = self.world
        op: Callable[[str, str, str | None], Any]
        if status == "complete":
            def op(did: str, job_id: str, token: str | None) -> Any:
                return world.db_finish(did, job_id, token, fenced=True)
        elif status in ("queued", "failed") and "$unset" in update:
            failed = "$inc" in update

            def op(did: str, job_id: str, token: str | None) -> Any:
                return world.db_release(did, job_id, token, failed=failed)
        elif "last_pinged" in fields and status in (None, "running"):
            op = world.db_heartbeat
        else:
            raise NotImplementedError(f"update_one with $set {sorted(fields)}: not one of "
                                      "DatabaseTier's heartbeat, finish or release")
        did = filter.get("assigned_to")
        if not isinstance(did, str):
            raise NotImplementedError("a fenced write must filter on a string 'assigned_to'")

        def write() -> tuple[int, float]:
            job = self._locate(filter)
            if job is None or not filter_applies(filter, _image(job)):
                return 0, 0.0
            # The filter matched the current assignment: the world's fence sees its token.
            answer, delay = op(did, job.id, job.token)
            return int(answer.outcome is WriteOutcome.OK), delay

        matched, delay = self._run(write)
        self._sleep(delay)
        return UpdateResult(matched, matched)

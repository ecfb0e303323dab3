"""The world's job store as a pymongo collection, for the production ``DatabaseTier``.

Infrastructure encoders in live runs use the real :class:`verifier.DatabaseTier`. Its filters
must be evaluated with MongoDB's semantics (``null`` matching an absent field, the
``$nor``/``$type: "array"`` guards, ``$in``, ``$or`` over ``attempt_count``) against the
*world's* jobs, and its writes must take effect through the world's own database operations,
so that the world records the assignment, commit or requeue in its history and its lagging
monitor sees it. :class:`WorldCollection` does exactly that and nothing more:

* each :class:`~sim._world.Job` is shown as the document the gateway's ``jobs`` collection
  would hold (owner and token keys *absent* when unset, as the aid server's reset and a
  release leave them);
* the filter is evaluated by mongomock's matcher on that image, never by a second model;
* the update is recognised by its shape and becomes ``World.db_claim``/``db_heartbeat``/
  ``db_finish``/``db_release``; the world decides, and counts the call.

There is no second database: fields the world does not model (``progress``, ``result``,
``assigned_date``) are accepted and dropped, and when the world's rule differs from the real
server's (the world moves a job to ``running`` on any heartbeat; DatabaseTier asks for it only
above 1 %), the world wins. An update or query shape that is not one DatabaseTier sends raises
:class:`NotImplementedError`, so a change to ``DatabaseTier`` fails loudly here instead of
silently diverging from the world.

Threads: ``DatabaseTier`` calls the collection from its single worker thread, while in live
runs the world lives on the event loop's thread. Every world access therefore goes through
``run`` (live runs pass :meth:`sim.live._world.LiveWorld.hop`, a blocking hop onto the loop),
and each operation makes exactly **one** ``run`` call holding the image, the filter check and
the world's write: check and act are atomic on the world, as a conditional update is atomic on
a real server. The world's reply delay is then passed to ``sleep`` on the calling thread, so
database latency is real in live runs without ever blocking the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from mongomock.filtering import filter_applies
from pymongo import ReturnDocument

from verifier.protocol import WriteAnswered, WriteOutcome

from .._world import Job, World

__all__ = ["UpdateResult", "WorldCollection"]

#: ``run(fn)``: execute ``fn`` where the world may be touched and return its result.
Run = Callable[[Callable[[], Any]], Any]


def _direct(fn: Callable[[], Any]) -> Any:
    return fn()


def _no_sleep(_delay: float) -> None:
    return None


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """The part of pymongo's ``UpdateResult`` that callers read."""

    matched_count: int
    modified_count: int
    acknowledged: bool = True


#: World time 0 as a date: pymongo hands dates back as datetimes, and ``parse_job`` reads them.
_EPOCH: Final = datetime(2026, 1, 1, tzinfo=UTC)

#: The update shapes DatabaseTier sends, by operator: the fields each may carry. Anything
#: outside these is refused, so a new field or operator is noticed rather than dropped.
_CLAIM_SET: Final = frozenset(
    {"assigned_to", "status", "assigned_date", "last_pinged", "claim_token"})
_HEARTBEAT_SET: Final = frozenset({"last_pinged", "progress", "status"})
_FINISH_SET: Final = frozenset({"status", "result", "completed_at"})
_ASSIGNMENT_FIELDS: Final = frozenset({"assigned_to", "assigned_date", "claim_token"})
#: Keyword arguments accepted only with their default (harmless) value.
_NEUTRAL_KWARGS: Final = {"upsert": False, "session": None}


def _date(t: float) -> datetime:
    return _EPOCH + timedelta(seconds=max(t, 0.0))


def _image(job: Job) -> dict[str, Any]:
    """A world job as its database document (absent owner and token: keys omitted).

    Omitting, not nulling, the keys matters: DatabaseTier's claim filter ``assigned_to: None``
    must match an absent field by MongoDB's rule, which is what the real collection holds
    after a release ``$unset``.
    """
    doc: dict[str, Any] = {
        "_id": job.id, "id": job.id, "status": job.status, "claim_epoch": job.epoch,
        "attempt_count": job.attempts, "created_at": _date(job.created),
        "last_pinged": _date(job.last_pinged),
    }
    if job.owner is not None:
        doc["assigned_to"] = job.owner
    if job.token is not None:
        doc["claim_token"] = job.token
    return doc


def _applies(filter: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    return bool(filter_applies(filter, doc))  # type: ignore[no-untyped-call]


def _job_id(filter: Mapping[str, Any]) -> str:
    """The job a filter names. DatabaseTier always filters on ``id`` equality; any other way
    of locating a document would need a query engine over the world, which this is not."""
    if not isinstance(filter, Mapping):
        raise NotImplementedError("WorldCollection: the filter must be a mapping")
    job_id = filter.get("id")
    if not isinstance(job_id, str):
        raise NotImplementedError(
            "WorldCollection locates documents by string equality on 'id' only, got "
            f"{type(job_id).__name__} for 'id'")
    return job_id


def _check_kwargs(method: str, kwargs: Mapping[str, Any]) -> None:
    for key, value in kwargs.items():
        if key not in _NEUTRAL_KWARGS or value != _NEUTRAL_KWARGS[key]:
            raise NotImplementedError(f"WorldCollection.{method}: argument {key}={value!r}")


def _check_shape(method: str, update: Mapping[str, Any],
                 allowed: Mapping[str, frozenset[str]]) -> None:
    """Refuse an update using an operator or a field outside ``allowed``."""
    if not isinstance(update, Mapping):
        raise NotImplementedError(f"WorldCollection.{method}: the update must be a mapping")
    for op, fields in update.items():
        if op not in allowed or not isinstance(fields, Mapping):
            raise NotImplementedError(
                f"WorldCollection.{method}: operator {op!r} in an update of shape "
                f"{sorted(update)}")
        unknown = sorted(set(fields) - allowed[op])
        if unknown:
            raise NotImplementedError(
                f"WorldCollection.{method}: {op} of {unknown} is not in DatabaseTier's shape")


class WorldCollection:
    """A pymongo-``Collection``-like view of ``world.jobs``: the subset DatabaseTier uses.

    ``run`` executes a function where the world may be touched (default: directly, for tests
    that drive everything from one thread); ``sleep`` receives the world's reply delay after
    each call (default: no sleep; live runs pass ``time.sleep``).
    """

    def __init__(self, world: World, *, run: Run = _direct,
                 sleep: Callable[[float], None] = _no_sleep) -> None:
        self.world = world
        self._run = run
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"WorldCollection({len(self.world.jobs)} jobs)"

    # ------------------------------------------------------------------ world side (in run)

    def _missing_delay(self) -> float:
        """The reply delay for a job the world does not have: the world's ``db_*`` operations
        index ``world.jobs`` directly, so there is no world call to ask; its latency model is
        used instead (not counted: no database operation of the world took place)."""
        return self.world.latency(self.world.sc.database_latency)

    def _unmatched(self, job: Job) -> float:
        """A write whose filter matched nothing is still one round trip to the database.

        The world's ``db_read`` is its one operation that changes nothing: it counts the call
        and gives the delay, as the refused conditional update costs on a real server.
        """
        _, delay = self.world.db_read(job.id)
        return delay

    def _exchange(self, fn: Callable[[], tuple[Any, float]]) -> Any:
        result, delay = self._run(fn)
        self._sleep(delay)  # outside run: the loop must not wait out the latency
        return result

    # ------------------------------------------------------------------ the Collection API

    def find_one(self, filter: Mapping[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        """The job's document when the filter applies to it (one ``World.db_read``)."""
        job_id = _job_id(filter)
        _check_kwargs("find_one", kwargs)

        def read() -> tuple[dict[str, Any] | None, float]:
            job = self.world.jobs.get(job_id)
            if job is None:
                return None, self._missing_delay()
            _, delay = self.world.db_read(job_id)
            doc = _image(job)
            return (doc if _applies(filter, doc) else None), delay

        doc: dict[str, Any] | None = self._exchange(read)
        return doc

    def find_one_and_update(
        self, filter: Mapping[str, Any], update: Mapping[str, Any],
        return_document: bool = ReturnDocument.BEFORE, **kwargs: Any,
    ) -> dict[str, Any] | None:
        """DatabaseTier's claim: ``$set`` of status ``assigned``, owner and token → ``db_claim``.

        The world's conditional claim checks the same predicate as the filter (unowned, in a
        claimable status); the filter is evaluated first so that its extra guards (no array
        fields) are honoured, and a world refusal despite a matching filter is still ``None``.
        """
        job_id = _job_id(filter)
        _check_kwargs("find_one_and_update", kwargs)
        _check_shape("find_one_and_update", update,
                     {"$set": _CLAIM_SET, "$inc": frozenset({"claim_epoch"})})
        fields = update.get("$set", {})
        did, token = fields.get("assigned_to"), fields.get("claim_token")
        if fields.get("status") != "assigned" or not isinstance(did, str) or not (
                isinstance(token, str) and token):
            raise NotImplementedError(
                "WorldCollection.find_one_and_update: only DatabaseTier's claim ($set of status "
                "'assigned', a string assigned_to and a claim_token) is supported")
        if update.get("$inc", {"claim_epoch": 1}) != {"claim_epoch": 1}:
            # The world's assignment advances the epoch by exactly one.
            raise NotImplementedError("WorldCollection.find_one_and_update: $inc other than "
                                      "claim_epoch by 1")

        def claim() -> tuple[dict[str, Any] | None, float]:
            job = self.world.jobs.get(job_id)
            if job is None:
                return None, self._missing_delay()
            before = _image(job)
            if not _applies(filter, before):
                return None, self._unmatched(job)
            answer, delay = self.world.db_claim(did, job_id, conditional=True, token=token)
            if answer.outcome is not WriteOutcome.OK:
                return None, delay
            return (_image(job) if return_document else before), delay

        doc: dict[str, Any] | None = self._exchange(claim)
        return doc

    def update_one(self, filter: Mapping[str, Any], update: Mapping[str, Any],
                   **kwargs: Any) -> UpdateResult:
        """DatabaseTier's fenced writes: heartbeat, finish, release (requeue or fail).

        The writer is the filter's ``assigned_to``; the token given to the world is the job's
        current one, which is the token the filter's ``claim_token`` (a value or an ``$in`` of
        tokens this client sent) just matched. So the world's own fence agrees with the filter;
        if it still refuses, nothing matched.
        """
        job_id = _job_id(filter)
        _check_kwargs("update_one", kwargs)
        op = self._write_op(update)
        did = filter.get("assigned_to")
        if not isinstance(did, str):
            raise NotImplementedError(
                "WorldCollection.update_one: a fenced write must filter on a string "
                "'assigned_to'")

        def write() -> tuple[int, float]:
            job = self.world.jobs.get(job_id)
            if job is None:
                return 0, self._missing_delay()
            if not _applies(filter, _image(job)):
                return 0, self._unmatched(job)
            answer, delay = op(did, job_id, job.token)
            return int(answer.outcome is WriteOutcome.OK), delay

        matched: int = self._exchange(write)
        return UpdateResult(matched_count=matched, modified_count=matched)

    def _write_op(self, update: Mapping[str, Any]
                  ) -> Callable[[str, str, str | None], tuple[WriteAnswered, float]]:
        """The world operation an update's shape stands for (refusing unknown shapes)."""
        world = self.world
        if not isinstance(update, Mapping):
            raise NotImplementedError("WorldCollection.update_one: the update must be a mapping")
        fields = update.get("$set", {})
        status = fields.get("status") if isinstance(fields, Mapping) else None
        if status in ("queued", "failed"):
            _check_shape("update_one", update, {"$set": frozenset({"status"}),
                                                "$unset": _ASSIGNMENT_FIELDS,
                                                "$inc": frozenset({"attempt_count"})})
            if not {"assigned_to", "claim_token"} <= set(update.get("$unset", {})):
                raise NotImplementedError("WorldCollection.update_one: a release must $unset "
                                          "assigned_to and claim_token")
            inc = update.get("$inc")
            if inc is not None and inc != {"attempt_count": 1}:
                raise NotImplementedError("WorldCollection.update_one: a release may only "
                                          "count one failed attempt")
            failed = inc is not None

            def release(did: str, job_id: str, token: str | None
                        ) -> tuple[WriteAnswered, float]:
                return world.db_release(did, job_id, token, failed=failed)

            return release
        if status == "complete":
            _check_shape("update_one", update, {"$set": _FINISH_SET})

            def finish(did: str, job_id: str, token: str | None
                       ) -> tuple[WriteAnswered, float]:
                return world.db_finish(did, job_id, token, fenced=True)

            return finish
        if status in (None, "running") and "last_pinged" in fields:
            _check_shape("update_one", update, {"$set": _HEARTBEAT_SET})
            return world.db_heartbeat
        raise NotImplementedError(
            f"WorldCollection.update_one: an update of shape {sorted(update)} with $set "
            f"{sorted(fields) if isinstance(fields, Mapping) else fields!r} is none of "
            "DatabaseTier's heartbeat, finish or release")

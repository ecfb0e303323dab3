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
* the filter is evaluated by mongomock's matcher on that image, never by a second model, and
  **the filter alone decides**: when it matches, the update is applied unconditionally through
  the world (``World.db_claim(conditional=False)``, ``World.db_finish(fenced=False)``, and
  :func:`_heartbeat_unfenced` / :func:`_release_unfenced`, the world's heartbeat and release
  writes without their fence). The world's own predicates (claimable and unowned, owner and
  token) never stand in for DatabaseTier's: a weakened production filter takes effect in a
  live run exactly as it would on a real server, so the run can show it;
* the update is recognised by its shape; ``$currentDate`` fields are the world's current time
  (the server's clock), and a date in ``$set`` is refused: it could only be the encoder's
  clock, which the gateway's reassignment does not run on.

There is no second database: fields the world does not model (``progress``, ``result``,
``completed_at``) are accepted and dropped, and when the world's rule differs from the real
server's (the world moves an ``assigned`` job to ``running`` on any heartbeat; DatabaseTier asks
for it only above 1 %), the world wins. An update or query shape that is not one DatabaseTier
sends raises :class:`NotImplementedError`, so a change to ``DatabaseTier`` fails loudly here
instead of silently diverging from the world.

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

from .._history import WORLD
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
#: A claim's ``$set``; its ``progress`` is the reset to none the world's assignment makes too.
_CLAIM_SET: Final = frozenset({"assigned_to", "status", "claim_token", "progress"})
_NO_PROGRESS: Final = {"pct": 0.0, "download_pct": 0.0}
_CLAIM_DATES: Final = frozenset({"assigned_date", "last_pinged"})
_HEARTBEAT_SET: Final = frozenset({"progress", "status"})
_HEARTBEAT_DATES: Final = frozenset({"last_pinged"})
_FINISH_SET: Final = frozenset({"status", "result"})
_FINISH_DATES: Final = frozenset({"completed_at"})
_ASSIGNMENT_FIELDS: Final = frozenset({"assigned_to", "assigned_date", "claim_token"})
#: Dates of the ownership lifecycle: written only by the server's clock (``$currentDate``).
_DATE_FIELDS: Final = frozenset({"assigned_date", "last_pinged", "start_date", "completed_at"})
#: The ``$currentDate`` values that ask for a BSON date (not a BSON timestamp).
_SERVER_DATE: Final = {"$type": "date"}
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
        if job.owned_at >= 0:  # when the current assignment landed (the emulator's rule too)
            doc["assigned_date"] = _date(job.owned_at)
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
                 allowed: Mapping[str, frozenset[str]],
                 stamped: frozenset[str] = frozenset()) -> None:
    """Refuse an update using an operator or a field outside ``allowed``.

    Dates are the server's: a date field in ``$set`` is refused (its value came from the
    encoder's clock), ``$currentDate`` must ask for a date, and the fields in ``stamped`` (those
    the world's write sets to its own time, ``last_pinged``) must be among them: otherwise the
    world would write a date the update did not.
    """
    if not isinstance(update, Mapping):
        raise NotImplementedError(f"WorldCollection.{method}: the update must be a mapping")
    for op, fields in update.items():
        if op not in allowed or not isinstance(fields, Mapping):
            raise NotImplementedError(
                f"WorldCollection.{method}: operator {op!r} in an update of shape "
                f"{sorted(update)}")
        if op == "$set" and _DATE_FIELDS & set(fields):
            raise NotImplementedError(
                f"WorldCollection.{method}: $set of {sorted(_DATE_FIELDS & set(fields))}: "
                "dates must be the server's ($currentDate), not the encoder's clock")
        unknown = sorted(set(fields) - allowed[op])
        if unknown:
            raise NotImplementedError(
                f"WorldCollection.{method}: {op} of {unknown} is not in DatabaseTier's shape")
    dates = update.get("$currentDate", {})
    for field, kind in dates.items():
        if kind is not True and kind != _SERVER_DATE:
            raise NotImplementedError(
                f"WorldCollection.{method}: $currentDate of {field!r} as {kind!r}; only a "
                "date (True or {'$type': 'date'}) is modelled")
    missing = sorted(stamped - set(dates))
    if missing:
        raise NotImplementedError(
            f"WorldCollection.{method}: the update must stamp {missing} with $currentDate "
            "(the world's write renews them at its own time)")


# ---------------------------------------------------------------------- unfenced world writes
#
# ``World.db_claim`` and ``World.db_finish`` can write without their own predicate
# (``conditional=False``, ``fenced=False``); ``db_heartbeat`` and ``db_release`` cannot. These
# two make the same writes as those operations (call count, latency, state, write log,
# history), minus the fence, so that only DatabaseTier's filter decides. They belong on
# ``World`` as a ``fenced=False`` option of ``db_heartbeat``/``db_release``; until then they
# live beside their one caller and mirror the world's own helpers (``_pinged``, ``_write``,
# ``_enqueue``, ``_count_finished``): a change to those writes must be made here too
# (tests/live/test_collection.py pins the results).

_OK: Final = WriteAnswered(WriteOutcome.OK)


def _heartbeat_unfenced(world: World, job_id: str, *, running: bool,
                        progress: tuple[float, float] | None) -> tuple[WriteAnswered, float]:
    """``World.db_heartbeat``'s write without its fence: the lease renewed at the world's time
    (with the progress it sets: the no-progress clock), and ``running`` by the world's rule
    (an ``assigned`` job) or when the update sets it."""
    world.calls["database"] += 1
    delay = world.latency(world.sc.database_latency)
    job = world.jobs[job_id]
    # last_pinged := the world's now (and, if exact, the reassignments armed)
    world._pinged(job, progress)
    if (running or job.status == "assigned") and job.status != "running":
        world._write(job, status="running", owner=job.owner, token=job.token)
    return _OK, delay


def _release_unfenced(world: World, job_id: str, *, status: str, count_attempt: bool
                      ) -> tuple[WriteAnswered, float]:
    """``World.db_release``'s write without its fence: the assignment removed, the attempt
    counted when the update increments it, and the status the update sets (``queued`` or
    ``failed``; DatabaseTier's filters pick it by the attempt count, as the world would)."""
    world.calls["database"] += 1
    delay = world.latency(world.sc.database_latency)
    job = world.jobs[job_id]
    already_finished = job.status == "failed" or job_id in world.committed
    if count_attempt:
        job.attempts += 1
    world._write(job, status=status, owner=None, token=None)
    world.history.add(world.env.now, WORLD, job_id, "requeue", "ok",
                      "released as failed" if count_attempt else "released")
    if status == "queued":
        world._enqueue(job_id)
    elif not already_finished:
        world._count_finished()
    return _OK, delay


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
        """DatabaseTier's claim: ``$set`` of status ``assigned``, owner and token, and
        ``$currentDate`` of the lease → ``db_claim(conditional=False)``.

        The filter decides alone: when it matches the job's image, the world assigns the job
        unconditionally (its own "claimable and unowned" check is not consulted), at its current
        time. Should the world still refuse, the answer is ``None`` (fail closed).
        """
        job_id = _job_id(filter)
        _check_kwargs("find_one_and_update", kwargs)
        _check_shape("find_one_and_update", update,
                     {"$set": _CLAIM_SET, "$currentDate": _CLAIM_DATES,
                      "$inc": frozenset({"claim_epoch"})}, stamped=frozenset({"last_pinged"}))
        fields = update.get("$set", {})
        did, token = fields.get("assigned_to"), fields.get("claim_token")
        if fields.get("status") != "assigned" or not isinstance(did, str) or not (
                isinstance(token, str) and token):
            raise NotImplementedError(
                "WorldCollection.find_one_and_update: only DatabaseTier's claim ($set of status "
                "'assigned', a string assigned_to and a claim_token) is supported")
        if fields.get("progress", _NO_PROGRESS) != _NO_PROGRESS:
            raise NotImplementedError("WorldCollection.find_one_and_update: a claim that sets "
                                      "progress other than none")
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
            answer, delay = self.world.db_claim(did, job_id, conditional=False, token=token)
            if answer.outcome is not WriteOutcome.OK:
                return None, delay
            return (_image(job) if return_document else before), delay

        doc: dict[str, Any] | None = self._exchange(claim)
        return doc

    def update_one(self, filter: Mapping[str, Any], update: Mapping[str, Any],
                   **kwargs: Any) -> UpdateResult:
        """DatabaseTier's fenced writes: heartbeat, finish, release (requeue or fail).

        The filter is the fence, and the only one: when it matches the job's image, the write
        is applied without the world's own owner/token check. The writer (to whom a commit is
        credited in the history) is the filter's ``assigned_to``; should the world still refuse,
        nothing matched (fail closed).
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
            answer, delay = op(did, job_id)
            return int(answer.outcome is WriteOutcome.OK), delay

        matched: int = self._exchange(write)
        return UpdateResult(matched_count=matched, modified_count=matched)

    def _write_op(self, update: Mapping[str, Any]
                  ) -> Callable[[str, str], tuple[WriteAnswered, float]]:
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
            counted = inc is not None

            def release(_did: str, job_id: str) -> tuple[WriteAnswered, float]:
                return _release_unfenced(world, job_id, status=status, count_attempt=counted)

            return release
        if status == "complete":
            _check_shape("update_one", update,
                         {"$set": _FINISH_SET, "$currentDate": _FINISH_DATES})

            def finish(did: str, job_id: str) -> tuple[WriteAnswered, float]:
                job = world.jobs[job_id]
                return world.db_finish(did, job_id, job.token, fenced=False)

            return finish
        dates = update.get("$currentDate", {})
        if status in (None, "running") and "last_pinged" in {
                *(fields if isinstance(fields, Mapping) else ()),
                *(dates if isinstance(dates, Mapping) else ())}:
            _check_shape("update_one", update,
                         {"$set": _HEARTBEAT_SET, "$currentDate": _HEARTBEAT_DATES},
                         stamped=_HEARTBEAT_DATES)
            running = status == "running"
            reported = fields.get("progress") if isinstance(fields, Mapping) else None
            progress = (float(reported.get("pct", 0.0)), float(reported.get("download_pct", 0.0))
                        ) if isinstance(reported, Mapping) else None

            def heartbeat(_did: str, job_id: str) -> tuple[WriteAnswered, float]:
                return _heartbeat_unfenced(world, job_id, running=running, progress=progress)

            return heartbeat
        raise NotImplementedError(
            f"WorldCollection.update_one: an update of shape {sorted(update)} with $set "
            f"{sorted(fields) if isinstance(fields, Mapping) else fields!r} is none of "
            "DatabaseTier's heartbeat, finish or release")

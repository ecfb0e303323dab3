"""Checkers of the safety properties S1, S2, S3 (with the lease, a lemma of S2) and the
liveness property L1, on a history.

A checker reads only a :class:`~sim._history.History`, never the simulator: what the encoders
and the world *recorded* is the evidence, exactly as in Jepsen. That keeps the checkers honest
(a bug in the world cannot hide a violation from them) and lets them run on a replayed or
hand-written history.

Cost: one pass partitions the records by job (and indexes crashes, which carry no job, per
process); each job is then checked on its own records, in linear or ``n log n`` time in that
job's size. A run of millions of records is checked in seconds.

Preconditions (what the runner guarantees): records are in time order, ties in the order they
happened. Positions in the history, not only times, decide whether a crash came before or after
a start recorded at the same instant.

The processing interval of (process, job) is the fact all of S1, S2 and the wasted-work metric
rest on:

* it opens at ``start``/``ok``;
* it closes at ``stop``/``ok`` (the encoder confirmed its work has ended) or at the process's
  next ``crash`` (a crashed encoder has provably stopped);
* nothing else closes it: a ``pause`` does not (a paused encoder still holds its interval), a
  ``stop`` with phase ``info`` does not (an unconfirmed stop may not have happened), and an
  interval never closed extends to +infinity.
"""

from __future__ import annotations

import heapq
import math
import sys
from bisect import bisect_right
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from ._history import WORLD, History, Record
from ._scenario import Scenario

__all__ = [
    "CheckResult",
    "Interval",
    "L1Bound",
    "check_all",
    "check_claim_evidence",
    "check_finished_work",
    "check_fresh_reads",
    "check_give_back",
    "check_l1",
    "check_lease",
    "check_s1",
    "check_s2",
    "check_s3",
    "double_assigned_jobs",
    "faults_stopped",
    "l1_bound",
    "processing_intervals",
]

MAX_EXAMPLES: Final = 5
_NEVER: Final = sys.maxsize  # position of "no further crash"
#: A crash is recorded as ``info`` (the process vanished mid-operation); ``ok`` is accepted too.
_CRASH_PHASES: Final = frozenset({"info", "ok"})
#: World ``requeue`` reasons that are reassignments by timeout: the gateway taking a job away
#: from its owner because the owner went silent ("no ping for T") or made no progress ("no
#: progress ..."). A release, a failJob or a rejectJob is the owner's own act, not a timeout.
TIMEOUT_REQUEUES: Final = ("no ping", "no progress")
#: World ``requeue`` reasons of an owner giving a job back *as failed* (``failJob``, a database
#: release that counts the attempt): the chain's own choice, which costs an attempt towards the
#: gateway's fifth-attempt rule, unless its work had just failed on its own (a fault,
#: ``work_fail_rate``); otherwise a job given up after one is the chain's loss, not the
#: faults' (L1).
FAILED_GIVE_BACKS: Final = frozenset({"failJob", "released as failed"})


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict of one property on one history.

    ``violations`` counts what the property counts (S1: bad starts; S2: overlapping pairs;
    S3: bad commits; lease: timeout reassignments of an owner still processing; L1: jobs
    lost, stuck or late); ``jobs`` are the violating job ids, sorted;
    ``examples`` are up to five explanations a reader can check against the history.
    """

    name: str
    violations: int
    jobs: tuple[str, ...]
    examples: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.violations == 0


class Interval(NamedTuple):
    """One processing interval of ``process`` on ``job``: ``[start, end]``.

    ``end`` is ``math.inf`` for an interval never provably closed. ``how`` says what closed it:
    the ``stop`` value (``"done"``, ``"cancelled"``), ``"crash"``, or ``"open"``.
    """

    process: str
    job: str
    start: float
    end: float
    how: str


class _Partition:
    """One pass over a history: each job's records with their positions, crashes per process."""

    __slots__ = ("_again", "_intervals", "_opened", "by_job", "crashes", "jobless_screens")

    def __init__(self, history: History) -> None:
        by_job: dict[str, list[tuple[int, Record]]] = {}
        crashes: dict[str, tuple[list[int], list[float]]] = {}
        #: Batch screens recorded without a job (a live encoder's batch names many): their
        #: invokes' values, for the metrics' request counts.
        self.jobless_screens: list[Any] = []
        for pos, record in enumerate(history.records):
            job = record[2]
            if job is not None:
                by_job.setdefault(job, []).append((pos, record))
            elif record[3] == "crash" and record[4] in _CRASH_PHASES and record[1] != WORLD:
                positions, times = crashes.setdefault(record[1], ([], []))
                positions.append(pos)
                times.append(record[0])
            elif record[3] == "screen" and record[4] == "invoke":
                self.jobless_screens.append(record[5])
        self.by_job = by_job
        self.crashes = crashes
        self._intervals: dict[str, list[Interval]] | None = None
        #: Per job, the history position of the ``start`` that opened each interval, in the
        #: order of ``intervals()[job]``: at one instant, times cannot say which of two starts
        #: (or a start and a requeue) came first, and start records are never back-dated, so
        #: their positions can (an adversarial review of the checkers: S1's and the lease's ties).
        self._opened: dict[str, list[int]] = {}
        #: Per job, the starts recorded while the same process still held it: (process, its
        #: interval's start, the second start). One node running one job twice at once (two
        #: slots of an encoder loop), which S2 counts (an interval per process cannot show it).
        self._again: dict[str, list[tuple[str, float, float]]] = {}

    def next_crash(self, process: str, after: int) -> tuple[int, float]:
        """The first crash of ``process`` recorded after position ``after`` (bisect)."""
        index = self.crashes.get(process)
        if index is None:
            return _NEVER, math.inf
        positions, times = index
        k = bisect_right(positions, after)
        if k == len(positions):
            return _NEVER, math.inf
        return positions[k], times[k]

    def intervals(self) -> dict[str, list[Interval]]:
        """Every job's processing intervals, sorted by (start, end, process); computed once."""
        if self._intervals is None:
            self._intervals = {}
            for job, recs in self.by_job.items():
                self._intervals[job], self._opened[job] = self._job_intervals(job, recs)
        return self._intervals

    def started_again(self, job: str) -> list[tuple[str, float, float]]:
        """The starts of ``job`` recorded while their process still held it (see ``_again``)."""
        self.intervals()
        return self._again.get(job, [])

    def opened(self, job: str) -> list[int]:
        """The positions of the starts that opened ``intervals()[job]``, in the same order."""
        self.intervals()
        return self._opened.get(job, [])

    def _job_intervals(self, job: str, recs: list[tuple[int, Record]]
                       ) -> tuple[list[Interval], list[int]]:
        out: list[tuple[Interval, int]] = []
        # process -> (start time, position of its next crash, time of that crash, start's pos)
        holding: dict[str, tuple[float, int, float, int]] = {}
        # process -> starts not yet stopped, when more than one (a second start while holding)
        extra: dict[str, int] = {}
        for pos, (t, process, _, op, phase, value) in recs:
            if phase != "ok" or op not in ("start", "stop"):
                continue
            held = holding.get(process)
            if held is not None and held[1] < pos:
                # The process crashed since it started: that crash ended the interval.
                out.append((Interval(process, job, held[0], held[2], "crash"), held[3]))
                del holding[process]
                extra.pop(process, None)
                held = None
            if op == "start":
                if held is None:
                    crash_pos, crash_time = self.next_crash(process, pos)
                    holding[process] = (t, crash_pos, crash_time, pos)
                else:
                    # A second start while still holding (two slots of one node): the start
                    # is kept for S2, and the interval continues until every start has been
                    # stopped (a stop does not say which one it ends), or the process crashes.
                    # Closed at the first stop, a third encoder's start beside the slot still
                    # running went unseen by S1 and the lease (a review, session 31).
                    self._again.setdefault(job, []).append((process, held[0], t))
                    extra[process] = extra.get(process, 0) + 1
            elif held is not None:
                if extra.get(process):
                    extra[process] -= 1
                    continue
                out.append((Interval(process, job, held[0], t, str(value or "stop")), held[3]))
                del holding[process]
        for process, (start, crash_pos, crash_time, opened) in holding.items():
            if crash_pos != _NEVER:
                out.append((Interval(process, job, start, crash_time, "crash"), opened))
            else:
                out.append((Interval(process, job, start, math.inf, "open"), opened))
        out.sort(key=lambda pair: (pair[0].start, pair[0].end, pair[0].process, pair[1]))
        return [iv for iv, _ in out], [opened for _, opened in out]


def processing_intervals(history: History) -> dict[str, list[Interval]]:
    """Every job's processing intervals (see the module docstring for what opens and closes one)."""
    return _Partition(history).intervals()


def _fmt(t: float) -> str:
    return "never" if math.isinf(t) else f"{t:.3f}"


def _result(name: str, violations: int, jobs: Iterable[str], examples: list[str]) -> CheckResult:
    return CheckResult(name, violations, tuple(sorted(set(jobs))), tuple(examples[:MAX_EXAMPLES]))


# ---------------------------------------------------------------------------------------- S1


def _s1(part: _Partition) -> CheckResult:
    """A start is bad if another process holds an open interval on the job at that instant.

    Sweep over the job's intervals in start order with a heap of open intervals keyed by end:
    an interval ``[s, e]`` of ``q`` is open at ``t`` iff ``s <= t < e``, so a hand-off at the
    very instant of the earlier holder's stop or crash is fine. Starts at the same instant by
    two processes that both run on are both bad (neither had proof the other had stopped); a
    zero-length one among them is bad only if the other's start was recorded before it.
    """
    violations = 0
    bad_jobs: list[str] = []
    examples: list[str] = []
    for job, ivs in part.intervals().items():
        opened = part.opened(job)
        heap: list[tuple[float, int, str]] = []
        held: dict[str, int] = {}  # process -> how many of its intervals are in the heap
        i, n = 0, len(ivs)
        while i < n:
            t = ivs[i].start
            j = i
            while j < n and ivs[j].start == t:
                j += 1
            while heap and heap[0][0] <= t:
                held[heapq.heappop(heap)[2]] -= 1
            # Other processes holding the job since before t, for each start of this instant.
            earlier = [len(heap) - held.get(ivs[k].process, 0) for k in range(i, j)]
            running = [k for k in range(i, j) if ivs[k].end > t]
            mine: dict[str, int] = {}  # process -> its starts at t that run on past t
            for k in running:
                heapq.heappush(heap, (ivs[k].end, k, ivs[k].process))
                held[ivs[k].process] = held.get(ivs[k].process, 0) + 1
                mine[ivs[k].process] = mine.get(ivs[k].process, 0) + 1
            for k in range(i, j):
                iv = ivs[k]
                if earlier[k - i] == 0:
                    if iv.end > t:
                        # Two starts at t that both run on: both bad, whatever their order.
                        if len(running) - mine.get(iv.process, 0) == 0:
                            continue
                    # A zero-length interval ``[t, t]`` holds nothing after t (S2 finds no
                    # overlap with one starting at t either). Its start is bad only if another
                    # process's start at t, still running, was recorded before it: an encoder
                    # that started and stopped at t and then handed off at t did nothing
                    # wrong (a review of the checkers found it blamed; start records are never
                    # back-dated, so their positions order them).
                    elif not any(ivs[r].process != iv.process and opened[r] < opened[k]
                                 for r in running):
                        continue
                violations += 1
                bad_jobs.append(job)
                if len(examples) < MAX_EXAMPLES:
                    other = ivs[next(e[1] for e in heap if e[2] != iv.process)]
                    examples.append(
                        f"job {job}: {iv.process} started at {_fmt(t)} while {other.process} "
                        f"held it (started {_fmt(other.start)}, stopped {_fmt(other.end)})"
                    )
            i = j
    return _result("S1", violations, bad_jobs, examples)


def check_s1(history: History) -> CheckResult:
    """S1 single start: no start while another encoder has not provably stopped the job."""
    return _s1(_Partition(history))


# ---------------------------------------------------------------------------------------- S2


def _s2(part: _Partition) -> CheckResult:
    """Count pairs of intervals of different processes with ``a.start < b.end and b.start < a.end``.

    Sweep in (start, end) order with a heap of intervals still open at the current start; the
    pairs a new interval forms are the heap's entries of other processes, counted in O(1) from
    a per-process tally, so a pathological job costs ``n log n``, not the number of pairs.
    Sorting equal starts by end keeps a zero-length interval from "overlapping" one that starts
    at the same instant (the strict inequality).

    A start recorded while the same process still holds the job counts once too: one node
    processing one job twice at once (two slots of its loop) is a double processing that
    per-process intervals cannot show, and the loop's schedule is what prevents it.
    """
    violations = 0
    bad_jobs: list[str] = []
    examples: list[str] = []
    for job, ivs in part.intervals().items():
        heap: list[tuple[float, int, str]] = []
        held: dict[str, int] = {}
        for k, b in enumerate(ivs):
            while heap and heap[0][0] <= b.start:
                held[heapq.heappop(heap)[2]] -= 1
            pairs = len(heap) - held.get(b.process, 0)
            if pairs:
                violations += pairs
                bad_jobs.append(job)
                for entry in heap:
                    if len(examples) >= MAX_EXAMPLES:
                        break
                    a = ivs[entry[1]]
                    if a.process != b.process:
                        examples.append(
                            f"job {job}: {a.process} processed [{_fmt(a.start)}, {_fmt(a.end)}]"
                            f" ({a.how}) and {b.process} processed [{_fmt(b.start)}, "
                            f"{_fmt(b.end)}] ({b.how})"
                        )
            heapq.heappush(heap, (b.end, k, b.process))
            held[b.process] = held.get(b.process, 0) + 1
        for process, since, again in part.started_again(job):
            violations += 1
            bad_jobs.append(job)
            if len(examples) < MAX_EXAMPLES:
                examples.append(f"job {job}: {process} started it again at {_fmt(again)} while "
                                f"still processing it since {_fmt(since)}")
    return _result("S2", violations, bad_jobs, examples)


def check_s2(history: History) -> CheckResult:
    """S2 no overlap: intervals of different encoders on one job never overlap, and no
    encoder starts a job it is still processing (two of its slots at once)."""
    return _s2(_Partition(history))


# ---------------------------------------------------------------------------------------- S3


def _pair(value: Any) -> tuple[Any, Any]:
    """``(who, epoch)`` from a world value; a malformed one cannot match anything real."""
    if isinstance(value, tuple | list) and len(value) >= 2:
        return value[0], value[1]
    return value, None


def _s3(part: _Partition) -> CheckResult:
    """Each world commit must be the job's first, by the latest assignee, with its epoch.

    "Latest" is by position: the world records an assignment and a commit in the order it
    applied them, which is what a fence condition was evaluated against. A commit with no
    assignment before it is bad too (nobody could have been fenced in).
    """
    violations = 0
    bad_jobs: list[str] = []
    examples: list[str] = []
    for job, recs in part.by_job.items():
        latest: tuple[Any, Any] | None = None
        first_commit: tuple[float, Any] | None = None
        for _, (t, process, _, op, phase, value) in recs:
            if process != WORLD or phase != "ok":
                continue
            if op == "assign":
                latest = _pair(value)
            elif op == "commit":
                committer, epoch = _pair(value)
                reasons: list[str] = []
                if first_commit is not None:
                    reasons.append(f"a second commit (first by {first_commit[1]} at "
                                   f"{_fmt(first_commit[0])})")
                else:
                    first_commit = (t, committer)
                if latest is None:
                    reasons.append("no assignment before it")
                elif committer != latest[0]:
                    reasons.append(f"stale assignment: the latest assignee is {latest[0]}")
                elif epoch != latest[1]:
                    reasons.append(f"stale assignment: epoch {epoch} but the latest is "
                                   f"{latest[1]}")
                if reasons:
                    violations += 1
                    bad_jobs.append(job)
                    examples.append(f"job {job}: commit by {committer} (epoch {epoch}) at "
                                    f"{_fmt(t)}: " + "; ".join(reasons))
    return _result("S3", violations, bad_jobs, examples)


def check_s3(history: History) -> CheckResult:
    """S3 single effect: at most one committed result, from the latest assignment."""
    return _s3(_Partition(history))


# ------------------------------------------------------------------------------------- lease


#: At the exact edges of the model the lease's stop and the gateway's reassignment coincide
#: (stopped by ``lease_base + T - ε``, reassigned no earlier); the drifting clock's conversions
#: (``now·(1+drift)`` and back) can put the stop a few ulps after. A microsecond is far below
#: every bound of the model, so nothing real hides in it.
_ROUNDING: Final = 1e-6


def _lease(part: _Partition) -> CheckResult:
    """At each world ``requeue`` whose reason is a timeout (:data:`TIMEOUT_REQUEUES`), the
    job's owner of record must not be processing it.

    The owner of record is the encoder of the latest world ``assign`` since the job's previous
    ``requeue`` (by position: the order in which the world applied them); a requeue leaves the
    job unowned. It is processing at the requeue's time ``t`` when one of its intervals has
    ``start <= t < end`` (a start at ``t`` only if recorded before the requeue): an interval
    closed at ``t`` (stopped, cancelled or crashed at that very
    instant) has ended in time, as the lease's proof allows (stopped by
    ``lease_base + T - ε``, reassigned no earlier). Only the owner counts: an encoder whose
    assignment was overwritten by another accept is not timed out by the gateway (an overlap
    it causes is S2's to judge).
    """
    violations = 0
    bad_jobs: list[str] = []
    examples: list[str] = []
    intervals = part.intervals()
    for job, recs in part.by_job.items():
        owner: tuple[Any, Any] | None = None
        opened = part.opened(job)
        for pos, (t, process, _, op, phase, value) in recs:
            if process != WORLD or phase != "ok":
                continue
            if op == "assign":
                owner = _pair(value)
                continue
            if op != "requeue":
                continue
            reason, held, owner = str(value), owner, None
            if held is None or not reason.startswith(TIMEOUT_REQUEUES):
                continue
            for k, iv in enumerate(intervals.get(job, ())):
                # ``[start, end)`` contains ``t``. A start at ``t`` itself counts when it was
                # recorded before the requeue: the owner began work at the instant it was
                # timed out (``start < t`` missed it: a review of the checkers). One recorded
                # after began after the reassignment: not the lease's, as a later start.
                began = iv.start < t or (iv.start == t and opened[k] < pos)
                if iv.process == held[0] and began and t < iv.end - _ROUNDING:
                    violations += 1
                    bad_jobs.append(job)
                    if len(examples) < MAX_EXAMPLES:
                        examples.append(
                            f"job {job}: {iv.process}, its owner (epoch {held[1]}), was still "
                            f"processing it [{_fmt(iv.start)}, {_fmt(iv.end)}] ({iv.how}) when "
                            f"the gateway reassigned it at {_fmt(t)} ({reason})")
                    break
    return _result("lease", violations, bad_jobs, examples)


def check_lease(history: History) -> CheckResult:
    """The lease (a lemma of S2): an owner's work is stopped before the gateway reassigns the
    job away from it by timeout."""
    return _lease(_Partition(history))


def _give_back(part: _Partition) -> CheckResult:
    """An attempt that ends saying the job is not held (``outcome`` with ``held`` false) is
    never timed out of that job by the gateway afterwards as the owner the attempt's claim
    made it.

    At each world ``requeue`` whose reason is a timeout, the owner of record (as in
    :func:`_lease`) and the claim that made it so: the owner's latest ``claim`` invoke on the
    job before the ``assign`` landed. If the attempt of that claim ended before the requeue
    reporting nothing held, the report was false: the encoder stopped (or went down) saying
    the job was given back while the gateway kept it assigned to it until T. Not a safety
    property (the job comes back T later), but what an encoder that stops tells its operator,
    and what L1's shutdown term assumes (``docs/safety-model.md``, L1)."""
    violations = 0
    bad_jobs: list[str] = []
    examples: list[str] = []
    for job, recs in part.by_job.items():
        claim: dict[str, int] = {}  # process -> position of its latest claim invoke
        ended: dict[tuple[str, int], tuple[float, str, bool]] = {}  # (process, claim) -> end
        owner: tuple[Any, Any, int | None] | None = None
        for pos, (t, process, _, op, phase, value) in recs:
            if process != WORLD:
                if op == "claim" and phase == "invoke":
                    claim[process] = pos
                elif op == "outcome" and process in claim:
                    # The run of the latest claim, unless the process crashed since that claim
                    # (a crashed run reports nothing; this is a later run's, which claimed
                    # nothing). A claim's assignment may land after its run ended: the claim
                    # stays known for the ``assign``.
                    key = (process, claim[process])
                    if key not in ended and part.next_crash(process, key[1])[0] > pos:
                        ended[key] = (t, str(value[0]), bool(value[1]))
                continue
            if phase != "ok":
                continue
            if op == "assign":
                name, epoch = _pair(value)
                owner = (name, epoch, claim.get(name))
                continue
            if op != "requeue":
                continue
            reason, held, owner = str(value), owner, None
            if held is None or held[2] is None or not reason.startswith(TIMEOUT_REQUEUES):
                continue
            end = ended.get((held[0], held[2]))
            if end is not None and not end[2] and end[0] <= t:
                violations += 1
                bad_jobs.append(job)
                if len(examples) < MAX_EXAMPLES:
                    examples.append(
                        f"job {job}: {held[0]} ended its attempt at {_fmt(end[0])} ({end[1]}) "
                        f"saying nothing was held, but its claim made it the owner (epoch "
                        f"{held[1]}) until the gateway reassigned it at {_fmt(t)} ({reason})")
    return _result("give-back", violations, bad_jobs, examples)


def check_give_back(history: History) -> CheckResult:
    """An encoder that reports a job not held is not then timed out of it (:func:`_give_back`)."""
    return _give_back(_Partition(history))


# ------------------------------------------------------------- lemmas of the cost features

#: Statuses of a job back in the queue (an answer naming no owner and one of these is
#: "claimable"); the checker's own copy of the gateway's vocabulary, not the verifier's.
_QUEUED: Final = frozenset({"created", "pending", "queued", "unassigned"})


#: An encoder's own writes: after one, what the tiers said before is stale.
_OWN_WRITES: Final = frozenset({"claim", "commit", "release"})


def _process_ends(op: str, phase: str, job: str | None) -> bool:
    """Whether a record ends an encoder's process: a crash, or a graceful shutdown before a
    restart. Its successor starts with nothing (an empty cache, no answers read)."""
    return job is None and ((op == "crash" and phase in _CRASH_PHASES)
                            or (op == "shutdown" and phase == "info"))


def check_finished_work(history: History) -> CheckResult:
    """A lemma of S3's meaning (session 46): an encoder sends a finish (``commit`` invoke) only
    for work that ran to its end on this process: its latest start of the job was followed by
    the work's natural end (``stop``/``ok``/``done``), not by a failure (``failed``), a
    cancellation or a crash. S3 judges *which* commit counts; this judges whether there was
    a result to commit at all: a chain that took a failed work for a finished one publishes
    output that no encode produced, and no other property sees it."""
    violations, bad, examples = 0, [], []
    done: dict[tuple[str, str | None], bool] = {}
    for t, process, job, op, phase, value in history.records:
        if process == WORLD:
            continue
        if _process_ends(op, phase, job):
            for key in [k for k in done if k[0] == process]:
                del done[key]
        elif op == "start" and phase == "ok":
            done[(process, job)] = False
        elif op == "stop" and phase == "ok":
            done[(process, job)] = value == "done"
        elif op == "commit" and phase == "invoke" and not done.get((process, job), False):
            violations += 1
            bad.append(job)
            if len(examples) < MAX_EXAMPLES:
                examples.append(f"job {job}: {process} sent a finish at {_fmt(t)} with no work "
                                "of its own run to its end since its latest start")
    return _result("finished-work", violations, bad, examples)


def check_fresh_reads(history: History) -> CheckResult:
    """A lemma of S1/S2 with a status cache: every answer an encoder took from its cache
    (``cached`` records: tier, owner, status, when the answer's read was decided, the read's
    purpose) served a *pre-claim* check, and was read after the encoder's own last write to
    the job (a claim, a commit or a release changes what the tiers say). The settle argument
    and the lease's proofs rest on deciding reads (``verify``, ``recheck``) that show the tier
    as it is when they are decided; a cached answer shows it as it was."""
    violations, bad, examples = 0, [], []
    wrote: dict[tuple[str, str | None], float] = {}
    began: dict[str, float] = {}  # process -> when its current process began (crash, restart)
    for t, process, job, op, phase, value in history.records:
        if op in _OWN_WRITES and phase == "invoke":
            wrote[(process, job)] = t
        elif _process_ends(op, phase, job):
            began[process] = t  # a new process: what the old one read is not its cache
        if op != "cached" or phase != "ok":
            continue
        decided, purpose = value[-2], value[-1]
        stale = decided < max(wrote.get((process, job), -math.inf),
                              began.get(process, -math.inf))
        if purpose != "pre-claim" or stale:
            violations += 1
            bad.append(job)
            if len(examples) < MAX_EXAMPLES:
                why = (f"for a {purpose} read" if purpose != "pre-claim" else
                       "read before its own last write to the job, or before its process "
                       "began")
                examples.append(f"job {job}: {process} took a cached answer ({value[1]}, "
                                f"{value[2]}) {why} at {_fmt(t)}")
    return _result("fresh-reads", violations, bad, examples)


def check_claim_evidence(history: History) -> CheckResult:
    """Claims on evidence (the pre-claim check's contract, which a batch or a cache must not
    weaken): when an encoder claims a job, the freshest *tier answer* it had about the job (a
    read's answer, or an entry of a batch answer) said the job was claimable (no owner, a
    queued status) or held by this encoder. A batch that dropped the id, a cache entry the
    tiers never gave, or no answer at all is no evidence.

    Safety never rests on this (the settle and the verification decide ownership); it is what
    the pre-claim check promises, judged from what the tiers actually answered."""
    violations, bad, examples = 0, [], []
    # process -> job -> the freshest answer; a crash or a restart forgets them all (a new
    # process knows nothing its predecessor read).
    known: dict[str, dict[str, tuple[str | None, str | None]]] = {}
    for t, process, job, op, phase, value in history.records:
        if process == WORLD:
            continue
        if job is None:
            if _process_ends(op, phase, job):
                known.pop(process, None)
            elif op == "screen" and phase == "ok" and isinstance(value, tuple | list):
                # A batch naming several jobs is recorded without a job: its entries are
                # answers about each (skipping it missed a batch saying "taken" after an
                # older "queued" read, and found no evidence after one saying "queued": a
                # review of the checkers). A value that is not (job, status) pairs says nothing.
                seen = known.setdefault(process, {})
                for entry in value:
                    if isinstance(entry, tuple | list) and len(entry) == 2:
                        seen[entry[0]] = (None, entry[1])
            continue
        seen = known.setdefault(process, {})
        if op == "verify" and phase == "ok":
            seen[job] = (value[1], value[2])
        elif op == "screen" and phase == "ok":
            statuses = dict(value)
            if job in statuses:
                seen[job] = (None, statuses[job])
        elif op == "claim" and phase == "invoke":
            answer = seen.get(job)
            ok = answer is not None and (
                answer[0] == process or (answer[0] is None and answer[1] in _QUEUED))
            if not ok:
                violations += 1
                bad.append(job)
                if len(examples) < MAX_EXAMPLES:
                    said = "no tier answer" if answer is None else (
                        f"the freshest answer said owner={answer[0]} status={answer[1]}")
                    examples.append(f"job {job}: {process} claimed it at {_fmt(t)}; {said}")
    return _result("claim-evidence", violations, bad, examples)


# ---------------------------------------------------------------------------------------- L1


def _work_spans(part: _Partition) -> tuple[list[float], list[float], list[float]]:
    """The union of every interval closed by the work's natural end (``done``), any job and
    any encoder, as sorted disjoint ``[start, end]`` spans, with prefix sums of their lengths."""
    done = sorted((iv.start, iv.end) for ivs in part.intervals().values() for iv in ivs
                  if iv.how == "done")
    starts: list[float] = []
    ends: list[float] = []
    for a, b in done:
        if ends and a <= ends[-1]:
            ends[-1] = max(ends[-1], b)
        else:
            starts.append(a)
            ends.append(b)
    prefix = [0.0]
    for a, b in zip(starts, ends, strict=True):
        prefix.append(prefix[-1] + (b - a))
    return starts, ends, prefix


def _covered(spans: tuple[list[float], list[float], list[float]], lo: float, hi: float
             ) -> float:
    """How much of ``[lo, hi]`` the spans cover."""
    starts, ends, prefix = spans
    if hi <= lo or not starts:
        return 0.0
    i = bisect_right(ends, lo)  # the first span ending after lo
    j = bisect_right(starts, hi)  # the spans starting at or before hi
    if i >= j:
        return 0.0
    total = prefix[j] - prefix[i]
    total -= max(0.0, lo - starts[i])
    total -= max(0.0, ends[j - 1] - hi)
    return max(total, 0.0)


def _l1(part: _Partition, jobs: Iterable[str], horizon: float | None,
        bound: float | None, residual: float = 0.0, uncrowded: bool = False) -> CheckResult:
    violations = 0
    bad_jobs: list[str] = []
    examples: list[str] = []
    spans = _work_spans(part) if bound is not None else ([], [], [0.0])
    for job in dict.fromkeys(jobs):
        recs = part.by_job.get(job, [])
        commit_at = next((r[0] for _, r in recs
                          if r[1] == WORLD and r[3] == "commit" and r[4] == "ok"), None)
        if commit_at is None and horizon is not None and any(
                r[1] == WORLD and r[3] == "failed" and r[0] <= horizon + residual
                for _, r in recs) and not _lost_by_the_chain(part, recs):
            # Given up by the gateway's fifth-attempt rule because of the faults (crashes,
            # outages, stalls each cost an attempt; the last one may time out up to
            # ``residual`` after they stop): the gateway's loss, which no encoder can prevent.
            # A job given up later is the chain's (L1 counts it), and so is one the chain
            # itself gave back as failed: a chain that failJobs what it should process would
            # otherwise be excused (a review of the checkers, session 27).
            continue
        if commit_at is None:
            why = "never committed (lost or stuck)" if recs else "never seen in the history"
            violations += 1
            bad_jobs.append(job)
            examples.append(f"job {job}: {why}")
            continue
        if bound is None:
            continue
        t0 = recs[0][1][0]
        since = t0 if horizon is None else max(t0, horizon)
        # A job there when the last fault struck (t0 == horizon: a fault at the instant it
        # arrived, at 0 say) may be left something by it too (a review of the L1 oracle).
        if uncrowded and horizon is not None:
            # Nothing but the faults' leftovers can hold a job up (:class:`L1Bound`), and
            # they are gone ``residual`` after the faults stopped, whenever the job came.
            start, allowance = max(since, horizon + residual), bound
        else:
            start = since
            allowance = bound + (residual if horizon is not None and t0 <= horizon else 0.0)
        work = _covered(spans, since, commit_at)
        deadline = start + allowance + work
        if commit_at > deadline:
            violations += 1
            bad_jobs.append(job)
            examples.append(f"job {job}: first seen {_fmt(t0)}, committed {_fmt(commit_at)}, "
                            f"after the deadline {_fmt(deadline)} ({allowance:.3f} s of protocol "
                            f"time allowed from {_fmt(start)}, plus {work:.3f} s of work)")
    return _result("L1", violations, bad_jobs, examples)


def _lost_by_the_chain(part: _Partition, recs: list[tuple[int, Record]]) -> bool:
    """Whether an attempt the gateway counted against the job was lost by the chain's own
    choice: a give-back as failed (:data:`FAILED_GIVE_BACKS`) by an owner whose latest work on
    the job had not failed on its own, or one of whose runs since its claim did not fail
    (a work that fails is a fault: ``work_fail_rate``, and giving the job back as failed is
    what it calls for; one that finished is a result to commit, one cancelled and started
    again an exposure of the chain's choosing), or an assignment its owner
    walked away from: the run whose claim made the assignment ended (its ``outcome``, the
    owner's first after that claim, with no crash of the owner between the claim and it)
    without a give-back or a finish sent after the assignment, and the gateway then took the
    job back by timeout. Every run of the shipped chain that may leave the job held gives it
    back first, and none ends before its claim's write must have landed. A run cut short by a
    crash ends with no outcome, so the runs of the owner's next process, which never held the
    assignment, are not judged for it (a review of the L1 oracle, session 27: a chain that
    ended its run without working or giving back after a stand-in lost jobs and passed).

    Judged from the claim (session 32), not from the assignment: from the assignment, a
    restarted process's refused claim beside its crashed predecessor's late accept was taken
    for walking away, and a run that walked away *before* its own late accept landed was not
    judged at all (an adversarial review: a chain that ended every run right after its claim
    lost jobs and passed). An owner without a claim of the job on record (the gateway's own
    hand-out) is judged from the assignment."""
    owner: Any = None  # the owner of record since the last assign, and what its run did
    crash_at, decided, ended, sent = _NEVER, False, False, False
    #: Each encoder's latest claim of the job, and its first outcome after that claim.
    claimed: dict[str, int] = {}
    ended_at: dict[str, int] = {}
    #: The encoders whose latest work on the job failed on its own (``work_fail_rate``,
    #: session 46), every run of theirs since their latest claim having failed: their
    #: give-back as failed is the fault's doing. A work that finished is a result the chain
    #: had: a give-back as failed after it (a second run that failed, say) threw that result
    #: away, the chain's own loss; a work the chain cancelled and started again exposed the
    #: job to one more failure by its own choice; and a run started after the failure answers
    #: it, its own end decides (an adversarial review, session 46: a chain that ran the work
    #: twice and gave the job back as failed when the second run failed lost jobs and passed).
    work_failed: set[str] = set()
    spent: set[str] = set()
    for pos, (_, process, _, op, phase, value) in recs:
        if process == WORLD:
            if op == "assign":
                owner, sent = value[0], False
                since = claimed.get(owner, pos)
                crash_at = part.next_crash(owner, since)[0]
                # The run whose claim this is may have ended already (before its write
                # landed); otherwise its first outcome from here on decides. (Positions of
                # distinct records, never equal: ``>`` and ``>=`` agree, ``<`` and ``<=``.)
                decided = owner in ended_at and ended_at[owner] > since
                ended = decided and ended_at[owner] < crash_at
            elif op == "requeue":
                if (value in FAILED_GIVE_BACKS and owner not in work_failed) or (
                        ended and not sent and str(value).startswith(TIMEOUT_REQUEUES)):
                    return True
                owner = None
            continue
        if op == "claim" and phase == "invoke":
            claimed[process] = pos
            ended_at.pop(process, None)
            work_failed.discard(process)
            spent.discard(process)
        elif op == "start" and phase == "ok":
            work_failed.discard(process)
        elif op == "stop" and phase == "ok":
            if value != "failed":
                spent.add(process)  # finished, or cancelled by the chain
            elif process not in spent:
                work_failed.add(process)
        elif op == "outcome":
            ended_at.setdefault(process, pos)
            if process == owner and not decided:
                decided, ended = True, pos < crash_at
        elif process == owner and op in ("release", "commit") and phase == "invoke":
            sent = True
    return False


def check_l1(history: History, *, jobs: Iterable[str], horizon: float | None = None,
             bound: float | None = None, residual: float = 0.0, uncrowded: bool = False
             ) -> CheckResult:
    """L1 completion: every job in ``jobs`` is committed, and with ``bound`` on time.

    A chain that never lets anything run is safe and useless; L1 keeps it honest. With
    ``bound``, a job first recorded at ``t0`` (in a simulated run, its arrival: the world's
    ``arrive`` record, so the time before any encoder touches it counts) must be committed by
    ``since + bound + work``, where ``since = max(t0, horizon)`` (``horizon`` being when
    faults stopped; without it, ``t0``) and ``work`` is the time within ``[since, commit]``
    during which some encoder's work was running to its natural end (``done`` intervals, any
    job): work lasts as long as the user's job does, so only the rest, the protocol's time, is
    bounded. A job first recorded by ``horizon`` is allowed ``residual`` more: the time
    what the faults left behind (a stale assignment, a doomed attempt) takes to clear. A job
    the gateway gave up (``failed``, its fifth attempt) by ``horizon + residual`` is not
    counted, the faults' loss, unless the chain lost one of its attempts by its own choice
    (:func:`_lost_by_the_chain`: a give-back as failed, or an assignment walked away from).
    With ``uncrowded`` (no job waits for another, :class:`L1Bound`), every job's allowance
    starts no earlier than ``horizon + residual``, when the faults' leftovers are gone, and
    no job gets ``residual`` on top. :func:`l1_bound` derives all three from a scenario.
    """
    return _l1(_Partition(history), jobs, horizon, bound, residual, uncrowded)


@dataclass(frozen=True, slots=True)
class L1Bound:
    """The time bound of L1 for the hardened chain in a world inside the timing model, each
    term named (``docs/safety-model.md``, L1). Seconds of *protocol* time: the work itself is
    excused by :func:`check_l1`.

    ``hand_out``: from the job being claimable to the poll that hands it to an attempt that
    will see it free; ``attempt``: from that poll to the start of the work; ``finish``: from
    the work's end to the commit; ``others``: other jobs holding every encoder (0 with one
    job); ``residual``: for a job first seen before the faults stopped, the time what they
    left behind takes to clear.

    ``uncrowded``: no job ever waits for another, so ``others`` is 0. That holds when there
    are at least as many encoders as jobs and ``myJob`` hands them out: an encoder works on
    one job at a time, so while a job waits, fewer encoders hold the others than there are
    encoders, and ``myJob`` offers each poll a different queued job (the one it offered
    leaves the queue for a poll interval), so a free encoder's next poll gets this one or
    takes another off the queue ahead of it. The faults' leftovers are the exception: a
    stale attempt on a job someone else holds occupies a second encoder until
    ``residual`` after the faults stopped, so a job arriving after them may still wait that
    long (:func:`check_l1` starts its clock there). With ``getJob`` every poll is offered the
    oldest queued job, so jobs are handed out one after another whatever the encoders.
    """

    hand_out: float
    attempt: float
    finish: float
    others: float
    residual: float
    uncrowded: bool = False

    @property
    def bound(self) -> float:
        """The allowance of a job first seen once faults have stopped."""
        return self.hand_out + self.attempt + self.finish + self.others

    def check(self, history: History, *, jobs: Iterable[str], horizon: float | None
              ) -> CheckResult:
        """:func:`check_l1` with this bound (and :attr:`uncrowded`), from when faults stopped:
        ``horizon`` (the scenario's ``faults_until``), or the end of a fault window still open
        then (an outage that began before the horizon lasts its full length)."""
        return check_l1(history, jobs=jobs, horizon=faults_stopped(history, horizon),
                        bound=self.bound, residual=self.residual, uncrowded=self.uncrowded)


def faults_stopped(history: History, horizon: float | None) -> float | None:
    """When faults stopped: ``horizon``, or later, the end of the last fault window (world
    ``fault`` ``invoke``/``ok`` records of one kind) that began before it or at it (the race
    suites' horizon may be the instant the last window began)."""
    if horizon is None:
        return None
    end = horizon
    opened: dict[Any, float] = {}
    for t, process, job, op, phase, value in history.records:
        if process != WORLD or job is not None or op != "fault":
            continue
        if phase == "invoke":
            opened[value] = t
        elif phase == "ok" and opened.pop(value, math.inf) <= horizon:
            end = max(end, t)
    if any(start <= horizon for start in opened.values()):
        return math.inf  # a window that never closed: the faults never stopped
    return end


#: The terms of :func:`l1_bound`, by name, for ``without=``: each can be dropped on its own
#: (set to 0; a factor κ to 1) to show it is needed (``benchmarks/l1_terms.py``, and the
#: teeth on the bound in ``conformance/test_teeth.py``).
#: The longest ``Retry-After`` the encoder loop honours, as its documentation states it
#: (``verifier.MAX_RETRY_AFTER_S``): written out, not imported, as the oracle imports nothing
#: of the code it judges (a loop that honoured longer waits would be late against it).
_RETRY_AFTER_CAP_S: Final = 600.0

L1_TERMS = (
    "hand_out.lag", "hand_out.reoffer", "hand_out.idle_poll", "hand_out.cooldown",
    "hand_out.retry_after", "hand_out.reply",
    "attempt.replies", "attempt.settle", "attempt.drift", "finish.replies",
    "residual.pause", "residual.scan.G", "residual.scan.T", "residual.scan.S",
    "residual.lease", "residual.lease.drift", "residual.lease.C",
    "residual.confirm.give_up", "residual.confirm.window", "residual.restart",
    "residual.shutdown", "residual.crash_then_shutdown", "residual.work_failure", "others",
)


def l1_bound(scenario: Scenario, *, without: str | None = None) -> L1Bound:
    """L1's time bound for the hardened chain in ``scenario``, assuming the world is inside the
    timing model once ``faults_until`` has passed. The derivation, term by term, is in
    ``docs/safety-model.md`` (L1); in short, with λ the slowest reply of a tier in use
    (1.5 × its latency), κ = 1 / (1 − ε/T) the most a drifting clock stretches a wait, and
    ``settle = 3G + ε + Δ``:

    * ``hand_out = Δ + poll_interval + max(κ·idle_max, 5) + κ·cooldown + κ·retry_after + λ``
      (``retry_after``: with ``throttle_rate``, the longest ``Retry-After`` the loop honours,
      min(``retry_after_max``, 600 s: ``_RETRY_AFTER_CAP_S``), from a 429 told just before the
      faults stopped; ``idle_max``,
      ``cooldown``: the encoder loop's, ``Scenario.loop_policy``, whose waits run on the
      encoder's clock): polls within Δ of the job becoming claimable may read it still taken
      through the monitor and skip it; the gateway re-offers it ``poll_interval`` later, the
      encoder that skipped it tries it again once its cool-down is over, and an encoder that
      is not in an attempt polls at least every ``max(κ·idle_max, 5) + λ`` (5 s after an
      attempt; after one given up on a tier's trouble, the loop's back-off, which counts
      from the attempt's end, so the pause is part of it);
    * ``attempt = 4λ + κ · settle``: the poll's reply, the pre-claim read, the claim, the
      settle wait, the deciding read;
    * ``finish = 2λ``: a ping and a re-check in flight when the work ends; the commit lands
      when the finish is sent;
    * ``residual = P + max(G + T + S, κ(T − (ε + P + C)) + C,
      give_up + κ(settle + confirm_timeout + retry_interval) + 2λ, restart_delay,
      shutdown, 2 × restart_delay)``:
      a pause in progress; then a stale assignment reassigned by the gateway's scan, a lease
      that runs out and its work cancelled, a confirmation that gives up after a request
      that went unanswered for ``give_up`` (``gateway_timeout``, or with ``hang_rate`` the
      longest of it, ``client_timeout`` and, with aid nodes, ``aid_timeout``), every
      encoder restarting after a crash, or (with graceful shutdowns) a shutdown told after
      such a request, the work cancelled, the job given back and the node restarted:
      ``give_up + C + 3κ·retry_interval + 3λ + 5 + restart_delay + κ(G + ε) + λ``, or
      (with both) a crash and then a shutdown that fell due meanwhile:
      ``2 × restart_delay``;
    * ``others = (jobs − 1) × (residual + hand_out + attempt + finish)``, or 0 when no job
      waits for another (at least as many encoders as jobs, ``myJob``: ``L1Bound.uncrowded``,
      whose check starts every job's clock no earlier than when the faults' leftovers are
      gone).

    Infinite (no bound) when some encoder has no tier that can confirm ownership (a community
    node without the monitor skips every job it is offered, without a record), when the work
    can stall (``stall_rate``: a stalled job is cancelled and reassigned, as often as it
    stalls; ``stuck_rate``: a stuck input hangs every attempt until the faults stop), or when
    ``ε ≥ T``.

    ``without``: one of :data:`L1_TERMS` dropped, a weakened bound for showing that the term
    is needed (a bound too short fails a correct chain).
    """
    if without is not None and without not in L1_TERMS:
        raise ValueError(f"unknown term of L1's bound: {without!r} (one of {', '.join(L1_TERMS)})")

    def term(name: str, value: float) -> float:
        return 0.0 if name == without else value

    def factor(name: str, value: float) -> float:
        return 1.0 if name == without else value

    sc = scenario
    latencies = [sc.gateway_latency, sc.monitor_latency]
    if sc.infra_fraction > 0:
        latencies.append(sc.database_latency)
    if sc.aid_fraction > 0:
        latencies.append(sc.aid_latency)
    lam = 1.5 * max(latencies)
    t = sc.reassign_timeout
    stalls = getattr(sc, "stall_rate", 0.0) > 0 or getattr(sc, "stuck_rate", 0.0) > 0
    if stalls or sc.clock_drift >= max(t, 1.0) or (
            sc.infra_fraction < 1 and sc.monitor_fraction < 1):
        inf = math.inf
        return L1Bound(inf, inf, inf, inf, inf)
    kappa = 1.0 / (1.0 - sc.clock_drift / max(t, 1.0))
    settle = 3 * sc.write_delay + sc.clock_drift + sc.monitor_lag
    margin = sc.clock_drift + sc.pause_max + sc.cancel_latency
    # The encoder loop's waits (``Scenario.loop_policy``, run by ``verifier.PollSchedule``),
    # on the encoder's clock, so up to κ times longer in real time.
    loop = sc.loop_policy()
    hand_out = (term("hand_out.lag", sc.monitor_lag) + term("hand_out.reoffer", sc.poll_interval)
                + term("hand_out.idle_poll", max(kappa * loop.idle_max_s, 5.0))
                + term("hand_out.cooldown", kappa * loop.cooldown_s)
                # A 429 told just before the faults stopped (``throttle_rate``): the loop asks
                # that source nothing, and starts no job, until its Retry-After is over (up to
                # the loop's cap), on its own clock.
                + term("hand_out.retry_after", kappa * min(sc.retry_after_max, _RETRY_AFTER_CAP_S)
                       if sc.throttle_rate > 0 else 0.0)
                + term("hand_out.reply", lam))
    # An aid node whose Aid refuses the gateway's jobs (``aid_pending_only``) waits for that
    # refusal before its gateway claim: one reply more.
    refusal = 1 if sc.aid_fraction > 0 and sc.aid_pending_only > 0 else 0
    attempt = (term("attempt.replies", (4 + refusal) * lam)
               + term("attempt.settle", factor("attempt.drift", kappa) * settle))
    finish = term("finish.replies", 2 * lam)
    # The longest a request sent before the faults stopped can go unanswered: the gateway's
    # timeout (a lost reply), or, when requests hang (``hang_rate``), the monitor's and the
    # database's client timeout and, on aid nodes, aid's.
    give_up = sc.gateway_timeout
    if sc.hang_rate > 0:
        give_up = max(give_up, sc.client_timeout, sc.aid_timeout if sc.aid_fraction > 0 else 0)
    residual = term("residual.pause", sc.pause_max) + max(
        term("residual.scan.G", sc.write_delay) + term("residual.scan.T", t)
        + term("residual.scan.S", sc.reassign_scan_interval),
        term("residual.lease", factor("residual.lease.drift", kappa) * max(t - margin, 0.0)
             + term("residual.lease.C", sc.cancel_latency)),
        term("residual.confirm.give_up", give_up)
        + term("residual.confirm.window",
               kappa * (settle + sc.confirm_timeout + sc.retry_interval) + 2 * lam),
        term("residual.restart", sc.restart_delay if sc.crashes_per_hour > 0 else 0.0),
        # A graceful shutdown due before the faults stopped: told to the protocol when its
        # request in flight is answered (up to ``give_up``), the work cancelled (C), up to
        # three give-backs (each a reply, the waits between them at most 3 retry intervals
        # with backoff), the loop's pause after an attempt (up to 5 s), then the node down
        # for ``restart_delay``: one after the other, not either. A give-back refused while
        # the claim's write may still be landing waits until it must have (G + ε after the
        # claim's answer) and is asked once more (session 21).
        term("residual.shutdown", give_up + sc.cancel_latency
             + kappa * 3 * sc.retry_interval + 3 * lam + 5.0 + sc.restart_delay
             + kappa * (sc.write_delay + sc.clock_drift) + lam
             if sc.shutdowns_per_hour > 0 else 0.0),
        # A crash, then a shutdown that fell due while the node was down for it: handled as
        # soon as the node is back, so it is down twice in a row (a second adversarial
        # review, 2026-12-04). Each next shutdown is drawn at least ``restart_delay`` after
        # the last, and none falls due after the faults stopped: twice at most.
        term("residual.crash_then_shutdown", 2 * sc.restart_delay
             if sc.crashes_per_hour > 0 and sc.shutdowns_per_hour > 0 else 0.0),
        # A work that failed on its own just before the faults stopped (``work_fail_rate``,
        # session 46): told to the protocol when its request in flight is answered (up to
        # ``give_up``), then given back as failed as a shutdown gives back (up to three
        # give-backs and the waits between them, a refused one asked again once the claim's
        # write must have landed). The job is then claimable: ``hand_out`` covers its next
        # claim, the failing encoder's loop backing off included.
        term("residual.work_failure", give_up + kappa * 3 * sc.retry_interval + 4 * lam
             + kappa * (sc.write_delay + sc.clock_drift)
             if sc.work_fail_rate > 0 else 0.0),
    )
    # Other jobs holding every encoder, each for its own protocol time (its work is excused);
    # none can when every job has an encoder of its own (``L1Bound.uncrowded``).
    uncrowded = sc.assignment == "myjob" and sc.encoders >= sc.jobs
    others = 0.0 if uncrowded else term(
        "others", (sc.jobs - 1) * (residual + hand_out + attempt + finish))
    return L1Bound(hand_out, attempt, finish, others, residual, uncrowded)


# ------------------------------------------------------------------- the race denominator


def _double_assigned(part: _Partition, tiers: Collection[str] | None) -> set[str]:
    out: set[str] = set()
    for job, recs in part.by_job.items():
        holders: set[str] = set()
        for _, (_, process, _, op, phase, value) in recs:
            if op == "lie" and process == WORLD:
                out.add(job)  # the world says it double-assigned the job, whatever came next
                break
            if phase != "ok":
                continue
            if process == WORLD:
                if op in ("requeue", "commit"):
                    holders.clear()  # a new round: a later claim is not a race with earlier ones
            elif op == "claim" and (tiers is None or value in tiers):
                holders.add(process)
                if len(holders) > 1:
                    out.add(job)
                    break
    return out


def double_assigned_jobs(history: History, *, tiers: Collection[str] | None = None) -> set[str]:
    """Jobs the world double-assigned: a world ``lie`` record (the gateway handed the job to a
    second encoder, or let a second accept pass its check while another write was in flight),
    or two distinct encoders told they got it (``claim``/``ok``) in the same round.

    A round ends at a world ``requeue`` or ``commit``. This is the denominator of the
    race-prevention rate: the races the world created, whatever the chain then did about them.
    ``tiers`` restricts which claims count (e.g. ``{"gateway"}``); by default all do.
    Only ``ok`` counts: an ``info`` accept was not *answered* OK, so it did not tell the
    encoder to proceed.
    """
    return _double_assigned(_Partition(history), tiers)


def check_all(history: History, *, jobs: Iterable[str], horizon: float | None = None,
              bound: float | None = None, residual: float = 0.0,
              partition: _Partition | None = None) -> dict[str, CheckResult]:
    """S1, S2, S3, L1 and the lease on one partition of the history (one pass, shared
    intervals).

    ``partition`` lets a caller that also computes metrics share the one pass."""
    part = partition if partition is not None else _Partition(history)
    return {
        "S1": _s1(part),
        "S2": _s2(part),
        "S3": _s3(part),
        "L1": _l1(part, jobs, horizon, bound, residual),
        "lease": _lease(part),
    }

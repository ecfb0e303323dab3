"""The claim → verify → process → finish protocol, written once, with no I/O and no clock.

This is the only place where ownership decisions are made. It is a sans-I/O state machine in
the manner of h11: the driver (asyncio in :mod:`verifier._guard`, SimPy in ``sim/``) asks for
the next :class:`Step`, performs its :attr:`Step.action`, and feeds the answer back together
with the current time::

    protocol = OwnershipProtocol(job_id, me=did, policy=Policy.hardened(), tiers=TierSet(...))
    step = protocol.start(now)
    while not isinstance(step.action, Done):
        answer = perform(step.action)            # I/O, timers, the user's work
        step = protocol.handle(answer, now)

Every action gets exactly one answer. Time only ever enters as the ``now`` the driver passes
in, so the simulator can run this code under simulated time and the conformance suites prove
properties of the code that ships.

The logic is written as a generator (``_run``) because the protocol is sequential (claim, then
settle, then verify, then work with periodic checks, then finish): a generator keeps that order
readable, where an explicit state table would scatter it. The generator yields actions and
receives answers; :class:`OwnershipProtocol` wraps it so that drivers never see it.

Why each hardened step exists is documented where the policy switches it (``_policy.py``); the
comments below say which property (S1–S3, L1 of ``docs/safety-model.md``) a branch protects.
"""

from __future__ import annotations

import math
import random
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum, StrEnum
from typing import Final

from ._ids import normalize_did
from ._models import (
    CLAIMABLE_STATUSES,
    DONE_STATUSES,
    NOT_HELD_STATUSES,
    PROCESSABLE_STATUSES,
    GatewayMonitorJob,
    availability_of,
)
from ._policy import TIER_EVENT, TIER_STRENGTH, Policy, Tier, TierSet
from ._progress import STARTED, Progress, ProgressClock
from ._tiers import Observation

__all__ = [
    "MAX_RETRY_AFTER_S",
    "Action",
    "Answer",
    "CancelWork",
    "Claim",
    "Decision",
    "Done",
    "Finish",
    "Heartbeat",
    "Hinted",
    "Observe",
    "Observed",
    "Outcome",
    "OutcomeKind",
    "OwnershipProtocol",
    "PhaseChanged",
    "ProgressClock",
    "Progressed",
    "ProtocolError",
    "Release",
    "ShutdownRequested",
    "Sleep",
    "StartWork",
    "Step",
    "TierFailed",
    "Woke",
    "WorkEnded",
    "WorkStarted",
    "WorkStopped",
    "WriteAnswered",
    "WriteOutcome",
    "pre_claim_tier",
    "screened",
    "unusable_answers",
]


# --------------------------------------------------------------------------- actions (out)


@dataclass(frozen=True, slots=True)
class Observe:
    """Read the job from ``tier``. Answer: :class:`Observed` or :class:`TierFailed`.

    ``deadline`` (driver time), when set, is the lease end of running work: the driver must
    answer by then whatever the tier is doing (:class:`TierFailed` if it has not answered), so
    that a hung tier can never keep work running past the lease (S2).

    ``max_age`` (seconds of driver time): the driver may answer from its status cache with an
    answer of this tier for this job whose read was *decided* at most ``max_age`` ago. The
    age runs from before the request left, so it never looks younger than the read; a lagging
    tier's data can still be older than that by up to the tier's lag (Δ for the monitor):
    ``max_age`` bounds the time since the read, not the age of what it saw. That is why only
    a read that safety does not rest on may take one. 0 means "ask the tier". The protocol
    sets it above 0 only for the pre-claim check; every deciding read (verify, recheck) has
    0.
    """

    tier: Tier
    purpose: str  # "pre-claim" | "verify" | "recheck"
    deadline: float | None = None
    max_age: float = 0.0


@dataclass(frozen=True, slots=True)
class Claim:
    """Take the job through ``via``. Answer: :class:`WriteAnswered` (token on success)."""

    via: Tier
    conditional: bool = True


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Renew the assignment's ``last_pinged`` through ``via``. Answer: :class:`WriteAnswered`.

    ``deadline`` as for :class:`Observe`: past it, the answer is ``UNKNOWN`` (the ping may
    still land, which is harmless: the lease never counts on it). ``pct`` and
    ``download_pct`` are the progress the ping reports: the protocol chooses them (the latest
    :class:`Progressed`), because it must know which value each ping carried to know when the
    gateway last saw the progress change (the no-progress reassignment rule).
    """

    via: Tier
    token: str | None
    deadline: float | None = None
    pct: float = 0.0
    download_pct: float = 0.0


@dataclass(frozen=True, slots=True)
class Finish:
    """Commit the result through ``via``; ``fenced`` = conditional on owner and token.

    ``send_by`` (protocol clock; ``None``: no bound): the request must not start to leave
    after it. A driver that cannot send it by then (a slow connect, a full pool) does not
    send it, and answers ``WriteAnswered(NOT_SENT)``. Set on a gateway finish, whose
    check-then-act write must land before the gateway may reassign the job: the protocol's
    deadline is the decision's, and a decision is not a send (a review of the drivers,
    session 28: a connect of 8 s put a finish decided in time on the next assignment).
    """

    via: Tier
    token: str | None
    fenced: bool = True
    send_by: float | None = None


@dataclass(frozen=True, slots=True)
class Release:
    """Give back a job we may hold (``failed``: the work failed: ``failJob``, or a database
    release that counts an attempt; the gateway's ``rejectJob`` counts one too)."""

    via: Tier
    token: str | None
    reason: str
    failed: bool = False


@dataclass(frozen=True, slots=True)
class StartWork:
    """Start the user's work concurrently. Answer: :class:`WorkStarted`."""


@dataclass(frozen=True, slots=True)
class CancelWork:
    """Cancel the user's work and wait until it has stopped. Answer: :class:`WorkStopped`."""

    reason: str


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait until ``until`` (driver time) or a work event, whichever is first.

    Answer: :class:`Woke`, or a pending :class:`WorkEnded` / :class:`PhaseChanged` /
    :class:`Progressed` / :class:`ShutdownRequested` / :class:`Hinted` (delivered at once if
    one is already queued).

    A driver may hold phase and progress reports until the sleep ends for another reason and
    then deliver the latest of each (the simulator does, to save steps): the protocol reads
    them only when it decides a ping, which it does after waking, never in its sleep.
    """

    until: float


class OutcomeKind(StrEnum):
    PROCESSED = "processed"  # our result was committed
    SKIPPED = "skipped"  # never started: not ours, not claimable, or not confirmed
    CANCELLED = "cancelled"  # started, then stopped because ownership was lost or unconfirmed
    FAILED = "failed"  # an error: the work failed, or the outcome of a step is unknown


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended. ``held``: the job may still be assigned to us (the last give-back got
    no answer, a shutdown could make none, or the finish got no answer): it may stay held
    until the gateway reassigns it, and an encoder that stops should say so rather than
    "nothing held"."""

    kind: OutcomeKind
    code: str
    reason: str
    held: bool = False
    #: The run's last give-back was answered (released, or refused as not ours): whatever an
    #: earlier run left, the job is not held by us now.
    given_back: bool = False
    #: The latest instant (the driver's clock) a tier's 429 ``Retry-After`` asked for, if one
    #: is still to come when the run ends: the encoder loop starts no job before it
    #: (``PollSchedule.ended``), as the next job's first read would ask that tier again.
    #: Decided here, once, so that both drivers carry it the same way.
    retry_until: float | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """The protocol has ended. No answer expected."""

    outcome: Outcome


Action = Observe | Claim | Heartbeat | Finish | Release | StartWork | CancelWork | Sleep | Done


#: The longest ``Retry-After`` honoured, from when it was told: a server (or a proxy) that
#: says "come back in 10^12 s" must not stop the encoder for good (re-exported by the encoder
#: loop's schedule, ``verifier.MAX_RETRY_AFTER_S``).
MAX_RETRY_AFTER_S: Final = 600.0


# --------------------------------------------------------------------------- answers (in)


class WriteOutcome(Enum):
    OK = "ok"
    REFUSED = "refused"  # the tier answered "not yours / not claimable"
    UNKNOWN = "unknown"  # no answer (timeout, outage): the write may or may not have landed
    #: The driver did not send it: its ``send_by`` had passed before it could leave (only an
    #: answer to a :class:`Finish` with ``send_by``; to anything else it is read as UNKNOWN).
    NOT_SENT = "not sent"


@dataclass(frozen=True, slots=True)
class Observed:
    observation: Observation


@dataclass(frozen=True, slots=True)
class TierFailed:
    tier: Tier
    detail: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class WriteAnswered:
    outcome: WriteOutcome
    token: str | None = None
    detail: str = ""
    #: A 429's ``Retry-After`` (seconds): the write's outcome is unknown like any failure, and
    #: the run ends carrying it (:attr:`Outcome.retry_until`).
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class WorkStarted:
    pass


@dataclass(frozen=True, slots=True)
class WorkStopped:
    pass


@dataclass(frozen=True, slots=True)
class Woke:
    pass


@dataclass(frozen=True, slots=True)
class WorkEnded:
    succeeded: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PhaseChanged:
    phase: str  # "download" | "encode" | "upload" (free text is tolerated)


@dataclass(frozen=True, slots=True)
class ShutdownRequested:
    """The encoder is shutting down (an operator's SIGTERM, say): give the job back.

    Delivered as the answer to a :class:`Sleep`, like a work event. The protocol decides what
    it means where it arrives: before work starts, the claim is released (fenced); during
    work, the work is cancelled, and only once it has stopped is the job released (S2: the
    release hands the job to another encoder); while finishing, it is ignored (the result is
    committed or refused in a few requests, and a release could only race the finish).
    """


@dataclass(frozen=True, slots=True)
class Hinted:
    """A push notification said the job changed (to ``status``, held by ``owner``).

    Delivered as the answer to a :class:`Sleep`. A push is a **hint**, never proof: it may be
    late, lost, reordered or come from a lagging view, and nothing fences it to our
    assignment. So the protocol only re-reads earlier than it would have (during work: at
    once; while verifying: as soon as the settle wait allows); what the read says decides.
    Polling at ``R`` goes on regardless, so a dropped push channel costs latency only.
    """

    owner: str | None = None
    status: str | None = None

    def says_ours(self, me: str) -> bool:
        """Whether the push says the job is still ``me``'s and running (a DID in any of its
        spellings, :func:`~verifier._ids.normalize_did`): such a push changes nothing, no
        read (a push is not proof either way, so this only saves a read)."""
        return (normalize_did(self.owner) == normalize_did(me)
                and self.status in PROCESSABLE_STATUSES)

    def merged(self, later: Hinted, me: str) -> Hinted:
        """This push and a ``later`` one, delivered as one hint to ``me``'s protocol (a driver
        hands the protocol one hint per wait, so that a flood of pushes is one read): ``later``
        when the two agree, or both say the job is still ours (:meth:`says_ours`), else an
        emptied hint, which brings a read. Keeping only the latest would drop what an earlier
        push said: "taken" followed by "ours again" in one wait was taken for "ours", and the
        early re-check it called for never came (polling at R still would). Comparing the raw
        values alone would make "ours, assigned" then "ours, running" (or our DID in its two
        spellings) cost a read and its chase (an adversarial review, session 32)."""
        if later == self or (self.says_ours(me) and later.says_ours(me)):
            return later
        return Hinted()


@dataclass(frozen=True, slots=True)
class Progressed:
    """The work reported progress (percent); the next ping carries it."""

    pct: float
    download_pct: float = 0.0


Answer = (
    Observed | TierFailed | WriteAnswered | WorkStarted | WorkStopped | Woke | WorkEnded
    | PhaseChanged | Progressed | ShutdownRequested | Hinted
)


@dataclass(frozen=True, slots=True)
class Decision:
    """One log-worthy decision: an event code (``TIER_2_VERIFICATION``, ...) and its fields."""

    code: str
    level: str  # "info" | "warning" | "error"
    message: str
    fields: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    decisions: tuple[Decision, ...] = field(default=())


class ProtocolError(RuntimeError):
    """The driver broke the protocol's contract (answered the wrong action, or after Done)."""


#: Which answers each action accepts (a table: this check runs on every step of every run).
_ANSWERS_TO: Final[dict[type, frozenset[type]]] = {
    Observe: frozenset({Observed, TierFailed}),
    Claim: frozenset({WriteAnswered}),
    Heartbeat: frozenset({WriteAnswered}),
    Finish: frozenset({WriteAnswered}),
    Release: frozenset({WriteAnswered}),
    StartWork: frozenset({WorkStarted}),
    CancelWork: frozenset({WorkStopped}),
    Sleep: frozenset({Woke, WorkEnded, PhaseChanged, Progressed, ShutdownRequested, Hinted}),
}


# --------------------------------------------------------------------------- screening


def screened(tier: Tier, asked: list[str], answered: dict[str, str]) -> dict[str, Observation]:
    """What a batch status answer (``{id: status}``, e.g. the monitor's ``batch-status``) may
    stand for, per job: cache entries for the pre-claim check, and nothing else.

    * An id missing from the answer is **unknown**: the real server drops every id it could
      not look up, and answers ``{}`` when the gateway is down. No entry: the pre-claim check
      reads the job itself.
    * A batch names no owner. A claimable status (no owner in it: the job is back in the queue)
      or a finished one says enough to decide the pre-claim check; ``assigned`` or ``running``
      does not (the holder may be us), so it gets no entry either.

    Entries never decide ownership: deciding reads never take a cached answer
    (:meth:`OwnershipProtocol._max_age`).
    """
    out: dict[str, Observation] = {}
    for job_id in asked:
        status = answered.get(job_id)
        if status in CLAIMABLE_STATUSES or status in DONE_STATUSES:
            out[job_id] = Observation(tier, GatewayMonitorJob(id=job_id, status=status,
                                                              assigned_to=None))
    return out


def unusable_answers(asked: Iterable[str], answered: Mapping[str, str],
                     entries: Mapping[str, Observation]) -> list[str]:
    """The ids of ``asked`` a batch answered, but as nothing an entry may say (``assigned``,
    ``running``: the holder may be us). A driver forgets what its cache held about them: an
    older "queued" must not outlive an answer that the job is now held. An id missing from
    the answer is unknown and changes nothing (its older entry ages out as it would). Both
    drivers take this from here, so the rule is proved where it is shipped."""
    return [job_id for job_id in asked if job_id in answered and job_id not in entries]


def pre_claim_tier(policy: Policy, tiers: TierSet) -> Tier | None:
    """The tier the pre-claim check reads (``None``: no check): the strongest confirming tier
    but the gateway for the hardened chain, the monitor for the documented one. Batch
    screening fills the cache for this tier only, so a driver screens only when it is the
    monitor."""
    if not policy.pre_claim_check:
        return None
    if policy.verify_retries:
        reads = [t for t in (Tier.DATABASE, Tier.MONITOR) if tiers.has(t)]
        return min(reads, key=TIER_STRENGTH.__getitem__) if reads else None
    return Tier.MONITOR if tiers.has(Tier.MONITOR) else None


# --------------------------------------------------------------------------- judgement


class _Verdict(Enum):
    MINE = "mine"
    OTHER = "other"  # someone else holds it, or it went back to the queue (during work)
    DONE = "done"  # already finished: nothing to process
    UNKNOWN = "unknown"  # absent, null, synthetic, inconsistent: proves nothing


_Run = Generator[Action, Answer, Outcome]
_LAG_FREE: Final = 0.0


class OwnershipProtocol:
    """One encoder's attempt at one job, from pre-claim check to finish.

    ``me`` is this encoder's DID; ``tiers`` says which tiers this node has; ``policy`` says
    how to use them. Create one instance per attempt: a retry is a new attempt with a fresh
    protocol, so an old "ownership confirmed" can never leak into it (defect 7).
    """

    #: The screening rule drivers apply to batch answers (a class attribute, so that a protocol
    #: variant carries its own, as the canary ``conformance.canaries.BatchMissingAsAvailable``
    #: does).
    screen = staticmethod(screened)
    #: The no-progress clock (a class attribute for the same reason: the suites run the old
    #: one-ping rule as a canary).
    progress_clock: type[ProgressClock] = ProgressClock
    #: What pings carry until the work reports progress (:data:`verifier._progress.STARTED`).
    start_progress: Progress = STARTED

    def __init__(self, job_id: str, *, me: str, policy: Policy, tiers: TierSet) -> None:
        if not me:
            raise ValueError("the encoder's DID (me) is required")
        self.job_id = job_id
        self.me = normalize_did(me)
        self.policy = policy
        self.tiers = tiers
        self._confirming: tuple[Tier, ...] | None = None  # see _confirming_tiers
        self.token: str | None = None
        #: The claim's outcome was unknown (its reply lost): until a read names the token the
        #: claim sent, "assigned to us" may be an *older* assignment of ours (see
        #: :meth:`_shows_our_claim`).
        self._claim_unknown = False
        #: When the claim was answered (``None``: no claim sent). Until G + ε after it, our
        #: claim's write may still be landing, so a refused give-back proves nothing.
        self._claim_answered: float | None = None
        #: Whether the last give-back (release) was answered (``None``: none was made); one
        #: that got no answer leaves the job possibly ours.
        self._given_back: bool | None = None
        self.outcome: Outcome | None = None
        self.claim_via: Tier = self._claim_tier()
        #: The pre-claim read showed the job free in the gateway's lifecycle (``queued``), not
        #: Gateway Aid's (``pending``): an aid claim refused then is claimed via the gateway.
        self._gateway_job = False
        self._now = 0.0
        self._driver_now = 0.0  # the last time the driver passed (``_now`` may be clamped up)
        self._decisions: list[Decision] = []
        self._gen: _Run | None = None
        self._awaiting: Action | None = None
        self._phase = ""
        #: The verdict (``mine``, ``other``, ``done``, ``unknown``) of the read the last answer
        #: delivered, if the protocol judged it for ownership (verify and recheck reads), for
        #: drivers that count verdicts (metrics); ``None`` otherwise.
        self.last_verdict: tuple[Tier, str] | None = None
        self._shutdown = False
        #: Draws the backoff's jitter; seeded from the attempt (job, encoder, start instant)
        #: so that simulations replay and two encoders do not retry in step. Made on first use.
        self._rng: random.Random | None = None
        self._started_at = 0.0
        #: The latest instant a tier's ``Retry-After`` asked for (:attr:`Outcome.retry_until`).
        self._retry_until = -math.inf

    # ---- driver interface

    def start(self, now: float) -> Step:
        """Begin the attempt; returns the first action."""
        if self._gen is not None:
            raise ProtocolError("start() called twice")
        self._now = self._driver_now = self._started_at = now
        self._gen = self._run()
        return self._advance(None)

    def handle(self, answer: Answer, now: float) -> Step:
        """Feed the answer to the last action (at driver time ``now``); returns the next one."""
        if self._gen is None or self._awaiting is None:
            raise ProtocolError("handle() before start() or after Done")
        if now < self._driver_now:
            raise ProtocolError(f"time went backwards: {now} < {self._driver_now}")
        self._driver_now = now
        self._check_answer(self._awaiting, answer)
        if (isinstance(answer, WriteAnswered) and answer.outcome is WriteOutcome.NOT_SENT
                and getattr(self._awaiting, "send_by", None) is None):
            # Nobody asked for a send-by bound: a driver that says "not sent" anyway is not
            # believed (fail closed: the write may have landed).
            answer = WriteAnswered(WriteOutcome.UNKNOWN, answer.token, answer.detail)
        self.last_verdict = None
        if isinstance(answer, Woke) and isinstance(self._awaiting, Sleep):
            # Woke means "the deadline has come": clocks that convert time (drift, floats)
            # may report a hair before it, which must not re-arm the same deadline forever.
            now = max(now, self._awaiting.until)
        self._now = now
        hint = getattr(answer, "retry_after", None)
        if hint is not None and 0 < hint < math.inf:
            # Untrusted (a server's header): only a positive, finite wait is one, and none is
            # honoured past MAX_RETRY_AFTER_S from when it was told. Capped from when the run
            # ends instead, one absurd hint early in a long job held the loop the whole cap
            # after even a successful job (an adversarial review, session 30).
            self._retry_until = max(self._retry_until, now + min(hint, MAX_RETRY_AFTER_S))
        return self._advance(answer)

    def request_shutdown(self) -> None:
        """The encoder is shutting down: from now on, no claim is made. A run that has already
        claimed learns it from :class:`ShutdownRequested`, which the driver delivers at the
        next :class:`Sleep` (drivers do both)."""
        self._shutdown = True

    @property
    def phase(self) -> str:
        return self._phase

    @property
    def awaiting(self) -> Action | None:
        """The action whose answer :meth:`handle` expects next: what the driver is carrying
        out for this job (a read and its purpose, a ping, a sleep), for the driver's own
        records; ``None`` before :meth:`start` and once the run is done."""
        return self._awaiting

    def _advance(self, answer: Answer | None) -> Step:
        assert self._gen is not None
        try:
            action = next(self._gen) if answer is None else self._gen.send(answer)
        except StopIteration as stop:
            outcome: Outcome = stop.value
            if self._given_back is not None:
                outcome = replace(outcome, held=outcome.held or not self._given_back,
                                  given_back=self._given_back)
            if self._retry_until > self._now:
                outcome = replace(outcome, retry_until=self._retry_until)
            self.outcome = outcome
            action = Done(outcome)
            self._log(
                "OUTCOME",
                "info" if outcome.kind is OutcomeKind.PROCESSED else "warning",
                f"Job {self.job_id}: {outcome.kind.value} ({outcome.code}): {outcome.reason}",
            )
        self._awaiting = None if isinstance(action, Done) else action
        decisions = self._decisions
        if not decisions:
            return Step(action, ())  # most steps decide nothing worth a log line
        self._decisions = []
        return Step(action, tuple(decisions))

    @staticmethod
    def _check_answer(action: Action, answer: Answer) -> None:
        if type(answer) not in _ANSWERS_TO[type(action)]:
            raise ProtocolError(
                f"{type(answer).__name__} is not an answer to {type(action).__name__}"
            )

    def _log(self, code: str, level: str, message: str, **fields: object) -> None:
        items = (("job_id", self.job_id), *((k, str(v)) for k, v in fields.items()))
        self._decisions.append(Decision(code, level, message, items))

    # ---- tier choice

    def _claim_tier(self) -> Tier:
        """Where to claim. Hardened: the strongest tier with an atomic conditional claim."""
        if self.policy.claim_via_strongest:
            for tier in (Tier.DATABASE, Tier.AID):
                if self.tiers.has(tier):
                    return tier
        return Tier.GATEWAY

    def _confirming_tiers(self) -> tuple[Tier, ...]:
        """Tiers allowed to say "yours", strongest first.

        The documented chain uses exactly one: the highest enabled. The hardened chain uses the
        database and the monitor (falling back when one cannot answer); the legacy gateway's
        ``jobstatus`` lies, so it may confirm only in the documented chain or in the canary
        that switches tier precedence off.

        Computed once per attempt: it depends only on the policy and the tiers, which are
        frozen, and every re-check asks for it.
        """
        if self._confirming is None:
            candidates = [t for t in (Tier.DATABASE, Tier.MONITOR) if self.tiers.has(t)]
            if self.policy.gateway_can_confirm and self.tiers.has(Tier.GATEWAY):
                candidates.append(Tier.GATEWAY)
            candidates.sort(key=TIER_STRENGTH.__getitem__)
            if not self.policy.verify_retries:
                del candidates[1:]
            self._confirming = tuple(candidates)
        return self._confirming

    def _lag(self, tier: Tier) -> float:
        return self.policy.timing.monitor_lag if tier is Tier.MONITOR else _LAG_FREE

    # ---- judgement

    def _judge(self, obs: Observation, *, during_work: bool) -> _Verdict:
        """What an observation proves about ownership.

        Absent, null and synthetic answers prove nothing (they mean *wait*) unless the
        ``absent-is-wait`` step is off. During work, after the settle point, a job back in a
        claimable status with no owner has been reassigned or released: it is lost.
        """
        job = obs.job
        owner = normalize_did(obs.owner)
        if job is None or (job.synthetic and self.policy.absent_is_wait):
            return _Verdict.UNKNOWN  # a stand-in record built by the monitor proves nothing
        if not owner:
            if during_work and job.status in CLAIMABLE_STATUSES and self.policy.absent_is_wait:
                return _Verdict.OTHER
            if not self.policy.absent_is_wait and job.status not in DONE_STATUSES:
                return _Verdict.MINE  # the canary: "absent or null means mine"
            return _Verdict.DONE if job.status in DONE_STATUSES else _Verdict.UNKNOWN
        if owner != self.me:
            return _Verdict.OTHER
        if obs.token is not None and self.token is not None and obs.token != self.token:
            return _Verdict.OTHER  # a later assignment (to us, elsewhere) is not this one
        if not self.policy.verify_retries:
            return _Verdict.MINE  # documented: `isOwned` alone decides
        if job.status in PROCESSABLE_STATUSES:
            return _Verdict.MINE
        if job.status in DONE_STATUSES:
            return _Verdict.DONE
        if during_work and job.status in NOT_HELD_STATUSES:
            # Ours on record, but back in the queue, given up or withdrawn (an operator's
            # cancel, the gateway's fifth attempt): nobody may go on processing it. Read as
            # unknown, only the lease ended such work, and on an aid node, whose heartbeats
            # renew the lease on their own, nothing did: it ran to the end, and each heartbeat
            # set a cancelled job running again (an adversarial review, session 44).
            return _Verdict.OTHER
        return _Verdict.UNKNOWN

    # ---- cost features: cache, backoff, push (docs/enhancements.md)

    def _max_age(self, purpose: str) -> float:
        """How old a cached answer may be for a read of ``purpose``: only the pre-claim check
        (an optimisation) may use the cache; a deciding read must see the tier as it is now,
        or a cached "yours" would prove pings that never landed (S2, the lease)."""
        return self.policy.status_cache_s if purpose == "pre-claim" else 0.0

    def _retry_delay(self, attempt: int, hint: float | None = None) -> float:
        """The wait before retry number ``attempt + 1`` (``attempt`` = 0 for the first).

        Fixed ``retry_interval`` without backoff; with it, full jitter (``u * min(cap, base *
        2**attempt)``, ``u`` uniform in [0, 1), base = ``retry_interval``, cap = the larger of
        R and eight retry intervals), so a fleet hit by one outage spreads its retries out
        instead of hammering the tier in step. Never shorter than the tier's ``Retry-After``.
        Callers clamp the result to their own deadline (confirm timeout, lease end) and, during
        work, to the next regular re-check: a retry never waits past either."""
        t = self.policy.timing
        floor = hint or 0.0
        if not self.policy.backoff:
            return max(t.retry_interval, floor)
        if self._rng is None:
            self._rng = random.Random(f"{self.job_id}|{self.me}|{self._started_at!r}")
        cap = max(t.recheck_interval, 8.0 * t.retry_interval)
        ceiling = min(cap, t.retry_interval * 2.0 ** min(attempt, 32))
        return max(self._rng.random() * ceiling, floor)

    def _proves(self, hint: Hinted) -> bool:
        """Whether a push counts as an ownership read. Never: see :class:`Hinted` (this is a
        method so that the canary ``conformance.canaries.PushAsProof`` can say otherwise)."""
        return False

    def _hint_is_ours(self, hint: Hinted) -> bool:
        """A push that says the job is still ours and running changes nothing: no read (a
        push is not proof either way, so this only saves a read)."""
        return hint.says_ours(self.me)

    @staticmethod
    def _wake(next_ping: float, next_read: float, lease_end: float, *,
              retrying: bool) -> float:
        """When work next needs the protocol: the next ping, the next read (``inf`` when none;
        ``retrying``: it is a backoff retry), and the lease end (``inf`` when no lease). Every
        wait is clamped to the lease end, a retry's included, so no wait outlives the lease."""
        return min(next_ping, next_read, lease_end)

    def _sleep_until(self, until: float) -> Generator[Action, Answer, Answer]:
        """Sleep until ``until`` before work has started: a push cannot end the wait early
        (what it says is read after the wait), a shutdown request can. Returns :class:`Woke`
        when the wait ran out, or the :class:`ShutdownRequested` or the :class:`Hinted` that
        :meth:`_proves` accepted that ended it.

        Any other push is swallowed here, even the last answer of the wait: a push delivered
        at or after ``until`` (held behind a pause, say) ends the loop as a wake-up would, and
        returning it would hand the caller a push that proves nothing in place of a wake-up
        (found by the thorough profile: ``_verify`` then skipped its deciding read)."""
        while self._now < until:
            answer = yield Sleep(until)
            if isinstance(answer, ShutdownRequested):
                return answer
            if isinstance(answer, Hinted) and self._proves(answer):
                return answer
        return Woke()

    def _retry_wait(self, until: float, earliest: float) -> Generator[Action, Answer, Answer]:
        """The wait before the verify step reads again: until ``until`` (the retry delay), but
        a push that may mean a change brings the read forward, to no sooner than ``earliest``
        (the retry interval, or the tier's ``Retry-After``, after the last read): a flood of
        pushes is one read per retry interval, not one read per push. A push saying the job
        is ours changes nothing. Returns :class:`Woke`, or the :class:`ShutdownRequested` or
        proving :class:`Hinted` that ended the wait."""
        while self._now < until:
            answer = yield Sleep(until)
            if isinstance(answer, ShutdownRequested):
                return answer
            if isinstance(answer, Hinted):
                if self._proves(answer):
                    return answer
                if not self._hint_is_ours(answer):
                    until = max(self._now, min(until, earliest))
        return Woke()

    # ---- the protocol

    def _run(self) -> _Run:
        p = self.policy
        if p.verify and not self._confirming_tiers():
            # Fail closed *before* claiming: a claim we could never confirm would leave the
            # job held and unworked until the gateway reassigns it (L1).
            self._log("ABORTING", "error", "No tier can confirm ownership; refusing to claim")
            return Outcome(OutcomeKind.SKIPPED, "NO_CONFIRMING_TIER",
                           "no tier can confirm ownership")
        if p.pre_claim_check:
            skipped = yield from self._pre_claim()
            if skipped is not None:
                return skipped

        # The lease is measured from the *decision* to claim: the claim's write (which stamps
        # ``last_pinged``) lands after it is sent, and it is sent after this instant, so the
        # lease can only end early, never late (S2).
        if self._shutdown:
            # Told before the claim (a signal during the pre-claim check): claim nothing, rather
            # than claim and release, which could leave the job held if the release failed.
            self._log("SHUTDOWN", "warning", f"Job {self.job_id}: encoder shutting down; "
                      "not claiming it")
            return Outcome(OutcomeKind.SKIPPED, "SHUTDOWN", "encoder shutting down")
        claim_decided = self._now
        conditional = p.conditional_claim or self.claim_via is not Tier.DATABASE
        self._log("CLAIM", "info", f"Claiming job {self.job_id} via {self.claim_via}",
                  via=self.claim_via, conditional=conditional)
        answer = yield Claim(self.claim_via, conditional=conditional)
        assert isinstance(answer, WriteAnswered)
        if (answer.outcome is WriteOutcome.REFUSED and self.claim_via is Tier.AID
                and self.tiers.has(Tier.GATEWAY) and self._gateway_job and not self._shutdown):
            # Gateway Aid's claim-job matches only jobs of its own lifecycle (``pending``,
            # docs/contract.md): a job the pre-claim read showed free in the gateway's
            # (``queued``) is refused there whoever holds it, and claimed through the gateway
            # instead. The refusal wrote nothing, so this is a first claim: the lease and the
            # settle count from it, as for any gateway claim (session 32; without it an aid
            # node never claimed a gateway job).
            self.claim_via = Tier.GATEWAY
            claim_decided = self._now
            self._log("CLAIM", "info", f"Claiming job {self.job_id} via {self.claim_via} "
                      "(Gateway Aid claims only its own pending jobs)",
                      via=self.claim_via, conditional=True, detail=answer.detail)
            answer = yield Claim(self.claim_via, conditional=True)
            assert isinstance(answer, WriteAnswered)
        # The settle wait is measured from the claim's *answer*: a driver may send a request up
        # to P after the protocol decides it (a pause, a stalled loop, a pooled connection),
        # and only a reply proves that the request has left (docs/safety-model.md, "Settle").
        claim_answered = self._claim_answered = self._now
        if answer.outcome is WriteOutcome.REFUSED:
            self._log("GRACEFUL_SKIP", "info", f"Reason - claim refused: {answer.detail}")
            return Outcome(OutcomeKind.SKIPPED, "CLAIM_REFUSED", answer.detail or "claim refused")
        if answer.outcome is WriteOutcome.UNKNOWN and not (p.verify and p.verify_retries):
            # Documented: acceptJob threw; the job is not processed (its write may still land
            # and the gateway will reassign it after T without pings: L1).
            return Outcome(OutcomeKind.FAILED, "CLAIM_UNKNOWN", answer.detail or "no answer")
        # An unknown claim's answer carries the token it sent, when the tier has tokens.
        self.token = answer.token
        self._claim_unknown = answer.outcome is WriteOutcome.UNKNOWN
        if answer.outcome is WriteOutcome.UNKNOWN:
            # Hardened: the write may still land; verification decides (never "safe" on it).
            self._log("CLAIM_UNKNOWN", "warning",
                      "Claim outcome unknown; verifying before anything else", detail=answer.detail)

        if p.verify:
            lease_end = claim_decided + p.timing.lease_budget()
            refused = yield from self._verify(claim_answered, lease_end)
            if refused is not None:
                return refused
        if self._shutdown:
            # Told while the claim or its verification was under way (a driver delivers
            # ShutdownRequested only at a wait, and a request during a read is seen here):
            # give the job back before any work starts, rather than start the work only to
            # cancel it at the next wait (an adversarial review of the asyncio driver,
            # 2026-12-04: a command spawned 0.2 s after the request, then killed).
            return (yield from self._shut_down(working=False))
        return (yield from self._work(lease_base=claim_decided))

    def _pre_claim(self) -> Generator[Action, Answer, Outcome | None]:
        """Skip jobs that are visibly taken. An optimisation only: safety never rests on it."""
        tier = pre_claim_tier(self.policy, self.tiers)
        if tier is None:
            return None
        self._log("PRE_CLAIM_CHECK", "info",
                  f"Verifying job availability via {tier}...", tier=tier)
        answer = yield Observe(tier, "pre-claim", max_age=self._max_age("pre-claim"))
        if isinstance(answer, TierFailed):
            if self.policy.pre_claim_error_skips:
                # Defect 1 was claiming anyway after a failed check; we skip instead.
                self._log("GRACEFUL_SKIP", "info",
                          f"Reason - pre-claim check failed: {answer.detail}")
                return Outcome(OutcomeKind.SKIPPED, "PRE_CLAIM_FAILED", answer.detail)
            return Outcome(OutcomeKind.FAILED, "PRE_CLAIM_FAILED", answer.detail)
        assert isinstance(answer, Observed)
        job = answer.observation.job
        # A job in the gateway's lifecycle, which Gateway Aid's claim-job never matches. Only a
        # claim that goes ahead uses it: the read showed the job free, or ours (a lagging read
        # after our own give-back, or an older assignment of ours: an adversarial review found
        # aid nodes skipping such jobs that gateway-only nodes claimed, session 32).
        self._gateway_job = job is not None and job.status != "pending"
        availability = availability_of(job)
        if availability.available or normalize_did(availability.current_owner) == self.me:
            return None
        if (self.policy.verify_retries and job is not None and not job.assigned_to
                and job.status in CLAIMABLE_STATUSES):
            # The documented check refuses ``unassigned`` (a status of the monitor's own
            # "available" list); the hardened chain may claim it: safety rests on the
            # verification after the claim, not on this optimisation.
            return None
        if availability.current_owner:
            self._log("PRE_CLAIM_CONFLICT", "warning",
                      f"Job {self.job_id} already claimed by {availability.current_owner}",
                      owner=availability.current_owner)
        self._log("GRACEFUL_SKIP", "info", f"Reason - {availability.reason}")
        code = "PRE_CLAIM_CONFLICT" if availability.current_owner else "NOT_AVAILABLE"
        return Outcome(OutcomeKind.SKIPPED, code, availability.reason)

    def _verify(
        self, claim_answered: float, lease_end: float
    ) -> Generator[Action, Answer, Outcome | None]:
        """Confirm ownership before starting. Returns ``None`` when confirmed.

        Past ``lease_end`` nothing may start: the gateway may already have reassigned the job
        (the lease is judged again once work runs; this keeps work from starting doomed)."""
        p = self.policy
        tiers = self._confirming_tiers()
        settle_end = (
            claim_answered + p.timing.settle_delay(self._lag(tiers[0])) if p.settle
            else self._now
        )
        deadline = settle_end + p.timing.confirm_timeout
        attempt = 0
        last_read = -math.inf
        while True:
            hint: float | None = None
            for tier in tiers:
                if p.settle:
                    # S1/S2: the deciding read must reflect every write that could still land.
                    ready_at = claim_answered + p.timing.settle_delay(self._lag(tier))
                    slept = yield from self._sleep_until(ready_at)
                    if isinstance(slept, ShutdownRequested):
                        return (yield from self._shut_down(working=False))
                    if isinstance(slept, Hinted):
                        return None  # only a canary gets here (:meth:`_proves`)
                self._log(f"TIER_{TIER_EVENT[tier]}_VERIFICATION", "info",
                          f"Checking {tier} for job {self.job_id}...", tier=tier)
                last_read = self._now
                answer = yield Observe(tier, "verify", max_age=self._max_age("verify"))
                if isinstance(answer, TierFailed):
                    self._log("TIER_UNAVAILABLE", "warning",
                              f"{tier} could not answer: {answer.detail}", tier=tier)
                    if answer.retry_after is not None:
                        hint = max(hint or 0.0, answer.retry_after)
                    if not p.verify_retries:
                        return Outcome(OutcomeKind.FAILED, "VERIFICATION_FAILED", answer.detail)
                    continue  # fall back to the next tier: it cannot override a "not yours"
                assert isinstance(answer, Observed)
                verdict = self._judge(answer.observation, during_work=False)
                if verdict is _Verdict.MINE and not self._shows_our_claim(answer.observation):
                    if self.token is None:
                        # No read can ever tell this claim from an older assignment of ours:
                        # give the job back rather than count a lease nothing renewed.
                        self.last_verdict = (tier, _Verdict.UNKNOWN.value)
                        self._log("CLAIM_AMBIGUOUS", "warning",
                                  f"Job {self.job_id} is assigned to us, but our claim's "
                                  "outcome is unknown: it may be an older assignment",
                                  tier=tier)
                        yield from self._release("claim outcome unknown")
                        return Outcome(OutcomeKind.SKIPPED, "CLAIM_UNKNOWN",
                                       "claim outcome unknown; the assignment may be older")
                    verdict = _Verdict.UNKNOWN  # a tier that shows tokens may still tell
                self.last_verdict = (tier, verdict.value)
                if verdict is _Verdict.MINE and p.lease and self._now >= lease_end:
                    break  # confirmed too late to start inside the lease
                if verdict is _Verdict.MINE:
                    if self.token is None and answer.observation.token is not None:
                        # A claim whose reply was lost: the confirming read tells us our token,
                        # so later fenced writes name this exact assignment.
                        self.token = answer.observation.token
                    self._log(self._confirmed_code(tier), "info",
                              f"Job {self.job_id} is assigned to us via {tier}",
                              assigned_to=answer.observation.owner,
                              status=answer.observation.status)
                    return None
                if verdict in (_Verdict.OTHER, _Verdict.DONE) or not p.verify_retries:
                    if p.tier_precedence or not p.verify_retries:
                        return self._conflict(tier, answer.observation)
                    continue  # canary: let a weaker tier overrule the "not yours"
                if p.tier_precedence:
                    break  # an answered "unknown" from a stronger tier: ask it again later
            if self._now >= deadline:
                break
            slept = yield from self._retry_wait(
                min(deadline, self._now + self._retry_delay(attempt, hint)),
                # A Retry-After counts from when it was told (the answer, handled by now),
                # never from the read's decision: a slow 429 had a push bring the read
                # inside it (an adversarial review of the instants, session 31). (Never past
                # the deadline either: the wait ends by its first argument.)
                max(last_read + p.timing.retry_interval, self._now + (hint or 0.0)))
            attempt += 1
            if isinstance(slept, ShutdownRequested):
                return (yield from self._shut_down(working=False))
            if isinstance(slept, Hinted):
                return None  # only a canary gets here (:meth:`_proves`)
        self._log("ABORTING", "warning",
                  f"Ownership of job {self.job_id} could not be confirmed in time")
        yield from self._release("ownership not confirmed")
        return Outcome(OutcomeKind.SKIPPED, "UNCONFIRMED", "ownership could not be confirmed")

    def _shows_our_claim(self, obs: Observation) -> bool:
        """Whether a read that says "assigned to us" shows *this* claim's assignment.

        After a claim whose outcome is unknown it may show an older assignment of our DID
        instead: one a crashed process of ours held, or one whose release got no answer, that
        the gateway offered us again (``myJob`` offers an encoder the jobs assigned to it). The
        claim then matched nothing, and that assignment's lease and progress clocks started
        long before this claim was decided: counting the lease from the decision would let
        the work run past the gateway's reassignment (S2). Only the token the claim sent tells
        the two apart; a tier without tokens (gateway, aid) never can. (A read that does not
        name us is judged by the other rules: ``absent-is-wait`` for an absent owner.)
        """
        if not self._claim_unknown or normalize_did(obs.owner) != self.me:
            return True
        return obs.token is not None and obs.token == self.token

    def _confirmed_code(self, tier: Tier) -> str:
        return "MONITOR_CONFIRMED" if tier is Tier.MONITOR else f"{tier.value.upper()}_CONFIRMED"

    def _conflict(self, tier: Tier, obs: Observation) -> Outcome:
        """The job is not ours to process: another encoder's (a conflict), an assignment of
        our DID other than this claim's (one an earlier process of ours held), or nobody's
        (done, back in the queue). The last is ``NOT_ASSIGNED``, not a conflict: counted as
        one, a job read as complete after our claim swelled the conflicts-prevented metric
        (a review of the metrics, session 37)."""
        owner = obs.owner
        held = "Another encoder owns this job - stopping to prevent wasted work"
        if owner and normalize_did(owner) != self.me:
            code = "MONITOR_THEFT_DETECTED" if tier is Tier.MONITOR else "OWNERSHIP_CONFLICT"
            self._log(code, "error", f"Job {self.job_id} is assigned to {owner}!", owner=owner)
            reason = f"assigned to {owner}"
        else:
            nobody = not normalize_did(owner)
            code = "NOT_ASSIGNED" if nobody else "OWNERSHIP_CONFLICT"
            reason = (f"not assigned to anyone (status={obs.status})" if nobody else
                      f"not assigned to us (owner={owner}, status={obs.status})")
            self._log(code, "error", f"Job {self.job_id} is {reason}")
            if nobody:
                held = "Nobody owns this job now - not processing it"
        self._log("ABORTING", "error", held)
        return Outcome(OutcomeKind.SKIPPED, code, reason)

    def _work(self, lease_base: float) -> Generator[Action, Answer, Outcome]:
        """Run the work with pings and re-checks; cancel on loss; finish fenced.

        The lease (S2): the gateway may reassign the job ``T`` after the last ping that
        *counted* for this assignment, so the work must be stopped before then. ``lease_base``
        only moves forward on evidence that a ping landed on this assignment, and only to the
        instant the ping was *decided* (before it was sent, so before it landed):

        * a database heartbeat is fenced on owner and claim token, and aid's is conditioned on
          the owner: their "OK" says the ping was counted for us;
        * the legacy gateway answers OK to pings from non-owners too, so its OK proves nothing.
          Such a ping counts once a later read says "yours" while reflecting the database at
          least ``P + G`` after the ping was decided (it was sent within P and landed within G):
          the job was ours when the ping landed, so the ping renewed it.

        The gateway's second rule reassigns a job whose progress has not changed for ``N``
        (``progress_timeout``), pings or not, so the lease also ends at
        ``progress_base + N - margin``. The assignment starts that clock (and resets the
        progress to none); it moves only on two pings, both counted as above, that set one
        field to *different* non-zero values, to the earlier one's decision: the stored field
        changed between their landings (:mod:`verifier._progress` says why one ping is not
        enough: a late ping of an earlier attempt by our DID can land on this assignment).
        Until the work reports progress, pings carry ``start_progress``, so its first report
        already makes a pair.

        Every request made during work carries the lease end as its deadline, so a tier that
        hangs cannot hold the work past it.
        """
        p, t = self.policy, self.policy.timing
        claimed_at = lease_base  # the claim's decision: the lease's first base
        answer: Answer = yield StartWork()
        self._log("PROCESSING_STARTED", "info", f"Processing job {self.job_id}")
        # The first ping goes out at once (the claim's own stamp is the only renewal so far),
        # then one every R; re-checks every R, and earlier when a gateway ping awaits proof.
        next_ping = self._now
        next_read = self._now + t.recheck_interval
        proof_wait = self._proof_wait()
        answer_wait = self._proof_wait(from_answer=True)
        lost: str | None = None
        progress = self.start_progress
        progress_clock = self.progress_clock(lease_base)
        # Gateway pings answered OK and not yet proven: (decided, progress carried, answered,
        # the first instant a read can prove it: proof_wait after its decision and answer_wait
        # after its answer).
        unproven: list[tuple[float, tuple[float, float], float, float]] = []
        proven_directly = self.claim_via in (Tier.DATABASE, Tier.AID)
        ping_horizon, progress_horizon = t.lease_horizons()
        #: Reads in a row that left a ping unproven (the backoff's exponent), and whether the
        #: next read is such a retry.
        misses, retrying = 0, False
        #: Requests since the last wait, and whether the last was a ping (see the wait below).
        streak, pinged_last = 0, False
        #: After a push that says the job may be lost: until when a read that still says
        #: "yours" may be lagging behind the change (the tier's lag), and the reads since.
        chase_until, chased, last_read = -math.inf, 0, -math.inf
        #: A tier's ``Retry-After``: no read a push or a chase brings forward comes sooner (the
        #: regular re-check at R still does: it bounds loss detection, and the lease).
        not_before = -math.inf
        lag = self._lag(self._confirming_tiers()[0]) if self._confirming_tiers() else 0.0

        def counted(decided: float, carried: Progress) -> None:
            """A ping decided at ``decided`` landed on this assignment: renew the lease."""
            nonlocal lease_base
            lease_base = max(lease_base, decided)
            progress_clock.counted(decided, carried)

        while True:
            ping_end = lease_base + ping_horizon
            progress_end = progress_clock.base + progress_horizon
            lease_end = min(ping_end, progress_end)
            lease_on = p.lease and lost is None
            deadline = lease_end if lease_on else None
            if lease_on and self._now >= lease_end:
                # S2: the gateway may reassign at last-ping + T, or at last-progress-change +
                # N; be stopped before then.
                # Said with its facts: a lease that ran out before any ping was proven
                # points at the claim-to-first-proof path (the settle, the confirmation and
                # the first ping's proof, with every reply on it: slow replies with a tight
                # reassign_timeout), one that ran out later at pings that stopped landing.
                since = ("no ping proven since the claim, " if lease_base == claimed_at else
                         "the last proven ping was decided ")
                lost = (f"lease expired: ownership could not be confirmed in time ({since}"
                        f"{self._now - lease_base:.1f} s ago)"
                        if ping_end <= progress_end else
                        "lease expired: no progress change proven within progress_timeout")
                stopped = yield from self._on_loss("LEASE_EXPIRED", lost, release=True)
                if stopped is not None:
                    return stopped
                continue
            pinging = p.phase_heartbeats or self._phase == "encode"
            reading = p.recheck and lost is None
            wake = self._wake(next_ping, next_read if reading else math.inf,
                              lease_end if lease_on else math.inf, retrying=retrying)
            if wake > self._now or streak >= 2:
                # Never more than two requests without a wait, if only until now: the work's
                # events (its end, a shutdown, a push) are answers to a wait. A ping whose
                # answer took longer than R found the next ping due at once, and the next:
                # the protocol pinged back to back, never read (no ping proven: the lease ran
                # out on healthy work) and never heard a shutdown or the work's end (an
                # adversarial review, session 44).
                streak, pinged_last = 0, False
                answer = yield Sleep(max(wake, self._now))
                if isinstance(answer, WorkEnded):
                    break
                if isinstance(answer, ShutdownRequested):
                    return (yield from self._shut_down(working=True))
                if isinstance(answer, PhaseChanged):
                    self._phase = answer.phase
                    continue
                if isinstance(answer, Progressed):
                    progress = (answer.pct, answer.download_pct)
                    continue
                if isinstance(answer, Hinted):
                    if not self._hint_is_ours(answer):
                        # The job may have been taken: read it now instead of at the next
                        # tick (never proof), and again soon while a read may still lag the
                        # change, until the tier's lag has passed. Never two reads closer than
                        # the retry interval for pushes alone: a flood of them is one read.
                        next_read = min(next_read, max(self._now, not_before,
                                                       last_read + t.retry_interval))
                        if self._now >= chase_until:
                            chased = 0  # a new chase; one under way goes on backing off
                        chase_until = max(chase_until, self._now + lag)
                    continue
                if lease_on and self._now >= lease_end:
                    continue  # the lease is judged at the top of the loop
            # A due read before a ping that is due again on the last ping's answer: it kept
            # the read (the proof of that ping) waiting behind it for ever (the same review).
            # So does a due read that can prove the oldest unproven ping: only its proof
            # moves the lease, and a ping sent first kept it waiting for the ping's reply
            # (or two: ``pinged_last`` is cleared by any wait, a report's included), until
            # the lease ran out on healthy work (an adversarial review, session 45).
            read_first = reading and self._now >= next_read and (
                pinged_last or (bool(unproven) and self._now >= unproven[0][3]))
            if self._now >= next_ping and not pinging:
                next_ping = self._now + t.recheck_interval  # a tick without a ping (phase)
            elif self._now >= next_ping and not read_first:
                streak, pinged_last = streak + 1, True
                next_ping = self._now + t.recheck_interval
                decided, carried = self._now, progress
                progress_clock.sent(decided, carried)
                answer = yield Heartbeat(self.claim_via, self.token, deadline=deadline,
                                         pct=carried[0], download_pct=carried[1])
                assert isinstance(answer, WriteAnswered)
                if answer.outcome is WriteOutcome.OK:
                    if proven_directly:
                        counted(decided, carried)
                    else:
                        # Proven by a read decided proof_wait after the ping's decision (it
                        # left within P of it) *and* answer_wait after its answer: a decision
                        # is not a send, and only the reply proves the ping had left (a ping
                        # that waited seconds for its connection, as a finish can, left late
                        # and may land after the gateway reassigned the job: an adversarial
                        # review of the instants, session 31).
                        provable = max(decided + proof_wait, self._now + answer_wait)
                        unproven.append((decided, carried, self._now, provable))
                        next_read = min(next_read, provable)
                elif answer.outcome is WriteOutcome.REFUSED and lost is None:
                    lost = f"heartbeat refused: {answer.detail}"
                    stopped = yield from self._on_loss("HEARTBEAT_REFUSED", lost, release=False)
                    if stopped is not None:
                        return stopped
                continue
            if reading and self._now >= next_read:
                streak, pinged_last = streak + 1, False
                next_read = self._now + t.recheck_interval
                last_read = self._now
                verdict, obs, asked, hint = yield from self._recheck(deadline)
                not_before = -math.inf if hint is None else self._now + hint
                waiting = len(unproven)
                if verdict is _Verdict.MINE and obs is not None and unproven:
                    # The read reflects the database as of ``asked - lag`` or later: a ping
                    # counts once it was decided ``proof_delay`` or more before the read.
                    # Compared as the sum the read was scheduled with (``decided +
                    # proof_wait``): ``asked - delay`` came out one ulp below ``decided`` in
                    # about one read in 80, the ping stayed unproven and the retry came after
                    # the lease's end (a healthy job cancelled; found by the L1 review).
                    delay = t.proof_delay(self._lag(obs.tier))
                    after = t.proof_delay_from_answer(self._lag(obs.tier))
                    left = []
                    for ping in unproven:
                        if ping[0] + delay <= asked and ping[2] + after <= asked:
                            counted(ping[0], ping[1])
                        else:
                            left.append(ping)
                    unproven = left
                retrying = False
                # A read that said "yours" before the oldest ping could be proven missed
                # nothing: it came too early to prove it (a regular re-check), so the next
                # one goes at the instant it can, with no retry delay and no miss counted.
                # Delayed by a retry interval, the proof read fell behind the next ping,
                # whose reply took the rest of the lease: healthy work cancelled inside the
                # model (an adversarial review, session 45).
                early = verdict is _Verdict.MINE and bool(unproven) and asked < unproven[0][3]
                if len(unproven) < waiting:
                    # A read that proved a ping ends the run of misses, whether or not pings
                    # are left: counted only where some were left, a read that proved the
                    # last one kept the count, the next ping's first retry backed off as the
                    # fourth, and its lease ran out on a healthy job (found by an adversarial
                    # review, session 29: the fast-poll family with backoff, 2 of 200 worlds).
                    misses = 0
                elif unproven and not early:
                    misses += 1
                if unproven:
                    # The next read that can prove the oldest ping, but never sooner than the
                    # retry delay: a tier that proves nothing is not hammered (with backoff,
                    # ever less so while it goes on proving nothing).
                    retry_at = self._now + ((hint or 0.0) if early
                                            else self._retry_delay(misses, hint))
                    provable = unproven[0][3]
                    retrying = retry_at >= provable
                    next_read = min(next_read, max(provable, retry_at))
                if verdict is not _Verdict.OTHER and self._now < chase_until:
                    # The read may predate the change it was told of: read again, soon at
                    # first (the lag is usually far below its bound), then less often.
                    next_read = min(next_read, max(not_before, min(
                        chase_until, self._now + t.retry_interval * 2.0 ** (chased - 3))))
                    chased += 1
                if verdict in (_Verdict.OTHER, _Verdict.DONE) and obs is not None:
                    lost = f"owner={obs.owner} status={obs.status} via {obs.tier}"
                    code = ("MONITOR_THEFT_DETECTED" if obs.tier is Tier.MONITOR
                            else "OWNERSHIP_LOST")
                    # Once stopped, give the job back (fenced: refused if it is another's).
                    # A read that says "another owner" or "queued" may lag: the monitor's
                    # view, up to Δ old, can predate our own claim (a fallback read just
                    # after a database claim confirmed at once). Without the give-back such
                    # a job stayed ours until T while the run reported nothing held
                    # (conformance property ``give-back``, session 22).
                    stopped = yield from self._on_loss(
                        code, lost, release=verdict is _Verdict.OTHER)
                    if stopped is not None:
                        return stopped
        assert isinstance(answer, WorkEnded)
        if not answer.succeeded:
            self._log("WORK_FAILED", "error", f"Work on job {self.job_id} failed: {answer.detail}")
            if lost is None:
                yield from self._release(f"work failed: {answer.detail}", failed=True)
            return Outcome(OutcomeKind.FAILED, "WORK_FAILED", answer.detail)
        return (yield from self._finish(lease_end if p.lease else math.inf))

    def _proof_wait(self, *, from_answer: bool = False) -> float:
        """How long after a gateway ping was decided a read can prove it landed: the ping left
        within P and landed within G, and the strongest re-reading tier lags by its lag.
        ``from_answer``: how long after the ping's answer (it had left by then, and landed
        within G of leaving)."""
        tiers = self._confirming_tiers()
        lag = self._lag(tiers[0]) if tiers else 0.0
        t = self.policy.timing
        return t.proof_delay_from_answer(lag) if from_answer else t.proof_delay(lag)

    def _recheck(
        self, deadline: float | None
    ) -> Generator[Action, Answer, tuple[_Verdict, Observation | None, float, float | None]]:
        """One ownership re-check through the strongest tier that answers; also returns when
        the answering read was decided (its view is at least that recent, minus the lag), and
        the longest ``Retry-After`` a failed tier asked for (a retry honours it)."""
        hint: float | None = None
        for tier in self._confirming_tiers():
            if deadline is not None and self._now >= deadline:
                break
            asked = self._now
            answer = yield Observe(tier, "recheck", deadline=deadline,
                                   max_age=self._max_age("recheck"))
            if isinstance(answer, TierFailed):
                if answer.retry_after is not None:
                    hint = max(hint or 0.0, answer.retry_after)
                continue
            assert isinstance(answer, Observed)
            verdict = self._judge(answer.observation, during_work=True)
            self.last_verdict = (tier, verdict.value)
            if verdict is _Verdict.UNKNOWN or (
                verdict is not _Verdict.MINE and not self.policy.tier_precedence
            ):
                continue
            return verdict, answer.observation, asked, hint
        return _Verdict.UNKNOWN, None, self._now, hint

    def _on_loss(
        self, code: str, reason: str, *, release: bool
    ) -> Generator[Action, Answer, Outcome | None]:
        """Ownership lost or unconfirmable during work: cancel (S2), then maybe release (L1)."""
        self._log(code, "error", f"Job {self.job_id}: {reason}")
        # A lease that ran out unconfirmed is not a job known lost: say which it is, so an
        # operator does not go looking for the other encoder (operator review, session 20).
        what = "unconfirmed" if code == "LEASE_EXPIRED" else "lost"
        self._log("ABORTING", "error", f"Ownership {what} - stopping to prevent duplicate work")
        if not self.policy.cancel:
            # The canary "no cancellation on loss": detected, logged, and ignored (defect 4).
            return None
        yield CancelWork(reason)
        self._log("WORK_CANCELLED", "warning", f"Work on job {self.job_id} stopped")
        if release:
            yield from self._release(reason)
        return Outcome(OutcomeKind.CANCELLED, code, reason)

    def _shut_down(self, *, working: bool) -> Generator[Action, Answer, Outcome]:
        """The encoder is shutting down: stop the work if any, then give the job back.

        The work is cancelled whatever the chain (a shutdown is not a detected loss that a
        canary may ignore: the node is going away), and only once it has stopped is the job
        released, fenced on our assignment, so the job goes back to the queue at once instead
        of waiting T for the gateway to notice a silent encoder (L1), and never while we still
        run it (S2).
        """
        reason = "encoder shutting down"
        self._log("SHUTDOWN", "warning", f"Job {self.job_id}: {reason}; giving it back")
        if working:
            yield CancelWork(reason)
            self._log("WORK_CANCELLED", "warning", f"Work on job {self.job_id} stopped")
        kind = OutcomeKind.CANCELLED if working else OutcomeKind.SKIPPED
        for attempt in range(3 if self.policy.verify_retries else 1):
            if attempt:
                until = self._now + self._retry_delay(attempt - 1)
                while self._now < until:
                    yield Sleep(until)
            asked = self._now
            released = yield from self._release(reason)
            landed_by = self._claim_landed_by()
            if released is WriteOutcome.REFUSED and asked < landed_by:
                # Refused while our claim's write may still be landing (a shutdown during the
                # settle wait, G after an accept the gateway answered): the refusal says only
                # that it has not landed yet. Given up on that, the job was reported given
                # back, and then the accept landed and held it until T (an adversarial review
                # of the encoder loop, session 21). Once it must have landed, ask again.
                # Judged by when the release was decided, never by when its refusal was
                # handled: served before the landing, it can be answered after it (a slow
                # reply, a pause of P before the handling), and was taken as final (a review
                # of the simulated finish connection, session 31: give-back broken inside
                # the model).
                while self._now < landed_by:
                    yield Sleep(landed_by)
                released = yield from self._release(reason)
            if released in (WriteOutcome.OK, WriteOutcome.REFUSED):
                # Given back, or the tier says it is not ours any more: nothing held.
                return Outcome(kind, "SHUTDOWN", reason)
            if released is None:
                break
        # The job may stay held until the gateway reassigns it (T): say so, not "given back".
        return Outcome(kind, "SHUTDOWN_HELD",
                       f"{reason}; the job could not be given back and may stay held until "
                       "the gateway reassigns it", held=True)

    def _claim_landed_by(self) -> float:
        """The instant by which our claim's write has landed, whatever the tier: it was sent
        before its answer and lands within G of being sent, ε for our clock's drift
        (-inf when no claim was sent)."""
        if self._claim_answered is None:
            return -math.inf
        t = self.policy.timing
        return self._claim_answered + t.write_delay + t.clock_drift

    def _finish_by(self, lease_end: float) -> float:
        """The latest instant a finish may be decided (``docs/safety-model.md``, "S3").

        The database's finish is fenced by the assignment's token and aid's is an atomic
        update conditioned on the owner: when either lands does not change whom it counts
        for. The gateway's ``finishJob`` is check-then-act, as ``acceptJob`` is: it checks the
        owner when served and writes the result by id, and the write may land up to G after
        the request was sent, so one decided later than :meth:`TimingModel.finish_slack`
        after the lease's end (C - G) could land on the next assignment (found by an
        adversarial review, 2026-12-05: with G > C the first finish of work that ended just
        before the lease's end did; a retry after an unanswered finish can with any G)."""
        if self.claim_via is not Tier.GATEWAY:
            return math.inf
        return lease_end + self.policy.timing.finish_slack()

    def _finish(self, lease_end: float = math.inf) -> Generator[Action, Answer, Outcome]:
        """Commit the result, fenced on owner and assignment, and never later than
        :meth:`_finish_by` allows (``lease_end``: the lease's end when the work ended)."""
        attempts = 3 if self.policy.verify_retries else 1
        unknown = False
        finish_by = self._finish_by(lease_end)
        for attempt in range(attempts):
            if attempt:
                until = self._now + self._retry_delay(attempt - 1)
                while self._now < until:
                    # A shutdown request or a push changes nothing here: the finish decides.
                    yield Sleep(until)
            if self._now > finish_by:
                if unknown:
                    break  # an earlier unanswered finish may still land: the job may be done
                detail = (f"finish too late: its write could land after the gateway may "
                          f"reassign the job (lease end {lease_end:.3f})")
                self._log("FINISH_TOO_LATE", "warning", f"Job {self.job_id}: {detail}")
                yield from self._release(detail)
                return Outcome(OutcomeKind.CANCELLED, "FINISH_TOO_LATE", detail)
            self._log("FINISH", "info", f"Finishing job {self.job_id} via {self.claim_via}",
                      fenced=self.policy.fence)
            answer = yield Finish(self.claim_via, self.token, fenced=self.policy.fence,
                                  send_by=finish_by if math.isfinite(finish_by) else None)
            assert isinstance(answer, WriteAnswered)
            if answer.outcome is WriteOutcome.NOT_SENT:
                # Certainly not landed: try again while the deadline allows, else give back.
                self._log("FINISH_NOT_SENT", "warning",
                          f"Finish of job {self.job_id} not sent: {answer.detail}")
                continue
            if answer.outcome is WriteOutcome.OK:
                self._log("FINISHED", "info", f"Job {self.job_id} finished")
                return Outcome(OutcomeKind.PROCESSED, "FINISHED", "result committed")
            if answer.outcome is WriteOutcome.REFUSED:
                if unknown:
                    break  # an earlier unanswered finish may be the one that landed
                self._log("FINISH_REFUSED", "error",
                          f"Finish of job {self.job_id} refused: {answer.detail}")
                return Outcome(OutcomeKind.CANCELLED, "FINISH_REFUSED",
                               answer.detail or "finish refused: ownership lost")
            unknown = True
        if not unknown:
            # Every attempt went unsent: nothing landed, so the job is still ours to give back.
            detail = "finish not sent in time: its write could land after the gateway may " \
                     "reassign the job"
            yield from self._release(detail)
            return Outcome(OutcomeKind.CANCELLED, "FINISH_NOT_SENT", detail)
        # The finish may not have landed: the job may still be assigned to us (until T).
        return Outcome(OutcomeKind.FAILED, "FINISH_UNKNOWN", "finish outcome unknown",
                       held=True)

    def _release(
        self, reason: str, *, failed: bool = False
    ) -> Generator[Action, Answer, WriteOutcome | None]:
        """Best-effort, fenced give-back of a job we may hold, so it is not stuck until T.
        Returns the release's outcome (``None``: the policy does not release)."""
        if not self.policy.release_on_give_up:
            return None
        answer = yield Release(self.claim_via, self.token, reason, failed=failed)
        assert isinstance(answer, WriteAnswered)
        ok = answer.outcome is WriteOutcome.OK
        # Whatever path the run ends on, a give-back that got no answer leaves the job
        # possibly ours: the outcome says so (``Outcome.held``).
        self._given_back = answer.outcome in (WriteOutcome.OK, WriteOutcome.REFUSED)
        # Why a give-back failed is the operator's to know (Gateway Aid has no release
        # endpoint at all: its jobs stay held for an hour), so the tier's detail is logged.
        said = "" if ok or not answer.detail else f" ({answer.detail})"
        self._log("RELEASED" if ok else "RELEASE_FAILED", "info" if ok else "warning",
                  f"Release of job {self.job_id}: {answer.outcome.value}{said}", reason=reason)
        return answer.outcome

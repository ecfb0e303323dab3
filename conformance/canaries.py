"""Deliberately wrong beliefs and rules, for the suites to catch (their teeth).

Two kinds, both built on the shipped protocol rather than re-implementing it:

* **misbeliefs**: the hardened chain told a timing model *smaller* than the world's: one bound
  misbelieved (Δ, G, P, ε, C smaller, T or N larger), or one term of the settle, lease or
  ping-proof formula dropped. The world keeps its true bounds; the protocol decides with the
  wrong ones.
* **old rules**: :class:`SettleFromDecision`, the settle wait measured from the instant the
  protocol *decided* to claim rather than from the claim's answer (the flaw found by the
  adversarial review: a driver may send up to P after deciding); :class:`ReleaseBeforeStop`,
  a graceful shutdown that gives the job back before its work has stopped;
  :class:`ProgressFromOnePing`, the no-progress clock moved by one counted ping;
  :class:`ProgressWithoutStartMarker`, the two-value clock without its start marker (L1);
  :class:`SettleFromAidRefusal`, the same on Gateway Aid's fallback to a gateway claim;
  :class:`FallbackSettleWithoutDrift`, that fallback's settle without its ε term;
  :class:`NoSettleAfterConditionalClaim`, no settle wait after an atomic claim (the gateway's
  check-then-act accept overwrites it all the same); :class:`FallbackSettleWithoutLag`, the
  monitor's fallback read after a failed database read settled as the database's;
  :class:`RecheckWithoutDeadline` and :class:`HeartbeatWithoutDeadline`, requests during work
  sent without the lease end as their deadline.
* **old loop rules**: the encoder loop's decisions (:class:`verifier.PollSchedule`, which the
  simulator's encoders run) as they once were: :class:`IdleWaitPastItsCap`, the jittered idle
  wait up to 1.5 times the longest wait the policy states (session 21's review);
  :class:`NeverRetries`, a job given up on never tried again by that encoder.

A suite that passes the hardened chain but cannot catch these is not evidence.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from verifier import (
    LoopPolicy,
    Observation,
    Policy,
    PollSchedule,
    Tier,
    TimingModel,
    normalize_did,
)
from verifier.protocol import (
    Action,
    Answer,
    CancelWork,
    Claim,
    Finish,
    Heartbeat,
    Hinted,
    Observed,
    Outcome,
    OutcomeKind,
    OwnershipProtocol,
    PhaseChanged,
    ProgressClock,
    ShutdownRequested,
    Sleep,
    StartWork,
    Step,
    Woke,
    WorkEnded,
    WorkStarted,
    WriteAnswered,
    WriteOutcome,
    screened,
)

__all__ = [
    "MISBELIEFS",
    "BackoffPastLease",
    "BatchMissingAsAvailable",
    "CachedRecheck",
    "DawdlesBeforeClaim",
    "DawdlesBeforeTouching",
    "DawdlesBriefly",
    "EncodesTwice",
    "FailsAfterStandIn",
    "FallbackSettleShort",
    "FallbackSettleWithoutDrift",
    "FallbackSettleWithoutLag",
    "FinishPastLease",
    "FinishWithoutSendBy",
    "FinishesFailedWork",
    "HeartbeatWithoutDeadline",
    "IdleWaitPastItsCap",
    "LatePushEndsSettle",
    "LossNotGivenBack",
    "Misbelief",
    "NeverRetries",
    "NoSettleAfterConditionalClaim",
    "OlderAssignmentConfirms",
    "ProgressFromOnePing",
    "ProgressWithoutStartMarker",
    "PushAsProof",
    "RecheckWithoutDeadline",
    "RejectsAfterStandIn",
    "ReleaseBeforeStop",
    "RetryAfterUncapped",
    "SettleFromAidRefusal",
    "SettleFromDecision",
    "ShortSettleAfterUnknownClaim",
    "ShutdownWithoutReask",
    "WalksAwayAfterStandIn",
    "believing",
    "proof_from_the_decision",
]


class SettleFromDecision(OwnershipProtocol):
    """The old settle rule: the claim's answer is handed to the protocol as if it had come at
    the instant the claim was decided, so the settle wait starts there."""

    def handle(self, answer: Answer, now: float) -> Step:
        if isinstance(self._awaiting, Claim):
            now = self._driver_now  # the decision instant, as the old rule measured it
        return super().handle(answer, now)


class SettleFromAidRefusal(OwnershipProtocol):
    """The old settle rule on the Gateway Aid fallback alone: on an aid node whose Aid refused a
    gateway job, the gateway claim that follows is answered "as of" the refusal's answer (the
    instant the protocol decided it), so the settle wait counts from there. A refusal wrote
    nothing, so the shipped protocol counts the settle from the gateway claim's own answer:
    the claim may leave up to P after its decision. (Session 32's mutant survived 700
    targeted random worlds: a clock drifting ε fast narrows the gap to P − ε. The explorer's
    ``aid`` frame, without drift and with Aid answering at once, catches it with two pauses
    of P, session 33.)"""

    #: How long before its answer the fallback claim is handed to the protocol as answered
    #: (never before it was decided): all of it here.
    short_s = math.inf

    def handle(self, answer: Answer, now: float) -> Step:
        awaiting = self._awaiting
        if (isinstance(awaiting, Claim) and awaiting.via is Tier.GATEWAY
                and self._claim_tier() is Tier.AID):
            now = max(self._driver_now, now - self.short_s)
        return super().handle(answer, now)


class FallbackSettleShort(SettleFromAidRefusal):
    """The Gateway Aid fallback's settle a tenth of a second short: counted from 0.1 s before
    the gateway claim's answer. The explorer's ``aid`` frame must reach the settle's exact edge
    on that path, not only a gap of P (a reviewer's mutants, session 33: with Aid's replies
    taking 0.225 s there, a settle up to 1.75 s short passed)."""

    short_s = 0.1


class FallbackSettleWithoutDrift(OwnershipProtocol):
    """The Gateway Aid fallback's settle without its ε term: on an aid node whose Aid refused
    a gateway job, the deciding read after the gateway claim waits 3G + lag from that claim's
    answer, not 3G + ε + lag (every other settle as shipped). An encoder whose clock runs ε
    fast measures the wait short by the drift over it, and nothing else is left to cover it.
    Only the random ``settle-ε-aid-fallback`` family caught it until the ``aid-ε`` frame."""

    def _verify(self, claim_answered: float, lease_end: float
                ) -> Generator[Action, Answer, Outcome | None]:
        if self.claim_via is Tier.GATEWAY and self._claim_tier() is Tier.AID:
            claim_answered -= self.policy.timing.clock_drift
        return (yield from super()._verify(claim_answered, lease_end))


class NoSettleAfterConditionalClaim(OwnershipProtocol):
    """A plausible shortcut: an atomic conditional claim (the database's, or aid's) cannot be
    taken by a second conditional claim, so the settle wait is skipped after one and the
    deciding read made at once. But the legacy gateway's accept is check-then-act and writes
    unconditionally: an accept whose check came before the claim landed overwrites it up to G
    later, whoever wrote it. (Until 2026-12-04 the simulated gateway doubled only its own
    and aid's assignments, and this canary passed every suite.)"""

    def __init__(self, job_id: str, *, me: str, policy: Policy, tiers: Any) -> None:
        super().__init__(job_id, me=me, policy=policy, tiers=tiers)
        if self.claim_via is not Tier.GATEWAY and self.policy.settle:
            self.policy = self.policy.without("settle")


class FallbackSettleWithoutLag(OwnershipProtocol):
    """The settle of the database path used for the monitor's fallback read: an
    infrastructure node whose database read failed asks the monitor after 3G + ε, without the
    monitor's lag, so a lagging "yours" reflects the database from before a competing write
    landed (found by a helper's mutants, 2026-12-04: no family reached the fallback read)."""

    def _lag(self, tier: Tier) -> float:
        if tier is Tier.MONITOR and self.tiers.has(Tier.DATABASE):
            return 0.0
        return super()._lag(tier)


class RecheckWithoutDeadline(OwnershipProtocol):
    """Re-check reads during work sent without the lease end as their deadline: a read that
    hangs until its client gives up (10 s) holds the work past the lease end. (Found by a
    helper's mutants, 2026-12-04: the world never let a read hang, so nothing caught it.)"""

    def _recheck(self, deadline: float | None) -> Generator[
            Action, Answer, tuple[Any, Observation | None, float, float | None]]:
        return (yield from super()._recheck(None))


class HeartbeatWithoutDeadline(OwnershipProtocol):
    """Database and aid heartbeats sent without the lease end as their deadline: one that
    hangs until its client gives up holds the work past the lease end (the gateway's pings
    keep theirs, whose lost replies the world always had)."""

    def _work(self, lease_base: float) -> Generator[Action, Answer, Outcome]:
        work = super()._work(lease_base)
        try:
            action = next(work)
            while True:
                if isinstance(action, Heartbeat) and action.via is not Tier.GATEWAY:
                    action = dataclasses.replace(action, deadline=None)
                action = work.send((yield action))
        except StopIteration as stop:
            outcome: Outcome = stop.value
            return outcome


class ShortSettleAfterUnknownClaim(OwnershipProtocol):
    """The settle one G short after a database claim answered "unknown". An acknowledged
    database write has landed before its answer, so after an OK the third G of the settle
    is to spare (docs/safety-model.md, step 2); but a write whose reply was lost may still be
    applied after the client gave up, up to G after it was sent, and this shortcut counts on
    it having landed too."""

    def _verify(self, claim_answered: float, lease_end: float
                ) -> Generator[Action, Answer, Outcome | None]:
        if self._claim_unknown and self.claim_via is Tier.DATABASE:
            claim_answered -= self.policy.timing.write_delay
        return (yield from super()._verify(claim_answered, lease_end))


class ReleaseBeforeStop(OwnershipProtocol):
    """A graceful shutdown in the wrong order: the job is released first, the work cancelled
    after. The release hands the job to another encoder while ours still runs for up to C
    (S2); the shipped order is cancel, wait for the stop, then release."""

    def _shut_down(self, *, working: bool) -> Generator[Action, Answer, Outcome]:
        reason = "encoder shutting down"
        yield from self._release(reason)
        if working:
            yield CancelWork(reason)
        return Outcome(OutcomeKind.CANCELLED if working else OutcomeKind.SKIPPED,
                       "SHUTDOWN", reason)


class ShutdownWithoutReask(OwnershipProtocol):
    """A graceful shutdown that takes a refused give-back at its word even while the claim's
    write may still be landing (the shipped protocol asks again once it must have landed,
    session 21): the run reports nothing held, then the accept lands and holds the job until
    the gateway's timeout."""

    def _claim_landed_by(self) -> float:
        return -math.inf


class LossNotGivenBack(OwnershipProtocol):
    """A job read as lost during work is cancelled but not given back (session 22's fix
    undone): when the read lagged (the monitor's view, up to Δ old, predating our own claim),
    the job stays ours until the gateway's timeout while the run reports nothing held."""

    def _on_loss(
        self, code: str, reason: str, *, release: bool
    ) -> Generator[Action, Answer, Outcome | None]:
        return (yield from super()._on_loss(code, reason,
                                            release=release and code == "LEASE_EXPIRED"))


class FailsAfterStandIn(OwnershipProtocol):
    """Safe and useless after a fault: an attempt in which a read was answered by the
    monitor's stand-in gives the job back *as failed* (failJob) instead of starting its work.
    Nothing unsafe happens; the gateway gives the job up after five such attempts. L1 wrote
    that off as the faults' loss until a review of the checkers (session 27): the simulated
    work never fails, so a failJob is always the chain's own choice."""

    stand_in_seen = False

    def handle(self, answer: Answer, now: float) -> Step:
        if isinstance(answer, Observed) and answer.observation.job is not None and (
                answer.observation.job.synthetic):
            self.stand_in_seen = True
        return super().handle(answer, now)

    def _work(self, lease_base: float) -> Generator[Action, Answer, Outcome]:
        if not self.stand_in_seen:
            return (yield from super()._work(lease_base))
        yield from self._release("a stand-in answered", failed=True)
        return Outcome(OutcomeKind.FAILED, "GAVE_UP", "a stand-in answered",
                       given_back=bool(self._given_back))


class RejectsAfterStandIn(FailsAfterStandIn):
    """:class:`FailsAfterStandIn` with a plain give-back (``rejectJob``) instead of a failed
    one: safe, and eager where the shipped chain reads again. Since a ``rejectJob`` counts an
    attempt (the contract; the simulated gateway since session 32), five such give-backs while
    the faults last make the gateway give the job up where the shipped chain commits it, and
    L1 excuses that as the faults' loss: its oracle sees a give-back during the faults, as the
    shipped chain's own (a lease that ran out, a confirmation that gave up) are, and cannot
    tell an eager one from a forced one without the chain's knowledge. An open limit of the
    oracle (``conformance/test_regressions.py``, ``EAGER_GIVE_BACK``); the teeth catch it with
    the differential property ``given-up`` (the shipped chain, on the same world, loses no
    job) in the ``stand-in-counted`` family."""

    def _work(self, lease_base: float) -> Generator[Action, Answer, Outcome]:
        if not self.stand_in_seen:
            return (yield from OwnershipProtocol._work(self, lease_base))
        yield from self._release("a stand-in answered")
        return Outcome(OutcomeKind.FAILED, "GAVE_UP", "a stand-in answered",
                       given_back=bool(self._given_back))


class WalksAwayAfterStandIn(FailsAfterStandIn):
    """:class:`FailsAfterStandIn` without the give-back: after a stand-in the run ends
    without working and without giving the job back, saying (truly) that it may still hold
    it. The gateway takes the job back by timeout, each time counting an attempt, and gives
    it up after five: L1 wrote that off as the faults' loss even once failed give-backs were
    not (a review of the L1 oracle, session 27)."""

    def _work(self, lease_base: float) -> Generator[Action, Answer, Outcome]:
        if not self.stand_in_seen:
            return (yield from super()._work(lease_base))
        return Outcome(OutcomeKind.FAILED, "GAVE_UP", "a stand-in answered", held=True)


class DawdlesBeforeClaim(OwnershipProtocol):
    """Wastes protocol time: ``DELAY`` seconds idle between the pre-claim check and the claim.
    Every decision is the shipped one, made later; nothing runs meanwhile. L1 counted from
    ``faults_until`` (900 s in most families) even in a world whose faults were over at once,
    or never began, and the dawdle hid in the quiet rest of the window (a review of the
    checkers, session 27); it counts from the last fault now."""

    DELAY = 600.0

    def _pre_claim(self) -> Generator[Action, Answer, Outcome | None]:
        skipped = yield from super()._pre_claim()
        if skipped is None and isinstance(
                (yield from self._sleep_until(self._now + self.DELAY)), ShutdownRequested):
            self._shutdown = True  # _run then claims nothing
        return skipped


class DawdlesBriefly(DawdlesBeforeClaim):
    """:class:`DawdlesBeforeClaim` idle 150 s, within L1's allowance for other jobs holding
    every encoder (``others``: 277 s in three-job worlds of ``quiet-liveness``), which was
    granted even where every job has an encoder of its own and so nothing waits for another
    (a review of the L1 oracle, session 27); in those worlds it is 0 now."""

    DELAY = 150.0


class DawdlesBeforeTouching(OwnershipProtocol):
    """Wastes protocol time before the first request of each run: ``DELAY`` seconds idle.
    L1 counted a job's time from its first record, which was this chain's own first request,
    so the dawdle was never counted (a review of the checkers, session 27); it counts from
    the job's arrival now (the world's ``arrive`` record)."""

    DELAY = 600.0

    def _run(self) -> Generator[Action, Answer, Outcome]:
        if isinstance((yield from self._sleep_until(self._now + self.DELAY)),
                      ShutdownRequested):
            self._shutdown = True
        return (yield from super()._run())


class CachedRecheck(OwnershipProtocol):
    """The status cache used where it must not be: the deciding reads (verify after the
    settle, every re-check during work) accept a cached answer as old as the pre-claim check
    may. A cached "yours" then stands for the tier as it is now."""

    def _max_age(self, purpose: str) -> float:
        return self.policy.status_cache_s


class FinishPastLease(OwnershipProtocol):
    """The finish before the adversarial review of 2026-12-05: a gateway finish (and its
    retries) sent whenever the work ended, however close to or past the lease's end. The
    gateway's ``finishJob`` is check-then-act: its write, landing up to G after it was sent,
    can commit our result on the job's next assignment (S3)."""

    def _finish_by(self, lease_end: float) -> float:
        return math.inf


class FinishWithoutSendBy(OwnershipProtocol):
    """A gateway finish decided in time but sent with no bound on when it may leave (the
    protocol before the review of the drivers, session 28): a connection that takes seconds
    (``connect_delay_rate``) sends it late, and its check-then-act write, landing up to G
    after that, can commit our result on the job's next assignment (S3). The decision's
    deadline is kept: only ``Finish.send_by`` is dropped."""

    def _finish(self, lease_end: float = math.inf) -> Generator[Action, Answer, Outcome]:
        inner = super()._finish(lease_end)
        answer: Answer | None = None
        while True:
            try:
                action = inner.send(answer)  # (the first send(None) starts it)
            except StopIteration as done:
                outcome: Outcome = done.value
                return outcome
            if isinstance(action, Finish):
                action = dataclasses.replace(action, send_by=None)
            answer = yield action


class PushAsProof(OwnershipProtocol):
    """A push naming us taken as proof of ownership: it ends the settle wait and confirms the
    claim, as if it were the deciding read. (A push reports one write, the first to land; a
    competing write may still land after it.)"""

    def _proves(self, hint: Hinted) -> bool:
        return normalize_did(hint.owner) == self.me


class LatePushEndsSettle(OwnershipProtocol):
    """The flaw the thorough profile found (fixed in 4a4f7d9): the settle wait returned its
    last answer, so a push delivered at or after the wait's end (one that arrived within P of
    it, with the await point after it paused) came back in place of a wake-up, and the verify
    step took it for the deciding read and started work with no read at all."""

    def _sleep_until(self, until: float) -> Generator[Action, Answer, Answer]:
        answer: Answer = Woke()
        while self._now < until:
            answer = yield Sleep(until)
            if isinstance(answer, ShutdownRequested):
                return answer
            if isinstance(answer, Hinted) and self._proves(answer):
                return answer
        return answer


class OlderAssignmentConfirms(OwnershipProtocol):
    """The gap an adversarial review found (fixed 2026-12-02): a claim whose outcome is
    unknown was confirmed by any read naming our DID, the token it sent was not known, and
    the lease was counted from the claim's decision. A read of an *older* assignment of ours
    (a crashed process's, offered to us again by ``myJob``) then confirmed a claim that
    matched nothing, and the work ran on a lease nothing had renewed."""

    def handle(self, answer: Answer, now: float) -> Step:
        if isinstance(self._awaiting, Claim) and isinstance(answer, WriteAnswered) and (
                answer.outcome is WriteOutcome.UNKNOWN):
            answer = WriteAnswered(WriteOutcome.UNKNOWN, detail=answer.detail)  # token unsaid
        return super().handle(answer, now)

    def _shows_our_claim(self, obs: Observation) -> bool:
        return True


class BatchMissingAsAvailable(OwnershipProtocol):
    """A batch answer read wrongly: an id missing from it (the server drops ids it cannot look
    up, and answers ``{}`` when the gateway is down) taken as "queued", so the pre-claim check
    passes on a job nobody said was free."""

    @staticmethod
    def screen(tier: Tier, asked: list[str], answered: dict[str, str]) -> dict[str, Observation]:
        return screened(tier, asked, {job_id: answered.get(job_id, "queued") for job_id in asked})


class FinishesFailedWork(OwnershipProtocol):
    """A work that failed on its own (``WorkEnded(False)``: ffmpeg exited non-zero) taken for
    one that finished: the job is committed, with whatever output the failed run left,
    instead of given back as failed. Safe by S1-S3 (the owner commits its own assignment);
    the lemma ``finished-work`` catches it."""

    def handle(self, answer: Answer, now: float) -> Step:
        if isinstance(answer, WorkEnded) and not answer.succeeded:
            answer = WorkEnded(True)
        return super().handle(answer, now)


class EncodesTwice(OwnershipProtocol):
    """A work that finished is run once more before the job is committed (a second pass, say),
    and a failure of either run gives the job back as failed. Safe, and wasteful: each claim
    is exposed to the work's failures twice, and each give-back as failed costs an attempt
    towards the gateway's fifth-attempt rule, so while the faults last the gateway gives up
    jobs the shipped chain commits. L1's oracle excused every give-back as failed that
    followed a failure of the owner's work since its claim, a first run that had finished
    notwithstanding (an adversarial review, session 46): a result the chain had and threw
    away is its own loss, whatever the run after it did."""

    def __init__(self, job_id: str, *, me: str, policy: Policy, tiers: Any) -> None:
        super().__init__(job_id, me=me, policy=policy, tiers=tiers)
        self._passes = 0

    def handle(self, answer: Answer, now: float) -> Step:
        if isinstance(answer, WorkEnded) and answer.succeeded and self._passes == 0:
            self._passes = 1
            return Step(StartWork())
        if isinstance(answer, WorkStarted) and self._passes == 1:
            # The second run has begun: the protocol, still waiting in its work, hears the
            # run's first report (as the work's own first event says).
            self._passes = 2
            answer = PhaseChanged("download")
        return super().handle(answer, now)


class BackoffPastLease(OwnershipProtocol):
    """A retry's backoff wait that is not clamped to the lease end: while a re-check is being
    retried, the work's next wake-up is the retry (or the next ping), and a lease that ends
    in between is noticed only then."""

    @staticmethod
    def _wake(next_ping: float, next_read: float, lease_end: float, *,
              retrying: bool) -> float:
        return min(next_ping, next_read) if retrying else min(next_ping, next_read, lease_end)


class _FirstCarryingPing(ProgressClock):
    """The old one-ping rule: once a ping carrying ``v`` counts, the clock moves to the
    decision of the *first* ping that carried ``v``."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.first: dict[tuple[float, float], float] = {}

    def sent(self, decided: float, carried: tuple[float, float]) -> None:
        self.first.setdefault(carried, decided)

    def counted(self, decided: float, carried: tuple[float, float]) -> None:
        if carried != (0.0, 0.0):
            self.base = max(self.base, self.first[carried])


class ProgressFromOnePing(OwnershipProtocol):
    """The hazard a review found in the no-progress clock (fixed 2026-12-03): one counted
    ping carrying ``v`` moved the clock to the first ping of this attempt that carried ``v``.
    A late ping of an earlier attempt by our DID, carrying the same ``v``, can land on the new
    assignment first: the gateway's last change is then earlier than the clock says, and a
    stuck job runs past its no-progress reassignment."""

    progress_clock = _FirstCarryingPing
    start_progress = (0.0, 0.0)  # before the start marker


class ProgressWithoutStartMarker(OwnershipProtocol):
    """The two-value clock with pings carrying none until the work reports progress (the
    first version of the fix, 2026-12-03): the work's first report makes no pair, so its
    first two reports must both be counted within N - margin of the claim. Safe, but work
    that reports progress slowly is cancelled in every attempt (found by a review)."""

    start_progress = (0.0, 0.0)


def _formula_without(term: str) -> type[TimingModel]:
    """A timing model whose settle, lease, proof or finish formula drops ``term`` (one term,
    nothing else)."""

    @dataclass(frozen=True, slots=True)
    class Formula(TimingModel):
        def settle_delay(self, lag: float) -> float:
            g = 2 * self.write_delay if term == "settle:G" else 3 * self.write_delay
            drift = 0.0 if term == "settle:ε" else self.clock_drift
            return g + drift + (0.0 if term == "settle:lag" else lag)

        def lease_margin(self, span: float | None = None) -> float:
            drift = self.clock_drift if span is None else self.drift_over(span)
            terms = {"ε": drift, "P": self.pause, "C": self.cancel_latency}
            return sum(v for k, v in terms.items() if term != f"lease:{k}")

        def proof_delay(self, lag: float) -> float:
            terms = {"lag": lag, "P": self.pause, "G": self.write_delay}
            return sum(v for k, v in terms.items() if term != f"proof:{k}")

        def proof_delay_from_answer(self, lag: float) -> float:
            if term == "proof:answer":
                return -math.inf  # proven from the ping's decision alone (before session 31)
            terms = {"lag": lag, "G": self.write_delay}
            return sum(v for k, v in terms.items() if term != f"proof:{k}")

        def finish_slack(self) -> float:
            # The reassignment's P + C after the lease's end, less the finish's own way
            # there: P from its decision to its send, G from its send to its landing.
            terms = {"P": self.pause, "G": self.write_delay}
            return self.pause + self.cancel_latency - sum(
                v for k, v in terms.items() if term != f"finish:{k}")

        def lease_horizons(self) -> tuple[float, float]:
            if term != "lease:εN/T":
                return TimingModel.lease_horizons(self)
            # The no-progress clock's margin with the drift over one T (ε), not over N.
            return (self.reassign_timeout - self.lease_margin(),
                    self.progress_timeout - self.lease_margin())

    Formula.__name__ = Formula.__qualname__ = f"TimingModelWithout[{term}]"
    return Formula


@dataclass(frozen=True)
class Misbelief:
    """The hardened chain with a wrong timing model, derived from the world's true one."""

    name: str
    believe: Callable[[TimingModel], TimingModel]

    def policy(self, world_timing: TimingModel) -> Policy:
        return Policy.hardened(self.believe(world_timing))

    @property
    def identifier(self) -> str:
        """The name as a Python identifier (``believes_Δ_smaller``)."""
        return self.name.replace("-", "_")

    @property
    def protocol_spec(self) -> str:
        """The ``--protocol`` that replays this misbelief: ``sim replay --chain hardened
        --protocol conformance.canaries:believing.<identifier>``."""
        return f"{__name__}:believing.{self.identifier}"

    def protocol(self, job_id: str, *, me: str, policy: Policy, tiers: Any) -> OwnershipProtocol:
        """A protocol factory: the shipped protocol, told the misbelieved timing model (the
        world's true one is the ``policy`` the simulator passes)."""
        return OwnershipProtocol(job_id, me=me, policy=self.policy(policy.timing), tiers=tiers)


def _scaled(field: str, factor: float) -> Callable[[TimingModel], TimingModel]:
    def believe(t: TimingModel) -> TimingModel:
        return dataclasses.replace(t, **{field: getattr(t, field) * factor})
    return believe


def _dropped(term: str) -> Callable[[TimingModel], TimingModel]:
    model = _formula_without(term)

    def believe(t: TimingModel) -> TimingModel:
        values: dict[str, Any] = {f.name: getattr(t, f.name) for f in dataclasses.fields(t)}
        return model(**values)
    return believe


#: Each bound misbelieved alone (a quarter of the truth; T and N four times too long), then each
#: term of the settle and lease formulas, the G of the proof of a gateway ping, and each term of
#: the gateway finish's deadline, dropped alone.
MISBELIEFS = [
    Misbelief("believes-Δ-smaller", _scaled("monitor_lag", 0.25)),
    Misbelief("believes-G-smaller", _scaled("write_delay", 0.25)),
    Misbelief("believes-P-smaller", _scaled("pause", 0.25)),
    Misbelief("believes-ε-smaller", _scaled("clock_drift", 0.25)),
    Misbelief("believes-C-smaller", _scaled("cancel_latency", 0.25)),
    Misbelief("believes-T-larger", _scaled("reassign_timeout", 4.0)),
    Misbelief("believes-N-larger", _scaled("progress_timeout", 4.0)),
    Misbelief("settle-without-a-G", _dropped("settle:G")),
    Misbelief("settle-without-ε", _dropped("settle:ε")),
    Misbelief("settle-without-lag", _dropped("settle:lag")),
    Misbelief("lease-without-ε", _dropped("lease:ε")),
    Misbelief("lease-without-P", _dropped("lease:P")),
    Misbelief("lease-without-C", _dropped("lease:C")),
    # The drift term of the no-progress clock's margin taken over one T (ε) instead of over N
    # (ε·N/T): the term the progress rule's first search found missing (2026-12-03), with no
    # tooth of its own until a helper's mutants found it nearly never caught (2026-12-04).
    Misbelief("progress-margin-with-flat-ε", _dropped("lease:εN/T")),
    # Of the proof formula only G: inside the model its lag and P terms are covered by the
    # lease margin (``docs/safety-model.md``, "The proof of a gateway ping").
    Misbelief("proof-without-G", _dropped("proof:G")),
    # The gateway finish's deadline (``TimingModel.finish_slack``): without the G its late
    # write takes to land, and without the P between its decision and its send (the send
    # taken for the decision). Neither had a test that failed until 2026-12-05.
    Misbelief("finish-without-G", _dropped("finish:G")),
    Misbelief("finish-without-P", _dropped("finish:P")),
]

def proof_from_the_decision(t: TimingModel) -> TimingModel:
    """``t`` with a gateway ping proven by a read P + G + lag after the ping's decision
    alone, as before session 31: it assumes the ping left within P of its decision, which
    a ping that waited seconds for its connection did not (its answer is the only proof of
    when it left). Not a misbelief of a bound: a rule the shipped protocol had."""
    return _dropped("proof:answer")(t)


#: Each misbelief as a protocol factory, by identifier, for ``--protocol`` (see
#: :attr:`Misbelief.protocol_spec`).
believing = types.SimpleNamespace(**{m.identifier: m.protocol for m in MISBELIEFS})


# --------------------------------------------------------------------------- old loop rules


@dataclass(frozen=True)
class _UncappedIdle(LoopPolicy):
    """The idle wait as it was before session 21's review: the base capped at ``idle_max_s``
    and the jitter applied after, so a wait could reach ``(1 + jitter) × idle_max_s``."""

    def idle_delay(self, empty_polls: int, u: float) -> float:
        exponent = max(0, empty_polls - 1)
        base = self.idle_max_s if exponent > 64 else min(
            self.idle_max_s, self.idle_s * self.idle_factor ** exponent)
        return base * (1.0 - self.jitter + 2.0 * self.jitter * u)


class IdleWaitPastItsCap(PollSchedule):
    """The encoder loop with :class:`_UncappedIdle`'s waits: an idle encoder may poll up to
    half its longest stated wait late, which L1's hand-out (``max(κ·idle_max, 5)``) does not
    allow for; safe, not live."""

    def __init__(self, policy: LoopPolicy, rng: Any) -> None:
        super().__init__(_UncappedIdle(**dataclasses.asdict(policy)), rng)


class NeverRetries(PollSchedule):
    """A cool-down that never ends: a job this encoder gave up on (skipped because the lagging
    monitor still showed it taken, say) is never tried by it again. Safe; live only while
    another encoder takes the job."""

    def ended(self, job_id: str, now: float, *, processed: bool, code: str,
              retry_after: float | None = None) -> None:
        super().ended(job_id, now, processed=processed, code=code, retry_after=retry_after)
        if not processed:
            self.cooling[job_id] = math.inf


class RetryAfterUncapped(PollSchedule):
    """``Retry-After`` honoured in full, however long: a server (or a proxy in front of it)
    that answers "come back in 10^5 s" stops the encoder for a day, where the shipped loop
    waits at most ``MAX_RETRY_AFTER_S`` (the rule an adversarial review added in session 21,
    after a hint of 10^12 s stopped the loop for good). Safe; not live."""

    def poll_failed(self, source: str, now: float, *, retry_after: float | None = None) -> None:
        super().poll_failed(source, now, retry_after=retry_after)
        if retry_after is not None and retry_after > 0:
            # Every source of the source's server held, as the shipped loop holds them
            # (session 46), but for the whole hint.
            server = self._server.get(source, source)
            self._not_before[server] = max(self._not_before.get(server, -math.inf),
                                           now + retry_after)

    def ended(self, job_id: str, now: float, *, processed: bool, code: str,
              retry_after: float | None = None) -> None:
        super().ended(job_id, now, processed=processed, code=code, retry_after=retry_after)
        if retry_after is not None and retry_after > 0:
            self._hold_until = max(self._hold_until, now + retry_after)

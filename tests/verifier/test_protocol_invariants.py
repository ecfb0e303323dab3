"""The protocol against a random adversarial driver, judged step by step from the outside.

Every other protocol test scripts one world. Here a seeded driver answers each action with any
answer the step types allow, at random instants: reads that say ours, another's, unowned or
fail; writes OK, unknown or refused; waits ended early by pushes naming anyone, progress and
phase reports, shutdown requests and the work's end; and a pause between an answer and its
handling (the driver's await point). The checks below are the safety model's rules stated on
the action stream alone, with no access to the protocol's state:

* **deciding read**: work starts only directly after a verify read that was answered, and
  that was decided at least the settle delay (``3G + ε + lag`` of the tier read) after the
  claim's answer was handled;
* **lease**: while the work runs, once the lease has ended (``lease_base + T − (ε + P + C)``;
  ``lease_base`` = the decision to claim, then the decision of every ping proven to count: a
  database heartbeat by its OK, a gateway ping by a later read decided ``lag + P + G`` after
  it that says ours) the next action is the cancellation, and no request or wait of the work
  outlives the lease;
* **release and finish**: no release while the work runs; every finish is fenced;
* **unknown claim**: after a claim whose outcome is unknown, work starts only on a read of the
  token the claim sent (reads of "ours" may show an older assignment of our DID, ``tok0``):
  never after a claim without a token.

The canaries ``LatePushEndsSettle`` (the flaw of 4a4f7d9, a push taken for the settle's end) and
``OlderAssignmentConfirms`` (the gap of 2026-12-02) show the checks can fire: the same driver
catches them.
"""

from __future__ import annotations

import random

import pytest

from conformance.canaries import LatePushEndsSettle, OlderAssignmentConfirms
from verifier import GatewayMonitorJob, Observation, Policy, Tier, TierSet, TimingModel
from verifier.protocol import (
    Action,
    Answer,
    CancelWork,
    Claim,
    Done,
    Finish,
    Heartbeat,
    Hinted,
    Observe,
    Observed,
    OwnershipProtocol,
    PhaseChanged,
    Progressed,
    Release,
    ShutdownRequested,
    Sleep,
    StartWork,
    TierFailed,
    Woke,
    WorkEnded,
    WorkStarted,
    WorkStopped,
    WriteAnswered,
    WriteOutcome,
)

ME, OTHER = "did:key:z6MkMe", "did:key:z6MkOther"
#: N far beyond every run: the progress clock is the lease tests' (test_protocol.py) to judge.
TIMING = TimingModel(monitor_lag=5, write_delay=2, pause=2, clock_drift=1, recheck_interval=10,
                     cancel_latency=5, reassign_timeout=60, confirm_timeout=30,
                     retry_interval=1, progress_timeout=100_000)
POLICY = Policy.hardened(TIMING)
TIERS = {"infra": TierSet(database=True, monitor=True, gateway=True),
         "community": TierSet(monitor=True, gateway=True)}
RUNS = 1000


def _read(tier: Tier, owner: str | None, status: str, token: str | None) -> Observed:
    job = GatewayMonitorJob(id="j1", status=status, assigned_to=owner)
    return Observed(Observation(tier, job, token))


def _lag(tier: Tier) -> float:
    return TIMING.monitor_lag if tier is Tier.MONITOR else 0.0


class _Run:
    """One adversarial run: answers actions and judges each next action."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.now = 0.0
        self.working = False
        self.shutdown_sent = False
        self.claim_decided: float | None = None
        self.claim_answered: float | None = None
        self.claim_unknown = False
        self.claim_token: str | None = None
        self.lease_base: float | None = None
        self.gateway_pings: list[float] = []  # decisions of gateway pings answered OK

    def answer(self, action: Action, decided: float) -> Answer:
        """A random answer to ``action`` (decided at ``decided``); moves the clock."""
        r = self.rng
        token = "tok" if getattr(action, "tier", getattr(action, "via", None)) is (
            Tier.DATABASE) else None
        if isinstance(action, Observe):
            self.now += r.random() * 1.5
            if action.deadline is not None and self.now > action.deadline:
                self.now = max(action.deadline, decided)
                return TierFailed(action.tier, "deadline")
            if action.purpose == "pre-claim":
                return _read(action.tier, None, "queued", None)
            k = r.random()
            if k < 0.6:
                # Ours: this claim's assignment or, now and then, an older one of our DID.
                mine = token if token is None or r.random() < 0.8 else "tok0"
                return _read(action.tier, ME, r.choice(["assigned", "running"]), mine)
            if k < 0.7:
                return _read(action.tier, OTHER, "assigned", "tok2" if token else None)
            if k < 0.8:
                return _read(action.tier, None, "queued", None)
            if k < 0.85:
                return _read(action.tier, ME, "queued", token)
            return TierFailed(action.tier, "500")
        if isinstance(action, Claim):
            self.now += r.random()
            return WriteAnswered(r.choice([WriteOutcome.OK] * 5 + [WriteOutcome.UNKNOWN]),
                                 token=token)
        if isinstance(action, Heartbeat):
            self.now += r.random() * 1.5
            if action.deadline is not None and self.now > action.deadline:
                self.now = max(action.deadline, decided)
                return WriteAnswered(WriteOutcome.UNKNOWN, detail="deadline")
            outcome = r.choice([WriteOutcome.OK] * 6 + [WriteOutcome.UNKNOWN] * 3
                               + [WriteOutcome.REFUSED])
            if outcome is WriteOutcome.OK and self.lease_base is not None:
                if action.via is Tier.GATEWAY:
                    self.gateway_pings.append(decided)  # counts only once proven
                else:
                    self.lease_base = max(self.lease_base, decided)  # fenced: counted
            return WriteAnswered(outcome)
        if isinstance(action, (Finish, Release)):
            self.now += r.random()
            return WriteAnswered(r.choice(list(WriteOutcome)))
        if isinstance(action, StartWork):
            self.now += r.random() * 0.5
            self.working = True
            return WorkStarted()
        if isinstance(action, CancelWork):
            self.now += r.random() * TIMING.cancel_latency
            self.working = False
            return WorkStopped()
        assert isinstance(action, Sleep), action
        end = max(action.until, self.now)
        if r.random() < 0.5:
            self.now = end
            return Woke()
        # Ended early, or late (up to 1 s past its end), by something else.
        self.now += r.random() * (end - self.now + 1.0)
        choices: list[Answer] = [Hinted(r.choice([ME, OTHER, None]),
                                        r.choice(["assigned", "running", "queued"]))]
        if self.working:
            choices += [Progressed(r.random() * 100), WorkEnded(r.random() < 0.8),
                        PhaseChanged(r.choice(["download", "encode", "upload"]))]
        if not self.shutdown_sent and r.random() < 0.2:
            choices.append(ShutdownRequested())
        answer = r.choice(choices)
        self.shutdown_sent |= isinstance(answer, ShutdownRequested)
        if isinstance(answer, WorkEnded):
            self.working = False
        return answer

    def learn(self, action: Action, decided: float, answer: Answer) -> None:
        """What the answer proves about the lease, by the safety model's rules."""
        if isinstance(action, Claim):
            self.claim_decided, self.claim_answered = decided, self.now
            self.lease_base = decided
            assert isinstance(answer, WriteAnswered)
            self.claim_unknown = answer.outcome is WriteOutcome.UNKNOWN
            self.claim_token = answer.token
        if (isinstance(action, Observe) and action.purpose == "recheck"
                and isinstance(answer, Observed) and answer.observation.owner == ME
                and answer.observation.status in ("assigned", "running")
                and self.lease_base is not None):
            seen = decided - _lag(action.tier)
            for ping in self.gateway_pings:
                # To within rounding (1 ns, as the lease end is judged): the protocol sums
                # ``ping + (lag + P + G)``, the instant its proof read was scheduled for.
                if seen + 1e-9 >= ping + TIMING.pause + TIMING.write_delay:
                    self.lease_base = max(self.lease_base, ping)

    def judge(self, previous: tuple[float, Action, Answer] | None, action: Action) -> None:
        """The next action, against the rules (raises AssertionError)."""
        if isinstance(action, StartWork):
            assert previous is not None
            decided, read, answer = previous
            assert isinstance(read, Observe) and read.purpose == "verify", (
                f"work started after {read!r} answered {answer!r}, not after a deciding read")
            assert isinstance(answer, Observed), f"work started on {answer!r}"
            assert self.claim_answered is not None
            settle_end = self.claim_answered + TIMING.settle_delay(_lag(read.tier))
            assert decided >= settle_end - 1e-9, (
                f"deciding read decided at {decided}, before the settle end {settle_end}")
            if self.claim_unknown:
                shown = answer.observation.token
                assert self.claim_token is not None and shown == self.claim_token, (
                    f"unknown claim (token {self.claim_token}) confirmed by a read of "
                    f"token {shown}: maybe an older assignment of ours")
        if isinstance(action, Release):
            assert not self.working, f"release at {self.now} while the work runs"
        if isinstance(action, Finish):
            assert action.fenced, "unfenced finish"
        if self.working and self.lease_base is not None:
            lease_end = self.lease_base + TIMING.lease_budget()
            if self.now >= lease_end:
                assert isinstance(action, CancelWork), (
                    f"still working at {self.now}, lease ended {lease_end}: next {action!r}")
            if isinstance(action, (Observe, Heartbeat)):
                assert action.deadline is not None and action.deadline <= lease_end + 1e-9, (
                    f"request during work with deadline {action.deadline} > lease end "
                    f"{lease_end}")
            if isinstance(action, Sleep):
                assert action.until <= lease_end + 1e-9, (
                    f"wait during work until {action.until} > lease end {lease_end}")


def adversarial_run(seed: int, tiers: TierSet,
                    protocol: type[OwnershipProtocol] = OwnershipProtocol) -> None:
    """Drive one attempt to its end, judging every action; raises AssertionError on a
    broken rule (its message names the seed)."""
    run = _Run(random.Random(seed))
    attempt = protocol("j1", me=ME, policy=POLICY, tiers=tiers)
    step = attempt.start(run.now)
    previous: tuple[float, Action, Answer] | None = None
    for _ in range(1000):
        action = step.action
        if isinstance(action, Done):
            return
        try:
            run.judge(previous, action)
        except AssertionError as broken:
            raise AssertionError(f"seed {seed}: {broken}") from None
        decided = run.now
        answer = run.answer(action, decided)
        # The driver's await point: a pause between the answer and its handling.
        run.now += run.rng.choice([0.0, 0.0, 0.0, run.rng.random() * TIMING.pause])
        run.learn(action, decided, answer)
        previous = (decided, action, answer)
        step = attempt.handle(answer, run.now)
    raise AssertionError(f"seed {seed}: the attempt did not end within 1,000 steps")


@pytest.mark.parametrize("node", sorted(TIERS))
def test_the_hardened_protocol_keeps_every_rule_against_a_random_driver(node: str) -> None:
    for seed in range(RUNS):
        adversarial_run(seed, TIERS[node])


@pytest.mark.parametrize("node", sorted(TIERS))
def test_the_random_driver_catches_a_push_taken_for_the_settle_end(node: str) -> None:
    """The checks can fire: the canary of the flaw found on 2026-12-02 breaks the deciding-read
    rule within the same seeds."""
    caught = 0
    for seed in range(RUNS):
        try:
            adversarial_run(seed, TIERS[node], protocol=LatePushEndsSettle)
        except AssertionError as broken:
            assert "deciding read" in str(broken) or "work started on" in str(broken), broken
            caught += 1
    assert caught > 0


@pytest.mark.parametrize("node", sorted(TIERS))
def test_the_random_driver_catches_an_older_assignment_confirming_an_unknown_claim(
        node: str) -> None:
    caught = 0
    for seed in range(RUNS):
        try:
            adversarial_run(seed, TIERS[node], protocol=OlderAssignmentConfirms)
        except AssertionError as broken:
            assert "unknown claim" in str(broken), broken
            caught += 1
    assert caught > 0

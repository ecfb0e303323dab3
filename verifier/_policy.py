"""Chains as data: which tiers a node has, the timing model, and the policy that uses them.

A *policy* decides how the one protocol in :mod:`verifier.protocol` behaves; it holds no code.
Three families exist:

``documented``
    exactly the documented claim flow (``docs/contract.md``): pre-claim check through the
    monitor, ``acceptJob`` through the gateway, **one** verification pass through the highest
    enabled tier, process; pings only while encoding; no re-check, no fence beyond the gateway's.
``trust-gateway``
    no verification at all: the gateway's "OK" is taken as ownership.
``hardened`` (the default)
    meets S1–S3 of ``docs/safety-model.md`` inside :class:`TimingModel`; each of its safety
    steps can be switched off alone (:meth:`Policy.without`) to measure what it buys (the
    ablation) and to give the conformance suites canaries that must be caught.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "HARDENING_STEPS",
    "TIERS_BY_STRENGTH",
    "TIER_EVENT",
    "TIER_STRENGTH",
    "Policy",
    "Tier",
    "TierSet",
    "TimingModel",
    "builtin_chain_names",
]


class Tier(StrEnum):
    """A source of ownership facts, strongest first in :data:`TIER_STRENGTH`."""

    DATABASE = "database"
    MONITOR = "monitor"
    GATEWAY = "gateway"
    AID = "aid"


#: Strongest first. The database is ground truth; aid reads it directly; the monitor mirrors
#: it with lag; the legacy gateway's ``jobstatus`` is known to lie. Only the order means
#: anything, so it is written as one (mutation testing, session 38: every renumbering that
#: kept the order passed, as it must).
TIERS_BY_STRENGTH: Final = (Tier.DATABASE, Tier.AID, Tier.MONITOR, Tier.GATEWAY)
#: Lower is stronger.
TIER_STRENGTH: Final = {tier: rank for rank, tier in enumerate(TIERS_BY_STRENGTH)}
#: The documented service's event codes (``TIER_1_VERIFICATION``, ...) of the tiers that can
#: confirm ownership; aid confirms nothing (it claims and writes).
TIER_EVENT: Final = {Tier.DATABASE: 1, Tier.MONITOR: 2, Tier.GATEWAY: 3}


@dataclass(frozen=True, slots=True)
class TierSet:
    """The tiers a node has configured. Infrastructure nodes have the database; community nodes
    do not. The gateway is always present (it hands out the jobs)."""

    database: bool = False
    monitor: bool = False
    gateway: bool = True
    aid: bool = False

    def has(self, tier: Tier) -> bool:
        return bool(getattr(self, tier.value))


@dataclass(frozen=True, slots=True)
class TimingModel:
    """The bounds of ``docs/safety-model.md``, in seconds. Every one is a named setting.

    Inside these bounds the hardened chain guarantees S1/S2; S3 needs none of them (the fence).
    """

    #: Δ: the monitor view's maximum lag behind the database.
    monitor_lag: float = 5.0
    #: G: the longest a gateway/aid write can land after its request was sent.
    write_delay: float = 2.0
    #: P: the longest process pause of an encoder.
    pause: float = 2.0
    #: ε: the largest clock drift between an encoder and the gateway, over one lease.
    clock_drift: float = 1.0
    #: R: the interval of pings and ownership re-checks during work.
    recheck_interval: float = 10.0
    #: C: the longest it takes the user's work to stop after cancellation.
    cancel_latency: float = 5.0
    #: T: the gateway's reassignment timeout (no ping for T → back to the queue).
    reassign_timeout: float = 60.0
    #: N: the gateway's second reassignment rule: no *progress change* for N → back to the
    #: queue, even while pings keep arriving (``docs/contract.md``, "Reassignment").
    progress_timeout: float = 300.0
    #: How long, after the settle delay, to keep asking for a confirming answer.
    confirm_timeout: float = 25.0
    #: Pause between two attempts at an unanswered read or an unknown write.
    retry_interval: float = 1.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            # Finite too: NaN passes every comparison's "else", and an infinite bound makes
            # the consistency checks of :meth:`problems` vacuous (found by a review).
            if not isinstance(value, int | float) or isinstance(value, bool) or (
                    not math.isfinite(value)) or value < 0:
                raise ValueError(f"timing bound {f.name} must be a finite non-negative number")
        if self.recheck_interval <= 0 or self.retry_interval <= 0:
            raise ValueError("recheck_interval and retry_interval must be positive")

    def settle_delay(self, lag: float) -> float:
        """Wait after sending a claim before a read (of a view lagging by ``lag``) can decide.

        Our write lands at ``L <= sent + G``. A competing last-writer-wins accept can pass the
        gateway's check-then-act only if its check read the job unowned: at most G before it
        was sent, so it was sent before ``L + G`` and lands before ``L + 2G <= sent + 3G``.
        A read reflecting the database at or after that instant sees the final owner; drift ε
        widens the wait, and a view lagging by ``lag`` must be read that much later.
        """
        return 3 * self.write_delay + self.clock_drift + lag

    def proof_delay(self, lag: float) -> float:
        """How long after a gateway ping was *decided* a read (of a view lagging by ``lag``)
        must be decided to prove the ping landed on our assignment: the ping left within P of
        its decision, landed within G of leaving, and the view trails by ``lag``
        (``docs/safety-model.md``, "Lease")."""
        return lag + self.pause + self.write_delay

    def proof_delay_from_answer(self, lag: float) -> float:
        """How long after a gateway ping was *answered* OK a read (of a view lagging by
        ``lag``) must be decided to prove the ping landed on our assignment: the reply proves
        the ping had left, whenever it was decided (a ping can wait seconds for its
        connection), and it landed within G of leaving. Both this and :meth:`proof_delay`
        must have passed."""
        return lag + self.write_delay

    def lease_margin(self, span: float | None = None) -> float:
        """How long before a reassignment clock of length ``span`` (default T) runs out the
        work must already be cancelled.

        The gateway reassigns ``span`` after the event it counts from, by its clock: ours may
        diverge by the drift over that span (ε over T: :meth:`drift_over`); a pause of ``P``
        can delay our reaction, and stopping takes ``C``.
        """
        drift = self.clock_drift if span is None else self.drift_over(span)
        return drift + self.pause + self.cancel_latency

    def finish_slack(self) -> float:
        """How long after the lease's end a gateway finish may still be decided (negative:
        how long before it); ``docs/safety-model.md``, "S3".

        The gateway reassigns no sooner than the lease margin's P + C after the lease's end
        (its ε is the clocks'). A finish leaves within P of its *decision* and its write lands
        within G of leaving: decided at d, it has landed by d + P + G, before that reassignment
        while d <= lease end + (P + C) - (P + G). The two P cancel; measured from the send
        instead of the decision, the deadline would be P too late."""
        return self.cancel_latency - self.write_delay

    def drift_over(self, span: float) -> float:
        """How far an encoder's clock can diverge from the gateway's over ``span``: ε is the
        divergence over one T, i.e. a drift *rate* of ε/T. Over the no-progress clock N the
        divergence is ε·N/T (5 s with the defaults, not 1 s: the first adversarial run of the
        progress rule found that margin missing)."""
        if self.reassign_timeout <= 0:
            return self.clock_drift
        return self.clock_drift * span / self.reassign_timeout

    def lease_horizons(self) -> tuple[float, float]:
        """How long after the last counted ping, and after the last counted progress change,
        the work must be stopped: each clock less its own margin."""
        t, n = self.reassign_timeout, self.progress_timeout
        return t - self.lease_margin(), n - self.lease_margin(n)

    def lease_budget(self) -> float:
        """The shorter of the two: a healthy lease must be renewable within either."""
        return min(self.lease_horizons())

    def problems(self) -> list[str]:
        """Inconsistencies that would make the hardened chain unable to keep a healthy lease."""
        found = []
        budget = self.lease_budget()
        # Every bound the budget and the settle delay are made of is named in each sentence:
        # ``Settings.from_env`` blames the first named variable the operator set, and with
        # only the left-hand side named, VERIFIER_CANCEL_LATENCY_S=20 was reported as
        # VERIFIER_CONFIRM_TIMEOUT_S, a variable nobody had touched (mutation testing,
        # session 38).
        within = ("below the lease budget min(reassign_timeout - (clock_drift + pause + "
                  "cancel_latency), progress_timeout - (clock_drift * progress_timeout / "
                  f"reassign_timeout + pause + cancel_latency)) = {budget:g}s")
        if self.recheck_interval + self.write_delay >= budget:
            found.append(f"recheck_interval + write_delay must be {within}, or a healthy "
                         "encoder cancels its own work")
        # A gateway ping is proven by a read at least Δ + P + G after it (docs/safety-model.md,
        # "Lease"): the lease must outlast a ping interval plus that wait, or a healthy
        # gateway-claimed job loses its lease.
        proof = self.proof_delay(self.monitor_lag)
        if self.recheck_interval + proof >= budget:
            found.append(f"recheck_interval + monitor_lag + pause + write_delay must be "
                         f"{within}, or a healthy gateway-claimed job loses its lease between "
                         "two proven pings")
        if self.settle_delay(self.monitor_lag) + self.confirm_timeout + proof >= budget:
            found.append(f"the settle delay (3 * write_delay + clock_drift + monitor_lag) + "
                         f"confirm_timeout + monitor_lag + pause + write_delay must be "
                         f"{within}, or the job can be reassigned before its first ping is "
                         "proven")
        return found


#: The hardened chain's safety steps, by the names used in ``hardened-without-<step>``.
HARDENING_STEPS: Final = (
    "settle",            # wait for in-flight writes and monitor lag before the deciding read
    "absent-is-wait",    # null/absent/unknown owner means wait, never "mine"
    "tier-precedence",   # a weaker tier never overrides a stronger tier's "not yours"
    "recheck",           # ownership re-checked every R during work
    "phase-heartbeats",  # pings in every phase (download, encode, upload), not only encode
    "lease",             # self-cancel before the gateway could reassign (T - margins)
    "cancel",            # actually cancel the user's work when ownership is lost
    "fence",             # finish conditional on owner and assignment
    "conditional-claim", # database claim is an atomic conditional update, not a blind write
)


@dataclass(frozen=True, slots=True)
class Policy:
    """How the protocol behaves. Build one with :meth:`hardened`, :meth:`documented`, ...

    Fields are the individual behaviours; the constructors combine them. Policies are values:
    hashable, comparable, printable in reports.
    """

    name: str
    timing: TimingModel = dataclasses.field(default_factory=TimingModel)
    #: Pre-claim availability check through the monitor (or the strongest read tier).
    pre_claim_check: bool = True
    #: A failed pre-claim read skips the job (True) or raises → failed (documented).
    pre_claim_error_skips: bool = True
    #: Verify ownership after the claim at all (False: trust the gateway).
    verify: bool = True
    #: One verification pass (documented) vs. retry until confirmed or confirm_timeout.
    verify_retries: bool = True
    #: Claim through the strongest write tier (database/aid) vs. always the gateway.
    claim_via_strongest: bool = True
    #: May the legacy gateway's ``jobstatus`` confirm ownership? (It is known to lie.)
    gateway_can_confirm: bool = False
    # The hardening steps (all True in ``hardened``).
    settle: bool = True
    absent_is_wait: bool = True
    tier_precedence: bool = True
    recheck: bool = True
    phase_heartbeats: bool = True
    lease: bool = True
    cancel: bool = True
    fence: bool = True
    conditional_claim: bool = True
    #: Release a job we may hold but will not process, so it returns to the queue quickly.
    release_on_give_up: bool = True
    # Cost features (docs/enhancements.md). Off by default: a scenario or a deployment turns
    # them on. None of them may weaken S1-S3: the protocol decides where each applies.
    #: How old (seconds, driver clock) a cached tier answer may be for the pre-claim check,
    #: the one read safety never rests on (0: no cache). Deciding reads are never cached.
    status_cache_s: float = 0.0
    #: Retries wait a full-jitter exponential delay (``u * min(cap, retry_interval * 2**k)``,
    #: cap = max(R, 8 retry intervals), never less than a ``Retry-After`` hint) instead of a
    #: fixed ``retry_interval``.
    backoff: bool = False

    @classmethod
    def hardened(cls, timing: TimingModel | None = None) -> Policy:
        return cls(name="hardened", timing=timing or TimingModel())

    @classmethod
    def documented(cls, timing: TimingModel | None = None) -> Policy:
        return cls(
            name="documented",
            timing=timing or TimingModel(),
            pre_claim_error_skips=False,
            verify_retries=False,
            claim_via_strongest=False,
            gateway_can_confirm=True,
            settle=False,
            absent_is_wait=True,  # documented: null owner is "not owned" → conflict, not "mine"
            tier_precedence=True,
            recheck=False,
            phase_heartbeats=False,
            lease=False,
            cancel=False,
            fence=True,  # the gateway's finishJob refuses non-owners
            conditional_claim=True,
            release_on_give_up=False,
        )

    @classmethod
    def trust_gateway(cls, timing: TimingModel | None = None) -> Policy:
        return dataclasses.replace(
            cls.documented(timing), name="trust-gateway", pre_claim_check=False, verify=False
        )

    @classmethod
    def named(cls, name: str, timing: TimingModel | None = None) -> Policy:
        """Build a built-in chain by its report name (``hardened-without-settle``, ...)."""
        if name == "hardened":
            return cls.hardened(timing)
        if name == "documented":
            return cls.documented(timing)
        if name == "trust-gateway":
            return cls.trust_gateway(timing)
        prefix = "hardened-without-"
        if name.startswith(prefix) and name[len(prefix):] in HARDENING_STEPS:
            return cls.hardened(timing).without(name[len(prefix):])
        raise ValueError(f"unknown chain {name!r}; known: {', '.join(builtin_chain_names())}")

    def without(self, step: str) -> Policy:
        """This policy with one hardening step switched off, named ``<name>-without-<step>``."""
        if step not in HARDENING_STEPS:
            known = ", ".join(HARDENING_STEPS)
            raise ValueError(f"unknown hardening step {step!r}; known: {known}")
        attr = step.replace("-", "_")
        changes: dict[str, object] = {attr: False, "name": f"{self.name}-without-{step}"}
        if step == "tier-precedence":
            changes["gateway_can_confirm"] = True
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def with_timing(self, timing: TimingModel) -> Policy:
        return dataclasses.replace(self, timing=timing)


def builtin_chain_names() -> list[str]:
    """Every built-in chain: the two baselines, hardened, and its ablation."""
    return ["trust-gateway", "documented", "hardened"] + [
        f"hardened-without-{step}" for step in HARDENING_STEPS
    ]


"""Scenario parameters: the world, the encoders, the faults. Every item named, with defaults
taken from ``docs/contract.md`` ("Observed timings") unless a comment says otherwise.

A scenario fixes the *world*; the chain under test assumes the timing model built from the
same bounds (:meth:`Scenario.timing_model`), so "inside the model" means the world's draws
respect those bounds, and the ``*_tail`` parameters push draws outside them on purpose.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from verifier import LoopPolicy, Policy, TimingModel

__all__ = ["MAX_ENCODERS", "MAX_JOBS", "Scenario", "ScenarioError"]

#: Upper bounds of the population: a typo such as ``encoders=1e9`` would otherwise spend
#: hours (and all memory) building the world before the first event. Both are 100 times the
#: largest world shipped (S-1k: 1,000 encoders, 100,000 jobs), so every built-in scenario and
#: benchmark stays well inside them.
MAX_ENCODERS: Final = 100_000
MAX_JOBS: Final = 10_000_000
#: Slots per encoder: a node guards a handful of jobs at once, not thousands.
MAX_CONCURRENCY: Final = 64


#: The parameters whose faults are beyond the timing model's bounds, and what each allows.
OUTSIDE_MODEL: Final = {
    "monitor_lag_tail": "some monitor reads lag more than its bound Δ",
    "pause_tail": "some process pauses last longer than P",
    "blind_accept_rate": "the gateway overwrites a claim after G (an accept without a check)",
    "ping_drop_rate": "acknowledged gateway pings that are never written",
}


class ScenarioError(ValueError):
    """A scenario file or flag that cannot be used; the message names the parameter."""


@dataclass(frozen=True)
class Scenario:
    name: str = "default"
    # --- population and load
    encoders: int = 20
    jobs: int = 200
    #: Share of infrastructure nodes (database + monitor + gateway); the rest are community.
    infra_fraction: float = 0.25
    #: Share of community nodes that have the monitor enabled (the rest: gateway only).
    monitor_fraction: float = 1.0
    #: Jobs arrive as a Poisson stream at this rate per hour; 0 = all queued at time 0.
    arrival_per_hour: float = 0.0
    # --- legacy gateway
    #: "myjob": round-robin pre-assignment (2026); "getjob": oldest queued job to every poller.
    assignment: str = "myjob"
    #: Probability that a gateway assignment is handed out a second time: the next encoder
    #: that polls within G gets it too, and its accept passes the gateway's stale check
    #: (both answered OK, last writer wins). Realised only when someone polls in time.
    lie_rate: float = 0.05
    #: G: an accept's write lands at most this long after the request was sent, and the
    #: check of a double-handed accept reads the job as it was at most this long ago.
    write_delay: float = 2.0
    #: Probability that a double-handed accept skips its check altogether and overwrites
    #: an assignment of any age (an unbounded check-then-act gap: outside the model).
    blind_accept_rate: float = 0.0
    #: Most writes land while the request is served (before the reply); with this
    #: probability one lands after the reply, uniformly up to G (a slow or retried write).
    late_write_rate: float = 0.1
    #: Probability that a gateway ``finishJob`` write lands after its reply, uniformly up to G
    #: after the request (exactly G at the edge): the owner is checked when the request is
    #: served and the result written by id later, check-then-act as ``acceptJob`` is, so a
    #: late finish can land on the job's next assignment. Inside the model (G bounds every
    #: gateway write); 0 in the built-in scenarios, whose figures predate it.
    late_finish_rate: float = 0.0
    #: Probability that a gateway ``finishJob`` waits for its connection before it can leave
    #: (a kept-alive connection expired, lost SYNs: 1, 2, 4 s), uniformly up to
    #: ``connect_delay_max`` seconds, while the faults last. Not part of G: the protocol
    #: bounds when the finish may start to leave (``Finish.send_by``), and the driver does
    #: not send one that cannot leave by then (answered ``NOT_SENT`` at that instant), as the
    #: asyncio driver does; once it may leave, a pause of up to P can still come before its
    #: bytes do. At an edge the connection is ready exactly at ``send_by``, and it leaves (the
    #: asyncio driver refuses at equality: the simulator is the harsher). Other requests'
    #: connect time is part of G (docs/safety-model.md, "Timing model").
    connect_delay_rate: float = 0.0
    connect_delay_max: float = 10.0
    #: The same for a gateway ping (``pingJob``), which has no ``send_by``: it waits up to
    #: ``connect_delay_max`` for its connection, and one still connecting at its deadline
    #: (the lease's end) is not sent, as the asyncio driver cancels it. Only its answer
    #: proves when it left, so the protocol proves it by a read G + lag after that answer
    #: as well as P + G + lag after its decision (an adversarial review, session 31).
    ping_connect_rate: float = 0.0
    #: Probability that an accept's reply is lost (client timeout) while its write lands.
    reply_loss_rate: float = 0.01
    #: Probability that a gateway ping's request is lost on the way (it never lands; the
    #: encoder hears nothing until its client times out): leases run out, jobs are reassigned.
    ping_loss_rate: float = 0.0
    #: Probability that a gateway ping is answered OK but its write is lost (a write error
    #: behind an empty 200). **Outside the timing model**: the lease counts a proven gateway
    #: ping as landed, so the gateway may reassign a job its owner still works on; what is
    #: left is how fast the owner notices (loss detection: push against polling).
    ping_drop_rate: float = 0.0
    #: Probability that a job going back to the queue is handed at once to an idle encoder
    #: (``myJob`` pre-assignment to a waiting poller): the successor of a lost lease as early
    #: as the gateway allows.
    wake_on_requeue: float = 0.0
    #: Probability that ``myJob`` offers a polling encoder a job already assigned to its own
    #: DID (one a crashed process of it held: ``myJob`` hands an encoder its assignments).
    #: Its claim then meets an older assignment of its own, whose last ping and progress
    #: change predate the claim. Scans every job per poll: for small worlds.
    held_reoffer_rate: float = 0.0
    #: Whether (above 0) a gateway give-back (``rejectJob``, ``cancelJob``) counts an attempt
    #: towards the fifth-attempt rule, as the contract says every fail, reject and
    #: reassignment does; 0 counts only ``failJob`` and the timeouts, as the simulated gateway
    #: did before session 32. Only a liveness matter (a job given up has no further events to
    #: race over), so the edge families keep 0 (``conformance.families.NO_FEATURES``), the
    #: paths their teeth were measured on, and the general generator draws both.
    reject_counts_attempt: float = 1.0
    #: Probability that ``jobstatus`` answers "yours" whatever the truth.
    status_lie_rate: float = 0.05
    #: T: no ping for this long → back to the queue (public code: 60 s; 2026: 5–6 min).
    reassign_timeout: float = 60.0
    #: The gateway's reassignment scan runs this often; 0 = exactly T after the last ping
    #: (the adversary's edge: no scan slack for a late lease to hide in).
    reassign_scan_interval: float = 5.0
    #: N: no progress change for this long → back to the queue, pings or not (~5 min).
    progress_timeout: float = 300.0
    finish_complete_min: float = 45.0
    finish_complete_max: float = 60.0
    gateway_latency: float = 0.05
    gateway_timeout: float = 10.0
    #: Outage windows (all calls 5xx): mean count per hour and mean duration.
    gateway_outages_per_hour: float = 0.0
    gateway_outage_mean_s: float = 60.0
    # --- gateway monitor
    monitor_latency: float = 0.2
    #: Δ: the monitor's lag is exponential with mean monitor_lag_mean, capped at Δ ...
    monitor_lag: float = 5.0
    monitor_lag_mean: float = 0.2
    #: ... except with this probability, when it is Δ × monitor_lag_tail_factor (outside).
    monitor_lag_tail: float = 0.0
    monitor_lag_tail_factor: float = 10.0
    #: Probability of the monitor's stand-in HTTP 200 job (its database view misses the job):
    #: built from the gateway's answer, so it may carry a status and the gateway's owner.
    monitor_synthetic_rate: float = 0.01
    monitor_error_rate: float = 0.01
    monitor_outages_per_hour: float = 0.0
    monitor_outage_mean_s: float = 120.0
    # --- database and aid
    database_latency: float = 0.005
    #: Probability that a database call fails: a read answers an error; a write is answered
    #: with a timeout (no reply) and lands or not, each half the time.
    database_error_rate: float = 0.0
    #: Probability that such a write, one that lands with its reply lost, lands later than it
    #: is served: uniformly up to G after it was sent (exactly G at an edge), often after the
    #: client's "unknown" answer, as a write the server still applies after the client gave
    #: up. Otherwise it lands when served.
    late_lost_write_rate: float = 0.0
    aid_fraction: float = 0.0
    #: Whether (above 0) Gateway Aid's ``claim-job`` matches only jobs of its own lifecycle,
    #: ``pending``, as the contract says (a 409 for any other); the world's jobs are all the
    #: gateway's (``queued``), so an aid node's claim is refused and the protocol claims
    #: through the gateway instead. 0: Aid claims any claimable job, as the world did before
    #: session 32, and as the edge families keep (``NO_FEATURES``) so that the aid claim path
    #: they search stays exercised; the general generator draws both.
    aid_pending_only: float = 1.0
    aid_latency: float = 0.15
    #: Probability that a monitor or database read, or a database or aid write, hangs: no
    #: answer until its client gives up, after ``client_timeout`` (the monitor's and the
    #: database's) or ``aid_timeout`` (docs/contract.md: 10 s and 30 s); a hanging write is
    #: done or not, each half the time, and answered "unknown". Only a request's own deadline
    #: (the lease end) answers sooner: a driver that sends one without it waits the timeout.
    hang_rate: float = 0.0
    client_timeout: float = 10.0
    aid_timeout: float = 30.0
    #: Probability that a request to the gateway, the monitor or Gateway Aid (a poll, a read,
    #: a write; the database never answers 429) is answered "429 Too Many Requests" while the
    #: faults last: not served (a refused write does not land), answered after the tier's
    #: latency, with a ``Retry-After`` drawn uniformly up to ``retry_after_max`` seconds
    #: (exactly that at an edge). The protocol's read retries and the encoder loop honour
    #: it, up to ``verifier.MAX_RETRY_AFTER_S`` from when it was told (L1's
    #: ``hand_out.retry_after``); finish and give-back retries do not wait for it (a finish
    #: must land within the lease, a shutdown must not hold the node). A batch screen
    #: answered 429 fails, its hint dropped, as in production.
    throttle_rate: float = 0.0
    retry_after_max: float = 30.0
    # --- encoders
    #: The encoder loop (``loop_policy``): an idle encoder polls every poll_interval × U(0.5,
    #: 1.5), and a job it gave up on (skipped, cancelled, failed) is not tried again by it
    #: for cooldown_s (the shipped ``EncoderLoop`` waits 60 s; 0 here by default, as the
    #: deployed encoder retries whatever it is offered).
    poll_interval: float = 60.0
    cooldown_s: float = 0.0
    #: Jobs an encoder guards at once (``LoopPolicy.concurrency``, ``--concurrency``): each
    #: attempt in a slot of its own; pauses and crashes stop every slot of the node.
    concurrency: int = 1
    download_mean_s: float = 30.0
    encode_mean_s: float = 240.0
    upload_mean_s: float = 30.0
    #: Lognormal shape of phase durations (sigma of the underlying normal).
    phase_sigma: float = 0.5
    #: The work reports progress (a new value) this often, in every phase.
    progress_step_s: float = 30.0
    #: Probability that a work phase stalls once: no progress reported for a stretch drawn
    #: uniformly up to 2 × progress_timeout, by which the phase lasts longer. The gateway
    #: reassigns a stalled job after N; the hardened chain must have stopped it by then.
    stall_rate: float = 0.0
    #: Probability that a job's input is stuck (a dead source): in *every* attempt the download
    #: hangs at the same point of the job's input, drawn once per job, reports that point's
    #: share and then nothing until the faults stop. Its progress values repeat across
    #: attempts, so a late ping of an earlier attempt by the same DID can set the very value
    #: a new assignment then reports first (docs/safety-model.md, "Lease margin and lease
    #: deadline").
    stuck_rate: float = 0.0
    #: Probability that an attempt's work fails on its own (ffmpeg exits non-zero, the
    #: upload is refused), at a point drawn uniformly within the attempt's work, while the
    #: faults last. The protocol hears ``WorkEnded(False)`` and gives the job back as failed
    #: (``failJob``: an attempt towards the gateway's fifth-attempt rule). Drawn per
    #: (job, attempt), the same in every chain. Without it no simulated work ever failed, so
    #: nothing judged the failed path (session 46).
    work_fail_rate: float = 0.0
    crashes_per_hour: float = 0.0
    #: Graceful shutdowns (an operator's SIGTERM): the protocol is told at its next wait
    #: (``ShutdownRequested``), gives the job back, and the node restarts after
    #: ``restart_delay``.
    shutdowns_per_hour: float = 0.0
    restart_delay: float = 30.0
    pauses_per_hour: float = 0.0
    #: P: pauses last up to this long ...
    pause_max: float = 2.0
    #: ... except with this probability, when they last pause_max × pause_tail_factor.
    pause_tail: float = 0.0
    pause_tail_factor: float = 30.0
    #: ε: encoders' clocks drift by at most this much over one reassignment timeout.
    clock_drift: float = 1.0
    #: C: cancelled work takes up to this long to stop.
    cancel_latency: float = 5.0
    # --- the adversary's edges (inside the model: each bound reached, never passed)
    #: Probability that a bounded draw takes its bound exactly: monitor lag = Δ, a late write
    #: lands exactly G after its request, a pause lasts exactly P, a clock drifts by exactly
    #: ±ε, cancelled work takes exactly C to stop.
    edge_rate: float = 0.0
    #: Probability of a pause of exactly P at each await point of an encoder's driver: between
    #: a decision and its request, between a reply and its handling, when a timer fires.
    await_pause_rate: float = 0.0
    #: Probability, at an await point within C of the last pause's end, of a pause for all
    #: that the timing model leaves of P there (the freeze within any window of P + C is at
    #: most P): one freeze split in pieces, the driver running in between.
    pause_split_rate: float = 0.0
    #: R: the hardened chain's ping/re-check interval.
    recheck_interval: float = 10.0
    confirm_timeout: float = 25.0
    retry_interval: float = 1.0
    # --- cost features (docs/enhancements.md); all off in the default scenario
    #: How old (s) a cached tier answer may be for the pre-claim check (0: no status cache).
    status_cache_s: float = 0.0
    #: Offered jobs are screened with one ``batch-status`` request to the monitor before the
    #: claim (1; its answers fill the status cache, so it needs ``status_cache_s``) or not (0).
    batch_screen: float = 0.0
    #: Retries back off exponentially with full jitter (1) or wait a fixed interval (0).
    backoff: float = 0.0
    #: Share of job changes the monitor pushes to encoders subscribed to the job (0: no push
    #: channel; below 1, pushes are lost, and polling must carry on alone).
    push_rate: float = 0.0
    #: A push arrives up to this long after the change (uniform; exactly this at the edge).
    push_latency: float = 0.05
    # --- run
    #: Faults (outages, pauses, crashes, lies) stop at this time (None: never), for L1.
    faults_until: float | None = None
    #: Hard stop of simulated time (seconds); the run also stops when every job is done.
    max_time: float = 30 * 24 * 3600.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "assignment") or (f.name == "faults_until" and value is None):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ScenarioError(f"{f.name}: expected a number, got {value!r}")
            # Finite first: NaN compares false with everything, so it would slip through
            # every bound below (and be simulated), and an infinite timeout or interval makes
            # the timing model vacuous or the run never end.
            if not math.isfinite(value):
                raise ScenarioError(f"{f.name}: must be a finite number, got {value}")
            if value < 0:
                raise ScenarioError(f"{f.name}: must be >= 0, got {value}")
        for name in ("infra_fraction", "monitor_fraction", "lie_rate", "reply_loss_rate",
                     "late_write_rate", "late_finish_rate", "blind_accept_rate",
                     "status_lie_rate", "monitor_lag_tail", "monitor_synthetic_rate",
                     "monitor_error_rate", "aid_fraction", "pause_tail", "edge_rate",
                     "await_pause_rate", "pause_split_rate", "database_error_rate",
                     "ping_loss_rate", "ping_drop_rate", "wake_on_requeue", "stall_rate",
                     "stuck_rate", "work_fail_rate", "backoff", "push_rate", "batch_screen",
                     "hang_rate", "late_lost_write_rate", "throttle_rate", "connect_delay_rate",
                     "ping_connect_rate", "reject_counts_attempt", "aid_pending_only"):
            if getattr(self, name) > 1:
                raise ScenarioError(f"{name}: a probability must be within [0, 1]")
        if self.assignment not in ("myjob", "getjob"):
            raise ScenarioError(
                f"assignment: expected 'myjob' or 'getjob', got {self.assignment!r}"
            )
        for name, limit in (("encoders", MAX_ENCODERS), ("jobs", MAX_JOBS),
                            ("concurrency", MAX_CONCURRENCY)):
            count = getattr(self, name)
            if int(count) != count or count < 1:
                raise ScenarioError(f"{name}: must be a positive integer, got {count}")
            if count > limit:
                raise ScenarioError(f"{name}: at most {limit:,}, got {count}")
        if self.finish_complete_max < self.finish_complete_min:
            raise ScenarioError("finish_complete_max: must be >= finish_complete_min")
        if self.recheck_interval <= 0 or self.poll_interval <= 0 or self.progress_step_s <= 0:
            raise ScenarioError("recheck_interval, poll_interval and progress_step_s must be > 0")

    def timing_model(self) -> TimingModel:
        """The hardened chain's assumptions: exactly the world's in-model bounds."""
        return TimingModel(
            monitor_lag=self.monitor_lag,
            write_delay=self.write_delay,
            pause=self.pause_max,
            clock_drift=self.clock_drift,
            recheck_interval=self.recheck_interval,
            cancel_latency=self.cancel_latency,
            reassign_timeout=self.reassign_timeout,
            progress_timeout=self.progress_timeout,
            confirm_timeout=self.confirm_timeout,
            retry_interval=self.retry_interval,
        )

    def features(self, policy: Policy) -> Policy:
        """``policy`` with this scenario's cost features (status cache, backoff) switched on or
        off: the protocol's part of them (the drivers read the rest from the scenario)."""
        return dataclasses.replace(policy, status_cache_s=self.status_cache_s,
                                   backoff=self.backoff > 0)

    def loop_policy(self, sources: tuple[str, ...] | None = None, *,
                    screen_at_least: int = 1) -> LoopPolicy:
        """The encoder loop of this scenario's encoders, as :class:`~verifier.EncoderLoop`
        runs it (the SimPy encoders drive the same :class:`~verifier.PollSchedule`):
        ``concurrency`` jobs at a time from ``sources`` (by default the gateway's poll the
        scenario assigns by: ``myjob`` or ``getjob``); idle waits of ``poll_interval`` ×
        U(0.5, 1.5), or with the backoff feature doubling after each empty poll or job given
        up on a tier failure, up to eight poll intervals; a cool-down of ``cooldown_s``.
        ``screen_at_least``: the simulated gateway offers one job per poll, so its encoders
        screen offers of one (the batch feature would otherwise never act there); production
        screens lists of two or more (``LoopPolicy``'s default)."""
        backoff = self.backoff > 0
        return LoopPolicy(
            sources=sources or (self.assignment,), concurrency=self.concurrency,
            idle_s=self.poll_interval,
            idle_max_s=self.poll_interval * (8.0 if backoff else 1.5),
            idle_factor=2.0 if backoff else 1.0, jitter=0.5, cooldown_s=self.cooldown_s,
            screen_at_least=screen_at_least)

    def inside_model(self) -> bool:
        """Whether the hardened chain's guarantees apply here: no fault beyond the model's
        bounds (:meth:`outside_model`), and timings the model can keep a healthy lease with
        (``TimingModel.problems()``: without the second, a world whose lease budget cannot
        hold a ping interval was "inside", and L1 was judged on time where the chain cancels
        its own healthy work; the run's report already said so, as ``sim._report``'s
        ``timing_problems``)."""
        return not self.outside_model() and not self.timing_model().problems()

    def outside_model(self) -> list[str]:
        """Why the world is outside the timing model the hardened chain assumes: each fault
        it allows beyond the model's bounds, then each network latency too slow for the
        model's settings (:meth:`latency_problems`); empty inside it."""
        return [*(f"{name}={getattr(self, name):g}: {why}"
                  for name, why in OUTSIDE_MODEL.items() if getattr(self, name)),
                *self.latency_problems()]

    def latency_problems(self) -> list[str]:
        """The first ping's lease path with the network's replies counted: why a healthy job
        can lose its lease before its first ping counts (empty when it cannot).

        ``TimingModel.problems()`` checks ``settle_delay(Δ) + confirm_timeout + Δ + P + G``
        against the lease budget: a path without a single reply. The world's replies take up
        to 1.5 × their tier's latency (latency × U[0.5, 1.5)), read on a clock up to ε/T fast.
        The lease counts from the claim's *decision*; before the first ping counts come the
        claim's reply (the settle counts from it), the settle, the confirm window, the
        deciding read's reply, then, for a gateway claim, the proof wait and the ping's own
        reply (the proof also counts from its answer) and the proof read's reply (a ping
        through the database or aid counts when answered: its reply instead). Past the
        budget the lease runs out first and the healthy work is cancelled, in every attempt
        whose replies are that slow,
        faults or not, so L1 has no bound (``docs/safety-model.md``, "Consistency checks";
        found with the ``fast-poll`` family and the monitor and the gateway at 1 s). Reported
        only where the replies make the difference: a path too long without them is
        ``TimingModel.problems()``'s.
        """
        tm = self.timing_model()
        budget = tm.lease_budget()
        rate = 1.0 + self.clock_drift / max(self.reassign_timeout, 1.0)

        def reply(tier: str) -> float:
            return 1.5 * float(getattr(self, f"{tier}_latency")) * rate

        # The population as the runner builds it (``sim._runner.tier_mix``): which claim
        # paths some encoder takes. A community node without the monitor claims nothing.
        infra = round(self.encoders * self.infra_fraction)
        community = self.encoders - infra
        with_monitor = round(community * self.monitor_fraction)
        without_aid = community - round(community * self.aid_fraction)
        # (whose claim, claim tier, confirming tier, its lag, whether a read proves the ping)
        paths: list[tuple[str, str, str, float, bool]] = []
        if infra:
            paths.append(("an infrastructure node's database", "database", "database", 0.0,
                          False))
        # An aid node whose Aid refuses the gateway's jobs (``aid_pending_only``) claims them
        # through the gateway; the lease counts from that claim's decision.
        aid_claims = with_monitor > without_aid and self.aid_pending_only <= 0
        if min(with_monitor, without_aid) > 0 or (
                with_monitor > without_aid and not aid_claims):
            paths.append(("a gateway", "gateway", "monitor", self.monitor_lag, True))
        if aid_claims:
            paths.append(("an aid", "aid", "monitor", self.monitor_lag, False))
        found = []
        for whose, claim, confirm, lag, proof_read in paths:
            waits = tm.settle_delay(lag) + self.confirm_timeout
            replies = reply(claim) + reply(confirm)
            if proof_read:
                # The proof read comes P + G + lag after the ping's decision and G + lag
                # after its answer is handled (session 31): up to its reply, and a pause of P
                # before the handling, later than the decision's bound.
                waits += tm.proof_delay(lag)
                replies += reply(claim) + reply(confirm)
            else:
                replies += reply(claim)
            if not waits < budget <= waits + replies:
                continue
            latencies = ", ".join(dict.fromkeys(
                f"{tier}_latency={getattr(self, f'{tier}_latency'):g}"
                for tier in (claim, confirm)))
            last = "the proof read's" if proof_read else "the first ping's"
            found.append(
                f"{latencies}: {whose} claim can lose its lease before its first ping counts: "
                f"settle delay + confirm_timeout{' + proof wait' if proof_read else ''} = "
                f"{waits:g} s, plus up to {replies:.2f} s for the replies of the claim, the "
                f"deciding read and {last} (1.5 × latency each), reach the lease budget "
                f"{budget:g} s, so healthy work is cancelled whenever the replies are slow")
        return found

    def replace(self, **changes: Any) -> Scenario:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ScenarioError(f"unknown scenario parameter(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, name: str | None = None) -> Scenario:
        """Build from a parsed TOML table (flat, or with [world]/[encoders]/... sub-tables)."""
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, Mapping):
                flat.update(value)
            else:
                flat[key] = value
        if name is not None:
            flat.setdefault("name", name)
        ints = {"encoders", "jobs"}
        for key in ints & flat.keys():
            if isinstance(flat[key], float) and flat[key].is_integer():
                flat[key] = int(flat[key])
        return cls().replace(**flat)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

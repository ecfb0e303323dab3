"""The simulated network: ground-truth database, legacy gateway, Gateway Monitor, Gateway Aid.

Every service call is made by an encoder's driver at the moment the request is sent: the world
computes the answer from its state *now* (or, for the monitor, as of ``now - lag``), schedules
any write that lands later, and tells the driver how long the reply takes. That keeps one SimPy
timeout per call, which is what lets a run of 100,000 jobs finish in seconds.

The behaviours are those of ``docs/contract.md``; each lie is a named scenario parameter:

* the gateway hands a job to two encoders (``lie_rate``) and answers both accepts OK; each
  accept's write lands up to G later and the last writer owns the job;
* an accept's reply can be lost while its write lands (``reply_loss_rate``);
* pings from non-owners are answered OK and ignored; ``jobstatus`` may say "yours" falsely;
* jobs without a ping for T go back to the queue; finish → ``uploading`` → ``complete``;
* the monitor reads the database as of ``now - lag`` and sometimes answers a stand-in job
  built from the gateway's view (its status, and the owner the gateway believes in);
* the database and aid claims are atomic and conditional; the canaries' blind claim and
  unfenced finish exist here (and only here) so the suites can prove they are caught.

The world never decides ownership for an encoder: it only answers requests.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import simpy

from verifier import GatewayMonitorJob, Observation, Tier
from verifier.protocol import (
    Claim,
    Finish,
    Heartbeat,
    Observe,
    Observed,
    Release,
    TierFailed,
    WriteAnswered,
    WriteOutcome,
)

from ._history import WORLD, History
from ._rng import Streams
from ._scenario import Scenario

__all__ = ["CLAIMABLE_STATUSES", "PROCESSABLE_STATUSES", "Job", "World", "encoder_name",
           "request_record"]

# The gateway's status groups, stated here from the contract (docs/contract.md, "Status
# vocabularies") rather than imported from the verifier: the world is the adversary, and an
# adversary that borrows the code under test's beliefs cannot catch them being wrong.
#: Statuses in which the gateway, the database claim and aid hand a job out.
CLAIMABLE_STATUSES: Final = frozenset({"created", "pending", "queued", "unassigned"})
#: Statuses in which the owner is working (pings, finish and fenced writes accepted).
PROCESSABLE_STATUSES: Final = frozenset({"assigned", "running"})

OK: Final = WriteAnswered(WriteOutcome.OK)
_NOT_YOURS: Final = WriteAnswered(WriteOutcome.REFUSED, detail="job does not belong to you")
_NOT_AVAILABLE: Final = WriteAnswered(WriteOutcome.REFUSED, detail="job is not available")
_OUTAGE: Final = "503 Service Unavailable"
_THROTTLED: Final = "429 Too Many Requests"
#: The monitor's answer when it cannot build a job's record (its database view lacks the job
#: and the gateway cannot be asked, or its database is down).
_FETCH_FAILED: Final = TierFailed(Tier.MONITOR, "500 Failed to fetch job details")
#: The monitor's ``batch-status`` asks the gateway this many ids at a time (docs/contract.md).
BATCH_ROUND: Final = 5
#: A job's progress as pings report it: (pct, download_pct). An assignment resets it to none.
Progress = tuple[float, float]
NO_PROGRESS: Final[Progress] = (0.0, 0.0)


class Job:
    """One job document, with its write log (times and states) for lagging readers."""

    __slots__ = (
        "attempts", "created", "epoch", "epoch_of_did", "epoch_of_token", "id", "last_pinged",
        "log_states", "log_times", "owned_at", "owner", "pending", "progress",
        "progress_changed", "status", "token",
    )

    def __init__(self, job_id: str, created: float) -> None:
        self.id = job_id
        self.status = "queued"
        self.owner: str | None = None  # encoder DID
        self.epoch = 0
        self.token: str | None = None
        self.pending: str | None = None  # an accepted write still in flight (encoder DID)
        self.owned_at = -math.inf  # when the current assignment landed
        self.last_pinged = created
        #: The progress last stored (pct, download_pct) and when it last changed: the gateway's
        #: second reassignment clock (no change for N). An assignment resets both.
        self.progress = NO_PROGRESS
        self.progress_changed = created
        self.attempts = 0
        self.created = created
        self.log_times: list[float] = [created]
        self.log_states: list[tuple[str, str | None, str | None]] = [("queued", None, None)]
        #: Which assignment (epoch) each encoder last got, and each claim token names: a commit
        #: is recorded with the *committer's own* assignment, so S3 can tell a stale one.
        self.epoch_of_did: dict[str, int] = {}
        self.epoch_of_token: dict[str, int] = {}

    def as_of(self, when: float) -> tuple[str, str | None, str | None] | None:
        i = bisect.bisect_right(self.log_times, when)
        return self.log_states[i - 1] if i else None


#: Instants closer than this are one instant when a read meets a write. At the model's exact
#: edges a deciding read reflects the database at the very instant the last competing write
#: lands (the settle's inequalities hold with equality at ε = 0), and the two instants are
#: computed by different float sums: the read's one ulp early made the hardened chain process
#: a job twice in a world inside the model (found by a helper sharpening the settle families,
#: session 17). A read therefore sees every write that lands up to a microsecond after the
#: instant it reflects (``World._flush``, ``Job.as_of``'s callers): far below every bound of
#: the model (the lease checker forgives the same microsecond, ``sim/_checkers.py``), and the
#: driver's wake-up tolerance (a nanosecond, ``sim/_encoder.py``) is inside it.
TIE_S: Final = 1e-6


#: The identity of a poller that did not say who it is (an unsigned ``getJob`` without the
#: ``X-Encoder-DID`` header, in the live emulator).
ANONYMOUS: Final = "anonymous"


def misses(landed: float, reflects: float, now: float) -> bool:
    """Whether a check made ``now`` that reflects the database at ``reflects`` (up to G
    earlier) misses a write that landed at ``landed``.

    At a tie the adversary chooses: a check reflecting an instant before its own misses a
    write landing at exactly that instant, so a competing accept can land exactly 2G after
    our claim, the settle's closed edge, which the deciding read must see (the tie rule of
    reads, ``TIE_S``: that write was sent before the read, G > 0 earlier, and is applied
    first). A check reflecting its own instant (G = 0) sees every write already applied:
    otherwise its accept, sent at that instant after a deciding read of the same instant,
    would land unseen by it, which no driver of a world in instants can order otherwise.
    (Found on 2026-12-04 once the world doubled database claims: with G = ε = 0 the settle
    after a database claim is 0, the gateway's check at the very instant the claim landed
    missed it, and the hardened chain processed the job twice: ``FINDING_DATABASE_TIE`` in
    ``conformance/test_regressions.py``.) At G > 0 the edge allows the tie's microsecond,
    so the rounding of ``(L + G) - G`` cannot lose it.

    The world judges the check against the current assignment only: if that one overwrote
    an earlier owner within G, the job was never free in the window, yet the check passes (a
    check staler than G, outside the model, older than this rule; harmless to the proof, as
    the accept still lands within 2G of the current owner's landing, and the owner before
    it had lost the job already: an adversarial review, 2026-12-04)."""
    return reflects < now and landed >= reflects - TIE_S


def _windows(rng: Any, per_hour: float, mean_s: float, until: float) -> list[tuple[float, float]]:
    """Poisson-placed outage windows with exponential durations, up to ``until``."""
    out: list[tuple[float, float]] = []
    if per_hour <= 0 or mean_s <= 0:
        return out
    t = 0.0
    while True:
        t += rng.expovariate(per_hour / 3600.0)
        if t >= until:
            return out
        end = t + rng.expovariate(1.0 / mean_s)
        out.append((t, end))
        t = end


class World:
    """The network, shared by all encoders of one run."""

    def __init__(
        self, env: simpy.Environment, scenario: Scenario, streams: Streams, history: History
    ) -> None:
        self.env = env
        self.sc = scenario
        self.history = history
        self.jobs: dict[str, Job] = {}
        #: Called with each job right after every write to it (status, owner or token): the
        #: push notifications of the monitor's optional WebSocket extension, and the simulated
        #: encoders' subscriptions, are built on it. Empty in most runs (no cost).
        self.watchers: list[Callable[[Job], None]] = []
        #: Whether the monitor's waits for a silent gateway are cut at the client's timeout
        #: (``client_timeout``): yes for the simulated clients; the live emulator serves real
        #: clients, which time out by themselves, and must answer as the real server does
        #: after its wait (200 with the stored record, 200 ``{}`` for a batch), not 500.
        self.cut_waits_at_client_timeout = True
        self.queue: deque[str] = deque()
        self._in_queue: set[str] = set()
        self.active: set[str] = set()  # assigned/running: the reassignment scan's scope
        self.committed: set[str] = set()
        self.finished = 0  # committed or failed for good
        #: Jobs the run will release in all (with arrivals, more than have arrived so far):
        #: the run is done when that many are finished, not when every arrived one is.
        self.expected_jobs = 0
        self.done_event = env.event()
        # Jobs the gateway will hand out a second time, until a deadline (the G window).
        #: Planned double hand-outs waiting for a poller: (deadline, job id, k-th assignment).
        self._double: deque[tuple[float, str, int]] = deque()
        #: Gateway writes on their way: (lands at, order, [callback]), the callback set to None
        #: once applied (by its own event, or early by ``_flush``, within TIE_S of a read).
        self._landing: list[tuple[float, int, list[Callable[[], None] | None]]] = []
        self._landing_order = 0
        #: Where each job's input hangs (``stuck_rate``), as a share of its download, or None:
        #: drawn at the job's first start and the same in every attempt (a dead source).
        self.stuck_inputs: dict[str, float | None] = {}
        #: Encoders waiting for their next poll, by name: the gateway may wake one early.
        self.idle: dict[str, simpy.Event] = {}
        self._lying: set[tuple[str, str]] = set()  # (did, job) whose accept skips the check
        self._lies = streams.stream("gateway.lies")
        self._keyed = streams.keyed  # offered randomness, per entity (sim/_rng.py: CRN)
        self._accepts: dict[tuple[str, int, bool], int] = {}  # accepts so far, per draw key
        self._next_keyed = streams.next_keyed  # the k-th draw of one key (status lies)
        #: Assignments so far, per job (gateway, aid or database): the k-th one's draws are
        #: keyed by k, so the k-th assignment of a job is offered the same lie in every chain.
        self.handouts: dict[str, int] = {}
        #: The jobs whose first assignment the world did hand to a second encoder, one that
        #: polled within G (the realised part of the plan, sim/_metrics.py
        #: ``planned_doubles``).
        self.doubled: set[str] = set()
        self._delays = streams.stream("gateway.write_delay")
        self._hang = streams.stream("hang")  # hang_rate: drawn only when it is above 0
        self._lost = streams.stream("database.lost")  # late_lost_write_rate, likewise
        self._throttle = streams.stream("throttle")  # throttle_rate, likewise
        self._connect = streams.stream("connect")  # connect_delay_rate, likewise
        self._monitor = streams.stream("monitor")
        self._latency = streams.stream("latency")
        horizon = scenario.faults_until if scenario.faults_until is not None else scenario.max_time
        self.horizon = horizon
        #: When the last fault so far struck or ended (-inf before any: a fault at 0 is one): a
        #: lie, a lost or dropped reply, a status lie, a stand-in, a tier error, a hang, an
        #: outage's start, and, from the encoders, a pause's or a stall's end, a crash and a
        #: shutdown. The faults stop *here*, which
        #: may be long before ``horizon`` (a world with no fault at all: -inf), and L1's on-time
        #: check counts from it: counted from ``horizon``, a chain that dawdled after a fault
        #: hid behind the quiet rest of the window (a review of the checkers, session 27).
        self.last_fault = -math.inf
        faults = streams.stream("faults")
        self.gateway_down = _windows(faults, scenario.gateway_outages_per_hour,
                                     scenario.gateway_outage_mean_s, horizon)
        self.monitor_down = _windows(faults, scenario.monitor_outages_per_hour,
                                     scenario.monitor_outage_mean_s, horizon)
        for kind, windows in (("gateway-outage", self.gateway_down),
                              ("monitor-outage", self.monitor_down)):
            for start, end in windows:
                history.add(start, WORLD, None, "fault", "invoke", kind)
                history.add(end, WORLD, None, "fault", "ok", kind)
                self.last_fault = max(self.last_fault, start)  # its end: faults_stopped
        self.calls: dict[str, int] = {t.value: 0 for t in Tier}
        #: Database claims sent: their tokens ("c1", "c2", ...), unique in the world.
        self.claims_sent = 0
        env.process(self._reassign_loop())

    def release(self, job_ids: list[str], streams: Streams) -> None:
        """Release the run's jobs: all at once, or at the scenario's Poisson arrival rate.

        The live world calls this too, so a live run's jobs arrive exactly as a simulated
        run's do (one arrival process, not two).
        """
        self.expected_jobs = len(job_ids)
        if self.sc.arrival_per_hour > 0:
            self.env.process(self._arrivals(job_ids, streams.stream("arrivals")))
        else:
            for job_id in job_ids:
                self.add_job(job_id)

    def _arrivals(self, job_ids: list[str], rng: Any) -> Any:
        rate = self.sc.arrival_per_hour / 3600.0
        for job_id in job_ids:
            self.add_job(job_id)
            yield self.env.timeout(rng.expovariate(rate))

    # ------------------------------------------------------------------ helpers

    def _faulty(self) -> bool:
        return self.env.now < self.horizon

    def _strikes(self, hit: bool) -> bool:
        """``hit``, a fault's draw, noted in :attr:`last_fault` when it strikes (the latest
        instant wins: an outage's start is noted at the outset, and a stall's end when the
        work is planned, both ahead of the clock; a review found a later draw moving it back
        below them, and L1 judging from before an outage that was still to come)."""
        if hit and self.env.now > self.last_fault:
            self.last_fault = self.env.now
        return hit

    def fault_until(self, end: float) -> None:
        """A fault of an encoder's (a pause, a stall, a crash) lasts until ``end``."""
        if end > self.last_fault:
            self.last_fault = end

    @staticmethod
    def _down(windows: list[tuple[float, float]], now: float) -> bool:
        if not windows:
            return False
        i = bisect.bisect_right(windows, (now, math.inf))
        return i > 0 and windows[i - 1][1] > now

    def throttled(self, tier: Tier) -> float | None:
        """Whether this request to ``tier`` is answered 429 (``throttle_rate``, while the
        faults last; the database never is), and if so its ``Retry-After`` in seconds: up to
        ``retry_after_max``, exactly that at an edge. Counted as a call: it reached the
        server. Drawn from a stream of its own, and nothing when the rate is 0."""
        sc = self.sc
        if not sc.throttle_rate or tier is Tier.DATABASE or not self._faulty():
            return None
        rng = self._throttle
        if not self._strikes(rng.random() < sc.throttle_rate):
            return None
        self.calls[tier.value] += 1
        edge = sc.edge_rate > 0 and rng.random() < sc.edge_rate
        return sc.retry_after_max if edge else rng.random() * sc.retry_after_max

    def connect_delay(self, left: float | None, rate: float) -> float:
        """How long a gateway finish or ping waits for its connection before it can leave
        (with probability ``rate``, while the faults last; 0: at once): up to
        ``connect_delay_max``, or at an edge exactly ``left``, the time to its ``send_by``
        or deadline (None: it has none), so that it may leave at the last instant. Drawn
        from a stream of its own, and nothing when the rate is 0."""
        sc = self.sc
        if not rate or not self._faulty():
            return 0.0
        rng = self._connect
        if not self._strikes(rng.random() < rate):
            return 0.0
        if left is not None and left >= 0 and sc.edge_rate > 0 and rng.random() < sc.edge_rate:
            return left
        return rng.random() * sc.connect_delay_max

    def gateway_down_now(self) -> bool:
        """Inside a gateway outage window (the live emulator's routes that have no world
        operation of their own ask this)."""
        return self._down(self.gateway_down, self.env.now)

    def aid_down_now(self) -> bool:
        """Inside an outage of Gateway Aid (:meth:`_aid_down`): for the live emulator's aid
        reads and listings, which have no world operation of their own."""
        return self._aid_down()

    def latency(self, base: float) -> float:
        return base * (0.5 + self._latency.random())

    def _latency_of(self, tier: Tier) -> float:
        sc = self.sc
        return {Tier.GATEWAY: sc.gateway_latency, Tier.MONITOR: sc.monitor_latency,
                Tier.AID: sc.aid_latency}.get(tier, sc.database_latency)

    def _write(self, job: Job, *, status: str, owner: str | None, token: str | None) -> None:
        job.status, job.owner, job.token = status, owner, token
        job.log_times.append(self.env.now)
        job.log_states.append((status, owner, token))
        if status in PROCESSABLE_STATUSES:
            self.active.add(job.id)
        else:
            self.active.discard(job.id)
        for watch in self.watchers:
            watch(job)

    def _pinged(self, job: Job, progress: Progress | None = None, *,
                assigned: bool = False) -> None:
        """A ping that counted (or the assignment itself): ``last_pinged`` := now, and the
        progress it carried (``None``: none reported); a change of progress, or an assignment,
        restarts the no-progress clock. With an exact gateway (scan interval 0) each
        reassignment is armed for exactly T (N) later: the edges the lease must be stopped
        before."""
        job.last_pinged = stamp = self.env.now
        changed = assigned or (progress is not None and progress != job.progress)
        if changed:
            job.progress = NO_PROGRESS if assigned or progress is None else progress
            job.progress_changed = stamp
        if self.sc.reassign_scan_interval > 0:
            return
        epoch = job.epoch

        def expire_ping(_event: Any) -> None:
            if job.id in self.active and job.last_pinged == stamp and job.epoch == epoch:
                self._requeue(job, "no ping for T", counted=True)
        self.env.timeout(self.sc.reassign_timeout).callbacks.append(expire_ping)
        if changed:
            def expire_progress(_event: Any) -> None:
                if job.id in self.active and job.progress_changed == stamp and (
                        job.epoch == epoch):
                    self._requeue(job, "no progress for N", counted=True)
            self.env.timeout(self.sc.progress_timeout).callbacks.append(expire_progress)

    def _edge(self, rng: Any) -> bool:
        """Whether a bounded draw takes its bound exactly (``edge_rate``). Draws nothing when
        the rate is 0, so worlds without edges keep their random sequences."""
        return self.sc.edge_rate > 0 and rng.random() < self.sc.edge_rate

    def _assign(self, job: Job, did: str, token: str | None) -> None:
        job.epoch += 1
        job.epoch_of_did[did] = job.epoch
        if token is not None:
            job.epoch_of_token[token] = job.epoch
        job.owned_at = self.env.now
        self._pinged(job, assigned=True)
        self._write(job, status="assigned", owner=did, token=token)
        self.history.add(self.env.now, WORLD, job.id, "assign", "ok",
                         (encoder_name(did), job.epoch))
        # Every assignment, whoever wrote it: the gateway's accept is check-then-act whatever
        # wrote the assignment its check missed, a database or aid claim as much as its own
        # (before 2026-12-04 only gateway and aid assignments were doubled, so no world raced
        # a gateway accept against a database claim, and the settle after one was unproven:
        # a protocol that skipped it passed every suite).
        k = self.handouts[job.id] = self.handouts.get(job.id, 0) + 1
        offer = self._keyed("gateway.double", job.id, k)
        if self._faulty() and self._strikes(offer.random() < self.sc.lie_rate):
            # lie_rate: the share of assignments that the gateway also hands to the next
            # encoder that polls within G (realised only if one does). Drawn per job and
            # assignment (its k-th), so every chain on a seed is offered the same lies.
            self._double.append((self.env.now + self.sc.write_delay, job.id, k))
            if self.idle:  # the next poller is an idle encoder, woken now (in insertion order)
                names = list(self.idle)
                self.idle.pop(names[int(offer.random() * len(names))]).succeed()

    def _requeue(self, job: Job, reason: str, *, counted: bool) -> None:
        """Back to the queue, ``counted`` as an attempt towards the fifth-attempt rule (every
        gateway requeue; a database release only as failed, as ``verifier``'s does)."""
        if counted:
            job.attempts += 1
        status = "failed" if job.attempts >= 5 else "queued"
        self._write(job, status=status, owner=None, token=None)
        self.history.add(self.env.now, WORLD, job.id, "requeue", "ok", reason)
        if status == "queued":
            self._enqueue(job.id)
            sc = self.sc
            if sc.wake_on_requeue and self.idle and self._faulty() and self._strikes(
                    self._lies.random() < sc.wake_on_requeue):
                self.idle.pop(next(iter(self.idle))).succeed()  # the next poller, at once
        else:
            # The gateway's fifth-attempt rule: the job is given up for good.
            self.history.add(self.env.now, WORLD, job.id, "failed", "ok", job.attempts)
            self._count_finished()

    def _commit(self, job: Job, did: str, status: str, *, token: str | None = None) -> None:
        """Record the result, with the committer's own assignment: the one its token names
        (database), else its latest (the gateway and aid condition on the owner alone). An
        encoder that was never assigned the job commits with no epoch (None)."""
        epoch = (job.epoch_of_token.get(token) if token is not None
                 else job.epoch_of_did.get(did))
        self.history.add(self.env.now, WORLD, job.id, "commit", "ok",
                         (encoder_name(did), epoch))
        self._write(job, status=status, owner=job.owner, token=job.token)
        if job.id not in self.committed:
            self.committed.add(job.id)
            self._count_finished()

    def _count_finished(self) -> None:
        self.finished += 1
        if self.finished >= max(len(self.jobs), self.expected_jobs) and (
                not self.done_event.triggered):
            self.done_event.succeed()

    def _reassign_loop(self) -> Any:
        sc = self.sc
        if sc.reassign_scan_interval <= 0:
            return  # exact reassignment: armed per ping by _pinged
            yield  # a generator all the same (a SimPy process)
        while True:
            yield self.env.timeout(sc.reassign_scan_interval)
            cutoff = self.env.now - sc.reassign_timeout
            stalled = self.env.now - sc.progress_timeout
            for job_id in sorted(self.active):
                job = self.jobs[job_id]
                if job.last_pinged < cutoff:
                    self._requeue(job, "no ping for T", counted=True)
                elif job.progress_changed < stalled:
                    self._requeue(job, "no progress for N", counted=True)

    def add_job(self, job_id: str, *, queued: bool = True) -> None:
        """Add a job; ``queued=False`` keeps it out of the queue offered to everyone (a job
        the live emulator offers to one encoder only: ``sim serve --assigned``)."""
        job = Job(job_id, self.env.now)
        job.log_times[0] = self.env.now
        self.jobs[job_id] = job
        # Its arrival, so that L1 counts from when the job could first be claimed: counted
        # from the first record an encoder wrote, a chain that waited before touching a job
        # was judged from when it chose to start (a review of the checkers, session 27).
        self.history.add(self.env.now, WORLD, job_id, "arrive", "ok")
        if queued:
            self._enqueue(job_id)

    def _enqueue(self, job_id: str) -> None:
        """Queue a claimable job. ``getJob`` hands out the oldest queued job (the contract), so
        there a job back in the queue (a timeout, a give-back) goes before every younger one;
        until session 32 it went to the back, and a reassigned job reached its successor
        later than the real gateway would hand it on (a review of the world: trust-gateway's
        S2 on the default scenario under ``getJob`` rose from 133 to 152 over 3 seeds). The
        order of ``myJob``'s round-robin pre-assignment is not documented: arrival order."""
        if job_id in self._in_queue:
            return
        self._in_queue.add(job_id)
        if self.sc.assignment == "getjob":  # the queue stays in order of creation
            jobs = self.jobs
            self.queue.insert(bisect.bisect_right(self.queue, jobs[job_id].created,
                                                  key=lambda other: jobs[other].created),
                              job_id)
        else:
            self.queue.append(job_id)

    def observation(self, tier: Tier, job_id: str, state: tuple[str, str | None, str | None]
                    | None, *, token: bool = False) -> Observed:
        if state is None:
            return Observed(Observation(tier, None))
        status, owner, tok = state
        job = GatewayMonitorJob(id=job_id, status=status, assigned_to=owner)
        return Observed(Observation(tier, job, tok if token else None))

    # ------------------------------------------------------------------ legacy gateway

    def gw_poll(self, did: str) -> tuple[str | None, float]:
        """``myJob`` (round-robin) or ``getJob`` (oldest queued to everyone)."""
        self.calls["gateway"] += 1
        delay = self.latency(self.sc.gateway_latency)
        if self._down(self.gateway_down, self.env.now):
            return None, delay
        if self.sc.held_reoffer_rate:
            held = self._held_by(did)
            if held is not None:
                return held, delay
        while self._double:
            deadline, job_id, k = self._double.popleft()
            job = self.jobs[job_id]
            if deadline >= self.env.now and job.owner not in (None, did) and (
                    job.status in PROCESSABLE_STATUSES):
                # The double hand-out: a job just assigned to another encoder, handed to this
                # one too; its accept is judged on a stale read (see gw_accept).
                self._lying.add((did, job_id))
                if k == 1:
                    # Made, not only planned: counted here (it was counted when planned, so
                    # realised_double equalled planned_double in every built-in scenario: an
                    # adversarial review of the figures, 2026-12-05).
                    self.doubled.add(job_id)
                return job_id, delay
        while self.queue:
            job_id = self.queue[0]
            job = self.jobs[job_id]
            if job.status not in CLAIMABLE_STATUSES or job.owner is not None:
                self._in_queue.discard(self.queue.popleft())  # stale queue entry
                continue
            if self.sc.assignment == "myjob":
                self._in_queue.discard(self.queue.popleft())
                # Offered, not reserved: back in the queue if nobody takes it.
                self.env.timeout(self.sc.poll_interval).callbacks.append(
                    lambda _e, j=job: self._reoffer(j))
            return job_id, delay
        return None, delay

    def _held_by(self, did: str) -> str | None:
        """A job assigned to ``did`` that ``myJob`` offers it again (``held_reoffer_rate``).
        The encoder polls only between attempts, so no live attempt of it holds the job: a
        crashed process did, and the new claim meets that older assignment."""
        for job in self.jobs.values():
            if job.owner == did and job.status in PROCESSABLE_STATUSES:
                draw = self._keyed("gateway.held", job.id, job.epoch, self.env.now)
                if draw.random() < self.sc.held_reoffer_rate:
                    self.history.add(self.env.now, WORLD, job.id, "reoffer", "info",
                                     encoder_name(did))
                    return job.id
        return None

    def _reoffer(self, job: Job) -> None:
        if job.status in CLAIMABLE_STATUSES and job.owner is None:
            self._enqueue(job.id)

    def gw_accept(self, did: str, job_id: str) -> tuple[WriteAnswered, float]:
        """Check-then-act: the check is now, the unconditional write lands up to G later."""
        self.calls["gateway"] += 1
        sc = self.sc
        delay = self.latency(sc.gateway_latency)
        if self._down(self.gateway_down, self.env.now):
            return WriteAnswered(WriteOutcome.UNKNOWN, detail=_OUTAGE), delay
        job = self.jobs[job_id]
        # A double hand-out to a poller that did not say who it is (``getJob`` is not signed:
        # the live emulator's anonymous pollers, such as the production gateway client) is
        # taken up by the next accept of the job from anyone but its owner: until session 32
        # it was kept for "anonymous", whose accept never comes, so no getJob client of
        # ``sim serve`` ever met the lie (a review of the world against the contract).
        lied_to = did if (did, job_id) in self._lying else None
        if lied_to is None and (ANONYMOUS, job_id) in self._lying and job.owner != did:
            lied_to = ANONYMOUS
        lying = lied_to is not None
        if lying:
            self._lying.discard((lied_to, job_id))
        # An accept's draws are keyed by the job, its assignment, whether it is the double
        # hand-out's, and how many such accepts came before: the legitimate and the lying
        # accept of job j's k-th assignment land alike in every chain (CRN).
        handouts = self.handouts.get(job_id, 0)  # the assignments before this accept's
        key = (job_id, handouts, lying)
        n = self._accepts[key] = self._accepts.get(key, 0) + 1
        draws = self._keyed("gateway.accept", job_id, handouts, int(lying), n)
        free = job.status in CLAIMABLE_STATUSES and job.owner is None
        if not free and lying and job.owner != did and job.status in PROCESSABLE_STATUSES:
            # The check of a double-handed accept reads the job as it was up to G ago (inside
            # the timing model), or not at all (blind_accept_rate: outside the model).
            free = misses(job.owned_at, self.env.now - sc.write_delay, self.env.now) or (
                draws.random() < sc.blind_accept_rate)
        if not free:
            return _NOT_AVAILABLE, delay  # the real gateway says a generic 500
        if job.owner not in (None, did) or job.pending not in (None, did):
            # Both answered OK; the last writer will own the job.
            self.history.add(self.env.now, WORLD, job_id, "lie", "info",
                             ("double-accept", encoder_name(did)))
        job.pending = did
        if draws.random() < sc.late_write_rate:
            # After the reply, but never later than G after the request (inside the model).
            land = min(delay + draws.random() * max(sc.write_delay - delay, 0.0),
                       sc.write_delay)
            if self._edge(draws):
                land = sc.write_delay  # exactly G after the request: the settle's edge
        else:
            land = draws.random() * min(delay, sc.write_delay)
        self.land(land, lambda: self._landed(job, did))
        if self._faulty() and self._strikes(draws.random() < sc.reply_loss_rate):
            return WriteAnswered(WriteOutcome.UNKNOWN, detail="timeout"), sc.gateway_timeout
        return OK, delay

    def _landed(self, job: Job, did: str) -> None:
        if job.pending == did:
            job.pending = None
        if job.id in self.committed:
            # Modelling assumption: a job with a committed result is terminal; a stale accept
            # landing on it is dropped. Were the gateway to reopen finished jobs, it would
            # commit a second result through its own owner-checked finish, and no client-side
            # fence could prevent it (S3 would depend on the gateway, not on the encoders).
            return
        self._assign(job, did, None)

    def gw_ping(self, did: str, job_id: str, progress: Progress | None = None
                ) -> tuple[WriteAnswered, float]:
        self.calls["gateway"] += 1
        delay = self.latency(self.sc.gateway_latency)
        if self._down(self.gateway_down, self.env.now):
            return WriteAnswered(WriteOutcome.UNKNOWN, detail=_OUTAGE), delay
        job = self.jobs[job_id]
        sc = self.sc
        if self._faulty() and sc.ping_loss_rate and self._strikes(
                self._lies.random() < sc.ping_loss_rate):
            return WriteAnswered(WriteOutcome.UNKNOWN, detail="timeout"), sc.gateway_timeout
        if self._faulty() and sc.ping_drop_rate and self._strikes(
                self._lies.random() < sc.ping_drop_rate):
            return OK, delay  # acknowledged, never written (outside the model)
        land = 0.0
        if sc.late_write_rate and self._delays.random() < sc.late_write_rate:
            # A ping is a write too: it may land up to G after its request (exactly G at the
            # edge), which is why a gateway ping proves nothing until a later read shows it.
            land = sc.write_delay if self._edge(self._delays) else (
                self._delays.random() * sc.write_delay)
        if land > 0:
            self.land(land, lambda: self._ping_landed(job, did, progress))
        else:
            self._ping_landed(job, did, progress)
        if self._faulty() and sc.reply_loss_rate and self._strikes(
                self._lies.random() < sc.reply_loss_rate):
            return WriteAnswered(WriteOutcome.UNKNOWN, detail="timeout"), sc.gateway_timeout
        return OK, delay  # answered OK to non-owners too

    def _ping_landed(self, job: Job, did: str, progress: Progress | None) -> None:
        """A gateway ping that counts: ``last_pinged`` and the progress; the job becomes
        ``running`` on the first ping with progress above 1 (the contract's lifecycle: a ping
        during the download, at 0, leaves it ``assigned``)."""
        if job.owner == did and job.status in PROCESSABLE_STATUSES:
            self._pinged(job, progress)
            if job.status == "assigned" and progress is not None and progress[0] > 1:
                self._write(job, status="running", owner=did, token=job.token)

    def gw_finish(self, did: str, job_id: str) -> tuple[WriteAnswered, float]:
        self.calls["gateway"] += 1
        delay = self.latency(self.sc.gateway_latency)
        if self._down(self.gateway_down, self.env.now):
            return WriteAnswered(WriteOutcome.UNKNOWN, detail=_OUTAGE), delay
        job = self.jobs[job_id]
        if job.owner != did or job.status not in PROCESSABLE_STATUSES:
            return _NOT_YOURS, delay
        sc = self.sc
        if sc.late_finish_rate and self._delays.random() < sc.late_finish_rate:
            # Check-then-act: checked now, written by id after the reply, up to G after the
            # request (``late_finish_rate``), on whatever assignment the job has by then.
            draws = self._delays
            land = min(delay + draws.random() * max(sc.write_delay - delay, 0.0),
                       sc.write_delay)
            if self._edge(draws):
                land = sc.write_delay
            self.land(land, lambda: self._finish_landed(job, did))
        else:
            self._finish_landed(job, did)
        return self._maybe_lost(OK, delay)

    def _finish_landed(self, job: Job, did: str) -> None:
        """A gateway finish's write: the result, status ``uploading``, then ``complete``. A job
        already committed is terminal (the modelling assumption of ``_landed``)."""
        if job.id in self.committed:
            return
        self._commit(job, did, "uploading")
        later = self._delays.uniform(self.sc.finish_complete_min, self.sc.finish_complete_max)
        self.env.timeout(later).callbacks.append(lambda _e: self._completed(job))

    def _maybe_lost(self, answer: WriteAnswered, delay: float) -> tuple[WriteAnswered, float]:
        """A gateway write whose reply is lost (``reply_loss_rate``): it landed, the encoder
        hears nothing until its client times out."""
        sc = self.sc
        if self._faulty() and sc.reply_loss_rate and self._strikes(
                self._lies.random() < sc.reply_loss_rate):
            return WriteAnswered(WriteOutcome.UNKNOWN, detail="timeout"), sc.gateway_timeout
        return answer, delay

    def _completed(self, job: Job) -> None:
        if job.status == "uploading":
            self._write(job, status="complete", owner=job.owner, token=job.token)

    def gw_release(self, did: str, job_id: str, failed: bool) -> tuple[WriteAnswered, float]:
        self.calls["gateway"] += 1
        delay = self.latency(self.sc.gateway_latency)
        if self._down(self.gateway_down, self.env.now):
            return WriteAnswered(WriteOutcome.UNKNOWN, detail=_OUTAGE), delay
        job = self.jobs[job_id]
        if job.owner != did or job.status not in PROCESSABLE_STATUSES:
            return _NOT_YOURS, delay
        # Every gateway give-back counts an attempt (the contract: fail, reject or reassign sends
        # the job back to the queue with ``attempt_count + 1``), a rejectJob as much as a
        # failJob: before session 32 only failJob counted, so a chain's give-backs never
        # brought a job nearer the fifth-attempt rule. ``cancelJob`` (which the contract does
        # not describe, and the verifier never sends) is taken to count as well.
        self._requeue(job, "failJob" if failed else "rejectJob",
                      counted=failed or self.sc.reject_counts_attempt > 0)
        return self._maybe_lost(OK, delay)

    def gw_status(self, did: str, job_id: str) -> tuple[Observed | TierFailed, float]:
        self.calls["gateway"] += 1
        delay = self.latency(self.sc.gateway_latency)
        if self._down(self.gateway_down, self.env.now):
            return TierFailed(Tier.GATEWAY, _OUTAGE), delay
        job = self.jobs[job_id]
        # The lie is drawn per (job, asker, k-th such question): common to the chains that ask.
        if self._faulty() and self._strikes(self._next_keyed(
                "gateway.status", job_id, did).random() < self.sc.status_lie_rate):
            return self.observation(Tier.GATEWAY, job_id, ("assigned", did, None)), delay
        return self.observation(Tier.GATEWAY, job_id, (job.status, job.owner, None)), delay

    # ------------------------------------------------------------------ gateway monitor

    def monitor_read(self, job_id: str) -> tuple[Observed | TierFailed, float]:
        self.calls["monitor"] += 1
        sc, rng, now = self.sc, self._monitor, self.env.now
        if self._hangs():
            return TierFailed(Tier.MONITOR, "timeout"), sc.client_timeout
        delay = self.latency(sc.monitor_latency)
        faulty = self._faulty()
        if self._down(self.monitor_down, now) or (faulty and self._strikes(
                rng.random() < sc.monitor_error_rate)):
            return _FETCH_FAILED, delay
        draw = rng.random() if faulty else 1.0
        if self._strikes(draw < sc.monitor_synthetic_rate):
            # Its database view is down: the real server answers 200 with a stand-in it builds
            # from the legacy gateway's status answer, so the stand-in carries the *gateway's*
            # view, lies included (status_lie_rate: "assigned" to an encoder the gateway handed
            # the job to; the server's request names no asker, so the lie picks one of them).
            # With the gateway unreachable too, the server has nothing to build it from: 500.
            # The lie and its victim come from the one draw that chose this branch (below the
            # rate, draw / rate is uniform again), so no answer draws more than it used to.
            if self._down(self.gateway_down, now):  # after waiting for it, as below
                return self._gateway_wait(_FETCH_FAILED, delay, 1)
            job = self.jobs[job_id]
            status, owner = job.status, job.owner
            told = sorted({*job.epoch_of_did, *([job.pending] if job.pending else [])})
            lie = draw / sc.monitor_synthetic_rate
            if told and lie < sc.status_lie_rate:
                victim = lie / sc.status_lie_rate
                status, owner = "assigned", told[min(int(victim * len(told)), len(told) - 1)]
            stand_in = GatewayMonitorJob(id=job_id, status=status, assigned_to=owner,
                                         synthetic=True)
            return Observed(Observation(Tier.MONITOR, stand_in)), delay
        lag = min(rng.expovariate(1.0 / sc.monitor_lag_mean), sc.monitor_lag) if (
            sc.monitor_lag_mean > 0) else 0.0
        if self._edge(rng):
            lag = sc.monitor_lag  # exactly Δ behind: the deciding read's edge
        if faulty and sc.monitor_lag_tail and self._strikes(rng.random() < sc.monitor_lag_tail):
            lag = sc.monitor_lag * sc.monitor_lag_tail_factor
        state = self.jobs[job_id].as_of(now - lag + TIE_S)
        if self._down(self.gateway_down, now) and (
                state is None or state[0] in PROCESSABLE_STATUSES):
            # The real server asks the gateway before it answers: for the overlay of a held
            # job (then the stored record, 200), or for a stand-in of a job its database view
            # lacks (then 500). A silent gateway is waited for (docs/contract.md, "Overlay
            # wait"), and a client whose timeout is shorter gives up first.
            if state is None:
                return self._gateway_wait(_FETCH_FAILED, delay, 1)
            return self._gateway_wait(self.observation(Tier.MONITOR, job_id, state), delay, 1)
        return self.observation(Tier.MONITOR, job_id, state), delay

    def _gateway_wait(self, answer: Any, delay: float, rounds: int) -> tuple[Any, float]:
        """``answer`` from a monitor that first waits ``rounds`` times for a silent gateway
        (``gateway_timeout`` each), or, when that outlasts the client's ``client_timeout``, the
        client's own timeout: no answer (``None`` for a batch, else a failed read). The live
        emulator's monitor waited so (``sim/live/_emulator.py``) while the simulated one
        answered at once (an adversarial review of the world, 2026-12-05)."""
        sc = self.sc
        waited = delay + rounds * sc.gateway_timeout
        if waited > sc.client_timeout and self.cut_waits_at_client_timeout:
            timeout = None if isinstance(answer, dict) else TierFailed(Tier.MONITOR, "timeout")
            return timeout, sc.client_timeout
        return answer, waited

    def monitor_batch(self, job_ids: list[str]) -> tuple[dict[str, str] | None, float]:
        """``POST /jobs/batch-status``: ``{id: status}`` as the monitor's lagging view has them
        (one lag for the batch), ``None`` when the request fails (an outage, an error), and
        ``{}`` when the gateway is down (the real server's quirk: every id unknown), after
        the server's wait for the silent gateway (``None`` if the client gives up first), or
        after a 429 (``throttle_rate``: the screen is an optimisation, its hint is dropped, as
        the production loop drops it)."""
        self._flush()
        if self.sc.throttle_rate and self.throttled(Tier.MONITOR) is not None:
            return None, self.latency(self.sc.monitor_latency)
        self.calls["monitor"] += 1
        sc, rng, now = self.sc, self._monitor, self.env.now
        delay = self.latency(sc.monitor_latency)
        if self._down(self.monitor_down, now) or (
                self._faulty() and self._strikes(rng.random() < sc.monitor_error_rate)):
            return None, delay
        if self._down(self.gateway_down, now):
            # Every id unknown, and late: the real server asks the gateway five ids at a time,
            # each round waiting out its timeout (docs/contract.md: 50 ids took about 100 s),
            # so a client whose timeout is shorter gets no answer at all.
            return self._gateway_wait({}, delay, math.ceil(len(job_ids) / BATCH_ROUND))
        lag = min(rng.expovariate(1.0 / sc.monitor_lag_mean), sc.monitor_lag) if (
            sc.monitor_lag_mean > 0) else 0.0
        if self._edge(rng):
            lag = sc.monitor_lag
        statuses: dict[str, str] = {}
        for job_id in job_ids:
            state = self.jobs[job_id].as_of(now - lag + TIE_S)
            if state is not None:
                statuses[job_id] = state[0]
        return statuses, delay

    # ------------------------------------------------------------------ database (infra nodes)

    def _hangs(self) -> bool:
        """Whether this request hangs until its client gives up (``hang_rate``). Drawn from a
        stream of its own, and nothing when the rate is 0, so other draws keep their
        sequences and worlds without hangs their histories."""
        return bool(self.sc.hang_rate) and self._faulty() and self._strikes(
            self._hang.random() < self.sc.hang_rate)

    def _hung_write(self, write: Callable[[], object], timeout: float, tier: str,
                    token: str | None = None) -> tuple[WriteAnswered, float]:
        """A write that hangs: done or not, each half the time, and answered "unknown" only
        when its client gives up."""
        if self._hang.random() < 0.5:
            write()  # done (and counted) as if it had answered
        else:
            self.calls[tier] += 1
        self.history.add(self.env.now, WORLD, None, "hang", "info", tier)
        return WriteAnswered(WriteOutcome.UNKNOWN, token=token, detail="timeout"), timeout

    def _db_fault(self) -> str | None:
        """A database call that fails (``database_error_rate``): ``"lost"`` (the write is done,
        the reply lost) or ``"dropped"`` (neither), each half the time; None otherwise."""
        sc = self.sc
        if not (sc.database_error_rate and self._faulty()):
            return None
        rng = self._delays
        if not self._strikes(rng.random() < sc.database_error_rate):
            return None
        return "lost" if rng.random() < 0.5 else "dropped"

    def db_read(self, job_id: str) -> tuple[Observed | TierFailed, float]:
        self.calls["database"] += 1
        if self._hangs():
            return TierFailed(Tier.DATABASE, "timeout"), self.sc.client_timeout
        job = self.jobs[job_id]
        state = (job.status, job.owner, job.token)
        delay = self.latency(self.sc.database_latency)
        if self._db_fault() is not None:
            return TierFailed(Tier.DATABASE, "timeout"), delay
        return self.observation(Tier.DATABASE, job_id, state, token=True), delay

    def _db_write(self, write: Callable[[], tuple[WriteAnswered, float]],
                  token: str | None = None) -> tuple[WriteAnswered, float]:
        """A database write through ``_db_fault``. ``token``: the claim token the write sends,
        which its client knows (and says) whether or not the reply comes back."""
        if self._hangs():
            return self._hung_write(write, self.sc.client_timeout, "database", token)
        fault = self._db_fault()
        if fault is None:
            return write()
        delay = self.latency(self.sc.database_latency)
        if fault == "lost":
            sc, rng = self.sc, self._lost
            if sc.late_lost_write_rate and rng.random() < sc.late_lost_write_rate:
                # Applied by the server after the client gave up: up to G after the request.
                land = sc.write_delay if self._edge(rng) else rng.random() * sc.write_delay

                def apply() -> None:
                    write()  # its answer went nowhere: the client has given up
                self.land(land, apply)
            else:
                _, delay = write()
        return WriteAnswered(WriteOutcome.UNKNOWN, token=token, detail="timeout"), delay

    def db_claim(self, did: str, job_id: str, conditional: bool, token: str | None = None
                 ) -> tuple[WriteAnswered, float]:
        """``token``: the client's claim token (the live emulator's database clients choose
        their own, as the production ``DatabaseTier`` does); by default the assignment epoch."""
        self.calls["database"] += 1
        delay = self.latency(self.sc.database_latency)
        job = self.jobs[job_id]
        if conditional and not (job.status in CLAIMABLE_STATUSES and job.owner is None):
            return _NOT_AVAILABLE, delay
        token = token or f"{job.epoch + 1}"
        self._assign(job, did, token)
        return WriteAnswered(WriteOutcome.OK, token=token), delay

    def _fenced(self, job: Job, did: str, token: str | None) -> bool:
        return job.owner == did and job.token == token and job.status in PROCESSABLE_STATUSES

    def db_heartbeat(self, did: str, job_id: str, token: str | None,
                     progress: Progress | None = None) -> tuple[WriteAnswered, float]:
        self.calls["database"] += 1
        delay = self.latency(self.sc.database_latency)
        job = self.jobs[job_id]
        if not self._fenced(job, did, token):
            return _NOT_YOURS, delay
        self._pinged(job, progress)
        if job.status == "assigned":
            self._write(job, status="running", owner=did, token=token)
        return OK, delay

    def db_finish(self, did: str, job_id: str, token: str | None, fenced: bool
                  ) -> tuple[WriteAnswered, float]:
        self.calls["database"] += 1
        delay = self.latency(self.sc.database_latency)
        job = self.jobs[job_id]
        if fenced and not self._fenced(job, did, token):
            return _NOT_YOURS, delay
        self._commit(job, did, "complete", token=token)  # unfenced: defect 6's force-complete
        return OK, delay

    def db_release(self, did: str, job_id: str, token: str | None, failed: bool
                   ) -> tuple[WriteAnswered, float]:
        self.calls["database"] += 1
        delay = self.latency(self.sc.database_latency)
        job = self.jobs[job_id]
        if not self._fenced(job, did, token):
            return _NOT_YOURS, delay
        self._requeue(job, "released as failed" if failed else "released", counted=failed)
        return OK, delay

    # ------------------------------------------------------------------ gateway aid

    def _aid_down(self) -> bool:
        """Gateway Aid is served by the monitor's server (docs/contract.md, "Gateway Aid"), so
        a monitor outage takes it down too; it was down only in the gateway's outages (an
        adversarial review of the world, 2026-12-05). Those are kept: the live emulator's
        tests rely on them, and an aid answering nothing is the adversary's to choose."""
        now = self.env.now
        return self._down(self.monitor_down, now) or self._down(self.gateway_down, now)

    def _aid_write(self, write: Callable[[], tuple[WriteAnswered, float]]
                   ) -> tuple[WriteAnswered, float]:
        """An aid write, unless it hangs (``hang_rate``): then done or not, and answered
        "unknown" only when its client gives up (``aid_timeout``)."""
        if self._hangs():
            return self._hung_write(write, self.sc.aid_timeout, "aid")
        return write()

    def aid_claim(self, did: str, job_id: str) -> tuple[WriteAnswered, float]:
        """Atomic conditional update, evaluated when it lands (409 when taken)."""
        self.calls["aid"] += 1
        delay = self.latency(self.sc.aid_latency)
        if self._aid_down():
            return WriteAnswered(WriteOutcome.UNKNOWN, detail=_OUTAGE), delay
        job = self.jobs[job_id]
        # The contract's filter is ``status: pending`` (Aid's own lifecycle); the world's jobs
        # are the gateway's (``queued``), so with ``aid_pending_only`` every one is refused.
        claimable = (job.status == "pending" if self.sc.aid_pending_only > 0
                     else job.status in CLAIMABLE_STATUSES)
        if not (claimable and job.owner is None):
            return WriteAnswered(WriteOutcome.REFUSED, detail="409 JOB_ALREADY_ASSIGNED"), delay
        self._assign(job, did, None)
        return OK, delay

    def aid_heartbeat(self, did: str, job_id: str, progress: Progress | None = None
                      ) -> tuple[WriteAnswered, float]:
        self.calls["aid"] += 1
        delay = self.latency(self.sc.aid_latency)
        if self._aid_down():
            return WriteAnswered(WriteOutcome.UNKNOWN, detail=_OUTAGE), delay
        job = self.jobs[job_id]
        if job.owner != did or job.status not in PROCESSABLE_STATUSES:
            return _NOT_YOURS, delay
        self._pinged(job, progress)
        return OK, delay

    def aid_finish(self, did: str, job_id: str) -> tuple[WriteAnswered, float]:
        self.calls["aid"] += 1
        delay = self.latency(self.sc.aid_latency)
        if self._aid_down():
            return WriteAnswered(WriteOutcome.UNKNOWN, detail=_OUTAGE), delay
        job = self.jobs[job_id]
        if job.owner != did or job.status not in PROCESSABLE_STATUSES:
            return _NOT_YOURS, delay
        self._commit(job, did, "completed")
        return OK, delay

    # ------------------------------------------------------------------ the protocol's requests

    def serve(self, did: str, job_id: str, action: Any) -> tuple[Any, float, str, Any]:
        """Answer one I/O action of encoder ``did``'s protocol, as sent now.

        Returns the answer, the reply delay, and the completion record's phase and value (for
        the history). This is the one mapping from protocol requests to services, shared by
        every driver of the world (the SimPy encoders, the conformance state machine).
        """
        kind = type(action)
        if self.sc.throttle_rate:
            tier = action.tier if kind is Observe else action.via
            hint = self.throttled(tier)
            if hint is not None:
                return _rate_limited(action, hint, tier), self.latency(self._latency_of(tier)), \
                    "fail", tier
        if kind is Observe:
            self._flush()
            tier = action.tier
            if tier is Tier.DATABASE:
                read, delay = self.db_read(job_id)
            elif tier is Tier.MONITOR:
                read, delay = self.monitor_read(job_id)
            elif tier is Tier.GATEWAY:
                read, delay = self.gw_status(did, job_id)
            else:
                return TierFailed(tier, "no read endpoint in the simulator"), 0.0, "fail", tier
            if isinstance(read, Observed):
                owner = read.observation.owner
                name = encoder_name(owner) if owner else None
                return read, delay, "ok", (tier, name, read.observation.status)
            return read, delay, "fail", tier
        via = action.via
        answer: WriteAnswered
        if kind is Claim:
            if via is Tier.GATEWAY:
                answer, delay = self.gw_accept(did, job_id)
            elif via is Tier.DATABASE:
                # The client chooses its claim token before sending, as the production
                # database tier does, so an unknown outcome still names it.
                self.claims_sent += 1
                token = f"c{self.claims_sent}"
                answer, delay = self._db_write(
                    lambda: self.db_claim(did, job_id, action.conditional, token), token)
            else:
                answer, delay = self._aid_write(lambda: self.aid_claim(did, job_id))
        elif kind is Heartbeat:
            progress = (action.pct, action.download_pct)
            if via is Tier.GATEWAY:
                answer, delay = self.gw_ping(did, job_id, progress)
            elif via is Tier.DATABASE:
                answer, delay = self._db_write(
                    lambda: self.db_heartbeat(did, job_id, action.token, progress))
            else:
                answer, delay = self._aid_write(lambda: self.aid_heartbeat(did, job_id, progress))
        elif kind is Finish:
            if via is Tier.GATEWAY:
                answer, delay = self.gw_finish(did, job_id)
            elif via is Tier.DATABASE:
                answer, delay = self._db_write(
                    lambda: self.db_finish(did, job_id, action.token, action.fenced))
            else:
                answer, delay = self._aid_write(lambda: self.aid_finish(did, job_id))
        elif kind is Release:
            # A give-back the protocol holds back until its own claim's write must have
            # landed (G + ε after the claim's answer) sees that write when it lands at that
            # very instant, as a read does (the tie rule): the two instants are float sums
            # computed two ways, and one ulp put the give-back first, refused, the job held
            # until T while the run said nothing was held (the give-back check in the edge
            # family `give-back`, seed 166, once session 45 moved the shutdown's delivery).
            self._flush()
            if via is Tier.GATEWAY:
                answer, delay = self.gw_release(did, job_id, action.failed)
            elif via is Tier.DATABASE:
                answer, delay = self._db_write(
                    lambda: self.db_release(did, job_id, action.token, action.failed))
            else:
                answer, delay = _UNSUPPORTED, 0.0
        else:
            raise TypeError(f"{kind.__name__} is not a request to the network")
        return answer, delay, _PHASE.get(answer.outcome, "info"), via

    def land(self, delay: float, callback: Callable[[], None]) -> None:
        """A write landing ``delay`` from now. It is applied before anything else that happens
        at that instant (SimPy's urgent priority), so a read at the very instant a write lands
        sees it: "the database as of t" includes the writes that landed at t, which is what the
        settle's inequalities count on when every bound is reached exactly."""
        entry: list[Callable[[], None] | None] = [callback]
        self._landing_order += 1
        heapq.heappush(self._landing, (self.env.now + delay, self._landing_order, entry))
        event = simpy.Event(self.env)
        event._ok, event._value = True, None  # a timeout's state, scheduled urgent
        event.callbacks.append(lambda _e: self._landed_now(entry))
        self.env.schedule(event, simpy.events.URGENT, delay)

    def _landed_now(self, entry: list[Callable[[], None] | None]) -> None:
        """A write's own landing event: applied unless a read applied it already, and the
        writes already applied dropped from the front of the queue (landings come in time
        order, so a run whose chains read nothing does not keep them all)."""
        _apply(entry)
        landing = self._landing
        while landing and landing[0][2][0] is None:
            heapq.heappop(landing)

    def _flush(self) -> None:
        """Before a read: apply the writes landing within TIE_S from now (the tie rule)."""
        landing, limit = self._landing, self.env.now + TIE_S
        while landing and landing[0][0] <= limit:
            _apply(heapq.heappop(landing)[2])

    def schedule(self, delay: float, callback: Callable[[], None]) -> None:
        self.env.timeout(delay).callbacks.append(lambda _e: callback())


def _apply(entry: list[Callable[[], None] | None]) -> None:
    """Apply a landing write once, whichever comes first: its event or a read's flush."""
    callback, entry[0] = entry[0], None
    if callback is not None:
        callback()


def _rate_limited(action: Any, hint: float, tier: Tier) -> Any:
    """A 429's answer to ``action``: no read, or a write whose outcome the client cannot know
    (it was not served, which only the world knows: its record says "fail")."""
    if isinstance(action, Observe):
        return TierFailed(tier, _THROTTLED, retry_after=hint)
    return WriteAnswered(WriteOutcome.UNKNOWN, detail=_THROTTLED, retry_after=hint)


def request_record(action: Any) -> tuple[str, Any]:
    """The history op and invoke value of a protocol request (``verify``, ``claim``, ...)."""
    kind = type(action)
    if kind is Observe:
        return "verify", (action.tier, action.purpose)
    return _OPS[kind], action.via


_OPS: Final = {Claim: "claim", Heartbeat: "heartbeat", Finish: "commit", Release: "release"}
_PHASE: Final = {WriteOutcome.OK: "ok", WriteOutcome.REFUSED: "fail"}
_UNSUPPORTED: Final = WriteAnswered(WriteOutcome.UNKNOWN, detail="not supported by this tier")


def encoder_name(did: str) -> str:
    """History records name encoders by their short name (the DID's last segment)."""
    return did.rsplit(":", 1)[-1]

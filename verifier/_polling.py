"""The encoder loop's decisions, as pure code: which source to ask, which offered job to try,
how long to wait; no I/O, no clock (sans-I/O, as :mod:`verifier.protocol` is for one job).

:class:`LoopPolicy` is the data (sources, concurrency, idle back-off, cool-down) and
:class:`PollSchedule` the state machine that applies it: a driver asks
:meth:`PollSchedule.next` what to do now (:class:`PollSource`: ask a source; :class:`IdleUntil`:
wait; :class:`AllSlotsBusy`: wait for a job to end), performs it, and reports what happened
(:meth:`~PollSchedule.offered`, :meth:`~PollSchedule.poll_failed`,
:meth:`~PollSchedule.started`, :meth:`~PollSchedule.ended`), every report carrying the
driver's clock. Two drivers run it: :class:`~verifier.EncoderLoop`
(asyncio, production) and the simulator's encoders (SimPy), so what the conformance suites
prove about when an encoder polls (L1's hand-out, docs/safety-model.md) is about the loop that
ships, not a model of it (an adversarial review of the drivers, session 28, found the
simulator's own loop had no cool-down and no back-off, and the shipped one a wait the
simulator never showed).

Whether a job is ours is never decided here: an offered job is only a candidate; the
protocol claims and verifies it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Protocol, TypeVar

# The longest ``Retry-After`` the loop honours, from when it was told: the protocol's (a
# guarded job's hint is capped there, where it is told; a source's here).
from .protocol import MAX_RETRY_AFTER_S

__all__ = [
    "BACK_OFF_CODES",
    "LOST_CLAIM_CODES",
    "MAX_RETRY_AFTER_S",
    "OFFER_SOURCES",
    "SKIPPED_AT_ONCE_CODES",
    "SOURCE_SERVERS",
    "TIER_TROUBLE_CODES",
    "AllSlotsBusy",
    "IdleUntil",
    "LoopPolicy",
    "LoopStep",
    "Offer",
    "PollSchedule",
    "PollSource",
]

#: Where offered jobs can come from: the legacy gateway's two polls, and Gateway Aid's list.
OFFER_SOURCES: Final = ("myjob", "getjob", "aid")
#: The server each offer source asks. A 429's ``Retry-After`` is the server's word, so it
#: holds every source on that server: ``myjob`` and ``getjob`` are two calls of the one
#: legacy gateway (:func:`verifier.offer_sources` builds both on one
#: :class:`~verifier.LegacyGatewayClient`, from ``GATEWAY_URL``), ``aid`` is Gateway Aid. Held
#: per source, a 429 on ``myJob`` left ``getJob`` asked at once, of the gateway that had just
#: said to wait (found by an adversarial review of the loop, session 46). Gateway Aid is
#: served by the monitor's host (docs/contract.md), which is no offer source: a driver whose
#: servers are laid out otherwise passes its own map (``PollSchedule(servers=...)``).
SOURCE_SERVERS: Final[Mapping[str, str]] = MappingProxyType(
    {"myjob": "gateway", "getjob": "gateway", "aid": "aid"})
#: Outcome codes of a job given up because a tier could not answer: the next poll waits the
#: idle back-off, as after an empty poll, so an outage is not met with poll, read, give up,
#: poll again, as fast as the network allows.
TIER_TROUBLE_CODES: Final = frozenset({
    "PRE_CLAIM_FAILED", "CLAIM_UNKNOWN", "VERIFICATION_FAILED", "UNCONFIRMED",
    "LEASE_EXPIRED", "FINISH_UNKNOWN",
})
#: Outcome codes that back the loop off like tier trouble: the above, and work that failed. A
#: broken command (or a full disk) fails every job it is given, and each failure sends the
#: job back with one more attempt counted; without a back-off the encoder would burn through
#: the queue's attempts as fast as it can claim (found by an operator review, session 14).
#: ``GUARD_ERROR`` is the loop's own failure (an offered id the guard refuses, a guard that
#: raised): a source offering only such jobs was polled back to back, once per round trip
#: (1,200 polls a minute in an adversarial review, session 45).
BACK_OFF_CODES: Final = TIER_TROUBLE_CODES | {"WORK_FAILED", "GUARD_ERROR"}
#: Outcome codes of a job given up at once, before any wait: the pre-claim read showed it
#: taken or not available, the claim was refused, or no tier could confirm it. The first in
#: a row is followed by a poll at once (the gateway offered one job another holds: the next
#: offer may be good); from the second in a row the loop backs off as after empty polls.
#: Polled again at once each time, a source that keeps offering such jobs (new ids, so no
#: cool-down applies) was asked as fast as the tiers answered: 300 polls a minute in an
#: adversarial review of the encoder loop (session 44), where an empty source is asked
#: once a minute at most.
SKIPPED_AT_ONCE_CODES: Final = frozenset({
    "NOT_AVAILABLE", "PRE_CLAIM_CONFLICT", "CLAIM_REFUSED", "NO_CONFIRMING_TIER",
    # The guard runs the job already (another caller of the same guard): no request at all.
    "ALREADY_RUNNING",
})
#: Outcome codes of a claim race lost: the deciding read after the settle wait showed the job
#: another's (or nobody's: done, or back in the queue). Counted in the streak of jobs given
#: up at once, not as the end of it: the job was another's as surely as one whose pre-claim
#: read showed it taken, only learnt a settle wait later. As the end of a streak, a source
#: that keeps offering jobs we lose (``getJob`` offers every caller the same job), or such
#: jobs between jobs skipped at once, was asked again at once after each: about once per
#: settle wait (~12 s), never backed off, where a source offering nothing is asked once a
#: minute at most (an adversarial review of the loop, session 46). L1 is kept: the back-off
#: is the skips', counted from the job's end and capped at ``idle_max_s``, within the
#: hand-out's idle gap (docs/safety-model.md, "The shipped encoder loop"); the first in a
#: row is still followed by a poll at once.
#: ``MONITOR_THEFT_DETECTED`` is also the code of a job taken from us during its work (then
#: cancelled, not skipped). The schedule sees the code alone, as both drivers report it, so
#: such a job counts in the streak too: harmless, as it brings no wait the streak of skips
#: would not (at most ``idle_max_s`` from its end), and rare (inside the timing model no job
#: is taken from an encoder that still works on it).
LOST_CLAIM_CODES: Final = frozenset({"OWNERSHIP_CONFLICT", "MONITOR_THEFT_DETECTED",
                                     "NOT_ASSIGNED"})


class Offer(Protocol):
    """An offered job as the schedule sees it: only its id (a
    :class:`~verifier.GatewayMonitorJob` in production; the simulator passes lighter ones)."""

    @property
    def id(self) -> str: ...


_O = TypeVar("_O", bound=Offer)


class _Uniform(Protocol):
    """The schedule's randomness (``random.Random``, a SimPy encoder's stream): the driver's,
    so a seeded run replays."""

    def random(self) -> float: ...


@dataclass(frozen=True)
class LoopPolicy:
    """Which offered job to try and when to ask again: data, not code paths.

    * ``sources``: asked in this order at each poll; the first that offers a job the policy
      accepts wins (``myjob``, a job the gateway pre-assigned to us, before ``getjob``, the
      queue offered to everyone).
    * ``concurrency``: jobs guarded at once.
    * ``idle_s``, ``idle_max_s``, ``idle_factor``: after a poll that offered nothing (or
      failed), or a job given up because a tier could not answer or its work failed
      (:data:`BACK_OFF_CODES`), or the second job in a row given up at once
      (:data:`SKIPPED_AT_ONCE_CODES`) or on a claim race lost (:data:`LOST_CLAIM_CODES`),
      wait ``idle_s``, then ``idle_factor`` times longer after each further one, jittered
      (below), at most ``idle_max_s`` in all (the deployed encoder polls once a minute); any
      other outcome resets it.
      A source that answered 429 with ``Retry-After`` is not asked again sooner than it said,
      nor is any other source on its server (:data:`SOURCE_SERVERS`), and no job starts
      before a ``Retry-After`` a tier gave a guarded job has run out
      (:attr:`GuardOutcome.retry_after`).
    * ``jitter``: each wait is scaled by a uniform factor in ``[1 - jitter, 1 + jitter]``, so
      encoders started together do not poll in step (the deployed one polls "at a random
      second").
    * ``cooldown_s``: a job that ended without being processed (skipped, cancelled, failed) is
      not tried again for this long: the gateway keeps offering a job another encoder holds
      until it notices, and retrying at once would only claim it again to lose it again.
    * ``screen_at_least``: an offer of at least this many jobs is screened in one batch status
      request before any is tried (when the driver has a screen: ``EncoderLoop(screen=...)``).
      Two by default: screening a single offered job costs the request the pre-claim read it
      saves.
    """

    sources: tuple[str, ...] = ("myjob", "getjob")
    concurrency: int = 1
    idle_s: float = 10.0
    idle_max_s: float = 60.0
    idle_factor: float = 2.0
    jitter: float = 0.5
    cooldown_s: float = 60.0
    screen_at_least: int = 2

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("LoopPolicy.sources: at least one source is needed")
        unknown = [s for s in self.sources if s not in OFFER_SOURCES]
        if unknown:
            raise ValueError(f"LoopPolicy.sources: unknown {unknown}; choose from "
                             f"{', '.join(OFFER_SOURCES)}")
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) \
                or self.concurrency < 1:
            raise ValueError("LoopPolicy.concurrency must be a whole number, at least 1")
        for name in ("idle_s", "idle_max_s", "cooldown_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"LoopPolicy.{name} must be a finite number of seconds >= 0")
        if self.idle_max_s < self.idle_s:
            raise ValueError("LoopPolicy.idle_max_s must be at least idle_s")
        if not math.isfinite(self.idle_factor) or self.idle_factor < 1:
            raise ValueError("LoopPolicy.idle_factor must be at least 1")
        if isinstance(self.screen_at_least, bool) or not isinstance(self.screen_at_least, int) \
                or self.screen_at_least < 1:
            raise ValueError("LoopPolicy.screen_at_least must be a whole number, at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("LoopPolicy.jitter must be in [0, 1)")

    def idle_delay(self, empty_polls: int, u: float) -> float:
        """The wait after the ``empty_polls``-th empty poll in a row (1 = the first);
        ``u`` is a uniform draw in [0, 1) (the caller's random source, for determinism)."""
        exponent = max(0, empty_polls - 1)
        # The base is capped so that the jittered wait never passes idle_max_s, the longest
        # wait as documented (the jitter took it 50% past: an adversarial review, session 21),
        # while staying uniform (capping after the jitter put half the draws at the cap, and
        # encoders started together back in step).
        cap = self.idle_max_s / (1.0 + self.jitter)
        try:
            # A float power: it raises past the float range (a long idle streak, a large
            # factor) where an int one would grow without end. The old shortcut, the cap past
            # 64 growths, ignored the factor (10 s waits jumped to 60 at the 66th empty poll
            # with a factor of 1) and came too late for a large one (1e10 ** 31 overflowed):
            # mutation testing, session 31.
            grown = self.idle_s * float(self.idle_factor) ** exponent
        except OverflowError:
            grown = math.inf if self.idle_s > 0 else 0.0
        base = min(cap, grown)
        return base * (1.0 - self.jitter + 2.0 * self.jitter * u)

    def choose(
        self,
        offered: Sequence[_O],
        *,
        running: Collection[str],
        cooling: Mapping[str, float],
        now: float,
    ) -> _O | None:
        """The first offered job not running here and not cooling down (``cooling``: job id →
        the instant its cool-down ends), or ``None``. A candidate only: the guard decides."""
        for job in offered:
            if job.id in running or cooling.get(job.id, -math.inf) > now:
                continue
            return job
        return None


@dataclass(frozen=True)
class PollSource:
    """Ask ``source`` for offered jobs; report with :meth:`PollSchedule.offered` or
    :meth:`PollSchedule.poll_failed`."""

    source: str


@dataclass(frozen=True)
class IdleUntil:
    """Ask nothing before ``until`` (the driver's clock); a job ending may end the wait early
    (the driver asks :meth:`PollSchedule.next` again then), as may a stop."""

    until: float


@dataclass(frozen=True)
class AllSlotsBusy:
    """Every slot holds a job: wait for one to end (:meth:`PollSchedule.ended`)."""


#: What :meth:`PollSchedule.next` asks of the driver.
LoopStep = PollSource | IdleUntil | AllSlotsBusy
_ALL_BUSY: Final = AllSlotsBusy()


class PollSchedule:
    """The loop's state and its decisions: when to poll which source, which offered job to
    try, how long to wait. One per encoder process (a restarted process starts afresh).

    A *round* asks the sources in order (:meth:`next` returns one :class:`PollSource` after
    another) until one offers a job the policy accepts (:meth:`offered` returns it: start it,
    then report :meth:`started`); a round in which none does is an empty poll, and
    :meth:`next` returns the idle wait. ``rng`` draws the jitter, one draw per wait.
    ``servers``: source -> the server it asks (default :data:`SOURCE_SERVERS`; a source it
    leaves out is a server of its own): a 429 holds every source on its server.
    """

    def __init__(self, policy: LoopPolicy, rng: _Uniform, *,
                 servers: Mapping[str, str] | None = None) -> None:
        self.policy = policy
        self._rng = rng
        served = SOURCE_SERVERS if servers is None else servers
        #: Source -> its server, the key a ``Retry-After`` is held under.
        self._server = {source: served.get(source, source) for source in policy.sources}
        #: Jobs guarded now.
        self.running: set[str] = set()
        #: Job id -> the instant its cool-down ends.
        self.cooling: dict[str, float] = {}
        #: Empty polls in a row (the idle back-off's exponent).
        self._empty_polls = 0
        #: Jobs in a row given up because a tier could not answer, or whose work failed, and
        #: when the latest job that calls for a back-off ended, if the loop still owes it
        #: (None: it does not).
        self._troubled = 0
        self._back_off: float | None = None
        #: Jobs in a row given up at once (:data:`SKIPPED_AT_ONCE_CODES`) or on a claim race
        #: lost (:data:`LOST_CLAIM_CODES`), and the exponent
        #: of the back-off owed (tier trouble's count, or these less the first).
        self._skipped = 0
        self._owed = 0
        #: No job starts before this instant: a guarded job's tier answered 429 with
        #: ``Retry-After`` (the next job's first read would ask it again at once), or the
        #: back-off after tier trouble, once drawn. Kept until it has passed.
        self._hold_until = -math.inf
        #: Server -> the instant before which none of its sources is asked again: one of them
        #: answered 429 with ``Retry-After``. Per server, not for the whole loop, because
        #: another server's source may offer a job meanwhile (then no idle wait comes) and a
        #: back-off or a free slot may end sooner; per server, not per source, because the
        #: server said it (see :data:`SOURCE_SERVERS`).
        self._not_before: dict[str, float] = {}
        #: The earliest instant a job this round passed over because it was cooling down may
        #: be tried: no empty poll's wait goes past it. Each such poll counted as empty, so the
        #: wait kept doubling while the job's cool-down ran out (an adversarial review of the
        #: drivers, session 28: a job skipped once by a lagging pre-claim read waited 97 s,
        #: not the cool-down's 60).
        self._cooled_at = math.inf
        #: The sources still to ask in this round (None: no round under way), and whether
        #: the round has asked any yet.
        self._round: list[str] | None = None
        self._asked = False
        #: One step per source, made once (values: the simulator asks at every poll).
        self._polls = {source: PollSource(source) for source in policy.sources}

    def next(self, now: float) -> LoopStep:
        """What to do at ``now``."""
        if self._round is not None and (self._back_off is not None or self._hold_until > now):
            # A hold or a back-off begun while the round was under way (another slot's job
            # ended meanwhile) ends the round: its next source is not asked inside it. Looked
            # at only when a round began (and in :meth:`offered`), it was, by a driver that
            # reports a failed poll with :meth:`poll_failed` alone, as :class:`PollSource`
            # allows and the simulator's driver does on a 429 (an adversarial review of the
            # loop, session 46).
            self._round = None
        if self._round is None:
            if len(self.running) >= self.policy.concurrency:
                return _ALL_BUSY
            if self._back_off is not None or self._hold_until > now:
                # The last job was given up because a tier could not answer: back off before
                # asking again, however eagerly the gateway offers; and never sooner than a
                # tier's Retry-After. The back-off counts from the job's end, so time the
                # driver spent meanwhile (an idle wait running when another slot's job
                # ended, the simulator's pause after an attempt) is part of it, not added to
                # it: added, an encoder with two slots waited out an idle wait and then the
                # whole back-off, twice the longest wait its policy states (an adversarial
                # review, session 29).
                if self._back_off is not None:
                    # Drawn once, and kept as an instant until it has passed: a driver that
                    # asks again before it (a wait ended early) is told to wait again. Reset
                    # on the first IdleUntil, the hold was forgotten by the next ask, and the
                    # simulator's encoders, woken early, polled inside a back-off or a
                    # Retry-After (an adversarial review, session 30: 447 holds cut short).
                    self._hold_until = max(self._hold_until, self._back_off + (
                        self.policy.idle_delay(self._owed, self._rng.random())))
                    self._back_off = None
                if self._hold_until > now:
                    return IdleUntil(self._hold_until)
            self._round = list(self.policy.sources)
            self._cooled_at = math.inf
            self._asked = False
        while self._round:
            source = self._round.pop(0)
            if self._not_before.get(self._server[source], -math.inf) > now:
                continue  # its server said when to come back
            self._asked = True
            return self._polls[source]
        self._round = None
        # The first instant a source may be asked again: its server's Retry-After (429) has
        # run out. Not the latest of every server's: that held a server that had said nothing
        # for another's Retry-After (Gateway Aid's 600 s kept the gateway's polls, empty after
        # 10 s, waiting 600 s where its policy states 60 at most: an adversarial review,
        # session 46); a held server's sources are skipped in each round until then, above.
        free_at = min(self._not_before.get(self._server[s], -math.inf)
                      for s in self.policy.sources)
        if not self._asked:
            # Every source's server holds it: nothing was asked, so nothing came back empty.
            # Counted as an empty poll, with its idle wait drawn on top, such a round (a
            # back-off or a free slot ending while the gateway's Retry-After still ran) had
            # the next poll up to ``idle_max_s`` after that Retry-After, and past the idle gap
            # counted from the job's end (an adversarial review, session 46).
            return IdleUntil(free_at)
        self._empty_polls += 1
        delay = min(self.policy.idle_delay(self._empty_polls, self._rng.random()),
                    max(0.0, self._cooled_at - now))
        # A server that said when to come back (429 Retry-After) is not asked sooner.
        delay = max(delay, free_at - now)
        return IdleUntil(now + delay)

    def offered(self, source: str, jobs: Sequence[_O], now: float, *,
                held: Collection[str] = ()) -> _O | None:
        """``source`` answered ``jobs`` at ``now``: the job to try (start it, then report
        :meth:`started`), or ``None`` (ask :meth:`next` again). ``held``: ids a batch screen
        saw held (``assigned``, ``running``), tried after the others, not never: the holder
        may be us (a pre-claim check lets our own assignment through)."""
        self._prune(now)
        if self._back_off is not None or self._hold_until > now:
            # Another slot's job ended on a tier's trouble, or with a Retry-After, while this
            # poll was in flight: no job starts before the back-off or the hold is over (the
            # next ask says how long). Taken, it started inside the hold (an adversarial
            # review of the simulator's slots, session 30; both drivers did).
            self._round = None
            return None
        if held:
            jobs = sorted(jobs, key=lambda j: j.id in held)
        job = self.policy.choose(jobs, running=self.running, cooling=self.cooling, now=now)
        self._cooled_at = min([self._cooled_at, *(
            self.cooling[j.id] for j in jobs if j.id in self.cooling)])
        if job is not None:
            self._round = None
            self._empty_polls = 0
        return job

    def poll_failed(self, source: str, now: float, *, retry_after: float | None = None) -> None:
        """``source`` did not answer (fail closed: no offer is no claim); with 429's
        ``Retry-After`` (seconds), neither it nor any other source on its server is asked
        again sooner, and an empty round's wait ends no sooner than the first of the
        policy's sources may be asked."""
        hint = min(retry_after or 0.0, MAX_RETRY_AFTER_S)
        if hint > 0:
            server = self._server.get(source, source)
            self._not_before[server] = max(self._not_before.get(server, -math.inf), now + hint)

    def screen(self, jobs: Sequence[Offer], now: float) -> Iterator[str]:
        """The offered ids worth a batch status request, in the order offered: each once, not
        running here, not cooling down. None unless the offer has at least
        ``policy.screen_at_least`` jobs. The driver drops ids its cache already answers and
        ids the monitor would refuse, and sends at most one batch."""
        if len(jobs) < self.policy.screen_at_least:
            return
        self._prune(now)
        seen: set[str] = set()
        for job in jobs:
            if job.id in seen or job.id in self.running \
                    or self.cooling.get(job.id, -math.inf) > now:
                continue
            seen.add(job.id)
            yield job.id

    def started(self, job_id: str) -> None:
        """The driver started guarding ``job_id``."""
        self.running.add(job_id)

    def ended(self, job_id: str, now: float, *, processed: bool, code: str,
              retry_after: float | None = None) -> None:
        """``job_id``'s guard ended at ``now`` with outcome ``code``; ``processed``: its work
        was done and committed; ``retry_after``: a tier's 429 hint to the guard."""
        self.running.discard(job_id)
        if not processed:
            self.cooling[job_id] = now + self.policy.cooldown_s
        if code in BACK_OFF_CODES:
            self._troubled += 1
            self._skipped = 0
            self._owed = self._troubled
            self._back_off = now
        elif code in SKIPPED_AT_ONCE_CODES or code in LOST_CLAIM_CODES:
            self._troubled = 0
            self._skipped += 1
            if self._skipped > 1:
                self._owed = self._skipped - 1
                self._back_off = now
        else:
            self._troubled = self._skipped = 0
        self.rate_limited(now, retry_after)

    def rate_limited(self, now: float, retry_after: float | None) -> None:
        """A tier answered the driver 429 with ``Retry-After`` (seconds) at ``now``: a guarded
        job's (:meth:`ended`), or the driver's own batch screen: no job starts, and no source
        is asked, before it has run out (capped)."""
        if retry_after is not None and retry_after > 0:
            self._hold_until = max(self._hold_until, now + min(retry_after, MAX_RETRY_AFTER_S))

    def _prune(self, now: float) -> None:
        # Cool-downs that have run out: forgotten, so a long run's map does not grow.
        if any(t <= now for t in self.cooling.values()):
            self.cooling = {j: t for j, t in self.cooling.items() if t > now}

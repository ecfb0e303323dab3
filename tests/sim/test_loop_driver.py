"""The encoder loop's side of the simulator's driver (``Encoder.run``, ``_poll``, ``_slot``,
``attempt``, ``_screen``, ``_cached``), each rule checked where it acts.

Mutation testing of that side (session 42: 147 mutants, 39 survived) showed what no test
could tell: a shutdown that fell due during the pre-claim read no longer kept the run from
claiming; a batch screen's records, or its forgetting of an entry the batch outdated,
deleted; a 429 to a poll answered with no round trip; a slot free again the instant its
attempt ended; pushes that never reached a slot's protocol, or reached the next attempt;
two slots run one after the other (``tests/sim/test_encoder_loop.py`` now runs two slots and
three). Each test here fails on one of those mutants (checked by hand, session 43).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from conformance.families import FAMILIES
from conformance.worlds import BASE, World, race
from sim import run_once
from sim._encoder import Encoder, slot_pushed
from tests.sim.drivers import an_encoder, run_to_end
from verifier import Tier
from verifier.protocol import (
    Claim,
    Done,
    Hinted,
    Observe,
    Outcome,
    OutcomeKind,
    Sleep,
    Step,
    Woke,
    screened,
)

# ---- the shutdown: told to the protocol the moment it falls due, even during a request


def test_a_shutdown_due_during_the_pre_claim_read_keeps_the_run_from_claiming() -> None:
    """The asyncio driver calls ``request_shutdown`` when the signal comes, so a run still
    before its claim claims nothing (a claim then a release could leave the job held if the
    release failed). Deleting that call in the simulator's driver passed every suite: the
    shutdown family judged the give-back, not the claim avoided."""
    encoder = an_encoder()
    encoder.world.add_job("k", queued=False)  # offered to nobody: the test's own attempt
    env = encoder.env
    env.run(until=env.now + 10.0)  # past the monitor's lag: its view has the job queued
    start = env.now
    encoder.shutdown_at = start + 1e-6  # during the first request (its reply takes longer)
    outcome = run_to_end(encoder, encoder.attempt("k"))
    mine = [r for r in encoder.history.records if r[1] == encoder.name and r[2] == "k"]
    reads = [r for r in mine if r[3] == "verify" and r[4] == "invoke"]
    assert reads and reads[0][0] == start, mine
    answered = [r for r in mine if r[3] == "verify" and r[4] != "invoke"]
    assert answered and answered[0][0] > encoder.shutdown_at, mine  # it fell due in the read
    assert (outcome.kind, outcome.code) == (OutcomeKind.SKIPPED, "SHUTDOWN")
    assert not [r for r in mine if r[3] == "claim"], mine


# ---- the poll


@dataclass
class _PollLog:
    failed: list[tuple[str, float, float | None]] = field(default_factory=list)

    def poll_failed(self, source: str, now: float, *, retry_after: float | None) -> None:
        self.failed.append((source, now, retry_after))


def test_a_poll_answered_429_takes_its_round_trip() -> None:
    """The gateway's 429 is an answer: it comes back after the gateway's latency, and the
    schedule hears of it then (a driver that answered at once asked again a round trip early
    under every storm)."""
    encoder = an_encoder(throttle_rate=1.0, gateway_latency=0.2)
    log = _PollLog()
    asked = encoder.env.now
    assert run_to_end(encoder, encoder._poll(log, "gateway")) is None  # type: ignore[arg-type]
    assert len(log.failed) == 1 and log.failed[0][2] is not None
    assert encoder.env.now > asked
    assert log.failed[0][1] == encoder.local()


# ---- the slots


class _Ends:
    def ended(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_a_slot_is_taken_for_the_encoder_s_time_between_jobs_up_to_5_s() -> None:
    """After its attempt a slot stays taken for the encoder's own time between jobs (its
    scratch area cleaned up, say): uniform over [0, 5) s, as with one slot. Measured on
    ``_slot`` with an attempt that ends at once."""
    encoder = an_encoder(concurrency=2)
    over: Outcome = Outcome(OutcomeKind.SKIPPED, "TEST", "an attempt that ends at once")

    def attempt(job_id: str, slot: Any = None) -> Any:
        return over
        yield  # a generator, as the driver's own

    encoder.attempt = attempt  # type: ignore[method-assign]
    taken = []
    for _ in range(300):
        encoder.slot_procs[1] = encoder.process  # the slot is taken (any process stands in)
        began = encoder.env.now
        run_to_end(encoder, encoder._slot(_Ends(), "j", 1))  # type: ignore[arg-type]
        assert 1 not in encoder.slot_procs  # freed once the time between jobs is over
        taken.append(encoder.env.now - began)
    assert 0 <= min(taken) < 0.25 and 4.75 < max(taken) < 5.0
    assert 2.2 < sum(taken) / len(taken) < 2.8


def test_a_shutdown_waits_for_every_busy_slot_to_give_its_job_back() -> None:
    """A graceful shutdown with attempts running in several slots: each gives its job back
    (told at its next wait), and only then does the node go down (a loop that did not wait
    for the slots spun at one instant)."""
    sc = BASE.replace(**{**FAMILIES["shutdown"], "concurrency": 2, "jobs": 4})
    busy = 0
    for seed in range(6):
        run = race(World(sc, seed=seed, family="shutdown"), "hardened")
        assert all(run.checks[p].ok for p in ("S1", "S2", "S3", "L1")), seed
        history = list(run.result.history)
        for at, (t, process, _, op, _, _) in enumerate(history):
            if op != "shutdown":
                continue
            # Attempts of this node under way at the shutdown: claimed, no outcome yet; and
            # the attempts it gave back for this shutdown (since its previous one).
            open_jobs: set[str] = set()
            given_back = 0
            for r in history[:at]:
                if r[1] != process:
                    continue
                if r[3] == "claim" and r[4] == "invoke":
                    open_jobs.add(r[2])
                elif r[3] == "outcome":
                    open_jobs.discard(r[2])
                    given_back += "SHUTDOWN" in r[5][0]
                elif r[3] in ("crash", "shutdown"):
                    open_jobs.clear()
                    given_back = 0
            assert not open_jobs, (seed, t, open_jobs)  # every one ended before it went down
            busy += given_back >= 2  # both slots were busy when it fell due
    assert busy > 0


# ---- pushes: subscribed at the claim, delivered to the slot's protocol, never to the next


def test_an_attempt_subscribes_to_its_job_s_pushes_when_it_claims_and_only_then() -> None:
    """Subscribed right before the claim leaves, so its own landing is pushed; a driver that
    subscribed at every other request (a read before the claim, pings) passed every test."""
    sc = BASE.replace(**FAMILIES["push"])
    subscribed: list[tuple[float, str, str]] = []

    def spy(env: Any, world: Any, encoders: list[Encoder], history: Any) -> None:
        push = encoders[0].push
        assert push is not None
        subscribe = push.subscribe

        def recorded(job_id: str, name: str, callback: Any) -> None:
            subscribed.append((env.now, name, job_id))
            subscribe(job_id, name, callback)

        push.subscribe = recorded  # one channel for the run

    for seed in range(3):
        subscribed.clear()
        result = run_once(sc, "hardened", seed, on_start=spy)
        claims = [(r[0], r[1], r[2]) for r in result.history
                  if r[3] == "claim" and r[4] == "invoke"]
        assert claims, seed
        assert sorted(subscribed) == sorted(claims), seed


def test_a_push_for_a_slot_s_attempt_is_kept_for_that_slot() -> None:
    """The channel's callback for an attempt in a slot of its own keeps the push for that
    slot's next wait; the encoder's first slot (its own state) neither sees it nor loses
    its own."""
    encoder = an_encoder(concurrency=2, push_rate=1.0, push_latency=0.05)
    first, second = encoder.slots
    assert first is encoder and second is not encoder
    first.push_job, second.push_job = "a", "b"
    taken, ours = Hinted(owner="x", status="assigned"), Hinted(owner=encoder.did,
                                                               status="running")
    slot_pushed(encoder, second)("b", taken)
    slot_pushed(encoder, first)("a", ours)
    assert (second.hints, first.hints) == ([taken], [ours])
    slot_pushed(encoder, second)("a", taken)  # not that slot's job: dropped
    assert (second.hints, first.hints) == ([taken], [ours])


class _Scripted:
    """A protocol that asks for ``actions`` in turn (a callable of the start instant), then
    ends, and keeps every answer it was given."""

    def __init__(self, actions: Any, then: Any = None) -> None:
        self.actions = actions
        self.then = then
        self.answers: list[Any] = []

    def start(self, now: float) -> Step:
        self.left = list(self.actions(now))
        return Step(self.left.pop(0))

    def handle(self, answer: Any, now: float) -> Step:
        self.answers.append(answer)
        if self.then is not None:
            self.then()
        if self.left:
            return Step(self.left.pop(0))
        return Step(Done(Outcome(OutcomeKind.SKIPPED, "TEST", "scripted")))


def test_a_push_for_one_attempt_never_reaches_the_next() -> None:
    """A push that arrives after an attempt's last wait (its job changed as the run ended) is
    dropped with the attempt: handed to the next attempt's first wait, it would stand for a
    change of a job that attempt never touched."""
    encoder = an_encoder(push_rate=1.0, push_latency=0.05)
    world = encoder.world
    world.add_job("a", queued=False)  # offered to nobody: the test's own attempts
    world.add_job("b", queued=False)
    first = _Scripted(lambda now: [Claim(Tier.GATEWAY)],
                      then=lambda: encoder._pushed("a", Hinted(owner="x", status="queued")))
    second = _Scripted(lambda now: [Sleep(now + 1.0)])
    protocols = {"a": first, "b": second}
    encoder.protocol = lambda job_id, **kwargs: protocols[job_id]  # type: ignore[assignment]
    run_to_end(encoder, encoder.attempt("a"))
    assert first.answers  # the claim was answered, and the push came then
    assert encoder.hints == []
    run_to_end(encoder, encoder.attempt("b"))
    assert [type(a) for a in second.answers] == [Woke]


# ---- the status cache and batch screening


def test_a_batch_answer_that_says_held_outdates_the_cache_s_older_queued() -> None:
    """``assigned`` (the holder may be us) makes no entry, and the older "queued" must go: the
    pre-claim check would take it and claim a job the batch had just seen held. An id the
    answer leaves out is unknown: its older entry stays (and ages out as it would); one the
    answer says "queued" again is kept as of the batch's decision instant."""
    encoder = an_encoder(status_cache_s=30.0, batch_screen=1.0, infra_fraction=0.0)
    cache = encoder.cache
    assert cache is not None
    read = Observe(tier=Tier.MONITOR, purpose="pre-claim", max_age=30.0)
    queued = screened(Tier.MONITOR, ["j"], {"j": "queued"})["j"]
    seen = []
    for answer in ({"j": "assigned"}, {}, {"j": "queued"}, {"j": "running"}):
        cache.put(queued, "j", decided=encoder.local() - 10.0)
        encoder.world.monitor_batch = (  # type: ignore[method-assign]
            lambda ids, answer=answer: (dict(answer), 0.1))
        decided = encoder.local()
        run_to_end(encoder, encoder._screen(["j"]))
        entry = cache.lookup(Tier.MONITOR, "j", max_age=30.0, now=encoder.local())
        seen.append(None if entry is None else entry[1] - decided)
        assert (entry is None) == (encoder._cached("j", read) is None)
    assert seen == [None, -10.0, 0.0, None]


def _screens(history: Any) -> dict[str, list[str]]:
    """Per encoder process, its screen records' phases in order (a crash cuts a request)."""
    phases: dict[str, list[str]] = {}
    for _, process, _, op, phase, _ in history:
        if op == "screen":
            phases.setdefault(process, []).append(phase)
        elif op == "crash" and process in phases:
            phases[process].append("crash")
    return phases


@pytest.mark.parametrize("family", ["batch", "slow-overlay"])
def test_every_batch_screen_is_recorded_once_as_asked_and_once_as_answered(family: str
                                                                          ) -> None:
    """A batch screen is a monitor request: its ``invoke`` record is what the figures count
    (``api_calls``, ``monitor_requests_per_job``) and its ``ok`` or ``fail`` closes it. The
    history's screens must match the requests the world served, one to one."""
    sc = BASE.replace(**{**FAMILIES[family], "monitor_error_rate": 0.2})
    failed = 0
    served: list[list[str]] = []

    def spy(env: Any, world: Any, encoders: Any, history: Any) -> None:
        batch = world.monitor_batch

        def counted(job_ids: list[str]) -> Any:
            served.append(list(job_ids))
            return batch(job_ids)

        world.monitor_batch = counted

    for seed in range(4):
        served.clear()
        result = run_once(sc, "hardened", seed, on_start=spy)
        phases = _screens(result.history)
        assert sum(p.count("invoke") for p in phases.values()) == len(served), seed
        for process, seq in phases.items():
            text = " ".join(seq).replace("invoke crash", "crash")
            pairs = text.replace("invoke ok", "").replace("invoke fail", "").split()
            assert set(pairs) <= {"crash"} and not text.endswith("invoke"), (seed, process, seq)
        failed += sum(p.count("fail") for p in phases.values())
    assert failed > 0  # the failure's record is exercised too


def test_a_cached_answer_s_record_says_when_its_read_was_decided_in_simulated_seconds() -> None:
    """The checkers compare a cached answer's read with the encoder's own writes on the
    history's clock (simulated seconds); the cache keeps the encoder's drifting clock."""
    encoder = an_encoder(status_cache_s=30.0, infra_fraction=0.0)
    encoder.rate = 1.05
    cache = encoder.cache
    assert cache is not None
    read = Observe(tier=Tier.MONITOR, purpose="pre-claim", max_age=30.0)
    decided_at = encoder.env.now
    cache.put(screened(Tier.MONITOR, ["j"], {"j": "queued"})["j"], "j",
              decided=encoder.local())
    encoder.env.run(until=encoder.env.now + 3.0)
    assert encoder._cached("j", read) is not None
    record = encoder.history.records[-1]
    assert record[3] == "cached" and math.isclose(record[5][3], decided_at)

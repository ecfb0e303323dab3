"""The cost features in the asyncio driver: status cache, push hints, batch screening.

In-memory tiers under virtual time (as ``test_guard.py``): what each feature saves is counted
in tier calls, and what it must never do (answer a deciding read from the cache, let a push
confirm anything, let a missing batch id pass for available) is checked against the calls the
tiers actually saw.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest

from verifier import (
    EncoderLoop,
    GatewayMonitorJob,
    GuardMetrics,
    LoopPolicy,
    Observation,
    OutcomeKind,
    OwnershipGuard,
    Policy,
    StatusCache,
    Tier,
    TierRateLimited,
    TierUnavailable,
    TimingModel,
    parse_job,
)
from verifier._monitor import monitor_job_id
from verifier.protocol import Hinted, Observe, TierFailed
from verifier.testing import InMemoryJobs, InMemoryTier, virtual_time

from .test_guard import A, B, community, encode

TIMING = TimingModel(monitor_lag=5, write_delay=2, recheck_interval=10, reassign_timeout=60)
CACHED = dataclasses.replace(Policy.hardened(TIMING), status_cache_s=30.0)


def reads(tier: InMemoryTier) -> int:
    return tier.calls.count("observe")


@virtual_time
async def test_a_screened_answer_saves_the_pre_claim_read_and_nothing_else():
    jobs = InMemoryJobs()
    jobs.add("j1")
    monitor, gateway = community(jobs, A)
    metrics = GuardMetrics()
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=CACHED, metrics=metrics)
    plain = OwnershipGuard(did=B, clients=community(jobs, B), policy=Policy.hardened(TIMING))
    guard.screened({"j1": _queued("j1")}, decided=guard.now())
    outcome = await guard.run("j1", encode(30))
    assert outcome.kind is OutcomeKind.PROCESSED
    jobs.add("j2")
    plain_monitor = plain.clients[Tier.MONITOR]
    assert isinstance(plain_monitor, InMemoryTier)
    assert (await plain.run("j2", encode(30))).kind is OutcomeKind.PROCESSED
    # Exactly the pre-claim read is saved: every deciding read still went to the tier.
    assert reads(monitor) == reads(plain_monitor) - 1
    assert metrics.value("verifier_cache_hits_total", tier="monitor") == 1


def _queued(job_id: str) -> Any:
    from verifier.protocol import screened
    return screened(Tier.MONITOR, [job_id], {job_id: "queued"})[job_id]


@virtual_time
async def test_a_cached_answer_older_than_its_max_age_is_not_used():
    jobs = InMemoryJobs()
    jobs.add("j1")
    monitor, gateway = community(jobs, A)
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=CACHED)
    guard.screened({"j1": _queued("j1")}, decided=guard.now() - 31.0)
    await guard.run("j1", encode(30))
    assert guard.cache is not None and guard.cache.misses >= 1 and guard.cache.hits == 0


@virtual_time
async def test_our_own_claim_forgets_the_cached_answers():
    """A claim changes what the tiers say: a screened "queued" must not outlive it. Here the
    claim is refused (another encoder got there first); the retry's pre-claim check must read
    the tier, see the owner and claim nothing, not claim again on the stale entry."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    monitor, gateway = community(jobs, A)
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=CACHED)
    guard.screened({"j1": _queued("j1")}, decided=guard.now())
    jobs.update("j1", status="assigned", assigned_to=B)  # taken after the screening
    first = await guard.run("j1", encode(3))
    assert first.code == "CLAIM_REFUSED" and gateway.calls.count("claim") == 1
    second = await guard.run("j1", encode(3))
    assert second.code == "PRE_CLAIM_CONFLICT"
    assert gateway.calls.count("claim") == 1, "no second claim on a forgotten entry"


def _fail_once(monitor: InMemoryTier, how: str) -> None:
    """The monitor's next read fails in one of the ways a read can fail."""
    if how in ("unavailable", "rate-limited"):
        monitor.fail_next("observe", TierUnavailable("monitor", "connection refused")
                          if how == "unavailable" else
                          TierRateLimited("monitor", "429", retry_after=0.1))
        return
    observe = monitor.observe

    async def once(job_id: str) -> Any:
        monitor.observe = observe  # type: ignore[method-assign]
        answer = await observe(job_id)
        if how == "mislabelled":  # another tier's answer, labelled as this tier's
            return dataclasses.replace(answer, tier=Tier.GATEWAY)
        raise RuntimeError("a client bug")

    monitor.observe = once  # type: ignore[method-assign]


@pytest.mark.parametrize("how", ["unavailable", "rate-limited", "mislabelled", "client-bug"])
@virtual_time
async def test_a_failed_read_outdates_the_cached_answers_of_its_tier(how):
    """Found live (session 15): in a monitor outage an aid encoder's pre-claim check passed on
    an answer from before the outage, so it claimed, its deciding reads failed, and Gateway Aid
    (no release) held the job for an hour. A tier's failure now outdates what it said before:
    the pre-claim check reads the tier (and fails closed while it is down). Every way a read
    fails counts (mutation testing, session 41: a 429, an answer labelled as another tier's
    and a client's own exception outdated nothing, and no test saw it)."""
    jobs = InMemoryJobs()
    for job_id in ("j1", "j2", "j3"):
        jobs.add(job_id)
    monitor, gateway = community(jobs, A)
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=CACHED)
    guard.screened({"j1": _queued("j1")}, decided=guard.now())
    _fail_once(monitor, how)
    await guard.run("j2", encode(3))  # its first read fails: the monitor is in trouble
    assert guard.cache is not None and guard.cache.hits == 0
    before = reads(monitor)
    assert (await guard.run("j1", encode(3))).kind is OutcomeKind.PROCESSED
    assert guard.cache.hits == 0, "the screened answer predates the failure"
    assert reads(monitor) == before + 2, "pre-claim and deciding read both went to the tier"
    # An answer read after the failure (the tier is back) is served again.
    guard.screened({"j3": _queued("j3")}, decided=guard.now())
    assert (await guard.run("j3", encode(3))).kind is OutcomeKind.PROCESSED
    assert guard.cache.hits == 1


@virtual_time
async def test_a_failed_screening_outdates_what_screening_said_before():
    """The loop's batch request is a monitor read too: when it fails, answers from an earlier
    batch must not let the pre-claim checks pass."""
    jobs = InMemoryJobs()
    for job_id in ("j1", "j2"):
        jobs.add(job_id)
    monitor, gateway = community(jobs, A)
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=CACHED)
    guard.screened({"j1": _queued("j1"), "j2": _queued("j2")}, decided=guard.now())

    async def batch_down(ids: Sequence[str]) -> dict[str, str]:
        raise TierUnavailable("monitor", "connection refused")

    async def offered() -> list[GatewayMonitorJob]:
        return []

    loop = EncoderLoop(guard, lambda job, offer: encode(1)(job), offers={"getjob": offered},
                       policy=LoopPolicy(sources=("getjob",)), screen=batch_down)
    await loop._screened(["j1", "j2"])
    assert guard.cache is not None
    assert guard.cache.get(Tier.MONITOR, "j1", max_age=30, now=guard.now()) is None
    assert guard.cache.get(Tier.MONITOR, "j2", max_age=30, now=guard.now()) is None


def test_a_tier_failure_outdates_only_that_tiers_older_answers():
    cache = StatusCache()
    cache.put(_queued("j1"), "j1", decided=10.0)
    cache.failed(Tier.GATEWAY, decided=11.0)  # another tier's trouble
    assert cache.get(Tier.MONITOR, "j1", max_age=30, now=12.0) is not None
    cache.failed(Tier.MONITOR, decided=10.0)  # decided at the same instant: outdated too
    assert cache.get(Tier.MONITOR, "j1", max_age=30, now=12.0) is None
    cache.failed(Tier.MONITOR, decided=5.0)  # an older failure reported late changes nothing
    cache.put(_queued("j1"), "j1", decided=10.5)  # read after the failure: usable
    assert cache.get(Tier.MONITOR, "j1", max_age=30, now=12.0) is not None
    cache.clear()  # a new process: no entries, no failures
    cache.put(_queued("j1"), "j1", decided=1.0)
    assert cache.get(Tier.MONITOR, "j1", max_age=30, now=12.0) is not None


def test_the_status_cache_is_bounded_and_keeps_the_younger_answer():
    cache = StatusCache(max_entries=2)
    for i in range(3):
        cache.put(_queued(f"j{i}"), f"j{i}", decided=float(i))
    assert len(cache) == 2 and cache.get(Tier.MONITOR, "j0", max_age=99, now=3) is None
    cache.put(_queued("j2"), "j2", decided=0.0)  # older than the kept one: ignored
    assert cache.get(Tier.MONITOR, "j2", max_age=1.5, now=3.0) is not None
    assert cache.get(Tier.MONITOR, "j2", max_age=0.0, now=2.0) is None, "0: ask the tier"


def test_the_status_cache_serves_an_answer_up_to_its_max_age_and_counts_what_it_did():
    """Mutation testing (session 24): the age limit's edge, the hit counter and which of two
    answers decided at one instant is kept had no direct test."""
    from verifier.protocol import screened

    cache = StatusCache()
    cache.put(_queued("j1"), "j1", decided=100.0)
    assert cache.get(Tier.MONITOR, "j1", max_age=30, now=130.0) is not None  # exactly 30 s
    assert cache.get(Tier.MONITOR, "j1", max_age=30, now=130.5) is None
    assert (cache.hits, cache.misses) == (1, 1)
    done = screened(Tier.MONITOR, ["j1"], {"j1": "complete"})["j1"]
    cache.put(done, "j1", decided=100.0)  # decided at the same instant, answered later
    assert cache.get(Tier.MONITOR, "j1", max_age=30, now=101.0) is done
    assert cache.get(Tier.MONITOR, "j1", max_age=0.5, now=100.25) is done  # under a second
    cache.clear()  # a new process
    assert cache.get(Tier.MONITOR, "j1", max_age=30, now=101.0) is None


def test_the_status_cache_evicts_the_entry_answered_longest_ago():
    cache = StatusCache(max_entries=2)
    cache.put(_queued("a"), "a", decided=1.0)
    cache.put(_queued("b"), "b", decided=2.0)
    cache.put(_queued("a"), "a", decided=3.0)  # answered again: now the youngest
    cache.put(_queued("c"), "c", decided=4.0)
    assert cache.get(Tier.MONITOR, "b", max_age=9, now=5) is None
    assert cache.get(Tier.MONITOR, "a", max_age=9, now=5) is not None


def test_a_status_cache_of_one_entry_keeps_the_latest_and_none_is_refused():
    cache = StatusCache(max_entries=1)
    cache.put(_queued("j0"), "j0", decided=0.0)
    cache.put(_queued("j1"), "j1", decided=1.0)
    assert len(cache) == 1 and cache.get(Tier.MONITOR, "j1", max_age=9, now=2) is not None
    with pytest.raises(ValueError, match="at least 1"):
        StatusCache(max_entries=0)


class FakePush:
    """A push source the test fires by hand; records subscriptions."""

    def __init__(self) -> None:
        self.subs: dict[str, list[Callable[[Any], None]]] = {}
        self.log: list[tuple[str, str]] = []

    def subscribe(self, job_id: str, callback: Callable[[Any], None]) -> None:
        self.subs.setdefault(job_id, []).append(callback)
        self.log.append(("subscribe", job_id))

    def unsubscribe(self, job_id: str, callback: Callable[[Any], None]) -> None:
        self.subs[job_id].remove(callback)
        self.log.append(("unsubscribe", job_id))

    def fire(self, job_id: str, owner: str | None, status: str) -> None:
        from verifier import JobPush
        for callback in list(self.subs.get(job_id, ())):
            callback(JobPush(job_id, status, owner))


def _pushed_guard(lag: float = 0.0) -> tuple[InMemoryJobs, FakePush, InMemoryTier,
                                             InMemoryTier, OwnershipGuard]:
    """A community node's guard (hardened) with a push source the test fires, and job j1."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    push = FakePush()
    monitor, gateway = community(jobs, A, lag=lag)
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=Policy.hardened(TIMING),
                           push=push)
    return jobs, push, monitor, gateway, guard


@virtual_time
async def test_a_push_of_a_reassignment_cancels_the_work_at_once_by_a_read():
    jobs, push, _monitor, _gateway, guard = _pushed_guard()
    loop = asyncio.get_running_loop()
    started: list[float] = []

    async def work(job: Any) -> dict[str, str]:
        started.append(loop.time())
        await asyncio.sleep(3)
        jobs.update("j1", assigned_to=B)  # reassigned by the gateway
        push.fire("j1", B, "assigned")
        await asyncio.sleep(300)
        return {"cid": "x"}

    outcome = await guard.run("j1", work)
    assert outcome.kind is OutcomeKind.CANCELLED
    assert loop.time() - started[0] < 3 + 2, "detected at the push, not R later"
    assert push.log[0] == ("subscribe", "j1") and push.log[-1] == ("unsubscribe", "j1")
    assert push.subs["j1"] == []


@virtual_time
async def test_a_push_naming_us_proves_nothing_and_a_failing_push_source_changes_nothing():
    jobs, push, monitor, gateway, guard = _pushed_guard(lag=3.0)
    loop = asyncio.get_running_loop()
    claimed = asyncio.Event()
    original = gateway.claim

    async def claim(job_id: str, **kw: Any) -> Any:
        token = await original(job_id, **kw)
        claimed.set()
        return token

    gateway.claim = claim  # type: ignore[method-assign]

    async def hint_at_once() -> None:
        await claimed.wait()
        push.fire("j1", A, "assigned")

    hinter = asyncio.create_task(hint_at_once())
    before = reads(monitor)
    start = loop.time()
    outcome = await guard.run("j1", encode(3))
    await hinter
    assert outcome.kind is OutcomeKind.PROCESSED
    assert reads(monitor) > before

    class Broken(FakePush):
        def subscribe(self, job_id: str, callback: Callable[[Any], None]) -> None:
            raise OSError("socket closed")

    jobs.add("j2")
    guard2 = OwnershipGuard(did=A, clients=community(jobs, A), policy=Policy.hardened(TIMING),
                            push=Broken())
    assert (await guard2.run("j2", encode(3))).kind is OutcomeKind.PROCESSED
    assert loop.time() - start > TIMING.settle_delay(TIMING.monitor_lag)


@virtual_time
async def test_a_push_whose_fields_are_not_strings_is_an_empty_hint_not_a_crash():
    """Found by an adversarial review of the push path (session 31): the guard built the
    protocol's hint from whatever a push source handed over, and a status that is not
    hashable (a list, as a JSON decoder gives for ``"status": ["running"]``) with our DID as
    owner raised ``TypeError`` inside the protocol: the run raised, and the job was neither
    finished nor given back. ``JobPushClient`` checks its frames; any other ``PushSource``
    may not. A hint with what is not a string dropped is still a hint: it brings a read."""
    from verifier import JobPush

    jobs, push, monitor, _gateway, guard = _pushed_guard()
    counts: list[int] = []

    async def work(job: Any) -> dict[str, str]:
        await asyncio.sleep(1)
        for pushed in (JobPush("j1", ["running"], A),  # type: ignore[arg-type]
                       JobPush("j1", "running", {"$ne": A})):  # type: ignore[arg-type]
            counts.append(reads(monitor))
            for callback in list(push.subs["j1"]):
                callback(pushed)
            await asyncio.sleep(0.5)  # R is 10 s: a read now is the push's
        counts.append(reads(monitor))
        return {"cid": "bafy-result"}

    outcome = await guard.run("j1", work)
    assert outcome.kind is OutcomeKind.PROCESSED
    assert jobs.docs["j1"]["status"] == "complete"
    assert counts[0] < counts[1] < counts[2], counts


@virtual_time
async def test_the_loop_screens_many_offered_jobs_in_batches_of_at_most_50():
    jobs = InMemoryJobs()
    for i in range(120):
        jobs.add(f"j{i:03d}")
    for i in range(0, 120, 3):
        jobs.add(f"j{i:03d}", status="complete")  # a third already done
    monitor, gateway = community(jobs, A)
    metrics = GuardMetrics()
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=CACHED, metrics=metrics)
    batches: list[int] = []

    async def batch_status(ids: Sequence[str]) -> dict[str, str]:
        batches.append(len(ids))
        # The server drops ids it cannot look up: every fifth one is missing.
        return {i: jobs.docs[i]["status"] for n, i in enumerate(ids) if n % 5}

    async def offered() -> list[GatewayMonitorJob]:
        return [parse_job(doc) for doc in jobs.docs.values()]

    loop = EncoderLoop(guard, lambda job, offer: encode(1)(job), offers={"getjob": offered},
                       policy=LoopPolicy(sources=("getjob",), idle_s=1, cooldown_s=1e6),
                       screen=batch_status, metrics=metrics)
    runner = asyncio.create_task(loop.run())
    await asyncio.sleep(5)
    loop.stop()
    await runner
    # One batch per poll, of the first 50 jobs not known yet: only one job is chosen per poll.
    assert batches and batches[0] == 50 and max(batches) <= 50
    assert metrics.total("verifier_batch_size_count") == len(batches)
    # Each batch is a monitor request too (operator review, session 15: they showed nowhere).
    assert metrics.value("verifier_tier_requests_total", tier="monitor", op="batch",
                         result="ok") == len(batches)
    assert guard.cache is not None and guard.cache.hits >= 1


@virtual_time
async def test_screening_a_long_list_costs_one_request_per_poll_and_tries_held_jobs_last():
    """Screening every job of a long list at each poll cost more monitor requests than the
    pre-claim reads it saved (a list of 1,000: 33.9 monitor requests per job processed,
    14.1 without screening), and duplicate ids were screened twice (an adversarial review,
    session 21). Now: one batch per poll, each id once; jobs the screen saw assigned are
    tried after the others."""
    jobs = InMemoryJobs()
    for i in range(1000):
        jobs.add(f"j{i:04d}", **({"status": "assigned", "assigned_to": B} if i < 3 else {}))
    monitor, gateway = community(jobs, A)
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=CACHED)
    batches: list[list[str]] = []

    async def batch_status(ids: Sequence[str]) -> dict[str, str]:
        batches.append(list(ids))
        return {i: jobs.docs[i]["status"] for i in ids}

    async def offered() -> list[GatewayMonitorJob]:
        listed = [parse_job(doc) for doc in jobs.docs.values()]
        return listed[:1] * 5 + listed  # the first offered five more times

    tried: list[str] = []

    def on_outcome(outcome: Any) -> None:
        tried.append(outcome.job_id)
        loop.stop()

    loop = EncoderLoop(guard, lambda job, offer: encode(1)(job), offers={"getjob": offered},
                       policy=LoopPolicy(sources=("getjob",), idle_s=1),
                       screen=batch_status, on_outcome=on_outcome)
    await loop.run()
    assert len(batches) == 1 and len(batches[0]) == 50 == len(set(batches[0]))
    assert tried == ["j0003"], "the jobs seen assigned to another are tried last"


@virtual_time
async def test_a_missing_id_in_a_batch_is_never_taken_for_available():
    jobs = InMemoryJobs()
    jobs.add("j1", status="assigned", assigned_to=B)
    monitor, gateway = community(jobs, A)
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=CACHED)
    from verifier.protocol import screened
    assert guard.screened(screened(Tier.MONITOR, ["j1"], {}), decided=guard.now()) == 0
    outcome = await guard.run("j1", encode(3))
    assert outcome.code == "PRE_CLAIM_CONFLICT" and "claim" not in gateway.calls
    assert reads(monitor) == 1, "the pre-claim check read the tier itself"


def test_a_newer_batch_saying_assigned_forgets_an_older_queued_entry():
    """A batch names no owner, so "assigned" makes no entry, but it must not leave an older
    "queued" standing: the pre-claim check would take it and claim a job someone holds."""
    jobs = InMemoryJobs()
    guard = OwnershipGuard(did=A, clients=community(jobs, A), policy=CACHED)
    from verifier.protocol import screened
    now = 100.0
    guard.screened(screened(Tier.MONITOR, ["j2"], {"j2": "queued"}), decided=now)
    answer = {"j2": "assigned"}
    entries = screened(Tier.MONITOR, ["j2"], answer)
    assert entries == {}
    guard.screened(entries, decided=now + 1, unknown=["j2"])
    assert guard.cache is not None
    assert guard.cache.get(Tier.MONITOR, "j2", max_age=30, now=now + 2) is None


@virtual_time
async def test_the_loop_screens_only_what_it_does_not_know_and_only_for_the_monitor():
    jobs = InMemoryJobs()
    for i in range(6):
        jobs.add(f"j{i}")
    batches: list[list[str]] = []
    when: dict[str, list[float]] = {}

    async def batch_status(ids: Sequence[str]) -> dict[str, str]:
        batches.append(list(ids))
        for i in ids:
            when.setdefault(i, []).append(asyncio.get_running_loop().time())
        return {i: jobs.docs[i]["status"] for i in ids}

    polls: list[int] = []

    async def offered() -> list[GatewayMonitorJob]:  # the queue, as getJob offers it
        queued = [parse_job(doc) for doc in jobs.docs.values() if doc["status"] == "queued"]
        polls.append(len(queued))
        return queued

    def loop_for(guard: OwnershipGuard) -> EncoderLoop:
        return EncoderLoop(guard, lambda job, offer: encode(1)(job), offers={"getjob": offered},
                           policy=LoopPolicy(sources=("getjob",), idle_s=1, cooldown_s=0),
                           screen=batch_status)

    loop = loop_for(OwnershipGuard(did=A, clients=community(jobs, A), policy=CACHED))
    runner = asyncio.create_task(loop.run())
    await asyncio.sleep(300)
    loop.stop()
    await runner
    assert all(doc["status"] == "complete" for doc in jobs.docs.values())
    # A job is screened again only once its last answer is too old for the pre-claim check,
    # not at every poll that offered it with others.
    assert set(when) == set(jobs.docs)
    assert sum(1 for n in polls if n >= 2) > 2 * len(batches)
    for times in when.values():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap > CACHED.status_cache_s for gap in gaps), times
    assert len(batches) <= 6
    batches.clear()
    infra = [InMemoryTier(Tier.DATABASE, jobs, A), *community(jobs, A)]
    loop = loop_for(OwnershipGuard(did=A, clients=infra, policy=CACHED))
    assert loop._screen is None, "an infrastructure node's pre-claim check reads the database"


@virtual_time
async def test_a_flood_of_pushes_is_one_hint_and_cannot_delay_the_work_or_flood_the_tier():
    _jobs, push, monitor, _gateway, guard = _pushed_guard()
    loop = asyncio.get_running_loop()
    spans: list[float] = []

    async def work(job: Any) -> dict[str, str]:
        start = loop.time()
        for _ in range(2000):  # a buggy or hostile push channel
            push.fire("j1", B, "assigned")
        await asyncio.sleep(1)
        spans.append(loop.time() - start)
        return {"cid": "x"}

    before = reads(monitor)
    outcome = await guard.run("j1", work)
    assert outcome.kind is OutcomeKind.PROCESSED  # every read says ours: a push proves nothing
    assert spans and spans[0] < 1.5
    # A handful of reads (the merged push, the chase while the monitor may lag), not 2,000.
    assert reads(monitor) - before < 15, reads(monitor) - before


@virtual_time
async def test_pushes_that_arrive_before_the_next_wait_are_merged_into_one_hint():
    """Identical pushes are one hint with their values; pushes that differ are one emptied
    hint, which brings a read: "taken" then "ours again" before the next wait was delivered
    as "ours" alone, and the protocol skipped the early re-check the first called for."""
    from verifier import JobPush
    from verifier._guard import _Run

    jobs = InMemoryJobs()
    guard = OwnershipGuard(did=A, clients=community(jobs, A), policy=Policy.hardened(TIMING))
    run = _Run(guard, "j1", encode(1), asyncio.get_running_loop().time)
    for _ in range(3):
        run._pushed(JobPush("j1", "running", A))
    run._pushed(JobPush("other-job", "queued", None))  # not ours: dropped
    assert run.events.qsize() == 1
    assert run._event(run.events.get_nowait()) == Hinted(A, "running")
    run._pushed(JobPush("j1", "assigned", B))  # taken...
    run._pushed(JobPush("j1", "running", A))  # ... and ours again, before the next wait
    assert run.events.qsize() == 1
    assert run._event(run.events.get_nowait()) == Hinted()
    run._pushed(JobPush("j1", "assigned", A))  # ours, then ours and running: they agree
    run._pushed(JobPush("j1", "running", A))
    assert run._event(run.events.get_nowait()) == Hinted(A, "running")



@virtual_time
async def test_an_id_the_monitor_cannot_carry_is_left_out_of_the_batch_not_fatal_to_it():
    """'%', '/', '?', '#' are legal ids for the gateway and aid, not for the monitor's batch:
    such an id is left out (unknown), the others are screened, and nothing says the monitor
    failed, since it was never asked (adversarial review, session 22: one such id failed the
    whole batch and outdated every cached monitor answer)."""
    jobs = InMemoryJobs()
    for job_id in ("j1", "video%20upload-7", "j2"):
        jobs.add(job_id)
    guard = OwnershipGuard(did=A, clients=community(jobs, A), policy=CACHED)
    asked: list[list[str]] = []

    async def batch_status(ids: Sequence[str]) -> dict[str, str]:
        for i in ids:
            monitor_job_id(i)  # as GatewayMonitorService.batch_status refuses, before sending
        asked.append(list(ids))
        return {i: "queued" for i in ids}

    loop = EncoderLoop(guard, lambda job, offer: encode(1)(job), offers={"getjob": list},
                       policy=LoopPolicy(sources=("getjob",)), screen=batch_status)
    assert guard.cache is not None
    now = guard.now()
    guard.cache.put(Observation(Tier.MONITOR, parse_job(jobs.docs["j2"])), "j2", decided=now)
    offered = [parse_job(doc) for doc in jobs.docs.values()]
    ids = loop._to_screen(loop.schedule.screen(offered, now))
    assert ids == ["j1"]
    await loop._screened(["j1", "video%20upload-7"])  # given one anyway: refused, not failed
    assert asked == []
    assert guard.cache.get(Tier.MONITOR, "j2", max_age=30, now=guard.now()) is not None


# ---- adversarial review of the cache and the batch, session 36 (helper-114)


@pytest.mark.parametrize("bad", [
    None, ["j1", "queued"], {"j1": ["queued"]}, {"j1": {"status": "queued"}}, {"j1": None},
    {"not-asked": "queued"}, {1: "queued"},
], ids=["none", "list", "list-status", "object-status", "null-status", "not-asked", "int-id"])
@virtual_time
async def test_a_screen_answer_of_the_wrong_shape_is_a_failed_batch_and_the_loop_goes_on(
        bad: Any, caplog: pytest.LogCaptureFixture):
    """A library user's screen function (a thin wrapper over the raw endpoint, whose entries
    are objects) may answer anything: that is a failed batch, as a failed request is (logged,
    the monitor's older answers outdated, the pre-claim reads go on). It used to reach the
    screening rule unchecked, and its ``TypeError`` ended the loop, leaving running jobs held."""
    caplog.set_level("WARNING", logger="verifier.loop")
    jobs = InMemoryJobs()
    for job_id in ("j1", "j2"):
        jobs.add(job_id)
    guard = OwnershipGuard(did=A, clients=community(jobs, A), policy=CACHED)
    assert guard.cache is not None
    guard.cache.put(Observation(Tier.MONITOR, _queued("j9")), "j9", decided=guard.now())

    async def screen(ids: Sequence[str]) -> Any:
        return bad

    async def offered() -> list[GatewayMonitorJob]:
        return [parse_job(d) for d in jobs.docs.values() if d["status"] == "queued"]

    loop = EncoderLoop(guard, lambda job, offer: encode(1)(job), offers={"getjob": offered},
                       policy=LoopPolicy(sources=("getjob",), idle_s=1), screen=screen)
    runner = asyncio.create_task(loop.run())
    await asyncio.sleep(60)
    loop.stop()
    await runner  # no exception: screening is an optimisation
    assert all(doc["status"] == "complete" for doc in jobs.docs.values())
    assert "LOOP_SCREEN_FAILED" in caplog.text and "MalformedAnswer" in caplog.text
    assert guard.cache.get(Tier.MONITOR, "j9", max_age=60, now=guard.now()) is None


@virtual_time
async def test_the_loop_does_not_screen_when_no_read_may_take_a_cached_answer():
    """A cache with ``status_cache_s`` 0: no read may take an entry, so a batch would be a
    monitor request whose answers are stored and never used."""
    jobs = InMemoryJobs()
    jobs.add("j1")
    guard = OwnershipGuard(did=A, clients=community(jobs, A), policy=Policy.hardened(TIMING),
                           cache=StatusCache())

    async def screen(ids: Sequence[str]) -> dict[str, str]:
        raise AssertionError("screened")

    loop = EncoderLoop(guard, lambda job, offer: encode(1)(job), offers={"getjob": list},
                       policy=LoopPolicy(sources=("getjob",)), screen=screen)
    assert loop._screen is None
    cached = EncoderLoop(OwnershipGuard(did=A, clients=community(jobs, A), policy=CACHED),
                         lambda job, offer: encode(1)(job), offers={"getjob": list},
                         policy=LoopPolicy(sources=("getjob",)), screen=screen)
    assert cached._screen is screen
    # Any age above 0 lets the pre-claim check take an entry, half a second too.
    brief = dataclasses.replace(CACHED, status_cache_s=0.5)
    assert EncoderLoop(OwnershipGuard(did=A, clients=community(jobs, A), policy=brief),
                       lambda job, offer: encode(1)(job), offers={"getjob": list},
                       policy=LoopPolicy(sources=("getjob",)), screen=screen)._screen is screen


@pytest.mark.asyncio
async def test_a_read_the_monitor_client_refuses_before_sending_keeps_its_cached_answers(
        router: Any, monitor: Any):
    """An id legal for the gateway and aid but not for the monitor ('%', '/', ...) is refused
    before anything is sent: that says nothing about the monitor, so the answers the cache
    holds from it stay usable (``StatusCache.failed``: not for reads that never left). Each
    such id used to outdate a batch just screened."""
    route = router.route().mock(return_value=httpx.Response(500))
    jobs = InMemoryJobs()
    jobs.add("odd%41id")
    guard = OwnershipGuard(did=A, clients=[monitor, InMemoryTier(Tier.GATEWAY, jobs, A)],
                           policy=CACHED)
    assert guard.cache is not None
    guard.screened({"j1": _queued("j1")}, decided=guard.now())
    outcome = await guard.run("odd%41id", encode(1))
    assert outcome.kind is not OutcomeKind.PROCESSED  # no read of the monitor: not verified
    assert route.call_count == 0
    assert guard.cache.get(Tier.MONITOR, "j1", max_age=30, now=guard.now()) is not None


@virtual_time
async def test_each_push_is_counted_and_a_run_subscribes_and_unsubscribes_once(caplog):
    """Mutation testing (session 41): pushes left uncounted, a second subscription of the same
    run (and a second unsubscription), an unsubscription of what was never subscribed, and a
    push source that fails unseen all passed every test."""
    from verifier import JobPush
    from verifier._guard import _Run

    caplog.set_level(logging.WARNING, logger="verifier.guard")
    _jobs, push, _monitor, _gateway, guard = _pushed_guard()
    guard.metrics = GuardMetrics()
    run = _Run(guard, "j1", encode(1), asyncio.get_running_loop().time)
    run.subscribe()
    run.subscribe()  # a second claim of the same run
    for status in ("assigned", "running", "running"):
        run._pushed(JobPush("j1", status, A))
    unsubscribe = push.unsubscribe
    asked: list[str] = []

    def counted(job_id: str, callback: Callable[[Any], None]) -> None:
        asked.append(job_id)
        unsubscribe(job_id, callback)

    push.unsubscribe = counted  # type: ignore[method-assign]
    run.unsubscribe()
    run.unsubscribe()
    assert asked == ["j1"], "unsubscribed once"
    assert push.log == [("subscribe", "j1"), ("unsubscribe", "j1")]
    assert guard.metrics.value("verifier_pushes_total") == 3

    class Broken(FakePush):
        def subscribe(self, job_id: str, callback: Callable[[Any], None]) -> None:
            super().subscribe(job_id, callback)
            raise OSError("socket closed")

    broken = Broken()
    guard.push = broken
    failed = _Run(guard, "j1", encode(1), asyncio.get_running_loop().time)
    failed.subscribe()
    failed.unsubscribe()
    assert broken.log == [("subscribe", "j1")], "nothing to unsubscribe"
    warned = [r for r in caplog.records if getattr(r, "event_code", None) == "PUSH_UNAVAILABLE"]
    assert len(warned) == 1 and "OSError" in warned[0].getMessage()

    caplog.clear()
    guard.push = None
    quiet = _Run(guard, "j1", encode(1), asyncio.get_running_loop().time)
    quiet.subscribe()  # no push source: nothing to subscribe to, nothing to warn about
    quiet.unsubscribe()
    assert not [r for r in caplog.records if getattr(r, "event_code", None)]


@virtual_time
async def test_a_read_s_answer_is_kept_for_the_next_pre_claim_check():
    """A pre-claim read that finds the job taken is kept: the same job offered again within
    the cache's age is skipped without a second read (mutation testing, session 41: a cache
    that kept no read's answer, only screening's, passed every test)."""
    jobs = InMemoryJobs()
    jobs.add("j1", assigned_to=B, status="assigned")
    monitor, gateway = community(jobs, A)
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=CACHED)
    assert (await guard.run("j1", encode(3))).code == "PRE_CLAIM_CONFLICT"
    before = reads(monitor)
    assert (await guard.run("j1", encode(3))).code == "PRE_CLAIM_CONFLICT"
    assert reads(monitor) == before and guard.cache is not None and guard.cache.hits == 1


@virtual_time
async def test_a_read_refused_before_it_left_is_no_request_and_a_malformed_answer_is_named():
    """A job id the monitor cannot carry is refused by its client before anything is sent:
    no request is counted (it would inflate the request rate and pull the latency quantiles
    down). A client that answers with something that is not an Observation fails closed, and
    the failure says why (mutation testing, session 41)."""
    from verifier import InvalidInputError

    jobs = InMemoryJobs()
    jobs.add("j1")
    monitor, gateway = community(jobs, A)
    metrics = GuardMetrics()
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=Policy.hardened(TIMING),
                           metrics=metrics)
    monitor.fail_next("observe", InvalidInputError("job id has a character the monitor refuses"),
                      times=1000)
    outcome = await guard.run("j1", encode(3))
    assert not outcome.processed
    assert metrics.value("verifier_tier_requests_total", tier="monitor", op="read",
                         result="failed") == 0
    assert metrics.value("verifier_tier_request_seconds_count", tier="monitor", op="read") == 0

    monitor._faults.clear()

    async def not_an_observation(job_id: str) -> Any:
        return {"assigned_to": A, "status": "assigned"}

    monitor.observe = not_an_observation  # type: ignore[method-assign]
    from verifier._guard import _Run
    run = _Run(guard, "j1", encode(1), asyncio.get_running_loop().time)
    answer = await run._observe(Observe(Tier.MONITOR, purpose="pre-claim"))
    assert isinstance(answer, TierFailed) and "malformed answer: dict" in answer.detail


@virtual_time
async def test_a_run_subscribes_before_its_claim_leaves():
    """So that the claim's own landing, and any competing write after it, is pushed too."""
    _jobs, push, _monitor, gateway, guard = _pushed_guard()
    subscribed_at_claim: list[bool] = []
    claim = gateway.claim

    async def watched(job_id: str, **kwargs: Any) -> Any:
        subscribed_at_claim.append(bool(push.subs.get(job_id)))
        return await claim(job_id, **kwargs)

    gateway.claim = watched  # type: ignore[method-assign]
    assert (await guard.run("j1", encode(3))).processed
    assert subscribed_at_claim == [True]
    assert push.log == [("subscribe", "j1"), ("unsubscribe", "j1")]

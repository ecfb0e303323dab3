"""The encoder loop's request rate where an adversarial review (session 45) found it outside
the stated policy, after the back-off after a second job in a row skipped at once: a guard
error, a batch screen's 429, a guard shut down behind the loop's back, a malformed offer.
Virtual time, in-memory tiers, as tests/verifier/test_loop.py."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from verifier import (
    EncoderLoop,
    GatewayMonitorJob,
    LoopPolicy,
    OwnershipGuard,
    Policy,
    Tier,
    TierRateLimited,
    parse_job,
)
from verifier.testing import InMemoryJobs, InMemoryTier, virtual_time

from .test_loop import PLAIN_GETJOB, TIMING, A, guard_for, stop_when

B = "did:key:z6MkEncoderB"


def commit_at_once(job, offered):
    return asyncio.sleep(0, {"cid": "bafy"})


def new_job_each_poll(jobs: InMemoryJobs, polls: list[float],
                      **fields: Any) -> Callable[[], Awaitable[list[GatewayMonitorJob]]]:
    """A source offering a new id at each poll (each poll's instant noted in ``polls``),
    stored in ``jobs`` with ``fields``, offered as queued."""
    fresh = itertools.count()

    async def offer() -> list[GatewayMonitorJob]:
        polls.append(asyncio.get_running_loop().time())
        job_id = f"j{next(fresh)}"
        jobs.add(job_id, **fields)
        return [parse_job({"id": job_id, "status": "queued"})]

    return offer


def run_for(loop: EncoderLoop, seconds: float) -> asyncio.Task[Any]:
    async def stop_later() -> None:
        await asyncio.sleep(seconds)
        loop.stop()

    return asyncio.create_task(stop_later())


# --- jobs another encoder holds, each skipped at once


@virtual_time
async def test_a_source_offering_only_jobs_another_holds_is_not_polled_back_to_back():
    """Found by an adversarial review of the loop (session 44): a source that keeps offering
    new ids, each held by another encoder, was polled again as soon as each pre-claim read
    showed the job taken (300 polls a minute). The first such skip is followed at once; from
    the second in a row the loop backs off as after empty polls."""
    jobs = InMemoryJobs()
    polls: list[float] = []
    loop = EncoderLoop(guard_for(jobs), commit_at_once,
                       offers={"getjob": new_job_each_poll(jobs, polls, status="assigned",
                                                           assigned_to=B)},
                       policy=PLAIN_GETJOB)
    stop_when(loop, lambda: len(polls) >= 7)
    outcomes = await loop.run()
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(polls)]
    # Each gap: the pre-claim read (0.2 s), then none, 1, 2, 4, 8, 8 s.
    assert gaps[:6] == [0.2, 1.2, 2.2, 4.2, 8.2, 8.2], gaps
    assert outcomes["skipped"] >= 6
    assert jobs.docs["j0"]["assigned_to"] == B  # never claimed


# --- GUARD_ERROR (an offered id the guard refuses, a guard that raises) backs off


@pytest.mark.parametrize("concurrency", [1, 2])
@virtual_time
async def test_a_source_offering_only_ids_the_guard_refuses_is_not_polled_back_to_back(
        concurrency):
    polls: list[float] = []
    fresh = itertools.count()

    async def unusable() -> list[GatewayMonitorJob]:
        polls.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.05)  # the source's round trip
        return [GatewayMonitorJob(id=f"bad\nid-{next(fresh)}", status="queued",
                                  assigned_to=None)]

    loop = EncoderLoop(guard_for(InMemoryJobs()), commit_at_once, offers={"getjob": unusable},
                       policy=LoopPolicy(sources=("getjob",), concurrency=concurrency),
                       rng=random.Random(1))
    run_for(loop, 60)
    outcomes = await loop.run()
    assert outcomes["failed"] >= 2
    # Default policy: idle 10 s doubling to 60 s. Before the fix: 1,200 polls (one every
    # round trip, 50 ms). A source that offers nothing is asked at most 6 times.
    assert len(polls) <= 8, len(polls)


# --- the screen's 429 Retry-After holds the next batch and the jobs' reads


@virtual_time
async def test_a_rate_limited_screen_holds_back_the_next_batch_and_the_monitor_reads():
    jobs = InMemoryJobs()
    monitor = InMemoryTier(Tier.MONITOR, jobs, A, latency=0.2)
    gateway = InMemoryTier(Tier.GATEWAY, jobs, A, latency=0.05)
    policy = dataclasses.replace(Policy.hardened(TIMING), status_cache_s=30.0)
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=policy)
    batches: list[float] = []
    fresh = itertools.count()

    async def batch_status(ids: Sequence[str]) -> dict[str, str]:
        batches.append(asyncio.get_running_loop().time())
        raise TierRateLimited("monitor", "batch: HTTP 429", retry_after=120.0)

    async def two_new_jobs() -> list[GatewayMonitorJob]:
        offered = []
        for _ in range(2):
            job_id = f"j{next(fresh)}"
            jobs.add(job_id)
            offered.append(parse_job(jobs.docs[job_id]))
        return offered

    loop = EncoderLoop(guard, commit_at_once, offers={"getjob": two_new_jobs},
                       policy=LoopPolicy(sources=("getjob",)), screen=batch_status,
                       rng=random.Random(1))
    run_for(loop, 119)
    await loop.run()
    # The monitor said: not before 120 s. Before the fix: 10 batches in 119 s (one per poll,
    # every 12.6 s) and every job's pre-claim and deciding reads went to the monitor at once.
    assert batches == [0.0], batches
    assert monitor.calls.count("observe") == 0


# --- a guard told to shut down (not through EncoderLoop.stop) stops the loop


@virtual_time
async def test_a_guard_shut_down_behind_the_loops_back_stops_the_loop_rather_than_spin(caplog):
    caplog.set_level(logging.WARNING)
    jobs = InMemoryJobs()
    polls: list[float] = []
    guard = guard_for(jobs)
    loop = EncoderLoop(guard, commit_at_once, offers={"getjob": new_job_each_poll(jobs, polls)},
                       policy=LoopPolicy(sources=("getjob",)), rng=random.Random(1))
    stopper = run_for(loop, 60)
    guard.request_shutdown()  # a signal handler wired to the guard, as its docs describe
    await loop.run()
    stopper.cancel()
    # Before the fix: 300 polls and 300 monitor reads in 60 s, each job skipped (SHUTDOWN)
    # after its pre-claim read, and the loop never ends by itself.
    assert len(polls) <= 1, len(polls)
    assert caplog.text.count("LOOP_SHUTDOWN") == 1  # said as for any stop, once


# --- a source's malformed answer is a failed poll, not the end of run() with jobs held


@pytest.mark.parametrize("answer", [None, [{"id": "x"}], [GatewayMonitorJob(
    id=7, status="queued", assigned_to=None)]])  # type: ignore[arg-type]
@virtual_time
async def test_a_malformed_offer_is_a_failed_poll_not_the_end_of_the_loop(answer):
    jobs = InMemoryJobs()
    jobs.add("long")
    calls = itertools.count()

    async def offers() -> list[GatewayMonitorJob]:
        if next(calls) == 0:
            return [parse_job(jobs.docs["long"])]
        return answer  # type: ignore[return-value]

    async def work(job, offered):
        job.set_phase("encode")
        await asyncio.sleep(3600)
        return {"cid": "bafy"}

    loop = EncoderLoop(guard_for(jobs), work, offers={"getjob": offers},
                       policy=LoopPolicy(sources=("getjob",), concurrency=2),
                       rng=random.Random(1))
    run_for(loop, 120)
    # Before the fix: TypeError / AttributeError out of run() at the second poll, the long
    # job's guard cancelled, the job left assigned to us until the gateway's T.
    await loop.run()
    assert jobs.docs["long"].get("assigned_to") in (None, "")


# --- claim races lost after the settle wait count in the skip streak (session 46)


class LosingGateway(InMemoryTier):
    """A gateway whose every accept is overwritten by encoder B's a second later: the claim
    race B wins (the real gateway's double assignment, docs/contract.md)."""

    async def claim(self, job_id: str, *, conditional: bool = True) -> str | None:
        token = await super().claim(job_id, conditional=conditional)
        asyncio.get_running_loop().call_later(
            1.0, lambda: self.jobs.update(job_id, assigned_to=B, status="assigned"))
        return token


@virtual_time
async def test_a_source_offering_only_jobs_whose_claim_race_we_lose_backs_off_as_for_skips():
    """A lost claim race (``MONITOR_THEFT_DETECTED`` or ``OWNERSHIP_CONFLICT`` after the settle
    wait) ended the skip streak: a source offering such jobs, or such jobs between jobs
    skipped at once, was asked again at once after each, about once per settle wait, where
    the back-off after skips grows to ``idle_max``."""
    jobs = InMemoryJobs()
    polls: list[float] = []
    clients = [InMemoryTier(Tier.MONITOR, jobs, A, latency=0.2),
               LosingGateway(Tier.GATEWAY, jobs, A, latency=0.05)]
    guard = OwnershipGuard(did=A, clients=clients, policy=Policy.hardened(TIMING))
    codes: list[str] = []
    loop = EncoderLoop(guard, commit_at_once,
                       offers={"getjob": new_job_each_poll(jobs, polls)},
                       policy=PLAIN_GETJOB, on_outcome=lambda o: codes.append(o.code))
    stop_when(loop, lambda: len(polls) >= 6)
    await loop.run()
    assert set(codes[:5]) == {"MONITOR_THEFT_DETECTED"}, codes  # the monitor saw B
    attempt = polls[1] - polls[0]  # the pre-claim read, the claim, the settle, the read
    waits = [round(b - a - attempt, 1) for a, b in itertools.pairwise(polls)]
    # Before the fix: [0.0, 0.0, 0.0, 0.0, 0.0] (each poll one attempt after the last).
    assert waits[:5] == [0.0, 1.0, 2.0, 4.0, 8.0], (attempt, waits)
    assert not jobs.commits

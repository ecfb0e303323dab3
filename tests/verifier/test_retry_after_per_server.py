"""A 429's ``Retry-After`` is a server's word, not one endpoint's: the legacy gateway's
``myJob`` and ``getJob`` are two calls of one server (``offer_sources`` builds both on one
``LegacyGatewayClient``, from ``GATEWAY_URL``), so a 429 on either holds both; Gateway Aid is
another server, and neither holds the other. Until session 46 the hold was per source: a 429
on ``myJob`` left ``getJob`` asked at once, of the gateway that had just said to wait.

The schedule on its own (explicit instants, a scripted random source), then through the
asyncio loop (virtual time)."""

from __future__ import annotations

import asyncio

import pytest

from verifier import (
    EncoderLoop,
    GatewayMonitorJob,
    IdleUntil,
    LoopPolicy,
    PollSchedule,
    PollSource,
    TierRateLimited,
)
from verifier._polling import SOURCE_SERVERS
from verifier.testing import InMemoryJobs, virtual_time

from .test_loop import guard_for, queue_of, stop_when
from .test_polling import Draws, jobs


def policy(*sources: str) -> LoopPolicy:
    return LoopPolicy(sources=sources, idle_s=10, idle_max_s=60, jitter=0, cooldown_s=60)


def test_the_gateways_two_polls_are_one_server_and_aid_another():
    assert SOURCE_SERVERS["myjob"] == SOURCE_SERVERS["getjob"] != SOURCE_SERVERS["aid"]


@pytest.mark.parametrize(("told", "other"), [("myjob", "getjob"), ("getjob", "myjob")])
def test_a_429_on_one_gateway_poll_holds_the_other_until_its_retry_after(told, other):
    schedule = PollSchedule(policy(told, other), Draws())
    assert schedule.next(0.0) == PollSource(told)
    schedule.poll_failed(told, 0.0, retry_after=30.0)
    # Before the fix: PollSource(other), the gateway asked again at once.
    assert schedule.next(0.0) == IdleUntil(30.0)
    assert schedule.next(30.0) == PollSource(told)


def _two_slots_running_a() -> PollSchedule:
    """A two-slot loop on the gateway's two polls whose first poll, at 0 s, started job a."""
    schedule = PollSchedule(LoopPolicy(sources=("myjob", "getjob"), concurrency=2, idle_s=10,
                                       idle_max_s=60, jitter=0, cooldown_s=60), Draws())
    assert schedule.next(0.0) == PollSource("myjob")
    job = schedule.offered("myjob", jobs("a"), 0.0)
    assert job is not None
    schedule.started(job.id)
    return schedule


def test_a_gateway_429_holds_its_polls_after_a_job_ends_too():
    """Two slots: the gateway says 429 while a job runs; the job's end starts a round, which
    must not ask the gateway's other poll inside the hold."""
    schedule = _two_slots_running_a()
    assert schedule.next(1.0) == PollSource("myjob")
    schedule.poll_failed("myjob", 1.0, retry_after=100.0)
    schedule.offered("myjob", [], 1.0)  # (the asyncio driver reports the failed poll so too)
    assert schedule.next(1.0) == IdleUntil(101.0)
    schedule.ended("a", 5.0, processed=True, code="PROCESSED")
    step = schedule.next(5.0)
    assert isinstance(step, IdleUntil) and step.until == 101.0, step
    assert schedule.next(101.0) == PollSource("myjob")


@pytest.mark.parametrize(("told", "other"), [("aid", "getjob"), ("getjob", "aid"),
                                             ("aid", "myjob")])
def test_a_429_from_one_server_does_not_hold_another_servers_source(told, other):
    schedule = PollSchedule(policy(told, other), Draws())
    assert schedule.next(0.0) == PollSource(told)
    schedule.poll_failed(told, 0.0, retry_after=30.0)
    assert schedule.next(0.0) == PollSource(other)
    job = schedule.offered(other, jobs("j"), 0.0)
    assert job is not None and job.id == "j"


def test_a_driver_may_say_which_server_each_source_asks():
    """Gateway Aid is served by the monitor's host (docs/contract.md); a driver whose gateway
    shares it too can say so: then a 429 on aid holds the gateway's polls."""
    schedule = PollSchedule(policy("aid", "getjob"), Draws(),
                            servers={"aid": "one-host", "getjob": "one-host"})
    schedule.next(0.0)
    schedule.poll_failed("aid", 0.0, retry_after=30.0)
    assert schedule.next(0.0) == IdleUntil(30.0)
    # A source the map leaves out is a server of its own.
    schedule = PollSchedule(policy("myjob", "getjob"), Draws(), servers={"myjob": "gw"})
    schedule.next(0.0)
    schedule.poll_failed("myjob", 0.0, retry_after=30.0)
    assert schedule.next(0.0) == PollSource("getjob")


def test_another_servers_retry_after_does_not_hold_the_gateways_polls():
    """Gateway Aid says 429 with the longest Retry-After honoured (600 s); the gateway, which
    said nothing, offers nothing: it is asked again after its own idle wait, not after aid's.
    Before the fix every empty round waited the latest Retry-After of any server: the gateway
    was left unasked for 600 s, ten times the longest wait its policy states."""
    schedule = PollSchedule(policy("aid", "getjob"), Draws())
    assert schedule.next(0.0) == PollSource("aid")
    schedule.poll_failed("aid", 0.0, retry_after=600.0)
    assert schedule.next(0.0) == PollSource("getjob")
    assert schedule.offered("getjob", [], 0.0) is None
    assert schedule.next(0.0) == IdleUntil(10.0)
    for now in (10.0, 30.0, 70.0, 130.0):  # the idle back-off: 10, 20, 40, then 60 s at most
        assert schedule.next(now) == PollSource("getjob")
        assert schedule.offered("getjob", [], now) is None
        step = schedule.next(now)
        assert isinstance(step, IdleUntil) and step.until <= now + 60.0, step
    assert schedule.next(600.0) == PollSource("aid")


def test_a_round_its_servers_all_hold_waits_only_until_the_first_may_be_asked():
    """Two slots. The gateway says 429 (Retry-After 15 s) at 30 s, after two empty polls; the
    other slot's job fails at 31 s, and its back-off ends at 41 s, inside the hold: the round
    then can ask no source. Counted as an empty poll, with its idle wait drawn on top, it
    had the gateway asked at 101 s, 56 s after its Retry-After ran out and 70 s after the
    job's end (the idle gap is 60 s at most from there); it is asked at 45 s."""
    schedule = _two_slots_running_a()
    for now, until in ((0.0, 10.0), (10.0, 30.0)):
        assert schedule.next(now) == PollSource("myjob")
        assert schedule.offered("myjob", [], now) is None
        assert schedule.next(now) == PollSource("getjob")
        assert schedule.offered("getjob", [], now) is None
        assert schedule.next(now) == IdleUntil(until)
    assert schedule.next(30.0) == PollSource("myjob")
    schedule.poll_failed("myjob", 30.0, retry_after=15.0)
    assert schedule.next(30.0) == IdleUntil(70.0)  # getJob held too; the third empty poll
    schedule.ended("a", 31.0, processed=False, code="WORK_FAILED")
    assert schedule.next(31.0) == IdleUntil(41.0)  # the back-off, from the job's end
    assert schedule.next(41.0) == IdleUntil(45.0)  # nothing asked: no empty poll counted
    assert schedule.next(45.0) == PollSource("myjob")


@virtual_time
async def test_the_loop_does_not_ask_getjob_while_the_gateway_holds_myjob():
    jobs_ = InMemoryJobs()
    for i in range(3):
        jobs_.add(f"j{i}")
    get_job_asked: list[float] = []
    told = [False]

    async def my_job() -> list[GatewayMonitorJob]:
        if not told[0]:
            told[0] = True
            raise TierRateLimited("gateway", "myJob: HTTP 429", retry_after=120.0)
        return []

    loop = EncoderLoop(guard_for(jobs_), lambda job, offered: asyncio.sleep(0, {"cid": "b"}),
                       offers={"myjob": my_job, "getjob": queue_of(jobs_, get_job_asked)},
                       policy=LoopPolicy(sources=("myjob", "getjob"), idle_s=1, jitter=0))
    stop_when(loop, lambda: len(jobs_.commits) == 3)
    await loop.run()
    # The gateway said at 0 s: not before 120 s. Before the fix getJob was asked at once, at
    # 0 s, and its three jobs were taken by 25 s.
    assert get_job_asked and min(get_job_asked) >= 120.0, get_job_asked

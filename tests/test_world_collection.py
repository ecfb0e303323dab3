"""The production ``DatabaseTier`` over the world's jobs (``sim._world_collection``).

Live runs give infrastructure encoders the real database client; its filters are evaluated
with MongoDB's semantics (mongomock's matcher) against the world's jobs, and its writes are the
world's own database operations. These tests pin both halves: what the client's fences refuse,
and what the world records when a write goes through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import simpy

from sim._history import History
from sim._params import Scenario
from sim._rng import Streams
from sim._world import World
from sim._world_collection import WorldCollection
from verifier import ClaimRefused, DatabaseTier

E1, E2 = "did:key:e1", "did:key:e2"
JOB = "job-000000"


@pytest.fixture
def world() -> World:
    w = World(simpy.Environment(), Scenario(lie_rate=0.0), Streams.from_seed(1), History())
    w.add_job(JOB)
    return w


def _tier(world: World, did: str, **kwargs: Any) -> DatabaseTier:
    return DatabaseTier(WorldCollection(world, **kwargs), encoder_did=did)  # type: ignore[arg-type]


def _ops(world: World, op: str) -> list[Any]:
    return [r for r in world.history.records if r[3] == op]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_claim_is_the_worlds_assignment_with_the_clients_token(world: World) -> None:
    async def go() -> str:
        async with _tier(world, E1) as e1:
            assert (await e1.observe(JOB)).status == "queued"
            return await e1.claim(JOB)

    token = run(go())
    job = world.jobs[JOB]
    assert (job.owner, job.token, job.status) == (E1, token, "assigned")
    assert len(_ops(world, "assign")) == 1


def test_a_second_claim_is_refused_and_changes_nothing(world: World) -> None:
    async def go() -> None:
        async with _tier(world, E1) as e1, _tier(world, E2) as e2:
            await e1.claim(JOB)
            with pytest.raises(ClaimRefused, match="held by"):
                await e2.claim(JOB)

    run(go())
    assert world.jobs[JOB].owner == E1
    assert len(_ops(world, "assign")) == 1


def test_fenced_heartbeat_finish_and_the_wrong_token(world: World) -> None:
    async def go() -> None:
        async with _tier(world, E1) as e1:
            token = await e1.claim(JOB)
            with pytest.raises(ClaimRefused):
                await e1.heartbeat(JOB, "not-our-token", {"pct": 5.0})
            assert world.jobs[JOB].status == "assigned"  # the refused write changed nothing
            await e1.heartbeat(JOB, token, {"pct": 5.0})
            assert world.jobs[JOB].status == "running"
            await e1.finish(JOB, token, {"cid": "bafyx"})

    run(go())
    assert JOB in world.committed
    assert len(_ops(world, "commit")) == 1


def test_release_requeues_and_the_fifth_failure_fails_the_job(world: World) -> None:
    async def go() -> None:
        async with _tier(world, E1) as e1:
            token = await e1.claim(JOB)
            await e1.release(JOB, token, "giving up", failed=False)
            assert (world.jobs[JOB].owner, world.jobs[JOB].status) == (None, "queued")
            world.jobs[JOB].attempts = 4
            token = await e1.claim(JOB)
            await e1.release(JOB, token, "broken input", failed=True)

    run(go())
    assert world.jobs[JOB].status == "failed"
    assert world.jobs[JOB].attempts == 5


def test_an_unknown_job_is_no_document(world: World) -> None:
    async def go() -> Any:
        async with _tier(world, E1) as e1:
            return await e1.observe("no-such-job")

    assert run(go()).job is None


def test_unknown_update_shapes_fail_loudly(world: World) -> None:
    collection = WorldCollection(world)
    with pytest.raises(NotImplementedError):
        collection.update_one({"id": JOB, "assigned_to": E1}, {"$set": {"color": "red"}})
    with pytest.raises(NotImplementedError):
        collection.find_one_and_update({"id": JOB}, {"$set": {"status": "running"}})
    with pytest.raises(NotImplementedError):
        collection.find_one({"status": "queued"})  # not located by id


def test_every_access_goes_through_run_and_the_delay_is_slept(world: World) -> None:
    hops: list[int] = []
    slept: list[float] = []

    def hop(fn: Callable[[], Any]) -> Any:
        hops.append(1)
        return fn()

    async def go() -> None:
        async with _tier(world, E1, run=hop, sleep=slept.append) as e1:
            await e1.observe(JOB)
            await e1.claim(JOB)

    run(go())
    assert len(hops) == 2
    assert len(slept) == 2 and all(d > 0 for d in slept)  # the world's database latency

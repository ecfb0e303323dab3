"""The emulated monitor's records and stand-in, in the real server's shapes.

Real records are MongoDB documents and carry their ``_id``; the stand-in the real server builds
when its database misses the job (or is down) is made field by field from the legacy gateway's
status answer: the gateway's id, status and owner, blank video fields, and no ``_id``. The
production client must read the first as a record and the second as proving nothing, even
when the stand-in names the asker as owner (``docs/contract.md``, "Synthetic stand-in jobs").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from sim import load_scenario
from sim.live import Emulator, LiveWorld
from sim.live._emulator import object_id
from verifier import EncoderIdentity, GatewayMonitorService, LegacyGatewayClient

ALICE = EncoderIdentity.from_seed(b"a" * 32)
QUIET = {"jobs": 2, "lie_rate": 0.0, "monitor_lag": 0.0, "monitor_lag_mean": 0.0,
         "monitor_error_rate": 0.0, "monitor_synthetic_rate": 0.0, "status_lie_rate": 0.0,
         "reply_loss_rate": 0.0, "late_write_rate": 0.0, "write_delay": 0.0,
         "gateway_latency": 0.0, "monitor_latency": 0.0, "aid_latency": 0.0}


async def _emulator(**changes: Any) -> Emulator:
    scenario = load_scenario("live").replace(**{**QUIET, **changes})
    emulator = Emulator(LiveWorld(scenario, seed=1))
    await emulator.start()
    return emulator


@pytest_asyncio.fixture
async def quiet() -> AsyncIterator[Emulator]:
    emulator = await _emulator()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest_asyncio.fixture
async def standing_in() -> AsyncIterator[Emulator]:
    """A monitor whose database view is down for every read (the gateway answers honestly)."""
    emulator = await _emulator(monitor_synthetic_rate=1.0)
    try:
        yield emulator
    finally:
        await emulator.stop()


async def _accepted_by_alice(emu: Emulator) -> str:
    async with httpx.AsyncClient(headers={"X-Encoder-DID": ALICE.did}) as http:
        gateway = LegacyGatewayClient(emu.gateway_url, ALICE, client=http)
        offered = await gateway.my_job()
        assert offered is not None
        await gateway.accept_job(offered.id)
    emu.live.advance()
    assert emu.world.jobs[offered.id].owner == ALICE.did
    return offered.id


@pytest.mark.asyncio
async def test_real_monitor_records_carry_mongodbs_id(quiet: Emulator) -> None:
    job_id = await _accepted_by_alice(quiet)
    async with httpx.AsyncClient() as http:
        body = (await http.get(f"{quiet.monitor_url}/jobs/{job_id}")).json()
        assert body["data"]["_id"] == object_id(job_id) and len(object_id(job_id)) == 24
        # Listings are records too. Not /jobs/available: it lists `unassigned` jobs only
        # (contract: "`GET {base}/jobs/available` (status `unassigned`, newest 10)"), and the
        # gateway's jobs wait as `queued`, so it is empty here; the completed list is not.
        assert (await http.get(f"{quiet.monitor_url}/jobs/available")).json()["data"] == []
        other = next(job for job in quiet.world.jobs.values() if job.id != job_id)
        other.status = "complete"
        listing = (await http.get(f"{quiet.monitor_url}/jobs/completed")).json()["data"]
        assert listing and all(record["_id"] == object_id(record["id"]) for record in listing)
    async with GatewayMonitorService(quiet.monitor_url) as monitor:
        job = await monitor.get_job_details(job_id)
        assert job is not None and not job.synthetic
        assert (await monitor.verify_job_ownership(job_id, ALICE.did)).is_safe_to_process


@pytest.mark.asyncio
async def test_the_stand_in_has_the_real_servers_shape_and_never_confirms(
    standing_in: Emulator,
) -> None:
    job_id = await _accepted_by_alice(standing_in)
    async with httpx.AsyncClient() as http:
        reply = await http.get(f"{standing_in.monitor_url}/jobs/{job_id}")
    assert reply.status_code == 200
    data = reply.json()["data"]
    created_at = data.pop("created_at")
    assert isinstance(created_at, str) and created_at.endswith("Z")
    assert data == {
        "id": job_id, "status": "assigned", "assigned_to": ALICE.did, "progress": 0,
        "metadata": {"video_owner": "", "video_permlink": ""},
        "storageMetadata": {"app": "", "key": "", "type": ""},
        "input": {"uri": "", "size": 0}, "owner": "", "permlink": "",
    }
    async with GatewayMonitorService(standing_in.monitor_url) as monitor:
        job = await monitor.get_job_details(job_id)
        assert job is not None and job.synthetic
        assert (job.id, job.status, job.assigned_to) == (job_id, "assigned", ALICE.did)
        result = await monitor.verify_job_ownership(job_id, ALICE.did)
        assert not result.is_owned and not result.is_safe_to_process
        observation = await monitor.observe(job_id)
        assert observation.job is not None and observation.job.synthetic

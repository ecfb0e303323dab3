"""The emulator against the contract (an adversarial review, session 45): its routes, and the
production clients against the real shapes (loopback and MockTransport only).

* ``getJob`` (3speak-contract.md, "Legacy gateway endpoints": "returns the oldest queued job
  to **every** caller, reserves nothing") was served by the scenario's ``myJob`` round-robin
  whenever the scenario's assignment is ``myjob`` (the ``live``, ``default``, ``3speak-2026``
  and ``s-1k`` scenarios): each poller got a different job, taken out of the queue.
* Gateway Aid ("`/aid/v1`, same server" as the monitor) stayed up when the monitor's server
  was stopped (``--monitor-restart``), and its reads and listing answered through the world's
  monitor outages, in which its writes (the world's ``_aid_down``) were already down.
* The monitor's wait for a silent gateway was cut at the *simulated* client's timeout
  (``client_timeout``) with a 500, where the real server answers 200 after its wait.
"""

from __future__ import annotations

import httpx
import pytest

from sim.live import Emulator
from verifier import (
    GatewayAidClient,
    GatewayMonitorService,
    LegacyGatewayClient,
    TierUnavailable,
)

from .test_emulator import ALICE, BOB, _emulator
from .test_emulator import emu as _emu_fixture

emu = _emu_fixture

# ---------------------------------------------------------------------- getJob


@pytest.mark.asyncio
@pytest.mark.parametrize("assignment", ["myjob", "getjob"])
async def test_getjob_offers_the_oldest_queued_job_to_every_caller(assignment: str) -> None:
    emu = await _emulator(assignment=assignment)
    try:
        async with LegacyGatewayClient(emu.gateway_url, ALICE, timeout=5) as alice, \
                LegacyGatewayClient(emu.gateway_url, BOB, timeout=5) as bob:
            offers = [await alice.get_job(), await bob.get_job(), await alice.get_job()]
            # myJob may pre-assign a job to a poller: getJob still hands out the oldest
            # queued one (myJob "offers, it does not write": the job stays queued).
            await alice.my_job()
            offers.append(await bob.get_job())
        assert [job.id if job else None for job in offers] == ["job-000000"] * 4
    finally:
        await emu.stop()


@pytest.mark.asyncio
async def test_against_the_real_getjob_two_nodes_are_offered_one_job_and_both_accepts_ok(
) -> None:
    # The real shape (contract): getJob answers the oldest queued job to every caller, and
    # acceptJob is check-then-act (both OK, last writer wins). Every getJob poll of two idle
    # nodes is then a contested claim, which the emulator's round-robin getJob never made.
    job = {"id": "j1", "status": "queued", "assigned_to": None,
           "input": {"uri": "ipfs://x", "size": 1}}

    def gateway(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/getJob"):
            return httpx.Response(200, json=job)
        return httpx.Response(200, json={"status": "success", "message": "ok"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(gateway)) as http:
        alice = LegacyGatewayClient("http://gw.test", ALICE, client=http)
        bob = LegacyGatewayClient("http://gw.test", BOB, client=http)
        offered = [await alice.get_job(), await bob.get_job()]
        assert {o.id for o in offered if o} == {"j1"}
        await alice.accept_job("j1")  # answered OK ...
        await bob.accept_job("j1")    # ... and so is the competing accept


# ---------------------------------------------------------------------- Gateway Aid


@pytest.mark.asyncio
async def test_aid_goes_down_with_the_monitor_server(emu: Emulator) -> None:
    async with GatewayAidClient(emu.aid_url, ALICE.did, timeout=2) as aid:
        assert (await aid.observe("job-000000")).status == "queued"
        await emu.stop_monitor()
        try:
            with pytest.raises(TierUnavailable):
                await aid.observe("job-000000")
            with pytest.raises(TierUnavailable):
                await aid.list_jobs()
        finally:
            await emu.start_monitor()
        assert (await aid.observe("job-000000")).status == "queued"


@pytest.mark.asyncio
async def test_aid_reads_and_listing_are_down_in_a_monitor_outage(emu: Emulator) -> None:
    async with GatewayAidClient(emu.aid_url, ALICE.did, timeout=2) as aid:
        await aid.claim("job-000000")
        assert (await aid.observe("job-000000")).owner == ALICE.did
        emu.world.monitor_down = [(0.0, 1e9)]
        with pytest.raises(TierUnavailable):  # writes were already down ...
            await aid.heartbeat("job-000000", None, {"pct": 5.0})
        with pytest.raises(TierUnavailable):  # ... and so is the read that confirms
            await aid.observe("job-000000")
        with pytest.raises(TierUnavailable):
            await aid.list_jobs()


# ---------------------------------------------------------------------- a silent gateway


@pytest.mark.asyncio
async def test_a_silent_gateway_is_waited_out_as_the_real_monitor_does() -> None:
    # 3speak-contract.md: for assigned/running jobs "the answer waits for the gateway overlay:
    # ~10 s when the gateway is silent (then the stored data, with 200)", and batch-status
    # "answers 200 {} when the gateway is down". The emulator cut both at the *world's*
    # client_timeout with a 500 the real server never sends, whatever the real client's own
    # timeout (here 3 s: a client that waits gets the record from the real server).
    emu = await _emulator(gateway_timeout=1.0, client_timeout=0.5)
    try:
        async with LegacyGatewayClient(emu.gateway_url, ALICE, timeout=3) as gateway:
            await gateway.accept_job("job-000000")
        emu.world.gateway_down = [(0.0, 1e9)]
        async with GatewayMonitorService(emu.monitor_url, timeout=3) as monitor:
            job = await monitor.get_job_details("job-000000")
            assert job is not None and (job.status, job.assigned_to) == ("assigned", ALICE.did)
            assert await monitor.batch_status(["job-000001"]) == {}
    finally:
        await emu.stop()

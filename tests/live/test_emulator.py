"""The emulated services, spoken to by the production clients over real loopback sockets.

Each test starts an :class:`~sim.live._emulator.Emulator` on free ports over a small real-time
world and asks it what an encoder would. The point is twofold: the emulator answers in the
contract's shapes (so live runs exercise the clients' real parsing), and the clients map its
faults (401, 429 + Retry-After, resets, slowness, a stopped server) to "no answer", never to
an ownership fact.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from sim import load_scenario
from sim.live import Emulator, HttpFaults, LiveWorld
from verifier import (
    ClaimRefused,
    EncoderIdentity,
    GatewayAidClient,
    GatewayMonitorService,
    LegacyGatewayClient,
    TierError,
    TierRateLimited,
    TierTimeout,
    TierUnavailable,
)

ALICE = EncoderIdentity.from_seed(b"a" * 32)
BOB = EncoderIdentity.from_seed(b"b" * 32)
#: A quiet world: no lies, no lag, no random errors, so each answer is the state itself.
QUIET = {"jobs": 3, "lie_rate": 0.0, "monitor_lag": 0.0, "monitor_lag_mean": 0.0,
         "monitor_error_rate": 0.0, "monitor_synthetic_rate": 0.0, "status_lie_rate": 0.0,
         "reply_loss_rate": 0.0, "late_write_rate": 0.0, "write_delay": 0.0,
         "gateway_latency": 0.0, "monitor_latency": 0.0, "aid_latency": 0.0,
         # Gateway Aid claiming the world's (gateway) jobs, as before session 32: these tests
         # drive its HTTP mechanics, not the contract's pending-only filter (tested apart).
         "aid_pending_only": 0.0}


async def _emulator(faults: HttpFaults | None = None, approved: Any = None,
                    **changes: Any) -> Emulator:
    scenario = load_scenario("live").replace(**{**QUIET, **changes})
    emulator = Emulator(LiveWorld(scenario, seed=1), faults=faults, approved=approved)
    await emulator.start()
    return emulator


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[Emulator]:
    emulator = await _emulator()
    try:
        yield emulator
    finally:
        await emulator.stop()


def _forged(payload: dict[str, Any]) -> str:
    """A JWS signed by BOB whose kid claims ALICE: the signature cannot verify."""
    token = BOB.sign_jws(payload)
    header_b64, body_b64, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    header["kid"] = ALICE.did
    forged = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{forged}.{body_b64}.{signature}"


# --------------------------------------------------------------------------- monitor


@pytest.mark.asyncio
async def test_monitor_answers_a_queued_job_and_a_missing_one(emu: Emulator) -> None:
    async with GatewayMonitorService(emu.monitor_url) as monitor:
        job = await monitor.get_job_details("job-000000")
        assert job is not None and job.id == "job-000000"
        assert job.status == "queued" and job.assigned_to is None and not job.synthetic
        assert await monitor.get_job_details("no-such-job") is None
        assert await monitor.health() is True
        statuses = await monitor.batch_status(["job-000000", "job-000001", "nope"])
        assert statuses == {"job-000000": "queued", "job-000001": "queued"}


@pytest.mark.asyncio
async def test_monitor_unknown_route_and_oversize_batch_are_not_answers(emu: Emulator) -> None:
    async with httpx.AsyncClient() as http:
        reply = await http.get(emu.monitor.url + "/nope/jobs/job-000000")
        assert (reply.status_code, reply.json()) == (404, {"error": "Route not found"})
        reply = await http.post(emu.monitor_url + "/jobs/batch-status",
                                json={"jobIds": [f"j{i}" for i in range(51)]})
        assert reply.status_code == 400
    # A monitor at a wrong base URL says nothing about the job: an error, never "not found".
    async with GatewayMonitorService(emu.monitor.url + "/wrong") as monitor:
        with pytest.raises(TierUnavailable):
            await monitor.get_job_details("job-000000")


@pytest.mark.asyncio
async def test_available_lists_only_unassigned_jobs_never_the_gateways_queued_ones(
        emu: Emulator) -> None:
    # Contract (3speak-contract.md, "Gateway Monitor API"): "`GET {base}/jobs/available`
    # (status `unassigned`, newest 10)"; docs/contract.md: "newest 10 jobs with status
    # `unassigned`". The gateway's jobs wait as `queued`, aid's as `pending`: neither is listed.
    async with httpx.AsyncClient() as http:
        url = f"{emu.monitor_url}/jobs/available"
        assert all(job.status == "queued" for job in emu.world.jobs.values())
        assert (await http.get(url)).json() == {"success": True, "data": []}
        emu.world.jobs["job-000001"].status = "unassigned"  # a record in that vocabulary
        listed = (await http.get(url)).json()["data"]
        assert [job["id"] for job in listed] == ["job-000001"]
        assert listed[0]["status"] == "unassigned"


@pytest.mark.asyncio
async def test_job_status_proxies_the_gateway_its_lies_calls_and_unknown_ids() -> None:
    # Contract: `GET /api/jobs/{id}/status` "never reads the database: it proxies the gateway
    # (500 when the gateway is down, 404 "Job status not found" ...)". So it says what the
    # gateway would say (its status lie included), costs the gateway a request, and an id the
    # gateway does not know is the gateway's 404.
    emulator = await _emulator(status_lie_rate=1.0, gateway_timeout=0.3)
    try:
        async with httpx.AsyncClient(headers={"X-Encoder-DID": ALICE.did}) as http:
            gateway = LegacyGatewayClient(emulator.gateway_url, ALICE, client=http)
            await gateway.accept_job("job-000000")
            emulator.live.advance()
            await gateway.reject_job("job-000000")  # back in the queue: the truth is queued
        emulator.live.advance()
        job = emulator.world.jobs["job-000000"]
        assert (job.status, job.owner) == ("queued", None)
        async with httpx.AsyncClient() as http:
            before = emulator.world.calls["gateway"]
            reply = await http.get(f"{emulator.monitor_url}/jobs/job-000000/status")
            assert reply.status_code == 200
            data = reply.json()["data"]
            # the gateway's lie ("assigned" to an encoder it handed the job to), as proxied
            assert (data["job_id"], data["status"], data["encoder_id"]) == (
                "job-000000", "assigned", ALICE.did)
            assert emulator.world.calls["gateway"] == before + 1
            missing = await http.get(f"{emulator.monitor_url}/jobs/no-such-job/status")
            assert (missing.status_code, missing.json()) == (
                404, {"success": False, "error": "Job status not found"})
            assert emulator.world.calls["gateway"] == before + 2  # asked, and said 404
            emulator.world.gateway_down = [(0.0, 1e9)]
            start = asyncio.get_running_loop().time()
            down = await http.get(f"{emulator.monitor_url}/jobs/job-000001/status")
            took = asyncio.get_running_loop().time() - start
            assert (down.status_code, down.json()) == (
                500, {"success": False, "error": "Failed to fetch job status"})
            assert took >= 0.3 - 0.05  # a silent gateway: the proxy waits out its timeout
    finally:
        await emulator.stop()


# --------------------------------------------------------------------------- gateway


@pytest.mark.asyncio
async def test_gateway_offers_accepts_and_reports_the_owner(emu: Emulator) -> None:
    async with httpx.AsyncClient(headers={"X-Encoder-DID": ALICE.did}) as http:
        gateway = LegacyGatewayClient(emu.gateway_url, ALICE, client=http)
        offered = await gateway.my_job()
        assert offered is not None
        await gateway.accept_job(offered.id)
        emu.live.advance()
        assert emu.world.jobs[offered.id].owner == ALICE.did
        seen = await gateway.job_status(offered.id)  # nested {job, rank}
        assert seen is not None and seen.assigned_to == ALICE.did
        await gateway.ping_job(offered.id, 10.0, 100.0)
        await gateway.finish_job(offered.id, "bafyresult")
        assert offered.id in emu.world.committed
        bob = LegacyGatewayClient(emu.gateway_url, BOB, client=http)
        with pytest.raises(ClaimRefused):  # the generic 500 of a non-owner's finish
            await bob.finish_job(offered.id, "bafyother")


@pytest.mark.asyncio
async def test_bad_signatures_are_refused_and_change_nothing(emu: Emulator) -> None:
    job = emu.world.jobs["job-000001"]
    assigned_before = [r for r in emu.live.history.records if r[3] == "assign"]
    async with httpx.AsyncClient() as http:
        url = emu.gateway_url + "/api/v0/gateway/acceptJob"
        for body in ({"jws": _forged({"job_id": job.id})}, {"jws": "not.a.jws"}, {},
                     {"jws": ALICE.sign_jws({"job_id": job.id})[:-4] + "AAAA"}):
            reply = await http.post(url, json=body)
            assert reply.status_code == 401, body
    emu.live.advance()
    assert job.owner is None and job.status == "queued"
    assert [r for r in emu.live.history.records if r[3] == "assign"] == assigned_before
    assert emu.bad_signatures == 4


@pytest.mark.asyncio
async def test_the_client_reads_a_401_as_a_configuration_problem(emu: Emulator) -> None:
    class Impostor(EncoderIdentity):
        def sign_jws(self, payload: Any) -> str:
            return _forged(dict(payload))

    impostor = Impostor.from_seed(b"a" * 32)
    async with LegacyGatewayClient(emu.gateway_url, impostor) as gateway:
        with pytest.raises(TierUnavailable, match="identity"):
            await gateway.accept_job("job-000002")


# --------------------------------------------------------------------------- aid


@pytest.mark.asyncio
async def test_aid_refuses_a_gateway_job_as_its_contract_says() -> None:
    """``claim-job`` matches only Aid's own ``pending`` jobs: the world's are the gateway's."""
    emulator = await _emulator(approved={ALICE.did}, aid_pending_only=1.0)
    try:
        async with GatewayAidClient(emulator.aid_url, ALICE.did) as alice:
            with pytest.raises(ClaimRefused, match="409"):
                await alice.claim("job-000000")
        assert emulator.world.jobs["job-000000"].owner is None
    finally:
        await emulator.stop()


@pytest.mark.asyncio
async def test_aid_claim_is_atomic_and_only_for_approved_dids() -> None:
    emulator = await _emulator(approved={ALICE.did, BOB.did})
    try:
        async with GatewayAidClient(emulator.aid_url, ALICE.did) as alice, \
                GatewayAidClient(emulator.aid_url, BOB.did) as bob:
            assert await alice.claim("job-000000") is not None
            with pytest.raises(ClaimRefused, match="409"):
                await bob.claim("job-000000")
            seen = await alice.observe("job-000000")
            assert seen.owner == ALICE.did
            with pytest.raises(ClaimRefused):
                await bob.heartbeat("job-000000", None, {"pct": 5.0})
            await alice.heartbeat("job-000000", None, {"pct": 5.0})
            await alice.finish("job-000000", None, {"cid": "bafyx"})
            assert "job-000000" in emulator.world.committed
        carol = EncoderIdentity.from_seed(b"c" * 32).did
        async with GatewayAidClient(emulator.aid_url, carol) as stranger:
            with pytest.raises(TierUnavailable, match="ENCODER_NOT_AUTHORIZED"):
                await stranger.claim("job-000001")
    finally:
        await emulator.stop()


@pytest.mark.asyncio
async def test_aid_lists_jobs_with_their_input_but_hides_status_and_owner() -> None:
    """Found by an operator review (session 14): the emulator's list-jobs gave only ids and
    dates, so a command run for an aid job got no input; the contract hides only the status
    and the owner."""
    emulator = await _emulator(approved={ALICE.did})
    try:
        async with GatewayAidClient(emulator.aid_url, ALICE.did) as alice:
            listed = await alice.list_jobs()
        assert listed and all(job.input.get("uri") for job in listed)
        assert all(job.status is None and job.assigned_to is None for job in listed)
    finally:
        await emulator.stop()


# --------------------------------------------------------------------------- faults


@pytest.mark.asyncio
async def test_rate_limits_resets_and_slowness_are_no_answer() -> None:
    for faults, error in ((HttpFaults(rate_limit_rate=1.0, retry_after_s=3), TierRateLimited),
                          (HttpFaults(reset_rate=1.0), TierError),
                          (HttpFaults(slow_rate=1.0, slow_s=1.0), TierTimeout)):
        emulator = await _emulator(faults=faults)
        try:
            async with GatewayMonitorService(emulator.monitor_url, timeout=0.3) as monitor:
                with pytest.raises(error) as caught:
                    await monitor.observe("job-000000")
                if isinstance(caught.value, TierRateLimited):
                    assert caught.value.retry_after == 3.0
        finally:
            await emulator.stop()


@pytest.mark.asyncio
async def test_a_rate_limit_storm_is_429_to_every_monitor_request_inside_its_window() -> None:
    # A storm that has begun answers every monitor request 429 with the Retry-After; one not
    # yet begun answers none (it is a window of the run, not a rate); the gateway is spared.
    for storm, storming in (((0.0, 3600.0), True), ((3600.0, 5.0), False)):
        emulator = await _emulator(faults=HttpFaults(rate_limit_storm=storm, retry_after_s=2))
        try:
            async with GatewayMonitorService(emulator.monitor_url, timeout=1.0) as monitor, \
                    LegacyGatewayClient(emulator.gateway_url, ALICE) as gateway:
                for _ in range(3):
                    if storming:
                        with pytest.raises(TierRateLimited) as caught:
                            await monitor.observe("job-000000")
                        assert caught.value.retry_after == 2.0
                    else:
                        assert (await monitor.observe("job-000000")).status == "queued"
                assert (await gateway.job_status("job-000000")).status == "queued"
            assert emulator.injected["rate_limited"] == (3 if storming else 0)
        finally:
            await emulator.stop()
    assert "rate_limit_storm" in " ".join(HttpFaults(rate_limit_storm=(1.0, 0.0)).problems())


@pytest.mark.asyncio
async def test_a_stopped_monitor_refuses_then_comes_back_on_the_same_port(
        emu: Emulator) -> None:
    url = emu.monitor_url
    async with GatewayMonitorService(url, timeout=1.0) as monitor:
        assert (await monitor.observe("job-000000")).status == "queued"
        await emu.stop_monitor()
        with pytest.raises(TierUnavailable):
            await monitor.observe("job-000000")
        await emu.start_monitor()
        assert emu.monitor_url == url
        assert (await monitor.observe("job-000000")).status == "queued"


@pytest.mark.asyncio
async def test_during_a_gateway_outage_aid_writes_are_unknown_not_refused() -> None:
    # An outage the world puts on Aid (the monitor's server is down, or, the adversary's
    # choice, the gateway's) is "no answer" for every aid write, never "the job is not
    # yours" (which would cancel work that is still ours).
    emulator = await _emulator()
    try:
        async with GatewayAidClient(emulator.aid_url, ALICE.did) as alice:
            await alice.claim("job-000000")
            emulator.world.gateway_down = [(0.0, 1e9)]
            for write in (alice.heartbeat("job-000000", None, {"pct": 5.0}),
                          alice.finish("job-000000", None, {"cid": "bafyx"}),
                          alice.claim("job-000001")):
                with pytest.raises(TierUnavailable):
                    await write
        assert emulator.world.jobs["job-000000"].owner == ALICE.did
        assert not emulator.world.committed
    finally:
        await emulator.stop()


@pytest.mark.asyncio
async def test_a_silent_gateway_makes_the_monitor_slow_on_held_jobs_not_wrong() -> None:
    # Contract: for assigned/running jobs the monitor waits for the gateway's overlay, then
    # answers the stored data with 200. A client with a shorter timeout gets "no answer".
    emulator = await _emulator(gateway_timeout=1.0)
    try:
        async with httpx.AsyncClient(headers={"X-Encoder-DID": ALICE.did}) as http:
            gateway = LegacyGatewayClient(emulator.gateway_url, ALICE, client=http)
            await gateway.accept_job("job-000000")
        emulator.live.advance()
        emulator.world.gateway_down = [(0.0, 1e9)]
        async with GatewayMonitorService(emulator.monitor_url, timeout=0.3) as impatient:
            with pytest.raises(TierTimeout):
                await impatient.observe("job-000000")
            assert (await impatient.observe("job-000001")).status == "queued"  # not held: fast
        async with GatewayMonitorService(emulator.monitor_url, timeout=3.0) as patient:
            assert (await patient.observe("job-000000")).owner == ALICE.did
    finally:
        await emulator.stop()

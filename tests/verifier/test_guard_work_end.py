"""The guard hears the work's end before reports the work made just before it (session 45).

With tiers slower than R the protocol makes two requests between waits; each report delivered
at a wait lets it make two more. The guard delivered the work's last reports before its end,
so after the work had ended it went on pinging and reading (each request bounded only by the
lease end) before it heard the end; the simulator's driver, which the suites run, delivers
the end in their place. Now the guard drops reports the end has made moot."""

from __future__ import annotations

import asyncio
from typing import Any

from verifier import ClaimedJob, OwnershipGuard, Policy, Tier, TimingModel
from verifier.protocol import OutcomeKind
from verifier.testing import InMemoryJobs, InMemoryTier, run_virtual

A = "did:key:z6MkEncoderA"
SHORT = TimingModel(monitor_lag=1, write_delay=0.5, pause=0.5, clock_drift=0.1,
                    recheck_interval=2, cancel_latency=0.5, reassign_timeout=12,
                    confirm_timeout=3, retry_interval=0.5)


class Slow(InMemoryTier):
    """Pings and re-checks that take longer than R, stamped when they are called."""

    def __init__(self, *args: Any, calls: list[tuple[float, str]], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.stamped = calls

    async def observe(self, job_id: str) -> Any:
        self.stamped.append((asyncio.get_running_loop().time(), "read"))
        return await super().observe(job_id)

    async def heartbeat(self, job_id: str, token: Any, progress: Any) -> None:
        self.stamped.append((asyncio.get_running_loop().time(), "ping"))
        await asyncio.sleep(2.5)
        await super().heartbeat(job_id, token, progress)


def test_reports_made_just_before_the_end_do_not_delay_the_finish() -> None:
    async def main() -> Any:
        calls: list[tuple[float, str]] = []
        jobs = InMemoryJobs()
        jobs.add("j1")
        ended: list[float] = []

        async def process(job: ClaimedJob) -> Any:
            job.set_phase("encode")
            await asyncio.sleep(5.1)  # while a ping is under way
            job.set_phase("upload")
            job.set_progress(pct=100.0)
            await asyncio.sleep(0.1)
            ended.append(asyncio.get_running_loop().time())
            return {"cid": "bafy-j1"}

        guard = OwnershipGuard(did=A, policy=Policy.hardened(SHORT), clients=[
            Slow(Tier.MONITOR, jobs, A, latency=1.5, calls=calls),
            Slow(Tier.GATEWAY, jobs, A, calls=calls)])
        outcome = await guard.run("j1", process)
        return outcome, [op for t, op in calls if t > ended[0]], jobs.commits

    outcome, after_end, commits = run_virtual(main())
    assert outcome.kind is OutcomeKind.PROCESSED and commits == [("j1", A)]
    # At most the request left of the streak under way when the work ended: none decided on
    # the strength of a report the end had made moot.
    assert len(after_end) <= 1, after_end

"""The simulator's world, run in real time: the job store behind the live emulator.

The emulated servers must share one job store and behave like the simulator's network
(double accepts whose writes land up to G later, last writer wins, monitor lag, outage
windows, reassignment after T). Rather than a second model of the network, :class:`LiveWorld`
runs the simulator's own :class:`~sim._world.World` on a SimPy environment whose clock is
dragged along behind the event loop's: before each request is answered the environment is run
*until now*, so every delayed write, completion and reassignment scan that was due has
happened, in simulated-time order, and the answer is computed from the state as of now.
A ticker does the same a few times a second so that nothing waits for the next request
(the reassignment of a silent encoder's job, for instance).

Times in the history are seconds since the world started, on the loop's monotonic clock; the
live encoders record on the same clock (:meth:`LiveWorld.now`), so the simulator's checkers
read a live history exactly as they read a simulated one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import simpy

from verifier import normalize_did

from .._history import History
from .._rng import Streams
from .._scenario import Scenario
from .._world import CLAIMABLE_STATUSES, World

__all__ = ["LiveWorld"]

_T = TypeVar("_T")
#: How often the world catches up with the clock when no request drives it (seconds).
TICK_S = 0.05


class LiveWorld:
    """A :class:`World` whose simulated time is the event loop's time since :meth:`begin`."""

    def __init__(self, scenario: Scenario, seed: int, *, clock: Callable[[], float] | None = None,
                 job_ids: list[str] | None = None) -> None:
        self.scenario = scenario
        self.seed = seed
        self.streams = Streams.from_seed(seed)
        self.env = simpy.Environment()
        self.history = History()
        self.world = World(self.env, scenario, self.streams, self.history)
        # Real clients time out by themselves: the emulated monitor answers what the real
        # server answers after waiting for a silent gateway, however long (3speak-contract.md).
        self.world.cut_waits_at_client_timeout = False
        self.job_ids = job_ids if job_ids is not None else [
            f"job-{i:06d}" for i in range(scenario.jobs)]
        self._clock = clock
        self._t0: float | None = None
        self._ticker: asyncio.Task[None] | None = None
        #: job id -> the DID it is pre-assigned to (``add_assigned``).
        self.reserved: dict[str, str] = {}

    # ------------------------------------------------------------------ the clock

    def _loop_time(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def begin(self) -> None:
        """Start the clock and release the jobs (all at once, or at the scenario's arrival
        rate as the simulator does)."""
        if self._t0 is not None:
            return
        self._t0 = self._loop_time()
        self.world.release(self.job_ids, self.streams)

    @property
    def t0(self) -> float:
        """The loop time of :meth:`begin` (``time.monotonic``: the same in every process)."""
        if self._t0 is None:
            raise RuntimeError("the live world has not begun")
        return self._t0

    def now(self) -> float:
        """Seconds since :meth:`begin`: the history's clock."""
        if self._t0 is None:
            raise RuntimeError("the live world has not begun")
        return self._loop_time() - self._t0

    def advance(self) -> float:
        """Run the world until now; returns now. Call before touching the world."""
        now = self.now()
        if now > self.env.now:
            self.env.run(until=now)
        return self.env.now

    def call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` against the world as of now (on the loop's thread)."""
        self.advance()
        return fn()

    def hop(self, loop: asyncio.AbstractEventLoop) -> Callable[[Callable[[], Any]], Any]:
        """A thread-safe :meth:`call` for code running off the loop (the database tier's
        worker thread): it blocks that thread until the loop has run ``fn``."""

        def run(fn: Callable[[], Any]) -> Any:
            async def on_loop() -> Any:
                return self.call(fn)

            return asyncio.run_coroutine_threadsafe(on_loop(), loop).result()

        return run

    def add_assigned(self, job_id: str, did: str) -> None:
        """Add ``job_id`` pre-assigned to ``did`` (``sim serve --assigned``): the gateway offers
        it to that encoder alone, first, as the 2026 gateway's ``myJob`` offers the job it
        picked for the caller, until someone holds it; given back, it joins the queue."""
        self.advance()
        if job_id in self.world.jobs:
            raise ValueError(f"job {job_id} already exists")
        self.world.add_job(job_id, queued=False)
        self.reserved[job_id] = normalize_did(did)

    def reserved_for(self, did: str) -> str | None:
        """The first job pre-assigned to ``did`` that nobody holds and nobody finished."""
        did = normalize_did(did)
        for job_id, owner in self.reserved.items():
            job = self.world.jobs[job_id]
            if owner == did and job.owner is None and job.status in CLAIMABLE_STATUSES:
                return job_id
        return None

    def add_completed(self, job_id: str, did: str) -> None:
        """Add ``job_id`` already completed by ``did`` (for ``sim serve --completed``), through
        the world's own database operations (claim, then fenced finish), so that every
        service's view of it agrees."""
        self.advance()
        if job_id in self.world.jobs:
            raise ValueError(f"job {job_id} already exists")
        self.world.add_job(job_id)
        answer, _ = self.world.db_claim(did, job_id, conditional=True)
        self.world.db_finish(did, job_id, answer.token, fenced=True)

    # ------------------------------------------------------------------ background

    async def _tick(self) -> None:
        while True:
            self.advance()
            await asyncio.sleep(TICK_S)

    def start_ticker(self) -> None:
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="world-tick")

    async def stop_ticker(self) -> None:
        task, self._ticker = self._ticker, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def done(self) -> bool:
        """Every job committed or failed for good."""
        return bool(self.world.done_event.triggered)

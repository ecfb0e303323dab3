"""A node's crash and graceful restart, driven directly (``Encoder._crash``,
``Encoder._restart``): what a new process starts with (mutation testing, session 42: none of
these was checked by a direct test, and the families' verdicts did not change without them).
"""

from __future__ import annotations

import math

from sim._encoder import _WORK_DONE, Encoder
from tests.sim.drivers import an_encoder
from verifier.protocol import Observation, Tier

JOB = "job-000000"


def _cached(encoder: Encoder) -> None:
    """The node's status cache knows the job (as a read said: it does not exist)."""
    assert encoder.cache is not None
    encoder.cache.put(Observation(Tier.MONITOR, None), JOB, decided=encoder.local())
    assert encoder.cache.lookup(Tier.MONITOR, JOB, max_age=math.inf,
                                now=encoder.local()) is not None


def test_a_crash_records_work_that_had_ended_and_empties_the_cache() -> None:
    """Work that ended on its own before the crash (not yet reported) stopped then, not at
    the crash; the new process starts with an empty status cache, and the world knows a
    fault happened now."""
    encoder = an_encoder(status_cache_s=30.0)
    t0 = encoder.env.now
    encoder.world.last_fault = -math.inf
    _cached(encoder)
    encoder.work_job, encoder.work = JOB, [(t0 - 1.0, _WORK_DONE)]
    encoder._crash()
    stops = [r for r in encoder.history if r[3] == "stop"]
    assert stops[-1] == (t0 - 1.0, encoder.name, JOB, "stop", "ok", "done")
    assert encoder.cache is not None and encoder.cache.lookup(
        Tier.MONITOR, JOB, max_age=math.inf, now=encoder.local()) is None
    assert (encoder.work, encoder.work_job) == ([], None)
    assert encoder.world.last_fault == t0 and encoder.crash_at == math.inf


def test_work_still_running_at_a_crash_records_no_natural_end() -> None:
    encoder = an_encoder()
    t0 = encoder.env.now
    encoder.work_job, encoder.work = JOB, [(t0 + 1.0, _WORK_DONE)]
    before = [r for r in encoder.history if r[3] == "stop"]
    encoder._crash()
    assert [r for r in encoder.history if r[3] == "stop"] == before


def test_a_restart_forgets_the_shutdown_and_the_cache_and_is_a_fault() -> None:
    """After a graceful shutdown the node is down for ``restart_delay``; its new process has
    not been told of any shutdown (the next one must reach it), starts with an empty cache,
    and the world counts the shutdown as a fault (L1 measures from the last one)."""
    encoder = an_encoder(status_cache_s=30.0, concurrency=2, shutdowns_per_hour=1.0)
    env, t0 = encoder.env, encoder.env.now
    encoder.world.last_fault = -math.inf
    _cached(encoder)
    encoder.shutdown_at = t0
    for slot in encoder.slots:
        slot.shutdown_told = True
    env.run(until=env.process(encoder._restart()))
    assert env.now == t0 + encoder.sc.restart_delay
    assert [slot.shutdown_told for slot in encoder.slots] == [False, False]
    assert encoder.cache is not None and encoder.cache.lookup(
        Tier.MONITOR, JOB, max_age=math.inf, now=encoder.local()) is None
    assert encoder.world.last_fault == t0
    assert t0 + encoder.sc.restart_delay <= encoder.shutdown_at  # the next one, drawn after

"""The guard's default clock: the event loop's, plus the time the machine spent suspended.

The timing model's P bounds a freeze of the encoder, a system suspension included
(``docs/safety-model.md``): the lease margin holds one P, because a freeze delays the one
reaction it spans. That is true only if the encoder's clock counts the freeze. Linux's
``CLOCK_MONOTONIC`` (``time.monotonic``, and so asyncio's ``loop.time()``) stops while the
system is suspended, and the gateway's clock does not: after a suspension of ``p`` every later
deadline of the encoder, the lease end included, comes ``p`` late for good, and suspensions
spaced further apart than the model's window add up over one lease. A review in session 17
reproduced it with the production guard: two suspensions of P = 2 s, 15 s apart, and the work
stopped 1 s after the gateway had reassigned the job.

``CLOCK_BOOTTIME`` counts suspended time, so ``BOOTTIME − MONOTONIC`` grows by exactly the
time spent suspended. The guard's default clock adds that growth to the loop's clock: the
loop's timers stay the ones asyncio arms (the guard re-arms every wait until its own clock has
reached the deadline, so a suspension spanning a deadline makes it late by that suspension
alone, which P covers), and a virtual-time test loop keeps working (nothing is suspended
during a test). Where the platform has no ``CLOCK_BOOTTIME`` the growth reads as 0: the loop's
clock alone, as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

__all__ = ["counting_suspensions", "suspended_s"]

_BOOTTIME: Final = getattr(time, "CLOCK_BOOTTIME", None)
_LOCK: Final = threading.Lock()


# A read of the offset is bracketed by two monotonic reads; one whose bracket is wider than
# this was preempted between its reads, and is tried again (at most ``_TRIES`` times).
_TIGHT_S: Final = 5e-6
_TRIES: Final = 5


def _boot_minus_monotonic() -> float:
    """``BOOTTIME − MONOTONIC`` now, over-counted by at most the tightest bracket seen.

    The two clocks cannot be read at one instant. Monotonic first, so the difference errs
    upwards (the clock built on it runs ahead: deadlines come early, the safe side) by the
    time between the reads. That is about a microsecond, unless the thread is preempted
    between them: then it is however long the preemption lasted, and the running maximum of
    :func:`suspended_s` would keep it for good (a CI run saw a lease end 20 µs early). A read
    whose bracket shows a preemption is tried again; after ``_TRIES`` the tightest one stands.
    """
    if _BOOTTIME is None:
        return 0.0
    best, width = 0.0, float("inf")
    for _ in range(_TRIES):
        before = time.clock_gettime(time.CLOCK_MONOTONIC)
        boot = time.clock_gettime(_BOOTTIME)
        after = time.clock_gettime(time.CLOCK_MONOTONIC)
        if after - before < width:
            best, width = boot - before, after - before
        if width <= _TIGHT_S:
            break
    return best


_START: Final = _boot_minus_monotonic()
_seen = 0.0


def suspended_s() -> float:
    """Seconds this machine has spent suspended since the module was imported (0 where the
    platform cannot tell). Never decreases: the largest difference read so far, so that the
    reads' noise can never make the clock built on it run backwards."""
    global _seen
    now = _boot_minus_monotonic() - _START
    with _LOCK:
        if now > _seen:
            _seen = now
        return _seen


def counting_suspensions(base: Callable[[], float]) -> Callable[[], float]:
    """``base`` (a clock that stops while the machine is suspended, such as the event loop's)
    plus the time spent suspended (:func:`suspended_s`): a clock that runs on through a
    suspension, as the gateway's does."""

    def clock() -> float:
        return base() + suspended_s()

    return clock

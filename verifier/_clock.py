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

Re-arming when a timer fires is not enough, though: a timer armed on the loop's clock for
``d`` seconds fires ``d`` seconds of *loop* time later, so a suspension anywhere inside the
wait, not only one spanning its deadline, makes it late by the suspension's length; with a
freeze when it fires, 2P late, and the lease broken inside the model (a review of the send-by
bound, session 28, with two pauses of P). So every wait of the guard also arms an *alarm*
(:func:`boottime_alarm`): a Linux ``timerfd`` on ``CLOCK_BOOTTIME``, which counts suspended
time, so it wakes the guard when the deadline comes whatever the loop's clock did. Where
there is no ``timerfd`` (not Linux), or the loop's clock is not the machine's monotonic one (a
virtual-time test loop), there is no alarm: the waits are as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

__all__ = ["AlarmFactory", "boottime_alarm", "counting_suspensions", "no_alarm",
           "runs_on_monotonic", "suspended_s"]

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


# ----------------------------------------------------------------------------- alarms

#: An alarm factory: ``factory(seconds)`` is a context manager giving a future that is done
#: ``seconds`` of real time (suspensions included) from now, or ``None`` (no alarm).
AlarmFactory = Callable[[float], contextlib.AbstractContextManager["asyncio.Future[None] | None"]]

_TFD_NONBLOCK: Final = os.O_NONBLOCK
_TFD_CLOEXEC: Final = os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _timerfd() -> tuple[Any, Any] | None:
    """libc's ``timerfd_create`` and ``timerfd_settime``, or ``None`` where there are none."""
    if _BOOTTIME is None or not hasattr(os, "O_CLOEXEC"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError, TypeError):  # no libc by that name, or no timerfd
        return None
    create.argtypes, create.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec),
                        ctypes.c_void_p]
    settime.restype = ctypes.c_int
    fd = create(_BOOTTIME, _TFD_NONBLOCK | _TFD_CLOEXEC)
    if fd < 0:  # an old kernel, a sandbox refusing it
        return None
    os.close(fd)
    return create, settime


_TIMERFD: Final = _timerfd()


def _once_after(seconds: float) -> _Itimerspec:
    """A one-shot ``itimerspec`` expiring ``seconds`` from now, never 0 (0 disarms it)."""
    whole = int(seconds)
    # Within [1, 10⁹ − 1]: a fraction a hair below 1 can round up to 10⁹ nanoseconds, which
    # the kernel refuses (EINVAL), and the wait would go without its alarm.
    nanoseconds = min(999_999_999, max(1, round((seconds - whole) * 1e9)))
    return _Itimerspec(_Timespec(0, 0), _Timespec(whole, nanoseconds))


@contextlib.contextmanager
def boottime_alarm(seconds: float) -> Iterator[asyncio.Future[None] | None]:
    """A future done once ``seconds`` of ``CLOCK_BOOTTIME`` have passed (real time, the
    machine's suspensions included), on the running loop; ``None`` where no such timer can be
    had. The timer is closed when the block ends, fired or not. The caller re-checks its own
    clock when woken: the alarm only ends a wait that the loop's clock would make late."""
    if _TIMERFD is None or not math.isfinite(seconds) or seconds <= 0:
        yield None
        return
    create, settime = _TIMERFD
    fd = create(_BOOTTIME, _TFD_NONBLOCK | _TFD_CLOEXEC)
    if fd < 0:
        yield None
        return
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    watching = False
    try:
        if settime(fd, 0, ctypes.byref(_once_after(seconds)), None) != 0:
            yield None
            return

        def fired() -> None:
            try:
                os.read(fd, 8)
            except BlockingIOError:
                return
            if not future.done():
                future.set_result(None)

        loop.add_reader(fd, fired)
        watching = True
        yield future
    finally:
        if watching:
            loop.remove_reader(fd)
        os.close(fd)
        if not future.done():
            future.cancel()


@contextlib.contextmanager
def no_alarm(seconds: float) -> Iterator[asyncio.Future[None] | None]:
    """The alarm factory where none is wanted (a custom clock, a virtual-time loop)."""
    yield None


def runs_on_monotonic(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop``'s clock is this machine's monotonic clock (asyncio's and uvloop's
    are; a virtual-time test loop's is not): only then does a real-time alarm mean anything
    for a wait measured on it."""
    return abs(loop.time() - time.monotonic()) < 1.0

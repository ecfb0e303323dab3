"""The gateway's no-progress clock, as far as the protocol can prove it (pure, no I/O).

The gateway's second reassignment rule takes a job back ``N`` after its stored progress last
*changed*, pings or not. The protocol must stop the work before then, so it needs an instant
no later than that last change: ``base``. It knows which value each ping carried (it chose
them), and which pings were *counted* (landed on this assignment: a fenced database or aid OK,
or a gateway ping proven by a later read).

Why two values, not one. The gateway matches a ping on the owner's DID, not on the
assignment, so a ping of an *earlier* attempt by the same DID, still on its way when the job
was handed to that DID again, can land on the new assignment. If it carries the value ``v``
the new attempt then reports first, and the work stalls at ``v`` (a source stuck at the same
byte in every attempt), the gateway's last change is that stale landing, before any ping of
the new attempt carrying ``v`` was decided: a clock based on "the first ping carrying the
current value" runs late (found by a review, 2026-12-03; the ``stuck`` family reaches it).

Two counted pings carrying *different* values ``u`` and ``v`` are proof no stale ping can
fake: just after each landed, the stored value was the one it carried, so the value changed
between the two landings, and each landing came after its ping's decision. The last change
is therefore no earlier than ``min(decided_u, decided_v)``, whatever else landed (per field:
see "Field by field" below). The best such bound is the second latest of the latest counted
decision per value of a field. The assignment
itself resets the progress (a change no earlier than the claim's decision), which is where
the clock starts. "No progress" is never a value here: a ping carrying none may leave the
stored value alone.

The price, and how the start of an attempt avoids paying it twice. The clock trails the
work's real progress by the pings carrying the previous value, so a job that stops reporting
changes is cancelled about one ping interval ``R`` sooner than with a one-ping rule. At the
start of an attempt there is no previous value: the work's first two reports would both have
to be counted within ``N - margin`` of the claim (an adversarial review, 2026-12-03, showed
work reporting every 140 s of ``N = 300`` cancelled in every attempt). So until the work
reports anything, pings carry :data:`STARTED`, a value that is not none (a gateway may ignore
a ping carrying none): once the work's first value is counted too, the pair moves the clock
to the last ping that carried ``STARTED``, as the one-ping rule did. A stale ping carrying
``STARTED`` (every attempt starts with it) changes nothing: the pair argument holds for any
two of *our* counted pings, whatever else landed.

Field by field. The public gateway code stores a ping's ``progressPct`` and ``download_pct``
each only when it is not zero (an older version stored ``pct`` alone). So "just after our ping
landed, the stored value was the one it carried" holds only for the fields it set: two pings
``(0, 100)`` and ``(5, 100)`` prove nothing if a stale ping had already stored ``pct = 5``. A
pair therefore counts only through one field in which both carry a non-zero value and the
values differ: the clock is the latest such pair over the two fields. What the model still
assumes of the gateway, as its no-progress rule needs: it stores both fields exactly, and a
change of either is a change of the progress (against a gateway that kept ``pct`` alone,
download progress would prove nothing, and long downloads would be reassigned anyway).
"""

from __future__ import annotations

import math

__all__ = ["STARTED", "Progress", "ProgressClock"]

#: A ping's progress: (pct, download_pct), as the work last reported it.
Progress = tuple[float, float]

#: What a ping carries before the work has reported any progress: 0.01 % in both fields (a
#: value, not none, in each: the work's first report pairs with it whichever field it sets;
#: below the 1 % at which the gateway calls a job running), marking the start of the attempt.
STARTED: Progress = (0.01, 0.01)


class ProgressClock:
    """``base``: an instant no later than the gateway's last change of the stored progress.

    Per field (``pct``, ``download_pct``), keeps only the two latest counted non-zero values,
    each with its latest counted decision: a value that drops out and comes back is
    re-entered with the decision it comes back with, which can only be earlier than what was
    forgotten, so the clock errs early (safe)."""

    __slots__ = ("_top", "base")

    def __init__(self, start: float) -> None:
        #: The claim's decision to begin with: the assignment reset the progress after it.
        self.base = start
        #: Per field: latest first, distinct non-zero values, (decision, value).
        self._top: tuple[list[tuple[float, float]], ...] = ([], [])

    def sent(self, decided: float, carried: Progress) -> None:
        """A ping carrying ``carried`` was decided at ``decided`` (not yet known to count).
        Nothing to do here: only counted pings are evidence."""

    def counted(self, decided: float, carried: Progress) -> None:
        """A ping decided at ``decided``, carrying ``carried``, landed on this assignment."""
        for top, value in zip(self._top, carried, strict=True):
            if value == 0:
                continue  # a zero field may leave the stored one alone
            latest = {v: at for at, v in top}
            latest[value] = max(latest.get(value, -math.inf), decided)
            top[:] = sorted(((at, v) for v, at in latest.items()), reverse=True)[:2]
            if len(top) == 2:
                self.base = max(self.base, top[1][0])

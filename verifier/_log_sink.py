"""Logging that never blocks the event loop: records are queued, and a thread writes them.

Why: the guard keeps the lease and the cancel latency C with the event loop's timers, and a
``logging.StreamHandler`` on stderr writes on the thread that logs. When nobody drains stderr
(a paused terminal, Docker's blocking log driver, a stuck journal, a slow ``| tee``) that write
blocks, and with it every guard of the process: a work whose lease ran out would go on for as
long as the sink stalls (an adversarial review, 2026-12-04, measured +3 s past the gateway's
reassignment with ``python -m verifier run``'s own logging set-up). The command's stderr relay
(``verifier._command``) was already moved to a thread for the same reason; this is the same
cure for our own log lines.

The queue is bounded, so a sink that never drains cannot grow the process without limit:
records that do not fit are dropped and counted, and the count is logged, as one warning,
before the next record that fits (``LOG_LINES_DROPPED``). Dropping a line is the lesser harm:
it loses a line of text, where blocking could make two encoders process one job.
"""

from __future__ import annotations

import logging
import queue
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from logging.handlers import QueueHandler, QueueListener
from typing import Final, TextIO

__all__ = ["DroppingQueueHandler", "queued_logging"]

#: Records held while the sink is slow: minutes of a busy node's lines, a few MiB at most.
CAPACITY: Final = 10_000


class _Listener(QueueListener):
    """Stops by a *waiting* put of its sentinel: the base class's ``put_nowait`` raises
    ``queue.Full`` when the sink is behind, at the very moment the node shuts down."""

    def enqueue_sentinel(self) -> None:
        self.queue.put(self._sentinel)  # type: ignore[attr-defined]


class DroppingQueueHandler(QueueHandler):
    """A :class:`QueueHandler` whose queue is bounded: it never waits for room."""

    def __init__(self, records: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(records)
        #: Records dropped since the last one that fitted (reported before the next).
        self.dropped = 0
        #: Records dropped in all.
        self.dropped_total = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        # Called under the handler's lock (``Handler.handle``): the counters need no other.
        try:
            if self.dropped:
                self.queue.put_nowait(self.dropped_note())
                self.dropped = 0
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            self.dropped_total += 1

    def dropped_note(self) -> logging.LogRecord:
        """The warning that says how many records were dropped since the last one that fit."""
        return logging.LogRecord(
            "verifier.log", logging.WARNING, __file__, 0,
            "LOG_LINES_DROPPED: %d log line(s) dropped: the log sink was not draining",
            (self.dropped,), None,
        )


@contextmanager
def queued_logging(
    level: int, fmt: str, *, stream: TextIO | None = None, capacity: int = CAPACITY
) -> Iterator[DroppingQueueHandler]:
    """The root logger writes to ``stream`` (stderr) from a thread while the block runs.

    On exit, the records still queued are written (this waits for the sink: the work is over
    by then, so waiting costs only the exit's time) and the root logger is as it was."""
    sink = logging.StreamHandler(sys.stderr if stream is None else stream)
    sink.setFormatter(logging.Formatter(fmt))
    records: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=capacity)
    handler = DroppingQueueHandler(records)
    listener = _Listener(records, sink)
    root = logging.getLogger()
    level_before = root.level
    root.addHandler(handler)
    root.setLevel(level)
    listener.start()
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level_before)
        if handler.dropped:
            records.put(handler.dropped_note())  # waits: the last word on what was lost
        listener.stop()

"""`python -m verifier run` logs through a bounded queue: a stalled stderr never blocks the
thread that logs (the event loop, which keeps every lease), lines that do not fit are counted
and reported, and nothing queued is lost at exit."""

from __future__ import annotations

import io
import logging
import queue
import threading

from verifier._log_sink import CAPACITY, _Listener, queued_logging

LOGGER = logging.getLogger("verifier.test-log-sink")


class StalledStream(io.StringIO):
    """A stderr nobody drains until ``release`` is set; ``writing`` says a write has begun."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.writing.set()
        if not self.release.wait(timeout=30):
            # A test that failed before its release: let the exit drain (a hang, at 10,000
            # queued lines, would hold CI for good instead of reporting the failure).
            self.release.set()
        return super().write(text)


def log_in_a_thread(lines: range) -> threading.Thread:
    """Log from another thread, so that a handler that blocked would not hang the test."""
    thread = threading.Thread(target=lambda: [LOGGER.warning("line %d", i) for i in lines])
    thread.start()
    thread.join(timeout=60)
    return thread


def test_a_stalled_sink_never_blocks_the_logger_and_the_dropped_lines_are_counted():
    stream = StalledStream()
    with queued_logging(logging.INFO, "%(message)s", stream=stream, capacity=5) as handler:
        LOGGER.warning("first")
        assert stream.writing.wait(timeout=60)  # the sink's thread holds "first", stalled
        thread = log_in_a_thread(range(20))
        assert not thread.is_alive(), "logging blocked on a stalled sink"
        assert handler.dropped == 15 and handler.dropped_total == 15  # 5 fitted
        stream.release.set()
        handler.queue.join()  # type: ignore[attr-defined]  # the sink has caught up
        LOGGER.warning("after")  # the count is reported before the next line that fits
    lines = stream.getvalue().splitlines()
    assert lines[:6] == ["first"] + [f"line {i}" for i in range(5)]
    assert lines[6].startswith("LOG_LINES_DROPPED: 15 log line(s) dropped")
    assert lines[7:] == ["after"]


def test_the_default_queue_is_bounded():
    """`run` passes no capacity: its default must bound the queue too (an unbounded one grows
    the process for as long as the sink stalls; session 39, a mutant nothing caught)."""
    stream = StalledStream()
    with queued_logging(logging.INFO, "%(message)s", stream=stream) as handler:
        LOGGER.warning("first")
        assert stream.writing.wait(timeout=60)
        thread = log_in_a_thread(range(CAPACITY + 7))
        assert not thread.is_alive(), "logging blocked on a stalled sink"
        assert handler.dropped_total == 7  # CAPACITY fitted, behind the one being written
        stream.release.set()


def test_lines_dropped_just_before_exit_are_still_reported_and_exit_does_not_fail():
    """At exit the queue may be full: the last count and the stop wait for room (the base
    listener's stop would raise ``queue.Full`` there)."""
    stream = StalledStream()
    exited: list[BaseException | None] = []
    logged = threading.Event()

    def run() -> None:
        try:
            with queued_logging(logging.INFO, "%(message)s", stream=stream, capacity=3):
                LOGGER.warning("first")
                stream.writing.wait(timeout=60)
                for i in range(10):
                    LOGGER.warning("line %d", i)
                logged.set()  # and the block ends with the queue full, the sink stalled
            exited.append(None)
        except BaseException as exc:  # reported below, not lost in the thread
            exited.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert logged.wait(timeout=60)
    stream.release.set()
    thread.join(timeout=60)
    assert exited == [None]
    lines = stream.getvalue().splitlines()
    assert lines[:4] == ["first", "line 0", "line 1", "line 2"]
    assert len(lines) == 5 and lines[4].startswith("LOG_LINES_DROPPED: 7 ")


def test_lines_are_written_in_the_format_asked_for():
    stream = io.StringIO()
    with queued_logging(logging.INFO, "%(levelname)s|%(name)s|%(message)s", stream=stream):
        LOGGER.warning("said")
    assert stream.getvalue() == "WARNING|verifier.test-log-sink|said\n"


def test_the_root_logger_is_restored_after_the_block():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with queued_logging(logging.DEBUG, "%(message)s", stream=io.StringIO()):
        assert root.level == logging.DEBUG and len(root.handlers) == len(handlers) + 1
    assert root.handlers == handlers and root.level == level


class SignallingQueue(queue.Queue):  # type: ignore[type-arg]
    """Sets ``tried`` once a put has been tried: a waiting put before it waits, one that may
    not wait (``put_nowait``) after it has succeeded or raised ``queue.Full``."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.tried = threading.Event()

    def put(self, item, block=True, timeout=None):
        if block:
            self.tried.set()
            return super().put(item, block, timeout)
        try:
            return super().put(item, block, timeout)
        finally:
            self.tried.set()


def test_stopping_with_the_queue_full_waits_for_room_instead_of_failing():
    stream = StalledStream()
    records = SignallingQueue(maxsize=2)
    listener = _Listener(records, logging.StreamHandler(stream))
    listener.start()

    def record(text: str) -> logging.LogRecord:
        return logging.LogRecord("t", logging.WARNING, __file__, 0, text, None, None)

    records.put_nowait(record("a"))
    assert stream.writing.wait(timeout=60)  # the listener holds "a", stalled
    records.put_nowait(record("b"))
    records.put_nowait(record("c"))  # full
    records.tried.clear()
    failed: list[BaseException] = []

    def stop() -> None:
        try:
            listener.stop()
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=stop)
    thread.start()
    assert records.tried.wait(timeout=60)
    stream.release.set()
    thread.join(timeout=60)
    assert failed == [] and stream.getvalue().split() == ["a", "b", "c"]

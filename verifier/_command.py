"""A user command as the work of one job (``python -m verifier run -- COMMAND [ARGS...]``).

The command is any program (an ffmpeg wrapper, a shell script). The contract, in both
directions, is plain text so that it can be written in any language:

* **In.** The job as one JSON object on stdin (``id``, ``status``, ``input``, ``metadata``,
  ``storageMetadata``), and in the environment (the runner's, without its credentials
  ``ENCODER_PRIVATE_KEY`` and ``MONGODB_URI``): ``SPK_JOB_ID``, ``SPK_INPUT_URI`` (the job's
  ``input.uri``, empty when it has none) and ``SPK_SCRATCH_DIR``, a fresh directory for its
  files, removed afterwards. The working directory is the runner's, so that relative paths in
  the command line mean what they meant where it was typed.
* **Out.** One JSON object per line on stdout: ``{"phase": "encode"}``, ``{"pct": 40}``,
  ``{"download_pct": 100}`` (any of these keys, together or not) report phase and progress;
  the **last** line is the result, ``{"cid": "..."}``; exit status 0 is success. Lines that
  are not such objects are ignored, the first few logged (a stray ``print`` must not fail a
  job; ``_IGNORED_LOGGED``), but a run that exits 0 without a result line has failed: there
  is nothing to commit.
* **Stop.** When the guard cancels the work (ownership lost, the lease about to end, a
  shutdown), the command's process group gets SIGTERM, and so does every process it started
  that left the group (both from its keeper, ``verifier/_keeper.py``), then SIGKILL, all of them,
  if any is still running half the cancel latency C later: the timing model counts on the
  work having stopped within C (``docs/safety-model.md``), and the kill and the reaping need
  the other half. "Stopped" means the keeper has exited, which it does only once nothing the
  command started runs, whatever its process group or session (a wrapper may exit while its
  ffmpeg runs on; ``timeout`` and ``set -m`` move it to a group of its own), also after a
  command that ended by itself (the keeper stops what it left); and if the runner dies
  outright (SIGKILL, the OOM killer), the keeper kills all of it (Linux ``PR_SET_PDEATHSIG``),
  the wrapper's children included. The command runs in a process group of its own, without
  its keeper: its signals to its own group (``kill 0``, a wrapper's ``trap 'kill -9 0' EXIT``)
  do not reach the keeper. Should it kill or stop its keeper by pid (``kill -9 $PPID``), this
  process, a child subreaper too, adopts and kills what the keeper left, or kills what is below
  a keeper that does not answer (``_terminate``, ``_sweep``). Out of reach is only a process
  started through another service (``systemd-run``, a container daemon, ``at``): not below
  the runner. Cancelled work is never a success; a result the command had printed before it
  was stopped is logged (``COMMAND_RESULT_DISCARDED``), for an operator to recover.
* **Stderr.** Passed on to the runner's, each line prefixed with the job id and escaped; the
  last lines go into the failure message. Lines our stderr did not keep up with are dropped,
  and their number logged once the job ends (``COMMAND_STDERR_DROPPED``).

Progress matters for safety, not only for display: the gateway reassigns a job whose progress
has not changed for N, so a command that reports none is stopped by the guard before then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import re
import shutil
import signal
import struct
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from . import _keeper
from ._errors import ConfigurationError, InvalidInputError
from ._guard import ClaimedJob, uninterrupted
from ._ids import redact_url, validate_cid
from ._keeper import KILL, STOP
from ._models import GatewayMonitorJob
from ._text import printable

__all__ = ["CommandFailed", "CommandWork"]

_DEFAULT_LOGGER: Final = logging.getLogger("verifier.command")
#: Longest stdout line kept (a result line is short; a runaway line is cut, not buffered).
_MAX_LINE: Final = 64 * 1024
#: The command's output is read this much at a time, and the event loop is given a turn after
#: each read and every ``_LINES_PER_TURN`` lines: ``StreamReader.read`` returns buffered data
#: without yielding, and a burst of short lines stalled the loop (whose timers keep the lease)
#: for seconds, so the gateway reassigned the job while it ran on (an adversarial review).
_READ: Final = 4096
_LINES_PER_TURN: Final = 32
#: Ignored stdout lines logged one by one (then only their number, when the output ends: a
#: record each for a flood of them was most of that stall).
_IGNORED_LOGGED: Final = 5
_SHOWN: Final = 200
#: Variables never passed to the command (credentials of the node; see ``Settings``).
_CREDENTIALS: Final = frozenset({"ENCODER_PRIVATE_KEY", "MONGODB_URI"})
#: Passed to the command without their ``user:password@`` (the command may want to know where
#: the servers are; it has no business with the node's passwords).
_CREDENTIAL_URLS: Final = frozenset({"GATEWAY_URL", "GATEWAY_AID_BASE_URL",
                                     "GATEWAY_MONITOR_BASE_URL"})


#: Lines of the command's stderr kept for the message of its failure, and how long its end of
#: file is waited for once it has exited (a leftover holding the pipe must not hold us).
_TAIL_LINES: Final = 5
_RELAY_GRACE_S: Final = 1.0
#: Once the work has stopped, its last stderr lines are waited for within C only, less this
#: share of C, kept for what follows (closing the pipes, the guard's own steps): the stop is
#: due within C (``_run``).
_RELAY_MARGIN: Final = 0.1
#: The signals a supervisor stops a service with, and how long a command killed by one waits
#: for the runner's own shutdown before its job counts as failed.
_STOP_SIGNALS: Final = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
_STOP_SIGNAL_GRACE_S: Final = 1.0
#: Relayed stderr lines waiting for our stderr; beyond this many they are dropped.
_RELAY_QUEUE: Final = 10_000
#: How often a stopping command's group is looked at (it ends within milliseconds of a signal).
_POLL_S: Final = 0.01
#: Runs the command and stops all it started, also if the runner dies (``verifier/_keeper.py``:
#: a runner killed outright must not leave a wrapper's ffmpeg encoding a reassigned job).
_KEEPER: Final = str(Path(__file__).with_name("_keeper.py"))
#: Keepers of this process not yet reaped (by asyncio's child watcher): children of ours that
#: ``_adopted`` never takes for what a dead keeper left.
_KEEPERS: Final[set[int]] = set()


class _Runner:
    """This process as the keepers' parent: whether it is a child subreaper (asked once, when
    the first command starts: ``_become_subreaper``), and how many keepers are being started
    (their pids not yet known, so not yet in ``_KEEPERS``)."""

    subreaper: bool | None = None
    spawning = 0


def _become_subreaper() -> None:
    """Make this process a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``; best effort, once).
    The keeper can be killed by its own command (``kill -9 $PPID``: same user): what it had
    started outside the command's group was then re-parented to init and encoded on, out of
    anyone's reach (an adversarial review, 2026-12-05). As a subreaper, this process adopts it
    instead, and ``_sweep`` stops it."""
    if _Runner.subreaper is None:
        _Runner.subreaper = (sys.platform.startswith("linux")
                             and _keeper.prctl(_keeper.PR_SET_CHILD_SUBREAPER, 1))


def _starting_keeper(pid: int) -> bool:
    """Whether our child ``pid`` is a keeper of ours (its command line says so): one being
    started by another job, whose pid is not in ``_KEEPERS`` yet."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            args = file.read().split(b"\0")
    except OSError:
        return False
    return args[3:5] == [os.fsencode(_KEEPER), str(os.getpid()).encode()]


def _adopted(since: int) -> list[tuple[int, int, bool]]:
    """Our children that are not keepers of ours and started at ``since`` (a keeper's start
    time) or later: what a keeper that died left, re-parented to us as its subreaper. (pid,
    start time, ended) each. The runner starts no other process; the start time spares one
    started before the keeper by whoever else runs CommandWork (a test, a program of its own)."""
    table = _keeper.processes()
    me, ours = os.getpid(), os.getpgrp()
    # Not in our own process group either: what a keeper left runs in the command's group or
    # one it made, while a program that embeds CommandWork starts its own children in its
    # group (unless it asks otherwise), and they must never be taken for leftovers.
    return [(pid, start, ended) for pid, (ppid, group, start, ended) in (table or {}).items()
            if ppid == me and group != ours and start >= since and pid not in _KEEPERS
            and not _starting_keeper(pid)]


def _reap(pid: int) -> None:
    """Reap our ended child ``pid``, ours to reap (no one else waits for it; never blocks)."""
    with contextlib.suppress(ChildProcessError):  # reaped meanwhile
        os.waitpid(pid, os.WNOHANG)


async def _sweep(since: int) -> int:
    """Once a keeper has exited: SIGKILL to what it left (``_adopted``) and to all below it,
    again until none runs (killed, a process's children come to us in turn), reaping those that
    have ended; how many there were. Nothing, unless the keeper itself was killed (it exits only
    with no child left). Not while a keeper is being started: its own end, should it end at
    once, is asyncio's to reap (its child watcher waits for that pid, Python 3.11); an ended
    process is reaped by a later sweep then."""
    killed: set[tuple[int, int]] = set()
    while True:
        running = False
        for pid, start, ended in _adopted(since):
            if not ended:
                running = True
                killed.add((pid, start))
                _keeper.kill_all(pid)
                _keeper.signal_process(pid, start, signal.SIGKILL)
            elif _Runner.spawning == 0:
                _reap(pid)
        if not running:
            return len(killed)
        await asyncio.sleep(_POLL_S)


def _ask_keeper(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    """Send the keeper one of its requests (``verifier/_keeper.py``), unless it has exited."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def _close_pipes(proc: asyncio.subprocess.Process) -> None:
    """Once the work has stopped: close our ends of its pipes rather than wait for their end of
    file. A holder the keeper could not reach must not hold the job, nor leak the descriptors
    (and their transports, whose clean-up after the loop had closed printed "Event loop is
    closed" at exit: an adversarial review). ``_transport`` is asyncio's own (no public way);
    closing it never kills the keeper, which has exited by now."""
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        transport.close()


async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
    """Write the job to the command's stdin and close it (a command may never read it)."""
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(data)
        await proc.stdin.drain()
    proc.stdin.close()


async def _exit_status(proc: asyncio.subprocess.Process) -> int:
    """The command's exit status as soon as it has exited. Not ``proc.wait()``, which (Python
    3.11) also waits for every pipe to close: a leftover of the command holding its stderr
    would hold us until the group is stopped, which happens only after (a deadlock)."""
    while proc.returncode is None:  # noqa: ASYNC110 (polled, as the group's end is)
        await asyncio.sleep(_POLL_S)
    return proc.returncode


def _check_runnable(program: str, resolved: str, path: str) -> None:
    """Refuse, at start-up, a program the kernel cannot start: a script without a ``#!`` line
    (a shell would run it; ``exec`` does not) or one whose interpreter does not exist. Each
    passed the start-up check and then failed every job it was given, after claiming it
    (found by an adversarial review, session 14). ``path`` is the PATH the command will get.

    The ``#!`` line is read as Linux reads it: up to the newline, the interpreter up to the
    first space or tab, the rest one argument. Two more that passed were found by an operator
    review: a script with CRLF line endings (its interpreter is ``/bin/sh\r``, which
    ``bytes.split()`` had trimmed to ``/bin/sh``), and ``#!/usr/bin/env nosuchinterp``, whose
    interpreter ``env`` exists while the program it runs does not."""
    try:
        with open(resolved, "rb") as file:
            head = file.read(256)
    except OSError:
        return  # unreadable but executable: the kernel may still run it
    if head.startswith(b"#!"):
        line = head[2:].split(b"\n", 1)[0]
        if b"\r" in line:
            raise ConfigurationError("COMMAND", f"{program!r} has CRLF line endings: its #! "
                                                "line ends in a carriage return, which the "
                                                "kernel takes as part of the interpreter's "
                                                "name; convert it with dos2unix")
        shebang = re.fullmatch(rb"[ \t]*([^ \t]*)[ \t]*(.*?)[ \t]*", line.split(b"\0", 1)[0],
                               re.DOTALL)
        assert shebang is not None  # every line matches
        interpreter, argument = shebang.groups()
        if not interpreter:
            raise ConfigurationError("COMMAND", f"{program!r} has an empty #! line")
        name = os.fsdecode(interpreter)
        if not os.access(name, os.X_OK):
            raise ConfigurationError("COMMAND", f"{program!r} names the interpreter "
                                                f"{name!r}, which cannot be run")
        runs = _env_program(os.fsdecode(argument)) if os.path.basename(name) == "env" else None
        if runs is not None and shutil.which(runs, path=path) is None:
            hint = (" (Linux passes the rest of a #! line as one word: '#!/usr/bin/env -S "
                    "...' splits it)") if " " in runs or "\t" in runs else ""
            raise ConfigurationError("COMMAND", f"{program!r} runs {runs!r} through {name} "
                                                f"(its #! line), and {runs!r} is not on the "
                                                f"command's PATH{hint}")
    elif head.startswith(b"\x7fELF"):
        _check_elf(program, resolved)
    else:
        raise ConfigurationError("COMMAND", f"{program!r} is neither a program nor a script "
                                            "with a #! line: run it through its interpreter "
                                            "(sh SCRIPT)")


#: ELF's ``e_machine`` values a host of the key's machine also runs (the kernel's 32-bit
#: personality; whether the program's loader is installed is checked through its PT_INTERP).
_ALSO_RUNS: Final = {62: {3}, 183: {40}}  # x86-64 runs i386, aarch64 runs 32-bit ARM
_PT_INTERP: Final = 3
_MACHINES: Final = {3: "i386", 8: "mips", 20: "ppc", 21: "ppc64", 22: "s390x", 40: "arm",
                    62: "x86-64", 183: "aarch64", 243: "riscv"}


def _machine(code: int) -> str:
    return _MACHINES.get(code, f"ELF machine {code}")


def _elf_header(head: bytes) -> tuple[int, str, int] | None:
    """(class, byte order, e_machine) of an ELF header, or None if it is too short."""
    if len(head) < 20 or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    order = "<" if head[5] == 1 else ">"
    return head[4], order, struct.unpack_from(order + "H", head, 18)[0]


def _check_elf(program: str, resolved: str) -> None:
    """Refuse an ELF program this machine cannot start: one built for another machine (an
    arm64 build on an x86-64 host), or one whose loader (its PT_INTERP, say a musl build's
    ``/lib/ld-musl-x86_64.so.1``) is missing. Both passed the start-up check, then every job
    was claimed and failed (exit status 127), using up the gateway's attempts of job after job
    (adversarial review, session 36). The host is judged by this interpreter's own ELF header;
    where it cannot be read, or the file is not one the checks understand, nothing is refused
    (the kernel has the last word)."""
    try:
        with open(resolved, "rb") as file:
            data = file.read(1 << 16)
        with open("/proc/self/exe", "rb") as own:
            host = _elf_header(own.read(64))
    except OSError:
        return
    header = _elf_header(data)
    if header is None or host is None:
        return
    bits, order, machine = header
    if machine != host[2] and machine not in _ALSO_RUNS.get(host[2], ()):
        raise ConfigurationError("COMMAND", f"{program!r} is a program for another machine "
                                            f"({_machine(machine)}; this host runs "
                                            f"{_machine(host[2])})")
    # The program headers: PT_INTERP names the loader the kernel starts it with.
    wide = bits == 2
    try:
        phoff = struct.unpack_from(order + ("Q" if wide else "I"), data, 32 if wide else 28)[0]
        entsize, count = struct.unpack_from(order + "HH", data, 54 if wide else 42)
        for index in range(count):
            at = phoff + index * entsize
            kind = struct.unpack_from(order + "I", data, at)[0]
            if kind != _PT_INTERP:
                continue
            if wide:
                offset, = struct.unpack_from(order + "Q", data, at + 8)
                size, = struct.unpack_from(order + "Q", data, at + 32)
            else:
                offset, = struct.unpack_from(order + "I", data, at + 4)
                size, = struct.unpack_from(order + "I", data, at + 16)
            if offset + size > len(data):
                return  # beyond what was read: not judged
            loader = data[offset:offset + size].split(b"\0", 1)[0]
            if not loader:
                return
            if not os.access(loader, os.X_OK):
                raise ConfigurationError("COMMAND", f"{program!r} needs the loader "
                                                    f"{os.fsdecode(loader)!r}, which this "
                                                    "machine does not have (a build for "
                                                    "another C library or machine)")
            return
    except struct.error:
        return  # a header pointing past what was read: not judged


def _env_program(argument: str) -> str | None:
    """The program ``env`` runs for ``#!/usr/bin/env ARGUMENT``, or None when unsure (then it
    is not judged: refusing a command that works would be worse than the failed jobs).

    Without ``-S`` the argument is the program's name, spaces included (env is given one
    word); with ``-S`` (``--split-string``) it is split, and the first word that is neither an
    option nor ``NAME=VALUE`` is the program."""
    if not argument:
        return None  # env alone prints the environment: not a missing interpreter
    if not argument.startswith("-"):
        return None if "=" in argument else argument
    for option in ("--split-string=", "--split-string", "-S"):
        if argument.startswith(option):
            words = argument[len(option):].split()
            break
    else:
        return None  # another option, whose arguments we do not parse
    for word in words:
        if any(c in word for c in "\"'\\$"):
            return None  # quoting or ${VAR}: env -S's own syntax, not worth mimicking
        if word.startswith("-") or word.startswith("PATH="):
            return None  # an option, or a PATH of its own
        if "=" not in word:
            return word
    return None


class _Said:
    """What the command has printed on stdout so far, kept outside the reading so that it
    outlives a cancellation: ``last``, its last non-blank line (its result, if it ends well),
    and ``result``, the last line that reads as a result."""

    def __init__(self) -> None:
        self.last = b""
        self.result = b""
        self.ignored = 0  # lines ignored (only the first _IGNORED_LOGGED are logged)


class CommandFailed(Exception):
    """The command ended without a result to commit (its exit status, or no result line)."""


class CommandCannotRun(SystemExit):
    """The kernel would not start the command any more: deleted, made non-executable, its
    interpreter or loader gone since start-up. Every job would be claimed and failed alike,
    using up the gateway's attempts of job after job across the network (adversarial review,
    session 36), so the runner stops as on a signal, every job given back, and exits 2 (the
    encoder loop lets a work's ``SystemExit`` through that way)."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


class _StderrWriter:
    """Writes relayed lines to our stderr from a thread, through a bounded queue: a slow
    stderr (a paused terminal, a busy journal, a slow ``| tee``) must not block the event loop,
    whose timers keep the lease and the cancel latency C (an adversarial review found a 4 s
    stall). Lines that do not fit are dropped and counted; a broken stderr drops them all."""

    def __init__(self) -> None:
        self._lines: queue.Queue[str] = queue.Queue(maxsize=_RELAY_QUEUE)
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def put(self, line: str) -> bool:
        """Queue ``line``; False if it was dropped (the queue is full)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="stderr-relay",
                                            daemon=True)
            self._thread.start()
        try:
            self._lines.put_nowait(line)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def flush(self) -> None:
        """Wait until every queued line is written (for tests: never on the event loop)."""
        self._lines.join()

    def drain(self, timeout: float) -> int:
        """At exit: wait up to ``timeout`` for the queued lines to be written (the thread is a
        daemon, so what is still queued when the process ends is lost). The number of lines
        still unwritten, to be reported (an operator review, 2026-12-04: up to the queue's
        10,000 lines, a failed job's last and most useful ones, vanished without a count)."""
        done = self._lines.all_tasks_done
        with done:
            done.wait_for(lambda: self._lines.unfinished_tasks == 0, timeout)
            return int(self._lines.unfinished_tasks)

    def _drain(self) -> None:
        while True:
            line = self._lines.get()
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except (OSError, ValueError):
                self.dropped += 1  # our stderr is gone: the command's lines go nowhere
            finally:
                self._lines.task_done()


_WRITER: Final = _StderrWriter()
#: How long the runner's exit waits for its commands' stderr lines still queued.
_EXIT_DRAIN_S: Final = 5.0


def drain_relayed_stderr() -> None:
    """At the runner's exit: let the commands' queued stderr lines out, for a few seconds at
    most, and log how many could not be (``COMMAND_STDERR_DROPPED``)."""
    left = _WRITER.drain(_EXIT_DRAIN_S)
    if left:
        _DEFAULT_LOGGER.warning(
            "COMMAND_STDERR_DROPPED: %d lines of the commands' stderr were not passed on by "
            "the exit: our stderr did not keep up", left,
            extra={"event_code": "COMMAND_STDERR_DROPPED", "event_fields": {"lines": str(left)}})


class _Relayed:
    """What the relay of one job's stderr keeps: its last lines (for the failure message), and
    how many lines were dropped because our stderr did not keep up (counted, then reported once
    when the job ends: an operator review found them dropped without a word)."""

    def __init__(self) -> None:
        self.tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self.dropped = 0
        #: Bytes read so far: whether the stderr still flows (``_last_words``).
        self.read = 0


async def _last_words(relay: asyncio.Future[None], relayed: _Relayed, within: float) -> None:
    """Wait for a stopped command's stderr to end: up to ``within`` (what is left of C), and
    on, up to ``_RELAY_GRACE_S`` in all, only while lines still come. A pipe a leftover out of
    reach holds open in silence then costs no more than C (an adversarial review found the
    stop a second late), while a command's last words written as it stopped (600 KB of them,
    ``tests/live/test_runner.py``) are all passed on, not cut off at C."""
    loop = asyncio.get_running_loop()
    end = loop.time() + _RELAY_GRACE_S
    step = max(0.0, min(_RELAY_GRACE_S, within))
    while True:
        before = relayed.read
        await asyncio.wait({relay}, timeout=step)
        if relay.done() or relayed.read == before or loop.time() >= end:
            return
        step = min(_POLL_S * 25, end - loop.time())


async def _relay(stream: asyncio.StreamReader, job_id: str, relayed: _Relayed) -> None:
    """Pass the command's stderr on to ours, each line prefixed with its job (several jobs may
    run at once, and an unlabelled "boom" says nothing) and made printable (it may quote
    untrusted input: no escape sequences, no forged lines), and keep its last lines for the
    failure message. A line rewritten with carriage returns (ffmpeg's progress) is shown as
    its last state; an endless one is cut at ``_MAX_LINE``. Read to its end whatever happens
    to our own stderr: a command blocked on a full pipe would never finish."""
    buffer = b""

    def emit(line: bytes) -> None:
        line = line.rstrip(b"\r").rsplit(b"\r", 1)[-1]
        if not line.strip():
            return
        text = line.decode("utf-8", "backslashreplace")
        relayed.tail.append(printable(text, _SHOWN))
        if not _WRITER.put(f"[{job_id}] {printable(text, _MAX_LINE)}\n"):
            relayed.dropped += 1

    while chunk := await stream.read(_READ):
        relayed.read += len(chunk)
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        if len(buffer) > _MAX_LINE:
            buffer = buffer.rsplit(b"\r", 1)[-1][-_MAX_LINE:]
        for line in lines:
            emit(line)
        await asyncio.sleep(0)  # a turn for the loop's timers (see _READ)
    emit(buffer)


def _json_object(line: bytes) -> dict[str, Any] | None:
    """The JSON object ``line`` is, or None. Not parsed unless it starts with ``{`` (a flood of
    stray lines costs no parsing); RecursionError is a stray line too: ``'[' * 5000`` failed
    a job that then printed its result (an adversarial review)."""
    if not line.lstrip().startswith(b"{"):
        return None
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return message if isinstance(message, dict) else None


def _shown(line: bytes) -> str:
    text = line[:_SHOWN].decode("utf-8", "backslashreplace")
    return repr(text) + ("..." if len(line) > _SHOWN else "")


class CommandWork:
    """Runs ``argv`` once per job; an instance is a :data:`~verifier.LoopWork`.

    ``cancel_latency`` is C of the timing model (the policy's); ``scratch_root`` is where each
    job's scratch directory is made (default: the system's temporary directory). The command
    is resolved now, so a missing or non-executable one is a configuration error at start-up,
    not a failed job an hour later.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cancel_latency: float,
        scratch_root: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if not argv:
            raise ConfigurationError("COMMAND", "is missing: give it after --")
        program = argv[0]
        resolved = shutil.which(program)
        if resolved is None:
            path = Path(program)
            if os.sep in program and path.exists():
                raise ConfigurationError(
                    "COMMAND",
                    f"{program!r} is not executable (chmod +x, or run it through its interpreter)")
            raise ConfigurationError("COMMAND", f"{program!r} was not found (not a file, and "
                                                "not on PATH)")
        # The node's credentials stay with the node: the command encodes, it never signs or
        # writes to the database, and whatever it runs (ffmpeg, a plugin) need not see them.
        self.env = {k: (redact_url(v) if k in _CREDENTIAL_URLS else v)
                    for k, v in (os.environ if env is None else env).items()
                    if k not in _CREDENTIALS}
        # An `env` in its #! line looks its program up in the command's PATH, not ours (the
        # C library's default when it has none).
        _check_runnable(program, resolved, self.env.get("PATH", os.defpath))
        # Absolute: the same program even if the runner's working directory changes.
        self.argv = (os.path.abspath(resolved) if os.sep in resolved else resolved, *argv[1:])
        self.cancel_latency = cancel_latency
        self.grace = cancel_latency / 2
        self.scratch_root = None if scratch_root is None else str(scratch_root)
        if self.scratch_root is not None and not os.path.isdir(self.scratch_root):
            raise ConfigurationError("--scratch", f"{self.scratch_root!r} is not a directory")
        if self.scratch_root is not None:
            # Tried, not judged from its mode bits (root passes os.access on /proc): a scratch
            # root where no directory can be made failed every job after claiming it.
            try:
                os.rmdir(tempfile.mkdtemp(prefix="spk-probe-", dir=self.scratch_root))
            except OSError as exc:
                raise ConfigurationError("--scratch", f"{self.scratch_root!r} is not writable "
                                                      f"({exc.strerror})") from None
        self._logger = logger or _DEFAULT_LOGGER

    async def __call__(self, job: ClaimedJob, offered: GatewayMonitorJob) -> Mapping[str, Any]:
        scratch = tempfile.mkdtemp(prefix="spk-job-", dir=self.scratch_root)
        try:
            return await self._run(job, offered, scratch)
        finally:
            # In a thread: a command that left 200,000 files took 3.5 s to delete on the
            # event loop, and every other job's timers (a lease's cancel, its re-checks) waited
            # that long; another job's work ran past its cancel latency (an adversarial
            # review, 2026-12-05). Awaited to its end, so the scratch is gone when we return.
            await uninterrupted(asyncio.to_thread(shutil.rmtree, scratch, True))

    async def _run(
        self, job: ClaimedJob, offered: GatewayMonitorJob, scratch: str
    ) -> Mapping[str, Any]:
        uri = offered.input.get("uri") if isinstance(offered.input, Mapping) else None
        env = {**self.env, "SPK_JOB_ID": job.job_id, "SPK_SCRATCH_DIR": scratch,
               "SPK_INPUT_URI": uri if isinstance(uri, str) else ""}
        document = {
            "id": offered.id, "status": offered.status, "input": dict(offered.input),
            "metadata": dict(offered.metadata),
            "storageMetadata": dict(offered.storage_metadata),
        }
        # The keeper starts the command in a group of its own, stops all it started and takes
        # it down if this process dies; -I -S: nothing from the environment, nothing installed
        # needed. In a session of its own: a terminal's ^C is the runner's to act on.
        _become_subreaper()
        spawned = asyncio.ensure_future(asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", _KEEPER, str(os.getpid()), f"{self.grace!r}",
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True,
        ))
        _Runner.spawning += 1
        try:
            try:
                # To its end even if cancelled meanwhile: asyncio cancelled mid-spawn kills the
                # keeper alone and leaves the command running, unseen (an adversarial review).
                await uninterrupted(spawned)
            finally:
                if spawned.done() and not spawned.cancelled() and spawned.exception() is None:
                    _KEEPERS.add(spawned.result().pid)
                _Runner.spawning -= 1
        except asyncio.CancelledError:
            if spawned.done() and not spawned.cancelled() and spawned.exception() is None:
                proc = spawned.result()
                try:
                    await self._stop(proc, job.job_id, _keeper.start_time(proc.pid) or 0)
                finally:
                    _close_pipes(proc)
            raise
        proc = spawned.result()
        since = _keeper.start_time(proc.pid) or 0  # see _adopted
        self._note(logging.INFO, "COMMAND_STARTED", job.job_id, f"pid {proc.pid}")
        assert proc.stderr is not None
        relayed = _Relayed()
        relay = asyncio.ensure_future(_relay(proc.stderr, job.job_id, relayed))
        said = _Said()
        try:
            try:
                return await self._converse(proc, job, document, relay, relayed, said)
            finally:
                stopping = asyncio.get_running_loop().time()
                try:
                    # All of it, whatever happened: a wrapper's child (ffmpeg) may outlive the
                    # wrapper, and work is stopped only when nothing of it runs (S2).
                    await self._stop(proc, job.job_id, since)
                finally:
                    # Its last words, then done: a holder out of reach may still hold the pipe,
                    # and must not hold this job's end too. Within what is left of C: the stop
                    # is due within C (an adversarial review found a second more, the
                    # guard's "stopped" late, while a leftover held stderr).
                    left = (stopping + self.cancel_latency * (1 - _RELAY_MARGIN)
                            - asyncio.get_running_loop().time())
                    try:
                        await _last_words(relay, relayed, left)
                    finally:
                        relay.cancel()
                        _close_pipes(proc)
                        if relayed.dropped:
                            self._note(logging.WARNING, "COMMAND_STDERR_DROPPED", job.job_id,
                                       f"{relayed.dropped} lines of its stderr were not passed "
                                       f"on: our stderr did not keep up (more than "
                                       f"{_RELAY_QUEUE} lines waiting)")
        except asyncio.CancelledError:
            # Cancelled (here, or while it was being stopped): never a success, whatever it
            # printed. But a result it printed may be uploaded already; logged, not lost.
            self._discarded(job.job_id, said, "the work was cancelled")
            raise
        except CommandFailed:
            # Failed after printing a result (an upload, then a crash in its clean-up): not a
            # success either, and the result is logged for the same reason (an operator
            # review, 2026-12-04, found its cid in no line).
            self._discarded(job.job_id, said, "the command failed")
            raise

    async def _converse(
        self, proc: asyncio.subprocess.Process, job: ClaimedJob, document: Mapping[str, Any],
        relay: asyncio.Future[None], relayed: _Relayed, said: _Said,
    ) -> Mapping[str, Any]:
        assert proc.stdout is not None
        # Written alongside the reading: a command that does not read stdin, with a job larger
        # than the pipe's buffer, must not keep us from reading its progress.
        feeding = asyncio.ensure_future(_feed(proc, json.dumps(document).encode() + b"\n"))
        reading = asyncio.ensure_future(self._read_lines(proc.stdout, job, said))
        try:
            status = await _exit_status(proc)
            # The keeper exits once nothing it started runs, so stdout's end of file is due at
            # once; a holder it could not reach (a descriptor passed on) must not hold the job
            # for ever (an adversarial review: `setsid sleep 20 &` kept a success waiting).
            await asyncio.wait({reading}, timeout=_RELAY_GRACE_S)
            if reading.done():
                reading.result()  # its exception, if any
        finally:
            for task in (reading, feeding):
                task.cancel()
            await asyncio.gather(reading, feeding, return_exceptions=True)
        if -status in _STOP_SIGNALS:
            # Killed by a stop signal: a supervisor that signals the whole service (systemd's
            # default KillMode=control-group) reaches the command a moment before the runner,
            # whose own shutdown then cancels this work. Wait for that instead of failing the
            # job at once (failJob, counted failed), for at most _STOP_SIGNAL_GRACE_S: without
            # a shutdown it fails as before (operator review, session 16).
            await asyncio.sleep(_STOP_SIGNAL_GRACE_S)
        if status != 0:
            how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
            await asyncio.wait({relay}, timeout=_RELAY_GRACE_S)  # its last lines, if any
            refused = [line for line in relayed.tail if line.startswith(_keeper.CANNOT_RUN)]
            if status == 127 and refused:
                message = (f"{refused[-1]}: stopping, every job given back; fix the command, "
                           "then start the runner again")
                self._note(logging.ERROR, "COMMAND_CANNOT_RUN", job.job_id, message)
                raise CommandCannotRun(message)
            ended = f"; its stderr ended: {' | '.join(relayed.tail)}" if relayed.tail else ""
            raise CommandFailed(f"command failed ({how}){ended}")
        if said.result and said.result != said.last:
            raise CommandFailed('command printed a result, but not as its last line on stdout '
                                '(the last must be {"cid": "..."})')
        return self._result(said.last)

    async def _read_lines(self, stdout: asyncio.StreamReader, job: ClaimedJob,
                          said: _Said) -> None:
        """Apply each stdout line as it comes, and keep in ``said`` the last non-blank one and
        the last that reads as a result; in bounded reads, giving the loop turns (``_READ``)."""
        buffer = b""
        cutting = False  # inside a line longer than _MAX_LINE: its rest is dropped, not a line
        try:
            while chunk := await stdout.read(_READ):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                if lines and cutting:
                    lines, cutting = lines[1:], False
                if len(buffer) > _MAX_LINE:
                    if not cutting:
                        self._cut(buffer, job, said)
                    buffer, cutting = b"", True
                for n, line in enumerate(lines, 1):
                    if len(line) > _MAX_LINE:
                        # Whole in this read, its newline in it: as long as one cut above
                        # (an adversarial review found up to _MAX_LINE + _READ parsed).
                        self._cut(line, job, said)
                    elif line.strip():
                        self._heard(line, job, said)
                    if n % _LINES_PER_TURN == 0:
                        await asyncio.sleep(0)
                await asyncio.sleep(0)
            if buffer.strip() and not cutting:
                self._heard(buffer, job, said)
        finally:
            if said.ignored > _IGNORED_LOGGED:
                self._note(logging.WARNING, "COMMAND_OUTPUT_IGNORED", job.job_id,
                           f"{said.ignored} lines ignored in all (the first {_IGNORED_LOGGED} "
                           "logged)")

    def _cut(self, line: bytes, job: ClaimedJob, said: _Said) -> None:
        """A line longer than _MAX_LINE: dropped, but it is a line, the last one if nothing
        follows: a result before it is not the last line (an adversarial review: without a
        newline, it vanished and the cid line before it was committed)."""
        said.last = line[:_MAX_LINE] if line.strip() else said.last
        self._ignored(job, said, f"line longer than {_MAX_LINE} bytes dropped: {_shown(line)}")

    def _ignored(self, job: ClaimedJob, said: _Said, message: str) -> None:
        said.ignored += 1
        if said.ignored <= _IGNORED_LOGGED:
            self._note(logging.WARNING, "COMMAND_OUTPUT_IGNORED", job.job_id, message)

    def _heard(self, line: bytes, job: ClaimedJob, said: _Said) -> None:
        said.last = line
        message = self._report(line, job, said)
        if message is not None and "cid" in message:
            said.result = line

    def _report(self, line: bytes, job: ClaimedJob, said: _Said) -> dict[str, Any] | None:
        """Apply one stdout line: phase and progress; anything else is logged and ignored.
        The line's JSON object, None if it is not one."""
        message = _json_object(line)
        if message is None:
            self._ignored(job, said, f"not a JSON object: {_shown(line)}")
            return None
        try:
            if "phase" in message:
                phase = message["phase"]
                if not isinstance(phase, str) or not phase:
                    raise InvalidInputError("phase must be a non-empty string")
                job.set_phase(phase)
            if "pct" in message or "download_pct" in message:
                job.set_progress(pct=message.get("pct"), download_pct=message.get("download_pct"))
        except InvalidInputError as exc:
            self._ignored(job, said, f"{exc}: {_shown(line)}")
        return message

    def _discarded(self, job_id: str, said: _Said, why: str) -> None:
        """The work was cancelled, or failed, after the command had printed a result (the
        output of an upload, perhaps): log it, so that an operator can recover it (an operator
        review found it thrown away unseen). It is not committed: read as a success is only a
        command that exited 0 with the result as its last line (``_result``, reused here to
        read it)."""
        if not said.result:
            return
        try:
            cid = printable(self._result(said.result)["cid"])
        except CommandFailed:
            return  # not a usable result: nothing to recover
        where = "" if said.result == said.last else " (not its last line)"
        self._note(logging.WARNING, "COMMAND_RESULT_DISCARDED", job_id,
                   f"{why} after the command had printed the result cid {cid}{where}: not "
                   "committed; if it was uploaded, it can be recovered from here", cid=cid)

    @staticmethod
    def _result(last: bytes) -> Mapping[str, Any]:
        message = _json_object(last)
        if message is None or "cid" not in message:
            raise CommandFailed('command exited 0 without a result: its last line on stdout '
                                'must be {"cid": "..."}')
        try:
            return {"cid": validate_cid(message["cid"])}
        except InvalidInputError as exc:
            raise CommandFailed(f"command's result is unusable: {exc}") from None

    async def _stop(self, proc: asyncio.subprocess.Process, job_id: str, since: int) -> None:
        """Stop the keeper's command and all it started (``_terminate``); return once it is
        reaped. ``since``: the keeper's start time (``_adopted``).

        Shielded from further cancellations (re-raised once it is reaped): returning before
        the process is reaped would let the guard say "stopped" while it still runs (S2)."""
        try:
            await uninterrupted(self._terminate(proc, job_id, since))
        finally:
            if proc.returncode is not None:  # reaped: no longer a child of ours
                _KEEPERS.discard(proc.pid)

    async def _terminate(self, proc: asyncio.subprocess.Process, job_id: str,
                         since: int) -> None:
        """Stopped means nothing of the command runs: not the leader alone (a wrapper may exit
        on SIGTERM while its ffmpeg goes on), nor its group alone (GNU ``timeout``, bash's
        ``set -m`` move their children to groups of their own: an adversarial review found
        ``timeout 3600 ffmpeg`` encoding on after "stopped"). The keeper exits only once it
        has no descendant left (``verifier/_keeper.py``), so "stopped" is: the keeper is gone
        (reaped), and nothing it left runs, should it have been killed from outside
        (``_sweep``: we are its subreaper).

        The keeper is asked (SIGUSR2: SIGTERM to the command's group and to every other
        process it started), then told (SIGUSR1: SIGKILL to all of them) half of C later; it
        stays to reap them: killed, it would hand them to init (or to us). Should it not have
        exited a quarter of C later still (its command stopped it, ``kill -STOP $PPID``, an
        adversarial review), this process kills what is below it, found in /proc as the keeper
        finds it, then the keeper itself; never the keeper's group, whose signal once reached
        the keeper alone and left the rest running."""
        loop = asyncio.get_running_loop()
        if proc.returncode is None:
            _ask_keeper(proc, STOP)
            deadline = loop.time() + self.grace
            # Polled: its end has no event of ours to await (asyncio's watcher reaps it).
            while proc.returncode is None and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(_POLL_S)
            if proc.returncode is None:
                _ask_keeper(proc, KILL)
                fallback = loop.time() + self.grace / 2
                while proc.returncode is None and loop.time() < fallback:  # noqa: ASYNC110
                    await asyncio.sleep(_POLL_S)
                killed_by = "keeper"
                while proc.returncode is None:
                    # Again until it is reaped: one may fork meanwhile. What forks after the
                    # keeper's end comes to us (``_sweep``).
                    killed_by = "runner"
                    _keeper.kill_all(proc.pid)
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGCONT)
                        proc.kill()
                    await asyncio.sleep(_POLL_S)
                # Said apart: a keeper that answers neither request was stopped (by its own
                # command, ``kill -STOP $PPID``) or starved, which an operator wants to know.
                how = ("killed" if killed_by == "keeper" else
                       f"killed by the runner, its keeper silent {self.grace / 2:g}s more")
                self._note(logging.WARNING, "COMMAND_KILLED", job_id,
                           f"still running {self.grace:g}s after SIGTERM: {how}",
                           killed_by=killed_by)
            else:
                self._note(logging.WARNING, "COMMAND_STOPPED", job_id, "stopped on SIGTERM")
        left = await _sweep(since)
        if left:
            self._note(logging.WARNING, "COMMAND_LEFTOVERS", job_id,
                       f"{left} processes of the command outlived its keeper (killed from "
                       "outside): killed")

    def _note(self, level: int, code: str, job_id: str, message: str, **fields: str) -> None:
        self._logger.log(level, "%s: job %s: %s", code, job_id, message,
                         extra={"event_code": code,
                                "event_fields": {"job_id": job_id, **fields}})

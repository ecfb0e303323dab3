"""The keeper: runs a job's command and kills its whole process group if the runner dies.

Run as a script, never imported for its side effects (stdlib only, started with
``python -I -S`` so that it needs nothing installed and starts in milliseconds)::

    python -I -S _keeper.py RUNNER_PID GRACE_S COMMAND [ARGS...]

Why a keeper. ``python -m verifier run`` stops a job's command by signalling its process
group (``verifier._command``), which reaches a wrapper's ffmpeg too. That needs a living
runner. When the runner is killed outright (SIGKILL, the OOM killer), Linux can signal a
child of the dead process (``PR_SET_PDEATHSIG``) but not the child's children: a shell
wrapper died with the runner while its ffmpeg went on encoding, and once the gateway
reassigned the job two encoders processed it at once (S2; found by an operator review in
session 14). The keeper is that child. It leads the command's process group, starts the
command in it, asks the kernel for SIGUSR1 when the runner dies, and then kills the whole
group, itself included.

It stays until nothing of the group runs, not only the command (an adversarial review of the
first version: a wrapper that exited, or died on SIGTERM, took the keeper with it and left its
ffmpeg unguarded). Once the command has exited its work is over, so whatever it left in the
group (and has not ended within half a second, as a child dying of the same
signal does) gets SIGTERM, and SIGKILL ``GRACE_S`` later, as the runner would do. Then the keeper
exits as the command did (the same exit status, or the same signal), so the runner sees the
command's own outcome. Orphans of the command are reparented to the keeper
(``PR_SET_CHILD_SUBREAPER``), which reaps them.

The keeper never reads stdin or writes stdout: the command inherits both from it, and the
keeper closes its own copies, so the command's end of file and the runner's are unchanged.
What it has to say goes to stderr, which the runner relays. A process that leaves the group
(``setsid``) is out of reach, as it always was.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys
import time
from types import FrameType

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
#: Signals the runner's orderly stop (SIGTERM to the group) or a stray sender (systemd, a
#: terminal, a timer) may deliver to the keeper: the command decides what they mean to it; the
#: keeper stays to guard the group and report. Handlers, not SIG_IGN, which would be
#: inherited across exec.
_STAYS_FOR = ("SIGTERM", "SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR2", "SIGALRM")
#: Ignored by Python at start-up, and an ignored disposition survives exec: the command gets
#: the defaults back (a pipeline's ``| head`` must end its producer).
_DEFAULTS_FOR_COMMAND = ("SIGPIPE", "SIGXFSZ")
_POLL_S = 0.01
#: How long processes of the group still running when the command exits are given to end by
#: themselves before they count as left behind (see ``_clear_group``).
_SETTLE_S = 0.5


def group_members(group: int, *, exclude: int = -1) -> list[int]:
    """Processes of ``group`` that run (zombies do not), from /proc; ``exclude`` left out.
    Without /proc: ``[group]`` while the group exists (the caller only asks "any left?")."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            return [group]
        return [group]
    members = []
    for entry in entries:
        if not entry.isdigit() or int(entry) == exclude:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        # After the command name: state, ppid, pgrp, ...
        if len(fields) > 2 and int(fields[2]) == group and fields[0] != b"Z":
            members.append(int(entry))
    return members


def _kill_group(signum: int = 0, frame: FrameType | None = None) -> None:
    """The runner is gone: nothing of this job may run on (the keeper goes too)."""
    os.killpg(0, signal.SIGKILL)


def _stay(signum: int, frame: FrameType | None) -> None:
    """See :data:`_STAYS_FOR`."""


def _reap() -> None:
    """Reap whatever of ours has ended (orphans of the command come to us as subreaper)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _clear_group(grace: float) -> None:
    """The command has exited: stop what it left in the group (SIGTERM, then SIGKILL after
    ``grace``), and return once nothing of it runs."""
    me, group = os.getpid(), os.getpgrp()
    # A signal to the whole group (the runner's SIGTERM at a shutdown, a service manager's)
    # reaches the command and its children at once, and the command may end first: a child
    # still dying of the same signal is not left behind. Without this short wait every
    # ordinary shutdown of a shell wrapper said it was (an operator review).
    settled_by = time.monotonic() + _SETTLE_S
    while group_members(group, exclude=me):
        _reap()
        if time.monotonic() >= settled_by:
            break
        time.sleep(_POLL_S)
    else:  # nothing was left behind
        _reap()
        return
    print("keeper: processes of the command still run after it exited: stopping them",
          file=sys.stderr, flush=True)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        for pid in group_members(group, exclude=me):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = None if wait is None else time.monotonic() + wait
        while group_members(group, exclude=me):
            _reap()
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(_POLL_S)
    _reap()


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: _keeper.py RUNNER_PID GRACE_S COMMAND [ARGS...]", file=sys.stderr)
        return 2
    runner, grace, command = int(argv[0]), float(argv[1]), argv[2:]
    signal.signal(signal.SIGUSR1, _kill_group)
    for name in _STAYS_FOR:
        signal.signal(getattr(signal, name), _stay)
    if not _prctl(_PR_SET_PDEATHSIG, signal.SIGUSR1):
        print("keeper: the kernel will not say when the runner dies (no PR_SET_PDEATHSIG): "
              "if the runner is killed outright, this command is not stopped",
              file=sys.stderr, flush=True)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # best effort: orphans otherwise go to init
    if os.getppid() != runner:
        _kill_group()  # the runner died before the kernel was asked to tell us
    pid = os.fork()
    if pid == 0:
        for name in _DEFAULTS_FOR_COMMAND:
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        try:
            os.execvp(command[0], command)  # noqa: S606 (the operator's own command line)
        except OSError as exc:
            print(f"keeper: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr)
        os._exit(127)
    os.close(0)
    os.close(1)
    _, status = os.waitpid(pid, 0)
    _clear_group(grace)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # killed by a signal: end the same way, so the runner reports it
        # No core of the keeper in place of the command's own, and SIGKILL's disposition
        # cannot be changed, nor need it be.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        with contextlib.suppress(OSError, ValueError):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code  # a signal whose default is to be ignored: the shell's convention
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The keeper: runs a job's command and kills its whole process group if the runner dies.

Run as a script, never imported by the package (stdlib only, started with ``python -I -S``
so that it needs nothing installed and starts in milliseconds)::

    python -I -S _keeper.py RUNNER_PID COMMAND [ARGS...]

Why a keeper. ``python -m verifier run`` stops a job's command by signalling its process
group (``verifier._command``), which reaches a wrapper's ffmpeg too. That needs a living
runner. When the runner is killed outright (SIGKILL, the OOM killer), Linux can signal a
child of the dead process (``PR_SET_PDEATHSIG``) but not the child's children: a shell
wrapper died with the runner while its ffmpeg went on encoding, and once the gateway
reassigned the job two encoders processed it at once (S2; found by an operator review in
session 14). The keeper is that child. It leads the command's process group, starts the
command in it, asks the kernel for SIGUSR1 when the runner dies, and then kills the whole
group, itself included. Otherwise it waits for the command and exits as the command did (the
same exit status, or the same signal), so the runner sees the command's own outcome.

The keeper never reads stdin or writes stdout: the command inherits both from it, and the
keeper closes its own copies, so the command's end of file and the runner's are unchanged.
A command that leaves the group (``setsid``) is out of reach, as it always was.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from types import FrameType

_PR_SET_PDEATHSIG = 1


def _kill_group(signum: int = 0, frame: FrameType | None = None) -> None:
    """The runner is gone: nothing of this job may run on (the keeper goes too)."""
    os.killpg(0, signal.SIGKILL)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """SIGTERM to the group is the runner's orderly stop: the command gets it too, and the
    keeper stays to report how the command ended. A handler, not SIG_IGN, which the command
    would inherit across exec."""


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: _keeper.py RUNNER_PID COMMAND [ARGS...]", file=sys.stderr)
        return 2
    runner, command = int(argv[0]), argv[1:]
    signal.signal(signal.SIGUSR1, _kill_group)
    signal.signal(signal.SIGTERM, _ignore)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGUSR1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the runner still stops the group on every orderly exit
    if os.getppid() != runner:
        _kill_group()  # the runner died before the kernel was asked to tell us
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)  # noqa: S606 (the operator's own command line)
        except OSError as exc:
            print(f"keeper: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr)
        os._exit(127)
    os.close(0)
    os.close(1)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # killed by a signal: end the same way, so the runner reports it
        # (SIGKILL's disposition cannot be changed, nor need it be.)
        with contextlib.suppress(OSError, ValueError):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code  # a signal whose default is to be ignored: the shell's convention
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

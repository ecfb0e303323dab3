"""The keeper: runs a job's command and stops everything it started when asked, or when the
runner dies.

Run as a script, never imported for its side effects (stdlib only, started with
``python -I -S`` so that it needs nothing installed and starts in milliseconds)::

    python -I -S _keeper.py RUNNER_PID GRACE_S COMMAND [ARGS...]

Why a keeper. ``python -m verifier run`` stops a job's command by signalling its process
group (``verifier._command``), which reaches a wrapper's ffmpeg too. That needs a living
runner. When the runner is killed outright (SIGKILL, the OOM killer), Linux can signal a
child of the dead process (``PR_SET_PDEATHSIG``) but not the child's children: a shell
wrapper died with the runner while its ffmpeg went on encoding, and once the gateway
reassigned the job two encoders processed it at once (S2; found by an operator review in
session 14). The keeper is that child. It starts the command in a process group of the
command's own, and asks the kernel for SIGUSR1 when the runner dies.

Not in the keeper's group: a command's signals to its own group (``kill 0``, a wrapper's
``trap 'kill -9 0' EXIT``, a common idiom) must not reach the keeper. When the keeper led the
command's group, such a trap killed it, and what the command had started outside the group
(``timeout``'s child) went to init and encoded on after "stopped" (an adversarial review,
2026-12-05). The keeper is still reachable by pid (``kill -9 $PPID``): then the runner, a
child subreaper too, adopts what it leaves and stops it (``verifier._command``).

What it guards is every *descendant*, not the group: a process may leave the group without
``setsid`` (GNU ``timeout`` moves itself into a group of its own, so does bash with
``set -m``), and a runner that judged "stopped" on the group alone handed the job back while
``timeout 3600 ffmpeg`` encoded on (an adversarial review). The keeper is a child subreaper
(``PR_SET_CHILD_SUBREAPER``): an orphan is re-parented to it whatever its group or session,
so walking /proc by parent pid from the keeper finds them all, and the keeper has nothing
left exactly when ``waitpid`` says it has no children. Its signals:

* SIGUSR2, the runner's orderly stop: SIGTERM to the command's group (at once, as a terminal's
  ^C reaches a pipeline: a shell and its children together), and to each descendant outside
  that group, once, also to those that appear later (systemd's ``KillMode=control-group``
  likewise signals every process of a service).
* SIGUSR1, the runner's hard stop, or SIGRTMIN, the kernel's word that the runner died:
  SIGKILL to every descendant, again and again until none is left. The keeper itself stays to
  reap them: a killed subreaper hands its orphans on (to the runner, itself a subreaper where
  Linux has them; else to init, out of anyone's reach), which is why the runner asks instead
  of killing it, and kills it only once it has killed what is below it itself (a keeper that
  does not answer: ``verifier._command``).

It stays until nothing it started runs, not only the command (an adversarial review of the
first version: a wrapper that exited, or died on SIGTERM, took the keeper with it and left its
ffmpeg unguarded). Once the command has exited its work is over, so whatever it left (and has
not ended within half a second, as a child dying of the same signal does) gets SIGTERM, and
SIGKILL ``GRACE_S`` later, as the runner would do. Then the keeper exits as the command did
(the same exit status, or the same signal), so the runner sees the command's own outcome;
its exit therefore means that nothing of the job runs.

When the runner died, the keeper also removes the job's scratch directory (``SPK_SCRATCH_DIR``,
one the runner made: named ``spk-job-*``, a directory of this user's, not a link) once nothing
of the job runs: the runner that would have removed it is gone, and a runner the OOM killer
takes again and again left a directory of partial downloads behind each time (a reader review
of the README, session 24, found 299 of them in /tmp).

The keeper never reads stdin or writes stdout: the command inherits both from it, and the
keeper closes its own copies, so the command's end of file and the runner's are unchanged.
What it has to say goes to stderr, which the runner relays. Without /proc (not Linux) it sees
no descendants: the hard stop then kills the command's group and its own, itself included.

A process counts as ended (a zombie) only when /proc says Z *and* it has no thread left: a
process whose main thread has exited (``pthread_exit``) while others work on shows Z too, and
was never signalled (an adversarial review: it encoded on after "stopped", or, left behind by
a command that ended, kept the keeper waiting for ever).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import select
import shutil
import signal
import stat
import sys
import time
from types import FrameType

_PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: The runner's requests (see the module's docstring): SIGTERM to the command's group and to
#: what left it; SIGKILL to everything.
STOP: signal.Signals = signal.SIGUSR2
KILL: signal.Signals = signal.SIGUSR1
#: What the kernel sends when the runner dies (``PR_SET_PDEATHSIG``): a hard stop, and the
#: runner will not remove the job's scratch directory. A signal of its own, not KILL: the
#: kernel sends it when the runner's *thread* that started the keeper exits, while the dying
#: runner's other threads may still hold its pid, so ``getppid()`` could not tell a death
#: from the runner's own hard stop (a test under load found the directory left behind).
ORPHANED: int = signal.SIGRTMIN
#: How the keeper's stderr line begins when the kernel would not start the command (its exit
#: status is then 127): the runner stops on it (``verifier._command.CommandCannotRun``).
CANNOT_RUN = "keeper: cannot run"
#: Signals a stray sender (systemd's SIGTERM to every process of the service, a terminal, a
#: timer) may deliver to the keeper: the command decides what they mean to it; the
#: keeper stays to guard it and report. Handlers, not SIG_IGN, which would be inherited
#: across exec.
_STAYS_FOR = ("SIGTERM", "SIGHUP", "SIGINT", "SIGQUIT", "SIGALRM", "SIGTSTP", "SIGTTIN",
              "SIGTTOU")
#: Ignored by Python at start-up, and an ignored disposition survives exec: the command gets
#: the defaults back (a pipeline's ``| head`` must end its producer).
_DEFAULTS_FOR_COMMAND = ("SIGPIPE", "SIGXFSZ")
_POLL_S = 0.01
#: How long processes still running when the command exits are given to end by themselves
#: before they count as left behind (see ``_guard``).
_SETTLE_S = 0.5


def _ended(fields: list[bytes]) -> bool:
    """Whether the process of these /proc/PID/stat fields (those after the command name) has
    ended: state Z and at most one thread (``num_threads``, the 20th field). A thread-group
    leader that has exited while its other threads run is Z as well, yet works on (see the
    module's docstring); a signal to its pid still reaches the whole process."""
    return fields[0] == b"Z" and int(fields[17]) <= 1


def processes() -> dict[int, tuple[int, int, int, bool]] | None:
    """Every process, from /proc: pid -> (parent pid, group, start time, ended: see
    ``_ended``); None without /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    table = {}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            # After the command name: state, ppid, pgrp, ... and the 22nd field, starttime.
            table[int(entry)] = (int(fields[1]), int(fields[2]), int(fields[19]),
                                 _ended(fields))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return table


def descendants(root: int) -> list[tuple[int, int, int]] | None:
    """The processes below ``root`` that run (zombies do not), found by parent pid whatever
    their group or session: (pid, group, start time) each. None without /proc."""
    table = processes()
    if table is None:
        return None
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, seen, todo = [], {root}, list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue  # a pid reused during the walk: no cycles
        seen.add(pid)
        todo.extend(children.get(pid, ()))
        _, group, start, zombie = table[pid]
        if not zombie:
            found.append((pid, group, start))
    return found


def start_time(pid: int) -> int | None:
    """``pid``'s start time (clock ticks since boot), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def signal_process(pid: int, start: int, sig: int) -> None:
    """``sig`` to ``pid`` if it is still the process that started at ``start``: between the walk
    of /proc and the signal it may have ended and its pid gone to another (through a pidfd,
    which cannot be reused, where the kernel has them)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):
        pidfd = -1  # an older kernel (or Python): the start time alone says it is the same
    try:
        if start_time(pid) != start:
            return
        if pidfd >= 0:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    finally:
        if pidfd >= 0:
            os.close(pidfd)


class _Asked:
    """What the runner (or the kernel, for a dead runner) has asked for; set by the handlers,
    acted on by ``_guard``'s loop (a handler that walked /proc could run in the middle of it)."""

    stop = False
    kill = False
    orphaned = False


def _runner_died(signum: int, frame: FrameType | None) -> None:
    _Asked.kill = True
    _Asked.orphaned = True


def _asked_stop(signum: int, frame: FrameType | None) -> None:
    _Asked.stop = True


def _asked_kill(signum: int, frame: FrameType | None) -> None:
    _Asked.kill = True


def _stay(signum: int, frame: FrameType | None) -> None:
    """See :data:`_STAYS_FOR`; also SIGCHLD's handler, there only to wake ``_guard``."""


def _terminate(me: int, done: set[tuple[int, int]], *, skip_group: int | None = None) -> None:
    """SIGTERM to each descendant not yet sent one (``done``), but those of ``skip_group`` (the
    group was sent one at once: a second SIGTERM may mean "hurry" to a command)."""
    for pid, group, start in descendants(me) or ():
        if group != skip_group and (pid, start) not in done:
            done.add((pid, start))
            signal_process(pid, start, signal.SIGTERM)


def kill_all(root: int) -> bool:
    """SIGKILL to every descendant of ``root`` (called again until none is left: one may fork
    meanwhile); whether /proc was there to find them. Also the runner's, for a keeper that does
    not answer (``verifier._command``)."""
    found = descendants(root)
    for pid, _, start in found or ():
        signal_process(pid, start, signal.SIGKILL)
    return found is not None


def _kill(me: int, command: int) -> None:
    if not kill_all(me):  # no /proc: the groups are what can be reached (the keeper's with it)
        with contextlib.suppress(OSError):
            os.killpg(command, signal.SIGKILL)
        os.killpg(0, signal.SIGKILL)  # pragma: no mutate (0 -> 1 is kill(-1): every process)


def _members(me: int, group: int) -> set[tuple[int, int]]:
    """(pid, start time) of each process below ``me`` in process group ``group``."""
    return {(pid, start) for pid, in_group, start in descendants(me) or () if in_group == group}


def _wait_for_signal(wake: int, timeout: float | None) -> None:
    """Until a signal arrives (the wake-up fd) or ``timeout``; then empty the fd."""
    select.select([wake], [], [], timeout)
    with contextlib.suppress(BlockingIOError):
        while os.read(wake, 512):
            pass


def _guard(command: int, grace: float, wake: int) -> int:
    """Wait for the command, then for everything it started, doing what the runner asks; the
    command's wait status, once the keeper has no child left (as subreaper, it is given every
    orphan: no child means nothing of the job runs)."""
    me = os.getpid()
    status: int | None = None
    group_termed = False  # the command's group (its pid: see main) was sent SIGTERM
    termed: set[tuple[int, int]] = set()
    settled_by: float | None = None
    kill_at: float | None = None
    while True:
        try:
            while (reaped := os.waitpid(-1, os.WNOHANG))[0] > 0:
                if reaped[0] == command:
                    status = reaped[1]
        except ChildProcessError:  # the command is reaped, and all that it left
            assert status is not None
            return status
        now = time.monotonic()
        if status is not None and not _Asked.kill:
            # The command has exited: what it left gets a moment to end by itself. A signal to
            # the whole group (the runner's SIGTERM at a shutdown, a service manager's) reaches
            # the command and its children at once, and the command may end first: a child
            # still dying of the same signal is not left behind. Without this short wait every
            # ordinary shutdown of a shell wrapper said it was (an operator review).
            if settled_by is None:
                settled_by = now + _SETTLE_S
            elif now >= settled_by:
                if kill_at is None:
                    if not _Asked.stop:  # stopped, its processes outliving it are no news
                        print("keeper: processes of the command still run after it exited: "
                              "stopping them", file=sys.stderr, flush=True)
                    kill_at = now + grace
                _terminate(me, termed)
                if now >= kill_at:
                    _Asked.kill = True
        if _Asked.kill:
            _kill(me, command)
        elif _Asked.stop:
            if not group_termed and status is None:
                # The whole group at once. Only while the command is not reaped: its pid, the
                # group's id, is then still its own (never another's group, reused).
                # Its members, counted as signalled with it (none gets a second SIGTERM should
                # it outlive the command): those in the group both before and after the signal.
                # One that left in between (GNU timeout, "set -m") got none, and gets its own
                # as a process outside the group (an adversarial review, session 40).
                before = _members(me, command)
                with contextlib.suppress(OSError):
                    os.killpg(command, signal.SIGTERM)
                termed.update(before & _members(me, command))
                group_termed = True
            _terminate(me, termed, skip_group=command if group_termed else None)
        # Idle while the command runs and nothing is asked (an encode lasts an hour: no
        # polling); otherwise the walk is repeated, as processes may fork or leave meanwhile.
        busy = status is not None or _Asked.stop or _Asked.kill
        _wait_for_signal(wake, _POLL_S if busy else None)


def remove_orphaned_scratch(path: str | None) -> None:
    """Remove the job's scratch directory ``path`` (``SPK_SCRATCH_DIR``) after the runner's
    death: only one the runner made (``spk-job-*``), a directory of ours and not a symbolic
    link, so that a value the command could not have set wrongly, but an odd environment
    might, never removes anything else. ``rmtree`` does not follow links inside it."""
    if not path or not os.path.basename(os.path.normpath(path)).startswith("spk-job-"):
        return
    try:
        info = os.lstat(path)
    except OSError:
        return
    if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
        shutil.rmtree(path, ignore_errors=True)


def prctl(option: int, value: int) -> bool:
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
    # Every handled signal wakes _guard through this pipe (no polling while the command runs,
    # and no signal lost between a check and the wait). Both ends close on exec.
    wake, woken = os.pipe()
    os.set_blocking(wake, False)
    os.set_blocking(woken, False)
    signal.set_wakeup_fd(woken)
    signal.signal(KILL, _asked_kill)
    signal.signal(ORPHANED, _runner_died)
    signal.signal(STOP, _asked_stop)
    signal.signal(signal.SIGCHLD, _stay)
    for name in _STAYS_FOR:
        signal.signal(getattr(signal, name), _stay)
    if not prctl(_PR_SET_PDEATHSIG, ORPHANED):
        print("keeper: the kernel will not say when the runner dies (no PR_SET_PDEATHSIG): "
              "if the runner is killed outright, this command is not stopped",
              file=sys.stderr, flush=True)
    prctl(PR_SET_CHILD_SUBREAPER, 1)  # best effort: orphans otherwise go to init
    if os.getppid() != runner:
        # The runner died before the kernel was asked to tell us: nothing is started yet.
        os.killpg(0, signal.SIGKILL)  # pragma: no mutate (see _kill)
    pid = os.fork()
    if pid == 0:
        try:  # never back into the keeper's code from here
            # A group of the command's own, without the keeper (see the module's docstring).
            # Set here and in the parent, so that it is in place before either goes on.
            os.setpgid(0, 0)
            for name in _DEFAULTS_FOR_COMMAND:
                signal.signal(getattr(signal, name), signal.SIG_DFL)
            os.execvp(command[0], command)  # noqa: S606 (the operator's own command line)
        except OSError as exc:
            print(f"{CANNOT_RUN} {command[0]!r}: {exc.strerror}", file=sys.stderr)
        finally:
            os._exit(127)
    with contextlib.suppress(OSError):  # EACCES once the child has run exec: it set it itself
        os.setpgid(pid, pid)
    os.close(0)
    os.close(1)
    status = _guard(pid, grace, wake)
    if _Asked.orphaned or os.getppid() != runner:  # the runner died; nothing of the job runs
        remove_orphaned_scratch(os.environ.get("SPK_SCRATCH_DIR"))
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # killed by a signal: end the same way, so the runner reports it
        # No core of the keeper in place of the command's own, and SIGKILL's disposition
        # cannot be changed, nor need it be.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        with contextlib.suppress(OSError, ValueError):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code  # the signal did not end us (blocked, as inherited): the shell's 128 + n
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

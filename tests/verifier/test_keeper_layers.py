"""The keeper (``verifier/_keeper.py``) one stop layer at a time, with the test as its runner.

Through ``CommandWork`` (``test_command.py``) a keeper layer that does nothing is hidden by the
runner's own escalation: its SIGUSR1 half of C after the SIGUSR2, then its own SIGKILL sweep of
what is below the keeper. A mutation run of the keeper left 85 of its 94 mutants alive
that way: the group's SIGTERM deleted, the grace dropped from the kill's deadline, the settle
wait gone, a keeper that no longer stopped on SIGUSR1 ... every test still passed. Here the
keeper is started as ``verifier._command`` starts it (``python -I -S _keeper.py RUNNER_PID
GRACE_S COMMAND...``, in a session of its own) with nobody behind it, and each test checks one
layer or one documented behaviour on its own.

The processes of a test are small Python programs (``Family.code``) that write what happens to
them into files: their pid once ready, and a ``time.monotonic()`` stamp (one clock for every
process) for each SIGTERM. Assertions are about order and causality (a SIGTERM seen before the
SIGKILL, a process still alive to write a mark half the grace after its SIGTERM, exactly one
SIGTERM), and the few upper bounds leave at least half a second of slack for a loaded machine;
waits for an event are generous (``WAIT_S``) and end as soon as the event is seen.

Caution for mutation runs: two tests here reach the keeper's ``os.killpg(0, SIGKILL)`` (its
runner gone at start; the hard stop without /proc). Its mutant ``killpg(1, ...)`` is
``kill(-1, SIGKILL)``: every process the user may signal, all of them as root (found the hard
way, session 40: it took down every process of the machine but init). Those two lines carry
``# pragma: no mutate``, and ``benchmarks/mutants.py`` runs each test run in a PID namespace
of its own where one can be made.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.processes import running
from verifier import _keeper

KEEPER = Path(_keeper.__file__).resolve()
#: A child of ours and its start time (``sleeper``).
Sleeper = tuple[subprocess.Popen[bytes], int]
#: How long to wait for something that is due (the keeper's end, a process's SIGTERM) before the
#: test fails: far beyond what is due, so that only a keeper that does not do it fails.
WAIT_S = 20.0
#: What the keeper prints once processes outlive the command by more than its settle wait.
LEFT_BEHIND = "keeper: processes of the command still run after it exited"

#: The start of every process of a test: helpers to say what happened to it.
_HEADER = """\
import os, signal, subprocess, sys, time
D = {dir!r}
def note(name, text=''):
    with open(os.path.join(D, name), 'a') as f:
        f.write(str(text) + '\\n')
def ready(name):
    note(name + '.pid', os.getpid())
def is_ready(name):
    return os.path.exists(os.path.join(D, name + '.pid'))
def on_term(name, then=None):
    def handler(signum, frame):
        note(name + '.term', repr(time.monotonic()))
        if then is not None:
            then()
    signal.signal(signal.SIGTERM, handler)
def spawn(code):
    return subprocess.Popen([sys.executable, '-c', code])
def until(predicate):
    while not predicate():
        time.sleep(0.005)
def forever():
    while True:
        time.sleep(60)
"""

#: Runs the keeper's ``main`` from its file after ``{prelude}`` (a patch, a blocked signal): the
#: keeper as the runner starts it but for that one change.
_LOADER = """\
import importlib.util, sys
spec = importlib.util.spec_from_file_location('_keeper', {path!r})
keeper = importlib.util.module_from_spec(spec)
spec.loader.exec_module(keeper)
{prelude}
sys.exit(keeper.main(sys.argv[1:]))
"""


def _wait(predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.005)


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (state first)."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def _group(pid: int) -> int:
    return int(_stat(pid)[2])


def _cpu_s(pid: int) -> float:
    """CPU time (user + system) ``pid`` has used so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Family:
    """A test's keeper and the processes below it: their code, what they wrote, and their end
    (every one still running when the test ends is killed)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.keepers: list[subprocess.Popen[bytes]] = []
        self._stderr: IO[str] | None = None

    def code(self, body: str) -> str:
        return _HEADER.format(dir=str(self.dir)) + body + "\n"

    def keeper(self, command: str, *, grace: float = 1.0, runner: int | None = None,
               prelude: str | None = None, env: dict[str, str] | None = None,
               stdin: Any = subprocess.DEVNULL, stdout: Any = subprocess.DEVNULL
               ) -> subprocess.Popen[bytes]:
        """The keeper of ``python -c COMMAND`` (``Family.code``), our child as the runner's."""
        args = [str(os.getpid() if runner is None else runner), repr(grace),
                sys.executable, "-c", self.code(command)]
        if prelude is None:
            argv = [sys.executable, "-I", "-S", str(KEEPER), *args]
        else:
            loader = _LOADER.format(path=str(KEEPER), prelude=prelude)
            argv = [sys.executable, "-I", "-S", "-c", loader, *args]
        if self._stderr is None:
            self._stderr = open(self.dir / "keeper.err", "w", encoding="utf-8")  # noqa: SIM115
        proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=self._stderr,  # noqa: S603
                                env=env, start_new_session=True)
        self.keepers.append(proc)
        return proc

    def stderr(self) -> str:
        path = self.dir / "keeper.err"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def pid(self, name: str) -> int:
        """The pid ``name`` wrote once ready (waited for)."""
        path = self.dir / f"{name}.pid"
        _wait(lambda: path.exists() and path.read_text().endswith("\n"), f"{name} ready")
        return int(path.read_text())

    def terms(self, name: str) -> list[float]:
        """When ``name`` saw each of its SIGTERMs (``time.monotonic()``)."""
        path = self.dir / f"{name}.term"
        return [float(line) for line in path.read_text().split()] if path.exists() else []

    def stamp(self, name: str) -> float:
        return float((self.dir / name).read_text())

    def end(self) -> None:
        for proc in self.keepers:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        for path in self.dir.glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                pid = int(path.read_text())
                # Ours only: the code of each names this test's directory.
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if running(pid) and str(self.dir).encode() in cmdline:
                    os.kill(pid, signal.SIGKILL)
        if self._stderr is not None:
            self._stderr.close()


@pytest.fixture
def family(tmp_path: Path) -> Iterator[Family]:
    fam = Family(tmp_path)
    try:
        yield fam
    finally:
        fam.end()


# ----------------------------------------------------------------- the runner's orderly stop


def test_the_orderly_stop_terms_the_group_once_and_each_process_outside_it_once(
        family: Family) -> None:
    """SIGUSR2 (the runner's orderly stop): SIGTERM to the command's process group at once, and
    one SIGTERM to each descendant outside that group, found by parent pid through /proc however
    deep (here the child of a process that left the session); never a second SIGTERM (it may
    mean "hurry" to a command), and no SIGKILL: that is the runner's to ask, with SIGUSR1, which
    then kills all of it, and the keeper exits as its command did.

    Through the runner, deleting the group's SIGTERM, the per-process one, the walk below the
    keeper's children or the SIGUSR1 handler passed every test: the runner's SIGKILL and sweep
    stopped everything anyway, and the command lost its chance to clean up."""
    member = "on_term('member'); ready('member'); forever()"
    grandchild = "on_term('grandchild'); ready('grandchild'); forever()"
    escaped = (f"os.setsid(); on_term('escaped'); spawn({family.code(grandchild)!r}); "
               "ready('escaped'); forever()")
    command = (f"on_term('cmd'); spawn({family.code(member)!r}); "
               f"spawn({family.code(escaped)!r}); ready('cmd'); forever()")
    keeper = family.keeper(command, grace=0.2)
    names = ("cmd", "member", "escaped", "grandchild")
    pids = {name: family.pid(name) for name in names}
    # The set-up: one process in the command's group, two outside it (below the keeper all).
    assert _group(pids["member"]) == pids["cmd"]
    assert _group(pids["escaped"]) == _group(pids["grandchild"]) == pids["escaped"]

    os.kill(keeper.pid, _keeper.STOP)
    _wait(lambda: all(family.terms(name) for name in names), "a SIGTERM to each process")
    # A window for what must not come: a second SIGTERM, or a SIGKILL (grace is 0.2 s).
    time.sleep(0.8)
    assert keeper.poll() is None, "the orderly stop ended the job by itself"
    assert all(running(pid) for pid in pids.values()), "killed without being asked to"
    assert {name: len(family.terms(name)) for name in names} == dict.fromkeys(names, 1)

    os.kill(keeper.pid, _keeper.KILL)
    assert keeper.wait(WAIT_S) == -signal.SIGKILL  # as its command ended
    assert not [name for name, pid in pids.items() if running(pid)]
    assert LEFT_BEHIND not in family.stderr()


@pytest.mark.parametrize("how", ["stopped", "exited"])
def test_a_child_ending_by_itself_just_after_the_command_gets_no_more_signals(
        family: Family, how: str) -> None:
    """A group member that ends by itself a moment after its command (a wrapper's ffmpeg
    finishing its clean-up) is not left behind: once the command is reaped the keeper waits
    half a second (``_SETTLE_S``) before SIGTERM to what remains. Exited, the member gets no
    signal at all, and no "still run after it exited" report. Stopped (SIGUSR2), the command
    and the member get the group's SIGTERM, and the member no second one as its command ends a
    moment later (0.2 s: its clean-up): the group is signalled once, and only while its leader
    is unreaped (never a reused group id)."""
    member = ("on_term('member'); parent = os.getppid(); ready('member'); "
              "until(lambda: os.getppid() != parent); time.sleep(0.1); sys.exit(0)")
    ends = ("termed = []; on_term('cmd', lambda: termed.append(1)); ready('cmd'); "
            "until(lambda: termed); time.sleep(0.2); sys.exit(0)" if how == "stopped" else
            "ready('cmd'); sys.exit(0)")
    command = f"spawn({family.code(member)!r}); until(lambda: is_ready('member')); {ends}"
    keeper = family.keeper(command, grace=1.0)
    family.pid("cmd")
    family.pid("member")
    if how == "stopped":
        os.kill(keeper.pid, _keeper.STOP)
    assert keeper.wait(WAIT_S) == 0  # as its command ended
    expected = 1 if how == "stopped" else 0
    assert (len(family.terms("cmd")), len(family.terms("member"))) == (expected, expected)
    assert LEFT_BEHIND not in family.stderr()


def test_a_group_member_cleaning_up_past_the_settle_gets_no_second_sigterm(
        family: Family) -> None:
    """Stopped (SIGUSR2), the command ends at once and a member of its group takes longer than
    the settle wait (0.5 s) to clean up after the group's SIGTERM: the settle then sent it a
    second SIGTERM (it may mean "hurry") and reported processes left behind by a command that
    had not exited by itself (helper-125, session 40). The members of the group are counted as
    signalled with the group now."""
    member = ("termed = []; on_term('member', lambda: termed.append(1)); ready('member'); "
              "until(lambda: termed); time.sleep(1.5); sys.exit(0)")
    command = (f"on_term('cmd', lambda: sys.exit(0)); spawn({family.code(member)!r}); "
               "until(lambda: is_ready('member')); ready('cmd'); forever()")
    keeper = family.keeper(command, grace=5.0)
    family.pid("cmd")
    family.pid("member")
    os.kill(keeper.pid, _keeper.STOP)
    assert keeper.wait(WAIT_S) == 0  # as its command ended
    assert (len(family.terms("cmd")), len(family.terms("member"))) == (1, 1)
    assert LEFT_BEHIND not in family.stderr()


def test_a_member_leaving_the_group_as_it_is_signalled_still_gets_its_sigterm(
        family: Family) -> None:
    """A member that leaves the command's group between the keeper's walk of it and the
    group's SIGTERM (GNU ``timeout`` and ``set -m`` move to a group of their own as they
    start) got no SIGTERM from the group's, and was counted as signalled: its first signal was
    the SIGKILL (an adversarial review, session 40, of the fix above). The instant is forced
    here: the keeper's ``os.killpg`` makes the member leave, then signals the group."""
    where = str(family.dir)
    prelude = f"""
import os, signal, time
real_killpg = os.killpg
def killpg(group, sig):
    if sig == signal.SIGTERM:
        with open(os.path.join({where!r}, 'member.pid')) as file:
            os.kill(int(file.read()), signal.SIGUSR1)
        while not os.path.exists(os.path.join({where!r}, 'member.left')):
            time.sleep(0.001)
    real_killpg(group, sig)
os.killpg = killpg
"""
    member = ("on_term('member'); signal.signal(signal.SIGUSR1, lambda s, f: "
              "(os.setpgid(0, 0), note('member.left'))); ready('member'); forever()")
    command = (f"on_term('cmd'); spawn({family.code(member)!r}); "
               "until(lambda: is_ready('member')); ready('cmd'); forever()")
    keeper = family.keeper(command, grace=5.0, prelude=prelude)
    family.pid("cmd")
    member_pid = family.pid("member")
    os.kill(keeper.pid, _keeper.STOP)
    _wait(lambda: bool(family.terms("member")), "a SIGTERM to the member that left")
    # ... and the command's, from the group's SIGTERM: delivered by then, but its handler (a
    # Python one, run between bytecodes) may not have noted it yet, and the KILL below ends
    # the command at once (CI, session 46, on a loaded machine: (0, 1)).
    _wait(lambda: bool(family.terms("cmd")), "the group's SIGTERM to the command")
    assert _group(member_pid) == member_pid, "the member did not leave the group"
    assert running(member_pid), "killed, not asked to stop"
    os.kill(keeper.pid, _keeper.KILL)
    keeper.wait(WAIT_S)
    assert (len(family.terms("cmd")), len(family.terms("member"))) == (1, 1)


# ------------------------------------------------- what a command that exited left behind


def test_what_outlives_its_command_gets_sigterm_after_the_settle_and_sigkill_after_the_grace(
        family: Family) -> None:
    """A command that exited left a process that ignores SIGTERM. The keeper reports it,
    sends SIGTERM once the settle wait (0.5 s) is over, not before, and SIGKILL ``GRACE_S``
    later: the process is still alive half the grace after its SIGTERM, and the keeper exits (as
    its command did: 0) soon after the grace. Between the two the keeper holds no pidfd of it
    (its fd 0, closed, is where one lands: a pidfd left open there is a leak).

    Through the runner a grace dropped from the deadline (SIGKILL with the SIGTERM, no chance
    to clean up), a settle of 0 or 1.5 s, or a poll of a second all went unnoticed."""
    grace = 1.0
    leftover = ("termed = []; on_term('leftover', lambda: termed.append(1)); ready('leftover'); "
                "until(lambda: termed); time.sleep(0.5); note('leftover.alive'); forever()")
    command = (f"spawn({family.code(leftover)!r}); until(lambda: is_ready('leftover')); "
               "note('cmd.exit', repr(time.monotonic())); sys.exit(0)")
    keeper = family.keeper(command, grace=grace)
    pid = family.pid("leftover")
    _wait(lambda: bool(family.terms("leftover")) or keeper.poll() is not None,
          "the leftover's SIGTERM")
    fds = Path(f"/proc/{keeper.pid}/fd")
    with contextlib.suppress(FileNotFoundError):
        pidfds = []
        for fd in fds.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if "pidfd" in os.readlink(fd):
                    pidfds.append(fd.name)
        if running(pid):  # still between the SIGTERM and the SIGKILL (else inconclusive)
            assert not pidfds, f"the keeper holds pidfds {pidfds} after signalling"
    status = keeper.wait(WAIT_S)
    ended = time.monotonic()
    assert status == 0
    assert LEFT_BEHIND in family.stderr()
    exited, terms = family.stamp("cmd.exit"), family.terms("leftover")
    assert len(terms) == 1, "no SIGTERM before the SIGKILL"
    assert 0.5 <= terms[0] - exited < 1.0, "SIGTERM not after the settle wait (0.5 s)"
    assert (family.dir / "leftover.alive").exists(), "SIGKILL before half the grace was over"
    assert ended - terms[0] < grace + 0.5, "SIGKILL long after the grace"
    assert not running(pid)


# ------------------------------------------------------------------ the keeper's own process


def test_stray_signals_leave_the_keeper_guarding_and_idle(family: Family) -> None:
    """Signals a stray sender may deliver to the keeper (systemd's SIGTERM to the service, a
    terminal's SIGINT, SIGHUP ...) do not end or stop it: the command decides what they mean.
    Each wakes the keeper once; then it waits without polling while the command runs (an encode
    lasts an hour): its CPU time over the next 1.5 s stays near zero. A keeper that no longer
    waits, or no longer empties its wake-up pipe, spins at full speed beside the encoder."""
    command = "ready('cmd'); until(lambda: os.path.exists(os.path.join(D, 'go'))); sys.exit(3)"
    keeper = family.keeper(command)
    pid = family.pid("cmd")
    for name in _keeper._STAYS_FOR:
        os.kill(keeper.pid, getattr(signal, name))
    time.sleep(0.1)  # their wake-up, handled
    used, since = _cpu_s(keeper.pid), time.monotonic()
    time.sleep(1.5)
    used, took = _cpu_s(keeper.pid) - used, time.monotonic() - since
    assert keeper.poll() is None and running(pid), "a stray signal ended the keeper"
    assert _stat(keeper.pid)[0] in ("S", "R"), "a stray signal stopped the keeper"
    assert used < 0.1 * took, f"the keeper used {used:.2f} s of CPU in {took:.2f} s idle"
    (family.dir / "go").touch()
    assert keeper.wait(WAIT_S) == 3


def test_the_keeper_holds_neither_the_commands_stdin_nor_its_stdout(family: Family) -> None:
    """The command inherits stdin and stdout from the keeper, which closes its own copies: the
    command's end of file is the runner's (the runner writes the job, and reads the result up
    to the end of file). A command that closes both is seen to by the runner at once."""
    command = ("os.close(0); os.close(1); ready('cmd'); "
               "until(lambda: os.path.exists(os.path.join(D, 'go'))); sys.exit(0)")
    keeper = family.keeper(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    family.pid("cmd")
    assert keeper.stdout is not None and keeper.stdin is not None
    readable, _, _ = select.select([keeper.stdout], [], [], WAIT_S)
    assert readable and os.read(keeper.stdout.fileno(), 1) == b"", "stdout still held open"
    poller = select.poll()
    poller.register(keeper.stdin.fileno(), 0)  # errors only: POLLERR once no reader is left
    assert poller.poll(WAIT_S * 1000), "stdin still held open"
    assert keeper.poll() is None  # both while the keeper runs
    (family.dir / "go").touch()
    assert keeper.wait(WAIT_S) == 0


@pytest.mark.parametrize("side", ["the command's", "the keeper's"])
def test_each_side_of_the_fork_alone_puts_the_command_in_a_group_of_its_own(
        family: Family, side: str) -> None:
    """The command's group is set in the forked child (before its exec) and in the keeper (so
    that it is in place before either goes on); either alone must put the command in a group
    of its own, apart from the keeper's (a command's `kill 0` must not reach its keeper). The
    other side's call is patched out here: the keeper's skipped, or the child's waits for the
    keeper's. Without the keeper's, a child that execs first stays in the keeper's group."""
    if side == "the command's":  # the keeper's call skipped
        patch = ("import os\n_setpgid = os.setpgid\n"
                 "def setpgid(pid, group):\n"
                 "    if pid == 0:\n"
                 "        _setpgid(pid, group)\n"
                 "os.setpgid = setpgid\n")
    else:  # the child's call only waits for the keeper's
        patch = ("import os, time\n"
                 "def setpgid(pid, group):\n"
                 "    if pid != 0:\n"
                 "        return _setpgid(pid, group)\n"
                 "    deadline = time.monotonic() + 5\n"
                 "    while os.getpgrp() != os.getpid() and time.monotonic() < deadline:\n"
                 "        time.sleep(0.001)\n"
                 "_setpgid = os.setpgid\nos.setpgid = setpgid\n")
    command = "note('cmd.group', f'{os.getpid()} {os.getpgrp()}'); ready('cmd')"
    keeper = family.keeper(command, prelude=patch)
    assert keeper.wait(WAIT_S) == 0
    pid, group = map(int, (family.dir / "cmd.group").read_text().split())
    assert group == pid != keeper.pid


def test_the_command_killed_by_a_signal_ends_the_keeper_by_it_without_a_core_limit_left(
        family: Family) -> None:
    """A command killed by a signal: the keeper ends by the same signal (the runner reports the
    command's own outcome), after setting its RLIMIT_CORE to 0, soft and hard, so that no core
    of the keeper stands in for the command's. Read in /proc while the keeper is a zombie, not
    yet reaped (``waitid(WNOWAIT)``)."""
    command = "ready('cmd'); os.kill(os.getpid(), signal.SIGTERM)"
    keeper = family.keeper(command)
    deadline = time.monotonic() + WAIT_S
    while os.waitid(os.P_PID, keeper.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        assert time.monotonic() < deadline, "the keeper did not end"
        time.sleep(0.005)
    limits = Path(f"/proc/{keeper.pid}/limits").read_text().splitlines()
    core = next(line for line in limits if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"], core
    assert keeper.wait(WAIT_S) == -signal.SIGTERM


def test_a_command_killed_by_a_signal_the_keeper_cannot_end_by_exits_128_plus_n(
        family: Family) -> None:
    """The shell's convention, 128 + n, when the keeper cannot end by the command's signal:
    here SIGTERM, blocked in the keeper (a blocked mask is inherited from whoever started it;
    the command unblocks it and dies of it)."""
    command = ("signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM}); "
               "os.kill(os.getpid(), signal.SIGTERM)")
    prelude = "import signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})"
    keeper = family.keeper(command, prelude=prelude)
    assert keeper.wait(WAIT_S) == 128 + signal.SIGTERM


@pytest.mark.parametrize("args", [[], ["1", "0.5"]], ids=["nothing", "no-command"])
def test_a_keeper_started_without_a_command_says_how_and_exits_2(args: list[str]) -> None:
    """``_keeper.py RUNNER_PID GRACE_S COMMAND [ARGS...]``: without a command the keeper starts
    nothing, prints its usage and exits 2 (a usage error), not 127 as for a command that
    cannot run."""
    done = subprocess.run([sys.executable, "-I", "-S", str(KEEPER), *args],  # noqa: S603
                          capture_output=True, text=True, timeout=WAIT_S, check=False,
                          start_new_session=True)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: _keeper.py RUNNER_PID GRACE_S COMMAND")


def test_a_keeper_whose_runner_is_already_gone_starts_nothing(family: Family) -> None:
    """The runner died before the keeper asked the kernel to tell it (``PR_SET_PDEATHSIG``):
    its parent is then not the runner, and the keeper kills its own group, itself included,
    before the command is started."""
    keeper = family.keeper("note('cmd.ran'); ready('cmd')", runner=os.getppid())
    assert keeper.wait(WAIT_S) == -signal.SIGKILL
    assert not (family.dir / "cmd.ran").exists(), "the command ran for a dead runner"


def test_a_keeper_without_pdeathsig_says_so(family: Family) -> None:
    """Where the kernel will not say when the runner dies (no ``PR_SET_PDEATHSIG``), a runner
    killed outright leaves the command running: the keeper says so on stderr, which the runner
    relays, and runs the command all the same."""
    prelude = ("_prctl = keeper.prctl\n"
               "keeper.prctl = lambda option, value: (option != keeper._PR_SET_PDEATHSIG\n"
               "                                      and _prctl(option, value))")
    keeper = family.keeper("ready('cmd')", prelude=prelude)
    assert keeper.wait(WAIT_S) == 0
    assert "keeper: the kernel will not say when the runner dies" in family.stderr()


def test_prctl_without_a_c_library_is_refused_not_assumed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``prctl`` says False when it cannot ask the kernel (no C library to call it through):
    the keeper then warns that a runner's death goes unnoticed, never assumes it was done."""
    def no_library(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOENT, "no C library")

    monkeypatch.setattr(ctypes, "CDLL", no_library)
    assert _keeper.prctl(_keeper.PR_SET_CHILD_SUBREAPER, 1) is False


def test_without_proc_the_hard_stop_kills_the_commands_group_and_the_keeper(family: Family) -> None:
    """Without /proc (not Linux) the keeper sees no descendants: the hard stop kills the
    command's group and the keeper's own, the keeper with it, rather than wait for ever for
    what it cannot see (here a process that left the session: out of its reach, documented;
    the runner, a child subreaper, adopts it)."""
    escaped = "os.setsid(); ready('escaped'); forever()"
    command = f"spawn({family.code(escaped)!r}); ready('cmd'); forever()"
    keeper = family.keeper(command, prelude="keeper.processes = lambda: None")
    pid = family.pid("cmd")
    family.pid("escaped")
    os.kill(keeper.pid, _keeper.KILL)
    assert keeper.wait(WAIT_S) == -signal.SIGKILL
    _wait(lambda: not running(pid), "the command's end")


# ------------------------------------------------------------ the runner's death and scratch


def test_the_death_of_the_runners_thread_kills_all_and_removes_the_scratch_directory(
        family: Family) -> None:
    """The kernel's word that the runner died (``PR_SET_PDEATHSIG``, SIGRTMIN) comes when the
    runner's *thread* that started the keeper exits, while the runner's pid may live on (a
    dying runner's other threads): ``getppid()`` still says the runner. It is a hard stop (the
    command, which ignores SIGTERM, is killed), and the keeper removes the job's scratch
    directory, as the runner that would have done it is gone."""
    scratch = family.dir / "spk-job-1"
    scratch.mkdir()
    (scratch / "part.mp4").write_bytes(b"x" * 1000)
    env = {**os.environ, "SPK_SCRATCH_DIR": str(scratch)}
    started: list[subprocess.Popen[bytes]] = []

    def runner_thread() -> None:  # ends once the command runs: the keeper asked the kernel
        started.append(family.keeper("signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                     "ready('cmd'); forever()", env=env))
        family.pid("cmd")

    thread = threading.Thread(target=runner_thread)
    thread.start()
    thread.join()
    keeper, pid = started[0], family.pid("cmd")
    assert keeper.wait(WAIT_S) == -signal.SIGKILL
    assert not running(pid)
    assert not scratch.exists()


def test_a_command_that_ends_while_the_runner_lives_keeps_its_scratch_directory(
        family: Family) -> None:
    """The scratch directory is the runner's to remove while it lives (it may still read it):
    the keeper removes it only after the runner's death."""
    scratch = family.dir / "spk-job-2"
    scratch.mkdir()
    env = {**os.environ, "SPK_SCRATCH_DIR": str(scratch)}
    keeper = family.keeper("ready('cmd')", env=env)
    assert keeper.wait(WAIT_S) == 0
    assert scratch.is_dir()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a directory of another user (root)")
def test_the_keeper_never_removes_a_scratch_directory_of_another_user(tmp_path: Path) -> None:
    """Only a directory of ours is removed (``SPK_SCRATCH_DIR`` is the environment's word, not
    proof): one named as the runner names them but of another user is kept."""
    other = tmp_path / "spk-job-other"
    other.mkdir()
    os.chown(other, 65534, 65534)
    _keeper.remove_orphaned_scratch(str(other))
    assert other.is_dir()


def test_a_scratch_directory_that_cannot_be_removed_does_not_end_the_keeper(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Removing the scratch directory is done as far as it can be: an error (a file that
    cannot be deleted) must not raise out of the keeper, which then exits as its command did."""
    scratch = tmp_path / "spk-job-3"
    scratch.mkdir()
    (scratch / "part.mp4").write_bytes(b"x")

    def refused(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EPERM, "not permitted")

    monkeypatch.setattr(os, "unlink", refused)
    _keeper.remove_orphaned_scratch(str(scratch))  # no exception


# ---------------------------------------------------------------------- one signal, one pid


@pytest.fixture
def sleeper() -> Iterator[Sleeper]:
    """A child of ours and its start time."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _wait(lambda: _keeper.start_time(child.pid) is not None, "a start time")
        start = _keeper.start_time(child.pid)
        assert start is not None
        yield child, start
    finally:
        child.kill()
        child.wait()


def test_a_signal_without_pidfds_goes_by_pid_after_the_start_time_check(
        sleeper: Sleeper, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a kernel (or Python) without pidfds the signal goes by pid, to the process of that
    start time only (a pid reused meanwhile is another's)."""
    child, start = sleeper

    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(errno.ENOSYS, "no pidfd_open")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    _keeper.signal_process(child.pid, start + 1, signal.SIGKILL)  # another process: spared
    _keeper.signal_process(child.pid, start, signal.SIGTERM)
    assert child.wait(WAIT_S) == -signal.SIGTERM


def test_a_signal_through_a_pidfd_leaves_no_descriptor_open(sleeper: Sleeper) -> None:
    """Each signal opens a pidfd of its process, and closes it: the keeper signals again and
    again (every process of a job, every poll while it kills)."""
    child, start = sleeper
    before = sorted(os.listdir("/proc/self/fd"))
    _keeper.signal_process(child.pid, start + 1, signal.SIGKILL)  # another process: spared
    _keeper.signal_process(child.pid, start, signal.SIGTERM)
    assert child.wait(WAIT_S) == -signal.SIGTERM
    assert sorted(os.listdir("/proc/self/fd")) == before


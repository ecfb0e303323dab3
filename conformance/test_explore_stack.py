"""State hashing sees every value a suspended frame holds: none hides on its value stack.

The explorer's fingerprint (``conformance/explore.py``, ``_State``) hashes each frame of the
draw's call stack and each suspended generator by code position and locals, not by what lies
on the frame's value stack: a temporary of an expression under evaluation (``a() +
rng.random()``), a ``for`` loop's iterator, a ``with`` block's exit. Two states that differ
only there would be merged, and the explorer would skip a schedule it must run (a missed
violation). Nothing but this test keeps a later edit of the simulator or the protocol from
doing that silently.

It runs small explorations, records every frame position the fingerprint hashes (by
wrapping ``explore._where``, which sees each of them, and ``_State.__call__``, which is
handed the drawing frame), and asks :mod:`conformance.valuestack` what lies on each frame's
stack below the operands of its instruction in flight. Every such site must be in
:data:`AUDITED`, with why it cannot cause a false merge; a new one fails the test until it
is audited (or the value is hoisted into a local, which the fingerprint hashes).

The same explorations (run once, by a module fixture) check the walk's two other shortcuts
(:mod:`conformance.walkaudit`): each frame's ``self``, left out of its locals, must be walked
by value elsewhere in the same fingerprint (or be the world, an encoder or a constant of the
run), and each object the walk cuts off (deeper than ``explore._MAX_DEPTH``, or a cycle) must
be walked by value elsewhere in it too; what is neither must be in :data:`SELVES` or
:data:`CUT_OFFS`, by type, with why it cannot cause a false merge.
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import conformance.explore as explore_module
from conformance.explore import FRAMES, explore
from conformance.valuestack import SUPPORTED, hidden_sites, hidden_state
from conformance.walkaudit import PART, WalkAudit

pytestmark = pytest.mark.skipif(
    not SUPPORTED, reason="the value-stack analysis reads CPython 3.11 bytecode (PRECALL/CALL, "
    f"the exception table); this is {sys.version.split()[0]}")

#: (frame, subject, depth): every frame at depth 1 with the hardened chain, which reaches every
#: frame in use but one: ``_finish``'s retry sleep, reached at depth 2 in the database frame;
#: and the gateway's ``jobstatus``, which only a chain that may trust the gateway asks.
EXPLORATIONS = [
    *((frame, "hardened", 1) for frame in FRAMES),
    ("database", "hardened", 2),
    ("handout", "hardened-without-tier-precedence", 1),
]

_FIXED_METHOD = ("a bound method of the frame's own self (or of the run's one environment): "
                 "the same object in every state at this position")
_STRIKES = ("self._strikes of the world, which is the frame's self: the same object in every "
            "state at this position")
_RANGE = ("range(attempts): the local `attempt`, never rebound in the loop's body, fixes the "
          "iterator's position (a range has no duplicates); `attempts` is a local too")
_TIERS = ("_confirming_tiers() is a tuple of distinct tiers (built from DATABASE, MONITOR, "
          "GATEWAY, each once): the local `tier`, never rebound in the body, fixes the position")

#: Every site whose frame holds hidden values when hashed: (what, why no false merge). A key
#: is ``<file>:<function>: <source line of the instruction in flight>``.
AUDITED: dict[str, tuple[tuple[str, ...], str]] = {
    "sim/_encoder.py:Encoder._progress: stall = min(rng.random() * 2 * sc.progress_timeout,": (
        ("NULL of a call to min", "global min"),
        "the builtin min: one object in every state"),
    "sim/_encoder.py:Encoder._start: t = self._progress(events, phase, t, length, stall,": (
        ("for-loop iterator of `for phase, mean in zip(_PHASES, (sc.download_mean_s, "
         "sc.encode_mean_s, sc.upload_mean_s),`",),
        "zip of the constant _PHASES (three distinct names) and the scenario's three means: the "
        "local `phase`, never rebound in the body, fixes the iterator's position"),
    "sim/_encoder.py:Encoder.run: yield env.timeout(self.rng.random() * sc.poll_interval)  "
    "# a random second": (
        ("method .timeout", "receiver of .timeout"),
        _FIXED_METHOD),
    "sim/_encoder.py:Encoder.run: yield from self.wait(self.rng.random() * 5.0)": (
        ("method .wait", "receiver of .wait"),
        _FIXED_METHOD),
    "sim/_world.py:World._assign: if self._faulty() and self._strikes(offer.random() < "
    "self.sc.lie_rate):": (
        ("method ._strikes", "receiver of ._strikes"),
        _STRIKES),
    "sim/_world.py:World._assign: self.idle.pop(names[int(offer.random() * len(names))])"
    ".succeed()": (
        ("NULL of a call to int", "global int", "method .pop", "receiver of .pop",
         "temporary LOAD_FAST names"),
        "the builtin int; the world's idle dict (hashed with the world) and the local `names`, "
        "loaded by the draw's own expression with nothing run in between: what is hashed"),
    "sim/_world.py:World._db_fault: if not self._strikes(rng.random() < "
    "sc.database_error_rate):": (
        ("method ._strikes", "receiver of ._strikes"),
        _STRIKES),
    "sim/_world.py:World._finish_landed: later = self._delays.uniform("
    "self.sc.finish_complete_min, self.sc.finish_complete_max)": (
        ("draw-call argument: temporary LOAD_ATTR finish_complete_max",
         "draw-call argument: temporary LOAD_ATTR finish_complete_min"),
        "the draw's bounds are the scenario's constants"),
    "sim/_world.py:World._requeue: self._lies.random() < sc.wake_on_requeue):": (
        ("method ._strikes", "receiver of ._strikes"),
        _STRIKES),
    "sim/_world.py:World.gw_accept: if self._faulty() and self._strikes(draws.random() < "
    "sc.reply_loss_rate):": (
        ("method ._strikes", "receiver of ._strikes"),
        _STRIKES),
    "sim/_world.py:World.gw_accept: land = min(delay + draws.random() * "
    "max(sc.write_delay - delay, 0.0),": (
        ("NULL of a call to min", "global min", "temporary LOAD_FAST delay"),
        "the builtin min, and a copy of the local `delay` (hashed), not rebound before the "
        "draw"),
    "sim/_world.py:World.gw_ping: land = sc.write_delay if self._edge(self._delays) else (": (
        ("draw-call argument: temporary LOAD_ATTR _delays",),
        "the edge's random source: the run's one tape, whatever the state"),
    "sim/_world.py:World.gw_ping: self._lies.random() < sc.ping_loss_rate):": (
        ("method ._strikes", "receiver of ._strikes"),
        _STRIKES),
    "sim/_world.py:World.gw_status: \"gateway.status\", job_id, did).random() < "
    "self.sc.status_lie_rate):": (
        ("method ._strikes", "receiver of ._strikes"),
        _STRIKES),
    "sim/_world.py:World.monitor_read: lag = min(rng.expovariate(1.0 / sc.monitor_lag_mean), "
    "sc.monitor_lag) if (": (
        ("NULL of a call to min", "draw-call argument: temporary BINARY_OP /", "global min"),
        "the builtin min; the exponential's rate is a constant of the scenario"),
    "sim/_world.py:World.monitor_read: rng.random() < sc.monitor_error_rate)):": (
        ("method ._strikes", "receiver of ._strikes"),
        _STRIKES),
    "verifier/_polling.py:PollSchedule.next: delay = min(self.policy.idle_delay("
    "self._empty_polls, self._rng.random()),": (
        ("NULL of a call to min", "global min", "method .idle_delay", "receiver of .idle_delay",
         "temporary LOAD_ATTR _empty_polls"),
        "the builtin min, the policy's method (a constant) and the schedule's _empty_polls, "
        "loaded by the draw's own expression with nothing run in between; the schedule is "
        "hashed (Encoder.run's local `schedule`)"),
    "verifier/_polling.py:PollSchedule.next: self.policy.idle_delay(self._owed, "
    "self._rng.random())))": (
        ("NULL of a call to max", "global max", "method .idle_delay", "receiver of .idle_delay",
         "temporary LOAD_ATTR _back_off", "temporary LOAD_ATTR _hold_until",
         "temporary LOAD_ATTR _owed"),
        "the builtin max, the policy's method and the schedule's _hold_until, _back_off and "
        "_owed, loaded by the draw's own expression with nothing run in between; the "
        "schedule is hashed (Encoder.run's local `schedule`)"),
    "verifier/protocol.py:OwnershipProtocol._finish: answer = yield Finish(self.claim_via, "
    "self.token, fenced=self.policy.fence,": (
        ("for-loop iterator of `for attempt in range(attempts):`",),
        _RANGE),
    "verifier/protocol.py:OwnershipProtocol._finish: yield Sleep(until)": (
        ("for-loop iterator of `for attempt in range(attempts):`",),
        _RANGE),
    "verifier/protocol.py:OwnershipProtocol._recheck: answer = yield Observe(tier, "
    "\"recheck\", deadline=deadline,": (
        ("for-loop iterator of `for tier in self._confirming_tiers():`",),
        _TIERS),
    "verifier/protocol.py:OwnershipProtocol._verify: answer = yield Observe(tier, \"verify\", "
    "max_age=self._max_age(\"verify\"))": (
        ("for-loop iterator of `for tier in tiers:`",),
        _TIERS + " (`tiers` is that tuple, a local)"),
    "verifier/protocol.py:OwnershipProtocol._verify: slept = yield from "
    "self._sleep_until(ready_at)": (
        ("for-loop iterator of `for tier in tiers:`",),
        _TIERS + " (`tiers` is that tuple, a local)"),
}


#: Frame ``self`` objects the fingerprint leaves out and the walk does not reach by value
#: elsewhere (or only in part), by type: (what became of it, why no false merge).
SELVES: dict[str, tuple[str, str]] = {
    "simpy.events.Process": (
        PART,
        "the self of Process._resume, the bottom frame of every hashed stack, reached (an "
        "encoder's `process`, or a queued event's callbacks) by the walk's SimPy-event branch, "
        "which hashes its generator and callbacks but not its `env` (the run's one "
        "environment) nor its `_target`, which while _resume runs is the event it resumes "
        "from: that frame's own local `event`, hashed; a live process has no `_ok` yet"),
}

#: Objects the walk cuts off (deeper than ``explore._MAX_DEPTH``, or a cycle) and reaches by
#: value nowhere else in the fingerprint, by type: (what became of it, why no false merge).
#: None: every cycle's object is walked on the path above it, and since ``_MAX_DEPTH`` is 32
#: (it was 8: the protocol's nested generators' locals, hashed from the other encoder's draws
#: or the world's, were cut off and a ping's answer time with them, which merged two states
#: of the ``aid`` frame; session 34) no object of these explorations is deeper than 17.
CUT_OFFS: dict[str, tuple[str, str]] = {}


@dataclass
class Explored:
    """What the explorations of :data:`EXPLORATIONS` hashed: every frame position (code,
    f_lasti, drawing) and the walk's audit."""

    points: set[tuple[types.CodeType, int, bool]]
    walk: WalkAudit
    seconds: float


def _recording(monkeypatch: pytest.MonkeyPatch) -> set[tuple[types.CodeType, int, bool]]:
    """Every frame position hashed by the next explorations: (code, f_lasti, drawing)."""
    points: set[tuple[types.CodeType, int, bool]] = set()
    where, call = explore_module._where, explore_module._State.__call__

    def recorded_where(frame: types.FrameType) -> tuple[int | None, ...]:
        points.add((frame.f_code, frame.f_lasti, False))
        return where(frame)

    def recorded_call(self: Any, site: str, frame: types.FrameType) -> bytes:
        points.add((frame.f_code, frame.f_lasti, True))
        return call(self, site, frame)

    monkeypatch.setattr(explore_module, "_where", recorded_where)
    monkeypatch.setattr(explore_module._State, "__call__", recorded_call)
    return points


def _explore(explorations: list[tuple[str, str, int]], walk: WalkAudit,
             monkeypatch: pytest.MonkeyPatch) -> Explored:
    points = _recording(monkeypatch)
    walk.install(monkeypatch)
    started = time.perf_counter()
    for frame, who, depth in explorations:
        report = explore(FRAMES[frame], who, depth=depth, stop_at_first=False)
        assert report.complete and report.states > 10, (frame, who, depth)
    return Explored(points, walk, time.perf_counter() - started)


@pytest.fixture(scope="module")
def explored() -> Iterator[Explored]:
    """The explorations, run once for both checks (the recording changes no fingerprint)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _explore(EXPLORATIONS, WalkAudit(SELVES, CUT_OFFS), monkeypatch)


def test_every_value_hidden_on_a_hashed_frames_stack_is_audited(explored: Explored) -> None:
    points = explored.points
    sites = hidden_sites(points)
    print(f"{len(points)} frame positions hashed, {len(sites)} with hidden values, "
          f"{explored.seconds:.1f}s")
    unaudited = [s for key, s in sorted(sites.items())
                 if key not in AUDITED or AUDITED[key][0] != s.hidden]
    gone = sorted(set(AUDITED) - set(sites))
    lines = []
    if unaudited:
        lines.append("values on a hashed frame's stack that the fingerprint does not see, at "
                     "sites nobody audited (can two reachable states differ only there? then "
                     "the explorer merges them; hoist the value into a local, or add the site "
                     "to AUDITED with the reason it cannot):")
        for s in unaudited:
            lines.append(f"  {s.location}  {s.key}")
            lines += [f"      {h}" for h in s.hidden]
            if s.key in AUDITED:
                lines.append(f"      (audited with: {', '.join(AUDITED[s.key][0])})")
    if gone:
        lines.append("audited sites no longer reached (or changed): remove them from AUDITED")
        lines += [f"  {key}" for key in gone]
    assert not lines, "\n".join(lines)


def test_every_self_and_cut_off_the_walk_leaves_out_is_hashed_elsewhere_or_audited(
        explored: Explored) -> None:
    walk = explored.walk
    print(f"{walk.fingerprints} fingerprints: {dict(walk.checked)} checked, deepest object "
          f"walked at depth {walk.deepest} (limit {explore_module._MAX_DEPTH}), audited "
          f"{dict(walk.audited)}")
    assert walk.fingerprints > 1000 and walk.checked["self"] > 0
    lines = []
    if walk.findings:
        lines.append("objects the fingerprint leaves out (a frame's self, or cut off by the "
                     "walk) and hashes nowhere else in it, of types nobody audited (can two "
                     "reachable states differ there? then the explorer merges them; walk it, "
                     "raise explore._MAX_DEPTH, or add the type to SELVES or CUT_OFFS with "
                     "the reason it cannot):")
        lines += walk.report()
    met = {(kind, name) for kind, name, _ in walk.audited}
    gone = sorted({*(("self", n) for n in SELVES), *(("cut", n) for n in CUT_OFFS)} - met)
    if gone:
        lines.append("audited types no longer met: remove them from SELVES or CUT_OFFS")
        lines += [f"  {kind} {name}" for kind, name in gone]
    assert not lines, "\n".join(lines)


# -------------------------------------------------------------------- the walk audit's teeth


class _Pacer:
    """A driver helper whose state only its own frames' ``self`` holds (planted)."""

    def __init__(self, encoder: Any, await_point: Any) -> None:
        self.encoder, self.await_point, self.points = encoder, await_point, 0

    def point(self) -> Any:
        self.points += 1
        return (yield from self.await_point(self.encoder))


def test_the_walk_audit_sees_a_self_hashed_by_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    # The simulator's encoder class is private to ``sim``: it is taken from the first run's
    # encoders, as the fingerprint is handed them, and its await point wrapped from then on.
    init = explore_module._State.__init__

    def planting(state: Any, env: Any, world: Any, encoders: list[Any], history: Any) -> None:
        driver = type(encoders[0])
        if not hasattr(driver._await_point, "planted"):
            await_point = driver._await_point

            def paced(encoder: Any) -> Any:
                return _Pacer(encoder, await_point).point()

            paced.planted = True  # type: ignore[attr-defined]
            monkeypatch.setattr(driver, "_await_point", paced)
        init(state, env, world, encoders, history)

    monkeypatch.setattr(explore_module._State, "__init__", planting)
    walk = WalkAudit(SELVES, CUT_OFFS)
    _explore([("settle", "hardened", 1)], walk, monkeypatch)
    found = {(f.kind, f.type.rsplit(".", 1)[-1], f.status, f.where) for f in walk.findings}
    assert ("self", "_Pacer", "not reached by value", "_Pacer.point") in found, found


def test_the_walk_audit_sees_a_depth_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(explore_module, "_MAX_DEPTH", 3)
    walk = WalkAudit(SELVES, CUT_OFFS)
    _explore([("tiers", "hardened", 1)], walk, monkeypatch)
    # An encoder's poll schedule (a local of its run loop: encoder > process > run > locals >
    # schedule, depth 4) while the other encoder draws.
    cut = {(f.type, f.status) for f in walk.findings if f.kind == "cut"}
    assert ("verifier._polling.PollSchedule", "cut off by depth") in cut, cut


# ----------------------------------------------------------------- the analysis' own teeth


def _suspended(gen: Any) -> tuple[str, ...] | None:
    next(gen)
    site = hidden_state(gen.gi_code, gen.gi_frame.f_lasti)
    return None if site is None else site.hidden


def _loop(items: list[int]) -> Any:
    for item in items:
        yield item * 2


def _temporary(a: Any) -> Any:
    return a() + (yield)


def _within(manager: Any) -> Any:
    with manager:
        yield


def _handler() -> Any:
    try:
        raise ValueError
    except ValueError:
        yield


def _delegating(inner: Any) -> Any:
    return (yield from inner)


def _plain() -> Any:
    x = yield 1
    return x


def test_the_analysis_names_each_kind_of_hidden_value() -> None:
    import contextlib

    assert _suspended(_loop([1, 1])) == ("for-loop iterator of `for item in items:`",)
    assert _suspended(_temporary(lambda: 1)) == ("result of a call in `return a() + "
                                                 "(yield)`",)
    assert _suspended(_within(contextlib.nullcontext())) == ("with-exit of `with manager:`",)
    assert _suspended(_handler()) == ("saved exception state of a handler",)
    # A sub-iterator is the generator's gi_yieldfrom, and a yielded value has left the stack.
    assert _suspended(_delegating(_plain())) is None
    assert _suspended(_plain()) is None


def _positions(_: float) -> list[tuple[types.CodeType, int]]:
    return [(f.f_code, f.f_lasti) for f in (sys._getframe(1), sys._getframe(2))]


def _calling(rate: float) -> Any:
    return {len("ab"): _drawing(rate)}[2]


def _drawing(rate: float) -> Any:
    return _positions(rate * 2)


def test_the_analysis_of_a_frame_in_a_call() -> None:
    # A frame calling a Python function reports the last inline cache entry of its CALL (a
    # warm call of C code, its PRECALL): the same call, the same answer, cold or warm.
    for _ in range(100):
        drawing, calling = _calling(1.0)
        # What an enclosing expression holds is hidden; the call's own operands are not ...
        site = hidden_state(*calling)
        assert site is not None and site.hidden == (
            "result of a call in `return {len(\"ab\"): _drawing(rate)}[2]`",)
        assert hidden_state(*drawing) is None
        # ... except in the drawing frame, whose callee runs in frames the fingerprint skips
        # (``random``, the explorer): the draw's arguments are hashed by nobody.
        site = hidden_state(*drawing, draw=True)
        assert site is not None and site.hidden == (
            "draw-call argument: temporary BINARY_OP *",)

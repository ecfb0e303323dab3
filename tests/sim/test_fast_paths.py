"""The simulator's fast paths are an optimisation only (``Encoder.fast_paths``).

``_io`` and ``_sleep`` stand for ``wait()`` with a bare timeout when no crash or pause is due
before the reply or the wake-up, so a request costs one generator frame fewer (S-1k). They
must change nothing: the same world run with them off gives the same history, record for
record, float for float. Mutation testing of the driver (session 41) left their comparisons
at crash, pause and freeze instants alive under every safety suite: a fast path that answers
a reply inside another slot's pause, or at the very instant of a crash, makes a kinder world
than the one the proofs claim, and no safety checker sees kindness. This test does.

The worlds are the edge families whose faults fall inside requests and sleeps: crashes,
random and await-point pauses (split ones too), several slots pausing one another, hung
reads, late finishes and the congested gateway, plus the simulator's default scenario.
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance.families import FAMILIES
from conformance.worlds import BASE, World, race
from sim import load_scenario, run_once
from sim._encoder import Encoder, _Crashed
from tests.sim.drivers import an_encoder, another_process_pauses
from verifier.protocol import Observe, Tier

#: (family, scenario changes, seeds): each reaches a fast path's edge in some of its seeds.
WORLDS: list[tuple[str, dict[str, Any], range]] = [
    ("slots", {}, range(12)),
    ("slots", {"concurrency": 3}, range(6)),
    ("lease", {"concurrency": 2, "jobs": 4}, range(8)),
    ("split-pause", {}, range(8)),
    ("split-pause", {"concurrency": 2}, range(6)),
    ("late-finish-P", {"concurrency": 2}, range(8)),
    ("crash-liveness", {}, range(8)),
    ("hang", {}, range(6)),
    ("congested", {}, range(6)),
    ("restart-liveness", {}, range(6)),
]


def _histories(family: str, changes: dict[str, Any], seed: int,
               monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    sc = BASE.replace(**{**FAMILIES[family], **changes})
    fast = race(World(sc, seed=seed, family=family), "hardened").result.history
    with monkeypatch.context() as m:
        m.setattr(Encoder, "fast_paths", False)
        slow = race(World(sc, seed=seed, family=family), "hardened").result.history
    return list(fast), list(slow)


def _first_difference(fast: list[Any], slow: list[Any]) -> str:
    for i, (a, b) in enumerate(zip(fast, slow, strict=False)):
        if a != b:
            return f"record {i}: fast {a!r}, without {b!r}"
    return f"lengths {len(fast)} and {len(slow)}"


@pytest.mark.parametrize(("family", "changes", "seeds"), WORLDS,
                         ids=[f"{f}-{'-'.join(f'{k}{v}' for k, v in c.items()) or 'as-is'}"
                              for f, c, _ in WORLDS])
def test_a_world_runs_the_same_with_and_without_the_fast_paths(
        family: str, changes: dict[str, Any], seeds: range,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for seed in seeds:
        fast, slow = _histories(family, changes, seed, monkeypatch)
        assert fast == slow, (family, changes, seed, _first_difference(fast, slow))


def test_the_default_scenario_runs_the_same_with_and_without_the_fast_paths(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sc = load_scenario("default").replace(encoders=6, jobs=40)
    fast = run_once(sc, "hardened", 3).history
    monkeypatch.setattr(Encoder, "fast_paths", False)
    slow = run_once(sc, "hardened", 3).history
    assert list(fast) == list(slow), _first_difference(list(fast), list(slow))


def test_the_switch_reaches_both_fast_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above is only worth something if turning the switch off takes the
    frame-ful path: count ``wait`` calls both ways on one world."""
    calls = {"n": 0}
    wait = Encoder.wait

    def counted(self: Encoder, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return wait(self, *args, **kwargs)

    monkeypatch.setattr(Encoder, "wait", counted)
    sc = BASE.replace(**FAMILIES["slots"])
    race(World(sc, seed=0, family="slots"), "hardened")
    with_fast = calls["n"]
    calls["n"] = 0
    monkeypatch.setattr(Encoder, "fast_paths", False)
    race(World(sc, seed=0, family="slots"), "hardened")
    assert calls["n"] > with_fast * 2, (calls["n"], with_fast)


# --- the instants a random world seldom hits exactly: a reply or a wake-up due at the very
# instant of a crash, a pause, or the end of another process's pause. Each is run both ways.

REPLY = 2.0


def _run_with_faults(encoder: Encoder, step: Any, done: str, *, crash: float | None,
                     pause: float | None, frozen: tuple[float, float] | None
                     ) -> tuple[float, str]:
    """Run one driver step with a crash or a random pause due ``crash``/``pause`` s from
    now, or another process of the node pausing ``frozen`` = (after, length): how long the
    step took and ``done``, or "crashed"."""
    env, t0 = encoder.env, encoder.env.now
    if crash is not None:
        encoder.crash_at = t0 + crash
    if pause is not None:
        encoder.pause_at = t0 + pause
    if frozen is not None:
        another_process_pauses(encoder, *frozen)
    process = env.process(step)
    try:
        env.run(until=process)
    except _Crashed:
        return -1.0, "crashed"
    return env.now - t0, done


def _a_read(encoder: Encoder, monkeypatch: pytest.MonkeyPatch, *, crash: float | None = None,
            pause: float | None = None, frozen: tuple[float, float] | None = None
            ) -> tuple[float, str]:
    """A monitor read whose reply takes ``REPLY`` s, with faults as ``_run_with_faults``
    places them: when the driver handled the reply, or "crashed"."""
    encoder.world.add_job("probe-job", queued=False)
    served = encoder.world.serve

    def slow(did: str, job_id: str, action: Any) -> tuple[Any, float, str, Any]:
        answer, _, phase, value = served(did, job_id, action)
        return answer, REPLY, phase, value

    monkeypatch.setattr(encoder.world, "serve", slow)
    return _run_with_faults(encoder, encoder._io("probe-job", Observe(
        Tier.MONITOR, purpose="recheck")), "answered", crash=crash, pause=pause, frozen=frozen)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "frame-ful"])
@pytest.mark.parametrize(
    ("faults", "expected"),
    [({"crash": REPLY}, (-1.0, "crashed")),
     ({"crash": REPLY + 1e-6}, (REPLY, "answered")),
     ({"pause": REPLY}, (REPLY, "answered")),
     ({"frozen": (1.0, 3.0)}, (4.0, "answered")),
     ({"frozen": (1.0, 1.0)}, (REPLY, "answered")),
     ({"frozen": (REPLY, 3.0)}, (REPLY, "answered"))],
    ids=["crash-at-the-reply", "crash-just-after", "pause-due-at-the-reply",
         "another-process-paused-over-the-reply", "its-pause-ends-at-the-reply",
         "its-pause-begins-at-the-reply"])
def test_a_reply_at_a_fault_instant(fast: bool, faults: dict[str, Any],
                                    expected: tuple[float, str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash at the reply's very instant comes first (the process acts at no instant at or
    after its crash); a random pause due then is taken after the reply is handled, as a
    wait ending as a pause falls due does; a reply due while another process of the node has
    it paused is handled when the pause ends, not inside it (with ``concurrency`` > 1 that
    is the slots' world); one due as such a pause begins is handled then."""
    encoder = an_encoder()
    monkeypatch.setattr(Encoder, "fast_paths", fast)
    answered, how = _a_read(encoder, monkeypatch, **faults)
    assert (how, answered) == (expected[1], pytest.approx(expected[0]))


def _a_sleep(encoder: Encoder, *, crash: float | None = None,
             pause: float | None = None, frozen: tuple[float, float] | None = None
             ) -> tuple[float, str]:
    """The protocol's sleep of ``REPLY`` s (no work running, no push channel), with faults as
    in ``_a_read``: when it woke, or "crashed"."""
    assert encoder.push is None and not encoder.work
    until = (encoder.env.now + REPLY) * encoder.rate
    return _run_with_faults(encoder, encoder._sleep(until, encoder), "woke", crash=crash,
                            pause=pause, frozen=frozen)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "frame-ful"])
@pytest.mark.parametrize(
    ("faults", "expected"),
    [({"crash": REPLY}, (-1.0, "crashed")),
     ({"pause": REPLY}, (REPLY, "woke")),
     ({"pause": 1.0}, (None, "woke")),
     ({"frozen": (1.0, 3.0)}, (4.0, "woke")),
     ({"frozen": (REPLY, 3.0)}, (REPLY, "woke"))],
    ids=["crash-at-the-wake-up", "pause-due-at-the-wake-up", "pause-during-the-sleep",
         "another-process-paused-over-the-wake-up", "its-pause-begins-at-the-wake-up"])
def test_a_wake_up_at_a_fault_instant(fast: bool, faults: dict[str, Any],
                                      expected: tuple[float | None, str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """As for a reply: a crash at the wake-up's instant comes first, a pause due then comes
    after it, a pause during the sleep delays the wake-up to the pause's end (or the sleep's
    end, whichever is later: the process wakes when it resumes), and another process's pause
    over the wake-up delays it to that pause's end."""
    encoder = an_encoder()
    monkeypatch.setattr(Encoder, "fast_paths", fast)
    woke, how = _a_sleep(encoder, **faults)
    assert how == expected[1]
    if expected[0] is None:  # a random pause of a random length, from 1 s
        expected = (max(REPLY, 1.0 + encoder.pause_lengths[-1]), how)
    assert woke == pytest.approx(expected[0])

"""The ci-sized exhaustive exploration (2 encoders x 1 job), and the explorer's own teeth.

Every schedule of every frame of :data:`conformance.explore.FRAMES` up to :data:`CI_DEPTH`
deviations: the hardened chain keeps S1, S2, S3 and the lease in all of them, and the
documented chain, the settle, tier-precedence, cancel and lease ablations and the old settle
rule (the proof issue's finding 1: a pause between a decision and its send), on its own on
Gateway Aid's fallback to a gateway claim too (and that fallback's settle without its ε term),
are each caught,
with a minimal schedule that replays; so are a term of each formula, the no-progress clock
believed longer, and a finish without its fence (by S3 alone). The larger scopes are
``python -m conformance explore`` (README, "Exhaustive exploration").
"""

from __future__ import annotations

import json

import pytest

from conformance.__main__ import main
from conformance.explore import (
    AID_FALLBACK_SETTLE_RULE,
    AID_FALLBACK_SETTLE_SHORT,
    AID_FALLBACK_SETTLE_WITHOUT_DRIFT,
    EDGE,
    FRAMES,
    NO_SETTLE_AFTER_ATOMIC_CLAIM,
    OLD_SETTLE_RULE,
    Exploration,
    Schedule,
    explore,
    run_schedule,
)
from conformance.worlds import World, race

#: Deviations per schedule in CI, per frame (every frame's hardened exploration is complete).
CI_DEPTH = {"handout": 2, "settle": 2, "tiers": 2, "lease": 1, "database": 2, "progress": 1,
            "mixed": 2, "aid": 2, "aid-ε": 2}

#: What must be caught in CI: (subject, frame, most deviations its minimal schedule may need).
CAUGHT = [
    ("documented", "handout", 2),
    ("hardened-without-settle", "handout", 1),
    ("hardened-without-tier-precedence", "tiers", 2),
    ("hardened-without-cancel", "lease", 0),
    ("hardened-without-lease", "lease", 0),
    (OLD_SETTLE_RULE, "handout", 2),
    # the settle after a database claim, which the gateway overwrites too
    (NO_SETTLE_AFTER_ATOMIC_CLAIM, "mixed", 0),
    ("believes-G-smaller", "mixed", 1),
    # the settle after Gateway Aid's refusal, counted from the gateway claim's own answer: a
    # mutant counting it from the refusal survived 700 targeted random worlds (session 32)
    # and is found here with two pauses of P, one before the fallback claim leaves; and the
    # frame reaches that settle's exact edge, so a tenth of a second short is caught too
    (AID_FALLBACK_SETTLE_RULE, "aid", 2),
    (AID_FALLBACK_SETTLE_SHORT, "aid", 2),
    # that settle without its ε term: the same as shipped where ε = 0 (``aid``), so only a
    # random family caught it (session 34); with clocks ε fast, one pause of the competitor
    (AID_FALLBACK_SETTLE_WITHOUT_DRIFT, "aid-ε", 1),
    # a term of each formula, and the no-progress clock
    ("settle-without-ε", "handout", 1),
    ("lease-without-C", "lease", 1),
    ("believes-N-larger", "progress", 0),
    # S3: no CAUGHT entry was caught by S3 alone, so an explorer that stopped judging it
    # passed every test here (an adversarial review of the explorer, 2026-12-05)
    ("hardened-without-fence", "database", 2),
    # the database frame's double hand-out takes effect (with G = 0 it never did, and the
    # gateway's word alone came out clean there: 2026-12-05)
    ("trust-gateway", "database", 1),
]


@pytest.mark.parametrize("frame", sorted(CI_DEPTH))
def test_hardened_chain_is_clean_over_every_schedule_of_the_frame(frame: str) -> None:
    report = explore(FRAMES[frame], "hardened", depth=CI_DEPTH[frame])
    print(f"hardened, {frame}: {report.schedules} schedules, {report.states} states, "
          f"{report.seconds:.1f}s")
    assert report.complete
    assert not report.violations, "\n".join(_lines(report))
    # The scope is not empty: the frame's choices were reached, bottom values included.
    assert report.schedules > 10
    assert any("bottom" in site["values"] for site in report.coverage.values())


@pytest.mark.parametrize(("who", "frame", "most"), CAUGHT, ids=[c[0] for c in CAUGHT])
def test_weakened_chain_is_caught_with_a_minimal_schedule_that_replays(
        who: str, frame: str, most: int) -> None:
    # Level by level: the first violation has the fewest deviations of any (every schedule
    # with fewer ran first), and within ``most`` of them.
    report = explore(FRAMES[frame], who, depth=most)
    assert report.violations, f"{who} not caught in frame {frame}"
    found = report.violations[0]
    # The saved tape replays the very violation through the simulator.
    replayed = race(_world_of(found.replay), _chain_of(found.replay),
                    protocol=_subject_protocol(who))
    assert replayed.violated(*found.properties)
    if who == "hardened-without-fence":
        assert found.properties == ["S3"]  # the one property only it tests


def test_pruning_hides_no_violation() -> None:
    """State hashing only skips states already explored with at least as many deviations
    left: with and without it, the same minimal schedule is found (a violation two deviations
    deep, so that pruning had states to skip on the way)."""
    pruned = explore(FRAMES["handout"], "documented", depth=2)
    full = explore(FRAMES["handout"], "documented", depth=2, prune=False)
    assert pruned.violations and full.violations
    assert pruned.violations[0].schedule == full.violations[0].schedule
    assert full.pruned == 0 < pruned.pruned
    assert pruned.schedules - pruned.pruned < full.schedules


def test_every_schedule_of_a_zero_latency_frame_ends() -> None:
    """With zero-latency tiers, a verification loop that sleeps to its deadline again was
    woken a rounding error short of it and spun at one instant forever (the explorer's first
    finding, fixed in the simulator's driver). The explorer refuses to wait for such a run:
    it raises after a bounded number of draws."""
    report = explore(FRAMES["tiers"], "hardened-without-tier-precedence", depth=2,
                     stop_at_first=False)
    assert report.complete and report.schedules > 100


def test_top_values_take_every_bound_exactly() -> None:
    """The default run of the handout frame is at the edges: every accept's write lands
    exactly G after its request (the ``_edge`` draw after a top fraction rounds it to the
    bound), and no choice took any other value."""
    frame = FRAMES["handout"]
    tape, result = run_schedule(frame, "hardened", Schedule())
    assert result is not None and set(tape.raw) <= {EDGE, 0.0, 0.5}
    g = frame.scenario(2, 1).write_delay
    sent = {r[1]: r[0] for r in result.history if r[3] == "claim" and r[4] == "invoke"}
    landed = [(r[0], r[5][0]) for r in result.history if r[3] == "assign" and r[1] == "world"]
    assert landed and all(at - sent[who] == g for at, who in landed), landed
    # Exactly, not to the float clock's rounding: in the default run the only bottom values
    # drawn are the ``_edge`` draws taken (one per accept's write, one per monitor read).
    reads = sum(1 for r in result.history if r[3] == "verify" and r[4] == "invoke")
    assert tape.raw.count(0.0) >= len(landed) + reads


def test_command_line_reports_and_gates(tmp_path, capsys) -> None:
    out = tmp_path / "explore.json"
    code = main(["explore", "--chain", "hardened-without-settle", "--frame", "handout",
                 "--depth", "1", "--json", str(out), "--expect", "violated"])
    assert code == 0
    text = capsys.readouterr().out
    assert "minimal schedule (1 deviations)" in text and "python -m sim replay" in text
    (data,) = json.loads(out.read_text())
    assert data["verdict"].startswith("violated") and data["violations"][0]["schedule"]
    assert main(["explore", "--chain", "hardened-without-settle", "--frame", "handout",
                 "--depth", "1", "--expect", "clean"]) == 1
    with pytest.raises(SystemExit) as usage:
        main(["explore", "--chain", "no-such-chain"])
    assert usage.value.code == 2


def test_an_exploration_stopped_at_its_limit_is_not_clean(capsys) -> None:
    """"--expect clean" passed after 3 of the schedules of a chain caught at depth 1 (the
    violation was never reached), and after 0 schedules with --limit 0 (a review of the
    explorer, session 24). Stopped short is "clean so far", which the gate refuses."""
    assert main(["explore", "--chain", "hardened-without-settle", "--frame", "handout",
                 "--depth", "1", "--limit", "3", "--expect", "clean"]) == 1
    assert "clean so far" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["explore", "--chain", "hardened", "--frame", "tiers", "--limit", "0"])
    assert usage.value.code == 2


def _lines(report: Exploration) -> list[str]:
    from conformance.explore import iter_lines
    return list(iter_lines(report))


def _world_of(replay: str) -> World:
    import shlex
    import tomllib
    from pathlib import Path

    from sim import Scenario

    words = shlex.split(replay)
    scenario = Path(words[words.index("--scenario") + 1])
    tape = json.loads(Path(words[words.index("--tape") + 1]).read_text())
    return World(Scenario.from_mapping(tomllib.loads(scenario.read_text())),
                 tuple(tape["tape"]), tape["seed"])


def _chain_of(replay: str) -> str:
    import shlex
    words = shlex.split(replay)
    return words[words.index("--chain") + 1]


def _subject_protocol(who: str):  # type: ignore[no-untyped-def]
    from conformance.explore import subject
    return subject(who).protocol

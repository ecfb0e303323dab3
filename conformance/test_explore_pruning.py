"""State hashing may skip a schedule only where another run covers it.

A run is pruned at the first state some earlier run already explored with as many deviations
left. Every choice point it passed before that state was new, and was registered as explored
from this run: the deviations from those points must be run from it, or nobody runs them
(`conformance/explore.py`, ``explore``). And the pruned exploration must end in the same runs
as the unpruned one: a state includes the history so far, so a pruned run's end is the end of
the run that first reached its state.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

import conformance.explore as explore_module
from conformance.explore import FRAMES, Schedule, explore


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Schedule, Any, bool]]:
    """Every run of the next explorations: its schedule, its tape, and whether it ended."""
    runs: list[tuple[Schedule, Any, bool]] = []
    run = explore_module._run

    def recorded(scenario: Any, who: Any, schedule: Schedule, **kwargs: Any) -> Any:
        tape, result = run(scenario, who, schedule, **kwargs)
        runs.append((schedule, tape, result))
        return tape, result
    monkeypatch.setattr(explore_module, "_run", recorded)
    return runs


def test_a_pruned_run_keeps_the_branch_points_it_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _recording(monkeypatch)
    report = explore(FRAMES["tiers"], "hardened", depth=2, stop_at_first=False)
    assert report.complete and report.pruned > 0
    ran = {schedule for schedule, _, _ in runs}
    assert len(ran) == len(runs) == report.schedules  # no schedule twice
    pruned = [(s, tape) for s, tape, result in runs if result is None and tape.branches]
    assert pruned, "no pruned run passed a branch point: the test proves nothing"
    missing = [s.extended(p, v) for s, tape in pruned for p in tape.branches
               for v in tape.alternatives() if s.extended(p, v) not in ran]
    assert not missing, f"{len(missing)} schedules never run, e.g. {missing[:3]}"
    # Every schedule is a run's branch point, and every branch point of every run is run.
    expected = {Schedule()} | {s.extended(p, v) for s, tape, _ in runs for p in tape.branches
                               for v in tape.alternatives()}
    assert ran == expected


def test_pruning_ends_in_the_same_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _recording(monkeypatch)

    def ends(prune: bool) -> set[str]:
        runs.clear()
        explore(FRAMES["tiers"], "hardened", depth=2, stop_at_first=False, prune=prune)
        return {hashlib.blake2b(repr(result.history.records).encode()).hexdigest()
                for _, _, result in runs if result is not None}
    pruned, full = ends(True), ends(False)
    assert pruned == full and len(full) > 50


@pytest.mark.parametrize(("depth", "values"), [(2, 2), (1, 3)])
def test_every_branch_point_is_one_schedule_per_alternative(depth: int, values: int) -> None:
    """The count the choice points predict: each distinct state at which a run could still
    deviate is a branch point, and each of its alternatives is one schedule, besides the
    default run; no branch point is dropped, and none is run twice."""
    report = explore(FRAMES["tiers"], "hardened", depth=depth, values=values,
                     stop_at_first=False)
    assert report.complete and report.schedules > 40
    assert report.schedules == 1 + report.states * (values - 1)


def test_a_state_has_one_fingerprint_however_warm_the_interpreter() -> None:
    """The same exploration, run twice in one fresh process, counts the same schedules.

    Hashed by instruction offset, a frame that is calling reported its CALL while cold and
    its PRECALL once the interpreter had specialised the call, so the first exploration in a
    process told equal states apart that the second merged: the hardened chain in the ``aid``
    frame ran 1,961 schedules, then 1,952 (session 33). A fresh process, because this one is
    warm already."""
    import ast
    import subprocess
    import sys

    script = ("from conformance.explore import FRAMES, explore\n"
              "print([explore(FRAMES['aid'], 'hardened', depth=2).schedules "
              "for _ in range(2)])\n")
    out = subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", script], capture_output=True, text=True,
        check=True, timeout=600).stdout
    first, second = ast.literal_eval(out)
    assert first == second > 1000

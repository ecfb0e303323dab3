"""Split pauses (``pause_split_rate``): one freeze of P in pieces, the driver running in
between, and never more than P frozen within any window of P + C (the timing model's P).

Until session 27 the world only made pauses at least C apart, so the model's edge, a window
of P + C holding P of freeze in two or more pieces, was never reached (a review of the
world)."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

from conformance.families import FAMILIES
from conformance.worlds import BASE, World, race


def _freeze_within(pauses: list[tuple[float, float]], start: float, width: float) -> float:
    return sum(max(0.0, min(b, start + width) - max(a, start)) for a, b in pauses)


def _pauses(history: object) -> dict[str, list[tuple[float, float]]]:
    per: dict[str, list[tuple[float, float]]] = defaultdict(list)
    began: dict[str, float] = {}
    for t, process, _, op, phase, _ in history:  # type: ignore[attr-defined]
        if op == "pause" and phase == "invoke":
            began[process] = t
        elif op == "pause" and phase == "ok":
            per[process].append((began.pop(process), t))
    return per


def test_split_pauses_reach_p_within_a_window_and_never_pass_it() -> None:
    sc = BASE.replace(**FAMILIES["split-pause"], encoders=3, jobs=2)
    width, p = sc.pause_max + sc.cancel_latency, sc.pause_max
    splits = at_the_edge = 0
    for seed in range(10):
        run = race(World(sc, seed=seed, family="split-pause"), "hardened")
        for pauses in _pauses(run.result.history).values():
            pauses.sort()
            # The freeze in a window is largest when the window starts at a pause's start or
            # ends at a pause's end.
            starts = [a for a, _ in pauses] + [b - width for _, b in pauses]
            most = max(_freeze_within(pauses, s, width) for s in starts)
            assert most <= p + 1e-9, (seed, pauses)
            # A piece is a pause of its own (a millisecond at least): a driver that split
            # off only crumbs (a pause of a microsecond within C of the last) never reached
            # the edge, and passed (mutation testing, session 42).
            close = [(x, y) for x, y in pairwise(pauses)
                     if y[0] < x[1] + sc.cancel_latency and y[1] - y[0] >= 1e-3]
            splits += len(close)
            at_the_edge += any(abs(_freeze_within(pauses, x[0], width) - p) < 1e-6
                               for x, _ in close)
        assert not run.violated("S1", "S2", "S3", "lease"), run.explain("S1", "S2", "S3", "lease")
    assert splits >= 10 and at_the_edge >= 5, (splits, at_the_edge)


def test_without_the_rate_no_pause_starts_within_c_of_another() -> None:
    sc = BASE.replace(**FAMILIES["lease"], encoders=3, jobs=2)
    for seed in range(5):
        run = race(World(sc, seed=seed, family="lease"), "hardened")
        for pauses in _pauses(run.result.history).values():
            pauses.sort()
            assert all(y[0] >= x[1] + sc.cancel_latency - 1e-9
                       for x, y in pairwise(pauses)), (seed, pauses)

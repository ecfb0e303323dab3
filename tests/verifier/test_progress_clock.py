"""The no-progress clock (verifier/_progress.py) against a model of the gateway's own clock.

The oracle below is written from the gateway's rule, not from the clock's code: every ping
that lands on the assignment stores the progress it carries, the assignment's landing resets
it, and the no-progress clock counts from the last landing that *changed* it. Three gateways
are drawn: one that stores the whole value, with a ping carrying none storing it too or
leaving the value alone, and one that stores each field only when it is not zero (the public
gateway code's ``pingJob``). Pings of
an earlier attempt by the same DID land on the assignment too, at any instant, carrying any
value. The clock is told only what the protocol knows: our pings' decisions and values, and
which of them were counted, in any order. It must never be later than the gateway's last
change, or the work would run past the gateway's reassignment (S2).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verifier._progress import STARTED
from verifier.protocol import ProgressClock

NONE = (0.0, 0.0)
VALUES = [(0.0, 5.0), (0.0, 7.0), (40.0, 100.0), (0.0, 100.0), (5.0, 100.0), (5.0, 0.0),
          STARTED]
STORAGE = ("whole", "whole-but-none", "fields")


def _stored(value: tuple[float, float], carried: tuple[float, float],
            storage: str) -> tuple[float, float]:
    if storage == "fields":  # each field only when it is not zero
        return (carried[0] or value[0], carried[1] or value[1])
    if storage == "whole-but-none" and carried == NONE:
        return value
    return carried


def _last_change(assigned: float, landings: list[tuple[float, tuple[float, float]]], *,
                 storage: str, until: float) -> float:
    """The gateway's last change of the stored progress as of ``until``."""
    value, changed = NONE, assigned
    for at, carried in sorted(landings, key=lambda landing: landing[0]):
        if at < assigned or at > until:
            continue
        stored = _stored(value, carried, storage)
        if stored != value:
            value, changed = stored, at
    return changed


@st.composite
def _histories(draw: st.DrawFn) -> dict[str, object]:
    assigned = draw(st.floats(0.0, 5.0))  # the claim was decided at 0
    values = st.sampled_from([NONE, *VALUES])
    stale = draw(st.lists(st.tuples(st.floats(0.0, 60.0), values), max_size=4))
    ours = draw(st.lists(st.tuples(st.floats(assigned, 100.0), st.floats(0.0, 10.0), values,
                                   st.booleans()), max_size=12))
    counted = [(decided, carried, decided + delay) for decided, delay, carried, landed in ours
               if landed]
    order = draw(st.permutations(range(len(counted))))
    return {"assigned": assigned, "stale": stale, "ours": ours,
            "counted": [counted[i] for i in order],
            "storage": draw(st.sampled_from(STORAGE))}


@given(_histories())
def test_the_clock_is_never_later_than_the_gateways_last_change(history: dict) -> None:
    clock = ProgressClock(0.0)
    for decided, _, carried, _ in sorted(history["ours"]):
        clock.sent(decided, carried)
    landings = [*history["stale"], *[(decided + delay, carried)
                                     for decided, delay, carried, landed in history["ours"]
                                     if landed]]
    seen = -math.inf
    for decided, carried, landed_at in history["counted"]:
        clock.counted(decided, carried)
        seen = max(seen, landed_at)  # counted only after it landed: the gateway is this far
        assert clock.base <= _last_change(history["assigned"], landings,
                                          storage=history["storage"], until=seen)


def test_a_stale_ping_carrying_the_value_reported_first_does_not_move_the_clock() -> None:
    """The hazard the rule closes: a ping of an earlier attempt carrying 7 lands at 3, after
    the assignment; our first counted ping carrying 7 was decided at 40. The gateway's clock
    counts from 3; one value proves nothing, so the clock stays at the claim's decision."""
    clock = ProgressClock(0.0)
    clock.counted(40.0, (0.0, 7.0))
    clock.counted(50.0, (0.0, 7.0))
    assert clock.base == 0.0


def test_two_values_move_the_clock_to_the_earlier_ones_latest_ping() -> None:
    clock = ProgressClock(0.0)
    for decided, carried in ((10.0, (0.0, 5.0)), (20.0, (0.0, 5.0)), (30.0, (0.0, 7.0)),
                             (40.0, (0.0, 7.0))):
        clock.counted(decided, carried)
    assert clock.base == 20.0  # the stored value changed between landings of 20's and 30's
    clock.counted(50.0, NONE)  # "no progress" is never a value
    assert clock.base == 20.0
    clock.counted(60.0, (40.0, 100.0))
    assert clock.base == 40.0


@pytest.mark.parametrize("late", [5.0, 15.0])
def test_pings_counted_out_of_order_never_move_the_clock_back(late: float) -> None:
    clock = ProgressClock(0.0)
    clock.counted(30.0, (0.0, 7.0))
    clock.counted(20.0, (0.0, 5.0))
    assert clock.base == 20.0
    clock.counted(late, (40.0, 100.0))  # proven late: a third value, decided earlier
    assert clock.base == 20.0


def test_a_value_keeps_its_latest_counted_ping_whatever_the_order_of_proofs() -> None:
    """A gateway ping is counted when a later read proves it, not in the order decided."""
    clock = ProgressClock(0.0)
    clock.counted(30.0, (0.0, 7.0))
    clock.counted(20.0, (0.0, 7.0))  # proven after the ping decided at 30
    clock.counted(40.0, (0.0, 5.0))
    assert clock.base == 30.0


def test_the_clock_never_goes_back_before_the_claim() -> None:
    """The assignment reset the progress after the claim's decision: pings decided earlier (a
    driver's clock stepping back, say) never take the clock before it."""
    clock = ProgressClock(100.0)
    clock.counted(10.0, (0.0, 5.0))
    clock.counted(20.0, (0.0, 7.0))
    assert clock.base == 100.0


def test_a_pair_counts_only_through_a_field_both_pings_set() -> None:
    """A gateway that stores each field only when it is not zero: a stale ping stored
    pct = 5; ours carrying (0, 100) then (5, 100) changed nothing, though the two differ."""
    clock = ProgressClock(0.0)
    clock.counted(40.0, (0.0, 100.0))
    clock.counted(50.0, (5.0, 100.0))
    assert clock.base == 0.0
    clock.counted(60.0, (7.0, 100.0))  # pct 5 -> 7: both set it
    assert clock.base == 50.0


def test_the_start_marker_pairs_with_a_first_report_in_either_field() -> None:
    for first in ((0.0, 3.0), (12.0, 0.0), (12.0, 100.0)):
        clock = ProgressClock(0.0)
        clock.counted(10.0, STARTED)
        clock.counted(20.0, first)
        assert clock.base == 10.0, first


def test_the_start_marker_sets_both_fields_and_stays_below_running() -> None:
    """Each field non-zero, so a gateway that stores only non-zero fields stores both; each
    at most 1 %, so the gateway does not call the job running on the marker alone (the
    contract: running from the first ping with progress > 1)."""
    assert all(0 < field <= 1 for field in STARTED)

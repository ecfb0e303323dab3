"""The world's tie rule (``sim._world.TIE_S``): a read sees every write landing up to a
microsecond after the instant it reflects, so that float sums computed two ways cannot put a
read at the model's exact edge one ulp before the write it must see."""

from __future__ import annotations

import pytest

import sim._world as sim_world
from conformance.test_regressions import FINDING_TIE
from conformance.worlds import race


def test_the_frozen_tie_schedule_breaks_the_hardened_chain_without_the_rule(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The schedule of ``FINDING_TIE`` still reaches the tie: without the rule the deciding
    read misses the competing write by one ulp and two encoders process the job; with it
    (``conformance/test_regressions.py``) the hardened chain holds."""
    monkeypatch.setattr(sim_world, "TIE_S", 0.0)
    broken = race(FINDING_TIE, "hardened")
    assert broken.violated("S2"), "the frozen schedule no longer reaches the tie"


"""The world's tie rules: a read sees every write landing up to a microsecond after the instant
it reflects (``sim._world.TIE_S``), so that float sums computed two ways cannot put a read at the
model's exact edge one ulp before the write it must see; and the gateway's check, at G = 0, sees
every write already applied (``sim._world.misses``)."""

from __future__ import annotations

import pytest

import sim._world as sim_world
from conformance.test_regressions import FINDING_DATABASE_TIE, FINDING_TIE
from conformance.worlds import race


def _old_check_rule(landed: float, reflects: float, now: float) -> bool:
    """The gateway's check before 2026-12-04: at G = 0 too, it missed a write landing at the
    very instant it reflected."""
    return landed >= reflects


def test_the_frozen_tie_schedule_breaks_the_hardened_chain_without_the_rule(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The schedule of ``FINDING_TIE`` still reaches the tie: without the rule the deciding
    read misses the competing write by one ulp and two encoders process the job; with it
    (``conformance/test_regressions.py``) the hardened chain holds."""
    monkeypatch.setattr(sim_world, "TIE_S", 0.0)
    broken = race(FINDING_TIE, "hardened")
    assert broken.violated("S2"), "the frozen schedule no longer reaches the tie"


def test_a_check_at_the_instant_a_database_claim_landed_broke_the_hardened_chain(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``FINDING_DATABASE_TIE`` under the old check rule: the gateway overwrites a database
    claim whose settle (G = ε = 0) is over at once, and two encoders process the job (with
    today's rule the hardened chain holds: ``conformance/test_regressions.py``)."""
    monkeypatch.setattr(sim_world, "misses", _old_check_rule)
    broken = race(FINDING_DATABASE_TIE, "hardened")
    assert broken.violated("S2"), "the frozen schedule no longer reaches the tie"

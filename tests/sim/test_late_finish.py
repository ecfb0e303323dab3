"""A gateway finish whose write lands late (``late_finish_rate``, the ``late-finish`` family).

``finishJob`` checks the owner when served and writes the result by id, up to G after the
request: check-then-act, as ``acceptJob``. An adversarial review (2026-12-05) found that the
hardened chain then broke S3 inside the timing model whenever G > C: work that ended just
before the lease's end was finished at once, the gateway requeued the job P + C later, an idle
encoder claimed it, and the late write committed our result on its assignment. The protocol
now decides no gateway finish after ``lease end + C - G`` (``OwnershipProtocol._finish_by``);
``conformance.canaries.FinishPastLease`` is the protocol before, and must be caught.
"""

from __future__ import annotations

from conformance.canaries import FinishPastLease
from conformance.families import FAMILIES
from conformance.worlds import BASE, World, race

FAMILY = "late-finish"
SEEDS = range(60)


def _scenario() -> object:
    return BASE.replace(**FAMILIES[FAMILY])


def test_the_family_is_inside_the_model_with_g_above_c() -> None:
    sc = BASE.replace(**FAMILIES[FAMILY])
    assert sc.inside_model() and not sc.timing_model().problems()
    assert sc.write_delay > sc.cancel_latency and sc.late_finish_rate == 1.0


def test_the_hardened_chain_keeps_s3_when_finishes_land_late() -> None:
    sc = BASE.replace(**FAMILIES[FAMILY])
    too_late = 0
    for seed in SEEDS:
        result = race(World(sc, tape=(), seed=seed, family=FAMILY), "hardened")
        bad = result.violated("S1", "S2", "S3", "lease")
        assert not bad, (seed, result.explain("S1", "S2", "S3", "lease"))
        too_late += any(op == "outcome" and isinstance(value, tuple)
                        and value[0] == "FINISH_TOO_LATE"
                        for _, _, _, op, _, value in result.result.history)
    assert too_late >= 3, too_late  # the deadline is reached, not merely never needed


def test_a_finish_past_the_lease_is_caught_by_s3() -> None:
    sc = BASE.replace(**FAMILIES[FAMILY])
    caught = [seed for seed in SEEDS
              if race(World(sc, tape=(), seed=seed, family=FAMILY), "hardened",
                      protocol=FinishPastLease).violated("S3")]
    # Measured (2026-12-05): the review's script found 27 of 300 seeds.
    assert len(caught) >= 2, caught

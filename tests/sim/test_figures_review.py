"""An adversarial review of the published figures (2026-12-05): a researcher recomputed them
from raw histories and the CSV/JSON, and tried the intervals' edge cases. Each test failed on
the code before its fix."""

from __future__ import annotations

import io
import json
from pathlib import Path

from sim.__main__ import main
from sim._cli import normalised
from sim._columns import COLUMNS
from sim._metrics import paired_difference, t_interval
from sim._research import _excludes_zero
from sim._runner import run_once
from sim._scenario_files import apply_overrides, load_scenario


def test_identical_per_seed_values_give_an_exactly_zero_width_interval() -> None:
    """0.1 on three seeds had the interval [0.09999999999999998, 0.10000000000000006]: the
    reports promise that a zero-width interval means every seed gave the same value, and the
    ablation's "excludes 0" tells the two apart by ``lo == hi``."""
    for value in (0.1, 0.7, 12.2):
        for n in (3, 6, 12):
            mean, lo, hi = t_interval([value] * n)
            assert lo == hi == mean
    assert t_interval([0.0, 0.0]) == (0.0, 0.0, 0.0)
    assert t_interval([1.0, 1.0 + 1e-9])[1] != t_interval([1.0, 1.0 + 1e-9])[2]  # real spread


def test_the_same_difference_on_every_seed_is_flagged_zero_width_not_claimed() -> None:
    """One more job processed twice at once on each of three seeds of 30 jobs: the differences
    are 33.33333333333333, 33.333333333333336 and 33.333333333333336 (float rounding of k ×
    1000 / 30), so the interval was a sliver that "excluded zero" and the ablation printed
    ``twice`` where every seed gave the same difference: ``twice (0-width)``."""
    chain = [count * 1000.0 / 30 for count in (2, 1, 3)]
    hardened = [count * 1000.0 / 30 for count in (1, 0, 2)]
    pair = paired_difference(chain, hardened)
    assert pair["ci"][0] == pair["ci"][1]
    row = {"vs_hardened": {"overlapping_per_1000": pair["diff"],
                           "overlapping_per_1000_ci": pair["ci"],
                           "overlapping_per_1000_n": pair["n"]}}
    assert _excludes_zero("vs_hardened")(row) == "twice (0-width)"


def test_abbreviated_placement_options_are_left_out_of_the_recorded_command() -> None:
    """argparse accepts ``--work 2``, ``--exec dask``, ``--ou DIR``: they were kept in
    sweep.json's and research.json's command, so one sweep gave different bytes by executor."""
    command = ("python -m sim sweep --set jobs=6 --work 2 --exec dask --ou out --qui --prog "
               "--grid lie_rate=0,0.1 --workers=3 --executor=local --out=x")
    assert normalised(command) == "python -m sim sweep --set jobs=6 --grid lie_rate=0,0.1"
    # Not an abbreviation of a placement option: kept.
    assert normalised("python -m sim research --seeds 2 --set x=--w") == (
        "python -m sim research --seeds 2 --set x=--w")


def test_realised_double_counts_the_offers_the_world_made() -> None:
    """With one encoder no second encoder can ever poll within G, so the world makes no double
    hand-out, and ``realised_double`` is 0 of the 6 planned. It counted every planned one (the
    world recorded an offer when it planned it), so realised equalled planned in every
    built-in scenario while its definition (``--help``, the CSV and JSON) said "another
    encoder polled within G"."""
    scenario = apply_overrides(load_scenario("default"),
                               {"encoders": 1, "jobs": 6, "lie_rate": 1.0})
    metrics = run_once(scenario, "trust-gateway", 1).metrics
    assert metrics.planned_double == 6
    assert metrics.double_assigned == 0 and metrics.overlapping_jobs == 0
    assert metrics.realised_double == 0  # no offer could be made
    many = run_once(apply_overrides(scenario, {"encoders": 20}), "trust-gateway", 1).metrics
    # Made when an idle encoder polls within G: most, not all, of the six.
    assert 0 < many.realised_double < many.planned_double
    assert "polled within G" in COLUMNS["realised_double"]


def test_a_held_out_scenario_named_like_the_ablation_one_is_refused(tmp_path: Path) -> None:
    """A variant of ablation.toml saved as other/ablation.toml is named ``ablation``:
    research.json's ``scenarios`` kept the built-in ablation's parameters under that name, the
    held-out's were nowhere, and its rows read as the ablation scenario's."""
    source = Path("sim/scenarios/ablation.toml").read_text()
    assert "lie_rate = 0.4" in source
    variant = tmp_path / "other" / "ablation.toml"
    variant.parent.mkdir()
    variant.write_text(source.replace("lie_rate = 0.4", "lie_rate = 0.05", 1))
    out, err = io.StringIO(), io.StringIO()
    code = main(["research", "--set", "encoders=4", "--set", "jobs=6", "--seeds", "1",
                 "--lie-rates", "0", "--lag-means", "0", "--workers", "1",
                 "--held-out", str(variant), "--out", str(tmp_path / "x")],
                stdout=out, stderr=err)
    assert code == 2 and out.getvalue() == "" and err.getvalue().count("\n") == 1
    assert "--held-out" in err.getvalue() and "'ablation'" in err.getvalue()
    assert not (tmp_path / "x").exists()


def test_a_scenario_with_timing_problems_is_not_reported_inside_the_model(tmp_path: Path
                                                                          ) -> None:
    """T = 20 s leaves the hardened chain a lease budget of 12 s: three timing problems, listed
    as "why the scenario is outside the timing model", beside ``"inside_model": true`` and a
    headline "inside the timing model"."""
    report = tmp_path / "run.json"
    out, err = io.StringIO(), io.StringIO()
    code = main(["run", "--set", "encoders=4", "--set", "jobs=4", "--set",
                 "reassign_timeout=20", "--chain", "hardened", "--json", str(report)],
                stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    data = json.loads(report.read_text())
    assert data["timing_problems"] and data["inside_model"] is False
    assert "OUTSIDE the timing model" in out.getvalue().splitlines()[0]
    assert "warning: " in out.getvalue()

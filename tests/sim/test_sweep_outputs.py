"""``python -m sim sweep``'s folder says what this sweep ran, and nothing else.

Found by an adversarial review of the operator tooling: ``--grid encoders=2.0,3`` ran 2
encoders but wrote ``2.0`` into sweep.csv, sweep.json, the plots and the replay commands (other
bytes than ``encoders=2,3`` for the same runs); a sweep without ``hardened`` into a folder of an
earlier sweep left that sweep's ``ablation.png`` beside the new sweep.csv.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from sim.__main__ import main

SMALL = ["sweep", "--set", "jobs=3", "--seeds", "1", "--workers", "1"]


def _sweep(*argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert main([*SMALL, *argv], stdout=out, stderr=err) == 0, err.getvalue()
    return out.getvalue()


def test_a_grid_value_is_recorded_as_the_scenario_holds_it(tmp_path: Path) -> None:
    _sweep("--chain", "hardened", "--grid", "encoders=2.0,3", "--out", str(tmp_path / "a"),
           "--quiet")
    _sweep("--chain", "hardened", "--grid", "encoders=2,3", "--out", str(tmp_path / "b"),
           "--quiet")
    csv_a, csv_b = ((tmp_path / d / "sweep.csv").read_bytes() for d in "ab")
    assert csv_a == csv_b
    a, b = (json.loads((tmp_path / d / "sweep.json").read_text()) for d in "ab")
    assert a["grid"] == b["grid"] == {"encoders": [2, 3]}
    assert a["points"] == b["points"]
    assert "--set encoders=2 " in (tmp_path / "a" / "sweep.csv").read_text()


def test_an_earlier_sweeps_ablation_plot_is_removed_and_said(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    _sweep("--set", "encoders=2", "--chain", "hardened", "--out", str(out_dir), "--quiet")
    assert (out_dir / "ablation.png").is_file()
    said = _sweep("--set", "encoders=2", "--chain", "documented", "--out", str(out_dir))
    assert not (out_dir / "ablation.png").exists()
    assert f"removed {out_dir / 'ablation.png'}: an earlier sweep's" in said
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "duplicates.png", "race_prevention.png", "sweep.csv", "sweep.json", "wasted.png"]

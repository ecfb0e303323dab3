"""A live run's CSV columns and JSON keys are defined too (sim/_columns.py, ``live --help``)."""

from __future__ import annotations

import csv
import io
import json

from sim.__main__ import main
from sim._columns import COLUMNS, undefined
from tests.sim.test_columns import keys


def test_every_live_csv_column_and_json_key_is_defined(tmp_path, capsys):
    csv_path, json_path = tmp_path / "l.csv", tmp_path / "l.json"
    out, err = io.StringIO(), io.StringIO()
    code = main(["live", "--chain", "hardened", "--set", "jobs=4", "--set", "encoders=2",
                 "--csv", str(csv_path), "--json", str(json_path), "--quiet"],
                stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    with csv_path.open(newline="") as stream:
        header = next(csv.reader(stream))
    assert "wall_s" in header and "loss_detection_s_p50" in header
    assert undefined(header) == []
    report = json.loads(json_path.read_text())
    names = keys(report) + keys(list(report["chains"].values()))
    assert "live.verifications" in names
    assert undefined(names) == []
    assert main(["live", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert [name for name in COLUMNS if f"{name}:" not in text] == []

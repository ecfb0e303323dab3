"""``python -m sim replay``'s outputs are the files it names, and bad ones are refused in one line.

Found by an adversarial review of the operator tooling: ``--png timeline`` wrote
``timeline.png`` and reported ``wrote timeline``; ``--png timeline.out`` (or ``.svg``, ``.jpg``)
ended, after the run, with a matplotlib traceback and exit 1; ``--png P --history P`` drew the
timeline over the history and reported both written; a tape holding an integer beyond any float
was a traceback.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from sim.__main__ import main

SMALL = ["replay", "--set", "encoders=2", "--set", "jobs=3"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _replay(*extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main([*SMALL, *extra], stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", ["timeline", "timeline.out", "timeline.svg", "timeline.jpg"])
def test_the_timeline_is_a_png_at_exactly_the_path_given(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    status, out, err = _replay("--png", str(path))
    assert (status, err) == (0, "")
    assert f"wrote {path}\n" in out
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no "timeline.png" beside it


def test_png_and_history_on_one_file_are_refused_before_the_run(tmp_path: Path) -> None:
    status, out, err = _replay("--png", str(tmp_path / "run.out"),
                               "--history", str(tmp_path / "." / "run.out"))
    assert status == 2 and out == ""
    assert err.count("\n") == 1
    assert "--png and --history are the same file" in err
    assert not (tmp_path / "run.out").exists()


@pytest.mark.parametrize("flag", ["--png", "--history"])
def test_an_output_that_is_a_folder_is_refused(tmp_path: Path, flag: str) -> None:
    status, out, err = _replay(flag, str(tmp_path))
    assert status == 2 and out == ""
    assert err == f"python -m sim replay: error: {flag} {tmp_path}: is a folder; give the path " \
                  "of a file\n"
    assert not tmp_path.with_suffix(".png").exists()  # matplotlib's sibling "folder.png"


def test_a_tape_value_beyond_any_float_is_a_usage_error(tmp_path: Path) -> None:
    tape = tmp_path / "tape.json"
    tape.write_text(json.dumps({"tape": [10 ** 400], "seed": None}))
    status, out, err = _replay("--tape", str(tape))
    assert status == 2 and out == ""
    assert err.startswith(f"python -m sim replay: error: --tape {tape}: ")
    assert err.count("\n") == 1

"""``--executor dask`` without Dask installed is a usage error naming the extra, not a traceback.

README, "The simulator": Dask sweeps need ``pip install 'spk-ownership[dask]'``; the main
job's set-up (``.[sim]``) does not install it. ``sim/_executors.py`` has the message, but the
import that failed first was outside it, so a fresh ``.[sim]`` install printed a
``ModuleNotFoundError`` traceback and exited 1 (reader review of the README, 2026-12-05).
"""

from __future__ import annotations

import io
import sys

import pytest

from sim.__main__ import main


@pytest.mark.parametrize("command", [
    ["sweep", "--grid", "lie_rate=0,0.1", "--chain", "hardened"],
    ["research", "--chain", "hardened", "--no-ablation"],
])
@pytest.mark.parametrize("executor", ["dask", "dask://127.0.0.1:1"])
def test_dask_executor_without_dask_is_a_usage_error(command, executor, tmp_path, monkeypatch):
    # None in sys.modules makes every import of the module fail, as if it were not installed.
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    monkeypatch.setitem(sys.modules, "distributed", None)
    out, err = io.StringIO(), io.StringIO()
    status = main([*command, "--seeds", "1", "--set", "jobs=2", "--set", "encoders=1",
                   "--executor", executor, "--out", str(tmp_path / "out"), "--quiet"],
                  stdout=out, stderr=err)
    assert status == 2
    assert "pip install 'spk-ownership[dask]'" in err.getvalue()
    assert not (tmp_path / "out").exists()  # refused before any run

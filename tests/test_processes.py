"""The process probe the command tests poll with: a process that ends while /proc is read has
stopped, not failed the test (CI, session 45: ``ProcessLookupError`` from a ``status`` file opened
just before its process was reaped)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.processes import running


def test_a_process_gone_while_its_status_is_read_has_stopped(monkeypatch):
    def reaped_meanwhile(self, *args, **kwargs):
        raise ProcessLookupError(3, "No such process")

    monkeypatch.setattr(Path, "read_text", reaped_meanwhile)
    assert running(os.getpid()) is False


def test_a_running_process_runs_and_a_missing_one_does_not():
    assert running(os.getpid())
    assert not running(2**22 + 1)  # above the kernel's pid_max ceiling: never a process


def test_other_errors_are_not_taken_for_a_stop(monkeypatch):
    def refused(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", refused)
    with pytest.raises(PermissionError):
        running(os.getpid())

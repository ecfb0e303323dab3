"""``--help`` states the defaults the commands use (README, "Live emulation over real HTTP")."""

from __future__ import annotations

import re

from sim.__main__ import main
from sim.live._cli import LIVE_CHAINS


def _help(capsys, *argv: str) -> str:
    assert main([*argv, "--help"]) == 0
    return re.sub(r"\s+", " ", capsys.readouterr().out)


def test_live_help_names_the_chains_live_runs_without_chain(capsys):
    # `sim live` without --chain runs the three headline chains, not every built-in chain
    # (its --help said "every built-in chain": a reader review of the README, 2026-12-05).
    text = _help(capsys, "live")
    assert "default: every built-in chain" not in text
    assert f"default: {', '.join(LIVE_CHAINS)}" in text


def test_run_help_still_says_every_built_in_chain(capsys):
    assert "default: every built-in chain" in _help(capsys, "run")

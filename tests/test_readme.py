"""The README's two set-up commands are the contract with users and with CI: keep them honest."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    found = {}
    for label in ("Main job", "Tests"):
        match = re.search(rf"\*\*{label}\*\*.*?```bash\n(.+?)\n```", text, re.S)
        assert match, f"README has no {label} command"
        found[label] = match.group(1).strip()
    return found


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()["Tests"] in ci.splitlines()


def test_main_job_runs_the_simulator_and_tests_install_the_test_extra():
    commands = readme_commands()
    assert commands["Main job"].endswith("python -m sim run")
    assert "'.[test]'" in commands["Tests"] and commands["Tests"].endswith("-m pytest -n auto")

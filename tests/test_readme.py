"""The README's two set-up commands are the contract with users and with CI: keep them honest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert "'.[test]'" in commands["Tests"] and commands["Tests"].endswith("-m pytest")


def readme_encoder_example() -> str:
    """The Python block of "Using the verifier in an encoder", as a user would copy it."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"## Using the verifier in an encoder\n.*?```python\n(.+?)\n```", text,
                      re.S)
    assert match, "README has no encoder example"
    return match.group(1)


@pytest.mark.slow
def test_the_readme_encoder_example_processes_every_job_and_stops_on_sigterm(
        tmp_path: Path) -> None:
    """Copied as is and run against the emulated services (``sim serve -- COMMAND``, which
    sets the environment the example's ``Settings.from_env()`` reads, and stops the command
    with SIGTERM once every job is done): each job is processed once, the signal stops the
    loop with nothing held, and its clients are closed (an unclosed socket's
    ``ResourceWarning`` is printed, not raised, even under ``-W error``)."""
    example = tmp_path / "encoder.py"
    example.write_text(readme_encoder_example())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GATEWAY_", "ENCODER_", "VERIFIER_", "MONGODB_", "DATABASE_"))}
    result = subprocess.run(  # noqa: S603 (our own interpreter, fixed arguments)
        [sys.executable, "-m", "sim", "serve", "--jobs", "3", "--set", "lie_rate=0",
         "--", sys.executable, "-W", "error", str(example)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "# served: 3 of 3 jobs done; encoder exited with status 0" in result.stdout
    assert "Counter({'processed': 3})" in result.stdout, result.stdout[-2000:]
    output = result.stdout + result.stderr
    assert "0 job(s) to give back" in output
    assert "ResourceWarning" not in output, output[-2000:]  # its clients are closed

"""``python -m verifier check --help`` names its arguments as README's synopsis does:
``check JOB_ID --did did:key:z6Mk... [--base-url URL] [--timeout S] [--json]`` (it showed
``BASE_URL`` and ``TIMEOUT``: a reader review of the README, 2026-12-05)."""

from __future__ import annotations

import re

from verifier._cli import main


def test_check_usage_names_url_and_seconds_as_the_readme_does(capsys):
    assert main(["check", "--help"]) == 0
    usage = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert "[--base-url URL]" in usage
    assert "[--timeout S]" in usage

"""Stuck inputs (``stuck_rate``): a job's download hangs at the same point in every attempt,
so its progress values repeat across attempts (what the no-progress clock must survive,
verifier/_progress.py), and the hang ends when the faults stop."""

from __future__ import annotations

from typing import Any

import pytest

from sim import Scenario, run_once
from verifier.protocol import Progressed

STUCK = Scenario(encoders=2, jobs=4, stuck_rate=1.0, download_mean_s=20.0, encode_mean_s=30.0,
                 upload_mean_s=5.0, progress_step_s=5.0, reassign_timeout=60.0,
                 progress_timeout=120.0, faults_until=600.0, max_time=3 * 3600.0)


def _downloads(monkeypatch: pytest.MonkeyPatch, scenario: Scenario, chain: str = "hardened"
               ) -> tuple[Any, dict[str, list[list[tuple[float, float]]]]]:
    """One run, and per job the download reports of each attempt: (time after the start,
    download_pct)."""
    import sim._encoder as encoder_module

    seen: dict[str, list[list[tuple[float, float]]]] = {}
    original = encoder_module.Encoder._start

    def start(self: Any, job_id: str, *slot: Any) -> Any:
        answer = original(self, job_id, *slot)
        seen.setdefault(job_id, []).append([
            (round(t - self.env.now, 6), event.download_pct) for t, event in self.work
            if isinstance(event, Progressed) and event.pct == 0.0])
        return answer

    monkeypatch.setattr(encoder_module.Encoder, "_start", start)
    return run_once(scenario, chain, 3), seen


def test_a_stuck_input_reports_the_same_value_in_every_attempt(monkeypatch) -> None:
    result, seen = _downloads(monkeypatch, STUCK)
    retried = {job: attempts for job, attempts in seen.items() if len(attempts) >= 2}
    assert retried, "no job was started twice: the hang never cost an attempt"
    for attempts in seen.values():
        # Each attempt reports a stuck value; the one every attempt shares is the last value
        # reported before the hang (the hang ends only when the faults stop).
        shared = set.intersection(*({pct for _, pct in a} for a in attempts))
        assert shared, attempts
    for name in ("S1", "S2", "S3"):
        assert result.checks[name].ok, result.checks[name].examples


def test_the_hang_ends_when_the_faults_stop(monkeypatch) -> None:
    """No attempt gets past the stuck point before the faults stop; after, every job is
    committed (L1, completion)."""
    result, seen = _downloads(monkeypatch, STUCK)
    assert result.checks["L1"].ok, result.checks["L1"].examples
    commits = [r[0] for r in result.history.records if r[3] == "commit"]
    assert len(commits) >= len(seen) and min(commits) >= STUCK.faults_until

"""``sim live --dashboard``: the page renders in a real headless browser, and says what the JSON
report says.

Debian's ``chromium`` renders the page (its inline script builds every figure from the embedded
data), ``--dump-dom`` gives the document after the script ran, and every figure in it is
compared with the run's ``--json`` report. ``.ci/run`` installs ``chromium`` when missing; a
machine without it skips this test, except under CI, where it fails.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from decimal import ROUND_HALF_UP, Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from sim.live._dashboard import verification_series
from verifier import Tier

pytestmark = pytest.mark.slow


class _Figures(HTMLParser):
    """``data-figure`` elements and their text; the chart lines; the rendered flag."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, str] = {}
        self.lines: list[dict[str, str]] = []
        self.rendered = False
        self._open: str | None = None
        self._chart = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "data-figure" in a:
            self._open = a["data-figure"]
            self.figures[self._open] = ""
        if tag == "svg":
            self._chart = a.get("data-chart", "")
        if tag == "polyline":
            self.lines.append({**a, "chart": self._chart})
        if tag == "body" and a.get("data-rendered") == "yes":
            self.rendered = True

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.figures[self._open] += data

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def _fixed(x: float, places: int = 1) -> str:
    """JavaScript's ``x.toFixed(places)``: the exact binary value, halves rounded up (Python's
    format rounds an exact half to even: 81.25 would be 81.2 here and 81.3 on the page)."""
    quantum = Decimal(1).scaleb(-places)
    return str(Decimal(x).quantize(quantum, rounding=ROUND_HALF_UP))


def _polyline(points: list[list[float]], duration: float, w: int = 560, h: int = 180) -> list[str]:
    """The chart's points as the page must draw them: x by time, y by the answered share."""
    return [f"{_fixed(p[0] / duration * (w - 20) + 10)},{_fixed((1 - p[1] / p[2]) * (h - 20) + 10)}"
            for p in points if p[2] > 0]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    return found


def _dom(page: Path) -> str:
    """The page as headless Chromium rendered it (its scripts run)."""
    return subprocess.run(  # noqa: S603 (the browser, fixed arguments, a local file)
        [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
         "--disable-dev-shm-usage", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True).stdout


def _rendered(page: Path) -> _Figures:
    parsed = _Figures()
    parsed.feed(_dom(page))
    return parsed


def test_the_dashboard_renders_in_chromium_with_the_figures_of_the_json_report(tmp_path):
    from sim._cli import main

    report_path, page = tmp_path / "live.json", tmp_path / "dashboard.html"
    code = main(["live", "--chain", "hardened", "--chain", "documented", "--encoders", "6",
                 "--jobs", "10", "--lie-rate", "1", "--set", "monitor_error_rate=0.2",
                 "--set", "max_time=15", "--json", str(report_path), "--dashboard", str(page)],
                stdout=io.StringIO(), stderr=io.StringIO())
    assert code == 0
    report = json.loads(report_path.read_text())
    shown = _rendered(page)
    assert shown.rendered, "the page's script did not run"
    duration = max(p[0] for entry in report["chains"].values()
                   for series in entry["dashboard"]["verification_series"].values()
                   for p in series)
    some_failed = False
    for chain in ("hardened", "documented"):
        d: dict[str, Any] = report["chains"][chain]["dashboard"]
        (run,) = report["chains"][chain]["runs"]
        for key in ("conflicts_prevented", "work_cancelled", "lease_expiries"):
            assert shown.figures[f"{chain}.{key}"] == str(d[key])
        # Every read is timed (run["live"]["verifications"]); the pre-claim checks among them
        # are not verifications, on the page as in the metrics
        # (test_the_page_counts_the_verifications_the_metrics_count).
        assert 0 < sum(s["reads"] for s in d["verification_success_by_tier"].values()) <= \
            run["live"]["verifications"]
        for tier, s in d["verification_success_by_tier"].items():
            assert shown.figures[f"{chain}.reads.{tier}"] == str(s["reads"])
            assert shown.figures[f"{chain}.success.{tier}"] == _fixed(100 * s["rate"]) + "%"
            some_failed |= s["rate"] < 1
            latency = run["live"]["verify_latency_by_tier_ms"][tier]
            for q in ("p50", "p99"):
                assert d["latency_ms"][tier][q] == latency[q]
                assert shown.figures[f"{chain}.{q}.{tier}"] == _fixed(latency[q]) + " ms"
        lines = {line["data-tier"]: line for line in shown.lines if line["chart"] == chain}
        assert set(lines) == set(d["verification_series"])
        for tier, points in d["verification_series"].items():
            assert lines[tier]["points"].split() == _polyline(points, duration)
    # Not a page of zeros and 100%s: the run had monitor errors, and the page shows them.
    assert some_failed
    assert report["chains"]["hardened"]["dashboard"]["conflicts_prevented"] > 0


def test_verification_series_counts_answered_and_unanswered_reads_per_bucket():
    records = [
        (0.5, "e1", "j1", "verify", "invoke", (Tier.MONITOR, "verify")),
        (0.6, "e1", "j1", "verify", "ok", (Tier.MONITOR, "e1", "assigned")),
        (1.5, "e1", "j1", "verify", "fail", Tier.MONITOR),
        (1.6, "e2", "j2", "verify", "invoke", (Tier.DATABASE, "recheck")),
        (1.7, "e2", "j2", "verify", "ok", (Tier.DATABASE, None, "queued")),
        (1.9, "e2", "j2", "claim", "ok", Tier.DATABASE),
    ]
    series = verification_series(records, duration=2.0, buckets=2)
    assert series == {"database": [[1.0, 0, 0], [2.0, 1, 1]],
                      "monitor": [[1.0, 1, 1], [2.0, 0, 1]]}


def test_pre_claim_checks_are_not_verifications_on_the_page_as_in_the_metrics():
    """``verifier_verifications_total`` leaves the pre-claim check out; so does the page,
    or the two answer rates an operator compares would differ (operator review, session 15)."""
    records = [
        (0.1, "e1", "j1", "verify", "invoke", (Tier.MONITOR, "pre-claim")),
        (0.2, "e1", "j1", "verify", "fail", Tier.MONITOR),
        (0.5, "e1", "j1", "verify", "invoke", (Tier.MONITOR, "verify")),
        (0.6, "e1", "j1", "verify", "ok", (Tier.MONITOR, "e1", "assigned")),
        (0.7, "e2", "j1", "verify", "invoke", (Tier.MONITOR, "pre-claim")),
        (0.8, "e2", "j1", "verify", "ok", (Tier.MONITOR, "e1", "assigned")),
    ]
    assert verification_series(records, duration=1.0, buckets=1) == {
        "monitor": [[1.0, 1, 1]]}


def test_the_page_counts_the_verifications_the_metrics_count(monkeypatch):
    """The page's reads and answered reads per tier are ``verifier_verifications_total``'s, from
    a real live run: the live wrapper recorded every read as a ``verify`` one, so the page
    counted the pre-claim checks the metrics leave out (review: 7 database reads on the page
    against 5 verifications, and a monitor answer rate of 87.5% against Grafana's 91.7%)."""
    import asyncio

    import sim.live._encoders as encoders
    from sim._scenario_files import load_scenario
    from sim.live import run_live
    from verifier import GuardMetrics

    made: list[GuardMetrics] = []

    class Recorded(GuardMetrics):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(encoders, "GuardMetrics", Recorded)
    scenario = load_scenario("live").replace(encoders=4, jobs=6, monitor_error_rate=0.2,
                                              max_time=30)
    result = asyncio.run(run_live(scenario, "hardened", 1))
    (metrics,) = made
    shown = result.dashboard["verification_success_by_tier"]
    assert shown
    for tier, s in shown.items():
        def count(*verdicts: str, tier: str = tier) -> int:
            return int(sum(metrics.value("verifier_verifications_total", tier=tier, purpose=p,
                                         verdict=v)
                           for p in ("verify", "recheck") for v in verdicts))
        assert s["reads"] == count("mine", "other", "done", "unknown", "failed"), tier
        assert s["answered"] == count("mine", "other", "done", "unknown"), tier
    # The pre-claim checks were read all the same (timed, and counted as requests).
    assert result.verifications > sum(s["reads"] for s in shown.values())


def test_a_busy_metrics_port_is_a_usage_error_before_the_run(tmp_path):
    """``sim live --metrics-port`` on a port in use ended with a traceback once the emulator was
    up (operator review, session 15); ``verifier run`` and ``sim serve`` already refused it."""
    import io
    import socket

    from sim.__main__ import main

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        out, err = io.StringIO(), io.StringIO()
        code = main(["live", "--chain", "hardened", "--set", "jobs=2", "--set", "encoders=2",
                     "--metrics-port", str(port), "--json", str(tmp_path / "r.json")],
                    stdout=out, stderr=err)
    assert code == 2 and out.getvalue() == ""
    said = err.getvalue()
    assert said.count("\n") == 1 and f"--metrics-port: cannot listen on 127.0.0.1:{port}" in said
    assert not (tmp_path / "r.json").exists()


class _Legend(HTMLParser):
    """Per chart, each line's tier and stroke; per card, each table swatch's tier and colour."""

    def __init__(self) -> None:
        super().__init__()
        self.strokes: dict[str, dict[str, str]] = {}
        self.swatches: list[tuple[str, str]] = []
        self.figures: dict[str, str] = {}
        self._chart = ""
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "svg":
            self._chart = a.get("data-chart", "")
        if tag == "polyline":
            self.strokes.setdefault(self._chart, {})[a["data-tier"]] = a["stroke"]
        if "data-swatch" in a:
            color = a.get("style", "").partition("color:")[2].strip(" ;")
            self.swatches.append((a["data-swatch"], color))
        if "data-figure" in a:
            self._open = a["data-figure"]
            self.figures[self._open] = ""

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.figures[self._open] += data

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def _rgb(color: str) -> str:
    """``#1f77b4`` as Chromium serialises a style colour: ``rgb(31, 119, 180)``."""
    if color.startswith("#"):
        return "rgb({}, {}, {})".format(*(int(color[i:i + 2], 16) for i in (1, 3, 5)))
    return color


def test_every_line_has_its_tier_colour_beside_the_tier_in_the_table(tmp_path):
    """The chart drew a line per tier with nothing saying which tier a line was, and coloured
    it by its position, so one tier changed colour from card to card (adversarial review of the
    operator tooling). A chain that reads no tier said nothing at all."""
    from sim.live._dashboard import dashboard_section, render_dashboard

    def section(tiers: list[str]) -> dict[str, Any]:
        series = {t: [[1.0, 1.0, 2.0], [2.0, 2.0, 2.0]] for t in tiers}
        latency = {t: {"p50": 1.0, "p99": 2.0} for t in tiers}
        return dashboard_section(series, latency, {"conflicts_prevented": 0,
                                                   "work_cancelled": 0, "lease_expiries": 0})

    report = {"scenario": {"name": "live"}, "rerun": "python -m sim live",
              "chains": {"hardened": {"dashboard": section(["database", "monitor"])},
                         "documented": {"dashboard": section(["monitor"])},
                         "trust-gateway": {"dashboard": section([])}}}
    page = tmp_path / "dashboard.html"
    page.write_text(render_dashboard(report), encoding="utf-8")
    shown = _Legend()
    shown.feed(_dom(page))
    assert sorted(tier for tier, _ in shown.swatches) == ["database", "monitor", "monitor"]
    legend: dict[str, str] = {}
    for tier, color in shown.swatches:
        assert legend.setdefault(tier, color) == color, f"{tier} has two colours"
    assert legend["database"] != legend["monitor"]
    for chart in ("hardened", "documented"):
        for tier, stroke in shown.strokes[chart].items():
            assert _rgb(stroke) == legend[tier], (chart, tier)
    assert shown.figures["trust-gateway.none"] == "no verification in this run"


def test_no_value_can_end_or_swallow_the_pages_script(tmp_path):
    """The embedded JSON escaped "</" only: a value with "<!--<script>" (the HTML parser's
    double-escaped script state) swallowed the page's own script, and nothing was drawn
    (review). Chains are validated names today; ``render_dashboard`` takes any report."""
    from sim.live._dashboard import dashboard_section, render_dashboard

    section = dashboard_section({"monitor": [[1.0, 1.0, 2.0]]},
                                {"monitor": {"p50": 1.0, "p99": 2.0}},
                                {"conflicts_prevented": 3, "work_cancelled": 0,
                                 "lease_expiries": 0})
    chain = "<!--<script>&</script>"
    page = tmp_path / "page.html"
    page.write_text(render_dashboard({"chains": {chain: {"dashboard": section}},
                                      "scenario": {"name": "<b>x</b>"}}))
    shown = _rendered(page)
    assert shown.rendered
    assert shown.figures[f"{chain}.conflicts_prevented"] == "3"
    assert shown.figures[f"{chain}.success.monitor"] == "50.0%"

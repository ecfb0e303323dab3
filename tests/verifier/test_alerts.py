"""The Prometheus alert rules operators load (``dashboards/alerts-verifier.yml``).

Three kinds of check, from the cheapest to the one that matters most:

* the rules name only metrics, labels and label values that :class:`verifier.GuardMetrics`
  exports (the dashboard's checker, ``test_dashboards.check_queries``), and every label an
  annotation prints survives the rule's aggregation;
* Prometheus's own ``promtool`` loads them (``check rules``) and runs their unit tests
  (``dashboards/alerts-verifier.test.yml``: when each alert fires, and when it must not),
  whose input series are, again, ones GuardMetrics exports;
* series recorded from a real guard and loop (the production code, under virtual time) in
  which the monitor goes down are fed to ``promtool``: the tier alert fires on what the
  verifier really counts, and only then.

``promtool`` is Debian's (package ``prometheus``); ``.ci/run`` unpacks it when missing (no
daemon is installed or started). Without it these tests skip, except under ``CI=true``,
where they fail.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from verifier import (
    EncoderLoop,
    GatewayMonitorJob,
    GuardMetrics,
    LoopPolicy,
    OwnershipGuard,
    Policy,
    TierUnavailable,
    TimingModel,
    parse_job,
)
from verifier._metrics import CANCELLATION_CODES
from verifier.testing import InMemoryJobs, virtual_time

from .test_dashboards import LABEL_VALUES, SUFFIXES, TARGET_LABELS, check_queries
from .test_guard import A, community, encode

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
RULES = DASHBOARDS / "alerts-verifier.yml"
UNIT_TESTS = DASHBOARDS / "alerts-verifier.test.yml"
SEVERITIES = {"critical", "warning", "info"}
_SERIES = re.compile(r"^([a-z_]+)\{(.*)\}$")
_LABEL = re.compile(r'\s*([a-z_]+)\s*=\s*"([^"]*)"\s*')
_BY = re.compile(r"\bby\s*\(([^)]*)\)")


def _promtool() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("promtool is missing: .ci/run unpacks Debian's prometheus package for it")
    pytest.skip("promtool not installed (Debian package prometheus; .ci/run unpacks it)")


def _run_promtool(*args: str, cwd: Path) -> str:
    done = subprocess.run(  # noqa: S603 (promtool, fixed arguments, files of ours)
        [_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
        check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def _check_series(series: str) -> None:
    """``series`` (``name{label="value", ...}``) is one GuardMetrics exports, with label
    values it produces: a unit test over made-up series proves nothing about the verifier."""
    catalogue = GuardMetrics().catalogue()
    match = _SERIES.match(series)
    assert match, series
    name, body = match.groups()
    metric = next((m for m, (kind, _) in catalogue.items()
                   for suffix in SUFFIXES[kind] if m + suffix == name), None)
    assert metric is not None, f"{name} is not exported by GuardMetrics"
    labels = dict(m.groups() for m in map(_LABEL.fullmatch, body.split(",")) if m)
    assert len(labels) == len(body.split(",")), f"a label this check cannot read: {series}"
    assert set(labels) - TARGET_LABELS == set(catalogue[metric][1]), series
    for label, value in labels.items():
        if label in LABEL_VALUES:
            assert value in LABEL_VALUES[label], f"{label} never is {value!r}: {series}"


def test_every_rule_queries_metrics_labels_and_values_that_exist() -> None:
    rules = _rules()
    used = check_queries([rule["expr"] for rule in rules])
    assert {"verifier_tier_requests_total", "verifier_lease_expiries_total",
            "verifier_jobs_total"} <= used
    for rule in rules:
        assert re.fullmatch(r"Verifier[A-Za-z]+", rule["alert"])
        assert rule["labels"]["severity"] in SEVERITIES
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        # Per encoder: a fleet summed as one hides the failing node.
        kept = [{x.strip() for x in g.split(",")} for g in _BY.findall(rule["expr"])]
        assert kept and all("instance" in k for k in kept), rule["alert"]
        printed = set(re.findall(r"\$labels\.([a-z_]+)", str(rule["annotations"])))
        assert printed <= set.intersection(*kept), f"{rule['alert']} prints a label it drops"
        # A cancellation code the verifier never records would keep an alert silent forever.
        for codes in re.findall(r'verifier_work_cancelled_total\{code=~"([^"]*)"', rule["expr"]):
            assert set(codes.split("|")) <= CANCELLATION_CODES


def test_the_checks_catch_a_rule_over_a_series_that_does_not_exist() -> None:
    """The checks have teeth: a typo in a metric, a label or a value fails them."""
    for broken in ('sum by (instance) (increase(verifier_lease_expiry_total[30m])) > 0',
                   'sum by (instance) (rate(verifier_polls_total{source="monitor"}[5m])) > 0',
                   'sum by (instance, code) (increase(verifier_jobs_total{cod="X"}[5m])) > 0'):
        with pytest.raises(AssertionError):
            check_queries([broken])
    for broken in ('verifier_polls_total{instance="e", source="monitor", result="failed"}',
                   'verifier_tier_requests_total{instance="e", tier="monitor", op="read"}',
                   'verifier_lease_expired_total{instance="e"}'):
        with pytest.raises(AssertionError):
            _check_series(broken)


def test_the_unit_tests_feed_only_series_the_verifier_exports() -> None:
    data = yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))
    series = [s["series"] for test in data["tests"] for s in test["input_series"]]
    assert len(series) >= 10
    for one in series:
        _check_series(one)
    tested = {case["alertname"] for test in data["tests"] for case in test["alert_rule_test"]
              if case["exp_alerts"]}
    assert tested == {rule["alert"] for rule in _rules()}, "every alert is seen to fire"


def test_promtool_loads_the_rules_and_their_unit_tests_pass() -> None:
    assert "SUCCESS: 7 rules found" in _run_promtool("check", "rules", RULES.name,
                                                     cwd=DASHBOARDS)
    assert "SUCCESS" in _run_promtool("test", "rules", UNIT_TESTS.name, cwd=DASHBOARDS)


# ---------------------------------------------------------------- a real run, recorded

TIMING = TimingModel(monitor_lag=5, write_delay=2, recheck_interval=10, reassign_timeout=60)
#: The run: healthy for OUTAGE_AT minutes, then the monitor refuses every read.
MINUTES, OUTAGE_AT = 40, 10


@virtual_time
async def _record_a_monitor_outage() -> list[dict[str, float]]:
    """One community encoder (monitor + gateway, hardened) running the production loop over
    jobs that take 30 s; its metrics sampled once a minute, as Prometheus would scrape them.
    From minute OUTAGE_AT the monitor refuses every read."""
    jobs = InMemoryJobs()
    for i in range(200):
        jobs.add(f"j{i:03d}")
    metrics = GuardMetrics()
    monitor, gateway = community(jobs, A)
    guard = OwnershipGuard(did=A, clients=[monitor, gateway], policy=Policy.hardened(TIMING),
                           metrics=metrics)
    down = False
    real_observe = monitor.observe

    async def observe(job_id: str) -> Any:
        if down:
            raise TierUnavailable("monitor", "connection refused")
        return await real_observe(job_id)

    monitor.observe = observe  # type: ignore[method-assign]

    async def offered() -> list[GatewayMonitorJob]:
        return [parse_job(d) for d in jobs.docs.values() if d["status"] == "queued"][:1]

    loop = EncoderLoop(guard, lambda job, offer: encode(30)(job), offers={"getjob": offered},
                       policy=LoopPolicy(sources=("getjob",), idle_s=10), metrics=metrics)
    runner = asyncio.create_task(loop.run())
    scrapes: list[dict[str, float]] = []
    for minute in range(MINUTES):
        down = minute >= OUTAGE_AT
        scrapes.append({_series(s.name, s.labels): s.value
                        for family in metrics.registry.collect() for s in family.samples
                        if not s.name.endswith("_created")})
        await asyncio.sleep(60)
    loop.stop()
    await runner
    return scrapes


def _series(name: str, labels: dict[str, str]) -> str:
    every = {"instance": "enc1:9464", "job": "verifier", **labels}
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(every.items())) + "}"


def test_a_real_monitor_outage_fires_the_tier_alert_and_nothing_else(tmp_path: Path) -> None:
    scrapes = _record_a_monitor_outage()
    names = sorted({name for scrape in scrapes for name in scrape})
    # Before the outage, reads succeed; after it, the monitor's fail (the run did both).
    failed = '_total{instance="enc1:9464", job="verifier", op="read", result="failed", '
    monitor_failed = next(n for n in names if failed in n and 'tier="monitor"' in n)
    assert scrapes[OUTAGE_AT][monitor_failed] == 0 < scrapes[-1][monitor_failed]
    input_series = [{"series": name,
                     "values": " ".join(_value(scrape.get(name)) for scrape in scrapes)}
                    for name in names]
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "name": "a monitor outage, recorded from the guard and the loop",
            "interval": "1m",
            "input_series": input_series,
            "alert_rule_test": [
                {"eval_time": f"{OUTAGE_AT - 1}m", "alertname": "VerifierTierReadsFailing",
                 "exp_alerts": []},
                {"eval_time": f"{MINUTES - 1}m", "alertname": "VerifierTierReadsFailing",
                 "exp_alerts": [{
                     "exp_labels": {"severity": "warning", "instance": "enc1:9464",
                                    "tier": "monitor"},
                     "exp_annotations": _annotations("VerifierTierReadsFailing", {
                         "instance": "enc1:9464", "tier": "monitor"}, "100%")}]},
                # An outage is the network's doing: no guard error, no offers failing.
                *({"eval_time": f"{MINUTES - 1}m", "alertname": name, "exp_alerts": []}
                  for name in ("VerifierGuardError", "VerifierOffersFailing")),
            ],
        }],
    }
    path = tmp_path / "recorded.test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    assert "SUCCESS" in _run_promtool("test", "rules", path.name, cwd=tmp_path)


def _value(value: float | None) -> str:
    return "_" if value is None else repr(float(value))


def _annotations(alert: str, labels: dict[str, str], value: str) -> dict[str, str]:
    """The rule's annotations as Prometheus renders them, for the two templates they use."""
    rule = next(r for r in _rules() if r["alert"] == alert)

    def render(text: str) -> str:
        text = re.sub(r"\{\{ \$value \| humanizePercentage \}\}", value, text)
        return re.sub(r"\{\{ \$labels\.([a-z_]+) \}\}", lambda m: labels[m.group(1)], text)

    return {key: render(text) for key, text in rule["annotations"].items()}

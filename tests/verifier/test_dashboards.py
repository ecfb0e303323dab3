"""The Grafana dashboard operators import: valid dashboard JSON, over metrics that exist.

No Grafana runs here, so the dashboard is checked against what Grafana needs to load it (the
fields of its dashboard model: uid, title, schemaVersion, panels with ids, types, positions and
targets) and against what the queries need to show anything: every metric an expression names
is one :class:`verifier.GuardMetrics` exports, with the suffixes its type allows, and every
label it groups or filters by is one of that metric's labels. A renamed metric or label fails
here, not silently on an operator's empty panel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from verifier import GuardMetrics, OutcomeKind, Tier
from verifier._loop import OFFER_SOURCES

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "grafana-verifier.json"
#: Panel types of Grafana's core panels that this dashboard may use.
PANEL_TYPES = {"timeseries", "stat", "gauge", "table", "bargauge", "text"}
#: Suffixes a series of each metric type may carry in PromQL.
SUFFIXES = {"counter": ("",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
_METRIC = re.compile(r"\b(verifier_[a-z_]+)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"\{([^}]*)\}")
_ONE_MATCH = re.compile(r'\s*([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*')
_ON = re.compile(r"\b(?:on|ignoring)\s*\(([^)]*)\)")
_QUANTILE = re.compile(r"histogram_quantile\(\s*[0-9.]+\s*,\s*sum\s+by\s*\(([^)]*)\)")
_LEGEND = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
#: The values each label can take (what GuardMetrics and the protocol produce): a matcher on
#: another value selects nothing, forever.
LABEL_VALUES: dict[str, set[str]] = {
    "tier": {t.value for t in Tier},
    "op": {"read", "batch", "claim", "heartbeat", "finish", "release"},
    "result": {"ok", "failed", "refused", "unknown", "offered", "empty"},
    "purpose": {"verify", "recheck"},
    "verdict": {"mine", "other", "done", "unknown", "failed"},
    "outcome": {k.value for k in OutcomeKind},
    "source": set(OFFER_SOURCES),
}


#: Labels Prometheus adds to every series it scrapes (the target's), not GuardMetrics'.
TARGET_LABELS = {"instance", "job"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_the_dashboard_has_the_fields_grafana_loads(dashboard: dict[str, Any]) -> None:
    assert isinstance(dashboard["uid"], str) and 0 < len(dashboard["uid"]) <= 40
    assert dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    assert dashboard["schemaVersion"] >= 36  # the panel model of Grafana 9 and later
    assert "id" not in dashboard or dashboard["id"] is None  # import assigns its own
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_TYPES and panel["title"]
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"} and grid["x"] + grid["w"] <= 24
        assert panel["datasource"]["uid"] == "${datasource}"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids))


def check_queries(exprs: list[str]) -> set[str]:
    """Fail on a PromQL expression over a metric, label or label value that GuardMetrics does
    not export (the Grafana dashboard's and the alert rules' alike); return the metrics used."""
    catalogue = GuardMetrics().catalogue()
    exported: dict[str, tuple[str, str]] = {}  # series name -> (metric, type)
    for name, (kind, _labels) in catalogue.items():
        for suffix in SUFFIXES[kind]:
            exported[name + suffix] = (name, kind)
    used: set[str] = set()
    for expr in exprs:
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        names = _METRIC.findall(expr)
        assert names, f"a query over no metric of the verifier: {expr}"
        labels: set[str] = {"le"} if any(n.endswith("_bucket") for n in names) else set()
        for name in names:
            assert name in exported, f"{name} is not exported by GuardMetrics ({expr})"
            used.add(exported[name][0])
            labels.update(catalogue[exported[name][0]][1])
        grouped = {x.strip() for g in _GROUPING.findall(expr) for x in g.split(",") if x.strip()}
        joined = {x.strip() for g in _ON.findall(expr) for x in g.split(",") if x.strip()}
        matchers = [_ONE_MATCH.fullmatch(m) for body in _MATCHER.findall(expr)
                    for m in body.split(",") if m.strip()]
        assert all(matchers), f"a label matcher this check cannot read in {expr}"
        matched = {m.group(1) for m in matchers if m}
        unknown = (grouped | joined | matched) - labels - TARGET_LABELS
        assert not unknown, f"unknown label(s) {sorted(unknown)} in {expr}"
        for m in matchers:
            assert m is not None
            label, op, value = m.groups()
            if label in LABEL_VALUES:
                values = value.split("|") if op in ("=~", "!~") else [value]
                assert set(values) <= LABEL_VALUES[label], f"{label} never is {value!r}: {expr}"
        for quantile_by in _QUANTILE.findall(expr):
            assert "le" in {x.strip() for x in quantile_by.split(",")}, \
                f"histogram_quantile needs `le` in its grouping: {expr}"
        for name in names:
            if exported[name][1] == "counter" or name.endswith("_bucket"):
                assert re.search(rf"(rate|increase)\(\s*{name}\b", expr), \
                    f"{name} is a counter: query its rate or increase, not its value ({expr})"
    return used


def test_every_query_names_metrics_and_labels_that_exist(dashboard: dict[str, Any]) -> None:
    used = check_queries(expressions(dashboard))
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            legend = set(_LEGEND.findall(target.get("legendFormat", "")))
            grouped = {x.strip() for g in _GROUPING.findall(target["expr"])
                       for x in g.split(",") if x.strip()}
            assert legend <= grouped, f"legend names {legend - grouped}: not in the result"
    # The headline figures of the specification's list are all on the dashboard.
    for needed in ("verifier_verifications_total", "verifier_conflicts_prevented_total",
                   "verifier_tier_request_seconds", "verifier_lease_expiries_total",
                   "verifier_settle_wait_seconds", "verifier_time_to_start_seconds"):
        assert needed in used


def test_every_query_follows_the_encoder_variable(dashboard: dict[str, Any]) -> None:
    """One encoder, or several, can be picked: a fleet summed as one hides the failing node
    (operator review, session 15). Every series a query selects is filtered on ``$instance``."""
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    instance = variables["instance"]
    assert instance["type"] == "query" and instance["includeAll"] and instance["multi"]
    assert instance["allValue"] == ".*"  # "All" must also match encoders not yet seen
    assert "label_values(verifier_" in instance["definition"]
    for expr in expressions(dashboard):
        selectors = re.findall(r"\b(verifier_[a-z_]+)(\{[^}]*\})?", expr)
        assert selectors
        for name, body in selectors:
            assert 'instance=~"$instance"' in body, f"{name} ignores the encoder: {expr}"


def test_the_checker_catches_a_renamed_metric_or_label(dashboard: dict[str, Any]) -> None:
    """The check has teeth: a dashboard naming a metric or a label that does not exist fails."""
    for broken in ("sum(rate(verifier_verification_total[5m]))",
                   "sum by (job_id) (rate(verifier_jobs_total[5m]))",
                   'rate(verifier_polls_total{sourced="aid"}[5m])',
                   'sum by (tier) (rate(verifier_verifications_total{verdict!="fialed"}[5m]))',
                   'sum by (tier) (rate(verifier_verifications_total{verdict=~"mine|yours"}[5m]))',
                   "histogram_quantile(0.9, sum by (tier) "
                   "(rate(verifier_tier_request_seconds_bucket[5m])))",
                   "sum by (tier) (verifier_verifications_total)",
                   "sum(rate(verifier_jobs_total[5m])) / on(job_id) "
                   "sum(rate(verifier_polls_total[5m]))"):
        bad = json.loads(json.dumps(dashboard))
        bad["panels"][0]["targets"][0]["expr"] = broken
        with pytest.raises(AssertionError):
            test_every_query_names_metrics_and_labels_that_exist(bad)
    bad = json.loads(json.dumps(dashboard))
    bad["panels"][0]["targets"][0]["legendFormat"] = "{{tiers}}"
    with pytest.raises(AssertionError):
        test_every_query_names_metrics_and_labels_that_exist(bad)

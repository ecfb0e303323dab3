"""``sim live --dashboard PATH``: a self-contained HTML page of a live run's verification figures.

The page shows, per chain:

* the share of ownership verifications each tier answered over the run, a line per tier (the
  verify and re-check reads, as ``verifier_verifications_total`` counts them: the pre-claim
  check is an optimisation, not a verification; a read abandoned at a deadline or at the end
  of the run counts as unanswered), and that share over the whole run;
* the jobs whose conflicts were prevented (skipped because another encoder held them), work
  cancelled and leases expired;
* each tier's read latency (p50, p99).

Each tier has one colour, the same in every card, shown beside its row of the table.

Every figure comes from the run's JSON report (the page embeds the report's ``dashboard``
section and draws it with a few lines of inline JavaScript, no network), so the page and
``--json`` cannot disagree; the browser test checks exactly that.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .._history import Record

__all__ = ["dashboard_section", "render_dashboard", "verification_series"]

#: Time buckets of the success-rate lines.
BUCKETS: Final = 30


def verification_series(records: Iterable[Record], duration: float,
                        buckets: int = BUCKETS) -> dict[str, list[list[float]]]:
    """Per tier, ``[bucket end (s), reads answered, reads]`` over ``buckets`` equal spans of
    the run, from the history's ``verify`` results (``ok``: answered, ``fail``: not) of the
    verify and re-check reads; the pre-claim checks are left out, as the guard's metrics
    leave them out of ``verifier_verifications_total`` (operator review, session 15: the page
    and Grafana disagreed). A process's reads of one job are sequential, so each result
    belongs to that process's last ``invoke`` for the job, whose value names the purpose."""
    width = max(duration, 1e-9) / buckets
    counts: dict[str, list[list[float]]] = {}
    purpose: dict[tuple[str, str | None], str] = {}
    for time, process, job, op, phase, value in records:
        if op != "verify":
            continue
        if phase == "invoke":
            purpose[(process, job)] = value[1]
            continue
        if phase not in ("ok", "fail") or purpose.get((process, job)) == "pre-claim":
            continue
        tier = str(value[0].value if phase == "ok" else value.value)
        series = counts.setdefault(
            tier, [[round((i + 1) * width, 3), 0.0, 0.0] for i in range(buckets)])
        slot = series[min(buckets - 1, max(0, int(time / width)))]
        slot[2] += 1
        if phase == "ok":
            slot[1] += 1
    return dict(sorted(counts.items()))


def dashboard_section(series: Mapping[str, list[list[float]]],
                      latency: Mapping[str, Mapping[str, Any]],
                      totals: Mapping[str, float]) -> dict[str, Any]:
    """The figures of one chain's dashboard card, as the JSON report carries them."""
    success = {}
    for tier, points in series.items():
        ok, reads = sum(p[1] for p in points), sum(p[2] for p in points)
        success[tier] = {"answered": int(ok), "reads": int(reads),
                         "rate": round(ok / reads, 4) if reads else None}
    return {"verification_series": {t: [list(p) for p in v] for t, v in series.items()},
            "verification_success_by_tier": success,
            "latency_ms": {t: {"p50": v.get("p50"), "p99": v.get("p99")}
                           for t, v in latency.items()},
            **{k: int(v) for k, v in totals.items()}}


_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>__TITLE__</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222}
.card{border:1px solid #ccc;border-radius:6px;padding:12px 16px;margin:0 0 16px}
table{border-collapse:collapse}td,th{padding:2px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}
svg{background:#fafafa;border:1px solid #eee}
</style></head><body>
<h1>__TITLE__</h1><p>__SUBTITLE__</p>
<div id="cards"></div>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
// One colour per tier, the same in every card, shown beside the tier's row of the table:
// the lines were coloured by their position in each chart, with nothing saying which was which.
const tierColors = {database: "#2ca02c", monitor: "#1f77b4", gateway: "#ff7f0e", aid: "#9467bd"};
const spare = ["#d62728", "#8c564b", "#e377c2", "#7f7f7f"];
function color(tier) {
  if (!(tier in tierColors)) tierColors[tier] = spare[Object.keys(tierColors).length % 4];
  return tierColors[tier];
}
const pct = (x) => x === null ? "-" : (100 * x).toFixed(1) + "%";
const ms = (x) => x === null || x === undefined ? "-" : x.toFixed(1) + " ms";
function cell(row, text, figure) {
  const td = document.createElement("td");
  td.textContent = text;
  if (figure) td.dataset.figure = figure;
  row.appendChild(td);
}
function chart(chain, series, duration) {
  const w = 560, h = 180, ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h);
  Object.entries(series).forEach(([tier, points]) => {
    const line = document.createElementNS(ns, "polyline");
    const xy = points.filter((p) => p[2] > 0).map(
      (p) => (p[0] / duration * (w - 20) + 10).toFixed(1) + "," +
             ((1 - p[1] / p[2]) * (h - 20) + 10).toFixed(1));
    line.setAttribute("points", xy.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", color(tier));
    line.dataset.tier = tier; line.dataset.points = xy.length;
    svg.appendChild(line);
  });
  svg.dataset.chart = chain;
  return svg;
}
for (const [chain, d] of Object.entries(data.chains)) {
  const card = document.createElement("div");
  card.className = "card";
  card.innerHTML = "<h2></h2><p></p><table><thead><tr><th>tier</th><th>verifications</th>" +
    "<th>answered</th><th>latency p50</th><th>p99</th></tr></thead><tbody></tbody></table>" +
    "<p>Share of verifications (verify and re-check reads; pre-claim checks are not " +
    "verifications) answered over the run, one line per tier in its colour in the table " +
    "(top: 100%).</p>";
  card.querySelector("h2").textContent = chain;
  const p = card.querySelector("p");
  for (const [key, label] of [["conflicts_prevented", "conflicts prevented"],
                              ["work_cancelled", "work cancelled"],
                              ["lease_expiries", "leases expired"]]) {
    const span = document.createElement("span");
    span.dataset.figure = chain + "." + key;
    span.textContent = d[key];
    p.append(label + ": ", span, "  ");
  }
  const body = card.querySelector("tbody");
  for (const [tier, s] of Object.entries(d.verification_success_by_tier)) {
    const row = document.createElement("tr");
    const lat = d.latency_ms[tier] || {};
    cell(row, tier);
    const swatch = document.createElement("span");
    swatch.textContent = "\u25a0 ";
    swatch.style.color = color(tier);
    swatch.dataset.swatch = tier;
    row.firstChild.prepend(swatch);
    cell(row, s.reads, chain + ".reads." + tier);
    cell(row, pct(s.rate), chain + ".success." + tier);
    cell(row, ms(lat.p50), chain + ".p50." + tier);
    cell(row, ms(lat.p99), chain + ".p99." + tier);
    body.appendChild(row);
  }
  if (!body.children.length) {  // trust-gateway reads no tier: say so, not an empty table
    const row = document.createElement("tr");
    cell(row, "no verification in this run", chain + ".none");
    row.firstChild.colSpan = 5;
    body.appendChild(row);
  }
  card.appendChild(chart(chain, d.verification_series, data.duration));
  document.getElementById("cards").appendChild(card);
}
document.body.dataset.rendered = "yes";
</script></body></html>
"""


def render_dashboard(report: Mapping[str, Any]) -> str:
    """The page for a live report (``report["chains"][chain]["dashboard"]`` for each chain)."""
    chains = {chain: entry["dashboard"] for chain, entry in report["chains"].items()
              if "dashboard" in entry}
    duration = max((p[0] for d in chains.values() for s in d["verification_series"].values()
                    for p in s), default=1.0)
    data = json.dumps({"chains": chains, "duration": duration}, sort_keys=True)
    scenario = report.get("scenario", {})
    name = scenario.get("name", "?") if isinstance(scenario, Mapping) else str(scenario)
    title = f"Live run: verification by tier (scenario {name})"
    subtitle = f"rerun: {report.get('rerun') or ''}"
    values = {"__TITLE__": html.escape(title), "__SUBTITLE__": html.escape(subtitle),
              # Every "<" escaped, not only "</": "<!--<script>" in a value put the parser in
              # the script's double-escaped state, the page's own </script> closed nothing,
              # and the page drew nothing (review). JSON.parse reads \u003c back as "<".
              "__DATA__": data.replace("<", "\\u003c").replace(">", "\\u003e")
                              .replace("&", "\\u0026")}
    # One pass: a value that happens to contain a placeholder is not substituted again.
    return re.sub("__TITLE__|__SUBTITLE__|__DATA__", lambda m: values[m.group(0)], _PAGE)

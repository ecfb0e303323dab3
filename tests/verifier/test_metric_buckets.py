"""The histograms' bucket bounds and the exposition a scrape reads: what queries over ``le`` use.

A bucket bound is an ``le`` label value. The dashboard sums the buckets ``by (le)`` over every
instance selected (its ``$instance`` variable takes several, and "All"), and
``histogram_quantile`` over a sum of buckets laid out differently (two encoder versions during
a rollout) mixes counts of different ranges into one: the quantiles are wrong, without an error.
So the layouts are a contract between versions, pinned here, and each bound that has a reason
is checked against that reason: the tier clients' timeouts, the batch endpoint's id limit.
"""

from __future__ import annotations

import inspect
import itertools
import re

from prometheus_client import CollectorRegistry, generate_latest

from verifier import (
    DatabaseTier,
    GatewayAidClient,
    GatewayMonitorService,
    GuardMetrics,
    LegacyGatewayClient,
)
from verifier._metrics import CANCELLATION_CODES, CONFLICT_CODES, JOB_OUTCOMES
from verifier._monitor import MAX_BATCH_IDS

#: The published layouts (finite bounds; ``+Inf`` follows each). Changing one breaks the
#: dashboard's quantiles over a fleet that mixes versions: a deliberate change, made here too.
LAYOUTS = {
    "verifier_tier_request_seconds": (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                                      10.0, 30.0),
    "verifier_settle_wait_seconds": (0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0,
                                     300.0),
    "verifier_time_to_start_seconds": (0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0,
                                       300.0),
    "verifier_batch_size": (1, 2, 5, 10, 20, 50),
}


def _bounds(metrics: GuardMetrics, name: str) -> list[float]:
    """The finite ``le`` values of ``name``'s buckets, in the order exposed (one series' worth:
    the labelled histograms repeat them per tier and operation)."""
    for family in metrics.registry.collect():
        if family.name == name:
            first = family.samples[0].labels
            key = {k: v for k, v in first.items() if k != "le"}
            return [float(s.labels["le"]) for s in family.samples
                    if s.name == f"{name}_bucket" and s.labels["le"] != "+Inf"
                    and {k: v for k, v in s.labels.items() if k != "le"} == key]
    raise AssertionError(f"{name} is not exported")


def test_each_histogram_exposes_its_published_bucket_layout():
    metrics = GuardMetrics()
    metrics.settle_wait.observe(1.0)  # the unlabelled histograms expose buckets from the start
    for name, layout in LAYOUTS.items():
        assert _bounds(metrics, name) == [float(b) for b in layout], name


def test_every_bound_can_count_something_and_names_one_bucket():
    """A bound of 0 counts no latency, wait or batch ever (each is positive: a batch has an
    id at least), and a bound given twice exposes two series with the same labels."""
    metrics = GuardMetrics()
    for name in LAYOUTS:
        bounds = _bounds(metrics, name)
        assert bounds and bounds[0] > 0, name
        assert all(a < b for a, b in itertools.pairwise(bounds)), name
    assert _bounds(metrics, "verifier_batch_size")[0] == 1  # one id: a bucket of its own


def _default(cls: type, parameter: str = "timeout") -> float:
    return float(inspect.signature(cls).parameters[parameter].default)


def test_each_tier_clients_timeout_is_a_latency_bound():
    """"Up to the clients' timeouts": with a bound at each client's default timeout, the
    requests that ran into it are ``_count - _bucket{le="<timeout>"}``, apart from every answer;
    a bound a second past it would count the two together."""
    bounds = _bounds(GuardMetrics(), "verifier_tier_request_seconds")
    timeouts = {_default(DatabaseTier), _default(GatewayMonitorService),
                _default(LegacyGatewayClient), _default(GatewayAidClient)}
    assert len(timeouts) >= 3  # 5, 10 and 30 s: not one value read three times
    for timeout in timeouts:
        assert timeout in bounds, timeout
    assert bounds[-1] == max(timeouts)  # nothing is waited for longer


def test_the_largest_batch_bound_is_the_batch_endpoints_limit():
    """A batch holds 1 to ``MAX_BATCH_IDS`` ids: a full batch is in the last finite bucket,
    and a bound past the limit would be a bucket nothing can fall in."""
    metrics = GuardMetrics()
    assert _bounds(metrics, "verifier_batch_size")[-1] == MAX_BATCH_IDS
    metrics.batch_size.observe(MAX_BATCH_IDS)
    metrics.batch_size.observe(1)
    value = metrics.value
    assert value("verifier_batch_size_bucket", le="1.0") == 1
    assert value("verifier_batch_size_bucket", le=f"{float(MAX_BATCH_IDS)}") == 2
    assert value("verifier_batch_size_bucket", le="20.0") == 1


_SERIES = re.compile(r"^([a-z_]+(?:\{[^}]*\})?) ", re.MULTILINE)


def test_a_scrape_exposes_each_series_once():
    """Two samples with one name and the same labels are one series given twice: Prometheus
    keeps one of them, or refuses the scrape."""
    metrics = GuardMetrics()
    for histogram in (metrics.settle_wait, metrics.time_to_start, metrics.batch_size):
        histogram.observe(3)
    text = generate_latest(metrics.registry).decode()
    series = _SERIES.findall(text)
    for name in ("verifier_settle_wait_seconds", "verifier_time_to_start_seconds",
                 "verifier_batch_size"):
        assert f'{name}_bucket{{le="+Inf"}}' in series, name  # the buckets are read
    assert len(series) == len(set(series))


def test_metrics_go_to_the_registry_given_and_each_node_has_its_own_otherwise():
    """A registry passed in (an application's own, served with its other metrics) is the one
    counted into; without one, each GuardMetrics has a registry of its own, so two nodes in
    one process (tests, the simulator's live runs) never share or collide."""
    registry = CollectorRegistry()
    given = GuardMetrics(registry)
    assert given.registry is registry
    given.record_outcome("processed", "FINISHED")
    assert registry.get_sample_value(
        "verifier_jobs_total", {"outcome": "processed", "code": "FINISHED"}) == 1.0
    one, two = GuardMetrics(), GuardMetrics()
    assert one.registry is not two.registry and one.registry is not registry
    one.record_outcome("processed", "FINISHED")
    assert two.value("verifier_jobs_total", outcome="processed", code="FINISHED") == 0


#: What each outcome means beyond the job's own count, as the metrics' help texts say it:
#: a conflict prevented is a job *skipped* because another held it or the claim was refused;
#: a cancellation is work stopped after it started; a lease expiry is one such cancellation.
PREVENTED = {"PRE_CLAIM_CONFLICT", "CLAIM_REFUSED", "OWNERSHIP_CONFLICT",
             "MONITOR_THEFT_DETECTED"}


def test_each_outcome_is_counted_once_and_into_the_counters_its_meaning_names():
    assert CONFLICT_CODES == PREVENTED
    for kind, code in sorted(JOB_OUTCOMES):
        metrics = GuardMetrics()
        metrics.record_outcome(kind, code)
        total = metrics.total
        assert total("verifier_jobs_total") == 1, (kind, code)
        assert metrics.value("verifier_jobs_total", outcome=kind, code=code) == 1
        prevented = kind == "skipped" and code in PREVENTED
        assert total("verifier_conflicts_prevented_total") == prevented, (kind, code)
        assert metrics.value("verifier_conflicts_prevented_total", code=code) == prevented
        cancelled = kind == "cancelled"
        assert total("verifier_work_cancelled_total") == cancelled, (kind, code)
        assert metrics.value("verifier_work_cancelled_total", code=code) == cancelled
        assert code in CANCELLATION_CODES or not cancelled
        expired = (kind, code) == ("cancelled", "LEASE_EXPIRED")
        assert total("verifier_lease_expiries_total") == expired, (kind, code)


def test_the_catalogue_names_what_a_query_writes():
    """Counters are queried with ``_total``, histograms and gauges by their own name, each with
    its label names; every metric the module lists is in it once."""
    from verifier._metrics import METRIC_NAMES

    catalogue = GuardMetrics().catalogue()
    assert catalogue["verifier_jobs_total"] == ("counter", ("code", "outcome"))
    assert catalogue["verifier_tier_request_seconds"] == ("histogram", ("op", "tier"))
    assert catalogue["verifier_jobs_in_progress"] == ("gauge", ())
    assert catalogue["verifier_lease_expiries_total"] == ("counter", ())
    assert {name.removesuffix("_total") for name in catalogue} == set(METRIC_NAMES)

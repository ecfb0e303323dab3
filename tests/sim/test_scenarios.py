"""Scenario files: the built-in ones load and mean what they say; bad files are named errors."""

from __future__ import annotations

import pytest

from sim import Scenario, ScenarioError
from sim._scenario_files import (
    apply_overrides,
    list_scenarios,
    load_scenario,
    parse_assignment,
    parse_value,
    scenario_names,
)

BUILTIN = ("default", "3speak-2026", "s-1k", "outside-model")


def test_builtin_scenarios_are_packaged_and_load():
    assert set(BUILTIN) <= set(scenario_names())
    for name in scenario_names():
        scenario = load_scenario(name)
        assert scenario.name == name
        assert scenario.timing_model().problems() == [], name


def test_list_scenarios_names_the_packaged_files():
    assert list_scenarios() == sorted(list_scenarios()) == scenario_names()
    assert set(BUILTIN) <= set(list_scenarios())


def test_default_is_the_small_readme_world():
    sc = load_scenario("default")
    assert (sc.encoders, sc.jobs, sc.lie_rate) == (20, 200, 0.1)
    assert sc.arrival_per_hour > 0, "below capacity, so double hand-outs find idle encoders"
    assert sc.inside_model()


def test_3speak_2026_has_the_observed_timings():
    sc = load_scenario("3speak-2026")
    assert 300 <= sc.reassign_timeout <= 360
    assert (sc.monitor_latency, sc.gateway_latency, sc.database_latency) == (0.2, 0.05, 0.005)
    assert sc.poll_interval == 60 and sc.recheck_interval == 60
    assert (sc.finish_complete_min, sc.finish_complete_max) == (45, 60)
    assert 0 < sc.infra_fraction < 1, "a mix of infrastructure and community nodes"
    assert sc.inside_model()


def test_s1k_is_the_benchmark_world_with_the_timings_of_3speak_2026():
    sc = load_scenario("s-1k")
    assert (sc.encoders, sc.jobs, sc.lie_rate) == (1000, 100_000, 0.05)
    assert sc.inside_model()
    observed = load_scenario("3speak-2026")
    # Latencies, timeouts, intervals and lags (not phase durations, fault rates or arrivals).
    timings = [k for k in sc.to_dict()
               if k.endswith(("_latency", "_timeout", "_interval", "_lag", "_lag_mean"))
               or k.startswith("finish_complete")]
    assert {"reassign_timeout", "recheck_interval", "poll_interval", "monitor_latency",
            "gateway_latency"} <= set(timings)
    for key in timings:
        assert getattr(sc, key) == getattr(observed, key), key


def test_outside_model_leaves_the_timing_model():
    sc = load_scenario("outside-model")
    assert sc.monitor_lag_tail > 0 and sc.pause_tail > 0 and sc.pauses_per_hour > 0
    assert not sc.inside_model()


def test_a_file_by_path_flat_or_in_tables(tmp_path):
    flat = tmp_path / "flat.toml"
    flat.write_text("encoders = 3\njobs = 7.0\nassignment = 'getjob'\n")
    grouped = tmp_path / "grouped.toml"
    grouped.write_text("[world]\nencoders = 3\njobs = 7\n[gateway]\nassignment = 'getjob'\n")
    a, b = load_scenario(str(flat)), load_scenario(str(grouped))
    assert a.name == "flat" and b.name == "grouped"
    assert a.replace(name="x") == b.replace(name="x")
    assert a.jobs == 7 and isinstance(a.jobs, int)
    named = tmp_path / "named.toml"
    named.write_text("name = 'mine'\n")
    assert load_scenario(str(named)) == Scenario(name="mine")


@pytest.mark.parametrize(("text", "needles"), [
    ("[world]\nencoders = 3\nlie_rat = 0.1\n", ["'lie_rat'", "lie_rate"]),
    ("lie_rate = 'high'\n", ["lie_rate", "expected float", "'high'"]),
    ("encoders = true\n", ["encoders", "bool"]),
    ("jobs = 2.5\n", ["jobs", "expected int"]),
    ("faults_until = 'later'\n", ["faults_until"]),
    ("[wrld]\njobs = 3\n", ["[wrld]"]),
    ("jobs = 3\n[run]\njobs = 4\n", ["jobs", "twice"]),
    ("[world.deep]\njobs = 3\n", ["deep"]),
    ("jobs = \n", ["invalid TOML"]),
    ("lie_rate = 1.5\n", ["lie_rate", "[0, 1]"]),
    ("assignment = 'pull'\n", ["assignment"]),
])
def test_bad_files_name_the_key_and_the_file(tmp_path, text, needles):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    for needle in needles:
        assert needle in message, message


def test_a_bare_word_is_a_builtin_name_before_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").write_text("not = [toml")
    (tmp_path / "myworld").write_text("jobs = 5\n")
    assert load_scenario("default").jobs == 200
    assert load_scenario("myworld").jobs == 5


def test_unknown_names_and_missing_files():
    with pytest.raises(ScenarioError, match=r"unknown scenario 'defualt'.*default"):
        load_scenario("defualt")
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario("nowhere/x.toml")


@pytest.mark.parametrize(("text", "value"), [
    ("0.05", 0.05), ("330", 330), ("1e3", 1000.0), ("getjob", "getjob"),
    ('"getjob"', "getjob"), ("none", None), ("None", None), ("true", True),
])
def test_values_are_toml_literals_or_bare_words(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_assignments():
    assert parse_assignment("lie-rate=0.1") == ("lie_rate", 0.1)
    assert parse_assignment(" jobs = 12 ") == ("jobs", 12)
    for bad in ("jobs", "=3", "jobs="):
        with pytest.raises(ScenarioError):
            parse_assignment(bad)


def test_overrides_are_checked_like_files():
    base = Scenario()
    assert apply_overrides(base, {"faults_until": None, "assignment": "getjob"}) == base.replace(
        assignment="getjob")
    assert apply_overrides(base, {"faults_until": 600}).faults_until == 600
    assert apply_overrides(base, {"encoders": 8.0}).encoders == 8
    with pytest.raises(ScenarioError, match=r"^--set: encoders: a value is required"):
        apply_overrides(base, {"encoders": None})
    with pytest.raises(ScenarioError, match="--grid: unknown scenario parameter 'x'"):
        apply_overrides(base, {"x": 1}, source="--grid")


def test_pauses_never_come_within_c_of_each_other() -> None:
    """The model's P bounds the total freeze within any window of P + C: the simulator never
    starts a pause (random or at an await point) within C of the previous one's end."""
    from itertools import pairwise

    from sim import run_once

    sc = Scenario(encoders=3, jobs=6, pauses_per_hour=1800.0, await_pause_rate=0.5,
                  edge_rate=0.5, cancel_latency=3.0, pause_max=2.0, faults_until=3000.0)
    result = run_once(sc, "hardened", 7)
    pauses: dict[str, list[tuple[float, str]]] = {}
    for t, process, _job, op, phase, _value in result.history:
        if op == "pause":
            pauses.setdefault(process, []).append((t, phase))
    gaps = [b[0] - a[0] for seq in pauses.values() for a, b in pairwise(seq)
            if a[1] == "ok" and b[1] == "invoke"]
    assert len(gaps) > 50, "the scenario must pause often for this to mean anything"
    assert min(gaps) >= sc.cancel_latency - 1e-9


def test_a_report_says_why_a_scenario_is_outside_the_timing_model():
    """``timing_problems`` was empty for ``outside-model`` while ``inside_model`` said false
    (researcher review, session 15): the reasons are the faults beyond the model's bounds."""
    from sim import load_scenario

    outside = load_scenario("outside-model")
    reasons = outside.outside_model()
    assert not outside.inside_model() and reasons
    assert all(any(r.startswith(f"{name}=") for r in reasons)
               for name in ("monitor_lag_tail", "pause_tail") if getattr(outside, name))
    assert load_scenario("default").outside_model() == []
    assert load_scenario("default").replace(ping_drop_rate=0.1).outside_model() == [
        "ping_drop_rate=0.1: acknowledged gateway pings that are never written"]


def test_a_world_whose_timings_cannot_keep_a_lease_is_not_inside_the_model() -> None:
    # No fault beyond the bounds, but R + G above the lease budget: the hardened chain would
    # cancel its own healthy work, so neither S2's premise nor L1's is met.
    sc = load_scenario("default").replace(recheck_interval=59.0)
    assert sc.outside_model() == [] and sc.timing_model().problems()
    assert not sc.inside_model()

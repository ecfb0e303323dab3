"""Scenario values must be finite numbers within sane bounds.

NaN compares false with everything, so a check such as ``value < 0`` lets it through, and an
infinite timeout or interval hangs the run; an enormous population never finishes building.
Each is refused up front as a :class:`ScenarioError` naming the field and the value.
"""

from __future__ import annotations

import dataclasses
import io
import math

import pytest

from sim._cli import main
from sim._scenario import MAX_ENCODERS, MAX_JOBS, Scenario, ScenarioError
from sim._scenario_files import apply_overrides, load_scenario, scenario_names

NUMERIC = [f.name for f in dataclasses.fields(Scenario)
           if f.name not in ("name", "assignment", "faults_until")]
TINY = ["--set", "encoders=2", "--set", "jobs=3", "--chain", "hardened", "--seed", "1",
        "--quiet"]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("field", NUMERIC)
def test_every_numeric_field_must_be_finite(field: str, bad: float) -> None:
    with pytest.raises(ScenarioError, match=rf"^{field}: .*finite.*{bad}"):
        Scenario().replace(**{field: bad})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, "later", True])
def test_faults_until_is_none_or_a_finite_time(bad: object) -> None:
    with pytest.raises(ScenarioError, match=r"^faults_until: "):
        Scenario(faults_until=bad)  # type: ignore[arg-type]
    assert Scenario(faults_until=None).faults_until is None
    assert Scenario(faults_until=0.0).faults_until == 0.0
    assert Scenario(faults_until=600).faults_until == 600


@pytest.mark.parametrize(("field", "limit"), [("encoders", MAX_ENCODERS), ("jobs", MAX_JOBS)])
def test_the_population_has_an_upper_bound(field: str, limit: int) -> None:
    assert Scenario().replace(**{field: limit}).to_dict()[field] == limit
    with pytest.raises(ScenarioError, match=rf"^--set: {field}: .*{limit:,}.*1000000000"):
        apply_overrides(Scenario(), {field: 1e9})


def test_every_builtin_scenario_and_the_s1k_benchmark_stay_valid() -> None:
    for name in scenario_names():
        scenario = load_scenario(name)
        assert scenario.encoders <= MAX_ENCODERS and scenario.jobs <= MAX_JOBS
    s1k = load_scenario("s-1k")
    assert (s1k.encoders, s1k.jobs) == (1_000, 100_000)


def test_a_non_finite_value_in_a_file_names_the_file_and_the_field(tmp_path) -> None:
    path = tmp_path / "nan.toml"
    path.write_text("encoders = 2\njobs = 3\n[gateway]\nreassign_timeout = inf\n")
    with pytest.raises(ScenarioError, match=r"nan\.toml: reassign_timeout: .*finite.*inf"):
        load_scenario(str(path))


@pytest.mark.parametrize("assignment", ["lie_rate=nan", "gateway_latency=nan",
                                        "poll_interval=inf", "download_mean_s=nan",
                                        "faults_until=inf", "encoders=1e9"])
def test_run_refuses_them_with_one_line_and_exit_2(assignment: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["run", *TINY, "--set", assignment], stdout=out, stderr=err) == 2
    [line] = err.getvalue().splitlines()
    field = assignment.split("=")[0]
    assert line.startswith("python -m sim run: error: --set: ") and field in line
    assert out.getvalue() == ""

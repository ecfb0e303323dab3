"""Hypothesis settings profiles and the ``--protocol`` option of the conformance suites.

Profiles (``--hypothesis-profile=NAME``; ``ci`` is selected automatically when ``CI`` is set):

``ci``        deterministic (``derandomize``), no example database, sized so that the whole
              conformance run stays well under five minutes on a 2-core machine;
``dev``       the default on a workstation: random, remembers failures in ``.hypothesis/``;
``thorough``  for releases and researchers: 100,000 race examples per race property.

``--protocol MODULE:CLASS`` (or ``SPK_PROTOCOL``) names the implementation under test; every
counterexample the suites save names it too, so its printed replay command reproduces it.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

_COMMON: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
#: After a first failure Hypothesis keeps generating for up to ten *wall-clock* seconds looking
#: for other distinct bugs, so which counterexample it shrinks (and how far) depended on the
#: machine's load: deterministic profiles stop at the first failure and shrink that one.
_DETERMINISTIC: dict[str, Any] = {"derandomize": True, "database": None,
                                  "report_multiple_bugs": False}
settings.register_profile("ci", max_examples=400, print_blob=True, **_DETERMINISTIC,
                          **_COMMON)
settings.register_profile("dev", max_examples=100, **_COMMON)
settings.register_profile("thorough", max_examples=100_000, **_COMMON)
#: For ``benchmarks/mutants.py``: deterministic like ``ci``, smaller, so a few hundred mutants
#: each run the suites in seconds.
settings.register_profile("mutants", max_examples=150, **_DETERMINISTIC, **_COMMON)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--protocol",
        default=os.environ.get("SPK_PROTOCOL", "verifier.protocol:OwnershipProtocol"),
        help="the protocol implementation to validate, as module:attribute (default: the "
             "built-in OwnershipProtocol; also SPK_PROTOCOL). It must accept "
             "(job_id, *, me, policy, tiers) and offer start()/handle() like it.",
    )


def load_protocol(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise pytest.UsageError(f"--protocol must be module:attribute, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise pytest.UsageError(f"--protocol {spec!r}: {exc}") from exc
    if not callable(factory):
        raise pytest.UsageError(f"--protocol {spec!r} is not callable")
    return factory  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def protocol(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """The protocol implementation under test."""
    return load_protocol(request.config.getoption("--protocol"))


@pytest.fixture(scope="session", autouse=True)
def _counterexamples_name_the_protocol(request: pytest.FixtureRequest) -> Iterator[None]:
    """Counterexamples are found with the protocol under test, so they must replay with it:
    ``SPK_PROTOCOL`` is set to ``--protocol`` for the session, and
    :func:`conformance.worlds.save_counterexample` puts it in the folder's label and in the
    ``python -m sim replay ... --protocol MODULE:CLASS`` command it prints."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPK_PROTOCOL", request.config.getoption("--protocol"))
        yield


#: Long runs (the ``thorough`` profile: 100,000 examples a property, about an hour) report
#: progress this many times per property; shorter ones stay silent.
_PROGRESS_FROM = 10_000
_PROGRESS_STEPS = 20


@pytest.fixture(scope="session")
def progress(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``progress(name)``, called once per example of property ``name``: on a long run, a line
    on the terminal every twentieth of the profile's examples (count, elapsed time, rate),
    written past pytest's output capture, through its terminal reporter, so that an hour-long
    property is visibly alive. Silent under pytest-xdist, whose workers have no terminal.
    Session-scoped: Hypothesis refuses function-scoped fixtures, which would not be reset
    between examples."""
    current = settings.default
    total = current.max_examples if current is not None else 0
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if total < _PROGRESS_FROM or reporter is None:
        return lambda name: None
    every = max(1, total // _PROGRESS_STEPS)
    runs: dict[str, tuple[float, int]] = {}

    def tick(name: str) -> None:
        started, done = runs.get(name, (time.monotonic(), 0))
        runs[name] = started, done + 1
        if (done + 1) % every == 0:
            elapsed = time.monotonic() - started
            line = (f"  {name}: {done + 1:,} calls (of {total:,} examples asked; replays "
                    f"and shrinking count too) in {elapsed / 60:.1f} min, "
                    f"{(done + 1) / elapsed:.0f}/s")
            if capture is None:
                _say(reporter, line)
            else:
                with capture.global_and_fixture_disabled():  # past the test's capture
                    _say(reporter, line)
    return tick


def _say(reporter: Any, line: str) -> None:
    """One line on the terminal, flushed: a log file is block-buffered, and a progress line
    that reaches it an hour late is no news."""
    reporter.write_line(line)
    reporter.flush()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Outside the timing model S1/S2 may fail: report how often, as the safety model asks."""
    from conformance.test_races import OUTSIDE_RATES

    n = OUTSIDE_RATES["examples"]
    if n:
        terminalreporter.write_line(
            f"hardened chain outside the timing model: S1 violated in {OUTSIDE_RATES['S1']}/{n} "
            f"examples ({OUTSIDE_RATES['S1'] / n:.1%}), S2 in {OUTSIDE_RATES['S2']}/{n} "
            f"({OUTSIDE_RATES['S2'] / n:.1%}); S3 held in every example that passed"
        )

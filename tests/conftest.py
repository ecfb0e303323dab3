"""Fixtures for every test under ``tests/``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import verifier._clock as clock_module


@pytest.fixture(autouse=True)
def machine_never_suspended(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Nothing is suspended during a test: the guard's default clock is the loop's alone.

    The default clock adds the machine's ``BOOTTIME − MONOTONIC`` growth (``verifier._clock``),
    read from the real kernel. On a virtual-time loop that read is the one thing not virtual:
    its noise (a preemption between the two clock reads) would move a lease end by
    microseconds, and a test asserting an instant exactly would depend on the machine's load.
    ``tests/verifier/test_clock.py`` overrides this fixture to test the real read.
    """
    monkeypatch.setattr(clock_module, "_boot_minus_monotonic", lambda: clock_module._START)
    monkeypatch.setattr(clock_module, "_seen", 0.0)
    yield

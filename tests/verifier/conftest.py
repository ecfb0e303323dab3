"""Fixtures for the verifier's unit tests: the machine's suspension counter pinned (every test),
and the monitor test files' router and client (``test_monitor.py``, ``test_monitor_http.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
import respx

import verifier._clock as clock_module
from verifier import GatewayMonitorService

from .monitor_support import BASE


@pytest.fixture(autouse=True)
def machine_never_suspended(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Nothing is suspended during a test: the guard's default clock is the loop's alone.

    The default clock adds the machine's ``BOOTTIME − MONOTONIC`` growth (``verifier._clock``),
    read from the real kernel. On a virtual-time loop that read is the one thing not virtual:
    its noise (a preemption between the two clock reads) would move a lease end by
    microseconds, and a test asserting an instant exactly would depend on the machine's load.
    ``test_clock.py`` overrides this fixture to test the real read.
    """
    monkeypatch.setattr(clock_module, "_boot_minus_monotonic", lambda: clock_module._START)
    monkeypatch.setattr(clock_module, "_seen", 0.0)
    yield


@pytest.fixture
def router() -> respx.Router:
    """A respx router used as the client's transport: no global patching, no network."""
    return respx.Router(base_url=BASE, assert_all_called=False)


@pytest_asyncio.fixture
async def monitor(router: respx.Router) -> AsyncIterator[GatewayMonitorService]:
    transport = httpx.MockTransport(router.async_handler)
    async with httpx.AsyncClient(transport=transport) as client:
        yield GatewayMonitorService(BASE, client=client)


@pytest.fixture
def closed_clients(monkeypatch: pytest.MonkeyPatch) -> list[httpx.AsyncClient]:
    """Every httpx client closed during the test, in order: a tier client must close the one
    it made (and only that one)."""
    closed: list[httpx.AsyncClient] = []
    close = httpx.AsyncClient.aclose

    async def recording(self: httpx.AsyncClient) -> None:
        closed.append(self)
        await close(self)

    monkeypatch.setattr(httpx.AsyncClient, "aclose", recording)
    return closed

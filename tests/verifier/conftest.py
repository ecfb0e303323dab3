"""Fixtures shared by the monitor test files (``test_monitor.py``, ``test_monitor_http.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
import respx

from verifier import GatewayMonitorService

from .monitor_support import BASE


@pytest.fixture
def router() -> respx.Router:
    """A respx router used as the client's transport: no global patching, no network."""
    return respx.Router(base_url=BASE, assert_all_called=False)


@pytest_asyncio.fixture
async def monitor(router: respx.Router) -> AsyncIterator[GatewayMonitorService]:
    transport = httpx.MockTransport(router.async_handler)
    async with httpx.AsyncClient(transport=transport) as client:
        yield GatewayMonitorService(BASE, client=client)

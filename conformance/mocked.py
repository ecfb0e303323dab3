"""The contract suites' driver: one public client call against one generated reply.

Each ``test_contract_*.py`` serves a :class:`~conformance.replies.Reply` to a real client
through respx, in a fresh event loop and httpx client, and then judges what came out. What is
judged differs per client; how the call is made and the two judgements every client shares
(only :class:`~verifier.VerifierError` may escape; the contract's fixed outcomes hold) live
here, once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import respx

from conformance.replies import Reply
from verifier import TierRateLimited, VerifierError

__all__ = ["assert_expectation", "assert_only_verifier_errors", "exchange"]


def exchange(reply: Reply, base: str, make_client: Callable[[httpx.AsyncClient], Any],
             call: Callable[[Any], Awaitable[Any]]
             ) -> tuple[Any, Exception | None, list[httpx.Request]]:
    """``call(client)`` with the client built by ``make_client`` over a mock serving
    ``reply`` at ``base``: the result, the exception (judged by the caller), the requests."""
    router = respx.MockRouter(base_url=base, assert_all_called=False)
    seen: list[httpx.Request] = []

    async def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)  # before answering: a request that never gets an answer counts
        return await reply.respond(request)

    router.route().mock(side_effect=respond)

    async def go() -> tuple[Any, Exception | None]:
        transport = httpx.MockTransport(router.async_handler)
        async with httpx.AsyncClient(transport=transport) as http:
            client = make_client(http)
            try:
                return await call(client), None
            except Exception as exc:  # judged by the caller: only VerifierError may escape
                return None, exc

    result, error = asyncio.run(go())
    return result, error, seen


def assert_only_verifier_errors(error: Exception | None) -> None:
    if error is not None and not isinstance(error, VerifierError):
        raise AssertionError(f"{type(error).__name__} escaped: {error!r}") from error


def assert_expectation(reply: Reply, result: Any, error: Exception | None) -> None:
    """The outcomes the contract fixes: raise, answer, and a sane ``Retry-After`` hint."""
    if reply.expect == "raise":
        assert error is not None, f"{reply.label} answered {result!r}"
    if reply.expect == "answer":
        assert error is None, f"{reply.label} raised {error!r}"
    if reply.status == 429 and reply.failure is None and isinstance(error, TierRateLimited):
        hint = error.retry_after
        assert hint is None or (math.isfinite(hint) and hint >= 0), hint

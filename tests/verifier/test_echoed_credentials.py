"""A REST tier that quotes our credentials back in its error body (adversarial review,
session 45).

A base URL's ``user:password`` is sent as HTTP basic auth. A reverse proxy's debugging page,
a misconfigured auth layer or a framework error handler that copies the request's
``Authorization`` header (or the password it decoded) into ``error``/``message`` had it put
verbatim into the exception message, which ``run`` logs and ``check`` prints. The push client
already takes these out of what it logs (``verifier._text.conceal``); the REST clients did not.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import httpx
import pytest

from verifier import (
    EncoderIdentity,
    GatewayAidClient,
    GatewayMonitorService,
    LegacyGatewayClient,
    VerifierError,
)

USER, PASSWORD = "encoder", "s3cr3t-Pa55w0rd/+x"
TOKEN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
JOB = "2f42577d-9c93-4a62-9ae2-d1270b5bc4f3"
DID = EncoderIdentity.generate().did
ENCODED = PASSWORD.replace("/", "%2F").replace("+", "%2B")


def _echoing(status: int, shape: Callable[[str], dict[str, object]]) -> httpx.AsyncClient:
    """A client whose server answers ``status`` with a body quoting the Authorization header."""
    def handler(request: httpx.Request) -> httpx.Response:
        said = request.headers.get("authorization", "")
        return httpx.Response(status, content=json.dumps(shape(said)).encode(),
                              headers={"content-type": "application/json"})
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def _shown(exc: BaseException) -> str:
    return f"{exc} {exc!r}"


def _no_credential(text: str) -> None:
    assert TOKEN not in text and PASSWORD not in text, text
    # Nor a long piece of either (a cut at a length limit leaves a prefix).
    assert TOKEN[:12] not in text and PASSWORD[:6] not in text, text


SHAPES: list[tuple[str, Callable[[str], dict[str, object]]]] = [
    ("header", lambda said: {"success": False, "error": f"unauthorized: Authorization: {said}"}),
    ("password", lambda said: {"success": False,
                               "message": f"bad credentials for {USER}:{PASSWORD}"}),
    # The excerpt is cut at 200 characters: the token straddles the cut.
    ("cut", lambda said: {"success": False, "error": "x" * 180 + f" {said}"}),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [401, 500, 429])
@pytest.mark.parametrize(("name", "shape"), SHAPES, ids=[s[0] for s in SHAPES])
async def test_gateway_error_never_carries_the_base_urls_credentials(
        status: int, name: str, shape: Callable[[str], dict[str, object]]) -> None:
    client = _echoing(status, shape)
    gateway = LegacyGatewayClient(f"https://{USER}:{ENCODED}"
                                  "@gateway.test", EncoderIdentity.generate(), client=client)
    for call in (gateway.stats, gateway.my_job, lambda: gateway.accept_job(JOB),
                 lambda: gateway.finish_job(JOB, "bafyok"), gateway.node_heartbeat):
        with pytest.raises(VerifierError) as caught:
            await call()
        _no_credential(_shown(caught.value))
    await client.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [401, 403, 404, 500, 429])
@pytest.mark.parametrize(("name", "shape"), SHAPES, ids=[s[0] for s in SHAPES])
async def test_aid_error_never_carries_the_base_urls_credentials(
        status: int, name: str, shape: Callable[[str], dict[str, object]]) -> None:
    client = _echoing(status, shape)
    aid = GatewayAidClient(f"https://{USER}:{ENCODED}"
                           "@aid.test", DID, client=client)
    for call in (lambda: aid.claim_job(JOB), lambda: aid.get_job(JOB),
                 lambda: aid.update_job(JOB, "encoding", 10.0, 0.0), aid.list_jobs):
        try:
            await call()
        except VerifierError as exc:
            _no_credential(_shown(exc))
    await client.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "shape"), SHAPES, ids=[s[0] for s in SHAPES])
async def test_monitor_error_never_carries_the_base_urls_credentials(
        name: str, shape: Callable[[str], dict[str, object]]) -> None:
    client = _echoing(200, shape)
    monitor = GatewayMonitorService(
        f"https://{USER}:{ENCODED}@monitor.test/api",
        client=client)
    with pytest.raises(VerifierError) as caught:
        await monitor.get_job_details(JOB)
    _no_credential(_shown(caught.value))
    await client.aclose()


def test_a_reply_carrying_the_secrets_does_not_show_them() -> None:
    """The monitor's ``_Reply`` carries the secrets to scrub; its ``repr`` must not show them."""
    from verifier._monitor import _Reply

    reply = _Reply(200, httpx.Headers(), b"", "https://monitor.test/api", (TOKEN, PASSWORD))
    _no_credential(repr(reply))

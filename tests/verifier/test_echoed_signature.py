"""A gateway that quotes our signed body back in its error (an adversarial review, session 45).

Gateway writes are authenticated by a JWS with no nonce and no expiry (``_identity``): its
header is public (the DID) and its payload guessable (``{"job_id": ...}``), so the signature
alone rebuilds a body the gateway accepts as ours, for ever. A gateway whose error quotes the
signature (``"signature <sig> does not verify"``) had it put in the exception message.
"""

from __future__ import annotations

import json

import httpx
import pytest

from verifier import EncoderIdentity, LegacyGatewayClient, VerifierError

JOB = "2f42577d-9c93-4a62-9ae2-d1270b5bc4f3"


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [400, 401, 500])
@pytest.mark.parametrize("quoted", ["signature", "jws"])
async def test_a_gateway_error_never_carries_our_signature(status: int, quoted: str) -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        jws = json.loads(request.content)["jws"]
        sent.append(jws)
        said = jws.rsplit(".", 1)[1] if quoted == "signature" else jws
        return httpx.Response(status, json={"status": "error",
                                            "message": f"signature {said} does not verify"})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    gateway = LegacyGatewayClient("https://gateway.test", EncoderIdentity.generate(),
                                  client=client)
    for call in (lambda: gateway.accept_job(JOB), lambda: gateway.reject_job(JOB),
                 gateway.my_job):
        with pytest.raises(VerifierError) as caught:
            await call()
        signature = sent[-1].rsplit(".", 1)[1]
        shown = f"{caught.value} {caught.value!r}"
        assert signature[:16] not in shown, shown
    await client.aclose()

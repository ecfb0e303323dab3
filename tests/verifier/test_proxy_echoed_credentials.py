"""A forward proxy that quotes its own credentials back (an adversarial review, session 46).

``HTTP_PROXY=http://user:password@proxy`` puts the proxy's password on every plain-http
request as ``Proxy-Authorization``. A proxy that refuses it (407), or fails upstream (502),
answers with its own page, which the REST clients quote as what "the tier" said: a proxy
that copies the header it refused into that page had the proxy's password in the exception
``run`` logs. Session 45 concealed the base URL's credentials there, not the proxy's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import Iterator
from unittest import mock

import pytest

from verifier import EncoderIdentity, GatewayAidClient, LegacyGatewayClient, VerifierError
from verifier._http import TierHttp

from .test_proxy_selection import serving
from .test_push import JOB
from .test_reencoded_credentials import DID, _percent

PROXY_USER, PROXY_PASSWORD = "relay", "pr0xy-Pa55word!"
PROXY_TOKEN = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()


@contextlib.contextmanager
def _proxied(port: int) -> Iterator[None]:
    """The environment with only our proxy in it."""
    clean = {k: v for k, v in os.environ.items()
             if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    clean["HTTP_PROXY"] = f"http://{PROXY_USER}:{_percent(PROXY_PASSWORD)}@127.0.0.1:{port}"
    with mock.patch.dict(os.environ, clean, clear=True):
        yield


def _echoing_proxy(status: int) -> contextlib.AbstractAsyncContextManager[int]:
    """A loopback forward proxy answering every request ``status`` with a JSON page that
    quotes the request's ``Proxy-Authorization`` and the password it decoded."""
    def respond(head: str) -> bytes:
        said = next((line.partition(":")[2].strip() for line in head.split("\r\n")
                     if line.lower().startswith("proxy-authorization:")), "")
        page = json.dumps({"error": f"proxy refused {said}",
                           "message": f"password {PROXY_PASSWORD} is wrong"}).encode()
        return (b"HTTP/1.1 %d Refused\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (status, len(page), page))
    return serving(respond)


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [407, 502])
async def test_a_proxy_quoting_its_credentials_gets_none_of_them_into_an_error(
        status: int) -> None:
    async with _echoing_proxy(status) as port:
        with _proxied(port):
            aid = GatewayAidClient("http://aid.test", DID, timeout=5.0)
            gateway = LegacyGatewayClient("http://gateway.test", EncoderIdentity.generate(),
                                          timeout=5.0)
        shown: list[str] = []
        for call in (lambda: aid.get_job(JOB), gateway.stats):
            with pytest.raises(VerifierError) as caught:
                await call()
            shown.append(f"{caught.value} {caught.value!r}")
        await aid.aclose()
        await gateway.aclose()
    for text in shown:
        assert PROXY_TOKEN[:8] not in text and PROXY_PASSWORD[:8] not in text, text
        # What the proxy said is still there, its credentials replaced.
        assert "proxy refused Basic ***" in text and "password *** is wrong" in text, text


def test_only_a_client_made_from_the_environment_takes_the_proxys_credentials() -> None:
    with _proxied(3128):
        ours = TierHttp("aid", "http://aid.test", variable="GATEWAY_AID_BASE_URL")
    assert PROXY_PASSWORD in ours.secrets and PROXY_TOKEN in ours.secrets
    asyncio.run(ours.aclose())

"""The push client's error frames: our credential cut in half, or escaped by ``repr``, was
logged (an adversarial review, session 45).

``_frame`` cut the server's ``error`` to 200 characters and ``repr``-escaped it *before*
:func:`~verifier._text.conceal` looked for the credential: a token straddling the cut left its
first characters in the log (base64 of ``user:password``: the user name and the password's
start), and a password holding a backslash or a quote (``%5C`` or ``%27%22`` in the URL) was
logged with that character doubled or escaped, so conceal never matched it.
"""

from __future__ import annotations

import base64
import random

import pytest

from verifier import JobPushClient

from .test_push import JOB, FakeMonitor, LogQueue
from .test_push import server as _server_fixture
from .test_push_review import no_proxy_in_the_environment  # noqa: F401  (autouse fixture)

server = _server_fixture


async def _logged_error(server: FakeMonitor, url: str, error: str, name: str) -> str:
    log = LogQueue(name)
    async with JobPushClient(url, reconnect_max_s=0.05, connect_timeout=2.0,
                             rng=random.Random(1), logger=log.logger) as client:
        client.subscribe(JOB, lambda push: None)
        peer = await server.peer()
        await peer.message()
        peer.send({"error": error})
        return await log.wait_for("the server says")


@pytest.mark.asyncio
async def test_a_token_cut_at_the_excerpts_limit_leaves_no_piece_in_the_log(
        server: FakeMonitor) -> None:
    url = f"http://encoder:correct-horse-battery@127.0.0.1:{server.port}/api"
    token = base64.b64encode(b"encoder:correct-horse-battery").decode()
    # The token starts 20 characters before the 200-character cut.
    logged = await _logged_error(server, url, "x" * 180 + token + " was refused",
                                 "test.echo.push.cut")
    assert token[:20] not in logged, logged


@pytest.mark.asyncio
async def test_a_password_that_repr_escapes_is_still_taken_out(server: FakeMonitor) -> None:
    password = "pa\\ss'w\"0rd"  # a backslash and both quotes: repr escapes them
    encoded = "pa%5Css%27w%220rd"
    url = f"http://encoder:{encoded}@127.0.0.1:{server.port}/api"
    logged = await _logged_error(server, url, f"bad password {password}", "test.echo.push.repr")
    assert "w\\\"0rd" not in logged and "0rd" not in logged, logged

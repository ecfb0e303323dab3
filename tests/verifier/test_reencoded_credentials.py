"""Our credentials quoted back re-encoded, cut or split (an adversarial review, session 46).

Session 45 took the base URL's password, its ``Basic`` token and the gateway write's signature
out of what a server says back, by exact text. A server or a proxy rarely quotes exactly: a
URL-decoding layer shows the password percent-encoded (``p%40ss``), a JSON-in-JSON error
``\\u0040`` or ``\\/``, an HTML page ``&#64;`` or ``&amp;``, a framework cuts its message at a
length limit (a long prefix of the token), a log-style error splits it over two fields. Each
let the credential into the exception ``run`` logs and ``check`` prints. So did a proxy that
puts it in the ``Age`` or ``X-Cache`` header the clients quote when they refuse a cached
answer, and the push client's log of an error frame.
"""

from __future__ import annotations

import base64
import html
import json
import random
import urllib.parse
from collections.abc import Callable

import httpx
import pytest

from verifier import (
    EncoderIdentity,
    GatewayAidClient,
    GatewayMonitorService,
    JobPushClient,
    LegacyGatewayClient,
    TierUnavailable,
    VerifierError,
)
from verifier._text import _READ_AHEAD, SECRET_RUN, conceal

from .test_echoed_credentials import _echoing, _shown
from .test_push import JOB, FakeMonitor, LogQueue
from .test_push import server as _server_fixture
from .test_push_review import no_proxy_in_the_environment  # noqa: F401  (autouse fixture)

server = _server_fixture

USER, PASSWORD = "encoder", "s3cr3t@Pa55w0rd/+x y"
WRITTEN = urllib.parse.quote(PASSWORD, safe="")  # as the base URL carries it
TOKEN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
DID = EncoderIdentity.generate().did


def _percent(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _lower_hex(text: str) -> str:
    return "".join(f"%{b:02x}" for b in text.encode())


def _json_escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" if not c.isalnum() else c for c in text)


def _slashes_escaped(text: str) -> str:
    return json.dumps(text)[1:-1].replace("/", "\\/")


def _html_decimal(text: str) -> str:
    return "".join(f"&#{ord(c)};" if not c.isalnum() else c for c in text)


def _html_named(text: str) -> str:
    return html.escape(text).replace("@", "&commat;").replace("/", "&sol;")


def _form(text: str) -> str:
    return urllib.parse.quote_plus(text, safe="@/")


def _repr(text: str) -> str:
    return repr(text)[1:-1]


ENCODINGS: list[tuple[str, Callable[[str], str]]] = [
    ("percent", _percent), ("percent-lower-hex", _lower_hex), ("json-u", _json_escaped),
    ("json-slash", _slashes_escaped), ("html-decimal", _html_decimal),
    ("html-named", _html_named), ("form", _form), ("repr", _repr),
]


def _no_credential(text: str) -> None:
    """No run of SECRET_RUN characters of the password or the token, in any of the forms."""
    for secret in (PASSWORD, TOKEN):
        for _, encode in ENCODINGS:
            for piece in (secret[:SECRET_RUN], secret[-SECRET_RUN:]):
                assert piece not in text and encode(piece) not in text, text


# ------------------------------------------------------------------ the rule itself


@pytest.mark.parametrize(("name", "encode"), ENCODINGS, ids=[e[0] for e in ENCODINGS])
def test_a_secret_quoted_in_any_encoding_is_taken_out_and_the_message_keeps_its_shape(
        name: str, encode: Callable[[str], str]) -> None:
    said = f"bad credentials for {USER}: {encode(PASSWORD)} (see the docs)"
    shown = conceal(said, (PASSWORD, TOKEN))
    assert shown == f"bad credentials for {USER}: *** (see the docs)", shown


def test_encodings_mixed_within_one_secret_are_read_character_by_character() -> None:
    mixed = "s3cr3t%40Pa55w0rd\\/&#43;x+y"
    assert conceal(f"[{mixed}]", (PASSWORD,)) == "[***]"


def test_a_long_piece_of_a_secret_is_the_secret_shown() -> None:
    # A server's own cut at a length limit (a prefix), a split over two lines (two halves).
    assert conceal(f"Authorization: Basic {TOKEN[:20]}", (TOKEN,)) == "Authorization: Basic ***"
    halves = f"error: {PASSWORD[:10]}\nmessage: {PASSWORD[10:]}"
    assert conceal(halves, (PASSWORD,)) == "error: ***\nmessage: ***"
    assert conceal(f"tail {_percent(TOKEN[-12:])}", (TOKEN,)) == "tail ***"


def test_a_short_piece_of_a_long_secret_is_left_so_ordinary_words_survive() -> None:
    # Seven characters of a password are not the password; "Pa55w0r" is the longest run.
    assert conceal("retry at s3cr3t later", (PASSWORD,)) == "retry at s3cr3t later"
    # A secret no longer than the run is taken out whole, however short (session 44's rule).
    assert conceal("pw=x1 and x1!", ("x1",)) == "pw=*** and ***!"


def test_a_long_text_is_concealed_before_it_is_cut_whatever_its_size() -> None:
    # The token straddles the limit, or the point where a very long text stops being read:
    # no piece of it is shown, and a 1 MiB text costs what a short one does.
    for before in (190, 4096 + 190, 4096 + 200 - 5, 1 << 20):
        shown = conceal("x" * before + _percent(TOKEN) + "y" * 10_000, (TOKEN,), 200)
        assert shown.endswith("...") and len(shown) <= 203, shown
        _no_credential(shown)
    assert conceal("x" * 500, (TOKEN,), 200) == "x" * 200 + "..."
    assert conceal("short", (TOKEN,), 200) == "short"


@pytest.mark.parametrize("secret", ["p\U0001f600ss", "key" + "-\U0001f511" * 4])
def test_a_character_past_u_ffff_json_escaped_is_read_as_its_surrogate_pair(secret: str) -> None:
    # json.dumps (ensure_ascii, its default) writes such a character as two \\u escapes, a
    # UTF-16 pair; read one by one, each was a lone surrogate and the secret passed whole
    # (no run of 8 between its emoji either).
    said = json.dumps({"error": "refused", "password": secret})
    assert conceal(said, (secret,)) == '{"error": "refused", "password": "***"}'
    upper_hex = said.replace("\\ud8", "\\uD8").replace("\\ude", "\\uDE")
    assert conceal(upper_hex, (secret,)) == '{"error": "refused", "password": "***"}'


def test_a_short_secret_straddling_the_read_ahead_is_not_shown_in_part() -> None:
    # Its characters in the longest references there are (a backtick is 18 characters), after
    # a long stretch that conceals to nothing, so that what is read ends inside the secret and
    # what is shown reaches it: the margin read past the end must hold the whole secret.
    secret, grave = "`" * SECRET_RUN, "&DiacriticalGrave;"
    limit = 50
    for before_the_end in range(1, SECRET_RUN):
        stretch = "`" * (_READ_AHEAD + limit - 10 - before_the_end * len(grave))
        said = stretch + "x" * 10 + grave * SECRET_RUN + "y" * 10_000
        assert conceal(said, (secret,), limit) == "***" + "x" * 10 + "***...", before_the_end


# ------------------------------------------------------------------ the REST clients

SHAPES: list[tuple[str, Callable[[str], dict[str, object]]]] = [
    *[(name, lambda auth, encode=encode: {"success": False,
                                          "error": f"refused {USER}:{encode(PASSWORD)}"})
      for name, encode in ENCODINGS],
    ("prefix", lambda auth: {"success": False, "error": f"bad header {auth[:26]}"}),
    ("split", lambda auth: {"success": False, "error": f"password {PASSWORD[:10]}",
                            "message": f"continued {PASSWORD[10:]}"}),
    ("json-in-json", lambda auth: {"success": False,
                                   "error": json.dumps({"authorization": auth,
                                                        "password": PASSWORD}).replace(
                                       "/", "\\/").replace("+", "\\u002b")}),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [401, 500, 429])
@pytest.mark.parametrize(("name", "shape"), SHAPES, ids=[s[0] for s in SHAPES])
async def test_no_tier_error_carries_a_reencoded_credential(
        status: int, name: str, shape: Callable[[str], dict[str, object]]) -> None:
    client = _echoing(status, shape)
    gateway = LegacyGatewayClient(f"https://{USER}:{WRITTEN}@gateway.test",
                                  EncoderIdentity.generate(), client=client)
    aid = GatewayAidClient(f"https://{USER}:{WRITTEN}@aid.test", DID, client=client)
    monitor = GatewayMonitorService(f"https://{USER}:{WRITTEN}@monitor.test/api",
                                    client=client)
    failures = 0
    for call in (gateway.stats, gateway.my_job, lambda: aid.get_job(JOB), aid.list_jobs,
                 lambda: monitor.get_job_details(JOB)):
        try:
            await call()
        except VerifierError as exc:
            failures += 1
            _no_credential(_shown(exc))
    assert failures >= 4  # the monitor answers 401 and 429 and 500 too: all refused
    await client.aclose()


@pytest.mark.asyncio
async def test_the_monitor_still_says_what_the_server_said_around_the_credential() -> None:
    client = _echoing(200, lambda auth: {"success": False,
                                         "error": f"upstream refused {_lower_hex(PASSWORD)}"})
    monitor = GatewayMonitorService(f"https://{USER}:{WRITTEN}@monitor.test/api",
                                    client=client)
    with pytest.raises(VerifierError, match=r"upstream refused \*\*\*"):
        await monitor.get_job_details(JOB)
    await client.aclose()


@pytest.mark.asyncio
async def test_a_user_name_without_a_password_is_the_credential_and_is_concealed() -> None:
    # Some APIs take a token as the user name (https://TOKEN@host): quoted back bare, it
    # was shown; only "TOKEN:" and the Basic token were concealed.
    user = "ghp_0123456789abcdefABCDEF"
    client = _echoing(401, lambda auth: {"success": False, "error": f"unknown user {user}"})
    aid = GatewayAidClient(f"https://{user}@aid.test", DID, client=client)
    with pytest.raises(VerifierError) as caught:
        await aid.get_job(JOB)
    assert user[:SECRET_RUN] not in _shown(caught.value) and "unknown user ***" in str(
        caught.value), _shown(caught.value)
    await client.aclose()


@pytest.mark.asyncio
async def test_with_a_password_the_user_name_still_names_the_account() -> None:
    client = _echoing(401, lambda auth: {"success": False,
                                         "error": f"refused {USER}:{PASSWORD} ({USER})"})
    aid = GatewayAidClient(f"https://{USER}:{WRITTEN}@aid.test", DID, client=client)
    with pytest.raises(VerifierError, match=rf"refused {USER}:\*\*\* \({USER}\)"):
        await aid.get_job(JOB)
    await client.aclose()


@pytest.mark.asyncio
async def test_a_code_that_holds_a_short_secret_still_means_what_it_says() -> None:
    # The code is concealed for the message, not for the decision: a password "INACTIVE"
    # made aid's ENCODER_INACTIVE "ENCODER_***", no configuration code, and the configuration
    # problem a refusal of the job.
    client = _echoing(403, lambda auth: {"success": False, "code": "ENCODER_INACTIVE",
                                         "error": "encoder is inactive"})
    aid = GatewayAidClient("https://encoder:INACTIVE@aid.test", DID, client=client)
    with pytest.raises(TierUnavailable, match=r"ENCODER_\*\*\*: .*a configuration problem"):
        await aid.get_job(JOB)
    await client.aclose()


# ------------------------------------------------------------------ a cache's headers


def _cached(header: str, value: Callable[[str], str]) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        said = request.headers.get("authorization", "").partition(" ")[2]
        return httpx.Response(200, json={"success": True, "data": {}},
                              headers={header: value(said)})
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@pytest.mark.asyncio
@pytest.mark.parametrize(("header", "value"), [
    ("age", lambda token: token),
    ("x-cache", lambda token: f"HIT {token}"),
    ("cf-cache-status", lambda token: f"HIT,{_percent(PASSWORD)}"),
], ids=["age", "x-cache", "cf-cache-status"])
async def test_a_cache_header_quoting_the_credential_is_refused_without_it(
        header: str, value: Callable[[str], str]) -> None:
    client = _cached(header, value)
    monitor = GatewayMonitorService(f"https://{USER}:{WRITTEN}@monitor.test/api",
                                    client=client)
    aid = GatewayAidClient(f"https://{USER}:{WRITTEN}@aid.test", DID, client=client)
    for call in (lambda: monitor.get_job_details(JOB), lambda: aid.get_job(JOB)):
        with pytest.raises(VerifierError, match="answered from a cache") as caught:
            await call()
        _no_credential(_shown(caught.value))
        assert "***" in str(caught.value)  # the header is still named, its text concealed
    await client.aclose()


# ------------------------------------------------------------------ the push client


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "encode"), ENCODINGS[:4], ids=[e[0] for e in ENCODINGS[:4]])
async def test_a_push_error_frame_quoting_a_reencoded_credential_is_logged_without_it(
        server: FakeMonitor, name: str, encode: Callable[[str], str]) -> None:
    log = LogQueue(f"test.reencoded.push.{name}")
    url = f"http://{USER}:{WRITTEN}@127.0.0.1:{server.port}/api"
    async with JobPushClient(url, reconnect_max_s=0.05, connect_timeout=2.0,
                             rng=random.Random(1), logger=log.logger) as client:
        client.subscribe(JOB, lambda push: None)
        peer = await server.peer()
        await peer.message()
        peer.send({"error": f"refused {encode(PASSWORD)}; token {TOKEN[:24]}"})
        logged = await log.wait_for("the server says")
    _no_credential(logged)
    assert "refused ***; token ***" in logged, logged

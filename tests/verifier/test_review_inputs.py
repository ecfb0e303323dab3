"""Regression tests of review findings on untrusted inputs at the package's edges.

* a URL whose password holds an unencoded ``/``, ``?`` or ``#`` (its ``@`` lands after the
  host) is refused at start-up, and never displayed;
* ids and DIDs that cannot be encoded (lone surrogates, non-ASCII DIDs) and hosts httpx cannot
  IDNA-encode are refused as :class:`~verifier.VerifierError` at start-up, and anything the
  HTTP or database layer still cannot encode is a tier error (``verifier check``: exit 2 or 3,
  never exit 1 with a traceback);
* Gateway Aid's listed ids pass the same checks as the gateway's offered id;
* compressed bodies are asked for as ``identity`` and inflated under the 1 MiB cap.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import random
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from bson.errors import InvalidBSON, InvalidDocument

from verifier import (
    ConfigurationError,
    DatabaseTier,
    GatewayAidClient,
    GatewayMonitorService,
    InvalidInputError,
    MalformedAnswer,
    Settings,
    TierUnavailable,
    validate_did,
    validate_job_id,
)
from verifier._cli import EXIT_CONFIG, EXIT_NO_ANSWER, main
from verifier._gateway import _parse_offered_job
from verifier._http import MAX_BODY_BYTES, TierHttp, check_base_url, read_capped
from verifier._ids import quote_segment, redact_url
from verifier._settings import KNOWN_VARIABLES
from verifier._strict_json import strict_loads

DID = "did:key:z6Mkon3Necd6NkkyfoGoHxid2znGc59LU3K7mubaRcFbLfLX"
SECRET = "S3cretPart"
URL_VARIABLES = ("GATEWAY_MONITOR_BASE_URL", "GATEWAY_URL", "GATEWAY_AID_BASE_URL")
#: Passwords with an unencoded '/', '?' or '#': the rest of the password leaves the authority.
MISPLACED = (
    f"https://enc:2024/{SECRET}@monitor.example/api",
    f"https://enc:2024?{SECRET}@monitor.example/api",
    f"https://enc:2024#{SECRET}@monitor.example/api",
)
BAD_HOSTS = ("http://xn--a/api", "http://exa\u200bmple.com/api")


def settings_env(variable: str, url: str) -> dict[str, str]:
    env = {variable: url, "GATEWAY_MONITOR_ENABLED": "true"}
    if variable == "GATEWAY_AID_BASE_URL":
        env |= {"GATEWAY_AID_ENABLED": "true", "ENCODER_DID": DID}
    return env


# --------------------------------------------------------------------------- 1. user info


@pytest.mark.parametrize("variable", URL_VARIABLES)
@pytest.mark.parametrize("url", MISPLACED)
def test_settings_refuse_an_at_after_the_host_without_echoing_it(variable: str, url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(settings_env(variable, url), dotenv=None)
    assert info.value.variable == variable
    assert "'@' after the host" in str(info.value)
    assert SECRET not in str(info.value) and "2024" not in str(info.value)


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("url", MISPLACED)
def test_check_base_url_refuses_an_at_after_the_host(url: str, strict: bool) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_base_url(url, "X_URL", strict=strict)
    assert "'@' after the host" in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize("variable", URL_VARIABLES)
def test_a_url_without_a_scheme_is_told_so_not_about_its_at(variable: str) -> None:
    """"user:pw@host/api" parses as scheme "user" with an '@' in its path: the message was
    about an '@' after the host, sending the operator to the wrong mistake."""
    url = f"user:{SECRET}@monitor.example/api"
    with pytest.raises(ConfigurationError) as settings:
        Settings.from_env(settings_env(variable, url), dotenv=None)
    with pytest.raises(ConfigurationError) as client:
        check_base_url(url, variable)
    for info in (settings, client):
        assert "http" in str(info.value) and "'@'" not in str(info.value)
        assert SECRET not in str(info.value)


def test_monitor_client_refuses_a_password_with_a_slash_before_any_request() -> None:
    with pytest.raises(ConfigurationError):
        GatewayMonitorService(MISPLACED[0])


@pytest.mark.parametrize("url", MISPLACED)
def test_redact_url_hides_every_piece_of_a_misplaced_password(url: str) -> None:
    shown = redact_url(url)
    assert SECRET not in shown and "2024" not in shown and "enc" not in shown


def test_percent_encoded_user_info_is_accepted_and_redacted() -> None:
    url = "https://enc:2024%2FS3cretPart@monitor.example/api"
    settings = Settings.from_env(settings_env("GATEWAY_MONITOR_BASE_URL", url), dotenv=None)
    assert settings.describe()["GATEWAY_MONITOR_BASE_URL"] == "https://monitor.example/api"
    # An '@' in a job id is percent-encoded into the path, so it never looks misplaced.
    shown = redact_url(settings.monitor_base_url + "/jobs/" + quote_segment("a@b"))
    assert shown == "https://monitor.example/api/jobs/a%40b"


# --------------------------------------------------------------------------- 2a. surrogates


def test_lone_surrogates_are_invalid_ids_and_dids() -> None:
    with pytest.raises(InvalidInputError):
        validate_job_id("job\ud800")
    with pytest.raises(InvalidInputError):
        validate_job_id("ab\udcffcd")  # what surrogateescape makes of a non-UTF-8 argv byte
    with pytest.raises(InvalidInputError):
        validate_did("did:key:z6Mk\ud800")


def test_the_gateway_cannot_offer_a_surrogate_id() -> None:
    body = strict_loads(b'{"id": "job\\ud800", "status": "queued", "assigned_to": null}')
    with pytest.raises(MalformedAnswer):
        _parse_offered_job(body)


@pytest.mark.asyncio
async def test_monitor_refuses_a_surrogate_id_as_a_verifier_error() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        monitor = GatewayMonitorService("http://127.0.0.1/api", client=client)
        with pytest.raises(InvalidInputError):
            await monitor.get_job_details("job\ud800")
    assert sent == []


# --------------------------------------------------------------------------- 2b. hosts


@pytest.mark.parametrize("variable", URL_VARIABLES)
@pytest.mark.parametrize("url", BAD_HOSTS)
def test_settings_refuse_hosts_httpx_cannot_encode(variable: str, url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(settings_env(variable, url), dotenv=None)
    assert info.value.variable == variable


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("url", BAD_HOSTS)
def test_check_base_url_refuses_hosts_httpx_cannot_encode(url: str, strict: bool) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_base_url(url, "GATEWAY_MONITOR_BASE_URL", strict=strict)
    assert info.value.variable == "GATEWAY_MONITOR_BASE_URL"


@pytest.mark.asyncio
async def test_a_request_that_cannot_be_built_is_a_tier_error() -> None:
    """Whatever slips past the start-up checks fails as "no answer", never as a crash."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, json={})
    )) as client:
        http = TierHttp("monitor", "http://monitor.test/api", variable="X", client=client)
        http.base_url = "http://xn--a/api"  # as if validated by an older release
        with pytest.raises(TierUnavailable, match="could not be built"):
            await http.send("GET", "/jobs/j")
        header = TierHttp("aid", "http://aid.test", variable="X", client=client,
                          headers={"X-Encoder-DID": "did:key:z6Mk\u00e9"})
        with pytest.raises(TierUnavailable, match="could not be built"):
            await header.send("GET", "/health")


# --------------------------------------------------------------------------- 2. check exits


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)  # no real .env
    for name in list(os.environ):
        if name in KNOWN_VARIABLES or name.startswith("VERIFIER_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_check_with_an_undecodable_job_id_is_a_usage_error(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["check", "ab\udcffcd", "--did", DID, "--base-url", "http://127.0.0.1:9/api"])
    assert code == EXIT_CONFIG
    assert "JOB_ID" in capsys.readouterr().err


@pytest.mark.parametrize("url", BAD_HOSTS)
def test_check_with_an_idna_invalid_monitor_url_is_a_configuration_error(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    clean_env.setenv("GATEWAY_MONITOR_ENABLED", "true")
    clean_env.setenv("GATEWAY_MONITOR_BASE_URL", url)
    assert main(["check", "job1", "--did", DID]) == EXIT_CONFIG
    assert "GATEWAY_MONITOR_BASE_URL" in capsys.readouterr().err
    assert main(["check", "job1", "--did", DID, "--base-url", url]) == EXIT_CONFIG


@pytest.mark.parametrize("failure", [ValueError("bad"), UnicodeEncodeError("idna", "", 0, 1, "x"),
                                     httpx.InvalidURL("bad")])
def test_check_maps_client_side_failures_to_no_answer(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], failure: Exception
) -> None:
    with respx.mock(base_url="https://monitor.test/api") as router:
        router.get("/jobs/job1").mock(side_effect=failure)
        code = main(["check", "job1", "--did", DID, "--base-url", "https://monitor.test/api"])
    assert code == EXIT_NO_ANSWER
    assert "Traceback" not in capsys.readouterr().err


def test_check_maps_an_unexpected_error_to_no_answer_without_a_traceback(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(self: GatewayMonitorService, job_id: str) -> None:
        raise RuntimeError("https://user:s3cr3t@monitor.test")

    clean_env.setattr(GatewayMonitorService, "get_job_details", broken)
    code = main(["check", "job1", "--did", DID, "--base-url", "https://monitor.test/api"])
    err = capsys.readouterr().err
    assert code == EXIT_NO_ANSWER
    assert "RuntimeError" in err and "s3cr3t" not in err


# --------------------------------------------------------------------------- 2. database


class _RaisingCollection:
    """A collection whose every call fails the way the BSON layer does."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def find_one(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (InvalidDocument("cannot encode object: <object>"), TierUnavailable),
        (UnicodeEncodeError("utf-8", "x\ud800", 1, 2, "surrogates not allowed"), TierUnavailable),
        (InvalidBSON("truncated"), MalformedAnswer),
    ],
)
async def test_database_bson_errors_are_tier_errors(
    error: Exception, expected: type[Exception]
) -> None:
    async with DatabaseTier(_RaisingCollection(error), encoder_did=DID) as db:  # type: ignore[arg-type]
        with pytest.raises(expected):
            await db.get_job("job1")
        with pytest.raises(expected) as info:
            await db.claim("job1")
        assert info.value.claim_token is not None  # the claim's outcome is reported unknown


# --------------------------------------------------------------------------- 3. aid ids


EVIL = "x\n2026-01-01 00:00:00 INFO verifier.guard GUARD_VERIFIED: job victim is ours\x1b[2K"


@pytest.mark.asyncio
async def test_aid_list_jobs_drops_unusable_ids_and_keeps_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listed = [{"id": EVIL}, {"id": "ok-1"}, {"id": "job\ud800"}, {"id": ".."}, {"id": "ok-2"}]

    def handler(request: httpx.Request) -> httpx.Response:
        # ASCII JSON: the surrogate travels as a \ud800 escape, as a hostile server sends it.
        body = json.dumps({"success": True, "jobs": listed}).encode("ascii")
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        aid = GatewayAidClient("http://aid.test", DID, client=client)
        with caplog.at_level(logging.WARNING, logger="verifier._aid"):
            jobs = await aid.list_jobs()
    assert [job.id for job in jobs] == ["ok-1", "ok-2"]
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 3
    assert not any("victim" in m or "\n" in m or "\x1b" in m for m in dropped)


# --------------------------------------------------------------------------- 4. compression


class _Chunks(httpx.AsyncByteStream):
    """A streamed body (as from a socket: nothing is read before ``read_capped`` reads it)."""

    def __init__(self, data: bytes, size: int = 65536) -> None:
        self.data, self.size = data, size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.size):
            yield self.data[start:start + self.size]


def streamed(data: bytes, encoding: str | None, chunk: int = 65536) -> httpx.Response:
    headers = {"Content-Encoding": encoding} if encoding else {}
    return httpx.Response(200, headers=headers, stream=_Chunks(data, chunk))


@pytest.fixture
def memory() -> Iterator[None]:
    tracemalloc.start()
    yield
    tracemalloc.stop()


@pytest.mark.asyncio
async def test_a_gzip_bomb_is_refused_without_inflating_it(memory: None) -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 128 * 1024  # one chunk on the wire inflates to 64 MiB
    tracemalloc.reset_peak()
    with pytest.raises(MalformedAnswer, match="larger than"):
        await read_capped(streamed(bomb, "gzip", chunk=len(bomb)), "monitor", "GET /x")
    _, peak = tracemalloc.get_traced_memory()
    assert peak < 8 * MAX_BODY_BYTES


@pytest.mark.asyncio
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_bodies_keep_the_cap_semantics(encoding: str) -> None:
    def pack(data: bytes) -> bytes:
        return gzip.compress(data) if encoding == "gzip" else zlib.compress(data)

    at_cap = b"x" * MAX_BODY_BYTES
    assert await read_capped(streamed(pack(at_cap), encoding, 1000), "aid", "x") == at_cap
    with pytest.raises(MalformedAnswer, match="larger than"):
        await read_capped(streamed(pack(at_cap + b"x"), encoding, 1000), "aid", "x")
    # In one chunk too: each step inflates one byte more than the room left, so the answer
    # is refused as too large, not as a truncated stream (mutation testing, session 36).
    over = pack(at_cap + b"x")
    with pytest.raises(MalformedAnswer, match="larger than"):
        await read_capped(streamed(over, encoding, len(over)), "aid", "x")
    body = b'{"success": true}'
    assert await read_capped(streamed(pack(body), encoding, 3), "aid", "x") == body
    # A body that does not compress is a little larger packed than the cap: the framing's
    # room must let it through (mutation testing, session 41: without the room, or with
    # 64 bytes of it, the largest answer of incompressible data was refused).
    noise = random.Random(41).randbytes(MAX_BODY_BYTES)
    packed = pack(noise)
    assert len(packed) > MAX_BODY_BYTES + 64
    assert await read_capped(streamed(packed, encoding, 65536), "aid", "x") == noise


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        # mtime=0: the gzip header carries a time, and test ids must not change between the
        # collections of pytest-xdist's workers.
        (gzip.compress(b'{"a": 1}', mtime=0)[:-6], "gzip"),  # truncated
        (gzip.compress(b'{"a": 1}', mtime=0) + b"junk", "gzip"),  # data after the end
        (b"not gzip at all", "gzip"),
        (b'{"a": 1}', "br"),  # a coding we never asked for and do not inflate
        (b'{"a": 1}', "gzip, br"),
    ],
)
async def test_undecodable_or_unsupported_codings_are_malformed(data: bytes, encoding: str) -> None:
    with pytest.raises(MalformedAnswer):
        await read_capped(streamed(data, encoding), "aid", "x")


@pytest.mark.asyncio
async def test_data_after_a_compressed_body_is_refused_at_once(memory: None) -> None:
    """Found by a second review (2026-12-03): bytes after the end of a gzip stream piled up in
    zlib's ``unused_data`` until the body ended (64 MiB: a minute of blocked event loop), and
    a stream that inflates to nothing was read for ever. Both are refused as they arrive."""
    trailing = gzip.compress(b'{"a": 1}') + b"x" * (8 * 1024 * 1024)
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]  # the 8 MiB body itself, among others
    with pytest.raises(MalformedAnswer, match="after the end"):
        await read_capped(streamed(trailing, "gzip", chunk=16 * 1024), "gateway", "GET /x")
    assert tracemalloc.get_traced_memory()[1] - before < MAX_BODY_BYTES
    # Empty deflate blocks: many raw bytes, no output; the raw bytes are capped.
    squeezer = zlib.compressobj()
    nothing = squeezer.compress(b"") + squeezer.flush(zlib.Z_SYNC_FLUSH) * 500_000
    assert len(nothing) > 2 * MAX_BODY_BYTES
    with pytest.raises(MalformedAnswer, match="larger than"):
        await read_capped(streamed(nothing, "deflate"), "gateway", "GET /x")


@pytest.mark.asyncio
async def test_every_request_asks_for_an_answer_no_cache_kept() -> None:
    """A caching proxy between an encoder and a tier would answer from a copy older than the
    tier's own lag, which no bound of the timing model covers."""
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("cache-control")))
        if request.url.host == "monitor.test":
            return httpx.Response(404, json={"success": False, "error": "Job not found"})
        return httpx.Response(200, json={"success": True, "jobs": []})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        await GatewayAidClient("http://aid.test", DID, client=client).list_jobs()
        await TierHttp("gateway", "http://gw.test", variable="X", client=client).send("GET", "/")
        monitor = GatewayMonitorService("http://monitor.test/api", client=client)
        assert await monitor.get_job_details("job-1") is None
    assert seen == [("aid.test", "no-cache"), ("gw.test", "no-cache"),
                    ("monitor.test", "no-cache")]


@pytest.mark.asyncio
@pytest.mark.parametrize("age", ["3600", "1", "soon"])
async def test_an_answer_a_cache_kept_is_no_answer(age: str) -> None:
    """``Age`` above 0 means a cache made the answer (RFC 9111 §5.1); a CDN may serve it
    despite the request's no-cache, older than the tier's own lag (a review, 2026-12-05: a
    cached "yours" was a deciding read)."""
    owned = {"_id": "x", "id": "job-1", "status": "running", "assigned_to": DID}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Age": age}, json={"success": True, "data": owned})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        monitor = GatewayMonitorService("http://monitor.test/api", client=client)
        with pytest.raises(TierUnavailable, match="from a cache"):
            await monitor.get_job_details("job-1")
    for kept_nothing in ("0", "0, 0"):  # each proxy on the way may add its own
        fresh = httpx.MockTransport(lambda request, age=kept_nothing: httpx.Response(
            200, headers={"Age": age}, json={"success": True, "data": owned}))
        async with httpx.AsyncClient(transport=fresh) as client:
            monitor = GatewayMonitorService("http://monitor.test/api", client=client)
            job = await monitor.get_job_details("job-1")
            assert job is not None and job.assigned_to == DID
    # A cache keeps no answer to a POST: an Age there refuses nothing (a heartbeat read as
    # unknown would cost the lease; a review of the rule, the same day).
    posted = httpx.MockTransport(lambda request: httpx.Response(
        200, headers={"Age": age}, json={"success": True, "job_id": "job-1"}))
    async with httpx.AsyncClient(transport=posted) as client:
        aid = GatewayAidClient("http://aid.test", DID, client=client)
        await aid.heartbeat("job-1", None, {"pct": 1.0})


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "said", "kept"), [
    ("X-Cache-Status", "HIT", True),             # nginx, as usually configured: no Age
    ("X-Cache-Status", "STALE", True),
    ("X-Cache-Status", "UPDATING", True),
    ("X-Cache-Status", "MISS", False),
    ("X-Cache-Status", "EXPIRED", False),        # fetched from the tier just now
    ("X-Cache", "Hit from cloudfront", True),
    ("X-Cache", "MISS, HIT", True),              # one word per cache: the edge kept it
    ("X-Cache", "MISS, MISS", False),
    ("X-Cache", "RefreshHit from cloudfront", False),  # revalidated with the tier
    ("CF-Cache-Status", "hit", True),
    ("CF-Cache-Status", "DYNAMIC", False),
    ("X-Proxy-Cache", "HIT", True),
])
async def test_an_answer_a_cache_says_it_kept_is_no_answer(name: str, said: str,
                                                           kept: bool) -> None:
    """nginx's proxy_cache sends no ``Age`` and ignores the request's no-cache unless told
    to: a day-old copy of "yours, running" proved every ping of a job gone to another
    encoder (helper-130's review, session 44). What a cache says of its answer counts."""
    owned = {"_id": "x", "id": "job-1", "status": "running", "assigned_to": DID}
    transport = httpx.MockTransport(lambda request: httpx.Response(
        200, headers={name: said}, json={"success": True, "data": owned}))
    async with httpx.AsyncClient(transport=transport) as client:
        monitor = GatewayMonitorService("http://monitor.test/api", client=client)
        if kept:
            with pytest.raises(TierUnavailable, match=f"from a cache \\({name.lower()}"):
                await monitor.get_job_details("job-1")
        else:
            job = await monitor.get_job_details("job-1")
            assert job is not None and job.assigned_to == DID


@pytest.mark.asyncio
async def test_every_request_asks_for_identity() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("accept-encoding"))
        return httpx.Response(200, json={"success": True, "jobs": []})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        await GatewayAidClient("http://aid.test", DID, client=client).list_jobs()
        await TierHttp("gateway", "http://gw.test", variable="X", client=client).send("GET", "/")
    assert seen == ["identity", "identity"]
    owned = TierHttp("monitor", "http://monitor.test/api", variable="X")
    try:
        assert owned._client.headers["accept-encoding"] == "identity"
    finally:
        await owned.aclose()


# --------------------------------------------------------------------------- 5. ENCODER_DID


@pytest.mark.parametrize(
    "did", ["did:key:z6Mk\u00e9node", "did:key:z6MkTest", "did:key:z6Mk...", "did:web:example.com"]
)
def test_encoder_did_must_be_an_ed25519_did_key(did: str) -> None:
    env = {"GATEWAY_AID_ENABLED": "true", "GATEWAY_AID_BASE_URL": "http://127.0.0.1:1",
           "ENCODER_DID": did, "GATEWAY_MONITOR_ENABLED": "true"}
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env, dotenv=None)
    assert info.value.variable == "ENCODER_DID"


def test_a_non_ascii_did_is_refused_by_the_aid_client_before_any_request() -> None:
    with pytest.raises(InvalidInputError):
        GatewayAidClient("http://aid.test", "did:key:z6Mk\u00e9node")

"""Tests of :mod:`verifier._mongodb_uri`: the one parser of ``MONGODB_URI``, and its redaction.

Every refusal must name ``MONGODB_URI`` and never show the password (message, ``repr``, args,
formatted traceback); the parsed value must never show it either. The last tests pin that the
settings and the database tier, which both read the URI, accept and refuse exactly the same
URIs.
"""

from __future__ import annotations

import traceback
import urllib.parse

import pymongo.uri_parser
import pytest

from verifier import ConfigurationError, DatabaseTier, Settings
from verifier._mongodb_uri import MongoUri, parse_mongodb_uri, redact_mongodb_uri

PASSWORD = "hunter2-s3cret"
URI = f"mongodb://encoder:{PASSWORD}@db1.example:27017,db2.example/jobs?authSource=admin"
DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"

VALID = [
    "mongodb://db",
    "mongodb://db.example:27017/encoder",
    "mongodb://user:pw@db1:27017,db2:27018/jobs?replicaSet=rs0",
    "mongodb://user%40corp:p%40ss@db/",
    "mongodb://[::1]:27017",
    "mongodb+srv://cluster0.example.net/jobs?retryWrites=true",
    # The edges of the checks below (each was loosened by a mutant nothing caught: session 39).
    "mongodb://db:1",
    "mongodb://db:65535",
    "mongodb://[::1]:65535",
    "mongodb://user@db",
    "mongodb://us%3Aer:pw@db",
    "mongodb://db/x?w=1;journal=true",
    "mongodb://db/x?appname=me@corp",  # an '@' in an option's value is the value's
]

MALFORMED = [
    "https://db.example",
    "MONGODB://db",
    "mongodb:/db",
    "mongodb://",
    "mongodb:///jobs",
    "mongodb://user:pw@",
    "mongodb://:pw@db",
    "mongodb://db:0",
    "mongodb://db:65536",
    "mongodb://db:abc",
    "mongodb://db1,,db2",
    "mongodb://db?x=1",
    "mongodb://us/er:pw@db",
    "mongodb+srv://a.example,b.example",
    "mongodb+srv://a.example:27017",
    "mongodb://db /x",
    "mongodb://[::1",
    "mongodb://[::1]x",
    "mongodb://u:p#w@db",
    "mongodb://[]",
    "mongodb://[]:27017",
    "mongodb://[::1]:0",
    "mongodb://[::1]:65536",
    "mongodb://[::1]:99999",
    "mongodb://d\x01b",
    "mongodb://db\x7f",
    "mongodb://db\x80",
    "mongodb://db/x\x9f",
    "mongodb://u?ser:pw@db",
    "mongodb://u[ser:pw@db",
    "mongodb://encoder%3Apw@db",
    "mongodb://db/x?w=0;journal=true",
    "mongodb://db/x?journal=true;w=0",
]

#: Malformed URIs carrying the password, each in a different part of the parser.
WITH_PASSWORD = [
    f"mongodb://encoder:{PASSWORD}@",
    f"http://encoder:{PASSWORD}@db",
    f"{PASSWORD}@db",
    f"mongodb://encoder:{PASSWORD}@db:99999",
    f"mongodb://encoder:{PASSWORD}/x@db",
    f"mongodb://encoder:{PASSWORD}@db?authSource=admin",
    f"mongodb://encoder:{PASSWORD}@a,,b/jobs",
    f"mongodb+srv://encoder:{PASSWORD}@a.example:1",
    f"mongodb://encoder:{PASSWORD}:x@db",
    f"mongodb://encoder:{PASSWORD} @db",
]


def assert_clean(exc: BaseException, secret: str) -> None:
    formatted = "".join(traceback.format_exception(exc))
    for text in (str(exc), repr(exc), exc.args, formatted):
        assert secret not in str(text)


# --------------------------------------------------------------------------- parsing


def test_parts_of_a_full_uri() -> None:
    uri = parse_mongodb_uri(URI)
    assert uri.scheme == "mongodb"
    assert (uri.user, uri.password) == ("encoder", PASSWORD)
    assert uri.hosts == ("db1.example:27017", "db2.example")
    assert uri.database == "jobs"
    assert uri.options == "authSource=admin"


@pytest.mark.parametrize(
    ("text", "database", "options"),
    [
        ("mongodb://db", None, None),
        ("mongodb://db/", "", None),
        ("mongodb://db/x", "x", None),
        ("mongodb://db/?", "", ""),
        ("mongodb://db/x?a=1&b=2", "x", "a=1&b=2"),
    ],
)
def test_database_and_options_tell_absent_from_empty(
    text: str, database: str | None, options: str | None
) -> None:
    uri = parse_mongodb_uri(text)
    assert (uri.database, uri.options) == (database, options)
    assert (uri.user, uri.password) == ("", "")


@pytest.mark.parametrize("text", VALID)
def test_valid_uris(text: str) -> None:
    assert isinstance(parse_mongodb_uri(text), MongoUri)


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_uris_name_the_variable(text: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_mongodb_uri(text)
    assert info.value.variable == "MONGODB_URI"


@pytest.mark.parametrize("text", WITH_PASSWORD)
def test_no_refusal_shows_the_password(text: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_mongodb_uri(text)
    assert info.value.variable == "MONGODB_URI"
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert_clean(info.value, PASSWORD)


# --------------------------------------------------------------------------- redaction


def test_redacted_keeps_the_user_and_hides_password_and_options() -> None:
    uri = parse_mongodb_uri(URI)
    assert uri.redacted() == "mongodb://encoder:***@db1.example:27017,db2.example/jobs?<options>"
    assert redact_mongodb_uri(URI) == uri.redacted()
    assert redact_mongodb_uri("mongodb://db/x") == "mongodb://db/x"
    assert redact_mongodb_uri("mongodb://db") == "mongodb://db"
    assert redact_mongodb_uri("mongodb://db/?") == "mongodb://db/?<options>"
    assert redact_mongodb_uri("mongodb://x509user@db") == "mongodb://x509user@db"
    assert redact_mongodb_uri("mongodb://u:pw") == "<invalid>"  # unparsable: not echoed
    assert redact_mongodb_uri(f"mongodb://u:{PASSWORD}@db:0") == "<invalid>"
    # More than 4300 digits: int() raised ValueError, through redact_mongodb_uri too
    # (adversarial review); a port has at most 5 digits.
    assert redact_mongodb_uri(f"mongodb://u:{PASSWORD}@db:{'9' * 5000}") == "<invalid>"
    assert redact_mongodb_uri(f"mongodb://u:{PASSWORD}@db:{'0' * 4400}1") == "<invalid>"
    assert redact_mongodb_uri(f"mongodb://u:{PASSWORD}@db:027017") == "<invalid>"


def test_options_are_never_shown() -> None:
    uri = parse_mongodb_uri("mongodb://db/x?tlsCertificateKeyFilePassword=k3y")
    for text in (uri.redacted(), uri.location(), repr(uri), str(uri)):
        assert "k3y" not in text


def test_location_names_hosts_and_database_only() -> None:
    uri = parse_mongodb_uri(URI)
    assert uri.location() == "mongodb://db1.example:27017,db2.example/jobs"
    assert parse_mongodb_uri("mongodb://db").location() == "mongodb://db/"
    srv = parse_mongodb_uri(f"mongodb+srv://encoder:{PASSWORD}@cluster.example/db")
    assert srv.location() == "mongodb+srv://cluster.example/db"


def test_repr_and_str_are_redacted() -> None:
    uri = parse_mongodb_uri(URI)
    assert repr(uri) == f"MongoUri({uri.redacted()!r})"
    assert PASSWORD not in repr(uri) and PASSWORD not in str(uri)
    assert PASSWORD not in repr([uri]) and PASSWORD not in f"{uri}"


def test_secrets_are_the_password_as_written_and_decoded_longest_first() -> None:
    assert parse_mongodb_uri(URI).secrets == (PASSWORD,)
    assert parse_mongodb_uri("mongodb://u:p%40ss@db").secrets == ("p%40ss", "p@ss")
    assert parse_mongodb_uri("mongodb://u@db").secrets == ()
    assert parse_mongodb_uri("mongodb://u:@db").secrets == ()
    assert parse_mongodb_uri("mongodb://db").secrets == ()
    # pymongo decodes with unquote_plus; secret options' values are secrets too, others not
    # (security review, session 16).
    both = parse_mongodb_uri("mongodb://u:a+b%2Bc@db/?tls=true&tlsCertificateKeyFilePassword=K3Y"
                             "&authMechanismProperties=AWS_SESSION_TOKEN:t0k")
    assert set(both.secrets) == {"a+b%2Bc", "a+b+c", "a b+c", "K3Y",
                                 "AWS_SESSION_TOKEN:t0k", "t0k"}
    # The session token on its own, as the driver reads it (decoded, after NAME:), since a
    # message may quote it alone; other properties are no secrets (session 39, a differential
    # test against pymongo).
    token = parse_mongodb_uri("mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties="
                              "SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:secr%2Bt%3D%3D")
    assert "secr+t==" in token.secrets and "mongodb" not in token.secrets
    # pymongo also separates options with ';': a secret after one was not scrubbed (security
    # review); read the '&' way, a value holding a ';' is a secret whole.
    semicolons = parse_mongodb_uri("mongodb://u@db/?authSource=admin;"
                                   "tlsCertificateKeyFilePassword=S3cretKFP;tls=true")
    assert semicolons.secrets == ("S3cretKFP",)
    assert "K3y;part" in parse_mongodb_uri(
        "mongodb://u@db/?tls=true&tlsCertificateKeyFilePassword=K3y;part").secrets
    # A key file's path is no secret, and the one useful detail of its errors.
    assert parse_mongodb_uri("mongodb://db/?tlsCertificateKeyFile=/etc/ssl/c.pem").secrets == ()


#: URIs whose parts pymongo and this parser must read alike (from session 39's differential
#: test against pymongo, helper-120): encodings, IPv6 with a zone, a Unix socket, hosts in
#: capitals, options after ';'.
READ_ALIKE = [
    "mongodb://encoder:hunter2-s3cret@db1.example:27017,db2.example/jobs?authSource=admin",
    "mongodb://u:pa%2Bss@h/db", "mongodb://u:pa+ss@h/db", "mongodb://u:p%40ss%3Aw@h",
    "mongodb://u:p%25zz@h", "mongodb://user%40corp:p%40ss@db/", "mongodb://us%3Aer:pw@db",
    "mongodb://u:%E2%82%AC%F0%9F%94%91@h", "mongodb://u:p!$&'()*+,;=@h",
    "mongodb://u:pass%20word@H1.Example:27017,h2", "mongodb://[::1]:27017",
    "mongodb://[fe80::1%25eth0]:1", "mongodb://u:pw@%2Ftmp%2Fmongodb-27017.sock/db",
    "mongodb://h/db.coll", "mongodb://h/", "mongodb://h/db?w=1;journal=true",
    "mongodb://h/?w=majority&wtimeoutMS=0", "mongodb://db/x?appname=me@corp",
]


@pytest.mark.parametrize("text", READ_ALIKE)
def test_the_driver_reads_the_parts_this_parser_reads(text: str) -> None:
    """The oracle is pymongo's own parser: the password it would send is among the secrets
    scrubbed from every message, and the hosts and database are the ones shown."""
    theirs = pymongo.uri_parser.parse_uri(text, warn=False)
    ours = parse_mongodb_uri(text)
    if theirs["password"]:
        assert theirs["password"] in ours.secrets
    assert urllib.parse.unquote_plus(ours.user) == (theirs["username"] or "")
    hosts = [host.rpartition(":")[0] if host.rpartition(":")[2].isdigit() else host
             for host in ours.hosts]
    assert [urllib.parse.unquote(h).strip("[]").lower() for h in hosts] == [
        host for host, _ in theirs["nodelist"]]
    database = (ours.database or "").partition(".")[0] or None
    assert database == theirs["database"]


# --------------------------------------------------------------------------- one reading


def _settings_accept(text: str) -> bool:
    try:
        Settings.from_env({"GATEWAY_MONITOR_ENABLED": "true", "MONGODB_URI": text}, dotenv=None)
    except ConfigurationError as exc:
        assert exc.variable == "MONGODB_URI"
        assert_clean(exc, PASSWORD)
        return False
    return True


async def _database_accepts(text: str) -> bool:
    try:
        db = DatabaseTier(uri=text, encoder_did=DID)
    except ConfigurationError as exc:
        assert exc.variable == "MONGODB_URI"
        assert_clean(exc, PASSWORD)
        return False
    assert PASSWORD not in repr(db)
    await db.aclose()
    return True


@pytest.mark.asyncio
@pytest.mark.parametrize("text", VALID + MALFORMED + WITH_PASSWORD)
async def test_settings_and_the_database_tier_accept_the_same_uris(text: str) -> None:
    assert _settings_accept(text) is await _database_accepts(text) is (text in VALID)


@pytest.mark.asyncio
async def test_surrounding_whitespace_is_stripped_by_settings_only() -> None:
    # The variable's value is stripped like every setting; a URI given in code is taken as is.
    assert _settings_accept("mongodb://db/x\n")
    assert not await _database_accepts("mongodb://db/x\n")
    with pytest.raises(ConfigurationError, match="whitespace"):
        parse_mongodb_uri(" mongodb://db")

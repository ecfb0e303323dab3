"""EncoderIdentity, did:key and JWS: the legacy gateway's authentication, both directions."""

from __future__ import annotations

import base64
import json
import pickle
import traceback

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from verifier import ConfigurationError, EncoderIdentity, InvalidInputError, verify_jws
from verifier._identity import MAX_JWS_LENGTH, b58decode, b58encode, did_key_public_key

# RFC 8032 §7.1, test 1: a published seed and its public key.
pytestmark = pytest.mark.asyncio

RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_DID = "did:key:z6MktwupdmLXVVqTzCw4i46r4uGyosGXRnR3XjN4Zq7oMMsw"
STD_B64 = base64.b64encode(RFC_SEED).decode()  # contains '/' and '='
URL_B64 = base64.urlsafe_b64encode(RFC_SEED).decode()  # contains '_'


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(key: Ed25519PrivateKey, header: bytes, payload: bytes) -> str:
    """A token over arbitrary header/payload bytes, correctly signed by ``key``."""
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


def kid_of(did: str) -> str:
    return f"{did}#{did[len('did:key:'):]}"


# ----------------------------------------------------------------- base58btc


@pytest.mark.parametrize(
    ("hex_data", "text"),
    [
        ("", ""),
        ("61", "2g"),
        ("626262", "a3gV"),
        ("636363", "aPEr"),
        ("516b6fcd0f", "ABnLTmg"),
        ("00000000000000000000", "1111111111"),
        ("00eb15231dfceb60925886b67d065299925915aeb172c06647",
         "1NS17iag9jJgTHD1VXjvLCEnZuQ3rJDE9L"),
    ],
)
async def test_base58_matches_bitcoin_vectors(hex_data: str, text: str) -> None:
    assert b58encode(bytes.fromhex(hex_data)) == text
    assert b58decode(text) == bytes.fromhex(hex_data)


async def test_base58_round_trips() -> None:
    @given(st.binary(max_size=64))
    def round_trip(data: bytes) -> None:
        assert b58decode(b58encode(data)) == data

    round_trip()


@pytest.mark.parametrize("bad", ["0", "O", "I", "l", "abc+", "z z"])
async def test_base58_refuses_characters_outside_the_alphabet(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        b58decode(bad)


# ----------------------------------------------------------------- did:key


async def test_did_of_a_known_seed_is_stable() -> None:
    identity = EncoderIdentity.from_seed(RFC_SEED)
    assert identity.public_key == RFC_PUBLIC
    assert identity.did == RFC_DID
    assert identity.did.startswith("did:key:z6Mk")
    assert identity.kid == f"{RFC_DID}#{RFC_DID[8:]}"


@pytest.mark.parametrize(
    "text",
    [STD_B64, STD_B64.rstrip("="), URL_B64, URL_B64.rstrip("="), f"  {STD_B64}\n"],
    ids=["standard", "standard-unpadded", "urlsafe", "urlsafe-unpadded", "whitespace"],
)
async def test_private_key_accepts_both_base64_alphabets(text: str) -> None:
    assert EncoderIdentity.from_private_key(text).did == RFC_DID


async def test_generated_identities_differ_and_are_ed25519_did_keys() -> None:
    a, b = EncoderIdentity.generate(), EncoderIdentity.generate()
    assert a.did != b.did
    assert a.did.startswith("did:key:z6Mk")
    assert did_key_public_key(a.did) == a.public_key


async def test_did_key_public_key_decodes_the_known_did() -> None:
    assert did_key_public_key(RFC_DID) == RFC_PUBLIC


@pytest.mark.parametrize(
    "did",
    [
        None,
        5,
        "",
        "did:web:example.com",
        "did:key:",
        "did:key:z",
        "did:key:zabc",
        "did:key:" + RFC_DID[9:],  # multibase prefix missing
        "did:key:z" + b58encode(b"\xe7\x01" + RFC_PUBLIC),  # secp256k1 codec, not Ed25519
        "did:key:z" + b58encode(b"\xed\x01" + RFC_PUBLIC[:31]),  # 31-byte key
        "did:key:z" + b58encode(b"\xed\x01" + RFC_PUBLIC + b"\0"),  # 33-byte key
        RFC_DID + "0",  # '0' is not base58
    ],
)
async def test_did_key_public_key_refuses_anything_but_an_ed25519_did_key(did: object) -> None:
    with pytest.raises(InvalidInputError):
        did_key_public_key(did)


# ----------------------------------------------------------------- ENCODER_PRIVATE_KEY errors

BAD_KEYS = {
    "empty": "",
    "blank": "   ",
    "not-base64": "this is not base64!!",
    "31-bytes": base64.b64encode(RFC_SEED[:31]).decode(),
    "33-bytes": base64.b64encode(RFC_SEED + b"\x01").decode(),
    "64-bytes": base64.b64encode(RFC_SEED + RFC_PUBLIC).decode(),
    "truncated": STD_B64.rstrip("=")[:-1],
    "one-char-over": STD_B64.rstrip("=") + "AB",  # 45 characters: no base64 text is 1 mod 4
    "hex": RFC_SEED.hex(),
}


@pytest.mark.parametrize("value", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
async def test_bad_private_key_is_a_configuration_error_without_the_value(value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        EncoderIdentity.from_private_key(value)
    exc = caught.value
    assert exc.variable == "ENCODER_PRIVATE_KEY"
    rendered = "".join(traceback.format_exception(exc))
    if value.strip():
        assert value.strip() not in rendered
        assert value.strip()[:12] not in str(exc)
    # No chained library exception can carry the value either.
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


@pytest.mark.parametrize("value", [None, 5, b"bytes"])
async def test_private_key_of_the_wrong_type_is_a_configuration_error(value: object) -> None:
    with pytest.raises(ConfigurationError):
        EncoderIdentity.from_private_key(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "says"), [
    ("empty", "is empty"), ("blank", "is empty"), ("not-base64", "is not base64"),
    ("31-bytes", "decodes to 31 bytes"), ("33-bytes", "decodes to 33 bytes"),
    ("64-bytes", "decodes to 64 bytes"), ("truncated", "decodes to 31 bytes"),
    ("one-char-over", r"is not valid base64 \(truncated\)"), ("hex", "decodes to 48 bytes"),
])
async def test_bad_private_key_message_says_what_is_wrong(name: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        EncoderIdentity.from_private_key(BAD_KEYS[name])


async def test_repr_and_pickle_never_expose_the_key() -> None:
    identity = EncoderIdentity.from_private_key(STD_B64)
    text = repr(identity)
    assert RFC_DID in text
    for secret in (STD_B64, URL_B64.rstrip("="), RFC_SEED.hex(), STD_B64[:16]):
        assert secret not in text
    with pytest.raises(TypeError):
        pickle.dumps(identity)


# ----------------------------------------------------------------- signing and verification


async def test_sign_then_verify_round_trip() -> None:
    identity = EncoderIdentity.generate()
    payload = {"job_id": "abc", "output": {"cid": "bafy"}, "n": 1.5}
    did, decoded = verify_jws(identity.sign_jws(payload))
    assert did == identity.did
    assert decoded == payload


async def test_token_shape_matches_the_dids_library() -> None:
    identity = EncoderIdentity.from_seed(RFC_SEED)
    token = identity.sign_jws({"job_id": "x", "a": 1})
    header, payload, signature = token.split(".")
    assert "=" not in token
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {
        "alg": "EdDSA", "kid": kid_of(RFC_DID)
    }
    # Sorted keys, compact separators: the bytes the server verifies.
    assert base64.urlsafe_b64decode(payload + "==") == b'{"a":1,"job_id":"x"}'
    assert len(base64.urlsafe_b64decode(signature + "==")) == 64
    # Ed25519 is deterministic: the same body signs to the same token.
    assert identity.sign_jws({"a": 1, "job_id": "x"}) == token


async def test_general_serialization_with_one_signature_is_accepted() -> None:
    identity = EncoderIdentity.generate()
    protected, payload, signature = identity.sign_jws({"job_id": "j"}).split(".")
    general = {"payload": payload, "signatures": [{"protected": protected,
                                                   "signature": signature}]}
    assert verify_jws(general) == (identity.did, {"job_id": "j"})
    general["signatures"] = general["signatures"] * 2
    with pytest.raises(InvalidInputError, match="exactly one"):
        verify_jws(general)


def _general(**changes: object) -> dict[str, object]:
    protected, payload, signature = EncoderIdentity.generate().sign_jws({"job_id": "j"}).split(".")
    signed: dict[str, object] = {"protected": protected, "signature": signature}
    general: dict[str, object] = {"payload": payload, "signatures": [signed]}
    for key, value in changes.items():
        if key in signed:
            signed[key] = value
        else:
            general[key] = value
    return general


@pytest.mark.parametrize(("token", "says"), [
    (_general(payload=None), "needs a 'payload' string"),
    (_general(signatures={"protected": "e30", "signature": "AA"}), "needs a 'payload' string"),
    (_general(protected=None), "needs 'protected' and 'signature'"),
    (_general(signature=7), "needs 'protected' and 'signature'"),
    ("a" * MAX_JWS_LENGTH, "three dot-separated parts"),  # the limit itself is allowed
    # A general JWS counts all three of its parts against the limit, whichever is long.
    (_general(payload="a" * MAX_JWS_LENGTH), "too long"),
    (_general(protected="a" * MAX_JWS_LENGTH), "too long"),
    (_general(signature="a" * MAX_JWS_LENGTH), "too long"),
    # At the limit itself: refused for what its parts are, not for their length.
    (_general(payload="a" * (MAX_JWS_LENGTH - 4), protected="a", signature="aaa"),
     "not unpadded base64url"),
    (raw_token(Ed25519PrivateKey.generate(), b'{"alg":"EdDSA","kid":7}', b"{}"), "no kid"),
], ids=["payload-null", "signatures-not-a-list", "protected-null", "signature-not-text",
        "at-the-length-limit", "long-payload", "long-protected", "long-signature",
        "general-at-the-length-limit", "kid-not-text"])
async def test_malformed_tokens_are_refused_for_what_is_wrong(token: object, says: str) -> None:
    """Each flaw refused by name, before anything reads the wrong type (mutants that checked
    only one of two fields passed: the other field's flaw came out as another message, or a
    TypeError)."""
    with pytest.raises(InvalidInputError, match=says):
        verify_jws(token)


@pytest.mark.parametrize("seed", [b"\x01" * 31, bytearray(33), "a" * 32, None],
                         ids=["31-bytes", "33-bytes", "text", "none"])
async def test_a_seed_that_is_not_32_bytes_is_refused_by_name(seed: object) -> None:
    with pytest.raises(InvalidInputError, match="exactly 32 bytes"):
        EncoderIdentity.from_seed(seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("payload", [{"x": {1, 2}}, {"x": float("nan")}, ["not", "a", "map"]])
async def test_sign_refuses_payloads_that_are_not_plain_json_objects(payload: object) -> None:
    with pytest.raises(InvalidInputError):
        EncoderIdentity.generate().sign_jws(payload)  # type: ignore[arg-type]


def _forgeries() -> dict[str, object]:
    victim = EncoderIdentity.generate()
    forger_key = Ed25519PrivateKey.generate()
    forger = EncoderIdentity(forger_key)
    good = victim.sign_jws({"job_id": "j"})
    h, p, s = good.split(".")
    other_payload = victim.sign_jws({"job_id": "other"}).split(".")[1]
    flipped = bytearray(base64.urlsafe_b64decode(s + "=="))
    flipped[0] ^= 1
    victim_header = json.dumps({"alg": "EdDSA", "kid": kid_of(victim.did)}).encode()
    forger_header = json.dumps({"alg": "EdDSA", "kid": kid_of(forger.did)}).encode()
    return {
        "payload-swapped": f"{h}.{other_payload}.{s}",
        "signature-bit-flipped": f"{h}.{p}.{b64url(bytes(flipped))}",
        "signed-by-another-key": raw_token(forger_key, victim_header, b'{"job_id":"j"}'),
        "signature-removed": f"{h}.{p}.",
        "alg-none": raw_token(forger_key, b'{"alg":"none","kid":"%s"}'
                              % kid_of(forger.did).encode(), b'{"job_id":"j"}'),
        "alg-missing": raw_token(forger_key, b'{"kid":"%s"}' % kid_of(forger.did).encode(),
                                 b"{}"),
        "crit": raw_token(forger_key, b'{"alg":"EdDSA","crit":["b64"],"b64":false,"kid":"%s"}'
                          % kid_of(forger.did).encode(), b"{}"),
        "kid-missing": raw_token(forger_key, b'{"alg":"EdDSA"}', b"{}"),
        "kid-not-did-key": raw_token(forger_key, b'{"alg":"EdDSA","kid":"did:web:x"}', b"{}"),
        "kid-fragment-of-another-key": raw_token(
            forger_key,
            json.dumps({"alg": "EdDSA", "kid": f"{forger.did}#{victim.did[8:]}"}).encode(),
            b"{}",
        ),
        "payload-not-object": raw_token(forger_key, forger_header, b'["job_id"]'),
        "payload-not-json": raw_token(forger_key, forger_header, b"job_id=j"),
        "payload-duplicate-keys": raw_token(
            forger_key, forger_header, b'{"job_id":"a","job_id":"b"}'
        ),
        "payload-nan": raw_token(forger_key, forger_header, b'{"pct":NaN}'),
        "payload-huge-integer": raw_token(
            forger_key, forger_header, b'{"n":' + b"1" * 5000 + b"}"
        ),
        "header-duplicate-keys": raw_token(
            forger_key, b'{"alg":"none","alg":"EdDSA","kid":"%s"}' % kid_of(forger.did).encode(),
            b"{}",
        ),
        "header-not-json": raw_token(forger_key, b"alg=EdDSA", b"{}"),
        "padded-segments": f"{h}==.{p}.{s}",
        "two-parts": f"{h}.{p}",
        "four-parts": f"{good}.x",
        "empty": "",
        "non-base64url": f"{h}.{p}.{s[:-2]}+/",
        "too-long": "a" * (MAX_JWS_LENGTH + 1),
        "none": None,
        "int": 5,
        "bytes": good.encode(),
        "general-missing-signature": {"payload": p, "signatures": []},
    }


FORGERIES = _forgeries()


@pytest.mark.parametrize("token", list(FORGERIES.values()), ids=list(FORGERIES))
async def test_forged_tampered_and_malformed_tokens_are_refused(token: object) -> None:
    with pytest.raises(InvalidInputError):
        verify_jws(token)


@pytest.mark.parametrize("spelling", ["standard-alphabet", "padded"])
async def test_segments_outside_unpadded_base64url_are_refused_even_when_signed(
        spelling: str) -> None:
    """RFC 7515 segments are unpadded base64url. A signer that spelt one in the standard
    alphabet or with padding signed *that* text, so the signature verifies: only the segment
    rule refuses it (a mutant that refused only what both broke the alphabet and had a length
    of 1 mod 4 passed every forgery above, each of which failed its signature too)."""
    key = Ed25519PrivateKey.generate()
    header = b64url(json.dumps({"alg": "EdDSA",
                                "kid": kid_of(EncoderIdentity(key).did)}).encode())
    payload = b'{"job_id":"???>>>?"}'
    if spelling == "standard-alphabet":
        segment = base64.b64encode(payload).decode().rstrip("=")
        assert segment != b64url(payload) and len(segment) % 4 != 1
    else:
        segment = base64.urlsafe_b64encode(payload).decode()
        assert segment.endswith("=") and len(segment) % 4 != 1
    signing_input = f"{header}.{segment}"
    token = f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"
    with pytest.raises(InvalidInputError, match="payload is not unpadded base64url"):
        verify_jws(token)
    spelt_right = f"{header}.{b64url(payload)}"
    assert verify_jws(f"{spelt_right}.{b64url(key.sign(spelt_right.encode()))}")[1] == {
        "job_id": "???>>>?"}


async def test_forgery_fixtures_are_well_formed_apart_from_their_flaw() -> None:
    """Guard against vacuous refusals: the same construction with no flaw verifies."""
    key = Ed25519PrivateKey.generate()
    identity = EncoderIdentity(key)
    header = json.dumps({"alg": "EdDSA", "kid": kid_of(identity.did)}).encode()
    assert verify_jws(raw_token(key, header, b'{"job_id":"j"}')) == (identity.did,
                                                                     {"job_id": "j"})
    bare_kid = json.dumps({"alg": "EdDSA", "kid": identity.did}).encode()
    assert verify_jws(raw_token(key, bare_kid, b"{}"))[0] == identity.did


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b'{"job_id":"a","job_id":"b"}', "JWS JSON has a duplicate key"),
        (b'{"pct":NaN}', "JWS JSON contains the non-standard constant NaN"),
        (b'{"pct":-Infinity}', "JWS JSON contains the non-standard constant -Infinity"),
        (b"job_id=j", "JWS payload is not JSON"),
        (b'{"n":' + b"1" * 5000 + b"}", "JWS payload is not JSON"),
        (b'["job_id"]', "JWS payload is not a JSON object"),
    ],
)
async def test_what_a_signed_payload_that_is_not_strict_json_is_refused_with(
    payload: bytes, message: str
) -> None:
    """Signed by the key its kid names: only the JSON reading can refuse it."""
    key = Ed25519PrivateKey.generate()
    header = json.dumps({"alg": "EdDSA", "kid": kid_of(EncoderIdentity(key).did)}).encode()
    with pytest.raises(InvalidInputError) as info:
        verify_jws(raw_token(key, header, payload))
    assert str(info.value) == message
    assert info.value.__cause__ is None


# ---------------------------------------------------------------- weak keys (security review)

_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P


def _points_with_y(y: int) -> list[tuple[int, int]]:
    """The curve's points with this y (an oracle written from the curve's equation,
    -x^2 + y^2 = 1 + d x^2 y^2, independent of the code under test)."""
    u = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
    x = pow(u, (_P + 3) // 8, _P)
    if x * x % _P != u:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if x * x % _P != u:
        return []
    return sorted({(x, y), ((-x) % _P, y)})


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    return ((x1 * y2 + y1 * x2) * pow(1 + t, -1, _P) % _P,
            (y1 * y2 + x1 * x2) * pow(1 - t, -1, _P) % _P)


def _did(key: bytes) -> str:
    return "did:key:z" + b58encode(b"\xed\x01" + key)


#: The canonical encodings (sign bit clear) of Ed25519's points of small order, written out
#: here rather than read from the code under test (a mutant that spelled the order-2 point
#: y = -1 as p + 1 passed when the test iterated the code's own set): the identity, y = -1,
#: y = 0 and the two y of order 8 (the list libsodium and "Taming the many EdDSAs" give).
SMALL_ORDER_ENCODINGS = (
    (1).to_bytes(32, "little"),
    (2**255 - 20).to_bytes(32, "little"),
    bytes(32),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
)


async def test_keys_of_small_order_or_non_canonical_are_refused() -> None:
    """For a point of small order an all-zero signature verifies (anyone signs as that DID),
    and y >= p spells another key a second time (two DIDs, one key)."""
    small = []
    for encoded in SMALL_ORDER_ENCODINGS:
        points = _points_with_y(int.from_bytes(encoded, "little"))
        assert points, encoded.hex()
        for point in points:
            eight = point
            for _ in range(3):
                eight = _add(eight, eight)
            assert eight == (0, 1), f"{encoded.hex()} is not of small order"
            small.append(point)
    assert len(small) == 8, "the curve has exactly eight points of small order"
    for encoded in SMALL_ORDER_ENCODINGS:
        for sign in (0, 0x80):
            key = encoded[:31] + bytes([encoded[31] | sign])
            with pytest.raises(InvalidInputError, match="small order"):
                did_key_public_key(_did(key))
    for y in (_P, _P + 1, 2**255 - 1):
        with pytest.raises(InvalidInputError, match="canonical"):
            did_key_public_key(_did(y.to_bytes(32, "little")))
    # An all-zero signature over a weak DID no longer verifies as that DID.
    weak = _did(bytes(32))
    header = base64.urlsafe_b64encode(json.dumps({"alg": "EdDSA", "kid": weak}).encode())
    token = (header.rstrip(b"=").decode() + ".e30." +
             base64.urlsafe_b64encode(bytes(64)).rstrip(b"=").decode())
    with pytest.raises(InvalidInputError):
        verify_jws(token)
    for _ in range(20):  # real keys pass
        identity = EncoderIdentity.generate()
        assert did_key_public_key(identity.did)

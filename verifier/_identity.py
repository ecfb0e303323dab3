"""The encoder's identity on the legacy gateway: an Ed25519 key, its ``did:key``, and JWS.

The legacy gateway authenticates every write by a JWS (``alg: EdDSA``) whose ``kid`` names the
signer's ``did:key``; the server takes the DID from the ``kid`` and checks the signature against
the public key encoded in that DID (``3speak-contract.md``, "Actors"). There is no nonce and no
expiry, so a signature proves *who* asked, never *when*.

``ENCODER_PRIVATE_KEY`` is a base64 32-byte Ed25519 seed (the TypeScript encoder fed it to
``key-did-provider-ed25519``). The seed is a credential: it never appears in a ``repr``, a log
line or an exception message, and decoding errors are raised ``from None`` so that no library
message carrying the value can ride along in a traceback.

:func:`verify_jws` is the server side: the emulated gateway uses it to answer 401 to forged or
malformed bodies, and the tests use it to check what the client sent. It accepts the compact
serialization (what :meth:`EncoderIdentity.sign_jws` produces) and the general JSON
serialization with one signature (what the TypeScript encoder's ``dids`` library sends).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ._errors import ConfigurationError, InvalidInputError
from ._ids import validate_did
from ._strict_json import DuplicateKey, NonStandardConstant, NotStrictJson, strict_loads

__all__ = [
    "ED25519_MULTICODEC_PREFIX",
    "MAX_JWS_LENGTH",
    "EncoderIdentity",
    "b58decode",
    "b58encode",
    "did_key_public_key",
    "verify_jws",
]

#: The multicodec varint of ``ed25519-pub`` (0xed), as every ``did:key:z6Mk...`` starts with.
ED25519_MULTICODEC_PREFIX: Final = b"\xed\x01"
#: The field prime of Ed25519, 2^255 - 19, and the curve's d = -121665/121666 (RFC 8032 §5.1).
_ED25519_P: Final = 2**255 - 19
_ED25519_D: Final = -121665 * pow(121666, -1, _ED25519_P) % _ED25519_P
#: The y coordinates (sign bit cleared) of Ed25519's eight points of small order, canonical
#: encodings only (non-canonical ones are refused before): the identity (y = 1), order 2
#: (y = -1), order 4 (y = 0) and order 8 (the two below). tests/verifier/test_identity.py
#: checks each against the curve's arithmetic.
_SMALL_ORDER_Y: Final = frozenset({
    (1).to_bytes(32, "little"),
    (_ED25519_P - 1).to_bytes(32, "little"),
    bytes(32),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
})
_DID_KEY_PREFIX: Final = "did:key:"
_B58_ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX: Final = {c: i for i, c in enumerate(_B58_ALPHABET)}
_SEED_VARIABLE: Final = "ENCODER_PRIVATE_KEY"
_SEED_CHARS: Final = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")
_B64URL_CHARS: Final = re.compile(r"[A-Za-z0-9_-]*")
#: A gateway body is a few hundred bytes; refusing huge tokens bounds the work a forger causes.
MAX_JWS_LENGTH: Final = 64 * 1024


# --------------------------------------------------------------------------- base58btc


def b58encode(data: bytes) -> str:
    """Bitcoin base58 (the ``z`` multibase): leading zero bytes become leading ``1``."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, rest = divmod(number, 58)
        digits.append(_B58_ALPHABET[rest])
    return "1" * zeros + "".join(reversed(digits))


def b58decode(text: str) -> bytes:
    """Inverse of :func:`b58encode`; :class:`InvalidInputError` on a character outside it."""
    number = 0
    for char in text:
        value = _B58_INDEX.get(char)
        if value is None:
            raise InvalidInputError("base58 text contains a character outside the alphabet")
        number = number * 58 + value
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


# --------------------------------------------------------------------------- did:key


def _did_key_of(public_key: bytes) -> str:
    return _DID_KEY_PREFIX + "z" + b58encode(ED25519_MULTICODEC_PREFIX + public_key)


def did_key_public_key(did: object) -> bytes:
    """The 32-byte Ed25519 public key encoded in an Ed25519 ``did:key``.

    Strict on purpose: only ``did:key:z`` + base58btc(0xed 0x01 + 32 bytes) is accepted, so a
    DID can never name a key of another type or length that the verifier would misread.
    """
    did = validate_did(did)
    if not did.startswith(_DID_KEY_PREFIX + "z"):
        raise InvalidInputError("not a base58btc did:key (expected 'did:key:z...')")
    raw = b58decode(did[len(_DID_KEY_PREFIX) + 1:])
    if len(raw) != 34 or not raw.startswith(ED25519_MULTICODEC_PREFIX):
        raise InvalidInputError("did:key does not encode an Ed25519 public key")
    key = raw[2:]
    # Weak keys (security review, session 16): for a point of small order an all-zero
    # signature verifies, so anyone could sign as that DID; and a y coordinate at or above p
    # is a second spelling of another key, so two DIDs would name one key.
    if int.from_bytes(key, "little") & ~(1 << 255) >= _ED25519_P:
        raise InvalidInputError("did:key's Ed25519 key is not canonically encoded")
    if key[:31] + bytes([key[31] & 0x7F]) in _SMALL_ORDER_Y:
        raise InvalidInputError("did:key's Ed25519 key is a point of small order")
    if not _on_the_curve(key):
        # Half of all 32-byte strings are no point: no signature can verify for such a DID,
        # so a mistyped ENCODER_DID would pass every check and fail every request (a
        # differential test against key-did-resolver, which refuses them, session 39).
        raise InvalidInputError("did:key's Ed25519 key is not a point of the curve")
    return key


def _on_the_curve(key: bytes) -> bool:
    """Whether ``key`` (a canonical y and the sign of x, RFC 8032 §5.1.3) decodes to a point:
    x² = (y² - 1) / (d·y² + 1) must be a square, and x = 0 must come with a clear sign bit.
    (d·y² + 1 is never 0: -1/d is not a square modulo p.)"""
    p = _ED25519_P
    y = int.from_bytes(key, "little") & ~(1 << 255)
    x_squared = (y * y - 1) * pow(_ED25519_D * y * y + 1, -1, p) % p
    if x_squared == 0:
        return not key[31] >> 7
    return pow(x_squared, (p - 1) // 2, p) == 1


# --------------------------------------------------------------------------- base64 helpers


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str, what: str) -> bytes:
    # JWS segments are unpadded base64url (RFC 7515 §2); padding or other characters mean the
    # token was not produced by a conforming signer, so it is refused rather than repaired.
    if not _B64URL_CHARS.fullmatch(text) or len(text) % 4 == 1:
        raise InvalidInputError(f"JWS {what} is not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"JWS {what} is not unpadded base64url") from None
    if _b64url(data) != text:
        # Unused low bits set in the last character: the same bytes spelt another way. Each
        # token had 15 other spellings anyone could make without the key, which the gateway's
        # own library (dids), PyJWT and joserfc refuse (a differential test, session 39).
        raise InvalidInputError(f"JWS {what} is not canonical base64url (unused bits set)")
    return data


def _canonical_json(payload: Mapping[str, Any]) -> bytes:
    """Sorted keys, compact separators: the shape the ``dids`` library signs (stable objects)."""
    try:
        text = json.dumps(
            payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"JWS payload is not plain JSON: {type(exc).__name__}") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from a mis-decoded error message, say) has no UTF-8 form: the
        # caller's text is refused by name, not with the codec's raw error.
        raise InvalidInputError("JWS payload has text that cannot be encoded as UTF-8 "
                                "(a lone surrogate)") from None


def _strict_json_object(data: bytes, what: str) -> dict[str, Any]:
    """A JWS segment as a JSON object, decoded by :mod:`verifier._strict_json`.

    Duplicate keys and ``NaN``/``Infinity`` are refused: two parsers reading one payload
    differently (``{"job_id":"a","job_id":"b"}``) is how a signed body comes to mean something
    else on the server.
    """
    try:
        value = strict_loads(data)
    except DuplicateKey:
        raise InvalidInputError("JWS JSON has a duplicate key") from None
    except NonStandardConstant as exc:
        raise InvalidInputError(
            f"JWS JSON contains the non-standard constant {exc.constant}"
        ) from None
    except NotStrictJson:
        raise InvalidInputError(f"JWS {what} is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"JWS {what} is not a JSON object")
    return value


# --------------------------------------------------------------------------- the identity


def _decode_seed(value: object) -> bytes:
    """Decode ``ENCODER_PRIVATE_KEY``; messages describe the problem, never the value."""
    if not isinstance(value, str):
        raise ConfigurationError(_SEED_VARIABLE, "must be a base64 string")
    text = value.strip()
    if not text:
        raise ConfigurationError(_SEED_VARIABLE, "is empty")
    if not _SEED_CHARS.fullmatch(text):
        raise ConfigurationError(_SEED_VARIABLE, "is not base64 (standard or URL-safe)")
    # Standard and URL-safe alphabets, padding optional: operators paste both.
    body = text.rstrip("=").replace("-", "+").replace("_", "/")
    if len(body) % 4 == 1:
        raise ConfigurationError(_SEED_VARIABLE, "is not valid base64 (truncated)")
    try:
        seed = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(_SEED_VARIABLE, "is not valid base64") from None
    if len(seed) != 32:
        raise ConfigurationError(
            _SEED_VARIABLE,
            f"must decode to a 32-byte Ed25519 seed; it decodes to {len(seed)} bytes",
        )
    return seed


class EncoderIdentity:
    """An encoder's Ed25519 key and its ``did:key``; signs gateway bodies.

    Build one with :meth:`from_private_key` (the ``ENCODER_PRIVATE_KEY`` setting) or
    :meth:`generate` (tests, emulated encoders). The private key stays inside this object:
    there is no accessor for it and ``repr`` shows only the DID.
    """

    __slots__ = ("_key", "did", "public_key")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise InvalidInputError("EncoderIdentity needs an Ed25519 private key")
        self._key = private_key
        #: The raw 32-byte public key.
        self.public_key: bytes = private_key.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw
        )
        #: ``did:key:z6Mk...``, what the gateway records in ``assigned_to``.
        self.did: str = _did_key_of(self.public_key)

    @classmethod
    def from_private_key(cls, b64: str) -> EncoderIdentity:
        """From ``ENCODER_PRIVATE_KEY``: a base64 (standard or URL-safe, padding optional)
        32-byte seed. Anything else is a :class:`ConfigurationError` naming the variable."""
        return cls.from_seed(_decode_seed(b64))

    @classmethod
    def from_seed(cls, seed: bytes) -> EncoderIdentity:
        """From the raw 32-byte seed."""
        if not isinstance(seed, bytes | bytearray) or len(seed) != 32:
            raise InvalidInputError("an Ed25519 seed is exactly 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(seed)))

    @classmethod
    def generate(cls) -> EncoderIdentity:
        """A fresh random identity (tests, emulation)."""
        return cls(Ed25519PrivateKey.generate())

    @property
    def kid(self) -> str:
        """``did#fragment``, the fragment being the DID's ``z...`` part (as ``dids`` does)."""
        return f"{self.did}#{self.did[len(_DID_KEY_PREFIX):]}"

    def sign_jws(self, payload: Mapping[str, Any]) -> str:
        """A compact JWS over ``payload`` (sorted keys, compact JSON), ``alg: EdDSA``."""
        if not isinstance(payload, Mapping):
            raise InvalidInputError("JWS payload must be a mapping")
        header = _canonical_json({"alg": "EdDSA", "kid": self.kid})
        signing_input = f"{_b64url(header)}.{_b64url(_canonical_json(payload))}"
        signature = self._key.sign(signing_input.encode("ascii"))
        return f"{signing_input}.{_b64url(signature)}"

    def __repr__(self) -> str:
        return f"EncoderIdentity(did={self.did!r})"

    def __reduce__(self) -> Any:
        # Pickling would copy the seed into whatever stores the pickle; refuse it.
        raise TypeError("EncoderIdentity holds a private key and cannot be pickled")


# --------------------------------------------------------------------------- verification


def _split_token(token: object) -> tuple[str, str, str]:
    """(protected, payload, signature) segments of a compact or one-signature general JWS."""
    if isinstance(token, str):
        if len(token) > MAX_JWS_LENGTH:
            raise InvalidInputError("JWS is too long")
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidInputError("JWS must have three dot-separated parts")
        return parts[0], parts[1], parts[2]
    if isinstance(token, Mapping):
        payload = token.get("payload")
        signatures = token.get("signatures")
        if not isinstance(payload, str) or not isinstance(signatures, list):
            raise InvalidInputError("general JWS needs a 'payload' string and 'signatures'")
        if len(signatures) != 1 or not isinstance(signatures[0], Mapping):
            raise InvalidInputError("general JWS must carry exactly one signature")
        if set(signatures[0]) - {"protected", "signature"}:
            # An unprotected "header" may say what the protected one does not (another kid,
            # alg none, crit); RFC 7515 §7.2.1 forbids names in both. Nobody signs with one
            # (dids sends none), so it is refused rather than ignored (session 39).
            raise InvalidInputError("general JWS signature may carry only 'protected' and "
                                    "'signature'")
        if {"protected", "header", "signature"} & set(token):
            raise InvalidInputError("general JWS mixes in flattened members")
        protected = signatures[0].get("protected")
        signature = signatures[0].get("signature")
        if not isinstance(protected, str) or not isinstance(signature, str):
            raise InvalidInputError("general JWS signature needs 'protected' and 'signature'")
        if len(payload) + len(protected) + len(signature) > MAX_JWS_LENGTH:
            raise InvalidInputError("JWS is too long")
        return protected, payload, signature
    raise InvalidInputError(f"JWS must be a string, got {type(token).__name__}")


def verify_jws(token: object) -> tuple[str, dict[str, Any]]:
    """Check a gateway JWS and return ``(did, payload)``; :class:`InvalidInputError` otherwise.

    The DID comes from the protected header's ``kid`` (fragment stripped; when present the
    fragment must be the DID's own key id), the key from the DID itself: whoever holds the key
    can sign, nobody else can, which is all the legacy gateway's authentication amounts to.
    """
    protected_b64, payload_b64, signature_b64 = _split_token(token)
    header = _strict_json_object(_b64url_decode(protected_b64, "header"), "header")
    if header.get("alg") != "EdDSA":
        raise InvalidInputError("JWS alg must be EdDSA")
    if "b64" in header:
        # RFC 7797's unencoded payload: verifiers that know it read another payload than
        # those that do not, from one signed token. Nobody here signs with it.
        raise InvalidInputError("JWS header has b64, which this verifier does not take")
    if "crit" in header:
        # RFC 7515 §4.1.11: extensions we do not implement must make the token invalid.
        raise InvalidInputError("JWS header has critical extensions this verifier does not know")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidInputError("JWS header has no kid")
    did, _, fragment = kid.partition("#")
    if fragment and fragment != did[len(_DID_KEY_PREFIX):]:
        raise InvalidInputError("JWS kid fragment does not name the DID's key")
    public_key = Ed25519PublicKey.from_public_bytes(did_key_public_key(did))
    signature = _b64url_decode(signature_b64, "signature")
    if len(signature) != 64:
        raise InvalidInputError("JWS signature is not an Ed25519 signature")
    payload_bytes = _b64url_decode(payload_b64, "payload")
    try:
        public_key.verify(signature, f"{protected_b64}.{payload_b64}".encode("ascii"))
    except InvalidSignature:
        raise InvalidInputError("JWS signature does not verify") from None
    return did, _strict_json_object(payload_bytes, "payload")

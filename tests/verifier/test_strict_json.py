"""Tests of :mod:`verifier._strict_json`, the one strict JSON decoder.

The REST answers (``_http.read_json``) and signed gateway bodies (``verify_jws``) both decode
with it; how each maps a refusal is tested in ``test_http.py`` and ``test_identity.py``.
"""

from __future__ import annotations

import json

import pytest

from verifier._strict_json import (
    DuplicateKey,
    NonStandardConstant,
    NotStrictJson,
    strict_loads,
)


@pytest.mark.parametrize(
    "value",
    [{"job_id": "j", "pct": 1.5, "nested": {"a": [1, None, True]}}, [], "text", 0, None],
)
def test_plain_json_decodes_as_json_does(value: object) -> None:
    data = json.dumps(value).encode("utf-8")
    assert strict_loads(data) == value == json.loads(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"job_id":"a","job_id":"b"}',
        b'{"outer":{"k":1,"k":1}}',
        b'[{"a":1},{"b":2,"b":3}]',
    ],
)
def test_duplicate_keys_are_refused_at_any_depth(data: bytes) -> None:
    with pytest.raises(DuplicateKey):
        strict_loads(data)
    assert json.loads(data)  # what a lenient parser would have accepted


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_constants_are_refused(constant: str) -> None:
    with pytest.raises(NonStandardConstant) as info:
        strict_loads(b'{"pct":%s}' % constant.encode())
    assert info.value.constant == constant
    # The whole message: an exception's args alone would also show the constant.
    assert str(info.value) == f"non-standard JSON constant {constant}"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"job_id=j",
        b'{"a":1} trailing',
        b'\xff{"a":1}',
        '\ufeff{"a":1}'.encode(),  # a BOM is not JSON text
        b"[" * 100_000 + b"]" * 100_000,  # too deep to parse
        b'{"n":' + b"1" * 5000 + b"}",  # an integer too long to convert
    ],
    ids=["empty", "truncated", "not-json", "trailing", "not-utf8", "bom", "deep", "huge-int"],
)
def test_everything_else_refused_is_not_strict_json(data: bytes) -> None:
    with pytest.raises(NotStrictJson) as info:
        strict_loads(data)
    assert type(info.value) is NotStrictJson
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_every_refusal_is_a_value_error_that_never_quotes_the_text() -> None:
    assert issubclass(NotStrictJson, ValueError)
    assert issubclass(DuplicateKey, NotStrictJson)
    assert issubclass(NonStandardConstant, NotStrictJson)
    for data in (b'{"s3cret":1,"s3cret":2}', b'{"k":"s3cret"', b'{"s3cret":NaN}'):
        with pytest.raises(NotStrictJson) as info:
            strict_loads(data)
        assert "s3cret" not in str(info.value) and "s3cret" not in repr(info.value)


@pytest.mark.parametrize("text", [b"1e999", b"[-1e999]", b'{"a": 1E400}'])
def test_numbers_too_large_for_a_float_are_refused_not_infinity(text):
    with pytest.raises(NonStandardConstant):
        strict_loads(text)


@pytest.mark.parametrize(("text", "constant"), [
    (b"1" + b"0" * 309, "Infinity"), (b"-1" + b"0" * 400, "-Infinity"), (b"-1e400", "-Infinity"),
])
def test_an_integer_a_javascript_peer_reads_as_infinity_is_refused(text: bytes,
                                                                  constant: str) -> None:
    """Node reads 1 and 309 zeros as Infinity (a double cannot hold it); it was an exact int
    here (session 39, a differential test against Node). Node's own edge: 2**1024 - 2**970
    is Infinity, one less is the largest double."""
    with pytest.raises(NonStandardConstant) as info:
        strict_loads(text)
    assert info.value.constant == constant
    assert strict_loads(str(2**1024 - 2**970 - 1).encode()) == 2**1024 - 2**970 - 1
    with pytest.raises(NonStandardConstant):
        strict_loads(str(2**1024 - 2**970).encode())
    assert strict_loads(b"9007199254740993") == 9007199254740993  # exact, as before

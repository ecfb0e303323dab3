"""Strict JSON decoding of what other parties send: one reading, or a refusal.

Two places decode JSON someone else wrote: the REST clients (:func:`verifier._http.read_json`,
the services' answers) and :func:`~verifier.verify_jws` (a signed gateway body). Both refuse
what a lenient parser would read one way and another parser another way, because that is how a
body comes to mean something other than what was checked:

* a **duplicate key** (``{"job_id": "a", "job_id": "b"}``): Python keeps the last, other
  parsers the first;
* the **non-standard constants** ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON,
  and numbers too large for a float (``1e999``), which would decode to infinity all the same;
* anything else :func:`json.loads` refuses, text that is not UTF-8, nesting too deep to parse,
  and integers too long to convert: all are :class:`NotStrictJson`, never another exception.

The caller decides what a refusal means (a malformed answer, a forged token); messages here
describe the problem and never quote the text.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["DuplicateKey", "NonStandardConstant", "NotStrictJson", "strict_loads"]


class NotStrictJson(ValueError):
    """The bytes are not strict JSON (the message never quotes them)."""


class DuplicateKey(NotStrictJson):
    """An object names the same key twice."""


class NonStandardConstant(NotStrictJson):
    """``NaN``, ``Infinity`` or ``-Infinity``; ``constant`` says which."""

    def __init__(self, constant: str) -> None:
        self.constant = constant
        super().__init__(f"non-standard JSON constant {constant}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey("duplicate key")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise NonStandardConstant(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):
        # 1e999: an infinity spelled as a number.
        raise NonStandardConstant("-Infinity" if value < 0 else "Infinity")
    return value


def _finite_int(text: str) -> int:
    """An integer a JavaScript peer reads as a finite number: one that rounds to a double.
    A larger one (1 and 309 zeros) is Infinity to the Node servers, and was an exact int
    here (a differential test against Node, session 39); refused like 1e400. The int itself
    is kept: below 2**53 every one is exact for both."""
    value = int(text)
    try:
        float(value)  # rounds as JavaScript's Number does; OverflowError where it is Infinity
    except OverflowError:
        raise NonStandardConstant("-Infinity" if value < 0 else "Infinity") from None
    return value


def strict_loads(data: bytes) -> Any:
    """Decode UTF-8 JSON strictly; :class:`NotStrictJson` (or a subclass) on any problem."""
    try:
        return json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_finite_int,
        )
    except NotStrictJson:
        raise
    except UnicodeDecodeError:
        raise NotStrictJson("not UTF-8") from None
    except (ValueError, RecursionError):  # JSONDecodeError, too-long integers, deep nesting
        raise NotStrictJson("not JSON") from None

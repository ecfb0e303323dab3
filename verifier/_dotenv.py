"""The ``.env`` file: ``KEY=VALUE`` lines, read the way the encoder's ``dotenv`` read them.

This is the only reader of ``.env`` in :mod:`verifier`; :meth:`~verifier.Settings.from_env`
calls :func:`read_dotenv` and decides what the values mean. The file may hold
``ENCODER_PRIVATE_KEY`` and ``MONGODB_URI``, so no error repeats a value: a malformed line is
a :class:`~verifier.ConfigurationError` whose ``variable`` is ``"<file>:<line>"`` and whose
message may name the key, and library exceptions (which may quote the text) are not chained.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

from ._errors import ConfigurationError

__all__ = ["parse_dotenv", "read_dotenv"]

_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _unquote(raw: str, where: str, key: str) -> str:
    """The value part of a ``.env`` line: quoted (single: literal; double: escapes) or bare."""
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        chars: list[str] = []
        i = 1
        while i < len(raw):
            char = raw[i]
            if char == quote:
                rest = raw[i + 1:].strip()
                if rest and not rest.startswith("#"):
                    raise ConfigurationError(where, f"{key}: text after the closing quote")
                return "".join(chars)
            if quote == '"' and char == "\\" and i + 1 < len(raw):
                nxt = raw[i + 1]
                chars.append(_ESCAPES.get(nxt, "\\" + nxt))
                i += 2
                continue
            chars.append(char)
            i += 1
        kind = "double" if quote == '"' else "single"
        raise ConfigurationError(where, f"{key}: unterminated {kind} quote")
    # A bare value ends at " #" (an inline comment); a '#' inside the value is kept.
    value = re.split(r"\s#", raw, maxsplit=1)[0].strip()
    if any(c in value for c in "'\""):
        raise ConfigurationError(where, f"{key}: quote inside an unquoted value")
    return value


def parse_dotenv(text: str, *, source: str = ".env") -> dict[str, str]:
    """Parse ``.env`` text: ``KEY=VALUE`` lines, optional ``export``, ``#`` comments, quotes.

    A malformed line raises :class:`ConfigurationError` whose ``variable`` is
    ``"<source>:<line>"``; the message may name the key but never repeats the value (the line
    may hold ``ENCODER_PRIVATE_KEY``). Later lines override earlier ones, as in a shell.
    """
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{source}:{number}"
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export ") or stripped.startswith("export\t"):
            stripped = stripped[len("export"):].lstrip()
        key, sep, raw = stripped.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigurationError(where, "expected KEY=VALUE")
        if not _KEY.fullmatch(key):
            raise ConfigurationError(where, "the name before '=' is not a valid variable name")
        values[key] = _unquote(raw.strip(), where, key)
    return values


def read_dotenv(path: str | os.PathLike[str]) -> dict[str, str]:
    """The variables of the file at ``path``; a missing file is no configuration, not an error."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError:
        raise ConfigurationError(str(file), "is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigurationError(str(file), f"cannot be read ({type(exc).__name__})") from None
    return parse_dotenv(text, source=str(file))

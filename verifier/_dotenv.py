"""The ``.env`` file: ``KEY=VALUE`` lines, read the way the encoder's ``dotenv`` read them.

This is the only reader of ``.env`` in :mod:`verifier`; :meth:`~verifier.Settings.from_env`
calls :func:`read_dotenv` and decides what the values mean. The file may hold
``ENCODER_PRIVATE_KEY`` and ``MONGODB_URI``, so no error repeats a value: a malformed line is
a :class:`~verifier.ConfigurationError` whose ``variable`` is ``"<file>:<line>"`` and whose
message may name the key, and library exceptions (which may quote the text) are not chained.

Given the settings' names (``known``), a name of one of their families (``GATEWAY_``,
``ENCODER_``, ``MONGODB_``, ``DATABASE_``, ``VERIFIER_``) that is not one of them is named by
line: refused for ``VERIFIER_``, a warning for the others (see :func:`_check_name`).
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import Final

from ._errors import ConfigurationError

__all__ = ["parse_dotenv", "read_dotenv"]

_LOGGER: Final = logging.getLogger("verifier.settings")
#: How alike (difflib's ratio) a name must be to a setting to be called its misspelling:
#: typos score 0.9 and above, other programs' names (ENCODER_PUBLIC_KEY) 0.76 and below.
_HINT_CUTOFF: Final = 0.85
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


def _families(known: Collection[str]) -> tuple[str, ...]:
    """The first words of the ``known`` names, with their ``_``: ``GATEWAY_``, ``VERIFIER_``..."""
    return tuple(sorted({name.partition("_")[0] + "_" for name in known if "_" in name}))


def _check_name(key: str, known: Collection[str], families: tuple[str, ...],
                where: str) -> None:
    """A name that looks like one of the settings (same first word) but is none of them: a
    ``VERIFIER_*`` one is refused, as in the environment (those are this program's alone); any
    other is named in a warning (``DOTENV_UNKNOWN_NAME``), with the setting it may mean.

    Warned about, not refused: a ``.env`` is often the 3Speak encoder's own, shared with this
    runner, with names of its that are no setting of ours (``ENCODER_PUBLIC_KEY``,
    ``GATEWAY_AID_PRIMARY``), and refusing them would stop a working node at its upgrade. Not
    silent either: a misspelt ``GATEWAY_MONITR_ENABLED`` left the monitor off while the
    operator believed it on (operator review, session 16). Never the value: it may be a key.
    """
    if key in known or not key.startswith(families):
        return
    # A hint only for a typo: at difflib's default cutoff (0.6) the encoder's own
    # ENCODER_PUBLIC_KEY was told to mean ENCODER_PRIVATE_KEY (review, session 16).
    close = difflib.get_close_matches(key, known, n=1, cutoff=_HINT_CUTOFF)
    hint = f": did you mean {close[0]}?" if close else ""
    if key.startswith("VERIFIER_"):
        raise ConfigurationError(where, f"{key} is not a setting of this verifier"
                                        f"{hint or ' (misspelt?)'}")
    _LOGGER.warning("DOTENV_UNKNOWN_NAME: %s: %s is not a setting of this verifier%s "
                    "(ignored)", where, key, hint)


def parse_dotenv(
    text: str, *, source: str = ".env", known: Collection[str] | None = None
) -> dict[str, str]:
    """Parse ``.env`` text: ``KEY=VALUE`` lines, optional ``export``, ``#`` comments, quotes.

    A malformed line raises :class:`ConfigurationError` whose ``variable`` is
    ``"<source>:<line>"``; the message may name the key but never repeats the value (the line
    may hold ``ENCODER_PRIVATE_KEY``). Later lines override earlier ones, as in a shell.
    With ``known`` (the settings' names), a name that shares its first word with one of them
    but is none of them is refused (``VERIFIER_*``) or warned about (:func:`_check_name`).
    """
    families = _families(known) if known is not None else ()
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
        if known is not None:
            _check_name(key, known, families, where)
        values[key] = _unquote(raw.strip(), where, key)
    return values


def read_dotenv(
    path: str | os.PathLike[str], *, known: Collection[str] | None = None
) -> dict[str, str]:
    """The variables of the file at ``path``; a missing file is no configuration, not an error.

    ``known``: as for :func:`parse_dotenv`."""
    file = Path(path)
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) is dropped, not read as
        # part of the first name, which then "is not a valid variable name" on a line that
        # looks right (operator review). A BOM anywhere else is still refused.
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError:
        raise ConfigurationError(str(file), "is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigurationError(str(file), f"cannot be read ({type(exc).__name__})") from None
    return parse_dotenv(text, source=str(file), known=known)

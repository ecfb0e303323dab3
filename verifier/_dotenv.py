"""The ``.env`` file: ``KEY=VALUE`` lines, read the way the encoder's ``dotenv`` read them.

This is the only reader of ``.env`` in :mod:`verifier`; :meth:`~verifier.Settings.from_env`
calls :func:`read_dotenv` and decides what the values mean. The file may hold
``ENCODER_PRIVATE_KEY`` and ``MONGODB_URI``, so no error repeats a value: a malformed line is
a :class:`~verifier.ConfigurationError` whose ``variable`` is ``"<file>:<line>"`` and whose
message may name the key, and library exceptions (which may quote the text) are not chained.

Given the settings' names (``known``), a name of one of their families (``GATEWAY_``,
``ENCODER_``, ``MONGODB_``, ``DATABASE_``, ``VERIFIER_``) or close to one of them (any first
word, any case) that is not one of them is named by line: refused when it is surely meant for
this program (``VERIFIER_``, or a setting's name in another case), a warning for the others
(see :func:`_check_name`).
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Final

from ._errors import ConfigurationError

__all__ = ["close_setting", "parse_dotenv", "read_dotenv", "shown_name"]

_LOGGER: Final = logging.getLogger("verifier.settings")
#: How alike (difflib's ratio) a name must be to a setting to be called its misspelling:
#: typos score 0.9 and above, other programs' names (ENCODER_PUBLIC_KEY) 0.76 and below.
_HINT_CUTOFF: Final = 0.85
_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The only escapes Node's dotenv expands, in double-quoted values alone, scanning left to
#: right (``\\n`` is a backslash, then a line feed, as there).
_DOUBLE_QUOTED_ESCAPE: Final = re.compile(r"\\[nr]")
#: The line breaks of a ``.env`` file, as dotenv and a shell know them. Not
#: ``str.splitlines()``, which also breaks at U+0085, U+2028, U+2029, \x0b, \x0c and
#: \x1c-\x1e: ``# comment<U+0085>VERIFIER_CHAIN=trust-gateway`` is one comment line to an
#: editor and to the encoder's dotenv, and it set the chain here (adversarial review).
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")
_ZERO_WIDTH_NO_BREAK: Final = "\ufeff"


def _control_character(line: str) -> str | None:
    """The first character of ``line`` that has no business in a ``.env`` line (a control
    character other than tab, a line or paragraph separator, or U+FEFF), as ``U+XXXX``; else
    None. U+FEFF because JavaScript's ``trim()`` takes it for whitespace and Python's
    ``strip()`` does not: ``KEY=x<U+FEFF>`` was ``x`` to the encoder and ``x<U+FEFF>`` here
    (a differential test against Node's dotenv 16 and 17, session 39). A byte-order mark
    that starts the file is dropped before (:func:`read_dotenv`)."""
    for char in line:
        if char != "\t" and (unicodedata.category(char) in ("Cc", "Zl", "Zp")
                             or char == _ZERO_WIDTH_NO_BREAK):
            return f"U+{ord(char):04X}"
    return None


def _unquote(raw: str, where: str, key: str) -> str:
    """The value part of a ``.env`` line: quoted (single or double) or bare.

    As Node's dotenv (v16, the encoder's) reads it: a backslash right before the quote keeps
    that quote from closing the value and stays in it; in double quotes ``\\n`` and ``\\r``
    become a line feed and a carriage return, and every other backslash stays as written (no
    ``\\t``, ``\\\\`` or ``\\"`` escapes). Until session 39 this reader also turned ``\\t``,
    ``\\\\`` and ``\\"`` into one character each, so a value holding them differed from the
    encoder's reading of the same file, and ``'it\\'s'`` was refused.

    A backtick-quoted value is refused: Node's dotenv (the encoder's) strips the backticks,
    and keeping them as part of the value would make this runner read another value than the
    encoder from the same file."""
    if raw[:1] == "`":
        raise ConfigurationError(where, f"{key}: backtick quotes are not supported here (the "
                                        "encoder's dotenv strips them): use ' or \"")
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        i = 1
        while i < len(raw):
            if raw.startswith("\\" + quote, i):
                i += 2  # an escaped quote: part of the value, backslash and all
                continue
            if raw[i] == quote:
                rest = raw[i + 1:].strip()
                if rest and not rest.startswith("#"):
                    raise ConfigurationError(where, f"{key}: text after the closing quote")
                value = raw[1:i]
                return _DOUBLE_QUOTED_ESCAPE.sub(_expand, value) if quote == '"' else value
            i += 1
        kind = "double" if quote == '"' else "single"
        raise ConfigurationError(where, f"{key}: unterminated {kind} quote")
    # A bare value ends at its first '#', as in Node's dotenv: a comment when the '#' starts
    # the value or follows whitespace. One glued to the value ("p#ss") is refused: the encoder
    # would read the value cut there, which is surely not what was meant (until session 39
    # this reader kept it, and read "p#ss" where the encoder read "p"; also "KEY= # note"
    # was "# note" here and empty there).
    value, hash_sign, _ = raw.partition("#")
    if hash_sign and value and not value[-1].isspace():
        raise ConfigurationError(where, f"{key}: '#' inside an unquoted value (the encoder's "
                                        "dotenv ends the value there): quote the value, or "
                                        "put a space before a comment")
    value = value.strip()
    if any(c in value for c in "'\""):
        raise ConfigurationError(where, f"{key}: quote inside an unquoted value")
    return value


def _expand(match: re.Match[str]) -> str:
    return "\n" if match.group() == "\\n" else "\r"


def _families(known: Collection[str]) -> tuple[str, ...]:
    """The first words of the ``known`` names, with their ``_``: ``GATEWAY_``, ``VERIFIER_``..."""
    return tuple(sorted({name.partition("_")[0] + "_" for name in known if "_" in name}))


def close_setting(name: str, known: Collection[str]) -> str | None:
    """The setting ``name`` (no setting itself) may be a misspelling of: the same name in
    another case, else the one most alike (difflib's ratio at least :data:`_HINT_CUTOFF`),
    compared case-insensitively and whatever the first word; ``None`` when none is.

    Whatever the first word: ``VERIFER_RECHECK_INTERVAL_S`` and ``GATWAY_AID_ENABLED`` share
    no first word with a setting, and were ignored without a word while the operator
    believed them in force (adversarial review). The cutoff stays high: the environment and
    the encoder's ``.env`` hold other programs' names (PATH, ENCODER_PUBLIC_KEY...)."""
    if name in known:
        return None
    by_upper = {setting.upper(): setting for setting in known}
    if name.upper() in by_upper:
        return by_upper[name.upper()]
    close = difflib.get_close_matches(name.upper(), by_upper, n=1, cutoff=_HINT_CUTOFF)
    return by_upper[close[0]] if close else None


#: A word of a variable's name as people write them: upper case, lower case or capitalised,
#: with digits; no longer than the longest word of a setting's name (VERIFICATION) by much.
_NAME_WORD: Final = re.compile(r"[A-Z0-9]{1,16}|[a-z0-9]{1,16}|[A-Z][a-z0-9]{1,15}")


def shown_name(name: str, families: Collection[str] = ()) -> str:
    """A variable's name for a message or a log line: itself when it looks like a name, else
    its length (and its first word when that is one of ``families``, ``VERIFIER_``...).

    A name can hold a secret: ``ENCODER_PRIVATE_KEY<key>=`` (the ``=`` forgotten, a base64
    key's own ``=`` ending the line) is a valid name, which the unknown-name warning
    repeated whole into the log (adversarial review). A setting's name is words of one case
    joined by ``_``; a key, a token or a password glued to one is a long or mixed-case run."""
    words = name.split("_")
    if len(name) <= 64 and all(not w or _NAME_WORD.fullmatch(w) for w in words):
        return name
    first = words[0] + "_"
    start = f" starting {first}" if len(words) > 1 and first in families else ""
    return (f"a name of {len(name)} characters{start} (the rest not shown: it may hold a "
            "secret)")


def _check_name(key: str, known: Collection[str], families: tuple[str, ...],
                where: str) -> None:
    """A name that is none of the settings but looks like one. Refused (by line) when it is
    this program's for sure: a ``VERIFIER_*`` name in any case (those are this program's
    alone, as in the environment), a setting's name in another case (``verifier_chain``:
    names are case-sensitive, and the setting would silently keep its default), or a near
    miss of a ``VERIFIER_*`` setting (``VERIFER_RECHECK_INTERVAL_S``). Any other near miss
    (``GATWAY_AID_ENABLED``), or a name of one of the settings' families, is named in a
    warning (``DOTENV_UNKNOWN_NAME``), with the setting it may mean.

    Warned about, not refused: a ``.env`` is often the 3Speak encoder's own, shared with this
    runner, with names of its that are no setting of ours (``ENCODER_PUBLIC_KEY``,
    ``GATEWAY_AID_PRIMARY``), and refusing them would stop a working node at its upgrade. Not
    silent either: a misspelt ``GATEWAY_MONITR_ENABLED`` left the monitor off while the
    operator believed it on (operator review, session 16). Never the value: it may be a key.
    """
    if key in known:
        return
    # A hint only for a typo: at difflib's default cutoff (0.6) the encoder's own
    # ENCODER_PUBLIC_KEY was told to mean ENCODER_PRIVATE_KEY (review, session 16).
    meant = close_setting(key, known)
    case_only = meant is not None and meant.upper() == key.upper()
    hint = f": did you mean {meant}?" if meant else ""
    if case_only:
        hint += " (names are case-sensitive)"
    shown = shown_name(key, (*families, "VERIFIER_"))
    if (key.upper().startswith("VERIFIER_") or case_only
            or (meant is not None and meant.startswith("VERIFIER_"))):
        raise ConfigurationError(where, f"{shown} is not a setting of this verifier"
                                        f"{hint or ' (misspelt?)'}")
    if meant is None and not key.startswith(families):
        return  # another program's name
    _LOGGER.warning("DOTENV_UNKNOWN_NAME: %s: %s is not a setting of this verifier%s "
                    "(ignored)", where, shown, hint)


def parse_dotenv(
    text: str, *, source: str = ".env", known: Collection[str] | None = None
) -> dict[str, str]:
    """Parse ``.env`` text: ``KEY=VALUE`` lines, optional ``export``, ``#`` comments, quotes.

    A malformed line raises :class:`ConfigurationError` whose ``variable`` is
    ``"<source>:<line>"``; the message may name the key but never repeats the value (the line
    may hold ``ENCODER_PRIVATE_KEY``). Later lines override earlier ones, as in a shell.
    With ``known`` (the settings' names), a name that shares its first word with one of them,
    or is close to one, but is none of them is refused or warned about (:func:`_check_name`).
    """
    families = _families(known) if known is not None else ()
    values: dict[str, str] = {}
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
        where = f"{source}:{number}"
        bad = _control_character(line)
        if bad is not None:
            # The character's code, never the line: it may hold a key (comments too).
            raise ConfigurationError(where, f"contains the control character {bad} (only "
                                            "tabs and \\n, \\r\\n or \\r line ends are "
                                            "allowed)")
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
        if key == "__proto__":
            # Node's dotenv drops it without a word (an object's prototype, not a key).
            raise ConfigurationError(where, "__proto__ is not a name the encoder's dotenv "
                                            "can set")
        if known is not None:
            _check_name(key, known, families, where)
        values[key] = _unquote(raw.strip(), where, key)
    return values


def read_dotenv(
    path: str | os.PathLike[str], *, known: Collection[str] | None = None,
    sensitive: Callable[[str, str], bool] | None = None,
) -> dict[str, str]:
    """The variables of the file at ``path``; a missing file is no configuration, not an error.

    ``known``: as for :func:`parse_dotenv`. ``sensitive(name, value)`` tells which variables
    hold a credential (the caller knows what the names mean); when one does and the file's
    group or others may read it, a warning (``DOTENV_READABLE``) names the file, its mode
    and those variables, never their values (:func:`_warn_if_readable`)."""
    file = Path(path)
    try:
        # The mode of the file read (fstat of the open file), not of whatever the path names
        # a moment later.
        with file.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read()
        # utf-8-sig: a byte-order mark (Windows editors write one) is dropped, not read as
        # part of the first name, which then "is not a valid variable name" on a line that
        # looks right (operator review). A BOM anywhere else is still refused.
        text = data.decode("utf-8-sig")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError:
        raise ConfigurationError(str(file), "is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigurationError(str(file), f"cannot be read ({type(exc).__name__})") from None
    values = parse_dotenv(text, source=str(file), known=known)
    if sensitive is not None:
        _warn_if_readable(file, mode, [name for name, value in values.items()
                                       if sensitive(name, value)])
    return values


def _warn_if_readable(file: Path, mode: int, credentials: list[str]) -> None:
    """``DOTENV_READABLE``, when ``credentials`` (names of the file's variables that hold
    one) is not empty and the file's group or others may read it, as ssh and libpq warn of
    a private key or a password file others can read: anyone else on the host (or in the
    container) could take the node's key or database password from it.

    A warning, never a refusal: in containers the file's mode is often whatever the image or
    the volume gave it, and a node that stopped over it would be a node down, not a key
    safer. Named by file, mode and variable names; never the values. POSIX modes only."""
    exposed = mode & (stat.S_IRGRP | stat.S_IROTH)
    if os.name != "posix" or not stat.S_ISREG(mode) or not exposed or not credentials:
        return
    readers = {stat.S_IRGRP: "its group", stat.S_IROTH: "other users"}.get(
        exposed, "its group and other users")
    _LOGGER.warning("DOTENV_READABLE: %s holds credentials (%s) and can be read by %s "
                    "(mode %04o): restrict it with chmod 600 %s (a warning only: the node "
                    "starts)", file, ", ".join(sorted(credentials)), readers,
                    stat.S_IMODE(mode), file)

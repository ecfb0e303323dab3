"""Untrusted text made safe for one log line or one terminal line.

Job ids, owners, statuses and error codes come from servers we do not trust (a hostile
monitor, gateway or Gateway Aid, or a stored document). Written raw into a log record, a
newline in them forges a whole log line ("... MONITOR_CONFIRMED: Job j is assigned to us"),
and an escape sequence rewrites what the operator's terminal shows. Every character Python
does not call printable (Unicode categories C and Z except the space: controls, C1 controls
such as NEL, format and bidi characters, line and paragraph separators) is escaped as
``\\xNN`` / ``\\uNNNN``, and the length is bounded, so one record stays one line of
readable size.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Final

__all__ = ["DEFAULT_LIMIT", "FIELD_LIMIT", "SECRET_RUN", "conceal", "printable"]

#: Longer texts are cut (with "...") before escaping: a 1 MiB owner string is not a log line.
DEFAULT_LIMIT: Final = 2000
#: For one ``key=value`` field of a structured log record (an id, a tier, an owner).
FIELD_LIMIT: Final = 300


def printable(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """``str(value)``, cut to ``limit`` characters, every non-printable character escaped."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():
        return text  # the common case, at C speed
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def conceal(text: str, secrets: Iterable[str], limit: int | None = None) -> str:
    """``text`` with each secret taken out (its text replaced by ``***``), then cut to
    ``limit`` characters (with "...") if one is given. For what a server says back: one that
    quotes the request's ``Authorization`` header in its error (a debugging page, a proxy)
    would otherwise have our credential logged (an adversarial review, session 44).

    What counts as the secret shown (an adversarial review, session 46: exact text only let
    every re-encoding through):

    * the secret however it is escaped, character by character and in any mix:
      percent-encoding (``p%40ss``, either case of hex, ``+`` for a space), JSON and
      Python escapes (``\\u0040``, a ``\\ud83d\\ude00`` pair for a character past U+FFFF,
      ``\\/``, ``\\x40``, a backslash before a quote or a backslash), HTML character
      references (``&#64;``, ``&#x40;``, ``&commat;``, ``&amp;``);
    * any run of :data:`SECRET_RUN` or more of its characters, in the same encodings: a
      server that cut its message at a length limit left a long prefix, one that split it
      across lines or fields left two halves, and a long piece of a password or a token is
      most of it. A secret shorter than that is taken out whole wherever it appears, however
      short: a log line mangled beats a password shown.

    Overlapping and adjacent matches become one ``***``; the rest of the text keeps its shape.
    Concealing comes before the cut: cut first, a secret straddling the limit left its start
    (session 45). A text longer than what ``limit`` can show is read only so far (its first
    :data:`_READ_AHEAD` characters), and the last stretch of that, where a secret could be cut
    by the reading, is dropped unshown: a hostile server's 1 MiB error costs no more than a
    short one.
    """
    wanted = _secret_forms(tuple(secrets))
    if not wanted:
        return _cut(text, limit)
    if limit is not None and len(text) > _READ_AHEAD + limit:
        # Read so far and a margin more, which holds the whole of any secret that starts
        # before the end of what is kept: one cut short by the reading is in the margin only.
        # (``wanted`` is bytes: the margin is per byte, as _ENCODED_WIDTH.)
        kept = _READ_AHEAD + limit
        margin = _ENCODED_WIDTH * (max(len(s) for s in wanted) + 1)
        spans = _secret_spans(text[:kept + margin], wanted)
        return _cut(_replaced(text[:kept], _clipped(spans, kept)), limit, always=True)
    return _cut(_replaced(text, _secret_spans(text, wanted)), limit)


#: A run of at least this many characters (bytes of UTF-8, decoded) of a secret counts as
#: the secret shown. Shorter runs are left: 7 characters of a random token are not the
#: token, and concealing every short piece of a password ("pass", "word") would blank
#: ordinary words out of every message. A secret this long or shorter is matched whole.
SECRET_RUN: Final = 8
#: The most characters one byte of a secret (UTF-8) takes in any encoding recognised here:
#: how far past what is shown a secret may reach. The longest unit :data:`_UNIT` reads, a
#: character reference with a 31-letter name, which decodes to at least one byte. It was 10
#: (``\\U0001f600``), but ``&DiacriticalGrave;`` is one byte (a backtick) in 18: a short
#: secret of backticks straddling the read-ahead had its first characters shown (an
#: adversarial review, session 46).
_ENCODED_WIDTH: Final = 33
#: How much of a long text is read before ``limit``: enough that what is concealed (which
#: shortens the text) still leaves ``limit`` characters to show.
_READ_AHEAD: Final = 4096

#: One character of a text as a server may have encoded it: percent-encoding, JSON and
#: Python escapes, HTML character references, or the character itself.
_UNIT: Final = re.compile(
    r"%(?P<pct>[0-9A-Fa-f]{2})"
    r"|\\u(?P<high>[dD][89abAB][0-9A-Fa-f]{2})\\u(?P<low>[dD][c-fC-F][0-9A-Fa-f]{2})"
    r"|\\u(?P<u4>[0-9A-Fa-f]{4})"
    r"|\\U(?P<u8>[0-9A-Fa-f]{8})"
    r"|\\x(?P<x2>[0-9A-Fa-f]{2})"
    r"|&#(?P<dec>[0-9]{1,7});"
    r"|&#[xX](?P<hex>[0-9A-Fa-f]{1,6});"
    r"|&(?P<name>[A-Za-z][A-Za-z0-9]{1,31});"
    r"|\\(?P<esc>[^uUx])"
    r"|(?P<char>.)",
    re.DOTALL,
)
#: The one-letter escapes of JSON and Python; any other escaped character is itself.
_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0"}


def _canonical(raw: bytes) -> bytes:
    # Form encoding writes a space as "+": the two are one character here, in the secret
    # and in the text alike (a "+" in a password matches a space too: concealing more).
    return raw.replace(b" ", b"+")


def _secret_forms(secrets: tuple[str, ...]) -> tuple[bytes, ...]:
    """Each non-empty secret as UTF-8, canonical (:func:`_canonical`), longest first."""
    forms = {_canonical(s.encode("utf-8", "surrogatepass")) for s in secrets if s}
    return tuple(sorted(forms, key=len, reverse=True))


def _decoded(text: str) -> tuple[bytes, list[int], list[int]]:
    """``text`` with every encoded character decoded (:data:`_UNIT`), as canonical UTF-8
    bytes (a percent-encoded byte is that byte: ``%C3%A9`` is one character's UTF-8), and for
    each byte the start and the end in ``text`` of the unit it came from."""
    out = bytearray()
    starts: list[int] = []
    ends: list[int] = []
    position = 0
    while position < len(text):
        unit = _UNIT.match(text, position)
        assert unit is not None  # the last alternative matches any character
        end = unit.end()
        raw = _unit_bytes(unit)
        if raw is None:  # "&word;" that is no entity, a code point out of range: as written
            end = position + 1
            raw = text[position].encode("utf-8", "surrogatepass")
        raw = _canonical(raw)
        out += raw
        starts += [position] * len(raw)
        ends += [end] * len(raw)
        position = end
    return bytes(out), starts, ends


def _unit_bytes(unit: re.Match[str]) -> bytes | None:
    kind = unit.lastgroup or "char"
    value = unit.group(kind)
    if kind == "pct":
        return bytes([int(value, 16)])
    if kind == "low":
        # JSON's escape of a character past U+FFFF: its UTF-16 pair (``json.dumps`` writes
        # U+1F600 as ``\ud83d\ude00``), one character. Decoded half by half, each half was a
        # lone surrogate and no secret holding the character matched (session 46).
        high = int(unit.group("high"), 16) - 0xD800
        return chr(0x10000 + (high << 10) + int(value, 16) - 0xDC00).encode("utf-8")
    if kind == "char":
        char = value
    elif kind == "esc":
        char = _ESCAPES.get(value, value)
    elif kind == "name":
        char = html.unescape(f"&{value};")
        if char == f"&{value};":
            return None
    else:
        code = int(value, 10 if kind == "dec" else 16)
        if code > 0x10FFFF:
            return None
        char = chr(code)
    return char.encode("utf-8", "surrogatepass")


def _secret_spans(text: str, wanted: tuple[bytes, ...]) -> list[tuple[int, int]]:
    """Where in ``text`` a secret, or a run of :data:`SECRET_RUN` bytes of one, appears:
    as written (a password written percent-encoded in its URL is a secret as written), and
    decoded (:func:`_decoded`)."""
    if text.isascii():  # the common case: one byte a character
        literal = _canonical(text.encode("ascii"))
        offsets = list(range(len(text)))
    else:
        chunks = bytearray()
        offsets = []
        for index, char in enumerate(text):
            raw = _canonical(char.encode("utf-8", "surrogatepass"))
            chunks += raw
            offsets += [index] * len(raw)
        literal = bytes(chunks)
    views = [(literal, offsets, [o + 1 for o in offsets])]
    if any(mark in text for mark in "%\\&"):  # else nothing is encoded: the same view
        views.append(_decoded(text))
    return [(starts[first], ends[last - 1])
            for view, starts, ends in views for first, last in _matches(view, wanted)]


def _matches(view: bytes, wanted: tuple[bytes, ...]) -> list[tuple[int, int]]:
    """The byte ranges of ``view`` that are a whole short secret or a run of at least
    :data:`SECRET_RUN` bytes of a longer one."""
    found: list[tuple[int, int]] = []
    runs: set[bytes] = set()
    for secret in wanted:
        if len(secret) <= SECRET_RUN:
            start = view.find(secret)
            while start >= 0:
                found.append((start, start + len(secret)))
                start = view.find(secret, start + 1)
        else:
            runs.update(secret[i:i + SECRET_RUN] for i in range(len(secret) - SECRET_RUN + 1))
    if runs:
        found += [(i, i + SECRET_RUN) for i in range(len(view) - SECRET_RUN + 1)
                  if view[i:i + SECRET_RUN] in runs]
    return found


def _clipped(spans: list[tuple[int, int]], end: int) -> list[tuple[int, int]]:
    return [(start, min(stop, end)) for start, stop in spans if start < end]


def _replaced(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each run of overlapping or adjacent ``spans`` replaced by ``***``."""
    if not spans:
        return text
    pieces: list[str] = []
    shown = 0
    for start, stop in sorted(spans):
        if start > shown:
            pieces += [text[shown:start], "***"]
        elif not pieces:
            pieces.append("***")
        shown = max(shown, stop)
    pieces.append(text[shown:])
    return "".join(pieces)


def _cut(text: str, limit: int | None, *, always: bool = False) -> str:
    if limit is None or (len(text) <= limit and not always):
        return text
    return text[:limit] + "..."

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

from collections.abc import Iterable
from typing import Final

__all__ = ["DEFAULT_LIMIT", "FIELD_LIMIT", "conceal", "printable"]

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


def conceal(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``, longest first (a
    password inside a longer token is not left half shown). For what a server says back: one
    that quotes the request's ``Authorization`` header in its error (a debugging page, a
    proxy) would otherwise have our credential logged (an adversarial review, session 44).
    Every secret, however short: a log line mangled beats a password shown."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text

"""``python -m verifier``: operator commands.

``run -- COMMAND`` runs an encoder node (:mod:`verifier._node`).

``check JOB_ID --did DID`` asks the Gateway Monitor about one job and prints the report of the
original service's test script (``docs/contract.md``, "Log events and the test report"): service
status, job details, ownership, availability. It makes **one** request and judges that one
answer with the shared judgements (:func:`~verifier.ownership_of`,
:func:`~verifier.availability_of`), so the three sections can never disagree because the job
moved between three requests.

The exit status is meant for scripts, and keeps "no answer" apart from "answered no" (the
deployed encoder confused the two: ``docs/contract.md``, defects 1-3):

=====  =====================================================================================
0      the monitor says the job is owned by DID and in a processable state
1      the monitor answered, and the answer is not "owned and safe" (other owner, no owner,
       done, failed, not found)
2      usage or configuration error (message on stderr, naming the variable or option)
3      the monitor gave no usable answer (timeout, 5xx, 429, malformed): nothing is known
=====  =====================================================================================

Nothing printed comes from a secret: the monitor URL is shown through
:func:`~verifier._ids.redact_url`, and so is every URL a usage error repeats; settings errors
repeat a value only when it is short and plausibly a typo of what the setting takes (anything
else may be a password in the wrong variable: ``verifier._settings._shown``), and strings
from the monitor are stripped of control characters before they reach a terminal.

Subcommands are registered in :data:`COMMANDS` (name → handler) and given arguments in
:func:`build_parser`; add new ones in both places.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn, TextIO

from ._errors import ConfigurationError, InvalidInputError, TierError
from ._identity import did_key_public_key
from ._ids import normalize_did, redact_url, validate_did, validate_job_id
from ._models import (
    DONE_STATUSES,
    AvailabilityResult,
    GatewayMonitorJob,
    OwnershipResult,
    availability_of,
    ownership_of,
)
from ._node import add_run_parser, cmd_run
from ._settings import Settings, monitor_api_url, shown_argument
from ._text import printable

__all__ = [
    "COMMANDS",
    "EXIT_CONFIG",
    "EXIT_NOT_SAFE",
    "EXIT_NO_ANSWER",
    "EXIT_SAFE",
    "build_parser",
    "main",
]

EXIT_SAFE: Final = 0
EXIT_NOT_SAFE: Final = 1
EXIT_CONFIG: Final = 2
EXIT_NO_ANSWER: Final = 3

_PROG: Final = "python -m verifier"
_EXIT_CODES_HELP: Final = """\
exit status:
  0  the job is owned by DID and safe to process (status assigned or running)
  1  checked, but not safe: owned by someone else or nobody, not processable, or not found
  2  usage or configuration error (the message on stderr names the variable or option)
  3  the monitor could not answer (timeout, HTTP 5xx/429, malformed answer): nothing is known

settings are read from the environment and ./.env (the environment wins):
  GATEWAY_MONITOR_ENABLED, GATEWAY_MONITOR_BASE_URL, ENCODER_DID, ENCODER_PRIVATE_KEY, ...
"""
_MAX_SHOWN: Final = 200


# --------------------------------------------------------------------------- output helpers


def _safe_text(value: object) -> str:
    """Untrusted text for a terminal: control/format characters escaped, length bounded.

    Status and owner strings come from the monitor; an escape sequence in them must not be
    able to rewrite what the operator sees (for example, turn "❌ No" into "✅ Yes").
    """
    return printable(value, _MAX_SHOWN)


@dataclass(frozen=True)
class _Marks:
    yes: str
    no: str
    warn: str
    test: str
    sections: tuple[str, str, str, str]
    found: str
    status: str
    owner: str


_EMOJI: Final = _Marks(
    "✅", "❌", "⚠️", "🧪", ("1️⃣", "2️⃣", "3️⃣", "4️⃣"), "✅", "📊", "👤"
)
_ASCII: Final = _Marks("[yes]", "[no]", "[!]", "*", ("1.", "2.", "3.", "4."), "[ok]", "-", "-")


def _marks_for(stream: TextIO) -> _Marks:
    """Emoji when the stream can encode them (the original report), ASCII otherwise."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "✅❌⚠️🧪1️⃣📊👤".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return _ASCII
    return _EMOJI


# --------------------------------------------------------------------------- check


@dataclass(frozen=True)
class _Report:
    job_id: str
    did: str
    enabled: bool
    base_url: str
    job: GatewayMonitorJob | None = None
    ownership: OwnershipResult | None = None
    availability: AvailabilityResult | None = None
    error: TierError | None = None

    @property
    def safe(self) -> bool:
        # A synthetic record (no status or id, or the fingerprint of the server's stand-in
        # built from the gateway: no ``_id``, blank video fields) never proves ownership, even
        # if its id, status and owner happen to look right: that owner is the gateway's belief.
        return (
            self.ownership is not None
            and self.ownership.is_safe_to_process
            and self.job is not None
            and not self.job.synthetic
        )

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return EXIT_NO_ANSWER
        return EXIT_SAFE if self.safe else EXIT_NOT_SAFE

    def safety_reason(self) -> str:
        """Why the job is (not) safe to process, in the words of the original report."""
        own, job = self.ownership, self.job
        if own is None or job is None or not own.job_exists:
            return "job not found"
        if job.synthetic:
            return ("synthetic answer (no status or id, or the monitor's stand-in: no _id or "
                    "blank video fields): proves nothing")
        if not own.is_owned:
            if own.actual_owner:
                return f"assigned to {_safe_text(own.actual_owner)}"
            return "no owner recorded"
        status = own.status
        if status in DONE_STATUSES:
            return "already complete"
        if status == "failed":
            return "job failed"
        if status is None:
            return "status unknown"
        if own.is_safe_to_process:
            return f"status {_safe_text(status)}"
        return f"status is {_safe_text(status)}"

    def as_json(self) -> dict[str, Any]:
        """The report as one JSON object (field names follow the documented TypeScript API)."""
        out: dict[str, Any] = {
            "job_id": self.job_id,
            "did": self.did,
            "service": {"enabled": self.enabled, "base_url": self.base_url},
            "job": None,
            "ownership": None,
            "availability": None,
            "safe_to_process": self.safe,
            "exit_code": self.exit_code,
        }
        if self.error is not None:
            out["error"] = {
                "type": type(self.error).__name__,
                "tier": self.error.tier,
                "message": str(self.error),
            }
            return out
        job = self.job
        out["job"] = {
            "found": job is not None,
            "status": job.status if job else None,
            "assigned_to": job.assigned_to if job else None,
            "synthetic": job.synthetic if job else False,
        }
        if self.ownership is not None:
            own = self.ownership
            out["ownership"] = {
                "job_exists": own.job_exists,
                "is_owned": own.is_owned,
                "actual_owner": own.actual_owner,
                "status": own.status,
                "is_safe_to_process": self.safe,
                "reason": self.safety_reason(),
            }
        if self.availability is not None:
            av = self.availability
            out["availability"] = {
                "available": av.available,
                "reason": av.reason,
                "current_owner": av.current_owner,
                "status": av.status,
            }
        return out

    def print_text(self, out: TextIO) -> None:
        m = _marks_for(out)

        def yes_no(value: bool) -> str:
            return f"{m.yes} Yes" if value else f"{m.no} No"

        title = f"{m.test} Gateway Monitor Check"
        lines = [title, "=" * 32, ""]
        enabled = yes_no(self.enabled)
        if not self.enabled:
            enabled += " (GATEWAY_MONITOR_ENABLED is not true; checking --base-url anyway)"
        lines += [
            f"{m.sections[0]} Service Status:",
            f"   Enabled: {enabled}",
            f"   Base URL: {_safe_text(self.base_url)}",
            "",
            f"{m.sections[1]} Job Details Fetch:",
            f"   Job ID: {_safe_text(self.job_id)}",
        ]
        if self.error is not None:
            lines += [f"   {m.warn} The monitor did not answer: {_safe_text(self.error)}", ""]
            lines.append(f"{m.warn} Nothing is known about this job (exit {self.exit_code}).")
            _write(out, lines)
            return
        job = self.job
        if job is None:
            lines.append(f"   {m.no} Job not found")
        else:
            lines += [
                f"   {m.found} Job found!",
                f"   {m.status} Status: {_safe_text(job.status or 'unknown')}",
                f"   {m.owner} Assigned to: {_safe_text(job.assigned_to or 'nobody')}",
            ]
            if job.synthetic:
                lines.append(f"   {m.warn} Synthetic record (built from the gateway)")
        own = self.ownership
        av = self.availability
        assert own is not None and av is not None  # set whenever error is None
        safe = yes_no(self.safe) + f" ({self.safety_reason()})"
        lines += [
            "",
            f"{m.sections[2]} Ownership Verification:",
            f"   DID: {_safe_text(self.did)}",
            f"   Job exists: {yes_no(own.job_exists)}",
            f"   Is owned by us: {yes_no(own.is_owned)}",
            f"   Safe to process: {safe}",
            "",
            f"{m.sections[3]} Availability Check:",
            f"   Available to claim: {yes_no(av.available)}",
            f"   Reason: {_safe_text(av.reason)}",
            "",
        ]
        if self.safe:
            lines.append(f"{m.yes} Owned by {_safe_text(self.did)} and safe to process (exit 0).")
        else:
            lines.append(f"{m.no} Not safe to process (exit {self.exit_code}).")
        _write(out, lines)


def _write(out: TextIO, lines: list[str]) -> None:
    """Print, escaping what the stream cannot encode (an ASCII terminal, a C locale)."""
    encoding = getattr(out, "encoding", None) or "ascii"
    text = "\n".join(lines)
    try:
        text = text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:
        text = text.encode("ascii", "backslashreplace").decode("ascii")
    print(text, file=out)


async def _fetch(report: _Report, url: str, deadline_s: float) -> _Report:
    """One ``GET jobs/{id}``; the judgements run on that single answer."""
    from ._monitor import GatewayMonitorService

    async with GatewayMonitorService(url, enabled=True, timeout=deadline_s) as monitor:
        try:
            job = await monitor.get_job_details(report.job_id)
        except TierError as exc:
            return dataclasses.replace(report, error=exc)
    return dataclasses.replace(
        report,
        job=job,
        ownership=ownership_of(job, report.did),
        availability=availability_of(job),
    )


def _usage_error(message: str) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return EXIT_CONFIG


def _cmd_check(args: argparse.Namespace) -> int:
    """The ``check`` subcommand; see the module docstring for the exit status."""
    try:
        job_id = validate_job_id(args.job_id)
    except InvalidInputError as exc:
        return _usage_error(f"JOB_ID: {exc}")
    try:
        settings = Settings.from_env(check_chain=False)
    except ConfigurationError as exc:
        return _usage_error(f"configuration error: {exc}")

    did_arg: str | None = args.did if args.did is not None else settings.encoder_did
    if did_arg is None:
        return _usage_error("--did is required (or set ENCODER_DID or ENCODER_PRIVATE_KEY)")
    try:
        did = validate_did(did_arg)
        # Every encoder's DID is the did:key of its Ed25519 key. A placeholder ("did:key:
        # z6Mk...") or a truncated one would be compared with the owner and reported "not
        # owned", which reads like a real conflict: refuse it here, by name.
        did_key_public_key(normalize_did(did))
    except InvalidInputError as exc:
        return _usage_error(f"--did: not an encoder's Ed25519 did:key ({exc})")

    if args.base_url is not None:
        url, source = args.base_url, "--base-url"
        try:
            url = monitor_api_url("--base-url", url)
        except ConfigurationError as exc:
            return _usage_error(f"configuration error: {exc}")
    elif settings.monitor_enabled:
        url, source = settings.monitor_base_url, "GATEWAY_MONITOR_BASE_URL"
        if settings.monitor_url_defaulted:
            print(f"{_PROG}: GATEWAY_MONITOR_BASE_URL is unset: checking the production monitor "
                  f"({url})", file=sys.stderr)
    else:
        return _usage_error(
            "configuration error: GATEWAY_MONITOR_ENABLED: the monitor is disabled; set "
            "GATEWAY_MONITOR_ENABLED=true or pass --base-url to check a monitor anyway"
        )

    report = _Report(
        job_id=job_id, did=did, enabled=settings.monitor_enabled, base_url=redact_url(url)
    )
    try:
        report = asyncio.run(_fetch(report, url, args.timeout))
    except ConfigurationError as exc:
        # The monitor client validates the URL: name the place it came from. Any other
        # variable (a proxy, CA certificates, read when the client is made) is named as is.
        where = source if exc.variable == "GATEWAY_MONITOR_BASE_URL" else exc.variable
        return _usage_error(f"configuration error: {where}: {exc.problem}")
    except InvalidInputError as exc:
        # Ids the monitor server would mishandle ('/', '?', '%', ...) are refused unsent.
        return _usage_error(f"JOB_ID: {exc}")
    except Exception as exc:
        # Every expected failure is a TierError (exit 3) or one of the above (exit 2). Anything
        # else is still "the monitor gave no usable answer", never exit 1 ("answered: not
        # safe"), and never a traceback: its text and frames may quote the URL's user info.
        print(f"{_PROG}: the monitor could not be asked: unexpected {type(exc).__name__}; "
              "nothing is known about this job", file=sys.stderr)
        return EXIT_NO_ANSWER

    try:
        if args.json:
            print(json.dumps(report.as_json(), indent=2, sort_keys=True), file=sys.stdout)
        else:
            report.print_text(sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        # `check ... | head -1`: the reader left. The verdict is the exit status, which must
        # not turn into a traceback and exit 1 ("answered: not safe"); Python's own flush at
        # exit would fail again on the broken stream, so stdout goes to /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if report.error is not None:
        print(f"{_PROG}: the monitor could not answer: {report.error}", file=sys.stderr)
    return report.exit_code


# --------------------------------------------------------------------------- parser


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        # "finite": "inf" and "nan" parse as numbers, and "must be positive" is no answer to
        # an infinity (operator review).
        raise argparse.ArgumentTypeError("must be a finite positive number of seconds")
    return value


#: A URL in free text: a scheme, ``://``, then everything up to the next whitespace (argparse
#: quotes a value with ``repr``; the closing quote stays in the URL's path, harmlessly).
_URL_IN_TEXT: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")
#: A word of free text with an '@' in it: user info perhaps (``user:pw@host/api``).
_WORD_WITH_AT: Final = re.compile(r"\S*@\S*")


#: argparse's messages that repeat a refused value (``repr``-quoted): a choice, a type's.
_INVALID_CHOICE: Final = re.compile(
    r"(?P<head>argument \S+: invalid choice: )'(?P<value>.*)' \(choose from (?P<choices>.*)\)",
    re.DOTALL)
_INVALID_VALUE: Final = re.compile(r"(?P<head>argument \S+: invalid \S+ value: )'(?P<value>.*)'",
                                   re.DOTALL)


def _unrecognized(argument: str) -> str:
    """An argument no option took, for "unrecognized arguments": an option's name is shown
    (what the operator needs to find the mistake), its ``=value`` and every bare word only
    as a length: a value after an unknown option may be the key or password it was meant
    to set (a security review, session 28: ``--private-key=<seed>`` was printed whole)."""
    name, equals, value = argument.partition("=")
    if name.startswith("-") and len(name) <= 40 and name.lstrip("-").replace("-", "").isalnum():
        return name + (f"={shown_argument(value)}" if equals else "")
    return shown_argument(argument)


def _redact_userinfo(word: re.Match[str]) -> str:
    """A word with everything from its start to its last '@' replaced by ``***``: user info
    without a scheme (``--baseurl user:pw@host/api``, operator review 2026-12-04). From the
    last '@' because a password may hold an unencoded '@' or '/' (``user:Pa@S3cret@host``
    showed ``***@S3cret@host``, and ``user:S3cret/x@host`` was shown whole: adversarial
    review). Kept: an argparse quote before it, ``--option=`` before it, and what follows the
    '@' (the host, to show which argument was meant). A URL with a scheme is left to
    :func:`redact_url`, which keeps its user name."""
    text = word.group()
    if "://" not in text:
        lead = len(text) - len(text.lstrip("'\""))
        if text[lead:].startswith("-") and "=" in text:
            lead = text.index("=") + 1
        if "@" in text[lead:]:
            return f"{text[:lead]}***@{text.rpartition('@')[2]}"
    return text


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with every URL in its error messages redacted.

    argparse repeats a mistyped argument verbatim ("unrecognized arguments:
    --baseurl=https://user:password@host/api"), to a terminal or a log that keeps it (security
    review). Subparsers are made of the same class (``add_subparsers`` takes its parser's).
    """

    def error(self, message: str) -> NoReturn:
        # A refused value argparse repeats: shown only when it is plausibly a typo (a choice's
        # or a number's), else its length (a key typed after the wrong option was printed).
        choice = _INVALID_CHOICE.fullmatch(message)
        if choice is not None:
            choices = re.findall(r"'([^']*)'", choice["choices"])
            message = (f"{choice['head']}{shown_argument(choice['value'], choices=choices)}"
                       f" (choose from {choice['choices']})")
        elif (value := _INVALID_VALUE.fullmatch(message)) is not None:
            message = value["head"] + shown_argument(value["value"], number=True)
        # User info without a scheme first ("--baseurl user:pw@host/api"; words with "://"
        # are skipped), then URLs, whose redacted form may itself hold an '@'.
        message = _WORD_WITH_AT.sub(_redact_userinfo, message)
        super().error(_URL_IN_TEXT.sub(lambda url: redact_url(url.group()), message))

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """As argparse's, but an option the chosen subcommand does not know is reported with
        that subcommand's usage (argparse reports it with the top-level usage, which does not
        list the option the operator mistyped: operator review, session 20)."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            self._chosen(parsed).error(
                f"unrecognized arguments: {' '.join(map(_unrecognized, extra))}")
        return parsed

    def _chosen(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        """The subcommand's parser ``parsed`` went through (this one when there is none)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
                if isinstance(chosen, argparse.ArgumentParser):
                    return chosen
        return self


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each subcommand's name is a key of :data:`COMMANDS`."""
    parser = _Parser(
        prog=_PROG,
        description="Tools of the 3Speak job-ownership verifier.",
        epilog=_EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    check = commands.add_parser(
        "check",
        help="ask the Gateway Monitor whether DID owns JOB_ID and may process it",
        description=(
            "Fetch one job from the Gateway Monitor (one request) and report service status, "
            "job details, ownership by DID and availability, like the original service's test."
        ),
        epilog=_EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("job_id", metavar="JOB_ID", help="the job id (as in the gateway)")
    check.add_argument(
        "--did",
        help="the encoder DID to check ownership for (default: ENCODER_DID, or the DID of "
        "ENCODER_PRIVATE_KEY)",
    )
    check.add_argument(
        "--base-url",
        metavar="URL",
        help="the monitor's base URL (default: GATEWAY_MONITOR_BASE_URL); checks it even when "
        "GATEWAY_MONITOR_ENABLED is false",
    )
    check.add_argument(
        "--timeout",
        type=_timeout,
        default=10.0,
        metavar="S",
        help="seconds for the whole request (default: 10, the deployed encoder's; the real "
        "monitor can take ~10 s on running jobs when the gateway is silent)",
    )
    check.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_run_parser(commands)
    return parser


#: Subcommand name → handler. A handler returns the exit status.
COMMANDS: Final[dict[str, Callable[[argparse.Namespace], int]]] = {
    "check": _cmd_check,
    "run": cmd_run,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status (argparse's own exits included)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG
    handler = COMMANDS[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130

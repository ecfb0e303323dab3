"""Start-up configuration: the encoder's environment variables and its ``.env`` file.

:meth:`Settings.from_env` reads the variables the TypeScript encoder used (same names, same
meaning; ``gateway-monitor-verification.md``, "Configuration") plus this package's own
``VERIFIER_*`` settings, and refuses to start on anything it cannot use. Every refusal is a
:class:`~verifier.ConfigurationError` naming the variable, because "the monitor is silently
disabled" and "the timing bound is silently the default" are how a node ends up unprotected
without anyone noticing.

Rules that protect something:

* **The real environment overrides** ``.env``, as in ``dotenv``: an operator can always fix a
  value without editing a file that may be baked into an image.
* **Secrets never leave.** ``ENCODER_PRIVATE_KEY`` and the password in ``MONGODB_URI`` are
  shown as ``<set>`` and ``***`` by ``repr``, ``str`` and :meth:`Settings.describe`, and no
  error message repeats the value of a URL or of a ``.env`` line (a malformed line is named by
  file and line number only). Exceptions raised while parsing are not chained, because the
  library messages they carry may quote the value. A refused value of any other setting is
  repeated only when it is short and plausibly a typo of a value the setting takes (a flag
  near ``true``, a chain's name, a number, an IP address); anything else may be a password
  pasted into the wrong variable, and is shown by its length (:func:`_shown`).
* **A** ``.env`` **others may read is named** (``DOTENV_READABLE``, a warning: containers
  give files the modes they give them) when it holds a credential (:func:`_is_credential`).
* **The hardened chain needs a tier that can confirm ownership**: the database or the monitor.
  The legacy gateway alone is known to tell two encoders they own the same job
  (``3speak-contract.md``), so a hardened node without either could never honestly start work.
* **A set URL is validated even when its tier is disabled**: a typo surfaces at start-up, not
  the day someone flips the switch.
* **Unknown** ``VERIFIER_*`` **variables are refused**: a misspelt timing bound would otherwise
  leave the default in force while the operator believes it changed.
* ``ENCODER_DID``, when set together with ``ENCODER_PRIVATE_KEY``, must be the key's DID: the
  gateway records the key's DID as owner, so a different ``ENCODER_DID`` would make ownership
  checks compare against someone else (possibly confirming *their* jobs as ours).

What lives here and what does not. This module is the settings: :class:`Settings`, the variables
it knows (:data:`KNOWN_VARIABLES`, :data:`TIMING_VARIABLES`) and the checks of their values.
Formats that have a reader of their own are parsed elsewhere, each once, and only used here:

* :mod:`verifier._dotenv` reads the ``.env`` file (the file format; what a variable *means*
  is decided here). Nothing else in :mod:`verifier` reads ``.env``.
* :mod:`verifier._mongodb_uri` parses and redacts ``MONGODB_URI``. :class:`~verifier.DatabaseTier`
  parses the same URI when it is built, with the same parser, so the URI checked at start-up
  is exactly the URI the database tier will accept, and neither can show its password.
* Identity (``ENCODER_PRIVATE_KEY``) is decoded by :mod:`verifier._identity`, imported lazily:
  the key's DID is needed here to check ``ENCODER_DID``.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import logging
import math
import os
import re
import unicodedata
import urllib.parse
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ._dotenv import close_setting, read_dotenv, shown_name
from ._errors import ConfigurationError, InvalidInputError
from ._http import check_host_sendable, refuse_dot_segments, refuse_misplaced_userinfo
from ._ids import normalize_did, redact_url, validate_did
from ._mongodb_uri import parse_mongodb_uri, redact_mongodb_uri
from ._policy import Policy, TierSet, TimingModel, builtin_chain_names

if TYPE_CHECKING:
    from ._identity import EncoderIdentity

__all__ = [
    "DEFAULT_CHAIN",
    "DEFAULT_DATABASE_NAME",
    "DEFAULT_MONITOR_BASE_URL",
    "KNOWN_VARIABLES",
    "TIMING_FLOORS",
    "TIMING_VARIABLES",
    "Settings",
    "shown_argument",
]

#: The documented default of ``GATEWAY_MONITOR_BASE_URL`` (same value as ``verifier._monitor``).
DEFAULT_MONITOR_BASE_URL: Final = "https://gateway-monitor.3speak.tv/api"
#: The contract lists three names in use; this is the gateway's own default.
DEFAULT_DATABASE_NAME: Final = "spk-encoder-gateway"
DEFAULT_CHAIN: Final = "hardened"

#: ``TimingModel`` field → environment variable, derived so the two lists cannot drift apart.
TIMING_VARIABLES: Final[Mapping[str, str]] = {
    f.name: f"VERIFIER_{f.name.upper()}_S" for f in dataclasses.fields(TimingModel)
}

_LOGGER: Final = logging.getLogger("verifier.settings")
_SECRET_KEY: Final = "ENCODER_PRIVATE_KEY"  # noqa: S105 (the name, not a value)
KNOWN_VARIABLES: Final = (
    "GATEWAY_MONITOR_ENABLED",
    "GATEWAY_MONITOR_BASE_URL",
    "MONGODB_VERIFICATION_ENABLED",
    "MONGODB_URI",
    "DATABASE_NAME",
    "GATEWAY_URL",
    "GATEWAY_AID_ENABLED",
    "GATEWAY_AID_BASE_URL",
    _SECRET_KEY,
    "ENCODER_DID",
    "VERIFIER_CHAIN",
    "VERIFIER_METRICS_PORT",
    "VERIFIER_METRICS_ADDR",
    "VERIFIER_STATUS_CACHE_S",
    "VERIFIER_BACKOFF",
    "VERIFIER_PUSH",
    "VERIFIER_ALLOW_UNSAFE_CHAIN",
    *TIMING_VARIABLES.values(),
)
#: The status cache's default maximum age: it serves the pre-claim check only (an
#: optimisation safety never rests on), so a generous age costs nothing but a wasted claim.
DEFAULT_STATUS_CACHE_S: Final = 30.0

#: The least value an operator may set for these intervals (``TimingModel`` itself has no
#: floor: the simulator builds it directly, with intervals of its own time scale). Without
#: one, ``VERIFIER_RECHECK_INTERVAL_S=0.001`` and ``VERIFIER_RETRY_INTERVAL_S=1e-300`` were
#: accepted, and a node sent 305 tier requests for one short job (adversarial review): a
#: request storm against the shared monitor and gateway, which the defaults (10 s and 1 s)
#: never come near. ``sim serve`` gives its encoders R = 1 s and 0.2 s retries.
#: C's floor is of another kind: a promise the runner must keep. Stopping a command (its
#: signal, the keeper, the reaping) takes 20-50 ms here, so C = 0 or 0.02 s was accepted and
#: broken by every cancellation (an adversarial review, 2026-12-05).
TIMING_FLOORS: Final[Mapping[str, float]] = {"recheck_interval": 1.0, "retry_interval": 0.05,
                                             "cancel_latency": 0.25}
_FLOOR_REASONS: Final = {
    "recheck_interval": "each re-check is a request to every tier, for every job in progress",
    "retry_interval": "each retry is another request to a tier that did not answer",
    "cancel_latency": "stopping the work command itself takes tens of milliseconds, and the "
                      "lease's margin counts on C",
}

_TRUE: Final = frozenset({"true", "1", "yes"})
_FALSE: Final = frozenset({"false", "0", "no"})
#: MongoDB refuses these in database names (plus NUL); 63 bytes is its length limit.
_DB_NAME_FORBIDDEN: Final = frozenset('/\\. "$*<>:|?\0')
_DB_NAME_MAX_BYTES: Final = 63


# --------------------------------------------------------------------------- value parsers


#: What a secret pasted into the wrong variable looks like: a URL with user info or a scheme
#: (a MongoDB URI in DATABASE_NAME), or a long unbroken run of letters and digits (a private
#: key or a token). Such a value is never shown, however like a setting's value it is.
_SECRET_LIKE: Final = re.compile(r"@|://|[A-Za-z0-9+/=_]{20,}")
#: The longest value an error may repeat (the longest chain's name is 34 characters).
_SHOWN_VALUE_LENGTH: Final = 40
#: How alike (difflib's ratio, case ignored) a value must be to one the setting takes to be
#: called its typo: "treu" and "true" score 0.75, "hardend" and "hardened" 0.93, while
#: short passwords score 0.5 at most against every flag and chain name.
_TYPO_CUTOFF: Final = 0.75
#: Spellings of a flag that other programs take and this one refuses: repeated, to show the
#: operator which spelling was refused (no one's password is "on").
_OTHER_FLAG_SPELLINGS: Final = frozenset({
    "on", "off", "y", "n", "t", "f", "enable", "enabled", "disable", "disabled", "none"})
#: A number (what every numeric setting takes), maybe with a unit ("5s": seconds are meant).
_NUMBER_TEXT: Final = re.compile(
    r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
    r"(?: ?(?:ms|s|sec|secs|seconds|m|min|mins|h))?|[-+]?(?:inf|infinity|nan)", re.IGNORECASE)
_NUMBER_MAX_LENGTH: Final = 16
#: An IP address as mistyped (with a port, a prefix, brackets or a zone), or localhost: an
#: IPv6 form needs two colons, so that hex words ("deadbeef", "dead:beef") are not one.
_ADDRESS_TEXT: Final = re.compile(
    r"[0-9.]+(?::[0-9]*)?(?:/[0-9]+)?"
    r"|\[?[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*(?:%[\w.-]+)?\]?(?::[0-9]+)?(?:/[0-9]+)?"
    r"|localhost(?::[0-9]*)?|\*", re.IGNORECASE)


def _near_misses(value: str, allowed: Collection[str]) -> list[str]:
    """The values of ``allowed`` that ``value`` may be a typo of, the likeliest first."""
    by_lower = {a.lower(): a for a in allowed}
    close = difflib.get_close_matches(value.lower(), by_lower, n=3, cutoff=_TYPO_CUTOFF)
    return [by_lower[c] for c in close]


def _looks_like_flag(value: str) -> bool:
    return bool(_near_misses(value, _TRUE | _FALSE | _OTHER_FLAG_SPELLINGS))


def _looks_like_chain(value: str) -> bool:
    return bool(_near_misses(value, builtin_chain_names()))


def _looks_like_number(value: str) -> bool:
    return len(value) <= _NUMBER_MAX_LENGTH and _NUMBER_TEXT.fullmatch(value) is not None


def _looks_like_address(value: str) -> bool:
    return _ADDRESS_TEXT.fullmatch(value) is not None


def _shown(value: str, looks_like: Callable[[str], bool]) -> str:
    """A refused value for an error message: repeated (quoted, control characters escaped)
    only when it is short and plausibly a mistyped value of its setting (``looks_like``: a
    flag near true/false, a chain's name, a number, an IP address); otherwise its length
    only. The caller's message says what the setting takes either way.

    Why this rule, not "hide what looks like a secret": a short password pasted into the
    wrong variable looks like nothing in particular, and one made of a setting's characters
    (``correcthorse`` in VERIFIER_CHAIN, ``letmein`` in a flag, ``deadbeef`` in an address)
    was repeated whole (adversarial review; earlier, session 16, a MongoDB URI in
    DATABASE_NAME). A typo, on the other hand, is close to what was meant, and repeating it
    is what lets the operator find it. Credentials never appear in errors or logs."""
    if _showable(value, looks_like):
        return repr(value)
    return (f"a value of {len(value)} characters (not shown: it is not like any value this "
            "setting takes, so it may be a secret)")


def _showable(value: str, looks_like: Callable[[str], bool]) -> bool:
    """:func:`_shown`'s rule: short, nothing like a secret, and like what was asked for."""
    return (len(value) <= _SHOWN_VALUE_LENGTH and not _SECRET_LIKE.search(value)
            and looks_like(value))


def shown_argument(value: str, *, choices: Collection[str] = (), number: bool = False
                   ) -> str:
    """A refused command-line value for an error message, by :func:`_shown`'s rule: repeated
    only when it is plausibly a typo of one of ``choices`` or, with ``number``, a mistyped
    number; otherwise its length only. argparse repeats what it refuses verbatim, and an
    operator's key or password typed in the wrong place was printed whole (a security
    review, session 28)."""
    if _showable(value, lambda v: bool(_near_misses(v, choices))
                 or (number and _looks_like_number(v))):
        return repr(value)
    return f"<{len(value)} character{'' if len(value) == 1 else 's'}, not shown>"


def _empty_is_not_unset(name: str) -> bool:
    """Whether an empty ``name`` in the environment over a value in ``.env`` is refused: the
    timing bounds and the on/off flags, whose empty value silently means their default."""
    # This verifier's own: a .env shared with other programs holds their flags too.
    return name in KNOWN_VARIABLES and (
        name in TIMING_VARIABLES.values() or name.endswith("_ENABLED"))


def _bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigurationError(
        name, f"must be true/false, 1/0 or yes/no, got {_shown(raw, _looks_like_flag)}")


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(
            name, f"must be a number of seconds, got {_shown(raw, _looks_like_number)}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(
            name, f"must be a finite number of seconds >= 0, got {_shown(raw, _looks_like_number)}"
        )
    return value


def _port(env: Mapping[str, str], name: str) -> int | None:
    """A TCP port, or ``None`` when unset or empty (the feature it turns on stays off)."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    # At most 5 digits, checked before int(): int() refuses more than 4300 digits with a
    # ValueError, which escaped as a traceback and exit 1 instead of this refusal
    # (adversarial review).
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 5) or not 0 < int(raw) < 65536:
        raise ConfigurationError(
            name, f"must be a port number 1-65535, got {_shown(raw, _looks_like_number)}")
    return int(raw)


def _http_url(name: str, value: str) -> str:
    """Validate an http(s) base URL; the message never repeats it (it may carry user:password).

    The URL rules of the clients (:mod:`verifier._http`) apply too, so that start-up refuses
    what every request would fail on: an ``@`` after the host (a password with an unencoded
    ``/``, which would otherwise be shown as the path) and a host httpx cannot IDNA-encode.
    """
    # Every control character (C0, DEL and the C1 range, Unicode's "Cc"), as the message
    # says: C1 ones passed (mutation testing, session 38), to be percent-encoded into paths.
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in value):
        raise ConfigurationError(name, "contains whitespace or control characters")
    try:
        parts = urllib.parse.urlsplit(value)
        _ = parts.port  # ValueError on a malformed or out-of-range port
    except ValueError:
        raise ConfigurationError(name, "is not a valid URL (host or port)") from None
    # The scheme first: "user:pw@host/api" (no scheme) would otherwise be told its '@' is
    # after the host (operator review, session 20).
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(name, "must be an http:// or https:// URL")
    refuse_misplaced_userinfo(parts, name)
    refuse_dot_segments(parts, name)
    if not parts.hostname:
        raise ConfigurationError(name, "has no host")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ConfigurationError(name, "must not have a query or fragment (paths are appended)")
    check_host_sendable(value, name)
    return value.rstrip("/")


def monitor_api_url(name: str, value: str) -> str:
    """A Gateway Monitor base URL: an http(s) URL whose path ends in ``/api``.

    Every route of the monitor is under ``/api`` (``/api/jobs/{id}``, ``/api/health``); a base
    URL without it gets a 404 for every job, which would read as "the monitor cannot answer"
    at every check instead of the configuration error it is."""
    url = _http_url(name, value)
    if not urllib.parse.urlsplit(url).path.endswith("/api"):
        raise ConfigurationError(
            name, "must end with /api (the monitor's routes are under it: for example "
            f"{DEFAULT_MONITOR_BASE_URL})")
    return url


def _database_name(env: Mapping[str, str]) -> str:
    name = "DATABASE_NAME"
    value = env.get(name, "").strip() or DEFAULT_DATABASE_NAME
    bad = next((c for c in value if c in _DB_NAME_FORBIDDEN or ord(c) < 0x20), None)
    if bad is not None:
        # The character, never the value: a password pasted here has such characters, and
        # short ones pass any test of what "looks like a secret" (review, session 16).
        raise ConfigurationError(name, f"contains {bad!r}, a character MongoDB refuses in "
                                       f"database names (value of {len(value)} characters "
                                       "not shown)")
    if len(value.encode("utf-8")) > _DB_NAME_MAX_BYTES:
        raise ConfigurationError(name, f"is longer than {_DB_NAME_MAX_BYTES} bytes")
    return value


def _timing(env: Mapping[str, str]) -> TimingModel:
    defaults = TimingModel()
    values = {
        field: _seconds(env, variable, getattr(defaults, field))
        for field, variable in TIMING_VARIABLES.items()
    }
    try:
        timing = TimingModel(**values)
    except ValueError as exc:
        message = str(exc)
        culprits = [f for f in TIMING_VARIABLES if f in message and values[f] <= 0]
        field = culprits[0] if culprits else "recheck_interval"
        variable = TIMING_VARIABLES[field]
        raise ConfigurationError(
            variable, f"must be greater than 0 ({_in_variables(message)})") from None
    for field, floor in TIMING_FLOORS.items():
        if values[field] < floor:
            variable = TIMING_VARIABLES[field]
            raise ConfigurationError(
                variable, f"must be at least {floor:g} s (the floor of this setting: "
                f"{_FLOOR_REASONS[field]}), got "
                f"{_shown(env[variable].strip(), _looks_like_number)}")
    problems = timing.problems()
    if problems:
        set_here = {f for f, variable in TIMING_VARIABLES.items() if env.get(variable, "").strip()}
        variable, message = _worded_problem(problems[0], set_here)
        raise ConfigurationError(variable, message)
    return timing


def _worded_problem(problem: str, set_here: set[str]) -> tuple[str, str]:
    """A ``TimingModel.problems()`` sentence for an operator: the variable it blames (of the
    bounds it names, the first one the environment set, else the first named) and the sentence
    with each bound's field name replaced by its variable. Blaming the first field named
    pointed at a variable the operator had not touched (found by an operator review, session
    14: ``VERIFIER_REASSIGN_TIMEOUT_S=1`` was reported as ``VERIFIER_RECHECK_INTERVAL_S``)."""
    positions = {
        field: match.start()
        for field in TIMING_VARIABLES
        if (match := re.search(rf"\b{field}\b", problem))
    }
    named = sorted(positions, key=positions.__getitem__)
    chosen = next((f for f in named if f in set_here), named[0] if named else "recheck_interval")
    return TIMING_VARIABLES[chosen], _in_variables(problem)


def _in_variables(text: str) -> str:
    """``text`` with each timing field's name replaced by its environment variable."""
    for field, variable in TIMING_VARIABLES.items():
        text = re.sub(rf"\b{field}\b", variable, text)
    return text


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, repr=False)
class Settings:
    """Validated configuration. Build it with :meth:`from_env`; print it with :meth:`describe`.

    ``encoder_private_key`` and ``mongodb_uri`` are credentials: read them only to build the
    identity and the database client; ``repr``, ``str`` and :meth:`describe` redact them.
    """

    monitor_enabled: bool = False
    monitor_base_url: str = DEFAULT_MONITOR_BASE_URL
    mongodb_enabled: bool = False
    mongodb_uri: str | None = None
    database_name: str = DEFAULT_DATABASE_NAME
    gateway_url: str | None = None
    aid_enabled: bool = False
    aid_base_url: str | None = None
    encoder_private_key: str | None = None
    #: ``ENCODER_DID``, or the DID derived from ``ENCODER_PRIVATE_KEY`` when only the key is set.
    encoder_did: str | None = None
    chain: str = DEFAULT_CHAIN
    timing: TimingModel = dataclasses.field(default_factory=TimingModel)
    #: ``GATEWAY_MONITOR_BASE_URL`` was not set: :attr:`monitor_base_url` is the production
    #: monitor's. Tools say so when the monitor is on (an operator who meant a test monitor
    #: and forgot the URL must not be checking production unawares).
    monitor_url_defaulted: bool = False
    #: ``VERIFIER_METRICS_PORT``: serve Prometheus metrics on this port (``None``: off), on
    #: ``VERIFIER_METRICS_ADDR`` (loopback by default).
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"
    #: The cost features (docs/enhancements.md): ``VERIFIER_STATUS_CACHE_S`` (0: no cache),
    #: ``VERIFIER_BACKOFF`` (jittered exponential retries; on by default) and
    #: ``VERIFIER_PUSH`` (subscribe to the monitor's WebSocket extension; off by default: the
    #: real monitor has none).
    status_cache_s: float = DEFAULT_STATUS_CACHE_S
    backoff: bool = True
    push: bool = False
    #: ``VERIFIER_ALLOW_UNSAFE_CHAIN``: ``run`` starts a chain other than ``hardened`` only
    #: when this says so (measurements, comparisons); off by default.
    allow_unsafe_chain: bool = False

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        dotenv: str | os.PathLike[str] | None = ".env",
        *,
        check_chain: bool = True,
    ) -> Settings:
        """Read ``dotenv`` (skipped when ``None`` or missing), overlay ``environ`` (default:
        ``os.environ``), validate, and return the settings.

        ``check_chain=False`` skips only the requirement that the chain have a tier able to
        confirm ownership; diagnostics that talk to one tier (``python -m verifier check``)
        use it, while anything that processes jobs must not.
        """
        env: dict[str, str] = (
            read_dotenv(dotenv, known=KNOWN_VARIABLES, sensitive=_is_credential)
            if dotenv is not None else {})
        environ = os.environ if environ is None else environ
        _warn_of_near_misses(environ)
        for name in sorted(env):
            if (name in environ and not environ[name].strip() and env[name].strip()
                    and _empty_is_not_unset(name)):
                # Set but empty overrides the file, and an empty bound or flag reads as its
                # default: docker compose's X=${X} with X unset on the host, or systemd's
                # Environment=X=, put T back to 60 s and ε to 1 s with no word while .env
                # said 30 s and 2 s (an adversarial review, 2026-12-05). An empty URI or
                # name is left to blank the file's value out (``sim serve`` blanks a
                # production .env's MONGODB_URI so).
                raise ConfigurationError(name, f"is set but empty in the environment, over "
                                               f"the value that {str(dotenv)!r} gives it: "
                                               "unset it there, or give it a value")
        env.update(environ)
        return cls._validated(env, check_chain=check_chain)

    @classmethod
    def _validated(cls, env: Mapping[str, str], *, check_chain: bool) -> Settings:
        for name in sorted(env):
            if name.startswith("VERIFIER_") and name not in KNOWN_VARIABLES:
                # Named as the .env reader names it: a secret glued to a name (the "="
                # forgotten) must not come back as the name.
                raise ConfigurationError(shown_name(name, ("VERIFIER_",)),
                                         "is not a setting of this verifier (misspelt?)")

        monitor_enabled = _bool(env, "GATEWAY_MONITOR_ENABLED")
        mongodb_enabled = _bool(env, "MONGODB_VERIFICATION_ENABLED")
        aid_enabled = _bool(env, "GATEWAY_AID_ENABLED")

        # An explicitly empty monitor URL is not "use the default": the operator blanked it.
        raw_monitor = env.get("GATEWAY_MONITOR_BASE_URL")
        monitor_url = DEFAULT_MONITOR_BASE_URL if raw_monitor is None else raw_monitor.strip()
        if monitor_url:
            monitor_url = monitor_api_url("GATEWAY_MONITOR_BASE_URL", monitor_url)
        elif monitor_enabled:
            raise ConfigurationError(
                "GATEWAY_MONITOR_BASE_URL",
                "is empty but GATEWAY_MONITOR_ENABLED is true (unset it to use "
                f"{DEFAULT_MONITOR_BASE_URL})",
            )

        mongodb_uri = env.get("MONGODB_URI", "").strip() or None
        if mongodb_uri is not None:
            parse_mongodb_uri(mongodb_uri)
        elif mongodb_enabled:
            raise ConfigurationError(
                "MONGODB_URI", "is required when MONGODB_VERIFICATION_ENABLED is true"
            )

        gateway_url = env.get("GATEWAY_URL", "").strip() or None
        if gateway_url is not None:
            gateway_url = _http_url("GATEWAY_URL", gateway_url)

        aid_url = env.get("GATEWAY_AID_BASE_URL", "").strip() or None
        if aid_url is not None:
            aid_url = _http_url("GATEWAY_AID_BASE_URL", aid_url)
        elif aid_enabled:
            raise ConfigurationError(
                "GATEWAY_AID_BASE_URL", "is required when GATEWAY_AID_ENABLED is true"
            )

        private_key = env.get(_SECRET_KEY, "").strip() or None
        did = _encoder_did(env.get("ENCODER_DID", "").strip() or None, private_key)
        if aid_enabled and did is None:
            raise ConfigurationError(
                "ENCODER_DID",
                "GATEWAY_AID_ENABLED needs the encoder's DID: set ENCODER_PRIVATE_KEY or "
                "ENCODER_DID",
            )

        chain = env.get("VERIFIER_CHAIN", "").strip() or DEFAULT_CHAIN
        timing = _timing(env)
        try:
            policy = Policy.named(chain, timing)
        except ValueError:
            raise ConfigurationError("VERIFIER_CHAIN", _unknown_chain(chain)) from None

        settings = cls(
            monitor_enabled=monitor_enabled,
            monitor_base_url=monitor_url,
            mongodb_enabled=mongodb_enabled,
            mongodb_uri=mongodb_uri,
            database_name=_database_name(env),
            gateway_url=gateway_url,
            aid_enabled=aid_enabled,
            aid_base_url=aid_url,
            encoder_private_key=private_key,
            encoder_did=did,
            chain=chain,
            timing=timing,
            monitor_url_defaulted=raw_monitor is None,
            metrics_port=_port(env, "VERIFIER_METRICS_PORT"),
            metrics_addr=_metrics_addr(env),
            status_cache_s=_seconds(env, "VERIFIER_STATUS_CACHE_S", DEFAULT_STATUS_CACHE_S),
            backoff=_bool(env, "VERIFIER_BACKOFF", default=True),
            push=_bool(env, "VERIFIER_PUSH"),
            allow_unsafe_chain=_bool(env, "VERIFIER_ALLOW_UNSAFE_CHAIN"),
        )
        if settings.push and not monitor_enabled:
            raise ConfigurationError("VERIFIER_PUSH", "needs the monitor: set "
                                     "GATEWAY_MONITOR_ENABLED=true (pushes come from its "
                                     "WebSocket extension), or unset VERIFIER_PUSH")
        if env.get("VERIFIER_METRICS_ADDR", "").strip() and settings.metrics_port is None:
            # The address alone starts nothing: an operator who set it expects an exporter.
            raise ConfigurationError("VERIFIER_METRICS_ADDR", "is set but "
                                     "VERIFIER_METRICS_PORT is not (no exporter would start): "
                                     "set VERIFIER_METRICS_PORT too, or unset "
                                     "VERIFIER_METRICS_ADDR")
        if check_chain:
            settings._check_confirming_tier(policy)
        return settings

    def _check_confirming_tier(self, policy: Policy) -> None:
        """A chain that verifies but may not trust the gateway needs the database or the monitor.

        Without either, every verification would end in "cannot confirm" and no job would ever
        be processed; starting such a node would only look like protection.
        """
        if not policy.verify or policy.gateway_can_confirm:
            return
        if not (self.mongodb_enabled or self.monitor_enabled):
            raise ConfigurationError(
                "GATEWAY_MONITOR_ENABLED",
                f"the {self.chain} chain needs a tier that can confirm ownership: set "
                "GATEWAY_MONITOR_ENABLED=true (community node) or MONGODB_VERIFICATION_ENABLED="
                "true (infrastructure node); the legacy gateway alone is known to tell two "
                "encoders they own the same job",
            )

    # ------------------------------------------------------------------ derived values

    def tier_set(self) -> TierSet:
        """The tiers this node has. The gateway counts only when ``GATEWAY_URL`` is set."""
        return TierSet(
            database=self.mongodb_enabled,
            monitor=self.monitor_enabled,
            gateway=self.gateway_url is not None,
            aid=self.aid_enabled,
        )

    def policy(self) -> Policy:
        """The chain named by ``VERIFIER_CHAIN`` with this node's timing bounds and cost
        features (status cache, backoff)."""
        return dataclasses.replace(Policy.named(self.chain, self.timing),
                                   status_cache_s=self.status_cache_s, backoff=self.backoff)

    def identity(self) -> EncoderIdentity | None:
        """The signing identity from ``ENCODER_PRIVATE_KEY``, or ``None`` when it is unset."""
        if self.encoder_private_key is None:
            return None
        from ._identity import EncoderIdentity

        return EncoderIdentity.from_private_key(self.encoder_private_key)

    # ------------------------------------------------------------------ display

    def describe(self) -> dict[str, str]:
        """Every setting by variable name, as text safe to print or log (secrets redacted)."""
        def flag(value: bool) -> str:
            return "true" if value else "false"

        did = self.encoder_did or "<unset>"
        if self.encoder_did and self.encoder_private_key:
            did += " (from ENCODER_PRIVATE_KEY)"
        shown = {
            "GATEWAY_MONITOR_ENABLED": flag(self.monitor_enabled),
            "GATEWAY_MONITOR_BASE_URL": (redact_url(self.monitor_base_url) + (
                " (unset: the production monitor)" if self.monitor_url_defaulted else ""))
            if self.monitor_base_url else "<unset>",
            "MONGODB_VERIFICATION_ENABLED": flag(self.mongodb_enabled),
            "MONGODB_URI": redact_mongodb_uri(self.mongodb_uri) if self.mongodb_uri else "<unset>",
            "DATABASE_NAME": self.database_name,
            "GATEWAY_URL": redact_url(self.gateway_url) if self.gateway_url else "<unset>",
            "GATEWAY_AID_ENABLED": flag(self.aid_enabled),
            "GATEWAY_AID_BASE_URL": redact_url(self.aid_base_url) if self.aid_base_url
            else "<unset>",
            _SECRET_KEY: "<set>" if self.encoder_private_key else "<unset>",
            "ENCODER_DID": did,
            "VERIFIER_CHAIN": self.chain,
            "VERIFIER_METRICS_PORT": "<unset>" if self.metrics_port is None
            else str(self.metrics_port),
            "VERIFIER_METRICS_ADDR": self.metrics_addr,
            "VERIFIER_STATUS_CACHE_S": f"{self.status_cache_s:g}",
            "VERIFIER_BACKOFF": flag(self.backoff),
            "VERIFIER_PUSH": flag(self.push),
            "VERIFIER_ALLOW_UNSAFE_CHAIN": flag(self.allow_unsafe_chain),
        }
        for field, variable in TIMING_VARIABLES.items():
            shown[variable] = f"{getattr(self.timing, field):g}"
        return shown

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.describe().items())
        return f"Settings({inner})"

    def __str__(self) -> str:
        return "\n".join(f"{k}={v}" for k, v in self.describe().items())


def _warn_of_near_misses(environ: Mapping[str, str]) -> None:
    """A warning (``ENV_UNKNOWN_NAME``) for each variable of the process environment that is
    no setting but close to one (``VERIFER_RECHECK_INTERVAL_S``, ``GATWAY_AID_ENABLED``,
    ``verifier_chain``): ignored without a word, they left the default in force while the
    operator believed them set (adversarial review). A warning only, unlike in ``.env``: the
    environment is shared with every other program (``VERIFIER_*`` names excepted, refused
    in :meth:`Settings._validated`), and :func:`close_setting`'s high cutoff keeps their
    names (PATH, HOME, LANG, SSL_CERT_FILE...) out of it."""
    for name in sorted(environ):
        if name.startswith("VERIFIER_"):
            continue
        meant = close_setting(name, KNOWN_VARIABLES)
        if meant is not None:
            case = " (names are case-sensitive)" if meant.upper() == name.upper() else ""
            _LOGGER.warning("ENV_UNKNOWN_NAME: %s is not a setting of this verifier: did you "
                            "mean %s?%s (ignored)", name, meant, case)


def _unknown_chain(chain: str) -> str:
    """The refusal of a ``VERIFIER_CHAIN`` that names no chain: the value if it may be a typo
    (with the chain it may mean), and every chain's name."""
    shown = _shown(chain, _looks_like_chain)
    meant = _near_misses(chain, builtin_chain_names())[:1] if shown.startswith("'") else []
    hint = f" (did you mean {meant[0]!r}?)" if meant and meant[0] != chain else ""
    return (f"is not a known chain, got {shown}{hint}; known: "
            f"{', '.join(builtin_chain_names())}")


#: Words of a variable's name that mean its value is a credential, in this program's
#: settings (ENCODER_PRIVATE_KEY) and in the encoder's own, when it shares the ``.env``
#: (a posting key, an API token, a password)...
_CREDENTIAL_WORDS: Final = frozenset({
    "KEY", "PRIVKEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASS", "PWD",
    "PASSPHRASE", "CREDENTIAL", "CREDENTIALS"})
#: ...unless another word says it is not one: a public key, or where a key is kept.
_NOT_CREDENTIAL_WORDS: Final = frozenset({"PUBLIC", "PUB", "FILE", "PATH", "DIR"})
#: A URL with a password in its user info (``mongodb://user:password@host``).
_URL_PASSWORD: Final = re.compile(r"://[^/?#@:]*:[^@\s]+@")


def _is_credential(name: str, value: str) -> bool:
    """Whether a ``.env`` variable holds a credential, for the warning of a ``.env`` others
    may read (:func:`verifier._dotenv.read_dotenv`): a set value under a key, token or
    password name, or any URL with a password (``MONGODB_URI``, a gateway URL with one).
    A MongoDB URI without a password is no secret, and neither is an empty key."""
    if not value.strip():
        return False
    words = set(name.upper().split("_"))
    if words & _CREDENTIAL_WORDS and not words & _NOT_CREDENTIAL_WORDS:
        return True
    return _URL_PASSWORD.search(value) is not None


def _metrics_addr(env: Mapping[str, str]) -> str:
    raw = env.get("VERIFIER_METRICS_ADDR", "").strip() or "127.0.0.1"
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        raise ConfigurationError(
            "VERIFIER_METRICS_ADDR",
            "must be an IP address to listen on (127.0.0.1, 0.0.0.0 or ::1, for example), "
            f"got {_shown(raw, _looks_like_address)}") from None
    # A group or broadcast address is no address to accept connections on: Linux binds a
    # TCP socket to 224.0.0.1 or 255.255.255.255 without complaint, and the node logged
    # "serving" an exporter nobody could reach (adversarial review). 240.0.0.0/4 (reserved,
    # the broadcast address included) is no host's address either. 0.0.0.0 and :: (every
    # address of the host) stay: the documented way to serve other containers.
    if address.is_multicast or (address.version == 4 and address.is_reserved):
        kind = "a multicast" if address.is_multicast else "a broadcast or reserved"
        raise ConfigurationError(
            "VERIFIER_METRICS_ADDR", f"is {kind} address ({raw}): give an address of this "
            "host, 127.0.0.1 (the default) or 0.0.0.0 (every address)")
    return raw


def _encoder_did(did: str | None, private_key: str | None) -> str | None:
    """``ENCODER_DID`` checked against the key, or the key's DID, or ``None``.

    ``ENCODER_DID`` must be a well-formed Ed25519 ``did:key`` (either spelling the gateway
    uses): every encoder's DID is one, and a value that is not (a placeholder, a typo, a
    non-ASCII character, which no HTTP header can carry) would otherwise fail every Gateway
    Aid request, or be compared with owners and never match.
    """
    derived = None
    if private_key is not None:
        from ._identity import EncoderIdentity

        derived = EncoderIdentity.from_private_key(private_key).did
    if did is None:
        return derived
    from ._identity import did_key_public_key

    try:
        did = validate_did(did)
        did_key_public_key(normalize_did(did))
    except InvalidInputError as exc:
        raise ConfigurationError(
            "ENCODER_DID", f"is not an encoder's Ed25519 did:key ({exc})"
        ) from None
    if derived is not None and normalize_did(did) != derived:
        raise ConfigurationError(
            "ENCODER_DID",
            f"does not match the DID of ENCODER_PRIVATE_KEY ({derived}); the gateway records "
            "the key's DID as owner, so unset ENCODER_DID or fix it",
        )
    return did

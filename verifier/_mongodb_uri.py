"""``MONGODB_URI``: the MongoDB connection string, parsed once and shown only redacted.

Two places read the URI: :class:`~verifier.Settings` checks it at start-up, and
:class:`~verifier.DatabaseTier` needs its hosts (to say where it failed to connect) and its
password (to scrub it from driver messages). Both use :func:`parse_mongodb_uri`, so a URI one of
them accepts is a URI the other accepts too. (They once parsed it separately, and the tier's
lenient reading took ``mongodb://us/er:pw@db`` for host ``us`` and database ``er:pw@db``, then
showed the password in its ``repr``.)

The parser follows the connection-string rules pymongo enforces, so that a URI accepted here does
not fail later inside the driver, whose messages could quote it. It is written by hand rather
than borrowed: pymongo's parser resolves ``mongodb+srv`` names over DNS, and
:func:`~verifier._ids.redact_url` (``urllib``) was not written for comma-separated host lists.

Credentials never leave this module in clear:

* a refusal is a :class:`~verifier.ConfigurationError` naming ``MONGODB_URI`` and the problem,
  never the value, and nothing is chained to it;
* :class:`MongoUri` shows itself (``repr`` and ``str``) as :meth:`MongoUri.redacted`;
* options are never shown, because they can carry secrets too
  (``tlsCertificateKeyFilePassword``).
"""

from __future__ import annotations

import unicodedata
import urllib.parse
from dataclasses import dataclass
from typing import Final

from ._errors import ConfigurationError

__all__ = ["VARIABLE", "MongoUri", "parse_mongodb_uri", "redact_mongodb_uri"]

#: The setting every refusal names.
VARIABLE: Final = "MONGODB_URI"
_SCHEMES: Final = ("mongodb+srv", "mongodb")  # the longer first: "mongodb" prefixes the other
#: Characters that must be percent-encoded in a MongoDB user name or password.
_USERINFO_RESERVED: Final = frozenset(":/?#[]@")


#: Words in an option's name that say its value is a credential.
#: (Not "key": tlsCertificateKeyFile is a path, the one useful detail of its errors; its
#: password option says "password".)
_SECRET_OPTION_WORDS: Final = ("password", "secret", "token", "authmechanismproperties")
#: Words in the name of an ``authMechanismProperties`` property that say its value is one.
_SECRET_PROPERTY_WORDS: Final = ("session_token", "secret", "password")


@dataclass(frozen=True, repr=False)
class MongoUri:
    """A parsed MongoDB URI. ``user`` and ``password`` are as written (percent-encoded).

    ``database`` is ``None`` when no ``/`` follows the hosts (``""`` for a bare ``/``);
    ``options`` is ``None`` when there is no ``?`` (``""`` for a bare ``?``). The password and
    the options are credentials: read them only to scrub messages, never to show them.
    """

    scheme: str
    user: str
    password: str
    hosts: tuple[str, ...]
    database: str | None
    options: str | None

    @property
    def secrets(self) -> tuple[str, ...]:
        """What to scrub from messages, longest first: the password as written and decoded
        both ways (pymongo decodes with ``unquote_plus``: ``+`` is a space), and the values of
        options that carry secrets (``tlsCertificateKeyFilePassword``, a session token in
        ``authMechanismProperties``...). Other option values (``tls=true``) are not secrets,
        and scrubbing them would garble every message (security review, session 16)."""
        found = set()
        for value in [self.password, *self._secret_options()]:
            if value:
                found.update({value, urllib.parse.unquote(value),
                              urllib.parse.unquote_plus(value)})
        # A secret property on its own too, as the driver reads it (``NAME:value`` pairs, comma
        # separated): a message quoting the session token alone kept it (a differential test
        # against pymongo, session 39). Only properties named as secrets: SERVICE_NAME's
        # ``mongodb`` scrubbed from every message would garble them all.
        for value in self._secret_options():
            for piece in urllib.parse.unquote_plus(value).split(","):
                name, colon, secret = piece.partition(":")
                if colon and any(word in name.lower() for word in _SECRET_PROPERTY_WORDS):
                    found.add(secret)
        return tuple(sorted((v for v in found if v.strip()), key=len, reverse=True))

    def _secret_options(self) -> list[str]:
        """The values of secret-bearing options as written (``secrets`` decodes them).

        pymongo separates options with ``&`` or with ``;`` (it refuses a mix); both readings
        are taken, so a secret after a ``;`` is scrubbed too (security review), and a ``;``
        inside a value read the ``&`` way does not cut the secret short.
        """
        return [value for key, value in _option_pairs(self.options or "", "&;")
                if any(word in key.lower() for word in _SECRET_OPTION_WORDS)]

    def redacted(self) -> str:
        """The URI with the password as ``***`` and any options as ``<options>``.

        For an operator checking the settings: the user name stays (it names the account).
        """
        auth = f"{self.user}:***@" if self.password else (f"{self.user}@" if self.user else "")
        path = "" if self.database is None else "/" + self.database
        options = "" if self.options is None else "?<options>"
        return f"{self.scheme}://{auth}{','.join(self.hosts)}{path}{options}"

    def location(self) -> str:
        """Scheme, hosts and database only (``mongodb://h1,h2/db``): where, not who."""
        return f"{self.scheme}://{','.join(self.hosts)}/{self.database or ''}"

    def __repr__(self) -> str:
        return f"MongoUri({self.redacted()!r})"


def _valid_host(host: str) -> bool:
    """``host``, ``host:port`` or ``[v6]:port`` with a port in 1..65535."""
    if host.startswith("["):
        end = host.find("]")
        if end < 2:
            return False
        port = host[end + 1:]
        if port and not port.startswith(":"):
            return False
        port = port[1:] if port else ""
    else:
        name, _, port = host.partition(":")
        if not name or ":" in port:
            return False
    # At most 5 digits before int(), which raises ValueError past 4300 digits: that escaped
    # as a traceback (exit 1), and made redact_mongodb_uri raise instead of returning
    # "<invalid>" (adversarial review).
    return not port or (port.isascii() and port.isdigit() and len(port) <= 5
                        and 0 < int(port) < 65536)


def parse_mongodb_uri(uri: str) -> MongoUri:
    """Parse ``uri``; a :class:`ConfigurationError` names ``MONGODB_URI``, never the value."""
    # Cc is C0, DEL and C1 alike (session 39: C1 controls passed, as they did in the URL
    # settings until session 38).
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in uri):
        raise ConfigurationError(VARIABLE, "contains whitespace or control characters")
    for scheme in _SCHEMES:
        if uri.startswith(scheme + "://"):
            break
    else:
        raise ConfigurationError(VARIABLE, "must start with mongodb:// or mongodb+srv://")
    host_part, slash, path = uri[len(scheme) + 3:].partition("/")
    if "@" in path.partition("?")[0]:  # in the options it is a value's (appname=me@corp)
        # pymongo would read "u/ser:pw@db" as host "u" and database "ser:pw@db", and the
        # password would then be shown as part of the path: refuse it instead.
        raise ConfigurationError(VARIABLE, "has an '@' after the host list: percent-encode the "
                                 "user name and password")
    userinfo, at, hosts = host_part.rpartition("@")
    user, _, password = userinfo.partition(":")
    if at and not user:
        raise ConfigurationError(VARIABLE, "has an '@' but no user name")
    if any(c in _USERINFO_RESERVED for c in user + password):
        raise ConfigurationError(VARIABLE, "user name and password must be percent-encoded")
    if "?" in hosts:
        raise ConfigurationError(VARIABLE, "needs a '/' between the host list and the options")
    host_list = tuple(hosts.split(","))
    if not hosts or not all(_valid_host(h) for h in host_list):
        raise ConfigurationError(
            VARIABLE, "needs at least one host (host or host:port, comma-separated)"
        )
    if scheme == "mongodb+srv" and (len(host_list) != 1 or ":" in hosts.strip("[]")):
        raise ConfigurationError(
            VARIABLE, "mongodb+srv:// takes exactly one host name and no port"
        )
    if at and ":" not in userinfo and ":" in urllib.parse.unquote_plus(user):
        # "user%3Apassword@host": the whole user info encoded, ':' included. pymongo reads a
        # user name with no password (and fails to log in), and the password would be shown
        # as part of the user name in every message (an adversarial review, session 21). A
        # user name may hold an encoded ':' beside a password ("us%3Aer:pw@"): accepted.
        raise ConfigurationError(VARIABLE, "has a ':' encoded in its user name: encode the user "
                                 "name and the password separately, with a plain ':' between")
    database, question, options = path.partition("?")
    if question and _unacknowledged(options):
        # With w=0 pymongo sends a write and reports no outcome: a claim would read as
        # refused although it was applied, and no heartbeat could ever be confirmed.
        raise ConfigurationError(VARIABLE, "asks for unacknowledged writes (w=0): the tier "
                                 "must know each write's outcome; remove the w option or "
                                 "use w=majority")
    return MongoUri(
        scheme=scheme,
        user=user,
        password=password,
        hosts=host_list,
        database=database if slash else None,
        options=options if question else None,
    )


def _option_pairs(options: str, separators: str) -> list[tuple[str, str]]:
    """``(name, value)`` of each option as written, split at each of ``separators`` in turn."""
    return [(key, value) for separator in separators for key, _, value in
            (item.partition("=") for item in options.split(separator))]


def _unacknowledged(options: str) -> bool:
    """Whether the options ask for ``w=0`` as pymongo reads them: the last ``w`` given (names
    are case-insensitive; either separator), read as an integer when it is one (``00`` and
    ``-0`` are 0 too)."""
    separator = ";" if ";" in options and "&" not in options else "&"
    values = [urllib.parse.unquote_plus(value).strip()
              for key, value in _option_pairs(options, separator) if key.strip().lower() == "w"]
    if not values:
        return False
    try:
        return int(values[-1]) == 0
    except ValueError:
        return False  # a tag set or "majority"


def redact_mongodb_uri(uri: str) -> str:
    """:meth:`MongoUri.redacted` of ``uri``; ``<invalid>`` when it does not parse, rather than
    risk echoing it."""
    try:
        return parse_mongodb_uri(uri).redacted()
    except ConfigurationError:
        return "<invalid>"

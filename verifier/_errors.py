"""The exception hierarchy of :mod:`verifier`.

Every failure the package raises on purpose is a :class:`VerifierError`, so a caller can
catch one class and know it never means "safe to process"::

    VerifierError
    ├── ConfigurationError      start-up settings are missing, malformed or inconsistent
    ├── InvalidInputError       a job id or DID that cannot be used (also a ValueError)
    ├── TierError               a verification tier gave no usable answer
    │   ├── TierTimeout         no answer within the timeout (the write may still land)
    │   ├── TierUnavailable     connection refused/reset, 5xx, the tier disabled or down
    │   ├── TierRateLimited     HTTP 429; ``retry_after`` in seconds when the server said
    │   └── MalformedAnswer     not JSON, or JSON that does not parse as the expected shape
    └── ClaimRefused            the tier answered, and the answer is "not yours"

Why a tree and not return codes: "the tier did not answer" and "the job does not exist" must
never be confused (the deployed encoder treated both as "unassigned", see
``docs/contract.md``, defects 2 and 3). Messages never contain credentials; callers pass
URLs through :func:`verifier._ids.redact_url` before putting them in a message.
"""

from __future__ import annotations

__all__ = [
    "ClaimRefused",
    "ConfigurationError",
    "InvalidInputError",
    "MalformedAnswer",
    "RequestNotSent",
    "TierError",
    "TierRateLimited",
    "TierTimeout",
    "TierUnavailable",
    "VerifierError",
]


class VerifierError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(VerifierError):
    """Settings that stop start-up; the message names the offending variable."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


class InvalidInputError(VerifierError, ValueError):
    """A job id or DID that cannot be used safely (wrong type, empty, too long, control chars)."""


class TierError(VerifierError):
    """A tier (database, monitor, gateway, aid) did not give a usable answer.

    ``tier`` names the tier; the message says what went wrong without credentials.
    """

    #: Set on the error of a *claim* that sent a claim token (the database tier): the write
    #: may still land, and only this token tells its assignment from an older one of ours.
    #: Never part of the message.
    claim_token: str | None = None

    def __init__(self, tier: str, message: str) -> None:
        self.tier = tier
        super().__init__(f"{tier}: {message}")


class TierTimeout(TierError):
    """No answer in time. For a write, the outcome is unknown: it may still land."""


class TierUnavailable(TierError):
    """The tier is down, unreachable, disabled, or answered a server error."""


class TierUnsupported(TierUnavailable):
    """The tier does not offer this operation (Gateway Aid has no release), or the client is
    closed: raised before anything is sent. Metrics do not count it as a request."""


class RequestNotSent(TierUnavailable):
    """The request never left: the instant it had to be sent by passed first (a slow connect,
    a full connection pool). Unlike every other failure of a write, its outcome is known: it
    did not land. A client raises it only when it is sure (:func:`verifier._http.sending_by`)."""


class TierRateLimited(TierUnavailable):
    """HTTP 429. ``retry_after`` holds the server's hint in seconds, if it gave one."""

    def __init__(self, tier: str, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(tier, message)


class MalformedAnswer(TierError):
    """The tier answered, but not in a shape we can trust (not JSON, wrong types, truncated)."""


class ClaimRefused(VerifierError):
    """A claim or a fenced write was refused: the job is someone else's or not claimable."""

    def __init__(self, tier: str, message: str) -> None:
        self.tier = tier
        super().__init__(f"{tier}: {message}")

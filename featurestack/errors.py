"""Errors for a service featurestack depends on being down, typed so callers can map them.

A scoring service answers 503 on :class:`StoreUnavailable`; the CLI prints any
:class:`ServiceUnavailable` as one message (which service, where, what to fix) and exits 3.
This module imports nothing, so a store or a web handler can catch these cheaply.
"""

from __future__ import annotations

#: The CLI's exit code when a service is unreachable (1: a failed check, 2: bad usage).
EXIT_UNAVAILABLE = 3


class ServiceUnavailable(RuntimeError):
    """A service (Redis, PostgreSQL, MLflow tracking) did not answer within the time budget."""

    def __init__(self, service: str, where: str, cause: object, fix: str) -> None:
        self.service, self.where, self.cause, self.fix = service, where, cause, fix
        super().__init__(f"{service} at {where} is unavailable: {cause}. Fix: {fix}")


class StoreUnavailable(ServiceUnavailable):
    """The online store could not be read or written (lookups and materialization)."""


def redact(url: str) -> str:
    """``url`` without its password, for messages and reports."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))

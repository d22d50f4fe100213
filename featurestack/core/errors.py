"""One root for every error featurestack raises on purpose, each knowing how it ends a command
(exit code) and a request (HTTP status), so the CLI and the model server map errors once.

The exit codes are the documented ones:

- ``1`` (:data:`EXIT_FAILED`): a check failed on the data, or something a command needs does
  not exist yet (a model without a champion, an unknown run or study); the message names it
  and the command that makes it;
- ``2`` (:data:`EXIT_USAGE`): the command line, a spec or a configuration is wrong;
- ``3`` (:data:`EXIT_UNAVAILABLE`): a service (Redis, PostgreSQL, MLflow tracking) did not answer
  within the time budget.

Each class also subclasses the built-in exception callers caught before the root existed
(``ValueError``, ``LookupError``, ``RuntimeError``), so ``except ValueError`` keeps working.
This module imports nothing, so a store or a web handler can catch these cheaply.
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_USAGE = 2
#: The CLI's exit code when a service is unreachable (1: a failed check, 2: bad usage).
EXIT_UNAVAILABLE = 3


class FeaturestackError(Exception):
    """The root: a message that names the input, the rule and the fix."""

    exit_code: int = EXIT_FAILED
    http_status: int = 500


class UsageError(FeaturestackError, ValueError):
    """The command line, a spec, a configuration or a request is wrong: fix the input."""

    exit_code = EXIT_USAGE
    http_status = 422


class CheckFailed(FeaturestackError, ValueError):
    """Data failed a check (a training set, model inputs, a contract): nothing was written."""

    exit_code = EXIT_FAILED
    http_status = 422


class NotFound(FeaturestackError, LookupError):
    """Something named does not exist (yet): the message says which command makes it."""

    exit_code = EXIT_FAILED
    http_status = 404


class ConfigError(UsageError):
    """An environment variable or a configuration file holds a value featurestack cannot use."""

    http_status = 500  # the server's own configuration, not the client's request


class ServiceUnavailable(FeaturestackError, RuntimeError):
    """A service (Redis, PostgreSQL, MLflow tracking) did not answer within the time budget."""

    exit_code = EXIT_UNAVAILABLE
    http_status = 503

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

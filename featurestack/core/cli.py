"""What every featurestack command line shares: errors mapped to exit codes once, third-party
chatter silenced, and stage progress printed the same way.

``featurestack``, ``python -m models_py`` and ``python -m validation`` all build their Typer
apps with :class:`CommandGroup`, so a :class:`~featurestack.core.errors.FeaturestackError`
raised anywhere below a command ends it with one red line and the error's exit code instead
of a traceback; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import typer
from typer.core import TyperGroup

from featurestack.core.errors import FeaturestackError


class CommandGroup(TyperGroup):
    """A Typer group whose commands end a :class:`FeaturestackError` with its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except FeaturestackError as err:
            typer.secho(str(err), fg="red", err=True)
            raise typer.Exit(err.exit_code) from None


def quiet_warnings() -> None:
    """Silence third-party deprecation chatter that says nothing about the user's data."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*Inferred schema contains integer.*")
    # MLflow notes how it pickles and that pip has no version here: facts, not problems.
    for name in ("mlflow.sklearn", "mlflow.utils.environment", "mlflow.utils.uv_utils"):
        logging.getLogger(name).setLevel(logging.ERROR)


class Stages:
    """``[n/total] title …`` when a stage starts and ``done in x s`` when it ends."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self.started = total, 0, 0.0

    def start(self, title: str) -> None:
        self.n += 1
        typer.secho(f"[{self.n}/{self.total}] {title} …", bold=True)
        self.started = time.perf_counter()

    def done(self) -> float:
        elapsed = time.perf_counter() - self.started
        typer.echo(f"      done in {elapsed:.1f} s")
        return elapsed

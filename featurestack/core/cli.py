"""What every featurestack command line shares: errors mapped to exit codes once, third-party
chatter silenced, and stage progress printed the same way.

``featurestack``, ``python -m models_py`` and ``python -m validation`` all build their Typer
apps with :class:`CommandGroup`, so a :class:`~featurestack.core.errors.FeaturestackError`
raised anywhere below a command ends it with one red line and the error's exit code instead
of a traceback; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from featurestack.core.errors import FeaturestackError, UsageError
from featurestack.core.project import ENV as PROJECT_ENV
from featurestack.core.project import load_project

#: ``--project-dir`` of every command line (dbt's ``--project-dir``, Feast's ``--chdir``)
ProjectDirOption = Annotated[
    Path | None,
    typer.Option(
        "--project-dir",
        help="The project folder (dbt_project/, feature_repo/, specs, gate rules); default: "
        "FEATURESTACK_PROJECT_DIR, else the nearest parent of the working directory that is "
        "one.",
        show_default=False,
    ),
]


def use_project_dir(project_dir: Path | None) -> None:
    """Make ``--project-dir`` the project of this command and of the tools it runs (dbt,
    Feast's repo modules read FEATURESTACK_PROJECT_DIR); checked now, so a wrong folder is one
    clear line."""
    if project_dir is not None:
        os.environ[PROJECT_ENV] = str(load_project(project_dir).root)


def parse_entities(items: list[str]) -> list[dict[str, str]]:
    """``--entity KEY=VALUE[,KEY=VALUE]`` (repeatable) as entity rows (values as text; the
    caller converts them to the keys' types)."""
    rows = []
    for item in items:
        pairs = [p.split("=", 1) for p in item.split(",")]
        if any(len(p) != 2 or not p[0].strip() for p in pairs):
            raise UsageError(
                f"--entity {item!r}: expected KEY=VALUE, or KEY=VALUE,KEY=VALUE for a composite "
                "key (e.g. --entity store_id=3,product_id=A12)"
            )
        rows.append({k.strip(): v.strip() for k, v in pairs})
    return rows


class CommandGroup(TyperGroup):
    """A Typer group whose commands end a :class:`FeaturestackError` with its exit code, and
    which takes ``--project-dir`` anywhere on the line (``featurestack run --project-dir X``
    as ``dbt build --project-dir X`` does), for every command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _project_dir_first(args))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except FeaturestackError as err:
            typer.secho(str(err), fg="red", err=True)
            raise typer.Exit(err.exit_code) from None


def _project_dir_first(args: list[str]) -> list[str]:
    """``--project-dir X`` (or ``--project-dir=X``) moved before the subcommand, where the
    group's callback takes it."""
    found: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg == "--project-dir" and i + 1 < len(args):
            found, i = ["--project-dir", args[i + 1]], i + 2
            continue
        if arg.startswith("--project-dir="):
            found, i = [arg], i + 1
            continue
        rest.append(arg)
        i += 1
    return found + rest


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

"""The gate's commands (`python -m validation gate`; `featurestack validate` is the same
command): audit the warehouse and publish for Feast only on success."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from featurestack.core.cli import CommandGroup, ProjectDirOption, use_project_dir
from featurestack.core.settings import load_settings

app = typer.Typer(
    cls=CommandGroup, add_completion=False, no_args_is_help=True, help="The data-quality gate."
)


@app.callback()
def _main(project_dir: ProjectDirOption = None) -> None:
    """Great Expectations suites generated from the dbt manifest, and the publish step."""
    use_project_dir(project_dir)


@app.command()
def gate(
    no_publish: Annotated[
        bool, typer.Option("--no-publish", help="Validate only; never touch published files.")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Expectations of severity warning (drift by default) block too; without it "
            "they are reported and publication goes on, as dbt's severity: warn.",
        ),
    ] = False,
    warn_only: Annotated[
        bool, typer.Option("--warn-only", hidden=True, help="The default: warnings warn.")
    ] = False,
    as_of: Annotated[
        datetime | None,
        typer.Option(help="Measure freshness at this UTC instant instead of now (backfills)."),
    ] = None,
) -> None:
    """Validate what every table dbt built for publishing would change; publish them all only
    if all pass.

    Exit code 0 when the gate passes, 1 when any expectation fails: nothing is published, the
    failing batches are kept in <data>/quarantine/<run>/, and the report names each failed
    expectation, the column, observed vs expected, and up to 10 offending keys.

    Example: python -m validation gate --strict
    """
    from validation.gate import run_gate

    now = as_of.replace(tzinfo=UTC) if as_of and as_of.tzinfo is None else as_of
    result = run_gate(load_settings(), publish=not no_publish, warn_only=not strict, now=now)
    typer.echo(result.summary())
    raise typer.Exit(0 if result.success else 1)

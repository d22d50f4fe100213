"""`python -m validation gate`: audit the warehouse and publish for Feast only on success."""

from __future__ import annotations

from typing import Annotated

import typer

from featurestack.settings import load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="The data-quality gate.")


@app.callback()
def _main() -> None:
    """Great Expectations suites generated from the dbt manifest, and the publish step."""


@app.command()
def gate(
    no_publish: Annotated[
        bool, typer.Option("--no-publish", help="Validate only; never touch published files.")
    ] = False,
) -> None:
    """Validate every table dbt built for publishing; publish them all only if all pass.

    Exit code 0 when the gate passes, 1 when any expectation fails (nothing is published).

    Example: python -m validation gate
    """
    from validation.gate import run_gate

    result = run_gate(load_settings(), publish=not no_publish)
    typer.echo(result.summary())
    raise typer.Exit(0 if result.success else 1)


if __name__ == "__main__":
    app()

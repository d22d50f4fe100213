"""``featurestack check-leakage``: the leakage and incremental-equivalence checks of
featurestack/leakage.py on the current project, from the command line."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from featurestack.core.cli import quiet_warnings
from featurestack.core.settings import load_settings


def check_leakage(
    cut: Annotated[
        list[datetime],
        typer.Option(
            "--cut",
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"],
            help="An instant to rebuild as of (UTC unless an offset is given); repeatable.",
        ),
    ],
    incremental: Annotated[
        bool,
        typer.Option(
            "--incremental/--no-incremental",
            help="Also build incrementally after the first cut and compare with a full build.",
        ),
    ] = True,
    work: Annotated[
        Path | None,
        typer.Option("--work", help="Keep the scratch builds in this folder (default: removed)."),
    ] = None,
) -> None:
    """Check every published table of the project for leakage: rebuilt from the raw data known
    at each --cut T, each feature row at or before T (and each label known by T) must equal the
    full build exactly; and an incremental build must equal the full one. Exit 1 on a
    difference. The project's warehouse and published data are not touched.

    Examples:
      featurestack check-leakage --cut 2026-06-30T12:00:00
      featurestack check-leakage --cut 2026-03-02 --cut 2026-06-30T22:00:00 --no-incremental
    """
    from datetime import UTC

    from featurestack.leakage import check_leakage as run_checks

    quiet_warnings()
    cuts = [c if c.tzinfo else c.replace(tzinfo=UTC) for c in cut]
    report = run_checks(load_settings(), cuts, incremental, work)
    for line in report.lines():
        typer.echo(line)
    if not report.ok:
        typer.secho(f"{len(report.failed)} table check(s) failed", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"no leakage: {len(report.checks)} table checks identical")

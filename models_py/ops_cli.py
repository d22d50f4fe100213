"""Day-2 commands (registered at the end of models_py/cli.py and featurestack/cli.py): deploy a
challenger for a while, list and evaluate deployments (models_py/deployments.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from featurestack.core.errors import UsageError
from featurestack.core.settings import load_settings


def deploy(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version to run as challenger.")],
    shadow: Annotated[
        bool, typer.Option("--shadow", help="Score every request, never answer with it.")
    ] = False,
    split: Annotated[
        float | None,
        typer.Option("--split", help="Answer this share of the entities (0 < share < 1)."),
    ] = None,
    days: Annotated[float, typer.Option(help="How long it runs before it is judged.")] = 7,
) -> None:
    """Run a version as challenger, in shadow or on a share of traffic, for --days; a running
    server picks it up within its reload interval. `featurestack deployments evaluate` judges it.

    Examples:
      featurestack deploy my_model 4 --shadow --days 7
      featurestack deploy my_model 4 --split 0.2 --days 3
    """
    from models_py.deployments import deploy as start

    if shadow == (split is not None):
        raise UsageError("give exactly one of --shadow or --split SHARE (e.g. --split 0.2)")
    record = start(
        load_settings(),
        model,
        version,
        "shadow" if shadow else "split",
        days,
        share=split,
    )
    how = "in shadow" if record.mode == "shadow" else f"on {record.share:.0%} of traffic"
    typer.echo(
        f"{model} v{record.version} deployed {how} against champion v{record.champion_version} "
        f"until {record.ends} (deployment {record.id})"
    )


deployments_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Challenger deployments: what runs where since when; judge them on labelled traffic.",
)


@deployments_app.command("list")
def deployments_list(
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
) -> None:
    """Every deployment, oldest first: model, version, the champion it is compared with,
    mode, period, status and the reason of its verdict.

    Example: featurestack deployments list
    """
    from models_py.deployments import load, table

    rows = [d for d in load(load_settings()) if model is None or d.model == model]
    typer.echo(table(rows))


@deployments_app.command("evaluate")
def deployments_evaluate(
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    min_labels: Annotated[
        int, typer.Option(min=1, help="Labelled predictions needed on each arm to decide.")
    ] = 50,
) -> None:
    """Judge running deployments by the spec's primary metric on labelled traffic: promote the
    challenger, reject it, keep it running (too few labels yet), or end it inconclusive
    (its period is over). The reason is recorded (deployments list, and version tags).

    Example: featurestack deployments evaluate --model my_model
    """
    from models_py.deployments import evaluate, table

    judged = evaluate(load_settings(), model, min_labels=min_labels)
    if not judged:
        typer.echo("no running deployment to evaluate")
        return
    typer.echo(table(judged))


def learn(
    model: Annotated[str, typer.Option("--model", help="Registered (batch) model name.")],
) -> None:
    """Learn the new labelled outcomes of the prediction log once each, into the online model
    blended with the batch model (spec `online`); a re-run after a crash learns nothing twice.
    A running server picks the new online version up within its reload interval.

    Example: featurestack learn --model my_model
    """
    from models_py.online import learn as run_learn

    result = run_learn(load_settings(), model)
    where = (
        f"up to {result.watermark[0].isoformat()} (request {result.watermark[1]})"
        if result.watermark
        else "nothing yet"
    )
    typer.echo(
        f"{model}: learned {result.learned} outcomes, skipped {result.skipped} (never "
        f"labelled), {result.waiting} wait for their label; online version "
        f"{result.version or 'none'} has learned {result.total} in all; log consumed {where}"
    )


def retrain(
    model: Annotated[str, typer.Option("--model", help="Model (spec name) to retrain.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be done; train nothing.")
    ] = False,
) -> None:
    """Retrain when the last monitor run or the champion's age calls for it (spec `retrain`:
    on_drift, on_degradation, max_age_days, warm_start_on_age), then train as `featurestack
    train` does (champion only if it beats the current one). The command a scheduler calls.

    Example: featurestack retrain --model my_model
    """
    from models_py.retrain import retrain as run_retrain
    from models_py.spec import load_spec

    verdict, result = run_retrain(load_settings(), load_spec(model), dry_run=dry_run)
    typer.echo(f"{model}: {verdict.reason}")
    if result is not None:
        typer.echo(result.summary())

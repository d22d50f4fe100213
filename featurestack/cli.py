"""The `featurestack` command: composes the commands of each package and renders the flow.

dbt_project/ (dbt), validation/ (the gate), feature_repo/ (Feast) and models_py/ (training and
scoring) can each be driven by their own tool; the model and gate commands are the packages'
own (models_py/cli.py, validation/cli.py), the whole flow is featurestack/pipeline.py, and this
module only parses options and prints results.
"""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime
from typing import Annotated

import typer

from featurestack.core.cli import CommandGroup, Stages, quiet_warnings
from featurestack.core.errors import EXIT_UNAVAILABLE, redact
from featurestack.core.settings import PROFILES, load_settings
from models_py.cli import models_app
from models_py.cli import monitor as monitor_command
from models_py.cli import predict as predict_command
from models_py.cli import reproduce as reproduce_command
from models_py.cli import serve as serve_command
from models_py.cli import shadow_report as shadow_report_command
from models_py.cli import train as train_command
from models_py.cli import tune_worker as tune_worker_command
from validation.cli import gate as gate_command

app = typer.Typer(
    cls=CommandGroup,
    add_completion=False,
    no_args_is_help=True,
    help="featurestack: SQL features (dbt + DuckDB), gated (Great Expectations), served (Feast), "
    "modelled (MLflow).\n\nExample: featurestack run",
)
app.command("train")(train_command)
app.command("tune-worker")(tune_worker_command)
app.command("predict")(predict_command)
app.command("validate")(gate_command)
app.add_typer(models_app, name="models")
app.command("reproduce")(reproduce_command)
app.command("serve")(serve_command)
app.command("shadow-report")(shadow_report_command)
app.command("monitor")(monitor_command)


@app.command("demo-data")
def demo_data(
    symbols: Annotated[int, typer.Option(help="Number of symbols.")] = 50,
    accounts: Annotated[int, typer.Option(help="Number of trading accounts.")] = 200,
    days: Annotated[int, typer.Option(help="Trading days, ending on --end.")] = 756,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same values).")] = 42,
    end: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Last trading day (default: the last weekday before today, so the newest "
            "features are fresh). Same seed and end: byte-identical files.",
        ),
    ] = None,
) -> None:
    """Fill an empty raw folder with a deterministic demo market (never overwrites files).

    Example: featurestack demo-data --symbols 20 --days 300 --end 2025-06-30
    """
    from featurestack.demo_data import DemoSpec, existing_raw_files, write_demo_data

    settings = load_settings()
    present = existing_raw_files(settings.raw_dir)
    if present:
        typer.echo(
            f"{settings.raw_dir} already holds {len(present)} file(s); using them as they are "
            "(demo data only fills an empty raw folder)."
        )
        return
    try:
        spec = DemoSpec(
            symbols=symbols,
            accounts=accounts,
            days=days,
            seed=seed,
            end=end.date() if end else None,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    counts = write_demo_data(settings.raw_dir, spec)
    rows = ", ".join(f"{name} {n:,}" for name, n in counts.items())
    typer.echo(f"demo data written to {settings.raw_dir}: {rows} rows")


@app.command()
def doctor(
    env: Annotated[
        bool,
        typer.Option(
            "--env", help="Print the profile's variables as `export` lines for the native tools."
        ),
    ] = False,
) -> None:
    """Print the active profile and check each of its services: reachable, version, rights.

    Exit 3 when a check fails; each failure says what to fix. FEATURESTACK_PROFILE picks the
    profile (local: files only; scale: Redis and PostgreSQL; docs/scaling.md).

    Example: FEATURESTACK_PROFILE=scale featurestack doctor
    """
    from featurestack.infra import services

    settings = load_settings()
    if env:
        for name, value in settings.environ().items():
            typer.echo(f"export {name}={shlex.quote(value)}")
        return
    typer.secho(
        f"profile: {settings.profile} (FEATURESTACK_PROFILE; one of {', '.join(PROFILES)})",
        bold=True,
    )
    typer.echo(f"  data folder {settings.data_dir}")
    checks = services.doctor(settings)
    for check in checks:
        typer.echo(check.render())
    failed = [c.service for c in checks if not c.ok]
    if failed:
        typer.secho(f"{len(failed)} check(s) failed: {', '.join(failed)}", fg="red", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE)
    typer.echo("all services answer")


@app.command()
def reset(
    profile: Annotated[
        str, typer.Option(help="The profile whose services' state to remove (only scale).")
    ] = "scale",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove what the scale profile created: its Redis keys (FEATURESTACK_REDIS_PREFIX), its
    PostgreSQL database (only if featurestack created it), its artifacts and Feast config in
    the data folder. Nothing else is touched; the next run starts from scratch.

    Example: featurestack reset --profile scale --yes
    """
    from featurestack.infra import services

    if profile != "scale":
        typer.echo("reset removes the scale profile's services' state; local files: make clean")
        raise typer.Exit(2)
    settings = load_settings(profile="scale")
    if not yes:
        typer.confirm(
            f"Delete Redis keys {settings.redis_prefix}:* at {redact(settings.redis_url)} and "
            f"the database of {redact(settings.pg_url)}?",
            abort=True,
        )
    try:
        done = services.reset(settings)
    except ValueError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from err
    for line in done:
        typer.echo(line)


@app.command()
def build(
    full_refresh: Annotated[
        bool, typer.Option(help="Rebuild incremental models from scratch (dbt --full-refresh).")
    ] = False,
) -> None:
    """Build the dbt project into the warehouse (`dbt build`: models and their tests).

    Feature models are incremental: a build recomputes the last `feature_lookback_days`
    (dbt_project.yml) of event time. Use --full-refresh after a correction older than that.

    Example: featurestack build --full-refresh
    """
    from featurestack.infra.dbt_ops import run_dbt

    outcome = run_dbt(load_settings(), extra=["--full-refresh"] if full_refresh else None)
    typer.echo(outcome.summary())
    raise typer.Exit(0 if outcome.success else 1)


@app.command()
def codegen(
    check: Annotated[
        bool, typer.Option(help="Write nothing; exit 1 if the generated file is out of date.")
    ] = False,
) -> None:
    """Regenerate feature_repo/dbt_features.py from the dbt models tagged `feast`.

    Parses the dbt project first (`dbt parse`), so the manifest matches the yml on disk.

    Example: featurestack codegen && git diff feature_repo/dbt_features.py
    """
    from featurestack.infra import feast_codegen
    from featurestack.infra.dbt_ops import run_dbt

    outcome = run_dbt(load_settings(), command="parse")
    if not outcome.success:
        typer.echo(outcome.summary(), err=True)
        raise typer.Exit(1)
    specs = feast_codegen.view_specs()
    text = feast_codegen.render(specs)
    target = feast_codegen.GENERATED
    current = target.read_text() if target.exists() else ""
    for spec in specs:
        typer.echo(
            f"  {spec.model:<24} → feature view {spec.view} "
            f"({len(spec.features)} features, entity {spec.entity}, ttl {spec.ttl_days} d)"
        )
    if check:
        if text != current:
            typer.echo(f"{target} is out of date: run `featurestack codegen`.", err=True)
            raise typer.Exit(1)
        typer.echo(f"{target} is up to date.")
        return
    feast_codegen.write(target, text)
    typer.echo(f"{'unchanged' if text == current else 'wrote'} {target}")


@app.command()
def apply() -> None:
    """Register the Feast repo (`feast apply`) against this data folder.

    Example: featurestack apply
    """

    from featurestack.pipeline import apply_repo

    quiet_warnings()
    typer.echo(json.dumps(apply_repo(load_settings())))


@app.command()
def materialize(
    end: Annotated[
        datetime | None, typer.Option(help="Materialize up to this UTC time (default: now).")
    ] = None,
) -> None:
    """Load the newest features into the online store (`feast materialize-incremental`).

    Example: featurestack materialize
    """
    from featurestack.infra import feast_ops

    quiet_warnings()
    stop = (end.replace(tzinfo=UTC) if end and end.tzinfo is None else end) or datetime.now(UTC)
    if stop > datetime.now(UTC):
        raise typer.BadParameter(f"--end {stop:%Y-%m-%dT%H:%M:%S} is in the future")
    done = feast_ops.materialize(load_settings(), stop)
    typer.echo(json.dumps(done))


@app.command("check-consistency")
def check_consistency_command(
    sample: Annotated[int, typer.Option(help="Entities sampled per feature view.")] = 20,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
) -> None:
    """Compare online values with the offline values at now, per feature view; report staleness.

    Exits 1 when any sampled value differs. Writes data/reports/consistency/<run>.json.

    Example: featurestack check-consistency --sample 50
    """
    from featurestack.infra import feast_ops
    from featurestack.infra.consistency import run_check

    quiet_warnings()
    settings = load_settings()
    check = run_check(feast_ops.load_store(settings), settings, sample, seed)
    typer.echo(check.text)
    raise typer.Exit(0 if check.ok else 1)


@app.command()
def run(
    model: Annotated[str, typer.Option(help="Model spec to train and score.")] = "next_day_up",
    online_symbol: Annotated[
        list[str] | None, typer.Option("--online-symbol", help="Symbols to score online.")
    ] = None,
    warn_only: Annotated[
        bool,
        typer.Option("--warn-only", help="Gate expectations marked as warnings only warn."),
    ] = False,
) -> None:
    """The whole flow: dbt build → gate + publish → feast apply → materialize → train → predict.

    Stops at the first failing stage with a non-zero exit; a failed gate publishes nothing.

    Example: featurestack run
    """
    from featurestack import pipeline

    quiet_warnings()
    settings = load_settings()
    keys = [{"symbol": s} for s in online_symbol] if online_symbol else None
    result = pipeline.run(settings, model, _Progress(len(pipeline.STAGES)), keys, warn_only)
    s, m = result.summary, result.training.metrics
    typer.secho(f"\nfeaturestack run finished in {s.seconds:.0f} s", bold=True)
    typer.echo(
        f"  built      {', '.join(result.dbt.tables)} "
        f"(dbt: {sum(result.dbt.counts.values())} nodes OK)\n"
        f"  published  {len(s.published)} validated table(s) in {settings.published_dir}\n"
        f"  feast      {len(s.feast['feature_views'])} feature view(s), "
        f"services {', '.join(s.feast['feature_services'])}; online store materialized\n"
        f"  model      {s.model.name} v{s.model.version} (champion): holdout ROC-AUC "
        f"{m['holdout_roc_auc']:.3f}, log-loss {m['holdout_log_loss']:.4f} "
        f"(constant {m['holdout_log_loss_constant']:.4f}), F1 {m['holdout_f1']:.3f}\n"
        f"  predicted  {s.batch_predictions}\n"
        f"  reports    {s.gate_report} (gate), {result.summary_path}\n"
        "\nOpen the UIs:\n"
        f"  MLflow: .venv/bin/mlflow ui --port 5000 "
        f"--backend-store-uri {shlex.quote(redact(settings.mlflow_tracking_uri))}\n"
        f"  Feast:  .venv/bin/feast -c feature_repo -f {settings.feast_yaml} ui --port 8888"
    )


class _Progress(Stages):
    """The pipeline's progress, printed as each stage goes."""

    def info(self, text: str) -> None:
        typer.echo(text)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

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
from pathlib import Path
from typing import Annotated

import typer

from featurestack.core.cli import (
    CommandGroup,
    ProjectDirOption,
    Stages,
    parse_entities,
    quiet_warnings,
    use_project_dir,
)
from featurestack.core.errors import EXIT_UNAVAILABLE, redact
from featurestack.core.settings import PROFILES, load_settings
from featurestack.demo_data import demo_data_command
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


@app.callback()
def _main(project_dir: ProjectDirOption = None) -> None:
    """featurestack: SQL features (dbt + DuckDB), gated (Great Expectations), served (Feast),
    modelled (MLflow).

    Bring your own data: featurestack init my_project, copy your files into
    my_project/data/raw/, then featurestack run --project-dir my_project.
    """
    use_project_dir(project_dir)


app.command("train")(train_command)
app.command("tune-worker")(tune_worker_command)
app.command("predict")(predict_command)
app.command("validate")(gate_command)
app.add_typer(models_app, name="models")
app.command("reproduce")(reproduce_command)
app.command("serve")(serve_command)
app.command("shadow-report")(shadow_report_command)
app.command("monitor")(monitor_command)
# the demo project's data generator (`make demo`): the one command that knows a domain
app.command("demo-data")(demo_data_command)


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="The new project's folder (empty or new).")],
    example: Annotated[
        str,
        typer.Option(
            "--example",
            help="The example project to start from: minimal (one source, one feature model, "
            "one label, one spec) or another of the repository's examples/ (retail).",
        ),
    ] = "minimal",
    name: Annotated[
        str | None,
        typer.Option(
            help="The project's name (default: the folder's); it names the Feast project."
        ),
    ] = None,
) -> None:
    """Write a new project that `featurestack run` builds, gates, serves and trains on at once:
    a dbt project on a generated sample file, a Feast repo, a spec and gate rules, every file
    commented with what to change for your own data.

    Example: featurestack init my_project && featurestack run --project-dir my_project
    """
    from featurestack.infra.scaffold import init_project

    quiet_warnings()
    created = init_project(path, example, name)
    typer.echo(
        f"created project {created.name} in {created.root} (from example {created.example})\n"
        f"  sample data  {', '.join(p.name for p in created.raw_files)} in "
        f"{created.root / 'data' / 'raw'}\n"
        f"  feast views  {', '.join(created.views)} (feature_repo/dbt_features.py, generated)\n"
        "next:\n"
        f"  featurestack run --project-dir {created.root}\n"
        "  then replace data/raw/ with your own files and edit the models, specs and gate.yml"
    )


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
    from featurestack.core.state import record_time
    from featurestack.infra.dbt_ops import run_dbt

    settings = load_settings()
    outcome = run_dbt(settings, extra=["--full-refresh"] if full_refresh else None)
    record_time(settings, built=None)  # a live build: `run --as-of` rebuilds from scratch
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

    settings = load_settings()
    outcome = run_dbt(settings, command="parse")
    if not outcome.success:
        typer.echo(outcome.summary(), err=True)
        raise typer.Exit(1)
    project = settings.project
    specs = feast_codegen.view_specs(project.manifest)
    text = feast_codegen.render(specs)
    target = project.feature_repo_dir / feast_codegen.GENERATED
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


AsOfOption = Annotated[
    datetime | None,
    typer.Option(
        "--as-of",
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"],
        help="Run as if it were this UTC instant (a date means its end): dbt sees the raw rows "
        "known then, the gate measures freshness then, training and scoring use what was "
        "published then. For history and backtests.",
        show_default=False,
    ),
]


def _instant(value: datetime | None) -> datetime | None:
    """A date alone means the end of that UTC day; a naive time is UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if (value.hour, value.minute, value.second) == (0, 0, 0):
        value = value.replace(hour=23, minute=59, second=59)
    if value > datetime.now(UTC):
        raise typer.BadParameter(
            f"{value:%Y-%m-%dT%H:%M:%S} is in the future", param_hint="--as-of"
        )
    return value


@app.command()
def run(
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="Spec to train and score; repeatable (default: featurestack.yml's run.models, "
            "else every spec of the project).",
            show_default=False,
        ),
    ] = None,
    entity: Annotated[
        list[str] | None,
        typer.Option(
            "--entity",
            help="An entity to score online, as KEY=VALUE (KEY=VALUE,KEY=VALUE for a composite "
            "key); repeatable (default: the first three entities scored in batch).",
            show_default=False,
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Gate expectations of severity warning block too (by default they warn, as "
            "dbt's severity: warn does).",
        ),
    ] = False,
    warn_only: Annotated[
        bool, typer.Option("--warn-only", hidden=True, help="The default: warnings warn.")
    ] = False,
    as_of: AsOfOption = None,
) -> None:
    """The whole flow: dbt build → gate + publish → feast apply → materialize → train → predict.

    Stops at the first failing stage with a non-zero exit; a failed gate publishes nothing.

    Examples:
      featurestack run
      featurestack run --project-dir my_project --model my_model
      featurestack run --as-of 2025-06-30      (history: as if it were that day)
    """
    from featurestack import pipeline

    quiet_warnings()
    settings = load_settings()
    keys = parse_entities(entity) if entity else None
    result = pipeline.run(
        settings, model, _Progress(len(pipeline.STAGES)), keys, not strict, _instant(as_of)
    )
    s = result.summary
    when = f" as of {s.as_of}" if s.as_of else ""
    typer.secho(f"\nfeaturestack run finished in {s.seconds:.0f} s{when}", bold=True)
    lines = [
        f"  built      {', '.join(result.dbt.tables)} "
        f"(dbt: {sum(result.dbt.counts.values())} nodes OK)",
        f"  published  {len(s.published)} validated table(s) in {settings.published_dir}",
        f"  feast      {len(s.feast['feature_views'])} feature view(s), "
        f"services {', '.join(s.feast['feature_services'])}; online store materialized",
    ]
    lines += [f"  model      {m.name} v{m.version} ({m.alias}): {m.headline}" for m in s.models]
    lines += [f"  predicted  {m.batch_predictions}" for m in s.models]
    lines.append(f"  reports    {s.gate_report} (gate), {result.summary_path}")
    typer.echo("\n".join(lines))
    tools = _tools_dir()
    typer.echo(
        "\nOpen the UIs:\n"
        f"  MLflow: {tools}mlflow ui --port 5000 "
        f"--backend-store-uri {shlex.quote(redact(settings.mlflow_tracking_uri))}\n"
        f"  Feast:  {tools}feast -c {settings.project.feature_repo_dir} -f "
        f"{settings.feast_yaml} ui --port 8888"
    )


def _tools_dir() -> str:
    """Where this environment's `mlflow` and `feast` commands are, as a prefix to show
    (``.venv/bin/`` from a checkout, the environment's bin folder otherwise)."""
    import sys

    folder = Path(sys.executable).parent
    try:
        return f"{folder.relative_to(Path.cwd())}/"
    except ValueError:
        return f"{folder}/"


@app.command()
def backfill(
    start: Annotated[
        datetime,
        typer.Option("--from", formats=["%Y-%m-%d"], help="First UTC day to replay."),
    ],
    end: Annotated[
        datetime,
        typer.Option("--to", formats=["%Y-%m-%d"], help="Last UTC day to replay (included)."),
    ],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Spec to train; repeatable (default: as `run`)."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Gate warnings block too (as `run --strict`).")
    ] = False,
    train_each_day: Annotated[
        bool,
        typer.Option("--train-each-day", help="Train after every day (default: after the last)."),
    ] = False,
) -> None:
    """Replay daily runs over a range of days: each day as of its end, an incremental build,
    the gate, publication and materialization; then training. Exit 1 if any day failed.

    Example: featurestack backfill --from 2025-01-01 --to 2025-03-31
    """
    from featurestack import pipeline

    quiet_warnings()
    first, last = start.date(), end.date()
    if datetime.combine(last, datetime.min.time(), tzinfo=UTC) > datetime.now(UTC):
        raise typer.BadParameter(f"{last} is in the future", param_hint="--to")
    days = (last - first).days + 1
    report, path = pipeline.backfill(
        load_settings(), first, last, _Progress(max(days, 1)), model, not strict, train_each_day
    )
    typer.echo("\n| day | dbt | gate | tables published | rows validated | trained | s |")
    typer.echo("|---|---|---|---|---|---|---|")
    for d in report.days:
        typer.echo(
            f"| {d.day} | {d.dbt} | {d.gate or '-'} | {d.published} | "
            f"{sum(d.changed_rows.values())} | {', '.join(d.trained) or '-'} | {d.seconds} |"
        )
    failed = [d.day for d in report.days if d.problems]
    typer.echo(f"report: {path}")
    if failed:
        typer.secho(f"{len(failed)} day(s) failed: {', '.join(failed)}", fg="red", err=True)
        raise typer.Exit(1)


class _Progress(Stages):
    """The pipeline's progress, printed as each stage goes."""

    def info(self, text: str) -> None:
        typer.echo(text)


# issue 18: every project's leakage and incremental-equivalence checks
from featurestack.leakage_cli import check_leakage as check_leakage_command  # noqa: E402

app.command("check-leakage")(check_leakage_command)

# Issue 20's model commands, registered like the others above.
from models_py.cli import benchmark as benchmark_command  # noqa: E402
from models_py.cli import datasets as datasets_command  # noqa: E402

app.command("benchmark")(benchmark_command)
app.command("datasets")(datasets_command)

# -- day-2 operations (models_py/ops_cli.py): challenger deployments -------------------------
from models_py.ops_cli import deploy as deploy_command  # noqa: E402
from models_py.ops_cli import deployments_app  # noqa: E402
from models_py.ops_cli import learn as learn_command  # noqa: E402
from models_py.ops_cli import retrain as retrain_command  # noqa: E402

app.command("deploy")(deploy_command)
app.add_typer(deployments_app, name="deployments")
app.command("learn")(learn_command)
app.command("retrain")(retrain_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""The model commands (`python -m models_py …`; `featurestack` exposes the same commands):
train, tune-worker, predict, reproduce, serve, shadow-report, monitor and the registry.

Each command parses its options, calls one function of models_py and renders the result;
errors of ours end with their exit code through :class:`~featurestack.core.cli.CommandGroup`.
"""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from featurestack.core.cli import (
    CommandGroup,
    ProjectDirOption,
    parse_entities,
    quiet_warnings,
    use_project_dir,
)
from featurestack.core.errors import FeaturestackError, UsageError
from featurestack.core.settings import load_settings

app = typer.Typer(
    cls=CommandGroup,
    add_completion=False,
    no_args_is_help=True,
    help="Model training and scoring.",
)


@app.callback()
def _main(project_dir: ProjectDirOption = None) -> None:
    """Model plugins trained on Feast features, tracked and registered in MLflow."""
    use_project_dir(project_dir)


ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Registered model name (default: the project's model, when it has one; "
        "`featurestack models` lists them).",
        show_default=False,
    ),
]


def default_model(model: str | None) -> str:
    """``--model``, or the project's only model (featurestack.yml ``run.models``, else its
    only spec); a UsageError listing the specs otherwise."""
    if model:
        return model
    from featurestack.core.project import find_project
    from models_py.spec import spec_names

    project = find_project()
    names = project.config.run.models or spec_names(project.specs_dir)
    if len(names) == 1:
        return names[0]
    raise UsageError(
        f"give --model NAME: project {project.name} has {len(names)} models "
        f"({', '.join(names) or 'none: add a spec to ' + str(project.specs_dir)})"
    )


@app.command()
def train(
    spec: Annotated[
        list[str] | None,
        typer.Option(
            "--spec", help="Spec name (the project's specs/<name>.yaml) or path; repeatable."
        ),
    ] = None,
    all_specs: Annotated[bool, typer.Option("--all", help="Train every spec.")] = False,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "--workers",
            min=1,
            help="Worker processes tuning one study at once (through its Optuna storage: "
            "PostgreSQL in the scale profile); >1 is faster but not reproducible trial for "
            "trial. More machines join with `tune-worker --study NAME`.",
        ),
    ] = 1,
    warm_start: Annotated[
        bool,
        typer.Option(
            "--warm-start",
            help="Continue boosting from the champion's booster (LightGBM init_model, XGBoost "
            "xgb_model) on the current data, with its parameters; records the parent version.",
        ),
    ] = False,
) -> None:
    """Train model specs on a point-in-time training set and register the champion.

    Example: featurestack train --spec my_model
    """
    from models_py.spec import all_specs as every_spec
    from models_py.spec import load_spec
    from models_py.train import train as train_spec

    quiet_warnings()
    specs = every_spec() if all_specs else [load_spec(s) for s in spec or []]
    if not specs:
        typer.echo("nothing to train: give --spec NAME (repeatable) or --all", err=True)
        raise typer.Exit(2)
    settings = load_settings()
    expanded = [one for spec_ in specs for one in spec_.expand()]  # one model per target
    failed: list[tuple[str, int, str]] = []
    for s in expanded:
        typer.echo(f"training {s.name} ({s.plugin}, features {s.feature_service}) …")
        try:
            result = train_spec(settings, s, jobs=jobs, warm_start=warm_start, announce=typer.echo)
            typer.echo(result.summary())
            if result.gate_failures:
                failed.append((s.name, 1, f"v{result.version} held back by its quality gates"))
        except FeaturestackError as exc:
            typer.echo(f"{s.name}: {exc}", err=True)
            failed.append((s.name, exc.exit_code, str(exc).splitlines()[0]))
        except (LookupError, ValueError) as exc:  # a library refusing this data
            typer.echo(f"{s.name}: {exc}", err=True)
            failed.append((s.name, 1, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    if failed:
        # Every spec is attempted (one failing does not hold the others back); say which.
        done = [s.name for s in expanded if s.name not in {f[0] for f in failed}]
        typer.echo(
            f"{len(failed)} of {len(expanded)} spec(s) failed or held back: "
            + "; ".join(f"{name} ({why})" for name, _, why in failed)
            + (f"; trained: {', '.join(done)}" if done else "; nothing trained"),
            err=True,
        )
        raise typer.Exit(failed[0][1])


@app.command("tune-worker")
def tune_worker(
    study: Annotated[
        str,
        typer.Option(
            "--study",
            help="The Optuna study to join, as train printed it "
            "(my_model-PLUGIN-SPECHASH-DATAHASH-seed42).",
        ),
    ],
    seed: Annotated[
        int | None, typer.Option(help="This worker's sampler seed (default: random).")
    ] = None,
) -> None:
    """Add trials to a study another `train --workers N` runs, from this or another machine.

    Needs the same Optuna storage, MLflow store and published features (the scale profile's
    FEATURESTACK_PG_URL, and the same data folder or offline store); stops when the study
    holds the spec's trial budget. The training run picks the best trial of all workers.

    Example: FEATURESTACK_PROFILE=scale featurestack tune-worker --study \
      my_model-lightgbm-1a2b3c4d-5e6f7a8b-seed42
    """
    from models_py.train import tune_worker as join_study

    quiet_warnings()
    spec, ran = join_study(load_settings(), study, seed)
    typer.echo(f"{study}: this worker ran {ran} trial(s) of {spec}")


@app.command()
def predict(
    model: ModelOption = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%d"],
            help="Batch: features known at the end of this UTC day.",
        ),
    ] = None,
    online: Annotated[bool, typer.Option("--online", help="Score from the online store.")] = False,
    entity: Annotated[
        list[str] | None,
        typer.Option(
            "--entity",
            help="Online: an entity's join keys as KEY=VALUE (KEY=VALUE,KEY=VALUE for a "
            "composite key); repeatable.",
        ),
    ] = None,
    entities: Annotated[
        Path | None,
        typer.Option(
            "--entities",
            help="Batch: a Parquet or CSV file of join keys and event_timestamp (Feast's "
            "entity_df), each row scored with the features known at its own instant.",
        ),
    ] = None,
) -> None:
    """Score with the champion: batch as of a date or for a list of (keys, instant) rows, or
    online for given entities.

    Examples:
      featurestack predict --model my_model --as-of 2026-06-30
      featurestack predict --model my_model --entities runners.csv
      featurestack predict --model my_model --online --entity customer_id=C042
      featurestack predict --online --entity store_id=3,product_id=A12
    """
    quiet_warnings()
    settings = load_settings()
    if sum([online, as_of is not None, entities is not None]) != 1:
        typer.echo(
            "give exactly one of --as-of DATE (batch), --entities FILE (batch) or --online",
            err=True,
        )
        raise typer.Exit(2)
    from models_py.scoring import flag_summary

    name = default_model(model)
    try:
        if entities is not None:
            frame = _predict_entities(settings, name, entities)
        else:
            frame = _predict(settings, name, online, as_of, entity or [])
    except FeaturestackError as exc:
        typer.echo(f"{name}: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from exc
    typer.echo(flag_summary(frame))


def _predict(
    settings: Any,
    model: str,
    online: bool,
    as_of: datetime | None,
    entity: list[str],
) -> Any:
    import pandas as pd

    from models_py.predict import predict_batch, predict_online

    with pd.option_context("display.width", 160, "display.max_columns", 20):
        if online:
            rows = parse_entities(entity)
            if not rows:
                typer.echo("--online needs at least one --entity KEY=VALUE", err=True)
                raise typer.Exit(2)
            frame = predict_online(settings, model, rows)
            typer.echo(frame.to_string(index=False))
        else:
            assert as_of is not None
            path, frame = predict_batch(settings, model, date(as_of.year, as_of.month, as_of.day))
            scored = int(frame["score"].notna().sum())
            typer.echo(f"{scored}/{len(frame)} entities scored as of {as_of:%Y-%m-%d} → {path}")
    return frame


def _predict_entities(settings: Any, model: str, entities: Path) -> Any:
    from models_py.predict import predict_entities

    path, frame = predict_entities(settings, model, entities)
    scored = int(frame["score"].notna().sum())
    typer.echo(f"{scored}/{len(frame)} rows of {entities} scored point-in-time → {path}")
    return frame


@app.command()
def reproduce(
    run_id: Annotated[str, typer.Argument(help="MLflow run id of a training run.")],
) -> None:
    """Rebuild a run's training set from Feast, refit its spec and compare the metrics.

    Exit 1 when the metrics differ (the message says if the published data changed since).

    Example: python -m models_py reproduce 6caff4f4e2824f5c9c9bc487d8e61eb3
    """
    from models_py.reproduce import reproduce as reproduce_run

    quiet_warnings()
    result = reproduce_run(load_settings(), run_id)
    typer.echo(result.summary())
    raise typer.Exit(0 if result.matches else 1)


@app.command()
def serve(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Model to serve; repeatable (default: all with a champion)."),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default 127.0.0.1: this machine only).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    challenger: Annotated[
        str | None,
        typer.Option(
            help="off | shadow (scored on every request, never returned) | split (answers "
            "--share of the entities, by a stable hash of the entity key)."
        ),
    ] = None,
    share: Annotated[
        float | None, typer.Option(min=0, max=1, help="--challenger split: its share.")
    ] = None,
    max_entities: Annotated[
        int | None, typer.Option(min=1, help="Entities per request at most (default 100).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Serve config YAML (docs/serving.md); options override.")
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Serve on an address beyond this machine without an API key (refused otherwise).",
        ),
    ] = False,
) -> None:
    """Serve champion predictions over HTTP (FastAPI + uvicorn); see /docs once started.

    Set FEATURESTACK_API_KEY to require it in the X-API-Key header: a --host beyond loopback
    is refused without it, unless --insecure. Predictions are logged under data/prediction_log/.

    Examples:
      featurestack serve
      featurestack serve --challenger shadow
      curl -s localhost:8000/models   (each model's keys, then:)
      curl -s localhost:8000/predict/my_model -d '{"entities": [{"customer_id": "C042"}]}'
    """
    import uvicorn
    import yaml
    from pydantic import ValidationError

    from models_py.server import create_app
    from models_py.serving import ModelServing, ServeConfig

    quiet_warnings()
    try:
        raw = yaml.safe_load(config.read_text()) if config else {}
        settings_ = ServeConfig(**(raw or {}))
        overrides: dict[str, Any] = {
            k: v
            for k, v in {"host": host, "port": port, "max_entities": max_entities}.items()
            if v is not None
        }
        if challenger is not None or share is not None:
            mode = ModelServing(
                challenger=challenger or settings_.default.challenger,
                challenger_share=share if share is not None else settings_.default.challenger_share,
            )
            overrides["default"] = mode
            overrides["models"] = {name: mode for name in settings_.models}
        settings_ = settings_.model_copy(update=overrides)
    except (OSError, ValidationError, yaml.YAMLError) as exc:
        typer.echo(f"serve config refused: {exc}", err=True)
        raise typer.Exit(2) from exc
    _refuse_open_without_key(settings_, insecure)
    app_ = create_app(load_settings(), settings_, model)
    _refuse_missing_challenger(app_.state.served.values())
    for m in app_.state.served.values():
        challenger_text = (
            f", challenger v{m.challenger.version} ({m.mode})" if m.challenger is not None else ""
        )
        typer.echo(f"serving {m.name} v{m.champion.version}{challenger_text}")
    # The prediction log's flush and the hand-over to the shadow process run in background
    # threads; a short GIL switch interval (default 5 ms) keeps them from holding a request up
    # for a whole interval.
    sys.setswitchinterval(0.0005)
    uvicorn.run(app_, host=settings_.host, port=settings_.port, log_level="warning")


def _refuse_missing_challenger(served: Any) -> None:
    """A challenger mode (shadow, split) for a model without a ``challenger`` version is a
    UsageError: serving the champion alone would silently skip the comparison asked for."""
    missing = [m for m in served if m.serving.challenger != "off" and m.challenger is None]
    if missing:
        raise UsageError(
            "; ".join(
                f"{m.name}: --challenger {m.serving.challenger} needs a 'challenger' version, "
                "and it has none"
                for m in missing
            )
            + ". Set one with `featurestack models challenger MODEL VERSION` (a training run "
            "that does not beat the champion sets it too), or serve with --challenger off"
        )


def _refuse_open_without_key(config: Any, insecure: bool) -> None:
    """A server reachable from other machines needs the API key (UsageError, exit 2), unless
    the user says ``--insecure``."""
    import ipaddress
    import os

    from featurestack.core.errors import UsageError

    host = config.host.strip("[]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback or insecure or os.environ.get(config.api_key_env):
        return
    raise UsageError(
        f"--host {config.host} serves beyond this machine, and {config.api_key_env} is not "
        f"set: anyone who reaches the port could score. Set {config.api_key_env} (clients send "
        f"it in the {config.api_key_header} header), bind 127.0.0.1, or pass --insecure"
    )


@app.command("shadow-report")
def shadow_report(
    model: ModelOption = None,
    days: Annotated[float, typer.Option(help="Logged traffic of the last N days.")] = 7,
) -> None:
    """Compare champion and challenger on logged traffic: agreement, score distributions and,
    once labels are published, metrics per arm. Writes data/reports/shadow/<model>/<t>.json.

    Example: featurestack shadow-report --model my_model --days 1
    """
    from models_py.shadow import shadow_report as build_report
    from models_py.shadow import summary, write_report

    quiet_warnings()
    settings = load_settings()
    report = build_report(settings, default_model(model), days)
    typer.echo(summary(report))
    typer.echo(f"report: {write_report(settings, report)}")


@app.command()
def monitor(
    model: ModelOption = None,
    days: Annotated[float, typer.Option(help="Recent window, days.")] = 7,
    source: Annotated[
        str,
        typer.Option(
            help="requests (the prediction log), features (recent published features, scored), "
            "or auto (requests when enough are logged)."
        ),
    ] = "auto",
    psi_max: Annotated[float, typer.Option(help="Feature drift: PSI limit.")] = 0.25,
    ks_max: Annotated[float, typer.Option(help="Feature drift: KS limit.")] = 0.2,
    degradation: Annotated[
        float, typer.Option(help="Alert on this relative drop of the primary metric.")
    ] = 0.05,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Feature not compared; repeatable.")
    ] = None,
) -> None:
    """Drift (PSI, KS per feature; scores) against the version's training reference,
    performance once labels exist, a health score. Exit 1 when an alert threshold is crossed.

    Writes data/reports/monitor/<model>/<t>.json and .html (plots).

    Example: featurestack monitor --model my_model --days 30 --source features
    """
    from pydantic import ValidationError

    from models_py.monitor import MonitorConfig, write_report
    from models_py.monitor import monitor as run_monitor

    quiet_warnings()
    settings = load_settings()
    try:
        config = MonitorConfig(
            days=days,
            source=source,
            psi_max=psi_max,
            ks_max=ks_max,
            degradation_max=degradation,
            exclude=exclude or [],
        )
    except ValidationError as exc:
        typer.echo(f"monitor options refused: {exc}", err=True)
        raise typer.Exit(2) from exc
    model = default_model(model)
    report = run_monitor(settings, model, config)
    json_path, html_path = write_report(settings, report)
    verdict, perf = report.health, report.performance
    drifted = [d["feature"] for d in report.feature_drift if d["drifted"]]
    typer.echo(
        f"{model} v{report.version}: health {verdict['score']} ({verdict['status']}); "
        f"{report.recent_rows} recent rows from {report.source}\n"
        f"  feature drift: {len(drifted)} drifted {drifted}\n"
        f"  prediction drift: PSI {report.prediction_drift.get('psi')}\n"
        f"  performance: {perf['metric']} {perf['value']} vs holdout {perf['holdout']} "
        f"({perf['labelled_rows']} labelled rows)"
    )
    for line in verdict["recommendations"]:
        typer.echo(f"  → {line}")
    typer.echo(f"report: {json_path}\n        {html_path}")
    if report.alerts:
        typer.echo(
            f"{len(report.alerts)} alert(s): "
            + ", ".join(f"{a['kind']}:{a['subject']}" for a in report.alerts),
            err=True,
        )
        raise typer.Exit(1)


models_app = typer.Typer(
    add_completion=False,
    help="The model registry: versions, aliases (champion, challenger), promotion, rollback.",
)
app.add_typer(models_app, name="models")


def _client() -> Any:
    import mlflow

    from models_py import tracking

    tracking.configure(load_settings())
    return mlflow.MlflowClient()


@models_app.callback(invoke_without_command=True)
def models_list(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option("--name", help="Only this model.")] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Each version's status as JSON: primary metric, plugin, trained at, rows, "
            "class balance, calibration, threshold, tuning, gates, description.",
        ),
    ] = False,
    plugin: Annotated[str | None, typer.Option("--plugin", help="Only this plugin.")] = None,
    minimum: Annotated[
        list[str] | None,
        typer.Option("--min", help="Only versions with holdout METRIC ≥ VALUE, e.g. f1=0.7."),
    ] = None,
) -> None:
    """List every registered version with its aliases and holdout metrics.

    Examples:
      featurestack models --name my_model
      featurestack models --json --plugin lightgbm --min roc_auc=0.6
    """
    if ctx.invoked_subcommand is not None:
        return
    import json

    from models_py.registry import status, versions

    floors = _parse_floors(minimum or [])
    if as_json or plugin or floors:
        found = [
            r
            for r in status(_client(), name)
            if (plugin is None or r["plugin"] == plugin)
            and all(r["metrics"].get(k, float("nan")) >= v for k, v in floors.items())
        ]
        if as_json:
            typer.echo(json.dumps(found, indent=2, default=str))
            return
        keep = {(r["model"], r["version"]) for r in found}
        rows = [r for r in versions(_client(), name) if (r["model"], r["version"]) in keep]
    else:
        rows = versions(_client(), name)
    if not rows:
        typer.echo("no registered models yet: run `featurestack train --spec NAME`")
        return
    for r in rows:
        m = r["metrics"]
        shown = ", ".join(
            f"{k} {m[k]:.4f}" for k in ("roc_auc", "pr_auc", "log_loss", "rmse") if k in m
        )
        aliases = ",".join(r["aliases"]) or "-"
        typer.echo(
            f"{r['model']:<16} v{r['version']:<4} {aliases:<20} {r['created']:%Y-%m-%d %H:%M}  "
            f"{shown}"
        )
        if r["decision"]:
            typer.echo(f"{'':<22}{r['decision']}")


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version to make champion.")],
) -> None:
    """Make a version the champion (the replaced one is recorded for rollback).

    Example: featurestack models promote my_model 3
    """
    import mlflow

    from models_py.registry import promote

    try:
        previous = promote(_client(), name, version)
    except mlflow.exceptions.MlflowException as exc:
        typer.echo(f"cannot promote {name} v{version}: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{name} v{version} is champion (was v{previous})")


@models_app.command("rollback")
def models_rollback(name: Annotated[str, typer.Argument(help="Registered model name.")]) -> None:
    """Give the champion alias back to the version the current champion replaced.

    Example: featurestack models rollback my_model
    """
    from models_py.registry import rollback

    version = rollback(_client(), name)
    typer.echo(f"{name} v{version} is champion again")


def _parse_floors(items: list[str]) -> dict[str, float]:
    """``--min f1=0.7`` options as {metric: floor}; a malformed one is a UsageError."""
    floors = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            floors[key.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--min {item!r}: give METRIC=VALUE, e.g. --min f1=0.7") from None
    return floors


@models_app.command("challenger")
def models_challenger(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version to serve as challenger.")],
) -> None:
    """Give the challenger alias to a version (served by `serve --challenger shadow|split`).

    Example: featurestack models challenger my_model 4
    """
    import mlflow

    from models_py.registry import set_challenger

    try:
        set_challenger(_client(), name, version)
    except mlflow.exceptions.MlflowException as exc:
        typer.echo(f"cannot make {name} v{version} challenger: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{name} v{version} is challenger")


@models_app.command("retire")
def models_retire(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version to retire.")],
) -> None:
    """Retire (archive) a version: never served, promoted or challenger again.

    Example: featurestack models retire my_model 2
    """
    import mlflow

    from models_py.registry import retire

    try:
        retire(_client(), name, version)
    except mlflow.exceptions.MlflowException as exc:
        typer.echo(f"cannot retire {name} v{version}: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{name} v{version} is retired")


@app.command()
def benchmark(
    model: ModelOption = None,
    version: Annotated[
        list[str] | None,
        typer.Option(
            "--version", help="Version to compare; repeatable (default: all not retired)."
        ),
    ] = None,
    history: Annotated[
        Path | None, typer.Option(help="An earlier benchmark's JSON: flag regressions against it.")
    ] = None,
    tolerance: Annotated[
        float, typer.Option(min=0, help="Relative drop of the primary metric that is a regression.")
    ] = 0.05,
    target: Annotated[
        list[str] | None, typer.Option("--target", help="METRIC=VALUE a version must reach.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the JSON and HTML.")] = None,
) -> None:
    """Compare registered versions on one holdout: metrics, calibration, latency per row;
    JSON and a self-contained HTML report. Exit 1 on a regression against --history.

    Example: featurestack benchmark --model my_model --history last.json --target f1=0.7
    """
    from models_py.benchmark import benchmark as run_benchmark
    from models_py.benchmark import write

    quiet_warnings()
    settings = load_settings()
    result = run_benchmark(
        settings,
        default_model(model),
        version or None,
        history,
        tolerance,
        _parse_floors(target or []),
    )
    typer.echo(result.summary())
    json_path, html_path = write(settings, result, out)
    typer.echo(f"report: {json_path}\n        {html_path}")
    if result.regressions:
        raise typer.Exit(1)


@app.command()
def datasets() -> None:
    """List the published snapshots still kept and the training runs that read each.

    Example: featurestack datasets
    """
    from models_py.train import datasets as list_datasets

    rows = list_datasets(load_settings())
    if not rows:
        typer.echo("no published snapshot yet: run `featurestack build` and `validate`")
    for r in rows:
        state = "current" if r["current"] else ("kept" if r["kept"] else "GONE")
        champ = f", champion run(s) {', '.join(r['champion_runs'])}" if r["champion_runs"] else ""
        typer.echo(f"{r['snapshot']:<28} {state:<8} {len(r['runs'])} training run(s){champ}")


# -- day-2 operations (models_py/ops_cli.py) ------------------------------------------------
from models_py.ops_cli import deploy as deploy_command  # noqa: E402
from models_py.ops_cli import deployments_app  # noqa: E402
from models_py.ops_cli import learn as learn_command  # noqa: E402
from models_py.ops_cli import retrain as retrain_command  # noqa: E402

app.command("deploy")(deploy_command)
app.add_typer(deployments_app, name="deployments")
app.command("learn")(learn_command)
app.command("retrain")(retrain_command)

"""The `featurestack` command: sequences the stages, each of which lives with its own tool.

dbt_project/ (dbt), validation/ (the gate), feature_repo/ (Feast) and models_py/ (training and
scoring) can each be driven by their own tool; this module only runs them in order, stops at
the first failure with a non-zero exit, and summarises what happened.
"""

from __future__ import annotations

import atexit
import json
import shlex
import time
from datetime import UTC, date, datetime
from typing import Annotated, Any

import typer

from featurestack.errors import EXIT_UNAVAILABLE, redact
from featurestack.settings import PROFILES, Settings, load_settings
from models_py.__main__ import ServiceGroup, flag_summary, models_app, quiet_warnings
from models_py.__main__ import monitor as monitor_command
from models_py.__main__ import predict as predict_command
from models_py.__main__ import reproduce as reproduce_command
from models_py.__main__ import serve as serve_command
from models_py.__main__ import shadow_report as shadow_report_command
from models_py.__main__ import train as train_command
from models_py.__main__ import tune_worker as tune_worker_command
from validation.__main__ import gate as gate_command

app = typer.Typer(
    cls=ServiceGroup,
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


def _stage(n: int, total: int, title: str) -> float:
    typer.secho(f"[{n}/{total}] {title} …", bold=True)
    return time.perf_counter()


def _done(start: float) -> float:
    elapsed = time.perf_counter() - start
    typer.echo(f"      done in {elapsed:.1f} s")
    return elapsed


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
    from featurestack import services

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
    from featurestack import services

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
    from featurestack.dbt_ops import run_dbt

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
    from featurestack import feast_codegen
    from featurestack.dbt_ops import run_dbt

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

    quiet_warnings()
    objects = _apply_or_exit(load_settings())
    typer.echo(json.dumps(objects))


def _apply_or_exit(settings: Settings) -> dict[str, list[str]]:
    """`feast apply`, or a readable refusal when the Feast repo and the dbt contracts disagree."""
    from featurestack import feast_ops
    from featurestack.feast_codegen import ContractMismatch

    try:
        return feast_ops.apply(settings)
    except ContractMismatch as err:
        typer.echo(f"feast apply refused: {err}", err=True)
        raise typer.Exit(1) from None


@app.command()
def materialize(
    end: Annotated[
        datetime | None, typer.Option(help="Materialize up to this UTC time (default: now).")
    ] = None,
) -> None:
    """Load the newest features into the online store (`feast materialize-incremental`).

    Example: featurestack materialize
    """
    from featurestack import feast_ops

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
    from featurestack import feast_ops

    quiet_warnings()
    settings = load_settings()
    _, text, ok = _consistency(feast_ops.load_store(settings), settings, sample, seed)
    typer.echo(text)
    raise typer.Exit(0 if ok else 1)


def _consistency(store: Any, settings: Settings, sample: int, seed: int) -> tuple[Any, str, bool]:
    """Run the check, write its JSON report, and return (results, summary, ok)."""
    from featurestack.consistency import check_consistency, summary

    now = datetime.now(UTC)
    results = check_consistency(store, sample=sample, seed=seed, now=now)
    folder = settings.reports_dir / "consistency"
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / f"{now:%Y%m%dT%H%M%S}.json"
    report.write_text(
        json.dumps(
            {"at": now.isoformat(), "views": [r.as_dict() for r in results]},
            indent=2,
            default=str,
        )
    )
    ok = all(r.mismatch_count == 0 for r in results)
    return results, summary(results, now) + f"\nreport: {report}", ok


def _latest_feature_day(path: str) -> date:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ts = pq.read_table(path, columns=["event_timestamp"]).column(0)
    return pc.max(ts).as_py().date()


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
    from featurestack import feast_ops
    from featurestack.dbt_ops import run_dbt
    from featurestack.demo_data import existing_raw_files
    from models_py.predict import predict_batch, predict_online
    from models_py.spec import load_spec
    from models_py.train import train as train_spec
    from validation.gate import GateWorker

    quiet_warnings()
    t0 = time.perf_counter()
    settings = load_settings()
    settings.export()
    if not existing_raw_files(settings.raw_dir):
        typer.secho(
            f"no raw data in {settings.raw_dir}: run `featurestack demo-data` or copy your files "
            "there (see the raw data contract in README.md)",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    spec = load_spec(model)
    if spec.label.targets:
        typer.secho(
            f"featurestack run trains one model; {spec.name} has {len(spec.label.targets)} "
            f"targets: train it with `featurestack train --spec {spec.name}`",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    total, times, summary = 6, {}, {}

    start = _stage(1, total, "dbt build (models + tests) into the warehouse")
    # The gate's process imports Great Expectations (≈ 4 s) on the other core meanwhile, and
    # renders the gate's Data Docs after answering, while the next stages run; closed at exit.
    worker = GateWorker()
    atexit.register(worker.close)
    outcome = run_dbt(settings)
    typer.echo(outcome.summary())
    times["dbt"] = _done(start)
    if not outcome.success:
        raise typer.Exit(1)
    summary["dbt"] = outcome.counts

    start = _stage(2, total, "gate: Great Expectations on the built tables, then publish")
    gate = worker.run(settings, warn_only=warn_only)
    typer.echo(gate.summary())
    times["gate"] = _done(start)
    if not gate.success:
        worker.close()  # its Data Docs are complete before we exit
        raise typer.Exit(1)

    start = _stage(3, total, "feast apply + materialize into the online store")
    objects = _apply_or_exit(settings)
    end = datetime.now(UTC)
    materialized = feast_ops.materialize(settings, end)
    typer.echo(f"      registered {objects}; materialized {materialized}")
    _, consistency_text, consistent = _consistency(feast_ops.load_store(settings), settings, 20, 0)
    typer.echo("      online vs offline at now:\n" + consistency_text)
    if not consistent:
        raise typer.Exit(1)
    times["feast"] = _done(start)

    start = _stage(4, total, f"train {spec.name} on a point-in-time training set")
    result = train_spec(settings, spec)
    typer.echo(result.summary())
    times["train"] = _done(start)

    start = _stage(5, total, "batch predictions with the champion")
    store = feast_ops.load_store(settings)
    source = feast_ops.batch_source_path(
        store.get_feature_view(
            store.get_feature_service(spec.feature_service).feature_view_projections[0].name
        )
    )
    as_of = _latest_feature_day(source)
    pred_path, preds = predict_batch(settings, spec.name, as_of)
    typer.echo(
        f"      {int(preds['score'].notna().sum())} entities scored as of {as_of} → {pred_path}"
    )
    typer.echo(f"      {flag_summary(preds)}")
    times["predict_batch"] = _done(start)

    start = _stage(6, total, "online predictions from the online store")
    symbols = online_symbol or list(preds["symbol"].head(3))
    online = predict_online(settings, spec.name, [{"symbol": s} for s in symbols])
    typer.echo(online[["symbol", "score", "model_version"]].to_string(index=False))
    times["predict_online"] = _done(start)

    total_s = time.perf_counter() - t0
    report: dict[str, Any] = {
        "finished_at": datetime.now(UTC).isoformat(),
        "seconds": round(total_s, 1),
        "stage_seconds": {k: round(v, 1) for k, v in times.items()},
        "dbt": summary["dbt"],
        "gate_report": str(gate.report_path),
        "published": [str(p) for p in gate.published],
        "feast": objects,
        "model": {
            "name": result.model_name,
            "version": result.version,
            "run_id": result.run_id,
            "holdout": {k[8:]: v for k, v in result.metrics.items() if k.startswith("holdout_")},
        },
        "batch_predictions": str(pred_path),
    }
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    (settings.reports_dir / "run_summary.json").write_text(json.dumps(report, indent=2))
    m = result.metrics
    feast_yaml = settings.feast_yaml
    worker.close()  # long done rendering the gate's Data Docs by now
    typer.secho(f"\nfeaturestack run finished in {total_s:.0f} s", bold=True)
    typer.echo(
        f"  built      {', '.join(outcome.tables)} (dbt: {sum(outcome.counts.values())} nodes OK)\n"
        f"  published  {len(gate.published)} validated table(s) in {settings.published_dir}\n"
        f"  feast      {len(objects['feature_views'])} feature view(s), "
        f"services {', '.join(objects['feature_services'])}; online store materialized\n"
        f"  model      {result.model_name} v{result.version} (champion): holdout ROC-AUC "
        f"{m['holdout_roc_auc']:.3f}, log-loss {m['holdout_log_loss']:.4f} "
        f"(constant {m['holdout_log_loss_constant']:.4f}), F1 {m['holdout_f1']:.3f}\n"
        f"  predicted  {pred_path}\n"
        f"  reports    {gate.report_path} (gate), {settings.reports_dir / 'run_summary.json'}\n"
        "\nOpen the UIs:\n"
        f"  MLflow: .venv/bin/mlflow ui --port 5000 "
        f"--backend-store-uri {shlex.quote(settings.mlflow_tracking_uri)}\n"
        f"  Feast:  .venv/bin/feast -c feature_repo -f {feast_yaml} ui --port 8888"
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()

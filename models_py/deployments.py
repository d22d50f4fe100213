"""The challenger lifecycle: deploy a named version in shadow or on a share of traffic for a
while, then decide from labelled traffic whether it replaces the champion, and keep why.

``featurestack deploy M V --shadow --days 7`` (or ``--split 0.2``) gives version V the
``challenger`` alias and records a deployment in ``data/deployments/deployments.json`` (the
history, written whole by rename). A running server follows both within its hot-reload
interval (models_py/watcher.py): the alias brings the version in, the record sets the mode
and share, whatever its serve config said for that model.

``featurestack deployments evaluate`` (what a scheduler calls, daily say) reads the prediction
log of the deployment's period, keeps the champion's rows of the version that was champion
when it started and the challenger's rows of V, joins the published labels (point in time:
a prediction counts once its label exists) and compares the spec's primary metric by the same
rule as training's promotion (:func:`models_py.registry.decide`, the spec's margin). With
enough labels on both arms the deployment ends ``promoted`` or ``rejected``; before its end
without enough labels it keeps running; at its end without enough labels it ends
``inconclusive`` (the champion stays). Every verdict, with both scores and the row counts, is
stored on the record and as tags on the version.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from featurestack.core.errors import NotFound, UsageError
from featurestack.core.reports import write_atomic
from featurestack.core.settings import Settings
from models_py.contract import CHALLENGER, CHAMPION, THRESHOLD, spec_from_run, tag

RUNNING = "running"
ENDED = ("promoted", "rejected", "inconclusive", "replaced", "stopped")


class Deployment(BaseModel):
    """One challenger deployment: what runs where since when, and how it ended."""

    model_config = ConfigDict(extra="forbid")

    id: str
    model: str
    version: str
    #: the champion when it started: the arm it is compared with
    champion_version: str
    mode: Literal["shadow", "split"]
    share: float | None = Field(None, ge=0, le=1)
    started: str
    ends: str
    status: str = RUNNING
    evaluated: str | None = None
    #: the verdict, in words, with both scores (or why there is none yet)
    reason: str | None = None
    metric: str | None = None
    scores: dict[str, float | None] = {}
    labelled_rows: dict[str, int] = {}

    @property
    def running(self) -> bool:
        return self.status == RUNNING


def _path(settings: Settings) -> Any:
    return settings.data_dir / "deployments" / "deployments.json"


def load(settings: Settings) -> list[Deployment]:
    """Every recorded deployment, oldest first."""
    path = _path(settings)
    if not path.exists():
        return []
    try:
        return [Deployment.model_validate(d) for d in json.loads(path.read_text())]
    except ValueError as exc:
        raise UsageError(
            f"{path} is not a deployments file ({exc}); restore it from a backup or delete it "
            "(the registry's aliases still say what is served)"
        ) from exc


def save(settings: Settings, deployments: list[Deployment]) -> None:
    write_atomic(
        _path(settings),
        json.dumps([d.model_dump() for d in deployments], indent=2, sort_keys=True),
    )


def active(settings: Settings, model: str) -> Deployment | None:
    """The running deployment of ``model`` (the server reads it to set the challenger mode)."""
    running = [d for d in load(settings) if d.model == model and d.running]
    return running[-1] if running else None


def _client(settings: Settings) -> Any:
    import mlflow

    from models_py import tracking

    tracking.configure(settings)
    return mlflow.MlflowClient()


def deploy(
    settings: Settings,
    model: str,
    version: str,
    mode: Literal["shadow", "split"],
    days: float,
    share: float | None = None,
    now: datetime | None = None,
) -> Deployment:
    """Give ``version`` the challenger alias and record its deployment (a running deployment
    of the same model is ended as ``replaced``)."""
    import mlflow

    from models_py.registry import champion_version

    if days <= 0:
        raise UsageError(f"--days must be positive, got {days:g}: how long the challenger runs")
    if mode == "split" and (share is None or not 0 < share < 1):
        raise UsageError(
            f"--split takes the challenger's share of traffic, strictly between 0 and 1; got "
            f"{share}: e.g. --split 0.2"
        )
    client = _client(settings)
    try:
        client.get_model_version(model, str(version))
    except mlflow.exceptions.MlflowException as exc:
        raise NotFound(
            f"{model} has no version {version}; `featurestack models {model}` lists them"
        ) from exc
    current = champion_version(client, model)
    if current is None:
        raise NotFound(f"{model} has no champion to compare v{version} with; promote one first")
    if str(current.version) == str(version):
        raise UsageError(
            f"{model} v{version} is already the champion: deploy another version as challenger"
        )
    now = now or datetime.now(UTC)
    history = load(settings)
    for old in history:
        if old.model == model and old.running:
            old.status, old.evaluated = "replaced", now.isoformat(timespec="seconds")
            old.reason = f"replaced by the deployment of v{version}"
    record = Deployment(
        id=uuid.uuid4().hex[:12],
        model=model,
        version=str(version),
        champion_version=str(current.version),
        mode=mode,
        share=share if mode == "split" else None,
        # to the microsecond: the period's log rows are those logged after it
        started=now.isoformat(),
        ends=(now + timedelta(days=days)).isoformat(timespec="seconds"),
    )
    client.set_registered_model_alias(model, CHALLENGER, str(version))
    client.set_model_version_tag(model, str(version), tag("deployment_id"), record.id)
    client.set_model_version_tag(
        model, str(version), tag("deployment"), f"{mode} from {record.started} to {record.ends}"
    )
    save(settings, [*history, record])
    return record


def _arms(
    settings: Settings, record: Deployment, until: datetime
) -> tuple[pd.DataFrame, Any, dict[str, float]]:
    """The labelled log rows of the two arms in the deployment's period, the spec, and each
    arm's decision threshold."""
    from models_py.labels import log_with_labels
    from models_py.prediction_log import read_log

    started = datetime.fromisoformat(record.started)
    log = read_log(settings.prediction_log_dir, record.model, since=started, until=until)
    champion = (log["role"] == CHAMPION) & (log["version"] == record.champion_version)
    challenger = log["role"].isin(["shadow", CHALLENGER]) & (log["version"] == record.version)
    log = log[champion | challenger].copy()
    log["arm"] = champion[champion | challenger].map({True: CHAMPION, False: CHALLENGER})
    client = _client(settings)
    mv = client.get_model_version(record.model, record.version)
    spec = spec_from_run(client.get_run(str(mv.run_id)), default_name=record.model)
    thresholds = {}
    for arm, version in ((CHAMPION, record.champion_version), (CHALLENGER, record.version)):
        tags = client.get_model_version(record.model, version).tags
        thresholds[arm] = float(tags.get(tag(THRESHOLD), 0.5))
    labelled = log_with_labels(settings, log, spec.label)
    return labelled, spec, thresholds


def evaluate(
    settings: Settings,
    model: str | None = None,
    min_labels: int = 50,
    now: datetime | None = None,
) -> list[Deployment]:
    """Judge every running deployment (of ``model``, or all): promote, reject, keep running,
    or end inconclusive; returns the deployments judged, as recorded."""
    from models_py.registry import decide, promote
    from models_py.shadow import arm_metrics
    from models_py.tuning import direction

    now = now or datetime.now(UTC)
    history = load(settings)
    judged = []
    for record in history:
        if not record.running or (model is not None and record.model != model):
            continue
        labelled, spec, thresholds = _arms(settings, record, now)
        metric = spec.primary_metric
        frame = labelled.drop(columns=["role"]).rename(columns={"arm": "role"})
        scores = arm_metrics(frame, spec.task, thresholds)
        counts = {
            arm: int(frame.loc[frame["role"] == arm, "label"].notna().sum())
            for arm in (CHAMPION, CHALLENGER)
        }
        record.metric, record.labelled_rows = metric, counts
        record.scores = {
            arm: (float(scores[arm][metric]) if arm in scores else None)
            for arm in (CHAMPION, CHALLENGER)
        }
        record.evaluated = now.isoformat(timespec="seconds")
        over = now >= datetime.fromisoformat(record.ends)
        client = _client(settings)
        if min(counts.values()) < min_labels:
            record.reason = (
                f"{counts[CHALLENGER]} challenger and {counts[CHAMPION]} champion predictions "
                f"have a published label ({spec.label.model}), fewer than {min_labels} on an "
                "arm"
            )
            if over:
                record.status = "inconclusive"
                record.reason += f"; the deployment ended: v{record.champion_version} stays"
                _withdraw(client, record)
            else:
                record.reason += f"; it keeps running until {record.ends}"
        else:
            decision = decide(
                metric,
                float(record.scores[CHALLENGER] or float("nan")),
                record.champion_version,
                record.scores[CHAMPION],
                spec.promotion_margin,
                maximize=direction(metric) == "maximize",
            )
            where = f"on labelled {record.mode} traffic since {record.started}"
            record.reason = f"{decision.reason.replace('on the same holdout', where)}"
            if decision.promoted:
                record.status = "promoted"
                promote(client, record.model, record.version, reason=record.reason)
            else:
                record.status = "rejected"
                _withdraw(client, record)
        if not record.running:
            client.set_model_version_tag(
                record.model, record.version, tag("deployment_decision"), record.status
            )
            client.set_model_version_tag(
                record.model, record.version, tag("deployment_reason"), record.reason
            )
        judged.append(record)
    save(settings, history)
    return judged


def _withdraw(client: Any, record: Deployment) -> None:
    """Take the challenger alias off the version, if it still holds it."""
    try:
        holder = client.get_model_version_by_alias(record.model, CHALLENGER)
    except Exception:  # no challenger alias: nothing to take back
        return
    if str(holder.version) == record.version:
        client.delete_registered_model_alias(record.model, CHALLENGER)


def table(deployments: list[Deployment]) -> str:
    """``deployments list``: what runs where since when, and how each ended."""
    if not deployments:
        return "no deployments yet: featurestack deploy MODEL VERSION --shadow --days 7"
    lines = [
        f"{'model':<24} {'version':>7} {'vs':>4} {'mode':<11} {'since':<25} {'until':<25} status"
    ]
    for d in deployments:
        mode = d.mode if d.mode == "shadow" else f"split {d.share:g}"
        lines.append(
            f"{d.model:<24} {d.version:>7} {d.champion_version:>4} {mode:<11} {d.started:<25} "
            f"{d.ends:<25} {d.status}" + (f": {d.reason}" if d.reason else "")
        )
    return "\n".join(lines)

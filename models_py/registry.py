"""The model registry: versions, the `champion` and `challenger` aliases, promotion, rollback,
and loading a version for scoring.

Every training run registers a new version. It becomes `champion` only if it beats the current
champion on the same holdout (the new run's) by the spec's margin in the primary metric;
otherwise it becomes `challenger`. The decision, with both scores, is recorded as tags on the
new version, and every change of champion records the version it replaced, so `rollback`
always knows where to go back to.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from featurestack.core.errors import NotFound
from featurestack.core.settings import Settings
from featurestack.infra import feast_ops
from models_py import tracking
from models_py.contract import (
    CHALLENGER,
    CHAMPION,
    DECISION_REASON,
    FEAST_SERVICE_TAG,
    FEATURE_SERVICE,
    INPUT_RANGES,
    PREVIOUS_CHAMPION,
    PROMOTED_AT,
    PROMOTION_REASON,
    ROLLED_BACK,
    TAG_PREFIX,
    TASK,
    THRESHOLD,
    TRAIN_END,
    tag,
)
from models_py.fitting import Parent, task_metrics
from models_py.gates import Verdict, failed
from models_py.scoring import LoadedVersion
from models_py.spec import ModelSpec, spec_of_model

if TYPE_CHECKING:
    from feast import FeatureStore

__all__ = ["CHALLENGER", "CHAMPION"]


@dataclass
class Decision:
    promoted: bool
    reason: str
    metric: str
    new_score: float
    champion_version: str | None = None
    champion_score: float | None = None
    margin: float = 0.0
    #: quality gates' verdicts (models_py/gates.py); a failed one keeps the version out of
    #: champion and challenger
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def gated(self) -> bool:
        return bool(failed(self.verdicts))

    def tags(self) -> dict[str, str]:
        out = {
            "decision": "champion" if self.promoted else "challenger",
            "decision_reason": self.reason,
            "decision_metric": self.metric,
            "decision_new_score": f"{self.new_score:.6g}",
            "decision_margin": f"{self.margin:g}",
        }
        if self.champion_version is not None:
            out["decision_champion_version"] = self.champion_version
        if self.champion_score is not None:
            out["decision_champion_score"] = f"{self.champion_score:.6g}"
        if self.verdicts:
            out["gates"] = "failed" if self.gated else "passed"
            for v in self.verdicts:
                out[f"gate.{v.gate.replace(' ', '_')}"] = v.line()
        if self.gated:
            out["decision"] = "held back"
        return {TAG_PREFIX + k: v for k, v in out.items()}


def gate(decision: Decision, verdicts: list[Verdict]) -> Decision:
    """The decision once the quality gates have spoken: a version failing one is neither
    champion nor challenger (it stays registered, tagged with each verdict)."""
    bad = failed(verdicts)
    if not bad:
        return replace(decision, verdicts=verdicts)
    return replace(
        decision,
        promoted=False,
        verdicts=verdicts,
        reason="held back by quality gate(s): "
        + "; ".join(f"{v.gate} ({v.detail})" for v in bad)
        + ". Registered, not champion; improve the model or change the spec's gates",
    )


def decide(
    metric: str,
    new_score: float,
    champion_version: str | None,
    champion_score: float | None,
    margin: float,
    maximize: bool,
) -> Decision:
    """Champion if there is none, or if the new score beats the champion's by ``margin``."""
    if champion_version is None:
        return Decision(True, "no champion yet", metric, new_score, margin=margin)
    if champion_score is None or champion_score != champion_score:  # missing or NaN
        return Decision(
            False,
            f"champion v{champion_version} could not be scored on this holdout; "
            "promote by hand if intended",
            metric,
            new_score,
            champion_version,
            None,
            margin,
        )
    gain = new_score - champion_score if maximize else champion_score - new_score
    better = gain > margin
    word = "beats" if better else "does not beat"
    reason = (
        f"{metric} {new_score:.4f} {word} champion v{champion_version}'s {champion_score:.4f} "
        f"on the same holdout by more than {margin:g}"
    )
    return Decision(better, reason, metric, new_score, champion_version, champion_score, margin)


def champion_version(client: Any, name: str) -> Any | None:
    import mlflow

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None


def apply_decision(client: Any, name: str, version: str, decision: Decision) -> None:
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, version, key, value)
    if decision.promoted:
        promote(client, name, version, reason=decision.reason)
    elif not decision.gated:
        client.set_registered_model_alias(name, CHALLENGER, version)


def promote(client: Any, name: str, version: str, reason: str = "promoted by hand") -> str | None:
    """Make ``version`` the champion; returns the version it replaced (recorded on it)."""
    current = champion_version(client, name)
    previous = str(current.version) if current is not None else None
    if previous == str(version):
        return previous
    _refuse_retired(client, name, str(version), "promoted")
    client.set_registered_model_alias(name, CHAMPION, str(version))
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, str(version), tag(PROMOTED_AT), stamp)
    client.set_model_version_tag(name, str(version), tag(PROMOTION_REASON), reason)
    if previous is not None:
        client.set_model_version_tag(name, str(version), tag(PREVIOUS_CHAMPION), previous)
    try:
        if str(client.get_model_version_by_alias(name, CHALLENGER).version) == str(version):
            client.delete_registered_model_alias(name, CHALLENGER)
    except Exception:
        pass
    return previous


def rollback(client: Any, name: str) -> str:
    """Give the champion alias back to the version the current champion replaced."""
    current = champion_version(client, name)
    if current is None:
        raise NotFound(f"model {name!r} has no champion to roll back")
    previous = current.tags.get(tag(PREVIOUS_CHAMPION))
    if not previous:
        raise NotFound(
            f"{name} v{current.version} replaced no earlier champion: nothing to roll back to"
        )
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_model_version_tag(name, previous, tag(PROMOTION_REASON), "rollback")
    client.set_model_version_tag(
        name, previous, tag(PROMOTED_AT), datetime.now(UTC).isoformat(timespec="seconds")
    )
    client.set_model_version_tag(name, str(current.version), tag(ROLLED_BACK), "true")
    return previous


def versions(client: Any, name: str | None = None) -> list[dict[str, Any]]:
    """Every version (of one model or all), newest first, with aliases and holdout metrics."""
    rows = []
    names = [name] if name else [m.name for m in client.search_registered_models()]
    for model in names:
        registered = client.get_registered_model(model)
        aliases: dict[str, list[str]] = {}
        for alias, version in (registered.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        for mv in client.search_model_versions(f"name = '{model}'"):
            metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
            rows.append(
                {
                    "model": model,
                    "version": int(mv.version),
                    "aliases": sorted(aliases.get(str(mv.version), [])),
                    "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC),
                    "decision": mv.tags.get(tag(DECISION_REASON), ""),
                    "metrics": {
                        k[len("holdout_") :]: v
                        for k, v in metrics.items()
                        if k.startswith("holdout_")
                    },
                }
            )
    return sorted(rows, key=lambda r: (r["model"], -r["version"]))


def decide_promotion(
    client: Any,
    spec: ModelSpec,
    version: str,
    metrics: dict[str, float],
    holdout: pd.DataFrame,
) -> Decision:
    """Champion or challenger: the current champion is scored on this run's holdout."""
    import mlflow

    from models_py.tuning import direction

    metric = spec.primary_metric
    current = champion_version(client, spec.name)
    champion_score = None
    if current is not None and str(current.version) != version:
        info = mlflow.models.get_model_info(f"models:/{spec.name}/{current.version}")
        columns = [c.name for c in info.signature.inputs.inputs] if info.signature else []
        if columns and set(columns) <= set(holdout.columns):
            champion = mlflow.sklearn.load_model(f"models:/{spec.name}/{current.version}")
            # At the champion's own logged threshold, as the candidate's metrics are at its
            # own: both as they would be served (F1 at 0.5 would judge a model it never was).
            threshold = float(current.tags.get(tag(THRESHOLD), 0.5))
            champion_score = task_metrics(champion, holdout, columns, spec.label.target, threshold)[
                metric
            ]
    return decide(
        metric,
        metrics[f"holdout_{metric}"],
        str(current.version) if current is not None else None,
        champion_score,
        spec.promotion_margin,
        maximize=direction(metric) == "maximize",
    )


def load_parent(spec: ModelSpec) -> Parent:
    """The champion a warm start continues from, with the end of its training window."""
    import mlflow

    client = mlflow.MlflowClient()
    current = champion_version(client, spec.name)
    if current is None:
        raise NotFound(f"--warm-start: {spec.name} has no champion to continue from")
    end = client.get_run(current.run_id).data.tags.get(tag(TRAIN_END))
    model = mlflow.sklearn.load_model(f"models:/{spec.name}/{current.version}")
    return Parent(model, str(current.version), pd.Timestamp(end) if end else None)


def load_model_version(
    settings: Settings,
    model_name: str,
    alias: str = CHAMPION,
    store: FeatureStore | None = None,
    version: str | None = None,
) -> LoadedVersion:
    """The version holding ``alias`` (``champion`` by default; the model server also loads the
    ``challenger``), or exactly ``version`` when given (the shadow process loads the version
    the server loaded, even if the alias moved since), with what scoring needs: signature,
    training ranges, threshold, and the feature service it must be fed.

    The service is resolved through Feast's MLflow integration, which also refuses a service
    whose features no longer match the ones the version was trained on (feast_features.json).
    """
    import mlflow

    tracking.configure(settings)
    client = mlflow.MlflowClient()
    try:
        if version is not None:
            mv = client.get_model_version(model_name, version)
        else:
            mv = client.get_model_version_by_alias(model_name, alias)
    except mlflow.exceptions.MlflowException as exc:
        wanted = f"version {version}" if version is not None else f"{alias!r} version"
        raise NotFound(
            f"model {model_name!r} has no {wanted} in {settings.mlflow_tracking_uri}; "
            f"train it first: featurestack train --spec {spec_of_model(model_name)}"
        ) from exc
    service = _resolve_service(store or feast_ops.load_store(settings), mv)
    uri = f"models:/{model_name}/{mv.version}"
    model = mlflow.sklearn.load_model(uri)
    signature = mlflow.models.get_model_info(uri).signature
    if signature is None:
        raise NotFound(f"{model_name} v{mv.version} was logged without a signature")
    inputs = [(c.name, c.type.name) for c in signature.inputs.inputs]
    try:
        ranges = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/{INPUT_RANGES}")
    except mlflow.exceptions.MlflowException:
        ranges = {}
    threshold = float(mv.tags.get(tag(THRESHOLD), 0.5))
    return LoadedVersion(
        model_name, str(mv.version), str(mv.run_id), service, model, inputs, ranges, threshold
    )


def _resolve_service(store: FeatureStore, mv: Any) -> str:
    from feast.mlflow_integration import FeastMlflowModelResolutionError

    feast_mlflow = store.mlflow
    if feast_mlflow is None or FEAST_SERVICE_TAG not in mv.tags:
        # Feast's integration disabled, or a version trained before it was used.
        service = mv.tags.get(tag(FEATURE_SERVICE))
        if not service:
            raise NotFound(f"{mv.name} v{mv.version} has no feature_service tag")
        return str(service)
    try:
        return str(feast_mlflow.resolve_features(f"models:/{mv.name}/{mv.version}"))
    except FeastMlflowModelResolutionError as exc:
        raise NotFound(
            f"{mv.name} v{mv.version} cannot be fed by the current feature registry: {exc}. "
            f"Restore the feature service it was trained on, or retrain: "
            f"featurestack train --spec {spec_of_model(mv.name)}"
        ) from exc


#: version tag marking a retired (archived) version: never served, promoted or challenger
RETIRED = "retired"


def is_retired(mv: Any) -> bool:
    return (mv.tags or {}).get(tag(RETIRED)) == "true"


def _refuse_retired(client: Any, name: str, version: str, action: str) -> None:
    mv = client.get_model_version(name, str(version))  # raises if there is no such version
    if is_retired(mv):
        raise NotFound(
            f"{name} v{version} is retired: it is never {action}. Pick another version "
            f"(`featurestack models --name {name}`)"
        )


def set_challenger(client: Any, name: str, version: str) -> None:
    """Give the ``challenger`` alias to ``version`` (served in shadow or split mode)."""
    _refuse_retired(client, name, version, "served")
    current = champion_version(client, name)
    if current is not None and str(current.version) == str(version):
        raise NotFound(f"{name} v{version} is the champion: a challenger must be another version")
    client.set_registered_model_alias(name, CHALLENGER, str(version))


def retire(client: Any, name: str, version: str) -> None:
    """Archive a version: its challenger alias is removed and it is never served, promoted or
    made challenger again. The champion cannot be retired (promote or roll back first)."""
    client.get_model_version(name, str(version))
    current = champion_version(client, name)
    if current is not None and str(current.version) == str(version):
        raise NotFound(
            f"{name} v{version} is the champion: promote another version (`featurestack "
            f"models promote {name} V`) or roll back before retiring it"
        )
    registered = client.get_registered_model(name)
    for alias, aliased in (registered.aliases or {}).items():
        if str(aliased) == str(version):
            client.delete_registered_model_alias(name, alias)
    client.set_model_version_tag(name, str(version), tag(RETIRED), "true")
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, str(version), tag("retired_at"), stamp)


def status(client: Any, name: str | None = None) -> list[dict[str, Any]]:
    """Each version's status as a team's dashboard reads it (``featurestack models --json``):
    aliases, champion/challenger/retired/held back, plugin, primary metric and its holdout
    value, trained at, rows, class balance, calibration, threshold, tuning, gates."""
    out = []
    for row in versions(client, name):
        mv = client.get_model_version(row["model"], str(row["version"]))
        run = client.get_run(mv.run_id) if mv.run_id else None
        params = run.data.params if run else {}
        metrics = run.data.metrics if run else {}
        tags = mv.tags or {}
        metric = tags.get(tag("decision_metric"), "")
        if "champion" in row["aliases"]:
            state = "champion"
        elif is_retired(mv):
            state = "retired"
        elif "challenger" in row["aliases"]:
            state = "challenger"
        elif tags.get(tag("gates")) == "failed":
            state = "held back"
        else:
            state = "registered"
        out.append(
            {
                "model": row["model"],
                "version": row["version"],
                "status": state,
                "aliases": row["aliases"],
                "plugin": params.get("plugin"),
                "task": tags.get(tag(TASK)),
                "primary_metric": metric or None,
                "primary_value": row["metrics"].get(metric) if metric else None,
                "trained_at": (
                    datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat(
                        timespec="seconds"
                    )
                    if run
                    else None
                ),
                "rows": {
                    seg: int(metrics[f"{seg}_rows"])
                    for seg in ("train", "validation", "holdout")
                    if f"{seg}_rows" in metrics
                },
                "positive_rate": {
                    seg: metrics[f"{seg}_positive_rate"]
                    for seg in ("train", "validation", "holdout")
                    if f"{seg}_positive_rate" in metrics
                },
                "calibration": params.get("calibration"),
                "threshold": float(tags[tag(THRESHOLD)]) if tag(THRESHOLD) in tags else None,
                "tuning": (
                    {
                        "study": params.get("tuning.study"),
                        "trials": int(metrics.get("tuning_trials", 0)),
                        "pruned": int(metrics.get("tuning_pruned", 0)),
                        "best_cv": metrics.get("tuning_best_cv"),
                    }
                    if "tuning.study" in params
                    else None
                ),
                "gates": tags.get(tag("gates")),
                "decision": row["decision"],
                "description": mv.description or "",
                "metrics": row["metrics"],
                "created": row["created"].isoformat(timespec="seconds"),
                "run_id": mv.run_id,
            }
        )
    return out

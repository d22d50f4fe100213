"""The model registry: versions, the `champion` and `challenger` aliases, promotion, rollback.

Every training run registers a new version. It becomes `champion` only if it beats the current
champion on the same holdout (the new run's) by the spec's margin in the primary metric;
otherwise it becomes `challenger`. The decision, with both scores, is recorded as tags on the
new version, and every change of champion records the version it replaced, so `rollback`
always knows where to go back to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG = "featurestack."


@dataclass
class Decision:
    promoted: bool
    reason: str
    metric: str
    new_score: float
    champion_version: str | None = None
    champion_score: float | None = None
    margin: float = 0.0

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
        return {TAG + k: v for k, v in out.items()}


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
    else:
        client.set_registered_model_alias(name, CHALLENGER, version)


def promote(client: Any, name: str, version: str, reason: str = "promoted by hand") -> str | None:
    """Make ``version`` the champion; returns the version it replaced (recorded on it)."""
    current = champion_version(client, name)
    previous = str(current.version) if current is not None else None
    if previous == str(version):
        return previous
    client.get_model_version(name, str(version))  # raises if there is no such version
    client.set_registered_model_alias(name, CHAMPION, str(version))
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, str(version), TAG + "promoted_at", stamp)
    client.set_model_version_tag(name, str(version), TAG + "promotion_reason", reason)
    if previous is not None:
        client.set_model_version_tag(name, str(version), TAG + "previous_champion", previous)
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
        raise LookupError(f"model {name!r} has no champion to roll back")
    previous = current.tags.get(TAG + "previous_champion")
    if not previous:
        raise LookupError(
            f"{name} v{current.version} replaced no earlier champion: nothing to roll back to"
        )
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_model_version_tag(name, previous, TAG + "promotion_reason", "rollback")
    client.set_model_version_tag(
        name, previous, TAG + "promoted_at", datetime.now(UTC).isoformat(timespec="seconds")
    )
    client.set_model_version_tag(name, str(current.version), TAG + "rolled_back", "true")
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
                    "decision": mv.tags.get(TAG + "decision_reason", ""),
                    "metrics": {
                        k[len("holdout_") :]: v
                        for k, v in metrics.items()
                        if k.startswith("holdout_")
                    },
                }
            )
    return sorted(rows, key=lambda r: (r["model"], -r["version"]))

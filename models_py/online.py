"""Online learning blended with the batch model: ``featurestack learn --model M``.

The learner is a linear model trained by stochastic gradient descent, one labelled outcome at
a time (scikit-learn's ``SGDClassifier``/``SGDRegressor`` ``partial_fit`` behind a running
standardisation). scikit-learn rather than River: it is already a dependency, its models
pickle like every other plugin's, and a constant step size is exactly the decay the blend
needs (each update shrinks what was learned before by about ``learning_rate``, so older
outcomes fade exponentially).

Outcomes are the prediction log's served answers (champion and split challenger; shadow rows
would count requests twice) joined to the published labels, point in time: a prediction is
learned only once the label of the entity at the event time of the features it was scored on
is published. The log is consumed in order, request by request, behind a watermark
(time, request_id): it stops at the first request whose labels are not published yet (they
will be), and skips rows that will never get one (no score, or a label table already past
their event time without a row for them).

Exactly once: the learned state and its watermark are committed together, as one new version
of the registered model ``<M>__online`` (artifact and tags), made current by moving its
``current`` alias, the commit point. A run killed before the alias moved leaves at most an
orphan version nobody reads; the re-run starts again from the current version's state and
watermark, so no outcome is learned twice and none is lost.

The model server loads the current version with the champion and serves
``(1 - weight) * batch + weight * online`` (spec ``online.weight``); it follows the alias by
hot reload (models_py/watcher.py).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurestack.core.errors import UsageError
from featurestack.core.faults import fault_point
from featurestack.core.settings import Settings
from models_py.contract import CHAMPION, spec_from_run, tag
from models_py.spec import OnlineSpec

ONLINE_SUFFIX = "__online"
CURRENT = "current"
WATERMARK_TIME, WATERMARK_REQUEST = tag("watermark_time"), tag("watermark_request")
LEARNED, TOTAL = tag("learned"), tag("learned_total")


def online_name(model: str) -> str:
    return model + ONLINE_SUFFIX


class OnlineModel:
    """A linear model learned one outcome at a time (see the module docstring)."""

    def __init__(self, features: list[str], task: str, config: OnlineSpec) -> None:
        from sklearn.linear_model import SGDClassifier, SGDRegressor
        from sklearn.preprocessing import StandardScaler

        if task not in ("binary", "regression"):
            raise UsageError(
                f"online learning is for binary and regression tasks, not {task!r}: remove "
                "`online` from the spec"
            )
        self.features, self.task, self.config = list(features), task, config
        # shuffle=False: outcomes are learned in log order (the decay depends on it)
        common = {
            "learning_rate": "constant",
            "eta0": config.learning_rate,
            "alpha": config.alpha,
            "shuffle": False,
        }
        self.model: Any = (
            SGDClassifier(loss="log_loss", **common) if task == "binary" else SGDRegressor(**common)
        )
        self.scaler = StandardScaler()
        self.learned = 0

    def _scale(self, X: np.ndarray) -> np.ndarray:
        out = (X - self.scaler.mean_) / np.where(self.scaler.scale_ > 0, self.scaler.scale_, 1)
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)

    def learn(self, X: np.ndarray, y: np.ndarray) -> None:
        """Labelled outcomes, in order. ``partial_fit`` makes one SGD step per row, in the
        order given, so a batch is learned exactly as the same rows one at a time would be
        (the standardisation's running statistics take the batch first: a batch of new
        outcomes is scaled with itself included). One call per batch spares scikit-learn's
        per-call input checks, which cost far more than an SGD step."""
        X = np.asarray(X, dtype="float64").reshape(len(y), -1)
        if not len(X):
            return
        self.scaler.partial_fit(np.where(np.isfinite(X), X, np.nan))
        Xs = self._scale(X)
        if self.task == "binary":
            self.model.partial_fit(Xs, np.asarray(y, dtype=int), classes=[0, 1])
        else:
            self.model.partial_fit(Xs, np.asarray(y, dtype="float64"))
        self.learned += len(X)

    def learn_one(self, x: np.ndarray, y: float) -> None:
        """One labelled outcome."""
        self.learn(np.asarray(x, dtype="float64").reshape(1, -1), np.array([y]))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class (binary) or the value; NaN before any outcome."""
        X = np.asarray(X, dtype="float64")
        if self.learned == 0:
            return np.full(len(X), np.nan)
        # the linear model by hand: what predict_proba / predict compute, without
        # scikit-learn's per-call input checks (~0.5 ms, on the server's request path)
        z = self._scale(X) @ np.ravel(self.model.coef_) + float(np.ravel(self.model.intercept_)[0])
        if self.task == "binary":
            return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype="float64")
        return np.asarray(z, dtype="float64")


@dataclass
class OnlineState:
    """The current online model of a batch model, and where it stopped in the log."""

    model: OnlineModel
    version: str | None
    watermark: tuple[pd.Timestamp, str] | None


def _client(settings: Settings) -> Any:
    import mlflow

    from models_py import tracking

    tracking.configure(settings)
    return mlflow.MlflowClient()


def load_state(settings: Settings, model: str) -> OnlineState | None:
    """The version behind ``<model>__online``'s ``current`` alias, or None (never learned)."""
    import joblib
    import mlflow

    client = _client(settings)
    try:
        mv = client.get_model_version_by_alias(online_name(model), CURRENT)
    except mlflow.exceptions.MlflowException:
        return None
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=mv.source))
    learner = joblib.load(folder / "online_model.joblib")
    tags = mv.tags
    mark = None
    if tags.get(WATERMARK_TIME):
        mark = (pd.Timestamp(tags[WATERMARK_TIME]), tags.get(WATERMARK_REQUEST, ""))
    return OnlineState(learner, str(mv.version), mark)


@dataclass
class LearnResult:
    model: str
    version: str | None
    learned: int
    skipped: int
    waiting: int
    total: int
    watermark: tuple[pd.Timestamp, str] | None


def learn(settings: Settings, model: str) -> LearnResult:
    """Consume the new labelled outcomes of ``model`` once (see the module docstring)."""
    from models_py.labels import log_with_labels
    from models_py.prediction_log import expand, read_log
    from models_py.registry import load_model_version

    client = _client(settings)
    champion = load_model_version(settings, model)
    spec = spec_from_run(client.get_run(champion.run_id), default_name=model)
    config = spec.online or OnlineSpec()
    state = load_state(settings, model)
    if state is None:
        state = OnlineState(OnlineModel(champion.features, spec.task, config), None, None)
    mark = state.watermark
    log = read_log(
        settings.prediction_log_dir, model, since=mark[0].to_pydatetime() if mark else None
    )
    log = log[log["role"] != "shadow"]
    if mark is not None:
        times = pd.to_datetime(log["time"], utc=True)
        log = log[(times > mark[0]) | ((times == mark[0]) & (log["request_id"] > mark[1]))]
    log = log.sort_values(["time", "request_id"], kind="stable").reset_index(drop=True)
    labelled = log_with_labels(settings, log, spec.label)
    label_path = settings.published_table(spec.label.model)
    published_until = (
        pd.to_datetime(
            pd.read_parquet(label_path, columns=["event_timestamp"])["event_timestamp"], utc=True
        ).max()
        if label_path.exists()
        else None
    )
    inputs = expand(labelled, "features") if len(labelled) else pd.DataFrame()
    learned = skipped = waiting = 0
    learner = state.model
    batch: list[int] = []
    targets: list[float] = []
    for (at, request_id), rows in labelled.groupby(["time", "request_id"], sort=False):
        ready = []
        for i in rows.index:
            row = labelled.loc[i]
            event = row["feature_time"]
            if pd.isna(row["score"]) or pd.isna(event):
                ready.append((i, None))  # never scored: never learned
            elif pd.notna(row["label"]):
                ready.append((i, row["label"]))
            elif published_until is not None and pd.Timestamp(event) <= published_until:
                ready.append((i, None))  # the label table is past it without a row: never
            else:
                break
        else:
            for i, label in ready:
                if label is None:
                    skipped += 1
                    continue
                batch.append(i)
                targets.append(float(label))
                learned += 1
            mark = (pd.Timestamp(at), str(request_id))
            continue
        waiting = int((labelled.index >= rows.index[0]).sum())
        break
    if batch:  # one SGD step per outcome, in log order
        X = np.array(
            [
                [_number(inputs.at[i, f]) if f in inputs else np.nan for f in learner.features]
                for i in batch
            ],
            dtype="float64",
        )
        learner.learn(X, np.array(targets))
    if learned + skipped == 0:
        return LearnResult(model, state.version, 0, 0, waiting, learner.learned, mark)
    fault_point("learn_before_commit")
    version = _commit(client, settings, model, learner, mark, learned)
    return LearnResult(model, version, learned, skipped, waiting, learner.learned, mark)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _commit(
    client: Any,
    settings: Settings,
    model: str,
    learner: OnlineModel,
    mark: tuple[pd.Timestamp, str] | None,
    learned: int,
) -> str:
    """A new version holding the state and its watermark; moving ``current`` commits it."""
    import joblib
    import mlflow

    from models_py import tracking

    name = online_name(model)
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(
            name, description=f"Online learner blended with {model} (featurestack learn)"
        )
    experiment = tracking.configure(settings)
    tags = {
        WATERMARK_TIME: mark[0].isoformat() if mark else "",
        WATERMARK_REQUEST: mark[1] if mark else "",
        LEARNED: str(learned),
        TOTAL: str(learner.learned),
    }
    with mlflow.start_run(experiment_id=experiment, run_name=f"learn {model}") as run:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "online_model.joblib"
            joblib.dump(learner, path)
            mlflow.log_artifact(str(path), "online")
        mlflow.set_tags(tags)
        mlflow.log_metric("learned", learned)
    mv = client.create_model_version(
        name, source=f"{run.info.artifact_uri}/online", run_id=run.info.run_id, tags=tags
    )
    fault_point("learn_before_alias")
    client.set_registered_model_alias(name, CURRENT, str(mv.version))  # the commit point
    client.set_model_version_tag(name, str(mv.version), tag("learned_at"), _now())
    return str(mv.version)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def blend(batch: float | None, online: float, weight: float) -> float | None:
    """The served score: ``(1 - weight) * batch + weight * online`` (the batch score alone
    while the online model has learned nothing)."""
    if batch is None:
        return None
    if online != online:  # NaN: nothing learned yet
        return batch
    return (1 - weight) * batch + weight * online


__all__ = ["CHAMPION", "OnlineModel", "blend", "learn", "load_state"]

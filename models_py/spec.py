"""Model specs: one YAML per model in the project's specs/, validated before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from featurestack.core.errors import UsageError
from featurestack.core.project import find_project


class LabelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The dbt label model, as published by the gate.
    model: str
    #: The target column in it (one model)...
    target: str = ""
    #: ...or several target columns: one model each, registered as ``<name>__<target>``.
    targets: list[str] = []
    #: The range a target's values cannot leave, e.g. ``{units_sold: [0, null]}``: the
    #: predictions and intervals of a model with intervals are clipped to it (clipping to a
    #: range the truth never leaves cannot lower coverage; it only removes impossible values).
    bounds: dict[str, tuple[float | None, float | None]] = {}
    #: The request-time values of the service's on-demand views in training sets: each request
    #: field (``quote_price``) → the label table's column that holds the value the caller
    #: would have sent then (often the same name). docs/features.md "The time model".
    request_columns: dict[str, str] = {}
    #: How logged predictions meet their labels (monitor, shadow report): the first label of
    #: the same entity at or after the prediction's feature time and at most ``horizon`` later
    #: (``0s``: stamped at the features' event time, as the demo's labels are; ``2h``, ``1d``)
    horizon: str = "0s"
    #: ...or label columns that the prediction's entity or request values also carry (a race
    #: id): the label of the same keys and these values, whatever its time.
    join_on: list[str] = []

    @property
    def horizon_delta(self) -> pd.Timedelta:
        """``horizon`` as a Timedelta (validated when the spec is read)."""
        return pd.Timedelta(self.horizon)

    @model_validator(mode="after")
    def _one_kind_of_target(self) -> LabelSpec:
        if bool(self.target) == bool(self.targets):
            raise ValueError("give exactly one of label.target or label.targets")
        unknown = set(self.bounds) - {self.target, *self.targets}
        if unknown:
            raise ValueError(f"label.bounds names columns that are not targets: {sorted(unknown)}")
        for name, (low, high) in self.bounds.items():
            if low is not None and high is not None and low >= high:
                raise ValueError(f"label.bounds[{name}]: lower bound {low} ≥ upper bound {high}")
        try:
            horizon = pd.Timedelta(self.horizon)
        except ValueError:
            raise ValueError(
                f"label.horizon {self.horizon!r} is not a duration; write e.g. 0s, 90min, 2h, 1d"
            ) from None
        if horizon < pd.Timedelta(0):
            raise ValueError(f"label.horizon {self.horizon!r} is negative; a label follows")
        return self


class IntervalSpec(BaseModel):
    """Prediction intervals for regression, with their coverage reported on the holdout."""

    model_config = ConfigDict(extra="forbid")

    #: ``conformal``: split conformal on the validation residuals (any regressor);
    #: ``quantile``: two extra models at the interval's quantiles (plugins with a quantile task)
    method: Literal["conformal", "quantile"] = "conformal"
    coverage: float = Field(0.9, gt=0, lt=1)


class SplitSpec(BaseModel):
    """Time-based split by distinct event dates: train | validation | holdout, oldest first."""

    model_config = ConfigDict(extra="forbid")

    validation_fraction: float = Field(0.15, gt=0, lt=1)
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    #: Dates dropped before each later segment, so no training label overlaps what follows.
    embargo_periods: int = Field(1, ge=0)
    #: the unit of the segments and of the embargo: calendar ``day`` (UTC; default), ``hour``,
    #: ``week``, or each distinct ``timestamp``
    period: Literal["day", "hour", "week", "timestamp"] = "day"

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitSpec:
        if self.validation_fraction + self.holdout_fraction >= 0.9:
            raise ValueError("validation_fraction + holdout_fraction must leave ≥ 10 % to train on")
        return self


class CVSpec(BaseModel):
    """Cross-validation inside the training segment, used to score tuning trials."""

    model_config = ConfigDict(extra="forbid")

    #: ``walk_forward``: expanding windows over dates, each validated on the next block after
    #: an embargo. ``stratified_kfold`` shuffles rows: allowed only for rows that are not
    #: time-ordered, which the spec must say (``time_ordered: false``).
    scheme: Literal["walk_forward", "stratified_kfold"] = "walk_forward"
    folds: int = Field(3, ge=2, le=20)
    embargo_periods: int = Field(1, ge=0)
    time_ordered: bool = True
    #: the unit of the folds and of the embargo (as ``split.period``)
    period: Literal["day", "hour", "week", "timestamp"] = "day"

    @model_validator(mode="after")
    def _no_shuffling_of_time_series(self) -> CVSpec:
        if self.scheme == "stratified_kfold" and self.time_ordered:
            raise ValueError(
                "stratified_kfold shuffles rows across time and would leak the future into the "
                "past; set time_ordered: false only if the rows are not a time series"
            )
        return self


class TuningSpec(BaseModel):
    """An Optuna study: TPE sampler (seeded), pruning on fold scores, a budget."""

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(30, ge=1)
    #: stop starting trials after this many seconds (None: only ``trials`` bounds it)
    timeout_s: float | None = Field(None, gt=0)
    sampler_seed: int = 42
    pruner: Literal["median", "successive_halving", "none"] = "median"


class GatesSpec(BaseModel):
    """Quality gates: a version failing one is registered (tagged why) but never champion,
    and ``featurestack train`` exits non-zero. Holdout metrics, one verdict line per gate."""

    model_config = ConfigDict(extra="forbid")

    #: floors of metrics where higher is better, e.g. ``{f1: 0.70, roc_auc: 0.75}``
    min: dict[str, float] = {}
    #: ceilings of metrics where lower is better, e.g. ``{rmse: 12.0, log_loss: 0.6}``
    max: dict[str, float] = {}
    #: the primary metric must beat the constant predictor's on the same holdout (the base
    #: rate's probability, the mean's RMSE …). A version whose holdout scores are all alike
    #: (a degenerate model) is never champion, whatever this says.
    beat_constant: bool = False


class OnlineSpec(BaseModel):
    """``featurestack learn``: a linear model updated one labelled outcome at a time, served
    as ``batch_weight * batch + online_weight * online``."""

    model_config = ConfigDict(extra="forbid")

    #: the online model's share of the blended score (the batch model gets the rest)
    weight: float = Field(0.2, ge=0, le=1)
    #: constant step size of the SGD updates: each update shrinks the weight of everything
    #: learned before by about this much, so older outcomes decay exponentially
    learning_rate: float = Field(0.01, gt=0, le=1)
    #: L2 regularisation of the SGD model
    alpha: float = Field(1e-4, ge=0)


class RetrainPolicy(BaseModel):
    """``featurestack retrain``: retrain when the last monitor run found drift or degraded
    performance, or when the champion is older than ``max_age_days``."""

    model_config = ConfigDict(extra="forbid")

    on_drift: bool = True
    on_degradation: bool = True
    #: None: age alone never retrains
    max_age_days: float | None = Field(7, gt=0)
    #: an age-only retrain continues the champion's boosting (``--warm-start``); drift and
    #: degradation always retrain in full (the data the model knew no longer holds)
    warm_start_on_age: bool = True


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    feature_service: str
    label: LabelSpec
    task: Literal["binary", "multiclass", "regression", "quantile"]
    primary_metric: str = "roc_auc"
    split: SplitSpec = Field(default_factory=SplitSpec)
    plugin: str
    params: dict[str, Any] = {}
    seed: int = 42
    cv: CVSpec = Field(default_factory=CVSpec)
    #: None: train once with ``params``; else tune on ``cv`` folds, then refit the best
    tuning: TuningSpec | None = None
    #: a new version becomes champion only if its holdout ``primary_metric`` beats the
    #: champion's on the same holdout by more than this (else it becomes challenger)
    promotion_margin: float = Field(0.0, ge=0)
    #: probability calibration fitted on the validation segment (never on the holdout):
    #: ``platt`` (a logistic fit of the scores) or ``isotonic`` (monotone, needs more rows)
    calibration: Literal["none", "platt", "isotonic"] = "none"
    #: how the decision threshold is chosen on the validation segment: ``f1`` (best F1),
    #: ``youden`` (best TPR − FPR) or ``fixed`` (0.5)
    threshold_objective: Literal["f1", "youden", "fixed"] = "f1"
    #: regression: prediction intervals (None: point predictions only)
    interval: IntervalSpec | None = None
    #: class imbalance (binary): ``class_weight`` (balanced weights, plugins with that
    #: parameter), ``scale_pos_weight`` (negatives / positives of the training segment, plugins
    #: with that parameter) or ``sample_weight`` (a column of the label table; regression too)
    #: or ``smote`` (synthetic minority rows in each fit's own rows; SMOTE-NC with text features)
    imbalance: Literal["none", "class_weight", "scale_pos_weight", "sample_weight", "smote"] = (
        "none"
    )
    sample_weight_column: str | None = None
    #: quality gates on the holdout (floors, the constant predictor to beat)
    gates: GatesSpec = Field(default_factory=GatesSpec)
    #: online learning blended with the batch model (models_py/online.py; None: batch only)
    online: OnlineSpec | None = None
    #: when ``featurestack retrain`` retrains (models_py/retrain.py)
    retrain: RetrainPolicy = Field(default_factory=lambda: RetrainPolicy())

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        regression = self.task in ("regression", "quantile")
        allowed = REGRESSION_METRICS if regression else CLASSIFICATION_METRICS
        if self.primary_metric not in allowed:
            raise ValueError(
                f"primary_metric {self.primary_metric!r} does not fit task {self.task!r}; "
                f"use one of {sorted(allowed)}"
            )
        if self.label.bounds and not regression:
            raise ValueError("label.bounds is for regression tasks")
        if self.interval is not None and not regression:
            raise ValueError("interval is for regression tasks")
        if (self.calibration != "none" or self.imbalance not in ("none", "sample_weight")) and (
            regression
        ):
            raise ValueError(
                "calibration and class imbalance are for classification tasks "
                "(a regression may weight its rows: imbalance: sample_weight)"
            )
        if self.imbalance == "scale_pos_weight" and self.task != "binary":
            raise ValueError("imbalance: scale_pos_weight is for binary tasks; use class_weight")
        if (self.imbalance == "sample_weight") != bool(self.sample_weight_column):
            raise ValueError("imbalance: sample_weight needs sample_weight_column (and only it)")
        for bound, names in (("min", self.gates.min), ("max", self.gates.max)):
            for metric in names:
                if metric not in allowed:
                    raise ValueError(
                        f"gates.{bound}.{metric}: no such metric for task {self.task!r}; "
                        f"use one of {sorted(allowed)}"
                    )
                lower_is_better = metric in LOWER_IS_BETTER
                if lower_is_better != (bound == "max"):
                    right = "max" if lower_is_better else "min"
                    raise ValueError(
                        f"gates.{bound}.{metric}: {metric} is "
                        f"{'lower' if lower_is_better else 'higher'}-is-better; put it under "
                        f"gates.{right}"
                    )
        return self

    def expand(self) -> list[ModelSpec]:
        """One spec per target: a multi-target spec trains one model per target column."""
        if not self.label.targets:
            return [self]
        return [
            self.model_copy(
                update={
                    "name": f"{self.name}__{target}",
                    "label": LabelSpec(
                        **self.label.model_dump(exclude={"target", "targets", "bounds"}),
                        target=target,
                        bounds={t: b for t, b in self.label.bounds.items() if t == target},
                    ),
                }
            )
            for target in self.label.targets
        ]


CLASSIFICATION_METRICS = frozenset(
    {"roc_auc", "pr_auc", "log_loss", "brier", "f1", "precision", "recall", "accuracy"}
)
REGRESSION_METRICS = frozenset({"rmse", "mae", "r2"})
#: metrics where lower is better (every other one is maximised)
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae"})


class SpecError(UsageError):
    """A spec file is missing or invalid; the message says which field and why."""


def specs_dir(folder: Path | None = None) -> Path:
    """The folder of specs: ``folder``, else the project's (featurestack.yml ``specs``)."""
    return folder if folder is not None else find_project().specs_dir


def spec_names(folder: Path | None = None) -> list[str]:
    """The names of the specs in the project (or ``folder``)."""
    return sorted(p.stem for p in specs_dir(folder).glob("*.yaml"))


def spec_path(name_or_path: str, folder: Path | None = None) -> Path:
    """Resolve a spec name (``my_model``) or a path to its YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    return specs_dir(folder) / f"{name_or_path}.yaml"


def load_spec(name_or_path: str, folder: Path | None = None) -> ModelSpec:
    path = spec_path(name_or_path, folder)
    if not path.exists():
        known = ", ".join(spec_names(folder)) or "none"
        parent = spec_of_model(name_or_path, folder)
        if parent != name_or_path and spec_path(parent, folder).exists():
            raise SpecError(
                f"{name_or_path} is a target of spec {parent} (one model per target): train "
                f"it with `featurestack train --spec {parent}`"
            )
        raise SpecError(
            f"no model spec {path}; specs of this project: {known} (a spec is a YAML file in "
            f'{specs_dir(folder)}, README "Model specs")'
        )
    try:
        return ModelSpec(**yaml.safe_load(path.read_text()))
    except ValidationError as exc:
        raise SpecError(f"invalid model spec {path}:\n{exc}") from exc


def all_specs(folder: Path | None = None) -> list[ModelSpec]:
    return [load_spec(str(p)) for p in sorted(specs_dir(folder).glob("*.yaml"))]


def spec_of_model(model_name: str, folder: Path | None = None) -> str:
    """The spec that trains registered model ``model_name``: a multi-target spec ``s``
    registers ``s__<target>``, and ``featurestack train --spec`` takes ``s`` (suggested fixes
    must name a spec that exists)."""
    if "__" not in model_name:
        return model_name
    try:
        names = set(spec_names(folder))
    except Exception:  # outside a project: the naming rule alone
        names = set()
    if model_name in names:
        return model_name
    parts = model_name.split("__")
    for cut in range(len(parts) - 1, 0, -1):  # the longest spec name that is a prefix
        prefix = "__".join(parts[:cut])
        if prefix in names:
            return prefix
    return parts[0]

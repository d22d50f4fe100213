"""Baselines from scikit-learn: logistic regression, random forest, a small neural network.

Logistic regression and the network need complete, scaled inputs, so they are pipelines that
impute missing values with the training median (keeping an all-missing feature as a constant
column) and standardise; the random forest takes NaN itself.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models_py.plugins.base import ModelPlugin


def _scaled(estimator: Any) -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("model", estimator),
        ]
    )


class PipelinePlugin(ModelPlugin):
    """A plugin whose library estimator is ``_scaled(...)``: weights go to its last step."""

    def _fit_estimator(self, estimator: Any, X: np.ndarray, y: np.ndarray, kwargs: dict) -> Any:
        weight = kwargs.pop("sample_weight", None)
        if weight is not None:
            kwargs["model__sample_weight"] = weight
        return estimator.fit(X, y, **kwargs)


class LogRegParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    C: float = Field(1.0, gt=0)
    class_weight: Literal["balanced"] | None = None
    max_iter: int = Field(1000, ge=1)


class LogisticRegressionModel(PipelinePlugin):
    """L2-regularised logistic regression on imputed, standardised features: the baseline."""

    name: ClassVar[str] = "logreg"
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass"})
    Params: ClassVar[type[BaseModel]] = LogRegParams

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {"C": trial.suggest_float("C", 1e-3, 10.0, log=True)}

    def _build(self, n_classes: int | None) -> Any:
        from sklearn.linear_model import LogisticRegression

        return _scaled(
            LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter)
        )


class RandomForestParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(300, ge=1)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(20, ge=1)
    max_features: float = Field(0.5, gt=0, le=1)
    class_weight: Literal["balanced", "balanced_subsample"] | None = None
    random_state: int = 0
    n_jobs: int = 2


class RandomForestModel(ModelPlugin):
    """Bagged decision trees (missing values handled by the trees' splits)."""

    name: ClassVar[str] = "random_forest"
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass", "regression"})
    Params: ClassVar[type[BaseModel]] = RandomForestParams

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "max_depth": trial.suggest_int("max_depth", 3, 16),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 5, 200, log=True),
            "max_features": trial.suggest_float("max_features", 0.2, 1.0),
        }

    def _build(self, n_classes: int | None) -> Any:
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        common = dict(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        )
        if n_classes is not None:
            return RandomForestClassifier(class_weight=self.class_weight, **common)
        return RandomForestRegressor(**common)


class MLPParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden_layer_sizes: tuple[int, ...] = (64, 32)
    alpha: float = Field(1e-3, ge=0)
    learning_rate_init: float = Field(1e-3, gt=0)
    max_iter: int = Field(200, ge=1)
    #: stop when a held-out 10 % of the training rows stops improving
    early_stopping: bool = True
    random_state: int = 0


class MLPModel(PipelinePlugin):
    """A small fully connected network on imputed, standardised features."""

    name: ClassVar[str] = "mlp"
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass", "regression"})
    Params: ClassVar[type[BaseModel]] = MLPParams

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        width = trial.suggest_int("width", 16, 128, log=True)
        return {
            "hidden_layer_sizes": (width, max(width // 2, 4)),
            "alpha": trial.suggest_float("alpha", 1e-5, 1e-1, log=True),
            "learning_rate_init": trial.suggest_float("learning_rate_init", 1e-4, 1e-2, log=True),
        }

    def _build(self, n_classes: int | None) -> Any:
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        common = dict(
            hidden_layer_sizes=tuple(self.hidden_layer_sizes),
            alpha=self.alpha,
            learning_rate_init=self.learning_rate_init,
            max_iter=self.max_iter,
            early_stopping=self.early_stopping,
            random_state=self.random_state,
        )
        return _scaled(MLPClassifier(**common) if n_classes is not None else MLPRegressor(**common))

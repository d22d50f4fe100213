"""LightGBM through its scikit-learn API, as a featurestack plugin."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.base import ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from models_py.plugins.base import ModelPlugin


class LightGBMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(400, ge=1)
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(20, ge=1)
    subsample: float = Field(1.0, gt=0, le=1)
    subsample_freq: int = Field(0, ge=0)
    colsample_bytree: float = Field(1.0, gt=0, le=1)
    reg_lambda: float = Field(0.0, ge=0)
    early_stopping_rounds: int | None = Field(50, ge=1)
    random_state: int = 0
    n_jobs: int = 2


class LightGBMModel(ClassifierMixin, ModelPlugin):
    """Gradient-boosted trees; early stopping on the validation set when one is given."""

    name: ClassVar[str] = "lightgbm"
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass"})
    Params: ClassVar[type[BaseModel]] = LightGBMParams

    def __init__(
        self,
        task: str = "binary",
        n_estimators: int = 400,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        subsample: float = 1.0,
        subsample_freq: int = 0,
        colsample_bytree: float = 1.0,
        reg_lambda: float = 0.0,
        early_stopping_rounds: int | None = 50,
        random_state: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.task = task
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.subsample_freq = subsample_freq
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.random_state = random_state
        self.n_jobs = n_jobs

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 4, 64, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 5, 200, log=True),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        }

    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        eval_set: tuple[Any, Any] | None = None,
    ) -> LightGBMModel:
        import lightgbm as lgb

        model = lgb.LGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=self.subsample,
            subsample_freq=self.subsample_freq,
            colsample_bytree=self.colsample_bytree,
            reg_lambda=self.reg_lambda,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )
        callbacks: list[Any] = []
        kwargs: dict[str, Any] = {}
        if eval_set is not None and self.early_stopping_rounds:
            kwargs["eval_X"], kwargs["eval_y"] = (eval_set[0],), (eval_set[1],)
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        model.fit(X, y, sample_weight=sample_weight, callbacks=callbacks, **kwargs)
        self.model_ = model
        self.classes_ = model.classes_
        self.n_features_in_ = model.n_features_in_
        if hasattr(model, "feature_names_in_"):
            self.feature_names_in_ = model.feature_names_in_
        self.best_iteration_ = int(model.best_iteration_ or model.n_estimators)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        return np.asarray(self.model_.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        return np.asarray(self.model_.predict(X))

    def feature_importances(self) -> dict[str, float]:
        """Total gain per feature (what the trees actually used)."""
        check_is_fitted(self, "model_")
        gains = self.model_.booster_.feature_importance(importance_type="gain")
        return dict(zip(self.model_.booster_.feature_name(), map(float, gains), strict=True))

"""LightGBM, as a featurestack plugin: classifier, regressor or quantile regressor by task."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.utils.validation import check_is_fitted

from models_py.plugins.base import ModelPlugin
from models_py.plugins.boosting import BoosterPlugin


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
    class_weight: Literal["balanced"] | None = None
    #: quantile task: the quantile to predict
    alpha: float = Field(0.5, gt=0, lt=1)
    early_stopping_rounds: int | None = Field(50, ge=1)
    random_state: int = 0
    n_jobs: int = 2
    #: binary: weight of the positive class (``imbalance: scale_pos_weight`` sets it to
    #: negatives / positives of the rows being fitted); None: unweighted
    scale_pos_weight: float | None = Field(None, gt=0)


class LightGBMModel(BoosterPlugin):
    """Gradient-boosted trees; early stopping on the validation set when one is given."""

    name: ClassVar[str] = "lightgbm"
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass", "regression", "quantile"})
    Params: ClassVar[type[BaseModel]] = LightGBMParams

    @classmethod
    def _tree_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "num_leaves": trial.suggest_int("num_leaves", 4, 64, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 5, 200, log=True),
        }

    def _build(self, n_classes: int | None) -> Any:
        import lightgbm as lgb

        common = dict(
            **self._shared(),
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample_freq=self.subsample_freq,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )
        if n_classes is not None:
            if self.scale_pos_weight is not None and n_classes == 2:
                common["scale_pos_weight"] = self.scale_pos_weight
            return lgb.LGBMClassifier(class_weight=self.class_weight, **common)
        if self.task == "quantile":
            return lgb.LGBMRegressor(objective="quantile", alpha=self.alpha, **common)
        return lgb.LGBMRegressor(**common)

    def _eval_kwargs(
        self, estimator: Any, X_valid: np.ndarray, y_valid: np.ndarray
    ) -> dict[str, Any]:
        import lightgbm as lgb

        if not self.early_stopping_rounds:
            return {}
        return {
            "eval_X": (X_valid,),
            "eval_y": (y_valid,),
            "callbacks": [lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        }

    def _continue_kwargs(self, parent: ModelPlugin) -> dict[str, Any]:
        return {"init_model": parent.estimator_.booster_}

    def _best_iteration(self) -> int:
        return int(self.estimator_.best_iteration_ or self.estimator_.n_estimators)

    def _gains(self) -> np.ndarray:
        return self.estimator_.booster_.feature_importance(importance_type="gain")

    def contributions(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        values = self.estimator_.booster_.predict(self._check_X(X, reset=False), pred_contrib=True)
        return np.asarray(values)

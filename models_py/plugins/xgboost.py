"""XGBoost, as a featurestack plugin: classifier, regressor or quantile regressor by task."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models_py.plugins.base import ModelPlugin
from models_py.plugins.boosting import BoosterPlugin


class XGBoostParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(400, ge=1)
    learning_rate: float = Field(0.05, gt=0, le=1)
    max_depth: int = Field(6, ge=1)
    min_child_weight: float = Field(1.0, ge=0)
    subsample: float = Field(1.0, gt=0, le=1)
    colsample_bytree: float = Field(1.0, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    #: binary task: weight of the positive class (class imbalance)
    scale_pos_weight: float = Field(1.0, gt=0)
    #: quantile task: the quantile to predict
    alpha: float = Field(0.5, gt=0, lt=1)
    early_stopping_rounds: int | None = Field(50, ge=1)
    random_state: int = 0
    n_jobs: int = 2


class XGBoostModel(BoosterPlugin):
    """Gradient-boosted trees (histogram method); early stopping on the validation set."""

    name: ClassVar[str] = "xgboost"
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass", "regression", "quantile"})
    Params: ClassVar[type[BaseModel]] = XGBoostParams

    @classmethod
    def _tree_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "max_depth": trial.suggest_int("max_depth", 2, 8),
            "min_child_weight": trial.suggest_float("min_child_weight", 0.1, 50.0, log=True),
        }

    def _build(self, n_classes: int | None) -> Any:
        import xgboost as xgb

        common = dict(
            **self._shared(),
            max_depth=self.max_depth,
            min_child_weight=self.min_child_weight,
            tree_method="hist",
        )
        if n_classes == 2:
            return xgb.XGBClassifier(scale_pos_weight=self.scale_pos_weight, **common)
        if n_classes is not None:  # a weight of the positive class means nothing here
            return xgb.XGBClassifier(**common)
        if self.task == "quantile":
            return xgb.XGBRegressor(
                objective="reg:quantileerror", quantile_alpha=self.alpha, **common
            )
        return xgb.XGBRegressor(**common)

    def _eval_kwargs(
        self, estimator: Any, X_valid: np.ndarray, y_valid: np.ndarray
    ) -> dict[str, Any]:
        # XGBoost takes early stopping as a model parameter and refuses it without an eval set.
        estimator.set_params(early_stopping_rounds=self.early_stopping_rounds)
        return {"eval_set": [(X_valid, y_valid)], "verbose": False}

    def _continue_kwargs(self, parent: ModelPlugin) -> dict[str, Any]:
        return {"xgb_model": parent.estimator_.get_booster()}

    def _best_iteration(self) -> int:
        best = getattr(self.estimator_, "best_iteration", None)
        rounds = self.estimator_.get_booster().num_boosted_rounds()  # a parent's rounds too
        return int(best + 1 if best is not None else rounds)

    def contributions(self, X: Any) -> np.ndarray:
        import xgboost as xgb

        booster = self.estimator_.get_booster()
        matrix = xgb.DMatrix(self._check_X(X, reset=False))
        # the trees predict_proba uses: up to the early-stopping best iteration
        return np.asarray(
            booster.predict(matrix, pred_contribs=True, iteration_range=(0, self.best_iteration_))
        )

    def _gains(self) -> np.ndarray:
        scores = self.estimator_.get_booster().get_score(importance_type="total_gain")
        return np.array([scores.get(f"f{i}", 0.0) for i in range(self.n_features_in_)])

"""What the gradient-boosting plugins share (LightGBM, XGBoost).

The parameters both libraries name alike, the tuned ones among them, the iteration early
stopping kept (``best_iteration_``), gain per feature and the native per-prediction
contributions. Each library plugin adds its own tree parameters and library calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from models_py.plugins.base import ModelPlugin


class BoosterPlugin(ModelPlugin):
    """Base of the booster plugins; subclasses implement the library-specific hooks."""

    # -- hooks ---------------------------------------------------------------------------------

    @classmethod
    def _tree_space(cls, trial: Any) -> dict[str, Any]:
        """The library's own tree-shape parameters for one Optuna trial."""
        raise NotImplementedError

    def _best_iteration(self) -> int:
        """Trees the fitted model predicts with (early stopping's best, a parent's included)."""
        raise NotImplementedError

    def _gains(self) -> np.ndarray:
        raise NotImplementedError

    def contributions(self, X: Any) -> np.ndarray:
        """Per-prediction feature contributions (SHAP values from the booster itself, no extra
        dependency): one column per feature plus the bias last, in raw-score units."""
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        space = {"learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True)}
        space.update(cls._tree_space(trial))
        space["colsample_bytree"] = trial.suggest_float("colsample_bytree", 0.5, 1.0)
        space["reg_lambda"] = trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True)
        return space

    def _shared(self) -> dict[str, Any]:
        """Constructor arguments both libraries name alike."""
        names = ("n_estimators", "learning_rate", "subsample", "colsample_bytree", "reg_lambda")
        return {
            **{name: getattr(self, name) for name in names},
            "random_state": self.random_state,
            "n_jobs": self.n_jobs,
        }

    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        eval_set: Any = None,
        init_model: Any = None,
    ) -> BoosterPlugin:
        super().fit(X, y, sample_weight=sample_weight, eval_set=eval_set, init_model=init_model)
        self.best_iteration_ = self._best_iteration()
        return self

    def feature_importances(self) -> dict[str, float]:
        """Total gain per feature (what the trees actually used)."""
        check_is_fitted(self, "estimator_")
        return dict(zip(self.feature_names, map(float, self._gains()), strict=True))

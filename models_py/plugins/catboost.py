"""CatBoost, as a featurestack plugin: native categorical features, early stopping, quantiles.

Text features reach every plugin ordinal-encoded (models_py/encoding.py); CatBoost is told
which columns they are (``cat_features``, filled in by the fit from the text features when a
spec leaves it empty) and treats them as categories with its ordered target statistics
instead of as numbers. A missing category becomes its own category.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from models_py.plugins.base import ModelPlugin, _is_classifier_task
from models_py.plugins.boosting import BoosterPlugin

#: the code a missing category gets (CatBoost takes categories as integers or strings only)
MISSING_CATEGORY = -1


class CatBoostParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(400, ge=1)
    learning_rate: float = Field(0.05, gt=0, le=1)
    depth: int = Field(6, ge=1, le=16)
    l2_leaf_reg: float = Field(3.0, ge=0)
    #: features CatBoost treats as categories (names; empty: the spec's text features)
    cat_features: tuple[str, ...] = ()
    class_weight: Literal["balanced"] | None = None
    #: binary: weight of the positive class (``imbalance: scale_pos_weight``)
    scale_pos_weight: float | None = Field(None, gt=0)
    #: quantile task: the quantile to predict
    alpha: float = Field(0.5, gt=0, lt=1)
    early_stopping_rounds: int | None = Field(50, ge=1)
    random_state: int = 0
    n_jobs: int = 2


class CatBoostModel(BoosterPlugin):
    """Ordered boosting on oblivious trees; early stopping on the validation set."""

    name: ClassVar[str] = "catboost"
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "multiclass", "regression", "quantile"})
    Params: ClassVar[type[BaseModel]] = CatBoostParams

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "depth": trial.suggest_int("depth", 3, 8),
            "l2_leaf_reg": trial.suggest_float("l2_leaf_reg", 0.1, 30.0, log=True),
        }

    def _cat_index(self) -> list[int]:
        found = getattr(self, "feature_names_in_", None)
        names = [str(n) for n in found] if found is not None else []
        return [names.index(c) for c in self.cat_features if c in names]

    def _pool(self, X: np.ndarray, y: Any = None, weight: Any = None) -> Any:
        """X as a CatBoost Pool: the categorical columns as integer codes."""
        from catboost import Pool

        cats = self._cat_index()
        if not cats:
            return Pool(X, label=y, weight=weight)
        import pandas as pd

        frame = pd.DataFrame(X)
        for i in cats:
            frame[i] = np.where(np.isnan(X[:, i]), MISSING_CATEGORY, X[:, i]).astype("int64")
        return Pool(frame, label=y, weight=weight, cat_features=cats)

    def _build(self, n_classes: int | None) -> Any:
        import catboost as cb

        common: dict[str, Any] = dict(
            iterations=self.n_estimators,
            learning_rate=self.learning_rate,
            depth=self.depth,
            l2_leaf_reg=self.l2_leaf_reg,
            random_seed=self.random_state,
            thread_count=self.n_jobs,
            allow_writing_files=False,
            verbose=False,
        )
        if n_classes is not None:
            if self.class_weight == "balanced":
                common["auto_class_weights"] = "Balanced"
            elif isinstance(self.class_weight, dict):  # scikit-learn's form, set_params
                common["class_weights"] = {
                    i: float(self.class_weight.get(c, 1.0)) for i, c in enumerate(self.classes_)
                }
            if n_classes == 2 and self.scale_pos_weight is not None:
                common["scale_pos_weight"] = self.scale_pos_weight
            if n_classes > 2:
                common["loss_function"] = "MultiClass"
            return cb.CatBoostClassifier(**common)
        if self.task == "quantile":
            return cb.CatBoostRegressor(loss_function=f"Quantile:alpha={self.alpha}", **common)
        return cb.CatBoostRegressor(**common)

    def _fit_estimator(self, estimator: Any, X: np.ndarray, y: np.ndarray, kwargs: dict) -> Any:
        if len(X) < 2:
            raise ValueError(f"catboost needs at least 2 samples; got n_samples={len(X)}")
        weight = kwargs.pop("sample_weight", None)
        if weight is not None:  # a wrong shape is a ValueError, as scikit-learn's checks want
            from sklearn.utils.validation import _check_sample_weight

            weight = _check_sample_weight(weight, X)
        eval_set = kwargs.pop("eval_set", None)
        if eval_set is not None:
            kwargs["eval_set"] = self._pool(*eval_set)
        from catboost import CatBoostError

        try:
            return estimator.fit(self._pool(X, y, weight), **kwargs)
        except CatBoostError as exc:  # e.g. one row, or every feature constant
            raise ValueError(f"catboost cannot fit these rows: {exc}") from exc

    def _eval_kwargs(
        self, estimator: Any, X_valid: np.ndarray, y_valid: np.ndarray
    ) -> dict[str, Any]:
        if not self.early_stopping_rounds:
            return {}
        return {
            "eval_set": (X_valid, y_valid),
            "early_stopping_rounds": self.early_stopping_rounds,
            "use_best_model": True,
        }

    def _continue_kwargs(self, parent: ModelPlugin) -> dict[str, Any]:
        return {"init_model": parent.estimator_}

    def _best_iteration(self) -> int:
        best = self.estimator_.get_best_iteration()
        return int(best + 1 if best is not None else self.estimator_.tree_count_)

    def _gains(self) -> np.ndarray:
        return np.asarray(self.estimator_.get_feature_importance(), dtype=float)

    @available_if(_is_classifier_task)
    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        proba = self.estimator_.predict_proba(self._pool(self._check_X(X, reset=False)))
        return np.asarray(proba).reshape(len(proba), -1)

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        if _is_classifier_task(self):
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        pool = self._pool(self._check_X(X, reset=False))
        return np.asarray(self.estimator_.predict(pool), dtype="float64")

    def contributions(self, X: Any) -> np.ndarray:
        """CatBoost's own SHAP values: one column per feature plus the bias last, in
        raw-score units (log-odds for binary)."""
        from catboost import EFstrType

        check_is_fitted(self, "estimator_")
        pool = self._pool(self._check_X(X, reset=False))
        return np.asarray(self.estimator_.get_feature_importance(pool, type=EFstrType.ShapValues))

"""Ensembles of other plugins: stacking on out-of-fold predictions, and blending on validation.

Both take any registered plugins as members (``members``, with ``member_params`` per name)
and work for classification (on the positive-class probability) and regression.

* **stacking**: the rows (in time order, as training sets are) are cut into ``folds + 1``
  consecutive blocks; each member is fitted on blocks 0..k and predicts block k+1, so every
  out-of-fold prediction comes from a model that saw only earlier rows. A meta-learner
  (logistic regression on the members' logits, or least squares for regression) is fitted on
  those predictions; then every member is refitted on all rows.
* **blending**: members are fitted on the training rows; non-negative weights summing to one
  are chosen on the validation set (``eval_set``: log-loss or squared error); without one,
  the weights are equal.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models_py.plugins.base import ModelPlugin


def _members(names: tuple[str, ...], params: dict[str, dict[str, Any]] | None, task: str) -> list:
    from models_py.plugins import get_plugin

    out = []
    for name in names:
        plugin = get_plugin(name)
        if plugin.name in ("stacking", "blending"):
            raise ValueError("an ensemble's members must be plain plugins, not ensembles")
        out.append(plugin.from_params(task, dict((params or {}).get(name, {}))))
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


class _Ensemble:
    """The fitted library-side object behind both plugins."""

    def __init__(self, members: list, classify: bool) -> None:
        self.members = members
        self.classify = classify

    def combine(self, out: np.ndarray) -> np.ndarray:
        """The members' outputs (one column each) → the ensemble's prediction."""
        raise NotImplementedError

    def outputs(self, members: list, X: np.ndarray) -> np.ndarray:
        if self.classify:
            return np.column_stack([m.predict_proba(X)[:, 1] for m in members])
        return np.column_stack([m.predict(X) for m in members])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = self.combine(self.outputs(self.members, X))
        return np.column_stack([1 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.combine(self.outputs(self.members, X))


class _BinaryOrRegression(ModelPlugin):
    """Ensembles combine one probability (or one value) per member: two classes at most."""

    members: tuple[str, ...]
    member_params: dict[str, dict[str, Any]] | None

    def _new_members(self, n_classes: int | None) -> list:
        """The unfitted members for this task (refusing more than two classes)."""
        if n_classes is not None and n_classes != 2:
            raise ValueError(
                f"Only binary classification is supported by {self.name} (and regression)."
            )
        return _members(self.members, self.member_params, self.task)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        if tags.classifier_tags is not None:
            tags.classifier_tags.multi_class = False
        return tags


class BlendingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    members: tuple[str, ...] = ("logreg", "lightgbm")
    #: parameters per member name (as in a spec's ``params`` for that plugin)
    member_params: dict[str, dict[str, Any]] | None = None


class StackingParams(BlendingParams):
    #: consecutive blocks for the out-of-fold predictions (``folds`` predicted blocks)
    folds: int = Field(3, ge=2)
    #: inverse regularisation of the logistic meta-learner (classification)
    meta_C: float = Field(1.0, gt=0)


class StackingModel(_BinaryOrRegression):
    """Members' out-of-fold predictions (forward in time), combined by a meta-learner."""

    name: ClassVar[str] = "stacking"
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "regression"})
    Params: ClassVar[type[BaseModel]] = StackingParams

    def _build(self, n_classes: int | None) -> Any:
        members = self._new_members(n_classes)
        return _StackingFit(members, n_classes is not None, self.folds, self.meta_C)


class _StackingFit(_Ensemble):
    def __init__(self, members: list, classify: bool, folds: int, meta_C: float) -> None:
        super().__init__(members, classify)
        self.folds, self.meta_C = folds, meta_C

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: Any = None) -> _StackingFit:
        from sklearn.base import clone
        from sklearn.linear_model import LinearRegression, LogisticRegression

        blocks = np.array_split(np.arange(len(X)), self.folds + 1)
        predicted, outputs = [], []
        for k in range(1, len(blocks)):
            seen, block = np.concatenate(blocks[:k]), blocks[k]
            if self.classify and len(np.unique(y[seen])) < 2:
                continue  # nothing to learn from one class: this block gets no prediction
            fold_members = [clone(m).fit(X[seen], y[seen]) for m in self.members]
            predicted.append(block)
            outputs.append(self.outputs(fold_members, X[block]))
        self.meta_: Any = None
        if predicted:
            oof, target = np.vstack(outputs), y[np.concatenate(predicted)]
            if not self.classify:
                self.meta_ = LinearRegression().fit(oof, target)
            elif len(np.unique(target)) == 2:
                self.meta_ = LogisticRegression(C=self.meta_C).fit(_logit(oof), target)
        # meta_ None (too few rows of both classes to stack on): the members are averaged
        self.members = [m.fit(X, y, sample_weight=sample_weight) for m in self.members]
        return self

    def combine(self, out: np.ndarray) -> np.ndarray:
        if self.meta_ is None:
            return out.mean(axis=1)
        if self.classify:
            return self.meta_.predict_proba(_logit(out))[:, 1]
        return self.meta_.predict(out)


class BlendingModel(_BinaryOrRegression):
    """A weighted average of members, the weights optimised on the validation set."""

    name: ClassVar[str] = "blending"
    tasks: ClassVar[frozenset[str]] = frozenset({"binary", "regression"})
    Params: ClassVar[type[BaseModel]] = BlendingParams

    def _build(self, n_classes: int | None) -> Any:
        return _BlendingFit(self._new_members(n_classes), n_classes is not None)

    def _eval_kwargs(
        self, estimator: Any, X_valid: np.ndarray, y_valid: np.ndarray
    ) -> dict[str, Any]:
        return {"eval_set": (X_valid, y_valid)}

    @property
    def weights(self) -> dict[str, float]:
        """Each member's weight in the blend (after fitting)."""
        return dict(zip(self.members, map(float, self.estimator_.weights_), strict=True))


class _BlendingFit(_Ensemble):
    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: Any = None, eval_set: Any = None
    ) -> _BlendingFit:
        from scipy.optimize import minimize

        self.members = [m.fit(X, y, sample_weight=sample_weight) for m in self.members]
        n = len(self.members)
        weights = np.full(n, 1 / n)
        if eval_set is not None and n > 1:
            out, target = self.outputs(self.members, eval_set[0]), np.asarray(eval_set[1])

            def loss(w: np.ndarray) -> float:
                p = out @ w
                if self.classify:
                    p = np.clip(p, 1e-9, 1 - 1e-9)
                    return float(-np.mean(target * np.log(p) + (1 - target) * np.log(1 - p)))
                return float(np.mean((target - p) ** 2))

            found = minimize(
                loss,
                weights,
                method="SLSQP",
                bounds=[(0.0, 1.0)] * n,
                constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - 1.0}],
            )
            if found.success:
                weights = np.clip(found.x, 0, 1) / np.clip(found.x, 0, 1).sum()
        self.weights_ = weights
        return self

    def combine(self, out: np.ndarray) -> np.ndarray:
        return out @ self.weights_

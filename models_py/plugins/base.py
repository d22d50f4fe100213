"""The model plugin contract: a scikit-learn estimator that also declares its parameters.

A plugin follows scikit-learn's estimator rules (``__init__`` only stores parameters, ``fit``
returns ``self``, learned state ends in ``_``) so it works with scikit-learn's tools (clone,
pipelines, ``check_estimator``), and adds what featurestack needs to train it without knowing
it: the tasks it supports, a pydantic model of its parameters (validated when a spec names
them) and an Optuna search space.

A plugin declares ``Params`` once; the constructor's signature (what ``get_params`` and
``clone`` read) is derived from it, so the two cannot disagree. It implements ``_build``, the
unfitted library estimator for the task, and optionally ``_eval_kwargs`` for early stopping.
Everything else (input validation, class encoding, classifier or regressor behaviour by task)
is shared here.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ValidationError
from sklearn.base import BaseEstimator
from sklearn.utils._tags import ClassifierTags, RegressorTags, Tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from featurestack.core.errors import UsageError

Task = Literal["binary", "multiclass", "regression", "quantile"]
CLASSIFICATION = frozenset({"binary", "multiclass"})


class PluginParamsError(UsageError):
    """A spec's parameters do not fit the plugin's ``Params`` model."""


def _is_classifier_task(self: ModelPlugin) -> bool:
    return self.task in CLASSIFICATION


def _derive_init(cls: type[ModelPlugin]) -> None:
    """Give ``cls`` an ``__init__`` taking ``task`` and every field of ``cls.Params``."""
    fields = {name: f.default for name, f in cls.Params.model_fields.items()}

    def __init__(self: ModelPlugin, task: str = "binary", **params: Any) -> None:
        unknown = set(params) - set(fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected parameter(s) {sorted(unknown)}")
        self.task = task
        for name, default in fields.items():
            setattr(self, name, params.get(name, default))

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    __init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("self", kind),
            inspect.Parameter("task", kind, default="binary"),
            *(inspect.Parameter(n, kind, default=d) for n, d in fields.items()),
        ]
    )
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = __init__  # type: ignore[method-assign,assignment]


class ModelPlugin(BaseEstimator):
    """Base class of model plugins; subclasses set the class attributes and ``_build``."""

    #: Name used in model specs and the registry.
    name: ClassVar[str]
    #: Tasks the plugin can be trained for.
    tasks: ClassVar[frozenset[str]]
    #: Pydantic model of the constructor parameters (defaults = the plugin's defaults).
    Params: ClassVar[type[BaseModel]]
    #: Whether the library estimator takes NaN in X itself (else it must be imputed).
    allow_nan: ClassVar[bool] = True

    task: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Params" in cls.__dict__:
            _derive_init(cls)

    # -- what a plugin implements ------------------------------------------------------------

    def _build(self, n_classes: int | None) -> Any:
        """The unfitted library estimator for ``self.task`` (``n_classes`` for classifiers)."""
        raise NotImplementedError

    def _eval_kwargs(
        self, estimator: Any, X_valid: np.ndarray, y_valid: np.ndarray
    ) -> dict[str, Any]:
        """Extra ``fit`` arguments that use a validation set (early stopping); none by default.
        May also configure ``estimator``, the unfitted library estimator."""
        return {}

    def _continue_kwargs(self, parent: ModelPlugin) -> dict[str, Any]:
        """``fit`` arguments that continue from a fitted ``parent`` (warm start)."""
        raise ValueError(f"plugin {self.name!r} cannot warm-start (boosters can)")

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """Parameters for one Optuna trial (``trial.suggest_*``); empty = nothing to tune."""
        return {}

    # -- shared --------------------------------------------------------------------------------

    @classmethod
    def from_params(cls, task: str, params: dict[str, Any]) -> ModelPlugin:
        """Validate ``params`` against :attr:`Params` and build an unfitted estimator."""
        if task not in cls.tasks:
            raise ValueError(
                f"plugin {cls.name!r} does not support task {task!r} "
                f"(it supports: {', '.join(sorted(cls.tasks))})"
            )
        try:
            checked = cls.Params(**params).model_dump()
        except ValidationError as err:
            raise PluginParamsError(f"invalid parameters for plugin {cls.name!r}:\n{err}") from err
        return cls(task=task, **checked)

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self.allow_nan
        if _is_classifier_task(self):
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags()
        else:
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
        return tags

    def _check_X(self, X: Any, reset: bool) -> np.ndarray:
        finite: bool | str = "allow-nan" if self.allow_nan else True
        return validate_data(self, X, reset=reset, ensure_all_finite=finite, dtype="numeric")

    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        eval_set: tuple[Any, Any] | None = None,
        init_model: Any = None,
    ) -> ModelPlugin:
        """Fit on (X, y); ``eval_set=(X_valid, y_valid)`` enables early stopping where the
        library has it; ``init_model`` (a fitted plugin of the same class) continues from it
        where the library can (boosters: more trees on top of the parent's)."""
        if self.task not in self.tasks:
            raise ValueError(f"plugin {self.name!r} does not support task {self.task!r}")
        finite: bool | str = "allow-nan" if self.allow_nan else True
        classify = _is_classifier_task(self)
        X, y = validate_data(
            self, X, y, ensure_all_finite=finite, dtype="numeric", y_numeric=not classify
        )
        n_classes = None
        if classify:
            check_classification_targets(y)
            self.classes_, y = np.unique(y, return_inverse=True)
            n_classes = len(self.classes_)
            if n_classes < 2:
                raise ValueError(
                    f"{self.name} needs samples of at least 2 classes in the data; got 1 class"
                )
        if sample_weight is not None and not np.any(np.asarray(sample_weight)):
            raise ValueError("Sample weights must contain at least one non-zero number.")
        estimator = self._build(n_classes)
        kwargs: dict[str, Any] = {}
        if eval_set is not None:
            X_valid = self._check_X(eval_set[0], reset=False)
            y_valid = np.asarray(eval_set[1])
            if classify:
                y_valid = np.searchsorted(self.classes_, y_valid)
            kwargs = self._eval_kwargs(estimator, X_valid, y_valid)
        if sample_weight is not None:
            kwargs["sample_weight"] = np.asarray(sample_weight, dtype="float64")
        if init_model is not None:
            if type(init_model) is not type(self):
                raise ValueError(
                    f"warm start needs a {type(self).__name__} to continue from, "
                    f"not a {type(init_model).__name__}"
                )
            if init_model.n_features_in_ != self.n_features_in_:
                raise ValueError(
                    f"warm start: the parent model has {init_model.n_features_in_} features, "
                    f"this training set {self.n_features_in_}"
                )
            kwargs.update(self._continue_kwargs(init_model))
        self.estimator_ = self._fit_estimator(estimator, X, y, kwargs)
        final = getattr(self.estimator_, "steps", [(None, self.estimator_)])[-1][1]
        if hasattr(final, "n_iter_"):  # iterative solvers report how far they went
            self.n_iter_ = final.n_iter_
        return self

    def _fit_estimator(self, estimator: Any, X: np.ndarray, y: np.ndarray, kwargs: dict) -> Any:
        """Fit the library estimator (a pipeline plugin routes ``sample_weight`` here)."""
        return estimator.fit(X, y, **kwargs)

    @available_if(_is_classifier_task)
    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        proba = np.asarray(self.estimator_.predict_proba(self._check_X(X, reset=False)))
        return proba.reshape(len(proba), -1)

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        if _is_classifier_task(self):
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        return np.asarray(self.estimator_.predict(self._check_X(X, reset=False)), dtype="float64")

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy for a classification task, R² otherwise (scikit-learn's conventions)."""
        from sklearn.metrics import accuracy_score, r2_score

        metric = accuracy_score if _is_classifier_task(self) else r2_score
        return float(metric(y, self.predict(X), sample_weight=sample_weight))

    @property
    def feature_names(self) -> list[str]:
        check_is_fitted(self, "estimator_")
        names = getattr(self, "feature_names_in_", None)
        return list(names) if names is not None else [f"x{i}" for i in range(self.n_features_in_)]

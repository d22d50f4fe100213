"""The model plugin contract: a scikit-learn estimator that also declares its parameters.

A plugin follows scikit-learn's estimator rules (``__init__`` only stores parameters, ``fit``
returns ``self``, learned state ends in ``_``) so it works with scikit-learn's tools, and adds
what featurestack needs to train it without knowing it: the tasks it supports, a pydantic
model of its parameters (validated when a spec names them) and an Optuna search space.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel
from sklearn.base import BaseEstimator

Task = Literal["binary", "multiclass", "regression", "quantile"]


class ModelPlugin(BaseEstimator):
    """Base class of model plugins; subclasses set the class attributes below."""

    #: Name used in model specs and the registry.
    name: ClassVar[str]
    #: Tasks the plugin can be trained for.
    tasks: ClassVar[frozenset[str]]
    #: Pydantic model of the constructor parameters (defaults = the plugin's defaults).
    Params: ClassVar[type[BaseModel]]

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """Parameters for one Optuna trial (``trial.suggest_*``); empty = nothing to tune."""
        return {}

    @classmethod
    def from_params(cls, task: str, params: dict[str, Any]) -> ModelPlugin:
        """Validate ``params`` against :attr:`Params` and build an unfitted estimator."""
        if task not in cls.tasks:
            raise ValueError(
                f"plugin {cls.name!r} does not support task {task!r} "
                f"(it supports: {', '.join(sorted(cls.tasks))})"
            )
        checked = cls.Params(**params).model_dump()
        return cls(task=task, **checked)

"""The plugin registry: built-ins by name, third-party plugins by entry point.

A package adds a plugin by declaring an entry point in the group ``featurestack.models``
whose object is a :class:`~models_py.plugins.base.ModelPlugin` subclass.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from models_py.plugins.base import ModelPlugin

ENTRY_POINT_GROUP = "featurestack.models"

_BUILTINS = {
    "logreg": "models_py.plugins.sklearn_models:LogisticRegressionModel",
    "random_forest": "models_py.plugins.sklearn_models:RandomForestModel",
    "mlp": "models_py.plugins.sklearn_models:MLPModel",
    "xgboost": "models_py.plugins.xgboost:XGBoostModel",
    "lightgbm": "models_py.plugins.lightgbm:LightGBMModel",
    "stacking": "models_py.plugins.ensembles:StackingModel",
    "blending": "models_py.plugins.ensembles:BlendingModel",
}


def _load(target: str) -> type[ModelPlugin]:
    import importlib

    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def available() -> list[str]:
    """Names of every plugin that can be used in a spec."""
    names = set(_BUILTINS)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def get_plugin(name: str) -> type[ModelPlugin]:
    """The plugin class registered under ``name``."""
    if name in _BUILTINS:
        return _load(_BUILTINS[name])
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            plugin = ep.load()
            if not (isinstance(plugin, type) and issubclass(plugin, ModelPlugin)):
                raise TypeError(f"entry point {ep.value} is not a ModelPlugin subclass")
            return plugin
    raise KeyError(f"unknown model plugin {name!r}; available: {', '.join(available())}")

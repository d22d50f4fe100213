"""The plugin registry: every plugin, built-in or third-party, is found by entry point.

A package adds a plugin by declaring an entry point in the group ``featurestack.models``
whose object is a :class:`~models_py.plugins.base.ModelPlugin` subclass; featurestack's own
plugins are declared the same way in its pyproject.toml (simonw/llm registers its defaults
through its own plugin hooks likewise). The entry points are read once per import path (a
package installed into a folder put on ``sys.path`` later is found), and a plugin is loaded
only when a spec names it.
"""

from __future__ import annotations

import sys
from functools import cache, lru_cache
from importlib.metadata import EntryPoint, entry_points

from featurestack.core.errors import NotFound, UsageError
from models_py.plugins.base import ModelPlugin

ENTRY_POINT_GROUP = "featurestack.models"


class UnknownPlugin(NotFound, KeyError):
    """No plugin of that name is installed (a ``KeyError`` too, as a registry lookup)."""

    __str__ = Exception.__str__  # the message, not KeyError's repr of it


@lru_cache(maxsize=4)
def _registry(path: tuple[str, ...]) -> dict[str, EntryPoint]:
    """Entry points of the group by name, for one state of ``sys.path``."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)  # the first distribution on the path wins, as imports do
    return found


def _entry_points() -> dict[str, EntryPoint]:
    return _registry(tuple(sys.path))


def available() -> list[str]:
    """Names of every plugin that can be used in a spec."""
    return sorted(_entry_points())


@cache
def _load(ep: EntryPoint) -> type[ModelPlugin]:
    plugin = ep.load()
    if not (isinstance(plugin, type) and issubclass(plugin, ModelPlugin)):
        raise UsageError(
            f"entry point {ep.name} = {ep.value} (group {ENTRY_POINT_GROUP}) is not a "
            "ModelPlugin subclass; point it at your plugin class"
        )
    if plugin.name != ep.name:
        raise UsageError(
            f"entry point {ep.name} = {ep.value} loads a plugin named {plugin.name!r}: "
            "the entry point's name must equal the plugin's `name`; rename one of them"
        )
    return plugin


def get_plugin(name: str) -> type[ModelPlugin]:
    """The plugin class registered under ``name``."""
    ep = _entry_points().get(name)
    if ep is None:
        raise UnknownPlugin(
            f"unknown model plugin {name!r}; available: {', '.join(available())} (a plugin "
            'of another package is found once it is installed: README "Model plugins")'
        )
    return _load(ep)

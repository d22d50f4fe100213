"""Hot reload: the model server follows the registry's aliases without a restart.

The server polls MLflow every ``reload_seconds`` (serve config; one alias read per served model
per poll, so the load on the registry is bounded whatever the traffic). When ``champion`` or
``challenger`` points to another version than the one served, that version is loaded in a
worker thread while the old one keeps answering, then the model's :class:`ServedModel` is
replaced in one dict assignment. A request takes its ``ServedModel`` once, at its start, so it
is scored by the old or the new pair, never by a mix, and no request fails during the swap.

A version that fails to load (missing artifact, a feature service it no longer matches, keys
that differ from the champion's) leaves the old one serving; the failure is counted
(``featurestack_reload_errors_total``), logged, shown on ``/models`` and not retried until the
alias moves again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from featurestack.core.settings import Settings
from models_py.contract import CHALLENGER, CHAMPION
from models_py.server_metrics import Metrics
from models_py.serving import (
    ModelServing,
    ServeConfig,
    Served,
    ServedModel,
    load_online,
    load_version,
)

logger = logging.getLogger(__name__)

ONLINE = "online"


@dataclass
class Change:
    """One poll's outcome for one model: the roles swapped."""

    model: str
    roles: list[str] = field(default_factory=list)


def publish_versions(metrics: Metrics, served: dict[str, ServedModel]) -> None:
    """What each role serves (``featurestack_served_version``) and the blend weights."""
    metrics.served_versions.clear()
    metrics.blend_weights.clear()
    for name, model in served.items():
        metrics.served_versions[(name, CHAMPION)] = model.champion.version
        if model.challenger is not None:
            metrics.served_versions[(name, CHALLENGER)] = model.challenger.version
        if model.online is not None:
            metrics.served_versions[(name, ONLINE)] = model.online.version
            weight = model.online.weight
            metrics.blend_weights[name] = {"batch": round(1 - weight, 6), "online": weight}


class RegistryWatcher:
    """Compares the registry's aliases with what is served and swaps what changed."""

    def __init__(
        self,
        settings: Settings,
        served: dict[str, ServedModel],
        metrics: Metrics,
        config: ServeConfig | None = None,
    ) -> None:
        self.settings, self.served, self.metrics = settings, served, metrics
        self.config = config
        #: (model, role, version) that failed to load: not retried until the alias moves
        self.failed: dict[tuple[str, str, str], str] = {}
        self.last_poll: str | None = None
        self.polls = 0

    def _aliases(self, name: str) -> dict[str, str]:
        import mlflow

        registered = mlflow.MlflowClient().get_registered_model(name)
        return {k: str(v) for k, v in (registered.aliases or {}).items()}

    def _load(self, model: ServedModel, role: str, version: str) -> Served | None:
        """The version in ``role``, or None (the failure counted and remembered)."""
        key = (model.name, role, version)
        if key in self.failed:
            return None
        try:
            loaded = load_version(
                self.settings, model.champion.store, model.name, role, version=version
            )
            if role == CHALLENGER and set(loaded.keys) != set(model.champion.keys):
                raise ValueError(
                    f"the challenger v{version} is keyed by {loaded.keys}, the champion by "
                    f"{model.champion.keys}; they cannot share traffic"
                )
        except Exception as exc:  # any failure: the old version keeps serving
            message = f"{type(exc).__name__}: {exc}"
            self.failed[key] = message
            self.metrics.reloaded(model.name, role, ok=False)
            logger.error(
                "%s: %s v%s failed to load, v%s keeps serving: %s",
                model.name,
                role,
                version,
                (
                    model.champion if role == CHAMPION else model.challenger or model.champion
                ).version,
                message,
            )
            return None
        self.metrics.reloaded(model.name, role, ok=True)
        logger.info("%s: %s is now v%s", model.name, role, version)
        return loaded

    def _online_version(self, name: str) -> str | None:
        """The version behind ``<name>__online``'s ``current`` alias (None: no online model)."""
        import mlflow

        from models_py.online import CURRENT, online_name

        try:
            registered = mlflow.MlflowClient().get_registered_model(online_name(name))
        except mlflow.exceptions.MlflowException:
            return None
        version = (registered.aliases or {}).get(CURRENT)
        return None if version is None else str(version)

    def _serving(self, name: str, current: ServedModel) -> ModelServing:
        """A running deployment's mode and share (``featurestack deploy``), else the serve
        config's for the model."""
        from models_py.deployments import active

        try:
            deployment = active(self.settings, name)
        except ValueError as exc:  # an unreadable deployments file: serve as configured
            logger.error("%s", exc)
            deployment = None
        if deployment is not None:
            return ModelServing(
                challenger=deployment.mode,
                challenger_share=deployment.share if deployment.share is not None else 0.1,
            )
        return self.config.serving(name) if self.config is not None else current.serving

    def poll(self) -> list[Change]:
        """One look at the registry (blocking: the server runs it in a worker thread)."""
        changes = []
        for name, current in list(self.served.items()):
            aliases = self._aliases(name)
            champion, challenger = current.champion, current.challenger
            serving = self._serving(name, current)
            roles = ["serving"] if serving != current.serving else []
            wanted = aliases.get(CHAMPION)
            if wanted is not None and wanted != champion.version:
                new = self._load(current, CHAMPION, wanted)
                if new is not None:
                    champion = new
                    roles.append(CHAMPION)
            if serving.challenger == "off":
                if challenger is not None:
                    challenger = None
                    roles.append(CHALLENGER)
            else:
                wanted = aliases.get(CHALLENGER)
                if wanted is None or wanted == champion.version:
                    if challenger is not None:  # promoted or withdrawn: the champion serves alone
                        challenger = None
                        roles.append(CHALLENGER)
                elif challenger is None or wanted != challenger.version:
                    new = self._load(current, CHALLENGER, wanted)
                    if new is not None:
                        challenger = new
                        roles.append(CHALLENGER)
            online = current.online
            aliases_online = self._online_version(name)
            if aliases_online is not None and (online is None or online.version != wanted):
                key = (name, ONLINE, aliases_online)
                if key not in self.failed:
                    try:
                        online = load_online(self.settings, name)
                        roles.append(ONLINE)
                        self.metrics.reloaded(name, ONLINE, ok=True)
                    except Exception as exc:  # the previous online model keeps serving
                        self.failed[key] = f"{type(exc).__name__}: {exc}"
                        self.metrics.reloaded(name, ONLINE, ok=False)
                        logger.error("%s: online v%s failed to load: %s", name, aliases_online, exc)
            if roles:
                # one assignment: a request holds the old pair or the new one, never a mix
                self.served[name] = ServedModel(name, champion, challenger, serving, online=online)
                changes.append(Change(name, roles))
        publish_versions(self.metrics, self.served)
        self.polls += 1
        self.last_poll = datetime.now(UTC).isoformat(timespec="seconds")
        return changes

    def describe(self, name: str) -> list[dict[str, Any]]:
        """Versions of ``name`` that failed to load and why (for ``/models``)."""
        return [
            {"role": role, "version": version, "error": error}
            for (model, role, version), error in self.failed.items()
            if model == name
        ]

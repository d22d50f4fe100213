"""``featurestack reproduce RUN_ID``: refit a training run from what it logged and compare.

The run's spec is read back from its artifact, the training set rebuilt from Feast (the tags
say whether the published tables it read have changed since), tuning re-run in a scratch
study with the same seed, and the fit and evaluation repeated; nothing is logged or
registered.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featurestack.core.errors import NotFound
from featurestack.core.settings import Settings
from models_py import tracking
from models_py.contract import data_tag, spec_from_run, version_tag
from models_py.dataset import training_set
from models_py.fitting import fit_and_evaluate
from models_py.plugins import get_plugin
from models_py.run_log import read_paths
from models_py.tuning import tune


@dataclass
class Reproduction:
    run_id: str
    spec: str
    logged: dict[str, float]
    refitted: dict[str, float]
    data_changed: list[str]
    #: package versions and machine facts that differ from the run's ("xgboost 2.1 → 3.0")
    environment_changed: list[str] = field(default_factory=list)

    def compared(self) -> list[str]:
        """The logged metrics a reproduction compares (and prints): validation and holdout
        figures and the threshold, the ones the refit computes."""
        return sorted(
            k for k in self.logged if k.startswith(("holdout_", "validation_")) or k == "threshold"
        )

    def differs(self, key: str) -> bool:
        logged, new = self.logged[key], self.refitted.get(key, np.nan)
        if np.isnan(logged) and np.isnan(new):
            return False
        return not bool(np.isclose(logged, new, rtol=1e-9, atol=1e-12))

    @property
    def matches(self) -> bool:
        keys = self.compared()
        return bool(keys) and not any(self.differs(k) for k in keys)

    def summary(self) -> str:
        """Every compared metric, logged and refitted, a differing one marked: the verdict
        is about exactly the lines printed."""
        lines = [f"run {self.run_id} ({self.spec}): refitted from its logged spec"]
        if self.data_changed:
            lines.append(f"  published data changed since the run: {', '.join(self.data_changed)}")
        lines += [f"  warning: environment differs: {d}" for d in self.environment_changed]
        differing = []
        for k in self.compared():
            new = self.refitted.get(k, float("nan"))
            mark = "  ≠" if self.differs(k) else ""
            if mark:
                differing.append(k)
            lines.append(f"  {k:<32} logged {self.logged[k]:.6f}   refitted {new:.6f}{mark}")
        if self.matches:
            lines.append("  metrics match")
        else:
            lines.append(f"  metrics DIFFER: {', '.join(differing) or 'nothing to compare'}")
        return "\n".join(lines)


def reproduce(settings: Settings, run_id: str) -> Reproduction:
    """Rebuild a run's training set from Feast and refit its logged spec (tuning included, in
    a scratch study with the same seed); compare the metrics. Nothing is logged or registered.
    """
    import mlflow

    tracking.configure(settings)
    try:
        run = mlflow.get_run(run_id)
    except mlflow.exceptions.MlflowException as exc:
        raise NotFound(
            f"no run {run_id} in {settings.mlflow_tracking_uri}; `featurestack models` lists "
            "the versions and their runs"
        ) from exc
    spec = spec_from_run(run)
    data = training_set(settings, spec)
    info, segments = data.info, data.segments
    changed = []
    for path in read_paths(settings, spec, info):
        logged = run.data.tags.get(data_tag(Path(path).stem))
        if logged and logged != tracking.file_sha256(path):
            changed.append(Path(path).name)
    snapshot = run.data.tags.get("featurestack.snapshot")
    if snapshot and not (settings.published_dir / "snapshots" / snapshot).is_dir():
        changed.append(f"snapshot {snapshot} (the run's dataset version) is no longer kept")
    plugin = get_plugin(spec.plugin)
    best = None
    if spec.tuning is not None:
        with tempfile.TemporaryDirectory() as scratch:
            storage = f"sqlite:///{Path(scratch) / 'study.db'}"
            best = tune(spec, plugin, segments["train"], info.feature_columns, storage).best_params
    _, metrics = fit_and_evaluate(spec, plugin, segments, info.feature_columns, best)
    return Reproduction(
        run_id,
        spec.name,
        dict(run.data.metrics),
        metrics,
        sorted(changed),
        environment_changes(run.data.tags),
    )


def environment_changes(tags: dict[str, str]) -> list[str]:
    """Each package version and machine fact the run recorded that differs here."""
    now = {version_tag(k): v for k, v in tracking.package_versions().items()}
    now.update({f"featurestack.env.{k}": v for k, v in tracking.environment().items()})
    out = []
    for key, value in sorted(now.items()):
        logged = tags.get(key)
        if logged is not None and logged != value:
            name = key.removeprefix("featurestack.version.").removeprefix("featurestack.env.")
            out.append(f"{name} {logged} → {value}")
    return out

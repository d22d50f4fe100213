"""``featurestack reproduce RUN_ID``: refit a training run from what it logged and compare.

The run's spec is read back from its artifact, the training set rebuilt from Feast (the tags
say whether the published tables it read have changed since), tuning re-run in a scratch
study with the same seed, and the fit and evaluation repeated; nothing is logged or
registered.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featurestack.core.errors import NotFound
from featurestack.core.settings import Settings
from models_py import tracking
from models_py.contract import data_tag, spec_from_run
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

    @property
    def matches(self) -> bool:
        keys = [k for k in self.logged if k.startswith(("holdout_", "validation_"))]
        return bool(keys) and all(
            np.isclose(self.logged[k], self.refitted.get(k, np.nan), rtol=1e-9, atol=1e-12)
            or (np.isnan(self.logged[k]) and np.isnan(self.refitted.get(k, np.nan)))
            for k in keys
        )

    def summary(self) -> str:
        lines = [f"run {self.run_id} ({self.spec}): refitted from its logged spec"]
        if self.data_changed:
            lines.append(f"  published data changed since the run: {', '.join(self.data_changed)}")
        for k in sorted(self.logged):
            if k.startswith("holdout_"):
                new = self.refitted.get(k, float("nan"))
                lines.append(f"  {k:<28} logged {self.logged[k]:.6f}   refitted {new:.6f}")
        lines.append("  metrics match" if self.matches else "  metrics DIFFER")
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
    plugin = get_plugin(spec.plugin)
    best = None
    if spec.tuning is not None:
        with tempfile.TemporaryDirectory() as scratch:
            storage = f"sqlite:///{Path(scratch) / 'study.db'}"
            best = tune(spec, plugin, segments["train"], info.feature_columns, storage).best_params
    _, metrics = fit_and_evaluate(spec, plugin, segments, info.feature_columns, best)
    return Reproduction(run_id, spec.name, dict(run.data.metrics), metrics, sorted(changed))

"""MLflow plumbing: the tracking store, the experiment, lineage facts."""

from __future__ import annotations

import hashlib
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from featurestack.settings import EXPERIMENT_NAME, REPO_ROOT, Settings

LINEAGE_PACKAGES = (
    "feast",
    "dbt-core",
    "dbt-duckdb",
    "duckdb",
    "great-expectations",
    "mlflow",
    "lightgbm",
    "scikit-learn",
    "pandas",
    "numpy",
    "pyarrow",
)


def configure(settings: Settings) -> str:
    """Point MLflow at the settings' store; return the experiment id (created if needed).

    A local store keeps artifacts in the data folder beside the database rather than in
    ./mlruns of whatever directory the command ran in.
    """
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        location = None
        if settings.mlflow_tracking_uri.startswith(("sqlite:", "file:")) or "://" not in (
            settings.mlflow_tracking_uri
        ):
            settings.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
            location = settings.mlflow_artifacts.as_uri()
        return mlflow.create_experiment(EXPERIMENT_NAME, artifact_location=location)
    return experiment.experiment_id


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_commit() -> str:
    """HEAD of the checkout, with ``-dirty`` if it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    out = {}
    for name in LINEAGE_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out

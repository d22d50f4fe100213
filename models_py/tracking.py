"""MLflow plumbing: the tracking store, the experiment, lineage facts."""

from __future__ import annotations

import hashlib
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from featurestack.core.settings import EXPERIMENT_NAME, Settings

LINEAGE_PACKAGES = (
    "feast",
    "dbt-core",
    "dbt-duckdb",
    "duckdb",
    "great-expectations",
    "mlflow",
    "lightgbm",
    "xgboost",
    "catboost",
    "scikit-learn",
    "imbalanced-learn",
    "optuna",
    "scipy",
    "pandas",
    "numpy",
    "pyarrow",
    "cloudpickle",
    "pydantic",
)


#: MLflow's HTTP client retries 7 times with exponential backoff and waits 120 s per request
#: by default: minutes before a dead tracking server is reported. Ours, unless set otherwise.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def configure(settings: Settings) -> str:
    """Point MLflow at the settings' store; return the experiment id (created if needed).

    The store is probed first, within the settings' time budget: an unreachable one raises
    ServiceUnavailable before anything is logged or registered (MLflow's own SQL store retries
    a dead database for minutes). A local store keeps artifacts in the data folder beside the
    database rather than in ./mlruns of whatever directory the command ran in; the scale
    profile's experiment keeps them at FEATURESTACK_ARTIFACTS_URI.
    """
    import os

    import mlflow

    from featurestack.infra import services

    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    services.require_tracking(settings)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        location = None
        if (
            settings.artifacts_uri
            or settings.mlflow_tracking_uri.startswith(("sqlite:", "file:"))
            or "://" not in settings.mlflow_tracking_uri
        ):
            location = settings.artifact_location
            if location.startswith("file:"):
                Path(location.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
        return mlflow.create_experiment(EXPERIMENT_NAME, artifact_location=location)
    return experiment.experiment_id


def file_sha256(path: str | Path) -> str:
    """Of a file's bytes; of a folder (a published table's month files): of each file's name
    and bytes, in name order, so the same data gives the same digest in any snapshot."""
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(path.resolve().glob("*.parquet")) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.name.encode() + b"\0")
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def git_commit(folder: Path) -> str:
    """HEAD of the project's checkout, with ``-dirty`` if it has uncommitted changes
    (``unknown`` when the project is not in git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
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


def environment() -> dict[str, str]:
    """The machine a run trained on: platform, Python, CPU and memory (``reproduce`` warns
    when they differ)."""
    import os
    import platform

    out = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": str(os.cpu_count() or 0),
        "cpu": platform.processor() or _cpu_model(),
    }
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        out["memory_gb"] = f"{pages * size / 2**30:.1f}"
    except (ValueError, OSError, AttributeError):
        out["memory_gb"] = "unknown"
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"

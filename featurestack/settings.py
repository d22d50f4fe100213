"""Where featurestack keeps its state, resolved once from the environment.

Every stage (dbt, the gate, Feast, training) reads its locations from here so that one
variable, ``FEATURESTACK_DATA_DIR``, moves all generated state at once. Nothing is created
at import time: callers ask for a :class:`Settings` and create folders when they write.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The checkout this package was installed from (editable install): dbt_project/, feature_repo/ …
REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
FEATURE_REPO_DIR = REPO_ROOT / "feature_repo"
SPECS_DIR = REPO_ROOT / "models_py" / "specs"

#: The demo's MLflow experiment; one per data folder.
EXPERIMENT_NAME = "featurestack"


@dataclass(frozen=True)
class Settings:
    """Absolute locations of everything featurestack reads and writes."""

    data_dir: Path
    raw_dir: Path
    mlflow_tracking_uri: str

    @property
    def warehouse(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def published_dir(self) -> Path:
        return self.data_dir / "published"

    @property
    def feast_dir(self) -> Path:
        return self.data_dir / "feast"

    @property
    def mlflow_dir(self) -> Path:
        return self.data_dir / "mlflow"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.mlflow_dir / "artifacts"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def predictions_dir(self) -> Path:
        return self.data_dir / "predictions"

    @property
    def prediction_log_dir(self) -> Path:
        """Every prediction the model server made, as Parquet partitioned by day."""
        return self.data_dir / "prediction_log"

    @property
    def optuna_storage(self) -> str:
        """Where tuning studies live: FEATURESTACK_OPTUNA_STORAGE, else SQLite in the data
        folder (any SQLAlchemy URL works, e.g. PostgreSQL for several machines)."""
        url = os.environ.get("FEATURESTACK_OPTUNA_STORAGE")
        if url:
            return url
        (self.data_dir / "optuna").mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'optuna' / 'studies.db'}"

    def published_table(self, model: str) -> Path:
        """The Parquet file Feast reads for a published dbt model."""
        return self.published_dir / f"{model}.parquet"

    def environ(self) -> dict[str, str]:
        """Variables that make dbt, Feast and MLflow agree with these settings."""
        return {
            "FEATURESTACK_DATA_DIR": str(self.data_dir),
            "FEATURESTACK_RAW_DIR": str(self.raw_dir),
            "MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
        }

    def export(self) -> None:
        """Publish the resolved locations to this process (dbt and Feast read them)."""
        os.environ.update(self.environ())


def load_settings(data_dir: str | os.PathLike[str] | None = None) -> Settings:
    """Resolve settings from arguments, then the environment, then the defaults.

    Relative paths are taken from the current directory, so ``FEATURESTACK_DATA_DIR=./data``
    means the same folder for every stage, whichever folder a tool later runs in.
    """
    raw_data = data_dir or os.environ.get("FEATURESTACK_DATA_DIR") or REPO_ROOT / "data"
    data = Path(raw_data).expanduser().resolve()
    raw_env = os.environ.get("FEATURESTACK_RAW_DIR") if data_dir is None else None
    raw = Path(raw_env).expanduser().resolve() if raw_env else data / "raw"
    uri = (os.environ.get("MLFLOW_TRACKING_URI") if data_dir is None else None) or (
        f"sqlite:///{data / 'mlflow' / 'mlflow.db'}"
    )
    return Settings(data_dir=data, raw_dir=raw, mlflow_tracking_uri=uri)

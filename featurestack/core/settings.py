"""Where featurestack keeps its state, resolved once from the environment.

Every stage (dbt, the gate, Feast, training) reads its locations from here: the project it
works on (``FEATURESTACK_PROJECT_DIR`` or the nearest project folder above the working
directory, featurestack/core/project.py), one variable, ``FEATURESTACK_DATA_DIR`` (default:
the project's ``data/``), that moves all generated state at once, and one switch,
``FEATURESTACK_PROFILE``, moves the shared services: ``local`` (default) keeps everything in
files (SQLite online store, file registry, SQLite MLflow and Optuna), ``scale`` puts the online
store on Redis and the Feast registry, MLflow's tracking store and Optuna's studies on
PostgreSQL (one schema each in a database of its own), ``spark`` is ``scale`` with Spark as
the offline engine (docs/spark.md; ``FEATURESTACK_SPARK_MASTER``, ``FEATURESTACK_SPARK_CONF``).
Every URL is an environment variable with a default for this machine (docs/scaling.md).
Nothing is created at import time: callers ask for a :class:`Settings` and create folders (or
databases) when they write.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from featurestack.core.errors import ConfigError, NotFound
from featurestack.core.project import ENV as PROJECT_ENV
from featurestack.core.project import Project, find_project

#: The MLflow experiment of a data folder (one per data folder).
EXPERIMENT_NAME = "featurestack"

PROFILES = ("local", "scale", "spark")
#: Profiles whose services are Redis and PostgreSQL (``spark`` is ``scale`` with Spark as the
#: offline engine: dbt-spark, the Spark offline store; docs/spark.md).
SERVICE_PROFILES = ("scale", "spark")
DEFAULT_SPARK_MASTER = "local[2]"
#: The scale profile's own database; `featurestack reset --profile scale` drops it.
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/featurestack_scale"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: Every Redis key of the scale profile starts with this (and a colon).
DEFAULT_REDIS_PREFIX = "featurestack_scale"
#: Seconds a lookup, a connection or a health check may take before the service counts as down.
DEFAULT_TIMEOUT_S = 2.0
#: The schemas the scale profile creates in its database, one per tool (MLflow and Optuna both
#: keep an ``alembic_version`` table, so they cannot share one).
SCHEMAS = ("feast", "mlflow", "optuna")


def with_schema(url: str, schema: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """A SQLAlchemy URL of ``url``'s database whose unqualified tables live in ``schema``
    (libpq's ``options=-csearch_path``), connecting within ``timeout_s``."""
    separator = "&" if "?" in url else "?"
    return (
        f"{url}{separator}options=-csearch_path%3D{schema}"
        f"&connect_timeout={max(1, round(timeout_s))}"
    )


@dataclass(frozen=True)
class Settings:
    """Absolute locations of everything featurestack reads and writes."""

    data_dir: Path
    raw_dir: Path
    mlflow_tracking_uri: str
    profile: str = "local"
    #: the scale profile's database (FEATURESTACK_PG_URL)
    pg_url: str = DEFAULT_PG_URL
    redis_url: str = DEFAULT_REDIS_URL
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    timeout_s: float = DEFAULT_TIMEOUT_S
    #: where MLflow writes artifacts (a folder or an object-store URL); None: the data folder
    artifacts_uri: str | None = None
    #: the Optuna storage chosen by the profile; None: FEATURESTACK_OPTUNA_STORAGE or SQLite
    optuna_url: str | None = None
    #: the project's root (None: found from FEATURESTACK_PROJECT_DIR or the working directory
    #: when a command first needs it)
    project_dir: Path | None = None
    #: the spark profile's master (FEATURESTACK_SPARK_MASTER) and further Spark settings
    #: (FEATURESTACK_SPARK_CONF: a spark-defaults.conf file, or ``key=value,key=value``)
    spark_master: str = DEFAULT_SPARK_MASTER
    spark_conf: tuple[tuple[str, str], ...] = ()

    @property
    def project(self) -> Project:
        """The project these settings work on (NotFound, naming the fix, when there is none)."""
        return find_project(self.project_dir)

    @property
    def scale(self) -> bool:
        """Redis and PostgreSQL hold the shared state (profiles ``scale`` and ``spark``)."""
        return self.profile in SERVICE_PROFILES

    @property
    def spark(self) -> bool:
        """Spark is the offline engine (profile ``spark``): dbt's ``spark`` target, the Spark
        offline store, the gate reading the Spark tables' Parquet files."""
        return self.profile == "spark"

    @property
    def spark_warehouse(self) -> Path:
        """Where the spark profile's tables are (``spark.sql.warehouse.dir``)."""
        return self.data_dir / "spark" / "warehouse"

    @property
    def feast_registry_url(self) -> str:
        """The Feast SQL registry of the scale profile: schema ``feast`` of its database."""
        return with_schema(self.pg_url, "feast", self.timeout_s)

    @property
    def feast_yaml(self) -> Path:
        """The resolved feature_store.yaml written for the native `feast` CLI."""
        return self.feast_dir / feast_yaml_name(self.profile)

    @property
    def artifact_location(self) -> str:
        """Where a new MLflow experiment keeps its artifacts."""
        return self.artifacts_uri or self.mlflow_artifacts.as_uri()

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
        url = os.environ.get("FEATURESTACK_OPTUNA_STORAGE") or self.optuna_url
        if url:
            return url
        (self.data_dir / "optuna").mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'optuna' / 'studies.db'}"

    def raw_files(self) -> list[Path]:
        """Files already in the raw folder (a project's own data is never overwritten)."""
        if not self.raw_dir.exists():
            return []
        return sorted(p for p in self.raw_dir.iterdir() if not p.name.startswith("."))

    def published_table(self, model: str) -> Path:
        """The folder of month files Feast reads for a published dbt model, through the
        ``current`` snapshot (validation/publish.py)."""
        return self.published_dir / "current" / model

    def environ(self) -> dict[str, str]:
        """Variables that make dbt, Feast and MLflow agree with these settings."""
        env = {
            "FEATURESTACK_DATA_DIR": str(self.data_dir),
            "FEATURESTACK_RAW_DIR": str(self.raw_dir),
            "MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            "FEATURESTACK_PROFILE": self.profile,
        }
        with contextlib.suppress(NotFound):  # commands without a project (doctor, init)
            env[PROJECT_ENV] = str(self.project.root)
        if self.spark:
            env["FEATURESTACK_SPARK_MASTER"] = self.spark_master
        if self.scale:  # what feature_repo/feature_store.scale.yaml refers to
            env |= {
                "FEATURESTACK_PG_URL": self.pg_url,
                "FEATURESTACK_FEAST_REGISTRY_URL": self.feast_registry_url,
                "FEATURESTACK_REDIS_URL": self.redis_url,
                "FEATURESTACK_REDIS_PREFIX": self.redis_prefix,
                "FEATURESTACK_TIMEOUT_S": str(self.timeout_s),
            }
        return env

    def export(self) -> None:
        """Publish the resolved locations to this process (dbt and Feast read them)."""
        os.environ.update(self.environ())


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def feast_yaml_name(profile: str) -> str:
    """The committed (and resolved) Feast configuration file of a profile."""
    return "feature_store.yaml" if profile == "local" else f"feature_store.{profile}.yaml"


def parse_spark_conf(value: str) -> tuple[tuple[str, str], ...]:
    """``FEATURESTACK_SPARK_CONF``: the path of a spark-defaults.conf file (``key value`` or
    ``key=value`` per line, ``#`` comments), or ``key=value`` pairs separated by commas."""
    value = value.strip()
    if not value:
        return ()
    path = Path(value).expanduser()
    from_file = path.is_file()
    if not from_file and ("/" in value or value.endswith(".conf")) and "=" not in value:
        raise ConfigError(
            f"FEATURESTACK_SPARK_CONF={value!r} looks like a file but there is none: give the "
            "path of a spark-defaults.conf file, or key=value pairs separated by commas"
        )
    lines = path.read_text().splitlines() if from_file else value.split(",")
    pairs = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip() if from_file else raw.strip()
        if not line:
            continue
        key, sep, setting = line.partition("=")
        if not sep and from_file:
            key, _, setting = line.partition(" ")
        key, setting = key.strip(), setting.strip()
        if not key.startswith("spark.") or not setting:
            where = f"{path} line {number}" if from_file else "FEATURESTACK_SPARK_CONF"
            raise ConfigError(
                f"{where}: {raw.strip()!r} is not a Spark setting: each entry is "
                "spark.<name>=<value> (e.g. spark.executor.memory=4g)"
            )
        pairs.append((key, setting))
    return tuple(pairs)


def load_settings(
    data_dir: str | os.PathLike[str] | None = None,
    profile: str | None = None,
    project_dir: str | os.PathLike[str] | None = None,
) -> Settings:
    """Resolve settings from arguments, then the environment, then the defaults.

    Relative paths are taken from the current directory, so ``FEATURESTACK_DATA_DIR=./data``
    means the same folder for every stage, whichever folder a tool later runs in. The data
    folder defaults to the project's ``data/`` (``project_dir``, else FEATURESTACK_PROJECT_DIR,
    else the nearest project above the working directory; ``./data`` outside any project).
    ``profile`` (else ``FEATURESTACK_PROFILE``, else ``local``) picks the services' defaults;
    an explicit URL variable always wins over the profile's default.
    """
    project: Project | None
    try:
        project = find_project(project_dir)
    except NotFound:
        project = None
    default_data = project.default_data_dir if project is not None else Path("data")
    raw_data = data_dir or os.environ.get("FEATURESTACK_DATA_DIR") or default_data
    data = Path(raw_data).expanduser().resolve()
    raw_env = os.environ.get("FEATURESTACK_RAW_DIR") if data_dir is None else None
    raw = Path(raw_env).expanduser().resolve() if raw_env else data / "raw"
    chosen = (profile or os.environ.get("FEATURESTACK_PROFILE") or "local").strip().lower()
    if chosen not in PROFILES:
        raise ConfigError(
            f"FEATURESTACK_PROFILE={chosen!r} is not a profile: use one of {', '.join(PROFILES)} "
            "(local: files only; scale: Redis and PostgreSQL, see docs/scaling.md; spark: "
            "scale with Spark as the offline engine, docs/spark.md)"
        )
    try:
        timeout = float(_env("FEATURESTACK_TIMEOUT_S", str(DEFAULT_TIMEOUT_S)))
    except ValueError:
        timeout = -1.0
    if not timeout > 0:
        raise ConfigError(
            f"FEATURESTACK_TIMEOUT_S={os.environ.get('FEATURESTACK_TIMEOUT_S')!r} must be a "
            f"positive number of seconds (default {DEFAULT_TIMEOUT_S})"
        )
    pg_url = _env("FEATURESTACK_PG_URL", DEFAULT_PG_URL)
    uri_env = os.environ.get("MLFLOW_TRACKING_URI") if data_dir is None else None
    if chosen in SERVICE_PROFILES:
        uri = uri_env or with_schema(pg_url, "mlflow", timeout)
        optuna_url: str | None = with_schema(pg_url, "optuna", timeout)
        artifacts: str | None = _env(
            "FEATURESTACK_ARTIFACTS_URI", (data / "scale" / "mlflow-artifacts").as_uri()
        )
    else:
        uri = uri_env or f"sqlite:///{data / 'mlflow' / 'mlflow.db'}"
        optuna_url, artifacts = None, os.environ.get("FEATURESTACK_ARTIFACTS_URI") or None
    return Settings(
        data_dir=data,
        raw_dir=raw,
        mlflow_tracking_uri=uri,
        profile=chosen,
        pg_url=pg_url,
        redis_url=_env("FEATURESTACK_REDIS_URL", _env("REDIS_URL", DEFAULT_REDIS_URL)),
        redis_prefix=_env("FEATURESTACK_REDIS_PREFIX", DEFAULT_REDIS_PREFIX),
        timeout_s=timeout,
        artifacts_uri=artifacts,
        optuna_url=optuna_url,
        project_dir=project.root if project is not None else None,
        spark_master=_env("FEATURESTACK_SPARK_MASTER", DEFAULT_SPARK_MASTER),
        spark_conf=parse_spark_conf(os.environ.get("FEATURESTACK_SPARK_CONF", "")),
    )

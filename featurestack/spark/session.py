"""The one SparkSession of a process, configured the way dbt's `spark` target configures it.

dbt-spark's `session` method and Feast's Spark offline store both take the process's active
SparkSession when there is one (``getOrCreate`` / ``getActiveSession``), so starting it here
first decides the master, the memory, the time zone and where tables and the metastore live
for every Spark user in the process. The settings mirror ``dbt_project/profiles.yml`` (target
``spark``): a session started by dbt itself from the command line ends up the same.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from featurestack.core.errors import EXIT_UNAVAILABLE, FeaturestackError
from featurestack.core.settings import parse_spark_conf

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[2]"
DEFAULT_DRIVER_MEMORY = "2g"


class SparkUnavailable(FeaturestackError, RuntimeError):
    """pyspark or Java is missing: the message says which and how to get it (exit 3, as for
    any service the profile needs)."""

    exit_code = EXIT_UNAVAILABLE
    http_status = 503


def spark_conf(data_dir: Path, master: str | None = None) -> dict[str, str]:
    """Spark settings for a data folder: tables under ``spark/warehouse``, the metastore
    (Derby) and its log under ``spark/`` (never in the working directory), UTC session time
    (DuckDB's ``TimeZone: UTC``), few shuffle partitions (local data is small per task);
    then ``FEATURESTACK_SPARK_CONF`` (a spark-defaults.conf file or ``key=value,…``), which
    wins: a cluster's executors, memory, catalog."""
    spark_dir = (data_dir / "spark").resolve()
    return {
        "spark.master": master or os.environ.get("FEATURESTACK_SPARK_MASTER", DEFAULT_MASTER),
        "spark.app.name": "featurestack",
        "spark.driver.memory": os.environ.get(
            "FEATURESTACK_SPARK_DRIVER_MEMORY", DEFAULT_DRIVER_MEMORY
        ),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.warehouse.dir": str(spark_dir / "warehouse"),
        "spark.sql.catalogImplementation": "hive",
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={spark_dir / 'metastore_db'};create=true"
        ),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={spark_dir}",
        # A recursive CTE runs one step per recursion level: a project's may need many.
        "spark.sql.cteRecursionLevelLimit": "-1",
        "spark.sql.cteRecursionRowLimit": "-1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # Instants in Parquet as TIMESTAMP_MICROS (readable as such by DuckDB and Arrow; Spark's
        # default, INT96, is deprecated and read back as naive nanoseconds).
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        **dict(parse_spark_conf(os.environ.get("FEATURESTACK_SPARK_CONF", ""))),
    }


def check_spark() -> None:
    """Raise SparkUnavailable naming what is missing (pyspark, or a Java runtime)."""
    import shutil

    try:
        import pyspark  # noqa: F401
    except ImportError as err:
        raise SparkUnavailable(
            f"pyspark is not installed ({err}); `uv sync` installs it with featurestack."
        ) from err
    java_home = os.environ.get("JAVA_HOME")
    java = Path(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise SparkUnavailable(
            "Spark needs a Java runtime (17 or 21): none on PATH and JAVA_HOME is unset. "
            "Install one (`apt-get install openjdk-17-jre-headless`) or set JAVA_HOME."
        )


def get_spark(
    data_dir: Path, master: str | None = None, catalog: str = "hive", **extra: str
) -> SparkSession:
    """The process's SparkSession, started with :func:`spark_conf` unless one is running
    (Spark allows one per process; its static settings are those of the first).

    ``catalog="in-memory"`` keeps table definitions in the process only (no Derby metastore:
    several times faster for tests, which build and read in one process); ``"hive"`` keeps
    them under the data folder for the next process, as `dbt build --target spark` needs."""
    check_spark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    (data_dir / "spark").mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder
    conf = {**spark_conf(data_dir, master), "spark.sql.catalogImplementation": catalog, **extra}
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session

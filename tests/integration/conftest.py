"""The Spark session of the integration tests: one JVM per test process (Spark allows one
session per process), local[2], table definitions in memory, files in a temporary folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> SparkSession:
    """The process's SparkSession, or a failure naming what is missing (pyspark or Java)."""
    from featurestack.spark.session import SparkUnavailable, check_spark, get_spark

    try:
        check_spark()
    except SparkUnavailable as err:
        pytest.fail(f"The Spark tests need pyspark and Java: {err}", pytrace=False)
    folder: Path = tmp_path_factory.mktemp("spark")
    session = get_spark(folder, catalog="in-memory")
    session.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    return session

"""The spark profile's built tables, as the gate reads them: DuckDB over their Parquet files.

dbt-spark writes each model as a folder of Parquet files under the Spark warehouse
(``<data>/spark/warehouse/<schema>.db/<table>/``, incremental models in ``partition_date=…``
subfolders). The gate reads those files directly, with no JVM: DuckDB streams Parquet and
prunes row groups by their statistics, so validating a day's or a month's partitions holds
only those rows, whatever the table's size (the same code path as the DuckDB warehouse). The
``partition_date`` column is Spark's layout only (docs/spark.md): it is not in the files and
not read. Instants are TIMESTAMPTZ as in the DuckDB warehouse (Spark's naive INT96 or
TIMESTAMP_MICROS values are UTC).
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

#: dbt's schema on Spark (profiles.yml, target ``spark``).
SCHEMA_ENV = "FEATURESTACK_SPARK_SCHEMA"
DEFAULT_SCHEMA = "featurestack"


def schema_folder(warehouse: Path, schema: str | None = None) -> Path:
    """The folder of a Spark database's managed tables (Spark's ``<name>.db`` layout)."""
    return warehouse / f"{schema or os.environ.get(SCHEMA_ENV) or DEFAULT_SCHEMA}.db"


def table_folders(folder: Path) -> dict[str, Path]:
    """Tables that have data files: table name -> folder (hidden and temporary ones skipped)."""
    if not folder.is_dir():
        return {}
    return {
        p.name: p
        for p in sorted(folder.iterdir())
        if p.is_dir() and p.name[0] not in "._" and next(p.rglob("*.parquet"), None) is not None
    }


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def attach(con: duckdb.DuckDBPyConnection, folder: Path) -> dict[str, str]:
    """A view per Spark table in ``con``'s in-memory catalog: table name -> relation."""
    relations = {}
    for name, path in table_folders(folder).items():
        files = _literal(str(path.resolve() / "**" / "*.parquet"))
        scan = f"read_parquet({files}, hive_partitioning = false, union_by_name = true)"
        types = con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()
        naive = [c for c, t, *_ in types if str(t).upper() in ("TIMESTAMP", "TIMESTAMP_NS")]
        replace = ", ".join(f'CAST("{c}" AS TIMESTAMPTZ) AS "{c}"' for c in naive)
        select = f"* REPLACE ({replace})" if replace else "*"
        relation = f'memory.main."{name}"'
        con.execute(f"CREATE OR REPLACE VIEW {relation} AS SELECT {select} FROM {scan}")
        relations[name] = relation
    return relations

"""Month-file publication against the brute-force answer: after any sequence of changes in the
warehouse, the current snapshot holds exactly the warehouse table; a month no change touched is
the previous snapshot's file (a hard link), and a failed gate leaves the snapshot as it was."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from featurestack.core.settings import Settings
from tests.conftest import published_state
from validation.config import GateConfig
from validation.gate import run_gate

TABLE = "feat_t"
START = datetime(2024, 1, 29, 21, tzinfo=UTC)  # a month boundary a few days in


def manifest(path: Path) -> Path:
    node = {
        "resource_type": "model",
        "name": TABLE,
        "unique_id": f"model.demo.{TABLE}",
        "tags": ["publish"],
        "config": {"meta": {"primary_key": ["k", "ts"], "event_timestamp": "ts"}},
        "columns": {
            "k": {"data_type": "varchar"},
            "ts": {"data_type": "timestamp with time zone"},
            "x": {"data_type": "double"},
        },
    }
    path.write_text(json.dumps({"nodes": {node["unique_id"]: node}}))
    return path


def published(settings: Settings) -> pd.DataFrame:
    frame = pd.read_parquet(settings.published_table(TABLE))
    return frame.sort_values(["k", "ts"]).reset_index(drop=True)


def warehouse(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.sql(f"select * from {TABLE} order by k, ts").df()


def inodes(settings: Settings) -> dict[str, int]:
    folder = settings.published_table(TABLE)
    return {p.name: p.stat().st_ino for p in folder.glob("*.parquet")}


def month(ts: datetime) -> str:
    return f"{ts.astimezone(UTC):%Y-%m}.parquet"


@pytest.mark.slow  # dbt builds and gates after random changes
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_month_files_always_hold_the_warehouse_table(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    settings = Settings(tmp_path / "data", tmp_path / "raw", f"sqlite:///{tmp_path / 'm.db'}")
    settings.data_dir.mkdir()
    path = manifest(tmp_path / "manifest.json")
    config = GateConfig()
    con = duckdb.connect(str(settings.warehouse))
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"create table {TABLE} (k varchar, ts timestamptz, x double)")
    days = [START + timedelta(days=d) for d in range(40)]
    for day in days:
        con.executemany(
            f"insert into {TABLE} values (?, ?, ?)", [(k, day, rng.random()) for k in "abc"]
        )

    def gate() -> bool:
        con.execute("CHECKPOINT")
        con.close()  # the gate opens the warehouse read-only
        now = days[-1] + timedelta(days=2)
        ok = run_gate(settings, manifest_path=path, config=config, now=now).success
        reopen()
        return ok

    def reopen() -> None:
        nonlocal con
        con = duckdb.connect(str(settings.warehouse))
        con.execute("SET TimeZone = 'UTC'")

    assert gate()
    pd.testing.assert_frame_equal(published(settings), warehouse(con))
    for _ in range(12):
        before = inodes(settings)
        state = published_state(settings.published_dir)
        kind = rng.choice(["append", "update", "delete_day", "move", "duplicate"])
        touched: set[str] = set()
        if kind == "append":
            days.append(days[-1] + timedelta(days=rng.choice([1, 20])))
            con.executemany(
                f"insert into {TABLE} values (?, ?, ?)", [(k, days[-1], 0.5) for k in "ab"]
            )
            touched.add(month(days[-1]))
        elif kind == "update":
            day = rng.choice(days)
            con.execute(f"update {TABLE} set x = x + 1 where k = 'a' and ts = ?", [day])
            touched.add(month(day))
        elif kind == "delete_day":
            day = days.pop(rng.randrange(len(days) - 1))
            con.execute(f"delete from {TABLE} where ts = ?", [day])
            touched.add(month(day))
        elif kind == "move":  # a row's event time moves to another month
            day, to = rng.choice(days[:5]), rng.choice(days[-5:])
            moved = con.execute(
                f"update {TABLE} set ts = ? + interval 1 hour where k = 'c' and ts = ?", [to, day]
            ).fetchall()[0][0]
            if moved:
                touched |= {month(day), month(to + timedelta(hours=1))}
        else:  # a row twice: the gate must stop it and publish nothing
            con.execute(f"insert into {TABLE} select * from {TABLE} limit 1")
            assert not gate()
            assert published_state(settings.published_dir) == state
            con.execute(
                f"create or replace table {TABLE} as select distinct * from {TABLE} order by all"
            )
        assert gate(), kind
        pd.testing.assert_frame_equal(published(settings), warehouse(con))
        after = inodes(settings)
        for name, inode in before.items():
            if name in after and name not in touched:
                assert after[name] == inode, f"{kind}: {name} rewritten although unchanged"
        for name in touched & set(before) & set(after):
            assert after[name] != before[name], f"{kind}: {name} not rewritten"
    con.close()


def test_months_are_months_of_utc_whatever_the_zone(tmp_path: Path) -> None:
    """An evening in New York on the last day of January is February in UTC: it is published
    in the February file, as the gate's day fingerprints (UTC days) count it."""
    import pyarrow as pa

    from validation.publish import publish_tables, split_months

    ts = pd.to_datetime(["2024-01-31 18:00", "2024-01-31 20:00"]).tz_localize("America/New_York")
    table = pa.table({"k": ["a", "b"], "ts": pa.array(ts)})
    (folder,) = publish_tables(tmp_path / "published", {TABLE: table}, event_timestamp="ts")
    files = {p.name: pd.read_parquet(p)["k"].tolist() for p in folder.glob("*.parquet")}
    assert files == {"2024-01.parquet": ["a"], "2024-02.parquet": ["b"]}
    with pytest.raises(ValueError, match="not together"):  # rows must come sorted by month
        split_months(pa.concat_tables([table, table.slice(0, 1)]), "ts")

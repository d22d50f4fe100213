"""Our SQLite online store through a real Feast repo: newest event wins, TTL on read, WAL."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Float64, Int64, String

from featurestack.feast_ops import ONLINE_STORE, scratch_repo_config
from featurestack.stores.online import SQLiteOnlineStore

OFFLINE = "featurestack.stores.offline.DuckDBAsofOfflineStore"
NOW = datetime.now(UTC).replace(microsecond=0)


def make_store(
    tmp: Path, rows: pd.DataFrame, ttl: timedelta, online: str = ONLINE_STORE
) -> tuple[FeatureStore, FeatureView]:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "src.parquet"
    rows.to_parquet(path, index=False)
    entity = Entity(name="item", join_keys=["id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="items",
        entities=[entity],
        ttl=ttl,
        schema=[
            Field(name="id", dtype=Int64),
            Field(name="x", dtype=Float64),
            Field(name="label", dtype=String),
        ],
        source=FileSource(
            name="src",
            path=str(path),
            timestamp_field="event_timestamp",
            created_timestamp_column="created",
        ),
    )
    store = FeatureStore(config=scratch_repo_config(tmp, "online", OFFLINE, online))
    store.apply([entity, view])
    return store, store.get_feature_view("items")


def read(store: FeatureStore, ids: list[int]) -> dict[str, list]:
    return store.get_online_features(
        features=["items:x", "items:label"], entity_rows=[{"id": i} for i in ids]
    ).to_dict(include_event_timestamps=True)


def statuses(store: FeatureStore, ids: list[int]) -> list[str]:
    response = store.get_online_features(
        features=["items:x"], entity_rows=[{"id": i} for i in ids]
    ).proto
    from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

    return [FieldStatus.Name(s) for s in response.results[1].statuses]


def key(i: int) -> EntityKeyProto:
    return EntityKeyProto(join_keys=["id"], entity_values=[ValueProto(int64_val=i)])


def write(store: FeatureStore, view: FeatureView, rows: list[tuple]) -> None:
    """rows: (id, x, event_ts, created_ts | None)"""
    online = store._get_provider().online_store
    data = [
        (key(i), {"x": ValueProto(double_val=x), "label": ValueProto(string_val=f"v{x}")}, ev, cr)
        for i, x, ev, cr in rows
    ]
    online.online_write_batch(store.config, view, data, None)


def source_rows(**cols: list) -> pd.DataFrame:
    return pd.DataFrame(cols)


def one_row() -> pd.DataFrame:
    """A source for tests that write to the online store directly."""
    return source_rows(id=[0], x=[0.0], label=["-"], event_timestamp=[NOW], created=[NOW])


def test_a_backfill_never_overwrites_newer_values(tmp_path: Path) -> None:
    t1, t2 = NOW - timedelta(days=3), NOW - timedelta(days=1)
    rows = source_rows(
        id=[1, 1, 2],
        x=[1.0, 2.0, 5.0],
        label=["old", "new", "only"],
        event_timestamp=[t1, t2, t1],
        created=[t1, t2, t1],
    )
    ours, _ = make_store(tmp_path / "ours", rows, timedelta(days=30))
    stock, _ = make_store(tmp_path / "stock", rows, timedelta(days=30), online="sqlite")
    for store in (ours, stock):
        store.materialize(t2 - timedelta(hours=1), t2 + timedelta(hours=1))  # the newer window
        store.materialize(t1 - timedelta(hours=1), t1 + timedelta(hours=1))  # then a backfill
    got = read(ours, [1, 2])
    assert got["x"] == [2.0, 5.0] and got["label"] == ["new", "only"]
    assert got["x__ts"][0] == int(t2.timestamp())
    # Feast's stock SQLite store puts the old value back: the gap this store closes.
    assert read(stock, [1])["x"] == [1.0]


def test_ties_on_event_time_go_to_the_later_created_time(tmp_path: Path) -> None:
    store, view = make_store(tmp_path, one_row(), timedelta(days=30))
    ev = NOW - timedelta(hours=5)
    early, late = ev + timedelta(minutes=1), ev + timedelta(minutes=2)
    write(store, view, [(1, 2.0, ev, late), (2, 7.0, ev, None)])
    write(store, view, [(1, 1.0, ev, early), (2, 8.0, ev, early)])
    assert read(store, [1, 2])["x"] == [2.0, 8.0]  # a missing created time loses the tie
    write(store, view, [(1, 3.0, ev, late)])  # same event and created: the first write stays
    assert read(store, [1])["x"] == [2.0]


def test_any_order_of_writes_converges_to_the_newest_row(tmp_path: Path) -> None:
    rng = random.Random(3)
    base = NOW - timedelta(days=2)
    rows = [
        (
            rng.randrange(40),
            float(n),
            base + timedelta(minutes=rng.randrange(6)),
            base + timedelta(seconds=rng.randrange(4)) if rng.random() < 0.8 else None,
        )
        for n in range(600)
    ]
    # Identical (key, event, created) with different values would be ambiguous: keep one each.
    rows = list({(r[0], r[2], r[3]): r for r in rows}.values())
    lowest = datetime.min.replace(tzinfo=UTC)  # a missing created time ranks lowest
    best: dict[int, tuple] = {}
    for r in rows:
        rank = (r[2], r[3] or lowest)
        if r[0] not in best or rank > best[r[0]][0]:
            best[r[0]] = (rank, r[1])
    states = []
    for seed in range(3):
        order = rows[:]
        random.Random(seed).shuffle(order)
        store, view = make_store(tmp_path / str(seed), one_row(), timedelta(days=30))
        for i in range(0, len(order), 97):
            write(store, view, order[i : i + 97])
        states.append(read(store, sorted(best))["x"])
    assert states[0] == states[1] == states[2] == [best[k][1] for k in sorted(best)]


def test_ttl_is_applied_on_read(tmp_path: Path) -> None:
    rows = source_rows(
        id=[1, 2],
        x=[1.0, 2.0],
        label=["stale", "fresh"],
        event_timestamp=[NOW - timedelta(days=3), NOW - timedelta(hours=2)],
        created=[NOW - timedelta(days=3), NOW - timedelta(hours=2)],
    )
    store, _ = make_store(tmp_path, rows, timedelta(days=1))
    store.materialize(NOW - timedelta(days=10), NOW)
    got = read(store, [1, 2, 3])
    assert got["x"] == [None, 2.0, None]
    assert statuses(store, [1, 2, 3]) == ["OUTSIDE_MAX_AGE", "PRESENT", "NOT_FOUND"]
    # The expired row keeps its event time, so staleness stays visible.
    assert got["x__ts"][0] == int((NOW - timedelta(days=3)).timestamp())
    # Feast's generic online_read reports an expired row as absent.
    online = store._get_provider().online_store
    view = store.get_feature_view("items")
    assert online.online_read(store.config, view, [key(1), key(2)])[0] == (None, None)


def test_a_crash_mid_write_keeps_whole_batches_and_a_rerun_converges(tmp_path: Path) -> None:
    store, view = make_store(tmp_path, one_row(), timedelta(days=30))
    online: SQLiteOnlineStore = store._get_provider().online_store
    store.config.online_store.batch_size = 100
    ev = cr = int((NOW - timedelta(hours=1)).timestamp() * 1e6)

    def rows(fail_at: int | None):
        for i in range(1000):
            if fail_at is not None and i == fail_at:
                raise RuntimeError("killed")
            yield (b"k%d" % i, ev, cr, float(i), f"v{i}")

    with pytest.raises(RuntimeError, match="killed"):
        online.write_rows(store.config, view, ["x", "label"], rows(fail_at=550))
    assert online.row_count(store.config, view) == 500  # five whole batches, no partial one
    online.write_rows(store.config, view, ["x", "label"], rows(fail_at=None))
    assert online.row_count(store.config, view) == 1000
    got = online.read_rows(store.config, view, [b"k0", b"k999"], ["x"])
    assert got[b"k999"][1] == 999.0 and got[b"k0"][1] == 0.0


def test_readers_see_whole_rows_while_a_writer_writes(tmp_path: Path) -> None:
    store, view = make_store(tmp_path, one_row(), timedelta(days=30))
    online: SQLiteOnlineStore = store._get_provider().online_store
    keys = [b"k%d" % i for i in range(2000)]
    start = int((NOW - timedelta(days=1)).timestamp() * 1e6)
    errors: list[str] = []
    done = threading.Event()

    def writer() -> None:
        for gen in range(1, 6):  # each generation newer; x and label both encode it
            online.write_rows(
                store.config,
                view,
                ["x", "label"],
                ((k, start + gen, start + gen, float(gen), f"g{gen}") for k in keys),
            )
        done.set()

    def reader() -> None:
        while not done.is_set():
            for row in online.read_rows(store.config, view, keys[::37], ["x", "label"]).values():
                gen = row[0] - start
                if row[1:] != (float(gen), f"g{gen}"):
                    errors.append(f"torn row {row}")

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert {r[1] for r in online.read_rows(store.config, view, keys, ["x"]).values()} == {5.0}


def entity_rows(n: int, at: datetime, x0: float = 0.0) -> pd.DataFrame:
    return source_rows(
        id=list(range(n)),
        x=[x0 + i for i in range(n)],
        label=[f"v{i}" for i in range(n)],
        event_timestamp=[at] * n,
        created=[at] * n,
    )


def test_arrow_materialization_writes_the_newest_row_per_entity(tmp_path: Path) -> None:
    from featurestack.online_materialize import materialize_view

    old, new = NOW - timedelta(days=2), NOW - timedelta(days=1)
    rows = pd.concat([entity_rows(50, old, x0=1000.0), entity_rows(40, new)])
    store, view = make_store(tmp_path, rows, timedelta(days=30))
    written = materialize_view(store, view, NOW - timedelta(days=5), NOW, batch_rows=7)
    assert written == 50
    got = read(store, list(range(51)))
    assert got["x"] == [float(i) for i in range(40)] + [1000.0 + i for i in range(40, 50)] + [None]
    assert got["label"][:3] == ["v0", "v1", "v2"]
    assert got["x__ts"][0] == int(new.timestamp()) and got["x__ts"][45] == int(old.timestamp())
    intervals = store.get_feature_view("items").materialization_intervals
    assert [(s, e) for s, e in intervals] == [(NOW - timedelta(days=5), NOW)]


def test_a_crash_leaves_the_watermark_and_a_rerun_converges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from featurestack.online_materialize import materialize_view

    store, view = make_store(tmp_path, entity_rows(50, NOW - timedelta(hours=3)), timedelta(days=9))
    online: SQLiteOnlineStore = store._get_provider().online_store
    real_write = SQLiteOnlineStore.write_rows
    written: list[int] = []

    def dying_write(self, config, view, features, rows):  # the second batch never arrives
        if written:
            raise RuntimeError("killed")
        written.append(len(rows))
        return real_write(self, config, view, features, rows)

    monkeypatch.setattr(SQLiteOnlineStore, "write_rows", dying_write)
    with pytest.raises(RuntimeError, match="killed"):
        materialize_view(store, view, NOW - timedelta(days=1), NOW, batch_rows=20)
    # DuckDB streams batches of at most 20 rows (sometimes fewer): exactly the first is kept.
    assert 0 < written[0] <= 20
    assert online.row_count(store.config, view) == written[0]
    assert store.get_feature_view("items").materialization_intervals == []
    monkeypatch.setattr(SQLiteOnlineStore, "write_rows", real_write)
    assert materialize_view(store, view, NOW - timedelta(days=1), NOW, batch_rows=20) == 50
    assert read(store, [0, 49])["x"] == [0.0, 49.0]
    assert len(store.get_feature_view("items").materialization_intervals) == 1


def test_a_late_correction_below_the_watermark_reaches_the_online_store(tmp_path: Path) -> None:
    from featurestack.feast_ops import materialize_store

    day = NOW - timedelta(days=3)
    store, _ = make_store(tmp_path, entity_rows(5, day), timedelta(days=30))
    first = materialize_store(store, NOW - timedelta(days=1))
    assert first["items"].startswith("full from")
    # A corrected row for an event time below the watermark, published later.
    corrected = pd.concat(
        [
            entity_rows(5, day),
            source_rows(id=[2], x=[99.0], label=["fixed"], event_timestamp=[day], created=[NOW]),
        ]
    )
    corrected.to_parquet(tmp_path / "src.parquet", index=False)
    again = materialize_store(store, NOW)
    assert "watermark - 14 d" in again["items"]
    assert read(store, [1, 2])["x"] == [1.0, 99.0]


def test_materialize_refuses_an_end_in_the_future(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from featurestack.cli import app

    future = (NOW + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    env = {"FEATURESTACK_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(app, ["materialize", "--end", future], env=env)
    assert result.exit_code != 0
    assert "is in the future" in result.output


def test_consistency_check_finds_tampered_and_stale_online_values(tmp_path: Path) -> None:
    from featurestack.consistency import check_consistency
    from featurestack.online_materialize import materialize_view
    from featurestack.stores.online import table_name

    day = NOW - timedelta(days=2)
    store, view = make_store(tmp_path, entity_rows(30, day), timedelta(days=30))
    materialize_view(store, view, day - timedelta(days=1), NOW)
    (clean,) = check_consistency(store, sample=30, now=NOW)
    assert (clean.sampled, clean.mismatch_count, clean.behind) == (30, 0, timedelta(0))
    assert clean.online_newest == day

    online: SQLiteOnlineStore = store._get_provider().online_store
    with online._conn(store.config) as conn:
        conn.execute(f'UPDATE "{table_name(store.config, view)}" SET x = 123.0')
    (tampered,) = check_consistency(store, sample=5, now=NOW)
    assert tampered.mismatch_count == 5
    assert {m["feature"] for m in tampered.mismatches} == {"x"}
    assert all(m["online"] == 123.0 for m in tampered.mismatches)

    # A newer day is published but not materialized: the online store is behind.
    newer = pd.concat([entity_rows(30, day), entity_rows(30, NOW - timedelta(hours=1), 500.0)])
    newer.to_parquet(tmp_path / "src.parquet", index=False)
    (stale,) = check_consistency(store, sample=30, now=NOW)
    assert stale.behind == NOW - timedelta(hours=1) - day
    assert stale.mismatch_count >= 30


def test_the_fast_reader_returns_what_feast_returns(tmp_path: Path) -> None:
    from featurestack.online_reader import OnlineReader

    rows = source_rows(
        id=[1, 2, 3],
        x=[1.5, None, 3.5],
        label=["a", "b", None],
        event_timestamp=[
            NOW - timedelta(days=3),
            NOW - timedelta(hours=2),
            NOW - timedelta(hours=1),
        ],
        created=[NOW - timedelta(days=3), NOW - timedelta(hours=2), NOW - timedelta(hours=1)],
    )
    store, _ = make_store(tmp_path, rows, timedelta(days=1))
    store.materialize(NOW - timedelta(days=10), NOW)
    ids = [3, 1, 2, 9, 3]  # a repeated key, an expired one, a null value, an unknown one
    feast = read(store, ids)
    fast = OnlineReader(store, ["items:x", "items:label"]).read([{"id": i} for i in ids])
    assert fast["x"] == feast["x"] == [3.5, None, None, None, 3.5]
    assert fast["label"] == feast["label"] == [None, None, "b", None, None]
    assert fast["id"] == ids
    assert fast["items__status"] == [
        "PRESENT",
        "OUTSIDE_MAX_AGE",
        "PRESENT",
        "NOT_FOUND",
        "PRESENT",
    ]
    assert statuses(store, ids) == fast["items__status"]
    assert fast["items__event_timestamp"][1] == NOW - timedelta(days=3)
    assert fast["items__event_timestamp"][3] is None

"""Our online stores (SQLite, Redis) through a real Feast repo: newest event wins, TTL on read,
whole rows for readers in other processes. Every semantic test runs on both stores."""

from __future__ import annotations

import multiprocessing
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Float64, Int64, String

from featurestack.infra.feast_ops import ONLINE_STORE, REDIS_ONLINE_STORE, scratch_repo_config
from featurestack.stores.online import NewestWinsOnlineStore, encode_key_part

OFFLINE = "featurestack.stores.offline.DuckDBAsofOfflineStore"
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Online:
    """Which of our stores a test runs on; Redis tests get a project of their own."""

    config: str | dict[str, Any]
    project: str


@pytest.fixture(params=["sqlite", "redis"])
def online(request: pytest.FixtureRequest) -> Iterator[Online]:
    project = "t" + uuid.uuid4().hex[:12]
    if request.param == "sqlite":
        yield Online(ONLINE_STORE, project)
        return
    import redis

    url = request.getfixturevalue("redis_url")
    yield Online({"type": REDIS_ONLINE_STORE, "url": url}, project)
    client = redis.Redis.from_url(url)
    for keys in _chunks(list(client.scan_iter(match=f"fs:{project}*", count=1000)), 1000):
        client.unlink(*keys)


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def make_store(
    tmp: Path,
    rows: pd.DataFrame,
    ttl: timedelta,
    online: Online | str = ONLINE_STORE,
    project: str = "online",
) -> tuple[FeatureStore, FeatureView]:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "src.parquet"
    rows.to_parquet(path, index=False)
    if isinstance(online, Online):
        online, project = online.config, online.project + project
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
    store = FeatureStore(config=scratch_repo_config(tmp, project, OFFLINE, online))
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


def test_a_backfill_never_overwrites_newer_values(online: Online, tmp_path: Path) -> None:
    t1, t2 = NOW - timedelta(days=3), NOW - timedelta(days=1)
    rows = source_rows(
        id=[1, 1, 2],
        x=[1.0, 2.0, 5.0],
        label=["old", "new", "only"],
        event_timestamp=[t1, t2, t1],
        created=[t1, t2, t1],
    )
    ours, _ = make_store(tmp_path / "ours", rows, timedelta(days=30), online)
    stock, _ = make_store(tmp_path / "stock", rows, timedelta(days=30), online="sqlite")
    for store in (ours, stock):
        store.materialize(t2 - timedelta(hours=1), t2 + timedelta(hours=1))  # the newer window
        store.materialize(t1 - timedelta(hours=1), t1 + timedelta(hours=1))  # then a backfill
    got = read(ours, [1, 2])
    assert got["x"] == [2.0, 5.0] and got["label"] == ["new", "only"]
    assert got["x__ts"][0] == int(t2.timestamp())
    # Feast's stock SQLite store puts the old value back: the gap our stores close.
    assert read(stock, [1])["x"] == [1.0]


def test_what_feasts_stock_redis_store_gets_wrong(redis_url: str, tmp_path: Path) -> None:
    """Feast's Redis store skips older event times, but ignores created times on ties and
    returns values past the view's TTL as PRESENT; ours (tests above) does neither."""
    old = NOW - timedelta(days=3)
    tie = NOW - timedelta(hours=2)
    rows = source_rows(
        id=[1, 2, 2],
        x=[1.0, 2.0, 3.0],
        label=["expired", "first", "corrected"],
        event_timestamp=[old, tie, tie],
        created=[old, tie, tie + timedelta(minutes=5)],
    )
    config = {"type": "redis", "connection_string": redis_host(redis_url)}
    stock, view = make_store(tmp_path, rows, timedelta(days=1), config, "t" + uuid.uuid4().hex)
    try:
        feast_rows = [(1, 1.0, old, old), (2, 3.0, tie, tie + timedelta(minutes=5))]
        write(stock, view, [(2, 2.0, tie, tie)])
        write(stock, view, feast_rows)
        assert read(stock, [1, 2])["x"] == [1.0, 2.0]  # past its TTL; the tie kept the first
        assert statuses(stock, [1]) == ["PRESENT"]
    finally:
        stock.teardown()


def redis_host(url: str) -> str:
    """``redis://host:port/db`` → Feast's ``host:port,db=N`` connection string."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    db = parsed.path.strip("/") or "0"
    return f"{parsed.hostname}:{parsed.port or 6379},db={db}"


def test_ties_on_event_time_go_to_the_later_created_time(online: Online, tmp_path: Path) -> None:
    store, view = make_store(tmp_path, one_row(), timedelta(days=30), online)
    ev = NOW - timedelta(hours=5)
    early, late = ev + timedelta(minutes=1), ev + timedelta(minutes=2)
    write(store, view, [(1, 2.0, ev, late), (2, 7.0, ev, None)])
    write(store, view, [(1, 1.0, ev, early), (2, 8.0, ev, early)])
    assert read(store, [1, 2])["x"] == [2.0, 8.0]  # a missing created time loses the tie
    write(store, view, [(1, 3.0, ev, late)])  # same event and created: the first write stays
    assert read(store, [1])["x"] == [2.0]


def test_any_order_of_writes_converges_to_the_newest_row(online: Online, tmp_path: Path) -> None:
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
        store, view = make_store(
            tmp_path / str(seed), one_row(), timedelta(days=30), online, str(seed)
        )
        for i in range(0, len(order), 97):
            write(store, view, order[i : i + 97])
        states.append(read(store, sorted(best))["x"])
    assert states[0] == states[1] == states[2] == [best[k][1] for k in sorted(best)]


def test_ttl_is_applied_on_read(online: Online, tmp_path: Path) -> None:
    rows = source_rows(
        id=[1, 2],
        x=[1.0, 2.0],
        label=["stale", "fresh"],
        event_timestamp=[NOW - timedelta(days=3), NOW - timedelta(hours=2)],
        created=[NOW - timedelta(days=3), NOW - timedelta(hours=2)],
    )
    store, _ = make_store(tmp_path, rows, timedelta(days=1), online)
    store.materialize(NOW - timedelta(days=10), NOW)
    got = read(store, [1, 2, 3])
    assert got["x"] == [None, 2.0, None]
    assert statuses(store, [1, 2, 3]) == ["OUTSIDE_MAX_AGE", "PRESENT", "NOT_FOUND"]
    # The expired row keeps its event time, so staleness stays visible.
    assert got["x__ts"][0] == int((NOW - timedelta(days=3)).timestamp())
    # Feast's generic online_read reports an expired row as absent.
    ours = store._get_provider().online_store
    view = store.get_feature_view("items")
    assert ours.online_read(store.config, view, [key(1), key(2)])[0] == (None, None)


def test_a_crash_mid_write_keeps_whole_batches_and_a_rerun_converges(
    online: Online, tmp_path: Path
) -> None:
    store, view = make_store(tmp_path, one_row(), timedelta(days=30), online)
    ours: NewestWinsOnlineStore = store._get_provider().online_store
    store.config.online_store.batch_size = 100
    ev = cr = int((NOW - timedelta(hours=1)).timestamp() * 1e6)

    def rows(fail_at: int | None):
        for i in range(1000):
            if fail_at is not None and i == fail_at:
                raise RuntimeError("killed")
            yield (b"k%d" % i, ev, cr, float(i), f"v{i}")

    with pytest.raises(RuntimeError, match="killed"):
        ours.write_rows(store.config, view, ["x", "label"], rows(fail_at=550))
    assert ours.row_count(store.config, view) == 500  # five whole batches, no partial one
    ours.write_rows(store.config, view, ["x", "label"], rows(fail_at=None))
    assert ours.row_count(store.config, view) == 1000
    got = ours.read_rows(store.config, view, [b"k0", b"k999"], ["x"])
    assert got[b"k999"][1] == 999.0 and got[b"k0"][1] == 0.0


GENERATIONS, KEYS = 10, [b"k%d" % i for i in range(10_000)]
READER_KEYS = KEYS[::97]


def _read_while_written(
    folder: str, project: str, online: str | dict, start: int, ready: Any, out: Any
) -> None:
    """In another process: read until the last generation is seen; report torn rows."""
    store = FeatureStore(config=scratch_repo_config(Path(folder), project, OFFLINE, online))
    view = store.get_feature_view("items")
    ours = store._get_provider().online_store
    seen: set[int] = set()
    torn: list[str] = []
    reads = 0
    ours.read_rows(store.config, view, READER_KEYS, ["x"])  # connected before the writer starts
    ready.set()
    while GENERATIONS not in seen and reads < 100_000:
        for row in ours.read_rows(store.config, view, READER_KEYS, ["x", "label"]).values():
            gen = row[0] - start
            seen.add(gen)
            if row[1:] != (float(gen), f"g{gen}"):
                torn.append(repr(row))
        reads += 1
    out.put((sorted(seen), torn[:3], reads))


def test_readers_in_another_process_see_whole_rows_while_a_writer_writes(
    online: Online, tmp_path: Path
) -> None:
    store, view = make_store(tmp_path, one_row(), timedelta(days=30), online)
    ours: NewestWinsOnlineStore = store._get_provider().online_store
    start = int((NOW - timedelta(days=1)).timestamp() * 1e6)
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    args = (str(tmp_path), store.config.project, online.config, start, ready, out)
    reader = ctx.Process(target=_read_while_written, args=args)
    reader.start()
    assert ready.wait(120), "the reader process did not start"
    for gen in range(1, GENERATIONS + 1):  # each generation newer; x and label both encode it
        ours.write_rows(
            store.config,
            view,
            ["x", "label"],
            ((k, start + gen, start + gen, float(gen), f"g{gen}") for k in KEYS),
        )
    seen, torn, reads = out.get(timeout=120)
    reader.join(timeout=30)
    assert not torn, torn
    # The reader overlapped the writes (saw intermediate generations) and then the last one.
    assert seen[-1] == GENERATIONS and len(seen) > 2, (seen, reads)
    final = ours.read_rows(store.config, view, KEYS, ["x"]).values()
    assert {r[1] for r in final} == {float(GENERATIONS)}


def entity_rows(n: int, at: datetime, x0: float = 0.0) -> pd.DataFrame:
    return source_rows(
        id=list(range(n)),
        x=[x0 + i for i in range(n)],
        label=[f"v{i}" for i in range(n)],
        event_timestamp=[at] * n,
        created=[at] * n,
    )


def test_arrow_materialization_writes_the_newest_row_per_entity(
    online: Online, tmp_path: Path
) -> None:
    from featurestack.infra.online_materialize import materialize_view

    old, new = NOW - timedelta(days=2), NOW - timedelta(days=1)
    rows = pd.concat([entity_rows(50, old, x0=1000.0), entity_rows(40, new)])
    store, view = make_store(tmp_path, rows, timedelta(days=30), online)
    written = materialize_view(store, view, NOW - timedelta(days=5), NOW, batch_rows=7)
    assert written == 50
    got = read(store, list(range(51)))
    assert got["x"] == [float(i) for i in range(40)] + [1000.0 + i for i in range(40, 50)] + [None]
    assert got["label"][:3] == ["v0", "v1", "v2"]
    assert got["x__ts"][0] == int(new.timestamp()) and got["x__ts"][45] == int(old.timestamp())
    intervals = store.get_feature_view("items").materialization_intervals
    assert [(s, e) for s, e in intervals] == [(NOW - timedelta(days=5), NOW)]


def test_a_crash_leaves_the_watermark_and_a_rerun_converges(
    online: Online, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from featurestack.infra.online_materialize import materialize_view

    store, view = make_store(
        tmp_path, entity_rows(50, NOW - timedelta(hours=3)), timedelta(days=9), online
    )
    ours: NewestWinsOnlineStore = store._get_provider().online_store
    cls = type(ours)
    real_write = cls.write_rows
    written: list[int] = []

    def dying_write(self, config, view, features, rows):  # the second batch never arrives
        if written:
            raise RuntimeError("killed")
        written.append(len(rows))
        return real_write(self, config, view, features, rows)

    monkeypatch.setattr(cls, "write_rows", dying_write)
    with pytest.raises(RuntimeError, match="killed"):
        materialize_view(store, view, NOW - timedelta(days=1), NOW, batch_rows=20)
    # DuckDB streams batches of at most 20 rows (sometimes fewer): exactly the first is kept.
    assert 0 < written[0] <= 20
    assert ours.row_count(store.config, view) == written[0]
    assert store.get_feature_view("items").materialization_intervals == []
    monkeypatch.setattr(cls, "write_rows", real_write)
    assert materialize_view(store, view, NOW - timedelta(days=1), NOW, batch_rows=20) == 50
    assert read(store, [0, 49])["x"] == [0.0, 49.0]
    assert len(store.get_feature_view("items").materialization_intervals) == 1


def test_a_late_correction_below_the_watermark_reaches_the_online_store(
    online: Online, tmp_path: Path
) -> None:
    from featurestack.infra.feast_ops import materialize_store

    day = NOW - timedelta(days=3)
    store, _ = make_store(tmp_path, entity_rows(5, day), timedelta(days=30), online)
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


def test_consistency_check_finds_tampered_and_stale_online_values(
    online: Online, tmp_path: Path
) -> None:
    from featurestack.infra.consistency import check_consistency
    from featurestack.infra.online_materialize import materialize_view

    day = NOW - timedelta(days=2)
    store, view = make_store(tmp_path, entity_rows(30, day), timedelta(days=30), online)
    materialize_view(store, view, day - timedelta(days=1), NOW)
    (clean,) = check_consistency(store, sample=30, now=NOW)
    assert (clean.sampled, clean.mismatch_count, clean.behind) == (30, 0, timedelta(0))
    assert clean.online_newest == day

    # Tamper: the same event time with a later created time wins the upsert on either store.
    ours: NewestWinsOnlineStore = store._get_provider().online_store
    event, tamper = int(day.timestamp() * 1e6), int(NOW.timestamp() * 1e6)
    rows = [(encode_key_part(i), event, tamper, 123.0, f"v{i}") for i in range(30)]
    ours.write_rows(store.config, view, ["x", "label"], rows)
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


def test_the_fast_reader_returns_what_feast_returns(online: Online, tmp_path: Path) -> None:
    from featurestack.infra.online_reader import OnlineReader

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
    store, _ = make_store(tmp_path, rows, timedelta(days=1), online)
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


def test_a_new_feature_in_a_view_is_served_after_the_next_materialize(
    online: Online, tmp_path: Path
) -> None:
    """Schema change: SQLite adds the column; Redis starts a new layout and drops the old keys
    (old values are never decoded with the new layout)."""
    from feast.types import Float64 as F64

    from featurestack.infra.feast_ops import materialize_store

    at = NOW - timedelta(hours=1)
    store, view = make_store(tmp_path, entity_rows(5, at), timedelta(days=1), online)
    ours: NewestWinsOnlineStore = store._get_provider().online_store
    materialize_store(store, NOW)
    assert ours.row_count(store.config, view) == 5

    widened = entity_rows(5, at).assign(y=[10.0 * i for i in range(5)])
    widened.to_parquet(tmp_path / "src.parquet", index=False)
    entity = store.get_entity("item")
    new_view = FeatureView(
        name="items",
        entities=[entity],
        ttl=view.ttl,
        schema=[*view.schema, Field(name="y", dtype=F64)],
        source=view.batch_source,
    )
    if not isinstance(online.config, dict):  # SQLite: a write before apply is refused
        row = (encode_key_part(9), 1, 1, 1.0, "v", 2.0)
        with pytest.raises(ValueError, match="run `featurestack apply`"):
            ours.write_rows(store.config, new_view, ["x", "label", "y"], [row])
    store.apply([entity, new_view])
    new_view = store.get_feature_view("items")
    assert ours.row_count(store.config, new_view) == 0  # rebuilt empty: the next run refills it
    if isinstance(online.config, dict):  # Redis: a new layout; the old keys are gone
        import redis

        client = redis.Redis.from_url(online.config["url"])
        left = list(client.scan_iter(match=f"fs:{store.config.project}:items:*", count=1000))
        assert left == []
    materialize_store(store, NOW)
    got = store.get_online_features(
        features=["items:x", "items:y"], entity_rows=[{"id": i} for i in range(5)]
    ).to_dict()
    assert got["x"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert got["y"] == [0.0, 10.0, 20.0, 30.0, 40.0]

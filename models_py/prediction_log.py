"""The prediction log: every prediction the model server made, as Parquet partitioned by day.

Scoring must not wait for disk, so :meth:`PredictionLog.append` only puts plain rows in a
list; a background thread turns them into Parquet every ``flush_seconds`` (or sooner when
``flush_rows`` are waiting), and :meth:`PredictionLog.close` writes whatever is left, so a
clean stop loses nothing. Each flush writes new files (``date=YYYY-MM-DD/part-….parquet``,
staged under a dot-name and renamed), never rewrites one: a crash can lose at most the rows of
the last interval and never corrupts what is on disk, and several server processes can log
into the same folder.

Entities and features are JSON text, so one schema holds every model's rows; the shadow
report and the monitor parse them back (:func:`read_log`).
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featurestack.core.private import private_dir, private_file

SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string()),
        pa.field("time", pa.timestamp("us", tz="UTC")),
        pa.field("model", pa.string()),
        pa.field("version", pa.string()),
        #: champion (returned), challenger (returned: its share of traffic), shadow (never
        #: returned)
        pa.field("role", pa.string()),
        #: the join keys, JSON
        pa.field("entity", pa.string()),
        #: the model's inputs as served (request-time values included), JSON
        pa.field("features", pa.string()),
        #: the newest event time among the features: the label row this prediction is about
        pa.field("feature_time", pa.timestamp("us", tz="UTC")),
        pa.field("score", pa.float64()),
        pa.field("decision", pa.bool_()),
        pa.field("interval_low", pa.float64()),
        pa.field("interval_high", pa.float64()),
        pa.field("out_of_range", pa.list_(pa.string())),
    ]
)
COLUMNS = SCHEMA.names


def _json(value: dict[str, Any]) -> str:
    """JSON with NaN as null (the log is read by tools that refuse NaN literals); orjson,
    because encoding two dicts per prediction is most of what logging costs."""
    return orjson.dumps(value, default=str).decode()


class PredictionLog:
    """Buffered, append-only writer (thread-safe; one per server process)."""

    def __init__(self, folder: Path, flush_rows: int = 5000, flush_seconds: float = 1.0) -> None:
        self.folder = folder
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.written = 0
        self._rows: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = itertools.count()

    def append(self, rows: list[tuple[Any, ...]]) -> None:
        """Rows as tuples in :data:`COLUMNS` order; ``entity`` and ``features`` as dicts."""
        with self._lock:
            self._rows.extend(rows)
            pending = len(self._rows)
        if pending >= self.flush_rows:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._rows)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Stop the background thread and write every pending row."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()

    def flush(self) -> int:
        """Write pending rows (one new file per day they fall on); returns how many."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        by_day: dict[date, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_day.setdefault(row[1].date(), []).append(row)
        for day, day_rows in by_day.items():
            self._write(day, day_rows)
        self.written += len(rows)
        return len(rows)

    def _write(self, day: date, rows: list[tuple[Any, ...]]) -> None:
        columns = list(zip(*rows, strict=True))
        columns[5] = tuple(_json(e) for e in columns[5])
        columns[6] = tuple(_json(f) for f in columns[6])
        table = pa.Table.from_arrays(
            [pa.array(col, type=field.type) for col, field in zip(columns, SCHEMA, strict=True)],
            schema=SCHEMA,
        )
        private_dir(self.folder)  # predictions hold feature values: owner only
        folder = private_dir(self.folder / f"date={day.isoformat()}")
        name = f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}-{next(self._seq)}.parquet"
        staged = folder / f".{name}"
        pq.write_table(table, staged)
        private_file(staged).replace(folder / name)


def read_log(
    folder: Path,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """Logged predictions (``COLUMNS``), oldest first; only whole day folders in the range
    are opened."""
    files: list[Path] = []
    first = since.date() if since else None
    last = until.date() if until else None
    for day_dir in sorted(folder.glob("date=*")) if folder.exists() else []:
        day = date.fromisoformat(day_dir.name[5:])
        if (first and day < first) or (last and day > last):
            continue
        files.extend(sorted(day_dir.glob("part-*.parquet")))
    if not files:
        return SCHEMA.empty_table().to_pandas()
    frame = pa.concat_tables(pq.read_table(f, schema=SCHEMA) for f in files).to_pandas()
    keep = pd.Series(True, index=frame.index)
    if model is not None:
        keep &= frame["model"] == model
    if since is not None:
        keep &= frame["time"] >= pd.Timestamp(since)
    if until is not None:
        keep &= frame["time"] < pd.Timestamp(until)
    return frame[keep].sort_values("time", kind="stable").reset_index(drop=True)


def expand(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """The JSON column ``entity`` or ``features`` as one column per key (same index)."""
    return pd.DataFrame([json.loads(v) for v in frame[column]], index=frame.index)


def window(days: float, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[now - days, now]."""
    end = now or datetime.now(UTC)
    return end - timedelta(days=days), end

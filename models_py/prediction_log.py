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

import fcntl
import itertools
import json
import os
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featurestack.core.faults import fault_point
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
    """Buffered, append-only writer (thread-safe; one per server process).

    Once started, every appended row is also written to a journal before :meth:`append`
    returns (``_journal/<segment>.jsonl``, one ``os.write`` per request: the kernel keeps it
    if the process is killed). Each flush turns one journal segment into Parquet files named
    after it and only then deletes it. A server killed at any point leaves at most a segment
    (and a staged dot-file): the next one to start recovers every segment whose writer is gone
    (each segment is ``flock``-ed by its live writer) into the same file names, skipping a day
    already written, so nothing answered is lost and nothing is logged twice.
    """

    JOURNAL = "_journal"

    def __init__(self, folder: Path, flush_rows: int = 5000, flush_seconds: float = 1.0) -> None:
        self.folder = folder
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.written = 0
        self.recovered = 0
        self._rows: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = itertools.count()
        self._segment: tuple[Path, int] | None = None  # the journal being appended to

    def append(self, rows: list[tuple[Any, ...]]) -> None:
        """Rows as tuples in :data:`COLUMNS` order; ``entity`` and ``features`` as dicts."""
        option = orjson.OPT_SERIALIZE_NUMPY
        lines = b"".join(orjson.dumps(row, default=str, option=option) + b"\n" for row in rows)
        with self._lock:
            if self._segment is not None:
                os.write(self._segment[1], lines)
            self._rows.extend(rows)
            pending = len(self._rows)
        if pending >= self.flush_rows:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._rows)

    def start(self) -> None:
        if self._thread is None:
            self.recovered = self.recover()
            with self._lock:
                self._segment = self._open_segment()
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()

    def _open_segment(self) -> tuple[Path, int]:
        journal = private_dir(private_dir(self.folder) / self.JOURNAL)
        path = journal / f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq)}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return path, fd

    def recover(self) -> int:
        """Write the journal segments of writers that died into the log; returns the rows."""
        journal = self.folder / self.JOURNAL
        rows = 0
        for path in sorted(journal.glob("*.jsonl")) if journal.is_dir() else []:
            fd = os.open(path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a live writer's
                os.close(fd)
                continue
            try:
                found = _journal_rows(path.read_bytes())
                self._write_rows(found, path.stem)
                path.unlink()
                rows += len(found)
            finally:
                os.close(fd)
        return rows

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
        self.flush(final=True)

    def flush(self, final: bool = False) -> int:
        """Write pending rows (one new file per day they fall on); returns how many."""
        with self._lock:
            rows, self._rows = self._rows, []
            segment = self._segment
            if segment is not None and (rows or final):
                self._segment = None if final else self._open_segment()
        if not rows:
            if final and segment is not None:
                os.close(segment[1])
                segment[0].unlink(missing_ok=True)
            return 0
        stem = (
            segment[0].stem
            if segment is not None
            else (f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}-{next(self._seq)}")
        )
        self._write_rows(rows, stem)
        if segment is not None:  # written: the journal of these rows is no longer needed
            segment[0].unlink(missing_ok=True)
            os.close(segment[1])
        self.written += len(rows)
        return len(rows)

    def _write_rows(self, rows: list[tuple[Any, ...]], stem: str) -> None:
        by_day: dict[date, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_day.setdefault(row[1].date(), []).append(row)
        for day, day_rows in by_day.items():
            self._write(day, day_rows, stem)

    def _write(self, day: date, rows: list[tuple[Any, ...]], stem: str) -> None:
        private_dir(self.folder)  # predictions hold feature values: owner only
        folder = private_dir(self.folder / f"date={day.isoformat()}")
        final = folder / f"part-{stem}.parquet"
        if final.exists():  # written before its writer died: a recovery skips it
            return
        columns = list(zip(*rows, strict=True))
        columns[5] = tuple(_json(e) for e in columns[5])
        columns[6] = tuple(_json(f) for f in columns[6])
        table = pa.Table.from_arrays(
            [pa.array(col, type=field.type) for col, field in zip(columns, SCHEMA, strict=True)],
            schema=SCHEMA,
        )
        staged = folder / f".{final.name}"
        pq.write_table(table, staged)
        fault_point("prediction_log.flush")  # the fault tests kill the server here
        private_file(staged).replace(final)


def _journal_rows(raw: bytes) -> list[tuple[Any, ...]]:
    """Rows of a journal segment (a last line cut short, never answered, is dropped)."""
    rows = []
    for line in raw.split(b"\n"):
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        row[1] = datetime.fromisoformat(row[1])
        row[7] = datetime.fromisoformat(row[7]) if row[7] else None
        rows.append(tuple(row))
    return rows


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

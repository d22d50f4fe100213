"""Reports written whole or not at all: ``<stamp>.json`` per run and ``latest.json`` beside it.

A reader (the model server scraping ``latest.json``, a user's ``tail``) never sees a half
written file: each file is written to a temporary name in the same folder, flushed, and
renamed over the target (``os.replace`` is atomic on one file system). Every report is a
pydantic model, so what is written is what the type says, and reading one back is
``Model.model_validate_json``.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from featurestack.core.private import FILE_MODE, private_dir

LATEST = "latest.json"


def stamp(at: datetime | None = None) -> str:
    """A report's file stem: the UTC time to the second, sortable as text."""
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%S")


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename; the file readable
    by its owner only, in a folder only its owner may open (reports hold data values)."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    raw = data.encode() if isinstance(data, str) else data
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with open(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def to_json(report: BaseModel | dict[str, Any]) -> str:
    """The report as indented JSON (anything not JSON-native, such as a timestamp, as text;
    NaN as JSON's ``NaN``, as Python's json writes it). Fields a report never set are left
    out, so an optional section is absent rather than null."""
    payload = report.model_dump(exclude_unset=True) if isinstance(report, BaseModel) else report
    return json.dumps(payload, indent=2, default=str)


def write_report(
    folder: Path, report: BaseModel | dict[str, Any], name: str | None = None, latest: bool = True
) -> Path:
    """``folder/<name or now>.json``, then ``folder/latest.json`` with the same text."""
    text = to_json(report)
    path = write_atomic(folder / f"{name or stamp()}.json", text)
    if latest:
        write_atomic(folder / LATEST, text)
    return path

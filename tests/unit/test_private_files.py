"""The prediction log, reports and quarantine hold feature values: owner-only folders (0o700)
and files (0o600), whatever the umask."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel

from featurestack.core.reports import write_report
from featurestack.stores.offline_writes import StagedPush, stage_push
from models_py.prediction_log import PredictionLog
from validation.pushes import Intake, TablePushes, settle


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class Report(BaseModel):
    value: float


def test_logs_reports_and_quarantined_pushes_are_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a usual umask: files would be world-readable
    try:
        log = PredictionLog(tmp_path / "prediction_log")
        now = datetime.now(UTC)
        log.append(
            [("r", now, "m", "1", "champion", {"k": 1}, {"x": 1.0}, now, 0.5, True, None, None, [])]
        )
        log.close()
        (day,) = (tmp_path / "prediction_log").iterdir()
        (part,) = day.iterdir()
        assert mode(tmp_path / "prediction_log") == mode(day) == 0o700 and mode(part) == 0o600

        path = write_report(tmp_path / "reports" / "gate", Report(value=1.0), "run")
        assert mode(path) == mode(path.with_name("latest.json")) == 0o600
        assert mode(path.parent) == 0o700

        table = pa.table({"id": [1], "x": [1.0]})
        staged = stage_push(tmp_path, "p", "v", "/x", table, table.schema)
        push = StagedPush("p", "v", staged)
        intake = Intake(tables={"t": TablePushes("t", staged=[push])})
        (outcome,) = settle(intake, None, {"t"}, tmp_path / "quarantine" / "run")
        moved = Path(outcome.file)
        assert outcome.status == "quarantined" and mode(moved) == 0o600
        for folder in [tmp_path / "quarantine", *moved.relative_to(tmp_path).parents[:-1]]:
            assert mode(tmp_path / folder) == 0o700, folder
    finally:
        os.umask(old)

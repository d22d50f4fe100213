"""The instants a data folder was last built and published as of: the ground truth a run
``--as-of`` an instant needs (an incremental build after a later one would keep later rows; a
publication before a later one would shrink what Feast serves).

Kept in ``<data>/reports/.state/time.json``, written whole by rename like every report.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from featurestack.core.reports import write_report
from featurestack.core.settings import Settings


class TimeState(BaseModel):
    """When this data folder was last built and published as of (the clock's time for a live
    run)."""

    built: str | None = None
    published: str | None = None


def _path(settings: Settings) -> Path:
    return settings.reports_dir / ".state" / "time.json"


def time_state(settings: Settings) -> TimeState:
    path = _path(settings)
    try:
        return TimeState.model_validate_json(path.read_text()) if path.exists() else TimeState()
    except ValueError:
        return TimeState()


def record_time(settings: Settings, **instants: datetime | None) -> None:
    """``built=`` and/or ``published=`` an instant (None: now)."""
    state = time_state(settings)
    for key, at in instants.items():
        setattr(state, key, (at or datetime.now(UTC)).isoformat())
    write_report(_path(settings).parent, state.model_dump(), "time", latest=False)

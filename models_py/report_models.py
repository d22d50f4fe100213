"""The reports of monitoring and shadow comparisons, as types: what ``featurestack monitor`` and
``featurestack shadow-report`` write (JSON under ``data/reports/``) and what the model server
reads back for ``/metrics``.

A leaf module (pydantic only), so the server can read a monitor report without importing the
monitor. Rows inside a report are ``TypedDict``s: validated, yet plain dicts a reader indexes
as before. Keys a report did not set are not written (``featurestack.core.reports``), so a
report reads exactly as its JSON did before it had a type.
"""

from __future__ import annotations

from typing import Any, NotRequired

from pydantic import BaseModel, ConfigDict, PrivateAttr
from typing_extensions import TypedDict


class FeatureDrift(TypedDict):
    """One feature compared: PSI, KS and the verdict (``note`` when not compared)."""

    feature: str
    psi: float | None
    ks: float | None
    drifted: bool
    ks_limit: NotRequired[float]
    recent_rows: NotRequired[int]
    reference_rows: NotRequired[int]
    note: NotRequired[str]


class PredictionDrift(TypedDict):
    """The scores compared with the holdout's."""

    psi: float | None
    ks: float | None
    drifted: bool
    ks_limit: NotRequired[float]
    recent_rows: NotRequired[int]
    reference_rows: NotRequired[int]
    note: NotRequired[str]


class DayValue(TypedDict):
    day: str
    value: float
    rows: int


class Performance(TypedDict):
    """The primary metric on recent labelled rows against the holdout."""

    metric: str
    holdout: float | None
    labelled_rows: int
    value: float | None
    degradation: float | None
    degraded: bool
    by_day: list[DayValue]
    #: binary tasks: expected calibration error on the labelled rows
    calibration_error: NotRequired[float]


class Health(TypedDict):
    score: float
    status: str
    recommendations: list[str]


class Alert(TypedDict):
    kind: str
    subject: str
    psi: NotRequired[float | None]
    ks: NotRequired[float | None]
    degradation: NotRequired[float | None]


class MonitorReport(BaseModel):
    """``featurestack monitor``: drift, performance and health of a served version."""

    model_config = ConfigDict(extra="forbid")

    model: str
    version: str
    run_id: str
    at: str
    source: str
    window_days: float
    recent_rows: int
    recent_event_times: list[str] | None
    reference_rows: dict[str, int]
    thresholds: dict[str, Any]
    feature_drift: list[FeatureDrift]
    prediction_drift: PredictionDrift
    performance: Performance
    health: Health
    alerts: list[Alert]
    #: ensembles: mean standard deviation of the members' outputs on the recent rows
    member_disagreement: float | None = None
    #: (fitted reference rows, holdout reference rows, recent rows): the report's figures are
    #: drawn from them; never written
    _frames: tuple[Any, Any, Any] | None = PrivateAttr(default=None)


class ShadowReport(BaseModel):
    """``featurestack shadow-report``: champion against challenger on logged traffic."""

    model_config = ConfigDict(extra="forbid")

    model: str
    at: str
    window_days: float
    rows: dict[str, int]
    versions: dict[str, list[str]]
    champion_scores: dict[str, float | int]
    challenger_scores: dict[str, float | int]
    score_psi: float | None = None
    score_ks: float | None = None
    agreement: dict[str, float | int] | None = None
    note: str | None = None
    labelled_rows: int = 0
    metrics: dict[str, dict[str, float]] = {}
    metrics_note: str | None = None

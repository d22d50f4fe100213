"""Does the online store serve what the offline store says is current?

For every online feature view, a sample of entity keys from the published source is looked up
twice: online (`get_online_features`) and offline, point-in-time at the same instant
(`get_historical_features` with the entity rows stamped "now"). Both apply the view's TTL
against that instant, so they must agree exactly; any difference is a materialization bug or a
stale online store. Staleness is reported as the age of the newest event in each store.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from featurestack.core.reports import stamp, write_report
from featurestack.core.settings import Settings
from featurestack.infra.feast_ops import batch_source_path

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView


@dataclass
class ViewConsistency:
    view: str
    sampled: int
    mismatch_count: int = 0
    #: up to 10 of them: key, feature, online value, offline value
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    online_newest: datetime | None = None
    offline_newest: datetime | None = None

    @property
    def behind(self) -> timedelta | None:
        """How far the online store's newest event trails the offline one."""
        if self.online_newest is None or self.offline_newest is None:
            return None
        return max(timedelta(0), self.offline_newest - self.online_newest)

    def as_dict(self) -> dict[str, Any]:
        def iso(ts: datetime | None) -> str | None:
            return ts.isoformat() if ts else None

        return {
            "view": self.view,
            "sampled": self.sampled,
            "mismatch_count": self.mismatch_count,
            "mismatches": self.mismatches,
            "online_newest": iso(self.online_newest),
            "offline_newest": iso(self.offline_newest),
            "online_behind_seconds": self.behind.total_seconds() if self.behind else 0.0,
        }


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # NaN on both sides
    return bool(a == b)


def _online_newest(store: FeatureStore, view: FeatureView) -> datetime | None:
    from featurestack.stores.online import NewestWinsOnlineStore, from_micros

    online = store._get_provider().online_store
    if not isinstance(online, NewestWinsOnlineStore):
        return None
    us = online.newest_event_micros(store.config, view)
    return from_micros(us) if us is not None else None


def check_view(
    store: FeatureStore, view: FeatureView, sample: int, seed: int, now: datetime
) -> ViewConsistency:
    import pandas as pd

    source = view.batch_source
    mapping = (source.field_mapping if source else None) or {}
    keys = [c.name for c in view.entity_columns]
    source_keys = [{v: k for k, v in mapping.items()}.get(k, k) for k in keys]
    path = batch_source_path(view)
    ts_field = source.timestamp_field if source else "event_timestamp"
    table = pq.read_table(path, columns=[*dict.fromkeys([*source_keys, ts_field])])
    result = ViewConsistency(view.name, 0)
    if table.num_rows:
        result.offline_newest = pc.max(table[ts_field]).as_py()
    result.online_newest = _online_newest(store, view)
    distinct = table.select(source_keys).group_by(source_keys).aggregate([]).to_pylist()
    picked = random.Random(seed).sample(distinct, min(sample, len(distinct)))
    if not picked:
        return result
    rows = [{k: r[s] for k, s in zip(keys, source_keys, strict=True)} for r in picked]
    refs = [f"{view.name}:{f.name}" for f in view.features]
    try:  # our stores: read at ``now`` (a backtest checks as of its own instant)
        from featurestack.infra.online_reader import OnlineReader

        online = OnlineReader(store, refs).read(rows, now)
    except TypeError:  # another online store: Feast's path, at the clock's now
        online = store.get_online_features(features=refs, entity_rows=rows).to_dict()
    entity_df = pd.DataFrame(rows).assign(event_timestamp=now)
    offline = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
    offline = offline.astype(object).where(offline.notna(), None)
    result.sampled = len(rows)
    for i, row in enumerate(rows):
        match = offline
        for k in keys:
            match = match[match[k] == row[k]]
        expected = match.iloc[0]
        for f in view.features:
            got, want = online[f.name][i], expected[f.name]
            if hasattr(want, "item"):
                want = want.item()
            if not _same(got, want):
                result.mismatch_count += 1
                if len(result.mismatches) < 10:
                    result.mismatches.append(
                        {"key": row, "feature": f.name, "online": got, "offline": want}
                    )
    return result


def check_consistency(
    store: FeatureStore, sample: int = 20, seed: int = 0, now: datetime | None = None
) -> list[ViewConsistency]:
    """One :class:`ViewConsistency` per online feature view."""
    at = now or datetime.now(UTC)
    return [
        check_view(store, view, sample, seed, at)
        for view in store.list_feature_views()
        if view.online
    ]


def summary(results: list[ViewConsistency], now: datetime) -> str:
    lines = [f"{'view':<16} {'sampled':>7} {'mismatches':>10}  newest online → age   behind"]
    for r in results:
        age = f"{(now - r.online_newest).total_seconds() / 3600:.1f} h" if r.online_newest else "–"
        newest = f"{r.online_newest:%Y-%m-%d %H:%M}" if r.online_newest else "(empty)"
        behind = f"{r.behind.total_seconds() / 3600:.1f} h" if r.behind is not None else "–"
        lines.append(
            f"{r.view:<16} {r.sampled:>7} {r.mismatch_count:>10}  {newest} → {age:<8} {behind}"
        )
        for m in r.mismatches:
            lines.append(
                f"    {m['key']} {m['feature']}: online {m['online']!r}, offline {m['offline']!r}"
            )
    return "\n".join(lines)


class ConsistencyReport(BaseModel):
    """``data/reports/consistency/<stamp>.json``: one row per online view."""

    at: str
    views: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return all(v["mismatch_count"] == 0 for v in self.views)


@dataclass
class ConsistencyCheck:
    """A check that ran: its results, its report on disk and the terminal summary."""

    results: list[ViewConsistency]
    report: ConsistencyReport
    path: Path
    text: str

    @property
    def ok(self) -> bool:
        return self.report.ok


def run_check(
    store: FeatureStore,
    settings: Settings,
    sample: int = 20,
    seed: int = 0,
    now: datetime | None = None,
) -> ConsistencyCheck:
    """Check every online view at ``now`` (default: the clock) and write the report
    (``featurestack check-consistency`` and the pipeline's Feast stage)."""
    now = now or datetime.now(UTC)
    results = check_consistency(store, sample=sample, seed=seed, now=now)
    report = ConsistencyReport(at=now.isoformat(), views=[r.as_dict() for r in results])
    path = write_report(settings.reports_dir / "consistency", report, stamp(), latest=False)
    return ConsistencyCheck(results, report, path, summary(results, now) + f"\nreport: {path}")

"""Every project's safety nets: no feature leaks the future, and incremental builds equal a
full rebuild (``featurestack check-leakage``).

Both work on any project from its dbt manifest alone, never from model names: every model
tagged ``publish`` (what the gate publishes, validation/tables.py) is compared, keyed by its
``meta.primary_key`` and timed by its ``meta.event_timestamp``.

* **Leakage**: the project is built from its raw folder as of each cut T (dbt var ``as_of``,
  which the project's staging models apply to what was known then) and compared with a full
  build: every feature row at or before T must be identical (``check_exact``). A label model
  (``meta.label_columns``) is compared on the rows known by T: its ``label_timestamp`` column
  (when the answer became known) at or before T; a label model without one is reported as not
  checked. A build as of T equal to the full build, rows after T included, means the staging
  models ignore ``as_of``, which would make the check vacuous: that is a failure too. (Rows
  stamped after T, such as a day's row stamped at its end and built from the part of the day
  known by T, are not final and not compared.)
* **Incremental = full**: the build as of the first cut is then built again incrementally with
  all the raw data, and every published table must equal the full build exactly.

Each build goes to a scratch data folder with its own dbt target path, so the project's
warehouse, published data and ``dbt_project/target`` are left as they were.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from featurestack.core.errors import CheckFailed
from featurestack.core.settings import Settings
from featurestack.infra.dbt_ops import run_dbt

#: the label model's column saying when its answer became known (docs/features.md)
KNOWN_AT = "label_timestamp"


@dataclass
class TableCheck:
    """One table compared in one check."""

    check: str
    table: str
    rows: int
    problem: str | None = None


@dataclass
class LeakageReport:
    cuts: list[str]
    checks: list[TableCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[TableCheck]:
        return [c for c in self.checks if c.problem]

    @property
    def ok(self) -> bool:
        return not self.failed

    def lines(self) -> list[str]:
        out = [
            f"{c.check:<22} {c.table:<40} {c.rows:>8} rows  {c.problem or 'identical'}"
            for c in self.checks
        ]
        return out + self.notes


def _scratch(settings: Settings, folder: Path) -> Settings:
    return dataclasses.replace(
        settings, data_dir=folder, mlflow_tracking_uri=f"sqlite:///{folder / 'mlflow.db'}"
    )


def _build(settings: Settings, as_of: datetime | None, *extra: str) -> None:
    args = ["--target-path", str(settings.data_dir / "dbt_target"), *extra]
    if as_of is not None:
        args += ["--vars", json.dumps({"as_of": as_of.isoformat()})]
    outcome = run_dbt(settings, extra=args)
    if not outcome.success:
        when = f"as of {as_of.isoformat()}" if as_of else "with all raw data"
        raise CheckFailed(f"the build {when} failed, nothing was compared:\n{outcome.summary()}")


def _tables(settings: Settings) -> dict[str, tuple[list[str], str, tuple[str, ...]]]:
    """Published tables: name → (primary key, event time column, label columns)."""
    from validation.tables import dbt_vars, load_manifest, publishable_tables

    manifest = load_manifest(settings.data_dir / "dbt_target" / "manifest.json")
    variables = dbt_vars(settings.project.dbt_project_dir)
    return {
        name: (list(spec.primary_key), spec.event_timestamp, spec.label_columns)
        for name, spec in publishable_tables(manifest, variables).items()
    }


def _read(settings: Settings, table: str, keys: list[str]) -> pd.DataFrame:
    import duckdb

    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        frame = con.sql(f'select * from "{table}"').df()
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def _difference(got: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> str | None:
    """None when equal, else what differs first (row counts, or a key and its columns)."""
    if len(got) != len(expected):
        extra = got.merge(expected[keys], on=keys, how="left", indicator=True)
        only = extra[extra["_merge"] == "left_only"][keys].head(3).to_dict("records")
        return f"{len(got)} rows instead of {len(expected)} (e.g. only here: {only})"
    try:
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
    except AssertionError:
        same = got.columns.equals(expected.columns)
        if not same:
            return f"columns {list(got.columns)} instead of {list(expected.columns)}"
        for column in got.columns:
            a, b = got[column], expected[column]
            differs = ~((a == b) | (a.isna() & b.isna()))
            if differs.any():
                i = int(differs.to_numpy().argmax())
                where = expected.loc[i, keys].to_dict()
                return f"{column} differs at {where}: {a.iloc[i]!r} instead of {b.iloc[i]!r}"
        return "values differ"
    return None


def check_leakage(
    settings: Settings, cuts: list[datetime], incremental: bool = True, work: Path | None = None
) -> LeakageReport:
    """Build the project as of each cut and in full (and incrementally after the first cut),
    in scratch folders under ``work`` (a temporary folder by default), and compare."""
    if not cuts:
        raise CheckFailed("give at least one cut instant (--cut 2026-06-30T12:00:00Z)")
    report = LeakageReport([c.isoformat() for c in cuts])
    with tempfile.TemporaryDirectory(prefix="featurestack-leakage-") as tmp:
        root = work or Path(tmp)
        full = _scratch(settings, root / "full")
        _build(full, None, "--full-refresh")
        tables = _tables(full)
        whole = {t: _read(full, t, keys) for t, (keys, _, _) in tables.items()}
        for i, cut in enumerate(cuts):
            at = pd.Timestamp(cut)
            built = _scratch(settings, root / f"cut{i}")
            _build(built, cut, "--full-refresh")
            for table, (keys, ts, labels) in tables.items():
                got, expected = _read(built, table, keys), whole[table]
                name = f"as of {at:%Y-%m-%d %H:%M}"
                later = got[ts] > at
                if later.any() and _difference(got, expected, keys) is None:
                    problem = (
                        f"the build as of {at} is the full build, {int(later.sum())} rows after "
                        "it included: the staging models ignore var('as_of'), so leakage "
                        "cannot be checked; filter each source on it (known_at in "
                        "dbt_project/macros/as_of.sql)"
                    )
                    report.checks.append(TableCheck(name, table, len(got), problem))
                    continue
                # A row stamped after T (a day's row stamped at its end, built from the part
                # known by T) is not final yet: only rows at or before T must be.
                got = got[~later].reset_index(drop=True)
                if labels:
                    if KNOWN_AT not in expected.columns:
                        report.notes.append(
                            f"{table}: a label model without a {KNOWN_AT} column (when its "
                            "answer became known) is not checked for leakage"
                        )
                        continue
                    got = got[got[KNOWN_AT] <= at].reset_index(drop=True)
                    expected = expected[expected[KNOWN_AT] <= at].reset_index(drop=True)
                else:
                    expected = expected[expected[ts] <= at].reset_index(drop=True)
                report.checks.append(
                    TableCheck(name, table, len(expected), _difference(got, expected, keys))
                )
            if incremental and i == 0:
                _build(built, None)
                for table, (keys, _, _) in tables.items():
                    got = _read(built, table, keys)
                    differs = _difference(got, whole[table], keys)
                    report.checks.append(TableCheck("incremental = full", table, len(got), differs))
    return report

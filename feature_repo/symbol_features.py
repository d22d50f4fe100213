"""Daily symbol features, read from the Parquet the gate published for `feat_symbol__daily`.

The source path is resolved from FEATURESTACK_DATA_DIR when Feast loads this module (at
`feast apply`), so the registry always points at the published file of that data folder.
"""

from datetime import timedelta

from entities import symbol
from feast import FeatureView, Field, FileSource
from feast.types import Float64

from featurestack.settings import load_settings

symbol_daily_source = FileSource(
    name="symbol_daily_source",
    path=str(load_settings().published_table("feat_symbol__daily")),
    timestamp_field="event_timestamp",
    description="dbt model feat_symbol__daily, as published by the gate.",
)

symbol_daily_fv = FeatureView(
    name="symbol_daily",
    entities=[symbol],
    # A weekend or a holiday leaves at most a few days between closes; a week tolerates both.
    ttl=timedelta(days=7),
    schema=[
        Field(name="close", dtype=Float64, description="Closing price after corrections."),
        Field(
            name="return_1d",
            dtype=Float64,
            description="close / previous trading day's close - 1.",
        ),
        Field(
            name="return_5d",
            dtype=Float64,
            description="close / close 5 trading days earlier - 1.",
        ),
        Field(
            name="volatility_20d",
            dtype=Float64,
            description="Sample std of return_1d over the last 20 trading days (incl. today).",
        ),
        Field(
            name="volume_zscore_20d",
            dtype=Float64,
            description="Volume z-score against the last 20 trading days (incl. today).",
        ),
    ],
    source=symbol_daily_source,
    online=True,
    description="Daily price features per symbol (dbt: feat_symbol__daily).",
    tags={"dbt_model": "feat_symbol__daily"},
)

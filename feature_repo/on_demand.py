"""On-demand features: computed when features are requested, from a value the caller sends.

The same transformation runs for online lookups and for training sets (Feast applies it after
the point-in-time join), so it cannot drift between the two.
"""

import pandas as pd
from dbt_features import symbol_daily_fv
from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64

quote_request = RequestSource(
    name="quote_request",
    schema=[
        Field(name="quote_price", dtype=Float64, description="A price quoted at request time."),
    ],
    description="Values only known when a prediction is requested.",
)


@on_demand_feature_view(
    sources=[symbol_daily_fv[["close", "volatility_20d"]], quote_request],
    # No Field descriptions here: Feast 0.67 compares the declared Fields with the ones it
    # infers by running the function, descriptions included, and the inferred ones have none.
    schema=[
        Field(name="quote_vs_close", dtype=Float64),
        Field(name="quote_move_in_vols", dtype=Float64),
    ],
    description="A request-time price against the symbol's last close: quote_vs_close = "
    "quote_price / close - 1; quote_move_in_vols = quote_vs_close / volatility_20d (the move "
    "in daily standard deviations).",
)
def quote_vs_last_close(inputs: pd.DataFrame) -> pd.DataFrame:
    move = inputs["quote_price"] / inputs["close"] - 1
    return pd.DataFrame(
        {"quote_vs_close": move, "quote_move_in_vols": move / inputs["volatility_20d"]},
        index=inputs.index,
    )

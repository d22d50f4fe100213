"""Feature services: the versioned feature sets models are trained and served with.

A new version (``_v2``) is added rather than an existing one changed, so a registered model
keeps resolving the features it was trained on.
"""

from dbt_features import account_daily_fv, market_daily_fv, symbol_daily_fv
from feast import FeatureService
from on_demand import quote_vs_last_close

next_day_up_v1 = FeatureService(
    name="next_day_up_v1",
    features=[symbol_daily_fv, market_daily_fv],
    description="Next-day direction classifier (model next_day_up): price, volume, earnings "
    "calendar and market-relative features of the symbol.",
    tags={"model": "next_day_up"},
)

account_profit_v1 = FeatureService(
    name="account_profit_v1",
    features=[account_daily_fv],
    description="Next-day profit regression per account (model account_profit): activity, "
    "realized profit, rolling win rates, tier and account age.",
    tags={"model": "account_profit"},
)

upper_circuit_v1 = FeatureService(
    name="upper_circuit_v1",
    features=[symbol_daily_fv, market_daily_fv],
    description="Rare-event classifier (model upper_circuit): the symbol's features as of the "
    "close before an earnings announcement.",
    tags={"model": "upper_circuit"},
)

quote_check_v1 = FeatureService(
    name="quote_check_v1",
    features=[symbol_daily_fv[["close", "volatility_20d"]], quote_vs_last_close],
    description="How far a price quoted at request time is from the last close, in returns "
    "and in daily volatilities (needs quote_price in the request).",
    tags={"model": "none"},
)

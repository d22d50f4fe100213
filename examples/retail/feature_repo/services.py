"""Feature services: the versioned feature sets a model is trained and served with.

dbt_features.py is generated from the dbt models tagged `feast` (`featurestack codegen`);
`feat_store_product__daily` becomes `store_product_daily_fv`, a view keyed by two entities
(store and product: its meta.primary_key has two key columns), and `feat_store__daily`
`store_daily_fv`, keyed by store alone: a service joins both on store_id. Change: add a
service per model (a new `_v2` rather than changing one a registered model uses).
"""

from dbt_features import store_daily_fv, store_product_daily_fv
from feast import FeatureService

demand_units_v1 = FeatureService(
    name="demand_units_v1",
    features=[store_product_daily_fv, store_daily_fv],
    description="Units a store sells of a product tomorrow (model demand_units).",
    tags={"model": "demand_units"},
)

demand_spike_v1 = FeatureService(
    name="demand_spike_v1",
    # either order: every stage takes the key columns from the views that carry them
    features=[store_daily_fv, store_product_daily_fv],
    description="Will tomorrow's demand beat the usual by a quarter (model demand_spike).",
    tags={"model": "demand_spike"},
)

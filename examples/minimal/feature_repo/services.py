"""Feature services: the versioned feature sets a model is trained and served with.

dbt_features.py is generated from the dbt models tagged `feast` (`featurestack codegen`);
each model `feat_<entity>__<grain>` becomes `<entity>_<grain>_fv`. Change: add a service per
model (a new `_v2` rather than changing one a registered model uses).
"""

from dbt_features import customer_daily_fv
from feast import FeatureService

customer_reorder_v1 = FeatureService(
    name="customer_reorder_v1",
    features=[customer_daily_fv],
    description="Will the customer order again within 7 days (model customer_reorder).",
    tags={"model": "customer_reorder"},
)

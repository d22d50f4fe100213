"""Feature services: the versioned feature sets models are trained and served with."""

from feast import FeatureService
from symbol_features import symbol_daily_fv

next_day_up_v1 = FeatureService(
    name="next_day_up_v1",
    features=[symbol_daily_fv],
    description="Features of the next-day direction classifier (model next_day_up).",
    tags={"model": "next_day_up"},
)

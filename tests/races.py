"""A tiny racing project in code (issue 18): several events a day, request-time odds, labels
stamped when a race is run, after the features. Shared by the time-model tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from feast import (
    Entity,
    FeatureService,
    FeatureStore,
    FeatureView,
    Field,
    FileSource,
    RequestSource,
)
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64

from featurestack.infra.feast_ops import scratch_repo_config

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
STORE = "featurestack.stores.offline.DuckDBAsofOfflineStore"


@dataclass
class Races:
    store: FeatureStore
    #: dog features: several rows a day per dog (form updated after each race)
    form: pd.DataFrame
    #: one row per (dog, race): the race start, the odds then, and whether the dog won
    runs: pd.DataFrame


def race_frames(seed: int = 7, dogs: int = 6, races: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Races every 2-5 hours, 3 dogs each; results 1-29 minutes after the start; form rows
    stamped 45 minutes after each run (after its result)."""
    rng = np.random.default_rng(seed)
    starts = T0 + pd.to_timedelta(np.cumsum(rng.integers(120, 300, races)), unit="min")
    runs, form = [], []
    for race_id, start in enumerate(starts):
        for dog in rng.choice(dogs, 3, replace=False):
            won = int(rng.random() < 0.33)
            runs.append(
                {
                    "dog_id": int(dog),
                    "race_id": race_id,
                    "event_timestamp": start,
                    "odds_at_start": float(rng.uniform(1.5, 9.0)),
                    "won": won,
                    "result_at": start + timedelta(minutes=int(rng.integers(1, 30))),
                }
            )
            form.append(
                {
                    "dog_id": int(dog),
                    "event_timestamp": start + timedelta(minutes=45),
                    "rating": float(rng.normal(50, 10)),
                }
            )
    return pd.DataFrame(form), pd.DataFrame(runs)


def races_store(folder: Path) -> Races:
    """A Feast repo in ``folder``: ``dog_form`` (rating), ``odds_vs_rating`` (an on-demand view
    of the rating and the odds sent with the request) and the service ``race_v1``."""
    form, runs = race_frames()
    path = folder / "dog_form.parquet"
    form.to_parquet(path, index=False)
    dog = Entity(name="dog", join_keys=["dog_id"])
    view = FeatureView(
        name="dog_form",
        entities=[dog],
        ttl=timedelta(days=3),
        schema=[Field(name="dog_id", dtype=Int64), Field(name="rating", dtype=Float64)],
        source=FileSource(
            name="dog_form_source", path=str(path), timestamp_field="event_timestamp"
        ),
    )
    bet = RequestSource(name="bet", schema=[Field(name="odds", dtype=Float64)])

    @on_demand_feature_view(
        sources=[view, bet], schema=[Field(name="odds_x_rating", dtype=Float64)]
    )
    def odds_vs_rating(inputs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"odds_x_rating": inputs["odds"] * inputs["rating"]})

    service = FeatureService(name="race_v1", features=[view, odds_vs_rating])
    store = FeatureStore(config=scratch_repo_config(folder, "races", STORE))
    store.apply([dog, view, odds_vs_rating, service])
    return Races(store, form, runs)

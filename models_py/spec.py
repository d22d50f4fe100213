"""Model specs: one YAML per model in models_py/specs/, validated before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from featurestack.settings import SPECS_DIR


class LabelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The dbt label model, as published by the gate.
    model: str
    #: The target column in it.
    target: str


class SplitSpec(BaseModel):
    """Time-based split by distinct event dates: train | validation | holdout, oldest first."""

    model_config = ConfigDict(extra="forbid")

    validation_fraction: float = Field(0.15, gt=0, lt=1)
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    #: Dates dropped before each later segment, so no training label overlaps what follows.
    embargo_periods: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitSpec:
        if self.validation_fraction + self.holdout_fraction >= 0.9:
            raise ValueError("validation_fraction + holdout_fraction must leave ≥ 10 % to train on")
        return self


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    feature_service: str
    label: LabelSpec
    task: Literal["binary", "multiclass", "regression", "quantile"]
    primary_metric: str = "roc_auc"
    split: SplitSpec = Field(default_factory=SplitSpec)
    plugin: str
    params: dict[str, Any] = {}
    seed: int = 42


class SpecError(ValueError):
    """A spec file is missing or invalid; the message says which field and why."""


def spec_path(name_or_path: str) -> Path:
    """Resolve a spec name (``next_day_up``) or a path to its YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    return SPECS_DIR / f"{name_or_path}.yaml"


def load_spec(name_or_path: str) -> ModelSpec:
    path = spec_path(name_or_path)
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in SPECS_DIR.glob("*.yaml")))
        raise SpecError(f"no model spec {path}; known specs: {known}")
    try:
        return ModelSpec(**yaml.safe_load(path.read_text()))
    except ValidationError as exc:
        raise SpecError(f"invalid model spec {path}:\n{exc}") from exc


def all_specs() -> list[ModelSpec]:
    return [load_spec(str(p)) for p in sorted(SPECS_DIR.glob("*.yaml"))]

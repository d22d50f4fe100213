"""What featurestack persists in MLflow, named once: tags, artifact names, aliases, and how a
spec is read back from a run.

Every name here is on disk in existing tracking stores (runs, model versions, artifacts), so
none may change; training writes them (models_py/run_log.py, models_py/registry.py), scoring,
monitoring, shadow reports and ``reproduce`` read them. Kept in one leaf module, as MLflow keeps
its own in ``mlflow/utils/mlflow_tags.py``, so a reader finds the whole contract on one page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models_py.spec import ModelSpec

#: every tag featurestack sets on a run or a model version starts with this
TAG_PREFIX = "featurestack."

# -- aliases of a registered model ----------------------------------------------------------
CHAMPION = "champion"
CHALLENGER = "challenger"

# -- run tags (after the prefix) -------------------------------------------------------------
#: the spec's name; its YAML is the artifact :func:`spec_artifact`
SPEC = "spec"
FEATURE_SERVICE = "feature_service"
FEATURE_REFS = "feature_refs"
LABEL_MODEL = "label_model"
GIT_COMMIT = "git_commit"
SEED = "seed"
DBT_MANIFEST_SHA256 = "dbt_manifest_sha256"
#: the newest event time of the rows the model was fitted on (warm starts go on after it)
TRAIN_END = "train_end"
#: the version a warm start continued from (on the run and on the version)
PARENT_VERSION = "parent_version"
#: an Optuna trial's number, on its nested run
TRIAL = "trial"

# -- model version tags (after the prefix) ---------------------------------------------------
RUN_ID = "run_id"
THRESHOLD = "threshold"
TASK = "task"
PROMOTED_AT = "promoted_at"
PROMOTION_REASON = "promotion_reason"
PREVIOUS_CHAMPION = "previous_champion"
ROLLED_BACK = "rolled_back"
DECISION_REASON = "decision_reason"
#: Feast's MLflow integration: the service a version resolves to (not ours: no prefix)
FEAST_SERVICE_TAG = "feast.feature_service"

# -- artifacts of a training run -------------------------------------------------------------
#: per feature, the [min, max] seen in training: scoring flags inputs outside it
INPUT_RANGES = "input_ranges.json"
#: Feast's MLflow integration: the features a run used, checked when a version is resolved
FEAST_FEATURES = "feast_features.json"
#: A sample of what the version saw, with its scores: the baseline ``featurestack monitor``
#: compares served features and predictions with (models_py/monitor.py).
MONITORING_REFERENCE = "monitoring/reference.parquet"
#: the logged model's artifact path
MODEL = "model"


def tag(name: str) -> str:
    """The full tag key of one of the names above."""
    return TAG_PREFIX + name


def data_tag(stem: str) -> str:
    """The tag holding the SHA-256 of a published table (or file) the run read."""
    return f"{TAG_PREFIX}data.{stem}.sha256"


def version_tag(package: str) -> str:
    """The tag holding a package's version at training time."""
    return f"{TAG_PREFIX}version.{package}"


def spec_artifact(spec_name: str) -> str:
    """Where a run keeps the spec it was trained from (YAML, as validated)."""
    return f"spec/{spec_name}.yaml"


def spec_from_run(run: Any, default_name: str | None = None) -> ModelSpec:
    """The spec a training run logged, read back from its artifact.

    ``run`` is an ``mlflow.entities.Run``; ``default_name`` is used when the run has no spec
    tag (a run from before the tag was set); without either, :class:`LookupError`.
    """
    import mlflow
    import yaml

    from featurestack.core.errors import NotFound
    from models_py.spec import ModelSpec

    name = run.data.tags.get(tag(SPEC)) or default_name
    if not name:
        raise NotFound(f"run {run.info.run_id} is not a featurestack training run (no spec tag)")
    text = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/{spec_artifact(name)}")
    return ModelSpec(**yaml.safe_load(text))

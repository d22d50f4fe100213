"""The Feast project; its name must match `project:` in feature_store.yaml."""

from feast import Project

project = Project(
    name="featurestack",
    description="SQL features built by dbt on DuckDB, validated by the gate, served by Feast.",
)

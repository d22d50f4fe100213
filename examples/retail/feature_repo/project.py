"""The Feast project; its name must match `project:` in feature_store.yaml."""

from feast import Project

project = Project(name="retail", description="Daily demand per store and product.")

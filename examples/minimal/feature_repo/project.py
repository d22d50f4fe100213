"""The Feast project; its name must match `project:` in feature_store.yaml."""

from feast import Project

project = Project(name="minimal", description="A featurestack project.")

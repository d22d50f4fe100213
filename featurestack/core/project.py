"""A project is a folder; featurestack is the tool over it.

A project holds what a team owns: ``dbt_project/`` (its dbt project), ``feature_repo/`` (its
Feast repo), its model specs, its gate rules and optionally plugins of its own. featurestack
finds it as dbt and Feast find theirs: ``--project-dir`` or ``FEATURESTACK_PROJECT_DIR``, else
the nearest parent of the working directory holding ``dbt_project/dbt_project.yml`` and
``feature_repo/``. An optional ``featurestack.yml`` at the root says where the rest lives and
what ``featurestack run`` trains::

    name: retail                 # shown in summaries (default: the folder's name)
    specs: specs                 # folder of model specs (default specs/)
    gate_rules: gate.yml         # the gate's rules (default gate.yml)
    run:
      models: [demand_next_day]  # the specs `featurestack run` trains (default: every spec)
    plugins: [my_plugins]        # modules imported before training (project plugins)

Nothing here reads a file at import time; :func:`find_project` is called when a command
needs the project.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from featurestack.core.errors import NotFound, UsageError

PROJECT_FILE = "featurestack.yml"
ENV = "FEATURESTACK_PROJECT_DIR"


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: the specs `featurestack run` trains and scores (None: every spec of the project)
    models: list[str] | None = None


class ProjectConfig(BaseModel):
    """``featurestack.yml``: every field optional."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    specs: str = "specs"
    gate_rules: str = "gate.yml"
    run: RunConfig = Field(default_factory=RunConfig)
    plugins: list[str] = []


def dbt_target_dir(dbt_project_dir: Path) -> Path:
    """Where dbt writes its artefacts (manifest, run results): ``target/``, or ``DBT_TARGET_PATH``
    as dbt itself reads it (relative to the dbt project), so two builds of one project in
    parallel (test workers, CI jobs) can keep theirs apart."""
    return dbt_project_dir / os.environ.get("DBT_TARGET_PATH", "target")


@dataclass(frozen=True)
class Project:
    """The folders and files of one project (absolute paths)."""

    root: Path
    config: ProjectConfig

    @property
    def name(self) -> str:
        return self.config.name or self.root.name

    @property
    def dbt_project_dir(self) -> Path:
        return self.root / "dbt_project"

    @property
    def dbt_target_dir(self) -> Path:
        return dbt_target_dir(self.dbt_project_dir)

    @property
    def manifest(self) -> Path:
        return self.dbt_target_dir / "manifest.json"

    @property
    def feature_repo_dir(self) -> Path:
        return self.root / "feature_repo"

    @property
    def specs_dir(self) -> Path:
        return (self.root / self.config.specs).resolve()

    @property
    def gate_rules(self) -> Path:
        return (self.root / self.config.gate_rules).resolve()

    @property
    def default_data_dir(self) -> Path:
        return self.root / "data"


def is_project(folder: Path) -> bool:
    return (folder / "dbt_project" / "dbt_project.yml").is_file() and (
        folder / "feature_repo"
    ).is_dir()


def load_project(root: Path) -> Project:
    """The project at ``root``; :class:`UsageError` if it is not one or its config is wrong."""
    root = root.expanduser().resolve()
    if not is_project(root):
        raise UsageError(
            f"{root} is not a featurestack project: a project folder holds "
            "dbt_project/dbt_project.yml and feature_repo/. Create one with "
            f"`featurestack init {root}`, or point --project-dir (or {ENV}) at yours."
        )
    config = ProjectConfig()
    path = root / PROJECT_FILE
    if path.exists():
        try:
            raw = yaml.safe_load(path.read_text()) or {}
            config = ProjectConfig.model_validate(raw)
        except (yaml.YAMLError, ValidationError) as err:
            raise UsageError(f"{path} is not a valid project file: {err}") from None
    return Project(root, config)


def find_project(project_dir: str | os.PathLike[str] | None = None) -> Project:
    """``project_dir``, else ``FEATURESTACK_PROJECT_DIR``, else the nearest parent of the
    working directory that is a project; :class:`NotFound` when there is none."""
    given = project_dir or os.environ.get(ENV)
    if given:
        return load_project(Path(given))
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if is_project(folder):
            return load_project(folder)
    raise NotFound(
        f"no featurestack project in {here} or any parent (a project folder holds "
        "dbt_project/dbt_project.yml and feature_repo/): run the command inside one, give "
        f"--project-dir (or {ENV}), or create one with `featurestack init PATH`."
    )

"""``featurestack init``: a new project from one of the example projects.

An example is a complete project folder (``examples/<name>/`` in the repository, shipped inside
the wheel as ``featurestack/examples/<name>/``): its dbt project, Feast repo, specs, gate rules
and a ``sample_data.py`` that writes its raw files. ``init`` copies it (no build output, no
data), names the project, writes the sample data, then parses the dbt project and generates
the Feast definitions from it, so ``featurestack run --project-dir PATH`` works at once.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from featurestack.core.errors import CheckFailed, NotFound, UsageError
from featurestack.core.project import PROJECT_FILE, load_project
from featurestack.core.settings import load_settings

DEFAULT_EXAMPLE = "minimal"
_IGNORE = shutil.ignore_patterns(
    "data",
    "target",
    "target-*",
    "logs",
    "logs-*",
    "dbt_packages",
    "__pycache__",
    ".user.yml",
    "dbt_features.py",
)


def examples_dir() -> Path:
    """The bundled example projects: inside the installed package (a wheel), else the
    repository's ``examples/`` (an editable install)."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "examples", package.parent / "examples"):
        if candidate.is_dir():
            return candidate
    raise NotFound(f"no example projects beside {package}: reinstall featurestack")


def examples() -> list[str]:
    root = examples_dir()
    return sorted(p.name for p in root.iterdir() if (p / PROJECT_FILE).exists())


@dataclass
class Created:
    """What ``init`` wrote."""

    root: Path
    example: str
    name: str
    raw_files: list[Path]
    views: list[str]


def init_project(target: Path, example: str = DEFAULT_EXAMPLE, name: str | None = None) -> Created:
    """Write the project; see the module docstring."""
    from featurestack.infra import feast_codegen
    from featurestack.infra.dbt_ops import run_dbt

    source = examples_dir() / example
    if not (source / PROJECT_FILE).exists():
        raise UsageError(
            f"no example project {example!r}: choose one of {', '.join(examples())} (--example)"
        )
    target = target.expanduser().resolve()
    if target.exists() and any(target.iterdir()):
        raise UsageError(
            f"{target} is not empty: init writes a new project into an empty or new folder"
        )
    name = name or target.name
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise UsageError(
            f"project name {name!r}: letters, digits and underscores, starting with a letter "
            "(it names the Feast project); give --name"
        )
    shutil.copytree(source, target, ignore=_IGNORE, dirs_exist_ok=True)
    _rename(target, name)
    raw = target / "data" / "raw"
    sample = target / "sample_data.py"
    if sample.exists():
        done = subprocess.run(
            [sys.executable, str(sample), "--out", str(raw)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise CheckFailed(f"{sample} failed to write the sample data:\n{done.stderr[-2000:]}")
    project = load_project(target)
    settings = load_settings(data_dir=target / "data", project_dir=target)
    parsed = run_dbt(settings, command="parse")
    if not parsed.success:
        raise CheckFailed(f"dbt cannot parse the new project:\n{parsed.summary()}")
    specs = feast_codegen.view_specs(project.manifest)
    feast_codegen.write(
        project.feature_repo_dir / feast_codegen.GENERATED, feast_codegen.render(specs)
    )
    return Created(target, example, name, settings.raw_files(), [s.view for s in specs])


def _rename(root: Path, name: str) -> None:
    """The project's name in featurestack.yml and its Feast project's name."""
    path = root / PROJECT_FILE
    config = yaml.safe_load(path.read_text()) or {}
    old = config.get("name")
    text = path.read_text()
    if old:
        text = re.sub(rf"^name: {re.escape(str(old))}\b", f"name: {name}", text, flags=re.M)
    path.write_text(text)
    for feast_file in ("feature_store.yaml", "project.py"):
        repo_file = root / "feature_repo" / feast_file
        if repo_file.exists() and old:
            repo_file.write_text(
                re.sub(
                    rf"(project: |name=\"){re.escape(str(old))}\b",
                    lambda m: m.group(1) + name,
                    repo_file.read_text(),
                )
            )

"""Two projects in one process: Feast imports a repo's definitions by a name relative to the
repo folder, so a second project's `dbt_features.py` must not be answered by the first's
module (its sources point at the first project's data folder)."""

from __future__ import annotations

import importlib
from pathlib import Path

from featurestack.infra.feast_ops import _in_feature_repo


def test_a_second_repo_with_the_same_module_names_gets_its_own_definitions(
    tmp_path: Path,
) -> None:
    seen = []
    for project in ("first", "second"):
        repo = tmp_path / project / "feature_repo"
        repo.mkdir(parents=True)
        (repo / "fs_defs_same_name.py").write_text(f"DATA = {project!r}\n")
        with _in_feature_repo(repo):
            seen.append(importlib.import_module("fs_defs_same_name").DATA)
    assert seen == ["first", "second"]

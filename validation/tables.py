"""What the gate checks, read from the dbt manifest so it cannot drift from the models.

A dbt model tagged ``publish`` is a table the gate validates and publishes. Its columns and
types come from the model's yml (``data_type``, enforced by the contract), its key and event
time from ``meta`` (``primary_key``, ``event_timestamp``), and its label columns from
``meta.label_columns``. Everything numeric that is neither key nor label is a feature.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurestack.core.errors import CheckFailed
from featurestack.core.project import dbt_target_dir

NUMERIC_TYPES = ("double", "float", "real", "decimal", "numeric", "integer", "bigint", "int")


@dataclass(frozen=True)
class TableSpec:
    """A publishable dbt model: the contract the gate enforces."""

    name: str
    columns: dict[str, str]
    primary_key: tuple[str, ...]
    event_timestamp: str
    label_columns: tuple[str, ...] = ()
    #: column → values, from the model's dbt ``accepted_values`` tests
    accepted_values: dict[str, list[Any]] = field(default_factory=dict, compare=False)

    @property
    def numeric_columns(self) -> list[str]:
        return [c for c, t in self.columns.items() if t.lower().startswith(NUMERIC_TYPES)]

    @property
    def float_columns(self) -> list[str]:
        """Columns where NaN and ±inf can occur (integers cannot hold them)."""
        floats = ("double", "float", "real")
        return [c for c, t in self.columns.items() if t.lower().startswith(floats)]


class ManifestError(CheckFailed, RuntimeError):
    """The dbt manifest is missing or a publishable model lacks what the gate needs."""


def load_manifest(path: Path) -> dict:
    if not path.exists():
        raise ManifestError(
            f"dbt manifest not found at {path}; run `dbt build` (or `featurestack build`) first."
        )
    return json.loads(path.read_text())


def dbt_vars(dbt_project_dir: Path) -> dict[str, Any]:
    """The dbt vars the last build ran with: dbt_project.yml's ``vars``, overridden by the
    ``--vars`` of the last invocation (target/run_results.json), as dbt resolved them."""
    import yaml

    variables: dict[str, Any] = {}
    project = dbt_project_dir / "dbt_project.yml"
    if project.exists():
        declared = (yaml.safe_load(project.read_text()) or {}).get("vars") or {}
        variables.update({k: v for k, v in declared.items() if not isinstance(v, dict)})
    results = dbt_target_dir(dbt_project_dir) / "run_results.json"
    if results.exists():
        given = json.loads(results.read_text()).get("args", {}).get("vars") or {}
        if isinstance(given, str):
            given = yaml.safe_load(given) or {}
        variables.update(given)
    return variables


def _rendered(value: Any, variables: dict[str, Any]) -> Any:
    """A test argument as dbt renders it (``"{{ var('allowed_values') }}"`` → the list)."""
    if not (isinstance(value, str) and "{{" in value):
        return value
    from jinja2.nativetypes import NativeEnvironment

    def var(name: str, default: Any = None) -> Any:
        if name not in variables and default is None:
            raise ManifestError(
                f"a test argument uses dbt var {name!r}, which neither dbt_project.yml nor "
                "the build's --vars sets"
            )
        return variables.get(name, default)

    return NativeEnvironment().from_string(value).render(var=var)


def _accepted_values(
    manifest: dict, variables: dict[str, Any] | None = None
) -> dict[str, dict[str, list[Any]]]:
    """model unique_id → column → accepted values, from dbt's ``accepted_values`` tests."""
    out: dict[str, dict[str, list[Any]]] = {}
    for node in manifest.get("nodes", {}).values():
        meta = node.get("test_metadata") or {}
        if node.get("resource_type") != "test" or meta.get("name") != "accepted_values":
            continue
        kwargs = meta.get("kwargs", {})
        column = kwargs.get("column_name") or node.get("column_name")
        if node.get("attached_node") and column and "values" in kwargs:
            values = _rendered(kwargs["values"], variables or {})
            out.setdefault(node["attached_node"], {})[column] = list(values)
    return out


def publishable_tables(
    manifest: dict, variables: dict[str, Any] | None = None
) -> dict[str, TableSpec]:
    """Every model tagged ``publish``, keyed by name (``variables``: dbt vars test arguments
    may use, :func:`dbt_vars`)."""
    accepted = _accepted_values(manifest, variables)
    specs = {}
    for node in manifest.get("nodes", {}).values():
        if node.get("resource_type") != "model" or "publish" not in node.get("tags", []):
            continue
        name = node["name"]
        meta = node.get("config", {}).get("meta") or node.get("meta") or {}
        columns = {c: (v.get("data_type") or "") for c, v in node.get("columns", {}).items()}
        missing = [k for k in ("primary_key", "event_timestamp") if k not in meta]
        if missing:
            raise ManifestError(
                f"model {name} is tagged publish but its yml has no meta {missing}; "
                "add them under config.meta so the gate knows the key and event time."
            )
        untyped = [c for c, t in columns.items() if not t]
        if not columns or untyped:
            raise ManifestError(
                f"model {name}: every column needs a data_type in its yml (missing: {untyped})."
            )
        specs[name] = TableSpec(
            name=name,
            columns=columns,
            primary_key=tuple(meta["primary_key"]),
            event_timestamp=meta["event_timestamp"],
            label_columns=tuple(meta.get("label_columns", ())),
            accepted_values=accepted.get(node["unique_id"], {}),
        )
    return dict(sorted(specs.items()))

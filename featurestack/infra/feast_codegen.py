"""Feast definitions generated from the dbt manifest, so Feast follows dbt with no hand copies.

Feast's `feast dbt import` (``feast.dbt``) parses a manifest and maps warehouse types to Feast
types. We reuse its manifest parser and its type map, and fix what it gets wrong for
dbt-duckdb models published by our gate:

* the source: it writes a placeholder ``/data/<model>.parquet``; ours is the Parquet file the
  gate publishes, resolved from the data folder when Feast loads the repo;
* types: DuckDB's ``timestamp with time zone`` becomes String and ``decimal(p, s)`` Int64 in
  ``feast.dbt``; here they are UnixTimestamp and Float64, ``integer`` (32-bit) is Int32 and
  ``T[]`` lists are Array(T);
* entities, TTL and owner: one entity column and one TTL for every model there; here each
  model declares its own in ``meta`` (``entity``, ``primary_key``, ``ttl_days``, ``owner``);
* composite keys: a Feast entity has one join key, so a model keyed by several columns
  (``primary_key: [a_id, b_id, event_timestamp]``) names one entity per key column
  (``entity: [a, b]``) and its view joins on all of them, as Feast's own
  multi-entity views do.

The generated module (``feature_repo/dbt_features.py``) is committed so every change is seen
in review. It carries a fingerprint of the contracts it was generated from and checks it
against the current manifest whenever Feast imports it (``feast apply``/``plan``), and
:func:`check_views` compares the Feast objects with the contracts field by field before
``featurestack apply`` and in the tests.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestack.core.errors import CheckFailed
from featurestack.core.project import find_project

if TYPE_CHECKING:
    from feast import Entity, FeatureView
    from feast.types import FeastType

#: the generated module, in the project's feature_repo/
GENERATED = "dbt_features.py"
FEAST_TAG = "feast"


class ContractMismatch(CheckFailed, RuntimeError):
    """The Feast definitions and the dbt contracts disagree."""


@dataclass(frozen=True)
class FieldSpec:
    name: str
    data_type: str
    description: str

    @property
    def feast_type(self) -> FeastType:
        return feast_type_for(self.data_type)


@dataclass(frozen=True)
class ViewSpec:
    """One dbt model tagged ``feast``: what its feature view must look like."""

    model: str
    unique_id: str
    description: str
    #: one Feast entity per join key column, in the order of ``join_keys``
    entities: tuple[str, ...]
    join_keys: tuple[FieldSpec, ...]
    timestamp_field: str
    ttl_days: int
    owner: str
    features: tuple[FieldSpec, ...]

    @property
    def entity(self) -> str:
        """The entities as one label (``a, b`` for a composite key)."""
        return ", ".join(self.entities)

    @property
    def view(self) -> str:
        """``feat_customer__daily`` → ``customer_daily``: the Feast name drops the layer
        prefix."""
        return self.model.removeprefix("feat_").replace("__", "_")


def feast_type_for(data_type: str) -> FeastType:
    """A dbt-duckdb column type as a Feast type (``feast.dbt``'s map, fixed for DuckDB)."""
    from feast.dbt.mapper import map_dbt_type_to_feast_type
    from feast.types import Array, Float64, Int32, UnixTimestamp

    t = " ".join(data_type.strip().lower().split())
    if t.endswith("[]"):
        return Array(feast_type_for(t[:-2]))
    if t in ("timestamp with time zone", "timestamptz"):
        return UnixTimestamp
    if t.startswith(("decimal", "numeric")):
        return Float64
    if t in ("integer", "int", "int4", "signed"):
        return Int32
    mapped = map_dbt_type_to_feast_type(t)
    if t.upper().split("(")[0] not in _known_dbt_types():
        raise ContractMismatch(f"no Feast type for the dbt data_type {data_type!r}")
    return mapped


def _known_dbt_types() -> set[str]:
    from feast.dbt.mapper import DBT_TO_FEAST_TYPE_MAP

    return set(DBT_TO_FEAST_TYPE_MAP) | {"VARCHAR", "TIMESTAMP"}


def _one_line(text: str) -> str:
    return " ".join((text or "").split())


def view_specs(manifest: Path | None = None) -> list[ViewSpec]:
    """Every model tagged ``feast`` in the manifest (default: the project's), in name order."""
    from feast.dbt.parser import DbtManifestParser

    manifest = manifest or find_project().manifest
    if not manifest.exists():
        raise ContractMismatch(
            f"dbt manifest not found at {manifest}; run `featurestack codegen` (it parses the "
            "dbt project) or `dbt parse` in dbt_project/ first."
        )
    parser = DbtManifestParser(str(manifest))
    parser.parse()
    specs = []
    for model in sorted(parser.get_models(tag_filter=FEAST_TAG), key=lambda m: m.name):
        meta = model.meta
        missing = [k for k in ("entity", "primary_key", "event_timestamp") if k not in meta]
        if missing:
            raise ContractMismatch(
                f"dbt model {model.name} is tagged feast but its meta lacks {missing}"
            )
        columns = {
            c.name: FieldSpec(c.name, c.data_type, _one_line(c.description)) for c in model.columns
        }
        untyped = [c.name for c in model.columns if not c.data_type]
        if untyped:
            raise ContractMismatch(f"dbt model {model.name}: columns without data_type {untyped}")
        ts = meta["event_timestamp"]
        keys = [k for k in meta["primary_key"] if k != ts]
        entities = _entities(model.name, meta["entity"], keys, ts)
        unknown = [k for k in [*keys, ts] if k not in columns]
        if unknown:
            raise ContractMismatch(f"dbt model {model.name}: meta names unknown columns {unknown}")
        specs.append(
            ViewSpec(
                model=model.name,
                unique_id=model.unique_id,
                description=_one_line(model.description),
                entities=entities,
                join_keys=tuple(columns[k] for k in keys),
                timestamp_field=ts,
                ttl_days=int(meta.get("ttl_days", 1)),
                owner=str(meta.get("owner", "")),
                features=tuple(f for n, f in columns.items() if n not in (*keys, ts)),
            )
        )
    return specs


def _entities(model: str, entity: Any, keys: list[str], ts: str) -> tuple[str, ...]:
    """The Feast entities of a model: ``meta.entity`` names one per key column of
    ``meta.primary_key`` (the event timestamp aside), a string for one key, a list for
    several."""
    names = [entity] if isinstance(entity, str) else list(entity or [])
    if not keys:
        raise ContractMismatch(
            f"dbt model {model}: meta.primary_key has no key column besides {ts}; "
            "add the entity's key column(s) to it"
        )
    if len(names) != len(keys) or not all(isinstance(n, str) and n for n in names):
        raise ContractMismatch(
            f"dbt model {model}: meta.entity is {entity!r} but meta.primary_key has "
            f"{len(keys)} key column(s) {keys}; a Feast entity has one join key, so name one "
            "entity per key column, in the same order (e.g. entity: "
            f"[{', '.join(k.removesuffix('_id') for k in keys)}])"
        )
    if len(set(names)) != len(names):
        raise ContractMismatch(f"dbt model {model}: meta.entity names an entity twice: {names}")
    return tuple(names)


def fingerprint(specs: list[ViewSpec]) -> str:
    """A hash of everything the generated code is made from."""
    payload = json.dumps([_as_dict(s) for s in specs], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _as_dict(spec: ViewSpec) -> dict[str, Any]:
    def fields(fs: tuple[FieldSpec, ...]) -> list[list[str]]:
        return [[f.name, f.data_type, f.description] for f in fs]

    return {
        "model": spec.model,
        "description": spec.description,
        # one entity: its name alone, as before composite keys (the fingerprints of existing
        # generated modules stay valid)
        "entity": spec.entities[0] if len(spec.entities) == 1 else list(spec.entities),
        "keys": fields(spec.join_keys),
        "ts": spec.timestamp_field,
        "ttl": spec.ttl_days,
        "owner": spec.owner,
        "features": fields(spec.features),
    }


def _q(text: str) -> str:
    """A double-quoted Python string literal (the style ruff format keeps)."""
    return json.dumps(text, ensure_ascii=False)


def _type_code(feast_type: FeastType) -> tuple[str, set[str]]:
    """Source code for a Feast type (``feast.dbt``'s own naming) and the names it imports."""
    from feast.dbt.codegen import _get_feast_type_name

    code = _get_feast_type_name(feast_type)
    return code, set(re.findall(r"[A-Za-z0-9]+", code))


def _value_type(feast_type: FeastType) -> str:
    from feast.dbt.mapper import feast_type_to_value_type

    return f"ValueType.{feast_type_to_value_type(feast_type).name}"


def render(specs: list[ViewSpec]) -> str:
    """The Python module for ``specs``: entities, sources and feature views."""
    entities = _entity_keys(specs)
    types: set[str] = set()
    blocks = []
    for name, key in sorted(entities.items()):
        value_type = _value_type(key.feast_type)
        blocks.append(
            f"{name} = Entity(\n"
            f"    name={_q(name)},\n"
            f"    join_keys={json.dumps([key.name])},\n"
            f"    value_type={value_type},\n"
            f"    description={_q(key.description)},\n"
            ")\n"
        )
    for spec in specs:
        fields = []
        for f in spec.features:
            code, names = _type_code(f.feast_type)
            types |= names
            fields.append(
                "        Field(\n"
                f"            name={_q(f.name)},\n"
                f"            dtype={code},\n"
                f"            description={_q(f.description)},\n"
                "        ),\n"
            )
        tags = {"dbt.model": spec.model, "dbt.unique_id": spec.unique_id}
        blocks.append(
            f"{spec.view}_source = FileSource(\n"
            f"    name={_q(spec.view + '_source')},\n"
            f"    path=str(_published({_q(spec.model)})),\n"
            f"    timestamp_field={_q(spec.timestamp_field)},\n"
            f"    description={_q(f'dbt model {spec.model}, as published by the gate.')},\n"
            f"    tags={json.dumps({'dbt.model': spec.model})},\n"
            ")\n\n"
            f"{spec.view}_fv = FeatureView(\n"
            f"    name={_q(spec.view)},\n"
            f"    entities=[{', '.join(spec.entities)}],\n"
            f"    ttl=timedelta(days={spec.ttl_days}),\n"
            "    schema=[\n" + "".join(fields) + "    ],\n"
            f"    source={spec.view}_source,\n"
            "    online=True,\n"
            f"    description={_q(spec.description)},\n"
            f"    owner={_q(spec.owner)},\n"
            "    tags={\n"
            + "".join(f"        {_q(k)}: {_q(v)},\n" for k, v in tags.items())
            + "    },\n"
            ")\n"
        )
    header = (
        f'"""Feast entities, sources and feature views for the {len(specs)} dbt models tagged '
        "feast.\n\n"
        "Generated by `featurestack codegen` from dbt_project/target/manifest.json: do not edit.\n"
        "Change the model's .yml (columns, descriptions, meta: entity, primary_key, ttl_days,\n"
        "owner) and regenerate. Importing this module (Feast does, on apply and plan) fails if\n"
        "the dbt contracts changed since it was generated.\n"
        '"""\n\n'
        "from datetime import timedelta\n\n"
        "from feast import Entity, FeatureView, Field, FileSource, ValueType\n"
        f"from feast.types import {', '.join(sorted(types))}\n\n"
        "from featurestack.core.settings import load_settings\n"
        "from featurestack.infra.feast_codegen import verify_fingerprint\n\n"
        f"DBT_CONTRACTS = {_q(fingerprint(specs))}\n"
        "verify_fingerprint(DBT_CONTRACTS)\n\n"
        "_published = load_settings().published_table\n\n"
    )
    return header + "\n\n".join(blocks)


def _entity_keys(specs: list[ViewSpec]) -> dict[str, FieldSpec]:
    """Each entity's key column; an entity shared by several models must be keyed alike."""
    keys: dict[str, tuple[FieldSpec, str]] = {}
    for spec in specs:
        for name, key in zip(spec.entities, spec.join_keys, strict=True):
            seen, model = keys.setdefault(name, (key, spec.model))
            if (seen.name, seen.data_type) != (key.name, key.data_type):
                raise ContractMismatch(
                    f"entity {name!r}: {model} keys it by {seen.name} ({seen.data_type}), "
                    f"{spec.model} by {key.name} ({key.data_type}); one entity, one key column"
                )
    return {name: key for name, (key, _) in keys.items()}


def write(target: Path, text: str) -> None:
    """Replace the generated module atomically (Feast may be importing it)."""
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    tmp.replace(target)


def verify_fingerprint(expected: str, manifest: Path | None = None) -> None:
    """Fail the import of stale generated definitions (skipped when no manifest exists yet).

    Called by the generated module when Feast imports it: the project is the one the command
    works on (FEATURESTACK_PROJECT_DIR, exported by featurestack) or the one around the
    feature repo Feast imports from."""
    manifest = manifest or find_project().manifest
    if not manifest.exists():
        return
    actual = fingerprint(view_specs(manifest))
    if actual != expected:
        raise ContractMismatch(
            "feature_repo/dbt_features.py was generated from other dbt contracts than those in "
            f"{manifest} (fingerprint {expected}, now {actual}). Run `featurestack codegen` "
            "and review the diff."
        )


def check_views(
    views: list[FeatureView], entities: list[Entity], specs: list[ViewSpec]
) -> list[str]:
    """Every disagreement between the Feast feature views and the dbt contracts, as text."""
    from feast import FileSource
    from feast.dbt.mapper import feast_type_to_value_type

    entity_by_name = {e.name: e for e in entities}
    problems = []
    by_name = {v.name: v for v in views}
    expected = {s.view for s in specs}
    for view in views:
        model = view.tags.get("dbt.model")
        if model and view.name not in expected:
            problems.append(
                f"feature view {view.name}: dbt model {model} is not tagged feast "
                "(or no longer exists)"
            )
    for spec in specs:
        if spec.view not in by_name:
            problems.append(f"dbt model {spec.model}: no feature view {spec.view} in Feast")
            continue
        view = by_name[spec.view]
        actual = [(f.name, f.dtype) for f in view.features]
        wanted = [(f.name, f.feast_type) for f in spec.features]
        for name in [n for n, _ in wanted if n not in dict(actual)]:
            problems.append(f"{spec.view}: column {name} of {spec.model} is missing in Feast")
        for name in [n for n, _ in actual if n not in dict(wanted)]:
            problems.append(f"{spec.view}: feature {name} is not a column of {spec.model}")
        for name, dtype in wanted:
            got = dict(actual).get(name)
            if got is not None and got != dtype:
                problems.append(
                    f"{spec.view}.{name}: Feast type {got} but the dbt contract says "
                    f"{spec.features[[f.name for f in spec.features].index(name)].data_type} "
                    f"({dtype})"
                )
        if view.entities != list(spec.entities) or not all(
            e in entity_by_name for e in spec.entities
        ):
            problems.append(
                f"{spec.view}: entities {view.entities}, dbt meta says {list(spec.entities)}"
            )
        else:
            for name, key in zip(spec.entities, spec.join_keys, strict=True):
                entity = entity_by_name[name]
                if entity.join_key != key.name:
                    problems.append(
                        f"{spec.view}: entity {entity.name} joins on {entity.join_key} but "
                        f"{spec.model} keys it by {key.name}"
                    )
                    continue
                wanted_type = feast_type_to_value_type(key.feast_type)
                if entity.value_type != wanted_type:
                    problems.append(
                        f"{spec.view}: entity {entity.name} is {entity.value_type.name}, "
                        f"the dbt key {key.name} is {key.data_type}"
                    )
        source = view.batch_source
        if not isinstance(source, FileSource) or Path(source.path).stem != spec.model:
            problems.append(f"{spec.view}: source is not the published table {spec.model}")
        elif source.timestamp_field != spec.timestamp_field:
            problems.append(
                f"{spec.view}: timestamp field {source.timestamp_field}, "
                f"dbt says {spec.timestamp_field}"
            )
    return problems

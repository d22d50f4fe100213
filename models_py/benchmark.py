"""``featurestack benchmark``: registered versions compared on one holdout, for a CI job.

The holdout is the newest version's spec's holdout, rebuilt from Feast now; every version is
scored on it at its own logged threshold: the spec's metrics, a 10-bin calibration table
(classification), and the latency per row of ``predict_proba``/``predict``. The result is one
JSON and one self-contained HTML file. Against a history file (an earlier benchmark's JSON)
each version's primary metric is compared: a drop beyond ``tolerance`` (relative, 5 % by
default) is a regression; ``targets`` (``f1=0.7``) that a version misses are reported too.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from featurestack.core.errors import NotFound
from featurestack.core.settings import Settings
from models_py import tracking
from models_py.contract import CHAMPION, THRESHOLD, spec_from_run, tag
from models_py.dataset import training_set
from models_py.fitting import task_metrics
from models_py.registry import is_retired
from models_py.spec import LOWER_IS_BETTER


@dataclass
class Benchmark:
    model: str
    metric: str
    holdout_rows: int
    holdout_span: str
    versions: list[dict[str, Any]]
    regressions: list[str] = field(default_factory=list)
    missed_targets: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def summary(self) -> str:
        lines = [
            f"{self.model}: {len(self.versions)} version(s) on one holdout of "
            f"{self.holdout_rows} rows ({self.holdout_span}), by {self.metric}"
        ]
        for v in self.versions:
            value = v["metrics"].get(self.metric)
            shown = f"{value:.4f}" if value is not None else "n/a"
            lines.append(
                f"  v{v['version']:<4} {','.join(v['aliases']) or '-':<20} {self.metric} {shown}"
                f"   {v['latency_us_per_row']:.1f} µs/row"
                + (f"   skipped: {v['skipped']}" if v.get("skipped") else "")
            )
        lines += [f"  REGRESSION {r}" for r in self.regressions]
        lines += [f"  missed target {t}" for t in self.missed_targets]
        return "\n".join(lines)


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Mean predicted probability against the observed rate, per probability decile."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    return [
        {
            "bin": float(edges[b]),
            "predicted": float(p[which == b].mean()),
            "observed": float(y[which == b].mean()),
            "rows": int((which == b).sum()),
        }
        for b in range(bins)
        if (which == b).any()
    ]


def benchmark(
    settings: Settings,
    model: str,
    versions: list[str] | None = None,
    history: Path | None = None,
    tolerance: float = 0.05,
    targets: dict[str, float] | None = None,
) -> Benchmark:
    """Score ``versions`` of ``model`` (default: every version not retired) on one holdout."""
    import mlflow

    tracking.configure(settings)
    client = mlflow.MlflowClient()
    found = client.search_model_versions(f"name = '{model}'")
    if not found:
        raise NotFound(f"no registered model {model!r}: `featurestack models` lists them")
    by_version = {str(mv.version): mv for mv in found}
    wanted = versions or [v for v, mv in by_version.items() if not is_retired(mv)]
    unknown = [v for v in wanted if v not in by_version]
    if unknown:
        raise NotFound(f"{model} has no version(s) {unknown}; it has {sorted(by_version, key=int)}")
    newest = by_version[max(wanted, key=int)]
    spec = spec_from_run(client.get_run(str(newest.run_id)))
    holdout = training_set(settings, spec).segments["holdout"]
    target = spec.label.target
    registered = client.get_registered_model(model)
    aliases: dict[str, list[str]] = {}
    for alias, v in (registered.aliases or {}).items():
        aliases.setdefault(str(v), []).append(alias)
    rows = []
    for v in sorted(wanted, key=int):
        mv = by_version[v]
        uri = f"models:/{model}/{v}"
        info = mlflow.models.get_model_info(uri)
        columns = [c.name for c in info.signature.inputs.inputs] if info.signature else []
        entry: dict[str, Any] = {"version": v, "aliases": sorted(aliases.get(v, []))}
        if not columns or not set(columns) <= set(holdout.columns):
            entry.update(metrics={}, latency_us_per_row=float("nan"))
            entry["skipped"] = "its features are not those of this holdout"
            rows.append(entry)
            continue
        loaded = mlflow.sklearn.load_model(uri)
        threshold = float(mv.tags.get(tag(THRESHOLD), 0.5))
        started = time.perf_counter()
        if hasattr(loaded, "predict_proba"):
            scores = loaded.predict_proba(holdout[columns])
        else:
            scores = loaded.predict(holdout[columns])
        entry["latency_us_per_row"] = (time.perf_counter() - started) / len(holdout) * 1e6
        metrics = task_metrics(loaded, holdout, columns, target, threshold)
        entry["metrics"] = {k: v for k, v in metrics.items() if v == v}
        entry["threshold"] = threshold
        if hasattr(loaded, "predict_proba") and np.asarray(scores).shape[1] == 2:
            entry["calibration"] = calibration_table(
                holdout[target].to_numpy(dtype=float), np.asarray(scores)[:, 1]
            )
        rows.append(entry)
    span = (
        f"{holdout['event_timestamp'].min():%Y-%m-%d} → {holdout['event_timestamp'].max():%Y-%m-%d}"
    )
    result = Benchmark(model, spec.primary_metric, len(holdout), span, rows)
    if history is not None:
        result.regressions = regressions(result, json.loads(history.read_text()), tolerance)
    for v in rows:
        for metric, floor in (targets or {}).items():
            value = v["metrics"].get(metric)
            lower = metric in LOWER_IS_BETTER
            if value is None or (value > floor if lower else value < floor):
                result.missed_targets.append(
                    f"v{v['version']} {metric} {value if value is None else round(value, 4)} "
                    f"(target {'≤' if lower else '≥'} {floor:g})"
                )
    return result


def regressions(result: Benchmark, previous: dict[str, Any], tolerance: float) -> list[str]:
    """Versions (and the champion) whose primary metric is worse than in ``previous`` by more
    than ``tolerance`` of the earlier value."""
    metric = result.metric
    lower = metric in LOWER_IS_BETTER

    def keyed(versions: list[dict[str, Any]]) -> dict[str, float]:
        out = {}
        for v in versions:
            value = v.get("metrics", {}).get(metric)
            if value is None:
                continue
            out[f"v{v['version']}"] = value
            if CHAMPION in v.get("aliases", []):
                out[CHAMPION] = value
        return out

    before, now = keyed(previous.get("versions", [])), keyed(result.versions)
    found = []
    for key, old in before.items():
        if key not in now or old == 0:
            continue
        change = (now[key] - old) / abs(old)
        worse = change > tolerance if lower else change < -tolerance
        if worse:
            found.append(f"{key} {metric} {old:.4f} → {now[key]:.4f} ({change:+.1%})")
    return found


def write(settings: Settings, result: Benchmark, out: Path | None = None) -> tuple[Path, Path]:
    """The benchmark as JSON and as one self-contained HTML page."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder = out or settings.reports_dir / "benchmark" / result.model
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / f"{stamp}.json", folder / f"{stamp}.html"
    json_path.write_text(json.dumps(asdict(result), indent=2, default=str))
    metrics = sorted({k for v in result.versions for k in v["metrics"]})
    head = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
    body = "".join(
        f"<tr><td>v{v['version']}</td><td>{html.escape(','.join(v['aliases']))}</td>"
        + "".join(
            f"<td>{v['metrics'][m]:.4g}</td>" if m in v["metrics"] else "<td></td>" for m in metrics
        )
        + f"<td>{v['latency_us_per_row']:.1f}</td></tr>"
        for v in result.versions
    )
    calib = "".join(
        f"<h3>v{v['version']} calibration</h3><table><tr><th>bin</th><th>predicted</th>"
        "<th>observed</th><th>rows</th></tr>"
        + "".join(
            f"<tr><td>{c['bin']:.1f}</td><td>{c['predicted']:.3f}</td>"
            f"<td>{c['observed']:.3f}</td><td>{c['rows']}</td></tr>"
            for c in v["calibration"]
        )
        + "</table>"
        for v in result.versions
        if v.get("calibration")
    )
    flags = "".join(f"<li>regression: {html.escape(r)}</li>" for r in result.regressions)
    flags += "".join(f"<li>missed target: {html.escape(t)}</li>" for t in result.missed_targets)
    html_path.write_text(
        "<!doctype html><meta charset=utf-8><title>benchmark "
        f"{html.escape(result.model)}</title><style>td,th{{padding:2px 8px;text-align:right}}"
        f"</style><h1>{html.escape(result.model)}</h1><p>{result.holdout_rows} holdout rows, "
        f"{html.escape(result.holdout_span)}; primary metric {html.escape(result.metric)}</p>"
        f"<ul>{flags}</ul><table><tr><th>version</th><th>aliases</th>{head}"
        f"<th>µs/row</th></tr>{body}</table>{calib}"
    )
    return json_path, html_path

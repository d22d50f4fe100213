"""Quality gates: whether a trained version may become champion, one verdict per gate.

Pure functions of the holdout metrics. Always on: a degenerate model (every holdout score
alike, e.g. a tuned forest whose leaves hold a fifth of the rows) is never champion. From the
spec's ``gates``: floors (``min``) and ceilings (``max``) of holdout metrics, and
``beat_constant`` (the primary metric must beat the constant predictor's on the same rows).
"""

from __future__ import annotations

from dataclasses import dataclass

from models_py.spec import LOWER_IS_BETTER, ModelSpec

#: std of the holdout scores at or below which a model predicts one value for every row
DEGENERATE_SPREAD = 1e-9


@dataclass(frozen=True)
class Verdict:
    gate: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'pass' if self.passed else 'FAIL'}  {self.gate}: {self.detail}"


def constant_score(
    metric: str, metrics: dict[str, float], prefix: str = "holdout_"
) -> float | None:
    """The metric of the constant predictor on the rows ``metrics`` were scored on (None: the
    metric has no meaningful constant baseline, e.g. recall, which predicting all positive
    maximises)."""
    p = metrics.get(f"{prefix}positive_rate")
    if metric == "roc_auc":
        return 0.5
    if metric in ("log_loss", "rmse"):
        return metrics.get(f"{prefix}{metric}_constant")
    if metric == "mae":
        return metrics.get(f"{prefix}mae_constant")
    if metric == "r2":
        return 0.0
    if p is None:  # multiclass: the metrics above only
        return None
    return {
        "pr_auc": p,
        "brier": p * (1 - p),
        "f1": 2 * p / (1 + p),  # predicting every row positive
        "precision": p,
        "accuracy": max(p, 1 - p),
    }.get(metric)


def check(spec: ModelSpec, metrics: dict[str, float]) -> list[Verdict]:
    """Every gate's verdict on these holdout ``metrics`` (as fit_and_evaluate returns them)."""
    out: list[Verdict] = []
    spread = metrics.get("holdout_score_spread")
    if spread is not None:
        ok = spread > DEGENERATE_SPREAD
        out.append(
            Verdict(
                "not degenerate",
                ok,
                f"holdout scores vary (std {spread:.3g})"
                if ok
                else "every holdout row gets the same score: the model learnt nothing (check "
                "the tuned parameters, e.g. a min_samples_leaf too large for the positives)",
            )
        )
    for bound, limits in (("min", spec.gates.min), ("max", spec.gates.max)):
        for metric, limit in sorted(limits.items()):
            value = metrics.get(f"holdout_{metric}", float("nan"))
            ok = value >= limit if bound == "min" else value <= limit
            word = "≥" if bound == "min" else "≤"
            out.append(
                Verdict(
                    f"{bound} {metric}", bool(ok), f"holdout {value:.4f}, needs {word} {limit:g}"
                )
            )
    if spec.gates.beat_constant:
        metric = spec.primary_metric
        value = metrics.get(f"holdout_{metric}", float("nan"))
        baseline = constant_score(metric, metrics)
        if baseline is None:  # recall …: fall back on the ranking
            metric, value, baseline = "roc_auc", metrics.get("holdout_roc_auc", float("nan")), 0.5
        ok = value < baseline if metric in LOWER_IS_BETTER else value > baseline
        out.append(
            Verdict(
                "beats constant",
                bool(ok),
                f"holdout {metric} {value:.4f} vs the constant predictor's {baseline:.4f}",
            )
        )
    return out


def failed(verdicts: list[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if not v.passed]

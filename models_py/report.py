"""The evaluation of a trained model: figures and one self-contained HTML report.

Everything is computed on the holdout (the segment neither tuning, early stopping,
calibration nor the threshold has seen). Figures are matplotlib (already installed with
MLflow); the report embeds them as PNG, so it opens anywhere without the run's other files.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve


def _figure(width: float = 5.0, height: float = 4.0) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def evaluation_figures(
    y: np.ndarray,
    p: np.ndarray,
    threshold: float,
    importance: dict[str, float] | None = None,
    contributions: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """name → matplotlib Figure: ROC, PR, confusion matrix, calibration, importances."""
    y = np.asarray(y).astype(int)
    figures: dict[str, Any] = {}

    fig, ax = _figure()
    fpr, tpr, _ = skm.roc_curve(y, p)
    ax.plot(fpr, tpr, label=f"ROC-AUC {skm.roc_auc_score(y, p):.3f}")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (holdout)")
    ax.legend(loc="lower right")
    figures["roc_curve"] = fig

    fig, ax = _figure()
    precision, recall, _ = skm.precision_recall_curve(y, p)
    ax.plot(recall, precision, label=f"PR-AUC {skm.average_precision_score(y, p):.3f}")
    ax.axhline(y.mean(), ls="--", color="grey", lw=1, label=f"base rate {y.mean():.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision–recall (holdout)")
    ax.legend(loc="upper right")
    figures["pr_curve"] = fig

    fig, ax = _figure(4.2, 3.8)
    matrix = skm.confusion_matrix(y, (p >= threshold).astype(int), labels=[0, 1])
    ax.imshow(matrix, cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center")
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xlabel="predicted",
        ylabel="actual",
        title=f"Confusion matrix at threshold {threshold:.3f}",
    )
    figures["confusion_matrix"] = fig

    figures["calibration_curve"] = _calibration_figure(
        y, p, "mean predicted probability", "observed frequency"
    )
    figures.update(_importance_figures(importance, contributions))
    return _laid_out(figures)


def _calibration_figure(truth: np.ndarray, prob: np.ndarray, xlabel: str, ylabel: str) -> Any:
    """Observed frequency of ``truth`` per quantile bin of ``prob``, against the diagonal."""
    fig, ax = _figure()
    observed, predicted = calibration_curve(truth, prob, n_bins=10, strategy="quantile")
    ax.plot(predicted, observed, marker="o", label="model")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    ax.set(xlabel=xlabel, ylabel=ylabel, title="Calibration")
    ax.legend(loc="upper left")
    return fig


def _laid_out(figures: dict[str, Any]) -> dict[str, Any]:
    for figure in figures.values():
        figure.tight_layout()
    return figures


def _importance_figures(
    importance: dict[str, float] | None, contributions: pd.DataFrame | None
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    if importance:
        top = sorted(importance.items(), key=lambda kv: kv[1])[-20:]
        fig, ax = _figure(6, 0.3 * len(top) + 1)
        ax.barh([k for k, _ in top], [v for _, v in top])
        ax.set(xlabel="total gain", title="Feature importance")
        figures["feature_importance"] = fig
    if contributions is not None and len(contributions):
        mean_abs = contributions.drop(columns=["bias"], errors="ignore").abs().mean()
        top_c = mean_abs.sort_values().tail(20)
        fig, ax = _figure(6, 0.3 * len(top_c) + 1)
        ax.barh(top_c.index, top_c.to_numpy())
        ax.set(xlabel="mean |contribution| (raw score)", title="Feature contributions (holdout)")
        figures["feature_contributions"] = fig
    return figures


def multiclass_figures(
    y: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    importance: dict[str, float] | None = None,
) -> dict[str, Any]:
    """name → Figure: one-vs-rest ROC per class, the confusion matrix of the most probable
    class, the calibration of its probability (confidence vs accuracy), importances."""
    y, proba = np.asarray(y), np.asarray(proba, dtype=float)
    names = [str(c) for c in classes]
    figures: dict[str, Any] = {}
    fig, ax = _figure()
    for k, name in enumerate(names):
        truth = (y == classes[k]).astype(int)
        if 0 < truth.sum() < len(truth):
            fpr, tpr, _ = skm.roc_curve(truth, proba[:, k])
            auc = skm.roc_auc_score(truth, proba[:, k])
            ax.plot(fpr, tpr, label=f"{name} vs rest: {auc:.3f}")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (holdout)")
    ax.legend(loc="lower right", fontsize="small")
    figures["roc_curve"] = fig

    predicted = np.asarray(classes)[np.argmax(proba, axis=1)]
    fig, ax = _figure(0.6 * len(names) + 3, 0.6 * len(names) + 2.6)
    matrix = skm.confusion_matrix(y, predicted, labels=list(classes))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center")
    ticks = list(range(len(names)))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=names, yticklabels=names)
    ax.set(xlabel="predicted", ylabel="actual", title="Confusion matrix (most probable class)")
    figures["confusion_matrix"] = fig

    figures["calibration_curve"] = _calibration_figure(
        (predicted == y).astype(int),
        proba.max(axis=1),
        "probability of the predicted class",
        "accuracy",
    )
    figures.update(_importance_figures(importance, None))
    return _laid_out(figures)


def regression_figures(
    y: np.ndarray,
    pred: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray] | None,
    importance: dict[str, float] | None = None,
    contributions: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """name → Figure: predicted vs actual (with intervals), residuals, importances."""
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    figures: dict[str, Any] = {}
    fig, ax = _figure()
    order = np.argsort(pred)
    if bounds is not None:
        low, high = bounds
        ax.fill_between(range(len(y)), low[order], high[order], alpha=0.25, label="interval")
        inside = np.mean((y >= low) & (y <= high))
        ax.set_title(f"Holdout, sorted by prediction ({inside:.1%} inside the intervals)")
    else:
        ax.set_title("Holdout, sorted by prediction")
    ax.scatter(range(len(y)), y[order], s=3, color="C1", label="actual")
    ax.plot(range(len(y)), pred[order], color="C0", label="predicted")
    ax.set(xlabel="rows (sorted by prediction)", ylabel="value")
    ax.legend(loc="upper left")
    figures["predicted_vs_actual"] = fig
    fig, ax = _figure()
    ax.hist(y - pred, bins=50)
    ax.set(xlabel="actual − predicted", ylabel="rows", title="Residuals (holdout)")
    figures["residuals"] = fig
    figures.update(_importance_figures(importance, contributions))
    return _laid_out(figures)


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode()


def _table(rows: dict[str, Any]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in rows.items()
    )
    return f"<table>{cells}</table>"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def html_report(
    title: str,
    sections: dict[str, dict[str, Any]],
    figures: dict[str, Any],
) -> str:
    """One HTML page: a table per section (metrics, parameters, lineage…) and every figure."""
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;margin-bottom:1.5em}"
        "th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:14px}"
        "th{background:#f5f5f5}img{max-width:520px;margin:6px}"
    )
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"]
    parts.append(f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>")
    for name, rows in sections.items():
        parts.append(f"<h2>{html.escape(name)}</h2>{_table(rows)}")
    parts.append("<h2>Figures</h2>")
    for name, figure in figures.items():
        parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{_png(figure)}'>")
    parts.append("</body></html>")
    return "\n".join(parts)

"""Evaluation metrics (pure functions of labels and scores)."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def binary_metrics(
    y_true: np.ndarray, p_pos: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Ranking, probability and decision metrics, plus the constant predictor's log-loss."""
    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(p_pos, dtype=float), 1e-15, 1 - 1e-15)
    pred = (p >= threshold).astype(int)
    base_rate = float(y.mean())
    both_classes = len(np.unique(y)) == 2
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)) if both_classes else float("nan"),
        "pr_auc": float(skm.average_precision_score(y, p)) if both_classes else float("nan"),
        "log_loss": float(skm.log_loss(y, p, labels=[0, 1])),
        "log_loss_constant": float(skm.log_loss(y, np.full(len(y), base_rate), labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y, p)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "positive_rate": base_rate,
        "rows": float(len(y)),
    }


def multiclass_metrics(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray
) -> dict[str, float]:
    """The binary metrics' names, macro-averaged over classes (one-vs-rest for the ranking
    ones), the decision being the most probable class; ``brier`` is the multiclass Brier
    score (mean squared distance to the one-hot truth)."""
    y = np.asarray(y_true)
    p = np.clip(np.asarray(proba, dtype=float), 1e-15, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    pred = np.asarray(classes)[np.argmax(p, axis=1)]
    onehot = (y[:, None] == np.asarray(classes)[None, :]).astype(float)
    present = onehot.sum(axis=0) > 0
    all_present = bool(present.all()) and len(y) > 0
    prior = onehot.mean(axis=0)
    macro = {"average": "macro", "labels": list(classes), "zero_division": 0}
    return {
        "roc_auc": (
            float(skm.roc_auc_score(onehot, p, average="macro")) if all_present else float("nan")
        ),
        "pr_auc": (
            float(skm.average_precision_score(onehot, p, average="macro"))
            if all_present
            else float("nan")
        ),
        "log_loss": float(skm.log_loss(y, p, labels=list(classes))),
        "log_loss_constant": float(
            skm.log_loss(y, np.tile(np.clip(prior, 1e-15, 1), (len(y), 1)), labels=list(classes))
        ),
        "brier": float(np.mean(np.sum((p - onehot) ** 2, axis=1))),
        "f1": float(skm.f1_score(y, pred, **macro)),
        "precision": float(skm.precision_score(y, pred, **macro)),
        "recall": float(skm.recall_score(y, pred, **macro)),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "rows": float(len(y)),
    }


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Binary metrics on the positive class's column for two classes, else multiclass ones."""
    if len(classes) == 2:
        return binary_metrics(y_true, np.asarray(proba)[:, 1], threshold)
    return multiclass_metrics(y_true, proba, classes)


def choose_threshold(y_true: np.ndarray, p_pos: np.ndarray, objective: str) -> float:
    """The decision threshold that maximises ``objective`` on these (validation) rows."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(p_pos, dtype=float)
    if objective == "fixed" or len(np.unique(y)) < 2:
        return 0.5
    if objective == "youden":
        fpr, tpr, thresholds = skm.roc_curve(y, p)
        best = int(np.argmax(tpr - fpr))
        return float(min(thresholds[best], 1.0))
    precision, recall, thresholds = skm.precision_recall_curve(y, p)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def regression_metrics(y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Errors of point predictions, and the mean predictor's RMSE to compare with."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(pred, dtype=float)
    return {
        "rmse": float(np.sqrt(np.mean((y - p) ** 2))),
        "mae": float(np.mean(np.abs(y - p))),
        "r2": float(skm.r2_score(y, p)) if len(y) > 1 else float("nan"),
        "rmse_constant": float(np.std(y)),
        "mae_constant": float(np.mean(np.abs(y - np.median(y)))) if len(y) else float("nan"),
        "rows": float(len(y)),
    }


def interval_metrics(y_true: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict[str, float]:
    """How often the truth falls inside [low, high], and how wide the intervals are."""
    y = np.asarray(y_true, dtype=float)
    return {
        "interval_coverage": float(np.mean((y >= low) & (y <= high))),
        "interval_mean_width": float(np.mean(np.asarray(high) - np.asarray(low))),
    }

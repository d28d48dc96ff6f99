"""Evaluation: score a model's predictions on labelled digits and return plain dicts.

    mnistlab evaluate runs/<name> [--json]   # reloads the saved model alone and scores MNIST test

Metrics are computed here with NumPy from predicted probabilities, so every caller (training,
the CLI, later reports) gets the same numbers; tests check them against scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mnistlab.calibrate import EPSILON
from mnistlab.data import NUM_CLASSES
from mnistlab.inference import predict_probs


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Counts[i, j] = images of true class i predicted as class j."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return counts


def scores(probs: np.ndarray, y_true: np.ndarray) -> dict[str, Any]:
    """Accuracy, cross-entropy, per-class precision/recall/F1 and the confusion matrix.

    Args:
        probs: (N, 10) predicted class probabilities.
        y_true: (N,) integer labels.

    Returns:
        {"n", "accuracy", "loss", "per_class": [{"class", "precision", "recall", "f1",
        "support"}...], "macro_f1", "confusion_matrix": [[...]...]}; a class never predicted has
        precision 0, as scikit-learn reports with zero_division=0.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, probs.shape[1])
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    picked = np.clip(probs[np.arange(len(y_true)), y_true], EPSILON, 1.0)
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()),
        "loss": float(-np.log(picked).mean()),
        "per_class": [
            {
                "class": c,
                "precision": float(precision[c]),
                "recall": float(recall[c]),
                "f1": float(f1[c]),
                "support": int(support[c]),
            }
            for c in range(probs.shape[1])
        ],
        "macro_f1": float(f1.mean()),
        "confusion_matrix": cm.tolist(),
    }


def evaluate(
    model: Any, x_uint8: np.ndarray, y_true: np.ndarray, batch_size: int = 1024, tta: bool = False
) -> dict[str, Any]:
    """Score `model` on uint8 images (N, 28, 28) with integer labels; see `scores` for the dict."""
    return scores(predict_probs(model, x_uint8, batch_size, tta), y_true)


def format_report(result: dict[str, Any]) -> str:
    """The scores as text a person reads: headline, per-class table, confusion matrix."""
    lines = [
        f"test accuracy {result['accuracy'] * 100:.2f} %  "
        f"loss {result['loss']:.4f}  ({result['n']:,} images)",
        "",
        "class  precision  recall     f1  support",
    ]
    for row in result["per_class"]:
        lines.append(
            f"{row['class']:>5}  {row['precision']:>9.4f}  {row['recall']:>6.4f}  "
            f"{row['f1']:>5.4f}  {row['support']:>7}"
        )
    lines += ["", "confusion matrix (rows: true digit, columns: predicted)"]
    lines.append("      " + "".join(f"{c:>6}" for c in range(len(result["confusion_matrix"]))))
    for c, row in enumerate(result["confusion_matrix"]):
        lines.append(f"{c:>6}" + "".join(f"{v:>6}" for v in row))
    return "\n".join(lines)

"""Evaluation: score a model's predictions on labelled digits and return plain dicts.

    mnistlab evaluate runs/<name> [--json]   # reloads the saved model alone and scores MNIST test

Metrics are computed here with NumPy from predicted probabilities, so every caller (training,
the CLI, later reports) gets the same numbers; tests check them against scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mnistlab.data import NUM_CLASSES, preprocess_images

# Same floor Keras applies inside categorical cross-entropy, so our loss matches model.evaluate.
_EPSILON = 1e-7


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
    picked = np.clip(probs[np.arange(len(y_true)), y_true], _EPSILON, 1.0)
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


# Test-time augmentation: the image itself and its one-pixel shifts (rows, columns). A digit
# shifted by a pixel is the same digit; MNIST's centring is only accurate to about that much.
TTA_SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def shift_images(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Shift (N, 28, 28) images by whole pixels, filling the uncovered border with black (0)."""
    out = np.zeros_like(x)
    h, w = x.shape[1:3]
    out[:, max(rows, 0) : h + min(rows, 0), max(cols, 0) : w + min(cols, 0)] = x[
        :, max(-rows, 0) : h + min(-rows, 0), max(-cols, 0) : w + min(-cols, 0)
    ]
    return out


def _forward(model: Any, x_uint8: np.ndarray, batch_size: int) -> np.ndarray:
    """One pass of uint8 images through the model, with no copies beyond the float conversion."""
    x = preprocess_images(x_uint8)
    if len(x) <= batch_size and hasattr(model, "predict_on_batch"):
        # Keras's predict() costs ~50 ms a call in set-up; one batch straight through is ~1 ms.
        return np.asarray(model.predict_on_batch(x))
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))


def predict_probs(model: Any, x_uint8: np.ndarray, batch_size: int = 1024, tta: bool = False) -> np.ndarray:
    """Class probabilities for uint8 MNIST-format images, through the one preprocessing path.

    With tta, the mean of the probabilities over TTA_SHIFTS (five forward passes).
    """
    if not tta:
        return _forward(model, x_uint8, batch_size)
    return np.mean([_forward(model, shift_images(x_uint8, r, c), batch_size) for r, c in TTA_SHIFTS], axis=0)


def evaluate(
    model: Any, x_uint8: np.ndarray, y_true: np.ndarray, batch_size: int = 1024, tta: bool = False
) -> dict[str, Any]:
    """Score `model` on uint8 images (N, 28, 28) with integer labels; see `scores` for the dict."""
    return scores(predict_probs(model, x_uint8, batch_size, tta), y_true)


# Temperatures searched when calibrating: below 0.05 or above 20 a model is broken, not miscalibrated.
TEMPERATURE_RANGE = (0.05, 20.0)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax(log p / T): the probabilities a model would give with its logits divided by T.

    T > 1 softens an over-confident model, T < 1 sharpens an under-confident one; the ranking of
    the classes, and so the accuracy, never changes. T = 1 returns the probabilities as given.
    """
    if temperature == 1.0:
        return np.asarray(probs)
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPSILON, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature that minimises cross-entropy on held-out (probs, labels): temperature
    scaling (Guo et al., 2017), one parameter fitted on data the model was not trained on."""
    from scipy.optimize import minimize_scalar

    y_true = np.asarray(y_true, dtype=np.int64)
    rows = np.arange(len(y_true))

    def nll(log_t: float) -> float:
        return float(-np.log(np.clip(apply_temperature(probs, np.exp(log_t))[rows, y_true], _EPSILON, 1.0)).mean())

    lo, hi = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    return float(np.exp(minimize_scalar(nll, bounds=(lo, hi), method="bounded").x))


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by size."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true)
    # Bin k holds confidences in (k/bins, (k+1)/bins]; a confidence of exactly 0 cannot occur.
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for k in range(bins):
        in_bin = which == k
        if in_bin.any():
            total += in_bin.sum() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total / max(len(confidence), 1))


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

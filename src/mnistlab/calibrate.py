"""Calibration: turning a model's probabilities into honest confidence with one temperature.

    mnistlab train --model cnn   # fits the temperature on the validation split (metrics.json)

Temperature scaling (Guo et al., 2017) divides the logits by T, fitted on held-out images; the
ranking of the classes, and so the accuracy, never changes. ECE measures what it mends.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.inference import predict_probs
from mnistlab.runs import RunError

# Same floor Keras applies inside categorical cross-entropy, so a loss here matches model.evaluate.
EPSILON = 1e-7

# Temperatures searched when calibrating: below 0.05 or above 20 a model is broken, not miscalibrated.
TEMPERATURE_RANGE = (0.05, 20.0)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax(log p / T): the probabilities a model would give with its logits divided by T.

    T > 1 softens an over-confident model, T < 1 sharpens an under-confident one; the ranking of
    the classes, and so the accuracy, never changes. T = 1 returns the probabilities as given.
    """
    if temperature == 1.0:
        return np.asarray(probs)
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), EPSILON, 1.0)) / temperature
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
        return float(-np.log(np.clip(apply_temperature(probs, np.exp(log_t))[rows, y_true], EPSILON, 1.0)).mean())

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


# Fewest validation images to fit a temperature on: a few dozen are often all right, and the
# likelihood then falls without end as T -> 0 (a 10-shot fine-tune's 20 gave T = 0.06).
MIN_CALIBRATION_IMAGES = 200


def calibrate(model: Any, x_val: np.ndarray, y_val: np.ndarray) -> dict[str, Any]:
    """Fit the model's temperature on the validation split (uint8 images, integer labels).

    Returns:
        {"temperature", "fitted_on", "val_ece_before", "val_ece_after"}; temperature 1 (as
        trained) and fitted_on None when the validation split is smaller than
        MIN_CALIBRATION_IMAGES (or absent).
    """
    if len(x_val) < MIN_CALIBRATION_IMAGES:
        return {"temperature": 1.0, "fitted_on": None}
    probs = predict_probs(model, x_val)
    temperature = fit_temperature(probs, y_val)
    return {
        "temperature": round(temperature, 4),
        "fitted_on": f"validation split ({len(x_val):,} images)",
        "val_ece_before": round(expected_calibration_error(probs, y_val), 5),
        "val_ece_after": round(expected_calibration_error(apply_temperature(probs, temperature), y_val), 5),
    }


def recorded_temperature(metrics: Any, where: Path) -> float:
    """The temperature fitted at training, from metrics.json (1.0 where none was).

    Raises:
        RunError: metrics.json is not an object, or its temperature is not a finite number > 0.
    """
    if not isinstance(metrics, dict):
        raise RunError(f"{where} is not a JSON object of metrics.")
    calibration = metrics.get("calibration") or {}
    value = calibration.get("temperature", 1.0) if isinstance(calibration, dict) else calibration
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise RunError(f"{where} records temperature {str(value)[:40]!r}; it must be a number > 0.")
    return float(value)

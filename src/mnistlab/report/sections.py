"""The report's numbers, section by section: calibration with its reliability bins, the most
confident mistakes, the headline, the training history (per epoch, and every few batches), and
labelled folders of real images.

    mnistlab report runs/<name> --folders photos/   # report.json holds what these return
"""

from __future__ import annotations

import csv
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.calibrate import apply_temperature, expected_calibration_error
from mnistlab.data import DataError, MnistArrays, folders
from mnistlab.errors import MnistlabError
from mnistlab.runs import RunDir, library_versions

GALLERY_SIZE = 60  # most confident mistakes shown
# Runs of up to this many epochs get their learning curve from batches.csv: a point an epoch would
# be too few to show a trend (one epoch, the default, would be none).
BATCH_CURVE_EPOCHS = 5
CALIBRATION_BINS = 15  # as evaluate.expected_calibration_error's default


class ReportError(MnistlabError):
    """A report that cannot be made: an unwritable destination, a folder without labelled images."""


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def read_history(path: Path) -> dict[str, list[float | None]] | None:
    """history.csv as columns (epochs counted from 1); columns with no numbers are left out."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        return None
    if not rows:
        return None
    columns = {key: [_number(r[key]) for r in rows] for key in rows[0]}
    columns = {k: v for k, v in columns.items() if any(x is not None for x in v)}
    if "epoch" in columns:
        columns["epoch"] = [int(e) + 1 for e in columns["epoch"]]  # CSVLogger counts from 0
    return columns


def read_batches(path: Path) -> dict[str, list[float | None]] | None:
    """batches.csv (mnistlab.train.batches) as columns: "epoch", how far into training each row's
    batches lie (their middle, in epochs: 0.5 is halfway through the first), then "loss" and
    "accuracy", their means; None when the run has no such file (one trained before it was kept).
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if (r.get("epoch") or "").isdigit()]
    except (FileNotFoundError, UnicodeDecodeError, csv.Error):
        return None
    if not rows:
        return None
    # An epoch's batches: as recorded, else (steps unknown to Keras) the most any row reached.
    most: dict[int, int] = {}
    for r in rows:
        most[int(r["epoch"])] = max(most.get(int(r["epoch"]), 1), int(_number(r.get("batch")) or 0))
    columns: dict[str, list[float | None]] = {"epoch": [], "loss": [], "accuracy": []}
    before = (-1, 0.0)  # (epoch, batches done) of the previous row
    for r in rows:
        epoch, done = int(r["epoch"]), _number(r.get("batch")) or 0.0
        batches = _number(r.get("batches")) or most[epoch]
        since = before[1] if before[0] == epoch else 0.0
        columns["epoch"].append(round(epoch + (since + done) / 2 / batches, 4))
        columns["loss"].append(_number(r.get("loss")))
        columns["accuracy"].append(_number(r.get("accuracy")))
        before = (epoch, done)
    return columns


def batches_section(run: RunDir) -> dict[str, list[float | None]] | None:
    """The run's training curve within epochs (read_batches), for a run of up to
    BATCH_CURVE_EPOCHS epochs; None for a longer run, or one without batches.csv."""
    batches = read_batches(run.batches)
    if batches is None or int(batches["epoch"][-1]) + 1 > BATCH_CURVE_EPOCHS:
        return None
    return batches


def labelled_images(folder: str | os.PathLike) -> list[tuple[Path, int]]:
    """(image, label) pairs of a folder of labelled images, read by data.folders.labelled_images
    (its docstring gives the rule for which layout wins). A bad row of the folder's labels table
    is left out with a warning on stderr rather than ending the report.

    Raises:
        ReportError: no such folder, or no labelled images in it.
    """
    try:
        found = folders.labelled_images(folder, strict=False)
    except DataError as exc:
        raise ReportError(str(exc)) from exc
    for reason in found.skipped:
        print(f"warning: {reason} It is left out of the report.", file=sys.stderr)
    return found.images


def score_folder(
    predictor: Any, folder: str | os.PathLike, pairs: list[tuple[Path, int]]
) -> tuple[dict[str, Any], np.ndarray]:
    """Accuracy of the run's Predictor on one folder's (image, label) pairs; images that cannot be
    decoded are listed and left out. Returns the numbers and what the model saw for each mistake."""
    from mnistlab.data import ImageError, prepare_image

    seen, labels, paths, skipped = [], [], [], []
    for path, label in pairs:
        try:
            seen.append(prepare_image(path).image)
        except ImageError as e:
            skipped.append({"path": str(path), "reason": str(e)})
            continue
        labels.append(label)
        paths.append(path)
    if not seen:
        raise ReportError(f"no image in folder {folder} could be read (first: {skipped[0]['reason']}).")
    images = np.stack(seen)
    probs = predictor.probabilities(images)
    y = np.asarray(labels)
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y)
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")]
    result = {
        "path": str(folder),
        "n": len(y),
        "accuracy": float((predicted == y).mean()),
        "skipped": skipped,
        "mistakes": [
            {"path": str(paths[i]), "label": int(y[i]), "predicted": int(predicted[i]),
             "confidence": float(probs[i, predicted[i]])}
            for i in wrong
        ],
    }
    return result, images[wrong]


def _reliability(probs: np.ndarray, y: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict[str, Any]]:
    """Per equal-width confidence bin (binned as expected_calibration_error does): its count,
    mean confidence and accuracy (None for an empty bin)."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    out = []
    for k in range(bins):
        in_bin = which == k
        n = int(in_bin.sum())
        out.append({
            "low": k / bins,
            "high": (k + 1) / bins,
            "n": n,
            "confidence": float(confidence[in_bin].mean()) if n else None,
            "accuracy": float(correct[in_bin].mean()) if n else None,
        })
    return out


def calibration_section(probs: np.ndarray, y: np.ndarray, recorded: dict[str, Any]) -> dict[str, Any]:
    """The calibration section: ECE and reliability bins as trained and under the run's recorded
    temperature (metrics.json's "calibration", {} when it has none)."""
    temperature = float(recorded.get("temperature", 1.0))
    calibrated = apply_temperature(probs, temperature)
    return {
        "temperature": temperature,
        "fitted_on": recorded.get("fitted_on"),
        "recorded": bool(recorded),  # False: metrics.json has no calibration (an older or unfinished run)
        "bins": CALIBRATION_BINS,
        "ece_as_trained": expected_calibration_error(probs, y, CALIBRATION_BINS),
        "ece": expected_calibration_error(calibrated, y, CALIBRATION_BINS),
        "mean_confidence": float(calibrated.max(axis=1).mean()),
        "accuracy": float((calibrated.argmax(axis=1) == y).mean()),
        "reliability_as_trained": _reliability(probs, y),
        "reliability": _reliability(calibrated, y),
    }


def mistakes_section(probs: np.ndarray, y: np.ndarray, limit: int) -> dict[str, Any]:
    """The most confident mistakes first, each with the test index, its label and the top 3."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y)
    confident = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")]
    shown = []
    for i in confident[:limit]:
        order = np.argsort(probs[i])[::-1][:3]
        shown.append({
            "index": int(i),
            "label": int(y[i]),
            "predicted": int(predicted[i]),
            "confidence": float(probs[i, predicted[i]]),
            "top3": [{"digit": int(d), "confidence": float(probs[i, d])} for d in order],
        })
    return {
        "count": len(wrong),
        "over_90_percent_sure": int((probs[wrong, predicted[wrong]] > 0.9).sum()),
        "shown": shown,
    }


def read_run_config(run: RunDir) -> dict[str, Any]:
    """The run's config.toml as a dict; {} when it is missing or unreadable."""
    try:
        return tomllib.loads(run.config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def headline_section(run: RunDir, metrics: dict[str, Any], config: dict[str, Any], test: dict[str, Any],
                     data: MnistArrays, calibration: dict[str, Any]) -> dict[str, Any]:
    """The headline: the run, its test scores now and as recorded, its data and versions."""
    model = config.get("model", {})
    recorded = (metrics.get("data") or {}).get("sha256")
    checksums = data.checksums()
    return {
        "run": run.path.name,
        "path": str(run.path),
        "model": model.get("name"),
        "arch": model.get("arch"),
        "params": metrics.get("params"),
        "test_accuracy": test["accuracy"],
        "test_images": test["n"],
        "test_errors": test["n"] - int(np.trace(np.asarray(test["confusion_matrix"]))),
        "macro_f1": test["macro_f1"],
        "recorded_test_accuracy": metrics.get("test_accuracy"),
        "recorded_test_images": metrics.get("test_images"),
        "epochs_run": metrics.get("epochs_run"),
        "epochs_configured": config.get("train", {}).get("epochs"),
        "kept_epoch": metrics.get("kept_epoch"),
        "members": metrics.get("members"),
        "train_seconds": metrics.get("train_seconds"),
        "train_images": metrics.get("train_images"),
        "temperature": calibration["temperature"],
        "temperature_fitted_on": calibration["fitted_on"],
        "ece": calibration["ece"],
        "data_source": data.source,
        "data_sha256": checksums,
        "data_matches_run": None if recorded is None else recorded == checksums,
        "seed": metrics.get("seed"),
        "command": metrics.get("command"),
        "finished": metrics.get("finished"),
        "versions": metrics.get("versions", {}),
        "versions_now": library_versions(("matplotlib", "scipy")),
        "machine": metrics.get("machine", {}),  # its backend and device: runs before 0.1 lack them
    }

"""The report's numbers, section by section: calibration with its reliability bins, the most
confident mistakes, the headline, the training history, and labelled folders of real images.

    mnistlab report runs/<name> --folders photos/   # report.json holds what these return
"""

from __future__ import annotations

import csv
import os
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.calibrate import apply_temperature, expected_calibration_error
from mnistlab.data import NUM_CLASSES, MnistArrays
from mnistlab.errors import MnistlabError
from mnistlab.runs import RunDir, library_versions

GALLERY_SIZE = 60  # most confident mistakes shown
CALIBRATION_BINS = 15  # as evaluate.expected_calibration_error's default
LABELS_FILES = ("labels.csv", "index.csv")  # file,label tables a labelled folder may hold


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


def labelled_images(folder: str | os.PathLike) -> list[tuple[Path, int]]:
    """(image, label) pairs from a folder of labelled images, sorted by file name.

    The labels come from sub-folders named 0..9 (the layout `mnistlab serve` stores corrections
    in), else from a labels.csv or index.csv with columns file,label (file relative to the
    folder), else from the folder's own name when that is a digit.

    Raises:
        ReportError: no such folder, or no labelled images in it.
    """
    from mnistlab.data.decode import IMAGE_SUFFIXES

    root = Path(folder)
    if not root.is_dir():
        raise ReportError(f"image folder {root} does not exist.")

    def images_in(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

    pairs = [(p, int(d.name)) for d in sorted(root.iterdir())
             if d.is_dir() and d.name in {str(k) for k in range(NUM_CLASSES)} for p in images_in(d)]
    table = next((root / name for name in LABELS_FILES if (root / name).is_file()), None)
    if not pairs and table is not None:
        with open(table, newline="", encoding="utf-8") as f:
            pairs = [(root / r["file"], int(r["label"])) for r in csv.DictReader(f)
                     if r.get("file") and (r.get("label") or "").strip().isdigit()]
    if not pairs and root.name.isdigit() and len(root.name) == 1:
        pairs = [(p, int(root.name)) for p in images_in(root)]
    if not pairs:
        raise ReportError(
            f"folder {root} holds no labelled images: put them in sub-folders 0..9, or list them in "
            "labels.csv (columns file,label)."
        )
    return pairs


def _score_folder(
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


def _calibration(probs: np.ndarray, y: np.ndarray, recorded: dict[str, Any]) -> dict[str, Any]:
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


def _mistakes(probs: np.ndarray, y: np.ndarray, limit: int) -> dict[str, Any]:
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


def _read_config(run: RunDir) -> dict[str, Any]:
    try:
        return tomllib.loads(run.config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _headline(run: RunDir, metrics: dict[str, Any], config: dict[str, Any], test: dict[str, Any],
              data: MnistArrays, calibration: dict[str, Any]) -> dict[str, Any]:
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
    }

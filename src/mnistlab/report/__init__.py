"""Reports people look at: one run, or several side by side, as one self-contained HTML page with
the same numbers as JSON beside it.

    mnistlab report runs/<name> [--out FILE]       # RUN/report.html and RUN/report.json
    mnistlab compare runs/a runs/b --out cmp.html  # cmp.html and cmp.json

A report reloads the run's saved model and scores it on the MNIST test set: per-class scores, the
confusion matrix, the most confident mistakes, calibration under the run's fitted temperature, a
sweep of seven corruptions over a seeded subset of the test set and, given folders of labelled
images, their accuracy. Every number in the page is in the JSON.

    sections.py     the JSON's sections: calibration, mistakes, headline, history and batches, labelled folders
    robustness.py   the corruptions and the sweep
    findings.py     the takeaways, one plain sentence per finding
    figures.py      the figures, drawn with matplotlib's object-oriented API
    page.py         the HTML

Matplotlib and SciPy are imported only inside the functions that draw and distort, so
`import mnistlab.report` stays light.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.calibrate import apply_temperature
from mnistlab.data import MnistArrays, load_mnist
from mnistlab.evaluate import scores
from mnistlab.files import atomic_write_json, atomic_write_text
from mnistlab.inference import predict_probs
from mnistlab.report.findings import compare_takeaways, takeaways
from mnistlab.report.page import Pictures, render_compare_html, render_html
from mnistlab.report.robustness import (
    CORRUPTIONS,
    ROBUST_DROP,
    SWEEP_IMAGES,
    Corruption,
    add_noise,
    blur,
    invert,
    rotate,
    scale,
    shift,
    sweep,
    sweep_subset,
    thicken,
)
from mnistlab.report.sections import (
    GALLERY_SIZE,
    ReportError,
    batches_section,
    calibration_section,
    headline_section,
    labelled_images,
    mistakes_section,
    read_batches,
    read_history,
    read_run_config,
    score_folder,
)
from mnistlab.runs import REPORT_FILE, RunDir

__all__ = [
    "CORRUPTIONS",
    "REPORT_VERSION",
    "SWEEP_IMAGES",
    "Corruption",
    "ReportError",
    "add_noise",
    "blur",
    "build_report",
    "compare_runs",
    "compare_takeaways",
    "invert",
    "labelled_images",
    "read_batches",
    "read_history",
    "render_compare_html",
    "render_html",
    "rotate",
    "scale",
    "shift",
    "sweep",
    "sweep_subset",
    "takeaways",
    "thicken",
    "write_report",
]

REPORT_VERSION = 1  # bumped when a key of the JSON changes meaning


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"report: {text}", file=sys.stderr, flush=True)


def _collect(
    run: RunDir,
    *,
    data: MnistArrays | None,
    folders: Sequence[str | os.PathLike],
    sweep_images: int,
    seed: int,
    test_limit: int,
    progress: bool,
) -> tuple[dict[str, Any], Pictures]:
    from mnistlab.predict import Predictor

    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 2)
        clock = now

    listed = [(folder, labelled_images(folder)) for folder in folders]  # a bad folder fails before the work
    _say(progress, f"loading the model of {run.path}")
    model = run.load_model()
    metrics = run.read_metrics()
    config = read_run_config(run)
    if data is None:
        data = load_mnist(progress=progress)
    lap("load")
    x, y = data.x_test, data.y_test.astype(np.int64)
    if test_limit:
        x, y = x[:test_limit], y[:test_limit]

    _say(progress, f"scoring {len(x):,} test images")
    probs = predict_probs(model, x)
    test = scores(probs, y)
    calibration = calibration_section(probs, y, metrics.get("calibration") or {})
    calibrated = apply_temperature(probs, calibration["temperature"])
    mistakes = mistakes_section(calibrated, y, GALLERY_SIZE)
    pictures = Pictures(mistakes=x[[m["index"] for m in mistakes["shown"]]])
    lap("test")

    robustness = None
    if sweep_images > 0:
        subset = sweep_subset(len(x), sweep_images, seed)
        settings = sum(len(c.strengths) for c in CORRUPTIONS.values())
        _say(progress, f"sweeping {len(CORRUPTIONS)} corruptions ({settings} settings) "
                       f"over {len(subset):,} test images")
        corruptions, pictures.examples = sweep(model, x[subset], y[subset], seed)
        corrupted = [a for c in corruptions.values() for s, a in zip(c["strengths"], c["accuracy"], strict=True) if s]
        robustness = {
            "images": len(subset),
            "seed": seed,
            "example_index": int(subset[0]),
            "clean_accuracy": float((probs[subset].argmax(axis=1) == y[subset]).mean()),
            "mean_corrupted_accuracy": float(np.mean(corrupted)),
            "holds_within": ROBUST_DROP,
            "corruptions": corruptions,
        }
        lap("sweep")

    folder_results = []
    if listed:
        predictor = Predictor(model, calibration["temperature"])
        for folder, pairs in listed:
            _say(progress, f"scoring the {len(pairs):,} images in {folder}")
            result, seen = score_folder(predictor, folder, pairs)
            folder_results.append(result)
            pictures.folders.append(seen)
        lap("folders")

    report = {
        "report_version": REPORT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "headline": headline_section(run, metrics, config, test, data, calibration),
        "takeaways": [],
        "history": read_history(run.history),
        "batches": batches_section(run),
        "test": test,
        "mistakes": mistakes,
        "calibration": calibration,
        "robustness": robustness,
        "folders": folder_results,
        "config": config,
        "timings": timings,
    }
    report["takeaways"] = takeaways(report)
    return report, pictures


def build_report(
    run: str | os.PathLike,
    *,
    data: MnistArrays | None = None,
    folders: Sequence[str | os.PathLike] = (),
    sweep_images: int = SWEEP_IMAGES,
    seed: int = 0,
    test_limit: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Every number of a run's report, JSON-ready: what report.json holds.

    Args:
        run: a run folder written by `mnistlab train`.
        data: MNIST arrays already in memory; loaded (cache or download) when None.
        folders: folders of labelled real images to score too (see labelled_images).
        sweep_images: test images in the robustness sweep, drawn with `seed`; 0 skips the sweep.
        seed: the sweep's subset and noise.
        test_limit: score only the first N test images (0: all of them).
        progress: one line per stage on stderr.

    Returns:
        {"report_version", "created", "headline", "takeaways", "history", "batches", "test",
        "mistakes", "calibration", "robustness", "folders", "config", "timings"}; "batches" is the
        training curve within epochs for a run of a few (sections.batches_section), else None.

    Raises:
        RunError: no such run folder, or no loadable model in it.
        ReportError: a folder without labelled images.
    """
    return _collect(RunDir.open(run), data=data, folders=folders, sweep_images=sweep_images, seed=seed,
                    test_limit=test_limit, progress=progress)[0]


# --- files --------------------------------------------------------------------------------------


def _destination(out: str | os.PathLike | None, default: Path) -> tuple[Path, Path]:
    """(HTML, JSON) paths for `out` (a file, or a folder, existing or without a suffix, to put
    report.html in), with the folder created; checked before any work so a bad path fails in a
    second, not after the sweep.

    Raises:
        ReportError: a JSON name for the page, or a folder that cannot be made or written to.
    """
    page = Path(out) if out else default
    if page.is_dir() or not page.suffix:  # a folder, or one to be made: `--out reports/`
        page = page / REPORT_FILE
    numbers = page.with_suffix(".json")
    if numbers == page:
        raise ReportError(f"{page} is where the JSON goes; give the HTML file's name (e.g. report.html).")
    try:
        page.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(f"cannot write the report to {page}: {e.strerror or e}.") from None
    if not os.access(page.parent, os.W_OK):
        raise ReportError(f"cannot write the report to {page}: {page.parent} is not writable.")
    return page, numbers


def _write(page: Path, numbers: Path, report: dict[str, Any], text: str) -> None:
    try:
        atomic_write_json(numbers, report)
        atomic_write_text(page, text)
    except OSError as e:
        raise ReportError(f"cannot write the report to {page}: {e.strerror or e}.") from None


def write_report(run: str | os.PathLike, out: str | os.PathLike | None = None, **options: Any) -> Path:
    """Write a run's report page and its numbers beside it: RUN/report.html and RUN/report.json
    unless `out` names the page (or a folder for it).

    Args:
        run: a run folder written by `mnistlab train`.
        out: the HTML file, or a folder for report.html; the JSON gets the same name with .json.
        options: as build_report (data, folders, sweep_images, seed, test_limit, progress).

    Returns:
        The HTML file's path.

    Raises:
        RunError: no such run folder, or no loadable model in it.
        ReportError: an unwritable destination, a folder without labelled images.
    """
    folder = RunDir.open(run)
    page, numbers = _destination(out, folder.report)
    start = time.perf_counter()
    report, pictures = _collect(folder, **_options(options))
    _write(page, numbers, report, render_html(report, pictures))
    _say(options.get("progress", True), f"wrote {page} and {numbers.name} in {time.perf_counter() - start:.0f} s")
    return page


def _options(options: dict[str, Any]) -> dict[str, Any]:
    known = {"data": None, "folders": (), "sweep_images": SWEEP_IMAGES, "seed": 0, "test_limit": 0, "progress": True}
    unknown = set(options) - set(known)
    if unknown:
        raise TypeError(f"unexpected report options: {', '.join(sorted(unknown))}")
    return {**known, **options}


def compare_runs(runs: Sequence[str | os.PathLike], out: str | os.PathLike, **options: Any) -> Path:
    """Write one page comparing runs side by side, and its numbers (the runs' reports) beside it.

    Args:
        runs: two or more run folders.
        out: the HTML file (or a folder for report.html); the JSON gets the same name with .json.
        options: as build_report; the sweep uses the same subset and noise for every run.

    Returns:
        The HTML file's path.

    Raises:
        RunError: a run folder missing or without a loadable model.
        ReportError: fewer than two runs, an unwritable destination.
    """
    if len(runs) < 2:
        raise ReportError("compare needs at least two run folders.")
    folders = [RunDir.open(r) for r in runs]
    page, numbers = _destination(out, Path(REPORT_FILE))
    options = _options(options)
    start = time.perf_counter()
    if options["data"] is None:
        options["data"] = load_mnist(progress=options["progress"])
    reports = []
    for k, folder in enumerate(folders):
        _say(options["progress"], f"run {k + 1} of {len(folders)}: {folder.path}")
        reports.append(_collect(folder, **options)[0])
    comparison = {
        "report_version": REPORT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "takeaways": compare_takeaways(reports),
        "runs": reports,
    }
    _write(page, numbers, comparison, render_compare_html(comparison))
    _say(options["progress"], f"wrote {page} and {numbers.name} in {time.perf_counter() - start:.0f} s")
    return page

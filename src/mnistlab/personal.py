"""Personal models: what a run learned of one person's handwriting, as child runs of it.

    runs/fast-20261207-101500/personal/20261207-103000/   # a lesson's run folder (mnistlab teach)

A lesson (`mnistlab.teach`) fine-tunes a run on the drawings its page stored and writes a child
run folder under RUN/personal/, named by the time it started; the parent is never modified.
`mnistlab serve RUN` serves the newest finished child. While a lesson runs, it rewrites
<lesson>.progress.json beside its folder (atomically), which the server reads to report progress:
beside, because the folder itself is claimed by training only once the samples are read.

This module is only names and files, so that the server can find and watch lessons without
importing Keras.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mnistlab.files import atomic_write_json
from mnistlab.runs import METRICS_FILE, MODEL_FILE, ONNX_FILE, RunDir

PERSONAL_DIR = "personal"
# A lesson needs this many drawings at least, two of one digit (one to learn, one to hold back).
MIN_SAMPLES = 10
# Fewer held-back drawings than this give no figure a person should trust (one drawing is ten
# points of ten): the page and the CLI say so instead of showing one.
MIN_HELD_OUT = 10
PROGRESS_SUFFIX = ".progress.json"


def personal_root(run: str | Path) -> Path:
    """The folder of a run's personal models."""
    return Path(run) / PERSONAL_DIR


def personal_name(run: str | Path, lesson: Path) -> str:
    """What pages and GET /v1/model call a personal model: <run's folder name>/personal/<lesson>."""
    return f"{Path(run).resolve().name}/{PERSONAL_DIR}/{lesson.name}"


def new_lesson_path(run: str | Path) -> Path:
    """A free folder name for a lesson starting now: personal/<YYYYmmdd-HHMMSS>[-N], taken by
    neither a folder nor a progress file (a lesson that failed before its folder was made)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = personal_root(run) / stamp
    n = 2
    while path.exists() or progress_path(path).exists():
        path = personal_root(run) / f"{stamp}-{n}"
        n += 1
    return path


def is_finished_lesson(path: Path) -> bool:
    """Whether a lesson folder holds a finished model: metrics.json, written last, and the ONNX
    file the server loads (a lesson killed while exporting has metrics but no ONNX)."""
    return (path / METRICS_FILE).is_file() and (path / MODEL_FILE).is_file() and (path / ONNX_FILE).is_file()


def newest_personal(run: str | Path) -> RunDir | None:
    """The newest finished personal model of `run`, or None when it has none."""
    root = personal_root(run)
    if not root.is_dir():
        return None
    # Names are start times, so they sort in time order; -N suffixes sort after their stamp.
    lessons = sorted((p for p in root.iterdir() if p.is_dir() and is_finished_lesson(p)),
                     key=lambda p: (p.name.split("-")[:2], len(p.name), p.name))
    return RunDir(lessons[-1]) if lessons else None


def progress_path(lesson: Path) -> Path:
    """Where a lesson reports its progress: <lesson>.progress.json, beside its folder."""
    return lesson.with_name(lesson.name + PROGRESS_SUFFIX)


def write_progress(lesson: Path, **fields: Any) -> None:
    """Replace a lesson's progress file (atomically: a reader sees the old one or the new one)."""
    atomic_write_json(progress_path(lesson), {**fields, "time": time.time()})


def read_progress(lesson: Path) -> dict[str, Any]:
    """A lesson's progress as a dict; {} before the lesson wrote any."""
    try:
        return json.loads(progress_path(lesson).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return {}

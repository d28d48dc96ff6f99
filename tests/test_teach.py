"""Lessons from a person's drawings (mnistlab.teach, mnistlab.personal): the personal model is a
child run with an ONNX file, scored before and after; the parent is never modified."""

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mnistlab.personal import is_finished_lesson, newest_personal, personal_root, read_progress
from mnistlab.runs import RunDir
from mnistlab.serve.corrections import CorrectionStore
from mnistlab.teach import MIN_SAMPLES, TeachError, teach


def store_drawings(folder, mnist, per_digit, digits=range(10)):
    """MNIST test digits as the page stores them: dark ink on white, 280 px, through the store."""
    store = CorrectionStore(folder, 10_000, 10**9)
    for digit in digits:
        for index in np.flatnonzero(mnist.y_test == digit)[:per_digit]:
            big = 255 - np.asarray(Image.fromarray(mnist.x_test[index]).resize((280, 280), Image.BILINEAR))
            buffer = io.BytesIO()
            Image.fromarray(big).save(buffer, format="PNG")
            store.add(buffer.getvalue(), digit)
    return folder


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.fixture
def parent(small_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(small_run.run.path, run)
    return run


def test_a_lesson_is_a_child_run_scored_before_and_after(parent, mnist, small_run):
    store_drawings(parent / "corrections", mnist, per_digit=4)
    before = snapshot(parent)
    lesson = teach(parent, mnist=mnist, train_fields={"epochs": 3})
    assert snapshot(parent) == before  # the parent's files, byte for byte
    assert lesson.run.path.parent == personal_root(parent) and is_finished_lesson(lesson.run.path)
    assert newest_personal(parent).path == lesson.run.path
    report = lesson.run.read_metrics()["finetune"]
    assert report == lesson.report and report["parent"] == str(parent)
    # One in four of each digit's drawings held back, the rest learnt from.
    assert report["held_out"] == 10 and report["target"]["train_images"] == 30
    for when in ("before", "after"):
        assert 0 <= report[when]["target_test_accuracy"] <= 1 and report[when]["mnist_test_accuracy"] > 0.8
    assert report["before"]["mnist_test_accuracy"] == pytest.approx(small_run.metrics["test_accuracy"], abs=0.02)
    # Too few drawings to fit a temperature on: the parent's is carried over, and says so.
    calibration = lesson.run.read_metrics()["calibration"]
    assert calibration["temperature"] == small_run.metrics["calibration"]["temperature"]
    assert calibration["carried_from"] == str(parent)
    progress = read_progress(lesson.run.path)
    assert progress["phase"] == "done" and progress["report"] == report


def test_the_newest_finished_lesson_is_the_one_served(parent, tmp_path):
    assert newest_personal(parent) is None
    root = personal_root(parent)
    for name, finished in (("20261207-101500", True), ("20261207-101500-2", True), ("20261207-120000", False)):
        (root / name).mkdir(parents=True)
        if finished:
            for file in ("metrics.json", "model.keras", "model.onnx"):
                (root / name / file).write_text("{}")
    assert newest_personal(parent).path.name == "20261207-101500-2"  # the unfinished one is skipped


def test_too_few_drawings_is_one_clear_error(parent, mnist):
    store_drawings(parent / "corrections", mnist, per_digit=1)  # 10 drawings, none of a digit twice
    with pytest.raises(Exception, match="two images of a digit"):
        teach(parent, mnist=mnist)
    few = store_drawings(parent / "few", mnist, per_digit=3, digits=range(3))  # 9 drawings
    with pytest.raises(TeachError, match=f"needs {MIN_SAMPLES} drawings"):
        teach(parent, few, mnist=mnist)
    with pytest.raises(TeachError, match="draw some on the page first"):
        teach(parent, parent / "nowhere", mnist=mnist)
    # No run folder was claimed; each progress file says why its lesson failed.
    assert not [p for p in personal_root(parent).iterdir() if p.is_dir()]
    progress = [json.loads(p.read_text()) for p in personal_root(parent).iterdir()]
    assert len(progress) == 3 and all(p["phase"] == "failed" and p["error"] for p in progress)


def test_cli_teach_prints_the_figures(parent, mnist, tmp_path):
    store_drawings(parent / "corrections", mnist, per_digit=2)
    out = tmp_path / "lesson"
    command = [sys.executable, "-m", "mnistlab.cli", "teach", str(parent), "--out", str(out), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["run"] == str(out) and figures["held_out"] == 10 and is_finished_lesson(out)
    assert RunDir(out).read_metrics()["finetune"]["parent"] == str(parent)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 2 and again.stderr.startswith("error:") and "already exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

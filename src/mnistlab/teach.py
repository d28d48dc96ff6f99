"""Teach a run one person's handwriting: fine-tune it on the drawings its page stored, into a
personal model (a child run), scored before and after on drawings held back from learning.

    mnistlab teach runs/<name>      # what the drawing page's "Learn" button runs

Each lesson starts from the run itself, never from an earlier lesson, and learns from every
drawing stored (RUN/corrections), so lessons do not pile up forgetting. One drawing in
HELD_OUT of each digit's is held back to score the person's own writing before and after;
MNIST's test set is scored before and after too (what the model forgot). The lesson is a child
run folder, RUN/personal/<time>/ (mnistlab.personal), with metrics.json["finetune"] naming its
parent and a model.onnx for the server; the parent is never modified.

How it learns (TEACH_FINETUNE, TEACH_TRAIN): every layer, with three quarters of every batch
drawn from MNIST (replay) so that it keeps reading other people's digits; benchmarks/teach.py
measures the choice on simulated writers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from mnistlab.data import MnistArrays, load_digit_set, load_mnist
from mnistlab.errors import MnistlabError
from mnistlab.export import export_model
from mnistlab.files import atomic_write_json
from mnistlab.finetune import finetune, finetune_config
from mnistlab.personal import MIN_HELD_OUT, MIN_SAMPLES, new_lesson_path, write_progress
from mnistlab.runs import RunDir

# One in four of each digit's drawings is held back (a digit drawn twice or more keeps one): the
# page asks for four of each, so three are learnt from and ten (one a digit) score the lesson.
HELD_OUT = 0.25

# Chosen with benchmarks/teach.py --compare on three simulated writers (the default `fast` model,
# four drawings a digit): every layer with half of every batch from MNIST read 100 % of their
# held-out drawings and lost 0.47-0.55 MNIST points; three quarters from MNIST read 99-100 % and
# lost 0.27-0.32; none lost 1.4-2.9; the head alone, or a step of 3e-4, did no better than all.
TEACH_FINETUNE = {"strategy": "all", "replay": 0.75, "test_fraction": HELD_OUT, "control": False}
TEACH_TRAIN = {
    "epochs": 40,
    "batch_size": 32,  # a quarter of it the person's drawings, the rest MNIST (replay)
    "learning_rate": 1e-3,
    "schedule": "onecycle",
    "augment": 0.5,
    "validation_split": 0.0,  # a few dozen drawings: every one is learnt from or held back
    "patience": 0,
}


class TeachError(MnistlabError):
    """A lesson that cannot be given: too few drawings, or none of a digit twice."""


@dataclass(frozen=True)
class Lesson:
    """A finished lesson: the personal model's run folder and its before/after figures."""

    run: RunDir
    report: dict[str, Any]  # metrics.json["finetune"], with "held_out" and "seconds" added


class LessonProgress(keras.callbacks.Callback):
    """Rewrite the lesson's progress file after every epoch: the epoch, the time, an ETA."""

    def __init__(self, lesson: Path, epochs: int):
        super().__init__()
        self.lesson, self.epochs, self.start = lesson, epochs, 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.start = time.monotonic()
        write_progress(self.lesson, phase="learning", epoch=0, epochs=self.epochs, eta_s=None)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        elapsed = time.monotonic() - self.start
        done = epoch + 1
        write_progress(self.lesson, phase="learning", epoch=done, epochs=self.epochs,
                       eta_s=round(elapsed / done * (self.epochs - done), 1))

    def on_train_end(self, logs: dict | None = None) -> None:
        write_progress(self.lesson, phase="checking", epoch=self.epochs, epochs=self.epochs, eta_s=None)


def teach(
    run: str | Path,
    samples: str | Path | None = None,
    out: str | Path | None = None,
    *,
    mnist: MnistArrays | None = None,
    finetune_fields: dict[str, Any] | None = None,
    train_fields: dict[str, Any] | None = None,
    verbose: int = 0,
) -> Lesson:
    """Fine-tune `run` on a person's drawings into a personal model, and export it to ONNX.

    Args:
        run: the run folder to start from (its model is never modified).
        samples: labelled drawings (a folder as the page's corrections store keeps them);
            RUN/corrections when None.
        out: the lesson's run folder; RUN/personal/<time> when None.
        mnist: MNIST in memory (replay, the MNIST check); loaded (offline) when None.
        finetune_fields, train_fields: settings over TEACH_FINETUNE and TEACH_TRAIN.
        verbose: 0 quiet, 1 Keras's progress.

    Returns:
        The lesson: its run folder and report (before/after on the held-back drawings and MNIST).

    Raises:
        TeachError: fewer than MIN_SAMPLES drawings, or no digit drawn twice.
        MnistlabError: the run or the drawings cannot be read, the folder exists, the export fails.
    """
    start = time.monotonic()
    parent = RunDir.open(run)
    samples = Path(samples) if samples is not None else parent.corrections
    lesson = Path(out) if out is not None else new_lesson_path(parent.path)
    lesson.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _teach(parent, samples, lesson, mnist, finetune_fields or {}, train_fields or {}, verbose, start)
    except MnistlabError as e:
        write_progress(lesson, phase="failed", error=str(e))
        raise


def _teach(parent: RunDir, samples: Path, lesson: Path, mnist: MnistArrays | None, finetune_fields: dict[str, Any],
           train_fields: dict[str, Any], verbose: int, start: float) -> Lesson:
    write_progress(lesson, phase="reading", epoch=0, epochs=0, eta_s=None)
    if not samples.is_dir():
        raise TeachError(f"no drawings to learn from: {samples} does not exist; draw some on the page first.")
    target = load_digit_set(samples, test_fraction=HELD_OUT, seed=0, offline=True, progress=False)
    count = len(target.y_train) + len(target.y_test)
    if count < MIN_SAMPLES:
        raise TeachError(f"a lesson needs {MIN_SAMPLES} drawings at least; {samples} holds {count}.")
    cfg = finetune_config(parent.path, {**TEACH_FINETUNE, **finetune_fields, "data": str(samples)},
                          {**TEACH_TRAIN, **train_fields, "out": str(lesson), "verbose": verbose, "offline": True})
    if mnist is None:
        mnist = load_mnist(offline=True, progress=False)
    result = finetune(cfg, mnist=mnist, target=target, callbacks=[LessonProgress(lesson, cfg.train.epochs)])
    run = result.run.run
    report = {**result.report, "held_out": int(len(target.y_test))}
    metrics = {**result.run.metrics, "finetune": report}
    if not (metrics.get("calibration") or {}).get("fitted_on"):
        # Too few drawings to fit a temperature on: the parent's, fitted on its own validation
        # split, is the better guess of how sure the fine-tuned model should be than none.
        parent_calibration = parent.read_metrics().get("calibration")
        if parent_calibration:
            metrics["calibration"] = {**parent_calibration, "carried_from": str(parent.path)}
    atomic_write_json(run.metrics, metrics)  # before the export, which records the temperature
    write_progress(lesson, phase="exporting", epoch=cfg.train.epochs, epochs=cfg.train.epochs, eta_s=None)
    export_model(run.path, "onnx", data=mnist)
    report["seconds"] = round(time.monotonic() - start, 1)
    atomic_write_json(run.metrics, {**metrics, "finetune": report})
    write_progress(lesson, phase="done", epoch=cfg.train.epochs, epochs=cfg.train.epochs, eta_s=0, report=report)
    return Lesson(run=run, report=report)


def format_lesson(lesson: Lesson) -> str:
    """The before/after a person reads: their held-back drawings, then MNIST."""
    r = lesson.report
    held = r["held_out"]
    lines = [f"lesson {lesson.run.path} from {r['parent']}: {r['target']['train_images']} drawings learnt from, "
             f"{held} held back, {r['seconds']:.0f} s"]
    if held >= MIN_HELD_OUT:
        lines.append(f"  your held-back drawings: {r['before']['target_test_accuracy'] * 100:.0f} % -> "
                     f"{r['after']['target_test_accuracy'] * 100:.0f} %")
    else:
        lines.append(f"  your held-back drawings: too few ({held}; {MIN_HELD_OUT} needed) to measure")
    lines.append(f"  MNIST test: {r['before']['mnist_test_accuracy'] * 100:.2f} % -> "
                 f"{r['after']['mnist_test_accuracy'] * 100:.2f} %")
    return "\n".join(lines)

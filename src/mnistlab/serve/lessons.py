"""The page's lessons: one `mnistlab teach` at a time in a child process, watched by a thread,
and the served model switched to what it learnt once it is done.

    POST /v1/finetune   start a lesson (409 while one runs)
    GET  /v1/finetune   its progress, then its before/after (or why it failed)

A lesson runs in its own process, so the server stays an ONNX Runtime process that never loads
TensorFlow, keeps answering while the lesson trains, and outlives a lesson that crashes or is
killed: the model it was serving goes on being served, and GET /v1/finetune says what happened.
The new model is swapped in as one reference (`Served`): a request reads it once, so one in
flight finishes on the model it started with, and none fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.personal import MIN_HELD_OUT, MIN_SAMPLES, is_finished_lesson, new_lesson_path, read_progress
from mnistlab.predict import Predictor
from mnistlab.serve.corrections import CorrectionStore
from mnistlab.serve.requests import ApiError

# What the page's progress bar shows for each phase of a lesson (learning moves with its epochs).
_PHASE_SHARE = {"starting": 0.0, "reading": 0.05, "learning": 0.1, "checking": 0.85, "exporting": 0.92, "done": 1.0,
                "failed": 1.0}
_LEARNING_SHARE = _PHASE_SHARE["checking"] - _PHASE_SHARE["learning"]


@dataclass(frozen=True)
class Model:
    """What is served: the predictor, the name GET /v1/model gives it, and what runs it."""

    predictor: Predictor
    name: str
    runtime: str  # "onnx" or "keras"


class Served:
    """The model being served, replaced as one reference: readers never see half a switch."""

    def __init__(self, model: Model):
        self.model = model

    def switch(self, model: Model) -> None:
        self.model = model


class Lessons:
    """Lessons of one run: at most one running; the last one's outcome kept for GET.

    Args:
        run: the run that lessons start from (its model is never modified).
        store: the page's drawings, which lessons learn from.
        switch: called with the lesson's folder once it is done, to serve what it learnt.
    """

    def __init__(self, run: Path, store: CorrectionStore, switch: Callable[[Path], None]):
        self.run, self.store, self.switch = run, store, switch
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._lesson: Path | None = None
        self._started = 0.0
        self._outcome: dict[str, Any] = {"state": "idle"}

    def start(self) -> dict[str, Any]:
        """Start a lesson in a child process.

        Raises:
            ApiError: 409 while one runs; 400 with too few drawings.
        """
        counts = self.store.counts()
        with self._lock:
            if self._process is not None:
                raise ApiError(409, "a lesson is running already; GET /v1/finetune says how far it is")
            if sum(counts) < MIN_SAMPLES or max(counts) < 2:
                raise ApiError(400, f"a lesson needs {MIN_SAMPLES} drawings at least, one digit drawn twice; "
                                    f"{sum(counts)} are stored")
            self._lesson = new_lesson_path(self.run)
            command = [sys.executable, "-m", "mnistlab.cli", "teach", str(self.run), "--samples",
                       str(self.store.root), "--out", str(self._lesson), "--json"]
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
            self._process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE, text=True, errors="replace")
            self._started = time.monotonic()
            self._outcome = {"state": "running"}
            threading.Thread(target=self._watch, args=(self._process, self._lesson), name="mnistlab-lesson",
                             daemon=True).start()
        return self.status()

    def status(self) -> dict[str, Any]:
        """The running lesson's phase, progress (0-1) and ETA, or the last one's outcome."""
        with self._lock:
            outcome = dict(self._outcome)
            lesson, started = self._lesson, self._started
        answer: dict[str, Any] = {"phase": None, "progress": None, "eta_s": None, "elapsed_s": None, "result": None,
                                  "error": None, **outcome, "samples": self.store.counts(), "min_samples": MIN_SAMPLES}
        if outcome["state"] == "running" and lesson is not None:
            progress = read_progress(lesson)
            phase = progress.get("phase", "starting")
            share = _PHASE_SHARE.get(phase, 0.0)
            if phase == "learning" and progress.get("epochs"):
                share += _LEARNING_SHARE * progress.get("epoch", 0) / progress["epochs"]
            answer.update(phase=phase, progress=round(share, 3), eta_s=progress.get("eta_s"),
                          elapsed_s=round(time.monotonic() - started, 1))
        return answer

    def _watch(self, process: subprocess.Popen, lesson: Path) -> None:
        """Wait for the lesson's process; serve its model if it finished, else say why not."""
        assert process.stderr is not None
        errors = process.stderr.read()  # until the process closes it: it has ended then
        code = process.wait()
        outcome: dict[str, Any]
        if code == 0 and is_finished_lesson(lesson):
            try:
                self.switch(lesson)
                report = read_progress(lesson)["report"]
                outcome = {"state": "done", "result": _result(lesson.name, report, time.monotonic() - self._started)}
            except Exception as e:  # a model that will not load: the old one goes on serving
                outcome = {"state": "failed", "error": f"the lesson's model could not be loaded: {e}"}
        else:
            outcome = {"state": "failed", "error": _why(code, errors)}
        with self._lock:
            self._outcome, self._process = outcome, None


def _result(lesson: str, report: dict[str, Any], seconds: float) -> dict[str, Any]:
    """GET /v1/finetune's result from the lesson's report (mnistlab.teach): the person's held-back
    drawings scored only when enough were held back."""
    measured = report["held_out"] >= MIN_HELD_OUT

    def scores(when: str) -> dict[str, Any]:
        s = report[when]
        return {"yours": s["target_test_accuracy"] if measured else None, "mnist": s["mnist_test_accuracy"]}

    return {"lesson": lesson, "learnt_from": report["target"]["train_images"], "held_out": report["held_out"],
            "before": scores("before"), "after": scores("after"), "seconds": round(seconds, 1)}


def _why(code: int, errors: str) -> str:
    """One line on why a lesson's process failed: its `error:` line, or how it ended."""
    lines = [line.strip() for line in errors.splitlines() if line.strip()]
    said = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
    if said:
        return said[-1]
    if code < 0:
        return f"the lesson's process was stopped by signal {-code}; the model served before goes on"
    return f"the lesson's process exited with status {code}" + (f": {lines[-1][:300]}" if lines else "")

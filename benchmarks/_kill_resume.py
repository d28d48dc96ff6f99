"""Kill -9 a training run at a random moment, run the same command again: does it finish, how much
is lost, and is the final model as good as an uninterrupted one? (benchmarks/reliability.py)

    python benchmarks/_kill_resume.py [--trials 10] [--seed 0]

Each trial starts `mnistlab train --out DIR ...` (a small cnn, a few epochs on a slice of MNIST)
as a subprocess, sends it SIGKILL at a moment drawn uniformly over the span in which an
uninterrupted reference run trains (from its config.toml appearing to its metrics.json, the mean
of two; a kill during start-up costs nothing and is tested in tests/test_resume.py), checks that every file under
its real name in the folder parses, then reruns the same command until the run is finished.
Epochs lost are those history.csv showed complete at the kill that the rerun trained again (the
epoch in progress is always lost and not counted). On a busy machine a run can end before its
kill moment; such trials are counted in `killed` as False.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.runs import RunDir

MAX_RERUNS = 3  # reruns of the killed command before a trial counts as unfinished
REFERENCE_RUNS = 2  # uninterrupted runs whose mean wall time the kill moments are drawn over


def train_command(out: Path, epochs: int, train_limit: int) -> list[str]:
    """The run each trial kills: a 25k-parameter cnn, scored on all 10,000 test images."""
    return [sys.executable, "-m", "mnistlab.cli", "train", "--out", str(out), "--model", "cnn",
            "--conv-filters", "8", "--dense-units", "16", "--epochs", str(epochs), "--train-limit", str(train_limit),
            "--validation-split", "0.1", "--patience", "0", "--learning-rate", "0.003", "--offline", "-q"]


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _reference_run(command: list[str], run: RunDir) -> tuple[int, str, float, float]:
    """Run to the end, noting when the run folder's config.toml and metrics.json appeared.

    Returns:
        (exit status, last stderr line, seconds to config.toml, seconds to metrics.json).
    """
    start = time.perf_counter()
    child = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    began = ended = None
    while child.poll() is None:
        now = time.perf_counter() - start
        if began is None and run.config.exists():
            began = now
        if ended is None and run.metrics.exists():
            ended = now
        time.sleep(0.02)
    err = child.stderr.read()
    elapsed = time.perf_counter() - start
    last_line = (err.strip().splitlines() or [""])[-1]
    return child.returncode, last_line, began if began is not None else 0.0, ended if ended is not None else elapsed


def _run_to_end(command: list[str]) -> tuple[int, str, float]:
    start = time.perf_counter()
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, check=False)
    last_line = (done.stderr.strip().splitlines() or [""])[-1]  # the CLI's one-line error
    return done.returncode, last_line, time.perf_counter() - start


def logged_epochs(run: RunDir) -> int:
    """Complete rows in history.csv (a row cut short by the kill is not one)."""
    try:
        return max(0, run.history.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def intact(run: RunDir) -> bool:
    """Whether every run file present under its real name parses (temporary files aside)."""
    try:
        if run.config.exists():
            tomllib.loads(run.config.read_text(encoding="utf-8"))
        if run.metrics.exists():
            json.loads(run.metrics.read_text(encoding="utf-8"))
        for path in (run.model, run.checkpoint):
            if path.exists():
                with zipfile.ZipFile(path) as z:
                    if z.testzip() is not None or "config.json" not in z.namelist():
                        return False
        if run.best_weights.exists():
            with np.load(run.best_weights) as z:
                [z[name] for name in z.files]
        if run.history.exists():
            lines = run.history.read_bytes().split(b"\n")[:-1]  # complete lines only
            if any(line.count(b",") != lines[0].count(b",") for line in lines):
                return False
    except (OSError, ValueError, zipfile.BadZipFile, tomllib.TOMLDecodeError):
        return False
    return True


def kill_resume_trials(
    trials: int = 10, seed: int = 0, workdir: Path | None = None, epochs: int = 4, train_limit: int = 6000
) -> dict[str, Any]:
    """Run `trials` kill-and-rerun trials after one uninterrupted reference run.

    Args:
        trials: how many runs to kill.
        seed: seeds the kill moments (the runs themselves all use seed 0).
        workdir: where the run folders go (a temporary folder, removed after, when None).
        epochs, train_limit: the size of each run.

    Returns:
        {"trials", "finished", "epochs_lost", "final_accuracy", "reference_accuracy",
        "kill_times_s", ...}: per-trial lists, plus the reference's seconds and, per trial,
        whether the kill landed before the run ended, whether the folder was intact after it,
        the epoch the rerun resumed from, and the seconds the reruns took.
    """
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="kill-resume-") as tmp:
            return kill_resume_trials(trials, seed, Path(tmp), epochs, train_limit)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    spans, accuracy = [], []
    for k in range(REFERENCE_RUNS):
        reference = RunDir(workdir / f"reference{k}")
        rc, err, began, ended = _reference_run(train_command(reference.path, epochs, train_limit), reference)
        if rc != 0:
            raise RuntimeError(f"the reference run failed: {err}")
        spans.append((began, ended))
        accuracy.append(reference.read_metrics()["test_accuracy"])
    began, ended = (float(np.mean(t)) for t in zip(*spans, strict=True))
    reference_s, reference_acc = ended, accuracy[0]
    print(f"reference: {epochs} epochs on {train_limit:,} images, training from {began:.1f} s to {ended:.1f} s "
          f"(mean of {REFERENCE_RUNS}), test accuracy {' and '.join(f'{a * 100:.2f}' for a in accuracy)} %",
          flush=True)

    rng = random.Random(seed)
    out: dict[str, Any] = {"trials": trials, "finished": 0, "epochs_lost": [], "final_accuracy": [],
                           "reference_accuracy": reference_acc, "kill_times_s": [],
                           "reference_seconds": round(reference_s, 2), "killed": [], "intact_after_kill": [],
                           "resumed_from_epoch": [], "rerun_seconds": []}
    for trial in range(trials):
        run = RunDir(workdir / f"trial{trial}")
        command = train_command(run.path, epochs, train_limit)
        kill_at = rng.uniform(began, ended)
        child = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            child.wait(timeout=kill_at)
            killed = False  # it ended first
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
            killed = True
        logged, whole = logged_epochs(run), intact(run)
        needed_rerun = not run.finished
        reruns, err, rerun_s = 0, "", 0.0
        while not run.finished and reruns < MAX_RERUNS:
            rc, err, s = _run_to_end(command)
            reruns, rerun_s = reruns + 1, rerun_s + s
            if rc != 0:
                break
        m = run.read_metrics() if run.finished else {}
        resumed = m.get("resumed_from_epoch")
        lost = (logged - (resumed or 0) if needed_rerun else 0) if m else None
        out["finished"] += bool(m)
        out["epochs_lost"].append(lost)
        out["final_accuracy"].append(m.get("test_accuracy"))
        out["kill_times_s"].append(round(kill_at, 2))
        out["killed"].append(killed)
        out["intact_after_kill"].append(whole)
        out["resumed_from_epoch"].append(resumed)
        out["rerun_seconds"].append(round(rerun_s, 1))
        if m:
            outcome = (f"resumed after epoch {resumed}, {lost} completed epoch(s) lost" if resumed is not None
                       else "started afresh" if needed_rerun else "had finished")
            outcome += f", test accuracy {m['test_accuracy'] * 100:.2f} %"
        else:
            outcome = f"NOT finished after {reruns} rerun(s): {err}"
        print(f"trial {trial + 1}/{trials}: kill -9 at {kill_at:.1f} s "
              f"({'' if killed else 'after it ended, '}{logged} epochs logged, folder "
              f"{'intact' if whole else 'DAMAGED'}) -> {outcome}", flush=True)
    return out


def main() -> None:
    import argparse

    from _common import header

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-limit", type=int, default=6000)
    parser.add_argument("--workdir", type=Path, help="keep the run folders here (default: a temporary folder)")
    args = parser.parse_args()
    header()
    result = kill_resume_trials(args.trials, args.seed, args.workdir, args.epochs, args.train_limit)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

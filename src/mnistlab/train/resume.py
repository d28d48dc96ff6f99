"""Resuming a killed run: a checkpoint after every epoch, and reading it back.

    mnistlab train --model cnn --out runs/x   # kill it, run the same command again: it goes on

A run killed at any moment (kill -9 included) is continued by running the same command again
with the same --out (runs.claim_run says which folders are continued): the checkpoint holds the
weights and the optimizer, whose step count says how many epochs were completed, so training
goes on from the next one with the learning-rate schedule where it was. Only the data order
differs from an uninterrupted run: the shuffling is reseeded with seed + completed epochs.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass

import keras
import numpy as np

from mnistlab.files import atomic_write
from mnistlab.runs import RunDir, RunError, save_model_atomic


class EpochCheckpoint(keras.callbacks.Callback):
    """Save what fit() trains (the model, or its augmentation wrapper) after every epoch,
    atomically: the weights and the optimizer, whose step count tells a resumed run how many
    epochs were completed. With `keep_best` (early stopping), the weights of the best epoch by
    val_accuracy so far are saved too, after the checkpoint, for EarlyStopping to restore.

    keras.callbacks.ModelCheckpoint and BackupAndRestore write in place (BackupAndRestore two
    files that a kill between them leaves disagreeing), so a crash mid-write leaves a broken
    checkpoint; this writes one file beside the old one and renames. An epoch whose loss is not
    a number (TerminateOnNaN stopped it) is not saved: the checkpoint stays the last sound epoch.
    """

    def __init__(self, run: RunDir, keep_best: bool = False):
        super().__init__()
        self.run, self.keep_best = run, keep_best
        self.best: float | None = None  # the phase's best val_accuracy so far

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if not math.isfinite(logs.get("loss", 0.0)):
            return
        save_model_atomic(self.model, self.run.checkpoint)
        current = logs.get("val_accuracy")
        # Strictly greater, as EarlyStopping counts an improvement: the first best epoch wins.
        if self.keep_best and current is not None and (self.best is None or current > self.best):
            self.best = current
            _save_weights(self.run, self.model.get_weights())


class ResumedEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping on val_accuracy, restoring the best weights; in a resumed run it carries on
    from the epochs completed before the kill (their val_accuracy, and the best one's weights)."""

    def __init__(self, patience: int, val_accuracy: list[float], best_weights: list[np.ndarray] | None):
        super().__init__(monitor="val_accuracy", patience=patience, restore_best_weights=True)
        self.prior, self.prior_best_weights = val_accuracy, best_weights

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        if self.prior:
            best = int(np.argmax(self.prior))
            # The state EarlyStopping.on_epoch_end would have reached after those epochs.
            self.best, self.best_epoch, self.wait = self.prior[best], best, len(self.prior) - 1 - best
            self.best_weights = self.prior_best_weights


@dataclass(frozen=True)
class Restored:
    """What a killed run's checkpoint gave back for the phase it was in."""

    epochs: int  # completed before the kill; 0 when killed in the first
    val_accuracy: list[float]  # of those epochs
    best_weights: list[np.ndarray] | None  # the best epoch's, for early stopping to restore


def restore_checkpoint(trainer: keras.Model, run: RunDir, steps_per_epoch: int, keep_best: bool) -> Restored:
    """Load a killed run's checkpoint into `trainer` (weights, and the optimizer with its step
    count, so the learning-rate schedule goes on where it was) and cut history.csv back to the
    epochs it holds.

    Returns:
        The epochs completed, their val_accuracy, and with keep_best the weights of the best of
        them (for early stopping to restore).

    Raises:
        RunError: a checkpoint or history that does not fit this run.
    """
    done = 0
    if run.checkpoint.is_file():  # none: killed in the first epoch
        trainer.optimizer.build(trainer.trainable_variables)  # its variables must exist to load them
        try:
            trainer.load_weights(run.checkpoint)
        except Exception as e:  # Keras raises many types for a damaged or foreign file
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RunError(f"cannot resume from {run.checkpoint}: {reason}") from None
        steps = int(keras.ops.convert_to_numpy(trainer.optimizer.iterations))  # int() fails on a mirrored one
        done, rest = divmod(steps, steps_per_epoch)
        if not done or rest:
            raise RunError(f"cannot resume from {run.checkpoint}: its optimizer took {steps} steps, "
                           f"not a whole number of epochs of {steps_per_epoch}.")
    rows = run.truncate_history(done)
    val = [float(r["val_accuracy"]) for r in rows if r.get("val_accuracy") not in (None, "", "NA")]
    best_weights = None
    if keep_best and val:
        if int(np.argmax(val)) == done - 1:
            # The checkpoint is the best epoch. best_weights.npz may be older (a kill between the
            # two writes), so it is brought up to date for a later resume.
            best_weights = trainer.get_weights()
            _save_weights(run, best_weights)
        else:
            best_weights = _load_weights(run, trainer.get_weights())
    return Restored(done, val, best_weights)


def phase_finished(done: int, epochs: int, val_accuracy: list[float], patience: int) -> bool:
    """Whether a phase of `epochs` had ended after `done`: all of them, or early stopping was due."""
    if done >= epochs:
        return True
    # EarlyStopping stops once `patience` epochs in a row have not beaten the best.
    return patience > 0 and bool(val_accuracy) and len(val_accuracy) - 1 - int(np.argmax(val_accuracy)) >= patience


def _save_weights(run: RunDir, weights: list[np.ndarray]) -> None:
    atomic_write(run.best_weights, lambda out: np.savez(out, *weights))


def _load_weights(run: RunDir, like: list[np.ndarray]) -> list[np.ndarray]:
    """The best epoch's weights from best_weights.npz, which must match `like` array for array.

    A damaged file is an error, not skipped: without it early stopping would end holding the last
    epoch's weights while metrics.json named the best one as kept.

    Raises:
        RunError: the file is missing, damaged, or holds other arrays than the model's weights.
    """
    try:
        with np.load(run.best_weights) as saved:
            weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(f"cannot resume: {run.best_weights}, the best epoch's weights, cannot be read ({reason}); "
                       "remove the run folder and train again.") from None
    if [w.shape for w in weights] != [w.shape for w in like]:
        raise RunError(f"cannot resume: {run.best_weights} does not hold this model's weights; "
                       "remove the run folder and train again.")
    return weights

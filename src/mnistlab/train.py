"""Training: compile + fit + callbacks, writing a self-describing run folder.

    mnistlab train --model cnn --epochs 12   # or: from mnistlab.train import train; train(Config())

The one training path: Adam on categorical cross-entropy with accuracy, a validation split taken
from the end of the training set, early stopping that restores the best validation weights, a
checkpoint after every epoch, and a final score on the test set (never used to pick the epoch).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from mnistlab.config import Config, write_config
from mnistlab.data import MnistArrays, load_mnist, one_hot, preprocess_images
from mnistlab.evaluate import evaluate
from mnistlab.files import atomic_write_json
from mnistlab.models import build_model
from mnistlab.runs import (
    RunDir,
    command_line,
    library_versions,
    machine_info,
    save_model_atomic,
)


@dataclass(frozen=True)
class RunResult:
    """What train() leaves behind: the folder, the trained model and its metrics."""

    run: RunDir
    model: keras.Model
    metrics: dict[str, Any]


class EpochCheckpoint(keras.callbacks.Callback):
    """Save the whole model (weights and optimizer) after every epoch, atomically.

    keras.callbacks.ModelCheckpoint writes in place, so a crash mid-write leaves a broken file;
    this writes beside it and renames.
    """

    def __init__(self, run: RunDir):
        super().__init__()
        self.run = run

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        save_model_atomic(self.model, self.run.checkpoint)


class RunProgress(keras.callbacks.Callback):
    """One line per epoch with the run's elapsed time and an ETA for the remaining epochs."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs
        self.start = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        elapsed = time.perf_counter() - self.start
        done = epoch + 1
        eta = elapsed / done * (self.epochs - done)
        print(
            f"epoch {done}/{self.epochs}: val_accuracy {logs.get('val_accuracy', float('nan')) * 100:.2f} %"
            f"  elapsed {elapsed:.0f} s  ETA {eta:.0f} s (sooner if it stops early)",
            flush=True,
        )


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend, and make TensorFlow's CPU kernels deterministic."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def split_train_val(
    x: np.ndarray, y: np.ndarray, validation_split: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out the last `validation_split` of (x, y), as Keras's validation_split does."""
    n_val = max(1, int(round(len(x) * validation_split)))
    return x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]


def train(cfg: Config, *, data: MnistArrays | None = None) -> RunResult:
    """Train the model `cfg.model` describes with the settings in `cfg.train`.

    Args:
        cfg: the resolved configuration.
        data: MNIST arrays already in memory; loaded (cache, path or download) when None.

    Returns:
        The run folder (model.keras, config.toml, history.csv, checkpoint.keras, metrics.json),
        the trained model and its metrics.

    Raises:
        MnistlabError: data that cannot be had, a config that cannot be built, a run folder
            that exists already.
    """
    t = cfg.train
    if data is None:
        data = load_mnist(path=t.data_path or None, offline=t.offline, progress=t.verbose > 0)
    # Seed before building: the initial weights come from the same generator as the shuffling.
    seed_everything(t.seed)
    model = build_model(cfg.model)
    run = RunDir.create(t.out, cfg.model.name)
    write_config(cfg, run.config)

    x_all, y_all = data.x_train, data.y_train
    if t.train_limit:
        x_all, y_all = x_all[: t.train_limit], y_all[: t.train_limit]
    x_fit, y_fit, x_val, y_val = split_train_val(x_all, y_all, t.validation_split)
    x_test, y_test = data.x_test, data.y_test
    if t.test_limit:
        x_test, y_test = x_test[: t.test_limit], y_test[: t.test_limit]

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=t.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.CSVLogger(str(run.history)),
        EpochCheckpoint(run),
    ]
    if t.patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", patience=t.patience, restore_best_weights=True
            )
        )
    # A progress bar redrawn with \r floods a log file; one line per epoch reads better there.
    fit_verbose = 2 if t.verbose == 1 and not sys.stdout.isatty() else t.verbose
    if t.verbose:
        # Listed before RunProgress so the epoch's bar is finished before the run-level line.
        callbacks += [keras.callbacks.ProgbarLogger(), RunProgress(t.epochs)]
        print(
            f"training {cfg.model.name} ({model.count_params():,} parameters) on "
            f"{len(x_fit):,} images, validating on {len(x_val):,}; run folder {run.path}",
            flush=True,
        )

    start = time.perf_counter()
    history = model.fit(
        preprocess_images(x_fit),
        one_hot(y_fit),
        validation_data=(preprocess_images(x_val), one_hot(y_val)),
        epochs=t.epochs,
        batch_size=t.batch_size,
        callbacks=callbacks,
        verbose=fit_verbose,
    )
    train_seconds = time.perf_counter() - start

    test = evaluate(model, x_test, y_test)
    save_model_atomic(model, run.model)
    val_acc = history.history["val_accuracy"]
    best_epoch = int(np.argmax(val_acc)) if t.patience > 0 else len(val_acc) - 1
    metrics = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test_images": test["n"],
        "val_accuracy": float(val_acc[best_epoch]),
        "epochs_run": len(val_acc),
        "kept_epoch": best_epoch + 1,
        "train_seconds": round(train_seconds, 2),
        "train_images": len(x_fit),
        "params": int(model.count_params()),
        "seed": t.seed,
        "data": {"source": data.source, "sha256": data.checksums()},
        "versions": library_versions(),
        "machine": machine_info(),
        "command": command_line(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(run.metrics, metrics)
    return RunResult(run=run, model=model, metrics=metrics)

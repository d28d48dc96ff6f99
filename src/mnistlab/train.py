"""Training: compile + fit + callbacks, writing a self-describing run folder.

    mnistlab train --model cnn --epochs 12   # or: from mnistlab.train import train; train(Config())

The one training path: Adam on categorical cross-entropy with accuracy, a validation split taken
from the end of the training set, early stopping that restores the best validation weights, a
checkpoint after every epoch, and a final score on the test set (never used to pick the epoch).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from mnistlab.config import Config, TrainConfig, write_config
from mnistlab.data import MnistArrays, load_mnist, one_hot, preprocess_images
from mnistlab.evaluate import (
    apply_temperature,
    evaluate,
    expected_calibration_error,
    fit_temperature,
    predict_probs,
)
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
        key = "val_accuracy" if "val_accuracy" in logs else "accuracy"
        print(
            f"epoch {done}/{self.epochs}: {key} {logs.get(key, float('nan')) * 100:.2f} %"
            f"  elapsed {elapsed:.0f} s  ETA {eta:.0f} s",
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
    """Hold out the last `validation_split` of (x, y), as Keras's validation_split does.

    A split of 0 holds out nothing: the validation arrays come back empty.
    """
    n_val = int(round(len(x) * validation_split))
    if validation_split > 0:
        n_val = max(1, n_val)
    cut = len(x) - n_val
    return x[:cut], y[:cut], x[cut:], y[cut:]


def _train_val(data: MnistArrays, t: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The run's slice of the training set (train_limit), split into fit and validation parts."""
    x_all, y_all = data.x_train, data.y_train
    if t.train_limit:
        x_all, y_all = x_all[: t.train_limit], y_all[: t.train_limit]
    return split_train_val(x_all, y_all, t.validation_split)


def learning_rate(t: TrainConfig, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The Adam step size: constant, or one-cycle (linear warm-up from 1/10, then cosine to 0)."""
    if t.schedule == "constant":
        return t.learning_rate
    total = t.epochs * steps_per_epoch
    warmup = int(total * t.warmup)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=t.learning_rate / 10,
        decay_steps=max(1, total - warmup),
        alpha=0.0,
        warmup_target=t.learning_rate,
        warmup_steps=warmup,
    )


def augmentation(strength: float) -> keras.Sequential:
    """Digit-safe random distortions, active only in training: rotation, shift, zoom; no flips.

    strength 1 means up to +-10 degrees, +-10 % of the side (2.8 px) and +-10 % zoom, the range
    within which a written digit stays the same digit; the empty border is filled with black.
    """
    return keras.Sequential(
        [
            keras.layers.RandomRotation(strength * 10 / 360, fill_mode="constant"),
            keras.layers.RandomTranslation(strength * 0.1, strength * 0.1, fill_mode="constant"),
            keras.layers.RandomZoom(strength * 0.1, fill_mode="constant"),
        ],
        name="augmentation",
    )


def train(
    cfg: Config,
    *,
    data: MnistArrays | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> RunResult:
    """Train the model `cfg.model` describes with the settings in `cfg.train`.

    With cfg.train.ensemble > 1 this trains that many members and keeps their average
    (see train_ensemble).

    Args:
        cfg: the resolved configuration.
        data: MNIST arrays already in memory; loaded (cache, path or download) when None.
        callbacks: extra Keras callbacks for fit (a benchmark's clock, a tuner's pruner).

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
    if t.ensemble > 1:
        return train_ensemble(cfg, data, callbacks=callbacks)
    # Seed before building: the initial weights come from the same generator as the shuffling.
    seed_everything(t.seed)
    model = build_model(cfg.model)
    run = RunDir.create(t.out, cfg.model.name)
    write_config(cfg, run.config)

    x_fit, y_fit, x_val, y_val = _train_val(data, t)

    # Augmentation wraps the model for fitting only; the saved model is the bare network.
    trainer = model
    if t.augment > 0:
        inputs = keras.Input(model.input_shape[1:], name="image")
        trainer = keras.Model(inputs, model(augmentation(t.augment)(inputs)), name=f"{model.name}_train")
    steps_per_epoch = -(-len(x_fit) // t.batch_size)
    trainer.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate(t, steps_per_epoch)),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=t.steps_per_execution,
    )
    callbacks = [keras.callbacks.CSVLogger(str(run.history)), EpochCheckpoint(run), *(callbacks or [])]
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
        held_out = f"validating on {len(x_val):,}" if len(x_val) else "no validation split"
        print(
            f"training {cfg.model.name} ({model.count_params():,} parameters) on "
            f"{len(x_fit):,} images, {held_out}; run folder {run.path}",
            flush=True,
        )

    start = time.perf_counter()
    history = trainer.fit(
        preprocess_images(x_fit),
        one_hot(y_fit),
        validation_data=(preprocess_images(x_val), one_hot(y_val)) if len(x_val) else None,
        epochs=t.epochs,
        batch_size=t.batch_size,
        callbacks=callbacks,
        verbose=fit_verbose,
    )
    train_seconds = time.perf_counter() - start

    epochs_run = len(history.history["loss"])
    val_acc = history.history.get("val_accuracy")
    kept = int(np.argmax(val_acc)) if t.patience > 0 else epochs_run - 1
    return _finish(run, model, t, data, (x_val, y_val), {
        "val_accuracy": float(val_acc[kept]) if val_acc else None,
        "epochs_run": epochs_run,
        "kept_epoch": kept + 1,
        "train_seconds": round(train_seconds, 2),
        "train_images": len(x_fit),
        "train_images_per_s": round(len(x_fit) * epochs_run / train_seconds),
    })


def calibrate(model: keras.Model, x_val: np.ndarray, y_val: np.ndarray) -> dict[str, Any]:
    """Fit the model's temperature on the validation split (uint8 images, integer labels).

    Returns:
        {"temperature", "fitted_on", "val_ece_before", "val_ece_after"}; temperature 1 (as
        trained) and fitted_on None when there is no validation split to fit it on.
    """
    if len(x_val) == 0:
        return {"temperature": 1.0, "fitted_on": None}
    probs = predict_probs(model, x_val)
    temperature = fit_temperature(probs, y_val)
    return {
        "temperature": round(temperature, 4),
        "fitted_on": f"validation split ({len(x_val):,} images)",
        "val_ece_before": round(expected_calibration_error(probs, y_val), 5),
        "val_ece_after": round(expected_calibration_error(apply_temperature(probs, temperature), y_val), 5),
    }


def _finish(
    run: RunDir,
    model: keras.Model,
    t: TrainConfig,
    data: MnistArrays,
    validation: tuple[np.ndarray, np.ndarray],
    details: dict[str, Any],
) -> RunResult:
    """Calibrate the final model on the validation split, score it on the test set, save it, and
    write metrics.json: the scores, the run's own details, the calibration, then what makes the
    figure reproducible (seed, data, versions, machine)."""
    x_test, y_test = data.x_test, data.y_test
    if t.test_limit:
        x_test, y_test = x_test[: t.test_limit], y_test[: t.test_limit]
    test = evaluate(model, x_test, y_test)
    calibration = calibrate(model, *validation)
    save_model_atomic(model, run.model)
    metrics = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test_images": test["n"],
        **details,
        "calibration": calibration,
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


def train_ensemble(
    cfg: Config, data: MnistArrays, callbacks: list[keras.callbacks.Callback] | None = None
) -> RunResult:
    """Train cfg.train.ensemble members (seeds seed, seed+1, ...) and save their mean as one model.

    The saved model takes an image and returns the average of the members' probabilities, so it
    is loaded, evaluated, exported and served like any single model. Each member's own run
    folder is kept under members/.
    """
    t = cfg.train
    run = RunDir.create(t.out, f"{cfg.model.name}-ensemble{t.ensemble}")
    write_config(cfg, run.config)
    (run.path / "members").mkdir()
    members = []
    for k in range(t.ensemble):
        seed = t.seed + k
        member_train = dataclasses.replace(t, ensemble=1, seed=seed, out=str(run.path / "members" / f"seed{seed}"))
        if t.verbose:
            print(f"ensemble member {k + 1}/{t.ensemble} (seed {seed})", flush=True)
        members.append(train(dataclasses.replace(cfg, train=member_train), data=data, callbacks=callbacks))

    inputs = keras.Input(members[0].model.input_shape[1:], name="image")
    # Members are renamed: a functional model needs unique names for the models inside it.
    outputs = []
    for k, member in enumerate(members):
        member.model.name = f"member{k}"
        outputs.append(member.model(inputs))
    model = keras.Model(inputs, keras.layers.Average(name="mean_probability")(outputs), name=run.path.name)

    member_acc = [m.metrics["test_accuracy"] for m in members]
    # Every member held out the same tail of the training set, so it is held out for the mean too.
    _, _, x_val, y_val = _train_val(data, t)
    return _finish(run, model, t, data, (x_val, y_val), {
        "members": len(members),
        "member_test_accuracy": member_acc,
        "member_test_accuracy_mean": float(np.mean(member_acc)),
        "train_seconds": round(sum(m.metrics["train_seconds"] for m in members), 2),
    })

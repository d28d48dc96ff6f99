"""Training: compile + fit + callbacks, writing a self-describing run folder.

    mnistlab train --model cnn --epochs 12   # or: from mnistlab.train import train; train(Config())

The one training path: Adam on categorical cross-entropy with accuracy, a validation split taken
from the end of the training set, early stopping that restores the best validation weights, a
checkpoint after every epoch, and a final score on the test set (never used to pick the epoch).

A run killed at any moment (kill -9 included) is continued by running the same command again
with the same --out (runs.claim_run says which folders are continued): the checkpoint holds the
weights and the optimizer, whose step count says how many epochs were completed, so training
goes on from the next one with the learning-rate schedule where it was. Only the data order
differs from an uninterrupted run: the shuffling is reseeded with seed + completed epochs.

With --devices N (N > 1) the model is built, compiled and fitted inside a
tf.distribute.MirroredStrategy over N devices (see data_parallel): each step's batch is split
across N replicas and their gradients summed. Keras's own distribution API (keras.distribution)
is JAX-only; Keras 3's TensorFlow trainer honours a tf.distribute strategy instead.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from mnistlab.calibrate import calibrate
from mnistlab.config import Config, ConfigError, TrainConfig
from mnistlab.data import MnistArrays, load_mnist, one_hot, preprocess_images
from mnistlab.evaluate import evaluate
from mnistlab.files import atomic_write, atomic_write_json
from mnistlab.models import build_model, head_layers
from mnistlab.runs import (
    RunDir,
    RunError,
    claim_run,
    command_line,
    config_difference,
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
    """Save what fit() trains (the model, or its augmentation wrapper) after every epoch,
    atomically: the weights and the optimizer, whose step count tells a resumed run how many
    epochs were completed. With `keep_best` (early stopping), the weights of the best epoch by
    val_accuracy so far are saved too, after the checkpoint, for EarlyStopping to restore.

    keras.callbacks.ModelCheckpoint and BackupAndRestore write in place (BackupAndRestore two
    files that a kill between them leaves disagreeing), so a crash mid-write leaves a broken
    checkpoint; this writes one file beside the old one and renames.
    """

    def __init__(self, run: RunDir, keep_best: bool = False):
        super().__init__()
        self.run, self.keep_best = run, keep_best
        self.best: float | None = None  # the phase's best val_accuracy so far

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        save_model_atomic(self.model, self.run.checkpoint)
        current = (logs or {}).get("val_accuracy")
        # Strictly greater, as EarlyStopping counts an improvement: the first best epoch wins.
        if self.keep_best and current is not None and (self.best is None or current > self.best):
            self.best = current
            weights = self.model.get_weights()
            atomic_write(self.run.best_weights, lambda out: np.savez(out, *weights))


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


class RunProgress(keras.callbacks.Callback):
    """One line per epoch with the run's elapsed time and an ETA for the remaining epochs."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs
        self.start = 0.0
        self.first_epoch: int | None = None  # > 0 in a resumed run

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self.start:  # a run of several phases (fit calls) keeps one clock
            self.start = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.first_epoch is None:
            self.first_epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        elapsed = time.perf_counter() - self.start
        done = epoch + 1
        eta = elapsed / (done - (self.first_epoch or 0)) * (self.epochs - done)
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


@functools.cache  # the devices can be set up once per process: before TensorFlow's runtime starts
def data_parallel(devices: int) -> Any:
    """A tf.distribute.MirroredStrategy over `devices` replicas: the first GPUs when there are
    that many, else virtual CPUs split off the one physical CPU (they share its cores).

    Keras 3's TensorFlow trainer takes the strategy of the scope a model is created in and runs
    fit/evaluate/predict through it; keras.distribution (DataParallel) works on JAX only, its
    TensorFlow backend being a prototype marked "DO NOT USE".

    Raises:
        ConfigError: another backend than TensorFlow, or virtual CPUs asked for after TensorFlow
            started its runtime (in this process, something already ran).
    """
    if keras.backend.backend() != "tensorflow":
        raise ConfigError(f"devices > 1 is implemented with tf.distribute, for the TensorFlow backend only; "
                          f"this process uses {keras.backend.backend()}.")
    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) >= devices:
        names = [f"/gpu:{i}" for i in range(devices)]
    else:
        cpu = tf.config.list_physical_devices("CPU")[0]
        if len(tf.config.get_logical_device_configuration(cpu) or []) < devices:
            try:
                tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
            except RuntimeError:  # "Virtual devices cannot be modified after being initialized"
                raise ConfigError(
                    f"devices={devices} needs {devices} virtual CPUs, which TensorFlow can only set up before it "
                    f"first runs anything; train in a fresh process (as `mnistlab train --devices {devices}` "
                    f"does) or call train() before any other TensorFlow work."
                ) from None
        names = [f"/cpu:{i}" for i in range(devices)]
    return tf.distribute.MirroredStrategy(names)


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


@keras.saving.register_keras_serializable(package="mnistlab")
class LayerwiseAdam(keras.optimizers.Adam):
    """Adam whose step size is `head_multiplier` times larger for the variables named in
    `head_paths`: fine-tuning's discriminative learning rates (a new head moves fast, the
    pretrained features slowly), which Keras's optimizers do not offer.

    It overrides update_step, the per-variable hook Keras's optimizers are built on.
    """

    def __init__(self, head_paths: list[str] | tuple[str, ...] = (), head_multiplier: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.head_paths = tuple(head_paths)
        self.head_multiplier = float(head_multiplier)
        self._head_indices: frozenset[int] = frozenset()

    def build(self, var_list: list) -> None:
        super().build(var_list)
        paths = set(self.head_paths)
        self._head_indices = frozenset(i for i, v in enumerate(var_list) if v.path in paths)

    def update_step(self, gradient, variable, learning_rate):
        if self._get_variable_index(variable) in self._head_indices:
            learning_rate = learning_rate * self.head_multiplier
        super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "head_paths": list(self.head_paths), "head_multiplier": self.head_multiplier}


class ReplayBatches(keras.utils.PyDataset):
    """Batches of which a fixed share comes from a replay set (MNIST), drawn afresh every step,
    and the rest from the target images, each seen once an epoch: fine-tuning that keeps
    rehearsing what the model knew, so it does not forget it.

    Images come in as model input (float) with one-hot targets, as fit() takes arrays.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, x_replay: np.ndarray, y_replay: np.ndarray,
                 batch_size: int, fraction: float, seed: int):
        super().__init__()
        self.x, self.y, self.x_replay, self.y_replay = x, y, x_replay, y_replay
        self.n_replay = min(batch_size - 1, round(batch_size * fraction))  # >= 1 target image a batch
        self.n_target = batch_size - self.n_replay
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x))

    def __len__(self) -> int:
        return -(-len(self.x) // self.n_target)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        target = self.order[index * self.n_target : (index + 1) * self.n_target]
        replay = self.rng.integers(0, len(self.x_replay), self.n_replay)
        return (np.concatenate([self.x[target], self.x_replay[replay]]),
                np.concatenate([self.y[target], self.y_replay[replay]]))

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))


@dataclass(frozen=True)
class Phase:
    """One fit() of a run: how many epochs, which layers learn, at what step sizes."""

    epochs: int
    head_only: bool  # the feature extractor frozen
    learning_rate: float  # Adam's step size (the peak, with the onecycle schedule)
    head_multiplier: float = 1.0  # the head's step size over learning_rate


def phases(cfg: Config) -> list[Phase]:
    """The fit() calls a run makes: one for training from scratch and for most fine-tunes; the
    head alone, then every layer, for strategy head-then-all."""
    t, f = cfg.train, cfg.finetune
    if f is None:
        return [Phase(t.epochs, False, t.learning_rate)]
    if f.strategy == "head":
        return [Phase(t.epochs, True, f.head_learning_rate)]
    together = Phase(t.epochs, False, t.learning_rate, f.head_learning_rate / t.learning_rate)
    if f.strategy == "all":
        return [together]
    return [Phase(f.head_epochs, True, f.head_learning_rate),
            dataclasses.replace(together, epochs=t.epochs - f.head_epochs)]


def train(
    cfg: Config,
    *,
    data: MnistArrays | Any | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    model: keras.Model | None = None,
    replay: tuple[np.ndarray, np.ndarray] | None = None,
    resume: bool = False,
) -> RunResult:
    """Train the model `cfg.model` describes with the settings in `cfg.train`; or, given a
    trained `model`, fine-tune it as `cfg.finetune` says.

    With cfg.train.ensemble > 1 this trains that many members and keeps their average
    (see train_ensemble). A cfg.train.out holding an unfinished run of the same config is
    continued from its last completed epoch (see runs.claim_run).

    Args:
        cfg: the resolved configuration.
        data: MNIST arrays already in memory (loaded from cache, path or download when None), or
            other labelled digits with the same fields (x_train, y_train, x_test, y_test, source,
            checksums()), such as a fine-tune's target data.
        callbacks: extra Keras callbacks for fit (a benchmark's clock, a tuner's pruner).
        model: a trained model to start from instead of building one; it is trained in place
            (with devices > 1, a copy is: the returned model).
        replay: uint8 images and labels (MNIST's training set) of which cfg.finetune.replay of
            every batch is drawn.
        resume: continue an unfinished run, and fail if there is none: the one in
            cfg.train.out, or without out the newest of this config in runs/.

    Returns:
        The run folder (model.keras, config.toml, history.csv, checkpoint.keras, metrics.json),
        the trained model and its metrics.

    Raises:
        MnistlabError: data that cannot be had, a config that cannot be built, a run folder
            that holds anything but an unfinished run of this config, or one in use.
    """
    t = cfg.train
    strategy = data_parallel(t.devices) if t.devices > 1 else None  # before any folder is made
    if data is None:
        data = load_mnist(path=t.data_path or None, offline=t.offline, progress=t.verbose > 0)
    if t.ensemble > 1:
        return train_ensemble(cfg, data, callbacks=callbacks, resume=resume)
    name = cfg.model.name if cfg.finetune is None else f"{cfg.model.name}-finetune"
    # Each phase starts a new optimizer: a checkpoint's step count cannot say which phase it is in.
    not_resumable = "a fine-tune of several phases (head-then-all)" if len(phases(cfg)) > 1 else ""
    with claim_run(cfg, name, resume, not_resumable) as (run, resuming):
        if strategy is None:
            model, validation, details = _train_into(run, resuming, cfg, data, callbacks, model, replay)
        else:
            # The model (so its variables), the optimizer and fit() in the strategy's scope; then a
            # single-device copy is scored, saved and returned, as Keras 3.15's predict_on_batch
            # under a MirroredStrategy gives every replica's output for the whole batch.
            if t.verbose:
                names = [d.rsplit("/", 1)[-1] for d in strategy.extended.worker_devices]  # device:CPU:0, ...
                print(f"data-parallel over {t.devices} devices: {', '.join(names)}", flush=True)
            with strategy.scope():
                given = _copy_model(model) if model is not None else None  # loaded outside the scope
                model, validation, details = _train_into(run, resuming, cfg, data, callbacks, given, replay)
            model = _copy_model(model)
        return _finish(run, model, t, data, validation, {**details, "devices": t.devices})


def _train_into(
    run: RunDir,
    resuming: bool,
    cfg: Config,
    data: MnistArrays | Any,
    callbacks: list[keras.callbacks.Callback] | None,
    model: keras.Model | None,
    replay: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[keras.Model, tuple[np.ndarray, np.ndarray], dict[str, Any]]:
    """train() in a claimed folder: fit every phase (the epochs a checkpoint holds skipped).

    Returns:
        The trained model, the validation split (uint8 images, labels) and the run's details
        for metrics.json, for _finish.
    """
    t = cfg.train
    # Seed before building: the initial weights come from the same generator as the shuffling.
    seed_everything(t.seed)
    if model is None:
        model = build_model(cfg.model)

    x_fit, y_fit, x_val, y_val = _train_val(data, t)
    share = cfg.finetune.replay if cfg.finetune and replay is not None else 0.0
    if share > 0:
        inputs = ReplayBatches(preprocess_images(x_fit), one_hot(y_fit), preprocess_images(replay[0]),
                               one_hot(replay[1]), t.batch_size, share, t.seed)
        fit_args: dict[str, Any] = {"x": inputs}
        images_per_epoch = len(inputs) * t.batch_size
    else:
        fit_args = {"x": preprocess_images(x_fit), "y": one_hot(y_fit), "batch_size": t.batch_size}
        images_per_epoch = len(x_fit)
    steps_per_epoch = -(-images_per_epoch // t.batch_size)
    validation = (preprocess_images(x_val), one_hot(y_val)) if len(x_val) else None

    if t.verbose:
        held_out = f"validating on {len(x_val):,}" if len(x_val) else "no validation split"
        mixed = f", {share:.0%} of each batch from MNIST" if share > 0 else ""
        start_from = f"fine-tuning {cfg.finetune.parent}" if cfg.finetune else f"training {cfg.model.name}"
        print(
            f"{start_from} ({model.count_params():,} parameters) on {len(x_fit):,} images{mixed}, "
            f"{held_out}; run folder {run.path}",
            flush=True,
        )

    start = time.perf_counter()
    checkpoint = EpochCheckpoint(run, keep_best=t.patience > 0)
    every_phase = [keras.callbacks.CSVLogger(str(run.history), append=True), checkpoint, *(callbacks or [])]
    if t.verbose:
        # Listed before RunProgress so the epoch's bar is finished before the run-level line.
        every_phase += [keras.callbacks.ProgbarLogger(), RunProgress(t.epochs)]
    epochs_run, epochs_here, val_acc, kept, resumed_from = 0, 0, [], 0, None
    for phase in phases(cfg):  # a resumed run has one phase: claim_run refuses others
        trainer = _compile_phase(model, phase, t, steps_per_epoch)
        done, phase_val, best_weights = 0, [], None
        if resuming:
            done, phase_val, best_weights = _restore(trainer, run, steps_per_epoch, keep_best=t.patience > 0)
            resumed_from = done
            if t.verbose:
                print(f"resuming after epoch {done}/{t.epochs} from {run.checkpoint}" if done else
                      "resuming from the start: the run was killed in its first epoch", flush=True)
            if done:  # a fresh shuffling stream for the epochs left, rather than epoch 0's order again
                seed_everything(t.seed + done)
        checkpoint.best = max(phase_val, default=None)  # early stopping's best, per phase
        if _stopped(done, phase, phase_val, t.patience):  # killed after its last epoch
            if best_weights is not None:
                trainer.set_weights(best_weights)  # as EarlyStopping would have at the end
        else:
            stopping = [ResumedEarlyStopping(t.patience, phase_val, best_weights)] if t.patience > 0 else []
            history = _fit(trainer, t, fit_args, validation, epochs_run + done, epochs_run + phase.epochs,
                           every_phase + stopping)
            phase_val = phase_val + (history.history.get("val_accuracy") or [])
            done += len(history.history["loss"])
            epochs_here += len(history.history["loss"])
        for layer in model.layers:  # the saved model has every layer trainable again
            layer.trainable = True
        kept = epochs_run + (int(np.argmax(phase_val)) if t.patience > 0 and phase_val else done - 1)
        epochs_run += done
        val_acc += phase_val
    train_seconds = time.perf_counter() - start

    return model, (x_val, y_val), {
        "val_accuracy": float(val_acc[kept]) if val_acc else None,
        "epochs_run": epochs_run,
        "kept_epoch": kept + 1,
        "resumed_from_epoch": resumed_from,  # None: never interrupted; else the checkpoint's epochs
        "train_seconds": round(train_seconds, 2),  # this process's, when resumed
        "train_images": len(x_fit),
        "train_images_per_s": round(images_per_epoch * epochs_here / train_seconds) if epochs_here else None,
    }


def _copy_model(model: keras.Model) -> keras.Model:
    """The same network and weights, its variables created anew in the current distribution
    scope: a strategy's (on every replica), or none (one device)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _restore(
    trainer: keras.Model, run: RunDir, steps_per_epoch: int, keep_best: bool
) -> tuple[int, list[float], list[np.ndarray] | None]:
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
            atomic_write(run.best_weights, lambda out: np.savez(out, *best_weights))
        else:
            try:
                with np.load(run.best_weights) as saved:
                    best_weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
            except (OSError, ValueError) as e:
                raise RunError(f"cannot resume: {run.best_weights} cannot be read ({e}).") from None
    return done, val, best_weights


def _stopped(done: int, phase: Phase, val_accuracy: list[float], patience: int) -> bool:
    """Whether a phase had ended after `done` epochs: all of them, or early stopping was due."""
    if done >= phase.epochs:
        return True
    # EarlyStopping stops once `patience` epochs in a row have not beaten the best.
    return patience > 0 and bool(val_accuracy) and len(val_accuracy) - 1 - int(np.argmax(val_accuracy)) >= patience


def _compile_phase(model: keras.Model, phase: Phase, t: TrainConfig, steps_per_epoch: int) -> keras.Model:
    """Set which layers learn in one phase and compile what fit() trains: the model, or with
    augmentation a wrapper around it (the saved model is the bare network)."""
    head = {id(layer) for layer in head_layers(model)} if phase.head_only or phase.head_multiplier != 1 else set()
    for layer in model.layers:
        layer.trainable = not phase.head_only or id(layer) in head
    schedule = learning_rate(dataclasses.replace(t, epochs=phase.epochs, learning_rate=phase.learning_rate),
                             steps_per_epoch)
    if phase.head_multiplier != 1:
        paths = [v.path for layer in model.layers if id(layer) in head for v in layer.trainable_variables]
        optimizer = LayerwiseAdam(paths, phase.head_multiplier, learning_rate=schedule)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=schedule)

    trainer = model
    if t.augment > 0:
        inputs = keras.Input(model.input_shape[1:], name="image")
        trainer = keras.Model(inputs, model(augmentation(t.augment)(inputs)), name=f"{model.name}_train")
    trainer.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing),
        metrics=["accuracy"],
        # Keras 3.15's multi-step loop fails on a distributed iterator ("You must feed a value for
        # placeholder tensor"; keras-team/keras#19246), so with devices > 1 it is one step per call.
        steps_per_execution=t.steps_per_execution if t.devices == 1 else 1,
    )
    return trainer


def _fit(
    trainer: keras.Model,
    t: TrainConfig,
    fit_args: dict[str, Any],
    validation: tuple[np.ndarray, np.ndarray] | None,
    initial_epoch: int,
    epochs: int,
    callbacks: list[keras.callbacks.Callback],
) -> keras.callbacks.History:
    """fit() epochs initial_epoch to epochs - 1 (counted over the whole run)."""
    # A progress bar redrawn with \r floods a log file; one line per epoch reads better there.
    fit_verbose = 2 if t.verbose == 1 and not sys.stdout.isatty() else t.verbose
    return trainer.fit(
        **fit_args,
        validation_data=validation,
        initial_epoch=initial_epoch,
        epochs=epochs,
        callbacks=callbacks,
        verbose=fit_verbose,
    )


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
    cfg: Config, data: MnistArrays, callbacks: list[keras.callbacks.Callback] | None = None, resume: bool = False
) -> RunResult:
    """Train cfg.train.ensemble members (seeds seed, seed+1, ...) and save their mean as one model.

    The saved model takes an image and returns the average of the members' probabilities, so it
    is loaded, evaluated, exported and served like any single model. Each member's own run
    folder is kept under members/. A resumed ensemble keeps the members that had finished and
    continues the one that was killed (see train).
    """
    t = cfg.train
    with claim_run(cfg, f"{cfg.model.name}-ensemble{t.ensemble}", resume) as (run, resuming):
        (run.path / "members").mkdir(exist_ok=resuming)
        members = []
        for k in range(t.ensemble):
            seed = t.seed + k
            member_run = RunDir(run.path / "members" / f"seed{seed}")
            member_cfg = dataclasses.replace(
                cfg, train=dataclasses.replace(t, ensemble=1, seed=seed, out=str(member_run.path)))
            done_before = resuming and member_run.finished and not config_difference(member_cfg, member_run)
            if t.verbose:
                print(f"ensemble member {k + 1}/{t.ensemble} (seed {seed})"
                      + (": finished before, kept" if done_before else ""), flush=True)
            if done_before:
                members.append(RunResult(member_run, member_run.load_model(), member_run.read_metrics()))
            else:
                members.append(train(member_cfg, data=data, callbacks=callbacks))

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
            "devices": t.devices,
        })

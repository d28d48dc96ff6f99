"""A training run from start to finish: claim the folder, fit every phase, calibrate, score, save.

    mnistlab train --model cnn --epochs 12   # or: from mnistlab.train import train; train(Config())

The one training path: Adam on categorical cross-entropy with accuracy, a validation split taken
from the end of the training set, early stopping that restores the best validation weights, a
checkpoint after every epoch (see resume), and a final score on the test set (never used to
pick the epoch); a loss that stops being a number ends the run there (TrainError). An ensemble is
several such runs, saved as one model of their mean.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from mnistlab import backends
from mnistlab.calibrate import calibrate
from mnistlab.config import MAX_SEED, Config, TrainConfig
from mnistlab.data import MnistArrays, load_mnist
from mnistlab.errors import MnistlabError
from mnistlab.evaluate import evaluate
from mnistlab.files import atomic_write_json
from mnistlab.models import build_model, check_model_size
from mnistlab.runs import (
    RunDir,
    claim_run,
    command_line,
    config_difference,
    library_versions,
    machine_info,
    save_model_atomic,
)
from mnistlab.train.batches import BatchLogger
from mnistlab.train.devices import copy_model, data_parallel, seed_everything
from mnistlab.train.inputs import FitInputs, fit_inputs, training_split
from mnistlab.train.recipe import Phase, compile_phase, phases, settle_callbacks
from mnistlab.train.resume import (
    EpochCheckpoint,
    Restored,
    ResumedEarlyStopping,
    phase_finished,
    restore_checkpoint,
)


class TrainError(MnistlabError):
    """A run that went wrong while training: its loss stopped being a number."""


@dataclass(frozen=True)
class RunResult:
    """What train() leaves behind: the folder, the trained model and its metrics."""

    run: RunDir
    model: keras.Model
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Fitted:
    """What fitting every phase of a run left: the model, and what metrics.json says of it."""

    model: keras.Model
    held_out: tuple[np.ndarray, np.ndarray]  # the validation split (uint8 images, labels)
    val_accuracy: list[float]  # every epoch's, all phases; empty without a validation split
    epochs_run: int  # the checkpoint's epochs included
    kept_epoch: int  # 1-based: the epoch whose weights the model holds
    resumed_from_epoch: int | None  # None: never interrupted; else the checkpoint's epochs
    train_seconds: float  # this process's, when resumed
    train_images: int
    images_per_epoch: int  # replay counted
    epochs_fitted: int  # by this process

    def details(self) -> dict[str, Any]:
        """The run's own entries of metrics.json, in the order they are written."""
        return {
            "val_accuracy": float(self.val_accuracy[self.kept_epoch - 1]) if self.val_accuracy else None,
            "epochs_run": self.epochs_run,
            "kept_epoch": self.kept_epoch,
            "resumed_from_epoch": self.resumed_from_epoch,
            "train_seconds": round(self.train_seconds, 2),
            "train_images": self.train_images,
            "train_images_per_s": (round(self.images_per_epoch * self.epochs_fitted / self.train_seconds)
                                   if self.epochs_fitted else None),
        }


@dataclass(frozen=True)
class _PhaseFit:
    epochs: int  # completed in the phase, before a kill included
    val_accuracy: list[float]  # of those epochs
    fitted: int  # epochs this process fitted


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
        The run folder (model.keras, config.toml, history.csv, batches.csv, checkpoint.keras,
        metrics.json), the trained model and its metrics.

    Raises:
        MnistlabError: data that cannot be had, a config that cannot be built, a run folder
            that holds anything but an unfinished run of this config, or one in use.
        TrainError: the loss became NaN or infinite (the step size too large); training stops
            there and the folder is left unfinished, holding the epochs before (no model.keras,
            no metrics.json).
    """
    t = cfg.train
    if model is None:
        check_model_size(cfg.model)  # a model too large to build is refused before any folder is made
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
            fitted = _fit_run(run, resuming, cfg, data, callbacks, model, replay)
        else:
            # The model (so its variables), the optimizer and fit() in the strategy's scope; then a
            # single-device copy is scored, saved and returned, as Keras 3.15's predict_on_batch
            # under a MirroredStrategy gives every replica's output for the whole batch.
            if t.verbose:
                print(f"data-parallel over {t.devices} devices: {', '.join(strategy.names)}", flush=True)
            with strategy.scope():
                given = copy_model(model) if model is not None else None  # loaded outside the scope
                fitted = _fit_run(run, resuming, cfg, data, callbacks, given, replay)
            fitted = dataclasses.replace(fitted, model=copy_model(fitted.model))
        return _finish(run, fitted.model, t, data, fitted.held_out, {**fitted.details(), "devices": t.devices})


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
        run.members.mkdir(exist_ok=resuming)
        members = []
        for k in range(t.ensemble):
            seed = t.seed + k
            member_run = run.member(seed)
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
        _, _, x_val, y_val = training_split(data, t)
        return _finish(run, model, t, data, (x_val, y_val), {
            "members": len(members),
            "member_test_accuracy": member_acc,
            "member_test_accuracy_mean": float(np.mean(member_acc)),
            "train_seconds": round(sum(m.metrics["train_seconds"] for m in members), 2),
            "devices": t.devices,
        })


def _fit_run(
    run: RunDir,
    resuming: bool,
    cfg: Config,
    data: MnistArrays | Any,
    callbacks: list[keras.callbacks.Callback] | None,
    model: keras.Model | None,
    replay: tuple[np.ndarray, np.ndarray] | None,
) -> Fitted:
    """train() in a claimed folder: build the model (or take the one given), then fit every
    phase, the epochs a killed run's checkpoint holds skipped."""
    t = cfg.train
    # Seed before building: the initial weights come from the same generator as the shuffling.
    seed_everything(t.seed)
    if model is None:
        model = build_model(cfg.model)
    inputs = fit_inputs(data, cfg, replay)
    if t.verbose:
        _announce(cfg, run, model, inputs)

    start = time.perf_counter()
    checkpoint = EpochCheckpoint(run, keep_best=t.patience > 0)
    every_phase = [keras.callbacks.TerminateOnNaN(), keras.callbacks.CSVLogger(str(run.history), append=True),
                   BatchLogger(run.batches), checkpoint, *(callbacks or [])]
    if t.verbose:
        # Listed before RunProgress so the epoch's bar is finished before the run-level line.
        every_phase += [keras.callbacks.ProgbarLogger(), RunProgress(t.epochs)]
    epochs_run, epochs_fitted, val_accuracy, kept, resumed_from = 0, 0, [], 0, None
    for phase in phases(cfg):  # a resumed run has one phase: claim_run refuses others
        trainer = compile_phase(model, phase, t, inputs.steps_per_epoch)
        restored = Restored(0, [], None)
        if resuming:
            restored = _resume_phase(trainer, run, t, inputs.steps_per_epoch)
            resumed_from = restored.epochs
        checkpoint.best = max(restored.val_accuracy, default=None)  # early stopping's best, per phase
        settle = settle_callbacks(trainer, phase, epochs_run, t.verbose > 0)
        done = _fit_phase(trainer, phase, t, inputs, epochs_run, restored, every_phase + settle)
        for layer in model.layers:  # the saved model has every layer trainable again
            layer.trainable = True
        kept = epochs_run + (int(np.argmax(done.val_accuracy)) if t.patience > 0 and done.val_accuracy
                             else done.epochs - 1)
        epochs_run += done.epochs
        epochs_fitted += done.fitted
        val_accuracy += done.val_accuracy

    return Fitted(
        model=model,
        held_out=inputs.held_out,
        val_accuracy=val_accuracy,
        epochs_run=epochs_run,
        kept_epoch=kept + 1,
        resumed_from_epoch=resumed_from,
        train_seconds=time.perf_counter() - start,
        train_images=inputs.train_images,
        images_per_epoch=inputs.images_per_epoch,
        epochs_fitted=epochs_fitted,
    )


def _announce(cfg: Config, run: RunDir, model: keras.Model, inputs: FitInputs) -> None:
    images, held_out = inputs.train_images, len(inputs.held_out[0])
    validating = f"validating on {held_out:,}" if held_out else "no validation split"
    mixed = f", {inputs.replay_share:.0%} of each batch from MNIST" if inputs.replay_share > 0 else ""
    start_from = f"fine-tuning {cfg.finetune.parent}" if cfg.finetune else f"training {cfg.model.name}"
    print(
        f"{start_from} ({model.count_params():,} parameters) on {images:,} images{mixed}, "
        f"{validating}; run folder {run.path}",
        flush=True,
    )


def _resume_phase(trainer: keras.Model, run: RunDir, t: TrainConfig, steps_per_epoch: int) -> Restored:
    """Load the killed run's checkpoint into `trainer`, and reseed for the epochs left."""
    restored = restore_checkpoint(trainer, run, steps_per_epoch, keep_best=t.patience > 0)
    done = restored.epochs
    if t.verbose:
        print(f"resuming after epoch {done}/{t.epochs} from {run.checkpoint}" if done else
              "resuming from the start: the run was killed in its first epoch", flush=True)
    if done:  # a fresh shuffling stream for the epochs left, rather than epoch 0's order again
        seed_everything((t.seed + done) % (MAX_SEED + 1))
    return restored


def _fit_phase(
    trainer: keras.Model,
    phase: Phase,
    t: TrainConfig,
    inputs: FitInputs,
    first_epoch: int,
    restored: Restored,
    callbacks: list[keras.callbacks.Callback],
) -> _PhaseFit:
    """fit() one phase's epochs after those `restored` holds, its epochs counted over the whole
    run from `first_epoch`; a phase that had ended before a kill only gets its best weights back."""
    done, val_accuracy = restored.epochs, restored.val_accuracy
    if phase_finished(done, phase.epochs, val_accuracy, t.patience):  # killed after its last epoch
        if restored.best_weights is not None:
            trainer.set_weights(restored.best_weights)  # as EarlyStopping would have at the end
        return _PhaseFit(done, val_accuracy, 0)
    stopping = [ResumedEarlyStopping(t.patience, val_accuracy, restored.best_weights)] if t.patience > 0 else []
    # A progress bar redrawn with \r floods a log file; one line per epoch reads better there. A
    # Jupyter kernel's stdout is no terminal, but a notebook redraws the bar in place; Keras's own
    # Progbar tells a kernel the same way (keras/src/utils/progbar.py, _dynamic_display).
    interactive = sys.stdout.isatty() or "ipykernel" in sys.modules
    fit_verbose = 2 if t.verbose == 1 and not interactive else t.verbose
    history = trainer.fit(
        **inputs.fit_args,
        validation_data=inputs.validation,
        initial_epoch=first_epoch + done,
        epochs=first_epoch + phase.epochs,
        callbacks=callbacks + stopping,
        verbose=fit_verbose,
    )
    losses = history.history["loss"]
    if losses and not math.isfinite(losses[-1]):  # TerminateOnNaN stopped fit() in this epoch
        raise TrainError(
            f"training diverged: the loss became {losses[-1]} in epoch {first_epoch + done + len(losses)}, so it "
            f"was stopped with no model saved; lower the learning rate (it was {phase.learning_rate:g}) and train "
            "again into a new folder."
        )
    fitted = len(losses)
    return _PhaseFit(done + fitted, val_accuracy + (history.history.get("val_accuracy") or []), fitted)


def _finish(
    run: RunDir,
    model: keras.Model,
    t: TrainConfig,
    data: MnistArrays | Any,
    held_out: tuple[np.ndarray, np.ndarray],
    details: dict[str, Any],
) -> RunResult:
    """Calibrate the final model on the validation split, score it on the test set, save it, and
    write metrics.json: the scores, the run's own details, the calibration, then what makes the
    figure reproducible (seed, data, versions, machine)."""
    x_test, y_test = data.x_test, data.y_test
    if t.test_limit:
        x_test, y_test = x_test[: t.test_limit], y_test[: t.test_limit]
    test = evaluate(model, x_test, y_test)
    if not math.isfinite(test["loss"]):
        raise TrainError(f"the trained model gives a test loss of {test['loss']}: its weights are not all numbers; "
                         "lower the learning rate and train again into a new folder.")
    calibration = calibrate(model, *held_out)
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
        "machine": {**machine_info(), "backend": backends.current(), "device": backends.device()},
        "command": command_line(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(run.metrics, metrics)
    return RunResult(run=run, model=model, metrics=metrics)

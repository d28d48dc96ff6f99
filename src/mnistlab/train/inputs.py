"""What fit() is fed: the run's slice of the training set split into fit and validation parts,
as model input, and for a fine-tune with replay, batches that mix in MNIST.

    mnistlab train --model cnn --train-limit 6000 --validation-split 0.1   # the tail is held out
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from mnistlab.config import Config, TrainConfig
from mnistlab.data import DigitSet, MnistArrays, load_digit_set, one_hot, preprocess_images
from mnistlab.data.variants import writing_variants


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


def training_split(data: MnistArrays | Any, t: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The run's slice of the training set (train_limit), split into fit and validation parts,
    each with the same share of every extra_train digit set added at its end; the fit part also
    gets its writing_variants, drawn from its own digits only, so none is a copy of a held-out one."""
    x_all, y_all = data.x_train, data.y_train
    if t.train_limit:
        x_all, y_all = x_all[: t.train_limit], y_all[: t.train_limit]
    parts = [split_train_val(x_all, y_all, t.validation_split)]
    if t.writing_variants:
        x_fit, y_fit, x_val, y_val = parts[0]
        x_new, y_new = writing_variants(x_fit, y_fit, t.writing_variants, t.seed)
        parts[0] = np.concatenate([x_fit, x_new]), np.concatenate([y_fit, y_new]), x_val, y_val
    for source in t.extra_train:
        extra = extra_digits(source, t.offline, t.verbose > 0)
        parts.append(split_train_val(extra.x_train, extra.y_train, t.validation_split))
    if len(parts) == 1:
        return parts[0]
    x_fit, y_fit, x_val, y_val = (np.concatenate(arrays) for arrays in zip(*parts))
    return x_fit, y_fit.astype(y_all.dtype), x_val, y_val.astype(y_all.dtype)


@functools.lru_cache(maxsize=4)
def extra_digits(source: str, offline: bool, progress: bool) -> DigitSet:
    """An extra_train digit set, MNIST-normalised (load_digit_set); read once per process, since
    a run asks for its split twice (to fit, then to calibrate) and an ensemble once per member."""
    return load_digit_set(source, offline=offline, progress=progress)


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
class FitInputs:
    """A run's data as fit() takes it, and the held-out split calibration is fitted on."""

    fit_args: dict[str, Any]  # fit()'s x (with y and batch_size for arrays)
    validation: tuple[np.ndarray, np.ndarray] | None  # model input and one-hot targets; None: no split
    held_out: tuple[np.ndarray, np.ndarray]  # the validation split as uint8 images and labels
    train_images: int  # the images fitted on, replay not counted
    images_per_epoch: int  # replay counted
    replay_share: float  # of every batch, drawn from the replay set
    batch_size: int

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.images_per_epoch // self.batch_size)


def fit_inputs(data: MnistArrays | Any, cfg: Config, replay: tuple[np.ndarray, np.ndarray] | None) -> FitInputs:
    """Split `data` as cfg.train says and turn it into model input; with a replay set and a
    fine-tune's replay share, every batch mixes that share of it in (ReplayBatches)."""
    t = cfg.train
    x_fit, y_fit, x_val, y_val = training_split(data, t)
    share = cfg.finetune.replay if cfg.finetune and replay is not None else 0.0
    if share > 0:
        batches = ReplayBatches(preprocess_images(x_fit), one_hot(y_fit), preprocess_images(replay[0]),
                                one_hot(replay[1]), t.batch_size, share, t.seed)
        fit_args: dict[str, Any] = {"x": batches}
        images_per_epoch = len(batches) * t.batch_size
    else:
        fit_args = {"x": preprocess_images(x_fit), "y": one_hot(y_fit), "batch_size": t.batch_size}
        images_per_epoch = len(x_fit)
    return FitInputs(
        fit_args=fit_args,
        validation=(preprocess_images(x_val), one_hot(y_val)) if len(x_val) else None,
        held_out=(x_val, y_val),
        train_images=len(x_fit),
        images_per_epoch=images_per_epoch,
        replay_share=share,
        batch_size=t.batch_size,
    )

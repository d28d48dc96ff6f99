"""Configuration: what the model is (ModelConfig), how a run goes (TrainConfig), one Config for both.

    mnistlab train --config my.toml --epochs 3   # defaults < preset < file < flags

Defaults live here, then a preset (models.PRESETS) replaces the model defaults, then a TOML or
YAML file, then command-line flags. The resolved Config is frozen and written into every run
folder as `config.toml`, so `mnistlab train --config runs/x/config.toml` repeats a run.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import tomli_w
import yaml

from mnistlab.errors import MnistlabError
from mnistlab.files import atomic_write_text

ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu", "elu", "selu", "swish", "linear")
POOLINGS = ("max", "avg", "none")
PADDINGS = ("same", "valid")
SCHEDULES = ("constant", "onecycle")
AUGMENT_STYLES = ("digit", "handwriting")
# Fine-tuning: which weights move. head = the dense layers after the flatten (the feature
# extractor frozen), all = every layer, head-then-all = head alone for head_epochs, then all.
STRATEGIES = ("head", "all", "head-then-all")
DEFAULT_PRESET = "fast"  # what `mnistlab train` trains with no --model; see models.PRESETS
# Seeds are 32-bit: keras.utils.set_random_seed hands them to NumPy's legacy np.random.seed, which
# takes 0 to 2**32 - 1 and raises for anything else. An ensemble's members take seed, seed + 1, ...
MAX_SEED = 2**32 - 1
# A run's epochs: every preset stops within 22 and a fine-tune's control within 100, so 10,000 is
# far past any useful run; beyond it is a typo (1e12) that would otherwise train until killed.
MAX_EPOCHS = 10_000
# Keras counts the steps of one call into the graph in a 32-bit integer: 2**31 steps overflow it
# and fit() ends with no loss at all (KeyError: 'loss'). More steps than an epoch holds change
# nothing (Keras stops at the epoch's end), and an epoch of MNIST plus USPS at batch 1 is 67,291.
MAX_STEPS_PER_EXECUTION = 100_000

# The run settings a fine-tune starts from (TrainConfig's defaults are for training MNIST from
# scratch). Chosen with the default `fast` model on a dev split of USPS's training set (its last
# 2,000 images), never its test set. With 50 % replay and a constant step with early stopping:
# 3e-4 reached 99.30 % there, 1e-4 99.15 %, 1e-3 for every layer 99.20 %, the head alone first
# (head-then-all) 99.30 %. With 75 % replay at 3e-4: constant 99.70 % (MNIST 99.14 %), one-cycle
# for 20 epochs 99.60 % (MNIST 99.35 %); on ten shots a class, one-cycle gained 0.17 points
# (98.92 %, mean of 3 draws) where early stopping on 20 validation images lost 0.15 (98.60 %):
# so one-cycle, a fixed length, and a validation split only to watch (and calibrate on).
FINETUNE_TRAIN = {
    "epochs": 20,
    "batch_size": 64,
    "learning_rate": 3e-4,  # the pretrained layers move slowly; the head has its own, higher rate
    "schedule": "onecycle",
    "augment": 0.5,  # half of training's digit-safe range: few target images, easy to overfit
    "validation_split": 0.1,  # of the target training images, per class (see finetune.stratified_order)
    "patience": 0,
}


class ConfigError(MnistlabError):
    """A config file or flag that cannot be used as given."""


@dataclass(frozen=True)
class ModelConfig:
    """The architecture: everything needed to rebuild the network, nothing about training."""

    name: str = "cnn"  # preset this config started from; only a label
    arch: str = "cnn"  # builder in models.REGISTRY: linear | mlp | cnn
    conv_filters: tuple[int, ...] = (32, 64)  # one entry per conv block: its filter count
    convs_per_block: int = 1  # conv layers in each block before the pooling (>= 1)
    kernel_size: int = 3  # square kernel side, pixels
    stem_kernel_size: int = 0  # kernel side of the very first conv (a wider stem); 0 = kernel_size
    strides: int = 1  # stride of each block's first conv; 2 halves the resolution (pooling="none")
    padding: str = "same"  # same | valid
    activation: str = "relu"  # conv activation, one of ACTIVATIONS
    pooling: str = "max"  # max | avg | none, 2x2 stride 2 after each block
    dense_units: tuple[int, ...] = (128,)  # hidden dense layers before the 10-way softmax
    dense_activation: str = "relu"  # hidden dense activation, one of ACTIVATIONS
    dropout: float = 0.0  # rate in [0, 1) before every dense layer, output included
    batch_norm: bool = False  # BatchNormalization after every conv and hidden dense
    l2: float = 0.0  # L2 penalty on every kernel (>= 0), added to the loss

    def __post_init__(self) -> None:
        _check(self.convs_per_block >= 1, "convs_per_block must be at least 1")
        _check(self.kernel_size >= 1, "kernel_size must be at least 1")
        _check(self.stem_kernel_size >= 0, "stem_kernel_size must be >= 0")
        _check(self.strides in (1, 2), "strides must be 1 or 2")
        _check(all(f >= 1 for f in self.conv_filters), "conv_filters must all be >= 1")
        _check(all(u >= 1 for u in self.dense_units), "dense_units must all be >= 1")
        _check(self.activation in ACTIVATIONS, f"activation must be one of {', '.join(ACTIVATIONS)}")
        _check(
            self.dense_activation in ACTIVATIONS,
            f"dense_activation must be one of {', '.join(ACTIVATIONS)}",
        )
        _check(self.pooling in POOLINGS, f"pooling must be one of {', '.join(POOLINGS)}")
        _check(self.padding in PADDINGS, f"padding must be one of {', '.join(PADDINGS)}")
        _check(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")
        _check(self.l2 >= 0.0, "l2 must be >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """One run: optimisation, data slice, stopping, where the run folder goes."""

    epochs: int = 12  # upper bound; early stopping usually ends sooner
    batch_size: int = 128  # images per step
    steps_per_execution: int = 16  # steps per call into the compiled graph; more = less Python
    # overhead per step (the progress bar then moves every N steps); 1 = Keras's default
    devices: int = 1  # data-parallel replicas, 1 to 64; > 1 = tf.distribute.MirroredStrategy over N
    # devices (the first N GPUs, else N virtual CPUs); each step's batch_size is split across them
    learning_rate: float = 1e-3  # Adam step size; the peak of the onecycle schedule
    schedule: str = "constant"  # constant | onecycle (linear warm-up, then cosine decay to 0)
    warmup: float = 0.2  # onecycle: fraction of all steps spent warming up, in [0, 1)
    label_smoothing: float = 0.0  # in [0, 1): weight moved from the true class to all classes
    augment: float = 0.0  # training-time augmentation strength, 0 = off; 1 = up to +-10 deg
    # rotation, +-10 % shift and +-10 % zoom (never flips: a flipped digit is another digit)
    augment_style: str = "digit"  # digit (rotation, shift, zoom) | handwriting (also slant, stroke
    # width, blur, faint ink: what varies between writers and pens)
    settle_epochs: int = 0  # the run's last N epochs augment at half strength, the step size restarting
    # at a tenth of its peak and decaying to 0: the model ends on images nearer those it is scored on
    extra_train: tuple[str, ...] = ()  # digit sets added to MNIST's training images (and, by
    # validation_split, its validation images), e.g. ("usps",): more writers; see load_digit_set
    writing_variants: tuple[str, ...] = ()  # ways of writing a digit MNIST lacks, drawn onto copies
    # of its training digits: flagged-ones (the continental 1), hooked-ends (a pen's curl at the
    # end of a 2 or 6); see mnistlab.data.variants
    validation_split: float = 0.1  # fraction of the training set held out from its end; 0 = none
    patience: int = 3  # epochs without val_accuracy gain before stopping (0 = never stop early)
    ensemble: int = 1  # models trained with seeds seed, seed+1, ...; their mean is the model
    seed: int = 0  # seeds Python, NumPy and the backend; same seed + CPU = same run
    train_limit: int = 0  # use only the first N training images (0 = all); for quick tries
    test_limit: int = 0  # evaluate on the first N test images (0 = all 10,000)
    out: str = ""  # run folder; "" = runs/<model name>-<timestamp>
    data_path: str = ""  # MNIST files to use (IDX folder or mnist.npz); "" = cache/download
    offline: bool = False  # never touch the network for data
    verbose: int = 1  # 0 silent, 1 progress bar, 2 one line per epoch

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "epochs must be at least 1")
        _check(self.epochs <= MAX_EPOCHS, f"epochs must be at most {MAX_EPOCHS:,}, far past any useful run")
        _check(self.batch_size >= 1, "batch_size must be at least 1")
        _check(self.steps_per_execution >= 1, "steps_per_execution must be at least 1")
        _check(self.steps_per_execution <= MAX_STEPS_PER_EXECUTION,
               f"steps_per_execution must be at most {MAX_STEPS_PER_EXECUTION:,} (more than any epoch's steps; "
               "Keras's step counter is 32-bit)")
        _check(1 <= self.devices <= 64, "devices must be from 1 to 64")
        _check(0 < self.learning_rate < math.inf, "learning_rate must be > 0 and finite")
        _check(0.0 <= self.validation_split < 1.0, "validation_split must be in [0, 1)")
        _check(self.patience >= 0, "patience must be >= 0")
        _check(
            self.validation_split > 0 or self.patience == 0,
            "early stopping (patience > 0) needs a validation split",
        )
        _check(1 <= self.ensemble <= 64, "ensemble must be from 1 to 64")
        _check(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}")
        _check(0.0 <= self.warmup < 1.0, "warmup must be in [0, 1)")
        _check(0.0 <= self.label_smoothing < 1.0, "label_smoothing must be in [0, 1)")
        _check(0.0 <= self.augment <= 3.0, "augment must be in [0, 3]")
        _check(self.augment_style in AUGMENT_STYLES, f"augment_style must be one of {', '.join(AUGMENT_STYLES)}")
        _check(0 <= self.settle_epochs < self.epochs, "settle_epochs must be from 0 to epochs - 1")
        _check(self.settle_epochs == 0 or self.augment > 0, "settle_epochs needs augmentation (augment > 0)")
        _check(self.train_limit >= 0 and self.test_limit >= 0, "limits must be >= 0")
        check_seed(self.seed)
        _check(self.seed + self.ensemble - 1 <= MAX_SEED,
               f"seed must be at most 2**32 - {self.ensemble} for an ensemble of {self.ensemble} "
               "(its members take seed, seed + 1, ...)")
        _check(self.verbose in (0, 1, 2), "verbose must be 0, 1 or 2")


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning: a trained run to start from, the target data, and how to adapt to it."""

    parent: str = ""  # run folder whose model.keras is the starting point
    data: str = ""  # target data: usps | uci-digits | corrections (the parent's) | folder | .npz
    strategy: str = "all"  # one of STRATEGIES
    head_learning_rate: float = 1e-3  # Adam step size for the head; the rest use learning_rate
    head_epochs: int = 2  # head-then-all: epochs of the head alone before all layers train
    shots: int = 0  # labelled target images per class to train on (seeded); 0 = all of them
    # Share in [0, 0.9] of every batch drawn afresh from MNIST's training set, so the model keeps
    # what it knew. On a dev split of USPS train: 0 lost 0.72 MNIST points, 0.5 lost 0.15, 0.75
    # lost 0.06 and was also the most accurate on USPS (99.70 % against 99.30 %).
    replay: float = 0.75
    test_fraction: float = 0.2  # held out per class when the source has no test split of its own
    control: bool = True  # also train the architecture from scratch on the same target data
    control_epochs: int = 100  # the control's upper bound; it stops when validation stalls

    def __post_init__(self) -> None:
        _check(self.strategy in STRATEGIES, f"strategy must be one of {', '.join(STRATEGIES)}")
        _check(0 < self.head_learning_rate < math.inf, "head_learning_rate must be > 0 and finite")
        _check(self.head_epochs >= 1, "head_epochs must be at least 1")
        _check(self.shots >= 0, "shots must be >= 0")
        _check(0.0 <= self.replay <= 0.9, "replay must be in [0, 0.9]")
        _check(0.0 < self.test_fraction < 1.0, "test_fraction must be in (0, 1)")
        _check(1 <= self.control_epochs <= MAX_EPOCHS, f"control_epochs must be from 1 to {MAX_EPOCHS:,}")


@dataclass(frozen=True)
class Config:
    """Everything a run needs: the architecture, the run settings and, for a fine-tune, its own."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig | None = None  # None: trained from scratch

    def __post_init__(self) -> None:
        if self.finetune and self.finetune.strategy == "head-then-all":
            _check(self.finetune.head_epochs < self.train.epochs,
                   "head_epochs must be fewer than epochs (the rest train all layers)")
            _check(self.train.settle_epochs < self.train.epochs - self.finetune.head_epochs,
                   "settle_epochs must be fewer than the epochs that train all layers (epochs - head_epochs)")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), ready for TOML, YAML or JSON."""
        tables = {
            "model": _plain(dataclasses.asdict(self.model)),
            "train": _plain(dataclasses.asdict(self.train)),
        }
        if self.finetune is not None:
            tables["finetune"] = dataclasses.asdict(self.finetune)
        return tables


_TABLES = ("model", "train", "finetune")  # the tables of a config file, as Config's fields


def check_seed(seed: int, name: str = "seed") -> None:
    """Refuse a seed NumPy cannot take (MAX_SEED); `name` is what the message calls it."""
    _check(0 <= seed <= MAX_SEED, f"{name} must be from 0 to 2**32 - 1 ({MAX_SEED:,}), not {seed}")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message + ".")


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def coerce(cls: type, key: str, value: Any) -> Any:
    """Convert a value from a file or a flag to the type of field `key` of dataclass `cls`.

    Raises:
        ConfigError: unknown key or a value of the wrong kind.
    """
    hints = get_type_hints(cls)
    if key not in hints:
        known = ", ".join(f.name for f in dataclasses.fields(cls))
        raise ConfigError(f"unknown {cls.__name__} field {_shown(key)}; known fields: {known}.")
    hint = hints[key]
    try:
        if get_origin(hint) is tuple:
            (item_type,) = {t for t in get_args(hint) if t is not Ellipsis}
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split()]
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return tuple(_scalar(item_type, v) for v in value)
        return _scalar(hint, value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: float() of a 400-digit int
        raise ConfigError(
            f"{cls.__name__}.{key} expects {getattr(hint, '__name__', hint)}, got {_shown(value)}."
        ) from None


def _shown(value: Any, width: int = 60) -> str:
    """repr(value) cut to `width` characters, for a message that stays one readable line."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _scalar(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    if kind is str:
        if not isinstance(value, (str, int, float)):
            raise TypeError
        return str(value)
    raise TypeError


def read_toml_or_yaml(path: Path, what: str, error: type[MnistlabError]) -> Any:
    """Parse a .toml, .yaml or .yml file; `what` names it in the one-line `error` raised for a
    missing or unreadable file, another suffix, or bad syntax."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as e:  # ValueError: not UTF-8, or a NUL in the path
        raise error(f"cannot read {what} {path}: {e}.") from None
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix in (".yaml", ".yml"):
            return yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError, RecursionError) as e:
        # Both parsers recurse into nested arrays: [[[[... of a few thousand levels ends the stack.
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e).splitlines()[0]
        raise error(f"{what} {path} is not valid {path.suffix[1:].upper()}: {reason}.") from None
    raise error(f"{what} {path} must end in .toml, .yaml or .yml.")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (.toml) or YAML (.yaml/.yml) file into {"model": {...}, "train": {...}, ...}.

    Raises:
        ConfigError: missing file, bad syntax, or a top-level key other than model/train/finetune.
    """
    path = Path(path)
    data = read_toml_or_yaml(path, "config file", ConfigError)
    _check_tables(data, f"config file {path}")
    return data


def _check_tables(data: Any, where: str) -> None:
    """Refuse anything but a dict of model/train/finetune tables, each a dict."""
    if not isinstance(data, dict) or set(data) - set(_TABLES):
        raise ConfigError(f"{where} must hold only [model], [train] and [finetune] tables.")
    for section in data.values():
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: [model], [train] and [finetune] must be tables.")


def resolve_config(
    preset: ModelConfig,
    file_data: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
    preset_train: dict[str, Any] | None = None,
    finetune_overrides: dict[str, Any] | None = None,
) -> Config:
    """Layer a preset (its architecture and the run settings it chose), a config file's tables
    and flag overrides into one frozen Config; a [finetune] table or finetune overrides make it
    a fine-tune's.

    Raises:
        ConfigError: tables that are not model/train/finetune dicts, an unknown field, or a
            value of the wrong kind or out of range.
    """
    file_data = file_data or {}
    _check_tables(file_data, "config data")
    model_fields = {**file_data.get("model", {}), **(model_overrides or {})}
    train_fields = {**(preset_train or {}), **file_data.get("train", {}), **(train_overrides or {})}
    model = dataclasses.replace(
        preset, **{k: coerce(ModelConfig, k, v) for k, v in model_fields.items()}
    )
    train = TrainConfig(**{k: coerce(TrainConfig, k, v) for k, v in train_fields.items()})
    finetune = None
    if "finetune" in file_data or finetune_overrides is not None:
        finetune_fields = {**file_data.get("finetune", {}), **(finetune_overrides or {})}
        finetune = FinetuneConfig(**{k: coerce(FinetuneConfig, k, v) for k, v in finetune_fields.items()})
    return Config(model=model, train=train, finetune=finetune)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config written by `write_config` (every field present or defaulted)."""
    return resolve_config(ModelConfig(), data)


def write_config(cfg: Config, path: Path) -> None:
    """Write the resolved config as TOML (a file `read_config_file` reads back unchanged)."""
    atomic_write_text(path, tomli_w.dumps(cfg.to_dict()))

"""The search space of `mnistlab tune`: which settings a trial draws, and from what.

    python -c "from mnistlab.tune import DEFAULT_SPACE, parse_space; print(parse_space(DEFAULT_SPACE))"

A space maps a setting (any ModelConfig or TrainConfig field a trial may change, plus the counts
conv_blocks and dense_layers) to a range {low, high, log, step}, a list {choices}, or one fixed
value. read_space reads one from the `[space]` table of a TOML or YAML file; trial_config turns a
trial's draws into the Config it trains.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

import optuna

from mnistlab.config import (
    Config,
    ConfigError,
    ModelConfig,
    TrainConfig,
    coerce,
    read_toml_or_yaml,
)
from mnistlab.errors import MnistlabError

# The seed's own choices. A table {low, high} is a range (whole numbers when both ends are, on a
# log scale with log = true, in steps of `step`), {choices = [...]} a list to pick from, and a
# plain value is fixed for every trial. conv_blocks and dense_layers are counts; conv_filters and
# dense_units are then drawn once for each block or layer.
DEFAULT_SPACE: dict[str, Any] = {
    "conv_blocks": {"low": 1, "high": 3},  # 3 pooled blocks take 28x28 down to 3x3
    "conv_filters": {"choices": [16, 32, 64]},  # each block's filters
    "kernel_size": {"choices": [3, 5]},  # pixels
    "activation": {"choices": ["relu", "sigmoid", "tanh", "gelu"]},  # after every conv
    "pooling": {"choices": ["max", "avg"]},  # 2x2 after each block
    "dense_layers": {"low": 0, "high": 2},  # hidden dense layers before the softmax
    "dense_units": {"choices": [64, 128, 256]},  # each hidden layer's width
    "dropout": {"low": 0.0, "high": 0.5},  # rate before every dense layer
    "l2": {"choices": [0.0, 1e-5, 1e-4, 1e-3]},  # penalty on every kernel; 0 = none
    "batch_norm": {"choices": [False, True]},
    "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},  # Adam's step (onecycle: its peak)
    "schedule": {"choices": ["constant", "onecycle"]},
    "batch_size": {"choices": [64, 128, 256]},  # 32 doubles the steps of 64 for little gain here
    "augment": {"low": 0.0, "high": 1.0},  # 1 = up to +-10 deg, +-10 % shift and zoom
}

# Counts that exist only in a search space, and the tuple field each one sizes.
COUNTS = {"conv_blocks": "conv_filters", "dense_layers": "dense_units"}
# Settings a trial may not change: labels and paths, the data and the split the trials are
# scored on (a space that moved them would change the exam, not the student), and the seed
# (searching it rewards luck).
NOT_SEARCHED = frozenset({
    "name", "out", "data_path", "offline", "verbose", "validation_split", "train_limit",
    "test_limit", "ensemble", "seed",
})
_MODEL_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelConfig))
_TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))
SEARCHABLE = tuple(sorted((_MODEL_FIELDS | _TRAIN_FIELDS | set(COUNTS)) - NOT_SEARCHED))


class TuneError(MnistlabError):
    """A study that cannot run as asked: bad space, storage or settings."""


class SpaceError(TuneError):
    """A search space that cannot be used."""


@dataclass(frozen=True)
class Param:
    """One setting's range: `choices`, `low`..`high` (log scale, steps), or one fixed `value`."""

    name: str
    choices: tuple[Any, ...] | None = None
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    value: Any = None  # fixed: the same in every trial

    @property
    def fixed(self) -> bool:
        return self.choices is None and self.low is None

    def draw(self, trial: optuna.Trial, label: str) -> Any:
        """The trial's value, recorded in the study under `label`."""
        if self.fixed:
            return self.value
        if self.choices is not None:
            return trial.suggest_categorical(label, self.choices)
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(label, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(label, self.low, self.high, step=self.step, log=self.log)


def _field_check(name: str, value: Any, per_item: bool) -> Any:
    """`value` converted to field `name`'s type and checked the way its Config checks it."""
    if name in COUNTS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be a whole number >= 0.")
        return value
    cls = ModelConfig if name in _MODEL_FIELDS else TrainConfig
    if per_item:
        (value,) = coerce(cls, name, [value])
        cls(**{name: (value,)})
    else:
        value = coerce(cls, name, value)
        cls(**{name: value})
    return value


def _parse_param(name: str, spec: Any, where: str) -> Param:
    if name not in SEARCHABLE:
        reason = "cannot be searched" if name in NOT_SEARCHED else "is no setting"
        raise SpaceError(f"{where}: {name!r} {reason}; searchable: {', '.join(SEARCHABLE)}.")
    per_item = name in COUNTS.values() and isinstance(spec, Mapping)
    kind = int if name in COUNTS or per_item else get_type_hints(
        ModelConfig if name in _MODEL_FIELDS else TrainConfig)[name]
    try:
        if not isinstance(spec, Mapping):
            return Param(name, value=_field_check(name, spec, False))
        unknown = set(spec) - {"choices", "low", "high", "log", "step"}
        if unknown:
            raise ConfigError(f"unknown key {sorted(unknown)[0]!r} (a range is {{low, high, log, step}}, "
                              "a list {choices})")
        if "choices" in spec:
            choices = spec["choices"]
            if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
                raise ConfigError("choices must be a non-empty list, alone")
            values = tuple(_field_check(name, c, per_item) for c in choices)
            if len(set(values)) != len(values):
                raise ConfigError("choices repeat a value")
            return Param(name, choices=values)
        if not {"low", "high"} <= set(spec):
            raise ConfigError("give {low, high} or {choices}")
        if kind not in (int, float):
            raise ConfigError("a range needs a number setting; use choices")
        low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
        ends = (low, high) if step is None else (low, high, step)
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in ends):
            raise ConfigError("low, high and step must be numbers")
        if kind is int and not all(isinstance(v, int) for v in ends):
            raise ConfigError("low, high and step must be whole numbers")
        low, high = (_field_check(name, v, per_item) for v in (low, high))
        if kind is float:
            low, high, step = float(low), float(high), None if step is None else float(step)
        if not isinstance(log, bool):
            raise ConfigError("log must be true or false")
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise ConfigError("low must be <= high, both finite")
        if log and (low <= 0 or step is not None):
            raise ConfigError("a log range needs low > 0 and no step")
        if step is not None and step <= 0:
            raise ConfigError("step must be > 0")
        return Param(name, low=low, high=high, log=log, step=step)
    except ConfigError as e:
        message = str(e).rstrip(".")
        if name not in message:  # the Config's own messages name the field already
            message = f"{name}: {message}"
        raise SpaceError(f"{where}: {message}.") from None


def parse_space(space: Mapping[str, Any], where: str = "search space") -> dict[str, Param]:
    """Check a raw space (as DEFAULT_SPACE) and turn each entry into a Param.

    Raises:
        SpaceError: an unknown or unsearchable setting, a malformed range, or a value its
            Config refuses.
    """
    if not isinstance(space, Mapping) or not space:
        raise SpaceError(f"{where} must be a non-empty table of settings.")
    params = {name: _parse_param(str(name), spec, where) for name, spec in space.items()}
    for count, field in COUNTS.items():
        if count in params and (field not in params or params[field].fixed):
            raise SpaceError(f"{where}: {count} needs {field} as a range or choices, drawn for each one.")
    return params


def read_space(path: str | Path) -> dict[str, Any]:
    """Read a search space from the `[space]` table of a TOML (.toml) or YAML (.yaml/.yml) file.

    Returns:
        The raw space, checked (the shape of DEFAULT_SPACE).

    Raises:
        SpaceError: a missing or unreadable file, bad syntax, other tables, or a bad entry.
    """
    path = Path(path)
    data = read_toml_or_yaml(path, "space file", SpaceError)
    if not isinstance(data, dict) or set(data) != {"space"}:
        raise SpaceError(f"space file {path} must hold one [space] table and nothing else.")
    parse_space(data["space"], f"space file {path}")
    return dict(data["space"])


def trial_config(trial: optuna.Trial | optuna.trial.FixedTrial, params: Mapping[str, Param], base: Config,
                 name: str) -> Config:
    """The Config a trial trains: `base` with every setting of the space drawn for this trial.

    Raises:
        ConfigError: a combination the Config refuses (the trial then fails, the study goes on).
    """
    values: dict[str, Any] = {}
    for key, param in params.items():
        if key not in COUNTS and not (key in COUNTS.values() and not param.fixed):
            values[key] = param.draw(trial, key)
    for count, field in COUNTS.items():
        param = params.get(field)
        if param is not None and not param.fixed:
            n = params[count].draw(trial, count) if count in params else len(getattr(base.model, field))
            values[field] = tuple(param.draw(trial, f"{field}_{i}") for i in range(n))
    model = {k: v for k, v in values.items() if k in _MODEL_FIELDS}
    run = {k: v for k, v in values.items() if k in _TRAIN_FIELDS}
    return Config(model=dataclasses.replace(base.model, name=name, **model),
                  train=dataclasses.replace(base.train, **run))

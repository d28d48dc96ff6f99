"""Config: layering (defaults < preset < file < flags), validation, and the TOML round-trip."""

import dataclasses

import pytest

from mnistlab.config import (
    MAX_EPOCHS,
    MAX_SEED,
    MAX_STEPS_PER_EXECUTION,
    Config,
    ConfigError,
    FinetuneConfig,
    ModelConfig,
    TrainConfig,
    coerce,
    config_from_dict,
    read_config_file,
    resolve_config,
    write_config,
)


def test_defaults_are_valid_and_frozen():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dropout": 1.0},
        {"dropout": -0.1},
        {"activation": "softplusplus"},
        {"pooling": "median"},
        {"kernel_size": 0},
        {"conv_filters": (32, 0)},
        {"l2": -1e-4},
        {"convs_per_block": 0},
    ],
)
def test_model_config_rejects_bad_values(kwargs):
    with pytest.raises(ConfigError):
        ModelConfig(**kwargs)


def test_model_config_rejects_stride_three():
    with pytest.raises(ConfigError, match="strides"):
        ModelConfig(strides=3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epochs": 0},
        {"batch_size": 0},
        {"steps_per_execution": 0},
        {"learning_rate": 0},
        {"validation_split": 1.0},
        {"validation_split": 0.0, "patience": 3},  # early stopping needs something to watch
        {"schedule": "sawtooth"},
        {"warmup": 1.0},
        {"label_smoothing": 1.0},
        {"augment": -1},
        {"augment": 1.0, "epochs": 3, "settle_epochs": 3},  # no epoch left before settling
        {"augment": 0.0, "epochs": 3, "settle_epochs": 1},  # nothing to settle
        {"ensemble": 0},
        {"epochs": MAX_EPOCHS + 1},
        {"steps_per_execution": MAX_STEPS_PER_EXECUTION + 1},
        {"steps_per_execution": 2**31},  # overflowed Keras's step counter: KeyError 'loss' after fit
        {"seed": -1},  # NumPy's legacy seeding raised mid-run, leaving a half-made run folder
        {"seed": 2**32},
        {"seed": MAX_SEED, "ensemble": 2},  # the second member's seed would be 2**32
    ],
)
def test_train_config_rejects_bad_values(kwargs):
    with pytest.raises(ConfigError):
        TrainConfig(**kwargs)


def test_seed_and_run_length_bounds_are_inclusive():
    TrainConfig(seed=MAX_SEED)
    TrainConfig(seed=MAX_SEED - 1, ensemble=2)
    TrainConfig(epochs=MAX_EPOCHS, steps_per_execution=MAX_STEPS_PER_EXECUTION)
    FinetuneConfig(control_epochs=MAX_EPOCHS)
    with pytest.raises(ConfigError, match="control_epochs"):
        FinetuneConfig(control_epochs=MAX_EPOCHS + 1)


@pytest.mark.parametrize("line,fragment", [("steps_per_execution = 1e12", "steps_per_execution must be at most"),
                                           ("epochs = 1e12", "epochs must be at most"),
                                           ("seed = -1", "seed must be from 0 to 2**32 - 1")])
def test_a_file_with_huge_or_negative_run_settings_is_refused(tmp_path, line, fragment):
    file = tmp_path / "c.toml"
    file.write_text(f"[train]\n{line}\n")
    with pytest.raises(ConfigError) as raised:
        resolve_config(ModelConfig(), read_config_file(file))
    assert fragment in str(raised.value)


def test_coerce_converts_flag_strings():
    assert coerce(ModelConfig, "conv_filters", "16,32 64") == (16, 32, 64)
    assert coerce(ModelConfig, "dense_units", []) == ()
    assert coerce(ModelConfig, "batch_norm", "yes") is True
    assert coerce(TrainConfig, "learning_rate", "3e-4") == pytest.approx(3e-4)
    assert coerce(TrainConfig, "epochs", 5.0) == 5


@pytest.mark.parametrize(
    "cls,key,value",
    [
        (TrainConfig, "epochs", "many"),
        (TrainConfig, "epochs", 2.5),
        (ModelConfig, "batch_norm", "perhaps"),
        (ModelConfig, "conv_filters", 32),
        (ModelConfig, "no_such_field", 1),
    ],
)
def test_coerce_rejects_with_config_error(cls, key, value):
    with pytest.raises(ConfigError):
        coerce(cls, key, value)


def test_layering_order(tmp_path):
    preset = ModelConfig(name="p", conv_filters=(8,), dropout=0.1)
    file = tmp_path / "c.toml"
    file.write_text('[model]\ndropout = 0.2\nkernel_size = 5\n[train]\nepochs = 4\nseed = 7\n')
    cfg = resolve_config(preset, read_config_file(file), {"dropout": "0.3"}, {"epochs": "2"})
    assert cfg.model.conv_filters == (8,)  # from the preset
    assert cfg.model.kernel_size == 5  # from the file
    assert cfg.model.dropout == 0.3  # the flag beats the file
    assert cfg.train.epochs == 2 and cfg.train.seed == 7


def test_yaml_file(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("model:\n  conv_filters: [4, 8]\ntrain:\n  batch_size: 64\n")
    cfg = resolve_config(ModelConfig(), read_config_file(file))
    assert cfg.model.conv_filters == (4, 8) and cfg.train.batch_size == 64


@pytest.mark.parametrize(
    "name,text",
    [
        ("bad.toml", "[model\nx=1"),
        ("bad.yaml", "model: [unclosed"),
        ("extra.toml", "[optimizer]\nlr = 1\n"),
        ("c.json", "{}"),
    ],
)
def test_bad_files_give_config_error(tmp_path, name, text):
    file = tmp_path / name
    file.write_text(text)
    with pytest.raises(ConfigError):
        read_config_file(file)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        read_config_file(tmp_path / "nope.toml")


def test_write_read_round_trip(tmp_path):
    cfg = Config(
        model=ModelConfig(name="x", conv_filters=(16, 32, 64), dense_units=(), batch_norm=True, l2=1e-4),
        train=TrainConfig(epochs=3, out="somewhere", offline=True),
    )
    path = tmp_path / "config.toml"
    write_config(cfg, path)
    assert config_from_dict(read_config_file(path)) == cfg

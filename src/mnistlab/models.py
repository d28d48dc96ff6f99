"""The model zoo: small builder functions chosen by name, and named presets of ModelConfig.

    mnistlab models            # lists every preset with its parameter count

A builder takes a ModelConfig and returns an uncompiled keras.Model from built-in layers only, so
a saved `.keras` file reloads without this module. Presets are just ModelConfigs: any field can be
changed from a config file or a flag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
from keras import layers

from mnistlab.config import ConfigError, ModelConfig
from mnistlab.data import INPUT_SHAPE, NUM_CLASSES

Builder = Callable[[ModelConfig], keras.Model]
REGISTRY: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make a builder available as ModelConfig.arch == name."""

    def add(builder: Builder) -> Builder:
        REGISTRY[name] = builder
        return builder

    return add


def _regularizer(cfg: ModelConfig) -> keras.regularizers.Regularizer | None:
    return keras.regularizers.L2(cfg.l2) if cfg.l2 > 0 else None


def _head(x: keras.KerasTensor, cfg: ModelConfig) -> keras.KerasTensor:
    """Flatten, hidden dense layers, then the 10-way softmax; dropout before each dense layer."""
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(cfg.dense_units):
        if cfg.dropout > 0:
            x = layers.Dropout(cfg.dropout, name=f"dense{i}_dropout")(x)
        # The bias is redundant when batch norm follows: its beta does the same job.
        x = layers.Dense(
            units,
            use_bias=not cfg.batch_norm,
            kernel_regularizer=_regularizer(cfg),
            name=f"dense{i}",
        )(x)
        if cfg.batch_norm:
            x = layers.BatchNormalization(name=f"dense{i}_bn")(x)
        x = layers.Activation(cfg.dense_activation, name=f"dense{i}_{cfg.dense_activation}")(x)
    if cfg.dropout > 0:
        x = layers.Dropout(cfg.dropout, name="output_dropout")(x)
    return layers.Dense(
        NUM_CLASSES, activation="softmax", kernel_regularizer=_regularizer(cfg), name="output"
    )(x)


@register_model("linear")
def linear(cfg: ModelConfig) -> keras.Model:
    """Softmax regression F(x) = softmax(Wx + b) on the flattened image; ignores hidden layers."""
    inputs = keras.Input(INPUT_SHAPE, name="image")
    return keras.Model(inputs, _head(inputs, dataclasses.replace(cfg, dense_units=())), name=cfg.name)


@register_model("mlp")
def mlp(cfg: ModelConfig) -> keras.Model:
    """Fully connected network: flatten, cfg.dense_units hidden layers, softmax."""
    inputs = keras.Input(INPUT_SHAPE, name="image")
    return keras.Model(inputs, _head(inputs, cfg), name=cfg.name)


@register_model("cnn")
def cnn(cfg: ModelConfig) -> keras.Model:
    """Blocks of [conv + (batch norm) + activation] x convs_per_block + pooling, then the dense head."""
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = inputs
    for b, filters in enumerate(cfg.conv_filters):
        for c in range(cfg.convs_per_block):
            x = layers.Conv2D(
                filters,
                cfg.kernel_size,
                padding=cfg.padding,
                use_bias=not cfg.batch_norm,
                kernel_regularizer=_regularizer(cfg),
                name=f"block{b}_conv{c}",
            )(x)
            if cfg.batch_norm:
                x = layers.BatchNormalization(name=f"block{b}_bn{c}")(x)
            x = layers.Activation(cfg.activation, name=f"block{b}_{cfg.activation}{c}")(x)
        if cfg.pooling == "max":
            x = layers.MaxPooling2D(2, name=f"block{b}_maxpool")(x)
        elif cfg.pooling == "avg":
            x = layers.AveragePooling2D(2, name=f"block{b}_avgpool")(x)
    return keras.Model(inputs, _head(x, cfg), name=cfg.name)


PRESETS: dict[str, ModelConfig] = {
    # The seed's baseline F(x) = Wx + b with softmax: 7,850 parameters, ~92 % on MNIST.
    "linear": ModelConfig(name="linear", arch="linear", conv_filters=(), dense_units=()),
    # One hidden layer of 256: the classic MLP, ~98 %.
    "mlp": ModelConfig(name="mlp", arch="mlp", conv_filters=(), dense_units=(256,), dropout=0.2),
    # The seed's CNN: conv + ReLU + max-pool blocks, then dense layers; ~99.2 % in a few epochs.
    "cnn": ModelConfig(
        name="cnn",
        arch="cnn",
        conv_filters=(32, 64),
        kernel_size=3,
        padding="same",
        dense_units=(128,),
        dropout=0.3,
    ),
    # keras-io "Simple MNIST convnet" (mnist_convnet.py), unchanged: the reference peer in
    # benchmarks. 34,826 parameters.
    "keras-example": ModelConfig(
        name="keras-example",
        arch="cnn",
        conv_filters=(32, 64),
        kernel_size=3,
        padding="valid",
        dense_units=(),
        dropout=0.5,
    ),
}


def get_preset(name: str) -> ModelConfig:
    """The ModelConfig of preset `name`.

    Raises:
        ConfigError: no such preset.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}.") from None


def build_model(cfg: ModelConfig) -> keras.Model:
    """Build the uncompiled model that `cfg` describes.

    Raises:
        ConfigError: cfg.arch is not a registered builder, or the layers do not fit 28x28 input.
    """
    try:
        builder = REGISTRY[cfg.arch]
    except KeyError:
        raise ConfigError(f"unknown arch {cfg.arch!r}; choose one of {', '.join(REGISTRY)}.") from None
    try:
        return builder(cfg)
    except ValueError as e:
        # Too many valid-padded/pooled blocks shrink 28x28 to nothing; Keras says so at build time.
        reason = str(e).strip().splitlines()[0]
        raise ConfigError(f"model {cfg.name!r} cannot be built for 28x28 input: {reason}") from None

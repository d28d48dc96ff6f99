"""Model zoo: every preset builds, has the pinned parameter count, and every option takes effect."""

import dataclasses

import keras
import numpy as np
import pytest

from mnistlab.config import ConfigError, ModelConfig
from mnistlab.data import INPUT_SHAPE, NUM_CLASSES
from mnistlab.models import (
    MAX_ACTIVATIONS,
    MAX_PARAMS,
    PRESETS,
    REGISTRY,
    build_model,
    get_preset,
    model_size,
)

# Pinned by hand from the layer shapes, so a change to a preset is a deliberate one:
# linear 784*10+10; mlp 784*256+256 + 256*10+10; cnn conv 9*32+32, 9*32*64+64, dense 7*7*64*128+128,
# out 128*10+10; keras-example (keras-io mnist_convnet) 320 + 18,496 + 5*5*64*10+10.
# fast: stem 5*5*32 + BN 4*32, conv 9*32*64 + BN 4*64, dense 7*7*64*128 + BN 4*128, out 1,290.
# best: convs 9*(32 + 32*32 + 32*64 + 64*64 + 64*128 + 128*128) + BN 4*2*(32+64+128),
# dense 4*4*128*256 + BN 4*256, out 2,570.
PARAM_COUNTS = {
    "linear": 7_850,
    "mlp": 203_530,
    "cnn": 421_642,
    "keras-example": 34_826,
    "fast": 422_826,
    "best": 815_658,
    "reader": 815_658,  # best's network; what differs is the training (more writers, augmentation)
}


def test_every_preset_is_pinned():
    assert set(PARAM_COUNTS) == set(PRESETS)


def test_strides_and_stem_kernel():
    cfg = ModelConfig(conv_filters=(8, 16), stem_kernel_size=5, kernel_size=3, strides=2, pooling="none",
                      dense_units=())
    model = build_model(cfg)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.kernel_size for c in convs] == [(5, 5), (3, 3)]
    assert [c.output.shape[1] for c in convs] == [14, 7]  # each block halves 28 -> 14 -> 7


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_builds_softmax_over_ten_classes(name):
    model = build_model(PRESETS[name].model)
    assert model.input_shape == (None, *INPUT_SHAPE)
    assert model.output_shape == (None, NUM_CLASSES)
    probs = np.asarray(model(np.random.default_rng(0).random((3, *INPUT_SHAPE), dtype=np.float32)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    if name in PARAM_COUNTS:
        assert model.count_params() == PARAM_COUNTS[name]


def test_linear_is_wx_plus_b():
    """The linear preset computes softmax(x W + b) exactly: a NumPy oracle."""
    model = build_model(PRESETS["linear"].model)
    x = np.random.default_rng(1).random((4, *INPUT_SHAPE), dtype=np.float32)
    w, b = model.get_layer("output").get_weights()
    logits = x.reshape(4, -1) @ w + b
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-5, atol=1e-6)


def _layer_types(model: keras.Model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "gelu"])
def test_activation_is_used(activation):
    model = build_model(dataclasses.replace(get_preset("cnn").model, activation=activation))
    assert f"block0_{activation}0" in [layer.name for layer in model.layers]


@pytest.mark.parametrize("pooling,layer", [("max", "MaxPooling2D"), ("avg", "AveragePooling2D")])
def test_pooling_kind(pooling, layer):
    model = build_model(dataclasses.replace(get_preset("cnn").model, pooling=pooling))
    assert _layer_types(model).count(layer) == 2


def test_no_pooling_keeps_resolution():
    cfg = ModelConfig(conv_filters=(4,), pooling="none", dense_units=())
    assert build_model(cfg).get_layer("flatten").output.shape[-1] == 28 * 28 * 4


def test_blocks_convs_and_kernel():
    cfg = ModelConfig(conv_filters=(8, 16, 32), convs_per_block=2, kernel_size=5, dense_units=(64, 32))
    model = build_model(cfg)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [8, 8, 16, 16, 32, 32]
    assert all(c.kernel_size == (5, 5) for c in convs)
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [64, 32, 10]


def test_batch_norm_dropout_and_l2():
    cfg = ModelConfig(conv_filters=(8,), dense_units=(16,), batch_norm=True, dropout=0.25, l2=1e-3)
    model = build_model(cfg)
    types = _layer_types(model)
    assert types.count("BatchNormalization") == 2
    assert types.count("Dropout") == 2  # before the hidden dense and before the output
    model(np.zeros((1, *INPUT_SHAPE), np.float32))
    assert len(model.losses) == 3  # one L2 term per kernel: conv, dense, output


def test_unbuildable_config_is_a_config_error():
    cfg = ModelConfig(conv_filters=(8, 8, 8, 8, 8), padding="valid", kernel_size=5)
    with pytest.raises(ConfigError, match="cannot be built"):
        build_model(cfg)


def test_unknown_names():
    with pytest.raises(ConfigError, match="unknown model preset"):
        get_preset("resnet9000")
    with pytest.raises(ConfigError, match="unknown arch"):
        build_model(ModelConfig(arch="transformer"))


def test_registry_builders_return_uncompiled_models():
    for name, builder in REGISTRY.items():
        model = builder(dataclasses.replace(ModelConfig(), arch=name))
        assert not model.compiled and model.output_shape == (None, NUM_CLASSES)


def _activations(model: keras.Model) -> int:
    """Floats in every layer's output for one image, the input's excepted."""
    return sum(int(np.prod(layer.output.shape[1:])) for layer in model.layers[1:])


# Every option the builders read, in the combinations that change the arithmetic.
SIZED = {
    **{name: preset.model for name, preset in PRESETS.items()},
    "valid-avg": ModelConfig(conv_filters=(4, 6), kernel_size=5, padding="valid", pooling="avg", dense_units=(7,)),
    "stem-stride-valid": ModelConfig(conv_filters=(3, 5), stem_kernel_size=7, strides=2, padding="valid",
                                     pooling="none", convs_per_block=2, dense_units=()),
    "odd-sides": ModelConfig(conv_filters=(2, 3), kernel_size=2, pooling="max", strides=2, batch_norm=True),
    "mlp-bn-dropout": ModelConfig(arch="mlp", conv_filters=(9,), dense_units=(12, 5), batch_norm=True, dropout=0.1),
    "linear-ignores-hidden": ModelConfig(arch="linear", dense_units=(64,), dropout=0.3),
    "cnn-without-convs": ModelConfig(conv_filters=(), dense_units=(3,)),
}


@pytest.mark.parametrize("name", sorted(SIZED))
def test_model_size_counts_what_keras_builds(name):
    """The arithmetic estimate against Keras's own count, for every preset and option."""
    cfg = SIZED[name]
    model = build_model(cfg)
    size = model_size(cfg)
    assert size.params == model.count_params()
    assert size.activations == _activations(model)


@pytest.mark.parametrize(
    "fields,fragment",
    [
        ({"kernel_size": 100_000}, "kernel_size 100000 is wider than the image"),
        ({"stem_kernel_size": 29}, "stem_kernel_size 29 is wider than the image"),
        ({"dense_units": (2_000_000_000,)}, f"past mnistlab's cap of {MAX_PARAMS:,}"),
        ({"conv_filters": (4096, 4096)}, f"past mnistlab's cap of {MAX_PARAMS:,}"),  # 151 M in the second conv
        # Few parameters, but 28x28x100,000 values an image: the memory runs out in the activations.
        ({"conv_filters": (100_000, 1), "kernel_size": 1}, f"past mnistlab's cap of {MAX_ACTIVATIONS:,}"),
        ({"conv_filters": (8,) * 6}, "block4 has a 1x1 map left to pool"),
    ],
)
def test_a_model_too_large_or_that_cannot_fit_is_refused_before_building(fields, fragment):
    cfg = dataclasses.replace(ModelConfig(), **fields)
    with pytest.raises(ConfigError) as raised:
        build_model(cfg)
    assert fragment in str(raised.value)


def test_the_caps_leave_room_above_every_preset():
    sizes = [model_size(p.model) for p in PRESETS.values()]
    assert max(s.params for s in sizes) * 50 < MAX_PARAMS
    assert max(s.activations for s in sizes) * 20 < MAX_ACTIVATIONS
    # A kernel as wide as the image is still allowed: it is the largest that sees only the image.
    assert model_size(ModelConfig(conv_filters=(2,), kernel_size=28, pooling="none", dense_units=())).params > 0


def test_an_arch_registered_elsewhere_has_no_estimate():
    assert model_size(ModelConfig(arch="transformer")) is None


@pytest.mark.parametrize("cfg", [
    ModelConfig(conv_filters=(8,) * 5),
    ModelConfig(conv_filters=(8,) * 4, padding="valid"),
    ModelConfig(conv_filters=(8,) * 3, strides=2, padding="valid", kernel_size=5),
])
def test_what_the_estimate_calls_unbuildable_keras_cannot_build(cfg):
    """The oracle for the shrinking arithmetic: Keras's own builder fails on the same configs."""
    with pytest.raises(ConfigError, match="cannot be built"):
        model_size(cfg)
    with pytest.raises(ValueError):
        REGISTRY["cnn"](cfg)

"""Training: one tiny run on a slice writes a complete run folder; seeds repeat; real accuracy (slow)."""

import csv
import json

import keras
import numpy as np
import pytest

from mnistlab.config import (
    DEFAULT_PRESET,
    Config,
    ModelConfig,
    TrainConfig,
    config_from_dict,
    read_config_file,
)
from mnistlab.data import load_digit_set, one_hot, preprocess_images
from mnistlab.models import preset_config
from mnistlab.runs import RunDir
from mnistlab.train import augmentation, learning_rate, split_train_val, train
from mnistlab.train.inputs import training_split
from mnistlab.train.recipe import InkDarkness, PixelNoise, Settled, SettlingAugmentation, StrokeWidth

TINY_MODEL = ModelConfig(name="tiny", conv_filters=(8,), dense_units=(16,))


def tiny_config(out, **train_fields):
    fields = dict(epochs=2, batch_size=64, train_limit=1200, test_limit=300, patience=0, out=str(out), verbose=0)
    fields.update(train_fields)
    return Config(model=TINY_MODEL, train=TrainConfig(**fields))


def test_split_takes_the_tail():
    x, y = np.arange(100), np.arange(100)
    x_fit, y_fit, x_val, y_val = split_train_val(x, y, 0.1)
    assert len(x_fit) == 90 and list(x_val) == list(range(90, 100)) and list(y_val) == list(range(90, 100))


def test_tiny_run_writes_a_complete_folder(mnist, tmp_path):
    cfg = tiny_config(tmp_path / "run")
    result = train(cfg, data=mnist)
    run = result.run
    for path in (run.model, run.config, run.history, run.metrics, run.checkpoint):
        assert path.is_file(), path
    assert config_from_dict(read_config_file(run.config)) == cfg
    with open(run.history) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"accuracy", "loss", "val_accuracy", "val_loss"} <= set(rows[0])
    m = result.metrics
    assert m["test_images"] == 300 and m["train_images"] == 1080 and m["epochs_run"] == 2
    assert m["params"] == result.model.count_params()
    assert m["data"]["sha256"] == mnist.checksums()
    assert {"python", "keras", "numpy"} <= set(m["versions"]) and m["seed"] == 0
    assert 0.3 < m["test_accuracy"] <= 1.0  # 34 steps on 1k images: well above the 10 % of chance
    # The saved model alone gives the same predictions as the one in memory.
    x = preprocess_images(mnist.x_test[:50])
    reloaded = RunDir.open(run.path).load_model()
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-6)


def test_existing_folder_is_refused_and_kept(mnist, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="already exists"):
        train(tiny_config(out), data=mnist)
    assert (out / "notes.txt").read_text() == "mine" and len(list(out.iterdir())) == 1


def test_same_seed_same_weights(mnist, tmp_path):
    a = train(tiny_config(tmp_path / "a", epochs=1, seed=5), data=mnist).model
    b = train(tiny_config(tmp_path / "b", epochs=1, seed=5), data=mnist).model
    c = train(tiny_config(tmp_path / "c", epochs=1, seed=6), data=mnist).model
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights()))


def test_early_stopping_keeps_the_best_validation_epoch(mnist, tmp_path):
    # A learning rate this high makes validation accuracy wander, so the last epoch is rarely best.
    cfg = tiny_config(tmp_path / "run", epochs=4, patience=4, learning_rate=0.05)
    result = train(cfg, data=mnist)
    with open(result.run.history) as f:
        val = [float(r["val_accuracy"]) for r in csv.DictReader(f)]
    m = result.metrics
    assert m["kept_epoch"] == int(np.argmax(val)) + 1
    _, _, x_val, y_val = split_train_val(mnist.x_train[:1200], mnist.y_train[:1200], 0.1)
    kept = result.model.evaluate(preprocess_images(x_val), one_hot(y_val), verbose=0, return_dict=True)
    assert kept["accuracy"] == pytest.approx(max(val), abs=1e-6)


def test_onecycle_schedule_matches_its_formula():
    t = TrainConfig(epochs=2, learning_rate=0.01, schedule="onecycle", warmup=0.25)
    schedule = learning_rate(t, steps_per_epoch=50)  # 100 steps: 25 warming up, 75 decaying
    lr = [float(schedule(step)) for step in (0, 25, 25 + 75 // 2, 100)]
    assert lr[0] == pytest.approx(0.001)
    assert lr[1] == pytest.approx(0.01)
    assert lr[2] == pytest.approx(0.01 * 0.5 * (1 + np.cos(np.pi * 37 / 75)), rel=1e-4)
    assert lr[3] == pytest.approx(0.0, abs=1e-8)
    assert learning_rate(TrainConfig(learning_rate=0.002), 10) == 0.002


def test_settling_epochs_restart_the_step_size_low():
    t = TrainConfig(epochs=4, learning_rate=0.01, schedule="onecycle", warmup=0.25, augment=1.0, settle_epochs=1)
    schedule = learning_rate(t, steps_per_epoch=20, settle_epochs=1)  # onecycle over 60 steps, then 20 more
    plain = learning_rate(TrainConfig(epochs=3, learning_rate=0.01, schedule="onecycle", warmup=0.25), 20)
    for step in (0, 15, 40, 59):  # the epochs before are one-cycle over their own steps
        assert float(schedule(step)) == pytest.approx(float(plain(step)), rel=1e-5)
    assert float(schedule(60)) == pytest.approx(0.001)  # then a tenth of the peak ...
    assert float(schedule(70)) == pytest.approx(0.0005, rel=1e-4)  # ... a cosine down to 0
    assert float(schedule(80)) == pytest.approx(0.0, abs=1e-9)
    again = Settled.from_config(schedule.get_config())
    assert [float(again(step)) for step in (10, 65)] == [float(schedule(step)) for step in (10, 65)]
    constant = learning_rate(TrainConfig(epochs=3, learning_rate=0.002, augment=1.0, settle_epochs=1), 10, 1)
    assert [float(constant(step)) for step in (0, 19, 20)] == pytest.approx([0.002, 0.002, 0.0002])


class SettledAtEpochEnd(keras.callbacks.Callback):
    """Which epochs (of the whole run) trained with the augmentation settled."""

    def __init__(self):
        super().__init__()
        self.settled = []

    def on_epoch_end(self, epoch, logs=None):
        self.settled.append((epoch, self.model.get_layer("augmentation").settled))


def test_a_settling_run_trains_its_last_epochs_at_half_strength(mnist, tmp_path):
    seen = SettledAtEpochEnd()
    cfg = tiny_config(tmp_path / "run", epochs=3, settle_epochs=1, augment=1.0, augment_style="handwriting")
    result = train(cfg, data=mnist, callbacks=[seen])
    assert seen.settled == [(0, False), (1, False), (2, True)]
    assert result.metrics["epochs_run"] == 3 and np.isfinite(result.metrics["test_loss"])
    layer = SettlingAugmentation(1.0, "handwriting")
    strengths = lambda pipeline: [sub.strength for sub in pipeline.layers if hasattr(sub, "strength")]  # noqa: E731
    assert strengths(layer.half) == pytest.approx([s / 2 for s in strengths(layer.full)])
    x = preprocess_images(mnist.x_test[:8])
    layer.settled = True
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)  # the identity outside training
    assert not np.allclose(np.asarray(layer(x, training=True)), x)


def test_augmentation_only_in_training(mnist):
    aug = augmentation(1.0)
    x = preprocess_images(mnist.x_test[:16])
    np.testing.assert_array_equal(np.asarray(aug(x, training=False)), x)
    moved = np.asarray(aug(x, training=True))
    assert moved.shape == x.shape and not np.allclose(moved, x)
    assert moved.min() >= 0.0 and moved.max() <= 1.0 + 1e-6


def test_handwriting_augmentation_only_in_training_and_digit_safe(mnist):
    aug = augmentation(1.0, "handwriting")
    x = preprocess_images(mnist.x_test[:32])
    np.testing.assert_array_equal(np.asarray(aug(x, training=False)), x)
    moved = np.asarray(aug(x, training=True))
    assert moved.shape == x.shape and not np.allclose(moved, x)
    assert moved.min() >= -1e-6 and moved.max() <= 1.0 + 1e-6
    # Still a digit: the ink moves, fades and thins, but a good part of it stays (thinning stops
    # at half an erosion and fading at 60 %, so no digit is wiped out).
    assert (moved.reshape(32, -1).sum(1) > 0.2 * x.reshape(32, -1).sum(1)).all()
    assert (moved.reshape(32, -1).max(1) > 0.2).all()


def test_stroke_width_lies_between_erosion_and_dilation(mnist):
    """The oracle: SciPy's grey-level 3x3 minimum and maximum filters."""
    from scipy import ndimage

    x = preprocess_images(mnist.x_test[:8])
    out = np.asarray(StrokeWidth(1.0, seed=1)(x, training=True))
    thinner = ndimage.minimum_filter(x, size=(1, 3, 3, 1), mode="constant", cval=np.inf)
    bolder = ndimage.maximum_filter(x, size=(1, 3, 3, 1), mode="constant", cval=-np.inf)
    assert (out >= thinner - 1e-6).all() and (out <= bolder + 1e-6).all()
    halfway = x + 0.5 * (thinner - x)  # thinning stops at half an erosion, so strokes never vanish
    assert (out >= halfway - 1e-6).all()
    ink = out.reshape(8, -1).sum(1) / x.reshape(8, -1).sum(1)
    assert (ink < 0.95).any() and (ink > 1.05).any()  # some images thinner, some bolder
    np.testing.assert_array_equal(np.asarray(StrokeWidth(1.0)(x, training=False)), x)


def test_ink_darkness_scales_each_image_within_its_range(mnist):
    x = preprocess_images(mnist.x_test[:16])
    out = np.asarray(InkDarkness(0.4, seed=2)(x, training=True))
    factor = out.reshape(16, -1).max(1) / x.reshape(16, -1).max(1)
    assert (factor >= 0.6 - 1e-6).all() and (factor <= 1.0 + 1e-6).all() and factor.std() > 0.01
    np.testing.assert_allclose(out, x * factor[:, None, None, None], rtol=1e-5, atol=1e-6)


def test_pixel_noise_leaves_half_clean_and_bounds_the_rest():
    """On flat mid-grey, where clipping seldom bites, each image's residual deviation is its drawn
    standard deviation: 0 for the clean half, at most `strength` for the others."""
    x = np.full((200, 28, 28, 1), 0.5, np.float32)
    out = np.asarray(PixelNoise(0.4, seed=5)(x, training=True))
    assert out.min() >= 0.0 and out.max() <= 1.0
    std = (out - x).reshape(200, -1).std(1)
    clean = std == 0
    assert 60 <= clean.sum() <= 140  # binomial(200, 1/2): mean 100, sd 7
    assert std.max() <= 0.4 * 1.05 and np.median(std[~clean]) > 0.1
    np.testing.assert_array_equal(np.asarray(PixelNoise(0.4)(x, training=False)), x)


@pytest.mark.parametrize("layer", [StrokeWidth(0.7, seed=3), InkDarkness(0.3, seed=4), PixelNoise(0.5, seed=6)])
def test_augmentation_layers_round_trip_their_config(layer):
    again = type(layer).from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    assert keras.saving.get_registered_object(f"mnistlab>{type(layer).__name__}") is type(layer)


@pytest.mark.parametrize("style", ["digit", "handwriting"])
def test_augmented_trainer_reloads_as_a_checkpoint_does(style, tmp_path):
    """A killed run resumes from checkpoint.keras, which holds the augmentation wrapper: every
    augmentation layer must come back from its own config."""
    inputs = keras.Input((28, 28, 1))
    trainer = keras.Model(inputs, keras.layers.Flatten()(augmentation(1.0, style)(inputs)))
    trainer.save(tmp_path / "checkpoint.keras")
    again = keras.saving.load_model(tmp_path / "checkpoint.keras", compile=False)
    first, second = (m.get_layer("augmentation").get_config()["layers"] for m in (trainer, again))
    # Through JSON, as the file stores it: tuples and lists are the same setting.
    assert json.dumps([layer["config"] for layer in first], sort_keys=True) == \
        json.dumps([layer["config"] for layer in second], sort_keys=True)


def test_extra_train_digits_join_both_splits(mnist, tmp_path):
    rng = np.random.default_rng(0)
    digits = (rng.random((50, 28, 28)) * 255).astype(np.uint8)
    np.savez(tmp_path / "extra.npz", x=digits, y=np.repeat(np.arange(10), 5))
    t = TrainConfig(train_limit=1000, validation_split=0.1, extra_train=(str(tmp_path / "extra.npz"),), verbose=0)
    x_fit, y_fit, x_val, y_val = training_split(mnist, t)
    extra = load_digit_set(str(tmp_path / "extra.npz"), progress=False)
    n_extra = len(extra.x_train)
    assert len(x_fit) == 900 + n_extra - round(n_extra * 0.1) and len(x_val) == 100 + round(n_extra * 0.1)
    np.testing.assert_array_equal(x_fit[900:], extra.x_train[: n_extra - round(n_extra * 0.1)])
    np.testing.assert_array_equal(x_val[100:], extra.x_train[n_extra - round(n_extra * 0.1):])
    assert y_fit.dtype == mnist.y_train.dtype and len(y_fit) == len(x_fit)


def test_no_validation_split_augmented_run(mnist, tmp_path):
    cfg = tiny_config(tmp_path / "run", epochs=1, validation_split=0.0, augment=1.0, label_smoothing=0.1,
                      schedule="onecycle")
    result = train(cfg, data=mnist)
    assert result.metrics["train_images"] == 1200 and result.metrics["val_accuracy"] is None
    with open(result.run.history) as f:
        assert next(csv.DictReader(f)).get("val_accuracy") in (None, "NA")  # Keras writes NA
    saved = RunDir.open(result.run.path).load_model()
    assert not any("augmentation" in layer.name or "random" in layer.name for layer in saved.layers)


def test_ensemble_is_the_mean_of_its_members(mnist, tmp_path):
    cfg = tiny_config(tmp_path / "ens", epochs=1, ensemble=2, seed=3)
    result = train(cfg, data=mnist)
    m = result.metrics
    assert m["members"] == 2 and len(m["member_test_accuracy"]) == 2
    members = [RunDir.open(tmp_path / "ens" / "members" / f"seed{s}").load_model() for s in (3, 4)]
    x = preprocess_images(mnist.x_test[:20])
    expected = np.mean([member.predict(x, verbose=0) for member in members], axis=0)
    ensemble = RunDir.open(result.run.path).load_model()
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, atol=1e-6)


@pytest.mark.slow
def test_default_preset_reaches_99_percent(mnist, tmp_path):
    cfg = preset_config(DEFAULT_PRESET, out=str(tmp_path / "default"), verbose=2)
    assert train(cfg, data=mnist).metrics["test_accuracy"] >= 0.990


@pytest.mark.slow
def test_cnn_preset_reaches_99_percent(mnist, tmp_path):
    cfg = preset_config("cnn", out=str(tmp_path / "cnn"), verbose=2)
    assert train(cfg, data=mnist).metrics["test_accuracy"] >= 0.990


@pytest.mark.slow
def test_linear_preset_is_softmax_regression_accuracy(mnist, tmp_path):
    cfg = preset_config("linear", out=str(tmp_path / "linear"), verbose=2)
    acc = train(cfg, data=mnist).metrics["test_accuracy"]
    assert 0.91 <= acc <= 0.935


# --- batches.csv: the training curve within epochs --------------------------------------------------


def test_batch_logger_rows_are_the_means_of_their_batches(tmp_path):
    """The oracle: NumPy's mean of the batches each row covers, from the running means Keras logs."""
    from mnistlab.train.batches import BatchLogger

    losses, right = np.array([5.0, 4.0, 3.0, 2.0, 1.0]), np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    logger = BatchLogger(tmp_path / "batches.csv", rows_per_epoch=2)  # every 3 of 5 batches
    logger.set_params({"steps": 5})
    for epoch in (0, 1):
        logger.on_epoch_begin(epoch)
        for k in range(5):
            logger.on_train_batch_end(k, {"loss": losses[: k + 1].mean(), "accuracy": right[: k + 1].mean()})
        logger.on_epoch_end(epoch)
    with open(tmp_path / "batches.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["epoch"], r["batch"], r["batches"]) for r in rows] == [("0", "3", "5"), ("0", "5", "5"),
                                                                      ("1", "3", "5"), ("1", "5", "5")]
    assert [float(r["loss"]) for r in rows[:2]] == pytest.approx([losses[:3].mean(), losses[3:].mean()])
    assert [float(r["accuracy"]) for r in rows[:2]] == pytest.approx([right[:3].mean(), right[3:].mean()])

    # Called every steps_per_execution steps, the last call past the epoch's end: counted to its end.
    logger.set_params({"steps": 20})
    logger.on_epoch_begin(2)
    logger.on_train_batch_end(15, {"loss": 2.0, "accuracy": 0.5})
    logger.on_train_batch_end(31, {"loss": 1.8, "accuracy": 0.5})  # 4 batches of 1.0 after 16 of 2.0
    assert [(r["batch"], float(r["loss"])) for r in logger.rows[-2:]] == [("16", 2.0), ("20", pytest.approx(1.0))]

    # A resumed run (a new process) keeps the rows of the epochs its checkpoint holds, and only those.
    resumed = BatchLogger(tmp_path / "batches.csv")
    resumed.set_params({"steps": 5})
    resumed.on_epoch_begin(1)
    resumed.on_epoch_end(1)
    with open(tmp_path / "batches.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["0", "0"]


def test_a_run_logs_its_batches_and_they_agree_with_its_history(mnist, tmp_path):
    # 1,152 fitted images in 18 batches of 64, one step a call: a row for every batch.
    cfg = tiny_config(tmp_path / "run", train_limit=1280, validation_split=0.1, steps_per_execution=1)
    run = train(cfg, data=mnist).run
    with open(run.batches) as f:
        rows = list(csv.DictReader(f))
    with open(run.history) as f:
        history = list(csv.DictReader(f))
    assert [(int(r["epoch"]), int(r["batch"])) for r in rows] == [(e, b) for e in (0, 1) for b in range(1, 19)]
    assert {r["batches"] for r in rows} == {"18"}
    for epoch in (0, 1):  # equal batches: the rows' mean is Keras's own figure for the epoch
        for key in ("loss", "accuracy"):
            mean = np.mean([float(r[key]) for r in rows if int(r["epoch"]) == epoch])
            assert mean == pytest.approx(float(history[epoch][key]), rel=1e-4), (epoch, key)
    loss = [float(r["loss"]) for r in rows]
    assert np.mean(loss[-4:]) < np.mean(loss[:4])  # it learned

"""Fine-tuning: the strategies, the optimizer and batches it adds to train(), each source, the
report and the CLI, on a tiny parent and small slices."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from mnistlab.config import (
    Config,
    ConfigError,
    FinetuneConfig,
    ModelConfig,
    TrainConfig,
    config_from_dict,
    read_config_file,
    write_config,
)
from mnistlab.errors import MnistlabError
from mnistlab.finetune import finetune, finetune_config, stratified_order
from mnistlab.models import build_model, head_layers
from mnistlab.runs import CONTROL_DIR, FINETUNE_REPORT_FILE
from mnistlab.serve.corrections import CorrectionStore
from mnistlab.train import LayerwiseAdam, Phase, ReplayBatches, phases, train

SHARED_USPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "usps"
TINY_MODEL = ModelConfig(name="tiny", conv_filters=(8,), dense_units=(16,))
QUICK = {"epochs": 2, "patience": 0, "verbose": 0}  # run settings that keep a fine-tune to seconds


@pytest.fixture(scope="module")
def parent(mnist, tmp_path_factory):
    """A tiny trained run to fine-tune (about 80 % on MNIST after one epoch on 2,000 images)."""
    out = tmp_path_factory.mktemp("parent") / "run"
    cfg = Config(model=TINY_MODEL, train=TrainConfig(epochs=1, train_limit=2000, test_limit=500,
                                                     validation_split=0.1, patience=0, out=str(out), verbose=0))
    train(cfg, data=mnist)
    return out


@pytest.fixture(scope="module")
def target_npz(mnist, tmp_path_factory):
    """Another digit set: MNIST test digits drawn dark on light and shifted, with its own test split."""
    path = tmp_path_factory.mktemp("target") / "digits.npz"
    x = 255 - np.roll(mnist.x_test[:600], 2, axis=2)
    np.savez(path, x=x[:400], y=mnist.y_test[:400], x_test=x[400:], y_test=mnist.y_test[400:600])
    return path


def finetune_quick(parent, out, data, **finetune_fields):
    train_fields = {**QUICK, "out": str(out)}
    train_keys = [k for k in list(finetune_fields) if k in TrainConfig.__dataclass_fields__]
    train_fields.update({k: finetune_fields.pop(k) for k in train_keys})
    cfg = finetune_config(parent, {"data": str(data), "control": False, **finetune_fields}, train_fields)
    return finetune(cfg)


# --- configuration ------------------------------------------------------------------------------


def test_finetune_config_takes_the_parents_architecture_and_round_trips(parent, tmp_path):
    cfg = finetune_config(parent, {"data": "usps", "shots": "5"}, {"epochs": 3})
    assert cfg.model == TINY_MODEL and cfg.train.epochs == 3 and cfg.train.learning_rate == 3e-4
    assert cfg.finetune == FinetuneConfig(parent=str(parent), data="usps", shots=5)
    path = tmp_path / "config.toml"
    write_config(cfg, path)
    assert config_from_dict(read_config_file(path)) == cfg
    assert "[finetune]" in path.read_text()


@pytest.mark.parametrize(
    "fields, message",
    [({"strategy": "some"}, "strategy"), ({"replay": 0.95}, "replay"), ({"shots": -1}, "shots"),
     ({"head_learning_rate": 0}, "head_learning_rate"), ({"test_fraction": 1.0}, "test_fraction")],
)
def test_bad_finetune_fields_are_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig(**fields)


def test_head_then_all_needs_epochs_left_for_all_layers():
    with pytest.raises(ConfigError, match="head_epochs"):
        Config(train=TrainConfig(epochs=2), finetune=FinetuneConfig(strategy="head-then-all", head_epochs=2))


def test_phases_of_each_strategy():
    t = TrainConfig(epochs=5, learning_rate=1e-4)
    assert phases(Config(train=t)) == [Phase(5, False, 1e-4)]
    f = FinetuneConfig(head_learning_rate=1e-3, head_epochs=2)
    assert phases(Config(train=t, finetune=f)) == [Phase(5, False, 1e-4, pytest.approx(10.0))]
    head = FinetuneConfig(strategy="head", head_learning_rate=1e-3)
    assert phases(Config(train=t, finetune=head)) == [Phase(5, True, 1e-3)]
    staged = FinetuneConfig(strategy="head-then-all", head_learning_rate=1e-3, head_epochs=2)
    assert phases(Config(train=t, finetune=staged)) == [Phase(2, True, 1e-3),
                                                        Phase(3, False, 1e-4, pytest.approx(10.0))]


def test_head_is_everything_after_flatten():
    model = build_model(ModelConfig(conv_filters=(8,), dense_units=(16,), batch_norm=True, dropout=0.1))
    names = [layer.name for layer in head_layers(model)]
    assert names[0] == "dense0_dropout" and names[-1] == "output" and not any(n.startswith("block") for n in names)
    inputs = keras.Input((28, 28, 1))
    with pytest.raises(ConfigError, match="flatten"):
        head_layers(keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs)))


# --- the optimizer and the batches --------------------------------------------------------------


def test_layerwise_adam_steps_the_head_by_its_multiplier():
    """Oracle: one step of plain Adam at lr and at lr * m, variable by variable."""
    grads = [np.array([0.5, -2.0], np.float32), np.array([3.0], np.float32)]

    def step(optimizer, head_path=None):
        body = keras.Variable(np.array([1.0, 2.0], np.float32), name="body")
        head = keras.Variable(np.array([-1.0], np.float32), name="head")
        if isinstance(optimizer, type):
            optimizer = optimizer(head_path(head), 4.0, learning_rate=0.01)
        optimizer.apply(grads, [body, head])
        return body.numpy(), head.numpy()

    body, head = step(LayerwiseAdam, lambda v: [v.path])
    plain_body, _ = step(keras.optimizers.Adam(learning_rate=0.01))
    _, fast_head = step(keras.optimizers.Adam(learning_rate=0.04))
    np.testing.assert_allclose(body, plain_body, rtol=1e-6)
    np.testing.assert_allclose(head, fast_head, rtol=1e-6)
    restored = LayerwiseAdam.from_config(LayerwiseAdam(["a/kernel"], 3.0, learning_rate=0.1).get_config())
    assert restored.head_paths == ("a/kernel",) and restored.head_multiplier == 3.0


def test_replay_batches_mix_a_fixed_share_and_cover_the_target_once():
    x, y = np.arange(50, dtype=np.float32)[:, None], np.zeros((50, 10), np.float32)
    xr, yr = -np.arange(1, 1001, dtype=np.float32)[:, None], np.ones((1000, 10), np.float32)
    batches = ReplayBatches(x, y, xr, yr, batch_size=16, fraction=0.75, seed=0)
    assert len(batches) == 13  # 50 target images, 4 a batch
    seen = []
    for i in range(len(batches)):
        bx, by = batches[i]
        target = bx[:, 0] >= 0
        assert target.sum() == min(4, 50 - 4 * i) and (~target).sum() == 12
        assert (by[target] == 0).all() and (by[~target] == 1).all()
        seen += bx[target, 0].tolist()
    assert sorted(seen) == list(range(50))
    first = batches[0][0][:4, 0].tolist()
    batches.on_epoch_end()
    assert batches[0][0][:4, 0].tolist() != first  # a new order every epoch


def test_stratified_order_puts_each_class_share_in_the_tail():
    y = np.repeat(np.arange(10), [30, 10, 20, 10, 10, 10, 10, 10, 10, 40])
    order = stratified_order(y, 0.2, seed=0)
    assert sorted(order) == list(range(len(y)))
    tail = y[order][-int(len(y) * 0.2):]
    counts = np.bincount(tail, minlength=10)
    assert abs(counts[0] - 6) <= 1 and abs(counts[9] - 8) <= 1 and counts.min() >= 1


# --- fine-tuning end to end ----------------------------------------------------------------------


def weights_of(model, names):
    return {n: [w.copy() for w in model.get_layer(n).get_weights()] for n in names}


def changed(before, model):
    return {n for n, ws in before.items()
            if any(not np.array_equal(a, b) for a, b in zip(ws, model.get_layer(n).get_weights(), strict=True))}


@pytest.mark.parametrize("strategy", ["head", "all", "head-then-all"])
def test_each_strategy_moves_the_layers_it_says(parent, target_npz, tmp_path, strategy):
    from mnistlab.runs import RunDir

    start = weights_of(RunDir.open(parent).load_model(), ["block0_conv0", "dense0", "output"])
    result = finetune_quick(parent, tmp_path / "ft", target_npz, strategy=strategy, epochs=3, head_epochs=1)
    moved = changed(start, result.run.model)
    assert moved == ({"dense0", "output"} if strategy == "head" else {"block0_conv0", "dense0", "output"})
    assert result.run.metrics["epochs_run"] == 3
    assert all(layer.trainable for layer in result.run.model.layers)  # saved as an ordinary model


def test_report_and_run_folder(parent, target_npz, mnist, tmp_path):
    cfg = finetune_config(parent, {"data": str(target_npz), "shots": 8, "replay": 0.5, "control_epochs": 3},
                          {**QUICK, "out": str(tmp_path / "ft")})
    result = finetune(cfg, mnist=mnist)
    report, run = result.report, result.run.run
    assert report["parent"] == str(parent) and report["shots"] == 8 and report["replay"] == 0.5
    assert report["target"]["train_images"] == 80 and report["target"]["test_images"] == 200
    assert report["target"]["sha256"] == result.run.metrics["data"]["sha256"]
    for part in ("before", "after", "control"):
        assert set(report[part]) == {"target_test_accuracy", "mnist_test_accuracy"}
        assert all(0 <= v <= 1 for v in report[part].values())
    # The parent as is scores the same on MNIST as its own recorded figure (same 10,000 images).
    assert report["before"]["target_test_accuracy"] != report["after"]["target_test_accuracy"]
    assert json.loads(run.metrics.read_text())["finetune"] == json.loads(json.dumps(report))
    text = (run.path / FINETUNE_REPORT_FILE).read_text()
    assert "before (source only)" in text and "control: from scratch" in text and "forgetting" in text
    control = result.control.metrics
    assert (run.path / CONTROL_DIR / "model.keras").is_file() and control["epochs_run"] <= 3
    assert control["train_images"] == 72 and report["control"]["target_test_accuracy"] == control["test_accuracy"]
    assert config_from_dict(read_config_file(run.config)).finetune.parent == str(parent)
    assert result.run.metrics["train_images"] == 72  # 80 shots, 10 % of each class held out


def test_replay_keeps_mnist_better_than_no_replay(parent, target_npz, mnist, tmp_path):
    """On a target that disagrees with MNIST (labels rotated by one), replay is what keeps MNIST."""
    x = np.load(target_npz)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=x["x"], y=(x["y"] + 1) % 10)
    scores = {}
    for replay in (0.0, 0.75):
        cfg = finetune_config(parent, {"data": str(wrong), "replay": replay, "control": False},
                              {**QUICK, "epochs": 4, "learning_rate": 3e-3, "out": str(tmp_path / f"r{replay}")})
        scores[replay] = finetune(cfg, mnist=mnist).report["after"]["mnist_test_accuracy"]
    assert scores[0.75] > scores[0.0] + 0.2


def test_each_source_fine_tunes(parent, mnist, tmp_path):
    store = CorrectionStore(Path(parent) / "corrections", max_files=1000, max_bytes=10**8)
    try:
        for image, label in zip(mnist.x_test[:60], mnist.y_test[:60], strict=True):
            buffer = io.BytesIO()
            Image.fromarray(255 - np.kron(image, np.ones((4, 4), np.uint8))).save(buffer, format="PNG")
            store.add(buffer.getvalue(), int(label))
        result = finetune_quick(parent, tmp_path / "corrections", "corrections", epochs=1)
        assert "corrections" in result.report["target"]["source"]
        assert result.report["target"]["train_images"] + result.report["target"]["test_images"] == 60
    finally:
        import shutil

        shutil.rmtree(Path(parent) / "corrections")
    result = finetune_quick(parent, tmp_path / "uci", "uci-digits", shots=3, epochs=1)
    assert result.report["target"]["train_images"] == 30  # 3 shots of each digit
    assert abs(result.report["target"]["test_images"] - 0.2 * 1797) <= 5  # 20 % of each class, rounded


@pytest.mark.skipif(not SHARED_USPS.is_dir(), reason="the USPS copy in ../shared/data/usps is not on this machine")
def test_usps_few_shot(parent, tmp_path):
    result = finetune_quick(parent, tmp_path / "usps", SHARED_USPS, shots=2, epochs=1)
    assert result.report["target"]["test_images"] == 2007 and result.report["target"]["train_images"] == 20


def test_too_few_images_for_the_shots_is_one_clear_error(parent, target_npz, tmp_path):
    with pytest.raises(MnistlabError, match="need 100 images of every digit"):
        finetune_quick(parent, tmp_path / "ft", target_npz, shots=100)
    assert not (tmp_path / "ft").exists()


# --- the command line -----------------------------------------------------------------------------


def mnistlab(*args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "mnistlab.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


def test_cli_finetune_end_to_end(parent, target_npz, tmp_path):
    out = tmp_path / "ft"
    done = mnistlab("finetune", parent, "--data", target_npz, "--shots", 5, "--epochs", 1, "--no-control",
                    "--strategy", "head", "--out", out, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["run"] == str(out) and report["strategy"] == "head" and report["control"] is None
    assert (out / FINETUNE_REPORT_FILE).is_file()

    done = mnistlab("finetune", parent, "--data", tmp_path / "nope.npz", "--out", tmp_path / "x", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
    done = mnistlab("finetune", tmp_path / "no-run", "--data", "usps", cwd=tmp_path)
    assert done.returncode == 2 and "does not exist" in done.stderr
    done = mnistlab("finetune", parent, "--data", target_npz, "--strategy", "everything", cwd=tmp_path)
    assert done.returncode == 2 and "strategy must be one of" in done.stderr

"""Data-parallel training (--devices N): a MirroredStrategy over virtual CPUs, in fresh processes.

TensorFlow sets up virtual devices only before its runtime starts, which in this pytest process
it has; so every run on several devices is a subprocess of its own.
"""

import json
import os
import subprocess
import sys

import keras
import pytest

from mnistlab.backends import BackendError
from mnistlab.cli import build_parser, config_from_args
from mnistlab.config import Config, ConfigError, ModelConfig, TrainConfig
from mnistlab.evaluate import evaluate
from mnistlab.runs import RunDir
from mnistlab.train import train

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
# A cnn of 54k parameters without dropout, 4 epochs on 5,400 images: about 4 s on one device and
# 8 s on two virtual CPUs (one step per call, see train.recipe.compile_phase) on two cores.
CLI_ARGS = ["--model", "cnn", "--conv-filters", "16", "--dense-units", "32", "--dropout", "0", "--epochs", "4",
            "--learning-rate", "0.003", "--train-limit", "6000", "--test-limit", "2000", "--validation-split", "0.1",
            "--patience", "0", "--offline", "-q"]
# How far two devices may be from one. With nothing random inside a step (no dropout, no
# augmentation), two replicas summing the gradients of their half-batches take the same steps as
# one device up to float rounding: over seeds 0-3 the test accuracies were identical (92.25,
# 93.40, 93.50, 93.95 %), the losses within 5e-6, the weights within 2e-4. Seeds alone move the
# accuracy 1.7 points, so 1 point is within the noise, and a step that lost a replica's half-batch
# or counted it twice (a wrong loss scale) would show in the loss long before.
SAME_ACCURACY, SAME_LOSS = 0.01, 0.02


def test_devices_must_be_1_to_64():
    for devices in (0, -1, 65):
        with pytest.raises(ConfigError, match="devices must be from 1 to 64"):
            TrainConfig(devices=devices)
    assert TrainConfig().devices == 1 and TrainConfig(devices=64).devices == 64
    assert config_from_args(build_parser().parse_args(["train", "--devices", "4"])).train.devices == 4


def test_virtual_devices_after_tensorflow_started_are_refused(tmp_path):
    keras.ops.convert_to_numpy(keras.ops.ones(1))  # the runtime of this process has started
    cfg = Config(model=ModelConfig(name="tiny", conv_filters=(8,), dense_units=(16,)),
                 train=TrainConfig(devices=64, out=str(tmp_path / "run"), offline=True, verbose=0))
    with pytest.raises(BackendError, match="fresh process"):
        train(cfg)
    assert not (tmp_path / "run").exists()  # refused before any folder was made


def test_two_devices_train_as_one(mnist, tmp_path):
    metrics = {}
    for devices in (2, 1):
        out = tmp_path / f"devices{devices}"
        command = [sys.executable, "-m", "mnistlab.cli", "train", "--devices", str(devices), *CLI_ARGS,
                   "--out", str(out)]
        done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        run = RunDir.open(out)
        metrics[devices] = m = run.read_metrics()
        assert m["devices"] == devices and m["epochs_run"] == 4
        # The saved model alone, on one device, scores what the run reported.
        reloaded = evaluate(run.load_model(), mnist.x_test[:2000], mnist.y_test[:2000])
        assert reloaded["accuracy"] == pytest.approx(m["test_accuracy"], abs=1e-9)
    assert metrics[2]["test_accuracy"] > 0.85  # it learned (one device: 92.25 % at seed 0)
    assert abs(metrics[2]["test_accuracy"] - metrics[1]["test_accuracy"]) <= SAME_ACCURACY
    assert abs(metrics[2]["test_loss"] - metrics[1]["test_loss"]) <= SAME_LOSS


# Everything else train() does, on two devices in one fresh process: augmentation (a wrapper model),
# batch norm, a killed run resumed, an ensemble, a fine-tune of two phases with replay batches (a
# PyDataset) and layer-wise rates. It prints what the test checks as one JSON line.
SCRIPT = r"""
import json, sys
from pathlib import Path
import keras, numpy as np
from mnistlab.config import Config, ModelConfig, TrainConfig
from mnistlab.data import default_cache_dir, load_mnist, preprocess_images
from mnistlab.finetune import finetune, finetune_config
from mnistlab.train import train

out = Path(sys.argv[1])
mnist = load_mnist(cache_dir=default_cache_dir(), offline=True, progress=False)
replicas = set()

class Replicas(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        replicas.add(self.model.distribute_strategy.num_replicas_in_sync)

class Killed(Exception):
    pass

class KillAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise Killed

model = ModelConfig(name="tiny", conv_filters=(8,), dense_units=(16,), batch_norm=True)
run = dict(devices=2, epochs=2, batch_size=64, train_limit=1200, test_limit=300, validation_split=0.1, verbose=0)
cfg = Config(model=model, train=TrainConfig(**run, augment=1.0, patience=2, out=str(out / "run")))
try:
    train(cfg, data=mnist, callbacks=[KillAfterFirstEpoch()])
except Killed:
    pass
resumed = train(cfg, data=mnist, callbacks=[Replicas()])
ensemble = train(Config(model=model, train=TrainConfig(**{**run, "epochs": 1}, ensemble=2, patience=0,
                                                       out=str(out / "ensemble"))), data=mnist)
x = 255 - np.roll(mnist.x_test[:600], 2, axis=2)
np.savez(out / "digits.npz", x=x[:400], y=mnist.y_test[:400], x_test=x[400:], y_test=mnist.y_test[400:600])
tune = finetune_config(out / "run", {"data": str(out / "digits.npz"), "strategy": "head-then-all", "head_epochs": 1,
                                     "replay": 0.5, "control": False},
                       {"devices": 2, "epochs": 2, "verbose": 0, "out": str(out / "finetune")})
tuned = finetune(tune, mnist=mnist)
print(json.dumps({
    "replicas": sorted(replicas),
    "resumed": {k: resumed.metrics[k] for k in ("resumed_from_epoch", "epochs_run", "devices")},
    "ensemble": {k: ensemble.metrics[k] for k in ("members", "devices")},
    "finetune": {"devices": json.loads((out / "finetune" / "metrics.json").read_text())["devices"],
                 "after": tuned.report["after"]["target_test_accuracy"]},
    # The returned model is a single-device copy: one row out for each image in.
    "rows": [len(r.model.predict_on_batch(preprocess_images(x[:7]))) for r in (resumed, ensemble)],
}))
"""


def test_two_devices_resume_augment_ensemble_and_finetune(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=ENV, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["replicas"] == [2]  # fit() really ran on two replicas
    assert facts["resumed"] == {"resumed_from_epoch": 1, "epochs_run": 2, "devices": 2}
    assert facts["ensemble"] == {"members": 2, "devices": 2}
    assert facts["finetune"]["devices"] == 2 and 0.0 <= facts["finetune"]["after"] <= 1.0
    assert facts["rows"] == [7, 7]
    for folder in ("run", "ensemble", "finetune"):
        assert RunDir.open(tmp_path / folder).load_model().predict(
            keras.ops.zeros((3, 28, 28, 1)), verbose=0).shape == (3, 10)

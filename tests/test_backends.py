"""The core commands on JAX and PyTorch, as on TensorFlow (the rest of the suite's backend):
train on a slice, evaluate, predict, fine-tune, export with parity, a served round trip, seeds
that repeat, and .keras files that score the same on every backend.

Keras reads its backend once per process, so each command runs as `mnistlab --backend NAME ...`
in a process of its own, as a user runs it.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_lessons import serve_command

from mnistlab import backends
from mnistlab.backends import BackendError
from mnistlab.cli.flags import backend_option
from mnistlab.runs import RunDir

OTHERS = ("jax", "torch")  # TensorFlow runs everything else in this suite
MNISTLAB = str(Path(sys.executable).with_name("mnistlab"))
SLICE = ["--train-limit", "3000", "--test-limit", "500", "--batch-size", "64"]


def cli(backend, *args, timeout=600):
    """`mnistlab --backend BACKEND ARGS...`: its result, checked to have succeeded."""
    done = subprocess.run([MNISTLAB, "--backend", backend, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    return done


def weights(run):
    """Every weight of a run's model.keras, read from the file itself (an HDF5 inside a zip)."""
    import keras

    return keras.saving.load_model(RunDir.open(run).model, compile=False).get_weights()


@pytest.fixture(scope="module", params=OTHERS)
def trained(request, mnist, tmp_path_factory):
    """(backend, run folder): `fast` trained on a slice on that backend."""
    out = tmp_path_factory.mktemp(request.param) / "run"
    cli(request.param, "train", "--model", "fast", *SLICE, "--seed", "7", "--out", str(out), "-q")
    return request.param, out


def test_training_names_its_backend_and_device_and_repeats_with_its_seed(trained, tmp_path):
    backend, run = trained
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["machine"]["backend"] == backend and metrics["machine"]["device"] == "CPU"
    assert set(backends.DISTRIBUTIONS[backend]) & set(metrics["versions"])
    assert metrics["test_accuracy"] > 0.85  # 3,000 images, one epoch

    again = tmp_path / "again"
    cli(backend, "train", "--model", "fast", *SLICE, "--seed", "7", "--out", str(again), "-q")
    assert json.loads((again / "metrics.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    for first, second in zip(weights(run), weights(again), strict=True):
        np.testing.assert_array_equal(first, second)


def test_evaluate_predict_and_a_served_round_trip(trained, mnist, tmp_path):
    backend, run = trained
    scores = json.loads(cli(backend, "evaluate", str(run), "--limit", "500", "--json").stdout)
    assert scores["accuracy"] == pytest.approx(json.loads((run / "metrics.json").read_text())["test_accuracy"])

    image = tmp_path / "seven.png"
    Image.fromarray(255 - mnist.x_test[0]).resize((112, 112)).save(image)  # dark ink on white, as drawn
    answer = json.loads(cli(backend, "predict", str(run), str(image), "--json").stdout)[0]
    assert answer["digit"] == mnist.y_test[0] and answer["status"] in ("ok", "unsure")

    import httpx

    with serve_command("--backend", backend, "serve", str(run), "--no-teach") as (url, _):
        response = httpx.post(f"{url}v1/predict", files={"file": ("seven.png", image.read_bytes(), "image/png")},
                              timeout=60)
        assert response.status_code == 200, response.text
        served = response.json()["predictions"][0]
        model = httpx.get(f"{url}v1/model", timeout=60).json()
    assert served["digit"] == answer["digit"] and served["confidence"] == pytest.approx(answer["confidence"], abs=1e-4)
    assert model["runtime"] == "keras"  # no model.onnx: the backend itself answered


def test_fine_tune_and_export_with_parity(trained, mnist, tmp_path):
    backend, run = trained
    target = tmp_path / "digits.npz"
    x = 255 - mnist.x_test[:400]
    np.savez(target, x=x[:300], y=mnist.y_test[:300], x_test=x[300:], y_test=mnist.y_test[300:400])
    out = tmp_path / "tuned"
    result = json.loads(cli(backend, "finetune", str(run), "--data", str(target), "--epochs", "1", "--out", str(out),
                            "--no-control", "--json", "-q").stdout)
    assert (out / "model.keras").exists()
    assert 0 < result["after"]["target_test_accuracy"] <= 1 and 0 < result["after"]["mnist_test_accuracy"] <= 1

    copy = tmp_path / "exported"
    shutil.copytree(run, copy)
    exported = json.loads(cli(backend, "export", str(copy), "--format", "onnx", "--json").stdout)
    assert exported["agreement"] >= 0.9999 and exported["max_abs_diff"] < 1e-4
    # The exported file runs on onnxruntime with no backend at all, as the Keras model did.
    from mnistlab.predict import Predictor

    on_onnx = Predictor.from_onnx(copy / "model.onnx").probabilities(mnist.x_test[:500]).argmax(1)
    assert (on_onnx == mnist.y_test[:500]).mean() == pytest.approx(exported["test_accuracy"], abs=0.02)


def test_read_report_and_tune(trained, mnist, tmp_path):
    backend, run = trained
    image = tmp_path / "number.png"
    Image.fromarray(255 - np.hstack([mnist.x_test[0], mnist.x_test[1]])).resize((224, 112)).save(image)
    reading = json.loads(cli(backend, "read", str(run), str(image), "--json").stdout)
    assert len(reading["digits"]) == 2

    page = tmp_path / "report.html"
    cli(backend, "report", str(run), "--limit", "300", "--sweep-images", "50", "--out", str(page))
    assert f"{backend} " in page.read_text(encoding="utf-8")  # the "trained with" card names it

    space = tmp_path / "space.toml"
    space.write_text("[space]\nlearning_rate = {low = 1e-3, high = 1e-2, log = true}\n")
    study = tmp_path / "study"
    cli(backend, "tune", "--study", str(study), "--space", str(space), "--trials", "1", "--model", "fast",
        "--train-limit", "1000", "--test-limit", "200", "--epochs", "1", "--validation-split", "0.2", "-q")
    assert (study / "best.toml").exists()


@pytest.mark.parametrize("backend", OTHERS)
def test_a_keras_file_from_tensorflow_scores_the_same(backend, small_run, mnist):
    scores = json.loads(cli(backend, "evaluate", str(small_run.run.path), "--limit", "1000", "--json").stdout)
    assert scores["accuracy"] == pytest.approx(small_run.metrics["test_accuracy"], abs=1 / 1000)


def test_a_keras_file_from_another_backend_scores_the_same_here(trained, mnist):
    from mnistlab.evaluate import evaluate

    _, run = trained
    import keras

    model = keras.saving.load_model(RunDir.open(run).model, compile=False)
    recorded = json.loads((run / "metrics.json").read_text())["test_accuracy"]
    assert evaluate(model, mnist.x_test[:500], mnist.y_test[:500])["accuracy"] == pytest.approx(recorded, abs=1 / 500)


def test_what_a_backend_cannot_do_is_one_line(trained, tmp_path):
    backend, run = trained
    if backend == "torch":
        done = subprocess.run([MNISTLAB, "--backend", "torch", "train", "--devices", "2", *SLICE, "--out",
                               str(tmp_path / "two")], capture_output=True, text=True, timeout=600)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert "works on the tensorflow and jax backends only" in done.stderr.splitlines()[-1]
        assert not (tmp_path / "two").exists()
        done = subprocess.run([MNISTLAB, "--backend", "torch", "export", str(run), "--format", "savedmodel", "--out",
                               str(tmp_path / "sm")], capture_output=True, text=True, timeout=600)
        assert done.returncode == 2 and "--format onnx" in done.stderr.splitlines()[-1]
    else:  # JAX splits each batch over virtual CPUs as TensorFlow does
        two = tmp_path / "two"
        printed = cli("jax", "train", "--model", "fast", *SLICE, "--devices", "2", "--out", str(two)).stdout
        assert "data-parallel over 2 devices: cpu:0, cpu:1" in printed
        assert json.loads((two / "metrics.json").read_text())["devices"] == 2


def test_backend_flag_and_environment(monkeypatch):
    assert backend_option(["--backend", "jax", "train", "-q"]) == ("jax", ["train", "-q"])
    assert backend_option(["train", "--backend=torch", "-q"]) == ("torch", ["train", "-q"])
    assert backend_option(["train", "--batch-size", "8"]) == (None, ["train", "--batch-size", "8"])
    with pytest.raises(BackendError, match="unknown Keras backend 'theano'"):
        backends.select("theano")
    monkeypatch.setattr(backends, "_USER_CHOICE", "jax")
    with pytest.raises(BackendError, match="disagrees with KERAS_BACKEND=jax"):
        backends.select("torch")
    # Once Keras runs on TensorFlow (as in this process), switching is refused, not half done.
    import keras

    assert keras.backend.backend() == "tensorflow"
    monkeypatch.setattr(backends, "_USER_CHOICE", None)
    with pytest.raises(BackendError, match="already running on tensorflow"):
        backends.select("jax")


def test_keras_config_file_is_followed_only_to_an_installed_backend(monkeypatch, tmp_path):
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')  # what a user who chose JAX wrote
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(backends, "_USER_CHOICE", None)
    monkeypatch.setattr(backends, "_INHERITED", None)
    assert backends.default() == "jax"
    # Keras writes "tensorflow" there at its first import: on a machine without it, the first installed.
    (tmp_path / "keras.json").write_text('{"backend": "tensorflow"}')
    monkeypatch.setattr(backends, "installed", lambda name: name == "torch")
    assert backends.default() == "torch"


def test_a_backend_that_is_not_installed_is_one_line(tmp_path):
    # A Python that cannot find jax: a sitecustomize hides it, as an install without the extra.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\nclass _Hide:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'jax' or name.startswith('jax.'):\n            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _Hide())\n")
    import os

    env = {**os.environ, "PYTHONPATH": str(hide)}
    env.pop("KERAS_BACKEND", None)
    done = subprocess.run([MNISTLAB, "--backend", "jax", "train", "--out", str(tmp_path / "r")], capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert 'pip install "mnistlab[jax]"' in done.stderr.splitlines()[-1]
    assert not (tmp_path / "r").exists()

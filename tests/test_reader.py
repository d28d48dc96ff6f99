"""The reader shipped in the package: its files, onnxruntime alone, and use with no run folder.

    pytest tests/test_reader.py

What the lead's training put in src/mnistlab/reader/ is checked for being package data and for
describing itself; `mnistlab predict IMAGE`, `mnistlab.predict(images)` and `read_number` use it
when no run is named, without ever importing Keras or TensorFlow.
"""

import fnmatch
import hashlib
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mnistlab
from mnistlab import runtimes
from mnistlab.calibrate import recorded_temperature
from mnistlab.cli import main
from mnistlab.config import read_config_file
from mnistlab.data import PREPROCESSING_VERSION
from mnistlab.export import MAX_PROB_DIFF, MIN_AGREEMENT
from mnistlab.predict import load_predictor
from mnistlab.runtimes import READER_DIR, ExportError, load_reader

ROOT = Path(__file__).resolve().parents[1]
READER_FILES = ("model.onnx", "metrics.json", "config.toml")

@pytest.fixture(scope="module")
def digits(mnist):
    """Twenty MNIST test digits, and their labels."""
    return mnist.x_test[:20], mnist.y_test[:20]


def test_the_reader_is_package_data():
    for name in READER_FILES:
        assert (READER_DIR / name).is_file(), f"{READER_DIR / name} is missing: the lead's trained reader goes here"
    with open(ROOT / "pyproject.toml", "rb") as f:
        patterns = tomllib.load(f)["tool"]["setuptools"]["package-data"]["mnistlab"]
    for name in READER_FILES:
        assert any(fnmatch.fnmatch(f"reader/{name}", pattern) for pattern in patterns), name
    assert READER_DIR == ROOT / "src" / "mnistlab" / "reader"


def test_the_reader_describes_itself():
    """Its temperature is the one its run fitted; its classes and preprocessing are today's."""
    model = load_reader()
    metrics = json.loads((READER_DIR / "metrics.json").read_text(encoding="utf-8"))
    assert model.temperature == pytest.approx(recorded_temperature(metrics, READER_DIR / "metrics.json"), rel=1e-6)
    assert model.metadata["classes"] == "0,1,2,3,4,5,6,7,8,9"
    assert model.metadata["preprocessing_version"] == str(PREPROCESSING_VERSION)
    assert read_config_file(READER_DIR / "config.toml")["model"]["name"]
    assert (READER_DIR / "model.onnx").stat().st_size < 20_000_000  # "a few MB at most"


def test_the_reader_is_the_file_its_metrics_describe():
    """Checksum and size as scripts/ship_reader.py recorded them, and the parity check the export
    passed against the Keras model it came from (on the 10,000 MNIST test images)."""
    shipped = json.loads((READER_DIR / "metrics.json").read_text(encoding="utf-8"))["shipped"]
    onnx = (READER_DIR / "model.onnx").read_bytes()
    assert hashlib.sha256(onnx).hexdigest() == shipped["sha256"] and len(onnx) == shipped["size_bytes"]
    parity = shipped["parity"]
    assert parity["n"] == 10_000 and parity["agreement"] >= MIN_AGREEMENT and parity["max_abs_diff"] <= MAX_PROB_DIFF


def test_the_reader_reads_mnist_test(mnist):
    """Its accuracy on all 10,000 MNIST test digits, measured here on onnxruntime, and the figure its
    export recorded, 99.55 %; issue 14 asks for 99.5 %. onnxruntime on fixed data gives the same
    figure every run."""
    from mnistlab.inference import predict_probs

    accuracy = float((predict_probs(load_reader(), mnist.x_test).argmax(1) == mnist.y_test).mean())
    shipped = json.loads((READER_DIR / "metrics.json").read_text(encoding="utf-8"))["shipped"]
    assert accuracy >= 0.995 and accuracy == pytest.approx(shipped["parity"]["test_accuracy"], abs=1e-4)


def test_predict_and_read_with_no_run(digits):
    x, y = digits
    predictor = load_predictor()
    assert predictor.runtime == "onnx" and predictor.temperature == load_reader().temperature
    answers = mnistlab.predict(list(x))
    assert sum(a.digit == label for a, label in zip(answers, y)) >= 19
    assert [a.to_dict() for a in answers] == [a.to_dict() for a in predictor.predict(list(x))]
    strip = np.concatenate([x[0], np.zeros((28, 10), np.uint8), x[1]], axis=1)  # two digits side by side
    reading = mnistlab.read_number(255 - strip)  # dark ink on white, as written
    assert len(reading.digits) == 2 and reading.status in ("ok", "unsure")


def test_cli_predicts_with_the_shipped_reader_without_keras(tmp_path, digits, cli_probe):
    x, y = digits
    image = tmp_path / "digit.png"
    Image.fromarray(255 - x[0]).save(image)
    answers, probe = cli_probe("predict", str(image), "--json")
    assert probe == {"exit": 0, "heavy": []}
    assert [a["digit"] for a in answers] == [int(y[0])] and answers[0]["path"] == str(image)
    reading, probe = cli_probe("read", str(image), "--json")
    assert probe == {"exit": 0, "heavy": []} and reading["text"] == str(y[0])


def test_a_missing_reader_is_one_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(runtimes, "READER_DIR", tmp_path / "reader")
    with pytest.raises(ExportError, match="reader shipped with mnistlab is missing.*reinstall mnistlab"):
        load_predictor()
    image = tmp_path / "blank.png"
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(image)
    assert main(["predict", str(image)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the reader shipped with mnistlab is missing")

"""Run folders: exclusive creation, atomic writes, safe model loading."""

import keras
import numpy as np
import pytest

from mnistlab.runs import RunDir, RunError, save_model_atomic


def test_create_is_exclusive(tmp_path):
    run = RunDir.create(str(tmp_path / "r"), "cnn")
    (run.path / "keep.txt").write_text("precious")
    with pytest.raises(RunError, match="already exists"):
        RunDir.create(str(tmp_path / "r"), "cnn")
    assert (run.path / "keep.txt").read_text() == "precious"


def test_default_names_never_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = RunDir.create("", "cnn"), RunDir.create("", "cnn")
    assert a.path != b.path and a.path.parent.name == "runs" and a.path.name.startswith("cnn-")


def test_model_save_and_safe_load_round_trip(tmp_path):
    inputs = keras.Input((28, 28, 1))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs)))
    run = RunDir.create(str(tmp_path / "r"), "x")
    save_model_atomic(model, run.model)
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(RunDir.open(run.path).load_model().predict(x, verbose=0), model.predict(x, verbose=0))


def test_open_errors(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        RunDir.open(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="has no model.keras"):
        RunDir.open(tmp_path / "empty")
    (tmp_path / "empty" / "model.keras").write_bytes(b"not a zip at all")
    with pytest.raises(RunError, match="cannot load model"):
        RunDir.open(tmp_path / "empty").load_model()

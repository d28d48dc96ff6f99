"""Run folders: exclusive creation, atomic writes, safe model loading."""

import json

import keras
import numpy as np
import pytest

from mnistlab.runs import RunDir, RunError, atomic_write_json, atomic_write_text, save_model_atomic


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


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"a": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": Boom()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp files left
    atomic_write_text(path, "x")
    assert path.read_text() == "x"


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

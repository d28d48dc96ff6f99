"""Run folders: exclusive creation, atomic writes, safe model loading, the lock, what a resume claims."""

import keras
import numpy as np
import pytest

from mnistlab.config import Config, TrainConfig
from mnistlab.runs import LOCK_FILE, RunDir, RunError, claim_run, save_model_atomic


def test_create_is_exclusive(tmp_path):
    run = RunDir.create(str(tmp_path / "r"), "cnn")
    (run.path / "keep.txt").write_text("precious")
    with pytest.raises(RunError, match="already exists"):
        RunDir.create(str(tmp_path / "r"), "cnn")
    assert (run.path / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("out", ["notes.txt/run", "notes.txt/a/b/run"])
def test_create_under_a_file_is_a_run_error(tmp_path, out):
    """mkdir's FileExistsError (or NotADirectoryError) named neither the file nor the fix."""
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match=r"cannot create run folder .*notes.txt is a file, not a folder\."):
        RunDir.create(str(tmp_path / out), "cnn")
    assert (tmp_path / "notes.txt").read_text() == "mine"


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
    (run.path / "plain").touch()  # the usual permissions (umask), not a temporary file's 0600
    assert run.model.stat().st_mode == (run.path / "plain").stat().st_mode
    assert sorted(p.name for p in run.path.iterdir()) == ["model.keras", "plain"]


def test_open_errors(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        RunDir.open(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="has no model.keras"):
        RunDir.open(tmp_path / "empty")
    (tmp_path / "empty" / "model.keras").write_bytes(b"not a zip at all")
    with pytest.raises(RunError, match="cannot load model"):
        RunDir.open(tmp_path / "empty").load_model()


def test_truncate_history_keeps_the_checkpoints_epochs_byte_for_byte(tmp_path):
    run = RunDir.create(str(tmp_path / "r"), "x")
    # CSVLogger's \r\n lines; the kill cut the last row short, after a row the checkpoint missed.
    run.history.write_bytes(b"epoch,loss\r\n0,1.5\r\n1,0.9\r\n2,0.")
    with pytest.raises(RunError, match="does not hold epochs 0 to 2"):
        run.truncate_history(3)
    assert run.truncate_history(2) == [{"epoch": "0", "loss": "1.5"}, {"epoch": "1", "loss": "0.9"}]
    assert run.history.read_bytes() == b"epoch,loss\r\n0,1.5\r\n1,0.9\r\n"
    assert run.truncate_history(0) == [] and run.history.read_bytes() == b"epoch,loss\r\n"
    run.history.write_bytes(b"epo")  # killed while the header was written
    assert run.truncate_history(0) == [] and not run.history.exists()


def test_lock_is_exclusive_and_released(tmp_path):
    run = RunDir.create(str(tmp_path / "r"), "x")
    with run.locked(), pytest.raises(RunError, match="in use by another training process"), run.locked():
        pass
    with run.locked():
        pass
    assert (run.path / LOCK_FILE).is_file()


def test_claim_continues_only_what_a_killed_run_left(tmp_path):
    cfg = Config(train=TrainConfig(out=str(tmp_path / "r")))
    folder = tmp_path / "r"
    folder.mkdir()
    # Killed while writing config.toml: only a lock and a temporary file, so the run starts afresh.
    (folder / LOCK_FILE).touch()
    (folder / ".config.toml.123.abcd1234.tmp").write_text("[mod")
    run = RunDir(folder)
    assert run.is_unstarted() and [p.name for p in run.temporary_files()] == [".config.toml.123.abcd1234.tmp"]
    with claim_run(cfg, "x") as (claimed, resuming):
        assert claimed == run and not resuming and run.config.is_file() and not run.temporary_files()
    (folder / ".checkpoint.keras.9.ffff0000.tmp.keras").write_bytes(b"PK")
    with claim_run(cfg, "x") as (claimed, resuming):  # its config is there now: continued
        assert resuming and not run.temporary_files()
    other = Config(train=TrainConfig(out=str(folder), seed=1))
    with pytest.raises(RunError, match=r"another config \(train.seed 0 there, 1 here\)"), claim_run(other, "x"):
        pass


def test_run_files_are_named_in_one_place(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.onnx == tmp_path / "r" / "model.onnx" and run.savedmodel == tmp_path / "r" / "savedmodel"
    assert (run.report.name, run.report_numbers.name) == ("report.html", "report.json")
    assert run.corrections.name == "corrections" and run.finetune_report.name == "finetune.txt"
    assert run.control == RunDir(tmp_path / "r" / "control")
    assert run.member(3) == RunDir(tmp_path / "r" / "members" / "seed3")

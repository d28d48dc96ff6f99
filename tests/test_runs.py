"""Run folders: exclusive creation, atomic writes, safe model loading, the lock, what a resume claims,
and runs/latest."""

import os
from pathlib import Path

import keras
import numpy as np
import pytest

from mnistlab.config import Config, TrainConfig
from mnistlab.runs import (
    LATEST,
    LOCK_FILE,
    RUNS_DIR,
    RunDir,
    RunError,
    claim_run,
    mark_latest,
    resolve_run,
    save_model_atomic,
)


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
    with pytest.raises(RunError, match="is damaged or not a Keras model file"):  # modelfile.check_keras_file
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


def _finished_run(name, mtime):
    """A run folder in ./runs that counts as finished (it has metrics.json), written at `mtime`."""
    run = RunDir(RUNS_DIR / name)
    run.path.mkdir(parents=True)
    run.metrics.write_text("{}")
    os.utime(run.metrics, (mtime, mtime))
    return run


def test_latest_is_a_relative_link_replaced_atomically(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old, new = _finished_run("cnn-1", 1_000), _finished_run("cnn-2", 2_000)
    assert mark_latest(old) and os.readlink(RUNS_DIR / LATEST) == "cnn-1"
    assert resolve_run(LATEST) == old.path
    assert mark_latest(new) and os.readlink(RUNS_DIR / LATEST) == "cnn-2"
    assert sorted(p.name for p in RUNS_DIR.iterdir()) == ["cnn-1", "cnn-2", "latest"]  # no temporary link left
    assert resolve_run(LATEST) == new.path and resolve_run("runs/latest") == new.path
    # Relative, so the runs folder can move with its link.
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    os.rename(RUNS_DIR, moved / "runs")
    monkeypatch.chdir(moved)
    assert resolve_run(LATEST) == new.path and (RUNS_DIR / LATEST / "metrics.json").is_file()


def test_latest_is_a_text_file_where_there_are_no_symlinks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = _finished_run("fast-1", 1_000)

    def no_symlinks(*args, **kwargs):
        raise OSError("symbolic links are not supported here")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    assert mark_latest(run)
    pointer = RUNS_DIR / LATEST
    assert not pointer.is_symlink() and pointer.read_text() == "fast-1\n"
    assert resolve_run(LATEST) == run.path and resolve_run(str(pointer)) == run.path


def test_only_a_run_in_runs_is_marked_and_a_folder_called_latest_is_never_replaced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    elsewhere = RunDir(tmp_path / "mine")
    elsewhere.path.mkdir()
    elsewhere.metrics.write_text("{}")
    assert not mark_latest(elsewhere) and not (RUNS_DIR / LATEST).exists()
    run = _finished_run("cnn-1", 1_000)
    (RUNS_DIR / LATEST).mkdir()  # someone's own folder of that name
    (RUNS_DIR / LATEST / "keep.txt").write_text("precious")
    assert not mark_latest(run)
    assert (RUNS_DIR / LATEST / "keep.txt").read_text() == "precious"


def test_latest_without_a_link_is_the_newest_finished_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunError, match="no finished run in runs/"):
        resolve_run(LATEST)
    _finished_run("a", 2_000)
    _finished_run("b", 1_000)
    (RUNS_DIR / "unfinished").mkdir()
    assert resolve_run(LATEST) == RUNS_DIR / "a"  # by when its metrics.json was written, not by name
    os.symlink("gone", RUNS_DIR / LATEST)  # a link to a run since removed
    assert resolve_run(LATEST) == RUNS_DIR / "a"
    assert resolve_run("runs/b") == RUNS_DIR / "b" and resolve_run("anything/else") == Path("anything/else")
    (tmp_path / LATEST).mkdir()  # a folder called latest here is itself, as any other path
    assert resolve_run(LATEST) == Path(LATEST)

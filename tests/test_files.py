"""Atomic writes keep the old file (or folder) when writing the new one fails, and leave no temp files."""

import json

import pytest

from mnistlab.files import atomic_path, atomic_write, atomic_write_json, atomic_write_text, is_temporary, temporary_path


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


def test_failure_mid_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "cache.bin"
    atomic_write(path, lambda out: out.write(b"old"))

    def write_half_then_fail(out):
        out.write(b"new but only ha")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, write_half_then_fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["cache.bin"]


def test_atomic_path_swaps_a_folder_whole_or_not_at_all(tmp_path):
    dest = tmp_path / "savedmodel"
    dest.mkdir()
    (dest / "old.pb").write_bytes(b"old")
    with atomic_path(dest) as temp:
        assert is_temporary(temp) and temp.parent == tmp_path
        temp.mkdir()
        (temp / "new.pb").write_bytes(b"new")
    assert [p.name for p in dest.iterdir()] == ["new.pb"]
    with pytest.raises(OSError, match="parity"), atomic_path(dest) as temp:
        temp.mkdir()
        (temp / "bad.pb").write_bytes(b"bad")
        raise OSError("parity")
    assert [p.name for p in dest.iterdir()] == ["new.pb"]
    assert [p.name for p in tmp_path.iterdir()] == ["savedmodel"]  # no temporary folders left


def test_temporary_names_keep_a_suffix_and_are_recognised(tmp_path):
    temp = temporary_path(tmp_path / "model.keras", ".keras")
    assert temp.name.startswith(".model.keras.") and temp.name.endswith(".tmp.keras") and is_temporary(temp)
    assert not is_temporary(tmp_path / "model.keras") and not is_temporary(tmp_path / ".lock")

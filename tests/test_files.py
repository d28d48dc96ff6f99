"""Atomic writes keep the old file when writing the new one fails, and leave no temp files."""

import json

import pytest

from mnistlab.files import atomic_write, atomic_write_json, atomic_write_text


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

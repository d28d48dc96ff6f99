"""Atomic file writes: a reader, or a crash, sees the old file or the new one, never half of one.

    mnistlab data fetch   # the MNIST cache and every run-folder file are written this way

Everything is written to a temporary name beside its destination (so the final rename stays on
one disk), flushed to disk, then renamed over the destination; a write that fails removes its
temporary file and leaves the destination as it was. atomic_path does this for any writer,
files and folders alike; atomic_write and friends are the common cases.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

# What temporary_path names end with: ".tmp", or ".tmp.keras" for Keras, which saves and loads
# only files named *.keras. A name ending so and starting with "." is a write a kill interrupted.
TEMPORARY_SUFFIXES = (".tmp", ".tmp.keras")


def temporary_path(dest: Path, suffix: str = "") -> Path:
    """A unique hidden name in dest's folder: ".<name>.<pid>.<hex>.tmp<suffix>"."""
    # Unique by name (not mkstemp's 0600 file), so what is written there gets the usual permissions.
    return dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")


def is_temporary(path: Path) -> bool:
    """Whether `path` is a name temporary_path gives (hidden, ending in one of TEMPORARY_SUFFIXES)."""
    return path.name.startswith(".") and path.name.endswith(TEMPORARY_SUFFIXES)


def remove(path: Path) -> None:
    """Delete a file or a folder tree, if it is there."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync_tree(path: Path) -> None:
    """On disk before the rename, so a power cut cannot leave the new name with empty contents."""
    for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if file.is_file():
            with open(file, "rb") as f:
                os.fsync(f.fileno())


def _replace(temp: Path, dest: Path) -> None:
    """Move temp over dest; a folder over a folder is swapped with two renames, the old one removed after."""
    if not temp.is_dir() or not dest.exists():
        os.replace(temp, dest)
        return
    old = temporary_path(dest, ".old")
    os.replace(dest, old)
    os.replace(temp, dest)
    remove(old)


@contextlib.contextmanager
def atomic_path(dest: Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside `dest` to write a file or a folder to; renamed over `dest` when the
    block ends without an exception, after its files are fsynced.

    Args:
        suffix: what the temporary name must end with, for writers that insist (".keras").

    Raises:
        Whatever the block raises: the temporary file or folder is removed then, and `dest` is
        left as it was.
    """
    dest = Path(dest)
    temp = temporary_path(dest, suffix)
    try:
        yield temp
        _fsync_tree(temp)
        _replace(temp, dest)
    finally:
        if temp.exists():
            remove(temp)


def atomic_write(dest: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call write(stream) on a temporary file beside `dest`, fsync it, then rename it over `dest`."""
    with atomic_path(dest) as temp, open(temp, "xb") as out:
        write(out)


def atomic_write_text(dest: Path, text: str) -> None:
    """Write UTF-8 text to `dest` atomically."""
    data = text.encode("utf-8")
    atomic_write(dest, lambda out: out.write(data))


def atomic_write_json(dest: Path, data: Any) -> None:
    """Write JSON to `dest` atomically, indented for people, keys in insertion order."""
    atomic_write_text(dest, json.dumps(data, indent=2) + "\n")

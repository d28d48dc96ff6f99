"""Atomic file writes: a reader, or a crash, sees the old file or the new one, never half of one.

    mnistlab data fetch   # the MNIST cache and every run-folder file are written this way
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(dest: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call write(stream) on a temporary file beside `dest`, fsync it, then rename it over `dest`."""
    dest = Path(dest)
    # A unique name opened with "xb" (not mkstemp) so the file gets the usual umask permissions.
    temp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "xb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, dest)
    finally:
        temp.unlink(missing_ok=True)


def atomic_write_text(dest: Path, text: str) -> None:
    """Write UTF-8 text to `dest` atomically."""
    data = text.encode("utf-8")
    atomic_write(dest, lambda out: out.write(data))


def atomic_write_json(dest: Path, data: Any) -> None:
    """Write JSON to `dest` atomically, indented for people, keys in insertion order."""
    atomic_write_text(dest, json.dumps(data, indent=2) + "\n")

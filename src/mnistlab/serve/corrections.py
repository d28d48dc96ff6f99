"""Users' corrections as a labelled image folder: `<dir>/<label>/<name>.png` and `labels.csv`.

    mnistlab serve runs/<name>   # the page's "that's wrong" button stores into runs/<name>/corrections/

The layout is a folder of images with sub-folders 0..9, which fine-tuning reads as a data set;
labels.csv (file,label) lists the same files in the order they came and is only appended to.
Names are made here (time and a random id), never taken from the client. Each image is written
atomically and its row after it, so a crash leaves at most an image without its row.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import filelock

from mnistlab.data import NUM_CLASSES
from mnistlab.data.folders import LABELS_FILE
from mnistlab.errors import MnistlabError
from mnistlab.files import atomic_write

_LOCK_FILE = f".{LABELS_FILE}.lock"  # held while counting, writing and appending, across processes


class StoreFull(MnistlabError):
    """The corrections folder holds as many images or bytes as it may."""


class CorrectionStore:
    """A corrections folder with a cap on its images and bytes."""

    def __init__(self, root: str | os.PathLike, max_files: int, max_bytes: int):
        self.root = Path(root)
        self.max_files = max_files
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # filelock's locks are per process, not per thread

    def add(self, png: bytes, label: int) -> str:
        """Store one PNG under its label.

        Returns:
            Its path relative to the folder, e.g. "3/20260101-120000-1f2e3d4c5b6a.png".

        Raises:
            StoreFull: one more image would pass max_files or max_bytes (nothing is written).
        """
        if not 0 <= label < NUM_CLASSES:
            raise ValueError(f"label must be 0..{NUM_CLASSES - 1}, not {label}")
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock, filelock.FileLock(self.root / _LOCK_FILE):
            files, size = self.usage()
            if files >= self.max_files:
                raise StoreFull(
                    f"the corrections folder holds {files:,} images, the most allowed; "
                    "move them away (after fine-tuning, say) to store more."
                )
            if size + len(png) > self.max_bytes:
                raise StoreFull(
                    f"the corrections folder holds {size:,} bytes of images and may hold "
                    f"{self.max_bytes:,}; move them away (after fine-tuning, say) to store more."
                )
            name = f"{label}/{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}.png"
            (self.root / str(label)).mkdir(exist_ok=True)
            atomic_write(self.root / name, lambda out: out.write(png))
            self._append_row(name, label)
        return name

    def usage(self) -> tuple[int, int]:
        """(images, bytes) stored now; atomic_write's hidden temporary files are not counted."""
        files = size = 0
        for label in range(NUM_CLASSES):
            try:
                entries = os.scandir(self.root / str(label))
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    if entry.name.endswith(".png") and not entry.name.startswith(".") and entry.is_file():
                        files += 1
                        size += entry.stat().st_size
        return files, size

    def _append_row(self, name: str, label: int) -> None:
        """One `file,label` row in a single write, fsynced; a header first in a new file."""
        fd = os.open(self.root / LABELS_FILE, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            line = f"{name},{label}\n"
            if end == 0:
                line = "file,label\n" + line
            elif os.pread(fd, 1, end - 1) != b"\n":  # a row cut short by a crash stays on its own line
                line = "\n" + line
            os.write(fd, line.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)

"""Users' corrections as a labelled image folder: `<dir>/<label>/<name>.png` and `labels.csv`.

    mnistlab serve runs/<name>   # the page's "that's wrong" button stores into runs/<name>/corrections/

The layout is a folder of images with sub-folders 0..9, which fine-tuning reads as a data set;
labels.csv (file,label) lists the same files in the order they came. Names are made here (time
and a random id), never taken from the client. Each image is written atomically and its row
appended after it, so a crash leaves at most an image without its row.

Images may be moved away (after fine-tuning on them, say, or when the folder is full): the rows
of images no longer there are dropped from labels.csv when the store is opened and before each
write (`prune`, an atomic rewrite that keeps every other line as it was), so the table and the
folders agree again and fine-tuning can read them.
"""

from __future__ import annotations

import csv
import io
import logging
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

logger = logging.getLogger(__name__)


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
            self._prune()
            files, size = self.usage()
            make_room = ("fine-tune on them, then move images out of its sub-folders 0-9 to make room "
                         "(the server then drops their rows from labels.csv)")
            if files >= self.max_files:
                raise StoreFull(f"the corrections folder holds {files:,} images, the most allowed; {make_room}.")
            if size + len(png) > self.max_bytes:
                raise StoreFull(
                    f"the corrections folder holds {size:,} bytes of images and may hold {self.max_bytes:,}; "
                    f"{make_room}."
                )
            name = f"{label}/{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}.png"
            (self.root / str(label)).mkdir(exist_ok=True)
            atomic_write(self.root / name, lambda out: out.write(png))
            self._append_row(name, label)
        return name

    def usage(self) -> tuple[int, int]:
        """(images, bytes) stored now; atomic_write's hidden temporary files are not counted."""
        sizes = [size for label in range(NUM_CLASSES) for size in self._sizes(label)]
        return len(sizes), sum(sizes)

    def counts(self) -> list[int]:
        """The images stored now under each label 0-9."""
        return [len(self._sizes(label)) for label in range(NUM_CLASSES)]

    def _sizes(self, label: int) -> list[int]:
        """The byte sizes of the PNGs under one label (hidden temporary files left out)."""
        try:
            entries = os.scandir(self.root / str(label))
        except (FileNotFoundError, NotADirectoryError):
            return []
        with entries:
            return [entry.stat().st_size for entry in entries
                    if entry.name.endswith(".png") and not entry.name.startswith(".") and entry.is_file()]

    def prune(self) -> list[str]:
        """Drop the rows of labels.csv whose image is no longer in the folder.

        Returns:
            The files those rows named, in their order; [] when every image is there.

        Raises:
            OSError: the table or its lock cannot be read or written.
        """
        if not (self.root / LABELS_FILE).is_file():
            return []
        with self._lock, filelock.FileLock(self.root / _LOCK_FILE):
            return self._prune()

    def _prune(self) -> list[str]:
        """prune, with the locks held: the table is rewritten atomically, and only when a row goes."""
        table = self.root / LABELS_FILE
        if not table.is_file():
            return []
        # Line ends, and bytes that are not UTF-8 (surrogateescape), are written back as they were.
        lines = list(io.StringIO(table.read_bytes().decode("utf-8", errors="surrogateescape"), newline=""))
        kept, gone = [], []
        for number, line in enumerate(lines):
            try:
                row = next(csv.reader([line.lstrip("\ufeff")]), [])
            except csv.Error:
                row = None
            name = row[0].strip() if row else ""
            if row is None or (number == 0 and not (len(row) > 1 and row[1].strip().isdigit())):
                kept.append(line)  # the header, or a line this cannot read: not ours to drop
            elif name and (self.root / name).is_file():
                kept.append(line if line.endswith(("\n", "\r")) else line + "\n")
            elif name:  # a moved image's row, or one cut short by a crash
                gone.append(name)
        if len(kept) < len(lines):
            text = "".join(kept).encode("utf-8", errors="surrogateescape")
            atomic_write(table, lambda out: out.write(text))
        return gone

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


def open_store(root: str | os.PathLike, max_files: int, max_bytes: int) -> CorrectionStore:
    """A CorrectionStore, its labels.csv pruned of the rows of images moved away; what was dropped,
    or could not be checked, goes to the log as a warning (the server's start-up output)."""
    store = CorrectionStore(root, max_files, max_bytes)
    try:
        gone = store.prune()
    except OSError as e:  # a folder this process may not write: the first correction will say so
        logger.warning("%s: labels.csv could not be checked (%s)", root, e.strerror or e)
    else:
        if gone:
            shown = ", ".join(gone[:3]) + (", ..." if len(gone) > 3 else "")
            logger.warning("%s: dropped the labels.csv rows of %d images no longer there (%s)", root, len(gone), shown)
    return store

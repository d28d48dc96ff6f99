"""The USPS zip-code digits (16x16 scans; 7,291 train, 2,007 test) as a source for fine-tuning:
downloaded once into the cache, verified by SHA-256, parsed into grey levels.

    mnistlab finetune RUN --data usps    # fetches <cache_dir>/usps/ on first use

`fetch_usps` fills a folder with the two published files; `read_usps` verifies and parses a
folder holding them. `digitsets.load_digit_set` gives the digits MNIST's normalisation.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import sys
import tempfile
from pathlib import Path

import numpy as np

from mnistlab.data.download import download, file_digest
from mnistlab.data.formats import READ_ERRORS, describe_error
from mnistlab.data.mnist import NUM_CLASSES, DataError
from mnistlab.files import atomic_write

# The copy of USPS that The Elements of Statistical Learning distributes (Hastie, Tibshirani &
# Friedman), pinned to one commit of a public repository. SHA-256 of each file as published,
# from /work/shared/data/usps/SOURCE.md. No licence is stated: it is fetched for the user's own
# experiments and never redistributed.
_USPS_BASE_URL = (
    "https://raw.githubusercontent.com/dgkim5360/the-elements-of-statistical-learning-notebooks/"
    "2c13a4818379451bcce802bcd7917f4878e12977/data/zipcode/"
)
USPS_TRAIN, USPS_TEST = "zip.train.gz", "zip.test.gz"
_USPS_SHA256 = {
    USPS_TRAIN: "66ebf231ab51f2cf6ac1a892d0f98ccffee1079d7a5db638c1f11f366046ca16",
    USPS_TEST: "8dacc3c6e136af6c3488de9e5113a7daf140c8c2f1f0b61c54ee02f03f1a962f",
}
USPS_DIR = "usps"  # under the cache directory, beside mnist.npz
# Each line of a USPS file: the label (written as a float), then a 16x16 image row by row in
# [-1, 1], ink +1 and paper -1.
_USPS_SIDE = 16
_USPS_VALUES = 1 + _USPS_SIDE * _USPS_SIDE


def fetch_usps(directory: Path, offline: bool, progress: bool) -> Path:
    """Make sure both USPS files in directory are the published ones, downloading what is not.

    Each file is downloaded into a scratch folder beside its place and verified there; only then
    is it written into place (atomic_write), so a crash or a concurrent fetch leaves the old file
    or a verified one, never a part.

    Raises:
        DataError: a file is missing or corrupt and offline is set, or the download fails, is not
            the published file, or cannot be written.
    """
    for name, expected in _USPS_SHA256.items():
        _fetch_usps_file(directory, name, expected, offline, progress)
    return directory


def _fetch_usps_file(directory: Path, name: str, expected: str, offline: bool, progress: bool) -> None:
    path, url = directory / name, _USPS_BASE_URL + name
    try:
        if file_digest(path, "sha256") == expected:
            return
        state = "corrupt (its sha256 differs from the published file's)"
    except FileNotFoundError:
        state = "missing"
    except OSError as exc:  # a directory in its place, no permission
        state = f"unreadable ({exc.strerror or exc})"
    if offline:
        raise DataError(
            f"USPS file {path} is {state}, and --offline forbids downloading it from {url}."
        )
    if state != "missing":
        print(f"warning: USPS file {path} is {state}; downloading it again.", file=sys.stderr)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".download-") as work:
            fetched = Path(work) / name
            try:
                download(url, fetched, progress)
            except DataError as exc:
                raise DataError(f"Could not download USPS {name} from {url} ({exc}).") from exc
            if file_digest(fetched, "sha256") != expected:
                raise DataError(
                    f"USPS {name} downloaded from {url} is not the published file (its "
                    "sha256 differs); it was not kept."
                )
            data = fetched.read_bytes()
            atomic_write(path, lambda out: out.write(data))
    except OSError as exc:
        raise DataError(f"Could not write USPS into {directory} ({exc}).") from exc


def read_usps(
    directory: Path,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], str]:
    """Read and verify USPS's two files.

    Returns:
        ((grey, labels) to train on, (grey, labels) of the source's own test split, a
        description); grey is (N, 16, 16) float32 in [0, 1], ink light on paper 0.

    Raises:
        DataError: a file is missing, unreadable, not the published one, or does not parse.
    """
    contents = {}
    for name, expected in _USPS_SHA256.items():  # both verified before either is parsed (1 s)
        path = directory / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataError(
                f"USPS folder {directory} has no {name}: both {USPS_TRAIN} and {USPS_TEST} "
                "are needed."
            ) from None
        except OSError as exc:
            raise DataError(f"USPS file {path} could not be read ({exc.strerror or exc}).") from exc
        if hashlib.sha256(data).hexdigest() != expected:
            raise DataError(
                f"USPS file {path} is not the published one (its sha256 differs); replace it "
                f"with {_USPS_BASE_URL + name}."
            )
        contents[name] = data
    train, test = (_parse_usps(contents[name], directory / name) for name in _USPS_SHA256)
    return train, test, f"USPS {directory} ({USPS_TRAIN}, {USPS_TEST})"


def _parse_usps(data: bytes, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse one gzipped USPS text file (see _USPS_VALUES) into grey levels and labels."""
    try:
        # 0.3 s for the 7,291 lines of zip.train.gz; the checksum has vouched for the format.
        table = np.loadtxt(io.BytesIO(gzip.decompress(data)), dtype=np.float32, ndmin=2)
    except READ_ERRORS as exc:
        raise DataError(f"USPS file {path} could not be parsed ({describe_error(exc)}).") from exc
    labels = table[:, 0]
    if table.shape[1] != _USPS_VALUES or not np.isin(labels, np.arange(NUM_CLASSES)).all():
        raise DataError(
            f"USPS file {path} is not lines of a label 0-9 and {_USPS_VALUES - 1} pixels."
        )
    # Paper -1 becomes 0 exactly, so normalise_digit's box holds the ink and nothing else.
    grey = np.clip((table[:, 1:] + 1) / 2, 0, 1).reshape(-1, _USPS_SIDE, _USPS_SIDE)
    return grey, labels.astype(np.uint8)

"""A Keras model file checked before Keras reads it: a few megabytes of zip can unpack to gigabytes.

    python -c "from mnistlab.modelfile import check_keras_file; check_keras_file('runs/<name>/model.keras')"

Below everything that loads models (runs.RunDir.load_model, and through it runtimes, evaluate,
export and fine-tuning), so none of them can skip it.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path
from typing import Any

from mnistlab.errors import MnistlabError

# What a model.keras may unpack to, judged from its zip directory and its HDF5 headers before
# Keras reads it: Keras reads model.weights.h5 into memory whole, and its own guards start at
# 4 GiB, so a 2 MB file could cost gigabytes. `fast` (422,826 parameters) saves 5.1 MB of weights
# with their optimizer state and a 12 kB config.json; `best` has twice the parameters. 256 MiB
# holds 22 million parameters with their Adam state, 27 times `best`.
MAX_MODEL_BYTES = 256 << 20  # all members together, and all weights the HDF5 file declares
MAX_MODEL_JSON_BYTES = 16 << 20  # config.json, metadata.json: read and parsed whole by Keras
_KERAS_JSON = ("config.json", "metadata.json")
_KERAS_WEIGHTS = "model.weights.h5"


class ModelFileError(MnistlabError):
    """A model file that is damaged, not a Keras model, or would unpack to too much."""


def check_keras_file(path: Path) -> None:
    """Refuse a model.keras that is damaged or would unpack to too much, before Keras reads it.

    Sizes come from the zip's directory (which bounds what each member unpacks to) and the
    weights' HDF5 headers; the members are read (at most MAX_MODEL_BYTES), so a damaged one
    fails its CRC here.

    Raises:
        ModelFileError: not a zip, a damaged member, no config.json, a JSON member over
            MAX_MODEL_JSON_BYTES, or members or declared weights over MAX_MODEL_BYTES.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info.file_size for info in archive.infolist()}
            if "config.json" not in members:
                raise ModelFileError(f"model {path} is not a Keras model file: it holds no config.json.")
            too_big = [f"{name} unpacks to {members[name]:,} bytes" for name in _KERAS_JSON
                       if members.get(name, 0) > MAX_MODEL_JSON_BYTES]
            if too_big:
                raise ModelFileError(f"model {path} is refused: {too_big[0]}, over the limit of "
                               f"{MAX_MODEL_JSON_BYTES:,}.")
            if sum(members.values()) > MAX_MODEL_BYTES:
                raise ModelFileError(f"model {path} is refused: its members unpack to {sum(members.values()):,} "
                               f"bytes, over the limit of {MAX_MODEL_BYTES:,}.")
            for name in members:  # each member's CRC is checked as its end is read
                with archive.open(name) as member:
                    data = member.read()
                if name == _KERAS_WEIGHTS:
                    _check_weights(path, data)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:  # ValueError: a bad zip64 field
        reason = " ".join(str(e).split()).rstrip(".") or type(e).__name__
        raise ModelFileError(f"model {path} is damaged or not a Keras model file ({reason}).") from None


def _check_weights(path: Path, data: bytes) -> None:
    """Refuse weights whose HDF5 datasets declare more than MAX_MODEL_BYTES: a compressed dataset
    of a few kB can declare gigabytes, which Keras would allocate when it reads it."""
    import h5py  # installed with Keras; only runs without model.onnx get here

    declared = []

    def add(_name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            declared.append((item.size or 0) * item.dtype.itemsize)

    try:
        with h5py.File(io.BytesIO(data), "r") as weights:
            weights.visititems(add)
    except (OSError, ValueError, KeyError) as e:  # h5py's reports of a file that is not HDF5
        reason = " ".join(str(e).split()).rstrip(".") or type(e).__name__
        raise ModelFileError(
            f"model {path} is damaged: its {_KERAS_WEIGHTS} is not readable HDF5 ({reason})."
        ) from None
    if sum(declared) > MAX_MODEL_BYTES:
        raise ModelFileError(f"model {path} is refused: its weights declare {sum(declared):,} bytes, over the limit "
                       f"of {MAX_MODEL_BYTES:,}.")

"""Run folders: where a run's model, config, history and metrics live, written atomically.

    mnistlab evaluate runs/cnn-20261130-101500   # reads a folder this module wrote

A run folder is claimed with an exclusive mkdir, so two runs never share one and an existing
folder is never overwritten. Every file is written to a temporary name in the same folder and
renamed into place, so a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mnistlab.errors import MnistlabError

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.toml"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.keras"  # the last completed epoch, replaced every epoch


class RunError(MnistlabError):
    """A run folder that cannot be created or read."""


def save_model_atomic(model: Any, path: Path) -> None:
    """model.save() to a temporary `.keras` file, then rename it over `path`."""
    # Keras insists on the .keras suffix, so the temporary name keeps it.
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".keras", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of Python and of the libraries that decide a run's numbers (installed ones only)."""
    versions = {"python": platform.python_version()}
    for dist in ("mnistlab", "keras", "tensorflow", "tensorflow-cpu", "numpy", *extra):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """The hardware a figure was measured on."""
    return {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform()}


@dataclass(frozen=True)
class RunDir:
    """A run folder and the names of the files in it."""

    path: Path

    @property
    def model(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def history(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @classmethod
    def create(cls, out: str, name: str) -> RunDir:
        """Claim a new, empty run folder: `out` if given, else runs/<name>-<timestamp>.

        Raises:
            RunError: the folder exists already (nothing in it is touched).
        """
        if out:
            path = Path(out)
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = Path("runs") / f"{name}-{stamp}"
            # Two runs started in the same second get -2, -3, ... rather than failing.
            n = 2
            while path.exists():
                path = Path("runs") / f"{name}-{stamp}-{n}"
                n += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            raise RunError(
                f"run folder {path} already exists; choose another --out or remove it first."
            ) from None
        except OSError as e:
            raise RunError(f"cannot create run folder {path}: {e.strerror}.") from None
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run folder holding a saved model.

        Raises:
            RunError: no such folder or no model in it.
        """
        run = cls(Path(path))
        if not run.path.is_dir():
            raise RunError(f"run folder {run.path} does not exist.")
        if not run.model.is_file():
            raise RunError(f"run folder {run.path} has no {MODEL_FILE}; did its training finish?")
        return run

    def load_model(self) -> Any:
        """Load the run's model with Keras safe mode (no arbitrary code from the file).

        Raises:
            RunError: the file is not a Keras model this version can read.
        """
        import keras

        try:
            return keras.saving.load_model(self.model, compile=False, safe_mode=True)
        except Exception as e:  # Keras raises many types for a foreign or damaged zip.
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RunError(f"cannot load model {self.model}: {reason}") from None

    def read_metrics(self) -> dict[str, Any]:
        """metrics.json as a dict ({} when the run has none yet)."""
        try:
            return json.loads(self.metrics.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise RunError(f"cannot read {self.metrics}: {e}.") from None


def command_line() -> str:
    """The command that started this process, for the record in metrics.json."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])

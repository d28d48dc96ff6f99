"""Run folders: where a run's model, config, history and metrics live, written atomically.

    mnistlab evaluate runs/cnn-20261130-101500   # reads a folder this module wrote

A run folder is claimed with an exclusive mkdir, so two runs never share one and an existing
folder is never overwritten; the process training into it holds its lock file, so a killed run
can be continued in place (see claim_run) but never by two processes at once. Every file
is written to a temporary name in the same folder and renamed into place, so a crash leaves
either the old file or the new one, never half of one; only history.csv is appended to, and a
resumed run cuts it back to the epochs its checkpoint holds.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import filelock

from mnistlab import backends
from mnistlab.backends import DISTRIBUTIONS
from mnistlab.config import Config, config_from_dict, read_config_file, write_config
from mnistlab.errors import MnistlabError
from mnistlab.files import atomic_path, atomic_write, is_temporary, temporary_path
from mnistlab.modelfile import ModelFileError, check_keras_file

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.toml"
HISTORY_FILE = "history.csv"
BATCHES_FILE = "batches.csv"  # training loss and accuracy every few batches (mnistlab.train.batches)
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.keras"  # the last completed epoch, replaced every epoch
BEST_WEIGHTS_FILE = "best_weights.npz"  # with early stopping: the best epoch's weights so far
# Locked (flock) by the process training into the folder. The kernel drops the lock when that
# process dies, even by kill -9, so a leftover file never blocks a resume; it is left in place,
# as deleting a lock file races with a process that has just opened it.
LOCK_FILE = ".lock"
MEMBERS_DIR = "members"  # an ensemble's members, one run folder each: members/seed<N>
# Written later, by the commands that use a finished run.
ONNX_FILE = "model.onnx"  # mnistlab export (the default format); the server prefers it
SAVEDMODEL_DIR = "savedmodel"  # mnistlab export --format savedmodel
REPORT_FILE = "report.html"  # mnistlab report, with its numbers in REPORT_NUMBERS_FILE
REPORT_NUMBERS_FILE = "report.json"
CORRECTIONS_DIR = "corrections"  # mnistlab serve: the labels people corrected, for fine-tuning
FINETUNE_REPORT_FILE = "finetune.txt"  # mnistlab finetune: the fine-tuned run against its parent
CONTROL_DIR = "control"  # mnistlab finetune --control: the from-scratch run, inside the fine-tune's
RUNS_DIR = Path("runs")  # where a run goes without --out, in the working folder
LATEST = "latest"  # RUNS_DIR/latest names the newest finished run there; any command's RUN may be "latest"


class RunError(MnistlabError):
    """A run folder that cannot be created or read."""


def save_model_atomic(model: Any, path: Path) -> None:
    """model.save() to a temporary `.keras` file, fsync it, then rename it over `path`."""
    with atomic_path(path, suffix=".keras") as temp:  # Keras saves only to names ending .keras
        model.save(temp)


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of Python and of the libraries that decide a run's numbers (installed ones only)."""
    versions = {"python": platform.python_version()}
    for dist in ("mnistlab", "keras", *DISTRIBUTIONS.get(backends.current(), ()), "numpy", *extra):
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


def is_run_folder(path: str | os.PathLike) -> bool:
    """Is this a run folder (what `mnistlab train` writes), not an image or a folder of images?"""
    folder = Path(path)
    return folder.is_dir() and any((folder / name).is_file() for name in (CONFIG_FILE, MODEL_FILE, ONNX_FILE))


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
    def batches(self) -> Path:
        return self.path / BATCHES_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def best_weights(self) -> Path:
        return self.path / BEST_WEIGHTS_FILE

    @property
    def members(self) -> Path:
        return self.path / MEMBERS_DIR

    def member(self, seed: int) -> RunDir:
        """The run folder of an ensemble's member trained with `seed`."""
        return RunDir(self.members / f"seed{seed}")

    @property
    def onnx(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def savedmodel(self) -> Path:
        return self.path / SAVEDMODEL_DIR

    @property
    def report(self) -> Path:
        return self.path / REPORT_FILE

    @property
    def report_numbers(self) -> Path:
        return self.path / REPORT_NUMBERS_FILE

    @property
    def corrections(self) -> Path:
        return self.path / CORRECTIONS_DIR

    @property
    def finetune_report(self) -> Path:
        return self.path / FINETUNE_REPORT_FILE

    @property
    def control(self) -> RunDir:
        """The from-scratch control run that `mnistlab finetune --control` trains beside a fine-tune."""
        return RunDir(self.path / CONTROL_DIR)

    @property
    def finished(self) -> bool:
        """Whether the run completed: metrics.json is written last, after model.keras."""
        return self.metrics.is_file()

    def temporary_files(self) -> list[Path]:
        """Half-written files that an interrupted atomic write left behind (never the file it was
        replacing, which is whole)."""
        return [p for p in self.path.iterdir() if is_temporary(p)]

    def is_unstarted(self) -> bool:
        """Whether the folder holds nothing of a run: empty, or only a lock and temporary files
        (a run killed before its config.toml was in place)."""
        leftovers = {LOCK_FILE, *(p.name for p in self.temporary_files())}
        return all(p.name in leftovers for p in self.path.iterdir())

    @contextlib.contextmanager
    def locked(self) -> Iterator[RunDir]:
        """Hold the folder's lock file while a process trains into it.

        Raises:
            RunError: another process holds it (it is training into this folder now).
        """
        lock = filelock.FileLock(self.path / LOCK_FILE)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise RunError(
                f"run folder {self.path} is in use by another training process; "
                "wait for it to end or choose another --out."
            ) from None
        try:
            yield self
        finally:
            lock.release()

    def truncate_history(self, epochs: int) -> list[dict[str, str]]:
        """Cut history.csv back to its first `epochs` rows, the epochs a checkpoint holds: a run
        killed after CSVLogger wrote a row but before the checkpoint, or halfway through a row,
        left more. The file is rewritten atomically, byte for byte as it was up to there.

        Returns:
            The rows kept, as csv.DictReader reads them.

        Raises:
            RunError: the file holds fewer complete rows than `epochs`, or rows out of order.
        """
        try:
            data = self.history.read_bytes()
        except FileNotFoundError:
            data = b""
        # CSVLogger ends every line with \r\n: a line without its \n was cut short.
        lines = [line for line in data.splitlines(keepends=True) if line.endswith(b"\n")]
        if not lines:  # not even a header: the first epoch never ended
            if epochs:
                raise RunError(f"{self.history} is missing or empty, but the checkpoint holds {epochs} epochs.")
            self.history.unlink(missing_ok=True)
            return []
        kept = lines[: 1 + epochs]
        rows = list(csv.DictReader(line.decode("utf-8") for line in kept))
        if [r.get("epoch") for r in rows] != [str(e) for e in range(epochs)]:
            raise RunError(f"{self.history} does not hold epochs 0 to {epochs - 1}, which the checkpoint holds.")
        if len(kept) < len(lines) or len(data) != sum(map(len, lines)):
            atomic_write(self.history, lambda out: out.write(b"".join(kept)))
        return rows

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
            path = RUNS_DIR / f"{name}-{stamp}"
            # Two runs started in the same second get -2, -3, ... rather than failing.
            n = 2
            while path.exists():
                path = RUNS_DIR / f"{name}-{stamp}-{n}"
                n += 1
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # FileExistsError, NotADirectoryError: a file where a folder must go
            raise RunError(f"cannot create run folder {path}: {why_no_folder(path.parent, e)}.") from None
        try:
            path.mkdir()
        except FileExistsError:
            raise RunError(
                f"run folder {path} already exists; choose another --out or remove it first."
            ) from None
        except OSError as e:
            raise RunError(f"cannot create run folder {path}: {why_no_folder(path.parent, e)}.") from None
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
            RunError: the file is damaged, would unpack to too much (modelfile.check_keras_file),
                or is not a Keras model this version can read.
        """
        try:
            check_keras_file(self.model)
        except ModelFileError as e:
            raise RunError(str(e)) from None
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


def mark_latest(run: RunDir) -> bool:
    """Point RUNS_DIR/latest at `run`, a finished run in RUNS_DIR: a relative symlink made under a
    temporary name and renamed over the old one (readers see the old link or the new), or where
    there are no symlinks, a text file holding the folder's name. Returns whether it names `run`
    now: not for a run outside RUNS_DIR, nor where a folder called latest is in the way (kept).
    """
    pointer = RUNS_DIR / LATEST
    if (run.path.name == LATEST or run.path.resolve().parent != RUNS_DIR.resolve()
            or (pointer.is_dir() and not pointer.is_symlink())):
        return False
    temp = temporary_path(pointer)
    try:
        try:
            os.symlink(run.path.name, temp, target_is_directory=True)
        except (OSError, NotImplementedError):  # no symlinks here (Windows without the privilege)
            temp.write_text(run.path.name + "\n", encoding="utf-8")
        os.replace(temp, pointer)
    except OSError:
        temp.unlink(missing_ok=True)
        return False
    return True


def latest_run(root: Path = RUNS_DIR) -> Path:
    """The newest finished run in `root`: the one root/latest names, else (no latest, or one naming
    a run since removed) the one whose metrics.json was written last. RunError if there is none."""
    pointer, named = root / LATEST, None
    try:
        if pointer.is_symlink():
            named = os.readlink(pointer)
        elif pointer.is_file():
            named = pointer.read_text(encoding="utf-8").strip()  # mark_latest's file, without symlinks
    except (OSError, ValueError):
        pass
    if named and RunDir(root / named).finished:
        return root / named
    finished = [p for p in root.iterdir() if p.name != LATEST and RunDir(p).finished] if root.is_dir() else []
    if not finished:
        raise RunError(f"no finished run in {root}/ for {LATEST!r} to name; train one with `mnistlab train`, "
                       "or give a run folder.")
    return max(finished, key=lambda p: RunDir(p).metrics.stat().st_mtime)


def resolve_run(arg: str | os.PathLike) -> Path:
    """A command's RUN as a folder: `latest` (where nothing here has that name) is the newest
    finished run in RUNS_DIR (latest_run), a latest link or file that mark_latest wrote is followed,
    and anything else is the path itself."""
    path = Path(arg)
    if path.name != LATEST:
        return path
    if path.is_symlink() or path.is_file():
        return latest_run(path.parent)
    return latest_run() if str(arg) == LATEST and not path.exists() else path


def why_no_folder(folder: Path, error: OSError) -> str:
    """Why mkdir could not make `folder`: a file standing where it or a folder above it must be
    (mkdir says only "File exists" or "Not a directory"), else the system's reason."""
    for path in (folder, *folder.parents):
        if path.exists() and not path.is_dir():
            return f"{path} is a file, not a folder"
    return error.strerror or str(error)


def command_line() -> str:
    """The command that started this process, for the record in metrics.json."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


# Fields a resumed run may change: how much it prints, whether it may download, and the --out
# that named the folder (the folder is the run, wherever it was moved or however it was named).
_RESUME_MAY_CHANGE = ("verbose", "offline", "out")


def _comparable(cfg: Config) -> dict[str, dict[str, Any]]:
    tables = cfg.to_dict()
    tables["train"] = {k: v for k, v in tables["train"].items() if k not in _RESUME_MAY_CHANGE}
    return tables


def config_difference(cfg: Config, run: RunDir) -> str:
    """How `cfg` differs from the config.toml in `run`, up to verbose, offline and out: "" when
    not at all, else like "train.epochs 4 there, 5 here"."""
    try:
        saved = _comparable(config_from_dict(read_config_file(run.config)))
    except MnistlabError as e:
        return f"its config.toml cannot be used: {e}"
    ours = _comparable(cfg)
    diffs = []
    for table in sorted(set(saved) | set(ours)):
        there, here = saved.get(table, {}), ours.get(table, {})
        for key in sorted(set(there) | set(here)):
            if there.get(key, _ABSENT) != here.get(key, _ABSENT):
                diffs.append(f"{table}.{key} {there.get(key, _ABSENT)!r} there, {here.get(key, _ABSENT)!r} here")
    return "; ".join(diffs)


class _Absent:
    def __repr__(self) -> str:
        return "absent"


_ABSENT = _Absent()


def _check_claim(cfg: Config, run: RunDir, resume: bool, not_resumable: str) -> None:
    """Refuse, touching nothing, a folder holding anything but an unfinished run of `cfg`."""
    if not run.path.is_dir():
        raise RunError(f"run folder {run.path} exists and is not a folder.")
    if run.is_unstarted():
        if resume:
            raise RunError(f"nothing to resume in {run.path}: no run was started there.")
        return
    if not run.config.is_file():
        raise RunError(f"run folder {run.path} already exists and holds no run; choose another --out "
                       "or remove it first.")
    if run.finished:
        raise RunError(f"run folder {run.path} already exists and holds a finished run; choose another --out "
                       "(or remove it to train again).")
    diff = config_difference(cfg, run)
    if diff:
        raise RunError(f"run folder {run.path} already exists and holds an unfinished run of another config "
                       f"({diff}); give that config to resume it, or choose another --out.")
    if not_resumable:
        raise RunError(f"run folder {run.path} holds an unfinished run that cannot be resumed ({not_resumable}); "
                       "remove it and start again.")


def _newest_unfinished(cfg: Config, name: str) -> RunDir:
    """The most recently started unfinished run of `cfg` among runs/<name>-*."""
    runs = [r for r in map(RunDir, RUNS_DIR.glob(f"{name}-*")) if r.config.is_file()]
    runs = [r for r in runs if not r.finished and not config_difference(cfg, r)]
    if not runs:
        raise RunError(f"nothing to resume: no unfinished run of this config in runs/{name}-*; "
                       "name its folder with --out.")
    return max(runs, key=lambda r: r.config.stat().st_mtime)


@contextlib.contextmanager
def claim_run(cfg: Config, name: str, resume: bool = False, not_resumable: str = "") -> Iterator[tuple[RunDir, bool]]:
    """The run folder to train `cfg` into, locked for this process, and whether a run is to be
    continued in it.

    cfg.train.out names the folder. A new one is created and gets config.toml. An existing one
    holding an unfinished run of the same config (a killed run; verbose, offline and out may
    differ) is continued, after the temporary files of its interrupted writes are removed; an
    empty one is used; anything else is refused with nothing in it touched. Without out, a new
    runs/<name>-<timestamp> is created, or with `resume` the newest unfinished run of the same
    config among runs/<name>-* (by the time its config.toml was written) is continued.

    Args:
        resume: there must be a run to continue (an error otherwise).
        not_resumable: why an unfinished run of `cfg` cannot be continued, if it cannot.

    Raises:
        RunError: a folder holding anything else (a finished run, another config, other
            files), nothing to resume, or a folder another process is training into.
    """
    out = cfg.train.out
    if out and not Path(out).exists():
        if resume:
            raise RunError(f"nothing to resume: run folder {out} does not exist.")
        run, created = RunDir.create(out, name), True
    elif out or resume:
        run, created = (RunDir(Path(out)) if out else _newest_unfinished(cfg, name)), False
        _check_claim(cfg, run, resume, not_resumable)  # before locking, which adds the lock file
    else:
        run, created = RunDir.create("", name), True
    with run.locked():
        if not created:
            _check_claim(cfg, run, resume, not_resumable)  # again: it may have changed meanwhile
            for path in run.temporary_files():
                path.unlink()
        resuming = not created and not run.is_unstarted()
        if not resuming:
            write_config(cfg, run.config)
        yield run, resuming

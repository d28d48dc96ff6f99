"""Which Keras backend a process computes on: TensorFlow, JAX or PyTorch, chosen before Keras is
imported (Keras reads KERAS_BACKEND once, at its import, and cannot switch afterwards).

    mnistlab --backend jax train      # or KERAS_BACKEND=jax mnistlab train

The choice, most binding first: KERAS_BACKEND set by the user; `--backend` (select, called by the
CLI before any command runs; it must agree with KERAS_BACKEND when both are set); the backend of
the mnistlab process that started this one; the "backend" of Keras's own config file
(~/.keras/keras.json, KERAS_HOME) if that one is installed; else the first of BACKENDS that is
installed, so `pip install "mnistlab[jax]"` alone trains on JAX. Nothing here imports a backend:
finding one costs a look at sys.path (importlib.util.find_spec), not an import.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from mnistlab.errors import MnistlabError

# In order of preference when nothing chooses: TensorFlow first, as it is the fastest here on CPU
# for our models (benchmarks/backends.py) and the one whose SavedModel export exists.
BACKENDS = ("tensorflow", "jax", "torch")
# What `pip install` gets each one with (the extras in pyproject.toml).
EXTRAS = {"tensorflow": "mnistlab[tensorflow]", "jax": "mnistlab[jax]", "torch": "mnistlab[torch]"}
# The distributions whose versions decide a backend's numbers (metrics.json's "versions").
DISTRIBUTIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax", "jaxlib"), "torch": ("torch",)}

# Beside KERAS_BACKEND, what mnistlab set it to: a child process (a lesson the server starts, a
# test's CLI call) inherits both, and tells its parent's choice from the user's by the match.
MARK = "MNISTLAB_KERAS_BACKEND"
_ENVIRONMENT = os.environ.get("KERAS_BACKEND") or None
# KERAS_BACKEND as the user set it (None: unset, or set by a parent mnistlab process)...
_USER_CHOICE = _ENVIRONMENT if _ENVIRONMENT != os.environ.get(MARK) else None
# ... and the backend a parent mnistlab process ran on: the default here.
_INHERITED = _ENVIRONMENT if _USER_CHOICE is None else None


class BackendError(MnistlabError):
    """A backend that is not known, not installed, or cannot run what was asked of it."""


def installed(backend: str) -> bool:
    """Is this backend's framework (a module of the same name) importable here, without importing it?"""
    try:
        return importlib.util.find_spec(backend) is not None
    except (ValueError, ImportError):  # a module half-removed from sys.modules, a broken namespace
        return False


def _configured() -> str | None:
    """The backend Keras's own config file names, if it names one of ours that is installed.

    Keras writes that file at its first import, saying "tensorflow" unless someone edited it, so
    on a machine without TensorFlow it says nothing worth following.
    """
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        backend = json.loads((home / "keras.json").read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return backend if backend in BACKENDS and installed(backend) else None


def default() -> str:
    """The backend this process will use if nothing else chooses: see the module docstring.
    TensorFlow when none is installed, so the error names what to install (see require)."""
    return (_USER_CHOICE or _INHERITED or _configured()
            or next((b for b in BACKENDS if installed(b)), BACKENDS[0]))


def _check_name(backend: str) -> None:
    if backend not in BACKENDS:
        raise BackendError(f"unknown Keras backend {backend!r}; choose one of {', '.join(BACKENDS)}.")


def select(backend: str | None = None) -> str:
    """Make `backend` (None: default()) this process's Keras backend and return it.

    Raises:
        BackendError: an unknown name; a choice that disagrees with the user's KERAS_BACKEND; or
            Keras already imported on another backend (a library user calls this first).
    """
    if backend is not None:
        _check_name(backend)
        if _USER_CHOICE and _USER_CHOICE != backend:
            raise BackendError(f"--backend {backend} disagrees with KERAS_BACKEND={_USER_CHOICE} in the environment; "
                               "unset one of them.")
    chosen = backend or default()
    if "keras" in sys.modules and current() != chosen:
        raise BackendError(f"Keras is already running on {current()} in this process; choose {chosen} before "
                           "anything imports Keras (a new process, or mnistlab.backends.select first).")
    os.environ["KERAS_BACKEND"] = os.environ[MARK] = chosen
    return chosen


def current() -> str:
    """The backend this process uses (or will use, once Keras is imported)."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND") or default()


def require() -> str:
    """The current backend, if its framework is installed.

    Raises:
        BackendError: it is not, with the line that installs it.
    """
    backend = current()
    _check_name(backend)
    if not installed(backend):
        others = [b for b in BACKENDS if b != backend and installed(b)]
        instead = f", or use {' or '.join(f'--backend {b}' for b in others)}" if others else ""
        raise BackendError(f"this needs Keras's {backend} backend, which is not installed: "
                           f"pip install \"{EXTRAS[backend]}\"{instead}.")
    return backend


def unsupported(feature: str, works_on: tuple[str, ...], instead: str = "") -> BackendError:
    """The one error for a feature the current backend cannot run: what works where, and what to
    do instead (raise it)."""
    where = " and ".join(works_on)
    hint = f"; {instead}" if instead else f"; use --backend {works_on[0]}"
    return BackendError(f"{feature} works on the {where} backend{'s' if len(works_on) > 1 else ''} only, "
                        f"not on {current()}{hint}.")


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Hide what C++ code prints straight to fd 2 inside the block: TensorFlow's start-up notes.

    TensorFlow 2.21 prints its oneDNN notice before its logging starts, so TF_CPP_MIN_LOG_LEVEL
    cannot hide it; an exception from the block still reaches the user, after stderr is back.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras() -> None:
    """Import Keras on the current backend, with TensorFlow's start-up notes hidden.

    Raises:
        BackendError: the backend is not installed (see require).
    """
    if "keras" in sys.modules:
        return
    require()
    with quiet_stderr():
        import keras  # noqa: F401


def device() -> str:
    """What the current backend computes on: "CPU", or its GPUs' names ("2 x NVIDIA H100 80GB HBM3").
    Imports the backend's framework: call it where Keras is in use already."""
    backend = current()
    names: list[str] = []
    if backend == "tensorflow":
        import tensorflow as tf

        names = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
                 for g in tf.config.list_physical_devices("GPU")]
    elif backend == "jax":
        import jax

        names = [d.device_kind for d in jax.devices() if d.platform != "cpu"]
    elif backend == "torch":
        import torch

        names = [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]
    if not names:
        return "CPU"
    return names[0] if len(names) == 1 else f"{len(names)} x {names[0]}"

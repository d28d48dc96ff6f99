"""Where a run computes: seeded, deterministic kernels, and data parallel over several devices.

    mnistlab train --model cnn --devices 2   # two GPUs, or two virtual CPUs split off the one CPU

With --devices N (N > 1) the model is built, compiled and fitted inside a Parallel scope over N
devices (see data_parallel): each step's batch is split across N replicas and their gradients
summed. On TensorFlow that is a tf.distribute.MirroredStrategy, which Keras 3's TensorFlow
trainer honours; on JAX it is Keras's own distribution API (keras.distribution.DataParallel),
which is JAX-only. The PyTorch backend has neither, and says so.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from typing import Any

import keras

from mnistlab.backends import BackendError, quiet_stderr, unsupported


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend, and make TensorFlow's CPU kernels deterministic."""
    # Keras seeds TensorFlow too whenever it is installed (for tf.data), importing it on any
    # backend: its start-up notes would land in a JAX or PyTorch run's output.
    with quiet_stderr():
        keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


@dataclass(frozen=True)
class Parallel:
    """N devices that fit() splits each batch across: names for the log, and the scope that the
    model, its optimizer and fit() must be created and run in."""

    names: tuple[str, ...]  # as the backend names them: device:CPU:0, cpu:1, gpu:0, ...
    scope: Callable[[], ContextManager[Any]]


@functools.cache  # the devices can be set up once per process: before the backend's runtime starts
def data_parallel(devices: int) -> Parallel:
    """Data parallel over `devices` replicas: the first GPUs when there are that many, else
    virtual CPUs split off the one physical CPU (they share its cores).

    Raises:
        BackendError: the PyTorch backend (Keras has no data parallel for it), or virtual CPUs asked
            for after the backend started its runtime (in this process, something already ran).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        strategy = _mirrored(devices)
        return Parallel(tuple(d.rsplit("/", 1)[-1] for d in strategy.extended.worker_devices), strategy.scope)
    if backend == "jax":
        found = _jax_devices(devices)
        distribution = keras.distribution.DataParallel(devices=found)
        return Parallel(tuple(found), distribution.scope)
    raise unsupported("data parallel over several devices (devices > 1)", ("tensorflow", "jax"),
                      "train on one device here (--devices 1), or use --backend jax or tensorflow")


def _too_late(devices: int, runtime: str) -> BackendError:
    return BackendError(
        f"devices={devices} needs {devices} virtual CPUs, which {runtime} can only set up before it first runs "
        f"anything; train in a fresh process (as `mnistlab train --devices {devices}` does) or call train() before "
        f"any other {runtime} work."
    )


def _jax_devices(devices: int) -> list[str]:
    """The first `devices` of JAX's accelerators, else of as many virtual CPUs."""
    import jax

    try:  # only the CPU platform's count: harmless where GPUs are used instead
        jax.config.update("jax_num_cpu_devices", max(devices, jax.config.jax_num_cpu_devices))
    except RuntimeError:  # "... cannot be updated after the backend has been initialized"
        pass
    found = keras.distribution.list_devices()  # accelerators first when there are any
    if len(found) < devices:
        if any(not d.startswith("cpu") for d in found):
            raise BackendError(f"devices={devices} but JAX sees {len(found)}: {', '.join(found)}.")
        raise _too_late(devices, "JAX")
    return found[:devices]


def _mirrored(devices: int) -> Any:
    """A tf.distribute.MirroredStrategy over `devices` GPUs, else virtual CPUs.

    Keras 3's TensorFlow trainer takes the strategy of the scope a model is created in and runs
    fit/evaluate/predict through it; keras.distribution's TensorFlow backend is a prototype
    marked "DO NOT USE".
    """
    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) >= devices:
        names = [f"/gpu:{i}" for i in range(devices)]
    else:
        cpu = tf.config.list_physical_devices("CPU")[0]
        if len(tf.config.get_logical_device_configuration(cpu) or []) < devices:
            try:
                tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
            except RuntimeError:  # "Virtual devices cannot be modified after being initialized"
                raise _too_late(devices, "TensorFlow") from None
        names = [f"/cpu:{i}" for i in range(devices)]
    return tf.distribute.MirroredStrategy(names)


def copy_model(model: keras.Model) -> keras.Model:
    """The same network and weights, its variables created anew in the current distribution
    scope: a strategy's (on every replica), or none (one device)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy

"""Where a run computes: seeded, deterministic kernels, and data parallel over several devices.

    mnistlab train --model cnn --devices 2   # two GPUs, or two virtual CPUs split off the one CPU

With --devices N (N > 1) the model is built, compiled and fitted inside a
tf.distribute.MirroredStrategy over N devices (see data_parallel): each step's batch is split
across N replicas and their gradients summed. Keras's own distribution API (keras.distribution)
is JAX-only; Keras 3's TensorFlow trainer honours a tf.distribute strategy instead.
"""

from __future__ import annotations

import functools
from typing import Any

import keras

from mnistlab.config import ConfigError


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend, and make TensorFlow's CPU kernels deterministic."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


@functools.cache  # the devices can be set up once per process: before TensorFlow's runtime starts
def data_parallel(devices: int) -> Any:
    """A tf.distribute.MirroredStrategy over `devices` replicas: the first GPUs when there are
    that many, else virtual CPUs split off the one physical CPU (they share its cores).

    Keras 3's TensorFlow trainer takes the strategy of the scope a model is created in and runs
    fit/evaluate/predict through it; keras.distribution (DataParallel) works on JAX only, its
    TensorFlow backend being a prototype marked "DO NOT USE".

    Raises:
        ConfigError: another backend than TensorFlow, or virtual CPUs asked for after TensorFlow
            started its runtime (in this process, something already ran).
    """
    if keras.backend.backend() != "tensorflow":
        raise ConfigError(f"devices > 1 is implemented with tf.distribute, for the TensorFlow backend only; "
                          f"this process uses {keras.backend.backend()}.")
    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) >= devices:
        names = [f"/gpu:{i}" for i in range(devices)]
    else:
        cpu = tf.config.list_physical_devices("CPU")[0]
        if len(tf.config.get_logical_device_configuration(cpu) or []) < devices:
            try:
                tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
            except RuntimeError:  # "Virtual devices cannot be modified after being initialized"
                raise ConfigError(
                    f"devices={devices} needs {devices} virtual CPUs, which TensorFlow can only set up before it "
                    f"first runs anything; train in a fresh process (as `mnistlab train --devices {devices}` "
                    f"does) or call train() before any other TensorFlow work."
                ) from None
        names = [f"/cpu:{i}" for i in range(devices)]
    return tf.distribute.MirroredStrategy(names)


def copy_model(model: keras.Model) -> keras.Model:
    """The same network and weights, its variables created anew in the current distribution
    scope: a strategy's (on every replica), or none (one device)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy

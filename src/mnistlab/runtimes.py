"""Runtimes: what a saved model is loaded into to predict, each with a Keras-like `predict`.

    python -c "from mnistlab.runtimes import load_runtime; print(load_runtime('runs/<name>')[2])"

A run folder's model.keras is loaded by Keras in safe mode (TensorFlow's start-up notes hidden);
the model.onnx that `mnistlab export` writes beside it runs on onnxruntime alone (OnnxModel:
importing this module imports neither Keras nor TensorFlow), and so does the reader shipped in
the package (READER_DIR), used when no run is named; an exported SavedModel folder runs on
TensorFlow. Every model is checked to map MNIST's (N, 28, 28, 1) images to (N, 10)
probabilities before it is used.

The exported file's interface (INPUT_NAME, OUTPUT_NAME, CLASSES) is defined here, below both the
export that writes it and the prediction that reads it.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.backends import import_keras
from mnistlab.calibrate import recorded_temperature
from mnistlab.data import INPUT_SHAPE, NUM_CLASSES
from mnistlab.errors import MnistlabError
from mnistlab.runs import ONNX_FILE, RunDir, RunError

INPUT_NAME = "image"  # float32 (N, 28, 28, 1), pixels / 255: mnistlab.data.preprocess_images
OUTPUT_NAME = "probabilities"  # float32 (N, 10), softmax over CLASSES
CLASSES = tuple(str(d) for d in range(NUM_CLASSES))  # output column k is the digit k

# One intra-op thread for single images and small batches: a 28x28 image through `fast` is
# ~50 us of arithmetic, and a second thread does not pay for waking it (shared 2-core EPYC,
# onnxruntime 1.32: 56 us p50 with 1 thread, 59 us with 2 spinning, 84 us with 2 that sleep).
# A server gets its parallelism from concurrent requests: session.run releases the GIL.
DEFAULT_THREADS = 1
# From this many images a call goes to a second session with a thread per core: on an idle
# 2-core EPYC the 10,000 test images ran at 32-35k img/s on one thread and 57-67k on two, at
# batches of 256, 1024 and 4096 alike.
BATCH_THREADS_FROM = 256

# The reader shipped inside the package (package data): the ONNX file `mnistlab export` wrote
# from `mnistlab train --model reader`, its temperature in the file's metadata, and the run's
# metrics.json and config.toml beside it as provenance. Used wherever no run folder is named.
READER_DIR = Path(__file__).resolve().parent / "reader"
READER_NAME = "reader"  # what GET /v1/model and messages call it


class ExportError(MnistlabError):
    """An export that cannot be made or fails its parity check, or an exported file that cannot be used."""


def takes_mnist(input_shape: Any, output_shape: Any) -> bool:
    """Do these shapes (Keras's, or ONNX's with names for free dimensions) map MNIST's model input
    (N, 28, 28, 1) to (N, 10)? Dimensions that are not integers match anything."""

    def matches(shape: Any, expected: tuple[int, ...]) -> bool:
        if not isinstance(shape, (list, tuple)) or len(shape) != len(expected) + 1:
            return False
        return all(not isinstance(d, int) or d == e for d, e in zip(shape[1:], expected))

    return matches(input_shape, INPUT_SHAPE) and matches(output_shape, (NUM_CLASSES,))


class OnnxModel:
    """An exported ONNX model on onnxruntime, duck-typed like a Keras model for `predict`.

    Works with mnistlab.inference.predict_probs and mnistlab.predict.Predictor; thread-safe
    (onnxruntime sessions may be run from several threads at once).
    """

    def __init__(self, path: str | os.PathLike, threads: int = DEFAULT_THREADS, batch_threads: int | None = None):
        """Open `path` (an ONNX file written by export_model).

        Args:
            threads: intra-op threads for calls of fewer than BATCH_THREADS_FROM images.
            batch_threads: threads for larger calls (default: one per core).

        Raises:
            ExportError: no such file, onnxruntime is missing, or the file is not a usable model.
        """
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportError("running an ONNX model needs onnxruntime: pip install onnxruntime.") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"ONNX model {self.path} does not exist.")
        self.session = self._open(ort, threads)
        # The batch session is opened by the first large call: a command that reads one image
        # does not pay for it (10-20 ms for the 1.7 MB `fast` file, more on a busy machine).
        self._batch_threads = batch_threads or os.cpu_count() or 1
        self._batch_session = self.session if self._batch_threads == threads else None
        self._batch_lock = threading.Lock()
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs or not takes_mnist(inputs[0].shape, outputs[0].shape):
            raise ExportError(
                f"ONNX model {self.path} maps {[i.shape for i in inputs]} to "
                f"{[o.shape for o in outputs]}, not one MNIST input (N, 28, 28, 1) to (N, 10)."
            )
        self.input_name = inputs[0].name
        self._outputs = [outputs[0].name]
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        recorded = self.metadata.get("temperature", "1.0")
        try:
            self._temperature = float(recorded)
        except ValueError:
            self._temperature = math.nan
        if not 0 < self._temperature < math.inf:
            raise ExportError(f"ONNX model {self.path} records temperature {recorded[:40]!r}, not a number > 0.")

    def _open(self, ort: Any, threads: int) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # the graph is one chain of operators
        options.log_severity_level = 3  # errors only; failures still raise
        try:
            return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(f"cannot load ONNX model {self.path}: {reason}") from None

    def _batch(self) -> Any:
        """The session with a thread per core, opened on first use (once, whatever the threads)."""
        with self._batch_lock:
            if self._batch_session is None:
                import onnxruntime as ort

                self._batch_session = self._open(ort, self._batch_threads)
        return self._batch_session

    @property
    def temperature(self) -> float:
        """The calibration temperature recorded at export (1.0 for a file without one)."""
        return self._temperature

    def predict(self, x: np.ndarray, batch_size: int = 1024, verbose: int = 0) -> np.ndarray:
        """(N, 10) float32 probabilities for model input x, (N, 28, 28, 1) float32 in [0, 1].

        Same signature as keras.Model.predict; verbose is accepted and ignored.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[..., np.newaxis]
        session = self._batch() if len(x) >= BATCH_THREADS_FROM else self.session
        if len(x) <= batch_size:  # one call, no copies when x is already contiguous float32
            return session.run(self._outputs, {self.input_name: np.ascontiguousarray(x)})[0]
        return np.concatenate(
            [
                session.run(self._outputs, {self.input_name: np.ascontiguousarray(x[k : k + batch_size])})[0]
                for k in range(0, len(x), batch_size)
            ]
        )


class SavedModel:
    """A TensorFlow SavedModel's `serve` endpoint with a Keras-like predict (export's parity check)."""

    def __init__(self, path: Path):
        import tensorflow as tf

        # Held, not just its `serve`: the endpoint's variables die with the loaded object.
        self._loaded = tf.saved_model.load(str(path))

    def predict(self, x: np.ndarray, batch_size: int = 1024, verbose: int = 0) -> np.ndarray:
        serve = self._loaded.serve
        return np.concatenate([serve(x[k : k + batch_size]).numpy() for k in range(0, len(x), batch_size)])


def load_keras(run: str | os.PathLike) -> tuple[Any, float]:
    """A run folder's Keras model (safe mode) and the temperature fitted at training.

    Raises:
        RunError: no such run, a model that is damaged, too large (modelfile.check_keras_file), cannot be
            loaded or does not take MNIST's (N, 28, 28, 1) images to (N, 10) probabilities, or
            a damaged metrics.json.
    """
    folder = RunDir.open(run)
    temperature = recorded_temperature(folder.read_metrics(), folder.metrics)
    import_keras()
    model = folder.load_model()
    shapes = (getattr(model, "input_shape", None), getattr(model, "output_shape", None))
    if not takes_mnist(*shapes):
        raise RunError(
            f"model {folder.model} maps {shapes[0]} to {shapes[1]}, not MNIST's (N, 28, 28, 1) "
            "images to (N, 10) probabilities."
        )
    return model, temperature


def onnx_model(run: str | os.PathLike) -> Path | None:
    """The run's ONNX model (`mnistlab export`) when it has one; None means the Keras model is used."""
    path = RunDir(Path(run)).onnx
    return path if path.is_file() else None


def load_reader() -> OnnxModel:
    """The reader shipped in the package, on onnxruntime.

    Raises:
        ExportError: its model.onnx is missing (a broken install) or cannot be loaded.
    """
    path = READER_DIR / ONNX_FILE
    if not path.is_file():
        raise ExportError(
            f"the reader shipped with mnistlab is missing ({path} does not exist): reinstall mnistlab, "
            "or name a run folder of your own (--model RUN)."
        )
    return OnnxModel(path)


def load_runtime(run: str | os.PathLike | None = None) -> tuple[Any, float, str]:
    """A model for prediction, its temperature and its runtime: with no run, the shipped reader;
    else the run's model.onnx on onnxruntime when there is one (Keras and TensorFlow are then
    never imported), else its Keras model.

    Raises:
        RunError, ExportError: no such run, or a model that cannot be loaded.
    """
    if run is None:
        model = load_reader()
        return model, model.temperature, "onnx"
    path = onnx_model(run)
    if path is not None:
        model = OnnxModel(path)
        return model, model.temperature, "onnx"
    return (*load_keras(run), "keras")

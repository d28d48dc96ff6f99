"""Export: a run's model as a file other runtimes load, checked against the original first.

    mnistlab export runs/<name>                 # runs/<name>/model.onnx, with its parity figures
    python -c "from mnistlab import Predictor; print(Predictor.from_onnx('runs/<name>/model.onnx').predict(['7.png']))"

ONNX goes through Keras's own `model.export(format="onnx")`, on each backend by its own route:
tf2onnx on TensorFlow, jax2onnx on JAX, torch.onnx (with onnxscript) on PyTorch; each lands in
the same file, checked the same way. A SavedModel needs TensorFlow installed, and Keras writes
one from TensorFlow or JAX only.
The file takes `image`, float32 (N, 28, 28, 1) in [0, 1] as mnistlab.data.preprocess_images
makes it, and gives `probabilities`, float32 (N, 10); its metadata carries the classes, the
preprocessing version and the run's temperature, so it can be used without the run folder.
An export is reloaded and run on the 10,000 MNIST test images against the Keras model before
it replaces anything; a file that disagrees is deleted and any earlier export is kept.

mnistlab.runtimes runs the files written here (OnnxModel on onnxruntime alone) and defines
their interface: INPUT_NAME, OUTPUT_NAME, CLASSES.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab import backends
from mnistlab.data import INPUT_SHAPE, PREPROCESSING_VERSION, load_mnist
from mnistlab.errors import MnistlabError
from mnistlab.files import atomic_path, atomic_write_json
from mnistlab.inference import predict_probs
from mnistlab.runs import RunDir, why_no_folder
from mnistlab.runtimes import CLASSES, INPUT_NAME, OUTPUT_NAME, ExportError, OnnxModel, SavedModel
from mnistlab.version import __version__

FORMATS = ("onnx", "keras", "savedmodel")
# What Keras's ONNX export imports on each backend (installed by that backend's extra).
ONNX_CONVERTERS = {"tensorflow": "tf2onnx", "jax": "jax2onnx", "torch": "onnxscript"}
# Where Keras writes a SavedModel: its PyTorch route fails on our signature (Keras 3.15).
SAVEDMODEL_BACKENDS = ("tensorflow", "jax")
SAVEDMODEL_METADATA_FILE = "mnistlab.json"  # in a SavedModel folder: metadata(run); TensorFlow ignores it

# Pinned so an export does not change with tf2onnx's default; onnxruntime reads opset 17 since
# 1.13 (2022), and every operator a Keras CNN/MLP needs exists in it.
ONNX_OPSET = 17

# Parity with the Keras model on the MNIST test set, required before an export replaces anything.
# An exact conversion only reorders float32 sums: a `fast` run (2,000 training images) exported
# here differs by at most 3e-7 and no image changes class; scaling one weight tensor by 1.5
# (tests/test_export.py) is off by far more.
MIN_AGREEMENT = 0.9999  # top-1 agreement: at most 1 of the 10,000 test images may change class
MAX_PROB_DIFF = 1e-4  # largest |p_exported - p_keras| over all images and classes

def default_destination(run_path: Path, fmt: str) -> Path:
    """Where `mnistlab export RUN --format fmt` writes without --out."""
    run = RunDir(run_path)
    return {"onnx": run.onnx, "savedmodel": run.savedmodel}[fmt]


def metadata(run: Any) -> dict[str, str]:
    """What an export records about itself and its run: the ONNX file's metadata_props, a
    SavedModel's SAVEDMODEL_METADATA_FILE."""
    metrics = run.read_metrics()
    calibration = metrics.get("calibration") or {}
    props = {
        "classes": ",".join(CLASSES),
        "input": (
            f"{INPUT_NAME}: float32 (N, 28, 28, 1), grey level / 255 in [0, 1], ink 1 on background 0, "
            "the digit scaled and centred as MNIST's (mnistlab.data.prepare_image, then preprocess_images)"
        ),
        "output": f"{OUTPUT_NAME}: float32 (N, 10), softmax over classes; calibrate with softmax(log p / temperature)",
        "preprocessing_version": str(PREPROCESSING_VERSION),
        "temperature": repr(float(calibration.get("temperature", 1.0))),
        "mnistlab_version": __version__,
        "run": run.path.name,
    }
    if "test_accuracy" in metrics:
        props["test_accuracy"] = repr(float(metrics["test_accuracy"]))
    return props


def _rename_io(proto: Any) -> None:
    """Name the graph's input, output and batch dimension as documented above (tf2onnx leaves
    `Identity:0` and `unk__N`)."""
    graph = proto.graph
    names = {graph.input[0].name: INPUT_NAME, graph.output[0].name: OUTPUT_NAME}
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = names.get(value.name, value.name)
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"


def _input_spec() -> Any:
    """The exported signature: any batch of preprocess_images output, named INPUT_NAME (a model
    loaded from .keras was never called, so Keras cannot infer it)."""
    import keras

    return keras.InputSpec(shape=(None, *INPUT_SHAPE), dtype="float32", name=INPUT_NAME)


def _needs(module: str, why: str, backend: str | None = None) -> None:
    """Raise ExportError naming the install line (the extra of `backend`, else of the current one)
    when `module` (which Keras imports only inside its export) is missing."""
    if importlib.util.find_spec(module) is None:
        extra = backends.EXTRAS[backend or backends.current()]
        raise ExportError(f"{why} needs {module}, which is not installed: pip install \"{extra}\".")


def _convert_onnx(model: Any, temp: Path, props: dict[str, str]) -> None:
    """Keras's ONNX export to `temp`, then our names and metadata written into the same file."""
    import onnx

    _needs(ONNX_CONVERTERS[backends.current()], f"ONNX export on the {backends.current()} backend")
    spec = _input_spec()
    with warnings.catch_warnings():
        # Keras patches tf2onnx for NumPy 2 and trips NumPy's np.object FutureWarning doing so.
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(temp), format="onnx", verbose=False, input_signature=[spec], opset_version=ONNX_OPSET)
    proto = onnx.load(str(temp))
    _rename_io(proto)
    proto.doc_string = "mnistlab digit classifier: " + props["input"] + " -> " + props["output"]
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    temp.write_bytes(proto.SerializeToString())


def _write(fmt: str, run: Any, model: Any, temp: Path) -> Any:
    """Write the export to `temp` and return it reloaded (something with a Keras-like predict)."""
    import keras

    if fmt == "onnx":
        _convert_onnx(model, temp, metadata(run))
        return OnnxModel(temp)
    if fmt == "keras":
        shutil.copyfile(run.model, temp)
        return keras.saving.load_model(temp, compile=False, safe_mode=True)
    if backends.current() not in SAVEDMODEL_BACKENDS:
        raise backends.unsupported("export --format savedmodel", SAVEDMODEL_BACKENDS, "use --format onnx, which "
                                   "TensorFlow Serving's users can also run with onnxruntime, or --backend jax")
    _needs("tensorflow", "export --format savedmodel", "tensorflow")
    model.export(str(temp), format="tf_saved_model", verbose=False, input_signature=[_input_spec()])
    atomic_write_json(temp / SAVEDMODEL_METADATA_FILE, metadata(run))
    return SavedModel(temp)


def parity(reference: np.ndarray, exported: np.ndarray, y_true: np.ndarray) -> dict[str, Any]:
    """How closely exported probabilities follow the reference ones, and both accuracies."""
    ref_top, exp_top = reference.argmax(1), exported.argmax(1)
    return {
        "n": len(y_true),
        "agreement": float((ref_top == exp_top).mean()),
        "max_abs_diff": float(np.abs(exported.astype(np.float64) - reference).max()),
        "test_accuracy": float((exp_top == y_true).mean()),
        "keras_test_accuracy": float((ref_top == y_true).mean()),
    }


def export_model(
    run: str | os.PathLike,
    fmt: str = "onnx",
    out: str | os.PathLike | None = None,
    *,
    data: Any = None,
    data_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    offline: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Export a run's model and check it against the original on the 10,000 MNIST test images.

    Args:
        run: a run folder written by `mnistlab train`.
        fmt: "onnx" (default RUN/model.onnx), "keras" (a copy of RUN/model.keras; needs `out`) or
            "savedmodel" (a TensorFlow SavedModel folder, default RUN/savedmodel).
        out: where to write instead of the default; an existing export there is replaced only
            by one that passes the parity check.
        data: MNIST arrays already in memory; else load_mnist(data_path, cache_dir, offline, progress).

    Returns:
        {"run", "format", "path", "size_bytes", "export_seconds", "parity_seconds", "n",
        "agreement", "max_abs_diff", "test_accuracy" (the export's), "keras_test_accuracy"}.

    Raises:
        ExportError: unknown format, an `out` that cannot be written (a file where a folder must
            be), no converter, a failed conversion, or a failed parity check (the new file is
            removed then; anything at `out` before is left as it was).
        RunError, DataError: no such run; no MNIST test set.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    folder = RunDir.open(run)
    if out is None and fmt == "keras":
        raise ExportError(f"--format keras copies {folder.model}; give the copy's path with --out.")
    dest = Path(out) if out is not None else default_destination(folder.path, fmt)
    if dest.resolve() == folder.model.resolve():
        raise ExportError(f"{dest} is the run's own model; export somewhere else.")
    if fmt != "savedmodel" and dest.is_dir():
        raise ExportError(f"{dest} is a folder; give the {fmt} file's own name with --out.")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot write {dest}: {why_no_folder(dest.parent, e)}.") from None
    if data is None:
        data = load_mnist(path=data_path, cache_dir=cache_dir, offline=offline, progress=progress)
    model = folder.load_model()
    # Keras loads only files named *.keras, so the keras copy's temporary name keeps the suffix.
    with atomic_path(dest, ".keras" if fmt == "keras" else "") as temp:
        reference = predict_probs(model, data.x_test)
        start = time.perf_counter()
        try:
            exported = _write(fmt, folder, model, temp)
            export_seconds = time.perf_counter() - start
            start = time.perf_counter()
            probs = predict_probs(exported, data.x_test)
        except MnistlabError:
            raise
        except Exception as e:  # tf2onnx, TensorFlow and onnxruntime raise many types
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(f"cannot export {folder.model} as {fmt}: {reason}") from None
        parity_seconds = time.perf_counter() - start
        figures = parity(reference, probs, data.y_test)
        if figures["agreement"] < MIN_AGREEMENT or figures["max_abs_diff"] > MAX_PROB_DIFF:
            kept = f"{dest} was left as it was" if dest.exists() else "the file was removed"
            raise ExportError(
                f"the {fmt} export disagrees with the Keras model on the MNIST test set: top-1 agreement "
                f"{figures['agreement'] * 100:.2f} % (needs >= {MIN_AGREEMENT * 100:.2f} %), max |prob diff| "
                f"{figures['max_abs_diff']:.2g} (needs <= {MAX_PROB_DIFF:g}); {kept}."
            )
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) if dest.is_dir() else dest.stat().st_size
    return {
        "run": str(folder.path),
        "format": fmt,
        "path": str(dest),
        "size_bytes": size,
        "export_seconds": round(export_seconds, 3),
        "parity_seconds": round(parity_seconds, 3),
        **figures,
    }


def format_export(result: dict[str, Any]) -> str:
    """The export's figures as lines a person reads (what `mnistlab export` prints)."""
    r = result
    return (
        f"exported {r['path']} ({r['format']}, {r['size_bytes'] / 1e6:.2f} MB, {r['export_seconds']:.1f} s)\n"
        f"parity on {r['n']:,} MNIST test images: top-1 agreement {r['agreement'] * 100:.2f} %, "
        f"max |prob diff| {r['max_abs_diff']:.2g}\n"
        f"test accuracy {r['test_accuracy'] * 100:.2f} % (Keras {r['keras_test_accuracy'] * 100:.2f} %)"
    )

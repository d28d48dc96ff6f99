"""Keras backends side by side, TensorFlow, JAX and PyTorch, through mnistlab's own train() and Predictor.

    python benchmarks/backends.py [--backends tensorflow,jax,torch] [--seeds 3] [--best-images 15000]
                                  [--best-full] [--quick] [--out DIR]

Each backend runs in a child process of its own (this script with --child BACKEND, KERAS_BACKEND
set before Keras is imported), one after the other, so backends never share a process or the
machine's cores; the parent only collects and prints. Per backend:

- the device it trained on: the GPU's name when Keras put the model's weights there, else the CPU;
- `fast`, seeds 0..N-1 (preset_config("fast") through train()): time to 99 % test accuracy and the
  final test accuracy (metrics.json). After every epoch the test set is scored with the clock
  stopped, so the time is training alone, the first call's tracing and compilation included;
  `fast` is one one-cycle epoch, so its time to 99 % is that epoch's, or "not reached";
- `best`, seed 0: seconds per epoch of all 60,000 images. Two epochs on the first --best-images
  images (the first carries tracing and compilation; the second is the steady state), scaled to
  60,000 in proportion (the output says so); with --best-full the preset's whole run on all the
  images instead, giving its final test accuracy too (for a GPU machine: 22 epochs on a CPU take
  an hour or more);
- inference through Predictor.from_run on the first `fast` run (it has no model.onnx, so the Keras
  model runs on the backend): images/s of .probabilities() over the 10,000 test images (uint8,
  batches of 1024; median of 3 after a warm-up pass), and one image's latency (median of 50);
- import time of `import keras` and `import mnistlab.train` in a fresh interpreter (the import
  alone, the interpreter's start not counted; median of 3);
- install size: the files importlib.metadata lists for the backend's distributions (DISTRIBUTIONS),
  the CUDA libraries (nvidia-*, shared by all three) counted apart; and the whole extra
  (`mnistlab[jax]`, ...) with everything it pulls in beyond mnistlab's own dependencies.

--quick is a smoke run: one seed, 2,000 training images everywhere, one import timing. A backend
that fails in its child is reported in the table with its error and the others still run.
Prints a markdown table (a column per backend) and ends with one JSON line holding every figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, timed  # noqa: E402

from mnistlab.backends import BACKENDS  # noqa: E402
from mnistlab.runs import machine_info  # noqa: E402

# What each backend adds to an install: the backend and the package that exports its models to ONNX.
# TensorFlow is one of its two distributions (tensorflow-cpu here); the jax-cuda plugins are JAX's own.
DISTRIBUTIONS = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tf2onnx"),
    "jax": ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin", "jax-cuda13-pjrt",
            "jax2onnx"),
    "torch": ("torch", "onnxscript"),
}
TARGET = 0.99  # test accuracy `fast` is timed to
MNIST_TRAIN = 60_000  # images in MNIST's training set: what a `best` epoch is scaled to
QUICK_IMAGES = 2_000  # --quick's training images, for `fast` and `best` alike
# Times `import sys.argv[1]` inside a fresh interpreter, the interpreter's own start left out.
IMPORT_TIMER = "import sys, time; t = time.perf_counter(); __import__(sys.argv[1]); print(time.perf_counter() - t)"


# ---- the child: one backend, in a process of its own ----------------------------------------


def progress(message: str) -> None:
    print(message, flush=True)


def error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def epoch_clock(x_test: Any, y_test: Any, score: bool) -> Any:
    """A Keras callback: training seconds of each epoch, and with `score` the test accuracy after
    each epoch, measured with the clock stopped. Built here: Keras is imported in the child only."""
    import keras
    import numpy as np

    from mnistlab.inference import predict_probs

    class EpochClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []  # the first from fit's start: tracing and compilation in it
            self.accuracy: list[float] = []
            self._start = 0.0

        def on_train_begin(self, logs: dict | None = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            # Runs after train()'s own callbacks (its per-epoch checkpoint is training's cost too).
            self.seconds.append(time.perf_counter() - self._start)
            if score:
                probs = predict_probs(self.model, x_test)
                self.accuracy.append(float(np.mean(probs.argmax(1) == y_test)))
            self._start = time.perf_counter()

    return EpochClock()


def device_of(model: Any) -> str:
    """Where the trained model's weights live: "GPU: <name>" (or the accelerator's), else "CPU: <model>"."""
    import keras

    value = model.weights[0].value
    backend = keras.backend.backend()
    if backend == "tensorflow" and "GPU" in value.device.upper():
        import tensorflow as tf

        index = int(value.device.rsplit(":", 1)[-1])
        gpu = tf.config.list_physical_devices("GPU")[index]
        return "GPU: " + tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
    if backend == "jax":
        device = next(iter(value.devices()))
        if device.platform != "cpu":
            return f"{device.platform.upper()}: {device.device_kind}"
    if backend == "torch" and value.device.type != "cpu":
        import torch

        name = torch.cuda.get_device_name(value.device) if value.device.type == "cuda" else value.device.type
        return f"GPU: {name}"
    return "CPU: " + machine_info()["cpu"]


def train_fast(seeds: int, limits: dict[str, int], out: Path, data: Any) -> tuple[list[dict], Any, Path | None]:
    """`fast` for seeds 0..seeds-1: a row per seed, the first run's model and folder (None if it failed)."""
    from mnistlab.models import preset_config
    from mnistlab.train import train

    rows, model, first_run = [], None, None
    for seed in range(seeds):
        cfg = preset_config("fast", seed=seed, out=str(out / f"fast-seed{seed}"), verbose=0, **limits)
        clock = epoch_clock(data.x_test, data.y_test, score=True)
        result = train(cfg, data=data, callbacks=[clock])
        elapsed, reached = 0.0, None
        for seconds, accuracy in zip(clock.seconds, clock.accuracy):
            elapsed += seconds
            if reached is None and accuracy >= TARGET:
                reached = elapsed
        rows.append({"seed": seed, "time_to_target_s": None if reached is None else round(reached, 2),
                     "train_s": round(elapsed, 2), "epochs": len(clock.seconds),
                     "final_accuracy": result.metrics["test_accuracy"], "train_images": result.metrics["train_images"]})
        progress(f"fast seed {seed}: {elapsed:.1f} s, final {result.metrics['test_accuracy'] * 100:.2f} %, "
                 f"time to {TARGET * 100:.0f} %: {'not reached' if reached is None else f'{reached:.1f} s'}")
        if model is None:
            model, first_run = result.model, result.run.path
    return rows, model, first_run


def train_best(full: bool, limits: dict[str, int], out: Path, data: Any) -> dict[str, Any]:
    """`best` for two epochs on a slice (or, full, its whole run): seconds per 60,000-image epoch."""
    from mnistlab.models import preset_config
    from mnistlab.train import train

    cfg = preset_config("best", seed=0, out=str(out / "best-seed0"), verbose=0,
                        **({} if full else {"epochs": 2}), **limits)
    clock = epoch_clock(data.x_test, data.y_test, score=False)
    result = train(cfg, data=data, callbacks=[clock])
    images = result.metrics["train_images"]
    steady = statistics.median(clock.seconds[1:]) if len(clock.seconds) > 1 else clock.seconds[0]
    row = {"epochs": len(clock.seconds), "train_images": images,
           "epoch_s": [round(s, 2) for s in clock.seconds],
           "steady_epoch_s_measured": round(steady, 2),
           "s_per_epoch": round(steady * MNIST_TRAIN / images, 2),
           "extrapolated_from_images": images if images != MNIST_TRAIN else None,
           "train_s": round(sum(clock.seconds), 2),
           "final_accuracy": result.metrics["test_accuracy"] if full else None}
    progress(f"best: {len(clock.seconds)} epochs on {images:,} images, first {clock.seconds[0]:.1f} s, "
             f"steady {steady:.1f} s -> {row['s_per_epoch']:.1f} s per {MNIST_TRAIN:,}-image epoch")
    return row


def measure_inference(run: Path, data: Any) -> dict[str, Any]:
    """Predictor.from_run on the backend: img/s at batch 1024 over the test set, one image's latency."""
    import numpy as np

    from mnistlab.predict import Predictor

    predictor = Predictor.from_run(run)
    if predictor.runtime != "keras":
        raise RuntimeError(f"the predictor runs on {predictor.runtime}, not the Keras backend")
    x = data.x_test
    probs = predictor.probabilities(x)  # warm-up: traces the full batches and the last, partial one
    batch_s = statistics.median(timed(lambda: predictor.probabilities(x), 3))
    one = x[:1]
    timed(lambda: predictor.probabilities(one), 5)
    latency = statistics.median(timed(lambda: predictor.probabilities(one), 50))
    row = {"batch1024_img_s": round(len(x) / batch_s), "single_image_ms": round(latency * 1e3, 3),
           "predictor_accuracy": float(np.mean(probs.argmax(1) == data.y_test))}
    progress(f"inference: {row['batch1024_img_s']:,} img/s at batch 1024, {row['single_image_ms']:.2f} ms for one")
    return row


def section(result: dict[str, Any], name: str, work: Callable[[], Any]) -> Any:
    """result[name] = work(), or its error in result["errors"][name]; the other sections still run."""
    try:
        result[name] = work()
        return result[name]
    except Exception as e:
        result.setdefault("errors", {})[name] = error_text(e)
        progress(f"{name} failed: {traceback.format_exc().strip()}")
        return None


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Every training and inference figure of the backend KERAS_BACKEND names, in this process."""
    import keras

    from mnistlab.data import load_mnist

    backend = keras.backend.backend()
    if backend != args.child:
        raise RuntimeError(f"Keras runs on {backend}, not {args.child}: KERAS_BACKEND was not honoured")
    backend_module = importlib.import_module(backend)
    result: dict[str, Any] = {"backend": backend, "keras": keras.version(),
                              "backend_version": backend_module.__version__}
    data = load_mnist(progress=False)
    limits = {"train_limit": QUICK_IMAGES} if args.quick else {}
    out = Path(args.out)
    fast = section(result, "fast", lambda: train_fast(args.seeds, limits, out, data))
    if fast is None:
        result["errors"]["inference"] = "no `fast` run to load"
    else:
        rows, model, first_run = fast
        result["fast"] = rows
        section(result, "device", lambda: device_of(model))
        section(result, "inference", lambda: measure_inference(first_run, data))
    best_limits = limits or ({} if args.best_full else {"train_limit": args.best_images})
    section(result, "best", lambda: train_best(args.best_full and not args.quick, best_limits, out, data))
    return result


# ---- the parent: one child per backend, then the table ---------------------------------------


def child_env(backend: str) -> dict[str, str]:
    return {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}


def import_seconds(backend: str, module: str, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", IMPORT_TIMER, module], env=child_env(backend),
                              capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError((done.stderr.strip().splitlines() or ["?"])[-1])
        seconds.append(round(float(done.stdout.strip().splitlines()[-1]), 3))
    return seconds


def installed_mb(dist_names: list[str] | tuple[str, ...]) -> dict[str, float]:
    """MB on disk of each installed distribution named: the files its metadata lists."""
    sizes = {}
    for name in dist_names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        paths = (Path(dist.locate_file(f)) for f in dist.files or [])
        sizes[name] = round(sum(p.stat().st_size for p in paths if p.is_file()) / 1e6, 1)
    return sizes


def _requirements(dist: str, extras: tuple[str, ...] = ()) -> list[tuple[str, tuple[str, ...]]]:
    """(name, extras) of what an installed distribution requires here, with `extras` asked for."""
    from packaging.requirements import Requirement

    try:
        listed = metadata.distribution(dist).requires or []
    except metadata.PackageNotFoundError:
        return []
    found = []
    for text in listed:
        req = Requirement(text)
        wanted = req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras))
        if wanted and (req.marker is None or "extra" not in str(req.marker) or extras):
            found.append((req.name, tuple(req.extras)))
    return found


def _closure(roots: list[tuple[str, tuple[str, ...]]]) -> set[str]:
    """Every installed distribution that `roots` pull in, themselves included (normalised names)."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name, extras = stack.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key not in seen:
            seen.add(key)
            stack.extend(_requirements(name, extras))
    return seen


def extra_mb(backend: str) -> float:
    """MB on disk of everything the backend's extra adds to mnistlab's own dependencies (as
    pyproject.toml lists them): the backend, its converter and all they pull in."""
    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    base = _closure([(r.name, tuple(r.extras)) for r in map(Requirement, project["dependencies"])])
    extra = [Requirement(r) for r in project["optional-dependencies"][backend]]
    added = _closure([(r.name, tuple(r.extras)) for r in extra if r.marker is None or r.marker.evaluate()]) - base
    return round(sum(installed_mb(sorted(added)).values()), 1)


def cuda_libraries_mb() -> dict[str, float]:
    names = sorted({d.metadata["Name"] for d in metadata.distributions()
                    if (d.metadata["Name"] or "").lower().startswith("nvidia-")})
    return installed_mb(names)


def run_child(backend: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """This script with --child in a process of its own; its output echoed, its JSON line returned."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", backend, "--seeds", str(args.seeds),
               "--best-images", str(args.best_images), "--out", str(out)]
    if args.quick:
        command.append("--quick")
    if args.best_full:
        command.append("--best-full")
    # stderr (the libraries' start-up notes and warnings) is kept apart and shown only if the child dies.
    with tempfile.TemporaryFile("w+") as stderr:
        child_process = subprocess.Popen(command, env=child_env(backend), stdout=subprocess.PIPE, stderr=stderr,
                                         text=True)
        lines = []
        for line in child_process.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if not line.startswith('{"backend"'):
                print(f"  [{backend}] {line}", flush=True)
        child_process.wait()
        stderr.seek(0)
        errors = [line for line in stderr.read().splitlines() if line.strip()]
    reported = next((json.loads(line) for line in reversed(lines) if line.startswith('{"backend"')), None)
    if reported is None:
        print("\n".join(f"  [{backend}] {line}" for line in errors[-20:]), flush=True)
        last = (errors or lines or ["no output"])[-1]
        return {"errors": {"child": f"exit status {child_process.returncode}: {last.strip()[:300]}"}}
    return reported


def measure(backend: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    if importlib.util.find_spec(backend) is None:
        return {"errors": {"install": f"{backend} is not installed"}}
    repeats = 1 if args.quick else 3
    imports = {}
    for module in ("keras", "mnistlab.train"):
        try:
            imports[module] = import_seconds(backend, module, repeats)
        except RuntimeError as e:
            return {"errors": {"import": f"import {module}: {e}"}}
    print(f"{backend}: import keras {statistics.median(imports['keras']):.2f} s, "
          f"import mnistlab.train {statistics.median(imports['mnistlab.train']):.2f} s", flush=True)
    result = run_child(backend, args, out)
    result["import_s"] = imports
    result["install_mb"] = installed_mb(DISTRIBUTIONS[backend])
    result["extra_mb"] = extra_mb(backend)
    return result


def spread(values: list[float], scale: float, digits: int, unit: str) -> str:
    text = f"{statistics.mean(values) * scale:.{digits}f}{unit}"
    if len(values) > 1:
        text += f" ({min(values) * scale:.{digits}f}–{max(values) * scale:.{digits}f})"
    return text


def cells(r: dict[str, Any], best_full: bool) -> dict[str, str]:
    """One backend's column: row name -> text."""
    errors = r.get("errors", {})
    whole = next((errors[k] for k in ("install", "import", "child") if k in errors), None)  # no child figures

    def or_error(part: str, text: Callable[[], str]) -> str:
        if whole or part in errors:
            error = whole or errors[part]
            return f"failed: {error[:90]}…" if len(error) > 90 else f"failed: {error}"  # in full in the JSON
        return text() if part in r else "—"

    fast = r.get("fast") or []
    reached = [row["time_to_target_s"] for row in fast if row["time_to_target_s"] is not None]
    best = r.get("best") or {}
    n = best.get("extrapolated_from_images")
    column = {
        "device": or_error("device", lambda: r["device"]),
        "versions": f"keras {r['keras']}, {r['backend']} {r['backend_version']}" if "keras" in r else "—",
        f"`fast`: time to {TARGET * 100:.0f} % (mean, min–max)": or_error("fast", lambda: (
            f"{spread(reached, 1, 1, ' s')}, {len(reached)}/{len(fast)} seeds" if reached
            else f"not reached, 0/{len(fast)} seeds")),
        "`fast`: final test accuracy": or_error("fast", lambda: spread(
            [row["final_accuracy"] for row in fast], 100, 2, " %")),
        "`fast`: training s": or_error("fast", lambda: spread([row["train_s"] for row in fast], 1, 1, " s")),
        "`best`: s / epoch of 60,000": or_error("best", lambda: (
            f"{best['s_per_epoch']:.1f} s" + (f" (scaled from {n:,} images)" if n else ""))),
        "`best`: first epoch (tracing in it)": or_error("best", lambda: (
            f"{best['epoch_s'][0]:.1f} s on {best['train_images']:,} images")),
        **({"`best`: final test accuracy (--best-full)": or_error("best", lambda: (
            f"{best['final_accuracy'] * 100:.2f} % in {best['train_s']:.0f} s" if best["final_accuracy"] is not None
            else "— (--quick)"))} if best_full else {}),
        "inference, batch 1024": or_error("inference", lambda: f"{r['inference']['batch1024_img_s']:,} img/s"),
        "inference, one image": or_error("inference", lambda: f"{r['inference']['single_image_ms']:.2f} ms"),
    }
    imports = r.get("import_s", {})
    for module in ("keras", "mnistlab.train"):
        column[f"`import {module}`"] = f"{statistics.median(imports[module]):.2f} s" if module in imports else "—"
    sizes = r.get("install_mb")
    column["install (MB)"] = (f"{sum(sizes.values()):,.0f}: " + " + ".join(f"{k} {v:,.0f}" for k, v in sizes.items())
                              if sizes else "—")
    column["install: the extra with all it pulls in (MB)"] = (
        f"{r['extra_mb']:,.0f}" if "extra_mb" in r else "—")
    return {name: text.replace("|", "/") for name, text in column.items()}


def table(results: dict[str, dict[str, Any]], best_full: bool) -> None:
    columns = {backend: cells(r, best_full) for backend, r in results.items()}
    rows = list(next(iter(columns.values())))
    print("| | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for row in rows:
        print(f"| {row} | " + " | ".join(column[row] for column in columns.values()) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, of " + ", ".join(BACKENDS))
    parser.add_argument("--seeds", type=int, default=3, help="`fast` runs with seeds 0..N-1")
    parser.add_argument("--best-images", type=int, default=15_000,
                        help="training images of `best`'s two timed epochs, scaled to 60,000")
    parser.add_argument("--best-full", action="store_true",
                        help="train `best` as its preset says (22 epochs, all images): its accuracy too")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: one seed, {QUICK_IMAGES:,} images")
    parser.add_argument("--out", help="where the run folders go, a folder per backend (default: a temporary one)")
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)  # this script, as one backend's child
    args = parser.parse_args()
    if args.quick:
        args.seeds = 1
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return

    backends = args.backends.split(",")
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(sorted(unknown))}; choose from {', '.join(BACKENDS)}")
    info = header()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="mnistlab-backends-"))
    results = {}
    try:
        for backend in backends:
            results[backend] = measure(backend, args, out / backend)
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    cuda = cuda_libraries_mb()
    print()
    table(results, args.best_full)
    if cuda:
        print(f"\nCUDA libraries (nvidia-*, shared by the backends, not in the install row): "
              f"{sum(cuda.values()):,.0f} MB")
    if args.quick:
        print(f"\n--quick: {QUICK_IMAGES:,} training images and one seed; a smoke run, not figures to quote.")
    best_images = QUICK_IMAGES if args.quick else MNIST_TRAIN if args.best_full else args.best_images
    print(json.dumps({"benchmark": "backends", "target": TARGET, "seeds": args.seeds, "quick": args.quick,
                      "best_images": best_images, "best_full": args.best_full,
                      "machine": {k: v for k, v in info.items() if k != "versions"}, "versions": info["versions"],
                      "cuda_libraries_mb": cuda, "results": results}))


if __name__ == "__main__":
    main()

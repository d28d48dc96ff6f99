"""Which Keras backend should mnistlab use? Measures each installed one side by side.

    python benchmarks/backends.py [--epochs 2] [--backends tensorflow,jax,torch]

For every backend that imports, a fresh subprocess (so backends never share a process) measures:
start-up (import keras + backend), seconds per training epoch of the keras-io convnet
(`keras-example` preset, batch 128, 54,000 images, Adam) — the first epoch includes tracing and
compilation, later ones are the steady state —, inference throughput (batch 1024) on the 10k test
set, test accuracy after the epochs, the backend's install size, and whether `model.export(...,
format="onnx")` works and agrees with the Keras model. Only TensorFlow is a project dependency;
install the others into the same environment to compare (JAX: `pip install jax`; PyTorch:
`pip install torch==2.13.0`, the CPU build on this machine's disk). The runs go one after another:
the machine has two cores and a heavy neighbour would skew the ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Import name and the distribution folders that make up its install size.
BACKENDS = {
    "tensorflow": ["tensorflow", "tensorflow_cpu", "tf_keras"],
    "jax": ["jax", "jaxlib", "jax_plugins"],
    "torch": ["torch", "functorch", "torchgen"],
}

CHILD = r"""
import json, os, sys, tempfile, time
t0 = time.perf_counter()
import keras
keras.ops.convert_to_tensor([0.0])  # make the backend initialise its runtime
startup = time.perf_counter() - t0
import numpy as np
from mnistlab.data import load_mnist, one_hot, preprocess_images
from mnistlab.models import build_model, get_preset

epochs = int(sys.argv[1])
d = load_mnist(progress=False)
x, y = preprocess_images(d.x_train[:54000]), one_hot(d.y_train[:54000])
xt = preprocess_images(d.x_test)
keras.utils.set_random_seed(0)
model = build_model(get_preset("keras-example").model)
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
epoch_s = []
for _ in range(epochs):
    t = time.perf_counter()
    model.fit(x, y, batch_size=128, epochs=1, verbose=0)
    epoch_s.append(time.perf_counter() - t)
model.predict(xt[:1024], batch_size=1024, verbose=0)
t = time.perf_counter()
probs = model.predict(xt, batch_size=1024, verbose=0)
infer = len(xt) / (time.perf_counter() - t)
acc = float((np.asarray(probs).argmax(1) == d.y_test).mean())
try:
    import onnxruntime as ort
except ImportError:
    ort = None
onnx = "onnxruntime not installed"
if ort is not None:
  try:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        model.export(path, format="onnx", verbose=False)
        sess = ort.InferenceSession(path)
        got = sess.run(None, {sess.get_inputs()[0].name: xt[:256]})[0]
        onnx = "ok, max |diff| %.1e" % float(np.abs(got - np.asarray(probs[:256])).max())
  except Exception as e:
    onnx = "failed: " + type(e).__name__ + ": " + (str(e).splitlines() or [""])[0][:80]
print("RESULT " + json.dumps({"startup_s": startup, "epoch_s": epoch_s, "infer_img_s": infer,
                              "test_accuracy": acc, "onnx": onnx}))
"""


def install_mb(names: list[str]) -> float:
    """Megabytes on disk of the given top-level packages in this environment's site-packages."""
    site = Path(importlib.util.find_spec("keras").origin).parents[1]
    total = 0
    for name in names:
        folder = site / name
        if folder.is_dir():
            total += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per backend (>= 2)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _common import header  # noqa: E402

    header()
    results = {}
    for backend in args.backends.split(","):
        if importlib.util.find_spec(backend) is None:
            print(f"{backend:<11} not installed, skipped")
            continue
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        with tempfile.TemporaryDirectory() as tmp:
            child = Path(tmp) / "child.py"
            child.write_text(CHILD)
            proc = subprocess.run([sys.executable, str(child), str(args.epochs)], env=env,
                                  capture_output=True, text=True)
        line = next((row for row in proc.stdout.splitlines() if row.startswith("RESULT ")), None)
        if line is None:
            print(f"{backend:<11} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        r = json.loads(line[7:])
        r["install_mb"] = round(install_mb(BACKENDS[backend]))
        r["steady_epoch_s"] = min(r["epoch_s"][1:]) if len(r["epoch_s"]) > 1 else r["epoch_s"][0]
        results[backend] = r
        print(
            f"{backend:<11} start-up {r['startup_s']:5.1f} s  first epoch {r['epoch_s'][0]:5.1f} s  "
            f"steady epoch {r['steady_epoch_s']:5.1f} s  inference {r['infer_img_s']:8,.0f} img/s  "
            f"test acc {r['test_accuracy'] * 100:.2f} %  install {r['install_mb']:,} MB  ONNX: {r['onnx']}",
            flush=True,
        )
    if results:
        fastest = min(results, key=lambda b: results[b]["steady_epoch_s"])
        for r in results.values():
            r["epoch_time_vs_fastest"] = round(r["steady_epoch_s"] / results[fastest]["steady_epoch_s"], 2)
        print(f"fastest steady epoch: {fastest}; ratios " + ", ".join(
            f"{b} {r['epoch_time_vs_fastest']}x" for b, r in results.items()))
    print(json.dumps({"benchmark": "backends", "epochs": args.epochs, "results": results}))


if __name__ == "__main__":
    main()

"""Time to 99 % test accuracy: the keras-io recipe against our `fast` preset, side by side.

    python benchmarks/time_to_accuracy.py [--seeds 3] [--target 0.99] [--reference-epochs 15]

In one process, on the same data and backend, one after the other for each seed: the
`keras-example` preset with the keras-io recipe (Adam 1e-3, batch 128, validation split 0.1,
15 epochs) and the `fast` preset, both through mnistlab's own train(). After every epoch the
test accuracy is measured with the clock stopped, so "time to 99 %" is training time alone
(compilation in the first epoch included, for both). The final accuracy is that of the model
each run ends with, never an epoch picked by its test score. Then training and inference
throughput (batch 1024 over the 10k test images, and single-image latency) for both.
Ends with one JSON line holding every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mnistlab  # noqa: E402, F401  (chooses the backend and quiets TensorFlow before Keras loads)

# isort: split
import keras  # noqa: E402
from _common import header, inference  # noqa: E402

from mnistlab.data import load_mnist, preprocess_images  # noqa: E402
from mnistlab.models import preset_config  # noqa: E402
from mnistlab.train import train  # noqa: E402


class TestClock(keras.callbacks.Callback):
    """Accumulates training time per epoch and scores the test set with the clock stopped."""

    def __init__(self, x_test: np.ndarray, y_test: np.ndarray):
        super().__init__()
        self.x_test, self.y_test = x_test, y_test
        self.train_seconds = 0.0
        self.curve: list[tuple[float, float]] = []  # (training seconds so far, test accuracy)
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.train_seconds += time.perf_counter() - self._start
        probs = self.model.predict(self.x_test, batch_size=1024, verbose=0)
        self.curve.append((self.train_seconds, float((probs.argmax(1) == self.y_test).mean())))


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    """Training seconds at the first epoch whose test accuracy reaches target; None if none did."""
    return next((seconds for seconds, acc in curve if acc >= target), None)


def summarise(values: list[float | None]) -> dict[str, float | None]:
    got = [v for v in values if v is not None]
    if len(got) < len(values) or not got:
        return {"mean": None, "min": min(got) if got else None, "max": max(got) if got else None}
    return {"mean": statistics.mean(got), "min": min(got), "max": max(got),
            "stdev": statistics.stdev(got) if len(got) > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1, help="repeat with seeds 0..N-1; report mean and spread")
    parser.add_argument("--target", type=float, default=0.99, help="test accuracy to reach")
    parser.add_argument("--reference-epochs", type=int, default=15, help="keras-io recipe epochs (its own: 15)")
    args = parser.parse_args()

    info = header()
    data = load_mnist(progress=False)
    x_test = preprocess_images(data.x_test)
    runs = {"keras-example": [], "fast": []}
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for preset in runs:
                extra = {"epochs": args.reference_epochs} if preset == "keras-example" else {}
                cfg = preset_config(preset, seed=seed, verbose=0, out=f"{tmp}/{preset}-{seed}", **extra)
                clock = TestClock(x_test, data.y_test)
                result = train(cfg, data=data, callbacks=[clock])
                m = result.metrics
                row = {
                    "seed": seed,
                    "time_to_target_s": time_to(clock.curve, args.target),
                    "final_test_accuracy": m["test_accuracy"],
                    "train_seconds": round(clock.train_seconds, 2),
                    "epochs": m["epochs_run"],
                    "seconds_per_epoch": round(clock.train_seconds / m["epochs_run"], 2),
                    "train_img_s": round(m["train_images"] * m["epochs_run"] / clock.train_seconds),
                    "curve": [(round(s, 2), a) for s, a in clock.curve],
                }
                runs[preset].append(row)
                models[preset] = result.model
                reached = row["time_to_target_s"]
                print(
                    f"seed {seed} {preset:<14} time to {args.target * 100:.1f} %: "
                    f"{'not reached' if reached is None else f'{reached:.1f} s'}  "
                    f"final {row['final_test_accuracy'] * 100:.2f} %  "
                    f"{row['seconds_per_epoch']:.1f} s/epoch  {row['train_img_s']:,} train img/s",
                    flush=True,
                )
        speed = {preset: inference(model, x_test) for preset, model in models.items()}

    summary = {}
    for preset, rows in runs.items():
        summary[preset] = {
            "time_to_target_s": summarise([r["time_to_target_s"] for r in rows]),
            "final_test_accuracy": summarise([r["final_test_accuracy"] for r in rows]),
            "seconds_per_epoch": statistics.mean(r["seconds_per_epoch"] for r in rows),
            "train_img_s": statistics.mean(r["train_img_s"] for r in rows),
            **speed[preset],
        }
    ref = summary["keras-example"]["time_to_target_s"]["mean"]
    fast = summary["fast"]["time_to_target_s"]["mean"]
    ratio = ref / fast if ref and fast else None
    print()
    for preset, s in summary.items():
        t, a = s["time_to_target_s"], s["final_test_accuracy"]
        t_text = ("not reached by every seed" if t["mean"] is None
                  else f"{t['mean']:.1f} s (min {t['min']:.1f}, max {t['max']:.1f})")
        print(
            f"{preset:<14} to {args.target * 100:.1f} %: {t_text};  final {a['mean'] * 100:.2f} % "
            f"(min {a['min'] * 100:.2f}, max {a['max'] * 100:.2f});  {s['seconds_per_epoch']:.1f} s/epoch;  "
            f"train {s['train_img_s']:,.0f} img/s;  inference {s['batch1024_img_s']:,} img/s at batch 1024, "
            f"{s['single_image_ms']:.2f} ms for one image"
        )
    print(f"fast reaches {args.target * 100:.1f} % "
          + (f"{ratio:.1f}x sooner than the keras-io recipe" if ratio
             else "(ratio undefined: a preset missed the target)"))
    print(json.dumps({"benchmark": "time_to_accuracy", "target": args.target, "seeds": args.seeds,
                      "machine": {k: v for k, v in info.items() if k != "versions"}, "versions": info["versions"],
                      "summary": summary, "speedup_to_target": ratio, "runs": runs}))


if __name__ == "__main__":
    main()

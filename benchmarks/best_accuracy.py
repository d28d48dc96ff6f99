"""The most accurate single model here: the `best` preset over seeds, then their ensemble and TTA.

    python benchmarks/best_accuracy.py [--seeds 3] [--preset best] [--out DIR]

With --out, the seeds' run folders are kept there, and a seed whose folder is complete is
loaded instead of trained again, so an interrupted measurement resumes.

Each seed is trained through mnistlab's own train() with the preset's fixed schedule (no
validation split, no early stopping), and its final model is scored once on the test set: the
figure is never an epoch picked by test accuracy. Then the seeds' models are combined the way
`mnistlab train --ensemble N` combines them (mean probability), and scored with and without
test-time augmentation (`mnistlab evaluate --tta`: the image and its four 1-pixel shifts).
Ends with one JSON line holding every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, inference  # noqa: E402

from mnistlab.data import load_mnist, preprocess_images  # noqa: E402
from mnistlab.evaluate import scores  # noqa: E402
from mnistlab.inference import predict_probs  # noqa: E402
from mnistlab.models import preset_config  # noqa: E402
from mnistlab.runs import RunDir  # noqa: E402
from mnistlab.train import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument("--preset", default="best", help="preset to measure")
    parser.add_argument("--out", help="keep the seeds' run folders here (default: a temporary folder)")
    args = parser.parse_args()

    info = header()
    data = load_mnist(progress=False)
    rows, probs, probs_tta = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        if args.out:
            tmp = args.out
            Path(tmp).mkdir(parents=True, exist_ok=True)
        for seed in range(args.seeds):
            folder = Path(tmp) / f"seed{seed}"
            if (folder / "metrics.json").is_file():  # finished by an earlier, interrupted run
                run = RunDir.open(folder)
                model, m = run.load_model(), run.read_metrics()
            else:
                result = train(preset_config(args.preset, seed=seed, verbose=0, out=str(folder)), data=data)
                model, m = result.model, result.metrics
            probs.append(predict_probs(model, data.x_test))
            probs_tta.append(predict_probs(model, data.x_test, tta=True))
            tta_acc = scores(probs_tta[-1], data.y_test)["accuracy"]
            rows.append({"seed": seed, "test_accuracy": m["test_accuracy"], "tta_test_accuracy": tta_acc,
                         "train_seconds": m["train_seconds"], "epochs": m["epochs_run"],
                         "train_img_s": m["train_images_per_s"]})
            if seed == 0:
                speed = inference(model, preprocess_images(data.x_test))
            print(f"seed {seed}: {m['test_accuracy'] * 100:.2f} % ({tta_acc * 100:.2f} % with TTA) "
                  f"after {m['epochs_run']} epochs, {m['train_seconds']:.0f} s of training", flush=True)

    accs = [r["test_accuracy"] for r in rows]
    ensemble = scores(np.mean(probs, axis=0), data.y_test)["accuracy"]
    ensemble_tta = scores(np.mean(probs_tta, axis=0), data.y_test)["accuracy"]
    summary = {
        "single_mean": statistics.mean(accs),
        "single_min": min(accs),
        "single_max": max(accs),
        "single_tta_mean": statistics.mean(r["tta_test_accuracy"] for r in rows),
        "train_seconds_max": max(r["train_seconds"] for r in rows),
        "ensemble": ensemble,
        "ensemble_tta": ensemble_tta,
        "train_img_s": statistics.mean(r["train_img_s"] for r in rows),
        **speed,
    }
    print(f"\n{args.preset}: {summary['single_mean'] * 100:.2f} % mean of {len(rows)} seeds "
          f"(min {summary['single_min'] * 100:.2f}, max {summary['single_max'] * 100:.2f}); "
          f"longest training {summary['train_seconds_max']:.0f} s")
    print(f"ensemble of {len(rows)}: {ensemble * 100:.2f} %; with TTA {ensemble_tta * 100:.2f} %; "
          f"single models with TTA {summary['single_tta_mean'] * 100:.2f} % on average")
    print(f"train {summary['train_img_s']:,.0f} img/s; inference {speed['batch1024_img_s']:,} img/s at batch 1024, "
          f"{speed['single_image_ms']:.2f} ms for one image")
    print(json.dumps({"benchmark": "best_accuracy", "preset": args.preset, "seeds": len(rows),
                      "machine": {k: v for k, v in info.items() if k != "versions"}, "versions": info["versions"],
                      "summary": summary, "runs": rows}))


if __name__ == "__main__":
    main()

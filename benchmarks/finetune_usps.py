"""MNIST -> USPS: how much fine-tuning gains on another set of digits, and what it forgets.

    python benchmarks/finetune_usps.py [--parent RUN] [--usps DIR] [--shot-seeds 3]

The parent is a run folder, or (by default) the `fast` preset trained here with seed 0. USPS comes
from --usps (a folder with zip.train.gz and zip.test.gz; default ../shared/data/usps beside the
checkout), else mnistlab's own cache or download. Each row goes through `mnistlab finetune` with
its default settings (finetune.FINETUNE_TRAIN, 75 % MNIST replay): ten labels per class (over
--shot-seeds draws of the ten), all 7,291 training images, and all of them without replay (what
replay prevents). Each fine-tune's control trains the same architecture from scratch on the same
images. Scores: USPS's 2,007 test images, MNIST's 10,000 test images, each on the final model.
Published anchors: LeNet-style MNIST -> USPS without adaptation ~75 %, ADDA ~89-94 %, human
error on USPS ~2.5 %. Ends with one JSON line holding every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header  # noqa: E402

from mnistlab.data import load_digit_set, load_mnist  # noqa: E402
from mnistlab.finetune import finetune, finetune_config  # noqa: E402
from mnistlab.models import preset_config  # noqa: E402
from mnistlab.train import train  # noqa: E402

SHARED_USPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "usps"
# The targets, in accuracy points.
TARGETS = {"shots10": 0.95, "full": 0.98, "mnist_drop": 0.003}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent", help="run folder to fine-tune (default: train the fast preset, seed 0)")
    parser.add_argument("--usps", default=str(SHARED_USPS) if SHARED_USPS.is_dir() else "usps",
                        help="USPS folder, or 'usps' for mnistlab's cache/download")
    parser.add_argument("--shot-seeds", type=int, default=3, help="draws of the ten labels per class")
    args = parser.parse_args()

    info = header()
    mnist = load_mnist(progress=False)
    usps = load_digit_set(args.usps, progress=False)
    print(f"USPS: {len(usps.x_train):,} train, {len(usps.x_test):,} test, from {usps.source}")
    with tempfile.TemporaryDirectory() as tmp:
        parent = args.parent
        if parent is None:
            parent = f"{tmp}/parent"
            print("training the parent: the fast preset, seed 0", flush=True)
            train(preset_config("fast", seed=0, verbose=0, out=parent), data=mnist)

        def run(name: str, seed: int = 0, **finetune_fields) -> dict:
            cfg = finetune_config(parent, {"data": args.usps, **finetune_fields},
                                  {"seed": seed, "verbose": 0, "out": f"{tmp}/{name}-seed{seed}"})
            r = finetune(cfg, mnist=mnist, target=usps)
            row = {"name": name, "seed": seed, "after": r.report["after"], "control": r.report["control"],
                   "before": r.report["before"], "epochs": r.run.metrics["epochs_run"],
                   "train_seconds": r.report["train_seconds"]}
            scratch = (f"; from scratch {row['control']['target_test_accuracy'] * 100:.2f} %"
                       if row["control"] else "")
            print(f"{name} seed {seed}: USPS {row['after']['target_test_accuracy'] * 100:.2f} %, "
                  f"MNIST {row['after']['mnist_test_accuracy'] * 100:.2f} %, {row['epochs']} epochs, "
                  f"{row['train_seconds']:.0f} s{scratch}", flush=True)
            return row

        shots = [run("shots10", seed, shots=10) for seed in range(args.shot_seeds)]
        full = run("full")
        no_replay = run("full-no-replay", replay=0.0, control=False)

    before = full["before"]

    def mean(rows: list[dict], part: str, key: str) -> float:
        return statistics.mean(r[part][key] for r in rows)

    table = [
        ("MNIST model as is", before["target_test_accuracy"], before["mnist_test_accuracy"], None),
        ("fine-tuned, 10 labels per class", mean(shots, "after", "target_test_accuracy"),
         mean(shots, "after", "mnist_test_accuracy"), TARGETS["shots10"]),
        ("from scratch, 10 labels per class", mean(shots, "control", "target_test_accuracy"), None, None),
        ("fine-tuned, all 7,291", full["after"]["target_test_accuracy"], full["after"]["mnist_test_accuracy"],
         TARGETS["full"]),
        ("from scratch, all 7,291", full["control"]["target_test_accuracy"], None, None),
        ("fine-tuned, all 7,291, no replay", no_replay["after"]["target_test_accuracy"],
         no_replay["after"]["mnist_test_accuracy"], None),
    ]
    print(f"\n{'':<36}{'USPS test':>10}{'MNIST test':>12}  target")
    for name, usps_acc, mnist_acc, target in table:
        mnist_text = f"{mnist_acc * 100:>11.2f}%" if mnist_acc is not None else f"{'':>12}"
        target_text = f"USPS >= {target * 100:.0f} %" if target else ""
        print(f"{name:<36}{usps_acc * 100:>9.2f}%{mnist_text}  {target_text}")
    worst_drop = max(before["mnist_test_accuracy"] - r["after"]["mnist_test_accuracy"] for r in [*shots, full])
    print(f"MNIST drop with replay: at most {worst_drop * 100:.2f} points (target <= "
          f"{TARGETS['mnist_drop'] * 100:.1f}); without replay "
          f"{(before['mnist_test_accuracy'] - no_replay['after']['mnist_test_accuracy']) * 100:.2f} points")
    if len(shots) > 1:
        accs = [r["after"]["target_test_accuracy"] * 100 for r in shots]
        print(f"10 labels per class over {len(shots)} draws: {min(accs):.2f}-{max(accs):.2f} %")

    summary = {
        "source_only_usps": before["target_test_accuracy"],
        "source_only_mnist": before["mnist_test_accuracy"],
        "shots10_usps": mean(shots, "after", "target_test_accuracy"),
        "shots10_mnist": mean(shots, "after", "mnist_test_accuracy"),
        "shots10_scratch_usps": mean(shots, "control", "target_test_accuracy"),
        "full_usps": full["after"]["target_test_accuracy"],
        "full_mnist": full["after"]["mnist_test_accuracy"],
        "full_scratch_usps": full["control"]["target_test_accuracy"],
        "full_no_replay_usps": no_replay["after"]["target_test_accuracy"],
        "full_no_replay_mnist": no_replay["after"]["mnist_test_accuracy"],
        "mnist_drop_max_with_replay": worst_drop,
    }
    print(json.dumps({"benchmark": "finetune_usps", "parent": args.parent or "fast seed 0",
                      "machine": {k: v for k, v in info.items() if k != "versions"}, "versions": info["versions"],
                      "summary": summary, "targets": TARGETS, "runs": [*shots, full, no_replay]}))


if __name__ == "__main__":
    main()

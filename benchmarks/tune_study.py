"""Does tuning pay? A 20-trial study with pruning, then its best config against the `cnn` preset.

    python benchmarks/tune_study.py [--trials 20] [--epochs 3] [--train-limit 0] [--timeout 1800]
                                    [--trial-timeout 150] [--out DIR]
    python benchmarks/tune_study.py --trials 3 --epochs 1 --train-limit 3000   # a quick try

The study is mnistlab.tune over DEFAULT_SPACE (TPE, median pruning from the sixth trial on): each
trial trains the cnn preset's run settings with the trial's settings, for --epochs epochs on the
first --train-limit training images (0 = all 60,000), and is scored by its validation accuracy
on the last 10 % of them. --timeout stops starting new trials, --trial-timeout cuts a trial's
training short. Then both contenders are trained through the CLI as a user would, with a seed
the study never used (--retrain-seed), the same epochs, slice and split:
`mnistlab train --config best.toml` and `mnistlab train --model cnn`. They are compared on that
validation split; the test accuracy is printed beside it for information and chose nothing.
Ends with one JSON line holding every figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header  # noqa: E402

from mnistlab.data import load_mnist  # noqa: E402
from mnistlab.models import preset_config  # noqa: E402
from mnistlab.tune import DEFAULT_SPACE, format_trials, tune  # noqa: E402

MNISTLAB = str(Path(sys.executable).with_name("mnistlab"))


def train_cli(out: Path, *flags: str) -> dict:
    """`mnistlab train FLAGS --out OUT --quiet`; its metrics.json."""
    started = time.perf_counter()
    done = subprocess.run([MNISTLAB, "train", *flags, "--out", str(out), "--quiet"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"mnistlab train {' '.join(flags)} failed:\n{done.stderr}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"val_accuracy": metrics["val_accuracy"], "test_accuracy": metrics["test_accuracy"],
            "params": metrics["params"], "train_seconds": metrics["train_seconds"],
            "wall_seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials in the study (default 20)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every trial and of both retrainings")
    parser.add_argument("--train-limit", type=int, default=0, help="first N training images (default all 60,000)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds after which no trial starts")
    parser.add_argument("--trial-timeout", type=float, default=150, help="seconds of training per trial at most")
    parser.add_argument("--seed", type=int, default=0, help="the study's seed (sampler and every trial)")
    parser.add_argument("--retrain-seed", type=int, default=1, help="seed of both final trainings")
    parser.add_argument("--out", help="keep the study folder and both runs here (default: a temporary folder)")
    args = parser.parse_args()

    info = header()
    data = load_mnist(progress=False)
    # The cnn preset's run settings with the epoch budget; patience 0 so that every run is scored
    # on its last epoch, the same way for trials and both contenders.
    base = preset_config("cnn", epochs=args.epochs, train_limit=args.train_limit, validation_split=0.1,
                         patience=0, seed=args.seed, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        root.mkdir(parents=True, exist_ok=True)
        study_dir = root / "study"
        started = time.perf_counter()
        summary = tune(DEFAULT_SPACE, base=base, study_dir=study_dir, study_name="tune-study", trials=args.trials,
                       timeout=args.timeout, trial_timeout=args.trial_timeout, data=data, seed=args.seed)
        study_seconds = time.perf_counter() - started
        print(format_trials(summary["rows"], summary["best"]["number"] if summary["best"] else None))
        if summary["best"] is None:
            sys.exit("no trial completed; nothing to compare")
        print(f"study: {summary['trials']} trials ({summary['complete']} complete, {summary['pruned']} pruned, "
              f"{summary['fail']} failed) in {study_seconds / 60:.1f} min; best #{summary['best']['number']} "
              f"{summary['best']['val_accuracy'] * 100:.2f} %", flush=True)

        same = ["--seed", str(args.retrain_seed), "--epochs", str(args.epochs),
                "--train-limit", str(args.train_limit), "--validation-split", "0.1", "--patience", "0"]
        tuned = train_cli(root / "tuned", "--config", str(study_dir / "best.toml"), *same)
        cnn = train_cli(root / "cnn", "--model", "cnn", *same)

    print(f"\n{'':<22}{'val accuracy':>14}{'test accuracy':>15}{'parameters':>12}{'train s':>9}")
    for name, r in (("tuned (best.toml)", tuned), ("cnn preset", cnn)):
        print(f"{name:<22}{r['val_accuracy'] * 100:>12.2f} %{r['test_accuracy'] * 100:>13.2f} %"
              f"{r['params']:>12,}{r['train_seconds']:>9.0f}")
    beats = tuned["val_accuracy"] > cnn["val_accuracy"]
    print(f"tuned {'beats' if beats else 'does not beat'} cnn on validation by "
          f"{(tuned['val_accuracy'] - cnn['val_accuracy']) * 100:+.2f} points (seed {args.retrain_seed})")
    print(json.dumps({
        "benchmark": "tune_study",
        "machine": {k: v for k, v in info.items() if k != "versions"},
        "versions": {**info["versions"], **summary["versions"]},
        "settings": {k: getattr(args, k) for k in ("trials", "epochs", "train_limit", "timeout", "trial_timeout",
                                                   "seed", "retrain_seed")},
        "study": {"seconds": round(study_seconds, 1), "trials": summary["trials"], "complete": summary["complete"],
                  "pruned": summary["pruned"], "failed": summary["fail"], "best": summary["best"]},
        "tuned": tuned,
        "cnn": cnn,
        "beats_cnn": beats,
    }))


if __name__ == "__main__":
    main()

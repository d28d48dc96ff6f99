"""Fine-tuning: adapt a trained run to new digits, and measure what it gained and forgot.

    mnistlab finetune runs/<name> --data usps --shots 10 --replay 0.5

The model of a run folder is trained further by train() itself (the one training path, started
from a model instead of built from scratch) on target data from `mnistlab.data.load_digit_set`:
USPS, the UCI digits, a folder of images (the drawing page's corrections among them) or an .npz.
Before and after, it is scored on the target's held-out test split and on MNIST's test set
(forgetting); as a control, the same architecture is trained from scratch on the same target
images. The comparison goes into the run's metrics.json and finetune.txt.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.config import (
    FINETUNE_TRAIN,
    Config,
    ConfigError,
    FinetuneConfig,
    TrainConfig,
    config_from_dict,
    read_config_file,
    resolve_config,
)
from mnistlab.data import MnistArrays, load_mnist
from mnistlab.evaluate import evaluate
from mnistlab.files import atomic_write_json, atomic_write_text
from mnistlab.runs import RunDir
from mnistlab.train import RunResult, train

# The control trains from scratch on the same images with the classic recipe (Adam 1e-3) and no
# replay, until its validation accuracy stops rising: a from-scratch model needs many more steps
# than a fine-tune, and the fine-tune's 20 one-cycle epochs left it at 16-25 % on ten USPS shots.
CONTROL_TRAIN = {"learning_rate": 1e-3, "schedule": "constant"}
CONTROL_PATIENCE = 10  # epochs without a validation gain before the control stops
CORRECTIONS = "corrections"  # --data corrections: the parent run's corrections store


@dataclass(frozen=True)
class FinetuneResult:
    """The fine-tuned run, the control trained from scratch (if any) and the before/after figures."""

    run: RunResult
    control: RunResult | None
    report: dict[str, Any]


def finetune_config(
    parent: str | Path,
    finetune: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    file_data: dict[str, Any] | None = None,
) -> Config:
    """The Config of a fine-tune of run `parent`: its architecture, FINETUNE_TRAIN < a config
    file's [train] and [finetune] tables < the overrides given.

    Raises:
        RunError / ConfigError: no such run, a config that cannot be read, a bad field.
    """
    run = RunDir.open(parent)
    parent_cfg = config_from_dict(read_config_file(run.config))
    file_data = {k: v for k, v in (file_data or {}).items() if k != "model"}  # the parent's architecture
    merged = {**file_data.get("finetune", {}), **(finetune or {}), "parent": str(run.path)}
    return resolve_config(parent_cfg.model, file_data, None, train, FINETUNE_TRAIN, merged)


def finetune(
    cfg: Config, *, mnist: MnistArrays | None = None, target: Any | None = None, callbacks: list[Any] | None = None
) -> FinetuneResult:
    """Fine-tune cfg.finetune.parent's model on cfg.finetune.data, with a before/after report.

    Args:
        cfg: a fine-tune's Config (finetune_config builds one).
        mnist: MNIST in memory (replay, forgetting); loaded like `mnistlab train` when None.
        target: the target DigitSet already loaded; from cfg.finetune.data when None.
        callbacks: extra Keras callbacks for the fine-tune's fit (a lesson's progress file).

    Returns:
        The fine-tuned run, the control run, and the report also written to metrics.json
        ("finetune") and finetune.txt.

    Raises:
        MnistlabError: a missing parent, target data that cannot be read, too few images for
            the shots asked, a run folder that exists.
    """
    f, t = cfg.finetune, cfg.train
    if f is None:
        raise ConfigError("finetune() needs a Config with a [finetune] table; see finetune_config().")
    if t.ensemble > 1:
        raise ConfigError("fine-tuning trains one model; ensemble must be 1.")
    parent = RunDir.open(f.parent)
    if mnist is None:
        mnist = load_mnist(path=t.data_path or None, offline=t.offline, progress=t.verbose > 0)
    if target is None:
        target = load_target(f, parent, t)
    x, y = target.x_train, target.y_train
    if f.shots:
        from mnistlab.data import select_shots

        x, y = select_shots(x, y, f.shots, t.seed)
    order = stratified_order(y, t.validation_split, t.seed)
    target = dataclasses.replace(target, x_train=x[order], y_train=y[order])

    model = parent.load_model()
    before = _scores(model, target, mnist)
    replay = (mnist.x_train, mnist.y_train) if f.replay > 0 else None
    result = train(cfg, data=target, callbacks=callbacks, model=model, replay=replay)
    after = _scores(result.model, target, mnist)

    control = None
    if f.control:
        stopping = {"patience": CONTROL_PATIENCE} if t.validation_split > 0 else {}
        control_train = dataclasses.replace(t, **CONTROL_TRAIN, **stopping, epochs=f.control_epochs,
                                            out=str(result.run.control.path))
        control_cfg = dataclasses.replace(cfg, train=control_train, finetune=None)
        if t.verbose:
            print("control: the same architecture from scratch on the same target images", flush=True)
        control = train(control_cfg, data=target)

    report = {
        "parent": str(parent.path),
        "target": {
            "source": target.source,
            "test_from": target.test_from,
            "train_images": int(len(target.x_train)),
            "test_images": int(len(target.x_test)),
            "dropped": int(getattr(target, "dropped", 0)),
            "sha256": target.checksums(),
        },
        "strategy": f.strategy,
        "shots": f.shots,
        "replay": f.replay,
        "before": before,
        "after": after,
        "control": None if control is None else _scores(control.model, target, mnist),
        "train_seconds": result.metrics["train_seconds"],
    }
    metrics = {**result.metrics, "finetune": report}
    atomic_write_json(result.run.metrics, metrics)
    atomic_write_text(result.run.finetune_report, format_finetune(report) + "\n")
    return FinetuneResult(run=dataclasses.replace(result, metrics=metrics), control=control, report=report)


def load_target(f: FinetuneConfig, parent: RunDir, t: TrainConfig) -> Any:
    """The target DigitSet that f.data names; `corrections` is the parent run's store."""
    from mnistlab.data import load_digit_set

    source = parent.corrections if f.data == CORRECTIONS else f.data
    if not str(source):
        raise ConfigError("say which digits to fine-tune on: "
                          "--data usps | uci-digits | corrections | FOLDER | FILE.npz.")
    return load_digit_set(source, test_fraction=f.test_fraction, seed=t.seed, offline=t.offline,
                          progress=t.verbose > 0)


def stratified_order(y: np.ndarray, validation_split: float, seed: int) -> np.ndarray:
    """An order of the images (seeded) whose last `validation_split` holds that share of every
    class: train() holds out the tail, and a tail of images sorted by class would be one class."""
    rng = np.random.default_rng(seed)
    # Each image's rank within its class, as a fraction: sorting by it interleaves the classes.
    position = np.empty(len(y))
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        position[rng.permutation(members)] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.argsort(position, kind="stable")


def _scores(model: Any, target: Any, mnist: MnistArrays) -> dict[str, float]:
    return {
        "target_test_accuracy": evaluate(model, target.x_test, target.y_test)["accuracy"],
        "mnist_test_accuracy": evaluate(model, mnist.x_test, mnist.y_test)["accuracy"],
    }


def format_finetune(report: dict[str, Any]) -> str:
    """The before/after table a person reads: target and MNIST test accuracy for each model."""
    target = report["target"]
    shots = f"{report['shots']} per class" if report["shots"] else "all"
    lines = [
        f"fine-tune of {report['parent']} on {target['source']}",
        f"  {target['train_images']:,} target training images ({shots}), {target['test_images']:,} held out "
        f"({target['test_from']}); strategy {report['strategy']}, replay {report['replay']:.0%}",
        "",
        f"{'model':<34}{'target test':>12}{'MNIST test':>12}",
    ]
    rows = [("before (source only)", report["before"]), ("after fine-tuning", report["after"])]
    if report["control"]:
        rows.append(("control: from scratch, same data", report["control"]))
    for name, s in rows:
        lines.append(f"{name:<34}{s['target_test_accuracy'] * 100:>11.2f}%{s['mnist_test_accuracy'] * 100:>11.2f}%")
    drop = (report["before"]["mnist_test_accuracy"] - report["after"]["mnist_test_accuracy"]) * 100
    gain = (report["after"]["target_test_accuracy"] - report["before"]["target_test_accuracy"]) * 100
    lines += ["", f"target {gain:+.2f} points; MNIST {-drop:+.2f} points (forgetting)"]
    return "\n".join(lines)

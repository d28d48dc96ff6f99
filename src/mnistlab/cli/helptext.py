"""What each config field's flag means, for `--help`: its meaning, unit and allowed values.

    mnistlab train --model best --help    # every flag, with the default that preset `best` uses

The wording follows the field comments in mnistlab.config; the default a flag's help shows is
given by the caller (flags.py), as the command will resolve it, not the dataclass's own.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mnistlab.config import (
    ACTIVATIONS,
    AUGMENT_STYLES,
    MAX_EPOCHS,
    MAX_STEPS_PER_EXECUTION,
    PADDINGS,
    POOLINGS,
    SCHEDULES,
    STRATEGIES,
)

# The values a text field takes, shown as its metavar (`--schedule constant|onecycle`). They are
# listed, not enforced by argparse: the Config's own check refuses others in one line.
CHOICES: dict[str, tuple[str, ...]] = {
    "padding": PADDINGS,
    "activation": ACTIVATIONS,
    "dense_activation": ACTIVATIONS,
    "pooling": POOLINGS,
    "schedule": SCHEDULES,
    "augment_style": AUGMENT_STYLES,
    "strategy": STRATEGIES,
    "strides": ("1", "2"),
}

# What a flag's value is, where the field's name does not say it (an int is N by default).
_METAVARS = {
    "learning_rate": "RATE", "head_learning_rate": "RATE", "dropout": "RATE",
    "warmup": "FRACTION", "label_smoothing": "FRACTION", "validation_split": "FRACTION", "replay": "FRACTION",
    "test_fraction": "FRACTION", "augment": "STRENGTH", "patience": "EPOCHS", "l2": "PENALTY",
    "kernel_size": "PIXELS", "stem_kernel_size": "PIXELS", "out": "DIR", "data_path": "PATH",
}

# Field -> its help, before "(default ...)". Keys are unique across ModelConfig, TrainConfig and
# FinetuneConfig; tests/test_cli.py checks that every field with a flag has one.
FIELD_HELP: dict[str, str] = {
    # ModelConfig: the architecture
    "arch": "network builder (mnistlab.models.REGISTRY)",
    "conv_filters": "filters of each conv block, one number per block, e.g. 32,64 (none: no conv blocks)",
    "convs_per_block": "conv layers in each block before its pooling, >= 1",
    "kernel_size": "side of each square conv kernel, in pixels",
    "stem_kernel_size": "kernel side of the very first conv, in pixels (a wider stem); 0 = --kernel-size",
    "strides": "stride of each block's first conv: 2 halves the resolution (instead of --pooling)",
    "padding": "conv padding: same keeps the size, valid shrinks it by kernel side - 1",
    "activation": "activation after each conv",
    "pooling": "pooling after each block, 2x2 with stride 2; none: no pooling",
    "dense_units": "units of each hidden dense layer before the 10-way softmax, e.g. 256,128 "
                   "(none: the softmax straight after the features)",
    "dense_activation": "activation after each hidden dense layer",
    "dropout": "dropout rate before every dense layer, the output included, in [0, 1)",
    "batch_norm": "BatchNormalization after every conv and hidden dense layer",
    "l2": "L2 penalty on every kernel, added to the loss, >= 0",
    # TrainConfig: the run
    "epochs": f"passes over the training images, 1 to {MAX_EPOCHS:,}; with --patience, an upper bound",
    "batch_size": "images per training step",
    "steps_per_execution": "training steps per call into the compiled graph, 1 to "
                           f"{MAX_STEPS_PER_EXECUTION:,}: more means less Python overhead per step, and a "
                           "progress bar that moves every N steps; 1 = Keras's default",
    "devices": "data-parallel replicas, 1 to 64: more than 1 trains on the first N GPUs (else N virtual "
               "CPUs) with tf.distribute.MirroredStrategy, each step's --batch-size split across them",
    "learning_rate": "Adam's step size, > 0; with --schedule onecycle, its peak",
    "schedule": "learning rate over the run: constant, or onecycle (a linear warm-up over --warmup of the "
                "steps, then a cosine decay to 0)",
    "warmup": "onecycle only: the fraction of all steps spent warming up, in [0, 1)",
    "label_smoothing": "weight moved from the true class to all classes, in [0, 1)",
    "augment": "strength of the augmentation of training images, 0 to 3: 0 = off, 1 = up to +-10 degrees "
               "of rotation, +-10 %% shift and +-10 %% zoom (never flips: a flipped digit is another digit)",
    "augment_style": "what --augment varies: digit = rotation, shift and zoom; handwriting = also slant, "
                     "stroke width, blur and faint ink, what varies between writers and pens",
    "settle_epochs": "the run's last N epochs augment at half the --augment strength, the step size "
                     "restarting at a tenth of --learning-rate and decaying to 0: the model ends on images "
                     "nearer those it reads; 0 = none",
    "extra_train": "digit sets added to MNIST's training images (and, by --validation-split, its "
                   "validation images), e.g. usps: more writers",
    "writing_variants": "ways of writing a digit that MNIST lacks, drawn onto copies of its training digits: "
                        "flagged-ones: the continental 1; hooked-ends: a pen's curl at the end of a 2 or 6",
    "validation_split": "fraction of the training images held out from their end for validation, in [0, 1); "
                        "0 = none",
    "patience": "epochs without a gain in validation accuracy before training stops; 0 = never stop early "
                "(more needs --validation-split)",
    "ensemble": "models trained, 1 to 64, with seeds --seed, --seed + 1, ...; their mean is the model",
    "seed": "seeds Python, NumPy and the backend, 0 to 2**32 - 1; the same seed on CPU gives the same run",
    "train_limit": "train on the first N training images only, for quick tries; 0 = all",
    "test_limit": "evaluate on the first N test images only; 0 = all 10,000",
    "out": "the run folder to write",
    "data_path": "MNIST files to use: a folder of the four IDX files (.gz or not) or a Keras mnist.npz",
    "offline": "never touch the network for data; fail with what is missing",
    # FinetuneConfig: how to adapt a run
    "strategy": "which weights move: head = the dense layers after the flatten (the features frozen), "
                "all = every layer, head-then-all = the head alone for --head-epochs, then all",
    "head_learning_rate": "Adam's step size for the head, > 0; the other layers use --learning-rate",
    "head_epochs": "head-then-all only: epochs of the head alone before every layer trains",
    "shots": "labelled target images per class to train on, drawn with --seed; 0 = all of them",
    "replay": "share of every batch drawn afresh from MNIST's training images, in [0, 0.9], so the model "
              "keeps what it knew",
    "test_fraction": "share of each class held out for testing, in (0, 1), where the target has no test "
                     "split of its own",
    "control": "also train the architecture from scratch on the same target images, to compare with",
    "control_epochs": "the control's upper bound on epochs; it stops when its validation accuracy stalls",
}

# What an empty value means, where "none" would not say it. {model} is the model's name.
_WHEN_EMPTY = {
    "out": "runs/{model}-<date>-<time>",
    "data_path": "the MNIST cache, filled by one download",
}


def shown_value(value: Any) -> str:
    """A setting as its flag takes it (32,64 for a tuple, on or off for a bool), so that the value
    shown, given back as the flag, is the value; "none" for an empty tuple."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)  # a float's shortest exact form: 0.015, 0.0003


def field_help(field: dataclasses.Field, value: Any, model: str = "") -> str:
    """The help of the flag of `field`, ending "(default X)" with the `value` the command will use.

    model: the model's name, for what an empty --out means.
    """
    if value == "" and field.name in _WHEN_EMPTY:
        default = _WHEN_EMPTY[field.name].format(model=model or "<model>")
    else:
        default = shown_value(value)
    return f"{FIELD_HELP[field.name]} (default {default})"


def field_metavar(field: dataclasses.Field, choices: dict[str, tuple[str, ...]] | None = None) -> str:
    """A flag's metavar: its allowed values (`constant|onecycle`) where there are few, else a noun."""
    allowed = {**CHOICES, **(choices or {})}.get(field.name)
    if allowed:
        return "|".join(allowed)
    if str(field.type).startswith("tuple"):
        return "N,N,..." if "int" in str(field.type) else "NAME,..."
    return _METAVARS.get(field.name, "N" if str(field.type) == "int" else "X")

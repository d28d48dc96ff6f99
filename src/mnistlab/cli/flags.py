"""The flags of every `mnistlab` command, and the Config that train and tune build from them.

    mnistlab train --help     # a flag per TrainConfig and ModelConfig field, from the dataclasses

Config settings come in layers: defaults < preset < --config file < flags (`config_from_args`).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from mnistlab.config import (
    DEFAULT_PRESET,
    FINETUNE_TRAIN,
    Config,
    FinetuneConfig,
    ModelConfig,
    TrainConfig,
    read_config_file,
    resolve_config,
)
from mnistlab.version import __version__

# Fields that have their own flag or make no sense as one.
_MODEL_FLAG_SKIP = {"name"}
_TRAIN_FLAG_SKIP = {"verbose"}
_FINETUNE_FLAG_SKIP = {"parent", "data"}  # the positional RUN and --data


def _field_flags(
    group: argparse._ArgumentGroup, cls: type, skip: set[str], prefix: str, defaults: dict[str, Any] | None = None
) -> None:
    """Add one --flag per dataclass field; unset flags stay out of the namespace (SUPPRESS).

    defaults: what the command uses instead of a field's own default, for the help text.
    """
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        dest = f"{prefix}{f.name}"
        if f.type in ("bool", bool):
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS)
        else:
            metavar = "N,N,..." if str(f.type).startswith("tuple") else f.name.split("_")[-1].upper()
            default = (defaults or {}).get(f.name, f.default)
            group.add_argument(flag, dest=dest, default=argparse.SUPPRESS, metavar=metavar,
                               help=f"default {default!r}" if default is not dataclasses.MISSING else None)


def _data_flags(p: argparse.ArgumentParser, cache_only: bool = False) -> None:
    """--data-path, --cache-dir, --offline; `train` gets the other two from TrainConfig's fields."""
    p.add_argument("--cache-dir", metavar="DIR",
                   help="data cache folder (default $MNISTLAB_CACHE, else the user cache folder)")
    if not cache_only:
        p.add_argument("--data-path", metavar="PATH",
                       help="MNIST to use: a folder of the four IDX files (.gz or not) or a Keras mnist.npz")
        p.add_argument("--offline", action="store_true",
                       help="never touch the network; fail with what is missing")


def _model_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="RUN", help="a run folder written by `mnistlab train` whose model to use "
                   "(its model.onnx when it has one; default: the reader shipped with mnistlab)")


def _prediction_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _min_confidence_flag(p)


def _min_confidence_flag(p: argparse.ArgumentParser) -> None:
    from mnistlab.predict import DEFAULT_MIN_CONFIDENCE

    p.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE, metavar="P",
                   help=f"answer 'unsure' below this calibrated probability (default {DEFAULT_MIN_CONFIDENCE})")


def _report_flags(p: argparse.ArgumentParser) -> None:
    """What `report` and `compare` score and how, and what they print."""
    from mnistlab.report import SWEEP_IMAGES

    p.add_argument("--folders", nargs="+", action="extend", default=[], metavar="DIR",
                   help="folders of labelled images to score too: sub-folders 0-9 (as `mnistlab serve` "
                        "stores corrections) or a labels.csv with columns file,label")
    p.add_argument("--sweep-images", type=int, default=SWEEP_IMAGES, metavar="N",
                   help=f"test images in the robustness sweep, a seeded subset (default {SWEEP_IMAGES:,}; 0 skips it)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the sweep's subset and noise (default 0)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="only the first N test images (default all)")
    p.add_argument("--json", action="store_true",
                   help="print the files written and the headline numbers as one JSON object")
    _data_flags(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnistlab", description="Develop, fine-tune and use handwritten-digit recognizers."
    )
    parser.add_argument("--version", action="version", version=f"mnistlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model and write a run folder")
    p.add_argument("--model", help=f"preset to start from (default {DEFAULT_PRESET}; see `mnistlab models`)")
    p.add_argument("--config", metavar="FILE", help="TOML or YAML file with [model] and [train] tables")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output, only the result")
    p.add_argument("--resume", action="store_true",
                   help="continue the unfinished (killed) run in --out from its last completed epoch, or without "
                        "--out the newest unfinished run of this config in runs/<model>-*; an error if there is "
                        "none. Running the same command with --out again resumes too; a finished run or "
                        "another config there is refused")
    _data_flags(p, cache_only=True)
    _field_flags(p.add_argument_group("run settings"), TrainConfig, _TRAIN_FLAG_SKIP, "train.")
    _field_flags(p.add_argument_group("architecture"), ModelConfig, _MODEL_FLAG_SKIP, "model.")

    p = sub.add_parser("finetune", help="adapt a run's model to new digits (USPS, a folder, corrections...)")
    p.add_argument("run", help="run folder written by `mnistlab train` whose model to start from")
    p.add_argument("--data", required=True, metavar="SOURCE",
                   help="usps | uci-digits | corrections (RUN's drawing-page store) | a folder of images "
                        "(sub-folders 0-9 or labels.csv) | an .npz with x and y")
    p.add_argument("--config", metavar="FILE", help="TOML or YAML file with [train] and [finetune] tables")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output, only the result")
    p.add_argument("--json", action="store_true", help="print the before/after report as JSON")
    _data_flags(p, cache_only=True)
    _field_flags(p.add_argument_group("fine-tuning"), FinetuneConfig, _FINETUNE_FLAG_SKIP, "finetune.")
    _field_flags(p.add_argument_group("run settings"), TrainConfig, _TRAIN_FLAG_SKIP | {"ensemble"}, "train.",
                 FINETUNE_TRAIN)

    p = sub.add_parser("tune", help="search architectures and run settings with Optuna; the best as best.toml")
    p.add_argument("--study", default="runs/tune", metavar="DIR",
                   help="study folder: study.db, trials/, trials.csv, best.toml, summary.json, plots "
                        "(default runs/tune; rerun to resume)")
    p.add_argument("--storage", metavar="URL",
                   help="database shared by workers on several machines, e.g. postgresql://user:pw@host/db "
                        "(default sqlite in --study)")
    p.add_argument("--study-name", metavar="NAME", help="the study in the storage (default: the study folder's name)")
    p.add_argument("--trials", type=int, default=20, metavar="N",
                   help="trials this worker runs (default 20; 0 only writes the study's results)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="start no new trial after this long")
    p.add_argument("--trial-timeout", type=float, metavar="SECONDS",
                   help="stop a trial's training after this long; it is scored as it stands")
    p.add_argument("--space", metavar="FILE",
                   help="search space: a TOML or YAML file with a [space] table (default: tune.DEFAULT_SPACE)")
    p.add_argument("--model", help="preset the trials start from (default cnn)")
    p.add_argument("--config", metavar="FILE",
                   help="TOML or YAML file with [model] and [train] tables: what the space does not draw")
    p.add_argument("-q", "--quiet", action="store_true", help="no line per trial, only the table and the best")
    p.add_argument("--json", action="store_true", help="print the summary and the trials as JSON")
    _data_flags(p, cache_only=True)
    _field_flags(p.add_argument_group("run settings of every trial"), TrainConfig,
                 _TRAIN_FLAG_SKIP | {"ensemble", "out"}, "train.")
    _field_flags(p.add_argument_group("architecture, where the space does not draw it"), ModelConfig,
                 _MODEL_FLAG_SKIP, "model.")

    p = sub.add_parser("evaluate", help="score a run's saved model on the MNIST test set")
    p.add_argument("run", help="run folder written by `mnistlab train`")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.add_argument("--limit", type=int, default=0, help="only the first N test images")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average over the image and its 1-pixel shifts")
    _data_flags(p)

    p = sub.add_parser("report", help="an HTML page on a run: errors, confident mistakes, calibration, robustness")
    p.add_argument("run", help="run folder written by `mnistlab train`")
    p.add_argument("--out", metavar="FILE|DIR",
                   help="the HTML file, or a folder for report.html (default RUN/report.html); "
                        "the JSON goes beside it, named like it with .json")
    _report_flags(p)

    p = sub.add_parser("compare", help="one HTML page comparing two or more runs side by side")
    p.add_argument("runs", nargs="+", metavar="RUN", help="two or more run folders written by `mnistlab train`")
    p.add_argument("--out", metavar="FILE|DIR", default="compare.html",
                   help="the HTML file, or a folder for report.html (default compare.html in the current "
                        "folder); the JSON goes beside it, named like it with .json")
    _report_flags(p)

    p = sub.add_parser("predict", help="read the digit in each image (photos, drawings, scans)")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, or folders of them; a run folder first picks its model, as --model does")
    _model_flag(p)
    _prediction_flags(p)
    p.add_argument("--show", metavar="FILE.png", help="also write a sheet of each image next to what the model saw")

    p = sub.add_parser("read", help="read a multi-digit number written in one image",
                       usage="mnistlab read [-h] [--model RUN] [--json] [--min-confidence P] [RUN] IMAGE")
    p.add_argument("paths", nargs="+", metavar="[RUN] IMAGE",
                   help="an image file; a run folder before it picks its model, as --model does")
    _model_flag(p)
    _prediction_flags(p)

    p = sub.add_parser("export", help="export a run's model (ONNX, ...) and check it against the original")
    p.add_argument("run", help="run folder written by `mnistlab train`")
    p.add_argument("--format", default="onnx", metavar="FORMAT",
                   help="onnx (default, RUN/model.onnx), keras (a copy; needs --out) or savedmodel (RUN/savedmodel)")
    p.add_argument("--out", metavar="FILE", help="where to write instead of the default")
    p.add_argument("--json", action="store_true", help="print the parity figures as JSON")
    _data_flags(p)

    p = sub.add_parser("models", help="list the model presets with their parameter counts")
    p.add_argument("--json", action="store_true", help="print as JSON")

    p = sub.add_parser("data", help="fetch, verify or describe the MNIST cache")
    p.add_argument("action", choices=["fetch", "verify", "info"])
    p.add_argument("--json", action="store_true", help="print as JSON")
    _data_flags(p)

    p = sub.add_parser("serve", help="a drawing page and an HTTP API over the shipped reader or a run's model")
    p.add_argument("run", nargs="?", metavar="RUN", help="a run folder whose model to serve, as --model (default: "
                   "the reader shipped with mnistlab)")
    _model_flag(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every network)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    _min_confidence_flag(p)
    p.add_argument("--corrections", metavar="DIR",
                   help="where the page's corrections are stored, in sub-folders 0-9 (default RUN/corrections, "
                        "or ./corrections with the shipped reader)")
    return parser



def split_overrides(args: argparse.Namespace, table: str) -> dict[str, Any]:
    """The flags given for one config table (model, train, finetune), keyed by field."""
    prefix = f"{table}."
    return {key[len(prefix):]: value for key, value in vars(args).items() if key.startswith(prefix)}


def config_from_args(args: argparse.Namespace) -> Config:
    """Defaults < preset < --config file < flags."""
    from mnistlab.models import PRESETS, Preset, get_preset

    file_data = read_config_file(args.config) if args.config else {}
    file_name = file_data.get("model", {}).get("name")
    if args.model or file_name is None:
        preset = get_preset(args.model or DEFAULT_PRESET)
    else:
        # A file names its model; one that is no preset is described by the file alone.
        preset = PRESETS.get(file_name, Preset(ModelConfig()))
    model_over, train_over = split_overrides(args, "model"), split_overrides(args, "train")
    if args.quiet:
        train_over["verbose"] = 0
    if args.model:
        # An explicit --model names the run even when the file came from another preset.
        model_over.setdefault("name", args.model)
    return resolve_config(preset.model, file_data, model_over, train_over, preset.train)

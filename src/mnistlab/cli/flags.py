"""The flags of every `mnistlab` command, and the Config that train and tune build from them.

    mnistlab train --model best --help   # a flag per TrainConfig and ModelConfig field, best's defaults

Config settings come in layers: defaults < preset < --config file < flags (`config_from_args`).
The defaults that `train`, `tune` and `finetune` show in --help are the ones the command line's
--model and --config lead to (`help_config`), read before the full parse.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from mnistlab.backends import BACKENDS, BackendError, import_keras
from mnistlab.cli.helptext import FIELD_HELP, field_help, field_metavar
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
from mnistlab.errors import MnistlabError
from mnistlab.version import __version__

# Fields that have their own flag or make no sense as one.
_MODEL_FLAG_SKIP = {"name"}
_TRAIN_FLAG_SKIP = {"verbose"}
_FINETUNE_FLAG_SKIP = {"parent", "data"}  # the positional RUN and --data


# The run folder commands take, as their help names it.
RUN_HELP = "a run folder written by `mnistlab train`, or latest: the newest finished run in ./runs"


def _field_flags(group: argparse._ArgumentGroup, cls: type, skip: set[str], prefix: str, values: Any = None,
                 model: str = "", choices: dict[str, tuple[str, ...]] | None = None) -> None:
    """Add one --flag per dataclass field; unset flags stay out of the namespace (SUPPRESS).

    values: the settings (a `cls`) the command uses where a flag is not given, shown in the help
        as its defaults; None shows none. model: the model's name, for what an empty --out means.
    """
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        dest = f"{prefix}{f.name}"
        text = FIELD_HELP[f.name] if values is None else field_help(f, getattr(values, f.name), model)
        if f.type in ("bool", bool):
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=text)
        else:
            group.add_argument(flag, dest=dest, default=argparse.SUPPRESS, metavar=field_metavar(f, choices),
                               help=text)


def backend_option(argv: list[str]) -> tuple[str | None, list[str]]:
    """The --backend given anywhere on the command line (None: not given), and the line without
    it. Read before the full parse, which imports Keras (the presets), and Keras reads its backend
    once, at that import.

    Raises:
        BackendError: --backend without a name.
    """
    early = argparse.ArgumentParser(add_help=False, exit_on_error=False, allow_abbrev=False)
    early.add_argument("--backend")
    try:
        known, rest = early.parse_known_args(argv)
    except argparse.ArgumentError:
        raise BackendError(f"--backend needs a name: {', '.join(BACKENDS)}.") from None
    if known.backend is None:
        return None, argv
    # What parse_known_args leaves, in order: everything but "--backend NAME" / "--backend=NAME".
    return known.backend, rest


def _early_options(argv: list[str]) -> argparse.Namespace:
    """--model and --config, read before the full parse so that --help can show the defaults they
    lead to; None where they cannot be read (the full parse then says why)."""
    early = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    early.add_argument("--model")
    early.add_argument("--config")
    try:
        return early.parse_known_args(argv)[0]
    except argparse.ArgumentError:
        return argparse.Namespace(model=None, config=None)


def help_config(command: str, model: str | None = None, config: str | None = None) -> Config | None:
    """The Config that `command` (train, tune or finetune) builds from --model and --config and no
    other flag: what its --help shows as each flag's default. None where they cannot be used.

    A fine-tune's architecture is its parent run's, so only its run settings and its own are shown.
    """
    try:
        if command == "finetune":
            tables = {k: v for k, v in (read_config_file(config) if config else {}).items() if k != "model"}
            return resolve_config(ModelConfig(), tables, None, None, FINETUNE_TRAIN, {})
        import_keras()  # the presets live beside the model builders
        if command == "tune" and not model and not config:
            from mnistlab.tune import TUNE_PRESET

            model = TUNE_PRESET
        return config_from_args(argparse.Namespace(model=model, config=config, quiet=False))
    except MnistlabError:
        return None


def _help_configs(argv: list[str] | None) -> dict[str, tuple[Config | None, str]]:
    """For train, tune and finetune: the Config whose values their help shows, and what it is."""
    command = None if argv is None else next((a for a in argv if not a.startswith("-")), None)
    early = _early_options(argv or [])
    found = {}
    for name in ("train", "tune", "finetune"):
        if argv is not None and name != command:
            found[name] = (None, "")  # another command's help is never shown: no Keras to import for it
            continue
        options = early if name == command else argparse.Namespace(model=None, config=None)
        cfg = help_config(name, options.model, options.config)
        if cfg is None:  # a --model or --config that cannot be used: the full parse says why
            options = argparse.Namespace(model=None, config=None)
            cfg = help_config(name)
        if cfg is None:  # no Keras to build the presets with: the command itself says why
            found[name] = (None, "")
            continue
        if name == "finetune":
            source = "a fine-tune's, the architecture being RUN's"
        else:
            source = (f"--model {options.model}'s" if options.model else
                      f"model {cfg.model.name}'s" + ("" if options.config else " (the default preset)"))
        source += f", with {options.config}" if options.config else ""
        found[name] = (cfg, f"The defaults shown are {source}.")
    return found


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
    p.add_argument("--model", metavar="RUN", help=f"whose model to use: {RUN_HELP} (its model.onnx when it has "
                   "one; default: the reader shipped with mnistlab)")


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


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `mnistlab` parser; argv, the command line it is to parse, decides the defaults that the
    help of train, tune and finetune shows (`help_config`). None shows those of no --model."""
    configs = _help_configs(argv)
    parser = argparse.ArgumentParser(
        prog="mnistlab", description="Develop, fine-tune and use handwritten-digit recognizers."
    )
    parser.add_argument("--version", action="version", version=f"mnistlab {__version__}")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="Keras backend to compute on, for every command (default: KERAS_BACKEND, else Keras's "
                             "config file, else the first installed of " + ", ".join(BACKENDS) + ")")
    sub = parser.add_subparsers(dest="command", required=True)

    cfg, source = configs["train"]
    p = sub.add_parser("train", help="train a model and write a run folder", description=(
        f"Train a model and write a run folder. {source} `mnistlab train --model NAME --help` shows "
        "another preset's; settings layer as: preset < --config file < flags."))
    p.add_argument("--model", metavar=_presets(cfg), help=f"preset to start from: its architecture and run settings; "
                   f"`mnistlab models` lists them (default {DEFAULT_PRESET})")
    p.add_argument("--config", metavar="FILE", help="TOML or YAML file with [model] and [train] tables")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output, only the result")
    p.add_argument("--resume", action="store_true",
                   help="continue the unfinished (killed) run in --out from its last completed epoch, or without "
                        "--out the newest unfinished run of this config in runs/<model>-*; an error if there is "
                        "none. Running the same command with --out again resumes too; a finished run or "
                        "another config there is refused")
    _data_flags(p, cache_only=True)
    _field_flags(p.add_argument_group("run settings"), TrainConfig, _TRAIN_FLAG_SKIP, "train.", cfg and cfg.train,
                 cfg and cfg.model.name)
    _field_flags(p.add_argument_group("architecture"), ModelConfig, _MODEL_FLAG_SKIP, "model.", cfg and cfg.model,
                 choices=_archs(cfg))

    cfg, source = configs["finetune"]
    p = sub.add_parser("finetune", help="adapt a run's model to new digits (USPS, a folder, corrections...)",
                       description=f"Adapt a run's model to new digits and compare it with its parent. {source}")
    p.add_argument("run", metavar="RUN", help=f"whose model to start from: {RUN_HELP}")
    p.add_argument("--data", required=True, metavar="SOURCE",
                   help="usps | uci-digits | corrections (RUN's drawing-page store) | a folder of images "
                        "(sub-folders 0-9 or labels.csv) | an .npz with x and y")
    p.add_argument("--config", metavar="FILE", help="TOML or YAML file with [train] and [finetune] tables")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output, only the result")
    p.add_argument("--json", action="store_true", help="print the before/after report as JSON")
    _data_flags(p, cache_only=True)
    _field_flags(p.add_argument_group("fine-tuning"), FinetuneConfig, _FINETUNE_FLAG_SKIP, "finetune.",
                 cfg and cfg.finetune)
    _field_flags(p.add_argument_group("run settings"), TrainConfig, _TRAIN_FLAG_SKIP | {"ensemble"}, "train.",
                 cfg and cfg.train, "<model>-finetune")

    cfg, source = configs["tune"]
    p = sub.add_parser("tune", help="search architectures and run settings with Optuna; the best as best.toml",
                       description=f"Search architectures and run settings with Optuna. {source}")
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
    p.add_argument("--model", metavar=_presets(cfg), help="preset the trials start from, where the space does not "
                   f"draw (default {cfg.model.name if cfg else 'cnn'})")
    p.add_argument("--config", metavar="FILE",
                   help="TOML or YAML file with [model] and [train] tables: what the space does not draw")
    p.add_argument("-q", "--quiet", action="store_true", help="no line per trial, only the table and the best")
    p.add_argument("--json", action="store_true", help="print the summary and the trials as JSON")
    _data_flags(p, cache_only=True)
    _field_flags(p.add_argument_group("run settings of every trial"), TrainConfig,
                 _TRAIN_FLAG_SKIP | {"ensemble", "out"}, "train.", cfg and cfg.train)
    _field_flags(p.add_argument_group("architecture, where the space does not draw it"), ModelConfig,
                 _MODEL_FLAG_SKIP, "model.", cfg and cfg.model, choices=_archs(cfg))

    p = sub.add_parser("evaluate", help="score a run's saved model on the MNIST test set")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="only the first N test images (default 0: all)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average over the image and its 1-pixel shifts")
    _data_flags(p)

    p = sub.add_parser("report", help="an HTML page on a run: errors, confident mistakes, calibration, robustness")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument("--out", metavar="FILE|DIR",
                   help="the HTML file, or a folder for report.html (default RUN/report.html); "
                        "the JSON goes beside it, named like it with .json")
    _report_flags(p)

    p = sub.add_parser("compare", help="one HTML page comparing two or more runs side by side")
    p.add_argument("runs", nargs="+", metavar="RUN", help="two or more run folders written by `mnistlab train` "
                   "(latest: the newest finished run in ./runs)")
    p.add_argument("--out", metavar="FILE|DIR", default="compare.html",
                   help="the HTML file, or a folder for report.html (default compare.html in the current "
                        "folder); the JSON goes beside it, named like it with .json")
    _report_flags(p)

    p = sub.add_parser("samples", help="write example images to try at once: photos, ruled paper, drawings, a number")
    p.add_argument("folder", metavar="DIR", help="where to write them (made if missing; other files are left alone)")

    p = sub.add_parser("predict", help="read the digit in each image (photos, drawings, scans)")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, or folders of them; a run folder (or latest) first picks its model, as "
                        "--model does")
    _model_flag(p)
    _prediction_flags(p)
    p.add_argument("--show", metavar="FILE.png", help="also write a sheet of each image next to what the model saw")

    p = sub.add_parser("read", help="read a multi-digit number written in one image",
                       usage="mnistlab read [-h] [--model RUN] [--json] [--min-confidence P] [--show FILE.png] "
                             "[RUN] IMAGE")
    p.add_argument("paths", nargs="+", metavar="[RUN] IMAGE",
                   help="an image file; a run folder (or latest) before it picks its model, as --model does")
    _model_flag(p)
    _prediction_flags(p)
    p.add_argument("--show", metavar="FILE.png",
                   help="also write the image with each digit's box drawn on it, and its digit and confidence")

    p = sub.add_parser("export", help="export a run's model (ONNX, ...) and check it against the original")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument("--format", default="onnx", metavar="onnx|keras|savedmodel",
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
    p.add_argument("run", nargs="?", metavar="RUN", help="a run folder (or latest) whose model to serve, as --model "
                   "(default: the reader shipped with mnistlab)")
    _model_flag(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every network)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    _min_confidence_flag(p)
    p.add_argument("--corrections", metavar="DIR",
                   help="where the page's corrections are stored, in sub-folders 0-9 (default RUN/corrections, "
                        "or ./corrections with the shipped reader)")
    p.add_argument("--parent", action="store_true",
                   help="serve RUN itself, not its newest personal model (RUN/personal/, from the page's lessons)")
    p.add_argument("--no-teach", dest="teach", action="store_false",
                   help="turn off the page's \"teach it my handwriting\" mode and its /v1/finetune routes")

    p = sub.add_parser("teach", help="fine-tune a run on the drawings its page stored: a personal model",
                       description="Fine-tune RUN on the drawings stored by its drawing page (RUN/corrections) "
                                   "into a personal model, RUN/personal/<time>/, scored before and after on "
                                   "drawings held back from learning and on MNIST; what the page's Learn button "
                                   "runs. `mnistlab serve RUN` then serves it.")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument("--samples", metavar="DIR",
                   help="labelled drawings to learn from, in sub-folders 0-9 (default RUN/corrections)")
    p.add_argument("--out", metavar="DIR", help="the personal model's run folder (default RUN/personal/<time>)")
    p.add_argument("--json", action="store_true", help="print the before/after figures as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the result")
    return parser



def _presets(cfg: Config | None) -> str:
    """--model's metavar: the presets, where Keras is loaded (help_config loaded it) to list them."""
    if cfg is None:
        return "PRESET"
    from mnistlab.models import PRESETS

    return "|".join(PRESETS)


def _archs(cfg: Config | None) -> dict[str, tuple[str, ...]]:
    """--arch's choices, the registered builders, where Keras is loaded."""
    if cfg is None:
        return {}
    from mnistlab.models import REGISTRY

    return {"arch": tuple(REGISTRY)}


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

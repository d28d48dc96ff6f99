"""The `mnistlab` command: parse flags, build a Config, call one library function, print.

    mnistlab --help

Library errors (MnistlabError) become one line on stderr and exit status 2; Keras and TensorFlow
are imported only by the commands that need them, so `mnistlab data info` starts fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
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
from mnistlab.errors import MnistlabError
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
    p.add_argument("run", help="run folder written by `mnistlab train`")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders of them")
    _prediction_flags(p)
    p.add_argument("--show", metavar="FILE.png", help="also write a sheet of each image next to what the model saw")

    p = sub.add_parser("read", help="read a multi-digit number written in one image")
    p.add_argument("run", help="run folder written by `mnistlab train`")
    p.add_argument("image", help="an image file")
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

    p = sub.add_parser("serve", help="a drawing page and an HTTP API over a run's model")
    p.add_argument("run", help="run folder written by `mnistlab train` (its model.onnx is used when there is one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every network)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    _min_confidence_flag(p)
    p.add_argument("--corrections", metavar="DIR",
                   help="where the page's corrections are stored, in sub-folders 0-9 (default RUN/corrections)")
    return parser


def _split_overrides(args: argparse.Namespace, table: str) -> dict[str, Any]:
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
    model_over, train_over = _split_overrides(args, "model"), _split_overrides(args, "train")
    if args.quiet:
        train_over["verbose"] = 0
    if args.model:
        # An explicit --model names the run even when the file came from another preset.
        model_over.setdefault("name", args.model)
    return resolve_config(preset.model, file_data, model_over, train_over, preset.train)


def cmd_train(args: argparse.Namespace) -> int:
    from mnistlab.data import load_mnist
    from mnistlab.train import train

    cfg = config_from_args(args)
    t = cfg.train
    data = load_mnist(path=t.data_path or None, cache_dir=args.cache_dir, offline=t.offline,
                      progress=t.verbose > 0)
    result = train(cfg, data=data, resume=args.resume)
    m = result.metrics
    if "members" in m:
        detail = (f"ensemble of {m['members']}, members {m['member_test_accuracy_mean'] * 100:.2f} % "
                  f"on average, {m['train_seconds']:.0f} s")
    else:
        n = m["epochs_run"]
        detail = f"{n} epoch{'' if n == 1 else 's'}, {m['train_seconds']:.0f} s"
        if m.get("resumed_from_epoch") is not None:
            detail += f", resumed after epoch {m['resumed_from_epoch']}"
    print(f"test accuracy {m['test_accuracy'] * 100:.2f} %  loss {m['test_loss']:.4f}  ({detail})")
    print(f"run folder {result.run.path}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from mnistlab.data import load_mnist
    from mnistlab.finetune import finetune, finetune_config, format_finetune

    train_over = _split_overrides(args, "train")
    if args.quiet or args.json:
        train_over["verbose"] = 0
    cfg = finetune_config(args.run, {**_split_overrides(args, "finetune"), "data": args.data}, train_over,
                          read_config_file(args.config) if args.config else None)
    t = cfg.train
    mnist = load_mnist(path=t.data_path or None, cache_dir=args.cache_dir, offline=t.offline, progress=t.verbose > 0)
    result = finetune(cfg, mnist=mnist)
    if args.json:
        print(json.dumps({"run": str(result.run.run.path), **result.report}))
        return 0
    print(format_finetune(result.report))
    print(f"run folder {result.run.run.path}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mnistlab.data import load_mnist
    from mnistlab.tune import (
        DEFAULT_SPACE,
        TUNE_PRESET,
        format_trials,
        read_space,
        tune,
    )

    if not args.model and not args.config:
        args.model = TUNE_PRESET  # the seed's network, with a validation split to score trials on
    base = config_from_args(args)
    space = read_space(args.space) if args.space else DEFAULT_SPACE
    t = base.train
    progress = not (args.quiet or args.json)
    data = (load_mnist(path=t.data_path or None, cache_dir=args.cache_dir, offline=t.offline, progress=progress)
            if args.trials else None)
    result = tune(space, base=base, study_dir=args.study, storage=args.storage, study_name=args.study_name,
                  trials=args.trials, timeout=args.timeout, trial_timeout=args.trial_timeout, data=data,
                  seed=t.seed, progress=progress)
    if args.json:
        print(json.dumps(result))
        return 0
    best = result["best"]
    print(format_trials(result["rows"], best["number"] if best else None))
    if best is None:
        print("no trial has completed yet")
    else:
        print(f"best: trial #{best['number']}, validation accuracy {best['val_accuracy'] * 100:.2f} %; "
              f"retrain it with: mnistlab train --config {Path(args.study) / 'best.toml'}")
    print(f"study folder {args.study}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mnistlab.data import load_mnist
    from mnistlab.evaluate import evaluate, format_report
    from mnistlab.runs import RunDir

    run = RunDir.open(args.run)
    model = run.load_model()
    data = load_mnist(path=args.data_path, cache_dir=args.cache_dir,
                      offline=args.offline, progress=not args.json)
    x, y = data.x_test, data.y_test
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    result = {"run": str(run.path), "tta": args.tta, **evaluate(model, x, y, tta=args.tta)}
    if args.json:
        print(json.dumps(result))
        return 0
    print(format_report(result))
    recorded = run.read_metrics().get("test_accuracy")
    if recorded is not None and not args.limit and not args.tta:
        print(f"\nrecorded at training: {recorded * 100:.2f} %")
    return 0


def _report_options(args: argparse.Namespace) -> dict[str, Any]:
    """MNIST loaded as the data flags say, and the options write_report and compare_runs share."""
    from mnistlab.data import load_mnist

    progress = not args.json
    data = load_mnist(path=args.data_path, cache_dir=args.cache_dir, offline=args.offline, progress=progress)
    return {"data": data, "folders": args.folders, "sweep_images": args.sweep_images, "seed": args.seed,
            "test_limit": args.limit, "progress": progress}


def _headline_numbers(report: dict[str, Any]) -> dict[str, Any]:
    h, rob = report["headline"], report["robustness"]
    return {
        "run": h["path"],
        "test_accuracy": h["test_accuracy"],
        "test_images": h["test_images"],
        "test_errors": h["test_errors"],
        "macro_f1": h["macro_f1"],
        "temperature": h["temperature"],
        "ece": h["ece"],
        "mean_corrupted_accuracy": rob["mean_corrupted_accuracy"] if rob else None,
        "folders": [{"path": f["path"], "n": f["n"], "accuracy": f["accuracy"]} for f in report["folders"]],
    }


def cmd_report(args: argparse.Namespace) -> int:
    from mnistlab.report import write_report

    page = write_report(args.run, args.out, **_report_options(args))
    if args.json:
        numbers = page.with_suffix(".json")
        report = json.loads(numbers.read_text(encoding="utf-8"))
        print(json.dumps({"html": str(page), "json": str(numbers), **_headline_numbers(report)}))
        return 0
    print(page)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mnistlab.report import compare_runs

    page = compare_runs(args.runs, args.out, **_report_options(args))
    if args.json:
        numbers = page.with_suffix(".json")
        comparison = json.loads(numbers.read_text(encoding="utf-8"))
        print(json.dumps({"html": str(page), "json": str(numbers),
                          "runs": [_headline_numbers(r) for r in comparison["runs"]]}))
        return 0
    print(page)
    return 0


def _top3(p: Any) -> str:
    return "  ".join(f"{d}:{c * 100:.0f}%" for d, c in p.top3)


def cmd_predict(args: argparse.Namespace) -> int:
    from mnistlab.predict import Predictor, contact_sheet, image_files

    files = image_files(args.images)
    predictor = Predictor.from_run(args.run, args.min_confidence)
    predictions = predictor.predict(files)
    if args.show:
        contact_sheet(files, predictions, args.show)
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions]))
        return 0
    width = max(len("image"), *(len(p.path) for p in predictions))
    print(f"{'image':<{width}}  digit  confidence  status    top-3")
    for p in predictions:
        print(f"{p.path:<{width}}  {p.digit:>5}  {p.confidence * 100:>9.1f}%  {p.status:<8}  {_top3(p)}")
    if args.show:
        print(f"sheet written to {args.show}")
    return 0


def cmd_read(args: argparse.Namespace) -> int:
    from mnistlab.predict import Predictor

    reading = Predictor.from_run(args.run, args.min_confidence).read(args.image)
    if args.json:
        print(json.dumps(reading.to_dict()))
        return 0
    print(f"{reading.text or '(no digits found)'}  ({reading.status}, {reading.confidence * 100:.1f} % sure of all digits)")
    for p, (top, left, bottom, right) in zip(reading.digits, reading.boxes, strict=True):
        print(f"  {p.digit}  {p.confidence * 100:5.1f}%  {p.status:<8}  box x {left}-{right}, y {top}-{bottom}  top-3 {_top3(p)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mnistlab.export import export_model, format_export

    result = export_model(args.run, args.format, args.out, data_path=args.data_path, cache_dir=args.cache_dir,
                          offline=args.offline, progress=not args.json)
    print(json.dumps(result) if args.json else format_export(result))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from mnistlab.models import PRESETS, build_model

    rows = [
        {"name": name, "arch": preset.model.arch, "params": build_model(preset.model).count_params(),
         "default": name == DEFAULT_PRESET}
        for name, preset in PRESETS.items()
    ]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'preset':<16}{'arch':<8}{'parameters':>12}")
    for r in rows:
        mark = "  (default)" if r["default"] else ""
        print(f"{r['name']:<16}{r['arch']:<8}{r['params']:>12,}{mark}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from mnistlab import data

    offline = args.offline
    if args.action == "fetch":
        result = data.fetch(path=args.data_path, cache_dir=args.cache_dir, offline=offline,
                            progress=not args.json)
    elif args.action == "verify":
        result = data.verify(cache_dir=args.cache_dir)
    else:
        result = data.info(cache_dir=args.cache_dir)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        _print_tree(result)
    if args.action == "verify" and not result.get("ok"):
        print(f"error: the MNIST cache at {result.get('path')} does not match the reference checksums.",
              file=sys.stderr)
        return 1
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mnistlab.serve import onnx_model, serve

    if onnx_model(args.run) is None:
        _import_keras_quietly()  # the Keras model it falls back to; with ONNX, no Keras at all
    serve(args.run, host=args.host, port=args.port, min_confidence=args.min_confidence,
          corrections=args.corrections)
    return 0


def _print_tree(d: dict[str, Any], indent: int = 0) -> None:
    for key, value in d.items():
        if isinstance(value, dict):
            print(" " * indent + f"{key}:")
            _print_tree(value, indent + 2)
        else:
            print(" " * indent + f"{key}: {value}")


COMMANDS = {
    "train": cmd_train,
    "finetune": cmd_finetune,
    "tune": cmd_tune,
    "evaluate": cmd_evaluate,
    "report": cmd_report,
    "compare": cmd_compare,
    "predict": cmd_predict,
    "read": cmd_read,
    "export": cmd_export,
    "models": cmd_models,
    "data": cmd_data,
    "serve": cmd_serve,
}


def _import_keras_quietly() -> None:
    """Import Keras with TensorFlow's start-up notes (printed by C++ straight to fd 2) hidden.

    TensorFlow 2.21 prints its oneDNN notice before its logging starts, so TF_CPP_MIN_LOG_LEVEL
    cannot hide it; an exception from the import still reaches the user, after stderr is back.
    """
    if "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("data", "serve"):  # serve imports Keras only without an ONNX model
        _import_keras_quietly()
    try:
        return COMMANDS[args.command](args)
    except MnistlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

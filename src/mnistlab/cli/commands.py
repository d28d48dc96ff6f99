"""What each `mnistlab` command does once its flags are parsed: call one library function, print.

    mnistlab models      # cmd_models: the presets and their parameter counts

Keras and TensorFlow are imported by the commands that need them (KERAS_COMMANDS, or a run
without model.onnx), so `mnistlab data info` starts fast and `mnistlab predict` on the shipped
reader or an exported model never loads them.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

from mnistlab.cli.flags import config_from_args, split_overrides
from mnistlab.config import DEFAULT_PRESET, ConfigError, check_seed, read_config_file
from mnistlab.runs import LATEST, RUNS_DIR, is_run_folder, mark_latest, resolve_run


def _finite(value: Any) -> Any:
    """`value` with every NaN and infinity made None, all the way down: json.dumps writes them as
    bare NaN and Infinity, which no JSON parser reads."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json(value: Any, **options: Any) -> str:
    """JSON that every parser reads: a number that is not one is null."""
    return json.dumps(_finite(value), allow_nan=False, **options)


def _check_count(flag: str, value: int, zero: str) -> None:
    """Refuse a negative count, which a slice would read as "all but the last N"."""
    if value < 0:
        raise ConfigError(f"{flag} must be >= 0 ({zero}), not {value}.")


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
    marked = mark_latest(result.run)
    if not args.quiet:
        print(next_steps(result.run.path, marked))
    return 0


def next_steps(run: Path, marked: bool, parent: Path | None = None) -> str:
    """The commands worth running next on a run just written, with its real path; for a
    fine-tune, the page comparing it with its `parent` first. marked: RUNS_DIR/latest names it."""
    r = shlex.quote(str(run))
    steps = [
        (f"mnistlab report {r}", "a page of its mistakes, calibration and robustness"),
        (f"mnistlab serve {r}", "draw digits for it at http://127.0.0.1:8000, and teach it your handwriting"),
        (f"mnistlab predict {r} PHOTO.jpg", "read the digit in a photo of your own"),
    ]
    if parent is not None:
        steps[0] = (f"mnistlab compare {shlex.quote(str(parent))} {r}", "it beside the run it was tuned from")
    width = max(len(command) for command, _ in steps)
    lines = ["next:", *(f"  {command:<{width}}  # {why}" for command, why in steps)]
    if marked:
        lines.append(f"{RUNS_DIR / LATEST} names this run now: any command that takes a run folder takes "
                     f"{LATEST} too.")
    return "\n".join(lines)


def cmd_finetune(args: argparse.Namespace) -> int:
    from mnistlab.data import load_mnist
    from mnistlab.finetune import finetune, finetune_config, format_finetune

    train_over = split_overrides(args, "train")
    if args.quiet or args.json:
        train_over["verbose"] = 0
    cfg = finetune_config(resolve_run(args.run), {**split_overrides(args, "finetune"), "data": args.data}, train_over,
                          read_config_file(args.config) if args.config else None)
    t = cfg.train
    mnist = load_mnist(path=t.data_path or None, cache_dir=args.cache_dir, offline=t.offline, progress=t.verbose > 0)
    result = finetune(cfg, mnist=mnist)
    marked = mark_latest(result.run.run)
    if args.json:
        print(_json({"run": str(result.run.run.path), **result.report}))
        return 0
    print(format_finetune(result.report))
    print(f"run folder {result.run.run.path}")
    if not args.quiet:
        print(next_steps(result.run.run.path, marked, parent=Path(cfg.finetune.parent)))
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
        print(_json(result))
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

    _check_count("--limit", args.limit, "0: every test image")
    run = RunDir.open(resolve_run(args.run))
    model = run.load_model()
    data = load_mnist(path=args.data_path, cache_dir=args.cache_dir,
                      offline=args.offline, progress=not args.json)
    x, y = data.x_test, data.y_test
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    result = {"run": str(run.path), "tta": args.tta, **evaluate(model, x, y, tta=args.tta)}
    if args.json:
        print(_json(result))
        return 0
    print(format_report(result))
    recorded = run.read_metrics().get("test_accuracy")
    if recorded is not None and not args.limit and not args.tta:
        print(f"\nrecorded at training: {recorded * 100:.2f} %")
    return 0


def _report_options(args: argparse.Namespace) -> dict[str, Any]:
    """MNIST loaded as the data flags say, and the options write_report and compare_runs share."""
    from mnistlab.data import load_mnist

    _check_count("--limit", args.limit, "0: every test image")
    _check_count("--sweep-images", args.sweep_images, "0 skips the sweep")
    check_seed(args.seed, "--seed")
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

    page = write_report(resolve_run(args.run), args.out, **_report_options(args))
    if args.json:
        numbers = page.with_suffix(".json")
        report = json.loads(numbers.read_text(encoding="utf-8"))
        print(_json({"html": str(page), "json": str(numbers), **_headline_numbers(report)}))
        return 0
    print(page)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mnistlab.report import compare_runs

    page = compare_runs([resolve_run(run) for run in args.runs], args.out, **_report_options(args))
    if args.json:
        numbers = page.with_suffix(".json")
        comparison = json.loads(numbers.read_text(encoding="utf-8"))
        print(_json({"html": str(page), "json": str(numbers),
                     "runs": [_headline_numbers(r) for r in comparison["runs"]]}))
        return 0
    print(page)
    return 0


def _top3(p: Any) -> str:
    return "  ".join(f"{d}:{c * 100:.0f}%" for d, c in p.top3)


def _answer(p: Any) -> str:
    """Digit and confidence columns: "–" and blank when there is no digit."""
    if p.digit is None:
        return f"{'–':>5}  {'':>10}"
    return f"{p.digit:>5}  {p.confidence * 100:>9.1f}%"


def _run_and_images(model: str | None, paths: list[str]) -> tuple[Path | None, list[str]]:
    """The run (--model, or a run folder first, as `predict RUN IMAGE...` was written) and the images."""
    if model is None and paths:
        first = resolve_run(paths[0]) if Path(paths[0]).name == LATEST else paths[0]
        if is_run_folder(first):
            return Path(first), paths[1:]
    return (None if model is None else resolve_run(model)), paths


def cmd_predict(args: argparse.Namespace) -> int:
    from mnistlab.predict import contact_sheet, image_files, load_predictor

    run, images = _run_and_images(args.model, args.images)
    files = image_files(images)
    predictions = load_predictor(run, args.min_confidence).predict(files)
    if args.show:
        drawn = contact_sheet(files, predictions, args.show)
        left_out = f" (the first {drawn} of {len(files):,} images)" if drawn < len(files) else ""
    if args.json:
        print(_json([p.to_dict() for p in predictions]))
        return 0
    width = max(len("image"), *(len(p.path) for p in predictions))
    print(f"{'image':<{width}}  digit  confidence  status    top-3")
    for p in predictions:
        print(f"{p.path:<{width}}  {_answer(p)}  {p.status:<8}  {_top3(p)}".rstrip())
    if args.show:
        print(f"sheet written to {args.show}{left_out}")
    return 0


def cmd_read(args: argparse.Namespace) -> int:
    from mnistlab.predict import PredictError, load_predictor, reading_sheet

    if len(args.paths) > 2 or (len(args.paths) == 2 and args.model):
        raise PredictError("read takes one image (and before it, without --model, a run folder).")
    run, image = (args.paths[0], args.paths[1]) if len(args.paths) == 2 else (args.model, args.paths[0])
    reading = load_predictor(None if run is None else resolve_run(run), args.min_confidence).read(image)
    if args.show:
        reading_sheet(image, reading, args.show)
    if args.json:
        print(_json(reading.to_dict()))
        return 0
    if reading.confidence is None:
        print(f"(no digits found)  ({reading.status})")
    else:
        print(f"{reading.text}  ({reading.status}, {reading.confidence * 100:.1f} % sure of all digits)")
        # The box's columns as the JSON names them: pixels of the image, right and bottom exclusive.
        print(f"{'digit':>5}  {'confidence':>10}  status    {'left':>5} {'top':>5} {'right':>5} {'bottom':>6}  top-3")
        for p, box in zip(reading.digits, reading.boxes, strict=True):
            print(f"{_answer(p)}  {p.status:<8}  {box.left:>5} {box.top:>5} {box.right:>5} {box.bottom:>6}  "
                  f"{_top3(p)}")
    if args.show:
        print(f"sheet written to {args.show}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mnistlab.export import export_model, format_export

    result = export_model(resolve_run(args.run), args.format, args.out, data_path=args.data_path,
                          cache_dir=args.cache_dir, offline=args.offline, progress=not args.json)
    print(_json(result) if args.json else format_export(result))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from mnistlab.models import PRESETS, build_model

    rows = [
        {"name": name, "arch": preset.model.arch, "params": build_model(preset.model).count_params(),
         "default": name == DEFAULT_PRESET}
        for name, preset in PRESETS.items()
    ]
    if args.json:
        print(_json(rows))
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
        print(_json(result, default=str))
    else:
        _print_tree(result)
    if args.action == "verify" and not result.get("ok"):
        print(f"error: the MNIST cache at {result.get('path')} does not match the reference checksums.",
              file=sys.stderr)
        return 2
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mnistlab.serve import ServeError, serve

    run, model = (None if arg is None else resolve_run(arg) for arg in (args.run, args.model))
    if run and model and run != model:
        raise ServeError(f"two runs named: {args.run} and --model {args.model}; serve one.")
    # A run without model.onnx loads Keras (quietly); the shipped reader and ONNX never do.
    serve(run or model, host=args.host, port=args.port, min_confidence=args.min_confidence,
          corrections=args.corrections, parent=args.parent, teach=args.teach)
    return 0


def cmd_teach(args: argparse.Namespace) -> int:
    from mnistlab.teach import format_lesson, teach

    lesson = teach(resolve_run(args.run), args.samples, args.out, verbose=0 if args.quiet or args.json else 2)
    if args.json:
        print(_json({"run": str(lesson.run.path), **lesson.report}))
        return 0
    print(format_lesson(lesson))
    if not args.quiet:
        print(f"next: mnistlab serve {args.run}   # serves this personal model; --parent serves {args.run} itself")
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mnistlab.data.samples import SAMPLES, write_samples

    *images, labels = write_samples(args.folder)
    print(f"wrote {len(images)} images, the single digits' labels in {labels}:")
    width = max(len(str(path)) for path in images)
    for path, sample in zip(images, SAMPLES, strict=True):
        print(f"  {str(path):<{width}}  {sample.about}")
    number = next(Path(args.folder) / s.file for s in SAMPLES if len(s.label) > 1)
    print(f"try:\n  mnistlab predict {args.folder}\n  mnistlab read {number}")
    return 0


def _print_tree(d: dict[str, Any], indent: int = 0) -> None:
    for key, value in d.items():
        if isinstance(value, dict):
            print(" " * indent + f"{key}:")
            _print_tree(value, indent + 2)
        else:
            print(" " * indent + f"{key}: {value}")


# Commands that always build or load a Keras model; the CLI imports Keras (quietly) before them.
KERAS_COMMANDS = ("train", "finetune", "teach", "tune", "evaluate", "report", "compare", "export", "models")

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
    "teach": cmd_teach,
    "samples": cmd_samples,
}

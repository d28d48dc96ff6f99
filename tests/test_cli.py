"""The CLI end to end: the real `mnistlab` command on a small slice, and one-line errors."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnistlab.cli import main
from mnistlab.config import DEFAULT_PRESET, FINETUNE_TRAIN, ModelConfig, coerce, resolve_config
from mnistlab.models import PRESETS, preset_config

MNISTLAB = str(Path(sys.executable).with_name("mnistlab"))


def run_cli(*args, cwd=None):
    return subprocess.run([MNISTLAB, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) >= 1 and lines[-1].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[-1]


def test_train_then_evaluate_end_to_end(mnist, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--model", "cnn", "--conv-filters", "8", "--dense-units", "16", "--epochs", "1",
            "--train-limit", "1000", "--test-limit", "300", "--out", str(out), "--quiet"]
    trained = run_cli(*args)
    assert trained.returncode == 0, trained.stderr
    assert "test accuracy" in trained.stdout and f"run folder {out}" in trained.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    config_text = (out / "config.toml").read_text()
    assert "conv_filters = [\n    8,\n]" in config_text or "conv_filters = [8]" in config_text

    evaluated = run_cli("evaluate", str(out), "--limit", "300", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    scores = json.loads(evaluated.stdout)
    assert scores["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert len(scores["confusion_matrix"]) == 10 and len(scores["per_class"]) == 10

    text = run_cli("evaluate", str(out), "--limit", "300")
    assert "precision" in text.stdout and "confusion matrix" in text.stdout

    again = run_cli(*args)
    assert_one_line_error(again, "already exists")
    assert json.loads((out / "metrics.json").read_text()) == metrics

    # The run's own config.toml repeats the run.
    rerun = run_cli("train", "--config", str(out / "config.toml"), "--out", str(tmp_path / "rerun"), "-q")
    assert rerun.returncode == 0, rerun.stderr
    rerun_metrics = json.loads((tmp_path / "rerun" / "metrics.json").read_text())
    assert rerun_metrics["test_accuracy"] == metrics["test_accuracy"]


def test_config_file_with_a_custom_model_name(tmp_path):
    from mnistlab.cli import build_parser, config_from_args

    file = tmp_path / "mine.toml"
    file.write_text('[model]\nname = "mynet"\nconv_filters = [4]\n[train]\nepochs = 1\n')
    cfg = config_from_args(build_parser().parse_args(["train", "--config", str(file), "--dropout", "0.1"]))
    assert cfg.model.name == "mynet" and cfg.model.conv_filters == (4,) and cfg.model.dropout == 0.1
    assert cfg.train.epochs == 1
    named = config_from_args(build_parser().parse_args(["train", "--config", str(file), "--model", "fast"]))
    assert named.model.name == "fast" and named.model.conv_filters == (4,)  # the file still wins over the preset


def test_models_lists_presets(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["linear"]["params"] == 7_850 and rows["fast"]["default"]
    assert main(["models"]) == 0
    assert "keras-example" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["train", "--epochs", "0"], "epochs must be at least 1"),
        (["train", "--model", "nope"], "unknown model preset"),
        (["train", "--conv-filters", "a,b"], "conv_filters expects"),
        (["train", "--config", "/no/such/file.toml"], "cannot read config file"),
        (["evaluate", "/no/such/run"], "does not exist"),
        # A negative count sliced "all but the last N"; a negative seed was NumPy's traceback.
        (["evaluate", "/no/such/run", "--limit", "-5"], "--limit must be >= 0"),
        (["report", "/no/such/run", "--limit", "-1"], "--limit must be >= 0"),
        (["compare", "/a", "/b", "--limit", "-1"], "--limit must be >= 0"),
        (["report", "/no/such/run", "--sweep-images", "-3"], "--sweep-images must be >= 0"),
        (["report", "/no/such/run", "--seed", "-1"], "--seed must be from 0 to 2**32 - 1"),
        (["report", "/no/such/run", "--seed", str(2**32)], "--seed must be from 0 to 2**32 - 1"),
    ],
)
def test_bad_input_is_one_line(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0]


def test_data_info_and_verify(mnist, capsys):
    assert main(["data", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert main(["data", "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)


def test_start_up_is_quiet():
    """TensorFlow's C++ start-up notes must not reach the user's terminal."""
    result = run_cli("models")
    assert result.returncode == 0 and "keras-example" in result.stdout
    assert result.stderr == ""


def _digit_photo(digit28, path):
    """An MNIST digit as a phone photo would show it: dark on light, enlarged, off-centre."""
    big = np.asarray(Image.fromarray(digit28).resize((140, 140), Image.BILINEAR), dtype=float)
    page = np.full((220, 260), 210.0)
    page[30:170, 70:210] -= big * 0.8
    Image.fromarray(np.uint8(np.clip(page, 0, 255))).save(path)


def test_predict_and_read_end_to_end(small_run, mnist, tmp_path):
    run = str(small_run.run.path)
    folder = tmp_path / "images"
    folder.mkdir()
    for k in range(3):
        _digit_photo(mnist.x_test[k], folder / f"img{k}.png")
    (folder / "notes.txt").write_text("skipped: not an image type")

    table = run_cli("predict", run, str(folder), "--show", str(tmp_path / "sheet.png"))
    assert table.returncode == 0, table.stderr
    assert "digit" in table.stdout and "img2.png" in table.stdout and "notes.txt" not in table.stdout
    assert (tmp_path / "sheet.png").stat().st_size > 0

    as_json = run_cli("predict", run, str(folder / "img1.png"), str(folder / "img0.png"), "--json")
    assert as_json.returncode == 0, as_json.stderr
    answers = json.loads(as_json.stdout)
    assert [a["path"] for a in answers] == [str(folder / "img1.png"), str(folder / "img0.png")]
    assert all(a["status"] in ("ok", "unsure") and len(a["top3"]) == 3 for a in answers)
    # --model RUN is the same as the run folder first (the older form, kept).
    by_flag = run_cli("predict", str(folder / "img1.png"), str(folder / "img0.png"), "--model", run, "--json")
    assert by_flag.returncode == 0 and json.loads(by_flag.stdout) == answers, by_flag.stderr

    read = run_cli("read", run, str(folder / "img0.png"), "--json", "--show", str(tmp_path / "boxes.png"))
    assert read.returncode == 0, read.stderr
    (digit,) = json.loads(read.stdout)["digits"]
    # One box convention, named: pixels of the image, x from the left and y from the top. The
    # photo's digit was pasted at rows 30-170 and columns 70-210 of a 260 x 220 page.
    box = digit["box"]
    assert list(box) == ["left", "top", "right", "bottom"]
    assert 70 <= box["left"] < box["right"] <= 210 and 30 <= box["top"] < box["bottom"] <= 170
    with Image.open(tmp_path / "boxes.png") as sheet:
        assert sheet.width == 480  # the 260-pixel page, enlarged to SHEET_SIDE's least
    table = run_cli("read", run, str(folder / "img0.png")).stdout.splitlines()
    assert table[1].split()[:6] == ["digit", "confidence", "status", "left", "top", "right"]
    assert table[2].split()[3:7] == [str(box[side]) for side in ("left", "top", "right", "bottom")]
    read_by_flag = run_cli("read", "--model", run, str(folder / "img0.png"), "--json")
    assert json.loads(read_by_flag.stdout) == json.loads(read.stdout), read_by_flag.stderr
    assert_one_line_error(run_cli("read", run, str(folder / "img0.png"), str(folder / "img1.png")), "one image")

    assert_one_line_error(run_cli("predict", run, str(tmp_path / "missing.png")), "missing.png")
    assert_one_line_error(run_cli("predict", run, str(folder / "notes.txt")), "notes.txt")
    assert_one_line_error(run_cli("predict", str(tmp_path / "norun"), str(folder)), "does not exist")
    assert_one_line_error(run_cli("predict", run, str(folder), "--min-confidence", "2"), "min_confidence")


def test_predict_and_read_need_no_run_folder(tmp_path, mnist):
    """The reader shipped with mnistlab answers when no run is named; no_digit is null, not a guess."""
    Image.fromarray(np.full((120, 160), 235, np.uint8)).save(tmp_path / "blank.png")
    _digit_photo(mnist.x_test[0], tmp_path / "seven.png")
    answers = run_cli("predict", str(tmp_path / "blank.png"), str(tmp_path / "seven.png"), "--json")
    assert answers.returncode == 0 and answers.stderr == "", answers.stderr
    blank, seven = json.loads(answers.stdout)
    assert blank == {"path": str(tmp_path / "blank.png"), "digit": None, "confidence": None, "top3": [],
                     "status": "no_digit"}
    assert seven["digit"] == int(mnist.y_test[0]) == 7
    table = run_cli("predict", str(tmp_path / "blank.png"))
    assert table.returncode == 0 and "no_digit" in table.stdout and "%" not in table.stdout.splitlines()[1]
    reading = run_cli("read", str(tmp_path / "blank.png"))
    assert reading.returncode == 0 and reading.stdout.startswith("(no digits found)  (no_digit)")


def test_a_missing_run_or_an_extra_image_is_one_line(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path / "norun"), str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: run folder") and "does not exist" in err[0]
    assert main(["read", "--model", str(tmp_path), "a.png", "b.png"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "one image" in err[0]


@pytest.mark.parametrize(
    "flags,fragment",
    [
        (["--seed", "-1"], "seed must be from 0 to 2**32 - 1"),
        (["--seed", str(2**32)], "seed must be from 0 to 2**32 - 1"),
        (["--steps-per-execution", "3000000000"], "steps_per_execution must be at most 100,000"),  # KeyError 'loss'
        (["--epochs", "20000"], "epochs must be at most 10,000"),
        (["--kernel-size", "100000"], "kernel_size 100000 is wider than the image"),  # ResourceExhaustedError
        (["--dense-units", "2000000000"], "parameters, past mnistlab's cap of 50,000,000"),
    ],
)
def test_hostile_run_settings_are_one_line_and_make_no_folder(flags, fragment, tmp_path, mnist, capsys):
    out = tmp_path / "run"
    assert main(["train", *flags, "--train-limit", "500", "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0]
    assert not out.exists()


def test_hostile_fine_tune_settings_and_out_paths(small_run, tmp_path, mnist, capsys):
    run = str(small_run.run.path)
    out = tmp_path / "tuned"
    assert main(["finetune", run, "--data", "usps", "--seed", "-1", "--out", str(out), "-q"]) == 2
    assert "seed must be from 0" in capsys.readouterr().err and not out.exists()
    (tmp_path / "notes.txt").write_text("mine")
    # mkdir's FileExistsError traceback, for a run folder and for an export's file alike.
    assert main(["train", "--train-limit", "500", "--out", str(tmp_path / "notes.txt" / "sub"), "-q"]) == 2
    assert "notes.txt is a file, not a folder" in capsys.readouterr().err
    assert main(["export", run, "--format", "keras", "--out", str(tmp_path / "notes.txt" / "x.keras")]) == 2
    assert "notes.txt is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_reader_that_goes_away_ends_the_command_quietly(mnist):
    """`mnistlab data info | head -1` was a BrokenPipeError traceback. Here the pipe's reader is
    gone before the command starts, so its first write fails every time, not just sometimes."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([MNISTLAB, "data", "info"], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 128 + signal.SIGPIPE  # what a shell reports for a tool SIGPIPE ended


def _strict_json(text):
    """json.loads, refusing the NaN and Infinity that Python's parser alone accepts."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_model_that_gives_nan_is_an_error_and_never_invalid_json(tmp_path, mnist, capsys):
    """A diverged model's NaN used to come out as bare NaN in --json output, with status ok."""
    from mnistlab.config import ModelConfig
    from mnistlab.models import build_model

    model = build_model(ModelConfig(name="broken", conv_filters=(4,), dense_units=()))
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    run = tmp_path / "broken"
    run.mkdir()
    model.save(run / "model.keras")
    _digit_photo(mnist.x_test[0], tmp_path / "seven.png")

    assert main(["predict", str(run), str(tmp_path / "seven.png"), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "not numbers" in captured.err and captured.err.count("\n") == 1
    assert main(["evaluate", str(run), "--limit", "50", "--json"]) == 0
    scores = _strict_json(capsys.readouterr().out)
    assert scores["loss"] is None and scores["n"] == 50


def test_a_sheet_of_many_images_is_capped(tmp_path, mnist):
    """5,000 images made a 249-megapixel sheet nothing opens: only the first MAX_SHEET_ROWS are drawn."""
    from mnistlab.predict import MAX_SHEET_ROWS

    folder = tmp_path / "images"
    folder.mkdir()
    n = MAX_SHEET_ROWS + 3
    for k in range(n):
        Image.fromarray(255 - mnist.x_test[k]).save(folder / f"{k:03d}.png")
    shown = run_cli("predict", str(folder), "--show", str(tmp_path / "sheet.png"))
    assert shown.returncode == 0, shown.stderr
    assert f"(the first {MAX_SHEET_ROWS} of {n} images)" in shown.stdout
    assert "099.png" in shown.stdout and "102.png" in shown.stdout  # the table still answers for every image
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.size == (444, 112 * (MAX_SHEET_ROWS + 1))  # a row each, and one saying what was left out
    (tmp_path / "notes.txt").write_text("mine")
    assert_one_line_error(run_cli("predict", str(folder / "000.png"), "--show", str(tmp_path / "notes.txt" / "s.png")),
                          "notes.txt is a file, not a folder")


def _help(capsys, *argv):
    """What `mnistlab ARGV --help` prints, as --flag -> its help on one line."""
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    text, helps, flag = capsys.readouterr().out, {}, None
    for line in text.splitlines():
        start = re.match(r"  (?:-\w, )?(--[\w-]+)", line)
        if start:
            flag, helps[start.group(1)] = start.group(1), line[start.end():]
        elif flag and line.startswith("   "):
            helps[flag] += " " + line
        else:
            flag = None
    return text, {key: " ".join(value.split()) for key, value in helps.items()}


def _assert_defaults_shown(helps, settings, skip, empty):
    """Every flag of `settings` (a dataclass) says "(default X)", X being its value as the flag takes
    it: given back as the flag, X is that value (config.coerce); `empty` says what an "" means."""
    for field in dataclasses.fields(settings):
        if field.name in skip:
            continue
        value = getattr(settings, field.name)
        text = helps["--" + field.name.replace("_", "-")]
        shown = re.search(r"\(default (.+)\)$", text).group(1)
        if value == "":
            assert shown == empty[field.name], field.name
        elif value == ():
            assert shown == "none", field.name
        else:
            assert coerce(type(settings), field.name, shown) == value, (field.name, shown, value)
        assert len(text) > len(f"(default {shown})") + 10, f"--{field.name} says what it is"


@pytest.mark.parametrize("preset", [None, *PRESETS])
def test_train_help_shows_the_defaults_of_the_preset_chosen(preset, capsys, monkeypatch):
    """`mnistlab train --help` once showed TrainConfig's own defaults (12 epochs, 1e-3), which no
    preset uses; now each flag shows what the preset resolves to, fast's without --model."""
    monkeypatch.setenv("COLUMNS", "300")  # no help wrapped, so none is cut at a hyphen
    text, helps = _help(capsys, "train", *([] if preset is None else ["--model", preset]))
    cfg = preset_config(preset or DEFAULT_PRESET)
    empty = {"out": f"runs/{cfg.model.name}-<date>-<time>", "data_path": "the MNIST cache, filled by one download"}
    _assert_defaults_shown(helps, cfg.train, {"verbose"}, empty)
    _assert_defaults_shown(helps, cfg.model, {"name"}, empty)
    source = f"model {DEFAULT_PRESET}'s (the default preset)" if preset is None else f"--model {preset}'s"
    assert f"The defaults shown are {source}." in text
    assert "--schedule constant|onecycle" in text and "--augment-style digit|handwriting" in text
    assert "--pooling max|avg|none" in text and "--model linear|mlp|cnn" in text


def test_finetune_and_tune_help_show_their_own_defaults(capsys, tmp_path, monkeypatch):
    """A fine-tune starts from FINETUNE_TRAIN and a --config file's tables; tune from its preset."""
    monkeypatch.setenv("COLUMNS", "300")
    _, helps = _help(capsys, "finetune", "RUN")
    cfg = resolve_config(ModelConfig(), preset_train=FINETUNE_TRAIN, finetune_overrides={})
    empty = {"out": "runs/<model>-finetune-<date>-<time>", "data_path": "the MNIST cache, filled by one download"}
    _assert_defaults_shown(helps, cfg.train, {"verbose", "ensemble"}, empty)
    _assert_defaults_shown(helps, cfg.finetune, {"parent", "data"}, empty)
    assert helps["--epochs"].endswith("(default 20)") and helps["--learning-rate"].endswith("(default 0.0003)")

    file = tmp_path / "ft.toml"
    file.write_text("[train]\nepochs = 5\n[finetune]\nshots = 10\n")
    text, helps = _help(capsys, "finetune", "RUN", "--config", str(file))
    assert helps["--epochs"].endswith("(default 5)") and helps["--shots"].endswith("(default 10)")
    assert f"with {file}" in text

    from mnistlab.tune import TUNE_PRESET

    _, helps = _help(capsys, "tune")
    cfg = preset_config(TUNE_PRESET)
    _assert_defaults_shown(helps, cfg.train, {"verbose", "ensemble", "out"}, empty)
    _assert_defaults_shown(helps, cfg.model, {"name"}, empty)


def test_latest_names_the_newest_run_and_train_says_what_to_run_next(mnist, tmp_path, monkeypatch, capsys):
    tiny = ["--model", "cnn", "--conv-filters", "4", "--dense-units", "8", "--epochs", "1", "--train-limit", "500",
            "--test-limit", "100", "--validation-split", "0.1"]
    first = run_cli("train", *tiny, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run,) = (tmp_path / "runs").glob("cnn-*")
    lines = first.stdout.splitlines()
    steps = lines[lines.index("next:") + 1 :]
    assert [step.split()[:3] for step in steps[:3]] == [["mnistlab", "report", f"runs/{run.name}"],
                                                      ["mnistlab", "serve", f"runs/{run.name}"],
                                                      ["mnistlab", "predict", f"runs/{run.name}"]]
    assert "runs/latest names this run" in steps[3]
    assert os.readlink(tmp_path / "runs" / "latest") == run.name  # relative: the folder can move

    # A second run moves latest to itself; -q leaves the next steps out.
    monkeypatch.chdir(tmp_path)
    assert main(["train", *tiny, "--seed", "1", "-q"]) == 0
    out = capsys.readouterr().out
    second = Path(re.search(r"run folder (\S+)", out).group(1))
    assert "next:" not in out and second != Path("runs", run.name)
    assert os.readlink("runs/latest") == second.name

    # Every command that takes a run takes latest: the same answers as the folder named.
    assert main(["evaluate", "latest", "--limit", "50", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run"] == str(second)
    _digit_photo(mnist.x_test[0], tmp_path / "seven.png")
    for command in (["predict", "seven.png"], ["read", "seven.png"]):
        assert main([command[0], str(second), *command[1:], "--json"]) == 0
        named = json.loads(capsys.readouterr().out)
        assert main([command[0], "latest", *command[1:], "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == named
        assert main([*command, "--model", "runs/latest", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == named

    # A fine-tune of latest becomes latest, and names its parent in its next steps.
    np.savez(tmp_path / "digits.npz", x=255 - mnist.x_test[:300], y=mnist.y_test[:300])
    assert main(["finetune", "latest", "--data", "digits.npz", "--epochs", "1", "--no-control",
                 "--test-limit", "100", "-q"]) == 0
    assert "next:" not in capsys.readouterr().out
    (tuned,) = Path("runs").glob("cnn-finetune-*")
    assert os.readlink("runs/latest") == tuned.name

    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    assert main(["evaluate", "latest"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no finished run in runs/")

"""The CLI end to end: the real `mnistlab` command on a small slice, and one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnistlab.cli import main

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
    import numpy as np
    from PIL import Image

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

    read = run_cli("read", run, str(folder / "img0.png"), "--json")
    assert read.returncode == 0, read.stderr
    assert len(json.loads(read.stdout)["digits"]) == 1
    read_by_flag = run_cli("read", "--model", run, str(folder / "img0.png"), "--json")
    assert json.loads(read_by_flag.stdout) == json.loads(read.stdout), read_by_flag.stderr
    assert_one_line_error(run_cli("read", run, str(folder / "img0.png"), str(folder / "img1.png")), "one image")

    assert_one_line_error(run_cli("predict", run, str(tmp_path / "missing.png")), "missing.png")
    assert_one_line_error(run_cli("predict", run, str(folder / "notes.txt")), "notes.txt")
    assert_one_line_error(run_cli("predict", str(tmp_path / "norun"), str(folder)), "does not exist")
    assert_one_line_error(run_cli("predict", run, str(folder), "--min-confidence", "2"), "min_confidence")


def test_predict_and_read_need_no_run_folder(tmp_path, mnist):
    """The reader shipped with mnistlab answers when no run is named; no_digit is null, not a guess."""
    from PIL import Image

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

"""mnistlab.train(...) and mnistlab.Run: the recipe as calls, each the library function its command calls.

    pytest tests/test_api.py
"""

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import types

import pytest

import mnistlab
from mnistlab.api import Report, Run, train
from mnistlab.config import ConfigError
from mnistlab.evaluate import evaluate
from mnistlab.runs import RUNS_DIR, RunDir, RunError


@pytest.fixture
def run(small_run, mnist):
    return Run(small_run.run.path, data=mnist, quiet=True)


def _python(code: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def test_import_stays_light_and_the_lazy_names_load_quietly():
    done = _python("import mnistlab, sys\n"
                   "print(sorted(m for m in ('keras', 'tensorflow', 'mnistlab.api') if m in sys.modules), "
                   "'train' in dir(mnistlab), 'Run' in dir(mnistlab))\n"
                   "print(mnistlab.Run.__module__, 'keras' in sys.modules)")
    assert done.stdout.splitlines() == ["[] True True", "mnistlab.api True"]
    assert done.stderr == ""  # TensorFlow's start-up notes hidden, as for the CLI


@pytest.mark.parametrize("first", ["", "import mnistlab.train.fit\n"])
def test_mnistlab_train_is_the_api_whatever_was_imported_first(first):
    """Importing the subpackage binds mnistlab.train to it, before or after the first call: it is
    the subpackage still (its names, `import ... as`), and calling it is mnistlab.api.train."""
    out = _python(first + "import mnistlab\n"
                  "package = mnistlab.train\n"  # __getattr__'s import, unless `first` imported it
                  "import mnistlab.api\n"
                  "mnistlab.api.train = lambda *args, **kw: ('api', args, kw)\n"
                  "print(mnistlab.train('cnn', epochs=2), mnistlab.train.train.__module__)\n"
                  "import mnistlab.train.fit as fit\n"
                  "from mnistlab import train\n"
                  "print(train is package is mnistlab.train, train(), fit.__name__)").stdout
    assert out.splitlines() == ["('api', ('cnn',), {'epochs': 2}) mnistlab.train.fit",
                                "True ('api', (), {}) mnistlab.train.fit"]


def test_mnistlab_train_has_the_api_signature():
    import inspect

    assert isinstance(mnistlab.train, types.ModuleType)
    assert inspect.signature(mnistlab.train) == inspect.signature(train)
    assert mnistlab.Run is Run


def test_train_writes_a_run_with_the_settings_given(mnist, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default folder is runs/<model>-<time> here, then runs/latest
    done = mnistlab.train(data=mnist, quiet=True, train_limit=1000, test_limit=200, validation_split=0.0,
                          dense_units=(16,))
    assert isinstance(done, Run) and done.path.parent == RUNS_DIR
    config = tomllib.loads((done.path / "config.toml").read_text())
    assert config["model"]["name"] == "fast" and config["model"]["dense_units"] == [16]
    assert config["train"]["train_limit"] == 1000 and config["train"]["verbose"] == 0
    assert done.metrics["test_images"] == 200 and done.metrics["params"] < 100_000
    assert Run("latest").path.resolve() == done.path.resolve()
    assert done.data is mnist  # kept for evaluate, report and export


def test_bad_settings_fail_before_any_folder(mnist, tmp_path):
    with pytest.raises(ConfigError, match="unknown model preset 'nope'"):
        train("nope", data=mnist, out=tmp_path / "a")
    with pytest.raises(ConfigError, match="unknown TrainConfig field 'epoch'"):
        train(epoch=3, data=mnist, out=tmp_path / "b")
    with pytest.raises(ConfigError, match="dropout"):
        train(dropout=1.5, data=mnist, out=tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


def test_run_opens_finished_folders_only(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        Run(tmp_path / "missing")
    with pytest.raises(RunError, match="no model.keras"):
        Run(tmp_path)


def test_run_describes_itself(run, small_run):
    assert run.path == small_run.run.path and os.fspath(run) == str(small_run.run.path)
    assert run.metrics == small_run.metrics
    summary = run.summary()
    assert summary["model"].startswith("fast (") and summary["test accuracy"].endswith("on 1,000 images")
    assert repr(run).startswith(f"<Run {run.path}: model fast (") and summary["test accuracy"] in repr(run)
    table = run._repr_html_()
    assert table.startswith("<table>") and html.escape(str(run.path)) in table


def test_evaluate_scores_as_at_training(run, small_run, mnist):
    """The oracle: the accuracy train() recorded on the same 1,000 test images."""
    scores = run.evaluate(limit=1000)
    assert scores["n"] == 1000 and scores["run"] == str(run.path) and scores["tta"] is False
    assert scores["accuracy"] == pytest.approx(small_run.metrics["test_accuracy"], abs=1e-9)
    in_memory = evaluate(small_run.model, mnist.x_test[:1000], mnist.y_test[:1000])  # the model train() returned
    assert scores["confusion_matrix"] == in_memory["confusion_matrix"]
    assert scores["loss"] == pytest.approx(in_memory["loss"], rel=1e-5)
    json.dumps(scores)  # plain data
    with pytest.raises(ConfigError, match="limit must be >= 0"):
        run.evaluate(limit=-1)


def test_predict_is_the_runs_predictor(run, small_run, mnist):
    images = list(mnist.x_test[:20])
    answers = run.predict(images)
    assert run.predictor is run.predictor  # loaded once
    assert [a.to_dict() for a in answers] == [a.to_dict() for a in mnistlab.predict(images, run=run)]
    assert sum(a.digit == y for a, y in zip(answers, mnist.y_test[:20])) >= 18


def test_report_shows_the_page_inline(run, tmp_path):
    report = run.report(tmp_path / "page.html", sweep_images=50, test_limit=500)
    assert isinstance(report, Report) and report.path == tmp_path / "page.html"
    assert report.numbers["test"]["n"] == 500
    shown = report._repr_html_()
    srcdoc = re.fullmatch(r'<iframe srcdoc="([^"]*)" sandbox="" .*</iframe>', shown, re.S)
    assert srcdoc and html.unescape(srcdoc.group(1)) == report.path.read_text(encoding="utf-8")
    assert not (run.path / "report.html").exists()  # `out` was given


def test_export_writes_onnx_that_is_then_used(run, tmp_path, mnist):
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)  # small_run is shared: export into a copy
    exported = Run(copy, data=mnist, quiet=True).export()
    assert exported["path"] == str(RunDir(copy).onnx) and exported["agreement"] >= 0.9999
    assert mnistlab.Predictor.load(copy).runtime == "onnx"

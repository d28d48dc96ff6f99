"""Export: ONNX round trip with parity, metadata, onnxruntime-only prediction, failed parity, CLI."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from mnistlab import export
from mnistlab.cli import main
from mnistlab.data import PREPROCESSING_VERSION, default_cache_dir
from mnistlab.export import export_model
from mnistlab.predict import Predictor
from mnistlab.runs import LOCK_FILE
from mnistlab.runtimes import ExportError, OnnxModel


@pytest.fixture(scope="module")
def tiny_run(mnist, tmp_path_factory):
    """`fast` for one epoch on 2,000 images (~88 %): enough for parity, a few seconds to train."""
    from mnistlab.models import preset_config
    from mnistlab.train import train

    out = tmp_path_factory.mktemp("export") / "run"
    cfg = preset_config("fast", train_limit=2000, validation_split=0.1, test_limit=500, out=str(out), verbose=0)
    return train(cfg, data=mnist)


@pytest.fixture(scope="module")
def exported(tiny_run, mnist):
    """The run exported to its default RUN/model.onnx, with the figures export_model returned."""
    return export_model(tiny_run.run.path, data=mnist)


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(folder):
    """Hidden files other than the run's lock: temporary files an export left behind."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != LOCK_FILE]


def test_onnx_export_passes_parity(tiny_run, exported):
    assert exported["path"] == str(tiny_run.run.path / "model.onnx")
    assert exported["format"] == "onnx" and exported["n"] == 10_000
    assert exported["agreement"] >= export.MIN_AGREEMENT
    assert exported["max_abs_diff"] <= export.MAX_PROB_DIFF
    assert exported["test_accuracy"] == pytest.approx(exported["keras_test_accuracy"], abs=1e-4)
    assert exported["size_bytes"] == (tiny_run.run.path / "model.onnx").stat().st_size > 100_000
    assert exported["export_seconds"] > 0 and exported["parity_seconds"] > 0
    assert _leftovers(tiny_run.run.path) == []


def test_onnx_file_describes_itself(tiny_run, exported):
    proto = onnx.load(exported["path"])
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["classes"] == "0,1,2,3,4,5,6,7,8,9"
    assert props["preprocessing_version"] == str(PREPROCESSING_VERSION)
    assert float(props["temperature"]) == tiny_run.metrics["calibration"]["temperature"]
    assert float(props["test_accuracy"]) == tiny_run.metrics["test_accuracy"]
    assert props["mnistlab_version"] and "float32 (N, 28, 28, 1)" in props["input"]

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert [(v.name, dims(v)) for v in proto.graph.input] == [("image", ["batch", 28, 28, 1])]
    assert [(v.name, dims(v)) for v in proto.graph.output] == [("probabilities", ["batch", 10])]
    assert OnnxModel(exported["path"]).temperature == tiny_run.metrics["calibration"]["temperature"]


def test_onnx_model_predicts_like_keras_in_any_batch(tiny_run, exported, mnist):
    """Keras is the oracle; one image, uneven batches and (N, 28, 28) input all give its answer."""
    from mnistlab.data import preprocess_images

    x = preprocess_images(mnist.x_test[:50])
    keras_probs = tiny_run.model.predict(x, verbose=0)
    model = OnnxModel(exported["path"])
    np.testing.assert_allclose(model.predict(x, batch_size=7), keras_probs, atol=1e-5)
    np.testing.assert_allclose(model.predict(x[:, :, :, 0]), keras_probs, atol=1e-5)
    np.testing.assert_allclose(model.predict(x[:1]), keras_probs[:1], atol=1e-5)
    assert model.predict(x).dtype == np.float32


def test_predictor_from_onnx_matches_from_run(tiny_run, exported, mnist):
    images = list(mnist.x_test[:20])
    by_onnx = Predictor.from_onnx(exported["path"]).predict(images)
    by_keras = Predictor.from_run(tiny_run.run.path).predict(images)
    assert [p.digit for p in by_onnx] == [p.digit for p in by_keras]
    np.testing.assert_allclose([p.confidence for p in by_onnx], [p.confidence for p in by_keras], atol=1e-4)


def test_onnx_prediction_imports_neither_keras_nor_tensorflow(exported, mnist, tmp_path):
    from PIL import Image

    Image.fromarray(255 - mnist.x_test[0]).save(tmp_path / "digit.png")  # dark ink on white, as drawn
    code = (
        "import json, sys\n"
        "from mnistlab import Predictor\n"
        f"p = Predictor.from_onnx({exported['path']!r}).predict([{str(tmp_path / 'digit.png')!r}])[0]\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'tf2onnx'))\n"
        "print(json.dumps({'digit': p.digit, 'heavy': heavy}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["heavy"] == []
    assert answer["digit"] == Predictor.from_onnx(exported["path"]).predict([mnist.x_test[0]])[0].digit


@pytest.mark.parametrize("form", [["--model", "RUN", "IMAGE"], ["RUN", "IMAGE"]])
def test_cli_predicts_on_a_runs_onnx_without_keras(tiny_run, exported, mnist, tmp_path, form, cli_probe):
    """`mnistlab predict --model RUN IMAGE` (and the older `predict RUN IMAGE`) with RUN/model.onnx:
    the answer of Predictor.from_onnx, and neither Keras nor TensorFlow ever imported."""
    from PIL import Image

    image = tmp_path / "digit.png"
    Image.fromarray(255 - mnist.x_test[1]).save(image)
    args = [{"RUN": str(tiny_run.run.path), "IMAGE": str(image)}.get(a, a) for a in form]
    answers, probe = cli_probe("predict", *args, "--json")
    assert probe == {"exit": 0, "heavy": []}
    assert answers == [p.to_dict() for p in Predictor.from_onnx(exported["path"]).predict([image])]


def _corrupt_weights(monkeypatch):
    """Make the converter write a file whose largest weight tensor is scaled by 1.5."""
    convert = export._convert_onnx

    def corrupting(model, temp, props):
        convert(model, temp, props)
        proto = onnx.load(str(temp))
        biggest = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
        weights = onnx.numpy_helper.to_array(biggest) * np.float32(1.5)
        biggest.CopyFrom(onnx.numpy_helper.from_array(weights, biggest.name))
        onnx.save(proto, str(temp))

    monkeypatch.setattr(export, "_convert_onnx", corrupting)


def test_failed_parity_keeps_the_previous_export(tiny_run, exported, mnist, monkeypatch):
    path = tiny_run.run.path / "model.onnx"
    before = _sha256(path)
    _corrupt_weights(monkeypatch)
    with pytest.raises(ExportError, match=r"disagrees with the Keras model.*was left as it was"):
        export_model(tiny_run.run.path, data=mnist)
    assert _sha256(path) == before
    assert _leftovers(tiny_run.run.path) == []


def test_failed_parity_leaves_no_file(tiny_run, mnist, monkeypatch, tmp_path):
    monkeypatch.setattr(export, "MAX_PROB_DIFF", -1.0)  # no export can pass
    with pytest.raises(ExportError, match=r"max \|prob diff\|.*the file was removed"):
        export_model(tiny_run.run.path, out=tmp_path / "m.onnx", data=mnist)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt,name", [("keras", "copy.keras"), ("savedmodel", "saved")])
def test_other_formats_pass_parity(tiny_run, mnist, tmp_path, fmt, name):
    result = export_model(tiny_run.run.path, fmt, tmp_path / name, data=mnist)
    assert result["agreement"] == 1.0 and result["max_abs_diff"] <= export.MAX_PROB_DIFF
    assert (tmp_path / name).exists() and _leftovers(tmp_path) == []
    if fmt == "savedmodel":
        assert json.loads((tmp_path / name / "mnistlab.json").read_text())["classes"] == "0,1,2,3,4,5,6,7,8,9"


def test_cli_export_json(tiny_run, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    argv = ["export", str(tiny_run.run.path), "--out", str(out), "--json", "--cache-dir", str(default_cache_dir()),
            "--offline"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["path"] == str(out) and out.is_file()
    assert result["agreement"] >= export.MIN_AGREEMENT and result["max_abs_diff"] <= export.MAX_PROB_DIFF


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--format", "tflite"], "unknown export format 'tflite'"),
        (["--format", "keras"], "give the copy's path with --out"),
        (["--format", "keras", "--out", "{run}/model.keras"], "is the run's own model"),
        # mkdir's FileExistsError was a traceback: a file stands where the folder must be.
        (["--format", "keras", "--out", "{run}/config.toml/x.keras"], "config.toml is a file, not a folder"),
        (["--out", "{run}/metrics.json/deeper/x.onnx"], "metrics.json is a file, not a folder"),
        (["--format", "keras", "--out", "{run}"], "is a folder; give the keras file's own name"),
    ],
)
def test_cli_bad_input_is_one_line(tiny_run, extra, fragment, capsys):
    run = str(tiny_run.run.path)
    assert main(["export", run, *(a.format(run=run) for a in extra)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0]


def test_cli_missing_run_is_one_line(capsys):
    assert main(["export", "/no/such/run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


def test_unusable_onnx_files_raise_export_error(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        Predictor.from_onnx(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_text("not a model")
    with pytest.raises(ExportError, match="cannot load ONNX model"):
        OnnxModel(tmp_path / "bad.onnx")

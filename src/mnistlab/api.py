"""The recipe as a few calls, for notebooks and scripts: train a run, then evaluate, report,
predict and export it.

    python -c "import mnistlab; run = mnistlab.train(); print(run.evaluate()['accuracy'])"

`mnistlab.train(...)` returns a Run: a run folder with the later stages as methods. Each method
is the library function its command calls (evaluate.evaluate, report.write_report,
predict.Predictor, export.export_model), so a notebook gets the numbers the CLI prints. A Run
and a Report show themselves in Jupyter (`_repr_html_`); examples/quickstart.ipynb uses them all.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.config import DEFAULT_PRESET, ConfigError, ModelConfig, resolve_config
from mnistlab.data import MnistArrays, load_mnist
from mnistlab.evaluate import evaluate
from mnistlab.export import export_model
from mnistlab.models import get_preset
from mnistlab.predict import Prediction, Predictor, Source
from mnistlab.report import write_report
from mnistlab.report.sections import read_run_config
from mnistlab.runs import RunDir, mark_latest, resolve_run
from mnistlab.train import train as train_from_config

# The report's frame in a notebook, CSS pixels: about a screen; the page scrolls inside it.
REPORT_FRAME_HEIGHT = 720
# train()'s settings that describe the architecture; the others are TrainConfig's.
MODEL_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelConfig))


def train(
    model: str = DEFAULT_PRESET,
    *,
    out: str | os.PathLike | None = None,
    data: MnistArrays | None = None,
    quiet: bool = False,
    **settings: Any,
) -> Run:
    """Train a preset into a new run folder, as `mnistlab train --model MODEL` does.

        run = mnistlab.train()                                  # `fast`: one epoch, about 10 s
        run = mnistlab.train("cnn", epochs=3, dropout=0.2, out="runs/mine")

    Args:
        model: a preset's name (mnistlab.models.PRESETS).
        out: the run folder to create; by default runs/<model>-<time> in the working folder, which
            then becomes runs/latest.
        data: MNIST already in memory (mnistlab.data.load_mnist); else loaded from the cache, or
            downloaded once. The Run keeps it for evaluate, report and export.
        quiet: no progress bar and no messages.
        settings: fields of TrainConfig (epochs=3, train_limit=5000) and of ModelConfig
            (dropout=0.2), as the flags of `mnistlab train` set them.

    Returns:
        The finished run.

    Raises:
        ConfigError: an unknown preset or setting, or a value out of range.
        MnistlabError: as mnistlab.train.train (no data, a folder that exists, a diverged run).
    """
    preset = get_preset(model)
    run_settings = {k: v for k, v in settings.items() if k not in MODEL_FIELDS}
    if out is not None:
        run_settings["out"] = os.fspath(out)
    if quiet:
        run_settings["verbose"] = 0
    cfg = resolve_config(preset.model, model_overrides={k: v for k, v in settings.items() if k in MODEL_FIELDS},
                         train_overrides=run_settings, preset_train=preset.train)
    t = cfg.train
    if data is None:
        data = load_mnist(path=t.data_path or None, offline=t.offline, progress=t.verbose > 0)
    result = train_from_config(cfg, data=data)
    mark_latest(result.run)  # as `mnistlab train`: `mnistlab evaluate latest` finds it
    return Run(result.run.path, data=data, quiet=quiet)


@dataclass(frozen=True)
class Report:
    """A report page written by Run.report, shown inline in Jupyter."""

    path: Path  # the HTML page; its numbers are beside it, as .json

    @property
    def numbers(self) -> dict[str, Any]:
        """Every number of the page (mnistlab.report.build_report's dict)."""
        return json.loads(self.path.with_suffix(".json").read_text(encoding="utf-8"))

    def _repr_html_(self) -> str:
        # The page is self-contained (images as data URLs, no script), so it travels in srcdoc; a
        # frame keeps its stylesheet off the notebook's, and the empty sandbox lets it run nothing.
        page = html.escape(self.path.read_text(encoding="utf-8"), quote=True)
        return (f'<iframe srcdoc="{page}" sandbox="" title="{html.escape(str(self.path))}" '
                f'style="width: 100%; height: {REPORT_FRAME_HEIGHT}px; border: 1px solid #ccc"></iframe>')

    def __repr__(self) -> str:
        return f"Report({str(self.path)!r})"


class Run:
    """A finished run folder, with the stages that use one as methods.

        run = mnistlab.Run("runs/fast-20261130-084133")   # or Run("latest")
        run.evaluate()["accuracy"], run.predict("seven.jpg")[0].digit

    A Run is os.PathLike, so it goes wherever a run folder does: mnistlab.predict(x, run=run).
    """

    def __init__(self, path: str | os.PathLike, *, data: MnistArrays | None = None, quiet: bool = False):
        """Open a run folder written by `mnistlab train` (or "latest").

        Args:
            data: MNIST already in memory for evaluate, report and export; else loaded when
                first needed.
            quiet: no progress messages from the methods.

        Raises:
            RunError: no such folder, or no model in it.
        """
        self.folder = RunDir.open(resolve_run(path))
        self.quiet = quiet
        self._data = data
        self._predictor: Predictor | None = None

    @property
    def path(self) -> Path:
        return self.folder.path

    @property
    def metrics(self) -> dict[str, Any]:
        """metrics.json: the test accuracy, the run's details, seed, data, versions, machine."""
        return self.folder.read_metrics()

    @property
    def predictor(self) -> Predictor:
        """The run's Keras model with its temperature, loaded once (mnistlab.Predictor.from_run)."""
        if self._predictor is None:
            self._predictor = Predictor.from_run(self.path)
        return self._predictor

    @property
    def data(self) -> MnistArrays:
        """The MNIST arrays the methods score on: those given, else the cache's, loaded once."""
        if self._data is None:
            self._data = load_mnist(progress=not self.quiet)
        return self._data

    def evaluate(self, *, limit: int = 0, tta: bool = False) -> dict[str, Any]:
        """The model scored on the MNIST test set, as `mnistlab evaluate`.

        Args:
            limit: score the first N test images only (0: all 10,000).
            tta: average each image's prediction over small shifts (test-time augmentation).

        Returns:
            {"run", "tta", "n", "accuracy", "loss", "per_class", "macro_f1", "confusion_matrix"};
            mnistlab.evaluate.format_report prints it as the command does.
        """
        if limit < 0:
            raise ConfigError(f"limit must be >= 0 (0: every test image), not {limit}.")
        data = self.data
        x, y = data.x_test, data.y_test
        if limit:
            x, y = x[:limit], y[:limit]
        return {"run": str(self.path), "tta": tta, **evaluate(self.predictor.model, x, y, tta=tta)}

    def report(self, out: str | os.PathLike | None = None, **options: Any) -> Report:
        """Write the run's report page (RUN/report.html unless `out` says), as `mnistlab report`.

        Args:
            out: the HTML file, or a folder for report.html.
            options: as mnistlab.report.build_report (folders, sweep_images, seed, test_limit,
                progress).
        """
        options.setdefault("progress", not self.quiet)
        if "data" not in options:  # not setdefault: that would load MNIST even when given
            options["data"] = self.data
        return Report(write_report(self.path, out, **options))

    def predict(self, images: Source | list[Source]) -> list[Prediction]:
        """The digit in each image, with its calibrated confidence, as `mnistlab predict --model RUN`.

        Args:
            images: one image or a list: paths, the files' bytes, PIL images, or NumPy arrays in
                grey (H, W), RGB (H, W, 3) or RGBA (H, W, 4), uint8 or float in [0, 1].
        """
        return self.predictor.predict(images)

    def export(self, fmt: str = "onnx", out: str | os.PathLike | None = None) -> dict[str, Any]:
        """Export the model (RUN/model.onnx by default) and check it on the MNIST test set, as
        `mnistlab export`; returns mnistlab.export.export_model's parity figures."""
        return export_model(self.path, fmt, out, data=self.data, progress=not self.quiet)

    def summary(self) -> dict[str, str]:
        """What the run is, in words: its folder, model, test accuracy and training."""
        m = self.metrics
        model = read_run_config(self.folder).get("model", {}).get("name", "?")
        found = {"run": str(self.path), "model": f"{model} ({m['params']:,} parameters)" if "params" in m else model}
        if "test_accuracy" in m:
            found["test accuracy"] = f"{m['test_accuracy'] * 100:.2f} % on {m.get('test_images', 0):,} images"
        trained = []
        if "epochs_run" in m:
            n = m["epochs_run"]
            trained.append(f"{n} epoch{'' if n == 1 else 's'}, {m['train_seconds']:.0f} s")
        machine = m.get("machine", {})
        if machine.get("backend"):
            trained.append(f"on {machine['backend']}, {machine.get('device', '?')}")
        if trained:
            found["trained"] = " ".join(trained)
        return found

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __repr__(self) -> str:
        details = "; ".join(f"{k} {v}" for k, v in self.summary().items() if k != "run")
        return f"<Run {self.path}: {details}>"

    def _repr_html_(self) -> str:
        rows = "".join(f'<tr><th style="text-align: left">{html.escape(k)}</th><td style="text-align: left">'
                       f"{html.escape(v)}</td></tr>" for k, v in self.summary().items())
        return f"<table>{rows}</table>"

"""mnistlab: develop, fine-tune and use handwritten-digit recognizers on Keras 3.

    mnistlab train            # the default preset on verified MNIST, writes runs/<name>/

Keras's backend (TensorFlow, JAX or PyTorch) is chosen here, before any module imports Keras:
the user's KERAS_BACKEND, else Keras's config file, else the first one installed (see
mnistlab.backends and docs/explanation/backends.md).
"""

import os
import sys

from mnistlab import backends

if "keras" not in sys.modules:  # else Keras runs on the backend it was imported with
    backends.select()
# TensorFlow's C++ log is noise for a CLI user: CPU-feature notes at start-up and, with
# tensorflow-cpu 2.21, an E-level "NodeDef mentions attribute use_unbounded_threadpool" line on
# every fit. Real failures still raise Python exceptions. Set TF_CPP_MIN_LOG_LEVEL=0 to see it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The Python API for reading digits: `mnistlab.predict(images)` and `mnistlab.read_number(image)`,
# on the reader shipped in the package, or on a run's model with `run=`. Keras is imported only
# when a run without model.onnx is used, and then without TensorFlow's start-up notes.
from mnistlab.predict import Prediction, Predictor, Reading, predict, read_number  # noqa: E402
from mnistlab.version import __version__  # noqa: E402

__all__ = ["Prediction", "Predictor", "Reading", "Run", "__version__", "predict", "read_number", "train"]

# The recipe as calls (mnistlab.api): `mnistlab.train(...)` returns a `mnistlab.Run`. Both need
# Keras, so they are imported on first use (PEP 562 __getattr__). `mnistlab.train` is also the
# training subpackage, and Python makes it the package's attribute whenever it is imported
# (`import mnistlab.train.fit`, by anyone, before or after): so that module is made callable
# rather than hidden by a function, and `mnistlab.train.train(cfg)`, `import mnistlab.train as t`
# and mock paths through it still work. Module classes: docs.python.org/3/reference/datamodel.html
# ("Customizing module attribute access").
import inspect  # noqa: E402
import types  # noqa: E402


class _TrainPackage(types.ModuleType):
    """mnistlab.train: the training subpackage, which called is mnistlab.api.train."""

    def __call__(self, *args, **kwargs):
        """Train a preset into a new run folder and return its Run: see mnistlab.api.train."""
        from mnistlab.api import train

        return train(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:  # inspect.signature(mnistlab.train), so Jupyter's `?`
        from mnistlab.api import train

        return inspect.signature(train)


class _Package(types.ModuleType):
    """mnistlab itself, whose train subpackage is made callable as the import system binds it here."""

    def __setattr__(self, name, value):
        if name == "train" and isinstance(value, types.ModuleType):
            value.__class__ = _TrainPackage
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name):
    if name not in ("Run", "train"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from mnistlab.backends import import_keras

    import_keras()  # first, so TensorFlow's start-up notes stay out of a notebook, as out of the CLI
    if name == "Run":
        from mnistlab.api import Run

        return Run
    import mnistlab.train  # binds mnistlab.train, callable, through _Package.__setattr__

    return mnistlab.train


def __dir__():
    return sorted({*globals(), *__all__})  # the lazy names too, for tab completion

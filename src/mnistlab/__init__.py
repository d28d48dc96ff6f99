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

__all__ = ["Prediction", "Predictor", "Reading", "__version__", "predict", "read_number"]

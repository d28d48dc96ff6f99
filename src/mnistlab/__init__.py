"""mnistlab: develop, fine-tune and use handwritten-digit recognizers on Keras 3.

    mnistlab train            # the default preset on verified MNIST, writes runs/<name>/

The backend is TensorFlow (see README "Why TensorFlow"); it is chosen here, before any module
imports Keras, and a user's own KERAS_BACKEND still wins.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ start-up chatter (CPU feature notes) is noise for a CLI user; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

"""Pixels for mnistlab: verified MNIST and its model input (`mnist`), users' own images.

    mnistlab data info       # the MNIST cache, its arrays and class counts
    python -c "from mnistlab.data import prepare_image; print(prepare_image('digit.jpg').image)"

`mnist` says what MNIST is, checks arrays against it and turns digits into model input
(`preprocess_images`, `one_hot`); `cache` fills and keeps the verified copy (`load_mnist`) from
the files `formats` reads and `download` fetches. Users' photos and drawings go through `decode`
(files to grey levels: `decode_image`), `images` (MNIST's own normalisation of one digit:
`prepare_image`) and `segment` (each digit of a written number: `segment_digits`), so their
output can follow the same path. `digitsets` reads labelled digits from other sources for
fine-tuning (`usps`, the UCI digits, folders of images as `folders` reads them, .npz files in
`digitarrays`: `load_digit_set`), MNIST-normalised by the same functions
(`normalise_digit` for clean scans). What users need of these modules is importable from here;
`ink` (finding the ink in grey levels, with `paper` for the paper under it: polarity, shading,
noise, rulings; and `fastops` for speed) serves `images` and `segment`.
"""

import importlib
from typing import TYPE_CHECKING

from mnistlab.data.cache import default_cache_dir, fetch, info, load_mnist, verify
from mnistlab.data.mnist import (
    IMAGE_SIZE,
    INPUT_SHAPE,
    MNIST_SHA256,
    NUM_CLASSES,
    DataError,
    MnistArrays,
    one_hot,
    preprocess_images,
)

if TYPE_CHECKING:  # what __getattr__ below returns, spelled out for type checkers and IDEs
    from mnistlab.data.decode import IMAGE_SUFFIXES, MAX_PIXELS, ImageError, decode_image, header_pixels
    from mnistlab.data.digitsets import DigitSet, load_digit_set, select_shots
    from mnistlab.data.images import PREPROCESSING_VERSION, Prepared, normalise_digit, prepare_image
    from mnistlab.data.ink import DIGIT_BOX
    from mnistlab.data.segment import segment_digits

# Loaded on first use: Pillow and SciPy add ~0.2 s (measured with `python -X importtime`), which
# `mnistlab data info`, training and evaluation would pay without ever decoding an image.
# Name -> the module under mnistlab.data that defines it.
_LAZY_MODULES = {
    "IMAGE_SUFFIXES": "decode",
    "ImageError": "decode",
    "MAX_PIXELS": "decode",
    "decode_image": "decode",
    "header_pixels": "decode",
    "DigitSet": "digitsets",
    "load_digit_set": "digitsets",
    "select_shots": "digitsets",
    "DIGIT_BOX": "ink",
    "PREPROCESSING_VERSION": "images",
    "Prepared": "images",
    "normalise_digit": "images",
    "prepare_image": "images",
    "segment_digits": "segment",
}

__all__ = [
    "DIGIT_BOX",
    "IMAGE_SIZE",
    "IMAGE_SUFFIXES",
    "INPUT_SHAPE",
    "MAX_PIXELS",
    "MNIST_SHA256",
    "NUM_CLASSES",
    "PREPROCESSING_VERSION",
    "DataError",
    "DigitSet",
    "ImageError",
    "MnistArrays",
    "Prepared",
    "decode_image",
    "header_pixels",
    "default_cache_dir",
    "fetch",
    "info",
    "load_digit_set",
    "load_mnist",
    "normalise_digit",
    "one_hot",
    "prepare_image",
    "preprocess_images",
    "segment_digits",
    "select_shots",
    "verify",
]


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        module = importlib.import_module(f"{__name__}.{_LAZY_MODULES[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

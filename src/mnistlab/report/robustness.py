"""The robustness sweep: seven ways to move MNIST test digits away from what MNIST looks like,
each tried at a range of strengths, and a model's accuracy under every one.

    mnistlab report runs/<name> --sweep-images 2000   # the page's Robustness section

Each corruption takes (N, 28, 28) uint8 and returns the same shape and type; SciPy is imported
inside the functions that use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnistlab.data import IMAGE_SIZE, NUM_CLASSES
from mnistlab.inference import predict_probs, shift_images

# Test images in the robustness sweep: at 97 % accuracy the binomial standard error on 2,000 is
# 0.4 points, finer than any step between two strengths; a sweep of 44 settings takes ~6 s.
SWEEP_IMAGES = 2000
# "Holds up" under a corruption: accuracy within this of the clean accuracy (0.05 = 5 points).
ROBUST_DROP = 0.05
CHANCE = 1 / NUM_CLASSES


# --- corruptions: (N, 28, 28) uint8 in, the same shape and type out -----------------------------


def _to_uint8(a: np.ndarray) -> np.ndarray:
    # Rounded, not truncated: 254.9999 from an interpolation at a whole pixel must stay 255.
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def shift(x: np.ndarray, px: float) -> np.ndarray:
    """Move digits `px` whole pixels right (left when negative); black fills the gap."""
    return shift_images(x, 0, int(px))


def _affine(x: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """Map each output pixel (row, col) to the input at centre + inverse @ (pixel - centre),
    bilinearly, for a whole batch in one call; black outside the image."""
    from scipy import ndimage

    matrix = np.eye(3)
    matrix[1:, 1:] = inverse
    centre = np.full(3, (IMAGE_SIZE - 1) / 2)
    centre[0] = 0
    offset = centre - matrix @ centre
    return _to_uint8(ndimage.affine_transform(x.astype(np.float32), matrix, offset=offset, order=1))


def rotate(x: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate digits anticlockwise about the image centre (bilinear; black fills the corners)."""
    a = np.deg2rad(degrees)
    # Rows point down, so an anticlockwise turn on screen is this matrix's inverse in (row, col).
    return _affine(x, np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]))


def scale(x: np.ndarray, factor: float) -> np.ndarray:
    """Resize digits by `factor` about the image centre, keeping 28x28 (bilinear)."""
    from scipy import ndimage

    if factor < 1:
        # Anti-aliasing as an image resize does it (skimage.transform.rescale's sigma), so that a
        # shrunk 2-px stroke stays a line instead of dots.
        sigma = (1 / factor - 1) / 2
        x = ndimage.gaussian_filter(x.astype(np.float32), sigma=(0, sigma, sigma))
    return _affine(x, np.eye(2) / factor)


def thicken(x: np.ndarray, px: float) -> np.ndarray:
    """Grow strokes by `px` pixels on each side (grey dilation); a negative `px` thins them (erosion)."""
    from scipy import ndimage

    op = ndimage.grey_dilation if px > 0 else ndimage.grey_erosion
    cross = ndimage.generate_binary_structure(2, 1)[np.newaxis]  # one pixel in each of 4 directions
    for _ in range(abs(int(px))):
        x = op(x, footprint=cross)
    return np.array(x, dtype=np.uint8)


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation `sigma` pixels (0 leaves the digits as they are)."""
    from scipy import ndimage

    return _to_uint8(ndimage.gaussian_filter(x.astype(np.float32), sigma=(0, sigma, sigma)))


def add_noise(x: np.ndarray, std: float, seed: int = 0) -> np.ndarray:
    """Add Gaussian noise of `std` times the full 0-255 range to every pixel, then clip.

    The same seed draws the same noise pattern at every strength, so strengths differ only in size.
    """
    noise = np.random.default_rng(seed).standard_normal(x.shape, dtype=np.float32)
    return _to_uint8(x + noise * (std * 255))


def invert(x: np.ndarray, amount: float) -> np.ndarray:
    """Blend digits towards their negative: 0 unchanged, 0.5 flat grey, 1 dark ink on white."""
    return _to_uint8(x.astype(np.float32) * (1 - amount) + (255.0 - x) * amount)


@dataclass(frozen=True)
class Corruption:
    """One way to move the test set away from MNIST, tried at strengths where 0 changes nothing."""

    label: str  # the chart title
    noun: str  # the corruption in a sentence
    unit: str  # the x axis
    strengths: tuple[float, ...]
    apply: Callable[[np.ndarray, float, int], np.ndarray]  # (images, strength, seed) -> images
    words: str  # one strength as a person writes it, a format string

    def describe(self, strength: float) -> str:
        return self.words.format(strength)


CORRUPTIONS: dict[str, Corruption] = {
    # MNIST centres the digit's mass in a 20x20 box, so 4 px still keeps all of it in the frame.
    "shift": Corruption("shifted right", "shift", "pixels", (0, 1, 2, 3, 4, 5, 6),
                        lambda x, s, _: shift(x, s), "{:g} px"),
    "rotate": Corruption("rotated anticlockwise", "rotation", "degrees", (0, 10, 20, 30, 45, 60, 90),
                         lambda x, s, _: rotate(x, s), "{:g}°"),
    "scale": Corruption("resized", "resizing", "size change, %", (-50, -30, -15, 0, 15, 30, 50),
                        lambda x, s, _: scale(x, 1 + s / 100), "{:+g} %"),
    "thickness": Corruption("thickened (+) / thinned (−)", "stroke width", "pixels per side", (-2, -1, 0, 1, 2, 3),
                            lambda x, s, _: thicken(x, s), "{:+g} px"),
    "blur": Corruption("blurred", "blur", "Gaussian σ, pixels", (0, 0.5, 1, 1.5, 2, 3),
                       lambda x, s, _: blur(x, s), "σ {:g} px"),
    "noise": Corruption("noisy", "noise", "noise σ, fraction of full scale", (0, 0.1, 0.2, 0.3, 0.4, 0.6),
                        lambda x, s, seed: add_noise(x, s, seed), "σ {:g}"),
    "invert": Corruption("inverted", "inversion", "blend towards the negative", (0, 0.25, 0.5, 0.75, 1),
                         lambda x, s, _: invert(x, s), "{:g}"),
}


def sweep_subset(n_test: int, size: int = SWEEP_IMAGES, seed: int = 0) -> np.ndarray:
    """Sorted indices of the test images the robustness sweep uses: `size` drawn without
    replacement with `seed` (every index when size >= n_test)."""
    if size >= n_test:
        return np.arange(n_test)
    return np.sort(np.random.default_rng(seed).choice(n_test, size, replace=False))


def _holds_to(strengths: Sequence[float], accuracy: Sequence[float], clean: float) -> float:
    """The largest |strength| up to which every tried strength keeps within ROBUST_DROP of clean."""
    held = 0.0
    for size in sorted({abs(s) for s in strengths}):
        if any(a < clean - ROBUST_DROP for s, a in zip(strengths, accuracy, strict=True) if abs(s) == size):
            break
        held = float(size)
    return held


def sweep(model: Any, x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Accuracy of `model` on (x, y) under each of CORRUPTIONS at each of its strengths.

    Returns:
        {name: {"label", "unit", "strengths", "accuracy", "holds_to"}}, and per name the first
        image at every strength (for the page's examples). holds_to is measured from the
        accuracy at strength 0.
    """
    results, examples = {}, {}
    for name, c in CORRUPTIONS.items():
        # One batch per corruption: Keras's predict() costs ~0.2 s a call before the first image.
        batch = np.concatenate([c.apply(x, s, seed) for s in c.strengths])
        predicted = predict_probs(model, batch).argmax(axis=1).reshape(len(c.strengths), len(x))
        accuracy = [float(a) for a in (predicted == y).mean(axis=1)]
        clean = accuracy[c.strengths.index(0)]
        results[name] = {
            "label": c.label,
            "unit": c.unit,
            "strengths": list(c.strengths),
            "accuracy": accuracy,
            "holds_to": _holds_to(c.strengths, accuracy, clean),
        }
        examples[name] = batch[:: len(x)]
    return results, examples

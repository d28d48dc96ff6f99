"""Tests for the simulated writers of benchmarks/_writers.py: drawings as the server's page makes them.

    pytest tests/test_writers.py

Structural only: seeds, shapes, where the ink lies, and that prepare_image finds it. How well the
base models read each writer is what `python benchmarks/_writers.py` measures.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import _writers  # noqa: E402

from mnistlab.data import prepare_image  # noqa: E402

SIZE = _writers.SIZE


def ink_box(image):
    """(height, width) of the pixels darker than mid-grey."""
    rows, cols = np.nonzero(image < 128)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def test_the_same_seed_draws_the_same_digits():
    writer = _writers.WRITERS["continental"]
    first, again = _writers.samples(writer, 7, 3, seed=5), _writers.samples(writer, 7, 3, seed=5)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.image, b.image)
        assert a.strokes == b.strokes


def test_no_two_drawings_are_the_same():
    writer = _writers.WRITERS["ordinary"]
    drawings = _writers.samples(writer, 3, 3, seed=5) + _writers.samples(writer, 3, 3, seed=6)
    images = [d.image for d in drawings]
    assert all(not np.array_equal(a, b) for i, a in enumerate(images) for b in images[i + 1 :])


@pytest.mark.parametrize("name", sorted(_writers.WRITERS))
def test_every_digit_is_a_page_drawing_with_ink_to_find(name):
    writer = _writers.WRITERS[name]
    assert sorted(writer.templates) == list(range(10)) and writer.description
    for digit in range(10):
        (drawing,) = _writers.samples(writer, digit, 1, seed=digit)
        image = drawing.image
        assert image.shape == (SIZE, SIZE) and image.dtype == np.uint8
        assert image.max() == 255 and image.min() == 0  # white paper, black ink
        edge = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        assert edge.min() == 255, "the digit stays inside the canvas"
        height, width = ink_box(image)
        assert 0.45 * SIZE <= max(height, width) <= 0.98 * SIZE
        points = np.concatenate([np.array(s) for s in drawing.strokes])
        assert points.min() >= 0 and points.max() <= SIZE  # canvas pixels, as pointer events give them
        assert prepare_image(image).has_ink, f"{name} {digit}"


def test_render_draws_a_round_capped_line_of_the_given_width():
    # The oracle: a horizontal stroke 20 px wide from x=60 to x=220 covers 20 rows, and its round
    # caps reach 10 px past each end.
    image = _writers.render([[(60.0, 140.0), (220.0, 140.0)]], width=20)
    assert ink_box(image) == (20, 180)
    assert image[140, 140] == 0 and image[100, 140] == 255
    dot = _writers.render([[(140.0, 140.0)]], width=20)
    assert ink_box(dot) == (20, 20)
    assert (_writers.render([]) == 255).all()

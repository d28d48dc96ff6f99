"""Writing variants: new training digits drawn onto copies of MNIST's (mnistlab.data.variants)."""

from __future__ import annotations

import numpy as np
import pytest

from mnistlab.config import TrainConfig
from mnistlab.data import DataError
from mnistlab.data.variants import (
    HOOK_SHARE,
    HOOKED_DIGITS,
    MAX_LEAN_DEGREES,
    VARIANT_SHARE,
    draw_stroke,
    flag_one,
    hook_end,
    stroke_ends,
    thin,
    writing_variants,
)
from mnistlab.train.inputs import training_split


def test_a_stroke_covers_its_width_and_length():
    """A horizontal stroke 3 px wide from column 5 to 20 on row 14: full ink on the 3 rows around
    it along its length, none a pixel past its round ends' reach."""
    out = draw_stroke(np.zeros((28, 28), np.uint8), np.array([14.5, 5.5]), np.array([14.5, 20.5]), 3.0, 200.0)
    assert (out[13:16, 5:21] == 200).all()
    assert (out[:12] == 0).all() and (out[17:] == 0).all()
    assert (out[:, :3] == 0).all() and (out[:, 23:] == 0).all()
    again = draw_stroke(out, np.array([14.5, 5.5]), np.array([14.5, 20.5]), 3.0, 100.0)
    np.testing.assert_array_equal(again, out)  # drawn only where it is brighter


def _upright_one() -> np.ndarray:
    one = np.zeros((28, 28), np.uint8)
    one[4:24, 13:16] = 255
    return one


def test_a_flag_goes_down_and_left_from_the_top_of_the_stroke():
    one = _upright_one()
    flagged = flag_one(one, np.random.default_rng(0))
    assert flagged is not None and (flagged >= one).all()  # ink is only added
    added = np.argwhere(flagged.astype(int) - one > 127)
    assert len(added) >= 8
    # From the top of the stroke (its round end may reach a pixel past the stroke, up or right)
    # down and to the left, for at most half its height (20 px): a flag, not a bar.
    rows, cols = added[:, 0], added[:, 1]
    assert cols.max() <= 16 and cols.min() <= 9 and rows.min() >= 3 and rows.max() <= 4 + 10
    assert rows[cols <= 10].mean() > rows[cols >= 12].mean() + 1  # further left is further down


def test_a_one_leaning_too_far_gets_no_flag():
    leaning = np.zeros((28, 28), np.uint8)
    for r in range(4, 24):  # the top 12 px right of the bottom: ~31 degrees from upright
        c = 8 + (24 - r) * 12 // 20
        leaning[r, c : c + 3] = 255
    assert MAX_LEAN_DEGREES < 31 and flag_one(leaning, np.random.default_rng(0)) is None
    assert flag_one(np.zeros((28, 28), np.uint8), np.random.default_rng(0)) is None


def _ring() -> np.ndarray:
    rows, cols = np.indices((28, 28)) + 0.5
    return (np.abs(np.hypot(rows - 14, cols - 14) - 7) < 1.5).astype(np.uint8) * 255


def test_thinning_leaves_one_pixel_wide_strokes_that_keep_their_shape():
    bar = np.zeros((28, 28), bool)
    bar[12:16, 4:24] = True  # 4 px wide, 20 long
    ring = _ring() > 0
    line, loop, empty = thin(bar), thin(ring), thin(np.zeros((28, 28), bool))
    assert (line <= bar).all() and (loop <= ring).all() and not empty.any()
    assert line.sum(axis=0)[6:22].tolist() == [1] * 16  # one pixel across, all along the bar
    assert line.sum() >= 16 and line.sum(axis=1).astype(bool).sum() <= 2
    # The ring stays a closed ring, one pixel thick: every pixel on it has two or more neighbours
    # on it (a loop has no end), and no 2x2 block is filled.
    padded = np.pad(loop, 1).astype(int)
    neighbours = sum(np.roll(padded, (dr, dc), (0, 1)) for dr in (-1, 0, 1) for dc in (-1, 0, 1)) - padded
    assert loop.sum() > 30 and (neighbours[1:-1, 1:-1][loop] >= 2).all()
    assert not (loop[:-1, :-1] & loop[1:, :-1] & loop[:-1, 1:] & loop[1:, 1:]).any()


def test_stroke_ends_point_out_of_the_stroke():
    bar = np.zeros((28, 28), bool)
    bar[13, 4:24] = True
    ends = sorted(stroke_ends(bar), key=lambda end: end[0][1])
    assert [end[0].tolist() for end in ends] == [[13.5, 4.5], [13.5, 23.5]]
    np.testing.assert_allclose(ends[0][1], [0, -1])  # the left end runs out to the left
    np.testing.assert_allclose(ends[1][1], [0, 1])
    assert stroke_ends(thin(_ring() > 0)) == []


def test_a_hook_curls_off_a_stroke_end_and_the_digit_is_normalised_again():
    bar = np.zeros((28, 28), np.uint8)
    bar[4:24, 13:16] = 255  # an upright stroke: two ends
    hooked = hook_end(bar, np.random.default_rng(0))
    assert hooked is not None and hooked.shape == (28, 28) and hooked.dtype == np.uint8
    rows, cols = np.nonzero(hooked)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (20, 21)  # boxed to 20 px
    # More ink than the bar had, some of it beside the stroke's column, where the curl turned.
    assert (hooked > 127).sum() > (bar > 127).sum() * 0.9
    assert cols.max() - cols.min() > 4
    assert hook_end(_ring(), np.random.default_rng(0)) is None  # no end to hook


def test_writing_variants_copy_a_share_of_the_class(mnist):
    x, y = mnist.x_train[:3000], mnist.y_train[:3000]
    new_x, new_y = writing_variants(x, y, ("flagged-ones",), seed=1)
    ones = int((y == 1).sum())
    # Of the share drawn, the 1s leaning past MAX_LEAN_DEGREES are left out: about half on MNIST.
    assert 0.2 * VARIANT_SHARE * ones <= len(new_x) <= VARIANT_SHARE * ones
    assert new_x.dtype == np.uint8 and new_x.shape[1:] == (28, 28) and (new_y == 1).all()
    np.testing.assert_array_equal(writing_variants(x, y, ("flagged-ones",), seed=1)[0], new_x)
    empty_x, empty_y = writing_variants(x, y, ())
    assert empty_x.shape == (0, 28, 28) and empty_y.shape == (0,)
    with pytest.raises(DataError, match="unknown writing variant 'crossed-sevens'.*flagged-ones"):
        writing_variants(x, y, ("crossed-sevens",))


def test_hooked_ends_go_on_the_curved_digits_only(mnist):
    x, y = mnist.x_train[:2000], mnist.y_train[:2000]
    new_x, new_y = writing_variants(x, y, ("hooked-ends",), seed=0)
    assert set(np.unique(new_y)) == set(HOOKED_DIGITS)
    for digit in HOOKED_DIGITS:
        made, have = int((new_y == digit).sum()), int((y == digit).sum())
        assert 0.3 * HOOK_SHARE * have <= made <= HOOK_SHARE * have


def test_variants_join_the_fit_part_only(mnist):
    plain = TrainConfig(train_limit=2000, validation_split=0.1, verbose=0)
    varied = TrainConfig(train_limit=2000, validation_split=0.1, writing_variants=("flagged-ones",), verbose=0)
    x_fit, y_fit, x_val, y_val = training_split(mnist, plain)
    vx_fit, vy_fit, vx_val, vy_val = training_split(mnist, varied)
    np.testing.assert_array_equal(vx_val, x_val)
    np.testing.assert_array_equal(vy_val, y_val)
    np.testing.assert_array_equal(vx_fit[: len(x_fit)], x_fit)
    assert len(vx_fit) > len(x_fit) and (vy_fit[len(x_fit):] == 1).all()

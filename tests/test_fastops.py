"""The fast stand-ins of mnistlab.data.fastops give what NumPy and scipy.ndimage give, to the bit.

    pytest tests/test_fastops.py
"""

import numpy as np
from scipy import ndimage as ndi

from mnistlab.data import fastops


def test_fast_helpers_equal_numpy_and_scipy():
    # Each stands in for a NumPy or scipy function to save time: the answers are the same.
    rng = np.random.default_rng(0)
    for trial in range(60):
        size = int(rng.integers(1, 500))
        for dtype in (np.float32, np.float64):
            values = (rng.random(size) ** 3).astype(dtype)
            values[rng.random(size) < trial / 60] = 0  # the zeros of a clean canvas
            if trial % 3 == 0:
                values = (np.round(values * 64) / 64).astype(dtype)  # values on the bins' edges
            median = fastops.median(values)
            assert median == np.median(values) and type(median) is type(np.median(values))
            for percents in ([0.5, 99.5], [0.0, 100.0], [90]):
                assert fastops.percentiles(values, percents) == list(np.percentile(values, percents))
            if values.max() > 0:
                counts, edges = fastops.histogram(values, float(values.max()))
                expected = np.histogram(values, bins=256, range=(0, float(values.max())))
                np.testing.assert_array_equal(counts, expected[0])
                np.testing.assert_array_equal(edges, expected[1])
                assert edges.dtype == expected[1].dtype
    for trial in range(20):
        page = np.zeros((60, 80), np.float32)
        page[10:50, 20:60] = rng.random((40, 40)) < 0.3 + trial / 40
        mask = page > 0
        squared, rows, cols = fastops.feature_transform(~mask)
        distance, (rows_scipy, cols_scipy) = ndi.distance_transform_edt(~mask, return_indices=True)
        np.testing.assert_array_equal(np.sqrt(squared), distance)
        np.testing.assert_array_equal(rows, rows_scipy)
        np.testing.assert_array_equal(cols, cols_scipy)
        reach = float(rng.uniform(1, 6))
        np.testing.assert_array_equal(squared <= fastops.squared_within(reach), distance <= reach)
        sigma = float(rng.uniform(0.3, 2))
        np.testing.assert_array_equal(fastops.gaussian_filter(page, sigma), ndi.gaussian_filter(page, sigma))
        labels, count, slices = fastops.label(mask)
        expected, expected_count = ndi.label(mask, structure=np.ones((3, 3)))
        np.testing.assert_array_equal(labels, expected)
        assert count == expected_count and slices == ndi.find_objects(expected)
        chosen = [int(label) for label in rng.choice(np.arange(1, count + 1), max(1, count // 2))]
        for subset in (sorted(set(chosen)), list(range(1, count + 1)), [count + 5]):
            np.testing.assert_array_equal(fastops.labels_mask(labels, subset),
                                          np.isin(labels, subset))

"""The compiled segment sums are numpy's reduceat along axis 0, bit for bit (its pairwise
summation: block edges at 8 and 128 terms, recursive halves beyond)."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.xmr.matcher_kernel import segment_dots, segment_sums


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 16, 17, 127, 128, 129, 130, 256, 257, 1000, 4097, 30_000])
def test_segment_sums_and_dots_are_reduceat_bit_for_bit(dtype, n):
    rng = np.random.default_rng(n)
    a = (rng.standard_normal((n, 5)) * 10.0 ** rng.integers(-3, 4, size=(n, 1))).astype(dtype)
    b = rng.standard_normal((n, 5)).astype(dtype)
    for n_seg in (1, 3, 40):
        starts = np.unique(np.r_[0, rng.integers(0, n, n_seg - 1)])
        want = np.add.reduceat(a, starts, axis=0)
        got = segment_sums(a, starts)
        assert got.dtype == dtype and np.array_equal(got.view(np.uint8), want.view(np.uint8))
        want = np.add.reduceat(a * b, starts, axis=0)
        got = segment_dots(a, b, starts)
        assert got.dtype == dtype and np.array_equal(got.view(np.uint8), want.view(np.uint8))


def test_other_inputs_fall_back_to_numpy():
    a = np.arange(12, dtype=np.float32).reshape(6, 2)
    # empty segments (reduceat's own rule), mixed dtypes, non-contiguous views, 1-D arrays
    np.testing.assert_array_equal(segment_sums(a, np.array([0, 3, 3])), np.add.reduceat(a, [0, 3, 3], axis=0))
    b = a.astype(np.float64)
    np.testing.assert_array_equal(segment_dots(a, b, np.array([0, 2])), np.add.reduceat(a * b, [0, 2], axis=0))
    view = np.arange(24, dtype=np.float64).reshape(6, 4)[:, ::2]
    np.testing.assert_array_equal(segment_sums(view, np.array([0, 4])), np.add.reduceat(view, [0, 4], axis=0))
    np.testing.assert_array_equal(segment_sums(a[:, 0], np.array([0, 4])), np.add.reduceat(a[:, 0], [0, 4]))

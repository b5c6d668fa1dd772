"""Both CPU task bodies (row kernel and matrix-product kernel) against the reference."""

import warnings

import numba
import numpy as np
import pytest

from nwattn import ops
from nwattn.exceptions import EmptyNeighborhoodWarning

from . import naive

TOL = {np.float64: 1e-10, np.float32: 1e-4}


@pytest.fixture(params=["rows", "gemm"])
def cpu_path(request, small_blocks, monkeypatch):
    """Force one task body; tiny blocks, tiles and splits either way."""
    big = 1 << 30
    monkeypatch.setattr(small_blocks, "GEMM_QUERY_BLOCK", 4)
    monkeypatch.setattr(small_blocks, "GEMM_MIN_FEATURES", 1 if request.param == "gemm" else big)
    monkeypatch.setattr(small_blocks, "GEMM_MIN_OUTPUTS", 1 if request.param == "gemm" else big)
    return request.param


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov", "dot", "scaled_dot"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_paths_match_reference(rng, cpu_path, kernel, dtype):
    n, d, p = 41, 5, 3
    X = rng.normal(size=(n, d))
    V = rng.normal(loc=2.0, size=(n, p))
    h = 1.8 if kernel == "epanechnikov" else 0.8 * rng.uniform(0.7, 1.3, size=d)
    w = rng.uniform(0.1, 2.0, size=n)
    w[::6] = 0.0
    args = (X.astype(dtype), X.astype(dtype), V.astype(dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        got, got_std = ops.attention_pool(*args, kernel=kernel, bandwidth=h, key_weight=w,
                                          exclude_self=True, return_std=True)
    want, want_std = naive.pool(X, X, V, kernel, h, key_weight=w, exclude_self=True,
                                return_std=True)
    assert got.dtype == dtype
    assert naive.relative_error(got, want) <= TOL[dtype]
    assert naive.relative_error(got_std, want_std) <= 10 * TOL[dtype]


@pytest.mark.parametrize("kernel", ["gaussian", "scaled_dot"])
def test_result_does_not_depend_on_thread_count(rng, cpu_path, kernel):
    Q = rng.normal(size=(30, 4))
    K = rng.normal(size=(50, 4))
    V = rng.normal(size=(50, 2))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = ops.attention_pool(Q, K, V, kernel=kernel)
        numba.set_num_threads(before)
        many = ops.attention_pool(Q, K, V, kernel=kernel)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, many)

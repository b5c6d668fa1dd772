"""Discrete features on the GPU pooling kernel, against the CPU path and the NumPy reference.

Run on the GPU when there is one, else on numba-cuda's simulator (see
tests/test_cuda.py); the inputs are tiny and the launch sizes lowered so that
they span several blocks, key tiles and key splits.
"""

import os
import sys

import numpy as np
import pytest

from nwattn._device import driver_problem

if "numba.cuda" not in sys.modules and driver_problem() is not None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

from nwattn import _config  # noqa: E402
from nwattn._device import cuda_problem  # noqa: E402
from nwattn.discrete import DiscreteFeatures  # noqa: E402
from nwattn.exceptions import EmptyNeighborhoodWarning  # noqa: E402
from nwattn.ops import attention_pool  # noqa: E402

from . import naive  # noqa: E402

_PROBLEM = cuda_problem()
needs_gpu = pytest.mark.skipif(_PROBLEM is not None, reason=f"GPU path unavailable: {_PROBLEM}")


@pytest.fixture
def small_launch(monkeypatch):
    for name, value in (("CUDA_THREADS_PER_BLOCK", 2), ("CUDA_QUERIES_PER_THREAD", 2),
                        ("CUDA_KEY_TILE", 3),
                        ("CUDA_TARGET_BLOCKS", 16), ("CUDA_MIN_SPLIT_KEYS", 5),
                        ("CUDA_VALUE_CHUNK", 2), ("CUDA_SIMPLE_THREADS", 8)):
        monkeypatch.setattr(_config, name, value)


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gpu_pool_with_discrete_features_equals_reference(dtype, rng, small_launch):
    n = 13
    X = np.column_stack([rng.uniform(size=n), np.arange(n) % 3, rng.uniform(size=n),
                         np.arange(n) % 4]).astype(dtype)
    y = rng.normal(size=n).astype(dtype)
    Q = X[:7]
    disc = DiscreteFeatures([1, 3], [3, 4], ordered=[False, True])
    bw = [0.4, 0.3, 0.6, 0.5]
    ref = naive.mixed_regression(Q, X, y, bw, [1, 3], ["aitchison_aitken", "li_racine_ordered"],
                                 [3, 4])
    got = attention_pool(Q, X, y, bandwidth=bw, discrete=disc, device="cuda")
    cpu = attention_pool(Q, X, y, bandwidth=bw, discrete=disc)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    assert np.allclose(got, ref, rtol=tol, atol=tol)
    assert np.allclose(got, cpu, rtol=tol, atol=tol)


@needs_gpu
def test_gpu_pool_lambda_zero_empty_category(rng, small_launch):
    X = np.column_stack([rng.uniform(size=9), np.arange(9) % 2]).astype(np.float64)
    y = rng.normal(size=9)
    disc = DiscreteFeatures([1], [3])  # category 2 has no key
    with pytest.warns(EmptyNeighborhoodWarning):
        got = attention_pool([[0.5, 2], [0.5, 1]], X, y, bandwidth=[0.5, 0.0], discrete=disc,
                             device="cuda")
    keys = X[:, 1] == 1
    w = np.exp(-0.5 * ((0.5 - X[keys, 0]) / 0.5) ** 2)
    assert np.isnan(got[0]) and np.isclose(got[1], w @ y[keys] / w.sum(), rtol=1e-12)


@needs_gpu
@pytest.mark.parametrize("dtype, degree", [(np.float64, 1), (np.float64, 2), (np.float32, 1)])
def test_gpu_local_polynomial_with_discrete_features_equals_cpu(dtype, degree, rng,
                                                                small_launch):
    """The GPU's moments kernel adds the discrete kernels' lookups to its scores, as the
    pooling kernel does; the basis is that of the continuous features only."""
    from nwattn.ops import local_polynomial

    n = 15
    X = np.column_stack([rng.uniform(size=n), np.arange(n) % 3, rng.uniform(size=n),
                         np.arange(n) % 4]).astype(dtype)
    y = np.column_stack([np.sin(3 * X[:, 0]) + X[:, 1], X[:, 2] - X[:, 3]]).astype(dtype)
    w = rng.uniform(0.5, 2.0, size=n).astype(dtype)
    disc = DiscreteFeatures([1, 3], [3, 4], ordered=[False, True])
    bw = [0.6, 0.3, 0.8, 0.5]
    got = local_polynomial(X[:9], X, y, "epanechnikov", bw, degree=degree, key_weight=w,
                           discrete=disc, device="cuda")
    cpu = local_polynomial(X[:9], X, y, "epanechnikov", bw, degree=degree, key_weight=w,
                           discrete=disc)
    tol = 1e-9 if dtype == np.float64 else 2e-3
    np.testing.assert_allclose(got, cpu, rtol=tol, atol=tol, equal_nan=True)
    loo = local_polynomial(X, X, y[:, 0], "gaussian", bw, degree=degree, exclude_self=True,
                           discrete=disc, device="cuda")
    ref = local_polynomial(X, X, y[:, 0], "gaussian", bw, degree=degree, exclude_self=True,
                           discrete=disc)
    np.testing.assert_allclose(loo, ref, rtol=tol, atol=tol, equal_nan=True)


@needs_gpu
def test_gpu_local_polynomial_lambda_zero_stratifies(rng, small_launch):
    from nwattn.ops import local_polynomial

    X = np.column_stack([rng.uniform(size=20), np.arange(20) % 2]).astype(np.float64)
    y = 2.0 * X[:, 0] + 3.0 * X[:, 1] + 0.1 * rng.normal(size=20)
    disc = DiscreteFeatures([1], [2])
    got = local_polynomial([[0.5, 0], [0.5, 1]], X, y, "gaussian", [0.3, 0.0], degree=1,
                           discrete=disc, device="cuda")
    for c in (0, 1):
        keys = X[:, 1] == c
        want = local_polynomial([[0.5]], X[keys, :1], y[keys], "gaussian", 0.3, degree=1)
        np.testing.assert_allclose(got[c], want[0], rtol=1e-10)


@needs_gpu
@pytest.mark.parametrize("degree", [0, 1])
def test_inputs_on_the_gpu_with_discrete_features(rng, small_launch, degree):
    """Queries and keys already on the GPU: their discrete columns come to the host to be
    checked and tabled, the continuous ones are gathered there; results as from the host."""
    from numba import cuda

    from nwattn.ops import attention_pool_state, finalize_state, local_polynomial

    n = 14
    X = np.column_stack([rng.uniform(size=n), np.arange(n) % 3, rng.uniform(size=n),
                         np.arange(n) % 4]).astype(np.float64)
    y = np.sin(3 * X[:, 0]) + X[:, 1] - 0.5 * X[:, 3] + 0.1 * rng.normal(size=n)
    disc = DiscreteFeatures([1, 3], [3, 4], ordered=[False, True])
    bw = [0.5, 0.3, 0.7, 0.4]
    Xd, yd = cuda.to_device(X), cuda.to_device(y)
    if degree == 0:
        got = finalize_state(attention_pool_state(Xd, Xd, yd, "gaussian", bw, discrete=disc,
                                                  exclude_self=True, device="cuda"))
        want = attention_pool(X, X, y, "gaussian", bw, discrete=disc, exclude_self=True)
    else:
        got = local_polynomial(Xd[:6], Xd, yd, "epanechnikov", bw, degree=1, discrete=disc,
                               device="cuda")
        want = local_polynomial(X[:6], X, y, "epanechnikov", bw, degree=1, discrete=disc)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, equal_nan=True)


@needs_gpu
def test_bad_codes_on_the_gpu_name_the_feature(rng, small_launch):
    from numba import cuda

    X = np.column_stack([rng.uniform(size=8), np.arange(8) % 3]).astype(np.float64)
    y = rng.normal(size=8)
    disc = DiscreteFeatures([1], [3])
    bad = X.copy()
    bad[2, 1] = 0.5
    with pytest.raises(ValueError, match="categorical feature 1 of Q has the non-integer"):
        attention_pool(cuda.to_device(bad), cuda.to_device(X), cuda.to_device(y),
                       bandwidth=[0.5, 0.2], discrete=disc, device="cuda")
    bad[2, 1] = 3.0
    with pytest.raises(ValueError, match="categorical feature 1 of K has the code 3"):
        attention_pool(cuda.to_device(X), cuda.to_device(bad), cuda.to_device(y),
                       bandwidth=[0.5, 0.2], discrete=disc, device="cuda")
    only = DiscreteFeatures([0, 1], [8, 3])
    codes = np.column_stack([np.arange(8), np.arange(8) % 3]).astype(np.float64)
    with pytest.raises(ValueError, match="at least one continuous feature"):
        attention_pool(cuda.to_device(codes), cuda.to_device(codes), cuda.to_device(y),
                       bandwidth=[0.2, 0.2], discrete=only, device="cuda")

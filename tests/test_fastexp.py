"""Accuracy of the vectorisable exp over the whole range of each dtype."""

import numpy as np
import pytest
from numba import njit

from nwattn._cpu.fastexp import exp_shifted, log_pos, max_no_nan, weights_dot

# Largest error allowed, in units in the last place of the correctly rounded
# result (or of the smallest subnormal, for results in the subnormal range).
# float64: 3 (the Horner steps' rounding; about 3 inputs in a million reach it,
# none beyond over 4 x 10^7 random inputs); float32: 2.
MAX_ULP = {np.float64: 3.0, np.float32: 2.0}


@njit(cache=True)
def _apply(x, shift):
    row = x.copy()
    total = exp_shifted(row, shift, row.shape[0])
    return row, total


def _inputs(dtype, rng):
    """Every regime: -inf, underflow to 0, subnormal results, normal results,
    subnormal and signed-zero inputs, and the edges of each range."""
    info = np.finfo(dtype)
    tiny_sub = float(info.smallest_subnormal)
    if dtype == np.float64:
        lo_normal, lo_zero = np.log(info.tiny), -745.2
    else:
        lo_normal, lo_zero = float(np.log(np.float64(info.tiny))), -104.0
    parts = [
        [-np.inf, -1e300 if dtype == np.float64 else -1e30, lo_zero - 50, lo_zero - 1e-3],
        rng.uniform(lo_zero - 1, lo_normal, size=2000),         # subnormal results
        rng.uniform(lo_normal, 0.0, size=20000),                # normal results
        -np.logspace(-40 if dtype == np.float32 else -300, 1, 2000),  # near zero
        [0.0, -0.0, tiny_sub, -tiny_sub, float(info.tiny), -float(info.tiny)],
        rng.uniform(0.0, 20.0, size=500),                       # above the shift
        np.arange(-40, 1) * np.log(2.0),                        # range-reduction edges
        np.arange(-40, 1) * np.log(2.0) + 0.5 * np.log(2.0),
    ]
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]).astype(dtype)


def _ulp_error(got, x, dtype):
    want64 = np.exp(x.astype(np.float64))
    want = want64.astype(dtype)
    spacing = np.spacing(np.abs(want)).astype(np.float64)
    spacing = np.maximum(spacing, float(np.finfo(dtype).smallest_subnormal))
    return np.abs(got.astype(np.float64) - want64) / spacing


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_accuracy_whole_range(rng, dtype):
    x = _inputs(dtype, rng)
    with np.errstate(under="ignore", over="ignore"):
        got, total = _apply(x, 0.0)
        err = _ulp_error(got, x, dtype)
    assert got.dtype == dtype
    assert np.all(np.isfinite(got))
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULP[dtype], f"exp({x[worst]!r}) = {got[worst]!r}: {err[worst]:.2f} ulp"
    assert got[x == -np.inf].tolist() == [0.0]
    assert np.all(got[x < (-745.2 if dtype == np.float64 else -104.0)] == 0.0)
    np.testing.assert_allclose(total, got.astype(np.float64).sum(), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_shift_and_prefix(rng, dtype):
    x = rng.uniform(-30.0, 5.0, size=101).astype(dtype)
    x[7] = -np.inf
    n = 60
    row = x.copy()
    shifted = exp_shifted_prefix(row, 5.0, n)
    # the shift is subtracted in the dtype, as the kernels do
    want = np.exp((x[:n] - dtype(5.0)).astype(np.float64))
    np.testing.assert_allclose(row[:n], want, rtol=4 * np.finfo(dtype).eps)
    np.testing.assert_array_equal(row[n:], x[n:])  # only the prefix is touched
    np.testing.assert_allclose(shifted, want.sum(), rtol=1e-5)


@njit(cache=True)
def exp_shifted_prefix(row, shift, n):
    return exp_shifted(row, shift, n)


@njit(cache=True)
def _weights(x, shift, n, v):
    row = x.copy()
    total, dot = weights_dot(row, shift, n, v)
    return row, total, dot


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weights_whole_range(rng, dtype):
    """Softmax weights: exp where the result is normal, 0 where it would be
    subnormal, and the normaliser and weighted sum of the same pass."""
    x = _inputs(dtype, rng)
    x = x[x <= 0]
    v = rng.normal(size=x.shape[0]).astype(dtype)
    n = x.shape[0] - 3
    with np.errstate(under="ignore", over="ignore"):
        got, total, dot = _weights(x, 0.0, n, v)
        err = _ulp_error(got[:n], x[:n], dtype)
    tiny = float(np.finfo(dtype).tiny)
    # a hair above the smallest normal the weight may already be flushed
    normal = np.exp(x[:n].astype(np.float64)) >= tiny * (1 + 1e-4)
    assert got.dtype == dtype
    assert np.max(err[normal], initial=0.0) <= MAX_ULP[dtype]
    # near or below the smallest normal a weight is flushed to 0 or kept
    assert np.all(got[:n][~normal] <= tiny * (1 + 1e-4))
    np.testing.assert_array_equal(got[n:], x[n:])  # only the prefix is touched
    want = np.where(normal, np.exp(x[:n].astype(np.float64)), 0.0)
    np.testing.assert_allclose(total, want.sum(), rtol=1e-5)
    np.testing.assert_allclose(dot, want @ v[:n].astype(np.float64), rtol=1e-4,
                               atol=1e-5 * np.abs(v).max())


@njit(cache=True)
def _running_max(x):
    t = x[0]
    for j in range(1, x.shape[0]):
        t = max_no_nan(t, x[j])
    return t


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_running_max(rng, dtype):
    """The vectorisable maximum agrees with NumPy, -inf included."""
    for size in (1, 7, 64, 515):
        x = rng.normal(size=size).astype(dtype)
        x[rng.random(size) < 0.3] = -np.inf
        assert _running_max(x) == x.max()
    assert _running_max(np.full(9, -np.inf, dtype)) == -np.inf
    assert _running_max(np.array([-np.inf, 3.0, np.inf], dtype)) == np.inf


@njit(cache=True)
def _logs(x):
    out = np.empty_like(x)
    for j in range(x.shape[0]):
        out[j] = log_pos(x[j])
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_whole_range(rng, dtype):
    """The vectorisable log: within 2 ulp of the result, and within 2 ulp
    of 1 in absolute terms where the result is near 0 (the weights of the
    compact kernels are log(1 - t))."""
    info = np.finfo(dtype)
    lo = -15 if dtype == np.float64 else -7
    x = np.concatenate([
        rng.uniform(0.0, 1.0, 20000),
        1.0 - np.logspace(lo, -0.01, 2000),
        np.logspace(np.log10(float(info.tiny)), np.log10(float(info.max)) - 1, 2000),
        [1.0, 0.5, 2.0, np.sqrt(2.0), np.sqrt(0.5), float(info.tiny)],
    ]).astype(dtype)
    x = x[x > 0]
    got = _logs(x).astype(np.float64)
    want = np.log(x.astype(np.float64))
    assert _logs(x).dtype == dtype
    spacing = np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
    err = np.abs(got - want) / np.maximum(spacing, float(info.eps))
    assert err.max() <= 2.0

"""Answers that do not depend on the scale of the values or the position of the data.

Multiplying the values by a factor multiplies the predictions and standard
deviations by it (exactly for a power of two, up to rounding otherwise), even
where the squares of the values leave the floating-point range. Moving
queries and keys together leaves a smoothing kernel's answers unchanged, even
where the inputs divided by the bandwidth would overflow.
"""

import warnings

import numpy as np
import pytest

from nwattn import ops
from nwattn.estimators import NadarayaWatsonRegressor

KERNELS = ["gaussian", "epanechnikov", "laplacian", "tricube"]


def _close(got, want):
    """Largest error relative to the largest magnitude of ``want``."""
    got, want = np.asarray(got), np.asarray(want)
    assert np.isfinite(got).all()
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


@pytest.fixture
def data(rng):
    X = rng.normal(size=(150, 2))
    Y = rng.normal(size=(150, 2)) + [0.0, 3.0]
    return X, Y


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("factor", [1e200, 1e-200, 1e300, 1e-300])
def test_std_at_any_scale_of_the_values(data, kernel, factor):
    X, Y = data
    pred, std = ops.attention_pool(X, X, Y, kernel, 1.2, return_std=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got_pred, got_std = ops.attention_pool(X, X, Y * factor, kernel, 1.2, return_std=True)
    assert _close(got_pred, pred * factor) <= 1e-12
    assert _close(got_std, std * factor) <= 1e-12


@pytest.mark.parametrize("exponent", [600, -600, 900, -900])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_power_of_two_scales_every_bit(data, exponent, dtype):
    X, Y = (a.astype(dtype) for a in data)
    if dtype == np.float32:
        exponent //= 10  # within float32's range
    factor = np.ldexp(dtype(1), exponent)
    for args in [dict(), dict(exclude_self=True)]:
        pred, std = ops.attention_pool(X, X, Y[:, 0], "gaussian", 0.8, return_std=True, **args)
        got = ops.attention_pool(X, X, Y[:, 0] * factor, "gaussian", 0.8, return_std=True,
                                 **args)
        assert got[0].dtype == dtype
        assert np.array_equal(got[0], pred * factor)
        assert np.array_equal(got[1], std * factor)


def test_scaled_states_merge_across_key_shards(data):
    """The states of huge values are ordinary states: shards merge exactly."""
    X, Y = data
    V = Y * 1e250
    whole = ops.finalize_state(ops.attention_pool_state(X, X, V, return_std=True),
                               return_std=True)
    parts = [ops.attention_pool_state(X, X[s], V[s], return_std=True)
             for s in (slice(0, 60), slice(60, None))]
    merged = ops.finalize_state(ops.merge_states(*parts), return_std=True)
    for a, b in zip(merged, whole):
        assert _close(a, b) <= 1e-12
    unit = ops.attention_pool(X, X, Y, return_std=True)
    for a, b in zip(whole, unit):
        assert _close(a, b * 1e250) <= 1e-12


def test_state_of_values_at_unit_scale_keeps_the_running_maximum(data):
    """Only values whose squares would leave the range change the reference."""
    X, Y = data
    state = ops.attention_pool_state(X[:5], X, Y, return_std=True)
    assert np.array_equal(state.max, np.zeros(5))  # each query is a key: log K(0) = 0


@pytest.mark.parametrize("factor", [1e200, 1e-200])
def test_nadaraya_watson_std_at_any_scale_of_the_targets(data, factor):
    X, Y = data
    model = NadarayaWatsonRegressor(bandwidth=0.7).fit(X, Y[:, 1])
    pred, std = model.predict(X[:20], return_std=True)
    scaled = NadarayaWatsonRegressor(bandwidth=0.7).fit(X, Y[:, 1] * factor)
    got_pred, got_std = scaled.predict(X[:20], return_std=True)
    assert _close(got_pred, pred * factor) <= 1e-12
    assert _close(got_std, std * factor) <= 1e-12


def _near(x, count):
    """``count`` consecutive floating-point numbers from ``x`` on."""
    out = [x]
    for _ in range(count - 1):
        out.append(np.nextafter(out[-1], np.inf))
    return np.array(out)


@pytest.mark.parametrize("kernel", ["epanechnikov", "boxcar", "tricube"])
def test_compact_kernel_far_from_the_origin(kernel):
    """|x| = 1e300 and h = 1e-10: x / h overflows, yet every query equal to a
    key is in its own neighbourhood (and in no other: the next float is
    1e284 away), as it is for the same points moved to the origin."""
    X = _near(1e300, 6)[:, None]
    y = np.arange(6.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no EmptyNeighborhoodWarning
        far = ops.attention_pool(X, X, y, kernel, 1e-10)
        near = ops.attention_pool(X - 1e300, X - 1e300, y, kernel, 1e-10)
    assert np.array_equal(far, y)
    assert np.array_equal(far, near)


@pytest.mark.parametrize("kernel", KERNELS + ["boxcar"])
def test_translation_changes_nothing(rng, kernel):
    """Points on a grid of 2**-10 moved by 2**40 are moved exactly, and every
    answer of a smoothing kernel is the same to the bit."""
    X = np.round(rng.uniform(0, 4, size=(60, 3)) * 1024) / 1024
    y = rng.normal(size=60)
    shift = np.array([2.0**40, -(2.0**35), 3.0 * 2.0**20])
    for a, b in [(X, X + shift), (X + shift, X + 2 * shift)]:
        assert np.array_equal(ops.attention_pool(a, a, y, kernel, 0.7, return_std=True),
                              ops.attention_pool(b, b, y, kernel, 0.7, return_std=True))
        assert np.array_equal(ops.pairwise_scores(a[:9], a, kernel, [0.5, 0.7, 0.9]),
                              ops.pairwise_scores(b[:9], b, kernel, [0.5, 0.7, 0.9]))
    slopes = [ops.finalize_slopes(ops.loo_slopes_state(a, a, y, kernel, 0.9))
              for a in (X, X + shift)]
    for u, v in zip(*slopes):
        assert np.array_equal(u, v, equal_nan=True)


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
def test_inputs_too_spread_for_the_bandwidth_are_refused(kernel):
    """Where even the centred inputs divided by the bandwidth overflow, the
    answer would be NaN: the call says why instead, naming the bandwidth."""
    Z = np.array([[-1e300], [1e300]])
    with pytest.raises(ValueError, match="bandwidth is too small"):
        ops.attention_pool(Z, Z, [1.0, 2.0], kernel, 1e-10)


@pytest.mark.parametrize("factor", [1e200, 1e-200])
def test_dask_moments_at_any_scale_of_the_weights(data, factor):
    """The effective sample size of the Dask fit's rules of thumb depends on the
    weights' ratios only (their squares overflowed from 1e154 on)."""
    da = pytest.importorskip("dask.array", reason="the dask extra is not installed")
    from nwattn.dask._inputs import training_set
    from nwattn.dask.loo import moments

    X, Y = data
    w = np.linspace(1.0, 2.0, X.shape[0])
    chunks = max(1, X.shape[0] // 3)

    def reduced(weights):
        Xd, _, Y2, W = training_set(da.from_array(X, chunks=chunks),
                                    da.from_array(Y, chunks=chunks),
                                    da.from_array(weights, chunks=chunks))
        return moments(Xd, Y2, W)

    ref, got = reduced(w), reduced(w * factor)
    assert got["n_eff"] == pytest.approx(ref["n_eff"], rel=1e-12)
    np.testing.assert_allclose(got["x_mean"], ref["x_mean"], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("squares", [False, True])
def test_value_items_are_prepared_as_each_alone(rng, dtype, squares):
    """A stack of value arrays at very different scales is centred and scaled item by item
    exactly as each array alone (attention arrays pack their items this way)."""
    big = 1e30 if dtype == np.float32 else 1e200
    scales = np.array([1.0, big, 1.0 / big, 3.0])
    V3 = (rng.normal(size=(4, 50, 3)) * scales[:, None, None]).astype(dtype)
    for center in (None, [0.5, -1.0, 2.0]):
        c, D, e = ops._prepare_value_items(V3, center, dtype, squares)
        assert D.dtype == dtype and D.flags.c_contiguous
        for i in range(4):
            # The procedure on one array, written out with NumPy's own reductions.
            V = V3[i]
            big = max(0, ops._value_exponent(float(np.abs(V).max()), dtype, False))
            Vs = np.ldexp(V, -big)
            if center is None:
                ci = Vs.mean(axis=0, dtype=np.float64).astype(dtype)
            else:
                ci = np.ldexp(np.asarray(center, dtype=dtype), -big)
            Di = (Vs - ci).astype(dtype)
            ei = ops._value_exponent(float(np.abs(Di).max()), dtype, squares)
            np.testing.assert_array_equal(c[i], np.ldexp(ci, big))
            np.testing.assert_array_equal(D[i], np.ldexp(Di, -ei))
            assert e[i] == big + ei
            # and the one-array function is that item alone
            c1, D1, e1 = ops._prepare_values(V, center, dtype, squares, transposed=False)
            np.testing.assert_array_equal(D1, D[i])
            assert e1 == e[i]
        # The huge item is brought to a scale where its squares cannot overflow.
        assert e[1] > 0 and np.all(np.isfinite(D[1].astype(np.float64) ** 2))

"""nwattn.ops against the float64 NumPy reference, on fresh random inputs."""

import warnings

import numpy as np
import pytest

from nwattn import ops
from nwattn.exceptions import EmptyNeighborhoodWarning

from . import naive

TOL = {np.float64: 1e-10, np.float32: 1e-4}


def make_data(rng, n=37, m=53, d=3, p=2, dtype=np.float64, values_1d=False):
    Q = rng.normal(size=(n, d)).astype(dtype)
    K = rng.normal(size=(m, d)).astype(dtype)
    V = rng.normal(loc=3.0, size=(m,) if values_1d else (m, p)).astype(dtype)
    return Q, K, V


def bandwidth_for(kernel, d, per_feature, rng):
    # Compact kernels need a bandwidth wide enough that most queries see keys.
    base = 1.8 if kernel in naive.COMPACT_KERNELS else 0.7
    if per_feature:
        return base * rng.uniform(0.6, 1.4, size=d)
    return base


@pytest.mark.parametrize("kernel", naive.ALL_KERNELS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("per_feature", [False, True])
@pytest.mark.parametrize("values_1d", [False, True])
def test_pool_matches_reference(rng, small_blocks, kernel, dtype, per_feature, values_1d):
    Q, K, V = make_data(rng, dtype=dtype, values_1d=values_1d)
    h = bandwidth_for(kernel, Q.shape[1], per_feature, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        got = ops.attention_pool(Q, K, V, kernel=kernel, bandwidth=h)
    want = naive.pool(Q, K, V, kernel, h)
    assert got.dtype == dtype
    assert got.shape == want.shape
    assert naive.relative_error(got, want) <= TOL[dtype]


@pytest.mark.parametrize("kernel", naive.ALL_KERNELS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pool_default_blocks_with_std_weights_and_loo(rng, kernel, dtype):
    Q, K, V = make_data(rng, n=60, m=60, dtype=dtype)
    K = Q.copy()
    h = bandwidth_for(kernel, Q.shape[1], True, rng)
    w = rng.uniform(0.1, 2.0, size=K.shape[0])
    w[::7] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        got, got_std = ops.attention_pool(Q, K, V, kernel=kernel, bandwidth=h, key_weight=w,
                                          exclude_self=True, return_std=True)
    want, want_std = naive.pool(Q, K, V, kernel, h, key_weight=w, exclude_self=True,
                                return_std=True)
    assert naive.relative_error(got, want) <= TOL[dtype]
    # The std is a difference of moments; judge it on the scale of the values.
    assert naive.relative_error(got_std, want_std) <= 10 * TOL[dtype] * np.abs(V).max()


@pytest.mark.parametrize("kernel", naive.ALL_KERNELS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pairwise_scores(rng, kernel, dtype):
    Q, K, _ = make_data(rng, n=11, m=700, d=4, dtype=dtype)
    h = bandwidth_for(kernel, 4, True, rng)
    got = ops.pairwise_scores(Q, K, kernel=kernel, bandwidth=h)
    want = naive.scores(Q, K, kernel, h)
    assert got.dtype == dtype
    assert np.array_equal(np.isneginf(got), np.isneginf(want))
    if kernel in naive.DISTANCE_KERNELS:
        # Compare kernel values K(u) = exp(score) in [0, 1]: near a support's
        # edge log K is ill-conditioned and float32 rounding of u is amplified.
        assert np.max(np.abs(np.exp(got.astype(float)) - np.exp(want))) <= TOL[dtype]
    else:
        scale = max(1.0, np.abs(want).max())
        assert np.max(np.abs(got - want)) / scale <= TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_matches_reference(rng, dtype):
    S = (rng.normal(size=(9, 31)) * 30).astype(dtype)
    S[2] = -np.inf
    S[4, ::2] = -np.inf
    got = ops.softmax(S)
    assert got.dtype == dtype
    assert naive.relative_error(got, naive.softmax(S)) <= TOL[dtype]


def test_softmax_axis_and_empty_rows_without_warnings(rng):
    S = rng.normal(size=(4, 5, 6))
    S[1, :, 2] = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ops.softmax(S, axis=1)
    np.testing.assert_allclose(np.nansum(out, axis=1)[0], 1.0)
    assert np.isnan(out[1, :, 2]).all()
    ref = naive.softmax(np.moveaxis(S, 1, -1).reshape(-1, 5))
    np.testing.assert_allclose(np.moveaxis(out, 1, -1).reshape(-1, 5), ref, rtol=1e-12)


def test_softmax_extreme_scores():
    out = ops.softmax(np.array([[1e300, -1e300, 1e300], [-1e308, -1e308, -np.inf]]))
    np.testing.assert_allclose(out, [[0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])


def test_layouts_and_byte_order(rng):
    Q, K, V = make_data(rng, n=20, m=30, d=4)
    want = naive.pool(Q, K, V, "gaussian", 0.8)
    QF = np.asfortranarray(Q)
    Kbig = K.astype(">f8")
    Vstrided = np.repeat(V, 2, axis=0)[::2]
    got = ops.attention_pool(QF, Kbig, Vstrided, bandwidth=0.8)
    assert naive.relative_error(got, want) <= 1e-12
    got32 = ops.attention_pool(Q.astype(">f4"), K.astype(np.float32), V.astype(np.float32),
                               bandwidth=0.8)
    assert got32.dtype == np.float32
    assert naive.relative_error(got32, want) <= 1e-4


def test_mixed_and_integer_dtypes_compute_in_float64(rng):
    Q, K, V = make_data(rng, n=5, m=7)
    assert ops.attention_pool(Q.astype(np.float32), K, V).dtype == np.float64
    Xi = np.arange(12).reshape(6, 2)
    out = ops.attention_pool(Xi, Xi, np.arange(6), bandwidth=2)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, naive.pool(Xi, Xi, np.arange(6.0), "gaussian", 2.0))


def test_empty_neighbourhood_is_nan_with_a_count(rng):
    K = rng.uniform(size=(20, 2))
    Q = np.vstack([K[:3], K[:2] + 100.0])
    with pytest.warns(EmptyNeighborhoodWarning, match="2 of 5 queries"):
        out = ops.attention_pool(Q, K, rng.normal(size=20), kernel="epanechnikov",
                                 bandwidth=0.5)
    assert np.isnan(out[3:]).all() and np.isfinite(out[:3]).all()
    state = ops.attention_pool_state(Q, K, rng.normal(size=20), kernel="boxcar",
                                     bandwidth=0.5)
    assert state.n_empty == 2
    assert state.empty.tolist() == [False, False, False, True, True]


def test_state_merge_equals_whole_with_splits_and_loo(rng, small_blocks):
    X = rng.normal(size=(40, 3))
    y = rng.normal(size=(40, 2))
    whole, whole_std = ops.attention_pool(X, X, y, kernel="tricube", bandwidth=4.0,
                                          exclude_self=True, return_std=True)
    cuts = [0, 7, 8, 25, 40]
    states = [ops.attention_pool_state(X, X[a:b], y[a:b], kernel="tricube", bandwidth=4.0,
                                       exclude_self=True, key_offset=a, return_std=True)
              for a, b in zip(cuts[:-1], cuts[1:])]
    merged = states[0]
    for st in states[1:]:
        merged = ops.merge_states(merged, st)
    pred, std = ops.finalize_state(merged, return_std=True)
    np.testing.assert_allclose(pred, whole, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(std, whole_std, rtol=1e-10, atol=1e-10)
    # Queries sharded too: offsets on both sides.
    part = ops.attention_pool_state(X[10:20], X[5:30], y[5:30], kernel="tricube",
                                    bandwidth=4.0, exclude_self=True, query_offset=10,
                                    key_offset=5)
    ref = naive.pool(X[10:20], X[5:30], y[5:30], "tricube", 4.0)
    W = naive.weights(X, X, "tricube", 4.0, exclude_self=True)[10:20, 5:30]
    ref = (W / W.sum(1, keepdims=True)) @ y[5:30]
    np.testing.assert_allclose(ops.finalize_state(part), ref, rtol=1e-12)


def test_merge_leaves_inputs_untouched_and_checks_shapes(rng):
    Q, K, V = make_data(rng, n=4, m=6)
    a = ops.attention_pool_state(Q, K[:3], V[:3])
    b = ops.attention_pool_state(Q, K[3:], V[3:])
    a_before = a.copy()
    ops.merge_states(a, b)
    np.testing.assert_array_equal(a.acc, a_before.acc)
    c = ops.attention_pool_state(Q[:2], K, V)
    with pytest.raises(ValueError, match="different queries"):
        ops.merge_states(a, c)
    with pytest.raises(TypeError, match="PoolState"):
        ops.merge_states(a, (1, 2))
    s = ops.attention_pool_state(Q, K, V, return_std=True)
    with pytest.raises(ValueError, match="variance"):
        ops.merge_states(a, s)
    with pytest.raises(ValueError, match="return_std"):
        ops.finalize_state(a, return_std=True)


def test_large_pool_uses_key_splits_and_matches(rng):
    # Few queries, many keys: the CPU path splits the keys (default config).
    Q = rng.normal(size=(3, 2))
    K = rng.normal(size=(20_000, 2))
    V = rng.normal(size=20_000)
    got = ops.attention_pool(Q, K, V, bandwidth=0.3)
    assert naive.relative_error(got, naive.pool(Q, K, V, "gaussian", 0.3)) <= 1e-10


def test_result_does_not_depend_on_thread_count(rng):
    import numba

    Q, K, V = make_data(rng, n=200, m=3000)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = ops.attention_pool(Q, K, V)
        numba.set_num_threads(before)
        many = ops.attention_pool(Q, K, V)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, many)


def test_device_argument():
    X = np.zeros((2, 1))
    with pytest.raises(ValueError, match="device"):
        ops.attention_pool(X, X, [1.0, 2.0], device="tpu")
    np.testing.assert_allclose(ops.attention_pool(X, X, [1.0, 2.0], device="AUTO"), [1.5, 1.5])


@pytest.mark.parametrize("kernel", ["gaussian", "tricube", "scaled_dot"])
def test_top_k_weights_match_dense_reference(rng, kernel):
    Q, K, _ = make_data(rng, n=15, m=40)
    w = rng.uniform(0.5, 1.5, size=40)
    h = 1.5 if kernel == "tricube" else 0.8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        idx, wts = ops.top_k_weights(Q, K, kernel, h, k=6, key_weight=w)
    W = naive.weights(Q, K, kernel, h, key_weight=w)
    for i in range(Q.shape[0]):
        if np.isnan(W[i]).all():
            assert np.isnan(wts[i]).all()
            continue
        order = np.argsort(-W[i], kind="stable")[:6]
        expect = W[i, order]
        keep = expect > 0
        np.testing.assert_allclose(wts[i][keep], expect[keep], rtol=1e-10)
        np.testing.assert_array_equal(idx[i][keep], order[keep])
        assert (idx[i][~keep] == -1).all() and (wts[i][~keep] == 0).all()


@pytest.mark.parametrize("kernel", ["boxcar", "gaussian"])
def test_top_k_weights_order_equal_weights_by_index(rng, kernel):
    # Keys on a coarse grid: many keys at the same distance from a query, so
    # equal weights tie inside the k slots and across the last of them.
    K = rng.integers(0, 3, size=(60, 2)).astype(float)
    Q = rng.integers(0, 3, size=(9, 2)).astype(float)
    k = 7
    idx, wts = ops.top_k_weights(Q, K, kernel, 1.2, k=k)
    W = naive.weights(Q, K, kernel, 1.2)
    for i in range(Q.shape[0]):
        want = -np.sort(-W[i])[:k]  # the k largest weights
        keep = want > 0
        np.testing.assert_allclose(wts[i][keep], want[keep], rtol=1e-12)
        got = idx[i][keep]
        assert len(set(got.tolist())) == got.size
        # each key listed has the weight reported, and equal weights come in index order
        np.testing.assert_allclose(W[i, got], wts[i][keep], rtol=1e-12)
        equal = np.isclose(wts[i][keep][1:], wts[i][keep][:-1], rtol=1e-12, atol=0)
        assert (np.diff(got)[equal] > 0).all()
        # keys strictly above the k-th weight are all there
        above = np.flatnonzero(W[i] > want[-1] * (1 + 1e-12))
        assert set(above.tolist()) <= set(got.tolist())
        assert (idx[i][~keep] == -1).all()


def test_top_k_weights_leave_one_out_and_errors(rng):
    X = rng.normal(size=(10, 2))
    idx, _ = ops.top_k_weights(X, X, k=3, exclude_self=True)
    assert not (idx == np.arange(10)[:, None]).any()
    with pytest.raises(ValueError, match="k must"):
        ops.top_k_weights(X, X, k=0)
    idx, wts = ops.top_k_weights(X[:2], X[:3], k=10)
    assert idx.shape == (2, 10) and (idx[:, 3:] == -1).all()


def test_threads_context_restores_on_error():
    import numba

    from nwattn._parallel import effective_n_jobs, threads

    before = numba.get_num_threads()
    with pytest.raises(RuntimeError):
        with threads(1):
            assert numba.get_num_threads() == 1
            raise RuntimeError("boom")
    assert numba.get_num_threads() == before
    assert effective_n_jobs(-1) == numba.config.NUMBA_NUM_THREADS
    with pytest.raises(ValueError, match="n_jobs"):
        effective_n_jobs(0)
    with pytest.raises(TypeError, match="n_jobs"):
        effective_n_jobs(1.5)

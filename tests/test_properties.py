"""Properties of attention pooling, checked with hypothesis."""

import warnings

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nwattn import ops
from nwattn.exceptions import EmptyNeighborhoodWarning

from . import naive

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def problems(draw, kernels=naive.DISTANCE_KERNELS, max_n=12, max_m=15):
    n = draw(st.integers(1, max_n))
    m = draw(st.integers(1, max_m))
    d = draw(st.integers(1, 4))
    p = draw(st.integers(1, 3))
    Q = draw(arrays(np.float64, (n, d), elements=finite))
    K = draw(arrays(np.float64, (m, d), elements=finite))
    V = draw(arrays(np.float64, (m, p), elements=finite))
    kernel = draw(st.sampled_from(kernels))
    h = draw(st.floats(0.05, 20.0))
    return Q, K, V, kernel, h


def quiet_pool(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        return ops.attention_pool(*args, **kwargs)


@given(problems(kernels=naive.ALL_KERNELS))
def test_weights_are_a_distribution(problem):
    Q, K, _, kernel, h = problem
    W = ops.softmax(ops.pairwise_scores(Q, K, kernel, h))
    rows = ~np.isnan(W).any(axis=1)
    assert (W[rows] >= 0).all()
    np.testing.assert_allclose(W[rows].sum(axis=1), 1.0, rtol=1e-12)
    # A row is NaN exactly when the query has no key in its support.
    assert np.array_equal(~rows, np.isneginf(naive.scores(Q, K, kernel, h)).all(axis=1))


@given(problems(kernels=naive.ALL_KERNELS))
def test_outputs_within_value_range(problem):
    Q, K, V, kernel, h = problem
    out = quiet_pool(Q, K, V, kernel, h)
    ok = ~np.isnan(out).any(axis=1)
    lo, hi = V.min(axis=0), V.max(axis=0)
    slack = 1e-12 * np.maximum(1.0, np.abs(V).max(axis=0))
    assert (out[ok] >= lo - slack).all() and (out[ok] <= hi + slack).all()


@given(problems(kernels=naive.ALL_KERNELS), st.randoms(use_true_random=False))
def test_key_order_is_irrelevant(problem, rnd):
    Q, K, V, kernel, h = problem
    perm = list(range(K.shape[0]))
    rnd.shuffle(perm)
    a = quiet_pool(Q, K, V, kernel, h)
    b = quiet_pool(Q, K[perm], V[perm], kernel, h)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * max(1.0, np.abs(V).max()))


@given(problems(), arrays(np.float64, 4, elements=finite))
def test_translation_invariance(problem, shift):
    Q, K, V, kernel, h = problem
    shift = shift[: Q.shape[1]]
    a = quiet_pool(Q, K, V, kernel, h)
    b = quiet_pool(Q + shift, K + shift, V, kernel, h)
    # Compact kernels may flip pairs lying on the support boundary to rounding.
    assume(np.array_equal(np.isnan(a), np.isnan(b)))
    if kernel in naive.COMPACT_KERNELS:
        u = np.sqrt(-2 * naive.scores(Q, K, "gaussian", h))
        assume(np.min(np.abs(u - 1.0)) > 1e-9)
    np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-8 * max(1.0, np.abs(V).max()))


@given(problems(), st.sampled_from([1e150, 1e-150]))
def test_scale_invariance_at_extreme_scales(problem, factor):
    Q, K, V, kernel, h = problem
    a = quiet_pool(Q, K, V, kernel, h)
    b = quiet_pool(Q * factor, K * factor, V, kernel, h * factor)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.isfinite(b[~np.isnan(b)]).all()
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * max(1.0, np.abs(V).max()))


@given(problems(kernels=("gaussian",)))
def test_far_query_gets_nearest_key_value(problem):
    _, K, V, _, h = problem
    assume(K.shape[0] > 1)
    direction = np.ones(K.shape[1]) / np.sqrt(K.shape[1])
    q = K.mean(axis=0) + 1e6 * h * direction
    dist = np.linalg.norm(K - q, axis=1)
    order = np.argsort(dist)
    # Keys at nearly the same distance share the weight; require a winner
    # whose runner-up weighs less than exp(-50) relative to it.
    assume((dist[order[1]] ** 2 - dist[order[0]] ** 2) / (2 * h * h) > 50)
    out = ops.attention_pool(q[None, :], K, V, "gaussian", h)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0], V[order[0]], rtol=1e-9, atol=1e-9)


@given(problems(kernels=("gaussian",)))
def test_scaled_dot_is_gaussian_with_key_weights(problem):
    # Seed 000: exp(q.k/sqrt d) = exp(-||q-k||^2/(2 sqrt d)) exp((|q|^2+|k|^2)/(2 sqrt d)).
    Q, K, V, _, _ = problem
    d = Q.shape[1]
    root = np.sqrt(d)
    Qs, Ks = Q / 4, K / 4  # keep exp(|k|^2 / (2 sqrt d)) within float64
    w = np.exp(np.einsum("ij,ij->i", Ks, Ks) / (2 * root))
    a = ops.attention_pool(Qs, Ks, V, "scaled_dot")
    b = ops.attention_pool(Qs, Ks, V, "gaussian", bandwidth=np.sqrt(root), key_weight=w)
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(V).max()))


@given(problems(kernels=naive.ALL_KERNELS, max_m=20), st.data())
def test_shard_merge_equals_whole(problem, data):
    Q, K, V, kernel, h = problem
    m = K.shape[0]
    cuts = sorted(set(data.draw(st.lists(st.integers(0, m), max_size=4)) + [0, m]))
    states = [ops.attention_pool_state(Q, K[a:b], V[a:b], kernel, h, return_std=True)
              for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    order = data.draw(st.permutations(range(len(states))))
    merged = states[order[0]]
    for i in order[1:]:
        merged = ops.merge_states(merged, states[i])
    whole = ops.attention_pool_state(Q, K, V, kernel, h, return_std=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        a, sa = ops.finalize_state(merged, return_std=True)
        b, sb = ops.finalize_state(whole, return_std=True)
    scale = max(1.0, np.abs(V).max())
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * scale)
    np.testing.assert_allclose(sa, sb, rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.parametrize("kernel", naive.ALL_KERNELS)
def test_tiny_bandwidth_is_exact_or_refused(kernel):
    # Scaled distances of 1e297: compact kernels see no neighbour (NaN and a
    # warning); kernels positive everywhere would overflow, and say so.
    rng = np.random.default_rng(1)
    K = rng.normal(size=(30, 2))
    V = rng.normal(size=30)
    if kernel in naive.COMPACT_KERNELS:
        with pytest.warns(EmptyNeighborhoodWarning):
            out = ops.attention_pool(K + 1e-3, K, V, kernel, bandwidth=1e-300)
        assert np.isnan(out).all()
        np.testing.assert_allclose(ops.attention_pool(K, K, V, kernel, bandwidth=1e-300), V)
    elif kernel in ("gaussian", "laplacian"):
        with pytest.raises(ValueError, match="bandwidth is too small"):
            ops.attention_pool(K + 1e-3, K, V, kernel, bandwidth=1e-300)
        # 1e100 bandwidths apart is still fine: the nearest key wins.
        out = ops.attention_pool(K + 1e-3, K, V, kernel, bandwidth=1e-103)
        np.testing.assert_allclose(out, V)
    else:
        assert np.isfinite(ops.attention_pool(K + 1e-3, K, V, kernel, bandwidth=1e-300)).all()

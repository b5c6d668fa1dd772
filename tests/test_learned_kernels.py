"""Compiled kernels of the learned scores against float64 NumPy references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nwattn import ops
from nwattn import objective
from nwattn.kernels import RBF_KIND
from nwattn.estimators import AttentionRegressor

from . import naive

KINDS = objective.LEARNED_KINDS


def _params(rng, r, d):
    return (rng.normal(size=(r, d)), rng.normal(size=(r, d)), rng.normal(size=r))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_additive_scores_match_reference(rng, dtype):
    Q, K = rng.normal(size=(7, 4)).astype(dtype), rng.normal(size=(11, 4)).astype(dtype)
    Wq, Wk, wv = _params(rng, 3, 4)
    got = ops.additive_scores(Q, K, Wq, Wk, wv)
    assert got.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert naive.relative_error(got, naive.additive_scores(Q, K, Wq, Wk, wv)) < tol


def test_additive_scores_saturate_without_overflow(rng):
    Q = np.array([[1e3], [-1e3], [0.0]])
    got = ops.additive_scores(Q, Q, [[1.0]], [[1.0]], [2.0])
    assert np.all(np.isfinite(got))
    assert naive.relative_error(got, naive.additive_scores(Q, Q, [[1.0]], [[1.0]], [2.0])) < 1e-15


@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize("p", [None, 2])
def test_additive_pool_matches_reference(rng, small_blocks, exclude_self, p):
    n, d, r = 13, 3, 4
    X = rng.normal(size=(n, d))
    V = rng.normal(size=n if p is None else (n, p))
    w = rng.uniform(0.5, 2.0, size=n)
    w[2] = 0.0
    Wq, Wk, wv = _params(rng, r, d)
    pred, std = ops.additive_pool(X, X, V, Wq, Wk, wv, key_weight=w, exclude_self=exclude_self,
                                  return_std=True)
    S = naive.additive_scores(X, X, Wq, Wk, wv)
    ref_pred, ref_std = naive.pool_from_scores(S, V, w, exclude_self, return_std=True)
    assert pred.shape == ref_pred.shape
    assert naive.relative_error(pred, ref_pred) < 1e-12
    assert naive.relative_error(std, ref_std) < 1e-10


def test_additive_pool_bad_parameters(rng):
    X, y = rng.normal(size=(5, 3)), rng.normal(size=5)
    Wq, Wk, wv = _params(rng, 2, 3)
    with pytest.raises(ValueError, match="W_query"):
        ops.additive_pool(X, X, y, Wq[:, :2], Wk, wv)
    with pytest.raises(ValueError, match="W_key"):
        ops.additive_pool(X, X, y, Wq, Wk[:1], wv)
    with pytest.raises(ValueError, match="w_score"):
        ops.additive_pool(X, X, y, Wq, Wk, np.ones((2, 2)))
    with pytest.raises(ValueError, match="w_score"):
        ops.additive_pool(X, X, y, Wq, Wk, [np.nan, 1.0])
    with pytest.raises(ValueError, match="exclude_self"):
        ops.additive_pool(X[:2], X, y, Wq, Wk, wv, exclude_self=True)


@pytest.mark.parametrize("kind", list(KINDS))
def test_loo_loss_matches_reference(rng, small_blocks, kind):
    n, b, r, p = 17, 11, 3, 2
    Pk = rng.normal(size=(n, r))
    Pq = Pk[:b].copy() if kind == "rbf" else rng.normal(size=(b, r))
    wv = rng.normal(size=r)
    Y = rng.normal(size=(n, p)) + 5.0
    kw = rng.uniform(0.5, 2.0, size=n)
    kw[[3, 12]] = 0.0
    qw = rng.uniform(0.5, 2.0, size=b)
    with np.errstate(divide="ignore"):
        logw = np.log(kw)
    loss, dPq, dPk, dwv, pred = objective.loo_loss_grad(KINDS[kind], Pq, Pk, wv, Y, logw, qw,
                                                      1.0 / np.sqrt(r))
    ref_loss, ref_pred = naive.loo_loss(kind, Pq, Pk, Y, kw, qw, wv)
    assert abs(loss - ref_loss) <= 1e-12 * ref_loss
    assert naive.relative_error(pred, ref_pred) < 1e-12
    assert dPq.shape == (b, r) and dPk.shape == (n, r) and dwv.shape == (r,)


def test_loo_loss_query_without_neighbours(small_blocks):
    # Query 0's only positive-weight key is itself: no prediction, no loss, no gradient.
    Pk = np.array([[0.0], [1.0], [2.0]])
    Y = np.array([[1.0], [2.0], [4.0]])
    kw = np.array([1.0, 0.0, 0.0])
    with np.errstate(divide="ignore"):
        logw = np.log(kw)
    loss, dPq, dPk, _, pred = objective.loo_loss_grad(RBF_KIND, Pk, Pk, np.zeros(1), Y, logw,
                                                    np.ones(3))
    ref_loss, ref_pred = naive.loo_loss("rbf", Pk, Pk, Y, kw, np.ones(3))
    assert np.isnan(pred[0, 0]) and np.isnan(ref_pred[0, 0])
    assert abs(loss - ref_loss) <= 1e-12 * ref_loss
    assert ref_loss == pytest.approx(1.0 + 9.0)
    # every weight is 0 or 1, so the softmax is flat in the scores
    assert np.abs(dPq).max() < 1e-12 and np.abs(dPk).max() < 1e-12


def _fd_gradient(fun, theta, eps=1e-5):
    g = np.empty_like(theta)
    for t in range(theta.size):
        e = np.zeros_like(theta)
        e[t] = eps
        g[t] = (fun(theta + e)[0] - fun(theta - e)[0]) / (2 * eps)
    return g


@pytest.mark.parametrize("kernel", list(KINDS))
@pytest.mark.parametrize("batch", [None, 9])
def test_gradient_matches_finite_differences(rng, small_blocks, kernel, batch):
    n, d, r, p = 21, 4, 3, 2
    X = rng.normal(size=(n, d))
    Y = rng.normal(size=(n, p))
    sw = rng.uniform(0.2, 2.0, size=n)
    b = n if batch is None else batch
    est = AttentionRegressor(kernel, alpha=0.01)
    with np.errstate(divide="ignore"):
        logw = np.log(sw)
    fun = est._objective(X, Y, logw, sw[:b] / sw[:b].sum(), b, r)
    n_params = r * d * (1 if kernel == "rbf" else 2) + (r if kernel == "additive" else 0)
    theta = rng.normal(scale=0.5, size=n_params)
    loss, grad = fun(theta)
    num = _fd_gradient(fun, theta)
    assert np.linalg.norm(grad - num) <= 1e-6 * np.linalg.norm(num)


@settings(max_examples=25)
@given(n=st.integers(2, 12), m=st.integers(1, 12), d=st.integers(1, 4), r=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1), spread=st.floats(0.01, 100.0))
def test_additive_pool_is_a_convex_combination(n, m, d, r, seed, spread):
    gen = np.random.default_rng(seed)
    Q, K = gen.normal(size=(n, d)), gen.normal(size=(m, d))
    V = gen.normal(size=m)
    Wq, Wk = spread * gen.normal(size=(r, d)), spread * gen.normal(size=(r, d))
    wv = spread * gen.normal(size=r)
    pred = ops.additive_pool(Q, K, V, Wq, Wk, wv)
    assert np.all(np.isfinite(pred))
    assert np.all(pred >= V.min() - 1e-12) and np.all(pred <= V.max() + 1e-12)
    ref = naive.pool_from_scores(naive.additive_scores(Q, K, Wq, Wk, wv), V)
    assert naive.relative_error(pred, ref) < 1e-9


def test_additive_pool_float32(rng):
    X = rng.normal(size=(9, 2)).astype(np.float32)
    V = rng.normal(size=9).astype(np.float32)
    Wq, Wk, wv = _params(rng, 3, 2)
    pred = ops.additive_pool(X, X, V, Wq, Wk, wv)
    assert pred.dtype == np.float32
    ref = naive.pool_from_scores(naive.additive_scores(X, X, Wq, Wk, wv), V)
    assert naive.relative_error(pred, ref) < 1e-5

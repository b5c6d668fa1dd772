"""The learned scores on the GPU: the leave-one-out objective, its gradient, the estimator.

Runs on a GPU when there is one, on numba-cuda's simulator otherwise (see
tests/test_cuda.py, whose fixtures and markers these tests share). The
simulator runs every GPU thread as Python, so the problems are tiny and the
launch sizes lowered: 13 training points still span several blocks, key
tiles and key splits.
"""

import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nwattn import _config, ops
from nwattn import objective
from nwattn.kernels import ADDITIVE_KIND, RBF_KIND
from nwattn.estimators import AttentionRegressor
from nwattn.exceptions import EmptyNeighborhoodWarning

from . import naive
from .test_cuda import TOL, needs_gpu, small_launch  # noqa: F401  (small_launch: fixture)

KINDS = objective.LEARNED_KINDS


def _problem(rng, kind, n=13, b=13, r=3, p=2):
    Pk = rng.normal(size=(n, r))
    Pq = Pk[:b].copy() if kind == "rbf" else rng.normal(size=(b, r))
    wv = rng.normal(size=r)
    Y = rng.normal(size=(n, p)) + 5.0
    kw = rng.uniform(0.5, 2.0, size=n)
    kw[[3, n - 2]] = 0.0
    qw = rng.uniform(0.5, 2.0, size=b)
    with np.errstate(divide="ignore"):
        logw = np.log(kw)
    return Pq, Pk, wv, Y, logw, qw, kw


@needs_gpu
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("b", [13, 8])
def test_loss_and_gradient_match_the_cpu(rng, small_launch, kind, b):
    Pq, Pk, wv, Y, logw, qw, kw = _problem(rng, kind, b=b)
    scale = 1.0 / np.sqrt(Pq.shape[1])
    got = objective.loo_loss_grad(KINDS[kind], Pq, Pk, wv, Y, logw, qw, scale,
                                  device="cuda")
    want = objective.loo_loss_grad(KINDS[kind], Pq, Pk, wv, Y, logw, qw, scale)
    loss, dPq, dPk, dwv, pred = got
    assert abs(loss - want[0]) <= 1e-10 * want[0]
    assert dPq.shape == want[1].shape and dPk.shape == want[2].shape
    for g, w in zip(got[1:4], want[1:4]):
        assert naive.relative_error(g, w) <= 1e-10
    assert naive.relative_error(pred, want[4]) <= 1e-10
    ref_loss, ref_pred = naive.loo_loss(kind, Pq, Pk, Y, kw, qw, wv)
    assert abs(loss - ref_loss) <= 1e-10 * ref_loss
    assert naive.relative_error(pred, ref_pred) <= 1e-10


@needs_gpu
def test_query_without_neighbours(small_launch):
    # Query 0's only positive-weight key is itself: no prediction, no loss, no gradient.
    Pk = np.array([[0.0], [1.0], [2.0]])
    Y = np.array([[1.0], [2.0], [4.0]])
    with np.errstate(divide="ignore"):
        logw = np.log([1.0, 0.0, 0.0])
    loss, dPq, dPk, _, pred = objective.loo_loss_grad(RBF_KIND, Pk, Pk, np.zeros(1), Y, logw,
                                                      np.ones(3), device="cuda")
    assert np.isnan(pred[0, 0])
    assert loss == pytest.approx(1.0 + 9.0, rel=1e-12)
    assert np.abs(dPq).max() < 1e-12 and np.abs(dPk).max() < 1e-12


@needs_gpu
def test_float32_objective(rng, small_launch):
    Pq, Pk, wv, Y, logw, qw, _ = _problem(rng, "additive", b=9)
    got = objective.loo_loss_grad(ADDITIVE_KIND, Pq.astype(np.float32), Pk.astype(np.float32),
                                  wv, Y, logw, qw, 1.0, device="cuda")
    want = objective.loo_loss_grad(ADDITIVE_KIND, Pq, Pk, wv, Y, logw, qw, 1.0)
    assert abs(got[0] - want[0]) <= 1e-4 * want[0]
    for g, w in zip(got[1:], want[1:]):
        assert naive.relative_error(g, w) <= 1e-4


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_additive_ops_on_the_gpu(rng, small_launch, dtype):
    X = rng.normal(size=(11, 3)).astype(dtype)
    V = rng.normal(size=(11, 3)).astype(dtype)
    Wq, Wk, wv = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.normal(size=2)
    w = rng.uniform(0.5, 2.0, size=11)
    w[4] = 0.0
    S = ops.additive_scores(X[:5], X, Wq, Wk, wv, device="cuda")
    assert S.dtype == dtype
    assert naive.relative_error(S, naive.additive_scores(X[:5], X, Wq, Wk, wv)) <= TOL[dtype]
    pred, std = ops.additive_pool(X, X, V, Wq, Wk, wv, key_weight=w, exclude_self=True,
                                  return_std=True, device="cuda")
    ref, ref_std = naive.pool_from_scores(naive.additive_scores(X, X, Wq, Wk, wv), V, w,
                                          exclude_self=True, return_std=True)
    assert pred.dtype == dtype and pred.shape == ref.shape
    assert naive.relative_error(pred, ref) <= TOL[dtype]
    assert naive.relative_error(std, ref_std) <= 10 * TOL[dtype] * np.abs(V).max()


@needs_gpu
def test_additive_device_arrays_stay_on_the_device(rng, small_launch):
    from numba import cuda

    X = rng.normal(size=(7, 2))
    y = rng.normal(size=7)
    Wq, Wk, wv = rng.normal(size=(3, 2)), rng.normal(size=(3, 2)), rng.normal(size=3)
    Xd = cuda.to_device(X)
    pred = ops.additive_pool(Xd, Xd, cuda.to_device(y), Wq, Wk, wv)
    assert cuda.devicearray.is_cuda_ndarray(pred) and pred.shape == (7,)
    want = ops.additive_pool(X, X, y, Wq, Wk, wv)
    assert naive.relative_error(pred.copy_to_host(), want) <= 1e-10
    # a single isolated key of positive weight: empty neighbourhoods, as on the CPU
    w = np.r_[1.0, np.zeros(6)]
    with pytest.warns(EmptyNeighborhoodWarning):
        got = ops.additive_pool(X, X, y, Wq, Wk, wv, key_weight=w, exclude_self=True,
                                device="cuda")
    assert np.isnan(got[0]) and np.allclose(got[1:], y[0])


@needs_gpu
@pytest.mark.parametrize("kernel, batch", [("rbf", None), ("scaled_dot", 8),
                                           ("additive", None)])
def test_fit_on_the_gpu_equals_the_cpu(rng, small_launch, kernel, batch):
    X = rng.normal(size=(12, 3))
    y = np.c_[np.sin(X[:, 0]), X[:, 1]]
    sw = rng.uniform(0.5, 2.0, size=12)
    params = dict(n_components=2, max_iter=2, batch_size=batch, random_state=0)
    gpu = AttentionRegressor(kernel, device="cuda", **params).fit(X, y, sample_weight=sw)
    cpu = AttentionRegressor(kernel, device="cpu", **params).fit(X, y, sample_weight=sw)
    assert gpu.n_iter_ == cpu.n_iter_
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(gpu.W_key_, cpu.W_key_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gpu.W_query_, cpu.W_query_, rtol=1e-8, atol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        got = gpu.predict(X[:4])
        idx, wts = gpu.attention_weights(X[:3], k=2)
    np.testing.assert_allclose(got, cpu.predict(X[:4]), rtol=1e-8)
    cpu_idx, cpu_wts = cpu.attention_weights(X[:3], k=2)
    np.testing.assert_array_equal(idx, cpu_idx)
    np.testing.assert_allclose(wts, cpu_wts, rtol=1e-8)


@needs_gpu
def test_auto_moves_large_fits_to_the_gpu(rng, small_launch, monkeypatch):
    from nwattn._backend import get_backend

    gpu = get_backend("cuda")
    calls = []
    real = gpu.grad_pass

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(gpu, "grad_pass", counting)
    X, y = rng.normal(size=(6, 2)), rng.normal(size=6)
    AttentionRegressor(max_iter=1, device="auto").fit(X, y)
    assert not calls  # 36 pairs: the CPU
    monkeypatch.setattr(_config, "CUDA_AUTO_MIN_PAIRS", 36)
    from nwattn import _device

    if _device.simulator_enabled():
        AttentionRegressor(max_iter=1, device="auto").fit(X, y)
        assert not calls  # "auto" never picks the simulator
        # as on a machine with a GPU (the kernels still run on the simulator)
        monkeypatch.setattr(_device, "simulator_enabled", lambda: False)
        monkeypatch.setattr(_device, "driver_problem", lambda: None)
    AttentionRegressor(max_iter=1, device="auto").fit(X, y)
    assert calls


@needs_gpu
@settings(max_examples=8)
@given(kind=st.sampled_from(list(KINDS)), n=st.integers(2, 9), b_frac=st.floats(0.1, 1.0),
       r=st.integers(1, 3), p=st.integers(1, 2), threads=st.integers(1, 5),
       tile=st.integers(1, 4), split_keys=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_any_launch_shape_gives_the_cpu_gradient(kind, n, b_frac, r, p, threads, tile,
                                                 split_keys, seed):
    """Ragged edges: one row per block, tiles of one column, a split per column..."""
    rng = np.random.default_rng(seed)
    b = max(1, int(round(b_frac * n)))
    Pk = rng.normal(size=(n, r))
    Pq = Pk[:b].copy() if kind == "rbf" else rng.normal(size=(b, r))
    wv, Y = rng.normal(size=r), rng.normal(size=(n, p))
    logw, qw = np.log(rng.uniform(0.5, 2.0, size=n)), rng.uniform(0.5, 2.0, size=b)
    sizes = dict(CUDA_THREADS_PER_BLOCK=threads, CUDA_KEY_TILE=tile, CUDA_TARGET_BLOCKS=8,
                 CUDA_MIN_SPLIT_KEYS=split_keys, CUDA_VALUE_CHUNK=2, CUDA_SIMPLE_THREADS=4)
    with mock.patch.multiple(_config, **sizes):
        got = objective.loo_loss_grad(KINDS[kind], Pq, Pk, wv, Y, logw, qw, 0.7, device="cuda")
    want = objective.loo_loss_grad(KINDS[kind], Pq, Pk, wv, Y, logw, qw, 0.7)
    assert abs(got[0] - want[0]) <= 1e-10 * want[0]
    # With two points each query has one neighbour and the gradient is
    # exactly zero: compare on the scale of the values, not relatively.
    for g, w in zip(got[1:], want[1:]):
        assert np.all(np.abs(g - w) <= 1e-10 * (1.0 + np.abs(w).max()))


@needs_gpu
@pytest.mark.parametrize("name", list(KINDS))
def test_learned_kinds_reach_the_gpu_as_their_catalogue_family(rng, small_launch, monkeypatch,
                                                               name):
    """A learned score's kind is translated to its (family, code) in one place.

    The kinds and the score families are different numberings; the GPU pooling
    launcher takes a family, so passing a kind through unchanged only worked
    where the two numbers happened to agree.
    """
    from nwattn._backend import get_backend
    from nwattn._cuda import launch
    from nwattn.kernels import LEARNED_SCORES

    seen = []
    real = launch.pool

    def spy(Qs, KT, VT, VT2, logw, family, code, *rest):
        seen.append((family, code))
        return real(Qs, KT, VT, VT2, logw, family, code, *rest)

    monkeypatch.setattr(launch, "pool", spy)
    P, OT = rng.normal(size=(5, 2)), rng.normal(size=(2, 7))
    VT, wv = rng.normal(size=(1, 7)), rng.normal(size=2)
    args = (KINDS[name], P, OT, wv, 0.7, np.zeros(7), VT, np.empty((0, 7)), -99)
    got = get_backend("cuda").learned_pool(*args)
    want = get_backend("cpu").learned_pool(*args)
    assert seen == [LEARNED_SCORES[KINDS[name]]]
    # The GPU's tanh and the CPU's vectorised one differ by rounding.
    assert naive.relative_error(got[0], want[0]) <= 1e-12
    assert naive.relative_error(got[1], want[1]) <= 1e-10

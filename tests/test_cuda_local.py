"""The GPU kernel of the local polynomial moments against the CPU sweep.

Runs on a GPU when there is one, else on numba-cuda's CUDA simulator (see
tests/test_cuda.py for why the simulator is chosen at the top of the
module). The inputs are tiny and the launch sizes lowered (``small_launch``)
so that they span several query blocks, key tiles, key splits and value
chunks, none of them full; the CPU backend is the reference, itself tested
against the exact solves elsewhere.
"""

import os
import sys
import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nwattn._device import driver_problem

if "numba.cuda" not in sys.modules and driver_problem() is not None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

from nwattn import _config, ops  # noqa: E402
from nwattn._backend import backend_for, get_backend  # noqa: E402
from nwattn._device import cuda_problem  # noqa: E402
from nwattn._layout import local_layout  # noqa: E402
from nwattn.exceptions import EmptyNeighborhoodWarning  # noqa: E402

from .test_properties import problems  # noqa: E402

_PROBLEM = cuda_problem()
if _PROBLEM is not None and "numba.cuda" in sys.modules:
    _PROBLEM += " (numba.cuda was imported before this module could enable the simulator)"

needs_gpu = pytest.mark.skipif(_PROBLEM is not None, reason=f"GPU path unavailable: {_PROBLEM}")
needs_numba_cuda = pytest.mark.skipif(
    __import__("importlib").util.find_spec("numba_cuda") is None,
    reason="the cuda extra (numba-cuda) is not installed")

# Tolerances of the states (relative to each query's normaliser and to the
# largest moment of its row) and of the predictions and slopes.
STATE_TOL = {np.float64: 1e-11, np.float32: 2e-5}
FIT_TOL = {np.float64: 1e-9, np.float32: 2e-3}
DTYPES = [np.float64, np.float32]


@pytest.fixture
def small_launch(monkeypatch):
    """11 queries and 17 keys span 3 blocks of 4 queries, 3 key splits of 6
    keys in tiles of 3, and value columns in chunks of 2."""
    for name, value in (("CUDA_THREADS_PER_BLOCK", 4), ("CUDA_KEY_TILE", 3),
                        ("CUDA_TARGET_BLOCKS", 16), ("CUDA_MIN_SPLIT_KEYS", 7),
                        ("CUDA_VALUE_CHUNK", 2), ("CUDA_SIMPLE_THREADS", 8)):
        monkeypatch.setattr(_config, name, value)
    return _config


def make_data(rng, n=11, m=17, d=2, p=3, dtype=np.float64, values_1d=False):
    Q = rng.uniform(-1.0, 1.0, size=(n, d)).astype(dtype)
    K = rng.uniform(-1.0, 1.0, size=(m, d)).astype(dtype)
    V = np.sin(2.0 * K.sum(axis=1))[:, None] + rng.normal(scale=0.3, size=(m, p))
    return Q, K, (V[:, 0] if values_1d else V).astype(dtype)


def assert_states_close(got, want, tol):
    """Two moment states of the same queries agree, compared at a common maximum."""
    assert got.layout == want.layout
    assert got.packed.dtype == want.packed.dtype
    assert got.local == want.local
    np.testing.assert_array_equal(got.center, want.center)
    assert got.values_1d == want.values_1d
    empty = want.empty
    np.testing.assert_array_equal(got.empty, empty)
    # An empty neighbourhood leaves the state as it started: no maximum, zeros.
    assert np.all(np.isneginf(got.max[empty])) and not got.packed[empty].any()
    full = ~empty
    shift = np.exp(got.max[full].astype(np.float64) - want.max[full])
    a = got.packed[full] * shift[:, None] / want.norm[full, None]
    b = want.packed[full].astype(np.float64) / want.norm[full, None]
    scale = 1.0 + np.abs(b).max(axis=1, keepdims=True)
    assert np.all(np.abs(a - b) <= tol * scale), np.abs(a - b).max()


def both(*args, **kwargs):
    """The local polynomial states of the GPU and of the CPU."""
    return (ops.local_polynomial_state(*args, device="cuda", **kwargs),
            ops.local_polynomial_state(*args, device="cpu", **kwargs))


@needs_gpu
@pytest.mark.parametrize("degree", [0, 1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["gaussian", "tricube"])
def test_state_matches_the_cpu(rng, small_launch, degree, dtype, kernel):
    """Per-feature bandwidths, key weights (some zero), three outputs in two chunks."""
    Q, K, V = make_data(rng, d=3, dtype=dtype)
    h = np.array([0.9, 1.2, 1.5]) * (2.0 if kernel == "tricube" else 0.6)
    w = rng.uniform(0.2, 2.0, size=K.shape[0])
    w[::4] = 0.0
    got, want = both(Q, K, V, kernel, h, degree=degree, key_weight=w)
    assert got.layout == local_layout(3, 3, degree)
    assert_states_close(got, want, STATE_TOL[dtype])


@needs_gpu
@pytest.mark.parametrize("degree", [0, 1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_leave_one_out_query_scale_and_empty_neighbourhoods(rng, small_launch, degree, dtype):
    """Scalar bandwidth, per-query scales, exclude_self, 1-D values, and two
    isolated points whose compact neighbourhoods are empty once they leave
    themselves out."""
    _, X, y = make_data(rng, n=13, m=13, dtype=dtype, values_1d=True)
    X[-2] += 50.0
    X[-1] -= 50.0
    f = rng.uniform(0.7, 1.3, size=13)
    got, want = both(X, X, y, "epanechnikov", 1.5, degree=degree, query_scale=f,
                     exclude_self=True)
    assert got.empty[-2:].all() and got.n_empty == want.n_empty
    assert_states_close(got, want, STATE_TOL[dtype])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        pred = ops.finalize_local(got)
        ref = ops.finalize_local(want)
    assert pred.dtype == ref.dtype and pred.shape == (13,)
    np.testing.assert_array_equal(np.isnan(pred), np.isnan(ref))
    assert np.isnan(pred[-2:]).all()
    ok = ~np.isnan(ref)
    # 13 points, each query left out with the few its compact kernel reaches:
    # a local quadratic's 6 x 6 design is often nearly singular, and moments
    # equal to rounding (above) give fits that differ by a few 1e-9 (seed
    # 345604813: 4.6e-9).
    tol = FIT_TOL[dtype] * (100 if degree == 2 and dtype == np.float64 else 1)
    np.testing.assert_allclose(pred[ok], ref[ok], rtol=tol, atol=tol)


@needs_gpu
@pytest.mark.parametrize("degree", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_predictions_and_slopes_match_the_cpu(rng, small_launch, degree, dtype):
    Q, K, V = make_data(rng, n=9, m=30, d=2, p=3, dtype=dtype)
    kwargs = dict(kernel="gaussian", bandwidth=[0.5, 0.7], degree=degree,
                  return_gradient=True)
    pred, grad = ops.local_polynomial(Q, K, V, device="cuda", **kwargs)
    want, want_grad = ops.local_polynomial(Q, K, V, **kwargs)
    assert pred.dtype == want.dtype and grad.shape == want_grad.shape == (9, 2, 3)
    tol = FIT_TOL[dtype]
    np.testing.assert_allclose(pred, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(grad, want_grad, rtol=tol, atol=tol * (1 + np.abs(want_grad).max()))


@needs_gpu
def test_four_features_quadratic_many_outputs(rng, small_launch):
    """d = 4 at degree 2: 15 basis functions, 119 Gram moments per query,
    five outputs in three chunks of the value columns."""
    Q, K, V = make_data(rng, n=6, m=40, d=4, p=5)
    got, want = both(Q, K, V, "biweight", 2.5, degree=2)
    assert got.layout.width == 1 + 5 + 119 + 14 * 5
    assert_states_close(got, want, STATE_TOL[np.float64])
    np.testing.assert_allclose(ops.finalize_local(got), ops.finalize_local(want), rtol=1e-8,
                               atol=1e-8)


@needs_gpu
def test_shard_states_merge_to_the_whole(rng, small_launch):
    _, X, y = make_data(rng, n=15, m=15, d=2, p=2)
    cuts = [0, 4, 11, 15]
    kwargs = dict(kernel="tricube", bandwidth=1.4, degree=2, exclude_self=True)
    states = [ops.local_polynomial_state(X, X[a:b], y[a:b], key_offset=a, center=[0.1, -0.2],
                                         device="cuda", **kwargs)
              for a, b in zip(cuts[:-1], cuts[1:])]
    merged = states[0]
    for part in states[1:]:
        merged = ops.merge_states(merged, part)
    whole_gpu = ops.local_polynomial_state(X, X, y, center=[0.1, -0.2], device="cuda",
                                           **kwargs)
    whole_cpu = ops.local_polynomial_state(X, X, y, center=[0.1, -0.2], **kwargs)
    assert_states_close(merged, whole_gpu, 1e-12)
    assert_states_close(merged, whole_cpu, STATE_TOL[np.float64])
    # The degree-2 solves of 15 random points can have designs of condition
    # 1e5 and more, which amplify the states' rounding differences: the
    # predictions are compared at the tolerance that leaves.
    np.testing.assert_allclose(ops.finalize_local(merged), ops.finalize_local(whole_cpu),
                               rtol=1e-7, atol=1e-9)


@needs_gpu
def test_split_and_unsplit_launches_agree(rng, small_launch, monkeypatch):
    # Few queries, many keys: the keys are split and the partial states merged.
    Q, K, V = make_data(rng, n=3, m=29, d=2, p=1)
    split = ops.local_polynomial_state(Q, K, V, bandwidth=0.5, degree=2, device="cuda")
    monkeypatch.setattr(_config, "CUDA_TARGET_BLOCKS", 1)
    whole = ops.local_polynomial_state(Q, K, V, bandwidth=0.5, degree=2, device="cuda")
    assert_states_close(split, whole, 1e-12)


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_device_arrays_in(rng, small_launch, dtype):
    """Inputs on the GPU are prepared there; the state comes back to the host."""
    from numba import cuda

    Q, K, V = make_data(rng, n=7, m=12, d=2, p=2, dtype=dtype)
    got = ops.local_polynomial_state(cuda.to_device(Q), cuda.to_device(K), cuda.to_device(V),
                                     "gaussian", [0.6, 0.8], degree=1)
    want = ops.local_polynomial_state(Q, K, V, "gaussian", [0.6, 0.8], degree=1)
    assert isinstance(got.packed, np.ndarray) and got.queries is None
    # The host path centres the inputs on their bounding box first; the
    # offsets then round differently in float32.
    got.queries = want.queries
    np.testing.assert_allclose(got.center, want.center, rtol=STATE_TOL[dtype])
    got.center = want.center
    assert_states_close(got, want, 10 * STATE_TOL[dtype])
    pred = ops.local_polynomial(cuda.to_device(Q), cuda.to_device(K), cuda.to_device(V),
                                "gaussian", [0.6, 0.8])
    np.testing.assert_allclose(pred, ops.local_polynomial(Q, K, V, "gaussian", [0.6, 0.8]),
                               rtol=FIT_TOL[dtype], atol=FIT_TOL[dtype])


@needs_gpu
@settings(max_examples=10)
@given(problems(max_n=8, max_m=10), st.integers(0, 2), st.integers(1, 5), st.integers(1, 4),
       st.integers(1, 6), st.integers(1, 3))
def test_any_launch_shape_matches_the_cpu(problem, degree, threads, tile, split_keys, chunk):
    """Ragged edges of every kind: one query, one key, one thread, tiles of one key..."""
    Q, K, V, kernel, h = problem
    sizes = dict(CUDA_THREADS_PER_BLOCK=threads, CUDA_KEY_TILE=tile, CUDA_TARGET_BLOCKS=8,
                 CUDA_MIN_SPLIT_KEYS=split_keys, CUDA_VALUE_CHUNK=chunk, CUDA_SIMPLE_THREADS=4)
    with mock.patch.multiple(_config, **sizes):
        got = ops.local_polynomial_state(Q, K, V, kernel, h, degree=degree, device="cuda")
    want = ops.local_polynomial_state(Q, K, V, kernel, h, degree=degree)
    assert_states_close(got, want, 1e-9)


@needs_gpu
def test_progress_is_reported_once_at_the_end(rng, small_launch):
    Q, K, V = make_data(rng, n=5, m=8)
    calls = []
    be = get_backend("cuda")
    Qs = np.ascontiguousarray(Q)
    be.local(Qs, np.ascontiguousarray(K.T), np.ascontiguousarray(V.T), np.empty(0), 0, 0,
             np.ones(5), 1, -6, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(40, 40)]


def test_the_gpu_offers_local_moments_and_auto_stays_on_the_cpu():
    Q = np.zeros((3, 2))
    be, on_gpu = backend_for("auto", Q, Q, need="local")
    assert be.name == "cpu" and not on_gpu
    if _PROBLEM is None:
        assert "local" in get_backend("cuda").capabilities


@needs_numba_cuda
def test_value_chunk_fits_the_state_budget(monkeypatch):
    from nwattn._cuda import local

    monkeypatch.setattr(_config, "CUDA_VALUE_CHUNK", 16)
    assert local.state_chunk(2, 1, 40, 8) == 16
    assert local.state_chunk(2, 1, 3, 8) == 3
    # d = 8 at degree 2: 45 basis functions, 1035 Gram entries per thread.
    P = 45
    room = local.STATE_BYTES // 8 - P * (P + 1) // 2
    assert local.state_chunk(8, 2, 40, 8) == min(16, room // P)
    with pytest.raises(ValueError, match="Use device='cpu'"):
        local.state_chunk(12, 2, 1, 8)


@needs_numba_cuda
def test_a_score_is_refused():
    from nwattn._cuda import local
    from nwattn.kernels import DOT, DOT_CODE

    X = np.zeros((2, 1))
    with pytest.raises(ValueError, match="smoothing kernel"):
        local.local(X, X.T, X.T, np.empty(0), DOT, DOT_CODE, np.ones(2), 1, -3)

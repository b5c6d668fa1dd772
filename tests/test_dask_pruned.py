"""The pruned tile schedule on Dask arrays: every task orders and prunes its own chunk of keys.

``algorithm="tree"`` on the Dask functions must give the in-memory
brute-force result to rounding, whatever the chunking. The work
decomposition is lowered (tiles of 4 keys, blocks of 3 queries) so that
chunks of a few dozen keys span many tiles, and the graphs run on the
synchronous scheduler: the lowered settings are module attributes, which
only the tasks run in this process see. A spy on the pruned schedule's key
order checks that the tasks did prune, each over its own chunk.
"""

import warnings

import numpy as np
import pytest

dask = pytest.importorskip("dask", reason="the dask extra is not installed")
da = pytest.importorskip("dask.array", reason="the dask extra is not installed")

from nwattn import LocalPolynomialRegressor, NadarayaWatsonRegressor, ops  # noqa: E402
from nwattn import dask as ndask  # noqa: E402
from nwattn.bandwidth import loo_cv_score, select_bandwidth  # noqa: E402
from nwattn.dask.loo import _DaskLooProblem, moments  # noqa: E402
from nwattn.exceptions import EmptyNeighborhoodWarning  # noqa: E402
from nwattn.kernels import get_kernel  # noqa: E402
from nwattn.pruning import KeyTree  # noqa: E402

from . import naive  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::nwattn.exceptions.EmptyNeighborhoodWarning")

#: A compact kernel (pruning exact) and one positive everywhere (pruning
#: within the 2**-60 bound of the normaliser).
KERNELS = ["epanechnikov", "gaussian"]

#: Bandwidths at which most tiles lie beyond a query block's reach, for
#: points uniform in the unit square.
H = {"epanechnikov": 0.08, "gaussian": 0.03}

#: Key chunkings of the 400 training points: uneven, then few and large.
CHUNKINGS = [97, 250]

#: Pooling states, scores and moments against in-memory brute force; the
#: gradients and local polynomial solves magnify rounding by their condition
#: (as in tests/test_dask_local.py).
TOL = 1e-12
TOL_GRAD = 1e-9
TOL_LOCAL = {1: 1e-10, 2: 1e-8}


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="sync"):
        yield


@pytest.fixture
def pruned(monkeypatch):
    """The number of keys of every pass that ran the pruned schedule, in call order.

    Wraps the key order of :mod:`nwattn.ops`, which every in-memory pass
    (pooling, moments, slopes, smoother) asks for its schedule.
    """
    from nwattn import ops as ops_module

    seen = []
    original = ops_module.key_order

    def spy(algorithm, be, kern, Qs, KT, **options):
        order = original(algorithm, be, kern, Qs, KT, **options)
        if order is not None:
            assert sorted(order.keys.tolist()) == list(range(KT.shape[1]))
            seen.append(KT.shape[1])
        return order

    monkeypatch.setattr(ops_module, "key_order", spy)
    return seen


def _close(actual, expected, rtol):
    assert naive.relative_error(actual, expected) <= rtol


def _close_std(actual, expected, mean, rtol):
    """Spreads compared as variances, to ``rtol`` of the largest second moment.

    A spread is ``sqrt(E[y**2] - E[y]**2)``: summing in another order moves the
    variance by a few ulps of the second moment, which moves a small spread by
    that over twice itself, far beyond ``rtol`` of the largest spread.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    ok = ~np.isnan(expected)
    second = np.max(mean[ok] ** 2 + expected[ok] ** 2, initial=0.0)
    assert np.all(np.abs(actual[ok] ** 2 - expected[ok] ** 2) <= rtol * max(second, 1e-300))


def _data(rng, n=400):
    X = rng.random((n, 2))
    y = np.c_[np.sin(6 * X[:, 0]) + X[:, 1], np.cos(4 * X[:, 1])] + 0.1 * rng.normal(size=(n, 2))
    w = rng.uniform(0.5, 2.0, size=n)
    w[::11] = 0.0
    return X, y, w


def _chunked(chunks, *arrays):
    return [da.from_array(a, chunks=(chunks,) + a.shape[1:]) for a in arrays]


def _key_chunks(chunks, n):
    """The row counts of the chunks of ``n`` rows cut every ``chunks``."""
    return {min(chunks, n - s) for s in range(0, n, chunks)}


# ------------------------------------------------------------------ pooling


@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_pooling_equals_in_memory_brute_force(rng, small_tiles, pruned, kernel, chunks):
    X, y, w = _data(rng)
    Q = np.concatenate([X[:60] + rng.normal(scale=0.01, size=(60, 2)), rng.random((90, 2))])
    dX, dy, dw = _chunked(chunks, X, y, w)
    dQ = da.from_array(Q, chunks=(40, 2))
    got = ndask.attention_pool(dQ, dX, dy, kernel, H[kernel], key_weight=dw, return_std=True,
                               algorithm="tree")
    got = dask.compute(*got)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        want = ops.attention_pool(Q, X, y, kernel, H[kernel], key_weight=w, return_std=True,
                                  algorithm="brute")
    _close(got[0], want[0], TOL)
    _close_std(got[1], want[1], want[0], TOL)
    # one pruned pass per (query block, key chunk) task, over that chunk's keys only
    assert len(pruned) == 4 * len(dX.chunks[0])
    assert set(pruned) == _key_chunks(chunks, 400)


@pytest.mark.parametrize("kernel", KERNELS)
def test_leave_one_out_pooling_with_the_points_chunked_alike(rng, small_tiles, pruned, kernel):
    # Diagonal tasks score a chunk against itself: their queries take the keys' order.
    X, y, _ = _data(rng, 300)
    dX, dy = _chunked(97, X, y)
    got = ndask.attention_pool(dX, dX, dy, kernel, H[kernel], exclude_self=True,
                               algorithm="tree").compute()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        want = ops.attention_pool(X, X, y, kernel, H[kernel], exclude_self=True,
                                  algorithm="brute")
    _close(got, want, TOL)
    assert len(pruned) == 4 * 4


def test_pruned_pooling_does_not_depend_on_the_chunking(rng, small_tiles):
    X, y, w = _data(rng)
    Q = rng.random((120, 2))
    results = []
    for q_chunks, k_chunks in [(120, 400), (50, 97), (7, 250), (33, (41, 3, 150, 6, 200))]:
        dX, dy, dw = _chunked(k_chunks, X, y, w)
        results.append(ndask.attention_pool(da.from_array(Q, chunks=(q_chunks, 2)), dX, dy,
                                            "epanechnikov", 0.1, key_weight=dw,
                                            algorithm="tree").compute())
    for other in results[1:]:
        _close(other, results[0], TOL)


# --------------------------------------------------------- local polynomials


@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("degree", [1, 2])
def test_local_polynomial_equals_in_memory_brute_force(rng, small_tiles, pruned, kernel, degree,
                                                       chunks):
    X, y, w = _data(rng)
    Q = rng.uniform(0.1, 0.9, size=(80, 2))
    dX, dy, dw = _chunked(chunks, X, y, w)
    h = 2.5 * H[kernel]  # enough keys around every query for a quadratic fit
    got = ndask.local_polynomial(da.from_array(Q, chunks=(30, 2)), dX, dy, kernel, h,
                                 degree=degree, key_weight=dw, return_gradient=True,
                                 algorithm="tree")
    got = dask.compute(*got)
    want = ops.local_polynomial(Q, X, y, kernel, h, degree=degree, key_weight=w,
                                return_gradient=True, algorithm="brute")
    for a, b in zip(got, want):
        _close(a, b, TOL_LOCAL[degree])
    assert len(pruned) == 3 * len(dX.chunks[0])


def test_loess_equals_in_memory_brute_force(rng, small_tiles, pruned):
    # Nearest-neighbour bandwidths: each query's reach is its own radius.
    X, y, _ = _data(rng)
    Q = rng.random((50, 2))
    dX, dy = _chunked(97, X, y)
    got = ndask.local_polynomial(da.from_array(Q, chunks=(20, 2)), dX, dy, "tricube",
                                 span=0.1, algorithm="tree").compute()
    want = ops.local_polynomial(Q, X, y, "tricube", span=0.1, algorithm="brute")
    _close(got, want, TOL_LOCAL[1])
    assert pruned


def test_local_polynomial_interval_equals_in_memory_brute_force(rng, small_tiles, pruned):
    # The sandwich of the standard errors and the bootstrap's smoother pass, both pruned.
    X, y, _ = _data(rng, 300)
    y = y[:, 0]
    model = LocalPolynomialRegressor(kernel="epanechnikov", bandwidth=0.2,
                                     algorithm="brute").fit(X, y)
    r = model._noise_residuals()[:, 0]
    Q = rng.uniform(0.1, 0.9, size=(20, 2))
    dX, dy = _chunked(97, X, y)
    lo, hi = ndask.local_polynomial_interval(
        da.from_array(Q, chunks=(8, 2)), dX, dy, "epanechnikov", 0.2, key_std=np.abs(r),
        residuals=r, method="bootstrap", simultaneous=True, n_bootstrap=49, seed=3,
        algorithm="tree")
    lo, hi = dask.compute(lo, hi)
    want = model.predict_interval(Q, method="bootstrap", simultaneous=True, n_bootstrap=49,
                                  random_state=3)
    _close(lo, want[0], TOL_GRAD)
    _close(hi, want[1], TOL_GRAD)
    assert set(pruned) == _key_chunks(97, 300)


# ----------------------------------------------------- cross-validation


@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_loo_score_and_gradient_equal_in_memory_brute_force(rng, small_tiles, pruned, kernel,
                                                            chunks):
    X, y, w = _data(rng)
    dX, dy, dw = _chunked(chunks, X, y, w)
    h = np.array([H[kernel], 1.5 * H[kernel]])
    fallback = "nearest" if kernel == "epanechnikov" else "mean"
    score = float(ndask.loo_cv_error(dX, dy, kernel, h, sample_weight=dw, fallback=fallback,
                                     algorithm="tree").compute())
    problem = _DaskLooProblem(dX, dy, dw, get_kernel(kernel), fallback, moments(dX, dy, dw),
                              "cpu", 3, "tree")
    value, grad = problem.value_and_gradient(h)
    want, want_grad = loo_cv_score(X, y, kernel, h, sample_weight=w, fallback=fallback,
                                   return_gradient=True, algorithm="brute")
    assert score == pytest.approx(want, rel=TOL) and value == pytest.approx(want, rel=TOL)
    _close(grad, want_grad, TOL_GRAD)
    n_chunks = len(dX.chunks[0])
    assert len(pruned) == 2 * n_chunks * n_chunks  # the score's passes, then the slopes'
    assert set(pruned) == _key_chunks(chunks, 400)


def test_pruned_loo_score_does_not_depend_on_the_chunking(rng, small_tiles):
    X, y, w = _data(rng)
    scores = [float(ndask.loo_cv_error(*_chunked(chunks, X, y), "gaussian", 0.04,
                                       sample_weight=_chunked(chunks, w)[0],
                                       algorithm="tree").compute())
              for chunks in (400, 97, 250, 13)]
    for other in scores[1:]:
        assert other == pytest.approx(scores[0], rel=TOL)


def _same_search(got, want, X, y, kernel):
    """The searches agree to their tolerance, and the Dask score is exact at its own optimum.

    The Dask search starts from reductions whose rounding differs from the
    in-memory sums, so the two searches may stop at bandwidths a fraction of
    their tolerance apart; the score at a given bandwidth is compared to
    rounding.
    """
    assert np.all(np.abs(np.log(np.asarray(got.bandwidth) / want.bandwidth)) < 1e-3)
    # Near a minimum the score moves with the square of the step: bandwidths
    # 1e-3 apart in log h differ in score by about 1e-6 times the score's
    # curvature in log h (seen: 3.7e-6 of the score, per feature, 2 features).
    assert got.cv_score == pytest.approx(want.cv_score, rel=2e-5)
    exact = loo_cv_score(X, y, kernel, got.bandwidth, algorithm="brute")
    assert got.cv_score == pytest.approx(exact, rel=TOL)


@pytest.mark.parametrize("kernel", KERNELS)
def test_select_bandwidth_equals_in_memory_brute_force(rng, small_tiles, pruned, kernel):
    X, y, _ = _data(rng)
    y = y[:, 0]
    want = select_bandwidth(X, y, kernel, algorithm="brute")
    for chunks in CHUNKINGS:
        got = ndask.select_bandwidth(*_chunked(chunks, X, y), kernel, algorithm="tree")
        _same_search(got, want, X, y, kernel)
    assert pruned
    candidates = [0.02, 0.05, 0.1]
    got = ndask.select_bandwidth(*_chunked(97, X, y), kernel, candidates=candidates,
                                 algorithm="tree")
    want = [loo_cv_score(X, y, kernel, h, algorithm="brute") for h in candidates]
    assert got.bandwidth == candidates[int(np.argmin(want))]
    assert got.cv_score == pytest.approx(min(want), rel=TOL)


def test_select_bandwidth_per_feature_equals_in_memory_brute_force(rng, small_tiles, pruned):
    X, y, _ = _data(rng, 300)
    X = X * [1.0, 5.0]
    y = y[:, 0]
    want = select_bandwidth(X, y, "epanechnikov", per_feature=True, algorithm="brute")
    got = ndask.select_bandwidth(*_chunked(97, X, y), "epanechnikov", per_feature=True,
                                 algorithm="tree")
    _same_search(got, want, X, y, "epanechnikov")
    assert pruned


# ------------------------------------------------------------- estimators


def test_nadaraya_watson_on_dask_arrays_predicts_the_brute_force_fit(rng, small_tiles, pruned):
    X, y, w = _data(rng)
    Q = rng.random((70, 2))
    dX, dy, dw = _chunked(97, X, y, w)
    params = dict(kernel="epanechnikov", bandwidth="cv", fallback="nearest")
    want = NadarayaWatsonRegressor(**params, algorithm="brute").fit(X, y, sample_weight=w)
    got = NadarayaWatsonRegressor(**params, algorithm="tree").fit(dX, dy, sample_weight=dw)
    assert abs(np.log(got.bandwidth_ / want.bandwidth_)) < 1e-3  # the search's tolerance
    assert pruned  # the leave-one-out search pruned
    pruned.clear()
    # the same bandwidth for both, so that the predictions compare to rounding
    got.bandwidth_ = want.bandwidth_
    pred, std = dask.compute(*got.predict(da.from_array(Q, chunks=(25, 2)), return_std=True))
    want_pred, want_std = want.predict(Q, return_std=True)
    _close(pred, want_pred, TOL)
    _close_std(std, want_std, want_pred, TOL)
    assert len(pruned) == 3 * 5 and set(pruned) == _key_chunks(97, 400)


def test_in_memory_fit_predicts_dask_queries_pruned(rng, small_tiles, pruned):
    X, y, _ = _data(rng)
    Q = rng.random((70, 2))
    model = NadarayaWatsonRegressor("gaussian", 0.03, algorithm="tree").fit(X, y)
    got = model.predict(da.from_array(Q, chunks=(25, 2))).compute()
    want = NadarayaWatsonRegressor("gaussian", 0.03, algorithm="brute").fit(X, y).predict(Q)
    _close(got, want, TOL)
    assert pruned == [400] * 3


# ------------------------------------------------------------------ errors


def _calls(rng):
    """Every public kernel pass of nwattn.dask, as a function of ``algorithm``."""
    X, y, _ = _data(rng, 60)
    dX, dy = _chunked(25, X, y)
    y1 = y[:, 0]
    return {
        "attention_pool": lambda a: ndask.attention_pool(dX, dX, dy, algorithm=a),
        "local_polynomial": lambda a: ndask.local_polynomial(dX, dX, dy, algorithm=a),
        "local_polynomial_interval": lambda a: ndask.local_polynomial_interval(
            dX, dX, dy, key_std=np.ones_like(y), algorithm=a),
        "loo_cv_error": lambda a: ndask.loo_cv_error(dX, dy, algorithm=a),
        "select_bandwidth": lambda a: ndask.select_bandwidth(dX, y1, candidates=[0.1],
                                                             algorithm=a),
    }


@pytest.mark.parametrize("name", ["attention_pool", "local_polynomial",
                                  "local_polynomial_interval", "loo_cv_error",
                                  "select_bandwidth"])
def test_bad_algorithms_are_refused_by_name(rng, name):
    call = _calls(rng)[name]
    with pytest.raises(ValueError, match="algorithm must be one of 'auto', 'brute', 'tree'"):
        call("kd_tree")
    with pytest.raises(ValueError, match="algorithm must be 'auto', 'brute' or 'tree' on Dask "
                                         "arrays, got a KeyTree"):
        call(KeyTree(np.zeros((60, 2))))
    call("Brute")  # case-insensitive, as in memory


def test_tree_where_it_cannot_apply_is_refused_when_the_graph_is_built(rng):
    X, y, _ = _data(rng, 60)
    dX, dy = _chunked(25, X, y)
    smoothing_only = "algorithm='tree' prunes smoothing kernels only"
    with pytest.raises(ValueError, match=smoothing_only):
        ndask.attention_pool(dX, dX, dy, "scaled_dot", algorithm="tree")
    with pytest.raises(ValueError, match=smoothing_only):
        ndask.loo_cv_error(dX, dy, "scaled_dot", algorithm="tree")
    with pytest.raises(ValueError, match=smoothing_only):
        NadarayaWatsonRegressor("scaled_dot", 1.0, algorithm="tree").fit(dX, dy)
    with pytest.raises(ValueError, match="algorithm='tree' runs on the CPU only"):
        ndask.attention_pool(dX, dX, dy, device="cuda", algorithm="tree")
    with pytest.raises(ValueError, match="algorithm"):
        NadarayaWatsonRegressor(algorithm="kd_tree").fit(dX, dy)
    # "auto" never prunes an attention score: brute force, as in memory
    got = ndask.attention_pool(dX, dX, dy, "scaled_dot", algorithm="auto").compute()
    _close(got, ops.attention_pool(X, X, y, "scaled_dot", algorithm="brute"), TOL)

"""Pooling on Dask arrays equals pooling in memory, on threads and on a cluster."""

import os
import signal
import time
import warnings

import numpy as np
import pytest

dask = pytest.importorskip("dask", reason="the dask extra is not installed")
da = pytest.importorskip("dask.array", reason="the dask extra is not installed")
distributed = pytest.importorskip("distributed", reason="the dask extra (distributed) is not installed")

from nwattn import dask as ndask  # noqa: E402
from nwattn import ops  # noqa: E402
from nwattn.dask.loo import _DaskLooProblem, moments  # noqa: E402
from nwattn.kernels import get_kernel  # noqa: E402
from nwattn._device import cuda_problem as _cuda_problem  # noqa: E402
from nwattn.bandwidth import BandwidthSelection, loo_cv_score, select_bandwidth  # noqa: E402
from nwattn.exceptions import EmptyNeighborhoodWarning  # noqa: E402

from . import naive  # noqa: E402

#: float64 results of the Dask path against the in-memory path.
TOL = 1e-12

#: Chunkings that do not divide the row counts evenly.
Q_CHUNKS = (23, 30, 7, 10)  # 70 queries
K_CHUNKS = (41, 3, 50, 16)  # 110 keys

pytestmark = pytest.mark.filterwarnings("ignore::nwattn.exceptions.EmptyNeighborhoodWarning")


@pytest.fixture(scope="module")
def cluster_client():
    """Two worker processes with one thread each, on the loopback address."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                  silence_logs=40) as cluster:
        with distributed.Client(cluster, set_as_default=False) as client:
            yield client


@pytest.fixture(params=["threads", "distributed"])
def scheduler(request, cluster_client):
    """Run the test body on the threaded scheduler or on the cluster."""
    if request.param == "threads":
        with dask.config.set(scheduler="threads"):
            yield request.param
    else:
        with cluster_client.as_current(), dask.config.set(scheduler=cluster_client.get):
            yield request.param


def _data(rng, n=70, m=110, d=2, p=2):
    Q = rng.normal(size=(n, d))
    K = rng.normal(size=(m, d))
    V = rng.normal(size=(m, p)) + 3.0 if p else rng.normal(size=m) + 3.0
    return Q, K, V


def _layout(layout, Q, K, V):
    """Dask arrays for a layout: which of queries and keys are sharded."""
    dQ = da.from_array(Q, chunks=(Q_CHUNKS, 1)) if layout != "keys" else Q
    if layout == "queries":
        return dQ, K, V
    dK = da.from_array(K, chunks=(K_CHUNKS, 1))
    dV = da.from_array(V, chunks=((17, 60, 33),) + V.shape[1:])  # realigned to K's chunks
    return dQ, dK, dV


@pytest.mark.parametrize("layout", ["keys", "queries", "both"])
@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "epanechnikov", "tricube", "dot"])
def test_matches_in_memory(rng, scheduler, layout, kernel):
    Q, K, V = _data(rng, p=2 if kernel != "dot" else 0)
    h = 1.2 if kernel in naive.COMPACT_KERNELS else 0.7
    got = ndask.attention_pool(*_layout(layout, Q, K, V), kernel, h, split_every=3)
    assert isinstance(got, da.Array)
    assert got.chunks[0] == (Q_CHUNKS if layout != "keys" else (70,))
    got = got.compute()
    assert naive.relative_error(got, ops.attention_pool(Q, K, V, kernel, h)) <= TOL
    assert naive.relative_error(got, naive.pool(Q, K, V, kernel, h)) <= 1e-10


@pytest.mark.parametrize("kernel", ["gaussian", "biweight"])
def test_leave_one_out_weights_and_std(rng, scheduler, kernel):
    X = rng.normal(size=(90, 3))
    y = rng.normal(size=90) + 5.0
    w = rng.uniform(0.5, 2.0, size=90)
    h = 1.5
    # queries and keys are the same rows, chunked differently
    dXq = da.from_array(X, chunks=((31, 40, 19), 3))
    dXk = da.from_array(X, chunks=((12, 60, 18), (2, 1)))
    dw = da.from_array(w, chunks=45)
    got, got_std = ndask.attention_pool(dXq, dXk, y, kernel, h, key_weight=dw,
                                        exclude_self=True, return_std=True)
    got, got_std = dask.compute(got, got_std)
    want, want_std = ops.attention_pool(X, X, y, kernel, h, key_weight=w, exclude_self=True,
                                        return_std=True)
    assert naive.relative_error(got, want) <= TOL
    _same_std(got_std, want_std, 1e-10)
    ref = naive.pool(X, X, y, kernel, h, key_weight=w, exclude_self=True)
    assert naive.relative_error(got, ref) <= 1e-10


@pytest.mark.parametrize("kernel", ["boxcar", "epanechnikov", "cosine"])
def test_chunks_outside_the_support(rng, scheduler, kernel):
    """Sorted 1-D keys: most (query block, key chunk) states are empty, some
    queries are empty altogether, and one chunk has zero key weights."""
    K = np.sort(rng.uniform(0, 10, size=120))[:, None]
    V = np.sin(K[:, 0]) + 2.0
    w = rng.uniform(0.5, 1.5, size=120)
    w[40:60] = 0.0  # exactly the second key chunk below
    Q = np.concatenate([rng.uniform(0, 10, size=45), [-5.0, 20.0, 30.0]])[:, None]
    dK = da.from_array(K, chunks=((40, 20, 25, 35), 1))
    dV = da.from_array(V, chunks=60)
    dw = da.from_array(w, chunks=((40, 20, 25, 35),))
    dQ = da.from_array(Q, chunks=13)
    got = ndask.attention_pool(dQ, dK, dV, kernel, 0.4, key_weight=dw).compute()
    want = ops.attention_pool(Q, K, V, kernel, 0.4, key_weight=w)
    assert np.isnan(got[-3:]).all()
    assert naive.relative_error(got, want) <= TOL
    assert naive.relative_error(got, naive.pool(Q, K, V, kernel, 0.4, key_weight=w)) <= 1e-10


def test_empty_neighbourhood_warns_on_threads(rng):
    K = rng.uniform(size=(30, 1))
    with dask.config.set(scheduler="sync"), pytest.warns(EmptyNeighborhoodWarning):
        got = ndask.attention_pool(da.from_array(np.array([[0.5], [9.0]]), chunks=1),
                                   da.from_array(K, chunks=7), K[:, 0], "boxcar", 0.8).compute()
    assert np.isnan(got[1]) and not np.isnan(got[0])


def test_float32_stays_float32(rng):
    Q, K, V = (a.astype(np.float32) for a in _data(rng))
    got = ndask.attention_pool(da.from_array(Q, chunks=20), da.from_array(K, chunks=30),
                               da.from_array(V, chunks=30), bandwidth=0.8)
    assert got.dtype == np.float32
    with dask.config.set(scheduler="sync"):
        out = got.compute()
    assert out.dtype == np.float32
    assert naive.relative_error(out, naive.pool(Q, K, V, "gaussian", 0.8)) <= 1e-5


def test_loo_cv_error_and_bandwidth_selection(rng, scheduler):
    X = rng.uniform(size=(80, 2))
    y = np.sin(5 * X[:, 0]) + X[:, 1] + 0.1 * rng.normal(size=80)
    sw = rng.uniform(0.5, 2.0, size=80)
    dX, dy, dsw = (da.from_array(a, chunks=((25, 25, 30),) + a.shape[1:]) for a in (X, y, sw))
    candidates = [0.02, 0.08, 0.3, 1.0]
    want = [naive.loo_cv(X, y, "epanechnikov", h, sw, "mean") for h in candidates]
    got = float(ndask.loo_cv_error(dX, dy, "epanechnikov", 0.3, sample_weight=dsw).compute())
    assert abs(got - want[2]) <= 1e-10 * want[2]
    # 0.02 leaves points without neighbours: they get the "mean" fallback, as in memory
    got = float(ndask.loo_cv_error(dX, dy, "epanechnikov", 0.02, sample_weight=dsw).compute())
    assert np.isfinite(got) and abs(got - want[0]) <= 1e-10 * want[0]
    sel = ndask.select_bandwidth(dX, dy, "epanechnikov", sample_weight=dsw,
                                 candidates=candidates)
    assert isinstance(sel, BandwidthSelection)
    assert sel.bandwidth == candidates[int(np.argmin(want))] and sel.n_evaluations == 4
    assert sel.cv_score == pytest.approx(min(want), rel=1e-10)


class _Ridge:
    """A tiny fitted linear model with two outputs."""

    def __init__(self, coef):
        self.coef = coef

    def predict(self, X):
        return X @ self.coef


def test_predict_helper(rng, scheduler):
    from sklearn.neighbors import KNeighborsRegressor

    X = rng.normal(size=(60, 3))
    y = X.sum(axis=1)
    model = KNeighborsRegressor(n_neighbors=4).fit(X, y)
    Xq = rng.normal(size=(50, 3))
    dXq = da.from_array(Xq, chunks=((11, 30, 9), (2, 1)))
    got = ndask.predict(model, dXq)
    assert got.shape == (50,) and got.chunks == ((11, 30, 9),)
    np.testing.assert_array_equal(got.compute(), model.predict(Xq))
    two = _Ridge(rng.normal(size=(3, 2)))
    got2 = ndask.predict(two, dXq, output_shape=(2,))
    assert got2.chunks == ((11, 30, 9), (2,))
    np.testing.assert_array_equal(got2.compute(), two.predict(Xq))


def test_keys_in_memory_are_scattered_once(rng, cluster_client):
    Q, K, V = _data(rng)
    with cluster_client.as_current(), dask.config.set(scheduler=cluster_client.get):
        got = ndask.attention_pool(da.from_array(Q, chunks=10), K, V)
        # before anything is computed, the keys already sit on both workers, and the
        # graph refers to that copy rather than embedding the array
        # (only keys of this graph: the module's cluster may still hold data
        # of the same size from other tests, on one worker)
        on_workers = {key for key, size in cluster_client.nbytes(summary=False).items()
                      if size == K.nbytes} & set(got.__dask_graph__())
        assert on_workers
        for key in on_workers:
            assert len(cluster_client.who_has()[key]) == 2
        out = got.compute()
    assert naive.relative_error(out, ops.attention_pool(Q, K, V)) <= TOL


def test_bad_input():
    Q = da.ones((5, 2), chunks=2)
    with pytest.raises(ValueError, match="same number of features"):
        ndask.attention_pool(Q, da.ones((4, 3), chunks=2), da.ones(4, chunks=2))
    with pytest.raises(ValueError, match="K and V"):
        ndask.attention_pool(Q, da.ones((4, 2), chunks=2), da.ones(5, chunks=2))
    with pytest.raises(ValueError, match="exclude_self"):
        ndask.attention_pool(Q, da.ones((4, 2), chunks=2), da.ones(4, chunks=2),
                             exclude_self=True)
    with pytest.raises(ValueError, match="bandwidth"):
        ndask.attention_pool(Q, Q, da.ones(5, chunks=2), bandwidth=-1.0)
    with pytest.raises(ValueError, match="kernel"):
        ndask.attention_pool(Q, Q, da.ones(5, chunks=2), kernel="nope")
    with pytest.raises(ValueError, match="split_every"):
        ndask.attention_pool(Q, Q, da.ones(5, chunks=2), split_every=1)
    with pytest.raises(TypeError, match="K must be a real numeric"):
        ndask.attention_pool(Q, da.ones((5, 2), chunks=2, dtype=complex), da.ones(5, chunks=2))
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        ndask.attention_pool(Q[Q[:, 0] > 0], Q, da.ones(5, chunks=2))
    with pytest.raises(ValueError, match="key_weight"):
        ndask.attention_pool(Q, Q, da.ones(5, chunks=2), key_weight=np.ones(4))
    with pytest.raises(ValueError, match="V"):
        bad = da.from_array(np.array([1.0, np.nan, 1.0, 1.0, 1.0]), chunks=2)
        ndask.attention_pool(Q, Q, bad).compute(scheduler="sync")
    with pytest.raises(TypeError, match="dask array"):
        ndask.predict(_Ridge(np.ones(2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="no method"):
        ndask.predict(_Ridge(np.ones(2)), Q, method="transform")
    with pytest.raises(ValueError, match="candidates must contain at least one"):
        ndask.select_bandwidth(Q, da.ones(5, chunks=2), candidates=[])
    with pytest.raises(TypeError, match="candidates="):  # the former positional candidates
        ndask.select_bandwidth(Q, da.ones(5, chunks=2), [0.1, 0.2])
    with pytest.raises(ValueError, match="per_feature"):
        ndask.select_bandwidth(Q, da.ones(5, chunks=2), candidates=[0.1], per_feature=True)
    with pytest.raises(ValueError, match="candidates must be positive"):
        ndask.select_bandwidth(Q, da.ones(5, chunks=2), candidates=[0.1, -1.0])
    with pytest.raises(ValueError, match="fallback"):
        ndask.loo_cv_error(Q, da.ones(5, chunks=2), fallback="nan")
    with pytest.raises(ValueError, match="tol"):
        ndask.select_bandwidth(Q, da.ones(5, chunks=2), tol=0.0)


def test_worker_killed_mid_computation(rng):
    """Losing a worker process in the middle of a pooling: Dask recomputes its share.

    The last query block waits behind a gate (a distributed Event) on one thread
    of one worker, while the other threads pool the first blocks. A worker is
    killed once it holds finished work (the other worker when it has any);
    then the gate opens and the surviving worker must redo the lost work. A
    cluster of its own (two threads per worker, so the gate never stalls a
    worker), because the lost worker does not come back.
    """
    Q = rng.normal(size=(800, 2))
    K = rng.normal(size=(3000, 2))
    V = rng.normal(size=(3000, 2))
    gate_name = f"gate-{rng.integers(1 << 30)}"

    def gate(x):
        distributed.Event(gate_name).wait(timeout=120)
        return x

    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                  silence_logs=50) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client, \
            client.as_current(), dask.config.set(scheduler=client.get):
        gated = da.from_delayed(dask.delayed(gate, pure=False)(Q[600:]), shape=(200, 2),
                                dtype=Q.dtype)
        dQ = da.concatenate([da.from_array(Q[:600], chunks=200), gated])
        got = ndask.attention_pool(dQ, da.from_array(K, chunks=700),
                                   da.from_array(V, chunks=700), "laplacian", 0.5)
        future = client.compute(got)
        pids = client.run(os.getpid)
        deadline = time.monotonic() + 120
        victim = None
        while victim is None and time.monotonic() < deadline:
            time.sleep(0.05)
            gate_worker = [w for w, keys in client.processing().items()
                           if any("gate" in str(k) for k in keys)]
            # Finished work sits in memory as states, partial merges or, once
            # a query block is complete, its finalised rows: all lost with the
            # worker. (Polling can miss the short-lived states and merges.)
            done = [w for w, keys in client.has_what().items()
                    if any(name in str(k) for k in keys
                           for name in ("_state_block", "_merge_block", "_finalize_block"))]
            # Prefer a worker other than the gate's; if the scheduler kept all
            # finished work with the gate (data locality pulls merges there),
            # kill that one: the gate task is then rerun on the survivor too.
            others = [w for w in done if w not in gate_worker]
            victim = (others or done or [None])[0] if gate_worker else None
        assert victim is not None and not future.done()
        os.kill(pids[victim], signal.SIGKILL)
        distributed.Event(gate_name).set()
        out = future.result(timeout=300)
    assert naive.relative_error(out, ops.attention_pool(Q, K, V, "laplacian", 0.5)) <= TOL


def test_graph_has_one_pooling_task_per_block_pair(rng):
    Q, K, V = _data(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # building the graph computes and warns nothing
        got = ndask.attention_pool(da.from_array(Q, chunks=9), da.from_array(K, chunks=13), V,
                                   split_every=4)
    keys = [str(k) for k in got.__dask_graph__()]
    assert sum(k.startswith("_state_block") for k in keys) == 8 * 9
    # 9 states per query block, merged 4 at a time: (4, 4, 1) -> 2 merges, then 1
    assert sum(k.startswith("_merge_block") for k in keys) == 8 * 3


# ------------------------------------------------------------- estimators


def _regression(rng, n=90):
    X = rng.uniform(size=(n, 2))
    y = np.sin(5 * X[:, 0]) + X[:, 1] + 0.1 * rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, size=n)
    w[:5] = 0.0
    # two queries far outside the data: empty neighbourhoods for compact kernels
    Q = np.concatenate([rng.uniform(size=(40, 2)), [[4.0, 4.0], [-3.0, 0.5]]])
    return X, y, w, Q


def _chunked(X, y, w, Q):
    rows = (40, 13, 37)
    return (da.from_array(X, chunks=(rows, (1, 1))), da.from_array(y, chunks=45),
            da.from_array(w, chunks=(rows,)), da.from_array(Q, chunks=((17, 20, 5), 2)))


def _same(got, want, tol=TOL):
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    assert naive.relative_error(got[ok], want[ok]) <= tol


def _same_std(got, want, tol=TOL):
    """Standard deviations from differently ordered sums, compared as variances.

    Near a zero variance the square root is ill-conditioned: a rounding-level
    difference of the variance moves a std of 1e-7 by 1e-10 of the largest.
    """
    _same(np.square(got), np.square(want), tol)


@pytest.mark.parametrize("fallback", ["nan", "mean", "nearest"])
def test_nadaraya_watson_predicts_dask_queries(rng, scheduler, fallback):
    from nwattn import NadarayaWatsonRegressor

    X, y, w, Q = _regression(rng)
    Y = np.c_[y, 2 * y]
    model = NadarayaWatsonRegressor("epanechnikov", 0.2, fallback=fallback)
    model.fit(X, Y, sample_weight=w)
    dQ = _chunked(X, y, w, Q)[3]
    pred, std = model.predict(dQ, return_std=True)
    assert isinstance(pred, da.Array) and pred.chunks == ((17, 20, 5), (2,))
    pred, std = dask.compute(pred, std)
    want, want_std = model.predict(Q, return_std=True)
    assert np.isnan(want[-2:]).all() == (fallback == "nan")
    _same(pred, want)
    _same(std, want_std)


@pytest.mark.parametrize("kernel, bandwidth, fallback", [
    ("gaussian", "cv", "nan"),
    ("epanechnikov", "cv", "nearest"),
    ("biweight", "cv", "mean"),
    ("laplacian", "silverman", "nan"),
    ("boxcar", 0.15, "nearest"),
])
def test_nadaraya_watson_fits_on_dask(rng, scheduler, kernel, bandwidth, fallback):
    from nwattn import NadarayaWatsonRegressor

    X, y, w, Q = _regression(rng)
    dX, dy, dw, dQ = _chunked(X, y, w, Q)
    params = dict(kernel=kernel, bandwidth=bandwidth, fallback=fallback)
    want = NadarayaWatsonRegressor(**params).fit(X, y, sample_weight=w)
    got = NadarayaWatsonRegressor(**params).fit(dX, dy, sample_weight=dw)
    assert isinstance(got.X_fit_, da.Array) and got.X_fit_.chunks[0] == (40, 13, 37)
    np.testing.assert_allclose(got.y_mean_, want.y_mean_, rtol=1e-12)
    assert got.n_features_in_ == 2
    if bandwidth == "cv":
        # the same search on scores equal up to rounding: the bandwidths agree
        # within the search's tolerance, and the score is the one of the
        # bandwidth found (the searches may end a rounding apart).
        assert abs(np.log(got.bandwidth_ / want.bandwidth_)) <= got.tol
        cv_fallback = "nearest" if fallback == "nearest" else "mean"
        assert got.cv_score_ == pytest.approx(
            loo_cv_score(X, y, kernel, got.bandwidth_, sample_weight=w, fallback=cv_fallback),
            rel=1e-10)
    else:
        np.testing.assert_allclose(got.bandwidth_, want.bandwidth_, rtol=1e-12)
    # predictions of the distributed fit, with the in-memory bandwidth, for in-memory
    # and Dask queries
    got.bandwidth_ = want.bandwidth_
    pred, std = got.predict(dQ, return_std=True)
    assert isinstance(pred, da.Array)
    want_pred, want_std = want.predict(Q, return_std=True)
    pred, std, pred2 = dask.compute(pred, std, got.predict(Q))
    _same(pred, want_pred)
    _same(pred2, want_pred)
    _same_std(std, want_std, 1e-10)


def test_nadaraya_watson_dask_fit_multi_output_float32_and_dot(rng):
    from nwattn import NadarayaWatsonRegressor

    X, y, _, Q = _regression(rng)
    Y = np.c_[y, y ** 2]
    with dask.config.set(scheduler="threads"):
        want = NadarayaWatsonRegressor("scaled_dot").fit(X, Y)
        got = NadarayaWatsonRegressor("scaled_dot").fit(da.from_array(X, chunks=25),
                                                        da.from_array(Y, chunks=(30, 1)))
        assert abs(np.log(got.bandwidth_ / want.bandwidth_)) <= got.tol
        assert got.cv_score_ == pytest.approx(
            loo_cv_score(X, Y, "scaled_dot", got.bandwidth_), rel=1e-10)
        got.bandwidth_ = want.bandwidth_
        _same(got.predict(Q).compute(), want.predict(Q))
        X32 = X.astype(np.float32)
        y32 = y.astype(np.float32)
        model = NadarayaWatsonRegressor(bandwidth=0.3).fit(da.from_array(X32, chunks=30), y32)
        assert model.X_fit_.dtype == np.float32
        pred = model.predict(da.from_array(X32, chunks=30)).compute()
        want = NadarayaWatsonRegressor(bandwidth=0.3).fit(X32, y32).predict(X32)
        assert pred.dtype == want.dtype
        np.testing.assert_allclose(pred, want, rtol=1e-5, atol=1e-6)


def test_nadaraya_watson_dask_warns_for_empty_neighbourhoods(rng):
    from nwattn import NadarayaWatsonRegressor

    X, y, _, Q = _regression(rng)
    # queries at training points (never empty) and the two far ones (empty);
    # random queries near a corner of the unit square can find no point in 0.2
    Q = np.concatenate([X[:40], Q[-2:]])
    model = NadarayaWatsonRegressor("boxcar", 0.2).fit(da.from_array(X, chunks=30), y)
    with dask.config.set(scheduler="sync"), pytest.warns(EmptyNeighborhoodWarning):
        pred = model.predict(Q).compute()
    assert np.isnan(pred[-2:]).all() and not np.isnan(pred[:-2]).any()


def test_nadaraya_watson_dask_bad_input(rng):
    from nwattn import NadarayaWatsonRegressor

    X, y, w, Q = _regression(rng)
    dX, dy, dw, _ = _chunked(X, y, w, Q)
    with dask.config.set(scheduler="sync"):
        bad = X.copy()
        bad[50, 1] = np.nan
        with pytest.raises(ValueError, match="X must be finite"):
            NadarayaWatsonRegressor(bandwidth=0.2).fit(da.from_array(bad, chunks=30), dy)
        with pytest.raises(ValueError, match="sample_weight must be non-negative"):
            NadarayaWatsonRegressor(bandwidth=0.2).fit(dX, dy, sample_weight=dw - 1.0)
        with pytest.raises(ValueError, match="same number of rows"):
            NadarayaWatsonRegressor(bandwidth=0.2).fit(dX, dy[:-1])
        with pytest.raises(ValueError, match="attention score"):
            NadarayaWatsonRegressor("dot", bandwidth="scott").fit(dX, dy)
        model = NadarayaWatsonRegressor(bandwidth=0.2).fit(dX, dy)
        with pytest.raises(ValueError, match="expecting 2 features"):
            model.predict(da.ones((4, 3), chunks=2))


def test_attention_regressor_predicts_dask_queries(rng, scheduler):
    from nwattn import AttentionRegressor

    X, y, _, Q = _regression(rng)
    dQ = _chunked(X, y, y, Q)[3]
    for kernel, target in [("rbf", y), ("additive", np.c_[y, -y])]:
        model = AttentionRegressor(kernel, max_iter=3, random_state=0).fit(X, target)
        pred, std = model.predict(dQ, return_std=True)
        assert pred.shape == (Q.shape[0],) + target.shape[1:]
        want, want_std = model.predict(Q, return_std=True)
        pred, std = dask.compute(pred, std)
        _same(pred, want)
        _same(std, want_std)
        _same(model.predict(dQ).compute(), want)
    # the output shape found from the first row
    pred, std = ndask.predict(model, dQ, return_std=True)
    assert pred.chunks == ((17, 20, 5), (2,)) and std.chunks == pred.chunks
    _same(std.compute(), want_std)
    with pytest.raises(ValueError, match="expecting 2 features"):
        model.predict(da.ones((4, 3), chunks=2))


@pytest.mark.parametrize("kernel, fallback", [("gaussian", "mean"), ("epanechnikov", "nearest"),
                                              ("scaled_dot", "mean")])
def test_leave_one_out_gradient_from_key_chunks(rng, kernel, fallback):
    """The slope accumulators merged over key chunks give the in-memory score and gradient."""

    X = rng.uniform(size=(100, 3)) * [1.0, 4.0, 1.0]
    y = np.c_[np.sin(5 * X[:, 0]) + X[:, 1], X[:, 2]] + 0.1 * rng.normal(size=(100, 2))
    w = rng.uniform(0.5, 2.0, size=100)
    w[:3] = 0.0
    rows = ((35, 9, 56),)
    dX, dy = da.from_array(X, chunks=rows + (3,)), da.from_array(y, chunks=rows + (2,))
    dw = da.from_array(w, chunks=rows)
    h = np.array([0.25, 1.0, 0.35])
    with dask.config.set(scheduler="threads"):
        problem = _DaskLooProblem(dX, dy, dw, get_kernel(kernel), fallback,
                                  moments(dX, dy, dw), "cpu", 3)
        score, grad = problem.value_and_gradient(h)
        value = problem.value(h)
    want, want_grad = loo_cv_score(X, y, kernel, h, sample_weight=w, fallback=fallback,
                                   return_gradient=True)
    assert score == pytest.approx(want, rel=1e-12) and value == pytest.approx(want, rel=1e-12)
    assert naive.relative_error(grad, want_grad) <= 1e-12
    # and a finite difference of the score, as a reference independent of the slope pass
    eps = 1e-6
    for t in range(3):
        step = np.exp(eps * np.eye(3)[t])
        fd = (loo_cv_score(X, y, kernel, h * step, sample_weight=w, fallback=fallback)
              - loo_cv_score(X, y, kernel, h / step, sample_weight=w, fallback=fallback))
        assert grad[t] == pytest.approx(fd / (2 * eps), rel=1e-4, abs=1e-8)


def test_nadaraya_watson_per_feature_bandwidth_on_dask(rng, scheduler):
    from nwattn import NadarayaWatsonRegressor

    X, y, w, Q = _regression(rng)
    X = X * [1.0, 30.0]  # the second feature on another scale
    dX, dy, dw, _ = _chunked(X, y, w, Q)
    params = dict(kernel="gaussian", bandwidth_per_feature=True)
    want = NadarayaWatsonRegressor(**params).fit(X, y, sample_weight=w)
    got = NadarayaWatsonRegressor(**params).fit(dX, dy, sample_weight=dw)
    assert got.bandwidth_.shape == (2,)
    np.testing.assert_allclose(got.bandwidth_, want.bandwidth_, rtol=1e-6)
    assert got.cv_score_ == pytest.approx(
        loo_cv_score(X, y, "gaussian", got.bandwidth_, sample_weight=w), rel=1e-10)


# ------------------------------------- leave-one-out: one definition everywhere


def _loo_data(rng, n=70, p=3):
    X = rng.uniform(size=(n, 2)) * [1.0, 3.0]
    Y = np.c_[np.sin(5 * X[:, 0]), X[:, 1], X[:, 0] * X[:, 1]][:, :p]
    Y = Y + 0.1 * rng.normal(size=Y.shape)
    w = rng.uniform(0.5, 2.0, size=n)
    w[[3, n // 2]] = 0.0
    return X, Y, w


def _dask_rows(*arrays, rows=(20, 0, 31, 19)):
    """Dask arrays cut into uneven row chunks, one of them empty."""
    return [da.from_array(a, chunks=(rows,) + a.shape[1:]) for a in arrays]


@pytest.mark.parametrize("kernel, h, fallback", [
    ("gaussian", 0.3, "mean"),
    ("biweight", 0.25, "nearest"),
    ("scaled_dot", 2.0, "mean"),
    # 0.08 leaves some points of the unit square alone in their box
    ("boxcar", 0.08, "mean"),
    ("boxcar", 0.08, "nearest"),
])
def test_loo_cv_error_equals_the_in_memory_score(rng, scheduler, kernel, h, fallback):
    X, Y, w = _loo_data(rng)
    dX, dY, dw = _dask_rows(X, Y, w)
    got = ndask.loo_cv_error(dX, dY, kernel, h, sample_weight=dw, fallback=fallback,
                             split_every=2)
    assert isinstance(got, da.Array) and got.shape == ()
    got = float(got.compute())
    want = loo_cv_score(X, Y, kernel, h, sample_weight=w, fallback=fallback)
    assert got == pytest.approx(want, rel=1e-12)
    if kernel == "boxcar":
        # isolated points exist, and the refitting reference agrees with both
        state = ops.attention_pool_state(X, X, Y, kernel, h, key_weight=w, exclude_self=True)
        assert state.n_empty > 0
        assert got == pytest.approx(naive.loo_cv(X, Y, kernel, h, w, fallback), rel=1e-11)


@pytest.mark.parametrize("w_scale", [1e307, 1e-300])
@pytest.mark.parametrize("k", [0, 700, -700])
def test_loo_with_weights_and_targets_at_any_scale(rng, w_scale, k):
    """Weights matter by their ratios and targets by their units, as in memory:
    weights of 1e307 sum past float64, targets of 2**700 square past it."""
    X, Y, w = _loo_data(rng, p=2)
    Yk = np.ldexp(Y, k)
    dX, dY, dw = _dask_rows(X, Yk, w * w_scale)
    with dask.config.set(scheduler="threads"):
        got = float(ndask.loo_cv_error(dX, dY, "epanechnikov", 0.4, sample_weight=dw).compute())
        sel = ndask.select_bandwidth(dX, dY, "gaussian", sample_weight=dw)
        picked = ndask.select_bandwidth(dX, dY, "gaussian", sample_weight=dw,
                                        candidates=[0.1, 0.2])
    with np.errstate(over="ignore", under="ignore"):
        want = np.ldexp(loo_cv_score(X, Y, "epanechnikov", 0.4, sample_weight=w), 2 * k)
        ref = select_bandwidth(X, Y, "gaussian", sample_weight=w)
        assert got == pytest.approx(want, rel=1e-12)
        assert sel.bandwidth == pytest.approx(ref.bandwidth, rel=1e-6)
        assert sel.cv_score == pytest.approx(np.ldexp(ref.cv_score, 2 * k), rel=1e-6)
        assert picked.cv_score == pytest.approx(
            np.ldexp(loo_cv_score(X, Y, "gaussian", picked.bandwidth, sample_weight=w), 2 * k),
            rel=1e-12)


@pytest.mark.parametrize("rows", [(2, 2, 2), (4, 2), (6,), (1, 0, 5)])
def test_loo_mean_fallback_with_one_dominant_weight(rows):
    """A point heavier than all the others by more than float64's precision:
    its mean of the others comes from their own sums, in every chunking."""
    X = np.arange(6.0)[:, None]
    y = np.arange(6.0)
    w = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1e17])
    dX, dy, dw = _dask_rows(X, y, w, rows=rows)
    with dask.config.set(scheduler="sync"):
        got = float(ndask.loo_cv_error(dX, dy, "epanechnikov", 0.5, sample_weight=dw).compute())
        sel = ndask.select_bandwidth(dX, dy, "epanechnikov", sample_weight=dw,
                                     candidates=[0.5, 0.7])
    want = naive.loo_cv(X, y, "epanechnikov", 0.5, w)
    assert got == pytest.approx(want, rel=1e-9)
    assert sel.cv_score == pytest.approx(want, rel=1e-9)


def test_loo_score_sums_the_squared_errors_over_the_outputs(rng):
    X, Y, w = _loo_data(rng, p=2)
    dX, dY, dw = _dask_rows(X, Y, w)
    with dask.config.set(scheduler="threads"):
        both = float(ndask.loo_cv_error(dX, dY, "epanechnikov", 0.4, sample_weight=dw).compute())
        each = [float(ndask.loo_cv_error(dX, dY[:, j], "epanechnikov", 0.4,
                                         sample_weight=dw).compute()) for j in range(2)]
    assert both == pytest.approx(sum(each), rel=1e-12)
    assert both == pytest.approx(loo_cv_score(X, Y, "epanechnikov", 0.4, sample_weight=w),
                                 rel=1e-12)


def test_loo_cv_error_without_weights_and_in_memory_inputs(rng):
    X, Y, _ = _loo_data(rng, p=1)
    with dask.config.set(scheduler="sync"):
        got = float(ndask.loo_cv_error(X, Y[:, 0], "laplacian", [0.2, 0.5]).compute())
    assert got == pytest.approx(loo_cv_score(X, Y[:, 0], "laplacian", [0.2, 0.5]), rel=1e-12)


def test_loo_cv_error_checks_the_data_when_computed(rng):
    X, Y, w = _loo_data(rng, p=1)
    dX, dY, dw = _dask_rows(X, Y, w)
    bad = Y.copy()
    bad[50] = np.nan
    with dask.config.set(scheduler="sync"):
        with pytest.raises(ValueError, match="y must be finite"):
            ndask.loo_cv_error(dX, _dask_rows(bad)[0]).compute()
        with pytest.raises(ValueError, match="sample_weight must be non-negative"):
            ndask.loo_cv_error(dX, dY, sample_weight=dw - 1.0).compute()
        one = np.eye(1, 70, 5)[0]
        with pytest.raises(ValueError, match="at least 2 samples with positive weight"):
            ndask.loo_cv_error(dX, dY, sample_weight=_dask_rows(one)[0]).compute()
        with pytest.raises(ValueError, match="at least 2 samples with positive weight"):
            ndask.select_bandwidth(dX, dY, sample_weight=_dask_rows(one)[0])


@pytest.mark.parametrize("kernel, per_feature, fallback", [
    ("gaussian", False, "mean"),
    ("epanechnikov", False, "nearest"),
    ("laplacian", True, "mean"),
    # isolated points; (per feature, Powell's search on this piecewise constant
    # score can end on another plateau for starts a rounding apart)
    ("boxcar", False, "nearest"),
])
def test_selected_bandwidths_agree_with_memory(rng, kernel, per_feature, fallback):
    X, Y, w = _loo_data(rng, n=60, p=2)
    dX, dY, dw = _dask_rows(X, Y, w, rows=(25, 0, 35))
    want = select_bandwidth(X, Y, kernel, per_feature=per_feature, sample_weight=w,
                            fallback=fallback)
    with dask.config.set(scheduler="threads"):
        got = ndask.select_bandwidth(dX, dY, kernel, per_feature=per_feature, sample_weight=dw,
                                     fallback=fallback)
    assert isinstance(got, BandwidthSelection)
    assert np.shape(got.bandwidth) == np.shape(want.bandwidth)
    assert isinstance(got.bandwidth, float) == (not per_feature)
    # the same search on scores equal to rounding
    assert got.cv_score == pytest.approx(
        loo_cv_score(X, Y, kernel, got.bandwidth, sample_weight=w, fallback=fallback),
        rel=1e-10)
    assert got.cv_score == pytest.approx(want.cv_score, rel=1e-6)
    if kernel != "boxcar":  # a piecewise constant score has flat stretches: any point of one
        np.testing.assert_allclose(np.log(got.bandwidth), np.log(want.bandwidth),
                                   atol=10 * got.n_evaluations * 1e-4)


def test_select_bandwidth_among_per_feature_candidates(rng):
    X, Y, w = _loo_data(rng, n=50, p=1)
    dX, dY, dw = _dask_rows(X, Y, w, rows=(20, 30))
    candidates = [[0.1, 0.3], 0.2, np.array([0.3, 0.1]), [0.05, 0.05]]
    scores = [loo_cv_score(X, Y, "tricube", h, sample_weight=w) for h in candidates]
    with dask.config.set(scheduler="threads"):
        sel = ndask.select_bandwidth(dX, dY, "tricube", sample_weight=dw, candidates=candidates)
    best = int(np.argmin(scores))
    np.testing.assert_array_equal(sel.bandwidth, np.asarray(candidates[best], dtype=float))
    assert sel.cv_score == pytest.approx(scores[best], rel=1e-12)


# ---------------------------------------------------------------- devices


def test_device_name_is_checked_on_the_client(rng):
    from nwattn import NadarayaWatsonRegressor

    Q = da.ones((5, 2), chunks=2)
    y = da.ones(5, chunks=2)
    for call in (lambda: ndask.attention_pool(Q, Q, y, device="gpu"),
                 lambda: ndask.loo_cv_error(Q, y, device="tpu"),
                 lambda: ndask.select_bandwidth(Q, y, device=None)):
        with pytest.raises(ValueError, match="device must be one of"):
            call()
    # the gradient of a per-feature search has no GPU kernel: refused before any compute
    X, Y, _ = _loo_data(rng)
    dX, dY = _dask_rows(X, Y)
    with pytest.raises(ValueError, match="device='cpu' or 'auto'"):
        ndask.select_bandwidth(dX, dY, per_feature=True, device="cuda")
    model = NadarayaWatsonRegressor(bandwidth_per_feature=True, device="cuda")
    with pytest.raises(ValueError, match="device='cpu' or 'auto'"):
        model.fit(dX, dY)


def test_device_auto_is_honoured_on_the_workers(rng):
    from nwattn import NadarayaWatsonRegressor

    X, Y, w = _loo_data(rng, n=40)
    dX, dY, dw = _dask_rows(X, Y, w, rows=(15, 25))
    with dask.config.set(scheduler="threads"):
        # "auto" picks the CPU for blocks this small, whatever the machine
        got = ndask.attention_pool(dX, dX, dY, "epanechnikov", 0.4, key_weight=dw,
                                   device="auto").compute()
        model = NadarayaWatsonRegressor(bandwidth="cv", device="auto").fit(dX, dY,
                                                                           sample_weight=dw)
        pred = model.predict(dX).compute()
    assert naive.relative_error(got, ops.attention_pool(X, X, Y, "epanechnikov", 0.4,
                                                        key_weight=w)) <= TOL
    want = NadarayaWatsonRegressor(bandwidth=model.bandwidth_).fit(X, Y, sample_weight=w)
    _same(pred, want.predict(X))


@pytest.mark.skipif(_cuda_problem() is not None, reason="the GPU path cannot run here")
def test_device_cuda_pools_on_the_workers(rng):
    """On the GPU (or numba-cuda's simulator): tiny blocks, the CPU result."""
    Q, K, V = _data(rng, n=6, m=9, d=2, p=2)
    dQ = da.from_array(Q, chunks=((4, 2), 2))
    dK, dV = da.from_array(K, chunks=((5, 4), 2)), da.from_array(V, chunks=((5, 4), 2))
    # one thread: numba-cuda's simulator runs a kernel in the calling thread only
    with dask.config.set(scheduler="sync"):
        got = ndask.attention_pool(dQ, dK, dV, "epanechnikov", 1.5, device="cuda").compute()
    want = ops.attention_pool(Q, K, V, "epanechnikov", 1.5)
    assert naive.relative_error(got, want) <= 1e-10


# ------------------------------------------------ blocks of no rows, zero weights


def test_per_feature_fit_with_an_empty_block(rng):
    from nwattn import NadarayaWatsonRegressor

    X, Y, w = _loo_data(rng, n=50, p=1)
    params = dict(kernel="gaussian", bandwidth_per_feature=True)
    with dask.config.set(scheduler="threads"):
        got = NadarayaWatsonRegressor(**params).fit(*_dask_rows(X, Y[:, 0], rows=(20, 0, 30)))
        want = NadarayaWatsonRegressor(**params).fit(*_dask_rows(X, Y[:, 0], rows=(20, 30)))
    np.testing.assert_allclose(got.bandwidth_, want.bandwidth_, rtol=1e-6)
    assert got.cv_score_ == pytest.approx(loo_cv_score(X, Y[:, 0], "gaussian", got.bandwidth_),
                                          rel=1e-10)


def test_predictions_on_an_empty_block(rng):
    from nwattn import AttentionRegressor, NadarayaWatsonRegressor

    X, Y, _ = _loo_data(rng, n=40, p=2)
    Q = rng.uniform(size=(12, 2))
    dQ = da.from_array(Q, chunks=((5, 0, 7), 2))
    attention = AttentionRegressor(max_iter=2, random_state=0).fit(X, Y)
    nw = NadarayaWatsonRegressor("epanechnikov", 0.3, fallback="nearest").fit(X, Y)
    with dask.config.set(scheduler="threads"):
        pred, std = attention.predict(dQ, return_std=True)
        assert pred.chunks == ((5, 0, 7), (2,))
        want, want_std = attention.predict(Q, return_std=True)
        _same(pred.compute(), want)
        _same(std.compute(), want_std)
        for model in (attention, nw):
            got = ndask.predict(model, dQ)
            assert got.chunks == ((5, 0, 7), (2,))
            _same(got.compute(), model.predict(Q))
        got = ndask.predict(nw, dQ[:, :], output_shape=(2,), return_std=True)
        _same(got[1].compute(), nw.predict(Q, return_std=True)[1])
        _same(nw.predict(dQ).compute(), nw.predict(Q))
        with pytest.raises(ValueError, match="output_shape"):
            ndask.predict(nw, dQ[:0])


def test_all_zero_key_weights_raise_as_in_memory(rng):
    from nwattn import NadarayaWatsonRegressor

    Q, K, V = _data(rng)
    zero = np.zeros(K.shape[0])
    with pytest.raises(ValueError, match="key_weight must have at least one positive") as mem:
        ops.attention_pool(Q, K, V, "epanechnikov", 1.0, key_weight=zero)
    got = ndask.attention_pool(*_layout("both", Q, K, V), "epanechnikov", 1.0,
                               key_weight=da.from_array(zero, chunks=30))
    with dask.config.set(scheduler="sync"), warnings.catch_warnings():
        warnings.simplefilter("error")  # an error, not NaN with a warning
        with pytest.raises(ValueError, match="key_weight must have at least one positive") \
                as on_dask:
            got.compute()
    assert str(on_dask.value) == str(mem.value)
    with dask.config.set(scheduler="sync"):
        with pytest.raises(ValueError, match="sample_weight must have a positive sum"):
            NadarayaWatsonRegressor(bandwidth=0.5).fit(da.from_array(K, chunks=30), V[:, 0],
                                                       sample_weight=zero)


# ------------------------------------------------------------- the hand-off


def test_dask_fit_returns_the_fitted_quantities_without_touching_the_estimator(rng):
    from nwattn import NadarayaWatsonRegressor
    from nwattn.dask.estimators import NadarayaWatsonFit, nadaraya_watson_fit

    X, Y, w = _loo_data(rng, n=40, p=1)
    dX, dy, dw = _dask_rows(X, Y[:, 0], w, rows=(15, 25))
    model = NadarayaWatsonRegressor("epanechnikov", "cv", fallback="nearest")
    with dask.config.set(scheduler="threads"):
        fit = nadaraya_watson_fit(model, dX, dy, dw)
    assert isinstance(fit, NadarayaWatsonFit)
    assert not [name for name in vars(model) if name.endswith("_")]
    assert fit.cv_score == pytest.approx(
        loo_cv_score(X, Y[:, 0], "epanechnikov", fit.bandwidth, sample_weight=w,
                     fallback="nearest"), rel=1e-10)
    assert fit.X.chunks == ((15, 25), (2,)) and fit.n_features == 2
    np.testing.assert_allclose(fit.y_mean, [np.average(Y[:, 0], weights=w)], rtol=1e-12)


def test_select_bandwidth_reports_each_evaluation(rng, capsys):
    X, Y, w = _loo_data(rng, p=1)
    dX, dY, dw = _dask_rows(X, Y, w)
    with dask.config.set(scheduler="sync"):
        sel = ndask.select_bandwidth(dX, dY, "gaussian", sample_weight=dw, verbose=1)
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == sel.n_evaluations + 1
        assert lines[0].startswith("[select_bandwidth] evaluation 1  h=")
        assert f"after {sel.n_evaluations} evaluations" in lines[-1]
        picked = ndask.select_bandwidth(dX, dY, sample_weight=dw, candidates=[0.1, 0.3],
                                        verbose=1)
        lines = capsys.readouterr().err.strip().splitlines()
        assert [line.split("  ")[1] for line in lines[:2]] == ["h=0.1", "h=0.3"]
        assert lines[-1].startswith(f"[select_bandwidth] selected h={picked.bandwidth:.4g}")
        assert ndask.select_bandwidth(dX, dY, sample_weight=dw, candidates=[0.1]).bandwidth \
            == 0.1
        assert capsys.readouterr().err == ""
        from nwattn import NadarayaWatsonRegressor
        NadarayaWatsonRegressor(verbose=1).fit(dX, dY[:, 0], sample_weight=dw)
        assert "evaluation 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="verbose"):
        ndask.select_bandwidth(dX, dY, verbose=-1)

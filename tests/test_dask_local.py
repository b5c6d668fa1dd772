"""Local polynomial regression on Dask arrays equals the in-memory fit."""

import warnings

import numpy as np
import pytest

dask = pytest.importorskip("dask", reason="the dask extra is not installed")
da = pytest.importorskip("dask.array", reason="the dask extra is not installed")

from nwattn import dask as ndask  # noqa: E402
from nwattn import neighbors, ops  # noqa: E402
from nwattn.dask import local as dlocal  # noqa: E402
from nwattn.state import SingularDesignWarning  # noqa: E402

from . import naive  # noqa: E402

#: float64 results of the Dask path against the in-memory path, by degree:
#: the merged moments differ from the in-memory ones by rounding, which the
#: solve of the local design magnifies by its condition number (higher for
#: a higher degree; in memory, reordering the keys moves degree 2 by ~1e-11).
TOL = {0: 1e-12, 1: 1e-10, 2: 1e-8}

#: Chunkings that do not divide the row counts evenly.
Q_CHUNKS = (23, 30, 7, 10)  # 70 queries
K_CHUNKS = (41, 3, 50, 16)  # 110 keys

pytestmark = pytest.mark.filterwarnings("ignore::nwattn.exceptions.EmptyNeighborhoodWarning")


@pytest.fixture(autouse=True)
def threads():
    with dask.config.set(scheduler="threads"):
        yield


def _data(rng, n=70, m=110, d=2, p=2):
    K = rng.uniform(-1, 1, size=(m, d))
    Q = rng.uniform(-0.9, 0.9, size=(n, d))
    f = np.sin(2 * K[:, 0]) + K[:, -1] ** 2
    noise = 0.1 * rng.normal(size=(m, max(p, 1)))
    V = (f[:, None] * np.arange(1, max(p, 1) + 1) + noise + 3.0)
    return Q, K, (V if p else V[:, 0])


def _layout(layout, Q, K, V):
    """Dask arrays for a layout: which of queries and keys are sharded."""
    if layout == "one chunk":
        return (da.from_array(Q, chunks=-1), da.from_array(K, chunks=-1),
                da.from_array(V, chunks=-1))
    dQ = da.from_array(Q, chunks=(Q_CHUNKS, 1)) if layout != "keys" else Q
    if layout == "queries":
        return dQ, K, V
    dK = da.from_array(K, chunks=(K_CHUNKS, 1))
    dV = da.from_array(V, chunks=((17, 60, 33),) + V.shape[1:])  # realigned to K's chunks
    return dQ, dK, dV


def _close(got, want, degree):
    assert naive.relative_error(got, want) <= TOL[degree]


@pytest.mark.parametrize("layout", ["keys", "queries", "both", "one chunk"])
@pytest.mark.parametrize("degree", [0, 1, 2])
def test_matches_in_memory(rng, layout, degree):
    Q, K, V = _data(rng)
    got = ndask.local_polynomial(*_layout(layout, Q, K, V), "gaussian", 0.5, degree=degree,
                                 split_every=3)
    assert isinstance(got, da.Array)
    assert got.chunks[0] == (Q_CHUNKS if layout in ("queries", "both") else (70,))
    want = ops.local_polynomial(Q, K, V, "gaussian", 0.5, degree=degree)
    _close(got.compute(), want, degree)


@pytest.mark.parametrize("degree", [1, 2])
@pytest.mark.parametrize("p", [0, 1, 3])
def test_gradient_and_outputs(rng, degree, p):
    Q, K, V = _data(rng, d=3, p=p)
    dQ = da.from_array(Q, chunks=((20, 50), 3))
    dK = da.from_array(K, chunks=((30, 30, 50), 3))
    pred, grad = ndask.local_polynomial(dQ, dK, V, "epanechnikov", 1.2, degree=degree,
                                        return_gradient=True, split_every=2)
    assert grad.chunks[0] == (20, 50)
    pred, grad = dask.compute(pred, grad)
    want, want_grad = ops.local_polynomial(Q, K, V, "epanechnikov", 1.2, degree=degree,
                                           return_gradient=True)
    assert pred.shape == want.shape and grad.shape == want_grad.shape
    _close(pred, want, degree)
    # slopes are differences of the fit: a looser yardstick than the values
    assert naive.relative_error(grad, want_grad) <= 100 * TOL[degree]


@pytest.mark.parametrize("degree", [0, 1, 2])
def test_weights_per_feature_bandwidth_and_leave_one_out(rng, degree):
    X = rng.uniform(-1, 1, size=(90, 2))
    y = np.cos(3 * X[:, 0]) + X[:, 1] + 0.1 * rng.normal(size=90) + 5.0
    w = rng.uniform(0.5, 2.0, size=90)
    h = np.array([0.6, 0.9])
    # queries and keys are the same rows, chunked differently
    dXq = da.from_array(X, chunks=((31, 40, 19), 2))
    dXk = da.from_array(X, chunks=((12, 60, 18), (1, 1)))
    dw = da.from_array(w, chunks=45)
    got = ndask.local_polynomial(dXq, dXk, y, "biweight", h, degree=degree, key_weight=dw,
                                 exclude_self=True)
    want = ops.local_polynomial(X, X, y, "biweight", h, degree=degree, key_weight=w,
                                exclude_self=True)
    _close(got.compute(), want, degree)


@pytest.mark.parametrize("split_every", [2, 3, None])
def test_split_every_and_many_key_chunks(rng, split_every):
    Q, K, V = _data(rng, p=1)
    dK = da.from_array(K, chunks=(11, 2))  # 10 key chunks: a tree of depth 2 to 4
    got = ndask.local_polynomial(da.from_array(Q, chunks=35), dK, V, "tricube", 0.8,
                                 degree=2, split_every=split_every)
    _close(got.compute(), ops.local_polynomial(Q, K, V, "tricube", 0.8, degree=2), 2)


def test_graph_has_one_moments_task_per_block_pair(rng):
    Q, K, V = _data(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # building the graph computes and warns nothing
        got = ndask.local_polynomial(da.from_array(Q, chunks=9), da.from_array(K, chunks=13),
                                     V, split_every=4)
    keys = [str(k) for k in got.__dask_graph__()]
    assert sum(k.startswith("_local_block") for k in keys) == 8 * 9
    # 9 states per query block, merged 4 at a time: (4, 4, 1) -> 2 merges, then 1
    assert sum(k.startswith("_merge_block") for k in keys) == 8 * 3
    assert sum(k.startswith("_solve_block") for k in keys) == 8


def test_float32_and_empty_blocks(rng):
    Q, K, V = (a.astype(np.float32) for a in _data(rng))
    dQ = da.from_array(Q, chunks=((30, 0, 40), 2))
    dK = da.from_array(K, chunks=((50, 0, 60), 2))
    got = ndask.local_polynomial(dQ, dK, V, "gaussian", 0.5)
    assert got.dtype == np.float64  # as in memory: the solve is in float64
    out = got.compute()
    assert out.dtype == np.float64
    want = ops.local_polynomial(Q, K, V, "gaussian", 0.5)
    assert naive.relative_error(out, want) <= 1e-5


def test_compact_kernel_chunks_outside_the_support_and_zero_weights(rng):
    """Sorted 1-D keys: most (query block, key chunk) states are empty and one
    chunk has zero key weights."""
    K = np.sort(rng.uniform(0, 10, size=120))[:, None]
    V = np.sin(K[:, 0]) + 2.0
    w = rng.uniform(0.5, 1.5, size=120)
    w[40:60] = 0.0  # exactly the second key chunk below
    Q = rng.uniform(0.5, 9.5, size=45)[:, None]
    dK = da.from_array(K, chunks=((40, 20, 25, 35), 1))
    dw = da.from_array(w, chunks=((40, 20, 25, 35),))
    got = ndask.local_polynomial(da.from_array(Q, chunks=13), dK, da.from_array(V, chunks=60),
                                 "epanechnikov", 1.5, key_weight=dw)
    want = ops.local_polynomial(Q, K, V, "epanechnikov", 1.5, key_weight=w)
    _close(got.compute(), want, 1)


# ------------------------------------------------------------------ span


@pytest.mark.parametrize("route", ["sharded", "gathered"])
@pytest.mark.parametrize("span", [0.05, 0.3, 1.0, 1.7])
def test_span_radius_equals_in_memory(rng, monkeypatch, route, span):
    if route == "gathered":
        monkeypatch.setattr(dlocal, "SHARDED_SPAN_NEIGHBORS", 0)
    Q, K, _ = _data(rng)
    K[7] = K[3]  # ties count once each, as in memory
    dQ = da.from_array(Q, chunks=(Q_CHUNKS, 2))
    dK = da.from_array(K, chunks=((41, 0, 53, 16), 2))
    got = ndask.span_radius(dQ, dK, span, split_every=2)
    assert got.chunks == (Q_CHUNKS,)
    want = neighbors.span_radius(Q, K, span)
    assert naive.relative_error(got.compute(), want) <= 1e-14


def test_span_radius_floor_for_queries_on_duplicated_keys(rng):
    K = np.repeat(rng.uniform(size=(10, 1)), 5, axis=0)  # every key five times
    got = ndask.span_radius(da.from_array(K[:7], chunks=3), da.from_array(K, chunks=8), 0.08)
    want = neighbors.span_radius(K[:7], K, 0.08)  # 4 nearest: all on the query
    np.testing.assert_array_equal(got.compute(), want)
    assert (want > 0).all()


@pytest.mark.parametrize("route", ["sharded", "gathered"])
@pytest.mark.parametrize("degree", [1, 2])
def test_span_matches_in_memory(rng, monkeypatch, route, degree):
    if route == "gathered":
        monkeypatch.setattr(dlocal, "SHARDED_SPAN_NEIGHBORS", 0)
    Q, K, V = _data(rng)
    pred, grad = ndask.local_polynomial(*_layout("both", Q, K, V), "tricube", span=0.4,
                                        degree=degree, return_gradient=True, split_every=3)
    pred, grad = dask.compute(pred, grad)
    want, want_grad = ops.local_polynomial(Q, K, V, "tricube", span=0.4, degree=degree,
                                           return_gradient=True)
    _close(pred, want, degree)
    assert naive.relative_error(grad, want_grad) <= 100 * TOL[degree]


def test_span_with_leave_one_out_and_weights(rng):
    X = rng.uniform(size=(80, 2))
    y = X[:, 0] ** 2 - X[:, 1] + 0.05 * rng.normal(size=80)
    w = rng.uniform(0.2, 1.0, size=80)
    got = ndask.local_polynomial(da.from_array(X, chunks=25), da.from_array(X, chunks=30), y,
                                 "tricube", 123.0, span=0.5, key_weight=w, exclude_self=True)
    want = ops.local_polynomial(X, X, y, "tricube", span=0.5, key_weight=w, exclude_self=True)
    _close(got.compute(), want, 1)


# ------------------------------------------------------------ singular designs


def _clustered(rng):
    """1-D keys in two clusters; query 1 sees two distinct points, too few for degree 2."""
    K = np.concatenate([rng.uniform(0, 1, size=30), [4.9, 4.9, 5.1, 5.1]])[:, None]
    V = np.concatenate([rng.normal(size=30), [1.0, 1.0, 2.0, 2.0]])
    Q = np.array([[0.5], [5.0], [0.2]])
    return Q, K, V


def test_singular_designs_warn_when_computed(rng):
    Q, K, V = _clustered(rng)
    dQ, dK = da.from_array(Q, chunks=1), da.from_array(K, chunks=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # building the graph warns nothing
        got = ndask.local_polynomial(dQ, dK, V, "epanechnikov", 1.0, degree=2)
    with dask.config.set(scheduler="sync"), pytest.warns(SingularDesignWarning,
                                                          match="singular design"):
        out = got.compute()
    assert np.isnan(out[1]) and not np.isnan(out[[0, 2]]).any()
    with pytest.warns(SingularDesignWarning):
        want = ops.local_polynomial(Q, K, V, "epanechnikov", 1.0, degree=2)
    _close(out, want, 2)


def test_lower_degree_warns_and_matches_in_memory(rng):
    Q, K, V = _clustered(rng)
    dQ, dK = da.from_array(Q, chunks=2), da.from_array(K, chunks=10)
    pred, grad = ndask.local_polynomial(dQ, dK, V, "epanechnikov", 1.0, degree=2,
                                        lower_degree=True, return_gradient=True)
    with dask.config.set(scheduler="sync"), pytest.warns(SingularDesignWarning,
                                                          match="lower degree"):
        pred, grad = dask.compute(pred, grad)
    with pytest.warns(SingularDesignWarning):
        want, want_grad = ops.local_polynomial(Q, K, V, "epanechnikov", 1.0, degree=2,
                                               lower_degree=True, return_gradient=True)
    # the line through the two points
    assert pred[1] == pytest.approx(1.5) and grad[1] == pytest.approx(5.0)
    _close(pred, want, 2)
    assert naive.relative_error(grad, want_grad) <= 100 * TOL[2]


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("kwargs, match", [
    (dict(degree=3), "degree must be 0, 1 or 2"),
    (dict(degree=True), "degree must be 0, 1 or 2"),
    (dict(degree=1.0), "degree must be 0, 1 or 2"),
    (dict(degree=0, return_gradient=True), "return_gradient=True needs degree 1 or 2"),
    (dict(kernel="dot"), "kernel must be a smoothing kernel"),
    (dict(kernel="nope"), "nope"),
    (dict(bandwidth=-1.0), "bandwidth"),
    (dict(bandwidth=[1.0, 2.0, 3.0]), "bandwidth"),
    (dict(span=0.0), "span must be a positive finite number"),
    (dict(span=float("nan")), "span must be a positive finite number"),
    (dict(span=1e-4), "span=0.0001 is too small"),
    (dict(split_every=1), "split_every must be an integer >= 2"),
    (dict(device="tpu"), "device must be one of"),
    (dict(key_weight=np.ones(3)), "key_weight must have one entry per key"),
    (dict(exclude_self=True), "exclude_self=True needs the queries to be the keys"),
])
def test_bad_arguments_name_the_parameter(rng, kwargs, match):
    Q, K, V = _data(rng)
    kwargs = dict(kwargs)
    kernel = kwargs.pop("kernel", "gaussian")
    bandwidth = kwargs.pop("bandwidth", 0.5)
    with pytest.raises(ValueError, match=match):
        ndask.local_polynomial(da.from_array(Q, chunks=30), da.from_array(K, chunks=50), V,
                               kernel, bandwidth, **kwargs)


def test_bad_shapes_and_values(rng):
    Q, K, V = _data(rng)
    with pytest.raises(ValueError, match="Q and K must have the same number of features"):
        ndask.local_polynomial(Q[:, :1], K, V)
    with pytest.raises(ValueError, match="K and V must have the same number of rows"):
        ndask.local_polynomial(Q, da.from_array(K, chunks=50), V[:-1])
    # values are checked when computed, as the pooling does
    bad = K.copy()
    bad[60, 1] = np.nan
    with pytest.raises(ValueError, match="K"):
        ndask.local_polynomial(Q, da.from_array(bad, chunks=50), V).compute()
    with pytest.raises(ValueError, match="K must be finite"):
        ndask.local_polynomial(Q, da.from_array(bad, chunks=50), V, span=0.3).compute()
    with pytest.raises(ValueError, match="queries"):  # in memory: checked at once
        ndask.span_radius(bad, K, 0.3)
    with pytest.raises(ValueError, match="queries must be finite"):
        ndask.span_radius(da.from_array(bad, chunks=50), K, 0.3).compute()
    with pytest.raises(ValueError, match="keys must be finite"):
        ndask.span_radius(Q, da.from_array(bad, chunks=50), 0.3).compute()
    with pytest.raises(ValueError, match="key_weight must have at least one positive entry"):
        ndask.local_polynomial(Q, da.from_array(K, chunks=50), V,
                               key_weight=da.zeros(110, chunks=50)).compute()
    with pytest.raises(ValueError, match="key_weight must be non-negative"):
        ndask.local_polynomial(Q, da.from_array(K, chunks=50), V,
                               key_weight=-da.ones(110, chunks=50)).compute()


# ------------------------------------------------------------------ cluster


def test_on_a_cluster(rng):
    """States, per-block LocalInfo and radius candidates cross process boundaries."""
    distributed = pytest.importorskip("distributed",
                                      reason="the dask extra (distributed) is not installed")
    Q, K, V = _data(rng)
    w = rng.uniform(0.5, 2.0, size=K.shape[0])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                  silence_logs=40) as cluster, \
            distributed.Client(cluster) as client, dask.config.set(scheduler=client.get):
        # in-memory keys are scattered; the queries stay a Dask array
        pred, grad = ndask.local_polynomial(da.from_array(Q, chunks=(Q_CHUNKS, 2)), K, V,
                                            "tricube", span=0.3, degree=2, key_weight=w,
                                            return_gradient=True, split_every=2)
        sharded = ndask.local_polynomial(*_layout("both", Q, K, V), "gaussian", 0.5)
        pred, grad, sharded = client.compute([pred, grad, sharded], sync=True)
    want, want_grad = ops.local_polynomial(Q, K, V, "tricube", span=0.3, degree=2,
                                           key_weight=w, return_gradient=True)
    _close(pred, want, 2)
    assert naive.relative_error(grad, want_grad) <= 100 * TOL[2]
    _close(sharded, ops.local_polynomial(Q, K, V, "gaussian", 0.5), 1)

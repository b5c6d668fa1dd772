"""Intervals and bootstrap bands on Dask arrays equal the in-memory ones, for any chunking."""

import numpy as np
import pytest

dask = pytest.importorskip("dask", reason="the dask extra is not installed")
da = pytest.importorskip("dask.array", reason="the dask extra is not installed")

from nwattn import LocalPolynomialRegressor  # noqa: E402
from nwattn.dask import local_polynomial_interval  # noqa: E402

from . import naive  # noqa: E402

Q_CHUNKS = (5, 9, 3)  # 17 queries
K_CHUNKS = (41, 3, 50, 26)  # 120 keys


@pytest.fixture(autouse=True)
def threads():
    with dask.config.set(scheduler="threads"):
        yield


@pytest.mark.parametrize("kernel,h", [("gaussian", 0.25), ("epanechnikov", 0.6)])
@pytest.mark.parametrize("degree", [0, 1])
@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("kind", ["asymptotic", "pointwise", "band"])
def test_intervals_equal_in_memory(rng, kernel, h, degree, bias_correction, kind):
    X = rng.uniform(-1, 1, size=(120, 2))
    Y = np.column_stack([np.sin(2 * X[:, 0]), X[:, 1] ** 2]) + rng.normal(scale=0.1,
                                                                           size=(120, 2))
    w = rng.uniform(0.5, 2.0, size=120)
    Q = rng.uniform(-0.8, 0.8, size=(17, 2))
    model = LocalPolynomialRegressor(degree=degree, kernel=kernel, bandwidth=h).fit(
        X, Y, sample_weight=w)
    res = model._noise_residuals()
    kw = dict(bias_correction=bias_correction, level=0.9)
    if kind != "asymptotic":
        kw.update(method="bootstrap", n_bootstrap=57, simultaneous=kind == "band")
    want = model.predict_interval(Q, random_state=5, **kw)
    got = local_polynomial_interval(
        da.from_array(Q, chunks=(Q_CHUNKS, 2)), da.from_array(X, chunks=(K_CHUNKS, 2)),
        da.from_array(Y, chunks=(K_CHUNKS, 2)), kernel, h, key_std=np.abs(res),
        residuals=res, degree=degree, key_weight=da.from_array(w, chunks=K_CHUNKS), seed=5,
        split_every=2, **kw)
    for a, b in zip(got, want):
        assert naive.relative_error(a.compute(), b) <= 1e-10


def test_band_does_not_depend_on_the_chunking(rng):
    X = rng.uniform(size=(150, 1))
    y = np.sin(5 * X[:, 0]) + rng.normal(scale=0.2, size=150)
    r = rng.normal(scale=0.2, size=150)
    Q = np.linspace(0, 1, 12)[:, None]
    kw = dict(bandwidth=0.15, key_std=np.abs(r), residuals=r, method="bootstrap",
              simultaneous=True, n_bootstrap=99, seed=11)
    results = []
    for qc, kc in [((12,), (150,)), ((4, 8), (10, 60, 80)), ((1,) * 12, (77, 73))]:
        lo, hi = local_polynomial_interval(da.from_array(Q, chunks=(qc, 1)),
                                           da.from_array(X, chunks=(kc, 1)),
                                           da.from_array(y, chunks=kc), **kw)
        results.append((lo.compute(), hi.compute()))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert naive.relative_error(a, b) <= 1e-12


def test_dask_interval_errors(rng):
    X = rng.uniform(size=(20, 1))
    y = rng.normal(size=20)
    base = dict(key_std=np.ones(20))
    for kwargs, match in [({"level": 2.0}, "level"), ({"method": "x"}, "method"),
                          ({"simultaneous": True}, "simultaneous"),
                          ({"method": "bootstrap", "multiplier": "x"}, "multiplier"),
                          ({"method": "bootstrap", "n_bootstrap": 0}, "n_bootstrap"),
                          ({"method": "bootstrap", "seed": -1}, "seed"),
                          ({"kernel": "dot"}, "smoothing kernel")]:
        with pytest.raises(ValueError, match=match):
            local_polynomial_interval(X[:3], X, y, **{**base, **kwargs})
    with pytest.raises(ValueError, match="key_std"):
        local_polynomial_interval(X[:3], X, np.column_stack([y, y]), key_std=np.ones(20))

"""NadarayaWatsonRegressor: scikit-learn conformance, reference formula, fallbacks."""

import pickle
import warnings

import numba
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from nwattn import NadarayaWatsonRegressor
from nwattn.exceptions import EmptyNeighborhoodWarning

from . import naive

_LOO_NOT_REPETITION = (
    "leave-one-out removes a sample entirely, while a sample repeated k times keeps k - 1 "
    "copies when one is left out, so cross-validation on repeated rows selects another "
    "bandwidth than on the weighted rows"
)


def _expected_failures(est):
    if est.bandwidth == "cv":
        return {"check_sample_weight_equivalence_on_dense_data": _LOO_NOT_REPETITION}
    return {}


@parametrize_with_checks(
    [
        NadarayaWatsonRegressor(),
        NadarayaWatsonRegressor("epanechnikov", 2.5, fallback="mean"),
        NadarayaWatsonRegressor("laplacian", "cv", bandwidth_per_feature=True, tol=0.1),
        NadarayaWatsonRegressor("tricube", "scott", fallback="nearest", n_jobs=1),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_checks(estimator, check):
    check(estimator)


def _data(rng, n=40, d=2, p=None):
    X = rng.normal(size=(n, d))
    shape = (n,) if p is None else (n, p)
    y = rng.normal(size=shape) + 3.0
    return X, y


@pytest.mark.parametrize("kernel, form", [
    (kernel, form) for kernel in naive.ALL_KERNELS
    for form in ("scalar", "per_feature", "scott", "silverman")
    # the rules of thumb apply to smoothing kernels only (tested in test_invalid_data)
    if kernel in naive.DISTANCE_KERNELS or form in ("scalar", "per_feature")
])
def test_predict_matches_reference(rng, kernel, form):
    X, y = _data(rng, n=50, d=2)
    Q = rng.normal(size=(15, 2))
    w = rng.uniform(0.1, 2.0, size=50)
    bandwidth = {"scalar": 1.7, "per_feature": np.array([1.3, 2.4])}.get(form, form)
    model = NadarayaWatsonRegressor(kernel, bandwidth, fallback="mean").fit(X, y, sample_weight=w)
    h = model.bandwidth_
    expected, expected_std = naive.pool(Q, X, y, kernel, h, key_weight=w, return_std=True)
    empty = np.isnan(expected)
    expected[empty] = np.average(y, weights=w)
    expected_std[empty] = np.sqrt(np.cov(y, aweights=w, bias=True))
    pred, std = model.predict(Q, return_std=True)
    assert pred.shape == (15,)
    assert naive.relative_error(pred, expected) < 1e-12
    assert naive.relative_error(std, expected_std) < 1e-9


def test_rules_of_thumb_follow_feature_scale(rng):
    X, y = _data(rng, n=80, d=3)
    for rule in ("scott", "silverman"):
        h = NadarayaWatsonRegressor(bandwidth=rule).fit(X, y).bandwidth_
        X2 = X * [1.0, 1000.0, 1.0]
        h2 = NadarayaWatsonRegressor(bandwidth=rule).fit(X2, y).bandwidth_
        np.testing.assert_allclose(h2, h * [1.0, 1000.0, 1.0], rtol=1e-12)


def test_multi_output_keeps_shape_and_matches_columns(rng):
    X, Y = _data(rng, n=60, d=2, p=3)
    model = NadarayaWatsonRegressor(bandwidth=0.8).fit(X, Y)
    pred, std = model.predict(X[:7], return_std=True)
    assert pred.shape == std.shape == (7, 3)
    for c in range(3):
        col = NadarayaWatsonRegressor(bandwidth=0.8).fit(X, Y[:, c]).predict(X[:7])
        np.testing.assert_allclose(pred[:, c], col, rtol=1e-12)
    Y1 = NadarayaWatsonRegressor(bandwidth=0.8).fit(X, Y[:, :1]).predict(X[:7])
    assert Y1.shape == (7, 1)


def test_cv_fit_records_score(rng):
    X, _ = _data(rng, n=60, d=2)
    y = np.sin(2 * X[:, 0]) + 0.1 * X[:, 1] + 0.2 * rng.normal(size=60)
    model = NadarayaWatsonRegressor().fit(X, y)
    from nwattn.bandwidth import loo_cv_score

    assert np.isscalar(model.bandwidth_) and model.bandwidth_ > 0
    assert model.cv_score_ == pytest.approx(loo_cv_score(X, y, "gaussian", model.bandwidth_))
    per = NadarayaWatsonRegressor(bandwidth_per_feature=True).fit(X, y)
    assert per.bandwidth_.shape == (2,)
    assert per.cv_score_ <= model.cv_score_ * (1 + 1e-6)
    assert NadarayaWatsonRegressor(bandwidth=1.0).fit(X, y).cv_score_ is None


def test_sample_weight_weights_the_keys(rng):
    X, y = _data(rng, n=30, d=2)
    w = rng.integers(0, 3, size=30).astype(float)
    w[0] = 1.0
    model = NadarayaWatsonRegressor(bandwidth=0.7).fit(X, y, sample_weight=w)
    keep = w > 0
    rep = NadarayaWatsonRegressor(bandwidth=0.7).fit(np.repeat(X[keep], w[keep].astype(int), 0),
                                                     np.repeat(y[keep], w[keep].astype(int)))
    Q = rng.normal(size=(9, 2))
    np.testing.assert_allclose(model.predict(Q), rep.predict(Q), rtol=1e-12)


def test_empty_neighbourhood_nan_and_warning():
    X = np.array([[0.0], [1.0], [2.0]])
    y = np.array([1.0, 2.0, 6.0])
    model = NadarayaWatsonRegressor("boxcar", 0.5).fit(X, y)
    with pytest.warns(EmptyNeighborhoodWarning, match="1 of 2 queries"):
        pred, std = model.predict([[0.2], [10.0]], return_std=True)
    assert pred[0] == 1.0 and np.isnan(pred[1]) and np.isnan(std[1])


@pytest.mark.parametrize("fallback, value, spread", [
    ("mean", 3.0, np.sqrt(14 / 3)), ("nearest", 6.0, 0.0)])
def test_empty_neighbourhood_fallbacks(fallback, value, spread):
    X = np.array([[0.0], [1.0], [2.0]])
    y = np.array([1.0, 2.0, 6.0])
    model = NadarayaWatsonRegressor("boxcar", 0.5, fallback=fallback).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred, std = model.predict([[0.2], [10.0]], return_std=True)
    assert pred[0] == 1.0 and pred[1] == pytest.approx(value)
    assert std[1] == pytest.approx(spread)


def test_nearest_fallback_uses_scaled_distance_and_skips_zero_weights():
    X = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    y = np.array([1.0, 2.0, 3.0])
    model = NadarayaWatsonRegressor("epanechnikov", [10.0, 0.1], fallback="nearest")
    model.fit(X, y)
    # (2.9, 1.0) is nearest to (3, 0) in plain distance but to (0, 2) once the
    # second feature is divided by its small bandwidth.
    assert model.predict([[2.9, 1.9]])[0] == 3.0
    model.fit(X, y, sample_weight=[1.0, 1.0, 0.0])
    assert model.predict([[2.9, 1.9]])[0] == 2.0


def test_attention_weights(rng):
    X, y = _data(rng, n=25, d=2)
    model = NadarayaWatsonRegressor(bandwidth=0.9).fit(X, y)
    Q = rng.normal(size=(4, 2))
    idx, w = model.attention_weights(Q, k=25)
    W = naive.weights(Q, X, "gaussian", 0.9)
    np.testing.assert_allclose(w, np.take_along_axis(W, idx, axis=1), rtol=1e-12)
    np.testing.assert_allclose(np.sum(w * y[idx], axis=1), model.predict(Q), rtol=1e-10)
    assert np.all(np.diff(w, axis=1) <= 0)
    idx3, w3 = model.attention_weights(Q, k=3)
    np.testing.assert_array_equal(idx3, idx[:, :3])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        model.attention_weights(Q, k=0)


def test_pipeline_grid_search_clone_pickle(rng):
    X, y = _data(rng, n=60, d=3)
    pipe = make_pipeline(StandardScaler(), NadarayaWatsonRegressor(bandwidth="silverman"))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    grid = GridSearchCV(NadarayaWatsonRegressor(), {"bandwidth": [0.3, 1.0, 3.0]}, cv=3)
    grid.fit(X, y)
    assert grid.best_params_["bandwidth"] in (0.3, 1.0, 3.0)
    model = NadarayaWatsonRegressor("cosine", bandwidth=2.0, fallback="mean").fit(X, y)
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "bandwidth_")
    loaded = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_n_jobs_restored_even_on_error(rng):
    X, y = _data(rng, n=20, d=2)
    before = numba.get_num_threads()
    model = NadarayaWatsonRegressor(bandwidth=1.0, n_jobs=1).fit(X, y)
    model.predict(X)
    assert numba.get_num_threads() == before
    model.set_params(kernel="dot", bandwidth=1e-300).fit(X, y)
    with pytest.raises(ValueError, match="bandwidth is too small"):
        model.predict(X * 1e10)
    assert numba.get_num_threads() == before


def test_auto_device_matches_cpu(rng):
    X, y = _data(rng, n=30, d=2)
    a = NadarayaWatsonRegressor(bandwidth=0.5, device="auto").fit(X, y).predict(X)
    b = NadarayaWatsonRegressor(bandwidth=0.5, device="cpu").fit(X, y).predict(X)
    np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("params", [
    {"kernel": "nope"}, {"kernel": 3}, {"bandwidth": 0.0}, {"bandwidth": -1.0},
    {"bandwidth": "auto"}, {"bandwidth": None}, {"bandwidth_per_feature": "yes"},
    {"fallback": "zero"}, {"tol": 0}, {"tol": -1e-3}, {"n_jobs": 1.5}, {"device": "tpu"},
])
def test_invalid_parameters(rng, params):
    X, y = _data(rng, n=10, d=2)
    with pytest.raises(InvalidParameterError):
        NadarayaWatsonRegressor(**params).fit(X, y)


@pytest.mark.parametrize("bandwidth, match", [
    ([1.0, 2.0, 3.0], "one value per feature"), ([1.0, -2.0], "positive"),
    ([1.0, np.inf], "positive and finite"), ([[1.0, 2.0]], "one value per feature"),
])
def test_invalid_bandwidth_arrays(rng, bandwidth, match):
    X, y = _data(rng, n=10, d=2)
    with pytest.raises(ValueError, match=match):
        NadarayaWatsonRegressor(bandwidth=bandwidth).fit(X, y)


def test_invalid_data(rng):
    X, y = _data(rng, n=10, d=2)
    model = NadarayaWatsonRegressor(bandwidth=1.0)
    for bad_X in (np.where(np.eye(10, 2) > 0, np.nan, X), np.where(np.eye(10, 2) > 0, np.inf, X)):
        with pytest.raises(ValueError, match="NaN|infinity"):
            model.fit(bad_X, y)
    bad_y = y.copy()
    bad_y[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(X, bad_y)
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(X, y, sample_weight=-np.ones(10))
    with pytest.raises(ValueError, match="at least one non-zero"):
        model.fit(X, y, sample_weight=np.zeros(10))
    with pytest.raises(ValueError, match="rule for smoothing kernels"):
        NadarayaWatsonRegressor("dot", "scott").fit(X, y)
    with pytest.raises(ValueError, match="n_samples=1"):
        NadarayaWatsonRegressor().fit(X[:1], y[:1])
    model.fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(np.ones((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        model.predict([[np.nan, 0.0]])

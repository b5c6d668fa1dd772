"""Robustness of the public API to the form and the scale of its input.

Arrays from other libraries, non-numeric targets, sample weights of any
overall scale, and data in any units: each must give the result of plain,
well-scaled NumPy input, or an error that names the parameter at fault.
The references are the dense formulas of ``tests/naive.py`` or the same
computation on well-scaled input.
"""

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from nwattn import bandwidth as bw
from nwattn import ops
from nwattn.estimators import (AttentionRegressor, LocalPolynomialRegressor,
                               NadarayaWatsonRegressor)

from . import naive


class ForeignArray:
    """An array of another library, as NumPy sees a PyTorch CPU tensor.

    It converts through ``__array__``, and its ``dtype`` is the library's own
    object, which has none of NumPy's attributes (no ``kind``).
    """

    class _DType:
        def __repr__(self):
            return "foreign.float64"

    dtype = _DType()

    def __init__(self, values):
        self._values = np.asarray(values, dtype=np.float64)
        self.shape = self._values.shape
        self.ndim = self._values.ndim

    def __array__(self, dtype=None, copy=None):
        return self._values if dtype is None else self._values.astype(dtype)

    def __len__(self):
        return self.shape[0]


@pytest.fixture
def data(rng):
    Q = rng.normal(size=(6, 2))
    K = rng.normal(size=(9, 2))
    V = rng.normal(size=9)
    w = rng.uniform(0.5, 2.0, size=9)
    return Q, K, V, w


def _foreign_inputs():
    """Converters to the foreign array types available here."""
    kinds = [("ForeignArray", ForeignArray)]
    try:
        import torch
    except ImportError:
        pass
    else:
        kinds.append(("torch", lambda a: torch.tensor(np.asarray(a))))
    return kinds


@pytest.fixture(params=[k for k, _ in _foreign_inputs()])
def foreign(request):
    return dict(_foreign_inputs())[request.param]


def test_foreign_arrays_in_the_low_level_api(data, foreign):
    Q, K, V, w = data
    h = np.array([0.7, 1.3])
    got = ops.attention_pool(foreign(Q), foreign(K), foreign(V), "gaussian", foreign(h),
                             key_weight=foreign(w))
    want = naive.pool(Q, K, V, "gaussian", h, key_weight=w)
    assert naive.relative_error(got, want) < 1e-12
    S = ops.pairwise_scores(foreign(Q), foreign(K), "gaussian", 0.9)
    assert naive.relative_error(S, naive.scores(Q, K, "gaussian", 0.9)) < 1e-12
    assert naive.relative_error(ops.softmax(foreign(S)), naive.softmax(S)) < 1e-12
    idx, _ = ops.top_k_weights(foreign(Q), foreign(K), "gaussian", 0.9, 3)
    np.testing.assert_array_equal(idx, np.argsort(-S, axis=1)[:, :3])


def test_foreign_arrays_in_the_bandwidth_functions(data, foreign):
    _, K, V, w = data
    for rule in ("scott", "silverman"):
        got = getattr(bw, rule)(foreign(K), sample_weight=foreign(w))
        assert naive.relative_error(got, naive.rule_of_thumb(K, rule, w)) < 1e-12
    got = bw.loo_cv_score(foreign(K), foreign(V), "gaussian", 0.8, sample_weight=foreign(w))
    assert got == pytest.approx(naive.loo_cv(K, V, "gaussian", 0.8, w), rel=1e-10)


def test_torch_tensors_in_the_low_level_api(data):
    torch = pytest.importorskip("torch")
    Q, K, V, _ = data
    got = ops.attention_pool(torch.tensor(Q), torch.tensor(K), torch.tensor(V))
    assert naive.relative_error(got, naive.pool(Q, K, V)) < 1e-12
    got32 = ops.attention_pool(torch.tensor(Q, dtype=torch.float32),
                               torch.tensor(K, dtype=torch.float32),
                               torch.tensor(V, dtype=torch.float32))
    assert got32.dtype == np.float32


# -- non-numeric input names its parameter ---------------------------------------------

_STRING_TARGETS = [
    pytest.param(np.array(["a", "b"] * 10), id="str-array"),
    pytest.param(["1.5", "2"] * 10, id="numeric-strings"),
    pytest.param(np.array(["a", "b"] * 10, dtype=object), id="object-strings"),
]


@pytest.mark.parametrize("y", _STRING_TARGETS)
@pytest.mark.parametrize("fit", [
    pytest.param(lambda X, y: NadarayaWatsonRegressor(bandwidth=1.0).fit(X, y), id="NW"),
    pytest.param(lambda X, y: AttentionRegressor(max_iter=1).fit(X, y), id="Attention"),
    pytest.param(lambda X, y: bw.loo_cv_score(X, y), id="loo_cv_score"),
    pytest.param(lambda X, y: bw.select_bandwidth(X, y), id="select_bandwidth"),
])
def test_string_targets_are_refused_naming_y(rng, fit, y):
    X = rng.normal(size=(20, 2))
    with pytest.raises((TypeError, ValueError), match=r"^y must be numeric"):
        fit(X, y)


@pytest.mark.parametrize("Estimator", [NadarayaWatsonRegressor, AttentionRegressor])
def test_estimators_name_non_numeric_features_and_weights(rng, Estimator):
    X, y = rng.normal(size=(20, 2)), rng.normal(size=20)
    est = Estimator(max_iter=1) if Estimator is AttentionRegressor else Estimator(bandwidth=1.0)
    with pytest.raises(TypeError, match=r"^X must be numeric"):
        est.fit(X.astype(str), y)
    with pytest.raises(ValueError, match="Complex data not supported: X"):
        est.fit(X + 1j, y)
    with pytest.raises(TypeError, match=r"^sample_weight must be numeric"):
        est.fit(X, y, sample_weight=np.array(["1"] * 20))
    est.fit(X, y)
    with pytest.raises(TypeError, match=r"^X must be numeric"):
        est.predict(np.array([["a", "b"]]))


@pytest.mark.parametrize("rule", ["scott", "silverman"])
def test_rules_name_non_numeric_input(rng, rule):
    X = rng.normal(size=(20, 2))
    with pytest.raises(TypeError, match=r"^X must be numeric"):
        getattr(bw, rule)(X.astype(str))
    with pytest.raises(TypeError, match=r"^sample_weight must be numeric"):
        getattr(bw, rule)(X, sample_weight=["a"] * 20)


# -- sample weights matter by their ratios only -----------------------------------------

_SCALES = [1e160, 1e-170, 1e307, 1e-300]


@pytest.mark.parametrize("scale", _SCALES)
@pytest.mark.parametrize("rule", ["scott", "silverman"])
def test_rules_of_thumb_ignore_the_scale_of_the_weights(rng, rule, scale):
    X = rng.normal(size=(40, 3)) * [1.0, 10.0, 0.1]
    w = rng.uniform(0.5, 2.0, size=40)
    got = getattr(bw, rule)(X, sample_weight=w * scale)
    assert np.all(np.isfinite(got))
    assert naive.relative_error(got, naive.rule_of_thumb(X, rule, w)) < 1e-12


@pytest.mark.parametrize("scale", _SCALES)
def test_nadaraya_watson_rule_bandwidth_ignores_the_scale_of_the_weights(rng, scale):
    X, y = rng.normal(size=(40, 2)), rng.normal(size=40)
    w = rng.uniform(0.5, 2.0, size=40)
    ref = NadarayaWatsonRegressor(bandwidth="scott").fit(X, y, sample_weight=w)
    got = NadarayaWatsonRegressor(bandwidth="scott").fit(X, y, sample_weight=w * scale)
    np.testing.assert_allclose(got.bandwidth_, ref.bandwidth_, rtol=1e-12)
    np.testing.assert_allclose(got.y_mean_, np.average(y, weights=w), rtol=1e-12)
    np.testing.assert_allclose(got.predict(X[:5]), ref.predict(X[:5]), rtol=1e-10)


@pytest.mark.parametrize("scale", [1e307, 1e-300])
def test_loo_score_ignores_the_scale_of_the_weights(rng, scale):
    X, y = rng.normal(size=(25, 2)), rng.normal(size=25)
    w = rng.uniform(0.5, 2.0, size=25)
    ref = naive.loo_cv(X, y, "gaussian", 0.6, w)
    assert bw.loo_cv_score(X, y, "gaussian", 0.6, sample_weight=w * scale) == \
        pytest.approx(ref, rel=1e-10)


def test_nadaraya_watson_cv_fit_with_huge_weights(rng):
    X = rng.uniform(-2, 2, size=(40, 1))
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=40)
    w = rng.uniform(0.5, 2.0, size=40)
    ref = NadarayaWatsonRegressor().fit(X, y, sample_weight=w)
    got = NadarayaWatsonRegressor().fit(X, y, sample_weight=w * 1e307)
    assert got.bandwidth_ == pytest.approx(ref.bandwidth_, rel=1e-6)
    assert got.cv_score_ == pytest.approx(ref.cv_score_, rel=1e-6)


def test_mean_fallback_spread_with_huge_weights(rng):
    X, y = rng.normal(size=(30, 2)), rng.normal(size=30)
    w = np.full(30, 1e307)
    model = NadarayaWatsonRegressor("epanechnikov", 0.5, fallback="mean").fit(
        X, y, sample_weight=w)
    pred, std = model.predict([[50.0, 50.0]], return_std=True)
    np.testing.assert_allclose(pred, [y.mean()], rtol=1e-12)
    np.testing.assert_allclose(std, [y.std()], rtol=1e-12)


def test_loo_mean_fallback_with_one_dominant_weight():
    """(total - c_i y_i) / (wsum - c_i) would round wsum - c_i to 0 for the heaviest point:
    its mean of the others is summed on its own."""
    X = np.arange(6.0)[:, None]
    y = np.arange(6.0)
    w = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1e17])
    # h = 0.5: every point's neighbourhood is empty, every prediction is the
    # weighted mean of the other targets.
    got = bw.loo_cv_score(X, y, "epanechnikov", 0.5, sample_weight=w)
    assert got == pytest.approx(naive.loo_cv(X, y, "epanechnikov", 0.5, w), rel=1e-9)


# -- targets of any magnitude: the leave-one-out score ------------------------------------


def _times_4_to_the(x, k):
    """``x * 4**k`` rounded as float64 rounds it (to inf or 0 beyond its range)."""
    with np.errstate(over="ignore", under="ignore"):
        return np.ldexp(x, 2 * k)


@pytest.mark.parametrize("k", [300, -300, 600, 1000, -900])
@pytest.mark.parametrize("kernel, fallback", [("gaussian", "mean"), ("epanechnikov", "nearest")])
def test_loo_score_of_targets_at_any_scale(rng, k, kernel, fallback):
    """Targets times 2**k score 4**k times the unit score: their squares, which
    leave float64 from |y| ~ 1e154, are never formed at that scale."""
    X, y = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
    ref = bw.loo_cv_score(X, y, kernel, [0.4, 0.7], fallback=fallback, return_gradient=True)
    got = bw.loo_cv_score(X, np.ldexp(y, k), kernel, [0.4, 0.7], fallback=fallback,
                          return_gradient=True)
    np.testing.assert_allclose(got[0], _times_4_to_the(ref[0], k), rtol=1e-12)
    np.testing.assert_allclose(got[1], _times_4_to_the(ref[1], k), rtol=1e-12)
    assert not np.isnan(got[0]) and not np.isnan(got[1]).any()


@pytest.mark.parametrize("Estimator", [NadarayaWatsonRegressor, LocalPolynomialRegressor])
@pytest.mark.parametrize("k", [997, 664, -997])  # about 1e300, 1e200, 1e-300
def test_cv_fit_of_targets_at_any_scale(rng, Estimator, k):
    """The bandwidth chosen for y * 2**k is that of y; the score rounds to inf, never NaN."""
    X = rng.uniform(size=(80, 2))
    y = np.sin(6 * X[:, 0]) + 0.1 * rng.normal(size=80)
    ref = Estimator().fit(X, y)
    got = Estimator().fit(X, np.ldexp(y, k))
    assert got.bandwidth_ == pytest.approx(ref.bandwidth_, rel=1e-12)
    assert got.cv_score_ == _times_4_to_the(ref.cv_score_, k)
    np.testing.assert_allclose(got.predict(X[:5]), np.ldexp(ref.predict(X[:5]), k), rtol=1e-12)


@pytest.mark.parametrize("Estimator", [NadarayaWatsonRegressor, LocalPolynomialRegressor])
def test_cv_fit_of_targets_times_1e300(rng, Estimator):
    X = rng.uniform(size=(80, 2))
    y = np.sin(6 * X[:, 0]) + 0.1 * rng.normal(size=80)
    ref = Estimator().fit(X, y)
    got = Estimator().fit(X, y * 1e300)
    # Not a power of two: the scores differ by rounding, within the search's tolerance.
    assert got.bandwidth_ == pytest.approx(ref.bandwidth_, rel=1e-3)
    assert got.cv_score_ == np.inf


@pytest.mark.parametrize("k", [700, -700])
def test_per_feature_cv_fit_of_targets_at_any_scale(rng, k):
    X = rng.uniform(size=(60, 2))
    y = np.sin(6 * X[:, 0]) + 0.1 * rng.normal(size=60)
    ref = NadarayaWatsonRegressor(bandwidth_per_feature=True).fit(X, y)
    got = NadarayaWatsonRegressor(bandwidth_per_feature=True).fit(X, np.ldexp(y, k))
    np.testing.assert_allclose(got.bandwidth_, ref.bandwidth_, rtol=1e-8)
    assert got.cv_score_ == _times_4_to_the(ref.cv_score_, k)


# -- AttentionRegressor: any units, any shape ---------------------------------------------

_KERNELS = ["rbf", "scaled_dot", "additive"]


def _attention(kernel, **kw):
    params = dict(max_iter=6, random_state=0)
    if kernel != "rbf":
        params["n_components"] = 2
    params.update(kw)
    return AttentionRegressor(kernel, **params)


@pytest.fixture
def regression(rng):
    X = rng.normal(size=(60, 3))
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=60)
    w = rng.uniform(0.5, 2.0, size=60)
    return X, y, w


@pytest.mark.parametrize("kernel", _KERNELS)
@pytest.mark.parametrize("x_scale", [1e-4, 1e5, 1e200])
def test_attention_fit_does_not_depend_on_the_units_of_X(regression, kernel, x_scale):
    X, y, w = regression
    ref = _attention(kernel).fit(X, y, sample_weight=w)
    got = _attention(kernel).fit(X * x_scale, y, sample_weight=w)
    assert ref.n_iter_ == got.n_iter_ > 0
    np.testing.assert_allclose(got.loss_curve_, ref.loss_curve_, rtol=1e-7)
    np.testing.assert_allclose(got.W_key_ * x_scale, ref.W_key_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got.predict(X[:7] * x_scale), ref.predict(X[:7]), rtol=1e-6)


@pytest.mark.parametrize("kernel", _KERNELS)
@pytest.mark.parametrize("y_scale", [1e200, 1e-300])
def test_attention_fit_does_not_depend_on_the_units_of_y(regression, kernel, y_scale):
    X, y, w = regression
    ref = _attention(kernel).fit(X, y, sample_weight=w)
    got = _attention(kernel).fit(X, y * y_scale, sample_weight=w)
    assert ref.n_iter_ == got.n_iter_ > 0
    np.testing.assert_allclose(got.loss_curve_, ref.loss_curve_, rtol=1e-7)
    np.testing.assert_allclose(got.predict(X[:7]), ref.predict(X[:7]) * y_scale, rtol=1e-6)


@pytest.mark.parametrize("kernel", _KERNELS)
@pytest.mark.parametrize("w_scale", [1e307, 1e-300])
def test_attention_fit_does_not_depend_on_the_scale_of_the_weights(regression, kernel, w_scale):
    X, y, w = regression
    ref = _attention(kernel).fit(X, y, sample_weight=w)
    got = _attention(kernel).fit(X, y, sample_weight=w * w_scale)
    assert ref.n_iter_ == got.n_iter_ > 0
    np.testing.assert_allclose(got.loss_curve_, ref.loss_curve_, rtol=1e-7)
    np.testing.assert_allclose(got.predict(X[:7]), ref.predict(X[:7]), rtol=1e-6)


@pytest.mark.parametrize("kernel", _KERNELS)
def test_attention_fits_wide_data(rng, kernel):
    # Fewer samples than features: the default n_components follows the
    # number of directions the data span.
    X, y = rng.normal(size=(6, 10)), rng.normal(size=6)
    reg = AttentionRegressor(kernel, max_iter=3, random_state=0).fit(X, y)
    assert reg.W_key_.shape == (5, 10)
    assert np.all(np.isfinite(reg.predict(rng.normal(size=(3, 10)))))


def test_attention_rbf_more_components_than_samples(rng):
    X, y = rng.normal(size=(6, 10)), rng.normal(size=6)
    reg = AttentionRegressor(n_components=8, max_iter=3).fit(X, y)
    assert reg.components_.shape == (8, 10)
    # The principal axes of the data come first; the rows beyond start at
    # zero, where the distances do not see them.
    pred = reg.predict(X)
    Z = X @ reg.components_.T
    assert naive.relative_error(pred, naive.pool(Z, Z, y, "gaussian", 1.0)) < 1e-10


def test_attention_default_components_are_capped(rng):
    n, d = 20, 300
    X, y = rng.normal(size=(n, d)), rng.normal(size=n)
    reg = AttentionRegressor(max_iter=1).fit(X, y)
    assert reg.components_.shape == (n - 1, d)
    X, y = rng.normal(size=(120, 110)), rng.normal(size=120)
    reg = AttentionRegressor("scaled_dot", max_iter=1, random_state=0).fit(X, y)
    assert reg.W_query_.shape == (100, 110)


@pytest.mark.parametrize("kernel", _KERNELS)
def test_attention_constant_features(rng, kernel):
    X = np.full((30, 2), 3.0)
    y = rng.normal(size=30)
    with pytest.warns(ConvergenceWarning, match="did not move"):
        reg = AttentionRegressor(kernel, max_iter=5, random_state=0).fit(X, y)
    assert np.all(np.abs(reg.W_key_) < 1e3)
    # Every training point looks the same: the prediction is the mean.
    np.testing.assert_allclose(reg.predict(X[:4]), np.full(4, y.mean()), rtol=1e-10)


def test_attention_one_constant_feature_among_others(regression):
    X, y, _ = regression
    X = np.c_[X, np.full(len(X), 7.0)]
    reg = AttentionRegressor(n_components=3, max_iter=6).fit(X, y)
    ref = AttentionRegressor(n_components=3, max_iter=6).fit(X[:, :3], y)
    np.testing.assert_allclose(reg.loss_curve_, ref.loss_curve_, rtol=1e-8)
    np.testing.assert_allclose(reg.components_[:, 3], 0.0, atol=1e-12)
    np.testing.assert_allclose(reg.predict(X[:5]), ref.predict(X[:5, :3]), rtol=1e-8)


def test_attention_init_whose_scores_overflow_is_refused(regression):
    X, y, _ = regression
    A = np.eye(3) * 1e200
    with pytest.raises(ValueError, match="init"):
        AttentionRegressor(init=A, max_iter=3).fit(X, y)


@pytest.mark.parametrize("kernel", ["rbf", "scaled_dot"])
def test_attention_objective_is_infinite_where_scores_overflow(rng, kernel):
    # Overflowing scores leave queries without a key; the compiled kernels
    # drop them from the sum, which must not read as a perfect fit. (The
    # additive score is bounded by the norm of w_score.)
    n, d, r = 12, 2, 2
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(n, 1))
    est = AttentionRegressor(kernel)
    fun = est._objective(X, Y, np.zeros(n), np.full(n, 1.0 / n), n, r)
    loss, grad = fun(np.full(r * d * (1 if kernel == "rbf" else 2), 1e200))
    assert loss == np.inf
    assert np.all(grad == 0)


def test_attention_warns_when_it_does_not_move(regression):
    X, y, _ = regression
    # Dot-product scores of features far from the origin barely vary.
    with pytest.warns(ConvergenceWarning, match="did not move"):
        AttentionRegressor("scaled_dot", n_components=2, max_iter=5, random_state=0).fit(
            X + 1e9, y)


def test_attention_refit_removes_the_previous_kernels_attributes(regression):
    X, y, _ = regression
    reg = AttentionRegressor(max_iter=2, random_state=0).fit(X, y)
    assert hasattr(reg, "components_")
    reg.set_params(kernel="additive", n_components=2).fit(X, y)
    assert not hasattr(reg, "components_")
    assert reg.w_score_.shape == (2,)
    reg.set_params(kernel="rbf").fit(X, y)
    assert not hasattr(reg, "w_score_")
    assert reg.components_.shape == (2, 3)


def test_attention_set_output_pandas_in_a_pipeline(regression):
    pd = pytest.importorskip("pandas")
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, _ = regression
    frame = pd.DataFrame(X, columns=["a", "b", "c"], index=np.arange(100, 160))
    pipe = make_pipeline(StandardScaler(), AttentionRegressor(max_iter=3), Ridge())
    pipe.set_output(transform="pandas").fit(frame, y)
    Z = pipe[:-1].transform(frame)
    assert isinstance(Z, pd.DataFrame)
    assert list(Z.columns) == [f"attentionregressor{i}" for i in range(3)]
    np.testing.assert_array_equal(Z.index, frame.index)
    reg = pipe[1]
    np.testing.assert_allclose(Z.to_numpy(), pipe[0].transform(frame).to_numpy()
                               @ reg.components_.T)
    assert np.all(np.isfinite(pipe.predict(frame)))
    # The other scores have no transform, and so nothing to configure.
    assert not hasattr(AttentionRegressor("additive"), "set_output")

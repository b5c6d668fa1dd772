"""Standard errors, robust bias correction, the wild bootstrap and intervals.

Every quantity is compared with an independent float64 NumPy reference that
forms the fit's weights ``l_j(x)`` explicitly (:func:`tests.naive.equivalent_kernel`,
:func:`tests.naive.bias_corrected_kernel`): the fit is ``L @ y`` and its
variance ``L**2 @ sigma**2``. The one-feature estimates, bias-corrected
estimates and both standard errors are compared with nprobust's
``lprobust`` at the same bandwidth, kernel and variance estimator.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from nwattn import LocalPolynomialRegressor, NadarayaWatsonRegressor
from nwattn.ops import local_polynomial_state, merge_states, smoother_pool
from nwattn.state import SingularDesignWarning, solve_bias_corrected, solve_local
from nwattn.uncertainty import nn_residuals, nn_window_correction, residual_scales

from . import naive

KERNELS = ["gaussian", "epanechnikov", "tricube", "laplacian"]


def _data(rng, n=40, m=6, d=1, p=2):
    K = rng.uniform(size=(n, d))
    Q = np.vstack([rng.uniform(size=(m - 2, d)), np.zeros((1, d)), np.ones((1, d))])
    V = rng.normal(size=(n, p))
    S = rng.uniform(0.2, 2.0, size=(n, p))
    c = rng.uniform(0.3, 2.0, size=n)
    return Q, K, V, S, c


def _h(kernel, d):
    return np.full(d, 0.35 if kernel in ("gaussian", "laplacian") else 0.8)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("d", [1, 2])
def test_standard_errors_equal_the_explicit_weights(rng, small_blocks, kernel, degree, d):
    # degree 3 in two features has 10 basis functions: more points
    Q, K, V, S, c = _data(rng, n=200 if degree * d >= 6 else 60, d=d)
    h = _h(kernel, d)
    fit = solve_local(local_polynomial_state(Q, K, V, kernel, h, degree=degree, key_weight=c,
                                             key_std=S))
    L = naive.equivalent_kernel(Q, K, kernel, h, degree, c)
    assert naive.relative_error(fit.pred, L @ V) <= 1e-10
    assert naive.relative_error(fit.se, np.sqrt(L ** 2 @ S ** 2)) <= 1e-10
    # the equivalent kernel's coefficients reproduce the same weights
    again = smoother_pool(Q, K, V, fit.coef, kernel, h, degree=degree, key_weight=c)
    assert naive.relative_error(again, L @ V) <= 1e-10


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("degree", [0, 1, 2])
@pytest.mark.parametrize("d", [1, 2])
def test_bias_correction_equals_its_definition(rng, small_blocks, kernel, degree, d):
    # the pilot of a local quadratic in two features has 10 basis functions
    Q, K, V, S, c = _data(rng, n=200 if degree == 2 and d == 2 else 60, d=d)
    h = _h(kernel, d)
    fit = solve_bias_corrected(local_polynomial_state(Q, K, V, kernel, h, degree=degree + 1,
                                                      key_weight=c, key_std=S))
    L = naive.equivalent_kernel(Q, K, kernel, h, degree, c)
    Lbc = naive.bias_corrected_kernel(Q, K, kernel, h, degree, c)
    assert naive.relative_error(fit.pred, L @ V) <= 1e-9
    assert naive.relative_error(fit.se, np.sqrt(L ** 2 @ S ** 2)) <= 1e-9
    assert naive.relative_error(fit.pred_bc, Lbc @ V) <= 1e-9
    assert naive.relative_error(fit.se_rb, np.sqrt(Lbc ** 2 @ S ** 2)) <= 1e-9
    many = rng.normal(size=(K.shape[0], 37))
    boot = smoother_pool(Q, K, many, fit.coef, kernel, h, degree=degree + 1, key_weight=c)
    assert naive.relative_error(boot, Lbc @ many) <= 1e-9


def test_bias_correction_removes_the_leading_bias():
    # exact for a polynomial of one degree more than the fit's
    X = np.linspace(-1, 1, 80)[:, None]
    y = 2.0 - X[:, 0] + 0.5 * X[:, 0] ** 2
    st_ = local_polynomial_state([[0.0], [0.9], [1.0]], X, y, "epanechnikov", 0.4, degree=2,
                                 key_std=np.ones(80))
    fit = solve_bias_corrected(st_)
    truth = 2.0 - np.array([0.0, 0.9, 1.0]) + 0.5 * np.array([0.0, 0.81, 1.0])
    np.testing.assert_allclose(fit.pred_bc[:, 0], truth, rtol=1e-12)
    assert np.all(np.abs(fit.pred[:, 0] - truth) > 1e-3)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cut=st.integers(1, 39), exponent=st.integers(-250, 250))
def test_sandwich_merges_and_scales(seed, cut, exponent):
    rng = np.random.default_rng(seed)
    Q, K, V, S, c = _data(rng)
    whole = solve_bias_corrected(local_polynomial_state(Q, K, V, "gaussian", 0.4, degree=2,
                                                        key_weight=c, key_std=S))
    a = local_polynomial_state(Q, K[:cut], V[:cut], "gaussian", 0.4, degree=2,
                               key_weight=c[:cut], key_std=S[:cut])
    b = local_polynomial_state(Q, K[cut:], V[cut:], "gaussian", 0.4, degree=2,
                               key_weight=c[cut:], key_std=S[cut:])
    merged = solve_bias_corrected(merge_states(a, b))
    for x, y in zip(whole, merged):
        assert naive.relative_error(x, y) <= 1e-10
    # Standard errors scale with the values and their noise, not with the weights.
    s = 2.0 ** exponent
    scaled = solve_bias_corrected(local_polynomial_state(
        Q, K, V * s, "gaussian", 0.4, degree=2, key_weight=c * 2.0 ** (-exponent),
        key_std=S * s))
    assert naive.relative_error(scaled.se_rb / s, whole.se_rb) <= 1e-10
    assert naive.relative_error(scaled.pred_bc / s, whole.pred_bc) <= 1e-10


def test_nn_residuals_equal_nprobust_matching(rng):
    npfun = pytest.importorskip("nprobust.npfunctions")
    for _ in range(10):
        n = int(rng.integers(2, 80))
        # rounded abscissas: many ties, which nprobust takes as whole groups
        x = np.sort(np.round(rng.uniform(size=n) * rng.integers(3, 30)) / 7.0)
        y = rng.normal(size=n)
        dups = np.array([np.sum(x == v) for v in x])
        dupsid = np.concatenate([np.arange(1, k + 1) for k in np.unique(x, return_counts=True)[1]])
        J = int(rng.integers(1, 6))
        ref = npfun.lprobust_res(x, y, None, None, "nn", J, dups, dupsid, 2)[:, 0]
        # in any order of the points
        perm = rng.permutation(n)
        got = np.empty(n)
        got[perm] = nn_residuals(x[perm, None], y[perm], matches=J)[:, 0]
        # the same neighbours; sums of tied groups in another order
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)


def test_nn_residuals_in_several_features(rng):
    X = rng.normal(size=(50, 3))
    Y = rng.normal(size=(50, 2))
    np.testing.assert_allclose(nn_residuals(X, Y, matches=4), naive.nn_residuals_brute(X, Y, 4),
                               rtol=1e-12, atol=1e-14)


def test_residual_scales_follow_their_formulas(rng):
    e = rng.normal(size=(30, 2))
    lev = rng.uniform(0.0, 0.6, size=30)
    np.testing.assert_allclose(residual_scales("hc0", e), np.abs(e))
    np.testing.assert_allclose(residual_scales("hc1", e, lev),
                               np.abs(e) * np.sqrt(30 / (30 - lev.sum())))
    np.testing.assert_allclose(residual_scales("hc2", e, lev), np.abs(e) / np.sqrt(1 - lev)[:, None])
    np.testing.assert_allclose(residual_scales("hc3", e, lev), np.abs(e) / (1 - lev)[:, None])
    lev[0] = 1.0
    assert np.all(residual_scales("hc3", e, lev)[0] == 0.0)
    with pytest.raises(ValueError, match="vce"):
        residual_scales("nn", e)
    with pytest.raises(ValueError, match="leverage"):
        residual_scales("hc2", e)


@pytest.mark.parametrize("kernel,name", [("gaussian", "gau"), ("epanechnikov", "epa"),
                                         ("triangular", "tri"), ("boxcar", "uni")])
@pytest.mark.parametrize("p", [0, 1, 2])
def test_equals_nprobust_lprobust(rng, kernel, name, p):
    nprobust = pytest.importorskip("nprobust")
    n = 200
    x = rng.uniform(size=n)
    y = np.sin(4 * x) + rng.normal(scale=0.3, size=n)
    if kernel == "boxcar":
        x = np.round(x, 2)  # ties, matched in whole groups
    ev = np.array([0.0, 0.03, 0.3, 0.5, 0.97, 1.0])
    # compact windows that cut the data: nprobust matches each point's
    # neighbours among the points of positive weight (nn_window_correction)
    h = float(rng.uniform(0.08, 0.3))
    ref = nprobust.lprobust(y, x, eval=ev, p=p, h=h, kernel=name, vce="nn",
                            bwcheck=None).Estimate
    model = LocalPolynomialRegressor(degree=p, kernel=kernel, bandwidth=h, vce="nn",
                                     variance_smoothing=0).fit(x[:, None], y)
    state = local_polynomial_state(ev[:, None], x[:, None], y, kernel, h, degree=p + 1,
                                   key_std=np.abs(nn_residuals(x[:, None], y)))
    state = nn_window_correction(state, ev[:, None], x[:, None], y, kernel, h)
    fit = solve_bias_corrected(state)
    got = np.column_stack([fit.pred[:, 0], fit.pred_bc[:, 0], fit.se[:, 0], fit.se_rb[:, 0]])
    assert naive.relative_error(got, ref[:, 4:8]) <= 1e-8
    # and through the estimator (also NadarayaWatsonRegressor for degree 0)
    pred, se = model.predict(ev[:, None], return_se=True)
    if p == 0:
        nw = NadarayaWatsonRegressor(kernel=kernel, bandwidth=h, vce="nn",
                                     variance_smoothing=0).fit(x[:, None], y)
        np.testing.assert_allclose(nw.predict(ev[:, None], return_se=True)[1], ref[:, 6],
                                   rtol=1e-8)
    np.testing.assert_allclose(pred, ref[:, 4], rtol=1e-8)
    np.testing.assert_allclose(se, ref[:, 6], rtol=1e-8)
    lo, hi = model.predict_interval(ev[:, None], level=0.9)
    z = stats.norm.ppf(0.95)
    np.testing.assert_allclose(lo, ref[:, 5] - z * ref[:, 7], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(hi, ref[:, 5] + z * ref[:, 7], rtol=1e-8, atol=1e-12)


def _noise_reference(model, X, Y):
    """The noise scales of a fitted model's vce, from explicit hat matrices."""
    h = model.bandwidth_
    degree = getattr(model, "degree", 0)
    w = model.sample_weight_
    if model.vce == "nn":
        raw = np.abs(naive.nn_residuals_brute(X / h, Y, 3))  # h differs by feature here
    else:
        H = naive.equivalent_kernel(X, X, model.kernel, h, degree, w)
        e = Y - H @ Y
        lev = np.diag(H)
        raw = np.abs(e) * {"hc0": np.ones(len(X)),
                           "hc1": np.full(len(X), np.sqrt(len(X) / (len(X) - lev.sum()))),
                           "hc2": 1 / np.sqrt(1 - lev), "hc3": 1 / (1 - lev)}[model.vce][:, None]
    if model.variance_smoothing == 0:
        return raw
    Wm = naive.weights(X, X, model.kernel, h * model.variance_smoothing, key_weight=w)
    return np.sqrt(Wm @ raw ** 2)


@pytest.mark.parametrize("vce", ["nn", "hc0", "hc1", "hc2", "hc3"])
@pytest.mark.parametrize("smoothing", [0.0, 2.0])
@pytest.mark.parametrize("cls,degree", [(NadarayaWatsonRegressor, 0),
                                        (LocalPolynomialRegressor, 1),
                                        (LocalPolynomialRegressor, 2)])
def test_estimator_standard_errors(rng, cls, degree, vce, smoothing):
    X = rng.uniform(size=(60, 2))
    Y = np.column_stack([np.sin(3 * X[:, 0]), X[:, 1] ** 2]) + rng.normal(scale=0.2,
                                                                          size=(60, 2))
    w = rng.uniform(0.5, 2.0, size=60)
    kwargs = {} if cls is NadarayaWatsonRegressor else {"degree": degree}
    model = cls(kernel="gaussian", bandwidth=np.array([0.3, 0.4]), vce=vce,
                variance_smoothing=smoothing, **kwargs).fit(X, Y, sample_weight=w)
    Q = rng.uniform(size=(7, 2))
    S = _noise_reference(model, X, Y)
    L = naive.equivalent_kernel(Q, X, "gaussian", model.bandwidth_, degree, w)
    pred, se = model.predict(Q, return_se=True)
    assert naive.relative_error(pred, L @ Y) <= 1e-10
    assert naive.relative_error(se, np.sqrt(L ** 2 @ S ** 2)) <= 1e-9
    assert naive.relative_error(model.predict(Q), pred) <= 1e-12
    # asymptotic intervals: the estimate plus or minus z standard errors
    Lbc = naive.bias_corrected_kernel(Q, X, "gaussian", model.bandwidth_, degree, w)
    z = stats.norm.ppf(0.975)
    lo, hi = model.predict_interval(Q)
    center, half = Lbc @ Y, z * np.sqrt(Lbc ** 2 @ S ** 2)
    assert naive.relative_error(lo, center - half) <= 1e-9
    assert naive.relative_error(hi, center + half) <= 1e-9
    lo, hi = model.predict_interval(Q, bias_correction=False, kind="prediction")
    noise = naive.weights(Q, X, "gaussian", model.bandwidth_, key_weight=w) @ S ** 2
    half = z * np.sqrt(L ** 2 @ S ** 2 + noise)
    assert naive.relative_error(lo, L @ Y - half) <= 1e-9
    assert naive.relative_error(hi, L @ Y + half) <= 1e-9


def test_nadaraya_watson_return_std_and_se_together(rng):
    X = rng.uniform(size=(40, 1))
    y = rng.normal(size=40)
    model = NadarayaWatsonRegressor(bandwidth=0.2).fit(X, y)
    pred, std, se = model.predict(X[:5], return_std=True, return_se=True)
    p0, s0 = model.predict(X[:5], return_std=True)
    np.testing.assert_allclose(pred, p0, rtol=1e-12)
    np.testing.assert_allclose(std, s0, rtol=1e-10)
    assert se.shape == (5,) and np.all(se > 0) and np.all(se < std)


def _bootstrap_reference(model, Q, B, seed, multiplier="rademacher"):
    """Deviations of the bias-corrected fit to residuals times multipliers, by explicit weights."""
    X = model.X_fit_
    Y = model.y_fit_.reshape(len(X), -1)
    res = model._noise_residuals()
    # the multipliers, drawn independently of the library: block streams of
    # 4096 keys, numpy.random.default_rng([seed, block]) for each
    u = np.random.default_rng([seed, 0]).random((4096, B))[:len(X)]
    if multiplier == "rademacher":
        eta = np.where(u < 0.5, -1.0, 1.0)
    else:
        s5 = np.sqrt(5.0)
        eta = np.where(u < (s5 + 1) / (2 * s5), -(s5 - 1) / 2, (s5 + 1) / 2)
    Lbc = naive.bias_corrected_kernel(Q, X, model.kernel, model.bandwidth_,
                                      getattr(model, "degree", 0), model.sample_weight_)
    se = np.sqrt(Lbc ** 2 @ res ** 2)
    center = Lbc @ Y
    t = np.stack([(Lbc @ (res[:, [c]] * eta)) / se[:, [c]] for c in range(Y.shape[1])], axis=2)
    return center, se, np.moveaxis(t, 1, 0)  # (B, n, p)


@pytest.mark.parametrize("multiplier", ["rademacher", "mammen"])
def test_bootstrap_intervals_equal_the_reference(rng, multiplier):
    X = rng.uniform(size=(80, 1))
    y = np.sin(5 * X[:, 0]) + rng.normal(scale=0.2, size=80)
    model = LocalPolynomialRegressor(degree=1, bandwidth=0.15).fit(X, y)
    Q = np.linspace(0, 1, 9)[:, None]
    B = 301
    center, se, t = _bootstrap_reference(model, Q, B, 7, multiplier)
    lo, hi = model.predict_interval(Q, level=0.9, method="bootstrap", n_bootstrap=B,
                                    random_state=7, multiplier=multiplier)
    q_lo, q_hi = np.quantile(t, 0.05, axis=0), np.quantile(t, 0.95, axis=0)
    assert naive.relative_error(lo, (center - q_hi * se)[:, 0]) <= 1e-9
    assert naive.relative_error(hi, (center - q_lo * se)[:, 0]) <= 1e-9
    lo, hi = model.predict_interval(Q, level=0.9, method="bootstrap", n_bootstrap=B,
                                    random_state=7, multiplier=multiplier, simultaneous=True)
    c = np.quantile(np.abs(t).max(axis=1), 0.9, axis=0)
    assert naive.relative_error(lo, (center - c * se)[:, 0]) <= 1e-9
    assert naive.relative_error(hi, (center + c * se)[:, 0]) <= 1e-9


def test_bootstrap_does_not_depend_on_threads_or_tiles(rng, monkeypatch):
    from nwattn import _config

    X = rng.uniform(size=(150, 2))
    Y = np.column_stack([X[:, 0], np.cos(3 * X[:, 1])]) + rng.normal(scale=0.1, size=(150, 2))
    Q = rng.uniform(size=(11, 2))
    kw = dict(method="bootstrap", n_bootstrap=99, random_state=3, simultaneous=True)
    one = LocalPolynomialRegressor(bandwidth=0.3, n_jobs=1).fit(X, Y).predict_interval(Q, **kw)
    two = LocalPolynomialRegressor(bandwidth=0.3, n_jobs=2).fit(X, Y).predict_interval(Q, **kw)
    monkeypatch.setattr(_config, "GEMM_QUERY_BLOCK", 3)
    monkeypatch.setattr(_config, "QUERY_BLOCK", 3)
    monkeypatch.setattr(_config, "KEY_TILE", 16)
    monkeypatch.setattr(_config, "MIN_SPLIT_KEYS", 8)
    tiles = LocalPolynomialRegressor(bandwidth=0.3).fit(X, Y).predict_interval(Q, **kw)
    for other in (two, tiles):
        for a, b in zip(one, other):
            assert naive.relative_error(a, b) <= 1e-12


def test_bootstrap_variance_is_the_squared_standard_error(rng):
    # E[eta^2] = 1: the bootstrap deviations' variance is sum_j l_j^2 r_j^2
    X = rng.uniform(size=(100, 1))
    y = X[:, 0] + rng.normal(scale=0.3, size=100)
    model = NadarayaWatsonRegressor(bandwidth=0.1).fit(X, y)
    Q = np.array([[0.2], [0.5], [0.9]])
    center, se, noise, smoothers = model._moment_fit(Q, False)
    t = model._bootstrap_t(Q, False, se, smoothers, 4000, "mammen", 0)
    np.testing.assert_allclose(t.std(axis=0)[:, 0], 1.0, atol=0.05)


def test_uncertainty_input_errors(rng):
    X = rng.uniform(size=(30, 1))
    y = rng.normal(size=30)
    model = LocalPolynomialRegressor(bandwidth=0.3).fit(X, y)
    for kwargs, match in [({"level": 1.5}, "level"), ({"level": 0}, "level"),
                          ({"kind": "band"}, "kind"), ({"method": "jackknife"}, "method"),
                          ({"simultaneous": True}, "simultaneous"),
                          ({"kind": "prediction", "method": "bootstrap"}, "prediction"),
                          ({"method": "bootstrap", "n_bootstrap": 0}, "n_bootstrap"),
                          ({"method": "bootstrap", "n_bootstrap": 2.5}, "n_bootstrap"),
                          ({"method": "bootstrap", "multiplier": "normal"}, "multiplier")]:
        with pytest.raises(ValueError, match=match):
            model.predict_interval(X[:3], **kwargs)
    with pytest.raises(ValueError, match="vce"):
        LocalPolynomialRegressor(vce="hc4").fit(X, y)
    with pytest.raises(ValueError, match="variance_smoothing"):
        NadarayaWatsonRegressor(variance_smoothing=-1).fit(X, y)
    dot = NadarayaWatsonRegressor(kernel="scaled_dot", bandwidth=1.0).fit(X, y)
    with pytest.raises(ValueError, match="smoothing kernel"):
        dot.predict(X[:2], return_se=True)
    with pytest.raises(ValueError, match="key_std"):
        local_polynomial_state(X[:2], X, y, bandwidth=0.3, key_std=-np.ones(30))
    with pytest.raises(ValueError, match="key_std"):
        local_polynomial_state(X[:2], X, y, bandwidth=0.3, key_std=np.ones(29))


def test_singular_and_empty_queries_give_nan(rng):
    X = rng.uniform(size=(30, 1))
    y = rng.normal(size=30)
    model = LocalPolynomialRegressor(degree=1, kernel="epanechnikov", bandwidth=0.05,
                                     fallback="mean").fit(X, y)
    Q = np.array([[5.0], [X[0, 0]]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularDesignWarning)
        pred, se = model.predict(Q, return_se=True)
        lo, hi = model.predict_interval(Q)
    assert np.isfinite(pred[0]) and np.isnan(se[0])
    assert np.isnan(lo[0]) and np.isnan(hi[0])


@pytest.mark.slow
def test_coverage_by_simulation():
    """95 % intervals on y = sin(2 pi x) + noise, n = 500, 400 replications."""
    f = lambda x: np.sin(2 * np.pi * x)  # noqa: E731
    points = np.array([[0.0], [0.05], [0.25], [0.5], [0.75], [0.95], [1.0]])
    grid = np.linspace(0, 1, 41)[:, None]
    R = 400
    hits = np.zeros(len(points))
    band = 0
    for r in range(R):
        rng = np.random.default_rng(1000 + r)
        X = rng.uniform(size=(500, 1))
        y = f(X[:, 0]) + rng.normal(scale=0.3, size=500)
        model = LocalPolynomialRegressor(degree=1).fit(X, y)
        lo, hi = model.predict_interval(points)
        hits += (lo <= f(points[:, 0])) & (f(points[:, 0]) <= hi)
        lo, hi = model.predict_interval(grid, method="bootstrap", simultaneous=True,
                                        random_state=r)
        band += np.all((lo <= f(grid[:, 0])) & (f(grid[:, 0]) <= hi))
    coverage = hits / R
    print("pointwise coverage", coverage, "band", band / R)
    assert np.all((coverage >= 0.92) & (coverage <= 0.98)), coverage
    # measured 92.25 %: 95 % is not reached, the cross-validated bandwidth's
    # variability costs a few points (docs/uncertainty.rst)
    assert band / R >= 0.91, band / R


def test_fit_display(rng):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nwattn.display import FitDisplay

    X = rng.uniform(size=(120, 1))
    y = np.sin(4 * X[:, 0]) + rng.normal(scale=0.2, size=120)
    model = LocalPolynomialRegressor(bandwidth=0.1).fit(X, y)
    disp = FitDisplay.from_estimator(model, X, y, n_points=30, n_bootstrap=99, random_state=1)
    grid = np.linspace(X.min(), X.max(), 30)[:, None]
    np.testing.assert_allclose(disp.fit, model.predict(grid))
    lo, hi = model.predict_interval(grid)
    np.testing.assert_allclose(disp.interval[0], lo)
    np.testing.assert_allclose(disp.interval[1], hi)
    assert np.all(disp.band[0] <= lo + 1e-12) and np.all(disp.band[1] >= hi - 1e-12)
    assert disp.line_ is not None and disp.band_ is not None and disp.scatter_ is not None
    assert disp.figure_ is disp.ax_.figure
    plt.close(disp.figure_)
    with pytest.raises(ValueError, match="one feature"):
        FitDisplay.from_estimator(model, np.hstack([X, X]))
    two = LocalPolynomialRegressor(bandwidth=0.3).fit(np.hstack([X, X]), y)
    with pytest.raises(ValueError, match="one feature"):
        FitDisplay.from_estimator(two, X)
    with pytest.raises(ValueError, match="n_points"):
        FitDisplay.from_estimator(model, X, n_points=1)


def _kernels_from_weights(W, Xc, Qc, degree):
    """The fit's weights and the bias-corrected fit's, from dense kernel weights ``W``."""
    L = np.empty(W.shape)
    Lbc = np.empty(W.shape)
    for i in range(W.shape[0]):
        Z = Xc - Qc[i]
        Bq = naive._basis_up_to(Z, degree + 1)
        Pp = naive._basis_up_to(Z[:1], degree).shape[1]
        Bp, Br = Bq[:, :Pp], Bq[:, Pp:]
        BpW = (Bp * W[i][:, None]).T
        L[i] = np.linalg.solve(BpW @ Bp, BpW)[0]
        coef_q = np.linalg.solve(Bq.T @ (Bq * W[i][:, None]), (Bq * W[i][:, None]).T)
        Lbc[i] = np.linalg.solve(BpW @ Bp, BpW - BpW @ Br @ coef_q[Pp:])[0]
    return L, Lbc


@pytest.mark.parametrize("cls,degree", [(NadarayaWatsonRegressor, 0),
                                        (LocalPolynomialRegressor, 1)])
def test_standard_errors_with_a_categorical_feature(rng, cls, degree):
    n = 80
    X = np.column_stack([rng.uniform(size=n), np.arange(n) % 3])
    y = np.sin(4 * X[:, 0]) + 0.5 * X[:, 1] + rng.normal(scale=0.2, size=n)
    Q = np.column_stack([rng.uniform(size=6), np.arange(6) % 3])
    bw = np.array([0.2, 0.3])  # h of the continuous column, lam of the categorical one
    kwargs = {} if cls is NadarayaWatsonRegressor else {"degree": degree}
    model = cls(bandwidth=bw, categorical_features=[1], **kwargs).fit(X, y)
    kern = ["aitchison_aitken"]

    def weights(A, B, scale=1.0):
        return naive.mixed_weights(A, B, bw * [scale, 1.0], [1], kern, [3])

    Xc, Qc = X[:, :1] / bw[0], Q[:, :1] / bw[0]
    H, _ = _kernels_from_weights(weights(X, X), Xc, Xc, degree)
    lev = np.diag(H)
    raw = np.abs(y - H @ y) / (1 - lev)
    Wm = weights(X, X, model.variance_smoothing)
    sigma = np.sqrt((Wm / Wm.sum(axis=1, keepdims=True)) @ raw ** 2)
    L, Lbc = _kernels_from_weights(weights(Q, X), Xc, Qc, degree)
    pred, se = model.predict(Q, return_se=True)
    assert naive.relative_error(pred, L @ y) <= 1e-9
    assert naive.relative_error(se, np.sqrt(L ** 2 @ sigma ** 2)) <= 1e-9
    lo, hi = model.predict_interval(Q)
    z = stats.norm.ppf(0.975)
    half = z * np.sqrt(Lbc ** 2 @ sigma ** 2)
    assert naive.relative_error(lo, Lbc @ y - half) <= 1e-9
    assert naive.relative_error(hi, Lbc @ y + half) <= 1e-9
    with pytest.raises(ValueError, match="bootstrap"):
        model.predict_interval(Q, method="bootstrap")
    with pytest.raises(ValueError, match="vce"):
        cls(bandwidth=bw, categorical_features=[1], vce="nn", **kwargs).fit(X, y).predict(
            Q, return_se=True)

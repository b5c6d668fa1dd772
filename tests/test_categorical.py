"""Categorical and ordered features: discrete kernels, their parameters and their search."""

import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from nwattn import LocalPolynomialRegressor, NadarayaWatsonRegressor
from nwattn.bandwidth import loo_cv_score, select_bandwidth
from nwattn.discrete import DiscreteFeatures
from nwattn.exceptions import EmptyNeighborhoodWarning
from nwattn.kernels import DISCRETE_KERNELS, get_discrete_kernel
from nwattn.ops import (attention_pool, attention_pool_state, finalize_state, local_polynomial,
                        merge_states)

from . import naive

UNORDERED = ("aitchison_aitken", "li_racine")
ORDERED = ("li_racine_ordered", "wang_van_ryzin")


def mixed_data(rng, n=40, n_cat=3, n_ord=4):
    """Columns: continuous, unordered (every code present), continuous, ordered."""
    u = np.arange(n) % n_cat
    o = np.arange(n) % n_ord
    rng.shuffle(u)
    rng.shuffle(o)
    X = np.column_stack([rng.uniform(size=n), u, rng.uniform(size=n), o]).astype(np.float64)
    y = np.sin(5 * X[:, 0]) + 0.7 * u - 0.3 * o + rng.normal(scale=0.2, size=n)
    return X, y


def spec(cat_kernel="aitchison_aitken", ord_kernel="li_racine", n_cat=3, n_ord=4):
    return DiscreteFeatures([1, 3], [n_cat, n_ord], ordered=[False, True],
                            categorical_kernel=cat_kernel, ordered_kernel=ord_kernel)


# ------------------------------------------------------------------ catalogue


@pytest.mark.parametrize("name", UNORDERED + ORDERED)
def test_catalogue_tables_match_formulas(name, rng):
    kern = DISCRETE_KERNELS[name]
    c = 5
    lam = rng.uniform(0, kern.max_lambda(c))
    a, b = np.meshgrid(np.arange(c), np.arange(c), indexing="ij")
    assert np.allclose(kern.weights(lam, c), naive.discrete_kernel(name, lam, a, b, c),
                       rtol=1e-14)
    eps = 1e-6
    fd = (naive.discrete_kernel(name, lam + eps, a, b, c)
          - naive.discrete_kernel(name, lam - eps, a, b, c)) / (2 * eps)
    assert np.allclose(kern.dweights(lam, c), fd, atol=1e-7)


def test_kernel_names_follow_the_feature_kind():
    assert get_discrete_kernel("li_racine", ordered=False).name == "li_racine"
    assert get_discrete_kernel("li_racine", ordered=True).name == "li_racine_ordered"
    with pytest.raises(ValueError, match="unordered"):
        get_discrete_kernel("wang_van_ryzin", ordered=False)


# ------------------------------------------------------------- the operations


@pytest.mark.parametrize("cat_kernel", UNORDERED)
@pytest.mark.parametrize("ord_kernel", ("li_racine", "wang_van_ryzin"))
def test_pool_equals_reference(cat_kernel, ord_kernel, rng, small_blocks):
    X, y = mixed_data(rng)
    disc = spec(cat_kernel, ord_kernel)
    bw = np.array([0.3, 0.4 * disc.max_lambdas[0], 0.6, 0.35])
    Q = X[:7] + [0.05, 0, -0.02, 0]
    names = [k.name for k in disc.kernels]
    ref = naive.mixed_regression(Q, X, y, bw, [1, 3], names, [3, 4])
    got = attention_pool(Q, X, y, bandwidth=bw, discrete=disc)
    assert np.allclose(got, ref, rtol=1e-12, atol=1e-13)


def test_pool_states_of_key_shards_merge_to_the_whole(rng, small_blocks):
    X, y = mixed_data(rng, n=30)
    disc = spec()
    bw = np.array([0.3, 0.2, 0.5, 0.6])
    whole = attention_pool_state(X, X, y, bandwidth=bw, discrete=disc, exclude_self=True)
    a = attention_pool_state(X, X[:13], y[:13], bandwidth=bw, discrete=disc, exclude_self=True)
    b = attention_pool_state(X, X[13:], y[13:], bandwidth=bw, discrete=disc, exclude_self=True,
                             key_offset=13)
    assert np.allclose(finalize_state(merge_states(a, b)), finalize_state(whole), rtol=1e-12)


@given(lam_u=st.floats(0.0, 1.0), lam_o=st.floats(0.0, 1.0), seed=st.integers(0, 2**31))
def test_pool_equals_reference_at_any_lambda(lam_u, lam_o, seed):
    rng = np.random.default_rng(seed)
    X, y = mixed_data(rng, n=25)
    disc = spec("li_racine", "li_racine")
    bw = np.array([0.4, lam_u, 0.7, lam_o])
    Q = X[:5] + [0.01, 0, 0.02, 0]
    ref = naive.mixed_regression(Q, X, y, bw, [1, 3], ["li_racine", "li_racine_ordered"],
                                 [3, 4])
    got = attention_pool(Q, X, y, bandwidth=bw, discrete=disc)
    assert np.allclose(got, ref, rtol=1e-11, atol=1e-12)


def test_local_linear_equals_reference(rng, small_blocks):
    X, y = mixed_data(rng)
    disc = spec("aitchison_aitken", "wang_van_ryzin")
    bw = np.array([0.25, 0.3, 0.5, 0.4])
    Q = X[:6] + [0.03, 0, 0.01, 0]
    ref = naive.mixed_regression(Q, X, y, bw, [1, 3], ["aitchison_aitken", "wang_van_ryzin"],
                                 [3, 4], degree=1)
    got = local_polynomial(Q, X, y, bandwidth=bw, degree=1, discrete=disc)
    assert np.allclose(got, ref, rtol=1e-10, atol=1e-11)


# ------------------------------------------------------------------ statsmodels


def _statsmodels_data(rng, n=35):
    X, y = mixed_data(rng, n=n)
    # statsmodels' column order: c, u, c, o as var_type "cuco"
    return X, y


def test_local_constant_equals_statsmodels_kernelreg(rng):
    from statsmodels.nonparametric.kernel_regression import KernelReg

    X, y = _statsmodels_data(rng)
    bw = np.array([0.3, 0.35, 0.5, 0.45])
    Q = X[:8] + [0.02, 0, -0.03, 0]
    mean, _ = KernelReg(y, X, var_type="cuco", reg_type="lc", bw=bw).fit(Q)
    disc = spec("aitchison_aitken", "wang_van_ryzin")
    got = attention_pool(Q, X, y, bandwidth=bw, discrete=disc)
    assert np.allclose(got, mean, rtol=1e-10, atol=1e-10)


def test_local_linear_equals_statsmodels_kernelreg(rng):
    """statsmodels' local linear puts every column, discrete ones too, in the local
    design; nwattn (as R's np) puts only the continuous ones. Giving nwattn the
    discrete columns a second time as continuous columns of a bandwidth so wide
    that their gaussian weights are 1 to rounding adds them to its design:
    the two then agree."""
    from statsmodels.nonparametric.kernel_regression import KernelReg

    X, y = _statsmodels_data(rng)
    bw = np.array([0.3, 0.35, 0.5, 0.45])
    Q = X[:8] + [0.02, 0, -0.03, 0]
    mean, _ = KernelReg(y, X, var_type="cuco", reg_type="ll", bw=bw).fit(Q)
    wide = 1e9
    Xe = np.column_stack([X, X[:, [1, 3]]])
    Qe = np.column_stack([Q, Q[:, [1, 3]]])
    bwe = np.concatenate([bw, [wide, wide]])
    got = local_polynomial(Qe, Xe, y, bandwidth=bwe, degree=1,
                           discrete=spec("aitchison_aitken", "wang_van_ryzin"))
    assert np.allclose(got, mean, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------- lambda's three jobs


@pytest.mark.parametrize("cat_kernel", UNORDERED)
def test_lambda_zero_stratifies(cat_kernel, rng):
    X, y = mixed_data(rng)
    disc = DiscreteFeatures([1], [3], categorical_kernel=cat_kernel)
    X3 = X[:, :3]
    Q = X3[:9] + [0.01, 0, 0.02]
    got = attention_pool(Q, X3, y, bandwidth=[0.3, 0.0, 0.4], discrete=disc)
    for c in range(3):
        rows = Q[:, 1] == c
        keys = X3[:, 1] == c
        if not rows.any():  # no query of this category in this draw
            continue
        sep = attention_pool(Q[rows][:, [0, 2]], X3[keys][:, [0, 2]], y[keys],
                             bandwidth=[0.3, 0.4])
        assert np.allclose(got[rows], sep, rtol=1e-12)


@pytest.mark.parametrize("name", ("aitchison_aitken", "li_racine", "li_racine_ordered"))
def test_lambda_at_its_maximum_drops_the_feature(name, rng):
    X, y = mixed_data(rng)
    kern = DISCRETE_KERNELS[name]
    disc = DiscreteFeatures([1], [3], ordered=kern.ordered,
                            **({"ordered_kernel": "li_racine"} if kern.ordered
                               else {"categorical_kernel": name}))
    X3 = X[:, :3]
    Q = X3[:9] + [0.01, 0, 0.02]
    got = attention_pool(Q, X3, y, bandwidth=[0.3, disc.max_lambdas[0], 0.4], discrete=disc)
    dropped = attention_pool(Q[:, [0, 2]], X3[:, [0, 2]], y, bandwidth=[0.3, 0.4])
    assert np.allclose(got, dropped, rtol=1e-12)


def test_local_linear_lambda_zero_stratifies(rng):
    X, y = mixed_data(rng, n=60)
    disc = DiscreteFeatures([1], [3])
    X3 = X[:, :3]
    Q = X3[:9] + [0.01, 0, 0.02]
    got = local_polynomial(Q, X3, y, bandwidth=[0.3, 0.0, 0.4], discrete=disc)
    for c in range(3):
        rows, keys = Q[:, 1] == c, X3[:, 1] == c
        if not rows.any():  # no query of this category in this draw
            continue
        sep = local_polynomial(Q[rows][:, [0, 2]], X3[keys][:, [0, 2]], y[keys],
                               bandwidth=[0.3, 0.4])
        assert np.allclose(got[rows], sep, rtol=1e-10)


def test_empty_category_gives_nan_and_a_warning(rng):
    X, y = mixed_data(rng)
    disc = DiscreteFeatures([1], [4])  # category 3 has no key
    with pytest.warns(EmptyNeighborhoodWarning):
        got = attention_pool([[0.5, 3, 0.5], [0.5, 0, 0.5]], X[:, :3], y,
                             bandwidth=[0.3, 0.0, 0.4], discrete=disc)
    assert np.isnan(got[0]) and np.isfinite(got[1])


# ------------------------------------------------------ leave-one-out and search


@pytest.mark.parametrize("degree", (0, 1))
def test_loo_score_equals_refits(degree, rng):
    X, y = mixed_data(rng, n=30)
    disc = spec("aitchison_aitken", "wang_van_ryzin")
    bw = np.array([0.3, 0.25, 0.6, 0.4])
    names = ["aitchison_aitken", "wang_van_ryzin"]
    ref = naive.mixed_loo_score(X, y, bw, [1, 3], names, [3, 4], degree)
    from nwattn.loo import LooProblem

    got = LooProblem(X, y, discrete=disc, degree=degree).value(bw)
    assert np.isclose(got, ref, rtol=1e-10)


@pytest.mark.parametrize("degree", (0, 1))
def test_loo_gradient_equals_finite_differences(degree, rng):
    from nwattn.loo import LooProblem

    X, y = mixed_data(rng, n=30)
    disc = spec("li_racine", "wang_van_ryzin")
    problem = LooProblem(X, y, discrete=disc, degree=degree)
    bw = np.array([0.3, 0.4, 0.6, 0.5])
    _, grad = problem.value_and_gradient(bw)
    eps = 1e-6
    for t in range(4):
        up, down = bw.copy(), bw.copy()
        if t in (1, 3):  # d / d lam
            up[t] += eps
            down[t] -= eps
        else:  # d / d log h
            up[t] *= np.exp(eps)
            down[t] *= np.exp(-eps)
        fd = (problem.value(up) - problem.value(down)) / (2 * eps)
        assert np.isclose(grad[t], fd, rtol=1e-5, atol=1e-8), t


def test_gradient_at_lambda_zero_is_the_one_sided_derivative(rng):
    X, y = mixed_data(rng, n=30)
    disc = spec()
    bw = np.array([0.3, 0.0, 0.6, 0.5])
    _, grad = loo_cv_score(X, y, bandwidth=bw, discrete=disc, return_gradient=True)
    # a one-sided difference of second order: the first-order one's error,
    # eps times the curvature, reached 1.4e-4 of the slope in one draw
    eps = 1e-5
    f = []
    for k in range(3):
        at = bw.copy()
        at[1] = k * eps
        f.append(loo_cv_score(X, y, bandwidth=at, discrete=disc))
    fd = (-3.0 * f[0] + 4.0 * f[1] - f[2]) / (2.0 * eps)
    assert np.isfinite(grad).all()
    assert np.isclose(grad[1], fd, rtol=1e-4, atol=1e-8)


def test_search_keeps_relevant_categories_apart_and_smooths_out_noise(rng):
    n = 240
    u = np.arange(n) % 3
    noise = np.arange(n) % 4
    rng.shuffle(u)
    rng.shuffle(noise)
    x = rng.uniform(size=n)
    X = np.column_stack([x, u, noise]).astype(float)
    y = np.sin(4 * x) + 2.0 * u + rng.normal(scale=0.1, size=n)
    disc = DiscreteFeatures([1, 2], [3, 4])
    sel = select_bandwidth(X, y, discrete=disc)
    assert sel.bandwidth[1] < 0.05 * disc.max_lambdas[0]
    assert sel.bandwidth[2] > 0.5 * disc.max_lambdas[1]
    assert sel.bandwidth[0] > 0


@pytest.mark.parametrize("per_feature", [False, True])
def test_large_mixed_search_starts_from_a_pilot(rng, monkeypatch, per_feature):
    """From _WALK_MIN_SAMPLES on, the joint search starts where the same search on a subset
    ended (continuous bandwidths scaled to the whole set) and reaches the same minimum."""
    from nwattn import bandwidth as bw
    from nwattn.loo import LooProblem

    n = 3200
    u = rng.integers(0, 3, n)
    x = rng.uniform(size=(n, 2))
    X = np.column_stack([x, u]).astype(float)
    y = np.sin(4 * x[:, 0]) + x[:, 1] + 0.5 * u + rng.normal(scale=0.3, size=n)
    disc = DiscreteFeatures([2], [3])
    ref = bw.search(LooProblem(X, y, discrete=disc), per_feature)
    monkeypatch.setattr(bw, "_WALK_MIN_SAMPLES", 1600)
    starts = []
    real = bw._pilot

    def recorded(*args, **kwargs):
        starts.append(real(*args, **kwargs))
        return starts[-1]

    monkeypatch.setattr(bw, "_pilot", recorded)
    got = bw.search(LooProblem(X, y, discrete=disc), per_feature)
    assert len(starts) == 1 and starts[0][0].shape == (3,)
    # The pilot is a start, not the answer: a subset's selection varies.
    assert not np.allclose(starts[0][0], got.bandwidth, rtol=1e-3)
    assert got.cv_score == pytest.approx(ref.cv_score, rel=1e-6)
    np.testing.assert_allclose(got.bandwidth[:2], ref.bandwidth[:2], rtol=2e-2)
    assert abs(got.bandwidth[2] - ref.bandwidth[2]) < 2e-2 * disc.max_lambdas[0]


class _Quadratic:
    """A score that is a quadratic in the mixed search's variables (log h, lam)."""

    def __init__(self, discrete, continuous, a, c, common):
        self.discrete, self.continuous = discrete, np.asarray(continuous)
        self.a, self.c, self.common = np.asarray(a, float), np.asarray(c, float), common
        self.target_variance = 4.0

    def value_and_gradient(self, cols):
        cols = np.asarray(cols, dtype=float)
        log_h = np.log(cols[self.continuous])
        t = np.concatenate([log_h[:1] if self.common else log_h, cols[self.discrete.columns]])
        g_t = 2 * self.a * (t - self.c)
        g = np.zeros(cols.shape[0])
        k = 1 if self.common else len(self.continuous)
        # A common log h is shared by the continuous columns: split its slope.
        g[self.continuous] = g_t[0] / len(self.continuous) if self.common else g_t[:k]
        g[self.discrete.columns] = g_t[k:]
        return float(np.sum(self.a * (t - self.c) ** 2)), g


@pytest.mark.parametrize("common", [True, False])
def test_pilot_scales_are_square_roots_of_the_curvatures(common):
    """The mixed search's scales from a subset: sqrt of each variable's curvature, relative to
    their geometric mean; a flat direction gets the mean; a step at a bound goes inwards."""
    from nwattn import bandwidth as bw

    disc = DiscreteFeatures([1, 3], [3, 4])
    k = 1 if common else 2
    a = [0.5, 200.0, 0.0] if common else [0.5, 2.0, 200.0, 0.0]
    c = [-2.0, 0.01, 0.7] if common else [-2.0, -1.0, 0.01, 0.7]
    problem = _Quadratic(disc, [0, 2], a, c, common)
    found = np.array([np.exp(-2.0), 0.3, np.exp(-1.0 if not common else -2.0), 0.75])
    lower, upper = [-10.0] * k, [2.0] * k

    def in_search_variables(g):
        gh = g[[0, 2]]
        return np.concatenate([[gh.sum()] if common else gh, g[[1, 3]]])

    got = bw._pilot_scales(problem, found, k, lower, upper, disc.max_lambdas,
                           in_search_variables)
    curv = np.sqrt(2 * np.asarray(a[:-1])) / problem.target_variance ** 0.5
    expected = np.append(curv, np.nan)
    mean = np.exp(np.mean(np.log(curv)))
    expected[-1] = mean  # the flat direction (lam of the last feature, at its upper bound)
    np.testing.assert_allclose(got, expected / mean, rtol=1e-9)


# ------------------------------------------------------------------ estimators


def test_estimator_cv_reports_every_bandwidth(rng):
    X, y = mixed_data(rng, n=80)
    model = NadarayaWatsonRegressor(categorical_features=[1], ordered_features=[3]).fit(X, y)
    assert model.bandwidth_.shape == (4,)
    assert model.feature_kinds_.tolist() == ["continuous", "categorical", "continuous",
                                             "ordered"]
    assert model.n_categories_.tolist() == [0, 3, 0, 4]
    ref = naive.mixed_regression(X[:5], X, y, model.bandwidth_, [1, 3],
                                 ["aitchison_aitken", "li_racine_ordered"], [3, 4])
    assert np.allclose(model.predict(X[:5]), ref, rtol=1e-10)


def test_estimator_feature_specifications_agree(rng):
    pd = pytest.importorskip("pandas")
    X, y = mixed_data(rng, n=30)
    bw = [0.3, 0.2, 0.5, 0.4]
    by_index = NadarayaWatsonRegressor(bandwidth=bw, categorical_features=[1],
                                       ordered_features=[3]).fit(X, y)
    by_mask = NadarayaWatsonRegressor(bandwidth=bw,
                                      categorical_features=[False, True, False, False],
                                      ordered_features=[False, False, False, True]).fit(X, y)
    df = pd.DataFrame({"a": X[:, 0],
                       "region": pd.Categorical.from_codes(X[:, 1].astype(int), ["n", "s", "w"]),
                       "b": X[:, 2],
                       "level": pd.Categorical.from_codes(X[:, 3].astype(int), [1, 2, 3, 4],
                                                          ordered=True)})
    by_dtype = NadarayaWatsonRegressor(bandwidth=bw, categorical_features="from_dtype").fit(df, y)
    frame_codes = df.assign(region=X[:, 1], level=X[:, 3])
    by_name = NadarayaWatsonRegressor(bandwidth=bw, categorical_features=["region"],
                                      ordered_features=["level"]).fit(frame_codes, y)
    Q = X[:6]
    want = by_index.predict(Q)
    assert np.allclose(by_mask.predict(Q), want, rtol=1e-13)
    assert by_dtype.feature_kinds_.tolist() == by_index.feature_kinds_.tolist()
    assert np.allclose(by_dtype.predict(df.iloc[:6]), want, rtol=1e-13)
    assert np.allclose(by_name.predict(frame_codes.iloc[:6]), want, rtol=1e-13)


def test_local_polynomial_estimator_uses_discrete_weights(rng):
    X, y = mixed_data(rng, n=50)
    bw = [0.3, 0.2, 0.5, 0.4]
    model = LocalPolynomialRegressor(bandwidth=bw, categorical_features=[1],
                                     ordered_features=[3]).fit(X, y)
    pred, grad = model.predict(X[:5], return_gradient=True)
    ref = naive.mixed_regression(X[:5], X, y, bw, [1, 3],
                                 ["aitchison_aitken", "li_racine_ordered"], [3, 4], degree=1)
    assert np.allclose(pred, ref, rtol=1e-10)
    assert np.isnan(grad[:, [1, 3]]).all() and np.isfinite(grad[:, [0, 2]]).all()


@pytest.mark.parametrize("bad, match", [
    (1.5, "non-integer"), (-1.0, "negative"), (np.nan, "NaN"), (7.0, "unseen"),
])
def test_bad_codes_are_refused_naming_the_feature(bad, match, rng):
    X, y = mixed_data(rng, n=30)
    model = NadarayaWatsonRegressor(bandwidth=[0.3, 0.2, 0.5, 0.4], categorical_features=[1],
                                    ordered_features=[3]).fit(X, y)
    Q = X[:3].copy()
    Q[1, 1] = bad
    with pytest.raises(ValueError, match=f"categorical feature 1.*{match}|{match}.*feature 1"):
        model.predict(Q)
    if match != "unseen":
        Xb = X.copy()
        Xb[4, 3] = bad
        with pytest.raises(ValueError, match=f"ordered feature 3 .*{match}"):
            NadarayaWatsonRegressor(bandwidth="cv", ordered_features=[3]).fit(Xb, y)


def test_float_column_with_fractions_is_refused(rng):
    X, y = mixed_data(rng, n=30)
    with pytest.raises(ValueError, match="categorical feature 0 .*non-integer"):
        NadarayaWatsonRegressor(categorical_features=[0]).fit(X, y)


def test_unseen_category_by_rule(rng):
    X, y = mixed_data(rng, n=30)
    bw = [0.3, 0.4, 0.5, 0.4]
    model = NadarayaWatsonRegressor(bandwidth=bw, categorical_features=[1],
                                    ordered_features=[3], handle_unknown="unequal").fit(X, y)
    Q = X[:2].copy()
    Q[:, 1] = 5  # no training point has it: every one weighs lam / (c - 1)
    ref = naive.mixed_regression(Q[:, [0, 2, 3]], X[:, [0, 2, 3]], y, [0.3, 0.5, 0.4], [2],
                                 ["li_racine_ordered"], [4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.allclose(model.predict(Q), ref, rtol=1e-12)


def test_bad_lambda_is_refused(rng):
    X, y = mixed_data(rng, n=20)
    with pytest.raises(ValueError, match="lambda of categorical feature 1 must be in"):
        NadarayaWatsonRegressor(bandwidth=[0.3, 0.9, 0.5, 0.4], categorical_features=[1],
                                ordered_features=[3]).fit(X, y)
    with pytest.raises(ValueError, match="one value per feature"):
        NadarayaWatsonRegressor(bandwidth=0.3, categorical_features=[1]).fit(X, y)


# ------------------------------------------------------------------ Dask


@pytest.mark.parametrize("kernel, lam", [("gaussian", [0.3, 0.4]), ("epanechnikov", [0.0, 0.5])])
def test_dask_pooling_with_discrete_features_equals_memory(rng, kernel, lam):
    """Each (query block, key chunk) task applies the discrete kernels to its own chunk;
    the merged result is the in-memory one, whatever the chunking."""
    da = pytest.importorskip("dask.array", reason="the dask extra is not installed")
    import dask
    from nwattn import dask as ndask

    X, y = mixed_data(rng, n=90)
    Q, _ = mixed_data(rng, n=50)
    w = rng.uniform(0.5, 2.0, size=90)
    disc = spec()
    h = [0.3, lam[0], 0.4, lam[1]]
    want, want_std = attention_pool(Q, X, y, kernel, h, key_weight=w, return_std=True,
                                    discrete=disc)
    with dask.config.set(scheduler="sync"):
        for q_rows, k_rows in [((50,), (90,)), ((20, 0, 30), (31, 0, 40, 19))]:
            got, std = ndask.attention_pool(
                da.from_array(Q, chunks=(q_rows, 4)), da.from_array(X, chunks=(k_rows, 4)),
                da.from_array(y, chunks=(k_rows,)), kernel, h,
                key_weight=da.from_array(w, chunks=(k_rows,)), return_std=True,
                discrete=disc)
            np.testing.assert_allclose(got.compute(), want, rtol=1e-12, equal_nan=True)
            np.testing.assert_allclose(std.compute(), want_std, rtol=1e-11, atol=1e-13,
                                       equal_nan=True)
        loo = ndask.attention_pool(da.from_array(X, chunks=30), da.from_array(X, chunks=45),
                                   y, kernel, h, exclude_self=True, discrete=disc)
        np.testing.assert_allclose(loo.compute(), attention_pool(
            X, X, y, kernel, h, exclude_self=True, discrete=disc), rtol=1e-12, equal_nan=True)


def test_dask_pooling_checks_discrete_arguments(rng):
    da = pytest.importorskip("dask.array", reason="the dask extra is not installed")
    import dask
    from nwattn import dask as ndask

    X, y = mixed_data(rng, n=40)
    dX = da.from_array(X, chunks=15)
    with pytest.raises(ValueError, match="lambda|lam"):
        ndask.attention_pool(dX, dX, y, "gaussian", [0.3, 5.0, 0.4, 0.5], discrete=spec())
    with pytest.raises(ValueError, match="one value per feature"):
        ndask.attention_pool(dX, dX, y, "gaussian", 0.3, discrete=spec())
    bad = X.copy()
    bad[3, 1] = 1.5
    out = ndask.attention_pool(da.from_array(bad, chunks=15), dX, y, "gaussian",
                               [0.3, 0.2, 0.4, 0.5], discrete=spec())
    with dask.config.set(scheduler="sync"), pytest.raises(ValueError, match="feature 1"):
        out.compute()

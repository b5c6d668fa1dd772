"""The pruned tile schedule (``algorithm="tree"``) against brute force and NumPy references.

A compact kernel's pruned result must be brute force's to rounding; a
gaussian or laplacian one too (what it leaves out is below 2**-60 of each
query's normaliser). The work decomposition is lowered so that inputs of a
few hundred points span many tiles, query blocks and key splits.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from nwattn import LocalPolynomialRegressor, NadarayaWatsonRegressor, ops
from nwattn.bandwidth import loo_cv_score, select_bandwidth
from nwattn.exceptions import EmptyNeighborhoodWarning
from nwattn.kernels import kernel_names, get_kernel
from nwattn.pruning import KeyTree, KeyTreeCache, tree_pays

from . import naive

DISTANCE_KERNELS = kernel_names("distance")
COMPACT = [k for k in DISTANCE_KERNELS if get_kernel(k).is_compact]


def _data(rng, kind, n, d):
    """Points of a few shapes: uniform, clustered, duplicate-heavy, far from the origin."""
    if kind == "uniform":
        return rng.random((n, d))
    if kind == "clustered":
        centres = rng.random((4, d)) * 10
        return centres[rng.integers(0, 4, n)] + rng.normal(scale=0.05, size=(n, d))
    if kind == "duplicates":
        return rng.integers(0, 5, size=(n, d)) * 0.1
    return 1e6 + rng.random((n, d))  # far from the origin


def _close(actual, expected, rtol):
    """Agreement relative to the scale of the expected values, NaNs in the same places."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    ok = ~np.isnan(expected)
    scale = max(np.abs(expected[ok]).max(initial=0.0), 1e-300)
    err = np.abs(actual[ok] - expected[ok]).max(initial=0.0) / scale
    assert err <= rtol, err


@pytest.mark.parametrize("kernel", DISTANCE_KERNELS)
@pytest.mark.parametrize("kind", ["uniform", "clustered", "duplicates", "far"])
def test_pooling_equals_brute_force(rng, small_tiles, kernel, kind):
    X = _data(rng, kind, 300, 2)
    Q = np.concatenate([X[:40] + rng.normal(scale=0.02, size=(40, 2)), X[40:80]])
    V = rng.normal(size=(300, 2))
    h = [0.08, 0.12]
    w = rng.random(300)
    w[::7] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        brute = ops.attention_pool(Q, X, V, kernel, h, key_weight=w, return_std=True,
                                   algorithm="brute")
        tree = ops.attention_pool(Q, X, V, kernel, h, key_weight=w, return_std=True,
                                  algorithm="tree")
        ref = naive.pool(Q, X, V, kernel, np.asarray(h), key_weight=w, return_std=True)
    for a, b, r in zip(tree, brute, ref):
        _close(a, b, 1e-12)
        _close(a, r, 1e-9)


@pytest.mark.parametrize("kernel", ["epanechnikov", "gaussian"])
def test_many_outputs_matrix_body(rng, small_tiles, kernel):
    """Twenty value columns take the matrix-product body: pruned there too."""
    X = rng.random((300, 2))
    V = rng.normal(size=(300, 20))
    brute = ops.attention_pool(X, X, V, kernel, 0.1, exclude_self=True, algorithm="brute")
    tree = ops.attention_pool(X, X, V, kernel, 0.1, exclude_self=True, algorithm="tree")
    _close(tree, brute, 1e-12)


@pytest.mark.parametrize("kernel", DISTANCE_KERNELS)
def test_float32_equals_brute_force(rng, small_tiles, kernel):
    X = rng.random((400, 2)).astype(np.float32)
    V = rng.normal(size=400).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        brute = ops.attention_pool(X[:90], X, V, kernel, 0.1, algorithm="brute")
        tree = ops.attention_pool(X[:90], X, V, kernel, 0.1, algorithm="tree")
    assert tree.dtype == np.float32
    _close(tree, brute, 1e-5)


@pytest.mark.parametrize("kernel", ["epanechnikov", "gaussian", "laplacian"])
@pytest.mark.parametrize("h", [1e-4, 0.03, 50.0])
def test_tiny_and_huge_bandwidths(rng, small_tiles, kernel, h):
    X = rng.random((250, 3))
    V = rng.normal(size=250)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        brute = ops.attention_pool(X, X, V, kernel, h, exclude_self=True, algorithm="brute")
        tree = ops.attention_pool(X, X, V, kernel, h, exclude_self=True, algorithm="tree")
    _close(tree, brute, 1e-12)


def test_empty_neighbourhoods_keep_their_convention(rng, small_tiles):
    X = rng.random((200, 2))
    Q = np.vstack([X[:5], [[5.0, 5.0], [-3.0, 0.5]]])
    V = rng.normal(size=200)
    with pytest.warns(EmptyNeighborhoodWarning):
        out = ops.attention_pool(Q, X, V, "epanechnikov", 0.1, algorithm="tree")
    assert np.isnan(out[5:]).all() and np.isfinite(out[:5]).all()


@pytest.mark.parametrize("kernel", ["epanechnikov", "gaussian", "tricube", "laplacian"])
def test_leave_one_out_slopes_equal_brute_force(rng, small_tiles, kernel):
    X = _data(rng, "clustered", 240, 2)
    y = rng.normal(size=(240, 2))
    h = [0.04, 0.07]
    a = ops.finalize_slopes(ops.loo_slopes_state(X, X, y, kernel, h, algorithm="brute"))
    b = ops.finalize_slopes(ops.loo_slopes_state(X, X, y, kernel, h, algorithm="tree"))
    for u, v in zip(b, a):
        _close(u, v, 1e-11)
    s1, g1 = loo_cv_score(X, y, kernel, h, return_gradient=True, algorithm="brute")
    s2, g2 = loo_cv_score(X, y, kernel, h, return_gradient=True, algorithm="tree")
    assert s2 == pytest.approx(s1, rel=1e-12)
    np.testing.assert_allclose(g2, g1, rtol=1e-9, atol=1e-12 * abs(s1))


def test_shards_with_offsets(rng, small_tiles):
    """Leave-one-out over key shards (offsets) merges to the whole, pruned or not."""
    X = rng.random((200, 2))
    y = rng.normal(size=200)
    parts = [ops.attention_pool_state(X, X[a:b], y[a:b], "biweight", 0.1, exclude_self=True,
                                      key_offset=a, center=[0.0], algorithm="tree")
             for a, b in ((0, 70), (70, 200))]
    whole = ops.attention_pool_state(X, X, y, "biweight", 0.1, exclude_self=True,
                                     center=[0.0], algorithm="brute")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        _close(ops.finalize_state(ops.merge_states(*parts)), ops.finalize_state(whole), 1e-12)


@pytest.mark.parametrize("kernel", ["epanechnikov", "gaussian", "tricube"])
@pytest.mark.parametrize("degree", [1, 2])
def test_local_polynomial_moments_equal_brute_force(rng, small_tiles, kernel, degree):
    X = _data(rng, "uniform", 300, 2) * [1.0, 3.0] + [1e4, 0.0]
    y = np.column_stack([np.sin(6 * X[:, 0]), X[:, 1] ** 2])
    w = rng.random(300) + 0.1
    for kw in ({"bandwidth": [0.2, 0.5]}, {"exclude_self": True, "bandwidth": [0.2, 0.5]},
               {"query_scale": rng.uniform(0.5, 2.0, 300), "bandwidth": 0.3}):
        a = ops.local_polynomial_state(X, X, y, kernel, degree=degree, key_weight=w,
                                       algorithm="brute", **kw)
        b = ops.local_polynomial_state(X, X, y, kernel, degree=degree, key_weight=w,
                                       algorithm="tree", **kw)
        A = a.packed * np.exp(a.max)[:, None]
        B = b.packed * np.exp(b.max)[:, None]
        _close(B, A, 1e-12)
    a = ops.local_polynomial(X[:50], X, y, kernel, degree=degree, span=0.1, algorithm="brute")
    b = ops.local_polynomial(X[:50], X, y, kernel, degree=degree, span=0.1, algorithm="tree")
    _close(b, a, 1e-10)
    ref = naive.local_polynomial(X[:50], X, y, kernel, [0.2, 0.5], degree=degree)[0]
    got = ops.local_polynomial(X[:50], X, y, kernel, [0.2, 0.5], degree=degree,
                               algorithm="tree")
    _close(got, ref, 1e-8)


def test_sandwich_slopes_and_smoother_equal_brute_force(rng, small_tiles):
    X = rng.random((260, 1))
    y = np.sin(5 * X[:, 0]) + rng.normal(scale=0.1, size=260)
    sd = rng.random(260) + 0.5
    for kw in ({"key_std": sd}, {"slopes": True, "exclude_self": True}):
        a = ops.local_polynomial_state(X, X, y, "epanechnikov", 0.05, algorithm="brute", **kw)
        b = ops.local_polynomial_state(X, X, y, "epanechnikov", 0.05, algorithm="tree", **kw)
        _close(b.packed * np.exp(b.max)[:, None], a.packed * np.exp(a.max)[:, None], 1e-12)
    from nwattn.state import solve_local

    fit = solve_local(ops.local_polynomial_state(X, X, y, "gaussian", 0.05))
    U = rng.normal(size=(260, 7))
    a = ops.smoother_pool(X, X, U, fit.coef, "gaussian", 0.05, algorithm="brute")
    b = ops.smoother_pool(X, X, U, fit.coef, "gaussian", 0.05, algorithm="tree")
    _close(b, a, 1e-11)


def test_discrete_features(rng, small_tiles):
    from nwattn.discrete import DiscreteFeatures

    X = np.column_stack([rng.random(300), rng.random(300), rng.integers(0, 3, 300)])
    y = X[:, 0] + X[:, 2] + rng.normal(scale=0.1, size=300)
    disc = DiscreteFeatures([2], n_categories=[3])
    for kernel in ("epanechnikov", "gaussian"):
        a = ops.attention_pool(X, X, y, kernel, [0.1, 0.2, 0.3], discrete=disc,
                               exclude_self=True, algorithm="brute")
        b = ops.attention_pool(X, X, y, kernel, [0.1, 0.2, 0.3], discrete=disc,
                               exclude_self=True, algorithm="tree")
        _close(b, a, 1e-12)


@given(st.integers(0, 2**32 - 1), st.sampled_from(DISTANCE_KERNELS), st.integers(1, 4),
       st.integers(1, 120), st.floats(0.01, 2.0))
def test_pruned_equals_brute_property(seed, kernel, d, m, h):
    from nwattn import _config

    rng = np.random.default_rng(seed)
    X = rng.random((m, d)) * rng.uniform(0.1, 10.0, d)
    Q = rng.random((rng.integers(1, 40), d)) * 10
    V = rng.normal(size=m)
    saved = (_config.QUERY_BLOCK, _config.KEY_TILE, _config.TREE_LEAF_KEYS)
    _config.QUERY_BLOCK, _config.KEY_TILE, _config.TREE_LEAF_KEYS = 2, 4, 3
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
            a = ops.attention_pool(Q, X, V, kernel, h, algorithm="brute")
            b = ops.attention_pool(Q, X, V, kernel, h, algorithm="tree")
    finally:
        _config.QUERY_BLOCK, _config.KEY_TILE, _config.TREE_LEAF_KEYS = saved
    _close(b, a, 1e-12)


def test_results_do_not_depend_on_threads_or_chunks(rng, small_tiles, monkeypatch):
    import numba

    from nwattn import _config

    X = rng.random((500, 2))
    V = rng.normal(size=(500, 3))
    runs = []
    for threads, seconds in ((1, 0.05), (numba.config.NUMBA_NUM_THREADS, 1e-9)):
        monkeypatch.setattr(_config, "SWEEP_CHUNK_SECONDS", seconds)
        with _threads(threads):
            runs.append(ops.attention_pool(X, X, V, "gaussian", 0.05, exclude_self=True,
                                           algorithm="tree"))
    np.testing.assert_array_equal(runs[0], runs[1])


def _threads(n):
    from nwattn._parallel import threads

    return threads(n)


def test_key_tree_is_reused_and_any_order_is_right(rng, small_tiles):
    X = rng.random((300, 2))
    V = rng.normal(size=300)
    tree = KeyTree(X)
    assert sorted(tree.order.tolist()) == list(range(300))
    a = ops.attention_pool(X[:30], X, V, "cosine", 0.1, algorithm=tree)
    b = ops.attention_pool(X[:30], X, V, "cosine", 0.1, algorithm="brute")
    _close(a, b, 1e-12)
    # A tree built on other data is a valid (if poor) order: same results.
    other = KeyTree(rng.random((300, 2)))
    _close(ops.attention_pool(X[:30], X, V, "cosine", 0.1, algorithm=other), b, 1e-12)


def test_tile_boxes_hold_their_keys(rng):
    from nwattn._cpu.tree import kd_order, tile_tree

    X = _data(rng, "clustered", 1000, 3)
    order = kd_order(X, 16)
    KT = np.ascontiguousarray(X[order].T)
    lo, hi, lw, t0, t1, right = tile_tree(KT, 16, np.empty(0), 0.0)
    leaves = np.flatnonzero(right < 0)
    assert sorted(t0[leaves].tolist()) == list(range(-(-1000 // 16)))
    for v in leaves:
        keys = KT[:, t0[v] * 16:(t0[v] + 1) * 16]
        assert (keys.min(axis=1) >= lo[v]).all() and (keys.max(axis=1) <= hi[v]).all()
    # The k-d order makes small tiles: their boxes are far smaller than the data's.
    assert np.mean(np.prod(hi[leaves] - lo[leaves], axis=1)) < 0.01 * np.prod(np.ptp(X, axis=0))


def test_boxcar_equals_radius_neighbors(rng):
    from sklearn.neighbors import RadiusNeighborsRegressor

    X = rng.random((3000, 2))
    y = np.sin(6 * X[:, 0]) + X[:, 1]
    Q = rng.random((500, 2))
    r = 0.05
    ref = RadiusNeighborsRegressor(radius=r, weights="uniform").fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ref.predict(Q)
        got = ops.attention_pool(Q, X, y, "boxcar", r, algorithm="tree")
    _close(got, expected, 1e-12)


def test_errors_name_the_parameter(rng):
    X = rng.random((50, 2))
    V = rng.normal(size=50)
    with pytest.raises(ValueError, match="algorithm must be one of"):
        ops.attention_pool(X, X, V, algorithm="kd_tree")
    with pytest.raises(ValueError, match="algorithm='tree' prunes smoothing kernels only"):
        ops.attention_pool(X, X, V, "scaled_dot", algorithm="tree")
    with pytest.raises(ValueError, match="algorithm='tree' is not available for attention"):
        ops.attention_pool(X[None], X[None], V[None, :, None], algorithm="tree")
    with pytest.raises(ValueError, match="the KeyTree holds 20 keys, the call has 50"):
        ops.attention_pool(X, X, V, algorithm=KeyTree(X[:20]))
    with pytest.raises(ValueError, match="leaf_size must be a positive integer"):
        KeyTree(X, leaf_size=0)
    with pytest.raises(ValueError, match="algorithm"):
        NadarayaWatsonRegressor(algorithm="ball_tree").fit(X, V)
    with pytest.raises(ValueError, match="algorithm='tree' prunes smoothing kernels only"):
        NadarayaWatsonRegressor("dot", 1.0, algorithm="tree").fit(X, V)


def test_auto_prunes_small_neighbourhoods_only(rng):
    X = rng.random((50_000, 2))
    eps = get_kernel("epanechnikov")
    assert tree_pays(X, X, eps, 0.01)
    # h = 1 reaches nearly every pair of the unit square; at h = 0.5 the
    # sampled share times 1.5**2 is about 1.09, the limit 1 (2.5 % of draws
    # fell below it, e.g. seed 1487256862)
    assert not tree_pays(X, X, eps, 1.0)
    assert not tree_pays(X[:1000], X[:1000], eps, 0.001)  # small: brute force
    assert not tree_pays(X, X, get_kernel("scaled_dot"), 1.0)
    wide = rng.random((50_000, 8))
    assert not tree_pays(wide, wide, eps, 0.01)  # many features
    cache = KeyTreeCache("auto", X)
    assert cache.for_call(eps, 1.0) == "brute" and cache.tree is None
    tree = cache.for_call(eps, 0.01)
    assert isinstance(tree, KeyTree) and cache.for_call(eps, 0.02) is tree


@pytest.mark.parametrize("Est", [NadarayaWatsonRegressor, LocalPolynomialRegressor])
def test_estimators_prune_with_the_tree_they_keep(rng, small_tiles, Est):
    X = rng.random((400, 2))
    y = np.sin(6 * X[:, 0]) + rng.normal(scale=0.1, size=400)
    Q = rng.random((60, 2))
    brute = Est(kernel="epanechnikov", bandwidth="cv", algorithm="brute").fit(X, y)
    tree = Est(kernel="epanechnikov", bandwidth="cv", algorithm="tree").fit(X, y)
    # Scores equal to rounding can move Brent's search within its tolerance
    # (1e-4 on log h); the scores at the two choices agree far more closely.
    np.testing.assert_allclose(tree.bandwidth_, brute.bandwidth_, rtol=2e-4)
    assert tree.cv_score_ == pytest.approx(brute.cv_score_, rel=1e-4)  # a compact kernel's
    # score has kinks: it moves at first order with h
    fixed = Est(kernel="epanechnikov", bandwidth=brute.bandwidth_, algorithm="tree").fit(X, y)
    # The two schedules sum the moments in different orders; the local solve
    # magnifies that rounding by the condition number of each query's design
    # (1 for a local constant, up to 1 / rcond for a nearly singular local
    # linear design), so each query is allowed a multiple of eps * cond.
    cond = _design_condition(Q, X, brute.bandwidth_, 0 if Est is NadarayaWatsonRegressor else 1)
    _close_conditioned(fixed.predict(Q), brute.predict(Q), cond, 1e-11)
    kept = fixed._keys.tree
    fixed.predict(Q)
    assert fixed._keys.tree is kept
    lo, hi = fixed.predict_interval(Q)
    lo_b, hi_b = brute.predict_interval(Q)
    _close_conditioned(lo, lo_b, cond, 1e-9)
    _close_conditioned(hi, hi_b, cond, 1e-9)


def _design_condition(Q, X, bandwidth, degree):
    """Condition number of each query's equilibrated epanechnikov design (1 where empty)."""
    h = np.broadcast_to(np.asarray(bandwidth, dtype=np.float64), (X.shape[1],))
    cond = np.ones(len(Q))
    for i, q in enumerate(Q):
        B, w = naive._local_design(q, X, "epanechnikov", h, degree, None)
        G = B.T @ (B * w[:, None])
        if G[0, 0] > 0 and np.all(np.diag(G) > 0):
            s = 1.0 / np.sqrt(np.diag(G))
            cond[i] = np.linalg.cond(G * s[:, None] * s)
    return cond


def _close_conditioned(actual, expected, cond, rtol):
    """``_close`` with each query allowed ``64 eps cond`` beyond ``rtol`` (of the scale)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    ok = ~np.isnan(expected)
    scale = max(np.abs(expected[ok]).max(initial=0.0), 1e-300)
    allowed = (rtol + 64 * np.finfo(np.float64).eps * cond[ok]) * scale
    err = np.abs(actual[ok] - expected[ok])
    assert np.all(err <= allowed), (err / allowed).max()


def test_select_bandwidth_pruned(rng, small_tiles):
    X = rng.random((500, 1))
    y = np.sin(8 * X[:, 0]) + rng.normal(scale=0.2, size=500)
    a = select_bandwidth(X, y, "tricube", algorithm="brute")
    b = select_bandwidth(X, y, "tricube", algorithm="tree")
    assert b.bandwidth == pytest.approx(a.bandwidth, rel=2e-4)  # the search's tolerance
    assert b.cv_score == pytest.approx(a.cv_score, rel=1e-7)


class _Recording:
    """Records the bandwidths of a problem's passes (its subsets' passes apart)."""

    def __init__(self, problem, seen):
        self._problem, self._seen = problem, seen

    def __getattr__(self, name):
        return getattr(self._problem, name)

    def value(self, bandwidth):
        self._seen.append(float(bandwidth))
        return self._problem.value(bandwidth)


class _WithoutPilot(_Recording):
    """A problem that cannot give a subset of itself (as the Dask problem), recording its passes."""

    def __getattr__(self, name):
        if name == "subproblem":
            raise AttributeError(name)
        return getattr(self._problem, name)


def test_large_samples_walk_from_the_rule_narrow_side_first(rng, monkeypatch):
    """From _WALK_MIN_SAMPLES on, a compact kernel's search walks (no grid up to 10x the
    spread, whose passes would cost n**2 pairs) and tries the narrower bandwidth first."""
    from nwattn import bandwidth as bw
    from nwattn.loo import LooProblem

    X = rng.random((3000, 1))
    y = np.sin(8 * X[:, 0]) + rng.normal(scale=0.2, size=3000)
    grid = bw.search(LooProblem(X, y, "epanechnikov"))
    monkeypatch.setattr(bw, "_WALK_MIN_SAMPLES", 1000)
    seen = []
    walk = bw.search(_WithoutPilot(LooProblem(X, y, "epanechnikov"), seen))
    assert walk.cv_score <= grid.cv_score * (1 + 1e-3)
    assert seen[1] == pytest.approx(seen[0] / 3)
    assert max(seen) < 0.5 * np.std(X) * 10  # never the grid's widest points


@pytest.mark.parametrize("kernel, degree", [("gaussian", 0), ("laplacian", 1),
                                            ("epanechnikov", 0), ("tricube", 1)])
def test_large_samples_start_from_a_pilot_on_a_subset(rng, monkeypatch, kernel, degree):
    """A large scalar search selects on a sixteenth of the points first and refines near
    the scaled result: the walk's answer, from no more and never wide passes."""
    from nwattn import bandwidth as bw
    from nwattn.loo import LooProblem

    # The pilot's subset (1000 points) searched on a grid, as from 50 000 points on it
    # would be by a walk of its own.
    X = rng.random((16000, 1))
    y = np.sin(8 * X[:, 0]) + rng.normal(scale=0.2, size=16000)
    monkeypatch.setattr(bw, "_WALK_MIN_SAMPLES", 8000)
    walked, piloted = [], []
    walk = bw.search(_WithoutPilot(LooProblem(X, y, kernel, degree=degree), walked))
    got = bw.search(_Recording(LooProblem(X, y, kernel, degree=degree), piloted))
    assert got.n_evaluations == len(piloted)
    if kernel in ("epanechnikov", "tricube"):
        # At this size a compact kernel's score has kinks, hence shallow local minima
        # (the search's documented limit); whichever each path ends in scores alike:
        # over 30 draws the two scores differed by at most 4e-5 of the score, with
        # bandwidths up to 40% apart; draws beyond 1e-4 were seen twice (seed
        # 221123890: 3.6e-4).
        assert got.cv_score == pytest.approx(walk.cv_score, rel=1e-3)
        return
    # Both refine to the search's tolerance on log h (1e-4) around the one minimum,
    # whether the pilot fell near it or far (a subset's selection varies a lot: its score
    # is flat; then Brent's search ends at its bracket's end and the walk goes on).
    assert abs(np.log(got.bandwidth / walk.bandwidth)) < 5e-4
    assert got.cv_score == pytest.approx(walk.cv_score, rel=1e-9)


def test_a_good_pilot_saves_the_wide_passes(monkeypatch):
    """On a fixed sample where the subset's selection scales to near the minimum: fewer
    passes than the walk from the rule, all within the pilot's bracket."""
    from nwattn import bandwidth as bw
    from nwattn.loo import LooProblem

    rng = np.random.default_rng(0)
    X = rng.random((16000, 1))
    y = np.sin(8 * X[:, 0]) + rng.normal(scale=0.2, size=16000)
    monkeypatch.setattr(bw, "_WALK_MIN_SAMPLES", 8000)
    walked, piloted = [], []
    walk = bw.search(_WithoutPilot(LooProblem(X, y, "gaussian"), walked))
    got = bw.search(_Recording(LooProblem(X, y, "gaussian"), piloted))
    assert abs(np.log(got.bandwidth / walk.bandwidth)) < 5e-4
    assert len(piloted) < len(walked)
    assert max(piloted) <= min(piloted) * bw._PILOT_STEP ** 4 * (1 + 1e-12)
    assert max(walked) >= 3 * got.bandwidth  # the walk's wide step


def test_a_wrong_pilot_walks_on_from_the_end_of_its_bracket(rng, monkeypatch):
    """Brent's search around the pilot ends at its bracket's end when the minimum lies
    beyond: the walk goes on from there and finds it."""
    from nwattn import bandwidth as bw
    from nwattn.loo import LooProblem

    X = rng.random((4000, 1))
    y = np.sin(8 * X[:, 0]) + rng.normal(scale=0.2, size=4000)
    monkeypatch.setattr(bw, "_WALK_MIN_SAMPLES", 1000)
    # The gaussian: a smooth score, whose one minimum every path reaches.
    walk = bw.search(_WithoutPilot(LooProblem(X, y, "gaussian"), []))
    for wrong in (8.0, 1 / 8.0):
        monkeypatch.setattr(bw, "_pilot", lambda *a, w=wrong: walk.bandwidth * w)
        got = bw.search(LooProblem(X, y, "gaussian"))
        assert abs(np.log(got.bandwidth / walk.bandwidth)) < 5e-4
        assert got.cv_score == pytest.approx(walk.cv_score, rel=1e-7)


def test_subproblem_draws_points_of_positive_weight(rng):
    from nwattn.loo import LooProblem

    X = np.arange(200.0)[:, None] / 200
    y = np.sin(6 * X[:, 0]) + 0.1 * rng.normal(size=200)
    w = rng.uniform(0.5, 2.0, size=200)
    w[::3] = 0.0
    problem = LooProblem(X, y, "gaussian", sample_weight=w, fallback="nearest", degree=1)
    sub = problem.subproblem(50)
    rows = np.rint(sub.X[:, 0] * 200).astype(int)
    assert sub.n_samples == 50 and np.all(np.diff(rows) > 0) and np.all(w[rows] > 0)
    np.testing.assert_array_equal(problem.subproblem(50).X, sub.X)  # a fixed draw
    direct = LooProblem(X[rows], y[rows], "gaussian", sample_weight=w[rows],
                        fallback="nearest", degree=1)
    assert sub.value(0.05) == pytest.approx(direct.value(0.05), rel=1e-12)
    assert problem.subproblem(10_000).n_samples == np.count_nonzero(w > 0)

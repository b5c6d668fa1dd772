"""The leave-one-out building blocks of nwattn.loo, and who may reach what."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nwattn.loo import LooProblem, loo_error, loo_totals, nearest_neighbor, slope_state
from nwattn.ops import attention_pool_state, finalize_slopes, merge_states

from . import naive

PACKAGE = Path(__file__).resolve().parents[1] / "nwattn"


def _brute_nearest(Q, K, h, w=None, exclude=None):
    """Lowest index among the keys of smallest scaled squared distance."""
    out = np.full(Q.shape[0], -1)
    for i, q in enumerate(Q):
        d2 = np.sum((q / h - K / h) ** 2, axis=1)
        if w is not None:
            d2[w <= 0] = np.inf
        if exclude is not None and 0 <= exclude[i] < K.shape[0]:
            d2[exclude[i]] = np.inf
        if np.isfinite(d2).any():
            out[i] = int(np.argmin(d2))  # argmin: the first of equals
    return out


def test_nearest_neighbor_breaks_ties_by_the_lowest_index(rng):
    # points of a coarse grid, many of them repeated: ties everywhere
    K = rng.integers(0, 4, size=(60, 2)).astype(float)
    Q = rng.integers(0, 4, size=(30, 2)) + rng.choice([0.0, 0.5], size=(30, 2))
    w = rng.choice([0.0, 1.0], size=60, p=[0.3, 0.7])
    h = np.array([1.0, 2.0])
    got = nearest_neighbor(Q, K, h, key_weight=w)
    np.testing.assert_array_equal(got.index, _brute_nearest(Q, K, h, w))
    np.testing.assert_allclose(got.sq_distance, np.sum(((Q - K[got.index]) / h) ** 2, axis=1))
    # leave one out among duplicates: the other copy, at distance 0
    own = nearest_neighbor(K, K, h, key_weight=w, exclude=np.arange(60))
    np.testing.assert_array_equal(own.index, _brute_nearest(K, K, h, w, np.arange(60)))


def test_nearest_of_key_chunks_is_the_nearest_of_their_nearest(rng):
    K = rng.integers(0, 3, size=(50, 1)).astype(float)
    Q = rng.integers(0, 3, size=(20, 1)) + 0.5
    whole = nearest_neighbor(Q, K, 0.7)
    best = np.full(20, np.inf)
    index = np.full(20, -1)
    for start in (0, 17, 30):  # chunks 0:17, 17:30, 30:50; earlier chunk wins a tie
        stop = {0: 17, 17: 30, 30: 50}[start]
        part = nearest_neighbor(Q, K[start:stop], 0.7)
        closer = part.sq_distance < best
        best[closer] = part.sq_distance[closer]
        index[closer] = part.index[closer] + start
    np.testing.assert_array_equal(index, whole.index)


def test_nearest_neighbor_with_no_eligible_key():
    got = nearest_neighbor([[0.0], [1.0]], [[0.0], [5.0]], 1.0, key_weight=[1.0, 0.0],
                           exclude=[0, 7])
    assert got.index.tolist() == [-1, 0]
    assert np.isinf(got.sq_distance[0]) and got.sq_distance[1] == 1.0
    empty = nearest_neighbor(np.empty((0, 1)), [[0.0]], 1.0)
    assert empty.index.shape == (0,)
    with pytest.raises(ValueError, match="exclude"):
        nearest_neighbor([[0.0]], [[0.0]], 1.0, exclude=[0.5])
    with pytest.raises(ValueError, match="key_weight"):
        nearest_neighbor([[0.0]], [[0.0]], 1.0, key_weight=[1.0, 1.0])


@pytest.mark.parametrize("kernel", ["gaussian", "tricube", "dot"])
def test_slope_states_of_key_chunks_merge_to_the_whole(rng, kernel):
    X = rng.normal(size=(30, 2))
    Y = rng.normal(size=(30, 2)) + 4.0
    w = rng.uniform(0.5, 2.0, size=30)
    w[10:14] = 0.0  # the second chunk below has no weight at all
    h = np.array([1.2, 0.8]) if kernel != "dot" else np.array([2.0, 3.0])
    rows = slice(5, 23)
    whole = slope_state(X[rows], X, Y, kernel, h, key_weight=w, query_offset=5)
    merged = None
    for start, stop, center in ((0, 10, [0.0, 0.0]), (10, 14, [4.0, 4.0]), (14, 30, None)):
        part = slope_state(X[rows], X[start:stop], Y[start:stop], kernel, h,
                           key_weight=w[start:stop], query_offset=5, key_offset=start,
                           center=center)
        merged = part if merged is None else merge_states(merged, part)
    totals = loo_totals(Y, w)
    a = loo_error(whole, Y[rows], sample_weight=w[rows], totals=totals)
    b = loo_error(merged, Y[rows], sample_weight=w[rows], totals=totals)
    assert b.sse == pytest.approx(a.sse, rel=1e-12)
    np.testing.assert_allclose(b.gradient, a.gradient, rtol=1e-10, atol=1e-12)


def test_slope_state_of_nothing_is_empty(rng):
    X = rng.normal(size=(4, 3))
    st = slope_state(X, X[:0], np.empty((0, 2)), "gaussian", 1.0, center=[0.0, 0.0])
    assert finalize_slopes(st)[2].shape == (4, 3, 2) and st.empty.all()
    st = slope_state(X[:0], X, np.ones((4, 2)), "gaussian", 1.0)
    assert finalize_slopes(st)[2].shape == (0, 3, 2)
    st = slope_state(X, X, np.ones(4), "gaussian", 1.0, key_weight=np.zeros(4))
    assert st.empty.all()
    with pytest.raises(ValueError, match="key_weight must be non-negative"):
        slope_state(X, X, np.ones(4), key_weight=-np.ones(4))
    with pytest.raises(ValueError, match="query_offset"):
        slope_state(X, X, np.ones(4), query_offset=-1)


@pytest.mark.parametrize("fallback", ["mean", "nearest"])
def test_block_shares_add_up_to_the_score(rng, fallback):
    X = rng.uniform(size=(40, 1))
    Y = np.c_[np.sin(6 * X[:, 0]), X[:, 0]]
    w = rng.uniform(0.5, 1.5, size=40)
    h = 0.03  # boxcar: several points alone
    totals = loo_totals(Y, w)
    sse = 0.0
    for rows in (slice(0, 13), slice(13, 20), slice(20, 40)):
        st = attention_pool_state(X[rows], X, Y, "boxcar", h, key_weight=w, exclude_self=True,
                                  query_offset=rows.start)
        idx0 = rows.start

        def near(idx, idx0=idx0):
            found = nearest_neighbor(X[idx0 + idx], X, h, key_weight=w, exclude=idx0 + idx)
            return Y[found.index]

        sse += loo_error(st, Y[rows], sample_weight=w[rows], fallback=fallback, totals=totals,
                         nearest=near).sse
    want = naive.loo_cv(X, Y, "boxcar", h, w, fallback)
    assert sse / totals.weight_sum == pytest.approx(want, rel=1e-12)
    assert LooProblem(X, Y, "boxcar", sample_weight=w, fallback=fallback).value(h) == \
        pytest.approx(want, rel=1e-12)


def test_loo_error_asks_for_what_it_needs(rng):
    X = np.array([[0.0], [1.0], [9.0]])
    st = attention_pool_state(X, X, np.ones(3), "boxcar", 1.5, exclude_self=True)
    with pytest.raises(ValueError, match="nearest is required"):
        loo_error(st, np.ones(3), fallback="nearest")
    with pytest.raises(ValueError, match="fallback"):
        loo_error(st, np.ones(3), fallback="nan")
    with pytest.raises(ValueError, match="y must have the shape"):
        loo_error(st, np.ones((3, 2)))
    with pytest.raises(TypeError, match="state"):
        loo_error((1, 2), np.ones(3))


def _imports(path):
    """Every module a file imports, as absolute dotted names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = node.module or ""
            name = f"{base}.{module}".strip(".") if node.level else module
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def test_the_backends_are_reached_only_through_the_registry():
    """No module outside the backends imports one: layer 3 asks nwattn._backend."""
    users = {str(path.relative_to(PACKAGE.parent)) for path in PACKAGE.rglob("*.py")
             if "_cpu" not in path.parts and "_cuda" not in path.parts
             and any(name.startswith(("nwattn._cpu", "nwattn._cuda"))
                     for name in _imports(path))}
    assert users == set()


def test_estimators_and_lower_layers_do_not_import_the_dask_integration():
    for path in PACKAGE.rglob("*.py"):
        if "dask" in path.parts or path.name == "__main__.py":
            continue
        imported = _imports(path)
        assert not any(name.startswith("nwattn.dask") for name in imported), path
        assert not any(name.split(".")[0] == "dask" for name in imported), path


def test_fitting_in_memory_loads_no_dask():
    code = ("import sys, numpy as np\n"
            "from nwattn import NadarayaWatsonRegressor\n"
            "X = np.linspace(0, 1, 30)[:, None]\n"
            "model = NadarayaWatsonRegressor('epanechnikov', fallback='nearest')\n"
            "model.fit(X, X[:, 0]).predict(X)\n"
            "print(sorted(m for m in sys.modules if m == 'dask' or m.startswith('nwattn.dask')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"

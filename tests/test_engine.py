"""The streaming engine: the packed state's one rule, the backend seam and its guard."""

import importlib
import pkgutil

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nwattn._cpu
from nwattn import _parallel, bandwidth, objective, ops
from nwattn._backend import CAPABILITIES, REGISTRY, backend_for, get_backend
from nwattn._layout import StateLayout, merge_rows, pool_layout, slopes_layout
from nwattn.kernels import RBF_KIND, SCALED_DOT_KIND

from . import naive


# --- the one rescale/merge rule -----------------------------------------------------------


def _reference_state(scores, values, powers):
    """Max and packed sums ``sum_j exp(k (s_j - m)) x_jc`` in float64, directly."""
    m = np.max(scores)
    w = np.exp(scores - m)
    return m, np.array([np.sum(w ** k * values[:, c]) for c, k in enumerate(powers)])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 4), st.lists(st.integers(1, 3), min_size=1,
                                                       max_size=5), st.integers(0, 2**32 - 1))
def test_merge_rule_with_powers_equals_the_whole(n_keys, cut_at, powers, seed):
    """Columns of power 1, 2, 3 merged from two key sets = computed over all keys."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(scale=30.0, size=n_keys)
    values = rng.normal(size=(n_keys, len(powers)))
    cut = min(cut_at, n_keys)
    powers = np.array(powers, dtype=np.int64)
    ma, pa = _reference_state(scores[:cut], values[:cut], powers)
    if cut < n_keys:
        mb, pb = _reference_state(scores[cut:], values[cut:], powers)
    else:
        mb, pb = -np.inf, np.zeros(len(powers))
    max_a, acc_a = np.array([ma]), pa[None, :].copy()
    merge_rows(max_a, acc_a, np.array([mb]), pb[None, :], powers)
    m, want = _reference_state(scores, values, powers)
    assert max_a[0] == m
    np.testing.assert_allclose(acc_a[0], want, rtol=1e-12, atol=1e-300)


def test_merge_rule_empty_sides():
    powers = np.array([1, 2])
    max_a, acc_a = np.array([-np.inf, -np.inf, 0.5]), np.zeros((3, 2))
    acc_a[2] = [3.0, 4.0]
    max_b, acc_b = np.array([-np.inf, 1.0, -np.inf]), np.array([[0.0, 0.0], [1.0, 2.0],
                                                                [0.0, 0.0]])
    merge_rows(max_a, acc_a, max_b, acc_b, powers)
    assert max_a[0] == -np.inf and np.all(acc_a[0] == 0)
    assert max_a[1] == 1.0 and np.all(acc_a[1] == [1.0, 2.0])
    assert max_a[2] == 0.5 and np.all(acc_a[2] == [3.0, 4.0])


def test_layouts():
    lay = pool_layout(3, True)
    assert lay.width == 7 and lay.powers.tolist() == [1] * 7
    assert "sq" in lay and "sq" not in pool_layout(3, False)
    assert lay == pool_layout(3, True) and lay != pool_layout(3, False)
    assert slopes_layout(2, 3).columns("B") == slice(6, 12)
    with pytest.raises(ValueError, match="unique"):
        StateLayout([("a", 1, 1), ("a", 2, 1)])
    with pytest.raises(ValueError, match="power"):
        StateLayout([("a", 1, 0)])


def test_slopes_states_merge_over_key_shards(rng):
    """The slopes are one more layout: shards merged by the same rule = the whole."""
    X = rng.normal(size=(40, 2))
    Y = rng.normal(loc=5.0, size=(40, 2))
    h = [0.6, 0.9]
    whole = ops.finalize_slopes(ops.loo_slopes_state(X, X, Y, "biweight", h))
    left = ops.loo_slopes_state(X, X[:13], Y[:13], "biweight", h, key_offset=0)
    # A different centre on the right: the merge recentres B as well.
    right = ops.loo_slopes_state(X, X[13:], Y[13:], "biweight", h, key_offset=13,
                                 center=np.array([-1.0, 2.0]))
    merged = ops.finalize_slopes(ops.merge_states(left, right))
    for a, b in zip(merged, whole):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_slopes_match_finite_differences(rng):
    X = rng.normal(size=(30, 2))
    y = rng.normal(size=30)
    h = np.array([0.7, 1.1])
    _, pred, dpred = ops.finalize_slopes(ops.loo_slopes_state(X, X, y, "gaussian", h))
    for t in range(2):
        step = np.zeros(2)
        step[t] = 1e-6
        up = naive.pool(X, X, y, "gaussian", h * np.exp(step), exclude_self=True)
        down = naive.pool(X, X, y, "gaussian", h * np.exp(-step), exclude_self=True)
        np.testing.assert_allclose(dpred[:, t, 0], (up - down) / 2e-6, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(pred[:, 0], naive.pool(X, X, y, "gaussian", h,
                                                      exclude_self=True), rtol=1e-12)


# --- the backend seam ---------------------------------------------------------------------


def test_registry_and_capabilities():
    """Every capability a backend claims is a method of that name."""
    assert set(REGISTRY) == {"cpu", "cuda"}
    cpu = get_backend("cpu")
    assert cpu.capabilities <= CAPABILITIES
    for op in cpu.capabilities:
        assert callable(getattr(cpu, op)), op
    pytest.importorskip("numba_cuda", reason="the cuda extra (numba-cuda) is not installed")
    from nwattn._cuda.backend import CUDABackend

    for op in CUDABackend.capabilities - {"device_arrays"}:
        assert callable(getattr(CUDABackend, op)), op


def test_missing_capability_is_one_clear_error(monkeypatch):
    from nwattn import _backend

    class NoSlopes:
        name = "cuda"
        capabilities = frozenset({"pool"})

    monkeypatch.setitem(_backend._loaded, "cuda", NoSlopes())
    monkeypatch.setattr(_backend, "resolve_device", lambda device, n, on_gpu: "cuda")
    with pytest.raises(ValueError, match="the gradient of the leave-one-out score has no cuda"):
        backend_for("cuda", [[0.0]], [[0.0]], need="slopes",
                    what="the gradient of the leave-one-out score")
    # "auto" quietly means the CPU for what the GPU lacks.
    assert backend_for("auto", [[0.0]], [[0.0]], need="slopes")[0].name == "cpu"


def _parallel_dispatchers():
    """Every ``parallel=True`` compiled function of the CPU backend's modules (the
    sweep's tasks are serial functions run on a thread pool, which needs no guard)."""
    found = []
    for info in pkgutil.iter_modules(nwattn._cpu.__path__):
        mod = importlib.import_module(f"nwattn._cpu.{info.name}")
        for name, obj in vars(mod).items():
            opts = getattr(obj, "targetoptions", None)
            if opts is not None and opts.get("parallel") and obj.__module__ == mod.__name__:
                found.append((mod, name, obj))
    return found


def test_every_parallel_kernel_is_reached_only_through_the_guard(rng, monkeypatch):
    """Structural: wrap every parallel kernel so that a launch outside the guard is
    recorded, then run every public entry point that reaches one."""
    dispatchers = _parallel_dispatchers()
    assert len(dispatchers) >= 8
    launched, unguarded = set(), []

    def watch(mod, name, fn):
        def wrapper(*args):
            launched.add(name)
            if not _parallel.in_guard():
                unguarded.append(name)
            return fn(*args)
        return wrapper

    for mod, name, fn in dispatchers:
        monkeypatch.setattr(mod, name, watch(mod, name, fn))
    X = rng.normal(size=(60, 2))
    Y = rng.normal(size=(60, 2))
    Wq, Wk, wv = rng.normal(size=(2, 2)), rng.normal(size=(2, 2)), rng.normal(size=2)
    ops.attention_pool(X, X, Y, "gaussian", 0.5, return_std=True)
    ops.attention_pool(X, X, rng.normal(size=(60, 20)), "gaussian", 0.5)
    ops.top_k_weights(X, X, k=2)
    ops.softmax(ops.pairwise_scores(X, X))
    ops.pairwise_scores(X[None], X, is_causal=True)  # attention arrays: scores per item
    ops.additive_scores(X, X, Wq, Wk, wv)
    ops.additive_pool(X, X, Y, Wq, Wk, wv)
    bandwidth.loo_cv_score(X, Y, bandwidth=[0.5, 0.6], return_gradient=True)
    objective.loo_loss_grad(RBF_KIND, X, X, wv, Y, np.zeros(60), np.ones(60))
    objective.loo_loss_grad(RBF_KIND, X, X, wv, Y, np.zeros(60), np.ones(60),
                            pairs_once=False)
    objective.loo_loss_grad(SCALED_DOT_KIND, X[:20], X, wv, Y, np.zeros(60), np.ones(20), 0.5)
    assert not unguarded
    assert launched == {name for _, name, _ in dispatchers}


# --- each choice of strategies and kernel compiles only its own code ----------------------

CHOICE_SCRIPT = """
import json
import numpy as np
from numba.core import event
from nwattn import ops

names = []


class Seen(event.Listener):
    def on_start(self, ev):
        names.append(ev.data["dispatcher"].py_func.__qualname__)

    def on_end(self, ev):
        \"\"\"Only the starts are counted.\"\"\"


rng = np.random.default_rng(0)
X = rng.random((50, 2))
V = rng.random((50, 1))
with event.install_listener("numba:compile", Seen()):
    for h in (0.5, 0.7):
        ops.attention_pool(X, X, V, "triangular", h, algorithm="brute")
print(json.dumps(names))
"""


def test_a_choice_compiles_its_own_kernel_only(tmp_path):
    """In a fresh cache, pooling with one kernel compiles one sweep, reused by the
    second call, and none of the kernel catalogue's other kernels: the choice's
    constants select the kernel's code before Numba types or copies anything else."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", CHOICE_SCRIPT], env=env, check=True,
                         capture_output=True, text=True).stdout
    names = json.loads(out.strip().splitlines()[-1])
    # KERNEL, POOL, distance, triangular, then the arguments' types
    assert len([name for name in names if name.startswith("row_tasks_0_0_0_4_")]) == 1
    assert not [name for name in names if name.startswith(("row_sweep", "row_task."))]
    # The catalogue's scalar log-weights, or the loops of every kernel, are what a
    # branch on a runtime code reaches.
    assert not [name for name in names if name.endswith(("log_weight", "_any_log_weights"))]


def test_each_signature_has_a_cache_index_of_its_own(rng):
    """Two signatures of a sweep never share an on-disk cache index: two processes
    writing two entries of one index at once can cross them (one signature then
    loads the other's code: seen with two test workers on a cold cache), while an
    index of one signature is written only by processes that compile the same code."""
    from nwattn._cpu import sweep
    from nwattn._cpu.choice import sweep_choice

    seen = []
    original = sweep.sweep_driver

    def recording(body, choice, key):
        seen.append(original(body, choice, key))
        return seen[-1]

    X = rng.random((40, 2))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sweep, "sweep_driver", recording)
        ops.attention_pool(X, X, X, "epanechnikov", 0.5, algorithm="brute")
        ops.attention_pool(X, X, X, "epanechnikov", 0.7, return_std=True, algorithm="brute")
        ops.attention_pool(X.astype(np.float32), X.astype(np.float32), X.astype(np.float32),
                           "epanechnikov", 0.5, algorithm="brute")
    # The spreads' columns change shapes only: the same code, the same function.
    assert seen[1] is seen[0] and seen[2] is not seen[0]
    choices = [sweep_choice(0, 0, 0, code) for code in (0, 2, 4)] + [sweep_choice(1, 0, 1, 0)]
    drivers = [original(body, c, key) for body in (sweep.row_tasks, sweep.matrix_tasks)
               for c in choices for key in ("0" * 12, "1" * 12)] + seen[1:]
    indexes = {d._cache._cache_file._index_path for d in drivers}
    assert len(indexes) == len(drivers)


def test_the_sweeps_tasks_never_launch_a_parallel_region(rng, monkeypatch):
    """The compiled tasks run on the threads of ``run_ranges``, several at once: a
    parallel region inside them (Numba's parallel pipeline turns ``np.zeros``
    or a reduction into one unless told not to) would be a nested launch, which
    Numba's workqueue layer answers by terminating the process."""
    from nwattn._cpu import sweep

    seen = []
    original = sweep.sweep_driver

    def recording(body, choice, key):
        seen.append(original(body, choice, key))
        return seen[-1]

    monkeypatch.setattr(sweep, "sweep_driver", recording)
    X = rng.normal(size=(60, 2))
    Y = rng.normal(size=(60, 2))
    ops.attention_pool(X, X, Y, "gaussian", 0.5, return_std=True)
    ops.attention_pool(X, X, Y, "tricube", 2.0, exclude_self=True, algorithm="tree")
    ops.attention_pool(X, X, rng.normal(size=(60, 20)), "laplacian", 0.5)
    ops.local_polynomial(X, X, Y, "epanechnikov", 3.0, degree=2, return_gradient=True)
    ops.local_polynomial_state(X, X, Y, "gaussian", 0.8, slopes=True)
    ops.loo_slopes_state(X, X, Y, "gaussian", [0.5, 0.7])
    assert len({id(d) for d in seen}) >= 5
    for driver in seen:
        opts = driver.targetoptions["parallel"]
        assert not any(getattr(opts, name) for name in (
            "comprehension", "reduction", "inplace_binop", "setitem", "numpy", "stencil",
            "fusion", "prange"))
    # What the pipeline made of one of them, compiled afresh (a function loaded
    # from the on-disk cache keeps no diagnostics).
    driver = seen[0]
    options = {k: v for k, v in driver.targetoptions.items() if k not in ("cache", "nopython")}
    fresh = numba.njit(**options)(driver.py_func)
    for sig in driver.signatures:
        fresh.compile(sig)
    for cres in fresh.overloads.values():
        assert cres.metadata["parfor_diagnostics"].initial_parfors == []


# --- malformed states are refused before any compiled code runs ---------------------------


def _state(rng, n=4, p=2, std=False):
    return ops.attention_pool_state(rng.normal(size=(n, 2)), rng.normal(size=(6, 2)),
                                    rng.normal(size=(6, p)), return_std=std)


@pytest.mark.parametrize("field, value, match", [
    ("max", np.zeros(3), "max must be a 1-D float array|packed must be"),
    ("max", np.zeros((4, 1)), "max must be a 1-D float array"),
    ("max", np.zeros(4, dtype=np.int64), "max must be a 1-D float array"),
    ("packed", np.zeros((4, 2)), "packed must be a float64 array of shape \\(4, 3\\)"),
    ("packed", np.zeros((3, 3)), "packed must be"),
    ("packed", np.zeros((4, 3), dtype=np.float32), "packed must be a float64"),
    ("center", np.zeros(3), "center must be a float array of shape \\(2,\\)"),
    ("center", np.array([np.nan, 0.0]), "center contains NaN"),
    ("layout", "pool", "layout must be a StateLayout"),
])
def test_malformed_states_are_refused(rng, field, value, match):
    good, bad = _state(rng), _state(rng)
    setattr(bad, field, value)
    for call in (lambda: ops.merge_states(good, bad), lambda: ops.merge_states(bad, good),
                 lambda: ops.finalize_state(bad)):
        with pytest.raises((ValueError, TypeError), match=match):
            call()


def test_states_of_different_accumulators_are_refused(rng):
    X = rng.normal(size=(4, 2))
    with pytest.raises(ValueError, match="variance"):
        ops.merge_states(_state(rng, std=True), _state(rng))
    slopes = ops.loo_slopes_state(X, X, rng.normal(size=4))
    with pytest.raises(ValueError, match="different accumulators"):
        ops.merge_states(_state(rng, p=1), slopes)
    with pytest.raises(TypeError, match="finalize_slopes"):
        ops.finalize_state(slopes)
    with pytest.raises(TypeError, match="loo_slopes_state"):
        ops.finalize_slopes(_state(rng))


def test_states_of_other_queries_are_refused(rng):
    """Same count of queries, other values or another offset: never merged."""
    K, V = rng.normal(size=(8, 2)), rng.normal(size=8)
    Q = rng.normal(size=(5, 2))
    a = ops.attention_pool_state(Q, K[:4], V[:4])
    b = ops.attention_pool_state(Q + 1.0, K[4:], V[4:])
    with pytest.raises(ValueError, match="different queries"):
        ops.merge_states(a, b)
    c = ops.attention_pool_state(Q, K[4:], V[4:], query_offset=3)
    with pytest.raises(ValueError, match="different queries"):
        ops.merge_states(a, c)
    # The same queries merge, whatever the keys.
    ops.merge_states(a, ops.attention_pool_state(Q, K[4:], V[4:]))


def test_log_weight_row_matches_the_catalogue_for_every_kernel(rng):
    """The vectorised loops of every smoothing kernel (here called from Python, where
    they run behind a branch on the code) against the catalogue's scalar formula."""
    from nwattn._cpu.rows import log_weight_row
    from nwattn.kernels import DISTANCE, KERNELS, log_weight

    u2 = rng.uniform(0.0, 2.5, size=37)
    for name, kern in KERNELS.items():
        if kern.family != DISTANCE:
            continue
        row = u2.copy()
        top = log_weight_row(kern.code, row, 30)
        want = np.array([log_weight(kern.code, x) for x in u2[:30]])
        np.testing.assert_allclose(row[:30], want, rtol=1e-14, atol=1e-14, err_msg=name)
        np.testing.assert_array_equal(row[30:], u2[30:])
        assert top == row[:30].max(), name

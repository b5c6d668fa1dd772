"""Calling the compiled kernels from several Python threads at once."""

import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import pytest

from nwattn import _parallel, ops

from . import naive

ROOT = Path(__file__).resolve().parents[1]


def _calls(rng, n_calls):
    """Distinct problems, so a mix-up between threads would show."""
    out = []
    for c in range(n_calls):
        Q = rng.normal(size=(40 + c, 2))
        K = rng.normal(size=(300 + 7 * c, 2))
        V = rng.normal(size=(K.shape[0], 2))
        out.append((Q, K, V))
    return out


def _run_all(problems):
    def one(args):
        Q, K, V = args
        pooled = ops.attention_pool(Q, K, V, "gaussian", 0.7)
        scores = ops.pairwise_scores(Q, K, "epanechnikov", 1.5)
        weights = ops.softmax(scores)
        return pooled, weights

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, problems * 3))


def test_concurrent_calls_give_the_sequential_results(rng):
    problems = _calls(rng, 4)
    results = _run_all(problems)
    for (Q, K, V), (pooled, weights) in zip(problems * 3, results):
        assert naive.relative_error(pooled, naive.pool(Q, K, V, "gaussian", 0.7)) <= 1e-12
        want = naive.softmax(naive.scores(Q, K, "epanechnikov", 1.5))
        assert naive.relative_error(weights, want) <= 1e-12


def test_guarded_takes_the_lock_when_the_layer_is_not_thread_safe(rng, monkeypatch):
    monkeypatch.setattr(_parallel, "layer_is_thread_safe", lambda: False)

    def other_thread_can_take_the_lock():
        got = []

        def attempt():
            got.append(_parallel._launch_lock.acquire(blocking=False))
            if got[0]:
                _parallel._launch_lock.release()

        t = threading.Thread(target=attempt)
        t.start()
        t.join()
        return got[0]

    assert other_thread_can_take_the_lock()
    assert not _parallel.guarded(other_thread_can_take_the_lock)()
    problems = _calls(rng, 3)
    for (Q, K, V), (pooled, _) in zip(problems * 3, _run_all(problems)):
        assert naive.relative_error(pooled, naive.pool(Q, K, V, "gaussian", 0.7)) <= 1e-12


# Every public entry point that reaches a parallel kernel, on small distinct
# problems: first run one after the other, then all of them from 4 threads
# at once (each thread runs the whole list, in a different order).
SCRIPT = textwrap.dedent("""
    import threading
    import numba
    import numpy as np
    from nwattn import (NadarayaWatsonRegressor, AttentionRegressor, LocalPolynomialRegressor,
                        bandwidth, objective, ops)
    from nwattn.kernels import RBF_KIND, SCALED_DOT_KIND
    from nwattn.loo import LooProblem

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    Y = rng.normal(size=(300, 2))
    Y20 = rng.normal(size=(300, 20))
    Wq, Wk, wv = rng.normal(size=(3, 2)), rng.normal(size=(3, 2)), rng.normal(size=3)
    Z = rng.normal(size=(120, 2))
    lw, qw = np.zeros(120), np.ones(120)

    def nw():
        m = NadarayaWatsonRegressor(bandwidth="cv", bandwidth_per_feature=True).fit(X, Y[:, 0])
        return m.predict(X[:50])

    calls = {
        "attention_pool": lambda: ops.attention_pool(X, X, Y, "epanechnikov", 0.9,
                                                     exclude_self=True, return_std=True),
        "matrix body": lambda: ops.attention_pool(X, X, Y20, "gaussian", 0.5),
        "pairwise_scores": lambda: ops.pairwise_scores(X[:40], X, "laplacian", 0.5),
        "softmax": lambda: ops.softmax(ops.pairwise_scores(X[:40], X)),
        "top_k_weights": lambda: ops.top_k_weights(X[:40], X, k=3),
        "additive_scores": lambda: ops.additive_scores(X[:40], X, Wq, Wk, wv),
        "additive_pool": lambda: ops.additive_pool(X, X, Y, Wq, Wk, wv, exclude_self=True),
        "loo_slopes_state": lambda: ops.finalize_slopes(ops.loo_slopes_state(X, X, Y))[2],
        "loo_cv_score": lambda: bandwidth.loo_cv_score(X, Y, "gaussian", [0.5, 0.7],
                                                       return_gradient=True)[1],
        "select_bandwidth": lambda: bandwidth.select_bandwidth(X, Y[:, 0]).bandwidth,
        "objective pairs": lambda: objective.loo_loss_grad(RBF_KIND, Z, Z, wv, Y[:120], lw,
                                                           qw)[2],
        "objective sweeps": lambda: objective.loo_loss_grad(SCALED_DOT_KIND, Z[:40], Z, wv,
                                                            Y[:120], lw, qw[:40], 0.5)[1],
        "NadarayaWatsonRegressor": nw,
        "local_polynomial": lambda: ops.local_polynomial(X, X, Y, "tricube", span=0.3,
                                                         degree=2, return_gradient=True)[1],
        "local polynomial gradient": lambda: LooProblem(X, Y, degree=1).value_and_gradient(
            [0.5, 0.7])[1],
        "LocalPolynomialRegressor": lambda: LocalPolynomialRegressor(
            bandwidth_per_feature=True, tol=1e-2).fit(X, Y[:, 0]).predict(X[:50]),
        "AttentionRegressor": lambda: AttentionRegressor(max_iter=3).fit(X, Y[:, 0]).predict(X),
    }
    ref = {name: f() for name, f in calls.items()}
    bad = []

    def same(a, b):
        if isinstance(a, tuple):
            return all(same(x, y) for x, y in zip(a, b))
        return np.allclose(a, b, rtol=1e-12, atol=0, equal_nan=True)

    def work(seed):
        names = list(calls)
        np.random.default_rng(seed).shuffle(names)
        for name in names:
            if not same(calls[name](), ref[name]):
                bad.append(name)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(numba.threading_layer(), "mismatches", len(bad), *bad)
""")


def test_workqueue_layer_survives_concurrent_calls():
    """Numba's workqueue layer aborts the process on concurrent launches;
    the backend's guard keeps it alive, for every public entry point that
    reaches a parallel kernel. Runs in a child process pinned to that layer."""
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", SCRIPT], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["workqueue", "mismatches", "0"]


@pytest.mark.parametrize("layer", sorted(_parallel.THREAD_SAFE_LAYERS))
def test_thread_safe_layers_skip_the_lock(layer, monkeypatch):
    import numba

    monkeypatch.setattr(numba, "threading_layer", lambda: layer)
    assert _parallel.layer_is_thread_safe()
    monkeypatch.setattr(numba, "threading_layer", lambda: "workqueue")
    assert not _parallel.layer_is_thread_safe()


def _blas_threads():
    from threadpoolctl import threadpool_info

    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


@pytest.fixture
def blas_threads():
    """BLAS's thread count before the test, which must be more than one."""
    before = _blas_threads()
    if not before or before == {1}:
        pytest.skip("no multithreaded BLAS library found")
    return before


def test_overlapping_serial_blas_blocks_restore_the_limit(blas_threads):
    """Two threads inside serial_blas at once, the first leaving first: BLAS
    stays at one thread until the last one leaves, then gets its setting
    back (each thread restoring what it found left it at one for good)."""
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with _parallel.serial_blas():
            first_in.set()
            second_in.wait()
        first_out.set()

    def second():
        first_in.wait()
        with _parallel.serial_blas():
            second_in.set()
            first_out.wait()
            seen["after the first left"] = _blas_threads()

    for _ in range(2):  # and again, with the threads of the first round gone
        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen.pop("after the first left") == {1}
        assert _blas_threads() == blas_threads
        for event in (first_in, second_in, first_out):
            event.clear()


def test_serial_blas_restores_the_limit_when_the_block_raises(blas_threads):
    with pytest.raises(KeyError):
        with _parallel.serial_blas():
            assert _blas_threads() == {1}
            raise KeyError("inside")
    assert _blas_threads() == blas_threads


BLAS_LOADED_LATE = textwrap.dedent("""
    import json
    from threadpoolctl import threadpool_info
    from nwattn._parallel import serial_blas

    with serial_blas():
        # What Numba's first matrix product does inside a sweep: load SciPy's
        # BLAS, which pip's wheels ship apart from NumPy's.
        import scipy.linalg.cython_blas  # noqa: F401
        inside = [(i["filepath"], i["num_threads"]) for i in threadpool_info()
                  if i["user_api"] == "blas"]
    print(json.dumps(inside))
""")


def test_serial_blas_limits_the_blas_that_numba_loads_later():
    """Every BLAS library is at one thread inside the block, SciPy's included.

    Numba's products call SciPy's BLAS, loaded by Numba's first compilation
    of a product, inside the block of a first call; the limit missed it, and
    each product then ran its own workers beside Numba's threads (the
    scaled-dot pooling 2x slower on 2 cores). A fresh interpreter, so that
    nothing has loaded it before.
    """
    import json

    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", BLAS_LOADED_LATE],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    inside = json.loads(proc.stdout.strip().splitlines()[-1])
    assert inside, "no BLAS library found"
    assert all(n == 1 for _, n in inside), inside


# --- run_ranges: the sweep's tasks on a pool of threads ------------------------------------


@pytest.mark.parametrize("n_threads, pieces", [(1, None), (1, 5), (2, None), (3, 7), (4, 40),
                                               (3, 1)])
@pytest.mark.parametrize("start, stop", [(0, 1), (0, 13), (5, 6), (7, 100)])
def test_run_ranges_covers_the_range_once_in_order_within_pieces(n_threads, pieces, start,
                                                                 stop):
    seen = []
    lock = threading.Lock()

    def record(a, b):
        with lock:
            seen.append((a, b))

    _parallel.run_ranges(record, start, stop, n_threads, pieces)
    ranges = sorted(seen)
    wanted = min(stop - start, n_threads if pieces is None else pieces)
    assert len(ranges) == wanted
    assert ranges[0][0] == start and ranges[-1][1] == stop
    assert all(a < b for a, b in ranges)
    assert all(r[1] == s[0] for r, s in zip(ranges, ranges[1:]))
    lengths = [b - a for a, b in ranges]
    assert max(lengths) - min(lengths) <= 1


def test_run_ranges_runs_the_pieces_at_once():
    """As many pieces as threads meet at a barrier: they only pass it together."""
    n = numba.config.NUMBA_NUM_THREADS
    if n < 2:
        pytest.skip("one thread only")
    barrier = threading.Barrier(n, timeout=30)
    threads_seen = set()

    def meet(a, b):
        threads_seen.add(threading.get_ident())
        barrier.wait()

    _parallel.run_ranges(meet, 0, n, n_threads=n)
    assert len(threads_seen) == n and threading.get_ident() in threads_seen


@pytest.mark.parametrize("failing", [0, 5])
def test_run_ranges_raises_the_first_error_and_stops_taking_pieces(failing):
    """An error in the caller's piece (the first) or a worker's stops the others from
    taking more pieces; it is raised once every running piece has returned."""
    started, finished = [], []
    lock = threading.Lock()

    def piece(a, b):
        with lock:
            started.append(a)
        if a == failing:
            raise KeyError(f"piece {a}")
        threading.Event().wait(0.01)
        with lock:
            finished.append(a)

    with pytest.raises(KeyError, match=f"piece {failing}"):
        _parallel.run_ranges(piece, 0, 400, n_threads=2, pieces=400)
    assert len(started) < 400
    # Nothing still runs once the call is back.
    count = len(finished)
    threading.Event().wait(0.05)
    assert len(finished) == count


def test_run_ranges_makes_a_pool_of_its_own_in_a_forked_child():
    """A forked child has none of its parent's threads: a pool made before the fork
    would take its pieces and never run them."""
    script = textwrap.dedent("""
        import os, sys, threading
        import numba
        from nwattn._parallel import run_ranges
        seen = set()
        def piece(a, b):
            seen.add(threading.get_ident())
            threading.Event().wait(0.05)
        run_ranges(piece, 0, 4, n_threads=2)
        pid = os.fork()
        if pid == 0:
            seen.clear()
            run_ranges(piece, 0, 4, n_threads=2)
            os._exit(0 if len(seen) == min(2, numba.config.NUMBA_NUM_THREADS) else 3)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
    """)
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    done = subprocess.run([sys.executable, "-c", script], timeout=120, cwd=ROOT)
    assert done.returncode == 0

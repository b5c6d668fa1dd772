"""Stopping long calls: Ctrl-C, and the sweep's chunks and progress callback.

The CPU sweep runs its tasks in chunks and returns to the interpreter
between them (``nwattn._cpu.sweep.sweep``), so that a SIGINT raises
KeyboardInterrupt within a chunk's time, and so that a progress callback can
report. Chunks only group independent tasks: the results must be bit for bit
those of a single launch, whatever the chunk size and the thread count.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numba
import numpy as np
import pytest

from nwattn import _config, ops
from nwattn._backend import get_backend
from nwattn._cpu.strategies import KERNEL, POOL
from nwattn._layout import pool_layout
from nwattn._parallel import threads
from nwattn.kernels import get_kernel

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_chunks(small_blocks, monkeypatch):
    """Chunks of one task per thread, on inputs spanning many tasks and key splits."""
    monkeypatch.setattr(_config, "SWEEP_CHUNK_WORK", 1)
    return small_blocks


def _single_launch(monkeypatch):
    monkeypatch.setattr(_config, "SWEEP_CHUNK_WORK", 2**62)


def _calls(rng):
    """Every sweep: kernel pooling (row and matrix bodies, with variance and
    leave-one-out), the leave-one-out slopes and a learned score."""
    Q = rng.normal(size=(41, 3))
    K = rng.normal(size=(57, 3))
    V = rng.normal(size=(57, 2))
    V20 = rng.normal(size=(57, 20))
    Qd, Kd = rng.normal(size=(41, 40)), rng.normal(size=(57, 40))
    Wq, Wk, wv = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=4)
    return {
        "row": lambda: ops.attention_pool(Q, K, V, "epanechnikov", 4.0, return_std=True),
        "loo": lambda: ops.attention_pool(K, K, V, "gaussian", 0.6, exclude_self=True),
        "matrix": lambda: ops.attention_pool(Q, K, V20, "laplacian", 0.9, return_std=True),
        "gemm scores": lambda: ops.attention_pool(Qd, Kd, V, "dot", 9.0),
        "slopes": lambda: ops.finalize_slopes(ops.loo_slopes_state(K, K, V, "gaussian",
                                                                   [0.5, 0.7, 0.9])),
        "learned": lambda: ops.additive_pool(Q, K, V, Wq, Wk, wv),
    }


def _flat(result):
    if isinstance(result, tuple):
        return [a for r in result for a in _flat(r)]
    return [np.asarray(result)]


@pytest.mark.parametrize("n_jobs", [1, 2, 3])
def test_chunks_change_no_bit_of_any_result(rng, tiny_chunks, monkeypatch, n_jobs):
    seed = rng.integers(2**32)
    chunked = {}
    with threads(n_jobs):
        for name, call in _calls(np.random.default_rng(seed)).items():
            chunked[name] = _flat(call())
    _single_launch(monkeypatch)
    for name, call in _calls(np.random.default_rng(seed)).items():
        for got, want in zip(chunked[name], _flat(call())):
            assert np.array_equal(got, want, equal_nan=True), name


def _prepared(rng, n, m, p):
    """Arguments of the CPU backend's ``pool`` for a gaussian kernel."""
    Q = rng.normal(size=(n, 2))
    K = rng.normal(size=(m, 2))
    V = rng.normal(size=(m, p))
    return (np.ascontiguousarray(Q / 0.7), np.ascontiguousarray((K / 0.7).T),
            np.ascontiguousarray(V.T), np.empty((0, m)), np.empty(0))


def test_progress_reports_every_chunk_up_to_all_pairs(rng, tiny_chunks):
    be = get_backend("cpu")
    kern = get_kernel("gaussian")
    n, m = 37, 50
    Qs, KT, VT, VT2, logw = _prepared(rng, n, m, 2)
    seen = []
    got = be.pool(Qs, KT, VT, VT2, logw, kern.family, kern.code, 1.0, -n - 1,
                  progress=lambda done, total: seen.append((done, total)))
    want = be.pool(Qs, KT, VT, VT2, logw, kern.family, kern.code, 1.0, -n - 1)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    assert len(seen) > 5  # one call per chunk, and there are many
    done = [d for d, _ in seen]
    assert {t for _, t in seen} == {n * m}
    assert done == sorted(done) and len(set(done)) == len(done)
    assert done[-1] == n * m


def test_progress_counts_pairs_with_split_keys(rng, tiny_chunks):
    """Few queries and many keys: the keys are split, the counts still add up."""
    be = get_backend("cpu")
    kern = get_kernel("gaussian")
    n, m = 4, 200
    Qs, KT, VT, VT2, logw = _prepared(rng, n, m, 1)
    seen = []
    with threads(1):
        be.pool(Qs, KT, VT, VT2, logw, kern.family, kern.code, 1.0, -n - 1,
                progress=lambda done, total: seen.append(done))
    steps = np.diff([0, *seen])
    assert seen[-1] == n * m
    assert (steps > 0).all()
    # One task a chunk with one thread: each step is one (block, split) task
    # of at most QUERY_BLOCK queries against one split of the keys.
    assert steps.max() < n * m


def test_an_exception_from_progress_stops_the_sweep(rng, tiny_chunks):
    be = get_backend("cpu")
    kern = get_kernel("gaussian")
    Qs, KT, VT, VT2, logw = _prepared(rng, 30, 40, 1)
    calls = []

    def cancel(done, total):
        calls.append(done)
        if len(calls) == 2:
            raise InterruptedError("stop here")

    with pytest.raises(InterruptedError, match="stop here"):
        be.pool(Qs, KT, VT, VT2, logw, kern.family, kern.code, 1.0, -31, progress=cancel)
    assert len(calls) == 2


class _CountingDispatcher:
    """Stands for a Numba dispatcher and records the task ranges of the calls through it."""

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self.ranges = []

    def __call__(self, *args):
        # The tasks' range comes before the layout's powers and offsets and the outputs.
        self.ranges.append((args[-6], args[-5]))
        return self.dispatcher(*args)

    def __getattr__(self, name):
        return getattr(self.dispatcher, name)


@pytest.mark.parametrize("p", [2, 20], ids=["row body", "matrix body"])
def test_each_chunk_is_one_call_per_thread_with_the_single_call_result(rng, tiny_chunks,
                                                                       monkeypatch, p):
    """Every chunk is one call of the compiled tasks per thread (its strategies are
    compiled in, so a call costs one ordinary dispatch), the calls cover every task
    once, and the chunks together give bit for bit the result of one call over all
    tasks."""
    from nwattn._cpu import sweep

    body = sweep.matrix_tasks if p >= _config.GEMM_MIN_OUTPUTS else sweep.row_tasks
    drivers = []
    original = sweep.sweep_driver

    def counted(body_, choice, key):
        drivers.append(_CountingDispatcher(original(body_, choice, key)))
        return drivers[-1]

    monkeypatch.setattr(sweep, "sweep_driver", counted)
    kern = get_kernel("gaussian")
    Qs, KT, VT, VT2, logw = _prepared(rng, 20, 30, p)
    chunks = []
    got = sweep.sweep(KERNEL, POOL, pool_layout(p, False), Qs, KT, VT, VT2, logw, kern.family,
                      kern.code, 1.0, -21, progress=lambda done, total: chunks.append(done))
    assert len(chunks) > 2
    assert len(drivers) == 1 and drivers[0].py_func.__name__.startswith(body.__name__)
    ranges = sorted(drivers[0].ranges)
    assert len(chunks) <= len(ranges) <= len(chunks) * numba.get_num_threads()
    assert ranges[0][0] == 0 and all(a < b for a, b in ranges)
    assert all(r[1] == s[0] for r, s in zip(ranges, ranges[1:]))
    monkeypatch.setattr(sweep, "sweep_driver", original)
    _single_launch(monkeypatch)
    want = sweep.sweep(KERNEL, POOL, pool_layout(p, False), Qs, KT, VT, VT2, logw, kern.family,
                       kern.code, 1.0, -21)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


# A pooling of n = m = 200 000 pairs takes minutes; it must stop within a
# chunk's time of a SIGINT, restore what it changed (Numba's thread count,
# BLAS's limit on the matrix body) and leave the process usable.
SIGINT_SCRIPT = textwrap.dedent("""
    import sys, time
    import numba
    import numpy as np
    from threadpoolctl import threadpool_info
    from nwattn import ops
    from nwattn.estimators import NadarayaWatsonRegressor

    p = int(sys.argv[1])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200_000, 8))
    Y = rng.normal(size=(200_000, p))
    small = (X[:300], X[:300], Y[:300])
    want = ops.attention_pool(*small, "gaussian", 0.8)  # also loads the kernels
    blas = [i["num_threads"] for i in threadpool_info()]
    model = NadarayaWatsonRegressor(bandwidth=0.8, n_jobs=1).fit(X, Y)
    threads = numba.get_num_threads()
    print("ready", flush=True)
    try:
        model.predict(X)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    else:
        print("finished", flush=True)
    assert numba.get_num_threads() == threads
    assert [i["num_threads"] for i in threadpool_info()] == blas
    assert np.array_equal(ops.attention_pool(*small, "gaussian", 0.8), want)
    print("usable", flush=True)
""")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT cannot be sent to a child")
@pytest.mark.parametrize("p", [1, 20], ids=["row body", "matrix body"])
def test_sigint_stops_a_long_pooling(p):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.Popen([sys.executable, "-c", SIGINT_SCRIPT, str(p)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Loading the kernels (or compiling them, the first time) comes first.
        ready = threading.Timer(900, proc.kill)
        ready.start()
        line = proc.stdout.readline()
        ready.cancel()
        assert line.strip() == "ready", proc.stderr.read()[-3000:]
        threading.Event().wait(1.0)  # well inside the pooling
        proc.send_signal(signal.SIGINT)
        # Uninterrupted, the pooling would run for minutes.
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the pooling did not stop within 30 s of SIGINT")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert out.split() == ["interrupted", "usable"]

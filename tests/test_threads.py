"""Calling the compiled kernels from several Python threads at once."""

import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
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


def test_serialised_takes_the_lock_when_the_layer_is_not_thread_safe(rng, monkeypatch):
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
    assert not _parallel.serialised(other_thread_can_take_the_lock)()
    problems = _calls(rng, 3)
    for (Q, K, V), (pooled, _) in zip(problems * 3, _run_all(problems)):
        assert naive.relative_error(pooled, naive.pool(Q, K, V, "gaussian", 0.7)) <= 1e-12


SCRIPT = textwrap.dedent("""
    import threading
    import numba
    import numpy as np
    from nwattn.ops import attention_pool

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 2))
    y = rng.normal(size=2000)
    ref = attention_pool(X, X, y)
    bad = []

    def work():
        for _ in range(4):
            if not np.array_equal(attention_pool(X, X, y), ref):
                bad.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(numba.threading_layer(), "mismatches", len(bad))
""")


def test_workqueue_layer_survives_concurrent_calls():
    """Numba's workqueue layer aborts the process on concurrent launches;
    nwattn's lock keeps it alive. Runs in a child process pinned to that layer."""
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["workqueue", "mismatches", "0"]


@pytest.mark.parametrize("layer", sorted(_parallel.THREAD_SAFE_LAYERS))
def test_thread_safe_layers_skip_the_lock(layer, monkeypatch):
    import numba

    monkeypatch.setattr(numba, "threading_layer", lambda: layer)
    assert _parallel.layer_is_thread_safe()
    monkeypatch.setattr(numba, "threading_layer", lambda: "workqueue")
    assert not _parallel.layer_is_thread_safe()

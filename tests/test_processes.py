"""Processes forked after the compiled kernels have run.

Each scenario runs in a fresh interpreter, with a timeout, because what goes
wrong here is a child killed by the OpenMP runtime or a process pool waiting
for ever, and because Numba's threading layer is chosen once per process.
Under a layer that survives ``fork`` (``tbb``, ``workqueue``) the children
must compute the parent's results; under GNU OpenMP, which kills such a
child at its first parallel launch, the fork must warn and the child must
raise an error that says what to do, so that a pool reports it instead of
hanging.
"""

import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from nwattn import ops

ROOT = Path(__file__).resolve().parents[1]

#: Seconds a scenario may take once the kernels are in Numba's disk cache;
#: a hung child or pool shows as a timeout.
TIMEOUT = 300


def _tbb_installed():
    try:
        metadata.distribution("tbb")
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    """Compile (or load) the kernels once here, so the children only load them."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    ops.attention_pool(X, X, X[:, 0], "gaussian", 0.5)
    ops.attention_pool(X, X, X[:, 0], "epanechnikov", 0.9, return_std=True)


def _run(script, layer):
    """Run ``script`` in a fresh interpreter under ``layer`` (None: Numba's choice)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer is not None:
        env["NUMBA_THREADING_LAYER"] = layer
    try:
        proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
                              env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"hung under layer {layer}: {exc.stderr!s:.2000}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


# What every scenario starts with: a pooling in the parent (so the threading
# layer is running before the fork), the problems the children solve, and
# the parent's answers to them.
PRELUDE = textwrap.dedent("""
    import multiprocessing, os, sys, warnings
    import numba
    import numpy as np
    from nwattn import ops
    from nwattn.exceptions import UnsafeForkWarning

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = rng.normal(size=400)
    ops.attention_pool(X, X, y, "gaussian", 0.5)
    LAYER = numba.threading_layer()
    # GNU OpenMP kills a forked child at its first parallel launch.
    if LAYER == "omp":
        from numba.np.ufunc import omppool
        USABLE = omppool.openmp_vendor != "GNU"
    else:
        USABLE = True
    PROBLEMS = [(X[i::4], i) for i in range(4)]

    def solve(args):
        Q, i = args
        return ops.attention_pool(Q, X, y, "epanechnikov", 0.8 + 0.1 * i, return_std=True)

    WANT = [solve(p) for p in PROBLEMS]

    def same(got):
        return all(np.array_equal(a, b, equal_nan=True)
                   for g, w in zip(got, WANT) for a, b in zip(g, w))
    print(LAYER)
""")

FORK_CHILD = """
    import pickle
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r, w = os.pipe()
        pid = os.fork()
    if pid == 0:
        try:
            out = [solve(p) for p in PROBLEMS]
        except RuntimeError as exc:
            out = str(exc)
        os.write(w, pickle.dumps(out))
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    _, status = os.waitpid(pid, 0)
    out = pickle.loads(data)
    warned = any(c.category is UnsafeForkWarning for c in caught)
    if USABLE:
        assert not warned
        assert same(out), "the child's results differ"
    else:
        assert warned
        assert "tbb" in out and "spawn" in out, out
    assert os.waitstatus_to_exitcode(status) == 0, status
    print("ok")
"""

POOL_MAP = """
    warnings.simplefilter("ignore", UnsafeForkWarning)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        try:
            out = pool.map(solve, PROBLEMS)
        except RuntimeError as exc:
            out = str(exc)
    if USABLE:
        assert same(out), "the pool's results differ"
    else:
        assert "tbb" in out, out
    print("ok")
"""

EXECUTOR = """
    from concurrent.futures import ProcessPoolExecutor
    warnings.simplefilter("ignore", UnsafeForkWarning)
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        try:
            out = list(ex.map(solve, PROBLEMS))
        except RuntimeError as exc:
            out = str(exc)
        # The executor is still usable afterwards (no broken pool).
        assert ex.submit(int, "7").result() == 7
    if USABLE:
        assert same(out), "the executor's results differ"
    else:
        assert "tbb" in out, out
    print("ok")
"""

LAYERS = [None, "tbb", "workqueue", "omp"]


def _skip_unavailable(layer):
    if layer == "tbb" and not _tbb_installed():
        pytest.skip("the tbb package is not installed")


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("script", [FORK_CHILD, POOL_MAP, EXECUTOR],
                         ids=["os.fork", "Pool.map", "ProcessPoolExecutor"])
def test_fork_after_pooling(script, layer):
    _skip_unavailable(layer)
    proc = _run(script, layer)
    got_layer, verdict = proc.stdout.split()
    assert verdict == "ok"
    if layer is not None:
        assert got_layer == layer


@pytest.mark.skipif(not _tbb_installed(), reason="the tbb package is not installed")
def test_tbb_is_the_layer_out_of_the_box():
    """With the tbb package installed (a dependency where it has wheels),
    Numba's choice is the fork- and thread-safe layer, and forks just work."""
    proc = _run(FORK_CHILD, None)
    assert proc.stdout.split() == ["tbb", "ok"]


def test_an_explicit_layer_is_respected():
    proc = _run("print(numba.config.THREADING_LAYER)", "workqueue")
    assert proc.stdout.split() == ["workqueue", "workqueue"]


# A fork while another thread holds the launch lock (the lock that takes
# turns under workqueue): the child has only the forking thread, so a copy of
# the held lock would never be released there. The parent polls the child so
# that a hung child is killed rather than left behind.
LOCK_HELD_AT_FORK = """
    import threading, time
    from nwattn import _parallel
    held, release = threading.Event(), threading.Event()

    def holder():
        with _parallel._launch_lock:
            held.set()
            release.wait()

    t = threading.Thread(target=holder)
    t.start()
    held.wait()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        ok = same([solve(p) for p in PROBLEMS])
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    release.set()
    t.join()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        print("hung")
        sys.exit(0)
    os.close(w)
    print("ok" if os.read(r, 1) == b"1" else "wrong")
"""


def test_fork_while_another_thread_holds_the_launch_lock():
    proc = _run(LOCK_HELD_AT_FORK, "workqueue")
    assert proc.stdout.split() == ["workqueue", "ok"]

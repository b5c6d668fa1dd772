"""Number of CPU threads used by the compiled kernels, and safe concurrent use.

Concurrency. Numba's ``workqueue`` threading layer (the one it falls back to
when neither TBB nor OpenMP is available) aborts the whole process when two
Python threads run ``parallel=True`` functions at the same time, which is
what Dask's threaded scheduler, web servers and thread pools do. The
``tbb`` and ``omp`` layers are thread-safe. :func:`guarded` wraps a
host function that launches compiled kernels so that, under ``workqueue`` only, calls from different
threads take turns on a process-wide lock; under ``tbb`` or ``omp`` they run
concurrently and the lock is never taken. Choose the layer with Numba's
``NUMBA_THREADING_LAYER`` environment variable (installing the ``tbb``
package makes ``tbb`` available everywhere).
"""

import functools
import os
import threading
from contextlib import contextmanager

import numba


def effective_n_jobs(n_jobs):
    """Threads to use for ``n_jobs``, following scikit-learn's convention.

    ``None`` keeps Numba's current setting, a positive integer asks for that
    many threads (capped at Numba's maximum), ``-1`` means all of them and
    ``-2`` all but one, and so on.
    """
    limit = numba.config.NUMBA_NUM_THREADS
    if n_jobs is None:
        return numba.get_num_threads()
    if isinstance(n_jobs, bool) or not hasattr(n_jobs, "__index__"):
        raise TypeError(f"n_jobs must be an integer or None, got {n_jobs!r}")
    n_jobs = int(n_jobs)
    if n_jobs == 0:
        raise ValueError("n_jobs must not be 0")
    if n_jobs < 0:
        return max(1, limit + 1 + n_jobs)
    return min(n_jobs, limit)


@contextmanager
def threads(n_jobs):
    """Run the enclosed block with ``n_jobs`` Numba threads, restoring the setting after.

    The previous setting comes back even when the block raises.

    Examples
    --------
    >>> import numba
    >>> from nwattn._parallel import threads
    >>> before = numba.get_num_threads()
    >>> with threads(1):
    ...     numba.get_num_threads()
    1
    >>> numba.get_num_threads() == before
    True
    """
    wanted = effective_n_jobs(n_jobs)
    before = numba.get_num_threads()
    numba.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        numba.set_num_threads(before)


_blas_controller = None

# serial_blas is entered by several threads at once (two fits, two bandwidth
# searches): the BLAS limit is process-wide, so it is set by the first thread
# to enter and restored by the last one to leave. Each thread saving and
# restoring it for itself would leave it at one thread for good whenever the
# calls overlap (the second saves the first's limit of one).
_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None
_blas_depth = threading.local()


def _as_blas_owner(change):
    """Apply a limit change from the calling thread, whichever thread set the last one.

    threadpoolctl (3.8 on) lets only one "controlling" thread change
    OpenBLAS's process-wide limit and ignores the others; the thread that
    restores the limit here is often not the one that set it. Control is
    released before and after, as threadpoolctl's own context manager does
    when it exits.
    """
    try:
        from threadpoolctl import OpenBLASController

        release = functools.partial(OpenBLASController.clear_controlling_thread, force=True)
    except (ImportError, AttributeError, TypeError):  # older threadpoolctl: no owner
        release = lambda: None  # noqa: E731
    release()
    try:
        return change()
    finally:
        release()


def _blas_enter():
    global _blas_controller, _blas_users, _blas_limiter
    with _blas_lock:
        if _blas_users == 0:
            if _blas_controller is None:
                from threadpoolctl import ThreadpoolController

                _blas_controller = ThreadpoolController()
            _blas_limiter = _as_blas_owner(
                lambda: _blas_controller.limit(limits=1, user_api="blas"))
        _blas_users += 1
    _blas_depth.n = getattr(_blas_depth, "n", 0) + 1


def _blas_leave():
    global _blas_users, _blas_limiter
    _blas_depth.n -= 1
    with _blas_lock:
        _blas_users -= 1
        if _blas_users == 0:
            limiter, _blas_limiter = _blas_limiter, None
            _as_blas_owner(limiter.restore_original_limits)


@contextmanager
def serial_blas():
    """Run the enclosed block with BLAS limited to one thread.

    For code that alternates BLAS calls with Numba's parallel passes, or
    calls BLAS from inside them: after each call OpenBLAS's idle workers
    spin for a while, and on a small machine they take the cores from
    Numba's threads (an AttentionRegressor fit ran 1.7 times slower for
    it). The products involved are small, so one BLAS thread costs little.
    The controller that finds the loaded BLAS libraries is built once.

    The limit is process-wide, and so is the bookkeeping: when blocks
    overlap in several threads, the first to enter sets the limit and the
    last to leave restores the setting found by the first.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn._parallel import serial_blas
    >>> with serial_blas():
    ...     float(np.ones((3, 3)) @ np.ones(3) @ np.ones(3))
    9.0
    """
    _blas_enter()
    try:
        yield
    finally:
        _blas_leave()


#: Threading layers that support launches from several threads at once.
THREAD_SAFE_LAYERS = frozenset({"tbb", "omp"})

_launch_lock = threading.RLock()
_inside = threading.local()


def _reset_after_fork():
    # A fork while another thread held the lock would leave the child's copy
    # locked for ever (only the forking thread exists in the child).
    global _launch_lock
    _launch_lock = threading.RLock()
    _inside.depth = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def layer_is_thread_safe():
    """Whether Numba's threading layer accepts concurrent launches.

    ``False`` while no parallel function has run yet (the layer is chosen at
    the first launch, so the safe answer is to serialise that one).

    Examples
    --------
    >>> from nwattn._parallel import layer_is_thread_safe
    >>> isinstance(layer_is_thread_safe(), bool)
    True
    """
    try:
        return numba.threading_layer() in THREAD_SAFE_LAYERS
    except ValueError:  # not initialised yet
        return False


def in_guard():
    """Whether the calling thread is inside a :func:`guarded` call.

    Examples
    --------
    >>> from nwattn._parallel import in_guard
    >>> in_guard()
    False
    """
    return getattr(_inside, "depth", 0) > 0


def guarded(func):
    """Wrap a host function that launches ``parallel=True`` kernels so concurrent calls are safe.

    Under a thread-safe layer (``tbb``, ``omp``) the wrapper calls ``func``
    directly; otherwise calls take turns on one re-entrant lock shared by
    every wrapped function, because ``workqueue`` forbids any two parallel
    regions at once, not only two runs of the same function. The CPU
    backend wraps each of its operations with it, so every parallel launch
    of the package goes through it.

    Examples
    --------
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> import numpy as np
    >>> from numba import njit, prange
    >>> from nwattn._parallel import guarded
    >>> @njit(parallel=True)
    ... def total(x):
    ...     s = 0.0
    ...     for i in prange(x.shape[0]):
    ...         s += x[i]
    ...     return s
    >>> safe_total = guarded(total)
    >>> with ThreadPoolExecutor(4) as pool:
    ...     list(pool.map(safe_total, [np.ones(1000)] * 4))
    [1000.0, 1000.0, 1000.0, 1000.0]
    """

    def call(*args, **kwargs):
        _inside.depth = getattr(_inside, "depth", 0) + 1
        try:
            return func(*args, **kwargs)
        finally:
            _inside.depth -= 1

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if layer_is_thread_safe():
            return call(*args, **kwargs)
        with _launch_lock:
            return call(*args, **kwargs)

    return wrapper


__all__ = ["effective_n_jobs", "threads", "serial_blas", "layer_is_thread_safe", "guarded",
           "in_guard"]

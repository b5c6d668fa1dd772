"""Number of CPU threads used by the compiled kernels, and safe use from threads and processes.

Threading layer. Numba runs ``parallel=True`` functions on one of three
layers, chosen at the first parallel launch of the process: ``tbb`` (safe
with threads and with ``fork``), ``omp`` (safe with threads; with GNU
OpenMP, the Linux build, a child forked after a launch is killed at its
first one) and ``workqueue`` (safe with ``fork``; two threads launching at
once abort the process). Numba prefers ``tbb`` but finds the TBB runtime
of the ``tbb`` package only where the dynamic loader looks, which a virtual
environment's ``lib`` folder is not; :func:`preload_tbb` loads it from
where the package put it when this module is imported, so ``tbb`` is the
layer out of the box wherever that package is installed (nwattn depends
on it on the platforms it has wheels for). A choice made with Numba's
``NUMBA_THREADING_LAYER`` environment variable is respected.

Threads. :func:`guarded` wraps a host function that launches compiled
kernels so that, under ``workqueue`` only, calls from different threads
take turns on a process-wide lock; under ``tbb`` or ``omp`` they run
concurrently and the lock is never taken.

Tasks. :func:`run_ranges` runs a serial compiled function that releases
the GIL over ranges of independent tasks on a pool of Python threads (the
CPU sweep's way to use the cores: see :mod:`nwattn._cpu.sweep`). It needs
no threading layer and no guard, and follows the same thread count
(:func:`threads`, Numba's setting in the calling thread).

Processes. A ``fork`` under ``tbb`` or ``workqueue`` gives a child that
computes normally (the lock is renewed in the child, in case another thread
held it). Under GNU OpenMP after a launch, nothing can make the child's
launches work: the fork warns (:class:`~nwattn.exceptions.UnsafeForkWarning`)
and the child's calls raise a RuntimeError that says what to do, instead of
the child being killed and a process pool waiting for it for ever.
"""

import ctypes
import functools
import os
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

import numba

from .exceptions import UnsafeForkWarning

#: Name of the TBB runtime that Numba's ``tbb`` layer loads, per platform.
_TBB_RUNTIME = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}

#: Values of ``NUMBA_THREADING_LAYER`` under which Numba may pick ``tbb``.
_MAY_PICK_TBB = frozenset({"default", "tbb", "safe", "threadsafe"})


def _tbb_runtime_path():
    """Path of the TBB runtime installed by the ``tbb`` package, or None."""
    name = _TBB_RUNTIME.get(sys.platform)
    if name is None:
        return None
    from importlib import metadata

    try:
        dist = metadata.distribution("tbb")
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name == name:
            path = dist.locate_file(file)
            if os.path.isfile(path):
                return str(path)
    return None


def preload_tbb():
    """Load the ``tbb`` package's runtime so that Numba can choose the ``tbb`` layer.

    Numba looks for the runtime by its bare name, which the dynamic loader
    of Linux and Windows resolves to an already loaded library of that name
    before searching its paths; loading the package's copy by its full
    path, before the first parallel launch, is therefore enough. Does nothing once the
    layer is chosen, when ``NUMBA_THREADING_LAYER`` names a layer other
    than ``tbb``, or when the package is not installed.

    Returns
    -------
    str or None
        The path of the runtime that was loaded, or None.

    Examples
    --------
    >>> import os
    >>> from nwattn._parallel import preload_tbb
    >>> path = preload_tbb()
    >>> path is None or os.path.basename(path) in ("libtbb.so.12", "libtbb.12.dylib", "tbb12.dll")
    True
    """
    try:
        numba.threading_layer()
        return None  # already chosen
    except ValueError:
        pass
    if str(numba.config.THREADING_LAYER).lower() not in _MAY_PICK_TBB:
        return None
    path = _tbb_runtime_path()
    if path is None:
        return None
    try:
        ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
    except OSError:  # a broken install: Numba then picks another layer
        return None
    return path


preload_tbb()


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
                # Numba's matrix products call SciPy's BLAS, which pip's wheels
                # ship as an OpenBLAS of its own beside NumPy's, loaded only
                # when Numba first compiles a product: later than this
                # controller is built by a first call. A controller that has
                # not seen that library leaves it at all cores, and each BLAS
                # call from a Numba thread then spawns workers that fight the
                # other threads (the scaled-dot pooling ran 2x slower on 2
                # cores). Loading it first puts it under the limit.
                import scipy.linalg.cython_blas  # noqa: F401
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

#: Set in a child forked, after a parallel launch, under a layer that kills
#: such a child at its next one; the guard then refuses to launch.
_forked_unusable = False


def forked_layer_is_usable():
    """Whether a child forked now could run parallel kernels.

    ``False`` only when a parallel launch has already chosen Numba's
    ``omp`` layer with GNU OpenMP, which terminates a forked child at its
    first parallel launch; ``tbb`` and ``workqueue`` survive a fork, and
    before the first launch a child chooses a layer of its own.

    Examples
    --------
    >>> from nwattn._parallel import forked_layer_is_usable
    >>> isinstance(forked_layer_is_usable(), bool)
    True
    """
    try:
        layer = numba.threading_layer()
    except ValueError:  # nothing launched yet
        return True
    if layer != "omp":
        return True
    from numba.np.ufunc import omppool

    return getattr(omppool, "openmp_vendor", "") != "GNU"


#: What to do instead, for the fork warning and the child's error.
_FORK_REMEDY = (
    "install the tbb package (pip install tbb) so that Numba uses its fork-safe 'tbb' "
    "layer, set NUMBA_THREADING_LAYER=workqueue, or start the worker processes with the "
    "'spawn' or 'forkserver' method of multiprocessing")


def _warn_before_fork():
    # Warned in the parent, where the user sees it once, rather than only as
    # the child's error, which a process pool may report far from the fork.
    if not forked_layer_is_usable():
        warnings.warn(
            "fork() after nwattn ran parallel kernels under Numba's 'omp' threading layer "
            "(GNU OpenMP): the child cannot run them and its calls will raise a "
            f"RuntimeError; {_FORK_REMEDY}", UnsafeForkWarning, stacklevel=2)


def _reset_after_fork():
    global _launch_lock, _forked_unusable, _blas_lock, _blas_users, _blas_limiter
    # A fork while another thread held a lock would leave the child's copy
    # locked for ever (only the forking thread exists in the child).
    _launch_lock = threading.RLock()
    _inside.depth = 0
    _forked_unusable = not forked_layer_is_usable()
    # Only the forking thread's own serial_blas blocks remain to leave; if
    # it had none, the limit set for the parent's other threads is undone.
    _blas_lock = threading.Lock()
    _blas_users = getattr(_blas_depth, "n", 0)
    if _blas_users == 0 and _blas_limiter is not None:
        limiter, _blas_limiter = _blas_limiter, None
        try:
            _as_blas_owner(limiter.restore_original_limits)
        except Exception:  # noqa: BLE001 - the child must start whatever BLAS does
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_warn_before_fork, after_in_child=_reset_after_fork)


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
    of the package goes through it. In a child forked under GNU OpenMP
    after a launch (see :func:`forked_layer_is_usable`) it raises a
    RuntimeError instead of launching, since the launch would terminate the
    child.

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
        if _forked_unusable:
            # Launching would make GNU OpenMP terminate this process.
            raise RuntimeError(
                "nwattn cannot run its parallel kernels in this process: it was forked from "
                "one that had run them under Numba's 'omp' threading layer (GNU OpenMP), "
                f"which terminates a forked child at its first parallel launch; {_FORK_REMEDY}")
        if layer_is_thread_safe():
            return call(*args, **kwargs)
        with _launch_lock:
            return call(*args, **kwargs)

    return wrapper


# The workers of run_ranges: one pool per process (a forked child has none
# of its parent's threads, so it makes its own), as large as Numba's thread
# limit, shared by every caller; callers wanting fewer threads use fewer.
_pool = None
_pool_pid = None
_pool_lock = threading.Lock()


def _workers():
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=max(1, numba.config.NUMBA_NUM_THREADS - 1),
                                       thread_name_prefix="nwattn")
            _pool_pid = os.getpid()
        return _pool


def run_ranges(func, start, stop, n_threads, pieces=None):
    """Call ``func(a, b)`` on consecutive ranges covering ``start:stop``, on ``n_threads`` threads.

    The range is cut into ``pieces`` (default ``n_threads``) ranges of
    near-equal length, taken in order by whichever thread is free: the
    calling thread and up to ``n_threads - 1`` workers of a pool shared by
    the process. ``func`` must release the GIL (a Numba ``nogil``
    function) for the threads to run at once, and the ranges must be
    independent: each writes only what no other range reads or writes.
    One thread (or one piece) runs everything in the calling thread.

    An exception in any range, or a Ctrl-C in the calling thread, stops
    the threads from taking further ranges; the ranges already running
    are waited for, then the first exception is raised here.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn._parallel import run_ranges
    >>> out = np.zeros(10)
    >>> def fill(a, b):
    ...     out[a:b] = np.arange(a, b)
    >>> run_ranges(fill, 0, 10, n_threads=3)
    >>> out.tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    """
    total = stop - start
    if total <= 0:
        return
    pieces = max(1, min(total, n_threads if pieces is None else pieces))
    bounds = [start + (total * k) // pieces for k in range(pieces + 1)]
    if n_threads <= 1 or pieces == 1:
        for k in range(pieces):
            func(bounds[k], bounds[k + 1])
        return
    lock = threading.Lock()
    state = {"next": 0, "stop": False}

    def work():
        while True:
            with lock:
                k = state["next"]
                if state["stop"] or k >= pieces:
                    return
                state["next"] = k + 1
            try:
                func(bounds[k], bounds[k + 1])
            except BaseException:
                state["stop"] = True
                raise

    pool = _workers()
    futures = [pool.submit(work) for _ in range(min(n_threads, pieces) - 1)]
    try:
        work()
    except BaseException:
        state["stop"] = True
        raise
    finally:
        # Nothing may still write to the caller's arrays once this returns.
        wait(futures)
    for future in futures:
        future.result()


__all__ = ["effective_n_jobs", "threads", "serial_blas", "layer_is_thread_safe", "guarded",
           "in_guard", "preload_tbb", "forked_layer_is_usable", "run_ranges"]

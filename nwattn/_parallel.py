"""Number of CPU threads used by the compiled kernels."""

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


__all__ = ["effective_n_jobs", "threads"]

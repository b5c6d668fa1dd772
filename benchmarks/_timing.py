"""Timing helper shared by the benchmark scripts."""

import time


def best_time(func, repeat):
    """Smallest wall time of ``repeat`` calls of ``func``, after one untimed call.

    The untimed call compiles (or loads from Numba's cache) and warms the
    caches; the minimum is the least disturbed run on a shared machine.
    """
    func()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times)

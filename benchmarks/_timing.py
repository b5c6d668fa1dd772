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


def interleaved_medians(calls, repeat, warm_up=True):
    """Median wall time of each of ``calls`` over ``repeat`` interleaved rounds.

    ``calls`` maps a name to a function of no argument. Each is called once
    untimed first when ``warm_up`` is true; ``warm_up`` may instead map names
    to cheaper functions to call untimed (a small problem that compiles the
    same kernels), and false skips the warm-up. Then every round calls each
    function once, in turn, so that a slow spell of a shared machine hits all
    of them instead of whichever happened to run during it. Returns a dict
    of the medians, in seconds, and a dict of every time measured.
    """
    import statistics

    if warm_up is True:
        warm_up = calls
    for func in (warm_up or {}).values():
        func()
    times = {name: [] for name in calls}
    for _ in range(repeat):
        for name, func in calls.items():
            t0 = time.perf_counter()
            func()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}, times

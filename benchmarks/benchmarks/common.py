"""Data and helpers shared by the benchmark modules."""

import numpy as np

#: Pairs (n * m * (d + p)) above which a parameter combination is skipped, so
#: that a full run of the suite stays in minutes on a small machine.
MAX_WORK = 2e11


def make_data(n, m, d, p, dtype, seed=0):
    """Queries, keys and values drawn from a standard normal."""
    rng = np.random.default_rng(seed)
    Q = rng.normal(size=(n, d)).astype(dtype)
    K = rng.normal(size=(m, d)).astype(dtype)
    V = rng.normal(size=(m, p) if p > 1 else m).astype(dtype)
    return Q, K, V


def bandwidth(kernel, d):
    """A bandwidth comparable with the spread of standard normal data in d dimensions."""
    if kernel in ("dot", "scaled_dot"):
        return 1.0
    return 0.5 * np.sqrt(d) if kernel == "gaussian" else 1.5 * np.sqrt(d)


def skip_if_too_big(n, m, d, p):
    """Skip a parameter combination that would take minutes per sample.

    asv reports a benchmark whose ``setup`` raises ``NotImplementedError`` as
    skipped; that is its documented way to leave out combinations of a grid.
    """
    if n * m * (d + p) > MAX_WORK:
        raise NotImplementedError("skipped: too much work for this suite")

"""The inner loop: one query against one tile of keys.

Everything that touches a (query, key) pair lives here, so tuning the CPU
path means tuning these two functions. Keys arrive transposed (``KT`` of
shape ``(d, m)``) and values transposed and centred (``VT`` of shape
``(p, m)``), so every loop over keys walks contiguous memory and vectorises. Loops index 1-D views starting at 0
rather than ``A[t, j0 + jj]``: Numba cannot prove ``j0 + jj`` non-negative,
and the negative-index wraparound it then inserts stops vectorisation.
"""

import math

from numba import njit

from .._config import FASTMATH
from ..kernels import DISTANCE, GAUSSIAN, log_weight
from .fastexp import exp_shifted, like


@njit(inline="always", fastmath=FASTMATH)
def score_row(Q, i, KT, j0, j1, family, code, scale, logw, self_j, row):
    """Write the scores of query ``i`` against keys ``j0:j1`` into ``row``.

    ``family``/``code`` pick the score (see :mod:`nwattn.kernels`); the inputs
    are already divided by the bandwidth. ``logw`` holds the log key weights
    (empty when there are none). ``self_j`` is the key index to exclude
    (leave-one-out), or -1.
    """
    n = j1 - j0
    zero = like(row, 0.0)
    for jj in range(n):
        row[jj] = zero
    d = Q.shape[1]
    if family == DISTANCE:
        for t in range(d):
            qt = Q[i, t]
            kt = KT[t, j0:j1]
            for jj in range(n):
                diff = qt - kt[jj]
                row[jj] += diff * diff
        if code == GAUSSIAN:
            # The most used kernel gets a branch-free loop that vectorises.
            neg_half = like(row, -0.5)
            for jj in range(n):
                row[jj] *= neg_half
        else:
            for jj in range(n):
                row[jj] = log_weight(code, row[jj])
    else:
        for t in range(d):
            qt = Q[i, t]
            kt = KT[t, j0:j1]
            for jj in range(n):
                row[jj] += qt * kt[jj]
        sc = like(row, scale)
        for jj in range(n):
            row[jj] *= sc
    bias_row(row, logw, j0, j1, self_j)


@njit(inline="always", fastmath=FASTMATH)
def bias_row(row, logw, j0, j1, self_j):
    """Add the log key weights of keys ``j0:j1`` to ``row`` and drop key ``self_j``.

    The last step of every score, whether the tile was scored by
    :func:`score_row` or by a matrix product.
    """
    n = j1 - j0
    if logw.shape[0] > 0:
        lw = logw[j0:j1]
        for jj in range(n):
            row[jj] += lw[jj]
    if j0 <= self_j < j1:
        row[self_j - j0] = -math.inf


@njit(inline="always", fastmath=FASTMATH)
def weigh_row(row, n, ii, smax, snorm, sacc, ssq):
    """Turn the scores ``row[:n]`` into weights against the state of query ``ii``.

    The first half of the online softmax update (DESIGN section 2): raise
    the running maximum, rescale what was accumulated, replace the scores by
    ``exp(score - max)`` and add their sum to the normaliser. Returns False,
    with ``row[:n]`` zeroed, when every score is ``-inf``: the tile adds
    nothing. The caller then adds ``row . v`` to the accumulators.
    """
    tmax = like(row, -math.inf)
    for jj in range(n):
        tmax = max(tmax, row[jj])
    if tmax == -math.inf:
        zero = like(row, 0.0)
        for jj in range(n):
            row[jj] = zero
        return False
    old = smax[ii]
    if tmax > old:
        if old > -math.inf:
            c = math.exp(old - tmax)
            snorm[ii] *= c
            for col in range(sacc.shape[1]):
                sacc[ii, col] *= c
            for col in range(ssq.shape[1]):
                ssq[ii, col] *= c
        smax[ii] = tmax
    snorm[ii] += exp_shifted(row, smax[ii], n)
    return True


@njit(inline="always", fastmath=FASTMATH)
def absorb_row(row, n, VT, VT2, j0, ii, smax, snorm, sacc, ssq):
    """Fold the scores ``row[:n]`` of keys ``j0:j0+n`` into the state of query ``ii``.

    :func:`weigh_row`, then the weighted sums of the values, one output
    column at a time. ``row`` is overwritten with the unnormalised weights.
    ``VT2`` holds the squared centred values; it has no rows when the
    variance is not tracked.
    """
    if not weigh_row(row, n, ii, smax, snorm, sacc, ssq):
        return
    for col in range(VT.shape[0]):
        vt = VT[col, j0:j0 + n]
        a = like(row, 0.0)
        for jj in range(n):
            a += row[jj] * vt[jj]
        sacc[ii, col] += a
    for col in range(VT2.shape[0]):
        vt2 = VT2[col, j0:j0 + n]
        b = like(row, 0.0)
        for jj in range(n):
            b += row[jj] * vt2[jj]
        ssq[ii, col] += b

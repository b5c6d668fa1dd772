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
    if logw.shape[0] > 0:
        lw = logw[j0:j1]
        for jj in range(n):
            row[jj] += lw[jj]
    if j0 <= self_j < j1:
        row[self_j - j0] = -math.inf


@njit(inline="always", fastmath=FASTMATH)
def absorb_row(row, n, VT, VT2, j0, ii, smax, snorm, sacc, ssq):
    """Fold the scores ``row[:n]`` of keys ``j0:j0+n`` into the state of query ``ii``.

    The online softmax update (DESIGN section 2): raise the running maximum,
    rescale what was accumulated, add the tile's terms. ``row`` is
    overwritten with the unnormalised weights. ``VT2`` holds the squared
    centred values; it has no columns when the variance is not tracked.
    """
    tmax = like(row, -math.inf)
    for jj in range(n):
        tmax = max(tmax, row[jj])
    if tmax == -math.inf:
        return
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
    for col in range(VT.shape[0]):
        vt = VT[col, j0:j0 + n]
        a = like(row, 0.0)
        for jj in range(n):
            a += row[jj] * vt[jj]
        sacc[ii, col] += a
    for col in range(ssq.shape[1]):
        vt2 = VT2[col, j0:j0 + n]
        b = like(row, 0.0)
        for jj in range(n):
            b += row[jj] * vt2[jj]
        ssq[ii, col] += b

"""The additive (Bahdanau) score ``w_v . tanh(a + b)`` over a tile of keys.

The inputs arrive already projected: ``a = W_q q`` for the query and
``b = W_k k`` for every key, keys transposed (``BT`` of shape ``(r, m)``) so
the loop over keys walks contiguous memory. ``tanh`` is assembled from the
vectorisable ``exp`` of :mod:`nwattn._cpu.fastexp`, because libm's scalar
``tanh`` stops LLVM from vectorising the loop, and this score costs ``r``
of them per pair.
"""

import math

from numba import njit

from .._config import FASTMATH
from .fastexp import _exp_f64

# tanh(x) rounds to +-1 in float64 beyond |x| = 19.1; the clamp keeps exp finite.
_TWO_X_MAX = 80.0


@njit(inline="always", fastmath=FASTMATH)
def fast_tanh(x):
    """``tanh(x) = 1 - 2 / (1 + exp(2x))``, absolute error about 1e-16."""
    e = _exp_f64(min(2.0 * x, _TWO_X_MAX))
    return 1.0 - 2.0 / (1.0 + e)


@njit(inline="always", fastmath=FASTMATH)
def additive_row(A, i, BT, j0, j1, wv, logw, self_j, row, TH):
    """Write the additive scores of query ``i`` against keys ``j0:j1`` into ``row``.

    Same contract as :func:`nwattn._cpu.rows.score_row`: ``logw`` holds log
    key weights (empty when there are none), ``self_j`` the key index to
    exclude or -1. ``TH`` (``(r, tile)`` or ``(0, tile)``) receives the
    ``tanh`` values when it has rows, for the gradient.
    """
    n = j1 - j0
    for jj in range(n):
        row[jj] = 0.0
    keep = TH.shape[0] > 0
    for t in range(A.shape[1]):
        at = A[i, t]
        w = wv[t]
        bt = BT[t, j0:j1]
        if keep:
            th = TH[t]
            for jj in range(n):
                v = fast_tanh(at + bt[jj])
                th[jj] = v
                row[jj] += w * v
        else:
            for jj in range(n):
                row[jj] += w * fast_tanh(at + bt[jj])
    if logw.shape[0] > 0:
        lw = logw[j0:j1]
        for jj in range(n):
            row[jj] += lw[jj]
    if j0 <= self_j < j1:
        row[self_j - j0] = -math.inf

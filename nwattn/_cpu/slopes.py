"""The leave-one-out score's slopes with respect to the log-bandwidths, per tile.

One streaming pass over the keys gives, for every training point ``i``, the
leave-one-out prediction ``yhat_i`` and ``d yhat_i / d theta_t`` with
``theta_t = log h_t``. With ``e_ij`` the unnormalised weight of key ``j`` and
``s_ij`` its score,

    d yhat_i / d theta_t = sum_j alpha_ij (v_j - yhat_i) d s_ij / d theta_t
                         = (B_it - yhat_i A_it) / l_i,

where ``A_it = sum_j e_ij ds_ij/dtheta_t``, ``B_it = sum_j e_ij ds_ij/dtheta_t v_j``
and ``l_i = sum_j e_ij``. ``A`` and ``B`` are two more blocks of the packed
state (:func:`nwattn._layout.slopes_layout`), rescaled with it whenever the
running maximum rises, so nothing of size n x n is stored and states over
disjoint keys merge exactly like any other. For a smoothing kernel
``ds/dtheta_t = -2 (d log K / d u2) (q_t - k_t)**2 / h_t**2``; for a dot score
``ds/dtheta_t = -scale q_t k_t / h_t``. These are the ``SLOPE`` score and
``SLOPES`` absorb strategies of :mod:`nwattn._cpu.strategies`.
"""

import math

from numba import njit

from .._config import FASTMATH
from ..kernels import DISTANCE, GAUSSIAN, dlog_weight, log_weight


@njit(inline="always", fastmath=FASTMATH)
def kernel_and_slope(row, slope, n, code, logw, j0, self_j):
    """Turn ``row = -u2/2`` into scores and ``slope = -2 dlogK/du2``.

    Adds the log key weights and excludes the key ``self_j``.
    """
    if code == GAUSSIAN:
        for jj in range(n):
            slope[jj] = 1.0
    else:
        for jj in range(n):
            u2 = -2.0 * row[jj]
            slope[jj] = -2.0 * dlog_weight(code, u2)
            row[jj] = log_weight(code, u2)
    if logw.shape[0] > 0:
        lw = logw[j0:j0 + n]
        for jj in range(n):
            row[jj] += lw[jj]
    if j0 <= self_j < j0 + n:
        row[self_j - j0] = -math.inf


@njit(inline="always", fastmath=FASTMATH)
def absorb_slopes(Q, i, KT, VT, j0, n, family, weight, slope, term, a, b):
    """Add the tile's ``sum_j e_j ds_j/dtheta_t`` to ``a[t]`` and, times the
    values, to ``b[t * p + c]``. ``weight`` holds the tile's unnormalised weights."""
    for jj in range(n):
        slope[jj] *= weight[jj]
    d = Q.shape[1]
    p = VT.shape[0]
    for t in range(d):
        qt = Q[i, t]
        kt = KT[t, j0:j0 + n]
        if family == DISTANCE:
            for jj in range(n):
                diff = qt - kt[jj]
                term[jj] = slope[jj] * diff * diff
        else:
            for jj in range(n):
                term[jj] = slope[jj] * qt * kt[jj]
        # The sum in a loop of its own: LLVM runs a loop that stores while it
        # sums in vector form only when the arrays it reads lie far enough
        # from the one it writes, and the scalar form sums in another order;
        # ``term`` may be allocated right after the keys (small inputs), and
        # the slopes would then change in the last bit from call to call.
        s = 0.0
        for jj in range(n):
            s += term[jj]
        a[t] += s
        for col in range(p):
            vt = VT[col, j0:j0 + n]
            s2 = 0.0
            for jj in range(n):
                s2 += term[jj] * vt[jj]
            b[t * p + col] += s2

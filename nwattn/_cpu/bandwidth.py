"""Leave-one-out predictions and their derivatives with respect to the log-bandwidths.

One streaming pass over the keys gives, for every training point ``i``, the
leave-one-out prediction ``yhat_i`` and ``d yhat_i / d theta_t`` with
``theta_t = log h_t``. With ``e_ij`` the unnormalised weight of key ``j`` and
``s_ij`` its score,

    d yhat_i / d theta_t = sum_j alpha_ij (v_j - yhat_i) d s_ij / d theta_t
                         = (B_it - yhat_i A_it) / l_i,

where ``A_it = sum_j e_ij ds_ij/dtheta_t``, ``B_it = sum_j e_ij ds_ij/dtheta_t v_j``
and ``l_i = sum_j e_ij``. ``A`` and ``B`` are two more accumulators of the
online-softmax state, rescaled with it whenever the running maximum rises,
so nothing of size n x n is stored. Like the pooling state, they can be
computed over disjoint chunks of keys and merged exactly (:func:`merge_slopes`).
For a smoothing kernel
``ds/dtheta_t = -2 (d log K / d u2) (q_t - k_t)**2 / h_t**2``; for a dot score
``ds/dtheta_t = -scale q_t k_t / h_t``.
"""

import math

import numpy as np
from numba import njit, prange

from .._config import FASTMATH
from ..kernels import DISTANCE, GAUSSIAN, dlog_weight, log_weight
from .rows import absorb_row, score_row


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def loo_slopes(Q, KT, VT, logw, family, code, scale, self_offset, query_block, key_tile,
               out_max, out_norm, out_acc, out_A, out_B):
    """Leave-one-out accumulators of every training point and of their slopes.

    Parameters
    ----------
    Q : (n, d) training points divided by the bandwidth.
    KT : (d, m) the keys transposed, divided by the bandwidth for a
        smoothing kernel, unscaled for a dot score (as :func:`nwattn.ops`
        prepares them): all the training points, or a chunk of them.
    VT : (p, m) centred targets of the keys.
    logw : (m,) log key weights, or empty.
    family, code, scale : the score (see ``nwattn.kernels``).
    self_offset : key ``i + self_offset`` is point ``i`` itself, left out
        (0 when the keys are the points; a chunk of keys shifts it).
    query_block, key_tile : work decomposition.
    out_max : (n,) running maximum of the scores (``-inf``: no key).
    out_norm : (n,) ``l``, sum of the weights relative to the maximum.
    out_acc : (n, p) weighted sum of the values, relative to the maximum.
    out_A : (n, d) ``A``, relative to the maximum.
    out_B : (n, d, p) ``B``, relative to the maximum.
    """
    n = Q.shape[0]
    n_blocks = (n + query_block - 1) // query_block
    for b in prange(n_blocks):
        loo_task(Q, KT, VT, logw, family, code, scale, self_offset, b * query_block,
                 min(n, (b + 1) * query_block), key_tile, out_max, out_norm, out_acc,
                 out_A, out_B)


@njit(cache=True, fastmath=FASTMATH)
def loo_task(Q, KT, VT, logw, family, code, scale, self_offset, q0, q1, key_tile,
             out_max, out_norm, out_acc, out_A, out_B):
    """Queries ``q0:q1`` against every key, outside the ``prange`` body so
    that the inner loops vectorise as in serial code."""
    d = Q.shape[1]
    p = VT.shape[0]
    m = KT.shape[1]
    nq = q1 - q0
    dtype = Q.dtype
    smax = np.full(nq, -math.inf, dtype=dtype)
    snorm = np.zeros(nq, dtype=dtype)
    sacc = np.zeros((nq, p), dtype=dtype)
    ssq = np.zeros((nq, 0), dtype=dtype)
    VT2 = np.empty((0, m), dtype=dtype)
    A = np.zeros((nq, d), dtype=dtype)
    B = np.zeros((nq, d, p), dtype=dtype)
    no_logw = np.empty(0, dtype=dtype)
    row = np.empty(key_tile, dtype=dtype)
    slope = np.empty(key_tile, dtype=dtype)
    term = np.empty(key_tile, dtype=dtype)
    for j0 in range(0, m, key_tile):
        j1 = min(m, j0 + key_tile)
        nk = j1 - j0
        for ii in range(nq):
            i = q0 + ii
            if family == DISTANCE:
                # Scoring with the gaussian kernel and nothing added gives
                # -u2/2 exactly, from which every kernel's log-weight and slope follow.
                score_row(Q, i, KT, j0, j1, DISTANCE, GAUSSIAN, 1.0, no_logw, -1, row)
                kernel_and_slope(row, slope, nk, code, logw, j0, i + self_offset)
            else:
                score_row(Q, i, KT, j0, j1, family, code, scale, logw, i + self_offset, row)
                for jj in range(nk):
                    slope[jj] = -scale
            tmax = -math.inf
            for jj in range(nk):
                tmax = max(tmax, row[jj])
            if tmax == -math.inf:
                continue
            old = smax[ii]
            absorb_row(row, nk, VT, VT2, j0, ii, smax, snorm, sacc, ssq)
            if old > -math.inf and smax[ii] > old:
                c = math.exp(old - smax[ii])
                for t in range(d):
                    A[ii, t] *= c
                    for col in range(p):
                        B[ii, t, col] *= c
            absorb_slopes(Q, i, KT, VT, j0, nk, family, row, slope, term, A[ii], B[ii])
    for ii in range(nq):
        i = q0 + ii
        out_max[i] = smax[ii]
        out_norm[i] = snorm[ii]
        for col in range(p):
            out_acc[i, col] = sacc[ii, col]
        for t in range(d):
            out_A[i, t] = A[ii, t]
            for col in range(p):
                out_B[i, t, col] = B[ii, t, col]


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
    values, to ``b[t, :]``. ``weight`` holds the tile's unnormalised weights."""
    for jj in range(n):
        slope[jj] *= weight[jj]
    d = Q.shape[1]
    p = VT.shape[0]
    for t in range(d):
        qt = Q[i, t]
        kt = KT[t, j0:j0 + n]
        s = 0.0
        if family == DISTANCE:
            for jj in range(n):
                diff = qt - kt[jj]
                f = slope[jj] * diff * diff
                term[jj] = f
                s += f
        else:
            for jj in range(n):
                f = slope[jj] * qt * kt[jj]
                term[jj] = f
                s += f
        a[t] += s
        for col in range(p):
            vt = VT[col, j0:j0 + n]
            s2 = 0.0
            for jj in range(n):
                s2 += term[jj] * vt[jj]
            b[t, col] += s2


def run_loo_slopes(Q, KT, VT, logw, family, code, scale, self_offset=0, raw=False):
    """Host side: allocate the outputs and run :func:`loo_slopes`.

    Returns the accumulators ``(max, norm, acc, A, B)`` with ``raw=True``,
    else their :func:`finalize_slopes`.
    """
    from .. import _config

    n, d = Q.shape
    p = VT.shape[0]
    out = (np.empty(n, Q.dtype), np.empty(n, Q.dtype), np.empty((n, p), Q.dtype),
           np.empty((n, d), Q.dtype), np.empty((n, d, p), Q.dtype))
    loo_slopes(Q, KT, VT, logw, family, code, scale, int(self_offset), _config.QUERY_BLOCK,
               _config.KEY_TILE, *out)
    return out if raw else finalize_slopes(*out[1:])


def merge_slopes(first, second):
    """Merge the accumulators ``(max, norm, acc, A, B)`` of two disjoint sets of keys."""
    m1, m2 = first[0], second[0]
    top = np.maximum(m1, m2)
    with np.errstate(invalid="ignore"):  # -inf - -inf for a point empty in both
        c1 = np.where(m1 > -np.inf, np.exp(m1 - top), 0.0)
        c2 = np.where(m2 > -np.inf, np.exp(m2 - top), 0.0)
    merged = [top]
    for a, b in zip(first[1:], second[1:]):
        shape = (-1,) + (1,) * (a.ndim - 1)
        merged.append(a * c1.reshape(shape) + b * c2.reshape(shape))
    return tuple(merged)


def finalize_slopes(norm, acc, A, B):
    """Centred leave-one-out predictions ``(n, p)`` and their derivatives ``(n, d, p)``.

    Returns ``(norm, pred, dpred)``: NaN predictions and zero derivatives
    for a point with no other point in its neighbourhood (``norm == 0``).
    """
    ok = norm > 0
    safe = np.where(ok, norm, 1.0)
    pred = np.where(ok[:, None], acc / safe[:, None], np.nan)
    dpred = np.where(ok[:, None, None],
                     (B - pred[:, None, :] * A[:, :, None]) / safe[:, None, None], 0.0)
    return norm, pred, dpred

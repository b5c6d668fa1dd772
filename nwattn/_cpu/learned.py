"""The leave-one-out objective's gradient sweeps for the learned scores.

Three scores have parameters: ``RBF`` (``-||z_q - z_k||^2 / 2`` with
``z = A x``), ``SCALED_DOT`` (``(W_q q) . (W_k k) / sqrt(r)``) and
``ADDITIVE`` (``w_v . tanh(W_q q + W_k k)``). The kernels here take the
inputs already projected (``P`` for the side a task owns, ``OT`` for the
other side, transposed), so one matrix product per fit evaluation does the
``d``-dimensional work and the kernels touch ``r`` numbers per pair.

Training minimises ``L = sum_i u_i ||f_i - y_i||^2`` over the leave-one-out
predictions ``f_i = sum_{j != i} alpha_ij y_j``. With ``g_i = dL/df_i`` the
gradient with respect to the scores is

    dL/ds_ij = G_ij = alpha_ij (y_j - f_i) . g_i

(DESIGN section 2). It is never stored: the forward pass (the engine's
sweep with the ``LEARNED`` score, :mod:`nwattn._cpu.sweep`) keeps only each
query's log-normaliser ``lse_i`` and prediction, and the backward sweeps
recompute ``alpha_ij = w_j exp(s_ij - lse_i)`` tile by tile, as
FlashAttention's backward pass does. A query's gradient is a sum over keys
and a key's gradient a sum over queries; rather than scatter into shared
rows, the backward runs twice with the same kernel, once owning query rows
and once owning key rows, so every task writes only its own rows. Memory is
O(n (r + p)) plus a tile per thread.
"""

import math

import numpy as np
from numba import njit, prange

from .._config import FASTMATH
from ..kernels import ADDITIVE_KIND as ADDITIVE, RBF_KIND as RBF
from .additive import additive_row
from .fastexp import exp_shifted
from .rows import bias_row, gaussian_row_max, learned_row


@njit(cache=True, fastmath=FASTMATH)
def _grad_block(kind, P, OT, wv, scale, logw, shift, F, HT, e_own, e_other, o0, o1,
                key_tile, with_wv, b, dP, dwv):
    r = P.shape[1]
    m = OT.shape[1]
    p = F.shape[1]
    row = np.empty(key_tile, dtype=P.dtype)
    delta = np.empty(key_tile, dtype=P.dtype)
    TH = np.empty((r if kind == ADDITIVE else 0, key_tile), dtype=P.dtype)
    for j0 in range(0, m, key_tile):
        j1 = min(m, j0 + key_tile)
        n = j1 - j0
        eo = e_other[j0:j1]
        for o in range(o0, o1):
            sh = shift[o]
            if not math.isfinite(sh):
                continue
            learned_row(kind, P, o, OT, j0, j1, wv, scale, logw, o, row, TH)
            exp_shifted(row, sh, n)
            eown = e_own[o]
            for jj in range(n):
                delta[jj] = -eo[jj] - eown
            for c in range(p):
                fc = F[o, c]
                ht = HT[c, j0:j1]
                for jj in range(n):
                    delta[jj] += fc * ht[jj]
            gsum = 0.0
            for jj in range(n):
                row[jj] *= delta[jj]
                gsum += row[jj]
            if kind == ADDITIVE:
                for t in range(r):
                    th = TH[t]
                    a = 0.0
                    for jj in range(n):
                        a += row[jj] * (1.0 - th[jj] * th[jj])
                    dP[o, t] += wv[t] * a
                    if with_wv:
                        c2 = 0.0
                        for jj in range(n):
                            c2 += row[jj] * th[jj]
                        dwv[b, t] += c2
            else:
                for t in range(r):
                    ot = OT[t, j0:j1]
                    a = 0.0
                    for jj in range(n):
                        a += row[jj] * ot[jj]
                    if kind == RBF:
                        dP[o, t] += a - P[o, t] * gsum
                    else:
                        dP[o, t] += scale * a


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def loo_grad_pass(kind, P, OT, wv, scale, logw, shift, F, HT, e_own, e_other, query_block,
                  key_tile, with_wv, dP, dwv):
    """One backward sweep: ``dP[o] = sum_j G_oj ds_oj/dP_o`` for the owned rows ``o``.

    ``alpha_oj = exp(s_oj + logw_j - shift_o)`` (rows with a non-finite
    shift are skipped) and ``G_oj = alpha_oj (F_o . HT_j - e_own_o -
    e_other_j)``. Owning queries: ``logw`` the log key weights, ``shift``
    each query's ``lse``, ``F = g``, ``HT = y^T``, ``e_own = f . g``,
    ``e_other = 0``. Owning keys: ``logw = -lse`` of the queries, ``shift``
    minus the key's log weight, ``F = y``, ``HT = g^T``, ``e_own = 0``,
    ``e_other = f . g``. Owned row ``o`` and column ``o`` are the same point
    (excluded). ``dwv`` (n_blocks, r) collects the additive score's vector
    gradient when ``with_wv``.
    """
    n = P.shape[0]
    n_blocks = (n + query_block - 1) // query_block
    for b in prange(n_blocks):
        # The parallel body types the loop index as uint64, the rest of the
        # function as int64: passed as it is, _grad_block compiled twice.
        _grad_block(kind, P, OT, wv, scale, logw, shift, F, HT, e_own, e_other,
                    b * query_block, min(n, (b + 1) * query_block), key_tile, with_wv,
                    np.int64(b), dP, dwv)


@njit(cache=True, fastmath=FASTMATH)
def _exp_in_place(row, shift, n):
    # A called function rather than two inlined copies of exp_shifted in
    # _sym_grad_block: with two copies Numba's IR checks warn at compile time.
    exp_shifted(row, shift, n)


@njit(cache=True, fastmath=FASTMATH)
def _sym_grad_block(Z, ZT, logw, lse, neg_lse, G, YT, Y, GT, e, o0, o1, key_tile, dZ):
    p = G.shape[1]
    r = Z.shape[1]
    n = ZT.shape[1]
    s = np.empty(key_tile, dtype=Z.dtype)
    a2 = np.empty(key_tile, dtype=Z.dtype)
    h = np.empty(key_tile, dtype=Z.dtype)
    no_weights = np.empty(0, dtype=Z.dtype)
    for j0 in range(0, n, key_tile):
        j1 = min(n, j0 + key_tile)
        m = j1 - j0
        lw = logw[j0:j1]
        nl = neg_lse[j0:j1]
        ej = e[j0:j1]
        for o in range(o0, o1):
            gaussian_row_max(Z, o, ZT, j0, j1, s)
            bias_row(s, no_weights, j0, j1, o)
            # o as a key of query j: alpha_jo = w_o exp(s_jo - lse_j)
            wo = logw[o]
            for jj in range(m):
                a2[jj] = s[jj] + nl[jj]
            if math.isfinite(wo):
                _exp_in_place(a2, -wo, m)
            else:
                for jj in range(m):
                    a2[jj] = 0.0
            for jj in range(m):
                h[jj] = -ej[jj]
            for c in range(p):
                yc = Y[o, c]
                gt = GT[c, j0:j1]
                for jj in range(m):
                    h[jj] += yc * gt[jj]
            for jj in range(m):
                h[jj] *= a2[jj]
            # o as a query of key j: alpha_oj = w_j exp(s_oj - lse_o)
            lo = lse[o]
            if math.isfinite(lo):
                for jj in range(m):
                    s[jj] += lw[jj]
                _exp_in_place(s, lo, m)
                eo = e[o]
                for jj in range(m):
                    a2[jj] = -eo
                for c in range(p):
                    gc = G[o, c]
                    yt = YT[c, j0:j1]
                    for jj in range(m):
                        a2[jj] += gc * yt[jj]
                for jj in range(m):
                    h[jj] += s[jj] * a2[jj]
            hsum = 0.0
            for jj in range(m):
                hsum += h[jj]
            for t in range(r):
                zt = ZT[t, j0:j1]
                a = 0.0
                for jj in range(m):
                    a += h[jj] * zt[jj]
                dZ[o, t] += a - Z[o, t] * hsum


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def loo_grad_symmetric(Z, ZT, logw, lse, neg_lse, G, YT, Y, GT, e, query_block, key_tile, dZ):
    """Both backward sweeps of the rbf score in one, when every point is a query.

    The score is symmetric, so the pair ``(o, j)`` is scored once and used
    twice: for ``o`` as a query (``G_oj``) and as a key (``G_jo``); since
    ``ds_oj/dz_o = z_j - z_o`` either way, ``dZ[o] = sum_j (G_oj + G_jo)
    (z_j - z_o)``. Same arguments as :func:`loo_grad_pass`.
    """
    n = Z.shape[0]
    n_blocks = (n + query_block - 1) // query_block
    for b in prange(n_blocks):
        _sym_grad_block(Z, ZT, logw, lse, neg_lse, G, YT, Y, GT, e, b * query_block,
                        min(n, (b + 1) * query_block), key_tile, dZ)


@njit(cache=True, fastmath=FASTMATH)
def _additive_full_row(A, i, BT, wv, logw, row):
    TH = np.empty((0, 1), dtype=A.dtype)
    additive_row(A, i, BT, 0, BT.shape[1], wv, logw, -1, row, TH)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def additive_pairwise(A, BT, wv, out):
    """Fill ``out`` (n, m) with the additive scores of projected queries and keys."""
    logw = np.empty(0, dtype=A.dtype)
    for i in prange(A.shape[0]):
        _additive_full_row(A, i, BT, wv, logw, out[i])

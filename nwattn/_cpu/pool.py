"""Fused streaming attention pooling on the CPU.

The work is cut into tasks, one per (block of queries, split of keys). A
task keeps the online-softmax state of its queries in thread-local arrays
and sweeps its keys tile by tile; nothing of size n x m is ever allocated.
Each task writes only its own rows of its own split's output, so no two
threads share an accumulator. When the keys were split, the partial states
are merged exactly, always in split order, so the result does not depend on
the number of threads.

Two task bodies share the scores and the softmax update of
:mod:`nwattn._cpu.rows`. The row kernel (:func:`pool_task`) streams one
query at a time and suits few features and outputs. The matrix kernel
(:func:`pool_task_gemm`) handles a block of queries against a tile of keys
with matrix products: the scores of a dot-product score with many features
are one product ``Q_block @ K_tile.T``, and the weighted sums of many
outputs are one product ``W_tile @ V_tile``. The products run in the BLAS
that NumPy's linear algebra in Numba uses, limited to one thread per task
so the tasks, not the BLAS, own the cores.
"""

import math

import numpy as np
from numba import njit, prange

from .._config import FASTMATH
from ..kernels import DOT
from .._parallel import serial_blas
from .fastexp import like
from .rows import absorb_row_max, bias_row, score_row, score_row_max, weigh_row


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def pool_states(Q, KT, VT, VT2, logw, family, code, scale, self_shift,
                query_block, key_tile, n_split, split_size,
                out_max, out_norm, out_acc, out_sq):
    """Pooling states of every query against every key split.

    Parameters
    ----------
    Q : (n, d) queries, already divided by the bandwidth.
    KT : (d, m) keys, transposed, likewise scaled.
    VT, VT2 : (p, m) centred values and their squares (VT2 may have no rows).
    logw : (m,) log key weights, or empty.
    family, code, scale : the score (see ``nwattn.kernels``).
    self_shift : key index of query ``i`` is ``i + self_shift`` (leave-one-out),
        or a value that puts every query's self outside ``[0, m)``.
    query_block, key_tile, n_split, split_size : work decomposition.
    out_max, out_norm : (n_split, n); out_acc, out_sq : (n_split, n, p)
        (out_sq has no columns when the variance is not tracked).
    """
    n = Q.shape[0]
    n_blocks = (n + query_block - 1) // query_block
    for task in prange(n_blocks * n_split):
        b = task // n_split
        s = task - b * n_split
        pool_task(Q, KT, VT, VT2, logw, family, code, scale, self_shift,
                  b * query_block, min(n, (b + 1) * query_block),
                  s * split_size, min(KT.shape[1], (s + 1) * split_size), key_tile, s,
                  out_max, out_norm, out_acc, out_sq)


# error_model="numpy": without it Numba guards every float division against
# a zero divisor, a branch that stops LLVM from vectorising the loops of the
# compact kernels' log-weights (whose divisors are never zero).
@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def pool_task(Q, KT, VT, VT2, logw, family, code, scale, self_shift, q0, q1, k0, k1,
              key_tile, s, out_max, out_norm, out_acc, out_sq):
    """One task: queries ``q0:q1`` against keys ``k0:k1``, into split ``s``.

    Kept out of the ``prange`` body so that Numba's parallel transforms do
    not touch the inner loops, which then vectorise as in serial code.
    """
    p = VT.shape[0]
    p2 = VT2.shape[0]
    nq = q1 - q0
    smax = np.full(nq, -math.inf, dtype=Q.dtype)
    snorm = np.zeros(nq, dtype=Q.dtype)
    sacc = np.zeros((nq, p), dtype=Q.dtype)
    ssq = np.zeros((nq, p2), dtype=Q.dtype)
    row = np.empty(key_tile, dtype=Q.dtype)
    for j0 in range(k0, k1, key_tile):
        j1 = min(k1, j0 + key_tile)
        for ii in range(nq):
            i = q0 + ii
            tmax = score_row_max(Q, i, KT, j0, j1, family, code, scale, logw,
                                 i + self_shift, row)
            absorb_row_max(row, j1 - j0, tmax, VT, VT2, j0, ii, smax, snorm, sacc, ssq)
    for ii in range(nq):
        out_max[s, q0 + ii] = smax[ii]
        out_norm[s, q0 + ii] = snorm[ii]
        for col in range(p):
            out_acc[s, q0 + ii, col] = sacc[ii, col]
        for col in range(p2):
            out_sq[s, q0 + ii, col] = ssq[ii, col]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def pool_states_gemm(Q, KT, K, V, V2, logw, family, code, scale, self_shift, gemm_scores,
                     query_block, key_tile, n_split, split_size,
                     out_max, out_norm, out_acc, out_sq):
    """:func:`pool_states` with the matrix-product task body.

    ``K`` (m, d) are the keys untransposed (used when ``gemm_scores``; may
    have no rows otherwise), ``V`` (m, p) and ``V2`` (m, p2) the centred
    values and their squares untransposed. The other arguments are those of
    :func:`pool_states`.
    """
    n = Q.shape[0]
    n_blocks = (n + query_block - 1) // query_block
    for task in prange(n_blocks * n_split):
        b = task // n_split
        s = task - b * n_split
        pool_task_gemm(Q, KT, K, V, V2, logw, family, code, scale, self_shift, gemm_scores,
                       b * query_block, min(n, (b + 1) * query_block),
                       s * split_size, min(KT.shape[1], (s + 1) * split_size), key_tile, s,
                       out_max, out_norm, out_acc, out_sq)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def pool_task_gemm(Q, KT, K, V, V2, logw, family, code, scale, self_shift, gemm_scores,
                   q0, q1, k0, k1, key_tile, s, out_max, out_norm, out_acc, out_sq):
    """One task of :func:`pool_states_gemm`: queries ``q0:q1``, keys ``k0:k1``."""
    p = V.shape[1]
    p2 = V2.shape[1]
    nq = q1 - q0
    smax = np.full(nq, -math.inf, dtype=Q.dtype)
    snorm = np.zeros(nq, dtype=Q.dtype)
    sacc = np.zeros((nq, p), dtype=Q.dtype)
    ssq = np.zeros((nq, p2), dtype=Q.dtype)
    sc = like(Q, scale)
    Qb = Q[q0:q1]
    for j0 in range(k0, k1, key_tile):
        j1 = min(k1, j0 + key_tile)
        n = j1 - j0
        if gemm_scores:
            S = np.dot(Qb, K[j0:j1].T)
            for ii in range(nq):
                row = S[ii]
                for jj in range(n):
                    row[jj] *= sc
                bias_row(row, logw, j0, j1, q0 + ii + self_shift)
        else:
            S = np.empty((nq, n), dtype=Q.dtype)
            for ii in range(nq):
                i = q0 + ii
                score_row(Q, i, KT, j0, j1, family, code, scale, logw, i + self_shift, S[ii])
        for ii in range(nq):
            weigh_row(S[ii], n, ii, smax, snorm, sacc, ssq)
        sacc += np.dot(S, V[j0:j1])
        if p2 > 0:
            ssq += np.dot(S, V2[j0:j1])
    for ii in range(nq):
        out_max[s, q0 + ii] = smax[ii]
        out_norm[s, q0 + ii] = snorm[ii]
        for col in range(p):
            out_acc[s, q0 + ii, col] = sacc[ii, col]
        for col in range(p2):
            out_sq[s, q0 + ii, col] = ssq[ii, col]


@njit(cache=True, fastmath=FASTMATH)
def merge_into(max_a, norm_a, acc_a, sq_a, max_b, norm_b, acc_b, sq_b):
    """Merge state ``b`` into state ``a`` in place, query by query.

    ``m = max(m_a, m_b)``; each side is rescaled by ``exp(m_side - m)``. A
    side with no key in its support (``norm == 0``, ``max == -inf``)
    contributes nothing, and two such sides stay empty.
    """
    n = max_a.shape[0]
    for i in range(n):
        ma = max_a[i]
        mb = max_b[i]
        if mb == -math.inf:
            continue
        if ma == -math.inf:
            max_a[i] = mb
            norm_a[i] = norm_b[i]
            for col in range(acc_a.shape[1]):
                acc_a[i, col] = acc_b[i, col]
            for col in range(sq_a.shape[1]):
                sq_a[i, col] = sq_b[i, col]
            continue
        m = max(ma, mb)
        ca = math.exp(ma - m)
        cb = math.exp(mb - m)
        max_a[i] = m
        norm_a[i] = norm_a[i] * ca + norm_b[i] * cb
        for col in range(acc_a.shape[1]):
            acc_a[i, col] = acc_a[i, col] * ca + acc_b[i, col] * cb
        for col in range(sq_a.shape[1]):
            sq_a[i, col] = sq_a[i, col] * ca + sq_b[i, col] * cb


def plan_splits(n, m, query_block, target_tasks, min_split_keys):
    """Number and length of key splits for ``n`` queries and ``m`` keys.

    Depends on the shape and the configuration only, never on the thread
    count, so results are reproducible on any machine.
    """
    n_blocks = -(-n // query_block)
    if n_blocks >= target_tasks:
        return 1, m
    n_split = min(-(-m // min_split_keys), -(-target_tasks // n_blocks))
    n_split = max(1, n_split)
    split_size = -(-m // n_split)
    return -(-m // split_size), split_size


def run_pool(Q, KT, VT, VT2, logw, family, code, scale, self_shift):
    """Host side of the CPU pooling: plan the work, run it, merge the splits.

    Returns ``(max, norm, acc, sq)`` arrays of the states of every query;
    ``sq`` has no columns when ``VT2`` has no rows.
    """
    from .. import _config

    n, d = Q.shape
    m = KT.shape[1]
    p, p2 = VT.shape[0], VT2.shape[0]
    gemm_scores = family == DOT and d >= _config.GEMM_MIN_FEATURES
    use_gemm = gemm_scores or p >= _config.GEMM_MIN_OUTPUTS
    query_block = _config.GEMM_QUERY_BLOCK if use_gemm else _config.QUERY_BLOCK
    n_split, split_size = plan_splits(
        n, m, query_block, _config.TARGET_TASKS, _config.MIN_SPLIT_KEYS
    )
    dtype = Q.dtype
    out_max = np.empty((n_split, n), dtype)
    out_norm = np.empty((n_split, n), dtype)
    out_acc = np.empty((n_split, n, p), dtype)
    out_sq = np.empty((n_split, n, p2), dtype)
    if use_gemm:
        K = np.ascontiguousarray(KT.T) if gemm_scores else np.empty((0, d), dtype)
        V = np.ascontiguousarray(VT.T)
        V2 = np.ascontiguousarray(VT2.T)
        with serial_blas():
            pool_states_gemm(Q, KT, K, V, V2, logw, family, code, scale, self_shift,
                             gemm_scores, query_block, _config.KEY_TILE, n_split,
                             split_size, out_max, out_norm, out_acc, out_sq)
    else:
        pool_states(Q, KT, VT, VT2, logw, family, code, scale, self_shift,
                    query_block, _config.KEY_TILE, n_split, split_size,
                    out_max, out_norm, out_acc, out_sq)
    for s in range(1, n_split):
        merge_into(out_max[0], out_norm[0], out_acc[0], out_sq[0],
                   out_max[s], out_norm[s], out_acc[s], out_sq[s])
    return out_max[0], out_norm[0], out_acc[0], out_sq[0]

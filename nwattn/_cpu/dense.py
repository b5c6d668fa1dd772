"""Dense kernels: the full score matrix and a row-wise softmax.

For small problems, inspection and tests; the fused pooling of
:mod:`nwattn._cpu.pool` never builds these matrices. As there, the
``prange`` bodies only call serial functions, whose loops then vectorise.
"""

import math

from numba import njit, prange

from .._config import FASTMATH
from .fastexp import exp_shifted
from .rows import score_row


@njit(cache=True, fastmath=FASTMATH)
def _score_full_row(Q, i, KT, logw, family, code, scale, row):
    score_row(Q, i, KT, 0, KT.shape[1], family, code, scale, logw, -1, row)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def pairwise(Q, KT, logw, family, code, scale, out):
    """Fill ``out`` (n, m) with the scores of every query against every key."""
    for i in prange(Q.shape[0]):
        _score_full_row(Q, i, KT, logw, family, code, scale, out[i])


@njit(cache=True, fastmath=FASTMATH)
def _score_item_row(Q, i, KT, j0, j1, family, code, scale, row):
    score_row(Q, i, KT, j0, j1, family, code, scale, KT[0, :0], -1, row)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def pairwise_items(Q, KT, items, n_item, m_item, family, code, scale, out):
    """Fill ``out`` (N, m_item): row ``r`` of ``Q`` against the keys of its batch item.

    Query row ``r`` belongs to item ``r // n_item``, whose keys are the
    columns ``items[b, 1]:items[b, 1] + m_item`` of ``KT`` (shared keys are
    stored once).
    """
    for r in prange(Q.shape[0]):
        kb = items[r // n_item, 1]
        _score_item_row(Q, r, KT, kb, kb + m_item, family, code, scale, out[r])


@njit(cache=True, fastmath=FASTMATH)
def _softmax_row(s, row):
    m = s.shape[0]
    top = -math.inf
    for j in range(m):
        row[j] = s[j]
        top = max(top, s[j])
    if top == -math.inf:
        for j in range(m):
            row[j] = math.nan
        return
    total = exp_shifted(row, top, m)
    inv = 1.0 / total
    for j in range(m):
        row[j] *= inv


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def softmax_rows(S, out):
    """Row-wise softmax of ``S`` (n, m) into ``out``; rows of all -inf become NaN."""
    for i in prange(S.shape[0]):
        _softmax_row(S[i], out[i])

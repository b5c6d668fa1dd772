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

"""Dense kernels: the full score matrix and a row-wise softmax.

For small problems, inspection and tests; the fused pooling of
:mod:`nwattn._cpu.pool` never builds these matrices.
"""

import math

from numba import njit, prange

from .._config import FASTMATH
from .fastexp import exp_shifted
from .rows import score_row


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def pairwise(Q, KT, logw, family, code, scale, out):
    """Fill ``out`` (n, m) with the scores of every query against every key."""
    m = KT.shape[1]
    for i in prange(Q.shape[0]):
        score_row(Q, i, KT, 0, m, family, code, scale, logw, -1, out[i])


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def softmax_rows(S, out):
    """Row-wise softmax of ``S`` (n, m) into ``out``; rows of all -inf become NaN."""
    m = S.shape[1]
    for i in prange(S.shape[0]):
        row = out[i]
        top = -math.inf
        for j in range(m):
            row[j] = S[i, j]
            top = max(top, row[j])
        if top == -math.inf:
            for j in range(m):
                row[j] = math.nan
            continue
        total = exp_shifted(row, top, m)
        inv = 1.0 / total
        for j in range(m):
            row[j] *= inv

"""The inner loop: one query against one tile of keys.

Everything that scores a (query, key) pair lives here, so tuning the CPU
path means tuning this module and the absorb strategies of
:mod:`nwattn._cpu.strategies`: the scores (:func:`score_row`, also in a
form that returns the tile's largest score instead of leaving it to a
pass of its own) and the learned scores (:func:`learned_row`). Keys arrive transposed (``KT`` of shape ``(d, m)``) and values
transposed and centred (``VT`` of shape ``(p, m)``), so every loop over
keys walks contiguous memory and vectorises. Loops index 1-D views starting
at 0 rather than ``A[t, j0 + jj]``: Numba cannot prove ``j0 + jj``
non-negative, and the negative-index wraparound it then inserts stops
vectorisation.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from .._config import FASTMATH
from ..kernels import (ADDITIVE_KIND, BIWEIGHT, BOXCAR, DISTANCE, EPANECHNIKOV, GAUSSIAN,
                       LAPLACIAN, RBF_KIND, TRIANGULAR, TRICUBE, log_weight)
from .additive import additive_row
from .fastexp import like, log_pos, max_no_nan


@njit(inline="always", fastmath=FASTMATH)
def score_row(Q, i, KT, j0, j1, family, code, scale, logw, self_j, row):
    """Write the scores of query ``i`` against keys ``j0:j1`` into ``row``.

    ``family``/``code`` pick the score (see :mod:`nwattn.kernels`); the inputs
    are already divided by the bandwidth. ``logw`` holds the log key weights
    (empty when there are none). ``self_j`` is the key index to exclude
    (leave-one-out), or -1.
    """
    score_row_max(Q, i, KT, j0, j1, family, code, scale, logw, self_j, row)


@njit(inline="always", fastmath=FASTMATH)
def score_row_max(Q, i, KT, j0, j1, family, code, scale, logw, self_j, row):
    """:func:`score_row`, returning the largest score of the tile.

    The maximum is taken in the pass that finishes the scores, so the
    softmax update needs no pass of its own to find it.
    """
    if family == DISTANCE:
        squared_distances(Q, i, KT, j0, j1, row)
        tmax = log_weight_row(code, row, j1 - j0)
    else:
        tmax = scaled_dot_row_max(Q, i, KT, j0, j1, scale, row)
    return _weigh_keys(row, tmax, logw, j0, j1, self_j)


@njit(inline="always", fastmath=FASTMATH)
def _weigh_keys(row, tmax, logw, j0, j1, self_j):
    """Add the key weights to the scores and exclude key ``self_j``; the new maximum."""
    if logw.shape[0] > 0 or j0 <= self_j < j1:
        bias_row(row, logw, j0, j1, self_j)
        tmax = row_max(row, j1 - j0)
    return tmax


# The score's pieces are small functions of their own, not branches of one:
# Numba copies a whole inlined function into its caller before it prunes the
# branches its caller's constants rule out, so a caller that needs one piece
# (a learned score) inlines that piece alone.


@njit(inline="always", fastmath=FASTMATH)
def squared_distances(Q, i, KT, j0, j1, row):
    """Write ``||Q[i] - k_j||**2`` for the keys ``j0:j1`` into ``row``."""
    n = j1 - j0
    d = Q.shape[1]
    # Features four at a time: each pass over the row then loads and stores
    # it once for four features instead of once per feature, which is most
    # of the memory traffic of a small-d score. The first block writes the
    # row, so it needs no zeroing pass.
    d4 = d - d % 4
    if d4 == 0:
        zero = like(row, 0.0)
        for jj in range(n):
            row[jj] = zero
    for t in range(0, d4, 4):
        qa, qb, qc, qd = Q[i, t], Q[i, t + 1], Q[i, t + 2], Q[i, t + 3]
        ka = KT[t, j0:j1]
        kb = KT[t + 1, j0:j1]
        kc = KT[t + 2, j0:j1]
        kd = KT[t + 3, j0:j1]
        if t == 0:
            for jj in range(n):
                da = qa - ka[jj]
                db = qb - kb[jj]
                dc = qc - kc[jj]
                dd = qd - kd[jj]
                row[jj] = (da * da + db * db) + (dc * dc + dd * dd)
        else:
            for jj in range(n):
                da = qa - ka[jj]
                db = qb - kb[jj]
                dc = qc - kc[jj]
                dd = qd - kd[jj]
                row[jj] += (da * da + db * db) + (dc * dc + dd * dd)
    for t in range(d4, d):
        qt = Q[i, t]
        kt = KT[t, j0:j1]
        for jj in range(n):
            diff = qt - kt[jj]
            row[jj] += diff * diff


@njit(inline="always", fastmath=FASTMATH)
def gaussian_row_max(Q, i, KT, j0, j1, row):
    """The gaussian kernel's log-weights ``-||Q[i] - k_j||**2 / 2`` into ``row``; their maximum."""
    squared_distances(Q, i, KT, j0, j1, row)
    return gaussian_log_weights(row, j1 - j0)


@njit(inline="always", fastmath=FASTMATH)
def gaussian_log_weights(row, n):
    """Replace the squared distances ``row[:n]`` by ``-row / 2``; return their maximum."""
    tmax = like(row, -math.inf)
    neg_half = like(row, -0.5)
    for jj in range(n):
        x = row[jj] * neg_half
        row[jj] = x
        tmax = max_no_nan(tmax, x)
    return tmax


@njit(inline="always", fastmath=FASTMATH)
def scaled_dot_row_max(Q, i, KT, j0, j1, scale, row):
    """The dot scores ``scale * Q[i] . k_j`` into ``row``; their maximum."""
    n = j1 - j0
    d = Q.shape[1]
    d4 = d - d % 4
    if d4 == 0:
        zero = like(row, 0.0)
        for jj in range(n):
            row[jj] = zero
    for t in range(0, d4, 4):
        qa, qb, qc, qd = Q[i, t], Q[i, t + 1], Q[i, t + 2], Q[i, t + 3]
        ka = KT[t, j0:j1]
        kb = KT[t + 1, j0:j1]
        kc = KT[t + 2, j0:j1]
        kd = KT[t + 3, j0:j1]
        if t == 0:
            for jj in range(n):
                row[jj] = (qa * ka[jj] + qb * kb[jj]) + (qc * kc[jj] + qd * kd[jj])
        else:
            for jj in range(n):
                row[jj] += (qa * ka[jj] + qb * kb[jj]) + (qc * kc[jj] + qd * kd[jj])
    for t in range(d4, d):
        qt = Q[i, t]
        kt = KT[t, j0:j1]
        for jj in range(n):
            row[jj] += qt * kt[jj]
    sc = like(row, scale)
    tmax = like(row, -math.inf)
    for jj in range(n):
        x = row[jj] * sc
        row[jj] = x
        tmax = max_no_nan(tmax, x)
    return tmax


def log_weight_row(code, row, n):
    """Replace the squared distances ``row[:n]`` by log-weights; return their maximum.

    The formulas of :mod:`nwattn.kernels` written as branch-free loops:
    the scalar ``log1p`` of the catalogue is a libm call per pair that LLVM
    cannot vectorise, so ``log(1 - t)`` goes through the vectorisable
    :func:`~nwattn._cpu.fastexp.log_pos` (``1 - t`` rounds by at most half
    an ulp, which moves the weight by as little). Kernels without such a
    form (cosine) use the catalogue's scalar function.

    In compiled code, a ``code`` that is a constant of the compiled
    caller (a sweep's choice) arrives as a literal type, from which
    :func:`_log_weight_row_choice` picks that kernel's loop while Numba
    types the call: the other kernels' loops are never copied into the
    caller. Numba's own branch pruning would first inline every kernel's
    loop, then discard those the constant rules out; that copying was
    most of a sweep's compile time.
    """
    # Called from Python (tests, exploration), every kernel's loop behind a
    # branch, as compiled code with a code known at run time only gets it.
    return _any_log_weights(code, row, n)


@njit(inline="always", fastmath=FASTMATH)
def _power_log_weights(row, n, power):
    """Epanechnikov (``power`` 1) and biweight (2): ``power * log(1 - u2)`` inside the unit ball."""
    one = like(row, 1.0)
    zero = like(row, 0.0)
    ninf = like(row, -math.inf)
    c = like(row, power)
    tmax = ninf
    for jj in range(n):
        t = one - row[jj]
        x = c * log_pos(t if t > zero else one)
        x = x if t > zero else ninf
        row[jj] = x
        tmax = max_no_nan(tmax, x)
    return tmax


@njit(inline="always", fastmath=FASTMATH)
def _triangular_log_weights(row, n):
    """Triangular: ``log(1 - u)`` inside the unit ball."""
    one = like(row, 1.0)
    zero = like(row, 0.0)
    ninf = like(row, -math.inf)
    tmax = ninf
    for jj in range(n):
        t = one - np.sqrt(row[jj])
        x = log_pos(t if t > zero else one)
        x = x if t > zero else ninf
        row[jj] = x
        tmax = max_no_nan(tmax, x)
    return tmax


@njit(inline="always", fastmath=FASTMATH)
def _tricube_log_weights(row, n):
    """Tricube: ``3 log(1 - u**3)`` inside the unit ball."""
    one = like(row, 1.0)
    zero = like(row, 0.0)
    ninf = like(row, -math.inf)
    three = like(row, 3.0)
    tmax = ninf
    for jj in range(n):
        u = np.sqrt(row[jj])
        t = one - u * u * u
        x = three * log_pos(t if t > zero else one)
        x = x if t > zero else ninf
        row[jj] = x
        tmax = max_no_nan(tmax, x)
    return tmax


@njit(inline="always", fastmath=FASTMATH)
def _laplacian_log_weights(row, n):
    """Laplacian: ``-u``."""
    tmax = like(row, -math.inf)
    for jj in range(n):
        x = -np.sqrt(row[jj])
        row[jj] = x
        tmax = max_no_nan(tmax, x)
    return tmax


@njit(inline="always", fastmath=FASTMATH)
def _boxcar_log_weights(row, n):
    """Boxcar: 0 inside the unit ball, ``-inf`` outside."""
    one = like(row, 1.0)
    zero = like(row, 0.0)
    ninf = like(row, -math.inf)
    tmax = ninf
    for jj in range(n):
        x = zero if row[jj] <= one else ninf
        row[jj] = x
        tmax = max_no_nan(tmax, x)
    return tmax


@njit(inline="always", fastmath=FASTMATH)
def _catalogue_log_weights(code, row, n):
    """Any kernel, through the catalogue's scalar log-weight (a call per pair)."""
    tmax = like(row, -math.inf)
    for jj in range(n):
        x = like(row, log_weight(code, row[jj]))
        row[jj] = x
        tmax = max_no_nan(tmax, x)
    return tmax


# One implementation per kernel, for a code known when compiling.
_LOG_WEIGHTS = {
    GAUSSIAN: lambda code, row, n: gaussian_log_weights(row, n),
    EPANECHNIKOV: lambda code, row, n: _power_log_weights(row, n, 1.0),
    BIWEIGHT: lambda code, row, n: _power_log_weights(row, n, 2.0),
    TRIANGULAR: lambda code, row, n: _triangular_log_weights(row, n),
    TRICUBE: lambda code, row, n: _tricube_log_weights(row, n),
    LAPLACIAN: lambda code, row, n: _laplacian_log_weights(row, n),
    BOXCAR: lambda code, row, n: _boxcar_log_weights(row, n),
}


def _any_log_weights(code, row, n):
    """Every kernel's loop behind a branch on ``code`` (a code known at run time only)."""
    # The most used kernel first: its loop is branch-free and vectorises.
    if code == GAUSSIAN:
        return gaussian_log_weights(row, n)
    if code == EPANECHNIKOV:
        return _power_log_weights(row, n, 1.0)
    if code == BIWEIGHT:
        return _power_log_weights(row, n, 2.0)
    if code == TRIANGULAR:
        return _triangular_log_weights(row, n)
    if code == TRICUBE:
        return _tricube_log_weights(row, n)
    if code == LAPLACIAN:
        return _laplacian_log_weights(row, n)
    if code == BOXCAR:
        return _boxcar_log_weights(row, n)
    return _catalogue_log_weights(code, row, n)


@overload(log_weight_row, inline="always", prefer_literal=True,
          jit_options={"fastmath": FASTMATH, "error_model": "numpy"})
def _log_weight_row_choice(code, row, n):
    """The kernel's loop alone for a literal ``code``, else every kernel's behind a branch."""
    if isinstance(code, types.IntegerLiteral):
        return _LOG_WEIGHTS.get(code.literal_value, _any_log_weights)
    return _any_log_weights


@njit(inline="always", fastmath=FASTMATH)
def row_max(row, n):
    """Largest of ``row[:n]`` (``-inf`` when empty or all ``-inf``)."""
    tmax = like(row, -math.inf)
    for jj in range(n):
        tmax = max_no_nan(tmax, row[jj])
    return tmax


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
def mask_row(row, n, LW, lw_row, BIAS, b_row, jl0, cut):
    """Apply the masks of attention arrays to the scores ``row[:n]``.

    The tile holds the keys ``jl0:jl0 + n`` of the query's batch item
    (numbered within the item). ``LW[lw_row]`` are the item's key
    log-weights (key weights and key padding, ``-inf`` for a padded key),
    skipped when ``lw_row < 0``; ``BIAS[b_row]`` is the query's additive
    bias (an attention mask), skipped when ``b_row < 0``; the keys from
    tile position ``cut`` on are beyond the query's causal limit. The
    masks come after the score (and its leave-one-out exclusion), in the
    order a key weight always took, so results do not depend on whether a
    weight travels here or with the score. Returns whether ``row`` changed
    (its maximum must then be taken again).
    """
    changed = False
    if lw_row >= 0:
        lw = LW[lw_row, jl0:jl0 + n]
        for jj in range(n):
            row[jj] += lw[jj]
        changed = True
    if b_row >= 0:
        bias = BIAS[b_row, jl0:jl0 + n]
        for jj in range(n):
            row[jj] += bias[jj]
        changed = True
    if cut < n:
        ninf = like(row, -math.inf)
        for jj in range(max(cut, 0), n):
            row[jj] = ninf
        changed = True
    return changed


@njit(inline="always", fastmath=FASTMATH)
def add_weighted(row, n, VT, c0, j0, S, ii, o):
    """``S[ii, o + c] += row[:n] . VT[c, j0:j0 + n]`` for every column ``c >= c0`` of ``VT``."""
    for col in range(c0, VT.shape[0]):
        vt = VT[col, j0:j0 + n]
        a = like(row, 0.0)
        for jj in range(n):
            a += row[jj] * vt[jj]
        S[ii, o + col] += a


@njit(inline="always", fastmath=FASTMATH)
def learned_row(kind, P, i, OT, j0, j1, wv, scale, logw, self_j, row, TH):
    """Scores of a learned score: row ``i`` of ``P`` against columns ``j0:j1`` of ``OT``.

    ``P`` and ``OT`` are projections (``z = A x`` for rbf, ``W_q q`` and
    ``W_k k`` otherwise), so each kind is a fixed score of them. The
    three are symmetric in the sense the backward sweeps need: swapping
    the roles of ``P`` and ``OT`` (a key row against query columns) gives
    the same ``s_ij``. ``TH`` receives the additive score's tanh values
    when it has rows.
    """
    if kind == ADDITIVE_KIND:
        additive_row(P, i, OT, j0, j1, wv, logw, self_j, row, TH)
    else:
        if kind == RBF_KIND:
            gaussian_row_max(P, i, OT, j0, j1, row)
        else:
            scaled_dot_row_max(P, i, OT, j0, j1, scale, row)
        bias_row(row, logw, j0, j1, self_j)

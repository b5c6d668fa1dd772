"""What the one CPU sweep does with a tile: its score and absorb strategies.

The task skeleton of :mod:`nwattn._cpu.sweep` is written once; what varies
between pooling, learned-score pooling and the leave-one-out slopes is

* the **score strategy**: how a query's scores against a tile of keys are
  computed (:func:`kernel_score`, :func:`learned_score`, :func:`slope_score`);
* the **absorb strategy**: which accumulators the tile's weights are folded
  into (:func:`absorb_pool`, :func:`absorb_slope_tile`), laid out as a
  :class:`nwattn._layout.StateLayout` says;
* the **tile schedule**: which key tiles a block of queries visits, in what
  order (:func:`tile_count`, :func:`tile_bounds`); causal order ends a
  block's keys at its last query (:func:`causal_end`) and key padding
  skips the tiles it covers entirely (:func:`tile_padded`).

The skeleton's tasks are compiled once per *choice* of strategies and
kernel (:mod:`nwattn._cpu.choice`), in which the numbers below are
constants: Numba prunes every branch on them before it inlines anything,
so each choice is its own specialisation, cached on disk, with only its own
strategies and kernel loop typed and inlined into the inner loop as if
written there by hand. (Numba prunes a branch on a comparison of
constants, or on ``x is None`` for an argument typed as None; not on an
integer argument, literal or not, nor on ``x is None`` for an argument
that is an array: branches on those made it type, inline and compile every
strategy and every kernel in each specialisation.) Below the strategies,
the kernel's code reaches :func:`~nwattn._cpu.rows.log_weight_row` as a
literal type, from which it picks the kernel's loop while Numba types the
call, so the other kernels' loops are never even copied. Adding a strategy is
one function here, one branch in the skeleton and, when it adds
accumulators, one layout.
"""

import math

import numpy as np
from numba import njit

from .._config import FASTMATH
from .._layout import rescale_row
from ..kernels import DISTANCE
from .fastexp import exp_shifted, like, weights_dot
from .moments import add_meat, add_moments, local_basis
from .rows import (add_weighted, bias_row, gaussian_row_max, learned_row, row_max,
                   scaled_dot_row_max, score_row_max)
from .slopes import absorb_slopes, kernel_and_slope

# Score strategies.
#: A smoothing kernel or dot score of (already scaled) inputs: ``family``/``code``.
KERNEL = 0
#: A learned score of projected inputs; ``family`` carries the score's kind
#: (``nwattn.kernels.RBF_KIND`` ...).
LEARNED = 1
#: A smoothing kernel or dot score and its slope with respect to the
#: log-bandwidths (the leave-one-out score's gradient).
SLOPE = 2
#: A smoothing kernel at each query's own scale, leaving the offsets of the
#: keys from the query for the moments (local polynomial regression).
LOCAL = 3

# Absorb strategies, each with its layout in nwattn._layout.
#: Normaliser, weighted values, weighted squares (``pool_layout``).
POOL = 0
#: POOL without squares, plus the slopes ``A`` and ``B`` (``slopes_layout``).
SLOPES = 1
#: Query-centred Gram and cross moments of a local polynomial
#: (``local_layout``; see :mod:`nwattn._cpu.moments`).
MOMENTS = 2
#: MOMENTS plus their derivatives with respect to the log-bandwidths
#: (``local_layout(..., slopes=True)``), for the gradient of the local
#: polynomial's leave-one-out score.
MOMENT_SLOPES = 3
#: The weights of the ``LOCAL`` score times a per-query polynomial of the
#: offsets (a fitted local polynomial's equivalent kernel), pooled by the
#: matrix body into normaliser and values (``pool_layout``): the same
#: linear smoother applied to many columns at once, e.g. bootstrap ones.
SMOOTHER = 4

# Tile schedules.
#: Every key tile of the task's key range, in order.
DENSE = 0


@njit(inline="always", fastmath=FASTMATH)
def tile_count(schedule, k0, k1, key_tile):
    """Number of key tiles a task visits in its key range ``k0:k1``."""
    return (k1 - k0 + key_tile - 1) // key_tile


@njit(inline="always", fastmath=FASTMATH)
def tile_bounds(schedule, t, k0, k1, key_tile):
    """Key range ``(j0, j1)`` of the ``t``-th tile the task visits in ``k0:k1``."""
    j0 = k0 + t * key_tile
    return j0, min(k1, j0 + key_tile)


@njit(inline="always", fastmath=FASTMATH)
def causal_end(k0, k1, i1, diag):
    """End of the keys ``k0:k1`` that queries before ``i1`` may attend.

    Query ``i`` attends key ``j`` only when ``j <= i + diag`` (causal
    order; ``diag`` large when there is none), so a block of queries
    ending at ``i1`` never needs a key from ``i1 + diag`` on: the tiles
    beyond it are not visited at all. Positions are within the batch item.
    """
    return max(k0, min(k1, i1 + diag))


@njit(inline="always", fastmath=FASTMATH)
def tile_padded(LW, lw_row, j0, j1):
    """Whether every key ``j0:j1`` has log-weight ``-inf`` in ``LW[lw_row]``.

    Such a tile (key padding, zero weights) adds nothing to any query of
    the item, so it is skipped before anything is scored. One pass over
    the tile's weights per task, against a score per query and key.
    """
    if lw_row < 0:
        return False
    lw = LW[lw_row, j0:j1]
    for jj in range(j1 - j0):
        if lw[jj] != -math.inf:
            return False
    return True


@njit(inline="always", fastmath=FASTMATH)
def kernel_score(Q, i, KT, j0, j1, family, code, scale, logw, self_j, row):
    """``KERNEL``: a smoothing kernel or dot score into ``row``; returns the maximum."""
    return score_row_max(Q, i, KT, j0, j1, family, code, scale, logw, self_j, row)


@njit(inline="always", fastmath=FASTMATH)
def learned_score(Q, i, KT, j0, j1, kind, scale, logw, self_j, wv, row, TH):
    """``LEARNED``: a learned score of projected inputs; returns the maximum."""
    learned_row(kind, Q, i, KT, j0, j1, wv, scale, logw, self_j, row, TH)
    return row_max(row, j1 - j0)


@njit(inline="always", fastmath=FASTMATH)
def slope_score(Q, i, KT, j0, j1, family, code, scale, logw, self_j, row, slope):
    """``SLOPE``: a kernel or dot score and its slope in the log-bandwidths."""
    n = j1 - j0
    if family == DISTANCE:
        # The gaussian score with nothing added is -u2/2 exactly, from
        # which every kernel's log-weight and slope follow.
        gaussian_row_max(Q, i, KT, j0, j1, row)
        kernel_and_slope(row, slope, n, code, logw, j0, self_j)
    else:
        scaled_dot_row_max(Q, i, KT, j0, j1, scale, row)
        bias_row(row, logw, j0, j1, self_j)
        for jj in range(n):
            slope[jj] = -scale
    return row_max(row, n)


@njit(inline="always", fastmath=FASTMATH)
def raise_max(tmax, ii, smax, S, powers):
    """Raise the running maximum of query ``ii`` to ``tmax`` if larger.

    What was accumulated against the old maximum is rescaled by the one
    rule of :func:`nwattn._layout.rescale_row`. ``tmax`` must be finite.
    """
    old = smax[ii]
    if tmax > old:
        if old > -math.inf:
            rescale_row(S[ii], powers, math.exp(old - tmax))
        smax[ii] = tmax


@njit(inline="always", fastmath=FASTMATH)
def _absorb_weights(row, n, tmax, VT, j0, ii, smax, S, powers, o_norm, o_acc):
    """What every absorb strategy starts with: weights, normaliser and values.

    Raises the running maximum, then one pass computes the weights, their
    sum and the weighted sum of the first output column; the other columns
    take one dot product each. ``row`` is left holding the unnormalised
    weights.
    """
    raise_max(tmax, ii, smax, S, powers)
    p = VT.shape[0]
    if p > 0:
        total, a = weights_dot(row, smax[ii], n, VT[0, j0:j0 + n])
        S[ii, o_acc] += a
    else:
        total = exp_shifted(row, smax[ii], n)
    S[ii, o_norm] += total
    add_weighted(row, n, VT, 1, j0, S, ii, o_acc)


@njit(inline="always", fastmath=FASTMATH)
def absorb_pool(row, n, tmax, VT, VT2, j0, ii, smax, S, powers, offsets):
    """``POOL``: fold the tile into the normaliser, the values and their squares.

    ``S`` is the task's packed state, ``offsets`` the first column of each
    block of its layout (``norm, acc, sq``). ``row`` is left holding the
    unnormalised weights. A tile whose scores are all ``-inf`` (``tmax``)
    adds nothing.
    """
    if tmax == -math.inf:
        return
    _absorb_weights(row, n, tmax, VT, j0, ii, smax, S, powers, offsets[0], offsets[1])
    add_weighted(row, n, VT2, 0, j0, S, ii, offsets[2])


@njit(inline="always", fastmath=FASTMATH)
def absorb_slope_tile(row, n, tmax, Q, i, KT, family, VT, j0, ii, smax, S, powers, offsets,
                      slope, term):
    """``SLOPES``: the values, plus the slopes ``A`` and ``B`` (``norm, acc, A, B``)."""
    if tmax == -math.inf:
        return
    _absorb_weights(row, n, tmax, VT, j0, ii, smax, S, powers, offsets[0], offsets[1])
    d = Q.shape[1]
    p = VT.shape[0]
    absorb_slopes(Q, i, KT, VT, j0, n, family, row, slope, term,
                  S[ii, offsets[2]:offsets[2] + d], S[ii, offsets[3]:offsets[3] + d * p])


@njit(inline="always", fastmath=FASTMATH)
def absorb_moments(row, n, tmax, Z, nb, d, VT, VT2, VS, j0, ii, smax, S, powers, offsets,
                   WS, WZ):
    """``MOMENTS``: the pooling accumulators plus the local polynomial's moments.

    ``offsets`` are those of ``norm, acc, moments, cross, sq, meat``; ``Z``
    the offsets of the keys left by :func:`local_score`, with room for the
    ``nb`` basis functions beyond the constant. The squares ``VT2`` are
    accumulated when it has rows, and the standard errors' sandwich middle
    (:func:`~nwattn._cpu.moments.add_meat`) for each row of ``VS``.
    """
    if tmax == -math.inf:
        return
    _absorb_weights(row, n, tmax, VT, j0, ii, smax, S, powers, offsets[0], offsets[1])
    add_weighted(row, n, VT2, 0, j0, S, ii, offsets[4])
    local_basis(Z, nb, d, n)
    add_moments(row, n, Z, nb, VT, j0, ii, S, offsets[2], offsets[3], WZ)
    if VS.shape[0] > 0:
        add_meat(row, n, Z, nb, VS, j0, ii, S, offsets[5], WS, WZ)


@njit(inline="always", fastmath=FASTMATH)
def weigh_row(row, n, ii, smax, S, powers, o_norm):
    """The first half of :func:`absorb_pool` for the matrix body.

    Raises the running maximum, replaces the scores by ``exp(score - max)``
    and adds their sum to the normaliser. Returns False, with ``row[:n]``
    zeroed, when every score is ``-inf``: the tile adds nothing. The caller
    then adds ``row . v`` to the accumulators with a matrix product.
    """
    tmax = row_max(row, n)
    if tmax == -math.inf:
        zero = like(row, 0.0)
        for jj in range(n):
            row[jj] = zero
        return False
    raise_max(tmax, ii, smax, S, powers)
    S[ii, o_norm] += exp_shifted(row, smax[ii], n)
    return True


def absorb_offsets(absorb, layout):
    """``offsets`` argument of the absorb strategies for a layout (host side).

    Examples
    --------
    >>> from nwattn._layout import pool_layout
    >>> from nwattn._cpu.strategies import POOL, absorb_offsets
    >>> absorb_offsets(POOL, pool_layout(2, True)).tolist()
    [0, 1, 3]
    """
    names = {POOL: ("norm", "acc", "sq"), SMOOTHER: ("norm", "acc", "sq"),
             SLOPES: ("norm", "acc", "A", "B"),
             MOMENTS: ("norm", "acc", "moments", "cross", "sq", "meat"),
             MOMENT_SLOPES: ("norm", "acc", "moments", "cross", "sq", "meat", "dG", "dR")}[absorb]
    return np.array([layout.offset(name) for name in names], dtype=np.int64)

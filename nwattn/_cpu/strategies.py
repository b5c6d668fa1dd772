"""What the one CPU sweep does with a tile: its score and absorb strategies.

The task skeleton of :mod:`nwattn._cpu.sweep` is written once; what varies
between pooling, learned-score pooling and the leave-one-out slopes is

* the **score strategy**: how a query's scores against a tile of keys are
  computed (:func:`score_tile`);
* the **absorb strategy**: which accumulators the tile's weights are folded
  into (:func:`absorb_tile`), laid out as a :class:`nwattn._layout.StateLayout`
  says;
* the **tile schedule**: which key tiles a block of queries visits, in what
  order (:func:`tile_bounds`).

Each is picked by a small integer that the skeleton receives as a
``numba.literally`` argument. The dispatchers :func:`score_tile`,
:func:`absorb_tile`, :func:`tile_count` and :func:`tile_bounds` are Numba
overloads that look at that literal while typing and hand back only the
chosen strategy's function, so Numba compiles one specialisation per
combination and types none of the others. (A plain branch on the integer
would make Numba type every strategy in every specialisation, since it
does not prune branches on literal arguments: more than twice the compile
time.) The score and absorb strategies are compiled as functions of their
own, called once per query and tile of up to ``KEY_TILE`` keys: the call
costs nothing next to the tile's work, and inlining them would make Numba
compile each twice (once to type it, once inside the skeleton). The
vectorised loops live inside them, unchanged. Called from Python, the dispatchers run the same functions. Adding a
strategy is one constant, one function and one entry of its table here
(and a layout when it adds accumulators).
"""

import math

import numpy as np
from numba import njit, types
from numba.core.errors import TypingError
from numba.extending import overload

from .._config import FASTMATH
from .._layout import rescale_row
from ..kernels import DISTANCE, GAUSSIAN
from .fastexp import exp_shifted, like, weights_dot
from .rows import learned_row, row_max, score_row, score_row_max
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

# Absorb strategies, each with its layout in nwattn._layout.
#: Normaliser, weighted values, weighted squares (``pool_layout``).
POOL = 0
#: POOL without squares, plus the slopes ``A`` and ``B`` (``slopes_layout``).
SLOPES = 1

# Tile schedules.
#: Every key tile of the task's key range, in order.
DENSE = 0


def _literal(arg, what):
    """The strategy number of a ``numba.literally`` argument, while typing."""
    if isinstance(arg, types.IntegerLiteral):
        return arg.literal_value
    if isinstance(arg, int):  # called from Python
        return arg
    raise TypingError(f"the {what} strategy must be a literal integer, got {arg}")


def _dense_count(schedule, k0, k1, key_tile):
    return (k1 - k0 + key_tile - 1) // key_tile


def _dense_tiles(schedule, t, k0, k1, key_tile):
    j0 = k0 + t * key_tile
    return j0, min(k1, j0 + key_tile)


#: Each schedule: (number of tiles visited in ``k0:k1``, bounds of the t-th).
_SCHEDULES = {DENSE: (_dense_count, _dense_tiles)}


def tile_count(schedule, k0, k1, key_tile):
    """Number of key tiles a task visits in its key range ``k0:k1``."""
    return _SCHEDULES[_literal(schedule, "schedule")][0](schedule, k0, k1, key_tile)


@overload(tile_count, inline="always", jit_options={"fastmath": FASTMATH})
def _tile_count_impl(schedule, k0, k1, key_tile):
    return _SCHEDULES[_literal(schedule, "schedule")][0]


def tile_bounds(schedule, t, k0, k1, key_tile):
    """Key range ``(j0, j1)`` of the ``t``-th tile the task visits in ``k0:k1``."""
    return _SCHEDULES[_literal(schedule, "schedule")][1](schedule, t, k0, k1, key_tile)


@overload(tile_bounds, inline="always", jit_options={"fastmath": FASTMATH})
def _tile_bounds_impl(schedule, t, k0, k1, key_tile):
    return _SCHEDULES[_literal(schedule, "schedule")][1]


def _kernel_score(score, Q, i, KT, j0, j1, family, code, scale, logw, self_j, wv, row, slope,
                  TH):
    return score_row_max(Q, i, KT, j0, j1, family, code, scale, logw, self_j, row)


def _learned_score(score, Q, i, KT, j0, j1, family, code, scale, logw, self_j, wv, row, slope,
                   TH):
    learned_row(family, Q, i, KT, j0, j1, wv, scale, logw, self_j, row, TH)
    return row_max(row, j1 - j0)


def _slope_score(score, Q, i, KT, j0, j1, family, code, scale, logw, self_j, wv, row, slope,
                 TH):
    n = j1 - j0
    if family == DISTANCE:
        # The gaussian score with nothing added is -u2/2 exactly, from
        # which every kernel's log-weight and slope follow.
        score_row(Q, i, KT, j0, j1, DISTANCE, GAUSSIAN, 1.0, logw[:0], -1, row)
        kernel_and_slope(row, slope, n, code, logw, j0, self_j)
    else:
        score_row(Q, i, KT, j0, j1, family, code, scale, logw, self_j, row)
        for jj in range(n):
            slope[jj] = -scale
    return row_max(row, n)


_SCORES = {KERNEL: _kernel_score, LEARNED: _learned_score, SLOPE: _slope_score}


def score_tile(score, Q, i, KT, j0, j1, family, code, scale, logw, self_j, wv, row, slope, TH):
    """Scores of query ``i`` against keys ``j0:j1`` into ``row``; returns their maximum.

    ``slope`` receives the slopes (``SLOPE`` only); ``TH`` is the additive
    score's scratch (``LEARNED`` with the additive kind only).
    """
    return _SCORES[_literal(score, "score")](score, Q, i, KT, j0, j1, family, code, scale, logw,
                                              self_j, wv, row, slope, TH)


@overload(score_tile, jit_options={"fastmath": FASTMATH, "error_model": "numpy"})
def _score_tile_impl(score, Q, i, KT, j0, j1, family, code, scale, logw, self_j, wv, row,
                     slope, TH):
    return _SCORES[_literal(score, "score")]


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
def add_weighted(row, n, VT, c0, j0, S, ii, o):
    """``S[ii, o + c] += row[:n] . VT[c, j0:j0 + n]`` for every column ``c >= c0`` of ``VT``."""
    for col in range(c0, VT.shape[0]):
        vt = VT[col, j0:j0 + n]
        a = like(row, 0.0)
        for jj in range(n):
            a += row[jj] * vt[jj]
        S[ii, o + col] += a


def _absorb_pool(absorb, row, n, tmax, Q, i, KT, family, VT, VT2, j0, ii, smax, S, powers,
                 offsets, slope, term):
    if tmax == -math.inf:
        return
    _absorb_weights(row, n, tmax, VT, j0, ii, smax, S, powers, offsets[0], offsets[1])
    add_weighted(row, n, VT2, 0, j0, S, ii, offsets[2])


def _absorb_slopes(absorb, row, n, tmax, Q, i, KT, family, VT, VT2, j0, ii, smax, S, powers,
                   offsets, slope, term):
    if tmax == -math.inf:
        return
    _absorb_weights(row, n, tmax, VT, j0, ii, smax, S, powers, offsets[0], offsets[1])
    d = Q.shape[1]
    p = VT.shape[0]
    absorb_slopes(Q, i, KT, VT, j0, n, family, row, slope, term,
                  S[ii, offsets[2]:offsets[2] + d], S[ii, offsets[3]:offsets[3] + d * p])


_ABSORBS = {POOL: _absorb_pool, SLOPES: _absorb_slopes}


def absorb_tile(absorb, row, n, tmax, Q, i, KT, family, VT, VT2, j0, ii, smax, S, powers,
                offsets, slope, term):
    """Fold the scores ``row[:n]`` of keys ``j0:j0+n`` into the state of query ``ii``.

    ``S`` is the task's packed state, ``offsets`` the first column of each
    block of its layout (``norm, acc, sq`` or ``norm, acc, A, B``).
    ``row`` is left holding the unnormalised weights. A tile whose scores
    are all ``-inf`` (``tmax``) adds nothing.
    """
    return _ABSORBS[_literal(absorb, "absorb")](absorb, row, n, tmax, Q, i, KT, family, VT,
                                                 VT2, j0, ii, smax, S, powers, offsets, slope,
                                                 term)


@overload(absorb_tile, jit_options={"fastmath": FASTMATH, "error_model": "numpy"})
def _absorb_tile_impl(absorb, row, n, tmax, Q, i, KT, family, VT, VT2, j0, ii, smax, S, powers,
                      offsets, slope, term):
    return _ABSORBS[_literal(absorb, "absorb")]


@njit(inline="always", fastmath=FASTMATH)
def weigh_row(row, n, ii, smax, S, powers, o_norm):
    """The first half of :func:`absorb_tile` for the matrix body.

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
    """``offsets`` argument of :func:`absorb_tile` for a layout (host side).

    Examples
    --------
    >>> from nwattn._layout import pool_layout
    >>> from nwattn._cpu.strategies import POOL, absorb_offsets
    >>> absorb_offsets(POOL, pool_layout(2, True)).tolist()
    [0, 1, 3]
    """
    names = ("norm", "acc", "sq") if absorb == POOL else ("norm", "acc", "A", "B")
    return np.array([layout.offset(name) for name in names], dtype=np.int64)

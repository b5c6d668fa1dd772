"""The rbf leave-one-out objective with every unordered pair scored once.

When the queries are all the training points and the score is rbf
(``s_oj = -||z_o - z_j||^2 / 2 = s_jo``), the sweeps of
:mod:`nwattn._cpu.learned` score each pair twice, once from each side, and
the backward takes two exponentials per pair. Here the pair ``{o, j}`` is
scored once and its one exponential ``E_oj = exp(s_oj)`` serves both rows:
half the scores and a quarter of the exponentials.

Two things make that possible.

No running maximum. ``s <= 0``, so ``E <= 1`` needs no shift; with the key
weights divided by the largest (``w'``), the normaliser ``N_o = sum_j w'_j
E_oj`` and the weighted sums are plain sums that either side of a pair can
add to. The price is underflow for a point far from all others: when some
``N_o`` is below ``exp(-600)`` the caller uses the online-softmax sweeps
instead (above it, the terms lost by underflow are below ``n exp(-108)`` of
``N_o``).

No races. Every task writes to the rows of both sides of its pairs. The
blocks of rows are paired as in a round-robin tournament (the circle
method): the tasks of a round are disjoint pairs of blocks, so each task
owns the rows it writes, and a last round takes the pairs inside each block.
The order in which contributions reach a row depends on the shape alone,
so the results are the same for any number of threads.

The gradient. With ``alpha_oj = w'_j E_oj / N_o``, ``f`` the centred
predictions, ``g = dL/df`` and ``e_o = f_o . g_o``, the score gradient of
the pair in both directions is

    h_oj = G_oj + G_jo = E_oj (a_j . b_o),
    a_j = [w'_j y_j, w'_j, g_j / N_j, e_j / N_j],
    b_o = [g_o / N_o, -e_o / N_o, w'_o y_o, -w'_o],

(``a_j . b_o = a_o . b_j``), and ``dz_o += h_oj (z_j - z_o)``, ``dz_j +=
h_oj (z_o - z_j)``.
"""

import numpy as np
from numba import njit, prange

from .._config import FASTMATH
from .fastexp import exp_shifted
from .rows import gaussian_row_max


def block_size(n):
    """Rows per block for ``n`` points: the decomposition depends on ``n`` only."""
    from .. import _config

    size = max(_config.PAIR_MIN_ROWS, -(-n // _config.PAIR_BLOCKS))
    return max(1, min(size, _config.KEY_TILE, n))


def round_robin(n_blocks):
    """The tasks of each round: ``(n_rounds, n_tasks, 2)`` block indices, -1 for none.

    The first rounds pair distinct blocks so that every pair of blocks meets
    once and no block is in two tasks of a round (the circle method); the
    last rounds pair each block with itself, as many per round. Rounds are
    as wide as they are full: the threads split a round's tasks evenly by
    position, so empty slots would leave a thread idle.

    Examples
    --------
    >>> from nwattn._cpu.pairs import round_robin
    >>> round_robin(4).tolist()
    [[[0, 3], [1, 2]], [[1, 3], [2, 0]], [[2, 3], [0, 1]], [[0, 0], [1, 1]], [[2, 2], [3, 3]]]
    """
    # With an odd count a phantom block makes it even; its partner rests.
    players = n_blocks + n_blocks % 2
    width = max(1, players // 2)
    rounds = []
    for rnd in range(players - 1 if n_blocks > 1 else 0):
        tasks = [(rnd, players - 1)]
        for k in range(1, width):
            tasks.append(((rnd + k) % (players - 1), (rnd - k) % (players - 1)))
        rounds.append([(a, b) for a, b in tasks if a < n_blocks and b < n_blocks])
    for start in range(0, n_blocks, width):
        rounds.append([(a, a) for a in range(start, min(n_blocks, start + width))])
    plan = np.full((len(rounds), width, 2), -1, dtype=np.int64)
    for rnd, tasks in enumerate(rounds):
        plan[rnd, :len(tasks)] = tasks
    return plan


@njit(inline="always")
def task_rows(plan, rnd, t, bs, n):
    """Rows ``a0:a1`` and ``b0:b1`` of the two blocks of task ``t`` of round ``rnd``.

    ``a0`` is -1 for an empty slot of the round.
    """
    bi = plan[rnd, t, 0]
    bj = plan[rnd, t, 1]
    if bi < 0:
        return -1, -1, -1, -1
    return bi * bs, min(n, (bi + 1) * bs), bj * bs, min(n, (bj + 1) * bs)


@njit(inline="always", fastmath=FASTMATH)
def pair_weights(Z, ZT, o, j0, j1, row):
    """``row[:j1 - j0] = exp(s_oj)`` for the points ``j0:j1``, unshifted (``s <= 0``)."""
    gaussian_row_max(Z, o, ZT, j0, j1, row)
    exp_shifted(row, 0.0, j1 - j0)


@njit(inline="always", fastmath=FASTMATH)
def both_sides(e, m, other, column, own):
    """Both rows of the pairs ``(o, j)`` at once: ``column += e own``; return ``e . other``.

    ``e`` holds the pairs' weights, ``other`` a quantity of each ``j`` summed
    into row ``o``, and ``own`` a quantity of ``o`` added to each ``j``.
    """
    a = 0.0
    for jj in range(m):
        w = e[jj]
        a += w * other[jj]
        column[jj] += w * own
    return a


@njit(cache=True, fastmath=FASTMATH)
def _forward_task(Z, ZT, V, VT, a0, a1, b0, b1, out):
    q = VT.shape[0]
    same = a0 == b0
    s = np.empty(b1 - b0, dtype=Z.dtype)
    col = np.zeros((q, b1 - b0), dtype=Z.dtype)
    for o in range(a0, a1):
        js = o + 1 if same else b0
        m = b1 - js
        if m <= 0:
            continue
        pair_weights(Z, ZT, o, js, b1, s)
        c0 = js - b0
        for k in range(q):
            out[o, k] += both_sides(s, m, VT[k, js:b1], col[k, c0:], V[o, k])
    for k in range(q):
        for jj in range(b1 - b0):
            out[b0 + jj, k] += col[k, jj]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def pair_sums(Z, ZT, V, VT, bs, plan, out):
    """``out[o] += sum_{j != o} exp(s_oj) V[j]``, each pair scored once.

    ``Z`` (n, r) the embedded points and ``ZT`` its transpose; ``V`` (n, q)
    and ``VT`` its transpose; ``bs`` rows per block; ``plan`` from
    :func:`round_robin`.
    """
    n = Z.shape[0]
    for rnd in range(plan.shape[0]):
        for t in prange(plan.shape[1]):
            a0, a1, b0, b1 = task_rows(plan, rnd, t, bs, n)
            if a0 >= 0:
                _forward_task(Z, ZT, V, VT, a0, a1, b0, b1, out)


@njit(cache=True, fastmath=FASTMATH)
def _backward_task(Z, ZT, B, AT, a0, a1, b0, b1, dZ):
    q = AT.shape[0]
    r = Z.shape[1]
    same = a0 == b0
    width = b1 - b0
    s = np.empty(width, dtype=Z.dtype)
    br = np.empty(width, dtype=Z.dtype)
    colh = np.zeros(width, dtype=Z.dtype)
    colz = np.zeros((r, width), dtype=Z.dtype)
    for o in range(a0, a1):
        js = o + 1 if same else b0
        m = b1 - js
        if m <= 0:
            continue
        pair_weights(Z, ZT, o, js, b1, s)
        for jj in range(m):
            br[jj] = 0.0
        for k in range(q):
            at = AT[k, js:b1]
            bo = B[o, k]
            for jj in range(m):
                br[jj] += at[jj] * bo
        c0 = js - b0
        ch = colh[c0:]
        hsum = 0.0
        for jj in range(m):
            h = s[jj] * br[jj]
            s[jj] = h
            hsum += h
            ch[jj] += h
        for t in range(r):
            zo = Z[o, t]
            dZ[o, t] += both_sides(s, m, ZT[t, js:b1], colz[t, c0:], zo) - zo * hsum
    for t in range(r):
        for jj in range(width):
            dZ[b0 + jj, t] += colz[t, jj] - Z[b0 + jj, t] * colh[jj]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def pair_gradient(Z, ZT, B, AT, bs, plan, dZ):
    """``dZ[o] += sum_j h_oj (z_j - z_o)`` with ``h_oj = exp(s_oj) (A_j . B_o)``.

    ``A . B`` must be symmetric in the pair (see the module's text); each
    pair is scored once and feeds both of its rows. Arguments as for
    :func:`pair_sums`, ``AT`` the transpose of ``A``.
    """
    n = Z.shape[0]
    for rnd in range(plan.shape[0]):
        for t in prange(plan.shape[1]):
            a0, a1, b0, b1 = task_rows(plan, rnd, t, bs, n)
            if a0 >= 0:
                _backward_task(Z, ZT, B, AT, a0, a1, b0, b1, dZ)


def plan_for(n):
    """``(rows per block, round-robin plan)`` for ``n`` points; depends on ``n`` only."""
    bs = block_size(n)
    return bs, round_robin(-(-n // bs))

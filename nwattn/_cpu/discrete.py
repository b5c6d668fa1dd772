"""Discrete (categorical) features in the inner loop: table lookups added to the scores.

A pair's log weight is the continuous kernel's score plus, for each
discrete feature ``f``, ``log L_f(a, b)`` of the query's category ``a`` and
the key's category ``b``. The host tabulates ``log L_f`` once per call
(``LT``, shape ``(n_discrete, n_query_codes, n_categories)``, ``-inf``
where ``L = 0``), so a tile costs one gather and one addition per key and
discrete feature, after the continuous score of the same tile; the
``-inf`` of a zero weight goes through the online softmax like that of a
compact kernel outside its support.

The leave-one-out gradient needs ``d log L_f / d lam_f`` of every pair,
tabulated likewise (``DT``, 0 where ``L = 0``: that pair's weight is 0 and
its term of the slopes with it). The discrete inputs travel to the sweep
as one tuple ``(QC, KCT, LT, DT)``: the query codes ``(n, n_discrete)``,
the key codes transposed ``(n_discrete, m)`` and the two tables.
"""

from numba import njit

from .._config import FASTMATH
from .fastexp import like
from .moments import add_moments
from .rows import add_weighted, row_max


@njit(inline="always", fastmath=FASTMATH)
def add_discrete(row, n, i, j0, QC, KCT, LT):
    """Add ``log L_f(QC[i, f], KCT[f, j])`` of every discrete feature to ``row``; the maximum."""
    for f in range(QC.shape[1]):
        trow = LT[f, QC[i, f]]
        kc = KCT[f, j0:j0 + n]
        for jj in range(n):
            row[jj] += trow[kc[jj]]
    return row_max(row, n)


@njit(inline="always", fastmath=FASTMATH)
def absorb_discrete_slopes(row, n, i, j0, QC, KCT, DT, VT, S, ii, o_a, o_b, term):
    """The ``SLOPES`` accumulators of the discrete features' parameters.

    ``row`` holds the tile's unnormalised weights ``e_j``; adds
    ``sum_j e_j d log L_f / d lam_f`` to ``S[ii, o_a + f]`` and the same
    times the values to ``S[ii, o_b + f p + c]``.
    """
    p = VT.shape[0]
    for f in range(QC.shape[1]):
        trow = DT[f, QC[i, f]]
        kc = KCT[f, j0:j0 + n]
        s = like(row, 0.0)
        for jj in range(n):
            x = row[jj] * trow[kc[jj]]
            term[jj] = x
            s += x
        S[ii, o_a + f] += s
        add_weighted(term, n, VT, 0, j0, S, ii, o_b + f * p)


@njit(inline="always", fastmath=FASTMATH)
def add_discrete_moment_slopes(row, n, i, j0, QC, KCT, DT, Z, nb, d, VT, ii, S, o_dG, o_dR,
                               WS, WZ):
    """The moments weighted by ``w d log L_f / d lam_f``, for every discrete feature.

    The discrete twin of :func:`nwattn._cpu.moments.add_moment_slopes`:
    feature ``f`` is parameter ``d + f`` of the ``dG`` and ``dR`` blocks.
    ``Z`` holds the basis of the continuous offsets.
    """
    P = nb + 1
    T = P * (P + 1) // 2
    p = VT.shape[0]
    for f in range(QC.shape[1]):
        trow = DT[f, QC[i, f]]
        kc = KCT[f, j0:j0 + n]
        total = like(row, 0.0)
        for jj in range(n):
            x = row[jj] * trow[kc[jj]]
            WS[jj] = x
            total += x
        g0 = o_dG + (d + f) * T
        r0 = o_dR + (d + f) * P * p
        S[ii, g0] += total
        add_weighted(WS, n, VT, 0, j0, S, ii, r0)
        add_moments(WS, n, Z, nb, VT, j0, ii, S, g0 + 1, r0 + p, WZ)

"""Query-centred weighted moments: the inner loops of local polynomial regression.

A local polynomial fit of degree ``g`` at a query ``q`` solves the weighted
least-squares problem ``min_b sum_j w_j (v_j - b . phi(z_j))**2`` in the
offsets ``z_j = (k_j - q) s`` of the keys from the query, ``s`` the query's
inverse bandwidth. ``phi`` is the polynomial basis ``1, z_1 .. z_d`` and,
for degree 2, the products ``z_a z_b`` (``a <= b``). The problem is given
by two blocks of weighted moments,

* the Gram matrix ``G = sum_j w_j phi(z_j) phi(z_j)^T`` (``P x P``, kept as
  its upper triangle), whose first entry is the normaliser of pooling;
* the cross moments ``R = sum_j w_j phi(z_j) v_j^T`` (``P x p``), whose first
  row is the weighted sum of the values of pooling,

each a sum over keys, so they stream tile by tile with the online softmax
and merge across key splits like every other accumulator (their power is
1). The offsets are taken from the query itself and in units of the
bandwidth, which keeps ``G`` near the identity's scale whatever the data's
distance from the origin: what makes the small solves accurate when the
bandwidth is tiny compared with that distance.

Column order of the packed block (:func:`nwattn._layout.local_layout`):
``norm`` (``G[0, 0]``), ``acc`` (``R[0]``), ``moments`` (the rest of the
upper triangle of ``G`` row by row: ``G[0, 1:]``, then ``G[1, 1:]``, ...)
and ``cross`` (``R[1:]`` row by row).
"""

from numba import njit

from .._config import FASTMATH
from ..kernels import GAUSSIAN, dlog_weight
from .fastexp import like
from .rows import add_weighted, bias_row, log_weight_row, row_max


@njit(inline="always", fastmath=FASTMATH)
def local_offsets(Q, i, KT, j0, j1, qs, row, Z):
    """The offsets ``(k - q) qs`` of keys ``j0:j1`` into ``Z[:d]``, ``u2`` into ``row``."""
    n = j1 - j0
    d = Q.shape[1]
    s = like(row, qs)
    for t in range(d):
        qt = Q[i, t]
        kt = KT[t, j0:j1]
        zt = Z[t]
        if t == 0:
            for jj in range(n):
                z = (kt[jj] - qt) * s
                zt[jj] = z
                row[jj] = z * z
        else:
            for jj in range(n):
                z = (kt[jj] - qt) * s
                zt[jj] = z
                row[jj] += z * z


@njit(inline="always", fastmath=FASTMATH)
def local_log_weights(code, logw, j0, j1, self_j, row):
    """Squared distances ``row`` to log-weights, key weights and exclusion; the maximum."""
    tmax = log_weight_row(code, row, j1 - j0)
    if logw.shape[0] > 0 or j0 <= self_j < j1:
        bias_row(row, logw, j0, j1, self_j)
        tmax = row_max(row, j1 - j0)
    return tmax


@njit(inline="always", fastmath=FASTMATH)
def local_score(Q, i, KT, j0, j1, code, qs, logw, self_j, row, Z):
    """``LOCAL`` score: log-weights of keys ``j0:j1`` at the query's own scale.

    ``Q`` and ``KT`` are divided by the bandwidth; ``qs`` further scales
    the offsets of query ``i`` (1 for a fixed bandwidth; the ratio of the
    common bandwidth to the query's own for nearest-neighbour bandwidths).
    The offsets ``(k - q) qs`` of every feature are left in the first
    ``d`` rows of ``Z`` for :func:`add_moments`. Returns the tile's
    largest score.
    """
    local_offsets(Q, i, KT, j0, j1, qs, row, Z)
    return local_log_weights(code, logw, j0, j1, self_j, row)


@njit(inline="always", fastmath=FASTMATH)
def local_slope_score(Q, i, KT, j0, j1, code, qs, logw, self_j, row, Z, slope):
    """:func:`local_score`, also leaving ``slope = -2 d log K / d u2`` of each key.

    ``d log w / d log h_t = slope z_t**2``: what the derivatives of the
    moments with respect to the log-bandwidths are weighted by
    (:func:`add_moment_slopes`).
    """
    local_offsets(Q, i, KT, j0, j1, qs, row, Z)
    n = j1 - j0
    if code == GAUSSIAN:
        one = like(row, 1.0)
        for jj in range(n):
            slope[jj] = one
    else:
        for jj in range(n):
            slope[jj] = like(row, -2.0 * dlog_weight(code, row[jj]))
    return local_log_weights(code, logw, j0, j1, self_j, row)


@njit(inline="always", fastmath=FASTMATH)
def add_moment_slopes(row, slope, n, Z, nb, d, VT, j0, ii, S, o_dG, o_dR, WS, WZ):
    """Add the moments weighted by ``w d log w / d log h_t``, for every feature ``t``.

    ``row`` holds the tile's unnormalised weights, ``slope`` what
    :func:`local_slope_score` left, ``Z`` the basis (the products already
    formed by :func:`local_basis`). For feature ``t`` the whole upper
    triangle of ``sum_j w_j s_jt phi phi^T`` (``(0, 0)`` included) goes to
    ``o_dG + t T`` and ``sum_j w_j s_jt phi v^T`` to ``o_dR + t P p``.
    """
    P = nb + 1
    T = P * (P + 1) // 2
    p = VT.shape[0]
    for t in range(d):
        zt = Z[t]
        total = like(row, 0.0)
        for jj in range(n):
            x = row[jj] * slope[jj] * (zt[jj] * zt[jj])
            WS[jj] = x
            total += x
        g0 = o_dG + t * T
        r0 = o_dR + t * P * p
        S[ii, g0] += total
        add_weighted(WS, n, VT, 0, j0, S, ii, r0)
        # The rest is the moments of the weights w s_t, laid out as those of w.
        add_moments(WS, n, Z, nb, VT, j0, ii, S, g0 + 1, r0 + p, WZ)


@njit(inline="always", fastmath=FASTMATH)
def local_basis(Z, nb, d, n):
    """Form the products of degree 2 (``z_a z_b``, ``a <= b``) and 3 into ``Z[d:nb]``.

    The degree-3 products ``z_a z_b z_c`` (``a <= b <= c``) follow the
    pairs in that order, each formed from its pair; they are reached only
    when ``nb`` counts them (the bias correction's fit of a local
    quadratic's degree plus one).
    """
    r = d
    for a in range(d):
        za = Z[a]
        for b in range(a, d):
            if r < nb:
                zb = Z[b]
                zr = Z[r]
                for jj in range(n):
                    zr[jj] = za[jj] * zb[jj]
            r += 1
    if r >= nb:
        return
    pair = d
    for a in range(d):
        for b in range(a, d):
            zp = Z[pair]
            for c in range(b, d):
                zc = Z[c]
                zr = Z[r]
                for jj in range(n):
                    zr[jj] = zp[jj] * zc[jj]
                r += 1
            pair += 1


@njit(inline="always", fastmath=FASTMATH)
def weigh_by_polynomial(row, n, Z, nb, coef, i, PV):
    """Multiply the weights ``row[:n]`` by ``coef[i] . phi(z)``, key by key.

    ``Z[:nb]`` holds the basis beyond the constant (products formed by
    :func:`local_basis`), ``PV`` is scratch of one tile. The weights become
    those of the equivalent kernel of a local polynomial whose solve gave
    ``coef[i]`` (``SMOOTHER`` absorb strategy).
    """
    c0 = like(row, coef[i, 0])
    for jj in range(n):
        PV[jj] = c0
    for a in range(nb):
        ca = like(row, coef[i, a + 1])
        za = Z[a]
        for jj in range(n):
            PV[jj] += ca * za[jj]
    for jj in range(n):
        row[jj] *= PV[jj]


@njit(inline="always", fastmath=FASTMATH)
def add_meat(row, n, Z, nb, VS, j0, ii, S, o_meat, WS, WZ):
    """Add ``sum_j w_j**2 sigma2_j phi phi^T`` for each row ``sigma2`` of ``VS``.

    The middle of the sandwich ``G^-1 (sum_j w_j**2 sigma2_j phi phi^T) G^-1``
    of the standard errors: its columns have power 2 in the layout, so
    the running maximum's rescale multiplies them by the square of the
    weights' factor. ``row`` holds the tile's weights ``exp(s - max)``,
    ``Z`` the basis (products formed). Row ``o`` of ``VS`` fills the whole
    upper triangle (``(0, 0)`` first, then as :func:`add_moments` lays out
    the rest) at ``o_meat + o T``.
    """
    P = nb + 1
    T = P * (P + 1) // 2
    none = VS[0:0]
    for o in range(VS.shape[0]):
        vs = VS[o, j0:j0 + n]
        total = like(row, 0.0)
        for jj in range(n):
            x = row[jj] * row[jj] * vs[jj]
            WS[jj] = x
            total += x
        g0 = o_meat + o * T
        S[ii, g0] += total
        add_moments(WS, n, Z, nb, none, j0, ii, S, g0 + 1, g0, WZ)


@njit(inline="always", fastmath=FASTMATH)
def add_moments(row, n, Z, nb, VT, j0, ii, S, o_mom, o_cross, WZ):
    """Add the moments of a tile of weights ``row`` beyond the normaliser and values.

    ``Z[:nb]`` holds the basis beyond the constant (:func:`local_score`'s
    offsets, and :func:`local_basis`'s products for degree 2). Adds
    ``G[0, 1:]`` at ``o_mom``, the rest of the upper triangle of ``G``
    after it, and ``R[1:]`` at ``o_cross``. ``WZ`` is scratch of one tile.
    """
    p = VT.shape[0]
    k = o_mom + nb
    for a in range(nb):
        za = Z[a]
        # One pass forms w z_a and adds G[0, a], G[a, a] and the first
        # output's cross moment: each extra pass over the tile costs about
        # as much as the score, so fusing them is most of this function's
        # speed for the common small degree and feature counts.
        total = like(row, 0.0)
        gaa = like(row, 0.0)
        if p > 0:
            v0 = VT[0, j0:j0 + n]
            c0 = like(row, 0.0)
            for jj in range(n):
                x = row[jj] * za[jj]
                WZ[jj] = x
                total += x
                gaa += x * za[jj]
                c0 += x * v0[jj]
            S[ii, o_cross + a * p] += c0
        else:
            for jj in range(n):
                x = row[jj] * za[jj]
                WZ[jj] = x
                total += x
                gaa += x * za[jj]
        S[ii, o_mom + a] += total
        S[ii, k] += gaa
        k += 1
        for b in range(a + 1, nb):
            zb = Z[b]
            g = like(row, 0.0)
            for jj in range(n):
                g += WZ[jj] * zb[jj]
            S[ii, k] += g
            k += 1
        add_weighted(WZ, n, VT, 1, j0, S, ii, o_cross + a * p)

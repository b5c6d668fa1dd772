"""The noise of the targets, as the standard errors of a smoother need it.

A kernel or local polynomial estimate is linear in the targets,
``f(x) = sum_j l_j(x) y_j``, so its variance given the inputs is
``sum_j l_j(x)**2 sigma_j**2`` with ``sigma_j**2`` the variance of the
noise of ``y_j``. The moments pass accumulates that sum in one sweep
(``key_std`` of :func:`nwattn.ops.local_polynomial_state`); this module
estimates the ``sigma_j`` it is given, by the variance estimators nprobust
names [1]_:

* ``"nn"``: from each point's nearest neighbours in the inputs,
  ``sqrt(J / (J + 1)) (y_j - mean of the J nearest targets)``, which needs
  no fit and is unbiased where the regression function is smooth at the
  scale of the neighbours (nprobust's default, ``J = 3``);
* ``"hc0"`` to ``"hc3"``: from the residuals ``e_j = y_j - f(x_j)`` of the
  fit at the training points, as is (hc0), times
  ``sqrt(n / (n - nu))`` with ``nu`` the trace of the smoother (hc1), or
  divided by ``sqrt(1 - L_jj)`` (hc2) or by ``1 - L_jj`` (hc3), ``L_jj``
  the leverage of point ``j`` in its own fit: the heteroskedasticity-
  consistent family of linear regression carried over to smoothers.

nprobust forms its ``hc`` residuals from the local fit at each evaluation
point, and matches its nearest neighbours among the points inside each
evaluation point's window; here both are properties of the training point
alone, computed once, so that one pass serves every query. The two agree
exactly for ``"nn"`` wherever an evaluation point's window holds all the
data (kernels of unbounded support), and differ only through the few
points nearest to a compact window's edges otherwise.

References
----------
.. [1] S. Calonico, M. D. Cattaneo and M. H. Farrell, "nprobust:
   Nonparametric kernel-based estimation and robust bias-corrected
   inference", Journal of Statistical Software 91(8), 2019, 1-33.
"""

import math

import numpy as np
from numba import njit

from .kernels import log_weight

__all__ = ["VCE_NAMES", "MULTIPLIERS", "nn_residuals", "residual_scales",
           "nn_window_correction", "wild_multipliers"]

#: The wild bootstrap's multiplier distributions.
MULTIPLIERS = ("mammen", "rademacher")

#: Keys per block of multipliers: each block has its own stream, so that
#: any range of keys draws the same numbers whatever the chunks it is in.
MULTIPLIER_BLOCK = 4096

#: The variance estimators, in nprobust's names.
VCE_NAMES = ("nn", "hc0", "hc1", "hc2", "hc3")


def nn_residuals(X, y, matches=3):
    """Nearest-neighbour residuals of every training point.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        Training points, in the units the neighbours are measured in
        (divide by the bandwidth first when the features differ in scale).
    y : array_like of shape (n_samples,) or (n_samples, n_outputs)
        Targets.
    matches : int, default=3
        Number ``J`` of neighbours.

    Returns
    -------
    ndarray of shape (n_samples, n_outputs)
        ``sqrt(J_j / (J_j + 1)) (y_j - mean of its neighbours' targets)``;
        ``J_j`` may exceed ``matches`` where distances tie.

    Notes
    -----
    With one feature the neighbours are chosen exactly as nprobust's
    ``lprobust`` chooses them: points at the same abscissa first, then the
    nearer side, whole groups of tied abscissas at a time, until at least
    ``matches`` others are taken. With several features they are the
    ``matches`` nearest others in Euclidean distance (scikit-learn's
    :class:`~sklearn.neighbors.KDTree`), ties broken by the tree.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.uncertainty import nn_residuals
    >>> x = np.arange(6.0)[:, None]
    >>> # a line leaves nothing where the neighbours surround the point evenly
    >>> nn_residuals(x, 2.0 * x[:, 0]).round(3)[:, 0]
    array([-3.464, -1.155,  0.   ,  0.   ,  1.155,  3.464])
    """
    from ._validation import check_float_array

    X = check_float_array(X, "X", dtype=np.float64)
    Y = check_float_array(y, "y", allow_1d=True, dtype=np.float64)
    Y = Y.reshape(Y.shape[0], -1)
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have one row per point of X ({X.shape[0]}), got {Y.shape[0]}")
    if isinstance(matches, bool) or not isinstance(matches, (int, np.integer)) or matches < 1:
        raise ValueError(f"matches must be a positive integer, got {matches!r}")
    n = X.shape[0]
    if n < 2:
        raise ValueError("nn_residuals needs at least 2 points")
    if X.shape[1] == 1:
        order = np.argsort(X[:, 0], kind="stable")
        xs = X[order, 0]
        res = np.empty_like(Y)
        res[order] = _sorted_nn_residuals(xs, Y[order], int(matches))
        return res
    from sklearn.neighbors import KDTree

    k = min(int(matches) + 1, n)
    _, idx = KDTree(X).query(X, k=k)
    out = np.empty_like(Y)
    for i in range(n):
        # The point itself is among its own nearest (distance 0) unless a
        # duplicate came first: drop one occurrence of it, or the farthest.
        row = idx[i]
        others = row[row != i] if np.any(row == i) else row[:-1]
        others = others[:k - 1]
        J = others.shape[0]
        out[i] = math.sqrt(J / (J + 1.0)) * (Y[i] - Y[others].mean(axis=0))
    return out


@njit(cache=True)
def _tie_groups(x):
    """``(dups, before)`` of sorted ``x``: the size of each point's group of equal
    abscissas, and how many of the group come before it."""
    n = x.shape[0]
    dups = np.empty(n, dtype=np.int64)
    before = np.empty(n, dtype=np.int64)
    i = 0
    while i < n:
        j = i
        while j + 1 < n and x[j + 1] == x[i]:
            j += 1
        for k in range(i, j + 1):
            dups[k] = j - i + 1
            before[k] = k - i
        i = j + 1
    return dups, before


@njit(cache=True)
def _match(x, dups, before, pos, lo, hi, matches):
    """nprobust's neighbours of ``pos`` among the sorted points ``lo:hi``.

    Returns ``(left, right)``: the matched points are ``pos - left`` to
    ``pos + right``, ``pos`` excluded; points at the same abscissa first,
    then the nearer side, whole groups of ties at a time (both sides at an
    equal distance), until at least ``matches`` others (or all of them).
    """
    left = before[pos]
    right = dups[pos] - before[pos] - 1
    target = min(matches, hi - lo - 1)
    while left + right < target:
        a = pos - left - 1
        b = pos + right + 1
        if a < lo:
            right += dups[b]
        elif b >= hi:
            left += dups[a]
        else:
            dl = x[pos] - x[a]
            dr = x[b] - x[pos]
            if dl > dr:
                right += dups[b]
            elif dl < dr:
                left += dups[a]
            else:
                right += dups[b]
                left += dups[a]
    return left, right


@njit(cache=True)
def _residual(Y, pos, left, right, c):
    """``sqrt(J / (J + 1)) (y_pos - mean of the matched)`` for output ``c`` (0 without any)."""
    J = left + right
    if J == 0:
        return 0.0
    s = 0.0
    for k in range(pos - left, pos + right + 1):
        s += Y[k, c]
    s -= Y[pos, c]
    return math.sqrt(J / (J + 1.0)) * (Y[pos, c] - s / J)


@njit(cache=True)
def _sorted_nn_residuals(x, Y, matches):
    """nprobust's matching on sorted abscissas ``x`` over all the points."""
    n = x.shape[0]
    dups, before = _tie_groups(x)
    out = np.zeros((n, Y.shape[1]))
    for pos in range(n):
        left, right = _match(x, dups, before, pos, 0, n, matches)
        for c in range(Y.shape[1]):
            out[pos, c] = _residual(Y, pos, left, right, c)
    return out


@njit(cache=True)
def _window_residuals(x, Y, q, radius, code, matches, count_only, out_i, out_j, out_r):
    """Points whose neighbours inside a query's window differ from their global ones.

    For each query ``q[i]`` the window is the sorted points with a positive
    weight ``K(((x - q) / radius)**2)``; a point whose global matches reach
    outside it is matched again inside it. Returns the number of such
    (query, point) pairs; unless ``count_only``, writes them and the
    window's residuals to ``out_i``, ``out_j``, ``out_r``.
    """
    n = x.shape[0]
    dups, before = _tie_groups(x)
    gl = np.empty(n, dtype=np.int64)
    gr = np.empty(n, dtype=np.int64)
    for pos in range(n):
        gl[pos], gr[pos] = _match(x, dups, before, pos, 0, n, matches)
    reach_l = gl.max()
    reach_r = gr.max()
    k = 0
    for i in range(q.shape[0]):
        lo = np.searchsorted(x, q[i] - radius[i], side="left")
        hi = np.searchsorted(x, q[i] + radius[i], side="right")
        while lo < hi and log_weight(code, ((x[lo] - q[i]) / radius[i]) ** 2) == -math.inf:
            lo += 1
        while hi > lo and log_weight(code, ((x[hi - 1] - q[i]) / radius[i]) ** 2) == -math.inf:
            hi -= 1
        if hi - lo == n:
            continue
        for pos in range(lo, hi):
            if pos >= lo + reach_l and pos < hi - reach_r:
                continue
            if pos - gl[pos] >= lo and pos + gr[pos] < hi:
                continue
            if not count_only:
                left, right = _match(x, dups, before, pos, lo, hi, matches)
                out_i[k] = i
                out_j[k] = pos
                for c in range(Y.shape[1]):
                    out_r[k, c] = _residual(Y, pos, left, right, c)
            k += 1
    return k


def nn_window_correction(state, Q, X, y, kernel, bandwidth, *, query_scale=None,
                         key_weight=None, matches=3):
    """Match each point's neighbours inside each query's window, as nprobust does.

    ``state`` is a one-feature state of :func:`nwattn.ops.local_polynomial_state`
    computed with ``key_std = abs(nn_residuals(X, y, matches))``. nprobust's
    ``lprobust`` matches the neighbours of a point among the points of
    positive weight for the evaluation point at hand; for a compact kernel
    whose window cuts the data, a point near the window's edges then has
    other neighbours, and another residual, than over all the points. This
    replaces, in the sandwich of every query, the contribution of each such
    point by its window's residual, so that the standard errors equal
    nprobust's. Kernels of unbounded support keep every point in every
    window: the state is returned unchanged.

    Parameters
    ----------
    state : PoolState
        With the sandwich (``key_std``), one feature, merged over all keys.
    Q, X, y, kernel, bandwidth, query_scale, key_weight
        Those of the state.
    matches : int, default=3
        Those of the residuals.

    Returns
    -------
    PoolState
        A corrected copy.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import local_polynomial_state
    >>> from nwattn.state import solve_local
    >>> from nwattn.uncertainty import nn_residuals, nn_window_correction
    >>> x = np.linspace(0, 1, 21)[:, None]
    >>> y = np.sin(5 * x[:, 0])
    >>> s = np.abs(nn_residuals(x, y))
    >>> st = local_polynomial_state([[0.5]], x, y, "epanechnikov", 0.12, key_std=s)
    >>> fixed = nn_window_correction(st, [[0.5]], x, y, "epanechnikov", 0.12)
    >>> bool(solve_local(fixed).se[0, 0] != solve_local(st).se[0, 0])
    True
    """
    from ._validation import check_bandwidth, check_float_array
    from .kernels import get_kernel
    from .state import _check_state

    _check_state(state, "state")
    kern = get_kernel(kernel)
    Q = check_float_array(Q, "Q", dtype=np.float64)
    X = check_float_array(X, "X", dtype=np.float64)
    if X.shape[1] != 1 or Q.shape[1] != 1:
        raise ValueError("nn_window_correction is defined for one feature")
    if state.local is None or "meat" not in state.layout:
        raise ValueError("state must hold the standard errors' sandwich (key_std)")
    if not kern.is_compact:
        return state
    Y = np.asarray(y, dtype=np.float64).reshape(X.shape[0], -1)
    h = float(check_bandwidth(bandwidth, 1, np.float64)[0])
    factor = np.ones(Q.shape[0]) if query_scale is None else np.asarray(query_scale, np.float64)
    radius = h * factor
    order = np.argsort(X[:, 0], kind="stable")
    xs, Ys = X[order, 0], Y[order]
    empty_i = np.empty(0, np.int64)
    count = _window_residuals(xs, Ys, Q[:, 0], radius, kern.code, int(matches), True,
                              empty_i, empty_i, np.empty((0, Y.shape[1])))
    out = state.copy()
    if count == 0:
        return out
    pi = np.empty(count, np.int64)
    pj = np.empty(count, np.int64)
    pr = np.empty((count, Y.shape[1]))
    _window_residuals(xs, Ys, Q[:, 0], radius, kern.code, int(matches), False, pi, pj, pr)
    r_global = _sorted_nn_residuals(xs, Ys, int(matches))[pj]
    z = (xs[pj] - Q[pi, 0]) / radius[pi]
    logc = np.zeros(count) if key_weight is None else np.log(
        np.asarray(key_weight, np.float64)[order][pj])
    logk = np.array([log_weight(kern.code, u * u) for u in z])
    w2 = np.exp(2.0 * (logc + logk - state.max[pi].astype(np.float64)))
    delta = w2[:, None] * (pr ** 2 - r_global ** 2)  # (count, r)
    P = state.local.degree + 1
    iu = np.triu_indices(P)
    powers = z[:, None] ** (iu[0] + iu[1])[None, :]  # (count, T)
    cols = state.layout.columns("meat")
    meat = out.packed[:, cols].astype(np.float64).reshape(Q.shape[0], -1, iu[0].size)
    np.add.at(meat, pi, delta[:, :, None] * powers[:, None, :])
    out.packed[:, cols] = meat.reshape(Q.shape[0], -1)
    return out


#: Leverages within this of 1 count as 1 (see :func:`residual_scales`).
_LEVERAGE_ROUNDING = math.sqrt(np.finfo(np.float64).eps)


def residual_scales(vce, residuals, leverage=None):
    """Noise scales ``sigma_j`` from the residuals of a fit at the training points.

    Parameters
    ----------
    vce : {"hc0", "hc1", "hc2", "hc3"}
        Variance estimator (see the module's description).
    residuals : ndarray of shape (n_samples, n_outputs)
        ``y_j - f(x_j)``, the fit at the training points including
        themselves.
    leverage : ndarray of shape (n_samples,), default=None
        ``L_jj``, each point's weight in its own fit; needed by hc1 (their
        sum is the smoother's degrees of freedom), hc2 and hc3.

    Returns
    -------
    ndarray of shape (n_samples, n_outputs)
        Non-negative noise scales (0 where a residual is not finite, or a
        leverage reaches 1, to within ``sqrt(eps)``: a point fitted by
        itself alone says nothing of its noise).

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.uncertainty import residual_scales
    >>> e = np.array([[0.5], [-1.0], [0.2], [0.1]])
    >>> residual_scales("hc3", e, leverage=np.array([0.5, 0.2, 0.2, 0.1])).round(3)[:, 0]
    array([1.   , 1.25 , 0.25 , 0.111])
    """
    if vce not in VCE_NAMES[1:]:
        raise ValueError(f"vce must be one of {VCE_NAMES[1:]} for residual_scales, got {vce!r}")
    E = np.abs(np.asarray(residuals, dtype=np.float64))
    E = E.reshape(E.shape[0], -1)
    if vce == "hc0":
        out = E
    else:
        if leverage is None:
            raise ValueError(f"vce={vce!r} needs the leverages")
        L = np.asarray(leverage, dtype=np.float64)
        if L.shape != (E.shape[0],):
            raise ValueError(f"leverage must have shape ({E.shape[0]},), got {L.shape}")
        L = np.where(np.isfinite(L), np.clip(L, 0.0, 1.0), 1.0)
        if vce == "hc1":
            n = E.shape[0]
            dof = n - L.sum()
            out = E * math.sqrt(n / dof) if dof > 0 else np.zeros_like(E)
        else:
            room = 1.0 - L
            # A point (nearly) alone in its own fit has the residual (1 - L)
            # times its noise; within sqrt(eps) of L = 1 that is below the
            # fit's own rounding, and the ratio would be rounding noise.
            room = np.where(room > _LEVERAGE_ROUNDING, room, 0.0)
            with np.errstate(divide="ignore"):
                factor = 1.0 / np.sqrt(room) if vce == "hc2" else 1.0 / room
            out = E * np.where(room > 0, factor, 0.0)[:, None]
    return np.where(np.isfinite(out), out, 0.0)


def wild_multipliers(seed, start, stop, n_bootstrap, kind="mammen"):
    """The wild bootstrap's multipliers of keys ``start:stop``, shape (stop - start, B).

    Keys are grouped in fixed blocks of :data:`MULTIPLIER_BLOCK`, each drawn
    from its own stream ``numpy.random.default_rng([seed, block])``: the
    multipliers of a key depend on the seed and its index only, so a
    bootstrap over keys split into chunks (Dask) draws the same numbers as
    one over all the keys in memory, whatever the chunks.

    Parameters
    ----------
    seed : int
        Non-negative seed.
    start, stop : int
        The keys' range.
    n_bootstrap : int
        Number of replications ``B``.
    kind : {"mammen", "rademacher"}, default="mammen"
        Mammen's two-point distribution, ``-(sqrt5 - 1)/2`` with probability
        ``(sqrt5 + 1)/(2 sqrt5)`` and ``(sqrt5 + 1)/2`` otherwise (mean 0,
        variance 1, third moment 1), or random signs.

    Returns
    -------
    ndarray of shape (stop - start, n_bootstrap)

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.uncertainty import wild_multipliers
    >>> whole = wild_multipliers(7, 0, 10000, 5)
    >>> parts = np.vstack([wild_multipliers(7, 0, 3000, 5), wild_multipliers(7, 3000, 10000, 5)])
    >>> bool(np.array_equal(whole, parts))
    True
    >>> bool(abs(whole.mean()) < 0.05 and abs(whole.var() - 1) < 0.05)
    True
    """
    if kind not in MULTIPLIERS:
        raise ValueError(f"multiplier must be one of {MULTIPLIERS}, got {kind!r}")
    B = int(n_bootstrap)
    out = np.empty((stop - start, B))
    if stop <= start:
        return out
    size = MULTIPLIER_BLOCK
    s5 = math.sqrt(5.0)
    for block in range(start // size, (stop - 1) // size + 1):
        b0 = block * size
        rng = np.random.default_rng([int(seed), block])
        u = rng.random((size, B))
        if kind == "rademacher":
            draws = np.where(u < 0.5, -1.0, 1.0)
        else:
            draws = np.where(u < (s5 + 1.0) / (2.0 * s5), -(s5 - 1.0) / 2.0, (s5 + 1.0) / 2.0)
        lo, hi = max(start, b0), min(stop, b0 + size)
        out[lo - start:hi - start] = draws[lo - b0:hi - b0]
    return out

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

__all__ = ["VCE_NAMES", "nn_residuals", "residual_scales"]

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
def _sorted_nn_residuals(x, Y, matches):
    """nprobust's matching on sorted abscissas ``x`` (ties grouped)."""
    n = x.shape[0]
    p = Y.shape[1]
    # dups[i]: points at x[i]; before[i]: how many of them come before i.
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
    out = np.zeros((n, p))
    target = min(matches, n - 1)
    for pos in range(n):
        left = before[pos]
        right = dups[pos] - before[pos] - 1
        while left + right < target:
            lo = pos - left - 1
            hi = pos + right + 1
            if lo < 0:
                right += dups[hi]
            elif hi >= n:
                left += dups[lo]
            else:
                dl = x[pos] - x[lo]
                dr = x[hi] - x[pos]
                if dl > dr:
                    right += dups[hi]
                elif dl < dr:
                    left += dups[lo]
                else:
                    right += dups[hi]
                    left += dups[lo]
        J = left + right
        for c in range(p):
            s = 0.0
            for k in range(pos - left, pos + right + 1):
                s += Y[k, c]
            s -= Y[pos, c]
            out[pos, c] = math.sqrt(J / (J + 1.0)) * (Y[pos, c] - s / J)
    return out


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
        leverage reaches 1: a point fitted by itself alone says nothing of
        its noise).

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
            with np.errstate(divide="ignore"):
                factor = 1.0 / np.sqrt(room) if vce == "hc2" else 1.0 / room
            out = E * np.where(room > 0, factor, 0.0)[:, None]
    return np.where(np.isfinite(out), out, 0.0)

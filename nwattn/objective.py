"""The learned scores' leave-one-out objective and its gradient (layer 3).

Training an attention score minimises ``L = sum_i u_i ||f_i - y_i||^2`` over
the leave-one-out predictions ``f_i = sum_{j != i} alpha_ij y_j``. With
``g_i = dL/df_i`` the gradient with respect to the scores is
``dL/ds_ij = alpha_ij (y_j - f_i) . g_i`` (DESIGN section 2). It is never
stored: the forward pass is the engine's pooling with a learned score (a
state per query), and the backward sweeps of the backend recompute the
weights tile by tile. Memory is O(n (r + p)) on every device.

The same driver serves every backend: the forward pass and the backward
sweeps are backend operations; two CPU-only shortcuts for the rbf score
with every point a query (both backward sweeps fused, and every unordered
pair scored once, see :mod:`nwattn._cpu.pairs`) are capabilities the
driver uses when the backend has them.
"""

import math

import numpy as np

from ._backend import backend_for
from .kernels import ADDITIVE_KIND, LEARNED_KINDS, RBF_KIND

__all__ = ["loo_loss_grad", "LEARNED_KINDS"]

#: Pair-path normaliser below which a point counts as isolated: the unshifted
#: sums of the pair path then lose too much to underflow (see nwattn._cpu.pairs).
PAIR_NORM_FLOOR = math.exp(-600.0)


def loo_loss_grad(kind, Pq, Pk, wv, Y, logw, query_weight, scale=1.0, *, pairs_once=True,
                  device="cpu"):
    """Leave-one-out squared error and its gradient, in O(n (r + p)) memory.

    The queries are the first ``b = len(Pq)`` training points, the keys all
    ``n`` of them, so query ``i`` leaves out key ``i``.

    Parameters
    ----------
    kind : int
        A learned score kind of :mod:`nwattn.kernels` (``RBF_KIND``,
        ``SCALED_DOT_KIND``, ``ADDITIVE_KIND``; ``LEARNED_KINDS`` maps
        the names to them).
    Pq : ndarray of shape (b, r), float64
        Projected queries (``z`` for rbf, ``W_q x`` otherwise).
    Pk : ndarray of shape (n, r), float64
        Projected keys (``z`` for rbf, ``W_k x`` otherwise).
    wv : ndarray of shape (r,)
        The additive score's vector (any array otherwise).
    Y : ndarray of shape (n, p)
        Values of the keys; the first ``b`` rows are the queries' targets.
    logw : ndarray of shape (n,)
        Log key weights (``-inf`` for a zero weight).
    query_weight : ndarray of shape (b,)
        Weight of each query's squared error; the loss is
        ``sum_i u_i ||f_i - y_i||^2``.
    scale : float, default=1.0
        The scaled-dot score's factor.
    pairs_once : bool, default=True
        For the rbf score with every point a query, score each unordered
        pair once unless a point is too isolated for it; ``False`` runs the
        general sweeps (tests and benchmarks compare the two).
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where the sweeps run.

    Returns
    -------
    loss : float
    dPq : ndarray of shape (b, r)
    dPk : ndarray of shape (n, r)
        Gradients with respect to the projected queries and keys. For the
        rbf score with every point a query (``Pq`` equal to ``Pk``) the two
        are the same variables and the whole gradient is in ``dPk``.
    dwv : ndarray of shape (r,)
    pred : ndarray of shape (b, p)
        The leave-one-out predictions; NaN for a query with no other key of
        positive weight (it contributes nothing to the loss).

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.kernels import RBF_KIND
    >>> from nwattn.objective import loo_loss_grad
    >>> Z = np.array([[0.0], [1.0], [3.0]])
    >>> Y = np.array([[0.0], [1.0], [2.0]])
    >>> loss, _, dZ, _, pred = loo_loss_grad(RBF_KIND, Z, Z, np.zeros(1), Y, np.zeros(3),
    ...                                      np.ones(3))
    >>> round(loss, 4), pred.ravel().round(3).tolist()
    (2.5972, [1.018, 0.365, 0.924])
    """
    be, _ = backend_for(device, Pq, Pk, need="learned_pool")
    b, r = Pq.shape
    n, p = Y.shape
    center = Y.mean(axis=0)
    Yc = Y - center
    symmetric = kind == RBF_KIND and b == n and np.array_equal(Pq, Pk)
    if pairs_once and symmetric and {"pair_sums", "pair_gradient"} <= be.capabilities:
        fast = _pairs_objective(be, np.ascontiguousarray(Pk), Yc, logw, query_weight)
        if fast is not None:
            loss, dPk, f, ok = fast
            return loss, np.zeros((b, r)), dPk, np.zeros(r), _finish_predictions(f, center, ok)
    YT = np.ascontiguousarray(Yc.T)
    PkT = np.ascontiguousarray(Pk.T)
    smax, packed = be.learned_pool(kind, Pq, PkT, wv, scale, logw, YT, np.empty((0, n)), 0)
    loss, lse, neg_lse, f, g, e, ok = _loo_residuals(smax, packed[:, 0], packed[:, 1:], Yc,
                                                     query_weight)
    if symmetric and "symmetric_grad" in be.capabilities:
        dPk = be.symmetric_grad(Pk, logw, lse, neg_lse, g, Yc, e)
        return loss, np.zeros((b, r)), dPk, np.zeros(r), _finish_predictions(f, center, ok)
    dPq, dwv = be.grad_pass(kind, Pq, PkT, wv, scale, logw, lse, g, YT, e, np.zeros(n),
                            kind == ADDITIVE_KIND)
    dPk, _ = be.grad_pass(kind, Pk, np.ascontiguousarray(Pq.T), wv, scale, neg_lse, -logw, Yc,
                          np.ascontiguousarray(g.T), np.zeros(n), e, False)
    if symmetric:
        dPk = dPk + dPq
        dPq = np.zeros((b, r))
    return loss, dPq, dPk, dwv, _finish_predictions(f, center, ok)


def _pairs_objective(be, Z, Yc, logw, query_weight):
    """The rbf objective with every point a query, each pair scored once.

    Returns ``(loss, dZ, f, ok)`` (``f`` the centred predictions), or
    ``None`` when a point is too isolated for the unshifted sums. The
    algebra of the vectors ``A`` and ``B`` is derived in
    :mod:`nwattn._cpu.pairs`.
    """
    n, p = Yc.shape
    top = float(np.max(logw))
    w = np.exp(logw - top)
    V = np.empty((n, p + 1))
    V[:, 0] = w
    V[:, 1:] = w[:, None] * Yc
    sums = be.pair_sums(Z, V)
    norm = sums[:, 0]
    if norm.min() < PAIR_NORM_FLOOR:
        return None
    loss, _, _, f, g, e, ok = _loo_residuals(np.full(n, top), norm, sums[:, 1:], Yc,
                                             query_weight)
    inv = 1.0 / norm
    wy, gn, en = V[:, 1:], g * inv[:, None], e * inv
    A = np.concatenate([wy, w[:, None], gn, en[:, None]], axis=1)
    B = np.concatenate([gn, -en[:, None], wy, -w[:, None]], axis=1)
    return loss, be.pair_gradient(Z, A, B), f, ok


def _loo_residuals(smax, snorm, sacc, Yc, query_weight):
    """The loss, and what the backward sweeps need, from the forward states.

    ``Yc`` are the centred values of all keys (the first ``b`` rows the
    queries' targets).

    Returns
    -------
    loss : float
    lse, neg_lse : ndarray (b,)
        Each query's log-normaliser, and its negation; ``-inf`` both for a
        query with no other key of positive weight.
    f, g : ndarray (b, p)
        Centred leave-one-out predictions and ``dL/df``.
    e : ndarray (b,)
        ``f . g`` per query.
    ok : ndarray (b,), bool
        Queries with a prediction.
    """
    b = smax.shape[0]
    ok = snorm > 0
    with np.errstate(divide="ignore"):
        lse = np.where(ok, smax + np.log(np.where(ok, snorm, 1.0)), -np.inf)
    f = sacc / np.where(ok, snorm, 1.0)[:, None]
    resid = np.where(ok[:, None], f - Yc[:b], 0.0)
    u = np.where(ok, query_weight, 0.0)
    loss = float(np.sum(u[:, None] * resid * resid))
    g = 2.0 * u[:, None] * resid
    e = np.einsum("ij,ij->i", f, g)
    e[~ok] = 0.0
    neg_lse = np.where(ok, -lse, -np.inf)
    return loss, lse, neg_lse, f, g, e, ok


def _finish_predictions(f, center, ok):
    """Leave-one-out predictions in the values' units; NaN where there is none."""
    pred = f + center
    pred[~ok] = np.nan
    return pred

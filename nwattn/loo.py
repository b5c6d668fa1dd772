"""Leave-one-out cross-validation of Nadaraya-Watson regression.

This module holds the one definition of the leave-one-out score that every
part of the package uses: :func:`nwattn.bandwidth.loo_cv_score`,
:func:`nwattn.bandwidth.select_bandwidth`,
:class:`~nwattn.NadarayaWatsonRegressor` with ``bandwidth="cv"``, and their
twins on Dask arrays in :mod:`nwattn.dask`. A bandwidth ``h`` scores

    CV(h) = sum_i c_i ||y_i - yhat_{-i}(x_i)||**2 / sum_i c_i,

where

* ``yhat_{-i}(x_i)`` is the Nadaraya-Watson prediction at ``x_i`` from every
  training point but ``i`` itself, the keys weighted by their sample weights;
* the squared error of a point is **summed over the outputs** (a two-output
  problem scores the sum of the two one-output scores);
* ``c_i`` is the sample weight of point ``i`` (1 without weights): it
  weights the point as a key of the other points' fits and its own error in
  the mean;
* a point with no other point inside its kernel's support (only compact
  kernels leave one) is predicted by the *fallback*: ``"mean"``, the
  weighted mean of the other targets,
  ``sum_{j != i} c_j y_j / sum_{j != i} c_j``; or ``"nearest"``, the target
  of the nearest other point of positive weight, distances scaled by the
  bandwidth, the lowest index among equally near ones
  (:func:`nearest_neighbor`). A fallback prediction counts as constant in
  the bandwidth: it adds nothing to the gradient.

The building blocks work on any block of the training points, with the keys
whole or split into chunks, which is how :mod:`nwattn.dask` computes exactly
the in-memory score on a cluster:

* the predictions come from the pooling state of
  :func:`nwattn.ops.attention_pool_state` with ``exclude_self=True``; the
  predictions together with their derivatives with respect to the
  log-bandwidths come from :func:`slope_state`, whose states of disjoint key
  chunks combine with :func:`nwattn.ops.merge_states` like any other;
* :func:`loo_error` turns the state of a block of points into the block's
  share of the score (and of its gradient), applying the fallback; the
  ``"mean"`` fallback needs only the totals of :func:`loo_totals`, the
  ``"nearest"`` one the targets found by :func:`nearest_neighbor`.

:class:`LooProblem` puts them together for a training set in memory.

Examples
--------
The score of two blocks of points, each scored against all the keys, adds up
to the score of the whole set:

>>> import numpy as np
>>> from nwattn.loo import LooProblem, loo_error, loo_totals, slope_state
>>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
>>> y = np.array([0.0, 1.0, 4.0, 9.0])
>>> totals = loo_totals(y)
>>> parts = [loo_error(slope_state(X[rows], X, y, "gaussian", 1.0, query_offset=rows.start),
...                    y[rows], totals=totals)
...          for rows in (slice(0, 1), slice(1, 4))]
>>> whole = LooProblem(X, y).value_and_gradient(1.0)
>>> bool(np.isclose(sum(p.sse for p in parts) / totals.weight_sum, whole[0]))
True
>>> bool(np.allclose(sum(p.gradient for p in parts) / totals.weight_sum, whole[1]))
True
"""

from typing import NamedTuple

import numpy as np

from . import _validation as _v
from ._device import resolve_device
from ._layout import slopes_layout
from .kernels import get_kernel
from .ops import _value_exponent, attention_pool_state, local_polynomial_state, loo_slopes_state
from .pruning import KeyTreeCache
from .state import PoolState, finalize_slopes, finalize_state, solve_local

__all__ = [
    "FALLBACKS",
    "check_fallback",
    "Nearest",
    "nearest_neighbor",
    "LooTotals",
    "loo_totals",
    "slope_state",
    "LooError",
    "loo_error",
    "LooProblem",
    "target_exponent",
    "in_target_units",
]

#: Leave-one-out predictions of a point with an empty neighbourhood.
FALLBACKS = ("mean", "nearest")

#: Relative margin added to the distance of the nearest candidate found by
#: the tree, so that every key at the same distance is re-examined whatever
#: the rounding of the tree's own distance computation.
_TIE_MARGIN = 1e-9


def _as_2d(y):
    """Targets as (n, n_outputs), also for n = 0 (a block of no rows)."""
    return y[:, None] if y.ndim == 1 else y


def target_exponent(amax):
    """Power of two by which targets of largest magnitude ``amax`` are scored.

    The score sums squared errors: from about ``1e144`` their squares (and
    sums of them) overflow float64, below about ``1e-144`` they underflow.
    Targets divided by ``2**e`` give squared errors divided by ``4**e``
    exactly (a power of two only moves the exponent), so the score, its
    gradient and the bandwidth that minimises it are those of the targets
    themselves, the score in units of ``4**e``.

    Parameters
    ----------
    amax : float
        Largest magnitude of the targets.

    Returns
    -------
    int
        0 while squared errors fit float64 comfortably; otherwise the
        exponent that brings the largest magnitude to [0.5, 1).

    Examples
    --------
    >>> from nwattn.loo import target_exponent
    >>> target_exponent(3.0), target_exponent(1e300), target_exponent(1e-300)
    (0, 997, -996)
    """
    return _value_exponent(float(amax), np.float64, True)


def in_target_units(score, exponent):
    """A score of targets divided by ``2**exponent``, in the targets' own squared units.

    Multiplies by ``4**exponent`` exactly; a result beyond float64's range
    rounds to ``inf`` (or to 0), as any product would, without a warning.

    Parameters
    ----------
    score : float or ndarray
        A score (or its gradient) of the scaled targets.
    exponent : int
        The targets' :func:`target_exponent`.

    Returns
    -------
    float or ndarray

    Examples
    --------
    >>> from nwattn.loo import in_target_units
    >>> in_target_units(0.75, 2), in_target_units(0.75, 0)
    (12.0, 0.75)
    """
    if not exponent:
        return score
    with np.errstate(over="ignore", under="ignore"):
        out = np.ldexp(score, 2 * int(exponent))
    return float(out) if np.ndim(out) == 0 else out


def check_fallback(fallback):
    """``fallback`` if it names a leave-one-out fallback (:data:`FALLBACKS`), else a ValueError.

    Examples
    --------
    >>> from nwattn.loo import check_fallback
    >>> check_fallback("mean")
    'mean'
    """
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    return fallback


# ------------------------------------------------------ nearest neighbour


class Nearest(NamedTuple):
    """Result of :func:`nearest_neighbor`.

    Attributes
    ----------
    index : ndarray of shape (n_queries,)
        Index of the nearest key of each query; -1 where no key qualifies.
    sq_distance : ndarray of shape (n_queries,)
        Its squared distance, features divided by the bandwidth; ``inf``
        where no key qualifies.
    """

    index: np.ndarray
    sq_distance: np.ndarray


def nearest_neighbor(queries, keys, bandwidth, *, key_weight=None, exclude=None):
    """Nearest key of each query, distances scaled by the bandwidth.

    The nearest-neighbour rule of the ``"nearest"`` fallback, everywhere in
    the package: the key minimising
    ``sum_t ((q_t - k_t) / h_t)**2`` among the keys of positive weight, the
    lowest index among equally near keys. A k-d tree proposes the
    candidates; the winner is decided on the squared distances computed
    above, so the choice does not depend on how the keys are split: the
    nearest key of a union of key chunks is the nearest of the chunks'
    nearest keys, the earlier chunk winning a tie.

    Parameters
    ----------
    queries : array_like of shape (n_queries, n_features)
        Points to find a neighbour for.
    keys : array_like of shape (n_keys, n_features)
        Candidate neighbours.
    bandwidth : float or array_like of shape (n_features,)
        Positive scalar or one positive value per feature.
    key_weight : array_like of shape (n_keys,), default=None
        Weights of the keys; keys of zero weight are never chosen.
    exclude : array_like of int of shape (n_queries,), default=None
        For each query, the index of a key it may not choose (its own row
        for a leave-one-out fallback); an index outside ``[0, n_keys)``
        excludes nothing.

    Returns
    -------
    Nearest
        ``(index, sq_distance)``; -1 and ``inf`` for a query with no
        eligible key.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.loo import nearest_neighbor
    >>> X = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    >>> # the second feature counts 100 times more once divided by its bandwidth
    >>> nearest_neighbor([[2.9, 1.9]], X, [10.0, 0.1]).index
    array([2])
    >>> nearest_neighbor(X, X, 1.0, exclude=[0, 1, 2]).index  # leave one out
    array([2, 0, 0])
    """
    from sklearn.neighbors import KDTree

    Q = _v.check_float_array(queries, "queries", dtype=np.float64, min_rows=0)
    K = _v.check_float_array(keys, "keys", dtype=np.float64, min_rows=0)
    _v.check_matching_shapes(Q, K)
    h = _v.check_bandwidth(bandwidth, Q.shape[1], np.float64)
    n = Q.shape[0]
    index = np.full(n, -1, dtype=np.intp)
    sq = np.full(n, np.inf)
    usable = np.arange(K.shape[0])
    if key_weight is not None:
        w = _v.check_float_array(key_weight, "key_weight", ndim=1, dtype=np.float64, min_rows=0)
        if w.shape[0] != K.shape[0]:
            raise ValueError(
                f"key_weight must have one entry per key ({K.shape[0]}), got {w.shape[0]}"
            )
        usable = np.flatnonzero(w > 0)
    if exclude is not None:
        exclude = np.asarray(exclude)
        if exclude.shape != (n,) or exclude.dtype.kind not in "iu":
            raise ValueError(
                f"exclude must hold one integer index per query ({n}), got an array of "
                f"shape {exclude.shape} and dtype {exclude.dtype}"
            )
    if n == 0 or usable.size == 0:
        return Nearest(index, sq)
    Qs = Q / h
    tree = KDTree(K[usable] / h)
    # With a key to exclude, the second nearest stands in when the first is it.
    dist, found = tree.query(Qs, k=min(1 if exclude is None else 2, usable.size))
    if exclude is not None:
        dist = np.where(usable[found] == exclude[:, None], np.inf, dist)
    best = dist.min(axis=1)
    rows = np.flatnonzero(np.isfinite(best))
    if rows.size == 0:
        return Nearest(index, sq)
    radius = np.nextafter(best[rows] * (1.0 + _TIE_MARGIN), np.inf)
    near = tree.query_radius(Qs[rows], r=radius)
    counts = np.array([c.shape[0] for c in near])
    cand = usable[np.concatenate(near)]
    row = np.repeat(rows, counts)
    d2 = np.sum((Qs[row] - K[cand] / h) ** 2, axis=1)
    if exclude is not None:
        d2 = np.where(cand == exclude[row], np.inf, d2)
    # By query, then squared distance, then index: the first of each query wins.
    order = np.lexsort((cand, d2, row))
    first = order[np.unique(row[order], return_index=True)[1]]
    ok = np.isfinite(d2[first])
    index[row[first[ok]]] = cand[first[ok]]
    sq[row[first[ok]]] = d2[first[ok]]
    return Nearest(index, sq)


# ------------------------------------------------------------ the "mean" fallback


class LooTotals(NamedTuple):
    """What the ``"mean"`` fallback of a point needs to know of the whole training set.

    Attributes
    ----------
    target_sum : ndarray of shape (n_outputs,)
        ``sum_j c_j y_j`` over every training point.
    weight_sum : float
        ``sum_j c_j``.
    rest_target_sum, rest_weight_sum : ndarray of shape (n_outputs,) and float, optional
        The same sums without the heaviest point, added up on their own.
        Taking a point's weight and weighted target away from the totals
        loses everything when that point outweighs all the others by more
        than the float64 precision (``wsum - c_i`` rounds to 0); only a point
        of more than half the total weight can do so, and there is at most
        one. Its mean without itself is then these sums' ratio. None: the
        subtraction for every point.
    """

    target_sum: np.ndarray
    weight_sum: float
    rest_target_sum: np.ndarray = None
    rest_weight_sum: float = None

    def means_without(self, y, c):
        """The weighted mean of the targets without each of the points ``(y, c)``."""
        y = _as_2d(np.asarray(y, dtype=np.float64))
        c = np.asarray(c, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (self.target_sum - c[:, None] * y) / (self.weight_sum - c)[:, None]
            if self.rest_weight_sum is not None:
                heavy = c > 0.5 * self.weight_sum
                out[heavy] = self.rest_target_sum / self.rest_weight_sum
        return out


def loo_totals(y, sample_weight=None):
    """The totals of the ``"mean"`` fallback, from the targets of the whole training set.

    Parameters
    ----------
    y : array_like of shape (n_samples,) or (n_samples, n_outputs)
        Every training target.
    sample_weight : array_like of shape (n_samples,), default=None
        Their weights.

    Returns
    -------
    LooTotals

    Examples
    --------
    >>> from nwattn.loo import loo_totals
    >>> t = loo_totals([1.0, 2.0, 6.0], sample_weight=[1.0, 1.0, 2.0])
    >>> t.target_sum, t.weight_sum
    (array([15.]), 4.0)
    >>> t.means_without([6.0], [2.0])  # the mean of the other two
    array([[1.5]])
    """
    Y = _v.check_float_array(y, "y", dtype=np.float64, allow_1d=True)
    Y = _as_2d(Y)
    return _totals(Y, _weights(sample_weight, Y.shape[0]))


def _totals(Y, c):
    """:class:`LooTotals` of targets ``Y`` (2-D) and weights ``c``, with the heaviest's rest."""
    if c.shape[0] == 0:
        return LooTotals(c @ Y, 0.0)
    top = int(np.argmax(c))
    rest = np.ones(c.shape[0], dtype=bool)
    rest[top] = False
    return LooTotals(c @ Y, float(c.sum()), c[rest] @ Y[rest], float(c[rest].sum()))


def _weights(sample_weight, n, name="sample_weight"):
    """The weights ``c`` of ``n`` points as a float64 array (ones without weights)."""
    if sample_weight is None:
        return np.ones(n)
    c = _v.check_float_array(sample_weight, name, ndim=1, dtype=np.float64, min_rows=0)
    if c.shape[0] != n:
        raise ValueError(f"{name} must have one entry per point ({n}), got {c.shape[0]}")
    if np.any(c < 0):
        raise ValueError(f"{name} must be non-negative")
    return c


# ---------------------------------------------------------- slope states


def _empty_slopes(n, d, p, center):
    """The slopes state of ``n`` points that met no key."""
    layout = slopes_layout(p, d)
    return PoolState(np.full(n, -np.inf), np.zeros((n, layout.width)), layout, center,
                     False)


def slope_state(X, K, y, kernel="gaussian", bandwidth=1.0, *, key_weight=None,
                query_offset=0, key_offset=0, center=None, device="cpu", discrete=None,
                algorithm="auto"):
    """Leave-one-out accumulators of the points ``X`` over the keys ``K``, with their slopes.

    The points and the keys are rows of one training set: point number
    ``query_offset + i`` skips key number ``key_offset + j`` when the two
    numbers are equal. Split the keys into disjoint chunks, compute a state
    per chunk and merge them with :func:`nwattn.ops.merge_states`: the result is
    the state over all keys, up to rounding. Computed in float64 on the
    CPU (the slope pass has no GPU kernel).

    Parameters
    ----------
    X : array_like of shape (n_points, n_features)
        The points scored (a block of the training set, or all of it).
    K : array_like of shape (n_keys, n_features)
        The keys (a chunk of the training set, or all of it).
    y : array_like of shape (n_keys,) or (n_keys, n_outputs)
        Targets of the keys.
    kernel : str, default="gaussian"
        A name of :mod:`nwattn.kernels`.
    bandwidth : float or array_like of shape (n_features,), default=1.0
        Positive scalar or one positive value per feature.
    key_weight : array_like of shape (n_keys,), default=None
        Non-negative sample weights of the keys; a chunk whose weights are
        all zero gives an empty state.
    query_offset, key_offset : int, default=0
        Index in the training set of the first point and of the first key.
    center : array_like of shape (n_outputs,), default=None
        Centre subtracted from the values; by default their mean. States of
        different centres still merge exactly.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        The slopes have no GPU kernel: ``"cuda"`` raises a ValueError.
    discrete : nwattn.discrete.DiscreteFeatures, default=None
        Discrete columns (see :func:`nwattn.ops.loo_slopes_state`): the
        bandwidth then has one entry per column, and the slopes cover the
        continuous ``log h_t`` and then the discrete ``lam_f``.
    algorithm : {"auto", "brute", "tree"} or nwattn.pruning.KeyTree, default="auto"
        Which key tiles are visited (see :func:`nwattn.ops.attention_pool`).

    Returns
    -------
    PoolState
        With the layout of the leave-one-out slopes
        (:func:`nwattn.ops.loo_slopes_state`, which this calls for
        non-empty blocks); merge states with :func:`nwattn.ops.merge_states`.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.loo import slope_state
    >>> from nwattn.ops import merge_states
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = np.array([0.0, 1.0, 4.0, 9.0])
    >>> whole = slope_state(X, X, y, "epanechnikov", 1.5)
    >>> halves = merge_states(slope_state(X, X[:2], y[:2], "epanechnikov", 1.5),
    ...                       slope_state(X, X[2:], y[2:], "epanechnikov", 1.5,
    ...                                   key_offset=2))
    >>> bool(np.allclose(halves.acc / halves.norm[:, None] + halves.center,
    ...                  whole.acc / whole.norm[:, None] + whole.center))
    True
    """
    kern = get_kernel(kernel)
    if discrete is not None:
        discrete.codes(X, "X")
        discrete.codes(K, "K", keys=True)
    Xa = _v.check_float_array(X, "X", dtype=np.float64, min_rows=0)
    Ka = _v.check_float_array(K, "K", dtype=np.float64, min_rows=0)
    Y = _v.check_float_array(y, "y", dtype=np.float64, allow_1d=True, min_rows=0)
    _v.check_matching_shapes(Xa, Ka, Y)
    Y = _as_2d(Y)
    n, d = Xa.shape
    p = Y.shape[1]
    if discrete is None:
        h = _v.check_bandwidth(bandwidth, d, np.float64)
    else:
        discrete.split_bandwidth(bandwidth, d)
        h = np.asarray(bandwidth, dtype=np.float64)
    for name, off in (("query_offset", query_offset), ("key_offset", key_offset)):
        if not isinstance(off, (int, np.integer)) or isinstance(off, bool) or off < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {off!r}")
    if center is None:
        c = Y.mean(axis=0) if Y.shape[0] else np.zeros(p)
    else:
        c = _v.check_float_array(center, "center", ndim=1, dtype=np.float64)
        if c.shape[0] != p:
            raise ValueError(f"center must have {p} entries, got {c.shape[0]}")
    w = None
    if key_weight is not None:
        w = _weights(key_weight, Ka.shape[0], "key_weight")
        if not np.any(w > 0):  # a chunk of zero-weight keys adds nothing
            return _empty_slopes(n, d, p, c)
    if n == 0 or Ka.shape[0] == 0:  # an empty block of a chunked array
        return _empty_slopes(n, d, p, c)
    return loo_slopes_state(Xa, Ka, Y, kern, h, key_weight=w, query_offset=int(query_offset),
                            key_offset=int(key_offset), center=c, device=device,
                            discrete=discrete, algorithm=algorithm)


# ----------------------------------------------------------- the score


class LooError(NamedTuple):
    """A block's share of the leave-one-out score (see :func:`loo_error`).

    Attributes
    ----------
    sse : float
        ``sum_i c_i ||y_i - yhat_{-i}(x_i)||**2`` over the block's points.
    gradient : ndarray of shape (n_features,) or None
        ``d sse / d log h_t``, when the state carries the slopes (with
        discrete features: the continuous ``log h_t``, then
        ``d sse / d lam_f`` of the discrete features).
    """

    sse: float
    gradient: object


def loo_error(state, y, *, sample_weight=None, fallback="mean", totals=None, nearest=None):
    """A block of points' share of the leave-one-out score, fallback applied.

    The score of the training set is the sum of the blocks' ``sse`` divided
    by the sum of all the sample weights, and its gradient with respect to
    the log-bandwidths the sum of their ``gradient`` divided likewise.

    Parameters
    ----------
    state : PoolState
        The leave-one-out state of the block's points over all the keys:
        from :func:`nwattn.ops.attention_pool_state` with
        ``exclude_self=True`` (score only) or from :func:`slope_state`
        (score and gradient: the layout of the slopes).
    y : array_like of shape (n_points,) or (n_points, n_outputs)
        The block's own targets.
    sample_weight : array_like of shape (n_points,), default=None
        The block's own sample weights.
    fallback : {"mean", "nearest"}, default="mean"
        Prediction of a point with no other point in its neighbourhood.
    totals : LooTotals, default=None
        Totals of the whole training set (:func:`loo_totals`), for the
        ``"mean"`` fallback; by default those of the block, right when the
        block is the whole set.
    nearest : callable, default=None
        For the ``"nearest"`` fallback: maps the indices (within the block)
        of the points with an empty neighbourhood to the targets of their
        nearest other points, an array of shape (len(idx), n_outputs)
        (see :func:`nearest_neighbor`). Called only when some point is
        empty, and then required.

    Returns
    -------
    LooError
        ``(sse, gradient)``; ``gradient`` is None for a pooling state.

    Examples
    --------
    Under the boxcar kernel the last point has no neighbour within 1.5:

    >>> import numpy as np
    >>> from nwattn.loo import loo_error, nearest_neighbor
    >>> from nwattn.ops import attention_pool_state
    >>> X = np.array([[0.0], [1.0], [2.0], [9.0]])
    >>> y = np.array([0.0, 1.0, 2.0, 3.0])
    >>> st = attention_pool_state(X, X, y, "boxcar", 1.5, exclude_self=True)
    >>> loo_error(st, y).sse  # 1 + 0 + 1 + (3 - 1)**2, the mean of the others being 1
    6.0
    >>> near = lambda idx: y[nearest_neighbor(X[idx], X, 1.5, exclude=idx).index, None]
    >>> loo_error(st, y, fallback="nearest", nearest=near).sse  # 1 + 0 + 1 + (3 - 2)**2
    3.0
    """
    check_fallback(fallback)
    if not isinstance(state, PoolState):
        raise TypeError(f"state must be a PoolState, got {type(state).__name__}")
    if "B" in state.layout:
        _, pred, dpred = finalize_slopes(state)
        empty = state.empty
    elif state.local is not None and state.local.degree > 0:
        # A singular leave-one-out design is refitted at a lower degree; only
        # a point with no other point in its neighbourhood takes the fallback.
        fit = solve_local(state, lower_degree=True)
        pred, dpred = fit.pred, fit.dpred
        empty = fit.degree < 0
    else:
        pred = finalize_state(state, warn=False).reshape(state.acc.shape)
        dpred = None
        empty = state.empty
    Y = _v.check_float_array(y, "y", dtype=np.float64, allow_1d=True, min_rows=0)
    Y = _as_2d(Y)
    if Y.shape != pred.shape:
        raise ValueError(f"y must have the shape of the state's predictions {pred.shape}, "
                         f"got {Y.shape}")
    c = _weights(sample_weight, Y.shape[0])
    if empty.any():
        idx = np.flatnonzero(empty)
        if fallback == "mean":
            if totals is None:
                totals = _totals(Y, c)
            fill = totals.means_without(Y[idx], c[idx])
        else:
            if nearest is None:
                raise ValueError("nearest is required for fallback='nearest' when some point "
                                 "has an empty neighbourhood")
            fill = _as_2d(np.asarray(nearest(idx), dtype=np.float64))
        pred = pred.astype(np.float64, copy=True)
        pred[idx] = fill
    r = Y - pred
    sse = float(c @ np.sum(r * r, axis=1))
    if dpred is None:
        return LooError(sse, None)
    # A fallback prediction does not move with the bandwidth: finalize_slopes
    # leaves its derivative at zero.
    return LooError(sse, -2.0 * np.einsum("i,ic,itc->t", c, r, dpred))


# ------------------------------------------------------- in memory


class LooProblem:
    """Leave-one-out cross-validation of a training set in memory, for many bandwidths.

    The data are validated and summarised once; each evaluation is one fused
    pass over the pairs (two numbers per point and per feature for the
    gradient), nothing of size n x n being stored. The object offers what
    :func:`nwattn.bandwidth.search` asks of a problem.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        Training points.
    y : array_like of shape (n_samples,) or (n_samples, n_outputs)
        Targets.
    kernel : str, default="gaussian"
        A name of :mod:`nwattn.kernels`.
    sample_weight : array_like of shape (n_samples,), default=None
        Non-negative weights; at least two must be positive.
    fallback : {"mean", "nearest"}, default="mean"
        Prediction of a point with no other point in its neighbourhood.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to compute the scores. The gradient has no GPU kernel: it
        runs on the CPU for ``"auto"`` and is refused for ``"cuda"``.
    degree : {0, 1, 2}, default=0
        Degree of the local polynomial whose leave-one-out predictions are
        scored; 0 is Nadaraya-Watson. For degree 1 and 2 a point whose
        leave-one-out design is singular is fitted at the highest degree
        that is not (the fallback applies when no other point is in its
        neighbourhood); the gradient comes from the derivatives of the
        moments, accumulated in the same pass.
    discrete : nwattn.discrete.DiscreteFeatures, default=None
        Discrete columns of ``X``. A bandwidth then has one entry per
        column (``lam`` at the discrete ones), the gradient is
        ``d score / d log h_t`` at a continuous column and
        ``d score / d lam_f`` at a discrete one, and the ``"nearest"``
        fallback measures distances over the continuous columns. Where a
        ``lam_f`` is 0 the gradient is taken at
        :data:`nwattn.discrete.GRADIENT_FLOOR` times its largest value
        (the one-sided derivative at 0, to that precision).
    algorithm : {"auto", "brute", "tree"} or nwattn.pruning.KeyTree, default="auto"
        Which key tiles each pass visits (see
        :func:`nwattn.ops.attention_pool`); the training points are
        ordered once, at the first pass that prunes, and ``"auto"``
        decides at each bandwidth.

    Attributes
    ----------
    kernel : nwattn.kernels.Kernel
        The kernel.
    has_gradient : bool
        Whether :meth:`value_and_gradient` is available (always).
    X : ndarray of shape (n_samples, n_features)
        The training points, float64.
    Y : ndarray of shape (n_samples, n_outputs)
        The targets, float64, always 2-D.
    sample_weight : ndarray of shape (n_samples,) or None
        The weights.
    n_samples : int
        Number of training points.
    spread : ndarray of shape (n_continuous,)
        Weighted standard deviation of each continuous feature.
    mean_square : ndarray of shape (n_continuous,)
        Weighted mean of the square of each continuous feature.
    target_variance : float
        Weighted variance of the targets, summed over the outputs, in
        units of ``4**target_exponent``.
    target_exponent : int
        The targets are held divided by ``2**target_exponent``
        (:func:`target_exponent`: 0 unless their squares would overflow or
        underflow float64), and :meth:`value` and
        :meth:`value_and_gradient` score them so: multiply by
        ``4**target_exponent`` (``numpy.ldexp(score, 2 * target_exponent)``)
        for the targets' own units.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.loo import LooProblem
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = np.array([0.0, 1.0, 4.0, 9.0])
    >>> problem = LooProblem(X, y)
    >>> round(problem.value(1.0), 4)
    9.3083
    >>> score, grad = problem.value_and_gradient([1.0])
    >>> grad.shape
    (1,)
    """

    def __init__(self, X, y, kernel="gaussian", *, sample_weight=None, fallback="mean",
                 device="cpu", degree=0, discrete=None, algorithm="auto"):
        resolve_device(device)
        self.device = device
        self.degree = _v.check_degree(degree)
        self.has_gradient = True
        self.kernel = get_kernel(kernel)
        self.discrete = discrete
        if discrete is not None:
            discrete.codes(X, "X", keys=True)
        self.X = _v.check_float_array(X, "X", dtype=np.float64)
        d = self.X.shape[1]
        self.continuous = (np.arange(d) if discrete is None
                           else discrete.continuous_columns(d))
        Xc = self.X[:, self.continuous]
        y = _v.check_float_array(y, "y", dtype=np.float64, allow_1d=True)
        if y.shape[0] != self.X.shape[0]:
            raise ValueError(
                f"X and y must have the same number of rows, got {self.X.shape[0]} and "
                f"{y.shape[0]}"
            )
        self.Y = _as_2d(y)
        self.target_exponent = target_exponent(np.abs(self.Y).max())
        if self.target_exponent:
            self.Y = np.ldexp(self.Y, -self.target_exponent)
        n = self.X.shape[0]
        self._keys = KeyTreeCache(algorithm, Xc, device)
        self._algorithm = algorithm
        # Divided by their largest: the score depends on their ratios only,
        # and the sums below neither overflow nor underflow.
        self.sample_weight = (None if sample_weight is None
                              else _v.unit_weights(_v.check_key_weight(
                                  sample_weight, n, np.float64, name="sample_weight")))
        c = _weights(self.sample_weight, n)
        if np.count_nonzero(c > 0) < 2:
            raise ValueError(
                "leave-one-out cross-validation needs at least 2 samples with positive weight, "
                f"got n_samples={np.count_nonzero(c > 0)}"
            )
        self.fallback = check_fallback(fallback)
        self._c = c
        self.totals = _totals(self.Y, c)
        self.center = np.average(self.Y, axis=0, weights=c)
        self.n_samples = n
        w = self.sample_weight
        if w is None:
            self.spread = Xc.std(axis=0)
        else:
            mean = np.average(Xc, axis=0, weights=w)
            self.spread = np.sqrt(np.average((Xc - mean) ** 2, axis=0, weights=w))
        self.mean_square = np.average(Xc * Xc, axis=0, weights=w)
        self.target_variance = float(np.sum(np.average((self.Y - self.center) ** 2, axis=0,
                                                       weights=c)))

    def subproblem(self, n_rows, seed=0):
        """The same score on a random subset of the points of positive weight.

        A large search starts from the bandwidth selected on a subset
        (:func:`nwattn.bandwidth.search`), whose passes cost a small
        fraction of the whole set's.

        Parameters
        ----------
        n_rows : int
            Number of points drawn, without replacement, among those of
            positive weight (all of them if there are fewer).
        seed : int, default=0
            Seed of the draw: the same subset for the same problem.

        Returns
        -------
        LooProblem
            Same kernel, degree, fallback, device and algorithm (a
            :class:`~nwattn.pruning.KeyTree` of the whole set becomes
            ``"auto"``), the points in their original order.

        Examples
        --------
        >>> import numpy as np
        >>> from nwattn.loo import LooProblem
        >>> X = np.linspace(0.0, 1.0, 100)[:, None]
        >>> LooProblem(X, np.sin(6 * X[:, 0])).subproblem(20).n_samples
        20
        """
        rows = np.flatnonzero(self._c > 0)
        if n_rows < rows.shape[0]:
            rows = np.sort(np.random.default_rng(seed).choice(rows, n_rows, replace=False))
        algorithm = self._algorithm if isinstance(self._algorithm, str) else "auto"
        return LooProblem(self.X[rows], self.Y[rows], self.kernel.name,
                          sample_weight=None if self.sample_weight is None
                          else self.sample_weight[rows],
                          fallback=self.fallback, device=self.device, degree=self.degree,
                          discrete=self.discrete, algorithm=algorithm)

    def _bandwidth(self, bandwidth):
        """The bandwidth validated, and its continuous part."""
        if self.discrete is None:
            h = _v.check_bandwidth(bandwidth, self.X.shape[1], np.float64)
            return h, h
        h, _ = self.discrete.split_bandwidth(bandwidth, self.X.shape[1])
        return np.asarray(bandwidth, dtype=np.float64), h

    def _nearest(self, h):
        """The ``"nearest"`` fallback at bandwidth ``h``: block indices -> targets."""
        X = self.X[:, self.continuous]
        if X.shape[1] == 0:  # no continuous feature: every point is as near
            X, h = np.zeros((self.X.shape[0], 1)), 1.0
        return lambda idx: self.Y[nearest_neighbor(X[idx], X, h,
                                                   key_weight=self.sample_weight,
                                                   exclude=idx).index]

    def _error(self, state, h):
        return loo_error(state, self.Y, sample_weight=self.sample_weight,
                         fallback=self.fallback, totals=self.totals, nearest=self._nearest(h))

    def value(self, bandwidth):
        """The leave-one-out score at ``bandwidth`` (one fused pass).

        In units of ``4**target_exponent`` (the targets' own units unless
        their squares are beyond float64).

        Parameters
        ----------
        bandwidth : float or array_like of shape (n_features,)
            Positive scalar or one positive value per feature.

        Returns
        -------
        float
        """
        h, hc = self._bandwidth(bandwidth)
        algorithm = self._keys.for_call(self.kernel, hc)
        if self.degree:
            state = local_polynomial_state(self.X, self.X, self.Y, self.kernel, h,
                                           degree=self.degree, key_weight=self.sample_weight,
                                           exclude_self=True, center=self.center,
                                           device=self.device, discrete=self.discrete,
                                           algorithm=algorithm)
        else:
            state = attention_pool_state(self.X, self.X, self.Y, self.kernel, h,
                                         key_weight=self.sample_weight, exclude_self=True,
                                         center=self.center, device=self.device,
                                         discrete=self.discrete, algorithm=algorithm)
        return self._error(state, hc).sse / self.totals.weight_sum

    def value_and_gradient(self, bandwidth):
        """The score and its gradient with respect to ``log h_t``, one entry per feature.

        Parameters
        ----------
        bandwidth : float or array_like of shape (n_features,)
            Positive scalar or one positive value per feature.

        Returns
        -------
        score : float
        gradient : ndarray of shape (n_features,)
            ``d score / d log h_t``; ``d score / d lam_f`` at a discrete
            feature.
        """
        h, hc = self._bandwidth(bandwidth)
        if self.discrete is not None:
            from .discrete import GRADIENT_FLOOR

            cols = self.discrete.columns
            h = h.copy()
            h[cols] = np.maximum(h[cols], GRADIENT_FLOOR * self.discrete.max_lambdas)
        algorithm = self._keys.for_call(self.kernel, hc)
        if self.degree:
            state = local_polynomial_state(self.X, self.X, self.Y, self.kernel, h,
                                           degree=self.degree, key_weight=self.sample_weight,
                                           exclude_self=True, slopes=True, center=self.center,
                                           device=self.device, discrete=self.discrete,
                                           algorithm=algorithm)
            err = self._error(state, hc)
            return err.sse / self.totals.weight_sum, self._in_columns(err.gradient)
        state = slope_state(self.X, self.X, self.Y, self.kernel, h,
                            key_weight=self.sample_weight, center=self.center,
                            device=self.device, discrete=self.discrete, algorithm=algorithm)
        err = self._error(state, hc)
        return err.sse / self.totals.weight_sum, self._in_columns(err.gradient)

    def _in_columns(self, gradient):
        """The gradient (continuous parameters first, then discrete) in column order."""
        g = gradient / self.totals.weight_sum
        if self.discrete is None:
            return g
        out = np.empty(self.X.shape[1])
        nc = self.continuous.shape[0]
        out[self.continuous] = g[:nc]
        out[self.discrete.columns] = g[nc:]
        return out

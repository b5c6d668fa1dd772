"""Local polynomial regression on Dask arrays: local linear, local quadratic, loess.

The distributed twin of :func:`nwattn.ops.local_polynomial`, built like
attention pooling (:mod:`nwattn.dask.pool`): every (query block, key chunk)
pair yields the query-centred moments of
:func:`nwattn.ops.local_polynomial_state`, packed in one array; the states
of a query block are merged exactly in the same tree as pooling states,
then one task per query block solves each query's small least-squares
problem (:func:`nwattn.ops.finalize_local`). Only states travel: the
Gram and cross moments of each query, however many keys a chunk holds.

The degree and the per-query bandwidths of a query block are the same in
every state of that block, so they do not travel with the packed states:
one small task per query block builds its
:class:`~nwattn.state.LocalInfo`, which the merges and the final solve
receive.

Nearest-neighbour bandwidths (``span``). Query ``q``'s radius is the
distance to its ``floor(span * n_keys)``-th nearest key among *all* keys
(:func:`nwattn.neighbors.span_radius`), and is computed exactly in one of
two ways, chosen by that count ``c``:

* ``c <= SHARDED_SPAN_NEIGHBORS`` (256): the keys stay sharded. Each
  (query block, key chunk) task sends, for each query, the squared
  distances to its ``c`` nearest keys of the chunk; the lists of a query
  block are merged in a tree (``split_every`` at a time) that keeps the
  ``c`` smallest, and the largest of those is the ``c``-th nearest over
  all keys.
* ``c > SHARDED_SPAN_NEIGHBORS``: those lists grow with the number of keys
  (loess's usual spans of 0.25 to 0.75 take a fixed fraction of them) and
  soon outweigh the keys themselves, ``n_queries x c`` numbers per key
  chunk against ``n_keys x n_features``; so the keys are brought together
  in one array, which must fit in a worker's memory, and one task per
  query block runs :func:`nwattn.neighbors.span_radius` on it.

Both give the radii of the in-memory computation (the second bit for bit,
the first up to the rounding of the distances).

Singular designs. A query whose neighbourhood holds too few distinct points
for the degree is NaN (or, with ``lower_degree=True``, fitted at a lower
degree), as in memory. The :class:`~nwattn.state.SingularDesignWarning`
is raised when the result is computed, by the task that solves the
query's block, and counts the queries of that block; on a distributed
cluster it lands in that worker's log, so count the NaNs of the result to
check from the client.
"""

import numpy as np

import dask
import dask.array as da

from .. import _validation as _v
from .. import neighbors
from .._layout import local_layout, pool_layout
from ..kernels import DISTANCE, get_kernel
from ..ops import local_polynomial_state
from ..state import LocalInfo, finalize_local
from ._inputs import (as_dask, blocks, check_algorithm, check_degree, check_device,
                      check_split_every, prepare, starts)
from .pool import chunk_weights, common_center, empty_packed, merge_tree, pack, unpack

__all__ = ["local_polynomial", "span_radius", "SHARDED_SPAN_NEIGHBORS"]

#: Largest neighbourhood size ``floor(span * n_keys)`` for which the radii of
#: ``span`` are found with the keys left sharded; above it the keys are
#: brought together (see the module's description).
SHARDED_SPAN_NEIGHBORS = 256

#: Squared distances one task of the sharded radius search holds at once.
_BLOCK_ENTRIES = 1 << 22


# ---------------------------------------------------------- loess radii


def _chunk_bounds(k):
    """Per-feature minimum and maximum of key chunk ``k``, as rows of a (2, d) array (one task).

    Computed here rather than by Dask's ``min`` and ``max``, which fail on
    chunks of no rows; such a chunk has the bounds ``(inf, -inf)``.
    """
    k = np.asarray(k, np.float64)
    if k.shape[0] == 0:
        return np.stack([np.full(k.shape[1], np.inf), np.full(k.shape[1], -np.inf)])
    return np.stack([k.min(axis=0), k.max(axis=0)])


def _merge_bounds(_, *parts):
    """Bounds of the union of disjoint key chunks (one task); NaN propagates."""
    parts = np.stack(parts)
    return np.stack([parts[:, 0].min(axis=0), parts[:, 1].max(axis=0)])


def _key_geometry(bounds, name):
    """Middle of the keys' bounding box and their extent around it (one task).

    The centring of :func:`nwattn.neighbors.span_radius`, from the keys'
    per-feature bounds: subtracting the middle rounds monotonically, so the
    largest centred magnitude is that of a bound.
    """
    kmin, kmax = bounds
    if not (np.all(np.isfinite(kmin)) and np.all(np.isfinite(kmax))):
        raise ValueError(f"{name} must be finite: it contains NaN or infinity")
    mid = kmin / 2 + kmax / 2
    extent = float(max(np.abs(kmin - mid).max(), np.abs(kmax - mid).max()))
    return mid, extent


def _span_candidates(q, k, geometry, *, count, name):
    """Squared distances from the queries of block ``q`` to their nearest keys of chunk ``k``.

    One task. Returns an array of shape (n_queries, min(count,
    n_keys_of_chunk)): for each query the smallest squared distances, in no
    particular order. ``name`` is the queries' argument, for the error
    about their values.
    """
    mid = geometry[0]
    Qc = np.asarray(q, np.float64) - mid
    if not np.all(np.isfinite(Qc)):
        raise ValueError(f"{name} must be finite: it contains NaN or infinity")
    Kc = np.asarray(k, np.float64) - mid
    keep = min(count, Kc.shape[0])
    out = np.empty((Qc.shape[0], keep))
    if keep == 0:
        return out
    rows = max(1, _BLOCK_ENTRIES // Kc.shape[0])
    for i0 in range(0, Qc.shape[0], rows):
        D = np.zeros((min(rows, Qc.shape[0] - i0), Kc.shape[0]))
        for t in range(Kc.shape[1]):
            D += (Kc[:, t] - Qc[i0:i0 + rows, t, None]) ** 2
        if keep < D.shape[1]:
            D = np.partition(D, keep - 1, axis=1)[:, :keep]
        out[i0:i0 + D.shape[0]] = D
    return out


def _merge_candidates(count, *parts):
    """The ``count`` smallest squared distances per query over disjoint key chunks (one task)."""
    both = np.concatenate(parts, axis=1)
    if both.shape[1] > count:
        both = np.partition(both, count - 1, axis=1)[:, :count]
    return both


def _radius_from_candidates(candidates, geometry, span):
    """A query block's radii from its ``count`` smallest squared distances overall (one task)."""
    d2 = candidates.max(axis=1) if candidates.shape[0] else np.empty(0)
    return neighbors.radius_from_sq_distance(d2, span, geometry[1])


def _radius_gathered(q, keys, span):
    """A query block's radii against all the keys, held in memory (one task)."""
    if q.shape[0] == 0:
        return np.empty(0)
    return neighbors.span_radius(q, keys, span)


def span_radii(Q, K, span, split_every, names=("Q", "K")):
    """Delayed loess radii of every block of queries over all keys (see the module's description).

    ``Q`` and ``K`` are Dask arrays with their features in one chunk;
    ``names`` are their arguments' names, for the errors about their values.
    """
    count = neighbors.span_neighbors(span, K.shape[0])
    q_blocks = blocks(Q)
    if count > SHARDED_SPAN_NEIGHBORS:
        keys = blocks(K.rechunk({0: -1}))[0]
        task = dask.delayed(_radius_gathered, pure=True)
        return [task(qb, keys, span) for qb in q_blocks]
    k_blocks = blocks(K)
    bounds = merge_tree([dask.delayed(_chunk_bounds, pure=True)(kb) for kb in k_blocks],
                        split_every, None, _merge_bounds)
    geometry = dask.delayed(_key_geometry, pure=True)(bounds, names[1])
    near = dask.delayed(_span_candidates, pure=True)
    finish = dask.delayed(_radius_from_candidates, pure=True)
    radii = []
    for qb in q_blocks:
        parts = [near(qb, kb, geometry, count=count, name=names[0]) for kb in k_blocks]
        radii.append(finish(merge_tree(parts, split_every, count, _merge_candidates),
                            geometry, span))
    return radii


def span_radius(queries, keys, span, *, split_every=None):
    """Radius of each query's loess neighbourhood, on Dask arrays.

    The distributed twin of :func:`nwattn.neighbors.span_radius`: the
    distance from each query to its ``floor(span * n_keys)``-th nearest
    key among all the keys, times ``sqrt(span)`` when ``span > 1``. How it
    is found depends on that count (see :mod:`nwattn.dask.local`); either
    way it equals the in-memory radius.

    Parameters
    ----------
    queries : dask.array.Array or array_like of shape (n_queries, n_features)
        Chunked along the rows.
    keys : dask.array.Array or array_like of shape (n_keys, n_features)
        Chunked along the rows.
    span : float
        Positive; the fraction of the keys in each neighbourhood.
    split_every : int, default=None
        Fan-in of the tree that merges the candidates of the key chunks; by
        default Dask's ``split_every`` setting, or 8.

    Returns
    -------
    dask.array.Array of shape (n_queries,)
        Lazy, float64, chunked like the rows of ``queries``.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from nwattn import neighbors
    >>> from nwattn.dask import span_radius
    >>> rng = np.random.default_rng(0)
    >>> X, Q = rng.uniform(size=(500, 2)), rng.uniform(size=(40, 2))
    >>> r = span_radius(da.from_array(Q, chunks=10), da.from_array(X, chunks=100), 0.1)
    >>> bool(np.allclose(r.compute(), neighbors.span_radius(Q, X, 0.1), rtol=1e-14, atol=0))
    True
    """
    split_every = check_split_every(split_every)
    Q = as_dask(queries, "queries").rechunk({1: -1})
    K = as_dask(keys, "keys").rechunk({1: -1})
    _v.check_matching_shapes(Q, K)
    radii = span_radii(Q, K, span, split_every, ("queries", "keys"))
    return da.concatenate([da.from_delayed(r, shape=(n,), dtype=np.float64)
                           for r, n in zip(radii, Q.chunks[0])])


# ---------------------------------------------------------- the moments


def _local_info(degree, bandwidth, scale, n):
    """The :class:`~nwattn.state.LocalInfo` of a block of ``n`` queries (one task).

    Built as :func:`nwattn.ops.local_polynomial_state` builds it: the
    bandwidth times each query's factor (its loess radius, or 1).
    """
    factor = np.ones(n) if scale is None else np.asarray(scale, np.float64)
    return LocalInfo(degree, bandwidth[None, :] * factor[:, None])


def _local_block(q, k, v, w, center, scale, q0, k0, s=None, *, kernel, bandwidth, degree,
                 exclude_self, dtype, device, algorithm):
    """Packed moments of query block ``q`` over key chunk ``k`` (one task).

    ``s``: the chunk's noise scales, for the standard errors' sandwich;
    ``algorithm``: the tiles of this chunk's keys to visit, ordered here.
    """
    n_meat = 0 if s is None else np.asarray(s).reshape(k.shape[0], -1).shape[1]
    width = local_layout(v.shape[1], q.shape[1], degree, n_meat=n_meat).width
    if q.shape[0] == 0 or k.shape[0] == 0:
        return empty_packed(q.shape[0], width, dtype)
    w, any_weight = chunk_weights(w)
    if not any_weight:
        return empty_packed(q.shape[0], width, dtype)
    state = local_polynomial_state(q, k, v, kernel, bandwidth, degree=degree, query_scale=scale,
                                   key_weight=w, exclude_self=exclude_self,
                                   query_offset=int(q0), key_offset=int(k0),
                                   center=np.asarray(center, dtype), device=device, key_std=s,
                                   algorithm=algorithm)
    return pack(state)


def _solve_block(packed, center, local, p, values_1d, return_gradient, lower_degree):
    """Predictions (and slopes) of one query block from its merged moments (one task).

    Warns, as :func:`nwattn.ops.local_polynomial` does, about the block's
    queries whose design is singular.
    """
    state = unpack(packed, p, np.asarray(center, packed.dtype), values_1d, local)
    return finalize_local(state, return_gradient=return_gradient, lower_degree=lower_degree)


def local_polynomial(Q, K, V, kernel="gaussian", bandwidth=1.0, *, degree=1, span=None,
                     key_weight=None, exclude_self=False, return_gradient=False,
                     lower_degree=False, split_every=None, device="cpu", algorithm="auto"):
    """Local polynomial regression (local linear, local quadratic, loess) on Dask arrays.

    The distributed twin of :func:`nwattn.ops.local_polynomial`, with the
    same arguments and results: ``Q``, ``K``, ``V`` and ``key_weight`` may
    each be a Dask array or an in-memory array. Queries are fitted block
    by block; keys and values split into chunks give each query block one
    state of moments per chunk, merged exactly, so the result equals the
    in-memory fit to rounding for any chunking.

    Parameters
    ----------
    Q : dask.array.Array or array_like of shape (n_queries, n_features)
        Queries, chunked along the rows (feature chunks are joined).
    K : dask.array.Array or array_like of shape (n_keys, n_features)
        Keys (the training points), chunked along the rows.
    V : dask.array.Array or array_like of shape (n_keys,) or (n_keys, n_outputs)
        Values (the targets); rechunked to the keys' row chunks.
    kernel : str, default="gaussian"
        A smoothing kernel of :mod:`nwattn.kernels`; loess uses
        ``"tricube"``.
    bandwidth : float or array_like of shape (n_features,), default=1.0
        Positive scalar or one positive value per feature. Not used with
        ``span``.
    degree : {0, 1, 2}, default=1
        Degree of the local polynomial; 0 is Nadaraya-Watson regression.
    span : float, default=None
        Nearest-neighbour bandwidths as loess defines them: query ``q``'s
        bandwidth is the distance to its ``floor(span * n_keys)``-th
        nearest key among all the keys, times ``sqrt(span)`` when
        ``span > 1`` (see :func:`span_radius` for how it is found on
        sharded keys).
    key_weight : dask.array.Array or array_like of shape (n_keys,), default=None
        Non-negative weights of the keys (sample weights). Weights that are
        all zero raise a ValueError when computed, as in memory.
    exclude_self : bool, default=False
        Leave-one-out: query ``i`` ignores key ``i`` (``Q`` must be ``K``;
        the two may be chunked differently).
    return_gradient : bool, default=False
        Also return the slopes at each query (degree 1 or 2).
    lower_degree : bool, default=False
        Fit a query whose local design is singular at the highest degree
        that is not, instead of returning NaN for it (both with a
        :class:`~nwattn.state.SingularDesignWarning` when computed).
    split_every : int, default=None
        How many partial states one merge task combines (the fan-in of the
        tree reduction); by default Dask's ``split_every`` setting, or 8.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where each task computes its moments, passed on to
        :func:`nwattn.ops.local_polynomial_state` on the worker that runs
        it; only the name is checked when the graph is built.
    algorithm : {"auto", "brute", "tree"}, default="auto"
        Which key tiles each task visits, as for
        :func:`nwattn.ops.attention_pool`, passed on to every (query block,
        key chunk) task: each chunk's keys are ordered and pruned on their
        own: the result is the in-memory one to rounding, whatever the
        chunking. ``"auto"`` decides for each task from its own chunk. A
        :class:`~nwattn.pruning.KeyTree` is refused (it orders a whole
        array of keys, not its chunks). The radii of ``span`` are not
        kernel passes and do not depend on it.

    Returns
    -------
    pred : dask.array.Array of shape (n_queries,) or (n_queries, n_outputs)
        Lazy, float64, chunked like the rows of ``Q``; the same number of
        dimensions as ``V``. NaN for a query whose design is singular (or
        that has no key in its kernel's support).
    gradient : dask.array.Array of shape (n_queries, n_features[, n_outputs])
        Only with ``return_gradient=True``; the last axis only when ``V``
        is 2-D.

    See Also
    --------
    nwattn.ops.local_polynomial : the in-memory computation.
    nwattn.dask.attention_pool : degree 0, with standard deviations.

    Notes
    -----
    Each query block is fitted against every key chunk once:
    ``n_query_blocks * n_key_chunks`` tasks plus the merges, and with
    ``span`` as many again for the radii. A state holds ``1 + P (P + 1) / 2
    + P n_outputs`` numbers per query, with ``P`` the size of the
    polynomial basis (``1 + d`` for degree 1, ``1 + d + d (d + 1) / 2``
    for degree 2). The values' mean is computed first (one pass over
    ``V``) and used as the common centre of every state.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from nwattn import ops
    >>> from nwattn.dask import local_polynomial
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(1000, 2))
    >>> y = np.sin(6 * X[:, 0]) + X[:, 1]
    >>> Q = rng.uniform(size=(300, 2))
    >>> dQ = da.from_array(Q, chunks=100)   # queries in 3 blocks
    >>> dX = da.from_array(X, chunks=300)   # keys in 4 chunks
    >>> dy = da.from_array(y, chunks=300)
    >>> pred, slope = local_polynomial(dQ, dX, dy, "tricube", span=0.2, degree=2,
    ...                                return_gradient=True)
    >>> pred
    dask.array<concatenate, shape=(300,), dtype=float64, chunksize=(100,), ...>
    >>> want = ops.local_polynomial(Q, X, y, "tricube", span=0.2, degree=2)
    >>> bool(np.allclose(pred.compute(), want, rtol=1e-10, atol=0))
    True
    """
    split_every = check_split_every(split_every)
    device = check_device(device)
    algorithm = check_algorithm(algorithm, None, device)
    degree = check_degree(degree)
    if return_gradient and degree < 1:
        raise ValueError("return_gradient=True needs degree 1 or 2")
    kern = get_kernel(kernel)
    if kern.family != DISTANCE:
        raise ValueError(f"kernel must be a smoothing kernel for a local polynomial, got the "
                         f"attention score {kern.name!r}")
    if span is not None:
        bandwidth = 1.0  # as in memory: the radii are the bandwidths
    Q, K, V2, W, values_1d, dtype = prepare(Q, K, V, kernel, bandwidth, key_weight,
                                             exclude_self)
    d, p = Q.shape[1], V2.shape[1]
    h = _v.check_bandwidth(bandwidth, d, np.float64)
    n_blocks = len(Q.chunks[0])
    scales = [None] * n_blocks if span is None else span_radii(Q, K, span, split_every)
    center = common_center(V2, W)

    q_blocks, k_blocks, v_blocks = blocks(Q), blocks(K), blocks(V2)
    w_blocks = [None] * len(k_blocks) if W is None else blocks(W)
    q_starts, k_starts = starts(Q.chunks[0]), starts(K.chunks[0])
    info = dask.delayed(_local_info, pure=True)
    block = dask.delayed(_local_block, pure=True)
    solve = dask.delayed(_solve_block, pure=True, nout=2 if return_gradient else None)
    options = dict(kernel=kernel, bandwidth=h, degree=degree, exclude_self=bool(exclude_self),
                   dtype=dtype, device=device, algorithm=algorithm)
    preds, grads = [], []
    for qb, q0, n_i, scale in zip(q_blocks, q_starts, Q.chunks[0], scales):
        local = info(degree, h, scale, n_i)
        parts = [block(qb, kb, vb, wb, center, scale, q0, k0, **options)
                 for kb, vb, wb, k0 in zip(k_blocks, v_blocks, w_blocks, k_starts)]
        state = merge_tree(parts, split_every, p, local=local)
        out = solve(state, center, local, p, values_1d, bool(return_gradient),
                    bool(lower_degree))
        pred_shape = (n_i,) if values_1d else (n_i, p)
        grad_shape = (n_i, d) if values_1d else (n_i, d, p)
        if return_gradient:
            preds.append(da.from_delayed(out[0], shape=pred_shape, dtype=np.float64))
            grads.append(da.from_delayed(out[1], shape=grad_shape, dtype=np.float64))
        else:
            preds.append(da.from_delayed(out, shape=pred_shape, dtype=np.float64))
    pred = da.concatenate(preds, axis=0)
    if return_gradient:
        return pred, da.concatenate(grads, axis=0)
    return pred


def _interval_fit(packed, center, local, p, bias_correction):
    """``(center, se, coef)`` of one query block from its merged moments (one task)."""
    from ..state import solve_bias_corrected, solve_local

    state = unpack(packed, p, np.asarray(center, packed.dtype), False, local)
    if bias_correction:
        fit = solve_bias_corrected(state)
        return fit.pred_bc, fit.se_rb, fit.coef
    fit = solve_local(state)
    return fit.pred, fit.se, fit.coef


def _boot_block(q, k, r, w, fit, scale, k0, *, seed, n_bootstrap, multiplier, kernel,
                bandwidth, degree, dtype, algorithm):
    """Packed smoother state of a query block's bootstrap columns over one key chunk (one task).

    The columns are the chunk's residuals times its keys' multipliers,
    drawn by key index from ``seed`` (:func:`nwattn.uncertainty.wild_multipliers`).
    """
    from ..ops import smoother_pool_state
    from ..uncertainty import wild_multipliers

    r = np.asarray(r, np.float64).reshape(k.shape[0], -1)
    B = int(n_bootstrap)
    width = pool_layout(B * r.shape[1], False).width
    w, any_weight = chunk_weights(w)
    if q.shape[0] == 0 or k.shape[0] == 0 or not any_weight:
        return empty_packed(q.shape[0], width, dtype)
    eta = wild_multipliers(seed, int(k0), int(k0) + k.shape[0], B, multiplier)
    U = np.concatenate([r[:, [c]] * eta for c in range(r.shape[1])], axis=1)
    state = smoother_pool_state(q, k, U, fit[2], kernel, bandwidth, degree=degree,
                                query_scale=scale, key_weight=w,
                                center=np.zeros(U.shape[1]), algorithm=algorithm)
    return pack(state)


def _studentised(packed, fit, n_cols, B):
    """Bootstrap deviations over the standard errors, shape (B, n_block, p) (one task)."""
    from ..state import finalize_state

    state = unpack(packed, n_cols, np.zeros(n_cols, packed.dtype), False)
    dev = finalize_state(state, warn=False).reshape(-1, n_cols)
    p = n_cols // B
    t = np.empty((B, dev.shape[0], p))
    with np.errstate(invalid="ignore", divide="ignore"):
        for c in range(p):
            t[:, :, c] = (dev[:, c * B:(c + 1) * B] / fit[1][:, c, None]).T
    return t


def _worst(t):
    """Largest studentised deviation over a block's queries, per replication (B, p)."""
    with np.errstate(invalid="ignore"):
        return np.nanmax(np.abs(t), axis=1, initial=0.0)


def _merge_worst(_, *parts):
    """The largest of the blocks' largest deviations (a merge task)."""
    return np.maximum.reduce(parts)


def _interval_block(fit, t, worst, level, z, values_1d, lower):
    """One query block's interval end (one task)."""
    center, se = fit[0], fit[1]
    if t is None:
        out = center - z * se if lower else center + z * se
    elif worst is not None:
        c = np.quantile(worst, level, axis=0)
        out = center - c * se if lower else center + c * se
    else:
        alpha = 1.0 - level
        q = np.quantile(t, 1.0 - alpha / 2.0 if lower else alpha / 2.0, axis=0)
        out = center - q * se
    return out[:, 0] if values_1d else out


def local_polynomial_interval(Q, K, V, kernel="gaussian", bandwidth=1.0, *, key_std,
                              residuals=None, degree=1, span=None, key_weight=None, level=0.95,
                              bias_correction=True, method="asymptotic", simultaneous=False,
                              n_bootstrap=999, multiplier="mammen", seed=0,
                              split_every=None, algorithm="auto"):
    """Confidence intervals and bootstrap bands of a local polynomial on Dask arrays.

    The distributed twin of
    :meth:`nwattn.LocalPolynomialRegressor.predict_interval`
    (``kind="confidence"``) for given noise scales: the standard errors'
    sandwich rides along with the moments of every (query block, key
    chunk) pair and merges in the same trees; the bootstrap's replications
    are one smoother pass per pair, with multipliers drawn by key index
    from ``seed`` (:func:`nwattn.uncertainty.wild_multipliers`), so the
    result does not depend on the chunking and equals the in-memory one.

    Parameters
    ----------
    Q, K, V, kernel, bandwidth, degree, span, key_weight, split_every, algorithm
        As for :func:`local_polynomial`: ``algorithm`` is passed on to
        every task's moments and bootstrap smoother passes, each chunk's
        keys being ordered and pruned on their own, so the result is the
        in-memory one to rounding, whatever the chunking.
    key_std : dask.array.Array or array_like of shape (n_keys,) or (n_keys, n_outputs)
        Noise scale of each key (see :mod:`nwattn.uncertainty`).
    residuals : same shape as ``key_std``, default=None
        Signed residuals whose magnitudes are ``key_std``: the bootstrap
        perturbs the targets by them (``method="bootstrap"``; by default
        ``key_std`` itself, which gives the same bands for the symmetric
        Rademacher multipliers only).
    level, bias_correction, method, simultaneous, n_bootstrap, multiplier
        As for :meth:`~nwattn.LocalPolynomialRegressor.predict_interval`.
    seed : int, default=0
        Seed of the multipliers.

    Returns
    -------
    lower, upper : dask.array.Array of shape (n_queries,) or (n_queries, n_outputs)
        Lazy, float64, chunked like the rows of ``Q``.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from nwattn import LocalPolynomialRegressor
    >>> from nwattn.dask import local_polynomial_interval
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(600, 1))
    >>> y = np.sin(6 * X[:, 0]) + rng.normal(scale=0.2, size=600)
    >>> model = LocalPolynomialRegressor(bandwidth=0.1).fit(X, y)
    >>> r = model._noise_residuals()[:, 0]  # the model's noise scales (vce="hc3")
    >>> Q = np.linspace(0, 1, 9)[:, None]
    >>> lo, hi = local_polynomial_interval(
    ...     da.from_array(Q, chunks=3), da.from_array(X, chunks=200),
    ...     da.from_array(y, chunks=200), bandwidth=0.1, key_std=np.abs(r), residuals=r,
    ...     method="bootstrap", simultaneous=True, n_bootstrap=199, seed=1)
    >>> want = model.predict_interval(Q, method="bootstrap", simultaneous=True,
    ...                               n_bootstrap=199, random_state=1)
    >>> bool(np.allclose(lo.compute(), want[0]) and np.allclose(hi.compute(), want[1]))
    True
    """
    from scipy import stats

    from ..uncertainty import MULTIPLIERS

    split_every = check_split_every(split_every)
    algorithm = check_algorithm(algorithm)
    degree = check_degree(degree)
    if not (isinstance(level, (int, float, np.floating)) and 0 < level < 1):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if method not in ("asymptotic", "bootstrap"):
        raise ValueError(f"method must be 'asymptotic' or 'bootstrap', got {method!r}")
    if simultaneous and method != "bootstrap":
        raise ValueError("simultaneous=True needs method='bootstrap'")
    if method == "bootstrap":
        if multiplier not in MULTIPLIERS:
            raise ValueError(f"multiplier must be one of {MULTIPLIERS}, got {multiplier!r}")
        if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) \
                or n_bootstrap < 1:
            raise ValueError(f"n_bootstrap must be a positive integer, got {n_bootstrap!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    kern = get_kernel(kernel)
    if kern.family != DISTANCE:
        raise ValueError(f"kernel must be a smoothing kernel for a local polynomial, got the "
                         f"attention score {kern.name!r}")
    if span is not None:
        bandwidth = 1.0
    Q, K, V2, W, values_1d, dtype = prepare(Q, K, V, kernel, bandwidth, key_weight, False)
    d, p = Q.shape[1], V2.shape[1]
    S = as_dask(key_std, "key_std", allow_1d=True).astype(np.float64).reshape(K.shape[0], -1)
    if S.shape[1] != p:
        raise ValueError(f"key_std must have one column per output ({p}), got {S.shape[1]}")
    S = S.rechunk((K.chunks[0], S.shape[1]))
    Rz = S if residuals is None else as_dask(residuals, "residuals", allow_1d=True).astype(
        np.float64).reshape(K.shape[0], -1).rechunk((K.chunks[0], p))
    h = _v.check_bandwidth(bandwidth, d, np.float64)
    fit_degree = degree + (1 if bias_correction else 0)
    n_blocks = len(Q.chunks[0])
    scales = [None] * n_blocks if span is None else span_radii(Q, K, span, split_every)
    center = common_center(V2, W)
    q_blocks, k_blocks, v_blocks = blocks(Q), blocks(K), blocks(V2)
    s_blocks, r_blocks = blocks(S), blocks(Rz)
    w_blocks = [None] * len(k_blocks) if W is None else blocks(W)
    q_starts, k_starts = starts(Q.chunks[0]), starts(K.chunks[0])
    info = dask.delayed(_local_info, pure=True)
    block = dask.delayed(_local_block, pure=True)
    solve = dask.delayed(_interval_fit, pure=True)
    options = dict(kernel=kernel, bandwidth=h, degree=fit_degree, exclude_self=False,
                   dtype=dtype, device="cpu", algorithm=algorithm)
    fits, ts = [], []
    for qb, q0, n_i, scale in zip(q_blocks, q_starts, Q.chunks[0], scales):
        local = info(fit_degree, h, scale, n_i)
        parts = [block(qb, kb, vb, wb, center, scale, q0, k0, sb, **options)
                 for kb, vb, wb, k0, sb in zip(k_blocks, v_blocks, w_blocks, k_starts, s_blocks)]
        fit = solve(merge_tree(parts, split_every, p, local=local), center, local, p,
                    bool(bias_correction))
        fits.append(fit)
        if method == "bootstrap":
            boot = dask.delayed(_boot_block, pure=True)
            B = int(n_bootstrap)
            parts = [boot(qb, kb, rb, wb, fit, scale, k0, seed=int(seed), n_bootstrap=B,
                          multiplier=multiplier, kernel=kernel, bandwidth=h,
                          degree=fit_degree, dtype=dtype, algorithm=algorithm)
                     for kb, rb, wb, k0 in zip(k_blocks, r_blocks, w_blocks, k_starts)]
            merged = merge_tree(parts, split_every, B * p)
            ts.append(dask.delayed(_studentised, pure=True)(merged, fit, B * p, B))
        else:
            ts.append(None)
    worst = None
    if simultaneous:
        worsts = [dask.delayed(_worst, pure=True)(t) for t in ts]
        worst = merge_tree(worsts, split_every, 0, combine=_merge_worst)
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    ends = []
    for lower in (True, False):
        pieces = []
        for fit, t, n_i in zip(fits, ts, Q.chunks[0]):
            out = dask.delayed(_interval_block, pure=True)(fit, t, worst, float(level), z,
                                                           values_1d, lower)
            shape = (n_i,) if values_1d else (n_i, p)
            pieces.append(da.from_delayed(out, shape=shape, dtype=np.float64))
        ends.append(da.concatenate(pieces, axis=0))
    return ends[0], ends[1]

"""Attention pooling on Dask arrays: data larger than one machine, exactly.

Two ways to split the work, usable together:

* **query sharding** — the queries are a Dask array cut into blocks of rows;
  every block is pooled independently. Keys held in memory are sent to the
  workers once (scattered, when a :class:`distributed.Client` is the current
  scheduler), not once per task.
* **key sharding** — the keys and values are themselves a Dask array cut
  into chunks of rows. Each (query block, key chunk) pair yields the
  online-softmax state of :func:`nwattn.ops.attention_pool_state`; the
  states of a query block are combined with the exact merge of
  :func:`nwattn.ops.merge_states` in a tree, then finalised. The result
  equals single-machine pooling up to rounding, whatever the chunking.

Every function returns lazy Dask arrays (or Dask scalars); nothing is
computed until ``.compute()`` (or ``dask.compute``), so any scheduler works:
the threaded one, processes, or a distributed cluster.

Concurrency. Dask's threaded workers call the compiled kernels from several
threads at once; :mod:`nwattn._parallel` makes that safe under every Numba
threading layer.

Empty neighbourhoods. A query with no key inside a compact kernel's support
is NaN in the result, as in memory. The
:class:`~nwattn.exceptions.EmptyNeighborhoodWarning` is raised by the task
that finalises the query's block, so on a distributed cluster it lands in
that worker's log; count the NaNs of the result to check from the client.

Estimators. :class:`~nwattn.NadarayaWatsonRegressor` fits and predicts on
Dask arrays, and :class:`~nwattn.AttentionRegressor` predicts on them,
through this module; the estimator's ``fallback`` for empty neighbourhoods
is applied block by block.
"""

import numbers

import numpy as np

import dask
import dask.array as da

from . import _validation as _v
from ._fallback import fill_empty
from .kernels import get_kernel
from .ops import attention_pool_state
from .state import PoolState, finalize_state, merge_states

__all__ = ["attention_pool", "loo_cv_error", "select_bandwidth", "predict"]


# ---------------------------------------------------------------- inputs


def _current_client():
    """The distributed client that will run the graph, or None."""
    try:
        from distributed import default_client
        client = default_client()
    except (ImportError, ValueError):  # distributed absent, or no client
        return None
    return client if dask.base.get_scheduler() == client.get else None


def _as_dask(X, name, *, ndim=2, allow_1d=False):
    """Validate ``X`` and return it as a Dask array.

    A Dask array is checked for shape and dtype only (its values are checked
    chunk by chunk when computed). Anything else is validated now and
    becomes a one-chunk Dask array; under a distributed client its data is
    scattered to every worker once.
    """
    if isinstance(X, da.Array):
        if X.dtype.kind not in "fiub":
            raise TypeError(f"{name} must be a real numeric array, got dtype {X.dtype}")
        ok_ndims = (1, 2) if allow_1d else (ndim,)
        if X.ndim not in ok_ndims:
            expected = "1-D or 2-D" if allow_1d else f"{ndim}-D"
            raise ValueError(f"{name} must be {expected}, got an array of shape {X.shape}")
        if any(np.isnan(c) for c in X.shape):
            raise ValueError(
                f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() first"
            )
        if X.shape[0] == 0:
            raise ValueError(f"{name} must have at least one row, got shape {X.shape}")
        return X
    X = _v.check_float_array(X, name, ndim=ndim, allow_1d=allow_1d)
    client = _current_client()
    source = client.scatter(X, broadcast=True) if client is not None else X
    return da.from_delayed(dask.delayed(source), shape=X.shape, dtype=X.dtype)


def _starts(chunks):
    """Global index of the first row of every chunk."""
    return np.concatenate([[0], np.cumsum(chunks)[:-1]]).astype(np.int64)


def _prepare(Q, K, V, kernel, bandwidth, key_weight, exclude_self):
    """Validate the arguments of a pooling and align the Dask arrays.

    Returns the queries and keys with all features in one chunk, the values
    as (m, p) with rows chunked like the keys, the key weights likewise (or
    None), whether the values were 1-D, and the computation's dtype.
    """
    get_kernel(kernel)
    Q = _as_dask(Q, "Q")
    K = _as_dask(K, "K")
    V = _as_dask(V, "V", allow_1d=True)
    _v.check_matching_shapes(Q, K, V, exclude_self=exclude_self)
    dtype = _v.common_float_dtype(Q, K, V)
    _v.check_bandwidth(bandwidth, Q.shape[1], dtype)
    values_1d = V.ndim == 1
    V2 = V.reshape(V.shape[0], 1) if values_1d else V
    Q = Q.rechunk({1: -1})
    K = K.rechunk({1: -1})
    V2 = V2.rechunk({0: K.chunks[0], 1: -1})
    W = None
    if key_weight is not None:
        W = _as_dask(key_weight, "key_weight", ndim=1)
        if W.shape[0] != K.shape[0]:
            raise ValueError(
                f"key_weight must have one entry per key ({K.shape[0]}), got {W.shape[0]}"
            )
        W = W.rechunk({0: K.chunks[0]})
    return Q, K, V2, W, values_1d, dtype


# ------------------------------------------------------- states as arrays
#
# A state travels between tasks as one float array of shape
# (n_queries, 2 + p + p2): the columns are max, norm, acc (p) and, when the
# variance is tracked, sq (p). The centre is common to every state of a
# pooling, so it is not stored.


def _pack(state):
    parts = [state.max[:, None], state.norm[:, None], state.acc]
    if state.sq is not None:
        parts.append(state.sq)
    return np.concatenate(parts, axis=1)


def _unpack(packed, p, center, values_1d):
    sq = packed[:, 2 + p:] if packed.shape[1] > 2 + p else None
    return PoolState(packed[:, 0].copy(), packed[:, 1].copy(), packed[:, 2:2 + p].copy(),
                     None if sq is None else sq.copy(), center, values_1d)


def _empty_packed(n, p, return_std, dtype):
    """The state of queries that met no key: max -inf, everything else 0."""
    packed = np.zeros((n, 2 + p * (2 if return_std else 1)), dtype)
    packed[:, 0] = -np.inf
    return packed


def _state_block(q, k, v, w, center, q0, k0, *, kernel, bandwidth, exclude_self,
                 return_std, dtype):
    """Packed state of query block ``q`` over key chunk ``k`` (one task)."""
    p = v.shape[1]
    if not np.all(np.isfinite(center)):
        raise ValueError("V must be finite: the mean of the values is not")
    if q.shape[0] == 0 or k.shape[0] == 0:
        return _empty_packed(q.shape[0], p, return_std, dtype)
    if w is not None:
        w = _v.check_float_array(w, "key_weight", ndim=1, dtype=np.float64)
        if np.any(w < 0):
            raise ValueError("key_weight must be non-negative")
        if not np.any(w > 0):  # a chunk of zero-weight keys adds nothing
            return _empty_packed(q.shape[0], p, return_std, dtype)
    state = attention_pool_state(q, k, v, kernel, bandwidth, key_weight=w,
                                 exclude_self=exclude_self, query_offset=int(q0),
                                 key_offset=int(k0), return_std=return_std,
                                 center=np.asarray(center, dtype))
    return _pack(state)


def _merge_tree(states, split_every, p, combine=None):
    """Combine delayed packed states in a tree, ``split_every`` at a time.

    ``combine(p, *parts)`` merges parts; by default the exact state merge.
    """
    merge = dask.delayed(_merge_block if combine is None else combine, pure=True)
    while len(states) > 1:
        states = [merge(p, *states[s:s + split_every])
                  if len(states[s:s + split_every]) > 1 else states[s]
                  for s in range(0, len(states), split_every)]
    return states[0]


def _merge_block(p, *packed):
    """Merge packed states of one query block over disjoint key chunks (one task)."""
    center = np.zeros(p, packed[0].dtype)  # the centre is shared, so any value works
    merged = _unpack(packed[0], p, center, False)
    for other in packed[1:]:
        merged = merge_states(merged, _unpack(other, p, center, False))
    return _pack(merged)


def _nearest_block(packed, q, k, v, w, q0, k0, *, bandwidth, exclude_self):
    """Nearest key of chunk ``k`` to each query of block ``q`` that needs one (one task).

    Only the queries whose merged state ``packed`` is empty need one (its
    column 1 is the norm, in a pooling state and in slope accumulators). The
    distance is scaled by the bandwidth; keys of zero weight are skipped and,
    with ``exclude_self``, so is the query's own row. Returns an array of
    shape (n_queries, 1 + p): the squared distance (``inf`` for a query that
    needs no neighbour or has none here) and the nearest key's value.
    """
    from sklearn.neighbors import NearestNeighbors

    out = np.full((q.shape[0], 1 + v.shape[1]), np.inf)
    need = np.flatnonzero(~(packed[:, 1] > 0))
    usable = (np.arange(k.shape[0]) if w is None
              else np.flatnonzero(np.asarray(w, np.float64) > 0))
    if need.size == 0 or usable.size == 0:
        return out
    h = np.asarray(bandwidth, dtype=np.float64)
    n_neighbors = min(2 if exclude_self else 1, usable.size)
    nn = NearestNeighbors(n_neighbors=n_neighbors).fit(np.asarray(k, np.float64)[usable] / h)
    dist, found = nn.kneighbors(np.asarray(q, np.float64)[need] / h)
    found = usable[found]
    if exclude_self:
        dist = np.where(found + k0 == (need + q0)[:, None], np.inf, dist)
    col = np.argmin(dist, axis=1)  # the nearer of equals: kneighbors sorts them
    rows = np.arange(need.size)
    out[need, 0] = dist[rows, col] ** 2
    out[need, 1:] = np.where(np.isfinite(dist[rows, col])[:, None],
                             v[found[rows, col]], np.inf)
    return out


def _merge_nearest(p, *parts):
    """Keep the nearer of the candidates of disjoint key chunks (one task).

    On a tie the earlier chunk wins, as the earlier index does in memory.
    """
    best = parts[0].copy()
    for other in parts[1:]:
        closer = other[:, 0] < best[:, 0]
        best[closer] = other[closer]
    return best


def _finalize_block(packed, center, p, values_1d, return_std, nearest=None, fallback=None,
                    mean=None, spread=None):
    """Predictions (and standard deviations) of one query block (one task).

    Without ``fallback`` an empty query is NaN with a warning, as in
    :func:`nwattn.ops.attention_pool`; with one, it is filled as by
    :class:`~nwattn.NadarayaWatsonRegressor` (``nearest`` holds the block's
    merged output of :func:`_nearest_block`).
    """
    state = _unpack(packed, p, np.asarray(center, packed.dtype), values_1d)
    out = finalize_state(state, return_std=return_std, warn=fallback is None)
    if fallback is None:
        return out
    pred, std = out if return_std else (out, None)
    pred, std = fill_empty(pred, std, state.empty, fallback, mean=mean,
                           spread=lambda: spread, nearest=lambda idx: nearest[idx, 1:])
    return (pred, std) if return_std else pred


def _loo_block(packed, center, v, w, p):
    """Leave-one-out squared error of one block of training points (one task).

    Returns ``[sum of weighted squared errors, sum of weights, number of
    points with an empty neighbourhood]``.
    """
    state = _unpack(packed, p, np.asarray(center, packed.dtype), False)
    pred = finalize_state(state, warn=False)
    empty = state.empty
    err = ((pred - v) ** 2).mean(axis=1)
    weight = np.ones(v.shape[0]) if w is None else np.asarray(w, np.float64)
    ok = ~empty
    return np.array([float(np.sum(weight[ok] * err[ok])), float(np.sum(weight)),
                     float(np.count_nonzero(empty))])


def _blocks(X):
    """The chunks of a Dask array along its rows, as a list of Delayed."""
    # Unoptimised: an optimised graph drops the scattered futures it refers
    # to, and the cluster would then release their data before the compute.
    return list(X.to_delayed(optimize_graph=False).ravel())


def _pooled_states(Q, K, V2, W, kernel, bandwidth, exclude_self, return_std, dtype,
                   split_every):
    """Delayed packed state of every query block over all keys, and the centre."""
    center = _blocks(V2.mean(axis=0, dtype=np.float64))[0]
    q_blocks, k_blocks, v_blocks = _blocks(Q), _blocks(K), _blocks(V2)
    w_blocks = [None] * len(k_blocks) if W is None else _blocks(W)
    q_starts = _starts(Q.chunks[0])
    k_starts = _starts(K.chunks[0])
    p = V2.shape[1]
    block = dask.delayed(_state_block, pure=True)
    options = dict(kernel=kernel, bandwidth=bandwidth, exclude_self=bool(exclude_self),
                   return_std=bool(return_std), dtype=dtype)
    states = []
    for qb, q0 in zip(q_blocks, q_starts):
        parts = [block(qb, kb, vb, wb, center, q0, k0, **options)
                 for kb, vb, wb, k0 in zip(k_blocks, v_blocks, w_blocks, k_starts)]
        states.append(_merge_tree(parts, split_every, p))
    return states, center


def _check_split_every(split_every):
    if split_every is None:
        return int(dask.config.get("split_every", 8) or 8)
    if (isinstance(split_every, bool) or not isinstance(split_every, numbers.Integral)
            or split_every < 2):
        raise ValueError(f"split_every must be an integer >= 2, got {split_every!r}")
    return int(split_every)


# ------------------------------------------------------------ public API


def attention_pool(Q, K, V, kernel="gaussian", bandwidth=1.0, *, key_weight=None,
                   exclude_self=False, return_std=False, split_every=None):
    """Attention pooling (Nadaraya-Watson regression) on Dask arrays.

    The distributed twin of :func:`nwattn.ops.attention_pool`, with the
    same arguments and results: ``Q``, ``K``, ``V`` and ``key_weight`` may
    each be a Dask array or an in-memory array. Queries are pooled block by
    block; keys and values split into chunks are pooled chunk by chunk and
    the partial states merged exactly, so the result equals in-memory
    pooling to rounding for any chunking.

    Parameters
    ----------
    Q : dask.array.Array or array_like of shape (n_queries, n_features)
        Queries, chunked along the rows (feature chunks are joined).
    K : dask.array.Array or array_like of shape (n_keys, n_features)
        Keys, chunked along the rows.
    V : dask.array.Array or array_like of shape (n_keys,) or (n_keys, n_outputs)
        Values; rechunked to the keys' row chunks.
    kernel : str, default="gaussian"
        A name of :mod:`nwattn.kernels`.
    bandwidth : float or array_like of shape (n_features,), default=1.0
        Positive scalar or one positive value per feature.
    key_weight : dask.array.Array or array_like of shape (n_keys,), default=None
        Non-negative weights of the keys (sample weights). A chunk whose
        weights are all zero contributes nothing.
    exclude_self : bool, default=False
        Leave-one-out: query ``i`` ignores key ``i`` (``Q`` must be ``K``;
        the two may be chunked differently).
    return_std : bool, default=False
        Also return the weighted standard deviation of the values around
        each prediction.
    split_every : int, default=None
        How many partial states one merge task combines (the fan-in of the
        tree reduction); by default Dask's ``split_every`` setting, or 8.

    Returns
    -------
    pred : dask.array.Array of shape (n_queries,) or (n_queries, n_outputs)
        Lazy; chunked like the rows of ``Q``. NaN for a query with no key
        in its kernel's support.
    std : dask.array.Array, same shape as ``pred``
        Only when ``return_std=True``.

    See Also
    --------
    nwattn.ops.attention_pool : the in-memory computation.

    Notes
    -----
    Each query block is scored against every key chunk once: the cost is
    ``n_query_blocks * n_key_chunks`` tasks plus the merges. The values'
    mean is computed first (one cheap pass over ``V``) and used as the
    common centre of every partial state, as in memory.

    In-memory arguments are scattered to the cluster when a distributed
    client is the current scheduler at the time of the call; compute the
    result on that client.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from nwattn import ops
    >>> from nwattn.dask import attention_pool
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(1000, 2))
    >>> y = np.sin(6 * X[:, 0]) + X[:, 1]
    >>> Q = rng.uniform(size=(300, 2))
    >>> dQ = da.from_array(Q, chunks=100)   # queries in 3 blocks
    >>> dX = da.from_array(X, chunks=300)   # keys in 4 chunks
    >>> dy = da.from_array(y, chunks=300)
    >>> pred = attention_pool(dQ, dX, dy, "epanechnikov", bandwidth=0.2)
    >>> pred
    dask.array<concatenate, shape=(300,), dtype=float64, chunksize=(100,), ...>
    >>> np.allclose(pred.compute(), ops.attention_pool(Q, X, y, "epanechnikov", 0.2),
    ...             rtol=1e-12, atol=0)
    True
    """
    split_every = _check_split_every(split_every)
    Q, K, V2, W, values_1d, dtype = _prepare(Q, K, V, kernel, bandwidth, key_weight,
                                              exclude_self)
    states, center = _pooled_states(Q, K, V2, W, kernel, bandwidth, exclude_self,
                                    return_std, dtype, split_every)
    return _finalized(states, center, Q, V2.shape[1], values_1d, return_std, dtype)


def _finalized(states, center, Q, p, values_1d, return_std, dtype, nearest=None, **fallback):
    """The lazy predictions (and standard deviations) from the merged states."""
    finalize = dask.delayed(_finalize_block, pure=True, nout=2 if return_std else None)
    nearest = [None] * len(states) if nearest is None else nearest
    preds, stds = [], []
    for state, near, n_i in zip(states, nearest, Q.chunks[0]):
        shape = (n_i,) if values_1d else (n_i, p)
        out = finalize(state, center, p, values_1d, bool(return_std), near, **fallback)
        if return_std:
            preds.append(da.from_delayed(out[0], shape=shape, dtype=dtype))
            stds.append(da.from_delayed(out[1], shape=shape, dtype=dtype))
        else:
            preds.append(da.from_delayed(out, shape=shape, dtype=dtype))
    pred = da.concatenate(preds, axis=0)
    if return_std:
        return pred, da.concatenate(stds, axis=0)
    return pred


def loo_cv_error(X, y, kernel="gaussian", bandwidth=1.0, *, sample_weight=None,
                 split_every=None):
    """Leave-one-out mean squared error of Nadaraya-Watson regression on Dask arrays.

    Every training point is predicted from all the others, with the
    training set left distributed: the queries are the keys, both chunked,
    and the leave-one-out pairs are skipped by their global indices.

    Parameters
    ----------
    X : dask.array.Array or array_like of shape (n_samples, n_features)
        Training inputs.
    y : dask.array.Array or array_like of shape (n_samples,) or (n_samples, n_outputs)
        Training targets.
    kernel : str, default="gaussian"
        A name of :mod:`nwattn.kernels`.
    bandwidth : float or array_like of shape (n_features,), default=1.0
        Positive scalar or one positive value per feature.
    sample_weight : dask.array.Array or array_like of shape (n_samples,), default=None
        Weights of the samples: they weight the keys in the pooling and the
        squared errors in the mean.
    split_every : int, default=None
        Fan-in of the merge tree, as in :func:`attention_pool`.

    Returns
    -------
    error : dask.array.Array of shape ()
        Lazy. The (weighted) mean over the samples of the squared error,
        averaged over the outputs; ``inf`` when some training point has no
        other point in its kernel's support (that bandwidth cannot predict
        it), so that a bandwidth search never picks such a bandwidth.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from nwattn.dask import loo_cv_error
    >>> rng = np.random.default_rng(1)
    >>> X = rng.uniform(size=(500, 1))
    >>> y = np.sin(6 * X[:, 0]) + 0.1 * rng.normal(size=500)
    >>> dX, dy = da.from_array(X, chunks=120), da.from_array(y, chunks=120)
    >>> float(loo_cv_error(dX, dy, bandwidth=0.05).compute()) < 0.02
    True
    >>> float(loo_cv_error(dX, dy, "boxcar", bandwidth=1e-6).compute())
    inf
    """
    split_every = _check_split_every(split_every)
    Q, K, V2, W, _, dtype = _prepare(X, X, y, kernel, bandwidth, sample_weight, True)
    states, center = _pooled_states(Q, K, V2, W, kernel, bandwidth, True, False, dtype,
                                    split_every)
    p = V2.shape[1]
    # The queries are the keys: reuse the keys' chunking for the targets.
    v_blocks = _blocks(V2.rechunk({0: Q.chunks[0]}))
    w_blocks = [None] * len(states) if W is None else _blocks(W.rechunk({0: Q.chunks[0]}))
    loo = dask.delayed(_loo_block, pure=True)
    parts = [da.from_delayed(loo(st, center, vb, wb, p), shape=(3,), dtype=np.float64)
             for st, vb, wb in zip(states, v_blocks, w_blocks)]
    sse, total_weight, n_empty = da.stack(parts).sum(axis=0)
    return da.where(n_empty > 0, np.inf, sse / total_weight)


def select_bandwidth(X, y, bandwidths, kernel="gaussian", *, sample_weight=None,
                     split_every=None):
    """Choose the bandwidth with the smallest leave-one-out error, on Dask arrays.

    All candidates are evaluated in one ``dask.compute`` call, so the
    scheduler sees every task at once and the training chunks are read
    once.

    Parameters
    ----------
    X : dask.array.Array or array_like of shape (n_samples, n_features)
        Training inputs.
    y : dask.array.Array or array_like of shape (n_samples,) or (n_samples, n_outputs)
        Training targets.
    bandwidths : sequence
        Candidate bandwidths (each a positive scalar or one value per
        feature).
    kernel : str, default="gaussian"
        A name of :mod:`nwattn.kernels`.
    sample_weight : dask.array.Array or array_like of shape (n_samples,), default=None
        Weights of the samples, as in :func:`loo_cv_error`.
    split_every : int, default=None
        Fan-in of the merge trees.

    Returns
    -------
    best : float or ndarray
        The candidate with the smallest error (the first of equals).
    errors : ndarray of shape (n_candidates,)
        The leave-one-out error of every candidate (``inf`` where some point
        has an empty neighbourhood).

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from nwattn.dask import select_bandwidth
    >>> rng = np.random.default_rng(2)
    >>> X = rng.uniform(size=(400, 1))
    >>> y = np.sin(6 * X[:, 0]) + 0.1 * rng.normal(size=400)
    >>> best, errors = select_bandwidth(da.from_array(X, chunks=150),
    ...                                 da.from_array(y, chunks=150),
    ...                                 [0.003, 0.03, 0.3])
    >>> best
    0.03
    """
    candidates = list(bandwidths)
    if not candidates:
        raise ValueError("bandwidths must contain at least one candidate")
    errors = dask.compute(*[loo_cv_error(X, y, kernel, h, sample_weight=sample_weight,
                                         split_every=split_every) for h in candidates])
    errors = np.array([float(e) for e in errors])
    if not np.any(np.isfinite(errors)):
        raise ValueError(
            "every candidate bandwidth leaves some training point with an empty "
            f"neighbourhood under the {kernel!r} kernel; try larger bandwidths"
        )
    return candidates[int(np.argmin(errors))], errors


def _predict_block(x, estimator, method, return_std=False):
    if return_std:
        # Both outputs in one block, split by the caller; so one task makes both.
        return np.stack(getattr(estimator, method)(x, return_std=True), axis=1)
    return getattr(estimator, method)(x)


def predict(estimator, X, *, method="predict", output_shape=None, return_std=False):
    """Apply a fitted estimator to a Dask array of queries, block by block.

    The estimator is sent to the workers once (scattered to every worker
    under a distributed client, one shared graph node otherwise) and each
    block of rows of ``X`` is predicted by one task.

    Parameters
    ----------
    estimator : object
        A fitted estimator (anything with the method ``method``, such as a
        scikit-learn regressor); it must be picklable for a distributed
        cluster.
    X : dask.array.Array of shape (n_queries, n_features)
        Queries, chunked along the rows (feature chunks are joined).
    method : str, default="predict"
        Name of the method to call on every block.
    output_shape : tuple of int, default=None
        Shape of the output of one query: ``()`` for one number per query,
        ``(n_outputs,)`` for a row. By default it is found by applying the
        method to the first row of ``X`` (which computes that row).
    return_std : bool, default=False
        Call the method with ``return_std=True`` (as for the estimators of
        :mod:`nwattn`, or scikit-learn's
        :class:`~sklearn.gaussian_process.GaussianProcessRegressor`) and
        return both of its outputs.

    Returns
    -------
    dask.array.Array of shape (n_queries,) + output_shape
        Lazy predictions, chunked like the rows of ``X``.
    std : dask.array.Array of the same shape
        Only with ``return_std=True``; made by the same tasks as the
        predictions.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from sklearn.linear_model import LinearRegression
    >>> from nwattn.dask import predict
    >>> X = np.arange(20.0).reshape(10, 2)
    >>> model = LinearRegression().fit(X, X @ [1.0, 2.0])
    >>> out = predict(model, da.from_array(X, chunks=4))
    >>> out.chunks
    ((4, 4, 2),)
    >>> np.allclose(out.compute(), X @ [1.0, 2.0])
    True
    """
    if not isinstance(X, da.Array):
        raise TypeError(f"X must be a dask array, got {type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got an array of shape {X.shape}")
    if not isinstance(method, str) or not callable(getattr(estimator, method, None)):
        raise ValueError(f"the estimator has no method {method!r}")
    X = X.rechunk({1: -1})
    if output_shape is None:
        sample = np.asarray(_predict_block(X[:1].compute(), estimator, method, return_std))
        output_shape, dtype = sample.shape[1 + bool(return_std):], sample.dtype
    else:
        output_shape, dtype = tuple(int(s) for s in output_shape), np.float64
        if len(output_shape) > 1 or any(s < 1 for s in output_shape):
            raise ValueError(f"output_shape must be () or (n_outputs,), got {output_shape!r}")
    client = _current_client()
    shared = dask.delayed(client.scatter(estimator, broadcast=True, hash=False)
                          if client is not None else estimator)
    if return_std:
        both = X.map_blocks(_predict_block, shared, method, True, dtype=dtype,
                            chunks=(X.chunks[0], (2,)) + tuple((s,) for s in output_shape),
                            new_axis=list(range(2, 2 + len(output_shape))),
                            meta=np.empty((0,) * (2 + len(output_shape)), dtype))
        return both[:, 0], both[:, 1]
    if output_shape:
        return X.map_blocks(_predict_block, shared, method, dtype=dtype,
                            chunks=(X.chunks[0], output_shape), meta=np.empty((0, 0), dtype))
    return X.map_blocks(_predict_block, shared, method, dtype=dtype, drop_axis=1,
                        meta=np.empty((0,), dtype))


# ------------------------------------- NadarayaWatsonRegressor on Dask arrays


def _nearest_states(states, Q, K, V2, W, bandwidth, exclude_self, split_every):
    """Delayed nearest keys of the empty queries of every query block (``"nearest"`` fallback)."""
    near = dask.delayed(_nearest_block, pure=True)
    q_blocks, k_blocks, v_blocks = _blocks(Q), _blocks(K), _blocks(V2)
    w_blocks = [None] * len(k_blocks) if W is None else _blocks(W)
    q_starts, k_starts = _starts(Q.chunks[0]), _starts(K.chunks[0])
    out = []
    for state, qb, q0 in zip(states, q_blocks, q_starts):
        parts = [near(state, qb, kb, vb, wb, q0, k0, bandwidth=bandwidth,
                      exclude_self=exclude_self)
                 for kb, vb, wb, k0 in zip(k_blocks, v_blocks, w_blocks, k_starts)]
        out.append(_merge_tree(parts, split_every, V2.shape[1], _merge_nearest))
    return out


def _needs_nearest(kernel, fallback):
    # Only a compact kernel leaves queries without neighbours.
    return fallback == "nearest" and get_kernel(kernel).is_compact


def _nw_predict(estimator, X, return_std):
    """:meth:`NadarayaWatsonRegressor.predict` with Dask queries or Dask training data.

    The pooling of :func:`attention_pool` with the estimator's training set
    as keys, the fallback applied block by block.
    """
    Q = _as_dask(X, "X")
    if Q.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {Q.shape[1]} features, but NadarayaWatsonRegressor is expecting "
            f"{estimator.n_features_in_} features as input"
        )
    if Q.dtype not in (np.float32, np.float64):
        Q = Q.astype(np.float64)
    kernel, h, fallback = estimator.kernel, estimator.bandwidth_, estimator.fallback
    Q, K, V2, W, values_1d, dtype = _prepare(Q, estimator.X_fit_, estimator.y_fit_, kernel, h,
                                              estimator.sample_weight_, False)
    split_every = _check_split_every(None)
    states, center = _pooled_states(Q, K, V2, W, kernel, h, False, return_std, dtype,
                                    split_every)
    nearest = (_nearest_states(states, Q, K, V2, W, h, False, split_every)
               if _needs_nearest(kernel, fallback) else None)
    spread = None
    if fallback == "mean" and return_std:
        mean = estimator.y_mean_
        spread = _blocks(da.sqrt(da.average((V2 - mean) ** 2, axis=0, weights=W)))[0]
    return _finalized(states, center, Q, V2.shape[1], values_1d, return_std, dtype,
                      nearest, fallback=fallback, mean=estimator.y_mean_, spread=spread)


def _loo_sse_block(packed, nearest, center, v, w, p, fallback, total, wsum):
    """Weighted sum of squared leave-one-out errors of a block of training points (one task).

    Points with an empty leave-one-out neighbourhood get the fallback, as
    in :func:`nwattn.bandwidth.loo_cv_score`.
    """
    from .bandwidth import _fill_loo_empty, _loo_means

    state = _unpack(packed, p, np.asarray(center, packed.dtype), False)
    pred = finalize_state(state, warn=False)
    c = np.ones(v.shape[0]) if w is None else np.asarray(w, np.float64)
    pred = _fill_loo_empty(pred, state.empty, fallback,
                           mean=lambda idx: _loo_means(v[idx], c[idx], total, wsum),
                           nearest=lambda idx: nearest[idx, 1:])
    r = v - pred
    return np.array([float(c @ np.sum(r * r, axis=1))])


def _slopes_block(q, k, v, w, center, q0, k0, *, kernel, bandwidth):
    """Leave-one-out slope accumulators of training block ``q`` over key chunk ``k`` (one task).

    Packed as one array: max, norm, acc (p), A (d), B (d * p) per point.
    """
    from ._cpu.bandwidth import run_loo_slopes
    from .ops import _prepare_scores

    kern, Qs, KT, logw, scale = _prepare_scores(q, k, kernel, bandwidth, w,
                                                np.dtype(np.float64))
    VT = np.ascontiguousarray((v - center).T)
    out = run_loo_slopes(Qs, KT, VT, logw, kern.family, kern.code, scale,
                         self_offset=int(q0) - int(k0), raw=True)
    n = q.shape[0]
    return np.concatenate([out[0][:, None], out[1][:, None], out[2], out[3],
                           out[4].reshape(n, -1)], axis=1)


def _unpack_slopes(packed, p, d):
    n = packed.shape[0]
    return (packed[:, 0], packed[:, 1], packed[:, 2:2 + p], packed[:, 2 + p:2 + p + d],
            packed[:, 2 + p + d:].reshape(n, d, p))


def _merge_slopes_block(shape, *packed):
    """Merge slope accumulators of one training block over disjoint key chunks (one task)."""
    from ._cpu.bandwidth import merge_slopes

    p, d = shape
    merged = _unpack_slopes(packed[0], p, d)
    for other in packed[1:]:
        merged = merge_slopes(merged, _unpack_slopes(other, p, d))
    n = packed[0].shape[0]
    return np.concatenate([merged[0][:, None], merged[1][:, None], merged[2], merged[3],
                           merged[4].reshape(n, -1)], axis=1)


def _loo_grad_block(packed, nearest, center, v, w, shape, fallback, total, wsum):
    """Weighted squared leave-one-out errors of a block and their slopes (one task).

    Returns ``[sum_i c_i |r_i|**2, sum_i c_i r_i . d yhat_i / d log h_t for each t]``;
    the fallback predictions have no slope, as in memory.
    """
    from ._cpu.bandwidth import finalize_slopes
    from .bandwidth import _fill_loo_empty, _loo_means

    p, d = shape
    _, norm, acc, A, B = _unpack_slopes(packed, p, d)
    _, pred, dpred = finalize_slopes(norm, acc, A, B)
    pred = pred + center
    c = np.ones(v.shape[0]) if w is None else np.asarray(w, np.float64)
    pred = _fill_loo_empty(pred, ~(norm > 0), fallback,
                           mean=lambda idx: _loo_means(v[idx], c[idx], total, wsum),
                           nearest=lambda idx: nearest[idx, 1:])
    r = v - pred
    return np.concatenate([[float(c @ np.sum(r * r, axis=1))],
                           np.einsum("i,ic,itc->t", c, r, dpred)])


class _DaskLooProblem:
    """The leave-one-out problem of :mod:`nwattn.bandwidth` on distributed training data.

    Offers what the search driver of :func:`nwattn.bandwidth.select_bandwidth`
    asks of a problem (``kern``, ``var``, ``search_scale``, ``value`` and,
    for a per-feature search, ``value_and_gradient``); every score is one
    Dask computation over the key chunks.
    """

    def __init__(self, X, Y2, W, kernel, fallback, moments):
        self.X, self.Y2, self.W = X, Y2, W
        self.kernel = kernel
        self.kern = get_kernel(kernel)
        self.fallback = fallback
        self.moments = moments
        self.var = float(np.sum(moments["y_var"]))

    def search_scale(self, per_feature):
        from .bandwidth import _search_scale_from

        m = self.moments
        return _search_scale_from(self.kern, m["n"], np.sqrt(m["x_var"]), m["x_rms2"],
                                  per_feature)

    def value(self, bandwidth):
        m = self.moments
        split_every = _check_split_every(None)
        X, Y2, W = self.X, self.Y2, self.W
        states, center = _pooled_states(X, X, Y2, W, self.kernel, bandwidth, True, False,
                                        np.dtype(np.float64), split_every)
        nearest = (_nearest_states(states, X, X, Y2, W, bandwidth, True, split_every)
                   if _needs_nearest(self.kernel, self.fallback) else [None] * len(states))
        w_blocks = [None] * len(states) if W is None else _blocks(W)
        sse = dask.delayed(_loo_sse_block, pure=True)
        parts = [da.from_delayed(sse(st, near, center, vb, wb, Y2.shape[1], self.fallback,
                                     m["y_total"], m["wsum"]), shape=(1,), dtype=np.float64)
                 for st, near, vb, wb in zip(states, nearest, _blocks(Y2), w_blocks)]
        return float(da.concatenate(parts).sum().compute()) / m["wsum"]

    def value_and_gradient(self, bandwidth):
        """Score and its gradient with respect to ``log h_t``, from merged slope accumulators."""
        m = self.moments
        split_every = _check_split_every(None)
        X, Y2, W = self.X, self.Y2, self.W
        h = _v.check_bandwidth(bandwidth, X.shape[1], np.float64)
        shape = (Y2.shape[1], X.shape[1])
        center = _blocks(Y2.mean(axis=0))[0]
        x_blocks, y_blocks = _blocks(X), _blocks(Y2)
        w_blocks = [None] * len(x_blocks) if W is None else _blocks(W)
        starts = _starts(X.chunks[0])
        block = dask.delayed(_slopes_block, pure=True)
        states = [_merge_tree([block(qb, kb, vb, wb, center, q0, k0, kernel=self.kernel,
                                     bandwidth=h)
                               for kb, vb, wb, k0 in zip(x_blocks, y_blocks, w_blocks, starts)],
                              split_every, shape, _merge_slopes_block)
                  for qb, q0 in zip(x_blocks, starts)]
        nearest = (_nearest_states(states, X, X, Y2, W, h, True, split_every)
                   if _needs_nearest(self.kernel, self.fallback) else [None] * len(states))
        grad = dask.delayed(_loo_grad_block, pure=True)
        parts = [da.from_delayed(grad(st, near, center, vb, wb, shape, self.fallback,
                                      m["y_total"], m["wsum"]),
                                 shape=(1 + shape[1],), dtype=np.float64)
                 for st, near, vb, wb in zip(states, nearest, y_blocks, w_blocks)]
        total = np.asarray(da.stack(parts).sum(axis=0).compute())
        return float(total[0]) / m["wsum"], -2.0 * total[1:] / m["wsum"]


def _moments(X, Y2, W):
    """Validate the distributed training data and reduce it to the numbers the fit needs.

    Two passes of reductions (means, then spreads around them); nothing of
    the size of the data leaves the workers.
    """
    c = da.ones(X.shape[0], chunks=X.chunks[0]) if W is None else W
    Xf, Y2 = X.astype(np.float64), Y2.astype(np.float64)
    checks = {"X": da.isfinite(X).all(), "y": da.isfinite(Y2).all()}
    if W is not None:
        checks["sample_weight"] = da.isfinite(W).all()
        checks["negative"] = (W >= 0).all()
    sums = dict(wsum=c.sum(), w2sum=(c * c).sum(), n_positive=(c > 0).sum(),
                x_total=(c[:, None] * Xf).sum(axis=0),
                x_sq=(c[:, None] * Xf * Xf).sum(axis=0),
                y_total=(c[:, None] * Y2).sum(axis=0))
    checks, m = dask.compute(checks, sums)
    for name in ("X", "y", "sample_weight"):
        if not checks.get(name, True):
            raise ValueError(f"{name} must be finite: it contains NaN or infinity")
    if not checks.get("negative", True):
        raise ValueError("sample_weight must be non-negative")
    if not m["wsum"] > 0:
        raise ValueError("sample_weight must have a positive sum")
    wsum = float(m["wsum"])
    m = {key: np.asarray(val, dtype=np.float64) for key, val in m.items()}
    m["wsum"], m["n"] = wsum, int(X.shape[0])
    m["n_eff"] = wsum ** 2 / float(m["w2sum"]) if W is not None else float(X.shape[0])
    m["x_mean"], m["y_mean"] = m["x_total"] / wsum, m["y_total"] / wsum
    m["x_rms2"] = m["x_sq"] / wsum
    x_var, y_var = dask.compute((c[:, None] * (Xf - m["x_mean"]) ** 2).sum(axis=0),
                                (c[:, None] * (Y2 - m["y_mean"]) ** 2).sum(axis=0))
    m["x_var"], m["y_var"] = np.asarray(x_var) / wsum, np.asarray(y_var) / wsum
    return m


def _nw_fit(estimator, X, y, sample_weight):
    """:meth:`NadarayaWatsonRegressor.fit` on Dask arrays; the training set stays distributed."""
    from . import bandwidth as _bw

    kern = get_kernel(estimator.kernel)
    X = _as_dask(X, "X")
    y = _as_dask(y, "y", allow_1d=True)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if y.dtype not in (np.float32, np.float64):
        y = y.astype(np.float64)
    if y.shape[0] != X.shape[0]:
        raise ValueError(
            f"X and y must have the same number of rows, got {X.shape[0]} and {y.shape[0]}"
        )
    X = X.rechunk({1: -1})
    y = y.rechunk({0: X.chunks[0], **({1: -1} if y.ndim == 2 else {})})
    W = None
    if sample_weight is not None:
        W = _as_dask(sample_weight, "sample_weight", ndim=1).astype(np.float64)
        if W.shape[0] != X.shape[0]:
            raise ValueError(
                f"sample_weight must have one entry per sample ({X.shape[0]}), "
                f"got {W.shape[0]}"
            )
        W = W.rechunk({0: X.chunks[0]})
    Y2 = y.reshape(y.shape[0], -1)
    m = _moments(X, Y2, W)
    estimator.cv_score_ = None
    bw = estimator.bandwidth
    if isinstance(bw, str) and bw in ("scott", "silverman"):
        if not kern.is_distance:
            raise ValueError(
                f"bandwidth={bw!r} is a rule for smoothing kernels; kernel "
                f"{kern.name!r} is an attention score: give a number or 'cv'"
            )
        estimator.bandwidth_ = _bw._rule_from_spread(bw, np.sqrt(m["x_var"]), m["n_eff"])
    elif isinstance(bw, str):
        if int(m["n_positive"]) < 2:
            raise ValueError(
                "leave-one-out cross-validation needs at least 2 samples with positive "
                f"weight, got n_samples={int(m['n_positive'])}"
            )
        fallback = "nearest" if estimator.fallback == "nearest" else "mean"
        problem = _DaskLooProblem(X.astype(np.float64), Y2.astype(np.float64), W,
                                  estimator.kernel, fallback, m)
        sel = _bw._search(problem, bool(estimator.bandwidth_per_feature),
                          float(estimator.tol))
        estimator.bandwidth_, estimator.cv_score_ = sel.bandwidth, sel.cv_score
    else:
        checked = _v.check_bandwidth(bw, X.shape[1], np.float64)
        estimator.bandwidth_ = float(checked[0]) if np.ndim(bw) == 0 else checked
    estimator.n_features_in_ = int(X.shape[1])
    if hasattr(estimator, "feature_names_in_"):  # from an earlier fit on a data frame
        del estimator.feature_names_in_
    estimator.X_fit_, estimator.y_fit_, estimator.sample_weight_ = X, y, W
    estimator.y_mean_ = m["y_mean"]
    return estimator


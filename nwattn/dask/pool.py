"""Attention pooling on Dask arrays, and the graph pieces the other modules share.

Each (query block, key chunk) pair yields the online-softmax state of
:func:`nwattn.ops.attention_pool_state`; the states of a query block are
combined with the exact merge of :func:`nwattn.ops.merge_states` in a tree,
then finalised. The same trees carry the nearest keys of the queries that
need the ``"nearest"`` fallback, and the moments of local polynomials
(:mod:`nwattn.dask.local`).
"""

import numpy as np

import dask
import dask.array as da

from .. import _validation as _v
from .._fallback import fill_empty
from .._layout import local_layout, pool_layout
from ..loo import nearest_neighbor
from ..ops import attention_pool_state
from ..state import PoolState, finalize_state, merge_states
from ._inputs import blocks, check_algorithm, check_device, check_split_every, prepare, starts

# ------------------------------------------------------- states as arrays
#
# A state travels between tasks as one float array of shape
# (n_queries, 1 + width): the running maximum, then the packed accumulators
# of its layout: for pooling, norm, acc (p) and, when the variance is
# tracked, sq (p); for a local polynomial, those of
# :func:`nwattn._layout.local_layout`. The centre is common to every state
# of a computation, and a local polynomial's degree and bandwidths to every
# state of a query block, so neither is stored: the tasks that unpack get
# them as arguments.


def pack(state):
    return np.concatenate([state.max[:, None], state.packed], axis=1)


def unpack(packed, p, center, values_1d, local=None):
    """The :class:`~nwattn.state.PoolState` of a packed array.

    ``local`` is the :class:`~nwattn.state.LocalInfo` of the query block
    for the moments of a local polynomial, None for a pooling state.
    """
    if local is None:
        layout = pool_layout(p, packed.shape[1] > 2 + p)
    else:
        d = local.bandwidth.shape[1]
        base = local_layout(p, d, local.degree).width
        # The standard errors' sandwich, when there is one, follows: one
        # upper triangle of the Gram matrix (the width of a layout without
        # outputs) per noise column.
        tri = local_layout(0, d, local.degree).width
        layout = local_layout(p, d, local.degree, n_meat=(packed.shape[1] - 1 - base) // tri)
    return PoolState(packed[:, 0].copy(), packed[:, 1:].copy(), layout, center, values_1d,
                     local=local)


def empty_packed(n, width, dtype):
    """The packed state of ``n`` queries that met no key: max -inf, every accumulator 0."""
    packed = np.zeros((n, 1 + width), dtype)
    packed[:, 0] = -np.inf
    return packed


def chunk_weights(w):
    """The key weights of one chunk, checked, and whether any of them is positive.

    A chunk of zero-weight keys adds nothing to any state; whether all the
    weights are zero is checked once for the whole array
    (:func:`common_center`).
    """
    if w is None:
        return None, True
    w = _v.check_float_array(w, "key_weight", ndim=1, dtype=np.float64)
    if np.any(w < 0):
        raise ValueError("key_weight must be non-negative")
    return w, bool(np.any(w > 0))


def _state_block(q, k, v, w, center, q0, k0, *, kernel, bandwidth, exclude_self,
                 return_std, dtype, device, algorithm, discrete=None):
    """Packed state of query block ``q`` over key chunk ``k`` (one task).

    With ``algorithm`` ``"tree"`` (or ``"auto"`` deciding so) the keys of
    this chunk are ordered and pruned here, on their own.
    """
    width = pool_layout(v.shape[1], return_std).width
    if q.shape[0] == 0 or k.shape[0] == 0:
        return empty_packed(q.shape[0], width, dtype)
    w, any_weight = chunk_weights(w)
    if not any_weight:
        return empty_packed(q.shape[0], width, dtype)
    state = attention_pool_state(q, k, v, kernel, bandwidth, key_weight=w,
                                 exclude_self=exclude_self, query_offset=int(q0),
                                 key_offset=int(k0), return_std=return_std,
                                 center=np.asarray(center, dtype), device=device,
                                 algorithm=algorithm, discrete=discrete)
    return pack(state)


def merge_tree(states, split_every, p, combine=None, **options):
    """Combine delayed states in a tree, ``split_every`` at a time.

    ``combine(p, *parts, **options)`` merges parts; by default the exact
    merge of packed states (:func:`_merge_block`, whose ``local`` option
    says that they hold the moments of a local polynomial). The options may
    be Delayed.
    """
    merge = dask.delayed(_merge_block if combine is None else combine, pure=True)
    while len(states) > 1:
        states = [merge(p, *states[s:s + split_every], **options)
                  if len(states[s:s + split_every]) > 1 else states[s]
                  for s in range(0, len(states), split_every)]
    return states[0]


def _merge_block(p, *packed, local=None):
    """Merge packed states of one query block over disjoint key chunks (one task).

    ``local``: the query block's :class:`~nwattn.state.LocalInfo` when the
    states hold the moments of a local polynomial.
    """
    center = np.zeros(p, packed[0].dtype)  # the centre is shared, so any value works
    merged = unpack(packed[0], p, center, False, local)
    for other in packed[1:]:
        merged = merge_states(merged, unpack(other, p, center, False, local))
    return pack(merged)


def _checked_center(mean, weight_sum, weight_min):
    """The common centre of the partial states, once the key weights are known usable (one task).

    The weights are checked whole here, as in memory: a pooling whose weights
    are all zero has no key to average, whatever the kernel's support.
    """
    if weight_sum is not None:
        if not (np.isfinite(weight_sum) and np.isfinite(weight_min)):
            raise ValueError("key_weight must be finite: it contains NaN or infinity")
        if weight_min < 0:
            raise ValueError("key_weight must be non-negative")
        if not weight_sum > 0:
            raise ValueError("key_weight must have at least one positive entry")
    if not np.all(np.isfinite(mean)):
        raise ValueError("V must be finite: the mean of the values is not")
    return mean


def common_center(V2, W):
    """Delayed mean of the values, after the whole-array checks of the values and weights."""
    mean = blocks(V2.mean(axis=0, dtype=np.float64))[0]
    if W is None:
        return dask.delayed(_checked_center, pure=True)(mean, None, None)
    return dask.delayed(_checked_center, pure=True)(
        mean, blocks(W.sum(dtype=np.float64))[0], blocks(W.min())[0])


def pooled_states(Q, K, V2, W, kernel, bandwidth, exclude_self, return_std, dtype,
                  split_every, device, center=None, *, algorithm, discrete=None):
    """Delayed packed state of every query block over all keys, and the centre.

    ``algorithm`` (checked by :func:`~nwattn.dask._inputs.check_algorithm`)
    and ``discrete`` are passed on to every (query block, key chunk) task.
    """
    center = common_center(V2, W) if center is None else center
    q_blocks, k_blocks, v_blocks = blocks(Q), blocks(K), blocks(V2)
    w_blocks = [None] * len(k_blocks) if W is None else blocks(W)
    q_starts = starts(Q.chunks[0])
    k_starts = starts(K.chunks[0])
    p = V2.shape[1]
    block = dask.delayed(_state_block, pure=True)
    options = dict(kernel=kernel, bandwidth=bandwidth, exclude_self=bool(exclude_self),
                   return_std=bool(return_std), dtype=dtype, device=device,
                   algorithm=algorithm, discrete=discrete)
    states = []
    for qb, q0 in zip(q_blocks, q_starts):
        parts = [block(qb, kb, vb, wb, center, q0, k0, **options)
                 for kb, vb, wb, k0 in zip(k_blocks, v_blocks, w_blocks, k_starts)]
        states.append(merge_tree(parts, split_every, p))
    return states, center


# ------------------------------------------------------ nearest neighbours


def _empty_rows(state):
    """Queries of a merged state with an empty neighbourhood (packed pooling or slope state)."""
    if isinstance(state, np.ndarray):
        return ~(state[:, 1] > 0)  # column 1 of a packed state is the norm
    return state.empty


def _nearest_block(state, q, k, v, w, q0, k0, *, bandwidth, exclude_self):
    """Nearest key of chunk ``k`` to each query of block ``q`` that needs one (one task).

    Only the queries that the merged ``state`` leaves empty need one. The
    rule is :func:`nwattn.loo.nearest_neighbor`'s: keys of zero weight are
    skipped and, with ``exclude_self``, so is the query's own row. Returns
    an array of shape (n_queries, 1 + p): the squared scaled distance
    (``inf`` for a query that needs no neighbour or has none here) and the
    nearest key's value.
    """
    out = np.full((q.shape[0], 1 + v.shape[1]), np.inf)
    need = np.flatnonzero(_empty_rows(state))
    if need.size == 0 or k.shape[0] == 0:
        return out
    exclude = need + int(q0) - int(k0) if exclude_self else None
    found = nearest_neighbor(np.asarray(q)[need], k, bandwidth, key_weight=w, exclude=exclude)
    ok = found.index >= 0
    out[need[ok], 0] = found.sq_distance[ok]
    out[need[ok], 1:] = np.asarray(v)[found.index[ok]]
    return out


def _merge_nearest(p, *parts):
    """Keep the nearer of the candidates of disjoint key chunks (one task).

    On a tie the earlier chunk wins, so the lowest index does, as in memory.
    """
    best = parts[0].copy()
    for other in parts[1:]:
        closer = other[:, 0] < best[:, 0]
        best[closer] = other[closer]
    return best


def nearest_states(states, Q, K, V2, W, bandwidth, exclude_self, split_every):
    """Delayed nearest keys of the empty queries of every query block (``"nearest"`` fallback)."""
    near = dask.delayed(_nearest_block, pure=True)
    q_blocks, k_blocks, v_blocks = blocks(Q), blocks(K), blocks(V2)
    w_blocks = [None] * len(k_blocks) if W is None else blocks(W)
    q_starts, k_starts = starts(Q.chunks[0]), starts(K.chunks[0])
    out = []
    for state, qb, q0 in zip(states, q_blocks, q_starts):
        parts = [near(state, qb, kb, vb, wb, q0, k0, bandwidth=bandwidth,
                      exclude_self=exclude_self)
                 for kb, vb, wb, k0 in zip(k_blocks, v_blocks, w_blocks, k_starts)]
        out.append(merge_tree(parts, split_every, V2.shape[1], _merge_nearest))
    return out


# ------------------------------------------------------------ finalising


def _finalize_block(packed, center, p, values_1d, return_std, nearest=None, fallback=None,
                    mean=None, spread=None):
    """Predictions (and standard deviations) of one query block (one task).

    Without ``fallback`` an empty query is NaN with a warning, as in
    :func:`nwattn.ops.attention_pool`; with one, it is filled as by
    :class:`~nwattn.NadarayaWatsonRegressor` (``nearest`` holds the block's
    merged output of :func:`_nearest_block`).
    """
    state = unpack(packed, p, np.asarray(center, packed.dtype), values_1d)
    out = finalize_state(state, return_std=return_std, warn=fallback is None)
    if fallback is None:
        return out
    pred, std = out if return_std else (out, None)
    pred, std = fill_empty(pred, std, state.empty, fallback, mean=mean,
                           spread=lambda: spread, nearest=lambda idx: nearest[idx, 1:])
    return (pred, std) if return_std else pred


def finalized(states, center, Q, p, values_1d, return_std, dtype, nearest=None, **fallback):
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


# ------------------------------------------------------------ public API


def attention_pool(Q, K, V, kernel="gaussian", bandwidth=1.0, *, key_weight=None,
                   exclude_self=False, return_std=False, split_every=None, device="cpu",
                   algorithm="auto", discrete=None):
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
        weights are all zero contributes nothing; weights that are all zero
        raise a ValueError when computed, as in memory.
    exclude_self : bool, default=False
        Leave-one-out: query ``i`` ignores key ``i`` (``Q`` must be ``K``;
        the two may be chunked differently).
    return_std : bool, default=False
        Also return the weighted standard deviation of the values around
        each prediction.
    split_every : int, default=None
        How many partial states one merge task combines (the fan-in of the
        tree reduction); by default Dask's ``split_every`` setting, or 8.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where each task pools, passed on to
        :func:`nwattn.ops.attention_pool_state` on the worker that runs it:
        ``"cuda"`` uses the workers' GPUs (the client needs none, and a
        worker without one fails its task with a RuntimeError), ``"auto"``
        chooses for every (query block, key chunk) pair by its size. Only
        the name is checked when the graph is built.
    algorithm : {"auto", "brute", "tree"}, default="auto"
        Which key tiles each task visits, as for
        :func:`nwattn.ops.attention_pool`, passed on to every (query block,
        key chunk) task: each chunk's keys are ordered and pruned on their
        own: the result is the in-memory one to rounding, whatever the
        chunking. ``"auto"`` decides for each task from its own chunk. A
        :class:`~nwattn.pruning.KeyTree` is refused (it orders a whole
        array of keys, not its chunks).
    discrete : nwattn.discrete.DiscreteFeatures, default=None
        Which columns of ``Q`` and ``K`` hold category codes, as for
        :func:`nwattn.ops.attention_pool`: ``bandwidth`` then has one entry
        per column (``lam`` at a discrete one), checked when the graph is
        built; the codes of each chunk are checked by the task that reads
        it (an invalid code fails the computation with the in-memory
        message).

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
    split_every = check_split_every(split_every)
    device = check_device(device)
    algorithm = check_algorithm(algorithm, kernel, device)
    Q, K, V2, W, values_1d, dtype = prepare(Q, K, V, kernel, bandwidth, key_weight,
                                             exclude_self, discrete)
    states, center = pooled_states(Q, K, V2, W, kernel, bandwidth, exclude_self, return_std,
                                   dtype, split_every, device, algorithm=algorithm,
                                   discrete=discrete)
    return finalized(states, center, Q, V2.shape[1], values_1d, return_std, dtype)

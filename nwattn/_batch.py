"""Attention arrays: batch dimensions, broadcasting and masks, laid out for the sweep.

Transformer code holds attention inputs as ``(..., n, d)`` queries,
``(..., m, d)`` keys and ``(..., m, p)`` values, with NumPy broadcasting
across the leading (batch) dimensions, plus masks. The compute kernels
take packed 2-D arrays; this module turns the one into the other without
copying what is shared:

* every batch item (one index of the broadcast leading shape) gets a row
  of an item table (:class:`AttentionBatch`) saying where its queries,
  keys, values and masks start in the packed arrays. Keys and values
  shared by several items (grouped-query attention: one key head for
  several query heads) are packed once and addressed by all of them;
* key weights, key padding and masks that do not depend on the query are
  one row of key log-weights per distinct item (``LW``: ``log w``, and
  ``-inf`` for a masked key), which lets the sweep skip a tile every key
  of which is masked;
* masks that depend on the query are additive biases (``BIAS``: a float
  mask as it is, a boolean mask as ``0``/``-inf``);
* causal order is a number, the diagonal ``diag``: query ``i`` attends key
  ``j`` when ``j <= i + diag``; the sweep never visits the tiles beyond
  it.

Everything here is host-side NumPy; the kernels see only the table.
"""

import math
from typing import NamedTuple

import numpy as np

from . import _validation as _v

__all__ = ["AttentionBatch", "single_item", "check_attention_array", "broadcast_batch",
           "item_index", "check_mask", "key_log_weights", "query_bias"]


class AttentionBatch(NamedTuple):
    """Where each batch item's data sit in the packed arrays of the sweep.

    Attributes
    ----------
    items : ndarray of shape (n_items, 5), int64
        Per item: first query row (also its first output row), first key
        column, first value column, row of ``LW`` (-1: none), first row of
        ``BIAS`` (-1: none).
    n_item, m_item : int
        Queries and keys of one item.
    LW : ndarray of shape (r1, m_item)
        Key log-weights.
    BIAS : ndarray of shape (r2, m_item)
        Additive biases; query ``i`` of an item uses row ``items[b, 4] +
        b_step * i``.
    b_step : int
        1 when the bias has a row per query, 0 when one row serves them all.
    diag : int
        Causal diagonal: query ``i`` attends keys ``j <= i + diag``
        (``n_item + m_item``: no causal order).

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn._batch import single_item
    >>> b = single_item(3, 4, np.float64)
    >>> b.items.tolist(), b.diag
    ([[0, 0, 0, -1, -1]], 7)
    """

    items: np.ndarray
    n_item: int
    m_item: int
    LW: np.ndarray
    BIAS: np.ndarray
    b_step: int
    diag: int


def single_item(n, m, dtype, logw=None):
    """The batch of one item of ``n`` queries and ``m`` keys, unmasked.

    ``logw`` (m,), when given and not empty, are its key log-weights.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn._batch import single_item
    >>> int(single_item(2, 2, np.float32, np.zeros(2, np.float32)).items[0, 3])
    0
    """
    items = np.array([[0, 0, 0, -1, -1]], dtype=np.int64)
    if logw is not None and logw.shape[0] > 0:
        items[0, 3] = 0
        LW = np.ascontiguousarray(logw, dtype=dtype).reshape(1, m)
    else:
        LW = np.empty((0, m), dtype)
    return AttentionBatch(items, int(n), int(m), LW, np.empty((0, m), dtype), 0, int(n + m))


def _unbroadcast(X, n_core):
    """``X`` with every leading axis of stride 0 cut to length 1 (a view).

    ``np.broadcast_to`` and ``torch.Tensor.expand`` repeat data with a
    stride of 0; read as length 1, such an axis broadcasts again without
    the copy that making the array contiguous would cost.
    """
    index = tuple(slice(0, 1) if X.strides[ax] == 0 and X.shape[ax] > 1 else slice(None)
                  for ax in range(X.ndim - n_core))
    return X[index] if index else X


def check_attention_array(X, name, *, min_ndim=2, dtype=_v.FLOAT_DTYPES):
    """Validate an attention array ``(..., rows, features)``: finite floats, native, contiguous.

    Leading axes broadcast (see :func:`broadcast_batch`); one of stride 0
    is kept as length 1, so that an expanded array is not copied. Returns
    the validated array, ``X`` itself (as an ndarray) when nothing had to
    change: a PyTorch CPU tensor is read through ``np.asarray`` without a
    copy.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn._batch import check_attention_array
    >>> K = np.broadcast_to(np.ones((1, 5, 3)), (8, 5, 3))
    >>> check_attention_array(K, "K").shape
    (1, 5, 3)
    """
    if X is None:
        raise ValueError(f"{name} is required, got None")
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name} must be an array of numbers, got a string")
    X = _v._native(X, name)
    if not isinstance(X, np.ndarray):
        X = _v._to_host(X, name)
    X = _v.check_numeric_kind(X, name)
    if X.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions (..., rows, "
                         f"features), got an array of shape {X.shape}")
    X = _unbroadcast(X, min_ndim)
    if X.shape[-min_ndim] < 1:
        raise ValueError(f"{name} must have at least one row, got shape {X.shape}")
    if min_ndim == 2 and X.shape[-1] < 1:
        raise ValueError(f"{name} must have at least one feature, got shape {X.shape}")
    if X.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {X.shape}")
    X = _v._as_float(X, dtype)
    _v._check_finite(X, name)
    return X


def broadcast_batch(**shapes):
    """The broadcast of the leading (batch) shapes, with an error naming the arrays.

    Examples
    --------
    >>> from nwattn._batch import broadcast_batch
    >>> broadcast_batch(Q=(2, 8), K=(2, 1), V=(2, 1))
    (2, 8)
    >>> broadcast_batch(Q=(2, 8), K=(3, 1))
    Traceback (most recent call last):
    ...
    ValueError: the leading (batch) dimensions do not broadcast: Q (2, 8), K (3, 1)
    """
    try:
        return tuple(np.broadcast_shapes(*shapes.values()))
    except ValueError:
        listed = ", ".join(f"{name} {tuple(s)}" for name, s in shapes.items())
        raise ValueError(f"the leading (batch) dimensions do not broadcast: {listed}") from None


def item_index(shape, full):
    """Flat index of the item of an array of batch shape ``shape`` for each item of ``full``.

    Examples
    --------
    >>> from nwattn._batch import item_index
    >>> item_index((2, 1), (2, 3)).tolist()
    [0, 0, 0, 1, 1, 1]
    """
    count = math.prod(shape)
    own = np.arange(count, dtype=np.int64).reshape(shape)
    return np.broadcast_to(own, full).ravel().copy()


def check_mask(mask, name, ndim, allow_float):
    """Validate a mask: booleans (or, with ``allow_float``, float biases), at least ``ndim``-D.

    A float mask must not hold NaN or ``+inf`` (``-inf`` excludes a pair).
    Returns the mask as an ndarray, 1-length axes padded in front up to
    ``ndim`` dimensions, stride-0 axes cut to length 1.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn._batch import check_mask
    >>> check_mask([True, False], "key_mask", 1, False).dtype
    dtype('bool')
    """
    if isinstance(mask, (str, bytes)):
        raise TypeError(f"{name} must be an array of booleans, got a string")
    M = _v._native(mask, name)
    if not isinstance(M, np.ndarray):
        M = _v._to_host(M, name)
    if M.dtype.kind != "b":
        if not allow_float:
            raise TypeError(f"{name} must be booleans (True: the key takes part), got dtype "
                            f"{M.dtype}")
        if M.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be booleans or float biases, got dtype {M.dtype}")
        M = M.astype(np.float64) if M.dtype.kind != "f" else M
        if np.isnan(M).any() or np.isposinf(M).any():
            raise ValueError(f"{name} must not contain NaN or +inf (use -inf, or False in a "
                             f"boolean mask, for excluded pairs)")
    if M.ndim < ndim:
        M = M.reshape((1,) * (ndim - M.ndim) + M.shape)
    return _unbroadcast(M, 0)


def _mask_log_weight(M, dtype):
    """A mask as additive log-weights: booleans as ``0``/``-inf``, floats as they are."""
    if M.dtype.kind == "b":
        return np.where(M, 0.0, -math.inf).astype(dtype)
    return M.astype(dtype, copy=False)


def key_log_weights(terms, m, full, dtype):
    """The rows ``LW`` of key log-weights and the row of each batch item.

    ``terms`` are arrays ``(..., m)`` (or with a last axis of 1) of log
    weights in float64, or boolean masks, to add up. Returns ``(LW, index)``
    with ``LW`` of shape ``(r, m)`` in ``dtype``, one row per distinct
    item of the terms' own broadcast batch shape, and ``index`` the row of
    each item of ``full`` (``None`` and no rows when there is no term).

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn._batch import key_log_weights
    >>> LW, idx = key_log_weights([np.array([[True, False], [True, True]])], 2, (2,),
    ...                           np.float64)
    >>> LW.tolist(), idx.tolist()
    ([[0.0, -inf], [0.0, 0.0]], [0, 1])
    """
    if not terms:
        return np.empty((0, m), dtype), None
    shape = broadcast_batch(**{f"term{k}": t.shape[:-1] for k, t in enumerate(terms)})
    total = None
    for t in terms:
        lw = np.where(t, 0.0, -math.inf) if t.dtype.kind == "b" else t.astype(np.float64)
        total = lw if total is None else total + lw
    LW = np.ascontiguousarray(np.broadcast_to(total, shape + (m,)).reshape(-1, m), dtype=dtype)
    return LW, item_index(shape, full)


def query_bias(M, n, m, full, dtype):
    """The rows ``BIAS`` of a query-dependent mask ``(..., n, m)`` and each item's first row.

    Returns ``(BIAS, first)``: ``BIAS`` of shape ``(r * n, m)`` in
    ``dtype`` (booleans as ``0``/``-inf``), ``first`` the first row of each
    item of ``full``; query ``i`` of an item reads row ``first + i``.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn._batch import query_bias
    >>> B, first = query_bias(np.tril(np.ones((2, 2), bool)), 2, 2, (3,), np.float64)
    >>> B.tolist(), first.tolist()
    ([[0.0, -inf], [0.0, 0.0]], [0, 0, 0])
    """
    shape = M.shape[:-2]
    full_mask = np.broadcast_to(M, shape + (n, m))
    BIAS = np.ascontiguousarray(_mask_log_weight(full_mask, dtype).reshape(-1, m))
    return BIAS, item_index(shape, full) * n

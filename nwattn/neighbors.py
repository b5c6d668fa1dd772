"""Nearest-neighbour bandwidths: each query's own radius, as loess defines it.

loess [1]_ does not fix one bandwidth: the neighbourhood of a query ``q`` is
its ``floor(span * n)`` nearest training points, and the kernel's radius is
the distance to the farthest of them (``span <= 1``). Where the data are
dense the fit is local, where they are sparse it reaches further, and a
query always has enough points for its polynomial. :func:`span_radius`
computes those radii; :func:`nwattn.ops.local_polynomial_state` takes them
as ``query_scale``.

References
----------
.. [1] W. S. Cleveland, E. Grosse and W. M. Shyu, "Local regression
   models", in *Statistical Models in S*, Wadsworth, 1992, chapter 8.
"""

import math
import numbers

import numpy as np

from . import _validation as _v

__all__ = ["span_radius", "span_neighbors", "radius_from_sq_distance"]

#: Below this many neighbours a k-d tree finds them; above it, a blocked
#: partial sort of every distance is cheaper than the tree's heaps and
#: never holds more than a block of distances.
_TREE_MAX_NEIGHBORS = 64

#: Distances held at once by the blocked search (float64 entries).
_BLOCK_ENTRIES = 1 << 22


def _check_span(span):
    if (isinstance(span, bool) or not isinstance(span, (numbers.Real, np.floating))
            or not math.isfinite(span) or not span > 0):
        raise ValueError(f"span must be a positive finite number, got {span!r}")
    return float(span)


def span_neighbors(span, n_keys):
    """Number of keys in a query's neighbourhood for ``span``: ``min(n, floor(span n))``.

    The product is rounded down as loess rounds it, in double precision.

    Examples
    --------
    >>> from nwattn.neighbors import span_neighbors
    >>> span_neighbors(0.3, 100), span_neighbors(2.0, 100)
    (30, 100)
    """
    span = _check_span(span)
    q = min(int(n_keys), int(math.floor(n_keys * span)))
    if q < 1:
        raise ValueError(
            f"span={span!r} is too small for n_samples={n_keys}: span * n_samples must be at "
            f"least 1")
    return q


def span_radius(queries, keys, span):
    """Radius of each query's loess neighbourhood.

    The Euclidean distance from the query to its ``q``-th nearest key,
    ``q = min(n_keys, floor(span * n_keys))``, times ``sqrt(span)`` when
    ``span > 1`` (loess enlarges the squared radius by ``span`` then). A
    radius of 0 (the ``q`` nearest keys all on the query) is replaced by a
    tiny one, ``1e-12`` times the extent of the keys: the keys on the query
    then carry all the weight, and the local design is singular for a
    polynomial of degree 1 or more.

    Parameters
    ----------
    queries : array_like of shape (n_queries, n_features)
    keys : array_like of shape (n_keys, n_features)
    span : float
        Positive; the fraction of the keys in each neighbourhood.

    Returns
    -------
    ndarray of shape (n_queries,)

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.neighbors import span_radius
    >>> X = np.arange(10.0)[:, None]
    >>> span_radius([[0.0], [4.5]], X, 0.3)  # 3 nearest points
    array([2. , 1.5])
    """
    Q = _v.check_float_array(queries, "queries", dtype=np.float64, min_rows=0)
    K = _v.check_float_array(keys, "keys", dtype=np.float64)
    _v.check_matching_shapes(Q, K)
    span = _check_span(span)
    q = span_neighbors(span, K.shape[0])
    mid = K.min(axis=0) / 2 + K.max(axis=0) / 2
    Qc, Kc = Q - mid, K - mid
    if K.shape[1] == 1 and Q.shape[0]:
        d2 = _sorted_window_sq_distance(Qc[:, 0], np.sort(Kc[:, 0]), q)
    elif q <= _TREE_MAX_NEIGHBORS:
        from sklearn.neighbors import KDTree

        dist, _ = KDTree(Kc).query(Qc, k=q)
        d2 = dist[:, -1] ** 2 if Q.shape[0] else np.empty(0)
    else:
        d2 = np.empty(Q.shape[0])
        block = max(1, _BLOCK_ENTRIES // K.shape[0])
        for i0 in range(0, Q.shape[0], block):
            D = np.zeros((min(block, Q.shape[0] - i0), K.shape[0]))
            for t in range(K.shape[1]):
                D += (Kc[:, t] - Qc[i0:i0 + block, t, None]) ** 2
            d2[i0:i0 + D.shape[0]] = np.partition(D, q - 1, axis=1)[:, q - 1]
    extent = float(np.abs(Kc).max()) if K.size else 0.0
    return radius_from_sq_distance(d2, span, extent)


def _sorted_window_sq_distance(x, keys, q):
    """Squared distance from each ``x`` to its ``q``-th nearest of the sorted ``keys``.

    With one feature the ``q`` nearest keys of a query are ``q``
    consecutive sorted keys, ``keys[l:l + q]``, and the ``q``-th distance
    is the smallest over ``l`` of ``max(x - keys[l], keys[l + q - 1] - x)``:
    the first term falls and the second rises with ``l``, so a binary
    search over ``l`` (all queries at once) finds it in ``O(log q)`` steps,
    ``O((n + m) log m)`` in all instead of every pairwise distance. The
    distances are the same differences of the same numbers, so the result
    equals the partial sort's bit for bit.
    """
    m = keys.shape[0]
    pos = np.searchsorted(keys, x)
    lo = np.clip(pos - q, 0, m - q)
    hi = np.clip(pos, 0, m - q)
    # Smallest l in [lo, hi] with keys[l + q - 1] - x >= x - keys[l]; the
    # optimum is there or at the l just before it.
    while True:
        active = lo < hi
        if not active.any():
            break
        mid = (lo + hi) // 2
        right = keys[mid + q - 1] - x >= x - keys[mid]
        hi = np.where(active & right, mid, hi)
        lo = np.where(active & ~right, mid + 1, lo)
    best = np.maximum(x - keys[lo], keys[lo + q - 1] - x)
    prev = np.maximum(lo - 1, 0)
    best = np.minimum(best, np.maximum(x - keys[prev], keys[prev + q - 1] - x))
    return best * best


def radius_from_sq_distance(sq_distance, span, extent):
    """The loess radius from the squared distance to the ``q``-th nearest key.

    The rule that ends :func:`span_radius`, for callers that find the
    ``q``-th nearest key themselves (over keys split in chunks, say):
    ``sqrt(sq_distance * max(1, span))``, floored at ``1e-12 * extent``.

    Parameters
    ----------
    sq_distance : ndarray of shape (n_queries,)
        Squared Euclidean distance from each query to its ``q``-th nearest
        key, ``q = span_neighbors(span, n_keys)``.
    span : float
        Positive; the fraction of the keys in each neighbourhood.
    extent : float
        Largest absolute coordinate of the keys once centred on the middle
        of their bounding box, ``(K - (K.min(0) / 2 + K.max(0) / 2))``
        (1 is used when it is 0).

    Returns
    -------
    ndarray of shape (n_queries,)

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.neighbors import radius_from_sq_distance
    >>> radius_from_sq_distance(np.array([4.0, 0.0]), 0.3, 4.5)
    array([2.0e+00, 4.5e-12])
    """
    radius = np.sqrt(np.asarray(sq_distance, np.float64) * max(1.0, _check_span(span)))
    return np.maximum(radius, 1e-12 * (extent if extent > 0 else 1.0))

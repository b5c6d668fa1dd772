"""The streaming softmax state of attention pooling, its merge and finaliser.

For every query the state holds

* ``max``: the running maximum score ``m``;
* ``norm``: ``l = sum_j w_j exp(s_j - m)``;
* ``acc``: ``a = sum_j w_j exp(s_j - m) (v_j - c)``;
* ``sq`` (optional): ``sum_j w_j exp(s_j - m) (v_j - c)**2``;

with ``c`` a per-column centre (by default the mean of the values). The
prediction is ``c + a / l``. Centring costs nothing (it is applied to the
values once) and keeps the variance ``sq / l - (a / l)**2`` free of the
cancellation that raw second moments suffer when the values' mean is large
compared with their spread.

Two states computed over disjoint sets of keys merge exactly; the merge is
associative and commutative up to rounding, so keys can be split across
threads, processes or machines and combined in any order.
"""

import numpy as np

from .exceptions import EmptyNeighborhoodWarning
from ._layout import StateLayout, merge_rows

__all__ = ["PoolState", "merge_states", "finalize_state", "finalize_slopes"]


class PoolState:
    """Per-query online-softmax state of attention pooling.

    A running maximum and one packed block of accumulators whose columns a
    :class:`~nwattn._layout.StateLayout` describes; ``norm``, ``acc`` and
    ``sq`` are views of that block.

    Parameters
    ----------
    max : ndarray of shape (n_queries,)
        Running maximum score, which the accumulators are relative to. For
        values whose squares would leave the floating-point range, it is
        raised by a multiple of ``log(2)`` so that the normaliser and the
        second moments stay representable; states still merge exactly.
    packed : ndarray of shape (n_queries, layout.width)
        The accumulators, relative to ``exp(max)``.
    layout : StateLayout
        What the columns of ``packed`` hold.
    center : ndarray of shape (n_outputs,)
        The centre subtracted from the values.
    values_1d : bool
        Whether the values were 1-D (the finaliser then returns 1-D arrays).
    queries : str, optional
        A fingerprint of the queries (their values and global index), so
        that states of different queries are never merged; ``None`` when
        unknown (the merge then trusts the caller).

    Attributes
    ----------
    norm : ndarray of shape (n_queries,)
        Sum of the key weights, relative to ``exp(max)``.
    acc : ndarray of shape (n_queries, n_outputs)
        Weighted sum of the centred values, relative to ``exp(max)``.
    sq : ndarray of shape (n_queries, n_outputs) or None
        Weighted sum of the squared centred values, when the variance is
        tracked.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import attention_pool_state, finalize_state
    >>> st = attention_pool_state([[0.0]], [[0.0], [1.0]], [0.0, 1.0])
    >>> st.n_empty
    0
    >>> finalize_state(st).round(4)
    array([0.3775])
    """

    __slots__ = ("max", "packed", "layout", "center", "values_1d", "queries")

    def __init__(self, max, packed, layout, center, values_1d, queries=None):
        self.max = max
        self.packed = packed
        self.layout = layout
        self.center = center
        self.values_1d = bool(values_1d)
        self.queries = queries

    def __repr__(self):
        return (f"PoolState(n_queries={self.max.shape[0]}, n_outputs={self.center.shape[0]}, "
                f"sq={'sq' in self.layout}, dtype={self.packed.dtype})")

    def __reduce__(self):
        return (PoolState, (self.max, self.packed, self.layout, self.center, self.values_1d,
                            self.queries))

    @property
    def norm(self):
        return self.packed[:, 0]

    @property
    def acc(self):
        return self.layout.view(self.packed, "acc")

    @property
    def sq(self):
        return self.layout.view(self.packed, "sq") if "sq" in self.layout else None

    @property
    def empty(self):
        """Boolean mask of the queries with no key in their neighbourhood."""
        return ~(self.norm > 0)

    @property
    def n_empty(self):
        """Number of queries with no key in their neighbourhood."""
        return int(np.count_nonzero(self.empty))

    def copy(self):
        """A deep copy, so that merging into it leaves the original intact."""
        return PoolState(self.max.copy(), self.packed.copy(), self.layout, self.center.copy(),
                         self.values_1d, self.queries)


def queries_fingerprint(Q, query_offset=0):
    """A short fingerprint of a block of queries and its global offset.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.state import queries_fingerprint
    >>> queries_fingerprint(np.zeros((2, 1))) == queries_fingerprint(np.zeros((2, 1)))
    True
    """
    import hashlib

    Q = np.ascontiguousarray(Q)
    h = hashlib.blake2b(digest_size=12)
    h.update(repr((Q.shape, Q.dtype.str, int(query_offset))).encode())
    h.update(Q.tobytes())
    return h.hexdigest()


def _check_state(state, name):
    """Refuse a malformed state before any compiled code touches its arrays.

    Fields can be reassigned, and states travel through pickles and user
    code; a short ``max`` or a ``packed`` block of the wrong width would
    otherwise be read or written past its end by the compiled merge.
    """
    if not isinstance(state, PoolState):
        raise TypeError(f"{name} must be a PoolState, got {type(state).__name__}")
    if not isinstance(state.layout, StateLayout):
        raise TypeError(f"{name}.layout must be a StateLayout, got "
                        f"{type(state.layout).__name__}")
    mx, packed, center = state.max, state.packed, state.center
    if not (isinstance(mx, np.ndarray) and mx.ndim == 1 and mx.dtype.kind == "f"):
        raise ValueError(f"{name}.max must be a 1-D float array, got "
                         f"{getattr(mx, 'shape', type(mx).__name__)}")
    n = mx.shape[0]
    width = state.layout.width
    if not (isinstance(packed, np.ndarray) and packed.shape == (n, width)
            and packed.dtype == mx.dtype):
        raise ValueError(
            f"{name}.packed must be a {mx.dtype} array of shape ({n}, {width}) to match "
            f"{name}.max and {name}.layout, got "
            f"{getattr(packed, 'dtype', '?')} {getattr(packed, 'shape', type(packed).__name__)}")
    p = state.layout.columns("acc").stop - state.layout.columns("acc").start
    if not (isinstance(center, np.ndarray) and center.shape == (p,) and center.dtype.kind == "f"):
        raise ValueError(f"{name}.center must be a float array of shape ({p},), got "
                         f"{getattr(center, 'shape', type(center).__name__)}")
    if not np.all(np.isfinite(center)):
        raise ValueError(f"{name}.center contains NaN or infinity")


def _recentred(state, center):
    """Express ``state`` relative to another centre (exact algebra)."""
    shift = (state.center - center).astype(state.packed.dtype)
    if not np.any(shift):
        return state
    out = state.copy()
    norm = state.norm[:, None]
    out.acc[...] = state.acc + shift * norm
    if state.sq is not None:
        # shift * norm first: for huge values the state keeps norm small
        # and sq large (see ops._state_in_value_units), and shift**2 alone
        # could overflow where shift**2 * norm does not.
        out.sq[...] = state.sq + 2.0 * shift * state.acc + shift * (shift * norm)
    if "B" in state.layout:
        # B_t = sum_j e_j s'_j (v_j - c): a new centre adds shift * A_t.
        A = state.layout.view(state.packed, "A")
        B = state.layout.view(out.packed, "B").reshape(A.shape + shift.shape)
        B += A[:, :, None] * shift
    out.center = center
    return out


def merge_states(a, b):
    """Merge two pooling states of the same queries over disjoint keys.

    Parameters
    ----------
    a, b : PoolState
        States of the same queries, computed over disjoint sets of keys with
        the same kernel and bandwidth. Their centres may differ.

    Returns
    -------
    PoolState
        The state over the union of the keys, relative to ``a``'s centre.
        Neither input is modified.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import attention_pool, attention_pool_state, merge_states, finalize_state
    >>> rng = np.random.default_rng(0)
    >>> Q, K, V = rng.normal(size=(5, 2)), rng.normal(size=(8, 2)), rng.normal(size=8)
    >>> left = attention_pool_state(Q, K[:3], V[:3])
    >>> right = attention_pool_state(Q, K[3:], V[3:])
    >>> np.allclose(finalize_state(merge_states(left, right)), attention_pool(Q, K, V))
    True
    """
    for name, st in (("a", a), ("b", b)):
        _check_state(st, name)
    if a.acc.shape != b.acc.shape:
        raise ValueError(
            f"states cover different queries or outputs: {a.acc.shape} and {b.acc.shape}"
        )
    if a.layout != b.layout:
        if (a.sq is None) != (b.sq is None):
            raise ValueError("one state tracks the variance and the other does not")
        raise ValueError(f"states hold different accumulators: {a.layout} and {b.layout}")
    if a.queries is not None and b.queries is not None and a.queries != b.queries:
        raise ValueError("the states are of different queries (same count, other values or "
                         "offsets): only states of the same queries over disjoint keys merge")
    dtype = np.result_type(a.packed, b.packed)
    out = PoolState(a.max.astype(dtype), a.packed.astype(dtype), a.layout, a.center.copy(),
                    a.values_1d, a.queries if a.queries is not None else b.queries)
    b = _recentred(b, a.center)
    merge_rows(out.max, out.packed, b.max.astype(dtype), b.packed.astype(dtype),
               out.layout.powers)
    return out


def finalize_state(state, return_std=False, warn=True):
    """Turn a pooling state into predictions.

    Parameters
    ----------
    state : PoolState
        The state of every query over all keys.
    return_std : bool, default=False
        Also return the weighted standard deviation of the values around
        each prediction (the state must track the variance).
    warn : bool, default=True
        Emit :class:`~nwattn.exceptions.EmptyNeighborhoodWarning` when some
        query has no key in its neighbourhood.

    Returns
    -------
    pred : ndarray of shape (n_queries,) or (n_queries, n_outputs)
        ``c + a / l``; NaN for queries with an empty neighbourhood.
    std : ndarray, same shape as ``pred``
        Only when ``return_std=True``.

    Examples
    --------
    >>> from nwattn.ops import attention_pool_state, finalize_state
    >>> st = attention_pool_state([[0.5]], [[0.0], [1.0]], [0.0, 2.0], return_std=True)
    >>> finalize_state(st, return_std=True)
    (array([1.]), array([1.]))
    """
    _check_state(state, "state")
    if "B" in state.layout:
        raise TypeError("state holds leave-one-out slopes: finalise it with finalize_slopes")
    if return_std and state.sq is None:
        raise ValueError("return_std=True needs a state computed with return_std=True")
    empty = state.empty
    norm = np.where(empty, 1, state.norm)[:, None]
    pred = state.center + state.acc / norm
    pred[empty] = np.nan
    n_empty = int(np.count_nonzero(empty))
    if n_empty and warn:
        import warnings

        warnings.warn(
            f"{n_empty} of {empty.shape[0]} queries have no key inside the kernel's "
            "support; their predictions are NaN",
            EmptyNeighborhoodWarning,
            stacklevel=3,
        )
    if state.values_1d:
        pred = pred[:, 0]
    if not return_std:
        return pred
    std = _weighted_std(state.acc, state.sq, norm)
    std[empty] = np.nan
    if state.values_1d:
        std = std[:, 0]
    return pred, std


def _weighted_std(acc, sq, norm):
    """``sqrt(sq / norm - (acc / norm)**2)``, per row, at any scale of the values.

    The variance is formed at the scale ``t``, a power of two near
    ``sqrt(sq / norm)`` for each row: ``sq / t`` and ``norm * t`` are then
    near ``sqrt(sq * norm)`` and ``acc / (norm * t)`` at most about 1, so
    nothing overflows or vanishes even where ``sq / norm`` itself would
    (values beyond about 1e154, or below about 1e-154, in float64).
    Scaling by a power of two is exact, so where the plain formula works
    this gives the same bits.
    """
    _, e_sq = np.frexp(sq)
    _, e_norm = np.frexp(norm)
    k = (e_sq - e_norm) // 2
    with np.errstate(over="ignore", under="ignore"):
        nt = np.ldexp(norm, k)
        mean_t = acc / nt
        var_t = np.ldexp(sq, -k) / nt - mean_t * mean_t
    return np.ldexp(np.sqrt(np.maximum(var_t, 0)), k)


def finalize_slopes(state):
    """Leave-one-out predictions and their derivatives from a slopes state.

    Parameters
    ----------
    state : PoolState
        From :func:`nwattn.ops.loo_slopes_state` (merged over all keys).

    Returns
    -------
    norm : ndarray of shape (n_queries,)
        The normaliser (0 for a point with no other point in its
        neighbourhood).
    pred : ndarray of shape (n_queries, n_outputs)
        Leave-one-out predictions in the targets' units; NaN where ``norm``
        is 0.
    dpred : ndarray of shape (n_queries, n_features, n_outputs)
        ``d pred / d log h_t``; 0 where ``norm`` is 0.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import loo_slopes_state, finalize_slopes
    >>> X = np.array([[0.0], [1.0]])
    >>> finalize_slopes(loo_slopes_state(X, X, [0.0, 1.0]))[1].ravel()
    array([1., 0.])
    """
    _check_state(state, "state")
    if "B" not in state.layout:
        raise TypeError("state must be a PoolState from loo_slopes_state")
    A = state.layout.view(state.packed, "A")
    p = state.center.shape[0]
    B = state.layout.view(state.packed, "B").reshape(A.shape + (p,))
    norm = state.norm
    ok = norm > 0
    safe = np.where(ok, norm, 1.0)
    mean = np.where(ok[:, None], state.acc / safe[:, None], np.nan)
    dpred = np.where(ok[:, None, None],
                     (B - mean[:, None, :] * A[:, :, None]) / safe[:, None, None], 0.0)
    return norm, mean + state.center, dpred

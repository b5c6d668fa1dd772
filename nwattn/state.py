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

from typing import NamedTuple

import numpy as np

from .exceptions import EmptyNeighborhoodWarning
from ._cpu.pool import merge_into

__all__ = ["PoolState", "merge_states", "finalize_state"]


class PoolState(NamedTuple):
    """Per-query online-softmax state of attention pooling.

    Attributes
    ----------
    max : ndarray of shape (n_queries,)
        Running maximum score; ``-inf`` for a query that met no key in its
        kernel's support.
    norm : ndarray of shape (n_queries,)
        Sum of the key weights, relative to ``exp(max)``.
    acc : ndarray of shape (n_queries, n_outputs)
        Weighted sum of the centred values, relative to ``exp(max)``.
    sq : ndarray of shape (n_queries, n_outputs) or None
        Weighted sum of the squared centred values, when the variance is
        tracked.
    center : ndarray of shape (n_outputs,)
        The centre subtracted from the values.
    values_1d : bool
        Whether the values were 1-D (the finaliser then returns 1-D arrays).

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

    max: np.ndarray
    norm: np.ndarray
    acc: np.ndarray
    sq: object
    center: np.ndarray
    values_1d: bool

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
        return PoolState(self.max.copy(), self.norm.copy(), self.acc.copy(),
                         None if self.sq is None else self.sq.copy(),
                         self.center.copy(), self.values_1d)


def _recentred(state, center):
    """Express ``state`` relative to another centre (exact algebra)."""
    shift = (state.center - center).astype(state.acc.dtype)
    if not np.any(shift):
        return state
    norm = state.norm[:, None]
    acc = state.acc + shift * norm
    sq = None
    if state.sq is not None:
        sq = state.sq + 2.0 * shift * state.acc + shift * shift * norm
    return state._replace(acc=acc, sq=sq, center=center)


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
        if not isinstance(st, PoolState):
            raise TypeError(f"{name} must be a PoolState, got {type(st).__name__}")
    if a.acc.shape != b.acc.shape:
        raise ValueError(
            f"states cover different queries or outputs: {a.acc.shape} and {b.acc.shape}"
        )
    if (a.sq is None) != (b.sq is None):
        raise ValueError("one state tracks the variance and the other does not")
    dtype = np.result_type(a.acc, b.acc)
    out = a.copy()
    out = out._replace(max=out.max.astype(dtype), norm=out.norm.astype(dtype),
                       acc=out.acc.astype(dtype),
                       sq=None if out.sq is None else out.sq.astype(dtype))
    b = _recentred(b, a.center)
    empty_sq = np.empty((out.acc.shape[0], 0), dtype)
    merge_into(out.max, out.norm, out.acc, empty_sq if out.sq is None else out.sq,
               b.max.astype(dtype), b.norm.astype(dtype), b.acc.astype(dtype),
               empty_sq if b.sq is None else b.sq.astype(dtype))
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
    if not isinstance(state, PoolState):
        raise TypeError(f"state must be a PoolState, got {type(state).__name__}")
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
    mean = state.acc / norm
    var = np.maximum(state.sq / norm - mean * mean, 0)
    std = np.sqrt(var)
    std[empty] = np.nan
    if state.values_1d:
        std = std[:, 0]
    return pred, std

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
from ._layout import StateLayout, merge_rows

__all__ = ["PoolState", "LocalInfo", "merge_states", "finalize_state", "finalize_slopes",
           "finalize_local", "solve_local", "LocalFit", "solve_bias_corrected", "BiasCorrectedFit",
           "SingularDesignWarning"]


class LocalInfo(NamedTuple):
    """What a state of local polynomial moments needs beyond its accumulators.

    Attributes
    ----------
    degree : int
        Degree of the local polynomial (0 to 3).
    bandwidth : ndarray of shape (n_queries, n_features)
        Each query's bandwidth per feature: the unit of the offsets its
        moments were taken in (the slopes are divided by it).
    """

    degree: int
    bandwidth: np.ndarray

    def __eq__(self, other):
        return (isinstance(other, LocalInfo) and self.degree == other.degree
                and np.array_equal(self.bandwidth, other.bandwidth))

    def __ne__(self, other):
        return not self == other

    __hash__ = None


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
    center : ndarray of shape (n_outputs,) or (n_queries, n_outputs)
        The centre subtracted from the values; one per query when the
        queries' batch items have values of their own (attention arrays
        with leading dimensions).
    values_1d : bool
        Whether the values were 1-D (the finaliser then returns 1-D arrays).
    queries : str, optional
        A fingerprint of the queries (their values and global index), so
        that states of different queries are never merged; ``None`` when
        unknown (the merge then trusts the caller).
    local : LocalInfo, optional
        For the moments of a local polynomial
        (:func:`nwattn.ops.local_polynomial_state`): its degree and each
        query's bandwidth; ``None`` for a pooling state.
    batch_shape : tuple of int, default=()
        The leading (batch) dimensions of attention arrays: the queries are
        then ``prod(batch_shape)`` items of ``n_queries / prod(batch_shape)``
        queries each, item after item, and :func:`finalize_state` returns
        arrays of shape ``batch_shape + (n, ...)``.

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

    __slots__ = ("max", "packed", "layout", "center", "values_1d", "queries", "local",
                 "batch_shape")

    def __init__(self, max, packed, layout, center, values_1d, queries=None, local=None,
                 batch_shape=()):
        self.max = max
        self.packed = packed
        self.layout = layout
        self.center = center
        self.values_1d = bool(values_1d)
        self.queries = queries
        self.local = local
        self.batch_shape = tuple(int(b) for b in batch_shape)

    def __repr__(self):
        degree = "" if self.local is None else f", degree={self.local.degree}"
        batch = f", batch_shape={self.batch_shape}" if self.batch_shape else ""
        return (f"PoolState(n_queries={self.max.shape[0]}, n_outputs={self.center.shape[-1]}, "
                f"sq={'sq' in self.layout}{degree}{batch}, dtype={self.packed.dtype})")

    def __reduce__(self):
        return (PoolState, (self.max, self.packed, self.layout, self.center, self.values_1d,
                            self.queries, self.local, self.batch_shape))

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
                         self.values_1d, self.queries, self.local, self.batch_shape)


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
    shapes = [(p,)] if "moments" in state.layout or "B" in state.layout else [(p,), (n, p)]
    if not (isinstance(center, np.ndarray) and center.shape in shapes
            and center.dtype.kind == "f"):
        allowed = " or ".join(str(s) for s in shapes)
        raise ValueError(f"{name}.center must be a float array of shape {allowed}, got "
                         f"{getattr(center, 'shape', type(center).__name__)}")
    batch = getattr(state, "batch_shape", ())
    if not (isinstance(batch, tuple) and n % max(1, int(np.prod(batch))) == 0):
        raise ValueError(f"{name}.batch_shape {batch!r} does not divide its {n} queries")
    if not np.all(np.isfinite(center)):
        raise ValueError(f"{name}.center contains NaN or infinity")
    local = state.local
    if ("cross" in state.layout or "moments" in state.layout) != (
            local is not None and local.degree > 0):
        raise ValueError(f"{name}.local must say the degree of the moments its layout holds")
    if local is not None:
        if not isinstance(local, LocalInfo):
            raise TypeError(f"{name}.local must be a LocalInfo, got {type(local).__name__}")
        bw = local.bandwidth
        if not (isinstance(bw, np.ndarray) and bw.ndim == 2 and bw.shape[0] == n
                and bw.dtype.kind == "f" and np.all(bw > 0) and np.all(np.isfinite(bw))):
            raise ValueError(f"{name}.local.bandwidth must be a positive finite array of shape "
                             f"({n}, n_features)")


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
    if "cross" in state.layout:
        # R[a] = sum_j w_j phi_a(z_j) (v_j - c): a new centre adds shift * G[0, a],
        # and G[0, 1:] is the start of the moments block.
        cross = state.layout.view(out.packed, "cross").reshape(norm.shape[0], -1, shift.shape[0])
        mom = state.layout.view(state.packed, "moments")[:, :cross.shape[1]]
        cross += mom[:, :, None] * shift
    if "dR" in state.layout:
        # Likewise for the derivatives, feature by feature: dR_t[a] gains
        # shift * dG_t[0, a], the first P entries of feature t's triangle.
        n, p = norm.shape[0], shift.shape[0]
        dR = state.layout.view(out.packed, "dR").reshape(n, -1, p)
        d_feat = state.local.bandwidth.shape[1]
        P = dR.shape[1] // d_feat
        dG = state.layout.view(state.packed, "dG").reshape(n, d_feat, -1)[:, :, :P]
        dR += dG.reshape(n, d_feat * P)[:, :, None] * shift
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
    if (a.local is None) != (b.local is None) or (a.local is not None and a.local != b.local):
        raise ValueError("the states are of local polynomials of different degrees or "
                         "bandwidths: only states of the same fit over disjoint keys merge")
    if a.batch_shape != b.batch_shape:
        raise ValueError(f"the states have different batch shapes: {a.batch_shape} and "
                         f"{b.batch_shape}")
    if a.queries is not None and b.queries is not None and a.queries != b.queries:
        raise ValueError("the states are of different queries (same count, other values or "
                         "offsets): only states of the same queries over disjoint keys merge")
    dtype = np.result_type(a.packed, b.packed)
    out = PoolState(a.max.astype(dtype), a.packed.astype(dtype), a.layout, a.center.copy(),
                    a.values_1d, a.queries if a.queries is not None else b.queries, a.local,
                    a.batch_shape)
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
        ``c + a / l``; NaN for queries with an empty neighbourhood (no key
        in the kernel's support, or every key masked). A state of
        attention arrays gives ``batch_shape + (n, n_outputs)``.
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
    if "cross" in state.layout:
        raise TypeError("state holds the moments of a local polynomial: finalise it with "
                        "finalize_local")
    if return_std and state.sq is None:
        raise ValueError("return_std=True needs a state computed with return_std=True")
    empty = state.empty
    norm = np.where(empty, 1, state.norm)[:, None]
    # c + a / l with one array of the predictions' size, not two.
    pred = state.acc / norm
    pred += state.center
    pred[empty] = np.nan
    n_empty = int(np.count_nonzero(empty))
    if n_empty and warn:
        import warnings

        warnings.warn(
            f"{n_empty} of {empty.shape[0]} queries have no key inside the kernel's "
            "support (or every key masked); their predictions are NaN",
            EmptyNeighborhoodWarning,
            stacklevel=3,
        )
    if state.values_1d:
        pred = pred[:, 0]
    pred = _unbatched(pred, state.batch_shape)
    if not return_std:
        return pred
    std = _weighted_std(state.acc, state.sq, norm)
    std[empty] = np.nan
    if state.values_1d:
        std = std[:, 0]
    return pred, _unbatched(std, state.batch_shape)


def _unbatched(x, batch_shape):
    """Rows of every batch item, item after item, as an array ``batch_shape + (n, ...)``."""
    if not batch_shape:
        return x
    return x.reshape(batch_shape + (-1,) + x.shape[1:])


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


# ------------------------------------------------------- local polynomials


def _rcond(dtype):
    """Reciprocal condition number below which a local design counts as singular.

    ``eps**(2/3)`` of the precision the moments were summed in (about
    4e-11 in float64, 2e-5 in float32): beyond it the solve would magnify
    the rounding of the moments into the fit.
    """
    return float(np.finfo(dtype).eps) ** (2.0 / 3.0)


class LocalFit(NamedTuple):
    """Solved local polynomials (see :func:`solve_local`).

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import local_polynomial_state
    >>> from nwattn.state import solve_local
    >>> X = np.linspace(0, 1, 30)[:, None]
    >>> fit = solve_local(local_polynomial_state([[0.2], [0.8]], X, X[:, 0] ** 2,
    ...                                          bandwidth=0.3, degree=2))
    >>> fit.pred[:, 0].round(6), fit.coef.shape
    (array([0.04, 0.64]), (2, 3))

    Attributes
    ----------
    pred : ndarray of shape (n_queries, n_outputs)
        Fitted values in the values' units; NaN where ``degree < 0``.
    gradient : ndarray of shape (n_queries, n_features, n_outputs)
        Slopes of the fitted polynomial at the query in the inputs' units;
        NaN where ``degree < 1``.
    degree : ndarray of int, shape (n_queries,)
        Degree fitted at each query: the state's, lower where the design
        was singular and lowering was allowed, -1 where no polynomial
        could be fitted (no key in the neighbourhood, or a singular design
        that was not lowered).
    """

    pred: np.ndarray
    gradient: np.ndarray
    degree: np.ndarray
    #: ``d pred / d log h_t``, shape (n_queries, n_features, n_outputs), for
    #: a state with the moments' slopes (0 where ``degree < 0``); else None.
    dpred: object = None
    #: Standard errors of ``pred``, shape (n_queries, r), one column per
    #: row of the state's ``key_std`` (NaN where ``degree < 0``), for a
    #: state with the sandwich's middle; else None.
    se: object = None
    #: ``(G^-1)[0, 0]`` of each query in the state's weight units, shape
    #: (n_queries,): a key at the query's own position with weight ``w``
    #: (relative to ``exp(max)``) has leverage ``w * influence`` in its fit.
    influence: object = None
    #: The equivalent kernel: ``coef[i] . phi(z)`` times a key's weight,
    #: divided by the normaliser, is its weight in the fit at query ``i``
    #: (shape (n_queries, P) in the state's basis; zero beyond a lowered
    #: degree's basis, NaN where ``degree < 0``). See
    #: :func:`nwattn.ops.smoother_pool`.
    coef: object = None


def _basis_powers(d, degree):
    """Power of each ``z_t`` in each function of the basis, shape (P, d)."""
    from ._layout import n_basis

    K = np.zeros((n_basis(d, degree), d), dtype=np.int64)
    r = 1
    if degree >= 1:
        K[1:1 + d] = np.eye(d, dtype=np.int64)
        r = 1 + d
    if degree >= 2:
        for a in range(d):
            for b in range(a, d):
                K[r, a] += 1
                K[r, b] += 1
                r += 1
    if degree >= 3:
        for a in range(d):
            for b in range(a, d):
                for c in range(b, d):
                    K[r, a] += 1
                    K[r, b] += 1
                    K[r, c] += 1
                    r += 1
    return K


def _unpack_moments(state):
    """``(norm, G, R, M)`` of a moments state, in float64.

    ``G`` (n, P, P) and ``R`` (n, P, p) are the Gram matrix and the cross
    moments; ``M`` (n, r, P, P) the sandwich middles, or None.
    """
    from ._layout import n_basis

    n, d = state.local.bandwidth.shape
    p = state.center.shape[0]
    P = n_basis(d, state.local.degree)
    packed = state.packed.astype(np.float64)
    norm = packed[:, 0]
    G = np.empty((n, P, P))
    iu = np.triu_indices(P)
    upper = np.concatenate([norm[:, None], state.layout.view(packed, "moments")], axis=1)
    G[:, iu[0], iu[1]] = upper
    G[:, iu[1], iu[0]] = upper
    R = np.empty((n, P, p))
    R[:, 0] = state.layout.view(packed, "acc")
    if P > 1:
        R[:, 1:] = state.layout.view(packed, "cross").reshape(n, P - 1, p)
    M = None
    if "meat" in state.layout:
        tri = state.layout.view(packed, "meat").reshape(n, -1, len(iu[0]))
        M = np.empty((n, tri.shape[1], P, P))
        M[:, :, iu[0], iu[1]] = tri
        M[:, :, iu[1], iu[0]] = tri
    return norm, G, R, M


def _sandwich_se(M, L, norm):
    """``sqrt(l' M l) / norm`` for each query and column of ``M``.

    ``L`` (n, P) are the coefficients of the equivalent kernel in the
    basis, for ``G`` divided by the normaliser; dividing by ``norm``
    twice, one at a time, keeps huge or tiny normalisers representable.
    """
    v = np.einsum("ka,krab,kb->kr", L, M[:, :, :L.shape[1], :L.shape[1]], L)
    return np.sqrt(np.maximum(v / norm[:, None], 0.0) / norm[:, None])


def solve_local(state, lower_degree=False):
    """Solve the weighted least-squares problem of every query of a moments state.

    The Gram matrix ``G`` and cross moments ``R`` of a query are rebuilt
    from its packed columns, divided by the normaliser (so ``G[0, 0] = 1``
    whatever the weights' scale) and equilibrated by the square roots of
    the diagonal, as loess does [1]_; the design is singular when the
    smallest eigenvalue of the equilibrated ``G`` is below
    ``eps**(2/3)`` times its largest. The leading blocks of ``G`` and ``R``
    are the moments of the lower degrees (the basis is ordered by degree),
    so a singular query can be refitted at a lower degree from the same
    state.

    Parameters
    ----------
    state : PoolState
        From :func:`nwattn.ops.local_polynomial_state`, merged over all keys.
    lower_degree : bool, default=False
        Fit a query whose design is singular at the state's degree at the
        highest degree that is not.

    For a state with the moments' slopes (``slopes=True``) the derivative
    of each prediction with respect to ``theta_t = log h_t`` follows from
    ``d beta = G^-1 (dR_t - dG_t beta)``: the offsets ``z_t`` scale as
    ``exp(-theta_t)``, so a basis function with ``z_t`` to the power
    ``k`` contributes ``-k`` times itself besides the kernel's weights
    (``dG_t[a, b] = A_t[a, b] - (k_a + k_b) G[a, b]``).

    Returns
    -------
    LocalFit

    References
    ----------
    .. [1] W. S. Cleveland, E. Grosse and W. M. Shyu, "Local regression
       models", in *Statistical Models in S*, Wadsworth, 1992, chapter 8.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import local_polynomial_state
    >>> from nwattn.state import solve_local
    >>> X = np.linspace(0, 1, 50)[:, None]
    >>> y = 1.0 + 2.0 * X[:, 0]
    >>> fit = solve_local(local_polynomial_state([[0.5]], X, y, bandwidth=0.2,
    ...                                          key_std=np.full(50, 0.1)))
    >>> fit.pred.round(6), fit.gradient[0, 0].round(6), fit.degree
    (array([[2.]]), array([2.]), array([1]))
    >>> bool(0 < fit.se[0, 0] < 0.1)  # the noise of 0.1, averaged over the window
    True
    """
    from ._layout import n_basis

    _check_state(state, "state")
    if state.local is None:
        raise TypeError("state must hold the moments of a local polynomial "
                        "(from local_polynomial_state)")
    degree = state.local.degree
    bw = state.local.bandwidth
    n, d = bw.shape
    p = state.center.shape[0]
    P = n_basis(d, degree)
    packed = state.packed.astype(np.float64)
    norm, G, R, M = _unpack_moments(state)
    iu = np.triu_indices(P)
    se = None if M is None else np.full((n, M.shape[1]), np.nan)
    influence = np.full(n, np.nan)
    coefs = np.full((n, P), np.nan)
    pred = np.full((n, p), np.nan)
    grad = np.full((n, d, p), np.nan)
    fitted = np.full(n, -1, dtype=np.int64)
    with_slopes = "dG" in state.layout
    if with_slopes:
        T = P * (P + 1) // 2
        # The parameters with slopes: the continuous bandwidths, then the
        # discrete features' smoothing parameters, which scale no offset
        # (their columns of the basis powers are 0).
        n_par = state.layout.view(packed, "dG").shape[1] // T
        dG = np.empty((n, n_par, P, P))
        tri = state.layout.view(packed, "dG").reshape(n, n_par, T)
        dG[:, :, iu[0], iu[1]] = tri
        dG[:, :, iu[1], iu[0]] = tri
        dR = state.layout.view(packed, "dR").reshape(n, n_par, P, p)
        powers = np.zeros((P, n_par), dtype=np.int64)
        powers[:, :d] = _basis_powers(d, degree)
        dpred = np.zeros((n, n_par, p))
    todo = np.flatnonzero(norm > 0)
    rcond = _rcond(state.packed.dtype)
    for g in range(degree, -1, -1):
        if todo.size == 0:
            break
        Pg = n_basis(d, g)
        scale = norm[todo, None, None]
        Gg = G[todo, :Pg, :Pg] / scale
        Rg = R[todo, :Pg] / scale
        ok, D, Ge = _equilibrated(Gg, rcond)
        rows = todo[ok]
        if rows.size:
            # One solve for the coefficients and for G^-1 e_0, the
            # equivalent kernel's coefficients (G divided by the normaliser).
            e0 = np.zeros((rows.size, Pg, 1))
            e0[:, 0] = 1.0
            y = np.linalg.solve(Ge[ok], D[ok][:, :, None] * np.concatenate([Rg[ok], e0], axis=2))
            beta = D[ok][:, :, None] * y[:, :, :p]
            coef = D[ok] * y[:, :, p]
            pred[rows] = beta[:, 0]
            influence[rows] = coef[:, 0] / norm[rows]
            coefs[rows] = 0.0
            coefs[rows, :Pg] = coef
            if g >= 1:
                grad[rows] = beta[:, 1:1 + d] / bw[rows][:, :, None]
            fitted[rows] = g
            if se is not None:
                se[rows] = _sandwich_se(M[rows], coef, norm[rows])
            if with_slopes:
                s = norm[rows, None, None, None]
                k = powers[:Pg]
                kk = k[:, None, :] + k[None, :, :]  # (Pg, Pg, d)
                dGg = (dG[rows, :, :Pg, :Pg] / s
                       - np.moveaxis(kk, 2, 0)[None] * (G[rows, None, :Pg, :Pg] / s))
                dRg = dR[rows, :, :Pg] / s - k.T[None, :, :, None] * (R[rows, None, :Pg] / s)
                rhs = dRg - dGg @ beta[:, None]  # (rows, d, Pg, p)
                rhs = np.moveaxis(rhs, 1, 2).reshape(rows.size, Pg, n_par * p)
                ye = np.linalg.solve(Ge[ok], D[ok][:, :, None] * rhs)
                dbeta0 = D[ok][:, 0, None] * ye[:, 0]
                dpred[rows] = dbeta0.reshape(rows.size, n_par, p)
        todo = todo[~ok]
        if not lower_degree:
            break
    pred += state.center
    return LocalFit(pred, grad, fitted, dpred if with_slopes else None, se, influence, coefs)


class BiasCorrectedFit(NamedTuple):
    """A local polynomial and its robust bias correction (see :func:`solve_bias_corrected`).

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import local_polynomial_state
    >>> from nwattn.state import solve_bias_corrected
    >>> X = np.linspace(0, 1, 40)[:, None]
    >>> fit = solve_bias_corrected(local_polynomial_state([[1.0]], X, X[:, 0] ** 2,
    ...                                                   bandwidth=0.3, degree=2))
    >>> fit.pred_bc.round(6)  # a local line's bias at the edge, removed
    array([[1.]])

    Attributes
    ----------
    pred : ndarray of shape (n_queries, n_outputs)
        The fit of the state's degree minus one (``tau.us`` in nprobust).
    pred_bc : ndarray of shape (n_queries, n_outputs)
        ``pred`` minus its estimated leading bias (``tau.bc``).
    se : ndarray of shape (n_queries, r)
        Standard error of ``pred`` (``se.us``); ``r = 0`` columns for a
        state without the sandwich (no ``key_std``).
    se_rb : ndarray of shape (n_queries, r)
        Standard error of ``pred_bc`` that accounts for the bias estimate
        (``se.rb``).
    coef : ndarray of shape (n_queries, P)
        The equivalent kernel of ``pred_bc`` in the state's basis (see
        :attr:`LocalFit.coef`).

    NaN where the design of either degree is singular.
    """

    pred: np.ndarray
    pred_bc: np.ndarray
    se: np.ndarray
    se_rb: np.ndarray
    coef: np.ndarray


def solve_bias_corrected(state):
    """Fit of degree ``g`` with its robust bias correction, from one state of degree ``g + 1``.

    The leading bias of a local polynomial of degree ``g`` at bandwidth
    ``h`` comes from the terms of degree ``g + 1`` of the regression
    function; robust bias correction [1]_ estimates them with a fit of
    degree ``g + 1`` (here at the same bandwidth, nprobust's ``rho = 1``)
    and subtracts their contribution, ``l' C beta_rest``, where
    ``l = G_g^-1 e_0`` is the equivalent kernel's coefficient vector of
    the degree-``g`` fit, ``C`` the Gram block between the degree-``g``
    basis and the degree-``g + 1`` terms and ``beta_rest`` those terms'
    coefficients. The corrected estimate is again linear in the values,
    with coefficient vector ``v = (l, 0) - G^-1 (0, C' l)`` in the
    degree-``g + 1`` basis; its standard error ``sqrt(v' M v)`` therefore
    accounts for the variability of the bias estimate, which is what
    makes the intervals built on it keep their coverage at the
    mean-squared-error optimal bandwidth.

    Parameters
    ----------
    state : PoolState
        From :func:`nwattn.ops.local_polynomial_state` with ``degree`` one
        more than the fit's (and ``key_std`` for the standard errors),
        merged over all keys.

    Returns
    -------
    BiasCorrectedFit

    References
    ----------
    .. [1] S. Calonico, M. D. Cattaneo and M. H. Farrell, "On the effect of
       bias estimation on coverage accuracy in nonparametric inference",
       Journal of the American Statistical Association 113(522), 2018,
       767-779.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import local_polynomial_state
    >>> from nwattn.state import solve_bias_corrected
    >>> X = np.linspace(0, 1, 200)[:, None]
    >>> y = np.sin(6 * X[:, 0])
    >>> st = local_polynomial_state([[0.5]], X, y, bandwidth=0.1, degree=2,
    ...                             key_std=np.full(200, 0.1))
    >>> fit = solve_bias_corrected(st)
    >>> bool(abs(fit.pred_bc[0, 0] - np.sin(3)) < abs(fit.pred[0, 0] - np.sin(3)))
    True
    >>> bool(fit.se_rb[0, 0] > fit.se[0, 0])
    True
    """
    from ._layout import n_basis

    _check_state(state, "state")
    if state.local is None or state.local.degree < 1:
        raise ValueError("state must hold local polynomial moments of degree >= 1 (the "
                         "degree of the fit plus one)")
    q = state.local.degree
    n, d = state.local.bandwidth.shape
    norm, G, R, M = _unpack_moments(state)
    P, Pp = n_basis(d, q), n_basis(d, q - 1)
    p, r = R.shape[2], (0 if M is None else M.shape[1])
    out = [np.full((n, p), np.nan), np.full((n, p), np.nan), np.full((n, r), np.nan),
           np.full((n, r), np.nan), np.full((n, P), np.nan)]
    rows = np.flatnonzero(norm > 0)
    if rows.size == 0:
        return BiasCorrectedFit(*out)
    scale = norm[rows, None, None]
    Gq = G[rows] / scale
    Rq = R[rows] / scale
    rcond = _rcond(state.packed.dtype)
    ok = _well_posed(Gq, rcond) & _well_posed(Gq[:, :Pp, :Pp], rcond)
    rows, Gq, Rq = rows[ok], Gq[ok], Rq[ok]
    if rows.size == 0:
        return BiasCorrectedFit(*out)
    e0 = np.zeros((rows.size, Pp))
    e0[:, 0] = 1.0
    lp = np.linalg.solve(Gq[:, :Pp, :Pp], e0[:, :, None])[:, :, 0]
    beta_q = np.linalg.solve(Gq, Rq)
    C = Gq[:, :Pp, Pp:]
    Cl = np.einsum("kab,ka->kb", C, lp)  # C' l
    pred = np.einsum("ka,kap->kp", lp, Rq[:, :Pp])
    pred_bc = pred - np.einsum("kb,kbp->kp", Cl, beta_q[:, Pp:])
    rest = np.zeros((rows.size, P, 1))
    rest[:, Pp:, 0] = Cl
    v = -np.linalg.solve(Gq, rest)[:, :, 0]
    v[:, :Pp] += lp
    out[0][rows] = pred + state.center
    out[1][rows] = pred_bc + state.center
    out[4][rows] = v
    if M is not None:
        out[2][rows] = _sandwich_se(M[rows], lp, norm[rows])
        out[3][rows] = _sandwich_se(M[rows], v, norm[rows])
    return BiasCorrectedFit(*out)


def _equilibrated(G, rcond):
    """``(ok, D, Ge)``: which Gram matrices are far from singular, and their equilibration.

    ``Ge = D G D`` with ``D`` the inverse square roots of the diagonal (the
    identity where that is not possible); ``ok`` where every diagonal entry
    is positive and the eigenvalues of ``Ge`` are within ``rcond`` of each
    other.
    """
    diag = np.einsum("kii->ki", G)
    # A basis function that vanishes on every weighted key (all of them
    # at the query's own abscissa) makes the design singular outright.
    usable = (diag > 0).all(axis=1) & np.isfinite(G).all(axis=(1, 2))
    D = 1.0 / np.sqrt(np.where(usable[:, None], diag, 1.0))
    Ge = np.where(usable[:, None, None], G * D[:, :, None] * D[:, None, :], np.eye(G.shape[1]))
    lam = np.linalg.eigvalsh(Ge)
    return usable & (lam[:, 0] > rcond * lam[:, -1]), D, Ge


def _well_posed(G, rcond):
    """Queries whose Gram matrix (divided by the normaliser) is far from singular."""
    return _equilibrated(G, rcond)[0]


class SingularDesignWarning(EmptyNeighborhoodWarning):
    """Some queries have too few points in their neighbourhood for the polynomial's degree.

    A subclass of :class:`~nwattn.exceptions.EmptyNeighborhoodWarning`:
    filtering that one filters this too.
    """


def local_warnings(fit, degree, stacklevel):
    """Warn about the queries of a :class:`LocalFit` fitted below ``degree`` or not at all."""
    import warnings

    n = fit.degree.shape[0]
    empty = int(np.count_nonzero(fit.degree < 0))
    lowered = int(np.count_nonzero((fit.degree >= 0) & (fit.degree < degree)))
    if empty:
        warnings.warn(
            f"{empty} of {n} queries have too few training points in their neighbourhood for "
            f"a local polynomial of degree {degree} (singular design, or no point at all); "
            f"their predictions are NaN (widen the bandwidth or choose a fallback)",
            SingularDesignWarning, stacklevel=stacklevel + 1)
    if lowered:
        warnings.warn(
            f"{lowered} of {n} queries have a singular local design at degree {degree} and "
            f"were fitted at a lower degree", SingularDesignWarning, stacklevel=stacklevel + 1)


def finalize_local(state, return_gradient=False, lower_degree=False, warn=True):
    """Turn a state of local polynomial moments into predictions (and slopes).

    Parameters
    ----------
    state : PoolState
        From :func:`nwattn.ops.local_polynomial_state`, merged over all keys.
    return_gradient : bool, default=False
        Also return the slopes of the local polynomial at each query, the
        estimate of ``df/dx`` (marginal effects); they need degree 1 or 2.
    lower_degree : bool, default=False
        Fit a query whose local design is singular (too few distinct
        points in its neighbourhood for the degree) at the highest degree
        that is not, instead of returning NaN for it.
    warn : bool, default=True
        Emit :class:`SingularDesignWarning` for queries that got NaN or a
        lowered degree.

    Returns
    -------
    pred : ndarray of shape (n_queries,) or (n_queries, n_outputs)
        Same number of dimensions as the values.
    gradient : ndarray of shape (n_queries, n_features) or (n_queries, n_features, n_outputs)
        Only with ``return_gradient=True``; NaN where the polynomial was
        fitted at degree 0 or not at all.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import local_polynomial_state, finalize_local
    >>> X = np.linspace(0, 1, 11)[:, None]
    >>> st = local_polynomial_state([[0.0], [0.5]], X, 3 * X[:, 0] + 1, bandwidth=0.2)
    >>> pred, slope = finalize_local(st, return_gradient=True)
    >>> pred.round(6), slope.round(6)
    (array([1. , 2.5]), array([[3.],
           [3.]]))
    """
    fit = solve_local(state, lower_degree)
    if return_gradient and state.local.degree < 1:
        raise ValueError("return_gradient=True needs a local polynomial of degree 1 or 2")
    if warn:
        local_warnings(fit, state.local.degree, stacklevel=2)
    pred, grad = fit.pred, fit.gradient
    if state.values_1d:
        pred, grad = pred[:, 0], grad[:, :, 0]
    return (pred, grad) if return_gradient else pred

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
           "finalize_local", "SingularDesignWarning"]


class LocalInfo(NamedTuple):
    """What a state of local polynomial moments needs beyond its accumulators.

    Attributes
    ----------
    degree : int
        Degree of the local polynomial (0, 1 or 2).
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
    center : ndarray of shape (n_outputs,)
        The centre subtracted from the values.
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

    __slots__ = ("max", "packed", "layout", "center", "values_1d", "queries", "local")

    def __init__(self, max, packed, layout, center, values_1d, queries=None, local=None):
        self.max = max
        self.packed = packed
        self.layout = layout
        self.center = center
        self.values_1d = bool(values_1d)
        self.queries = queries
        self.local = local

    def __repr__(self):
        degree = "" if self.local is None else f", degree={self.local.degree}"
        return (f"PoolState(n_queries={self.max.shape[0]}, n_outputs={self.center.shape[0]}, "
                f"sq={'sq' in self.layout}{degree}, dtype={self.packed.dtype})")

    def __reduce__(self):
        return (PoolState, (self.max, self.packed, self.layout, self.center, self.values_1d,
                            self.queries, self.local))

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
                         self.values_1d, self.queries, self.local)


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
    if a.queries is not None and b.queries is not None and a.queries != b.queries:
        raise ValueError("the states are of different queries (same count, other values or "
                         "offsets): only states of the same queries over disjoint keys merge")
    dtype = np.result_type(a.packed, b.packed)
    out = PoolState(a.max.astype(dtype), a.packed.astype(dtype), a.layout, a.center.copy(),
                    a.values_1d, a.queries if a.queries is not None else b.queries, a.local)
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
    if "cross" in state.layout:
        raise TypeError("state holds the moments of a local polynomial: finalise it with "
                        "finalize_local")
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
    return K


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
        diag = np.einsum("kii->ki", Gg)
        # A basis function that vanishes on every weighted key (all of them
        # at the query's own abscissa) makes the design singular outright.
        usable = (diag > 0).all(axis=1) & np.isfinite(Gg).all(axis=(1, 2))
        D = 1.0 / np.sqrt(np.where(usable[:, None], diag, 1.0))
        Ge = np.where(usable[:, None, None], Gg * D[:, :, None] * D[:, None, :], np.eye(Pg))
        lam = np.linalg.eigvalsh(Ge)
        ok = usable & (lam[:, 0] > rcond * lam[:, -1])
        rows = todo[ok]
        if rows.size:
            y = np.linalg.solve(Ge[ok], D[ok][:, :, None] * Rg[ok])
            beta = D[ok][:, :, None] * y
            pred[rows] = beta[:, 0]
            if g >= 1:
                grad[rows] = beta[:, 1:1 + d] / bw[rows][:, :, None]
            fitted[rows] = g
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
    return LocalFit(pred, grad, fitted, dpred if with_slopes else None)


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

"""Public low-level operations: array in, array out.

Every function validates its input, prepares it once (scaling by the
bandwidth, transposing the keys and values so the compute kernels walk
contiguous memory) and calls a compiled kernel.

Input contract: ``Q`` (n, d) and ``K`` (m, d) are 2-D; ``V`` is 1-D (m,) or
2-D (m, p); all finite. float32 input (every array float32) is computed and
returned in float32, anything else in float64. Non-contiguous,
Fortran-ordered and big-endian arrays are accepted and copied as needed.

Scores. For a smoothing kernel ``K`` the score of query ``q`` and key ``k`` is
``log K(||(q - k) / h||)`` with ``h`` a positive scalar or one positive value
per feature. For ``"dot"`` it is ``sum_t q_t k_t / h_t`` and for
``"scaled_dot"`` the same divided by ``sqrt(d)``: the bandwidth acts as a
temperature.
"""

import math

import numpy as np

from . import _batch
from . import _validation as _v
from ._backend import backend_for, get_backend
from ._device import is_device_array
from ._layout import local_layout, pool_layout, slopes_layout
from ._progress import progress_callback
from .kernels import ADDITIVE_KIND, DISTANCE, SCALED_DOT_CODE, get_kernel
from .exceptions import EmptyNeighborhoodWarning
from .pruning import check_algorithm, key_order
from .state import (LocalInfo, PoolState, finalize_local, finalize_slopes, finalize_state,
                    local_warnings, merge_states, queries_fingerprint, solve_local)

__all__ = [
    "pairwise_scores",
    "softmax",
    "attention_pool",
    "attention_pool_state",
    "merge_states",
    "finalize_state",
    "PoolState",
    "top_k_weights",
    "loo_slopes_state",
    "finalize_slopes",
    "local_polynomial",
    "local_polynomial_state",
    "finalize_local",
]


def _check_queries_keys(Q, K):
    Q = _v.check_float_array(Q, "Q")
    K = _v.check_float_array(K, "K")
    _v.check_matching_shapes(Q, K)
    return Q, K


def _check_offsets(query_offset, key_offset):
    for name, off in (("query_offset", query_offset), ("key_offset", key_offset)):
        if not isinstance(off, (int, np.integer)) or isinstance(off, bool) or off < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {off!r}")


def _discrete_codes(discrete, Q, K):
    """Validate the category codes of the discrete columns before anything else.

    Returns ``(qc, kc)``, each ``(n, n_discrete)`` intp, or ``(None, None)``
    without discrete features. Done first so that a NaN or a fraction in a
    discrete column is reported naming the feature.
    """
    if discrete is None:
        return None, None
    _check_discrete(discrete)
    return discrete.codes(Q, "Q"), discrete.codes(K, "K", keys=True)


def _check_discrete(discrete):
    """Refuse a ``discrete`` argument that is not a :class:`~nwattn.discrete.DiscreteFeatures`."""
    from .discrete import DiscreteFeatures

    if not isinstance(discrete, DiscreteFeatures):
        raise TypeError(f"discrete must be a nwattn.discrete.DiscreteFeatures, got "
                        f"{type(discrete).__name__}")


def _discrete_inputs(discrete, lam, qc, kc, dtype, slopes=False):
    """The sweep's tuple ``(QC, KCT, LT, DT)`` (:mod:`nwattn._cpu.discrete`) from checked codes."""
    n_query_codes = int(qc.max()) + 1 if qc.size else 1
    LT, DT = discrete.tables(lam, n_query_codes, dtype, slopes)
    return np.ascontiguousarray(qc), np.ascontiguousarray(kc.T), LT, DT


def _split_discrete(discrete, Q, K, bandwidth, qc, kc, dtype, slopes=False):
    """The continuous columns, their bandwidths and the discrete inputs of the sweep.

    Returns ``(Qc, Kc, h, disc)``: ``disc`` is None without discrete
    features, else the tuple ``(QC, KCT, LT, DT)`` of
    :mod:`nwattn._cpu.discrete`. ``bandwidth`` has one entry per column
    (``lam`` at the discrete ones).
    """
    if discrete is None:
        return Q, K, bandwidth, None
    d = Q.shape[1]
    h, lam = discrete.split_bandwidth(bandwidth, d)
    cont = discrete.continuous_columns(d)
    disc = _discrete_inputs(discrete, lam, qc, kc, dtype, slopes)
    return np.ascontiguousarray(Q[:, cont]), np.ascontiguousarray(K[:, cont]), h, disc


def _split_discrete_device(discrete, Q, K, bandwidth):
    """:func:`_split_discrete` of queries and keys that live on the GPU.

    Only the discrete columns come to the host, where their codes are
    checked (naming the feature, before anything else) and the kernels'
    tables made; the continuous columns are gathered into new device
    arrays. Returns ``(Qc, Kc, h, disc)``.
    """
    _check_discrete(discrete)
    gpu = get_backend("cuda")
    Qd, Kd = gpu.to_device(Q), gpu.to_device(K)
    for name, x in (("Q", Qd), ("K", Kd)):
        if x.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got an array of shape {x.shape}")
    d = Qd.shape[1]
    _v.check_matching_shapes(Qd, Kd)
    discrete.check_columns(d)
    qc = discrete.check_codes(gpu.to_host(gpu.columns(Qd, discrete.columns)), "Q")
    kc = discrete.check_codes(gpu.to_host(gpu.columns(Kd, discrete.columns)), "K", keys=True)
    cont = discrete.continuous_columns(d)
    if cont.size == 0:
        raise ValueError("inputs on the GPU with discrete features need at least one "
                         "continuous feature: use device='cpu'")
    h, lam = discrete.split_bandwidth(bandwidth, d)
    disc = _discrete_inputs(discrete, lam, qc, kc, np.dtype(Qd.dtype))
    return gpu.columns(Qd, cont), gpu.columns(Kd, cont), h, disc


def _brute_only(algorithm, what):
    """Refuse an explicit pruned schedule where it does not apply (``"auto"`` means brute)."""
    if not (isinstance(algorithm, str) and algorithm in ("auto", "brute")):
        name = "KeyTree" if not isinstance(algorithm, str) else algorithm
        raise ValueError(f"algorithm={name!r} is not available for {what}: use "
                         "algorithm='brute' or 'auto'")


def _prepare_scores(Q, K, kernel, bandwidth, key_weight, dtype):
    """Scale and transpose queries and keys for the compute kernels.

    Returns ``(kern, Qs, KT, logw, scale)``: queries and transposed keys
    divided by the bandwidth (for a score kernel only the queries are
    divided), the log key weights (empty when there are none) and the
    score's constant factor.

    For a smoothing kernel, whose scores depend on differences only, both
    sets are first centred on the middle of their common bounding box, so
    that where the data sit does not matter: a query equal to a key at
    ``|x| = 1e300`` with ``h = 1e-10`` is at distance 0 from it, where
    ``x / h`` alone would overflow to ``inf`` and give ``inf - inf``.
    """
    kern = get_kernel(kernel)
    d = Q.shape[1]
    h = _v.check_bandwidth(bandwidth, d, dtype)
    distance = kern.family == DISTANCE
    with np.errstate(over="ignore"):  # overflow is reported by the checks below
        if distance:
            mid = _common_centre(Q, K)
            Qs = np.ascontiguousarray((Q - mid) / h, dtype=dtype)
            KT = np.ascontiguousarray(((K - mid) / h).T, dtype=dtype)
        else:
            Qs = np.ascontiguousarray(Q / h, dtype=dtype)
            KT = np.ascontiguousarray(K.T, dtype=dtype)
    scale = 1.0 / math.sqrt(d) if kern.code == SCALED_DOT_CODE else 1.0
    _check_score_overflow(kern, Qs, KT, scale, dtype)
    if key_weight is None:
        logw = np.empty(0, dtype)
    else:
        w = _v.check_key_weight(key_weight, K.shape[0], np.float64)
        with np.errstate(divide="ignore"):
            logw = np.log(w).astype(dtype)
    return kern, Qs, KT, logw, scale


def _common_centre(Q, K):
    """Middle of the bounding box of the queries and keys, per feature.

    Halves are added rather than the bounds (which could overflow), so the
    centred inputs are at most the box's half-width in magnitude.
    """
    if Q.shape[0] == 0 or K.shape[0] == 0:
        return np.zeros(Q.shape[1], np.result_type(Q, K))
    lo = np.minimum(Q.min(axis=0), K.min(axis=0))
    hi = np.maximum(Q.max(axis=0), K.max(axis=0))
    return lo / 2 + hi / 2


def _check_score_overflow(kern, Qs, KT, scale, dtype):
    """Refuse inputs whose scores would overflow rather than return NaN.

    An inner product that overflows makes the softmax NaN. A squared
    distance that overflows is harmless for a compact kernel (the key is
    outside the support either way) but, for a kernel positive everywhere,
    can push every key of a query to ``-inf`` and lose the nearest one. A
    scaled input that overflows is wrong for any kernel: two such points
    are ``inf - inf`` apart, NaN, even when they are equal.
    """
    qmax = float(_abs_max(Qs)) if Qs.size else 0.0
    kmax = float(_abs_max(KT)) if KT.size else 0.0
    if kern.is_compact and not (math.isfinite(qmax) and math.isfinite(kmax)):
        raise ValueError(
            f"bandwidth is too small for the spread of these inputs: the inputs divided by "
            f"it overflow {np.dtype(dtype).name}"
        )
    _check_score_range(kern, qmax, kmax, Qs.shape[1], scale, dtype)


def _check_score_range(kern, qmax, kmax, d, scale, dtype):
    """The test of :func:`_check_score_overflow`, from the largest magnitudes."""
    if kern.is_compact:
        return
    big = float(np.finfo(dtype).max) / 4
    root_d = math.sqrt(d)
    if kern.family == DISTANCE:
        ok = (qmax + kmax) * root_d < math.sqrt(big)
    else:
        ok = qmax * kmax * root_d * root_d * scale < big
    if not ok:
        raise ValueError(
            f"bandwidth is too small for the spread of these inputs: the {kern.name} "
            f"scores would overflow {np.dtype(dtype).name}"
        )


#: Bits of range kept free by values left at their own scale: room for the
#: sums of their squares over many keys.
_VALUE_HEADROOM = {np.dtype(np.float32): 16, np.dtype(np.float64): 64}


def _value_exponent(amax, dtype, squares):
    """Power of two by which values of largest magnitude ``amax`` are divided.

    0 (no change) while their squares, and sums of them, stay well inside
    the range of ``dtype``; otherwise the exponent that brings the largest
    magnitude to [0.5, 1). Without ``squares`` only huge values are
    scaled (their sums could overflow); tiny ones are fine as they are.
    """
    if not (amax > 0 and math.isfinite(amax)):
        return 0
    e = math.frexp(amax)[1]
    limit = np.finfo(dtype).maxexp // 2 - _VALUE_HEADROOM[np.dtype(dtype)] // 2
    if e > limit or (squares and e < -limit):
        return e
    return 0


def _prepare_values(V2, center, dtype, squares, transposed=True):
    """Centre the values and bring them to a scale where they can be squared.

    Returns ``(c, VT, e)``: the centre (in the values' units) and the
    centred values, transposed (unless not ``transposed``) and divided by
    ``2**e``; ``squares`` says
    whether their squares will be summed (``return_std``). Dividing by a
    power of two is exact, so results at any scale are those at unit scale
    times the scale; without it, values beyond about 1e154 in float64 (1e19
    in float32) have squares that overflow, and so a NaN standard
    deviation, and values below about 1e-154 have squares that vanish.
    """
    c, D, e = _prepare_value_items(V2[None], center, dtype, squares)
    VT = np.ascontiguousarray(D[0].T) if transposed else D[0]
    return c[0], VT, int(e[0])


def _abs_max(X, axis=None):
    """Largest magnitude of ``X`` (along ``axis``), without an array of magnitudes."""
    return np.maximum(X.max(axis=axis), -X.min(axis=axis))


def _prepare_value_items(V3, center, dtype, squares):
    """:func:`_prepare_values` of each of a stack of value arrays ``(k, m, p)`` at once.

    Returns ``(c, D, e)`` of shapes ``(k, p)``, ``(k, m, p)`` (C-ordered,
    not transposed) and ``(k,)``: item ``i`` is exactly what
    :func:`_prepare_values` makes of ``V3[i]`` on its own (the reductions
    run along the same axis in the same order), without a Python loop over
    the items.
    """
    k, _, p = V3.shape

    def exponents(amax, squares):
        return np.array([_value_exponent(float(a), dtype, squares) for a in amax], dtype=int)

    empty = V3.size == 0
    # The centre of huge values is computed at a smaller scale, where the
    # sum behind the mean cannot overflow.
    big = np.maximum(0, exponents(np.zeros(k) if empty else _abs_max(V3, (1, 2)), False))
    V = np.ldexp(V3, -big[:, None, None]) if big.any() else V3
    if center is None:
        c = V.mean(axis=1, dtype=np.float64).astype(dtype)
    else:
        c1 = _v.check_float_array(center, "center", ndim=1).astype(dtype)
        if c1.shape[0] != p:
            raise ValueError(f"center must have {p} entries, got {c1.shape[0]}")
        c = np.ldexp(c1[None, :], -big[:, None]) if big.any() else np.tile(c1, (k, 1))
    D = np.subtract(V, c[:, None, :], dtype=dtype)
    e = exponents(np.zeros(k) if empty else _abs_max(D, (1, 2)), squares)
    if e.any():
        D = np.ldexp(D, -e[:, None, None])
    if big.any():
        c = np.ldexp(c, big[:, None])
    return c, D, big + e


#: Power of the values in each block of a layout: the normaliser and the
#: Gram moments hold none, the weighted sums one, the squares two.
_VALUE_POWER = {"norm": 0, "acc": 1, "sq": 2, "moments": 0, "cross": 1, "A": 0, "B": 1,
                "dG": 0, "dR": 1, "meat": 2}


def _state_in_value_units(smax, packed, layout, e):
    """Express a pooling state of values divided by ``2**e`` in the values' units.

    The accumulators are relative to ``exp(max)``, and raising ``max`` by
    ``a log(2)`` divides them all by ``2**a``; so the state of the
    original values is the computed one with the normaliser times
    ``2**-a``, the weighted sums times ``2**(e - a)`` and the second
    moments times ``2**(2 e - a)``, for any ``a``. Each row takes the
    ``a`` that puts its normaliser and second moments equally far from 1,
    which keeps both representable (their ratio, the values' squares, may
    not be) without forming a square, as far as the normaliser stays a
    normal number (for subnormal values the second moments then vanish).
    """
    if not e:
        return smax, packed
    norm = packed[:, layout.columns("norm")]
    e_norm = np.frexp(norm)[1]
    if "sq" in layout:
        sq = packed[:, layout.columns("sq")]
        e_sq = np.frexp(sq)[1].max(axis=1, keepdims=True)
        a = e + (e_norm + e_sq) // 2
    else:
        a = np.full(norm.shape, e)
    maxexp = np.finfo(packed.dtype).maxexp
    a = np.clip(a, e_norm - (maxexp - 2), e_norm + (maxexp - 3))
    out = np.empty_like(packed)
    for name, _, power in layout.blocks:
        # A block of power k in the weights is divided by 2**(k a).
        cols = layout.columns(name)
        out[:, cols] = np.ldexp(packed[:, cols], _VALUE_POWER[name] * e - power * a)
    return smax + (a[:, 0] * math.log(2.0)).astype(smax.dtype), out


def _prepare_device(Q, K, kernel, bandwidth, key_weight, extent=False):
    """GPU twin of :func:`_prepare_scores` for inputs that live on the GPU.

    Validates and prepares the arrays with small kernels, so the data never
    travel to the host; returns ``(kern, Qs, KT, logw, scale)``, the arrays
    as Numba device arrays (the key weights, validated on the host, are
    copied over by the launch code). With ``extent``, also a bound on
    ``max |Qs| + max |KT|`` (the largest offset of a query from a key, per
    feature), which the local polynomial's offsets are checked against.
    """
    gpu = get_backend("cuda")
    Qd, qmax = gpu.check_array(Q, "Q")
    Kd, kmax = gpu.check_array(K, "K")
    _v.check_matching_shapes(Qd, Kd)
    if Qd.dtype != Kd.dtype:
        raise TypeError(
            f"Q and K on the GPU must have the same dtype, got {Qd.dtype} and {Kd.dtype}"
        )
    dtype = np.dtype(Qd.dtype)
    kern = get_kernel(kernel)
    d = Qd.shape[1]
    h = _v.check_bandwidth(bandwidth, d, dtype)
    distance = kern.family == DISTANCE
    Qs = gpu.scaled(Qd, h, transpose=False)
    KT = gpu.scaled(Kd, h if distance else np.ones(d, dtype), transpose=True)
    scale = 1.0 / math.sqrt(d) if kern.code == SCALED_DOT_CODE else 1.0
    hmin = float(h.min())
    _check_score_range(kern, qmax / hmin, kmax / hmin if distance else kmax, d, scale, dtype)
    if key_weight is None:
        logw = np.empty(0, dtype)
    else:
        if is_device_array(key_weight):
            key_weight = gpu.to_host(gpu.to_device(key_weight))
        w = _v.check_key_weight(key_weight, Kd.shape[0], np.float64)
        with np.errstate(divide="ignore"):
            logw = np.log(w).astype(dtype)
    if extent:
        return kern, Qs, KT, logw, scale, (qmax + kmax) / hmin
    return kern, Qs, KT, logw, scale


def _is_attention_call(Q, K, V, key_weight, key_mask, attn_mask, is_causal):
    """Whether a call takes the path of attention arrays (batch dimensions or masks)."""
    return (np.ndim(Q) != 2 or np.ndim(K) != 2 or (V is not None and np.ndim(V) > 2)
            or key_mask is not None or attn_mask is not None or bool(is_causal)
            or (key_weight is not None and np.ndim(key_weight) > 1))


def _check_causal(is_causal, causal_offset):
    if not isinstance(is_causal, (bool, np.bool_)):
        raise TypeError(f"is_causal must be True or False, got {is_causal!r}")
    if (not isinstance(causal_offset, (int, np.integer)) or isinstance(causal_offset, bool)):
        raise TypeError(f"causal_offset must be an integer, got {causal_offset!r}")


class _Arrays:
    """Attention arrays prepared for the sweep (see :mod:`nwattn._batch`)."""

    __slots__ = ("kern", "Qs", "KT", "scale", "batch", "full", "n", "m", "dtype", "lw_index",
                 "b_first", "values")


def _prepare_attention(Q, K, kernel, bandwidth, key_weight, key_mask, attn_mask, is_causal,
                       causal_offset, V=None, shift=0):
    """Validate and pack attention arrays: queries, keys, masks, and the batch table.

    Returns the validated ``V`` (or None) with an :class:`_Arrays`. Each
    batch item's queries and keys are prepared exactly as a call on that
    item alone prepares them (:func:`_prepare_scores`), so the packed
    problem is, item by item, bit for bit the 2-D one: for a smoothing
    kernel each distinct pair of query and key items is centred on its
    own middle (keys shared by several query items are then packed once
    per pair), for a dot score the keys are packed once whatever shares
    them. ``shift`` (``query_offset - key_offset``) places a shard of keys
    or queries in the causal order of the whole.
    """
    _check_causal(is_causal, causal_offset)
    Q = _batch.check_attention_array(Q, "Q")
    K = _batch.check_attention_array(K, "K")
    n, d = Q.shape[-2:]
    m = K.shape[-2]
    if K.shape[-1] != d:
        raise ValueError(f"Q and K must have the same number of features, got {d} and "
                         f"{K.shape[-1]}")
    shapes = {"Q": Q.shape[:-2], "K": K.shape[:-2]}
    if V is not None:
        V = _batch.check_attention_array(V, "V", min_ndim=1 if np.ndim(V) == 1 else 2)
        if V.shape[-2 if V.ndim > 1 else -1] != m:
            raise ValueError(f"K and V must have the same number of rows (keys), got {m} and "
                             f"{V.shape[-2 if V.ndim > 1 else -1]}")
        shapes["V"] = V.shape[:-2]
    terms = []
    if key_weight is not None:
        w = _check_batched_key_weight(key_weight, m)
        shapes["key_weight"] = w.shape[:-1]
        with np.errstate(divide="ignore"):
            terms.append(np.log(w))
    if key_mask is not None:
        km = _batch.check_mask(key_mask, "key_mask", 1, allow_float=False)
        if km.shape[-1] != m:
            raise ValueError(f"key_mask must have one entry per key ({m}) in its last "
                             f"dimension, got shape {km.shape}")
        shapes["key_mask"] = km.shape[:-1]
        terms.append(km)
    bias = None
    if attn_mask is not None:
        am = _batch.check_mask(attn_mask, "attn_mask", 2, allow_float=True)
        if am.shape[-2] not in (1, n) or am.shape[-1] not in (1, m):
            raise ValueError(f"attn_mask must broadcast to (..., {n}, {m}) (queries, keys), got "
                             f"shape {am.shape}")
        shapes["attn_mask"] = am.shape[:-2]
        if am.shape[-2] == 1:
            # The same for every query: a key weight, which can skip tiles.
            terms.append(am[..., 0, :])
        else:
            bias = am
    full = _batch.broadcast_batch(**shapes)
    dtype = _v.common_float_dtype(Q, K, *(() if V is None else (V,)))
    n_items = math.prod(full)
    q_item = _batch.item_index(Q.shape[:-2], full)
    k_item = _batch.item_index(K.shape[:-2], full)
    Qf = Q.reshape(-1, n, d)
    Kf = K.reshape(-1, m, d)
    kern = get_kernel(kernel)
    if kern.family == DISTANCE:
        pairs, pair_of = np.unique(np.stack([q_item, k_item], axis=1), axis=0,
                                   return_inverse=True)
        pair_of = pair_of.ravel()
        Qp, KTp = [], []
        for qi, ki in pairs:
            kern, Qs_p, KT_p, _, scale = _prepare_scores(Qf[qi], Kf[ki], kern, bandwidth, None,
                                                         dtype)
            Qp.append(Qs_p)
            KTp.append(KT_p)
        Qs = np.stack(Qp)[pair_of].reshape(n_items * n, d)
        KT = np.ascontiguousarray(np.concatenate(KTp, axis=1))
        k_first = pair_of * m
    else:
        h = _v.check_bandwidth(bandwidth, d, dtype)
        with np.errstate(over="ignore"):  # overflow is reported by the check below
            # Division by 1 is exact: skipping it changes no bit.
            Qu = np.ascontiguousarray(Qf if np.all(h == 1) else Qf / h, dtype=dtype)
        # The keys as they are, seen transposed: the matrix body reads them so
        # (shared ones once), and the sweep makes the row body its copy.
        KT = np.ascontiguousarray(Kf.reshape(-1, d), dtype=dtype).T
        scale = 1.0 / math.sqrt(d) if kern.code == SCALED_DOT_CODE else 1.0
        _check_score_overflow(kern, Qu.reshape(-1, d), KT, scale, dtype)
        Qs = Qu[q_item].reshape(n_items * n, d) if Qu.shape[0] != n_items else Qu.reshape(-1, d)
        k_first = k_item * m
    LW, lw_index = _batch.key_log_weights(terms, m, full, dtype)
    if bias is not None:
        BIAS, b_first = _batch.query_bias(bias, n, m, full, dtype)
    else:
        BIAS, b_first = np.empty((0, m), dtype), None
    items = np.full((n_items, 5), -1, dtype=np.int64)
    items[:, 0] = np.arange(n_items) * n
    items[:, 1] = k_first
    items[:, 2] = 0
    if lw_index is not None:
        items[:, 3] = lw_index
    if b_first is not None:
        items[:, 4] = b_first
    diag = int(causal_offset) + int(shift) if is_causal else n + m
    out = _Arrays()
    out.kern, out.Qs, out.KT, out.scale, out.full = kern, Qs, KT, scale, full
    out.n, out.m, out.dtype = n, m, dtype
    out.lw_index, out.b_first = lw_index, b_first
    out.batch = _batch.AttentionBatch(items, n, m, LW, BIAS, int(b_first is not None), diag)
    return V, out


def _check_batched_key_weight(key_weight, m):
    """Key weights ``(..., m)``: non-negative, finite, some positive in each batch item."""
    if np.ndim(key_weight) <= 1:
        return _v.check_key_weight(key_weight, m, np.float64)
    w = _batch.check_attention_array(key_weight, "key_weight", min_ndim=1, dtype=np.float64)
    if w.shape[-1] != m:
        raise ValueError(f"key_weight must have one entry per key ({m}) in its last dimension, "
                         f"got shape {w.shape}")
    if np.any(w < 0):
        raise ValueError("key_weight must be non-negative")
    if not np.all(np.any(w > 0, axis=-1)):
        raise ValueError("key_weight must have at least one positive entry in each batch item")
    return w


def _attention_values(V, arr, center, squares):
    """Pack the values of attention arrays: each distinct item centred as on its own.

    Returns ``(VT, centers, e, v_item)``: the centred values of every
    distinct item, transposed and side by side; each item's centre and
    power-of-two scale (:func:`_prepare_values`); and the values' item of
    each batch item. The value columns of the batch table are filled in.
    """
    m = arr.m
    values_1d = V.ndim == 1
    V3 = V.reshape(1, m, 1) if values_1d else V.reshape(-1, m, V.shape[-1])
    v_item = _batch.item_index(() if values_1d else V.shape[:-2], arr.full)
    # Packed as (keys, outputs) and passed transposed: the matrix body reads
    # them so, and the sweep makes the row body its contiguous copy.
    c, D, e = _prepare_value_items(V3, center, arr.dtype, squares)
    VT = D.reshape(-1, D.shape[2]).T
    arr.batch.items[:, 2] = v_item * m
    return VT, list(c), [int(x) for x in e], v_item, values_1d


def _attention_state(Q, K, V, kernel, bandwidth, key_weight, key_mask, attn_mask, is_causal,
                     causal_offset, exclude_self, query_offset, key_offset, return_std, center,
                     be, report, fingerprint=True):
    """:func:`attention_pool_state` of attention arrays (batch dimensions, masks).

    Without ``fingerprint`` the state does not record which queries it is
    of (hashing them costs a pass over them; a state finalised at once is
    never merged).
    """
    V, arr = _prepare_attention(Q, K, kernel, bandwidth, key_weight, key_mask, attn_mask,
                                is_causal, causal_offset, V=V,
                                shift=int(query_offset) - int(key_offset))
    if exclude_self and arr.n != arr.m:
        raise ValueError("exclude_self=True needs the queries to be the keys (Q is K); got "
                         f"{arr.n} queries and {arr.m} keys")
    VT, centers, exps, v_item, values_1d = _attention_values(V, arr, center, return_std)
    dtype = arr.dtype
    VT2 = VT * VT if return_std else np.empty((0, VT.shape[1]), dtype)
    if exclude_self:
        self_shift = int(query_offset) - int(key_offset)
    else:
        self_shift = -arr.n - 1
    smax, packed = be.pool_items(arr.Qs, arr.KT, VT, VT2, arr.kern.family, arr.kern.code,
                                 arr.scale, self_shift, arr.batch, progress=report)
    n_items = arr.batch.items.shape[0]
    if report is not None:
        report.finish(n_items * arr.n * arr.m)
    layout = pool_layout(len(centers[0]), return_std)
    rows = np.repeat(v_item, arr.n)
    for v, e in enumerate(exps):
        if e:
            sel = rows == v
            smax[sel], packed[sel] = _state_in_value_units(smax[sel], packed[sel], layout, e)
    if len(centers) == 1:
        c = centers[0]
    else:
        # Each batch item's centre, repeated for its n queries: whole rows
        # copied in order (indexing by ``rows`` took 5 ms for 32 768 queries).
        c = np.repeat(np.stack(centers)[v_item], arr.n, axis=0)
    queries = None
    if fingerprint:
        Qfull = np.broadcast_to(np.asarray(Q), arr.full + (arr.n, arr.Qs.shape[1]))
        queries = queries_fingerprint(Qfull, query_offset)
    return PoolState(smax, packed, layout, c, values_1d, queries, batch_shape=arr.full)


_ATTENTION_WHAT = "attention arrays (batch dimensions, masks, causal order)"


def _attention_pairs(Q, K):
    """(query, key) pairs of a call on attention arrays, for ``device="auto"``."""
    try:
        qs, ks = np.shape(Q), np.shape(K)
        batch = np.broadcast_shapes(qs[:-2], ks[:-2])
        return math.prod(batch) * int(qs[-2]) * int(ks[-2])
    except (TypeError, ValueError, IndexError):
        return None  # malformed input: validation names the problem


def _attention_scores(be, Q, K, kernel, bandwidth, key_mask, attn_mask, is_causal,
                      causal_offset):
    """:func:`pairwise_scores` of attention arrays: ``(..., n, m)`` scores, masks applied."""
    _, arr = _prepare_attention(Q, K, kernel, bandwidth, None, key_mask, attn_mask, is_causal,
                                causal_offset)
    b = arr.batch
    S = be.pairwise_items(arr.Qs, np.ascontiguousarray(arr.KT), b.items, arr.n, arr.m, arr.kern.family,
                          arr.kern.code, arr.scale).reshape(-1, arr.n, arr.m)
    if arr.lw_index is not None:
        S += b.LW[arr.lw_index][:, None, :]
    if arr.b_first is not None:
        S += b.BIAS.reshape(-1, arr.n, arr.m)[arr.b_first // arr.n]
    if is_causal:
        i = np.arange(arr.n)[:, None]
        j = np.arange(arr.m)[None, :]
        S[:, j > i + b.diag] = -np.inf
    return S.reshape(arr.full + (arr.n, arr.m))


def pairwise_scores(Q, K, kernel="gaussian", bandwidth=1.0, *, key_mask=None, attn_mask=None,
                    is_causal=False, causal_offset=0, device="cpu"):
    """Dense matrix of scores (log-weights) between queries and keys.

    Meant for small problems, inspection and tests: it allocates the full
    (n, m) matrix. :func:`attention_pool` never does.

    Parameters
    ----------
    Q : array_like of shape (n_queries, n_features)
        Queries.
    K : array_like of shape (n_keys, n_features)
        Keys.
    kernel : str, default="gaussian"
        A name of :mod:`nwattn.kernels` (case-insensitive).
    bandwidth : float or array_like of shape (n_features,), default=1.0
        Positive scalar or one positive value per feature.
    key_mask, attn_mask, is_causal, causal_offset
        Masks, as in :func:`attention_pool`: a masked pair scores ``-inf``,
        a float ``attn_mask`` is added. ``Q`` and ``K`` may then have
        leading (batch) dimensions, which broadcast.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to compute (see :func:`attention_pool`). Device arrays in give
        a device array out.

    Returns
    -------
    S : ndarray of shape (..., n_queries, n_keys)
        ``log K(||(q - k) / h||)`` for smoothing kernels (``-inf`` outside
        the support), the scaled inner product for scores.

    Examples
    --------
    >>> from nwattn.ops import pairwise_scores
    >>> pairwise_scores([[0.0, 0.0]], [[1.0, 0.0], [0.0, 2.0]])
    array([[-0.5, -2. ]])
    >>> pairwise_scores([[0.0]], [[0.5], [2.0]], kernel="epanechnikov")
    array([[-0.28768207,        -inf]])
    >>> pairwise_scores([[[1.0], [2.0]]], [[1.0], [3.0]], "dot", is_causal=True)
    array([[[ 1., -inf],
            [ 2.,  6.]]])
    """
    if _is_attention_call(Q, K, None, None, key_mask, attn_mask, is_causal):
        be, _ = backend_for(device, Q, K, need="pairwise_items", what=_ATTENTION_WHAT,
                            n_pairs=_attention_pairs(Q, K))
        return _attention_scores(be, Q, K, kernel, bandwidth, key_mask, attn_mask, is_causal,
                                 causal_offset)
    be, device_input = backend_for(device, Q, K, need="pairwise")
    if device_input:
        kern, Qs, KT, logw, scale = _prepare_device(Q, K, kernel, bandwidth, None)
        return be.pairwise(Qs, KT, logw, kern.family, kern.code, scale)
    Q, K = _check_queries_keys(Q, K)
    dtype = _v.common_float_dtype(Q, K)
    kern, Qs, KT, logw, scale = _prepare_scores(Q, K, kernel, bandwidth, None, dtype)
    return _to_host(be, be.pairwise(Qs, KT, logw, kern.family, kern.code, scale))


def softmax(S, axis=-1, *, device="cpu"):
    """Numerically stable softmax along one axis.

    Parameters
    ----------
    S : array_like
        Scores, finite or ``-inf`` (a key outside every support). NaN and
        ``+inf`` are rejected.
    axis : int, default=-1
        Axis along which the weights sum to one.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to compute. A device array in gives a device array out; on the
        GPU, ``S`` may then be 1-D or 2-D and ``axis`` must be the last one.

    Returns
    -------
    ndarray
        Same shape as ``S``; float32 for float32 input, float64 otherwise.
        A slice whose scores are all ``-inf`` comes back as NaN, without a
        warning or a division error.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import softmax
    >>> softmax([[0.0, np.log(3.0)], [-np.inf, -np.inf]])
    array([[0.25, 0.75],
           [ nan,  nan]])
    >>> softmax([1000.0, 1000.0])
    array([0.5, 0.5])
    """
    be, device_input = backend_for(device, S, need="softmax",
                                   n_pairs=getattr(S, "size", None))
    if device_input:
        return _softmax_device(S, axis)
    if isinstance(S, (str, bytes)):
        raise TypeError("S must be an array of numbers, got a string")
    S = _v.check_numeric_kind(_v._native(S) if hasattr(S, "dtype") else np.asarray(S), "S")
    S = np.asarray(S)
    if S.dtype.kind not in "fiub":
        raise TypeError(f"S must be numeric, got dtype {S.dtype}")
    dtype = np.float32 if S.dtype == np.float32 else np.float64
    S = S.astype(dtype, copy=False)
    if S.ndim == 0:
        raise ValueError("S must have at least one dimension")
    if S.size == 0:
        raise ValueError(f"S must not be empty, got shape {S.shape}")
    if np.isnan(S).any() or np.isposinf(S).any():
        raise ValueError("S must not contain NaN or +inf (use -inf for excluded entries)")
    if not isinstance(axis, (int, np.integer)) or not -S.ndim <= axis < S.ndim:
        raise ValueError(f"axis must be an integer in [{-S.ndim}, {S.ndim}), got {axis!r}")
    moved = np.moveaxis(S, axis, -1)
    flat = np.ascontiguousarray(moved.reshape(-1, moved.shape[-1]))
    out = _to_host(be, be.softmax(flat))
    return np.moveaxis(out.reshape(moved.shape), -1, axis)


def _softmax_device(S, axis):
    """:func:`softmax` of an array that lives on the GPU, left there."""
    gpu = get_backend("cuda")
    Sd = gpu.to_device(S)
    if Sd.ndim not in (1, 2):
        raise ValueError(f"S on the GPU must be 1-D or 2-D, got shape {Sd.shape}")
    if axis not in (-1, Sd.ndim - 1) or isinstance(axis, bool):
        raise ValueError(f"axis must be the last axis for S on the GPU, got {axis!r}")
    rows, _ = gpu.check_array(Sd, "S", allow_1d=True, allow_neg_inf=True)
    if Sd.ndim == 1:
        rows = Sd.reshape(1, Sd.shape[0])
    out = gpu.softmax(rows)
    return out.reshape(Sd.shape[0]) if Sd.ndim == 1 else out


def attention_pool_state(Q, K, V, kernel="gaussian", bandwidth=1.0, *, key_weight=None,
                         key_mask=None, attn_mask=None, is_causal=False, causal_offset=0,
                         exclude_self=False, query_offset=0, key_offset=0,
                         return_std=False, center=None, device="cpu", progress=None,
                         verbose=0, discrete=None, algorithm="auto"):
    """Per-query online-softmax state of attention pooling.

    The building block for sharding: pool the same queries over disjoint
    sets of keys (threads, processes, machines), combine the states with
    :func:`merge_states` in any order, and finish with
    :func:`finalize_state`. Pooling over the keys in pieces and merging
    equals pooling over all of them, up to rounding.

    Parameters
    ----------
    Q : array_like of shape (n_queries, n_features)
        Queries.
    K : array_like of shape (n_keys, n_features)
        Keys (one shard of them, when sharding).
    V : array_like of shape (n_keys,) or (n_keys, n_outputs)
        Values of the keys.
    kernel : str, default="gaussian"
        A name of :mod:`nwattn.kernels`.
    bandwidth : float or array_like of shape (n_features,), default=1.0
        Positive scalar or one positive value per feature.
    key_weight : array_like of shape (n_keys,) or (..., n_keys), default=None
        Non-negative weights of the keys (sample weights).
    key_mask : array_like of bool, shape (..., n_keys), default=None
        False marks a key never attended (padding of ragged sequences).
        Tiles of keys that are all masked are skipped, not scored.
    attn_mask : array_like of bool or float, broadcastable to (..., n_queries, n_keys), default=None
        As PyTorch's ``scaled_dot_product_attention`` takes it: a boolean
        mask (True: the pair takes part) or a float bias added to the
        scores (``-inf`` excludes a pair). A mask of shape (..., 1,
        n_keys) is a key mask and skips tiles as ``key_mask`` does.
    is_causal : bool, default=False
        Query ``i`` attends key ``j`` only when ``j <= i + causal_offset``
        (positions within a batch item). Key tiles beyond a block's last
        query are not visited.
    causal_offset : int, default=0
        The diagonal of the causal order. 0 is PyTorch's convention (the
        top-left aligned ``torch.ones(L, S).tril(diagonal=0)``, also when
        ``n_queries != n_keys``); ``n_keys - n_queries`` aligns the last
        query with the last key (a continuation attending a cached prefix).
        With a shard of keys or queries, ``query_offset`` and
        ``key_offset`` place it in the whole causal order.
    exclude_self : bool, default=False
        Leave one out: skip the pair of query number ``query_offset + i``
        and key number ``key_offset + j`` when the two numbers are equal.
    query_offset, key_offset : int, default=0
        Global index of the first query and of the first key, so that
        leave-one-out works when the keys (or queries) are a shard.
    return_std : bool, default=False
        Track the weighted variance of the values as well.
    center : array_like of shape (n_outputs,), default=None
        Centre subtracted from the values; by default their mean. States
        with different centres still merge exactly.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to compute (see :func:`attention_pool`). The state is always
        returned in NumPy arrays (it is O(n_queries) and is merged and
        finalised on the host).
    progress : callable, default=None
        Called as ``progress(done, total)`` with the numbers of (query,
        key) pairs done and in all, a few times a second on the CPU
        (between the chunks of work that also let a Ctrl-C through) and
        once at the end on the GPU; the last call has ``done == total``.
        An exception it raises stops the computation and propagates: a way
        to cancel a long call.
    verbose : int, default=0
        0 is silent; 1 prints the progress on stderr (share done, time
        elapsed and an estimate of the time left), a few lines a second at
        most, the last at 100 %.
    discrete : nwattn.discrete.DiscreteFeatures, default=None
        Which columns of ``Q`` and ``K`` hold category codes and how they
        are compared (mixed data). ``bandwidth`` then has one entry per
        column: ``h`` of a continuous column, the smoothing parameter
        ``lam`` of a discrete one; each discrete feature multiplies the
        weights by its kernel ``L(a, b; lam)``. CPU or GPU; for inputs
        that live on the GPU only the discrete columns come to the host
        (their codes are checked there) and they need a continuous column.

    algorithm : see :func:`attention_pool`.
    Returns
    -------
    PoolState
        With attention arrays (leading dimensions), the queries of every
        batch item one after the other and ``batch_shape`` set; the centre
        is then per query when the items have values of their own.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import attention_pool_state, merge_states, finalize_state
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = np.array([0.0, 1.0, 4.0, 9.0])
    >>> # leave-one-out with the keys split in two shards
    >>> a = attention_pool_state(X, X[:2], y[:2], exclude_self=True, key_offset=0)
    >>> b = attention_pool_state(X, X[2:], y[2:], exclude_self=True, key_offset=2)
    >>> finalize_state(merge_states(a, b)).round(3)
    array([1.657, 2.703, 4.498, 3.402])

    Causal attention over two shards of keys, in a batch of two:

    >>> rng = np.random.default_rng(0)
    >>> Q, K, V = (rng.normal(size=(2, 6, 4)) for _ in range(3))
    >>> a = attention_pool_state(Q, K[:, :3], V[:, :3], "scaled_dot", is_causal=True)
    >>> b = attention_pool_state(Q, K[:, 3:], V[:, 3:], "scaled_dot", is_causal=True,
    ...                          key_offset=3)
    >>> whole = attention_pool_state(Q, K, V, "scaled_dot", is_causal=True)
    >>> bool(np.allclose(finalize_state(merge_states(a, b)), finalize_state(whole)))
    True
    """
    _check_offsets(query_offset, key_offset)
    algorithm = check_algorithm(algorithm)
    if _is_attention_call(Q, K, V, key_weight, key_mask, attn_mask, is_causal):
        if discrete is not None:
            raise ValueError("discrete features take 2-D queries and keys, without masks or "
                             "causal order")
        _brute_only(algorithm, "attention arrays (batch dimensions, masks, causal order)")
        be, _ = backend_for(device, Q, K, V, need="pool_items", what=_ATTENTION_WHAT,
                            n_pairs=_attention_pairs(Q, K))
        report = progress_callback(verbose, progress, "attention_pool_state")
        return _attention_state(Q, K, V, kernel, bandwidth, key_weight, key_mask, attn_mask,
                                is_causal, causal_offset, exclude_self, query_offset,
                                key_offset, return_std, center, be, report)
    be, device_input = backend_for(device, Q, K, V)
    report = progress_callback(verbose, progress, "attention_pool_state")
    if device_input:
        _brute_only(algorithm, "inputs on the GPU")
        disc = None
        if discrete is not None:
            Q, K, bandwidth, disc = _split_discrete_device(discrete, Q, K, bandwidth)
        smax, packed, c, values_1d = _pool_device(
            Q, K, V, kernel, bandwidth, key_weight, exclude_self, query_offset, key_offset,
            return_std, center, disc)
        state = PoolState(be.to_host(smax), be.to_host(packed), pool_layout(len(c), return_std),
                          c, values_1d)
        if report is not None:  # the copies above waited for the kernels
            report.finish(Q.shape[0] * K.shape[0])
        return state
    qc, kc = _discrete_codes(discrete, Q, K)
    Q, K = _check_queries_keys(Q, K)
    V = _v.check_float_array(V, "V", allow_1d=True)
    _v.check_matching_shapes(K=K, V=V)
    values_1d = V.ndim == 1
    V2 = V.reshape(V.shape[0], -1)
    dtype = _v.common_float_dtype(Q, K, V2)
    Qc, Kc, h, disc = _split_discrete(discrete, Q, K, bandwidth, qc, kc, dtype)
    kern, Qs, KT, logw, scale = _prepare_scores(Qc, Kc, kernel, h, key_weight, dtype)
    c, VT, e = _prepare_values(V2, center, dtype, return_std)
    VT2 = VT * VT if return_std else np.empty((0, KT.shape[1]), dtype)
    n_q = Qs.shape[0]
    if exclude_self:
        self_shift = int(query_offset) - int(key_offset)
    else:
        self_shift = -n_q - 1
    extra = {} if disc is None else {"discrete": disc}
    order = key_order(algorithm, be, kern, Qs, KT, same=self_shift == 0 and n_q == KT.shape[1])
    if order is not None:
        extra["order"] = order
    smax, packed = be.pool(Qs, KT, VT, VT2, logw, kern.family, kern.code, scale, self_shift,
                           progress=report, **extra)
    if report is not None:
        report.finish(Qs.shape[0] * KT.shape[1])
    layout = pool_layout(len(c), return_std)
    smax, packed = _state_in_value_units(_to_host(be, smax), _to_host(be, packed), layout, e)
    return PoolState(smax, packed, layout, c, values_1d, queries_fingerprint(Q, query_offset))


def loo_slopes_state(Q, K, V, kernel="gaussian", bandwidth=1.0, *, key_weight=None,
                     query_offset=0, key_offset=0, center=None, device="cpu", discrete=None,
                     algorithm="auto"):
    """Leave-one-out pooling states with their slopes in the log-bandwidths.

    The state of :func:`attention_pool_state` with ``exclude_self=True``,
    plus, for every query, ``A_t = sum_j e_j ds_j/dtheta_t`` and
    ``B_t = sum_j e_j ds_j/dtheta_t (v_j - c)`` with ``theta_t = log h_t``
    (see :mod:`nwattn._cpu.slopes`). States over disjoint keys merge with
    :func:`merge_states`; :func:`finalize_slopes` turns the merged state
    into leave-one-out predictions and their derivatives. This is what the
    gradient of the leave-one-out score is made of.

    Parameters
    ----------
    Q : array_like of shape (n_queries, n_features)
        Training points (queries).
    K : array_like of shape (n_keys, n_features)
        Training points (keys, all or a shard of them).
    V : array_like of shape (n_keys,) or (n_keys, n_outputs)
        Targets of the keys.
    kernel, bandwidth, key_weight : see :func:`attention_pool`.
    query_offset, key_offset : int, default=0
        Global index of the first query and key; query ``query_offset + i``
        skips key ``key_offset + j`` when the two numbers are equal.
    center : array_like of shape (n_outputs,), default=None
        Centre subtracted from the targets; by default their mean.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        The slopes have no GPU kernel: ``"auto"`` means the CPU and
        ``"cuda"`` raises a ValueError.
    discrete : nwattn.discrete.DiscreteFeatures, default=None
        Discrete columns (see :func:`attention_pool_state`). The slopes
        then cover the continuous columns' ``log h_t`` first, then the
        discrete columns' ``lam_f`` (``A_f = sum_j e_j d log L_f / d lam_f``),
        in the order of ``discrete.columns``.

    algorithm : see :func:`attention_pool`.

    Returns
    -------
    PoolState
        With the layout of :func:`nwattn._layout.slopes_layout`.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import loo_slopes_state, finalize_slopes
    >>> X = np.array([[0.0], [1.0], [3.0]])
    >>> norm, pred, dpred = finalize_slopes(loo_slopes_state(X, X, [0.0, 1.0, 2.0]))
    >>> pred.ravel().round(3)
    array([1.018, 0.365, 0.924])
    """
    be, _ = backend_for(device, Q, K, V, need="slopes",
                        what="the gradient of the leave-one-out score")
    _check_offsets(query_offset, key_offset)
    qc, kc = _discrete_codes(discrete, Q, K)
    Q, K = _check_queries_keys(Q, K)
    V = _v.check_float_array(V, "V", allow_1d=True)
    _v.check_matching_shapes(K=K, V=V)
    V2 = V.reshape(V.shape[0], -1)
    dtype = np.dtype(np.float64)
    Qc, Kc, h, disc = _split_discrete(discrete, Q, K, bandwidth, qc, kc, dtype, slopes=True)
    kern, Qs, KT, logw, scale = _prepare_scores(Qc, Kc, kernel, h, key_weight, dtype)
    if center is None:
        c = V2.mean(axis=0, dtype=np.float64)
    else:
        c = _v.check_float_array(center, "center", ndim=1).astype(dtype)
        if c.shape[0] != V2.shape[1]:
            raise ValueError(f"center must have {V2.shape[1]} entries, got {c.shape[0]}")
    VT = np.ascontiguousarray((V2 - c).T, dtype=dtype)
    extra = {} if disc is None else {"discrete": disc}
    shift = int(query_offset) - int(key_offset)
    order = key_order(check_algorithm(algorithm), be, kern, Qs, KT,
                      same=shift == 0 and Qs.shape[0] == KT.shape[1])
    if order is not None:
        extra["order"] = order
    smax, packed = be.slopes(Qs, KT, VT, logw, kern.family, kern.code, scale, shift, **extra)
    return PoolState(smax, packed, slopes_layout(V2.shape[1], Q.shape[1]), c, V.ndim == 1,
                     queries_fingerprint(Q, query_offset))


def _check_query_scale(query_scale, n):
    """Validate the per-query bandwidth factors; ones when None."""
    if query_scale is None:
        return np.ones(n)
    f = _v.check_float_array(query_scale, "query_scale", ndim=1, dtype=np.float64, min_rows=0)
    if f.shape[0] != n:
        raise ValueError(f"query_scale must have one entry per query ({n}), got {f.shape[0]}")
    if not np.all(f > 0):
        raise ValueError("query_scale must be positive")
    return f


def local_polynomial_state(Q, K, V, kernel="gaussian", bandwidth=1.0, *, degree=1,
                           query_scale=None, key_weight=None, exclude_self=False,
                           query_offset=0, key_offset=0, return_std=False, slopes=False,
                           center=None, device="cpu", progress=None, verbose=0, key_std=None,
                           discrete=None, algorithm="auto"):
    """Per-query weighted moments of a local polynomial fit, centred on the query.

    For each query ``q`` the pass accumulates, over the keys ``k_j`` with
    weights ``w_j = key_weight_j K(||(k_j - q) / h||)`` and in the offsets
    ``z_j = (k_j - q) / h`` (per feature), the Gram matrix
    ``sum_j w_j phi(z_j) phi(z_j)^T`` and the cross moments
    ``sum_j w_j phi(z_j) (v_j - c)^T`` of the polynomial basis ``phi`` of
    ``degree`` (``1``, the ``z_t``, and for degree 2 the products
    ``z_a z_b``), streaming over the keys with the online softmax like
    :func:`attention_pool_state`. States of the same queries over disjoint
    keys merge with :func:`merge_states`; :func:`finalize_local` solves
    each query's small least-squares problem. Nothing of size
    n_queries x n_keys is stored.

    Parameters
    ----------
    Q : array_like of shape (n_queries, n_features)
        Queries.
    K : array_like of shape (n_keys, n_features)
        Keys (one shard of them, when sharding).
    V : array_like of shape (n_keys,) or (n_keys, n_outputs)
        Values of the keys.
    kernel : str, default="gaussian"
        A smoothing kernel of :mod:`nwattn.kernels` (not a dot score).
    bandwidth : float or array_like of shape (n_features,), default=1.0
        Positive scalar or one positive value per feature.
    degree : {0, 1, 2, 3}, default=1
        Degree of the local polynomial; 0 is Nadaraya-Watson regression.
        Degree 3 (the bias correction of a local quadratic) is computed on
        the CPU only.
    query_scale : array_like of shape (n_queries,), default=None
        A positive factor per query: query ``i`` uses the bandwidth
        ``bandwidth * query_scale[i]`` (nearest-neighbour bandwidths, as
        loess's ``span`` gives; see :func:`local_polynomial`).
    key_weight : array_like of shape (n_keys,), default=None
        Non-negative weights of the keys (sample weights).
    exclude_self, query_offset, key_offset : see :func:`attention_pool_state`.
    return_std : bool, default=False
        Track the weighted squares of the values too (the ``sq`` block of
        pooling): with degree 0, :func:`finalize_state` then gives the
        weighted standard deviation of the values around each prediction.
    slopes : bool, default=False
        Also accumulate the derivatives of the moments with respect to the
        log-bandwidths (what the gradient of the leave-one-out score is
        made of; :func:`nwattn.state.solve_local` turns them into the
        derivatives of the predictions). CPU only.
    center : array_like of shape (n_outputs,), default=None
        Centre subtracted from the values; by default their mean.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to compute (see :func:`attention_pool`). ``Q``, ``K`` and
        ``V`` may live on the GPU (the computation then runs there); the
        state always comes back to the host.
    progress : callable, default=None
        Called as ``progress(done, total)`` with the numbers of (query,
        key) pairs done and in all, a few times a second on the CPU
        (between the chunks of work that also let a Ctrl-C through) and
        once at the end on the GPU; the last call has ``done == total``.
        An exception it raises stops the computation and propagates: a way
        to cancel a long call.
    verbose : int, default=0
        0 is silent; 1 prints the progress on stderr (share done, time
        elapsed and an estimate of the time left), a few lines a second at
        most, the last at 100 %.
    key_std : array_like of shape (n_keys,) or (n_keys, r), default=None
        Standard deviations ``sigma_j`` of the values' noise at each key
        (residuals, see :mod:`nwattn.uncertainty`). The state then also
        holds, per column, ``sum_j w_j**2 sigma_j**2 phi(z_j) phi(z_j)^T``,
        the middle of the sandwich ``G^-1 (...) G^-1`` whose first entry
        is the variance of the fitted value (:func:`nwattn.state.solve_local`
        returns its square root as ``se``). These columns carry the square
        of the weights, and merge like the others. CPU only.
    discrete : nwattn.discrete.DiscreteFeatures, default=None
        Discrete columns (see :func:`attention_pool_state`): they enter
        the kernel weights only, the polynomial being one of the
        continuous columns (at least one is needed), as in R's np
        package. With ``slopes``, the discrete columns' ``lam_f`` follow
        the continuous ``log h_t`` among the parameters. CPU or GPU (see
        :func:`attention_pool_state`; not with ``slopes``).
    algorithm : see :func:`attention_pool`.

    Returns
    -------
    PoolState
        With the layout of :func:`nwattn._layout.local_layout` and
        ``local`` saying the degree and each query's bandwidth.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import local_polynomial_state, merge_states, finalize_local
    >>> X = np.linspace(0, 1, 20)[:, None]
    >>> y = X[:, 0] ** 2
    >>> a = local_polynomial_state([[0.5]], X[:10], y[:10], bandwidth=0.2, degree=2)
    >>> b = local_polynomial_state([[0.5]], X[10:], y[10:], bandwidth=0.2, degree=2)
    >>> finalize_local(merge_states(a, b)).round(6)  # exact for a quadratic
    array([0.25])
    """
    be, device_input = backend_for(
        device, Q, K, V, need="local_slopes" if slopes else "local",
        what=("the gradient of the local polynomial's leave-one-out score" if slopes
              else "local polynomial regression"))
    _check_offsets(query_offset, key_offset)
    degree = _v.check_degree(degree, max_degree=3)
    if return_std and be.name != "cpu":
        raise ValueError("return_std=True (the squares of the values beside the moments) is "
                         "computed on the CPU only: use device='cpu'")
    if key_std is not None and be.name != "cpu":
        raise ValueError("key_std (the standard errors' sandwich) is computed on the CPU only: "
                         "use device='cpu'")
    if degree == 3 and be.name != "cpu":
        raise ValueError("degree=3 is computed on the CPU only: use device='cpu'")
    kern = get_kernel(kernel)
    if kern.family != DISTANCE:
        raise ValueError(f"kernel must be a smoothing kernel for a local polynomial, got the "
                         f"attention score {kern.name!r}")
    report = progress_callback(verbose, progress, "local_polynomial_state")
    algorithm = check_algorithm(algorithm)
    if device_input:
        _brute_only(algorithm, "inputs on the GPU")
        disc = None
        if discrete is not None:
            Q, K, bandwidth, disc = _split_discrete_device(discrete, Q, K, bandwidth)
        return _local_state_device(Q, K, V, kern, bandwidth, degree, query_scale, key_weight,
                                   exclude_self, query_offset, key_offset, center, report,
                                   disc)
    qc, kc = _discrete_codes(discrete, Q, K)
    Q, K = _check_queries_keys(Q, K)
    V = _v.check_float_array(V, "V", allow_1d=True)
    _v.check_matching_shapes(K=K, V=V)
    n_params = Q.shape[1]
    Q_in = Q
    factor = _check_query_scale(query_scale, Q.shape[0])
    values_1d = V.ndim == 1
    V2 = V.reshape(V.shape[0], -1)
    dtype = _v.common_float_dtype(Q, K, V2)
    Q, K, bandwidth, disc = _split_discrete(discrete, Q, K, bandwidth, qc, kc, dtype, slopes)
    n, d = Q.shape
    if disc is not None and d == 0:
        raise ValueError("a local polynomial needs at least one continuous feature; with "
                         "discrete features only, use attention_pool (degree 0)")
    h = _v.check_bandwidth(bandwidth, d, np.float64)
    kern, Qs, KT, logw, _ = _prepare_scores(Q, K, kern, h, key_weight, dtype)
    qscale = 1.0 / factor
    _check_local_offsets(_extent(Qs, KT), qscale, d, dtype, kern.is_compact)
    c, VT, e = _prepare_values(V2, center, dtype, return_std or key_std is not None)
    VS = None
    if key_std is not None:
        if slopes:
            raise ValueError("slopes=True and key_std are not computed together")
        VT, VS, e = _prepare_key_std(key_std, K.shape[0], VT, e, dtype)
    self_shift = int(query_offset) - int(key_offset) if exclude_self else -n - 1
    if slopes and return_std:
        raise ValueError("slopes=True and return_std=True are not computed together")
    extra = {} if disc is None else {"discrete": disc}
    order = key_order(algorithm, be, kern, Qs, KT, same=self_shift == 0 and n == KT.shape[1],
                      qscale=qscale)
    if order is not None:
        extra["order"] = order
    if slopes:
        smax, packed = be.local_slopes(Qs, KT, VT, logw, kern.family, kern.code,
                                       qscale.astype(dtype), degree, self_shift,
                                       progress=report, **extra)
    else:
        if return_std:
            extra["VT2"] = VT * VT
        if VS is not None:
            extra["VS"] = VS
        smax, packed = be.local(Qs, KT, VT, logw, kern.family, kern.code, qscale.astype(dtype),
                                degree, self_shift, progress=report, **extra)
    if report is not None:
        report.finish(n * KT.shape[1])
    layout = local_layout(V2.shape[1], d, degree, return_std, slopes, n_params,
                          n_meat=0 if VS is None else VS.shape[0])
    smax, packed = _state_in_value_units(_to_host(be, smax), _to_host(be, packed), layout, e)
    return PoolState(smax, packed, layout, c, values_1d, queries_fingerprint(Q_in, query_offset),
                     LocalInfo(degree, h[None, :] * factor[:, None]))


def _prepare_local(Q, K, V, kern, bandwidth, query_scale, key_weight):
    """Validated inputs of a local polynomial pass on the host, its keys and queries scaled.

    Returns ``(Q, K, V2, values_1d, dtype, h, factor, kern, Qs, KT, logw,
    qscale)``: the values as 2-D ``V2``, the bandwidth per feature ``h``,
    each query's bandwidth factor and its inverse ``qscale``, and the
    scores' inputs of :func:`_prepare_scores`; offsets that would overflow
    are refused.
    """
    Q, K = _check_queries_keys(Q, K)
    V = _v.check_float_array(V, "V", allow_1d=True)
    _v.check_matching_shapes(K=K, V=V)
    n, d = Q.shape
    factor = _check_query_scale(query_scale, n)
    V2 = V.reshape(V.shape[0], -1)
    dtype = _v.common_float_dtype(Q, K, V2)
    h = _v.check_bandwidth(bandwidth, d, np.float64)
    kern, Qs, KT, logw, _ = _prepare_scores(Q, K, kern, h, key_weight, dtype)
    qscale = 1.0 / factor
    _check_local_offsets(_extent(Qs, KT), qscale, d, dtype, kern.is_compact)
    return Q, K, V2, V.ndim == 1, dtype, h, factor, kern, Qs, KT, logw, qscale


def _extent(Qs, KT):
    """A bound of ``|k - q|`` per feature over scaled queries and keys."""
    qmax = float(_abs_max(Qs)) if Qs.size else 0.0
    kmax = float(_abs_max(KT)) if KT.size else 0.0
    return qmax + kmax


def _prepare_key_std(key_std, m, VT, e, dtype):
    """Validate the keys' noise scales; square them at the values' scale.

    Returns ``(VT, VS, e)``: the values and the variances ``VS`` (r, m),
    both divided by ``2**e`` (squared for ``VS``), with ``e`` raised when
    the noise scales are the larger, so that neither overflows.
    """
    S = _v.check_float_array(key_std, "key_std", allow_1d=True, dtype=np.float64)
    S = S.reshape(S.shape[0], -1)
    if S.shape[0] != m:
        raise ValueError(f"key_std must have one row per key ({m}), got {S.shape[0]}")
    if not np.all(np.isfinite(S)) or np.any(S < 0):
        raise ValueError("key_std must be finite and non-negative")
    es = _value_exponent(float(S.max()) if S.size else 0.0, dtype, True)
    if es > e:
        VT = np.ldexp(VT, e - es).astype(dtype)
        e = es
    ST = np.ascontiguousarray(np.ldexp(S.T, -e), dtype=dtype)
    return VT, ST * ST, e


def smoother_pool(Q, K, V, coef, kernel="gaussian", bandwidth=1.0, *, degree=1,
                  query_scale=None, key_weight=None, progress=None, verbose=0,
                  algorithm="auto"):
    """Apply fitted local polynomials' weights to other values, many columns at once.

    A local polynomial fit is linear in the values: at query ``q_i`` it is
    ``sum_j l_j(q_i) v_j`` with ``l_j(q_i) = w_ij coef[i] . phi(z_ij) /
    sum_j w_ij``, the kernel weights ``w_ij`` times the query's equivalent
    kernel polynomial in the offsets ``z_ij`` (``coef`` from
    :func:`nwattn.state.solve_local` or, for the robust bias-corrected
    fit, :func:`nwattn.state.solve_bias_corrected`). This pass forms those
    weights tile by tile and multiplies them with the values in matrix
    products: the cost of applying the same smoother to ``B`` columns
    (the wild bootstrap's replications) is that of ``B``-column pooling,
    not of ``B`` fits.

    Parameters
    ----------
    Q : array_like of shape (n_queries, n_features)
        Queries (those of the fit ``coef`` comes from).
    K : array_like of shape (n_keys, n_features)
        Keys (the fit's training points).
    V : array_like of shape (n_keys,) or (n_keys, n_columns)
        Values to smooth.
    coef : array_like of shape (n_queries, P)
        Equivalent-kernel coefficients in the basis of ``degree``
        (``P = 1, 1 + d, ...``); a row with a NaN gives NaN.
    kernel, bandwidth, query_scale, key_weight : as for the fit
        (see :func:`local_polynomial_state`).
    degree : {0, 1, 2, 3}, default=1
        Degree of the basis ``coef`` is written in.
    progress, verbose : see :func:`attention_pool`.

    algorithm : see :func:`attention_pool`.

    Returns
    -------
    ndarray of shape (n_queries,) or (n_queries, n_columns)
        ``sum_j l_j(q_i) v_j``; NaN for a query with no key in its support.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import local_polynomial_state, smoother_pool
    >>> from nwattn.state import solve_local
    >>> X = np.linspace(0, 1, 50)[:, None]
    >>> y = np.cos(3 * X[:, 0])
    >>> fit = solve_local(local_polynomial_state(X[::10], X, y, bandwidth=0.2, degree=1))
    >>> again = smoother_pool(X[::10], X, y, fit.coef, bandwidth=0.2, degree=1)
    >>> bool(np.allclose(again, fit.pred[:, 0]))
    True
    """
    out = finalize_state(smoother_pool_state(Q, K, V, coef, kernel, bandwidth, degree=degree,
                                             query_scale=query_scale, key_weight=key_weight,
                                             progress=progress, verbose=verbose,
                                             algorithm=algorithm), warn=False)
    bad = ~np.isfinite(np.asarray(coef, dtype=np.float64)).all(axis=1)
    out[bad] = np.nan
    return out


def smoother_pool_state(Q, K, V, coef, kernel="gaussian", bandwidth=1.0, *, degree=1,
                        query_scale=None, key_weight=None, center=None, progress=None,
                        verbose=0, algorithm="auto"):
    """:func:`smoother_pool` as a mergeable state (keys in shards, Dask).

    The pooling state (normaliser and weighted values) of the equivalent
    kernels' weights: states of the same queries over disjoint keys merge
    with :func:`merge_states`, and :func:`finalize_state` gives
    ``sum_j l_j(q_i) v_j``. Arguments as for :func:`smoother_pool`;
    ``center`` as for :func:`attention_pool_state` (by default the values'
    mean; give the same to states that will merge). A query whose ``coef``
    has a NaN is computed with zero coefficients (its result is the centre):
    mark it NaN afterwards, as :func:`smoother_pool` does.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import (finalize_state, local_polynomial_state, merge_states,
    ...                         smoother_pool_state)
    >>> from nwattn.state import solve_local
    >>> X = np.linspace(0, 1, 40)[:, None]
    >>> y = np.exp(X[:, 0])
    >>> fit = solve_local(local_polynomial_state([[0.3]], X, y, bandwidth=0.2))
    >>> a = smoother_pool_state([[0.3]], X[:25], y[:25], fit.coef, bandwidth=0.2, center=[0.0])
    >>> b = smoother_pool_state([[0.3]], X[25:], y[25:], fit.coef, bandwidth=0.2, center=[0.0])
    >>> bool(np.allclose(finalize_state(merge_states(a, b)), fit.pred[:, 0]))
    True
    """
    from ._layout import n_basis

    be, _ = backend_for("cpu", Q, K, V, need="smoother", what="the smoother pass")
    degree = _v.check_degree(degree, max_degree=3)
    algorithm = check_algorithm(algorithm)
    kern = get_kernel(kernel)
    if kern.family != DISTANCE:
        raise ValueError(f"kernel must be a smoothing kernel for a local polynomial, got the "
                         f"attention score {kern.name!r}")
    Q, K, V2, values_1d, dtype, h, factor, kern, Qs, KT, logw, qscale = _prepare_local(
        Q, K, V, kern, bandwidth, query_scale, key_weight)
    n, d = Q.shape
    P = n_basis(d, degree)
    C = np.asarray(coef, dtype=np.float64)
    if C.shape != (n, P):
        raise ValueError(f"coef must have shape ({n}, {P}) for degree {degree} in {d} "
                         f"features, got {C.shape}")
    c, VT, e = _prepare_values(V2, center, dtype, False)
    report = progress_callback(verbose, progress, "smoother_pool")
    C = np.where(np.isfinite(C).all(axis=1)[:, None], C, 0.0)
    order = key_order(algorithm, be, kern, Qs, KT, qscale=qscale)
    smax, packed = be.smoother(Qs, KT, VT, logw, kern.family, kern.code, qscale.astype(dtype),
                               degree, C, -n - 1, progress=report, order=order)
    if report is not None:
        report.finish(n * KT.shape[1])
    layout = pool_layout(V2.shape[1], False)
    smax, packed = _state_in_value_units(smax, packed, layout, e)
    return PoolState(smax, packed, layout, c, values_1d, queries_fingerprint(Q))


__all__ += ["smoother_pool", "smoother_pool_state"]


def _check_local_offsets(extent, qscale, d, dtype, compact):
    """Refuse query scales whose offsets ``(k - q) / (h f)`` would overflow ``dtype``.

    ``extent`` bounds ``|k - q| / h`` per feature. The offsets must stay
    finite, or a zero weight times an infinite offset makes a moment NaN;
    a kernel positive everywhere also squares them in its score.
    """
    big = float(np.finfo(dtype).max) / 4
    smax_q = float(qscale.max()) if qscale.size else 0.0
    if not extent * smax_q * math.sqrt(d) < (big if compact else math.sqrt(big)):
        raise ValueError(
            "query_scale is too small for the spread of these inputs: the offsets divided by "
            f"the bandwidth overflow {np.dtype(dtype).name}")


def _local_state_device(Q, K, V, kern, bandwidth, degree, query_scale, key_weight,
                        exclude_self, query_offset, key_offset, center, report, disc=None):
    """:func:`local_polynomial_state` of inputs that live on the GPU.

    The inputs are validated and prepared there (:func:`_prepare_device`);
    the state, small next to them, comes back to the host, as that of
    :func:`attention_pool_state` does. ``query_scale`` and ``center`` are
    host arrays. The queries' fingerprint is left unknown: computing it
    would copy them to the host. ``report``: the progress callback (or
    None), which the GPU calls once, when the kernels are done. ``disc``:
    as for :func:`_pool_device`.
    """
    gpu = get_backend("cuda")
    kern, Qs, KT, logw, _, extent = _prepare_device(Q, K, kern, bandwidth, key_weight,
                                                    extent=True)
    n, d = Qs.shape
    dtype = np.dtype(Qs.dtype)
    factor = _check_query_scale(query_scale, n)
    qscale = 1.0 / factor
    _check_local_offsets(extent, qscale, d, dtype, kern.is_compact)
    VT, c = _values_device(V, KT, center)
    self_shift = int(query_offset) - int(key_offset) if exclude_self else -n - 1
    smax, packed = gpu.local(Qs, KT, VT, logw, kern.family, kern.code, qscale.astype(dtype),
                             degree, self_shift, progress=report, discrete=disc)
    h = _v.check_bandwidth(bandwidth, d, np.float64)
    return PoolState(gpu.to_host(smax), gpu.to_host(packed), local_layout(c.shape[0], d, degree),
                     c, len(V.shape) == 1, None, LocalInfo(degree, h[None, :] * factor[:, None]))


def local_polynomial(Q, K, V, kernel="gaussian", bandwidth=1.0, *, degree=1, span=None,
                     key_weight=None, exclude_self=False, return_gradient=False,
                     lower_degree=False, device="cpu", progress=None, verbose=0,
                     discrete=None, algorithm="auto"):
    """Local polynomial regression (local linear, local quadratic, loess), fused and streaming.

    At each query ``q`` fits the polynomial of ``degree`` in ``x - q`` that
    minimises ``sum_j w_j (v_j - p(k_j - q))**2`` with the kernel weights
    ``w_j = key_weight_j K(||(k_j - q) / h||)``, and returns its value at
    ``q`` (and its slopes, the estimate of ``df/dx``). Degree 0 is
    Nadaraya-Watson regression (:func:`attention_pool`); degree 1 removes
    its bias at the edges of the data and where the function slopes. The
    moments are streamed over the keys (:func:`local_polynomial_state`),
    then one small solve per query.

    Parameters
    ----------
    Q : array_like of shape (n_queries, n_features)
        Queries.
    K : array_like of shape (n_keys, n_features)
        Keys (the training points).
    V : array_like of shape (n_keys,) or (n_keys, n_outputs)
        Values (the targets).
    kernel : str, default="gaussian"
        A smoothing kernel of :mod:`nwattn.kernels`; loess uses
        ``"tricube"``.
    bandwidth : float or array_like of shape (n_features,), default=1.0
        Positive scalar or one positive value per feature. Not used with
        ``span``.
    degree : {0, 1, 2}, default=1
        Degree of the local polynomial.
    span : float, default=None
        Nearest-neighbour bandwidths as loess defines them [1]_: query
        ``q``'s bandwidth is the Euclidean distance to its
        ``floor(span * n_keys)``-th nearest key (at least the first),
        times ``sqrt(span)`` when ``span > 1`` (see
        :func:`nwattn.neighbors.span_radius`).
    key_weight : array_like of shape (n_keys,) or (..., n_keys), default=None
        Non-negative weights of the keys (sample weights).
    exclude_self : bool, default=False
        Leave-one-out: query ``i`` ignores key ``i`` (``Q`` must be ``K``).
    return_gradient : bool, default=False
        Also return the slopes at each query (degree 1 or 2).
    lower_degree : bool, default=False
        Fit a query whose local design is singular (fewer distinct points
        in its neighbourhood than the degree needs) at the highest degree
        that is not, with a :class:`~nwattn.state.SingularDesignWarning`;
        by default its prediction is NaN, with the same warning.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to compute the moments (see :func:`local_polynomial_state`);
        the small solves run on the host, which is where the results are.
    progress : callable, default=None
        Called as ``progress(done, total)`` with the numbers of (query,
        key) pairs of the moments' pass done and in all, a few times a second on the CPU
        (between the chunks of work that also let a Ctrl-C through) and
        once at the end on the GPU; the last call has ``done == total``.
        An exception it raises stops the computation and propagates: a way
        to cancel a long call.
    verbose : int, default=0
        0 is silent; 1 prints the progress on stderr (share done, time
        elapsed and an estimate of the time left), a few lines a second at
        most, the last at 100 %.
    discrete : nwattn.discrete.DiscreteFeatures, default=None
        Discrete columns (see :func:`local_polynomial_state`): they enter
        the kernel weights only. Not with ``span``.

    algorithm : see :func:`attention_pool`.

    Returns
    -------
    pred : ndarray of shape (n_queries,) or (n_queries, n_outputs)
        Same number of dimensions as ``V``.
    gradient : ndarray of shape (n_queries, n_features) or (n_queries, n_features, n_outputs)
        Only with ``return_gradient=True``; with discrete features, the
        slopes in the continuous features only.

    References
    ----------
    .. [1] W. S. Cleveland and S. J. Devlin, "Locally weighted regression:
       an approach to regression analysis by local fitting", Journal of the
       American Statistical Association 83(403), 1988, 596-610.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import attention_pool, local_polynomial
    >>> X = np.linspace(0, 1, 101)[:, None]
    >>> y = np.exp(X[:, 0])
    >>> # at the edge, local linear follows the slope; Nadaraya-Watson is pulled inwards
    >>> local_polynomial([[0.0]], X, y, bandwidth=0.1).round(3)
    array([0.996])
    >>> attention_pool([[0.0]], X, y, bandwidth=0.1).round(3)
    array([1.083])
    >>> pred, slope = local_polynomial([[0.5]], X, y, bandwidth=0.1, degree=2,
    ...                                return_gradient=True)
    >>> slope.round(3)  # the derivative of exp at 0.5 is 1.649
    array([[1.657]])
    """
    degree = _v.check_degree(degree)
    if return_gradient and degree < 1:
        raise ValueError("return_gradient=True needs degree 1 or 2")
    query_scale = None
    if span is not None and discrete is not None:
        raise ValueError("span (nearest-neighbour bandwidths) is not available with discrete "
                         "features: give a bandwidth per feature")
    if span is not None:
        from .neighbors import span_radius

        Q, K = _check_queries_keys(Q, K)
        query_scale = span_radius(Q, K, span)
        bandwidth = 1.0
    if exclude_self:
        Q, K = _check_queries_keys(Q, K)
        _v.check_matching_shapes(Q, K, exclude_self=True)
    state = local_polynomial_state(Q, K, V, kernel, bandwidth, degree=degree,
                                   query_scale=query_scale, key_weight=key_weight,
                                   exclude_self=exclude_self, device=device,
                                   progress=progress_callback(verbose, progress,
                                                              "local_polynomial"),
                                   discrete=discrete, algorithm=algorithm)
    fit = solve_local(state, lower_degree)
    local_warnings(fit, degree, stacklevel=2)
    pred, grad = fit.pred, fit.gradient
    if state.values_1d:
        pred, grad = pred[:, 0], grad[:, :, 0]
    return (pred, grad) if return_gradient else pred


def attention_pool(Q, K, V, kernel="gaussian", bandwidth=1.0, *, key_weight=None,
                   key_mask=None, attn_mask=None, is_causal=False, causal_offset=0,
                   exclude_self=False, return_std=False, device="cpu", progress=None,
                   verbose=0, discrete=None, algorithm="auto"):
    """Attention pooling (Nadaraya-Watson regression), fused and streaming.

    For each query ``q`` returns ``sum_j alpha_j v_j`` with
    ``alpha_j = w_j exp(s(q, k_j)) / sum_l w_l exp(s(q, k_l))``. The weights
    are never stored: keys are swept in tiles with an online softmax, so the
    extra memory is O((n + m)(d + p)) whatever the sizes.

    Parameters
    ----------
    Q : array_like of shape (..., n_queries, n_features)
        Queries. Leading (batch) dimensions of ``Q``, ``K``, ``V`` and the
        masks broadcast as in NumPy: keys and values shared by several
        query heads (grouped-query attention) are given once, with a
        dimension of length 1, and are not copied. See
        :doc:`/attention_arrays`.
    K : array_like of shape (..., n_keys, n_features)
        Keys.
    V : array_like of shape (n_keys,) or (..., n_keys, n_outputs)
        Values.
    kernel : str, default="gaussian"
        A name of :mod:`nwattn.kernels` (case-insensitive).
    bandwidth : float or array_like of shape (n_features,), default=1.0
        Positive scalar or one positive value per feature.
    key_weight : array_like of shape (n_keys,), default=None
        Non-negative weights of the keys (sample weights).
    exclude_self : bool, default=False
        Leave-one-out: query ``i`` ignores key ``i`` (``Q`` must be ``K``).
    return_std : bool, default=False
        Also return the weighted standard deviation of the values around
        each prediction.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to compute. ``"cuda"`` runs the fused kernel on an NVIDIA GPU
        (needs the ``cuda`` extra: numba-cuda). ``"auto"`` uses the GPU when
        one is usable and the problem is large enough to pay for the
        transfers, the CPU otherwise. Inputs that live on the GPU (anything
        with ``__cuda_array_interface__``: CuPy, PyTorch, Numba device
        arrays) are always computed there, in place, and give device arrays
        out; they must be float32 or float64, Q, K and V of one dtype.
        float32 is the fast path on GPUs.
    progress : callable, default=None
        Called as ``progress(done, total)`` with the numbers of (query,
        key) pairs done and in all, a few times a second on the CPU
        (between the chunks of work that also let a Ctrl-C through) and
        once at the end on the GPU; the last call has ``done == total``.
        An exception it raises stops the computation and propagates: a way
        to cancel a long call.
    verbose : int, default=0
        0 is silent; 1 prints the progress on stderr (share done, time
        elapsed and an estimate of the time left), a few lines a second at
        most, the last at 100 %.
    discrete : nwattn.discrete.DiscreteFeatures, default=None
        Which columns hold category codes (mixed data; see
        :mod:`nwattn.discrete`). ``bandwidth`` then has one entry per
        column: ``h`` of a continuous column, the smoothing parameter
        ``lam`` of a discrete one. CPU or GPU (see
        :func:`attention_pool_state`).

    algorithm : {"auto", "brute", "tree"} or nwattn.pruning.KeyTree, default="auto"
        Which key tiles each block of queries visits
        (:mod:`nwattn.pruning`): every one (``"brute"``), or only those
        whose bounding box can reach the block (``"tree"``: smoothing
        kernels, CPU, 2-D inputs; exact for compact kernels, equal to brute
        force to rounding for the gaussian and laplacian). ``"auto"`` prunes
        when a sample of the pairs says that few of them weigh in. A
        ``KeyTree`` of ``K``, built once, saves ordering the keys again.

    Returns
    -------
    pred : ndarray of shape (n_queries,) or (..., n_queries, n_outputs)
        The batch shape, then as ``V``. NaN for a query with no key in its
        kernel's support (compact kernels, or ``lam = 0`` and no key of its
        category) or every key masked, with an
        :class:`~nwattn.exceptions.EmptyNeighborhoodWarning` (PyTorch's
        SDPA returns zeros there).
    std : ndarray, same shape as ``pred``
        Only when ``return_std=True``.

    See Also
    --------
    attention_pool_state : the same computation, stopped before the final
        division, for sharding.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import attention_pool
    >>> X = np.linspace(0, 1, 5)[:, None]
    >>> y = X[:, 0] ** 2
    >>> attention_pool([[0.5]], X, y, bandwidth=0.1).round(4)
    array([0.2551])
    >>> attention_pool(X, X, y, kernel="epanechnikov", bandwidth=0.3,
    ...                exclude_self=True).round(4)
    array([0.0625, 0.125 , 0.3125, 0.625 , 0.5625])

    Attention arrays: two sequences, four query heads sharing one key and
    value head, the second sequence padded after three tokens, causal:

    >>> rng = np.random.default_rng(0)
    >>> Q = rng.normal(size=(2, 4, 5, 8)).astype(np.float32)
    >>> K = rng.normal(size=(2, 1, 5, 8)).astype(np.float32)
    >>> V = rng.normal(size=(2, 1, 5, 3)).astype(np.float32)
    >>> lengths = np.array([5, 3])
    >>> pad = np.arange(5) < lengths[:, None, None]  # (2, 1, 5)
    >>> out = attention_pool(Q, K, V, "scaled_dot", key_mask=pad, is_causal=True)
    >>> out.shape, out.dtype
    ((2, 4, 5, 3), dtype('float32'))
    >>> bool(np.allclose(out[1, :, 0], V[1, 0, 0]))  # the first query sees one key
    True
    """
    algorithm = check_algorithm(algorithm)
    if _is_attention_call(Q, K, V, key_weight, key_mask, attn_mask, is_causal):
        if discrete is not None:
            raise ValueError("discrete features take 2-D queries and keys, without masks or "
                             "causal order")
        _brute_only(algorithm, "attention arrays (batch dimensions, masks, causal order)")
        be, _ = backend_for(device, Q, K, V, need="pool_items", what=_ATTENTION_WHAT,
                            n_pairs=_attention_pairs(Q, K))
        report = progress_callback(verbose, progress, "attention_pool")
        state = _attention_state(Q, K, V, kernel, bandwidth, key_weight, key_mask, attn_mask,
                                 is_causal, causal_offset, exclude_self, 0, 0, return_std, None,
                                 be, report, fingerprint=False)
        return finalize_state(state, return_std=return_std)
    be, device_input = backend_for(device, Q, K, V)
    report = progress_callback(verbose, progress, "attention_pool")
    if device_input:
        _brute_only(algorithm, "inputs on the GPU")
        out = _attention_pool_device(Q, K, V, kernel, bandwidth, key_weight, exclude_self,
                                     return_std, discrete)
        if report is not None:  # counting the empty queries waited for the kernels
            report.finish(Q.shape[0] * K.shape[0])
        return out
    if exclude_self:
        Q, K = _check_queries_keys(Q, K)
        _v.check_matching_shapes(Q, K, exclude_self=True)
    state = attention_pool_state(Q, K, V, kernel, bandwidth, key_weight=key_weight,
                                 exclude_self=exclude_self, return_std=return_std,
                                 device=be.name, progress=report, discrete=discrete,
                                 algorithm=algorithm)
    return finalize_state(state, return_std=return_std)


def _pool_device(Q, K, V, kernel, bandwidth, key_weight, exclude_self, query_offset,
                 key_offset, return_std, center, disc=None):
    """Pooling states of inputs that live on the GPU, left there.

    Returns ``(max, packed, center, values_1d)``: device arrays, the centre
    as a NumPy array. ``disc``: the discrete features' codes and tables
    (:func:`_split_discrete_device`), ``Q`` and ``K`` then their continuous
    columns.
    """
    gpu = get_backend("cuda")
    kern, Qs, KT, logw, scale = _prepare_device(Q, K, kernel, bandwidth, key_weight)
    VT, c = _values_device(V, KT, center)
    p = c.shape[0]
    flag_sq = np.empty((p if return_std else 0, 0), VT.dtype)
    n = Qs.shape[0]
    self_shift = int(query_offset) - int(key_offset) if exclude_self else -n - 1
    smax, packed = gpu.pool(Qs, KT, VT, flag_sq, logw, kern.family, kern.code, scale,
                            self_shift, discrete=disc)
    return smax, packed, c, len(V.shape) == 1


def _values_device(V, KT, center):
    """Validate the values of a GPU call and centre them there.

    Returns ``(VT, c)``: the centred values transposed, a device array of
    the dtype of the prepared keys ``KT``, and the centre as a NumPy array.
    """
    gpu = get_backend("cuda")
    Vd, _ = gpu.check_array(V, "V", allow_1d=True)
    _v.check_matching_shapes(K=KT.T, V=Vd)
    if Vd.dtype != KT.dtype:
        raise TypeError(f"V on the GPU must have the dtype of Q and K, got {Vd.dtype}")
    dtype = np.dtype(Vd.dtype)
    p = Vd.shape[1]
    if center is None:
        c = gpu.column_mean(Vd).astype(dtype)
    else:
        c = _v.check_float_array(center, "center", ndim=1).astype(dtype)
        if c.shape[0] != p:
            raise ValueError(f"center must have {p} entries, got {c.shape[0]}")
    return gpu.centred(Vd, c), c


def _attention_pool_device(Q, K, V, kernel, bandwidth, key_weight, exclude_self, return_std,
                           discrete=None):
    """:func:`attention_pool` of inputs that live on the GPU; device arrays out."""
    _v.check_matching_shapes(Q, K, exclude_self=exclude_self)
    disc = None
    if discrete is not None:
        Q, K, bandwidth, disc = _split_discrete_device(discrete, Q, K, bandwidth)
    _, packed, c, values_1d = _pool_device(
        Q, K, V, kernel, bandwidth, key_weight, exclude_self, 0, 0, return_std, None, disc)
    pred, std, n_empty = get_backend("cuda").finalize(packed, c, values_1d, return_std)
    if n_empty:
        import warnings

        warnings.warn(
            f"{n_empty} of {packed.shape[0]} queries have no key inside the kernel's "
            "support; their predictions are NaN",
            EmptyNeighborhoodWarning,
            stacklevel=3,
        )
    return (pred, std) if return_std else pred


def top_k_from_scores(S, k):
    """Largest ``k`` softmax weights of each row of the score matrix ``S``.

    Shared by every function that explains predictions. Rows are processed
    as given (``S`` is overwritten with the weights).

    Returns
    -------
    indices : ndarray of shape (n, k), int64
        Key indices by decreasing weight; -1 where fewer than ``k`` keys have
        positive weight.
    weights : ndarray of shape (n, k)
        The softmax weights; 0 in unused slots, NaN for rows with no key in
        the support.
    """
    n, m = S.shape
    W = get_backend("cpu").softmax(S)
    k_eff = min(k, m)
    part = np.argpartition(-np.nan_to_num(W, nan=-1.0), k_eff - 1, axis=1)[:, :k_eff]
    # Index order first, so that the stable sort below puts keys of equal
    # weight in index order.
    part.sort(axis=1)
    top = np.take_along_axis(W, part, axis=1)
    order = np.argsort(-np.nan_to_num(top, nan=-1.0), axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    wts = np.take_along_axis(top, order, axis=1)
    indices = np.full((n, k), -1, dtype=np.int64)
    weights = np.zeros((n, k), dtype=S.dtype)
    positive = wts > 0
    indices[:, :k_eff] = np.where(positive, idx, -1)
    weights[:, :k_eff] = np.where(positive, wts, 0)
    empty = np.isnan(W[:, 0])
    weights[empty] = np.nan
    return indices, weights


def top_k_weights(Q, K, kernel="gaussian", bandwidth=1.0, k=5, *, key_weight=None,
                  exclude_self=False, device="cpu"):
    """The ``k`` keys with the largest attention weight for each query.

    Explains a prediction: which training points it averaged, and how much
    each counted. Queries are processed in chunks, so memory stays
    O(chunk x n_keys) rather than O(n_queries x n_keys).

    Parameters
    ----------
    Q : array_like of shape (n_queries, n_features)
        Queries.
    K : array_like of shape (n_keys, n_features)
        Keys.
    kernel : str, default="gaussian"
        A name of :mod:`nwattn.kernels`.
    bandwidth : float or array_like of shape (n_features,), default=1.0
        Positive scalar or one positive value per feature.
    k : int, default=5
        Number of keys to return per query.
    key_weight : array_like of shape (n_keys,), default=None
        Non-negative weights of the keys.
    exclude_self : bool, default=False
        Query ``i`` ignores key ``i`` (``Q`` must be ``K``).
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to compute.

    Returns
    -------
    indices : ndarray of shape (n_queries, k), int64
        Key indices by decreasing weight; -1 in slots beyond the keys that
        have positive weight.
    weights : ndarray of shape (n_queries, k)
        Their weights (the full softmax weights, so a row sums to at most
        one); 0 in unused slots; NaN for a query with no key in its
        kernel's support, with an
        :class:`~nwattn.exceptions.EmptyNeighborhoodWarning`. Keys of equal
        weight come in index order. Where more keys tie for the last slots
        than there are, which of them are kept is not specified (the GPU
        keeps the lowest indices; the CPU's partition any of them).

    Examples
    --------
    >>> from nwattn.ops import top_k_weights
    >>> idx, w = top_k_weights([[0.1]], [[0.0], [1.0], [5.0]], "epanechnikov", 0.5, k=3)
    >>> idx
    array([[ 0, -1, -1]])
    >>> w
    array([[1., 0., 0.]])
    """
    be, device_input = backend_for(device, Q, K, need="pairwise")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if device_input:
        kern, Qs, KT, logw, scale = _prepare_device(Q, K, kernel, bandwidth, key_weight)
        dtype = np.dtype(Qs.dtype)
    else:
        Q, K = _check_queries_keys(Q, K)
        dtype = _v.common_float_dtype(Q, K)
        kern, Qs, KT, logw, scale = _prepare_scores(Q, K, kernel, bandwidth, key_weight, dtype)
    n, m = Qs.shape[0], KT.shape[1]
    _v.check_matching_shapes(Qs, KT.T, exclude_self=exclude_self)
    chunk = max(1, min(n, 4_000_000 // m))
    indices = np.empty((n, int(k)), dtype=np.int64)
    weights = np.empty((n, int(k)), dtype=dtype)
    for i0 in range(0, n, chunk):
        i1 = min(n, i0 + chunk)
        S = be.pairwise(Qs[i0:i1], KT, logw, kern.family, kern.code, scale)
        if "top_k" in be.capabilities:
            # The selection runs where the scores are: only n x k results
            # travel back, not the n x m scores.
            idx, w = be.top_k(S, int(k), i0 if exclude_self else m)
            indices[i0:i1], weights[i0:i1] = _to_host(be, idx), _to_host(be, w)
            continue
        S = _to_host(be, S)
        if exclude_self:
            rows = np.arange(i1 - i0)
            S[rows, rows + i0] = -np.inf
        indices[i0:i1], weights[i0:i1] = top_k_from_scores(S, int(k))
    n_empty = int(np.count_nonzero(np.isnan(weights[:, 0])))
    if n_empty:
        import warnings

        warnings.warn(
            f"{n_empty} of {n} queries have no key inside the kernel's support; "
            "their weights are NaN",
            EmptyNeighborhoodWarning,
            stacklevel=2,
        )
    if device_input:
        return be.to_device(indices), be.to_device(weights)
    return indices, weights


# --- The additive (Bahdanau) score -------------------------------------------------
#
# s(q, k) = w_score . tanh(W_query q + W_key k). Its parameters are arrays rather
# than a bandwidth, so it has its own two functions instead of a catalogue name.
# The projections are one matrix product each; the compiled kernel then costs
# O(r) per pair. Computed in float64 and returned in float32 for float32 input.

__all__ += ["additive_scores", "additive_pool"]


def _from_device(x):
    """A NumPy copy of a GPU array (the projections are matrix products on the host)."""
    if x is None or not is_device_array(x):
        return x
    gpu = get_backend("cuda")
    return gpu.to_host(gpu.to_device(x))


def _to_host(be, x):
    """A NumPy array of a backend's result (device results are copied back)."""
    return be.to_host(x) if be.name != "cpu" else x


def _prepare_additive(Q, K, W_query, W_key, w_score):
    Q, K = _check_queries_keys(Q, K)
    d = Q.shape[1]
    Wq = _v.check_float_array(W_query, "W_query", dtype=np.float64)
    Wk = _v.check_float_array(W_key, "W_key", dtype=np.float64)
    wv = _v.check_float_array(w_score, "w_score", ndim=1, dtype=np.float64)
    r = wv.shape[0]
    for name, W in (("W_query", Wq), ("W_key", Wk)):
        if W.shape != (r, d):
            raise ValueError(
                f"{name} must have shape (len(w_score), n_features) = ({r}, {d}), "
                f"got {W.shape}"
            )
    A = np.ascontiguousarray(Q @ Wq.T, dtype=np.float64)
    BT = np.ascontiguousarray((K @ Wk.T).T, dtype=np.float64)
    return Q, K, A, BT, wv


def additive_scores(Q, K, W_query, W_key, w_score, *, device="cpu"):
    """Dense matrix of additive (Bahdanau) attention scores.

    ``s(q, k) = w_score . tanh(W_query q + W_key k)``. Meant for small
    problems and inspection; :func:`additive_pool` never stores the matrix.

    Parameters
    ----------
    Q : array_like of shape (n_queries, n_features)
        Queries.
    K : array_like of shape (n_keys, n_features)
        Keys.
    W_query : array_like of shape (n_components, n_features)
        Projection of the queries.
    W_key : array_like of shape (n_components, n_features)
        Projection of the keys.
    w_score : array_like of shape (n_components,)
        Weights of the ``tanh`` units.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to compute (see :func:`attention_pool`). The GPU computes in
        the inputs' dtype (float32 is its fast path), the CPU in float64.
        Inputs that live on the GPU are copied to the host for the
        projections, and the result goes back to the GPU.

    Returns
    -------
    S : ndarray of shape (n_queries, n_keys)

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import additive_scores
    >>> S = additive_scores([[1.0, 0.0]], [[0.0, 1.0], [0.0, -1.0]],
    ...                     W_query=np.eye(2), W_key=np.eye(2), w_score=[1.0, 1.0])
    >>> bool(np.allclose(S, [[np.tanh(1) + np.tanh(1), np.tanh(1) - np.tanh(1)]]))
    True
    """
    be, device_input = backend_for(device, Q, K, need="additive_pairwise")
    Q, K = _from_device(Q), _from_device(K)
    Q, K, A, BT, wv = _prepare_additive(Q, K, W_query, W_key, w_score)
    dtype = _v.common_float_dtype(Q, K)
    if be.name != "cpu":
        # The GPU computes in the inputs' dtype: float32 is its fast path.
        S = be.additive_pairwise(A.astype(dtype), BT.astype(dtype), wv.astype(dtype))
        return S if device_input else be.to_host(S)
    return be.additive_pairwise(A, BT, wv).astype(dtype, copy=False)


def additive_pool(Q, K, V, W_query, W_key, w_score, *, key_weight=None, exclude_self=False,
                  return_std=False, device="cpu"):
    """Attention pooling with the additive (Bahdanau) score, fused and streaming.

    Same computation as :func:`attention_pool` with the score
    ``s(q, k) = w_score . tanh(W_query q + W_key k)``; the weights are never
    stored.

    Parameters
    ----------
    Q : array_like of shape (n_queries, n_features)
        Queries.
    K : array_like of shape (n_keys, n_features)
        Keys.
    V : array_like of shape (n_keys,) or (n_keys, n_outputs)
        Values.
    W_query : array_like of shape (n_components, n_features)
        Projection of the queries.
    W_key : array_like of shape (n_components, n_features)
        Projection of the keys.
    w_score : array_like of shape (n_components,)
        Weights of the ``tanh`` units.
    key_weight : array_like of shape (n_keys,), default=None
        Non-negative weights of the keys.
    exclude_self : bool, default=False
        Leave-one-out: query ``i`` ignores key ``i`` (``Q`` must be ``K``).
    return_std : bool, default=False
        Also return the weighted standard deviation of the values.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to compute (see :func:`attention_pool`). The GPU runs the
        fused pooling kernel in the inputs' dtype (float32 is its fast
        path), the CPU in float64. Inputs that live on the GPU are copied to
        the host for the projections, and the results go back to the GPU.

    Returns
    -------
    pred : ndarray of shape (n_queries,) or (n_queries, n_outputs)
        NaN for a query whose keys all have zero weight, with an
        :class:`~nwattn.exceptions.EmptyNeighborhoodWarning`.
    std : ndarray, same shape as ``pred``
        Only when ``return_std=True``.

    See Also
    --------
    additive_scores : the dense score matrix.
    attention_pool : the same pooling with the catalogue's kernels.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.ops import additive_pool
    >>> X = np.array([[0.0], [1.0], [2.0]])
    >>> pred = additive_pool([[0.0]], X, [0.0, 1.0, 2.0], W_query=[[1.0]], W_key=[[-1.0]],
    ...                      w_score=[2.0])
    >>> bool(0.0 < pred[0] < 1.0)
    True
    """
    be, device_input = backend_for(device, Q, K, V, need="learned_pool")
    Q, K, V = _from_device(Q), _from_device(K), _from_device(V)
    key_weight = _from_device(key_weight)
    Q, K, A, BT, wv = _prepare_additive(Q, K, W_query, W_key, w_score)
    V = _v.check_float_array(V, "V", allow_1d=True)
    _v.check_matching_shapes(Q, K, V, exclude_self=exclude_self)
    dtype = _v.common_float_dtype(Q, K, V)
    V2 = V.reshape(V.shape[0], -1).astype(np.float64)
    c = V2.mean(axis=0)
    VT = np.ascontiguousarray((V2 - c).T)
    VT2 = VT * VT if return_std else np.empty((0, VT.shape[1]))
    if key_weight is None:
        logw = np.empty(0)
    else:
        w = _v.check_key_weight(key_weight, K.shape[0], np.float64)
        with np.errstate(divide="ignore"):
            logw = np.log(w)
    self_shift = 0 if exclude_self else -A.shape[0] - 1
    # The GPU computes in the inputs' dtype (float32 is its fast path), the
    # CPU in float64; either way the same learned score kind reaches the kernel.
    work = np.float64 if be.name == "cpu" else dtype
    smax, packed = be.learned_pool(ADDITIVE_KIND, *(x.astype(work) for x in (A, BT, wv)), 1.0,
                                   logw.astype(work), VT.astype(work), VT2.astype(work),
                                   self_shift)
    state = PoolState(smax.astype(np.float64), packed.astype(np.float64),
                      pool_layout(len(c), return_std), c, V.ndim == 1)
    out = finalize_state(state, return_std=return_std)
    out = tuple(o.astype(dtype, copy=False) for o in out) if return_std else (
        out.astype(dtype, copy=False))
    if device_input:
        return tuple(map(be.to_device, out)) if return_std else be.to_device(out)
    return out

"""Plain float64 NumPy references for every computation of nwattn.

Written from the formulas, independently of the package's code: dense
matrices, no tiling, no online softmax.
"""

import numpy as np

DISTANCE_KERNELS = ("gaussian", "laplacian", "epanechnikov", "boxcar", "triangular",
                    "biweight", "tricube", "cosine")
SCORE_KERNELS = ("dot", "scaled_dot")
ALL_KERNELS = DISTANCE_KERNELS + SCORE_KERNELS
COMPACT_KERNELS = DISTANCE_KERNELS[2:]


def kernel_value(name, u):
    """Unnormalised K(u) for u >= 0."""
    u = np.asarray(u, dtype=np.float64)
    inside = u < 1
    if name == "gaussian":
        return np.exp(-0.5 * u**2)
    if name == "laplacian":
        return np.exp(-u)
    if name == "epanechnikov":
        return np.where(inside, 1 - u**2, 0.0)
    if name == "boxcar":
        return np.where(u <= 1, 1.0, 0.0)
    if name == "triangular":
        return np.where(inside, 1 - u, 0.0)
    if name == "biweight":
        return np.where(inside, (1 - u**2) ** 2, 0.0)
    if name == "tricube":
        return np.where(inside, (1 - u**3) ** 3, 0.0)
    if name == "cosine":
        return np.where(inside, np.cos(np.pi * u / 2), 0.0)
    raise ValueError(name)


def scores(Q, K, kernel="gaussian", bandwidth=1.0):
    """Dense (n, m) scores: log K(||(q-k)/h||), or q.(k/h) (/ sqrt d)."""
    Q = np.asarray(Q, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    h = np.broadcast_to(np.asarray(bandwidth, dtype=np.float64), (Q.shape[1],))
    if kernel in SCORE_KERNELS:
        S = (Q / h) @ K.T
        if kernel == "scaled_dot":
            S = S / np.sqrt(Q.shape[1])
        return S
    diff = (Q[:, None, :] - K[None, :, :]) / h
    u2 = np.einsum("ijk,ijk->ij", diff, diff)
    if kernel == "gaussian":
        return -0.5 * u2
    if kernel == "laplacian":
        return -np.sqrt(u2)
    with np.errstate(divide="ignore"):
        return np.log(kernel_value(kernel, np.sqrt(u2)))


def softmax(S):
    """Row-wise softmax; rows of all -inf give NaN."""
    S = np.asarray(S, dtype=np.float64)
    top = S.max(axis=1, keepdims=True)
    empty = ~np.isfinite(top[:, 0])
    top[empty] = 0.0
    E = np.exp(S - top)
    total = E.sum(axis=1, keepdims=True)
    total[empty] = 1.0
    W = E / total
    W[empty] = np.nan
    return W


def weights(Q, K, kernel="gaussian", bandwidth=1.0, key_weight=None, exclude_self=False):
    """Dense attention weights alpha (n, m)."""
    S = scores(Q, K, kernel, bandwidth)
    if key_weight is not None:
        with np.errstate(divide="ignore"):
            S = S + np.log(np.asarray(key_weight, dtype=np.float64))[None, :]
    if exclude_self:
        S = S.copy()
        np.fill_diagonal(S, -np.inf)
    return softmax(S)


def pool(Q, K, V, kernel="gaussian", bandwidth=1.0, key_weight=None, exclude_self=False,
         return_std=False):
    """Attention pooling with the dense weight matrix; NaN for empty rows."""
    V = np.asarray(V, dtype=np.float64)
    W = weights(Q, K, kernel, bandwidth, key_weight, exclude_self)
    V2 = V.reshape(V.shape[0], -1)
    pred = W @ V2
    if not return_std:
        return pred[:, 0] if V.ndim == 1 else pred
    var = np.einsum("ij,ijk->ik", W, (V2[None, :, :] - pred[:, None, :]) ** 2)
    std = np.sqrt(var)
    if V.ndim == 1:
        return pred[:, 0], std[:, 0]
    return pred, std


def relative_error(actual, expected):
    """max |a - e| / max(|e|, tiny), NaN positions required to match."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    assert np.array_equal(nan_a, nan_e), "NaN positions differ"
    ok = ~nan_e
    if not ok.any():
        return 0.0
    a, e = actual[ok], expected[ok]
    scale = max(np.max(np.abs(e)), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a - e)) / scale)


def loo_cv(X, y, kernel="gaussian", bandwidth=1.0, sample_weight=None, fallback="mean"):
    """Leave-one-out CV score by refitting without each point in turn.

    A point whose left-out fit has no neighbour in the support is predicted
    by the weighted mean of the other targets (``"mean"``) or the target of
    the nearest other point of positive weight, distances scaled by the
    bandwidth (``"nearest"``).
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(y, dtype=np.float64).reshape(X.shape[0], -1)
    n = X.shape[0]
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    h = np.broadcast_to(np.asarray(bandwidth, dtype=np.float64), (X.shape[1],))
    total = 0.0
    for i in range(n):
        keep = np.arange(n) != i
        pred = pool(X[i:i + 1], X[keep], Y[keep], kernel, h, key_weight=w[keep])[0]
        if np.isnan(pred).any():
            if fallback == "mean":
                pred = np.average(Y[keep], axis=0, weights=w[keep])
            else:
                others = np.flatnonzero(keep & (w > 0))
                dist = np.sum(((X[others] - X[i]) / h) ** 2, axis=1)
                pred = Y[others[np.argmin(dist)]]
        total += w[i] * np.sum((Y[i] - pred) ** 2)
    return total / w.sum()


def rule_of_thumb(X, rule, sample_weight=None):
    """Scott's or Silverman's per-feature bandwidth, written from the formulas."""
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    sigma = np.sqrt(np.cov(X.T, aweights=w, bias=True).reshape(d, d).diagonal())
    n_eff = w.sum() ** 2 / (w**2).sum()
    if rule == "scott":
        return sigma * n_eff ** (-1 / (d + 4))
    return sigma * (4 / ((d + 2) * n_eff)) ** (1 / (d + 4))


def additive_scores(Q, K, W_query, W_key, w_score):
    """Dense additive (Bahdanau) scores w . tanh(W_q q + W_k k)."""
    A = np.asarray(Q, np.float64) @ np.asarray(W_query, np.float64).T
    B = np.asarray(K, np.float64) @ np.asarray(W_key, np.float64).T
    return np.tanh(A[:, None, :] + B[None, :, :]) @ np.asarray(w_score, np.float64)


def pool_from_scores(S, V, key_weight=None, exclude_self=False, return_std=False):
    """Attention pooling given the dense score matrix S."""
    S = np.array(S, dtype=np.float64)
    if key_weight is not None:
        with np.errstate(divide="ignore"):
            S = S + np.log(np.asarray(key_weight, dtype=np.float64))[None, :]
    if exclude_self:
        np.fill_diagonal(S, -np.inf)
    W = softmax(S)
    V = np.asarray(V, dtype=np.float64)
    V2 = V.reshape(V.shape[0], -1)
    pred = W @ V2
    var = np.einsum("ij,ijk->ik", W, (V2[None, :, :] - pred[:, None, :]) ** 2)
    if V.ndim == 1:
        pred, var = pred[:, 0], var[:, 0]
    return (pred, np.sqrt(var)) if return_std else pred


def learned_scores(kind, Pq, Pk, w_score=None):
    """Dense learned scores of projected queries and keys.

    kind: "rbf" (-||p - k||^2 / 2), "scaled_dot" (p . k / sqrt(r)) or
    "additive" (w . tanh(p + k)).
    """
    Pq = np.asarray(Pq, np.float64)
    Pk = np.asarray(Pk, np.float64)
    if kind == "rbf":
        return -0.5 * ((Pq[:, None, :] - Pk[None, :, :]) ** 2).sum(axis=-1)
    if kind == "scaled_dot":
        return Pq @ Pk.T / np.sqrt(Pq.shape[1])
    return np.tanh(Pq[:, None, :] + Pk[None, :, :]) @ np.asarray(w_score, np.float64)


def loo_loss(kind, Pq, Pk, Y, key_weight, query_weight, w_score=None):
    """sum_i u_i ||f_{-i} - y_i||^2 with the first len(Pq) points as queries.

    Queries with no other key of positive weight are left out. Returns the
    loss and the leave-one-out predictions (NaN for those queries).
    """
    b = np.asarray(Pq).shape[0]
    S = learned_scores(kind, Pq, Pk, w_score)
    with np.errstate(divide="ignore"):
        S = S + np.log(np.asarray(key_weight, np.float64))[None, :]
    S[np.arange(b), np.arange(b)] = -np.inf
    W = softmax(S)
    Y = np.asarray(Y, np.float64)
    f = W @ Y
    ok = ~np.isnan(f[:, 0])
    resid = f[ok] - Y[:b][ok]
    return float((np.asarray(query_weight)[ok, None] * resid**2).sum()), f


def poly_basis(Z, degree):
    """Columns 1, z_t, and for degree 2 the products z_a z_b (a <= b)."""
    n, d = Z.shape
    cols = [np.ones(n)]
    if degree >= 1:
        cols += [Z[:, t] for t in range(d)]
    if degree >= 2:
        cols += [Z[:, a] * Z[:, b] for a in range(d) for b in range(a, d)]
    return np.column_stack(cols)


def local_polynomial(Q, K, V, kernel="gaussian", bandwidth=1.0, degree=1, key_weight=None,
                     radius=None, exclude_self=False):
    """Weighted least squares solved directly at each query.

    Returns ``(pred, gradient)`` with shapes (n, p) and (n, d, p): the
    polynomial of ``degree`` in ``(k - q) / h`` fitted with the weights
    ``key_weight * K(||(k - q) / h||)``, its value and slopes (in the
    inputs' units) at the query. ``radius`` (n,) multiplies the bandwidth
    of each query (loess). NaN where the weighted design is rank-deficient.
    """
    Q = np.asarray(Q, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64).reshape(K.shape[0], -1)
    n, d = Q.shape
    h = np.broadcast_to(np.asarray(bandwidth, dtype=np.float64), (d,))
    c = np.ones(K.shape[0]) if key_weight is None else np.asarray(key_weight, np.float64)
    pred = np.full((n, V.shape[1]), np.nan)
    grad = np.full((n, d, V.shape[1]), np.nan)
    for i in range(n):
        hi = h * (1.0 if radius is None else radius[i])
        Z = (K - Q[i]) / hi
        w = c * kernel_value(kernel, np.sqrt(np.sum(Z * Z, axis=1)))
        if exclude_self:
            w[i] = 0.0
        B = poly_basis(Z, degree)
        keep = w > 0
        Bw = B[keep] * np.sqrt(w[keep])[:, None]
        if keep.sum() < B.shape[1] or np.linalg.matrix_rank(Bw) < B.shape[1]:
            continue
        beta = np.linalg.lstsq(Bw, V[keep] * np.sqrt(w[keep])[:, None], rcond=None)[0]
        pred[i] = beta[0]
        if degree >= 1:
            grad[i] = beta[1:1 + d] / hi[:, None]
    return pred, grad


def loess_radius(Q, K, span):
    """loess's neighbourhood radius: distance to the floor(span n)-th nearest key."""
    Q = np.asarray(Q, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    q = min(K.shape[0], int(np.floor(K.shape[0] * span)))
    d2 = np.sum((Q[:, None, :] - K[None, :, :]) ** 2, axis=2)
    return np.sqrt(np.sort(d2, axis=1)[:, q - 1] * max(1.0, span))


def _basis_up_to(Z, degree):
    """poly_basis, extended to degree 3 (products a <= b <= c after the pairs)."""
    B = poly_basis(Z, min(degree, 2))
    if degree >= 3:
        d = Z.shape[1]
        B = np.column_stack([B] + [Z[:, a] * Z[:, b] * Z[:, c] for a in range(d)
                                   for b in range(a, d) for c in range(b, d)])
    return B


def _local_design(q, K, kernel, h, degree, key_weight):
    """Offsets basis and kernel weights of the keys for one query."""
    Z = (K - q) / h
    c = np.ones(K.shape[0]) if key_weight is None else np.asarray(key_weight, np.float64)
    w = c * kernel_value(kernel, np.sqrt(np.sum(Z * Z, axis=1)))
    return _basis_up_to(Z, degree), w


def equivalent_kernel(Q, K, kernel="gaussian", bandwidth=1.0, degree=1, key_weight=None):
    """The weights ``L`` (n, m) of the local polynomial fit: ``pred = L @ V``.

    Formed explicitly, row by row: ``e_0' (B' W B)^-1 B' W``.
    """
    Q = np.asarray(Q, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    h = np.broadcast_to(np.asarray(bandwidth, dtype=np.float64), (Q.shape[1],))
    L = np.empty((Q.shape[0], K.shape[0]))
    for i in range(Q.shape[0]):
        B, w = _local_design(Q[i], K, kernel, h, degree, key_weight)
        L[i] = np.linalg.solve(B.T @ (B * w[:, None]), (B * w[:, None]).T)[0]
    return L


def bias_corrected_kernel(Q, K, kernel="gaussian", bandwidth=1.0, degree=1, key_weight=None):
    """Weights (n, m) of the robust bias-corrected fit of ``degree`` (pilot = same bandwidth).

    By its definition: the fit of ``degree`` applied to the targets minus
    the terms of degree ``degree + 1`` of a fit of that degree, i.e.
    ``e_0' Gp^-1 (Bp' W - Bp' W B_r [Gq^-1 Bq' W]_r)`` with ``r`` the
    basis functions of degree ``degree + 1``.
    """
    Q = np.asarray(Q, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    h = np.broadcast_to(np.asarray(bandwidth, dtype=np.float64), (Q.shape[1],))
    Pp = _basis_up_to(Q[:1], degree).shape[1]
    L = np.empty((Q.shape[0], K.shape[0]))
    for i in range(Q.shape[0]):
        Bq, w = _local_design(Q[i], K, kernel, h, degree + 1, key_weight)
        Bp, Br = Bq[:, :Pp], Bq[:, Pp:]
        BpW = (Bp * w[:, None]).T
        coef_q = np.linalg.solve(Bq.T @ (Bq * w[:, None]), (Bq * w[:, None]).T)
        ops = BpW - BpW @ Br @ coef_q[Pp:]
        L[i] = np.linalg.solve(BpW @ Bp, ops)[0]
    return L


def nn_residuals_brute(X, y, matches):
    """The ``matches`` nearest others of each point by a full sort of the distances."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(y, dtype=np.float64).reshape(X.shape[0], -1)
    out = np.empty_like(Y)
    for i in range(X.shape[0]):
        dist = np.sum((X - X[i]) ** 2, axis=1)
        dist[i] = np.inf
        nb = np.argsort(dist, kind="stable")[:matches]
        out[i] = np.sqrt(matches / (matches + 1.0)) * (Y[i] - Y[nb].mean(axis=0))
    return out
# ---------------------------------------------------------------- mixed data


def discrete_kernel(name, lam, a, b, c):
    """L(a, b; lam) of a discrete kernel, elementwise over arrays of codes."""
    a = np.asarray(a)
    b = np.asarray(b)
    eq = a == b
    k = np.abs(a - b).astype(np.float64)
    if name == "aitchison_aitken":
        return np.where(eq, 1.0 - lam, lam / (c - 1) if c > 1 else 0.0)
    if name == "li_racine":
        return np.where(eq, 1.0, lam)
    if name == "wang_van_ryzin":
        return np.where(eq, 1.0 - lam, 0.5 * (1.0 - lam) * lam ** k)
    if name == "li_racine_ordered":
        return np.where(eq, 1.0, lam ** k)
    raise ValueError(name)


def mixed_weights(Q, K, bandwidth, discrete, kernels, n_categories):
    """Dense (n, m) product-kernel weights: gaussian over the continuous
    columns times the discrete kernels of the columns in ``discrete``."""
    Q = np.asarray(Q, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    bw = np.asarray(bandwidth, dtype=np.float64)
    cont = [t for t in range(Q.shape[1]) if t not in discrete]
    W = np.ones((Q.shape[0], K.shape[0]))
    for t in cont:
        u = (Q[:, t, None] - K[None, :, t]) / bw[t]
        W *= np.exp(-0.5 * u * u)
    for t, name, c in zip(discrete, kernels, n_categories):
        W *= discrete_kernel(name, bw[t], Q[:, t, None], K[None, :, t], c)
    return W


def weighted_local_fit(W, Xd, y, Qd, degree):
    """Per-query weighted least squares of ``y`` on ``[1, Xd - q]`` (degree 1) or ``[1]``."""
    out = np.empty(W.shape[0])
    for i in range(W.shape[0]):
        if degree == 0:
            out[i] = W[i] @ y / W[i].sum()
            continue
        Z = np.column_stack([np.ones(Xd.shape[0]), Xd - Qd[i]])
        G = Z.T @ (W[i, :, None] * Z)
        out[i] = np.linalg.solve(G, Z.T @ (W[i] * y))[0]
    return out


def mixed_regression(Q, X, y, bandwidth, discrete, kernels, n_categories, degree=0):
    """Nadaraya-Watson (degree 0) or local linear (degree 1) with mixed data;
    the local design uses the continuous columns only."""
    W = mixed_weights(Q, X, bandwidth, discrete, kernels, n_categories)
    cont = [t for t in range(np.shape(X)[1]) if t not in discrete]
    return weighted_local_fit(W, np.asarray(X, float)[:, cont], np.asarray(y, float),
                              np.asarray(Q, float)[:, cont], degree)


def mixed_loo_score(X, y, bandwidth, discrete, kernels, n_categories, degree=0):
    """Leave-one-out score by refitting without each point in turn."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = X.shape[0]
    err = 0.0
    for i in range(n):
        keep = np.arange(n) != i
        pred = mixed_regression(X[i:i + 1], X[keep], y[keep], bandwidth, discrete, kernels,
                                n_categories, degree)[0]
        err += (y[i] - pred) ** 2
    return err / n

"""Attention pooling with a learned score, as a scikit-learn regressor."""

import time
from numbers import Integral, Real

import numpy as np
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils import TransformerTags
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .. import ops
from .._cpu import learned
from .._device import resolve_device
from .._parallel import serial_blas, threads

__all__ = ["AttentionRegressor"]

_KINDS = {"rbf": learned.RBF, "scaled_dot": learned.SCALED_DOT, "additive": learned.ADDITIVE}


def _is_rbf(estimator):
    return estimator.kernel == "rbf"


class AttentionRegressor(RegressorMixin, BaseEstimator):
    """Attention pooling over the training set with a learned similarity score.

    The prediction at ``x`` is ``sum_j alpha_j y_j`` with
    ``alpha_j = w_j exp(s(x, x_j)) / sum_l w_l exp(s(x, x_l))`` over the
    training points ``x_j`` (the keys) and their targets ``y_j`` (the
    values). Unlike Nadaraya-Watson regression with a fixed kernel, the score
    has parameters, fitted by minimising the leave-one-out squared error of
    the pooled prediction over the training set:

    ``L = sum_i u_i ||f_{-i}(x_i) - y_i||^2 / (p sum_i u_i) + alpha ||theta||^2``

    where ``f_{-i}`` pools over every training point but ``i``, ``u_i`` are
    the sample weights and ``p`` the number of outputs. The targets are
    standardised for training (pooling is equivariant to that), so ``tol``
    and ``alpha`` do not depend on their units.

    The objective and its analytic gradient are computed by compiled kernels
    that recompute the attention weights tile by tile and never store the
    ``n x n`` weight matrix: memory is ``O(n (d + r))``.

    Parameters
    ----------
    kernel : {"rbf", "scaled_dot", "additive"}, default="rbf"
        The learned score (named ``kernel`` as in :mod:`nwattn.ops`, because
        ``score`` is the regressor's R^2 method):

        - ``"rbf"``: ``-||A (q - k)||^2 / 2`` with a learned matrix ``A``
          (``n_components x n_features``): Metric Learning for Kernel
          Regression [1]_. Predicting is gaussian pooling of the embedding
          ``x A^T`` with unit bandwidth.
        - ``"scaled_dot"``: ``(W_q q) . (W_k k) / sqrt(r)`` [2]_.
        - ``"additive"``: ``w_v . tanh(W_q q + W_k k)`` [3]_.
    n_components : int, default=None
        Dimension ``r`` of the learned projections; ``None`` means
        ``n_features``. For ``"rbf"`` it may not exceed ``n_features``.
    alpha : float, default=0.0
        L2 penalty on the score's parameters.
    max_iter : int, default=100
        Maximum number of L-BFGS-B iterations.
    tol : float, default=1e-5
        Tolerance of L-BFGS-B (on the relative decrease of the objective and
        on the projected gradient).
    init : {"auto", "random"}, ndarray or dict, default="auto"
        Initial parameters. ``"auto"``: for ``"rbf"``, the principal axes of
        the training inputs scaled so that unit bandwidth in the embedding is
        Scott's rule of thumb; for the other scores, ``"random"``: Gaussian
        entries of variance ``1 / n_features`` divided by each feature's
        standard deviation. An ndarray of shape ``(n_components,
        n_features)`` is the initial ``A`` of ``"rbf"``; a dict with keys
        ``"W_query"``, ``"W_key"`` (and ``"w_score"`` for ``"additive"``)
        gives the other scores' parameters.
    batch_size : int, default=None
        Number of training points used as queries in the objective; every
        training point stays a key. ``None`` uses all ``n``. With ``b <
        n`` the points are drawn once at random (``random_state``), so the
        objective stays deterministic for L-BFGS-B, and each evaluation
        costs ``O(b n)`` instead of ``O(n^2)``; the trade-off is a noisier
        estimate of the leave-one-out error, which matters more for scores
        with many parameters.
    random_state : int, RandomState instance or None, default=None
        Seeds the random initialisation and the choice of ``batch_size``
        queries.
    verbose : int, default=0
        When positive, print the iteration, the objective and the elapsed
        time after every iteration.
    n_jobs : int, default=None
        Number of threads of the compiled kernels (scikit-learn's
        convention: ``None`` keeps Numba's setting, ``-1`` uses all cores).
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to compute the training objective and the predictions.
        ``"cuda"`` runs the objective's kernels (pooling and both gradient
        sweeps) and the predictions on an NVIDIA GPU (needs the ``cuda``
        extra); the parameters stay on the host, where L-BFGS-B and the
        ``O(n d r)`` projections run, so each evaluation moves only
        ``O(n (r + p))`` numbers. ``"auto"`` uses the GPU when one is usable
        and the number of (query, key) pairs is large enough to pay for the
        transfers.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The learned matrix ``A`` (``kernel="rbf"`` only).
    W_query_ : ndarray of shape (n_components, n_features)
        Projection of the queries (``A`` for ``"rbf"``).
    W_key_ : ndarray of shape (n_components, n_features)
        Projection of the keys (``A`` for ``"rbf"``).
    w_score_ : ndarray of shape (n_components,)
        Weights of the ``tanh`` units (``kernel="additive"`` only).
    n_iter_ : int
        Number of L-BFGS-B iterations run.
    loss_curve_ : list of float
        The objective after every iteration (the first entry is the initial
        one).
    X_fit_ : ndarray of shape (n_samples, n_features)
        The training inputs (the keys).
    y_fit_ : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        The training targets (the values).
    sample_weight_ : ndarray of shape (n_samples,) or None
        Weights of the keys, ``None`` when all are equal.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features, when ``X`` had string column names.

    See Also
    --------
    nwattn.ops.attention_pool : the pooling with a fixed kernel.
    nwattn.ops.additive_pool : the pooling with the additive score.

    Notes
    -----
    The gradient ``dL/ds_ij = alpha_ij (y_j - f_i) . dL/df_i`` is summed over
    keys for each query's parameters and over queries for each key's, in two
    sweeps that each own their output rows; see :mod:`nwattn._cpu.learned`.

    References
    ----------
    .. [1] K. Q. Weinberger and G. Tesauro, "Metric Learning for Kernel
       Regression", AISTATS 2007.
    .. [2] A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    .. [3] D. Bahdanau, K. Cho and Y. Bengio, "Neural Machine Translation by
       Jointly Learning to Align and Translate", ICLR 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.estimators import AttentionRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4))
    >>> y = np.sin(2 * X[:, 0])  # only the first feature matters
    >>> reg = AttentionRegressor(n_components=2, random_state=0).fit(X, y)
    >>> reg.components_.shape
    (2, 4)
    >>> bool(reg.score(X, y) > 0.9)
    True
    """

    _parameter_constraints = {
        "kernel": [StrOptions(set(_KINDS))],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "init": [StrOptions({"auto", "random"}), "array-like", dict],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "n_jobs": [Integral, None],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
    }

    def __init__(self, kernel="rbf", *, n_components=None, alpha=0.0, max_iter=100, tol=1e-5,
                 init="auto", batch_size=None, random_state=None, verbose=0, n_jobs=None,
                 device="cpu"):
        self.kernel = kernel
        self.n_components = n_components
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs
        self.device = device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        if self.kernel == "rbf":
            # transform() exists (the learned embedding); it returns float64.
            tags.transformer_tags = TransformerTags(preserves_dtype=["float64"])
        return tags

    # -- fitting -----------------------------------------------------------------------

    def _initial_params(self, X, r, rng):
        d = X.shape[1]
        init = self.init
        names = ["W_query", "W_key"] + (["w_score"] if self.kernel == "additive" else [])
        if isinstance(init, dict):
            if self.kernel == "rbf":
                raise ValueError("init for kernel='rbf' is an array of shape "
                                 "(n_components, n_features), not a dict")
            missing = set(names) - set(init)
            extra = set(init) - set(names)
            if missing or extra:
                raise ValueError(f"init must have exactly the keys {names}, got {sorted(init)}")
            parts = []
            for name in names:
                shape = (r,) if name == "w_score" else (r, d)
                arr = np.asarray(init[name], dtype=np.float64)
                if arr.shape != shape or not np.all(np.isfinite(arr)):
                    raise ValueError(f"init[{name!r}] must be finite of shape {shape}, "
                                     f"got shape {arr.shape}")
                parts.append(arr.ravel())
            return np.concatenate(parts)
        if not isinstance(init, str):
            if self.kernel != "rbf":
                raise ValueError(f"init for kernel={self.kernel!r} is 'auto', 'random' or a "
                                 f"dict with keys {names}")
            A = np.asarray(init, dtype=np.float64)
            if A.shape != (r, d) or not np.all(np.isfinite(A)):
                raise ValueError(f"init must be a finite array of shape (n_components, "
                                 f"n_features) = {(r, d)}, got shape {A.shape}")
            return A.ravel().copy()
        std = X.std(axis=0)
        std[std == 0] = 1.0
        if init == "auto" and self.kernel == "rbf":
            Xc = X - X.mean(axis=0)
            _, sv, Vt = np.linalg.svd(Xc, full_matrices=False)
            var = sv[:r] ** 2 / max(1, X.shape[0] - 1)
            spread = np.sqrt(max(var.mean(), np.finfo(np.float64).tiny))
            h = spread * X.shape[0] ** (-1.0 / (r + 4))
            return (Vt[:r] / h).ravel()
        W = rng.normal(scale=1.0 / np.sqrt(d), size=(2, r, d)) / std
        if self.kernel == "rbf":
            return W[0].ravel()
        parts = [W[0].ravel(), W[1].ravel()]
        if self.kernel == "additive":
            parts.append(rng.normal(scale=1.0 / np.sqrt(r), size=r))
        return np.concatenate(parts)

    def _unpack(self, theta, r, d):
        if self.kernel == "rbf":
            A = theta.reshape(r, d)
            return A, A, None
        Wq = theta[:r * d].reshape(r, d)
        Wk = theta[r * d:2 * r * d].reshape(r, d)
        wv = theta[2 * r * d:] if self.kernel == "additive" else None
        return Wq, Wk, wv

    def _objective(self, X, Y, logw, qweight, b, r, backend="cpu"):
        """``theta -> (loss, gradient)`` for L-BFGS-B; ``X[:b]`` are the queries.

        ``backend`` (``"cpu"`` or ``"cuda"``) runs the compiled kernels.
        """
        kind = _KINDS[self.kernel]
        if backend == "cuda":
            from .._cuda.learned import loo_loss_grad
        else:
            loo_loss_grad = learned.loo_loss_grad
        d = X.shape[1]
        scale = 1.0 / np.sqrt(r)
        alpha = float(self.alpha)
        no_wv = np.zeros(r)

        def fun(theta):
            Wq, Wk, wv = self._unpack(theta, r, d)
            Pk = np.ascontiguousarray(X @ Wk.T)
            Pq = Pk[:b] if self.kernel == "rbf" else np.ascontiguousarray(X[:b] @ Wq.T)
            loss, dPq, dPk, dwv, _ = loo_loss_grad(
                kind, Pq, Pk, no_wv if wv is None else np.ascontiguousarray(wv), Y, logw,
                qweight, scale)
            if self.kernel == "rbf":
                dPk[:b] += dPq
                grad = (dPk.T @ X).ravel()
            else:
                parts = [(dPq.T @ X[:b]).ravel(), (dPk.T @ X).ravel()]
                if wv is not None:
                    parts.append(dwv)
                grad = np.concatenate(parts)
            if alpha:
                loss += alpha * float(theta @ theta)
                grad = grad + 2.0 * alpha * theta
            return loss, grad

        return fun

    def fit(self, X, y, sample_weight=None):
        """Learn the score's parameters by minimising the leave-one-out error.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Training inputs (they become the keys).
        y : array_like of shape (n_samples,) or (n_samples, n_outputs)
            Targets (they become the values).
        sample_weight : array_like of shape (n_samples,), default=None
            Non-negative weights: of each key in the pooling and of each
            point's squared error in the objective.

        Returns
        -------
        self : AttentionRegressor
            The fitted estimator.
        """
        self._validate_params()
        resolve_device(self.device)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=[np.float64, np.float32], ensure_min_samples=2)
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                  ensure_non_negative=True)
        if np.count_nonzero(sw) < 2:
            raise ValueError("sample_weight must have at least two positive entries: "
                             "leave-one-out needs another point to pool")
        n, d = X.shape
        r = d if self.n_components is None else int(self.n_components)
        if self.kernel == "rbf" and r > d:
            raise ValueError(f"n_components must be at most n_features ({d}) for "
                             f"kernel='rbf', got {r}")
        rng = check_random_state(self.random_state)
        Y = np.asarray(y, dtype=np.float64).reshape(n, -1)
        Xf = np.asarray(X, dtype=np.float64)
        keep = sw > 0
        theta0 = self._initial_params(Xf[keep], r, rng)

        b = n
        order = np.arange(n)
        if self.batch_size is not None and self.batch_size < n:
            b = int(self.batch_size)
            order = rng.permutation(n)
        Xo = np.ascontiguousarray(Xf[order])
        center = np.average(Y[keep], axis=0, weights=sw[keep])
        spread = Y[keep].std(axis=0)
        spread[~(spread > 0)] = 1.0
        Yo = np.ascontiguousarray((Y[order] - center) / spread)
        swo = sw[order]
        with np.errstate(divide="ignore"):
            logw = np.log(swo)
        qw = swo[:b]
        total = qw.sum()
        if total <= 0:
            raise ValueError("the training points drawn as queries (batch_size) all have "
                             "zero sample_weight")
        qweight = qw / (total * Y.shape[1])

        backend = resolve_device(self.device, n_pairs=b * n)
        objective = self._objective(Xo, Yo, logw, qweight, b, r, backend)
        last = {}

        def fun(theta):
            last["loss"], grad = objective(theta)
            return last["loss"], grad

        def callback(intermediate_result):
            # An OptimizeResult on scipy >= 1.11 (chosen by this parameter
            # name), the parameters alone before; then the last evaluation
            # is the accepted point's.
            loss = float(getattr(intermediate_result, "fun", last["loss"]))
            self.loss_curve_.append(loss)
            if self.verbose:
                print(f"[AttentionRegressor] iter {len(self.loss_curve_) - 1:4d}  "
                      f"loss {loss:.6g}  {time.perf_counter() - start:.2f}s", flush=True)

        self.loss_curve_ = []
        start = time.perf_counter()
        # Each evaluation interleaves small products (n x d by d x r) with
        # the parallel sweeps: see serial_blas for why BLAS gets one thread.
        with threads(self.n_jobs), serial_blas():
            self.loss_curve_.append(fun(theta0)[0])
            res = minimize(fun, theta0, method="L-BFGS-B", jac=True, tol=self.tol,
                           callback=callback, options={"maxiter": int(self.max_iter)})
        self.n_iter_ = int(res.nit)
        Wq, Wk, wv = self._unpack(res.x, r, d)
        if self.kernel == "rbf":
            self.components_ = Wq.copy()
        self.W_query_ = Wq.copy()
        self.W_key_ = Wk.copy()
        if wv is not None:
            self.w_score_ = wv.copy()
        self.X_fit_ = Xf
        self.y_fit_ = np.asarray(y, dtype=np.float64)
        self.sample_weight_ = None if np.all(sw == sw[0]) else sw
        return self

    # -- prediction --------------------------------------------------------------------

    def _check_query(self, X):
        check_is_fitted(self)
        resolve_device(self.device)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return np.asarray(X, dtype=np.float64)

    def predict(self, X, return_std=False):
        """Pool the training targets with the learned score.

        Parameters
        ----------
        X : array_like of shape (n_queries, n_features)
            Query points.
        return_std : bool, default=False
            Also return the attention-weighted standard deviation of the
            training targets around each prediction.

        Returns
        -------
        y_pred : ndarray of shape (n_queries,) or (n_queries, n_outputs)
            Predictions.
        y_std : ndarray, same shape as ``y_pred``
            Only when ``return_std=True``.

            A Dask array ``X`` gives Dask arrays, predicted block by block
            with the fitted model sent to the workers once.
        """
        from ._integrations import integration_for

        integration = integration_for(X)
        if integration is not None:
            check_is_fitted(self)
            if X.ndim == 2 and X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} "
                                 f"is expecting {self.n_features_in_} features as input")
            return integration.predict(self, X, output_shape=self.y_fit_.shape[1:],
                                       return_std=return_std)
        X = self._check_query(X)
        with threads(self.n_jobs):
            if self.kernel == "additive":
                return ops.additive_pool(X, self.X_fit_, self.y_fit_, self.W_query_,
                                         self.W_key_, self.w_score_,
                                         key_weight=self.sample_weight_,
                                         return_std=return_std, device=self.device)
            kernel = "gaussian" if self.kernel == "rbf" else "scaled_dot"
            return ops.attention_pool(X @ self.W_query_.T, self.X_fit_ @ self.W_key_.T,
                                      self.y_fit_, kernel, 1.0,
                                      key_weight=self.sample_weight_, return_std=return_std,
                                      device=self.device)

    def attention_weights(self, X, k=5):
        """The ``k`` training points with the largest attention weight for each query.

        Parameters
        ----------
        X : array_like of shape (n_queries, n_features)
            Query points.
        k : int, default=5
            Number of training points to return per query.

        Returns
        -------
        indices : ndarray of shape (n_queries, k), int64
            Indices of training points by decreasing weight; -1 in unused
            slots.
        weights : ndarray of shape (n_queries, k)
            Their attention weights.

        Examples
        --------
        >>> import numpy as np
        >>> from nwattn.estimators import AttentionRegressor
        >>> X = np.arange(20.0).reshape(10, 2)
        >>> reg = AttentionRegressor(max_iter=5).fit(X, X.sum(axis=1))
        >>> idx, w = reg.attention_weights(X[:1] + 0.1, k=2)
        >>> int(idx[0, 0])
        0
        """
        X = self._check_query(X)
        if isinstance(k, bool) or not isinstance(k, (Integral, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        with threads(self.n_jobs):
            if self.kernel != "additive":
                kernel = "gaussian" if self.kernel == "rbf" else "scaled_dot"
                return ops.top_k_weights(X @ self.W_query_.T, self.X_fit_ @ self.W_key_.T,
                                         kernel, 1.0, int(k), key_weight=self.sample_weight_,
                                         device=self.device)
            m = self.X_fit_.shape[0]
            logw = None
            if self.sample_weight_ is not None:
                with np.errstate(divide="ignore"):
                    logw = np.log(self.sample_weight_)
            chunk = max(1, 4_000_000 // m)
            indices = np.empty((X.shape[0], int(k)), dtype=np.int64)
            weights = np.empty((X.shape[0], int(k)))
            for i0 in range(0, X.shape[0], chunk):
                S = ops.additive_scores(X[i0:i0 + chunk], self.X_fit_, self.W_query_,
                                        self.W_key_, self.w_score_, device=self.device)
                if logw is not None:
                    S += logw
                indices[i0:i0 + chunk], weights[i0:i0 + chunk] = ops.top_k_from_scores(
                    S, int(k))
            return indices, weights

    @available_if(_is_rbf)
    def fit_transform(self, X, y, sample_weight=None):
        """Fit, then return the learned embedding of ``X`` (``kernel="rbf"`` only).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Training inputs.
        y : array_like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array_like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
        """
        return self.fit(X, y, sample_weight=sample_weight).transform(X)

    @available_if(_is_rbf)
    def transform(self, X):
        """The learned embedding ``X @ components_.T`` (``kernel="rbf"`` only).

        Gaussian pooling with unit bandwidth in this embedding is the
        estimator's prediction, so it can feed any distance-based method.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
        """
        X = self._check_query(X)
        return X @ self.components_.T


def demo_rows(X_train, y_train, X_test, y_test, *, kernels=("rbf", "scaled_dot", "additive"),
              max_iter=100, random_state=0):
    """Fit AttentionRegressor with each kernel; return rows for a results table.

    Used by ``python -m nwattn demo`` and ``benchmarks/attention_fit.py``.

    Parameters
    ----------
    X_train, y_train, X_test, y_test : ndarray
        A split of a regression data set (features already standardised).
    kernels : sequence of str
        The learned scores to fit.
    max_iter : int
        L-BFGS-B iterations per fit.
    random_state : int
        Seed of the initialisation.

    Returns
    -------
    list of (str, float, float)
        ``(name, test MSE, fit seconds)`` per kernel.

    Examples
    --------
    >>> from sklearn.datasets import make_friedman1
    >>> X, y = make_friedman1(n_samples=80, random_state=0)
    >>> rows = demo_rows(X[:60], y[:60], X[60:], y[60:], kernels=("rbf",), max_iter=5)
    >>> rows[0][0]
    'AttentionRegressor(rbf)'
    """
    rows = []
    for kernel in kernels:
        t0 = time.perf_counter()
        reg = AttentionRegressor(kernel, max_iter=max_iter, random_state=random_state)
        reg.fit(X_train, y_train)
        seconds = time.perf_counter() - t0
        mse = float(np.mean((reg.predict(X_test) - y_test) ** 2))
        rows.append((f"AttentionRegressor({kernel})", mse, seconds))
    return rows

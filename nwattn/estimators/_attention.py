"""Attention pooling with a learned score, as a scikit-learn regressor."""

import time
import warnings
from numbers import Integral, Real

import numpy as np
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils import TransformerTags
from sklearn.utils._set_output import _wrap_data_with_container
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .. import ops
from ..objective import LEARNED_KINDS as _KINDS, loo_loss_grad
from .._device import resolve_device
from .._parallel import serial_blas, threads
from .._validation import check_estimator_input, unit_weights

__all__ = ["AttentionRegressor"]

#: ``n_components=None`` means at most this many components. The parameters
#: (and L-BFGS-B's memory of about 25 copies of them) grow as
#: ``n_components * n_features``; with ``n_components = n_features`` that is
#: quadratic in the number of features (9 GB for 5000 of them).
MAX_DEFAULT_COMPONENTS = 100


def _default_components(n_samples, n_features):
    """``n_components`` when it is None: ``min(n_features, n_samples - 1, 100)``, at least 1.

    The centred training inputs span at most ``n_samples - 1`` directions;
    components beyond those see no variation of the data and get no
    gradient.
    """
    return max(1, min(n_features, n_samples - 1, MAX_DEFAULT_COMPONENTS))


def _feature_scaling(X, w, center):
    """Offset and scale of each feature, and ``X`` standardised with them.

    ``center=True`` subtracts the weighted mean and divides by the weighted
    standard deviation; ``center=False`` divides by the weighted root mean
    square, leaving the origin where it is (the dot-product scores are not
    invariant to a shift of the inputs, their scale is). A constant
    feature (spread at the level of the rounding errors of its mean) keeps
    scale 1. Each column is first divided by its largest magnitude, so
    that no square or sum overflows or underflows, whatever the units.

    Returns
    -------
    Xs : ndarray of shape (n_samples, n_features)
        ``(X - offset) / scale``.
    offset, scale : ndarray of shape (n_features,)
    """
    n = X.shape[0]
    top = np.max(np.abs(X), axis=0)
    top[top == 0] = 1.0
    Xn = X / top
    if center:
        mean_n = np.average(Xn, axis=0, weights=w)
        Xn = Xn - mean_n
    else:
        mean_n = np.zeros(X.shape[1])
    spread_n = np.sqrt(np.average(Xn * Xn, axis=0, weights=w))
    eps = np.finfo(np.float64).eps
    constant = spread_n <= n * eps * np.maximum(np.abs(mean_n), eps)
    spread_n[constant] = 1.0
    Xs = Xn / spread_n
    scale = top * spread_n
    # A constant feature is zero in Xs (its rounding noise dropped; without
    # centring only an all-zero feature counts as constant) and has scale 1,
    # so that its parameters convert back unchanged.
    Xs[:, constant] = 0.0
    scale[constant] = 1.0
    return Xs, top * mean_n, scale


def _target_scaling(Y, w):
    """Weighted mean and standard deviation of each output, without overflow or underflow.

    A constant output gets spread 1.
    """
    top = np.max(np.abs(Y), axis=0)
    top[top == 0] = 1.0
    Yn = Y / top
    mean_n = np.average(Yn, axis=0, weights=w)
    spread_n = np.sqrt(np.average((Yn - mean_n) ** 2, axis=0, weights=w))
    spread = top * spread_n
    spread[~(spread > 0) | ~np.isfinite(spread)] = 1.0
    return top * mean_n, spread


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
    the sample weights and ``p`` the number of outputs.

    Training is independent of the units of the data. The targets are
    standardised (pooling is equivariant to that); the features are divided
    by their weighted standard deviation (``"rbf"``, also centred) or root
    mean square (``"scaled_dot"``, ``"additive"``), and the parameters
    converted back to the units of ``X`` afterwards; only the ratios of the
    sample weights count. So the start, ``tol`` and ``alpha`` mean the same
    whatever the units. The dot-product scores are not invariant to a shift
    of the features, though: centre features far from zero (a
    :class:`~sklearn.preprocessing.StandardScaler` in a pipeline) before
    using them. A :class:`~sklearn.exceptions.ConvergenceWarning` says when
    L-BFGS-B did not move from its start or met scores that overflow.

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
        Dimension ``r`` of the learned projections. ``None`` means
        ``min(n_features, n_samples - 1, 100)``: the centred training inputs
        span at most ``n_samples - 1`` directions, and the cap of 100 keeps
        the number of parameters (``r * n_features`` per projection, held
        about 25 times by L-BFGS-B) linear in the number of features. For
        ``"rbf"`` it may not exceed ``n_features``.
    alpha : float, default=0.0
        L2 penalty on the score's parameters, taken for the standardised
        features (so it does not depend on their units).
    max_iter : int, default=100
        Maximum number of L-BFGS-B iterations.
    tol : float, default=1e-5
        Tolerance of L-BFGS-B (on the relative decrease of the objective and
        on the projected gradient).
    init : {"auto", "random"}, ndarray or dict, default="auto"
        Initial parameters. ``"auto"``: for ``"rbf"``, the principal axes of
        the standardised training inputs scaled so that unit bandwidth in
        the embedding is Scott's rule of thumb (rows beyond the number of
        directions the data span start at zero); for the other scores,
        ``"random"``: Gaussian entries of variance ``1 / n_features``
        divided by each feature's scale (see above). An ndarray of shape
        ``(n_components, n_features)`` is the initial ``A`` of ``"rbf"``; a
        dict with keys ``"W_query"``, ``"W_key"`` (and ``"w_score"`` for
        ``"additive"``) gives the other scores' parameters; both in the
        units of ``X``. Parameters whose scores overflow are refused with a
        ``ValueError``.
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
        one), for the standardised targets.
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
    sweeps that each own their output rows; see :mod:`nwattn.objective`.

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

    def _initial_params(self, Xs, r, rng, scale):
        """Initial parameters for the standardised inputs ``Xs = (X - offset) / scale``.

        A user's ``init`` is in the units of ``X``: a projection ``W`` of
        ``X`` is ``W * scale`` of ``Xs``.
        """
        d = Xs.shape[1]
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
                parts.append((arr if name == "w_score" else arr * scale).ravel())
            return np.concatenate(parts)
        if not isinstance(init, str):
            if self.kernel != "rbf":
                raise ValueError(f"init for kernel={self.kernel!r} is 'auto', 'random' or a "
                                 f"dict with keys {names}")
            A = np.asarray(init, dtype=np.float64)
            if A.shape != (r, d) or not np.all(np.isfinite(A)):
                raise ValueError(f"init must be a finite array of shape (n_components, "
                                 f"n_features) = {(r, d)}, got shape {A.shape}")
            return (A * scale).ravel()
        if init == "auto" and self.kernel == "rbf":
            Xc = Xs - Xs.mean(axis=0)
            _, sv, Vt = np.linalg.svd(Xc, full_matrices=False)
            # With fewer samples than components the data span fewer
            # directions than asked for: the remaining rows start at zero,
            # where they add nothing to the distances.
            A = np.zeros((r, d))
            A[:min(r, Vt.shape[0])] = Vt[:r]
            var = sv[:r] ** 2 / max(1, Xs.shape[0] - 1)
            # Constant inputs have no spread: any bandwidth fits them.
            spread = np.sqrt(var.mean()) if var.size and var.mean() > 0 else 1.0
            h = spread * Xs.shape[0] ** (-1.0 / (r + 4))
            return (A / h).ravel()
        # The inputs are standardised: entries of variance 1 / d give scores
        # of order 1 whatever the units.
        W = rng.normal(scale=1.0 / np.sqrt(d), size=(2, r, d))
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

        Where the scores overflow, some query of positive weight has no key
        left (its prediction is NaN) and the kernels leave it out of the
        loss; the loss is then reported as ``inf``, not as the smaller sum
        of the others, so that L-BFGS-B never takes such a point for
        progress.
        """
        kind = _KINDS[self.kernel]
        d = X.shape[1]
        scale = 1.0 / np.sqrt(r)
        alpha = float(self.alpha)
        no_wv = np.zeros(r)
        counted = qweight > 0

        def fun(theta):
            Wq, Wk, wv = self._unpack(theta, r, d)
            Pk = np.ascontiguousarray(X @ Wk.T)
            Pq = Pk[:b] if self.kernel == "rbf" else np.ascontiguousarray(X[:b] @ Wq.T)
            loss, dPq, dPk, dwv, pred = loo_loss_grad(
                kind, Pq, Pk, no_wv if wv is None else np.ascontiguousarray(wv), Y, logw,
                qweight, scale, device=backend)
            if not (np.isfinite(loss) and np.isfinite(pred[counted]).all()):
                return np.inf, np.zeros_like(theta)
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
            if not (np.isfinite(loss) and np.isfinite(grad).all()):
                return np.inf, np.zeros_like(theta)
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
            The fitted estimator. Attributes of an earlier fit (with another
            kernel, say) are removed first.

        Raises
        ------
        ValueError
            For invalid data or parameters, and when the scores overflow at
            the initial parameters (an ``init`` far too large for the data).

        Warns
        -----
        sklearn.exceptions.ConvergenceWarning
            When L-BFGS-B stops at the initial parameters (the score is then
            untrained), or meets a non-finite loss on the way.
        """
        self._validate_params()
        resolve_device(self.device)
        for value, name in ((X, "X"), (y, "y"), (sample_weight, "sample_weight")):
            check_estimator_input(value, name)
        # A refit must not leave attributes of another kernel behind
        # (components_ after "rbf", w_score_ after "additive").
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attr)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=[np.float64, np.float32], ensure_min_samples=2)
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                  ensure_non_negative=True)
        if np.count_nonzero(sw) < 2:
            raise ValueError("sample_weight must have at least two positive entries: "
                             "leave-one-out needs another point to pool")
        n, d = X.shape
        r = (_default_components(n, d) if self.n_components is None
             else int(self.n_components))
        if self.kernel == "rbf" and r > d:
            raise ValueError(f"n_components must be at most n_features ({d}) for "
                             f"kernel='rbf', got {r}")
        rng = check_random_state(self.random_state)
        Y = np.asarray(y, dtype=np.float64).reshape(n, -1)
        Xf = np.asarray(X, dtype=np.float64)
        keep = sw > 0
        # Only the ratios of the weights matter; scaled to a largest weight
        # of 1 their sum can neither overflow nor underflow.
        u = unit_weights(sw)
        # Training runs on standardised inputs and targets, so that the
        # start, the tolerances and alpha mean the same in any units; the
        # parameters are converted back to the units of X at the end.
        Xs, _, x_scale = _feature_scaling(Xf, u, center=self.kernel == "rbf")
        theta0 = self._initial_params(Xs[keep], r, rng, x_scale)

        b = n
        order = np.arange(n)
        if self.batch_size is not None and self.batch_size < n:
            b = int(self.batch_size)
            order = rng.permutation(n)
        Xo = np.ascontiguousarray(Xs[order])
        center, spread = _target_scaling(Y, u)
        Yo = np.ascontiguousarray((Y[order] - center) / spread)
        uo = u[order]
        with np.errstate(divide="ignore"):
            logw = np.log(uo)
        qw = uo[:b]
        total = qw.sum()
        if total <= 0:
            raise ValueError("the training points drawn as queries (batch_size) all have "
                             "zero sample_weight")
        qweight = qw / (total * Y.shape[1])

        backend = resolve_device(self.device, n_pairs=b * n)
        objective = self._objective(Xo, Yo, logw, qweight, b, r, backend)
        last = {"non_finite": False}

        def fun(theta):
            last["loss"], grad = objective(theta)
            last["non_finite"] |= not np.isfinite(last["loss"])
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
            loss0 = fun(theta0)[0]
            if not np.isfinite(loss0):
                raise ValueError(
                    f"the scores overflow at the initial parameters (init={self._init_repr()}): "
                    "some training point has no other point left to pool; start from "
                    "smaller parameters")
            self.loss_curve_.append(loss0)
            res = minimize(fun, theta0, method="L-BFGS-B", jac=True, tol=self.tol,
                           callback=callback, options={"maxiter": int(self.max_iter)})
        self.n_iter_ = int(res.nit)
        self._warn_if_stuck(res, theta0, last["non_finite"])
        # Back to the units of X: a projection W of the standardised inputs
        # is W / scale of X (for "rbf" the offset cancels in the distances).
        Wq, Wk, wv = self._unpack(res.x, r, d)
        Wq, Wk = Wq / x_scale, Wk / x_scale
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

    def _init_repr(self):
        return repr(self.init) if isinstance(self.init, str) else "the given parameters"

    def _warn_if_stuck(self, res, theta0, non_finite):
        """ConvergenceWarning when L-BFGS-B did not move or met a non-finite loss."""
        if not np.isfinite(res.fun):
            warnings.warn(f"the training loss is not finite ({res.fun}); the parameters are "
                          "the initial ones", ConvergenceWarning, stacklevel=3)
        elif np.array_equal(res.x, theta0):
            why = ("a trial step made the scores overflow" if non_finite
                   else f"L-BFGS-B: {res.message}")
            warnings.warn(
                "the optimisation did not move from its initial parameters "
                f"({why}); the score is untrained. The initial point may already be "
                "optimal (for instance when no feature varies), or tol is too large",
                ConvergenceWarning, stacklevel=3)
        elif non_finite:
            warnings.warn(
                "the training loss was not finite at some trial parameters (the scores "
                "overflowed); the optimisation stopped at the last finite point, after "
                f"{res.nit} iterations", ConvergenceWarning, stacklevel=3)

    # -- prediction --------------------------------------------------------------------

    def _check_query(self, X):
        check_is_fitted(self)
        resolve_device(self.device)
        check_estimator_input(X, "X")
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
        Z : ndarray or DataFrame of shape (n_samples, n_components)
            A DataFrame after ``set_output(transform="pandas")``, with the
            columns of :meth:`get_feature_names_out`.
        """
        original = X
        X = self._check_query(X)
        return _wrap_data_with_container("transform", X @ self.components_.T, original, self)

    # scikit-learn's output containers (set_output): transform and
    # fit_transform exist for "rbf" only, so the wrapping is done in
    # transform itself instead of by scikit-learn's mixin, which would
    # replace the methods and make them appear for every kernel.
    _sklearn_auto_wrap_output_keys = {"transform"}

    @available_if(_is_rbf)
    def set_output(self, *, transform=None):
        """Choose the output container of the embedding (``kernel="rbf"`` only).

        It applies to :meth:`transform` and :meth:`fit_transform`.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"}, default=None
            ``"default"``: NumPy arrays; ``"pandas"`` or ``"polars"``: data
            frames; ``None`` keeps the current choice.

        Returns
        -------
        self : AttentionRegressor
            The estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from nwattn.estimators import AttentionRegressor
        >>> X = np.random.default_rng(0).normal(size=(30, 2))
        >>> reg = AttentionRegressor(max_iter=2).set_output(transform="pandas")
        >>> list(reg.fit_transform(X, X[:, 0]).columns)
        ['attentionregressor0', 'attentionregressor1']
        """
        if transform is None:
            return self
        if not hasattr(self, "_sklearn_output_config"):
            self._sklearn_output_config = {}
        self._sklearn_output_config["transform"] = transform
        return self

    @available_if(_is_rbf)
    def get_feature_names_out(self, input_features=None):
        """Names of the columns of :meth:`transform` (``kernel="rbf"`` only).

        Parameters
        ----------
        input_features : array_like of str or None, default=None
            Only checked against the names seen in :meth:`fit`.

        Returns
        -------
        ndarray of str objects
            ``"attentionregressor0"``, ``"attentionregressor1"``, ... one per
            component.
        """
        return ClassNamePrefixFeaturesOutMixin.get_feature_names_out(self, input_features)

    @property
    def _n_features_out(self):
        # Read by get_feature_names_out; missing (AttributeError) before fit.
        return self.components_.shape[0]


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

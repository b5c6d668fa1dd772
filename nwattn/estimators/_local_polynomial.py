"""Local polynomial regression (local linear, local quadratic, loess) as a scikit-learn estimator."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .. import bandwidth as _bw
from .._device import DEVICES
from .._fallback import fill_empty, target_spread
from .._parallel import threads
from .._validation import check_bandwidth, check_estimator_input, unit_weights
from ..kernels import get_kernel
from ..uncertainty import VCE_NAMES
from ._categorical import (CATEGORICAL_PARAMS, check_continuous_finite, check_query_codes,
                           discrete_spec, encode_predict, fit_discrete, mixed_bandwidth,
                           nearest_continuous)
from ._integrations import integration_for
from ._pruning import ALGORITHM_PARAM, algorithm_for, fit_keys
from ._nadaraya_watson import _KernelName
from ._uncertainty import UncertaintyMixin

__all__ = ["LocalPolynomialRegressor"]


def robustness_weights(residuals):
    """Cleveland's bisquare robustness weights of residuals, as loess computes them.

    With ``s`` six times the median absolute residual, a residual ``r``
    gets ``(1 - (r / s)**2)**2``, rounded to 1 below ``0.001 s`` and to 0
    above ``0.999 s``; all weights are 1 when ``s`` is (nearly) 0, a fit
    through every point.

    Parameters
    ----------
    residuals : ndarray of shape (n_samples,)

    Returns
    -------
    ndarray of shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.estimators._local_polynomial import robustness_weights
    >>> robustness_weights(np.array([0.1, -0.2, 0.1, 5.0])).round(3)
    array([0.975, 0.904, 0.975, 0.   ])
    """
    a = np.abs(residuals)
    s = 6.0 * np.median(a)
    if not s >= np.finfo(np.float64).tiny:
        return np.ones_like(a)
    u = a / s
    w = (1.0 - u * u) ** 2
    w[a <= 0.001 * s] = 1.0
    w[a > 0.999 * s] = 0.0
    return w


class LocalPolynomialRegressor(UncertaintyMixin, MultiOutputMixin, RegressorMixin,
                               BaseEstimator):
    """Local polynomial regression: local linear, local quadratic and loess.

    At each query ``x`` fits, by weighted least squares, a polynomial of
    ``degree`` in ``x_j - x`` to the training points, with the kernel
    weights ``w_j = c_j K((x_j - x) / h)`` (``c_j`` the sample weights),
    and predicts its value at ``x`` [1]_ [2]_. Degree 0 is
    :class:`NadarayaWatsonRegressor`; degree 1 (local linear) removes
    Nadaraya-Watson's bias at the edges of the data and wherever the
    function slopes, and gives the slopes ``df/dx`` (marginal effects)
    with the prediction; degree 2 also follows curvature. With ``span``
    and the tricube kernel it is loess [3]_: each query's bandwidth is the
    distance to its nearest ``span`` fraction of the training points.

    The weighted moments of each query's least-squares problem, centred on
    the query, are accumulated in one fused pass over the training points
    with an online softmax in the log domain (no n_queries x n_train array,
    no bandwidth too small), then one small solve per query.

    Parameters
    ----------
    degree : {0, 1, 2}, default=1
        Degree of the local polynomial.
    kernel : str, default="gaussian"
        A smoothing kernel of :mod:`nwattn.kernels` (``"gaussian"``,
        ``"laplacian"``, ``"epanechnikov"``, ``"boxcar"``, ``"triangular"``,
        ``"biweight"``, ``"tricube"``, ``"cosine"``); loess uses
        ``"tricube"``.
    bandwidth : float, array-like of shape (n_features,), {"cv", "scott", \
"silverman"}, default="cv"
        A positive number; one per feature; a rule of thumb
        (:func:`nwattn.bandwidth.scott`, :func:`nwattn.bandwidth.silverman`);
        or ``"cv"``, the bandwidth minimising the leave-one-out
        cross-validation score of this local polynomial
        (:func:`nwattn.bandwidth.select_bandwidth` with ``degree``). Not
        used when ``span`` is set.
    bandwidth_per_feature : bool, default=False
        With ``bandwidth="cv"``, select one bandwidth per feature
        (L-BFGS-B on the log-bandwidths with the analytic gradient of the
        score, from the derivatives of the moments accumulated in the same
        pass).
    span : float, default=None
        loess's nearest-neighbour bandwidths: a query's bandwidth is the
        Euclidean distance to its ``floor(span * n_samples)``-th nearest
        training point (times ``sqrt(span)`` for ``span > 1``), see
        :func:`nwattn.neighbors.span_radius`. Typical values are 0.2 to
        0.8 (R's default is 0.75). Features are used in their own units:
        scale them first (e.g. with a
        :class:`~sklearn.preprocessing.StandardScaler` in a pipeline) if
        they differ.
    robust_iterations : int, default=0
        Number of robustifying reweightings after the first fit [1]_: each
        computes the residuals of the fit at the training points and
        multiplies the sample weights by their bisquare weights
        (:func:`robustness_weights`), so outliers lose their influence. R's
        ``loess(family="symmetric")`` makes 3 (its ``iterations = 4``
        fits), statsmodels' ``lowess`` 3 by default (``it=3``).
    fallback : {"lower", "nan", "mean", "nearest"}, default="lower"
        What to do where a query's local design is singular (fewer
        distinct training points in its neighbourhood than the degree
        needs). ``"nan"``: predict NaN, with a
        :class:`~nwattn.state.SingularDesignWarning`. The others fit such a
        query at the highest degree its neighbourhood allows (a warning
        says how many); a query with no training point at all in its
        neighbourhood (compact kernels) then gets NaN and the warning
        (``"lower"``), the weighted mean of the targets (``"mean"``) or the
        target of the nearest training point (``"nearest"``). The
        cross-validation lowers the degree likewise, and uses ``"mean"``
        for empty neighbourhoods unless this is ``"nearest"``.
    tol : float, default=1e-4
        Tolerance of the bandwidth search.
    n_jobs : int, default=None
        Number of CPU threads; ``None`` keeps Numba's setting, ``-1`` uses
        all cores. The previous setting is restored afterwards.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to compute the moments.
    algorithm : {"auto", "brute", "tree"}, default="auto"
        Which training points each pass visits: all of them
        (``"brute"``), or, ordered once at fit in a k-d tree, only the
        tiles of them that can weigh in at each query (``"tree"``; CPU;
        exact for compact kernels, equal to brute force to rounding for the
        gaussian and laplacian). ``"auto"`` prunes a pass when a sample of
        its pairs says few weigh in. Applies to the bandwidth search, the
        robustness iterations, the predictions and the intervals. See
        :doc:`/pruning`.
    verbose : int, default=0
        0 is silent. 1 prints on stderr, during :meth:`fit` with
        ``bandwidth="cv"``, a line per evaluation of the cross-validation
        score (its number, the bandwidth, the score and the time it took),
        and during :meth:`predict` (and each robustifying fit) the progress
        of the moments' pass (share done, time elapsed, an estimate of the
        time left), a few lines a second at most. Data in memory only.
    categorical_features : array-like of int, bool or str, or "from_dtype", default=None
        Unordered categorical features (indices, a boolean mask, feature
        names or ``"from_dtype"``; see
        :class:`~nwattn.NadarayaWatsonRegressor`). They enter the kernel
        weights only, through a discrete kernel with its own smoothing
        parameter ``lam``; the local polynomial is one of the continuous
        features, as in R's np package (see :doc:`/categorical`). At least
        one feature must be continuous.
    ordered_features : array-like of int, bool or str, default=None
        Ordered discrete features, given likewise.
    categorical_kernel : {"aitchison_aitken", "li_racine"}, default="aitchison_aitken"
        Kernel of the unordered features.
    ordered_kernel : {"li_racine", "wang_van_ryzin"}, default="li_racine"
        Kernel of the ordered features.
    handle_unknown : {"error", "unequal"}, default="error"
        A category at predict that no training point has (see
        :class:`~nwattn.NadarayaWatsonRegressor`).
    vce : {"hc3", "hc2", "hc1", "hc0", "nn"}, default="hc3"
        How the noise of the training targets is estimated for standard
        errors and intervals (:mod:`nwattn.uncertainty`): from the
        residuals of the fit at the training points, divided by one minus
        their leverage (``"hc3"``), by its square root (``"hc2"``), times
        a degrees-of-freedom factor (``"hc1"``) or as they are
        (``"hc0"``); or from each point's 3 nearest neighbours (``"nn"``,
        nprobust's default, which needs no fit). ``"hc3"`` inflates the
        residuals most and covered best in the simulation of
        :doc:`/uncertainty`.
    variance_smoothing : float, default=2.0
        The noise variance of each training point is the kernel-weighted
        mean of the squared residuals of ``vce`` over a bandwidth
        ``variance_smoothing`` times the fit's (a variance function
        estimate); 0 uses each point's own squared residual, as nprobust
        does. One point's residual has one or a few degrees of freedom, and
        standard errors built on them vary so much from sample to sample
        that intervals under-cover (about 91 % for 95 % in
        ``docs/uncertainty.rst``'s simulation); smoothing them restores the
        coverage and assumes only that the noise variance changes slowly.

    Attributes
    ----------
    bandwidth_ : float, ndarray of shape (n_features,) or None
        The bandwidth used for prediction; None with ``span``. With
        discrete features, one value per feature: ``h`` of a continuous
        feature, ``lam`` of a discrete one.
    feature_kinds_ : ndarray of str of shape (n_features,)
        ``"continuous"``, ``"categorical"`` or ``"ordered"`` for each feature.
    n_categories_ : ndarray of int of shape (n_features,)
        Number of categories of each discrete feature (0 for a continuous one).
    discrete_ : nwattn.discrete.DiscreteFeatures or None
        The discrete features as the low-level operations take them.
    cv_score_ : float or None
        Leave-one-out cross-validation score (weighted mean squared error,
        summed over the outputs) of ``bandwidth_`` when ``bandwidth="cv"``.
    robustness_weights_ : ndarray of shape (n_samples,) or (n_samples, n_outputs), or None
        The bisquare weights of the last reweighting (one column per
        output), with ``robust_iterations > 0``.
    X_fit_ : ndarray of shape (n_samples, n_features)
        Training points.
    y_fit_ : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        Training targets.
    sample_weight_ : ndarray of shape (n_samples,) or None
        Sample weights given to :meth:`fit`.
    y_mean_ : ndarray of shape (n_outputs,)
        Weighted mean of the targets (the ``"mean"`` fallback).
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features, when ``X`` has string column names.

    See Also
    --------
    nwattn.ops.local_polynomial : The operation this estimator calls.
    NadarayaWatsonRegressor : Degree 0, with standard deviations.

    References
    ----------
    .. [1] W. S. Cleveland, "Robust locally weighted regression and
       smoothing scatterplots", Journal of the American Statistical
       Association 74(368), 1979, 829-836.
    .. [2] J. Fan and I. Gijbels, *Local Polynomial Modelling and Its
       Applications*, Chapman and Hall, 1996.
    .. [3] W. S. Cleveland and S. J. Devlin, "Locally weighted regression:
       an approach to regression analysis by local fitting", Journal of the
       American Statistical Association 83(403), 1988, 596-610.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn import LocalPolynomialRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 1, size=(300, 1))
    >>> y = np.exp(X[:, 0]) + rng.normal(scale=0.05, size=300)
    >>> model = LocalPolynomialRegressor().fit(X, y)
    >>> pred, slope = model.predict([[0.0], [0.5], [1.0]], return_gradient=True)
    >>> pred.round(2)  # exp(0), exp(0.5), exp(1): no bias at the edges
    array([1.  , 1.66, 2.71])
    >>> slope[:, 0].round(1)  # the marginal effect, exp(x)
    array([1.1, 1.6, 2.4])
    >>> loess = LocalPolynomialRegressor(degree=2, kernel="tricube", span=0.5).fit(X, y)
    >>> loess.predict([[0.5]]).round(2)
    array([1.66])
    """

    _parameter_constraints = {
        "degree": [Interval(Integral, 0, 2, closed="both")],
        "kernel": [_KernelName()],
        "bandwidth": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions({"cv", "scott", "silverman"}),
            "array-like",
        ],
        "bandwidth_per_feature": ["boolean"],
        "span": [Interval(Real, 0, None, closed="neither"), None],
        "robust_iterations": [Interval(Integral, 0, None, closed="left")],
        "fallback": [StrOptions({"lower", "nan", "mean", "nearest"})],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "n_jobs": [Integral, None],
        "device": [StrOptions(set(DEVICES))],
        "verbose": ["verbose"],
        "vce": [StrOptions(set(VCE_NAMES))],
        "variance_smoothing": [Interval(Real, 0, None, closed="left")],
        **CATEGORICAL_PARAMS,
        **ALGORITHM_PARAM,
    }

    def __init__(self, degree=1, kernel="gaussian", bandwidth="cv", *,
                 bandwidth_per_feature=False, span=None, robust_iterations=0,
                 fallback="lower", tol=1e-4, n_jobs=None, device="cpu", verbose=0,
                 categorical_features=None, ordered_features=None,
                 categorical_kernel="aitchison_aitken", ordered_kernel="li_racine",
                 handle_unknown="error", vce="hc3", variance_smoothing=2.0, algorithm="auto"):
        self.degree = degree
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.bandwidth_per_feature = bandwidth_per_feature
        self.span = span
        self.robust_iterations = robust_iterations
        self.fallback = fallback
        self.tol = tol
        self.n_jobs = n_jobs
        self.device = device
        self.verbose = verbose
        self.categorical_features = categorical_features
        self.ordered_features = ordered_features
        self.categorical_kernel = categorical_kernel
        self.ordered_kernel = ordered_kernel
        self.handle_unknown = handle_unknown
        self.vce = vce
        self.variance_smoothing = variance_smoothing
        self.algorithm = algorithm

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    def fit(self, X, y, sample_weight=None):
        """Store the training set, choose the bandwidth and the robustness weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training points.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the training points (they multiply the
            kernel weights, and weight the errors of the cross-validation).

        Returns
        -------
        self : LocalPolynomialRegressor
            The fitted estimator.
        """
        self._validate_params()
        has_discrete = self.categorical_features is not None or self.ordered_features is not None
        X = fit_discrete(self, X)
        for value, name in ((X, "X"), (y, "y"), (sample_weight, "sample_weight")):
            check_estimator_input(value, name)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=[np.float64, np.float32], ensure_all_finite=not has_discrete)
        self.discrete_ = discrete_spec(self, X)
        check_continuous_finite(self, X)
        if self.discrete_ is not None and self.discrete_.n_discrete == X.shape[1]:
            raise ValueError("LocalPolynomialRegressor needs at least one continuous feature; "
                             "with discrete features only, use NadarayaWatsonRegressor")
        kern = get_kernel(self.kernel)
        if not kern.is_distance:
            raise ValueError(f"kernel must be a smoothing kernel for a local polynomial, got "
                             f"the attention score {kern.name!r}")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
            if not np.any(sample_weight > 0):
                raise ValueError("sample_weight must have at least one positive entry")
        Y2 = y.reshape(y.shape[0], -1)
        self.y_mean_ = np.average(Y2, axis=0, weights=unit_weights(sample_weight))
        self.cv_score_ = None
        self.X_fit_ = X
        self.y_fit_ = y
        self.sample_weight_ = sample_weight
        self.robustness_weights_ = None
        self._noise_cache = None
        fit_keys(self, X)
        if self.span is not None:
            from ..neighbors import span_neighbors

            span_neighbors(self.span, X.shape[0])  # a span too small is an error at fit
            self.bandwidth_ = None
        else:
            self.bandwidth_ = self._choose_bandwidth(X, y, kern, sample_weight)
        if self.robust_iterations:
            self._robustify(X, Y2)
        return self

    def _choose_bandwidth(self, X, y, kern, sample_weight):
        bw = self.bandwidth
        if self.discrete_ is not None:
            return mixed_bandwidth(self, X, y, kern, sample_weight)
        if isinstance(bw, str):
            if bw == "scott":
                return _bw.scott(X, sample_weight)
            if bw == "silverman":
                return _bw.silverman(X, sample_weight)
            cv_fallback = "nearest" if self.fallback == "nearest" else "mean"
            with threads(self.n_jobs):
                sel = _bw.select_bandwidth(
                    X, y, kern, per_feature=self.bandwidth_per_feature,
                    sample_weight=sample_weight, fallback=cv_fallback, tol=self.tol,
                    device=self.device, degree=self.degree, verbose=self.verbose,
                    algorithm=self.algorithm,
                )
            self.cv_score_ = sel.cv_score
            return sel.bandwidth
        checked = check_bandwidth(bw, X.shape[1], np.float64)
        return float(checked[0]) if np.ndim(bw) == 0 else checked

    def _robustify(self, X, Y2):
        """Cleveland's reweighting: fit, weigh the residuals by the bisquare, refit."""
        p = Y2.shape[1]
        rw = np.ones((X.shape[0], p))
        for _ in range(int(self.robust_iterations)):
            self.robustness_weights_ = rw if p > 1 or self.y_fit_.ndim > 1 else rw[:, 0]
            fitted, _ = self._fit_outputs(X, warn=False, label="fit (robustness)")
            rw = np.column_stack([robustness_weights(Y2[:, c] - fitted[:, c])
                                  for c in range(p)])
        self.robustness_weights_ = rw if self.y_fit_.ndim > 1 else rw[:, 0]

    def _key_weights(self, column):
        """Key weights of output ``column``: sample weights times robustness weights."""
        w = self.sample_weight_
        rw = self.robustness_weights_
        if rw is None:
            return w
        r = rw[:, column] if rw.ndim > 1 else rw
        w = r if w is None else w * r
        # Every point rejected as an outlier leaves nothing to fit.
        return w if np.any(w > 0) else None

    @property
    def _fit_degree(self):
        return self.degree

    def _fit_groups(self):
        """Output columns sharing key weights, with those weights (see :meth:`_key_weights`)."""
        p = self._targets().shape[1]
        if self.robustness_weights_ is None:
            return [(list(range(p)), self.sample_weight_)]
        return [([c], self._key_weights(c)) for c in range(p)]

    def _query_bandwidth(self, X):
        """``(bandwidth, query_scale)`` of the moments pass at ``X``."""
        from ..neighbors import span_radius

        if self.span is not None:
            return 1.0, span_radius(X, self.X_fit_, self.span)
        return self.bandwidth_, None

    def _fit_outputs(self, X, warn=True, label="predict", with_se=False):
        """Predictions (n, p) and slopes (n, d, p), fallbacks applied; one pass per weighting.

        Without robustness weights every output shares the kernel weights
        and one pass fits them all; with them each output has its own.
        ``label`` names the calling method in the progress lines. With
        ``with_se`` the same pass also gives the standard errors (n, p),
        returned third (NaN where a fallback filled the prediction).
        """
        from .._progress import progress_callback
        from ..ops import local_polynomial_state
        from ..state import LocalFit, local_warnings, solve_local

        Y2 = self._targets()
        p = Y2.shape[1]
        h, factor = self._query_bandwidth(X)
        groups = self._fit_groups()
        noise = np.abs(self._noise_residuals()) if with_se else None
        pred = np.empty((X.shape[0], p))
        # The slopes of the polynomial are in the continuous features; a
        # discrete feature has none (NaN).
        disc = getattr(self, "discrete_", None)
        cont = np.arange(X.shape[1]) if disc is None else disc.continuous_columns(X.shape[1])
        grad = np.full((X.shape[0], X.shape[1], p), np.nan)
        se = np.full((X.shape[0], p), np.nan)
        lower = self.fallback != "nan"
        degree = np.empty((X.shape[0], len(groups)), dtype=np.int64)
        for g, (cols, key_weight) in enumerate(groups):
            with threads(self.n_jobs):
                state = local_polynomial_state(
                    X, self.X_fit_, Y2[:, cols], self.kernel, h, degree=self.degree,
                    query_scale=factor, key_weight=key_weight,
                    device=self.device,
                    progress=progress_callback(self.verbose,
                                               label=f"{type(self).__name__}.{label}"),
                    key_std=None if noise is None else noise[:, cols], discrete=disc,
                    algorithm=algorithm_for(self, X, h, factor))
            if with_se:
                state = self._window_matched(state, X, cols, key_weight)
            fit = solve_local(state, lower)
            pred[:, cols] = fit.pred
            grad[:, cont[:, None], cols] = fit.gradient
            if with_se:
                se[:, cols] = fit.se
            degree[:, g] = fit.degree
        used = degree.min(axis=1)
        empty = used < 0
        if warn:
            # "mean" and "nearest" fill the empty queries without a warning,
            # as NadarayaWatsonRegressor does; a lowered degree is always said.
            filled = self.fallback in ("mean", "nearest")
            local_warnings(LocalFit(pred, grad, np.where(empty & filled, self.degree, used)),
                           self.degree, stacklevel=3)
        if empty.any() and self.fallback in ("mean", "nearest"):
            pred, _ = fill_empty(pred, None, empty, self.fallback, mean=self.y_mean_,
                                 spread=lambda: target_spread(Y2, self.y_mean_,
                                                              self.sample_weight_),
                                 nearest=lambda idx: Y2[self._nearest(X[idx])])
        return (pred, grad, se) if with_se else (pred, grad)

    def _nearest(self, X):
        return nearest_continuous(self, X)

    def predict(self, X, return_gradient=False, return_se=False):
        """The local polynomial's value at each query (and its slopes, its standard error).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points.
        return_gradient : bool, default=False
            Also return the slopes of the local polynomial at each query,
            the estimate of ``df/dx`` (marginal effects); needs degree 1
            or 2.
        return_se : bool, default=False
            Also return the standard error of each prediction,
            ``sqrt(sum_j l_j(x)**2 sigma_j**2)`` with ``l_j(x)`` the fit's
            weights of the training targets and ``sigma_j`` the noise
            scales of ``vce``, accumulated in the same pass. It measures
            the fit's variability, not its bias: see
            :meth:`predict_interval` for intervals that account for both.

        Returns
        -------
        y_pred : ndarray of shape (n_queries,) or (n_queries, n_outputs)
            Predictions, with the dimensions of the training ``y``.
        gradient : ndarray of shape (n_queries, n_features) or (n_queries, n_features, n_outputs)
            Only with ``return_gradient=True``. NaN where the degree was
            lowered to 0 or the query took the ``"mean"`` or ``"nearest"``
            fallback.
        y_se : ndarray, same shape as ``y_pred``
            Only with ``return_se=True``. NaN where the query took the
            ``"mean"`` or ``"nearest"`` fallback.

            For a Dask array ``X``, lazy Dask arrays chunked like its rows.
        """
        check_is_fitted(self)
        if return_gradient and self.degree < 1:
            raise ValueError("return_gradient=True needs degree 1 or 2")
        integration = integration_for(X)
        if integration is not None and getattr(self, "discrete_", None) is not None:
            raise ValueError("categorical and ordered features are not available for Dask "
                             "queries; compute the queries first")
        if integration is not None:
            if return_gradient or return_se:
                raise ValueError("return_gradient=True and return_se=True are not available "
                                 "for Dask queries; compute the queries first")
            if X.ndim == 2 and X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} "
                                 f"is expecting {self.n_features_in_} features as input")
            return integration.predict(self, X, output_shape=self.y_fit_.shape[1:],
                                       return_std=False)
        X = encode_predict(self, X)
        check_estimator_input(X, "X")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32],
                          ensure_all_finite=getattr(self, "discrete_", None) is None)
        check_query_codes(self, X)
        check_continuous_finite(self, X)
        out = self._fit_outputs(X, with_se=bool(return_se))
        pred, grad = out[0], out[1]
        dtype = np.result_type(X.dtype, self.y_fit_.dtype)
        result = [self._shaped(pred, dtype)]
        if return_gradient:
            g = grad[:, :, 0] if self.y_fit_.ndim == 1 else grad
            result.append(g.astype(dtype, copy=False))
        if return_se:
            result.append(self._shaped(out[2], dtype))
        return result[0] if len(result) == 1 else tuple(result)

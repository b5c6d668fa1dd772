"""Nadaraya-Watson kernel regression as a scikit-learn estimator."""

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
from ..kernels import get_kernel, kernel_names
from ..uncertainty import VCE_NAMES
from ._categorical import (CATEGORICAL_PARAMS, check_continuous_finite, check_query_codes,
                           discrete_spec, encode_predict, fit_discrete, mixed_bandwidth,
                           nearest_continuous)
from ._integrations import integration_for
from ._pruning import ALGORITHM_PARAM, algorithm_for, fit_keys
from ._uncertainty import UncertaintyMixin

__all__ = ["NadarayaWatsonRegressor"]


def _kernel_name_ok(kernel):
    try:
        get_kernel(kernel)
    except (TypeError, ValueError):
        return False
    return True


class _KernelName(StrOptions):
    """Any name or alias of the kernel catalogue, case-insensitive."""

    def __init__(self):
        super().__init__(set(kernel_names()))

    def is_satisfied_by(self, val):
        return isinstance(val, str) and _kernel_name_ok(val)


class NadarayaWatsonRegressor(UncertaintyMixin, MultiOutputMixin, RegressorMixin,
                              BaseEstimator):
    """Nadaraya-Watson kernel regression with bandwidth selection.

    Predicts the kernel-weighted mean of the training targets [1]_ [2]_,
    ``f(x) = sum_j w_j K((x - x_j) / h) y_j / sum_j w_j K((x - x_j) / h)``:
    attention pooling with the training points as keys and their targets as
    values. Predictions stream over the training set with an online softmax
    in the log domain, so no n_queries x n_train matrix is ever stored and no
    bandwidth is too small to be computed.

    Parameters
    ----------
    kernel : str, default="gaussian"
        A name (or alias) of :mod:`nwattn.kernels`: ``"gaussian"``,
        ``"laplacian"``, ``"epanechnikov"``, ``"boxcar"``, ``"triangular"``,
        ``"biweight"``, ``"tricube"``, ``"cosine"``, or the attention
        scores ``"dot"`` and ``"scaled_dot"`` (the bandwidth is then a
        temperature).
    bandwidth : float, array-like of shape (n_features,), {"cv", "scott", \
"silverman"}, default="cv"
        A positive number; one positive number per feature; a rule of thumb
        computed from each feature's spread (:func:`nwattn.bandwidth.scott`,
        :func:`nwattn.bandwidth.silverman`; smoothing kernels only); or
        ``"cv"``, the bandwidth minimising the leave-one-out least-squares
        cross-validation score on the training set [3]_
        (:func:`nwattn.bandwidth.select_bandwidth`).
    bandwidth_per_feature : bool, default=False
        With ``bandwidth="cv"``, select one bandwidth per feature (L-BFGS-B
        on the log-bandwidths with the analytic gradient of the score)
        instead of a single one (a 1-D bracketing search). Lets the fit
        shrink the influence of irrelevant features and adapt to features of
        different scales. Ignored for the other bandwidth choices.
    span : float, default=None
        Nearest-neighbour bandwidths, as loess defines them: each query's
        bandwidth is the Euclidean distance to its
        ``floor(span * n_samples)``-th nearest training point (see
        :func:`nwattn.neighbors.span_radius`); ``bandwidth`` is then not
        used. Smoothing kernels only; not available on Dask arrays.
    fallback : {"nan", "mean", "nearest"}, default="nan"
        Prediction for a query with no training point inside its kernel's
        support (compact kernels only): ``"nan"`` predicts NaN and warns
        with :class:`~nwattn.exceptions.EmptyNeighborhoodWarning`, as
        :class:`~sklearn.neighbors.RadiusNeighborsRegressor` does;
        ``"mean"`` predicts the weighted mean of the training targets;
        ``"nearest"`` the target of the nearest training point (distance
        scaled by the bandwidth). The cross-validation uses the same rule
        for training points with an empty leave-one-out neighbourhood, and
        ``"mean"`` when this is ``"nan"``.
    tol : float, default=1e-4
        Tolerance of the bandwidth search (see
        :func:`nwattn.bandwidth.select_bandwidth`).
    n_jobs : int, default=None
        Number of CPU threads; ``None`` keeps Numba's setting, ``-1`` uses
        all cores. The previous setting is restored afterwards.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to compute the predictions and the cross-validation scores.
        The gradient of the per-feature bandwidth search has no GPU kernel:
        there ``"auto"`` means the CPU and ``"cuda"`` is refused.
    algorithm : {"auto", "brute", "tree"}, default="auto"
        Which training points each pass visits, in scikit-learn's
        neighbours vocabulary: all of them (``"brute"``), or, ordered once
        at fit in a k-d tree, only the tiles of them that can weigh in at
        each query (``"tree"``; smoothing kernels, CPU; exact for compact
        kernels, equal to brute force to rounding for the gaussian and
        laplacian). ``"auto"`` prunes a pass when a sample of its pairs says
        few weigh in (few features, a small bandwidth). Applies to the
        bandwidth search, the predictions and the intervals. See
        :doc:`/pruning`.
    verbose : int, default=0
        0 is silent. 1 prints on stderr, during :meth:`fit` with
        ``bandwidth="cv"``, a line per evaluation of the cross-validation
        score (its number, the bandwidth, the score and the time it took),
        and during :meth:`predict` the progress of the pooling (share
        done, time elapsed, an estimate of the time left), a few lines a
        second at most. With Dask arrays, the lines of the search (each
        evaluation is one Dask computation); predictions are lazy there and
        report nothing.
    categorical_features : array-like of int, bool or str, or "from_dtype", default=None
        Unordered categorical features, as scikit-learn's
        :class:`~sklearn.ensemble.HistGradientBoostingRegressor` takes
        them: indices, a boolean mask, feature names, or ``"from_dtype"``
        (the pandas ``category`` columns of a data frame; ordered
        categoricals become ordered features). Their values are category
        codes ``0, 1, ...`` (a data frame's categories are coded at fit).
        Each categorical feature multiplies the weights by a discrete
        kernel ``L(a, b; lam)`` with its own smoothing parameter ``lam``,
        selected with the continuous bandwidths by ``bandwidth="cv"`` (see
        :doc:`/categorical`). Data in memory only.
    ordered_features : array-like of int, bool or str, default=None
        Ordered discrete features (levels ``0, 1, ...``, compared by their
        distance ``|a - b|``), given as ``categorical_features``.
    categorical_kernel : {"aitchison_aitken", "li_racine"}, default="aitchison_aitken"
        Kernel of the unordered features (:data:`nwattn.kernels.DISCRETE_KERNELS`).
    ordered_kernel : {"li_racine", "wang_van_ryzin"}, default="li_racine"
        Kernel of the ordered features.
    handle_unknown : {"error", "unequal"}, default="error"
        A category at predict that no training point has: ``"error"``
        raises a ValueError naming the feature; ``"unequal"`` weighs it as
        unlike every training category (the unordered kernels' weight for
        different categories; an ordered feature's unseen level sits at its
        code, or after the last level for a data frame's category).
    vce : {"hc3", "hc2", "hc1", "hc0", "nn"}, default="hc3"
        How the noise of the training targets is estimated for standard
        errors and intervals (:mod:`nwattn.uncertainty`): from the
        residuals of the fit at the training points, divided by one minus
        their leverage (``"hc3"``), by its square root (``"hc2"``), times
        a degrees-of-freedom factor (``"hc1"``) or as they are
        (``"hc0"``); or from each point's 3 nearest neighbours (``"nn"``,
        nprobust's default, which needs no fit). ``"hc3"`` inflates the
        residuals most and covered best in the simulation of
        :doc:`/uncertainty`. Smoothing kernels only.
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
    bandwidth_ : float or ndarray of shape (n_features,) or None
        The bandwidth used for prediction; None with ``span``. With
        discrete features, one value per feature: the bandwidth ``h`` of
        a continuous feature and the smoothing parameter ``lam`` of a
        discrete one (``feature_kinds_`` says which is which).
    feature_kinds_ : ndarray of str of shape (n_features,)
        ``"continuous"``, ``"categorical"`` or ``"ordered"`` for each feature.
    n_categories_ : ndarray of int of shape (n_features,)
        Number of categories of each discrete feature (0 for a continuous
        one): the largest code seen at fit plus one, or the number of a
        data frame column's categories.
    discrete_ : nwattn.discrete.DiscreteFeatures or None
        The discrete features as the low-level operations take them.
    cv_score_ : float or None
        Leave-one-out cross-validation score (weighted mean squared error)
        of ``bandwidth_`` when ``bandwidth="cv"``, else None.
    X_fit_ : ndarray of shape (n_samples, n_features)
        Training points (the keys).
    y_fit_ : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        Training targets (the values).
    sample_weight_ : ndarray of shape (n_samples,) or None
        Key weights given to :meth:`fit`.
    y_mean_ : ndarray of shape (n_outputs,)
        Weighted mean of the targets (the ``"mean"`` fallback).
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features, when ``X`` has string column names.

    See Also
    --------
    nwattn.ops.attention_pool : The pooling this estimator calls.
    nwattn.bandwidth.select_bandwidth : The bandwidth search.
    sklearn.neighbors.KNeighborsRegressor : Average of the k nearest targets.
    sklearn.neighbors.RadiusNeighborsRegressor : Average within a radius.

    References
    ----------
    .. [1] E. A. Nadaraya, "On estimating regression", Theory of Probability
       and its Applications 9(1), 1964, 141-142.
    .. [2] G. S. Watson, "Smooth regression analysis", Sankhya A 26(4),
       1964, 359-372.
    .. [3] Q. Li and J. S. Racine, *Nonparametric Econometrics*, Princeton
       University Press, 2007, chapter 2.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn import NadarayaWatsonRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 5, size=(200, 1))
    >>> y = 2 * np.sin(X[:, 0]) + rng.normal(scale=0.3, size=200)
    >>> model = NadarayaWatsonRegressor().fit(X, y)
    >>> 0.05 < model.bandwidth_ < 1.0
    True
    >>> pred, std = model.predict([[1.5], [4.0]], return_std=True)
    >>> pred.round(1)
    array([ 2. , -1.5])
    """

    _parameter_constraints = {
        "kernel": [_KernelName()],
        "bandwidth": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions({"cv", "scott", "silverman"}),
            "array-like",
        ],
        "bandwidth_per_feature": ["boolean"],
        "span": [Interval(Real, 0, None, closed="neither"), None],
        "fallback": [StrOptions({"nan", "mean", "nearest"})],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "n_jobs": [Integral, None],
        "device": [StrOptions(set(DEVICES))],
        "verbose": ["verbose"],
        "vce": [StrOptions(set(VCE_NAMES))],
        "variance_smoothing": [Interval(Real, 0, None, closed="left")],
        **CATEGORICAL_PARAMS,
        **ALGORITHM_PARAM,
    }

    def __init__(self, kernel="gaussian", bandwidth="cv", *, bandwidth_per_feature=False,
                 span=None, fallback="nan", tol=1e-4, n_jobs=None, device="cpu", verbose=0,
                 categorical_features=None, ordered_features=None,
                 categorical_kernel="aitchison_aitken", ordered_kernel="li_racine",
                 handle_unknown="error", vce="hc3", variance_smoothing=2.0, algorithm="auto"):
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.bandwidth_per_feature = bandwidth_per_feature
        self.span = span
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

    def fit(self, X, y, sample_weight=None):
        """Store the training set and choose the bandwidth.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training points.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the training points (they weight the
            keys of the kernel average, and the errors of the
            cross-validation).

        Returns
        -------
        self : NadarayaWatsonRegressor
            The fitted estimator.

        Notes
        -----
        Any of ``X``, ``y`` and ``sample_weight`` may be a Dask array: the
        training set then stays distributed (``X_fit_`` and the others are
        Dask arrays), its values are checked with reductions, and
        ``bandwidth="cv"`` computes every score (and, per feature, its
        gradient) on the cluster, in the same search as in memory
        (:func:`nwattn.dask.select_bandwidth`); ``device`` is passed on to
        the pooling tasks on the workers. See :doc:`/scaling`.
        """
        self._validate_params()
        integration = integration_for(X, y, sample_weight)
        if integration is not None and self.span is not None:
            raise ValueError("span (nearest-neighbour bandwidths) is not available on Dask "
                             "arrays; give a bandwidth, or compute the arrays first")
        if integration is not None and (self.categorical_features is not None
                                        or self.ordered_features is not None):
            raise ValueError("categorical and ordered features are not available on Dask "
                             "arrays; compute the arrays first")
        if integration is not None:
            return self._set_fitted(integration.nadaraya_watson_fit(self, X, y, sample_weight))
        X = fit_discrete(self, X)
        for value, name in ((X, "X"), (y, "y"), (sample_weight, "sample_weight")):
            check_estimator_input(value, name)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=[np.float64, np.float32],
                             ensure_all_finite=not self._has_discrete())
        self.discrete_ = discrete_spec(self, X)
        check_continuous_finite(self, X)
        kern = get_kernel(self.kernel)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
        Y2 = y.reshape(y.shape[0], -1)
        # Only the ratios of the weights matter; their raw sum can overflow.
        self.y_mean_ = np.average(Y2, axis=0, weights=unit_weights(sample_weight))
        self.cv_score_ = None
        bw = self.bandwidth
        if self.discrete_ is not None:
            self.bandwidth_ = mixed_bandwidth(self, X, y, kern, sample_weight)
        elif self.span is not None:
            from ..neighbors import span_neighbors

            if not kern.is_distance:
                raise ValueError(f"span needs a smoothing kernel; kernel {kern.name!r} is an "
                                 "attention score")
            span_neighbors(self.span, X.shape[0])
            self.bandwidth_ = None
        elif isinstance(bw, str):
            if bw in ("scott", "silverman"):
                if not kern.is_distance:
                    raise ValueError(
                        f"bandwidth={bw!r} is a rule for smoothing kernels; kernel "
                        f"{kern.name!r} is an attention score: give a number or 'cv'"
                    )
                rule = _bw.scott if bw == "scott" else _bw.silverman
                self.bandwidth_ = rule(X, sample_weight)
            else:
                cv_fallback = "nearest" if self.fallback == "nearest" else "mean"
                with threads(self.n_jobs):
                    sel = _bw.select_bandwidth(
                        X, y, kern, per_feature=self.bandwidth_per_feature,
                        sample_weight=sample_weight, fallback=cv_fallback, tol=self.tol,
                        device=self.device, verbose=self.verbose, algorithm=self.algorithm,
                    )
                self.bandwidth_ = sel.bandwidth
                self.cv_score_ = sel.cv_score
        else:
            checked = check_bandwidth(bw, X.shape[1], np.float64)
            self.bandwidth_ = float(checked[0]) if np.ndim(bw) == 0 else checked
        self.X_fit_ = X
        self.y_fit_ = y
        self.sample_weight_ = sample_weight
        self._noise_cache = None
        fit_keys(self, X)
        return self

    def _has_discrete(self):
        return self.categorical_features is not None or self.ordered_features is not None

    # What the standard errors and intervals need of the fit (UncertaintyMixin).
    _fit_degree = 0

    def _fit_groups(self):
        return [(list(range(self._targets().shape[1])), self.sample_weight_)]

    def _query_bandwidth(self, X):
        """``(bandwidth, query_scale)`` of a moments pass at ``X``."""
        from ..neighbors import span_radius

        if self.span is not None:
            return 1.0, span_radius(X, self.X_fit_, self.span)
        return self.bandwidth_, None

    def _set_fitted(self, fitted):
        """Set the fitted attributes from an integration's fit (see ``_integrations``)."""
        self.discrete_ = None
        self.feature_kinds_ = np.array(["continuous"] * int(fitted.n_features), dtype=object)
        self.n_categories_ = np.zeros(int(fitted.n_features), dtype=np.intp)
        self.bandwidth_ = fitted.bandwidth
        self.cv_score_ = fitted.cv_score
        self.n_features_in_ = int(fitted.n_features)
        if hasattr(self, "feature_names_in_"):  # from an earlier fit on a data frame
            del self.feature_names_in_
        self.X_fit_, self.y_fit_ = fitted.X, fitted.y
        self.sample_weight_ = fitted.sample_weight
        self.y_mean_ = fitted.y_mean
        self._keys = None  # a Dask fit orders each chunk's keys in its own tasks
        return self

    def _state(self, X, return_std):
        from .._progress import progress_callback
        from ..ops import attention_pool_state, local_polynomial_state

        report = progress_callback(self.verbose, label=f"{type(self).__name__}.predict")
        if self.span is not None:
            from ..neighbors import span_radius

            factor = span_radius(X, self.X_fit_, self.span)
            with threads(self.n_jobs):
                return local_polynomial_state(
                    X, self.X_fit_, self.y_fit_, self.kernel, 1.0, degree=0,
                    query_scale=factor, key_weight=self.sample_weight_, return_std=return_std,
                    device=self.device, progress=report,
                    algorithm=algorithm_for(self, X, 1.0, factor),
                )
        with threads(self.n_jobs):
            return attention_pool_state(
                X, self.X_fit_, self.y_fit_, self.kernel, self.bandwidth_,
                key_weight=self.sample_weight_, return_std=return_std, device=self.device,
                progress=report, discrete=getattr(self, "discrete_", None),
                algorithm=algorithm_for(self, X, self.bandwidth_),
            )

    def predict(self, X, return_std=False, return_se=False):
        """Kernel-weighted mean of the training targets at each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points.
        return_std : bool, default=False
            Also return the kernel-weighted standard deviation of the
            training targets around each prediction (a second accumulator of
            the same pass).
        return_se : bool, default=False
            Also return the standard error of each prediction,
            ``sqrt(sum_j w_j**2 sigma_j**2) / sum_j w_j`` with ``sigma_j``
            the noise scales of ``vce``: the squared weights accumulate in
            the same pass. It measures the fit's variability, not its bias
            (see :meth:`predict_interval`). Smoothing kernels only.

        Returns
        -------
        y_pred : ndarray of shape (n_queries,) or (n_queries, n_outputs)
            Predictions, with the dimensions of the training ``y``. For a
            query with an empty neighbourhood, NaN and an
            :class:`~nwattn.exceptions.EmptyNeighborhoodWarning`, or the
            ``fallback``.
        y_std : ndarray, same shape as ``y_pred``
            Only with ``return_std=True``. For a fallback prediction, the
            spread of its own weights: the weighted standard deviation of
            all targets for ``"mean"``, 0 for ``"nearest"``.
        y_se : ndarray, same shape as ``y_pred``
            Only with ``return_se=True``; NaN for a fallback prediction.

            For a Dask array ``X``, or a model fitted on Dask arrays, lazy
            Dask arrays chunked like the rows of ``X`` (see
            :mod:`nwattn.dask`).
        """
        from ..state import finalize_state

        check_is_fitted(self)
        if return_se:
            return self._predict_with_se(X, return_std)
        integration = integration_for(X, self.X_fit_)
        if integration is not None and self.span is not None:
            return integration.predict(self, X, output_shape=self.y_fit_.shape[1:],
                                       return_std=return_std)
        if integration is not None:
            return integration.nadaraya_watson_predict(self, X, return_std)
        X = encode_predict(self, X)
        check_estimator_input(X, "X")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32],
                          ensure_all_finite=getattr(self, "discrete_", None) is None)
        check_query_codes(self, X)
        check_continuous_finite(self, X)
        state = self._state(X, return_std)
        out = finalize_state(state, return_std=return_std, warn=False)
        pred, std = out if return_std else (out, None)
        empty = state.empty
        if empty.any():
            pred, std = self._fill_empty(X, empty, pred, std)
        return (pred, std) if return_std else pred

    def _predict_with_se(self, X, return_std):
        """:meth:`predict` with standard errors: one degree-0 moments pass with the sandwich."""
        from ..ops import local_polynomial_state
        from ..state import finalize_state, solve_local

        X = self._check_queries(X, "return_se=True")
        kern = self._check_smoothing("return_se=True")
        h, factor = self._query_bandwidth(X)
        with threads(self.n_jobs):
            state = local_polynomial_state(
                X, self.X_fit_, self.y_fit_, kern.name, h, degree=0, query_scale=factor,
                key_weight=self.sample_weight_, return_std=return_std, device=self.device,
                key_std=np.abs(self._noise_residuals()), discrete=self._discrete(),
                algorithm=algorithm_for(self, X, h, factor))
        state = self._window_matched(state, X, list(range(self._targets().shape[1])),
                                     self.sample_weight_)
        out = finalize_state(state, return_std=return_std, warn=False)
        pred, std = out if return_std else (out, None)
        se = solve_local(state).se
        dtype = np.result_type(X.dtype, self.y_fit_.dtype)
        se = self._shaped(se, dtype)
        empty = state.empty
        if empty.any():
            pred, std = self._fill_empty(X, empty, pred, std)
        return (pred, std, se) if return_std else (pred, se)

    def _fill_empty(self, X, empty, pred, std):
        Y2 = self.y_fit_.reshape(self.y_fit_.shape[0], -1)
        return fill_empty(pred, std, empty, self.fallback, mean=self.y_mean_,
                          spread=lambda: target_spread(Y2, self.y_mean_, self.sample_weight_),
                          nearest=lambda idx: Y2[self._nearest(X[idx])], stacklevel=3)

    def _nearest(self, X):
        """Index of the nearest training point of positive weight of every row of ``X``.

        The package's one nearest-neighbour rule (distances scaled by the
        bandwidth, the lowest index among equals), shared with the
        cross-validation and the Dask integration.
        """
        return nearest_continuous(self, X)

    def attention_weights(self, X, k=5):
        """The training points that weigh most in each prediction.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points.
        k : int, default=5
            Number of training points to return per query.

        Returns
        -------
        indices : ndarray of shape (n_queries, k)
            Indices into the training set by decreasing weight; -1 in slots
            beyond the points with positive weight.
        weights : ndarray of shape (n_queries, k)
            Their normalised attention weights (a row sums to at most 1);
            NaN for a query with an empty neighbourhood.

        Examples
        --------
        >>> import numpy as np
        >>> from nwattn import NadarayaWatsonRegressor
        >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
        >>> model = NadarayaWatsonRegressor("epanechnikov", 1.5).fit(X, [0.0, 1.0, 2.0, 3.0])
        >>> idx, w = model.attention_weights([[1.2]], k=3)
        >>> idx
        array([[1, 2, 0]])
        >>> w.round(3)
        array([[0.477, 0.348, 0.175]])
        """
        from ..ops import top_k_weights

        check_is_fitted(self)
        if getattr(self, "discrete_", None) is not None:
            raise ValueError("attention_weights is not available with categorical or ordered "
                             "features")
        check_estimator_input(X, "X")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        if isinstance(k, bool) or not isinstance(k, (Integral, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if self.span is not None:
            raise ValueError("attention_weights needs one bandwidth for all queries; this "
                             "model has nearest-neighbour bandwidths (span)")
        with threads(self.n_jobs):
            return top_k_weights(X, self.X_fit_, self.kernel, self.bandwidth_, int(k),
                                 key_weight=self.sample_weight_, device=self.device)

"""Standard errors, confidence and prediction intervals, bootstrap bands.

What :class:`~nwattn.NadarayaWatsonRegressor` and
:class:`~nwattn.LocalPolynomialRegressor` share for their uncertainty: the
noise scales of the training targets (:mod:`nwattn.uncertainty`), one
moments pass with the standard errors' sandwich, the robust bias
correction from a pass one degree higher, and the wild bootstrap. The
estimators provide the fit (their degree, kernel, bandwidths and key
weights) through a few small methods.
"""


import numpy as np
from scipy import stats
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from .._parallel import threads
from .._validation import check_estimator_input
from ._pruning import algorithm_for
from ..uncertainty import MULTIPLIERS, wild_multipliers

__all__ = ["UncertaintyMixin"]

_KINDS = ("confidence", "prediction")


def _bootstrap_seed(random_state):
    """A non-negative integer seed from scikit-learn's ``random_state``."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}")
        return int(random_state)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))
_METHODS = ("asymptotic", "bootstrap")


class UncertaintyMixin:
    """Standard errors and intervals of a kernel or local polynomial fit.

    The estimator provides ``_fit_degree``, ``_fit_groups()`` (output
    columns and their key weights) and ``_query_bandwidth(X)``, and the
    fitted ``X_fit_``, ``y_fit_``, ``bandwidth_``, ``sample_weight_``,
    ``kernel``, ``vce``, ``variance_smoothing`` and ``n_jobs``.
    """

    def _check_smoothing(self, what):
        from ..kernels import get_kernel

        kern = get_kernel(self.kernel)
        if not kern.is_distance:
            raise ValueError(f"{what} needs a smoothing kernel; kernel {kern.name!r} is an "
                             "attention score")
        return kern

    def _targets(self):
        y = self.y_fit_
        return y.reshape(y.shape[0], -1)

    def _noise_residuals(self):
        """Signed residuals whose magnitudes are the noise scales of ``vce`` (n, p).

        Depend on the training set only, so they are computed once per fit.
        """
        key = (self.vce, self.variance_smoothing)
        cached = getattr(self, "_noise_cache", None)
        if cached is not None and cached[0] == key and cached[1] is self.X_fit_:
            return cached[2]
        from ..uncertainty import nn_residuals, residual_scales

        Y = self._targets()
        if self.vce == "nn":
            if self._discrete() is not None:
                raise ValueError("vce='nn' matches neighbours in Euclidean distance, which "
                                 "category codes do not have: use an hc estimator (vce='hc3')")
            res = nn_residuals(self.X_fit_ / self._nn_scale(), Y)
        else:
            fitted, leverage = self._training_fit()
            e = Y - fitted
            scale = residual_scales(self.vce, e, leverage)
            with np.errstate(invalid="ignore", divide="ignore"):
                res = np.where(np.abs(e) > 0, np.sign(e) * scale, 0.0)
        if self.variance_smoothing > 0:
            res = np.where(res >= 0, 1.0, -1.0) * np.sqrt(self._smoothed_variance(res ** 2))
        self._noise_cache = (key, self.X_fit_, res)
        return res

    def _smoothed_variance(self, raw):
        """Kernel-weighted means of the raw squared noise ``raw`` (n, p) at the training points.

        Over ``variance_smoothing`` times the fit's bandwidth: a variance
        function estimate, far less variable than each point's own square
        (one or a few degrees of freedom), whose noise would otherwise
        make the standard errors vary from sample to sample and the
        intervals under-cover.
        """
        from ..ops import finalize_state, local_polynomial_state

        X = self.X_fit_
        h, factor = self._query_bandwidth(X)
        factor = np.ones(X.shape[0]) if factor is None else factor
        with threads(self.n_jobs):
            # The factor widens the continuous bandwidths only: the discrete
            # features' smoothing parameters are not lengths.
            wide = factor * self.variance_smoothing
            state = local_polynomial_state(X, X, raw, self.kernel, h, degree=0,
                                           query_scale=wide, key_weight=self.sample_weight_,
                                           discrete=self._discrete(),
                                           algorithm=algorithm_for(self, X, h, wide))
        var = finalize_state(state, warn=False).reshape(raw.shape)
        return np.where(np.isfinite(var), np.maximum(var, 0.0), raw)

    def _window_matched(self, state, X, cols, key_weight):
        """nprobust's matching inside each query's window, where it is the definition in use.

        With ``vce="nn"``, each point's own residual (``variance_smoothing=0``)
        and one feature, the neighbours are matched among the points of each
        query's window, as nprobust matches them
        (:func:`nwattn.uncertainty.nn_window_correction`).
        """
        if (self.vce != "nn" or self.variance_smoothing > 0 or X.shape[1] != 1
                or self._discrete() is not None):
            return state
        from ..uncertainty import nn_window_correction

        h, factor = self._query_bandwidth(X)
        return nn_window_correction(state, X, self.X_fit_, self._targets()[:, cols],
                                    self.kernel, h, query_scale=factor,
                                    key_weight=key_weight)

    def _nn_scale(self):
        """Units of the nearest-neighbour matching: the bandwidths when they differ by feature.

        A common bandwidth does not change which points are nearest; dividing
        by it would only round the distances differently (and break ties
        that nprobust keeps).
        """
        h = self.bandwidth_
        if h is None or np.ndim(h) == 0 or np.all(np.asarray(h) == np.asarray(h).flat[0]):
            return 1.0
        return h

    def _discrete_self_log_weight(self):
        """``sum_f log L_f(a_j, a_j)`` of each training point: its discrete kernels' weight of itself."""
        disc = self._discrete()
        if disc is None:
            return 0.0
        X = self.X_fit_
        _, lam = disc.split_bandwidth(self.bandwidth_, X.shape[1])
        codes = disc.codes(X, keys=True)
        LT, _ = disc.tables(lam, int(codes.max()) + 1 if codes.size else 1)
        return sum(LT[f, codes[:, f], codes[:, f]] for f in range(disc.n_discrete))

    def _training_fit(self):
        """Fitted values at the training points (n, p) and their leverages (n,)."""
        from ..kernels import get_kernel, log_weight
        from ..ops import local_polynomial_state
        from ..state import solve_local

        X = self.X_fit_
        Y = self._targets()
        kern = get_kernel(self.kernel)
        h, factor = self._query_bandwidth(X)
        fitted = np.full(Y.shape, np.nan)
        leverage = np.zeros(X.shape[0])
        log_k0 = float(log_weight(kern.code, 0.0))
        for cols, key_weight in self._fit_groups():
            with threads(self.n_jobs):
                state = local_polynomial_state(X, X, Y[:, cols], kern.name, h,
                                               degree=self._fit_degree, query_scale=factor,
                                               key_weight=key_weight, discrete=self._discrete(),
                                               algorithm=algorithm_for(self, X, h, factor))
            fit = solve_local(state, lower_degree=True)
            fitted[:, cols] = fit.pred
            with np.errstate(divide="ignore"):
                logc = np.zeros(X.shape[0]) if key_weight is None else np.log(key_weight)
            own = np.exp(logc + log_k0 + self._discrete_self_log_weight()
                         - state.max.astype(np.float64))
            lev = np.where(np.isfinite(fit.influence), own * fit.influence, 0.0)
            # One set of leverages: the first group's (the groups differ in
            # their robustness weights only).
            if cols[0] == 0:
                leverage = lev
        return fitted, leverage

    def _moment_fit(self, X, bias_correction, values=None):
        """Estimates and standard errors at ``X``, one moments pass per key-weight group.

        Returns ``(center, se, noise_var, smoothers)``: the fit
        (bias-corrected with ``bias_correction``), its standard error
        (robust to the bias estimate with ``bias_correction``), and the
        kernel-weighted mean of the squared noise scales at each query, all
        (n, p); and per key-weight group ``(cols, key_weight, coef)``, the
        equivalent kernels of the fit (:func:`nwattn.ops.smoother_pool`).
        """
        from ..ops import local_polynomial_state
        from ..state import solve_bias_corrected, solve_local

        kern = self._check_smoothing("a standard error")
        res = self._noise_residuals()
        Y = self._targets()
        p = Y.shape[1]
        h, factor = self._query_bandwidth(X)
        degree = self._fit_degree + (1 if bias_correction else 0)
        center = np.full((X.shape[0], p), np.nan)
        se = np.full((X.shape[0], p), np.nan)
        noise = np.full((X.shape[0], p), np.nan)
        smoothers = []
        for cols, key_weight in self._fit_groups():
            k = len(cols)
            # The squared noise scales ride along as extra values: their
            # kernel-weighted mean (the pooling columns of the same pass) is
            # the noise variance a prediction interval adds.
            V = np.column_stack([Y[:, cols], res[:, cols] ** 2])
            with threads(self.n_jobs):
                state = local_polynomial_state(X, self.X_fit_, V, kern.name, h, degree=degree,
                                               query_scale=factor, key_weight=key_weight,
                                               key_std=np.abs(res[:, cols]),
                                               discrete=self._discrete(),
                                               algorithm=algorithm_for(self, X, h, factor))
            state = self._window_matched(state, X, cols, key_weight)
            with np.errstate(invalid="ignore", divide="ignore"):
                noise[:, cols] = state.acc[:, k:] / state.norm[:, None] + state.center[k:]
            if bias_correction:
                fit = solve_bias_corrected(state)
                center[:, cols], se[:, cols] = fit.pred_bc[:, :k], fit.se_rb
            else:
                fit = solve_local(state, lower_degree=False)
                center[:, cols], se[:, cols] = fit.pred[:, :k], fit.se
            smoothers.append((cols, key_weight, fit.coef))
        return center, se, np.maximum(noise, 0.0), smoothers

    def _check_queries(self, X, what):
        """``X`` validated as :meth:`predict` validates it (data in memory only)."""
        check_is_fitted(self)
        from ._categorical import check_continuous_finite, check_query_codes, encode_predict
        from ._integrations import integration_for

        if integration_for(X, self.X_fit_) is not None:
            raise ValueError(f"{what} is computed on data in memory: compute the Dask arrays "
                             "first")
        X = encode_predict(self, X)
        check_estimator_input(X, "X")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32],
                          ensure_all_finite=self._discrete() is None)
        check_query_codes(self, X)
        check_continuous_finite(self, X)
        return X

    def _discrete(self):
        """The fitted discrete features (:class:`nwattn.discrete.DiscreteFeatures`), or None."""
        return getattr(self, "discrete_", None)

    def _shaped(self, a, dtype):
        a = a.astype(dtype, copy=False)
        return a[:, 0] if self.y_fit_.ndim == 1 else a

    def predict_interval(self, X, level=0.95, *, kind="confidence", method="asymptotic",
                         bias_correction=True, simultaneous=False, n_bootstrap=999,
                         multiplier="mammen", random_state=None):
        """Confidence or prediction intervals at each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points.
        level : float, default=0.95
            Coverage probability, in (0, 1).
        kind : {"confidence", "prediction"}, default="confidence"
            ``"confidence"``: an interval for the regression function
            ``E[y | x]``. ``"prediction"``: for a new observation at ``x``,
            which adds the noise variance (the kernel-weighted mean of the
            training points' squared noise scales) to the standard error's
            square; asymptotic only.
        method : {"asymptotic", "bootstrap"}, default="asymptotic"
            ``"asymptotic"``: the estimate plus or minus the normal quantile
            times its standard error. ``"bootstrap"``: the wild
            (multiplier) bootstrap, percentile-t: the deviations
            ``sum_j l_j(x) r_j eta_j`` of the fit to targets perturbed by
            the residuals ``r_j`` times multipliers ``eta_j`` (one pass for
            all ``n_bootstrap`` replications), divided by the standard
            error, give the interval's quantiles.
        bias_correction : bool, default=True
            Centre the interval on the robust bias-corrected estimate and
            use its standard error [1]_: the bias of the fit of degree
            ``g`` is estimated by a fit of degree ``g + 1`` at the same
            bandwidth, and the standard error accounts for that estimate.
            Intervals then keep their coverage at bandwidths chosen for
            the best fit (cross-validation), where the plain fit's bias is
            of the order of its standard error. ``False``: the plain fit
            and its standard error (intervals for the smoothed function).
        simultaneous : bool, default=False
            With ``method="bootstrap"``: a band that covers the function at
            all the queries at once with probability ``level``, from the
            quantile of the largest studentised deviation over the queries.
        n_bootstrap : int, default=999
            Number of bootstrap replications.
        multiplier : {"mammen", "rademacher"}, default="mammen"
            Distribution of the bootstrap multipliers: Mammen's two-point
            distribution [2]_ (mean 0, variance 1, third moment 1, so the
            replications keep the residuals' skewness; its bands covered
            better in the simulation of :doc:`/uncertainty`), or random
            signs.
        random_state : int, RandomState instance or None, default=None
            Seed of the multipliers (drawn once, one per training point and
            replication, by :func:`nwattn.uncertainty.wild_multipliers`), for
            reproducible bands; a RandomState instance gives the seed.

        Returns
        -------
        lower, upper : ndarray of shape (n_queries,) or (n_queries, n_outputs)
            The interval's ends, with the dimensions of the training ``y``;
            NaN where the fit (or its bias correction) is not defined.

        References
        ----------
        .. [1] S. Calonico, M. D. Cattaneo and M. H. Farrell, "On the effect
           of bias estimation on coverage accuracy in nonparametric
           inference", Journal of the American Statistical Association
           113(522), 2018, 767-779.
        .. [2] E. Mammen, "Bootstrap and wild bootstrap for high dimensional
           linear models", The Annals of Statistics 21(1), 1993, 255-285.
        """
        X = self._check_queries(X, "predict_interval")
        if not (isinstance(level, (int, float, np.floating)) and 0 < level < 1):
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        if simultaneous and method != "bootstrap":
            raise ValueError("simultaneous=True needs method='bootstrap' (a band over all "
                             "the queries at once)")
        if kind == "prediction" and method == "bootstrap":
            raise ValueError("kind='prediction' is asymptotic only: the bootstrap resamples "
                             "the fit, not a new observation's noise")
        dtype = np.result_type(X.dtype, self.y_fit_.dtype)
        center, se, noise, smoothers = self._moment_fit(X, bool(bias_correction))
        if method == "asymptotic":
            z = stats.norm.ppf(0.5 + level / 2.0)
            width = np.sqrt(se ** 2 + noise) if kind == "prediction" else se
            return self._shaped(center - z * width, dtype), self._shaped(center + z * width, dtype)
        t = self._bootstrap_t(X, bool(bias_correction), se, smoothers, n_bootstrap,
                              multiplier, random_state)
        alpha = 1.0 - level
        if simultaneous:
            with np.errstate(invalid="ignore"):
                worst = np.nanmax(np.abs(t), axis=1)  # (B, p): over the queries
            c = np.quantile(worst, level, axis=0)  # (p,)
            lo, hi = center - c * se, center + c * se
        else:
            q_lo = np.quantile(t, alpha / 2.0, axis=0)
            q_hi = np.quantile(t, 1.0 - alpha / 2.0, axis=0)
            lo, hi = center - q_hi * se, center - q_lo * se
        return self._shaped(lo, dtype), self._shaped(hi, dtype)

    def _bootstrap_t(self, X, bias_correction, se, smoothers, n_bootstrap, multiplier,
                     random_state):
        """Studentised bootstrap deviations, shape (B, n_queries, p).

        The deviation of replication ``b`` at query ``x`` is
        ``sum_j l_j(x) r_j eta_jb``: the fit's own weights (its equivalent
        kernels, ``smoothers``) applied to the residuals times the
        multipliers, all ``B`` columns in one pass.
        """
        from ..ops import smoother_pool

        if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) \
                or n_bootstrap < 1:
            raise ValueError(f"n_bootstrap must be a positive integer, got {n_bootstrap!r}")
        if multiplier not in MULTIPLIERS:
            raise ValueError(f"multiplier must be one of {MULTIPLIERS}, got {multiplier!r}")
        if self._discrete() is not None:
            raise ValueError("method='bootstrap' is not available with categorical or ordered "
                             "features (the smoother pass has no discrete kernels): use "
                             "method='asymptotic'")
        seed = _bootstrap_seed(random_state)
        res = self._noise_residuals()
        n_fit, p = res.shape
        B = int(n_bootstrap)
        # One multiplier per training point and replication, shared by the
        # outputs (their errors may be correlated), drawn once, as the Dask
        # path draws them (nwattn.uncertainty.wild_multipliers).
        eta = wild_multipliers(seed, 0, n_fit, B, multiplier)
        kern = self._check_smoothing("a bootstrap band")
        h, factor = self._query_bandwidth(X)
        degree = self._fit_degree + (1 if bias_correction else 0)
        t = np.full((B, X.shape[0], p), np.nan)
        for cols, key_weight, coef in smoothers:
            U = np.concatenate([res[:, c, None] * eta for c in cols], axis=1)
            with threads(self.n_jobs):
                dev = smoother_pool(X, self.X_fit_, U, coef, kern.name, h, degree=degree,
                                    query_scale=factor, key_weight=key_weight,
                                    algorithm=algorithm_for(self, X, h, factor))
            for k, c in enumerate(cols):
                with np.errstate(invalid="ignore", divide="ignore"):
                    t[:, :, c] = (dev[:, k * B:(k + 1) * B] / se[:, c, None]).T
        return t

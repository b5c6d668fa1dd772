"""A picture of a one-feature fit with its uncertainty, in scikit-learn's ``Display`` style."""

import numpy as np

__all__ = ["FitDisplay"]


class FitDisplay:
    """A one-feature fit with its pointwise interval and simultaneous band.

    Create it with :meth:`from_estimator` (which computes everything) and
    draw it with :meth:`plot`, as scikit-learn's displays
    (:class:`~sklearn.metrics.PredictionErrorDisplay`, ...) are used.

    Parameters
    ----------
    x : ndarray of shape (n_points,)
        Where the fit is drawn.
    fit : ndarray of shape (n_points,)
        The estimator's predictions there.
    interval : tuple of two ndarrays of shape (n_points,)
        Ends of the pointwise confidence interval.
    band : tuple of two ndarrays of shape (n_points,), or None
        Ends of the simultaneous band over ``x``.
    X_data, y_data : ndarray of shape (n_samples,), or None
        The data, drawn as points.
    level : float
        The intervals' coverage probability (for the legend).

    Attributes
    ----------
    ax_ : matplotlib Axes
        The axes drawn on.
    figure_ : matplotlib Figure
        Their figure.
    line_ : matplotlib Line2D
        The fit.
    interval_ : matplotlib PolyCollection
        The pointwise interval.
    band_ : matplotlib PolyCollection or None
        The simultaneous band.
    scatter_ : matplotlib PathCollection or None
        The data.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from nwattn import LocalPolynomialRegressor
    >>> from nwattn.display import FitDisplay
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 1, size=(200, 1))
    >>> y = np.sin(2 * np.pi * X[:, 0]) + rng.normal(scale=0.3, size=200)
    >>> model = LocalPolynomialRegressor(bandwidth=0.08).fit(X, y)
    >>> disp = FitDisplay.from_estimator(model, X, y, n_bootstrap=199, random_state=0)
    >>> bool(np.all(disp.band[0] <= disp.interval[0] + 1e-12))
    True
    """

    def __init__(self, x, fit, interval, band=None, X_data=None, y_data=None, level=0.95):
        self.x = x
        self.fit = fit
        self.interval = interval
        self.band = band
        self.X_data = X_data
        self.y_data = y_data
        self.level = level

    @classmethod
    def from_estimator(cls, estimator, X, y=None, *, level=0.95, n_points=200, band=True,
                       bias_correction=True, n_bootstrap=999, random_state=None, ax=None):
        """Compute the fit and its intervals over the range of ``X``, and draw them.

        Parameters
        ----------
        estimator : NadarayaWatsonRegressor or LocalPolynomialRegressor
            Fitted on one feature and one output, with a smoothing kernel.
        X : array-like of shape (n_samples, 1)
            Data whose range the curve spans (usually the training inputs).
        y : array-like of shape (n_samples,), default=None
            Targets, drawn as points when given.
        level : float, default=0.95
            Coverage probability of the interval and the band.
        n_points : int, default=200
            Number of points of the curve.
        band : bool, default=True
            Also draw the simultaneous bootstrap band over those points
            (:meth:`~nwattn.LocalPolynomialRegressor.predict_interval` with
            ``simultaneous=True``).
        bias_correction : bool, default=True
            Centre the interval and band on the robust bias-corrected fit.
        n_bootstrap : int, default=999
            Bootstrap replications of the band.
        random_state : int, RandomState instance or None, default=None
            Seed of the band's multipliers.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure by default.

        Returns
        -------
        FitDisplay
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != 1:
            raise ValueError(f"X must have one feature (shape (n_samples, 1)), got shape "
                             f"{X.shape}")
        if getattr(estimator, "n_features_in_", 1) != 1 or np.ndim(estimator.y_fit_) != 1:
            raise ValueError("estimator must be fitted on one feature and one output")
        if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) \
                or n_points < 2:
            raise ValueError(f"n_points must be an integer >= 2, got {n_points!r}")
        grid = np.linspace(X.min(), X.max(), int(n_points))[:, None]
        fit = estimator.predict(grid)
        interval = estimator.predict_interval(grid, level, bias_correction=bias_correction)
        bands = None
        if band:
            bands = estimator.predict_interval(grid, level, method="bootstrap",
                                               simultaneous=True,
                                               bias_correction=bias_correction,
                                               n_bootstrap=n_bootstrap,
                                               random_state=random_state)
        y_data = None if y is None else np.asarray(y, dtype=np.float64).ravel()
        disp = cls(grid[:, 0], fit, interval, bands, X[:, 0], y_data, level)
        return disp.plot(ax=ax)

    def plot(self, ax=None):
        """Draw the data, the fit, the interval and the band.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure by default.

        Returns
        -------
        FitDisplay
            This object, with the ``*_`` attributes set.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        pct = f"{100 * self.level:g} %"
        self.scatter_ = None
        if self.y_data is not None:
            self.scatter_ = ax.scatter(self.X_data, self.y_data, s=6, color="0.6",
                                       label="data")
        self.band_ = None
        if self.band is not None:
            self.band_ = ax.fill_between(self.x, self.band[0], self.band[1], color="C0",
                                         alpha=0.15, label=f"{pct} simultaneous band")
        self.interval_ = ax.fill_between(self.x, self.interval[0], self.interval[1],
                                         color="C0", alpha=0.3,
                                         label=f"{pct} pointwise interval")
        (self.line_,) = ax.plot(self.x, self.fit, color="C0", label="fit")
        ax.legend(loc="best")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

"""Bandwidth selection: rules of thumb and leave-one-out cross-validation.

The rules of thumb (:func:`scott` [1]_, :func:`silverman` [2]_) give one bandwidth per
feature, proportional to that feature's spread, so rescaling a feature
rescales its bandwidth and leaves the fit unchanged.

Leave-one-out least-squares cross-validation [3]_ scores a bandwidth ``h`` by

    CV(h) = sum_i c_i ||y_i - yhat_{-i}(x_i)||**2 / sum_i c_i,

where ``yhat_{-i}`` is the Nadaraya-Watson fit without point ``i`` and ``c_i``
its sample weight (1 without weights). Every ``yhat_{-i}`` comes out of one
fused pass that skips the pair ``(i, i)``; nothing of size n x n is stored.
:func:`loo_cv_score` also returns the gradient with respect to
``log h`` from a second fused pass (see :func:`nwattn.ops.loo_slopes_state`), and
:func:`select_bandwidth` minimises the score over ``log h``.

A compact kernel may leave a point with no other point in its
neighbourhood. Its leave-one-out prediction is then the fallback:
``"mean"``, the weighted mean of the other targets, or ``"nearest"``, the
target of the nearest other point (distance scaled by the bandwidth,
points of positive weight only).

References
----------
.. [1] D. W. Scott, *Multivariate Density Estimation*, Wiley, 1992.
.. [2] B. W. Silverman, *Density Estimation for Statistics and Data
   Analysis*, Chapman and Hall, 1986.
.. [3] Q. Li and J. S. Racine, *Nonparametric Econometrics*, Princeton
   University Press, 2007, section 2.2.2 (least-squares cross-validation).

Examples
--------
>>> import numpy as np
>>> from nwattn.bandwidth import select_bandwidth
>>> rng = np.random.default_rng(0)
>>> X = rng.uniform(0, 5, size=(200, 1))
>>> y = np.sin(X[:, 0]) + rng.normal(scale=0.3, size=200)
>>> sel = select_bandwidth(X, y)
>>> 0.05 < sel.bandwidth < 1.0
True
"""

import math
import time
from contextlib import nullcontext
from typing import NamedTuple

import numpy as np
from scipy import optimize

from . import _validation as _v
from ._parallel import serial_blas, threads
from ._progress import EvaluationLog, check_verbose
from .kernels import DISTANCE, SCALED_DOT_CODE

__all__ = ["scott", "silverman", "loo_cv_score", "select_bandwidth", "BandwidthSelection",
           "search", "rule_of_thumb"]

#: Below this many (pair x feature) operations a leave-one-out pass takes a
#: few milliseconds on one core, and the search runs on one thread.
_SERIAL_WORK = 20_000_000


def _check_weights(sample_weight, n):
    """Validated weights divided by their largest, or None.

    Every use of the weights here (weighted moments, the effective sample
    size, the cross-validation score) depends on their ratios only; scaled
    to a largest weight of 1 their sums and squares neither overflow nor
    underflow.
    """
    if sample_weight is None:
        return None
    w = _v.check_key_weight(sample_weight, n, np.float64, name="sample_weight")
    return _v.unit_weights(w)


def _spread(X, w):
    """Per-feature (weighted) standard deviation and the effective sample size."""
    if w is None:
        return X.std(axis=0), float(X.shape[0])
    mean = np.average(X, axis=0, weights=w)
    var = np.average((X - mean) ** 2, axis=0, weights=w)
    n_eff = w.sum() ** 2 / np.sum(w * w)
    return np.sqrt(var), float(n_eff)


def _scott_factor(n, d):
    return n ** (-1.0 / (d + 4))


def _silverman_factor(n, d):
    return (4.0 / ((d + 2) * n)) ** (1.0 / (d + 4))


#: Factor of each rule of thumb, a function of the effective sample size and
#: the number of features.
_RULE_FACTORS = {"scott": _scott_factor, "silverman": _silverman_factor}


def _rule_from_spread(rule, sigma, n_eff):
    """Bandwidth of a rule of thumb from the per-feature spread ``sigma``."""
    # A constant feature plays no part in the training distances; any
    # positive bandwidth fits it, and 1 keeps the rule well defined.
    sigma = np.where(sigma > 0, sigma, 1.0)
    return sigma * _RULE_FACTORS[rule](n_eff, sigma.shape[0])


def _rule(X, sample_weight, rule):
    X = _v.check_float_array(X, "X", dtype=np.float64)
    w = _check_weights(sample_weight, X.shape[0])
    sigma, n_eff = _spread(X, w)
    return _rule_from_spread(rule, sigma, n_eff)


def scott(X, sample_weight=None):
    """Scott's rule: ``h_t = sigma_t n**(-1 / (d + 4))`` for each feature.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        Training points.
    sample_weight : array_like of shape (n_samples,), default=None
        Non-negative weights; the spread is weighted and ``n`` is the
        effective sample size ``(sum w)**2 / sum w**2``, as in
        :class:`scipy.stats.gaussian_kde`.

    Returns
    -------
    ndarray of shape (n_features,)
        One bandwidth per feature; a constant feature gets the factor alone
        (its spread counts as 1).

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.bandwidth import scott
    >>> X = np.random.default_rng(0).normal(size=(1000, 2)) * [1.0, 1000.0]
    >>> h = scott(X)
    >>> bool(np.isclose(h[1] / h[0], 1000, rtol=0.1))
    True
    """
    return _rule(X, sample_weight, "scott")


def silverman(X, sample_weight=None):
    """Silverman's rule: ``h_t = sigma_t (4 / ((d + 2) n))**(1 / (d + 4))``.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        Training points.
    sample_weight : array_like of shape (n_samples,), default=None
        Non-negative weights (see :func:`scott`).

    Returns
    -------
    ndarray of shape (n_features,)
        One bandwidth per feature.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.bandwidth import silverman
    >>> X = np.random.default_rng(0).normal(size=(1000, 1))
    >>> silverman(X).round(2)
    array([0.26])
    """
    return _rule(X, sample_weight, "silverman")


def loo_cv_score(X, y, kernel="gaussian", bandwidth=1.0, *, sample_weight=None,
                 fallback="mean", return_gradient=False, device="cpu", discrete=None,
                 algorithm="auto"):
    """Leave-one-out least-squares cross-validation score of a bandwidth.

    The score is the one defined in :mod:`nwattn.loo`: the weighted mean
    over the training points of the squared leave-one-out error, summed
    over the outputs, with the ``fallback`` prediction for a point that has
    no other point in its neighbourhood. :func:`nwattn.dask.loo_cv_error`
    computes the same score on Dask arrays.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        Training points.
    y : array_like of shape (n_samples,) or (n_samples, n_outputs)
        Targets; for several outputs the squared errors are summed over them.
    kernel : str, default="gaussian"
        A name of :mod:`nwattn.kernels`.
    bandwidth : float or array_like of shape (n_features,), default=1.0
        Positive scalar or one positive value per feature.
    sample_weight : array_like of shape (n_samples,), default=None
        Non-negative weights: they weight the keys of every fit and the
        squared error of every point.
    fallback : {"mean", "nearest"}, default="mean"
        Prediction of a point with no other point in its neighbourhood:
        the weighted mean of the other targets, or the target of the
        nearest other point of positive weight (distances scaled by the
        bandwidth).
    return_gradient : bool, default=False
        Also return the gradient with respect to the log-bandwidths.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to compute the score. The gradient has no GPU kernel: with
        ``return_gradient=True``, ``"cuda"`` raises a ValueError and
        ``"auto"`` means the CPU.
    discrete : nwattn.discrete.DiscreteFeatures, default=None
        Discrete columns of ``X`` (mixed data): ``bandwidth`` then holds
        one value per column, ``lam`` at the discrete ones, and the
        gradient is ``d score / d lam_f`` there (see
        :class:`nwattn.loo.LooProblem`).
    algorithm : {"auto", "brute", "tree"} or nwattn.pruning.KeyTree, default="auto"
        Which key tiles the pass visits (see
        :func:`nwattn.ops.attention_pool`).

    Returns
    -------
    score : float
        The weighted mean squared leave-one-out error, in the squared
        units of ``y``. It is computed on ``y`` divided by a power of two
        where the squared errors would overflow or underflow float64
        (``|y|`` from about 1e144 or below 1e-144), then multiplied back:
        it is exact to rounding, and rounds to ``inf`` (or 0) only when the
        score itself lies beyond float64's range.
    gradient : ndarray of shape (n_features,) or float
        ``d score / d log h_t`` for a per-feature bandwidth, or
        ``d score / d log h`` for a scalar one; only with
        ``return_gradient=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.bandwidth import loo_cv_score
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = np.array([0.0, 1.0, 4.0, 9.0])
    >>> round(loo_cv_score(X, y, bandwidth=1.0), 4)
    9.3083
    >>> one = loo_cv_score(X, y, bandwidth=1.0)
    >>> two = loo_cv_score(X, np.c_[y, 2 * y], bandwidth=1.0)
    >>> round(two / one, 6)  # 1 + 2**2: the squared errors add up over the outputs
    5.0
    """
    from .loo import LooProblem

    problem = LooProblem(X, y, kernel, sample_weight=sample_weight, fallback=fallback,
                         device=device, discrete=discrete, algorithm=algorithm)
    if not return_gradient:
        return _in_target_units(problem, problem.value(bandwidth))
    score, grad = problem.value_and_gradient(bandwidth)
    score, grad = _in_target_units(problem, score), _in_target_units(problem, grad)
    if np.ndim(bandwidth) == 0:
        return score, float(grad.sum())
    return score, grad


def _in_target_units(problem, score):
    """A problem's score (or gradient) in the squared units of its targets.

    A problem scores targets divided by ``2**target_exponent`` when their
    squares would leave float64 (:func:`nwattn.loo.target_exponent`).
    """
    from .loo import in_target_units

    return in_target_units(score, getattr(problem, "target_exponent", 0))


class BandwidthSelection(NamedTuple):
    """Result of :func:`select_bandwidth`, :func:`search` and :func:`nwattn.dask.select_bandwidth`.

    Attributes
    ----------
    bandwidth : float or ndarray of shape (n_features,)
        The selected bandwidth.
    cv_score : float
        Its leave-one-out cross-validation score.
    n_evaluations : int
        Number of leave-one-out passes made.
    """

    bandwidth: object
    cv_score: float
    n_evaluations: int


def rule_of_thumb(rule, spread, n_eff):
    """A rule of thumb from the summaries of the data, for data that are not in memory.

    :func:`scott` and :func:`silverman` from the per-feature spread and the
    effective sample size, which a distributed computation obtains by
    reductions (see :mod:`nwattn.dask`).

    Parameters
    ----------
    rule : {"scott", "silverman"}
        The rule.
    spread : array_like of shape (n_features,)
        Weighted standard deviation of each feature.
    n_eff : float
        Effective sample size, ``(sum w)**2 / sum w**2`` (``n`` without
        weights).

    Returns
    -------
    ndarray of shape (n_features,)

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.bandwidth import rule_of_thumb, scott
    >>> X = np.random.default_rng(0).normal(size=(500, 2))
    >>> bool(np.allclose(rule_of_thumb("scott", X.std(axis=0), 500), scott(X)))
    True
    """
    if rule not in _RULE_FACTORS:
        raise ValueError(f"rule must be one of {tuple(_RULE_FACTORS)}, got {rule!r}")
    spread = np.asarray(spread, dtype=np.float64)
    if spread.ndim != 1 or not np.all(np.isfinite(spread)) or np.any(spread < 0):
        raise ValueError(f"spread must be a 1-D array of non-negative numbers, got {spread!r}")
    if not n_eff > 0:
        raise ValueError(f"n_eff must be positive, got {n_eff!r}")
    return _rule_from_spread(rule, spread, float(n_eff))


def check_tol(tol):
    """Validate the tolerance of a bandwidth search and return it as a float.

    Examples
    --------
    >>> from nwattn.bandwidth import check_tol
    >>> check_tol(1e-3)
    0.001
    """
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating)) or not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    return float(tol)


#: From this many samples on, the 1-D search of a compact kernel walks
#: downhill from the rule of thumb, as for the other kernels, instead of
#: scanning a grid of the whole range: the kinks of its score (one where a
#: pair enters the support) shrink like 1/n and no longer make local minima
#: at the scale of the walk's steps, while the grid's widest bandwidths,
#: where every point neighbours every other, would cost n**2 pairs even
#: pruned.
_WALK_MIN_SAMPLES = 50_000

#: On such a sample a search first selects a bandwidth on a random
#: ``1 / _PILOT_FRACTION`` of the points (to ``_PILOT_TOL``: a start, not
#: an answer) and scales it to the whole set by the bandwidth's rate in
#: ``n``; a scalar search then refines it by Brent's search within a factor
#: ``_PILOT_STEP**2`` of it. Without it the walk from Silverman's rule steps
#: by factors of 3, and its first step to the wide side costs ``3**d``
#: passes at the optimum (88 of the 230 seconds at n = 10**6, d = 2).
_PILOT_FRACTION = 16
_PILOT_TOL = 1e-2
_PILOT_STEP = 1.25


def _search_scale_from(kern, n, sigma, rms2, per_feature):
    """Direction ``v``, range ``[lo, hi]`` and start ``c0`` of the multiplier ``c`` in ``h = c v``.

    From the moments of the data: ``sigma``, the per-feature (weighted)
    standard deviation, for a smoothing kernel, and ``rms2``, the
    per-feature (weighted) mean square, for a dot score.

    For a smoothing kernel ``v`` is the per-feature spread (or 1 for a scalar
    bandwidth); below ``lo`` (a small fraction of the typical nearest-neighbour
    distance) every fit is a nearest-neighbour fit, above ``hi`` (ten times the
    spread of the whole cloud) every fit is the global mean, and the score is
    flat beyond both; the start is Silverman's rule. For a dot score the
    bandwidth is a temperature and the range spans near-argmax to
    near-uniform weights.
    """
    if kern.family == DISTANCE:
        d = sigma.shape[0]
        v = np.where(sigma > 0, sigma, 1.0) if per_feature else np.ones(d)
        spread = math.sqrt(float(np.sum((sigma / v) ** 2))) or 1.0
        d_eff = max(1, int(np.count_nonzero(sigma > 0)))
        start = spread / math.sqrt(d_eff) * (4.0 / ((d_eff + 2) * n)) ** (1.0 / (d_eff + 4))
        return v, 0.05 * spread * n ** (-1.0 / d_eff), start, 10.0 * spread
    d = rms2.shape[0]
    v = np.where(rms2 > 0, rms2, 1.0) if per_feature else np.ones(d)
    scale = 1.0 / math.sqrt(d) if kern.code == SCALED_DOT_CODE else 1.0
    typical = float(np.sum(rms2 / v)) * scale or 1.0
    return v, 1e-3 * typical, 0.3 * typical, 1e2 * typical


def select_bandwidth(X, y, kernel="gaussian", *, per_feature=False, sample_weight=None,
                     fallback="mean", tol=1e-4, device="cpu", degree=0, verbose=0,
                     discrete=None, algorithm="auto"):
    """Bandwidth minimising the leave-one-out cross-validation score.

    The score is that of :func:`loo_cv_score`; the search is :func:`search`.
    :func:`nwattn.dask.select_bandwidth` makes the same search on Dask
    arrays.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        Training points.
    y : array_like of shape (n_samples,) or (n_samples, n_outputs)
        Targets.
    kernel : str, default="gaussian"
        A name of :mod:`nwattn.kernels`.
    per_feature : bool, default=False
        Select one bandwidth per feature instead of a single one.
    sample_weight : array_like of shape (n_samples,), default=None
        Non-negative weights (see :func:`loo_cv_score`).
    fallback : {"mean", "nearest"}, default="mean"
        Leave-one-out prediction of a point with an empty neighbourhood.
    tol : float, default=1e-4
        Tolerance of the search (see :func:`search`).
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to compute the scores.
    degree : {0, 1, 2}, default=0
        Degree of the local polynomial cross-validated: 0 for
        Nadaraya-Watson regression, 1 or 2 for
        :class:`~nwattn.LocalPolynomialRegressor`.
    verbose : int, default=0
        0 is silent; 1 prints a line on stderr for every evaluation of the
        score (its number, the bandwidth, the score and the time it took)
        and one at the end (see :func:`search`).
    discrete : nwattn.discrete.DiscreteFeatures, default=None
        Discrete columns of ``X``: their smoothing parameters ``lam`` are
        selected jointly with the continuous bandwidths (see
        :func:`search`), and the result has one value per column.
    algorithm : {"auto", "brute", "tree"} or nwattn.pruning.KeyTree, default="auto"
        Which key tiles each pass visits (see
        :func:`nwattn.ops.attention_pool`): the training points are ordered
        once, and ``"auto"`` prunes the passes at bandwidths where few
        pairs weigh in.

    Returns
    -------
    BandwidthSelection
        ``(bandwidth, cv_score, n_evaluations)``.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.bandwidth import select_bandwidth
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(300, 2)) * [1.0, 100.0]
    >>> y = np.sin(6 * X[:, 0]) + rng.normal(scale=0.1, size=300)
    >>> sel = select_bandwidth(X, y, per_feature=True)
    >>> bool(sel.bandwidth[1] > 20 * sel.bandwidth[0])  # the second feature is noise
    True
    """
    from .loo import LooProblem

    check_tol(tol)
    verbose = check_verbose(verbose)
    problem = LooProblem(X, y, kernel, sample_weight=sample_weight, fallback=fallback,
                         device=device, degree=degree, discrete=discrete,
                         algorithm=algorithm)
    # The search makes many small BLAS calls (L-BFGS-B, reductions) between
    # compiled parallel passes; BLAS worker threads spinning after those
    # calls compete with Numba's for the cores. And on a busy machine a
    # parallel region can wait milliseconds for its threads to be scheduled,
    # longer than a whole small pass takes on one core.
    n, d = problem.X.shape
    serial = n * n * d < _SERIAL_WORK
    with serial_blas(), (threads(1) if serial else nullcontext()):
        return search(problem, per_feature, tol, verbose=verbose)


def _format_bandwidth(h):
    """A bandwidth for a progress line: the number, or the first values of an array."""
    h = np.atleast_1d(np.asarray(h, dtype=float))
    if h.size == 1:
        return f"h={h[0]:.4g}"
    shown = ", ".join(f"{x:.3g}" for x in h[:4])
    return f"h=[{shown}{', ...' if h.size > 4 else ''}]"


def search(problem, per_feature=False, tol=1e-4, *, verbose=0, label="select_bandwidth"):
    """Minimise a leave-one-out score over the bandwidth.

    The search of :func:`select_bandwidth`, for any computation of the
    score: :class:`nwattn.loo.LooProblem` for data in memory, the
    distributed problem of :mod:`nwattn.dask` for Dask arrays. It runs on
    ``log h``. A scalar bandwidth is found by a bracketing 1-D search:
    starting from Silverman's rule, it steps downhill by factors of 3 until
    the score rises, then refines the bracket by bounded Brent minimisation
    (:func:`scipy.optimize.minimize_scalar`). The score of a compact kernel
    has a kink wherever a pair of points enters the support, and so shallow
    local minima: for those kernels the bracket comes from a 12-point
    logarithmic grid over the whole range instead, below 50 000 samples;
    the result can still be a local minimum a few percent above the global
    one on small samples. From 50 000 samples on, the kinks are too small
    to matter at the walk's scale and every kernel walks, trying the
    narrower bandwidth first (a pass costs about the number of neighbours,
    so the wide bandwidths are the expensive ones). There, for a smoothing
    kernel and a problem that offers ``subproblem`` (data in memory), the
    search first selects a bandwidth on a fixed random sixteenth of the
    points (to a tolerance of 1e-2), scales it by the optimal bandwidth's
    rate ``n**(-1/(d+4))`` (``n**(-1/(d+8))`` for degree 2), and runs
    Brent's search between that bandwidth divided and multiplied by
    1.5625; only if the result lies at an end of that bracket does it walk
    on from there by factors of 1.5625. At n = 10**6 this makes 8 passes
    instead of 14, none of them wide. With discrete features the joint
    search likewise starts from the joint selection on the subset (the
    continuous bandwidths scaled), and runs on variables scaled by the
    square roots of the subset's score's curvatures there (at n = 10**5,
    8 passes instead of 21). A
    per-feature bandwidth starts from a common multiple of the features'
    spreads, the best point of the same bracketing stage (not refined), and
    is refined by L-BFGS-B with the analytic gradient of the score; for the
    boxcar kernel, whose score is piecewise constant in ``h``, by Powell's
    derivative-free method instead, from the better of that start and the
    best common bandwidth. The search never leaves a range from a small
    fraction of the typical nearest-neighbour distance to ten times the
    spread of the data, beyond which the score is flat.

    Parameters
    ----------
    problem : object
        The score to minimise, with these attributes and methods:

        ``kernel``
            The :class:`nwattn.kernels.Kernel`.
        ``n_samples``
            Number of training points (int).
        ``spread``
            Weighted standard deviation of each feature, shape
            (n_features,); sets the range of a smoothing kernel.
        ``mean_square``
            Weighted mean square of each feature, shape (n_features,); sets
            the range of a dot score.
        ``target_variance``
            Weighted variance of the targets summed over the outputs
            (float); the tolerances are relative to it.
        ``value(bandwidth)``
            The score (float) at a scalar or per-feature bandwidth.
        ``value_and_gradient(bandwidth)``
            The score and its gradient with respect to the log-bandwidths,
            shape (n_features,); called only by a per-feature search with a
            kernel other than boxcar, and only when the problem's
            ``has_gradient`` attribute is true (or absent). A problem
            without a gradient is searched per feature by Powell's method,
            as the boxcar kernel is.
        ``subproblem(n_rows)`` (optional)
            The same problem on a random subset of ``n_rows`` points: the
            pilot of a large scalar search (see above).
        ``target_exponent`` (optional)
            The scores are in units of ``4**target_exponent`` (see
            ``target_exponent`` of :class:`nwattn.loo.LooProblem`); the selection
            reports its score in the targets' own units.
    per_feature : bool, default=False
        Select one bandwidth per feature instead of a single one.
    tol : float, default=1e-4
        Tolerance on ``log h`` of the 1-D search. The per-feature search
        stops when the projected gradient of the score divided by the
        targets' variance falls below ``tol / 1000``, or when an iteration
        lowers that normalised score by less than ``tol * 1e-6``. The
        gradient is in the search's variables: ``log h``, and ``lam`` with
        discrete features, each times its scale where the joint search
        starts from a pilot.
    verbose : int, default=0
        0 is silent; 1 prints a line on stderr for every evaluation of the
        score: its number, the bandwidth (the first four values of a
        per-feature one), the score (the problem's, not normalised), the
        time it took and the time since the search started; then a last
        line with the selected bandwidth.
    label : str, default="select_bandwidth"
        Name of the search in those lines.

    Returns
    -------
    BandwidthSelection
        ``(bandwidth, cv_score, n_evaluations)``: a float for a scalar
        search, an array of shape (n_features,) for a per-feature one;
        ``n_evaluations`` counts the problem's own passes, not the pilot's
        on a subset.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.bandwidth import search
    >>> from nwattn.loo import LooProblem
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 5, size=(200, 1))
    >>> y = np.sin(X[:, 0]) + rng.normal(scale=0.3, size=200)
    >>> sel = search(LooProblem(X, y, "epanechnikov"))
    >>> 0.1 < sel.bandwidth < 2.0
    True
    """
    tol = check_tol(tol)
    per_feature = bool(per_feature)
    kern = problem.kernel
    n_eval = 0
    log = EvaluationLog(label, check_verbose(verbose))
    discrete = getattr(problem, "discrete", None)
    # With discrete features the problem takes one value per column: the
    # continuous bandwidths searched here, and the discrete parameters,
    # held at their starting values until the joint search of _search_mixed.
    lam = None if discrete is None else _lambda_start(discrete)

    def full(h):
        """One value per column: ``h`` continuous, or a pair ``(h, lam)``."""
        if discrete is None:
            return h
        hc, lc = h if isinstance(h, tuple) else (h, lam)
        return _columns(problem, np.broadcast_to(np.asarray(hc, dtype=float),
                                                 problem.continuous.shape), lc)

    def evaluate(h, gradient=False):
        """The problem's score (and gradient) at ``h``, counted and logged."""
        nonlocal n_eval
        n_eval += 1
        t0 = time.perf_counter()
        h = full(h)
        out = problem.value_and_gradient(h) if gradient else problem.value(h)
        log.evaluation(_format_bandwidth(h),
                       _in_target_units(problem, out[0] if gradient else out),
                       time.perf_counter() - t0)
        return out
    # Normalised by the targets' variance so that tolerances are scale-free.
    var = float(problem.target_variance)
    norm = var if var > 0 else 1.0

    def scale(per):
        return _search_scale_from(kern, int(problem.n_samples), np.asarray(problem.spread),
                                  np.asarray(problem.mean_square), per)

    def line_search(v, lo, c0, hi, xatol, factor=3.0, near=False):
        """Best ``log c`` for ``h = c v``, ``c`` in ``[lo, hi]``, and its normalised score.

        ``xatol=None`` returns the best point of the bracketing stage.

        Walks downhill from ``c0`` by factors of ``factor`` until the score rises (or
        a bound is reached; narrower first on a large sample), or for a
        compact kernel on a small sample scans a logarithmic grid
        of the range, then refines the bracket around the best point with
        Brent's bounded search. With ``near`` (``c0`` from a pilot), Brent's
        search first runs on ``c0`` divided and multiplied by ``factor**2``,
        whose ends it never evaluates; only if its result lies at an end
        does the walk start, from there, by factors of ``factor**2``.
        """
        seen = {}

        def f(log_c):
            if log_c not in seen:  # the walk may start where Brent ended
                h = math.exp(log_c) * v
                seen[log_c] = evaluate(h if per_feature else float(h[0])) / norm
            return seen[log_c]

        a_min, a_max, step = math.log(lo), math.log(hi), math.log(factor)
        large = int(problem.n_samples) >= _WALK_MIN_SAMPLES
        if near and xatol is not None:
            x0 = min(max(math.log(c0), a_min), a_max)
            a, b = max(x0 - 2 * step, a_min), min(x0 + 2 * step, a_max)
            res = optimize.minimize_scalar(f, bounds=(a, b), method="bounded",
                                           options={"xatol": xatol})
            x = float(res.x)
            # Brent's result is within its tolerance of a bound it cannot
            # cross only when the minimum lies beyond it.
            if (a == a_min or x - a > 3 * xatol) and (b == a_max or b - x > 3 * xatol):
                return x + np.log(v), float(res.fun)
            # The pilot was far off: walk on by the bracket's half-width.
            c0, step = math.exp(x), 2 * step
        if kern.is_compact and not large:
            # The score of a compact kernel has a kink wherever a pair enters
            # the support, hence shallow local minima: scan the whole range.
            pts = {x: f(x) for x in np.linspace(a_min, a_max, 12)}
        else:
            x0 = min(max(math.log(c0), a_min), a_max)
            pts = {x0: f(x0)}
            # On a large sample a pass costs about n times the neighbours of
            # a point, so the wide bandwidths are the dear ones: try the
            # narrower side first.
            first = -1.0 if large else 1.0
            nb = min(max(x0 + first * step, a_min), a_max)
            pts[nb] = f(nb)
            direction = first if pts[nb] < pts[x0] else -first
            x = nb if direction == first else x0
            while True:
                nxt = min(max(x + direction * step, a_min), a_max)
                if nxt == x:
                    break
                pts[nxt] = f(nxt)
                if pts[nxt] >= pts[x]:
                    break
                x = nxt
        xs = sorted(pts)
        k = xs.index(min(xs, key=pts.get))
        a, b = xs[max(k - 1, 0)], xs[min(k + 1, len(xs) - 1)]
        best_x, best_f = xs[k], pts[xs[k]]
        if b > a and xatol is not None:
            res = optimize.minimize_scalar(f, bounds=(a, b), method="bounded",
                                           options={"xatol": xatol})
            if res.fun <= best_f:
                best_x, best_f = float(res.x), float(res.fun)
        return best_x + np.log(v), best_f

    if discrete is not None:
        return _search_mixed(problem, per_feature, tol, evaluate, line_search, scale, norm, log,
                             lam, lambda: n_eval, verbose, label)
    v, lo, c0, hi = scale(per_feature)
    if not per_feature:
        factor, near = 3.0, False
        # A smoothing kernel's optimal bandwidth shrinks with n at a known
        # rate (a dot score's temperature does not).
        if (int(problem.n_samples) >= _WALK_MIN_SAMPLES and kern.family == DISTANCE
                and hasattr(problem, "subproblem")):
            c0, factor, near = _pilot(problem, tol, verbose, label), _PILOT_STEP, True
        log_h, f_best = line_search(v, lo, c0, hi, tol, factor, near)
        h_best = float(math.exp(log_h[0]))
        score = _in_target_units(problem, float(f_best * norm))
        log.done(f"selected {_format_bandwidth(h_best)}  score {score:.6g}")
        return BandwidthSelection(h_best, score, n_eval)

    # A common multiple of the features' spreads to start from, bracketed
    # but not refined: the gradient search does that.
    piecewise_constant = kern.name == "boxcar" or not getattr(problem, "has_gradient", True)
    theta0, f_best = line_search(v, lo, c0, hi, tol if piecewise_constant else None)
    lower, upper = math.log(lo) + np.log(v), math.log(hi) + np.log(v)
    if piecewise_constant:
        # Powell's search only polishes its start, so that start is the
        # better of the common multiple of the spreads and the common bandwidth.
        v1, lo1, c01, hi1 = scale(False)
        theta1, f1 = line_search(v1, lo1, c01, hi1, tol)
        if f1 < f_best:
            theta0, f_best = theta1, f1
        lower = np.minimum(lower, math.log(lo1))
        upper = np.maximum(upper, math.log(hi1))
    bounds = list(zip(lower, upper))

    def value(theta, gradient=False):
        if gradient:
            s, g = evaluate(np.exp(theta), gradient=True)
            return s / norm, g / norm
        return evaluate(np.exp(theta)) / norm

    theta, f_final = _minimize(value, theta0, f_best, bounds, piecewise_constant, tol)
    score = _in_target_units(problem, float(f_final * norm))
    log.done(f"selected {_format_bandwidth(np.exp(theta))}  score {score:.6g}")
    return BandwidthSelection(np.exp(theta), score, n_eval)


def _minimize(value, theta0, f0, bounds, piecewise_constant, tol):
    """The best point ``(theta, f)`` of the local search from ``theta0`` (score ``f0``).

    ``value(theta)`` is the normalised score, ``value(theta, True)`` the
    score and its gradient. L-BFGS-B polishes a smooth score; Powell's
    method (no gradient) one that is piecewise constant. The result is the
    lowest score the search evaluated, with the point it was evaluated at,
    or the start when nothing beat it: not the optimiser's ``(x, fun)``,
    which need not belong together (L-BFGS-B may end its last line search
    with ``fun`` of one point and ``x`` of another, "ABNORMAL" in its
    message), so the reported score is always the score of the reported
    bandwidth.
    """
    best = [np.asarray(theta0, dtype=float), f0]

    def record(theta, f):
        if f < best[1]:
            best[0], best[1] = np.array(theta, dtype=float), float(f)

    if piecewise_constant:

        def fun(theta):
            f = value(theta)
            record(theta, f)
            return f

        optimize.minimize(fun, theta0, method="Powell", bounds=bounds,
                          options={"xtol": tol, "maxfev": 50 * len(theta0)})
    else:

        def fun(theta):
            f, g = value(theta, True)
            record(theta, f)
            return f, g

        optimize.minimize(fun, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
                          options={"gtol": tol * 1e-3, "ftol": tol * 1e-6, "maxiter": 200})
    return best[0], best[1]


def _pilot_scales(sub, found, k, lower, upper, lam_hi, in_search_variables):
    """Scales of the mixed search's variables from the curvature of the subset's score.

    ``found`` is the subset's selection (one value per column) and ``k``
    the number of log-bandwidths searched (1: a common one). The second
    derivative of the subset's normalised score in each search variable
    (``log h``, then each ``lam``) is taken from its gradient there and a
    small step away (inwards at a bound): ``1 + len(theta)`` passes on the
    subset. Each scale is the square root of its curvature, divided by
    their geometric mean; one that is not positive (a flat or non-convex
    direction) gets that mean. Discrete parameters and log-bandwidths
    differ in their curvature by orders of magnitude (the score is steep
    in a ``lam`` near 0), which left L-BFGS-B's first iterations creeping.
    """
    discrete = sub.discrete
    found = np.asarray(found, dtype=float)
    log_h = np.log(found[sub.continuous])
    theta = np.concatenate([log_h[:1] if k == 1 else log_h, found[discrete.columns]])
    norm = float(sub.target_variance) or 1.0

    def gradient(t):
        cols = np.empty(found.shape[0])
        cols[sub.continuous] = np.exp(t[:k]) if k > 1 else math.exp(t[0])
        cols[discrete.columns] = np.clip(t[k:], 0.0, discrete.max_lambdas)
        return in_search_variables(sub.value_and_gradient(cols)[1]) / norm

    g0 = gradient(theta)
    curv = np.full(len(theta), np.nan)
    lo = np.concatenate([lower, np.zeros(len(lam_hi))])
    hi = np.concatenate([upper, lam_hi])
    for i in range(len(theta)):
        step = _CURVATURE_STEP * (1.0 if i < k else float(lam_hi[i - k]))
        if theta[i] + step > hi[i]:
            step = -step
        t = theta.copy()
        t[i] = min(max(theta[i] + step, lo[i]), hi[i])
        if t[i] != theta[i]:
            curv[i] = (gradient(t)[i] - g0[i]) / (t[i] - theta[i])
    good = np.isfinite(curv) & (curv > 0)
    if not good.any():
        return np.ones(len(theta))
    scales = np.sqrt(np.where(good, curv, np.nan))
    mean = math.exp(float(np.mean(np.log(scales[good]))))
    return np.where(good, scales, mean) / mean


#: Step (in ``log h``, or as a share of a discrete parameter's range) of
#: the finite difference of :func:`_pilot_scales`.
_CURVATURE_STEP = 0.05


def _pilot(problem, tol, verbose, label, per_feature=False, subset=False):
    """Start of a large search: the bandwidth selected on a subset, scaled to the whole.

    The subset is a random ``1 / _PILOT_FRACTION`` of the points (a fixed
    draw), searched the same way to the looser of ``tol`` and
    ``_PILOT_TOL``; its bandwidth is multiplied by ``(n_sub / n) ** r`` with
    ``r = 1 / (d + 4)``, the rate of the optimal bandwidth of a local
    constant or linear fit (``1 / (d + 8)`` for degree 2). The search that
    follows corrects what the subset's own variability leaves. With discrete
    features, one value per column: the continuous bandwidths scaled, the
    discrete parameters as the subset chose them; with ``subset``, returned
    with the subset's problem and its own selection, ``(start, sub, found)``,
    for :func:`_pilot_scales`.
    """
    n = int(problem.n_samples)
    sub = problem.subproblem(max(n // _PILOT_FRACTION, 2))
    found = search(sub, per_feature, max(tol, _PILOT_TOL), verbose=verbose,
                   label=f"{label} (pilot)")
    d_eff = max(1, int(np.count_nonzero(np.asarray(problem.spread) > 0)))
    rate = 1.0 / (d_eff + (8 if getattr(problem, "degree", 0) >= 2 else 4))
    factor = (int(sub.n_samples) / n) ** rate
    if getattr(problem, "discrete", None) is None:
        return float(found.bandwidth) * factor
    out = np.array(found.bandwidth, dtype=float)
    out[problem.continuous] *= factor
    return (out, sub, found.bandwidth) if subset else out


def _lambda_start(discrete):
    """Where the search of the discrete parameters starts: half their range.

    Half way, every category borrows from the others without any being
    kept apart or merged: the gradient then points to whichever of the
    three the data prefer.
    """
    return 0.5 * discrete.max_lambdas


def _lambda_upper(discrete):
    """Upper bounds of the discrete parameters in the search.

    Their largest values, except for the Wang-van Ryzin kernel, whose
    weights all vanish at ``lam = 1`` (a bound just below it).
    """
    top = discrete.max_lambdas.copy()
    for k, kern in enumerate(discrete.kernels):
        if not kern.closed_above:
            top[k] = top[k] * (1.0 - 1e-6)
    return top


def _columns(problem, h, lam):
    """One value per column: the continuous bandwidths ``h`` and the discrete ``lam``."""
    out = np.empty(problem.X.shape[1])
    out[problem.continuous] = h
    out[problem.discrete.columns] = lam
    return out


def _search_mixed(problem, per_feature, tol, evaluate, line_search, scale, norm, log, lam0,
                  n_evaluations, verbose=0, label="select_bandwidth"):
    """The joint search of continuous bandwidths and discrete parameters.

    The continuous bandwidths start, as in the continuous search, from the
    best common multiple of the features' spreads (bracketed with the
    discrete parameters at the middle of their ranges), or on a large
    sample from the joint selection on a subset (:func:`_pilot`); then L-BFGS-B
    (Powell's method for the boxcar kernel) runs on ``(log h, lam)``:
    ``log h`` as in the continuous search (one common ``log h`` without
    ``per_feature``), ``lam`` itself with the box bounds ``[0, lam_max]``,
    so both ends are reachable. ``lam = 0`` keeps a feature's categories
    apart, ``lam_max`` smooths the feature out.
    """
    discrete = problem.discrete
    kern = problem.kernel
    nc = problem.continuous.shape[0]
    piecewise_constant = kern.name == "boxcar" or not getattr(problem, "has_gradient", True)
    lam_hi = _lambda_upper(discrete)
    # On a large sample the joint search starts where the same search on a
    # subset ended, the continuous bandwidths scaled to the whole set, and
    # skips the bracketing of the continuous part.
    pilot = (nc and not piecewise_constant and kern.family == DISTANCE
             and int(problem.n_samples) >= _WALK_MIN_SAMPLES and hasattr(problem, "subproblem"))
    if pilot:
        v, lo, _, hi = scale(per_feature)
        start, sub, found = _pilot(problem, tol, verbose, label, per_feature, subset=True)
        lam0 = np.clip(start[discrete.columns], 0.0, lam_hi)
        h0 = np.clip(start[problem.continuous], lo * v, hi * v)
        theta_h, f_best = np.log(h0 if per_feature else h0[:1]), math.inf
    if nc and not pilot:
        v, lo, c0, hi = scale(per_feature)
        theta_h, f_best = line_search(v, lo, c0, hi, tol if piecewise_constant else None)
    if nc:
        if not per_feature:
            theta_h = theta_h[:1]
            lower, upper = [math.log(lo)], [math.log(hi)]
        else:
            lower = list(math.log(lo) + np.log(v))
            upper = list(math.log(hi) + np.log(v))
    else:
        theta_h, lower, upper = np.empty(0), [], []
        f_best = math.inf
    k = len(lower)
    theta0 = np.concatenate([theta_h, lam0])
    bounds = list(zip(lower, upper)) + [(0.0, float(t)) for t in lam_hi]

    def split(theta):
        h = np.exp(theta[:k])
        return (np.broadcast_to(h, (nc,)) if k == 1 else h), theta[k:]

    def in_search_variables(g):
        gh = g[problem.continuous]
        gh = np.array([gh.sum()]) if k == 1 else gh
        return np.concatenate([gh, g[discrete.columns]])

    # The search runs on theta times these scales: the square roots of the
    # curvatures of the subset's score where its search ended, when there
    # was a pilot (1 otherwise).
    s = np.ones(len(theta0))
    if pilot:
        s = _pilot_scales(sub, found, k, lower, upper, lam_hi, in_search_variables)

    def value(u, gradient=False):
        h, lam = split(u / s)
        if gradient:
            f, g = evaluate((h, lam), True)
            return f / norm, in_search_variables(g) / (norm * s)
        return evaluate((h, lam)) / norm

    if not nc:
        f_best = value(theta0)
    bounds_u = [(a * si, b * si) for (a, b), si in zip(bounds, s)]
    u, f_final = _minimize(value, theta0 * s, f_best, bounds_u, piecewise_constant, tol)
    h, lam = split(u / s)
    best = _columns(problem, h, np.clip(lam, 0.0, discrete.max_lambdas))
    score = _in_target_units(problem, float(f_final * norm))
    log.done(f"selected {_format_bandwidth(best)}  score {score:.6g}")
    return BandwidthSelection(best, score, n_evaluations())


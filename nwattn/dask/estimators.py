"""The estimators of :mod:`nwattn` on Dask arrays.

This module is the Dask integration named in the registry of
``nwattn.estimators._integrations``: the estimators import it (by name,
with :mod:`importlib`) only when a Dask array reaches them, and call the
functions below. They compute; the estimator sets its own attributes from
what they return.
"""

from typing import NamedTuple

import numpy as np

import dask.array as da

from .. import bandwidth as _bw
from .._backend import backend_for
from .._progress import check_verbose
from .._validation import check_bandwidth
from ..kernels import get_kernel
from ._inputs import (as_dask, blocks, check_algorithm, check_device, check_split_every,
                      prepare, training_set)
from .loo import _select, moments
from .pool import finalized, nearest_states, pooled_states
from .blockwise import predict

__all__ = ["accepts", "NadarayaWatsonFit", "nadaraya_watson_fit", "nadaraya_watson_predict",
           "predict"]


def accepts(array):
    """Whether the estimators hand ``array`` to this integration: a Dask array.

    Other Dask collections (a Dask data frame, say) are converted to NumPy
    by the estimators' validation like any array-like.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from nwattn.dask.estimators import accepts
    >>> accepts(da.ones(3)), accepts(np.ones(3))
    (True, False)
    """
    return isinstance(array, da.Array)


class NadarayaWatsonFit(NamedTuple):
    """What :func:`nadaraya_watson_fit` found: the fitted attributes of the estimator.

    Attributes
    ----------
    bandwidth : float or ndarray of shape (n_features,)
        ``bandwidth_``.
    cv_score : float or None
        ``cv_score_``.
    X, y : dask.array.Array
        ``X_fit_`` and ``y_fit_``, still distributed.
    sample_weight : dask.array.Array or None
        ``sample_weight_``.
    y_mean : ndarray of shape (n_outputs,)
        ``y_mean_``.
    n_features : int
        ``n_features_in_``.
    """

    bandwidth: object
    cv_score: object
    X: object
    y: object
    sample_weight: object
    y_mean: np.ndarray
    n_features: int


def nadaraya_watson_fit(estimator, X, y, sample_weight):
    """:meth:`NadarayaWatsonRegressor.fit` on Dask arrays; the training set stays distributed.

    Validates the training set with reductions and chooses the bandwidth as
    the estimator's parameters say, with the same rules and the same
    leave-one-out search as in memory (:func:`nwattn.dask.select_bandwidth`).
    The estimator is not modified.

    Parameters
    ----------
    estimator : NadarayaWatsonRegressor
        Its parameters (kernel, bandwidth, bandwidth_per_feature, fallback,
        tol, device, algorithm) are read; ``algorithm`` is passed on to
        every task of the leave-one-out search, which orders and prunes
        its own chunk of keys.
    X, y, sample_weight : dask.array.Array or array_like
        The training set.

    Returns
    -------
    NadarayaWatsonFit

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from nwattn import NadarayaWatsonRegressor
    >>> from nwattn.bandwidth import silverman
    >>> from nwattn.dask.estimators import nadaraya_watson_fit
    >>> x = np.linspace(0, 1, 50)[:, None]
    >>> X = da.from_array(x, chunks=20)
    >>> fit = nadaraya_watson_fit(NadarayaWatsonRegressor(bandwidth="silverman"), X,
    ...                           X[:, 0] ** 2, None)
    >>> fit.X.chunks
    ((20, 20, 10), (1,))
    >>> bool(np.allclose(fit.bandwidth, silverman(x)))
    True
    """
    kern = get_kernel(estimator.kernel)
    device = check_device(estimator.device)
    # Refused before the data are read, as the in-memory fit refuses it.
    algorithm = check_algorithm(estimator.algorithm, kern, device)
    per_feature = bool(estimator.bandwidth_per_feature)
    bw = estimator.bandwidth
    if isinstance(bw, str) and bw == "cv" and per_feature and kern.name != "boxcar":
        # Refused before the data are read, not at the search's first gradient.
        backend_for(device, need="slopes", what="the gradient of the leave-one-out score")
    X, y, Y2, W = training_set(X, y, sample_weight)
    m = moments(X, Y2, W)
    cv_score = None
    if isinstance(bw, str) and bw in ("scott", "silverman"):
        if not kern.is_distance:
            raise ValueError(
                f"bandwidth={bw!r} is a rule for smoothing kernels; kernel "
                f"{kern.name!r} is an attention score: give a number or 'cv'"
            )
        bandwidth = _bw.rule_of_thumb(bw, np.sqrt(m["x_var"]), m["n_eff"])
    elif isinstance(bw, str):
        fallback = "nearest" if estimator.fallback == "nearest" else "mean"
        sel = _select(X, Y2, W, kern, m, per_feature=per_feature, fallback=fallback,
                      tol=float(estimator.tol), device=device,
                      split_every=check_split_every(None), algorithm=algorithm,
                      verbose=check_verbose(estimator.verbose))
        bandwidth, cv_score = sel.bandwidth, sel.cv_score
    else:
        checked = check_bandwidth(bw, X.shape[1], np.float64)
        bandwidth = float(checked[0]) if np.ndim(bw) == 0 else checked
    return NadarayaWatsonFit(bandwidth, cv_score, X, y, W, m["y_mean"], int(X.shape[1]))


def _needs_nearest(kernel, fallback):
    # Only a compact kernel leaves queries without neighbours.
    return fallback == "nearest" and get_kernel(kernel).is_compact


def nadaraya_watson_predict(estimator, X, return_std):
    """:meth:`NadarayaWatsonRegressor.predict` with Dask queries or a distributed training set.

    The pooling of :func:`nwattn.dask.attention_pool` with the training set
    as keys, on the estimator's ``device`` and with its ``algorithm`` (each
    task ordering and pruning its own chunk of keys), the ``fallback``
    applied block by block.

    Parameters
    ----------
    estimator : NadarayaWatsonRegressor
        A fitted estimator.
    X : dask.array.Array or array_like of shape (n_queries, n_features)
        Queries.
    return_std : bool
        Also return the standard deviations.

    Returns
    -------
    pred : dask.array.Array
        Lazy, chunked like the rows of ``X``.
    std : dask.array.Array
        Only with ``return_std=True``.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from nwattn import NadarayaWatsonRegressor
    >>> from nwattn.dask.estimators import nadaraya_watson_predict
    >>> model = NadarayaWatsonRegressor(bandwidth=0.5).fit([[0.0], [1.0]], [0.0, 2.0])
    >>> nadaraya_watson_predict(model, da.from_array([[0.5]]), False).compute()
    array([1.])
    """
    device = check_device(estimator.device)
    algorithm = check_algorithm(estimator.algorithm, estimator.kernel, device)
    Q = as_dask(X, "X")
    if Q.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {Q.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input"
        )
    if Q.dtype not in (np.float32, np.float64):
        Q = Q.astype(np.float64)
    kernel, h, fallback = estimator.kernel, estimator.bandwidth_, estimator.fallback
    Q, K, V2, W, values_1d, dtype = prepare(Q, estimator.X_fit_, estimator.y_fit_, kernel, h,
                                            estimator.sample_weight_, False)
    split_every = check_split_every(None)
    states, center = pooled_states(Q, K, V2, W, kernel, h, False, return_std, dtype,
                                   split_every, device, algorithm=algorithm)
    nearest = (nearest_states(states, Q, K, V2, W, h, False, split_every)
               if _needs_nearest(kernel, fallback) else None)
    spread = None
    if fallback == "mean" and return_std:
        mean = estimator.y_mean_
        spread = blocks(da.sqrt(da.average((V2 - mean) ** 2, axis=0, weights=W)))[0]
    return finalized(states, center, Q, V2.shape[1], values_1d, return_std, dtype,
                     nearest, fallback=fallback, mean=estimator.y_mean_, spread=spread)

"""The estimators' ``algorithm``: their training points ordered once, each pass pruned or not.

A fitted estimator keeps a :class:`nwattn.pruning.KeyTreeCache` of its
training points (their continuous features), so that every pass after
the fit (predictions, standard errors, intervals, the bootstrap) reuses
one k-d order of the keys instead of building it again, and
``algorithm="auto"`` decides for each pass from its own bandwidth.
"""

import numpy as np
from sklearn.utils._param_validation import StrOptions

from ..kernels import get_kernel
from ..pruning import ALGORITHMS, KeyTreeCache

#: The parameter's constraint, shared by the estimators.
ALGORITHM_PARAM = {"algorithm": [StrOptions(set(ALGORITHMS))]}


def _continuous(estimator, n_features):
    disc = getattr(estimator, "discrete_", None)
    return np.arange(n_features) if disc is None else disc.continuous_columns(n_features)


def fit_keys(estimator, X):
    """Keep the key order cache of the training points ``X`` (after the fit's validation)."""
    kern = get_kernel(estimator.kernel)
    if estimator.algorithm == "tree" and not kern.is_distance:
        raise ValueError(f"algorithm='tree' prunes smoothing kernels only; the score "
                         f"{kern.name!r} takes algorithm='brute' or 'auto'")
    cols = _continuous(estimator, X.shape[1])
    estimator._keys = KeyTreeCache(estimator.algorithm, X[:, cols], estimator.device)


def algorithm_for(estimator, X, bandwidth, factor=None):
    """``algorithm=`` of a pass of the fitted estimator at queries ``X``.

    ``bandwidth`` is the pass's (one entry per column with discrete
    features, whose smoothing parameters are not lengths and are left
    out), ``factor`` each query's bandwidth factor (nearest-neighbour
    bandwidths), or None.
    """
    keys = getattr(estimator, "_keys", None)
    if keys is None:  # fitted elsewhere (Dask arrays): nothing kept
        return estimator.algorithm
    cols = _continuous(estimator, X.shape[1])
    h = np.asarray(bandwidth, dtype=np.float64)
    if h.ndim == 1 and h.shape[0] == X.shape[1]:
        h = h[cols]
    qscale = None if factor is None else 1.0 / np.asarray(factor, dtype=np.float64)
    return keys.for_call(get_kernel(estimator.kernel), h, Q=X[:, cols], qscale=qscale)

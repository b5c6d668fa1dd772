"""Predictions for queries with an empty kernel neighbourhood.

One rule for every path that finalises Nadaraya-Watson predictions, in
memory or block by block on Dask.
"""

import warnings

import numpy as np

from ._validation import unit_weights
from .exceptions import EmptyNeighborhoodWarning

FALLBACKS = ("nan", "mean", "nearest")


def target_spread(Y2, mean, weights):
    """Weighted standard deviation of the targets around ``mean``, per output.

    The weights are divided by their largest first: the result depends on
    their ratios only, and their raw sum overflows for weights near 1e308.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn._fallback import target_spread
    >>> Y2 = np.array([[0.0], [2.0]])
    >>> target_spread(Y2, np.array([1.0]), np.array([1e308, 1e308]))
    array([1.])
    """
    return np.sqrt(np.average((Y2 - mean) ** 2, axis=0, weights=unit_weights(weights)))


def fill_empty(pred, std, empty, fallback, *, mean, spread, nearest, stacklevel=2):
    """Apply ``fallback`` to the queries marked in ``empty``.

    Parameters
    ----------
    pred : ndarray of shape (n,) or (n, n_outputs)
        Predictions, NaN where ``empty``.
    std : ndarray like ``pred``, or None
        Standard deviations, when they are returned.
    empty : ndarray of bool, shape (n,)
        Queries with no key inside the kernel's support.
    fallback : {"nan", "mean", "nearest"}
        ``"nan"`` keeps NaN and warns with
        :class:`~nwattn.exceptions.EmptyNeighborhoodWarning`; ``"mean"``
        predicts ``mean`` with standard deviation ``spread()``;
        ``"nearest"`` predicts ``nearest(idx)`` (the targets of the nearest
        training points of the queries ``idx``) with standard deviation 0.
    mean : ndarray of shape (n_outputs,)
        Weighted mean of the training targets.
    spread : callable
        Returns the weighted standard deviation of the training targets;
        called only when it is needed.
    nearest : callable
        Maps the indices of the empty queries to an array of shape
        (len(idx), n_outputs); called only when it is needed.
    stacklevel : int, default=2
        Of the warning, counted from the caller of this function.

    Returns
    -------
    pred, std : ndarray
        New arrays where something was filled, else the inputs.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn._fallback import fill_empty
    >>> pred, _ = fill_empty(np.array([1.0, np.nan]), None, np.array([False, True]),
    ...                      "mean", mean=np.array([5.0]), spread=None, nearest=None)
    >>> pred
    array([1., 5.])
    """
    if not empty.any():
        return pred, std
    if fallback == "nan":
        n_empty = int(np.count_nonzero(empty))
        warnings.warn(
            f"{n_empty} of {empty.shape[0]} queries have no training point inside the "
            f"kernel's support; their predictions are NaN (widen the bandwidth or set "
            f"fallback='mean' or 'nearest')",
            EmptyNeighborhoodWarning,
            stacklevel=stacklevel + 1,
        )
        return pred, std
    idx = np.flatnonzero(empty)
    if fallback == "mean":
        fill = mean
        fill_std = spread() if std is not None else None
    else:
        fill = nearest(idx)
        fill_std = 0.0
    shape = pred.shape
    pred = pred.reshape(shape[0], -1).copy()
    pred[idx] = fill
    pred = pred.reshape(shape)
    if std is not None:
        std = std.reshape(shape[0], -1).copy()
        std[idx] = fill_std
        std = std.reshape(shape)
    return pred, std

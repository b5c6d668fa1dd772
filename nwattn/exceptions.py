"""Warnings and errors raised by nwattn."""

__all__ = ["EmptyNeighborhoodWarning"]


class EmptyNeighborhoodWarning(UserWarning):
    """Some queries have no key inside the kernel's support.

    Their predictions are NaN, as with scikit-learn's
    :class:`~sklearn.neighbors.RadiusNeighborsRegressor`. Widen the
    bandwidth, use a kernel with unbounded support (gaussian, laplacian), or
    choose a fallback where the estimator offers one.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from nwattn.ops import attention_pool
    >>> from nwattn.exceptions import EmptyNeighborhoodWarning
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     out = attention_pool([[0.0], [9.0]], [[0.0], [1.0]], [1.0, 2.0],
    ...                          kernel="boxcar", bandwidth=1.5)
    >>> out
    array([1.5, nan])
    >>> caught[0].category is EmptyNeighborhoodWarning
    True
    """

"""Warnings and errors raised by nwattn."""

__all__ = ["EmptyNeighborhoodWarning", "UnsafeForkWarning"]


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


class UnsafeForkWarning(UserWarning):
    """The process forks after running parallel kernels on a layer that cannot survive it.

    Numba's ``omp`` threading layer, built on GNU OpenMP on Linux, kills a
    child forked after the parent's first parallel launch as soon as the
    child launches one itself. nwattn warns at the fork and, in the child,
    raises a RuntimeError instead of launching. Install the ``tbb`` package
    (Numba then uses its fork-safe ``tbb`` layer), set
    ``NUMBA_THREADING_LAYER=workqueue``, or start worker processes with the
    ``"spawn"`` or ``"forkserver"`` method of :mod:`multiprocessing`.

    Examples
    --------
    >>> import warnings
    >>> from nwattn.exceptions import UnsafeForkWarning
    >>> warnings.filterwarnings("ignore", category=UnsafeForkWarning)
    >>> issubclass(UnsafeForkWarning, UserWarning)
    True
    """

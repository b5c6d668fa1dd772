"""Input validation shared by the low-level API and the estimators.

NumPy alone does the work: this module imports neither scikit-learn nor
SciPy, so that ``import nwattn.ops`` stays light. Every message names the
parameter it is about; complex, string, sparse and object input that is
not numeric is a :class:`TypeError`, everything else a
:class:`ValueError`.

Any object NumPy can convert is accepted (lists, pandas objects, PyTorch CPU
tensors, anything with ``__array__``); arrays that live on a GPU
(``__cuda_array_interface__``) and Dask arrays are left alone here, because
their own paths check them without copying them to the host.
"""

import numbers
import sys

import numpy as np

from ._device import is_device_array

FLOAT_DTYPES = (np.float64, np.float32)


def is_dask_array(X):
    """Whether ``X`` is a Dask array (without importing Dask when it is not loaded)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(X, da.Array)


def _is_sparse(X):
    """Whether ``X`` is a SciPy sparse matrix or array (without importing SciPy)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(X)


def _native(X, name=None):
    """Return ``X`` as an ndarray in native byte order (big-endian input works).

    GPU and Dask arrays come back unchanged. Anything else goes through
    :func:`numpy.asarray`: other libraries' dtypes (PyTorch's, pandas'
    extension types) have no NumPy ``kind`` to check, the converted array
    does.
    """
    if isinstance(X, np.ndarray):
        arr = X
    elif is_device_array(X) or is_dask_array(X):
        return X
    else:
        if _is_sparse(X):
            raise TypeError(f"{name or 'the input'} must be a dense array; sparse input is "
                            f"not supported (call .toarray() first)")
        try:
            arr = np.asarray(X)
        except (TypeError, ValueError) as exc:
            what = name or "the input"
            raise ValueError(f"{what} could not be converted to an array: {exc}") from None
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def check_numeric_kind(X, name):
    """Raise ``TypeError`` naming ``name`` for complex, string or object data."""
    dtype = getattr(X, "dtype", None)
    if not isinstance(dtype, np.dtype):
        X = _native(X, name)
        dtype = np.dtype(X.dtype)
    if dtype.kind == "c":
        raise TypeError(f"{name} must be real-valued; complex input is not supported")
    if dtype.kind in "USVMm":
        raise TypeError(f"{name} must be numeric, got an array of dtype {dtype}")
    if dtype.kind == "O":
        try:
            np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be numeric: {exc}") from None
    return X


_NUMERIC_KINDS = frozenset("biuf")


def _dtypes_of(X):
    """NumPy kinds of ``X``'s columns when they can be read without converting it, else None."""
    dtypes = getattr(X, "dtypes", None)  # pandas DataFrame: one dtype per column
    if dtypes is None or hasattr(dtypes, "kind"):  # (a Series has one, as its dtypes)
        dtypes = [getattr(X, "dtype", None) if dtypes is None else dtypes]
    try:
        kinds = [getattr(dt, "kind", None) for dt in dtypes]
    except TypeError:
        return None
    return None if any(not isinstance(k, str) for k in kinds) else kinds


def check_estimator_input(X, name):
    """Reject non-numeric input to an estimator with an error naming ``name``.

    scikit-learn's own checks let string arrays through to NumPy (a ufunc
    error that names no parameter) and do not say which argument was
    wrong. Nothing is converted or returned: ``X`` goes on to the
    estimator's validation as it is, so pandas column names are kept.

    Parameters
    ----------
    X : array_like or None
        The input; None, Dask arrays and GPU arrays are left to their own
        paths.
    name : str
        Parameter name for messages.

    Raises
    ------
    TypeError
        For strings or bytes, and objects that are not numbers (the type of
        NumPy's own conversion error, as scikit-learn's checks expect).
    ValueError
        For complex input (``"Complex data not supported"``, as
        scikit-learn words it), and objects that do not convert to float.

    Examples
    --------
    >>> from nwattn._validation import check_estimator_input
    >>> check_estimator_input(["a", "b"], "y")
    Traceback (most recent call last):
    ...
    TypeError: y must be numeric, got an array of dtype <U1
    """
    if X is None or is_dask_array(X) or is_device_array(X):
        return
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name} must be an array of numbers, got a string")
    kinds = _dtypes_of(X)
    if kinds is not None and _NUMERIC_KINDS.issuperset(kinds):
        return
    arr = _native(X, name)
    kind = arr.dtype.kind
    if kind == "c":
        raise ValueError(f"Complex data not supported: {name} must be real-valued")
    if kind in "USVMm":
        raise TypeError(f"{name} must be numeric, got an array of dtype {arr.dtype}")
    if kind == "O":
        try:
            np.asarray(arr, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{name} must be numeric: {exc}") from None


def _check_finite(X, name):
    """Raise ``ValueError`` naming ``name`` when ``X`` has a NaN or an infinity."""
    # One pass over the data in the common case: the sum is finite exactly
    # when every entry is, unless it overflows, and then the slow test says.
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sum(X)
    if np.isfinite(total):
        return
    if np.isnan(X).any():
        raise ValueError(f"Input {name} contains NaN.")
    if not np.isfinite(X).all():
        raise ValueError(f"Input {name} contains infinity or a value too large for "
                         f"dtype({X.dtype.name!r}).")


def _to_host(X, name):
    """A GPU or Dask array that reached a host-only argument, as an ndarray.

    Numba's device arrays and Dask arrays copy themselves (``__array__``);
    CuPy and PyTorch refuse implicit copies, and the message then says
    which argument has to be moved to the host.
    """
    try:
        return _native(np.asarray(X), name)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be a host (NumPy-convertible) array here; "
                        f"it could not be copied from its device: {exc}") from None


def _as_float(X, dtype):
    """``X`` as C-contiguous floats: kept when its dtype is among ``dtype``, else the first."""
    wanted = tuple(np.dtype(t) for t in (dtype if isinstance(dtype, (tuple, list)) else (dtype,)))
    target = X.dtype if X.dtype in wanted else wanted[0]
    if X.dtype.kind == "O":
        X = np.asarray(X, dtype=np.float64)
    with np.errstate(over="ignore"):
        # A value beyond float32's range becomes inf here, and is reported
        # by the finiteness test as too large for the dtype.
        return np.ascontiguousarray(X, dtype=target)


def check_float_array(X, name, *, ndim=2, dtype=FLOAT_DTYPES, min_rows=1, allow_1d=False):
    """Validate an array and return it C-contiguous, native, float32 or float64.

    Parameters
    ----------
    X : array_like
        Input: anything :func:`numpy.asarray` converts. A GPU array is
        copied to the host when its library allows an implicit copy
        (Numba's device arrays do), else refused with a ``TypeError``.
    name : str
        Parameter name for messages.
    ndim : {1, 2}
        Required number of dimensions (``allow_1d`` also accepts 1-D when
        ``ndim=2``).
    dtype : dtype or tuple of dtypes
        Accepted float dtypes; other input is converted to the first.
    min_rows : int
        Minimum length of the first axis.
    allow_1d : bool
        Accept a 1-D array where 2-D is asked for.

    Returns
    -------
    ndarray
        The validated array (``X`` itself when nothing had to change).

    Raises
    ------
    TypeError
        For strings, complex numbers, non-numeric objects or sparse input.
    ValueError
        For a wrong number of dimensions, too few rows, no column, a NaN
        or an infinity.

    Examples
    --------
    >>> from nwattn._validation import check_float_array
    >>> check_float_array([[1, 2], [3, 4]], "X")
    array([[1., 2.],
           [3., 4.]])
    >>> check_float_array([[1.0, float("nan")]], "X")
    Traceback (most recent call last):
    ...
    ValueError: Input X contains NaN.
    """
    if X is None:
        raise ValueError(f"{name} is required, got None")
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name} must be an array of numbers, got a string")
    X = _native(X, name)
    if not isinstance(X, np.ndarray):
        X = _to_host(X, name)
    X = check_numeric_kind(X, name)
    arr_ndim = X.ndim
    want_2d = ndim == 2 and not (allow_1d and arr_ndim == 1)
    if arr_ndim > 2 or (ndim == 1 and arr_ndim != 1) or (want_2d and arr_ndim != 2):
        expected = "1-D" if ndim == 1 else ("1-D or 2-D" if allow_1d else "2-D")
        raise ValueError(f"{name} must be {expected}, got an array of shape {X.shape}")
    if X.shape[0] < min_rows:
        raise ValueError(f"Found array with {X.shape[0]} sample(s) (shape={X.shape}) while a "
                         f"minimum of {min_rows} is required by {name}.")
    if want_2d and X.shape[1] < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum "
                         f"of 1 is required by {name}.")
    X = _as_float(X, dtype)
    _check_finite(X, name)
    return X


def check_bandwidth(bandwidth, n_features, dtype, *, name="bandwidth"):
    """Validate a positive scalar or one positive value per feature.

    Returns
    -------
    ndarray of shape (n_features,)
        The bandwidth broadcast to every feature, in ``dtype``.
    """
    if isinstance(bandwidth, (str, bytes)):
        raise TypeError(f"{name} must be a positive number or an array of them, got {bandwidth!r}")
    if isinstance(bandwidth, numbers.Number) and not isinstance(bandwidth, bool):
        if isinstance(bandwidth, complex):
            raise TypeError(f"{name} must be real, got {bandwidth!r}")
        h = np.full(n_features, float(bandwidth))
    else:
        h = check_numeric_kind(_native(bandwidth), name)
        h = np.asarray(h, dtype=np.float64)
        if h.ndim == 0:
            h = np.full(n_features, float(h))
        elif h.ndim != 1 or h.shape[0] != n_features:
            raise ValueError(
                f"{name} must be a scalar or have one value per feature "
                f"({n_features}), got shape {h.shape}"
            )
    if not np.all(np.isfinite(h)) or not np.all(h > 0):
        raise ValueError(f"{name} must be positive and finite, got {bandwidth!r}")
    return h.astype(dtype)


def check_degree(degree, max_degree=2):
    """Validate the degree of a local polynomial (0 to ``max_degree``) and return it as an int."""
    if isinstance(degree, bool) or not isinstance(degree, (numbers.Integral, np.integer)) or not (
            0 <= degree <= max_degree):
        allowed = ", ".join(str(g) for g in range(max_degree)) + f" or {max_degree}"
        raise ValueError(f"degree must be {allowed}, got {degree!r}")
    return int(degree)


def check_key_weight(key_weight, n_keys, dtype, *, name="key_weight"):
    """Validate non-negative finite key weights, not all zero, one per key."""
    w = check_float_array(key_weight, name, ndim=1, dtype=np.float64)
    if w.shape[0] != n_keys:
        raise ValueError(f"{name} must have one entry per key ({n_keys}), got {w.shape[0]}")
    if np.any(w < 0):
        raise ValueError(f"{name} must be non-negative")
    if not np.any(w > 0):
        raise ValueError(f"{name} must have at least one positive entry")
    return w.astype(dtype)


def unit_weights(w):
    """Weights divided by their largest, so that only their ratios remain.

    Weighted means, variances and the effective sample size
    ``(sum w)**2 / sum w**2`` do not depend on the scale of the weights, but
    their sums overflow from about 1e154 (squares) or 1e308, and underflow
    below 1e-154; after the division the largest weight is 1 and the sums
    stay between 1 and ``n``.

    Parameters
    ----------
    w : ndarray of shape (n,) or None
        Non-negative weights with at least one positive entry.

    Returns
    -------
    ndarray of shape (n,) or None
        ``w / w.max()`` in float64, or None when ``w`` is None.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn._validation import unit_weights
    >>> unit_weights(np.array([1e300, 4e300]))
    array([0.25, 1.  ])
    """
    if w is None:
        return None
    w = np.asarray(w, dtype=np.float64)
    return w / w.max()


def common_float_dtype(*arrays):
    """float32 when every array is float32, otherwise float64."""
    if all(a.dtype == np.float32 for a in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def check_matching_shapes(Q=None, K=None, V=None, *, exclude_self=False):
    """Check that queries, keys and values fit together, by their shapes alone.

    Works on anything with a ``shape`` (NumPy, Dask and GPU arrays); any
    argument may be omitted.
    """
    if Q is not None and K is not None and Q.shape[1] != K.shape[1]:
        raise ValueError(
            f"Q and K must have the same number of features, got {Q.shape[1]} and {K.shape[1]}"
        )
    if K is not None and V is not None and V.shape[0] != K.shape[0]:
        raise ValueError(
            f"K and V must have the same number of rows, got {K.shape[0]} and {V.shape[0]}"
        )
    if exclude_self and Q is not None and K is not None and Q.shape[0] != K.shape[0]:
        raise ValueError(
            "exclude_self=True needs the queries to be the keys (Q is K); got "
            f"{Q.shape[0]} queries and {K.shape[0]} keys"
        )

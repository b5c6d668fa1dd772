"""Input validation shared by the low-level API and the estimators.

scikit-learn's :func:`~sklearn.utils.check_array` does the work; this module
adds the parameter name to every message and the checks it does not make
(complex and string input as :class:`TypeError`, bandwidth arrays).
"""

import numbers
import sys

import numpy as np
from sklearn.utils import check_array

FLOAT_DTYPES = (np.float64, np.float32)


def is_dask_array(X):
    """Whether ``X`` is a Dask array (without importing Dask when it is not loaded)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(X, da.Array)


def _native(X):
    """Return ``X`` as an ndarray in native byte order (big-endian input works)."""
    X = np.asarray(X) if not hasattr(X, "dtype") else X
    dtype = getattr(X, "dtype", None)
    if isinstance(X, np.ndarray) and dtype.byteorder not in ("=", "|") and not dtype.isnative:
        X = X.astype(dtype.newbyteorder("="))
    return X


def check_numeric_kind(X, name):
    """Raise ``TypeError`` naming ``name`` for complex, string or object data."""
    dtype = getattr(X, "dtype", None)
    if dtype is None:
        X = np.asarray(X)
        dtype = X.dtype
    if dtype.kind == "c":
        raise TypeError(f"{name} must be real-valued; complex input is not supported")
    if dtype.kind in "USOV" and dtype.kind != "O":
        raise TypeError(f"{name} must be numeric, got an array of dtype {dtype}")
    if dtype.kind == "O":
        try:
            np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be numeric: {exc}") from None
    return X


def check_float_array(X, name, *, ndim=2, dtype=FLOAT_DTYPES, min_rows=1, allow_1d=False):
    """Validate an array and return it C-contiguous, native, float32 or float64.

    Parameters
    ----------
    X : array_like
        Input.
    name : str
        Parameter name for messages.
    ndim : {1, 2}
        Required number of dimensions (``allow_1d`` also accepts 1-D when
        ``ndim=2``).
    dtype : dtype or tuple of dtypes
        Passed to :func:`sklearn.utils.check_array`.
    min_rows : int
        Minimum length of the first axis.
    allow_1d : bool
        Accept a 1-D array where 2-D is asked for.
    """
    if X is None:
        raise ValueError(f"{name} is required, got None")
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name} must be an array of numbers, got a string")
    X = check_numeric_kind(_native(X), name)
    arr_ndim = np.ndim(X)
    want_2d = ndim == 2 and not (allow_1d and arr_ndim == 1)
    if arr_ndim > 2 or (ndim == 1 and arr_ndim != 1) or (want_2d and arr_ndim != 2):
        expected = "1-D" if ndim == 1 else ("1-D or 2-D" if allow_1d else "2-D")
        raise ValueError(f"{name} must be {expected}, got an array of shape {np.shape(X)}")
    try:
        X = check_array(
            X,
            dtype=dtype,
            order="C",
            ensure_2d=want_2d,
            ensure_all_finite=True,
            ensure_min_samples=min_rows,
            ensure_min_features=1 if want_2d else 0,
            input_name=name,
        )
    except ValueError as exc:
        msg = str(exc)
        if name not in msg:
            msg = f"{name}: {msg}"
        raise ValueError(msg) from None
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

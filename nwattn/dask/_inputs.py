"""Validation of the arguments of :mod:`nwattn.dask` and the layout of its graphs."""

import functools
import numbers

import numpy as np

import dask
import dask.array as da

from .. import _validation as _v
from .. import pruning
from .._device import DEVICES
from ..kernels import get_kernel


def current_client():
    """The distributed client that will run the graph, or None."""
    try:
        from distributed import default_client
        client = default_client()
    except (ImportError, ValueError):  # distributed absent, or no client
        return None
    return client if dask.base.get_scheduler() == client.get else None


def as_dask(X, name, *, ndim=2, allow_1d=False):
    """Validate ``X`` and return it as a Dask array.

    A Dask array is checked for shape and dtype only (its values are checked
    chunk by chunk when computed). Anything else is validated now and
    becomes a one-chunk Dask array; under a distributed client its data is
    scattered to every worker once.
    """
    if isinstance(X, da.Array):
        if X.dtype.kind not in "fiub":
            raise TypeError(f"{name} must be a real numeric array, got dtype {X.dtype}")
        ok_ndims = (1, 2) if allow_1d else (ndim,)
        if X.ndim not in ok_ndims:
            expected = "1-D or 2-D" if allow_1d else f"{ndim}-D"
            raise ValueError(f"{name} must be {expected}, got an array of shape {X.shape}")
        if any(np.isnan(c) for c in X.shape):
            raise ValueError(
                f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() first"
            )
        if X.shape[0] == 0:
            raise ValueError(f"{name} must have at least one row, got shape {X.shape}")
        return X
    X = _v.check_float_array(X, name, ndim=ndim, allow_1d=allow_1d)
    client = current_client()
    source = client.scatter(X, broadcast=True) if client is not None else X
    return da.from_delayed(dask.delayed(source), shape=X.shape, dtype=X.dtype)


def check_device(device):
    """Validate the name of ``device`` on the client; the workers resolve it.

    Each pooling task passes ``device`` on to
    :func:`nwattn.ops.attention_pool_state` on its worker, so ``"cuda"``
    runs on the workers' GPUs (the client needs none) and ``"auto"``
    chooses for every block by its size.
    """
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    return device.lower()


def check_algorithm(algorithm, kernel=None, device="cpu"):
    """Validate ``algorithm`` on the client: ``"auto"``, ``"brute"`` or ``"tree"``, lower case.

    Each (query block, key chunk) task passes the string on to the
    in-memory computation, which orders the keys of its own chunk and
    prunes the tiles of that chunk. A :class:`~nwattn.pruning.KeyTree`
    orders one whole array of keys in one row order, which no chunk of a
    Dask array is, so it is refused. ``"tree"`` with an attention score
    (``kernel``) or with ``device="cuda"`` could only fail in every task,
    so it is refused here, when the graph is built, with the in-memory
    message.
    """
    if isinstance(algorithm, pruning.KeyTree):
        raise ValueError("algorithm must be 'auto', 'brute' or 'tree' on Dask arrays, got a "
                         "KeyTree: each task orders the keys of its own chunk")
    algorithm = pruning.check_algorithm(algorithm)
    if algorithm == "tree":
        if kernel is not None and not get_kernel(kernel).is_distance:
            raise ValueError(f"algorithm='tree' prunes smoothing kernels only; the score "
                             f"{get_kernel(kernel).name!r} takes algorithm='brute' or 'auto'")
        if device == "cuda":
            raise ValueError("algorithm='tree' runs on the CPU only: use device='cpu', or "
                             "algorithm='brute'")
    return algorithm


def check_split_every(split_every):
    """The fan-in of the merge trees: ``split_every``, or Dask's setting, or 8."""
    if split_every is None:
        return int(dask.config.get("split_every", 8) or 8)
    if (isinstance(split_every, bool) or not isinstance(split_every, numbers.Integral)
            or split_every < 2):
        raise ValueError(f"split_every must be an integer >= 2, got {split_every!r}")
    return int(split_every)


def check_degree(degree):
    """The degree of a local polynomial: 0, 1 or 2."""
    if isinstance(degree, bool) or not isinstance(degree, numbers.Integral) or not (
            0 <= degree <= 2):
        raise ValueError(f"degree must be 0, 1 or 2, got {degree!r}")
    return int(degree)


def starts(chunks):
    """Global index of the first row of every chunk."""
    return np.concatenate([[0], np.cumsum(chunks)[:-1]]).astype(np.int64)


def blocks(X):
    """The chunks of a Dask array along its rows, as a list of Delayed."""
    # Unoptimised: an optimised graph drops the scattered futures it refers
    # to, and the cluster would then release their data before the compute.
    return list(X.to_delayed(optimize_graph=False).ravel())


def prepare(Q, K, V, kernel, bandwidth, key_weight, exclude_self, discrete=None):
    """Validate the arguments of a pooling and align the Dask arrays.

    Returns the queries and keys with all features in one chunk, the values
    as (m, p) with rows chunked like the keys, the key weights likewise (or
    None), whether the values were 1-D, and the computation's dtype. With
    ``discrete``, the bandwidth's discrete parameters are checked here and
    the category codes by each task, on its own chunk.
    """
    get_kernel(kernel)
    Q = as_dask(Q, "Q")
    K = as_dask(K, "K")
    V = as_dask(V, "V", allow_1d=True)
    _v.check_matching_shapes(Q, K, V, exclude_self=exclude_self)
    dtype = _v.common_float_dtype(Q, K, V)
    if discrete is None:
        _v.check_bandwidth(bandwidth, Q.shape[1], dtype)
    else:
        discrete.check_columns(Q.shape[1])
        discrete.split_bandwidth(bandwidth, Q.shape[1])
    values_1d = V.ndim == 1
    V2 = V.reshape(V.shape[0], 1) if values_1d else V
    Q = Q.rechunk({1: -1})
    K = K.rechunk({1: -1})
    V2 = V2.rechunk({0: K.chunks[0], 1: -1})
    W = None
    if key_weight is not None:
        W = as_dask(key_weight, "key_weight", ndim=1)
        if W.shape[0] != K.shape[0]:
            raise ValueError(
                f"key_weight must have one entry per key ({K.shape[0]}), got {W.shape[0]}"
            )
        W = W.rechunk({0: K.chunks[0]})
    return Q, K, V2, W, values_1d, dtype


def _max_with(x, axis=None, keepdims=False, *, initial):
    return np.max(x, axis=axis, keepdims=keepdims, initial=initial)


def largest(x, *, initial=-np.inf):
    """Lazy largest entry of a Dask array, ``initial`` when it has none.

    Dask's own ``max`` (and ``argmax``) fail on a chunk of zero rows, which
    the integration accepts everywhere (a block of nothing is a valid block);
    this reduction starts every chunk from ``initial`` instead.
    """
    op = functools.partial(_max_with, initial=initial)
    return da.reduction(x, op, op, dtype=x.dtype)


def training_set(X, y, sample_weight):
    """Validate a training set given as Dask (or in-memory) arrays and align its chunks.

    Returns ``X`` (float, features in one chunk), ``y`` as given (1-D or
    2-D, rows chunked like ``X``), ``Y2`` (``y`` as 2-D float64) and the
    sample weights as float64 divided by their largest (or None). Values
    are checked later, by
    reductions or by the tasks.
    """
    X = as_dask(X, "X")
    y = as_dask(y, "y", allow_1d=True)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if y.dtype not in (np.float32, np.float64):
        y = y.astype(np.float64)
    if y.shape[0] != X.shape[0]:
        raise ValueError(
            f"X and y must have the same number of rows, got {X.shape[0]} and {y.shape[0]}"
        )
    X = X.rechunk({1: -1})
    y = y.rechunk({0: X.chunks[0], **({1: -1} if y.ndim == 2 else {})})
    W = None
    if sample_weight is not None:
        W = as_dask(sample_weight, "sample_weight", ndim=1).astype(np.float64)
        if W.shape[0] != X.shape[0]:
            raise ValueError(
                f"sample_weight must have one entry per sample ({X.shape[0]}), "
                f"got {W.shape[0]}"
            )
        W = W.rechunk({0: X.chunks[0]})
        # Divided by their largest, as in memory: every result depends on
        # the weights' ratios only, and sums of weights from about 1e154 on
        # (squares) or 1e307 (the weights themselves) would overflow. An
        # all-zero, negative or non-finite set is left for the checks to name.
        wmax = largest(W)
        W = W / da.where(wmax > 0, wmax, 1.0)
    Y2 = y.reshape(y.shape[0], -1).astype(np.float64)
    return X, y, Y2, W

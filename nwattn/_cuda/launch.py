"""Host side of the GPU path: transfers, launch sizes, device inputs.

Every function takes the arrays prepared as for the CPU kernels (queries and
transposed keys divided by the bandwidth, transposed centred values, log key
weights), either as NumPy arrays, which are copied to the GPU, or as device
arrays (anything with ``__cuda_array_interface__``), which are used in place.
Results are Numba device arrays; the caller decides whether they go back to
the host. Launch sizes are read from :mod:`nwattn._config` at every call.
"""

import warnings

import numpy as np
from numba import cuda

from .. import _config
from .._layout import pool_layout
from .._plan import plan_splits
from .._device import is_device_array, simulator_enabled
from ..kernels import ADDITIVE, DISTANCE, DOT
from . import kernels as _k

# numba-cuda warns at every launch of fewer than 128 blocks. A small
# problem always makes one (its size, not a wrong launch, sets the grid),
# so the warning would repeat at every call; the filter matches that one
# message only (numba-cuda's NumbaPerformanceWarning is its own class, not
# numba's, hence the message).
def quiet_low_occupancy():
    """Ignore numba-cuda's low-occupancy warning (installed when this module loads)."""
    warnings.filterwarnings(
        "ignore", message=r"Grid size \d+ will likely result in GPU under-utilization")


quiet_low_occupancy()

# Largest grid size in y and z on every CUDA device.
_GRID_YZ_MAX = 65535
# Blocks of the kernels that give a block to each row (and loop over the
# rest): enough to fill any GPU many times over.
_GRID_X_ROWS = 65535
# Rows per block of the column sums: each block's threads then add a few
# hundred entries each before their sums are combined.
_COLUMN_SUM_ROWS = 1 << 16


def as_device(x):
    """A Numba device array for ``x``: in place for device arrays, a copy for host arrays."""
    if is_device_array(x):
        if hasattr(x, "__cuda_array_interface__") and not cuda.devicearray.is_cuda_ndarray(x):
            return cuda.as_cuda_array(x)
        return x
    return cuda.to_device(np.ascontiguousarray(x))


def _blocks(count, threads):
    return max(1, -(-count // threads))


def _key(dtype):
    return np.dtype(dtype).name


_TOOLKIT_HINT = ("install them with pip install 'numba-cuda[cu12]' (or [cu13], to match the "
                 "driver)")


def toolkit_error(exc):
    """The one clear error for a failure of the CUDA driver or toolkit, or None.

    numba-cuda reports a missing or unusable piece from deep inside its
    compiler or driver bindings, several of them as an ``ImportError``
    (a driver that does not work included). This names the piece: the
    driver, the NVVM compiler, NVRTC, libdevice, or a toolkit newer than
    the driver (whose PTX the driver cannot load). numba-cuda's error
    classes are recognised by name: the modules holding them have moved
    between its releases.
    """
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    message = str(exc)
    missing = isinstance(exc, (ImportError, OSError))

    def why(text):
        return RuntimeError(f"the GPU path cannot run its kernels: {text} ({exc})")

    if "CudaSupportError" in kinds:
        return why("the CUDA driver cannot be used (is an NVIDIA driver installed and a GPU "
                   "visible?)")
    if "UNSUPPORTED_PTX_VERSION" in message:
        return why("the CUDA toolkit is newer than the driver, which cannot load its code; "
                   "install numba-cuda[cu12] for a driver of CUDA 12, update the driver, or "
                   "let nvJitLink link the kernels (pip install nvidia-nvjitlink)")
    if "NvrtcSupportError" in kinds or (missing and "nvrtc" in message.lower()):
        return why(f"the CUDA toolkit's NVRTC library was not found; {_TOOLKIT_HINT}")
    if "NvvmSupportError" in kinds or (missing and "nvvm" in message.lower()):
        return why(f"the CUDA toolkit's NVVM compiler was not found; {_TOOLKIT_HINT}")
    if missing and "libdevice" in message.lower():
        return why(f"the CUDA toolkit's libdevice was not found; {_TOOLKIT_HINT}")
    if isinstance(exc, ImportError):
        return why(f"a part of the CUDA toolkit could not be loaded; {_TOOLKIT_HINT}")
    return None


def _launch(kernel, grid, block, *args):
    """Compile (first time) and launch ``kernel``; name a missing driver or toolkit piece.

    numba-cuda needs the NVVM compiler, NVRTC and libdevice of a CUDA
    toolkit, which the driver does not ship; without one of them (or with
    a toolkit the driver is too old for) the first compilation or launch
    fails deep inside numba-cuda: :func:`toolkit_error` says which. Any
    other error goes through unchanged.
    """
    try:
        kernel[grid, block](*args)
    except Exception as exc:
        err = toolkit_error(exc)
        if err is None:
            raise
        raise err from exc


def _score_vector(family, wv, dtype):
    """The additive score's vector on the device; an empty one for the other scores."""
    if family == ADDITIVE:
        # The additive score has parameters besides the inputs; without them
        # refusing beats silently computing something else.
        if wv is None:
            raise ValueError("the additive score needs its vector w_score on the GPU")
        return as_device(np.asarray(wv, dtype=dtype) if not is_device_array(wv) else wv)
    if family not in (DISTANCE, DOT):
        raise ValueError("this score has no GPU implementation; use device='cpu'")
    return as_device(np.empty(0, dtype))


def pairwise(Qs, KT, logw, family, code, scale, wv=None):
    """Device (n, m) matrix of the scores of every query against every key.

    ``wv`` is the additive score's vector (family ``ADDITIVE`` only).
    """
    Qd, KTd, lwd = as_device(Qs), as_device(KT), as_device(logw)
    dtype = np.dtype(Qd.dtype)
    wvd = _score_vector(family, wv, dtype)
    n, d = Qd.shape
    m = KTd.shape[1]
    out = cuda.device_array((n, m), dtype)
    kernel = _k.pairwise_kernel(_key(dtype), d, family, code, lwd.shape[0] > 0)
    threads = _config.CUDA_SIMPLE_THREADS
    grid = (_blocks(m, threads), min(n, _GRID_YZ_MAX))
    _launch(kernel, grid, threads, Qd, KTd, lwd, dtype.type(scale), wvd, out)
    return out


def softmax(S):
    """Device row-wise softmax of the 2-D ``S`` (host or device)."""
    Sd = as_device(S)
    dtype = np.dtype(Sd.dtype)
    out = cuda.device_array(Sd.shape, dtype)
    threads = _config.CUDA_SIMPLE_THREADS
    # A block per row; blocks stride over the rows beyond the grid's limit.
    blocks = min(Sd.shape[0], _GRID_X_ROWS)
    _launch(_k.softmax_kernel(_key(dtype), threads), blocks, threads, Sd, out)
    return out


def top_k(S, k, self_shift):
    """Device ``(indices, weights)``, each (n, k), of the ``k`` largest softmax weights of each row of ``S``.

    ``self_shift``: row ``i`` leaves out column ``i + self_shift`` (at least
    the number of columns: none). See :func:`~nwattn._cuda.kernels.top_k_kernel`.
    """
    Sd = as_device(S)
    dtype = np.dtype(Sd.dtype)
    n = Sd.shape[0]
    idx = cuda.device_array((n, k), np.int64)
    w = cuda.device_array((n, k), dtype)
    threads = _config.CUDA_SIMPLE_THREADS
    _launch(_k.top_k_kernel(_key(dtype), threads), min(n, _GRID_X_ROWS), threads, Sd,
            np.int64(k), np.int64(self_shift), idx, w)
    return idx, w


def tile_size(d, value_chunk, itemsize):
    """Keys per shared-memory tile: the configured tile, shrunk to the shared-memory budget."""
    per_key = (d + value_chunk + 1) * itemsize
    tile = min(_config.CUDA_KEY_TILE, _config.CUDA_SHARED_BYTES // per_key)
    if tile < 1:
        raise ValueError(
            f"the GPU pooling kernel holds at most {_config.CUDA_SHARED_BYTES // itemsize - 2} "
            f"features per key in shared memory; got {d}. Use device='cpu'."
        )
    return tile


def queries_per_thread(features, width):
    """Queries per thread of the pooling kernel for queries of ``features`` and states of ``width``.

    ``CUDA_QUERIES_PER_THREAD``, fewer when their features and states would
    take more than ``CUDA_QUERY_REGISTERS`` registers (values of the dtype).

    Examples
    --------
    >>> from nwattn._cuda.launch import queries_per_thread
    >>> queries_per_thread(3, 17), queries_per_thread(8, 17), queries_per_thread(64, 17)
    (4, 3, 1)
    """
    per_query = max(1, features + width)
    return max(1, min(_config.CUDA_QUERIES_PER_THREAD, _config.CUDA_QUERY_REGISTERS // per_query))


def discrete_arrays(discrete, dtype):
    """The discrete features' ``(QC, KCT, LT)`` on the device, or placeholders.

    ``discrete`` is None or the host tuple ``(QC, KCT, LT, DT)`` of
    :mod:`nwattn._cpu.discrete` (``DT`` is not used): the codes travel as
    int32, the tables in ``dtype``. Without discrete features the kernels
    take 1-element arrays they never read (their loops run zero times).
    """
    if discrete is None:
        # Allocated, never filled: no copy from the host for arrays nobody reads.
        return (cuda.device_array((1, 1), np.int32),
                cuda.device_array((1, 1), np.int32),
                cuda.device_array((1, 1, 1), dtype))
    return (cuda.to_device(np.ascontiguousarray(discrete[0], dtype=np.int32)),
            cuda.to_device(np.ascontiguousarray(discrete[1], dtype=np.int32)),
            cuda.to_device(np.ascontiguousarray(discrete[2], dtype=dtype)))


def pool(Qs, KT, VT, VT2, logw, family, code, scale, self_shift, wv=None, discrete=None):
    """Device counterpart of the CPU backend's ``pool``.

    Returns ``(max, packed)`` device arrays, ``packed`` laid out by
    :func:`nwattn._layout.pool_layout` (squares only when ``VT2`` has rows). ``VT2`` is only a flag here: the kernel squares
    the values it already holds in shared memory. ``wv`` is the additive
    score's vector (family ``ADDITIVE``, with ``Qs`` and ``KT`` the
    projected queries and keys), as in
    the CPU backend's ``learned_pool``. ``discrete``: None, or the host
    tuple ``(QC, KCT, LT, DT)`` of :mod:`nwattn._cpu.discrete` (``DT`` is
    not used); the codes travel as int32, the tables in the dtype.
    """
    Qd, lwd = as_device(Qs), as_device(logw)
    # The kernel stages keys and values a row per key (see pool_kernel).
    Kd, Vd = rows(KT), rows(VT)
    dtype = np.dtype(Qd.dtype)
    wvd = _score_vector(family, wv, dtype)
    n, d = Qd.shape
    m = Kd.shape[0]
    p = Vd.shape[1]
    with_sq = VT2.shape[0] > 0
    threads = _config.CUDA_THREADS_PER_BLOCK
    chunk = max(1, min(_config.CUDA_VALUE_CHUNK, p))
    n_disc = 0 if discrete is None else discrete[0].shape[1]
    # The key codes share the tile's shared memory: counted as features.
    tile = tile_size(d + n_disc, chunk, dtype.itemsize)
    qpt = queries_per_thread(d + n_disc, pool_layout(chunk, with_sq).width)
    n_split, split_size = plan_splits(n, m, threads * qpt, _config.CUDA_TARGET_BLOCKS,
                                      _config.CUDA_MIN_SPLIT_KEYS)
    n_chunks = -(-p // chunk)
    if n_split > _GRID_YZ_MAX or n_chunks > _GRID_YZ_MAX:
        raise ValueError(f"too many value columns for the GPU kernel: {p}")
    QCd, KCTd, LTd = discrete_arrays(discrete, dtype)
    layout = pool_layout(p, with_sq)
    out_max = cuda.device_array((n_split, n), dtype)
    out_acc = cuda.device_array((n_split, n, layout.width), dtype)
    exclude_self = -n < self_shift < m  # some query meets itself among the keys
    kernel = _k.pool_kernel(_key(dtype), d, family, code, lwd.shape[0] > 0, with_sq,
                            bool(exclude_self), threads, tile, chunk, n_disc, qpt)
    grid = (_blocks(n, threads * qpt), n_split, n_chunks)
    _launch(kernel, grid, threads, Qd, Kd, Vd, lwd, dtype.type(scale), wvd,
            np.int64(self_shift), np.int64(split_size), QCd, KCTd, LTd, out_max, out_acc)
    if n_split > 1:
        simple = _config.CUDA_SIMPLE_THREADS
        _launch(_k.merge_kernel, _blocks(n, simple), simple, out_max, out_acc,
                cuda.to_device(layout.powers))
    return out_max[0], out_acc[0]


def rows(XT):
    """The device (m, k) array of the transposed (k, m) ``XT``, host or device, row-major.

    A host array is transposed on the host before its copy; a device array
    by :func:`~nwattn._cuda.kernels.transpose_kernel`.
    """
    if not is_device_array(XT):
        return cuda.to_device(np.ascontiguousarray(np.asarray(XT).T))
    XTd = as_device(XT)
    k, m = XTd.shape
    out = cuda.device_array((m, k), XTd.dtype)
    threads = _config.CUDA_SIMPLE_THREADS
    _launch(_k.transpose_kernel, _blocks(m, threads), threads, XTd, out)
    return out


def finalize(packed, center, values_1d, with_std):
    """Predictions (and std) of packed pooling states on the device.

    Returns ``(pred, std or None, n_empty)``.
    """
    dtype = np.dtype(packed.dtype)
    p = len(center)
    n = packed.shape[0]
    layout = pool_layout(p, with_std)
    snorm = packed[:, 0]
    sacc = packed[:, layout.columns("acc")]
    ssq = packed[:, layout.columns("sq")] if with_std else None
    shape = (n,) if values_1d else (n, p)
    pred = cuda.device_array(shape, dtype)
    std = cuda.device_array(shape if with_std else (0,) * len(shape), dtype)
    n_empty = cuda.to_device(np.zeros(1, np.int64))
    threads = _config.CUDA_SIMPLE_THREADS
    if ssq is None:
        ssq = cuda.device_array((n, 0), dtype)
    kernel = _k.finalize_kernel(_key(dtype), bool(values_1d), bool(with_std))
    _launch(kernel, _blocks(n, threads), threads, snorm, sacc, ssq, as_device(center),
            pred, std, n_empty)
    return pred, (std if with_std else None), int(n_empty.copy_to_host()[0])


# --- device inputs: validation and preparation without a copy to the host ---


def device_ordinal(xd):
    """Ordinal of the GPU whose memory holds the device array ``xd``, or None where it cannot be told.

    Asked of the driver by the array's address (``cuPointerGetAttribute``):
    an array of another library carries no device in its
    ``__cuda_array_interface__``. None under the simulator, for an empty
    array, or where the driver cannot answer (the check it serves is then
    skipped, as before it existed).
    """
    if simulator_enabled():
        return None
    try:
        from numba.cuda.cudadrv import driver as drv

        ptr = xd.__cuda_array_interface__["data"][0]
        if not ptr:
            return None
        attr = drv.binding.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
        return int(drv.driver.cuPointerGetAttribute(attr, drv.binding.CUdeviceptr(ptr)))
    except Exception:  # an older driver or binding: no answer, no check
        return None


def check_current_gpu(xd, name):
    """Refuse a device array that lives on another GPU than the current one.

    Kernels run on the current GPU; an array of another one would be read
    through its address as if it were local.
    """
    owner = device_ordinal(xd)
    if owner is None:
        return
    current = cuda.get_current_device().id
    if owner != current:
        raise ValueError(
            f"{name} lives on GPU {owner} but the current GPU is {current}: call inside "
            f"'with numba.cuda.gpus[{owner}]:', or copy {name} to GPU {current}"
        )


def check_device_array(x, name, allow_1d=False, allow_neg_inf=False):
    """Validate a device array's metadata and values; return it as a Numba device array.

    Only two numbers per array come back to the host (the count of
    non-finite entries and the largest magnitude); the data stay on the GPU.
    Returns ``(array, max_abs)``.
    """
    xd = as_device(x)
    check_current_gpu(xd, name)
    dtype = np.dtype(xd.dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} on the GPU must be float32 or float64, got dtype {dtype}")
    if xd.ndim == 1 and allow_1d:
        xd = xd.reshape(xd.shape[0], 1)
    if xd.ndim != 2:
        expected = "1-D or 2-D" if allow_1d else "2-D"
        raise ValueError(f"{name} must be {expected}, got an array of shape {x.shape}")
    if xd.shape[0] < 1 or xd.shape[1] < 1:
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    stats = cuda.to_device(np.zeros(2, np.float64))
    threads = _config.CUDA_SIMPLE_THREADS
    _launch(_k.stats_kernel, _blocks(xd.shape[0], threads), threads, xd, bool(allow_neg_inf),
            stats)
    bad, big = stats.copy_to_host()
    if bad:
        what = "NaN or +inf" if allow_neg_inf else "NaN or infinity"
        raise ValueError(f"{name} contains {what}")
    return xd, float(big)


def scaled(X, h, transpose):
    """``X / h`` on the device, transposed to (d, n) when ``transpose``."""
    n, d = X.shape
    out = cuda.device_array((d, n) if transpose else (n, d), X.dtype)
    threads = _config.CUDA_SIMPLE_THREADS
    _launch(_k.scale_kernel, _blocks(n, threads), threads, X, as_device(h), out,
            bool(transpose))
    return out


def columns(X, cols):
    """Columns ``cols`` of the device array ``X``, gathered into a new (n, len(cols)) one."""
    cols = np.asarray(cols, dtype=np.int64)
    out = cuda.device_array((X.shape[0], cols.shape[0]), X.dtype)
    threads = _config.CUDA_SIMPLE_THREADS
    _launch(_k.columns_kernel, _blocks(X.shape[0], threads), threads, X, cuda.to_device(cols),
            out)
    return out


def column_mean(V):
    """Mean of every column of the device array ``V``, as a host float64 array (p values)."""
    m, p = V.shape
    threads = _config.CUDA_SIMPLE_THREADS
    per_block = max(threads, _COLUMN_SUM_ROWS)
    blocks = _blocks(m, per_block)
    partial = cuda.device_array((blocks, p), np.float64)
    _launch(_k.column_sum_kernel(threads), blocks, threads, V, np.int64(per_block), partial)
    out = cuda.device_array(p, np.float64)
    _launch(_k.partial_sum_kernel, _blocks(p, threads), threads, partial, out)
    return out.copy_to_host() / m


def centred(V, center):
    """``(V - center).T`` on the device."""
    m, p = V.shape
    VT = cuda.device_array((p, m), V.dtype)
    threads = _config.CUDA_SIMPLE_THREADS
    _launch(_k.centre_kernel, _blocks(m, threads), threads, V, as_device(center), VT)
    return VT


def to_host(x):
    """A NumPy copy of a device array."""
    return x.copy_to_host()

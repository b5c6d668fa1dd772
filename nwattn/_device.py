"""Choice of the compute device: ``"cpu"``, ``"cuda"`` or ``"auto"``.

Nothing here imports ``numba.cuda`` unless the GPU is actually wanted, so
``import nwattn`` and the CPU path work without numba-cuda, a driver or a
GPU. Asking for the GPU without one raises a single :class:`RuntimeError`
naming what is missing: the package, the driver or the device.
"""

import ctypes
import ctypes.util
import importlib.util
import os
import sys
from functools import lru_cache

from . import _config

DEVICES = ("cpu", "cuda", "auto")

_INSTALL_HINT = "install it with: pip install 'nwattn[cuda]'"

# cuInit's status when the driver works but sees no device.
_CUDA_ERROR_NO_DEVICE = 100


def is_device_array(x):
    """Whether ``x`` lives on a GPU (CuPy, PyTorch, Numba device arrays...).

    Recognises the ``__cuda_array_interface__`` protocol and Numba's device
    arrays, including those of the CUDA simulator, without importing
    ``numba.cuda``.
    """
    return hasattr(x, "__cuda_array_interface__") or bool(getattr(x, "__cuda_ndarray__", False))


def simulator_enabled():
    """Whether numba-cuda runs (or will run) its CUDA simulator instead of a GPU."""
    cuda = sys.modules.get("numba.cuda")
    if cuda is not None:
        try:
            from numba.cuda.core import config
        except ImportError:  # numba-cuda releases that kept numba's own config
            from numba.core import config
        return bool(getattr(config, "ENABLE_CUDASIM", False))
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


@lru_cache(maxsize=1)
def driver_problem():
    """``None`` when the NVIDIA driver loads and sees a device, else what is missing.

    Asks the driver library directly (``cuInit``, ``cuDeviceGetCount``), so
    the answer comes without numba-cuda and without creating a context.
    """
    lib = None
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll", ctypes.util.find_library("cuda")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        return "the NVIDIA driver (libcuda) was not found on this machine"
    status = lib.cuInit(0)
    if status == _CUDA_ERROR_NO_DEVICE:
        return "the NVIDIA driver is installed but no CUDA device is visible"
    if status != 0:
        return f"the NVIDIA driver failed to initialise (cuInit returned {status})"
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return "the NVIDIA driver is installed but no CUDA device is visible"
    return None


def cuda_problem():
    """``None`` when the GPU path can run, else a sentence naming what is missing."""
    if importlib.util.find_spec("numba_cuda") is None:
        return f"the numba-cuda package is not installed ({_INSTALL_HINT})"
    if simulator_enabled():
        return None
    return driver_problem()


def resolve_device(device, n_pairs=None, device_input=False):
    """Validate ``device`` and return the backend that will run: ``"cpu"`` or ``"cuda"``.

    Parameters
    ----------
    device : {"cpu", "cuda", "auto"}
        The user's choice (case-insensitive).
    n_pairs : int, optional
        Number of (query, key) pairs of the problem. ``"auto"`` picks the GPU
        only from ``nwattn._config.CUDA_AUTO_MIN_PAIRS`` pairs on, when one is
        usable; without a size it stays on the CPU. It never picks numba-cuda's
        simulator (``NUMBA_ENABLE_CUDASIM=1``), which ``"cuda"`` and device
        arrays still reach.
    device_input : bool, default=False
        Whether an input already lives on the GPU; the GPU is then picked
        whatever ``device`` and the size.

    Raises
    ------
    ValueError
        If ``device`` is not one of the three names.
    RuntimeError
        If ``"cuda"`` is asked for (or device arrays are given) and the GPU
        path cannot run; the message says whether the package, the driver or
        the device is missing.

    Examples
    --------
    >>> from nwattn._device import resolve_device
    >>> resolve_device("CPU")
    'cpu'
    >>> resolve_device("auto", n_pairs=100)
    'cpu'
    """
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    device = device.lower()
    if device == "cpu" and not device_input:
        return "cpu"
    if device == "auto" and not device_input:
        if n_pairs is None or n_pairs < _config.CUDA_AUTO_MIN_PAIRS:
            return "cpu"
        # The simulator runs every GPU thread as Python: "auto" picks a real
        # GPU or the CPU, never it (only "cuda" or device arrays reach it).
        if simulator_enabled():
            return "cpu"
        return "cpu" if cuda_problem() else "cuda"
    # Inputs that live on the GPU are computed there whatever was asked:
    # moving them to the host would cost more than the computation saves.
    problem = cuda_problem()
    if problem:
        what = "device='cuda'" if device == "cuda" else "inputs that live on a GPU"
        raise RuntimeError(f"{what} cannot run: {problem}")
    return "cuda"

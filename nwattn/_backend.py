"""The backend seam: one object per device, chosen once per call.

A backend is an object with a ``name``, a set of ``capabilities`` (the
operations it implements) and one method per operation, with the same
name and arguments on every device (see :mod:`nwattn._cpu.backend` and
:mod:`nwattn._cuda.backend`). Layer 3 asks :func:`backend_for` for the
backend of a call, from the user's ``device``, the inputs (arrays that
already live on a GPU are computed there) and the operation it needs;
nothing else in the package imports a backend.

Adding a device is one backend package and one line of :data:`REGISTRY`.
"""

import importlib

import numpy as np

from ._device import is_device_array, resolve_device

#: Module holding each device's ``BACKEND`` object, imported on first use
#: (the GPU's pulls in numba-cuda, which a CPU-only call never pays for).
REGISTRY = {
    "cpu": "nwattn._cpu.backend",
    "cuda": "nwattn._cuda.backend",
}

#: Every operation a backend may offer.
CAPABILITIES = frozenset({"pairwise", "softmax", "top_k", "pool", "learned_pool", "slopes", "local",
                          "local_slopes", "additive_pairwise", "grad_pass", "symmetric_grad",
                          "pair_sums", "pair_gradient", "device_arrays", "smoother",
                          "pool_items", "pairwise_items", "tree_order"})

_loaded = {}


def get_backend(name):
    """The backend object of device ``name`` (``"cpu"`` or ``"cuda"``).

    Examples
    --------
    >>> from nwattn._backend import get_backend
    >>> get_backend("cpu").name
    'cpu'
    """
    be = _loaded.get(name)
    if be is None:
        be = importlib.import_module(REGISTRY[name]).BACKEND
        _loaded[name] = be
    return be


def backend_for(device, *arrays, need="pool", what=None, n_pairs=None):
    """Resolve ``device`` for a call on ``arrays`` and return ``(backend, device_input)``.

    Parameters
    ----------
    device : {"cpu", "cuda", "auto"}
        The user's choice; see :func:`nwattn._device.resolve_device`.
    *arrays : array_like
        The call's inputs, queries first and keys second: their sizes decide
        ``"auto"``, and inputs that live on a GPU send the call there.
    need : str
        The operation the call needs (one of :data:`CAPABILITIES`). A device
        that lacks it is refused with one clear error, except under
        ``"auto"`` with host inputs, which then means the CPU.
    what : str, optional
        How to name the computation in that error.
    n_pairs : int, optional
        Size of the problem for ``"auto"``, when it is not
        ``len(arrays[0]) * len(arrays[1])``.

    Examples
    --------
    >>> from nwattn._backend import backend_for
    >>> be, on_gpu = backend_for("auto", [[0.0]], [[1.0]])
    >>> be.name, on_gpu
    ('cpu', False)
    """
    if need not in CAPABILITIES:
        raise ValueError(f"unknown operation {need!r}")
    device_input = any(is_device_array(a) for a in arrays)
    if n_pairs is None:
        try:
            n_pairs = int(np.shape(arrays[0])[0]) * int(np.shape(arrays[1])[0])
        except (TypeError, ValueError, IndexError):
            n_pairs = None  # malformed input: validation names the problem
    name = resolve_device(device, n_pairs, device_input)
    be = get_backend(name)
    if need not in be.capabilities:
        if str(device).lower() == "auto" and not device_input:
            return get_backend("cpu"), False
        raise ValueError(
            f"{what or 'this computation'} has no {name} implementation; "
            "use device='cpu' or 'auto'"
        )
    return be, device_input

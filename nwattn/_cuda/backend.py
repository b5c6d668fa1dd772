"""The CUDA backend: the GPU's compute operations, under the CPU backend's names.

Layer 3 reaches the GPU only through :data:`BACKEND`, picked by
:func:`nwattn._backend.get_backend`. The methods take host (NumPy) or
device arrays (anything with ``__cuda_array_interface__``) prepared as for
the CPU backend and return Numba device arrays, except where a docstring
says the result comes back to the host. The operations the GPU lacks are
missing from :attr:`CUDABackend.capabilities`, so asking for them is one
clear error from the registry rather than a failure inside a kernel.
"""

import numpy as np

from ..kernels import ADDITIVE, ADDITIVE_CODE, LEARNED_SCORES
from . import launch
from . import local as _local
from .learned import grad_pass


class CUDABackend:
    """Compute operations on an NVIDIA GPU (numba-cuda kernels).

    Besides the compute operations it offers what inputs that already live
    on the GPU need to be validated and prepared there (``check_array``,
    ``scaled``, ``columns``, ``column_mean``, ``centred``) and the transfers
    (``to_device``, ``to_host``).

    Examples
    --------
    >>> from nwattn._cuda.backend import CUDABackend
    >>> "slopes" in CUDABackend.capabilities
    False
    """

    name = "cuda"
    capabilities = frozenset({"pairwise", "softmax", "top_k", "pool", "learned_pool", "local",
                              "additive_pairwise", "grad_pass", "device_arrays"})

    @staticmethod
    def pairwise(Qs, KT, logw, family, code, scale, wv=None):
        """Scores ``(n, m)`` of every query against every key (device array)."""
        return launch.pairwise(Qs, KT, logw, family, code, scale, wv)

    @staticmethod
    def softmax(S):
        """Row-wise softmax of a device matrix (device array)."""
        return launch.softmax(S)

    @staticmethod
    def top_k(S, k, self_shift):
        """Indices and weights ``(n, k)`` of the largest softmax weights of each row (device arrays)."""
        return launch.top_k(S, k, self_shift)

    @staticmethod
    def pool(Qs, KT, VT, VT2, logw, family, code, scale, self_shift, wv=None, progress=None,
             discrete=None):
        """Packed pooling states ``(max, packed)`` as device arrays (``pool_layout``).

        The work is one asynchronous launch: ``progress`` is accepted for the
        CPU backend's signature and not called (the caller reports the end,
        once the results are copied back).
        """
        return launch.pool(Qs, KT, VT, VT2, logw, family, code, scale, self_shift, wv,
                           discrete)

    @staticmethod
    def learned_pool(kind, P, OT, wv, scale, logw, VT, VT2, self_shift):
        """:meth:`pool` with a learned score; the states come back to the host."""
        family, code = LEARNED_SCORES[kind]
        smax, packed = launch.pool(P, OT, VT, VT2, logw, family, code, scale, self_shift,
                                   wv if family == ADDITIVE else None)
        return launch.to_host(smax), launch.to_host(packed)

    @staticmethod
    def local(Qs, KT, VT, logw, family, code, qscale, degree, self_shift, progress=None,
              discrete=None):
        """Query-centred moments of a local polynomial, ``(max, packed)`` as device arrays.

        ``packed`` is laid out by ``local_layout``; the arguments are those
        of the CPU backend's ``local`` (``discrete``: the host tuple of
        codes and tables). The work is one launch, so
        ``progress`` (when given) is called once, as
        ``progress(pairs, pairs)``, when it is done.
        """
        return _local.local(Qs, KT, VT, logw, family, code, qscale, degree, self_shift,
                            progress, discrete)

    @staticmethod
    def additive_pairwise(A, BT, wv):
        """Additive scores of projected queries and keys (device array)."""
        return launch.pairwise(A, BT, np.empty(0, A.dtype), ADDITIVE, ADDITIVE_CODE, 1.0, wv)

    @staticmethod
    def grad_pass(kind, P, OT, wv, scale, logw, shift, F, HT, e_own, e_other, with_wv):
        """One backward sweep; returns host ``(dP, dwv)``."""
        return grad_pass(kind, P, OT, wv, scale, logw, shift, F, HT, e_own, e_other, with_wv)

    check_array = staticmethod(launch.check_device_array)
    scaled = staticmethod(launch.scaled)
    columns = staticmethod(launch.columns)
    column_mean = staticmethod(launch.column_mean)
    centred = staticmethod(launch.centred)
    finalize = staticmethod(launch.finalize)
    to_device = staticmethod(launch.as_device)
    to_host = staticmethod(launch.to_host)


#: The backend object the registry hands out.
BACKEND = CUDABackend()

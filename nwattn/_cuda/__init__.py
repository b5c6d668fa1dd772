"""CUDA compute kernels (:mod:`.kernels`), their host-side launch code (:mod:`.launch`),
and the training kernels of the learned scores (:mod:`.learned`).

Nothing here is imported by ``import nwattn`` or by the CPU path: the
public functions of :mod:`nwattn.ops` import :mod:`.launch` only when a
computation runs with ``device="cuda"``, so numba-cuda and a GPU are needed
only then.
"""

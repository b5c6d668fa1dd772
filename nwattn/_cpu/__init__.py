"""Numba CPU compute kernels (layer 2).

Private: the public functions of :mod:`nwattn.ops` validate and prepare the
input, then call these. Every kernel takes C-contiguous float32 or float64
arrays of one dtype and writes into preallocated outputs.
"""

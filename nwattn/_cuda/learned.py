"""The backward sweeps of the learned scores' leave-one-out objective, on the GPU.

Same mathematics as :mod:`nwattn._cpu.learned`, whose docstring derives it:
a forward sweep (the fused pooling kernel of :mod:`.kernels`, which knows
the three learned scores through its score function) gives each query's
log-normaliser and prediction, then two backward sweeps recompute the
weights ``alpha_ij`` tile by tile, once owning query rows and once owning
key rows, so every thread writes only its own row of the gradient and no
``n x n`` array exists.

The backward kernel runs one thread per owned row. The threads of a block
load a tile of the other side's projected rows, of the values (or
gradients) they are paired with and of the per-column scalars into shared
memory together, then each thread folds the tile into the gradient of its
row, held in local memory. When there are too few owned rows to fill the
GPU the columns are split over the grid's y dimension as in the pooling
kernel; each split writes its partial gradient and the host adds them, in
split order.
"""

import math
from functools import lru_cache

import numpy as np
from numba import cuda, from_dtype

from .. import _config
from .._plan import plan_splits
from ..kernels import ADDITIVE_KIND as ADDITIVE, LEARNED_SCORES as SCORES, RBF_KIND as RBF
from .._device import is_device_array
from . import kernels as _k
from .launch import _blocks, _key, _launch, as_device, tile_size, to_host


@lru_cache(maxsize=None)
def grad_kernel(dtype, kind, r, p, with_wv, threads, key_tile):
    """Backward sweep, the GPU twin of :func:`nwattn._cpu.learned.loo_grad_pass`.

    Signature ``(P, OT, wv, scale, logw, shift, F, HT, e_own, e_other,
    split_size, dP, dwv)``: ``P`` (n, r) owned rows, ``OT`` (r, m) the
    other side transposed, ``F`` (n, p), ``HT`` (p, m), the vectors as in
    :func:`~nwattn._cpu.learned.loo_grad_pass`. Writes ``dP[s, o]`` (and,
    ``with_wv``, the additive vector's gradient ``dwv[s, o]``) for key
    split ``s``. Owned row ``o`` never meets column ``o`` (the same point).
    """
    ftype = np.dtype(dtype).type
    nbtype = from_dtype(np.dtype(dtype))
    family, code = SCORES[kind]
    score = _k._score_function(ftype, r, family, code)
    exp = _k._exp_function(ftype)
    zero = ftype(0.0)
    one = ftype(1.0)
    is_rbf = kind == RBF
    is_additive = kind == ADDITIVE
    n_wv = r if with_wv else 1

    @cuda.jit
    def kernel(P, OT, wv, scale, logw, shift, F, HT, e_own, e_other, split_size, dP, dwv):
        tx = cuda.threadIdx.x
        o = cuda.blockIdx.x * threads + tx
        s = cuda.blockIdx.y
        n = P.shape[0]
        m = OT.shape[1]
        k0 = s * split_size
        k1 = min(m, k0 + split_size)

        cols = cuda.shared.array((r, key_tile), nbtype)
        hts = cuda.shared.array((p, key_tile), nbtype)
        lw = cuda.shared.array(key_tile, nbtype)
        eo = cuda.shared.array(key_tile, nbtype)
        q = cuda.local.array(r, nbtype)
        f = cuda.local.array(p, nbtype)
        grad = cuda.local.array(r, nbtype)
        gw = cuda.local.array(n_wv, nbtype)

        # Threads without a row (past the end, or a row whose every weight
        # is zero: non-finite shift) still help load the tiles.
        active = False
        sh = zero
        eown = zero
        if o < n:
            sh = shift[o]
            active = math.isfinite(sh)
            eown = e_own[o]
            for t in range(r):
                q[t] = P[o, t]
            for c in range(p):
                f[c] = F[o, c]
        for t in range(r):
            grad[t] = zero
        for t in range(n_wv):
            gw[t] = zero

        for j0 in range(k0, k1, key_tile):
            nt = min(key_tile, k1 - j0)
            cuda.syncthreads()
            for jj in range(tx, nt, threads):
                for t in range(r):
                    cols[t, jj] = OT[t, j0 + jj]
                for c in range(p):
                    hts[c, jj] = HT[c, j0 + jj]
                lw[jj] = logw[j0 + jj]
                eo[jj] = e_other[j0 + jj]
            cuda.syncthreads()
            if not active:
                continue
            for jj in range(nt):
                if j0 + jj == o:
                    continue
                a = exp(score(q, cols, jj, scale, wv) + lw[jj] - sh)
                if a == zero:
                    continue  # zero key weight, or a query without a prediction
                delta = -eo[jj] - eown
                for c in range(p):
                    delta += f[c] * hts[c, jj]
                g = a * delta
                if is_additive:
                    for t in range(r):
                        th = math.tanh(q[t] + cols[t, jj])
                        grad[t] += g * wv[t] * (one - th * th)
                        if with_wv:
                            gw[t] += g * th
                elif is_rbf:
                    for t in range(r):
                        grad[t] += g * (cols[t, jj] - q[t])
                else:
                    for t in range(r):
                        grad[t] += g * scale * cols[t, jj]

        if o < n:
            for t in range(r):
                dP[s, o, t] = grad[t]
            if with_wv:
                for t in range(r):
                    dwv[s, o, t] = gw[t]

    return kernel


def _on_device(a, dtype):
    """``a`` as a device array of ``dtype``: device arrays as they are, host ones copied."""
    if is_device_array(a):
        return as_device(a)
    return as_device(np.ascontiguousarray(a, dtype=dtype))


def grad_pass(kind, P, OT, wv, scale, logw, shift, F, HT, e_own, e_other, with_wv):
    """Launch one backward sweep; returns host ``dP`` (n, r) and ``dwv`` (r,)."""
    dtype = np.dtype(P.dtype)
    Pd = _on_device(P, dtype)
    n, r = Pd.shape
    m = OT.shape[1]
    p = F.shape[1]
    threads = _config.CUDA_THREADS_PER_BLOCK
    # Per column in shared memory: r projections, p values, logw and e_other.
    tile = tile_size(r, p + 1, dtype.itemsize)
    n_split, split_size = plan_splits(n, m, threads, _config.CUDA_TARGET_BLOCKS,
                                      _config.CUDA_MIN_SPLIT_KEYS)
    dP = cuda.device_array((n_split, n, r), dtype)
    dwv = cuda.device_array((n_split, n, r) if with_wv else (1, 1, 1), dtype)
    kernel = grad_kernel(_key(dtype), kind, r, p, bool(with_wv), threads, tile)
    OTd, wvd, lwd, shd, Fd, HTd, eownd, eod = (
        _on_device(a, dtype) for a in (OT, wv, logw, shift, F, HT, e_own, e_other))
    _launch(kernel, (_blocks(n, threads), n_split), threads, Pd, OTd, wvd, dtype.type(scale),
            lwd, shd, Fd, HTd, eownd, eod, np.int64(split_size), dP, dwv)
    grad = to_host(dP).sum(axis=0)
    gw = to_host(dwv).sum(axis=(0, 1)) if with_wv else np.zeros(r, dtype)
    return grad, gw

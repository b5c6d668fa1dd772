"""Query-centred moments of local polynomial regression, on the GPU.

The device twin of the CPU sweep's ``LOCAL`` score and ``MOMENTS`` absorb
strategy (:mod:`nwattn._cpu.moments` derives the mathematics): for each
query, the upper triangle of the Gram matrix ``G = sum_j w_j phi(z_j)
phi(z_j)^T`` of the polynomial basis ``phi = (1, z_1 .. z_d, z_a z_b)``
and the cross moments ``R = sum_j w_j phi(z_j) v_j^T``, in the offsets
``z_j = (k_j - q) s`` of the keys from the query at the query's own scale
``s``, packed as :func:`nwattn._layout.local_layout` says and streamed with
the online softmax.

The kernel is organised like the pooling kernel of :mod:`.kernels`: one
thread per query; the threads of a block load a tile of keys, values and
log key weights into shared memory together, then each thread folds the
tile into its own packed state in local memory. The grid is (query blocks,
key splits, value-column chunks); the partial states of the key splits
are merged by :func:`nwattn._cuda.kernels.merge_kernel`, in split order.
The Gram moments do not depend on the values, so only the first chunk
accumulates them; the other chunks accumulate their own columns of ``R``.
"""

import math
from functools import lru_cache

import numpy as np
from numba import cuda, from_dtype, int32, uint32

from .. import _config
from .._layout import local_layout, n_basis
from .._device import is_device_array
from .._plan import plan_splits
from ..kernels import DISTANCE, GAUSSIAN, LAPLACIAN
from . import kernels as _k
from .launch import (_GRID_YZ_MAX, _blocks, _key, _launch, as_device, discrete_arrays,
                     tile_size)

# The one rescale rule, as the pooling kernel compiles it (its Python source
# under the simulator).
rescale_row = _k.rescale_row

#: Bytes of one thread's packed state (local memory) beyond which the value
#: columns are taken in smaller chunks, and which the Gram moments alone
#: may not exceed. Every thread of a launch reserves its local memory, so a
#: degree-2 state in many features would exhaust the device's memory before
#: the kernel's first instruction; the CPU keeps it on the heap instead.
STATE_BYTES = 16 * 1024


def state_chunk(d, degree, p, itemsize):
    """Value columns per thread: the configured chunk, shrunk to :data:`STATE_BYTES`.

    One thread holds the packed state of its chunk of ``c`` columns,
    ``local_layout(c, d, degree)``, whose width grows with ``c`` by the
    number of basis functions.

    Examples
    --------
    >>> from nwattn._cuda.local import state_chunk
    >>> state_chunk(3, 1, 2, 8)
    2
    """
    chunk = max(1, min(_config.CUDA_VALUE_CHUNK, p))
    P = n_basis(d, degree)
    fixed = P * (P + 1) // 2  # the Gram triangle, normaliser included
    room = STATE_BYTES // itemsize - fixed
    if room < P:
        raise ValueError(
            f"the GPU kernel of local polynomial moments holds at most {STATE_BYTES} bytes "
            f"per query; degree {degree} in {d} features needs more. Use device='cpu'."
        )
    return max(1, min(chunk, room // P))


@lru_cache(maxsize=None)
def local_kernel(dtype, d, degree, code, with_logw, exclude_self, threads, key_tile,
                 value_chunk, n_disc=0):
    """Fused kernel of the query-centred moments, one thread per query.

    Signature ``(Q, KT, VT, logw, qscale, self_shift, split_size, powers,
    QC, KCT, LT, out_max, out_acc)``: ``Q`` (n, d) and ``KT`` (d, m) divided by the
    bandwidth, ``VT`` (p, m) the centred values, ``logw`` (m,) or empty,
    ``qscale`` (n,) each query's factor of its offsets, ``powers`` those of
    a thread's state ``local_layout(value_chunk, d, degree)``, and
    ``out_acc`` (n_split, n, width) packed by ``local_layout(p, d,
    degree)``. ``n_disc`` discrete features add ``LT[f, QC[i, f], KCT[f,
    j]]`` to every score, as in the pooling kernel; they enter the weights
    only, not the polynomial basis (``d`` counts the continuous features).
    Grid as the pooling kernel's (:func:`.kernels.pool_kernel`).
    """
    ftype = np.dtype(dtype).type
    nbtype = from_dtype(np.dtype(dtype))
    weight = _k._distance_log_weight(ftype, code)
    exp = _k._exp_function(ftype)
    zero = ftype(0.0)
    neg_inf = ftype(-math.inf)
    nb = n_basis(d, degree) - 1  # basis functions beyond the constant
    n_z = max(nb, 1)
    n_mom = (nb + 1) * (nb + 2) // 2 - 1
    own = local_layout(value_chunk, d, degree)
    width = own.width
    o_acc, o_mom, o_cross = own.offset("acc"), own.offset("moments"), own.offset("cross")
    # Kernels positive everywhere give finite scores (the caller refuses
    # inputs that would overflow); zero key weights and compact supports
    # give -inf, which must not reach exp(-inf - -inf).
    # A discrete kernel's weight is 0 at lambda = 0: -inf in the score too.
    may_be_inf = with_logw or n_disc > 0 or code not in (GAUSSIAN, LAPLACIAN)
    nd1 = max(n_disc, 1)

    @cuda.jit
    def kernel(Q, KT, VT, logw, qscale, self_shift, split_size, powers, QC, KCT, LT, out_max,
               out_acc):
        tx = cuda.threadIdx.x
        i = cuda.blockIdx.x * threads + tx
        s = cuda.blockIdx.y
        c0 = cuda.blockIdx.z * value_chunk
        # The Gram moments are the same for every chunk of values: the
        # first chunk's blocks accumulate them (a test uniform over a block).
        first = c0 == 0
        n = Q.shape[0]
        m = KT.shape[1]
        p = VT.shape[0]
        pc = min(value_chunk, p - c0)
        k0 = s * split_size
        k1 = min(m, k0 + split_size)

        keys = cuda.shared.array((d, key_tile), nbtype)
        vals = cuda.shared.array((value_chunk, key_tile), nbtype)
        lw = cuda.shared.array(key_tile, nbtype)
        kcodes = cuda.shared.array((nd1, key_tile), int32)
        q = cuda.local.array(d, nbtype)
        qc = cuda.local.array(nd1, int32)
        z = cuda.local.array(n_z, nbtype)
        st = cuda.local.array(width, nbtype)

        active = i < n
        qs = zero
        if active:
            for t in range(d):
                q[t] = Q[i, t]
            for f in range(n_disc):
                qc[f] = QC[i, f]
            qs = qscale[i]
        for k in range(width):
            st[k] = zero
        mx = neg_inf
        self_j = i + self_shift

        for j0 in range(k0, k1, key_tile):
            nt = min(key_tile, k1 - j0)
            # Every thread must be done with the previous tile before it is
            # overwritten, and the new tile complete before it is read.
            cuda.syncthreads()
            for jj in range(tx, nt, threads):
                for t in range(d):
                    keys[t, jj] = KT[t, j0 + jj]
                for c in range(value_chunk):
                    if c < pc:
                        vals[c, jj] = VT[c0 + c, j0 + jj]
                    else:
                        vals[c, jj] = zero
                if with_logw:
                    lw[jj] = logw[j0 + jj]
                for f in range(n_disc):
                    kcodes[f, jj] = KCT[f, j0 + jj]
            cuda.syncthreads()
            if not active:
                continue
            # unsigned 32-bit counter, as in the pooling kernel
            for jj in range(uint32(nt)):
                u2 = zero
                for t in range(d):
                    zt = (keys[t, jj] - q[t]) * qs
                    if degree >= 1:
                        z[t] = zt
                    u2 += zt * zt
                sc = weight(u2)
                if with_logw:
                    sc += lw[jj]
                for f in range(n_disc):
                    sc += LT[f, qc[f], kcodes[f, jj]]
                if may_be_inf and sc == neg_inf:
                    continue
                if exclude_self and j0 + jj == self_j:
                    continue
                if sc > mx:
                    # Rare after the first keys: the running maximum rises,
                    # and the state follows the package's one rescale rule.
                    rescale_row(st, powers, exp(mx - sc))
                    mx = sc
                e = exp(sc - mx)
                if degree >= 2:
                    r = d
                    for a in range(d):
                        for b in range(a, d):
                            z[r] = z[a] * z[b]
                            r += 1
                st[0] += e
                for c in range(value_chunk):
                    st[o_acc + c] += e * vals[c, jj]
                if first:
                    # G[0, 1:], then the upper triangle of G[1:, 1:] row by row.
                    k = o_mom + nb
                    for a in range(nb):
                        wa = e * z[a]
                        st[o_mom + a] += wa
                        for b in range(a, nb):
                            st[k] += wa * z[b]
                            k += 1
                for a in range(nb):
                    wa = e * z[a]
                    for c in range(value_chunk):
                        st[o_cross + a * value_chunk + c] += wa * vals[c, jj]

        if active:
            # From the thread's chunk layout to the call's: normaliser, the
            # p values, the Gram moments, then R[1:] row by row, p per row.
            out_cross = 1 + p + n_mom
            if first:
                out_max[s, i] = mx
                out_acc[s, i, 0] = st[0]
                for k in range(n_mom):
                    out_acc[s, i, 1 + p + k] = st[o_mom + k]
            for c in range(pc):
                out_acc[s, i, 1 + c0 + c] = st[o_acc + c]
                for a in range(nb):
                    out_acc[s, i, out_cross + a * p + c0 + c] = st[o_cross + a * value_chunk + c]

    return kernel


def local(Qs, KT, VT, logw, family, code, qscale, degree, self_shift, progress=None,
          discrete=None):
    """Device counterpart of the CPU backend's ``local``.

    Returns ``(max, packed)`` device arrays, ``packed`` laid out by
    :func:`nwattn._layout.local_layout`. Arrays as for the CPU backend,
    host or device: ``Qs`` and ``KT`` divided by the bandwidth, ``VT`` the
    centred values, ``logw`` the log key weights (or empty), ``qscale``
    (n,) the factor of each query's offsets. ``progress``, when given, is
    called once as ``progress(pairs, pairs)`` after the kernels have
    finished (launches are asynchronous, so this waits for them).
    ``discrete``: None, or the host tuple of :func:`.launch.discrete_arrays`.
    """
    if family != DISTANCE:
        raise ValueError("local polynomial moments need a smoothing kernel (a distance score)")
    Qd, KTd, VTd, lwd = as_device(Qs), as_device(KT), as_device(VT), as_device(logw)
    dtype = np.dtype(Qd.dtype)
    qsd = as_device(qscale if is_device_array(qscale) else np.asarray(qscale, dtype))
    n, d = Qd.shape
    m = KTd.shape[1]
    p = VTd.shape[0]
    degree = int(degree)
    threads = _config.CUDA_THREADS_PER_BLOCK
    chunk = state_chunk(d, degree, p, dtype.itemsize)
    n_disc = 0 if discrete is None else discrete[0].shape[1]
    # The key codes share the tile's shared memory: counted as features.
    tile = tile_size(d + n_disc, chunk, dtype.itemsize)
    n_split, split_size = plan_splits(n, m, threads, _config.CUDA_TARGET_BLOCKS,
                                      _config.CUDA_MIN_SPLIT_KEYS)
    n_chunks = -(-p // chunk)
    if n_split > _GRID_YZ_MAX or n_chunks > _GRID_YZ_MAX:
        raise ValueError(f"too many value columns for the GPU kernel: {p}")
    layout = local_layout(p, d, degree)
    out_max = cuda.device_array((n_split, n), dtype)
    out_acc = cuda.device_array((n_split, n, layout.width), dtype)
    exclude_self = -n < self_shift < m  # some query meets itself among the keys
    kernel = local_kernel(_key(dtype), d, degree, code, lwd.shape[0] > 0, bool(exclude_self),
                          threads, tile, chunk, n_disc)
    powers = cuda.to_device(local_layout(chunk, d, degree).powers)
    QCd, KCTd, LTd = discrete_arrays(discrete, dtype)
    grid = (_blocks(n, threads), n_split, n_chunks)
    _launch(kernel, grid, threads, Qd, KTd, VTd, lwd, qsd, np.int64(self_shift),
            np.int64(split_size), powers, QCd, KCTd, LTd, out_max, out_acc)
    if n_split > 1:
        simple = _config.CUDA_SIMPLE_THREADS
        _launch(_k.merge_kernel, _blocks(n, simple), simple, out_max, out_acc,
                cuda.to_device(layout.powers))
    if progress is not None:
        cuda.synchronize()
        progress(n * m, n * m)
    return out_max[0], out_acc[0]

"""CUDA kernels: pairwise scores, row softmax, fused streaming pooling.

The same computations as :mod:`nwattn._cpu`, for the GPU. The scalar
log-weights are device twins of the catalogue's
(:func:`_distance_log_weight`): the same formulas with constants of the
kernel's dtype, so that a float32 kernel computes in float32 only, and
plain ``cuda.jit`` device functions (a CPU ``@njit`` function called from
device code needs a driver even to compile).

Kernels are built by small factories, cached per combination of dtype,
number of features, score and launch sizes. Those values are compile-time
constants in the generated code, so the loops over features are unrolled,
the shared-memory tiles have static sizes and the branches on the score
disappear. No kernel carries an explicit signature: building one needs
neither a GPU nor a driver, only launching it does.

Pooling (DESIGN section 2) runs a few queries per thread. The threads of
a block load a tile of keys, key weights and values into shared memory
together, then each thread folds the tile into the online-softmax states of
its queries, held in registers, reading each key once for all of them; the
(n, m) weights never exist. The
grid is (query blocks, key splits, value-column chunks): when there are too
few queries to fill the GPU the keys are split, each split writes its own
partial state, and :func:`merge_kernel` merges them exactly, in split order.
"""

import math
import types
from functools import lru_cache

import numpy as np
from numba import cuda, from_dtype, int32, int64, uint32

from .._device import simulator_enabled
from .._layout import merge_query as _merge_query, pool_layout, power_of as _power_of_cpu
from .._layout import rescale_row as _rescale_row
from ..kernels import (ADDITIVE, BIWEIGHT, BOXCAR, COSINE, DISTANCE, EPANECHNIKOV, GAUSSIAN,
                       LAPLACIAN, TRIANGULAR, TRICUBE)



def _device_twin(func, **names):
    """A CUDA device function of the Python source of the ``@njit`` function ``func``.

    ``names`` rebinds globals of that source (its own ``@njit`` callees) to
    their device twins, so that device code never calls a CPU function:
    numba-cuda compiles such calls only with a driver present, and the
    behaviour is not documented.
    """
    py = func.py_func
    scope = dict(py.__globals__)
    scope.update(names)
    twin = types.FunctionType(py.__code__, scope, py.__name__, py.__defaults__, py.__closure__)
    return cuda.jit(device=True, inline=True)(twin)


# The package's one rescale and merge rule (:mod:`nwattn._layout`), used by
# every kernel here and in .local: its Python source, compiled as device
# functions. Under the simulator a kernel runs as Python on the simulator's
# own array objects, and the source runs as it is.
if simulator_enabled():
    merge_query = _merge_query.py_func
    rescale_row = _rescale_row.py_func
else:
    _power_of = _device_twin(_power_of_cpu)
    merge_query = _device_twin(_merge_query, power_of=_power_of)
    rescale_row = _device_twin(_rescale_row, power_of=_power_of)


def _exp_function(ftype):
    """The ``exp`` of the pooling loop: the hardware's fast one in float32 on a GPU.

    ``__nv_fast_expf`` is one multiply and one ``ex2.approx``, against about
    ten instructions for the correctly rounded ``expf``, which matters when
    the exponential is a third of the work of a pair. Its relative error,
    about 2**-22 plus 6e-8 times the argument's magnitude, stays far below
    float32's tolerance for the weights that count (the arguments are
    ``score - max <= 0``); it maps ``-inf`` to 0 as ``exp`` does. The
    simulator has no libdevice, so it uses :func:`math.exp`.
    """
    if ftype is np.float32 and not simulator_enabled():
        from numba.cuda import libdevice

        return libdevice.fast_expf
    return math.exp


# Scores of the float32 pooling kernel are in base-2 units: ``log2(e)`` folds
# into their constants (the gaussian's -1/2, the dot product's scale), and
# each pair's weight is one ``ex2`` of ``score - max``, with no multiply
# before it.
LOG2E = 1.0 / math.log(2.0)
LN2 = math.log(2.0)


@lru_cache(maxsize=None)
def _ex2_ftz():
    """Device function: ``2**x`` in float32 by one ``ex2.approx.ftz.f32``.

    numba-cuda compiles ``exp`` without flushing subnormals to zero, and then
    guards ``ex2`` against a subnormal result: a compare and two multiplies,
    three of the fifteen float32 instructions of a gaussian pair at d = 3
    (``benchmarks/gpu_sass.py``); its ``fastmath`` would flush them but also
    lets the compiler assume no ``inf`` (the empty-support test). A result
    below ``2**-126`` is a weight below ``2**-126`` times the query's largest,
    which the normaliser (at least 1) cannot notice; ``-inf`` gives 0.
    """
    from llvmlite import ir
    from numba.cuda import types as cuda_types
    from numba.cuda.extending import intrinsic

    @intrinsic
    def ex2_ftz(typingctx, x):
        def codegen(context, builder, signature, args):
            fnty = ir.FunctionType(ir.FloatType(), [ir.FloatType()])
            asm = ir.InlineAsm(fnty, "ex2.approx.ftz.f32 $0, $1;", "=f,f")
            return builder.call(asm, args)

        return cuda_types.float32(cuda_types.float32), codegen

    @cuda.jit(device=True, inline=True)
    def exp2(x):
        return ex2_ftz(x)

    return exp2


def _exp2_function(ftype):
    """The exponential of the pooling loop, of scores in its units.

    float32: ``2**x`` by one ``ex2`` on a GPU (base-2 scores). float64:
    ``exp`` (natural scores), whose libdevice version is one float64
    instruction per pair cheaper than libdevice's ``exp2``
    (``benchmarks/gpu_sass.py``: 43 against 44 instructions per gaussian pair
    at d = 3). The simulator runs Python: ``2.0 ** x`` (0 at ``-inf``).
    """
    if ftype is not np.float32:
        return math.exp
    if simulator_enabled():
        two = ftype(2.0)

        def exp2(x):
            return two ** x

        return exp2
    return _ex2_ftz()


def _distance_log_weight(ftype, code, unit=1.0):
    """Device function ``weight(u2)``: log-weight of distance kernel ``code`` at ``u2``.

    The device twin of the catalogue's :func:`nwattn.kernels.log_weight`
    for one kernel, written in ``ftype``: its constants are ``ftype``
    values and its ``math`` calls take and return ``ftype``, so a float32
    kernel runs no float64 instruction (the catalogue's Python float
    literals would make every pair go through the double path). The
    formulas are the catalogue's, term for term; a test compares each twin
    with the catalogue. With ``unit`` the log-weight is multiplied by it
    (``LOG2E``: base-2 units); the gaussian's folds it into its one constant.
    """
    zero, one, two, three = ftype(0.0), ftype(1.0), ftype(2.0), ftype(3.0)
    minus_half = ftype(-0.5 * unit)
    neg_inf = ftype(-math.inf)
    half_pi = ftype(0.5 * math.pi)
    if code == GAUSSIAN:
        def weight(u2):
            return u2 * minus_half
    elif code == LAPLACIAN:
        def weight(u2):
            return -math.sqrt(u2)
    elif code == EPANECHNIKOV:
        def weight(u2):
            return math.log1p(-u2) if u2 < one else neg_inf
    elif code == BOXCAR:
        def weight(u2):
            return zero if u2 <= one else neg_inf
    elif code == TRIANGULAR:
        def weight(u2):
            return math.log1p(-math.sqrt(u2)) if u2 < one else neg_inf
    elif code == BIWEIGHT:
        def weight(u2):
            return two * math.log1p(-u2) if u2 < one else neg_inf
    elif code == TRICUBE:
        def weight(u2):
            if u2 < one:
                u = math.sqrt(u2)
                return three * math.log1p(-u * u * u)
            return neg_inf
    elif code == COSINE:
        def weight(u2):
            return math.log(math.cos(half_pi * math.sqrt(u2))) if u2 < one else neg_inf
    else:
        raise ValueError(f"no distance kernel has the code {code}")
    weight = cuda.jit(device=True, inline=True)(weight)
    if unit == 1.0 or code == GAUSSIAN:
        return weight
    unit_f = ftype(unit)
    natural = weight

    @cuda.jit(device=True, inline=True)
    def weight(u2):
        return natural(u2) * unit_f

    return weight


def _score_function(ftype, d, family, code, unit=1.0):
    """Device function ``score(q, keys, j, scale, wv)``: query ``q`` against key column ``j``.

    ``keys`` is a (d, *) array, in global or shared memory; inputs are
    already divided by the bandwidth, as on the CPU. For the additive family
    the inputs are the projections ``W_q q`` and ``W_k k`` and ``wv`` the
    vector of the ``tanh`` units; the other families ignore ``wv``. Scores
    are multiplied by ``unit`` (``LOG2E``: base-2 units).
    """
    zero = ftype(0.0)
    unit_f = ftype(unit)
    is_distance = family == DISTANCE
    is_additive = family == ADDITIVE
    # (unused by the other families, whose codes are not distance kernels)
    weight = _distance_log_weight(ftype, code if is_distance else GAUSSIAN, unit)

    @cuda.jit(device=True, inline=True)
    def score(q, keys, j, scale, wv):
        acc = zero
        if is_additive:
            # The GPU's tanh is cheap and saturates cleanly; the CPU builds
            # its own from a vectorisable exp only to let LLVM vectorise.
            for t in range(d):
                acc += wv[t] * math.tanh(q[t] + keys[t, j])
            return acc * unit_f
        if is_distance:
            for t in range(d):
                diff = q[t] - keys[t, j]
                acc += diff * diff
            return weight(acc)
        for t in range(d):
            acc += q[t] * keys[t, j]
        # (scale * unit_f is the same for every pair: computed once, before the loop)
        return acc * (scale * unit_f)

    return score


@lru_cache(maxsize=None)
def pairwise_kernel(dtype, d, family, code, with_logw):
    """Kernel ``(Q, KT, logw, scale, wv, out)`` filling ``out[i, j]`` with the score.

    Launched on a 2-D grid: x over keys (coalesced reads of ``KT`` and
    writes of ``out``), y over queries with a grid-stride loop, so any
    number of queries fits the grid's y limit.
    """
    ftype = np.dtype(dtype).type
    score = _score_function(ftype, d, family, code)

    @cuda.jit
    def kernel(Q, KT, logw, scale, wv, out):
        j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if j >= KT.shape[1]:
            return
        for i in range(cuda.blockIdx.y, Q.shape[0], cuda.gridDim.y):
            s = score(Q[i], KT, j, scale, wv)
            if with_logw:
                s += logw[j]
            out[i, j] = s

    return kernel


# What _block_reduce keeps of two entries.
_SUM, _MAX, _ARGMAX = 0, 1, 2


@cuda.jit(device=True, inline=True)
def _block_reduce(red, redi, tx, threads, op):
    """Reduce ``red[:threads]`` into ``red[0]``, every thread of the block taking part.

    ``op``: ``_SUM``, ``_MAX``, or ``_ARGMAX`` (the largest, with its
    ``redi`` carried into ``redi[0]``; ties to the smaller ``redi``;
    ``redi`` is not touched by the other two). A tree over any number of
    threads, in a fixed order, so the result does not depend on the timing
    of the threads; ``red[0]`` is valid for every thread on return.
    """
    step = 1
    while step < threads:
        cuda.syncthreads()
        o = tx + step
        if tx % (2 * step) == 0 and o < threads:
            if op == _SUM:
                red[tx] = red[tx] + red[o]
            elif op == _MAX:
                red[tx] = max(red[tx], red[o])
            elif red[o] > red[tx] or (red[o] == red[tx] and redi[o] < redi[tx]):
                red[tx] = red[o]
                redi[tx] = redi[o]
        step *= 2
    cuda.syncthreads()


@cuda.jit(device=True, inline=True)
def _row_max(S, i, own, red, tx, threads, neg_inf):
    """Largest entry of row ``i`` of ``S`` but column ``own``, reduced over the block.

    Every thread of the block takes part and gets the result; ``neg_inf``
    (of ``S``'s dtype) for a row of ``-inf`` only.
    """
    top = neg_inf
    for j in range(tx, S.shape[1], threads):
        if j != own:
            top = max(top, S[i, j])
    red[tx] = top
    _block_reduce(red, red, tx, threads, _MAX)
    return red[0]


@lru_cache(maxsize=None)
def softmax_kernel(dtype, threads):
    """Kernel ``(S, out)``: row-wise stable softmax, one block of ``threads`` per row.

    The threads of a block read and write a row together, neighbours at
    neighbouring columns (coalesced; one thread per row would read one
    element of each of 32 rows per load), and reduce its maximum and sum
    in shared memory. Blocks stride over the rows. A row whose scores are
    all ``-inf`` becomes NaN, as on the CPU.
    """
    ftype = np.dtype(dtype).type
    nbtype = from_dtype(np.dtype(dtype))
    zero = ftype(0.0)
    one = ftype(1.0)
    neg_inf = ftype(-math.inf)
    nan = ftype(math.nan)

    @cuda.jit
    def kernel(S, out):
        red = cuda.shared.array(threads, nbtype)
        tx = cuda.threadIdx.x
        m = S.shape[1]
        for i in range(cuda.blockIdx.x, S.shape[0], cuda.gridDim.x):
            top = _row_max(S, i, -1, red, tx, threads, neg_inf)
            if top == neg_inf:
                for j in range(tx, m, threads):
                    out[i, j] = nan
                # (every thread takes this branch: red[0] is the block's)
                cuda.syncthreads()
                continue
            total = zero
            for j in range(tx, m, threads):
                e = math.exp(S[i, j] - top)
                out[i, j] = e
                total += e
            # red[0] is read by all before any thread overwrites red
            cuda.syncthreads()
            red[tx] = total
            _block_reduce(red, red, tx, threads, _SUM)
            inv = one / red[0]
            for j in range(tx, m, threads):
                out[i, j] *= inv
            cuda.syncthreads()

    return kernel


@lru_cache(maxsize=None)
def top_k_kernel(dtype, threads):
    """Kernel ``(S, k, self_shift, out_idx, out_w)``: the ``k`` largest softmax weights of each row.

    A block per row (blocks stride over the rows), as :func:`softmax_kernel`:
    the row's maximum and normaliser, then ``k`` passes, each the block's
    largest score after the previous one in the order (score descending,
    key index ascending), so keys of equal weight come in index order. Only
    the ``n x k`` results leave the GPU, not the ``n x m`` scores. Column
    ``i + self_shift`` of row ``i`` is left out (the query itself; a
    ``self_shift`` of at least the number of columns leaves out nothing).
    A slot beyond the keys of positive weight gets index -1 and weight 0,
    a row with no key in its support NaN weights, as
    :func:`nwattn.ops.top_k_from_scores`.
    """
    ftype = np.dtype(dtype).type
    nbtype = from_dtype(np.dtype(dtype))
    zero = ftype(0.0)
    neg_inf = ftype(-math.inf)
    pos_inf = ftype(math.inf)
    nan = ftype(math.nan)

    @cuda.jit
    def kernel(S, k, self_shift, out_idx, out_w):
        red = cuda.shared.array(threads, nbtype)
        redi = cuda.shared.array(threads, int64)
        tx = cuda.threadIdx.x
        m = S.shape[1]
        for i in range(cuda.blockIdx.x, S.shape[0], cuda.gridDim.x):
            own = i + self_shift
            top = _row_max(S, i, own, red, tx, threads, neg_inf)
            if top == neg_inf:
                for r in range(tx, k, threads):
                    out_idx[i, r] = -1
                    out_w[i, r] = nan
                cuda.syncthreads()
                continue
            total = zero
            for j in range(tx, m, threads):
                if j != own:
                    total += math.exp(S[i, j] - top)
            cuda.syncthreads()
            red[tx] = total
            _block_reduce(red, red, tx, threads, _SUM)
            total = red[0]
            prev_v = pos_inf
            prev_j = -1
            for r in range(k):
                best_v = neg_inf
                best_j = m
                for j in range(tx, m, threads):
                    v = S[i, j]
                    after = v < prev_v or (v == prev_v and j > prev_j)
                    if j != own and after and (v > best_v or (v == best_v and j < best_j)):
                        best_v = v
                        best_j = j
                cuda.syncthreads()
                red[tx] = best_v
                redi[tx] = best_j
                _block_reduce(red, redi, tx, threads, _ARGMAX)
                best_v = red[0]
                best_j = redi[0]
                w = math.exp(best_v - top) / total
                if tx == 0:
                    if best_j < m and w > zero:
                        out_idx[i, r] = best_j
                        out_w[i, r] = w
                    else:
                        out_idx[i, r] = -1
                        out_w[i, r] = zero
                prev_v = best_v
                prev_j = best_j
            cuda.syncthreads()

    return kernel


@lru_cache(maxsize=None)
def pool_kernel(dtype, d, family, code, with_logw, with_sq, exclude_self, threads, key_tile,
                value_chunk, n_disc=0, qpt=1):
    """Fused pooling kernel, ``qpt`` queries per thread.

    A block's ``threads * qpt`` queries are its threads' ``k``-th queries
    for ``k < qpt``, each ``threads`` apart (coalesced loads); each key of a
    tile is read from shared memory once per thread and scored against its
    ``qpt`` queries.

    The tests that a pair needs only in some calls (is this key the query
    itself, is the score ``-inf``) are compiled in only for those calls:
    they cost as much as the rest of the gaussian pair at d = 3.

    ``n_disc`` discrete features add ``LT[f, QC[i, f], KCT[f, j]]`` to
    every score (the tables of :mod:`nwattn._cpu.discrete`; codes int32),
    the key codes of a tile staged in shared memory with the keys.

    Signature ``(Q, K, V, logw, scale, wv, self_shift, split_size,
    QC, KCT, LT, out_max, out_acc)``; arrays as in :func:`nwattn._cpu.sweep.row_tasks`
    except that the keys ``K`` (m, d) and centred values ``V`` (m, p) are
    row-major, one row per key (``out_acc`` the packed states of ``nwattn._layout.pool_layout``:
    normaliser, values, squares), ``wv`` the additive score's vector
    (empty for the other scores). Grid: x over blocks of ``threads``
    queries, y over key splits of ``split_size`` keys, z over chunks of
    ``value_chunk`` value columns (each chunk recomputes the scores but
    keeps its accumulators small enough for registers).
    """
    ftype = np.dtype(dtype).type
    nbtype = from_dtype(np.dtype(dtype))
    # Scores, key log-weights, discrete tables and the running maxima in
    # base 2; the maxima written out are natural again, as every state is.
    # In float64 libdevice's exp2 costs a float64 instruction more than its
    # exp: natural units there.
    unit = LOG2E if ftype is np.float32 else 1.0
    score = _score_function(ftype, d, family, code, unit)
    in_units = ftype(unit)  # natural log-weights to the scores' units
    to_natural = ftype(1.0 / unit)
    zero = ftype(0.0)
    neg_inf = ftype(-math.inf)
    # One chunk's state as pool_layout packs it; its powers (all 1: these
    # columns carry the weights once) are a constant array of the kernel.
    chunk_layout = pool_layout(value_chunk, with_sq)
    width = chunk_layout.width
    powers = chunk_layout.powers
    exp2 = _exp2_function(ftype)
    # Scores of kernels positive everywhere are finite (the caller refuses
    # inputs that would overflow); zero key weights and compact supports
    # give -inf, which must not reach exp(-inf - -inf).
    # A discrete kernel's weight is 0 at lambda = 0: -inf in the score.
    may_be_inf = (with_logw or n_disc > 0
                  or (family == DISTANCE and code not in (GAUSSIAN, LAPLACIAN)))
    # A -inf score must not reach exp(-inf - -inf) (the query itself scores -inf too).
    skip_inf = may_be_inf or exclude_self
    nd1 = max(n_disc, 1)
    block_queries = threads * qpt

    @cuda.jit
    def kernel(Q, K, V, logw, scale, wv, self_shift, split_size, QC, KCT, LT, out_max,
               out_acc):
        tx = cuda.threadIdx.x
        first = cuda.blockIdx.x * block_queries + tx
        s = cuda.blockIdx.y
        c0 = cuda.blockIdx.z * value_chunk
        n = Q.shape[0]
        m = K.shape[0]
        # Columns of this chunk that exist; the loops over the chunk run over
        # all value_chunk columns (a compile-time count, so they unroll), the
        # missing ones padded with zeros in shared memory.
        pc = min(value_chunk, V.shape[1] - c0)
        k0 = s * split_size
        k1 = min(m, k0 + split_size)

        # A key's features, and its values, are adjacent in shared memory:
        # the loop reads them with 128-bit loads, a quarter of the load
        # instructions of one feature per load (96 of the 206 instructions
        # of a scaled-dot pair at d = 64 were loads; benchmarks/gpu_sass.py).
        keys = cuda.shared.array((key_tile, d), nbtype)
        vals = cuda.shared.array((key_tile, value_chunk), nbtype)
        lw = cuda.shared.array(key_tile, nbtype)
        kcodes = cuda.shared.array((nd1, key_tile), int32)
        q = cuda.local.array((qpt, d), nbtype)
        qc = cuda.local.array((qpt, nd1), int32)
        # The key of the pair, read from shared memory once for the qpt scores.
        kv = cuda.local.array((d, 1), nbtype)
        # Each query's packed state (normaliser, values, squares), which the
        # package's one rule rescales, and running maximum; their indices are
        # compile-time constants after unrolling, so they stay in registers.
        st = cuda.local.array((qpt, width), nbtype)
        mx = cuda.local.array(qpt, nbtype)
        sk = cuda.local.array(qpt, nbtype)

        # Queries beyond n are scored against zeros and never written out.
        active = first < n
        for k in range(qpt):
            i = first + k * threads
            for t in range(d):
                q[k, t] = Q[i, t] if i < n else zero
            for f in range(n_disc):
                qc[k, f] = QC[i, f] if i < n else 0
            for c in range(width):
                st[k, c] = zero
            mx[k] = neg_inf

        for j0 in range(k0, k1, key_tile):
            nt = min(key_tile, k1 - j0)
            # Every thread must be done with the previous tile before it is
            # overwritten, and the new tile complete before it is read.
            cuda.syncthreads()
            # The threads copy the tile's rows entry by entry in memory order:
            # coalesced reads of the row-major K and V, and writes to
            # consecutive shared-memory words (a thread per key would write
            # d words apart: a 32-way bank conflict at d = 64).
            for x in range(tx, nt * d, threads):
                jj = x // d
                t = x - jj * d
                keys[jj, t] = K[j0 + jj, t]
            for x in range(tx, nt * value_chunk, threads):
                jj = x // value_chunk
                c = x - jj * value_chunk
                vals[jj, c] = V[j0 + jj, c0 + c] if c < pc else zero
            for jj in range(tx, nt, threads):
                if with_logw:
                    lw[jj] = logw[j0 + jj]
                for f in range(n_disc):
                    kcodes[f, jj] = KCT[f, j0 + jj]
            cuda.syncthreads()
            if not active:
                continue
            # An unsigned 32-bit counter: a range() loop counts in 64 bits
            # (even over a uint32), a signed index adds a wraparound test;
            # together 6 machine instructions per key (benchmarks/gpu_sass.py).
            jj = uint32(0)
            nt32 = uint32(nt)
            while jj < nt32:
                for t in range(d):
                    kv[t, 0] = keys[jj, t]
                # The key's scores against the thread's queries first, and
                # whether any of them raises its query's maximum: one branch
                # per key, almost never taken after the first keys, where a
                # test per pair would make the compiler predicate the rescale
                # into every pair's instructions.
                rise = False
                for k in range(qpt):
                    sc = score(q[k], kv, 0, scale, wv)
                    # (a multiply-add each: base 2 costs nothing more here)
                    if with_logw:
                        sc += lw[jj] * in_units
                    for f in range(n_disc):
                        sc += LT[f, qc[k, f], kcodes[f, jj]] * in_units
                    # The query itself scores -inf: skipped like a key outside the support.
                    if exclude_self and j0 + jj == first + k * threads + self_shift:
                        sc = neg_inf
                    sk[k] = sc
                    rise |= sc > mx[k]
                if rise:
                    for k in range(qpt):
                        if sk[k] > mx[k]:
                            # The running maximum rises, and the state follows
                            # the package's one rescale rule.
                            rescale_row(st[k], powers, exp2(mx[k] - sk[k]))
                            mx[k] = sk[k]
                for k in range(qpt):
                    sc = sk[k]
                    if skip_inf and sc == neg_inf:
                        continue
                    e = exp2(sc - mx[k])
                    st[k, 0] += e
                    for c in range(value_chunk):
                        st[k, 1 + c] += e * vals[jj, c]
                    if with_sq:
                        for c in range(value_chunk):
                            v = vals[jj, c]
                            st[k, 1 + value_chunk + c] += e * v * v
                jj = uint32(jj + uint32(1))

        # The packed layout: normaliser, then the p values, then their squares.
        p = V.shape[1]
        for k in range(qpt):
            i = first + k * threads
            if i < n:
                out_max[s, i] = mx[k] * to_natural
                out_acc[s, i, 0] = st[k, 0]
                for c in range(pc):
                    out_acc[s, i, 1 + c0 + c] = st[k, 1 + c]
                if with_sq:
                    for c in range(pc):
                        out_acc[s, i, 1 + p + c0 + c] = st[k, 1 + value_chunk + c]

    return kernel


@cuda.jit
def merge_kernel(out_max, out_acc, powers):
    """Merge the packed states of every key split into split 0, one thread per query.

    Splits are merged in order, so the result does not depend on the launch.
    The rule is the package's one rule, :func:`nwattn._layout.merge_query`,
    compiled for the device: a split with no key in the support contributes
    nothing.
    """
    i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if i >= out_max.shape[1]:
        return
    for s in range(1, out_max.shape[0]):
        merge_query(out_max[0], out_acc[0], i, out_max[s], out_acc[s], i, powers)


@lru_cache(maxsize=None)
def finalize_kernel(dtype, values_1d, with_std):
    """Kernel ``(norm, acc, sq, center, pred, std, n_empty)``: ``c + a / l`` on the device.

    The device twin of :func:`nwattn.state.finalize_state`, so device inputs
    give device outputs. ``n_empty[0]`` counts the queries with an empty
    neighbourhood (their outputs are NaN).
    """
    ftype = np.dtype(dtype).type
    zero = ftype(0.0)
    nan = ftype(math.nan)

    @cuda.jit
    def kernel(snorm, sacc, ssq, center, pred, std, n_empty):
        i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if i >= snorm.shape[0]:
            return
        norm = snorm[i]
        empty = not norm > zero
        if empty:
            cuda.atomic.add(n_empty, 0, 1)
        for c in range(sacc.shape[1]):
            if empty:
                mean = nan
            else:
                mean = sacc[i, c] / norm
            if values_1d:
                pred[i] = center[c] + mean
            else:
                pred[i, c] = center[c] + mean
            if with_std:
                if empty:
                    sd = nan
                else:
                    sd = math.sqrt(max(ssq[i, c] / norm - mean * mean, zero))
                if values_1d:
                    std[i] = sd
                else:
                    std[i, c] = sd

    return kernel


# --- preparation of device inputs, so that they never travel to the host ---


@cuda.jit
def stats_kernel(X, allow_neg_inf, out):
    """``out[0]`` += number of rejected entries of the 2-D ``X``; ``out[1]`` = max finite |X|.

    Rejected: NaN and infinities, or only NaN and ``+inf`` when
    ``allow_neg_inf`` (scores, where ``-inf`` marks an excluded key).
    """
    i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if i >= X.shape[0]:
        return
    bad = 0
    big = 0.0
    for t in range(X.shape[1]):
        x = X[i, t]
        if math.isfinite(x):
            big = max(big, abs(x))
        elif not (allow_neg_inf and x < 0):
            bad += 1
    if bad:
        cuda.atomic.add(out, 0, 1.0 * bad)
    cuda.atomic.max(out, 1, big)


@cuda.jit
def scale_kernel(X, h, out, transpose):
    """``out = X / h`` (n, d), or its transpose (d, n) when ``transpose``."""
    i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if i >= X.shape[0]:
        return
    for t in range(X.shape[1]):
        if transpose:
            out[t, i] = X[i, t] / h[t]
        else:
            out[i, t] = X[i, t] / h[t]


@cuda.jit
def transpose_kernel(XT, out):
    """``out = XT.T``, a thread per row of ``out`` (coalesced reads of ``XT``)."""
    i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if i >= out.shape[0]:
        return
    for t in range(out.shape[1]):
        out[i, t] = XT[t, i]


@cuda.jit
def columns_kernel(X, cols, out):
    """``out[:, t] = X[:, cols[t]]``: some columns of ``X``, gathered."""
    i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if i >= X.shape[0]:
        return
    for t in range(cols.shape[0]):
        out[i, t] = X[i, cols[t]]


@lru_cache(maxsize=None)
def column_sum_kernel(threads):
    """Kernel ``(V, rows_per_block, partial)``: ``partial[b, c]`` = sum of column ``c`` over block ``b``'s rows.

    Block ``b`` takes rows ``[b * rows_per_block, (b + 1) * rows_per_block)``
    (a column of one thread summing every row would run serially over the
    whole array); its ``threads`` threads stride over them, neighbours at
    neighbouring rows, and add up their float64 sums in shared memory in a
    fixed order: no atomic operation, so the sums repeat bit for bit.
    :func:`partial_sum_kernel` adds the blocks' sums.
    """
    @cuda.jit
    def kernel(V, rows_per_block, partial):
        red = cuda.shared.array(threads, np.float64)
        b = cuda.blockIdx.x
        tx = cuda.threadIdx.x
        r0 = b * rows_per_block
        r1 = min(V.shape[0], r0 + rows_per_block)
        for c in range(V.shape[1]):
            total = 0.0
            for r in range(r0 + tx, r1, threads):
                total += V[r, c]
            red[tx] = total
            _block_reduce(red, red, tx, threads, _SUM)
            if tx == 0:
                partial[b, c] = red[0]
            # red[0] is read before the next column overwrites red
            cuda.syncthreads()

    return kernel


@cuda.jit
def partial_sum_kernel(partial, out):
    """``out[c]`` = sum over blocks of ``partial[:, c]``, in block order; a thread per column."""
    c = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if c >= partial.shape[1]:
        return
    total = 0.0
    for b in range(partial.shape[0]):
        total += partial[b, c]
    out[c] = total


@cuda.jit
def centre_kernel(V, center, VT):
    """``VT = (V - center).T``; the pooling kernel squares these values itself."""
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if j >= V.shape[0]:
        return
    for c in range(V.shape[1]):
        VT[c, j] = V[j, c] - center[c]

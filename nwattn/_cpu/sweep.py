"""The one CPU sweep: every streaming computation of the package runs here.

The work is cut into tasks, one per (block of queries, split of keys). A
task keeps the packed online-softmax state of its queries
(:mod:`nwattn._layout`) in thread-local arrays and visits its keys tile by
tile, in the order its tile schedule gives; nothing of size n x m is ever
allocated. Each task writes only its own rows of its own split's output,
so no two threads share an accumulator. When the keys were split, the
partial states are merged exactly by the layout's rule, always in split
order, so the result does not depend on the number of threads.

What a task does with a tile comes from :mod:`nwattn._cpu.strategies`: the
score strategy (a kernel, a learned score, a kernel with its bandwidth
slopes), the absorb strategy (which accumulators) and the tile schedule.
The strategies and the kernel come as a :class:`~nwattn._cpu.choice.SweepChoice`,
and each choice is a compiled function of its own with the chosen code
inlined and the rest pruned, cached on disk.

Two bodies share those strategies. The row body (:func:`row_tasks`)
streams one query at a time and suits few features and outputs. The matrix
body (:func:`matrix_tasks`, pooling only) handles a block of queries against
a tile of keys with matrix products: the scores of a dot-product score with
many features are one product ``Q_block @ K_tile.T``, and the weighted sums
of many outputs are one product ``W_tile @ V_tile``. The products run in
the BLAS that NumPy's linear algebra in Numba uses, limited to one thread
per task so the tasks, not the BLAS, own the cores.

The compiled functions run a range of tasks one after the other, without
the GIL; the host function :func:`sweep` runs the tasks in chunks of a
fraction of a second each, each chunk's range cut among the threads
(:func:`nwattn._parallel.run_ranges`), and gets control back between
chunks: that is where a Ctrl-C is raised as KeyboardInterrupt and where a
progress callback runs.
"""

import contextlib
import functools
import hashlib
import math
import time
import types as pytypes
import warnings

import numba
import numpy as np
from numba import njit
from numba.core.cpu_options import ParallelOptions
from numba.core.errors import NumbaIRAssumptionWarning, NumbaPerformanceWarning

from .. import _config
from .._batch import single_item
from .._config import FASTMATH
from .._layout import merge_rows, n_basis
from .._plan import plan_splits
from .._parallel import run_ranges, serial_blas
from ..kernels import DOT
from .choice import sweep_choice
from .discrete import absorb_discrete_slopes, add_discrete, add_discrete_moment_slopes
from .fastexp import like
from .rows import bias_row, mask_row, row_max, score_row
from .moments import (add_moment_slopes, local_basis, local_score, local_slope_score,
                      weigh_by_polynomial)
from .tree import (kd_order, phase_tiles, relative_cut, schedule_phases, tile_range,
                   tile_tree)
from .strategies import (DENSE, KERNEL, LEARNED, MOMENT_SLOPES, MOMENTS, POOL, SLOPES, SMOOTHER,
                         absorb_moments, absorb_offsets, absorb_pool, absorb_slope_tile,
                         causal_end, kernel_score, learned_score, slope_score, tile_bounds,
                         tile_count, tile_padded, weigh_row)

# When it inlines a strategy whose loops call an inlined overload (the fast
# exponentials), Numba's SSA pass reports "variable ... is not in scope", a
# pedantic internal check (NumbaIRAssumptionWarning) about names it has
# just renamed itself; the compiled code is right (every strategy is tested
# against NumPy references). Compiling the kernels on a first call should
# not show users a request to report a Numba bug.
warnings.filterwarnings("ignore", message=r"variable '.*' is not in scope",
                        category=NumbaIRAssumptionWarning)

# Numba's parallel pipeline with every parallel transformation turned off:
# the tasks stay serial code (no parallel region is ever launched from the
# threads that run them), but the pipeline's passes still simplify the
# function (dead code, copy propagation, its CFG) before lowering, which
# drops reference-count updates of the array views the inlined inner loops
# take (46 NRT_decref calls against 78 in the LLVM IR of the gaussian row
# body). Pooling ran 1.3x (float64) to 1.5x (float32) faster than the same
# code compiled without it, for about 1 s more compile time.
# (An options object, not a dictionary: Numba empties a dictionary as it
# reads it, and the next compilation would then read every option on.)
_SIMPLIFY_ONLY = ParallelOptions({"comprehension": False, "prange": False, "setitem": False,
                                  "reduction": False, "numpy": False, "stencil": False,
                                  "fusion": False, "inplace_binop": False})

# Numba says "parallel=True was specified but no transformation for parallel
# execution was possible" when it compiles such a function: that is the
# intent here (see _SIMPLIFY_ONLY), so the warning is dropped for this
# module's functions only.
warnings.filterwarnings(
    "ignore", category=NumbaPerformanceWarning,
    message=r"\s*The keyword argument 'parallel=True' was specified but no transformation"
            r"[\s\S]*nwattn[\\/]_cpu[\\/]sweep\.py")

# Spare elements at the end of each scratch row of a task. LLVM vectorises a
# loop that stores into one array while reading others (and summing) behind
# a run-time check that the arrays start at least one vector block apart
# (up to 256 bytes), and runs the scalar loop otherwise, whose sums round
# differently. Rows of a few keys (the small tiles of the tests) could be
# allocated that close, and a result would then depend on where the
# allocator (and the thread it ran on) put them; 64 spare elements keep any
# two scratch rows far enough apart for the vector loop always to run. (A
# scratch row may still lie right after a small input array: a sum whose
# last bit matters across calls, the slopes', has a loop of its own.)
SCRATCH_PAD = 64


def signature_key(args):
    """A short name for the Numba types of ``args`` (host side; about 0.1 ms a call).

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn._cpu.sweep import signature_key
    >>> signature_key((np.zeros(3), None)) == signature_key((np.ones(5), None))
    True
    >>> signature_key((np.zeros(3),)) == signature_key((np.zeros(3, np.float32),))
    False
    """
    names = ",".join(str(numba.typeof(a)) for a in args)
    return hashlib.sha1(names.encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def sweep_driver(body, choice, key):
    """The tasks of ``body`` (:func:`row_tasks`, :func:`matrix_tasks`), compiled for a choice and signature.

    ``key`` (:func:`signature_key`) names the types of the arguments. Each
    choice and signature gets a compiled function of its own, named after
    them, rather than being one signature of one shared function: Numba's
    on-disk cache keeps a function's signatures in one index and numbers
    their files in the order they are written, so two processes compiling
    two signatures of one function at once (Dask workers, a process pool,
    or tests run by several workers, on a cold cache) can each take the
    same number, and one signature then loads the other's code. A function
    of one signature is written only by processes that compile that same
    code.

    The function runs its tasks one after the other and releases the GIL
    (``nogil``): :func:`nwattn._parallel.run_ranges` runs ranges of tasks
    on several threads at once. It is one serial function, not a
    ``parallel=True`` region calling a task body: Numba compiles such a
    region as a function of its own that links the body's code, and LLVM
    then optimises that code again with each function that links it,
    which took about as long as compiling the body itself.

    Examples
    --------
    >>> from nwattn._cpu.choice import sweep_choice
    >>> from nwattn._cpu.sweep import row_tasks, sweep_driver
    >>> driver = sweep_driver(row_tasks, sweep_choice(0, 0, 0, 2), "0123456789ab")
    >>> driver.py_func.__name__
    'row_tasks_0_0_0_2_0123456789ab'
    >>> driver is sweep_driver(row_tasks, sweep_choice(0, 0, 0, 2), "0123456789ab")
    True
    """
    name = (f"{body.__name__}_{choice.score}_{choice.absorb}_{choice.family}_{choice.code}"
            f"_{key}")
    tasks = body(choice)
    func = pytypes.FunctionType(tasks.__code__, tasks.__globals__, name, tasks.__defaults__,
                                tasks.__closure__)
    func.__qualname__ = name
    func.__doc__ = tasks.__doc__
    # error_model="numpy": without it Numba guards every float division
    # against a zero divisor, a branch that stops LLVM from vectorising the
    # loops of the compact kernels' log-weights (whose divisors are never zero).
    return njit(parallel=_SIMPLIFY_ONLY, nogil=True, cache=True, fastmath=FASTMATH,
                error_model="numpy")(func)


def row_tasks(choice):
    """The row body of a choice: tasks ``task0:task1``, one after the other (plain Python).

    Compiled per choice and signature by :func:`sweep_driver`, with the
    choice's numbers (:mod:`nwattn._cpu.choice`) as constants: every branch
    on them is pruned before anything is inlined, so only the chosen score,
    absorb strategy and kernel loop are compiled. The one on ``disc is
    None``, which adds the discrete features' terms to the score of any
    strategy but the learned ones, is resolved by the type of ``disc``.
    A task is queries ``i0:i1`` of one batch item against its keys
    ``k0:k1``, into split ``s``; positions are within the item, whose
    queries start at row ``qb`` of ``Q`` (and of the outputs), keys at
    column ``kb`` of ``KT`` and values at column ``vb`` of ``VT``. The
    strategies other than pooling's take one item, whose keys and values
    share columns (``kb == vb``).
    """
    SCORE, ABSORB, FAMILY, CODE = choice.score, choice.absorb, choice.family, choice.code

    def row_tasks(Q, KT, VT, VT2, VS, logw, wv, slopes, qscale, disc, degree, scale, self_shift,
                  items, n_item, m_item, LW, BIAS, b_step, diag, query_block, key_tile,
                  n_split, split_size, tree, task0, task1, powers, offsets, out_max, out_acc):
        """States of the queries against the key splits of tasks ``task0:task1``, row body.

        Parameters
        ----------
        Q : (N, d) queries of every batch item, already divided by the
            bandwidth (or projected); item ``b``'s ``n_item`` queries are rows
            ``items[b, 0]:items[b, 0] + n_item``, which are also its output rows.
        KT : (d, M) keys, transposed, likewise prepared; item ``b``'s ``m_item``
            keys are columns ``items[b, 1]:items[b, 1] + m_item`` (items that
            share keys share columns: nothing is copied per item).
        VT, VT2 : (p, M') centred values and their squares (VT2 may have no
            rows); item ``b``'s from column ``items[b, 2]``.
        VS : (r, m) per-key variances of the standard errors' sandwich (local
            polynomial's moments only; may have no rows).
        logw : (m,) log key weights, or empty (one batch item only; pooling
            passes its weights in ``LW``).
        wv : None, or (r,) the additive score's vector (``LEARNED`` score; the
            choice's ``family`` is then the score's kind).
        slopes : None, or an empty array with ``SLOPES`` and ``MOMENT_SLOPES``.
        qscale : None, or (n,) the factor of each query's offsets for the
            local polynomial's moments (``LOCAL`` score).
        disc : None, or the discrete features ``(QC, KCT, LT, DT)`` whose
            table lookups are added to every score (:mod:`nwattn._cpu.discrete`;
            one batch item); their parameters follow the continuous features'
            in the slopes.
        degree : the local polynomial's degree (used with ``qscale`` only).
        scale : the dot score's scale (see ``nwattn.kernels``).
        self_shift : query ``i`` of an item skips the item's key ``i + self_shift``
            (leave-one-out), or a value that puts every query's self outside
            ``[0, m_item)``.
        items : (B, 5) int64, per batch item: first query row, first key
            column, first value column, row of ``LW`` (-1: none), first row of
            ``BIAS`` (-1: none).
        n_item, m_item : queries and keys of one item.
        LW : (r1, m_item) key log-weights (weights, padding: ``-inf``).
        BIAS : (r2, m_item) additive biases; query ``i`` of item ``b`` uses row
            ``items[b, 4] + b_step * i``.
        diag : causal limit: query ``i`` attends keys ``j <= i + diag`` of its
            item (``n_item + m_item`` or more when there is no causal order).
        query_block, key_tile, n_split, split_size : work decomposition.
        tree : None (every tile of a task's keys) or the pruned schedule's
            tile tree (:func:`pruned_schedule`; one batch item, queries and
            keys in its order): the tiles a block visits, and each query's
            own key to skip (``self_shift`` then unused).
        task0, task1 : the tasks to run; task ``t`` is batch item ``t // (n_b *
            n_split)``, query block ``(t // n_split) % n_b`` (``n_b`` blocks per
            item) against key split ``t % n_split``, and writes only its own
            rows of its own split's output, so any range of tasks can run on
            its own.
        powers, offsets : the layout's column powers and block offsets.
        out_max : (n_split, N); out_acc : (n_split, N, width) packed states.
        """
        for task in range(task0, task1):
            s, qb, kb, vb, lw_row, b_row, i0, i1, k0, k1 = task_span(
                task, items, n_item, m_item, query_block, n_split, split_size)
            family = FAMILY
            code = CODE
            nq = i1 - i0
            q0 = qb + i0
            dtype = Q.dtype
            smax = np.full(nq, -math.inf, dtype=dtype)
            S = np.zeros((nq, out_acc.shape[2]), dtype=dtype)
            row = np.empty(key_tile + SCRATCH_PAD, dtype=dtype)
            if slopes is None:
                slope = np.empty(0, dtype=dtype)
            else:
                slope = np.empty(key_tile + SCRATCH_PAD, dtype=dtype)
            term = np.empty_like(slope)
            d = Q.shape[1]
            if qscale is None:
                nb = 0
                Z = np.empty((0, key_tile), dtype=dtype)
                WZ = np.empty(0, dtype=dtype)
            else:
                nb = n_basis(d, degree) - 1
                Z = np.empty((max(nb, d), key_tile + SCRATCH_PAD), dtype=dtype)
                WZ = np.empty(key_tile + SCRATCH_PAD, dtype=dtype)
            WS = np.empty(key_tile + SCRATCH_PAD if VS.shape[0] > 0 else 0, dtype=dtype)
            # The additive score can keep its tanh values for a gradient; pooling
            # does not need them.
            TH = np.empty((0, key_tile), dtype=dtype)
            k1 = causal_end(k0, k1, i1, diag)
            own = own_keys(tree, kb, i0, q0, nq, self_shift)
            visit = np.empty(16, dtype=np.int64)
            qs_min = 1.0 if qscale is None else float(qscale[q0:q0 + nq].min())
            for phase in range(1 if tree is None else tree[9]):
                if tree is None:
                    n_visit = tile_count(DENSE, k0, k1, key_tile)
                else:
                    n_visit, runs = phase_tiles(tree, phase, Q, q0, nq, qs_min, smax, S, offsets[0],
                                                k0, k1, key_tile, visit)
                for t in range(n_visit):
                    if tree is None:
                        a0, a1 = tile_bounds(DENSE, t, k0, k1, key_tile)
                    else:
                        a0, a1 = tile_range(tree, runs, t, k0, k1)
                    if tile_padded(LW, lw_row, a0, a1):
                        continue
                    n = a1 - a0
                    j0 = kb + a0
                    j1 = kb + a1
                    jv = vb + a0
                    for ii in range(nq):
                        i = q0 + ii
                        il = i0 + ii
                        self_j = own[ii]
                        brow = b_row + b_step * il if b_row >= 0 else -1
                        cut = il + diag + 1 - a0
                        # Branches on the choice's constants: pruned when compiling.
                        if ABSORB == MOMENTS or ABSORB == MOMENT_SLOPES:
                            if ABSORB == MOMENTS:
                                tmax = local_score(Q, i, KT, j0, j1, code, qscale[i], logw,
                                                   self_j, row, Z)
                            else:
                                tmax = local_slope_score(Q, i, KT, j0, j1, code, qscale[i], logw,
                                                         self_j, row, Z, slope)
                            if disc is not None:
                                tmax = add_discrete(row, n, i, j0, disc[0], disc[1], disc[2])
                            if mask_row(row, n, LW, lw_row, BIAS, brow, a0, cut):
                                tmax = row_max(row, n)
                            absorb_moments(row, n, tmax, Z, nb, d, VT, VT2, VS, jv, ii, smax, S,
                                           powers, offsets, WS, WZ)
                            if ABSORB == MOMENT_SLOPES:
                                if tmax != -math.inf:
                                    add_moment_slopes(row, slope, n, Z, nb, d, VT, jv, ii, S,
                                                      offsets[6], offsets[7], term, WZ)
                                    if disc is not None:
                                        add_discrete_moment_slopes(row, n, i, j0, disc[0], disc[1],
                                                                   disc[3], Z, nb, d, VT, ii, S,
                                                                   offsets[6], offsets[7], term,
                                                                   WZ)
                        elif ABSORB == SLOPES:
                            tmax = slope_score(Q, i, KT, j0, j1, family, code, scale, logw, self_j,
                                               row, slope)
                            if disc is not None:
                                tmax = add_discrete(row, n, i, j0, disc[0], disc[1], disc[2])
                            if mask_row(row, n, LW, lw_row, BIAS, brow, a0, cut):
                                tmax = row_max(row, n)
                            absorb_slope_tile(row, n, tmax, Q, i, KT, family, VT, j0, ii, smax, S,
                                              powers, offsets, slope, term)
                            if disc is not None:
                                if tmax != -math.inf:
                                    absorb_discrete_slopes(row, n, i, j0, disc[0], disc[1], disc[3],
                                                           VT, S, ii, offsets[2] + d,
                                                           offsets[3] + d * VT.shape[0], term)
                        elif SCORE == KERNEL:
                            tmax = kernel_score(Q, i, KT, j0, j1, family, code, scale, logw, self_j,
                                                row)
                            if disc is not None:
                                tmax = add_discrete(row, n, i, j0, disc[0], disc[1], disc[2])
                            if mask_row(row, n, LW, lw_row, BIAS, brow, a0, cut):
                                tmax = row_max(row, n)
                            absorb_pool(row, n, tmax, VT, VT2, jv, ii, smax, S, powers, offsets)
                        else:
                            tmax = learned_score(Q, i, KT, j0, j1, family, scale, logw, self_j, wv,
                                                 row, TH)
                            if mask_row(row, n, LW, lw_row, BIAS, brow, a0, cut):
                                tmax = row_max(row, n)
                            absorb_pool(row, n, tmax, VT, VT2, jv, ii, smax, S, powers, offsets)
            for ii in range(nq):
                out_max[s, q0 + ii] = smax[ii]
                for col in range(S.shape[1]):
                    out_acc[s, q0 + ii, col] = S[ii, col]

    return row_tasks


def matrix_tasks(choice):
    """The matrix body of a choice: tasks ``task0:task1``, one after the other (plain Python).

    Compiled per choice and signature by :func:`sweep_driver`, with the
    choice's numbers as constants, as :func:`row_tasks` is.
    """
    ABSORB, FAMILY, CODE = choice.absorb, choice.family, choice.code

    def matrix_tasks(tree, Q, KT, K, V, V2, logw, scale, self_shift, gemm_scores, coef, qscale,
                     degree, items, n_item, m_item, LW, BIAS, b_step, diag, query_block,
                     key_tile, n_split, split_size, task0, task1, powers, offsets, out_max,
                     out_acc):
        """States of tasks ``task0:task1`` as :func:`row_tasks` computes them, matrix-product body.

        ``K`` (M, d) are the keys untransposed (used when ``gemm_scores``; may
        have no rows otherwise), ``V`` (M', p) and ``V2`` (M', p2) the centred
        values and their squares untransposed; the batch items and masks are
        those of :func:`row_tasks`. ``coef`` is None (``KERNEL`` score,
        ``POOL``) or (n, P): the ``SMOOTHER`` strategy, whose weights are the
        ``LOCAL`` score's times ``coef[i] . phi(z)`` in the basis of ``degree``
        (offsets scaled by ``qscale[i]``).
        """
        for task in range(task0, task1):
            s, qb, kb, vb, lw_row, b_row, i0, i1, k0, k1 = task_span(
                task, items, n_item, m_item, query_block, n_split, split_size)
            family = FAMILY
            code = CODE
            p = V.shape[1]
            p2 = V2.shape[1]
            nq = i1 - i0
            q0 = qb + i0
            d = Q.shape[1]
            o_norm, o_acc, o_sq = offsets[0], offsets[1], offsets[2]
            smax = np.full(nq, -math.inf, dtype=Q.dtype)
            S = np.zeros((nq, out_acc.shape[2]), dtype=Q.dtype)
            # Dot scores: the scale goes into the queries once per task
            # instead of into every score of every tile (exact for the
            # usual 1/sqrt(d) when d is a power of four).
            Qb = Q[q0:q0 + nq] * like(Q, scale) if gemm_scores else Q[q0:q0 + nq]
            # One buffer for every tile's scores and one per product: a
            # tile's arrays are not allocated (and freed) anew.
            Wbuf = np.empty(nq * key_tile + SCRATCH_PAD, dtype=Q.dtype)
            acc = np.empty((nq, p), dtype=Q.dtype)
            sq = np.empty((nq, p2), dtype=Q.dtype)
            if coef is None:
                nb = 0
                Z = np.empty((0, 0), dtype=Q.dtype)
                PV = np.empty(0, dtype=Q.dtype)
            else:
                nb = n_basis(d, degree) - 1
                Z = np.empty((max(nb, d), key_tile + SCRATCH_PAD), dtype=Q.dtype)
                PV = np.empty(key_tile + SCRATCH_PAD, dtype=Q.dtype)
            k1 = causal_end(k0, k1, i1, diag)
            own = own_keys(tree, kb, i0, q0, nq, self_shift)
            visit = np.empty(16, dtype=np.int64)
            qs_min = 1.0 if coef is None else float(qscale[q0:q0 + nq].min())
            for phase in range(1 if tree is None else tree[9]):
                if tree is None:
                    n_visit = tile_count(DENSE, k0, k1, key_tile)
                else:
                    n_visit, runs = phase_tiles(tree, phase, Q, q0, nq, qs_min, smax, S, o_norm, k0,
                                                k1, key_tile, visit)
                for t in range(n_visit):
                    if tree is None:
                        a0, a1 = tile_bounds(DENSE, t, k0, k1, key_tile)
                    else:
                        a0, a1 = tile_range(tree, runs, t, k0, k1)
                    if tile_padded(LW, lw_row, a0, a1):
                        continue
                    n = a1 - a0
                    j0 = kb + a0
                    j1 = kb + a1
                    W = Wbuf[:nq * n].reshape((nq, n))
                    if ABSORB == SMOOTHER:
                        # Each row's local weights times its polynomial, then one
                        # product with the values as for pooling.
                        for ii in range(nq):
                            i = q0 + ii
                            il = i0 + ii
                            row = W[ii]
                            local_score(Q, i, KT, j0, j1, code, qscale[i], logw, own[ii], row, Z)
                            brow = b_row + b_step * il if b_row >= 0 else -1
                            mask_row(row, n, LW, lw_row, BIAS, brow,
                                     a0, il + diag + 1 - a0)
                            if weigh_row(row, n, ii, smax, S, powers, o_norm):
                                local_basis(Z, nb, d, n)
                                weigh_by_polynomial(row, n, Z, nb, coef, i, PV)
                    else:
                        if FAMILY == DOT and gemm_scores:
                            np.dot(Qb, K[j0:j1].T, W)
                        # Each row scored (unless the product did it), masked
                        # and weighed while it is in the first-level cache.
                        for ii in range(nq):
                            i = q0 + ii
                            il = i0 + ii
                            row = W[ii]
                            if FAMILY == DOT and gemm_scores:
                                bias_row(row, logw, j0, j1, own[ii])
                            else:
                                score_row(Q, i, KT, j0, j1, family, code, scale, logw, own[ii],
                                          row)
                            brow = b_row + b_step * il if b_row >= 0 else -1
                            mask_row(row, n, LW, lw_row, BIAS, brow, a0, il + diag + 1 - a0)
                            weigh_row(row, n, ii, smax, S, powers, o_norm)
                    jv = vb + a0
                    np.dot(W, V[jv:jv + n], acc)
                    for ii in range(nq):
                        for col in range(p):
                            S[ii, o_acc + col] += acc[ii, col]
                    if p2 > 0:
                        np.dot(W, V2[jv:jv + n], sq)
                        for ii in range(nq):
                            for col in range(p2):
                                S[ii, o_sq + col] += sq[ii, col]
            for ii in range(nq):
                out_max[s, q0 + ii] = smax[ii]
                for col in range(S.shape[1]):
                    out_acc[s, q0 + ii, col] = S[ii, col]

    return matrix_tasks


@njit(inline="always")
def task_span(task, items, n_item, m_item, query_block, n_split, split_size):
    """Where task ``task`` works: ``(s, qb, kb, vb, lw_row, b_row, i0, i1, k0, k1)``.

    Task ``t`` is batch item ``t // (n_b * n_split)`` (``n_b`` query blocks
    per item), query block ``(t // n_split) % n_b`` against key split
    ``t % n_split``: its split ``s``, the item's first query row ``qb``,
    key column ``kb`` and value column ``vb``, its rows of ``LW`` and
    ``BIAS``, and its queries ``i0:i1`` and keys ``k0:k1`` within the item.
    """
    n_b = (n_item + query_block - 1) // query_block
    it = task // (n_b * n_split)
    r = task - it * (n_b * n_split)
    b = r // n_split
    s = r - b * n_split
    return (s, items[it, 0], items[it, 1], items[it, 2], items[it, 3], items[it, 4],
            b * query_block, min(n_item, (b + 1) * query_block), s * split_size,
            min(m_item, (s + 1) * split_size))


@njit(cache=True)
def own_keys(tree, kb, i0, q0, nq, self_shift):
    """The key each query of a task skips (leave-one-out), as a column of ``KT``.

    The item's key ``i + self_shift`` (from column ``kb``), or, with the
    pruned schedule, where its reordering put the query's own key.
    """
    own = np.empty(nq, dtype=np.int64)
    for ii in range(nq):
        if tree is None:
            own[ii] = kb + i0 + ii + self_shift
        else:
            own[ii] = tree[11][q0 + ii]
    return own


def chunk_tasks(n_tasks, pairs_per_task, work_per_pair, n_threads):
    """Tasks per chunk of the host loop of :func:`sweep`.

    About ``_config.SWEEP_CHUNK_WORK`` units of work (pairs times
    ``work_per_pair``) per thread, and a whole number of tasks per thread
    so that every chunk keeps all threads busy to its end. Chunks only
    group tasks that are independent and merged afterwards, so their size
    does not change any result.

    Examples
    --------
    >>> from nwattn._cpu.sweep import chunk_tasks
    >>> chunk_tasks(10_000, 32 * 200_000, 10, 8) < 10_000
    True
    >>> chunk_tasks(100, 32 * 1000, 10, 8)
    100
    """
    per_thread = max(1, _config.SWEEP_CHUNK_WORK // max(1, pairs_per_task * work_per_pair))
    return max(1, min(n_tasks, per_thread * max(1, n_threads)))


def sweep(score, absorb, layout, Q, KT, VT, VT2, logw, family, code, scale, self_shift,
          wv=None, qscale=None, degree=0, order=None, progress=None, VS=None, batch=None,
          coef=None, discrete=None):
    """Host side of the sweep: plan the work, run it in chunks, merge the splits.

    Returns ``(max, packed)``: the running maxima ``(n,)`` and the packed
    states ``(n, layout.width)`` of every query. The matrix body is chosen
    for pooling with many features (dot scores) or many outputs.

    The tasks run in chunks of about ``_config.SWEEP_CHUNK_WORK`` units of
    work per thread (:func:`chunk_tasks`), and the interpreter gets control
    back between chunks: a Ctrl-C (or any signal with a Python handler)
    stops a long call within a chunk's time instead of at its end, with
    ``KeyboardInterrupt`` raised here. The outputs are this function's own
    arrays, so an interrupted call leaves nothing half-written behind.
    The tasks and their merge are the same whatever the chunks, so the
    results are bit for bit those of one parallel launch over all tasks.

    ``progress``, when given, is called after every chunk as
    ``progress(done, total)`` with the numbers of (query, key) pairs done
    and in all; an exception it raises stops the sweep and propagates (a
    way to cancel). It runs in the calling thread, between parallel
    launches.

    ``qscale`` (n,) and ``degree`` are those of the local polynomial's
    moments (``LOCAL`` score, ``MOMENTS`` absorb strategy); ``VS`` (r, m),
    with them, the per-key variances of the standard errors' sandwich
    (the layout's ``meat`` block). ``coef`` (n, P), with ``qscale`` and
    ``degree``, are the equivalent kernels of the ``SMOOTHER`` strategy
    (always the matrix body). ``discrete``: None, or the tuple ``(QC, KCT,
    LT, DT)`` of :mod:`nwattn._cpu.discrete` (row body, one batch item).

    ``batch`` (:class:`nwattn._batch.AttentionBatch`, pooling only): the
    batch items and masks of attention arrays. The items are more tasks of
    the same launches; each item's key splits are planned from its own
    shape, as a call on that item alone would plan them, so an item's
    result is bit for bit that of a call on the item alone. Without it,
    ``Q`` and ``KT`` are one item and ``logw`` its key weights.

    ``order`` (:class:`nwattn._plan.TileOrder`, a distance kernel, no
    ``batch``): the pruned tile schedule. The keys are taken in that order
    (and the queries in their own k-d order, or the keys' when they are
    the same points), each block of queries visits only the key tiles
    that can weigh in (:mod:`nwattn._cpu.tree`), and the states come back
    in the caller's order of the queries.
    """
    if order is not None:
        return _pruned_sweep(score, absorb, layout, Q, KT, VT, VT2, logw, family, code, scale,
                             self_shift, wv, qscale, degree, order, progress, VS, coef,
                             discrete)
    return _sweep(score, absorb, layout, Q, KT, VT, VT2, logw, family, code, scale,
                  self_shift, wv, qscale, degree, None, progress, VS, batch, coef, discrete)


def _body(score, absorb, family, d, p, discrete, causal):
    """``(gemm_scores, use_matrix, query_block)``: which task body runs, on what blocks.

    The matrix body for the smoother and for pooling with many features
    (dot scores, one product for a tile's scores) or many outputs; causal
    order, whose diagonal tile is scored whole and half discarded, takes
    smaller blocks there.
    """
    gemm_scores = score == KERNEL and family == DOT and d >= _config.GEMM_MIN_FEATURES
    use_matrix = absorb == SMOOTHER or (absorb == POOL and score == KERNEL and discrete is None
                                        and (gemm_scores or p >= _config.GEMM_MIN_OUTPUTS))
    query_block = _config.GEMM_QUERY_BLOCK if use_matrix else _config.QUERY_BLOCK
    if use_matrix and causal:
        query_block = _config.GEMM_CAUSAL_QUERY_BLOCK
    return gemm_scores, use_matrix, query_block


def _pruned_sweep(score, absorb, layout, Q, KT, VT, VT2, logw, family, code, scale, self_shift,
                  wv, qscale, degree, order, progress, VS, coef, discrete):
    """:func:`sweep` with the pruned tile schedule: reorder, sweep, restore the order."""
    m = KT.shape[1]
    kperm = order.keys
    if order.same:
        qperm = kperm
    else:
        query_block = _body(score, absorb, family, Q.shape[1], VT.shape[0], discrete, False)[2]
        qperm = kd_order(Q, query_block)
    kinv = np.empty(m, np.int64)
    kinv[kperm] = np.arange(m)
    own = qperm + self_shift
    inside = (own >= 0) & (own < m)
    qself = np.where(inside, kinv[np.where(inside, own, 0)], -1)
    Q = np.ascontiguousarray(Q[qperm])
    KT = np.ascontiguousarray(KT[:, kperm])
    VT = np.ascontiguousarray(VT[:, kperm])
    VT2 = np.ascontiguousarray(VT2[:, kperm])
    VS = None if VS is None else np.ascontiguousarray(VS[:, kperm])
    logw = np.ascontiguousarray(logw[kperm]) if logw.shape[0] > 0 else logw
    qscale = None if qscale is None else np.ascontiguousarray(np.asarray(qscale)[qperm])
    coef = None if coef is None else np.ascontiguousarray(np.asarray(coef)[qperm])
    lw_offset = 0.0
    if discrete is not None:
        QC, KCT, LT, DT = discrete
        discrete = (np.ascontiguousarray(QC[qperm]), np.ascontiguousarray(KCT[:, kperm]), LT, DT)
        # The discrete kernels multiply the weights by at most their tables' largest entry.
        for f in range(LT.shape[0]):
            table = LT[f][np.isfinite(LT[f])]
            lw_offset += float(table.max()) if table.size else 0.0
    leaf = min(order.leaf, _config.KEY_TILE)
    lo, hi, lw, t0, t1, right = tile_tree(KT, leaf, logw, lw_offset)
    tree = (lo, hi, lw, t0, t1, right, int(code), math.log(leaf), leaf,
            schedule_phases(code), relative_cut(Q.dtype), qself)
    smax, packed = _sweep(score, absorb, layout, Q, KT, VT, VT2, logw, family, code, scale,
                          self_shift, wv, qscale, degree, tree, progress, VS, None, coef,
                          discrete)
    out_max = np.empty_like(smax)
    out_acc = np.empty_like(packed)
    out_max[qperm] = smax
    out_acc[qperm] = packed
    return out_max, out_acc


def _sweep(score, absorb, layout, Q, KT, VT, VT2, logw, family, code, scale, self_shift, wv,
           qscale, degree, tree, progress, VS, batch, coef, discrete):
    """:func:`sweep` on inputs in the order the tile schedule reads them."""
    d = Q.shape[1]
    p = VT.shape[0]
    dtype = Q.dtype
    if batch is None:
        batch = single_item(Q.shape[0], KT.shape[1], dtype)
        if score == KERNEL and absorb == POOL and logw.shape[0] > 0:
            # Pooling applies its key weights with the other masks.
            batch = single_item(Q.shape[0], KT.shape[1], dtype, logw)
            logw = logw[:0]
    n_items = batch.items.shape[0]
    n, m = batch.n_item, batch.m_item
    offsets = absorb_offsets(absorb, layout)
    gemm_scores, use_matrix, query_block = _body(score, absorb, family, d, p, discrete,
                                                 batch.diag < m)
    key_tile = _config.KEY_TILE
    n_split, split_size = plan_splits(n, m, query_block, _config.TARGET_TASKS,
                                      _config.MIN_SPLIT_KEYS)
    if tree is not None and n_split > 1:
        # A split of the pruned schedule is a whole number of its tiles.
        split_size = -(-split_size // tree[8]) * tree[8]
        n_split = -(-m // split_size)
    out_max = np.empty((n_split, Q.shape[0]), dtype)
    out_acc = np.empty((n_split, Q.shape[0], layout.width), dtype)
    per_item = -(-n // query_block) * n_split
    n_tasks = n_items * per_item
    # Work of one (query, key) pair: a score over d features, then every
    # column of the state; the matrix body's BLAS products get through
    # about eight times as much of it per second as the row body's loops.
    work_per_pair = d + layout.width + (0 if discrete is None else discrete[0].shape[1])
    if use_matrix:
        work_per_pair = -(-work_per_pair // 8)
    chunk = chunk_tasks(n_tasks, query_block * split_size, work_per_pair,
                        numba.get_num_threads())
    masks = (batch.items, n, m, batch.LW, batch.BIAS, batch.b_step, batch.diag)
    # The strategies and the kernel are compiled in (nwattn._cpu.choice); a
    # learned score's kind travels as its family, and its code is unused.
    choice = sweep_choice(score, absorb, family, 0 if score == LEARNED else code)
    # KT and VT may come as transposed views of (keys, features) arrays:
    # each body takes the layout it reads as a contiguous array, a copy
    # only when the caller's layout is the other one.
    if use_matrix:
        K = np.ascontiguousarray(KT.T) if gemm_scores else np.empty((0, d), dtype)
        KT = np.empty((d, 0), dtype) if gemm_scores else np.ascontiguousarray(KT)
        V = np.ascontiguousarray(VT.T)
        V2 = np.ascontiguousarray(VT2.T)
        body = matrix_tasks
        if absorb == SMOOTHER:
            coef = np.ascontiguousarray(coef, dtype=dtype)
            qscale = np.ascontiguousarray(qscale, dtype=dtype)
        else:
            coef, qscale = None, np.empty(0, dtype)
        head = (tree, Q, KT, K, V, V2, logw, scale, self_shift, gemm_scores, coef,
                qscale, int(degree), *masks, query_block, key_tile, n_split, split_size)
        blas = serial_blas()
    else:
        wv = np.ascontiguousarray(wv, dtype=dtype) if score == LEARNED else None
        slopes = np.empty(0, dtype) if absorb in (SLOPES, MOMENT_SLOPES) else None
        if absorb in (MOMENTS, MOMENT_SLOPES):
            qscale = np.ascontiguousarray(qscale, dtype=dtype)
        else:
            qscale = None
        body = row_tasks
        KT = np.ascontiguousarray(KT)
        VT = np.ascontiguousarray(VT)
        VT2 = np.ascontiguousarray(VT2)
        VS = np.empty((0, m), dtype) if VS is None else np.ascontiguousarray(VS, dtype=dtype)
        head = (Q, KT, VT, VT2, VS, logw, wv, slopes, qscale, discrete, int(degree),
                scale, self_shift, *masks, query_block, key_tile, n_split, split_size, tree)
        blas = contextlib.nullcontext()
    tail = (layout.powers, offsets, out_max, out_acc)
    driver = sweep_driver(body, choice, signature_key(head + (0, 0) + tail))
    n_threads = numba.get_num_threads()
    pieces = n_threads
    if tree is not None:
        # A pruned task's cost depends on the data, not its shape: the
        # chunks are sized by the time the previous one took instead, and
        # cut into more pieces than threads, taken by whichever thread is
        # free, so that one slow piece does not hold the others up.
        chunk = min(chunk, 4 * n_threads)
        pieces = 4 * n_threads
    task0 = 0
    with blas:
        while task0 < n_tasks:
            task1 = min(n_tasks, task0 + chunk)
            start = time.perf_counter()
            run_ranges(functools.partial(_run_tasks, driver, head, tail), task0, task1,
                       n_threads, pieces)
            if tree is not None:
                chunk = _timed_chunk(chunk, time.perf_counter() - start, n_tasks)
            task0 = task1
            if progress is not None:
                it, rest = divmod(task1, per_item)
                done = it * n * m + _pairs_before(rest, n, m, query_block, n_split, split_size)
                progress(done, n_items * n * m)
    for s in range(1, n_split):
        merge_rows(out_max[0], out_acc[0], out_max[s], out_acc[s], layout.powers)
    return out_max[0], out_acc[0]


def _run_tasks(driver, head, tail, task0, task1):
    """Tasks ``task0:task1`` of a sweep: ``driver(*head, task0, task1, *tail)``."""
    driver(*head, task0, task1, *tail)


def _timed_chunk(chunk, seconds, n_tasks):
    """Tasks of the next chunk of a pruned sweep after one of ``chunk`` took ``seconds``.

    Aims at ``_config.SWEEP_CHUNK_SECONDS`` a chunk, growing at most
    fourfold a step. Chunks group independent tasks only, so their sizes
    change no result.

    Examples
    --------
    >>> from nwattn._cpu.sweep import _timed_chunk
    >>> _timed_chunk(8, 0.001, 10_000)
    32
    """
    if seconds <= 0:
        return min(n_tasks, 4 * chunk)
    wanted = int(chunk * _config.SWEEP_CHUNK_SECONDS / seconds)
    return max(1, min(n_tasks, 4 * chunk, wanted))


def _pairs_before(task, n, m, query_block, n_split, split_size):
    """(query, key) pairs of the tasks before ``task`` (tasks run block by block)."""
    b, s = divmod(task, n_split)
    whole_blocks = min(n, b * query_block) * m
    if s == 0:
        return whole_blocks
    rows = min(n, (b + 1) * query_block) - b * query_block
    return whole_blocks + rows * min(m, s * split_size)

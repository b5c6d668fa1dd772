"""The CPU backend: every compiled operation of :mod:`nwattn._cpu`, behind one guard.

Layer 3 (:mod:`nwattn.ops`, :mod:`nwattn.objective`, ...) reaches the CPU
kernels only through the object :data:`BACKEND`, picked by
:func:`nwattn._backend.get_backend`. Each method prepares its outputs and
runs one or more ``parallel=True`` kernels inside :func:`guarded`, so that
no parallel entry point can be reached without the thread-safety guard of
:mod:`nwattn._parallel` (a structural test checks this).

Array contract of every method: C-contiguous float32 or float64 arrays of
one dtype (the learned-score objective runs in float64), already scaled,
transposed and centred as the docstrings say; layer 3 validates and
prepares them.
"""

import numpy as np

from .._layout import local_layout, pool_layout, slopes_layout
from .._parallel import guarded, serial_blas
from .. import _config
from . import dense, learned, pairs, tree
from .strategies import (KERNEL, LEARNED, LOCAL, MOMENT_SLOPES, MOMENTS, POOL, SLOPE, SLOPES,
                         SMOOTHER)
from .sweep import sweep


class CPUBackend:
    """Compute operations on the CPU (Numba ``parallel=True`` kernels).

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn._backend import get_backend
    >>> be = get_backend("cpu")
    >>> be.name, "slopes" in be.capabilities
    ('cpu', True)
    """

    name = "cpu"
    #: Operations this backend offers (see nwattn._backend.CAPABILITIES).
    capabilities = frozenset({"pairwise", "softmax", "pool", "pool_items", "pairwise_items",
                              "learned_pool", "slopes", "local",
                              "local_slopes", "additive_pairwise", "grad_pass", "symmetric_grad",
                              "pair_sums", "pair_gradient", "smoother", "tree_order"})

    @staticmethod
    @guarded
    def pairwise(Qs, KT, logw, family, code, scale):
        """Scores ``(n, m)`` of every query against every key."""
        out = np.empty((Qs.shape[0], KT.shape[1]), Qs.dtype)
        dense.pairwise(Qs, KT, logw, family, code, scale, out)
        return out

    @staticmethod
    @guarded
    def softmax(S):
        """Row-wise softmax of ``S`` (n, m); rows of all ``-inf`` become NaN."""
        out = np.empty_like(S)
        dense.softmax_rows(S, out)
        return out

    @staticmethod
    @guarded
    def pool(Qs, KT, VT, VT2, logw, family, code, scale, self_shift, progress=None,
             discrete=None, order=None):
        """Packed pooling states ``(max, packed)`` of every query (``pool_layout``).

        ``VT``/``VT2`` (p, m) are the centred values and their squares
        (``VT2`` without rows when the variance is not tracked); query
        ``i`` skips key ``i + self_shift``. ``progress``: called as
        ``progress(pairs_done, pairs_total)`` between chunks of the work
        (see :func:`nwattn._cpu.sweep.sweep`); the same for the other
        sweeps below. ``discrete``: None, or the discrete features'
        ``(QC, KCT, LT, DT)`` (see :mod:`nwattn._cpu.discrete`); the same
        for the other kernel sweeps below. ``order``: None (every pair),
        or the keys' :class:`nwattn._plan.TileOrder` of the pruned
        tile schedule (a distance kernel); the same for the other sweeps
        below but the learned one.
        """
        layout = pool_layout(VT.shape[0], VT2.shape[0] > 0)
        return sweep(KERNEL, POOL, layout, Qs, KT, VT, VT2, logw, family, code, scale,
                     self_shift, progress=progress, discrete=discrete, order=order)

    @staticmethod
    @guarded
    def pool_items(Qs, KT, VT, VT2, family, code, scale, self_shift, batch, progress=None):
        """:meth:`pool` of attention arrays: the batch items and masks of ``batch``.

        ``batch`` (:class:`nwattn._batch.AttentionBatch`) says where each
        item's queries, keys and values sit in ``Qs``, ``KT`` and ``VT``
        (packed item after item, shared keys and values once) and holds
        the masks; query ``i`` of an item skips its key ``i + self_shift``.
        """
        layout = pool_layout(VT.shape[0], VT2.shape[0] > 0)
        return sweep(KERNEL, POOL, layout, Qs, KT, VT, VT2, np.empty(0, Qs.dtype), family, code,
                     scale, self_shift, progress=progress, batch=batch)

    @staticmethod
    @guarded
    def pairwise_items(Qs, KT, items, n_item, m_item, family, code, scale):
        """Scores ``(N, m_item)``: each item's queries against its own keys.

        ``items`` is the table of :class:`nwattn._batch.AttentionBatch`
        (query rows in column 0, key columns in column 1).
        """
        out = np.empty((Qs.shape[0], m_item), Qs.dtype)
        dense.pairwise_items(Qs, KT, items, n_item, m_item, family, code, scale, out)
        return out

    @staticmethod
    @guarded
    def learned_pool(kind, P, OT, wv, scale, logw, VT, VT2, self_shift, progress=None):
        """:meth:`pool` with a learned score of projected queries ``P`` and keys ``OT``."""
        layout = pool_layout(VT.shape[0], VT2.shape[0] > 0)
        return sweep(LEARNED, POOL, layout, P, OT, VT, VT2, logw, kind, 0, scale, self_shift,
                     wv=wv, progress=progress)

    @staticmethod
    @guarded
    def slopes(Qs, KT, VT, logw, family, code, scale, self_shift, progress=None,
               discrete=None, order=None):
        """Leave-one-out states with the bandwidth slopes (``slopes_layout``).

        ``KT`` are the keys divided by the bandwidth for a smoothing kernel,
        unscaled for a dot score; see :mod:`nwattn._cpu.slopes`.
        """
        n_disc = 0 if discrete is None else discrete[0].shape[1]
        layout = slopes_layout(VT.shape[0], Qs.shape[1] + n_disc)
        no_sq = np.empty((0, KT.shape[1]), Qs.dtype)
        return sweep(SLOPE, SLOPES, layout, Qs, KT, VT, no_sq, logw, family, code,
                     scale, self_shift, progress=progress, discrete=discrete, order=order)

    @staticmethod
    @guarded
    def local(Qs, KT, VT, logw, family, code, qscale, degree, self_shift, progress=None,
              VT2=None, VS=None, discrete=None, order=None):
        """Query-centred moments of a local polynomial of ``degree`` (``local_layout``).

        ``Qs``/``KT`` are divided by the bandwidth (a smoothing kernel,
        ``family`` DISTANCE); query ``i``'s offsets are further multiplied
        by ``qscale[i]``. ``VT2``: the squared centred values, to track the
        weighted variance too (``sq`` block). ``VS`` (r, m): per-key
        variances, whose sandwich middles fill the ``meat`` block.
        ``discrete``: the discrete features' codes and tables (see
        :mod:`nwattn._cpu.discrete`). See :mod:`nwattn._cpu.moments`.
        """
        if VT2 is None:
            VT2 = np.empty((0, KT.shape[1]), Qs.dtype)
        n_meat = 0 if VS is None else VS.shape[0]
        layout = local_layout(VT.shape[0], Qs.shape[1], degree, VT2.shape[0] > 0,
                              n_meat=n_meat)
        return sweep(LOCAL, MOMENTS, layout, Qs, KT, VT, VT2, logw, family, code, 1.0,
                     self_shift, qscale=qscale, degree=degree, progress=progress, VS=VS,
                     discrete=discrete, order=order)

    @staticmethod
    @guarded
    def smoother(Qs, KT, VT, logw, family, code, qscale, degree, coef, self_shift,
                 progress=None, order=None):
        """A fitted local polynomial's weights applied to the values (``pool_layout``).

        The weights of query ``i`` are the kernel's times
        ``coef[i] . phi(z)`` in the basis of ``degree``; the normaliser is
        that of the kernel's weights alone, so ``acc / norm`` is the
        linear smoother's output. Always the matrix body: the values are
        many columns (bootstrap replications).
        """
        layout = pool_layout(VT.shape[0], False)
        no_sq = np.empty((0, KT.shape[1]), Qs.dtype)
        return sweep(LOCAL, SMOOTHER, layout, Qs, KT, VT, no_sq, logw, family, code, 1.0,
                     self_shift, qscale=qscale, degree=degree, coef=coef, progress=progress,
                     order=order)

    @staticmethod
    @guarded
    def local_slopes(Qs, KT, VT, logw, family, code, qscale, degree, self_shift,
                     progress=None, discrete=None, order=None):
        """:meth:`local` plus the moments' derivatives in the log-bandwidths (``dG``, ``dR``).

        What the gradient of the local polynomial's leave-one-out score is
        made of; see :func:`nwattn._cpu.moments.add_moment_slopes`.
        """
        VT2 = np.empty((0, KT.shape[1]), Qs.dtype)
        n_disc = 0 if discrete is None else discrete[0].shape[1]
        layout = local_layout(VT.shape[0], Qs.shape[1], degree, False, True,
                              Qs.shape[1] + n_disc)
        return sweep(LOCAL, MOMENT_SLOPES, layout, Qs, KT, VT, VT2, logw, family, code, 1.0,
                     self_shift, qscale=qscale, degree=degree, progress=progress,
                     discrete=discrete, order=order)

    @staticmethod
    def tree_order(X, leaf):
        """The k-d order of the rows of ``X`` (n, d) with leaves of ``leaf`` rows.

        See :func:`nwattn._cpu.tree.kd_order` (a serial kernel: no guard
        needed).
        """
        return tree.kd_order(np.ascontiguousarray(X), int(leaf))

    @staticmethod
    @guarded
    def additive_pairwise(A, BT, wv):
        """Additive scores ``(n, m)`` of projected queries ``A`` and keys ``BT``."""
        out = np.empty((A.shape[0], BT.shape[1]), A.dtype)
        learned.additive_pairwise(A, BT, wv, out)
        return out

    @staticmethod
    @guarded
    def grad_pass(kind, P, OT, wv, scale, logw, shift, F, HT, e_own, e_other, with_wv):
        """One backward sweep of the learned objective; returns ``(dP, dwv)``.

        See :func:`nwattn._cpu.learned.loo_grad_pass` for the arguments.
        """
        qb = _config.QUERY_BLOCK
        n, r = P.shape
        dP = np.zeros((n, r))
        dwv = np.zeros((-(-n // qb), r) if with_wv else (1, r))
        with serial_blas():
            learned.loo_grad_pass(kind, P, OT, wv, scale, logw, shift, F, HT, e_own, e_other,
                                  qb, _config.KEY_TILE, with_wv, dP, dwv)
        return dP, dwv.sum(axis=0) if with_wv else np.zeros(r)

    @staticmethod
    @guarded
    def symmetric_grad(Z, logw, lse, neg_lse, G, Y, e):
        """Both backward sweeps of the rbf objective in one (every point a query)."""
        dZ = np.zeros(Z.shape)
        learned.loo_grad_symmetric(Z, np.ascontiguousarray(Z.T), logw, lse, neg_lse, G,
                                   np.ascontiguousarray(Y.T), Y, np.ascontiguousarray(G.T),
                                   e, _config.QUERY_BLOCK, _config.KEY_TILE, dZ)
        return dZ

    @staticmethod
    @guarded
    def pair_sums(Z, V):
        """``sum_{j != o} exp(s_oj) V[j]`` for every point, each rbf pair scored once."""
        bs, plan = pairs.plan_for(Z.shape[0])
        out = np.zeros(V.shape)
        pairs.pair_sums(Z, np.ascontiguousarray(Z.T), V, np.ascontiguousarray(V.T), bs, plan,
                        out)
        return out

    @staticmethod
    @guarded
    def pair_gradient(Z, A, B):
        """``sum_j exp(s_oj) (A_j . B_o) (z_j - z_o)`` for every point, pairs once."""
        bs, plan = pairs.plan_for(Z.shape[0])
        dZ = np.zeros(Z.shape)
        pairs.pair_gradient(Z, np.ascontiguousarray(Z.T), B, np.ascontiguousarray(A.T), bs,
                            plan, dZ)
        return dZ


#: The backend object the registry hands out.
BACKEND = CPUBackend()

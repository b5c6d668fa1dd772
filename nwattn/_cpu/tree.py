"""The pruned tile schedule: key tiles in space, and which of them a query block visits.

For few features and a small bandwidth almost every (query, key) pair has a
weight of zero (a compact kernel) or one far below rounding (a gaussian).
The pruned schedule orders the keys so that each tile of ``leaf``
consecutive keys is a small region of space, keeps the bounding box of
every tile, and lets each task visit only the tiles that can matter to its
block of queries; the queries are ordered the same way, so a block is a
small region too. Everything else about the sweep (the scores, the absorb
strategies, the merge) is unchanged.

* **Order.** :func:`kd_order` is a k-d tree's order: the points are split
  at the median of their widest feature, recursively, and the split is
  placed on a multiple of ``leaf`` so that the leaves are exactly the
  tiles ``[t leaf, (t + 1) leaf)`` of the ordered points (the last one
  shorter). The tree's shape is therefore a function of the number of
  tiles alone: node ``[t0, t1)`` has the children ``[t0, t0 + ceil(L/2))``
  and the rest, ``L = t1 - t0``. Any order gives the same results; a good
  one only visits fewer tiles.
* **Boxes.** :func:`tile_tree` computes, for the keys as a call prepares
  them (scaled by the bandwidth and centred), the bounding box of every
  node and the largest log key weight under it. A bandwidth changes the
  boxes, never the order, so a fitted estimator orders its keys once.
* **Visits.** A task computes its block's bounding box and asks
  :func:`visit_tiles` for the tiles to visit, in increasing order: a
  depth-first walk of the tree that drops a whole subtree when even its
  nearest point could not reach the block. Visited tiles that follow each
  other are joined into runs of up to a sweep tile's length, each scored
  as one tile.

The rule that drops a tile uses an upper bound of any of its scores against
any query of the block: ``ub = log w_max + log K(u_min**2)``, with
``u_min`` the distance between the two boxes (shrunk by a relative
``2**-10`` so that rounding can never drop a key at the edge of a compact
support). A compact kernel drops the tile when ``ub = -inf``: exact, the
tile's weights are all zero. A kernel positive everywhere (gaussian,
laplacian) visits in two phases: first the tiles within ``r_A`` of the
block, ``r_A`` the farthest distance to the tile whose farthest point is
nearest (so every query has a whole tile's weight); then, of the rest,
those with ``log(leaf) + ub`` at least ``log(norm_min) - 60 log 2``
(``30 log 2`` in float32), ``norm_min`` the smallest normaliser of the
block's queries after the first phase. A dropped tile's total weight is
below ``2**-60`` (``2**-30``) of every query's normaliser, so with ``T``
tiles in all the weight left out is below ``T 2**-60`` of the normaliser
(``1.7e-12`` relative for ``T = 10**6`` tiles) and the result equals brute
force to rounding. A query whose normaliser is still zero after the first
phase (all near keys excluded or of weight zero) makes its block visit
every tile of positive weight bound.
"""

import math
import numpy as np
from numba import njit

from ..kernels import GAUSSIAN, LAPLACIAN, log_weight

#: The pruned schedule's phases for a compact kernel (one) and for a
#: kernel positive everywhere (near tiles, then the rest by the bound).
COMPACT_PHASES = 1
POSITIVE_PHASES = 2

#: Relative shrink of the squared box distance before it is bounded: keeps
#: every key a kernel can weigh, whatever the rounding of its distance.
_SHRINK = 1.0 - 2.0**-10

#: Deepest walk of the tile tree (its depth is log2 of the tiles, plus one).
_STACK = 128


@njit(cache=True)
def _select(W, perm, lo, hi, k, t):
    """Partially sort rows ``lo:hi`` of ``W`` (and ``perm``) on column ``t`` around ``k``.

    Afterwards every row before ``k`` is at most, and every row from ``k``
    at least, row ``k``'s value (Hoare's selection with a median of three;
    equal values stop both scans, so many duplicates still split evenly).
    """
    d = W.shape[1]
    left = lo
    right = hi - 1
    while right > left:
        mid = (left + right) >> 1
        a = W[left, t]
        b = W[mid, t]
        c = W[right, t]
        if a > b:
            a, b = b, a
        if b > c:
            b = c
            if a > b:
                b = a
        pivot = b
        i = left
        j = right
        while i <= j:
            while W[i, t] < pivot:
                i += 1
            while W[j, t] > pivot:
                j -= 1
            if i <= j:
                for s in range(d):
                    x = W[i, s]
                    W[i, s] = W[j, s]
                    W[j, s] = x
                p = perm[i]
                perm[i] = perm[j]
                perm[j] = p
                i += 1
                j -= 1
        if k <= j:
            right = j
        elif k >= i:
            left = i
        else:
            return


@njit(cache=True)
def kd_order(X, leaf):
    """Order of the rows of ``X`` (n, d) whose tiles of ``leaf`` rows are k-d tree leaves.

    Each node's rows are split at the median of their widest feature,
    rounded to a whole number of tiles on the left (``ceil(L / 2)`` of the
    node's ``L`` tiles); ``O(n log(n / leaf))``. Deterministic.
    """
    n, d = X.shape
    W = np.empty((n, d), dtype=np.float64)
    for i in range(n):
        for t in range(d):
            W[i, t] = X[i, t]
    perm = np.arange(n)
    los = np.empty(_STACK, dtype=np.int64)
    his = np.empty(_STACK, dtype=np.int64)
    los[0] = 0
    his[0] = n
    top = 1
    while top > 0:
        top -= 1
        lo = los[top]
        hi = his[top]
        if hi - lo <= leaf:
            continue
        best = 0
        width = -1.0
        for t in range(d):
            mn = math.inf
            mx = -math.inf
            for i in range(lo, hi):
                x = W[i, t]
                mn = min(mn, x)
                mx = max(mx, x)
            if mx - mn > width:
                width = mx - mn
                best = t
        n_tiles = (hi - lo + leaf - 1) // leaf
        mid = lo + ((n_tiles + 1) // 2) * leaf
        _select(W, perm, lo, hi, mid, best)
        los[top] = mid
        his[top] = hi
        los[top + 1] = lo
        his[top + 1] = mid
        top += 2
    return perm


@njit(cache=True)
def tile_tree(KT, leaf, logw, lw_offset):
    """The boxes of the tile tree of the ordered keys ``KT`` (d, m).

    Returns ``(lo, hi, lw, t0, t1, right)``, one entry per node in
    depth-first order (a node's left child follows it): the bounding box
    ``lo``/``hi`` (n_nodes, d) of its keys in float64, the largest log key
    weight ``lw`` under it plus ``lw_offset`` (``logw`` empty: every weight
    1), its tiles ``t0:t1`` and the index of its right child (-1 for a
    leaf). A node whose keys all have weight zero has ``lw = -inf``.
    """
    d, m = KT.shape
    n_tiles = max(1, (m + leaf - 1) // leaf)
    n_nodes = 2 * n_tiles - 1
    lo = np.empty((n_nodes, d), dtype=np.float64)
    hi = np.empty((n_nodes, d), dtype=np.float64)
    lw = np.empty(n_nodes, dtype=np.float64)
    t0 = np.empty(n_nodes, dtype=np.int64)
    t1 = np.empty(n_nodes, dtype=np.int64)
    right = np.full(n_nodes, -1, dtype=np.int64)
    # Depth-first numbering of the nodes: the tile ranges alone define it.
    stack = np.empty(_STACK, dtype=np.int64)
    s0 = np.empty(_STACK, dtype=np.int64)
    s1 = np.empty(_STACK, dtype=np.int64)
    s0[0] = 0
    s1[0] = n_tiles
    stack[0] = -1
    top = 1
    node = 0
    while top > 0:
        top -= 1
        a = s0[top]
        b = s1[top]
        parent = stack[top]
        if parent >= 0:
            right[parent] = node
        t0[node] = a
        t1[node] = b
        if b - a > 1:
            half = a + (b - a + 1) // 2
            # Right child first on the stack: the left one is numbered next.
            s0[top] = half
            s1[top] = b
            stack[top] = node
            s0[top + 1] = a
            s1[top + 1] = half
            stack[top + 1] = -1
            top += 2
        node += 1
    # Boxes bottom-up: children come after their parent in this order.
    for v in range(n_nodes - 1, -1, -1):
        if right[v] < 0:
            j0 = t0[v] * leaf
            j1 = min(m, j0 + leaf)
            best = -math.inf
            for t in range(d):
                mn = math.inf
                mx = -math.inf
                for j in range(j0, j1):
                    x = KT[t, j]
                    mn = min(mn, x)
                    mx = max(mx, x)
                lo[v, t] = mn
                hi[v, t] = mx
            if logw.shape[0] == 0:
                best = 0.0 if j1 > j0 else -math.inf
            else:
                for j in range(j0, j1):
                    best = max(best, logw[j])
            lw[v] = best + lw_offset
        else:
            a = v + 1
            b = right[v]
            for t in range(d):
                lo[v, t] = min(lo[a, t], lo[b, t])
                hi[v, t] = max(hi[a, t], hi[b, t])
            lw[v] = max(lw[a], lw[b])
    return lo, hi, lw, t0, t1, right


@njit(inline="always")
def _box_d2(lo, hi, v, blo, bhi):
    """Squared distances (nearest, farthest) between node ``v``'s box and the block's."""
    near = 0.0
    far = 0.0
    for t in range(blo.shape[0]):
        a = lo[v, t] - bhi[t]
        b = blo[t] - hi[v, t]
        gap = max(a, b, 0.0)
        near += gap * gap
        span = max(hi[v, t] - blo[t], bhi[t] - lo[v, t])
        far += span * span
    return near, far


@njit(inline="always")
def _bound(code, lw, near, qs2):
    """Upper bound of a node's scores against the block (``-inf``: all weights zero)."""
    if lw == -math.inf:
        return -math.inf
    return lw + log_weight(code, near * qs2 * _SHRINK)


@njit(cache=True)
def block_box(Q, q0, nq):
    """Bounding box ``(lo, hi)`` of queries ``q0:q0 + nq`` of ``Q``, in float64."""
    d = Q.shape[1]
    blo = np.full(d, math.inf)
    bhi = np.full(d, -math.inf)
    for i in range(q0, q0 + nq):
        for t in range(d):
            x = float(Q[i, t])
            blo[t] = min(blo[t], x)
            bhi[t] = max(bhi[t], x)
    return blo, bhi


@njit(cache=True)
def near_radius(tree, blo, bhi, qs2, ts0, ts1):
    """``r_A**2``: the smallest farthest distance to a tile of ``ts0:ts1`` that has weight.

    Branch and bound over the tree: a subtree whose nearest point is
    farther than the best tile found so far is not entered.
    """
    lo, hi, lw, t0, t1, right = tree[0], tree[1], tree[2], tree[3], tree[4], tree[5]
    code = tree[6]
    best = math.inf
    stack = np.empty(_STACK, dtype=np.int64)
    stack[0] = 0
    top = 1
    while top > 0:
        top -= 1
        v = stack[top]
        if t1[v] <= ts0 or t0[v] >= ts1:
            continue
        near, far = _box_d2(lo, hi, v, blo, bhi)
        if near >= best or _bound(code, lw[v], near, qs2) == -math.inf:
            continue
        if right[v] < 0:
            best = min(best, far)
            continue
        a = v + 1
        b = right[v]
        na, _ = _box_d2(lo, hi, a, blo, bhi)
        nb, _ = _box_d2(lo, hi, b, blo, bhi)
        # The nearer child on top of the stack: it tightens ``best`` first.
        if na <= nb:
            stack[top] = b
            stack[top + 1] = a
        else:
            stack[top] = a
            stack[top + 1] = b
        top += 2
    return best


@njit(cache=True)
def visit_tiles(tree, blo, bhi, qs2, ts0, ts1, r2_lo, r2_hi, cut, out):
    """Tiles of ``ts0:ts1`` to visit, increasing; returns ``(count, out)``.

    A tile is visited when its box's nearest squared distance to the
    block's is in ``(r2_lo, r2_hi]`` (in the coordinates of the keys; the
    scores see them times ``qs2``), its score bound ``ub`` is finite and
    ``log(leaf) + ub >= cut``. ``out`` grows as needed.
    """
    lo, hi, lw, t0, t1, right = tree[0], tree[1], tree[2], tree[3], tree[4], tree[5]
    code = tree[6]
    log_leaf = tree[7]
    count = 0
    stack = np.empty(_STACK, dtype=np.int64)
    stack[0] = 0
    top = 1
    while top > 0:
        top -= 1
        v = stack[top]
        if t1[v] <= ts0 or t0[v] >= ts1:
            continue
        near, far = _box_d2(lo, hi, v, blo, bhi)
        if near > r2_hi or far <= r2_lo:
            continue
        ub = _bound(code, lw[v], near, qs2)
        if ub == -math.inf or log_leaf + ub < cut:
            continue
        if right[v] >= 0:
            stack[top] = right[v]
            stack[top + 1] = v + 1
            top += 2
            continue
        if near <= r2_lo:
            continue
        if count == out.shape[0]:
            grown = np.empty(2 * out.shape[0] + 16, dtype=np.int64)
            grown[:count] = out[:count]
            out = grown
        out[count] = t0[v]
        count += 1
    return count, out


@njit(cache=True)
def phase_tiles(tree, phase, Q, q0, nq, qs_min, smax, S, o_norm, k0, k1, key_tile, out):
    """The runs of tiles of keys ``k0:k1`` the block ``q0:q0 + nq`` visits in ``phase``.

    ``smax``/``S`` are the block's running state (the second phase of a
    positive kernel bounds against its normalisers, column ``o_norm``).
    Returns ``(count, runs)``: the visited tiles that follow each other
    in the keys' order are joined into runs of at most ``key_tile`` keys,
    each then scored as one tile (what a tile costs beyond its pairs is
    paid once a run); :func:`tile_range` gives each run's keys. ``out`` is
    a buffer for the tiles, grown as needed.
    """
    leaf = tree[8]
    blo, bhi = block_box(Q, q0, nq)
    qs2 = qs_min * qs_min
    ts0 = k0 // leaf
    ts1 = (k1 + leaf - 1) // leaf
    if tree[9] == COMPACT_PHASES:
        count, out = visit_tiles(tree, blo, bhi, qs2, ts0, ts1, -1.0, math.inf, -math.inf, out)
        return _runs(out, count, max(1, key_tile // leaf))
    r2 = near_radius(tree, blo, bhi, qs2, ts0, ts1)
    if phase == 0:
        count, out = visit_tiles(tree, blo, bhi, qs2, ts0, ts1, -1.0, r2, -math.inf, out)
        return _runs(out, count, max(1, key_tile // leaf))
    cut = math.inf
    for ii in range(nq):
        if smax[ii] == -math.inf or not S[ii, o_norm] > 0.0:
            cut = -math.inf
            break
        cut = min(cut, float(smax[ii]) + math.log(float(S[ii, o_norm])))
    count, out = visit_tiles(tree, blo, bhi, qs2, ts0, ts1, r2, math.inf, cut - tree[10], out)
    return _runs(out, count, max(1, key_tile // leaf))


@njit(cache=True)
def _runs(tiles, count, max_tiles):
    """Increasing tiles as runs ``(first, end)`` of at most ``max_tiles`` consecutive ones.

    Returns ``(n_runs, runs)``, run ``r`` in ``runs[2 r], runs[2 r + 1]``.
    """
    runs = np.empty(2 * count, dtype=np.int64)
    n = 0
    for v in range(count):
        t = tiles[v]
        if n > 0 and runs[2 * n - 1] == t and t - runs[2 * n - 2] < max_tiles:
            runs[2 * n - 1] = t + 1
        else:
            runs[2 * n] = t
            runs[2 * n + 1] = t + 1
            n += 1
    return n, runs


@njit(inline="always")
def tile_range(tree, runs, v, k0, k1):
    """Keys ``(a0, a1)`` of the ``v``-th visited run of tiles, within ``k0:k1``."""
    leaf = tree[8]
    return max(k0, runs[2 * v] * leaf), min(k1, runs[2 * v + 1] * leaf)


def schedule_phases(code):
    """Phases of the pruned schedule for the distance kernel ``code`` (host side)."""
    return POSITIVE_PHASES if code in (GAUSSIAN, LAPLACIAN) else COMPACT_PHASES


def relative_cut(dtype):
    """``log`` of the share of the normaliser below which a tile is dropped: 2**-60 or 2**-30."""
    return (30.0 if np.dtype(dtype) == np.float32 else 60.0) * math.log(2.0)

"""The streaming softmax state: its packed layout and its one rescale/merge rule.

Every computation of the package keeps, per query, a running maximum score
``m`` and one packed block of accumulators (DESIGN section 6). Each column
of the block is a sum over keys of ``c_j exp(s_j - m)`` raised to a power
``k`` times some quantity of the key:

* ``k = 1``: the normaliser ``sum_j w_j``, weighted values ``sum_j w_j v_j``,
  weighted squares, the slopes of the leave-one-out score...;
* ``k = 2``: sums of squared weights (``sum_j w_j**2 sigma_j**2``), which
  standard errors need.

Raising the maximum from ``m`` to ``m'`` multiplies a column of power ``k``
by ``exp(k (m - m'))``; merging two states of the same queries over
disjoint keys applies that rescale to both sides and adds them. Those two
operations are written here once, as plain ``@njit`` functions that the CPU
kernels inline, that the CUDA kernels compile for the device, and that the
host-side :func:`nwattn.state.merge_states` (and through it Dask) runs.

A :class:`StateLayout` names the columns: ordered blocks, each with a width
and a power. A new family of accumulators is a new layout; the merge and
the finaliser's bookkeeping follow from it.
"""

import math

import numpy as np
from numba import njit

__all__ = ["StateLayout", "pool_layout", "slopes_layout", "local_layout", "n_basis",
           "rescale_row", "merge_query", "merge_rows"]


class StateLayout:
    """The columns of a packed accumulator block.

    Parameters
    ----------
    blocks : sequence of (name, width, power)
        Blocks of columns in order. A block of width 0 is allowed (a
        quantity not tracked this time) and takes no column.

    Attributes
    ----------
    width : int
        Total number of columns.
    powers : ndarray of shape (width,), int64
        Power of the weights in each column.

    Examples
    --------
    >>> from nwattn._layout import StateLayout
    >>> lay = StateLayout([("norm", 1, 1), ("acc", 2, 1), ("sq2", 2, 2)])
    >>> lay.width, lay.powers.tolist()
    (5, [1, 1, 1, 2, 2])
    >>> lay.columns("acc")
    slice(1, 3, None)
    """

    def __init__(self, blocks):
        self.blocks = tuple((str(name), int(width), int(power)) for name, width, power in blocks)
        names = [b[0] for b in self.blocks]
        if len(set(names)) != len(names):
            raise ValueError(f"layout block names must be unique, got {names}")
        self._slices = {}
        start = 0
        powers = []
        for name, width, power in self.blocks:
            if width < 0 or power < 1:
                raise ValueError(f"block {name!r} needs a width >= 0 and a power >= 1")
            self._slices[name] = slice(start, start + width)
            powers += [power] * width
            start += width
        self.width = start
        self.powers = np.array(powers, dtype=np.int64)

    def __eq__(self, other):
        return isinstance(other, StateLayout) and self.blocks == other.blocks

    def __hash__(self):
        return hash(self.blocks)

    def __repr__(self):
        return f"StateLayout({list(self.blocks)!r})"

    def __contains__(self, name):
        return name in self._slices and self._slices[name].stop > self._slices[name].start

    def columns(self, name):
        """Slice of the columns of block ``name``."""
        return self._slices[name]

    def offset(self, name):
        """First column of block ``name``."""
        return self._slices[name].start

    def view(self, packed, name):
        """The columns of block ``name`` of ``packed`` (a view, last axis)."""
        return packed[..., self._slices[name]]


def pool_layout(n_outputs, with_sq):
    """Layout of attention pooling: normaliser, weighted values, weighted squares.

    Examples
    --------
    >>> from nwattn._layout import pool_layout
    >>> pool_layout(3, True).width
    7
    """
    return StateLayout([("norm", 1, 1), ("acc", n_outputs, 1),
                        ("sq", n_outputs if with_sq else 0, 1)])


def slopes_layout(n_outputs, n_features):
    """Layout of the leave-one-out slopes: pooling plus ``A`` (d) and ``B`` (d x p).

    See :mod:`nwattn._cpu.slopes` for what ``A`` and ``B`` accumulate.

    Examples
    --------
    >>> from nwattn._layout import slopes_layout
    >>> slopes_layout(2, 3).width
    12
    """
    return StateLayout([("norm", 1, 1), ("acc", n_outputs, 1), ("A", n_features, 1),
                        ("B", n_features * n_outputs, 1)])


@njit(cache=True)
def n_basis(n_features, degree):
    """Number of functions of the local polynomial basis of ``degree`` in ``n_features``.

    ``1``, then ``d`` linear terms, then ``d (d + 1) / 2`` products for
    degree 2 and ``d (d + 1) (d + 2) / 6`` for degree 3 (the degree the
    bias correction of a local quadratic fits).

    Examples
    --------
    >>> from nwattn._layout import n_basis
    >>> [n_basis(2, g) for g in (0, 1, 2, 3)]
    [1, 3, 6, 10]
    """
    P = 1
    if degree >= 1:
        P += n_features
    if degree >= 2:
        P += n_features * (n_features + 1) // 2
    if degree >= 3:
        P += n_features * (n_features + 1) * (n_features + 2) // 6
    return P


def local_layout(n_outputs, n_features, degree, with_sq=False, slopes=False, n_params=None,
                 n_meat=0):
    """Layout of local polynomial regression: pooling plus the query-centred moments.

    ``norm`` and ``acc`` are those of pooling (``G[0, 0]`` and ``R[0]``);
    ``moments`` the rest of the upper triangle of the Gram matrix and
    ``cross`` the rest of the cross moments (see :mod:`nwattn._cpu.moments`).
    ``sq`` (the weighted squares of the values, as in pooling) is tracked
    when ``with_sq``; degree 0 is then pooling with nearest-neighbour
    bandwidths. With ``slopes``, ``dG`` and ``dR`` hold, for each feature
    ``t`` in turn, the whole upper triangle of the Gram matrix and the
    cross moments weighted by ``d log w / d log h_t`` (see
    :func:`nwattn._cpu.moments.add_moment_slopes`). ``n_params``: the
    number of parameters with slopes, by default ``n_features``; the
    discrete features' smoothing parameters follow the continuous
    features' bandwidths. ``meat`` holds, for each of ``n_meat`` per-key
    variances ``sigma2_j``, the whole upper triangle of
    ``sum_j w_j**2 sigma2_j phi phi^T``: the middle of the sandwich of the
    standard errors (power 2, see :func:`nwattn._cpu.moments.add_meat`).

    Examples
    --------
    >>> from nwattn._layout import local_layout
    >>> local_layout(1, 2, 1).width  # 6 Gram entries and 3 cross moments
    9
    """
    P = n_basis(n_features, degree)
    n_params = n_features if n_params is None else int(n_params)
    return StateLayout([("norm", 1, 1), ("acc", n_outputs, 1),
                        ("sq", n_outputs if with_sq else 0, 1),
                        ("moments", P * (P + 1) // 2 - 1, 1),
                        ("cross", (P - 1) * n_outputs, 1),
                        ("dG", n_params * P * (P + 1) // 2 if slopes else 0, 1),
                        ("dR", n_params * P * n_outputs if slopes else 0, 1),
                        ("meat", n_meat * P * (P + 1) // 2, 2)])


@njit(inline="always")
def power_of(c, k):
    """``c**k`` for the small positive integer powers of a layout."""
    if k == 1:
        return c
    r = c
    for _ in range(k - 1):
        r *= c
    return r


@njit(inline="always")
def rescale_row(row, powers, c):
    """Multiply the packed columns ``row`` of one query by ``c**power`` each.

    ``c = exp(m - m')`` when the running maximum rises from ``m`` to ``m'``.
    """
    for k in range(row.shape[0]):
        row[k] *= power_of(c, powers[k])


@njit(inline="always")
def merge_query(max_a, acc_a, ia, max_b, acc_b, ib, powers):
    """Merge query ``ib`` of state ``b`` into query ``ia`` of state ``a``, in place.

    ``m = max(m_a, m_b)``; each side is rescaled by ``exp(k (m_side - m))``
    column by column. A side with no key in its support (``max == -inf``)
    contributes nothing, and two such sides stay empty.
    """
    mb = max_b[ib]
    if mb == -math.inf:
        return
    ma = max_a[ia]
    if ma == -math.inf:
        max_a[ia] = mb
        for k in range(acc_a.shape[1]):
            acc_a[ia, k] = acc_b[ib, k]
        return
    m = max(ma, mb)
    ca = math.exp(ma - m)
    cb = math.exp(mb - m)
    max_a[ia] = m
    for k in range(acc_a.shape[1]):
        pk = powers[k]
        acc_a[ia, k] = acc_a[ia, k] * power_of(ca, pk) + acc_b[ib, k] * power_of(cb, pk)


@njit(cache=True)
def merge_rows(max_a, acc_a, max_b, acc_b, powers):
    """Merge state ``b`` into state ``a`` in place, query by query (:func:`merge_query`).

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn._layout import merge_rows
    >>> ma, aa = np.array([0.0]), np.array([[1.0, 2.0]])
    >>> mb, ab = np.array([np.log(2.0)]), np.array([[1.0, 4.0]])
    >>> merge_rows(ma, aa, mb, ab, np.array([1, 1]))
    >>> ma.round(4), aa.round(4)
    (array([0.6931]), array([[1.5, 5. ]]))
    """
    for i in range(max_a.shape[0]):
        merge_query(max_a, acc_a, i, max_b, acc_b, i, powers)

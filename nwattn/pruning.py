"""Brute force or pruned: which key tiles a computation visits.

Every computation of the package can visit all ``n x m`` (query, key)
pairs (``algorithm="brute"``) or only the key tiles that can weigh in
(``algorithm="tree"``): the keys are ordered by a k-d tree whose leaves
are the tiles, and each block of queries skips the tiles whose bounding
box lies beyond its reach (:mod:`nwattn._cpu.tree` states the rule and
its bound). A compact kernel's pruned result is exact; a gaussian or
laplacian one equals brute force to rounding. Dot-product scores are
never pruned.

``algorithm="auto"`` (the default) prunes when a sample of the pairs says
that few of them weigh in: see :func:`tree_pays`. A :class:`KeyTree` built
once can be passed instead of the string, so that a fitted estimator or a
bandwidth search does not order its keys again at every call.
"""

import math

import numpy as np

from . import _config
from ._plan import TileOrder
from . import _validation as _v
from .kernels import DISTANCE, GAUSSIAN, LAPLACIAN

__all__ = ["KeyTree", "KeyTreeCache", "ALGORITHMS", "check_algorithm", "tree_pays",
           "key_order", "reach2"]

#: The values ``algorithm`` takes (besides a :class:`KeyTree`).
ALGORITHMS = ("auto", "brute", "tree")

#: ``"auto"`` stays brute force below this many keys, or this many pairs:
#: there the whole computation takes milliseconds either way.
AUTO_MIN_KEYS = 4096
AUTO_MIN_PAIRS = 1 << 22

#: ... and above this many continuous features, where the tiles' boxes are
#: too wide in every direction to exclude much (see the performance page).
AUTO_MAX_FEATURES = 5

#: ... and prunes when the sampled share of pairs within reach, times
#: ``AUTO_GROWTH**d`` (how much more than the neighbourhoods the blocks and
#: tiles make a pass visit, which grows with the features), stays below
#: this: where the pruned pass's cost, about that product times brute
#: force's, is measured to beat brute force (docs/pruning.rst, the table).
AUTO_MAX_SHARE = 1.0
AUTO_GROWTH = 1.5

#: Queries and keys of the sample ``"auto"`` decides on.
_SAMPLE_QUERIES = 64
_SAMPLE_KEYS = 4096


class KeyTree:
    """Keys in the order of a k-d tree, for pruned pooling and regression.

    Built once from a set of keys and passed as ``algorithm=`` to any
    computation on those keys (in the same row order), it saves ordering
    them again at every call: a bandwidth search makes dozens of passes
    over the same training points, and a fitted estimator predicts many
    times. The order does not depend on the bandwidth or the kernel (the
    boxes of the tiles are computed at each call, in its units), and any
    order gives the same results: a good one only visits fewer tiles.

    Parameters
    ----------
    K : array_like of shape (n_keys, n_features)
        The keys (continuous features only).
    leaf_size : int, default=32
        Keys per tile (leaf of the tree).

    Attributes
    ----------
    n_keys : int
    n_features : int
    leaf_size : int
    order : ndarray of shape (n_keys,)
        The keys' permutation: ``K[order]`` are the keys tile after tile.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.pruning import KeyTree
    >>> from nwattn.ops import attention_pool
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((5000, 2))
    >>> y = np.sin(6 * X[:, 0])
    >>> tree = KeyTree(X)
    >>> pruned = attention_pool(X[:3], X, y, "epanechnikov", 0.05, algorithm=tree)
    >>> brute = attention_pool(X[:3], X, y, "epanechnikov", 0.05, algorithm="brute")
    >>> bool(np.allclose(pruned, brute, rtol=1e-12, atol=0))
    True
    """

    def __init__(self, K, leaf_size=None):
        from ._backend import get_backend

        K = _v.check_float_array(K, "K", ndim=2)
        if leaf_size is None:
            leaf_size = _config.TREE_LEAF_KEYS
        if (isinstance(leaf_size, bool) or not isinstance(leaf_size, (int, np.integer))
                or leaf_size < 1):
            raise ValueError(f"leaf_size must be a positive integer, got {leaf_size!r}")
        self.n_keys, self.n_features = K.shape
        self.leaf_size = int(leaf_size)
        self.order = get_backend("cpu").tree_order(np.asarray(K, dtype=np.float64),
                                                   self.leaf_size)

    def __repr__(self):
        return (f"KeyTree(n_keys={self.n_keys}, n_features={self.n_features}, "
                f"leaf_size={self.leaf_size})")


def check_algorithm(algorithm, name="algorithm"):
    """Validate ``algorithm``: one of :data:`ALGORITHMS` or a :class:`KeyTree`.

    Examples
    --------
    >>> from nwattn.pruning import check_algorithm
    >>> check_algorithm("Tree")
    'tree'
    """
    if isinstance(algorithm, KeyTree):
        return algorithm
    if isinstance(algorithm, str) and algorithm.lower() in ALGORITHMS:
        return algorithm.lower()
    raise ValueError(f"{name} must be one of {', '.join(map(repr, ALGORITHMS))} or a "
                     f"KeyTree, got {algorithm!r}")


def reach2(code, compact):
    """Squared scaled distance beyond which a kernel's pairs cannot weigh in.

    The support's radius for a compact kernel; for the gaussian and the
    laplacian, the distance at which a full tile's weight falls below the
    pruning bound's ``2**-60`` of a weight of 1 (what ``"auto"``'s sample
    counts as within reach).

    Examples
    --------
    >>> from nwattn.kernels import GAUSSIAN, EPANECHNIKOV
    >>> from nwattn.pruning import reach2
    >>> reach2(EPANECHNIKOV, True), round(reach2(GAUSSIAN, False) ** 0.5, 2)
    (1.0, 9.49)
    """
    if compact:
        return 1.0
    cut = 60.0 * math.log(2.0) + math.log(_config.TREE_LEAF_KEYS)
    if code == GAUSSIAN:
        return 2.0 * cut
    if code == LAPLACIAN:
        return cut * cut
    return math.inf


def tree_pays(Q, K, kern, bandwidth=1.0, qscale=None):
    """Whether ``"auto"`` prunes: few pairs of queries ``Q`` and keys ``K`` can weigh in.

    Brute force for dot-product scores, for fewer than
    :data:`AUTO_MIN_KEYS` keys or :data:`AUTO_MIN_PAIRS` pairs, and for
    more than :data:`AUTO_MAX_FEATURES` features. Otherwise the share of a
    fixed sample of pairs (64 queries, 4096 keys, drawn with a fixed seed
    so that the choice is reproducible) within reach of each other
    (:func:`reach2`, distances divided by ``bandwidth`` and each query's
    times its ``qscale``), times ``1.5**d`` (:data:`AUTO_GROWTH`: the
    visited region grows by the tiles' and blocks' own widths in every
    direction), must stay below :data:`AUTO_MAX_SHARE`.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.kernels import get_kernel
    >>> from nwattn.pruning import tree_pays
    >>> X = np.random.default_rng(0).random((100_000, 2))
    >>> k = get_kernel("epanechnikov")
    >>> tree_pays(X, X, k, 0.01), tree_pays(X, X, k, 0.5)
    (True, False)
    """
    if kern.family != DISTANCE:
        return False
    n, d = Q.shape
    m = K.shape[0]
    if m < AUTO_MIN_KEYS or n * m < AUTO_MIN_PAIRS or d > AUTO_MAX_FEATURES or d == 0:
        return False
    rng = np.random.default_rng(0)
    qi = np.sort(rng.choice(n, min(n, _SAMPLE_QUERIES), replace=False))
    kj = np.sort(rng.choice(m, min(m, _SAMPLE_KEYS), replace=False))
    h = np.broadcast_to(np.asarray(bandwidth, dtype=np.float64), (d,))
    Qa = np.asarray(Q[qi], dtype=np.float64) / h
    Ka = np.asarray(K[kj], dtype=np.float64) / h
    D2 = ((Qa[:, None, :] - Ka[None, :, :]) ** 2).sum(axis=2)
    if qscale is not None:
        D2 *= np.asarray(qscale, dtype=np.float64)[qi, None] ** 2
    share = float(np.mean(D2 <= reach2(kern.code, kern.is_compact)))
    return share * AUTO_GROWTH ** d < AUTO_MAX_SHARE


class KeyTreeCache:
    """``algorithm`` for repeated calls on the same keys, their tree built once.

    A bandwidth search or a fitted estimator makes many calls on one set
    of keys. :meth:`for_call` gives what to pass as ``algorithm=`` to each:
    ``"brute"``, or the one :class:`KeyTree` of the keys, built the first
    time a call prunes; with ``"auto"`` each call decides from its own
    bandwidth (:func:`tree_pays`).

    Parameters
    ----------
    algorithm : {"auto", "brute", "tree"} or KeyTree
        The user's choice.
    K : array_like of shape (n_keys, n_features)
        The keys (continuous features).
    device : str, default="cpu"
        The calls' device: off the CPU, ``"auto"`` is passed on as it is
        (the backend then decides).

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.kernels import get_kernel
    >>> from nwattn.pruning import KeyTreeCache
    >>> X = np.random.default_rng(0).random((20_000, 1))
    >>> cache = KeyTreeCache("auto", X)
    >>> cache.for_call(get_kernel("boxcar"), 0.5)
    'brute'
    >>> cache.for_call(get_kernel("boxcar"), 0.001)
    KeyTree(n_keys=20000, n_features=1, leaf_size=32)
    """

    def __init__(self, algorithm, K, device="cpu"):
        self.algorithm = check_algorithm(algorithm)
        self.K = K
        self.device = device
        self.tree = algorithm if isinstance(algorithm, KeyTree) else None

    def for_call(self, kern, bandwidth, Q=None, qscale=None):
        """``algorithm=`` for a call of kernel ``kern`` at ``bandwidth`` (queries ``Q``: the keys)."""
        if isinstance(self.algorithm, str):
            if self.algorithm == "brute":
                return "brute"
            if self.algorithm == "auto":
                if str(self.device).lower() != "cpu":
                    return "auto"
                Q = self.K if Q is None else Q
                if not tree_pays(Q, self.K, kern, bandwidth, qscale):
                    return "brute"
        if self.tree is None:
            self.tree = KeyTree(self.K)
        return self.tree


def key_order(algorithm, be, kern, Qs, KT, *, same=False, qscale=None):
    """The pruned schedule's key order for a call, or None for brute force.

    ``algorithm`` as :func:`check_algorithm` returns it; ``be`` the call's
    backend; ``Qs``/``KT`` the scaled queries and transposed keys; ``same``
    whether the queries are the keys themselves (leave-one-out), so that
    they are taken in the keys' order; ``qscale``: each query's factor of
    its offsets (nearest-neighbour bandwidths).

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn._backend import get_backend
    >>> from nwattn.kernels import get_kernel
    >>> from nwattn.pruning import key_order
    >>> X = np.random.default_rng(0).random((1000, 2))
    >>> order = key_order("tree", get_backend("cpu"), get_kernel("boxcar"), X, X.T)
    >>> sorted(order.keys.tolist()) == list(range(1000)), order.leaf
    (True, 32)
    >>> key_order("auto", get_backend("cpu"), get_kernel("boxcar"), X, X.T) is None
    True
    """
    if isinstance(algorithm, str) and algorithm == "brute":
        return None
    explicit = not (isinstance(algorithm, str) and algorithm == "auto")
    if kern.family != DISTANCE:
        if explicit:
            raise ValueError(f"algorithm={_name(algorithm)!r} prunes smoothing kernels only; "
                             f"the score {kern.name!r} takes algorithm='brute' or 'auto'")
        return None
    if "tree_order" not in be.capabilities:
        if explicit:
            raise ValueError(f"algorithm={_name(algorithm)!r} runs on the CPU only: use "
                             "device='cpu', or algorithm='brute'")
        return None
    if isinstance(algorithm, KeyTree):
        m = KT.shape[1]
        if algorithm.n_keys != m:
            raise ValueError(f"algorithm: the KeyTree holds {algorithm.n_keys} keys, the call "
                             f"has {m}")
        return TileOrder(algorithm.order, algorithm.leaf_size, same)
    if algorithm == "auto" and not tree_pays(Qs, KT.T, kern, 1.0, qscale):
        return None
    leaf = _config.TREE_LEAF_KEYS
    return TileOrder(be.tree_order(KT.T, leaf), leaf, same)


def _name(algorithm):
    return "KeyTree" if isinstance(algorithm, KeyTree) else algorithm

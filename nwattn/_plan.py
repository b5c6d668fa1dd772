"""Work decomposition shared by the backends: key splits, and the pruned schedule's order.

The split rule depends on the shape and the configuration only, never on the
thread count or the device's occupancy, so a result is the same on any
machine and for any number of threads.
"""

from typing import NamedTuple

import numpy as np


def plan_splits(n, m, query_block, target_tasks, min_split_keys):
    """Number and length of key splits for ``n`` queries and ``m`` keys.

    With fewer blocks of ``query_block`` queries than ``target_tasks``, the
    keys are split as well (never into splits shorter than
    ``min_split_keys``) so that there are enough independent tasks; the
    partial states are merged exactly afterwards.

    Examples
    --------
    >>> from nwattn._plan import plan_splits
    >>> plan_splits(10, 100_000, 32, 64, 4096)
    (25, 4000)
    >>> plan_splits(10_000, 100_000, 32, 64, 4096)
    (1, 100000)
    """
    n_blocks = -(-n // query_block)
    if n_blocks >= target_tasks:
        return 1, m
    n_split = min(-(-m // min_split_keys), -(-target_tasks // n_blocks))
    n_split = max(1, n_split)
    split_size = -(-m // n_split)
    return -(-m // split_size), split_size


class TileOrder(NamedTuple):
    """The keys' order of the pruned schedule.

    Attributes
    ----------
    keys : ndarray of shape (n_keys,), int64
        The permutation of the keys (:func:`kd_order`).
    leaf : int
        Keys per tile it was built for.
    same : bool
        The queries are the keys themselves (leave-one-out): they are
        taken in the same order instead of one of their own.
    """

    keys: np.ndarray
    leaf: int
    same: bool

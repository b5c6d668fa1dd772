"""Work decomposition shared by the backends: how many key splits a problem gets.

The rule depends on the shape and the configuration only, never on the
thread count or the device's occupancy, so a result is the same on any
machine and for any number of threads.
"""


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

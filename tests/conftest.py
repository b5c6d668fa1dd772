import os
import sys

# numba reads NUMBA_ENABLE_CUDASIM when it is first imported, so the choice
# of the CUDA simulator (no GPU here) must be made before any test module
# imports numba; tests/test_cuda.py explains the rest.
from nwattn._device import driver_problem

if "numba" not in sys.modules and driver_problem() is not None:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "default",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("ci", parent=settings.get_profile("default"), max_examples=60,
                          print_blob=True)
settings.load_profile("ci" if __import__("os").environ.get("CI") else "default")


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from a random draw.

    The seed is printed on failure; ``NWATTN_TEST_SEED=<seed> pytest <test id>``
    replays that draw.
    """
    replay = __import__("os").environ.get("NWATTN_TEST_SEED")
    seed = int(replay) if replay else np.random.SeedSequence().entropy % (2**32)
    request.node.user_properties.append(("seed", seed))
    print(f"rng seed: {seed}")
    return np.random.default_rng(seed)


@pytest.fixture
def small_blocks(monkeypatch):
    """Lower the CPU work decomposition so tiny inputs span several blocks,
    key tiles and key splits."""
    from nwattn import _config

    monkeypatch.setattr(_config, "QUERY_BLOCK", 3)
    monkeypatch.setattr(_config, "KEY_TILE", 5)
    monkeypatch.setattr(_config, "TARGET_TASKS", 16)
    monkeypatch.setattr(_config, "MIN_SPLIT_KEYS", 4)
    monkeypatch.setattr(_config, "PAIR_BLOCKS", 5)
    monkeypatch.setattr(_config, "PAIR_MIN_ROWS", 2)
    return _config


@pytest.fixture
def small_tiles(monkeypatch):
    """Lower the pruned schedule's work decomposition: tiles of 4 keys, blocks of 3
    queries, key splits, so inputs of a few hundred points span many of each."""
    from nwattn import _config

    monkeypatch.setattr(_config, "QUERY_BLOCK", 3)
    monkeypatch.setattr(_config, "KEY_TILE", 8)
    monkeypatch.setattr(_config, "TREE_LEAF_KEYS", 4)
    monkeypatch.setattr(_config, "TARGET_TASKS", 64)
    monkeypatch.setattr(_config, "MIN_SPLIT_KEYS", 16)
    monkeypatch.setattr(_config, "GEMM_QUERY_BLOCK", 5)
    return _config

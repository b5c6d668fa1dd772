import numpy as np
import pytest
from hypothesis import HealthCheck, settings

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
    """A fresh generator per test, seeded from the test's name and a random draw.

    The seed is printed on failure so a failing draw can be replayed.
    """
    seed = np.random.SeedSequence().entropy % (2**32)
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
    return _config

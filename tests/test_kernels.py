"""The kernel catalogue."""

import math

import numpy as np
import pytest

from nwattn import kernels

from . import naive


def test_catalogue_names_and_aliases():
    assert kernels.kernel_names("distance") == list(naive.DISTANCE_KERNELS)
    assert kernels.kernel_names("score") == list(naive.SCORE_KERNELS)
    aliases = {"rbf": "gaussian", "exponential": "laplacian", "tophat": "boxcar",
               "uniform": "boxcar", "linear": "triangular", "quartic": "biweight",
               "Scaled_Dot": "scaled_dot", " Cosine ": "cosine"}
    for alias, name in aliases.items():
        assert kernels.get_kernel(alias).name == name
    with pytest.raises(ValueError, match="family"):
        kernels.kernel_names("other")


@pytest.mark.parametrize("name", naive.DISTANCE_KERNELS)
def test_kernel_values_and_support(name, rng):
    k = kernels.get_kernel(name)
    u = np.concatenate([rng.uniform(0, 3, size=200), [0.0, 0.999999, 1.0, 1.000001]])
    np.testing.assert_allclose(k(u), naive.kernel_value(name, u), rtol=1e-12, atol=1e-12)
    assert k(0.0) == 1.0
    if k.is_compact:
        assert k.support == 1.0 and k(1.5) == 0.0
    else:
        assert math.isinf(k.support) and k(30.0) > 0


@pytest.mark.parametrize("name", naive.DISTANCE_KERNELS)
def test_log_weight_dispatch_matches_each_function(name, rng):
    k = kernels.get_kernel(name)
    for u2 in rng.uniform(0, 2, size=20):
        assert kernels.log_weight(k.code, u2) == k.log_weight(u2)


def test_scores_are_not_distance_functions():
    with pytest.raises(TypeError, match="score"):
        kernels.get_kernel("dot")(0.5)

"""Bad input gets a clear error naming the parameter; never a crash or a silent NaN."""

import numpy as np
import pytest

from nwattn import ops
from nwattn.kernels import get_kernel, kernel_names

Q = np.random.default_rng(0).normal(size=(4, 2))
K = np.random.default_rng(1).normal(size=(5, 2))
V = np.arange(5.0)


def pool(**kw):
    args = dict(Q=Q, K=K, V=V)
    args.update(kw)
    return ops.attention_pool(args.pop("Q"), args.pop("K"), args.pop("V"), **args)


@pytest.mark.parametrize("name", ["Q", "K", "V"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data(name, bad):
    arr = {"Q": Q, "K": K, "V": V}[name].copy()
    arr.flat[1] = bad
    with pytest.raises(ValueError, match=name):
        pool(**{name: arr})


def test_shape_mismatches():
    with pytest.raises(ValueError, match="same number of features"):
        pool(Q=np.ones((4, 3)))
    with pytest.raises(ValueError, match="same number of rows"):
        pool(V=np.arange(4.0))
    with pytest.raises(ValueError, match="Q must have at least 2 dimensions"):
        pool(Q=np.ones(2))
    # 3-D arrays are attention arrays (a leading batch dimension): their
    # last two dimensions must still agree
    with pytest.raises(ValueError, match="Q and K must have the same number of features"):
        pool(K=np.ones((5, 2, 1)))
    with pytest.raises(ValueError, match="K and V must have the same number of rows"):
        pool(V=np.ones((5, 1, 1)))
    with pytest.raises(ValueError, match="exclude_self"):
        pool(exclude_self=True)


@pytest.mark.parametrize("name", ["Q", "K"])
def test_empty_arrays(name):
    arr = np.empty((0, 2))
    with pytest.raises(ValueError, match=name):
        pool(**{name: arr, **({"V": np.empty(0)} if name == "K" else {})})
    with pytest.raises(ValueError, match=name):
        pool(**{name: np.empty((4, 0))})


@pytest.mark.parametrize("bandwidth", [0.0, -1.0, np.nan, np.inf, [1.0, 0.0], [1.0, -2.0]])
def test_bad_bandwidth_values(bandwidth):
    with pytest.raises(ValueError, match="bandwidth"):
        pool(bandwidth=bandwidth)


@pytest.mark.parametrize("bandwidth", [[1.0, 2.0, 3.0], np.ones((2, 1))])
def test_bad_bandwidth_length(bandwidth):
    with pytest.raises(ValueError, match="bandwidth"):
        pool(bandwidth=bandwidth)


@pytest.mark.parametrize("bandwidth", ["wide", 1j, [1.0 + 1j, 1.0]])
def test_bandwidth_of_wrong_type(bandwidth):
    with pytest.raises(TypeError, match="bandwidth"):
        pool(bandwidth=bandwidth)


@pytest.mark.parametrize("name", ["Q", "K", "V"])
def test_strings_and_complex(name):
    arr = {"Q": Q, "K": K, "V": V}[name]
    with pytest.raises(TypeError, match=name):
        pool(**{name: arr.astype(str)})
    with pytest.raises(TypeError, match=name):
        pool(**{name: arr.astype(complex)})
    with pytest.raises(TypeError, match=name):
        pool(**{name: "abc"})


def test_unknown_kernel_lists_valid_names():
    with pytest.raises(ValueError, match="unknown kernel 'gausian'.*epanechnikov.*gaussian"):
        pool(kernel="gausian")
    with pytest.raises(TypeError, match="kernel"):
        pool(kernel=3)
    assert get_kernel("GAUSSIAN").name == "gaussian"
    assert "tricube" in kernel_names()


@pytest.mark.parametrize("w", [[1, 1, -1, 1, 1], [0, 0, 0, 0, 0], [1, 1, np.nan, 1, 1], [1, 1]])
def test_bad_key_weight(w):
    with pytest.raises(ValueError, match="key_weight"):
        pool(key_weight=np.asarray(w, dtype=float))


def test_offsets_and_center():
    with pytest.raises(ValueError, match="key_offset"):
        ops.attention_pool_state(Q, K, V, key_offset=-1)
    with pytest.raises(ValueError, match="query_offset"):
        ops.attention_pool_state(Q, K, V, query_offset=1.5)
    with pytest.raises(ValueError, match="center"):
        ops.attention_pool_state(Q, K, V, center=[1.0, 2.0])


def test_dot_scores_that_would_overflow():
    with pytest.raises(ValueError, match="overflow"):
        pool(Q=Q * 100, kernel="dot", bandwidth=1e-307)


def test_softmax_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        ops.softmax([1.0, np.nan])
    with pytest.raises(ValueError, match=r"\+inf"):
        ops.softmax([1.0, np.inf])
    with pytest.raises(ValueError, match="empty"):
        ops.softmax(np.empty((2, 0)))
    with pytest.raises(ValueError, match="axis"):
        ops.softmax([1.0, 2.0], axis=1)
    with pytest.raises(TypeError, match="S"):
        ops.softmax(["a", "b"])
    with pytest.raises(TypeError, match="S"):
        ops.softmax([1j, 2.0])

"""Attention arrays: leading batch dimensions, masks and causal order.

Compared with PyTorch's ``scaled_dot_product_attention`` (when installed),
with the float64 NumPy references of tests/naive.py for every kernel of
the catalogue, and with a loop of 2-D calls over the batch, bit for bit.
Sizes stay tiny; the ``small_blocks`` fixture makes them span several
query blocks, key tiles and key splits.
"""

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nwattn.exceptions import EmptyNeighborhoodWarning
from nwattn.ops import (attention_pool, attention_pool_state, finalize_state, merge_states,
                        pairwise_scores, softmax)

from . import naive


def _masked_reference(Q, K, V, kernel, bandwidth=1.0, key_mask=None, attn_mask=None,
                      is_causal=False, causal_offset=0):
    """float64 pooling of attention arrays: a loop over the batch of dense NumPy pooling."""
    Q, K, V = (np.asarray(a, np.float64) for a in (Q, K, V))
    n, m = Q.shape[-2], K.shape[-2]
    shapes = [Q.shape[:-2], K.shape[:-2], V.shape[:-2]]
    if key_mask is not None:
        shapes.append(np.shape(key_mask)[:-1])
    if attn_mask is not None:
        shapes.append(np.shape(attn_mask)[:-2])
    full = np.broadcast_shapes(*shapes)
    Qb = np.broadcast_to(Q, full + Q.shape[-2:])
    Kb = np.broadcast_to(K, full + K.shape[-2:])
    Vb = np.broadcast_to(V, full + V.shape[-2:])
    out = np.empty(full + (n, V.shape[-1]))
    for idx in itertools.product(*(range(b) for b in full)):
        S = naive.scores(Qb[idx], Kb[idx], kernel, bandwidth)
        if key_mask is not None:
            km = np.broadcast_to(key_mask, full + (m,))[idx]
            S = np.where(km[None, :], S, -np.inf)
        if attn_mask is not None:
            am = np.broadcast_to(attn_mask, full + (n, m))[idx]
            S = np.where(am, S, -np.inf) if am.dtype == bool else S + am
        if is_causal:
            S = np.where(np.arange(m)[None, :] <= np.arange(n)[:, None] + causal_offset, S,
                         -np.inf)
        out[idx] = naive.pool_from_scores(S, Vb[idx])
    return out


# --- against PyTorch's scaled_dot_product_attention ----------------------------------------

TOL = {np.float32: 1e-5, np.float64: 1e-12}


def _sdpa(Q, K, V, **kwargs):
    torch = pytest.importorskip("torch")
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    t = [torch.from_numpy(np.ascontiguousarray(a)) for a in (Q, K, V)]
    mask = kwargs.pop("attn_mask", None)
    if mask is not None:
        kwargs["attn_mask"] = torch.from_numpy(np.ascontiguousarray(mask))
    with torch.no_grad():
        return sdpa(*t, **kwargs).numpy()


def _draw(rng, shape, dtype):
    return rng.normal(size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d, p", [(5, 3), (32, 16)], ids=["row body", "matrix body"])
def test_equals_sdpa_with_broadcasting_and_every_mask(rng, small_blocks, monkeypatch, dtype, d,
                                                      p):
    """Grouped-query broadcasting; no mask, boolean and float masks, a key-padding
    mask as SDPA takes it (..., 1, m), causal with n < m, n > m and n == m."""
    monkeypatch.setattr(small_blocks, "GEMM_QUERY_BLOCK", 4)
    monkeypatch.setattr(small_blocks, "GEMM_CAUSAL_QUERY_BLOCK", 3)
    tol = TOL[dtype]
    for n, m in [(7, 11), (11, 7), (9, 9)]:
        Q = _draw(rng, (2, 3, n, d), dtype)
        K = _draw(rng, (2, 1, m, d), dtype)
        V = _draw(rng, (2, 1, m, p), dtype)
        Kt, Vt = np.repeat(K, 3, axis=1), np.repeat(V, 3, axis=1)  # SDPA wants equal heads
        got = attention_pool(Q, K, V, "scaled_dot")
        np.testing.assert_allclose(got, _sdpa(Q, Kt, Vt), rtol=tol, atol=tol)
        got = attention_pool(Q, K, V, "scaled_dot", is_causal=True)
        np.testing.assert_allclose(got, _sdpa(Q, Kt, Vt, is_causal=True), rtol=tol, atol=tol)
        bool_mask = rng.random((2, 1, n, m)) < 0.7
        bool_mask[..., 0] = True  # no empty row here; see the test of empty rows
        got = attention_pool(Q, K, V, "scaled_dot", attn_mask=bool_mask)
        np.testing.assert_allclose(got, _sdpa(Q, Kt, Vt, attn_mask=bool_mask), rtol=tol,
                                   atol=tol)
        bias = _draw(rng, (3, n, m), dtype)
        got = attention_pool(Q, K, V, "scaled_dot", attn_mask=bias)
        np.testing.assert_allclose(got, _sdpa(Q, Kt, Vt, attn_mask=bias), rtol=tol, atol=tol)
        lengths = rng.integers(1, m + 1, size=2)
        padding = np.arange(m)[None, :] < lengths[:, None]  # (2, m): ragged sequences
        got = attention_pool(Q, K, V, "scaled_dot", key_mask=padding[:, None, :])
        want = _sdpa(Q, Kt, Vt, attn_mask=padding[:, None, None, :])
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        got = attention_pool(Q, K, V, "scaled_dot", attn_mask=padding[:, None, None, :])
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        # SDPA's scale is the dot score's inverse bandwidth.
        got = attention_pool(Q, K, V, "dot", bandwidth=1 / 0.3)
        np.testing.assert_allclose(got, _sdpa(Q, Kt, Vt, scale=0.3), rtol=tol, atol=tol)


def test_empty_rows_are_nan_with_a_warning_where_sdpa_gives_zeros(rng):
    Q, K, V = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 2))
    mask = np.ones((2, 4, 5), bool)
    mask[1, 2] = False
    with pytest.warns(EmptyNeighborhoodWarning, match="1 of 8 queries"):
        got = attention_pool(Q, K, V, "scaled_dot", attn_mask=mask)
    assert np.isnan(got[1, 2]).all()
    assert not np.isnan(np.delete(got.reshape(8, 2), 6, axis=0)).any()
    want = _sdpa(Q, K, V, attn_mask=mask)
    np.testing.assert_allclose(np.nan_to_num(got), want, rtol=1e-12, atol=1e-12)
    # A causal diagonal below the first key empties the first queries too.
    with pytest.warns(EmptyNeighborhoodWarning, match="4 of 8"):
        got = attention_pool(Q, K, V, "scaled_dot", is_causal=True, causal_offset=-2)
    assert np.isnan(got[:, :2]).all() and not np.isnan(got[:, 2:]).any()


# --- every kernel of the catalogue against the NumPy reference -------------------------------


@pytest.mark.parametrize("kernel", naive.ALL_KERNELS)
def test_every_kernel_with_masks_equals_the_reference(rng, small_blocks, kernel):
    n, m, d = 7, 12, 2
    Q = rng.normal(size=(2, 1, n, d))
    K = rng.normal(size=(1, 3, m, d))
    V = rng.normal(size=(2, 3, m, 1))
    # Compact kernels need a bandwidth wide enough that most queries see keys.
    h = 3.0 if kernel in naive.COMPACT_KERNELS else 0.8
    key_mask = rng.random((2, 1, m)) < 0.8
    key_mask[..., 0] = True
    bias = rng.normal(size=(1, 3, n, m))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        got = attention_pool(Q, K, V, kernel, h, key_mask=key_mask, attn_mask=bias,
                             is_causal=True, causal_offset=3)
    want = _masked_reference(Q, K, V, kernel, h, key_mask=key_mask, attn_mask=bias,
                             is_causal=True, causal_offset=3)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


# --- batched = a loop of 2-D calls, bit for bit ---------------------------------------------


@st.composite
def _problems(draw):
    lead = draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))
    sub = lambda: tuple(b if draw(st.booleans()) else 1 for b in lead)  # noqa: E731
    n, m = draw(st.integers(1, 9)), draw(st.integers(1, 13))
    return dict(lead=tuple(lead), q=sub(), k=sub(), v=sub(), n=n, m=m,
                kernel=draw(st.sampled_from(["gaussian", "scaled_dot", "epanechnikov"])),
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                mask=draw(st.sampled_from([None, "key", "bool", "float"])),
                causal=draw(st.booleans()), seed=draw(st.integers(0, 2**31)))


@settings(max_examples=25)
@given(_problems())
def test_batched_is_a_loop_of_2d_calls_bit_for_bit(pb):
    rng = np.random.default_rng(pb["seed"])
    n, m, dt = pb["n"], pb["m"], pb["dtype"]
    Q = rng.normal(size=pb["q"] + (n, 3)).astype(dt)
    K = rng.normal(size=pb["k"] + (m, 3)).astype(dt)
    V = rng.normal(size=pb["v"] + (m, 2)).astype(dt)
    masks = {}
    if pb["mask"] == "key":
        masks["key_mask"] = rng.random(pb["lead"] + (m,)) < 0.8
    elif pb["mask"] == "bool":
        masks["attn_mask"] = rng.random(pb["lead"] + (n, m)) < 0.8
    elif pb["mask"] == "float":
        masks["attn_mask"] = rng.normal(size=(n, m)).astype(dt)
    h = 2.0
    lead = [np.shape(masks["key_mask"])[:-1]] if "key_mask" in masks else []
    lead += [np.shape(masks["attn_mask"])[:-2]] if "attn_mask" in masks else []
    full = np.broadcast_shapes(Q.shape[:-2], K.shape[:-2], V.shape[:-2], *lead)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        got = attention_pool(Q, K, V, pb["kernel"], h, is_causal=pb["causal"], **masks)
        assert got.shape == full + (n, 2)
        for idx in itertools.product(*(range(b) for b in full)):
            item = [np.broadcast_to(a, full + a.shape[-2:])[idx] for a in (Q, K, V)]
            mk = {}
            if "key_mask" in masks:
                mk["key_mask"] = np.broadcast_to(masks["key_mask"], full + (m,))[idx]
            if "attn_mask" in masks:
                mk["attn_mask"] = np.broadcast_to(masks["attn_mask"], full + (n, m))[idx]
            want = attention_pool(*item, pb["kernel"], h, is_causal=pb["causal"], **mk)
            np.testing.assert_array_equal(got[idx], want)


# --- states and their merge, scores, softmax ------------------------------------------------


def test_states_over_key_shards_merge_to_the_whole_with_masks_and_causal_order(rng,
                                                                            small_blocks):
    n = m = 10
    Q, K, V = rng.normal(size=(2, n, 3)), rng.normal(size=(2, m, 3)), rng.normal(size=(2, m, 2))
    key_mask = rng.random((2, m)) < 0.8
    key_mask[:, 0] = True
    kw = dict(key_mask=key_mask, is_causal=True)
    whole = attention_pool(Q, K, V, "scaled_dot", **kw)
    left = attention_pool_state(Q, K[:, :4], V[:, :4], "scaled_dot", key_mask=key_mask[:, :4],
                                is_causal=True)
    right = attention_pool_state(Q, K[:, 4:], V[:, 4:], "scaled_dot", key_mask=key_mask[:, 4:],
                                 is_causal=True, key_offset=4)
    assert left.batch_shape == (2,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        merged = finalize_state(merge_states(left, right))
    np.testing.assert_allclose(merged, whole, rtol=1e-12, atol=1e-12)
    assert merged.shape == (2, n, 2)
    other = attention_pool_state(Q[:, None], K[:, None], V[:, None], "scaled_dot")
    with pytest.raises(ValueError, match="batch shapes"):
        merge_states(left, other)


def test_return_std_and_1d_values_keep_the_batch_shape(rng):
    Q, K = rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 6, 2))
    y = rng.normal(size=6)
    pred, std = attention_pool(Q, K, y, return_std=True, key_mask=np.ones(6, bool))
    assert pred.shape == std.shape == (3, 4)
    for b in range(3):
        want = naive.pool_from_scores(naive.scores(Q[b], K[b]), y, return_std=True)
        np.testing.assert_allclose(pred[b], want[0], rtol=1e-12)
        np.testing.assert_allclose(std[b], want[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel", ["gaussian", "scaled_dot"])
def test_pairwise_scores_and_softmax_of_attention_arrays(rng, kernel):
    Q, K = rng.normal(size=(2, 3, 4, 2)), rng.normal(size=(3, 5, 2))
    bias = rng.normal(size=(4, 5))
    key_mask = np.array([True, True, False, True, True])
    S = pairwise_scores(Q, K, kernel, attn_mask=bias, key_mask=key_mask, is_causal=True,
                        causal_offset=1)
    assert S.shape == (2, 3, 4, 5)
    allowed = (np.arange(5)[None, :] <= np.arange(4)[:, None] + 1) & key_mask
    for a, b in itertools.product(range(2), range(3)):
        want = np.where(allowed, naive.scores(Q[a, b], K[b], kernel) + bias, -np.inf)
        np.testing.assert_allclose(S[a, b], want, rtol=1e-12, atol=1e-12)
    W = softmax(S)
    np.testing.assert_allclose(W.sum(axis=-1), 1.0, rtol=1e-12)
    V = rng.normal(size=(3, 5, 2))
    np.testing.assert_allclose(
        W @ V, attention_pool(Q, K, V, kernel, attn_mask=bias, key_mask=key_mask,
                              is_causal=True, causal_offset=1), rtol=1e-10, atol=1e-12)


# --- the tile schedule and input handling ---------------------------------------------------


def test_causal_and_padded_tiles_are_not_visited():
    from nwattn._cpu.strategies import causal_end, tile_padded

    # queries 0:4 with diagonal 0 need keys 0:4 only; with diagonal -5, none
    assert causal_end(0, 100, 4, 0) == 4
    assert causal_end(0, 100, 4, -5) == 0
    assert causal_end(8, 100, 4, 200) == 100
    LW = np.array([[0.0, -np.inf, -np.inf, 0.5]])
    assert tile_padded(LW, 0, 1, 3) and not tile_padded(LW, 0, 1, 4)
    assert not tile_padded(LW, -1, 1, 3)


def test_torch_tensors_and_expanded_arrays_are_read_without_copies(rng):
    torch = pytest.importorskip("torch")
    from nwattn._batch import check_attention_array

    K = torch.randn(2, 1, 6, 4)
    assert np.shares_memory(check_attention_array(K, "K"), K.numpy())
    expanded = K.expand(2, 8, 6, 4)  # grouped-query heads: stride 0, no data repeated
    view = check_attention_array(expanded, "K")
    assert view.shape == (2, 1, 6, 4) and np.shares_memory(view, K.numpy())
    Q = torch.randn(2, 8, 3, 4)
    got = attention_pool(Q, expanded, expanded, "scaled_dot")
    want = _sdpa(Q.numpy(), expanded.numpy(), expanded.numpy())
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(key_mask=np.ones(4, bool)), r"key_mask must have one entry per key \(5\)"),
    (dict(key_mask=np.ones(5)), "key_mask must be booleans"),
    (dict(attn_mask=np.ones((2, 5), bool)), r"attn_mask must broadcast to \(\.\.\., 3, 5\)"),
    (dict(attn_mask=np.full((3, 5), np.nan)), "attn_mask must not contain NaN"),
    (dict(attn_mask=np.ones((4, 3, 5), bool)), "attn_mask"),
    (dict(is_causal=1), "is_causal must be True or False"),
    (dict(is_causal=True, causal_offset=0.5), "causal_offset must be an integer"),
    (dict(key_weight=-np.ones((2, 5))), "key_weight must be non-negative"),
])
def test_errors_name_the_parameter(rng, kwargs, match):
    Q, K, V = rng.normal(size=(2, 3, 2)), rng.normal(size=(2, 5, 2)), rng.normal(size=(2, 5, 1))
    with pytest.raises((ValueError, TypeError), match=match):
        attention_pool(Q, K, V, **kwargs)


def test_batch_shapes_that_do_not_broadcast_are_refused(rng):
    with pytest.raises(ValueError, match=r"do not broadcast: Q \(2,\), K \(3,\)"):
        attention_pool(rng.normal(size=(2, 3, 2)), rng.normal(size=(3, 5, 2)),
                       rng.normal(size=(5, 1)))
    with pytest.raises(ValueError, match="Q and K must have the same number of features"):
        attention_pool(rng.normal(size=(2, 3, 2)), rng.normal(size=(2, 5, 3)),
                       rng.normal(size=(5, 1)))


def test_a_gpu_device_is_refused_for_attention_arrays(rng, monkeypatch):
    from nwattn import _backend

    class PoolOnly:
        name = "cuda"
        capabilities = frozenset({"pool"})

    monkeypatch.setitem(_backend._loaded, "cuda", PoolOnly())
    monkeypatch.setattr(_backend, "resolve_device", lambda device, n, on_gpu: "cuda")
    with pytest.raises(ValueError, match="attention arrays .* has no cuda implementation"):
        attention_pool(rng.normal(size=(2, 3, 2)), rng.normal(size=(2, 5, 2)),
                       rng.normal(size=(2, 5, 1)), device="cuda")

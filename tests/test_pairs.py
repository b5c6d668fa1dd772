"""The rbf objective that scores each pair once, against the two-sided sweeps."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nwattn import objective
from nwattn._backend import get_backend
from nwattn._cpu import pairs
from nwattn.kernels import RBF_KIND
from nwattn._parallel import threads

from . import naive


def _problem(rng, n, r, p, weighted):
    Z = rng.normal(size=(n, r))
    Y = rng.normal(size=(n, p)) + 3.0
    kw = rng.uniform(0.2, 2.0, size=n) if weighted else np.ones(n)
    if weighted:
        kw[n // 2] = 0.0
    with np.errstate(divide="ignore"):
        logw = np.log(kw)
    return Z, Y, kw, logw, rng.uniform(0.5, 2.0, size=n)


@given(n_blocks=st.integers(1, 40))
def test_round_robin_meets_every_pair_once_without_sharing_a_block(n_blocks):
    plan = pairs.round_robin(n_blocks)
    met = []
    for tasks in plan:
        tasks = [tuple(t) for t in tasks if t[0] >= 0]
        assert tasks, "a round without a task"
        blocks = [b for t in tasks for b in set(t)]
        assert len(blocks) == len(set(blocks)), "a block in two tasks of one round"
        met += [tuple(sorted(t)) for t in tasks]
    assert sorted(met) == [(a, b) for a in range(n_blocks) for b in range(a, n_blocks)]


@pytest.mark.parametrize("n, p, weighted", [(3, 1, False), (23, 2, True), (40, 1, False),
                                            (31, 3, True)])
def test_pairs_match_the_two_sided_sweeps(rng, small_blocks, n, p, weighted):
    Z, Y, kw, logw, qw = _problem(rng, n, 3, p, weighted)
    args = (RBF_KIND, Z, Z, np.zeros(3), Y, logw, qw)
    assert objective._pairs_objective(get_backend("cpu"), Z, Y - Y.mean(axis=0), logw, qw) is not None
    loss, dPq, dPk, dwv, pred = objective.loo_loss_grad(*args)
    ref = objective.loo_loss_grad(*args, pairs_once=False)
    ref_loss, ref_pred = naive.loo_loss("rbf", Z, Z, Y, kw, qw)
    assert abs(loss - ref_loss) <= 1e-12 * ref_loss
    assert naive.relative_error(pred, ref_pred) < 1e-12
    assert not dPq.any() and not dwv.any()
    scale = max(np.abs(ref[2]).max(), 1e-300)
    assert np.abs(dPk - ref[2]).max() <= 1e-12 * scale + 1e-15


def test_two_points_have_no_gradient(rng):
    # Each point's leave-one-out prediction is the other's value whatever the
    # metric: the gradient is zero up to rounding of its terms.
    Z, Y, kw, logw, qw = _problem(rng, 2, 3, 2, weighted=False)
    loss, _, dPk, _, pred = objective.loo_loss_grad(RBF_KIND, Z, Z, np.zeros(3), Y, logw, qw)
    np.testing.assert_allclose(pred, Y[::-1], rtol=1e-14)
    terms = np.abs(Z).max() * np.abs(Y - Y.mean(axis=0)).max() ** 2
    assert np.abs(dPk).max() <= 1e-12 * terms


def test_pair_gradient_matches_finite_differences(rng, small_blocks):
    n, r = 19, 3
    Z, Y, kw, logw, qw = _problem(rng, n, r, 2, weighted=True)
    loss, _, grad, _, _ = objective.loo_loss_grad(RBF_KIND, Z, Z, np.zeros(r), Y, logw, qw)
    num = np.empty_like(Z)
    eps = 1e-6
    for i in range(n):
        for t in range(r):
            step = np.zeros_like(Z)
            step[i, t] = eps
            up = objective.loo_loss_grad(RBF_KIND, Z + step, Z + step, np.zeros(r), Y, logw,
                                       qw)[0]
            down = objective.loo_loss_grad(RBF_KIND, Z - step, Z - step, np.zeros(r), Y,
                                         logw, qw)[0]
            num[i, t] = (up - down) / (2 * eps)
    assert np.linalg.norm(grad - num) <= 1e-6 * np.linalg.norm(num)


def test_isolated_point_falls_back_to_the_online_softmax(rng, small_blocks):
    # exp(-||z_0 - z_j||^2 / 2) underflows for every j: the unshifted sums
    # cannot represent point 0's weights, the running-maximum sweeps can.
    Z, Y, kw, logw, qw = _problem(rng, 15, 2, 1, weighted=False)
    Z[0] = 1e3
    Yc = Y - Y.mean(axis=0)
    assert objective._pairs_objective(get_backend("cpu"), Z, Yc, logw, qw) is None
    loss, _, dPk, _, pred = objective.loo_loss_grad(RBF_KIND, Z, Z, np.zeros(2), Y, logw, qw)
    ref_loss, ref_pred = naive.loo_loss("rbf", Z, Z, Y, kw, qw)
    assert np.isfinite(pred).all()
    assert abs(loss - ref_loss) <= 1e-12 * ref_loss
    assert naive.relative_error(pred, ref_pred) < 1e-12


def test_pairs_do_not_depend_on_the_thread_count(rng, small_blocks):
    Z, Y, kw, logw, qw = _problem(rng, 60, 4, 2, weighted=True)
    args = (RBF_KIND, Z, Z, np.zeros(4), Y, logw, qw)
    with threads(1):
        one = objective.loo_loss_grad(*args)
    with threads(-1):
        every = objective.loo_loss_grad(*args)
    assert one[0] == every[0]
    np.testing.assert_array_equal(one[2], every[2])
    np.testing.assert_array_equal(one[4], every[4])


@pytest.mark.parametrize("n", [1, 63, 64, 65, 5000, 100_000])
def test_block_size_depends_on_n_only(n):
    from nwattn import _config

    bs = pairs.block_size(n)
    assert 1 <= bs <= min(n, _config.KEY_TILE)
    assert -(-n // bs) <= max(_config.PAIR_BLOCKS, -(-n // _config.KEY_TILE))

"""
Pooling in shards: states and their merge
=========================================

:func:`~nwattn.ops.attention_pool` is the composition of three public steps:

1. :func:`~nwattn.ops.attention_pool_state` pools the queries over *some* of
   the keys and returns a :class:`~nwattn.state.PoolState`: per query, the
   running maximum score, the sum of the weights relative to it, and the
   weighted sum of the values;
2. :func:`~nwattn.state.merge_states` combines the states of two disjoint
   sets of keys;
3. :func:`~nwattn.state.finalize_state` divides, giving the predictions.

Because the merge is exact, the keys can be cut into shards that are pooled
anywhere — other threads, processes, machines — and merged in any order.
This script checks that on a problem with several outputs, then uses the same
state for leave-one-out predictions on a sharded training set, and verifies
the identity that turns scaled dot-product attention into gaussian kernel
regression.
"""

import matplotlib.pyplot as plt
import numpy as np

from nwattn.ops import (attention_pool, attention_pool_state, finalize_state,
                        merge_states)

rng = np.random.default_rng(3)
n_keys, n_queries, d = 4000, 300, 3
K = rng.normal(size=(n_keys, d))
V = np.column_stack([np.sin(K.sum(axis=1)), np.cos(K[:, 0]) * K[:, 1]])  # two outputs
Q = rng.normal(size=(n_queries, d))

reference, reference_std = attention_pool(Q, K, V, kernel="gaussian", bandwidth=0.5,
                                          return_std=True)

# %%
# Shards merged in a random order
# -------------------------------
# Cut the keys into ``s`` shards at random places, pool each one, and merge
# the states in a shuffled order. The result matches the single call to
# rounding error, for the predictions and for the weighted standard
# deviations alike.

shard_counts = [1, 2, 4, 8, 16, 32, 64]
errors = []
for s in shard_counts:
    cuts = np.sort(rng.choice(np.arange(1, n_keys), size=s - 1, replace=False))
    bounds = np.concatenate([[0], cuts, [n_keys]])
    states = [attention_pool_state(Q, K[a:b], V[a:b], kernel="gaussian", bandwidth=0.5,
                                   return_std=True)
              for a, b in zip(bounds[:-1], bounds[1:])]
    order = rng.permutation(s)
    total = states[order[0]]
    for i in order[1:]:
        total = merge_states(total, states[i])
    pred, std = finalize_state(total, return_std=True)
    errors.append(max(np.abs(pred - reference).max(), np.abs(std - reference_std).max()))
    print(f"{s:3d} shards: largest difference from one call {errors[-1]:.1e}")

state = attention_pool_state(Q[:2], K[:10], V[:10], kernel="gaussian", bandwidth=0.5)
print("\nstate of two queries over ten keys:")
print("max  ", state.max)
print("norm ", state.norm)
print("acc  ", state.acc.ravel())

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar([str(s) for s in shard_counts], errors, color="tab:blue")
ax.axhline(np.finfo(np.float64).eps, color="black", ls="--", lw=1, label="float64 epsilon")
ax.set_yscale("log")
ax.set_ylim(1e-18, 1e-12)
for i, err in enumerate(errors):
    if err == 0:
        ax.text(i, 2e-18, "identical", ha="center", va="bottom", fontsize=8)
ax.set_xlabel("number of key shards")
ax.set_ylabel("largest absolute difference")
ax.set_title("Sharded pooling equals one pass")
ax.legend()
fig.tight_layout()

# %%
# Leave-one-out on a sharded training set
# ---------------------------------------
# With ``exclude_self=True``, the state skips the pair whose global query and
# key numbers agree. When the keys are a shard, ``key_offset`` gives the
# number of the shard's first key, so each training point is still left out
# exactly once.

X = rng.uniform(-2, 2, size=(1000, 1))
y = np.tanh(3 * X[:, 0]) + rng.normal(scale=0.2, size=1000)
loo_one = attention_pool(X, X, y, kernel="tricube", bandwidth=0.3, exclude_self=True)
merged = None
for a in range(0, 1000, 250):
    part = attention_pool_state(X, X[a:a + 250], y[a:a + 250], kernel="tricube",
                                bandwidth=0.3, exclude_self=True, key_offset=a)
    merged = part if merged is None else merge_states(merged, part)
loo_sharded = finalize_state(merged)
print(f"leave-one-out, 4 shards vs one call: {np.abs(loo_sharded - loo_one).max():.1e}")

# %%
# Scaled dot-product attention is gaussian kernel regression
# ----------------------------------------------------------
# Expanding :math:`\|q - k\|^2 = \|q\|^2 + \|k\|^2 - 2 q \cdot k` gives
#
# .. math::
#
#    \exp\frac{q \cdot k}{\sqrt d}
#    = \exp\Bigl(-\frac{\|q - k\|^2}{2 \sqrt d}\Bigr)
#      \exp\frac{\|q\|^2}{2 \sqrt d}\,
#      \exp\frac{\|k\|^2}{2 \sqrt d}.
#
# The factor in :math:`q` alone cancels in the softmax, so scaled dot-product
# attention is gaussian Nadaraya–Watson regression with bandwidth
# :math:`h = d^{1/4}` and key weights :math:`\exp(\|k\|^2 / (2 \sqrt d))`.

Kd = rng.normal(scale=0.7, size=(500, 8))
Qd = rng.normal(scale=0.7, size=(50, 8))
Vd = rng.normal(size=500)
dim = Kd.shape[1]
sdpa = attention_pool(Qd, Kd, Vd, kernel="scaled_dot")
as_nw = attention_pool(Qd, Kd, Vd, kernel="gaussian", bandwidth=dim**0.25,
                       key_weight=np.exp((Kd**2).sum(axis=1) / (2 * np.sqrt(dim))))
print(f"scaled dot vs weighted gaussian: {np.abs(sdpa - as_nw).max():.1e}")
assert np.allclose(sdpa, as_nw, rtol=1e-10, atol=1e-12)

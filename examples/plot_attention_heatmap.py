"""
Attention weights as a heatmap
==============================

Every Nadaraya–Watson prediction is a weighted average of the training
targets; the weights are a softmax over the scores of one query against all
keys. For a small problem the whole matrix of weights can be built
explicitly: :func:`~nwattn.ops.pairwise_scores` gives the scores (log-kernel
values) and :func:`~nwattn.ops.softmax` turns each row into weights that sum
to one.

With sorted queries and keys the weight matrix is a band along the diagonal:
each query attends to the keys near it. The band is as wide as the
bandwidth; for a compact kernel its edges are exact zeros.
"""

import matplotlib.pyplot as plt
import numpy as np

from nwattn.ops import attention_pool, pairwise_scores, softmax, top_k_weights

rng = np.random.default_rng(1)
x_train = np.sort(rng.uniform(0, 5, size=60))
y_train = 2 * np.sin(x_train) + x_train**0.8 + rng.normal(scale=0.5, size=60)
x_test = np.linspace(0, 5, 50)

Q, K = x_test[:, None], x_train[:, None]

# %%
# Scores, weights and predictions
# -------------------------------
# Multiplying the weights by the values gives the predictions that
# :func:`~nwattn.ops.attention_pool` computes without ever storing the
# weights.

fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
for ax, (kernel, h) in zip(axes, [("gaussian", 0.3), ("epanechnikov", 0.6)]):
    W = softmax(pairwise_scores(Q, K, kernel=kernel, bandwidth=h))
    assert np.allclose(W.sum(axis=1), 1.0)
    assert np.allclose(W @ y_train, attention_pool(Q, K, y_train, kernel=kernel, bandwidth=h))
    im = ax.imshow(W, cmap="Reds", aspect="auto", origin="lower",
                   extent=(0, W.shape[1], x_test[0], x_test[-1]))
    ax.set_title(f"{kernel}, h = {h}")
    ax.set_xlabel("training points (keys), sorted by x")
    fig.colorbar(im, ax=ax, shrink=0.85, label="weight")
    print(f"{kernel}: {np.mean(W == 0):.0%} of the weights are exactly zero")
axes[0].set_ylabel("test input x (queries)")
fig.tight_layout()

# %%
# Explaining one prediction
# -------------------------
# :func:`~nwattn.ops.top_k_weights` returns, for each query, the keys with the
# largest weights without building the full matrix: which training points a
# prediction averages, and how much each counts.

query = np.array([[2.5]])
idx, w = top_k_weights(query, K, kernel="epanechnikov", bandwidth=0.6, k=12)
pred = attention_pool(query, K, y_train, kernel="epanechnikov", bandwidth=0.6)

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.scatter(x_train, y_train, s=12, color="0.6", label="training points")
ax.scatter(x_train[idx[0]], y_train[idx[0]], s=600 * w[0], color="tab:red", alpha=0.6,
           label="twelve largest weights (marker area)")
ax.plot(query[0], pred, marker="*", ms=14, color="black", ls="none",
        label=f"prediction at x = {query[0, 0]}")
ax.axvspan(2.5 - 0.6, 2.5 + 0.6, color="tab:red", alpha=0.07, label="support of the kernel")
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.legend(fontsize=8, loc="lower left")
fig.tight_layout()

for j, wj in zip(idx[0], w[0]):
    print(f"key {j:2d}  x = {x_train[j]:.3f}  y = {y_train[j]:6.3f}  weight {wj:.3f}")

"""
The estimator: spread bands, attention weights and empty neighbourhoods
=======================================================================

:class:`~nwattn.NadarayaWatsonRegressor` wraps the pooling in a
scikit-learn estimator. This example fits it to the noisy sine of the other
examples, with a gap in the training inputs, and uses three of its
features:

- ``predict(X, return_std=True)``: the kernel-weighted standard deviation of
  the targets around each prediction, computed in the same pass;
- ``attention_weights(X, k)``: which training points carry a prediction;
- ``fallback``: what a compact kernel predicts where no training point is
  within one bandwidth.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np

from nwattn import NadarayaWatsonRegressor
from nwattn.exceptions import EmptyNeighborhoodWarning


def f(x):
    return 2 * np.sin(x) + x**0.8


rng = np.random.default_rng(3)
x = rng.uniform(0, 5, size=200)
x = x[(x < 2.2) | (x > 3.0)]  # no training data between 2.2 and 3.0
X = x[:, None]
y = f(x) + rng.normal(scale=0.1 + 0.15 * x, size=x.size)  # noise grows with x
grid = np.linspace(0, 5, 400)[:, None]

# %%
# Prediction with its spread
# --------------------------
# ``bandwidth="cv"`` chooses the bandwidth by leave-one-out cross-validation
# (``cv_score_`` is the leave-one-out mean squared error it reached). The band
# is the prediction plus or minus the weighted standard deviation of the
# targets: it measures the spread of the points being averaged, not the
# uncertainty of the mean, so it widens where the noise grows (towards
# :math:`x = 5`) and where the weights reach over a slope of the curve.
# In the gap the prediction is a blend of the points at its two edges and
# jumps from one to the other: nothing there says where the curve goes, and
# a narrow band does not mean the prediction is right.

reg = NadarayaWatsonRegressor(kernel="gaussian", bandwidth="cv").fit(X, y)
pred, std = reg.predict(grid, return_std=True)
print(f"bandwidth_ = {reg.bandwidth_:.3f}, cv_score_ = {reg.cv_score_:.4f}")

fig, ax = plt.subplots(figsize=(7, 4))
ax.scatter(x, y, s=8, color="0.6", label="training data")
ax.plot(grid[:, 0], f(grid[:, 0]), "k--", lw=1, label="truth")
ax.plot(grid[:, 0], pred, color="tab:blue", label=f"gaussian, h = {reg.bandwidth_:.3f}")
ax.fill_between(grid[:, 0], pred - std, pred + std, color="tab:blue", alpha=0.2,
                label="± weighted std")
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.legend(fontsize=8)
fig.tight_layout()

# %%
# Which training points carry a prediction
# ----------------------------------------
# ``attention_weights`` returns, for each query, the indices of the ``k``
# training points with the largest weights and those weights, without
# building the full matrix. Inside the data the weight is spread over the
# neighbours on both sides; in the gap all of it falls on the points at its
# two edges.

queries = np.array([[1.0], [2.6], [4.0]])
idx, w = reg.attention_weights(queries, k=8)
print("top-8 weight per query:", w.sum(axis=1).round(3))

fig, ax = plt.subplots(figsize=(7, 3.6))
ax.scatter(x, y, s=8, color="0.8")
for q, i_row, w_row, color in zip(queries[:, 0], idx, w, ["tab:green", "tab:red", "tab:purple"]):
    ax.scatter(x[i_row], y[i_row], s=600 * w_row, color=color, alpha=0.7,
               label=f"query x = {q:.1f}")
    ax.axvline(q, color=color, lw=0.8, ls=":")
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.set_title("The 8 heaviest training points per query (area ∝ weight)", fontsize=9)
ax.legend(fontsize=8)
fig.tight_layout()

# %%
# Empty neighbourhoods and ``fallback``
# -------------------------------------
# A compact kernel gives exactly zero weight beyond one bandwidth. With a
# bandwidth smaller than half the gap, queries in the middle of the gap have
# no training point at all. By default (``fallback="nan"``) they get NaN and
# an :class:`~nwattn.exceptions.EmptyNeighborhoodWarning`, as scikit-learn's
# :class:`~sklearn.neighbors.RadiusNeighborsRegressor` does. ``"nearest"``
# predicts the target of the nearest training point instead, ``"mean"`` the
# mean of all targets.

fig, axes = plt.subplots(1, 3, figsize=(10, 3.4), sharey=True)
for ax, fallback in zip(axes, ["nan", "nearest", "mean"]):
    model = NadarayaWatsonRegressor("epanechnikov", bandwidth=0.25, fallback=fallback)
    model.fit(X, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EmptyNeighborhoodWarning)
        p = model.predict(grid)
    n_empty = int(np.isnan(p).sum())
    print(f"fallback={fallback!r:<10} NaN predictions: {n_empty:3d}, warnings: {len(caught)}")
    ax.axvspan(2.2, 3.0, color="0.92", zorder=-1)
    ax.scatter(x, y, s=6, color="0.7")
    ax.plot(grid[:, 0], p, color="tab:blue", lw=1.5)
    ax.set_title(f'fallback="{fallback}": {n_empty} NaN', fontsize=9)
    ax.set_xlabel("x")
axes[0].set_ylabel("y")
fig.suptitle("epanechnikov, h = 0.25: the gap in the data (shaded) is wider than 2h",
             fontsize=10)
fig.tight_layout()

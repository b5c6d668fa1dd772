"""
Local linear and local quadratic regression, and robust loess
=============================================================

Nadaraya-Watson regression averages the targets near the query. Near the
edge of the data all those targets lie on one side of the query, so where
the function slopes the average is pulled towards the inside: the estimate
is biased by about :math:`f'(x)` times the distance to the centre of mass of
the weights, whatever the number of points. A local polynomial fits a line
(or a parabola) to the same weighted points and reads off its value at the
query; the line follows the slope up to the last point, so that bias is gone.

Here the three degrees are compared on :math:`y = e^{2x}` plus noise on
:math:`[0, 1]`, each at the bandwidth chosen by its own leave-one-out
cross-validation (``bandwidth="cv"``). Then loess, the local polynomial
with nearest-neighbour bandwidths (``span``) and the tricube kernel, is fitted
to data with outliers, with and without Cleveland's robustness iterations.
"""

import matplotlib.pyplot as plt
import numpy as np

from nwattn import LocalPolynomialRegressor, NadarayaWatsonRegressor


def f(x):
    return np.exp(2 * x)


def df(x):
    return 2 * np.exp(2 * x)


rng = np.random.default_rng(0)
n = 300
X = rng.uniform(0, 1, size=(n, 1))
y = f(X[:, 0]) + rng.normal(scale=0.3, size=n)
grid = np.linspace(0, 1, 401)[:, None]

# %%
# Three degrees, each at its cross-validated bandwidth
# ----------------------------------------------------
# Degree 0 is :class:`~nwattn.NadarayaWatsonRegressor`; degrees 1 and 2 are
# :class:`~nwattn.LocalPolynomialRegressor`. The cross-validation of each
# scores its own leave-one-out predictions, so each gets the bandwidth that
# suits it: the local polynomials can afford wider windows, because a slope
# or a curvature across the window no longer biases them.

models = {
    "Nadaraya-Watson (degree 0)": NadarayaWatsonRegressor(bandwidth="cv"),
    "local linear (degree 1)": LocalPolynomialRegressor(degree=1),
    "local quadratic (degree 2)": LocalPolynomialRegressor(degree=2),
}
colors = ["tab:orange", "tab:blue", "tab:green"]
truth = f(grid[:, 0])
left, right = grid[:, 0] <= 0.05, grid[:, 0] >= 0.95
interior = ~(left | right)
preds = {}
print(f"{'model':<28}{'h':>7}{'CV':>8}   RMSE: interior  x<=0.05  x>=0.95")
for (name, model), color in zip(models.items(), colors):
    model.fit(X, y)
    preds[name] = model.predict(grid)
    err = preds[name] - truth
    rmse = [np.sqrt(np.mean(err[part] ** 2)) for part in (interior, left, right)]
    print(f"{name:<28}{model.bandwidth_:>7.3f}{model.cv_score_:>8.4f}"
          f"   {rmse[0]:>14.3f}{rmse[1]:>9.3f}{rmse[2]:>9.3f}")

# %%
# The whole interval, and each edge enlarged: Nadaraya-Watson bends away
# from the truth over the last bandwidth or so at both ends (upwards on the
# left, downwards on the right: towards the inside), the local polynomials
# do not.

fig = plt.figure(figsize=(9, 6.5))
gs = fig.add_gridspec(2, 2, height_ratios=[1.3, 1])
ax = fig.add_subplot(gs[0, :])
zooms = [fig.add_subplot(gs[1, 0]), fig.add_subplot(gs[1, 1])]
for a, (lo, hi) in zip([ax, *zooms], [(0, 1), (0, 0.12), (0.88, 1)]):
    inside = (X[:, 0] >= lo) & (X[:, 0] <= hi)
    a.scatter(X[inside, 0], y[inside], s=6, color="0.6", label="data")
    keep = (grid[:, 0] >= lo) & (grid[:, 0] <= hi)
    a.plot(grid[keep, 0], truth[keep], "k--", lw=1, label=r"$f(x) = e^{2x}$")
    for (name, pred), color in zip(preds.items(), colors):
        a.plot(grid[keep, 0], pred[keep], color=color, label=name)
    a.set_xlim(lo, hi)
zooms[0].set_ylim(0.3, 1.9)
zooms[1].set_ylim(5.3, 8.4)
zooms[0].set_title("left edge", fontsize=9)
zooms[1].set_title("right edge", fontsize=9)
ax.legend(fontsize=8)
ax.set_ylabel("y")
for a in zooms:
    a.set_xlabel("x")
fig.tight_layout()

# %%
# Marginal effects
# ----------------
# A local linear or quadratic fit has a slope at the query, the estimate of
# :math:`f'(x)`: ``predict(X, return_gradient=True)`` returns it beside the
# prediction, one column per feature. A slope is harder to estimate than a
# value: the local linear slope, at the narrow bandwidth that its
# cross-validation chose for the predictions, wiggles with the noise; the
# local quadratic one, at its wider bandwidth, is smoother and not biased by
# the curvature. Both lose accuracy over the last bandwidth at each edge.

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(grid[:, 0], df(grid[:, 0]), "k--", lw=1, label=r"$f'(x) = 2 e^{2x}$")
for name, color in zip(list(models)[1:], colors[1:]):
    _, slope = models[name].predict(grid, return_gradient=True)
    ax.plot(grid[:, 0], slope[:, 0], color=color, label=name)
ax.set_xlabel("x")
ax.set_ylabel("slope")
ax.legend(fontsize=8)
fig.tight_layout()

# %%
# loess and outliers
# ------------------
# ``span=0.3`` gives every query the bandwidth that reaches its nearest 30 %
# of the points, as R's ``loess(span=0.3)`` does, and ``kernel="tricube"``
# is loess's weight function. Squared errors let the few gross outliers
# below pull the fit down around them. ``robust_iterations=4`` refits four
# times, each time multiplying the weight of every point by the bisquare of
# its residual from the previous fit (the points with residuals beyond six
# times their median absolute value get weight 0); the outliers stop
# counting. The last weights are ``robustness_weights_``.

n2 = 200
x2 = np.sort(rng.uniform(0, 10, n2))
y2 = np.sin(x2) + rng.normal(scale=0.2, size=n2)
bad = rng.choice(n2, size=12, replace=False)
y2[bad] -= rng.uniform(2, 4, size=bad.size)
X2 = x2[:, None]
grid2 = np.linspace(0, 10, 400)[:, None]

plain = LocalPolynomialRegressor(degree=2, kernel="tricube", span=0.3).fit(X2, y2)
robust = LocalPolynomialRegressor(degree=2, kernel="tricube", span=0.3,
                                  robust_iterations=4).fit(X2, y2)
for name, model in [("loess", plain), ("loess, robust_iterations=4", robust)]:
    err = model.predict(grid2) - np.sin(grid2[:, 0])
    print(f"{name:<28} RMSE against sin(x): {np.sqrt(np.mean(err ** 2)):.3f}")
print(f"smallest robustness weight of a good point: "
      f"{np.delete(robust.robustness_weights_, bad).min():.2f}, "
      f"largest of an outlier: {robust.robustness_weights_[bad].max():.2f}")

fig, ax = plt.subplots(figsize=(7, 4))
sc = ax.scatter(x2, y2, s=10, c=robust.robustness_weights_, cmap="viridis", vmin=0, vmax=1,
                label="data (colour: robustness weight)")
ax.plot(grid2[:, 0], np.sin(grid2[:, 0]), "k--", lw=1, label="sin(x)")
ax.plot(grid2[:, 0], plain.predict(grid2), color="tab:red", label="loess, span=0.3")
ax.plot(grid2[:, 0], robust.predict(grid2), color="tab:blue",
        label="loess, span=0.3, robust_iterations=4")
fig.colorbar(sc, ax=ax, label="robustness weight")
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.legend(fontsize=8, loc="lower left")
fig.tight_layout()

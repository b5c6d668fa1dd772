"""
Categorical features and the three jobs of lambda
=================================================

Regression data often carry categories: a region, a product type, a year,
an education level. One-hot coding them into a Euclidean kernel smooths
across categories by accident of the coding. nwattn, as R's ``np`` package
and statsmodels' ``KernelReg`` do, gives each discrete feature a kernel of
its own with a smoothing parameter :math:`\\lambda`, and a pair's weight is
the gaussian of the continuous features times the discrete kernels:

.. math::

   w(x, x_j) = K\\Bigl(\\frac{x^c - x_j^c}{h}\\Bigr)
               \\prod_f L_f(x_f, x_{jf}; \\lambda_f),
   \\qquad
   L(a, b; \\lambda) = \\begin{cases} 1 - \\lambda & a = b \\\\
                       \\lambda / (c - 1) & a \\ne b \\end{cases}
   \\ \\text{(Aitchison-Aitken)}.

Leave-one-out cross-validation chooses every :math:`\\lambda_f` with the
continuous bandwidth, and each lands where the data say:

* **0 keeps the categories apart**: the fit is stratified by the feature
  (here ``region``, whose effect is large);
* **its maximum smooths the feature out**: every category weighs the same
  (here ``weekday``, which does not matter);
* **in between borrows strength**: a category's fit leans on the others
  (here ``size``, an ordered feature with a small, smooth effect, compared
  by the Li-Racine kernel :math:`\\lambda^{|a - b|}`).
"""

import matplotlib.pyplot as plt
import numpy as np

from nwattn import NadarayaWatsonRegressor

rng = np.random.default_rng(0)
n = 600
x = rng.uniform(0, 1, n)
region = rng.integers(0, 3, n)  # large effect: keep apart
weekday = rng.integers(0, 5, n)  # no effect: smooth out
size = rng.integers(0, 4, n)  # ordered, small smooth effect: borrow strength
y = (np.sin(2 * np.pi * x) + np.array([0.0, 1.5, -1.5])[region] + 0.08 * size
     + rng.normal(scale=0.3, size=n))
X = np.column_stack([x, region, weekday, size]).astype(float)

model = NadarayaWatsonRegressor(categorical_features=[1, 2], ordered_features=[3]).fit(X, y)
lam = model.bandwidth_[1:]
top = model.discrete_.max_lambdas
for name, value, high in zip(["region", "weekday", "size"], lam, top):
    print(f"{name:8s} lambda = {value:.4f}   (range 0 to {high:.3f})")

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
grid = np.linspace(0, 1, 200)
for r, colour in zip(range(3), ["C0", "C1", "C2"]):
    rows = region == r
    ax0.scatter(x[rows], y[rows], s=6, color=colour, alpha=0.4)
    Q = np.column_stack([grid, np.full(200, r), np.zeros(200), np.full(200, 1)])
    ax0.plot(grid, model.predict(Q), color=colour, lw=2, label=f"region {r}")
ax0.set_xlabel("x")
ax0.set_ylabel("y")
ax0.set_title("One fit, kept apart by region")
ax0.legend()

ax1.bar(["region", "weekday", "size"], lam / top, color=["C0", "C3", "C4"])
ax1.set_ylim(0, 1.05)
ax1.set_ylabel(r"selected $\lambda$ / largest $\lambda$")
ax1.set_title(r"Keep apart, smooth out, borrow strength")
fig.tight_layout()
plt.show()

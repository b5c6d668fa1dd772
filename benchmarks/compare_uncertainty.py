"""Standard errors and bootstrap bands: what they cost, against the ways users get them today.

Data: one feature, ``y = sin(2 pi x) + noise`` on [0, 1], n training points,
local linear fits with the gaussian kernel at bandwidth 0.05, predictions
at the n training points (m = n). Each implementation runs in this process
on the same data; nwattn's kernels are compiled first by a small call.

Cases:

1. ``se``: ``LocalPolynomialRegressor.predict(X)`` against
   ``predict(X, return_se=True)`` (the sandwich accumulated in the same
   pass), interleaved rounds, medians. The noise scales are estimated once
   per fit (nearest-neighbour residuals smoothed by one pooling pass over
   the training set) and that first call is timed separately.
2. ``boot``: ``predict_interval(X, method="bootstrap", simultaneous=True,
   n_bootstrap=B)`` with B = 999: the band's B replications are one pass of
   the matrix-product body. Peers: B refits of statsmodels' ``lowess``
   (``frac`` chosen to hold about the same number of points as the
   gaussian window, ``it=0``, ``delta=0``) on wild-bootstrap targets, the
   way users bootstrap a smoother today, timed on ``--refits`` refits and
   scaled to B (each refit costs the same); and nprobust's ``lprobust``
   (standard errors and bias correction, no band) at ``--nprobust-points``
   evaluation points, scaled to n points (its cost is linear in them).

Usage::

    python benchmarks/compare_uncertainty.py [--n 10000] [--boot 999] [--repeat 3]
"""

import argparse
import time

import numpy as np

from _timing import interleaved_medians
from compare_local import machine_description
from nwattn import LocalPolynomialRegressor


def problem(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, size=(n, 1))
    y = np.sin(2 * np.pi * X[:, 0]) + rng.normal(scale=0.3, size=n)
    return X, y


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--boot", type=int, default=999)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--refits", type=int, default=5)
    ap.add_argument("--nprobust-points", type=int, default=50)
    args = ap.parse_args(argv)
    print(machine_description())
    n, B, h = args.n, args.boot, 0.05
    X, y = problem(n)
    small = LocalPolynomialRegressor(bandwidth=h).fit(X[:200], y[:200])
    small.predict_interval(X[:20], method="bootstrap", n_bootstrap=9, random_state=0)
    small.predict(X[:20], return_se=True)

    model = LocalPolynomialRegressor(bandwidth=h).fit(X, y)
    t0 = time.perf_counter()
    model.predict(X, return_se=True)
    first = time.perf_counter() - t0
    med, _ = interleaved_medians({
        "predict": lambda: model.predict(X),
        "predict(return_se=True)": lambda: model.predict(X, return_se=True),
    }, args.repeat)
    print(f"\nse: n = m = {n}")
    print(f"  predict                          {med['predict']:8.3f} s")
    print(f"  predict(return_se=True)          {med['predict(return_se=True)']:8.3f} s  "
          f"{med['predict(return_se=True)'] / med['predict']:.2f} x predict")
    print(f"  first call (noise scales too)    {first:8.3f} s")

    print(f"\nboot: n = m = {n}, B = {B}")
    t0 = time.perf_counter()
    model.predict_interval(X, method="bootstrap", simultaneous=True, n_bootstrap=B,
                           random_state=0)
    ours = time.perf_counter() - t0
    print(f"  nwattn bootstrap band            {ours:8.3f} s")
    try:
        from statsmodels.nonparametric.smoothers_lowess import lowess
    except ImportError as exc:
        print(f"  skipped statsmodels: {exc}")
    else:
        # a gaussian window of sd h holds about 2.5 h n points of the uniform data
        frac = min(1.0, 5 * h)
        fitted = lowess(y, X[:, 0], frac=frac, it=0, delta=0.0, return_sorted=False)
        res = y - fitted
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for _ in range(args.refits):
            ystar = fitted + res * rng.choice([-1.0, 1.0], size=n)
            lowess(ystar, X[:, 0], frac=frac, it=0, delta=0.0, return_sorted=False)
        per = (time.perf_counter() - t0) / args.refits
        print(f"  statsmodels lowess x {B} refits   {per * B:8.3f} s  ({per:.3f} s per refit, "
              f"{args.refits} timed; {per * B / ours:.0f} x nwattn)")
    try:
        import nprobust
    except ImportError as exc:
        print(f"  skipped nprobust: {exc}")
    else:
        k = args.nprobust_points
        ev = np.linspace(0, 1, k)
        t0 = time.perf_counter()
        nprobust.lprobust(y, X[:, 0], eval=ev, p=1, h=h, kernel="gau", vce="nn", bwcheck=None)
        per = (time.perf_counter() - t0) / k
        t0 = time.perf_counter()
        model.predict_interval(X)
        rbc = time.perf_counter() - t0
        print(f"  nprobust lprobust, {n} points    {per * n:8.3f} s  ({k} timed and scaled; "
              f"nwattn's robust bias-corrected intervals at the {n} points: {rbc:.3f} s, "
              f"{per * n / rbc:.0f} x)")


if __name__ == "__main__":
    main()

"""Leave-one-out bandwidth selection: timing, and the comparison with statsmodels.

1. ``NadarayaWatsonRegressor(bandwidth="cv")`` on ``make_friedman1`` with
   n = 20 000 and d = 8 (and, with ``--per-feature``, the per-feature search).
2. The same selection as statsmodels' ``KernelReg(reg_type="lc", bw="cv_ls")``
   (local-constant regression, one gaussian bandwidth per variable chosen by
   least-squares leave-one-out cross-validation) on n = 1000, d = 2, in the
   same run: the time ratio (statsmodels runs on one thread, so the ratio is
   taken against nwattn on one thread; the all-threads time is shown too), and the cross-validation score of each selected
   bandwidth, both evaluated with statsmodels' own ``cv_loo`` and with
   :func:`nwattn.bandwidth.loo_cv_score` (the two definitions agree).

statsmodels is in the ``bench`` extra; without it the comparison is skipped
with a message.

Usage::

    python benchmarks/bandwidth_cv.py [--n 20000] [--d 8] [--per-feature] [--skip-large]

Measured with ``python benchmarks/bandwidth_cv.py --per-feature`` on a 2-core
AMD EPYC (Zen 4) virtual machine shared with other jobs (numba 0.68,
statsmodels 0.15.0), one run:

- n = 20 000, d = 8: scalar search 17.1 s (cv score 2.70604, h = 0.123);
  per-feature search 134 s (cv score 1.34320). Across runs under varying
  load from other jobs the scalar search took 11-52 s.
- n = 1000, d = 2: nwattn 0.053 s (median of 5, one thread), statsmodels
  13.2 s: 247x. Both choose h = (0.041, 2.408); the CV score of nwattn's
  choice is lower by 4.6e-12 (statsmodels' own ``cv_loo``).
"""

import argparse
import platform
import time

import numpy as np
from sklearn.datasets import make_friedman1

from nwattn import NadarayaWatsonRegressor
from nwattn.bandwidth import loo_cv_score


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def warm_up():
    """Compile (or load from the cache) every kernel the timings use."""
    X, y = make_friedman1(n_samples=200, n_features=5, random_state=1)
    NadarayaWatsonRegressor().fit(X, y)
    NadarayaWatsonRegressor(bandwidth_per_feature=True).fit(X, y)


def large(n, d, per_feature):
    X, y = make_friedman1(n_samples=n, n_features=d, noise=1.0, random_state=0)
    print(f"[1] bandwidth='cv' on make_friedman1, n = {n}, d = {d}")
    configs = [("scalar", False)] + ([("per feature", True)] if per_feature else [])
    for label, pf in configs:
        model, seconds = timed(
            lambda pf=pf: NadarayaWatsonRegressor(bandwidth_per_feature=pf).fit(X, y))
        h = np.round(np.atleast_1d(model.bandwidth_), 3)
        print(f"    {label:<12} {seconds:7.2f} s   cv score {model.cv_score_:.5f}   h = {h}")


def toy_problem(n, seed=0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.uniform(0, 1, n), rng.normal(0, 10, n)])
    y = np.sin(2 * np.pi * X[:, 0]) + 0.05 * X[:, 1] + rng.normal(scale=0.3, size=n)
    return X, y


def versus_statsmodels(n, repeat):
    print(f"[2] versus statsmodels KernelReg(reg_type='lc', bw='cv_ls'), n = {n}, d = 2")
    try:
        from statsmodels.nonparametric.kernel_regression import KernelReg
    except ImportError:
        print("    statsmodels is not installed (pip install 'nwattn[bench]'): skipped")
        return
    X, y = toy_problem(n)
    runs = {}
    for n_jobs in (1, None):
        times = []
        for _ in range(repeat):
            model, seconds = timed(lambda n_jobs=n_jobs: NadarayaWatsonRegressor(
                bandwidth_per_feature=True, n_jobs=n_jobs).fit(X, y))
            times.append(seconds)
        runs[n_jobs] = (model, float(np.median(times)))
    theirs, t_sm = timed(lambda: KernelReg(y, X, var_type="cc", reg_type="lc", bw="cv_ls"))
    ours, t_ours = runs[1]
    sm_cv = theirs.est["lc"]
    rows = [("nwattn, 1 thread", t_ours, np.asarray(ours.bandwidth_)),
            ("nwattn, all threads", runs[None][1], np.asarray(runs[None][0].bandwidth_)),
            ("statsmodels", t_sm, np.asarray(theirs.bw))]
    print(f"    {'':<20}{'seconds':>9}  {'bandwidths':<20}{'CV (nwattn)':>13}"
          f"{'CV (statsmodels)':>18}")
    for label, seconds, h in rows:
        ours_cv = loo_cv_score(X, y, "gaussian", h)
        their_cv = float(np.squeeze(theirs.cv_loo(h, sm_cv)))
        print(f"    {label:<20}{seconds:>9.3f}  {np.array2string(h, precision=4):<20}"
              f"{ours_cv:>13.7f}{their_cv:>18.7f}")
    diff = float(np.squeeze(theirs.cv_loo(np.asarray(ours.bandwidth_), sm_cv))
                 - np.squeeze(theirs.cv_loo(np.asarray(theirs.bw), sm_cv)))
    print(f"    CV score of nwattn's choice minus statsmodels' choice (statsmodels' "
          f"cv_loo): {diff:.3e}")
    print(f"    time ratio statsmodels / nwattn (both on one thread; nwattn median of "
          f"{repeat}): {t_sm / t_ours:.0f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="samples of the large timing")
    parser.add_argument("--d", type=int, default=8, help="features of the large timing")
    parser.add_argument("--n-compare", type=int, default=1000,
                        help="samples of the statsmodels comparison")
    parser.add_argument("--per-feature", action="store_true",
                        help="also time the per-feature search on the large problem")
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs of the nwattn selection in the comparison (median reported)")
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args(argv)
    import numba

    print(f"{platform.processor() or platform.machine()}, {numba.get_num_threads()} threads")
    warm_up()
    if not args.skip_large:
        large(args.n, args.d, args.per_feature)
    versus_statsmodels(args.n_compare, args.repeat)


if __name__ == "__main__":
    main()

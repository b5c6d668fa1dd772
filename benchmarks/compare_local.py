"""Local polynomial regression: nwattn against statsmodels, scikit-misc's loess and others.

Every implementation runs in this process on the same data. nwattn's kernels
are compiled (or loaded from Numba's cache) by a warm-up call first; then
the implementations are timed in ``--repeat`` interleaved rounds (one call
each per round) and each reports the median of its rounds, so a slow spell
of a shared machine hits them alike. The time ratios are measured in the
same run and are what to read; absolute times drift with the machine's load.

Cases:

1. ``fixed``: local linear regression, gaussian kernel, fixed bandwidth
   (0.1, 0.1), d = 2, n = m = 2000 (``--fixed-n``), predictions and slopes.
   Peers: statsmodels ``KernelReg(reg_type="ll", bw=h).fit`` (which always
   computes the marginal effects too); kernelsmooth's
   ``LocalLinearRegression`` (gaussian only; it whitens the features, so it
   is given ``h / std`` with ``diag_cov=True``, and it adds a ridge of 1e-10
   to each local design).
2. ``cv``: the bandwidths chosen by leave-one-out cross-validation, one per
   feature, d = 2, n = 500 (``--cv-n``; ``--quick``: 200):
   ``LocalPolynomialRegressor(degree=1, bandwidth_per_feature=True)`` against
   statsmodels ``KernelReg(reg_type="ll", bw="cv_ls")``, which minimises the
   same criterion. statsmodels is timed once (it is the slowest part of
   the script); nwattn on one thread (statsmodels runs on one) and on all. The
   selected bandwidths are printed with the score statsmodels' own
   ``cv_loo`` gives each.
3. ``large``: nwattn's local linear and local quadratic regression against
   its own Nadaraya-Watson pooling (``nwattn.ops.attention_pool``), gaussian,
   d = 2, n = m = 100 000 (``--large-n``; ``--quick``: 20 000): what the
   moments cost over the plain weighted mean.
4. ``loess``: loess with one feature, tricube weights, ``span=0.3``, degree
   2 (``--loess-degree``), the fitted values at n = 2 000, 10 000 and
   20 000 training points (``--loess-n``; ``--quick``: 2 000 and 10 000).
   nwattn's time includes finding the neighbourhood radii
   (:func:`nwattn.neighbors.span_radius`), also timed alone. Peers:
   scikit-misc ``loess(surface="direct", normalize=False)`` (exact, with the
   "approximate" statistics that it always computes) and
   ``surface="interpolate"`` (loess's default: fits at the vertices of a
   k-d tree, interpolated in between, so an approximation); with
   ``--loess-degree 1`` also statsmodels ``lowess(frac=0.3, it=0,
   delta=0)``.
5. ``1d``: local linear regression with the Epanechnikov kernel, one
   feature, fixed bandwidth 0.1, n = m = 2000 (``--fixed-n``), against
   nprobust's ``lprobust(p=1, h=0.1, kernel="epa", bwcheck=None,
   vce="hc0")``, which also computes a bias-corrected estimate and
   standard errors at each point (so it does more work than the fit).

The "vs nwattn" column is the row's median time divided by that of the
case's nwattn row (for ``large``, by that of the Nadaraya-Watson row): above
1, nwattn is that many times faster. "max abs diff" is the largest absolute
difference from nwattn's predictions over all queries.

Peers that are not installed are skipped with a message: statsmodels and
scikit-misc are in the ``bench`` extra; kernelsmooth and nprobust install
with ``pip install kernelsmooth nprobust``.

Usage::

    python benchmarks/compare_local.py [--quick] [--repeat 3] [--cases fixed,cv,large,loess,1d]
"""

import argparse
import os
import platform
import time
import warnings

import numpy as np

from _timing import interleaved_medians
from nwattn import LocalPolynomialRegressor
from nwattn.ops import attention_pool, local_polynomial

ROWS = []


def machine_description():
    """One line describing the CPU, its cores and the software versions."""
    from pathlib import Path

    import numba

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average %.1f" % os.getloadavg()[0]
    return (f"{cpu}, {os.cpu_count()} logical cores{load}; Python "
            f"{platform.python_version()}, NumPy {np.__version__}, Numba {numba.__version__}, "
            f"{numba.get_num_threads()} Numba threads")


def versions():
    """Versions of the peers that are installed."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("statsmodels", "scikit-misc", "kernelsmooth", "nprobust"):
        try:
            out.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            out.append(f"{dist} not installed")
    return ", ".join(out)


def skipped(name, exc):
    print(f"  skipped {name}: not installed ({exc})", flush=True)


def report(case, size, medians, reference, preds, ours, repeat, notes=None):
    """Print the case's rows and keep them for the final table."""
    notes = notes or {}
    base = medians[reference]
    for name, seconds in medians.items():
        diff = float(np.max(np.abs(preds[name] - preds[ours]))) if name in preds else np.nan
        ROWS.append(dict(case=case, impl=name, size=size, seconds=seconds,
                         ratio=seconds / base, diff=diff, repeat=repeat,
                         note=notes.get(name, "")))
        print(f"  {name:<40}{seconds:>10.3f} s  {seconds / base:>8.2f} x   "
              f"max abs diff {diff:.1e}  {notes.get(name, '')}", flush=True)


def problem_2d(n, m, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, size=(n, 2))
    y = np.sin(2 * np.pi * X[:, 0]) + X[:, 1] ** 2 + rng.normal(scale=0.1, size=n)
    Q = rng.uniform(0, 1, size=(m, 2))
    return X, y, Q


def direct_local_linear(Q, X, y, h):
    """Local linear predictions by one weighted least-squares solve per query, in NumPy."""
    out = np.empty(Q.shape[0])
    for i, q in enumerate(Q):
        w = np.sqrt(np.exp(-0.5 * (((X - q) / h) ** 2).sum(axis=1)))
        A = np.column_stack([np.ones(X.shape[0]), X - q]) * w[:, None]
        out[i] = np.linalg.lstsq(A, y * w, rcond=None)[0][0]
    return out


# ----------------------------------------------------------------------------
# 1. Fixed bandwidth, d = 2


def case_fixed(args):
    n = args.fixed_n
    h = np.array([0.1, 0.1])
    X, y, Q = problem_2d(n, n)
    print(f"[fixed] local linear, gaussian, h = {h}, d = 2, n = m = {n:,}", flush=True)
    calls, preds = {}, {}
    ours = "nwattn ops.local_polynomial"

    def nwattn_call():
        return local_polynomial(Q, X, y, bandwidth=h, return_gradient=True)

    calls[ours] = nwattn_call
    preds[ours], slopes = nwattn_call()
    check = min(args.check, n)
    ref = direct_local_linear(Q[:check], X, y, h)
    print(f"  nwattn against a direct NumPy solve on {check} queries: max abs diff "
          f"{np.max(np.abs(preds[ours][:check] - ref)):.1e}")
    notes = {}
    try:
        from statsmodels.nonparametric.kernel_regression import KernelReg
    except ImportError as exc:
        skipped("statsmodels", exc)
    else:
        name = "statsmodels KernelReg(reg_type='ll')"

        def sm_call():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                return KernelReg(y, X, var_type="cc", reg_type="ll", bw=h).fit(Q)

        calls[name] = sm_call
        preds[name], mfx = sm_call()
        notes[name] = f"slopes: max abs diff {np.max(np.abs(mfx - slopes)):.1e}"
    try:
        from kernelsmooth import LocalLinearRegression
    except ImportError as exc:
        skipped("kernelsmooth", exc)
    else:
        name = "kernelsmooth LocalLinearRegression"
        scaled = h / np.std(X, axis=0, ddof=1)

        def ks_call():
            model = LocalLinearRegression(bandwidth=scaled, diag_cov=True).fit(X, y)
            return model.predict(Q)

        calls[name] = ks_call
        preds[name] = ks_call()
        notes[name] = "predictions only (ridge 1e-10)"
    medians, _ = interleaved_medians(calls, args.repeat, warm_up=False)
    report("fixed h, d = 2", f"{n:,} / {n:,}", medians, ours, preds, ours, args.repeat, notes)


# ----------------------------------------------------------------------------
# 2. Cross-validated bandwidths, d = 2


def case_cv(args):
    n = args.cv_n or (200 if args.quick else 500)
    X, y, _ = problem_2d(n, 1, seed=1)
    print(f"[cv] per-feature leave-one-out bandwidths of local linear regression, d = 2, "
          f"n = {n:,}", flush=True)
    fits = {}

    def fit(n_jobs):
        model = LocalPolynomialRegressor(degree=1, bandwidth_per_feature=True, n_jobs=n_jobs)
        fits[n_jobs] = model.fit(X, y)

    calls = {"nwattn, 1 thread": lambda: fit(1), "nwattn, all threads": lambda: fit(None)}
    warm = {"nwattn": lambda: LocalPolynomialRegressor(
        degree=1, bandwidth_per_feature=True).fit(X[:50], y[:50])}
    medians, _ = interleaved_medians(calls, args.repeat, warm_up=warm)
    chosen = {"nwattn, 1 thread": np.asarray(fits[1].bandwidth_),
              "nwattn, all threads": np.asarray(fits[None].bandwidth_)}
    sm = None
    sm_name = "statsmodels KernelReg(bw='cv_ls')"
    try:
        from statsmodels.nonparametric.kernel_regression import KernelReg
    except ImportError as exc:
        skipped("statsmodels", exc)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            t0 = time.perf_counter()
            sm = KernelReg(y, X, var_type="cc", reg_type="ll", bw="cv_ls")
            medians[sm_name] = time.perf_counter() - t0
        chosen[sm_name] = np.asarray(sm.bw)
    print(f"  {'':<36}{'seconds':>9}  {'bandwidths':<22}{'CV (statsmodels cv_loo)':>25}")
    ours = medians["nwattn, 1 thread"]
    for name, seconds in medians.items():
        h = chosen[name]
        their = (float(np.squeeze(sm.cv_loo(h, sm.est["ll"]))) if sm is not None
                 else float("nan"))
        ROWS.append(dict(case="cv bandwidths, d = 2", impl=name, size=f"{n:,}",
                         seconds=seconds, ratio=seconds / ours, diff=np.nan,
                         repeat=1 if name.startswith("statsmodels") else args.repeat,
                         note="h = " + np.array2string(h, precision=4)))
        print(f"  {name:<36}{seconds:>9.3f}  {np.array2string(h, precision=4):<22}"
              f"{their:>25.8f}", flush=True)
    print(f"  nwattn's own score of its choice (cv_score_): {fits[1].cv_score_:.8f}")
    if sm is not None:
        print(f"  statsmodels (one run) / nwattn on one thread (median of {args.repeat}): "
              f"{medians[sm_name] / ours:.0f}x")


# ----------------------------------------------------------------------------
# 3. Large, against nwattn's own pooling


def case_large(args):
    n = args.large_n or (20_000 if args.quick else 100_000)
    h = 0.05
    X, y, Q = problem_2d(n, n, seed=2)
    print(f"[large] nwattn local polynomials against its Nadaraya-Watson pooling, gaussian, "
          f"h = {h}, d = 2, n = m = {n:,}", flush=True)
    nw = "nwattn ops.attention_pool (degree 0)"
    lin = "nwattn ops.local_polynomial, degree 1"
    quad = "nwattn ops.local_polynomial, degree 2"

    def call(name, q):
        if name == nw:
            return attention_pool(q, X, y, bandwidth=h)
        return local_polynomial(q, X, y, bandwidth=h, degree=1 if name == lin else 2)

    calls = {name: (lambda name=name: call(name, Q)) for name in (nw, lin, quad)}
    warm = {name: (lambda name=name: call(name, Q[:200])) for name in calls}
    medians, _ = interleaved_medians(calls, args.repeat, warm_up=warm)
    notes = {name: f"{n * n / medians[name] / 1e6:.0f} Mpairs/s" for name in calls}
    # Three different estimators: their differences say nothing.
    report("large, d = 2", f"{n:,} / {n:,}", medians, nw, {}, lin, args.repeat, notes)


# ----------------------------------------------------------------------------
# 4. loess, one feature


def case_loess(args):
    from nwattn.neighbors import span_radius

    span, degree = 0.3, args.loess_degree
    sizes = args.loess_n or ([2_000, 10_000] if args.quick else [2_000, 10_000, 20_000])
    try:
        from skmisc.loess import loess
    except ImportError as exc:
        loess = None
        skipped("scikit-misc", exc)
    lowess = None
    if degree == 1:
        try:
            from statsmodels.nonparametric.smoothers_lowess import lowess
        except ImportError as exc:
            skipped("statsmodels", exc)
    for n in sizes:
        rng = np.random.default_rng(3)
        x = rng.uniform(0, 10, n)
        y = np.sin(x) + rng.normal(scale=0.3, size=n)
        X = x[:, None]
        print(f"[loess] span = {span}, degree {degree}, tricube, fitted values, n = {n:,}",
              flush=True)
        preds = {}
        ours = "nwattn ops.local_polynomial(span=)"
        radii = "nwattn span_radius alone (in the above)"

        def nwattn_call(X=X, y=y):
            return local_polynomial(X, X, y, kernel="tricube", degree=degree, span=span)

        calls = {ours: lambda: preds.__setitem__(ours, nwattn_call()),
                 radii: lambda X=X: span_radius(X, X, span)}
        if loess is not None:
            for surface in ("direct", "interpolate"):
                name = f"scikit-misc loess, surface={surface!r}"

                def sk_call(surface=surface, name=name, x=x, y=y):
                    model = loess(x, y, span=span, degree=degree, family="gaussian",
                                  normalize=False, surface=surface)
                    model.fit()
                    preds[name] = np.asarray(model.outputs.fitted_values)

                calls[name] = sk_call
        if lowess is not None:
            name = "statsmodels lowess (delta=0)"
            calls[name] = lambda x=x, y=y: preds.__setitem__(
                name, lowess(y, x, frac=span, it=0, delta=0.0, return_sorted=False))
        warm = {ours: lambda: nwattn_call(X[:200], y[:200])}
        medians, _ = interleaved_medians(calls, args.repeat, warm_up=warm)
        notes = {}
        report(f"loess, 1 feature, degree {degree}", f"{n:,} / {n:,}", medians, ours, preds,
               ours, args.repeat, notes)


# ----------------------------------------------------------------------------
# 5. One feature, Epanechnikov, against nprobust


def case_1d(args):
    n = args.fixed_n
    h = 0.1
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, n)
    y = np.exp(2 * x) + rng.normal(scale=0.3, size=n)
    q = np.linspace(0, 1, n)
    print(f"[1d] local linear, Epanechnikov, h = {h}, one feature, n = m = {n:,}", flush=True)
    try:
        from nprobust import lprobust
    except ImportError as exc:
        skipped("nprobust", exc)
        return
    preds = {}
    ours = "nwattn ops.local_polynomial"
    name = "nprobust lprobust(p=1, vce='hc0')"
    calls = {
        ours: lambda: preds.__setitem__(ours, local_polynomial(
            q[:, None], x[:, None], y, kernel="epanechnikov", bandwidth=h)),
        name: lambda: preds.__setitem__(name, lprobust(
            y, x, eval=q, p=1, h=h, kernel="epa", bwcheck=None, vce="hc0").Estimate[:, 4]),
    }
    medians, _ = interleaved_medians(calls, args.repeat, warm_up=True)
    notes = {name: "also bias correction and standard errors"}
    report("1 feature, Epanechnikov", f"{n:,} / {n:,}", medians, ours, preds, ours,
           args.repeat, notes)


CASES = {"fixed": case_fixed, "cv": case_cv, "large": case_large, "loess": case_loess,
         "1d": case_1d}


def format_table(rows, rst=False):
    head = ("case", "implementation", "n / m", "median s", "vs nwattn", "max abs diff", "note")
    body = [(r["case"], r["impl"], r["size"], f"{r['seconds']:.3f}", f"{r['ratio']:.2f}",
             "" if np.isnan(r["diff"]) else f"{r['diff']:.1e}", r["note"]) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    if rst:
        rule = "  ".join("=" * w for w in widths)
        lines = [rule, "  ".join(h.ljust(w) for h, w in zip(head, widths)), rule]
        lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip() for b in body]
        return "\n".join(lines + [rule])
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip() for b in body]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller cv, large and loess cases (see the docstring)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (median reported)")
    parser.add_argument("--cases", default=",".join(CASES),
                        help="comma-separated subset of: " + ", ".join(CASES))
    parser.add_argument("--fixed-n", type=int, default=2000,
                        help="training points and queries of the fixed and 1d cases")
    parser.add_argument("--cv-n", type=int, default=None, help="training points of the cv case")
    parser.add_argument("--large-n", type=int, default=None,
                        help="training points and queries of the large case")
    parser.add_argument("--loess-n", type=lambda s: [int(v) for v in s.split(",")],
                        default=None, help="comma-separated sizes of the loess case")
    parser.add_argument("--loess-degree", type=int, default=2, choices=(1, 2))
    parser.add_argument("--check", type=int, default=256,
                        help="queries compared with a direct NumPy solve in the fixed case")
    parser.add_argument("--rst", default=None, help="also write the table as reST to this file")
    args = parser.parse_args(argv)
    print("machine:", machine_description())
    print("peers:", versions())
    for name in args.cases.split(","):
        CASES[name.strip()](args)
    print()
    print(format_table(ROWS))
    if args.rst:
        with open(args.rst, "w") as f:
            f.write(format_table(ROWS, rst=True) + "\n")


if __name__ == "__main__":
    main()

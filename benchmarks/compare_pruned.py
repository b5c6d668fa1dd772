"""Pruned pooling (``algorithm="tree"``) against brute force and scikit-learn, in one run.

Cases (all in this process, on the same data; points uniform on the unit
cube of ``d`` features, values ``sin(6 x0) + x1``):

1. ``headline``: n = m = 10**6 (``--n``), d = 2; Epanechnikov and gaussian
   at h = 0.01. The pruned time includes ordering the keys (and the
   queries). Brute force is timed on the first ``--brute-queries`` queries
   and scaled to all of them: its cost is linear in the number of queries
   (every query scores every key), so the scaled time is what a full run
   takes, without spending an hour on it. The pruned and brute results
   of those queries are compared.
2. ``radius``: boxcar at h = r = 0.01 against
   ``sklearn.neighbors.RadiusNeighborsRegressor(radius=r, weights="uniform")``
   (fit + predict, its default ``algorithm="auto"``), n = m = 10**6: the
   predictions are compared and both timed once.
3. ``big``: n = m = 10**7 (``--big-n``), d = 2, Epanechnikov h = 0.003,
   pruned only: wall time and peak memory (the peak resident set size of
   a process of its own). Skipped with ``--skip-big``.
4. ``loo``: leave-one-out bandwidth selection
   (``select_bandwidth(kernel="epanechnikov")``) at n = 10**6 (``--loo-n``),
   d = 2, pruned. Skipped with ``--skip-loo``.
5. ``table``: speed-up of the pruned pass over brute force for d = 1, 2,
   3, 5, 8 and bandwidths giving about 30, 300 and 3000 neighbours per
   query (Epanechnikov; the gaussian at the same bandwidths in
   ``--table-gaussian``), n = m = 10**5 (``--table-n``), brute force
   timed on 2000 queries and scaled as above. ``--plot FILE`` draws it.

Run from the repository root::

    python benchmarks/compare_pruned.py                  # every case
    python benchmarks/compare_pruned.py --quick          # n = 10**5, no big case
    python benchmarks/compare_pruned.py --only table --plot docs/_static/pruned.png
"""

import argparse
import math
import os
import platform
import resource
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nwattn import ops  # noqa: E402
from nwattn.bandwidth import select_bandwidth  # noqa: E402
from nwattn.exceptions import EmptyNeighborhoodWarning  # noqa: E402


def make_data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, d))
    y = np.sin(6 * X[:, 0]) + (X[:, 1] if d > 1 else 0.0)
    Q = rng.random((n, d))
    return X, y, Q


def timed(func):
    t0 = time.perf_counter()
    out = func()
    return time.perf_counter() - t0, out


def pool(Q, X, y, kernel, h, algorithm):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        return ops.attention_pool(Q, X, y, kernel, h, algorithm=algorithm)


def rel_diff(a, b):
    ok = np.isfinite(b)
    if not np.array_equal(np.isfinite(a), ok):
        return math.inf
    return float(np.abs(a[ok] - b[ok]).max(initial=0.0) / max(np.abs(b[ok]).max(initial=0.0),
                                                              1e-300))


def brute_scaled(Q, X, y, kernel, h, n_sub):
    """Brute force on the first ``n_sub`` queries, and its time scaled to all of them."""
    sub = Q[:n_sub]
    seconds, out = timed(lambda: pool(sub, X, y, kernel, h, "brute"))
    return seconds * Q.shape[0] / sub.shape[0], out


def warm_up():
    """Compile (or load) the kernels of both schedules on a small problem."""
    X, y, Q = make_data(5000, 2, seed=1)
    for kernel in ("epanechnikov", "gaussian", "boxcar"):
        for algorithm in ("brute", "tree"):
            pool(Q[:200], X, y, kernel, 0.05, algorithm)


def headline(n, n_sub):
    X, y, Q = make_data(n, 2)
    for kernel, target in (("epanechnikov", 100), ("gaussian", 20)):
        brute_t, brute_out = brute_scaled(Q, X, y, kernel, 0.01, n_sub)
        tree_t, tree_out = timed(lambda: pool(Q, X, y, kernel, 0.01, "tree"))
        print(f"headline {kernel:12s} n=m={n} d=2 h=0.01: brute {brute_t:9.1f} s "
              f"(scaled from {n_sub} queries), tree {tree_t:7.2f} s, "
              f"speed-up {brute_t / tree_t:7.1f}x (target {target}x), "
              f"max rel. diff {rel_diff(tree_out[:n_sub], brute_out):.1e}")


def radius(n):
    from sklearn.neighbors import RadiusNeighborsRegressor

    X, y, Q = make_data(n, 2)
    r = 0.01
    sk_t, sk_out = timed(lambda: RadiusNeighborsRegressor(radius=r, weights="uniform")
                         .fit(X, y).predict(Q))
    tree_t, tree_out = timed(lambda: pool(Q, X, y, "boxcar", r, "tree"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print(f"radius boxcar n=m={n} r={r}: scikit-learn RadiusNeighborsRegressor "
              f"{sk_t:7.2f} s, nwattn tree {tree_t:6.2f} s, {sk_t / tree_t:5.1f}x (target 10x), "
              f"max rel. diff {rel_diff(tree_out, np.asarray(sk_out, dtype=np.float64)):.1e}")


def peak_gb():
    """The process's peak resident memory in GB.

    Linux's ``VmHWM`` starts afresh in a new program; ``ru_maxrss`` (the
    fallback elsewhere) keeps the parent's peak across ``exec``.
    """
    status = "/proc/self/status"
    if os.path.exists(status):
        with open(status) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def big(n):
    X, y, Q = make_data(n, 2)
    before = peak_gb()
    seconds, out = timed(lambda: pool(Q, X, y, "epanechnikov", 0.003, "tree"))
    peak = peak_gb()
    print(f"big epanechnikov n=m={n} d=2 h=0.003: tree {seconds:.1f} s (target < 120 s), "
          f"peak RSS {peak:.2f} GB (target < 3 GB; {before:.2f} GB before the call, the "
          f"inputs included), empty queries {int(np.isnan(out).sum())}")


def loo(n):
    X, y, _ = make_data(n, 2)
    y = y + np.random.default_rng(2).normal(scale=0.2, size=n)
    seconds, sel = timed(lambda: select_bandwidth(X, y, "epanechnikov", algorithm="tree"))
    print(f"loo select_bandwidth epanechnikov n={n} d=2: {seconds:.1f} s (target < 120 s), "
          f"h = {sel.bandwidth:.4g} after {sel.n_evaluations} evaluations")


def table(n, kernels, plot):
    rows = []
    for d in (1, 2, 3, 5, 8):
        X, y, Q = make_data(n, d)
        unit_ball = math.pi ** (d / 2) / math.gamma(d / 2 + 1)
        for k_nb in (30, 300, 3000):
            # The Epanechnikov support holds about k_nb keys (uniform data).
            h = (k_nb / (n * unit_ball)) ** (1.0 / d)
            for kernel in kernels:
                brute_t, _ = brute_scaled(Q, X, y, kernel, h, 2000)
                tree_t, _ = timed(lambda: pool(Q, X, y, kernel, h, "tree"))
                rows.append((d, k_nb, h, kernel, brute_t, tree_t))
                print(f"table d={d} neighbours~{k_nb:5d} h={h:.3g} {kernel:12s}: brute "
                      f"{brute_t:8.2f} s, tree {tree_t:7.2f} s, speed-up "
                      f"{brute_t / tree_t:7.1f}x", flush=True)
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.6))
        for kernel, style in zip(kernels, ("-", "--")):
            for k_nb, colour in zip((30, 300, 3000), ("C0", "C1", "C2")):
                sel = [r for r in rows if r[1] == k_nb and r[3] == kernel]
                ax.plot([r[0] for r in sel], [r[4] / r[5] for r in sel], style, marker="o",
                        color=colour, label=f"{kernel}, ~{k_nb} neighbours")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("features d")
        ax.set_ylabel("speed-up over brute force")
        ax.set_title(f"Pruned pooling, n = m = {n}, uniform data")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(plot, dpi=120)
        print(f"plot written to {plot}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--brute-queries", type=int, default=2000)
    parser.add_argument("--big-n", type=int, default=10_000_000)
    parser.add_argument("--loo-n", type=int, default=1_000_000)
    parser.add_argument("--table-n", type=int, default=100_000)
    parser.add_argument("--table-gaussian", action="store_true")
    parser.add_argument("--plot", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-loo", action="store_true")
    parser.add_argument("--only", choices=["headline", "radius", "big", "loo", "table"])
    args = parser.parse_args()
    if args.quick:
        args.n, args.loo_n, args.table_n, args.skip_big = 100_000, 100_000, 20_000, True

    import numba

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"numba threads {numba.get_num_threads()}, Python {platform.python_version()}, "
          f"NumPy {np.__version__}, Numba {numba.__version__}")
    seconds, _ = timed(warm_up)
    print(f"warm-up (compiling or loading the kernels): {seconds:.1f} s")
    cases = [args.only] if args.only else ["headline", "radius", "big", "loo", "table"]
    if "headline" in cases:
        headline(args.n, args.brute_queries)
    if "radius" in cases:
        radius(args.n)
    if "big" in cases and not args.skip_big:
        if len(cases) > 1:
            # Peak memory is a property of the process: measure it in a fresh one.
            import subprocess

            subprocess.run([sys.executable, os.path.abspath(__file__), "--only", "big",
                            "--big-n", str(args.big_n)], check=True)
        else:
            big(args.big_n)
    if "loo" in cases and not args.skip_loo:
        loo(args.loo_n)
    if "table" in cases:
        kernels = ("epanechnikov", "gaussian") if args.table_gaussian else ("epanechnikov",)
        table(args.table_n, kernels, args.plot)


if __name__ == "__main__":
    main()

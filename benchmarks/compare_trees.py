"""Same-run speed comparison of two source trees of nwattn (before/after a change).

Check the two commits out side by side (``git worktree add ../before COMMIT``)
and run::

    python benchmarks/compare_trees.py ../before . [--rounds 3] [--repeat 5] [--threads N]
                                                   [--quick] [--cold]

Each round runs every case ``--repeat`` times per tree, each tree in a fresh
interpreter with ``PYTHONPATH`` pointing at it, the trees alternating so
that the machine's drift hits both alike; every case keeps its best time
over all rounds and repeats. On a shared machine a single timed call of the
parallel kernels varies by 30 % or more from one call to the next (the
threads wait for each other at the end of each chunk, so one stolen time
slice delays the whole call); the best of many calls is the stable figure.
``--threads 1`` (``NUMBA_NUM_THREADS=1``) compares the compiled code alone,
without the thread scheduling. Numba's on-disk cache is warmed first, so the times are of the
computation, not of compilation. ``--cold`` also times, once per round and
tree, the first ``attention_pool`` call in a fresh interpreter with an
empty cache directory (what ``time_compile_cold_cache`` of the asv suite
measures).

The cases use only public functions, so any two versions compare:
pooling (row body: gaussian float64 and float32, a compact kernel, leave
one out with the variance; matrix body: scaled dot with 64 outputs), the
leave-one-out score with its bandwidth gradient, one objective evaluation of
``AttentionRegressor`` and the additive pooling.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

WORKER = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from nwattn import AttentionRegressor, bandwidth, ops

    quick = sys.argv[1] == "1"
    repeat = int(sys.argv[2])
    s = 10 if quick else 1
    rng = np.random.default_rng(0)
    n = 20_000 // s
    X = rng.normal(size=(n, 8))
    y = rng.normal(size=n)
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    nd = 8_000 // s
    Q64 = rng.normal(size=(nd, 64)).astype(np.float32)
    V64 = rng.normal(size=(nd, 64)).astype(np.float32)
    nl = 4_000 // s
    XL, YL = rng.normal(size=(nl, 3)), rng.normal(size=(nl, 2))
    na = 3_000 // s
    XA, ya = rng.normal(size=(na, 5)), rng.normal(size=na)
    Wq, Wk, wv = rng.normal(size=(4, 5)), rng.normal(size=(4, 5)), rng.normal(size=4)
    reg = AttentionRegressor(max_iter=1, n_components=4)

    cases = {
        "pool gaussian f64": lambda: ops.attention_pool(X, X, y, "gaussian", 0.8),
        "pool gaussian f32": lambda: ops.attention_pool(X32, X32, y32, "gaussian", 0.8),
        "pool epanechnikov f64": lambda: ops.attention_pool(X, X, y, "epanechnikov", 1.5),
        "pool loo + std f64": lambda: ops.attention_pool(X, X, y, "gaussian", 0.8,
                                                         exclude_self=True, return_std=True),
        "pool scaled_dot p=64 f32": lambda: ops.attention_pool(Q64, Q64, V64, "scaled_dot"),
        "loo score + gradient": lambda: bandwidth.loo_cv_score(
            XL, YL, "gaussian", [0.5, 0.6, 0.7], return_gradient=True),
        "AttentionRegressor fit": lambda: reg.fit(XA, ya),
        "additive pool": lambda: ops.additive_pool(XA, XA, ya, Wq, Wk, wv, exclude_self=True),
    }
    out = {}
    for name, f in cases.items():
        f()  # compile or load from the cache
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            f()
            best = min(best, time.perf_counter() - t)
        out[name] = best
    print(json.dumps(out))
""")

COLD = textwrap.dedent("""
    import time
    t = time.perf_counter()
    import numpy as np
    from nwattn.ops import attention_pool
    X = np.random.default_rng(0).normal(size=(50, 3))
    attention_pool(X, X, X[:, 0], "gaussian", 1.0)
    print(time.perf_counter() - t)
""")


def run(tree, code, args=(), env=None):
    """Run ``code`` in a fresh interpreter that imports nwattn from ``tree``."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.path.abspath(tree)
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code, *args], env=env,
                         cwd=os.path.abspath(tree), check=True, capture_output=True,
                         text=True)
    return out.stdout.strip().splitlines()[-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="source tree of the old version")
    parser.add_argument("after", help="source tree of the new version")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5,
                        help="timed calls of each case per round")
    parser.add_argument("--threads", type=int, default=None,
                        help="NUMBA_NUM_THREADS of the workers (default: all cores)")
    parser.add_argument("--quick", action="store_true", help="sizes divided by 10")
    parser.add_argument("--cold", action="store_true", help="also time a cold compile")
    args = parser.parse_args(argv)
    trees = {"before": args.before, "after": args.after}
    flag = "1" if args.quick else "0"
    env = dict(os.environ)
    if args.threads:
        env["NUMBA_NUM_THREADS"] = str(args.threads)
    for tree in trees.values():  # fill each tree's on-disk cache
        run(tree, WORKER, [flag, "1"], env)
    best = {label: {} for label in trees}
    for _ in range(args.rounds):
        for label, tree in trees.items():
            for name, t in json.loads(run(tree, WORKER, [flag, str(args.repeat)], env)).items():
                best[label][name] = min(t, best[label].get(name, float("inf")))
            if args.cold:
                with tempfile.TemporaryDirectory() as cache:
                    t = float(run(tree, COLD, env=dict(env, NUMBA_CACHE_DIR=cache)))
                name = "cold first call (s)"
                best[label][name] = min(t, best[label].get(name, float("inf")))
    threads = args.threads or "all"
    print(f"best of {args.rounds} interleaved rounds x {args.repeat} calls, {threads} threads; "
          f"before = {args.before}, after = {args.after}")
    print(f"{'case':28s} {'before (s)':>11s} {'after (s)':>11s} {'after/before':>13s}")
    for name in best["before"]:
        b, a = best["before"][name], best["after"].get(name, float("nan"))
        print(f"{name:28s} {b:11.4f} {a:11.4f} {a / b:13.3f}")


if __name__ == "__main__":
    main()

"""Peak resident memory of one large fused pooling or local polynomial fit.

Usage::

    python benchmarks/peak_memory.py [--n 200000] [--m M] [--d 8] [--degree G]

Prints the process's peak resident set size (``ru_maxrss``) after pooling
n queries over m keys (m = n by default), or with ``--degree`` after a local
polynomial fit of that degree with its slopes (``ops.local_polynomial``);
the dense weight matrix alone would take 8 n m bytes. Memory grows with
n + m, so a smaller m measures the same peak in less time.
"""

import argparse
import resource
import time

import numpy as np

from nwattn.ops import attention_pool, local_polynomial


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--m", type=int, default=None, help="keys (default: n)")
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--degree", type=int, default=None,
                        help="fit a local polynomial of this degree instead of pooling")
    args = parser.parse_args(argv)
    m = args.n if args.m is None else args.m
    rng = np.random.default_rng(0)
    Q = rng.normal(size=(args.n, args.d))
    K = Q if m == args.n else rng.normal(size=(m, args.d))
    y = rng.normal(size=m)
    t0 = time.perf_counter()
    if args.degree is None:
        out = attention_pool(Q, K, y, bandwidth=0.5)
        what = "pooling"
    else:
        out = local_polynomial(Q, K, y, bandwidth=0.5, degree=args.degree,
                               return_gradient=args.degree > 0, lower_degree=True)
        out = out[0] if args.degree > 0 else out
        what = f"local polynomial of degree {args.degree} with slopes"
    dt = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    dense_gb = 8 * args.n * m / 1e9
    print(f"n = {args.n}, m = {m}, d = {args.d}, p = 1, gaussian, float64, {what}")
    print(f"time {dt:.1f} s, finite outputs {np.isfinite(out).all()}")
    print(f"peak resident memory {peak_mb:.0f} MB (dense weights would be {dense_gb:.0f} GB)")


if __name__ == "__main__":
    main()

"""Peak resident memory of one large fused pooling.

Usage::

    python benchmarks/peak_memory.py [--n 200000] [--d 8]

Prints the process's peak resident set size (``ru_maxrss``) after pooling
n queries over n keys; the dense weight matrix alone would take 8 n^2 bytes.
"""

import argparse
import resource
import time

import numpy as np

from nwattn.ops import attention_pool


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=8)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.n, args.d))
    y = rng.normal(size=args.n)
    t0 = time.perf_counter()
    out = attention_pool(X, X, y, bandwidth=0.5)
    dt = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    dense_gb = 8 * args.n**2 / 1e9
    print(f"n = m = {args.n}, d = {args.d}, p = 1, gaussian, float64")
    print(f"time {dt:.1f} s, finite outputs {np.isfinite(out).all()}")
    print(f"peak resident memory {peak_mb:.0f} MB (dense weights would be {dense_gb:.0f} GB)")


if __name__ == "__main__":
    main()

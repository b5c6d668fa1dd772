"""Fused nwattn pooling against a chunked NumPy/SciPy implementation.

The reference computes the scores of a chunk of queries with one matrix
product (the expansion ||q - k||^2 = ||q||^2 - 2 q.k + ||k||^2), takes
``scipy.special.softmax`` and pools with a second matrix product. Both run
in this process on the same data; the ratio is what to read.

Usage::

    python benchmarks/compare_numpy.py [--n 20000] [--d 8] [--repeat 3]
"""

import argparse
import platform
import time

import numpy as np
from scipy.special import softmax as sp_softmax

from nwattn.ops import attention_pool


def numpy_pool(Q, K, V, bandwidth, chunk=1024):
    """Gaussian attention pooling by chunks of queries with NumPy/SciPy."""
    inv = 1.0 / bandwidth
    Qs, Ks = Q * inv, K * inv
    k2 = np.einsum("ij,ij->i", Ks, Ks)
    out = np.empty((Q.shape[0],) + V.shape[1:], dtype=V.dtype)
    for i0 in range(0, Q.shape[0], chunk):
        q = Qs[i0:i0 + chunk]
        q2 = np.einsum("ij,ij->i", q, q)
        S = -0.5 * (q2[:, None] - 2.0 * (q @ Ks.T) + k2[None, :])
        out[i0:i0 + chunk] = sp_softmax(S, axis=1) @ V
    return out


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="queries = keys")
    parser.add_argument("--d", type=int, default=8, help="features")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    Q = rng.normal(size=(args.n, args.d)).astype(args.dtype)
    K = rng.normal(size=(args.n, args.d)).astype(args.dtype)
    V = rng.normal(size=args.n).astype(args.dtype)
    h = 0.5

    attention_pool(Q[:10], K[:10], V[:10], bandwidth=h)  # compile outside the timing
    t_nw, out_nw = best_of(lambda: attention_pool(Q, K, V, bandwidth=h), args.repeat)
    t_np, out_np = best_of(lambda: numpy_pool(Q, K, V, h), args.repeat)
    pairs = args.n * args.n
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
          f"python {platform.python_version()}, numpy {np.__version__}")
    print(f"gaussian pooling, n = m = {args.n}, d = {args.d}, p = 1, {args.dtype}")
    print(f"{'implementation':<22}{'seconds':>10}{'Mpairs/s':>12}{'speed-up':>10}")
    print(f"{'chunked numpy/scipy':<22}{t_np:>10.3f}{pairs / t_np / 1e6:>12.1f}{1.0:>10.2f}")
    print(f"{'nwattn':<22}{t_nw:>10.3f}{pairs / t_nw / 1e6:>12.1f}{t_np / t_nw:>10.2f}")
    print(f"max |difference| = {np.max(np.abs(out_nw - out_np)):.2e}")


if __name__ == "__main__":
    main()

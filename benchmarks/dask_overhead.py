"""Overhead of the Dask path of attention pooling against the in-memory path.

Times ``nwattn.ops.attention_pool`` on n queries and m keys in memory, then
``nwattn.dask.attention_pool`` on the same data as Dask arrays, on the
threaded scheduler and on a local cluster of worker processes, and prints
the ratios. Every variant is run once to warm up (compilation, worker
start-up) and then timed as the best of ``--repeat`` runs, so the figures
are the steady-state cost of the graph, the task scheduling, the transfers
and the merges of partial states.

Usage::

    python benchmarks/dask_overhead.py --n 100000 --m 100000
"""

import argparse

import numpy as np
from _timing import best_time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="number of queries")
    parser.add_argument("--m", type=int, default=100_000, help="number of keys")
    parser.add_argument("--d", type=int, default=2, help="number of features")
    parser.add_argument("--query-chunks", type=int, default=4, help="query blocks")
    parser.add_argument("--key-chunks", type=int, default=4, help="key chunks")
    parser.add_argument("--workers", type=int, default=2, help="cluster worker processes")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import dask
    import dask.array as da
    import distributed

    from nwattn import ops
    from nwattn import dask as ndask

    rng = np.random.default_rng(0)
    Q = rng.normal(size=(args.n, args.d))
    K = rng.normal(size=(args.m, args.d))
    V = rng.normal(size=args.m)
    h = 0.3
    qc = -(-args.n // args.query_chunks)
    kc = -(-args.m // args.key_chunks)
    dQ = da.from_array(Q, chunks=(qc, args.d))
    dK = da.from_array(K, chunks=(kc, args.d))
    dV = da.from_array(V, chunks=kc)

    ref = ops.attention_pool(Q, K, V, "gaussian", h)
    t_mem = best_time(lambda: ops.attention_pool(Q, K, V, "gaussian", h), args.repeat)
    print(f"n={args.n} m={args.m} d={args.d}; query blocks={args.query_chunks}, "
          f"key chunks={args.key_chunks}")
    print(f"in memory (ops.attention_pool):          {t_mem:8.3f} s")

    def run_dask():
        return ndask.attention_pool(dQ, dK, dV, "gaussian", h).compute()

    with dask.config.set(scheduler="threads"):
        out = run_dask()
        t_thr = best_time(run_dask, args.repeat)
    err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
    print(f"dask, threaded scheduler:                {t_thr:8.3f} s  "
          f"ratio {t_thr / t_mem:5.2f}  rel. error {err:.1e}")

    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                  processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0",
                                  silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        out = run_dask()
        t_cl = best_time(run_dask, args.repeat)
        err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
        print(f"dask, LocalCluster {args.workers} processes x 1 thread: {t_cl:8.3f} s  "
              f"ratio {t_cl / t_mem:5.2f}  rel. error {err:.1e}")
        client.close()


if __name__ == "__main__":
    main()

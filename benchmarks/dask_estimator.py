"""Cost of fitting NadarayaWatsonRegressor on Dask arrays against fitting it in memory.

Fits the regressor with ``bandwidth="cv"`` (leave-one-out cross-validation,
one bandwidth, or one per feature with ``--per-feature``) on n training
points held in memory, then on the same points as a Dask array of
``--chunks`` row chunks, on the threaded scheduler and on a local cluster
of worker processes. Prints the wall times, the number of scores the search
computed, and how far the selected bandwidths differ. Each variant runs once
to warm up (compilation, worker start-up) and is then timed once.

Usage::

    python benchmarks/dask_estimator.py --n 20000
"""

import argparse
import time

import numpy as np


def timed(func):
    t0 = time.perf_counter()
    out = func()
    return out, time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="training points")
    parser.add_argument("--d", type=int, default=2, help="number of features")
    parser.add_argument("--chunks", type=int, default=4, help="row chunks of the Dask arrays")
    parser.add_argument("--workers", type=int, default=2, help="cluster worker processes")
    parser.add_argument("--kernel", default="gaussian")
    parser.add_argument("--per-feature", action="store_true")
    args = parser.parse_args()

    import dask
    import dask.array as da
    import distributed

    from nwattn import NadarayaWatsonRegressor

    rng = np.random.default_rng(0)
    X = rng.uniform(size=(args.n, args.d))
    y = np.sin(6 * X[:, 0]) + X[:, 1:].sum(axis=1) + 0.1 * rng.normal(size=args.n)
    rows = -(-args.n // args.chunks)
    dX, dy = da.from_array(X, chunks=(rows, args.d)), da.from_array(y, chunks=rows)

    def model():
        return NadarayaWatsonRegressor(args.kernel, bandwidth_per_feature=args.per_feature)

    model().fit(X[:200], y[:200])
    ref, t_mem = timed(lambda: model().fit(X, y))
    print(f"n={args.n} d={args.d} kernel={args.kernel} per_feature={args.per_feature}; "
          f"{args.chunks} chunks")
    print(f"in memory:                       {t_mem:8.2f} s  bandwidth {ref.bandwidth_}")

    def report(label, fitted, seconds):
        diff = np.max(np.abs(np.log(np.asarray(fitted.bandwidth_) / ref.bandwidth_)))
        print(f"{label:32s} {seconds:8.2f} s  ratio {seconds / t_mem:6.2f}  "
              f"|log h ratio| {diff:.1e}  score rel. diff "
              f"{abs(fitted.cv_score_ / ref.cv_score_ - 1):.1e}")

    with dask.config.set(scheduler="threads"):
        model().fit(dX[:200], dy[:200])
        got, t = timed(lambda: model().fit(dX, dy))
    report("dask, threaded scheduler:", got, t)

    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                  processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0",
                                  silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        pX, py = dask.persist(dX, dy)
        model().fit(pX[:200], py[:200])
        got, t = timed(lambda: model().fit(pX, py))
        report(f"dask, LocalCluster {args.workers} x 1 thread:", got, t)
        client.close()


if __name__ == "__main__":
    main()

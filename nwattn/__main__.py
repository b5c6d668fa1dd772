"""Command line: ``python -m nwattn demo``."""

import argparse
import sys
import time


def _demo(args):
    """Noisy sine (the toy problem of attention pooling): fits of several kernels."""
    import numpy as np

    from nwattn.ops import attention_pool

    rng = np.random.default_rng(args.seed)
    n = args.n_samples
    x_train = np.sort(rng.uniform(0, 5, size=n))
    y_train = 2 * np.sin(x_train) + x_train**0.8 + rng.normal(scale=0.5, size=n)
    x_test = np.linspace(0, 5, 200)
    y_true = 2 * np.sin(x_test) + x_test**0.8
    print(f"Nadaraya-Watson on the noisy sine, {n} training points, bandwidth {args.bandwidth}")
    print(f"{'kernel':<14}{'test RMSE':>10}{'LOO RMSE':>10}{'seconds':>10}")
    for kernel in ("gaussian", "laplacian", "epanechnikov", "triangular", "tricube", "boxcar"):
        t0 = time.perf_counter()
        pred = attention_pool(x_test[:, None], x_train[:, None], y_train, kernel,
                              args.bandwidth)
        loo = attention_pool(x_train[:, None], x_train[:, None], y_train, kernel,
                             args.bandwidth, exclude_self=True)
        dt = time.perf_counter() - t0
        rmse = np.sqrt(np.nanmean((pred - y_true) ** 2))
        loo_rmse = np.sqrt(np.nanmean((loo - y_train) ** 2))
        print(f"{kernel:<14}{rmse:>10.4f}{loo_rmse:>10.4f}{dt:>10.3f}")
    return 0


def main(argv=None):
    """Entry point of ``python -m nwattn`` and the ``nwattn`` script."""
    parser = argparse.ArgumentParser(prog="nwattn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the demonstration", description=_demo.__doc__)
    demo.add_argument("--n-samples", type=int, default=500)
    demo.add_argument("--bandwidth", type=float, default=0.3)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

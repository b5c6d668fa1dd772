"""Command line: ``python -m nwattn demo``."""

import argparse
import os
import sys
import tempfile
import time

FIGURE_NAME = "nwattn-demo.png"
TOY_KERNELS = ("gaussian", "boxcar", "triangular", "epanechnikov")
# scikit-learn's random_state (the data split, the synthetic data, the
# initial parameters) accepts seeds in [0, 2**32 - 1] only.
MAX_SEED = 2**32 - 1
# Measured with `python -m nwattn demo --no-plot`, NUMBA_CACHE_DIR pointed at
# an empty directory for the first run and reused for the second, on a 2-core
# virtual machine (docs/contributing.rst has the commands). The machine was
# shared, so the figures below come from the CPU time of the runs (222 s
# compiling and running, 38 s cached) rather than their wall time; Numba
# compiles on one thread, so an idle machine takes about as long.
COMPILE_NOTICE = (
    "The first run in a new environment compiles nwattn's kernels with Numba: "
    "expect about 4 minutes on an idle 2-core machine, longer on a busy one.\n"
    "Later runs load the kernels from Numba's cache and take well under a minute."
)


def _have_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _format_bandwidth(h):
    import numpy as np

    h = np.atleast_1d(np.asarray(h, dtype=float))
    if h.size == 1:
        return f"{h[0]:.3g}"
    return f"{h.min():.2g} .. {h.max():.2g} ({h.size} values)"


def _models(seed):
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from nwattn import AttentionRegressor, NadarayaWatsonRegressor

    knn = GridSearchCV(KNeighborsRegressor(), {"n_neighbors": [3, 5, 10, 20, 40]}, cv=5)
    return [
        ("NW gaussian, cv", make_pipeline(StandardScaler(), NadarayaWatsonRegressor())),
        ("NW gaussian, cv per feature",
         make_pipeline(StandardScaler(), NadarayaWatsonRegressor(bandwidth_per_feature=True))),
        # A small penalty keeps the learned scores from overfitting the 353
        # training points of diabetes; the additive score, the costliest per
        # pair, trains on random query batches of 400 against all keys.
        *[(f"attention, learned {score}",
           make_pipeline(StandardScaler(),
                         AttentionRegressor(score, alpha=0.01, max_iter=60, random_state=seed,
                                            batch_size=400 if score == "additive" else None)))
          for score in ("rbf", "scaled_dot", "additive")],
        ("k-NN, k by 5-fold cv", make_pipeline(StandardScaler(), knn)),
        ("ridge, alpha by cv", make_pipeline(StandardScaler(), RidgeCV())),
    ]


def _describe(model):
    est = model[-1]
    if hasattr(est, "bandwidth_"):
        return "h = " + _format_bandwidth(est.bandwidth_)
    if hasattr(est, "loss_curve_"):
        return f"{est.n_iter_} L-BFGS-B iterations, LOO MSE {est.loss_curve_[-1]:.3g}"
    if hasattr(est, "best_params_"):
        return f"k = {est.best_params_['n_neighbors']}"
    return f"alpha = {est.alpha_:.3g}"


def _step(text):
    # Flushed, so that a step is on the screen while it runs even when the
    # output goes through a pipe.
    print(text, flush=True)


def _benchmark_table(seed, steps):
    """Test R², fit and predict times on two data sets that ship with scikit-learn."""
    from sklearn.datasets import load_diabetes, make_friedman1
    from sklearn.metrics import r2_score
    from sklearn.model_selection import train_test_split

    datasets = [
        ("diabetes", *load_diabetes(return_X_y=True)),
        ("friedman1", *make_friedman1(n_samples=2000, noise=1.0, random_state=seed)),
    ]
    header = f"{'data':<11}{'model':<30}{'test R2':>8}{'fit s':>8}{'pred s':>8}  chosen"
    for step, (name, X, y) in enumerate(datasets, start=1):
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=seed)
        models = _models(seed)
        _step(f"[{step}/{steps}] {name}: {X.shape[0]} samples, {X.shape[1]} features, "
              f"80/20 split; fitting {len(models)} models, one row each")
        print(header)
        print("-" * (len(header) + 20))
        for label, model in models:
            # The start of the row is the model being fitted; the figures
            # follow on the same line once it is done.
            print(f"{name:<11}{label:<30}", end="", flush=True)
            _, fit_s = _timed(model.fit, Xtr, ytr)
            pred, pred_s = _timed(model.predict, Xte)
            r2 = r2_score(yte, pred)
            print(f"{r2:>8.3f}{fit_s:>8.3f}{pred_s:>8.3f}  {_describe(model)}", flush=True)
        print()


def _toy_figure(seed, path):
    """Noisy sine: fits of several kernels and the attention weights of one."""
    _step(f"[3/3] noisy sine: fitting {len(TOY_KERNELS)} kernels and drawing "
          f"{path}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from nwattn import NadarayaWatsonRegressor

    rng = np.random.default_rng(seed)
    n = 50
    x_train = np.sort(rng.uniform(0, 5, size=n))
    y_train = 2 * np.sin(x_train) + x_train**0.8 + rng.normal(scale=0.5, size=n)
    x_test = np.linspace(0, 5, 200)
    y_true = 2 * np.sin(x_test) + x_test**0.8

    fig, (ax_fit, ax_map) = plt.subplots(1, 2, figsize=(12, 4.8),
                                         gridspec_kw={"width_ratios": [1.3, 1]})
    ax_fit.plot(x_test, y_true, color="black", lw=1.5, label="truth")
    ax_fit.scatter(x_train, y_train, s=14, color="grey", alpha=0.7, label="training points")
    print(f"Noisy sine, {n} training points: kernels with leave-one-out bandwidths")
    print(f"{'kernel':<14}{'bandwidth':>10}{'test RMSE':>11}")
    gaussian = None
    for kernel in TOY_KERNELS:
        model = NadarayaWatsonRegressor(kernel, fallback="nearest").fit(x_train[:, None], y_train)
        pred = model.predict(x_test[:, None])
        rmse = float(np.sqrt(np.mean((pred - y_true) ** 2)))
        print(f"{kernel:<14}{model.bandwidth_:>10.3f}{rmse:>11.3f}")
        ax_fit.plot(x_test, pred, lw=1.2, label=f"{kernel} (h = {model.bandwidth_:.2f})")
        if kernel == "gaussian":
            gaussian = model
    ax_fit.set(xlabel="x", ylabel="y", title="Nadaraya-Watson fits, bandwidth by leave-one-out CV")
    ax_fit.legend(fontsize=8)

    idx, w = gaussian.attention_weights(x_test[:, None], k=n)
    weights = np.zeros((x_test.shape[0], n))
    np.put_along_axis(weights, np.where(idx < 0, 0, idx), np.where(idx < 0, 0, w), axis=1)
    im = ax_map.imshow(weights, aspect="auto", origin="lower", cmap="viridis",
                       extent=(-0.5, n - 0.5, x_test[0], x_test[-1]))
    ax_map.set(xlabel="training point (sorted by x)", ylabel="query x",
               title=f"attention weights, gaussian, h = {gaussian.bandwidth_:.2f}")
    fig.colorbar(im, ax=ax_map)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"\nfigure written to {path}")


def _error(message):
    # One line on stderr, in the form argparse uses for its own errors.
    print(f"nwattn demo: error: {message}", file=sys.stderr)
    return 2


def _check_output_dir(path):
    """Why the figure cannot be written into ``path``, or None if it can."""
    if not os.path.exists(path):
        return f"output directory {path!r} does not exist"
    if not os.path.isdir(path):
        return f"output directory {path!r} is not a directory"
    if os.path.isdir(os.path.join(path, FIGURE_NAME)):
        return f"{os.path.join(path, FIGURE_NAME)!r} is a directory; the figure cannot replace it"
    # Creating a file is the only reliable test: permission bits do not bind
    # root, and say nothing of read-only file systems.
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".nwattn-demo-"):
            pass
    except OSError as exc:
        return f"cannot write to output directory {path!r}: {exc.strerror or exc}"
    return None


def _demo(args):
    """Nadaraya-Watson regression with cross-validated bandwidths and attention regression
    with learned scores (rbf, scaled_dot, additive), next to k-NN and ridge regression, on
    scikit-learn's diabetes data and make_friedman1, then a figure of the
    noisy-sine toy problem (fits of several kernels and a heatmap of attention weights)."""
    if not args.no_plot:
        if not _have_matplotlib():
            print("nwattn demo: the figure needs matplotlib, which is not installed.\n"
                  "Install it with `pip install \"nwattn[demo]\"` (or `pip install matplotlib`), "
                  "or run `python -m nwattn demo --no-plot` for the table alone.",
                  file=sys.stderr)
            return 2
        problem = _check_output_dir(args.output)
        if problem is not None:
            return _error(problem)
    steps = 2 if args.no_plot else 3
    _step(COMPILE_NOTICE + "\n")
    t0 = time.perf_counter()
    _benchmark_table(args.seed, steps)
    if not args.no_plot:
        _toy_figure(args.seed, os.path.join(args.output, FIGURE_NAME))
    print(f"demo finished in {time.perf_counter() - t0:.1f} s "
          "(the first run includes compiling the kernels)")
    return 0


def _seed(text):
    """argparse type of ``--seed``: an integer in [0, MAX_SEED]."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(
            f"must be an integer from 0 to {MAX_SEED}, got {text!r}")
    return value


def main(argv=None):
    """Entry point of ``python -m nwattn`` and the ``nwattn`` script.

    The only command, ``demo``, runs the demonstration (``--help`` lists
    its options). Its arguments and output directory are checked before any
    work starts.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments, without the program name; ``None`` reads
        ``sys.argv``.

    Returns
    -------
    int
        Exit status: 0 on success, 2 when the demo cannot run (matplotlib
        missing for the figure, an output directory that cannot be written).
        Malformed arguments end in :class:`SystemExit` with status 2, as
        :mod:`argparse` does, after a one-line message on stderr.

    Examples
    --------
    >>> import contextlib, io
    >>> from nwattn.__main__ import main
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     try:
    ...         main(["demo", "--seed", "-1"])
    ...     except SystemExit as stop:
    ...         print("exit status", stop.code)
    exit status 2
    >>> print(err.getvalue().splitlines()[-1])
    nwattn demo: error: argument --seed: must be an integer from 0 to 4294967295, got '-1'
    """
    parser = argparse.ArgumentParser(prog="nwattn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the demonstration", description=_demo.__doc__)
    demo.add_argument("-o", "--output", default=".", metavar="DIR",
                      help=f"directory in which to write {FIGURE_NAME} (default: current)")
    demo.add_argument("--no-plot", action="store_true", help="print the table only")
    demo.add_argument("--seed", type=_seed, default=0,
                      help=f"random seed, an integer from 0 to {MAX_SEED} (default: 0)")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

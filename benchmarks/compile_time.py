"""Cold and warm cost of the first fit: Numba compilation against its on-disk cache.

Each case runs in a fresh interpreter whose ``NUMBA_CACHE_DIR`` is a new,
empty temporary directory (cold: every kernel the case needs is compiled
and written there), then once more in another fresh interpreter reusing
that directory (warm: the kernels are loaded from it). The cases:

``nw``
    The first ``NadarayaWatsonRegressor().fit(X, y).predict(X)`` on
    2 000 x 2 points (``bandwidth="cv"``, so the leave-one-out search is
    compiled too).
``lp``
    The same with ``LocalPolynomialRegressor()`` (local linear).
``nw3``
    Three such ``NadarayaWatsonRegressor`` fits in one process, with the
    gaussian, Epanechnikov and tricube kernels (each kernel is compiled
    on its own).
``demo``
    ``python -m nwattn demo --no-plot`` (the table of the demonstration).

Two times per run: ``process`` is the wall time of the whole child,
interpreter start-up and imports included (what a user waits for);
``call`` is the fit and predict alone, measured inside the child (not
available for the demo). ``cpu`` is the child's user + system CPU time,
which a busy machine inflates less than the wall time: Numba compiles on
one thread, so on an idle machine ``process`` is about ``cpu`` for a cold
run.

Usage::

    python benchmarks/compile_time.py [--cases nw lp demo] [--n 2000]

Run it from the repository root (or with ``nwattn`` installed); the figures
of ``docs/performance.rst`` come from it.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

FIT = """\
import json, time
import numpy as np
from nwattn import {cls}
rng = np.random.default_rng(0)
X = rng.uniform(0, 5, size=({n}, 2))
y = np.sin(X[:, 0]) + 0.5 * np.cos(2 * X[:, 1]) + rng.normal(scale=0.3, size={n})
t0 = time.perf_counter()
for kernel in {kernels}:
    {cls}(kernel=kernel).fit(X, y).predict(X)
print(json.dumps({{"call": time.perf_counter() - t0}}))
"""

CASES = {
    "nw": ("NadarayaWatsonRegressor fit+predict", "NadarayaWatsonRegressor"),
    "lp": ("LocalPolynomialRegressor fit+predict", "LocalPolynomialRegressor"),
    "nw3": ("NadarayaWatsonRegressor, 3 kernels", "NadarayaWatsonRegressor"),
    "demo": ("python -m nwattn demo --no-plot", None),
}


def _child_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(case, n, cache_dir, workdir):
    """Wall time, CPU time and in-process call time of one run of ``case``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    # The child imports the nwattn this script sees, also from a checkout.
    import nwattn

    root = os.path.dirname(os.path.dirname(os.path.abspath(nwattn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    cls = CASES[case][1]
    if cls is None:
        cmd = [sys.executable, "-m", "nwattn", "demo", "--no-plot"]
    else:
        kernels = ["gaussian", "epanechnikov", "tricube"] if case == "nw3" else ["gaussian"]
        cmd = [sys.executable, "-c", FIT.format(cls=cls, n=n, kernels=kernels)]
    cpu0 = _child_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu = _child_cpu() - cpu0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"case {case!r} failed with status {proc.returncode}")
    call = None
    if cls is not None:
        call = json.loads(proc.stdout.strip().splitlines()[-1])["call"]
    return {"process": wall, "cpu": cpu, "call": call}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--n", type=int, default=2000, help="training points of nw and lp")
    args = parser.parse_args(argv)

    import numba

    print(f"python {platform.python_version()}, numba {numba.__version__}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}")
    header = f"{'case':<40}{'run':<6}{'process s':>10}{'cpu s':>8}{'call s':>8}"
    print(header)
    print("-" * len(header))
    for case in args.cases:
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as work:
            for run in ("cold", "warm"):
                r = run_once(case, args.n, cache, work)
                call = "" if r["call"] is None else f"{r['call']:8.2f}"
                print(f"{CASES[case][0]:<40}{run:<6}{r['process']:>10.2f}{r['cpu']:>8.2f}"
                      f"{call:>8}", flush=True)


if __name__ == "__main__":
    main()

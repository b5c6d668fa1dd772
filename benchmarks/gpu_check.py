"""The Python steps of ``benchmarks/gpu_check.sh``: nwattn's CUDA kernels on a real GPU.

Run through the shell script, which sets the environment, the time limits and
the output folder; each step can also be run alone from the repository root::

    python benchmarks/gpu_check.py smoke                 # is numba-cuda usable here?
    python benchmarks/gpu_check.py correctness           # GPU vs CPU at the default launch sizes
    python benchmarks/gpu_check.py bench 120 bench.json  # time budget (s), rows saved as JSON
    python benchmarks/gpu_check.py resources res.txt     # registers, memory, occupancy per kernel
    python benchmarks/gpu_check.py sanitize-target       # small launches for compute-sanitizer

``--quick`` shrinks every size so that a step finishes under numba's CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``), which checks this file on a machine
without a GPU; its timings then mean nothing. ``--dry`` lets the smoke test
accept the simulator instead of refusing it.

Loaded by pytest as a plugin (``-p gpu_check``), the module says at the start
of the session whether the CUDA tests run on the GPU or on the simulator.
"""

import json
import math
import os
import sys
import time
import traceback
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))


def _simulator():
    try:
        from numba.cuda.core import config
    except ImportError:  # numba-cuda releases that kept numba's own config
        from numba.core import config
    return bool(getattr(config, "ENABLE_CUDASIM", 0))


# ----------------------------------------------------------------------------- pytest plugin


def pytest_configure(config):
    """Say once, before the CUDA tests, where they run."""
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the controller says it
        return
    from nwattn._device import driver_problem

    sim = os.environ.get("NUMBA_ENABLE_CUDASIM", "")
    problem = driver_problem()
    where = ("the real GPU" if problem is None and sim in ("", "0")
             else f"the CUDA SIMULATOR (driver: {problem or 'present'}; "
                  f"NUMBA_ENABLE_CUDASIM={sim!r})")
    print(f"GPUCHECK: the CUDA tests run on {where}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- 1. smoke


def smoke(dry):
    """numba-cuda compiles and runs a kernel with the features nwattn's kernels rely on:
    shared memory, syncthreads, libdevice's fast_expf and an inlined device function."""
    # The simulator swaps the kernel's *global* ``cuda`` for its own during a launch, so
    # ``cuda`` is bound as a module global here, as in nwattn's kernel modules.
    global cuda
    t0 = time.time()
    import numpy as np
    import numba
    from numba import cuda

    print("python", sys.version.split()[0], "| numpy", np.__version__, "| numba",
          numba.__version__)
    from importlib.metadata import PackageNotFoundError, version

    for name in ("numba-cuda", "llvmlite", "cuda-bindings", "cuda-core", "cuda-pathfinder",
                 "nvidia-nvjitlink-cu12", "nvidia-cuda-nvrtc-cu12", "nvidia-cuda-nvcc-cu12",
                 "nvidia-nvjitlink", "nvidia-cuda-nvrtc", "nvidia-nvvm", "torch", "pykeops"):
        try:
            print(f"  {name} {version(name)}")
        except PackageNotFoundError:
            print(f"  {name} not installed")
    sim = _simulator()
    print("CUDA simulator on:", sim)
    if sim and not dry:
        sys.exit("the CUDA simulator is on: unset NUMBA_ENABLE_CUDASIM to check the GPU")
    print("cuda.is_available():", cuda.is_available())
    dev = cuda.get_current_device()
    name = getattr(dev, "name", "CUDA simulator")
    name = name.decode() if isinstance(name, bytes) else name
    print(f"device: {name}, compute capability {getattr(dev, 'compute_capability', '?')}, "
          f"SMs {getattr(dev, 'MULTIPROCESSOR_COUNT', '?')}")
    if not sim:
        try:
            from numba.cuda.cudadrv import driver

            print("CUDA driver version:", driver.driver.get_version())
            free, total = cuda.current_context().get_memory_info()
            print(f"device memory: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB")
        except Exception as exc:  # informative only
            print("driver query failed:", exc)
    from nwattn._device import cuda_problem, simulator_enabled

    print("nwattn: cuda_problem() =", cuda_problem(), "| simulator_enabled() =",
          simulator_enabled())

    if sim:  # the simulator has no libdevice (nwattn itself uses math.exp there)
        fexp = math.exp
    else:
        from numba.cuda import libdevice

        fexp = libdevice.fast_expf

    @cuda.jit(device=True, inline=True)
    def sq(x):  # a device function, as nwattn's score functions are
        return x * x

    @cuda.jit
    def kernel(x, out):
        s = cuda.shared.array(128, numba.float32)
        i = cuda.grid(1)
        s[cuda.threadIdx.x] = x[i] if i < x.shape[0] else numba.float32(0)
        cuda.syncthreads()
        if i < x.shape[0]:
            out[i] = fexp(-sq(s[cuda.threadIdx.x]))

    n = 200 if sim else 1000
    x = np.linspace(-3, 3, n).astype(np.float32)
    d = cuda.to_device(x)
    o = cuda.device_array_like(d)
    kernel[-(-n // 128), 128](d, o)
    err = float(np.max(np.abs(o.copy_to_host() - np.exp(-x.astype(np.float64) ** 2))))
    print(f"smoke kernel: max abs error {err:.2e}; {time.time() - t0:.1f} s with imports "
          "and compilation")
    if not err < 1e-6:
        sys.exit("SMOKE FAILED")
    print("SMOKE OK")


# ----------------------------------------------------------------------------- 2. correctness


def correctness(quick):
    """The GPU path against the CPU path at nwattn's DEFAULT launch sizes.

    The test suite lowers every launch size so that the simulator stays fast;
    here the sizes are those of ``nwattn._config`` (128 threads, 128-key tiles,
    32-column value chunks, real key splits and the merge kernel). Every GPU
    case runs twice and the two results must agree bit for bit: a result that
    moves between identical launches means a race. The last line is
    ``CORRECTNESS: N passed, M failed``; the exit status is 1 on any failure.

    The environment variable ``CASES`` (comma-separated parts of case names, such as
    ``gaussian float64``) restricts the run to the cases whose names contain one of them.
    """
    import numpy as np

    from nwattn import _config, ops
    from nwattn import objective
    from nwattn.discrete import DiscreteFeatures
    from nwattn.exceptions import EmptyNeighborhoodWarning
    from nwattn.kernels import LEARNED_KINDS

    warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
    print("launch sizes: " + ", ".join(
        f"{k}={getattr(_config, k)}" for k in dir(_config) if k.startswith("CUDA_")))
    rng = np.random.default_rng(12345)
    tol_of = {np.float32: 2e-4, np.float64: 1e-10}
    results = []

    def S(big, small):
        return small if quick else big

    def rel(a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            return np.inf
        ok = ~np.isnan(b)
        if not np.array_equal(np.isnan(a), ~ok):
            return np.inf
        den = max(np.abs(b[ok]).max(initial=0.0), 1e-300)
        return float(np.abs(a[ok] - b[ok]).max(initial=0.0) / den)

    def as_tuple(x):
        return tuple(x) if isinstance(x, tuple) else (x,)

    only = [c.strip() for c in os.environ.get("CASES", "").split(",") if c.strip()]

    def case(name, dtype, gpu, cpu, tol=None):
        if only and not any(c in name for c in only):
            return
        t0 = time.time()
        try:
            g1, g2, c = as_tuple(gpu()), as_tuple(gpu()), as_tuple(cpu())
            err = max(rel(a, b) for a, b in zip(g1, c))
            stable = all(np.array_equal(np.asarray(p), np.asarray(q), equal_nan=True)
                         for p, q in zip(g1, g2))
            tol = tol or tol_of[dtype]
            ok = err <= tol and stable and len(g1) == len(c)
            results.append(ok)
            print(f"{'PASS' if ok else 'FAIL'} {name:60s} rel.err {err:.1e} (tol {tol:.0e}) "
                  f"repeat-identical {stable} {time.time() - t0:6.1f}s", flush=True)
        except Exception as exc:
            results.append(False)
            print(f"FAIL {name:60s} {type(exc).__name__}: {exc}", flush=True)
            traceback.print_exc()

    def f64(*arrays):
        return tuple(a.astype(np.float64) for a in arrays)

    def data(n, m, d, p, dtype, loc=0.0):
        Q = rng.uniform(size=(n, d)).astype(dtype)
        K = rng.uniform(size=(m, d)).astype(dtype)
        V = rng.normal(loc=loc, size=(m, p) if p else (m,)).astype(dtype)
        return Q, K, V

    for dtype in (np.float32, np.float64):
        dn = np.dtype(dtype).name
        loose = 2e-3 if dtype == np.float32 else None

        n = S(20000, 150)
        Q, K, V = data(n, n, 3, 0, dtype, loc=2.0)
        h = 0.5 * n ** (-1 / 7)
        case(f"gaussian {dn} n=m={n} d=3 (key splits + merge)", dtype,
             lambda: ops.attention_pool(Q, K, V, "gaussian", h, device="cuda"),
             lambda: ops.attention_pool(*f64(Q, K, V), "gaussian", h))

        n = S(8000, 130)
        X = rng.uniform(size=(n, 3)).astype(dtype)
        y = rng.normal(size=(n, 2)).astype(dtype)
        w = rng.uniform(0.2, 2.0, size=n)
        w[::7] = 0.0
        for kern in (("epanechnikov", "tricube", "cosine", "laplacian", "boxcar")
                     if not quick else ("epanechnikov",)):
            case(f"{kern} {dn} n=m={n} leave-one-out + key weights + std", dtype,
                 lambda: ops.attention_pool(X, X, y, kern, 0.15, key_weight=w,
                                            exclude_self=True, return_std=True, device="cuda"),
                 lambda: ops.attention_pool(*f64(X, X, y), kern, 0.15, key_weight=w,
                                            exclude_self=True, return_std=True), tol=loose)

        n, dd = S(3000, 40), S(64, 8)
        Q, K, V = (rng.normal(size=(n, dd)).astype(dtype) for _ in range(3))
        p = V.shape[1]
        case(f"scaled_dot {dn} n=m={n} d={dd} p={p} ({-(-p // _config.CUDA_VALUE_CHUNK)} "
             "value chunks)", dtype,
             lambda: ops.attention_pool(Q, K, V, "scaled_dot", 1.0, return_std=True,
                                        device="cuda"),
             lambda: ops.attention_pool(*f64(Q, K, V), "scaled_dot", 1.0, return_std=True),
             tol=(1e-3 if dtype == np.float32 else None))

        m = S(300000, 4500)  # more than CUDA_MIN_SPLIT_KEYS even in the quick run
        Q, K, V = data(S(40, 3), m, 3, 1, dtype)
        case(f"gaussian {dn} n={Q.shape[0]} m={m} (many key splits)", dtype,
             lambda: ops.attention_pool(Q, K, V, "gaussian", 0.05, device="cuda"),
             lambda: ops.attention_pool(*f64(Q, K, V), "gaussian", 0.05))

        if not quick:
            n = 60000
            Q, K, V = data(n, n, 3, 1, dtype)
            sub = rng.choice(n, size=256, replace=False)
            case(f"gaussian {dn} n=m={n} (256 queries checked)", dtype,
                 lambda: ops.attention_pool(Q, K, V, "gaussian", 0.05, device="cuda")[sub],
                 lambda: ops.attention_pool(*f64(Q[sub], K, V), "gaussian", 0.05))

        # (the simulator makes every barrier of a block of rows slow: 2 rows in a dry run)
        Qs, Ks, _ = data(S(2000, 2), S(3000, 40), 3, 1, dtype)
        k = S(5, 2)
        case(f"pairwise_scores + softmax {dn} {Qs.shape[0]}x{Ks.shape[0]}", dtype,
             lambda: ops.softmax(ops.pairwise_scores(Qs, Ks, "epanechnikov", 0.3,
                                                     device="cuda"), device="cuda"),
             lambda: ops.softmax(ops.pairwise_scores(*f64(Qs, Ks), "epanechnikov", 0.3)))
        case(f"top_k_weights {dn} {Qs.shape[0]}x{Ks.shape[0]} k={k}", dtype,
             lambda: ops.top_k_weights(Qs, Ks, "gaussian", 0.1, k=k, device="cuda")[1],
             lambda: ops.top_k_weights(*f64(Qs, Ks), "gaussian", 0.1, k=k)[1],
             tol=(1e-3 if dtype == np.float32 else 1e-9))

        n = S(3000, 60)
        X = rng.normal(size=(n, 3)).astype(dtype)
        V = rng.normal(size=(n, 2)).astype(dtype)
        Wq, Wk, wv = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=4)
        case(f"additive_pool {dn} n=m={n} r=4 leave-one-out + std", dtype,
             lambda: ops.additive_pool(X, X, V, Wq, Wk, wv, exclude_self=True,
                                       return_std=True, device="cuda"),
             lambda: ops.additive_pool(*f64(X, X, V), Wq, Wk, wv, exclude_self=True,
                                       return_std=True),
             tol=(1e-3 if dtype == np.float32 else 1e-9))

        n = S(5000, 60)
        X = rng.uniform(size=(n, 2)).astype(dtype)
        y = (np.sin(4 * X.sum(axis=1)) + 0.1 * rng.normal(size=n)).astype(dtype)
        for degree in (1, 2):
            case(f"local_polynomial {dn} degree {degree} n=m={n} d=2 leave-one-out", dtype,
                 lambda: ops.local_polynomial(X, X, y, "gaussian", 0.2, degree=degree,
                                              exclude_self=True, device="cuda"),
                 lambda: ops.local_polynomial(*f64(X, X, y), "gaussian", 0.2, degree=degree,
                                              exclude_self=True),
                 tol=(5e-3 if dtype == np.float32 else 1e-8))

        n = S(6000, 50)
        X = np.column_stack([rng.uniform(size=n), np.arange(n) % 3, rng.uniform(size=n),
                             np.arange(n) % 4]).astype(dtype)
        y = rng.normal(size=n).astype(dtype)
        disc = DiscreteFeatures([1, 3], [3, 4], ordered=[False, True])
        bw = [0.1, 0.3, 0.2, 0.5]
        case(f"discrete features {dn} n=m={n} (2 continuous, 2 discrete)", dtype,
             lambda: ops.attention_pool(X, X, y, bandwidth=bw, discrete=disc, device="cuda"),
             lambda: ops.attention_pool(X.astype(np.float64), X.astype(np.float64),
                                        y.astype(np.float64), bandwidth=bw, discrete=disc))

    # device arrays in, device arrays out (CUDA array interface), through PyTorch
    try:
        import torch

        if torch.cuda.is_available():
            n = S(20000, 100)
            Q, K, V = data(n, n, 3, 2, np.float32)
            tq, tk, tv = (torch.from_numpy(a).cuda() for a in (Q, K, V))
            case(f"torch CUDA tensors in, device arrays out, n=m={n}", np.float32,
                 lambda: tuple(a.copy_to_host() for a in
                               ops.attention_pool(tq, tk, tv, "gaussian", 0.05,
                                                  return_std=True)),
                 lambda: ops.attention_pool(*f64(Q, K, V), "gaussian", 0.05, return_std=True),
                 tol=1e-3)
        else:
            print("skip torch device-array case: torch sees no CUDA device")
    except ImportError:
        print("skip torch device-array case: torch not importable")

    # the learned scores' objective and gradient (float64, as in training)
    for kind in ("rbf", "scaled_dot", "additive"):
        n = S(3000, 60)
        Pk = rng.normal(size=(n, 4))
        Pq = Pk.copy() if kind == "rbf" else rng.normal(size=(n, 4))
        wv, Y = rng.normal(size=4), rng.normal(size=(n, 2)) + 3.0
        logw, qw = np.log(rng.uniform(0.5, 2.0, size=n)), rng.uniform(0.5, 2.0, size=n)
        code = LEARNED_KINDS[kind]
        case(f"learned {kind} loss + gradients n={n} r=4 p=2", np.float64,
             lambda: tuple(np.atleast_1d(x) for x in
                           objective.loo_loss_grad(code, Pq, Pk, wv, Y, logw, qw, 0.5,
                                                   device="cuda")),
             lambda: tuple(np.atleast_1d(x) for x in
                           objective.loo_loss_grad(code, Pq, Pk, wv, Y, logw, qw, 0.5,
                                                   pairs_once=False)),
             tol=1e-9)

    if not results:
        print(f"CORRECTNESS: no case matches CASES={os.environ.get('CASES')!r}")
        return 1
    failed = len(results) - sum(results)
    print(f"CORRECTNESS: {sum(results)} passed, {failed} failed")
    return 1 if failed else 0


# ----------------------------------------------------------------------------- 4. bench


def _torch_io(dev, values_1d):
    """benchmarks/gpu_pool.py's ``torch_io``: sync and copy back of a PyTorch runner."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import gpu_pool

    return gpu_pool.torch_io(dev, values_1d)


def _keops_runner(kernel, Q, K, V, h, device):
    """KeOps' ``sumsoftmaxweight`` on the same problem, or None without pykeops."""
    try:
        import torch
        from pykeops.torch import LazyTensor
    except ImportError:
        return None
    dev = torch.device(device)
    d = Q.shape[1]
    inv = 1.0 / h if kernel == "gaussian" else 1.0
    q = LazyTensor((torch.from_numpy(Q).to(dev) * inv)[:, None, :].contiguous())
    k = LazyTensor((torch.from_numpy(K).to(dev) * inv)[None, :, :].contiguous())
    v = LazyTensor(torch.from_numpy(V.reshape(V.shape[0], -1)).to(dev)[None, :, :]
                   .contiguous())
    if kernel == "gaussian":
        s = -0.5 * ((q - k) ** 2).sum(-1)
    else:
        s = (q | k) * (1.0 / (h * math.sqrt(d)))

    def run():
        return s.sumsoftmaxweight(v, axis=1)

    return (run, *_torch_io(dev, V.ndim == 1))


def _bf16_sdpa_runner(Q, K, V, h, device):
    """PyTorch's fused attention with bfloat16 inputs (half the bytes, tensor cores)."""
    try:
        import torch
        from torch.nn.functional import scaled_dot_product_attention
    except ImportError:
        return None
    dev = torch.device(device)
    bf = torch.bfloat16
    q4 = (torch.from_numpy(Q).to(dev) / h).to(bf)[None, None]
    k4 = torch.from_numpy(K).to(dev).to(bf)[None, None]
    v4 = torch.from_numpy(V.reshape(V.shape[0], -1)).to(dev).to(bf)[None, None]

    def run():
        return scaled_dot_product_attention(q4, k4, v4)[0, 0]

    return (run, *_torch_io(dev, V.ndim == 1))


def _kernel_only(Q, K, V, kernel, h, repeat):
    """Median time of the pooling launch alone (inputs prepared on the device), by CUDA
    events: the fused kernel without validation, centring, finalisation or copies."""
    import numpy as np
    from numba import cuda

    from nwattn import ops
    from nwattn._cuda import launch

    kern, Qs, KT, logw, scale = ops._prepare_device(cuda.to_device(Q), cuda.to_device(K),
                                                    kernel, h, None)
    VT, _ = ops._values_device(cuda.to_device(V), KT, None)
    flag = Q[:0, :0]  # no squares
    args = (Qs, KT, VT, flag, logw, kern.family, kern.code, scale, -Qs.shape[0] - 1)
    launch.pool(*args)
    cuda.synchronize()
    times = []
    for _ in range(repeat):
        e0, e1 = cuda.event(), cuda.event()
        e0.record()
        launch.pool(*args)
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1) / 1e3)
    return float(np.median(times))


def bench(budget, json_path, quick):
    """benchmarks/gpu_pool.py's cases at sizes that fit the time budget.

    The code timed is the benchmark's own (``make_case``, ``nwattn_runner``,
    ``torch_runners``: PyTorch's fused ``scaled_dot_product_attention`` and a
    dense baseline, float32), plus rows for nwattn in float64, PyTorch's fused
    attention in bfloat16 (labelled ``bf16``) and KeOps when it is installed.
    Each row gives the best of up to 3 timed runs after a warm-up run, the
    largest difference from nwattn's float32 result, and for nwattn the time of
    the pooling kernel alone. A case is skipped when the budget left would not
    cover it (estimated from its warm-up run).
    """
    import numpy as np

    t_start = time.time()
    sys.path.insert(0, HERE)
    import gpu_pool as gp

    sim = _simulator()
    torch_device = "cuda"
    if sim:
        # No GPU: PyTorch and KeOps run on the CPU so that their code paths are exercised.
        torch_device = "cpu"
    rng = np.random.default_rng(0)
    if quick:
        gp.ATTENTION_DIM = 8
    gp.check(rng)
    name = gp.device_name()
    print(f"device: {name}")
    try:
        import torch

        print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    except ImportError:
        print("torch not installed: no PyTorch rows")
    try:
        import pykeops

        print(f"pykeops {pykeops.__version__}")
    except ImportError:
        print("pykeops not installed: no KeOps rows")

    if quick:
        cases = [("gaussian", 3, 40), ("scaled_dot", gp.ATTENTION_DIM, 40)]
    else:
        cases = [("gaussian", 3, 10_000), ("scaled_dot", 64, 10_000),
                 ("gaussian", 3, 100_000), ("gaussian", 16, 100_000),
                 ("scaled_dot", 64, 100_000), ("gaussian", 3, 1_000_000),
                 ("scaled_dot", 64, 300_000), ("gaussian", 16, 1_000_000)]
    rows = []

    def left():
        return budget - (time.time() - t_start)

    print(f"{'kernel':10s} {'d':>3s} {'dtype':8s} {'n = m':>9s} {'implementation':18s} "
          f"{'seconds':>9s} {'pairs/s':>9s} {'maxdiff':>8s}")
    for kernel, d, n in cases:
        if left() < 5:
            print(f"{kernel:10s} {d:3d} {'':8s} {n:9d} skipped: budget spent")
            continue
        Q, K, V, h = gp.make_case(kernel, n, d, rng)
        impls = [("nwattn", "float32", gp.nwattn_runner(kernel, Q, K, V, h))]
        if kernel == "gaussian" and d == 3:
            impls.append(("nwattn", "float64",
                          gp.nwattn_runner(kernel, *(a.astype(np.float64) for a in (Q, K, V)),
                                           h)))
        for impl, runner in gp.torch_runners(kernel, Q, K, V, h, device=torch_device).items():
            impls.append((impl, "float32", runner))
        if kernel == "scaled_dot":
            runner = _bf16_sdpa_runner(Q, K, V, h, torch_device)
            if runner is not None:
                impls.append(("torch sdpa bf16", "bfloat16", runner))
        keops = _keops_runner(kernel, Q, K, V, h, torch_device)
        if keops is not None:
            impls.append(("keops", "float32", keops))
        reference = None
        for impl, dtype, (run, sync, to_host) in impls:
            label = f"{kernel:10s} {d:3d} {dtype:8s} {n:9d} {impl:18s}"
            if left() < 5:
                print(f"{label} skipped: budget spent")
                continue
            try:
                t0 = time.time()
                out = run()
                sync()
                first = time.time() - t0  # includes compilation
                if first > left():
                    print(f"{label} warm-up {first:.1f}s; no time left to repeat")
                    continue
                repeat = max(1, min(3, int((left() - 2) / max(first, 1e-3)) - 1))
                best, out = gp.best_of(run, sync, repeat)
                host = np.asarray(to_host(out), np.float64)
            except Exception as exc:  # one library failing must not stop the others
                print(f"{label} FAILED {type(exc).__name__}: {exc}")
                continue
            if reference is None:
                reference = host
            diff = float(np.max(np.abs(host - reference)) / max(np.max(np.abs(reference)),
                                                                   1e-30))
            row = {"device": name, "kernel": kernel, "d": d, "n": n, "m": n,
                   "implementation": impl, "dtype": dtype, "seconds": best,
                   "pairs_per_s": n * n / best, "repeats": repeat, "first_call_s": first,
                   "max_rel_diff_vs_nwattn_float32": diff}
            extra = ""
            if impl == "nwattn" and left() > 3 * best + 5:
                try:
                    cast = np.float64 if dtype == "float64" else np.float32
                    row["kernel_only_s"] = _kernel_only(*(a.astype(cast) for a in (Q, K, V)),
                                                        kernel, h, repeat)
                    extra = f"  (pool kernel alone {row['kernel_only_s']:.4f}s)"
                except Exception as exc:
                    extra = f"  (kernel-only timing failed: {type(exc).__name__}: {exc})"
            rows.append(row)
            print(f"{label} {best:9.4f} {n * n / best:9.2e} {diff:8.1e}{extra}", flush=True)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(rows, f, indent=1)
    print(f"bench finished in {time.time() - t_start:.0f}s, {len(rows)} rows")
    return 0 if rows else 1


# ----------------------------------------------------------------------------- 5. resources


def resources(report_path, quick):
    """Compile nwattn's kernels at the default launch sizes and report, per kernel variant,
    registers per thread, local memory per thread (local arrays and spills), static shared
    memory per block, resident blocks per SM and the occupancy they give.

    The kernels are built through nwattn's own launch code on small inputs, so the
    compile-time parameters and signatures are the real ones. The report file also gets the
    SASS of the float32 d=3 gaussian pooling kernel when nvdisasm is on the PATH.
    """
    import numpy as np
    from numba import cuda

    from nwattn import objective, ops
    from nwattn._cuda import kernels as K, learned as L, local as LOC
    from nwattn.kernels import LEARNED_KINDS

    warnings.simplefilter("ignore")
    built = []  # (label, dispatcher, threads per block)

    def recording(module, attr, threads_of):
        factory = getattr(module, attr)

        def wrapper(*args):
            disp = factory(*args)
            if all(b is not disp for _, b, _ in built):
                built.append((f"{attr}{args}", disp, threads_of(args)))
            return disp

        setattr(module, attr, wrapper)

    from nwattn import _config

    simple = lambda args: _config.CUDA_SIMPLE_THREADS  # noqa: E731
    recording(K, "pool_kernel", lambda a: a[7])
    recording(K, "pairwise_kernel", simple)
    recording(K, "softmax_kernel", lambda a: a[1])
    recording(K, "top_k_kernel", lambda a: a[1])
    recording(K, "column_sum_kernel", lambda a: a[0])
    recording(K, "finalize_kernel", simple)
    recording(LOC, "local_kernel", lambda a: a[6])
    recording(L, "grad_kernel", lambda a: a[5])
    built.append(("merge_kernel", K.merge_kernel, _config.CUDA_SIMPLE_THREADS))

    t0 = time.time()
    rng = np.random.default_rng(0)
    N = 24 if quick else 300
    cases = [("gaussian", np.float32, 3, 1, {}), ("gaussian", np.float64, 3, 1, {}),
             ("gaussian", np.float32, 16, 1, {}),
             ("epanechnikov", np.float32, 3, 1,
              dict(exclude_self=True, return_std=True, key_weight=np.r_[0.0, np.ones(N - 1)])),
             ("scaled_dot", np.float32, 64, 64, {}), ("scaled_dot", np.float64, 64, 64, {})]
    if quick:
        cases = [(k, t, min(d, 8), min(p, 4), kw) for k, t, d, p, kw in cases[::2]]
    for kernel, dtype, d, p, kw in cases:
        X = rng.normal(size=(N, d)).astype(dtype)
        V = rng.normal(size=(N, p)).astype(dtype)
        try:
            ops.attention_pool(X, X, V, kernel, 2.0, device="cuda", **kw)
        except Exception as exc:
            print(f"{kernel} {np.dtype(dtype).name} d={d}: FAILED {type(exc).__name__}: {exc}")
    X = rng.normal(size=(N, 3)).astype(np.float32)
    try:
        ops.softmax(ops.pairwise_scores(X, X, "gaussian", 1.0, device="cuda"), device="cuda")
        if not quick:  # (blocks of 128 simulated threads would take minutes in a dry run)
            ops.top_k_weights(X, X, "gaussian", 1.0, k=5, device="cuda")
            from numba import cuda

            # device inputs: their checks, column means and transposes run on the GPU
            Xd = cuda.to_device(X)
            ops.attention_pool(Xd, Xd, cuda.to_device(X[:, 0].copy()), "gaussian", 1.0)
        for degree in ((1,) if quick else (1, 2)):
            ops.local_polynomial(X, X, X[:, 0], "gaussian", 1.0, degree=degree, device="cuda")
    except Exception as exc:
        print(f"scores / local polynomial: FAILED {type(exc).__name__}: {exc}")
    for kind in (("rbf", "additive") if not quick else ("additive",)):
        r = 4
        P = rng.normal(size=(N, r))
        try:
            objective.loo_loss_grad(LEARNED_KINDS[kind], P, P, rng.normal(size=r),
                                    rng.normal(size=(N, 2)), np.zeros(N), np.ones(N),
                                    device="cuda")
        except Exception as exc:
            print(f"learned {kind}: FAILED {type(exc).__name__}: {exc}")
    print(f"built and ran {len(built)} kernel variants in {time.time() - t0:.1f} s "
          "(compilation included)")

    report = open(report_path, "w") if report_path else None

    def emit(line):
        print(line)
        if report:
            report.write(line + "\n")

    if _simulator():
        emit("CUDA simulator: no compiled code to inspect; kernel variants built:")
        for label, _, threads in built:
            emit(f"  {label} threads={threads}")
        if report:
            report.close()
        return 0

    dev = cuda.get_current_device()
    ctx = cuda.current_context()
    sms = dev.MULTIPROCESSOR_COUNT
    try:
        max_threads_sm = dev.MAX_THREADS_PER_MULTIPROCESSOR
    except Exception:  # attribute missing from an older binding: every recent GPU has 2048
        max_threads_sm = 2048
    name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
    emit(f"device: {name}, compute capability {dev.compute_capability}, {sms} SMs, "
         f"{max_threads_sm} threads per SM at most")
    emit(f"{'kernel (arguments of its factory)':90s} {'thr':>4s} {'regs':>4s} {'localB':>6s} "
         f"{'smemB':>6s} {'blk/SM':>6s} {'occup':>6s}")
    sass = None
    for label, disp, threads in built:
        for sig, kern in list(getattr(disp, "overloads", {}).items()):
            try:
                regs = kern.regs_per_thread
                local = kern.local_mem_per_thread
                smem = kern.shared_mem_per_block
                cufunc = kern._codelibrary.get_cufunc()
                per_sm = ctx.get_active_blocks_per_multiprocessor(cufunc, threads, 0)
                occ = f"{per_sm * threads / max_threads_sm:6.0%}"
            except Exception as exc:
                emit(f"{label[:90]:90s} inspection failed: {type(exc).__name__}: {exc}")
                continue
            flag = "  <- spills/local arrays" if local else ""
            emit(f"{label[:90]:90s} {threads:4d} {regs:4d} {local:6d} {smem:6d} {per_sm:6d} "
                 f"{occ}{flag}")
            if (sass is None and label.startswith("pool_kernel('float32', 3, 0, ")
                    and "True" not in label.split(",")[4]):
                try:
                    sass = kern.inspect_sass()
                except Exception as exc:
                    sass = ""
                    emit(f"  inspect_sass failed (is nvdisasm on the PATH?): {exc}")
    if report:
        if sass:
            report.write("\n===== SASS of the float32 d=3 gaussian pooling kernel =====\n")
            report.write(sass)
        report.close()
    return 0


# ----------------------------------------------------------------------------- 6. sanitizer


def sanitize_target():
    """Small problems for compute-sanitizer (racecheck, synccheck, memcheck) at the default
    launch sizes that still use several blocks, full and partial key tiles, key splits with the
    merge kernel, value chunks, -inf scores, leave-one-out, the local polynomial moments and
    the backward kernel of the learned scores."""
    import numpy as np
    from numba import cuda

    from nwattn import objective, ops
    from nwattn.kernels import LEARNED_KINDS

    warnings.simplefilter("ignore")
    sim = _simulator()
    rng = np.random.default_rng(7)
    nq, m = (3, 2100) if sim else (300, 5000)
    Q = rng.uniform(size=(nq, 3)).astype(np.float32)
    K = rng.uniform(size=(m, 3)).astype(np.float32)
    ops.attention_pool(Q, K, rng.normal(size=m).astype(np.float32), "gaussian", 0.1,
                       device="cuda")  # key splits, merge
    n = 40 if sim else 700
    X = rng.uniform(size=(n, 3))
    w = rng.uniform(0.1, 1.0, size=n)
    w[::5] = 0.0
    ops.attention_pool(X, X, rng.normal(size=(n, 2)), "epanechnikov", 0.2, key_weight=w,
                       exclude_self=True, return_std=True, device="cuda")
    n = 20 if sim else 200
    Z = rng.normal(size=(n, 16)).astype(np.float32)
    ops.attention_pool(Z, Z, rng.normal(size=(n, 20)).astype(np.float32), "scaled_dot", 1.0,
                       device="cuda")  # 2 value chunks
    S = ops.pairwise_scores(Q[:20], K[:60], "tricube", 0.3, device="cuda")
    ops.softmax(S, device="cuda")
    ops.local_polynomial(X, X, X[:, 0], "gaussian", 0.3, degree=2, device="cuda")
    n = 30 if sim else 400
    P = rng.normal(size=(n, 3))
    objective.loo_loss_grad(LEARNED_KINDS["rbf"], P, P, np.zeros(3), rng.normal(size=(n, 2)),
                            np.zeros(n), np.ones(n), device="cuda")
    cuda.synchronize()
    print("sanitizer target finished")
    return 0


def main(argv):
    if not argv:
        sys.exit(__doc__)
    quick = "--quick" in argv
    args = [a for a in argv[1:] if not a.startswith("--")]
    what = argv[0]
    if what == "smoke":
        smoke("--dry" in argv)
        return 0
    if what == "correctness":
        return correctness(quick)
    if what == "bench":
        return bench(float(args[0]) if args else 120.0, args[1] if len(args) > 1 else None,
                     quick)
    if what == "resources":
        return resources(args[0] if args else None, quick)
    if what == "sanitize-target":
        return sanitize_target()
    sys.exit(f"unknown step {what!r}\n\n{__doc__}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

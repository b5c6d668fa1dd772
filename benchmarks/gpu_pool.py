"""Time nwattn's fused GPU pooling against PyTorch on the same card.

Cases (float32, inputs already on the GPU, transfers not timed):

* gaussian Nadaraya-Watson, d = 3 and d = 16, one output, n = m from 1e4 to
  1e6: nwattn against a dense PyTorch baseline (``cdist`` -> softmax ->
  matmul, in chunks of queries that fit in memory);
* scaled_dot attention, d = 64, 64 outputs: nwattn against PyTorch's fused
  ``scaled_dot_product_attention`` and the dense baseline.

Every timing synchronises the GPU before the clock stops; each case is run
once to compile and warm up, then ``--repeat`` times, and the best time is
kept. Throughput is given in (query, key) pairs per second, so cases of
different sizes compare.

Usage::

    python benchmarks/gpu_pool.py                        # the full table
    python benchmarks/gpu_pool.py --sizes 10000 100000   # fewer sizes
    python benchmarks/gpu_pool.py --check                # correctness on small inputs
    python benchmarks/gpu_pool.py --json out.json        # also save the rows

``--check`` compares every implementation with nwattn's CPU path on small
inputs first; with ``NUMBA_ENABLE_CUDASIM=1`` and ``--sizes 40`` it runs on a
machine without a GPU (slowly, and the timings then mean nothing).
"""

import argparse
import json
import math
import time

import numpy as np

from nwattn import ops

GAUSSIAN_DIMS = (3, 16)
ATTENTION_DIM = 64
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
# The dense baseline materialises chunk x m scores; above this many pairs it
# takes minutes and says nothing new.
DENSE_MAX_PAIRS = 10**11
DENSE_CHUNK_BYTES = 2 * 1024**3


def make_case(kernel, n, d, rng):
    """Float32 host inputs and the bandwidth of one case."""
    Q = rng.uniform(size=(n, d)).astype(np.float32)
    K = rng.uniform(size=(n, d)).astype(np.float32)
    if kernel == "gaussian":
        V = np.sin(6.0 * K.sum(axis=1)).astype(np.float32)
        # About the same number of neighbours per query whatever d.
        h = 0.5 * n ** (-1.0 / (d + 4))
    else:
        V = rng.normal(size=(n, d)).astype(np.float32)
        h = 1.0
    return Q, K, V, h


def best_of(fn, sync, repeat):
    """Best wall time of ``fn`` over ``repeat`` runs, and the last result."""
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def timed(fn, sync, repeat):
    """Best wall time of ``fn`` over ``repeat`` runs after one warm-up run."""
    fn()
    sync()
    return best_of(fn, sync, repeat)


def nwattn_runner(kernel, Q, K, V, h):
    """A function running nwattn's fused pool on device copies of the inputs."""
    from numba import cuda

    Qd, Kd, Vd = cuda.to_device(Q), cuda.to_device(K), cuda.to_device(V)

    def run():
        return ops.attention_pool(Qd, Kd, Vd, kernel=kernel, bandwidth=h, device="cuda")

    return run, cuda.synchronize, lambda out: out.copy_to_host()


def torch_io(dev, values_1d):
    """``(sync, to_host)`` of a PyTorch runner on device ``dev``.

    ``to_host`` brings a result back as float32 or float64 NumPy (bfloat16
    results as float32), one-dimensional for one-dimensional values.
    """
    import torch

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def to_host(out):
        if out.dtype == torch.bfloat16:
            out = out.float()
        out = out.cpu().numpy()
        return out[:, 0] if values_1d else out

    return sync, to_host


def torch_runners(kernel, Q, K, V, h, device="cuda"):
    """PyTorch's fused attention (scaled_dot only) and the dense baseline, or {}.

    ``device="cpu"`` runs the same code on the CPU, to check it where there is
    no GPU.
    """
    try:
        import torch
    except ImportError:
        return {}
    if device == "cuda" and not torch.cuda.is_available():
        return {}
    dev = torch.device(device)
    q, k = torch.from_numpy(Q).to(dev), torch.from_numpy(K).to(dev)
    v = torch.from_numpy(V.reshape(V.shape[0], -1)).to(dev)
    n, d = Q.shape
    m = K.shape[0]
    chunk = max(1, min(n, DENSE_CHUNK_BYTES // (4 * m)))

    ks = k / h

    def scores(qc):
        if kernel == "gaussian":
            return -0.5 * torch.cdist(qc / h, ks).square()
        return (qc @ k.T) / (h * math.sqrt(d))

    def dense():
        out = torch.empty((n, v.shape[1]), device=dev, dtype=v.dtype)
        for i0 in range(0, n, chunk):
            out[i0:i0 + chunk] = torch.softmax(scores(q[i0:i0 + chunk]), dim=1) @ v
        return out

    sync, to_host = torch_io(dev, V.ndim == 1)
    runners = {}
    if n * m <= DENSE_MAX_PAIRS:
        runners["torch dense"] = (dense, sync, to_host)
    if kernel == "scaled_dot":
        from torch.nn.functional import scaled_dot_product_attention

        q4, k4, v4 = q[None, None] / h, k[None, None], v[None, None]

        def fused():
            return scaled_dot_product_attention(q4, k4, v4)[0, 0]

        runners["torch sdpa"] = (fused, sync, to_host)
    return runners


def cases(sizes):
    for d in GAUSSIAN_DIMS:
        for n in sizes:
            yield "gaussian", n, d
    for n in sizes:
        yield "scaled_dot", n, ATTENTION_DIM


def device_name():
    from numba import cuda

    name = getattr(cuda.get_current_device(), "name", "CUDA simulator")
    return name.decode() if isinstance(name, bytes) else str(name)


def check(rng):
    """Every implementation against nwattn's CPU path, on small inputs."""
    for kernel, d in (("gaussian", 3), ("gaussian", 16), ("scaled_dot", ATTENTION_DIM)):
        Q, K, V, h = make_case(kernel, 40, d, rng)
        want = ops.attention_pool(Q, K, V, kernel=kernel, bandwidth=h)
        impls = {"nwattn cuda": nwattn_runner(kernel, Q, K, V, h)}
        impls.update(torch_runners(kernel, Q, K, V, h))
        for name, (run, sync, to_host) in impls.items():
            got = to_host(run())
            sync()
            err = float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))
            status = "ok" if err < 1e-3 else "MISMATCH"
            print(f"check {kernel:10s} d={d:<3d} {name:12s} rel. error {err:.1e} {status}")
            if err >= 1e-3:
                raise SystemExit(f"{name} disagrees with the CPU path on {kernel}, d={d}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES),
                        help="values of n = m")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--check", action="store_true",
                        help="compare with the CPU path on small inputs first")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    if args.check:
        check(rng)
    name = device_name()
    print(f"device: {name}")
    print(f"{'kernel':10s} {'d':>3s} {'n = m':>9s} {'implementation':14s} "
          f"{'seconds':>9s} {'pairs/s':>9s}")
    rows = []
    for kernel, n, d in cases(args.sizes):
        Q, K, V, h = make_case(kernel, n, d, rng)
        impls = {"nwattn": nwattn_runner(kernel, Q, K, V, h)}
        impls.update(torch_runners(kernel, Q, K, V, h))
        for impl, (run, sync, _) in impls.items():
            seconds, _ = timed(run, sync, args.repeat)
            rate = n * n / seconds
            rows.append({"device": name, "kernel": kernel, "d": d, "n": n, "m": n,
                         "implementation": impl, "seconds": seconds, "pairs_per_s": rate})
            print(f"{kernel:10s} {d:3d} {n:9d} {impl:14s} {seconds:9.4f} {rate:9.2e}",
                  flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()

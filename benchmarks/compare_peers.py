"""nwattn against other ways of computing attention pooling on the CPU.

Every implementation runs in this process, on the same data, one after the
other; the ratios between them are what to read, because absolute times on
a shared machine drift. After one warm-up call each (which absorbs
compilation: Numba's, KeOps'), the implementations are timed in
``--repeat`` interleaved rounds and each keeps its best time.

Cases (``--quick`` divides the sizes by 10):

* gaussian pooling, float64, n = m = 20 000, d = 8, p = 1;
* the same in float32;
* scaled dot-product attention, float32, n = m = 8 000, d = 64, p = 64.

Peers:

* chunked NumPy/SciPy: scores of a chunk of queries by one matrix product,
  ``scipy.special.softmax``, a second matrix product;
* PyTorch, ``torch.cdist`` + ``softmax`` + ``matmul`` over chunks of queries;
* PyTorch, ``scaled_dot_product_attention``; the gaussian is written as
  dot-product attention with the per-key bias ``-||k||^2 / (2 h^2)``;
* KeOps (``pykeops``) on the CPU, ``LazyTensor.sumsoftmaxweight``;
* statsmodels ``KernelReg`` (local constant, fixed bandwidth), on a subset
  of the queries and keys because it is quadratic in memory and slow.

A peer that is not installed, or fails, is skipped with a message. The
error column is the largest absolute difference, over the first
``--check`` queries, from a float64 reference that computes the distances
directly (no expansion) and the softmax in float64.

Usage::

    python benchmarks/compare_peers.py [--quick] [--repeat 3] \
        [--plot docs/_static/peers.png] [--rst FILE]
"""

import argparse
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

from nwattn.ops import attention_pool

CHUNK = 2048


# ----------------------------------------------------------------------------
# The machine


def machine_description():
    """One line describing the CPU, its cores and the software versions."""
    cpu = platform.processor() or platform.machine()
    flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():  # Linux only; elsewhere the platform module's name is all we have
        text = cpuinfo.read_text()
        names = [line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
        flags = ", AVX-512" if "avx512f" in text else (", AVX2" if "avx2" in text else "")
    import numba

    return (f"{cpu}{flags}, {os.cpu_count()} logical cores, {platform.system()}; "
            f"Python {platform.python_version()}, NumPy {np.__version__}, "
            f"Numba {numba.__version__}")


# ----------------------------------------------------------------------------
# Problems and the float64 reference


def make_problem(case, quick, seed=0):
    """Inputs of one case as float64 arrays, plus its bandwidth."""
    rng = np.random.default_rng(seed)
    n, d, p = case["n"], case["d"], case["p"]
    if quick:
        n //= 10
    Q = rng.normal(size=(n, d))
    K = rng.normal(size=(n, d))
    V = rng.normal(size=(n, p))
    return Q, K, V


def reference(Q, K, V, case):
    """float64 pooling of the queries ``Q`` computed the direct way."""
    if case["kernel"] == "gaussian":
        h = case["h"]
        S = -0.5 * (((Q[:, None, :] - K[None, :, :]) / h) ** 2).sum(axis=2)
    else:
        S = (Q @ K.T) / math.sqrt(Q.shape[1])
    S -= S.max(axis=1, keepdims=True)
    W = np.exp(S)
    return (W @ V) / W.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------
# The implementations. Each takes the case's arrays (already in the case's
# dtype, in the library's own format) and returns an (n, p) array.


def run_nwattn(case):
    def prepare(Q, K, V):
        return Q, K, V

    def call(Q, K, V):
        return attention_pool(Q, K, V, case["kernel"], case["h"])

    return prepare, call


def run_numpy(case):
    from scipy.special import softmax

    def prepare(Q, K, V):
        return Q, K, V

    def call(Q, K, V):
        out = np.empty((Q.shape[0], V.shape[1]), dtype=V.dtype)
        if case["kernel"] == "gaussian":
            inv = 1.0 / case["h"]
            Qs, Ks = Q * inv, K * inv
            bias = -0.5 * np.einsum("ij,ij->i", Ks, Ks)
            for i0 in range(0, Q.shape[0], CHUNK):
                # ||q||^2 is constant along a row and cancels in the softmax
                S = Qs[i0:i0 + CHUNK] @ Ks.T + bias
                out[i0:i0 + CHUNK] = softmax(S, axis=1) @ V
        else:
            scale = 1.0 / math.sqrt(Q.shape[1])
            for i0 in range(0, Q.shape[0], CHUNK):
                S = (Q[i0:i0 + CHUNK] @ K.T) * scale
                out[i0:i0 + CHUNK] = softmax(S, axis=1) @ V
        return out

    return prepare, call


def run_torch_cdist(case):
    import torch

    def prepare(Q, K, V):
        return torch.from_numpy(Q), torch.from_numpy(K), torch.from_numpy(V)

    def call(Q, K, V):
        out = torch.empty((Q.shape[0], V.shape[1]), dtype=V.dtype)
        with torch.no_grad():
            if case["kernel"] == "gaussian":
                c = -0.5 / case["h"] ** 2
                for i0 in range(0, Q.shape[0], CHUNK):
                    D = torch.cdist(Q[i0:i0 + CHUNK], K)
                    out[i0:i0 + CHUNK] = torch.softmax(D.square_().mul_(c), dim=1) @ V
            else:
                scale = 1.0 / math.sqrt(Q.shape[1])
                for i0 in range(0, Q.shape[0], CHUNK):
                    S = (Q[i0:i0 + CHUNK] @ K.T).mul_(scale)
                    out[i0:i0 + CHUNK] = torch.softmax(S, dim=1) @ V
        return out.numpy()

    return prepare, call


def run_torch_sdpa(case):
    import torch
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    def prepare(Q, K, V):
        Qt, Kt, Vt = torch.from_numpy(Q), torch.from_numpy(K), torch.from_numpy(V)
        if case["kernel"] == "gaussian":
            inv = 1.0 / case["h"]
            Qt, Kt = Qt * inv, Kt * inv
            bias = (-0.5 * (Kt * Kt).sum(dim=1))[None, :]
        else:
            bias = None
        return Qt, Kt, Vt, bias

    def call(Q, K, V, bias):
        scale = 1.0 if case["kernel"] == "gaussian" else 1.0 / math.sqrt(Q.shape[1])
        with torch.no_grad():
            if bias is None:
                # the whole problem in one call: SDPA tiles it internally
                return sdpa(Q[None], K[None], V[None], scale=scale)[0].numpy()
            out = torch.empty((Q.shape[0], V.shape[1]), dtype=V.dtype)
            for i0 in range(0, Q.shape[0], CHUNK):
                q = Q[i0:i0 + CHUNK]
                mask = bias.expand(q.shape[0], -1)
                out[i0:i0 + CHUNK] = sdpa(q[None], K[None], V[None], attn_mask=mask[None],
                                          scale=scale)[0]
            return out.numpy()

    return prepare, call


def run_keops(case):
    from pykeops.numpy import LazyTensor

    def prepare(Q, K, V):
        if case["kernel"] == "gaussian":
            inv = 1.0 / case["h"]
            Q, K = Q * inv, K * inv
        return (np.ascontiguousarray(Q), np.ascontiguousarray(K), np.ascontiguousarray(V))

    def call(Q, K, V):
        q = LazyTensor(Q[:, None, :])
        k = LazyTensor(K[None, :, :])
        v = LazyTensor(V[None, :, :])
        if case["kernel"] == "gaussian":
            S = -0.5 * ((q - k) ** 2).sum(-1)
        else:
            S = (q | k) * (1.0 / math.sqrt(Q.shape[1]))
        return S.sumsoftmaxweight(v, axis=1, backend="CPU")

    return prepare, call


class PeerCannot(Exception):
    """A peer has no way to compute a case (its row is skipped with the reason)."""


def run_statsmodels(case):
    from statsmodels.nonparametric.kernel_regression import KernelReg

    if case["kernel"] != "gaussian":
        raise PeerCannot("KernelReg has no dot-product score")

    def prepare(Q, K, V):
        return Q, K, V

    def call(Q, K, V):
        import warnings

        d = K.shape[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # pandas, inside statsmodels
            model = KernelReg(V[:, 0], K, var_type="c" * d, reg_type="lc",
                              bw=np.full(d, case["h"]))
            mean, _ = model.fit(Q)
        return mean[:, None]

    return prepare, call


PEERS = [
    ("nwattn", run_nwattn, None),
    ("NumPy/SciPy, chunked", run_numpy, None),
    ("PyTorch cdist+softmax", run_torch_cdist, None),
    ("PyTorch SDPA", run_torch_sdpa, None),
    ("KeOps (CPU)", run_keops, None),
    # statsmodels loops over the queries in Python: a subset keeps it to seconds
    ("statsmodels KernelReg", run_statsmodels, 1000),
]

CASES = [
    dict(name="gaussian float64", kernel="gaussian", dtype="float64", n=20_000, d=8, p=1,
         h=0.5),
    dict(name="gaussian float32", kernel="gaussian", dtype="float32", n=20_000, d=8, p=1,
         h=0.5),
    dict(name="scaled_dot float32", kernel="scaled_dot", dtype="float32", n=8_000, d=64,
         p=64, h=1.0),
]


def run_case(case, args):
    """Time every peer on one case.

    After one warm-up call each (compilation, caches, thread pools), the
    peers are timed in rounds, one call each per round, and each keeps its
    best time: a slow spell of a shared machine then hits every peer alike
    instead of whichever happened to run during it.
    """
    Q64, K64, V64 = make_problem(case, args.quick)
    n_check = min(args.check, Q64.shape[0])
    dt = np.dtype(case["dtype"])
    ready = []
    for name, factory, limit in PEERS:
        Q, K, V = (a.astype(dt) for a in (Q64, K64, V64))
        if limit is not None and not args.quick:
            Q, K, V = Q[:limit], K[:limit], V[:limit]
        try:
            prepare, call = factory(case)
            prepared = prepare(Q, K, V)
            out = call(*prepared)
        except ImportError as exc:
            print(f"  skipped {name}: not installed ({exc})")
            continue
        except PeerCannot as exc:
            print(f"  skipped {name}: {exc}")
            continue
        except Exception as exc:  # a peer that cannot run here must not stop the others
            print(f"  skipped {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        out = np.asarray(out, dtype=np.float64).reshape(Q.shape[0], -1)
        ref = reference(Q64[:n_check], K64[:Q.shape[0]], V64[:Q.shape[0]], case)
        err = float(np.max(np.abs(out[:n_check] - ref)))
        ready.append(dict(case=case["name"], peer=name, n=Q.shape[0], error=err,
                          seconds=math.inf, run=lambda c=call, a=prepared: c(*a)))
    for _ in range(args.repeat):
        for r in ready:
            t0 = time.perf_counter()
            r["run"]()
            r["seconds"] = min(r["seconds"], time.perf_counter() - t0)
    for r in ready:
        del r["run"]
        r["rate"] = r["n"] ** 2 / r["seconds"]
        print(f"  {r['peer']:<24}{r['n']:>7} {r['seconds']:>9.3f} s {r['rate'] / 1e6:>10.1f}"
              f" Mpairs/s  err {r['error']:.1e}", flush=True)
    ours = next((r["rate"] for r in ready if r["peer"] == "nwattn"), math.nan)
    for r in ready:
        r["ratio"] = ours / r["rate"]
    return ready


def float32_speedup(args, rounds=5):
    """nwattn's float32 against its float64 on the gaussian case, interleaved."""
    case = CASES[0]
    Q, K, V = make_problem(case, args.quick)
    inputs = {dt: tuple(a.astype(dt) for a in (Q, K, V)) for dt in ("float64", "float32")}
    best = {}
    for dt, arrays in inputs.items():
        attention_pool(*arrays, bandwidth=case["h"])
        best[dt] = math.inf
    for _ in range(rounds):
        for dt, arrays in inputs.items():
            t0 = time.perf_counter()
            attention_pool(*arrays, bandwidth=case["h"])
            best[dt] = min(best[dt], time.perf_counter() - t0)
    return best["float64"] / best["float32"], best


def format_table(rows, rst=False):
    head = ("case", "implementation", "n = m", "Mpairs/s", "nwattn is x faster",
            "max error")
    body = [(r["case"], r["peer"], f"{r['n']:,}", f"{r['rate'] / 1e6:.1f}",
             f"{r['ratio']:.2f}", f"{r['error']:.1e}") for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    if rst:
        rule = "  ".join("=" * w for w in widths)
        lines = [rule, "  ".join(h.ljust(w) for h, w in zip(head, widths)), rule]
        lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
        return "\n".join(lines + [rule])
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def plot(rows, machine, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(r["case"] for r in rows))
    peers = list(dict.fromkeys(r["peer"] for r in rows))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(peers)
    for k, peer in enumerate(peers):
        xs, ys = [], []
        for c, case in enumerate(cases):
            for r in rows:
                if r["case"] == case and r["peer"] == peer:
                    xs.append(c + (k - (len(peers) - 1) / 2) * width)
                    ys.append(r["rate"])
        ax.bar(xs, ys, width, label=peer)
    ax.set_yscale("log")
    ax.set_xticks(range(len(cases)), cases)
    ax.set_ylabel("pairs per second (higher is better)")
    ax.set_title("Attention pooling on the CPU", fontsize=11)
    ax.legend(fontsize=8, ncol=2)
    fig.text(0.01, 0.01, machine, fontsize=6.5)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes divided by 10")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--check", type=int, default=256,
                        help="queries compared with the float64 reference")
    parser.add_argument("--cases", default=None,
                        help="comma-separated subset of: " + ", ".join(c["name"] for c in CASES))
    parser.add_argument("--plot", default=None, help="write the plot to this PNG file")
    parser.add_argument("--rst", default=None, help="write the table as reST to this file")
    args = parser.parse_args(argv)

    machine = machine_description()
    print("machine:", machine)
    try:
        import torch

        print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
    except ImportError:
        print("PyTorch not installed: its rows are skipped")
    wanted = None if args.cases is None else {c.strip() for c in args.cases.split(",")}
    rows = []
    for case in CASES:
        if wanted is not None and case["name"] not in wanted:
            continue
        print(f"{case['name']}: n = m = {case['n'] // (10 if args.quick else 1):,}, "
              f"d = {case['d']}, p = {case['p']}", flush=True)
        rows += run_case(case, args)
    if wanted is None or {"gaussian float64", "gaussian float32"} <= wanted:
        ratio, best = float32_speedup(args)
        print(f"nwattn gaussian float32 vs float64, interleaved: {best['float32']:.3f} s vs "
              f"{best['float64']:.3f} s, {ratio:.2f}x")
    print()
    print(format_table(rows))
    if args.rst:
        with open(args.rst, "w") as f:
            f.write(format_table(rows, rst=True) + "\n")
    if args.plot:
        plot(rows, machine, args.plot)
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()

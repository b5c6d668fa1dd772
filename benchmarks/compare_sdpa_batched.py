"""nwattn against PyTorch's scaled_dot_product_attention on a model's worth of heads.

Attention arrays as a transformer holds them: float32 queries, keys and
values of shape (batch, heads, tokens, features), by default (4, 8, 1024,
64), pooled with the scaled dot-product score, without and with causal
order. Both libraries run in this process on the same data, PyTorch with
as many threads as Numba (``torch.set_num_threads``), timed in
interleaved rounds after a warm-up call each (which absorbs Numba's
compilation); each keeps its median. The ratios between them are what to
read: absolute times on a shared machine drift. nwattn runs its matrix
products with BLAS on one thread per worker (``nwattn._parallel.serial_blas``);
so does the line that times them alone.

Also checked on the way: the largest difference between the two outputs
(float32 rounding), and the causal time as a share of the full one. Two
more lines time the two matrix products of attention alone, without the
softmax: PyTorch's (``Q K^T`` and ``W V`` of every head, batched) and the
ones nwattn's matrix body makes (each block of ``GEMM_QUERY_BLOCK`` queries
against each tile of ``KEY_TILE`` keys, through NumPy's ``dot`` in Numba,
i.e. SciPy's BLAS, on as many threads): a floor under each library's time
that no softmax can lower.

Usage::

    python benchmarks/compare_sdpa_batched.py [--shape 4,8,1024,64] [--repeat 7]
"""

import argparse
import sys
from pathlib import Path

import numba
import numpy as np

from nwattn import _config
from nwattn._parallel import serial_blas
from nwattn.ops import attention_pool

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved_medians  # noqa: E402
from compare_peers import machine_description  # noqa: E402


@numba.njit(parallel=True)
def _tile_products(Q, K, V, query_block, key_tile):
    """The two products per (query block, key tile) of nwattn's matrix body, nothing else."""
    items, n, d = Q.shape
    m, p = K.shape[1], V.shape[2]
    blocks = -(-n // query_block)
    out = np.zeros((items, n, p), dtype=Q.dtype)
    for task in numba.prange(items * blocks):
        it, b = task // blocks, task % blocks
        q0, q1 = b * query_block, min(n, (b + 1) * query_block)
        buf = np.empty((q1 - q0) * key_tile, dtype=Q.dtype)
        acc = np.empty((q1 - q0, p), dtype=Q.dtype)
        for k0 in range(0, m, key_tile):
            k1 = min(m, k0 + key_tile)
            Wt = buf[:(q1 - q0) * (k1 - k0)].reshape((q1 - q0, k1 - k0))
            np.dot(Q[it, q0:q1], K[it, k0:k1].T, Wt)
            np.dot(Wt, V[it, k0:k1], acc)
            out[it, q0:q1] += acc
    return out


def _products(Q, K, V):
    """:func:`_tile_products` on nwattn's tiles, BLAS on one thread as nwattn runs it."""
    with serial_blas():
        return _tile_products(Q, K, V, _config.GEMM_QUERY_BLOCK, _config.KEY_TILE)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="4,8,1024,64",
                        help="batch,heads,tokens,features (default 4,8,1024,64)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    B, H, n, d = (int(x) for x in args.shape.split(","))

    import torch
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    threads = numba.get_num_threads()
    torch.set_num_threads(threads)
    print("machine:", machine_description())
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"Numba {threads} threads")
    print(f"shape (batch, heads, tokens, features) = ({B}, {H}, {n}, {d}), float32")

    rng = np.random.default_rng(0)
    Q, K, V = (rng.normal(size=(B, H, n, d)).astype(np.float32) for _ in range(3))
    Qt, Kt, Vt = (torch.from_numpy(a) for a in (Q, K, V))
    Q3, K3, V3 = (a.reshape(B * H, n, d) for a in (Q, K, V))

    def torch_call(causal):
        with torch.no_grad():
            return sdpa(Qt, Kt, Vt, is_causal=causal).numpy()

    calls = {
        "nwattn": lambda: attention_pool(Q, K, V, "scaled_dot"),
        "nwattn causal": lambda: attention_pool(Q, K, V, "scaled_dot", is_causal=True),
        "PyTorch SDPA": lambda: torch_call(False),
        "PyTorch SDPA causal": lambda: torch_call(True),
        "PyTorch products": lambda: torch.matmul(torch.matmul(Qt, Kt.transpose(-1, -2)), Vt),
        "nwattn's products": lambda: _products(Q3, K3, V3),
    }
    for causal in (False, True):
        ours = calls["nwattn causal" if causal else "nwattn"]()
        err = float(np.max(np.abs(ours - torch_call(causal))))
        print(f"largest difference from SDPA{' (causal)' if causal else ''}: {err:.1e}")
    medians, _ = interleaved_medians(calls, args.repeat)
    pairs = B * H * n * n
    print()
    print(f"{'implementation':<22}{'median s':>10}{'Gpairs/s':>10}")
    for name, t in medians.items():
        print(f"{name:<22}{t:>10.4f}{pairs / t / 1e9:>10.2f}")
    print()
    full = medians["PyTorch SDPA"] / medians["nwattn"]
    causal = medians["PyTorch SDPA causal"] / medians["nwattn causal"]
    share = medians["nwattn causal"] / medians["nwattn"]
    print(f"nwattn is {full:.2f}x as fast as SDPA without causal order, {causal:.2f}x with it")
    print(f"nwattn causal / non-causal time: {share:.2f}")
    ours = medians["nwattn"] / medians["nwattn's products"]
    theirs = medians["PyTorch SDPA"] / medians["PyTorch products"]
    print(f"time over the products alone: nwattn {ours:.2f}, SDPA {theirs:.2f}")


if __name__ == "__main__":
    main()

"""The GPU path against the CPU path and the float64 NumPy reference.

On a machine with an NVIDIA GPU these tests run on it. Without one they run
on numba-cuda's CUDA simulator, which executes every GPU thread as Python:
the simulator has to be chosen before ``numba.cuda`` is first imported, which
is why this module sets ``NUMBA_ENABLE_CUDASIM`` at the top. The simulator is
slow, so the inputs are tiny and the launch sizes are lowered (fixture
``small_launch``) so that they still span several blocks, key tiles, key
splits and value-column chunks, none of them full.
"""

import os
import subprocess
import sys
import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nwattn._device import driver_problem

if "numba.cuda" not in sys.modules and driver_problem() is not None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

from nwattn import _config, ops  # noqa: E402
from nwattn._device import cuda_problem  # noqa: E402
from nwattn.exceptions import EmptyNeighborhoodWarning  # noqa: E402

from . import naive  # noqa: E402
from .test_properties import problems  # noqa: E402

_PROBLEM = cuda_problem()
if _PROBLEM is not None and "numba.cuda" in sys.modules:
    _PROBLEM += " (numba.cuda was imported before this module could enable the simulator)"

# The tests of the kernels need a GPU or the simulator; the tests of the
# error messages and of the CPU path's independence run everywhere.
needs_gpu = pytest.mark.skipif(_PROBLEM is not None, reason=f"GPU path unavailable: {_PROBLEM}")

TOL = {np.float64: 1e-10, np.float32: 1e-4}
DTYPES = [np.float64, np.float32]


@pytest.fixture
def cuda():
    from numba import cuda

    return cuda


@pytest.fixture
def small_launch(monkeypatch):
    """Launch sizes that make tiny inputs span several of everything.

    With 11 queries and 17 keys: 3 blocks of 4 queries, 2 threads of 2
    queries each (the last block partial), 3 key splits of 6 keys, 2 tiles
    of 3 keys per split, value columns in chunks of 2.
    """
    for name, value in (("CUDA_THREADS_PER_BLOCK", 2), ("CUDA_QUERIES_PER_THREAD", 2),
                        ("CUDA_KEY_TILE", 3),
                        ("CUDA_TARGET_BLOCKS", 16), ("CUDA_MIN_SPLIT_KEYS", 7),
                        ("CUDA_VALUE_CHUNK", 2), ("CUDA_SIMPLE_THREADS", 8)):
        monkeypatch.setattr(_config, name, value)
    return _config


def make_data(rng, n=11, m=17, d=3, p=3, dtype=np.float64, values_1d=False):
    Q = rng.normal(size=(n, d)).astype(dtype)
    K = rng.normal(size=(m, d)).astype(dtype)
    V = rng.normal(loc=3.0, size=(m,) if values_1d else (m, p)).astype(dtype)
    return Q, K, V


def bandwidth_for(kernel, d, rng):
    base = 1.8 if kernel in naive.COMPACT_KERNELS else 0.7
    return base * rng.uniform(0.6, 1.4, size=d)


@needs_gpu
@pytest.mark.parametrize("kernel", naive.ALL_KERNELS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pairwise_scores(rng, small_launch, kernel, dtype):
    Q, K, _ = make_data(rng, n=5, m=13, dtype=dtype)
    h = bandwidth_for(kernel, Q.shape[1], rng)
    got = ops.pairwise_scores(Q, K, kernel, h, device="cuda")
    assert isinstance(got, np.ndarray) and got.dtype == dtype
    want = naive.scores(Q, K, kernel, h)
    assert np.array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    assert naive.relative_error(got[finite], want[finite]) <= TOL[dtype]
    cpu = ops.pairwise_scores(Q, K, kernel, h)
    np.testing.assert_allclose(got[finite], cpu[finite], rtol=TOL[dtype], atol=TOL[dtype])


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_with_empty_rows(rng, small_launch, dtype):
    S = rng.normal(scale=30.0, size=(10, 7)).astype(dtype)
    S[2] = -np.inf
    S[5, ::2] = -np.inf
    got = ops.softmax(S, device="cuda")
    assert got.dtype == dtype
    assert naive.relative_error(got, naive.softmax(S)) <= TOL[dtype]
    np.testing.assert_allclose(ops.softmax(S.T, axis=0, device="cuda"), got.T,
                               rtol=TOL[dtype])


@needs_gpu
@pytest.mark.parametrize("kernel", naive.ALL_KERNELS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_with_weights_std_and_splits(rng, small_launch, kernel, dtype):
    Q, K, V = make_data(rng, dtype=dtype)
    h = bandwidth_for(kernel, Q.shape[1], rng)
    w = rng.uniform(0.1, 2.0, size=K.shape[0])
    w[::5] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        got, got_std = ops.attention_pool(Q, K, V, kernel, h, key_weight=w, return_std=True,
                                          device="cuda")
        cpu, cpu_std = ops.attention_pool(Q, K, V, kernel, h, key_weight=w, return_std=True)
    want, want_std = naive.pool(Q, K, V, kernel, h, key_weight=w, return_std=True)
    assert got.dtype == dtype and got.shape == want.shape
    assert naive.relative_error(got, want) <= TOL[dtype]
    assert naive.relative_error(got_std, want_std) <= 10 * TOL[dtype] * np.abs(V).max()
    assert naive.relative_error(got, cpu) <= TOL[dtype]
    assert naive.relative_error(got_std, cpu_std) <= 10 * TOL[dtype] * np.abs(V).max()


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
def test_leave_one_out_and_empty_neighbourhoods(rng, small_launch, dtype, kernel):
    X = rng.uniform(size=(13, 2)).astype(dtype)
    # Two isolated points: nothing left once they leave themselves out.
    X[-2] += 50.0
    X[-1] -= 50.0
    y = rng.normal(size=13).astype(dtype)
    if kernel == "epanechnikov":
        with pytest.warns(EmptyNeighborhoodWarning, match="2 of 13"):
            got = ops.attention_pool(X, X, y, kernel, 0.8, exclude_self=True, device="cuda")
        assert np.isnan(got[-2:]).all() and np.isfinite(got[:-2]).all()
    else:
        got = ops.attention_pool(X, X, y, kernel, 0.8, exclude_self=True, device="cuda")
    want = naive.pool(X, X, y, kernel, 0.8, exclude_self=True)
    assert naive.relative_error(got[:-2], want[:-2]) <= TOL[dtype]
    # The isolated points see keys ~60 bandwidths away: scores near -2000,
    # whose float32 rounding (eps * |s| ~ 1e-4) moves the weights by as much.
    far_tol = 2e-3 if dtype == np.float32 else TOL[dtype]
    assert naive.relative_error(got[-2:], want[-2:]) <= far_tol


@needs_gpu
def test_states_merge_across_shards_and_splits(rng, small_launch):
    X = rng.normal(size=(15, 3))
    y = rng.normal(size=(15, 2))
    cuts = [0, 4, 11, 15]
    states = [ops.attention_pool_state(X, X[a:b], y[a:b], "tricube", 4.0, exclude_self=True,
                                       key_offset=a, return_std=True, device="cuda")
              for a, b in zip(cuts[:-1], cuts[1:])]
    merged = states[0]
    for st in states[1:]:
        merged = ops.merge_states(merged, st)
    pred, std = ops.finalize_state(merged, return_std=True)
    want, want_std = naive.pool(X, X, y, "tricube", 4.0, exclude_self=True, return_std=True)
    assert naive.relative_error(pred, want) <= 1e-10
    assert naive.relative_error(std, want_std) <= 1e-9
    cpu = ops.attention_pool_state(X, X, y, "tricube", 4.0, exclude_self=True)
    gpu = ops.attention_pool_state(X, X, y, "tricube", 4.0, exclude_self=True, device="cuda")
    assert naive.relative_error(ops.finalize_state(gpu), ops.finalize_state(cpu)) <= 1e-12


@needs_gpu
def test_split_and_unsplit_launches_agree(rng, small_launch, monkeypatch):
    # Few queries, many keys: the keys are split and the partial states merged.
    Q, K, V = make_data(rng, n=3, m=29, p=1)
    split = ops.attention_pool(Q, K, V, bandwidth=0.5, device="cuda")
    monkeypatch.setattr(_config, "CUDA_TARGET_BLOCKS", 1)
    whole = ops.attention_pool(Q, K, V, bandwidth=0.5, device="cuda")
    assert naive.relative_error(split, whole) <= 1e-12
    assert naive.relative_error(whole, naive.pool(Q, K, V, "gaussian", 0.5)) <= 1e-10


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_device_arrays_stay_on_the_device(rng, small_launch, cuda, dtype):
    values_1d = dtype == np.float32
    Q, K, V = make_data(rng, n=6, m=9, p=3, dtype=dtype, values_1d=values_1d)
    Qd, Kd, Vd = cuda.to_device(Q), cuda.to_device(K), cuda.to_device(V)
    pred, std = ops.attention_pool(Qd, Kd, Vd, "gaussian", 0.8, return_std=True)
    for out in (pred, std):
        assert cuda.devicearray.is_cuda_ndarray(out)
        assert out.shape == ((6,) if values_1d else (6, 3))
    want, want_std = naive.pool(Q, K, V, "gaussian", 0.8, return_std=True)
    assert naive.relative_error(pred.copy_to_host(), want) <= TOL[dtype]
    assert naive.relative_error(std.copy_to_host(), want_std) <= 10 * TOL[dtype] * 4
    S = ops.pairwise_scores(Qd, Kd, "scaled_dot", 2.0)
    assert cuda.devicearray.is_cuda_ndarray(S)
    W = ops.softmax(S)
    assert cuda.devicearray.is_cuda_ndarray(W)
    want_w = naive.softmax(naive.scores(Q, K, "scaled_dot", 2.0))
    assert naive.relative_error(W.copy_to_host(), want_w) <= TOL[dtype]
    idx, wts = ops.top_k_weights(Qd, Kd, "gaussian", 0.8, k=3)
    cpu_idx, cpu_wts = ops.top_k_weights(Q, K, "gaussian", 0.8, k=3)
    np.testing.assert_array_equal(idx.copy_to_host(), cpu_idx)
    assert naive.relative_error(wts.copy_to_host(), cpu_wts) <= TOL[dtype]
    state = ops.attention_pool_state(Qd, Kd, Vd, "gaussian", 0.8, device="cuda")
    assert naive.relative_error(ops.finalize_state(state), want) <= TOL[dtype]


@needs_gpu
@pytest.mark.parametrize("dtype, threads", [(np.float32, 8), (np.float64, 3)])
def test_top_k_selection_on_the_gpu_equals_the_cpus(rng, small_launch, monkeypatch, threads,
                                                    dtype):
    # The selection runs on the GPU (blocks of 3 threads: a reduction tree
    # that is not a power of two). Boxcar weights of keys on a grid tie
    # (exactly, on both devices), and come in index order on both; k = 12
    # keeps every key (which of the keys tied for a last slot are kept is
    # not specified on the CPU), k = 14 is more than the 12 keys.
    monkeypatch.setattr(_config, "CUDA_SIMPLE_THREADS", threads)
    grid = rng.integers(0, 3, size=(12, 2)).astype(dtype)
    for exclude, kernel, k in ((True, "boxcar", 12), (False, "gaussian", 14)):
        K = grid if kernel == "boxcar" else rng.normal(size=(12, 2)).astype(dtype)
        Q = K if exclude else rng.normal(size=(4, 2)).astype(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
            got = ops.top_k_weights(Q, K, kernel, 1.2, k=k, exclude_self=exclude,
                                    device="cuda")
            want = ops.top_k_weights(Q, K, kernel, 1.2, k=k, exclude_self=exclude)
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1].dtype == want[1].dtype
        np.testing.assert_allclose(got[1], want[1], rtol=TOL[dtype], atol=0)


@needs_gpu
def test_arrays_on_another_gpu_are_refused(rng, monkeypatch):
    from types import SimpleNamespace

    from numba import cuda

    from nwattn._cuda import launch

    Q, K, V = make_data(rng)
    Qd, Kd, Vd = (cuda.to_device(a) for a in (Q, K, V))
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        # on a GPU the driver names the array's own device
        assert launch.device_ordinal(Qd) == cuda.get_current_device().id
    else:
        assert launch.device_ordinal(Qd) is None  # the simulator cannot tell
    monkeypatch.setattr(launch, "device_ordinal", lambda xd: 1)
    monkeypatch.setattr(launch.cuda, "get_current_device", lambda: SimpleNamespace(id=0))
    with pytest.raises(ValueError, match=r"Q lives on GPU 1 but the current GPU is 0.*gpus\[1\]"):
        ops.attention_pool(Qd, Kd, Vd, "gaussian", 0.8)


@needs_gpu
def test_top_k_weights_on_the_gpu(rng, small_launch):
    X = rng.uniform(size=(12, 2))
    X[-1] += 50.0  # an isolated point: an empty neighbourhood once it leaves itself out
    with pytest.warns(EmptyNeighborhoodWarning, match="1 of 12"):
        got = ops.top_k_weights(X, X, "tricube", 1.5, k=4, exclude_self=True, device="cuda")
    with pytest.warns(EmptyNeighborhoodWarning, match="1 of 12"):
        want = ops.top_k_weights(X, X, "tricube", 1.5, k=4, exclude_self=True)
    assert np.isnan(got[1][-1]).all()
    np.testing.assert_array_equal(got[0], want[0])
    assert naive.relative_error(got[1], want[1]) <= 1e-12


@needs_gpu
def test_device_input_validation(rng, small_launch, cuda):
    Q, K, V = make_data(rng, n=4, m=5, values_1d=True)
    bad = Q.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="Q contains NaN"):
        ops.attention_pool(cuda.to_device(bad), cuda.to_device(K), cuda.to_device(V))
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.pairwise_scores(cuda.to_device(Q.astype(np.int64)), cuda.to_device(K))
    with pytest.raises(TypeError, match="same dtype"):
        ops.pairwise_scores(cuda.to_device(Q.astype(np.float32)), cuda.to_device(K))
    with pytest.raises(ValueError, match="same number of rows"):
        ops.attention_pool(cuda.to_device(Q), cuda.to_device(K), cuda.to_device(V[:3]))
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        ops.softmax(cuda.to_device(np.array([[0.0, np.inf]])))


@needs_gpu
def test_auto_stays_on_the_cpu_for_small_problems(rng, monkeypatch):
    from nwattn import _device
    from nwattn._device import resolve_device

    assert resolve_device("auto", n_pairs=10) == "cpu"
    assert resolve_device("auto", n_pairs=10, device_input=True) == "cuda"
    big = _config.CUDA_AUTO_MIN_PAIRS
    if _device.simulator_enabled():
        # "auto" never runs a large problem on the simulator; "cuda" still does.
        assert resolve_device("auto", n_pairs=big) == "cpu"
        assert resolve_device("cuda", n_pairs=big) == "cuda"
        monkeypatch.setattr(_device, "simulator_enabled", lambda: False)
        monkeypatch.setattr(_device, "driver_problem", lambda: None)
    assert resolve_device("auto", n_pairs=big) == "cuda"


def test_auto_with_the_simulator_pools_on_the_cpu(monkeypatch):
    """A large problem with device="auto" under NUMBA_ENABLE_CUDASIM=1 never reaches the
    simulator's Python threads."""
    from nwattn import _device

    monkeypatch.setattr(_device, "simulator_enabled", lambda: True)
    monkeypatch.setattr(_config, "CUDA_AUTO_MIN_PAIRS", 4)
    X = np.arange(6.0).reshape(3, 2)
    called = []
    monkeypatch.setattr(_device, "cuda_problem", lambda: called.append(1))
    assert _device.resolve_device("auto", n_pairs=9) == "cpu"
    np.testing.assert_allclose(ops.attention_pool(X, X, X[:, 0], device="auto"),
                               ops.attention_pool(X, X, X[:, 0], device="cpu"))
    assert not called


def test_missing_pieces_are_named(monkeypatch):
    import importlib.util

    from nwattn import _device

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "numba_cuda" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(RuntimeError, match="numba-cuda package is not installed"):
        ops.attention_pool([[0.0]], [[0.0]], [1.0], device="cuda")
    monkeypatch.undo()
    monkeypatch.setattr(_device, "simulator_enabled", lambda: False)
    monkeypatch.setattr(_device, "driver_problem", lambda: "the NVIDIA driver (libcuda) "
                        "was not found on this machine")
    with pytest.raises(RuntimeError, match="device='cuda' cannot run: the NVIDIA driver"):
        ops.pairwise_scores([[0.0]], [[0.0]], device="cuda")
    assert _device.resolve_device("auto", n_pairs=10**12) == "cpu"


def test_driver_probe_without_libcuda(monkeypatch):
    import ctypes

    from nwattn import _device

    def no_library(name, *args, **kwargs):
        raise OSError(name)

    monkeypatch.setattr(ctypes, "CDLL", no_library)
    _device.driver_problem.cache_clear()
    try:
        assert "libcuda" in _device.driver_problem()
    finally:
        monkeypatch.undo()
        _device.driver_problem.cache_clear()


def test_cpu_path_never_imports_numba_cuda():
    code = (
        "import sys, numpy as np, nwattn, nwattn.ops as ops\n"
        "X = np.arange(6.0).reshape(3, 2)\n"
        "ops.attention_pool(X, X, X[:, 0], device='auto')\n"
        "ops.pairwise_scores(X, X); ops.softmax(X); ops.top_k_weights(X, X, k=2)\n"
        "assert 'numba.cuda' not in sys.modules, 'numba.cuda was imported'\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_missing_toolkit_is_named():
    pytest.importorskip("numba_cuda", reason="the cuda extra (numba-cuda) is not installed")
    from nwattn._cuda import launch

    class NoCompiler:
        def __getitem__(self, config):
            def run(*args):
                raise ImportError("libNVVM is not available")

            return run

    with pytest.raises(RuntimeError, match="NVVM compiler was not found"):
        launch._launch(NoCompiler(), 1, 1)


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_device_log_weights_are_the_catalogues(dtype):
    """Each distance kernel's device twin (constants in the kernel's dtype), through the GPU's
    score kernel, gives the catalogue's log-weight inside and outside the support and at its
    edge."""
    from nwattn import kernels

    # keys at distance u from a query at 0: u**2 exactly for these values
    u = np.concatenate([[0.0, 2.0**-10, 0.5, 0.75, 1.0 - 2.0**-10, 1.0, 1.5, 2.0],
                        np.random.default_rng(0).integers(0, 2**11, 24) / 2**10])
    K = u.astype(dtype)[:, None]
    Q = np.zeros((1, 1), dtype)
    for kern in kernels.KERNELS.values():
        if kern.family != kernels.DISTANCE:
            continue
        got = np.asarray(ops.pairwise_scores(Q, K, kern.name, device="cuda"))[0]
        ref = np.array([kernels.log_weight(kern.code, float(v) ** 2) for v in u])
        inside = np.isfinite(ref)
        np.testing.assert_array_equal(np.isfinite(got), inside, err_msg=kern.name)
        # float32: pi / 2 rounded to float32 moves the cosine's log-weight by a few
        # 1e-6 relative next to the edge of its support, where it falls steeply.
        tol = 1e-5 if dtype == np.float32 else 1e-14
        np.testing.assert_allclose(got[inside], ref[inside], rtol=tol, atol=tol,
                                   err_msg=kern.name)


def test_each_missing_piece_of_the_toolkit_is_named():
    pytest.importorskip("numba_cuda", reason="the cuda extra (numba-cuda) is not installed")
    from nwattn._cuda import launch

    def failing(exc):
        class Kernel:
            def __getitem__(self, config):
                def run(*args):
                    raise exc

                return run

        return Kernel()

    # numba-cuda's classes, by their names (the simulator, active here, has
    # none of them); toolkit_error recognises them by name.
    def error(name, base, *args):
        return type(name, (base,), {})(*args)

    cases = [
        (error("CudaSupportError", ImportError, "Error at driver init"),
         "CUDA driver cannot be used"),
        (error("NvvmSupportError", ImportError, "libNVVM cannot be found"),
         "NVVM compiler was not found"),
        (error("NvrtcSupportError", ImportError, "NVRTC cannot be found"),
         "NVRTC library was not found"),
        (FileNotFoundError("no such file: libdevice.10.bc"), "libdevice was not found"),
        (error("LinkerError", RuntimeError, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"),
         "toolkit is newer than the driver"),
        (error("CudaAPIError", Exception, 222, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"),
         "toolkit is newer than the driver"),
        (ImportError("cannot import cuda.bindings.nvjitlink"), "could not be loaded"),
    ]
    for exc, words in cases:
        with pytest.raises(RuntimeError, match=words) as info:
            launch._launch(failing(exc), 1, 1)
        assert info.value.__cause__ is exc
    # Anything else is not a toolkit problem and goes through unchanged.
    illegal = error("CudaAPIError", Exception, 700, "CUDA_ERROR_ILLEGAL_ADDRESS")
    with pytest.raises(type(illegal), match="ILLEGAL_ADDRESS"):
        launch._launch(failing(illegal), 1, 1)
    compile_error = error("NvvmError", Exception, "NVVM_ERROR_COMPILATION")
    with pytest.raises(type(compile_error)):
        launch._launch(failing(compile_error), 1, 1)
    with pytest.raises(ValueError, match="bad"):
        launch._launch(failing(ValueError("bad")), 1, 1)


def test_low_occupancy_warning_is_not_repeated_at_every_call():
    pytest.importorskip("numba_cuda", reason="the cuda extra (numba-cuda) is not installed")
    import warnings

    from nwattn._cuda import launch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        launch.quiet_low_occupancy()
        warnings.warn("Grid size 4 will likely result in GPU under-utilization due to low "
                      "occupancy.", RuntimeWarning)
        warnings.warn("another warning", RuntimeWarning)
    assert [str(w.message) for w in caught] == ["another warning"]


def test_key_tile_shrinks_to_the_shared_memory_budget(monkeypatch):
    pytest.importorskip("numba_cuda", reason="the cuda extra (numba-cuda) is not installed")
    from nwattn._cuda import launch

    monkeypatch.setattr(_config, "CUDA_KEY_TILE", 128)
    monkeypatch.setattr(_config, "CUDA_SHARED_BYTES", 4096)
    assert launch.tile_size(3, 1, 4) == 128
    assert launch.tile_size(64, 16, 4) == 4096 // (81 * 4)
    with pytest.raises(ValueError, match="features per key"):
        launch.tile_size(2000, 16, 8)


@needs_gpu
@settings(max_examples=12)
@given(problems(kernels=naive.ALL_KERNELS), st.integers(1, 5), st.integers(1, 4),
       st.integers(1, 6), st.integers(1, 3), st.booleans(), st.integers(1, 3))
def test_any_launch_shape_matches_the_cpu(problem, threads, tile, split_keys, chunk, loo, qpt):
    """Ragged edges of every kind: one query, one key, one thread, tiles of one key..."""
    Q, K, V, kernel, h = problem
    if loo:
        assume(V.shape[0] >= Q.shape[0])
        K, V = Q, V[:Q.shape[0]]
    sizes = dict(CUDA_THREADS_PER_BLOCK=threads, CUDA_KEY_TILE=tile, CUDA_TARGET_BLOCKS=8,
                 CUDA_MIN_SPLIT_KEYS=split_keys, CUDA_VALUE_CHUNK=chunk, CUDA_SIMPLE_THREADS=4,
                 CUDA_QUERIES_PER_THREAD=qpt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyNeighborhoodWarning)
        with mock.patch.multiple(_config, **sizes):
            got, got_std = ops.attention_pool(Q, K, V, kernel, h, exclude_self=loo,
                                              return_std=True, device="cuda")
        want, want_std = ops.attention_pool(Q, K, V, kernel, h, exclude_self=loo,
                                            return_std=True)
    # relative to the values' scale: predictions that cancel to ~1e-14 differ
    # by rounding that is tiny for the values but large for themselves
    got_a, want_a = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert np.array_equal(np.isnan(got_a), np.isnan(want_a))
    fine = ~np.isnan(want_a)
    err = np.max(np.abs(got_a[fine] - want_a[fine]), initial=0.0)
    assert err <= 1e-9 * max(np.abs(V).max(initial=0.0), 1e-300)
    # The variance is a difference of moments: compare it on the scale of V**2.
    ok = ~np.isnan(want_std)
    scale = 1.0 + np.abs(V).max() ** 2
    assert np.array_equal(np.isnan(got_std), ~ok)
    assert np.all(np.abs(got_std[ok] ** 2 - want_std[ok] ** 2) <= 1e-9 * scale)


def test_scores_without_a_gpu_kernel_are_refused():
    pytest.importorskip("numba_cuda", reason="the cuda extra (numba-cuda) is not installed")
    from nwattn._cuda import launch
    from nwattn.kernels import ADDITIVE, ADDITIVE_CODE

    X = np.zeros((2, 1))
    with pytest.raises(ValueError, match="needs its vector w_score"):
        launch.pool(X, X.T, X.T, np.empty((0, 2)), np.empty(0), ADDITIVE, ADDITIVE_CODE, 1.0,
                    -3)
    with pytest.raises(ValueError, match="no GPU implementation"):
        launch.pairwise(X, X.T, np.empty(0), 7, 102, 1.0)

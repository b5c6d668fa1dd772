"""ops.attention_pool: kernels, dtypes, features, sizes, outputs."""

import numpy as np

from nwattn.ops import attention_pool, attention_pool_state

from .common import bandwidth, make_data, skip_if_too_big


class AttentionPool:
    """Fused pooling of n queries over n keys."""

    params = (
        ["gaussian", "epanechnikov", "laplacian"],
        ["float64", "float32"],
        [2, 8, 64],
        [1_000, 10_000, 100_000],
        [1, 16],
    )
    param_names = ["kernel", "dtype", "d", "n", "p"]
    timeout = 600

    def setup(self, kernel, dtype, d, n, p):
        skip_if_too_big(n, n, d, p)
        if n == 100_000 and (kernel != "gaussian" or p > 1):
            raise NotImplementedError("skipped: the largest size runs the gaussian only")
        self.Q, self.K, self.V = make_data(n, n, d, p, dtype)
        self.h = bandwidth(kernel, d)
        self.kernel = kernel
        # compile (or load from the cache) outside the timing
        attention_pool(self.Q[:8], self.K[:8], self.V[:8], kernel, self.h)

    def time_attention_pool(self, kernel, dtype, d, n, p):
        attention_pool(self.Q, self.K, self.V, kernel, self.h)


class ScaledDotAttention:
    """Scaled dot-product attention, the transformer's softmax(QK'/sqrt(d))V."""

    params = (["float32", "float64"], [1_000, 8_000], [16, 64])
    param_names = ["dtype", "n", "d"]
    timeout = 600

    def setup(self, dtype, n, d):
        self.Q, self.K, self.V = make_data(n, n, d, d, dtype)
        attention_pool(self.Q[:8], self.K[:8], self.V[:8], "scaled_dot")

    def time_scaled_dot(self, dtype, n, d):
        attention_pool(self.Q, self.K, self.V, "scaled_dot")


class LeaveOneOut:
    """Leave-one-out predictions on the training set, with the local spread."""

    params = (["gaussian", "epanechnikov"], ["float64", "float32"], [1_000, 10_000])
    param_names = ["kernel", "dtype", "n"]
    timeout = 600

    def setup(self, kernel, dtype, n):
        self.X, _, self.y = make_data(n, n, 4, 1, dtype)
        self.h = bandwidth(kernel, 4)
        attention_pool(self.X[:8], self.X[:8], self.y[:8], kernel, self.h,
                       exclude_self=True, return_std=True)

    def time_leave_one_out(self, kernel, dtype, n):
        attention_pool(self.X, self.X, self.y, kernel, self.h, exclude_self=True,
                       return_std=True)


class PoolState:
    """The shardable state, without the final division."""

    params = ([10_000],)
    param_names = ["n"]

    def setup(self, n):
        self.Q, self.K, self.V = make_data(n, n, 8, 1, "float64")
        attention_pool_state(self.Q[:8], self.K[:8], self.V[:8], bandwidth=1.4)

    def time_pool_state(self, n):
        attention_pool_state(self.Q, self.K, self.V, bandwidth=1.4)


class PeakMemory:
    """Peak memory of one pooling: the data's O((n + m)(d + p)), never n * m."""

    params = ([1_000, 10_000, 100_000], ["float64", "float32"])
    param_names = ["n", "dtype"]
    timeout = 600

    def setup(self, n, dtype):
        self.Q, self.K, self.V = make_data(n, n, 8, 1, dtype)
        attention_pool(self.Q[:8], self.K[:8], self.V[:8], bandwidth=1.4)

    def peakmem_attention_pool(self, n, dtype):
        attention_pool(self.Q, self.K, self.V, bandwidth=1.4)

    def peakmem_leave_one_out_with_std(self, n, dtype):
        attention_pool(self.Q, self.Q, self.V, bandwidth=1.4, exclude_self=True,
                       return_std=True)


class PrunedPool:
    """Pooling with the pruned tile schedule: few features, a small bandwidth."""

    params = (["epanechnikov", "gaussian"], [100_000])
    param_names = ["kernel", "n"]
    timeout = 600

    def setup(self, kernel, n):
        import inspect

        if "algorithm" not in inspect.signature(attention_pool).parameters:
            raise NotImplementedError("skipped: this version has no pruned schedule")
        rng = np.random.default_rng(0)
        self.X = rng.random((n, 2))
        self.y = np.sin(6 * self.X[:, 0])
        self.kernel = kernel
        attention_pool(self.X[:100], self.X[:5000], self.y[:5000], kernel, 0.01,
                       algorithm="tree")

    def time_pruned_pool(self, kernel, n):
        attention_pool(self.X, self.X, self.y, self.kernel, 0.01, algorithm="tree")

"""The scikit-learn estimators: bandwidth selection, prediction, training."""

import numpy as np

from nwattn import AttentionRegressor, NadarayaWatsonRegressor


def _regression_data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2.0, 2.0, size=(n, d))
    y = np.sin(2.0 * X[:, 0]) + 0.5 * X[:, 1:].sum(axis=1) + 0.1 * rng.normal(size=n)
    return X, y


class NadarayaWatson:
    params = ([1_000, 10_000],)
    param_names = ["n"]
    timeout = 600

    def setup(self, n):
        cls = NadarayaWatsonRegressor
        self.X, self.y = _regression_data(n, 4)
        self.make = lambda: cls(kernel="gaussian", bandwidth="cv")
        self.make().fit(self.X[:50], self.y[:50])  # compile outside the timing
        self.fitted = self.make().fit(self.X, self.y)

    def time_fit_cv_bandwidth(self, n):
        self.make().fit(self.X, self.y)

    def time_predict(self, n):
        self.fitted.predict(self.X)

    def peakmem_fit_cv_bandwidth(self, n):
        self.make().fit(self.X, self.y)


class Attention:
    params = ([1_000, 5_000],)
    param_names = ["n"]
    timeout = 600

    def setup(self, n):
        cls = AttentionRegressor
        self.X, self.y = _regression_data(n, 4)
        self.make = lambda: cls(max_iter=20)
        self.make().fit(self.X[:50], self.y[:50])
        self.fitted = self.make().fit(self.X, self.y)

    def time_fit(self, n):
        self.make().fit(self.X, self.y)

    def time_predict(self, n):
        self.fitted.predict(self.X)


class AttentionObjective:
    """One evaluation of the rbf training objective and its gradient.

    ``pairs``: every unordered pair scored once (the path a fit without
    ``batch_size`` takes); ``two_sided``: the general sweeps, which the other
    scores and ``batch_size`` use.
    """

    params = (["pairs", "two_sided"], [2_000, 10_000])
    param_names = ["path", "n"]
    timeout = 300

    def setup(self, path, n):
        from nwattn.kernels import RBF_KIND
        from nwattn.objective import loo_loss_grad

        rng = np.random.default_rng(0)
        r = 10
        Z = rng.normal(size=(n, r))
        Y = rng.normal(size=(n, 1))
        args = (RBF_KIND, Z, Z, np.zeros(r), Y, np.zeros(n), np.full(n, 1.0 / n))
        self.run = lambda: loo_loss_grad(*args, pairs_once=path == "pairs")
        self.run()  # compile outside the timing

    def time_objective(self, path, n):
        self.run()

"""Robustness of the public API to the form and the scale of its input.

Arrays from other libraries, non-numeric targets, sample weights of any
overall scale, and data in any units: each must give the result of plain,
well-scaled NumPy input, or an error that names the parameter at fault.
The references are the dense formulas of ``tests/naive.py`` or the same
computation on well-scaled input.
"""

import numpy as np
import pytest

from nwattn import bandwidth as bw
from nwattn import ops
from nwattn.estimators import AttentionRegressor, NadarayaWatsonRegressor

from . import naive


class ForeignArray:
    """An array of another library, as NumPy sees a PyTorch CPU tensor.

    It converts through ``__array__``, and its ``dtype`` is the library's own
    object, which has none of NumPy's attributes (no ``kind``).
    """

    class _DType:
        def __repr__(self):
            return "foreign.float64"

    dtype = _DType()

    def __init__(self, values):
        self._values = np.asarray(values, dtype=np.float64)
        self.shape = self._values.shape
        self.ndim = self._values.ndim

    def __array__(self, dtype=None, copy=None):
        return self._values if dtype is None else self._values.astype(dtype)

    def __len__(self):
        return self.shape[0]


@pytest.fixture
def data(rng):
    Q = rng.normal(size=(6, 2))
    K = rng.normal(size=(9, 2))
    V = rng.normal(size=9)
    w = rng.uniform(0.5, 2.0, size=9)
    return Q, K, V, w


def _foreign_inputs():
    """Converters to the foreign array types available here."""
    kinds = [("ForeignArray", ForeignArray)]
    try:
        import torch
    except ImportError:
        pass
    else:
        kinds.append(("torch", lambda a: torch.tensor(np.asarray(a))))
    return kinds


@pytest.fixture(params=[k for k, _ in _foreign_inputs()])
def foreign(request):
    return dict(_foreign_inputs())[request.param]


def test_foreign_arrays_in_the_low_level_api(data, foreign):
    Q, K, V, w = data
    h = np.array([0.7, 1.3])
    got = ops.attention_pool(foreign(Q), foreign(K), foreign(V), "gaussian", foreign(h),
                             key_weight=foreign(w))
    want = naive.pool(Q, K, V, "gaussian", h, key_weight=w)
    assert naive.relative_error(got, want) < 1e-12
    S = ops.pairwise_scores(foreign(Q), foreign(K), "gaussian", 0.9)
    assert naive.relative_error(S, naive.scores(Q, K, "gaussian", 0.9)) < 1e-12
    assert naive.relative_error(ops.softmax(foreign(S)), naive.softmax(S)) < 1e-12
    idx, _ = ops.top_k_weights(foreign(Q), foreign(K), "gaussian", 0.9, 3)
    np.testing.assert_array_equal(idx, np.argsort(-S, axis=1)[:, :3])


def test_foreign_arrays_in_the_bandwidth_functions(data, foreign):
    _, K, V, w = data
    for rule in ("scott", "silverman"):
        got = getattr(bw, rule)(foreign(K), sample_weight=foreign(w))
        assert naive.relative_error(got, naive.rule_of_thumb(K, rule, w)) < 1e-12
    got = bw.loo_cv_score(foreign(K), foreign(V), "gaussian", 0.8, sample_weight=foreign(w))
    assert got == pytest.approx(naive.loo_cv(K, V, "gaussian", 0.8, w), rel=1e-10)


def test_torch_tensors_in_the_low_level_api(data):
    torch = pytest.importorskip("torch")
    Q, K, V, _ = data
    got = ops.attention_pool(torch.tensor(Q), torch.tensor(K), torch.tensor(V))
    assert naive.relative_error(got, naive.pool(Q, K, V)) < 1e-12
    got32 = ops.attention_pool(torch.tensor(Q, dtype=torch.float32),
                               torch.tensor(K, dtype=torch.float32),
                               torch.tensor(V, dtype=torch.float32))
    assert got32.dtype == np.float32


# -- non-numeric input names its parameter ---------------------------------------------

_STRING_TARGETS = [
    pytest.param(np.array(["a", "b"] * 10), id="str-array"),
    pytest.param(["1.5", "2"] * 10, id="numeric-strings"),
    pytest.param(np.array(["a", "b"] * 10, dtype=object), id="object-strings"),
]


@pytest.mark.parametrize("y", _STRING_TARGETS)
@pytest.mark.parametrize("fit", [
    pytest.param(lambda X, y: NadarayaWatsonRegressor(bandwidth=1.0).fit(X, y), id="NW"),
    pytest.param(lambda X, y: AttentionRegressor(max_iter=1).fit(X, y), id="Attention"),
    pytest.param(lambda X, y: bw.loo_cv_score(X, y), id="loo_cv_score"),
    pytest.param(lambda X, y: bw.select_bandwidth(X, y), id="select_bandwidth"),
])
def test_string_targets_are_refused_naming_y(rng, fit, y):
    X = rng.normal(size=(20, 2))
    with pytest.raises((TypeError, ValueError), match=r"^y must be numeric"):
        fit(X, y)


@pytest.mark.parametrize("Estimator", [NadarayaWatsonRegressor, AttentionRegressor])
def test_estimators_name_non_numeric_features_and_weights(rng, Estimator):
    X, y = rng.normal(size=(20, 2)), rng.normal(size=20)
    est = Estimator(max_iter=1) if Estimator is AttentionRegressor else Estimator(bandwidth=1.0)
    with pytest.raises(TypeError, match=r"^X must be numeric"):
        est.fit(X.astype(str), y)
    with pytest.raises(ValueError, match="Complex data not supported: X"):
        est.fit(X + 1j, y)
    with pytest.raises(TypeError, match=r"^sample_weight must be numeric"):
        est.fit(X, y, sample_weight=np.array(["1"] * 20))
    est.fit(X, y)
    with pytest.raises(TypeError, match=r"^X must be numeric"):
        est.predict(np.array([["a", "b"]]))


@pytest.mark.parametrize("rule", ["scott", "silverman"])
def test_rules_name_non_numeric_input(rng, rule):
    X = rng.normal(size=(20, 2))
    with pytest.raises(TypeError, match=r"^X must be numeric"):
        getattr(bw, rule)(X.astype(str))
    with pytest.raises(TypeError, match=r"^sample_weight must be numeric"):
        getattr(bw, rule)(X, sample_weight=["a"] * 20)

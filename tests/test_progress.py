"""Progress reports: ``verbose`` on the estimators and the bandwidth search,
``progress=`` and ``verbose`` on the long low-level calls.

The CPU sweep reports between its chunks (tests/test_interrupt.py tests the
sweep itself); here, what the public calls make of it: silence by default,
lines on stderr ending at 100 % with ``verbose=1``, callbacks with
increasing counts ending at the total, and cancellation by an exception.
"""

import re

import numpy as np
import pytest
from sklearn.base import clone

from nwattn import LocalPolynomialRegressor, NadarayaWatsonRegressor, _config, ops
from nwattn._progress import ProgressReporter, check_verbose, progress_callback
from nwattn.bandwidth import select_bandwidth

LINE = re.compile(r"^\[(?P<label>[^\]]+)\]\s+(?P<pct>\d+\.\d)%  elapsed \S+  left \S+$")


@pytest.fixture
def tiny_chunks(small_blocks, monkeypatch):
    """One task per thread per chunk: small inputs report many times."""
    monkeypatch.setattr(_config, "SWEEP_CHUNK_WORK", 1)
    return small_blocks


@pytest.fixture
def data(rng):
    X = rng.uniform(size=(37, 2))
    y = np.sin(4 * X[:, 0]) + 0.1 * rng.normal(size=37)
    return X, y


def _calls(X, y):
    """Each low-level call with progress, as ``f(**progress_kwargs)``."""
    Q = X[:11] + 0.01
    return {
        "attention_pool": lambda **kw: ops.attention_pool(Q, X, y, "gaussian", 0.3, **kw),
        "attention_pool_state": lambda **kw: ops.attention_pool_state(
            X, X, y, "epanechnikov", 0.8, exclude_self=True, return_std=True, **kw),
        "local_polynomial": lambda **kw: ops.local_polynomial(Q, X, y, "gaussian", 0.3, **kw),
        "local_polynomial_state": lambda **kw: ops.local_polynomial_state(
            Q, X, y, "tricube", 0.9, degree=2, **kw),
    }


CALLS = list(_calls(np.zeros((2, 2)), np.zeros(2)))


def _percentages(text, label=None):
    lines = [ln for ln in text.splitlines() if ln.strip()]
    found = [LINE.match(ln) for ln in lines]
    assert all(found), lines
    if label is not None:
        assert {m["label"] for m in found} == {label}
    return [float(m["pct"]) for m in found]


@pytest.mark.parametrize("name", CALLS)
def test_silent_by_default(data, tiny_chunks, capfd, name):
    _calls(*data)[name]()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("name", CALLS)
def test_verbose_prints_lines_ending_at_100(data, tiny_chunks, capfd, monkeypatch, name):
    # Every chunk's call prints: the rate limit is tested below.
    monkeypatch.setattr("nwattn._progress.INTERVAL", 0.0)
    _calls(*data)[name](verbose=1)
    out, err = capfd.readouterr()
    assert out == ""
    pct = _percentages(err, name)
    assert len(pct) > 1
    assert pct == sorted(pct) and pct[-1] == 100.0


@pytest.mark.parametrize("name", CALLS)
def test_callback_counts_increase_to_the_total(data, tiny_chunks, capfd, name):
    seen = []
    result = _calls(*data)[name](progress=lambda done, total: seen.append((done, total)))
    totals = {t for _, t in seen}
    assert len(totals) == 1
    total = totals.pop()
    done = [d for d, _ in seen]
    assert len(done) > 1
    assert all(a < b for a, b in zip(done, done[1:]))
    assert done[-1] == total > 0
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # a callback alone prints nothing
    # Reporting changes nothing of the result.
    plain = _calls(*data)[name]()
    if isinstance(result, ops.PoolState):
        result, plain = result.packed, plain.packed
    np.testing.assert_array_equal(result, plain)


@pytest.mark.parametrize("name", CALLS)
def test_an_exception_in_the_callback_cancels_the_call(data, tiny_chunks, name):
    calls = []

    class Stop(Exception):
        """Raised by the callback to cancel."""

    def cancel(done, total):
        calls.append(done)
        if len(calls) == 2:
            raise Stop

    with pytest.raises(Stop):
        _calls(*data)[name](progress=cancel)
    assert len(calls) == 2  # stopped at once, not at the end
    # Nothing is left behind: the next call runs and gives the usual result.
    again = _calls(*data)[name]
    first, second = again(), again()
    if isinstance(first, ops.PoolState):
        first, second = first.packed, second.packed
    np.testing.assert_array_equal(first, second)


def test_a_call_with_one_chunk_still_ends_at_the_total(data):
    X, y = data
    seen = []
    ops.attention_pool(X, X, y, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(X.shape[0] ** 2, X.shape[0] ** 2)]


def test_reporter_is_rate_limited_and_always_prints_the_last_line(capsys):
    report = ProgressReporter("x", interval=3600)
    for done in range(0, 100, 7):
        report(done, 100)
    report(100, 100)
    err = capsys.readouterr().err
    assert _percentages(err, "x") == [100.0]


def test_estimated_time_left(capsys, monkeypatch):
    clock = iter([10.0, 11.0, 12.0])
    monkeypatch.setattr("nwattn._progress._clock", lambda: next(clock))
    report = ProgressReporter("x", interval=0)
    report(25, 100)  # a quarter in 1 s: 3 s left
    report(100, 100)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[x]  25.0%  elapsed 1.0s  left ~3.0s"
    assert lines[1] == "[x] 100.0%  elapsed 2.0s  left ~0.0s"


def test_invalid_verbose_and_progress():
    for bad in (-1, 1.5, "1", None):
        with pytest.raises(ValueError, match="verbose"):
            check_verbose(bad)
    with pytest.raises(TypeError, match="progress"):
        progress_callback(progress=3)
    X = np.zeros((3, 1))
    with pytest.raises(TypeError, match="progress"):
        ops.attention_pool(X, X, np.zeros(3), progress="yes")
    with pytest.raises(ValueError, match="verbose"):
        ops.local_polynomial(X, X, np.zeros(3), verbose=-2)


def test_select_bandwidth_reports_each_evaluation(data, capfd):
    X, y = data
    sel = select_bandwidth(X, y)
    assert capfd.readouterr() == ("", "")
    again = select_bandwidth(X, y, verbose=1)
    assert again == sel  # reporting changes nothing of the search
    out, err = capfd.readouterr()
    assert out == ""
    lines = err.splitlines()
    evals = [re.match(r"^\[select_bandwidth\] evaluation (\d+)  h=(\S+)  score (\S+)  "
                      r"\d+\.\d\ds  \(total \S+\)$", ln) for ln in lines[:-1]]
    assert all(evals), lines
    assert [int(m[1]) for m in evals] == list(range(1, sel.n_evaluations + 1))
    # Printed to 6 significant digits: within 5e-6 relative.
    assert min(float(m[3]) for m in evals) == pytest.approx(sel.cv_score, rel=5e-6)
    assert lines[-1].startswith(f"[select_bandwidth] selected h={sel.bandwidth:.4g}  ")
    assert lines[-1].endswith(f"after {sel.n_evaluations} evaluations in "
                              f"{lines[-1].rsplit(' ', 1)[1]}")


def test_per_feature_search_reports_the_bandwidths(data, capfd):
    X, y = data
    sel = select_bandwidth(X, y, per_feature=True, verbose=1)
    err = capfd.readouterr().err
    assert err.count("evaluation ") == sel.n_evaluations
    assert re.search(r"h=\[\S+, \S+\]  score", err)


ESTIMATORS = [NadarayaWatsonRegressor, LocalPolynomialRegressor]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_estimators_silent_by_default(cls, data, capfd):
    cls().fit(*data).predict(data[0])
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_estimators_report_the_search_and_the_prediction(cls, data, tiny_chunks, capfd):
    X, y = data
    model = cls(verbose=1).fit(X, y)
    out, err = capfd.readouterr()
    assert out == ""
    assert "[select_bandwidth] evaluation 1  h=" in err
    assert "[select_bandwidth] selected h=" in err
    pred = model.predict(X)
    out, err = capfd.readouterr()
    assert out == ""
    assert _percentages(err, f"{cls.__name__}.predict")[-1] == 100.0
    np.testing.assert_array_equal(pred, cls().fit(X, y).predict(X))


def test_local_polynomial_reports_robustness_fits(data, capfd):
    X, y = data
    LocalPolynomialRegressor(bandwidth=0.3, robust_iterations=2, verbose=1).fit(X, y)
    err = capfd.readouterr().err
    assert _percentages(err, "LocalPolynomialRegressor.fit (robustness)") == [100.0, 100.0]


def test_nadaraya_watson_span_reports_the_prediction(data, capfd):
    X, y = data
    NadarayaWatsonRegressor(span=0.5, verbose=1).fit(X, y).predict(X)
    assert _percentages(capfd.readouterr().err,
                        "NadarayaWatsonRegressor.predict")[-1] == 100.0


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_verbose_survives_clone_and_get_params(cls):
    model = cls(verbose=2)
    assert model.get_params()["verbose"] == 2
    assert clone(model).verbose == 2
    assert cls().get_params()["verbose"] == 0
    assert clone(model.set_params(verbose=0)).verbose == 0


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_invalid_verbose_is_refused_at_fit(cls, data):
    with pytest.raises(ValueError, match="verbose"):
        cls(verbose="loud").fit(*data)

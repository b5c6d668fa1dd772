"""Leave-one-out cross-validation on Dask arrays: the score and the bandwidth search.

The score is the one defined in :mod:`nwattn.loo`, computed with the
training set left distributed: the training points are both the queries
and the keys, chunked alike, and every block of points gets its share of the
score from its state merged over the key chunks (:func:`nwattn.loo.loo_error`).
The search is the one of :func:`nwattn.bandwidth.search`, each of its
evaluations being one Dask computation.
"""

import time

import numpy as np

import dask
import dask.array as da

from .. import _validation as _v
from .._progress import EvaluationLog, check_verbose
from ..bandwidth import BandwidthSelection, _format_bandwidth, check_tol, search
from ..kernels import get_kernel
from ..loo import (LooTotals, check_fallback, in_target_units, loo_error, slope_state,
                   target_exponent)
from ..ops import merge_states
from .._backend import backend_for
from ._inputs import (blocks, check_algorithm, check_device, check_split_every, largest,
                      starts, training_set)
from .pool import merge_tree, nearest_states, pooled_states, unpack

# ------------------------------------------------------ training-set summaries


def _reductions(X, Y2, W):
    """Lazy checks and sums of a training set: one pass over it, nothing large returned."""
    c = da.ones(X.shape[0], chunks=X.chunks[0]) if W is None else W
    checks = {"X": da.isfinite(X).all(), "y": da.isfinite(Y2).all()}
    if W is not None:
        checks["sample_weight"] = da.isfinite(W).all()
        checks["negative"] = (W < 0).any()
    sums = dict(wsum=c.sum(), n_positive=(c > 0).sum(), y_total=(c[:, None] * Y2).sum(axis=0),
                y_absmax=largest(abs(Y2), initial=0.0))
    if W is not None:
        # The sums without the heaviest point, added on their own (see
        # nwattn.loo.LooTotals): that point's mean of the others. The
        # weights were divided by their largest, so the heaviest (the first
        # of equals, as in memory) is the first weight of 1.
        index = da.arange(W.shape[0], chunks=W.chunks)
        top = -largest(da.where(W == 1.0, -index, -W.shape[0]), initial=-W.shape[0])
        rest = W * (index != top)
        sums.update(rest_wsum=rest.sum(), rest_total=(rest[:, None] * Y2).sum(axis=0))
    return checks, sums


def _check_reductions(checks, sums, *, loo):
    """Raise, naming the argument, what the in-memory validation would raise."""
    for name in ("X", "y", "sample_weight"):
        if not checks.get(name, True):
            raise ValueError(f"{name} must be finite: it contains NaN or infinity")
    if checks.get("negative", False):
        raise ValueError("sample_weight must be non-negative")
    if not float(sums["wsum"]) > 0:
        raise ValueError("sample_weight must have a positive sum")
    if loo and int(sums["n_positive"]) < 2:
        raise ValueError(
            "leave-one-out cross-validation needs at least 2 samples with positive weight, "
            f"got n_samples={int(sums['n_positive'])}"
        )


def _exponent_task(checks, sums):
    """The targets' :func:`nwattn.loo.target_exponent`, once the training set is known valid."""
    _check_reductions(checks, sums, loo=True)
    return target_exponent(sums["y_absmax"])


def _factor_task(e):
    # Dividing by a power of two is exact: the targets' scores, scaled.
    return 2.0 ** -e


def _totals(sums, e):
    """:class:`nwattn.loo.LooTotals` from the reductions, of the targets divided by ``2**e``.

    The totals of the ``"mean"`` fallback; a task of :func:`loo_cv_error`'s graph.
    """
    if "rest_wsum" not in sums:  # unweighted: no point outweighs the others
        return LooTotals(np.ldexp(np.asarray(sums["y_total"], np.float64), -e),
                         float(sums["wsum"]))
    return LooTotals(np.ldexp(np.asarray(sums["y_total"], np.float64), -e), float(sums["wsum"]),
                     np.ldexp(np.asarray(sums["rest_total"], np.float64), -e),
                     float(sums["rest_wsum"]))


def _center_task(totals):
    # The weighted mean of the targets: the centre of every partial state, as in memory.
    return totals.target_sum / totals.weight_sum


def _score_task(sse, totals, e):
    return in_target_units(float(sse) / totals.weight_sum, e)


def moments(X, Y2, W):
    """Validate a distributed training set and reduce it to the numbers a fit needs.

    Two passes of reductions (means, then spreads around them); nothing of
    the size of the data leaves the workers. ``y_var`` is the variance of
    the targets divided by ``2**y_exponent`` (:func:`nwattn.loo.target_exponent`),
    the units of the leave-one-out scores.
    """
    checks, sums = _reductions(X, Y2, W)
    c = da.ones(X.shape[0], chunks=X.chunks[0]) if W is None else W
    Xf = X.astype(np.float64)
    # The weights were divided by their largest (training_set), so that the
    # squares behind the effective sample size cannot overflow.
    sums.update(w2sum=(c * c).sum(), x_total=(c[:, None] * Xf).sum(axis=0),
                x_sq=(c[:, None] * Xf * Xf).sum(axis=0))
    checks, m = dask.compute(checks, sums)
    _check_reductions(checks, m, loo=False)
    wsum = float(m["wsum"])
    m = {key: np.asarray(val, dtype=np.float64) for key, val in m.items()}
    m["wsum"], m["n"] = wsum, int(X.shape[0])
    m["n_positive"] = int(m["n_positive"])
    m["n_eff"] = wsum ** 2 / float(m["w2sum"]) if W is not None else float(X.shape[0])
    m["x_mean"], m["y_mean"] = m["x_total"] / wsum, m["y_total"] / wsum
    m["x_rms2"] = m["x_sq"] / wsum
    # The targets' spread, like their scores, in units where squares fit.
    e = m["y_exponent"] = target_exponent(m["y_absmax"])
    Ys, mean_s = (Y2, m["y_mean"]) if not e else (Y2 * 2.0 ** -e, np.ldexp(m["y_mean"], -e))
    x_var, y_var = dask.compute((c[:, None] * (Xf - m["x_mean"]) ** 2).sum(axis=0),
                                (c[:, None] * (Ys - mean_s) ** 2).sum(axis=0))
    m["x_var"], m["y_var"] = np.asarray(x_var) / wsum, np.asarray(y_var) / wsum
    return m


# ------------------------------------------------------------- block tasks


def _nearest_targets(nearest):
    """The ``nearest`` argument of :func:`nwattn.loo.loo_error` from a block's merged candidates."""
    return None if nearest is None else (lambda idx: nearest[idx, 1:])


def _loo_block(packed, nearest, center, y, w, fallback, totals):
    """A block's weighted sum of squared leave-one-out errors (one task)."""
    state = unpack(packed, y.shape[1], np.asarray(center, packed.dtype), False)
    err = loo_error(state, y, sample_weight=w, fallback=fallback, totals=totals,
                    nearest=_nearest_targets(nearest))
    return np.array([err.sse])


def _slopes_block(q, k, v, w, center, q0, k0, *, kernel, bandwidth, algorithm):
    """Slope state of training block ``q`` over key chunk ``k`` (one task; keys pruned here)."""
    return slope_state(q, k, v, kernel, bandwidth, key_weight=w, query_offset=int(q0),
                       key_offset=int(k0), center=center, algorithm=algorithm)


def _merge_slopes_block(p, *states):
    """Merge the slope states of one training block over disjoint key chunks (one task)."""
    merged = states[0]
    for other in states[1:]:
        merged = merge_states(merged, other)
    return merged


def _loo_grad_block(state, nearest, y, w, fallback, totals):
    """A block's weighted sum of squared leave-one-out errors and its gradient (one task)."""
    err = loo_error(state, y, sample_weight=w, fallback=fallback, totals=totals,
                    nearest=_nearest_targets(nearest))
    return np.concatenate([[err.sse], err.gradient])


def _needs_nearest(kern, fallback):
    # Only a compact kernel leaves points without neighbours.
    return fallback == "nearest" and kern.is_compact


def _sse_parts(X, Y2, W, kern, bandwidth, fallback, totals, center, split_every, device,
               algorithm):
    """Lazy blocks' shares ``[sse]`` of the score, as a (n_blocks, 1) Dask array."""
    states, _ = pooled_states(X, X, Y2, W, kern.name, bandwidth, True, False,
                              np.dtype(np.float64), split_every, device, center=center,
                              algorithm=algorithm)
    nearest = (nearest_states(states, X, X, Y2, W, bandwidth, True, split_every)
               if _needs_nearest(kern, fallback) else [None] * len(states))
    w_blocks = [None] * len(states) if W is None else blocks(W)
    task = dask.delayed(_loo_block, pure=True)
    return da.stack([da.from_delayed(task(st, near, center, yb, wb, fallback, totals),
                                     shape=(1,), dtype=np.float64)
                     for st, near, yb, wb in zip(states, nearest, blocks(Y2), w_blocks)])


def _grad_parts(X, Y2, W, kern, bandwidth, fallback, totals, center, split_every, algorithm):
    """Lazy blocks' shares ``[sse, d sse / d log h_t ...]``, a (n_blocks, 1 + d) Dask array."""
    x_blocks, y_blocks = blocks(X), blocks(Y2)
    w_blocks = [None] * len(x_blocks) if W is None else blocks(W)
    first = starts(X.chunks[0])
    block = dask.delayed(_slopes_block, pure=True)
    states = [merge_tree([block(qb, kb, vb, wb, center, q0, k0, kernel=kern.name,
                                bandwidth=bandwidth, algorithm=algorithm)
                          for kb, vb, wb, k0 in zip(x_blocks, y_blocks, w_blocks, first)],
                         split_every, None, _merge_slopes_block)
              for qb, q0 in zip(x_blocks, first)]
    nearest = (nearest_states(states, X, X, Y2, W, bandwidth, True, split_every)
               if _needs_nearest(kern, fallback) else [None] * len(states))
    task = dask.delayed(_loo_grad_block, pure=True)
    return da.stack([da.from_delayed(task(st, near, yb, wb, fallback, totals),
                                     shape=(1 + X.shape[1],), dtype=np.float64)
                     for st, near, yb, wb in zip(states, nearest, y_blocks, w_blocks)])


# ------------------------------------------------------------- the problem


class _DaskLooProblem:
    """The leave-one-out score of a distributed training set, for :func:`nwattn.bandwidth.search`.

    Offers the problem protocol of the search (``kernel``, ``n_samples``,
    ``spread``, ``mean_square``, ``target_variance``, ``value``,
    ``value_and_gradient``) from the reductions of :func:`moments`; every
    evaluation is one Dask computation over the blocks.
    """

    def __init__(self, X, Y2, W, kern, fallback, m, device, split_every, algorithm="auto"):
        # Scored as in memory: targets divided by 2**e where squares would
        # leave float64 (nwattn.loo.target_exponent), exactly.
        e = self.target_exponent = m["y_exponent"]
        self.X, self.Y2, self.W = X.astype(np.float64), Y2 if not e else Y2 * 2.0 ** -e, W
        self.kernel = kern
        self.fallback = fallback
        self.device = device
        # A string, passed on to every task: each orders its own chunk of keys.
        self.algorithm = algorithm
        self.split_every = split_every
        self.totals = _totals(m, e)
        self.center = np.ldexp(m["y_mean"], -e)
        self.n_samples = m["n"]
        self.spread = np.sqrt(m["x_var"])
        self.mean_square = m["x_rms2"]
        self.target_variance = float(np.sum(m["y_var"]))

    def _bandwidth(self, bandwidth):
        return _v.check_bandwidth(bandwidth, self.X.shape[1], np.float64)

    def lazy_value(self, bandwidth):
        """The score at ``bandwidth`` as a lazy Dask scalar."""
        parts = _sse_parts(self.X, self.Y2, self.W, self.kernel, self._bandwidth(bandwidth),
                           self.fallback, self.totals, self.center, self.split_every,
                           self.device, self.algorithm)
        return parts.sum() / self.totals.weight_sum

    def value(self, bandwidth):
        return float(self.lazy_value(bandwidth).compute())

    def value_and_gradient(self, bandwidth):
        backend_for(self.device, need="slopes", what="the gradient of the leave-one-out score")
        parts = _grad_parts(self.X, self.Y2, self.W, self.kernel, self._bandwidth(bandwidth),
                            self.fallback, self.totals, self.center, self.split_every,
                            self.algorithm)
        total = np.asarray(parts.sum(axis=0).compute()) / self.totals.weight_sum
        return float(total[0]), total[1:]


# -------------------------------------------------------------- public API


def _check_kernel(kernel):
    """The kernel, with a pointer to ``candidates=`` for the former positional candidates."""
    if isinstance(kernel, (list, tuple, np.ndarray)):
        raise TypeError(
            f"kernel must be the name of a kernel, got {kernel!r}; candidate bandwidths "
            "are passed as candidates=[...]"
        )
    return get_kernel(kernel)


def loo_cv_error(X, y, kernel="gaussian", bandwidth=1.0, *, sample_weight=None,
                 fallback="mean", split_every=None, device="cpu", algorithm="auto"):
    """Leave-one-out cross-validation score of Nadaraya-Watson regression on Dask arrays.

    The score of :func:`nwattn.bandwidth.loo_cv_score`, with the same
    definition (:mod:`nwattn.loo`): the weighted mean over the training
    points of the squared leave-one-out error **summed over the outputs**,
    a point with no other point in its neighbourhood being predicted by the
    ``fallback``. The training set stays distributed: the points are the
    keys, both chunked, and the leave-one-out pairs are skipped by their
    global indices. The result equals the in-memory score up to rounding,
    whatever the chunking.

    Parameters
    ----------
    X : dask.array.Array or array_like of shape (n_samples, n_features)
        Training points.
    y : dask.array.Array or array_like of shape (n_samples,) or (n_samples, n_outputs)
        Targets.
    kernel : str, default="gaussian"
        A name of :mod:`nwattn.kernels`.
    bandwidth : float or array_like of shape (n_features,), default=1.0
        Positive scalar or one positive value per feature.
    sample_weight : dask.array.Array or array_like of shape (n_samples,), default=None
        Non-negative weights of the samples: they weight the keys of every
        fit and the squared error of every point; at least two must be
        positive.
    fallback : {"mean", "nearest"}, default="mean"
        Prediction of a point with no other point in its neighbourhood: the
        weighted mean of the other targets, or the target of the nearest
        other point of positive weight (distances scaled by the bandwidth).
    split_every : int, default=None
        Fan-in of the merge trees, as in :func:`attention_pool`.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where each pooling task runs, as in :func:`attention_pool`.
    algorithm : {"auto", "brute", "tree"}, default="auto"
        Which key tiles each task visits, as for
        :func:`nwattn.ops.attention_pool`, passed on to every (block of
        points, key chunk) task: each chunk's keys are ordered and pruned
        on their own: the result is the in-memory one to rounding,
        whatever the chunking. ``"auto"`` decides for each task from its
        own chunk. A :class:`~nwattn.pruning.KeyTree` is refused (it
        orders a whole array of keys, not its chunks).

    Returns
    -------
    score : dask.array.Array of shape ()
        Lazy. Invalid values (NaN, negative weights, fewer than two
        positive weights) raise a ValueError naming the argument when it is
        computed.

    See Also
    --------
    nwattn.bandwidth.loo_cv_score : the in-memory computation.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from nwattn.bandwidth import loo_cv_score
    >>> from nwattn.dask import loo_cv_error
    >>> rng = np.random.default_rng(1)
    >>> X = rng.uniform(size=(500, 1))
    >>> y = np.sin(6 * X[:, 0]) + 0.1 * rng.normal(size=500)
    >>> dX, dy = da.from_array(X, chunks=120), da.from_array(y, chunks=120)
    >>> float(loo_cv_error(dX, dy, bandwidth=0.05).compute()) < 0.02
    True
    >>> # isolated points get the fallback, here the mean of the other targets
    >>> score = float(loo_cv_error(dX, dy, "boxcar", bandwidth=1e-6).compute())
    >>> bool(np.isclose(score, loo_cv_score(X, y, "boxcar", 1e-6), rtol=1e-12))
    True
    """
    kern = _check_kernel(kernel)
    fallback = check_fallback(fallback)
    split_every = check_split_every(split_every)
    device = check_device(device)
    algorithm = check_algorithm(algorithm, kern, device)
    X, _, Y2, W = training_set(X, y, sample_weight)
    h = _v.check_bandwidth(bandwidth, X.shape[1], np.float64)
    checks, sums = _reductions(X, Y2, W)
    sums = {name: blocks(val)[0] for name, val in sums.items()}
    # Everything the tasks compute hangs on the validated exponent, so invalid
    # data fail with the in-memory message before any pooling task runs.
    e = dask.delayed(_exponent_task, pure=True)(
        {name: blocks(val)[0] for name, val in checks.items()}, sums)
    totals = dask.delayed(_totals, pure=True)(sums, e)
    center = dask.delayed(_center_task, pure=True)(totals)
    factor = da.from_delayed(dask.delayed(_factor_task, pure=True)(e), shape=(), dtype=np.float64)
    parts = _sse_parts(X.astype(np.float64), Y2 * factor, W, kern, h, fallback, totals, center,
                       split_every, device, algorithm)
    score = dask.delayed(_score_task, pure=True)(blocks(parts.sum())[0], totals, e)
    return da.from_delayed(score, shape=(), dtype=np.float64)


def select_bandwidth(X, y, kernel="gaussian", *, per_feature=False, sample_weight=None,
                     fallback="mean", tol=1e-4, device="cpu", candidates=None,
                     split_every=None, algorithm="auto", verbose=0):
    """Bandwidth minimising the leave-one-out cross-validation score, on Dask arrays.

    The twin of :func:`nwattn.bandwidth.select_bandwidth`: the same score
    (:func:`loo_cv_error`), the same search (:func:`nwattn.bandwidth.search`)
    and the same result, each score (and, per feature, its gradient) being
    one Dask computation with the training set left distributed. One
    difference: from 50 000 samples on, the in-memory search starts from a
    pilot selection on a random subset of the points, which a distributed
    training set does not offer; this search walks from the rule of thumb
    instead, and both refine to the same minimum within the search's
    tolerance. With
    ``candidates``, no search: every candidate is scored in one
    ``dask.compute`` call, so the scheduler sees every task at once and the
    training chunks are read once.

    Parameters
    ----------
    X : dask.array.Array or array_like of shape (n_samples, n_features)
        Training points.
    y : dask.array.Array or array_like of shape (n_samples,) or (n_samples, n_outputs)
        Targets.
    kernel : str, default="gaussian"
        A name of :mod:`nwattn.kernels`.
    per_feature : bool, default=False
        Search one bandwidth per feature instead of a single one (not with
        ``candidates``, each of which is already a scalar or one value per
        feature).
    sample_weight : dask.array.Array or array_like of shape (n_samples,), default=None
        Non-negative weights (see :func:`loo_cv_error`).
    fallback : {"mean", "nearest"}, default="mean"
        Leave-one-out prediction of a point with an empty neighbourhood.
    tol : float, default=1e-4
        Tolerance of the search (see :func:`nwattn.bandwidth.search`).
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where each pooling task runs, as in :func:`attention_pool`. The
        gradient of a per-feature search has no GPU kernel: there
        ``"auto"`` means the CPU and ``"cuda"`` is refused.
    candidates : sequence, default=None
        Bandwidths to choose from (each a positive scalar or one value per
        feature) instead of searching; to see every candidate's score,
        compute :func:`loo_cv_error` for each of them.
    split_every : int, default=None
        Fan-in of the merge trees.
    algorithm : {"auto", "brute", "tree"}, default="auto"
        Which key tiles each task visits, as for
        :func:`nwattn.ops.attention_pool`, passed on to every task of every
        score and gradient: each chunk's keys are ordered and pruned on
        their own: the result is the in-memory one to rounding, whatever
        the chunking. ``"auto"`` decides for each task from its own chunk
        and the bandwidth being scored. A
        :class:`~nwattn.pruning.KeyTree` is refused (it orders a whole
        array of keys, not its chunks).
    verbose : int, default=0
        0 is silent; 1 prints a line on stderr for every evaluation of the
        score (one Dask computation) and for the selection, as
        :func:`nwattn.bandwidth.select_bandwidth` does; with
        ``candidates``, a line per candidate once the one computation that
        scores them all has finished (each with an equal share of its time).

    Returns
    -------
    BandwidthSelection
        ``(bandwidth, cv_score, n_evaluations)``, as in memory; with
        ``candidates``, the candidate of the smallest score (the first of
        equals) and ``n_evaluations = len(candidates)``.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from nwattn import bandwidth
    >>> from nwattn.dask import select_bandwidth
    >>> rng = np.random.default_rng(2)
    >>> X = rng.uniform(size=(400, 1))
    >>> y = np.sin(6 * X[:, 0]) + 0.1 * rng.normal(size=400)
    >>> dX, dy = da.from_array(X, chunks=150), da.from_array(y, chunks=150)
    >>> select_bandwidth(dX, dy, candidates=[0.003, 0.03, 0.3]).bandwidth
    0.03
    >>> sel = select_bandwidth(dX, dy, "epanechnikov")
    >>> want = bandwidth.select_bandwidth(X, y, "epanechnikov")
    >>> bool(abs(np.log(sel.bandwidth / want.bandwidth)) < 1e-3)
    True
    """
    kern = _check_kernel(kernel)
    per_feature = bool(per_feature)
    tol = check_tol(tol)
    fallback = check_fallback(fallback)
    device = check_device(device)
    algorithm = check_algorithm(algorithm, kern, device)
    split_every = check_split_every(split_every)
    if candidates is not None:
        if isinstance(candidates, (str, bytes)) or not hasattr(candidates, "__iter__"):
            raise ValueError(f"candidates must be a sequence of bandwidths, got {candidates!r}")
        candidates = list(candidates)
        if not candidates:
            raise ValueError("candidates must contain at least one bandwidth")
        if per_feature:
            raise ValueError("per_feature=True asks for a search; with candidates, give "
                             "per-feature candidates instead")
    elif per_feature and kern.name != "boxcar":
        backend_for(device, need="slopes", what="the gradient of the leave-one-out score")
    X, _, Y2, W = training_set(X, y, sample_weight)
    checked = ([_v.check_bandwidth(h, X.shape[1], np.float64, name="candidates")
                for h in candidates] if candidates is not None else None)
    verbose = check_verbose(verbose)
    m = moments(X, Y2, W)
    return _select(X, Y2, W, kern, m, per_feature=per_feature, fallback=fallback, tol=tol,
                   device=device, split_every=split_every, candidates=candidates,
                   checked=checked, algorithm=algorithm, verbose=verbose)


def _select(X, Y2, W, kern, m, *, per_feature, fallback, tol, device, split_every,
            candidates=None, checked=None, algorithm, verbose=0):
    """The body of :func:`select_bandwidth`, also the fit of the estimator on Dask arrays."""
    if m["n_positive"] < 2:
        raise ValueError(
            "leave-one-out cross-validation needs at least 2 samples with positive weight, "
            f"got n_samples={m['n_positive']}"
        )
    problem = _DaskLooProblem(X, Y2, W, kern, fallback, m, device, split_every, algorithm)
    if candidates is None:
        return search(problem, per_feature, tol, verbose=verbose)
    log = EvaluationLog("select_bandwidth", verbose)
    t0 = time.perf_counter()
    scores = np.array(dask.compute(*[problem.lazy_value(h) for h in checked]), dtype=float)
    scores = in_target_units(scores, problem.target_exponent)
    # One computation scores every candidate: each line gets an equal share of its time.
    share = (time.perf_counter() - t0) / len(checked)
    for h, score in zip(candidates, scores):
        log.evaluation(_format_bandwidth(h), score, share)
    best = int(np.argmin(scores))
    chosen = candidates[best]
    chosen = float(checked[best][0]) if np.ndim(chosen) == 0 else checked[best]
    log.done(f"selected {_format_bandwidth(chosen)}  score {scores[best]:.6g}")
    return BandwidthSelection(chosen, float(scores[best]), len(candidates))

"""Attention pooling on Dask arrays: data larger than one machine, exactly.

Two ways to split the work, usable together:

* **query sharding** — the queries are a Dask array cut into blocks of rows;
  every block is pooled independently. Keys held in memory are sent to the
  workers once (scattered, when a :class:`distributed.Client` is the current
  scheduler), not once per task.
* **key sharding** — the keys and values are themselves a Dask array cut
  into chunks of rows. Each (query block, key chunk) pair yields the
  online-softmax state of :func:`nwattn.ops.attention_pool_state`; the
  states of a query block are combined with the exact merge of
  :func:`nwattn.ops.merge_states` in a tree, then finalised. The result
  equals single-machine pooling up to rounding, whatever the chunking.

:func:`attention_pool`, :func:`local_polynomial`, :func:`span_radius`,
:func:`loo_cv_error` and :func:`predict` return lazy Dask arrays (or Dask
scalars); nothing is computed until ``.compute()`` (or
``dask.compute``), so any scheduler works: the threaded one, processes, or a
distributed cluster. :func:`select_bandwidth` computes, as its in-memory
twin does.

Leave-one-out cross-validation. :func:`loo_cv_error` and
:func:`select_bandwidth` compute the score defined in :mod:`nwattn.loo`, the
one of :func:`nwattn.bandwidth.loo_cv_score` (squared errors summed over
the outputs, the ``fallback`` for points without neighbours), and
:func:`select_bandwidth` runs the search of
:func:`nwattn.bandwidth.select_bandwidth` and returns the same
:class:`~nwattn.bandwidth.BandwidthSelection`.

Devices. ``device`` is passed on to every pooling task, which resolves it
on its worker: ``"cuda"`` pools on the workers' GPUs and ``"auto"`` chooses
for each (query block, key chunk) pair by its size; only the name is
checked on the client. The nearest-neighbour fallback and the gradient of a
per-feature bandwidth search run on the CPU (for the latter ``"cuda"`` is
refused, as in memory).

Pruning. ``algorithm`` (``"auto"``, ``"brute"`` or ``"tree"``, see
:mod:`nwattn.pruning`) is passed on to every (query block, key chunk) task,
which orders the keys of its own chunk in a k-d tree and visits only the
tiles that can reach its queries: the result is the in-memory one to
rounding, whatever the chunking. ``"auto"`` decides for each task from its
own chunk (small chunks stay brute force). A
:class:`~nwattn.pruning.KeyTree` orders one whole array of keys, so it
cannot be passed.

Concurrency. Dask's threaded workers call the compiled kernels from several
threads at once; :mod:`nwattn._parallel` makes that safe under every Numba
threading layer.

Empty neighbourhoods. A query with no key inside a compact kernel's support
is NaN in the result, as in memory. The
:class:`~nwattn.exceptions.EmptyNeighborhoodWarning` is raised by the task
that finalises the query's block, so on a distributed cluster it lands in
that worker's log; count the NaNs of the result to check from the client.
Key weights that are all zero raise a ValueError when computed, as in
memory. Blocks of no rows (from slicing or boolean indexing) are accepted
everywhere.

Local polynomials. :func:`local_polynomial` is the twin of
:func:`nwattn.ops.local_polynomial` (local linear and quadratic regression,
loess): the query-centred moments of every (query block, key chunk) pair
are merged in the same trees as pooling states, and each query block's
small least-squares problems are solved by one task, which also raises the
:class:`~nwattn.state.SingularDesignWarning` of its queries. With
``span``, the nearest-neighbour radii are over all the keys, exactly
(:func:`span_radius`).

Estimators. :class:`~nwattn.NadarayaWatsonRegressor` fits and predicts on
Dask arrays, and :class:`~nwattn.AttentionRegressor` predicts on them,
through :mod:`nwattn.dask.estimators`, which the estimators load when a
Dask array reaches them; the estimator's ``fallback`` for empty
neighbourhoods is applied block by block.

The package is split by concern: :mod:`~nwattn.dask.pool` (pooling),
:mod:`~nwattn.dask.local` (local polynomials), :mod:`~nwattn.dask.loo`
(cross-validation), :mod:`~nwattn.dask.blockwise`
(any estimator, block by block) and :mod:`~nwattn.dask.estimators`.
"""

from .loo import loo_cv_error, select_bandwidth
from .pool import attention_pool
from .local import local_polynomial, local_polynomial_interval, span_radius
from .blockwise import predict

__all__ = ["attention_pool", "local_polynomial", "local_polynomial_interval", "span_radius",
           "loo_cv_error", "select_bandwidth", "predict"]

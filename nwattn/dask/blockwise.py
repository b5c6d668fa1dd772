"""Any fitted estimator applied block by block to a Dask array of queries."""

import numpy as np

import dask
import dask.array as da

from ._inputs import current_client


def _predict_block(x, estimator, method, return_std, output_shape, dtype):
    """The estimator's method on one block of rows (one task).

    A block of no rows (Dask makes them, by slicing or boolean indexing)
    gets an empty result of the right shape without calling the method,
    which would refuse an empty array as scikit-learn estimators do.
    """
    if x.shape[0] == 0:
        return np.empty((0,) + ((2,) if return_std else ()) + tuple(output_shape), dtype)
    if return_std:
        # Both outputs in one block, split by the caller; so one task makes both.
        return np.stack(getattr(estimator, method)(x, return_std=True), axis=1)
    return getattr(estimator, method)(x)


def predict(estimator, X, *, method="predict", output_shape=None, return_std=False):
    """Apply a fitted estimator to a Dask array of queries, block by block.

    The estimator is sent to the workers once (scattered to every worker
    under a distributed client, one shared graph node otherwise) and each
    block of rows of ``X`` is predicted by one task.

    Parameters
    ----------
    estimator : object
        A fitted estimator (anything with the method ``method``, such as a
        scikit-learn regressor); it must be picklable for a distributed
        cluster.
    X : dask.array.Array of shape (n_queries, n_features)
        Queries, chunked along the rows (feature chunks are joined).
    method : str, default="predict"
        Name of the method to call on every block.
    output_shape : tuple of int, default=None
        Shape of the output of one query: ``()`` for one number per query,
        ``(n_outputs,)`` for a row. By default it is found by applying the
        method to the first row of ``X`` (which computes that row); it must
        be given when ``X`` has no rows.
    return_std : bool, default=False
        Call the method with ``return_std=True`` (as for the estimators of
        :mod:`nwattn`, or scikit-learn's
        :class:`~sklearn.gaussian_process.GaussianProcessRegressor`) and
        return both of its outputs.

    Returns
    -------
    dask.array.Array of shape (n_queries,) + output_shape
        Lazy predictions, chunked like the rows of ``X``; a block of no
        rows gives no rows, without calling the method.
    std : dask.array.Array of the same shape
        Only with ``return_std=True``; made by the same tasks as the
        predictions.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from sklearn.linear_model import LinearRegression
    >>> from nwattn.dask import predict
    >>> X = np.arange(20.0).reshape(10, 2)
    >>> model = LinearRegression().fit(X, X @ [1.0, 2.0])
    >>> out = predict(model, da.from_array(X, chunks=4))
    >>> out.chunks
    ((4, 4, 2),)
    >>> np.allclose(out.compute(), X @ [1.0, 2.0])
    True
    """
    if not isinstance(X, da.Array):
        raise TypeError(f"X must be a dask array, got {type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got an array of shape {X.shape}")
    if not isinstance(method, str) or not callable(getattr(estimator, method, None)):
        raise ValueError(f"the estimator has no method {method!r}")
    X = X.rechunk({1: -1})
    if output_shape is None:
        if X.shape[0] == 0:
            raise ValueError("output_shape is needed when X has no rows: it is found by "
                             "predicting the first row")
        sample = np.asarray(_predict_block(X[:1].compute(), estimator, method, return_std,
                                           (), None))
        output_shape, dtype = sample.shape[1 + bool(return_std):], sample.dtype
    else:
        output_shape, dtype = tuple(int(s) for s in output_shape), np.dtype(np.float64)
        if len(output_shape) > 1 or any(s < 1 for s in output_shape):
            raise ValueError(f"output_shape must be () or (n_outputs,), got {output_shape!r}")
    client = current_client()
    shared = dask.delayed(client.scatter(estimator, broadcast=True, hash=False)
                          if client is not None else estimator)
    if return_std:
        both = X.map_blocks(_predict_block, shared, method, True, output_shape, dtype,
                            dtype=dtype,
                            chunks=(X.chunks[0], (2,)) + tuple((s,) for s in output_shape),
                            new_axis=list(range(2, 2 + len(output_shape))),
                            meta=np.empty((0,) * (2 + len(output_shape)), dtype))
        return both[:, 0], both[:, 1]
    if output_shape:
        return X.map_blocks(_predict_block, shared, method, False, output_shape, dtype,
                            dtype=dtype, chunks=(X.chunks[0], output_shape),
                            meta=np.empty((0, 0), dtype))
    return X.map_blocks(_predict_block, shared, method, False, output_shape, dtype,
                        dtype=dtype, drop_axis=1, meta=np.empty((0,), dtype))

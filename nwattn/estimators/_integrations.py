"""Estimators on the arrays of other libraries: the hand-off to an integration.

The estimators compute on NumPy arrays. The arrays of a library that
computes elsewhere or lazily (Dask) are handed to an *integration module*
that runs the estimator's computation there. Integrations sit in the layer
above the estimators (they build on the estimators and on the bandwidth
search), so the estimators never import them statically: :data:`INTEGRATIONS`
maps the top-level package of an array's type to the integration's module,
imported with :func:`importlib.import_module` only when such an array
arrives, the way pandas loads its plotting backends. ``import nwattn`` and
fits on NumPy arrays thus import no integration, and no Dask.

An integration module provides:

``accepts(array) -> bool``
    Whether it computes on ``array`` (a library may have collections it
    leaves to the ordinary validation, which converts them to NumPy).
``nadaraya_watson_fit(estimator, X, y, sample_weight)``
    Validates the training set and chooses the bandwidth as the estimator's
    parameters say, without modifying the estimator. Returns the fitted
    quantities as an object with the attributes ``bandwidth``,
    ``cv_score``, ``X``, ``y``, ``sample_weight``, ``y_mean`` and
    ``n_features``, from which
    :meth:`~nwattn.NadarayaWatsonRegressor.fit` sets its own attributes.
``nadaraya_watson_predict(estimator, X, return_std)``
    :meth:`~nwattn.NadarayaWatsonRegressor.predict` with foreign queries or
    a foreign training set.
``predict(estimator, X, *, output_shape, return_std)``
    Any fitted estimator's ``predict`` applied to foreign queries (as
    :meth:`~nwattn.AttentionRegressor.predict` does).
"""

import importlib

#: Top-level package of an array type -> the integration module for it.
INTEGRATIONS = {"dask": "nwattn.dask.estimators"}


def integration_for(*arrays):
    """The integration module of the first argument that one accepts, or None.

    ``None`` arguments are skipped; NumPy arrays and array-likes of no
    registered library give None without importing anything.

    Examples
    --------
    >>> import numpy as np
    >>> from nwattn.estimators._integrations import integration_for
    >>> integration_for(np.ones(3), None) is None
    True
    """
    for array in arrays:
        if array is None:
            continue
        root = type(array).__module__.partition(".")[0]
        name = INTEGRATIONS.get(root)
        if name is None:
            continue
        module = importlib.import_module(name)
        if module.accepts(array):
            return module
    return None

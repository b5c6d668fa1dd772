"""NadarayaWatsonRegressor: scikit-learn conformance, reference formula, fallbacks."""

import pickle
import warnings

import numba
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from nwattn import NadarayaWatsonRegressor
from nwattn.exceptions import EmptyNeighborhoodWarning

from . import naive

_LOO_NOT_REPETITION = (
    "leave-one-out removes a sample entirely, while a sample repeated k times keeps k - 1 "
    "copies when one is left out, so cross-validation on repeated rows selects another "
    "bandwidth than on the weighted rows"
)


def _expected_failures(est):
    if est.bandwidth == "cv":
        return {"check_sample_weight_equivalence_on_dense_data": _LOO_NOT_REPETITION}
    return {}


@parametrize_with_checks(
    [
        NadarayaWatsonRegressor(),
        NadarayaWatsonRegressor("epanechnikov", 2.5, fallback="mean"),
        NadarayaWatsonRegressor("laplacian", "cv", bandwidth_per_feature=True, tol=1e-2),
        NadarayaWatsonRegressor("tricube", "scott", fallback="nearest", n_jobs=1),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_checks(estimator, check):
    check(estimator)

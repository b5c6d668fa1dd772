"""Categorical and ordered features of the kernel regressors: which columns, and their codes.

The estimators take ``categorical_features`` and ``ordered_features`` as
scikit-learn's ``HistGradientBoostingRegressor`` takes its
``categorical_features``: indices, a boolean mask, feature names, or
``"from_dtype"`` (the pandas ``category`` columns of a data frame, ordered
categoricals becoming ordered features). This module turns them into a
:class:`nwattn.discrete.DiscreteFeatures` at fit, and encodes data frames'
category columns as codes at fit and predict.
"""

import numpy as np
from sklearn.utils._param_validation import StrOptions

from ..discrete import DiscreteFeatures

#: Rules for a category at predict that the training set did not have.
UNKNOWN_RULES = ("error", "unequal")

#: The parameters' constraints, shared by the estimators.
CATEGORICAL_PARAMS = {
    "categorical_features": ["array-like", None, StrOptions({"from_dtype"})],
    "ordered_features": ["array-like", None],
    "categorical_kernel": [StrOptions({"aitchison_aitken", "li_racine"})],
    "ordered_kernel": [StrOptions({"li_racine", "wang_van_ryzin"})],
    "handle_unknown": [StrOptions(set(UNKNOWN_RULES))],
}


def _is_frame(X):
    return hasattr(X, "dtypes") and hasattr(X, "columns") and hasattr(X, "iloc")


def _category_columns(X):
    """``{position: ordered}`` of the pandas category columns of a data frame."""
    out = {}
    for k, dtype in enumerate(X.dtypes):
        if getattr(dtype, "name", None) == "category":
            out[k] = bool(dtype.ordered)
    return out


def _resolve(spec, n_features, names, param):
    """Column indices from indices, a boolean mask or feature names."""
    if spec is None:
        return []
    arr = np.asarray(spec)
    if arr.ndim != 1:
        raise ValueError(f"{param} must be 1-D (indices, a boolean mask or feature names), "
                         f"got shape {arr.shape}")
    if arr.size == 0:
        return []
    if arr.dtype.kind == "b":
        if arr.shape[0] != n_features:
            raise ValueError(f"{param} as a boolean mask must have one entry per feature "
                             f"({n_features}), got {arr.shape[0]}")
        return [int(k) for k in np.flatnonzero(arr)]
    if arr.dtype.kind in "iu":
        out = [int(k) for k in arr]
        bad = [k for k in out if not -n_features <= k < n_features]
        if bad:
            raise ValueError(f"{param} has the index {bad[0]}, out of range for "
                             f"{n_features} features")
        return [k % n_features for k in out]
    if arr.dtype.kind in "UO":
        if names is None:
            raise ValueError(f"{param} names features, but X has no feature names (give a "
                             f"data frame, or indices)")
        lookup = {str(nm): k for k, nm in enumerate(names)}
        out = []
        for nm in arr:
            if str(nm) not in lookup:
                raise ValueError(f"{param} names {nm!r}, which is not a feature of X")
            out.append(lookup[str(nm)])
        return out
    raise ValueError(f"{param} must hold indices, booleans or feature names, got dtype "
                     f"{arr.dtype}")


def encode_fit(estimator, X):
    """Replace a data frame's category columns by their codes; remember the categories.

    Returns the data as given, or a copy whose category columns hold
    codes (NaN for a missing value, refused later naming the feature). The
    categories of each column are kept in ``estimator._frame_categories``
    for :func:`encode_predict`.
    """
    estimator._frame_categories = {}
    if not _is_frame(X):
        return X
    cats = _category_columns(X)
    if not cats:
        return X
    X = X.copy()
    for k in cats:
        col = X.columns[k]
        estimator._frame_categories[k] = X[col].cat.categories
        codes = X[col].cat.codes.to_numpy().astype(np.float64)
        codes[codes < 0] = np.nan
        X[col] = codes
    return X


def encode_predict(estimator, X):
    """:func:`encode_fit` at predict, with the categories learnt at fit.

    A value outside those categories gets the code ``n_categories`` (a
    category no training point has), which :func:`check_query_codes`
    refuses or keeps by the estimator's ``handle_unknown``.
    """
    cats = getattr(estimator, "_frame_categories", {})
    if not cats or not _is_frame(X):
        return X
    import pandas as pd

    X = X.copy()
    for k, categories in cats.items():
        col = X.columns[k]
        values = X[col]
        missing = values.isna().to_numpy()
        codes = pd.Categorical(values, categories=categories).codes.astype(np.float64)
        codes[(codes < 0) & ~missing] = len(categories)
        codes[missing] = np.nan
        X[col] = codes
    return X


def discrete_spec(estimator, X):
    """The :class:`DiscreteFeatures` of a validated training set, or None.

    ``X`` is the array after ``validate_data`` (category columns of a data
    frame already codes). Sets ``feature_kinds_`` and ``n_categories_``.
    """
    d = X.shape[1]
    names = getattr(estimator, "feature_names_in_", None)
    frame_cats = getattr(estimator, "_frame_categories", {})
    cat_spec = estimator.categorical_features
    ordered = set(_resolve(estimator.ordered_features, d, names, "ordered_features"))
    if isinstance(cat_spec, str):
        if cat_spec != "from_dtype":
            raise ValueError(f"categorical_features must be indices, a mask, names or "
                             f"'from_dtype', got {cat_spec!r}")
        categorical = set(frame_cats) - ordered
        ordered |= {k for k in frame_cats if estimator._frame_ordered.get(k, False)}
        categorical -= ordered
    else:
        categorical = set(_resolve(cat_spec, d, names, "categorical_features"))
    both = categorical & ordered
    if both:
        k = min(both)
        raise ValueError(f"feature {k} is both in categorical_features and ordered_features")
    columns = sorted(categorical | ordered)
    kinds = np.array(["continuous"] * d, dtype=object)
    n_cat = np.zeros(d, dtype=np.intp)
    if not columns:
        estimator.feature_kinds_ = kinds
        estimator.n_categories_ = n_cat
        return None
    probe = DiscreteFeatures(columns, [1] * len(columns),
                             ordered=[k in ordered for k in columns],
                             categorical_kernel=estimator.categorical_kernel,
                             ordered_kernel=estimator.ordered_kernel, names=names)
    codes = probe.codes(X, "X")
    for i, k in enumerate(columns):
        if k in frame_cats:
            n_cat[k] = len(frame_cats[k])
        else:
            n_cat[k] = int(codes[:, i].max()) + 1 if codes.shape[0] else 1
        kinds[k] = "ordered" if k in ordered else "categorical"
    estimator.feature_kinds_ = kinds
    estimator.n_categories_ = n_cat
    return DiscreteFeatures(columns, n_cat[columns], ordered=[k in ordered for k in columns],
                            categorical_kernel=estimator.categorical_kernel,
                            ordered_kernel=estimator.ordered_kernel, names=names)


def check_query_codes(estimator, X):
    """Validate the codes of the queries; refuse unseen categories unless told otherwise."""
    disc = estimator.discrete_
    if disc is None:
        return
    codes = disc.codes(X, "X")
    if estimator.handle_unknown == "error":
        for i in range(disc.n_discrete):
            c = int(disc.n_categories[i])
            if codes.shape[0] and codes[:, i].max() >= c:
                raise ValueError(
                    f"{disc.label(i)} of X has a category unseen at fit (code "
                    f"{int(codes[:, i].max())}; the training set has codes 0 to {c - 1}); "
                    f"set handle_unknown='unequal' to weigh it as unlike every training "
                    f"category")


def fit_discrete(estimator, X_raw):
    """Before ``validate_data`` at fit: encode a data frame, note its ordered categoricals."""
    estimator._frame_ordered = (_category_columns(X_raw) if _is_frame(X_raw) else {})
    return encode_fit(estimator, X_raw)


def check_continuous_finite(estimator, X):
    """NaN and infinities refused in the continuous features (discrete ones are checked apart)."""
    disc = getattr(estimator, "discrete_", None)
    if disc is None:
        return
    cont = disc.continuous_columns(X.shape[1])
    if not np.all(np.isfinite(X[:, cont])):
        raise ValueError("Input X contains NaN or infinity in a continuous feature")


def mixed_bandwidth(estimator, X, y, kern, sample_weight):
    """``bandwidth_`` with discrete features: one value per feature, ``h`` or ``lam``.

    ``"cv"`` selects the continuous bandwidths and the discrete parameters
    jointly (:func:`nwattn.bandwidth.select_bandwidth`); fixed values are
    validated (``lam`` within its kernel's range). Sets ``cv_score_``.
    """
    from .. import bandwidth as _bw
    from .._parallel import threads

    disc = estimator.discrete_
    bw = estimator.bandwidth
    if estimator.span is not None:
        raise ValueError("span (nearest-neighbour bandwidths) is not available with "
                         "categorical or ordered features: give bandwidth='cv' or one value "
                         "per feature")
    if not kern.is_distance:
        raise ValueError(f"categorical and ordered features need a smoothing kernel; kernel "
                         f"{kern.name!r} is an attention score")
    if isinstance(bw, str) and bw == "cv":
        cv_fallback = "nearest" if estimator.fallback == "nearest" else "mean"
        with threads(estimator.n_jobs):
            sel = _bw.select_bandwidth(
                X, y, kern, per_feature=estimator.bandwidth_per_feature,
                sample_weight=sample_weight, fallback=cv_fallback, tol=estimator.tol,
                device=estimator.device, degree=getattr(estimator, "degree", 0),
                verbose=estimator.verbose, discrete=disc, algorithm=estimator.algorithm)
        estimator.cv_score_ = sel.cv_score
        return sel.bandwidth
    if isinstance(bw, str) or np.ndim(bw) == 0:
        raise ValueError(
            f"with categorical or ordered features, bandwidth must be 'cv' or one value per "
            f"feature ({X.shape[1]}: h for a continuous feature, lambda for a discrete one), "
            f"got {bw!r}")
    disc.split_bandwidth(bw, X.shape[1])
    return np.asarray(bw, dtype=np.float64).copy()


def nearest_continuous(estimator, X):
    """The nearest training point of each row of ``X`` (the ``"nearest"`` fallback).

    The package's one nearest-neighbour rule (distances scaled by the
    bandwidth, the lowest index among equals); with discrete features,
    over the continuous features only.
    """
    from ..loo import nearest_neighbor

    h = 1.0 if estimator.bandwidth_ is None else estimator.bandwidth_
    Xq, Xk = X, estimator.X_fit_
    disc = getattr(estimator, "discrete_", None)
    if disc is not None:
        cont = disc.continuous_columns(X.shape[1])
        Xq, Xk, h = X[:, cont], Xk[:, cont], np.asarray(h)[cont]
        if cont.size == 0:
            Xq, Xk, h = np.zeros((X.shape[0], 1)), np.zeros((Xk.shape[0], 1)), 1.0
    return nearest_neighbor(Xq, Xk, h, key_weight=estimator.sample_weight_).index

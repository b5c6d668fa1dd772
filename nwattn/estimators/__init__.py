"""scikit-learn estimators built on :mod:`nwattn.ops`."""

from ._attention import AttentionRegressor
from ._local_polynomial import LocalPolynomialRegressor
from ._nadaraya_watson import NadarayaWatsonRegressor

__all__ = ["AttentionRegressor", "LocalPolynomialRegressor", "NadarayaWatsonRegressor"]

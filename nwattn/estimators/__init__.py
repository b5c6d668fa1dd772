"""scikit-learn estimators built on :mod:`nwattn.ops`."""

from ._attention import AttentionRegressor
from ._nadaraya_watson import NadarayaWatsonRegressor

__all__ = ["AttentionRegressor", "NadarayaWatsonRegressor"]

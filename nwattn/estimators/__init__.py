"""scikit-learn estimators built on the attention-pooling operations."""

from ._nadaraya_watson import NadarayaWatsonRegressor

__all__ = ["NadarayaWatsonRegressor"]

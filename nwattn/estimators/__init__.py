"""scikit-learn estimators built on :mod:`nwattn.ops`."""

from ._attention import AttentionRegressor

__all__ = ["AttentionRegressor"]

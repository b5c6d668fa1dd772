"""nwattn: Numba-accelerated Nadaraya-Watson kernel regression and attention pooling.

Submodules are imported on first use, so ``import nwattn`` is cheap and
compiles nothing; the compute kernels are compiled (or loaded from Numba's
cache) the first time they are called.

Examples
--------
>>> import nwattn
>>> nwattn.ops.attention_pool([[0.0]], [[-1.0], [1.0]], [0.0, 2.0])
array([1.])
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nwattn")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_SUBMODULES = ("kernels", "ops", "state", "exceptions", "bandwidth", "neighbors")

# Estimators import scikit-learn, so they load on first use too.
_ESTIMATORS = {"AttentionRegressor": "estimators", "LocalPolynomialRegressor": "estimators",
               "NadarayaWatsonRegressor": "estimators"}

__all__ = ["__version__", *_SUBMODULES, *_ESTIMATORS]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _ESTIMATORS:
        return getattr(importlib.import_module(f"{__name__}.{_ESTIMATORS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))

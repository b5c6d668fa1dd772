"""Catalogue of smoothing kernels and attention scores.

Every kernel is stored in log-weight form. Attention pooling is a softmax
over the scores ``s(q, k)``; for a smoothing kernel ``K`` the score is
``log K(u)`` with ``u = ||(q - k) / h||``, so the softmax is exactly the
Nadaraya-Watson ratio and nothing under- or overflows however small the
bandwidth or however far a query lies from the data. Normalising constants
cancel in the ratio and are dropped.

The scalar functions below are plain ``@njit`` functions of the *squared*
scaled distance ``u2 = u**2`` (the kernels that need ``u`` itself take one
square root). They are written once and compiled for every target that
needs them: the CPU compute kernels call :func:`log_weight` in their inner
loop, and the CUDA kernels call the same function as a device function.

Examples
--------
>>> from nwattn.kernels import get_kernel
>>> k = get_kernel("Epanechnikov")
>>> k.name, k.support
('epanechnikov', 1.0)
>>> float(k(0.5))  # K(u) = 1 - u**2, unnormalised
0.75
"""

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

__all__ = [
    "Kernel",
    "KERNELS",
    "get_kernel",
    "kernel_names",
    "log_weight",
    "dlog_weight",
    "DISTANCE",
    "DOT",
    "ADDITIVE",
]

# Score families. A distance family scores a pair by a function of the scaled
# Euclidean distance; a dot family by the scaled inner product; the additive
# (Bahdanau) score is neither and needs learned parameters.
DISTANCE = 0
DOT = 1
ADDITIVE = 2

# Integer codes used by the compiled kernels to pick a log-weight function.
GAUSSIAN = 0
LAPLACIAN = 1
EPANECHNIKOV = 2
BOXCAR = 3
TRIANGULAR = 4
BIWEIGHT = 5
TRICUBE = 6
COSINE = 7
# Codes of the score kernels: they never reach ``log_weight``.
DOT_CODE = 100
SCALED_DOT_CODE = 101
ADDITIVE_CODE = 102

# Learned scores (AttentionRegressor): each compares projected inputs, so
# the kernels take the projections and a kind, never a bandwidth.
#: ``-||A q - A k||**2 / 2``.
RBF_KIND = 0
#: ``(W_q q) . (W_k k) / sqrt(r)``.
SCALED_DOT_KIND = 1
#: ``w_v . tanh(W_q q + W_k k)``.
ADDITIVE_KIND = 2
#: Kind of each learned score by name.
LEARNED_KINDS = {"rbf": RBF_KIND, "scaled_dot": SCALED_DOT_KIND, "additive": ADDITIVE_KIND}
#: ``(family, code)`` of the fixed score a learned score applies to its projections.
LEARNED_SCORES = {RBF_KIND: (DISTANCE, GAUSSIAN), SCALED_DOT_KIND: (DOT, SCALED_DOT_CODE),
                  ADDITIVE_KIND: (ADDITIVE, ADDITIVE_CODE)}

_HALF_PI = 0.5 * math.pi


@njit(cache=True)
def gaussian_log_weight(u2):
    """``log K`` of the gaussian kernel ``exp(-u**2 / 2)``."""
    return -0.5 * u2


@njit(cache=True)
def laplacian_log_weight(u2):
    """``log K`` of the laplacian kernel ``exp(-u)``."""
    return -math.sqrt(u2)


@njit(cache=True)
def epanechnikov_log_weight(u2):
    """``log K`` of the Epanechnikov kernel ``(1 - u**2)_+``."""
    if u2 < 1.0:
        return math.log1p(-u2)
    return -math.inf


@njit(cache=True)
def boxcar_log_weight(u2):
    """``log K`` of the boxcar kernel ``1{u <= 1}``."""
    if u2 <= 1.0:
        return 0.0
    return -math.inf


@njit(cache=True)
def triangular_log_weight(u2):
    """``log K`` of the triangular kernel ``(1 - u)_+``."""
    if u2 < 1.0:
        return math.log1p(-math.sqrt(u2))
    return -math.inf


@njit(cache=True)
def biweight_log_weight(u2):
    """``log K`` of the biweight kernel ``((1 - u**2)_+)**2``."""
    if u2 < 1.0:
        return 2.0 * math.log1p(-u2)
    return -math.inf


@njit(cache=True)
def tricube_log_weight(u2):
    """``log K`` of the tricube kernel ``((1 - u**3)_+)**3``."""
    if u2 < 1.0:
        u = math.sqrt(u2)
        return 3.0 * math.log1p(-u * u * u)
    return -math.inf


@njit(cache=True)
def cosine_log_weight(u2):
    """``log K`` of the cosine kernel ``cos(pi u / 2)`` on ``u < 1``."""
    if u2 < 1.0:
        return math.log(math.cos(_HALF_PI * math.sqrt(u2)))
    return -math.inf


@njit(cache=True)
def log_weight(code, u2):
    """Log-weight of the distance kernel ``code`` at squared distance ``u2``.

    The one dispatch point used by every compute kernel, CPU and GPU. The
    branch is on a value that is constant over a whole call, so it is
    perfectly predicted.
    """
    if code == GAUSSIAN:
        return gaussian_log_weight(u2)
    if code == LAPLACIAN:
        return laplacian_log_weight(u2)
    if code == EPANECHNIKOV:
        return epanechnikov_log_weight(u2)
    if code == BOXCAR:
        return boxcar_log_weight(u2)
    if code == TRIANGULAR:
        return triangular_log_weight(u2)
    if code == BIWEIGHT:
        return biweight_log_weight(u2)
    if code == TRICUBE:
        return tricube_log_weight(u2)
    return cosine_log_weight(u2)


@njit(cache=True)
def dlog_weight(code, u2):
    """Derivative of :func:`log_weight` with respect to ``u2``.

    Used by the gradient of the leave-one-out cross-validation score with
    respect to the log-bandwidths, where it always multiplies a weight and a
    squared coordinate difference. Outside the support (weight 0) it returns
    0, so that the product stays 0 instead of ``0 * inf``. At ``u2 = 0`` the
    derivative of the laplacian and triangular kernels is infinite, but the
    squared difference it multiplies vanishes faster (their product tends to
    0), so it returns 0 there too.
    """
    if code == GAUSSIAN:
        return -0.5
    if code == BOXCAR:
        return 0.0
    if code == EPANECHNIKOV:
        return -1.0 / (1.0 - u2) if u2 < 1.0 else 0.0
    if code == BIWEIGHT:
        return -2.0 / (1.0 - u2) if u2 < 1.0 else 0.0
    if u2 <= 0.0:
        if code == COSINE:
            return -0.125 * math.pi * math.pi  # the limit of the formula below
        return 0.0
    u = math.sqrt(u2)
    if code == LAPLACIAN:
        return -0.5 / u
    if u2 >= 1.0:
        return 0.0
    if code == TRIANGULAR:
        return -0.5 / (u * (1.0 - u))
    if code == TRICUBE:
        return -4.5 * u / (1.0 - u2 * u)
    return -0.25 * math.pi * math.tan(_HALF_PI * u) / u


@dataclass(frozen=True)
class Kernel:
    """A smoothing kernel or an attention score of the catalogue.

    Parameters
    ----------
    name : str
        Canonical name.
    code : int
        Integer code used by the compiled kernels.
    family : int
        ``DISTANCE``, ``DOT`` or ``ADDITIVE``.
    support : float
        Radius of the support in units of the bandwidth (``u < support``
        has positive weight); ``inf`` for kernels positive everywhere and for
        scores.
    formula : str
        ``K(u)`` or ``s(q, k)`` written out, for documentation.
    aliases : tuple of str
        Other accepted names.
    log_weight : callable or None
        The scalar ``@njit`` log-weight function of ``u**2`` (distance
        kernels only).

    Examples
    --------
    >>> from nwattn.kernels import KERNELS
    >>> KERNELS["gaussian"].aliases
    ('rbf',)
    >>> KERNELS["gaussian"].is_compact
    False
    """

    name: str
    code: int
    family: int
    support: float
    formula: str
    aliases: tuple = ()
    log_weight: object = field(default=None, repr=False, compare=False)

    @property
    def is_compact(self):
        """Whether the kernel vanishes beyond a finite radius."""
        return math.isfinite(self.support)

    @property
    def is_distance(self):
        """Whether the kernel is a function of the scaled distance."""
        return self.family == DISTANCE

    def __call__(self, u):
        """Evaluate the unnormalised kernel ``K(u)`` (distance kernels only).

        Parameters
        ----------
        u : array_like
            Scaled distances ``||(q - k) / h||``, non-negative.

        Returns
        -------
        ndarray
            ``K(u)``, with ``K(0) = 1``.
        """
        if not self.is_distance:
            raise TypeError(f"kernel {self.name!r} is a score, not a function of a distance")
        u = np.asarray(u, dtype=np.float64)
        flat = np.abs(u).ravel() ** 2
        out = np.array([self.log_weight(v) for v in flat], dtype=np.float64)
        return np.exp(out).reshape(u.shape)


_CATALOGUE = (
    Kernel("gaussian", GAUSSIAN, DISTANCE, math.inf, "exp(-u^2/2)", ("rbf",),
           gaussian_log_weight),
    Kernel("laplacian", LAPLACIAN, DISTANCE, math.inf, "exp(-u)", ("exponential",),
           laplacian_log_weight),
    Kernel("epanechnikov", EPANECHNIKOV, DISTANCE, 1.0, "(1 - u^2)_+", (),
           epanechnikov_log_weight),
    Kernel("boxcar", BOXCAR, DISTANCE, 1.0, "1 if u <= 1", ("tophat", "uniform"),
           boxcar_log_weight),
    Kernel("triangular", TRIANGULAR, DISTANCE, 1.0, "(1 - u)_+", ("linear",),
           triangular_log_weight),
    Kernel("biweight", BIWEIGHT, DISTANCE, 1.0, "((1 - u^2)_+)^2", ("quartic",),
           biweight_log_weight),
    Kernel("tricube", TRICUBE, DISTANCE, 1.0, "((1 - u^3)_+)^3", (),
           tricube_log_weight),
    Kernel("cosine", COSINE, DISTANCE, 1.0, "cos(pi u / 2) if u < 1", (),
           cosine_log_weight),
    Kernel("dot", DOT_CODE, DOT, math.inf, "q . k / h"),
    Kernel("scaled_dot", SCALED_DOT_CODE, DOT, math.inf, "q . k / (h sqrt(d))",
           ("scaled-dot", "sdpa")),
)

#: Every kernel of the catalogue by canonical name.
KERNELS = {k.name: k for k in _CATALOGUE}

_BY_ANY_NAME = {}
for _k in _CATALOGUE:
    for _alias in (_k.name,) + _k.aliases:
        _BY_ANY_NAME[_alias] = _k
del _k, _alias


def kernel_names(family=None):
    """Canonical names of the catalogue's kernels.

    Parameters
    ----------
    family : {None, "distance", "score"}, default=None
        Restrict to smoothing kernels (``"distance"``) or attention scores
        (``"score"``).

    Returns
    -------
    list of str

    Examples
    --------
    >>> from nwattn.kernels import kernel_names
    >>> kernel_names("score")
    ['dot', 'scaled_dot']
    """
    if family is None:
        return list(KERNELS)
    if family == "distance":
        return [k.name for k in _CATALOGUE if k.family == DISTANCE]
    if family == "score":
        return [k.name for k in _CATALOGUE if k.family != DISTANCE]
    raise ValueError(f"family must be None, 'distance' or 'score', got {family!r}")


def get_kernel(kernel, *, param="kernel"):
    """Look up a kernel of the catalogue by name (case-insensitive).

    Parameters
    ----------
    kernel : str or Kernel
        A canonical name or an alias; a :class:`Kernel` is returned as is.
    param : str, default="kernel"
        Parameter name used in error messages.

    Returns
    -------
    Kernel

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the valid names.
    TypeError
        If ``kernel`` is neither a string nor a :class:`Kernel`.

    Examples
    --------
    >>> from nwattn.kernels import get_kernel
    >>> get_kernel("TopHat").name
    'boxcar'
    """
    if isinstance(kernel, Kernel):
        return kernel
    if not isinstance(kernel, str):
        raise TypeError(f"{param} must be a string naming a kernel, got {type(kernel).__name__}")
    found = _BY_ANY_NAME.get(kernel.strip().lower())
    if found is None:
        valid = ", ".join(sorted(_BY_ANY_NAME))
        raise ValueError(f"unknown {param} {kernel!r}; valid names are: {valid}")
    return found

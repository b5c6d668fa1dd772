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
    "DiscreteKernel",
    "DISCRETE_KERNELS",
    "get_discrete_kernel",
    "discrete_weight",
    "discrete_dweight",
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



# ------------------------------------------------------------ discrete kernels
#
# A discrete (categorical) feature compares the category codes ``a`` (of the
# query) and ``b`` (of the key) with a kernel ``L(a, b; lam)`` of its own
# smoothing parameter ``lam``. A pair's weight is the continuous kernel of
# the continuous features times the product of the discrete kernels, so in
# the log domain the score gains one term ``log L`` per discrete feature.
# The compute kernels never evaluate these formulas per pair: for each
# feature the host tabulates ``log L[a, b]`` once (a few categories squared)
# and the inner loops add table lookups (see nwattn._cpu.discrete).

#: Aitchison-Aitken: ``1 - lam`` if equal, else ``lam / (c - 1)`` (unordered).
AITCHISON_AITKEN = 0
#: Li-Racine unordered: ``1`` if equal, else ``lam``.
LI_RACINE = 1
#: Wang-van Ryzin: ``1 - lam`` if equal, else ``(1 - lam) lam**|a - b| / 2`` (ordered).
WANG_VAN_RYZIN = 2
#: Li-Racine ordered: ``lam**|a - b|``.
LI_RACINE_ORDERED = 3


@njit(cache=True)
def discrete_weight(code, lam, a, b, c):
    """``L(a, b; lam)`` of the discrete kernel ``code`` for a feature of ``c`` categories.

    ``0**0`` is 1: at ``lam = 0`` the ordered kernels keep equal
    categories only, which is exact stratification.
    """
    if code == AITCHISON_AITKEN:
        if a == b:
            return 1.0 - lam
        return lam / (c - 1) if c > 1 else 0.0
    if code == LI_RACINE:
        return 1.0 if a == b else lam
    k = abs(a - b)
    if code == WANG_VAN_RYZIN:
        if k == 0:
            return 1.0 - lam
        return 0.5 * (1.0 - lam) * lam ** k
    return 1.0 if k == 0 else lam ** k


@njit(cache=True)
def discrete_dweight(code, lam, a, b, c):
    """``d L(a, b; lam) / d lam`` of :func:`discrete_weight`."""
    if code == AITCHISON_AITKEN:
        if a == b:
            return -1.0
        return 1.0 / (c - 1) if c > 1 else 0.0
    if code == LI_RACINE:
        return 0.0 if a == b else 1.0
    k = abs(a - b)
    if code == WANG_VAN_RYZIN:
        if k == 0:
            return -1.0
        # d/dlam of (1 - lam) lam**k / 2
        return 0.5 * (k * lam ** (k - 1) * (1.0 - lam) - lam ** k)
    return 0.0 if k == 0 else k * lam ** (k - 1)


@dataclass(frozen=True)
class DiscreteKernel:
    """A kernel of the catalogue for a discrete (categorical) feature.

    Parameters
    ----------
    name : str
        Canonical name.
    code : int
        Integer code used by :func:`discrete_weight`.
    ordered : bool
        Whether the kernel compares ordered categories (by ``|a - b|``) or
        unordered ones (equal or not).
    formula : str
        ``L(a, b; lam)`` written out, for documentation.
    aliases : tuple of str
        Other accepted names.

    Examples
    --------
    >>> from nwattn.kernels import DISCRETE_KERNELS
    >>> aa = DISCRETE_KERNELS["aitchison_aitken"]
    >>> aa.max_lambda(4)  # (c - 1) / c: every category weighs the same
    0.75
    >>> aa.weights(0.75, 4)[0].tolist()
    [0.25, 0.25, 0.25, 0.25]
    >>> DISCRETE_KERNELS["li_racine_ordered"].weights(0.5, 3)[0].tolist()
    [1.0, 0.5, 0.25]
    """

    name: str
    code: int
    ordered: bool
    formula: str
    aliases: tuple = ()

    def max_lambda(self, n_categories):
        """Largest admissible ``lam`` for a feature of ``n_categories`` categories.

        At this value the unordered kernels and the Li-Racine ordered
        kernel weigh every category alike, which removes the feature from
        the fit. The Wang-van Ryzin kernel is 0 everywhere at ``lam = 1``:
        its range is ``[0, 1)`` and it never removes a feature entirely.
        """
        if self.code == AITCHISON_AITKEN:
            c = int(n_categories)
            return (c - 1) / c if c > 1 else 0.0
        return 1.0

    @property
    def closed_above(self):
        """Whether :meth:`max_lambda` itself is admissible."""
        return self.code != WANG_VAN_RYZIN

    def weights(self, lam, n_categories, n_query_codes=None):
        """The table ``L[a, b]`` for query codes ``a`` and key codes ``b``.

        Parameters
        ----------
        lam : float
            The smoothing parameter.
        n_categories : int
            Number of categories ``c`` of the feature (key codes ``0 .. c - 1``).
        n_query_codes : int, default=None
            Number of query codes (rows); by default ``c``. Rows beyond
            ``c`` are categories no key has.

        Returns
        -------
        ndarray of shape (n_query_codes, n_categories)
        """
        c = int(n_categories)
        rows = c if n_query_codes is None else int(n_query_codes)
        out = np.empty((rows, c))
        for a in range(rows):
            for b in range(c):
                out[a, b] = discrete_weight(self.code, float(lam), a, b, c)
        return out

    def dweights(self, lam, n_categories, n_query_codes=None):
        """The table of ``d L[a, b] / d lam`` (see :meth:`weights`)."""
        c = int(n_categories)
        rows = c if n_query_codes is None else int(n_query_codes)
        out = np.empty((rows, c))
        for a in range(rows):
            for b in range(c):
                out[a, b] = discrete_dweight(self.code, float(lam), a, b, c)
        return out


_DISCRETE = (
    DiscreteKernel("aitchison_aitken", AITCHISON_AITKEN, False,
                   "1 - lam if a == b else lam / (c - 1)", ("aitchisonaitken", "aa")),
    DiscreteKernel("li_racine", LI_RACINE, False, "1 if a == b else lam",
                   ("liracine", "li-racine")),
    DiscreteKernel("wang_van_ryzin", WANG_VAN_RYZIN, True,
                   "1 - lam if a == b else (1 - lam) lam^|a - b| / 2",
                   ("wangvanryzin", "wang_ryzin", "wang-van-ryzin")),
    DiscreteKernel("li_racine_ordered", LI_RACINE_ORDERED, True, "lam^|a - b|", ()),
)

#: Every discrete kernel of the catalogue by canonical name.
DISCRETE_KERNELS = {k.name: k for k in _DISCRETE}


def get_discrete_kernel(kernel, *, ordered, param="categorical_kernel"):
    """Look up a discrete kernel by name for an unordered or an ordered feature.

    ``"li_racine"`` names the unordered kernel for an unordered feature and
    the ordered one (``"li_racine_ordered"``) for an ordered feature, as
    R's np package uses the name for both.

    Parameters
    ----------
    kernel : str or DiscreteKernel
        A name or alias (case-insensitive).
    ordered : bool
        Whether the feature is ordered.
    param : str, default="categorical_kernel"
        Parameter name used in error messages.

    Returns
    -------
    DiscreteKernel

    Examples
    --------
    >>> from nwattn.kernels import get_discrete_kernel
    >>> get_discrete_kernel("li_racine", ordered=True).name
    'li_racine_ordered'
    >>> get_discrete_kernel("Wang_Ryzin", ordered=True).name
    'wang_van_ryzin'
    """
    if isinstance(kernel, DiscreteKernel):
        found = kernel
    elif isinstance(kernel, str):
        key = kernel.strip().lower()
        found = None
        for k in _DISCRETE:
            if key == k.name or key in k.aliases:
                found = k
                break
        if found is not None and ordered and found.code == LI_RACINE:
            found = DISCRETE_KERNELS["li_racine_ordered"]
    else:
        raise TypeError(f"{param} must be a string naming a discrete kernel, got "
                        f"{type(kernel).__name__}")
    kind = "ordered" if ordered else "unordered"
    valid = sorted(k.name for k in _DISCRETE if k.ordered == ordered)
    if found is None or found.ordered != ordered:
        raise ValueError(f"unknown {param} {kernel!r} for {kind} features; valid names are: "
                         f"{', '.join(valid)}")
    return found

"""Discrete features: which columns hold category codes and how they are compared.

Mixed data (continuous and categorical features) are smoothed with a
product kernel, as in Racine and Li's ``np`` package [1]_ and statsmodels'
``KernelReg``: the weight of a pair is the continuous kernel of the
continuous features (with their bandwidths) times, for each discrete
feature, a discrete kernel ``L(a, b; lam)`` of the two category codes with
the feature's own smoothing parameter ``lam`` (see
:data:`nwattn.kernels.DISCRETE_KERNELS`). ``lam = 0`` keeps the categories
apart (the fit is stratified by the feature); the largest ``lam`` weighs
every category alike (the feature is smoothed out); values in between
borrow strength across categories.

:class:`DiscreteFeatures` describes the discrete columns once; the
low-level operations of :mod:`nwattn.ops` (``discrete=``), the
leave-one-out score and the estimators all take it. Its bandwidth
convention: one value per column of the inputs, the bandwidth ``h`` of a
continuous column and ``lam`` of a discrete one.

References
----------
.. [1] Q. Li and J. S. Racine, *Nonparametric Econometrics*, Princeton
   University Press, 2007, chapter 4 (regression with mixed data).

Examples
--------
>>> import numpy as np
>>> from nwattn.discrete import DiscreteFeatures
>>> from nwattn.ops import attention_pool
>>> X = np.array([[0.0, 0], [0.1, 1], [0.2, 0], [0.3, 1]])  # column 1: a category
>>> y = np.array([1.0, 10.0, 2.0, 20.0])
>>> disc = DiscreteFeatures([1], [2])
>>> attention_pool([[0.15, 0]], X, y, bandwidth=[0.5, 0.0], discrete=disc).round(3)
array([1.51])
>>> attention_pool([[0.15, 0]], X, y, bandwidth=[0.5, 0.5], discrete=disc).round(3)
array([8.205])
"""

import numpy as np

from . import _validation as _v
from .kernels import get_discrete_kernel

__all__ = ["DiscreteFeatures", "GRADIENT_FLOOR"]

#: Where a smoothing parameter is 0 the leave-one-out gradient is taken at
#: ``GRADIENT_FLOOR`` times its largest value instead: ``lam = 0`` gives
#: zero weights, whose ``d log L / d lam`` is infinite, while the weights
#: themselves are polynomials in ``lam``, so the score and its gradient
#: there differ from those at 0 by about this fraction.
GRADIENT_FLOOR = 1e-9


def _as_list(value, n, name):
    if isinstance(value, (str, bool, np.bool_)) or np.ndim(value) == 0:
        return [value] * n
    out = list(value)
    if len(out) != n:
        raise ValueError(f"{name} must have one entry per discrete column ({n}), got {len(out)}")
    return out


class DiscreteFeatures:
    """The discrete columns of a data set, their kernels and numbers of categories.

    Parameters
    ----------
    columns : sequence of int
        Indices of the discrete columns of the inputs; the other columns
        are continuous.
    n_categories : sequence of int
        Number of categories ``c`` of each discrete column: its values are
        the codes ``0 .. c - 1``. Keys must stay in that range; a query
        code ``>= c`` is a category no key has (unordered kernels weigh it
        as different from every key's; ordered ones by its distance).
    ordered : bool or sequence of bool, default=False
        Whether each column is ordered (compared by ``|a - b|``).
    categorical_kernel : {"aitchison_aitken", "li_racine"}, default="aitchison_aitken"
        Kernel of the unordered columns.
    ordered_kernel : {"li_racine", "wang_van_ryzin"}, default="li_racine"
        Kernel of the ordered columns.
    names : sequence of str, default=None
        Names of all the columns, for error messages.

    Attributes
    ----------
    kernels : tuple of nwattn.kernels.DiscreteKernel
        Kernel of each discrete column.
    max_lambdas : ndarray of shape (n_discrete,)
        Largest smoothing parameter of each discrete column.

    Examples
    --------
    >>> from nwattn.discrete import DiscreteFeatures
    >>> disc = DiscreteFeatures([0, 2], [3, 5], ordered=[False, True])
    >>> [k.name for k in disc.kernels]
    ['aitchison_aitken', 'li_racine_ordered']
    >>> disc.max_lambdas.round(3).tolist()
    [0.667, 1.0]
    >>> disc.continuous_columns(4).tolist()
    [1, 3]
    """

    def __init__(self, columns, n_categories, *, ordered=False,
                 categorical_kernel="aitchison_aitken", ordered_kernel="li_racine",
                 names=None):
        cols = [int(c) for c in np.atleast_1d(np.asarray(columns))]
        if len(set(cols)) != len(cols) or any(c < 0 for c in cols):
            raise ValueError(f"columns must be distinct non-negative indices, got {cols}")
        self.columns = np.array(cols, dtype=np.intp)
        f = len(cols)
        ncat = [int(c) for c in _as_list(n_categories, f, "n_categories")]
        if any(c < 1 for c in ncat):
            raise ValueError(f"n_categories must be positive, got {ncat}")
        self.n_categories = np.array(ncat, dtype=np.intp)
        self.ordered = np.array([bool(o) for o in _as_list(ordered, f, "ordered")], dtype=bool)
        self.kernels = tuple(
            get_discrete_kernel(ordered_kernel, ordered=True, param="ordered_kernel") if o
            else get_discrete_kernel(categorical_kernel, ordered=False,
                                     param="categorical_kernel")
            for o in self.ordered)
        self.names = None if names is None else [str(n) for n in names]
        self.max_lambdas = np.array([k.max_lambda(c) for k, c in
                                     zip(self.kernels, self.n_categories)], dtype=np.float64)

    def __repr__(self):
        return (f"DiscreteFeatures(columns={self.columns.tolist()}, "
                f"n_categories={self.n_categories.tolist()}, "
                f"kernels={[k.name for k in self.kernels]})")

    @property
    def n_discrete(self):
        """Number of discrete columns."""
        return int(self.columns.shape[0])

    def continuous_columns(self, n_features):
        """Indices of the continuous columns among ``n_features``."""
        mask = np.ones(int(n_features), dtype=bool)
        mask[self.columns] = False
        return np.flatnonzero(mask)

    def label(self, k):
        """How error messages name discrete column number ``k``."""
        col = int(self.columns[k])
        kind = "ordered" if self.ordered[k] else "categorical"
        if self.names is not None and col < len(self.names):
            return f"{kind} feature {self.names[col]!r} (column {col})"
        return f"{kind} feature {col}"

    def check_columns(self, n_features):
        """Refuse column indices beyond ``n_features``."""
        if self.n_discrete and int(self.columns.max()) >= n_features:
            raise ValueError(f"discrete column {int(self.columns.max())} is out of range for "
                             f"inputs of {n_features} features")

    def codes(self, X, name="X", keys=False):
        """The category codes of the discrete columns of ``X``, validated.

        Parameters
        ----------
        X : array_like of shape (n, n_features)
            Inputs whose discrete columns hold category codes (as numbers).
        name : str, default="X"
            Name of ``X`` in error messages.
        keys : bool, default=False
            Whether these are keys (codes must then be below the number of
            categories).

        Returns
        -------
        ndarray of shape (n, n_discrete), intp

        Raises
        ------
        ValueError
            Naming the feature, for NaN, infinite, negative or fractional
            codes, and for keys' codes beyond the categories.
        """
        A = np.asarray(X)
        if A.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got {A.ndim} dimension(s)")
        self.check_columns(A.shape[1])
        return self.check_codes(A[:, self.columns], name, keys)

    def check_codes(self, C, name="X", keys=False):
        """:meth:`codes` of the discrete columns alone, ``C`` of shape (n, n_discrete).

        For inputs whose discrete columns were gathered apart (those that
        live on the GPU send only these columns to the host).

        Examples
        --------
        >>> import numpy as np
        >>> from nwattn.discrete import DiscreteFeatures
        >>> DiscreteFeatures([2], [3]).check_codes(np.array([[0.0], [2.0]]), keys=True).ravel()
        array([0, 2])
        """
        A = np.asarray(C)
        out = np.empty((A.shape[0], self.n_discrete), dtype=np.intp)
        for k in range(self.n_discrete):
            try:
                v = np.asarray(A[:, k], dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{self.label(k)} of {name} must hold category codes "
                                 f"(non-negative whole numbers)") from None
            if not np.all(np.isfinite(v)):
                raise ValueError(f"{self.label(k)} of {name} has NaN or infinite category "
                                 f"codes; codes must be non-negative whole numbers")
            if np.any(v != np.floor(v)):
                bad = v[v != np.floor(v)][0]
                raise ValueError(f"{self.label(k)} of {name} has the non-integer value "
                                 f"{float(bad)!r}; category codes must be non-negative whole "
                                 f"numbers")
            if np.any(v < 0):
                raise ValueError(f"{self.label(k)} of {name} has the negative code "
                                 f"{float(v.min())!r}; category codes must be non-negative")
            c = int(self.n_categories[k])
            if keys and v.size and v.max() >= c:
                raise ValueError(f"{self.label(k)} of {name} has the code {int(v.max())}, "
                                 f"beyond its {c} categories (codes 0 to {c - 1})")
            out[:, k] = v.astype(np.intp)
        return out

    def split_bandwidth(self, bandwidth, n_features):
        """``(h, lam)``: the continuous bandwidths and the discrete parameters, validated.

        ``bandwidth`` has one entry per column: ``h > 0`` for a continuous
        column, ``lam`` in the kernel's range for a discrete one.
        """
        b = np.asarray(bandwidth, dtype=np.float64)
        if b.ndim != 1 or b.shape[0] != n_features:
            raise ValueError(
                f"with discrete features the bandwidth must hold one value per feature "
                f"({n_features}: h for a continuous feature, lambda for a discrete one), "
                f"got shape {b.shape}")
        cont = self.continuous_columns(n_features)
        h = _v.check_bandwidth(b[cont], cont.shape[0], np.float64) if cont.size else b[cont]
        lam = b[self.columns]
        self.check_lambdas(lam)
        return h, lam

    def check_lambdas(self, lam):
        """Refuse smoothing parameters outside their kernels' ranges."""
        lam = np.asarray(lam, dtype=np.float64)
        for k, kern in enumerate(self.kernels):
            top = self.max_lambdas[k]
            ok = 0.0 <= lam[k] <= top if kern.closed_above else 0.0 <= lam[k] < top
            if not ok:
                bracket = "]" if kern.closed_above else ")"
                raise ValueError(f"lambda of {self.label(k)} must be in [0, {top:.6g}"
                                 f"{bracket} for the {kern.name} kernel, got {lam[k]!r}")

    def tables(self, lam, n_query_codes, dtype=np.float64, slopes=False):
        """``(LT, DT)``: the log-weights ``log L[f, a, b]`` and their slopes in ``lam``.

        Shapes ``(n_discrete, n_query_codes, max n_categories)``; ``LT`` is
        ``-inf`` where a weight is 0, ``DT`` (``d log L / d lam``, only
        with ``slopes``, else ``LT`` itself) is 0 there.
        """
        f = self.n_discrete
        ck = int(self.n_categories.max()) if f else 1
        cq = max(ck, int(n_query_codes))
        LT = np.full((f, cq, ck), -np.inf)
        DT = np.zeros((f, cq, ck))
        for k, kern in enumerate(self.kernels):
            c = int(self.n_categories[k])
            L = kern.weights(lam[k], c, cq)
            with np.errstate(divide="ignore"):
                LT[k, :, :c] = np.log(L)
            if slopes:
                dL = kern.dweights(lam[k], c, cq)
                DT[k, :, :c] = np.where(L > 0, dL / np.where(L > 0, L, 1.0), 0.0)
        LT = np.ascontiguousarray(LT, dtype=dtype)
        return LT, (np.ascontiguousarray(DT, dtype=dtype) if slopes else LT)

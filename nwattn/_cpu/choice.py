"""What one compiled sweep computes: its strategies and kernel, as constants.

A sweep's strategies (score, absorb) and its kernel (family, code) decide
which of the inner loops of :mod:`nwattn._cpu.strategies`,
:mod:`nwattn._cpu.rows` and :mod:`nwattn._cpu.moments` run. Passed as
integers, they would be runtime values: Numba would type, inline and
compile every strategy and every kernel's loop into each specialisation
of the sweep, and LLVM would optimise them all. A :class:`SweepChoice`
names them instead, and each choice compiles its own tasks
(:func:`nwattn._cpu.sweep.row_tasks`, :func:`~nwattn._cpu.sweep.matrix_tasks`)
with the four numbers as closure constants: Numba prunes every branch on
them before it inlines anything (its dead branch pruning folds
comparisons between constants, not comparisons of runtime or literal
arguments), and only the chosen loops are compiled. Constants of a
closure are part of the key of Numba's on-disk cache, so each choice is
cached like any other function.
"""

import functools


class SweepChoice:
    """The strategies and kernel of one compiled sweep (see the module docstring).

    Parameters
    ----------
    score, absorb : int
        The score and absorb strategies (:mod:`nwattn._cpu.strategies`).
    family, code : int
        The kernel's family and code (:mod:`nwattn.kernels`); a learned
        score passes its kind as ``family``.

    Examples
    --------
    >>> from nwattn._cpu.choice import sweep_choice
    >>> from nwattn._cpu.strategies import KERNEL, POOL
    >>> from nwattn.kernels import get_kernel
    >>> kern = get_kernel("gaussian")
    >>> choice = sweep_choice(KERNEL, POOL, kern.family, kern.code)
    >>> choice is sweep_choice(KERNEL, POOL, kern.family, kern.code)
    True
    >>> choice
    SweepChoice(score=0, absorb=0, family=0, code=0)
    """

    __slots__ = ("score", "absorb", "family", "code")

    def __init__(self, score, absorb, family, code):
        self.score = int(score)
        self.absorb = int(absorb)
        self.family = int(family)
        self.code = int(code)

    def __repr__(self):
        return (f"SweepChoice(score={self.score}, absorb={self.absorb}, "
                f"family={self.family}, code={self.code})")


@functools.lru_cache(maxsize=None)
def sweep_choice(score, absorb, family, code):
    """The one :class:`SweepChoice` of these four numbers.

    Examples
    --------
    >>> from nwattn._cpu.choice import sweep_choice
    >>> sweep_choice(0, 0, 0, 2).code
    2
    """
    return SweepChoice(score, absorb, family, code)

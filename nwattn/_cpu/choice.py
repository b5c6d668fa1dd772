"""What one compiled sweep computes, as a type Numba compiles against.

A sweep's strategies (score, absorb) and its kernel (family, code) decide
which of the inner loops of :mod:`nwattn._cpu.strategies`,
:mod:`nwattn._cpu.rows` and :mod:`nwattn._cpu.moments` run. Passed as
integers, they would be runtime values: Numba would type, inline and
compile every strategy and every kernel's loop into each specialisation
of the sweep, and LLVM would optimise them all. A :class:`SweepChoice`
carries them in its *type* instead, so each choice compiles its own task
body (:func:`nwattn._cpu.sweep.row_task`) in which they are constants:
Numba prunes every branch on them before it inlines anything (its dead
branch pruning folds comparisons between constants, not comparisons of
runtime or literal arguments), and only the chosen loops are compiled.

The type is deterministic (its name is the four numbers), so a sweep
specialised on it is kept in Numba's on-disk cache like any other
signature. It holds no data: a choice's value is never read at run time.
"""

import functools

from numba.core import types
from numba.extending import NativeValue, models, register_model, typeof_impl, unbox


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
    >>> from numba import typeof
    >>> typeof(choice)
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


class SweepChoiceType(types.Type):
    """Numba type of a :class:`SweepChoice`: the four numbers, known when compiling."""

    def __init__(self, score, absorb, family, code):
        self.score = score
        self.absorb = absorb
        self.family = family
        self.code = code
        super().__init__(name=f"SweepChoice(score={score}, absorb={absorb}, "
                              f"family={family}, code={code})")


@typeof_impl.register(SweepChoice)
def _typeof_choice(val, c):
    return SweepChoiceType(val.score, val.absorb, val.family, val.code)


# Nothing to carry at run time: the value is an opaque null pointer.
register_model(SweepChoiceType)(models.OpaqueModel)


@unbox(SweepChoiceType)
def _unbox_choice(typ, obj, c):
    return NativeValue(c.context.get_dummy_value())

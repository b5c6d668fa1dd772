"""The low-level API imports without scikit-learn or SciPy's optimisers.

``import nwattn.ops`` is what a user of the compute functions pays before the
first call; scikit-learn alone used to add seconds to it. Speed itself is
measured by the benchmarks; this test checks the structure that keeps the
import light, in a fresh interpreter so that nothing already imported by the
test session hides a heavy import.
"""

import os
import subprocess
import sys
from pathlib import Path

import nwattn

# The checkout under test, ahead of any installed copy in the subprocess.
_ROOT = str(Path(nwattn.__file__).resolve().parents[1])


def _modules_after(statement):
    """Modules of sklearn, scipy and nwattn loaded by ``statement`` in a fresh interpreter,
    and the file ``nwattn`` came from."""
    code = (f"import sys; {statement}; import nwattn; print(nwattn.__file__); "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('sklearn', 'scipy', 'nwattn'))))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    origin, modules = out.stdout.splitlines()
    return Path(origin), set(modules.split())


def test_ops_import_loads_neither_sklearn_nor_scipy_optimize():
    origin, loaded = _modules_after("import nwattn.ops")
    assert origin.resolve().is_relative_to(Path(_ROOT))  # this checkout, not another copy
    assert "nwattn.ops" in loaded
    assert "sklearn" not in loaded
    assert "scipy.optimize" not in loaded
    # Nor the parts of nwattn that need them.
    assert "nwattn.bandwidth" not in loaded
    assert "nwattn.estimators" not in loaded

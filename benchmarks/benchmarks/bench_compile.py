"""Cost of the first call in a fresh process: Numba compilation or cache load.

Each benchmark starts a new interpreter, imports nwattn and pools a tiny
problem once, so the time includes interpreter start-up and imports, which
is what a user waits for. ``warm_cache`` reuses Numba's on-disk cache
(filled in ``setup``); ``cold_cache`` points Numba at an empty cache
directory, so everything the call needs is compiled.
"""

import os
import subprocess
import sys
import tempfile

SCRIPT = (
    "import numpy as np\n"
    "from nwattn.ops import attention_pool\n"
    "rng = np.random.default_rng(0)\n"
    "X = rng.normal(size=(50, 3)).astype({dtype!r})\n"
    "attention_pool(X, X, X[:, 0], {kernel!r}, 1.0)\n"
)


def _run(code, env=None):
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


class FirstCall:
    params = (["gaussian", "epanechnikov"], ["float64", "float32"])
    param_names = ["kernel", "dtype"]
    number = 1
    repeat = 3
    timeout = 600

    def setup(self, kernel, dtype):
        self.code = SCRIPT.format(kernel=kernel, dtype=dtype)
        _run(self.code)  # fill the on-disk cache

    def time_compile_warm_cache(self, kernel, dtype):
        _run(self.code)


class FirstCallColdCache:
    params = (["float64"],)
    param_names = ["dtype"]
    number = 1
    repeat = 1
    timeout = 600

    def setup(self, dtype):
        self.code = SCRIPT.format(kernel="gaussian", dtype=dtype)

    def time_compile_cold_cache(self, dtype):
        with tempfile.TemporaryDirectory() as cache:
            _run(self.code, env=dict(os.environ, NUMBA_CACHE_DIR=cache))

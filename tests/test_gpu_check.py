"""benchmarks/gpu_check.sh, the check of the GPU path on a real GPU, in its dry mode.

``DRY=1`` runs the script's steps on tiny sizes under numba-cuda's CUDA
simulator, so the script itself is checked on any machine. This test runs
its two fastest steps (the smoke test and two correctness cases at the
default launch sizes) within a small time plan, and checks that both report
OK in summary.txt.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"

pytestmark = [
    pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not available"),
    pytest.mark.skipif(shutil.which("timeout") is None,
                       reason="the script's time limits need coreutils' timeout"),
    pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                       reason="numba-cuda (and its simulator) is not installed"),
]


def test_dry_run_of_the_fastest_steps(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, DRY="1", STEPS="smoke,correctness", CASES="gaussian float64",
               DEVCHECK_SECONDS="90", OUT=str(out), PYTHON=sys.executable,
               TMPDIR=str(tmp_path))
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=150)
    summary = (out / "summary.txt").read_text() if (out / "summary.txt").exists() else ""
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    lines = summary.splitlines()
    for number, name in (("1", "smoke"), ("2", "correctness")):
        assert any(line.startswith(f"OK    {number} {name}") for line in lines), summary
    assert not any(line.startswith(("FAIL", "TIME", "SKIP")) for line in lines), summary
    assert "CORRECTNESS: 2 passed, 0 failed" in summary
    assert (out / "env.txt").exists() and (out / "log.txt").exists()

"""benchmarks/gpu_sass.py: SASS counts of the GPU pooling kernel, without a GPU.

The script runs in a process of its own: the test session may have chosen
numba-cuda's simulator, which has no compiler. It needs NVVM, ptxas and
nvdisasm, which machines without a CUDA toolkit lack; it then exits with
its own status and the test is skipped.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_sass.py"
EXIT_NO_TOOLS = 3  # gpu_sass.EXIT_NO_TOOLS

COLUMNS = ["case", "registers", "local bytes", "shared bytes", "instructions per pair",
           "of which 64-bit integer", "float64", "MUFU"]


def _run(*args):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=600)
    if done.returncode == EXIT_NO_TOOLS:
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _simple_table_rows(text):
    """Rows of a reST simple table, cut at the columns of its rules."""
    import re

    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("..")]
    rule = lines[0]
    assert set(rule) <= {"=", " "}
    spans = [(m.start(), m.end()) for m in re.finditer(r"=+", rule)]
    assert [ln for ln in lines if ln == rule] == [rule] * 3
    return [[ln[a:(b if k < len(spans) - 1 else None)].strip()
             for k, (a, b) in enumerate(spans)] for ln in lines if ln != rule]


def test_counts_of_one_small_case(tmp_path):
    rst = tmp_path / "sass.rst"
    out = _run("--case", "gaussian:3:1:float32", "--rst", str(rst))
    text = rst.read_text()
    rows = _simple_table_rows(text)
    assert rows[0] == COLUMNS
    assert len(rows) == 2 and rows[1][0] == "gaussian d=3 p=1 float32"
    # per pair: a whole number divided by the queries per thread, 1 to 4 (a
    # loop iteration scores one key against each of them), so a multiple of 1/12
    counts = [float(c) for c in rows[1][1:]]
    registers, local, shared, per_pair, int64, float64, mufu = counts
    assert all(float(int(c)) == c for c in (registers, local, shared))
    assert all(float(int(c * 12)) == c * 12 for c in (per_pair, int64, float64, mufu))
    assert registers > 0 and shared > 0 and per_pair > 0 and local >= 0
    assert mufu >= 1  # the float32 exp is one ex2 of the special-function unit
    assert float64 == 0  # the float32 gaussian runs no double instruction
    assert 0 <= int64 < per_pair
    # The plain-text table holds the same row.
    line = next(ln for ln in out.splitlines() if ln.startswith("gaussian d=3 p=1 float32"))
    assert line.split()[4:] == rows[1][1:]
    docutils = pytest.importorskip("docutils.core")
    tree = docutils.publish_doctree(text, settings_overrides={"report_level": 5})
    nodes = getattr(tree, "findall", tree.traverse)()  # findall: docutils >= 0.18
    entries = [n for n in nodes if n.tagname == "entry"]
    assert len(entries) == 2 * len(COLUMNS)

"""The documentation stays in step with the code.

The gallery scripts run here as well as in the documentation build, so a
change of the API that breaks an example fails the test suite; so do the
``>>>`` examples of the narrative pages. The kernel table and the API
reference must name every kernel and public function.
"""

import doctest
import importlib.util
import re
import runpy
from pathlib import Path

import pytest

import nwattn
from nwattn import exceptions, kernels, ops, state

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("plot_*.py"))
# Narrative pages whose code is written as doctests.
DOCTEST_PAGES = ["getting_started.rst", "nadaraya_watson.rst", "local_polynomial.rst",
                 "attention_regressor.rst", "coming_from.rst"]


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_gallery_example_runs(script, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib", reason="matplotlib (the demo extra) is not installed")
    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(script.parent)
    try:
        runpy.run_path(str(script), run_name="__main__")
        assert plt.get_fignums(), f"{script.name} draws no figure"
    finally:
        plt.close("all")


@pytest.mark.parametrize("page", DOCTEST_PAGES)
def test_page_examples_run(page):
    path = ROOT / "docs" / page
    assert ">>> " in path.read_text(encoding="utf-8"), f"{page} has no examples"
    result = doctest.testfile(str(path), module_relative=False, verbose=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {page} failed"


def test_kernel_table_lists_every_kernel_and_alias():
    text = (ROOT / "docs" / "kernels.rst").read_text(encoding="utf-8")
    documented = set(re.findall(r"``([a-z_-]+)``", text))
    for kern in kernels.KERNELS.values():
        for name in (kern.name, *kern.aliases):
            assert name in documented, f"kernel {name!r} missing from docs/kernels.rst"


def test_api_reference_lists_every_public_function():
    text = (ROOT / "docs" / "api.rst").read_text(encoding="utf-8")
    listed = set(re.findall(r"^   (\w+)$", text, flags=re.M))
    constants = {"DISTANCE", "DOT", "ADDITIVE"}  # described in prose
    for module in (ops, state, kernels, exceptions):
        for name in module.__all__:
            if name in constants:
                assert f"``{name}``" in text
                continue
            if module is ops and name in state.__all__:
                continue  # re-exported from nwattn.state, documented there
            assert name in listed, f"{module.__name__}.{name} missing from docs/api.rst"


def test_api_reference_lists_every_top_level_name():
    text = (ROOT / "docs" / "api.rst").read_text(encoding="utf-8")
    listed = set(re.findall(r"^   (\w+)$", text, flags=re.M))
    for name in nwattn.__all__:
        if name == "__version__":
            continue
        if importlib.util.find_spec(f"nwattn.{name}") is not None:
            assert f".. automodule:: nwattn.{name}" in text, f"module nwattn.{name} undocumented"
        else:
            assert name in listed, f"nwattn.{name} missing from docs/api.rst"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    fence = [i for i, line in enumerate(readme) if line.startswith("```")]
    install_and_demo, install_and_test = readme[fence[0] + 1:fence[1]]
    assert "nwattn demo" in install_and_demo
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert install_and_test in ci_lines

"""The package metadata is complete and says one thing in one place.

The version is written once, in ``pyproject.toml``; the package and the
documentation read it from the installed metadata, and the changelog's newest
section names it (or the next one, marked unreleased). Building the
distributions and installing the wheel into a fresh environment is done by
``.ci/run``, not here: it needs the network and minutes.
"""

import re
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import nwattn

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
# Python versions the classifiers must list: the supported 3.x releases.
SUPPORTED = ["3.10", "3.11", "3.12", "3.13"]


def test_classifiers_name_every_supported_python_and_no_other():
    listed = {c.rsplit(" :: ", 1)[1] for c in PROJECT["classifiers"]
              if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    assert listed == set(SUPPORTED)
    requires = SpecifierSet(PROJECT["requires-python"])
    for minor in SUPPORTED:
        assert Version(minor) in requires, f"requires-python excludes {minor}"
    below = f"3.{int(SUPPORTED[0].split('.')[1]) - 1}"
    assert Version(below) not in requires, f"requires-python admits {below}, not classified"


def test_license_is_an_spdx_expression_with_its_file():
    assert PROJECT["license"] == "BSD-3-Clause"
    # A License :: classifier beside an SPDX expression is refused by PEP 639.
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]
    for name in PROJECT["license-files"]:
        text = (ROOT / name).read_text(encoding="utf-8")
        assert "BSD 3-Clause" in text and "Redistribution and use" in text


def test_version_is_written_only_in_pyproject():
    assert nwattn.__version__ == version("nwattn"), "nwattn.__version__ is not the metadata's"
    assert version("nwattn") == PROJECT["version"], (
        "the installed metadata is not pyproject.toml's version: reinstall the package")
    for path in (ROOT / "nwattn").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        # A version number written out; the fallback "0+unknown" of a source
        # tree that is not installed is not one.
        assert not re.search(r"__version__\s*=\s*['\"]\d+\.", text), f"version literal in {path}"
    conf = (ROOT / "docs" / "conf.py").read_text(encoding="utf-8")
    assert "release = nwattn.__version__" in conf


def test_changelog_starts_with_this_version_or_the_next_unreleased_one():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    heading = re.search(r"^## (\d+\.\d+\.\d+)(.*)$", text, flags=re.M)
    assert heading, "CHANGELOG.md has no '## X.Y.Z' section"
    top, rest = Version(heading.group(1)), heading.group(2)
    current = Version(PROJECT["version"])
    assert top >= current, f"the changelog's newest section {top} is older than {current}"
    if top > current:
        assert "unreleased" in rest.lower(), f"section {top} is ahead of {current} but released"


def test_docs_extra_provides_every_sphinx_extension():
    conf = (ROOT / "docs" / "conf.py").read_text(encoding="utf-8")
    block = re.search(r"^extensions = \[(.*?)^\]", conf, flags=re.M | re.S).group(1)
    extensions = re.findall(r'^\s*"([\w.-]+)"', block, flags=re.M)
    docs_extra = " ".join(PROJECT["optional-dependencies"]["docs"]).lower()
    provider = {"sphinx_gallery": "sphinx-gallery"}  # import name -> distribution
    for ext in extensions:
        top = ext.split(".")[0]
        if top == "sphinx":
            continue  # part of Sphinx itself
        assert provider.get(top, top) in docs_extra, f"no package of the docs extra provides {ext}"
    assert "sphinx-mathjax-offline" in extensions


def test_release_extra_has_the_build_tools_ci_uses():
    release = " ".join(PROJECT["optional-dependencies"]["release"])
    assert "build" in release and "twine" in release
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert '".[release]"' in ci and "-m build" in ci and "twine check" in ci

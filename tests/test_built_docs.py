"""The built site works from a local copy, with no network.

These tests read the HTML that Sphinx wrote to ``docs/_build/html``. They
check two things a reader of a downloaded or offline copy would notice:

- every page with formulas loads MathJax from the site's own ``_static``
  folder (not from a CDN), and that file is there;
- the sidebar of every content page lists the pages of its section (the
  theme leaves it empty when the page tree has no sections).

The build is not part of the test suite (it runs the gallery scripts and
takes minutes), so these tests are skipped when the site has not been
built; ``.ci/run`` builds it and then runs this file. Build it yourself
with ``python -m sphinx -W -b html docs docs/_build/html``.
A stale build is checked as it is: rebuild after changing the
documentation. docs/contributing.rst describes the check by eye in a
headless browser that complements these tests.
"""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "docs" / "_build" / "html"

pytestmark = pytest.mark.skipif(
    not (SITE / "index.html").is_file(),
    reason="the documentation has not been built (python -m sphinx -b html docs docs/_build/html)",
)

# Pages outside the page tree, so with no section to list: the root, the
# pages Sphinx generates (index, search) and sphinx-gallery's table of
# execution times.
NO_SECTION = {"index.html", "genindex.html", "search.html", "py-modindex.html",
              "sg_execution_times.html"}


class _Page(HTMLParser):
    """Script sources, links inside the sidebar's section navigation, and
    whether the page has math."""

    def __init__(self):
        super().__init__()
        self.scripts = []
        self.nav_links = []
        self.has_math = False
        self._nav_depth = 0  # > 0 while inside <nav class="bd-docs-nav">

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        if "math" in classes and tag in ("span", "div"):
            self.has_math = True
        if tag == "nav":
            if self._nav_depth:
                self._nav_depth += 1
            elif "bd-docs-nav" in classes:
                self._nav_depth = 1
        elif tag == "a" and self._nav_depth and attrs.get("href"):
            self.nav_links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "nav" and self._nav_depth:
            self._nav_depth -= 1


def _parse(path):
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _content_pages():
    pages = sorted(SITE.glob("*.html")) + sorted((SITE / "generated").glob("*.html"))
    return [p for p in pages if p.name not in NO_SECTION]


def test_math_is_rendered_by_a_local_mathjax():
    with_math = [p for p in sorted(SITE.glob("*.html")) if _parse(p).has_math]
    assert with_math, "no built page has math: the check would prove nothing"
    for path in with_math:
        mathjax = [s for s in _parse(path).scripts if "mathjax" in s.lower()]
        assert mathjax, f"{path.name} has math but loads no MathJax"
        for src in mathjax:
            assert not re.match(r"(https?:)?//", src), (
                f"{path.name} loads MathJax from the network: {src}")
            local = (path.parent / src.split("?")[0]).resolve()
            assert local.is_file(), f"{path.name} loads {src}, which is not in the site"


def test_sidebar_lists_the_pages_of_each_section():
    pages = _content_pages()
    assert len(pages) > 10
    empty = [p.relative_to(SITE).as_posix() for p in pages if not _parse(p).nav_links]
    assert not empty, f"pages with an empty section navigation: {empty}"


def test_every_page_of_the_page_tree_is_reachable_from_the_sidebar():
    reachable = set()
    for path in _content_pages():
        for href in _parse(path).nav_links:
            target = (path.parent / href.split("#")[0]).resolve()
            reachable.add(target)
    for name in ("getting_started", "coming_from", "theory", "kernels", "nadaraya_watson",
                 "attention_regressor", "gpu", "scaling", "performance", "api", "contributing"):
        assert (SITE / f"{name}.html").resolve() in reachable, f"{name} is in no sidebar"

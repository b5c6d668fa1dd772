"""The command line demo."""

import subprocess
import sys

import pytest

from nwattn.__main__ import FIGURE_NAME, main


def test_demo_prints_the_table_and_writes_the_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib (the demo extra) is not installed")
    assert main(["demo", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for dataset in ("diabetes", "friedman1"):
        rows = [line for line in out.splitlines() if line.startswith(dataset)]
        assert len(rows) == 7
        assert any("NW gaussian, cv per feature" in r for r in rows)
        for score in ("rbf", "scaled_dot", "additive"):
            assert any(f"attention, learned {score}" in r for r in rows)
        assert any("k-NN" in r for r in rows) and any("ridge" in r for r in rows)
    for kernel in ("gaussian", "boxcar", "triangular", "epanechnikov"):
        assert any(line.startswith(kernel) for line in out.splitlines())
    figure = tmp_path / FIGURE_NAME
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_help_works():
    done = subprocess.run([sys.executable, "-m", "nwattn", "demo", "--help"],
                          capture_output=True, text=True, check=True)
    assert "--output" in done.stdout and "friedman1" in done.stdout


def test_missing_matplotlib_gives_a_clear_message(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes the import fail
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "needs matplotlib" in err and "nwattn[demo]" in err and "--no-plot" in err


def test_missing_output_directory(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib (the demo extra) is not installed")
    assert main(["demo", "--output", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err

"""The demo's command line refuses bad arguments before doing any work.

A wrong ``--seed`` or an output directory the figure cannot be written to
must be reported at once, as one line on stderr with exit status 2 (as
argparse does for its own errors), not as a traceback after the whole
benchmark has run. The tests here replace the benchmark with a function
that fails the test, so each of them takes a fraction of a second and fails
if the demo starts before checking its arguments.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import nwattn.__main__ as cli
from nwattn.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_benchmark(monkeypatch):
    """Fail the test if the demo gets as far as running the benchmark."""

    def started(*args, **kwargs):
        raise AssertionError("the demo started before its arguments were checked")

    monkeypatch.setattr(cli, "_benchmark_table", started)
    monkeypatch.setattr(cli, "_toy_figure", started)


def _unwritable(path):
    try:
        with open(os.path.join(path, ".probe"), "w"):
            pass
    except OSError:
        return True
    os.remove(os.path.join(path, ".probe"))
    return False


@pytest.fixture
def unwritable_dir(tmp_path):
    """A directory that exists but in which no file can be created.

    Permissions do not bind root, so as root a directory of procfs (where
    no file can be created) stands in for a read-only one.
    """
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        for candidate in (str(locked), "/proc/self"):
            if os.path.isdir(candidate) and _unwritable(candidate):
                yield candidate
                return
        pytest.skip("no unwritable directory on this machine (root, and no procfs)")
    finally:
        locked.chmod(0o755)


def _one_line_error(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert lines and "error:" in lines[-1]
    return lines[-1]


@pytest.mark.parametrize("seed", ["-1", str(2**32), "1.5", "abc"])
def test_bad_seed_is_refused_before_the_demo_starts(seed, no_benchmark, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["demo", "--no-plot", "--seed", seed])
    assert stop.value.code == 2
    message = _one_line_error(capsys.readouterr().err)
    assert "--seed" in message and "4294967295" in message


@pytest.mark.parametrize("seed", ["0", str(2**32 - 1)])
def test_seeds_at_the_ends_of_the_range_are_accepted(seed, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(cli, "_benchmark_table", lambda seed, steps: ran.append(seed))
    assert main(["demo", "--no-plot", "--seed", seed]) == 0
    assert ran == [int(seed)]


def test_unwritable_output_directory_is_refused_before_the_demo_starts(
        unwritable_dir, no_benchmark, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib (the demo extra) is not installed")
    assert main(["demo", "--output", unwritable_dir]) == 2
    message = _one_line_error(capsys.readouterr().err)
    assert "cannot write" in message and unwritable_dir in message


def test_output_path_that_is_a_file_is_refused(tmp_path, no_benchmark, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib (the demo extra) is not installed")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert main(["demo", "--output", str(a_file)]) == 2
    assert "not a directory" in _one_line_error(capsys.readouterr().err)


def test_missing_output_directory_is_refused_before_the_demo_starts(
        tmp_path, no_benchmark, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib (the demo extra) is not installed")
    assert main(["demo", "--output", str(tmp_path / "absent")]) == 2
    assert "does not exist" in _one_line_error(capsys.readouterr().err)


def test_no_plot_ignores_the_output_directory(tmp_path, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(cli, "_benchmark_table", lambda seed, steps: ran.append(seed))
    assert main(["demo", "--no-plot", "--output", str(tmp_path / "absent")]) == 0
    assert ran == [0]


def test_says_up_front_that_the_first_run_compiles(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_benchmark_table", lambda seed, steps: print("TABLE"))
    assert main(["demo", "--no-plot"]) == 0
    out = capsys.readouterr().out
    before_table = out[:out.index("TABLE")]
    assert "compiles" in before_table and "minutes" in before_table
    assert out.count("compiles") == 1


def test_bad_seed_from_the_command_line():
    """The whole program, as a user runs it: status 2, one line, no traceback."""
    done = subprocess.run([sys.executable, "-m", "nwattn", "demo", "--seed", "-1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "--seed" in _one_line_error(done.stderr)
    assert done.stdout == ""


def test_docstring_examples_run():
    # pytest's --doctest-modules does not collect __main__.py files.
    import doctest

    result = doctest.testmod(cli, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0

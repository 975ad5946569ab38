"""Command-line mistakes are the user's, not bugs: each gets click's sentence naming the command or option,
exit code 2 (the README's "wrong command line"), and never "internal error" or a traceback (issue 9)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from prana import __version__

SRC = Path(__file__).resolve().parents[1] / "src"


def _prana(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prana", *args], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "COLUMNS": "100"})


@pytest.mark.parametrize("args, sentence", [
    (["comapre"], "No such command 'comapre'. Did you mean 'compare'?"),
    (["compare", "local", "--table", "t.csv"], "Missing option '--claims'"),
    (["compare", "local", "--table", "t.csv", "--claims", "c.csv", "--out", "o.csv", "-k", "0"], "'--anonymity'"),
    (["cluster", "local", "--data", "a.csv,b.csv", "--k", "1", "--out", "x"], "'--k'"),
    ([], "Usage: prana"),
])
def test_a_command_line_mistake_names_what_is_wrong_and_exits_2(args, sentence):
    done = _prana(*args)
    shown = done.stdout + done.stderr
    assert done.returncode == 2, shown
    assert sentence in shown and "please report this" not in shown and "Traceback" not in shown


def test_version():
    done = _prana("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"prana {__version__}"


def test_the_command_line_keeps_the_libraries_defaults():
    """`prana` starts without importing jax (the CLI modules import the analyses lazily), so it repeats the
    analyses' public defaults; they must stay the same."""
    from prana.analyses import compare, kmeans
    from prana.cli import cluster as cluster_cli
    from prana.cli import compare as compare_cli

    assert compare_cli.DEFAULT_ANONYMITY == compare.DEFAULT_ANONYMITY
    assert cluster_cli.STEPS == kmeans.STEPS

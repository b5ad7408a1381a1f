"""The habits of the code itself: lint-clean and formatted (ruff, configured in pyproject.toml;
tests/test_cli.py bounds the length of a function)."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

CHECKED = ["cacl_cli", "bench", "tests"]


def ruff(*args: str) -> subprocess.CompletedProcess:
    pytest.importorskip("ruff", reason="ruff comes with the test extra: pip install -e '.[test]'")
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *CHECKED], cwd=ROOT, capture_output=True, text=True
    )


def test_the_code_is_lint_clean():
    done = ruff("check", "--no-cache")
    assert done.returncode == 0, done.stdout[-3000:]


def test_the_code_is_formatted():
    done = ruff("format", "--check", "--no-cache")
    assert done.returncode == 0, done.stdout[-3000:]

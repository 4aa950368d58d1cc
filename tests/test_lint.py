"""The code passes its own linter: line length and the complexity limit (pyproject.toml)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is in the dev extra")
def test_ruff_check_passes_with_line_length_and_complexity_limits():
    result = subprocess.run(
        ["ruff", "check", "bertlab", "tests", "benchmarks", "--output-format", "concise"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    settings = (ROOT / "pyproject.toml").read_text()
    assert '"C90"' in settings and "max-complexity = 10" in settings
    assert '"E501"' not in settings  # the line-length rule is not ignored

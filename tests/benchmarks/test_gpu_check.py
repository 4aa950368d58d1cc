"""benchmarks/gpu_check.py runs end to end on the CPU with a tiny model and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
ROWS = [
    "bf16 matmul (measured)",
    "pretrain bertlab",
    "pretrain transformers",
    "pretrain bertlab compiled",
    "pretrain transformers compiled",
    "squad bertlab (Lightning)",
    "squad transformers Trainer",
]
TINY_RUN = [
    *("--device", "cpu", "--model", "tiny", "--steps", "2", "--repetitions", "1"),
    *("--warmup", "1", "--batch-size", "2", "--seq-len", "32"),
    *("--squad-batch-size", "2", "--squad-seq-len", "64"),
    *("--matmul-size", "256", "--compile-backend", "eager"),
]


def table_rows(output: str) -> dict[str, list[str]]:
    """The markdown table's data rows by their first cell."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("check", "---"):
            rows[cells[0]] = cells[1:]
    return rows


def test_tiny_cpu_run_prints_every_row_with_rates_and_shares():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *TINY_RUN],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=SCRIPT.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = table_rows(result.stdout)
    assert list(rows) == ROWS
    for name in ROWS[1:]:
        samples, tokens, tflops, mfu, share, ratio = rows[name]
        assert float(samples) > 0
        seq_len = 32 if name.startswith("pretrain") else 64
        assert float(tokens) == pytest.approx(float(samples) * seq_len, abs=0.05 * seq_len + 0.5)
        assert float(tflops) >= 0
        assert mfu == "n/a"  # a CPU has no datasheet bf16 peak in the table
        assert float(share.rstrip("%")) > 0
        bertlab_row = "bertlab" in name
        assert ratio.endswith("x") == bertlab_row
    assert rows[ROWS[0]][4] == "100.0%"  # the matmul rate is its own limit

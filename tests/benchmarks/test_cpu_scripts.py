"""The CPU comparison scripts run at their smoke sizes and print what docs/benchmarks.md
promises: both sides' samples/s as a share of a matmul rate re-measured among the
repetitions, and the ratio."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

# The smoke runs docs/benchmarks.md names, with the two sides each prints.
SMOKE_RUNS = {
    "pretrain_step.py": (
        ["--models", "tiny", "--steps", "1", "--repetitions", "1"],
        ["transformers", "bertlab"],
    ),
    "finetune.py": (
        ["--model", "tiny", "--examples", "64", "--repetitions", "1"],
        ["transformers Trainer", "bertlab"],
    ),
    "lightning_overhead.py": (
        ["--steps", "2", "--repetitions", "1"],
        ["raw PyTorch loop", "bertlab (Lightning)"],
    ),
    "decoder_products.py": (
        ["--rows", "64", "--vocab", "2000", "--repeat", "1", "--repetitions", "1"],
        ["torch.mm (MKL)", "oneDNN"],
    ),
    "allocator.py": (
        ["--repetitions", "1", "--steps", "1"],
        ["glibc default", "bertlab (freed memory kept)"],
    ),
    "inference.py": (
        ["--model", "tiny", "--repetitions", "1", "--samples", "4", "--batch-sizes", "1"],
        ["bertlab torch", "onnx fp32", "onnx int8"],
    ),
}


# allocator.py starts two child processes that build the model (about 50 s on 2 cores);
# tests/runtime/test_allocator.py checks the setting itself in the default suite.
SLOW_SCRIPTS = {"allocator.py"}


@pytest.mark.parametrize(
    "script",
    [pytest.param(s, marks=pytest.mark.slow) if s in SLOW_SCRIPTS else s for s in SMOKE_RUNS],
)
def test_prints_each_side_as_a_share_of_the_best_matmul_reading(script):
    if script == "inference.py":
        pytest.importorskip("onnxruntime")
    if script == "decoder_products.py" and not torch.backends.mkldnn.is_available():
        pytest.skip("this PyTorch has no oneDNN")
    if script == "allocator.py" and not sys.platform.startswith("linux"):
        pytest.skip("glibc's malloc only")
    arguments, sides = SMOKE_RUNS[script]
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    # one reading before the sides, one in the repetition
    limit = re.search(
        r"matmul rate \(cpu, \d+ threads\): ([\d.]+) GFLOP/s, the best of 2 readings "
        r"between the repetitions \(lowest ([\d.]+)\)",
        out,
    )
    assert limit and float(limit.group(1)) >= float(limit.group(2)) > 0, out
    for side in sides:
        line = re.search(
            rf"^  {re.escape(side)} +[\d.]+ samples/s.*= +([\d.]+)% of the matmul rate$",
            out,
            re.MULTILINE,
        )
        assert line and 0 < float(line.group(1)) <= 100, (side, out)
    assert re.search(r"ratio|overhead: -?[\d.]+% more time", out), out

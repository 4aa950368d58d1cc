"""benchmarks/default_job_step.py runs on a small corpus and prints each figure it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch

from support.data import write_corpus

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "default_job_step.py"


def test_prints_the_read_time_the_product_share_and_the_share_of_the_matmul_rate(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", documents=80)
    overrides = [
        f"task.corpus={corpus}",
        f"cache_dir={tmp_path / 'cache'}",
        "tokenizer.vocab_size=300",
        "tokenizer.min_frequency=1",
        "task.dupe_factor=2",
        "task.batch_size=8",
    ]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "2", "--items", "20", *overrides],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"reading an instance: \d+ us, [\d.]+ ms a batch", out), out
    assert re.search(r"measured fp32 matmul rate \(cpu, \d+ threads\): [\d.]+ GFLOP/s", out), out
    share = re.search(r"matrix products [\d.]+ ms \((\d+)%\)", out)
    assert share and 0 < int(share.group(1)) <= 100, out
    assert re.search(r"unprofiled step [\d.]+ ms: matrix products \d+% of it", out), out
    assert re.search(r"= +[\d.]+% of the matmul rate \(unprofiled\)", out), out
    # The machine line names the vector instructions torch's kernels use here.
    machine_line = next(line for line in out.splitlines() if "nproc" in line)
    assert f"({torch.backends.cpu.get_cpu_capability()})" in machine_line, out

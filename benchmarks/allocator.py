"""glibc's malloc as it comes against bertlab's setting (bertlab.runtime.allocator): a
`model=tiny` pretraining step (benchmarks/pretrain_step.py's), its time and page faults.

The setting is process-wide and glibc cannot be set back to its adaptive thresholds once
changed, so the two sides cannot share a process: each repetition runs one child process
per side, alternating, on the same batch and seed; the ratio is the median of the
per-repetition ratios. Each side's step is also shown as a share of the matmul rate the
parent measures between the repetitions (common.MatmulLimit).

    python benchmarks/allocator.py
    python benchmarks/allocator.py --model mini --repetitions 7
    python benchmarks/allocator.py --repetitions 1 --steps 1    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from common import MatmulLimit, load, machine, model_settings, pretraining_flops, share_line
from pretrain_step import VOCAB_SIZE, bertlab_step, masked_batch

from bertlab.runtime.allocator import (
    keep_freed_memory,
    user_chose_allocator,
    without_allocator_choice,
)

SIDES = ("glibc default", "bertlab (freed memory kept)")
BATCH_SIZE, SEQ_LEN = 32, 128  # pretrain_step.py's defaults


def batch() -> dict:
    return masked_batch(BATCH_SIZE, SEQ_LEN, torch.Generator().manual_seed(0))


def child(model: str, steps: int, kept: bool) -> None:
    """Time `steps` pretraining steps after two warm-up steps; print one JSON line."""
    if kept and not keep_freed_memory():
        raise SystemExit("glibc's mallopt is not available here: nothing to compare")
    torch.manual_seed(0)
    step = bertlab_step(model_settings(model), batch(), "cpu", "fp32")
    step(), step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - started) / steps
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
    print(json.dumps({"seconds": seconds, "faults": faults}))


def run_side(model: str, steps: int, kept: bool) -> dict:
    command = [sys.executable, __file__, "--child", "kept" if kept else "default"]
    command += ["--model", model, "--steps", str(steps)]
    done = subprocess.run(
        command, env=without_allocator_choice(), capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per child process")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--child", choices=("default", "kept"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.model, args.steps, args.child == "kept")
    if user_chose_allocator():
        print("note: this environment tunes malloc; the child processes run without that")
    print(f"machine: {machine()}; {load()}")
    limit = MatmulLimit()
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for repetition in range(args.repetitions):
        for side in SIDES:
            runs[side].append(run_side(args.model, args.steps, kept=side != SIDES[0]))
        limit.measure()
        print(
            f"  repetition {repetition + 1}: "
            + ", ".join(
                f"{side} {1e3 * runs[side][-1]['seconds']:.0f} ms/step, "
                f"{runs[side][-1]['faults']:.0f} page faults/step"
                for side in SIDES
            )
            + f" ({load()})",
            flush=True,
        )
    print(limit)
    masked = batch()["masked_positions"].shape[1]
    flops = float(pretraining_flops(model_settings(args.model), SEQ_LEN, masked, VOCAB_SIZE))
    print(
        f"pretraining step, model={args.model}, batch {BATCH_SIZE}, seq {SEQ_LEN}, "
        f"vocab {VOCAB_SIZE}, fp32, cpu"
    )
    for side in SIDES:
        seconds = statistics.median(run["seconds"] for run in runs[side])
        faults = statistics.median(run["faults"] for run in runs[side])
        print(
            f"  {side:<28} {BATCH_SIZE / seconds:8.1f} samples/s  {faults:7.0f} page faults/step  "
            f"{share_line(BATCH_SIZE / seconds, flops, limit.rate)}"
        )
    ratios = [
        default["seconds"] / kept["seconds"]
        for default, kept in zip(runs[SIDES[0]], runs[SIDES[1]], strict=True)
    ]
    print(
        f"  ratio {SIDES[1]} / {SIDES[0]}: {statistics.median(ratios):.2f}x "
        f"(per repetition: {', '.join(f'{r:.2f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()

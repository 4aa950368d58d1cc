"""Where a step of the default job (`bertlab-train` with no arguments) spends its time.

On the default job's own batches (its corpus, vocabulary and instances, from the cache the
job fills; prepared here if missing): the time to read one instance (the job reads its
batches in the training process), and the training step (forward, MLM + NSP loss,
backward, clipping, fused AdamW) split into its dense matrix products and the rest, with
the step's useful model FLOP/s (common.pretraining_flops on the batches' real tokens and
masked positions) as a share of the matrix-multiply rate measured here. Lightning's own
cost per step is benchmarks/lightning_overhead.py's.

    python benchmarks/default_job_step.py
    python benchmarks/default_job_step.py --steps 5 --items 200   # a smoke run
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import (
    MatmulLimit,
    bertlab_allocator,
    breakdown_lines,
    load,
    machine,
    pretraining_flops,
    pretraining_loss,
    share_line,
    step_breakdown,
)
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bertlab import pipeline
from bertlab.optim import configure_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="profiled training steps")
    parser.add_argument("--items", type=int, default=3000, help="instances read for the timing")
    parser.add_argument("overrides", nargs="*", help="bertlab-train overrides (default: none)")
    args = parser.parse_args()

    conf_dir = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose("train", overrides=[f"run_dir={tempfile.mkdtemp()}", *args.overrides])
    datamodule, tokenizer, module = pipeline.build_run(cfg, None)
    datamodule.setup("fit")
    print(machine(), bertlab_allocator(), load(), sep="\n")

    dataset = datamodule.train_set
    items = min(args.items, len(dataset))
    started = time.perf_counter()
    for index in range(items):
        dataset[(0, index)]
    per_item = (time.perf_counter() - started) / items
    per_batch = per_item * cfg.task.batch_size
    print(f"reading an instance: {per_item * 1e6:.0f} us, {per_batch * 1e3:.1f} ms a batch")

    loader = iter(datamodule.train_dataloader())
    batches = [next(loader) for _ in range(args.steps)]
    network = module.network.train()
    # The job's optimizer (fused AdamW, weight-decay groups) and schedule.
    built = configure_optimizer(network, dict(cfg.optimizer), total_steps=10_000)
    optimizer, scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]
    upcoming = itertools.cycle(batches)

    def step() -> None:
        batch = next(upcoming)
        pretraining_loss(network, batch).backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), cfg.trainer.gradient_clip_val)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    limit = MatmulLimit()
    for _ in range(3):  # warm-up
        step()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    step_seconds = (time.perf_counter() - started) / args.steps
    limit.measure()
    # The profiler's own cost lands on the step, not on the products it times.
    breakdown = step_breakdown(step, steps=args.steps)
    limit.measure()
    print(limit)
    print(breakdown_lines("default job", breakdown, limit.rate))
    products = breakdown["product_seconds"]
    print(
        f"  {'':<28} unprofiled step {step_seconds * 1e3:.1f} ms: matrix products "
        f"{products / step_seconds:.0%} of it, the rest {(step_seconds - products) * 1e3:.1f} ms"
    )
    settings = OmegaConf.to_container(cfg.model, resolve=True)
    flops = 0.0
    for batch in batches:
        tokens = batch["attention_mask"].sum(dim=1).numpy()
        masked = (batch["masked_positions"] >= 0).sum(dim=1).numpy()
        vocab = tokenizer.get_vocab_size()
        flops += float(pretraining_flops(settings, tokens, masked, vocab).sum())
    flops /= args.steps
    print(f"  {'':<28} {share_line(1 / step_seconds, flops, limit.rate)} (unprofiled)")


if __name__ == "__main__":
    sys.exit(main())

"""Lightning overhead: bertlab-train's Trainer vs a raw PyTorch loop, same model and batches.

Both sides train the same PretrainingModule network (`model=tiny`, batch 32, sequence 128,
pretraining instances from a generated corpus) from the same DataLoader for the same
number of optimizer steps, with AdamW + linear schedule and gradient clipping at 1.0.
The Lightning side is what `bertlab-train` builds (conf/trainer/cpu.yaml, the CSV logger,
the LR monitor, the progress bar, the module's metrics and throughput logging) minus
checkpoint writing and validation, which the raw loop does not do; its time includes
`Trainer` start-up per repetition. Both sides' useful model FLOP/s (common.pretraining_flops
over the real tokens and masked positions of the batches they train on) are printed as a
share of the matrix-multiply rate the script measures at the same thread count.

    python benchmarks/lightning_overhead.py
    python benchmarks/lightning_overhead.py --model mini --steps 60
    python benchmarks/lightning_overhead.py --steps 2 --repetitions 1   # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
from common import (
    MatmulLimit,
    bertlab_allocator,
    interleaved_samples,
    load,
    machine,
    model_settings,
    pretraining_flops,
    pretraining_loss,
    share_line,
    write_generated_corpus,
)
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict
from pytorch_lightning.callbacks import ModelCheckpoint

from bertlab import pipeline
from bertlab.optim import configure_optimizer


def config(corpus: Path, work: Path, model: str, steps: int):
    conf_dir = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"model={model}",
                f"task.corpus={corpus}",
                "task.batch_size=32",
                "task.max_seq_length=128",
                "task.dupe_factor=1",
                f"trainer.max_steps={steps}",
                "+trainer.limit_val_batches=0",
                "trainer.enable_model_summary=false",
            ],
        )
    with open_dict(cfg):
        cfg.run_dir = str(work / "run")
        cfg.cache_dir = str(work / "cache")
    return cfg


def lightning_side(cfg, module, datamodule, steps: int) -> Callable[[], int]:
    """bertlab-train's Trainer (pipeline.build_trainer) without its checkpoint writers."""

    def run() -> int:
        callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
        trainer = instantiate(
            cfg.trainer,
            logger=[instantiate(section) for section in cfg.logger.values()],
            callbacks=[c for c in callbacks if not isinstance(c, ModelCheckpoint)],
            enable_checkpointing=False,
        )
        trainer.fit(module, datamodule=datamodule)
        assert trainer.global_step == steps
        return steps * cfg.task.batch_size

    return run


def raw_loop_side(cfg, module, datamodule, steps: int) -> Callable[[], int]:
    """The same work by hand: forward, MLM + NSP loss, backward, clip, step, schedule."""
    model = module.model
    built = configure_optimizer(model, dict(cfg.optimizer), total_steps=steps)
    optimizer, scheduler = built["optimizer"], built["lr_scheduler"]["scheduler"]

    def run() -> int:
        model.train()
        batches = iter(datamodule.train_dataloader())
        for _ in range(steps):
            batch = next(batches)
            # The module's own loss: the fused MLM head (linear + cross-entropy over the
            # masked rows), so both sides do the same arithmetic.
            loss = pretraining_loss(model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.gradient_clip_val)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        return steps * cfg.task.batch_size

    return run


def flops_per_sample(datamodule, settings: dict, vocab_size: int, steps: int) -> float:
    """Mean useful FLOPs per instance over the first `steps` batches (what both sides train on)."""
    total, samples = 0.0, 0
    for _, batch in zip(range(steps), datamodule.train_dataloader(), strict=False):
        tokens = batch["attention_mask"].sum(dim=1).numpy()
        masked = (batch["masked_positions"] >= 0).sum(dim=1).numpy()
        total += float(pretraining_flops(settings, tokens, masked, vocab_size).sum())
        samples += len(tokens)
    return total / samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per repetition")
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}; {bertlab_allocator()}; {load()}")
    limit = MatmulLimit("cpu", "fp32")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = write_generated_corpus(work / "corpus.txt", megabytes=4)
        cfg = config(corpus, work, args.model, args.steps)
        pl.seed_everything(cfg.seed)
        datamodule = pipeline.build_datamodule(cfg)
        tokenizer = pipeline.resolve_tokenizer(cfg, datamodule, init=None)
        datamodule.set_tokenizer(tokenizer)
        datamodule.prepare_data()
        datamodule.setup("fit")
        module = pipeline.build_module(cfg, datamodule, tokenizer, init=None)
        settings = model_settings(args.model)
        flops = flops_per_sample(datamodule, settings, tokenizer.get_vocab_size(), args.steps)
        sides = {
            "raw PyTorch loop": raw_loop_side(cfg, module, datamodule, args.steps),
            "bertlab (Lightning)": lightning_side(cfg, module, datamodule, args.steps),
        }
        samples = interleaved_samples(sides, args.repetitions, limit=limit)
    print(limit)
    raw, lightning = samples["raw PyTorch loop"], samples["bertlab (Lightning)"]
    # Per repetition the two sides ran back to back: their ratio cancels slow phases of load.
    overheads = [100 * (r / w - 1) for r, w in zip(raw, lightning, strict=True)]
    print(f"Lightning overhead, model={args.model}, batch 32, seq 128, {args.steps} steps per run")
    for name, values in samples.items():
        rate = statistics.median(values)
        print(
            f"  {name:<28} {rate:10.1f} samples/s (median)  {share_line(rate, flops, limit.rate)}"
        )
    print(
        f"  overhead: {statistics.median(overheads):.1f}% more time (median of the repetitions; "
        f"range {min(overheads):.1f}% to {max(overheads):.1f}%)   ({load()})"
    )


if __name__ == "__main__":
    main()
